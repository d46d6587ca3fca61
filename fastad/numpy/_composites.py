"""NumPy's other differentiable functions, written with the front end's:
remainders and angle conversions, statistics (quantiles, medians, averages,
covariances, NaN-ignoring moments), integration and finite differences
(polynomials are in `_polynomials`).  Each computes NumPy's own function on plain values, so calling
it without a traced argument gives exactly NumPy's result."""
from __future__ import annotations

import builtins
import functools
import inspect
import math
from typing import Any

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.errors import TracingError
from ..core.int_data import IntArrayTracer, IntTracer
from ..core.tracer import Tracer, bind
from ._arrayfuncs import diff
from ._base import (_axes, _contains_tracer, _float_dtype, _p, iscomplexobj, ndim, result_dtype,
                    shape)
from ._creation import array, asarray
from ._dtypes import _cast, numpy_dtype, ufunc_dtype
from ._elementwise import where as _select  # for functions whose ``where=`` hides the name
from ._elementwise import astype, logical_and, logical_not, maximum
from ._keywords import write_out
from ._elementwise import (FROM_ROWS, absolute, ceil, conjugate, deg2rad, floor, imag, isnan,
                           logaddexp, multiply, power, real, sin, sqrt, stop_gradient,
                           two_results, ufunc_like, where)
from ._linalg import matmul
from ._ordering import sort
from ._reductions import (_concrete, cumprod, cumsum, max, mean, min, nansum, sum)
from ._shape import (atleast_2d, broadcast_to, concatenate, diag, expand_dims, moveaxis, ravel,
                     reshape, stack, swapaxes, transpose)

__all__ = ["remainder", "mod", "fmod", "floor_divide", "divmod", "modf", "trunc", "fix",
           "radians", "degrees", "rad2deg", "heaviside", "logaddexp2",
           "sinc", "ldexp", "nan_to_num", "isinf", "isposinf", "isneginf", "iscomplex", "isreal",
           "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "pow", "float_power",
           "average", "quantile", "percentile", "median", "nanquantile", "nanpercentile",
           "nanmedian", "nanvar", "nanstd", "nancumsum", "nancumprod", "ptp", "cov", "corrcoef",
           "trapezoid", "gradient", "ediff1d", "cumulative_sum", "cumulative_prod", "vander",
           "unwrap", "i0", "real_if_close", "matvec", "vecmat", "vecdot"]


def _traced(*args: Any) -> bool:
    return builtins.any(isinstance(a, Tracer) or _contains_tracer(a) for a in args)


def _numpy_unless_traced(name: str, namespace: Any = _np):
    """Decorator: NumPy's function of the same name (in ``namespace``) when no
    argument is traced; on traced ones, fastad's with NumPy's result dtype, and
    an ``out=`` parameter (by keyword or position) written into as NumPy does."""
    plain = getattr(namespace, name)

    def wrap(fn):
        traced = numpy_dtype(plain)(fn)
        parameters = list(inspect.signature(fn).parameters)
        out_at = parameters.index("out") if "out" in parameters else None

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not _traced(*args, *kwargs.values()):
                return plain(*args, **kwargs)
            if out_at is not None:
                out = kwargs.get("out")
                if out is None and len(args) > out_at:
                    out, args = args[out_at], args[:out_at] + (None,) + args[out_at + 1:]
                if out is not None:
                    kwargs = {k: v for k, v in kwargs.items() if k != "out"}
                    return write_out(out, traced(*args, **kwargs), name)
            return traced(*args, **kwargs)
        call.__name__ = call.__qualname__ = name
        if isinstance(plain, _np.ufunc) and plain.nout == 1:  # and NumPy's keywords
            return ufunc_like(plain, call)
        return call
    return wrap


def _as(x: Any) -> Any:
    """x as a traced value or a NumPy array (a list of traced values is stacked)."""
    return x if isinstance(x, Tracer) else (array(x) if _contains_tracer(x) else _np.asarray(x))


# -- remainders, angles and other elementwise composites -----------------------
def _integer_dtype(x1: Any, x2: Any) -> Any:
    """NumPy's result dtype of an arithmetic on x1 and x2 if it is an integer
    one (a loop counter of `fori_loop` taken modulo n), else None; float64
    when the integers are held in float64 (integers taken as data, an
    argmax: `core.int_data`), which the division keeps them in."""
    held = False
    dtypes = []
    for a in (x1, x2):
        if isinstance(a, (IntTracer, IntArrayTracer)):
            held = True
            dtypes.append(_np.dtype(_np.int64) if a.data_dtype is int else a.data_dtype)
        else:
            dtypes.append(a.dtype if isinstance(a, Tracer) else a)
    dt = _np.result_type(*dtypes)
    if dt.kind not in "iu":
        return None
    return _np.dtype(_np.float64) if held else dt


