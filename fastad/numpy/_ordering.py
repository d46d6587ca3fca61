"""Sorting and gathers along an axis: ``argsort``/``argpartition`` are
primitives (indices recomputed on every replay), ``sort``/``partition`` and
traced-index ``take``/``take_along_axis`` gathers by them."""
from __future__ import annotations

from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.int_data import integer_like
from ..core.tracer import Tracer, bind
from ._base import _no_out, _p, iscomplexobj, ndim, result_dtype, shape, size
from ._reductions import _axis_of, max, min, sum
from ._elementwise import astype, equal, less, less_equal, logical_or, not_equal, where
from ._gathers import is_index_data, take_along_by_data, take_by_data
from ._shape import _gather, broadcast_to, expand_dims, reshape

__all__ = ["argsort", "sort", "argpartition", "partition", "take_along_axis", "take", "argmax",
           "argmin", "searchsorted", "digitize"]


def _arg_extremum(name: str):
    numpy_fn = getattr(_np, name)
    extremum = max if name == "argmax" else min

    def fn(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
        """Where the extremum is: on traced values an integer traced value
        with no derivative, computed at every call (comparing it, indexing
        with it or returning it compiles once); a use of its value (an
        ``if``, ``range``, ``int()``) reads it under a guard.  Written with
        reductions every backend runs: the first position along the axis
        holding the extremum, or a NaN (NumPy's first NaN), as a min over
        the positions."""
        if not isinstance(a, Tracer):
            return numpy_fn(a, axis=axis, out=out, keepdims=keepdims)
        _no_out(out, name)
        if iscomplexobj(a):
            raise TracingError(f"{name} of complex traced values is not supported (NumPy "
                               "orders them lexicographically); use the real part")
        x, ax = _axis_of(a, axis, flat_0d=True)
        n = shape(x)[ax]
        if n == 0:
            raise ValueError(f"attempt to get {name} of an empty sequence")
        if result_dtype(x).kind == "b":
            x = astype(x, _np.float64)
        hit = logical_or(equal(x, extremum(x, axis=ax, keepdims=True)), not_equal(x, x))
        positions = _np.arange(n, dtype=_np.float64).reshape(
            (n,) + (1,) * (ndim(x) - ax - 1))
        found = min(where(hit, positions, float(n)), axis=ax,
                    keepdims=keepdims and axis is not None)
        if keepdims and axis is None:
            found = reshape(found, (1,) * ndim(a))
        return integer_like(found, frozenset(), _np.dtype(_np.intp))
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = "fastad.numpy"
    return fn


argmax = _arg_extremum("argmax")
argmin = _arg_extremum("argmin")


def _ordered(indices: Any) -> Any:
    """An ordering's indices (held in float64 by the primitive) as integers
    taken as data: indexing with them (``x[np.argsort(x)[:k]]``) is a gather
    compiled once, and batches under vmap."""
    return integer_like(indices, frozenset(), _np.dtype(_np.intp))


def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
            stable: Any = None) -> Any:
    """Indices that sort a (stable): not differentiable; integers taken as
    data (`_ordered`)."""
    if not isinstance(a, Tracer):
        return _np.argsort(a, axis=axis, kind="stable")
    a, axis = _axis_of(a, axis, flat_0d=True)
    return _ordered(bind(_p("argsort"), a, axis=axis))


def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
         stable: Any = None) -> Any:  # (always stable)
    a, axis = _axis_of(a, axis)
    return _take_along(a, bind(_p("argsort"), a, axis=axis), axis)


def argpartition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
                 order: Any = None) -> Any:
    if not isinstance(a, Tracer):
        return _np.argpartition(a, kth, axis=axis)
    a, axis = _axis_of(a, axis)
    kth = tuple(int(k) for k in _np.atleast_1d(kth))
    return _ordered(bind(_p("argpartition"), a, kth=kth, axis=axis))


def partition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
              order: Any = None) -> Any:
    a, axis = _axis_of(a, axis)
    return _take_along(a, argpartition(a, kth, axis), axis)


def _take_along(a: Any, idx: Any, axis: int) -> Any:
    return bind(_p("take_along"), a, idx, axis=axis)


