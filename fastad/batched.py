"""Batched calls of compiled functions: ``g.batch(X, threads=...)``.

``vmap(f)`` is compiled once for a *chunk* of examples, and the batch is run
chunk by chunk over separate arenas, on several threads at once: in C
(``csrc/batch.c``, the GIL released for the whole batch) on the C backend, on
Python threads over the Numba kernels (which release the GIL) otherwise.  The
last chunk, when short, is padded with copies of the last example.

How a batch is cut depends on its size and ``chunk`` only, never on the
thread count, and no value crosses chunks, so results are bit-identical for
every number of threads.

Thread counts combine: the C VM's pool for large fused loops
(FASTAD_NUM_THREADS, csrc/pool.h) runs one job at a time and a busy pool
makes its caller run serially, so a batch uses at most ``threads +
FASTAD_NUM_THREADS - 1`` threads.  A multithreaded BLAS would multiply with
``threads`` instead, so while a batch runs, BLAS runs on the batch's threads
only, one thread each (with threadpoolctl, when it is installed; set
OPENBLAS_NUM_THREADS=1 otherwise): ``threads=1`` is one core.  To give a
batch every core and nothing more, also set FASTAD_NUM_THREADS=1.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
from typing import Any, Sequence

import numpy as np

from .core import pytree
from .api import plain_array
from .signatures import cast_results

#: a batch is cut into about this many chunks by default: enough to balance
#: the threads of a many-core machine, few enough that each chunk is a
#: vectorized run of many examples
TARGET_CHUNKS = 32
#: ... but a chunk's results stay under this many bytes, so that its arena
#: stays in cache (per-example gradients of large weights are megabytes each)
CHUNK_OUTPUT_BYTES = 4 << 20


def default_chunk(count: int, example_output_bytes: int | None) -> int:
    """Examples per chunk: a function of the batch and of the function only,
    never of the thread count."""
    size = max(1, -(-count // TARGET_CHUNKS))
    if example_output_bytes:
        size = min(size, max(1, CHUNK_OUTPUT_BYTES // example_output_bytes))
    return size


def thread_count(threads: int | None) -> int:
    if threads is None:
        return os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return int(threads)


def normalize_axes(args: Sequence[Any], in_axes: Any) -> tuple[list[Any], tuple[Any, ...], int]:
    """Batched arguments with their batch axis moved first (contiguous), the
    axes as 0 or None per argument, and the batch size."""
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    if len(axes) != len(args):
        raise ValueError(f"batch: in_axes has {len(axes)} entries for {len(args)} arguments")
    moved, count = [], None
    for i, (arg, ax) in enumerate(zip(args, axes)):
        if ax is None:
            moved.append(arg)
            continue
        leaves, tree = pytree.flatten(arg)
        new_leaves = []
        for leaf in leaves:
            leaf = plain_array(leaf, f"batch: argument {i}")  # before copying drops a mask
            if not isinstance(leaf, np.ndarray) or leaf.dtype.kind not in "fciub":
                raise ValueError(f"batch: argument {i} is batched (in_axes={ax}), so its leaves "
                                 "must be float, complex, integer or boolean arrays, got "
                                 f"{type(leaf).__name__}")
            if not -leaf.ndim <= ax < leaf.ndim:
                raise ValueError(f"batch: in_axes={ax} for argument {i} of shape {leaf.shape}")
            if count is not None and leaf.shape[ax] != count:
                raise ValueError(f"batch: batch sizes differ: {count} and {leaf.shape[ax]} "
                                 f"(argument {i})")
            count = leaf.shape[ax]
            new_leaves.append(np.ascontiguousarray(np.moveaxis(leaf, ax, 0)))
        moved.append(pytree.unflatten(tree, new_leaves))
    if count is None:
        raise ValueError("batch: no argument is batched (all in_axes are None)")
    return moved, tuple(None if ax is None else 0 for ax in axes), count


def _rows(args: Sequence[Any], axes: Sequence[Any], start: int, stop: int) -> list[Any]:
    """The arguments for examples [start, stop) of the batch."""
    out = []
    for arg, ax in zip(args, axes):
        if ax is None:
            out.append(arg)
        else:
            leaves, tree = pytree.flatten(arg)
            out.append(pytree.unflatten(tree, [leaf[start:stop] for leaf in leaves]))
    return out


def _dynamic_flags(spec: Any, args: Sequence[Any], axes: Sequence[Any]) -> list[bool] | None:
    """Whether each dynamic leaf (tape input) of ``args`` is batched, in the
    order `Specializer.split` lists them; None if a batched leaf is not one.
    Integer and boolean arrays taken as data (labels) are tape inputs too."""
    from .signatures import array_data_of, int_data, is_dynamic
    flags = []
    for i, (arg, ax) in enumerate(zip(args, axes)):
        if i in spec.static_argnums:
            if ax is not None:
                return None
            continue
        leaves, _ = pytree.flatten(arg)
        for leaf in leaves:
            if (is_dynamic(leaf) or int_data(spec, leaf, i)
                    or array_data_of(spec, leaf, i) is not None):
                flags.append(ax is not None)
            elif ax is not None:
                return None
    return flags


def call(vjit: Any, args: Sequence[Any], axes: Sequence[Any], count: int,
         threads: int | None, chunk: int | None) -> Any:
    """``vjit`` (a Jitted ``vmap(f, axes)``) over the whole batch, chunk by chunk."""
    nthreads = thread_count(threads)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
    spec = vjit._spec
    flags = _dynamic_flags(spec, args, axes)
    if count == 0:  # nothing to split: the vmapped function on the empty batch
        return vjit(*args)
    if chunk is not None:
        size = min(count, int(chunk))
        entries = _compiled_for(vjit, args, axes, size)
    else:
        size = default_chunk(count, None)
        entries = _compiled_for(vjit, args, axes, size)
        if entries and size > 1:  # now that the outputs are known, maybe a smaller chunk
            tape = entries[0].tape
            per_example = sum(tape.avals[s].dtype.itemsize * int(np.prod(tape.avals[s].shape))
                              for s in tape.outputs) // size
            if default_chunk(count, per_example) != size:
                size = default_chunk(count, per_example)
                entries = _compiled_for(vjit, args, axes, size)
    if flags is None or not entries:  # evaluated eagerly: one call over the batch
        return vjit(*args)
    entry = entries[0]
    dynamic = entry.inputs(spec.split(args)[1])  # arrays read from closures: shared
    flags = list(flags) + [False] * (len(dynamic) - len(flags))
    with _blas_limited_to_one_thread():
        outs, failed = _run(entry, dynamic, flags, count, size, nthreads)
    if failed:  # guards disagreed: these chunks take the general path (retrace)
        for k in failed:
            start, stop = k * size, min(count, (k + 1) * size)
            rows = pytree.flatten(vjit(*_rows(args, axes, start, stop)))[0]
            for out, row in zip(outs, rows):
                out[start:stop] = row
    # results computed from integers taken as data as the integers they are
    return spec.unpack(entry.structure, cast_results(entry.structure.casts, outs), spec.argnums)


def _run(entry: Any, dynamic: list[Any], flags: list[bool], count: int, size: int,
         nthreads: int) -> tuple[list[np.ndarray], list[int]]:
    """Every chunk of the batch on ``entry``'s executable: (outputs, failed chunks)."""
    if hasattr(entry.exe, "run_batch"):
        return entry.exe.run_batch(dynamic, flags, count, nthreads)
    tape = entry.tape
    outs = [np.empty((count,) + tuple(tape.avals[s].shape[1:]), tape.avals[s].dtype)
            for s in tape.outputs]
    return outs, _run_chunks(entry.exe, dynamic, flags, outs, count, size, nthreads)