def _integer_division(x1: Any, x2: Any, dtype: Any, rounding: Any) -> tuple[Any, Any]:
    """The quotient rounded by ``rounding`` (floor or trunc) and its remainder,
    in integers: the float quotient is off by at most one below 2**52, and
    one correction step puts the remainder back in range (the sign of x2 for
    floor, of x1 for trunc, and smaller than |x2|); NumPy's 0 for a division
    by zero."""
    def astype(v: Any, to: Any) -> Any:  # a traced value of that dtype, not integer data
        return v if result_dtype(v) == to else bind(_p("astype"), v, dtype=_np.dtype(to).str)
    one, zero = _np.ones((), dtype), _np.zeros((), dtype)  # (float64 ones for integers held so)
    safe = where(x2 == 0, one, x2)
    q = astype(rounding(astype(x1, _np.float64) / astype(safe, _np.float64)), dtype)
    r = x1 - q * safe
    positive = safe > 0 if rounding is floor else x1 >= 0  # the remainder's sign
    wrong_sign = where(positive, r < 0, r > 0)
    too_big = where(positive, r >= absolute(safe), r <= -absolute(safe))
    adjust = where(too_big, one, where(wrong_sign, -one, zero))
    if rounding is not floor:  # a step of |x2| toward x1's sign
        adjust = adjust * where(positive == (safe > 0), one, -one)
    adjust = astype(adjust, dtype)
    q, r = q + adjust, r - adjust * safe
    return tuple(astype(where(x2 == 0, zero, v), dtype) for v in (q, r))  # type: ignore[return-value]


_fmod = FROM_ROWS["fmod"].core  # C's fmod, exact (the primitive)
_copysign = FROM_ROWS["copysign"].core


def _float_divmod(x1: Any, x2: Any) -> tuple[Any, Any]:
    """NumPy's npy_divmod, step for step, from the exact fmod: floor(x1 / x2)
    rounds x1 / x2 first (0.9 // 0.1 would be 9, NumPy's is 8, as
    0.9 = 8 * 0.1 + 0.0999...), and x1 - floor(x1 / x2) * x2 is NaN for
    x2 = inf.  The quotient (x1 - mod) / x2 is very nearly an integer and is
    snapped to it; a remainder of the wrong sign moves by one x2; zeros take
    x2's sign (the remainder) or x1 / x2's (the quotient); x2 = 0 gives
    x1 / x2 and fmod's NaN.  The remainder's derivative is fmod's (1 in x1,
    -q in x2) plus 1 in x2 where it moved; the quotient's is 0."""
    # a Python bool is weak as a Python float is (float32 % True is float32)
    x1, x2 = (float(x) if type(x) is bool else x for x in (x1, x2))
    mod = _fmod(x1, x2)
    div = (x1 - mod) / x2
    moved = (mod != 0) & ((x2 < 0) != (mod < 0))
    mod = where(moved, mod + x2, mod)
    # a zero remainder takes x2's sign; its derivative stays 1 in x1 (both
    # sides of the jump), as the remainder's elsewhere
    zero = ((math.copysign(0.0, x2) if type(x2) is float else _copysign(0.0, x2))  # (weak)
            - (stop_gradient(mod) - mod))
    mod = where(mod == 0, zero, mod)
    div = stop_gradient(where(moved, div - 1.0, div))
    floordiv = floor(div)
    floordiv = where(div - floordiv > 0.5, floordiv + 1.0, floordiv)
    floordiv = where(div == 0, _copysign(0.0, x1 / x2), floordiv)
    by_zero = x2 == 0
    return where(by_zero, x1 / x2, floordiv), where(by_zero, _fmod(x1, x2), mod)


@_numpy_unless_traced("floor_divide")
def floor_divide(x1: Any, x2: Any, **kw: Any) -> Any:
    """x1 // x2 as NumPy computes it (`_float_divmod`): piecewise constant,
    derivative 0."""
    dtype = _integer_dtype(x1, x2)
    if dtype is not None:
        return _integer_division(x1, x2, dtype, floor)[0]
    return _float_divmod(x1, x2)[0]


