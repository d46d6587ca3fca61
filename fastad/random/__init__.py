"""``jax.random`` for fastad: keyed random numbers that a compiled function
draws again on every call.

Code written with ``import jax.random as random`` runs with ``import
fastad.random as random``.  A key is two uint32 words (``PRNGKey(0)``,
``key(0)``: JAX's raw key layout, for both); ``split`` and ``fold_in`` make
new keys, and every sampler is a pure function of its key.  The bits are
JAX's Threefry-2x32 bits (`primitives.threefry`), so ``split``, ``fold_in``,
``bits``, ``uniform``, ``randint`` and ``permutation`` give JAX's values
bit for bit, and ``normal`` and the samplers built on ``uniform`` give them
to rounding.  The rejection samplers (``gamma`` and what is built on it,
``poisson``, ``binomial``, ``multinomial``) draw from a NumPy generator
keyed by the key: a function of the key, not JAX's values.

Dtypes follow fastad.numpy (NumPy's): floats default to float64 and integers
to int64, where JAX without ``jax_enable_x64`` gives float32 and int32; pass
``dtype=`` for those.

Inside a traced function, a key passed as an argument is data: a compiled
function draws fresh numbers for each key it is called with, without
tracing again (the draws are host calls, recomputed per call), and
``vmap`` over a batch of keys draws per example.  A key made inside the
function from a constant seed gives constants, as in JAX.  Draws are not
differentiable in the key; the samplers' parameters (``minval``, a
normal's mean and covariance, ``truncated_normal``'s bounds, ``gamma``'s
shape, ...) are, by reparameterization, as in JAX.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import numpy as fnp
from ..core.int_data import integer_like
from ..core.registry import registry
from ..core.tracer import Tracer, bind
from ..scipy import special as _special
from ..primitives import threefry as _threefry

__all__ = ["PRNGKey", "ball", "bernoulli", "beta", "binomial", "bits", "categorical", "cauchy",
           "chisquare", "choice", "clone", "dirichlet", "double_sided_maxwell", "exponential",
           "f", "fold_in", "gamma", "generalized_normal", "geometric", "gumbel", "key",
           "key_data", "key_impl", "laplace", "loggamma", "logistic", "lognormal", "maxwell",
           "multinomial", "multivariate_normal", "normal", "orthogonal", "pareto",
           "permutation", "poisson", "rademacher", "randint", "rayleigh", "split", "t",
           "triangular", "truncated_normal", "uniform", "wald", "weibull_min", "wrap_key_data"]

_KEY_DTYPE = np.dtype(np.uint32)


# -- keys ----------------------------------------------------------------------------
def PRNGKey(seed: Any, *, impl: Any = None) -> np.ndarray:
    """A key from an integer seed (its 64 bits as two uint32 words)."""
    _impl(impl)
    if isinstance(seed, (float, np.floating)) or np.ndim(seed):
        raise TypeError(f"a PRNG seed is a scalar integer, not {seed!r}")
    return _threefry.seed_key(int(seed))


def key(seed: Any, *, impl: Any = None) -> np.ndarray:
    """JAX's typed key; here the same two-word key as `PRNGKey`."""
    return PRNGKey(seed, impl=impl)


def _impl(impl: Any) -> None:
    if impl not in (None, "threefry2x32", "threefry"):
        raise ValueError(f"fastad.random implements the threefry2x32 generator, not {impl!r}")


def key_data(keys: Any) -> Any:
    return keys


def wrap_key_data(key_bits_array: Any, *, impl: Any = None) -> Any:
    _impl(impl)
    return key_bits_array if isinstance(key_bits_array, Tracer) \
        else np.asarray(key_bits_array, dtype=_KEY_DTYPE)


def key_impl(keys: Any) -> str:
    return "threefry2x32"


def clone(key: Any) -> Any:
    return key


def _checked(key: Any, name: str) -> Any:
    if isinstance(key, Tracer):
        if fnp.shape(key) != (2,) or fnp.result_type(key).kind == "c":
            raise ValueError(f"{name}: a key is an array of two uint32 words; got a traced "
                             f"value of shape {fnp.shape(key)} (split keys are indexed: keys[0])")
        return key
    return _threefry.as_key(key)


