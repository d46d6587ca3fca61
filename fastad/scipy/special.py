"""scipy.special, differentiable.  Each function is a primitive of
`fastad.primitives.special` or a composite of primitives."""
from __future__ import annotations

import functools
from typing import Any

import numpy as _np
import scipy.special as _sc

from .. import numpy as fnp
from ..core.registry import defjvp, defprim, defvjp, registry
from ..core.tracer import Tracer, bind
from ..numpy._dtypes import numpy_dtype


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
exp1 = _unary("exp1")
expi = _unary("expi")
erfcx = _unary("erfcx")
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


@numpy_dtype(_sc.polygamma)
def polygamma(n: Any, x: Any) -> Any:
    """The n-th derivative of digamma; n constant non-negative integers, a
    scalar or an array broadcast against x (as SciPy's and autograd's)."""
    if hasattr(n, "builder"):
        raise NotImplementedError("polygamma: the order must be a constant, not a traced value")
    orders = _np.asarray(n)
    if orders.ndim == 0:
        return _polygamma_of_order(_order(orders, "polygamma"), x)
    if orders.size and (not _np.all(_np.mod(orders, 1) == 0) or _np.min(orders) < 0):
        raise ValueError("polygamma: n must be non-negative integers")
    out_shape = _np.broadcast_shapes(orders.shape, fnp.shape(x))
    result = fnp.zeros(out_shape)
    for k in _np.unique(orders):  # each order once, placed where n holds it
        result = fnp.where(orders == k, _polygamma_of_order(int(k), x), result)
    return result


def _polygamma_of_order(n: Any, x: Any) -> Any:
    if not isinstance(n, int) or n < 0:
        raise ValueError("polygamma: n must be a non-negative integer")
    return bind(registry["polygamma"], x, n=n)


def iv(v: Any, x: Any) -> Any:
    """Modified Bessel function of the first kind of order v; a traced order
    (a compiled function's argument) has no derivative."""
    if hasattr(v, "builder"):
        return bind(registry["iv_v"], v, x)
    return bind(registry["iv"], x, v=_order(v, "iv"))


def ive(v: Any, x: Any) -> Any:
    """iv(v, x) * exp(-|x|); a traced order (a compiled function's argument) has no
    derivative."""
    if hasattr(v, "builder"):
        return bind(registry["ive_v"], v, x)
    return bind(registry["ive"], x, v=_order(v, "ive"))


def kv(v: Any, x: Any) -> Any:
    """Modified Bessel function of the second kind of order v; a traced order
    (a compiled function's argument) has no derivative."""
    if hasattr(v, "builder"):
        return bind(registry["kv_v"], v, x)
    return bind(registry["kv"], x, v=_order(v, "kv"))


def kve(v: Any, x: Any) -> Any:
    """kv(v, x) * exp(x); a traced order (a compiled function's argument) has no
    derivative."""
    if hasattr(v, "builder"):
        return bind(registry["kve_v"], v, x)
    return bind(registry["kve"], x, v=_order(v, "kve"))


def expn(n: Any, x: Any) -> Any:
    """The generalized exponential integral E_n(x), for a constant integer n >= 0."""
    if not isinstance(n, (int, _np.integer)) or n < 0:
        raise ValueError("expn: n must be a constant non-negative integer (its derivative in n "
                         "is not defined here)")
    return bind(registry["expn"], x, n=int(n))


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


def _shifted(x: Any, axis: Any) -> Any:
    """x minus its max along ``axis`` (0 where the max is not finite), as
    SciPy's: the outputs then carry the rounding of small numbers, not of
    logsumexp at the logits' magnitude (exp(x - logsumexp(x)) of [1e16, 1e16,
    0] is [1, 1, 0]).  The shift is a constant: neither function depends on it."""
    x = fnp.asarray(x)
    top = fnp.stop_gradient(fnp.max(x, axis=axis, keepdims=True))
    return x - fnp.where(fnp.isfinite(top), top, 0.0)


