"""``jax.lax``'s shape functions: broadcasting, slicing (by constant and by
traced starts), padding, reshaping, all written with `fastad.numpy`'s traced
views and gathers, so each is differentiable and compiles."""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as _np

from .. import numpy as fnp
from ..numpy._index_update import IndexUpdate

__all__ = [
    "broadcast", "broadcast_in_dim", "broadcast_to_rank", "broadcast_shapes", "broadcast_like",
    "broadcasted_iota", "iota", "full", "full_like", "concatenate", "stack", "unstack",
    "expand_dims", "squeeze", "reshape", "rev", "slice", "slice_in_dim", "index_in_dim",
    "dynamic_slice", "dynamic_slice_in_dim", "dynamic_index_in_dim", "dynamic_update_slice",
    "dynamic_update_slice_in_dim", "dynamic_update_index_in_dim", "transpose", "pad", "split",
    "tile", "collapse",
]


def broadcast(operand: Any, sizes: Sequence[int], *, out_sharding: Any = None) -> Any:
    """``operand`` with new leading axes of ``sizes``."""
    return fnp.broadcast_to(operand, tuple(sizes) + tuple(fnp.shape(operand)))


def broadcast_in_dim(operand: Any, shape: Sequence[int], broadcast_dimensions: Sequence[int],
                     *, out_sharding: Any = None) -> Any:
    """``operand``'s axis i placed at ``broadcast_dimensions[i]`` of ``shape``."""
    shape, dims = tuple(shape), tuple(broadcast_dimensions)
    if len(dims) != fnp.ndim(operand) or list(dims) != sorted(set(dims)):
        raise ValueError(f"broadcast_in_dim: broadcast_dimensions {dims} must be increasing, "
                         f"one per axis of the operand of shape {fnp.shape(operand)}")
    placed = [1] * len(shape)
    for axis, d in zip(fnp.shape(operand), dims):
        if axis not in (1, shape[d]):
            raise ValueError(f"broadcast_in_dim: operand axis of size {axis} cannot go to "
                             f"axis {d} of shape {shape}")
        placed[d] = axis
    return fnp.broadcast_to(fnp.reshape(operand, tuple(placed)), shape)


def broadcast_to_rank(x: Any, rank: int) -> Any:
    return broadcast(x, (1,) * (rank - fnp.ndim(x)))


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    return tuple(_np.broadcast_shapes(*(tuple(s) for s in shapes)))


def broadcast_like(arr: Any, like_arr: Any) -> Any:
    return fnp.broadcast_to(arr, fnp.shape(like_arr))


def iota(dtype: Any, size: int) -> Any:
    return _np.arange(size, dtype=dtype)


def broadcasted_iota(dtype: Any, shape: Sequence[int], dimension: int, *,
                     out_sharding: Any = None) -> Any:
    shape = tuple(shape)
    along = [1] * len(shape)
    along[dimension] = shape[dimension]
    return _np.broadcast_to(_np.arange(shape[dimension], dtype=dtype).reshape(along),
                            shape).copy()


def full(shape: Sequence[int], fill_value: Any, dtype: Any = None, *, sharding: Any = None
         ) -> Any:
    value = fnp.asarray(fill_value)
    if dtype is not None:
        value = value.astype(dtype)
    return fnp.broadcast_to(value, tuple(shape)) + fnp.zeros((), value.dtype)


def full_like(x: Any, fill_value: Any, dtype: Any = None, shape: Any = None,
              sharding: Any = None) -> Any:
    return full(fnp.shape(x) if shape is None else shape, fill_value,
                _np.result_type(x) if dtype is None else dtype)


def concatenate(operands: Sequence[Any], dimension: int) -> Any:
    return fnp.concatenate(list(operands), axis=dimension)


def stack(operands: Sequence[Any], axis: int = 0) -> Any:
    return fnp.stack(list(operands), axis=axis)


def unstack(x: Any, axis: int = 0) -> tuple:
    return tuple(index_in_dim(x, i, axis, keepdims=False) for i in range(fnp.shape(x)[axis]))


def expand_dims(array: Any, dimensions: Sequence[int]) -> Any:
    return fnp.expand_dims(array, tuple(dimensions))


def squeeze(array: Any, dimensions: Sequence[int]) -> Any:
    return fnp.squeeze(array, axis=tuple(dimensions))


def reshape(operand: Any, new_sizes: Sequence[int], dimensions: Sequence[int] | None = None,
            *, out_sharding: Any = None) -> Any:
    """Row-major reshape, of ``transpose(operand, dimensions)`` when given."""
    if dimensions is not None:
        operand = fnp.transpose(operand, tuple(dimensions))
    return fnp.reshape(operand, tuple(new_sizes))


