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
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.tracer import bind
from ..core.traced import ArrayTracer, Tracer
from ..primitives import structural as _rows
from ._base import (_CHECK, _Call, _Slot, _axes, _constant, _float_dtype, _no_out, _p,
                    ndim, result_dtype, shape)
from ._elementwise import (_abs2, astype, equal, exp, isfinite, log, maximum, minimum, sqrt,
                           stop_gradient, where)
from ._elementwise import where as _select  # for reductions, whose ``where=`` hides the name
from ._shape import broadcast_to, diagonal, ravel, reshape, stack


__all__ = ["sum", "prod", "max", "min", "amax", "amin", "mean", "var", "std", "logsumexp",
           "cumsum_", "cumsum", "cumprod", "nansum", "nanprod", "nanmean", "nanmax", "nanmin",
           "any", "all", "trace", "unbroadcast"]


_FLOAT_TRACERS = frozenset({Tracer, ArrayTracer})  # (not the integer data's classes)
_NO = _np._NoValue  # NumPy's "not given", where None is a value (var's ``mean``)


def _has_tracer(a: Any) -> bool:
    from ..core.tracer import Tracer
    return any_(isinstance(x, Tracer) or (isinstance(x, (list, tuple)) and _has_tracer(x))
                for x in a)


def _reduce(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    if name in ("max", "min") and result_dtype(x) == _np.bool_ and not _empty_reduction(x, axis):
        # the extrema of masks: any and all (the VM holds no bool extrema)
        return (any if name == "max" else all)(x, axis=axis, keepdims=keepdims)
    return bind(_p(name), x, axes=_axes(axis, ndim(x), lists=False), keepdims=bool(keepdims))


def _cast(a: Any, dtype: Any) -> Any:
    """A reduction's ``dtype=``: NumPy converts the input, then accumulates."""
    return a if dtype is None else astype(a, dtype)


def _masked(a: Any, mask: Any, neutral: Any) -> Any:
    """A reduction's ``where=``: elements left out count as the neutral element."""
    if mask is True:
        return a
    return _select(mask if _has_tracer((mask,)) else _np.asarray(mask, bool), a, neutral)


def _array(a: Any) -> Any:
    """A reduction's argument: a list of traced values stacked, else as NumPy takes it."""
    if isinstance(a, (list, tuple)):
        return stack(a) if _has_tracer(a) else _np.asarray(a)
    return a


def _done(result: Any, out: Any, name: str) -> Any:
    """The result, or written into ``out`` (a traced array), which is returned."""
    if out is None:
        return result
    from ._keywords import write_out  # the item assignment of the modules after this one
    return write_out(out, result, name)


def _empty_reduction(a: Any, axis: Any) -> bool:
    return any_(shape(a)[i] == 0 for i in _axes(axis, ndim(a)))


def _with_identity(name: str, neutral: float, combine: Any) -> Any:
    """The public function of a reduction row with an identity (sum, prod):
    NumPy's signature, ``where=`` masking with the identity and ``initial=``
    combined with the result; a list of traced values is stacked first."""
    numpy_fn, prim = getattr(_np, name), _p(name)

    def reduction(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
                  keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
        if type(a) in _FLOAT_TRACERS and dtype is None and out is None and initial is None \
                and where is True:  # a loss's sum: what `_reduce` records, at once
            return bind(prim, a, axes=_axes(axis, a.ndim, lists=False), keepdims=bool(keepdims))
        if (out is not None or initial is not None or where is not True) and \
                not _has_tracer((a, out, initial, where)):
            return numpy_fn(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims,
                            initial=_NO if initial is None else initial, where=where)
        a = _array(a)
        total = _reduce(name, _masked(_cast(a, dtype), where, neutral), axis, keepdims)
        return _done(total if initial is None else combine(total, initial), out, name)
    return reduction


def _without_identity(name: str) -> Any:
    """The public function of a reduction row without an identity (max, min):
    ``initial`` is combined with the result (by maximum or minimum), and the
    positions ``where=`` leaves out take its value, so a mask needs it, as in NumPy."""
    numpy_fn = getattr(_np, name)
    combine = {"max": maximum, "min": minimum}[name]

    def reduction(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False,
                  initial: Any = None, where: Any = True) -> Any:
        if out is None and initial is None and where is True:
            return _reduce(name, a, axis, keepdims)
        if not _has_tracer((a, out, initial, where)):
            return numpy_fn(a, axis=axis, out=out, keepdims=keepdims,
                            initial=_NO if initial is None else initial, where=where)
        a = _array(a)
        if initial is None:
            if where is not True:
                _needs_initial(numpy_fn, a, axis, where)
            return _done(_reduce(name, a, axis, keepdims), out, name)
        if _empty_reduction(a, axis) and not _has_tracer((initial, where)):
            # nothing reduced: initial, everywhere (no derivative in a)
            return _done(_constant(numpy_fn(_np.zeros(shape(a), result_dtype(a)), axis=axis,
                                            keepdims=keepdims, initial=initial)), out, name)
        result = _reduce(name, _masked(a, where, initial), axis, keepdims)
        return _done(combine(result, initial), out, name)
    return reduction


def _needs_initial(numpy_fn: Any, a: Any, axis: Any, where: Any) -> None:
    """NumPy's error for an extremum with ``where=`` and no ``initial`` (raised by
    NumPy's function on zeros of a's shape)."""
    from ..core.tracer import value_of
    numpy_fn(_np.zeros(shape(a), result_dtype(a)), axis=axis, where=value_of(where))
    raise ValueError("a where mask needs initial")  # (NumPy raised above)


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


def _count(a: Any, axes: tuple, keepdims: bool, where: Any) -> Any:
    """How many elements each result reduces: a number, or with ``where=`` the
    selected ones per result (plain unless the mask is traced)."""
    if where is True:
        return math.prod(shape(a)[i] for i in axes)
    if _has_tracer((where,)):
        ones = astype(broadcast_to(where, shape(a)), _float_dtype(a))
        return sum(ones, axis=axes, keepdims=keepdims)
    return _np.sum(_np.broadcast_to(_np.asarray(where, bool), shape(a)), axis=axes,
                   keepdims=keepdims, dtype=_np.float64)


def _moment_dtype(a: Any, dtype: Any) -> Any:
    """The dtype a mean or variance computes in: NumPy's float64 for
    booleans and integers (an accuracy, ``mean(pred == labels)``, counts in
    float64, exact, not in the integers the VM does not hold)."""
    if dtype is None and result_dtype(a).kind in "biu":
        return _np.float64
    return dtype


def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False, *, where: Any = True) -> Any:
    if type(a) in _FLOAT_TRACERS and where is True and out is None and dtype is None \
            and a.dtype.kind == "f":
        # a loss's mean: what the general path below records, without its
        # casts, masks and array_like checks (asked on every call of an eager loss)
        axes = _axes(axis, a.ndim, lists=False, zero_d=False)
        count = math.prod(a.shape[i] for i in axes)
        total = bind(_p("sum"), a, axes=axes, keepdims=bool(keepdims))
        return total * (1.0 / count if count else _np.nan)
    if (out is not None or where is not True) and not _has_tracer((a, out, where)):
        return _np.mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    truncated = _into_integers(a, dtype)
    a = _cast(_array(a), _moment_dtype(a, dtype))
    axes = _axes(axis, ndim(a), lists=False, zero_d=False)
    count = _count(a, axes, keepdims, where)
    total = sum(a, axis=axes, keepdims=keepdims, where=where)
    if where is True:
        result = total * (1.0 / count if count else _np.nan)
    else:
        with _np.errstate(invalid="ignore", divide="ignore"):  # no element: NaN, as NumPy's
            result = total / count
    if truncated:  # NumPy's cast of the quotient, which truncates
        result = astype(result, dtype)
    return _done(result, out, "mean")


def _into_integers(a: Any, dtype: Any) -> bool:
    """Whether a moment of floats ``a`` is asked for in integers (``dtype=int``)."""
    return dtype is not None and _np.dtype(dtype).kind in "iu" and result_dtype(a).kind in "fc"


_mean = mean  # var's parameter ``mean`` hides the name


def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = _NO,
        correction: Any = _NO) -> Any:
    if (out is not None or where is not True or mean is not _NO or correction is not _NO) \
            and not _has_tracer((a, out, where, mean)):
        return _np.var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims,
                       where=where, mean=mean, correction=correction)
    if correction is not _NO:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    if _into_integers(a, dtype) and where is True and mean is _NO:
        # NumPy's: the mean and the sum of squared deviations (of the floats)
        # each accumulated in the integers, each quotient cast to them
        a = _array(a)
        axes = _axes(axis, ndim(a), lists=False, zero_d=False)
        count = _count(a, axes, keepdims, where)
        center = astype(sum(a, axis=axes, dtype=dtype, keepdims=True) / count, dtype)
        squares = _abs2(a - center)
        return _done(astype(sum(squares, axis=axes, dtype=dtype, keepdims=keepdims)
                            / _np.maximum(count - ddof, 0), dtype), out, "var")
    a = _cast(_array(a), _moment_dtype(a, dtype))
    axes = _axes(axis, ndim(a), lists=False, zero_d=False)
    count = _count(a, axes, keepdims, where)
    center = _mean(a, axis=axes, keepdims=True, where=where) if mean is _NO else mean
    total = sum(_abs2(a - center), axis=axes, keepdims=keepdims, where=where)
    if where is True:
        denom = count - ddof
        result = total * (1.0 / denom if denom > 0 else _np.nan)
    else:
        with _np.errstate(invalid="ignore", divide="ignore"):  # as NumPy: count - ddof >= 0
            result = total / _np.maximum(count - ddof, 0) if not _has_tracer((count,)) \
                else total / maximum(count - ddof, 0.0)
    if dtype is not None and _np.dtype(dtype).kind == "c" and result_dtype(result).kind == "f":
        result = astype(result, dtype)  # (NumPy's: squares of a real array in complex)
    return _done(result, out, "var")


