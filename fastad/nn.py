"""``jax.nn``'s activation and normalization functions, over fastad.numpy, so
code written with ``import jax.nn as nn`` runs with ``import fastad.nn as nn``.

Derivatives at the kinks are JAX's: ``relu``'s is 0 at 0, ``relu6``'s 0
at 0 and 6, ``hard_tanh``'s 1 at -1 and 1, ``leaky_relu``'s 1 at 0: each
``where`` picks the branch JAX's rule picks.  ``softmax``'s shift by the maximum carries no
gradient (it cancels), as in JAX.  ``initializers`` is `fastad.initializers`,
drawing from `fastad.random` keys.
"""
from __future__ import annotations

import math
from typing import Any

import sys as _sys

from . import initializers
from . import numpy as fnp
from .scipy import special as _special

_sys.modules[__name__ + ".initializers"] = initializers  # import fastad.nn.initializers

__all__ = ["celu", "dot_product_attention", "elu", "gelu", "glu", "hard_sigmoid", "hard_silu",
           "hard_swish", "log1mexp", "logmeanexp",
           "hard_tanh", "identity", "leaky_relu", "log_sigmoid", "log_softmax", "logsumexp",
           "mish", "one_hot", "relu", "relu6", "selu", "sigmoid", "silu", "soft_sign",
           "softmax", "softplus", "sparse_plus", "sparse_sigmoid", "squareplus", "standardize",
           "swish", "tanh"]

tanh = fnp.tanh
sigmoid = _special.expit
log_sigmoid = _special.log_expit
logsumexp = _special.logsumexp


def identity(x: Any) -> Any:
    return x


def relu(x: Any) -> Any:
    """max(x, 0); derivative 0 at 0."""
    return fnp.where(x > 0, x, 0.0)


def relu6(x: Any) -> Any:
    """min(max(x, 0), 6); derivative 0 at 0 and 6."""
    return fnp.where(x >= 6, 6.0, relu(x))


def softplus(x: Any) -> Any:
    """log(1 + exp(x))."""
    return fnp.logaddexp(x, 0.0)


def sparse_plus(x: Any) -> Any:
    """0 below -1, (x + 1)^2 / 4 between, x above 1."""
    middle = (x + 1.0) ** 2 / 4.0
    return fnp.where(x <= -1.0, 0.0, fnp.where(x >= 1.0, x, middle))


def sparse_sigmoid(x: Any) -> Any:
    """The derivative of `sparse_plus`: 0, (x + 1) / 2, 1."""
    return fnp.where(x <= -1.0, 0.0, fnp.where(x >= 1.0, 1.0, (x + 1.0) / 2.0))


def soft_sign(x: Any) -> Any:
    return x / (fnp.abs(x) + 1.0)


def silu(x: Any) -> Any:
    """x * sigmoid(x)."""
    return x * sigmoid(x)


swish = silu


def hard_tanh(x: Any) -> Any:
    """x clipped to [-1, 1]; derivative 1 at the ends, as JAX's."""
    return fnp.where(x > 1.0, 1.0, fnp.where(x < -1.0, -1.0, x))


def hard_sigmoid(x: Any) -> Any:
    """relu6(x + 3) / 6."""
    return relu6(x + 3.0) / 6.0


def hard_silu(x: Any) -> Any:
    """x * hard_sigmoid(x)."""
    return x * hard_sigmoid(x)


hard_swish = hard_silu


def leaky_relu(x: Any, negative_slope: float = 1e-2) -> Any:
    return fnp.where(x >= 0, x, negative_slope * x)


def elu(x: Any, alpha: float = 1.0) -> Any:
    """x above 0, alpha * (exp(x) - 1) below (computed on min(x, 0), so a
    large x overflows nothing)."""
    return fnp.where(x > 0, x, alpha * fnp.expm1(fnp.where(x > 0, 0.0, x)))


def celu(x: Any, alpha: float = 1.0) -> Any:
    """max(x, 0) + alpha * expm1(min(x, 0) / alpha)."""
    return fnp.where(x > 0, x, alpha * fnp.expm1(fnp.where(x > 0, 0.0, x) / alpha))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x: Any) -> Any:
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def gelu(x: Any, approximate: bool = True) -> Any:
    """x * Phi(x); ``approximate=True`` (JAX's default) is the tanh form."""
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1.0 + fnp.tanh(inner))
    return 0.5 * x * (1.0 + _special.erf(x / math.sqrt(2.0)))


def mish(x: Any) -> Any:
    """x * tanh(softplus(x))."""
    return x * fnp.tanh(softplus(x))


def squareplus(x: Any, b: float = 4.0) -> Any:
    """(x + sqrt(x^2 + b)) / 2."""
    return (x + fnp.sqrt(x * x + b)) / 2.0


def glu(x: Any, axis: int = -1) -> Any:
    """a * sigmoid(b), a and b the halves of x along ``axis``."""
    a, b = fnp.split(x, 2, axis=axis)
    return a * sigmoid(b)


def _masked(x: Any, where: Any) -> Any:
    return x if where is None else fnp.where(where, x, -fnp.inf)


def log_softmax(x: Any, axis: Any = -1, where: Any = None) -> Any:
    """x - logsumexp(x) along ``axis``; ``where``: the entries taking part
    (the others get -inf)."""
    shifted = _masked(x, where)
    top = fnp.stop_gradient(fnp.max(shifted, axis=axis, keepdims=True))
    shifted = shifted - fnp.where(fnp.isfinite(top), top, 0.0)
    total = fnp.sum(fnp.exp(shifted), axis=axis, keepdims=True)
    return shifted - fnp.log(total)


