"""Solves against matrices that are triangular by construction (a Cholesky
factor, tril/triu, their transposes, sums and finite constant multiples of
them) are triangular solves (`fastad.numpy._linalg._triangle_of`).

Generated expressions check the rewrite both ways: every expression built
only from triangles of one kind is solved as a triangle (the whole class the
rewrite is for), and every rewrite is sound (the matrix is that triangle for
any inputs, inf and NaN included: never a wrong answer).  Values equal
NumPy's general solve to rounding, eagerly and compiled, and derivatives
equal central differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.check import check_grads
from conftest import BACKENDS
from helpers import FAST

N = 4


@st.composite
def matrices(draw, depth=3):
    """(build, kind): build(x) makes an N x N matrix of the traced x;
    kind is "lower"/"upper" when it is that triangle by construction, else None."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        leaf = draw(st.sampled_from(["chol", "tril", "triu", "eye", "full", "column"]))
        k = draw(st.integers(-1, 0))
        if leaf == "chol":
            return (lambda x: fnp.linalg.cholesky(x @ x.T + N * np.eye(N))), "lower"
        if leaf == "tril":
            return (lambda x: fnp.tril(x, k)), "lower"
        if leaf == "triu":
            return (lambda x: fnp.triu(x, -k)), "upper"
        if leaf == "eye":
            return (lambda x: 3.0 * np.eye(N)), "both"
        if leaf == "full":
            return (lambda x: x * 1.0), None
        return (lambda x: x[:, :1] * np.ones((1, N)) * 0.5), None  # a broadcast column
    op = draw(st.sampled_from(["T", "swap", "neg", "scale", "div", "traced_scale", "add", "sub"]))
    inner, kind = draw(matrices(depth - 1))
    flip = {"lower": "upper", "upper": "lower", "both": "both", None: None}
    if op == "T":
        return (lambda x: inner(x).T), flip[kind]
    if op == "swap":
        return (lambda x: fnp.swapaxes(inner(x), -1, -2)), flip[kind]
    if op == "neg":
        return (lambda x: -inner(x)), kind
    if op == "scale":
        c = draw(st.sampled_from([2.0, -0.5]))
        return (lambda x: c * inner(x)), kind
    if op == "div":
        return (lambda x: inner(x) / 4.0), kind
    if op == "traced_scale":  # x[0, 0] could be inf: inf * 0 is NaN, no triangle
        return (lambda x: inner(x) * x[0, 0]), None
    other, kind2 = draw(matrices(depth - 1))
    both = {kind, kind2} - {"both"}
    joined = None if None in (kind, kind2) or len(both) > 1 else (both.pop() if both else "both")
    if op == "add":
        return (lambda x: inner(x) + other(x)), joined
    return (lambda x: inner(x) - other(x)), joined


def _solver(build, how):
    def f(x, y):
        a = build(x) + 5.0 * np.eye(N)  # a diagonal: the kind is kept, the solve well posed
        if how == "solve":
            return fnp.linalg.solve(a, y)
        if how == "inv":
            return fnp.linalg.inv(a)
        return fnp.linalg.solve(a, fnp.stack([y, 2.0 * y], axis=1))
    return f


def _rewritten(f, x, y):
    """Whether f solves against a triangle (lower: True, upper: False; None
    if not) and whether it does a general solve."""
    instrs = fa.make_tape(f)(x, y).instrs
    lower = [i.kwargs["lower"] for i in instrs if i.prim == "solve_triangular"]
    return (lower[0] if lower else None), any(i.prim == "solve" for i in instrs)


def _constant(build, x):
    return np.array_equal(build(x), build(x + 1.0))


def _args(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (N, N)), rng.uniform(-1, 1, N)


@FAST
@given(matrices(), st.sampled_from(["solve", "inv", "matrix"]), st.integers(0, 2**16))
def test_solves_against_triangles_are_triangular_solves(matrix, how, seed):
    build, kind = matrix
    f = _solver(build, how)
    x, y = _args(seed)
    lower, general = _rewritten(f, x, y)
    if kind is not None and not _constant(build, x):  # every triangle of the class is found
        assert lower is not None and not general
        assert kind == "both" or lower == (kind == "lower")
    if lower is not None:  # and a rewrite holds for any input, inf and NaN included
        for bad in (np.inf, -np.inf, np.nan):
            xb = x.copy()
            xb[tuple(np.random.default_rng(seed).integers(0, N, 2))] = bad
            with np.errstate(all="ignore"):
                try:
                    ab = build(xb)
                except np.linalg.LinAlgError:  # a Cholesky factor of inf
                    continue
            assert not (np.triu(ab, 1) if lower else np.tril(ab, -1)).any()
    a = build(x) + 5.0 * np.eye(N)
    want = np.linalg.inv(a) if how == "inv" else \
        np.linalg.solve(a, y if how == "solve" else np.stack([y, 2.0 * y], axis=1))
    np.testing.assert_allclose(f(x, y), want, rtol=1e-10, atol=1e-12)
    for backend in set(BACKENDS) - {"numba"}:  # (a Numba compile per example: the GP's test)
        np.testing.assert_allclose(fa.jit(f, backend=backend)(x, y), f(x, y),
                                   rtol=1e-12, atol=1e-13)
    check_grads(lambda x, y: fnp.sum(f(x, y) ** 2), (x, y), order=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gaussian_process_written_without_scipy(backend):
    """The NumPy user's GP: two general solves against the Cholesky factor and
    its transpose are triangular solves, with the general solve's values."""
    rng = np.random.default_rng(3)
    X, y = rng.uniform(-2, 2, (30, 2)), rng.standard_normal(30)
    sq = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)

    def nll(p):
        K = fnp.exp(p[0]) * fnp.exp(-0.5 * sq / fnp.exp(p[1]) ** 2) + fnp.exp(p[2]) * np.eye(30)
        L = fnp.linalg.cholesky(K)
        alpha = fnp.linalg.solve(L.T, fnp.linalg.solve(L, y))
        return 0.5 * y @ alpha + fnp.sum(fnp.log(fnp.diag(L)))
    p = np.array([0.2, -0.1, -1.5])
    assert _rewritten(lambda p, y: nll(p), p, y) == (True, False)  # (its first solve's)
    K = np.exp(p[0]) * np.exp(-0.5 * sq / np.exp(p[1]) ** 2) + np.exp(p[2]) * np.eye(30)
    want = 0.5 * y @ np.linalg.solve(K, y) + 0.5 * np.linalg.slogdet(K)[1]
    assert nll(p) == pytest.approx(want, rel=1e-12)
    g = fa.compile(nll, backend=backend)
    np.testing.assert_allclose(g(p), fa.grad(nll)(p), rtol=1e-10)
    check_grads(nll, (p,), order=2)