def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = _NO,
        correction: Any = _NO) -> Any:
    if (out is not None or where is not True or mean is not _NO or correction is not _NO) \
            and not _has_tracer((a, out, where, mean)):
        return _np.std(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims,
                       where=where, mean=mean, correction=correction)
    spread = var(a, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, where=where,
                 mean=mean, correction=correction)
    if _into_integers(a, dtype) and where is True and mean is _NO:
        if ndim(spread):  # NumPy's square root in place, into the integers
            raise TypeError(f"Cannot cast ufunc 'sqrt' output from dtype('float64') to "
                            f"dtype('{_np.dtype(dtype)}') with casting rule 'same_kind'")
        return _done(astype(sqrt(spread), dtype), out, "std")  # (NumPy's cast)
    reduced = [shape(a)[i] for i in _axes(axis, ndim(a), lists=False, zero_d=False)]
    if where is True and mean is _NO and ddof == 0 and correction is _NO \
            and _np.prod(reduced, dtype=int) == 1:
        # one element per result: the spread is 0 whatever the element, and so is
        # its derivative (sqrt's at 0 would make it 0 * inf), as in autograd
        return _done(spread, out, "std")
    return _done(sqrt(spread), out, "std")


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
    return cumsum_(*_axis_of(a, axis, flat_0d=True))


