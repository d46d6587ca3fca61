"""``jax.example_libraries.stax``: layers as ``(init_fun, apply_fun)``
pairs, ``init_fun(key, input_shape) -> (output_shape, params)`` and
``apply_fun(params, inputs, **kwargs)``, over fastad.numpy, `fastad.lax`
and `fastad.random` keys.  Output shapes are found by running the layer on
zeros (a batch size of -1 passes through)."""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

from .. import lax
from .. import nn
from .. import numpy as jnp
from .. import random
from ..initializers import glorot_normal, normal, ones, zeros

__all__ = ["AvgPool", "BatchNorm", "Conv", "Conv1DTranspose", "ConvTranspose", "Dense",
           "Dropout", "Elu", "Exp", "FanInConcat", "FanInSum", "FanOut", "Flatten", "Gelu",
           "GeneralConv", "Identity", "LeakyRelu", "LogSoftmax", "MaxPool", "Relu", "Selu",
           "Sigmoid", "Softmax", "Softplus", "SumPool", "Tanh", "elementwise", "parallel",
           "serial", "shape_dependent"]

Layer = tuple[Callable[..., Any], Callable[..., Any]]


def _output_shape(apply_fun: Callable[..., Any], params: Any, input_shape: tuple) -> tuple:
    """The layer's output shape: applied to zeros, a -1 (batch) size as 1 and back."""
    shape = tuple(1 if d < 0 else d for d in input_shape)
    out = tuple(jnp.shape(apply_fun(params, jnp.zeros(shape))))
    return tuple(-1 if k < len(input_shape) and input_shape[k] < 0 and n == 1 else n
                 for k, n in enumerate(out))


def Dense(out_dim: int, W_init: Any = glorot_normal(), b_init: Any = normal()) -> Layer:  # noqa: N802,N803
    """A dense layer, inputs @ W + b."""
    def init_fun(rng: Any, input_shape: tuple) -> tuple:
        k1, k2 = random.split(rng)
        return (tuple(input_shape[:-1]) + (out_dim,),
                (W_init(k1, (input_shape[-1], out_dim)), b_init(k2, (out_dim,))))

    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        w, b = params
        return jnp.dot(inputs, w) + b
    return init_fun, apply_fun


def _conv_layer(dimension_numbers: Any, out_chan: int, filter_shape: tuple, W_init: Any,  # noqa: N803
                b_init: Any, apply_fun: Callable[..., Any]) -> Layer:
    """A convolution layer's init (kernel and bias shapes from the dimension
    numbers, output shape by running it) around its ``apply_fun``."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    W_init = W_init or glorot_normal(rhs_spec.index("I"), rhs_spec.index("O"))  # noqa: N806

    def init_fun(rng: Any, input_shape: tuple) -> tuple:
        sizes = iter(filter_shape)
        kernel_shape = tuple(out_chan if c == "O" else input_shape[lhs_spec.index("C")]
                             if c == "I" else next(sizes) for c in rhs_spec)
        bias_shape = tuple(out_chan if c == "C" else 1 for c in out_spec)
        k1, k2 = random.split(rng)
        params = (W_init(k1, kernel_shape), b_init(k2, bias_shape))
        return _output_shape(apply_fun, params, input_shape), params
    return init_fun, apply_fun


def GeneralConv(dimension_numbers: Any, out_chan: int, filter_shape: tuple,  # noqa: N802
                strides: Any = None, padding: Any = "VALID", W_init: Any = None,  # noqa: N803
                b_init: Any = normal(1e-6)) -> Layer:
    """A convolution with lax's dimension numbers, e.g. ('NHWC', 'HWIO', 'NHWC')."""
    one = (1,) * len(filter_shape)

    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        w, b = params
        return lax.conv_general_dilated(inputs, w, strides or one, padding, one, one,
                                        dimension_numbers=dimension_numbers) + b
    return _conv_layer(dimension_numbers, out_chan, filter_shape, W_init, b_init, apply_fun)


Conv = functools.partial(GeneralConv, ("NHWC", "HWIO", "NHWC"))