def softmax(x: Any, axis: Any = None) -> Any:
    e = fnp.exp(_shifted(x, axis))
    return e / fnp.sum(e, axis=axis, keepdims=True)


def log_softmax(x: Any, axis: Any = None) -> Any:
    t = _shifted(x, axis)
    return t - fnp.log(fnp.sum(fnp.exp(t), axis=axis, keepdims=True))


def softplus(x: Any) -> Any:
    return fnp.logaddexp(0.0, x)


def _nan_where(value: Any, *args: Any) -> Any:
    """``value`` with NaN wherever an argument is NaN (as SciPy's ufuncs give)."""
    nan = fnp.isnan(args[0])
    for a in args[1:]:
        nan = nan | fnp.isnan(a)
    return fnp.where(nan, _np.nan, value)


def entr(x: Any) -> Any:
    """-x log x for x > 0, 0 at 0, -inf below (NaN at NaN)."""
    x = fnp.asarray(x)  # (a list too)
    pos = x > 0
    safe = fnp.where(pos, x, 1.0)
    return _nan_where(fnp.where(pos, -safe * fnp.log(safe), fnp.where(x == 0, 0.0, -fnp.inf)),
                      x)


def rel_entr(x: Any, y: Any) -> Any:
    """x log(x / y) for x, y > 0, 0 where x == 0 and y >= 0, inf elsewhere."""
    x, y = fnp.asarray(x), fnp.asarray(y)  # (lists too)
    inside = (x > 0) & (y > 0)
    xs, ys = fnp.where(inside, x, 1.0), fnp.where(inside, y, 1.0)
    return _nan_where(fnp.where(inside, xs * fnp.log(xs / ys),
                                fnp.where((x == 0) & (y >= 0), 0.0, fnp.inf)), x, y)


def kl_div(x: Any, y: Any) -> Any:
    """x log(x / y) - x + y for x, y > 0, y at x == 0 (inf elsewhere, as SciPy's)."""
    x, y = fnp.asarray(x), fnp.asarray(y)  # (lists too)
    inside = (x > 0) & (y > 0)
    edge = (x == 0) & (y >= 0)
    value = rel_entr(fnp.where(inside, x, 1.0), fnp.where(inside, y, 1.0)) - x + y
    return _nan_where(fnp.where(inside, value, fnp.where(edge, y, fnp.inf)), x, y)


def huber(delta: Any, r: Any) -> Any:
    """r^2 / 2 where |r| <= delta, delta (|r| - delta / 2) beyond (inf for delta < 0)."""
    small = fnp.abs(r) <= delta
    out = fnp.where(small, 0.5 * fnp.square(r), delta * (fnp.abs(r) - 0.5 * delta))
    return fnp.where(delta < 0, fnp.inf, out)


def pseudo_huber(delta: Any, r: Any) -> Any:
    """delta^2 (sqrt(1 + (r / delta)^2) - 1), as expm1(log1p(v^2) / 2) for
    precision at small r / delta (inf for delta < 0, 0 at delta == 0 or r == 0)."""
    delta, r = fnp.asarray(delta), fnp.asarray(r)  # (lists too)
    off = (delta < 0) | (delta == 0) | (r == 0)
    safe = fnp.where(off, 1.0, delta)
    v = r / safe
    out = fnp.square(safe) * fnp.expm1(0.5 * fnp.log1p(fnp.square(v)))
    return fnp.where(delta < 0, fnp.inf, fnp.where(off, 0.0, out))


def boxcox(x: Any, lmbda: Any) -> Any:
    """(x^lmbda - 1) / lmbda, log x where |lmbda| < 1e-19 (SciPy's cut)."""
    x, lmbda = fnp.asarray(x), fnp.asarray(lmbda)  # (lists too)
    small = fnp.abs(lmbda) < 1e-19
    safe = fnp.where(small, 1.0, lmbda)
    lx = fnp.log(x)
    return fnp.where(small, lx, fnp.expm1(safe * lx) / safe)