def _axis_of(a: Any, axis: Any, flat_0d: bool = False) -> tuple[Any, int]:
    """(a, axis) with axis=None meaning the flattened array, as NumPy does;
    ``flat_0d``: axis 0 or -1 of a 0-d array too (NumPy's cumsum, argmax,
    argsort, written in C, take it so; its sort raises)."""
    if axis is None or (flat_0d and axis in (0, -1) and ndim(a) == 0):
        return ravel(a), 0
    return a, _axis_index(axis, ndim(a))


def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Cumulative product; its derivative divides by a (NaN at an exact 0, as prod's)."""
    _no_out(out, "cumprod")
    a, axis = _axis_of(_cast(a, dtype), axis, flat_0d=True)
    return bind(_p("cumprod"), a, axis=axis)


def _not_nan(a: Any) -> Any:
    return equal(a, a)


def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
           keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
    if not _has_tracer((a, out, initial, where)):
        return _np.nansum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims,
                          initial=_NO if initial is None else initial, where=where)
    return sum(_select(_not_nan(a), a, 0.0), axis=axis, dtype=dtype, out=out, keepdims=keepdims,
               initial=initial, where=where)


def nanprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
    if not _has_tracer((a, out, initial, where)):
        return _np.nanprod(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims,
                           initial=_NO if initial is None else initial, where=where)
    return prod(_select(_not_nan(a), a, 1.0), axis=axis, dtype=dtype, out=out,
                keepdims=keepdims, initial=initial, where=where)


