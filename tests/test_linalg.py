"""Matrix decompositions (numpy.linalg and fastad.scipy.linalg), batched over
leading axes: values against NumPy/SciPy, forward and reverse derivatives to
second order against finite differences, compiled against the reference.
Eigen- and singular vectors are compared through sign-invariant functions
of them (their squares), since their signs are a convention.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.scipy.linalg as fla
from conftest import BACKENDS
from helpers import DOMAINS, FAST, Case, case_test, registrar, shapes


def _orthonormal(rng, shape):
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    return q


def _gapped(rng, batch, k):
    """k values per batch entry, increasing by at least 0.5 from 1."""
    return 1.0 + 0.7 * np.arange(k) + rng.uniform(0.0, 0.2, batch + (k,))


def spd(rng, shape):
    """Symmetric positive definite, eigenvalues distinct (gaps >= 0.5) in [1, 4]."""
    q = _orthonormal(rng, shape)
    w = _gapped(rng, shape[:-2], shape[-1])
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


def distinct_singular(rng, shape):
    """Any shape; singular values distinct (gaps >= 0.5) and >= 1."""
    m, n = shape[-2:]
    k = min(m, n)
    u = _orthonormal(rng, shape[:-2] + (m, k))
    v = _orthonormal(rng, shape[:-2] + (n, k))
    return u @ (_gapped(rng, shape[:-2], k)[..., :, None] * np.swapaxes(v, -1, -2))


def real_eigen(rng, shape):
    """Non-symmetric, with real eigenvalues at least 0.5 apart."""
    n = shape[-1]
    p = np.eye(n) + rng.uniform(-0.2, 0.2, shape) / max(n, 1)
    w = _gapped(rng, shape[:-2], n) * rng.choice([-1.0, 1.0], shape[:-2] + (1,))
    return p @ (w[..., :, None] * np.linalg.inv(p))


DOMAINS.setdefault("spd", spd)
DOMAINS.setdefault("distinct_singular", distinct_singular)
DOMAINS.setdefault("real_eigen", real_eigen)

# float32: a smaller step than the default 1e-2, where curvature (1 / gap^2) dominates
F32 = {"eps": 3e-3, "rtol": 0.1, "atol": 0.02}
CASES: list[Case] = []


case = registrar(CASES, f32_tolerances=F32)


@st.composite
def square(draw, count=1, min_n=1):
    batch = draw(shapes(max_dims=2, min_side=1, max_side=2), label="batch")
    n = draw(st.integers(min_n, 4), label="n")
    return tuple(batch + (n, n) for _ in range(count)), {}


@st.composite
def rectangular(draw, tall=False, batched=True):
    batch = draw(shapes(max_dims=2 if batched else 0, min_side=1, max_side=2), label="batch")
    m, n = draw(st.integers(1, 4), label="m"), draw(st.integers(1, 4), label="n")
    if tall and m < n:
        m, n = n, m
    return (batch + (m, n),), {}


def squares(**kw):
    return lambda data: data.draw(square(**kw))


# -- numpy.linalg ----------------------------------------------------------------------
@case("cholesky", ["spd"], squares(), covers=["cholesky"])
def _cholesky(a):
    lower = np.linalg.cholesky(a)
    return lower, np.linalg.cholesky(a, upper=True), np.sum(np.log(np.diagonal(
        lower, axis1=-2, axis2=-1)), axis=-1)


@case("eigh", ["spd"], squares(), covers=["eigh"])
def _eigh(a):
    w, v = np.linalg.eigh(a)
    wu, vu = np.linalg.eigh(a, UPLO="U")
    return w, v ** 2, wu * 2.0, vu ** 2, np.linalg.eigvalsh(a)


# float64 only: float32's finite-difference step (1e-2) can reorder the eigenvalues
@case("eig", ["real_eigen"], squares(), covers=["eig"], dtypes=(np.float64,))
def _eig(a):
    w, v = np.linalg.eig(a)
    return w, v ** 2, np.linalg.eigvals(a)


@case("svd", ["distinct_singular"], lambda data: data.draw(rectangular()), covers=["svd"])
def _svd(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return s, u ** 2, vh ** 2, np.linalg.svd(a, compute_uv=False)


@case("svd_square_full", ["distinct_singular"], squares(), covers=["svd"])
def _svd_square(a):
    u, s, vh = np.linalg.svd(a)
    return s, (u * vh.swapaxes(-1, -2)) * 3.0  # the product of the two signs is fixed


# float64: float32's finite-difference step can flip a Householder reflection's sign
@case("qr", ["distinct_singular"], lambda data: data.draw(rectangular(tall=True)), covers=["qr"],
      dtypes=(np.float64,))
def _qr(a):
    q, r = np.linalg.qr(a)
    return q, r, np.linalg.qr(a, mode="r")


@case("qr_sign_invariant", ["distinct_singular"], lambda data: data.draw(rectangular(tall=True)),
      covers=["qr"])
def _qr_squares(a):
    q, r = np.linalg.qr(a)
    return q ** 2, r ** 2


@case("pinv", ["distinct_singular"], lambda data: data.draw(rectangular()), covers=["pinv"])
def _pinv(a):
    return np.linalg.pinv(a)


@st.composite
def power_args(draw):
    (shape,), _ = draw(square())
    return (shape,), {"n": draw(st.integers(-2, 3))}


case("matrix_power", ["matrix"], lambda data: data.draw(power_args()))(np.linalg.matrix_power)


# -- fastad.scipy.linalg -----------------------------------------------------------------
@st.composite
def triangular_args(draw):
    (shape,), _ = draw(square())
    vector = draw(st.booleans())
    b = shape[:-1] if vector else shape[:-1] + (draw(st.integers(1, 3)),)
    if vector and len(shape) > 2:  # SciPy reads a 1-d b against every matrix only
        b = shape[:-1] + (1,)
    params = {"lower": draw(st.booleans()), "trans": draw(st.sampled_from([0, 1, "T"])),
              "unit_diagonal": draw(st.booleans())}
    return (shape, b), params


def _scipy_batched(fn):
    """SciPy's function over a stack of matrices (its own batching is recent)."""
    def batched(a, *rest, **kw):
        a = np.asarray(a)
        if a.ndim == 2:
            return fn(a, *rest, **kw)
        rest = [np.broadcast_to(r, a.shape[:-2] + np.shape(r)[-2:]) for r in rest]
        out = [fn(a[i], *(r[i] for r in rest), **kw) for i in np.ndindex(*a.shape[:-2])]
        return np.stack(out).reshape(a.shape[:-2] + np.shape(out[0]))
    return batched


