"""JAX's collectives over a vmapped axis: ``vmap(f, axis_name="i")`` and,
inside ``f``, ``lax.psum(x, "i")`` and the rest, with JAX's signatures and
results.  Three are primitives (`primitives.collectives`: psum, all_gather,
psum_scatter); the others are made of them, `axis_index` (the example's
traced index, an input vmap adds) and fastad.numpy.  A value no example
traced (a constant, ``psum(1, "i")``) is the same for every example, so its
psum, pmax, ... are computed at once: ``psum(1, "i")`` is the axis size, a
plain int, as in JAX.

Every collective takes a pytree and one axis name or a tuple of them (one
collective per name, the last name outermost); ``axis_index_groups``
(subgroups of a pmap's devices) is not provided.  Not provided either, with
an AttributeError: ragged_all_to_all, pswapaxes, pbroadcast, pcast, psend,
precv (device-to-device transfers and sharding annotations).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as _np

from .. import numpy as fnp
from ..core import pytree
from ..core.int_data import IntArrayTracer, IntTracer, integer_like
from ..core.registry import registry
from ..core.tracer import Tracer, bind
from ..primitives.collectives import bound_axis

__all__ = ["psum", "pmean", "pmax", "pmin", "all_gather", "psum_scatter", "axis_index",
           "axis_size", "ppermute", "pshuffle", "all_to_all"]


def _names(axis_name: Any) -> tuple[Any, ...]:
    return tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)


def _no_groups(axis_index_groups: Any, what: str) -> None:
    if axis_index_groups is not None:
        raise NotImplementedError(f"lax.{what}: axis_index_groups (subgroups of a pmap's "
                                  "devices) is not provided by fastad's vmap")


def _tree(fn, x: Any) -> Any:
    leaves, tree = pytree.flatten(x)
    return pytree.unflatten(tree, [fn(leaf) for leaf in leaves])


def _bind(name: str, x: Any, axis_name: Any, size: int) -> Any:
    return bind(registry[name], x, axis_name=axis_name, axis_size=size)


def psum(x: Any, axis_name: Any, *, axis_index_groups: Any = None) -> Any:
    """The sum of ``x`` over the examples of the vmapped axis ``axis_name``,
    the same for every example."""
    _no_groups(axis_index_groups, "psum")

    def one(leaf: Any) -> Any:
        for name in _names(axis_name):
            size, _ = bound_axis(name)
            leaf = _bind("psum", leaf, name, size) if isinstance(leaf, Tracer) else leaf * size
        return leaf
    return _tree(one, x)


def axis_size(axis_name: Any) -> int:
    """The number of examples of the vmapped axis (the product over a tuple)."""
    return int(_np.prod([bound_axis(name)[0] for name in _names(axis_name)], dtype=_np.int64))


def pmean(x: Any, axis_name: Any, *, axis_index_groups: Any = None) -> Any:
    """The mean of ``x`` over the examples."""
    _no_groups(axis_index_groups, "pmean")
    n = axis_size(axis_name)
    return _tree(lambda s: s / n, psum(x, axis_name))


def _reduced(x: Any, axis_name: Any, reduce: Any) -> Any:
    def one(leaf: Any) -> Any:
        for name in _names(axis_name):
            size, _ = bound_axis(name)
            if isinstance(leaf, (IntTracer, IntArrayTracer)):  # the chosen integers
                leaf = integer_like(reduce(_bind("all_gather", leaf, name, size), axis=0),
                                    leaf.sources, leaf.data_dtype)
            elif isinstance(leaf, Tracer):
                leaf = reduce(_bind("all_gather", leaf, name, size), axis=0)
        return leaf
    return _tree(one, x)


def pmax(x: Any, axis_name: Any, *, axis_index_groups: Any = None) -> Any:
    """The largest ``x`` of the examples (elementwise), for every example;
    its derivative is the max's along the gathered axis."""
    _no_groups(axis_index_groups, "pmax")
    return _reduced(x, axis_name, fnp.max)


def pmin(x: Any, axis_name: Any, *, axis_index_groups: Any = None) -> Any:
    """The smallest ``x`` of the examples (elementwise), for every example."""
    _no_groups(axis_index_groups, "pmin")
    return _reduced(x, axis_name, fnp.min)


def axis_index(axis_name: Any) -> Any:
    """The index of this example along the vmapped axis (int32, traced as
    data); for a tuple of names, the index into their flattened product."""
    index = None
    for name in _names(axis_name):
        size, k = bound_axis(name)
        index = k if index is None else index * size + k
    return index


def all_gather(x: Any, axis_name: Any, *, axis_index_groups: Any = None, axis: int = 0,
               tiled: bool = False) -> Any:
    """Every example's ``x``, stacked along a new axis ``axis`` (joined along
    ``axis`` when ``tiled``); a tuple of names gathers over their product."""
    _no_groups(axis_index_groups, "all_gather")
    names = _names(axis_name)

    def one(leaf: Any) -> Any:
        shape = tuple(fnp.shape(leaf))
        at = axis + len(shape) + 1 if axis < 0 else axis
        if not 0 <= at <= len(shape) or (tiled and at == len(shape)):
            raise ValueError(f"lax.all_gather: axis {axis} out of range for shape {shape}")
        gathered = leaf
        for name in reversed(names):
            size, _ = bound_axis(name)
            gathered = (_bind("all_gather", gathered, name, size)
                        if isinstance(gathered, Tracer)
                        else _np.broadcast_to(gathered, (size,) + _np.shape(gathered)))
        n = axis_size(names)
        gathered = fnp.reshape(gathered, (n,) + shape)
        if tiled:
            moved = fnp.moveaxis(gathered, 0, at)
            return fnp.reshape(moved, shape[:at] + (n * shape[at],) + shape[at + 1:])
        return fnp.moveaxis(gathered, 0, at)
    return _tree(one, x)


