"""fastad.scipy.linalg: each function on traced values against SciPy's on the
same plain values, its gradient against central differences in a random
direction, and compiled against eager."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import scipy.linalg as sl

import fastad as fa
import fastad.numpy as fnp
import fastad.scipy.linalg as fl
from conftest import BACKENDS

# the backend is not the point here: one compiled backend (the reference
# interpreter without the C extension, never a cold Numba compile per case)
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)
compile_ = functools.partial(fa.compile, backend=ONE_COMPILED)


def _jit_for(f, args):
    """`jit` on ONE_COMPILED, except for a function through complex values
    where Numba is not among the tested backends: the C VM hands those to
    Numba (a cold compile per case, which the runs that test Numba cover),
    so they run on the reference interpreter."""
    tape = fa.make_tape(f)(*args)
    complex_values = any(np.issubdtype(a.dtype, np.complexfloating) for a in tape.avals)
    if complex_values and "numba" not in BACKENDS:
        return fa.jit(f, backend="numpy")
    return jit(f)


def _spd(m):
    return m @ m.T + m.shape[0] * np.eye(m.shape[0])


def _shaped(rng, shape):
    return rng.normal(size=shape)


# name: (fastad's call, SciPy's call, input shapes, how inputs are made)
CASES = {
    "solve": (lambda a, b: fl.solve(a, b), lambda a, b: sl.solve(a, b), [(4, 4), (4,)], None),
    "solve pos lower": (lambda a, b: fl.solve(a, b, lower=True, assume_a="pos"),
                        lambda a, b: sl.solve(a, b, lower=True, assume_a="pos"), [(4, 4), (4, 2)], "spd"),
    "solve sym upper": (lambda a, b: fl.solve(a, b, assume_a="sym"),
                        lambda a, b: sl.solve(a, b, assume_a="sym"), [(4, 4), (4,)], "spd+noise"),
    "solve transposed": (lambda a, b: fl.solve(a, b, transposed=True, check_finite=False),
                         lambda a, b: sl.solve(a, b, transposed=True), [(3, 3), (3,)], None),
    "solve lower triangular": (lambda a, b: fl.solve(a, b, assume_a="lower triangular"),
                               lambda a, b: sl.solve(a, b, assume_a="lower triangular"),
                               [(3, 3), (3,)], "spd"),
    "inv": (lambda a: fl.inv(a, check_finite=False), sl.inv, [(3, 3)], None),
    "det": (lambda a: fl.det(a, overwrite_a=False), sl.det, [(3, 3)], None),
    "pinv": (lambda a: fl.pinv(a), sl.pinv, [(4, 3)], None),
    "pinv rtol": (lambda a: fl.pinv(a, rtol=1e-3), lambda a: sl.pinv(a, rtol=1e-3), [(3, 4)], None),
    "pinvh": (lambda a: fl.pinvh(a), sl.pinvh, [(4, 4)], "spd"),
    "lstsq": (lambda a, b: fl.lstsq(a, b)[0], lambda a, b: sl.lstsq(a, b)[0], [(5, 3), (5,)], None),
    "eigvalsh": (lambda a: fl.eigvalsh(a), sl.eigvalsh, [(4, 4)], "spd"),
    "eigh generalized": (lambda a, b: fl.eigh(a, b, eigvals_only=True),
                         lambda a, b: sl.eigh(a, b, eigvals_only=True), [(3, 3), (3, 3)], "spd"),
    "eigvals": (lambda a: fnp.abs(fl.eigvals(a)), lambda a: np.abs(sl.eigvals(a)), [(3, 3)], None),
    "svdvals": (fl.svdvals, sl.svdvals, [(4, 3)], None),
    "norm": (lambda a: fl.norm(a, 1, check_finite=False), lambda a: sl.norm(a, 1), [(3, 3)], None),
    "lu_factor": (lambda a: fl.lu_factor(a)[0], lambda a: sl.lu_factor(a)[0], [(4, 4)], None),
    "lu_solve": (lambda a, b: fl.lu_solve(fl.lu_factor(a), b),
                 lambda a, b: sl.lu_solve(sl.lu_factor(a), b), [(4, 4), (4, 2)], None),
    "lu_solve trans": (lambda a, b: fl.lu_solve(tuple(fl.lu_factor(a)), b, trans=1),
                       lambda a, b: sl.lu_solve(sl.lu_factor(a), b, trans=1), [(4, 4), (4,)], None),
    "lu": (lambda a: fl.lu(a)[1] + fl.lu(a)[2], lambda a: sl.lu(a)[1] + sl.lu(a)[2], [(4, 4)], None),
    "lu permute_l": (lambda a: fl.lu(a, permute_l=True)[0], lambda a: sl.lu(a, permute_l=True)[0],
                     [(3, 3)], None),
    "solveh_banded": (lambda ab, b: fl.solveh_banded(ab, b), lambda ab, b: sl.solveh_banded(ab, b),
                      [(2, 5), (5,)], "band"),
    "solve_toeplitz": (lambda c, r, b: fl.solve_toeplitz((c, r), b),
                       lambda c, r, b: sl.solve_toeplitz((c, r), b), [(4,), (4,), (4,)], "diag"),
    "solve_circulant": (lambda c, b: fl.solve_circulant(c, b), lambda c, b: sl.solve_circulant(c, b),
                        [(4,), (4,)], "diag"),
    "matmul_toeplitz": (lambda c, x: fl.matmul_toeplitz(c, x), lambda c, x: sl.matmul_toeplitz(c, x),
                        [(4,), (4, 2)], None),
    "toeplitz": (lambda c, r: fl.toeplitz(c, r), sl.toeplitz, [(3,), (4,)], None),
    "circulant": (fl.circulant, sl.circulant, [(4,)], None),
    "hankel": (lambda c, r: fl.hankel(c, r), sl.hankel, [(3,), (4,)], None),
    "companion": (fl.companion, sl.companion, [(4,)], "diag"),
    "block_diag": (lambda a, b, c: fl.block_diag(a, b, c), sl.block_diag, [(2, 3), (3,), ()], None),
    "khatri_rao": (fl.khatri_rao, sl.khatri_rao, [(2, 3), (3, 3)], None),
    "expm_frechet": (lambda a, e: fl.expm_frechet(a, e)[1], lambda a, e: sl.expm_frechet(a, e)[1],
                     [(3, 3), (3, 3)], "small"),
    "cosm": (fl.cosm, sl.cosm, [(3, 3)], "small"),
    "sinm": (fl.sinm, sl.sinm, [(3, 3)], "small"),
    "tanhm": (fl.tanhm, sl.tanhm, [(3, 3)], "small"),
    "sinhm": (fl.sinhm, sl.sinhm, [(3, 3)], "small"),
    "polar right": (lambda a: fl.polar(a)[1], lambda a: sl.polar(a)[1], [(3, 3)], None),
    "polar left": (lambda a: fl.polar(a, "left")[0], lambda a: sl.polar(a, "left")[0], [(3, 3)], None),
    "orthogonal_procrustes": (lambda a, b: fl.orthogonal_procrustes(a, b)[0],
                              lambda a, b: sl.orthogonal_procrustes(a, b)[0], [(4, 3), (4, 3)], None),
    "solve_continuous_lyapunov": (fl.solve_continuous_lyapunov, sl.solve_continuous_lyapunov,
                                  [(3, 3), (3, 3)], "stable"),
    "solve_discrete_lyapunov": (fl.solve_discrete_lyapunov, sl.solve_discrete_lyapunov,
                                [(3, 3), (3, 3)], "small"),
}


def _inputs(shapes, kind, seed):
    rng = np.random.default_rng(seed)
    out = [_shaped(rng, s) for s in shapes]
    if kind == "spd":
        out[0] = _spd(out[0])
        if len(shapes) > 1 and shapes[1] == shapes[0]:
            out[1] = _spd(out[1])
    elif kind == "spd+noise":  # the triangle not read is noise, which must not count
        out[0] = np.triu(_spd(out[0])) + np.tril(rng.normal(size=shapes[0]), -1)
    elif kind == "band":  # upper band storage of a diagonally dominant matrix
        out[0][-1] = 4.0 + np.abs(out[0][-1])
    elif kind == "diag":
        out[0][0] = 5.0 + abs(out[0][0])
    elif kind == "small":
        out = [0.3 * v for v in out]
    elif kind == "stable":
        out[0] = out[0] - 4.0 * np.eye(shapes[0][0])
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_scipy_linalg_on_traced_values(name):
    ours, scipys, shapes, kind = CASES[name]
    args = _inputs(shapes, kind, seed=len(name))
    want = scipys(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host calls of the pivots' guard
        np.testing.assert_allclose(_jit_for(ours, args)(*args), want, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(ours(*args), want, rtol=1e-12, atol=1e-12)  # plain: SciPy's
        rng = np.random.default_rng(1)
        weights = rng.normal(size=np.shape(want))
        for argnum in range(len(args)):
            def loss(*a):
                return fnp.sum(fnp.real(ours(*a)) * weights)
            g = fa.grad(loss, argnum)(*args)
            d = rng.normal(size=np.shape(args[argnum]))
            eps = 1e-6
            plus, minus = list(args), list(args)
            plus[argnum] = args[argnum] + eps * d
            minus[argnum] = args[argnum] - eps * d
            fd = (np.sum(np.real(scipys(*plus)) * weights)
                  - np.sum(np.real(scipys(*minus)) * weights)) / (2 * eps)
            assert abs(np.sum(g * d) - fd) <= 1e-6 * (1 + abs(fd)), (argnum, np.sum(g * d), fd)
            np.testing.assert_allclose(_jit_for(fa.grad(loss, argnum), args)(*args), g, rtol=1e-9,
                                       atol=1e-11)


def test_lu_pivots_are_a_guard():
    """The pivots come from the values: a compiled replay whose matrix pivots
    differently retraces and stays right."""
    f = compile_(lambda a: fnp.sum(fl.lu_factor(a)[0] ** 2))
    a1 = np.array([[4.0, 1.0], [1.0, 3.0]])
    a2 = a1[::-1].copy()  # pivots the other way
    for a in (a1, a2, a1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_allclose(f(a), fa.grad(lambda a: fnp.sum(fl.lu_factor(a)[0] ** 2))(a))


def test_scipy_linalg_refuses_what_it_does_not_differentiate():
    a = np.eye(3) * 2.0
    with pytest.raises(NotImplementedError, match="subset_by_index"):
        fa.grad(lambda a: fnp.sum(fl.eigh(a, subset_by_index=[0, 1])[0]))(a)
    with pytest.raises(NotImplementedError, match="left"):
        fa.grad(lambda a: fnp.sum(fnp.abs(fl.eig(a, left=True)[0])))(a)
    with pytest.raises(ValueError, match="square"):
        fa.grad(lambda a: fnp.sum(fl.lu_factor(a)[0]))(np.ones((2, 3)))


@pytest.mark.parametrize("seed", range(6))
def test_sqrtm_of_a_real_matrix_without_a_real_root_is_scipys_complex_root(seed):
    """A real matrix with a negative eigenvalue (symmetric or not) has SciPy's
    complex principal root: the same values and dtype, derivatives against
    central differences in both modes, compiled equal to eager; a compiled
    function given a matrix of the other kind traces again (a guard)."""
    rng = np.random.default_rng(seed)
    n = 2 + seed % 3
    r = rng.normal(size=(n, n))
    q = np.linalg.qr(r)[0] + (0.3 * rng.normal(size=(n, n)) if seed % 2 else 0.0)
    lam = np.concatenate([-rng.uniform(0.5, 2.0, 1 + seed % 2), rng.uniform(0.5, 2.0, n)])[:n]
    a = q @ np.diag(lam) @ np.linalg.inv(q)  # symmetric for even seeds
    want = sl.sqrtm(a)
    assert np.iscomplexobj(want)
    got = fa.vjp(fl.sqrtm, a)[0]
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    weights = rng.normal(size=(n, n))

    def loss(a):
        root = fl.sqrtm(a)
        return fnp.sum(fnp.real(root) * weights) + fnp.sum(fnp.imag(root) ** 2)
    fa.check_grads(loss, (a,), order=1, modes=("fwd", "rev"), rtol=1e-5)
    compiled = _jit_for(fa.value_and_grad(loss), (a,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex values on a host call
        for _ in range(2):
            np.testing.assert_allclose(compiled(a)[1], fa.grad(loss)(a), rtol=1e-10, atol=1e-12)
        spd = r @ r.T + np.eye(n)  # a real root: the guard sends it to a new trace
        np.testing.assert_allclose(compiled(spd)[0], loss(spd), rtol=1e-10)
    assert compiled.cache_info()["traces"] == 2