def _triangular(a, b, **kw):
    return fla.solve_triangular(a, b, **kw)


case("solve_triangular", ["matrix", "real"], lambda data: data.draw(triangular_args()),
     covers=["solve_triangular"], oracle=_scipy_batched(sla.solve_triangular))(_triangular)


@st.composite
def triangular_product_args(draw):
    (shape,), _ = draw(square())
    b = shape[:-1] + (draw(st.integers(1, 3), label="k"),)
    return (shape, b), {"lower": draw(st.booleans()), "trans": draw(st.booleans())}


def _triangular_product_oracle(a, b, lower, trans):
    t = np.tril(a) if lower else np.triu(a)
    return np.swapaxes(t, -1, -2) @ b if trans else t @ b


@case("triangular_matmul", ["matrix", "real"], lambda data: data.draw(triangular_product_args()),
      covers=["triangular_matmul"], oracle=_triangular_product_oracle)
def _triangular_product(a, b, lower, trans):
    """op(T) b (trmm on the VM), the product the Cholesky adjoint uses."""
    from fastad.primitives.linalg import triangular_matmul
    return triangular_matmul(a, b, lower, trans)


def _scipy_cholesky_pair(a):
    return (_scipy_batched(sla.cholesky)(a), _scipy_batched(sla.cholesky)(a, lower=True))


@case("scipy_cholesky", ["spd"], squares(), covers=["cholesky"], oracle=_scipy_cholesky_pair)
def _fastad_cholesky_pair(a):
    return fla.cholesky(a), fla.cholesky(a, lower=True)


def _cho_solve_oracle(a, b):
    return (sla.cho_solve(sla.cho_factor(a), b),
            sla.cho_solve(sla.cho_factor(a, lower=True), b))


@st.composite
def cho_solve_args(draw):
    n = draw(st.integers(1, 4))
    return ((n, n), (n, draw(st.integers(1, 3)))), {}


