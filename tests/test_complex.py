"""Complex numbers: every primitive that accepts complex inputs, checked as
tests/test_primitives.py checks real ones (values against NumPy, forward and
reverse derivatives to second order against central finite differences that
perturb real and imaginary parts), gradients of real-valued functions of
complex inputs against autograd's, and compiled backends against the NumPy
reference interpreter.

The convention (autograd's and JAX's): cotangents pair with tangents as
Re(sum(ct * t)), so the gradient of a real f(x + iy) is df/dx - i df/dy.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
from fastad.backends.reference import evaluate
from helpers import COMPLEX_DTYPES, FAST, Case, axes_for, case_id, make_args, one_shape
from helpers import registrar, shapes, two_shapes

CASES: list[Case] = []
case = registrar(CASES, dtypes=COMPLEX_DTYPES)


# -- holomorphic elementwise functions -----------------------------------------------
HOLOMORPHIC = {
    "neg": (np.negative, "complex"), "exp": (np.exp, "complex"), "exp2": (np.exp2, "complex"),
    "log": (np.log, "cright"), "log2": (np.log2, "cright"), "log10": (np.log10, "cright"),
    "log1p": (np.log1p, "cright"), "expm1": (np.expm1, "complex"),
    "sqrt": (np.sqrt, "cright"), "square": (np.square, "complex"),
    "reciprocal": (np.reciprocal, "cnonzero"), "sin": (np.sin, "complex"),
    "cos": (np.cos, "complex"), "tan": (np.tan, "csmall"), "arcsin": (np.arcsin, "csmall"),
    "arccos": (np.arccos, "csmall"), "arctan": (np.arctan, "csmall"),
    "sinh": (np.sinh, "complex"), "cosh": (np.cosh, "complex"), "tanh": (np.tanh, "csmall"),
    "arcsinh": (np.arcsinh, "csmall"), "arccosh": (lambda z: np.arccosh(z + 1.0), "cright"),
    "arctanh": (np.arctanh, "csmall"),
}
for _name, (_ufunc, _domain) in HOLOMORPHIC.items():
    case(_name, [_domain], one_shape(), covers=[_name])(_ufunc)

BINARY = {
    "add": (np.add, "complex", "complex"), "sub": (np.subtract, "complex", "complex"),
    "mul": (np.multiply, "complex", "complex"), "div": (np.divide, "complex", "cnonzero"),
    "pow": (np.power, "cright", "csmall"),
}
for _name, (_ufunc, _dx, _dy) in BINARY.items():
    case(_name, [_dx, _dy], two_shapes(), covers=[_name])(_ufunc)


# -- the non-holomorphic ones ----------------------------------------------------------
@case("parts", ["complex"], one_shape(), covers=["real", "imag", "conj"])
def _parts(z):
    return np.real(z) * np.imag(z) + np.conj(z) * z.real - z.conj() * z.imag


@case("abs", ["cnonzero"], one_shape(), covers=["abs"])
def _abs(z):
    return np.abs(z)


@case("angle", ["cnonzero"], one_shape(), covers=["arctan2"])
def _angle(z):
    return np.angle(z) + np.angle(z, deg=True)


@case("sign", ["cnonzero"], one_shape(), covers=["abs"])
def _sign(z):
    return np.sign(z)


@case("integer_power", ["complex"], one_shape(), covers=["pow", "square"])
def _integer_power(z):
    return z ** 3 + z ** 2


@case("where", ["complex", "complex"], two_shapes(), covers=["where"])
def _where(a, b):
    taken = np.arange(np.size(a)).reshape(np.shape(a)) % 2 == 0  # no branch flips within eps
    return np.where(taken, a * b, a - b) + np.where(np.abs(b) > 10.0, 0.0, b)


# -- reductions and structure -----------------------------------------------------------
def one_shape_axis(data):
    shp = data.draw(shapes(min_side=1), label="shape")
    return (shp,), {"axis": data.draw(axes_for(shp), label="axis")}


@case("sum", ["complex"], one_shape_axis, covers=["sum"])
def _sum(z, axis):
    return np.sum(z * z, axis=axis)


@case("prod", ["cnonzero"], one_shape_axis, covers=["prod"])
def _prod(z, axis):
    return np.prod(z, axis=axis)


@case("mean", ["complex"], one_shape_axis, covers=["sum"])
def _mean(z, axis):
    return np.mean(np.exp(z), axis=axis, keepdims=True)


@case("var_std_norm_vdot", ["complex", "complex"], lambda data: (((3, 4), (3, 4)), {}),
      covers=["real", "imag", "conj"])
def _var_std_norm_vdot(a, b):  # NumPy's |x|**2 and conjugated first argument, not x*x
    return (np.var(a, axis=0) + np.std(b) + np.linalg.norm(a) + np.linalg.norm(b[0])
            + np.vdot(a, b))


@case("cumsum", ["complex"], one_shape(min_dims=1), covers=["cumsum"])
def _cumsum(z):
    return np.cumsum(z * z, axis=-1)


@case("reshape_transpose", ["complex"], one_shape(min_dims=2), covers=["reshape", "transpose"])
def _reshape_transpose(z):
    return np.reshape(z.T, (-1,)) * 2j


@case("broadcast_to", ["complex"], one_shape(max_dims=2), covers=["broadcast_to"])
def _broadcast_to(z):
    return np.broadcast_to(z, (3,) + z.shape) * np.arange(3.0).reshape((3,) + (1,) * z.ndim)


@case("take", ["complex"], one_shape(min_dims=1, min_side=2), covers=["take"])
def _take(z):
    return z[..., ::-1] * z[..., :1] + np.roll(z, 1, axis=-1)


@case("scatter", ["complex", "complex"], lambda data: (((4,), (2,)), {}),
      covers=["scatter_set", "scatter_add"])
def _scatter(z, w):
    out = np.concatenate([z, w * w])
    out[1:3] = w * z[:2]
    return out[:4] + fa.numpy.scatter_add(z, np.array([0, 0, 3]), w[0])


@case("matmul", ["complex", "complex"], lambda data: (((2, 3, 4), (4, 2)), {}),
      covers=["matmul"])
def _matmul(a, b):
    return a @ b


@case("solve", ["cmatrix", "complex"], lambda data: (((2, 3, 3), (2, 3, 2)), {}),
      covers=["solve"], f32_tolerances={"eps": 2e-3, "rtol": 5e-2, "atol": 1e-2})
def _solve(a, b):
    return np.linalg.solve(a, b) * np.sum(np.linalg.inv(a))


# -- decompositions, which are not holomorphic: their rules use conjugate transposes --------
_F32_DECOMPOSITION = {"eps": 2e-3, "rtol": 5e-2, "atol": 2e-2}


def _batch_of_matrices(rows, cols):
    return lambda data: ((data.draw(st.sampled_from([(), (2,)]), label="batch")
                          + (rows, cols),), {})


@case("cholesky", ["cmatrix"], _batch_of_matrices(3, 3), covers=["cholesky"],
      f32_tolerances=_F32_DECOMPOSITION)
def _cholesky(a):  # Hermitian positive definite from any a; and a's lower triangle read
    h = a @ np.conj(np.swapaxes(a, -1, -2)) + 3.0 * np.eye(3)
    return np.linalg.cholesky(h) + np.linalg.cholesky(np.tril(h) + 0.5 * np.triu(a, 1))


@case("eigh", ["cmatrix"], _batch_of_matrices(3, 3), covers=["eigh"],
      f32_tolerances=_F32_DECOMPOSITION)
def _eigh(a):  # the eigenvectors' phases are arbitrary: their moduli
    w, v = np.linalg.eigh(a, UPLO="L")
    return w + np.linalg.eigvalsh(a, UPLO="U")[..., ::-1], np.abs(v)


@case("svd", ["complex"], lambda data: ((data.draw(st.sampled_from(
      [(3, 3), (4, 2), (2, 4), (2, 3, 2)]), label="shape"),), {}), covers=["svd"],
      f32_tolerances=_F32_DECOMPOSITION)
def _svd(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    # U diag(s) V^H sees U's and V's phases together; |U|, |V^H| each alone
    return s, np.abs(u), np.abs(vh), (u * s[..., None, :]) @ vh


@case("det_slogdet", ["cmatrix"], _batch_of_matrices(3, 3), covers=["logabsdet"],
      f32_tolerances=_F32_DECOMPOSITION)
def _det_slogdet(a):  # det is holomorphic; slogdet's sign a phase, its log |det| real
    sign, logdet = np.linalg.slogdet(a)
    return np.linalg.det(a), sign, logdet


@case("qr_pinv", ["complex"], lambda data: ((data.draw(st.sampled_from(
      [(3, 3), (4, 2), (2, 4, 3)]), label="shape"),), {}), covers=["qr", "pinv"],
      f32_tolerances=_F32_DECOMPOSITION)
def _qr_pinv(a):
    q, r = np.linalg.qr(a)
    return q, r, np.linalg.pinv(a)


@pytest.mark.parametrize("dtype", COMPLEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@FAST
@given(data=st.data())
def test_values_and_derivatives(case, dtype, data):
    case.run(data, dtype)


# -- real and complex arguments together --------------------------------------------------
MIXED = {
    "mul": lambda x, z: x * z,
    "div": lambda x, z: z / (x + 3.0),
    "add_broadcast": lambda x, z: np.reshape(x, (-1, 1)) + z,
    "matmul": lambda x, z: np.reshape(x, (3, 1)) @ np.reshape(z, (1, 3)),
    "exp_i": lambda x, z: np.exp(1j * x) * z,
    "where": lambda x, z: np.where(x > 0, z, x),
    "concatenate": lambda x, z: np.concatenate([x, z]),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_real_and_complex_arguments(name):
    """A real argument's cotangent is real and its tangent stays real."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.0, 1.0, 3)
    z = make_args(4, ((3,),), ("complex",), np.complex128)[0]
    fa.check_grads(MIXED[name], (x, z), order=2)
    _, vjp_fn = fa.vjp(MIXED[name], x, z)
    out = MIXED[name](x, z)
    gx, gz = vjp_fn(np.ones_like(out) * (1 + 2j))
    assert gx.dtype == np.float64 and gz.dtype == np.complex128