def GeneralConvTranspose(dimension_numbers: Any, out_chan: int, filter_shape: tuple,  # noqa: N802
                         strides: Any = None, padding: Any = "VALID", W_init: Any = None,  # noqa: N803
                         b_init: Any = normal(1e-6)) -> Layer:
    """A transposed convolution (lax.conv_transpose)."""
    strides = strides or (1,) * len(filter_shape)

    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        w, b = params
        return lax.conv_transpose(inputs, w, strides, padding,
                                  dimension_numbers=dimension_numbers) + b
    return _conv_layer(dimension_numbers, out_chan, filter_shape, W_init, b_init, apply_fun)


Conv1DTranspose = functools.partial(GeneralConvTranspose, ("NHC", "HIO", "NHC"))
ConvTranspose = functools.partial(GeneralConvTranspose, ("NHWC", "HWIO", "NHWC"))


def BatchNorm(axis: Any = (0, 1, 2), epsilon: float = 1e-5, center: bool = True,  # noqa: N802
              scale: bool = True, beta_init: Any = zeros, gamma_init: Any = ones) -> Layer:
    """Normalization over ``axis`` by the batch's statistics, then gamma * z + beta."""
    axis = (axis,) if jnp.ndim(axis) == 0 else tuple(axis)

    def init_fun(rng: Any, input_shape: tuple) -> tuple:
        shape = tuple(d for i, d in enumerate(input_shape) if i not in axis)
        k1, k2 = random.split(rng)
        return input_shape, (beta_init(k1, shape) if center else (),
                             gamma_init(k2, shape) if scale else ())

    def apply_fun(params: Any, x: Any, **kwargs: Any) -> Any:
        beta, gamma = params
        ed = tuple(None if i in axis else slice(None) for i in range(jnp.ndim(x)))
        z = nn.standardize(x, axis, epsilon=epsilon)
        if scale:
            z = gamma[ed] * z
        return z + beta[ed] if center else z
    return init_fun, apply_fun


def elementwise(fun: Callable[..., Any], **fun_kwargs: Any) -> Layer:
    """A layer applying ``fun`` to its inputs."""
    return (lambda rng, input_shape: (input_shape, ()),
            lambda params, inputs, **kwargs: fun(inputs, **fun_kwargs))


Tanh = elementwise(jnp.tanh)
Relu = elementwise(nn.relu)
Exp = elementwise(jnp.exp)
LogSoftmax = elementwise(nn.log_softmax, axis=-1)
Softmax = elementwise(nn.softmax, axis=-1)
Softplus = elementwise(nn.softplus)
Sigmoid = elementwise(nn.sigmoid)
Elu = elementwise(nn.elu)
LeakyRelu = elementwise(nn.leaky_relu)
Selu = elementwise(nn.selu)
Gelu = elementwise(nn.gelu)


def _pooling_layer(reducer: Any, init_val: float, average: bool = False) -> Callable[..., Layer]:
    def PoolingLayer(window_shape: tuple, strides: Any = None, padding: Any = "VALID",  # noqa: N802
                     spec: Any = None) -> Layer:
        strides = strides or (1,) * len(window_shape)
        batch_axes = (0, len(window_shape) + 1) if spec is None \
            else (spec.index("N"), spec.index("C"))
        dims, steps = tuple(window_shape), tuple(strides)
        for i in sorted(batch_axes):
            dims, steps = dims[:i] + (1,) + dims[i:], steps[:i] + (1,) + steps[i:]

        def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
            out = lax.reduce_window(inputs, init_val, reducer, dims, steps, padding)
            if not average:
                return out
            spatial = tuple(n for i, n in enumerate(jnp.shape(inputs)) if i not in batch_axes)
            inner = tuple(d for i, d in enumerate(dims) if i not in batch_axes)
            inner_steps = tuple(s for i, s in enumerate(steps) if i not in batch_axes)
            counts = lax.reduce_window(jnp.ones(spatial), 0.0, lax.add, inner, inner_steps,
                                       padding)
            for i in sorted(batch_axes):
                counts = jnp.expand_dims(counts, i)
            return out / counts

        def init_fun(rng: Any, input_shape: tuple) -> tuple:
            return _output_shape(apply_fun, (), input_shape), ()
        return init_fun, apply_fun
    return PoolingLayer


