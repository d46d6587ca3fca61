"""``jax.lax``'s reductions, cumulative reductions, sorts and
``associative_scan``, over `fastad.numpy`'s traced reductions, ufunc
accumulations and gathers (sorting orders are traced integer data, so a
compiled function sorts each call's values)."""
from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as _np

from .. import numpy as fnp
from ..core import pytree
from ..loops import scan
from . import _elementwise as _ew
from ._shapes import concatenate, rev, slice_in_dim

__all__ = [
    "reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "reduce_and", "reduce_or",
    "reduce_xor", "argmax", "argmin", "reduce", "cumsum", "cumprod", "cummax", "cummin",
    "cumlogsumexp", "sort", "sort_key_val", "top_k", "associative_scan",
]


def _axes(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(a) for a in axes)


def reduce_sum(operand: Any, axes: Sequence[int], *, out_sharding: Any = None) -> Any:
    return fnp.sum(operand, axis=_axes(axes))


def reduce_prod(operand: Any, axes: Sequence[int]) -> Any:
    return fnp.prod(operand, axis=_axes(axes))


def reduce_max(operand: Any, axes: Sequence[int]) -> Any:
    return fnp.amax(operand, axis=_axes(axes))


def reduce_min(operand: Any, axes: Sequence[int]) -> Any:
    return fnp.amin(operand, axis=_axes(axes))


def _bitwise_reduce(ufunc: Any, name: str) -> Callable[[Any, Sequence[int]], Any]:
    def reduce_bits(operand: Any, axes: Sequence[int]) -> Any:
        kind = _np.result_type(operand).kind
        if kind not in "biu":
            raise TypeError(f"fastad.lax.{name} takes boolean or integer arrays, not "
                            f"{_np.result_type(operand)}")
        return ufunc.reduce(operand, axis=_axes(axes))
    reduce_bits.__name__ = name
    return reduce_bits


reduce_and = _bitwise_reduce(_np.bitwise_and, "reduce_and")
reduce_or = _bitwise_reduce(_np.bitwise_or, "reduce_or")
reduce_xor = _bitwise_reduce(_np.bitwise_xor, "reduce_xor")


def argmax(operand: Any, axis: int, index_dtype: Any) -> Any:
    return fnp.asarray(fnp.argmax(operand, axis=axis)).astype(index_dtype)


def argmin(operand: Any, axis: int, index_dtype: Any) -> Any:
    return fnp.asarray(fnp.argmin(operand, axis=axis)).astype(index_dtype)


# The computations `reduce` recognises, by identity, and the reduction each
# stands for; any other binary function is folded.
_MONOIDS: dict[Any, Callable[[Any, Sequence[int]], Any]] = {}
for _fns, _red in (((_ew.add, _np.add, operator.add), reduce_sum),
                   ((_ew.mul, _np.multiply, operator.mul), reduce_prod),
                   ((_ew.max, _np.maximum, fnp.maximum), reduce_max),
                   ((_ew.min, _np.minimum, fnp.minimum), reduce_min),
                   ((_ew.bitwise_and, _np.bitwise_and, operator.and_), reduce_and),
                   ((_ew.bitwise_or, _np.bitwise_or, operator.or_), reduce_or),
                   ((_ew.bitwise_xor, _np.bitwise_xor, operator.xor), reduce_xor)):
    for _fn in _fns:
        _MONOIDS[_fn] = _red