# -- gradients of real-valued functions of complex inputs: as autograd ---------------------
REAL_LOSSES = {
    "abs2": lambda np_: lambda z: np_.sum(np_.abs(z) ** 2),
    "abs": lambda np_: lambda z: np_.sum(np_.abs(z * z + 1.0)),
    "real": lambda np_: lambda z: np_.sum(np_.real(z * z * z)),
    "imag": lambda np_: lambda z: np_.sum(np_.imag(np_.exp(z) * np_.sin(z))),
    "conj": lambda np_: lambda z: np_.sum(np_.real(np_.conj(z) * 1j * z ** 2)),
    "angle": lambda np_: lambda z: np_.sum(np_.angle(z) * np_.abs(z)),
    "log_abs": lambda np_: lambda z: np_.sum(np_.log(np_.abs(np_.tanh(z)))),
    "matmul": lambda np_: lambda z: np_.sum(np_.abs(np_.dot(np_.reshape(z, (2, 2)), z[:2]))),
    "real_input": lambda np_: lambda x: np_.sum(np_.abs(np_.exp(1j * x) * (1 + 2j) + x) ** 2),
}


@pytest.mark.parametrize("name", sorted(REAL_LOSSES))
@pytest.mark.parametrize("dtype", (np.complex128, np.float64), ids=("complex", "real"))
def test_gradient_matches_autograd(name, dtype):
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    rng = np.random.default_rng(5)
    z = rng.uniform(-1.0, 1.0, 4) + (1j * rng.uniform(-1.0, 1.0, 4) if dtype == np.complex128
                                     else 0.0)
    ours = fa.grad(REAL_LOSSES[name](np))(z)
    theirs = autograd.grad(REAL_LOSSES[name](anp))(z)
    assert ours.dtype == np.result_type(z)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    compiled = fa.compile(REAL_LOSSES[name](np), backend="numpy")(z)
    np.testing.assert_allclose(compiled, theirs, rtol=1e-10, atol=1e-12)


