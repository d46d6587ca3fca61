"""NumPy's keyword parameters on traced values: a ufunc's ``out``, ``where``,
``dtype``, ``casting``, ``signature``, ``order`` and ``subok``, and the
``out=`` of the other functions that have one.

The functions of `_elementwise` (and every other ufunc-like function, made
with `_elementwise.ufunc_like`) call the primitive directly when no keyword
is given, and `ufunc_call` otherwise: this is the one place that gives the
keywords their meaning.

* No traced argument (inputs, ``out``, ``where``): NumPy's ufunc with every
  keyword, so the result is NumPy's exactly.
* Types: NumPy resolves them, by calling the ufunc on zero-size arrays of the
  inputs' dtypes (and ``out``'s) with the keywords; it returns the loop's
  result dtype or raises NumPy's own error.  The traced inputs are cast to
  the loop's input dtypes, and the result to its output dtype.
* ``where`` without ``out``: NumPy leaves the unselected positions
  uninitialized; here they are zeros.
* ``out`` (an array, or a 1-tuple as NumPy allows): the result is written
  into it by item assignment (`_indexing._write_all`), only where ``where``
  holds, and ``out`` is returned.  ``out`` must be a traced array
  (``fastad.numpy.zeros``, a traced copy): a NumPy array cannot hold traced
  values (`_indexing._target`'s error).
* ``order`` and ``subok`` choose a memory layout and an array subclass:
  checked by NumPy, without effect on values.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as _np

from ..core.narrowing import standin
from ..core.tracer import Tracer
from ._base import _contains_tracer, result_dtype, shape
from ._dtypes import resolution_kind
from ._elementwise import astype, where as _select
from ._shape import moveaxis, reshape
from ._indexing import _target, _write_all
from ._views import _check_writeable

__all__: list[str] = []

#: a ufunc's keyword parameters besides ``out``
UFUNC_KEYWORDS = frozenset(("where", "casting", "order", "dtype", "subok", "signature"))
#: and a generalized ufunc's (``matmul``, ``vecdot``): where its core dimensions are
GUFUNC_KEYWORDS = frozenset(("axes", "axis", "keepdims"))


def _traced(*values: Any) -> bool:
    return any(isinstance(v, Tracer) or (isinstance(v, (list, tuple)) and _contains_tracer(v))
               for v in values)


@functools.lru_cache(maxsize=1024)
def _loop(ufunc: _np.ufunc, kinds: tuple, out_dtype: Any, keywords: tuple) -> tuple:
    """(input dtypes, result dtype) of the ufunc's loop for inputs of these
    dtypes, as NumPy resolves them with these keywords (or NumPy's error)."""
    options = dict(keywords)
    out = None if out_dtype is None else _np.empty((0,), out_dtype)
    result = ufunc(*map(standin, kinds), out=out, **options)
    signature = options.get("signature")
    if signature is None and options.get("dtype") is not None:
        signature = (None,) * ufunc.nin + (_np.dtype(options["dtype"]),) * ufunc.nout
    try:
        resolved = ufunc.resolve_dtypes(  # (which takes no Python bool: NumPy's is as weak)
            tuple(_np.dtype(bool) if k is bool else k for k in kinds) + (None,) * ufunc.nout,
            signature=signature,
            casting=options.get("casting") or "same_kind")  # (NumPy's default)
        inputs = resolved[:ufunc.nin]
    except (TypeError, ValueError):  # a signature form resolve_dtypes does not take
        inputs = (None,) * ufunc.nin
    return inputs, _np.dtype(result.dtype)


def _in_dtype(x: Any, dtype: Any) -> Any:
    """x as the loop reads it (Python scalars stay weak, as in NumPy)."""
    if dtype is None or type(x) in (bool, int, float, complex) or result_dtype(x) == dtype:
        return x
    return astype(x, dtype) if isinstance(x, Tracer) else _np.asarray(x).astype(dtype)


def ufunc_call(ufunc: _np.ufunc, core: Any, inputs: tuple, out: Any, keywords: dict) -> Any:
    """``ufunc(*inputs, out=out, **keywords)`` with ``core`` computing the
    ufunc on traced values (the module's docstring says what each keyword does)."""
    unknown = keywords.keys() - (UFUNC_KEYWORDS if ufunc.signature is None
                                 else UFUNC_KEYWORDS | GUFUNC_KEYWORDS)
    if unknown:
        raise TypeError(f"{ufunc.__name__}() got an unexpected keyword argument "
                        f"'{sorted(unknown)[0]}'")
    mask = keywords.get("where", True)
    if not _traced(out, mask, *inputs):
        return ufunc(*inputs, out=out, **keywords)
    if not GUFUNC_KEYWORDS.isdisjoint(keywords):
        keywords = dict(keywords)
        core = _on_core_axes(ufunc, core, inputs, {k: keywords.pop(k) for k in GUFUNC_KEYWORDS
                                                   if k in keywords})
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != ufunc.nout:
        raise ValueError(f"The 'out' tuple must have exactly {ufunc.nout} entries: one per "
                         "ufunc output")
    target = outs[0]
    name = ufunc.__name__
    if target is not None:
        target = _target(target, f"numpy.{name}(..., out=...)")
        _check_writeable(target, "output array is read-only")
    options = tuple(sorted((k, _hashable(v)) for k, v in keywords.items() if k != "where"))
    in_dtypes, dtype = _loop(ufunc, tuple(map(resolution_kind, inputs)),
                             None if target is None else target.dtype, options)
    result = core(*(_in_dtype(x, d) for x, d in zip(inputs, in_dtypes)))
    if result_dtype(result) != dtype:
        result = astype(result, dtype)
    if mask is not True and not isinstance(mask, Tracer):
        mask = _np.asarray(mask, dtype=bool)
    if target is None:
        if mask is True:
            return result
        # unselected positions: zeros (NumPy leaves them uninitialized)
        return _select(mask, result, _np.zeros((), dtype))
    _write_all(target, result, mask, f"ufunc '{name}' output")
    return target


def _on_core_axes(ufunc: _np.ufunc, core: Any, inputs: tuple, placement: dict) -> Any:
    """core with a generalized ufunc's ``axes``/``axis``/``keepdims``: the core
    dimensions moved last in each input, and the result's where NumPy puts them.
    NumPy checks the keywords (and gives the result's shape) on zeros of the
    inputs' shapes, which cost no memory."""
    zeros = [_np.broadcast_to(_np.zeros((), result_dtype(x)), shape(x)) for x in inputs]
    expected = _np.shape(ufunc(*zeros, **placement))
    axes = placement.get("axes")
    if axes is None and placement.get("axis") is not None:
        axes = [(placement["axis"],)] * ufunc.nin  # one shared core dimension
    if axes is None:
        axes = []
    axes = [(a,) if isinstance(a, (int, _np.integer)) else tuple(a) for a in axes]

    def placed(*values: Any) -> Any:
        moved = [moveaxis(v, a, tuple(range(-len(a), 0))) if a else v
                 for v, a in zip(values, axes)] + list(values[len(axes):])
        result = core(*moved)
        if len(axes) > ufunc.nin and axes[ufunc.nin]:
            where_out = axes[ufunc.nin]
            result = moveaxis(result, tuple(range(-len(where_out), 0)), where_out)
        return result if tuple(shape(result)) == expected else reshape(result, expected)
    return placed


def _hashable(value: Any) -> Any:
    """A keyword's value as a key of the loop cache (a dtype, a signature tuple)."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, _np.dtype) or value is None or isinstance(value, (str, bool, tuple)):
        return value
    try:
        return _np.dtype(value)
    except TypeError:
        return value


def write_out(out: Any, result: Any, name: str) -> Any:
    """``out`` of a function that is not a ufunc (a reduction, ``dot``, ``round``):
    the result written into the traced array ``out``, which is returned, as
    NumPy returns it.  A 1-tuple is taken as its element."""
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    target = _target(out, f"{name}(..., out=...)")
    _check_writeable(target, "output array is read-only")
    if tuple(shape(result)) != tuple(shape(target)):
        raise ValueError(f"output parameter for {name} has the wrong shape: "
                         f"{tuple(shape(target))}, expected {tuple(shape(result))}")
    _write_all(target, result, True, f"{name}'s result")
    return target
