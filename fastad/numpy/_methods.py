"""What `Tracer`'s operators, array methods and properties apply
(``tracer.FRONT_END``): NumPy's functions, and the methods that link their
result as a view, write into the array, or take other arguments than the
function of the same name."""
from __future__ import annotations

from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.narrowing import NARROWING_TYPES, narrow_floats
from ..core.weak_float import weak_result
from ..core.tracer import Tracer
from ._base import _fresh, iscomplexobj, ndim, result_dtype, shape
from ._building import choose, compress
from ._composites import divmod, floor_divide, remainder
from ._creation import asarray, copy
from ._dispatch import _dispatch_function, _dispatch_ufunc
from ._elementwise import round as round_
from ._elementwise import (absolute, add, astype, clip, conjugate, divide, equal, greater,
                           greater_equal, imag, less, less_equal, logical_and, logical_not,
                           logical_or, multiply, negative, not_equal, positive, power, real,
                           subtract)
from ._index_update import IndexUpdates
from ._indexing import _target, _write_all, getitem, put, setitem
from ._linalg import dot, matmul
from ._ordering import argmax, argmin, argpartition, argsort, partition, searchsorted, sort, take
from ._plain import _wrap
from ._reductions import _concrete, all, any, cumprod, cumsum, max, mean, min, prod, std, sum, trace, var
from ._shape import (diagonal, matrix_transpose, ravel, repeat, reshape, squeeze, swapaxes,
                     transpose)
from ._views import _base_property, _check_writeable, _link, _store


def _reshape_method(self: Tracer, *shape_: Any, order: str = "C", copy: Any = None) -> Any:
    if len(shape_) == 1 and not isinstance(shape_[0], (int, _np.integer)):
        shape_ = tuple(shape_[0])
    return reshape(self, shape_, order=order)


def _transpose_method(self: Tracer, *axes: Any) -> Any:
    if len(axes) == 1 and not isinstance(axes[0], (int, _np.integer)):
        axes = tuple(axes[0]) if axes[0] is not None else ()
    return transpose(self, axes or None)