def test_gradient_of_a_complex_output_is_a_type_error():
    z = np.array([1.0 + 2.0j, 0.5j])
    with pytest.raises(TypeError, match="real-valued output"):
        fa.grad(lambda z: np.sum(z * z))(z)
    with pytest.raises(TypeError, match="real-valued output"):
        fa.compile(lambda z: np.sum(z * z), backend="numpy")(z)


def test_complex_scalars_and_traced_attributes():
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    f = fa.grad(lambda z: np.abs(z.conj() * z.real + z.imag * 1j) ** 2)
    w = 0.3 - 1.2j
    want = autograd.grad(lambda z: anp.abs(anp.conj(z) * anp.real(z) + anp.imag(z) * 1j) ** 2)(w)
    np.testing.assert_allclose(f(w), want, rtol=1e-12)
    assert fa.grad(lambda x: np.real(np.imag(x) + x))(1.5) == 1.0  # real input: imag is 0


def test_tape_of_complex_values_round_trips():
    z = np.array([1.0 + 2.0j, -0.5 + 0.25j], np.complex64)
    tape = fa.make_tape(lambda z: np.abs(np.exp(z) * (1 + 1j)))(z)
    assert "c64[2]" in str(tape)
    again = fa.Tape.from_bytes(tape.to_bytes())
    np.testing.assert_allclose(evaluate(again, [z])[0], np.abs(np.exp(z) * (1 + 1j)),
                               rtol=1e-6)