def boxcox1p(x: Any, lmbda: Any) -> Any:
    """((1 + x)^lmbda - 1) / lmbda, log1p x where lmbda or log1p x is tiny (SciPy's cuts)."""
    x, lmbda = fnp.asarray(x), fnp.asarray(lmbda)  # (lists too)
    lx = fnp.log1p(x)
    small = (fnp.abs(lmbda) < 1e-19) | ((fnp.abs(lx) < 1e-289) & (fnp.abs(lmbda) < 1e273))
    safe = fnp.where(small, 1.0, lmbda)
    return fnp.where(small, lx, fnp.expm1(safe * lx) / safe)


def inv_boxcox(y: Any, lmbda: Any) -> Any:
    """(1 + lmbda y)^(1 / lmbda), exp y at lmbda == 0."""
    y, lmbda = fnp.asarray(y), fnp.asarray(lmbda)  # (lists too)
    zero = lmbda == 0
    safe = fnp.where(zero, 1.0, lmbda)
    return fnp.where(zero, fnp.exp(y), fnp.exp(fnp.log1p(safe * y) / safe))


def inv_boxcox1p(y: Any, lmbda: Any) -> Any:
    """(1 + lmbda y)^(1 / lmbda) - 1: expm1 y at lmbda == 0, y where log1p(lmbda y)
    is below 1e-154 (SciPy's cut)."""
    y, lmbda = fnp.asarray(y), fnp.asarray(lmbda)  # (lists too)
    zero = lmbda == 0
    safe = fnp.where(zero, 1.0, lmbda)
    lx = fnp.log1p(safe * y)
    return fnp.where(zero, fnp.expm1(y),
                     fnp.where(fnp.abs(lx) < 1e-154, y, fnp.expm1(lx / safe)))


def cosm1(x: Any) -> Any:
    """cos(x) - 1, accurate near 0: -2 sin(x / 2)^2."""
    return -2.0 * fnp.square(fnp.sin(0.5 * x))


def powm1(x: Any, y: Any) -> Any:
    """x^y - 1, accurate near y log x == 0: 0 at y == 0 or x == 1 (NaN or not),
    expm1(y log x) for x > 0, |x|^y - 1 at x == 0, x^y - 1 for x < 0 and an
    integer y (NaN for any other y)."""
    x, y = fnp.asarray(x), fnp.asarray(y)  # (lists too)
    pos = x > 0
    safe = fnp.where(pos, x, 1.0)
    integer = fnp.isfinite(y) & (fnp.floor(y) == y)
    out = fnp.where(pos, fnp.expm1(y * fnp.log(safe)),
                    fnp.where(x == 0, fnp.power(fnp.abs(x), y) - 1.0,
                              fnp.where(integer, fnp.power(x, y) - 1.0, _np.nan)))
    return fnp.where((y == 0) | (x == 1), 0.0, _nan_where(out, x, y))


def exprel(x: Any) -> Any:
    """(exp(x) - 1) / x; near 0 its series, so that its derivative there is 1/2;
    inf above 717 (SciPy's cut, where expm1 overflows)."""
    x = fnp.asarray(x)  # (a list too)
    near = fnp.abs(x) < 1e-3
    safe = fnp.where(near | (x > 717.0), 1.0, x)
    series = 1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0)))
    return fnp.where(near, series, fnp.where(x > 717.0, fnp.inf, fnp.expm1(safe) / safe))


def exp10(x: Any) -> Any:
    return fnp.power(10.0, x)


