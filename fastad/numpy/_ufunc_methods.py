"""The methods of NumPy's binary ufuncs on traced values: ``np.add.reduce``,
``np.maximum.accumulate``, ``np.add.reduceat``, ``np.multiply.outer``,
``np.add.at``.

NumPy calls them through ``__array_ufunc__`` with the method's name
(`_dispatch._dispatch_ufunc`); each is written with the ufunc's own traced
function, so any binary ufunc fastad computes has all four, and their
derivatives come from the ufunc's: ``add``/``multiply``/``maximum``/
``minimum`` reduce and accumulate through fastad's sums, products, extremes
and cumulative sums, and the others (``logaddexp.reduce``,
``maximum.accumulate``, ``subtract.accumulate``) as a chain along the axis,
one application per element, as NumPy defines them.  `attach` gives
fastad.numpy's ufunc functions the same methods (``fnp.add.reduce``), NumPy's
bound methods, which dispatch here on traced values.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.errors import TracingError
from ..core.tracer import Tracer
from ._base import _constant, ndim, result_dtype, shape
from ._elementwise import astype, negative
from ._gathers import is_index_data, scatter_add_rows
from ._integer_results import integer_results
from ._indexing import _flat_index, _target, _check_writeable, _write_all
from ._reductions import cumprod, cumsum, max, min, prod, sum
from ._shape import broadcast_to, moveaxis, ravel, reshape, scatter_add, scatter_set, stack

_REDUCERS = {"add": integer_results("sum", sum), "multiply": integer_results("prod", prod),
             "maximum": integer_results("max", max), "minimum": integer_results("min", min)}
_ACCUMULATORS = {"add": integer_results("cumsum", cumsum),
                 "multiply": integer_results("cumprod", cumprod)}
METHODS = ("reduce", "accumulate", "reduceat", "outer", "at")


def _refuse(ufunc: _np.ufunc, method: str, why: str) -> TracingError:
    return TracingError(f"numpy.{ufunc.__name__}.{method} on traced values: {why}")


def _chain(fn: Callable, a: Any, keep_all: bool, start: Any = _np._NoValue) -> Any:
    """fn applied along axis 0 of a, left to right, from ``start`` if given:
    the last value (reduce) or every partial one stacked (accumulate)."""
    n = shape(a)[0]
    first = a[0] if start is _np._NoValue else fn(start, a[0])
    acc, parts = first, [first]
    for i in range(1, n):
        acc = fn(acc, a[i])
        if keep_all:
            parts.append(acc)
    return stack(parts) if keep_all else acc


def reduce(fn: Callable, ufunc: _np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    (a,) = inputs
    kwargs = dict(kwargs)
    axis = kwargs.pop("axis", 0)
    keepdims = kwargs.pop("keepdims", False)
    dtype = kwargs.pop("dtype", None)
    initial = kwargs.pop("initial", _np._NoValue)
    if kwargs.pop("where", True) is not True or kwargs:
        raise _refuse(ufunc, "reduce", f"arguments {sorted(kwargs) or ['where']} are not "
                      "supported; reduce with fastad.numpy.where first")
    name = ufunc.__name__
    if initial is None:
        initial = _np._NoValue
    numpys = _numpys_result(ufunc, a, axis, initial)
    if ndim(a) == 0:
        axes: tuple[int, ...] = ()  # (NumPy's reduce of a 0-d array is the array)
    else:
        axes = tuple(sorted(_np.lib.array_utils.normalize_axis_tuple(
            tuple(range(ndim(a))) if axis is None else axis, ndim(a)), reverse=True))
    if axes and 0 in [shape(a)[x] for x in axes]:  # nothing to reduce: the initial value
        fill = initial if initial is not _np._NoValue else ufunc.identity  # (NumPy checked)
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape(a))
                     if keepdims or i not in axes)
        out = broadcast_to(astype(fill, numpys), kept) if isinstance(fill, Tracer) else \
            _np.full(kept, fill, numpys)
    elif name in _REDUCERS:
        out = _REDUCERS[name](a, axis=axes, keepdims=keepdims)
        if initial is not _np._NoValue:  # (commutative: the initial value last)
            out = fn(out, initial)
    else:
        out = a
        # the initial value starts the chain along one axis; several axes
        # only where NumPy finds the ufunc reorderable, which may take it last
        start = initial if len(axes) == 1 else _np._NoValue
        for x in axes:  # highest first, so the others keep their numbers
            out = _chain(fn, moveaxis(out, x, 0), keep_all=False, start=start)
            if keepdims:
                out = reshape(out, shape(out)[:x] + (1,) + shape(out)[x:])
        if len(axes) != 1 and initial is not _np._NoValue:
            out = fn(initial, out)
        elif not axes and ufunc.identity is not None:  # NumPy's: hypot.reduce(x, axis=()) is |x|
            out = fn(ufunc.identity, out)
    return astype(out, dtype) if dtype is not None else out


def _numpys_result(ufunc: _np.ufunc, a: Any, axis: Any, initial: Any) -> _np.dtype:
    """The dtype of NumPy's reduce of ``a`` along ``axis`` (``add`` of bools:
    int64), or NumPy's exception if it raises one (an axis out of range or
    named twice, several axes of a ufunc that is not reorderable, an empty
    axis and no identity), from its own reduce of a stand-in of a's
    dimensions with sizes 0 or 1."""
    dtype = a.dtype if isinstance(a, Tracer) else _np.asarray(a).dtype
    standin = _np.ones(tuple(1 if d else 0 for d in shape(a)), dtype)
    with _np.errstate(all="ignore"):
        return _np.asarray(ufunc.reduce(standin, axis=axis, **(
            {} if initial is _np._NoValue else {"initial": _np.ones((), dtype)[()]}))).dtype


def accumulate(fn: Callable, ufunc: _np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    (a,) = inputs
    kwargs = dict(kwargs)
    axis = kwargs.pop("axis", 0)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise _refuse(ufunc, "accumulate", f"arguments {sorted(kwargs)} are not supported")
    name = ufunc.__name__
    if name in _ACCUMULATORS:
        out = _ACCUMULATORS[name](a, axis=axis)
    else:
        axis = _axis_index(axis, ndim(a))
        out = moveaxis(_chain(fn, moveaxis(a, axis, 0), keep_all=True), 0, axis)
    return astype(out, dtype) if dtype is not None else out


def reduceat(fn: Callable, ufunc: _np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    """``ufunc.reduceat(a, indices, axis=0)``: the reduction of each slice
    a[indices[i]:indices[i + 1]] along the axis (the last one to its end),
    and a[indices[i]] itself where indices[i + 1] <= indices[i], as NumPy's."""
    a, indices = inputs
    kwargs = dict(kwargs)
    axis = kwargs.pop("axis", 0)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise _refuse(ufunc, "reduceat", f"arguments {sorted(kwargs)} are not supported")
    if isinstance(indices, Tracer):
        raise _refuse(ufunc, "reduceat", "traced indices are not supported; pass plain integers")
    indices = _np.asarray(indices)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise TypeError("reduceat: indices must be a 1-d array of integers")
    axis = _axis_index(axis, ndim(a))
    moved, n = moveaxis(a, axis, 0), shape(a)[axis]
    pieces = []
    for k, start in enumerate(indices.tolist()):
        stop = indices[k + 1] if k + 1 < len(indices) else n
        if not 0 <= start < n:
            raise IndexError(f"index {start} out-of-bounds in {ufunc.__name__}.reduceat [0, {n})")
        pieces.append(reduce(fn, ufunc, (moved[start:stop],), {}) if start < stop
                      else moved[start])
    out = moveaxis(stack(pieces), 0, axis)
    return astype(out, dtype) if dtype is not None else out


