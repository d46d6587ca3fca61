"""Reductions (sums, products, extrema, moments, their NaN-ignoring forms),
cumulative sums and products, and `unbroadcast`, the sum the derivative
rules of broadcasting primitives use.

The functions of the reduction primitives (sum, prod, max, min and NumPy's
other names for them) are made from the rows of
`fastad.primitives.structural.REDUCTIONS`, so a new row needs no edit here
but its name in ``__all__``; the rest are composites of them."""
from __future__ import annotations

import math
from builtins import any as any_
from typing import Any

import numpy as _np

from ..core.tracer import bind
from ..primitives import structural as _rows
from ._base import _CHECK, _Call, _Slot, _axes, _float_dtype, _no_out, _p, ndim, shape
from ._elementwise import _abs2, astype, equal, exp, isfinite, log, sqrt, stop_gradient, where
from ._elementwise import where as _select  # for reductions, whose ``where=`` hides the name
from ._shape import diagonal, ravel, reshape, stack

__all__ = ["sum", "prod", "max", "min", "amax", "amin", "mean", "var", "std", "logsumexp",
           "cumsum_", "cumsum", "cumprod", "nansum", "nanprod", "nanmean", "nanmax", "nanmin",
           "any", "all", "trace", "unbroadcast"]


def _has_tracer(a: Any) -> bool:
    from ..core.tracer import Tracer
    return any_(isinstance(x, Tracer) or (isinstance(x, (list, tuple)) and _has_tracer(x))
                for x in a)


def _reduce(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    return bind(_p(name), x, axes=_axes(axis, ndim(x)), keepdims=bool(keepdims))


def _cast(a: Any, dtype: Any) -> Any:
    """A reduction's ``dtype=``: NumPy converts the input, then accumulates."""
    return a if dtype is None else astype(a, dtype)


def _masked(a: Any, mask: Any, neutral: float) -> Any:
    """A reduction's ``where=``: elements left out count as the neutral element."""
    return a if mask is True else _select(mask, a, neutral)


def _with_identity(name: str, neutral: float, combine: Any) -> Any:
    """The public function of a reduction row with an identity (sum, prod):
    NumPy's signature, ``where=`` masking with the identity and ``initial=``
    combined with the result; a list of traced values is stacked first."""
    def reduction(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
                  keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
        _no_out(out, name)
        if isinstance(a, (list, tuple)):
            a = stack(a) if _has_tracer(a) else _np.asarray(a)
        total = _reduce(name, _masked(_cast(a, dtype), where, neutral), axis, keepdims)
        return total if initial is None else combine(total, initial)
    return reduction


def _without_identity(name: str) -> Any:
    """The public function of a reduction row without an identity (max, min)."""
    def reduction(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, name)
        return _reduce(name, a, axis, keepdims)
    return reduction


def _from_rows() -> dict[str, Any]:
    """The function of each row of `fastad.primitives.structural.REDUCTIONS`,
    under each of its public names (``max`` and ``amax``)."""
    functions = {}
    for name, (_, _names, identity, *_rules) in _rows.REDUCTIONS.items():
        public = _p(name).numpy_names
        fn = _without_identity(name) if identity is None else _with_identity(name, *identity)
        fn.__name__ = fn.__qualname__ = public[0]
        fn.__module__ = __name__
        fn.__doc__ = f"NumPy's ``{public[0]}``, traced: the primitive ``{name}``."
        functions.update(dict.fromkeys(public, fn))
    return functions


#: public name -> function, for every reduction row: sum, prod, max, amax, min, amin
FROM_ROWS = _from_rows()
# bound by name for readers, linters and the composites below
sum, prod, max, min = (FROM_ROWS[n] for n in ("sum", "prod", "max", "min"))  # noqa: A001
amax, amin = FROM_ROWS["amax"], FROM_ROWS["amin"]


def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False) -> Any:
    _no_out(out, "mean")
    a = _cast(a, dtype)
    axes = _axes(axis, ndim(a))
    count = math.prod(shape(a)[i] for i in axes)
    return sum(a, axis=axes, keepdims=keepdims) * (1.0 / count if count else _np.nan)


def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Any:
    _no_out(out, "var")
    a = _cast(a, dtype)
    axes = _axes(axis, ndim(a))
    count = math.prod(shape(a)[i] for i in axes)
    centered = a - mean(a, axis=axes, keepdims=True)
    denom = count - ddof
    return sum(_abs2(centered), axis=axes, keepdims=keepdims) * (
        1.0 / denom if denom > 0 else _np.nan)


def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Any:
    return sqrt(var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims))