_blas_controller: Any = None


def _blas_limited_to_one_thread() -> Any:
    """A context in which BLAS runs on the calling thread only (a no-op
    without threadpoolctl)."""
    global _blas_controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if _blas_controller is None:  # created late: it sees the BLAS libraries loaded by then
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _compiled_for(vjit: Any, args: Sequence[Any], axes: Sequence[Any], size: int
                  ) -> tuple[Any, ...]:
    """The compiled traces of ``vjit`` for a chunk of ``size`` examples
    (traced now, on the first chunk, if there are none yet): the cache's
    tuple as it is now, which other threads replace but never change."""
    return vjit._spec.entries_for(_rows(args, axes, 0, size))


def _run_chunks(exe: Any, dynamic: list[Any], flags: list[bool], outs: list[np.ndarray],
                count: int, size: int, nthreads: int) -> list[int]:
    """What ``run_batch`` does in C, for executables without it: each chunk
    run on its own into ``outs``, contiguous runs of chunks on Python threads.
    Returns the chunks whose guards failed."""
    dynamic = [np.asarray(x) for x in dynamic]
    chunks = -(-count // size)

    def run_range(lo: int, hi: int) -> list[int]:
        failed = []
        for k in range(lo, hi):
            start, stop = k * size, min(count, (k + 1) * size)
            result = exe.run([_padded(x[start:stop], x[-1], size) if batched else x
                              for x, batched in zip(dynamic, flags)])
            if result is None:
                failed.append(k)
                continue
            for out, r in zip(outs, result):
                out[start:stop] = r[:stop - start]
        return failed

    nthreads = min(nthreads, chunks)
    bounds = [chunks * t // nthreads for t in range(nthreads + 1)]
    if nthreads == 1:
        return run_range(0, chunks)
    with concurrent.futures.ThreadPoolExecutor(nthreads) as pool:
        parts = pool.map(run_range, bounds[:-1], bounds[1:])
        return [k for part in parts for k in part]


def _padded(rows: np.ndarray, last: np.ndarray, size: int) -> np.ndarray:
    if len(rows) == size:
        return rows
    return np.concatenate([rows, np.broadcast_to(last, (size - len(rows),) + last.shape)])
