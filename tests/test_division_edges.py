"""Traced float //, %, np.remainder, np.fmod and divmod are NumPy's: computed
from the exact fmod as NumPy's npy_divmod does (0.9 // 0.1 is 8, y % inf is
y or inf), eagerly under a transform and compiled on every backend, on
decimal data and edge values (signed zeros, infinities, NaN, subnormals,
huge values); derivatives against central finite differences away from the
jumps."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 30)), deadline=None)
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e-310, 1e-300, 1e300, -1e300, 0.1, 0.3,
         -0.1, 0.5, 1.0, -1.0, 2.5, 3.0, 7.0]
OPS = {
    "floor_divide": (lambda a, b: a // b, np.floor_divide),
    "remainder": (lambda a, b: a % b, np.remainder),
    "np.remainder": (fnp.remainder, np.remainder),
    "np.mod": (fnp.mod, np.mod),
    "fmod": (fnp.fmod, np.fmod),
    "divmod[0]": (lambda a, b: fnp.divmod(a, b)[0], lambda a, b: np.divmod(a, b)[0]),
    "divmod[1]": (lambda a, b: fnp.divmod(a, b)[1], lambda a, b: np.divmod(a, b)[1]),
}


@st.composite
def operands(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def values():
        kind = draw(st.sampled_from(["decimal", "edges", "wide"]))
        if kind == "decimal":  # where floor(x / y) rounds the wrong way
            return rng.integers(-100, 100, size=n) / rng.choice([10, 100, 3, 7], size=n)
        if kind == "wide":
            return rng.normal(size=n) * 10.0 ** rng.integers(-20, 20, size=n)
        return rng.choice(EDGES, size=n)
    with np.errstate(over="ignore"):
        return values().astype(dtype), values().astype(dtype)


def same(actual, expected):
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)
    # signed zeros too
    np.testing.assert_array_equal(np.signbit(actual[actual == 0]), np.signbit(expected[expected == 0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", OPS)
@EXAMPLES
@given(xy=operands())
def test_division_matches_numpy(backend, name, xy):
    x, y = xy
    ours, theirs = OPS[name]
    with np.errstate(all="ignore"):
        expected = theirs(x, y)
        same(fa.jit(ours, backend=backend)(x, y), expected)
        same(fa.jvp(ours, (x, y), (np.ones_like(x), np.ones_like(y)))[0], expected)
        same(ours(x, y), expected)  # plain arrays: NumPy itself


@pytest.mark.parametrize("backend", BACKENDS)
def test_decimal_quotient_feeds_gradient(backend):
    f = lambda x: x * (x // 0.1)  # noqa: E731
    assert fa.grad(f)(0.9) == 8.0
    assert fa.compile(f, backend=backend)(np.float64(0.9)) == 8.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["remainder", "fmod", "divmod[1]"])
def test_remainder_gradients_match_finite_differences(backend, name):
    rng = np.random.default_rng(5)
    x = rng.uniform(-20, 20, size=40)
    y = rng.choice([-3.0, -0.7, 0.3, 2.5], size=40) * rng.uniform(0.9, 1.1, size=40)
    q = x / y
    keep = np.abs(q - np.round(q)) > 1e-3  # away from the jumps
    x, y = x[keep], y[keep]
    ours, theirs = OPS[name]
    f = lambda a, b: fnp.sum(ours(a, b) * np.arange(len(x)))  # noqa: E731
    gx, gy = fa.grad(f, argnums=(0, 1))(x, y)
    cx, cy = fa.compile(f, argnums=(0, 1), backend=backend)(x, y)
    h = 1e-7
    fdx = (theirs(x + h, y) - theirs(x - h, y)) / (2 * h) * np.arange(len(x))
    fdy = (theirs(x, y + h) - theirs(x, y - h)) / (2 * h) * np.arange(len(x))
    for g, fd in [(gx, fdx), (cx, fdx), (gy, fdy), (cy, fdy)]:
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)
    assert np.all(fa.grad(lambda a: fnp.sum(a // 0.3))(x) == 0)
