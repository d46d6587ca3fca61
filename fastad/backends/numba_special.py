"""scipy.special's most used functions for the generated Numba code.

The same functions as the C VM's (csrc/special.h), written once more for
Numba, formula for formula: SciPy's definitions and edge values, a float32
argument computed in float64 and rounded once where SciPy does so (erf,
erfc, ndtr, gammaln, psi) and in float32 arithmetic where SciPy's templates
do (expit, log_expit, logit, xlogy, xlog1py).  Each function exists per
dtype, named ``<name>_<dtype>`` (``expit_float32``), so a float32 result
stays float32 in the generated code (`numba_tables.SPECIAL_FUNCTIONS` names
them; the generator imports the ones a kernel calls).

They are pure (no global state): kernels run without the GIL, several at
once.  gammaln calls the C library's lgamma_r through `_lgamma_r`, since
lgamma, which Numba's math.lgamma calls, writes the global signgam.

A kernel cached on disk holds their compiled code: a change here must change
`numba_source._FORMAT`.
"""
from __future__ import annotations

import math
import sys

import numpy as np
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

_PI = math.pi
_EULER = 0.57721566490153286061
_SQRT1_2 = 0.70710678118654752440
_MAXLGM = 2.556348e305  # cephes: SciPy's gammaln is inf above it
# psi's asymptotic series, and its rational approximation on [1, 2] about
# the positive root (cephes, from Boost), as csrc/special.h
_ASY = (8.33333333333333333333E-2, -2.10927960927960927961E-2, 7.57575757575757575758E-3,
        -4.16666666666666666667E-3, 3.96825396825396825397E-3, -8.33333333333333333333E-3,
        8.33333333333333333333E-2)
_P = (-0.0020713321167745952, -0.045251321448739056, -0.28919126444774784,
      -0.65031853770896507, -0.32555031186804491, 0.25479851061131551)
_Q = (-0.55789841321675513e-6, 0.0021284987017821144, 0.054151797245674225,
      0.43593529692665969, 1.4606242909763515, 2.0767117023730469, 1.0)
_ROOT1 = 1569415565.0 / 1073741824.0
_ROOT2 = (381566830.0 / 1073741824.0) / 1073741824.0
_ROOT3 = 0.9016312093258695918615325266959189453125e-19
_Y = float(np.float32(0.99558162689208984))

_OPTIONS = {"nogil": True, "error_model": "numpy"}


@intrinsic
def _lgamma_r(typingctx, x):  # noqa: ARG001 (Numba's signature)
    """log|Gamma(x)| by the C library's lgamma_r (the sign into a local)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        from llvmlite import ir
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.IntType(32).as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "lgamma_r")
        sign = cgutils.alloca_once(builder, ir.IntType(32))
        return builder.call(fn, [context.cast(builder, args[0], sig.args[0], types.float64), sign])
    return types.float64(x), codegen


if sys.platform == "win32":  # no lgamma_r: the C library's lgamma (its sign global unused)
    @njit(**_OPTIONS)
    def _log_abs_gamma(x):
        return math.lgamma(x)
else:
    @njit(**_OPTIONS)
    def _log_abs_gamma(x):
        return _lgamma_r(x)


@njit(**_OPTIONS)
def erf_float64(x):
    return math.erf(np.float64(x))


@njit(**_OPTIONS)
def erfc_float64(x):
    return math.erfc(np.float64(x))


@njit(**_OPTIONS)
def ndtr_float64(a):
    """cephes' ndtr, branch for branch (special.h)."""
    a = np.float64(a)
    if a != a:
        return a
    x = a * _SQRT1_2
    z = abs(x)
    if z < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(x)
    y = 0.5 * math.erfc(z)
    return 1.0 - y if x > 0 else y


@njit(**_OPTIONS)
def gammaln_float64(x):
    x = np.float64(x)
    if math.isinf(x):
        return x  # cephes: -inf stays -inf
    if x > _MAXLGM or math.isinf(1.0 / x):  # cephes: its 1/x overflows near 0
        return math.inf
    return _log_abs_gamma(x)


@njit(**_OPTIONS)
def _polevl(x, c):
    r = c[0]
    for i in range(1, len(c)):
        r = r * x + c[i]
    return r


@njit(**_OPTIONS)
def digamma_float64(x):
    """cephes' psi (special.h has the same lines and says why)."""
    x = np.float64(x)
    y = 0.0
    if x != x or x == math.inf:
        return x
    if x == -math.inf:
        return math.nan
    if x == 0:
        return math.copysign(math.inf, -x)
    if x < 0:
        r = x - np.trunc(x)  # modf's fractional part, exact
        if r == 0:
            return math.nan
        y = -_PI / math.tan(_PI * r)
        x = 1.0 - x
    if x <= 10.0 and x == math.floor(x):
        for i in range(1, int(x)):
            y += 1.0 / i
        return y - _EULER
    if x < 1.0:
        y -= 1.0 / x
        x += 1.0
    elif x < 10.0:
        while x > 2.0:
            x -= 1.0
            y += 1.0 / x
    if 1.0 <= x <= 2.0:
        g = x - _ROOT1
        g -= _ROOT2
        g -= _ROOT3
        r = _polevl(x - 1.0, _P) / _polevl(x - 1.0, _Q)
        return y + (g * _Y + g * r)
    s = 0.0
    if x < 1.0e17:
        z = 1.0 / (x * x)
        s = z * _polevl(z, _ASY)
    return y + (math.log(x) - 0.5 / x - s)


def _rounded(f64):
    """The float32 form of a function SciPy computes in float64."""
    @njit(**_OPTIONS)
    def f32(x):
        return np.float32(f64(np.float64(x)))
    return f32


erf_float32 = _rounded(erf_float64)
erfc_float32 = _rounded(erfc_float64)
ndtr_float32 = _rounded(ndtr_float64)
gammaln_float32 = _rounded(gammaln_float64)
digamma_float32 = _rounded(digamma_float64)


def _in_precision(T):
    """expit, log_expit, logit, xlogy and xlog1py in the arithmetic of T
    (SciPy's templates; special.h's float and double forms)."""
    one, zero = T(1), T(0)

    @njit(**_OPTIONS)
    def expit(x):
        x = T(x)
        return one / (one + math.exp(-x))

    @njit(**_OPTIONS)
    def log_expit(x):
        x = T(x)
        return x - math.log1p(math.exp(x)) if x < 0 else -math.log1p(math.exp(-x))

    @njit(**_OPTIONS)
    def logit(p):
        p = T(p)
        if p < 0.3 or p > 0.65:  # (compared in float64, as SciPy's float template)
            return math.log(p / (one - p))
        s = T(2.0 * (np.float64(p) - 0.5))
        return math.log1p(s) - math.log1p(-s)

    @njit(**_OPTIONS)
    def xlogy(x, y):
        x, y = T(x), T(y)
        return zero if x == 0 and y == y else x * math.log(y)

    @njit(**_OPTIONS)
    def xlog1py(x, y):
        x, y = T(x), T(y)
        return zero if x == 0 and y == y else x * math.log1p(y)

    return expit, log_expit, logit, xlogy, xlog1py


(expit_float64, log_expit_float64, logit_float64, xlogy_float64,
 xlog1py_float64) = _in_precision(np.float64)
(expit_float32, log_expit_float32, logit_float32, xlogy_float32,
 xlog1py_float32) = _in_precision(np.float32)
