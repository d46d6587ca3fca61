"""fmax / fmin ignore NaN as NumPy's do (gradient to the operand taken),
heaviside(nan) is nan, and fastad.scipy.special's softmax / log_softmax are
SciPy's at large logits: eagerly (plain and traced) and compiled on every
backend, on edge values; derivatives against central finite differences."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.special as ss
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
import fastad.scipy.special as fss

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 25)), deadline=None)
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e-310, 1e300, -1e300, 1.0, -1.0, 2.0]


@st.composite
def pairs(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pick = lambda: np.where(rng.random(n) < 0.5, rng.choice(EDGES, n), rng.normal(size=n))  # noqa: E731
    with np.errstate(over="ignore"):
        return pick().astype(dtype), pick().astype(dtype)


def same(actual, expected):
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(xy=pairs())
def test_fmax_fmin_heaviside_match_numpy(backend, xy):
    x, y = xy
    for ours, theirs in [(fnp.fmax, np.fmax), (fnp.fmin, np.fmin), (fnp.heaviside, np.heaviside)]:
        expected = theirs(x, y)
        same(ours(x, y), expected)
        same(fa.jit(ours, backend=backend)(x, y), expected)
        same(fa.jvp(ours, (x, y), (np.ones_like(x), np.ones_like(y)))[0], expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fmax_gradient_goes_to_the_number(backend):
    x = np.array([np.nan, 2.0, -1.0, np.nan, 4.0])
    y = np.array([1.0, np.nan, 3.0, np.nan, 0.5])
    for ours, take_x in [(fnp.fmax, [0, 1, 0, 0, 1]), (fnp.fmin, [0, 1, 1, 0, 0])]:
        f = lambda a, b: fnp.sum(ours(a, b) * np.arange(1.0, 6.0))  # noqa: E731
        for gx, gy in [fa.grad(f, argnums=(0, 1))(x, y),
                       fa.compile(f, argnums=(0, 1), backend=backend)(x, y)]:
            w = np.arange(1.0, 6.0)
            np.testing.assert_array_equal(gx[:3], (w * take_x)[:3])
            np.testing.assert_array_equal(gx[4], (w * take_x)[4])
            assert gy[0] == 1.0 and gy[1] == 0.0
    # between numbers: finite differences
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=8), rng.normal(size=8)
    g = fa.grad(lambda u: fnp.sum(fnp.fmax(u, b) ** 2))(a)
    h = 1e-6
    fd = [(np.sum(np.fmax(a + h * e, b) ** 2) - np.sum(np.fmax(a - h * e, b) ** 2)) / (2 * h)
          for e in np.eye(8)]
    np.testing.assert_allclose(g, fd, atol=1e-6)


@st.composite
def logits(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1e4, 3e4, 1e6, 1e16]))
    x = rng.normal(size=(2, n)) * rng.choice([0.0, 1.0, 30.0], size=(2, n)) + scale
    if draw(st.booleans()):
        x[0, 0] = draw(st.sampled_from([-np.inf, 0.0, scale]))
    return x.astype(dtype), draw(st.sampled_from([None, 0, 1, -1]))


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(xa=logits())
def test_softmax_matches_scipy_at_large_logits(backend, xa):
    x, axis = xa
    tol = dict(rtol=4e-6, atol=1e-30) if x.dtype == np.float32 else dict(rtol=1e-13, atol=1e-300)
    with np.errstate(all="ignore"):
        for ours, theirs in [(fss.softmax, ss.softmax), (fss.log_softmax, ss.log_softmax)]:
            expected = theirs(x, axis=axis)
            for actual in (ours(x, axis=axis), fa.jit(lambda a: ours(a, axis=axis), backend=backend)(x)):
                np.testing.assert_allclose(np.asarray(actual), expected, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_gradients_match_finite_differences(backend):
    x = np.array([[1e4, 1e4 + 0.5, 1e4 - 1.0], [0.3, -0.2, 0.1]])
    w = np.array([[1.0, -2.0, 0.5], [0.2, 0.7, -1.0]])
    for ours, theirs in [(fss.softmax, ss.softmax), (fss.log_softmax, ss.log_softmax)]:
        f = lambda a: fnp.sum(ours(a, axis=1) * w)  # noqa: E731
        h = 1e-5
        fd = np.array([(np.sum(theirs(x + h * e, axis=1) * w) - np.sum(theirs(x - h * e, axis=1) * w))
                       / (2 * h) for e in np.eye(6).reshape(6, 2, 3)]).reshape(2, 3)
        for g in (fa.grad(f)(x), fa.compile(f, backend=backend)(x)):
            np.testing.assert_allclose(g, fd, atol=1e-6)


NAN_ORDER_STATISTICS = {
    "nanmedian": lambda x, ax, kd: np.nanmedian(x, axis=ax, keepdims=kd),
    "nanquantile": lambda x, ax, kd: np.nanquantile(x, 0.3, axis=ax, keepdims=kd),
    "nanquantiles": lambda x, ax, kd: np.nanquantile(x, [0.1, 0.8], axis=ax, keepdims=kd),
    "nanpercentile": lambda x, ax, kd: np.nanpercentile(x, 65.0, axis=ax, keepdims=kd),
}


@pytest.mark.parametrize("name", sorted(NAN_ORDER_STATISTICS))
def test_nan_order_statistics_keep_dims_as_numpy(name):
    f = NAN_ORDER_STATISTICS[name]
    rng = np.random.default_rng(3)
    for shape, ax in [((4, 3), 0), ((4, 3), 1), ((4, 3), None), ((2, 3, 4), -1), ((5,), 0)]:
        x = rng.normal(size=shape)
        x.flat[rng.integers(x.size)] = np.nan
        for keepdims in (False, True):
            want = f(x, ax, keepdims)
            got = fa.jit(lambda v: f(v, ax, keepdims))(x)
            assert np.shape(got) == np.shape(want), (name, shape, ax, keepdims)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            weights = np.arange(1.0, np.size(want) + 1).reshape(np.shape(want))

            def loss(v):
                return np.sum(f(v, ax, keepdims) * weights)
            g = fa.grad(loss)(x)
            d = np.where(np.isnan(x), 0.0, rng.normal(size=shape))  # (NaNs stay NaN)
            fd = (loss(x + 1e-6 * d) - loss(x - 1e-6 * d)) / 2e-6
            np.testing.assert_allclose(np.sum(np.where(np.isnan(x), 0.0, g) * d), fd,
                                       rtol=1e-5, atol=1e-8)
