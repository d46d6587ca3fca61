"""``jax.scipy.ndimage.map_coordinates``: an array sampled at (fractional)
coordinates, nearest (order 0) or linear (order 1) as JAX's, differentiable
in the array and (order 1) in the coordinates.  The coordinates' integer
parts are integer data of a compiled function, so new coordinates gather
without tracing again."""
from __future__ import annotations

import functools
import itertools
import operator
from typing import Any, Sequence

import numpy as np

from .. import numpy as fnp
from ..core.int_data import integer_like
from ..core.tracer import Tracer

__all__ = ["map_coordinates"]


def _mirror(index: Any, size: int) -> Any:
    period = size - 1  # a triangular wave of half-period size - 1
    if period == 0:
        return index * 0.0
    return fnp.abs(fnp.mod(index + period, 2 * period) - period)


# mode -> the in-range index (as floats holding integers) standing for an index
_FIXERS = {
    "constant": lambda index, size: fnp.clip(index, 0, size - 1),  # (masked by cval below)
    "nearest": lambda index, size: fnp.clip(index, 0, size - 1),
    "wrap": lambda index, size: fnp.mod(index, size),
    "mirror": _mirror,
    "reflect": lambda index, size: fnp.floor_divide(_mirror(2 * index + 1, 2 * size + 1) - 1, 2),
}


def _round_half_away(x: Any) -> Any:
    return fnp.sign(x) * fnp.floor(fnp.abs(x) + 0.5)


def _as_index(index: Any) -> Any:
    """Floats holding integers as indices: integer data when traced."""
    if isinstance(index, Tracer):
        return integer_like(fnp.stop_gradient(index), frozenset(), np.dtype(np.int64))
    return np.asarray(index).astype(np.int64)


def map_coordinates(input: Any, coordinates: Sequence[Any], order: int, mode: str = "constant",
                    cval: Any = 0.0) -> Any:  # noqa: A002 - SciPy's name
    """input sampled at ``coordinates`` (one array per axis of input)."""
    arr = fnp.asarray(input)
    coords = [fnp.asarray(c) for c in coordinates]
    if len(coords) != fnp.ndim(arr):
        raise ValueError(f"coordinates must be a sequence of length input.ndim = "
                         f"{fnp.ndim(arr)}, got {len(coords)}")
    fixer = _FIXERS.get(mode)
    if fixer is None:
        raise NotImplementedError(f"map_coordinates does not support mode {mode!r}; "
                                  f"use one of {sorted(_FIXERS)}")
    if order not in (0, 1):
        raise NotImplementedError("map_coordinates supports order 0 and 1 only (as JAX's)")
    per_axis = []
    for c, size in zip(coords, fnp.shape(arr)):
        if order == 0:
            nodes = [(_round_half_away(c), 1.0)]
        else:
            lower = fnp.floor(c)
            upper_weight = c - lower
            nodes = [(lower, 1.0 - upper_weight), (lower + 1.0, upper_weight)]
        per_axis.append([(_as_index(fixer(fnp.stop_gradient(i) if isinstance(i, Tracer) else i,
                                          size)),
                          (i >= 0) & (i < size) if mode == "constant" else None, w)
                         for i, w in nodes])
    outputs = []
    for items in itertools.product(*per_axis):
        indices, valid, weights = zip(*items)
        value = arr[tuple(indices)]
        if mode == "constant":
            value = fnp.where(functools.reduce(operator.and_, valid), value, cval)
        outputs.append(functools.reduce(operator.mul, weights) * value)
    result = functools.reduce(operator.add, outputs)
    if fnp.result_type(arr).kind in "iu":
        result = _round_half_away(result)
    return fnp.astype(result, fnp.result_type(arr))

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
