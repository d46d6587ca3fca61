"""Indexing, item assignment, and the functions that write into an array
(``copyto``, ``put``, ``place``, ``putmask``, ``put_along_axis``,
``fill_diagonal``): reads are gathers, writes scatters, kept consistent with
the views of the array written (`_views`)."""
from __future__ import annotations

import builtins
import functools
import math
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.arrays import made_here, positions
from ..core.int_data import DATA_TRACERS, INTEGER_DATA, IntValueNeeded, data_sources
from ..core.tracer import ArrayTracer, Tracer, bind
from ._base import _constant, _contains_tracer, _fresh, _p, result_dtype, shape, size
from ._creation import array
from ._elementwise import astype
from ._elementwise import where as _select
from ._gathers import getitem_by_data, has_index_data, is_index_data, set_rows
from ._reductions import _concrete
from ._shape import broadcast_to, reshape, scatter_set, take_flat
from ._views import _check_writeable, _link, _same_memory, _store

_TAKE = _p("take")

__all__ = ["getitem", "setitem", "copyto", "put", "place", "putmask", "put_along_axis",
           "fill_diagonal"]


def _flat_index(shp: tuple[int, ...], key: Any) -> _np.ndarray:
    if not isinstance(key, tuple):
        key = (key,)
    # (an index is a view of the position table of the array's size, which
    # the cache would keep alive: only those of small arrays are kept)
    cache_key = _basic_key(shp, key) if math.prod(shp) <= 4096 else None
    if cache_key is not None:
        idx = _FLAT_INDICES.get(cache_key)
        if idx is None:
            idx = _flat_index_of(shp, key)
            if len(_FLAT_INDICES) >= 1024:
                _FLAT_INDICES.clear()
            _FLAT_INDICES[cache_key] = idx
        return idx
    return _flat_index_of(shp, key)


#: (shape, key) -> the flat index of a basic key (ints, slices of ints, None,
#: Ellipsis) into an array of at most 4096 elements, read-only: an eager
#: gradient takes the same slices at every call
_FLAT_INDICES: dict[Any, _np.ndarray] = {}
_SLICE_BOUNDS = frozenset({int, type(None)})


def _basic_key(shp: tuple[int, ...], key: tuple) -> Any:
    """A hashable form of ``key`` if it is basic and plain, else None."""
    parts = [shp]
    for k in key:
        kind = type(k)
        if kind is int or k is None or k is Ellipsis:
            parts.append(k)
        elif kind is slice and type(k.start) in _SLICE_BOUNDS \
                and type(k.stop) in _SLICE_BOUNDS and type(k.step) in _SLICE_BOUNDS:
            parts.append((k.start, k.stop, k.step))
        else:
            return None
    return tuple(parts)


def _flat_index_of(shp: tuple[int, ...], key: tuple) -> _np.ndarray:
    if builtins.any(isinstance(k, Tracer) for k in key):
        key = tuple(_index_value(k) for k in key)
    if len(key) == len(shp) and builtins.all(
            isinstance(k, (int, _np.integer)) and not isinstance(k, bool) for k in key):
        flat = 0
        for k, d in zip(key, shp):
            k = int(k)
            if not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis with size {d}")
            flat = flat * d + (k % d)
        return made_here(_np.asarray(flat, dtype=_np.int64))
    return made_here(_np.asarray(positions(shp)[key]))


def _index_value(k: Any) -> Any:
    """A traced index (a boolean mask ``x > 0``, integers such as argmax's): its
    value, with a guard that it stays the same, so a compiled function retraces
    when the mask's pattern or the indices change (NumPy's result shape is data
    here).  Branch-free alternative: ``np.where(mask, x, 0)``."""
    if not isinstance(k, Tracer):
        return k
    if isinstance(k, DATA_TRACERS):
        k._needed()  # an argument's values: keyed by value (`IntValueNeeded`)
    if isinstance(k, INTEGER_DATA):  # integers held in float64 (argmax's): guarded
        return k._values()
    if k.dtype.kind not in "biu":
        sources = data_sources()
        if sources:  # perhaps integers taken as data, computed in float64: by value
            raise IntValueNeeded(sources)
        raise IndexError("arrays used as indices must be of integer (or boolean) type")
    return _concrete(k)