def reduce(operands: Any, init_values: Any, computation: Callable[[Any, Any], Any],  # noqa: A001
           dimensions: Sequence[int]) -> Any:
    """``computation`` folded over ``dimensions``, from ``init_values``:
    lax.add / mul / max / min / bitwise ops become the matching reduction;
    any other function of (pytrees of) scalars is applied elementwise in a
    left fold over the reduced elements (a scan)."""
    dims = tuple(sorted(int(d) for d in dimensions))
    known = _MONOIDS.get(computation)
    leaves, tree = pytree.flatten(operands)
    if known is not None and tree == pytree.LEAF:
        return computation(known(operands, dims), init_values)
    init_leaves = pytree.flatten(init_values)[0]
    if len(init_leaves) != len(leaves):
        raise ValueError("reduce: init_values must have the structure of operands")
    shape = tuple(fnp.shape(leaves[0]))
    kept = [a for a in range(len(shape)) if a not in dims]
    n = int(_np.prod([shape[d] for d in dims], dtype=_np.int64))
    rest = tuple(shape[a] for a in kept)
    xs = [fnp.reshape(fnp.transpose(x, dims + tuple(kept)), (n,) + rest) for x in leaves]
    init = [fnp.broadcast_to(fnp.asarray(i).astype(_np.result_type(x)), rest)
            + fnp.zeros(rest, _np.result_type(x)) for i, x in zip(init_leaves, leaves)]

    def step(acc: list, x: list) -> tuple:
        out = computation(pytree.unflatten(tree, list(acc)), pytree.unflatten(tree, list(x)))
        return list(pytree.flatten(out)[0]), None

    if n == 0:
        return pytree.unflatten(tree, init)
    return pytree.unflatten(tree, list(scan(step, init, xs)[0]))


# -- cumulative reductions ----------------------------------------------------------------
def _cumulative(accumulate: Callable[[Any, int], Any], name: str) -> Callable[..., Any]:
    def cumulative(operand: Any, axis: int = 0, reverse: bool = False) -> Any:
        if not reverse:
            return accumulate(operand, axis)
        return fnp.flip(accumulate(fnp.flip(operand, axis=axis), axis), axis=axis)
    cumulative.__name__ = name
    cumulative.__doc__ = f"``jax.lax.{name}``: along ``axis``, from the end if ``reverse``."
    return cumulative


cumsum = _cumulative(lambda x, axis: fnp.cumsum(x, axis=axis), "cumsum")
cumprod = _cumulative(lambda x, axis: fnp.cumprod(x, axis=axis), "cumprod")
cummax = _cumulative(lambda x, axis: _np.maximum.accumulate(x, axis=axis), "cummax")
cummin = _cumulative(lambda x, axis: _np.minimum.accumulate(x, axis=axis), "cummin")
cumlogsumexp = _cumulative(lambda x, axis: _np.logaddexp.accumulate(x, axis=axis),
                           "cumlogsumexp")


# -- sorting ------------------------------------------------------------------------------
def _take(x: Any, order: Any, axis: int) -> Any:
    return fnp.take_along_axis(x, order, axis=axis)


def sort(operand: Any, dimension: int = -1, is_stable: bool = True, num_keys: int = 1) -> Any:
    """One array sorted along ``dimension``, or a sequence of arrays all
    permuted by the lexicographic order of their first ``num_keys`` (stably:
    JAX's ``is_stable=False`` may keep any order of ties; this keeps theirs)."""
    if not isinstance(operand, (tuple, list)):
        if num_keys != 1:
            raise ValueError("sort: num_keys > 1 needs a sequence of operands")
        return fnp.sort(operand, axis=dimension)
    operands = list(operand)
    if not 1 <= num_keys <= len(operands):
        raise ValueError(f"sort: num_keys={num_keys} for {len(operands)} operand(s)")
    shapes = {tuple(fnp.shape(x)) for x in operands}
    if len(shapes) != 1:
        raise ValueError(f"sort: the operands must have one shape; got {sorted(shapes)}")
    order = _lexicographic_order(operands[:num_keys], dimension)
    return tuple(_take(x, order, dimension) for x in operands)


def _lexicographic_order(keys: Sequence[Any], axis: int) -> Any:
    """The stable order sorting by keys[0], ties by keys[1], ...: one stable
    argsort per key, least significant first."""
    order = fnp.argsort(keys[-1], axis=axis, kind="stable")
    for key in reversed(keys[:-1]):
        order = _take(order, fnp.argsort(_take(key, order, axis), axis=axis, kind="stable"),
                      axis)
    return order


