"""What every part of the front end uses: the shape and dtype of a value,
traced or not, shared zero constants, new traced values, argument checks."""
from __future__ import annotations

import builtins
import functools
import operator
import math
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.registry import defprim, registry
from ..core.arrays import made_here
from ..core.tracer import Tracer, bind, current_builder, new_tracer, sequence_value

__all__ = ["shape", "ndim", "size", "result_dtype", "iscomplexobj", "isrealobj", "zeros_for",
           "eye_like", "shape_of"]


def shape(a: Any) -> tuple[int, ...]:
    if type(a) is _np.ndarray:  # a rule's plain value: asked several times per rule
        return a.shape
    if isinstance(a, Tracer):
        return a.shape
    return sequence_value(a).shape if isinstance(a, (list, tuple)) else _np.shape(a)


def ndim(a: Any) -> int:
    return len(shape(a))


def size(a: Any, axis: Any = None) -> int:
    if axis is None:
        return int(math.prod(shape(a)))
    if not isinstance(a, Tracer):
        return _np.size(a, axis)
    return _np.size(_np.broadcast_to(_np.empty((), bool), shape(a)), axis)  # NumPy's rules


def result_dtype(x: Any) -> _np.dtype:
    if isinstance(x, Tracer):
        return x.dtype
    if isinstance(x, (list, tuple)):  # an array_like, perhaps holding traced values
        return sequence_value(x).dtype
    return _np.result_type(x)


def _float_dtype(x: Any) -> _np.dtype:
    """x's dtype if it is inexact (float or complex), else float64."""
    dt = result_dtype(x)
    return dt if dt.kind in "fc" else _np.dtype(_np.float64)


def iscomplexobj(x: Any) -> bool:
    return result_dtype(x).kind == "c"


def isrealobj(x: Any) -> bool:
    return not iscomplexobj(x)


@functools.lru_cache(maxsize=256)
def _zeros_const(shp: tuple[int, ...], dtype: str) -> _np.ndarray:
    # one zero broadcast: a tape holds it without n elements of memory
    return made_here(_np.broadcast_to(_np.zeros((), dtype), shp))


def zeros_for(x: Any, like: Any = None, dtype: Any = None) -> Any:
    """Zeros of x's shape (dtype of ``like`` if given): a shared read-only constant
    for the rules, never a fresh allocation per call."""
    dt = _np.dtype(dtype) if dtype is not None else _float_dtype(like if like is not None else x)
    return _zeros_const(tuple(shape(x)), dt.str)


def eye_like(a: Any) -> _np.ndarray:
    return _np.eye(shape(a)[-1], dtype=_float_dtype(a))


def _p(name: str):
    return registry[name]


def _fresh(a: Any) -> Any:
    """A new traced value for a's slot.  Item assignment rebinds the traced
    value it is applied to, so a copy must not be the same object: assigning
    into ``b = a.copy()`` would change ``a`` too."""
    return a.builder.tracer(a.slot) if isinstance(a, Tracer) else a


def _constant(value: _np.ndarray) -> Any:
    builder = current_builder()
    if builder is None:
        return value
    return new_tracer(builder, builder.const(value), value)


def _contains_tracer(obj: Any) -> bool:
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (list, tuple)):
        return builtins.any(_contains_tracer(o) for o in obj)
    return False


def shape_of(a: Any) -> tuple[int, ...]:
    return shape(a)


def _axes(axis: Any, nd: int, *, lists: bool = True, zero_d: bool = True) -> tuple[int, ...]:
    """``axis`` (None, an integer or a sequence of them) as sorted axes of an
    array of ``nd`` dimensions, with NumPy's errors.  As a ufunc's reduce
    takes it (`sum`, `mean`), ``lists=False``: only an integer or a tuple;
    ``zero_d``: axis 0 or -1 of a 0-d array reduces nothing, where
    `mean`, `median` and the others NumPy writes in Python raise."""
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, (int, _np.integer)):
        if nd == 0 and axis in (0, -1) and zero_d:
            return ()  # as NumPy's reductions take it: a 0-d array has nothing to reduce
        axis = (axis,)
    elif not lists and not isinstance(axis, tuple):
        # NumPy's TypeError ("'list' object cannot be interpreted as an integer")
        axis = (operator.index(axis),)
    out = []
    for a in axis:
        a = int(a)
        if not -nd <= a < nd:
            raise _np.exceptions.AxisError(a, nd)  # (a ValueError and an IndexError)
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return tuple(sorted(out))


def _no_out(out: Any, name: str) -> None:
    if out is not None:
        raise TracingError(f"{name}(..., out=...) writes into an existing array, which cannot "
                           "be traced; use the returned value instead")


# -- plain results of traced values, guarded -----------------------------------
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and builtins.all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and builtins.all(_same(x, y) for x, y in zip(a, b))
    try:
        x, y = _np.asarray(a), _np.asarray(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        return bool(_np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    except (TypeError, ValueError):
        return a == b


class _Call:
    """A NumPy call with its traced arguments left out (hashed by identity:
    each recorded check is its own)."""

    def __init__(self, fn: Any, args: tuple, kwargs: dict, expected: Any) -> None:
        self.fn, self.args, self.kwargs, self.expected = fn, args, kwargs, expected

    def __call__(self, *values: Any) -> Any:
        it = iter(values)
        args, kwargs = _fill(self.args, it), _fill(self.kwargs, it)
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{getattr(self.fn, '__name__', 'call')} at {id(self):#x}>"


class _Slot:
    """Where a traced argument was."""


def _holes(obj: Any, found: list) -> Any:
    if isinstance(obj, Tracer):
        found.append(obj)
        return _Slot
    if isinstance(obj, (list, tuple)) and _contains_tracer(obj):
        return _rebuilt(obj, [_holes(o, found) for o in obj])
    if isinstance(obj, dict):
        return {k: _holes(v, found) for k, v in obj.items()}
    return obj


def _rebuilt(obj: Any, items: list) -> Any:
    """A list, tuple or namedtuple like obj holding items."""
    if hasattr(obj, "_fields"):
        return type(obj)(*items)
    return type(obj)(items)


def _fill(obj: Any, it: Any) -> Any:
    if obj is _Slot:
        return next(it)
    if isinstance(obj, (list, tuple)):
        return _rebuilt(obj, [_fill(o, it) for o in obj])
    if isinstance(obj, dict):
        return {k: _fill(v, it) for k, v in obj.items()}
    return obj


def _check(*values: Any, call: _Call) -> Any:
    with _np.errstate(all="ignore"):
        return _np.bool_(_same(call(*values), call.expected))


#: the check a guard on a plain result reads: the function recomputed from the
#: traced arguments' values, compared with the result recorded (a NumPy call:
#: compiled functions run it between compiled segments)
_CHECK = defprim("fastad.numpy.same_result", _check, None, differentiable=False,
                 doc="whether a NumPy function of traced values still gives its recorded result")
_CHECK.builtin = False


def _batch_same_result(prim: Any, args: list, shapes: list, params: dict, size: int) -> Any:
    """vmap: the check per example (a guard then requires every example to give
    the recorded result, as Python control flow under vmap does)."""
    from ._shape import stack
    return stack([bind(prim, *(v[i] if batched else v for v, batched in args), **params)
                  for i in range(size)])


_CHECK.batch_rule = _batch_same_result
