"""Compiled float sums are NumPy's pairwise sums: the same bits as np.sum.

A running sum rounds once per element (10**6 float32 values of 0.1 summed one
after another are 1% off); NumPy sums a contiguous run pairwise, and the C
VM's reduction (csrc/kernels.c) and the Numba backend's (numba_sums) follow
its order, so a full sum, a row sum and a mean equal NumPy's bit for bit on
any data, edge values included.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 40)), deadline=None)
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, 1.5e-45, 1e300, -1e300,
         3.4e38, 0.1, 0.5, -0.5, 1.0]


@st.composite
def float_arrays(draw, max_size=1500):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(1, max_size))
    kind = draw(st.sampled_from(["normal", "decimal", "wide", "edges"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        x = rng.normal(size=n)
    elif kind == "decimal":  # values NumPy's order rounds differently from a running sum
        x = rng.integers(-1000, 1000, size=n) / 10
    elif kind == "wide":
        x = rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, size=n)
    else:
        x = rng.normal(size=n)
        where = rng.random(n) < draw(st.sampled_from([0.01, 0.2]))
        x[where] = rng.choice(EDGES, size=int(where.sum()))
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # NaN where NaN; equal values (bits up to zero signs)


def close(a, b):
    """A mean: the pairwise sum times 1/n (NumPy divides by n), within 2 ulps."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=2 * np.finfo(a.dtype).eps, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(x=float_arrays())
def test_full_sum_and_mean_are_numpys(backend, x):
    with np.errstate(all="ignore"):
        same(fa.jit(fnp.sum, backend=backend)(x), np.sum(x))
        close(fa.jit(fnp.mean, backend=backend)(x), np.mean(x))


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(x=float_arrays(max_size=600), rows=st.integers(1, 4))
def test_row_sums_are_numpys(backend, x, rows):
    x = np.tile(x, rows).reshape(rows, -1)
    with np.errstate(all="ignore"):
        same(fa.jit(lambda a: fnp.sum(a, axis=1), backend=backend)(x), np.sum(x, axis=1))
        same(fa.jit(lambda a: fnp.sum(a * 1, axis=-1), backend=backend)(x), np.sum(x, axis=-1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [10**6, 3 * 10**6 + 7])
def test_many_float32_tenths(backend, n):
    x = np.full(n, 0.1, dtype=np.float32)
    ref = np.sum(x)
    assert abs(float(ref) - n / 10) / (n / 10) < 1e-6
    same(fa.jit(fnp.sum, backend=backend)(x), ref)
    close(fa.jit(fnp.mean, backend=backend)(x), np.mean(x))
    value, g = fa.compile(lambda a: fnp.sum(a) * 1.0, backend=backend).value_and_grad(x)
    same(value, ref)
    assert np.all(g == 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_gradient_matches_finite_differences(backend):
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    f = lambda a: fnp.mean(a * a)  # noqa: E731
    g = fa.compile(f, backend=backend)(x)
    h = 1e-6
    for i in (0, 17, 299):
        e = np.zeros_like(x)
        e[i] = h
        fd = (np.mean((x + e) ** 2) - np.mean((x - e) ** 2)) / (2 * h)
        assert abs(g[i] - fd) < 1e-7
