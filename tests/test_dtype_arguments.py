"""``dtype=`` as NumPy takes it, on traced values: a ufunc computes in the
dtype asked for (its inputs cast first: ``np.sqrt(x, dtype=complex)`` of a
negative x is imaginary, ``np.spacing(x, dtype=float32)`` float32's), and a
reduction of floats into integers accumulates and divides as NumPy's
(``np.mean(x, dtype=int)`` truncates)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastad as fa

UNARY = ["sqrt", "log", "log2", "log10", "log1p", "arcsin", "arccos", "arccosh", "arctanh",
         "exp", "sin", "tanh", "spacing", "square", "reciprocal", "cbrt", "absolute"]
BINARY = ["add", "multiply", "divide", "fmod", "power", "arctan2", "hypot", "maximum"]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _close(got, want, dtype):
    assert np.asarray(got).dtype == np.asarray(want).dtype
    rtol = 1e-5 if np.dtype(dtype).itemsize <= 8 and np.dtype(dtype).kind == "c" \
        or dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


def _check(f, args, dtype):
    try:
        with np.errstate(all="ignore"):
            want, refused = f(*args), None
    except Exception as exc:  # a cast NumPy refuses
        want, refused = None, exc
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UserWarning)  # (backend notices for complex values)
        if refused is not None:
            with pytest.raises((TypeError, ValueError)):
                fa.jit(f)(*args)
            return
        _close(fa.jit(f)(*args), want, dtype)


@pytest.mark.parametrize("name", UNARY)
def test_a_ufunc_computes_in_the_dtype_asked_for(name):
    ufunc = getattr(np, name)
    x = np.array([-4.0, -0.5, 0.25, 0.75, 9.0])
    for dtype in DTYPES:
        _check(lambda v: ufunc(v, dtype=dtype), (x,), dtype)


@pytest.mark.parametrize("name", BINARY)
def test_a_binary_ufunc_computes_in_the_dtype_asked_for(name):
    ufunc = getattr(np, name)
    x, y = np.array([-2.5, 0.3, 1.7, 3.1]), np.array([1.3, 2.9, -0.7, 3.3])
    for dtype in DTYPES:
        _check(lambda a, b: ufunc(a, b, dtype=dtype), (x, y), dtype)


@pytest.mark.parametrize("name", ["sum", "prod", "cumsum", "cumprod", "mean", "var", "std", "nansum",
                                  "nancumsum", "nancumprod", "nanmean"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64, np.complex128])
def test_a_reduction_into_the_dtype_asked_for(name, dtype):
    fn = getattr(np, name)
    x = np.random.default_rng(3).uniform(-4.0, 4.0, size=(3, 4))
    for axis in (None, 0, 1):
        if name == "cumsum" and axis is None:
            continue
        f = lambda v: fn(v, axis=axis, dtype=dtype)  # noqa: E731
        try:
            with np.errstate(all="ignore"):
                want = f(x)
        except TypeError:  # std of an axis into integers: NumPy's square root refuses
            with pytest.raises(TypeError):
                fa.jit(f)(x)
            continue
        got = fa.jit(f)(x)
        assert np.asarray(got).dtype == np.asarray(want).dtype, (name, axis)
        if np.dtype(dtype).kind == "i":
            assert np.array_equal(got, want), (name, axis, got, want)
        else:
            _close(got, want, dtype)


@pytest.mark.parametrize("name", ["cov", "corrcoef", "cov rows", "cov pair", "vander",
                                  "cov float32", "corrcoef complex64"])
def test_float32_data_computed_in_numpys_precision(name):
    """NumPy computes a float32 array's covariance and Vandermonde matrix in
    float64; so does a traced call (to float64's rounding, not float32's)."""
    f = {"cov": np.cov, "corrcoef": np.corrcoef, "cov rows": lambda v: np.cov(v, rowvar=False),
         "cov pair": lambda v: np.cov(v[0], v[1]), "vander": lambda v: np.vander(v[0]),
         "cov float32": lambda v: np.cov(v, dtype=np.float32),
         "corrcoef complex64": lambda v: np.corrcoef(v * (1 + 0.5j))}[name]
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    want = f(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (backend notices for complex values)
        got = fa.jit(f)(x)
    assert np.asarray(got).dtype == want.dtype
    tol = 1e-6 if want.dtype in (np.float32, np.complex64) else 1e-13
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.max(np.abs(want)))
