"""Elementwise functions: NumPy's ufuncs, and the composites written with them.

The functions of the primitives in the rows of `fastad.primitives.elementwise`
are made from the rows: each is public under its NumPy implementation's name
(``np.subtract`` for the row "sub", ``np.rint`` for "round"), so a new row
needs no edit here.  `power` and `sign` replace the functions of their rows
with composites (``x**2`` as a square, the complex sign as ``x / |x|``).

Every function of a NumPy ufunc takes the ufunc's parameters (``out``,
``where``, ``dtype``, ``casting``, ``signature``, ``order``, ``subok``; its
``inspect.signature`` is the ufunc's): a call without them is the primitive
and nothing else, one with them goes to `_keywords.ufunc_call`, the one place
that gives them NumPy's meaning.

`where`, `clip`, `maximum`, `minimum`, `abs` are branch-free: they never
create guards, so prefer them to Python ``if`` on traced values inside
compiled functions.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as _np

from ..core.errors import unsupported_precision
from ..primitives import elementwise as _rows
from ..core.int_data import INTEGER_DATA, integers_in, storage_dtype
from ..core.narrowing import NARROWING_TYPES, narrow_floats
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


def _ufunc_keywords(ufunc: _np.ufunc, core: Any, inputs: tuple, out: Any,
                    keywords: dict) -> Any:
    """A ufunc's call with NumPy's keyword parameters (`_keywords.ufunc_call`,
    which needs the indexing modules that come after this one)."""
    from ._keywords import ufunc_call
    return ufunc_call(ufunc, core, inputs, out, keywords)


def _as_ufunc(fn: Any, ufunc: _np.ufunc) -> Any:
    """fn with the ufunc's signature for ``inspect`` (its keyword parameters are
    taken as ``**keywords``: a call without them checks one dict)."""
    fn.__signature__ = inspect.signature(ufunc)
    return fn


def ufunc_like(ufunc: _np.ufunc, core: Any) -> Any:
    """``core`` (a function of the ufunc's inputs) taking the ufunc's keyword
    parameters, named as the ufunc."""
    # small integers taken as data compute in the float precision NumPy gives
    # them (`narrowing.narrow_floats`: exp of uint8 is float16)
    name = ufunc.__name__
    if ufunc.nin == 1:
        def fn(x: Any, /, out: Any = None, **keywords: Any) -> Any:
            if type(x) in NARROWING_TYPES:
                x, = narrow_floats(name, (x,)) or (x,)
            if out is None and not keywords:
                return core(x)
            return _ufunc_keywords(ufunc, core, (x,), out, keywords)
    else:
        def fn(x1: Any, x2: Any, /, out: Any = None, **keywords: Any) -> Any:
            if type(x1) in NARROWING_TYPES or type(x2) in NARROWING_TYPES:
                x1, x2 = narrow_floats(name, (x1, x2)) or (x1, x2)
            if out is None and not keywords:
                return core(x1, x2)
            return _ufunc_keywords(ufunc, core, (x1, x2), out, keywords)
    fn.__name__ = fn.__qualname__ = ufunc.__name__
    fn.__module__ = "fastad.numpy"
    fn.__doc__ = core.__doc__
    fn.core = core  # the function of traced values alone
    return _as_ufunc(fn, ufunc)


def two_results(ufunc: _np.ufunc, core: Any) -> Any:
    """core (of a ufunc with two results: divmod, modf, frexp) with the ufunc's
    signature: its keywords are NumPy's on plain values, refused on traced ones
    (the two results are returned, not written)."""
    def fn(*inputs: Any, out: Any = None, **keywords: Any) -> Any:
        if out is None and not keywords:
            return core(*inputs)
        from ._keywords import _traced
        if not _traced(out, keywords.get("where"), *inputs):
            return ufunc(*inputs, out=(None, None) if out is None else out, **keywords)
        from ..core.errors import TracingError
        raise TracingError(f"numpy.{ufunc.__name__}(..., {', '.join(sorted(keywords) or ['out'])}"
                           "=...) on traced values is not supported; use the two results")
    fn.__name__ = fn.__qualname__ = ufunc.__name__
    fn.__module__ = "fastad.numpy"
    fn.__doc__ = core.__doc__
    fn.core = core
    return _as_ufunc(fn, ufunc)


def _unary(name: str):
    prim = _p(name)
    ufunc = getattr(_np, prim.impl.__name__)

    def core(x: Any) -> Any:
        return bind(prim, x)
    core.prim = prim  # what it binds alone (`core.fast_paths.UFUNC_PRIMS`)

    def fn(x: Any, /, out: Any = None, **keywords: Any) -> Any:
        if type(x) in NARROWING_TYPES:  # (as in `ufunc_like`)
            x, = narrow_floats(ufunc.__name__, (x,)) or (x,)
        if out is None and not keywords:  # the primitive, as cheap as `core`
            return bind(prim, x)
        return _ufunc_keywords(ufunc, core, (x,), out, keywords)
    fn.core = core
    return _as_ufunc(_named(fn, prim), ufunc)


def _binary(name: str):
    prim = _p(name)
    ufunc = getattr(_np, prim.impl.__name__)

    def core(x: Any, y: Any) -> Any:
        return bind(prim, x, y)
    core.prim = prim  # (as `_unary`'s)

    def fn(x1: Any, x2: Any, /, out: Any = None, **keywords: Any) -> Any:
        if type(x1) in NARROWING_TYPES or type(x2) in NARROWING_TYPES:  # (as in `ufunc_like`)
            x1, x2 = narrow_floats(ufunc.__name__, (x1, x2)) or (x1, x2)
        if out is None and not keywords:  # the primitive, as cheap as `core`
            return bind(prim, x1, x2)
        return _ufunc_keywords(ufunc, core, (x1, x2), out, keywords)
    fn.core = core
    return _as_ufunc(_named(fn, prim), ufunc)


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
fabs = ufunc_like(_np.fabs, absolute.core)
round_ = FROM_ROWS["rint"]
true_divide = FROM_ROWS["divide"]


def _nan_ignoring(ufunc: _np.ufunc, core: Any) -> Any:
    def fn(x1: Any, x2: Any) -> Any:
        if not isinstance(x1, Tracer) and not isinstance(x2, Tracer):
            return ufunc(x1, x2)
        # NaN only where both are; the derivative goes to the operand taken
        # (maximum's or minimum's rule between two numbers, ties shared)
        return where(not_equal(x2, x2), x1, where(not_equal(x1, x1), x2, core(x1, x2)))
    fn.__doc__ = (f"NumPy's {ufunc.__name__}: {core.__name__} of two numbers, a NaN "
                  "ignored (NaN where both are).")
    return fn


fmax = ufunc_like(_np.fmax, _nan_ignoring(_np.fmax, maximum.core))
fmin = ufunc_like(_np.fmin, _nan_ignoring(_np.fmin, minimum.core))


def _power(x: Any, y: Any) -> Any:
    """x**y (``x**2`` recorded as a square)."""
    if type(y) in (int, float) and y == 2:  # (NumPy's float64 scalar is not weak)
        return square(x)
    return bind(_p("pow"), x, y)


power = ufunc_like(_np.power, _power)


def round(a: Any, decimals: int = 0, out: Any = None) -> Any:  # noqa: A001 - NumPy's name
    if not isinstance(a, Tracer) and not isinstance(out, Tracer):
        return _np.round(a, decimals, out)
    if decimals:
        scale = 10.0 ** decimals
        result = rint(a * scale) / scale
    else:
        result = rint(a)
    if out is None:
        return result
    from ._keywords import write_out
    return write_out(out, result, "round")


around = round


def _positive(x: Any) -> Any:
    """+x: a new value (a ufunc's result is never its argument)."""
    return _fresh(x)


positive = ufunc_like(_np.positive, _positive)


def _sign(x: Any) -> Any:
    """sign(x); for complex x NumPy's x / |x| (0 at 0), which has a derivative."""
    if not iscomplexobj(x):
        return _sign_real(x)
    mag = absolute(x)
    return x / where(mag == 0.0, 1.0, mag)


sign = ufunc_like(_np.sign, _sign)


def real(val: Any) -> Any:
    return bind(_p("real"), val) if iscomplexobj(val) else val


def imag(val: Any) -> Any:
    if iscomplexobj(val):
        return bind(_p("imag"), val)
    return _constant(_np.zeros(shape(val), _float_dtype(val)))


def _conjugate(x: Any) -> Any:
    """The complex conjugate (a new value for real x: a ufunc's result is never x)."""
    return bind(_p("conj"), x) if iscomplexobj(x) else _fresh(x)


conjugate = conj = ufunc_like(_np.conjugate, _conjugate)


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
    if type(x) in NARROWING_TYPES or type(y) in NARROWING_TYPES:
        x, y = narrow_floats("add", (x, y)) or (x, y)  # (where promotes as add does)
    return bind(_p("where"), condition, x, y)


_NO = _np._NoValue  # NumPy's "not given"


def _clip_between(a: Any, a_min: Any, a_max: Any) -> Any:
    return minimum(maximum(a, a_min), a_max)


def clip(a: Any, a_min: Any = _NO, a_max: Any = _NO, out: Any = None, *, min: Any = _NO,
         max: Any = _NO, **kwargs: Any) -> Any:  # noqa: A002 - NumPy's names
    """Clip to [a_min, a_max] (NumPy 2.1 names them min and max); at exactly a
    bound the cotangent is split evenly.  ``kwargs`` are the ufunc keywords."""
    if a_min is _NO and a_max is _NO:
        a_min = None if min is _NO else min
        a_max = None if max is _NO else max
    elif a_min is _NO or a_max is _NO:
        raise TypeError("clip() missing 1 required positional argument: "
                        f"'{'a_min' if a_min is _NO else 'a_max'}'")
    elif min is not _NO or max is not _NO:
        raise ValueError("Passing `min` or `max` keyword argument when `a_min` and `a_max` "
                         "are provided is forbidden.")
    if out is None and not kwargs:
        if a_min is not None:
            a = maximum(a, a_min)
        if a_max is not None:
            a = minimum(a, a_max)
        return a
    if a_min is None and a_max is None:
        raise ValueError("One of max or min must be given")
    # the ufunc NumPy calls, with its keyword rules (`_keywords.ufunc_call`)
    if a_min is None:
        ufunc, core, inputs = _np.minimum, minimum.core, (a, a_max)
    elif a_max is None:
        ufunc, core, inputs = _np.maximum, maximum.core, (a, a_min)
    else:
        ufunc, core, inputs = _np._core.umath.clip, _clip_between, (a, a_min, a_max)
    return _ufunc_keywords(ufunc, core, inputs, out, kwargs)


def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    """x in dtype (x itself when it has it and ``copy=False``)."""
    if device not in (None, "cpu"):
        raise ValueError(f"Device not understood. Only \"cpu\" is allowed, but received: {device}")
    if not isinstance(x, Tracer) and (copy is not True or device is not None):
        return _np.astype(x, dtype, copy=copy, device=device)
    dtype = _np.dtype(dtype)
    if dtype.kind == "f" and dtype not in (_np.float64, _np.float32):
        raise unsupported_precision(f"astype({dtype})", dtype)
    if isinstance(x, Tracer) and dtype.kind == "b" and result_dtype(x).kind != "b":
        return not_equal(x, 0)  # NumPy's cast to bool; a comparison, without a derivative
    if isinstance(x, Tracer) and dtype.kind in "iu":
        held = x.data_dtype if isinstance(x, INTEGER_DATA) else result_dtype(x)
        if isinstance(x, INTEGER_DATA) or held.kind in "fb":
            return _integers(x, held, dtype)
    elif isinstance(x, INTEGER_DATA) and dtype.kind == "f":
        x = _fresh(x)  # a float, no longer integers (held in float64 already)
    if result_dtype(x) == dtype:
        return _fresh(x) if copy else x
    return bind(_p("astype"), x, dtype=dtype.str)


def _integers(x: Any, held: Any, dtype: _np.dtype) -> Any:
    """Floats or booleans (or integers taken as data) cast to integers, as
    integers held in float64 (`core.int_data`): computed at every call, so
    that indexing with them compiles once.  Floats truncate toward zero, as
    NumPy's cast; a dtype narrower than 64 bits wraps around as NumPy's does."""
    from ._composites import trunc
    if isinstance(x, INTEGER_DATA):
        return integers_in(x, x.sources, dtype, storage_dtype(held))
    if held.kind == "b" or held != _np.float64:
        x = bind(_p("astype"), x, dtype=_np.dtype(_np.float64).str)
    if held.kind == "b":
        return integers_in(x, frozenset(), dtype, _np.dtype(_np.uint8))
    x = trunc(x)
    if dtype == _np.uint64:
        from ._reductions import all as all_of
        # a negative float wraps around to 2**64 - n, which float64 does not
        # hold: refused (under a guard when compiled) rather than computed wrong
        if not (all_of(x >= 0.0) and all_of(x < 2.0 ** 53)):
            raise OverflowError("astype(uint64) of a traced negative float (or one of 2**53 or "
                                "more) wraps around past 2**53, which fastad's integers "
                                "(held in float64) do not hold exactly; cast to int64 instead")
    return integers_in(x, frozenset(), dtype)


def stop_gradient(x: Any) -> Any:
    """x, with no derivative flowing through it."""
    return bind(_p("stop_gradient"), x)


def _isfinite(x: Any) -> Any:
    """|x| < inf: False for infinities and NaN."""
    return abs(x) < _np.inf


def _isnan(x: Any) -> Any:
    """x != x."""
    return not_equal(x, x)


isfinite = ufunc_like(_np.isfinite, _isfinite)
isnan = ufunc_like(_np.isnan, _isnan)


def _abs2(x: Any) -> Any:
    """|x|**2, real: x*x, or re**2 + im**2 for complex x (as NumPy's var and norm)."""
    return square(real(x)) + square(imag(x)) if iscomplexobj(x) else square(x)


__all__ = sorted(FROM_ROWS) + [
    "absolute", "abs", "fabs", "round_", "true_divide", "fmax", "fmin", "power", "round", "around",
    "positive", "sign", "real", "imag", "conjugate", "conj", "angle", "where", "clip", "astype",
    "stop_gradient", "isfinite", "isnan"]
