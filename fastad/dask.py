"""Gradients over data that does not fit one machine, on Dask.

``map_gradients(g, *args)`` evaluates a compiled function (``fastad.compile``
or ``fastad.jit``) over every example of Dask collections, in parallel on the
cluster's workers:

    import dask.array as da
    X = da.from_array(examples, chunks=(10_000, -1))       # axis 0: examples
    G = fastad.dask.map_gradients(g, params, X, Y)          # lazy, like X
    G[0].mean(axis=0).compute()

Dask arrays are batched along axis 0 (their blocks are aligned along it and
whole along every other axis); any other argument is shared by every
example.  The client compiles ``g.batch`` once per block size, on a real
block of that size, and the workers receive the compiled function as its
tapes (``pickle`` stores tapes, never the user's code): no source of ``f`` is
needed on the workers, and each block runs as one batched call there.

A Dask bag whose elements are argument tuples (or single arrays) is mapped
element by element with ``g(*element)``, compiled on the client for the first
element's signature.

Dask is an optional dependency: ``pip install "fastad[dask]"``.
"""
from __future__ import annotations

from typing import Any, Sequence

from .core import pytree

try:
    import dask
    import dask.array as da
    import dask.bag as db
except ImportError as exc:  # the extra is not installed
    raise ImportError('fastad.dask needs Dask: pip install "fastad[dask]"') from exc

__all__ = ["map_gradients"]


def map_gradients(g: Any, *args: Any, threads: int | None = 1) -> Any:
    """``g`` over every example of the Dask collections in ``args``, lazily.

    Arrays: returns ``g.batch``'s results (a pytree of Dask arrays whose axis 0
    runs over the examples, blocked like the inputs).  ``threads`` is per
    block (default 1: Dask already runs one block per worker thread).
    A bag (the only argument): returns a bag of ``g(*element)``.
    """
    if len(args) == 1 and isinstance(args[0], db.Bag):
        return _map_bag(g, args[0])
    axes = tuple(0 if isinstance(a, da.Array) else None for a in args)
    if all(ax is None for ax in axes):
        raise ValueError("map_gradients: pass the examples as Dask arrays (axis 0) or a bag")
    arrays = _aligned([a for a in args if isinstance(a, da.Array)])
    block_sizes = arrays[0].chunks[0]
    out_tree, out_leaves = None, None
    for i in sorted({size: i for i, size in reversed(list(enumerate(block_sizes)))}.values()):
        sample = dask.compute(*(a.blocks[i] for a in arrays))  # compile on real data
        out_leaves, out_tree = pytree.flatten(
            g.batch(*_merged(args, axes, sample), in_axes=axes, threads=threads))
    assert out_leaves is not None
    # One task carries the compiled function and the shared arguments; the
    # block tasks depend on it, so each worker receives them once.
    shared = [a for a, ax in zip(args, axes) if ax is None]
    context = dask.delayed(_context, pure=True)(g, shared)
    blocks = [a.to_delayed().ravel() for a in arrays]
    parts = []
    for i, size in enumerate(block_sizes):
        task = dask.delayed(_run_block, pure=True, nout=len(out_leaves))(
            context, axes, threads, *(b[i] for b in blocks))
        parts.append([da.from_delayed(task[k], shape=(size,) + leaf.shape[1:], dtype=leaf.dtype)
                      for k, leaf in enumerate(out_leaves)])
    leaves = [da.concatenate([part[k] for part in parts]) for k in range(len(out_leaves))]
    return pytree.unflatten(out_tree, leaves)


def _aligned(arrays: list[Any]) -> list[Any]:
    """The arrays blocked alike along axis 0 and whole along the others."""
    n = arrays[0].shape[0]
    for a in arrays:
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"map_gradients: the Dask arrays must have the same length along "
                             f"axis 0 (the examples), got shapes "
                             f"{[x.shape for x in arrays]}")
    chunks = arrays[0].chunks[0]
    return [a.rechunk({0: chunks, **{k: -1 for k in range(1, a.ndim)}}) for a in arrays]


def _merged(args: Sequence[Any], axes: Sequence[Any], batched: Sequence[Any]) -> list[Any]:
    """``args`` with its batched arguments replaced, in order, by ``batched``."""
    it = iter(batched)
    return [next(it) if ax is not None else a for a, ax in zip(args, axes)]


def _context(g: Any, shared: list[Any]) -> tuple[Any, list[Any]]:
    return g, shared


def _run_block(context: tuple[Any, list[Any]], axes: tuple[Any, ...], threads: int | None,
               *blocks: Any) -> tuple[Any, ...]:
    g, shared = context
    it = iter(shared)
    args = _merged([None if ax is not None else next(it) for ax in axes], axes, blocks)
    return tuple(pytree.flatten(g.batch(*args, in_axes=axes, threads=threads))[0])


def _map_bag(g: Any, bag: Any) -> Any:
    first = bag.take(1, npartitions=-1)
    if not first:
        raise ValueError("map_gradients: the bag is empty")
    g(*_arguments(first[0]))  # compile on the client
    return bag.map_partitions(_run_partition, dask.delayed(g, pure=True, traverse=False))


def _arguments(element: Any) -> tuple[Any, ...]:
    return element if isinstance(element, tuple) else (element,)


def _run_partition(partition: Any, g: Any) -> list[Any]:
    return [g(*_arguments(element)) for element in partition]
