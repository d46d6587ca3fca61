"""What the passes read off a tape's constants, answered in one place.

The C lowering and its fusion pass, the Numba code generator, the optimizer
and loop rerolling each ask the same two questions of a constant:

* is it one value repeated?  A backend then reads it as a scalar instead of
  streaming the array, the optimizer folds it into a product, rerolling
  keeps one copy for every iteration.  Reading the first element in place
  of every element must give the same bits, so the answer compares bit
  patterns: a NaN is a NaN's equal when their bits are, and -0.0 is not
  0.0 (``1 / x`` tells them apart).  The lowering and the Numba generator
  used to answer this each in its own way and disagreed on all-NaN arrays.
* is an index table affine in its position (``idx[j] == start + j . strides``)?
  A backend then reads a strided range instead of a table: a slice, a block
  of a 2-D array, a reversal, a broadcast.  `affine_grid` finds the shape a
  flat table is affine over (a strided run, or a block of a 2-D array read
  flat), so the Numba generator can run it as nested loops.

And one question of a scalar: is it a weak Python scalar (`is_weak`), which
takes the dtype of the instruction that reads it?

This module imports nothing of fastad, so backends and transforms may both
use it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


# -- uniform constants ------------------------------------------------------------
def _bits(value: np.ndarray) -> np.ndarray:
    """The elements of ``value`` as unsigned integers of their size, one row of
    bytes each where no such integer exists (complex128's 16 bytes)."""
    flat = np.ascontiguousarray(value).reshape(-1)
    size = flat.dtype.itemsize
    if size in (1, 2, 4, 8):
        return flat.view(f"u{size}")
    return flat.view(np.uint8).reshape(flat.size, size)


def bitwise_uniform(value: Any) -> bool:
    """Do all elements of ``value`` share one bit pattern?  False when empty."""
    arr = np.asarray(value)
    if arr.size == 0:
        return False
    if arr.size == 1:
        return True
    bits = _bits(arr)
    return bool(np.all(bits == bits[0]))


def bitwise_equal(a: Any, b: Any) -> bool:
    """Are ``a`` and ``b`` the same dtype, shape and bits?"""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def all_zero_bits(value: Any) -> bool:
    """Is every element of ``value`` +0 (every bit clear: not -0.0)?"""
    arr = np.asarray(value)
    return not np.any(_bits(arr)) if arr.size else True


# -- affine index tables ----------------------------------------------------------
def c_strides(shape: Sequence[int]) -> list[int]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def affine(idx: np.ndarray) -> tuple[int, list[int]] | None:
    """(start, strides) when ``idx[i0, i1, ...] == start + sum_k i_k * strides_k``
    (the stride of an axis of length 1 is 0), else None; None when empty.

    Compared block by block along the first axis: a slice's index table of
    10^8 elements is checked without a temporary of its size."""
    if idx.size == 0:
        return None
    start = int(idx.reshape(-1)[0]) if idx.ndim < 2 else int(idx[(0,) * idx.ndim])
    strides = []
    for axis, d in enumerate(idx.shape):
        step = [0] * idx.ndim
        step[axis] = 1 if d > 1 else 0
        strides.append(int(idx[tuple(step)]) - start)
    if idx.ndim == 0:
        return start, strides
    inner = np.zeros(idx.shape[1:], dtype=np.int64)
    for axis, (d, stride) in enumerate(zip(idx.shape[1:], strides[1:])):
        line = [1] * inner.ndim
        line[axis] = d
        inner = inner + stride * np.arange(d, dtype=np.int64).reshape(line)
    rows = max(1, _AFFINE_BLOCK // max(1, inner.size))
    for r0 in range(0, idx.shape[0], rows):
        r1 = min(idx.shape[0], r0 + rows)
        lead = np.arange(r0, r1, dtype=np.int64).reshape((-1,) + (1,) * inner.ndim)
        if not np.array_equal(start + lead * strides[0] + inner, idx[r0:r1]):
            return None
    return start, strides


_AFFINE_BLOCK = 1 << 16


def is_range(idx: np.ndarray) -> bool:
    """Are the elements of ``idx``, in C order, consecutive positions start,
    start + 1, ...?  (A slice: a view, no copy.)  False when empty."""
    flat = idx.reshape(-1)
    return flat.size == 1 or (flat.size > 1 and bool(np.all(np.diff(flat) == 1)))


def affine_grid(flat: np.ndarray) -> tuple[int, ...] | None:
    """A shape over which the flat index table ``flat`` is affine: (n,) for a
    strided run, (rows, cols) for a block of a 2-D array read flat (the
    interior ``x[1:-1, 1:-1]`` of a rerolled nested loop), else None.  The
    Numba generator runs gathers and scatters by such tables as loops."""
    if flat.size == 0:
        return None
    if affine(flat) is not None:
        return (flat.size,)
    steps = np.diff(flat)
    cols = int(np.flatnonzero(steps != steps[0])[0]) + 1
    if flat.size % cols:
        return None
    grid = (flat.size // cols, cols)
    return grid if affine(flat.reshape(grid)) is not None else None


def common_affine_grid(flats: Sequence[np.ndarray]) -> tuple[int, ...] | None:
    """One shape over which every index table in ``flats`` is affine."""
    candidates = {g for g in map(affine_grid, flats) if g is not None}
    for grid in sorted(candidates, key=len, reverse=True):
        if all(affine(f.reshape(grid)) is not None for f in flats):
            return grid
    return None


# -- weak scalars -----------------------------------------------------------------
def is_weak(value: Any) -> bool:
    """Is ``value`` a Python int, float or bool constant, which takes the dtype
    of the instruction reading it (NumPy 2, NEP 50)?  NumPy scalars are not
    (np.float64 subclasses float: the exact type is tested)."""
    return type(value) in (int, float, bool)
