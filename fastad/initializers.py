"""``jax.nn.initializers``: functions ``init(key, shape, dtype)`` drawing
initial weights from a `fastad.random` key (so ``fastad.nn.initializers``
runs code written with ``jax.nn.initializers``).  The default dtype is
fastad's float64 where JAX's is float32."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from . import numpy as fnp
from . import random

__all__ = ["constant", "delta_orthogonal", "glorot_normal", "glorot_uniform", "he_normal",
           "he_uniform", "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform",
           "normal", "ones", "orthogonal", "truncated_normal", "uniform", "variance_scaling",
           "xavier_normal", "xavier_uniform", "zeros"]

Initializer = Callable[..., Any]
_F64 = np.float64


def zeros(key: Any, shape: Sequence[int], dtype: Any = _F64) -> Any:
    return np.zeros(shape, dtype)


def ones(key: Any, shape: Sequence[int], dtype: Any = _F64) -> Any:
    return np.ones(shape, dtype)


def constant(value: Any, dtype: Any = _F64) -> Initializer:
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        return fnp.full(shape, value, dtype=dtype)
    return init


def normal(stddev: float = 1e-2, dtype: Any = _F64) -> Initializer:
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        return random.normal(key, shape, dtype) * np.asarray(stddev, dtype)
    return init


def uniform(scale: float = 1e-2, dtype: Any = _F64) -> Initializer:
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        return random.uniform(key, shape, dtype) * np.asarray(scale, dtype)
    return init


def truncated_normal(stddev: float = 1e-2, dtype: Any = _F64, lower: float = -2.0,
                     upper: float = 2.0) -> Initializer:
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        return random.truncated_normal(key, lower, upper, shape, dtype) * np.asarray(stddev, dtype)
    return init


def _fans(shape: Sequence[int], in_axis: Any, out_axis: Any, batch_axis: Any) -> tuple[float, float]:
    if len(shape) < 2:
        raise ValueError(f"variance scaling needs a shape of at least 2 dimensions, got {shape}")
    axes = lambda a: (a,) if isinstance(a, int) else tuple(a)  # noqa: E731
    size = lambda a: math.prod(shape[i] for i in axes(a))  # noqa: E731
    receptive = math.prod(shape) / size(in_axis) / size(out_axis) / size(batch_axis)
    return size(in_axis) * receptive, size(out_axis) * receptive


def variance_scaling(scale: float, mode: str, distribution: str, in_axis: Any = -2,
                     out_axis: Any = -1, batch_axis: Any = (), dtype: Any = _F64) -> Initializer:
    """Draws of variance ``scale / fan`` (fan_in, fan_out or their mean)."""
    if mode not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
        raise ValueError(f"invalid mode for variance scaling initializer: {mode}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"invalid distribution for variance scaling initializer: {distribution}")

    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        shape = tuple(shape)
        fan_in, fan_out = _fans(shape, in_axis, out_axis, batch_axis)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
               "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]
        variance = np.asarray(scale / fan, dtype)
        if distribution == "truncated_normal":
            # the standard deviation of a standard normal truncated to (-2, 2)
            return random.truncated_normal(key, -2, 2, shape, dtype) * \
                (np.sqrt(variance) / np.asarray(.87962566103423978, dtype))
        if distribution == "normal":
            return random.normal(key, shape, dtype) * np.sqrt(variance)
        return random.uniform(key, shape, dtype, -1) * np.sqrt(3 * variance)
    return init


def _preset(scale: float, mode: str, distribution: str, name: str) -> Callable[..., Initializer]:
    """JAX's named `variance_scaling` settings (glorot_*, lecun_*, he_*)."""
    def preset(in_axis: Any = -2, out_axis: Any = -1, batch_axis: Any = (),
               dtype: Any = _F64) -> Initializer:
        return variance_scaling(scale, mode, distribution, in_axis, out_axis, batch_axis, dtype)
    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = f"variance_scaling({scale}, {mode!r}, {distribution!r})"
    return preset


glorot_uniform = _preset(1.0, "fan_avg", "uniform", "glorot_uniform")
glorot_normal = _preset(1.0, "fan_avg", "truncated_normal", "glorot_normal")
lecun_uniform = _preset(1.0, "fan_in", "uniform", "lecun_uniform")
lecun_normal = _preset(1.0, "fan_in", "truncated_normal", "lecun_normal")
he_uniform = _preset(2.0, "fan_in", "uniform", "he_uniform")
he_normal = _preset(2.0, "fan_in", "truncated_normal", "he_normal")
xavier_uniform, xavier_normal = glorot_uniform, glorot_normal
kaiming_uniform, kaiming_normal = he_uniform, he_normal


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: Any = _F64) -> Initializer:
    """A matrix (reshaped to ``shape``) with orthonormal columns or rows."""
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError("orthogonal initializer requires at least a 2D shape")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        q = random.orthogonal(key, n_rows, (), dtype, n_cols)
        rest = tuple(np.delete(np.array(shape), column_axis))
        q = fnp.reshape(q, rest + (n_cols,))
        return scale * fnp.moveaxis(q, -1, column_axis)
    return init


def delta_orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: Any = _F64) -> Initializer:
    """A convolution kernel (3 to 5 dimensions) zero but at its spatial
    centre, where it is an orthogonal matrix."""
    def init(key: Any, shape: Sequence[int], dtype: Any = dtype) -> Any:
        shape = tuple(shape)
        if len(shape) not in (3, 4, 5) or shape[-2] > shape[-1]:
            raise ValueError("delta_orthogonal needs a 3-5 dimensional kernel shape with "
                             f"in_channels <= out_channels, got {shape}")
        q = orthogonal(scale, column_axis, dtype)(key, shape[-2:], dtype)
        spatial = shape[:-2]
        q = fnp.reshape(q, (1,) * len(spatial) + shape[-2:])
        return fnp.pad(q, [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in spatial] + [(0, 0)] * 2)
    return init