def transpose(operand: Any, permutation: Sequence[int]) -> Any:
    return fnp.transpose(operand, tuple(int(p) for p in permutation))


def rev(operand: Any, dimensions: Sequence[int]) -> Any:
    dims = tuple(dimensions)
    return fnp.flip(operand, axis=dims) if dims else operand


def slice(operand: Any, start_indices: Sequence[int], limit_indices: Sequence[int],  # noqa: A001
          strides: Sequence[int] | None = None) -> Any:
    strides = strides or (1,) * len(start_indices)
    if not len(start_indices) == len(limit_indices) == len(strides) == fnp.ndim(operand):
        raise ValueError("slice: start_indices, limit_indices and strides need one entry per "
                         f"axis of the operand of shape {fnp.shape(operand)}")
    return operand[tuple(builtins.slice(s, e, k)
                         for s, e, k in zip(start_indices, limit_indices, strides))]


def _axis_index(i: int | None, n: int, default: int) -> int:
    """JAX's reading of a start or limit: None is the default, negatives count from the end."""
    if i is None:
        return default
    return i + n if i < 0 else i


def slice_in_dim(operand: Any, start_index: int | None, limit_index: int | None,
                 stride: int = 1, axis: int = 0) -> Any:
    nd = fnp.ndim(operand)
    axis = axis % nd
    n = fnp.shape(operand)[axis]
    start, limit = [0] * nd, list(fnp.shape(operand))
    strides = [1] * nd
    start[axis] = _axis_index(start_index, n, 0)
    limit[axis] = _axis_index(limit_index, n, n)
    strides[axis] = stride
    return slice(operand, start, limit, strides)


def index_in_dim(operand: Any, index: int, axis: int = 0, keepdims: bool = True) -> Any:
    n = fnp.shape(operand)[axis]
    index = _axis_index(index, n, 0)
    if not 0 <= index < n:
        raise IndexError(f"index_in_dim: index {index} out of range for an axis of size {n}")
    out = slice_in_dim(operand, index, index + 1, 1, axis)
    return out if keepdims else fnp.squeeze(out, axis=axis)


# -- slices at traced starts ------------------------------------------------------------
def _clamped(start: Any, n: int, size: int, wrap: bool = True) -> Any:
    """A slice's start moved so that ``size`` elements from it fit in ``n``;
    a negative start counts from the end first (``wrap``, JAX's
    ``allow_negative_indices``), else is clamped to 0 as JAX does a traced
    one (JAX raises for a constant one)."""
    if isinstance(start, (int, _np.integer)):
        start = start + n if start < 0 and wrap else start
        return builtins.min(builtins.max(int(start), 0), n - size)
    if wrap:
        start = fnp.where(start < 0, start + n, start)
    return fnp.clip(start, 0, n - size)


def _wraps(allow_negative_indices: Any, n: int) -> list:
    flags = allow_negative_indices
    return [bool(flags)] * n if isinstance(flags, (bool, int)) else [bool(f) for f in flags]


def dynamic_slice(operand: Any, start_indices: Sequence[Any], slice_sizes: Sequence[int], *,
                  allow_negative_indices: Any = True) -> Any:
    """``operand[start:start + size]`` along every axis, the starts clamped so
    the slice stays inside, as JAX does; traced starts are integers of the
    trace (a loop counter)."""
    out = operand
    wraps = _wraps(allow_negative_indices, len(start_indices))
    for axis, (start, size) in enumerate(zip(start_indices, slice_sizes)):
        first = _clamped(start, fnp.shape(operand)[axis], size, wraps[axis])
        out = fnp.take(out, first + _np.arange(size), axis=axis)
    return out


def _one_axis(operand: Any, axis: int, value: Any, fill: Any) -> list:
    starts = [fill] * fnp.ndim(operand)
    starts[axis] = value
    return starts


def dynamic_slice_in_dim(operand: Any, start_index: Any, slice_size: int, axis: int = 0, *,
                         allow_negative_indices: bool = True) -> Any:
    sizes = _one_axis(operand, axis, slice_size, None)
    sizes = [s if s is not None else n for s, n in zip(sizes, fnp.shape(operand))]
    return dynamic_slice(operand, _one_axis(operand, axis, start_index, 0), sizes,
                         allow_negative_indices=allow_negative_indices)


def dynamic_index_in_dim(operand: Any, index: Any, axis: int = 0, keepdims: bool = True, *,
                         allow_negative_indices: bool = True) -> Any:
    out = dynamic_slice_in_dim(operand, index, 1, axis,
                               allow_negative_indices=allow_negative_indices)
    return out if keepdims else fnp.squeeze(out, axis=axis)