def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    arr, axis = _axis_of(arr, axis)
    if is_index_data(indices):  # integers passed as data
        return take_along_by_data(arr, indices, axis)
    if not isinstance(indices, Tracer):  # constant: a fixed gather, compiled natively
        return _gather(arr, lambda i: _np.take_along_axis(i, _np.asarray(indices), axis))
    if ndim(indices) != ndim(arr):
        raise ValueError("take_along_axis: indices and arr must have the same number of "
                         "dimensions")
    # the other axes broadcast against each other; along ``axis`` the indices
    # may be fewer or more than arr's elements (a top-k)
    others = list(_np.broadcast_shapes(*[tuple(1 if k == axis else d for k, d in enumerate(s))
                                         for s in (shape(arr), shape(indices))]))
    arr_shape, idx_shape = list(others), list(others)
    arr_shape[axis], idx_shape[axis] = shape(arr)[axis], shape(indices)[axis]
    if tuple(shape(arr)) != tuple(arr_shape):
        arr = broadcast_to(arr, tuple(arr_shape))
    return _take_along(arr, broadcast_to(indices, tuple(idx_shape)), axis)


def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
    _no_out(out, "take")
    if is_index_data(indices):  # integers passed as data
        return take_by_data(a, indices, axis, mode)
    if not isinstance(indices, Tracer):
        return _gather(a, lambda i: _np.take(i, indices, axis=axis, mode=mode))
    if ndim(indices) > 1:
        raise TracingError("take with traced indices: only a 1-d index array is supported")
    a, axis = _axis_of(a, axis)
    view = [1] * ndim(a)
    view[axis] = shape(indices)[0]
    target = tuple(shape(indices)[0] if i == axis else d for i, d in enumerate(shape(a)))
    return _take_along(a, broadcast_to(reshape(indices, tuple(view)), target), axis)


#: the most sorted constants `searchsorted` counts against with comparisons
#: (each traced value is compared with every one); more are a guarded plain call
COUNTED = 4096


def _counted(a: Any, v: Any, side: str) -> Any:
    """``np.searchsorted(a, v, side)`` for a sorted 1-d ``a`` (constant or
    traced) and v, as integers taken as data (computed at every call, so
    indexing with them compiles once): how many of a are below v (``left``)
    or not above it (``right``); a NaN v goes after every number, as NumPy
    sorts NaN last."""
    if not isinstance(a, Tracer):
        a = _np.asarray(a, dtype=_np.float64)
    below = less(a, expand_dims(v, -1)) if side == "left" else less_equal(a, expand_dims(v, -1))
    count = sum(astype(below, _np.float64), axis=-1)
    if side == "right":
        nan_at: Any = float(size(a))
    elif isinstance(a, Tracer):
        nan_at = sum(astype(equal(a, a), _np.float64))
    else:
        nan_at = float(_np.count_nonzero(a == a))
    sources = frozenset().union(*(getattr(t, "sources", frozenset()) for t in (a, v)))
    return integer_like(where(not_equal(v, v), nan_at, count), sources, _np.dtype(_np.intp))


def _countable(a: Any, v: Any, side: Any, sorter: Any) -> bool:
    return ((isinstance(v, Tracer) or isinstance(a, Tracer)) and sorter is None
            and side in ("left", "right") and ndim(a) == 1 and size(a) <= COUNTED
            and result_dtype(a).kind in "iuf" and result_dtype(v).kind in "iufb")


def searchsorted(a: Any, v: Any, side: str = "left", sorter: Any = None) -> Any:
    """Where v would be inserted in the sorted ``a``: on traced values (a 1-d
    ``a`` of up to `COUNTED` elements, constant or traced) integers taken as
    data, counted with comparisons every backend runs; otherwise NumPy's
    result under a guard (`_plain.plain_call`)."""
    if _countable(a, v, side, sorter):
        return _counted(a, v, side)
    if not isinstance(a, Tracer) and not isinstance(v, Tracer):
        return _np.searchsorted(a, v, side=side, sorter=sorter)
    from ._plain import plain_call
    return plain_call(_np.searchsorted, (a, v), {"side": side, "sorter": sorter})


def digitize(x: Any, bins: Any, right: bool = False) -> Any:
    """The bin of each x (NumPy's: bins increasing or decreasing), as
    `searchsorted` counts it: integers taken as data for traced x."""
    if not isinstance(x, Tracer) or not _countable(bins, x, "left", None):
        if not isinstance(x, Tracer) and not isinstance(bins, Tracer):
            return _np.digitize(x, bins, right=right)
        from ._plain import plain_call
        return plain_call(_np.digitize, (x, bins), {"right": right})
    bins = _np.asarray(bins)
    _np.digitize(bins[:0], bins)  # NumPy's ValueError for bins neither increasing nor decreasing
    side = "left" if right else "right"
    if bins.size > 1 and bins[-1] < bins[0]:  # decreasing: counted from the end
        return bins.size - _counted(bins[::-1], x, side)
    return _counted(bins, x, side)
