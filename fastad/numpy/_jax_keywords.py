"""``jax.numpy``'s keyword arguments that NumPy's functions lack, so that code
written for ``jax.numpy`` runs with ``fastad.numpy`` unchanged.

`extend` wraps the namespace's functions once, at import (`__init__`): each
wrapper takes JAX's extra keywords and gives them JAX's meaning on top of
the NumPy function, which it calls without them (NumPy's own parameters
pass through untouched, and ``inspect.signature`` shows NumPy's):

* ``precision`` (products): XLA's choice of algorithm; accepted, no effect.
  ``preferred_element_type``: the result cast to that dtype.
* ``descending`` (``sort``, ``argsort``): largest first; ``argsort`` keeps
  equal elements in their order, as JAX's stable descending sort does.
* ``size`` and ``fill_value`` (``nonzero``, ``flatnonzero``, ``argwhere``,
  ``where`` with one argument, ``unique``): results of a fixed length,
  truncated or padded with ``fill_value`` (JAX's defaults: 0 for indices,
  the smallest unique value for ``unique``).
* ``mode="fill"`` / ``"promise_in_bounds"`` and ``fill_value`` (``take``,
  ``take_along_axis``): out-of-bounds indices read ``fill_value`` (NaN by
  default), as ``x.at[i].get(mode="fill")`` does (`_index_update`).
* ``total_repeat_length`` (``repeat``): the result truncated to that length
  or padded by repeating its last element.
* ``length`` (``bincount``): the number of bins.

And one NumPy case: ``bincount`` of traced ``weights`` (the sums at the
bins, differentiable in the weights).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.tracer import Tracer
from ._base import _constant, result_dtype, shape
from ._creation import full
from ._elementwise import astype
from ._shape import concatenate, flip, ravel

_PRODUCTS = ("dot", "matmul", "einsum", "tensordot", "inner", "outer", "vdot", "vecdot",
             "matvec", "vecmat", "kron")


def _wrapping(fn: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        out = functools.wraps(fn)(wrapper)
        out.__wrapped__ = fn
        return out
    return make


def _product(fn: Callable[..., Any]) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(*args: Any, precision: Any = None, preferred_element_type: Any = None,
             **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        return out if preferred_element_type is None else astype(out, preferred_element_type)
    return call


def _sorting(fn: Callable[..., Any], indices: bool) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(a: Any, axis: Any = -1, *args: Any, descending: bool = False, **kwargs: Any) -> Any:
        if not descending:
            return fn(a, axis, *args, **kwargs)
        if axis is None:
            a, axis = ravel(a), 0
        if not indices:
            return flip(fn(a, axis, *args, **kwargs), axis)
        # stable among equal elements: sort the reversed array ascending,
        # reverse that order, and count positions from the other end
        n = shape(a)[axis]
        return n - 1 - flip(fn(flip(a, axis), axis, *args, **kwargs), axis)
    return call


def _fixed_size(values: Any, size: int, fill: Any, axis: int = 0) -> Any:
    """``values`` truncated or padded with ``fill`` to ``size`` along ``axis``."""
    have = shape(values)[axis]
    if have >= size:
        return _np.take(values, _np.arange(size), axis=axis) if have > size else values
    pad_shape = list(shape(values))
    pad_shape[axis] = size - have
    pad = full(pad_shape, fill, dtype=result_dtype(values))  # (fill may be traced)
    return concatenate([values, pad], axis=axis)


def _sized_indices(fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(*args: Any, size: Any = None, fill_value: Any = None, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if size is None:
            return out
        fill = 0 if fill_value is None else fill_value
        if kind == "tuple":  # nonzero, where: one index array per axis
            fills = fill if isinstance(fill, tuple) else (fill,) * len(out)
            return tuple(_fixed_size(o, size, f) for o, f in zip(out, fills))
        return _fixed_size(out, size, fill)
    return call


def _where(fn: Callable[..., Any]) -> Callable[..., Any]:
    sized = _sized_indices(fn, "tuple")

    @_wrapping(fn)
    def call(condition: Any, x: Any = None, y: Any = None, *, size: Any = None,
             fill_value: Any = None) -> Any:
        if x is None and y is None:
            return sized(condition, size=size, fill_value=fill_value)
        if size is not None:
            raise ValueError("where: size is for the one-argument form (the indices)")
        return fn(condition, x, y)
    return call


def _unique(fn: Callable[..., Any]) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(ar: Any, *args: Any, size: Any = None, fill_value: Any = None, **kwargs: Any) -> Any:
        out = fn(ar, *args, **kwargs)
        if size is None:
            return out
        first = out[0] if isinstance(out, tuple) else out
        fill = fill_value if fill_value is not None else first[0] if shape(first)[0] else 0
        first = _fixed_size(first, size, fill)
        return (first,) + tuple(out[1:]) if isinstance(out, tuple) else first
    return call


def _gathering(fn: Callable[..., Any], along: bool) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(a: Any, indices: Any, axis: Any = None if not along else -1, *args: Any,
             mode: Any = None, fill_value: Any = None, unique_indices: bool = False,
             indices_are_sorted: bool = False, **kwargs: Any) -> Any:
        if mode not in ("fill", "promise_in_bounds") and fill_value is None:
            if along:
                return fn(a, indices, axis, *args, **kwargs)
            return fn(a, indices, axis, *args, **({"mode": mode} if mode else {}), **kwargs)
        from ._index_update import IndexUpdate
        if axis is None:
            a, axis = ravel(a), 0
        axis = _axis_index(axis, len(shape(a)))
        if not along:
            key = (slice(None),) * axis + (indices,)
            return IndexUpdate(a, key).get(mode="fill", fill_value=fill_value)
        # along an axis: the index grids of the other axes, this one's from indices
        grids = _np.ix_(*[_np.arange(n) for n in shape(indices)])
        key = tuple(indices if k == axis else _np.broadcast_to(g, shape(indices))
                    for k, g in enumerate(grids))
        return IndexUpdate(a, key).get(mode="fill", fill_value=fill_value)
    return call


def _repeat(fn: Callable[..., Any]) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(a: Any, repeats: Any, axis: Any = None, *, total_repeat_length: Any = None) -> Any:
        out = fn(a, repeats, axis)
        if total_repeat_length is None:
            return out
        along = 0 if axis is None else _axis_index(axis, len(shape(out)))
        have = shape(out)[along]
        if have >= total_repeat_length:
            return _np.take(out, _np.arange(total_repeat_length), axis=along)
        last = _np.take(out, _np.full(total_repeat_length - have, have - 1), axis=along)
        return concatenate([out, last], axis=along)
    return call


def _bincount(fn: Callable[..., Any]) -> Callable[..., Any]:
    @_wrapping(fn)
    def call(x: Any, /, weights: Any = None, minlength: int = 0, *, length: Any = None) -> Any:
        minlength = minlength if length is None else max(minlength, length)
        if isinstance(weights, Tracer):  # traced weights: added up at x, differentiable
            from ._index_update import IndexUpdate
            n = max(minlength, int(_np.max(x)) + 1 if _np.size(x) else 0)
            dtype = _np.result_type(weights.dtype, _np.float64)  # NumPy's: double
            out = IndexUpdate(_constant(_np.zeros(n, dtype)), x).add(weights)
        else:
            out = fn(x, weights, minlength)
        return out if length is None else _fixed_size(out, length, 0)
    return call


def extend(namespace: dict[str, Any]) -> None:
    """Give the namespace's functions JAX's extra keywords (see the docstring)."""
    for name in _PRODUCTS:
        namespace[name] = _product(namespace[name])
    namespace["sort"] = _sorting(namespace["sort"], indices=False)
    namespace["argsort"] = _sorting(namespace["argsort"], indices=True)
    for name in ("nonzero",):
        namespace[name] = _sized_indices(namespace[name], "tuple")
    for name in ("flatnonzero", "argwhere"):
        namespace[name] = _sized_indices(namespace[name], "array")
    namespace["where"] = _where(namespace["where"])
    namespace["unique"] = _unique(namespace["unique"])
    namespace["take"] = _gathering(namespace["take"], along=False)
    namespace["take_along_axis"] = _gathering(namespace["take_along_axis"], along=True)
    namespace["repeat"] = _repeat(namespace["repeat"])
    namespace["bincount"] = _bincount(namespace["bincount"])