def _view_method(name: str, impl: Any) -> Any:
    """The array method ``name``, whose NumPy result may be a view of the array."""
    def method(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        return _link(self, impl(self, *args, **kwargs),
                     lambda s: getattr(s, name)(*args, **kwargs))
    method.__name__ = name
    return method


def _flatten_method(self: Tracer, order: str = "C") -> Any:
    out = ravel(self, order)
    return _fresh(out) if out is self else out  # always a copy, as NumPy's


def _view(self: Tracer, dtype: Any = None, type: Any = None) -> Any:  # noqa: A002
    if type is not None or (dtype is not None and _np.dtype(dtype) != result_dtype(self)):
        raise TracingError("view() with another dtype or type reinterprets memory, which "
                           "cannot be traced; use astype")
    return _link(self, self, _np.ndarray.view)


def _sort_method(self: Tracer, axis: int = -1, kind: Any = None, order: Any = None) -> None:
    target = _target(self, "sort()")
    _check_writeable(target, "sort array is read-only")
    _store(target, sort(target, axis))


def _partition_method(self: Tracer, kth: Any, axis: int = -1, kind: str = "introselect",
                      order: Any = None) -> None:
    target = _target(self, "partition()")
    _check_writeable(target, "partition array is read-only")
    _store(target, partition(target, kth, axis))


def _fill_method(self: Tracer, value: Any) -> None:
    target = _target(self, "fill()")
    _check_writeable(target)
    if isinstance(value, Tracer) and ndim(value):
        raise ValueError("fill: the value must be a scalar")
    _write_all(target, value)


def _in_place(op):
    """``a op= b`` on a traced array changes a's value where every name for a
    sees it, as NumPy's in-place operators do (a 0-d traced value is immutable,
    like a NumPy scalar)."""
    def method(self: Tracer, other: Any) -> Tracer:
        _check_writeable(self, "output array is read-only")
        new = op(self, other)
        if shape(new) != shape(self):
            raise ValueError(f"non-broadcastable output operand with shape {shape(self)} "
                             f"doesn't match the broadcast shape {shape(new)}")
        new = astype(new, result_dtype(self))  # NumPy casts back into a's dtype
        _store(self, new)
        return self
    return method


def _in_place_0d(op):
    """``v op= b`` on a 0-d traced value: a 0-d view of an array (``y[..., i, j]``,
    ``squeeze`` of a one-element slice) writes into it, as NumPy's 0-d views do;
    any other 0-d value is immutable like a NumPy scalar, so Python rebinds the
    name to ``v op b`` (NotImplemented)."""
    in_place = _in_place(op)

    def method(self: Tracer, other: Any) -> Any:
        link = getattr(self, "view_of", None)
        if link is None or link.parent is None:
            return NotImplemented
        return in_place(self, other)
    return method


def _real_property(self: Tracer) -> Any:
    return _link(self, real(self), _np.real, "real" if iscomplexobj(self) else None)


def _imag_property(self: Tracer) -> Any:
    if iscomplexobj(self):
        return _link(self, imag(self), _np.imag, "imag")
    return _link(self, imag(self), lambda s: s.imag)  # read-only zeros, as NumPy's


def _set_real(self: Tracer, value: Any) -> None:
    """``x.real = v`` writes into x (its real parts, if x is complex)."""
    target = _target(self, "setting .real")
    setitem(_real_property(target) if iscomplexobj(target) else target, Ellipsis, value)


def _set_imag(self: Tracer, value: Any) -> None:
    target = _target(self, "setting .imag")
    if not iscomplexobj(target):
        raise TypeError("array does not have imaginary part to set")
    setitem(_imag_property(target), Ellipsis, value)


def _conj_method(self: Tracer) -> Any:
    """x.conj(): a copy for complex x, but x itself (a view) for real x, as NumPy's."""
    if iscomplexobj(self):
        return conjugate(self)
    return _link(self, self, _np.ndarray.conj)


# the operators take no keywords: the functions of traced values themselves, without
# the ufunc functions' keyword handling around them (`_elementwise.ufunc_like`)
(add, subtract, multiply, divide, power, matmul, negative, positive, absolute, less, less_equal,
 greater, greater_equal, equal, not_equal, logical_and, logical_or, logical_not, remainder,
 floor_divide, divmod) = (f.core for f in (
    add, subtract, multiply, divide, power, matmul, negative, positive, absolute, less,
    less_equal, greater, greater_equal, equal, not_equal, logical_and, logical_or, logical_not,
    remainder, floor_divide, divmod))


def _narrowing(name: str, core: Any) -> Any:
    """The operator ``core`` of NumPy's ufunc ``name``, with integers taken as
    data in the float precision NumPy computes in (`narrowing.narrow_floats`,
    as the ufunc functions do: ``x32 * n`` of a Python int n is float32), and a
    weak float of weak operands (`weak_float`)."""
    def op(x1: Any, x2: Any) -> Any:
        if type(x1) in NARROWING_TYPES or type(x2) in NARROWING_TYPES:
            narrowed = narrow_floats(name, (x1, x2))
            if narrowed is None:
                return weak_result(core(x1, x2), (x1, x2))
            x1, x2 = narrowed
        return core(x1, x2)
    op.__name__ = op.__qualname__ = core.__name__
    return op


def _weak_unary(core: Any) -> Any:
    """The unary operator ``core``: -s and abs(s) of a weak float are weak."""
    def op(x: Any) -> Any:
        return weak_result(core(x), (x,)) if type(x) in NARROWING_TYPES else core(x)
    op.__name__ = op.__qualname__ = core.__name__
    return op


negative, positive, absolute = (_weak_unary(f) for f in (negative, positive, absolute))
_divmod = divmod


def divmod(x1: Any, x2: Any) -> Any:  # noqa: A001 - the operator's name
    """divmod(s, 2.0) of a weak float: two weak floats, as Python's."""
    out = _divmod(x1, x2)
    if type(x1) in NARROWING_TYPES or type(x2) in NARROWING_TYPES:
        return tuple(weak_result(v, (x1, x2)) for v in out)
    return out


(add, subtract, multiply, divide, power, remainder, floor_divide) = (
    _narrowing(name, f) for name, f in (
        ("add", add), ("subtract", subtract), ("multiply", multiply), ("divide", divide),
        ("power", power), ("remainder", remainder), ("floor_divide", floor_divide)))

#: what tracer.FRONT_END holds: the function each of Tracer's operators, methods and
#: properties applies, by the name the class body asks for
TRACER_FRONT_END = {
    "ufunc": _dispatch_ufunc, "function": _dispatch_function,
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "power": power,
    "matmul": matmul, "negative": negative, "positive": positive, "absolute": absolute,
    "less": less, "less_equal": less_equal, "greater": greater, "greater_equal": greater_equal,
    "equal": equal, "not_equal": not_equal, "logical_and": logical_and,
    "logical_or": logical_or, "logical_not": logical_not,
    "sum": sum, "mean": mean, "prod": prod, "max": max, "min": min, "var": var, "std": std,
    "cumsum": cumsum, "dot": dot, "clip": clip, "astype": astype, "copy": copy, "any": any,
    "all": all, "trace": trace, "put": put,
    "ravel_method": _view_method("ravel", ravel),
    "squeeze_method": _view_method("squeeze", squeeze),
    "swapaxes_method": _view_method("swapaxes", swapaxes),
    "diagonal_method": _view_method("diagonal", diagonal),
    "reshape_method": _view_method("reshape", _reshape_method),
    "transpose_method": _view_method("transpose", _transpose_method),
    "view_method": _view, "conj_method": _conj_method, "flatten_method": _flatten_method,
    "sort_method": _sort_method, "partition_method": _partition_method,
    "fill_method": _fill_method,
    "T": lambda self: _link(self, transpose(self), lambda s: s.T),
    "mT": lambda self: _link(self, matrix_transpose(self), lambda s: s.mT),
    "base": _base_property, "real_property": _real_property, "set_real": _set_real,
    "imag_property": _imag_property, "set_imag": _set_imag,
    "getitem": getitem, "setitem": setitem, "at": IndexUpdates, "concrete": _concrete,
    "asarray": asarray,
    "remainder": remainder, "floor_divide": floor_divide, "divmod": divmod,
    "cumprod": cumprod, "round": round_, "repeat": repeat, "take": take, "choose": choose,
    "compress_method": lambda self, condition, axis=None, out=None: compress(
        condition, self, axis),
    "argsort": argsort, "argpartition": argpartition,
    "argmax": argmax, "argmin": argmin,
    "nonzero": _wrap("nonzero", "nondiff"), "searchsorted": searchsorted,
}
for _name, _op in {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
                   "power": power, "matmul": matmul}.items():
    TRACER_FRONT_END[f"in_place_{_name}"] = _in_place(_op)
    if _name != "matmul":
        TRACER_FRONT_END[f"in_place_{_name}_0d"] = _in_place_0d(_op)