def _row(table: Any, index: Any) -> Any:
    """``table[index]`` for this example's traced index."""
    return fnp.gather_rows(table, index)


def psum_scatter(x: Any, axis_name: Any, *, scatter_dimension: int = 0,
                 axis_index_groups: Any = None, tiled: bool = False) -> Any:
    """This example's block of the sum over the examples: ``x``'s axis
    ``scatter_dimension`` has one entry per example (one block each when
    ``tiled``), and example k gets the k-th of the summed ``x``."""
    _no_groups(axis_index_groups, "psum_scatter")
    names = _names(axis_name)
    if len(names) != 1:
        raise NotImplementedError("lax.psum_scatter over several axis names")
    name = names[0]
    size, index = bound_axis(name)

    def one(leaf: Any) -> Any:
        shape = tuple(fnp.shape(leaf))
        d = scatter_dimension + len(shape) if scatter_dimension < 0 else scatter_dimension
        if not 0 <= d < len(shape):
            raise ValueError(f"lax.psum_scatter: scatter_dimension {scatter_dimension} out of "
                             f"range for shape {shape}")
        if shape[d] != size and not (tiled and shape[d] % size == 0):
            raise ValueError(f"lax.psum_scatter: dimension {d} of shape {shape} must be "
                             f"{'a multiple of ' if tiled else ''}the axis size {size}")
        rows = fnp.moveaxis(leaf, d, 0)
        if tiled:
            rows = fnp.reshape(rows, (size, shape[d] // size) + tuple(fnp.shape(rows))[1:])
        out = (_bind("psum_scatter", rows, name, size) if isinstance(rows, Tracer)
               else _row(_np.asarray(rows) * size, index))
        return fnp.moveaxis(out, 0, d) if tiled else out
    return _tree(one, x)


def ppermute(x: Any, axis_name: Any, perm: Sequence[tuple[int, int]]) -> Any:
    """Each example's ``x`` sent to another: ``perm`` holds (source,
    destination) pairs; an example no pair sends to gets zeros."""
    names = _names(axis_name)
    n = axis_size(names)
    source = _np.full(n, -1, dtype=_np.int64)
    for pair in perm:
        src, dst = (int(v) for v in pair)
        if not (0 <= src < n and 0 <= dst < n):
            raise ValueError(f"lax.ppermute: pair {pair} out of range for axis size {n}")
        if source[dst] >= 0 or src in source:
            raise ValueError(f"lax.ppermute: perm {list(perm)} sends twice from or to one index")
        source[dst] = src
    index = axis_index(names)
    has = _row(_np.asarray(source >= 0, dtype=_np.float64), index) != 0.0
    src_row = integer_like(_row(_np.maximum(source, 0).astype(_np.float64), index),
                           frozenset(), _np.dtype(_np.int32))

    def one(leaf: Any) -> Any:
        value = _row(all_gather(leaf, names), src_row) if isinstance(leaf, Tracer) else leaf
        return fnp.where(has, value, fnp.zeros_like(value))
    return _tree(one, x)


def pshuffle(x: Any, axis_name: Any, perm: Sequence[int]) -> Any:
    """Example k gets example ``perm[k]``'s ``x`` (``perm`` a permutation)."""
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(axis_size(axis_name))):
        raise ValueError(f"lax.pshuffle: {perm} is not a permutation of the axis")
    return ppermute(x, axis_name, [(src, dst) for dst, src in enumerate(perm)])


def all_to_all(x: Any, axis_name: Any, split_axis: int, concat_axis: int, *,
               axis_index_groups: Any = None, tiled: bool = False) -> Any:
    """Example k gets the k-th block along ``split_axis`` of every example's
    ``x``, in example order along ``concat_axis`` (JAX's all_to_all)."""
    _no_groups(axis_index_groups, "all_to_all")
    names = _names(axis_name)
    n = axis_size(names)
    index = axis_index(names)

    def one(leaf: Any) -> Any:
        shape = tuple(fnp.shape(leaf))
        s = split_axis + len(shape) if split_axis < 0 else split_axis
        if not 0 <= s < len(shape) or shape[s] % n or (not tiled and shape[s] != n):
            raise ValueError(f"lax.all_to_all: axis {split_axis} of shape {shape} must be "
                             f"{'a multiple of ' if tiled else ''}the axis size {n}")
        blocks = fnp.moveaxis(leaf, s, 0)  # (n or n * b, ...)
        rest = tuple(fnp.shape(blocks))[1:]
        blocks = fnp.reshape(blocks, (n, shape[s] // n) + rest)
        gathered = all_gather(blocks, names)  # (examples, blocks, b, ...)
        mine = _row(fnp.moveaxis(gathered, 1, 0), index)  # (examples, b, ...): block k of each
        if not tiled:  # blocks of one: the split axis goes, the examples' comes at concat_axis
            return fnp.moveaxis(fnp.reshape(mine, (n,) + rest), 0, concat_axis)
        # tiled: blocks back in place of the split axis, then joined along concat_axis
        piece = fnp.moveaxis(mine, 1, s + 1)  # (examples, ..., b at s, ...)
        c = concat_axis + len(shape) if concat_axis < 0 else concat_axis
        piece = fnp.moveaxis(piece, 0, c)
        new = list(fnp.shape(piece))
        return fnp.reshape(piece, tuple(new[:c]) + (new[c] * new[c + 1],) + tuple(new[c + 2:]))
    return _tree(one, x)
