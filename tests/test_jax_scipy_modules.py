"""jax.scipy's modules beyond SciPy's core (`fastad.scipy.sparse.linalg`,
`.ndimage`, `.fft`, `.optimize`): values against SciPy (and JAX where
installed), implicit derivatives against the dense solve's, central
differences, and compiled functions that trace once."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.scipy import fft, ndimage, optimize
from fastad.scipy.sparse import linalg as splinalg
from conftest import BACKENDS

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)


def _system(seed: int, n: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, n))
    a = b @ b.T + n * np.eye(n) if symmetric else b + n * np.eye(n)
    return a, rng.normal(size=n)


SOLVERS = {"cg": (splinalg.cg, True), "bicgstab": (splinalg.bicgstab, False),
           "gmres": (functools.partial(splinalg.gmres, restart=3), False)}


@pytest.mark.parametrize("name", sorted(SOLVERS))
@settings(max_examples=3, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 2**31), start=st.booleans(),
       preconditioned=st.booleans())
def test_iterative_solvers(name, n, seed, start, preconditioned):
    """The solution to the tolerance; derivatives in b and in a traced matrix
    the dense solve's (implicit, not the iterations'), eager and compiled once."""
    solver, symmetric = SOLVERS[name]
    a, b = _system(seed, n, symmetric)
    x0 = np.ones(n) if start else None
    m = np.diag(1.0 / np.diag(a)) if preconditioned else None
    x, info = solver(a, b, x0, tol=1e-12, M=m)
    assert info is None
    np.testing.assert_allclose(a @ x, b, atol=1e-9 * (1 + np.abs(b).max()))

    def loss(b, a):
        return fnp.sum(solver(a, b, x0, tol=1e-13, M=m)[0] ** 2 * np.arange(1.0, n + 1))

    def dense(b, a):
        return fnp.sum(fnp.linalg.solve(a, b) ** 2 * np.arange(1.0, n + 1))

    want = fa.grad(dense, (0, 1))(b, a)
    compiled = jit(fa.grad(loss, (0, 1)))
    for got in (fa.grad(loss, (0, 1))(b, a), compiled(b, a)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-9)
    compiled(b * 2.0, a)
    assert compiled.cache_info()["traces"] == 1


def test_solvers_take_functions_and_pytrees():
    a, b = _system(0, 4, True)
    x, _ = splinalg.cg(lambda v: {"u": a[:2, :2] @ v["u"], "w": 3.0 * v["w"]},
                       {"u": b[:2], "w": b[2:]}, tol=1e-12)
    np.testing.assert_allclose(a[:2, :2] @ x["u"], b[:2], atol=1e-10)
    np.testing.assert_allclose(3.0 * x["w"], b[2:], atol=1e-10)
    with pytest.raises(ValueError, match="solve_method"):
        splinalg.gmres(a, b, solve_method="other")


MODES = ["constant", "nearest", "wrap", "mirror", "reflect"]


def _scipy_map(img, coords, order, mode):
    return scipy.ndimage.map_coordinates(img, coords, order=order, cval=0.5,
                                         mode="grid-wrap" if mode == "wrap" else mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31), shape=st.sampled_from([(5,), (4, 6), (3, 2, 4)]))
def test_map_coordinates(mode, order, seed, shape):
    """Against JAX where installed and SciPy (its "grid-wrap" is JAX's
    "wrap"; near the edges JAX's "constant" differs from SciPy's, so SciPy is
    asked only inside); derivatives in the array and (order 1) the
    coordinates; new coordinates, one trace."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=shape)
    coords = np.stack([rng.uniform(-2.0, n + 1.0, 7) for n in shape])
    # (off the halves, where rounding conventions differ, and off the kinks)
    coords = np.where(np.abs(coords - np.floor(coords) - 0.5) < 0.02, coords + 0.1, coords)
    coords = np.where(coords - np.floor(coords) < 0.02, coords + 0.05, coords)
    got = ndimage.map_coordinates(img, coords, order, mode, cval=0.5)
    inside = np.all((coords >= 0) & (coords <= np.array(shape)[:, None] - 1), axis=0)
    pick = slice(None) if mode != "constant" else inside
    np.testing.assert_allclose(got[pick], _scipy_map(img, coords, order, mode)[pick],
                               rtol=1e-12, atol=1e-12)
    try:
        import jax
        with jax.enable_x64(True):
            want = np.asarray(jax.scipy.ndimage.map_coordinates(img, coords, order, mode,
                                                                cval=0.5))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    except ImportError:
        pass
    if order == 1:
        fa.check_grads(lambda i, c: ndimage.map_coordinates(i, c, order, mode, cval=0.5),
                       (img, coords), order=1)
    else:
        fa.check_grads(lambda i: ndimage.map_coordinates(i, coords, order, mode, cval=0.5),
                       (img,), order=1)
    g = jit(lambda i, c: ndimage.map_coordinates(i, c, order, mode, cval=0.5))
    for c in (coords, coords[:, ::-1]):
        np.testing.assert_allclose(g(img, c), ndimage.map_coordinates(img, c, order, mode,
                                                                      cval=0.5), rtol=1e-13)
    assert g.cache_info()["traces"] == 1


