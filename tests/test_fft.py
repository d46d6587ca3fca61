"""fastad.numpy.fft: every transform with NumPy's ``n``/``s``, ``axis``/``axes``
and ``norm`` arguments, on real and complex inputs of both precisions:
values against ``numpy.fft``, forward and reverse derivatives (second order
in double precision) against central finite differences, real-valued losses
against autograd, and compiled backends against the reference interpreter.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from helpers import FAST, check_function, make_args, shapes

NORMS = (None, "backward", "ortho", "forward")
DTYPES = (np.float64, np.complex128, np.float32, np.complex64)
REAL = {np.dtype(np.float64), np.dtype(np.float32)}


def draw_1d(data, nd):
    """(n, axis, norm) for the one-axis transforms."""
    n = data.draw(st.one_of(st.none(), st.integers(1, 6)), label="n")
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    return {"n": n, "axis": axis, "norm": data.draw(st.sampled_from(NORMS), label="norm")}


def draw_nd(data, nd):
    """(s, axes, norm) for the n-dimensional ones: axes unique, s per axis or None."""
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(0, nd - 1), unique=True,
                                                   min_size=1, max_size=nd)), label="axes")
    if axes is None:  # NumPy 2 deprecates s without axes
        return {"s": None, "axes": None, "norm": data.draw(st.sampled_from(NORMS), label="norm")}
    s = data.draw(st.one_of(st.none(), st.lists(st.integers(1, 5), min_size=len(axes),
                                                max_size=len(axes))), label="s")
    return {"s": s, "axes": axes, "norm": data.draw(st.sampled_from(NORMS), label="norm")}


def draw_2d(data, nd):
    s = data.draw(st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))),
                  label="s")
    return {"s": s, "norm": data.draw(st.sampled_from(NORMS), label="norm")}


def draw_shift(data, nd):
    axes = data.draw(st.one_of(st.none(), st.integers(-nd, nd - 1),
                               st.lists(st.integers(0, nd - 1), unique=True, max_size=nd)),
                     label="axes")
    return {"axes": axes}


# name: (the transform's name in numpy.fft, parameter strategy, real input only,
#        minimum number of dimensions)
TRANSFORMS = {
    "fft": ("fft", draw_1d, False, 1), "ifft": ("ifft", draw_1d, False, 1),
    "fftn": ("fftn", draw_nd, False, 1), "ifftn": ("ifftn", draw_nd, False, 1),
    "fft2": ("fft2", draw_2d, False, 2), "ifft2": ("ifft2", draw_2d, False, 2),
    "rfft": ("rfft", draw_1d, True, 1), "irfft": ("irfft", draw_1d, False, 1),
    "rfftn": ("rfftn", draw_nd, True, 1), "irfftn": ("irfftn", draw_nd, False, 1),
    "rfft2": ("rfft2", draw_2d, True, 2), "irfft2": ("irfft2", draw_2d, False, 2),
    "fftshift": ("fftshift", draw_shift, False, 1), "ifftshift": ("ifftshift", draw_shift, False, 1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@FAST
@given(data=st.data())
def test_values_and_derivatives(name, dtype, data):
    func_name, draw, real_only, min_dims = TRANSFORMS[name]
    if real_only and np.dtype(dtype) not in REAL:
        pytest.skip("defined for real input")
    shape = data.draw(shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=5),
                      label="shape")
    params = draw(data, len(shape))
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    domain = "real" if np.dtype(dtype) in REAL else "complex"
    (x,) = make_args(seed, (shape,), (domain,), dtype)
    numpy_fn = getattr(np.fft, func_name)

    def f(a):
        return numpy_fn(a, **params)
    try:
        f(x)
    except ValueError:  # an output length of 0 (irfft of one point): refused alike
        with pytest.raises(ValueError):
            fa.vjp(f, x)
        return
    check_function(f, (x,), order=2, seed=seed % 1000)


def test_plain_numpy_calls_dispatch_and_fastad_numpy_fft_is_the_namespace():
    x = np.linspace(-1.0, 1.0, 6)
    tape = fa.make_tape(lambda x: np.abs(np.fft.rfft(x)) ** 2)(x)
    assert "fft" in {ins.prim for ins in tape.instrs}
    np.testing.assert_allclose(fnp.fft.ifft(fnp.fft.fft(x)), x, atol=1e-14)
    np.testing.assert_array_equal(fnp.fft.fftfreq(5, 0.1), np.fft.fftfreq(5, 0.1))


def test_bad_arguments_raise_as_numpy_does():
    x = np.ones(4)
    with pytest.raises(ValueError, match="Invalid norm"):
        fa.grad(lambda x: np.sum(np.abs(np.fft.fft(x, norm="sideways"))))(x)
    with pytest.raises(ValueError, match="Invalid number of FFT data points"):
        fa.grad(lambda x: np.sum(np.abs(np.fft.fft(x, n=0))))(x)
    with pytest.raises(TypeError, match="must be real"):
        fa.grad(lambda x: np.sum(np.abs(np.fft.rfft(x * 1j))))(x)
    with pytest.raises(ValueError, match="different lengths"):
        fa.grad(lambda x: np.sum(np.abs(np.fft.fftn(x, s=(2, 2), axes=(0,)))))(x)


# -- gradients of real losses: as autograd ------------------------------------------------
def _losses(np_):
    w = np.linspace(0.5, 1.5, 4)
    return {
        "power_spectrum": lambda x: np_.sum(np_.abs(np_.fft.fft(x)) ** 2 * w),
        "ortho_roundtrip": lambda x: np_.sum(np_.real(np_.fft.ifft(np_.fft.fft(x) * w) * x)),
        "rfft": lambda x: np_.sum(np_.abs(np_.fft.rfft(np_.real(x))) * w[:3]),
        "irfft": lambda x: np_.sum(np_.fft.irfft(x[:3]) ** 2 * w),
        "fft2": lambda x: np_.sum(np_.abs(np_.fft.fft2(np_.reshape(x, (2, 2)))) ** 3),
        "shift": lambda x: np_.sum(np_.real(np_.fft.fftshift(np_.fft.fft(x))) * w),
    }


@pytest.mark.parametrize("name", sorted(_losses(np)))
@pytest.mark.parametrize("kind", ("real", "complex"))
def test_gradient_matches_autograd(name, kind):
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    rng = np.random.default_rng(11)
    x = rng.standard_normal(4) + (1j * rng.standard_normal(4) if kind == "complex" else 0.0)
    ours = fa.grad(_losses(np)[name])(x)
    theirs = autograd.grad(_losses(anp)[name])(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


# -- compiled: every backend runs it (by falling back where it must) ------------------------
@pytest.mark.parametrize("dtype", (np.float64, np.complex128, np.float32))
def test_compiled_agrees_with_reference(backend, dtype):
    def loss(x):
        spectrum = np.fft.fft(x, n=8) * np.exp(1j * np.arange(8.0))
        return np.sum(np.abs(np.fft.fftshift(spectrum)) ** 2 + np.fft.irfft(spectrum[:5]))

    x = make_args(2, ((6,),), ("real" if np.dtype(dtype) in REAL else "complex",), dtype)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compiled backends fall back
        got = fa.compile(loss, backend=backend).value_and_grad(x)
        hvp = fa.compile(loss, backend=backend).hvp(x, np.ones_like(x))
    want = fa.compile(loss, backend="numpy").value_and_grad(x)
    want_hvp = fa.hvp(loss)(x, np.ones_like(x))
    rtol = 1e-10 if np.dtype(dtype).itemsize >= 8 and dtype != np.complex64 else 1e-4
    np.testing.assert_allclose(got[0], want[0], rtol=rtol)
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(hvp, want_hvp, rtol=rtol, atol=rtol)


def test_vmap_of_transforms_matches_a_loop():
    def f(x):
        return np.abs(np.fft.rfft(x, n=6)) ** 2 + np.real(np.fft.ifft(x * 1j, n=6)[:4])
    xs = make_args(5, ((3, 5),), ("real",), np.float64)[0]
    np.testing.assert_allclose(fa.vmap(f)(xs), np.stack([f(x) for x in xs]), rtol=1e-12)
    per_example = fa.vmap(fa.grad(lambda x: np.sum(f(x))))(xs)
    np.testing.assert_allclose(per_example, np.stack([fa.grad(lambda x: np.sum(f(x)))(x)
                                                     for x in xs]), rtol=1e-12)


def test_numba_calls_numpy_for_the_transform_and_compiles_the_rest():
    if "numba" not in fa.backends_available():
        pytest.skip("numba is not installed")
    from fastad.backends import numba_backend
    assert "fft" in numba_backend.HOST_CALLS

    def loss(x):
        return np.sum(np.abs(np.fft.rfft(x * np.linspace(0.5, 1.5, 7))) ** 2)
    g = fa.compile(loss, backend="numba")
    x = make_args(9, ((7,),), ("real",), np.float64)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the reference backend
        got = g(x)
    assert isinstance(g.program, numba_backend.Executable)
    assert "objmode" in str(g.program)
    np.testing.assert_allclose(got, fa.grad(loss)(x), rtol=1e-12)