def _integers(result: Any, dtype: Any) -> Any:
    """A draw of integers (held in float64) as ``dtype``: traced, integer data."""
    if isinstance(result, Tracer):
        return integer_like(result, frozenset(), np.dtype(dtype))
    return np.asarray(result).astype(dtype)


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if np.ndim(shape) == 0 and not isinstance(shape, tuple) \
        else tuple(int(n) for n in shape)


def split(key: Any, num: Any = 2) -> Any:
    """``num`` new keys (an int or a shape), as an array of shape (*num, 2)."""
    return _integers(bind(registry["prng_split"], _checked(key, "split"), shape=_shape(num)),
                     _KEY_DTYPE)


def fold_in(key: Any, data: Any) -> Any:
    """A new key from ``key`` and an integer (a step number, a worker index)."""
    if fnp.result_type(data).kind not in "iub":
        raise TypeError(f"fold_in: data must be an integer, not {fnp.result_type(data)}")
    return _integers(bind(registry["prng_fold_in"], _checked(key, "fold_in"), data),
                     _KEY_DTYPE)


def bits(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    """Uniform random bits as unsigned integers (uint32 unless ``dtype``)."""
    dtype = np.dtype(np.uint32 if dtype is None else dtype)
    if dtype.kind != "u":
        raise TypeError(f"bits: dtype must be an unsigned integer type, not {dtype}")
    key = _checked(key, "bits")
    if not isinstance(key, Tracer):
        return _threefry.bits(key, _shape(shape), dtype.itemsize * 8)
    if dtype.itemsize == 8:
        raise TypeError("bits: 64-bit draws of a traced key do not fit the float64 that "
                        "holds traced integers; draw two uint32 arrays")
    return _integers(bind(registry["prng_bits"], key, shape=_shape(shape),
                          width=dtype.itemsize * 8), dtype)


# -- continuous samplers ---------------------------------------------------------------
def _float(dtype: Any) -> np.dtype:
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"a random float dtype is float16, float32 or float64, not {dtype}")
    return dtype