def softmax(x: Any, axis: Any = -1, where: Any = None) -> Any:
    """exp(x) / sum(exp(x)) along ``axis``; ``where``: the entries taking part
    (the others get 0)."""
    shifted = _masked(x, where)
    top = fnp.stop_gradient(fnp.max(shifted, axis=axis, keepdims=True))
    e = fnp.exp(shifted - fnp.where(fnp.isfinite(top), top, 0.0))
    return e / fnp.sum(e, axis=axis, keepdims=True)


def standardize(x: Any, axis: Any = -1, mean: Any = None, variance: Any = None,
                epsilon: float = 1e-5, where: Any = None) -> Any:
    """(x - mean) / sqrt(variance + epsilon), the moments along ``axis`` (over
    the entries ``where`` selects) unless given."""
    def average(v: Any) -> Any:
        if where is None:
            return fnp.mean(v, axis=axis, keepdims=True)
        count = fnp.sum(fnp.broadcast_to(where, fnp.shape(v)), axis=axis, keepdims=True)
        return fnp.sum(fnp.where(where, v, 0.0), axis=axis, keepdims=True) / count
    if mean is None:
        mean = average(x)
    if variance is None:
        centered = x - mean
        variance = average(centered * centered)
    return (x - mean) / fnp.sqrt(variance + epsilon)


def one_hot(x: Any, num_classes: int, dtype: Any = float, axis: int = -1) -> Any:
    """1 where the class ``x`` (integers, plain or taken as data) is k along
    a new axis of length ``num_classes``, 0 elsewhere (all 0 for a class out
    of range)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"one_hot: num_classes must be an int, got {num_classes!r}")
    x = fnp.asarray(x)
    out_axis = axis if axis >= 0 else axis + fnp.ndim(x) + 1
    classes = fnp.arange(num_classes).reshape((-1,) + (1,) * (fnp.ndim(x) - out_axis))
    return fnp.asarray(fnp.expand_dims(x, out_axis) == classes).astype(dtype)


def log1mexp(x: Any) -> Any:
    """log(1 - exp(-x)) for x > 0, accurate at both ends (log1p or expm1)."""
    x = fnp.asarray(x)
    small = x <= math.log(2.0)
    return fnp.where(small, fnp.log(-fnp.expm1(-fnp.where(small, x, 1.0))),
                     fnp.log1p(-fnp.exp(-fnp.where(small, 1.0, x))))


def logmeanexp(x: Any, axis: Any = None, where: Any = None, keepdims: bool = False) -> Any:
    """log(mean(exp(x))) along ``axis`` (over the ``where`` entries)."""
    x = fnp.asarray(x)
    count = fnp.sum(fnp.broadcast_to(True if where is None else where, fnp.shape(x)),
                    axis=axis, keepdims=keepdims)
    return _special.logsumexp(fnp.where(True if where is None else where, x, -fnp.inf),
                              axis=axis, keepdims=keepdims) - fnp.log(count)


def dot_product_attention(query: Any, key: Any, value: Any, bias: Any = None, mask: Any = None,
                          *, scale: Any = None, is_causal: bool = False,
                          query_seq_lengths: Any = None, key_value_seq_lengths: Any = None,
                          local_window_size: Any = None, implementation: Any = None) -> Any:
    """``jax.nn.dot_product_attention``: softmax(q k^T * scale + bias) v with
    inputs (B, T, N, H) for queries and (B, S, K, H) for keys and values (the
    batch axis optional; N a multiple of K shares each key head among N/K
    query heads); ``mask`` (True: attend), ``is_causal``, sequence lengths
    and a local window mask the logits."""
    if implementation not in (None, "xla"):
        raise ValueError(f"implementation {implementation!r}: only the XLA form is here")
    batched = fnp.ndim(query) == 4
    q, k, v = (a if batched else fnp.expand_dims(a, 0) for a in (query, key, value))
    b, t, n, h = fnp.shape(q)
    s, heads = fnp.shape(k)[1], fnp.shape(k)[2]
    if n % heads:
        raise ValueError(f"{n} query heads cannot share {heads} key heads")
    if n != heads:
        k, v = fnp.repeat(k, n // heads, axis=2), fnp.repeat(v, n // heads, axis=2)
    logits = fnp.einsum("btnh,bsnh->bnts", q, k) * (1.0 / math.sqrt(h) if scale is None else scale)
    if bias is not None:
        logits = logits + (bias if batched or fnp.ndim(bias) == 4 else fnp.expand_dims(bias, 0))
    keep = fnp.ones((b, 1, t, s), dtype=bool)
    if mask is not None:
        keep = keep & (mask if batched or fnp.ndim(mask) == 4 else fnp.expand_dims(mask, 0))
    rows, cols = fnp.arange(t)[:, None], fnp.arange(s)[None, :]
    if is_causal:
        keep = keep & (cols <= rows)
    if local_window_size is not None:
        left, right = (local_window_size, local_window_size) \
            if isinstance(local_window_size, int) else local_window_size
        keep = keep & (cols >= rows - left) & (cols <= rows + right)
    if query_seq_lengths is not None:
        keep = keep & (rows < fnp.reshape(query_seq_lengths, (-1, 1, 1, 1)))
    if key_value_seq_lengths is not None:
        keep = keep & (cols < fnp.reshape(key_value_seq_lengths, (-1, 1, 1, 1)))
    probs = softmax(fnp.where(keep, logits, -0.7 * fnp.finfo(fnp.result_type(logits)).max),
                    axis=-1)
    out = fnp.einsum("bnts,bsnh->btnh", probs, v)
    return out if batched else out[0]