def test_map_coordinates_refuses_what_it_has_not():
    with pytest.raises(NotImplementedError, match="order"):
        ndimage.map_coordinates(np.ones(3), [np.ones(2)], 3)
    with pytest.raises(NotImplementedError, match="mode"):
        ndimage.map_coordinates(np.ones(3), [np.ones(2)], 1, "grid-constant")
    with pytest.raises(ValueError, match="length"):
        ndimage.map_coordinates(np.ones((3, 3)), [np.ones(2)], 1)


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
@pytest.mark.parametrize("norm", [None, "ortho", "forward"])
def test_dct_family(kind, norm):
    rng = np.random.default_rng(kind)
    x = rng.normal(size=(4, 5))
    for ours, theirs, kw in [(fft.dct, scipy.fft.dct, {"n": 7, "axis": 0}),
                             (fft.idct, scipy.fft.idct, {"n": 3}),
                             (fft.dctn, scipy.fft.dctn, {"s": (3, 6)}),
                             (fft.idctn, scipy.fft.idctn, {"axes": [1]})]:
        want = theirs(x, type=kind, norm=norm, **kw)
        np.testing.assert_allclose(ours(x, kind, norm=norm, **kw), want, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fa.vjp(lambda v: ours(v, kind, norm=norm, **kw), x)[0], want,
                                   rtol=1e-12, atol=1e-13)
        fa.check_grads(lambda v: ours(v, kind, norm=norm, **kw) ** 2, (x,), order=2)


def _rosenbrock(x, a):
    return fnp.sum(a * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@settings(max_examples=3, deadline=None)
@given(n=st.integers(2, 3), seed=st.integers(0, 2**31),  # (n >= 4: a second local minimum)
       method=st.sampled_from(["BFGS", "l-bfgs-experimental-do-not-rely-on-this"]))
def test_minimize_eager_and_traced(n, seed, method):
    x0 = np.random.default_rng(seed).uniform(-1.5, 1.5, n)
    res = optimize.minimize(_rosenbrock, x0, (30.0,), method=method, tol=1e-8)
    assert res.success
    np.testing.assert_allclose(res.x, np.ones(n), atol=1e-4)
    traced = jit(lambda x0, a: optimize.minimize(_rosenbrock, x0, (a,), method="BFGS",
                                                 tol=1e-8))
    for start in (x0, 0.5 * x0):
        got = traced(start, 30.0)
        assert bool(got.success)
        np.testing.assert_allclose(got.x, np.ones(n), atol=1e-5)
        assert float(got.fun) < 1e-9
    assert traced.cache_info()["traces"] == 1
    with pytest.raises(ValueError, match="method"):
        optimize.minimize(_rosenbrock, x0, (1.0,), method="nelder-mead")


@settings(max_examples=4, deadline=None)
@given(n=st.integers(1, 4), seed=st.integers(0, 2**31), closes_over=st.booleans(),
       method=st.sampled_from(["BFGS", "l-bfgs-experimental-do-not-rely-on-this"]))
def test_minimizers_differentiate_implicitly_in_what_they_depend_on(n, seed, closes_over,
                                                                     method):
    """A bilevel loss: the inner minimizer's derivative in the outer
    parameters (passed through args or closed over) is the implicit
    function theorem's, eager and compiled, against central differences of
    the minimization itself; its value is SciPy's minimizer."""
    rng = np.random.default_rng(seed)
    theta, c, x0 = rng.normal(size=n), rng.uniform(0.1, 0.5), np.zeros(n)

    def inner(w, t):  # strictly convex: one minimum, smooth in t
        return fnp.sum((w - t) ** 2) + c * fnp.sum(w ** 4) + 0.1 * fnp.sum(w * fnp.sin(t))

    def outer(t):
        res = (optimize.minimize(lambda w: inner(w, t), x0, method=method, tol=1e-10)
               if closes_over else optimize.minimize(inner, x0, (t,), method=method, tol=1e-10))
        return fnp.sum(res.x ** 2 * fnp.arange(1.0, n + 1.0)) + res.fun
    eager = fa.grad(outer)(theta)
    compiled = jit(fa.grad(outer))
    np.testing.assert_allclose(compiled(theta), eager, rtol=1e-8, atol=1e-10)
    d, h = rng.normal(size=n), 1e-4
    fd = (outer(theta + h * d) - outer(theta - h * d)) / (2 * h)
    np.testing.assert_allclose(eager @ d, fd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(jit(outer)(theta), outer(theta), rtol=1e-9)