def getitem(a: Any, key: Any) -> Any:
    if type(key) is int and type(a) is ArrayTracer:  # x[i] of a vector: a loop's read
        shp = a.shape
        if len(shp) == 1:
            d = shp[0]
            if not -d <= key < d:
                raise IndexError(f"index {key} is out of bounds for axis with size {d}")
            # (an index of one element: the trace's constant is a copy of it)
            return bind(_TAKE, a, _np.array(key % d, dtype=_np.int64))
    if has_index_data(key):  # integers passed as data: a gather by traced indices
        return getitem_by_data(a, key)
    idx = _flat_index(shape(a), key)
    if idx.shape == tuple(shape(a)) and _np.array_equal(idx.reshape(-1), _np.arange(idx.size)):
        out = _fresh(a)  # x[:], x[...]: a new view of all of x
    else:
        out = take_flat(a, idx)
    if type(out) is ArrayTracer:
        if _is_basic(key):  # NumPy's basic indexing makes a view
            return _link(a, out, lambda s: s[key])
    elif type(key) is tuple and _has_ellipsis(key) and _is_basic(key):
        return _link(a, out, lambda s: s[key])  # x[..., 0] of a vector: a 0-d view
    return out  # (x[0] of a vector is a scalar: a copy)


def _is_basic(key: Any) -> bool:
    """Whether NumPy's a[key] would be a view of a (basic indexing)."""
    keys = key if isinstance(key, tuple) else (key,)
    return builtins.all(k is None or k is Ellipsis or isinstance(k, slice)
                        or (isinstance(k, (int, _np.integer)) and not isinstance(k, bool))
                        for k in keys)


def _has_ellipsis(key: tuple) -> bool:
    return builtins.any(k is Ellipsis for k in key)


def _index_values(key: Any) -> Any:
    """``key`` with its integers taken as data replaced by their values."""
    from ..core.int_data import DATA_TRACERS
    if isinstance(key, tuple):
        return tuple(k._values() if isinstance(k, DATA_TRACERS) else k for k in key)
    return key._values() if isinstance(key, DATA_TRACERS) else key


def _last_written(idx: _np.ndarray, value: Any) -> tuple[_np.ndarray, Any]:
    """The positions of an assignment through repeated ones, each once, with
    the value NumPy leaves there: it assigns in order, so the last one."""
    flat = idx.reshape(-1)
    _, from_end = _np.unique(flat[::-1], return_index=True)
    keep = _np.sort(flat.size - 1 - from_end)
    if not isinstance(value, Tracer):
        value = array(value)  # a list may hold traced values
    if _np.ndim(value) == 0:
        return flat[keep], value
    return flat[keep], take_flat(broadcast_to(value, idx.shape), keep)


def setitem(a: Tracer, key: Any, value: Any) -> None:
    _check_writeable(a)
    if type(key) is tuple and len(key) == 1:
        key = key[0]  # a[(i,)] is a[i] (``.at[i]``'s bounded key): rows by data too
    if is_index_data(key) and shape(a):  # rows named by integers taken as data: no guard
        _write_all(a, set_rows(a, key, _cast_into(_as_operand(value), a, "the value")))
        return
    if has_index_data(key):  # integers as data beside other indices: their values,
        key = _index_values(key)  # guarded (or the argument keyed by value)
    idx = _flat_index(shape(a), key)
    if _np.unique(idx).size != idx.size:
        idx, value = _last_written(idx, value)
    if _same_memory(value, a, idx):
        return  # a[k] = a[k] after `a[k] += v` wrote through the view already
    _store(a, scatter_set(a, idx, value), idx.reshape(-1))


def _target(a: Any, what: str) -> ArrayTracer:
    """a, a traced array that may be written (else the error NumPy or fastad gives)."""
    if isinstance(a, ArrayTracer):
        return a
    if isinstance(a, Tracer):
        raise TracingError(f"{what} writes into a 0-d traced value, which is immutable like a "
                           "NumPy scalar; use the value computed instead")
    raise TracingError(f"{what} writes traced values into a NumPy array, which cannot be "
                       "traced; create the array with fastad.numpy.zeros (or copy a traced one) "
                       "and write into that")


def _cast_into(value: Any, a: Any, what: str) -> Any:
    """value in a's dtype, as NumPy's same_kind casting allows."""
    vdt, adt = result_dtype(value), result_dtype(a)
    if vdt == adt:
        return value
    if vdt.kind == "c" and adt.kind != "c":
        raise TypeError(f"Cannot cast {what} from {vdt!r} to {adt!r} with casting rule "
                        "'same_kind'")
    if not isinstance(value, Tracer):
        return _np.asarray(value).astype(adt)
    return astype(value, adt)