def sort_key_val(keys: Any, values: Any, dimension: int = -1, is_stable: bool = True) -> tuple:
    return sort((keys, values), dimension, is_stable, 1)


def top_k(operand: Any, k: int, *, axis: int = -1) -> tuple:
    """The k largest along ``axis`` in decreasing order (ties: the lower index
    first; NaN above every number, as JAX's) and their int32 indices."""
    n = fnp.shape(operand)[axis]
    if not 0 <= int(k) <= n:
        raise ValueError(f"top_k: k={k} for an axis of size {n}")
    kind = _np.result_type(operand).kind
    if kind == "b":
        order = fnp.argsort(fnp.logical_not(operand), axis=axis, kind="stable")
    elif kind == "f":
        order = _lexicographic_order([fnp.logical_not(fnp.isnan(operand)),
                                      fnp.negative(operand)], axis)
    else:  # ~x decreases as x increases, with no overflow at the minimum
        order = fnp.argsort(fnp.invert(operand), axis=axis, kind="stable")
    values = slice_in_dim(_take(operand, order, axis), 0, int(k), 1, axis)
    return values, fnp.asarray(slice_in_dim(order, 0, int(k), 1, axis)).astype(_np.int32)


# -- associative_scan ---------------------------------------------------------------------
def _interleave(a: Any, b: Any, axis: int) -> Any:
    """a's elements at the even positions of ``axis``, b's at the odd ones
    (len(a) is len(b) or len(b) + 1)."""
    na, nb = fnp.shape(a)[axis], fnp.shape(b)[axis]
    if na != nb:  # b padded with a copy of a's last element, dropped after
        b = concatenate([b, slice_in_dim(a, na - 1, na, 1, axis)], axis)
    pairs = fnp.stack([a, b], axis=axis + 1)
    shape = list(fnp.shape(a))
    shape[axis] = 2 * na
    return slice_in_dim(fnp.reshape(pairs, tuple(shape)), 0, na + nb, 1, axis)


def associative_scan(fn: Callable[[Any, Any], Any], elems: Any, reverse: bool = False,
                     axis: int = 0) -> Any:
    """``jax.lax.associative_scan``: the prefix combinations of ``elems``
    (a pytree of arrays) along ``axis`` by JAX's odd-even recursion, so that
    ``fn`` (elementwise over ``axis``) is called O(log n) times on whole
    arrays and a non-exact associativity (floats) rounds as JAX's does."""
    if not callable(fn):
        raise TypeError("associative_scan: fn must be callable")
    leaves, tree = pytree.flatten(elems)
    if not leaves:
        return elems
    axis = axis % fnp.ndim(leaves[0])
    n = fnp.shape(leaves[0])[axis]
    if any(fnp.shape(x)[axis] != n for x in leaves):
        raise ValueError("associative_scan: every array needs the same size along axis; got "
                         f"{[tuple(fnp.shape(x)) for x in leaves]}")
    if reverse:
        leaves = [rev(x, [axis]) for x in leaves]

    def combine(a: list, b: list) -> list:
        c = fn(pytree.unflatten(tree, a), pytree.unflatten(tree, b))
        return list(pytree.flatten(c)[0])

    def part(xs: list, start: int, stop: int | None, stride: int = 1) -> list:
        return [slice_in_dim(x, start, stop, stride, axis) for x in xs]

    def run(xs: list) -> list:
        m = fnp.shape(xs[0])[axis]
        if m < 2:
            return xs
        odd = run(combine(part(xs, 0, -1, 2), part(xs, 1, None, 2)))
        if m % 2 == 0:
            even = combine(part(odd, 0, -1), part(xs, 2, None, 2))
        else:
            even = combine(odd, part(xs, 2, None, 2))
        even = [concatenate([first, e], axis) for first, e in zip(part(xs, 0, 1), even)]
        return [_interleave(e, o, axis) for e, o in zip(even, odd)]

    out = run(list(leaves))
    if reverse:
        out = [rev(x, [axis]) for x in out]
    return pytree.unflatten(tree, out)