def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """log(sum(exp(a))), computed stably; the shift by max carries no gradient."""
    axes = _axes(axis, ndim(a))
    m = stop_gradient(max(a, axis=axes, keepdims=True))
    m = where(isfinite(m), m, 0.0)
    s = log(sum(exp(a - m), axis=axes, keepdims=True)) + m
    return s if keepdims else reshape(s, tuple(d for i, d in enumerate(shape(a)) if i not in axes))


def cumsum_(x: Any, axis: int, reverse: bool = False) -> Any:
    return bind(_p("cumsum"), x, axis=int(axis), reverse=bool(reverse))


def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    _no_out(out, "cumsum")
    a = _cast(a, dtype)
    if axis is None:
        return cumsum_(ravel(a), 0)
    return cumsum_(a, _axes(axis, ndim(a))[0])


def _axis_of(a: Any, axis: Any) -> tuple[Any, int]:
    """(a, axis) with axis=None meaning the flattened array, as NumPy does."""
    if axis is None:
        return ravel(a), 0
    return a, _axes(axis, ndim(a))[0]


def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Cumulative product; its derivative divides by a (NaN at an exact 0, as prod's)."""
    _no_out(out, "cumprod")
    a, axis = _axis_of(_cast(a, dtype), axis)
    return bind(_p("cumprod"), a, axis=axis)


def _not_nan(a: Any) -> Any:
    return equal(a, a)


def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
           keepdims: bool = False) -> Any:
    return sum(where(_not_nan(a), a, 0.0), axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def nanprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False) -> Any:
    return prod(where(_not_nan(a), a, 1.0), axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def nanmean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False) -> Any:
    count = sum(astype(_not_nan(a), _float_dtype(a)), axis=axis, keepdims=keepdims)
    return nansum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims) / count


def nanmax(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return max(where(_not_nan(a), a, -_np.inf), axis=axis, out=out, keepdims=keepdims)


def nanmin(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return min(where(_not_nan(a), a, _np.inf), axis=axis, out=out, keepdims=keepdims)


def any(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _reduce("max", astype(a != 0, _np.float64), axis, keepdims) > 0.0


def all(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _reduce("min", astype(a != 0, _np.float64), axis, keepdims) > 0.0


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return sum(diagonal(a, offset, axis1, axis2), axis=-1)


def unbroadcast(g: Any, target: tuple[int, ...]) -> Any:
    """Sum g over the axes that broadcasting added or stretched to reach target."""
    gshape = shape(g)
    if tuple(gshape) == tuple(target):
        return g
    lead = len(gshape) - len(target)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(target) if d == 1 and gshape[lead + i] != 1)
    if type(g) is _np.ndarray:  # a rule's plain value: what `bind` would compute
        return (g.sum(axis=axes, keepdims=True) if axes else g).reshape(target)
    if axes:
        g = sum(g, axis=axes, keepdims=True)
    return reshape(g, target)


def _concrete(t: Any) -> Any:
    """t's value as a plain array, for a use that needs it as data (a boolean
    mask's pattern, an index, a shape): records a guard that t still equals it,
    so a compiled function retraces when it changes (NaN counts as equal)."""
    from ..core.int_data import DATA_TRACERS
    from ..core.tracer import Tracer
    if not isinstance(t, Tracer):
        return t
    if isinstance(t, DATA_TRACERS):
        t._needed()  # an argument's values: keyed by value (`IntValueNeeded`)
    value = _np.asarray(t.value)
    if value.dtype.kind not in "fcb":  # integers (argsort's): compared in NumPy
        bool(bind(_CHECK, t, call=_Call(_identity, (_Slot,), {}, value)))
        return value
    same = equal(t, value)
    if value.dtype.kind in "fc":
        same = same | ((t != t) & _np.isnan(value))
    bool(all(same))  # the guard
    return value


def _identity(x: Any) -> Any:
    return x