def outer(fn: Callable, ufunc: _np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    a, b = inputs
    if kwargs:
        raise _refuse(ufunc, "outer", f"arguments {sorted(kwargs)} are not supported")
    return fn(reshape(a, tuple(shape(a)) + (1,) * ndim(b)), b)


#: ufunc.at by traced integer rows, a combination of each row's updates first,
#: which the ufunc then applies to a: (the reduction combining a row's updates,
#: its identity; None: the dtype's far end)
_COMBINED = {"multiply": ("multiply", 1), "divide": ("multiply", 1),
             "true_divide": ("multiply", 1), "maximum": ("maximum", None),
             "minimum": ("minimum", None), "fmax": ("maximum", None), "fmin": ("minimum", None)}
#: the largest one-hot table (updates x rows x row size) the combination builds
_COMBINED_LIMIT = 1 << 22


def at(fn: Callable, ufunc: _np.ufunc, inputs: tuple, kwargs: dict) -> None:
    """``ufunc.at(a, indices, b)``: a[indices] = ufunc(a[indices], b), unbuffered
    (a repeated index applies once per occurrence), into the traced array a."""
    if kwargs or len(inputs) != 3:
        raise _refuse(ufunc, "at", "takes (a, indices, b)")
    a, indices, b = inputs
    if type(indices) is tuple and len(indices) == 1:
        indices = indices[0]  # a[(k,)] is a[k]
    target = _target(a, f"numpy.{ufunc.__name__}.at")
    _check_writeable(target, "output array is read-only")
    if ufunc.__name__ in ("add", "subtract") and is_index_data(indices) and ndim(target):
        # rows named by traced integers (argsort's, an argument's): one scatter
        # recomputed at every call, no guard on the indices
        value = b if ufunc.__name__ == "add" else negative(b)
        rows = tuple(shape(indices)) + tuple(shape(target))[1:]
        value = broadcast_to(value if isinstance(value, Tracer) else _constant(
            _np.asarray(value, dtype=result_dtype(target))), rows)
        _write_all(target, scatter_add_rows(target, indices, value))
        return None
    if ufunc.__name__ in _COMBINED and is_index_data(indices) and ndim(target) and \
            _np.prod(shape(indices)) * _np.prod(shape(target)) <= _COMBINED_LIMIT:
        _write_all(target, fn(target, _combined_rows(ufunc.__name__, target, indices, b)))
        return None
    idx = _flat_index(tuple(shape(target)), indices)
    if ufunc.__name__ in ("add", "subtract"):
        value = b if ufunc.__name__ == "add" else -b if isinstance(b, Tracer) else -_np.asarray(b)
        _write_all(target, scatter_add(target, idx, value))
        return None
    flat = ravel(target)  # one application per occurrence, in order
    values = ravel(broadcast_to(b if isinstance(b, Tracer) else _constant(_np.asarray(b)),
                                idx.shape))
    for k, i in enumerate(idx.reshape(-1)):
        flat = scatter_set(flat, [int(i)], fn(flat[int(i)], values[k]))
    _write_all(target, reshape(flat, tuple(shape(target))))
    return None


def _combined_rows(name: str, target: Any, indices: Any, b: Any) -> Any:
    """Each row of ``target``'s updates by traced integer ``indices`` combined
    (their product, max or min; the identity where a row has none), from a
    one-hot table of the indices against the rows: no value of the indices
    is read while tracing, so new indices reuse the trace."""
    from ._elementwise import equal, where
    combine, identity = _COMBINED[name]
    dtype = result_dtype(target)
    if identity is None:  # the extremes' identities: the dtype's far ends
        low = combine == "maximum"
        identity = (-_np.inf if low else _np.inf) if dtype.kind in "fc" else (
            _np.iinfo(dtype).min if low else _np.iinfo(dtype).max)
    rows = tuple(shape(target))
    m = int(_np.prod(shape(indices)))
    updates = reshape(broadcast_to(b if isinstance(b, Tracer) else _constant(
        _np.asarray(b, dtype=dtype)), tuple(shape(indices)) + rows[1:]), (m,) + rows[1:])
    positions = _constant(_np.arange(rows[0], dtype=_np.float64))
    # the rows named, negative ones from the end; read from the row numbers,
    # so that an index out of bounds raises NumPy's IndexError at the call
    named = positions[reshape(indices, (m,))]
    hits = equal(reshape(named, (m, 1)), reshape(positions, (1, rows[0])))
    hits = reshape(hits, (m, rows[0]) + (1,) * (len(rows) - 1))
    table = where(hits, reshape(updates, (m, 1) + rows[1:]), _constant(
        _np.asarray(identity, dtype=dtype)))
    return _REDUCERS[combine](table, axis=0)


DISPATCH = {"reduce": reduce, "accumulate": accumulate, "reduceat": reduceat, "outer": outer,
            "at": at}


def attach(namespace: dict[str, Any]) -> None:
    """Give each function of ``namespace`` named as a binary NumPy ufunc that
    ufunc's methods, and ``nin``/``nout``/``identity``, as NumPy's ufuncs have:
    ``fastad.numpy.add.reduce`` is ``numpy.add.reduce``, which comes back to
    `DISPATCH` on traced values."""
    for name, fn in list(namespace.items()):
        ufunc = getattr(_np, name, None)
        if (not isinstance(ufunc, _np.ufunc) or not callable(fn) or isinstance(fn, _np.ufunc)
                or getattr(fn, "__name__", None) not in (name, ufunc.__name__)):
            continue  # an alias (fmax is maximum's function): the primary name's methods
        for attr in ("reduce", "accumulate", "outer", "at", "reduceat", "nin", "nout",
                     "identity", "ntypes", "types", "signature"):
            try:
                setattr(fn, attr, getattr(ufunc, attr))
            except AttributeError:
                continue
    return None


__all__: list[str] = []
