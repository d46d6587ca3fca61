"""The VM's max and min reductions (REDUCE_B) fold a contiguous row in four
vectorizable lanes and fall back to the serial fold only where NaN or a zero
extreme decides the bits: on random rows full of ties, signed zeros, NaN and
infinities, the result is the serial fold's to the bit (the first NaN; else
the extreme, the first of equal zeros), along every axis, float32 and float64.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.backends import c_backend

pytestmark = pytest.mark.skipif(not c_backend.available, reason="C extension not built")
if c_backend.available:
    from fastad.backends.lower import lower

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 40)), deadline=None)
VALUES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-310, 3.0e38]


def serial_fold(x: np.ndarray, axis: int, larger: bool) -> np.ndarray:
    """The VM's definition (kernels.c, R_MAX / R_MIN) in element order:
    acc = x if x beats acc or x is NaN, from -inf (max) or inf (min)."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape[:-1], x.dtype)
    for idx in np.ndindex(out.shape):
        acc = x.dtype.type(-np.inf if larger else np.inf)
        for v in moved[idx]:
            if (v > acc if larger else v < acc) or v != v:
                acc = v
        out[idx] = acc
    return out


def same_bits(got, want):
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bits = f"u{want.dtype.itemsize}"
    np.testing.assert_array_equal(got[~nan].view(bits), want[~nan].view(bits))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("larger", [True, False], ids=["max", "min"])
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 9), cols=st.integers(1, 23),
       axis=st.sampled_from([0, 1, None]), density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
       zero_extreme=st.booleans())
def test_row_extremes_are_the_serial_fold_to_the_bit(dtype, larger, seed, rows, cols, axis,
                                                     density, zero_extreme):
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        special = rng.choice(np.array(VALUES), (rows, cols)).astype(dtype)
    x = np.where(rng.random((rows, cols)) < density, special,
                 rng.integers(-3, 4, (rows, cols)).astype(dtype))  # ties
    if zero_extreme:  # zeros of both signs, and nothing beyond them
        x = -np.abs(x) if larger else np.abs(x)
        x[x == 0] = rng.choice(np.array([0.0, -0.0], dtype), int(np.sum(x == 0)))
    fn = np.max if larger else np.min
    f = (lambda x: fn(x)) if axis is None else (lambda x: fn(x, axis=axis))
    exe = c_backend.Executable(lower(fa.make_tape(f)(x)))
    got = np.asarray(exe.run([x])[0])
    want = serial_fold(x.reshape(1, -1) if axis is None else x, 1 if axis is None else axis,
                       larger)
    same_bits(got.reshape(want.shape), want)
    # and NumPy's value (NaN propagates; the sign of a zero extreme is open)
    np.testing.assert_array_equal(got.reshape(want.shape), fn(x, axis=axis).reshape(want.shape))


@pytest.mark.parametrize("name", ["max", "min", "amax", "amin", "nanmax"])
@pytest.mark.parametrize("shape, axis", [((), None), ((1,), 0), ((3,), None),
                                         ((2, 1), 1)])
def test_eager_extremum_gradients_of_every_rank(name, shape, axis):
    """The eager sweep's in-place rule for max/min, down to 0-d inputs (whose
    comparison NumPy gives as a scalar, which takes no ``out=``)."""
    x = np.arange(1.0, 1.0 + np.prod(shape, dtype=int)).reshape(shape) * 0.7
    fn = getattr(fnp, name)
    g = fa.grad(lambda x: fnp.sum(fn(x, axis=axis) * 2.0))(x)
    want = np.zeros(shape)
    want[np.unravel_index(np.argmax(x) if "max" in name else np.argmin(x), shape)] = 2.0
    if axis is not None and len(shape) == 2:  # one element per row
        want = np.full(shape, 2.0)
    np.testing.assert_array_equal(g, want)
