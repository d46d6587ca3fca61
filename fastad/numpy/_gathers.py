"""Indexing by integers that are data (`IntArrayTracer`, `IntTracer`: integer
arguments of a compiled function): ``x[idx]``, ``p[np.arange(n), labels]``,
``np.take``, ``np.take_along_axis``, as gathers by traced indices.

Every such read is ``gather_rows`` (`primitives.gathers`): of ``x`` itself
when the traced indices select along axis 0 and every other axis is whole
(``X[idx]``), else of ``x.ravel()`` by a traced flat index.  The flat index
is linear in the traced indices, so NumPy's own indexing rules (broadcasting
of index arrays, where advanced-index axes land, slices, ``None``) are applied
to constant stand-ins: ``base``, the positions indexed with each traced array
replaced by zeros, plus, for each traced array ``k`` on axis ``a``,
``stride(a) * wrap(k)[pos]``, where ``pos`` says which element of ``k`` each
result element uses (the same key on a table of ``k``'s element numbers) and
``wrap(k)`` is ``k`` checked against axis ``a``'s length and wrapped (a
gather from ``arange(len)``, so an index out of range raises IndexError on
every backend, before any flattening could hide it).
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as _np

from ..core.arrays import positions
from ..core.int_data import DATA_TRACERS, BoolArrayTracer
from ..core.registry import registry
from ..core.tracer import Tracer, bind
from ._base import _constant, shape, size
from ._shape import reshape, take_flat

__all__ = ["gather_rows", "scatter_add_rows"]


def gather_rows(x: Any, idx: Any) -> Any:
    """``np.take(x, idx, axis=0)`` for integer ``idx`` (traced or not), as one
    primitive: negative indices count from the end, out of range raises
    IndexError."""
    if not isinstance(x, Tracer):
        x = _constant(_np.asarray(x))
    return bind(registry["gather_rows"], x, idx)


def scatter_add_rows(acc: Any, idx: Any, v: Any) -> Any:
    """A copy of ``acc`` with the rows of ``v`` added at the rows ``idx``
    names; repeated indices accumulate (``np.add.at``)."""
    return bind(registry["scatter_add_rows"], acc, idx, v)


def is_index_data(k: Any) -> bool:
    """An integer (array) argument taken as data, used as an index."""
    return isinstance(k, DATA_TRACERS) and not isinstance(k, BoolArrayTracer)


def has_index_data(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return builtins.any(is_index_data(k) for k in keys)


def _expanded(keys: tuple[Any, ...], data: Tracer) -> list[Any]:
    """The key with constant masks as their integer arrays (NumPy's meaning)
    and lists as arrays; a traced mask or bool scalar needs values."""
    out: list[Any] = []
    for k in keys:
        if isinstance(k, Tracer) and not is_index_data(k):
            data._needed()  # a traced mask or computed index beside data indices
        if isinstance(k, (bool, _np.bool_)):
            data._needed()
        if isinstance(k, list):
            k = _np.asarray(k)
        if isinstance(k, _np.ndarray) and k.dtype.kind == "b":
            out.extend(_np.nonzero(k))
        else:
            out.append(k)
    return out


def getitem_by_data(a: Any, key: Any) -> Any:
    """``a[key]`` where some of key's entries are integers taken as data."""
    keys = key if isinstance(key, tuple) else (key,)
    shp = tuple(shape(a))
    first = keys[0]
    if (is_index_data(first) and len(shp) >= 1
            and builtins.all(k == slice(None) for k in keys[1:] if isinstance(k, slice))
            and builtins.all(isinstance(k, slice) for k in keys[1:])):
        return gather_rows(a, first)  # X[idx], X[idx, :]: whole rows
    data = next(k for k in keys if is_index_data(k))
    keys = tuple(_expanded(keys, data))
    used = builtins.sum(1 for k in keys if k is not None and k is not Ellipsis)
    axis_of: list[int | None] = []
    axis = 0
    for k in keys:
        if k is None:
            axis_of.append(None)
        elif k is Ellipsis:
            axis_of.append(None)
            axis += len(shp) - used
        else:
            axis_of.append(axis)
            axis += 1
    traced = [j for j, k in enumerate(keys) if is_index_data(k)]
    zeros = {j: _np.zeros(shape(keys[j]), dtype=_np.int64) for j in traced}
    key0 = tuple(zeros.get(j, k) for j, k in enumerate(keys))
    base = _np.asarray(positions(shp)[key0])  # NumPy's errors for a malformed key
    flat: Any = _constant(base.astype(_np.float64))
    if base.size == 0:
        return take_flat(a, base)
    for j in traced:
        ax, k = axis_of[j], keys[j]
        n, m = shp[ax], size(k)
        numbers = _np.arange(m, dtype=_np.int64).reshape(shape(k))
        keyj = tuple(numbers if i == j else key0[i] for i in range(len(keys)))
        view = [-1 if i == ax else 1 for i in range(len(shp))]
        table = _np.broadcast_to(_np.arange(m).reshape(view),
                                 tuple(m if i == ax else d for i, d in enumerate(shp)))
        pos = _np.asarray(table[keyj])
        wrapped = gather_rows(_np.arange(n, dtype=_np.float64), reshape(k, (m,)))
        stride = int(_np.prod(shp[ax + 1:], dtype=_np.int64))
        flat = flat + take_flat(wrapped, pos) * float(stride)
    return gather_rows(reshape(a, (-1,)), flat)


def take_by_data(a: Any, indices: Any, axis: Any, mode: str) -> Any:
    """``np.take(a, indices, axis)`` with indices taken as data."""
    if mode != "raise":
        indices._needed()  # wrap and clip modes: keyed by value
    if axis is None:
        return getitem_by_data(reshape(a, (-1,)), (indices,))
    axis = axis + len(shape(a)) if axis < 0 else axis
    return getitem_by_data(a, (slice(None),) * axis + (indices,))


def take_along_by_data(arr: Any, indices: Any, axis: int) -> Any:
    """``np.take_along_axis(arr, indices, axis)`` with indices taken as data:
    the other axes indexed by ranges broadcast against them."""
    shp = tuple(shape(arr))
    if len(shape(indices)) != len(shp):
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    key = tuple(indices if i == axis else _np.arange(d).reshape(
        [-1 if j == i else 1 for j in range(len(shp))]) for i, d in enumerate(shp))
    return getitem_by_data(arr, key)


def set_rows(a: Any, idx: Any, value: Any) -> Any:
    """A copy of ``a`` with the rows ``idx`` names (integers taken as data)
    set to ``value``, as NumPy's ``a[idx] = value`` (of repeated indices the
    last write wins): each row takes the value of the last index naming it,
    found by comparing every index with every row (len(idx) * len(a)
    comparisons), so nothing depends on the indices' values at trace time."""
    from ._elementwise import equal, greater_equal, maximum, where
    from ._reductions import max as _max
    from ._shape import broadcast_to
    from ..core.int_data import integer_like
    n, m = shape(a)[0], size(idx)
    if m == 0:
        return a
    # each index's row number (a gather from arange: out of range raises IndexError)
    rows = gather_rows(_np.arange(n, dtype=_np.float64), reshape(idx, (m,)))
    hits = equal(reshape(rows, (m, 1)), _np.arange(n, dtype=_np.float64))
    last = _max(where(hits, _np.arange(m, dtype=_np.float64).reshape(m, 1), -1.0), axis=0)
    shp = tuple(shape(a))
    values = reshape(broadcast_to(value, tuple(shape(idx)) + shp[1:]), (m,) + shp[1:])
    new = gather_rows(values, integer_like(maximum(last, 0.0), frozenset(), _np.dtype(_np.intp)))
    written = reshape(greater_equal(last, 0.0), (n,) + (1,) * (len(shp) - 1))
    return where(written, new, a)
