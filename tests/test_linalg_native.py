"""Every linear-algebra function the compiled backends run natively, in each
dtype, unbatched and batched over one and two leading axes: its value, its
gradient and a JVP compiled with no host call, equal to the eager results,
and the derivatives against central finite differences in random directions.

benchmarks/linalg_coverage.py prints the same table for a whole installation.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastad as fa
import fastad.scipy.linalg as fla
from fastad import backends
from fastad.primitives import linalg as _prims
from conftest import BACKENDS

COMPILED = [b for b in BACKENDS if b != "numpy"]


def _spd(rng, shape):
    """Symmetric positive definite, eigenvalues 0.5 or more apart in [1, 4]."""
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    w = 1.0 + 0.7 * np.arange(shape[-1]) + rng.uniform(0.0, 0.2, shape[:-2] + (shape[-1],))
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


def _rhs(a):
    return np.linspace(-1.0, 1.0, a.shape[-1] * 2).reshape(a.shape[-1], 2).astype(a.dtype)


# name -> a scalar loss of one stack of matrices; functions of eigen- and singular
# vectors and of Q are sign-invariant (even powers), as their derivatives must be
LOSSES = {
    "cholesky": lambda a: np.sum(np.linalg.cholesky(a) ** 2),
    "solve_triangular": lambda a: np.sum(fla.solve_triangular(a, _rhs(a), lower=True) ** 2)
    + np.sum(fla.solve_triangular(a, _rhs(a), lower=False, trans=1) ** 2),
    "solve": lambda a: np.sum(np.linalg.solve(a, _rhs(a)) ** 2),
    "inv": lambda a: np.sum(np.linalg.inv(a) ** 2),
    "det": lambda a: np.sum(np.linalg.det(a)),
    "slogdet": lambda a: np.sum(np.linalg.slogdet(a)[1]),
    "eigh": lambda a: np.sum(np.linalg.eigh(a)[0] ** 2) + np.sum(np.linalg.eigh(a)[1] ** 4),
    "eigh_upper": lambda a: np.sum(np.linalg.eigh(a, UPLO="U")[0] ** 3)
    + np.sum(np.linalg.eigh(a, UPLO="U")[1] ** 2 * np.arange(a.shape[-1], dtype=a.dtype)),
    "svd": lambda a: np.sum(np.linalg.svd(a)[1] ** 2) + np.sum(np.linalg.svd(a)[0] ** 4),
    "qr": lambda a: np.sum(np.linalg.qr(a)[1] ** 2) + np.sum(np.linalg.qr(a)[0] ** 4),
    "lstsq": lambda a: np.sum(np.linalg.lstsq(a, _rhs(a)[:, 0])[0] ** 2),
}
BATCHES = [(), (2,), (2, 3)]
N = 4


def _cases():
    for name in LOSSES:
        for dtype in (np.float64, np.float32):
            for batch in BATCHES if name != "lstsq" else [()]:  # lstsq takes one matrix
                for backend in COMPILED:
                    # Numba compiles slowly: every function in both dtypes batched over
                    # two axes, the other batch shapes on the VM
                    if backend == "numba" and batch != BATCHES[-1] and name != "lstsq":
                        continue
                    yield pytest.param(name, dtype, batch, backend,
                                       id=f"{name}-{np.dtype(dtype).name}-{batch}-{backend}")


def _inputs(name, dtype, batch):
    rng = np.random.default_rng(sum(map(ord, name)) + 7 * len(batch))
    a = _spd(rng, batch + (N, N))
    t = rng.standard_normal(a.shape)
    return a.astype(dtype), t.astype(dtype), rng


def _modes(f):
    def value_grad_jvp(a, t):
        return f(a), fa.grad(f)(a), fa.jvp(f, (a,), (t,))[1]
    return value_grad_jvp


@pytest.mark.skipif(not COMPILED, reason="no compiled backend is installed")
@pytest.mark.parametrize("name, dtype, batch, backend", list(_cases()))
def test_native_linalg_value_gradient_and_jvp(name, dtype, batch, backend):
    f = LOSSES[name]
    a, t, rng = _inputs(name, dtype, batch)
    both = _modes(f)
    # no instruction of the value, gradient or JVP tape is a host call ...
    for tape in (fa.make_tape(f)(a), fa.make_tape(fa.grad(f))(a),
                 fa.make_tape(lambda a, t: fa.jvp(f, (a,), (t,))[1])(a, t)):
        assert backends.unsupported(backends.get(backend), tape) == []
    # ... and none is made: the fallback warning would be an error
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        value, grad, jvp = fa.jit(both, backend=backend)(a, t)
    want = both(a, t)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for got, w in zip((value, grad, jvp), want, strict=True):
        assert np.asarray(got).dtype == dtype and np.shape(got) == np.shape(w)
        np.testing.assert_allclose(got, w, rtol=rtol, atol=rtol * max(1.0, np.abs(w).max()))
    # central differences in float64, in random directions (the JVP's t among them)
    a64 = a.astype(np.float64)
    eps = 1e-6
    fd_rtol = 1e-6 if dtype == np.float64 else 2e-3
    for d in (t.astype(np.float64), rng.standard_normal(a.shape)):
        fd = (f(a64 + eps * d) - f(a64 - eps * d)) / (2 * eps)
        scale = max(1.0, abs(fd))
        np.testing.assert_allclose(np.sum(grad.astype(np.float64) * d), fd,
                                   rtol=fd_rtol, atol=fd_rtol * scale)
    fd = (f(a64 + eps * t) - f(a64 - eps * t)) / (2 * eps)
    np.testing.assert_allclose(jvp, fd, rtol=fd_rtol, atol=fd_rtol * max(1.0, abs(fd)))


@pytest.mark.parametrize("a_shape, b_shape", [
    ((4, 4), (4,)), ((4, 4), (4, 2)), ((2, 4, 4), (4,)), ((2, 4, 4), (4, 2)),
    ((2, 4, 4), (2, 4, 2)), ((4, 4), (2, 4, 2)), ((3, 1, 4, 4), (2, 4, 1))])
@pytest.mark.parametrize("lower, trans", [(True, 0), (False, 1)])
def test_solve_triangular_broadcasts_as_scipy(a_shape, b_shape, lower, trans):
    """A 1-d b is a vector, any other b a stack of matrices broadcast against a's
    (a (2, 4, 4) with b (4, 2) solves b against each matrix): SciPy's results,
    and gradients for both operands of their shapes."""
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    a = rng.standard_normal(a_shape) + 5 * np.eye(4)
    b = rng.standard_normal(b_shape)
    import scipy.linalg as sla
    want = sla.solve_triangular(a, b, lower=lower, trans=trans)
    np.testing.assert_allclose(fla.solve_triangular(a, b, lower=lower, trans=trans), want,
                               rtol=1e-12, atol=1e-12)

    def f(a, b):
        return np.sum(fla.solve_triangular(a, b, lower=lower, trans=trans) ** 2)
    ga, gb = fa.grad(f, argnums=(0, 1))(a, b)
    assert ga.shape == a.shape and gb.shape == b.shape
    da, db, eps = rng.standard_normal(a.shape), rng.standard_normal(b.shape), 1e-6
    fd = (f(a + eps * da, b + eps * db) - f(a - eps * da, b - eps * db)) / (2 * eps)
    np.testing.assert_allclose(np.sum(ga * da) + np.sum(gb * db), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.skipif(not COMPILED, reason="no compiled backend is installed")
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_compiled_eigh_is_numpys_bit_for_bit(backend, dtype):
    """eigh compiled runs LAPACK dsyevd with NumPy's triangle, in double for
    float32 too, as NumPy computes it: its eigenvalues and eigenvectors, signs
    included, equal NumPy's bit for bit (blocked sizes too); a NaN matrix raises
    LinAlgError where NumPy's call does, and gives NumPy's NaNs where it does not."""
    rng = np.random.default_rng(11)
    f = fa.jit(lambda a, b: (np.linalg.eigh(a), np.linalg.eigh(b, UPLO="U")), backend=backend)
    for n in (1, 3, 40):
        a = rng.standard_normal((2, n, n)).astype(dtype)
        b = rng.standard_normal((3, 1, n, n)).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            (w, v), (wu, vu) = f(a, b)
        for got, want in zip((w, v, wu, vu), (*np.linalg.eigh(a), *np.linalg.eigh(b, UPLO="U"))):
            assert got.dtype == dtype and np.array_equal(got, want)
        nan = np.full_like(a, np.nan)
        try:  # dsyevd's info: no convergence for 3 x 3 here, NaNs back for 1 x 1 and 40 x 40
            want = np.linalg.eigh(nan)
        except np.linalg.LinAlgError:
            with pytest.raises(np.linalg.LinAlgError):
                f(nan, b)
        else:
            for got, w in zip(f(nan, b)[0], want):
                np.testing.assert_array_equal(got, w)


def _spd_like(rng, shape, dtype):
    return _spd(rng, shape).astype(dtype)


# (f, operands' makers): each reads its arguments with one linear-algebra opcode
# (its result returned whole where the instruction makes it)
IN_PLACE = {
    "cholesky": (lambda a, b: np.linalg.cholesky(a), True),
    "solve_triangular": (lambda a, b: fla.solve_triangular(a, b, lower=False, trans=1), True),
    "triangular_matmul": (lambda a, b: _prims.triangular_matmul(a, b, True, False), True),
    "eigh": (lambda a, b: np.linalg.eigh(a, UPLO="U")[1] ** 2 + b[..., :1], False),
    "svd": (lambda a, b: np.linalg.svd(a)[1] + b[..., 0], False),
    "pinv": (lambda a, b: np.linalg.pinv(a), True),
    "qr": (lambda a, b: np.linalg.qr(a)[1] ** 2 + b[..., :1], False),
    "solve": (lambda a, b: np.linalg.solve(a, b), True),
}


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@pytest.mark.parametrize("name", list(IN_PLACE))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_linear_algebra_reads_inputs_and_writes_results_in_place(name, dtype):
    """The VM's linear-algebra instructions read array arguments in the
    caller's buffers and write whole results into the returned arrays (no copy
    into the arena): the program binds them, the results are the reference
    interpreter's, and bit for bit those of the program that copies its arguments,
    and the arguments are left as they were, in any layout."""
    from fastad.backends import c_backend, reference
    from fastad.backends.lower import lower
    f, whole = IN_PLACE[name]
    rng = np.random.default_rng(len(name))
    a = _spd_like(rng, (2, 4, 4), dtype)
    b = rng.standard_normal((2, 4, 3)).astype(dtype)
    tape = fa.make_tape(f)(a, b)
    program = lower(tape)
    assert all(p.offset >= program.arena_bytes for p in program.inputs[:1])
    if whole:
        assert all(p.offset >= program.arena_bytes for p in program.outputs)
    exe = c_backend.build(tape)
    copied = c_backend.build(tape, bind_inputs=False)  # every argument copied into the arena
    want = copied.run([a, b])
    for g, w in zip(want, reference.evaluate(tape, [a, b]), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-13)
    for passed in ([a.copy(), b.copy()], [np.asfortranarray(a), b[..., ::-1].copy()[..., ::-1]]):
        before = [p.copy() for p in passed]
        got = exe.run(passed)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        for p, q in zip(passed, before):
            np.testing.assert_array_equal(p, q)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
def test_a_workspace_in_a_bound_output_is_the_callers_array():
    """A program whose EIGH_B workspace lies in a writable bound output (a
    hostile one: the lowering keeps workspace in the arena) passes validation,
    as the opcode maps bound segments; the VM rebases that operand too, so the
    workspace is the caller's output array (the last matrix's eigenvectors and
    eigenvalues are left there), never memory past the arena."""
    from fastad.backends.lower import lower
    from helpers import altered, executable_or_none
    rng = np.random.default_rng(3)
    n, a, big = 4, _spd(rng, (2, 4, 4)), rng.standard_normal(500)
    program = lower(fa.make_tape(lambda a, big: (big * 2.0, np.linalg.eigh(a)[0]))(a, big))
    out = program.outputs[0]
    assert out.offset >= program.arena_bytes  # written in place
    (pc, words), = [(pc, words) for pc, name, words in program.instructions() if name == "EIGH_B"]
    code = program.code.copy()
    code[pc + 5] = out.offset // 8  # t o a d w p: w, in doubles
    exe = executable_or_none(altered(program, code=code))
    assert exe is not None
    doubled, w = exe.run([a, big])
    np.testing.assert_array_equal(w, np.linalg.eigh(a)[0])
    np.testing.assert_array_equal(doubled[n * n:n * n + n], np.linalg.eigh(a[1])[0])


@pytest.mark.skipif(not COMPILED, reason="no compiled backend is installed")
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_triangular_products_of_several_blocks(backend, dtype):
    """op(T) b for both triangles and both orientations, with more rows than
    one block of Numba's blocked product (and a last, partial block): the
    product with the triangle, as NumPy computes it, in every case."""
    from fastad.backends.numba_emitters import TRI_BLOCK
    rng = np.random.default_rng(12)
    n, k = 2 * TRI_BLOCK + 5, 3
    a = rng.standard_normal((2, n, n)).astype(dtype)
    b = rng.standard_normal((2, n, k)).astype(dtype)
    flags = [(lower, trans) for lower in (True, False) for trans in (False, True)]

    def products(a, b):
        return tuple(_prims.triangular_matmul(a, b, lower, trans) for lower, trans in flags)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        got = fa.jit(products, backend=backend)(a, b)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for g, (lower, trans) in zip(got, flags, strict=True):
        tri = np.tril(a) if lower else np.triu(a)
        want = (np.swapaxes(tri, -1, -2) if trans else tri) @ b
        assert g.dtype == dtype
        np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * np.abs(want).max())
