"""scipy.stats distributions (autograd's and JAX's sets), differentiable in
the argument and in the parameters (except where noted), as namespaces of
functions:
``fastad.scipy.stats.norm.logpdf(x, loc, scale)``.  Values are for arguments
inside the support (SciPy returns -inf / 0 outside it; here they are not
defined).  SciPy's own ``scipy.stats`` objects convert their arguments with
``np.asarray``, which a traced value refuses: import these instead.

cdf derivatives with respect to shape parameters (t's df, gamma's a, beta's
a and b, poisson's k) are not implemented and raise NotImplementedError.
"""
from __future__ import annotations

import functools
import math
import types
from typing import Any

import numpy as _np
import scipy.stats as _scipy_stats

from .. import numpy as fnp
from ..core.registry import registry
from ..core.tracer import bind
from . import linalg as _linalg
from . import special as sc
from ._kde import gaussian_kde

_LOG_2PI = math.log(2.0 * math.pi)


def _standardize(x: Any, loc: Any, scale: Any) -> Any:
    return (x - loc) / scale


def _log(v: Any) -> Any:
    """log of a parameter; a Python number stays a Python number, so it does
    not promote float32 arguments to float64 (NumPy's scalars would)."""
    return math.log(v) if isinstance(v, (int, float)) else fnp.log(v)