@_numpy_unless_traced("remainder")
def remainder(x1: Any, x2: Any, **kw: Any) -> Any:
    """x1 % x2 (Python's, NumPy's `_float_divmod`): derivative 1 in x1,
    -floor(x1/x2) in x2 (everywhere but at the jumps)."""
    dtype = _integer_dtype(x1, x2)
    if dtype is not None:
        return _integer_division(x1, x2, dtype, floor)[1]
    return _float_divmod(x1, x2)[1]


mod = remainder


@_numpy_unless_traced("fmod")
def fmod(x1: Any, x2: Any, **kw: Any) -> Any:
    """C's fmod, exact (the primitive): the sign of x1."""
    dtype = _integer_dtype(x1, x2)
    if dtype is not None:
        return _integer_division(x1, x2, dtype, trunc)[1]
    return _fmod(x1, x2)


def _divmod(x1: Any, x2: Any) -> tuple[Any, Any]:
    """(x1 // x2, x1 % x2)."""
    if not _traced(x1, x2):
        return _np.divmod(x1, x2)
    if _integer_dtype(x1, x2) is None:  # in NumPy's dtype, as remainder's
        dtype = ufunc_dtype(_np.remainder, (x1, x2))
        return _cast(_float_divmod(x1, x2), (dtype, dtype))
    if isinstance(x1, (IntTracer, IntArrayTracer)) or isinstance(x2, (IntTracer, IntArrayTracer)):
        # integers taken as data again, of NumPy's dtype (a ufunc of Python
        # ints gives int64; the operators would give Python's ints, and raise
        # for a division by zero where NumPy gives 0)
        from ..core.int_data import integer_dtype, integer_like
        if integer_dtype(x1) is int and integer_dtype(x2) is int:
            x1 = integer_like(x1, x1.sources, _np.dtype(_np.int64), x1.interval) \
                if isinstance(x1, Tracer) else _np.int64(x1)
        return x1 // x2, x1 % x2
    return floor_divide(x1, x2), remainder(x1, x2)


divmod = two_results(_np.divmod, _divmod)  # noqa: A001


@_numpy_unless_traced("trunc")
def trunc(x: Any, **kw: Any) -> Any:
    return where(x < 0, ceil(x), floor(x))


@_numpy_unless_traced("fix")
def fix(x: Any, out: Any = None) -> Any:
    return trunc(x)


def _modf(x: Any) -> tuple[Any, Any]:
    """(fractional part, integral part)."""
    if not _traced(x):
        return _np.modf(x)
    whole = trunc(x)
    frac = x - whole
    # C's modf: the fraction has x's sign (-0.0 for -2.0 and for -0.0), and is
    # +-0 for +-inf (inf - inf would be NaN); its derivative stays 1 at the
    # integers (both sides of the jump), 0 at the infinities
    zero = _copysign(0.0, x)
    frac = where(frac == 0, zero - (stop_gradient(frac) - frac), frac)
    return where(absolute(x) == _np.inf, zero, frac), whole


modf = two_results(_np.modf, _modf)


radians = deg2rad  # np.radians is np.deg2rad under another name: the primitive


@_numpy_unless_traced("degrees")
def degrees(x: Any, **kw: Any) -> Any:
    return x * (180.0 / _np.pi)


rad2deg = degrees


@_numpy_unless_traced("heaviside")
def heaviside(x1: Any, x2: Any, **kw: Any) -> Any:
    """0, x2 or 1 as x1 is negative, 0 or positive: derivative 0 in x1, the
    indicator of x1 == 0 in x2; NaN where x1 is NaN, as NumPy's."""
    return where(x1 != x1, _np.nan, where(x1 > 0, 1.0, where(x1 == 0, x2, 0.0))) * 1.0


@_numpy_unless_traced("logaddexp2")
def logaddexp2(x1: Any, x2: Any, **kw: Any) -> Any:
    ln2 = _np.log(2.0)
    x1, x2 = (asarray(x) if isinstance(x, (list, tuple)) else x for x in (x1, x2))
    return logaddexp(x1 * ln2, x2 * ln2) * (1.0 / ln2)


@_numpy_unless_traced("sinc")
def sinc(x: Any) -> Any:
    """sin(pi x) / (pi x), 1 at 0 (derivative 0 there)."""
    zero = x == 0
    y = _np.pi * where(zero, 1.0, x)
    return where(zero, 1.0, sin(y) / y)


@_numpy_unless_traced("ldexp")
def ldexp(x1: Any, x2: Any, **kw: Any) -> Any:
    if isinstance(x2, Tracer):
        raise TracingError("ldexp: the exponent must be a constant integer array")
    return x1 * _np.ldexp(1.0, _np.asarray(x2))