@case("cho_solve", ["spd", "real"], lambda data: data.draw(cho_solve_args()),
      covers=["solve_triangular"], oracle=_cho_solve_oracle)
def _cho_solve(a, b):
    return (fla.cho_solve(fla.cho_factor(a), b), fla.cho_solve(fla.cho_factor(a, lower=True), b))


case("expm", ["real"], squares(), oracle=_scipy_batched(sla.expm))(fla.expm)


case("sqrtm", ["spd"], squares(), covers=["sqrtm"],
     oracle=_scipy_batched(lambda a: np.real(sla.sqrtm(a))))(fla.sqrtm)


@case("solve_sylvester", ["spd", "spd", "real"], squares(count=3), covers=["sylvester"],
      oracle=_scipy_batched(sla.solve_sylvester))
def _sylvester(a, b, q):
    return fla.solve_sylvester(a, b, q)


@case("scipy_decompositions", ["distinct_singular"],
      lambda data: data.draw(rectangular(tall=True, batched=False)),
      oracle=lambda a: (sla.svd(a, full_matrices=False)[1], sla.qr(a, mode="economic")[1] ** 2,
                        sla.eigh(a.T @ a, eigvals_only=True)))
def _scipy_decompositions(a):
    return (fla.svd(a, full_matrices=False)[1], fla.qr(a, mode="economic")[1] ** 2,
            fla.eigh(a.T @ a, eigvals_only=True))


test_values_and_derivatives = case_test(CASES)


# -- refused clearly -------------------------------------------------------------------------
def test_eig_with_complex_eigenvalues_is_complex_and_differentiable():
    rotation = np.array([[0.0, -1.0, 0.2], [1.0, 0.0, 0.3], [0.1, 0.2, 0.5]])
    w, v = fa.vjp(np.linalg.eig, rotation)[0]
    assert w.dtype == np.complex128
    np.testing.assert_allclose(w, np.linalg.eigvals(rotation))

    def f(a):  # the eigenvectors through a function of them their phase does not change
        w, v = np.linalg.eig(a)
        return np.sum(np.real(w) ** 3 + np.imag(w) ** 2) + np.sum(np.abs(v[0]) ** 2 * w.real)
    fa.check_grads(f, (rotation,), order=2)
    fa.check_grads(lambda z: np.linalg.eigvals(z), (rotation + 0.3j * rotation.T,), order=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = fa.jit(fa.grad(f))
        for a in (rotation, rotation * 1.1, np.diag([1.0, 2.0, 3.0]) + 0.1):  # real: retraces
            np.testing.assert_allclose(g(a), fa.grad(f)(a), rtol=1e-10)


def test_full_svd_of_a_rectangular_matrix_is_refused():
    # its values compile (tests/test_linalg_singular.py); its derivative, as JAX's, does not exist
    with pytest.raises(NotImplementedError, match="full_matrices=False"):
        fa.grad(lambda a: np.sum(np.linalg.svd(a)[0]))(np.ones((3, 2)))


def test_qr_of_a_wide_matrix_is_refused():
    with pytest.raises(NotImplementedError, match="no derivative"):
        fa.grad(lambda a: np.sum(np.linalg.qr(a)[1]))(np.ones((2, 3)))


def test_results_have_numpys_field_names():
    a = spd(np.random.default_rng(0), (3, 3))

    def f(a):
        eig = np.linalg.eigh(a)
        svd = np.linalg.svd(a)
        qr = np.linalg.qr(a)
        return eig.eigenvalues, eig.eigenvectors ** 2, svd.S, qr.R ** 2

    got, _ = fa.vjp(f, a)
    want = f(a)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


# -- vmap and compiled ------------------------------------------------------------------------
COMPILED = [
    lambda a: np.sum(np.linalg.eigh(a)[0] ** 2) + np.sum(np.log(np.diagonal(
        np.linalg.cholesky(a), axis1=-2, axis2=-1))),
    lambda a: np.sum(np.linalg.svd(a, compute_uv=False) ** 3) + np.sum(np.linalg.qr(a)[1] ** 2),
    lambda a: np.sum(np.linalg.pinv(a) * a) + np.sum(fla.sqrtm(a) ** 2),
    lambda a: np.sum(fla.solve_triangular(a, np.ones(a.shape[:-1]), lower=True) ** 2),
]


@pytest.mark.parametrize("f", COMPILED)
def test_compiled_agrees_with_the_reference(compiled_backend, f):
    a = spd(np.random.default_rng(5), (2, 3, 3))
    v = np.random.default_rng(6).standard_normal(a.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback warning
        got = fa.compile(f, backend=compiled_backend).value_and_grad(a)
        # Numba compiles the second-order tapes of these decompositions natively, in
        # minutes when its cache is cold: their Hessian-vector products on the VM only
        hvp = (fa.jit(fa.hvp(f), backend=compiled_backend)(a, v)
               if compiled_backend != "numba" else None)
    want = fa.value_and_grad(f)(a)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-11, atol=1e-13)
    if hvp is not None:
        np.testing.assert_allclose(hvp, fa.hvp(f)(a, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f", COMPILED)
def test_vmap_over_a_stack_of_matrices(f):
    a = spd(np.random.default_rng(7), (3, 3, 3))
    np.testing.assert_allclose(fa.vmap(fa.grad(f))(a), np.stack([fa.grad(f)(x) for x in a]),
                               rtol=1e-11, atol=1e-13)


# -- cholesky and triangular solves as compiled instructions -------------------------------
# the compiled backends that run cholesky and triangular solves natively (no host
# call, so no fallback warning); eigh, svd and qr too
NATIVE_CHOLESKY = {"c", "numba"}
COMPILED = "c" if "c" in BACKENDS else "numpy"


@contextlib.contextmanager
def _no_host_call(backend):
    """A host call warns (the fallback warning): an error where there must be none."""
    with warnings.catch_warnings():
        warnings.simplefilter("error" if backend in NATIVE_CHOLESKY else "ignore", UserWarning)
        yield

def _gp_like(a, b, lower, trans):
    """A Cholesky factor and triangular solves with it, both triangles and both
    orientations (trans=1 reads the factor transposed)."""
    chol = np.linalg.cholesky(a)
    tri = chol if lower else np.swapaxes(chol, -1, -2)
    x = fla.solve_triangular(tri, b, lower=lower, trans=trans)
    return (np.sum(x ** 2) + np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)))
            + np.sum(fla.solve_triangular(chol, x, lower=True, trans=1 - trans) * b))