def dynamic_update_slice(operand: Any, update: Any, start_indices: Sequence[Any], *,
                         allow_negative_indices: Any = True) -> Any:
    """``operand`` with ``update`` written at ``start_indices`` (clamped as in
    `dynamic_slice`), a new array."""
    index = []
    wraps = _wraps(allow_negative_indices, len(start_indices))
    for axis, start in enumerate(start_indices):
        size = fnp.shape(update)[axis]
        first = _clamped(start, fnp.shape(operand)[axis], size, wraps[axis])
        shape = [1] * len(start_indices)
        shape[axis] = size
        index.append(fnp.reshape(first + _np.arange(size), shape))
    return IndexUpdate(operand, tuple(index)).set(update)


def dynamic_update_slice_in_dim(operand: Any, update: Any, start_index: Any, axis: int, *,
                                allow_negative_indices: bool = True) -> Any:
    return dynamic_update_slice(operand, update, _one_axis(operand, axis, start_index, 0),
                                allow_negative_indices=allow_negative_indices)


def dynamic_update_index_in_dim(operand: Any, update: Any, index: Any, axis: int, *,
                                allow_negative_indices: bool = True) -> Any:
    if fnp.ndim(update) != fnp.ndim(operand):
        update = fnp.expand_dims(update, axis)
    return dynamic_update_slice_in_dim(operand, update, index, axis,
                                       allow_negative_indices=allow_negative_indices)


# -- padding, splitting, tiling ---------------------------------------------------------
def _interior(x: Any, axis: int, k: int, value: Any) -> Any:
    """k copies of ``value`` between neighbours along ``axis``: each element
    followed by its k fillers, the last fillers dropped."""
    n = fnp.shape(x)[axis]
    moved = fnp.moveaxis(x, axis, -1)
    fillers = fnp.broadcast_to(value, fnp.shape(moved) + (k,))
    spread = fnp.reshape(fnp.concatenate([moved[..., None], fillers], axis=-1),
                         fnp.shape(moved)[:-1] + (n * (k + 1),))
    return fnp.moveaxis(spread[..., :builtins.max(n * (k + 1) - k, 0)], -1, axis)


def _edge(x: Any, axis: int, count: int, value: Any, at_end: bool) -> Any:
    """``count`` fillers added at one end of ``axis``, or -count elements cut."""
    n = fnp.shape(x)[axis]
    if count < 0:
        keep = builtins.slice(0, builtins.max(n + count, 0)) if at_end else \
            builtins.slice(builtins.min(-count, n), n)
        index = [builtins.slice(None)] * fnp.ndim(x)
        index[axis] = keep
        return x[tuple(index)]
    shape = list(fnp.shape(x))
    shape[axis] = count
    block = fnp.broadcast_to(value, tuple(shape))
    return fnp.concatenate([x, block] if at_end else [block, x], axis=axis)


def pad(operand: Any, padding_value: Any, padding_config: Sequence[Sequence[int]]) -> Any:
    """``(low, high, interior)`` per axis: interior padding first, then the
    edges, negative edges cutting elements, as XLA's Pad; differentiable in
    the operand and in the padding value."""
    config = [tuple(int(c) for c in cfg) for cfg in padding_config]
    if len(config) != fnp.ndim(operand) or any(len(c) != 3 or c[2] < 0 for c in config):
        raise ValueError(f"pad: padding_config needs one (low, high, interior >= 0) per axis "
                         f"of the operand of shape {fnp.shape(operand)}; got {config}")
    value = fnp.asarray(padding_value).astype(_np.result_type(operand, padding_value))
    out = operand
    for axis, (low, high, interior) in enumerate(config):
        if interior:
            out = _interior(out, axis, interior, value)
        out = _edge(_edge(out, axis, low, value, at_end=False), axis, high, value, at_end=True)
    return out


def split(operand: Any, sizes: Sequence[int], axis: int = 0) -> list:
    if builtins.sum(sizes) != fnp.shape(operand)[axis]:
        raise ValueError(f"split: sizes {tuple(sizes)} do not add up to the axis of size "
                         f"{fnp.shape(operand)[axis]}")
    bounds = _np.cumsum([0, *sizes])
    return [slice_in_dim(operand, int(a), int(b), 1, axis) for a, b in zip(bounds, bounds[1:])]


def tile(operand: Any, reps: Sequence[int]) -> Any:
    return fnp.tile(operand, tuple(reps))


def collapse(operand: Any, start_dimension: int, stop_dimension: int | None = None) -> Any:
    """Axes ``start_dimension:stop_dimension`` merged into one."""
    shape = tuple(fnp.shape(operand))
    stop = len(shape) if stop_dimension is None else stop_dimension
    merged = int(_np.prod(shape[start_dimension:stop], dtype=_np.int64))
    return fnp.reshape(operand, shape[:start_dimension] + (merged,) + shape[stop:])