# -- compiled backends: the same numbers as the reference -------------------------------
# Each mixes many primitives, so that few functions (each a Numba compilation)
# cover them all.
COMPILED = {
    "holomorphic": lambda z: np.sum(np.abs(np.exp(z) * z + np.sqrt(z) / (z + 2.0)
                                           + np.log(z) * np.sin(z) - np.cos(z) ** 3
                                           + np.tanh(z) * np.arcsinh(z) + np.exp2(z)
                                           - np.log1p(z) * np.log10(z) + z ** (1.5 + 0.5j)
                                           + 1.0 / np.arctan(z)) ** 2),
    "parts": lambda z: np.sum(np.real(z) * np.imag(z * z) + np.angle(z) + np.abs(np.conj(z) * 1j)
                              + np.sign(z).real),
    "mixed": lambda z: np.sum(np.abs(np.exp(1j * np.abs(z)) + np.real(z) * z
                                     + np.where(np.abs(z) > 1.0, z, 2.0 * z)) ** 2),
    "structure": lambda z: np.sum(np.abs(np.cumsum(z[::-1]) * np.reshape(z, (2, 3)).T.sum()
                                         + np.prod(z) * np.concatenate([z[:3], z[3:] ** 2])) ** 2),
    "linalg": lambda z: np.sum(np.abs(np.linalg.solve(np.reshape(z[:4], (2, 2)) + 3.0, z[4:])
                                      + np.reshape(z, (2, 3)) @ z[:3]) ** 2),
    # decompositions (Numba's kernels are real: host calls there)
    "decompositions": lambda z: _decompositions(z),
}


def _decompositions(z):
    a, b = np.reshape(z, (3, 2)), np.reshape(z[:4], (2, 2))
    return (np.sum(np.linalg.svd(a, compute_uv=False)) + np.sum(np.linalg.eigvalsh(b) ** 2)
            + np.sum(np.abs(np.linalg.qr(a)[1])) + np.sum(np.abs(np.linalg.pinv(a.T)))
            + np.sum(np.abs(np.linalg.cholesky(b @ np.conj(b).T + 2.0 * np.eye(2))))
            + np.abs(np.linalg.det(b)) + np.real(np.linalg.slogdet(b)[0]))


# complex64 for one function only: each case is a Numba compilation (up to 40 s cold)
@pytest.mark.parametrize("name, dtype", [(name, np.complex128) for name in sorted(COMPILED)]
                         + [("holomorphic", np.complex64)])
def test_compiled_agrees_with_reference(backend, name, dtype):
    z = make_args(7, ((6,),), ("cright",), dtype)[0]
    f = COMPILED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the C VM falls back
        got_value, got_grad = fa.compile(f, backend=backend).value_and_grad(z)
        tape = fa.compile(f, backend="numpy")
        want_value, want_grad = tape.value_and_grad(z)
    rtol = 1e-10 if dtype == np.complex128 else 1e-4
    assert got_grad.dtype == dtype
    np.testing.assert_allclose(got_value, want_value, rtol=rtol)
    np.testing.assert_allclose(got_grad, want_grad, rtol=rtol, atol=rtol)


def test_numba_runs_complex_code_itself():
    if "numba" not in fa.backends_available():
        pytest.skip("numba is not installed")
    from fastad.backends import numba_backend
    z = make_args(8, ((6,),), ("cright",), np.complex128)[0]
    g = fa.compile(COMPILED["holomorphic"], backend="numba")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        g(z)
    assert isinstance(g.program, numba_backend.Executable)


def test_fallback_warns_once_naming_the_dtype():
    if "c" not in fa.backends_available():
        pytest.skip("the C backend is not built")

    def f(z):
        return np.sum(np.abs(z) ** 2)
    g = fa.compile(f, backend="c")
    z = np.array([1.0 + 1.0j, 2.0 - 1.0j])
    with pytest.warns(UserWarning, match="complex128") as caught:
        g(z)
    assert len([w for w in caught if "runs on the" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g(z * 2.0)  # same signature: no new trace, no new warning