@_numpy_unless_traced("nan_to_num")
def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
               neginf: Any = None) -> Any:
    big = _np.finfo(_float_dtype(x)).max
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    if iscomplexobj(x):
        return nan_to_num(real(x), nan=nan, posinf=posinf, neginf=neginf) + 1j * nan_to_num(
            imag(x), nan=nan, posinf=posinf, neginf=neginf)
    return where(isnan(x), nan, where(x == _np.inf, posinf, where(x == -_np.inf, neginf, x)))


@_numpy_unless_traced("isinf")
def isinf(x: Any, **kw: Any) -> Any:
    return absolute(x) == _np.inf


@_numpy_unless_traced("isposinf")
def isposinf(x: Any, out: Any = None) -> Any:
    return x == _np.inf


@_numpy_unless_traced("isneginf")
def isneginf(x: Any, out: Any = None) -> Any:
    return x == -_np.inf


@_numpy_unless_traced("iscomplex")
def iscomplex(x: Any) -> Any:
    return imag(x) != 0 if iscomplexobj(x) else _np.zeros(shape(x), bool)


@_numpy_unless_traced("isreal")
def isreal(x: Any) -> Any:
    return imag(x) == 0 if iscomplexobj(x) else _np.ones(shape(x), bool)


def _alias(name: str, fn: Any) -> Any:
    """NumPy's other name for the ufunc of fn (``acos`` for ``arccos``)."""
    call = ufunc_like(getattr(_np, name), fn.core)
    call.__name__ = call.__qualname__ = name
    return call


from ._elementwise import arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh  # noqa: E402

acos, acosh, asin, asinh = (_alias(n, f) for n, f in (
    ("acos", arccos), ("acosh", arccosh), ("asin", arcsin), ("asinh", arcsinh)))
atan, atan2, atanh = (_alias(n, f) for n, f in (
    ("atan", arctan), ("atan2", arctan2), ("atanh", arctanh)))
pow = _alias("pow", power)  # noqa: A001


@_numpy_unless_traced("float_power")
def float_power(x1: Any, x2: Any, **kw: Any) -> Any:
    # NumPy's: both operands in float64 (complex128) first, then the power
    dtype = _np.complex128 if iscomplexobj(x1) or iscomplexobj(x2) else _np.float64

    def cast(x: Any) -> Any:
        return x.astype(dtype) if isinstance(x, Tracer) else _np.asarray(x, dtype)
    return power(cast(x1), cast(x2))


# -- statistics ---------------------------------------------------------------
@_numpy_unless_traced("average")
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *,
            keepdims: bool = False) -> Any:
    a = _as(a)
    if axis is not None:  # (NumPy's normalize_axis_tuple: a list too)
        axis = _axes(axis, ndim(a), zero_d=False)
        axis = axis[0] if len(axis) == 1 else axis
    if weights is None:
        avg = mean(a, axis=axis, keepdims=keepdims)
        total = _np.full(shape(avg), _np.prod([shape(a)[i] for i in _axes(axis, ndim(a))]),
                         _float_dtype(a))
    else:
        w = _as(weights)
        if shape(w) != shape(a):
            if axis is None or ndim(w) != 1:
                raise TypeError("average: axis must be specified when shapes of a and weights "
                                "differ")
            ax = _axis_index(axis, ndim(a))
            w = reshape(w, tuple(shape(w)[0] if i == ax else 1 for i in range(ndim(a))))
            w = broadcast_to(w, shape(a))
        total = sum(w, axis=axis, keepdims=keepdims)
        avg = sum(a * w, axis=axis, keepdims=keepdims) / total
    if returned:
        return avg, broadcast_to(total, shape(avg)) if isinstance(total, Tracer) else total
    return avg