# -- Bessel functions of constant order, gammasgn, rgamma: primitives of their own,
# which compiled functions run as NumPy calls between compiled segments
def _bessel_impl(kind: str):
    first, second, integer, real = {"j": (_sc.j0, _sc.j1, _sc.jn, _sc.jv),
                                     "y": (_sc.y0, _sc.y1, _sc.yn, _sc.yv)}[kind]

    def impl(x: Any, n: int | float) -> Any:
        if isinstance(n, float):
            return real(n, x)
        return first(x) if n == 0 else second(x) if n == 1 else integer(n, x)
    return impl


def _host_primitive(name: str, impl: Any, differentiable: bool = True) -> Any:
    prim = defprim(f"scipy.special.{name}", impl, 1, differentiable, cost="transcendental",
                   elementwise=True)
    prim.builtin = False
    return prim


_JN = _host_primitive("jn", _bessel_impl("j"))
_YN = _host_primitive("yn", _bessel_impl("y"))


def _bessel_slope(prim: Any, x: Any, n: int | float) -> Any:
    """d/dx Z_v = (Z_{v-1} - Z_{v+1}) / 2 for any real order v; Z_{-1} = -Z_1
    keeps integer orders on the integer-order functions."""
    lower = bind(prim, x, n=n - 1) if n else -bind(prim, x, n=1)
    return 0.5 * (lower - bind(prim, x, n=n + 1))


for _prim in (_JN, _YN):
    defvjp(_prim, (lambda p: lambda g, ans, x, n: g * _bessel_slope(p, x, n))(_prim))
    defjvp(_prim, (lambda p: lambda t, ans, x, n: t * _bessel_slope(p, x, n))(_prim))


def _integer_order(n: Any, name: str) -> int:
    n = _order(n, name)
    if not isinstance(n, int):
        raise ValueError(f"{name}: the order must be an integer")
    return n


def jv(v: Any, x: Any) -> Any:
    """Bessel function of the first kind of constant real order v (SciPy's
    ``jn`` is this function)."""
    return bind(_JN, x, n=_order(v, "jv"))


jn = jv


def yn(n: Any, x: Any) -> Any:
    """Bessel function of the second kind of constant integer order n."""
    return bind(_YN, x, n=_integer_order(n, "yn"))


def yv(v: Any, x: Any) -> Any:
    """Bessel function of the second kind of constant real order v."""
    return bind(_YN, x, n=_order(v, "yv"))


def j0(x: Any) -> Any:
    return bind(_JN, x, n=0)


def j1(x: Any) -> Any:
    return bind(_JN, x, n=1)


def y0(x: Any) -> Any:
    return bind(_YN, x, n=0)


def y1(x: Any) -> Any:
    return bind(_YN, x, n=1)


_GAMMASGN = _host_primitive("gammasgn", _sc.gammasgn, differentiable=False)
_RGAMMA = _host_primitive("rgamma", _sc.rgamma)
defvjp(_RGAMMA, lambda g, ans, x: -g * digamma(x) * ans)
defjvp(_RGAMMA, lambda t, ans, x: -t * digamma(x) * ans)


# SciPy's value: its limits at the poles of gamma (a negative integer z:
# poch(-30, 1) = -30) are no quotient of gammas
_POCH = defprim("scipy.special.poch", _sc.poch, 2, cost="transcendental", elementwise=True)
_POCH.builtin = False
defvjp(_POCH, lambda g, ans, z, m: g * ans * (digamma(z + m) - digamma(z)),
       lambda g, ans, z, m: g * ans * digamma(z + m))
defjvp(_POCH, lambda t, ans, z, m: t * ans * (digamma(z + m) - digamma(z)),
       lambda t, ans, z, m: t * ans * digamma(z + m))


def poch(z: Any, m: Any) -> Any:
    """The rising factorial gamma(z + m) / gamma(z)."""
    return bind(_POCH, *fnp.broadcast_arrays(fnp.asarray(z, dtype=float), fnp.asarray(m, dtype=float)))


def gammasgn(x: Any) -> Any:
    """The sign of gamma(x): derivative 0."""
    return bind(_GAMMASGN, x)