@st.composite
def gp_like_args(draw):
    batch = draw(shapes(max_dims=2, min_side=1, max_side=3), label="batch")
    n, k = draw(st.integers(1, 6), label="n"), draw(st.integers(1, 3), label="k")
    return batch, n, k, draw(st.booleans(), label="lower"), draw(st.sampled_from([0, 1]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@FAST
@given(args=gp_like_args())
def test_compiled_cholesky_and_triangular_solves_agree_with_the_reference(dtype, args):
    """Batched cholesky and triangular solves compiled (on the C VM: potrf and trsm
    instructions, the solves' transposes read through trsm's flag): value, gradient
    and Hessian-vector product equal the reference interpreter's, and the gradient
    matches central finite differences in a random direction."""
    _check_gp_like(COMPILED, dtype, *args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("args", [((2,), 4, 3, True, 1), ((), 5, 1, False, 0)],
                         ids=["batched", "single"])
def test_every_compiled_backend_runs_cholesky_and_triangular_solves(compiled_backend, dtype,
                                                                    args):
    """The same on every compiled backend (Numba compiles slowly: two shapes)."""
    _check_gp_like(compiled_backend, dtype, *args)


def _check_gp_like(compiled_backend, dtype, batch, n, k, lower, trans):
    rng = np.random.default_rng(len(batch) * 100 + n * 10 + k)
    a, b = spd(rng, batch + (n, n)).astype(dtype), rng.standard_normal(batch + (n, k)).astype(dtype)
    v = rng.standard_normal(a.shape).astype(dtype)

    def f(a, b):
        return _gp_like(a, b, lower, trans)

    with _no_host_call(compiled_backend):
        compiled = fa.compile(f, backend=compiled_backend, argnums=(0, 1))
        got = compiled.value_and_grad(a, b)
        hvp = fa.jit(fa.hvp(lambda a: f(a, b)), backend=compiled_backend)(a, v)
    reference = fa.compile(f, backend="numpy", argnums=(0, 1)).value_and_grad(a, b)
    rtol, atol = (1e-10, 1e-11) if dtype == np.float64 else (2e-3, 2e-3)
    scale = max(1.0, abs(float(reference[0])))
    np.testing.assert_allclose(got[0], reference[0], rtol=rtol, atol=atol * scale)
    for g, w in zip(got[1], reference[1]):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * max(1.0, np.abs(w).max()))
    want_hvp = fa.hvp(lambda a: f(a, b))(a, v)
    np.testing.assert_allclose(hvp, want_hvp, rtol=rtol * 10,
                               atol=atol * 10 * max(1.0, np.abs(want_hvp).max()))
    if dtype == np.float64:  # central differences along a symmetric direction
        d = v + np.swapaxes(v, -1, -2)
        eps = 1e-6
        fd = (f(a + eps * d, b) - f(a - eps * d, b)) / (2 * eps)
        np.testing.assert_allclose(np.sum(got[1][0] * d), fd, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_compiled_cholesky_of_an_indefinite_matrix_raises_as_numpy_does(compiled_backend, dtype):
    """A matrix that is not positive definite: LinAlgError, as numpy.linalg.cholesky
    raises, on a compiled call after a good one too (never a crash or garbage)."""
    good = spd(np.random.default_rng(1), (2, 3, 3)).astype(dtype)
    bad = good.copy()
    bad[1, 2, 2] = -5.0
    f = fa.jit(fa.value_and_grad(lambda a: np.sum(np.linalg.cholesky(a) ** 2)),
               backend=compiled_backend)
    with _no_host_call(compiled_backend):
        value, _grad = f(good)
    np.testing.assert_allclose(value, np.sum(np.linalg.cholesky(good) ** 2), rtol=1e-5)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(bad)
    with pytest.raises(np.linalg.LinAlgError):
        f(bad)


@pytest.mark.parametrize("lower", [True, False])
def test_compiled_solve_with_a_zero_on_the_diagonal_raises(compiled_backend, lower):
    """A singular triangle: LinAlgError, as the reference's solve raises."""
    rng = np.random.default_rng(2)
    a = np.tril(rng.uniform(1, 2, (4, 4))) if lower else np.triu(rng.uniform(1, 2, (4, 4)))
    f = fa.jit(lambda a, b: np.sum(fla.solve_triangular(a, b, lower=lower)),
               backend=compiled_backend)
    with _no_host_call(compiled_backend):
        f(a, np.ones(4))
    a[2, 2] = 0.0
    for call in (f, lambda a, b: fla.solve_triangular(a, b, lower=lower)):
        with pytest.raises(np.linalg.LinAlgError):
            call(a, np.ones(4))


@pytest.mark.parametrize("order", ["vjp", "jvp", "hvp"])
def test_cholesky_derivatives_solve_triangles_only(order):
    """Murray's rules: the Cholesky VJP and JVP (and their derivatives, in a Hessian-vector
    product) are triangular solves and products, never a general solve or an inverse;
    on the C VM, trsm instructions and no host call."""
    rng = np.random.default_rng(3)
    a, v = spd(rng, (2, 4, 4)), rng.standard_normal((2, 4, 4))

    def f(a):
        return np.sum(np.linalg.cholesky(a) ** 2)

    make = {"vjp": lambda: fa.make_tape(fa.grad(f))(a),
            "jvp": lambda: fa.make_tape(lambda a, v: fa.jvp(f, (a,), (v,)))(a, v),
            "hvp": lambda: fa.make_tape(fa.hvp(f))(a, v)}[order]
    tape = make()
    prims = {ins.prim for ins in tape.instrs}
    assert "solve_triangular" in prims
    assert not prims & {"solve", "inv", "pinv", "logabsdet", "eigh", "qr", "svd"}, prims
    if "c" in BACKENDS:
        from fastad.backends.lower import lower
        opcodes = {name for _pc, name, _words in lower(tape).instructions()}
        assert {"TRSOLVE_B", "CHOLESKY_B"} <= opcodes and "SOLVE_B" not in opcodes


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@FAST
@given(batch=shapes(max_dims=2, min_side=1, max_side=3), n=st.integers(1, 6),
       uplo=st.sampled_from(["L", "U"]))
def test_compiled_eigh_agrees_with_the_reference(dtype, batch, n, uplo):
    """eigh compiled (on the C VM a syevd instruction, no host call): eigenvalues,
    squared eigenvectors (sign-invariant) and the gradient of a function of both
    equal the reference interpreter's; NaN input raises LinAlgError where NumPy's does."""
    rng = np.random.default_rng(len(batch) * 10 + n)
    a = spd(rng, batch + (n, n)).astype(dtype)

    def f(a):
        w, v = np.linalg.eigh(a, UPLO=uplo)
        return np.sum(w ** 2) + np.sum(v[..., 0, :] ** 2 * w)

    with _no_host_call(COMPILED):
        parts = fa.jit(lambda a: (np.linalg.eigh(a, UPLO=uplo)[0],
                                  np.linalg.eigh(a, UPLO=uplo)[1] ** 2), backend=COMPILED)
        got = parts(a)
        value, grad = fa.compile(f, backend=COMPILED).value_and_grad(a)
    w, v = np.linalg.eigh(a, UPLO=uplo)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got[0], w, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got[1], v ** 2, rtol=rtol, atol=rtol)
    want = fa.compile(f, backend="numpy").value_and_grad(a)
    np.testing.assert_allclose(value, want[0], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grad, want[1], rtol=rtol * 10, atol=rtol * 10)
    nan = np.full_like(a, np.nan)
    try:
        np.linalg.eigh(nan, UPLO=uplo)
    except np.linalg.LinAlgError:
        with pytest.raises(np.linalg.LinAlgError):
            parts(nan)
    else:  # 1 x 1: no iteration, the NaN comes back
        assert np.isnan(parts(nan)[0]).all()


# -- svd and qr as compiled instructions ----------------------------------------------------
# the compiled backends that run svd and qr natively: gesdd and geqrf + orgqr, the drivers
# NumPy calls, in float64 for both dtypes as NumPy does, so the vectors' signs agree
@st.composite
def svd_qr_args(draw):
    batch = draw(shapes(max_dims=2, min_side=1, max_side=3), label="batch")
    return batch, draw(st.integers(1, 6), label="m"), draw(st.integers(1, 6), label="n")


def _weights(rng, *shapes_):
    return [rng.uniform(0.5, 1.5, s) for s in shapes_]


def _check_svd_qr(backend, dtype, batch, m, n):
    rng = np.random.default_rng(len(batch) * 100 + m * 10 + n)
    a = distinct_singular(rng, batch + (m, n)).astype(dtype)
    k = min(m, n)
    cs, cu, cv, cq, cr = _weights(rng, (k,), (m, k), (k, n), (m, n), (n, n))
    tall = m >= n

    def f(a):  # sign-invariant functions of the singular vectors and of Q, R
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        value = np.sum(s ** 2 * cs) + np.sum(u ** 2 * cu) + np.sum(vh ** 2 * cv)
        if tall:
            q, r = np.linalg.qr(a)
            value = value + np.sum(q ** 2 * cq) + np.sum(r ** 2 * cr)
        return value

    def parts(a):
        out = (*np.linalg.svd(a, full_matrices=False), np.linalg.svd(a, compute_uv=False))
        return out + (tuple(np.linalg.qr(a)) + (np.linalg.qr(a, mode="r"),) if tall else ())

    with _no_host_call(backend):
        got = fa.jit(parts, backend=backend)(a)
        value, grad = fa.compile(f, backend=backend).value_and_grad(a)
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    want = (u, s, vh, s) + ((*np.linalg.qr(a), np.linalg.qr(a, mode="r")) if tall else ())
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for g, w in zip(got, want, strict=True):  # the same LAPACK driver: the same signs
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
    # invariants: the factors rebuild a, and their columns are orthonormal
    np.testing.assert_allclose((got[0] * got[1][..., None, :]) @ got[2], a,
                               rtol=rtol * 100, atol=rtol * 100)
    eye = np.eye(k)
    np.testing.assert_allclose(np.swapaxes(got[0], -1, -2) @ got[0], np.broadcast_to(
        eye, batch + (k, k)), atol=rtol * 100)
    if tall:
        np.testing.assert_allclose(got[4] @ got[5], a, rtol=rtol * 100, atol=rtol * 100)
        assert np.array_equal(got[5], np.triu(got[5])) and np.array_equal(got[5], got[6])
    reference = fa.compile(f, backend="numpy").value_and_grad(a)
    tol = 1e-10 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(value, reference[0], rtol=tol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, reference[1], rtol=tol, atol=tol * np.abs(reference[1]).max())
    a64, d = a.astype(np.float64), rng.standard_normal(a.shape)
    eps = 1e-6
    fd = (f(a64 + eps * d) - f(a64 - eps * d)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * d), fd, rtol=1e-5 if dtype == np.float64 else 2e-2,
                               atol=1e-6 * max(1.0, abs(fd)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@FAST
@given(args=svd_qr_args())
def test_compiled_svd_and_qr_agree_with_numpy(dtype, args):
    """svd (tall, wide, square) and qr (tall) compiled, batched (on the C VM the
    SVD_B and QR_B instructions, no host call): the factors equal NumPy's, signs
    included, rebuild the matrix with orthonormal columns; the gradient of
    sign-invariant functions of them equals the reference interpreter's and
    central finite differences in a random direction."""
    _check_svd_qr(COMPILED, dtype, *args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("args", [((2,), 4, 3), ((), 2, 5)], ids=["batched_tall", "wide"])
def test_every_compiled_backend_runs_svd_and_qr(compiled_backend, dtype, args):
    """The same on every compiled backend (Numba compiles slowly: two shapes)."""
    _check_svd_qr(compiled_backend, dtype, *args)


def test_svd_and_qr_lower_to_instructions():
    """No host call left on the C VM: svd and qr each one LAPACK instruction."""
    if "c" not in BACKENDS:
        pytest.skip("the C extension is not built")
    from fastad.backends.lower import lower
    a = distinct_singular(np.random.default_rng(4), (2, 5, 3))
    tape = fa.make_tape(fa.grad(lambda a: np.sum(np.linalg.svd(a, compute_uv=False))
                                + np.sum(np.linalg.qr(a)[1] ** 2)))(a)
    opcodes = [name for _pc, name, _words in lower(tape).instructions()]
    assert opcodes.count("SVD_B") == 1 and opcodes.count("QR_B") == 1


# -- pinv as a compiled instruction, and lstsq with no host call ------------------------------
def _check_pinv_lstsq(backend, dtype, batch, m, n):
    rng = np.random.default_rng(len(batch) * 100 + m * 10 + n + 1)
    a = distinct_singular(rng, batch + (m, n)).astype(dtype)
    a2, b = a.reshape((-1, m, n))[0], rng.standard_normal(m).astype(dtype)
    c = rng.uniform(0.5, 1.5, (n, m))

    def f(a):
        return np.sum(np.linalg.pinv(a) ** 2 * c)

    def g(a, b):
        x, _res, _rank, s = np.linalg.lstsq(a, b)
        return np.sum(x ** 2) + np.sum(s)

    with _no_host_call(backend):
        got = fa.jit(np.linalg.pinv, backend=backend)(a)
        # the rank is a plain int: an output the C VM has no dtype for, so it is not one
        solved = fa.jit(lambda a, b: [np.linalg.lstsq(a, b)[i] for i in (0, 1, 3)],
                        backend=backend)(a2, b)
        value, grad = fa.compile(f, backend=backend).value_and_grad(a)
        lvalue, lgrad = fa.compile(g, backend=backend, argnums=(0, 1)).value_and_grad(a2, b)
    rtol = 1e-11 if dtype == np.float64 else 1e-4
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np.linalg.pinv(a), rtol=rtol, atol=rtol)
    want = np.linalg.lstsq(a2, b)
    np.testing.assert_allclose(solved[0], want[0], rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(solved[1], want[1], rtol=rtol * 100, atol=rtol * 100)
    np.testing.assert_allclose(solved[2], want[3], rtol=rtol, atol=rtol)
    assert fa.numpy.linalg.lstsq(a2, b)[2] == want[2]
    tol = 1e-10 if dtype == np.float64 else 2e-3
    for fn, args, gr, val in ((f, (a,), (grad,), value), (g, (a2, b), lgrad, lvalue)):
        argnums = tuple(range(len(args)))
        ref = fa.compile(fn, backend="numpy", argnums=argnums).value_and_grad(*args)
        ref_grads = ref[1]  # a tuple: argnums is one
        np.testing.assert_allclose(val, ref[0], rtol=tol)
        for x, w in zip(gr, ref_grads, strict=True):
            assert x.dtype == dtype
            np.testing.assert_allclose(x, w, rtol=tol, atol=tol * np.abs(w).max())
        # central differences in a random direction, in float64
        dirs = [rng.standard_normal(np.shape(x)) for x in args]
        eps = 1e-6
        plus = fn(*(x.astype(np.float64) + eps * d for x, d in zip(args, dirs)))
        minus = fn(*(x.astype(np.float64) - eps * d for x, d in zip(args, dirs)))
        fd = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(sum(np.sum(x * d) for x, d in zip(gr, dirs)), fd,
                                   rtol=1e-5 if dtype == np.float64 else 2e-2,
                                   atol=1e-6 * max(1.0, abs(fd)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@FAST
@given(args=svd_qr_args())
def test_compiled_pinv_and_lstsq_agree_with_numpy(dtype, args):
    """pinv compiled, batched (on the C VM one PINV_B instruction: NumPy's gesdd, cutoff
    and product), and lstsq on top of it with its rank checked by guards on the singular
    values (no host call): values equal NumPy's, gradients the reference interpreter's
    and central finite differences in a random direction."""
    _check_pinv_lstsq(COMPILED, dtype, *args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_every_compiled_backend_runs_pinv_and_lstsq(compiled_backend, dtype):
    """The same on every compiled backend (Numba compiles slowly: one shape)."""
    _check_pinv_lstsq(compiled_backend, dtype, (2,), 4, 3)


def test_lstsq_rank_change_retraces_instead_of_a_host_call():
    """The rank lstsq finds is guarded on the compiled singular values: a matrix of
    another rank fails the guard and gets its own trace, with NumPy's residuals
    (none below full rank) and solution."""
    rng = np.random.default_rng(8)
    full = rng.standard_normal((5, 3))
    low = full.copy()
    low[:, 2] = low[:, 0] + low[:, 1]
    b = rng.standard_normal(5)
    f = fa.jit(lambda a, b: np.linalg.lstsq(a, b)[:2], backend=COMPILED)
    assert np.linalg.lstsq(full, b)[2] == 3 and np.linalg.lstsq(low, b)[2] == 2
    with _no_host_call(COMPILED):
        for a in (full, low, full):
            x, residuals = f(a, b)
            want = np.linalg.lstsq(a, b)
            np.testing.assert_allclose(x, want[0], rtol=1e-8, atol=1e-10)
            assert residuals.shape == want[1].shape
            np.testing.assert_allclose(residuals, want[1], rtol=1e-8)


def test_named_results_are_numpys_types_eager_compiled_and_differentiated():
    """eigh, eig, svd, qr and slogdet give NumPy's named result types
    (``.eigenvalues``, ``.logabsdet``) however they are called."""
    import fastad as fa
    import fastad.numpy as fnp
    a = np.random.default_rng(3).normal(size=(3, 3))
    for name, x in (("eigh", a @ a.T), ("eig", a), ("svd", a), ("qr", a), ("slogdet", a)):
        want = type(getattr(np.linalg, name)(x))
        f = getattr(fnp.linalg, name)
        assert type(f(x)) is want, name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eig is a host call
            assert type(fa.jit(f)(x)) is want, name
        if name != "eig":
            assert type(fa.vjp(f, x)[0]) is want, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("a_shape,b_extra", [((3, 6), ()), ((6, 3), ()), ((6, 3), (2,)),
                                             ((4, 4), ())])
def test_lstsq_results_have_numpys_types_and_dtypes(dtype, a_shape, b_extra):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal(a_shape[:1] + b_extra).astype(dtype)
    want = np.linalg.lstsq(a, b, rcond=None)
    for backend in ("numpy", "c") if "c" in fa.backends_available() else ("numpy",):
        got = fa.jit(lambda a: np.linalg.lstsq(a, b, rcond=None), backend=backend)(a)
        for g, w in zip(got, want):
            assert type(g) is type(w) and np.asarray(g).dtype == np.asarray(w).dtype
            assert np.shape(g) == np.shape(w)
