"""Special functions (scipy.special), as elementwise primitives.

Declared like `elementwise`: one linear map ``d(g, ans, *args, **params)``
per argument serves as VJP and JVP, binary and ternary rules see arguments
un-broadcast.  Rules are written with these same primitives (gammaln'
is digamma, digamma' is polygamma(1, .), ...), so every order traces.

Arguments that have no derivative rule here (the shape parameter ``a`` of
the regularized incomplete gamma function, the orders of Bessel functions,
``n`` of polygamma) raise NotImplementedError when a derivative with respect
to them is asked for, never a silent zero.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.special as sc

from .elementwise import _binary_vjps, elementwise_rules, no_rule
from ..core.registry import defjvp, defprim, defvjp, registry
from .numpy_proxy import fnp

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _call(name, *args, **params):
    from ..core.tracer import bind
    return bind(registry[name], *args, **params)


def _float_like(fn):
    """fn, with results of the arguments' float dtype as NumPy's own ufuncs
    give (Python floats weak): some of SciPy's functions are float64 only, and
    its ufuncs promote a 0-d float32 array met with a Python float."""
    def impl(*args, **params):
        out = fn(*args, **params)
        dtype = np.result_type(*[np.asarray(a) if isinstance(a, (list, tuple)) else a
                                 for a in args])  # (lists: NumPy's array_like)
        if dtype.kind != "f" or np.result_type(out) == dtype:
            return out
        return np.asarray(out).astype(dtype)[()]
    impl.__name__ = getattr(fn, "__name__", "impl")
    return impl


def _polygamma(x, n):
    return sc.psi(x) if n == 0 else sc.polygamma(n, x)


_BESSEL_IV = {0: sc.i0, 1: sc.i1}
_BESSEL_IVE = {0: sc.i0e, 1: sc.i1e}


def _iv(x, v):
    f = _BESSEL_IV.get(v)
    return f(x) if f is not None else sc.iv(v, x)


def _ive(x, v):
    f = _BESSEL_IVE.get(v)
    return f(x) if f is not None else sc.ive(v, x)



def _gauss(x):
    return fnp.exp(-0.5 * fnp.square(x)) * (1.0 / _SQRT_2PI)


# name: (implementation, d(g, ans, x, **params)); params are keyword-only
UNARY = {
    "gammaln":   (sc.gammaln, lambda g, ans, x: g * _call("polygamma", x, n=0)),
    "gamma":     (sc.gamma, lambda g, ans, x: g * ans * _call("polygamma", x, n=0)),
    "polygamma": (_polygamma, lambda g, ans, x, n: g * _call("polygamma", x, n=n + 1)),
    "erf":       (sc.erf, lambda g, ans, x: g * (2.0 / _SQRT_PI) * fnp.exp(-fnp.square(x))),
    "erfc":      (sc.erfc, lambda g, ans, x: g * (-2.0 / _SQRT_PI) * fnp.exp(-fnp.square(x))),
    "erfinv":    (sc.erfinv, lambda g, ans, x: g * (0.5 * _SQRT_PI) * fnp.exp(fnp.square(ans))),
    "erfcinv":   (sc.erfcinv, lambda g, ans, x: g * (-0.5 * _SQRT_PI) * fnp.exp(fnp.square(ans))),
    "expit":     (sc.expit, lambda g, ans, x: g * ans * (1.0 - ans)),
    "log_expit": (sc.log_expit, lambda g, ans, x: g * _call("expit", -x)),
    "logit":     (sc.logit, lambda g, ans, x: g / (x * (1.0 - x))),
    "ndtr":      (sc.ndtr, lambda g, ans, x: g * _gauss(x)),
    "log_ndtr":  (sc.log_ndtr, lambda g, ans, x:
                  g * fnp.exp(-0.5 * fnp.square(x) - ans) * (1.0 / _SQRT_2PI)),
    "ndtri":     (sc.ndtri, lambda g, ans, x: g * _SQRT_2PI * fnp.exp(0.5 * fnp.square(ans))),
    "exp1":      (sc.exp1, lambda g, ans, x: -g * fnp.exp(-x) / x),
    "expi":      (sc.expi, lambda g, ans, x: g * fnp.exp(x) / x),
    "erfcx":     (sc.erfcx, lambda g, ans, x: g * (2.0 * x * ans - 2.0 / _SQRT_PI)),
    # I_v' = (I_{v-1} + I_{v+1}) / 2; the exponentially scaled form also
    # differentiates its factor exp(-|x|).
    "iv":        (_iv, lambda g, ans, x, v:
                  g * 0.5 * (_call("iv", x, v=v - 1) + _call("iv", x, v=v + 1))),
    "ive":       (_ive, lambda g, ans, x, v:
                  g * (0.5 * (_call("ive", x, v=v - 1) + _call("ive", x, v=v + 1))
                       - fnp.sign(x) * ans)),
    # K_v' = -(K_{v-1} + K_{v+1}) / 2; kve = kv exp(x) adds its factor's derivative
    "kv":        (lambda x, v: sc.kv(v, x), lambda g, ans, x, v:
                  g * -0.5 * (_call("kv", x, v=v - 1) + _call("kv", x, v=v + 1))),
    "kve":       (lambda x, v: sc.kve(v, x), lambda g, ans, x, v:
                  g * (ans - 0.5 * (_call("kve", x, v=v - 1) + _call("kve", x, v=v + 1)))),
    # spence(z) = integral from 1 to z of log(t) / (1 - t): its integrand, -1 at z = 1
    "spence":    (sc.spence, lambda g, ans, x: g * fnp.where(
                  x == 1.0, -1.0, fnp.log(x) / (1.0 - fnp.where(x == 1.0, 0.0, x)))),
    "dawsn":     (sc.dawsn, lambda g, ans, x: g * (1.0 - 2.0 * x * ans)),
    # the sine and cosine integrals and Fresnel's: their integrands
    "sinint":    (lambda x: sc.sici(x)[0], lambda g, ans, x: g * fnp.sinc(x / math.pi)),
    "cosint":    (lambda x: sc.sici(x)[1], lambda g, ans, x: g * fnp.cos(x) / x),
    "fresnel_s": (lambda x: sc.fresnel(x)[0],
                  lambda g, ans, x: g * fnp.sin(0.5 * math.pi * fnp.square(x))),
    "fresnel_c": (lambda x: sc.fresnel(x)[1],
                  lambda g, ans, x: g * fnp.cos(0.5 * math.pi * fnp.square(x))),
    # E_n' = -E_{n-1} (n >= 1); E_0(x) = exp(-x) / x, whose derivative is -E_0 (1 + 1/x)
    "expn":      (lambda x, n: sc.expn(n, x) if n > 0 else np.exp(-x) / x, lambda g, ans, x, n:
                  g * (-_call("expn", x, n=n - 1) if n > 0 else -ans * (1.0 + 1.0 / x))),
}


def _digamma_difference(a, b):
    return _call("polygamma", a, n=0) - _call("polygamma", a + b, n=0)


def _gammainc_dx(g, ans, a, x):
    return g * fnp.exp((a - 1.0) * fnp.log(x) - x - _call("gammaln", a))


def _stdtr_dt(g, ans, df, t):
    log_pdf = (_call("gammaln", 0.5 * (df + 1.0)) - _call("gammaln", 0.5 * df)
               - 0.5 * fnp.log(df * math.pi)
               - 0.5 * (df + 1.0) * fnp.log1p(fnp.square(t) / df))
    return g * fnp.exp(log_pdf)


# name: (implementation, d/dx, d/dy)
BINARY = {
    "xlogy":     (sc.xlogy, lambda g, ans, x, y: g * fnp.log(y),
                  lambda g, ans, x, y: g * x / y),
    "xlog1py":   (sc.xlog1py, lambda g, ans, x, y: g * fnp.log1p(y),
                  lambda g, ans, x, y: g * x / (1.0 + y)),
    "betaln":    (sc.betaln, lambda g, ans, a, b: g * _digamma_difference(a, b),
                  lambda g, ans, a, b: g * _digamma_difference(b, a)),
    "beta":      (sc.beta, lambda g, ans, a, b: g * ans * _digamma_difference(a, b),
                  lambda g, ans, a, b: g * ans * _digamma_difference(b, a)),
    "gammainc":  (sc.gammainc, no_rule("gammainc with respect to a"), _gammainc_dx),
    "gammaincc": (sc.gammaincc, no_rule("gammaincc with respect to a"),
                  lambda g, ans, a, x: -_gammainc_dx(g, ans, a, x)),
    "stdtr":     (sc.stdtr, no_rule("stdtr with respect to df"), _stdtr_dt),
    # Hurwitz zeta(s, q): d/dq = -s zeta(s + 1, q)
    "zeta":      (sc.zeta, no_rule("zeta with respect to s"),
                  lambda g, ans, s, q: -g * s * _call("zeta", s + 1.0, q)),
    # the Bessel functions with their order v an operand (traced: a compiled
    # function's argument), as SciPy's iv(v, x); no derivative in v
    "iv_v":      (sc.iv, no_rule("iv with respect to its order"), lambda g, ans, v, x:
                  g * 0.5 * (_call("iv_v", v - 1.0, x) + _call("iv_v", v + 1.0, x))),
    "ive_v":     (sc.ive, no_rule("ive with respect to its order"), lambda g, ans, v, x:
                  g * (0.5 * (_call("ive_v", v - 1.0, x) + _call("ive_v", v + 1.0, x))
                       - fnp.sign(x) * ans)),
    "kv_v":      (sc.kv, no_rule("kv with respect to its order"), lambda g, ans, v, x:
                  g * -0.5 * (_call("kv_v", v - 1.0, x) + _call("kv_v", v + 1.0, x))),
    "kve_v":     (sc.kve, no_rule("kve with respect to its order"), lambda g, ans, v, x:
                  g * (ans - 0.5 * (_call("kve_v", v - 1.0, x) + _call("kve_v", v + 1.0, x)))),
    # Owen's T(h, a): dT/dh = -phi(h) erf(a h / sqrt 2) / 2, dT/da the integrand at a
    "owens_t":   (sc.owens_t, lambda g, ans, h, a: -0.5 * g * _gauss(h) * _call(
                  "erf", a * h * (1.0 / math.sqrt(2.0))),
                  lambda g, ans, h, a: g * fnp.exp(-0.5 * fnp.square(h) * (1.0 + fnp.square(a)))
                  / (2.0 * math.pi * (1.0 + fnp.square(a)))),
}


def _betainc_dx(g, ans, a, b, x):
    return g * fnp.exp((a - 1.0) * fnp.log(x) + (b - 1.0) * fnp.log1p(-x)
                       - _call("betaln", a, b))


def _ternary_vjp(d, argnum):
    def vjp(g, ans, *args):
        return fnp.unbroadcast(d(g, ans, *args), fnp.shape(args[argnum]))
    return vjp


# name: (implementation, d/da, d/db, d/dx)
TERNARY = {
    "betainc": (sc.betainc, no_rule("betainc with respect to a"),
                no_rule("betainc with respect to b"), _betainc_dx),
    # d/dx 1F1(a; b; x) = a / b 1F1(a + 1; b + 1; x)
    "hyp1f1":  (sc.hyp1f1, no_rule("hyp1f1 with respect to a"),
                no_rule("hyp1f1 with respect to b"),
                lambda g, ans, a, b, x: g * a / b * _call("hyp1f1", a + 1.0, b + 1.0, x)),
}

# Every special function is elementwise and costs a library call per element;
# its shape rule accepts the orders (keyword parameters).
_TRAITS = {"cost": "transcendental", "elementwise": True}

for _name, (_impl, _d) in UNARY.items():
    _p = elementwise_rules(defprim(_name, _float_like(_impl), 1, **_TRAITS), params=True)
    defvjp(_p, _d)
    defjvp(_p, _d)
    _p.elementwise_partials = [_d]

for _name, (_impl, _dx, _dy) in BINARY.items():
    _p = elementwise_rules(defprim(_name, _float_like(_impl), 2, **_TRAITS), params=True)
    defvjp(_p, *_binary_vjps(_dx, _dy))
    defjvp(_p, _dx, _dy)
    _p.elementwise_partials = [_dx, _dy]

for _name, (_impl, *_ds) in TERNARY.items():
    _p = elementwise_rules(defprim(_name, _float_like(_impl), 3, **_TRAITS), params=True)
    defvjp(_p, *(_ternary_vjp(d, k) for k, d in enumerate(_ds)))
    defjvp(_p, *_ds)
    _p.elementwise_partials = list(_ds)

ELEMENTWISE = set(UNARY) | set(BINARY) | set(TERNARY)
