"""Keyed random numbers as primitives (`fastad.random`, JAX's ``jax.random``).

A draw is a function of its key, so a compiled function that takes the key
as an argument must draw again on every call: each primitive here computes
its numbers from the key's value (`threefry`) and is a host
call of the compiled backends, recomputed per call, never a constant of the
tape.  Keys and integer draws are held in float64 (exact: 32-bit words and
integers below 2^53), as integer data are (`core.int_data`); `fastad.random`
casts them back.  A draw has no derivative in its key; the samplers' shape
parameters (a normal's scale, a uniform's bounds) are traced arithmetic on
these unit draws, differentiable as JAX's reparameterized samplers are.  The
gamma draw is the inverse CDF of a uniform one, so its derivative in its
shape ``a`` is the implicit one JAX uses (x moved at its CDF value held
fixed: -dP(a, x)/da / p(x; a)), and central differences agree with it.
"""
from __future__ import annotations

import numpy as np
import scipy.special as sc

from ..core.registry import defbatch, defjvp, defprim, defshape, defvjp, registry
from . import threefry
from ..transforms import batching
from .numpy_proxy import fnp
from .elementwise import no_rule

_F64 = np.float64


def _as_ints(x) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.int64) if x.dtype.kind in "fb" else x


def _split(key, shape):
    return threefry.split(key, shape).astype(_F64)


def _fold_in(key, data):
    return threefry.fold_in(key, int(_as_ints(data))).astype(_F64)


def _bits(key, shape, width):
    return threefry.bits(key, shape, width).astype(_F64)


def _uniform(key, shape, dtype):
    return threefry.unit_floats(key, shape, np.dtype(dtype)).astype(_F64)


def _normal(key, shape, dtype):
    """sqrt(2) erfinv(u), u uniform in (-1, 1) (JAX's normal), in ``dtype``."""
    dtype = np.dtype(dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = np.maximum(lo, threefry.unit_floats(key, shape, dtype) * (np.array(1.0, dtype) - lo) + lo)
    return (np.sqrt(2.0) * sc.erfinv(u.astype(dtype))).astype(dtype).astype(_F64)


def _randint(key, minval, maxval, shape, dtype):
    return threefry.randint(key, shape, _as_ints(minval), _as_ints(maxval),
                            np.dtype(dtype)).astype(_F64)


def _permutation(key, n):
    return threefry.shuffle_order(key, n).astype(_F64)


def _gamma(key, a, shape):
    """Gamma(a, 1) by the inverse CDF of a uniform draw: a smooth function of
    a at a fixed key, whose derivative is `gamma_slope` (no rejection step
    whose outcome would jump with a)."""
    a = np.broadcast_to(np.asarray(a, dtype=_F64), shape)
    return np.asarray(sc.gammaincinv(a, threefry.unit_floats(key, shape, np.dtype(_F64))),
                      dtype=_F64)


def _poisson(key, lam, shape):
    lam = np.broadcast_to(np.asarray(lam, dtype=_F64), shape)
    return np.asarray(threefry.numpy_generator(key).poisson(lam), dtype=_F64)


def _binomial(key, n, p, shape):
    n = np.broadcast_to(_as_ints(n), shape)
    p = np.broadcast_to(np.asarray(p, dtype=_F64), shape)
    return np.asarray(threefry.numpy_generator(key).binomial(n, p), dtype=_F64)


def gamma_slope(x, a):
    """dx/da of x = P^-1(a, u) at u fixed: -(dP/da) / p(x; a), dP/da by a
    central difference of the regularized incomplete gamma P (relative
    error about 1e-9 where p(x; a) is not tiny)."""
    x, a = np.asarray(x, dtype=_F64), np.asarray(a, dtype=_F64)
    h = _step(a)
    dpda = (sc.gammainc(a + h, x) - sc.gammainc(a - h, x)) / (2 * h)
    log_pdf = (a - 1) * np.log(x) - x - sc.gammaln(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = -dpda / np.exp(log_pdf)
    return np.where(x > 0, slope, 0.0)


def _step(a):
    return 1e-5 * np.maximum(a, 1e-3)


def _slope_dx(t, ans, x, a):
    """d slope/dx = psi(a) - log x - slope ((a - 1)/x - 1), from dp/da = p (log x - psi(a))."""
    return t * (_special_fn("digamma")(a) - fnp.log(x) - ans * ((a - 1.0) / x - 1.0))


def _slope_da(t, ans, x, a):
    """d slope/da, by a central difference of the slope (its own derivatives
    are these rules again: every order exists, each less accurate).  The step
    is wider than the slope's own, whose rounding (about 1e-8 relative) a
    narrow step would magnify: relative error about 1e-5."""
    h = 200.0 * _step(fnp.stop_gradient(a))
    return t * (_slope_of(x, a + h) - _slope_of(x, a - h)) / (2.0 * h)


def _special_fn(name):
    from ..scipy import special
    return getattr(special, name)


def _slope_of(x, a):
    from ..core.tracer import bind
    return bind(registry["gamma_slope"], x, a)


def _key_shape(key):
    if tuple(key) != (2,):
        raise ValueError(f"a random key is an array of two uint32 words; got shape {key}")


def _drawn(shape_rule):
    """A shape rule that checks the key (operand 0) first."""
    def rule(key, *operands, **params):
        _key_shape(key)
        return shape_rule(*operands, **params)
    return rule


def _declare(name, impl, nargs, shape_rule, differentiable=False):
    p = defprim(name, impl, nargs, differentiable=differentiable,
                doc="a keyed random draw (fastad.random)")
    defshape(p, _drawn(shape_rule))
    defbatch(p, batching.per_example)  # one key per example
    return p


_declare("prng_split", _split, 1, lambda shape: (*shape, 2))
_declare("prng_fold_in", _fold_in, 2, lambda data: (2,))
_declare("prng_bits", _bits, 1, lambda shape, width: tuple(shape))
_declare("prng_uniform", _uniform, 1, lambda shape, dtype: tuple(shape))
_declare("prng_normal", _normal, 1, lambda shape, dtype: tuple(shape))
_declare("prng_randint", _randint, 3, lambda lo, hi, shape, dtype: tuple(shape))
_declare("prng_permutation", _permutation, 1, lambda n: (n,))
_declare("prng_poisson", _poisson, 2, lambda lam, shape: tuple(shape))
_declare("prng_binomial", _binomial, 3, lambda n, p, shape: tuple(shape))

_p = _declare("prng_gamma", _gamma, 2, lambda a, shape: tuple(shape), differentiable=True)
defvjp(_p, no_rule("a random draw with respect to its key"),
       lambda g, ans, key, a, shape: fnp.unbroadcast(g * _slope_of(ans, a), fnp.shape(a)))
defjvp(_p, no_rule("a random draw with respect to its key"),
       lambda t, ans, key, a, shape: t * _slope_of(ans, a))
_p = defprim("gamma_slope", gamma_slope, 2, doc="the implicit derivative of a gamma draw")
defshape(_p, lambda x, a: x)
defbatch(_p, batching.per_example)
defvjp(_p, lambda g, ans, x, a: fnp.unbroadcast(_slope_dx(g, ans, x, a), fnp.shape(x)),
       lambda g, ans, x, a: fnp.unbroadcast(_slope_da(g, ans, x, a), fnp.shape(a)))
defjvp(_p, _slope_dx, _slope_da)

# (names: the fallback chain routes these to host calls without a warning)
DRAWS = frozenset(name for name in registry if name.startswith("prng_")) | {"gamma_slope"}
