"""``jax.lax``'s names that optimization and simulation code reaches for, so
that ``from jax import lax`` becomes ``from fastad import lax``: the loops
and branches (`fastad.loops`, `fastad.conventions`), ``map`` (a scan),
``select``, slicing by traced starts, and the elementwise functions under
their lax names.  Every one is differentiable and compiles like the rest."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as _np

from . import numpy as fnp
from .conventions import cond, stop_gradient, switch
from .loops import fori_loop, scan, while_loop
from .numpy._index_update import IndexUpdate
from .scipy import special as _special

__all__ = ["scan", "fori_loop", "while_loop", "cond", "switch", "stop_gradient", "map",
           "select", "dynamic_slice", "dynamic_update_slice", "dynamic_index_in_dim",
           "logistic", "rsqrt", "integer_pow", "square", "exp", "log", "log1p", "expm1",
           "tanh", "sin", "cos", "sqrt", "abs", "neg", "max", "min", "pow", "add", "sub",
           "mul", "div", "dot", "clamp", "erf", "lgamma", "digamma"]


def map(f: Callable[[Any], Any], xs: Any) -> Any:  # noqa: A001 - jax.lax's name
    """``jax.lax.map``: ``f`` over the leading axis of xs, stacked (a scan)."""
    return scan(lambda carry, x: (carry, f(x)), None, xs)[1]


def select(pred: Any, on_true: Any, on_false: Any) -> Any:
    return fnp.where(pred, on_true, on_false)


def dynamic_slice(operand: Any, start_indices: Sequence[Any], slice_sizes: Sequence[int]) -> Any:
    """``operand[start:start + size]`` along every axis, the starts clamped so
    the slice stays inside, as JAX does; traced starts are integers of the
    trace (a loop counter)."""
    out = operand
    for axis, (start, size) in enumerate(zip(start_indices, slice_sizes)):
        first = _clamped(start, fnp.shape(operand)[axis], size)
        out = fnp.take(out, first + _np.arange(size), axis=axis)
    return out


def _clamped(start: Any, n: int, size: int) -> Any:
    """A slice's start moved so that ``size`` elements from it fit in ``n``."""
    if isinstance(start, int):
        return min(max(start, 0), n - size)
    return fnp.clip(start, 0, n - size)


def dynamic_index_in_dim(operand: Any, index: Any, axis: int = 0, keepdims: bool = True) -> Any:
    sizes = list(fnp.shape(operand))
    sizes[axis] = 1
    starts = [0] * len(sizes)
    starts[axis] = index
    out = dynamic_slice(operand, starts, sizes)
    return out if keepdims else fnp.squeeze(out, axis=axis)


def dynamic_update_slice(operand: Any, update: Any, start_indices: Sequence[Any]) -> Any:
    """``operand`` with ``update`` written at ``start_indices`` (clamped as in
    `dynamic_slice`), a new array."""
    index = []
    for axis, start in enumerate(start_indices):
        size = fnp.shape(update)[axis]
        first = _clamped(start, fnp.shape(operand)[axis], size)
        shape = [1] * len(start_indices)
        shape[axis] = size
        index.append(fnp.reshape(first + _np.arange(size), shape))
    return IndexUpdate(operand, tuple(index)).set(update)


logistic, erf, lgamma, digamma = _special.expit, _special.erf, _special.gammaln, _special.digamma


def rsqrt(x: Any) -> Any:
    return 1.0 / fnp.sqrt(x)


def integer_pow(x: Any, y: int) -> Any:
    return x ** int(y)


def clamp(min: Any, x: Any, max: Any) -> Any:  # noqa: A002 - jax.lax's argument names
    return fnp.clip(x, min, max)


square, exp, log, log1p, expm1, tanh = (fnp.square, fnp.exp, fnp.log, fnp.log1p, fnp.expm1,
                                        fnp.tanh)
sin, cos, sqrt, abs, neg = fnp.sin, fnp.cos, fnp.sqrt, fnp.absolute, fnp.negative  # noqa: A001
max, min, pow = fnp.maximum, fnp.minimum, fnp.power  # noqa: A001
add, sub, mul, div, dot = fnp.add, fnp.subtract, fnp.multiply, fnp.divide, fnp.dot