MaxPool = _pooling_layer(lax.max, -math.inf)
SumPool = _pooling_layer(lax.add, 0.0)
AvgPool = _pooling_layer(lax.add, 0.0, average=True)


def _flatten() -> Layer:
    return (lambda rng, input_shape: ((input_shape[0], math.prod(input_shape[1:])), ()),
            lambda params, inputs, **kwargs: jnp.reshape(inputs, (jnp.shape(inputs)[0], -1)))


Flatten = _flatten()
Identity = (lambda rng, input_shape: (input_shape, ()),
            lambda params, inputs, **kwargs: inputs)


def FanOut(num: int) -> Layer:  # noqa: N802
    return (lambda rng, input_shape: ([input_shape] * num, ()),
            lambda params, inputs, **kwargs: [inputs] * num)


FanInSum = (lambda rng, input_shape: (input_shape[0], ()),
            lambda params, inputs, **kwargs: sum(inputs))


def FanInConcat(axis: int = -1) -> Layer:  # noqa: N802
    def init_fun(rng: Any, input_shape: Any) -> tuple:
        ax = axis % len(input_shape[0])
        size = sum(shape[ax] for shape in input_shape)
        return tuple(input_shape[0][:ax]) + (size,) + tuple(input_shape[0][ax + 1:]), ()
    return init_fun, lambda params, inputs, **kwargs: jnp.concatenate(inputs, axis)


def Dropout(rate: float, mode: str = "train") -> Layer:  # noqa: N802
    """Keeps each input with probability ``rate`` (JAX's stax convention),
    scaled by 1/rate, in mode "train"; needs ``rng=`` there."""
    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        rng = kwargs.get("rng")
        if mode != "train":
            return inputs
        if rng is None:
            raise ValueError("Dropout layer requires apply_fun to be called with a PRNG key "
                             "argument: apply_fun(params, inputs, rng=key)")
        keep = random.bernoulli(rng, rate, jnp.shape(inputs))
        return jnp.where(keep, inputs / rate, 0.0)
    return (lambda rng, input_shape: (input_shape, ())), apply_fun


def serial(*layers: Layer) -> Layer:
    """The layers one after the other."""
    init_funs, apply_funs = zip(*layers)

    def init_fun(rng: Any, input_shape: Any) -> tuple:
        params = []
        for init in init_funs:
            rng, layer_rng = random.split(rng)
            input_shape, param = init(layer_rng, input_shape)
            params.append(param)
        return input_shape, params

    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        rng = kwargs.pop("rng", None)
        rngs = random.split(rng, len(layers)) if rng is not None else (None,) * len(layers)
        for fun, param, key in zip(apply_funs, params, rngs):
            inputs = fun(param, inputs, rng=key, **kwargs)
        return inputs
    return init_fun, apply_fun


def parallel(*layers: Layer) -> Layer:
    """The layers side by side on a sequence of inputs (with FanOut, FanInSum)."""
    init_funs, apply_funs = zip(*layers)

    def init_fun(rng: Any, input_shape: Any) -> tuple:
        rngs = random.split(rng, len(layers))
        shapes, params = zip(*[init(key, shape)
                               for init, key, shape in zip(init_funs, rngs, input_shape)])
        return list(shapes), list(params)

    def apply_fun(params: Any, inputs: Any, **kwargs: Any) -> Any:
        rng = kwargs.pop("rng", None)
        rngs = random.split(rng, len(layers)) if rng is not None else (None,) * len(layers)
        return [f(p, x, rng=r, **kwargs) for f, p, x, r in zip(apply_funs, params, inputs, rngs)]
    return init_fun, apply_fun


def shape_dependent(make_layer: Callable[[tuple], Layer]) -> Layer:
    """A layer made once the input shape is known."""
    return (lambda rng, input_shape: make_layer(input_shape)[0](rng, input_shape),
            lambda params, inputs, **kwargs: make_layer(jnp.shape(inputs))[1](params, inputs,
                                                                              **kwargs))