def _unit(key: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """Uniform [0, 1) floats of ``dtype`` (JAX's mantissa recipe)."""
    u = bind(registry["prng_uniform"], _checked(key, "uniform"), shape=shape, dtype=dtype.name)
    return fnp.astype(u, dtype, copy=False)


def _param_shape(shape: Any, *params: Any) -> tuple[int, ...]:
    return fnp.broadcast_shapes(*(fnp.shape(p) for p in params)) if shape is None \
        else _shape(shape)


def uniform(key: Any, shape: Any = (), dtype: Any = None, minval: Any = 0.0,
            maxval: Any = 1.0) -> Any:
    """Uniform floats in [minval, maxval); differentiable in the bounds."""
    dtype, shape = _float(dtype), _shape(shape)
    lo, hi = fnp.asarray(minval, dtype=dtype), fnp.asarray(maxval, dtype=dtype)
    return fnp.maximum(lo, fnp.astype(_unit(key, shape, dtype) * (hi - lo) + lo, dtype))


def normal(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    """Standard normal floats: sqrt(2) erfinv(u), u uniform in (-1, 1)."""
    dtype, shape = _float(dtype), _shape(shape)
    z = bind(registry["prng_normal"], _checked(key, "normal"), shape=shape, dtype=dtype.name)
    return fnp.astype(z, dtype, copy=False)


def truncated_normal(key: Any, lower: Any, upper: Any, shape: Any = None,
                     dtype: Any = None) -> Any:
    """Normal floats in (lower, upper), by the inverse CDF; differentiable in the bounds."""
    dtype = _float(dtype)
    shape = _param_shape(shape, lower, upper)
    a = _special.erf(fnp.asarray(lower, dtype=dtype) / np.sqrt(2.0))
    b = _special.erf(fnp.asarray(upper, dtype=dtype) / np.sqrt(2.0))
    out = np.sqrt(2.0) * _special.erfinv(uniform(key, shape, dtype, a, b))
    # the open interval: bounds moved inward by at least one unit in the last place
    info = np.finfo(dtype)
    lower, upper = _stopped(lower, dtype), _stopped(upper, dtype)
    lo = lower + fnp.maximum(fnp.abs(lower) * info.eps, info.tiny)
    hi = upper - fnp.maximum(fnp.abs(upper) * info.eps, info.tiny)
    return fnp.astype(fnp.clip(out, lo, hi), dtype)


def _stopped(x: Any, dtype: np.dtype) -> Any:
    x = fnp.asarray(x, dtype=dtype)
    return fnp.stop_gradient(x) if isinstance(x, Tracer) else x


def multivariate_normal(key: Any, mean: Any, cov: Any, shape: Any = None, dtype: Any = None,
                        method: str = "cholesky") -> Any:
    """mean + factor @ z, factor the Cholesky factor of cov (or from ``eigh``/``svd``)."""
    dtype = _float(dtype)
    if method not in ("cholesky", "eigh", "svd"):
        raise ValueError(f"method must be one of cholesky, eigh, svd; got {method!r}")
    mean, cov = fnp.asarray(mean, dtype=dtype), fnp.asarray(cov, dtype=dtype)
    if fnp.ndim(mean) < 1 or fnp.ndim(cov) < 2 or fnp.shape(cov)[-2:] != \
            (fnp.shape(mean)[-1],) * 2:
        raise ValueError(f"multivariate_normal: mean of shape (..., n) and cov of (..., n, n); "
                         f"got {fnp.shape(mean)} and {fnp.shape(cov)}")
    if shape is None:
        shape = fnp.broadcast_shapes(fnp.shape(mean)[:-1], fnp.shape(cov)[:-2])
    if method == "svd":
        u, s, _ = fnp.linalg.svd(cov)
        factor = u * fnp.sqrt(s)[..., None, :]
    elif method == "eigh":
        w, v = fnp.linalg.eigh(cov)
        factor = v * fnp.sqrt(w)[..., None, :]
    else:
        factor = fnp.linalg.cholesky(cov)
    z = normal(key, _shape(shape) + fnp.shape(mean)[-1:], dtype)
    return mean + fnp.einsum("...ij,...j->...i", factor, z)


def _unit_open(key: Any, shape: Any, dtype: np.dtype, low: float) -> Any:
    return uniform(key, _shape(shape), dtype, low, 1.0)


def exponential(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    u = _unit_open(key, shape, _float(dtype), 0.0)
    return -fnp.log1p(-u)


def laplace(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    dtype = _float(dtype)
    u = uniform(key, _shape(shape), dtype, -1.0 + np.finfo(dtype).epsneg, 1.0)
    return fnp.sign(u) * fnp.log1p(-fnp.abs(u))


def logistic(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    dtype = _float(dtype)
    u = _unit_open(key, shape, dtype, np.finfo(dtype).tiny)
    return fnp.log(u) - fnp.log1p(-u)


def gumbel(key: Any, shape: Any = (), dtype: Any = None, mode: str = "low") -> Any:
    dtype = _float(dtype)
    u = _unit_open(key, shape, dtype, np.finfo(dtype).tiny)
    return -fnp.log(-fnp.log(u))


def cauchy(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    dtype = _float(dtype)
    u = _unit_open(key, shape, dtype, np.finfo(dtype).eps)
    return fnp.tan(np.pi * (u - 0.5))


def lognormal(key: Any, sigma: Any = 1.0, shape: Any = None, dtype: Any = None) -> Any:
    dtype = _float(dtype)
    return fnp.exp(normal(key, _param_shape(shape, sigma), dtype) * sigma)


def pareto(key: Any, b: Any, shape: Any = None, dtype: Any = None) -> Any:
    return fnp.exp(exponential(key, _param_shape(shape, b), dtype) / b)


def weibull_min(key: Any, scale: Any, concentration: Any, shape: Any = (),
                dtype: Any = None) -> Any:
    u = uniform(key, _shape(shape), _float(dtype))
    return fnp.power(-fnp.log1p(-u), 1.0 / concentration) * scale


def rayleigh(key: Any, scale: Any, shape: Any = None, dtype: Any = None) -> Any:
    u = uniform(key, _param_shape(shape, scale), _float(dtype))
    return scale * fnp.sqrt(-2.0 * fnp.log(u))


def maxwell(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    return fnp.linalg.norm(normal(key, _shape(shape) + (3,), dtype), axis=-1)


def double_sided_maxwell(key: Any, loc: Any, scale: Any, shape: Any = (),
                         dtype: Any = None) -> Any:
    shape = _shape(shape) + fnp.broadcast_shapes(fnp.shape(loc), fnp.shape(scale))
    k1, k2 = split(key)
    return rademacher(k2, shape, _float(dtype)) * maxwell(k1, shape, dtype) * scale + loc


def wald(key: Any, mean: Any, shape: Any = None, dtype: Any = None) -> Any:
    dtype = _float(dtype)
    shape = _param_shape(shape, mean)
    k1, k2 = split(key)
    mean = fnp.broadcast_to(fnp.asarray(mean, dtype=dtype), shape)
    y = normal(k1, shape, dtype) ** 2
    z = uniform(k2, shape, dtype)
    m2 = mean ** 2
    x = mean + m2 * y / 2 - mean / 2 * fnp.sqrt(4 * mean * y + m2 * y ** 2)
    return fnp.where(z <= mean / (mean + x), x, m2 / x)


def triangular(key: Any, left: Any, mode: Any, right: Any, shape: Any = None,
               dtype: Any = None) -> Any:
    dtype = _float(dtype)
    u = uniform(key, _param_shape(shape, left, mode, right), dtype)
    below = left + fnp.sqrt(u * (right - left) * (mode - left))
    above = right - fnp.sqrt((1 - u) * (right - left) * (right - mode))
    return fnp.where(u < (mode - left) / (right - left), below, above)


def orthogonal(key: Any, n: int, shape: Any = (), dtype: Any = None, m: Any = None) -> Any:
    """A random n x m matrix with orthonormal columns (rows, if n < m), Haar-distributed."""
    m = n if m is None else m
    z = normal(key, (*_shape(shape), max(n, m), min(n, m)), dtype)
    q, r = fnp.linalg.qr(z)
    q = q * fnp.expand_dims(fnp.sign(fnp.diagonal(r, axis1=-2, axis2=-1)), -2)
    return fnp.swapaxes(q, -1, -2) if n < m else q


def gamma(key: Any, a: Any, shape: Any = None, dtype: Any = None) -> Any:
    """Gamma(a, 1) floats; differentiable in ``a`` (the implicit derivative JAX uses)."""
    dtype = _float(dtype)
    out = bind(registry["prng_gamma"], _checked(key, "gamma"), fnp.asarray(a, dtype=np.float64),
               shape=_param_shape(shape, a))
    return fnp.astype(out, dtype)


def loggamma(key: Any, a: Any, shape: Any = None, dtype: Any = None) -> Any:
    return fnp.log(gamma(key, a, shape, dtype))


def generalized_normal(key: Any, p: float, shape: Any = (), dtype: Any = None) -> Any:
    k1, k2 = split(key)
    g = gamma(k1, 1 / p, shape, dtype)
    return rademacher(k2, shape, _float(dtype)) * g ** (1 / p)


def ball(key: Any, d: int, p: float = 2, shape: Any = (), dtype: Any = None) -> Any:
    """Uniform points of the d-dimensional unit p-norm ball."""
    k1, k2 = split(key)
    g = generalized_normal(k1, p, (*_shape(shape), d), dtype)
    e = exponential(k2, shape, dtype)
    return g / (((fnp.abs(g) ** p).sum(-1) + e) ** (1 / p))[..., None]


def beta(key: Any, a: Any, b: Any, shape: Any = None, dtype: Any = None) -> Any:
    shape = _param_shape(shape, a, b)
    ka, kb = split(key)
    ga, gb = gamma(ka, a, shape, dtype), gamma(kb, b, shape, dtype)
    return ga / (ga + gb)


def dirichlet(key: Any, alpha: Any, shape: Any = None, dtype: Any = None) -> Any:
    if fnp.ndim(alpha) < 1:
        raise ValueError("dirichlet: alpha must have at least one dimension")
    batch = fnp.shape(alpha)[:-1] if shape is None else _shape(shape)
    g = gamma(key, alpha, (*batch, fnp.shape(alpha)[-1]), dtype)
    return g / fnp.sum(g, axis=-1, keepdims=True)


def chisquare(key: Any, df: Any, shape: Any = None, dtype: Any = None) -> Any:
    return 2.0 * gamma(key, fnp.asarray(df) / 2.0, _param_shape(shape, df), dtype)


def t(key: Any, df: Any, shape: Any = (), dtype: Any = None) -> Any:
    shape = _param_shape(shape or None, df)
    kn, kg = split(key)
    half = fnp.asarray(df) / 2.0
    return normal(kn, shape, dtype) * fnp.sqrt(half / gamma(kg, half, shape, dtype))


def f(key: Any, dfnum: Any, dfden: Any, shape: Any = (), dtype: Any = None) -> Any:
    shape = _param_shape(shape or None, dfnum, dfden)
    kd, kn = split(key)
    return (chisquare(kn, dfnum, shape, dtype) / dfnum) / (chisquare(kd, dfden, shape, dtype) / dfden)


# -- discrete samplers ------------------------------------------------------------------
def _int(dtype: Any) -> np.dtype:
    dtype = np.dtype(np.int64 if dtype is None else dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"a random integer dtype is an integer type, not {dtype}")
    return dtype


def randint(key: Any, shape: Any, minval: Any, maxval: Any, dtype: Any = None) -> Any:
    """Integers in [minval, maxval) (broadcast to ``shape``)."""
    dtype, shape = _int(dtype), _shape(shape)
    if fnp.result_type(minval).kind == "f" or fnp.result_type(maxval).kind == "f":
        minval, maxval = fnp.astype(minval, np.int64), fnp.astype(maxval, np.int64)
    return _integers(bind(registry["prng_randint"], _checked(key, "randint"), minval, maxval,
                          shape=shape, dtype=dtype.name), dtype)


def bernoulli(key: Any, p: Any = 0.5, shape: Any = None) -> Any:
    """Booleans, True with probability p."""
    dtype = fnp.result_type(p) if fnp.result_type(p).kind == "f" else np.dtype(np.float64)
    return uniform(key, _param_shape(shape, p), dtype) < p


def rademacher(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    """-1 or 1 with equal probability (int64 unless ``dtype``)."""
    dtype = np.dtype(np.int64 if dtype is None else dtype)
    signs = 2.0 * fnp.astype(bernoulli(key, 0.5, _shape(shape)), np.float64) - 1.0
    return _integers(signs, dtype) if dtype.kind in "iu" else fnp.astype(signs, dtype)


def geometric(key: Any, p: Any, shape: Any = None, dtype: Any = None) -> Any:
    """The number of Bernoulli(p) trials up to the first success (>= 1)."""
    dtype = _int(dtype)
    u = uniform(key, _param_shape(shape, p), np.float64)
    return _integers(fnp.floor(fnp.log(u) / fnp.log1p(-fnp.asarray(p, dtype=np.float64))) + 1,
                     dtype)


def poisson(key: Any, lam: Any, shape: Any = None, dtype: Any = None) -> Any:
    dtype = _int(dtype)
    return _integers(bind(registry["prng_poisson"], _checked(key, "poisson"), lam,
                          shape=_param_shape(shape, lam)), dtype)


def binomial(key: Any, n: Any, p: Any, shape: Any = None, dtype: Any = None) -> Any:
    """Binomial(n, p) counts, as floats (JAX's default dtype for them)."""
    dtype = _float(dtype)
    out = bind(registry["prng_binomial"], _checked(key, "binomial"), n, p,
               shape=_param_shape(shape, n, p))
    return fnp.astype(out, dtype)


def multinomial(key: Any, n: Any, p: Any, *, shape: Any = None, dtype: Any = None,
                unroll: Any = 1) -> Any:
    """Counts of n draws over the categories of p's last axis (as floats),
    one conditional binomial per category."""
    dtype = _float(dtype)
    k = fnp.shape(p)[-1]
    batch = _param_shape(shape, n, fnp.sum(p, axis=-1))
    keys = split(key, k)
    remaining = fnp.broadcast_to(fnp.asarray(n, dtype=np.float64), batch)
    left = fnp.broadcast_to(fnp.asarray(1.0), batch)
    counts = []
    for i in range(k):
        p_i = fnp.broadcast_to(fnp.asarray(p)[..., i], batch)
        share = fnp.clip(fnp.where(left > 0, p_i / fnp.where(left > 0, left, 1.0), 0.0), 0.0, 1.0)
        c = binomial(keys[i], remaining, share if i < k - 1 else fnp.ones_like(share), batch)
        counts.append(c)
        remaining, left = remaining - c, left - p_i
    return fnp.astype(fnp.stack(counts, axis=-1), dtype)


def permutation(key: Any, x: Any, axis: int = 0, independent: bool = False) -> Any:
    """A random permutation of range(x) (an integer x), or of x along ``axis``
    (each slice on its own with ``independent``)."""
    key = _checked(key, "permutation")
    if np.ndim(x) == 0 and fnp.result_type(x).kind in "iu" and not isinstance(x, Tracer):
        return _integers(bind(registry["prng_permutation"], key, n=int(x)), np.int64)
    if fnp.ndim(x) == 0:
        raise TypeError("permutation: x must be an integer or an array of at least one dimension")
    axis = axis % fnp.ndim(x)
    if independent:
        order = fnp.argsort(bind(registry["prng_bits"], key, shape=fnp.shape(x), width=32),
                            axis=axis)
        return fnp.take_along_axis(x, order, axis=axis)
    order = _integers(bind(registry["prng_permutation"], key, n=fnp.shape(x)[axis]), np.int64)
    return fnp.take(x, order, axis=axis)


def choice(key: Any, a: Any, shape: Any = (), replace: bool = True, p: Any = None,
           axis: int = 0) -> Any:
    """Draws from range(a) (an integer a) or from a's entries along ``axis``,
    uniformly or with probabilities p, with or without replacement."""
    shape = _shape(shape)
    n_inputs = int(a) if np.ndim(a) == 0 and not isinstance(a, Tracer) else fnp.shape(a)[axis]
    n_draws = math.prod(shape)
    if n_inputs <= 0 and n_draws:
        raise ValueError("choice: a must be positive or a non-empty array")
    if not replace and n_draws > n_inputs:
        raise ValueError(f"choice: cannot take {n_draws} samples from {n_inputs} "
                         "without replacement")
    if p is None:
        if replace:
            ind = randint(key, shape, 0, n_inputs)
        else:
            ind = fnp.reshape(permutation(key, n_inputs)[:n_draws], shape)
    else:
        if fnp.shape(p) != (n_inputs,):
            raise ValueError(f"choice: p must have shape ({n_inputs},), not {fnp.shape(p)}")
        if replace:
            cdf = fnp.cumsum(p)
            r = cdf[-1] * (1 - uniform(key, shape, fnp.result_type(cdf)))
            ind = _integers(fnp.minimum(fnp.sum(cdf < r[..., None], axis=-1), n_inputs - 1),
                            np.int64)
        else:
            g = gumbel(key, (n_inputs,)) + fnp.log(p)
            ind = fnp.reshape(fnp.argsort(-g)[:n_draws], shape)
    if np.ndim(a) == 0 and not isinstance(a, Tracer):
        return ind
    return fnp.take(a, ind, axis=axis)


def categorical(key: Any, logits: Any, axis: int = -1, shape: Any = None,
                replace: bool = True) -> Any:
    """Category indices drawn with probabilities softmax(logits) along ``axis``
    (the Gumbel-max trick)."""
    ndim = fnp.ndim(logits)
    axis = axis % ndim
    batch = fnp.shape(logits)[:axis] + fnp.shape(logits)[axis + 1:]
    shape = batch if shape is None else _shape(shape)
    if shape[len(shape) - len(batch):] != batch:
        raise ValueError(f"categorical: shape {shape} must end with the logits' batch shape "
                         f"{batch}")
    prefix = shape[:len(shape) - len(batch)]
    if not replace:
        if prefix and ndim != 1:
            raise ValueError("categorical without replacement takes 1-D logits")
        g = gumbel(key, fnp.shape(logits), fnp.result_type(logits)) + logits
        return fnp.reshape(fnp.argsort(-g, axis=-1)[:math.prod(prefix)], prefix)
    draw_shape = list(batch)
    draw_shape.insert(axis, fnp.shape(logits)[axis])
    g = gumbel(key, (*prefix, *draw_shape), fnp.result_type(logits))
    return fnp.argmax(g + fnp.reshape(logits, (1,) * len(prefix) + fnp.shape(logits)),
                      axis=axis + len(prefix))
