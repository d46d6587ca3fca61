"""``jax.lax``'s elementwise functions under their lax names, on top of
`fastad.numpy` and `fastad.scipy.special`: each is differentiable where JAX's
is.  Operands are promoted as NumPy promotes them (``lax.add`` of float32 and
float64 gives float64 here; JAX refuses mixed dtypes)."""
from __future__ import annotations

import enum
from typing import Any

import numpy as _np

from .. import numpy as fnp
from ..core.tracer import Tracer
from ..scipy import special as _special

__all__ = [
    "logistic", "rsqrt", "integer_pow", "square", "exp", "exp2", "log", "log1p", "expm1",
    "tanh", "sin", "cos", "tan", "sinh", "cosh", "asin", "acos", "atan", "asinh", "acosh",
    "atanh", "atan2", "sqrt", "cbrt", "abs", "neg", "sign", "reciprocal", "max", "min", "pow",
    "add", "sub", "mul", "div", "rem", "clamp", "floor", "ceil", "round", "RoundingMethod",
    "is_finite", "nextafter", "real", "imag", "conj", "complex", "erf", "erfc", "erf_inv",
    "lgamma", "digamma", "polygamma", "igamma", "igammac", "zeta", "bessel_i0e", "bessel_i1e",
    "betainc", "eq", "ne", "lt", "le", "gt", "ge", "bitwise_and", "bitwise_or", "bitwise_not",
    "bitwise_xor", "shift_left", "shift_right_logical", "shift_right_arithmetic",
    "population_count", "clz", "convert_element_type", "select", "select_n",
    "optimization_barrier", "reduce_precision",
]

logistic, erf, erfc, erf_inv = _special.expit, _special.erf, _special.erfc, _special.erfinv
lgamma, digamma, polygamma = _special.gammaln, _special.digamma, _special.polygamma
igamma, igammac, betainc = _special.gammainc, _special.gammaincc, _special.betainc
zeta = _special.zeta  # Hurwitz's, differentiable in q
bessel_i0e, bessel_i1e = _special.i0e, _special.i1e

square, exp, exp2, log, log1p, expm1 = (fnp.square, fnp.exp, fnp.exp2, fnp.log, fnp.log1p,
                                        fnp.expm1)
sin, cos, tan, tanh, sinh, cosh = fnp.sin, fnp.cos, fnp.tan, fnp.tanh, fnp.sinh, fnp.cosh
asin, acos, atan, asinh, acosh, atanh = (fnp.arcsin, fnp.arccos, fnp.arctan, fnp.arcsinh,
                                         fnp.arccosh, fnp.arctanh)
atan2, sqrt, cbrt, sign = fnp.arctan2, fnp.sqrt, fnp.cbrt, fnp.sign
abs, neg = fnp.absolute, fnp.negative  # noqa: A001 - jax.lax's names
max, min, pow = fnp.maximum, fnp.minimum, fnp.power  # noqa: A001
add, sub, mul, div = fnp.add, fnp.subtract, fnp.multiply, fnp.divide
rem = fnp.fmod  # C's remainder: the sign of the dividend, as XLA's
floor, ceil, is_finite = fnp.floor, fnp.ceil, fnp.isfinite
real, imag, conj = fnp.real, fnp.imag, fnp.conjugate
eq, ne, lt, le, gt, ge = (fnp.equal, fnp.not_equal, fnp.less, fnp.less_equal, fnp.greater,
                          fnp.greater_equal)
bitwise_and, bitwise_or, bitwise_xor = fnp.bitwise_and, fnp.bitwise_or, fnp.bitwise_xor
bitwise_not = fnp.invert


def rsqrt(x: Any) -> Any:
    return 1.0 / fnp.sqrt(x)


def reciprocal(x: Any) -> Any:
    return 1.0 / x if _is_inexact(x) else fnp.floor_divide(1, x)


def integer_pow(x: Any, y: int) -> Any:
    return x ** int(y)


def clamp(min: Any, x: Any, max: Any) -> Any:  # noqa: A002 - jax.lax's argument names
    return fnp.clip(x, min, max)


def complex(x: Any, y: Any) -> Any:  # noqa: A001 - jax.lax's name
    return x + 1j * y


class RoundingMethod(enum.IntEnum):
    AWAY_FROM_ZERO = 0
    TO_NEAREST_EVEN = 1


def round(x: Any, rounding_method: Any = RoundingMethod.AWAY_FROM_ZERO) -> Any:  # noqa: A001
    """Halves away from zero (JAX's default) or to even (``TO_NEAREST_EVEN``)."""
    if RoundingMethod(int(rounding_method)) == RoundingMethod.TO_NEAREST_EVEN:
        return fnp.rint(x)
    t = fnp.trunc(x)
    return fnp.where(fnp.absolute(x - t) >= 0.5, t + fnp.sign(x), t)


def nextafter(x1: Any, x2: Any) -> Any:
    """The next float after x1 towards x2: on plain values (JAX's has no derivative)."""
    if isinstance(x1, Tracer) or isinstance(x2, Tracer):
        raise TypeError("fastad.lax.nextafter takes plain arrays, not traced values "
                        "(it has no derivative); compute it outside the traced function")
    return _np.nextafter(x1, x2)


# -- integers ---------------------------------------------------------------------------
def _int_dtype(x: Any, name: str) -> _np.dtype:
    dtype = _np.result_type(x)
    if dtype.kind not in "iu":
        raise TypeError(f"fastad.lax.{name} takes integer arrays, not {dtype}")
    return dtype


def _bits(x: Any, name: str) -> tuple[_np.dtype, int]:
    dtype = _int_dtype(x, name)
    return dtype, 8 * dtype.itemsize