def rgamma(x: Any) -> Any:
    """1 / gamma(x) (0 at the poles)."""
    return bind(_RGAMMA, x)


spence = _unary("spence")
dawsn = _unary("dawsn")
owens_t = _binary("owens_t")


def sici(x: Any) -> tuple[Any, Any]:
    """The sine and cosine integrals (Si(x), Ci(x))."""
    return bind(registry["sinint"], x), bind(registry["cosint"], x)


def fresnel(z: Any) -> tuple[Any, Any]:
    """The Fresnel integrals (S(z), C(z))."""
    return bind(registry["fresnel_s"], z), bind(registry["fresnel_c"], z)


def zeta(x: Any, q: Any = None, out: Any = None) -> Any:
    """The Hurwitz zeta function (Riemann's for q None), differentiable in q."""
    if out is not None:
        raise TypeError("zeta: out= is not supported on traced values")
    return bind(registry["zeta"], x, 1.0 if q is None else q)


def hyp1f1(a: Any, b: Any, x: Any) -> Any:
    """Kummer's confluent hypergeometric function, differentiable in x."""
    return bind(registry["hyp1f1"], a, b, x)


def loggamma(x: Any) -> Any:
    """log(gamma(x)) for real x > 0, inf at 0 (NaN below, as SciPy's real loggamma)."""
    x = fnp.asarray(x)
    return fnp.where(x > 0, gammaln(x), fnp.where(x == 0, fnp.inf, _np.nan))


def factorial(n: Any, exact: bool = False) -> Any:
    """gamma(n + 1) (0 for n < 0, as SciPy's); ``exact`` on plain integers only."""
    if exact:
        if isinstance(n, Tracer):
            raise TypeError("factorial(exact=True) of a traced value: use exact=False")
        return _sc.factorial(n, exact=True)
    return fnp.where(fnp.asarray(n) >= 0, gamma(fnp.asarray(n) + 1.0), 0.0)


def comb(N: Any, k: Any, *, exact: bool = False, repetition: bool = False) -> Any:
    """The binomial coefficient as exp(log gamma sums) (0 outside 0 <= k <= N)."""
    if exact:
        if isinstance(N, Tracer) or isinstance(k, Tracer):
            raise TypeError("comb(exact=True) of traced values: use exact=False")
        return _sc.comb(N, k, exact=True, repetition=repetition)
    if repetition:
        return comb(fnp.asarray(N) + k - 1, k)
    N, k = fnp.asarray(N), fnp.asarray(k)
    valid = (k >= 0) & (k <= N) & (N >= 0)
    n1, k1 = fnp.where(valid, N, 1.0), fnp.where(valid, k, 0.0)
    return fnp.where(valid, fnp.exp(gammaln(n1 + 1.0) - gammaln(k1 + 1.0)
                                    - gammaln(n1 - k1 + 1.0)), 0.0)


def bessel_jn(z: Any, *, v: int, n_iter: int = 50) -> Any:
    """``jax.scipy.special.bessel_jn``: J_0 ... J_v of z, stacked on a new first axis."""
    return fnp.stack([jv(order, z) for order in range(int(v) + 1)])


def multigammaln(a: Any, d: int) -> Any:
    """log of the multivariate gamma function of dimension d (a constant)."""
    d = int(d)
    total = d * (d - 1) * 0.25 * _np.log(_np.pi)
    for j in range(d):
        total = total + gammaln(a - 0.5 * j)
    return total