def _as_operand(v: Any) -> Any:
    """v as a traced value or a NumPy array (lists holding traced values are stacked)."""
    if isinstance(v, Tracer):
        return v
    return array(v) if _contains_tracer(v) else _np.asarray(v)


def _write_all(a: Any, value: Any, mask: Any = True, what: str = "output") -> None:
    """a[...] = value (broadcast to a's shape, cast to its dtype), where mask."""
    value = _as_operand(value)
    if not isinstance(value, Tracer):
        value = _constant(value)
    full = _np.broadcast_shapes(shape(value), shape(a))
    if full != tuple(shape(a)):
        raise ValueError(f"non-broadcastable output operand with shape {shape(a)} doesn't "
                         f"match the broadcast shape {full}")
    value = _cast_into(broadcast_to(value, tuple(shape(a))), a, what)
    if mask is not True:
        value = _select(mask, value, a)
    _store(a, _fresh(value) if value is a else value)


def _numpy_on_plain(fn: Any) -> Any:
    """NumPy's function of the same name when no argument is traced."""
    plain = getattr(_np, fn.__name__)

    @functools.wraps(fn)  # fn's signature, NumPy's
    def call(*args: Any, **kwargs: Any) -> Any:
        if not _contains_tracer(list(args) + list(kwargs.values())):
            return plain(*args, **kwargs)
        return fn(*args, **kwargs)
    return call


def _write_tagged(a: Any, values: Any, numpy_write: Any) -> None:
    """Write values into a as ``numpy_write(a, values)`` would: NumPy's own
    function, run on an array of tags, says which element of values lands
    where (repeats, cycling, modes and errors included)."""
    vals = _as_operand(values)
    tags = _np.full(shape(a), -1, _np.int64)
    numpy_write(tags, _np.arange(size(vals), dtype=_np.int64).reshape(shape(vals)))
    flat = tags.reshape(-1)
    at = _np.flatnonzero(flat >= 0)
    if not at.size:
        return
    src = flat[at]
    v = take_flat(vals, src) if isinstance(vals, Tracer) else vals.reshape(-1)[src]
    _store(a, scatter_set(a, at, _cast_into(v, a, "the values")), at)


@_numpy_on_plain
def copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    dst = _target(dst, "copyto")
    _check_writeable(dst)
    _write_all(dst, src, where, "the source")


@_numpy_on_plain
def put(a: Any, ind: Any, v: Any, mode: str = "raise") -> None:
    a = _target(a, "put")
    _check_writeable(a, "put: output array is read-only")
    _write_tagged(a, v, lambda t, vi: _np.put(t, ind, vi, mode))


@_numpy_on_plain
def place(arr: Any, mask: Any, vals: Any) -> None:
    arr = _target(arr, "place")
    _check_writeable(arr, "WRITEBACKIFCOPY base is read-only")
    mask = _concrete(mask)  # a traced mask: its pattern, guarded
    _write_tagged(arr, vals, lambda t, vi: _np.place(t, mask, vi))


@_numpy_on_plain
def putmask(a: Any, mask: Any, values: Any) -> None:
    a = _target(a, "putmask")
    _check_writeable(a, "putmask: output array is read-only")
    if not isinstance(mask, Tracer):
        _write_tagged(a, values, lambda t, vi: _np.putmask(t, mask, vi))
        return
    values = _as_operand(values)
    n = size(values)  # values repeat over a's flat positions, as in NumPy
    if not n:
        raise ValueError("putmask: values must not be empty")
    cyclic = _np.arange(size(a)) % n
    full = take_flat(values, cyclic) if isinstance(values, Tracer) else \
        _np.asarray(values).reshape(-1)[cyclic]
    _write_all(a, reshape(full, tuple(shape(a))), mask, "the values")


@_numpy_on_plain
def put_along_axis(arr: Any, indices: Any, values: Any, axis: Any) -> None:
    arr = _target(arr, "put_along_axis")
    _check_writeable(arr)
    if isinstance(indices, Tracer):
        raise TracingError("put_along_axis: the indices must be constants")
    _write_tagged(arr, values, lambda t, vi: _np.put_along_axis(t, indices, vi, axis))


@_numpy_on_plain
def fill_diagonal(a: Any, val: Any, wrap: bool = False) -> None:
    a = _target(a, "fill_diagonal")
    _check_writeable(a, "underlying array is read-only")
    _write_tagged(a, val, lambda t, vi: _np.fill_diagonal(t, vi, wrap))