def _in_argument_precision(fn: Any) -> Any:
    """fn, with a floating result in the precision of its array arguments
    (JAX's convention for distributions: float32 in, float32 out), also where
    it uses one of SciPy's float64-only functions (gammainc, gammaincc)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        arrays = [a for a in (*args, *kwargs.values()) if not isinstance(a, (int, float))]
        if not arrays or fnp.result_dtype(out).kind != "f":
            return out
        dtype = _np.result_type(*(fnp.result_dtype(a) for a in arrays), _np.float32)
        return fnp.astype(out, dtype) if dtype != fnp.result_dtype(out) else out
    return call


def _array_likes(fn: Any) -> Any:
    """fn taking NumPy's array_likes (lists, tuples) as SciPy's functions do:
    made arrays (traced ones if they hold traced values) before fn sees them."""
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        args = tuple(fnp.asarray(a) if isinstance(a, (list, tuple)) else a for a in args)
        kwargs = {k: fnp.asarray(v) if isinstance(v, (list, tuple)) else v
                  for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    return wrapped


def _namespace(**funcs: Any) -> types.SimpleNamespace:
    """A distribution: its functions, taking array_likes (SciPy's ``rvs`` as it is)."""
    return types.SimpleNamespace(**{name: f if name == "rvs" or not callable(f)
                                    else _array_likes(f) for name, f in funcs.items()})


def _distribution(logpdf, cdf=None, **extra) -> types.SimpleNamespace:
    """logpdf, pdf = exp(logpdf), and cdf/logcdf/sf when a cdf is given."""
    cdf = None if cdf is None else _in_argument_precision(cdf)
    funcs: dict[str, Any] = {"logpdf": logpdf,
                             "pdf": lambda *a, **k: fnp.exp(logpdf(*a, **k))}
    if cdf is not None:
        funcs.update(cdf=cdf, logcdf=lambda *a, **k: fnp.log(cdf(*a, **k)),
                     sf=lambda *a, **k: 1.0 - cdf(*a, **k))
    funcs.update(extra)
    return _namespace(**funcs)


# -- normal -------------------------------------------------------------------------
def _norm_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    z = _standardize(x, loc, scale)
    return -0.5 * fnp.square(z) - 0.5 * _LOG_2PI - _log(scale)


def _norm_cdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return sc.ndtr(_standardize(x, loc, scale))


norm = _distribution(
    _norm_logpdf, _norm_cdf,
    logcdf=lambda x, loc=0.0, scale=1.0: sc.log_ndtr(_standardize(x, loc, scale)),
    sf=lambda x, loc=0.0, scale=1.0: sc.ndtr(-_standardize(x, loc, scale)),
    logsf=lambda x, loc=0.0, scale=1.0: sc.log_ndtr(-_standardize(x, loc, scale)),
    ppf=lambda q, loc=0.0, scale=1.0: loc + scale * sc.ndtri(q),
)


# -- Student's t ------------------------------------------------------------------------
def _t_logpdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    z = _standardize(x, loc, scale)
    half = 0.5 * (df + 1.0)
    return (sc.gammaln(half) - sc.gammaln(0.5 * df) - 0.5 * _log(df * math.pi)
            - _log(scale) - half * fnp.log1p(fnp.square(z) / df))


def _t_cdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return sc.stdtr(df, _standardize(x, loc, scale))


t = _distribution(_t_logpdf, _t_cdf)


# -- gamma ---------------------------------------------------------------------------------
def _gamma_logpdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return sc.xlogy(a - 1.0, y) - y - sc.gammaln(a) - _log(scale)


def _gamma_cdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return sc.gammainc(a, _standardize(x, loc, scale))


gamma = _distribution(_gamma_logpdf, _gamma_cdf)


# -- beta ------------------------------------------------------------------------------------
def _beta_logpdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return (sc.xlogy(a - 1.0, y) + sc.xlog1py(b - 1.0, -y) - sc.betaln(a, b)
            - _log(scale))


def _beta_cdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return sc.betainc(a, b, _standardize(x, loc, scale))


beta = _distribution(_beta_logpdf, _beta_cdf)


# -- Poisson (k a constant count; differentiable in mu) ----------------------------------------
def _poisson_logpmf(k: Any, mu: Any, loc: Any = 0.0) -> Any:
    k = k - loc
    return sc.xlogy(k, mu) - mu - sc.gammaln(k + 1.0)


@_in_argument_precision
def _poisson_cdf(k: Any, mu: Any, loc: Any = 0.0) -> Any:
    return sc.gammaincc(fnp.floor(k - loc) + 1.0, mu)


poisson = _namespace(
    logpmf=_poisson_logpmf,
    pmf=lambda k, mu, loc=0.0: fnp.exp(_poisson_logpmf(k, mu, loc)),
    cdf=_poisson_cdf,
    sf=lambda k, mu, loc=0.0: 1.0 - _poisson_cdf(k, mu, loc),
)


# -- multivariate normal ------------------------------------------------------------------------
def _mvn_logpdf(x: Any, mean: Any = None, cov: Any = 1.0, allow_singular: bool = False) -> Any:
    """log density of N(mean, cov) at each row of x (x's last axis is the
    dimension); cov a full positive definite matrix (its lower triangle is
    read), or with ``allow_singular`` a positive semidefinite one (`_psd`)."""
    dim = fnp.shape(cov)[-1] if fnp.ndim(cov) == 2 else fnp.shape(x)[-1]
    if fnp.ndim(cov) < 2:
        cov = cov * fnp.eye(dim)
    centered = x if mean is None else x - mean
    scalar_dim = fnp.ndim(centered) == 0 or fnp.shape(centered)[-1] != dim
    if scalar_dim:
        raise ValueError("multivariate_normal: x's last axis must have cov's dimension")
    rows = fnp.reshape(centered, (-1, dim))
    singular = _psd(cov) if allow_singular else None
    if singular is not None:  # SciPy's pseudo-determinant and pseudo-inverse
        whiten, log_pdet, rank, null, off = singular
        out = -0.5 * (rank * _LOG_2PI + log_pdet + fnp.sum(fnp.square(rows @ whiten), axis=-1))
        outside = fnp.linalg.norm(rows @ null, axis=-1) >= off
        return fnp.reshape(fnp.where(outside, -_np.inf, out), fnp.shape(centered)[:-1])
    chol = fnp.linalg.cholesky(cov)
    solved = _linalg.solve_triangular(chol, fnp.transpose(rows), lower=True)
    maha = fnp.sum(fnp.square(solved), axis=0)
    log_det = 2.0 * fnp.sum(fnp.log(fnp.diagonal(chol)))
    out = -0.5 * (dim * _LOG_2PI + log_det + maha)
    return fnp.reshape(out, fnp.shape(centered)[:-1])


def _psd(cov: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """None for a positive definite cov (the Cholesky path); for a singular
    one, SciPy's whitening matrix (pseudo-inverse square root), log
    pseudo-determinant, rank, null-space basis and the distance from the
    support beyond which the density is 0 (SciPy's cutoffs, `_PSD`).  A
    traced cov's eigenvalues decide under guards (a new rank retraces).  The
    density is not differentiable in a singular cov (nor is autograd's): its
    derivative there is refused (`no_derivative`), those in x and the mean
    are the pseudo-inverse's."""
    traced = isinstance(cov, fnp.Tracer)
    if not traced:
        cov = _np.asarray(cov, dtype=_np.float64)
    s = fnp.linalg.eigvalsh(fnp.stop_gradient(cov) if traced else cov)
    eps = 1e6 * _np.finfo(_np.float64).eps * fnp.max(fnp.abs(s))
    if bool(fnp.min(s) < -eps):
        raise ValueError("multivariate_normal: the covariance must be symmetric positive "
                         "semidefinite")
    if bool(fnp.all(s > eps)):
        return None
    if traced:
        cov = bind(registry["no_derivative"], cov, what="multivariate_normal(allow_singular="
                   "True) with respect to a singular covariance")
    s, u = fnp.linalg.eigh(cov)
    kept = _np.asarray(s > eps)  # the rank: a guard when traced
    d = s[kept]
    return (u[:, kept] / fnp.sqrt(d), fnp.sum(fnp.log(d)), int(_np.sum(kept)), u[:, ~kept],
            1e3 * eps)


def _mvn_entropy(mean: Any = None, cov: Any = 1.0, allow_singular: bool = True) -> Any:
    """0.5 * (d * (1 + log 2 pi) + log det cov); of a singular cov, its rank
    and pseudo-determinant, as SciPy's (which takes singular ones)."""
    if fnp.ndim(cov) < 2:
        dim = fnp.shape(mean)[-1] if mean is not None and fnp.ndim(mean) else 1
        cov = cov * fnp.eye(dim)
    singular = _psd(cov) if allow_singular else None
    if singular is not None:
        return 0.5 * (singular[2] * (1.0 + _LOG_2PI) + singular[1])
    dim = fnp.shape(cov)[-1]
    log_det = 2.0 * fnp.sum(fnp.log(fnp.diagonal(fnp.linalg.cholesky(cov))))
    return 0.5 * (dim * (1.0 + _LOG_2PI) + log_det)


multivariate_normal = _namespace(
    logpdf=_mvn_logpdf,
    pdf=lambda x, mean=None, cov=1.0, allow_singular=False:
        fnp.exp(_mvn_logpdf(x, mean, cov, allow_singular)),
    entropy=_mvn_entropy,
    rvs=_scipy_stats.multivariate_normal.rvs,
)


# -- chi-squared ---------------------------------------------------------------------------------
def _chi2_logpdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    half = 0.5 * df
    return (sc.xlogy(half - 1.0, y) - 0.5 * y - sc.gammaln(half) - half * math.log(2.0)
            - _log(scale))


def _chi2_cdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return sc.gammainc(0.5 * df, 0.5 * _standardize(x, loc, scale))


chi2 = _distribution(_chi2_logpdf, _chi2_cdf)


# -- Dirichlet -------------------------------------------------------------------------------
def _dirichlet_logpdf(x: Any, alpha: Any) -> Any:
    """log density at x, whose first axis holds the k components (SciPy's
    convention: x of shape (k,) or (k, n)); differentiable in x and alpha."""
    k = fnp.shape(alpha)[0]
    if fnp.shape(x)[0] != k:
        raise ValueError("dirichlet: x's first axis must have alpha's length")
    a = fnp.reshape(alpha, (k,) + (1,) * (fnp.ndim(x) - 1))
    return (fnp.sum(sc.xlogy(a - 1.0, x), axis=0) + sc.gammaln(fnp.sum(alpha))
            - fnp.sum(sc.gammaln(alpha)))


dirichlet = _namespace(
    logpdf=_dirichlet_logpdf,
    pdf=lambda x, alpha: fnp.exp(_dirichlet_logpdf(x, alpha)),
    rvs=_scipy_stats.dirichlet.rvs,
)


# -- JAX's other distributions (jax.scipy.stats), written the same way ---------------------
_LOG_PI = math.log(math.pi)


def _expon_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return -_standardize(x, loc, scale) - _log(scale)


expon = _distribution(_expon_logpdf,
                      lambda x, loc=0.0, scale=1.0: -fnp.expm1(-_standardize(x, loc, scale)),
                      logsf=lambda x, loc=0.0, scale=1.0: -_standardize(x, loc, scale),
                      sf=lambda x, loc=0.0, scale=1.0: fnp.exp(-_standardize(x, loc, scale)))


def _laplace_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return -fnp.abs(_standardize(x, loc, scale)) - math.log(2.0) - _log(scale)


def _laplace_cdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    half = 0.5 * fnp.exp(-fnp.abs(y))
    return fnp.where(y < 0, half, 1.0 - half)


laplace = _distribution(_laplace_logpdf, _laplace_cdf)


def _logistic_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return -y - 2.0 * fnp.logaddexp(0.0, -y) - _log(scale)


logistic = _distribution(
    _logistic_logpdf, lambda x, loc=0.0, scale=1.0: sc.expit(_standardize(x, loc, scale)),
    logcdf=lambda x, loc=0.0, scale=1.0: sc.log_expit(_standardize(x, loc, scale)),
    sf=lambda x, loc=0.0, scale=1.0: sc.expit(-_standardize(x, loc, scale)),
    logsf=lambda x, loc=0.0, scale=1.0: sc.log_expit(-_standardize(x, loc, scale)),
    ppf=lambda q, loc=0.0, scale=1.0: loc + scale * sc.logit(q))


def _cauchy_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return -_LOG_PI - fnp.log1p(fnp.square(_standardize(x, loc, scale))) - _log(scale)


cauchy = _distribution(
    _cauchy_logpdf,
    lambda x, loc=0.0, scale=1.0: 0.5 + fnp.arctan(_standardize(x, loc, scale)) / math.pi)


def _uniform_logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return fnp.where((y >= 0) & (y <= 1), -_log(scale) + 0.0 * y, -_np.inf)


uniform = _distribution(
    _uniform_logpdf, lambda x, loc=0.0, scale=1.0: fnp.clip(_standardize(x, loc, scale), 0.0, 1.0))


def _lognorm_logpdf(x: Any, s: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    log_y = fnp.log(y)
    return -0.5 * _LOG_2PI - _log(s) - log_y - 0.5 * fnp.square(log_y / s) - _log(scale)


lognorm = _distribution(
    _lognorm_logpdf,
    lambda x, s, loc=0.0, scale=1.0: sc.ndtr(fnp.log(_standardize(x, loc, scale)) / s))


def _pareto_logpdf(x: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return _log(b) - (b + 1.0) * fnp.log(y) - _log(scale)


pareto = _distribution(
    _pareto_logpdf, lambda x, b, loc=0.0, scale=1.0: 1.0 - _standardize(x, loc, scale) ** -b)


def _vonmises_logpdf(x: Any, kappa: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)  # log i0(kappa) = log i0e(kappa) + kappa
    return kappa * (fnp.cos(y) - 1.0) - _LOG_2PI - fnp.log(sc.i0e(kappa)) - _log(scale)


vonmises = _distribution(_vonmises_logpdf)


def _truncnorm_logpdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    """a and b bound the standardized variable, as in SciPy."""
    mass = sc.ndtr(b) - sc.ndtr(a)
    return _norm_logpdf(_standardize(x, loc, scale)) - fnp.log(mass) - _log(scale)


def _truncnorm_cdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    low = sc.ndtr(a)
    return (sc.ndtr(_standardize(x, loc, scale)) - low) / (sc.ndtr(b) - low)


truncnorm = _distribution(_truncnorm_logpdf, _truncnorm_cdf)


def _gennorm_logpdf(x: Any, beta: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return (_log(beta) - math.log(2.0) - sc.gammaln(1.0 / beta) - fnp.abs(y) ** beta
            - _log(scale))


gennorm = _distribution(_gennorm_logpdf)


def _wrapcauchy_logpdf(x: Any, c: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return (fnp.log1p(-fnp.square(c)) - _LOG_2PI
            - fnp.log1p(fnp.square(c) - 2.0 * c * fnp.cos(y)) - _log(scale))


wrapcauchy = _distribution(_wrapcauchy_logpdf)


def _discrete(logpmf: Any, cdf: Any = None) -> types.SimpleNamespace:
    funcs: dict[str, Any] = {"logpmf": logpmf,
                             "pmf": lambda *a, **k: fnp.exp(logpmf(*a, **k))}
    if cdf is not None:
        funcs.update(cdf=cdf, sf=lambda *a, **k: 1.0 - cdf(*a, **k))
    return _namespace(**funcs)


def _bernoulli_logpmf(k: Any, p: Any, loc: Any = 0.0) -> Any:
    k = k - loc
    return sc.xlogy(k, p) + sc.xlog1py(1.0 - k, -p)


bernoulli = _discrete(_bernoulli_logpmf)


def _log_choose(n: Any, k: Any) -> Any:
    return sc.gammaln(n + 1.0) - sc.gammaln(k + 1.0) - sc.gammaln(n - k + 1.0)


def _binom_logpmf(k: Any, n: Any, p: Any, loc: Any = 0.0) -> Any:
    k = k - loc
    return _log_choose(n, k) + sc.xlogy(k, p) + sc.xlog1py(n - k, -p)


binom = _discrete(_binom_logpmf)


def _betabinom_logpmf(k: Any, n: Any, a: Any, b: Any, loc: Any = 0.0) -> Any:
    k = k - loc
    return _log_choose(n, k) + sc.betaln(k + a, n - k + b) - sc.betaln(a, b)


betabinom = _discrete(_betabinom_logpmf)


def _nbinom_logpmf(k: Any, n: Any, p: Any, loc: Any = 0.0) -> Any:
    k = k - loc
    return (sc.gammaln(k + n) - sc.gammaln(n) - sc.gammaln(k + 1.0) + sc.xlogy(n, p)
            + sc.xlog1py(k, -p))


nbinom = _discrete(_nbinom_logpmf)


def _geom_logpmf(k: Any, p: Any, loc: Any = 0.0) -> Any:
    return sc.xlog1py(k - loc - 1.0, -p) + fnp.log(p)


geom = _discrete(_geom_logpmf, lambda k, p, loc=0.0: -fnp.expm1(
    sc.xlog1py(fnp.floor(k - loc), -p)))


def _multinomial_logpmf(x: Any, n: Any, p: Any) -> Any:
    """x's last axis holds the counts of the categories of p (which sum to 1)."""
    return (sc.gammaln(n + 1.0) + fnp.sum(sc.xlogy(x, p) - sc.gammaln(x + 1.0), axis=-1))


multinomial = _namespace(
    logpmf=_multinomial_logpmf,
    pmf=lambda x, n, p: fnp.exp(_multinomial_logpmf(x, n, p)))

def _weibull_min_logpdf(x: Any, c: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return _log(c) + (c - 1.0) * fnp.log(y) - y ** c - _log(scale)


weibull_min = _distribution(
    _weibull_min_logpdf,
    lambda x, c, loc=0.0, scale=1.0: -fnp.expm1(-_standardize(x, loc, scale) ** c))


def _invgamma_logpdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    y = _standardize(x, loc, scale)
    return -(a + 1.0) * fnp.log(y) - 1.0 / y - sc.gammaln(a) - _log(scale)


invgamma = _distribution(
    _invgamma_logpdf,
    lambda x, a, loc=0.0, scale=1.0: sc.gammaincc(a, 1.0 / _standardize(x, loc, scale)))


def _gumbel_r_logcdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return -fnp.exp(-_standardize(x, loc, scale))


gumbel_r = _distribution(
    lambda x, loc=0.0, scale=1.0: -_standardize(x, loc, scale)
    - fnp.exp(-_standardize(x, loc, scale)) - _log(scale),
    lambda x, loc=0.0, scale=1.0: fnp.exp(_gumbel_r_logcdf(x, loc, scale)),
    logcdf=_gumbel_r_logcdf,
    sf=lambda x, loc=0.0, scale=1.0: -fnp.expm1(_gumbel_r_logcdf(x, loc, scale)),
    logsf=lambda x, loc=0.0, scale=1.0: fnp.log(-fnp.expm1(_gumbel_r_logcdf(x, loc, scale))),
    ppf=lambda q, loc=0.0, scale=1.0: loc - scale * fnp.log(-fnp.log(q)))


def _gumbel_l_logsf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
    return -fnp.exp(_standardize(x, loc, scale))


gumbel_l = _distribution(
    lambda x, loc=0.0, scale=1.0: _standardize(x, loc, scale)
    - fnp.exp(_standardize(x, loc, scale)) - _log(scale),
    lambda x, loc=0.0, scale=1.0: -fnp.expm1(_gumbel_l_logsf(x, loc, scale)),
    logcdf=lambda x, loc=0.0, scale=1.0: fnp.log(-fnp.expm1(_gumbel_l_logsf(x, loc, scale))),
    sf=lambda x, loc=0.0, scale=1.0: fnp.exp(_gumbel_l_logsf(x, loc, scale)),
    logsf=_gumbel_l_logsf,
    ppf=lambda q, loc=0.0, scale=1.0: loc + scale * fnp.log(-fnp.log1p(-q)))


@_array_likes
def sem(a: Any, axis: Any = 0, ddof: int = 1, nan_policy: str = "propagate", *,
        keepdims: bool = False) -> Any:
    """The standard error of the mean along ``axis``."""
    if nan_policy != "propagate":
        raise NotImplementedError("sem: only nan_policy='propagate' on traced values")
    if axis is None:
        a, axis = fnp.ravel(a), 0
    n = fnp.shape(a)[axis]
    return fnp.std(a, axis=axis, ddof=ddof, keepdims=keepdims) / math.sqrt(n)


@_array_likes
def rankdata(a: Any, method: str = "average", *, axis: Any = None,
             nan_policy: str = "propagate") -> Any:
    """Ranks from 1 (ties by ``method``), counted by pairwise comparisons, so
    a compiled function ranks each call's values; no derivative."""
    if method not in ("average", "min", "max", "dense", "ordinal"):
        raise ValueError(f"unknown method {method!r}")
    if axis is None:
        a, axis = fnp.ravel(a), -1
    a = fnp.moveaxis(fnp.asarray(a), axis, -1)
    x, y = a[..., :, None], a[..., None, :]
    below = fnp.sum(y < x, axis=-1)
    ties = fnp.sum(y == x, axis=-1)
    if method == "average":
        ranks = below + (ties + 1) / 2.0
    elif method == "min":
        ranks = below + 1.0
    elif method == "max":
        ranks = below + ties * 1.0
    elif method == "ordinal":  # ties by position
        n = fnp.shape(a)[-1]
        before = _np.tril(_np.ones((n, n), dtype=bool), -1)
        ranks = below + fnp.sum((y == x) & before, axis=-1) + 1.0
    else:  # dense: the number of distinct values below, plus one
        first = fnp.sum((y == x) & _np.tril(_np.ones((fnp.shape(a)[-1],) * 2, bool), -1),
                        axis=-1) == 0  # the first occurrence of each value
        ranks = fnp.sum((y < x) & first[..., None, :], axis=-1) + 1.0
    ranks = fnp.moveaxis(ranks, -1, axis)
    return ranks if method == "average" else fnp.astype(ranks, _np.int64)


def mode(a: Any, axis: Any = 0, nan_policy: str = "propagate", keepdims: bool = False) -> Any:
    """The most frequent value along ``axis`` (the smallest of equally
    frequent ones) and its count, as SciPy's ``ModeResult``."""
    if axis is None:
        a, axis = fnp.ravel(a), 0
    a = fnp.moveaxis(fnp.asarray(a), axis, -1)
    counts = fnp.sum(a[..., :, None] == a[..., None, :], axis=-1)
    most = fnp.max(counts, axis=-1, keepdims=True)
    value = fnp.min(fnp.where(counts == most, a, _np.inf), axis=-1, keepdims=keepdims)
    count = most if keepdims else most[..., 0]
    if keepdims:
        value, count = fnp.moveaxis(value, -1, axis), fnp.moveaxis(count, -1, axis)
    return _scipy_stats._stats_py.ModeResult(value, count)


@_array_likes
def entropy(pk: Any, qk: Any = None, base: Any = None, axis: int = 0, *,
            keepdims: bool = False) -> Any:
    """Shannon entropy of pk (normalized along ``axis``), or the relative
    entropy of pk to qk, as SciPy's (natural log unless ``base``)."""
    pk = pk / fnp.sum(pk, axis=axis, keepdims=True)
    if qk is None:
        out = fnp.sum(sc.entr(pk), axis=axis, keepdims=keepdims)
    else:
        qk = qk / fnp.sum(qk, axis=axis, keepdims=True)
        out = fnp.sum(sc.rel_entr(pk, qk), axis=axis, keepdims=keepdims)
    return out if base is None else out / math.log(base)


@_array_likes
def zscore(a: Any, axis: Any = 0, ddof: int = 0, nan_policy: str = "propagate") -> Any:
    """(a - mean) / std along ``axis``, as SciPy's."""
    if nan_policy != "propagate":
        raise NotImplementedError("zscore: only nan_policy='propagate' on traced values")
    mean = fnp.mean(a, axis=axis, keepdims=True)
    return (a - mean) / fnp.std(a, axis=axis, ddof=ddof, keepdims=True)


__all__ = ["norm", "t", "gamma", "beta", "poisson", "multivariate_normal", "chi2", "dirichlet",
           "expon", "laplace", "logistic", "cauchy", "uniform", "lognorm", "pareto", "vonmises",
           "truncnorm", "gennorm", "wrapcauchy", "bernoulli", "binom", "betabinom", "nbinom",
           "geom", "multinomial", "weibull_min", "invgamma", "gumbel_r", "gumbel_l"]
_FUNCTIONS = ["entropy", "zscore", "sem", "rankdata", "mode", "gaussian_kde"]  # (functions, not distributions: no module each)


def _as_modules() -> None:
    """Each distribution is also a module, as autograd's are:
    ``import fastad.scipy.stats.multivariate_normal as mvn``."""
    import sys
    for name in __all__:
        module = types.ModuleType(f"{__name__}.{name}", f"scipy.stats.{name}, differentiable")
        vars(module).update(vars(globals()[name]))
        sys.modules[module.__name__] = module
        globals()[name] = module


_as_modules()
__all__ += _FUNCTIONS


def __getattr__(name: str) -> Any:
    """The rest of scipy.stats, as SciPy's: on plain values (SciPy's ufuncs
    called on traced values name themselves in a TracingError)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_scipy_stats, name)

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