def _quantile_sorted(s: Any, q: Any, method: str) -> Any:
    """Quantiles q (plain) along the last axis of s, sorted: NumPy's methods
    that interpolate between or pick order statistics."""
    n = shape(s)[-1]
    q = _np.asarray(q, dtype=_np.float64)
    if _np.any((q < 0) | (q > 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    pos = q * (n - 1)
    lo = _np.floor(pos).astype(int)
    hi = _np.minimum(lo + 1, n - 1)
    frac = pos - lo
    if method == "lower":
        hi, frac = lo, frac * 0
    elif method == "higher":
        lo, frac = _np.ceil(pos).astype(int), frac * 0
        hi = lo
    elif method == "nearest":
        lo = _np.around(pos).astype(int)
        hi, frac = lo, frac * 0
    elif method == "midpoint":
        frac = _np.where(frac > 0, 0.5, 0.0)
    elif method != "linear":
        raise TracingError(f"quantile: method={method!r} is not supported on traced values; "
                           "use linear, lower, higher, nearest or midpoint")
    flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
    a_lo = moveaxis(s[..., flat_lo], -1, 0)
    a_hi = moveaxis(s[..., flat_hi], -1, 0)
    f = frac.reshape((-1,) + (1,) * (ndim(s) - 1))
    out = a_lo + (a_hi - a_lo) * f
    return reshape(out, q.shape + tuple(shape(s)[:-1]))


@_numpy_unless_traced("quantile")
def quantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
             method: str = "linear", keepdims: bool = False, *, weights: Any = None,
             interpolation: Any = None) -> Any:
    """Quantiles of a along axis (q constant); the derivative follows the
    order statistics each quantile interpolates between."""
    if isinstance(q, Tracer) or weights is not None:
        raise TracingError("quantile: q must be a constant and weights are not supported "
                           "on traced values")
    a = _as(a)
    axes = _axes(axis, ndim(a), zero_d=False)
    rest = [i for i in range(ndim(a)) if i not in axes]
    moved = reshape(transpose(a, rest + list(axes)), tuple(shape(a)[i] for i in rest) + (-1,))
    result = _nan_rows_are_nan(moved, _quantile_sorted(sort(moved, axis=-1), q,
                                                       interpolation or method))
    if keepdims:
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape(a)))
        result = reshape(result, _np.shape(q) + kept)
    return result


@_numpy_unless_traced("percentile")
def percentile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
               method: str = "linear", keepdims: bool = False, *, weights: Any = None,
               interpolation: Any = None) -> Any:
    return quantile(a, _np.asarray(q) / 100.0, axis=axis, method=method, keepdims=keepdims,
                    weights=weights, interpolation=interpolation)


