"""Traced median, nanmax / nanmin, frexp, modf and x**0's derivative on edge
values, eagerly under a transform and compiled on every backend, against
NumPy: median of [1, inf, 3] is 3 and of a row with a NaN is NaN; an all-NaN
row's nanmax is NaN; frexp of a subnormal and modf of +-inf are NumPy's."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 25)), deadline=None)
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e-310, 1e-40, 1e300, -1e300, 1.0, -2.0,
         2.5, 3.0]


@st.composite
def rows(draw, nan_rate=0.2):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    r, n = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.where(rng.random((r, n)) < 0.4, rng.choice(EDGES, (r, n)), rng.normal(size=(r, n)))
    x[rng.random((r, n)) < draw(st.sampled_from([0.0, nan_rate, 1.0]))] = np.nan
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def check(ours, theirs, x, backend, dtype_too=True):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = theirs(x)
        for actual in (fa.jit(ours, backend=backend)(x), fa.jvp(ours, (x,), (np.ones_like(x),))[0]):
            actual = np.asarray(actual)
            if dtype_too:
                assert actual.dtype == np.asarray(expected).dtype
            np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(x=rows(), axis=st.sampled_from([None, 0, 1, -1]))
def test_median_and_nan_extremes_match_numpy(backend, x, axis):
    check(lambda a: fnp.median(a, axis=axis), lambda a: np.median(a, axis=axis), x, backend,
          dtype_too=False)
    check(lambda a: fnp.nanmax(a, axis=axis), lambda a: np.nanmax(a, axis=axis), x, backend)
    check(lambda a: fnp.nanmin(a, axis=axis), lambda a: np.nanmin(a, axis=axis), x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(x=rows(nan_rate=0.1))
def test_frexp_and_modf_match_numpy(backend, x):
    for k in (0, 1):
        check(lambda a: fnp.frexp(a)[k], lambda a: np.frexp(a)[k], x, backend)
        check(lambda a: fnp.modf(a)[k], lambda a: np.modf(a)[k], x, backend)
    signs = fa.jit(lambda a: fnp.modf(a)[0], backend=backend)(x)
    np.testing.assert_array_equal(np.signbit(signs), np.signbit(np.modf(x)[0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_part_and_order_gradients(backend):
    x = np.array([0.3, -1.7, 2.2, 5.1, -0.4])
    h = 1e-6
    for f, ref in [(lambda a: fnp.sum(fnp.modf(a)[0] * np.arange(5.0)), lambda a: np.sum(np.modf(a)[0] * np.arange(5.0))),
                   (lambda a: fnp.sum(fnp.frexp(a)[0] * np.arange(5.0)), lambda a: np.sum(np.frexp(a)[0] * np.arange(5.0))),
                   (lambda a: fnp.median(a * a), lambda a: np.median(a * a)),
                   (lambda a: fnp.median(a[:4]), lambda a: np.median(a[:4])),
                   (lambda a: fnp.nanmax(a), lambda a: np.nanmax(a))]:
        fd = np.array([(ref(x + h * e) - ref(x - h * e)) / (2 * h) for e in np.eye(5)])
        for g in (fa.grad(f)(x), fa.compile(f, backend=backend)(x)):
            np.testing.assert_allclose(g, fd, atol=1e-6)
    # x**0 is flat everywhere, infinities and NaN included (JAX's 0)
    edge = np.array([np.inf, -np.inf, np.nan, 0.0, 2.0])
    for g in (fa.grad(lambda a, b: fnp.sum(a ** b))(edge, np.zeros(5)),
              fa.compile(lambda a, b: fnp.sum(a ** b), backend=backend)(edge, np.zeros(5))):
        np.testing.assert_array_equal(g, 0.0)