# SciPy's ufuncs met in ``__array_ufunc__``: the fastad function for each.
UFUNCS = {
    _sc.gammaln: gammaln, _sc.gamma: gamma, _sc.psi: digamma, _sc.erf: erf, _sc.erfc: erfc,
    _sc.erfinv: erfinv, _sc.erfcinv: erfcinv, _sc.expit: expit, _sc.log_expit: log_expit,
    _sc.logit: logit, _sc.ndtr: ndtr, _sc.log_ndtr: log_ndtr, _sc.ndtri: ndtri, _sc.i0: i0,
    _sc.i1: i1, _sc.i0e: i0e, _sc.i1e: i1e, _sc.iv: iv, _sc.ive: ive, _sc.xlogy: xlogy,
    _sc.xlog1py: xlog1py, _sc.beta: beta, _sc.betaln: betaln, _sc.gammainc: gammainc,
    _sc.gammaincc: gammaincc, _sc.stdtr: stdtr, _sc.betainc: betainc, _sc.entr: entr,
    _sc.rel_entr: rel_entr, _sc.j0: j0, _sc.j1: j1, _sc.jv: jv, _sc.y0: y0, _sc.y1: y1,
    _sc.yn: yn, _sc.yv: yv, _sc.gammasgn: gammasgn, _sc.rgamma: rgamma,
    _sc.exp1: exp1, _sc.expi: expi, _sc.erfcx: erfcx, _sc.kv: kv, _sc.kve: kve, _sc.expn: expn, _sc.kl_div: kl_div, _sc.huber: huber, _sc.pseudo_huber: pseudo_huber, _sc.poch: poch,
    _sc.boxcox: boxcox, _sc.boxcox1p: boxcox1p, _sc.inv_boxcox: inv_boxcox,
    _sc.inv_boxcox1p: inv_boxcox1p, _sc.cosm1: cosm1, _sc.powm1: powm1, _sc.exprel: exprel,
    _sc.exp10: exp10, _sc.exp2: fnp.exp2, _sc.expm1: fnp.expm1, _sc.log1p: fnp.log1p,
    _sc.cbrt: fnp.cbrt, _sc.spence: spence, _sc.dawsn: dawsn, _sc.sici: sici,
    _sc.fresnel: fresnel, _sc.owens_t: owens_t, _sc.hyp1f1: hyp1f1, _sc.loggamma: loggamma,
    _sc._ufuncs._zeta: zeta, _sc._ufuncs._riemann_zeta: zeta,
}


def _with_scipy_dtypes() -> None:
    """Each function above for one of SciPy's ufuncs gives that ufunc's result
    dtype (``gammainc`` has float64 loops only: float32 in, float64 out)."""
    names = globals()
    for ufunc, fn in list(UFUNCS.items()):
        typed = numpy_dtype(ufunc)(fn)
        UFUNCS[ufunc] = typed
        for name, value in list(names.items()):
            if value is fn and not name.startswith("_"):
                names[name] = typed


_with_scipy_dtypes()


# -- SciPy's Python functions, made to dispatch ---------------------------------------
# SciPy's logsumexp, softmax, log_softmax and multigammaln are Python functions
# that convert their argument with np.asarray, which NumPy's protocols cannot
# intercept.  fastad replaces them in ``scipy.special`` (when fastad is imported)
# by a wrapper that calls the function above on traced arguments and SciPy's own
# otherwise; code that imported them before fastad keeps SciPy's.
def _dispatching(name: str, ours: Any) -> None:
    original = getattr(_sc, name)
    if getattr(original, "_fastad_original", None) is not None:
        return

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, Tracer) for a in args) or any(
                isinstance(v, Tracer) for v in kwargs.values()):
            return ours(*args, **kwargs)
        return original(*args, **kwargs)
    call._fastad_original = original  # type: ignore[attr-defined]
    setattr(_sc, name, call)


for _name, _ours in (("logsumexp", logsumexp), ("softmax", softmax),
                     ("log_softmax", log_softmax), ("multigammaln", multigammaln),
                     ("zeta", zeta), ("factorial", factorial), ("comb", comb)):
    _dispatching(_name, _ours)


def __getattr__(name: str) -> Any:
    """The rest of scipy.special, as SciPy's: on plain values (SciPy's ufuncs
    called on traced values name themselves in a TracingError)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_sc, name)

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
