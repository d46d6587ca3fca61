"""Compiled float sums are NumPy's pairwise sums: the same bits as np.sum.

A running sum rounds once per element (10**6 float32 values of 0.1 summed one
after another are 1% off); NumPy sums a contiguous run pairwise, and the C
VM's reduction (csrc/kernels.c) and the Numba backend's (numba_sums) follow
its order, so a full sum, a row sum and a mean equal NumPy's bit for bit on
any data, edge values included.  So do sums fused into an elementwise pass
(the VM's FUSED instruction, csrc/fused.c; Numba's fused loops,
numba_loops.py), which walk the same tree as their values come.
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


# -- sums fused into an elementwise pass ----------------------------------------------
# Sizes around the tree's thresholds: a leaf below 8 is one running sum, up to
# 128 eight partial sums, above that two halves (and the VM's blocks of 512
# and its thread chunks from 2**15 on).
SIZES = [2, 7, 8, 9, 127, 128, 129, 136, 257, 513, 1000, 4099, 2**15 + 17, 10**5 + 3]
# Correctly rounded operations: the elementwise values are NumPy's bits, so a
# sum of them is compared with NumPy's directly.
EXACT = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / (m.abs(b) + 1), "max": lambda m, a, b: m.maximum(a, b),
    "min": lambda m, a, b: m.minimum(a, b), "neg": lambda m, a, b: -a,
    "abs": lambda m, a, b: m.abs(a), "sqrt": lambda m, a, b: m.sqrt(m.abs(a)),
    "square": lambda m, a, b: a * a, "scale": lambda m, a, b: a * 0.1 + 1,
}
# Functions whose values each backend computes its own way: a fused sum of
# them is compared with NumPy's sum of the values the backend computes.
INEXACT = {"sin": lambda m, a, b: m.sin(a), "exp": lambda m, a, b: m.exp(m.minimum(a, 3.0)),
           "tanh": lambda m, a, b: m.tanh(a)}


@st.composite
def fused_sums(draw):
    """(dtype, shape, ops, reduction, axis): an elementwise chain of x and y,
    summed (or averaged) whole or along trailing axes."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.sampled_from(SIZES))
    layout = draw(st.sampled_from(["flat", "rows", "cube"]))
    if layout == "flat":
        shape, axis = (n,), draw(st.sampled_from([None, -1]))
    elif layout == "rows":
        shape = (draw(st.integers(1, 4)), min(n, 4099))
        axis = draw(st.sampled_from([None, -1, 1]))
    else:
        shape = (2, draw(st.integers(1, 5)), min(n, 1000))
        axis = draw(st.sampled_from([None, -1, (1, 2)]))
    names = sorted(EXACT) + (sorted(INEXACT) if draw(st.booleans()) else [])
    ops = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(["x", "y", "v"])),
                        min_size=1, max_size=5))
    reduction = draw(st.sampled_from(["sum", "sum", "mean"]))
    return dtype, shape, ops, reduction, axis


def chain(ops, m):
    """The elementwise chain as a function of (x, y) over module m."""
    def f(x, y):
        v = x
        for name, other in ops:
            b = {"x": x, "y": y, "v": v}[other]
            v = {**EXACT, **INEXACT}[name](m, v, b)
        return v
    return f


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@EXAMPLES
@given(case=fused_sums(), seed=st.integers(0, 2**32 - 1))
def test_fused_sums_are_numpys(backend, case, seed):
    dtype, shape, ops, reduction, axis = case
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) + 0.1).astype(dtype)
    y = (rng.normal(size=shape) * 3).astype(dtype)
    values = chain(ops, fnp)
    reduce = getattr(fnp, reduction)
    compiled = fa.jit(lambda a, b: reduce(values(a, b), axis=axis), backend=backend)(x, y)
    if all(name in EXACT for name, _ in ops):
        v = chain(ops, np)(x, y)
    else:  # the backend's own values of the functions, summed by NumPy
        v = np.asarray(fa.jit(values, backend=backend)(x, y))
    with np.errstate(all="ignore"):
        if reduction == "sum":
            same(compiled, np.sum(v, axis=axis))
        else:
            close(compiled, np.mean(v, axis=axis))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sums_of_many_values(backend, dtype):
    """10**7 float32 values: the fused sums of x * x and sin(x) + 1 were 4% and
    7% off on Numba, 1e-4 on the VM; a count of a comparison is NumPy's too."""
    x = np.full(10**7, 0.1, dtype=dtype)
    x[::7] = 0.3
    same(fa.jit(lambda a: fnp.sum(a * a), backend=backend)(x), np.sum(x * x))
    sines = np.asarray(fa.jit(lambda a: fnp.sin(a) + 1, backend=backend)(x))
    same(fa.jit(lambda a: fnp.sum(fnp.sin(a) + 1), backend=backend)(x), np.sum(sines))
    count = fa.jit(lambda a: fnp.sum((a * 2 > 0.5).astype(a.dtype)) + fnp.sum(a),
                   backend=backend)(x)
    same(count, np.sum((x * 2 > 0.5).astype(dtype)) + np.sum(x))
    value, g = fa.compile(lambda a: fnp.sum(a * a) * 1.0, backend=backend).value_and_grad(x)
    same(value, np.sum(x * x))
    np.testing.assert_array_equal(g, 2 * x)