@_numpy_unless_traced("median")
def median(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
           keepdims: bool = False) -> Any:
    """NumPy's median: the middle order statistic, or the mean of the middle
    two ((a + b) / 2: not the quantile's a + (b - a) / 2, NaN for a = 3,
    b = inf); NaN where a row holds a NaN.  The derivative follows the
    middle element(s)."""
    a = _as(a)
    axes = _axes(axis, ndim(a), zero_d=False)
    rest = [i for i in range(ndim(a)) if i not in axes]
    moved = reshape(transpose(a, rest + list(axes)), tuple(shape(a)[i] for i in rest) + (-1,))
    n = shape(moved)[-1]
    if math.prod(shape(a)) == 0:  # no elements to reduce, or no rows
        return _empty_median(a, axes, rest, keepdims)
    s = sort(moved, axis=-1)
    if n % 2:
        result = s[..., n // 2]
    else:
        result = (s[..., n // 2 - 1] + s[..., n // 2]) / 2.0
    result = _nan_rows_are_nan(moved, result)
    if keepdims:
        result = reshape(result, tuple(1 if i in axes else d for i, d in enumerate(shape(a))))
    return result


def _nan_rows_are_nan(rows: Any, result: Any) -> Any:
    """NaN where a row (along the last axis) holds a NaN, as NumPy's median
    and quantile (sorting put the NaN last, past the order statistics)."""
    has_nan = max(where(isnan(rows), 1.0, 0.0), axis=-1) > 0
    return where(has_nan, _np.nan, result)


def _nan_rows(a: Any, axis: Any, fn: Any) -> Any:
    """fn applied to each row along ``axis`` with its NaNs left out (which
    entries are NaN is a guard under compilation)."""
    a = _as(a)
    nan = _concrete(isnan(a))
    if not nan.any():
        return fn(a, axis)
    if axis is None:
        return fn(ravel(a)[~nan.reshape(-1)], None)
    ax = _axes(axis, ndim(a))
    if len(ax) != 1:
        raise TracingError("NaN-ignoring quantiles over several axes of traced values: "
                           "reshape first")
    moved, mask = moveaxis(a, ax[0], -1), _np.moveaxis(nan, ax[0], -1)
    lead = shape(moved)[:-1]
    rows = reshape(moved, (-1, shape(moved)[-1]))
    keep = mask.reshape(-1, mask.shape[-1])
    outs = [fn(rows[i][~keep[i]], None) for i in range(shape(rows)[0])]
    out = stack(outs, axis=-1)
    return reshape(out, shape(out)[:-1] + tuple(lead))


@_numpy_unless_traced("nanquantile")
def nanquantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
                method: str = "linear", keepdims: bool = False, *, weights: Any = None,
                interpolation: Any = None) -> Any:
    if weights is not None:
        raise TracingError("nanquantile: weights are not supported on traced values")
    method = interpolation or method  # (NumPy 1's name)
    result = _nan_rows(a, axis, lambda r, ax: quantile(r, q, axis=ax, method=method))
    if keepdims:
        axes = _axes(axis, ndim(a), zero_d=False)
        result = reshape(result, _np.shape(q) + tuple(1 if i in axes else d
                                                      for i, d in enumerate(shape(a))))
    return result


@_numpy_unless_traced("nanpercentile")
def nanpercentile(a: Any, q: Any, axis: Any = None, out: Any = None,
                  overwrite_input: bool = False, method: str = "linear",
                  keepdims: bool = False, *, weights: Any = None,
                  interpolation: Any = None) -> Any:
    return nanquantile(a, _np.asarray(q) / 100.0, axis=axis, method=method, keepdims=keepdims,
                       weights=weights, interpolation=interpolation)


@_numpy_unless_traced("nanmedian")
def nanmedian(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
              keepdims: bool = False) -> Any:
    a = _as(a)
    axes = _axes(axis, ndim(a), zero_d=False)
    if math.prod(shape(a)) == 0:  # no elements to reduce, or no rows
        return _empty_median(a, axes, [i for i in range(ndim(a)) if i not in axes], keepdims)
    return nanquantile(a, 0.5, axis=axis, keepdims=keepdims)


def _empty_median(a: Any, axes: Any, rest: list[int], keepdims: bool) -> Any:
    """NumPy's median of an empty array: NaN for each row of no elements (a
    constant: there is nothing to differentiate), in the result's shape."""
    dims = tuple(1 if i in axes else d for i, d in enumerate(shape(a))) if keepdims else \
        tuple(shape(a)[i] for i in rest)
    return _np.full(dims, _np.nan, dtype=_np.result_type(a.dtype, _np.float16))


@_numpy_unless_traced("nanvar")
def nanvar(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
           keepdims: bool = False, *, where: Any = True, mean: Any = _np._NoValue,
           correction: Any = _np._NoValue) -> Any:
    """The variance of the elements that are not NaN (and where ``where`` holds)."""
    if correction is not _np._NoValue:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    a = _as(a)
    if dtype is not None:
        a = a.astype(dtype)
    present = logical_not(isnan(a))
    if where is not True:
        present = logical_and(present, where if isinstance(where, Tracer)
                              else _np.asarray(where, bool))
    count = sum(_select(present, 1.0, 0.0), axis=axis, keepdims=True)
    center = nansum(_select(present, a, 0.0), axis=axis, keepdims=True) / count \
        if mean is _np._NoValue else mean
    centered = _select(present, a - center, 0.0)
    sq = real(centered * conjugate(centered)) if iscomplexobj(a) else centered * centered
    result = sum(sq, axis=axis, keepdims=True) / maximum(count - ddof, 0.0)
    if not keepdims:
        result = reshape(result, tuple(d for i, d in enumerate(shape(result))
                                       if i not in _axes(axis, ndim(a))))
    return result if out is None else write_out(out, result, "nanvar")


@_numpy_unless_traced("nanstd")
def nanstd(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
           keepdims: bool = False, *, where: Any = True, mean: Any = _np._NoValue,
           correction: Any = _np._NoValue) -> Any:
    spread = sqrt(nanvar(a, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, where=where,
                         mean=mean, correction=correction))
    return spread if out is None else write_out(out, spread, "nanstd")


@_numpy_unless_traced("nancumsum")
def nancumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    a = _as(a)
    return cumsum(where(isnan(a), 0.0, a), axis=axis, dtype=dtype)


@_numpy_unless_traced("nancumprod")
def nancumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    a = _as(a)
    return cumprod(where(isnan(a), 1.0, a), axis=axis, dtype=dtype)


@_numpy_unless_traced("ptp")
def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return max(a, axis=axis, keepdims=keepdims) - min(a, axis=axis, keepdims=keepdims)


@_numpy_unless_traced("cov")
def cov(m: Any, y: Any = None, rowvar: bool = True, bias: bool = False, ddof: Any = None,
        fweights: Any = None, aweights: Any = None, *, dtype: Any = None) -> Any:
    if fweights is not None or aweights is not None:
        raise TracingError("cov: fweights/aweights are not supported on traced values")
    # NumPy's precision: float64 at least (a float32 m's covariance is float64)
    if dtype is None:
        dtype = _np.result_type(result_dtype(m), _np.float64,
                                *(() if y is None else (result_dtype(y),)))
    x = atleast_2d(astype(_as(m), dtype))
    if not rowvar and shape(x)[0] != 1:
        x = swapaxes(x, 0, 1)
    if y is not None:
        y = atleast_2d(astype(_as(y), dtype))
        if not rowvar and shape(y)[0] != 1:
            y = swapaxes(y, 0, 1)
        x = concatenate([x, y], axis=0)
    if ddof is None:
        ddof = 0 if bias else 1
    n = shape(x)[1]
    xc = x - mean(x, axis=1, keepdims=True)
    c = matmul(xc, conjugate(swapaxes(xc, 0, 1))) * (1.0 / (n - ddof))
    return reshape(c, ()) if shape(c) == (1, 1) else c


@_numpy_unless_traced("corrcoef")
def corrcoef(x: Any, y: Any = None, rowvar: bool = True, *, dtype: Any = None) -> Any:
    c = cov(x, y, rowvar, dtype=dtype)
    if ndim(c) == 0:
        return c / c
    d = sqrt(real(diag(c)))
    c = c / d[:, None] / d[None, :]
    return c if iscomplexobj(c) else where(c > 1.0, 1.0, where(c < -1.0, -1.0, c))


# -- integration and differences ----------------------------------------------
@_numpy_unless_traced("trapezoid")
def trapezoid(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    y = _as(y)
    ax = _axis_index(axis, ndim(y))
    n = shape(y)[ax]
    lead = (slice(None),) * ax
    if x is None:
        d = dx
    else:
        x = _as(x)
        d = diff(x, axis=-1 if ndim(x) == 1 else ax)
        if ndim(x) == 1:
            d = reshape(d, tuple(n - 1 if i == ax else 1 for i in range(ndim(y))))
    return sum(d * (y[lead + (slice(1, None),)] + y[lead + (slice(None, -1),)]) * 0.5, axis=ax)


@_numpy_unless_traced("gradient")
def gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    """Second-order central differences inside, first or second order at the
    edges, as NumPy's; spacings scalars or (constant) coordinate arrays."""
    f = _as(f)
    axes = _axes(axis, ndim(f)) if axis is not None else tuple(range(ndim(f)))
    if isinstance(axis, (int, _np.integer)):
        axes = (axes[0],)
    if len(varargs) == 0:
        spacing = [1.0] * len(axes)
    elif len(varargs) == 1 and _np.ndim(varargs[0]) == 0:
        spacing = list(varargs) * len(axes)
    else:
        spacing = list(varargs)
    outs = []
    for ax, h in zip(axes, spacing):
        outs.append(_gradient_1(f, ax, h, edge_order))
    return outs[0] if len(outs) == 1 else tuple(outs)


def _gradient_1(f: Any, ax: int, h: Any, edge_order: int) -> Any:
    if isinstance(h, Tracer):
        raise TracingError("gradient: spacings must be constants")
    n = shape(f)[ax]
    if n < edge_order + 1:
        raise ValueError("Shape of array too small to calculate a numerical gradient, at least "
                         "(edge_order + 1) elements are required.")
    g = moveaxis(f, ax, -1)
    h = _np.asarray(h, dtype=_np.float64)
    if h.ndim == 0:
        interior = (g[..., 2:] - g[..., :-2]) / (2.0 * h)
        if edge_order == 1:
            first = (g[..., 1] - g[..., 0]) / h
            last = (g[..., -1] - g[..., -2]) / h
        else:
            first = (-1.5 * g[..., 0] + 2.0 * g[..., 1] - 0.5 * g[..., 2]) / h
            last = (0.5 * g[..., -3] - 2.0 * g[..., -2] + 1.5 * g[..., -1]) / h
    else:
        dx = _np.diff(h)
        dx1, dx2 = dx[:-1], dx[1:]
        a = -dx2 / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        interior = a * g[..., :-2] + b * g[..., 1:-1] + c * g[..., 2:]
        if edge_order == 1:
            first = (g[..., 1] - g[..., 0]) / dx[0]
            last = (g[..., -1] - g[..., -2]) / dx[-1]
        else:
            d1, d2 = dx[0], dx[1]
            first = (-(2.0 * d1 + d2) / (d1 * (d1 + d2)) * g[..., 0]
                     + (d1 + d2) / (d1 * d2) * g[..., 1] - d1 / (d2 * (d1 + d2)) * g[..., 2])
            d1, d2 = dx[-2], dx[-1]
            last = (d2 / (d1 * (d1 + d2)) * g[..., -3] - (d2 + d1) / (d1 * d2) * g[..., -2]
                    + (2.0 * d2 + d1) / (d2 * (d1 + d2)) * g[..., -1])
    out = concatenate([expand_dims(first, -1), interior, expand_dims(last, -1)], axis=-1)
    return moveaxis(out, -1, ax)


@_numpy_unless_traced("ediff1d")
def ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Any:
    parts = [diff(ravel(_as(ary)))]
    if to_begin is not None:
        parts.insert(0, ravel(_as(to_begin)))
    if to_end is not None:
        parts.append(ravel(_as(to_end)))
    return concatenate(parts) if len(parts) > 1 else parts[0]


@_numpy_unless_traced("cumulative_sum")
def cumulative_sum(x: Any, /, *, axis: Any = None, dtype: Any = None, out: Any = None,
                   include_initial: bool = False) -> Any:
    return _cumulative(cumsum, 0.0, x, axis, include_initial)


@_numpy_unless_traced("cumulative_prod")
def cumulative_prod(x: Any, /, *, axis: Any = None, dtype: Any = None, out: Any = None,
                    include_initial: bool = False) -> Any:
    return _cumulative(cumprod, 1.0, x, axis, include_initial)


def _cumulative(fn: Any, initial: float, x: Any, axis: Any, include_initial: bool) -> Any:
    x = _as(x)
    if axis is None:
        if ndim(x) > 1:
            raise ValueError("For arrays which have more than one dimension ``axis`` argument "
                             "is required.")
        axis = 0
    out = fn(x, axis=axis)
    if include_initial:
        ax = _axis_index(axis, ndim(x))
        first = _np.full(tuple(1 if i == ax else d for i, d in enumerate(shape(x))), initial,
                         _float_dtype(x))
        out = concatenate([first, out], axis=ax)
    return out


@_numpy_unless_traced("vander")
def vander(x: Any, N: Any = None, increasing: bool = False) -> Any:
    x = _as(x)
    x = astype(x, _np.promote_types(result_dtype(x), int))  # (NumPy's: float32 in float64)
    n = shape(x)[0] if N is None else int(N)
    powers = range(n) if increasing else range(n - 1, -1, -1)
    if result_dtype(x).kind in "iu":  # NumPy's integer powers, in its integer dtype
        return stack([x ** k if k else x * 0 + 1 for k in powers], axis=1)
    return stack([x ** float(k) if k else x * 0.0 + 1.0 for k in powers], axis=1)


@_numpy_unless_traced("unwrap")
def unwrap(p: Any, discont: Any = None, axis: int = -1, *, period: float = 2 * _np.pi) -> Any:
    """Removes jumps larger than period/2: the corrections are multiples of the
    period, so the derivative is p's."""
    p = _as(p)
    ax = _axis_index(axis, ndim(p))
    discont = period / 2 if discont is None else discont
    dd = stop_gradient(diff(p, axis=ax))
    high = period / 2
    ddmod = remainder(dd + high, period) - high
    ddmod = where((ddmod == -high) & (dd > 0), high, ddmod)
    correct = where(absolute(dd) < discont, 0.0, ddmod - dd)
    lead = (slice(None),) * ax
    first = p[lead + (slice(0, 1),)]
    return concatenate([first, p[lead + (slice(1, None),)] + cumsum(correct, axis=ax)], axis=ax)


@_numpy_unless_traced("i0")
def i0(x: Any) -> Any:
    from ..scipy.special import i0 as _i0
    return _i0(x)


@_numpy_unless_traced("real_if_close")
def real_if_close(a: Any, tol: float = 100) -> Any:
    if not iscomplexobj(a):
        return a
    eps = _np.finfo(_float_dtype(real(a))).eps
    limit = tol * eps if tol > 1 else tol
    small = _concrete(absolute(imag(a)) < limit)
    return real(a) if small.all() else a


@_numpy_unless_traced("matvec")
def matvec(x1: Any, x2: Any, /, **kw: Any) -> Any:
    return matmul(x1, expand_dims(_as(x2), -1))[..., 0]


@_numpy_unless_traced("vecmat")
def vecmat(x1: Any, x2: Any, /, **kw: Any) -> Any:
    return matmul(expand_dims(conjugate(_as(x1)), -2), x2)[..., 0, :]


@_numpy_unless_traced("vecdot")
def vecdot(x1: Any, x2: Any, /, *, axis: int = -1, **kw: Any) -> Any:
    return sum(multiply(conjugate(_as(x1)), x2), axis=axis)