def _out_of_range(y: Any, nbits: int) -> Any:
    """Shift amounts XLA reads as unsigned and at least the width: negative ones too."""
    y = fnp.asarray(y)
    return fnp.logical_or(y < 0, y >= nbits)


def shift_left(x: Any, y: Any) -> Any:
    """``x << y``; shifts by the bit width or more (or negative) give 0, as XLA's."""
    dtype, nbits = _bits(x, "shift_left")
    shifted = fnp.left_shift(x, fnp.clip(y, 0, nbits - 1).astype(dtype))
    return fnp.where(_out_of_range(y, nbits), fnp.zeros_like(shifted), shifted)


def shift_right_arithmetic(x: Any, y: Any) -> Any:
    """``x >> y`` filling with the top bit (unsigned integers too, as XLA's);
    shifts beyond the width (or negative) fill every bit."""
    dtype, nbits = _bits(x, "shift_right_arithmetic")
    k = fnp.where(_out_of_range(y, nbits), nbits - 1, fnp.clip(y, 0, nbits - 1)).astype(dtype)
    shifted = fnp.right_shift(x, k)
    if dtype.kind == "i":
        return shifted
    fill = fnp.invert(fnp.right_shift(_np.iinfo(dtype).max, k))  # the top k bits
    top = fnp.right_shift(x, _np.asarray(nbits - 1, dtype)) == 1
    return fnp.where(top, fnp.bitwise_or(shifted, fill), shifted)


def shift_right_logical(x: Any, y: Any) -> Any:
    """``x >> y`` filling with zeros, signed integers included (their bits
    read as unsigned); shifts by the width or more (or negative) give 0."""
    dtype, nbits = _bits(x, "shift_right_logical")
    k = fnp.clip(y, 1, nbits - 1).astype(dtype)
    shifted = fnp.right_shift(x, k)
    if dtype.kind == "i":  # clear the copies of the sign bit: wrapping arithmetic
        mask = fnp.left_shift(fnp.ones_like(shifted), nbits - k) - 1
        shifted = fnp.bitwise_and(shifted, mask)
    out = fnp.where(fnp.asarray(y) == 0, fnp.broadcast_to(x, fnp.shape(shifted)), shifted)
    return fnp.where(_out_of_range(y, nbits), fnp.zeros_like(out), out)


def population_count(x: Any) -> Any:
    """Set bits; a negative integer's two's complement bits (NumPy's
    bitwise_count counts those of its absolute value)."""
    dtype, nbits = _bits(x, "population_count")
    count = fnp.asarray(_np.bitwise_count(x)).astype(dtype)
    if dtype.kind == "u":
        return count
    complement = fnp.asarray(_np.bitwise_count(fnp.invert(x))).astype(dtype)
    return fnp.where(fnp.asarray(x) < 0, nbits - complement, count)


def clz(x: Any) -> Any:
    """Leading zero bits: a count of the powers of two above x, so that it
    traces as comparisons (integer data of a compiled function)."""
    dtype, nbits = _bits(x, "clz")
    top = nbits - 1 if dtype.kind == "u" else nbits - 2
    powers = _np.left_shift(_np.ones(top + 1, dtype), _np.arange(top + 1, dtype=dtype))
    below = fnp.sum(fnp.expand_dims(x, -1) < powers, axis=-1)
    if dtype.kind == "i":  # the sign bit: 1 leading zero for x >= 0, none for x < 0
        below = fnp.where(fnp.asarray(x) < 0, 0, below + 1)
    return fnp.asarray(below).astype(dtype)


# -- dtypes and selections --------------------------------------------------------------
def _is_inexact(x: Any) -> bool:
    return _np.result_type(x).kind in "fc"


def convert_element_type(operand: Any, new_dtype: Any = None) -> Any:
    """``operand`` as ``new_dtype``: complex to real keeps the real part, to
    bool is ``!= 0``, float to integer truncates (as JAX's)."""
    new = _np.dtype(new_dtype) if new_dtype is not None else _np.result_type(operand)
    x = fnp.asarray(operand)
    if new.kind == "b":
        return x != 0
    if _np.result_type(x).kind == "c" and new.kind != "c":
        x = fnp.real(x)
    return x.astype(new)


def select(pred: Any, on_true: Any, on_false: Any) -> Any:
    return fnp.where(pred, on_true, on_false)


def select_n(which: Any, *cases: Any) -> Any:
    """``cases[which]`` elementwise: ``which`` boolean (two cases) or integer."""
    if not cases:
        raise ValueError("select_n needs at least one case")
    kind = _np.result_type(which).kind
    if kind == "b" and len(cases) > 2:
        raise ValueError("select_n with a boolean `which` takes at most two cases")
    if kind not in "biu":
        raise TypeError(f"select_n: `which` must be boolean or integer, not "
                        f"{_np.result_type(which)}")
    out = cases[0]
    for i, case in enumerate(cases[1:], start=1):
        out = fnp.where(which if kind == "b" else fnp.equal(which, i), case, out)
    return out


def optimization_barrier(operand: Any) -> Any:
    """The identity (on pytrees): fastad does not reorder across it anyway."""
    return operand


def reduce_precision(operand: Any, exponent_bits: int, mantissa_bits: int) -> Any:
    """The identity where the format holds the dtype's bits; float32's
    format (8, 23) rounds through float32."""
    dtype = _np.result_type(operand)
    info = _np.finfo(dtype)
    if exponent_bits >= info.nexp and mantissa_bits >= info.nmant:
        return operand
    if (exponent_bits, mantissa_bits) == (8, 23):
        return fnp.asarray(operand).astype(_np.float32).astype(dtype)
    raise NotImplementedError(f"reduce_precision to ({exponent_bits}, {mantissa_bits}) bits: "
                              "fastad rounds to float32's (8, 23) only")
