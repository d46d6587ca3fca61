"""scipy.special, differentiable.  Each function is a primitive of
`fastad.primitives.special` or a composite of primitives."""
from __future__ import annotations

from typing import Any

import numpy as _np
import scipy.special as _sc

from .. import numpy as fnp
from ..core.registry import registry
from ..core.tracer import bind


def _unary(name: str, **params: Any):
    prim = registry[name]

    def fn(x: Any) -> Any:
        return bind(prim, x, **params)
    return fn


def _binary(name: str):
    prim = registry[name]

    def fn(x: Any, y: Any) -> Any:
        return bind(prim, x, y)
    return fn


def _order(v: Any, name: str) -> float:
    if hasattr(v, "builder"):
        raise NotImplementedError(f"{name}: the order must be a constant, not a traced value")
    v = _np.asarray(v)
    if v.ndim:
        raise NotImplementedError(f"{name}: the order must be a scalar")
    return int(v) if float(v).is_integer() else float(v)


gammaln = _unary("gammaln")
gamma = _unary("gamma")
digamma = psi = _unary("polygamma", n=0)
erf = _unary("erf")
erfc = _unary("erfc")
erfinv = _unary("erfinv")
erfcinv = _unary("erfcinv")
expit = _unary("expit")
log_expit = _unary("log_expit")
logit = _unary("logit")
ndtr = _unary("ndtr")
log_ndtr = _unary("log_ndtr")
ndtri = _unary("ndtri")
i0 = _unary("iv", v=0)
i1 = _unary("iv", v=1)
i0e = _unary("ive", v=0)
i1e = _unary("ive", v=1)
xlogy = _binary("xlogy")
xlog1py = _binary("xlog1py")
beta = _binary("beta")
betaln = _binary("betaln")
gammainc = _binary("gammainc")
gammaincc = _binary("gammaincc")
stdtr = _binary("stdtr")


def polygamma(n: Any, x: Any) -> Any:
    """The n-th derivative of digamma; n a constant non-negative integer."""
    n = _order(n, "polygamma")
    if not isinstance(n, int) or n < 0:
        raise ValueError("polygamma: n must be a non-negative integer")
    return bind(registry["polygamma"], x, n=n)


def iv(v: Any, x: Any) -> Any:
    """Modified Bessel function of the first kind of constant order v."""
    return bind(registry["iv"], x, v=_order(v, "iv"))


def ive(v: Any, x: Any) -> Any:
    """iv(v, x) * exp(-|x|), for constant order v."""
    return bind(registry["ive"], x, v=_order(v, "ive"))


def betainc(a: Any, b: Any, x: Any) -> Any:
    """Regularized incomplete beta function (differentiable in x)."""
    return bind(registry["betainc"], a, b, x)


def logsumexp(a: Any, axis: Any = None, b: Any = None, keepdims: bool = False,
              return_sign: bool = False) -> Any:
    """log(sum(b * exp(a))), computed stably; the shift by max carries no gradient."""
    if b is None and not return_sign:
        return fnp.logsumexp(a, axis=axis, keepdims=keepdims)
    if b is not None:
        a, b = fnp.broadcast_arrays(a, b)
    axes = fnp._axes(axis, fnp.ndim(a))
    m = fnp.stop_gradient(fnp.max(a, axis=axes, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    terms = fnp.exp(a - m)
    total = fnp.sum(terms if b is None else b * terms, axis=axes, keepdims=True)
    out = fnp.log(fnp.abs(total)) + m
    sign = fnp.sign(total)
    if not keepdims:
        out, sign = fnp.squeeze(out, axis=axes), fnp.squeeze(sign, axis=axes)
    return (out, sign) if return_sign else out


def softmax(x: Any, axis: Any = None) -> Any:
    return fnp.exp(log_softmax(x, axis=axis))


def log_softmax(x: Any, axis: Any = None) -> Any:
    return x - fnp.logsumexp(x, axis=axis, keepdims=True)


def softplus(x: Any) -> Any:
    return fnp.logaddexp(0.0, x)


def entr(x: Any) -> Any:
    """-x log x for x > 0, 0 at 0 (-inf below)."""
    return -xlogy(x, x)


def rel_entr(x: Any, y: Any) -> Any:
    """x log(x / y) for x, y > 0 (0 where x == 0)."""
    return xlogy(x, x) - xlogy(x, y)


# SciPy's ufuncs met in ``__array_ufunc__``: the fastad function for each.
UFUNCS = {
    _sc.gammaln: gammaln, _sc.gamma: gamma, _sc.psi: digamma, _sc.erf: erf, _sc.erfc: erfc,
    _sc.erfinv: erfinv, _sc.erfcinv: erfcinv, _sc.expit: expit, _sc.log_expit: log_expit,
    _sc.logit: logit, _sc.ndtr: ndtr, _sc.log_ndtr: log_ndtr, _sc.ndtri: ndtri, _sc.i0: i0,
    _sc.i1: i1, _sc.i0e: i0e, _sc.i1e: i1e, _sc.iv: iv, _sc.ive: ive, _sc.xlogy: xlogy,
    _sc.xlog1py: xlog1py, _sc.beta: beta, _sc.betaln: betaln, _sc.gammainc: gammainc,
    _sc.gammaincc: gammaincc, _sc.stdtr: stdtr, _sc.betainc: betainc, _sc.entr: entr,
    _sc.rel_entr: rel_entr,
}
