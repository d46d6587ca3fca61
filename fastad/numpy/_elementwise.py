"""Elementwise functions: NumPy's ufuncs, and the composites written with them.

The functions of the primitives in the rows of `fastad.primitives.elementwise`
are made from the rows: each is public under its NumPy implementation's name
(``np.subtract`` for the row "sub", ``np.rint`` for "round"), so a new row
needs no edit here.  `power` and `sign` replace the functions of their rows
with composites (``x**2`` as a square, the complex sign as ``x / |x|``).

`where`, `clip`, `maximum`, `minimum`, `abs` are branch-free: they never
create guards, so prefer them to Python ``if`` on traced values inside
compiled functions.
"""
from __future__ import annotations

from typing import Any

import numpy as _np

from ..core.errors import unsupported_precision
from ..primitives import elementwise as _rows
from ..core.tracer import Tracer, bind
from ._base import _constant, _float_dtype, _fresh, _p, iscomplexobj, result_dtype, shape


def _named(fn: Any, prim: Any) -> Any:
    """``fn`` named as NumPy names the primitive's implementation, so
    ``repr``, ``help`` and pickling by reference show ``fastad.numpy.exp``."""
    impl = prim.impl
    fn.__name__ = fn.__qualname__ = getattr(impl, "__name__", prim.name)
    fn.__module__ = "fastad.numpy"
    fn.__doc__ = prim.doc or f"NumPy's ``{fn.__name__}``, traced: the primitive ``{prim.name}``."
    return fn


def _unary(name: str):
    prim = _p(name)

    def fn(x: Any) -> Any:
        return bind(prim, x)
    return _named(fn, prim)


def _binary(name: str):
    prim = _p(name)

    def fn(x: Any, y: Any) -> Any:
        return bind(prim, x, y)
    return _named(fn, prim)


def _from_rows() -> dict[str, Any]:
    """The function of each primitive in the elementwise tables, by its NumPy
    name (`Primitive.numpy_names`: its implementation's ``__name__``)."""
    functions = {}
    for rows, make in ((_rows.UNARY, _unary), (_rows.UNARY_ZERO_DERIVATIVE, _unary),
                       (_rows.BINARY, _binary), (_rows.BINARY_ZERO_DERIVATIVE, _binary)):
        for name in rows:
            functions.update(dict.fromkeys(_p(name).numpy_names, make(name)))
    return functions


#: NumPy's name -> function, for every row: exp, subtract (the row "sub"), rint
#: ("round"), less ("lt"), ...  They are names of this module too, which the
#: composites below use (square, rint, maximum, ...).
FROM_ROWS = _from_rows()
globals().update(FROM_ROWS)
# the names the composites below call, bound for readers and linters too
square, rint, arctan2, maximum, minimum, not_equal = (
    FROM_ROWS[n] for n in ("square", "rint", "arctan2", "maximum", "minimum", "not_equal"))
_sign_real = FROM_ROWS["sign"]  # the public `sign` below handles complex values too
absolute = abs = _unary("abs")  # abs, real, imag and conj are declared outside the tables
fabs = absolute
round_ = FROM_ROWS["rint"]
true_divide = FROM_ROWS["divide"]
fmax = FROM_ROWS["maximum"]
fmin = FROM_ROWS["minimum"]


def power(x: Any, y: Any) -> Any:
    if isinstance(y, (int, float)) and not isinstance(y, bool) and y == 2:
        return square(x)
    return bind(_p("pow"), x, y)


def round(x: Any, decimals: int = 0) -> Any:  # noqa: A001 - NumPy's name
    if decimals:
        scale = 10.0 ** decimals
        return rint(x * scale) / scale
    return rint(x)


around = round


def positive(x: Any) -> Any:
    return _fresh(x)


def sign(x: Any) -> Any:
    """sign(x); for complex x NumPy's x / |x| (0 at 0), which has a derivative."""
    if not iscomplexobj(x):
        return _sign_real(x)
    mag = absolute(x)
    return x / where(mag == 0.0, 1.0, mag)


def real(val: Any) -> Any:
    return bind(_p("real"), val) if iscomplexobj(val) else val


def imag(val: Any) -> Any:
    if iscomplexobj(val):
        return bind(_p("imag"), val)
    return _constant(_np.zeros(shape(val), _float_dtype(val)))


def conjugate(x: Any) -> Any:
    return bind(_p("conj"), x) if iscomplexobj(x) else _fresh(x)  # a ufunc: never x itself


conj = conjugate


def angle(z: Any, deg: bool = False) -> Any:
    """The argument of z, as arctan2(imag(z), real(z))."""
    out = arctan2(imag(z), real(z)) if iscomplexobj(z) else arctan2(
        _constant(_np.zeros(shape(z), _float_dtype(z))), z)
    return out * (180.0 / _np.pi) if deg else out


def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:  # the indices where condition holds: nonzero
        if not isinstance(condition, Tracer):
            return _np.where(condition)
        from ._reductions import _concrete  # its pattern, guarded
        return _np.nonzero(_concrete(condition))
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    return bind(_p("where"), condition, x, y)


def clip(a: Any, a_min: Any = None, a_max: Any = None) -> Any:
    """Clip to [a_min, a_max]; at exactly a bound the cotangent is split evenly."""
    if a_min is not None:
        a = maximum(a, a_min)
    if a_max is not None:
        a = minimum(a, a_max)
    return a


def astype(x: Any, dtype: Any) -> Any:
    dtype = _np.dtype(dtype)
    if dtype.kind == "f" and dtype not in (_np.float64, _np.float32):
        raise unsupported_precision(f"astype({dtype})", dtype)
    if result_dtype(x) == dtype:
        return _fresh(x)
    return bind(_p("astype"), x, dtype=dtype.str)


def stop_gradient(x: Any) -> Any:
    """x, with no derivative flowing through it."""
    return bind(_p("stop_gradient"), x)


def isfinite(x: Any) -> Any:
    return abs(x) < _np.inf


def isnan(x: Any) -> Any:
    return not_equal(x, x)


def _abs2(x: Any) -> Any:
    """|x|**2, real: x*x, or re**2 + im**2 for complex x (as NumPy's var and norm)."""
    return square(real(x)) + square(imag(x)) if iscomplexobj(x) else square(x)


__all__ = sorted(FROM_ROWS) + [
    "absolute", "abs", "fabs", "round_", "true_divide", "fmax", "fmin", "power", "round", "around",
    "positive", "sign", "real", "imag", "conjugate", "conj", "angle", "where", "clip", "astype",
    "stop_gradient", "isfinite", "isnan"]