def nanmean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False, *, where: Any = True) -> Any:
    if not _has_tracer((a, out, where)):
        return _np.nanmean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    present = _masked(_not_nan(a), where, False)
    count = sum(astype(present, _float_dtype(a)), axis=axis, keepdims=keepdims)
    result = nansum(a, axis=axis, dtype=dtype, keepdims=keepdims, where=where) / count
    if dtype is not None:  # NumPy's quotient is written into the sum: of its dtype
        if _np.dtype(dtype).kind not in "fc":
            raise TypeError("If a is inexact, then dtype must be inexact")
        result = astype(result, dtype)
    return _done(result, out, "nanmean")


def nanmax(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    if not _has_tracer((a, out, initial, where)):
        return _np.nanmax(a, axis=axis, out=out, keepdims=keepdims,
                          initial=_NO if initial is None else initial, where=where)
    if initial is None and where is not True:
        _needs_initial(_np.nanmax, a, axis, where)
    result = max(_select(_not_nan(a), a, -_np.inf), axis=axis, out=out, keepdims=keepdims,
                 initial=initial, where=where)
    if initial is None and where is True and out is None:  # an all-NaN row: NaN, as NumPy's
        every = min(_select(_not_nan(a), 0.0, 1.0), axis=axis, keepdims=keepdims)
        result = _select(every > 0, _np.nan, result)
    return result


def nanmin(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    if not _has_tracer((a, out, initial, where)):
        return _np.nanmin(a, axis=axis, out=out, keepdims=keepdims,
                          initial=_NO if initial is None else initial, where=where)
    if initial is None and where is not True:
        _needs_initial(_np.nanmin, a, axis, where)
    result = min(_select(_not_nan(a), a, _np.inf), axis=axis, out=out, keepdims=keepdims,
                 initial=initial, where=where)
    if initial is None and where is True and out is None:  # an all-NaN row: NaN, as NumPy's
        every = min(_select(_not_nan(a), 0.0, 1.0), axis=axis, keepdims=keepdims)
        result = _select(every > 0, _np.nan, result)
    return result


def any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,  # noqa: A001
        where: Any = True) -> Any:
    if (out is not None or where is not True) and not _has_tracer((a, out, where)):
        return _np.any(a, axis=axis, out=out, keepdims=keepdims, where=where)
    nonzero = _masked(_array(a) != 0, where, False)
    # a count, not a max: a reduction over no elements is False, as NumPy's
    return _done(_reduce("sum", astype(nonzero, _np.float64), axis, keepdims) > 0.0, out, "any")


def all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,  # noqa: A001
        where: Any = True) -> Any:
    if (out is not None or where is not True) and not _has_tracer((a, out, where)):
        return _np.all(a, axis=axis, out=out, keepdims=keepdims, where=where)
    zero = _masked(_array(a) == 0, where, False)
    # no zero counted, not a min: a reduction over no elements is True, as NumPy's
    return _done(_reduce("sum", astype(zero, _np.float64), axis, keepdims) == 0.0, out, "all")


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None,
          out: Any = None) -> Any:
    if out is not None and not _has_tracer((a, out)):
        return _np.trace(a, offset, axis1, axis2, dtype, out)
    return sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype, out=out)


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
