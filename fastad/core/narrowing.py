"""The float precision NumPy computes in where traced data meets a float.

A compiled function holds integers taken as data (`int_data`) and Python
floats (`weak_float`) in float64, but NumPy computes ``np.exp`` of uint8 in
float16, and ``x32 * n`` for a Python int or float n in float32.  Where a
ufunc, an operator or ``where`` meets such data, `narrow_floats` casts it to
the precision NumPy would compute in, so that the compiled function gives
the eager one's dtype and rounding.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .tracer import Tracer, bind
from .weak_float import WeakFloatTracer, is_weak_traced

#: the traced data a float operand may take into a narrower float: weak
#: floats here, integers taken as data added by `int_data`.  Each has a
#: ``narrows`` property: whether this value may narrow.
NARROWING_TYPES: set[type] = {WeakFloatTracer}


def narrow_floats(name: str, inputs: Any) -> tuple[Any, ...] | None:
    """``inputs`` of NumPy's ufunc ``name`` with each integer taken as data
    and each weak float cast to the float dtype NumPy computes in when that
    is narrower than the float64 they are held in (``np.exp`` of uint8:
    float16, of int16: float32; uint8, a Python int or a Python float times
    a float32 array: float32); None when nothing changes (NumPy integers of
    32 bits or more, an integer result, float64).  The answer is kept per
    ufunc and operand kinds: a loop asks it at every step."""
    if not any(type(x) in NARROWING_TYPES and x.narrows for x in inputs):
        return None
    key = (name, tuple(map(operand_kind, inputs)))
    dtype = _NARROWED.get(key, _UNKNOWN)
    if dtype is _UNKNOWN:
        dtype = _NARROWED[key] = _narrowed_dtype(name, tuple(map(standin, key[1])))
    if dtype is None:
        return None
    # the cast itself (the front end's astype refuses float16 for floats,
    # which would round; integers of 16 bits or fewer are exact in it)
    from .registry import registry
    return tuple(bind(registry["astype"], x, dtype=dtype.str) if type(x) in NARROWING_TYPES
                 else x for x in inputs)


_PYTHON_NUMBERS = (int, float, complex)


def operand_kind(x: Any) -> Any:
    """What NumPy's type resolution sees of an operand: its dtype (an integer
    taken as data: NumPy's dtype of its integers), or a Python number's type,
    which NumPy 2 promotes weakly (float32 + 1.0 is float32; a Python bool is
    NumPy's bool either way)."""
    if is_weak_traced(x):
        return float if type(x) is WeakFloatTracer else int
    if type(x) is bool:
        return np.dtype(bool)
    if type(x) in _PYTHON_NUMBERS:
        return type(x)
    if isinstance(x, Tracer):
        return x.dtype
    return np.asarray(x).dtype


def standin(kind: Any) -> Any:
    """A value of an `operand_kind`, for NumPy's functions that take values
    (a ufunc, ``result_type``): a Python number's zero, or an empty array,
    which computes nothing and so warns of nothing."""
    return kind(0) if isinstance(kind, type) else np.empty((0,), kind)


def _narrowed_dtype(name: str, standins: tuple[Any, ...]) -> np.dtype | None:
    """The float dtype narrower than float64 NumPy's ufunc ``name`` computes
    in for operands like ``standins``, or None."""
    ufunc = getattr(np, name, None)
    if not isinstance(ufunc, np.ufunc) or ufunc.nout != 1 or ufunc.nin != len(standins):
        return None
    try:
        with np.errstate(all="ignore"):
            dtype = np.asarray(ufunc(*standins)).dtype
    except (TypeError, ValueError):
        return None
    if dtype.kind not in "fc" or dtype.itemsize >= (8 if dtype.kind == "f" else 16):
        return None
    return dtype


_NARROWED: dict[Any, Any] = {}
_UNKNOWN = object()
