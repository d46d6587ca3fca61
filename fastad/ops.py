"""``jax.ops``: segment reductions, ``out[k]`` the sum (product, max, min)
of the rows of ``data`` whose segment id is ``k``, as JAX computes them:
ids outside ``[0, num_segments)`` are dropped, an empty segment holds the
reduction's identity (0, 1, the dtype's lowest or highest value).  Written
with ``x.at[ids]`` updates, so they are differentiable in ``data`` and the
ids may be integer data of a compiled function."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import numpy as fnp

__all__ = ["segment_sum", "segment_prod", "segment_max", "segment_min"]


def _segments(name: str, data: Any, segment_ids: Any, num_segments: Any, initial: Any,
              indices_are_sorted: bool, unique_indices: bool, bucket_size: Any,
              mode: Any) -> Any:
    if num_segments is None:  # the ids' values decide the result's shape
        num_segments = int(fnp.max(segment_ids)) + 1 if fnp.size(segment_ids) else 0
    shape = (int(num_segments),) + tuple(fnp.shape(data))[fnp.ndim(segment_ids):]
    dtype = fnp.result_type(data)
    if initial is None:  # max's and min's identities: the dtype's extremes
        low = name == "max"
        if dtype.kind == "f":
            initial = -np.inf if low else np.inf
        else:
            info = np.iinfo(dtype) if dtype.kind in "iu" else None
            initial = (info.min if low else info.max) if info else (not low)
    out = fnp.full(shape, initial, dtype)
    return getattr(out.at[segment_ids], name)(
        data, mode="drop" if mode is None else mode, wrap_negative_indices=False,
        indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)


def segment_sum(data: Any, segment_ids: Any, num_segments: Any = None,
                indices_are_sorted: bool = False, unique_indices: bool = False,
                bucket_size: Any = None, mode: Any = None) -> Any:
    return _segments("add", data, segment_ids, num_segments, 0, indices_are_sorted,
                     unique_indices, bucket_size, mode)


def segment_prod(data: Any, segment_ids: Any, num_segments: Any = None,
                 indices_are_sorted: bool = False, unique_indices: bool = False,
                 bucket_size: Any = None, mode: Any = None) -> Any:
    return _segments("multiply", data, segment_ids, num_segments, 1, indices_are_sorted,
                     unique_indices, bucket_size, mode)


def segment_max(data: Any, segment_ids: Any, num_segments: Any = None,
                indices_are_sorted: bool = False, unique_indices: bool = False,
                bucket_size: Any = None, mode: Any = None) -> Any:
    return _segments("max", data, segment_ids, num_segments, None, indices_are_sorted,
                     unique_indices, bucket_size, mode)


def segment_min(data: Any, segment_ids: Any, num_segments: Any = None,
                indices_are_sorted: bool = False, unique_indices: bool = False,
                bucket_size: Any = None, mode: Any = None) -> Any:
    return _segments("min", data, segment_ids, num_segments, None, indices_are_sorted,
                     unique_indices, bucket_size, mode)
