"""Batching (``vmap``): a leading batch dimension added to every instruction.

A tape recorded for one example is replayed on batched values.  Each value
is either *batched* (its leading axis runs over the examples) or not (the
same for every example); an instruction with no batched operand replays as
it is, the others by their primitive's batching rule (`Primitive.batch_rule`,
set by `defbatch` in the primitive's family module, from the rules below that
families share).  Rules are written
with fastad's own operations, so the batched tape traces, differentiates and
compiles like any other.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TracingError
from ..core.registry import Primitive, TraitTable, check_table, registry
from ..primitives.numpy_proxy import fnp
from ..core.tape import Tape, where
from ..core.tracer import bind

Batched = tuple[Any, bool]  # a value and whether its axis 0 is the batch axis


def _align(value: Batched, example_shape: tuple[int, ...], rank: int, size: int) -> Any:
    """A batched operand reshaped so NumPy broadcasting lines up its example
    axes with the unbatched operands (the batch axis stays leftmost)."""
    x, batched = value
    if not batched:
        return x
    return fnp.reshape(x, (size,) + (1,) * (rank - len(example_shape)) + tuple(example_shape))


def _batch_all(value: Batched, example_shape: tuple[int, ...], size: int) -> Any:
    x, batched = value
    return x if batched else fnp.broadcast_to(x, (size,) + tuple(example_shape))


def _row_offsets(size: int, example_size: int, idx: np.ndarray) -> np.ndarray:
    """Flat indices into a batched array for the per-example flat indices idx.
    A negative index counts from the end of its own example, as `take` and
    the scatters read it: offset as it is, it would reach the example before."""
    offsets = (np.arange(size, dtype=np.int64) * example_size).reshape((size,) + (1,) * idx.ndim)
    return offsets + np.where(idx < 0, idx + example_size, idx)


def elementwise(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                 params: dict[str, Any], size: int) -> Any:
    rank = max(len(s) for s in shapes)
    return bind(prim, *(_align(a, s, rank, size) for a, s in zip(args, shapes)),
                **params)


def reduction(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
               params: dict[str, Any], size: int) -> Any:
    axes = tuple(a + 1 for a in params["axes"])
    return bind(prim, args[0][0], axes=axes, keepdims=params["keepdims"])


def cumsum(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
            params: dict[str, Any], size: int) -> Any:
    return fnp.cumsum_(args[0][0], params["axis"] + 1, params["reverse"])


def reshape(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
             params: dict[str, Any], size: int) -> Any:
    return fnp.reshape(args[0][0], (size,) + tuple(params["shape"]))


def transpose(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
               params: dict[str, Any], size: int) -> Any:
    return fnp.transpose(args[0][0], (0,) + tuple(p + 1 for p in params["perm"]))


def broadcast_to(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                  params: dict[str, Any], size: int) -> Any:
    target = tuple(params["shape"])
    return fnp.broadcast_to(_align(args[0], shapes[0], len(target), size), (size,) + target)


def take(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
          params: dict[str, Any], size: int) -> Any:
    idx = np.asarray(args[1][0])
    return fnp.take_flat(args[0][0], _row_offsets(size, int(np.prod(shapes[0])), idx))


def scatter(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
             params: dict[str, Any], size: int) -> Any:
    x = _batch_all(args[0], shapes[0], size)
    idx = np.asarray(args[1][0])
    v = _batch_all(args[2], shapes[2], size)
    flat = _row_offsets(size, int(np.prod(shapes[0])), idx)
    return bind(prim, x, flat, v)


def fft(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
         params: dict[str, Any], size: int) -> Any:
    axes = tuple(a + 1 for a in params["axes"])
    return bind(prim, args[0][0], **{**params, "axes": axes})


def batched_linalg(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                    params: dict[str, Any], size: int) -> Any:
    return bind(prim, *(_batch_all(a, s, size) for a, s in zip(args, shapes)),
                **params)


def matmul(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
            params: dict[str, Any], size: int) -> Any:
    """A matrix shared by every example is not copied once per example: the
    examples fold into the rows (or columns) of one larger product."""
    (a, a_batched), (b, b_batched) = args
    (m, k), (_, n) = shapes[0][-2:], shapes[1][-2:]
    if len(shapes[0]) == 2 and not b_batched:  # a[e] @ b, stacked: rows of one product
        return fnp.reshape(fnp.matmul_(fnp.reshape(a, (size * m, k)), b), (size, m, n))
    if len(shapes[0]) == 2 and not a_batched and n == 1:  # a @ v[e]: (V a^T)^T, no copy of V
        rows = fnp.matmul_(fnp.reshape(b, (size, k)), fnp.transpose(a, (1, 0)))
        return fnp.reshape(rows, (size, m, 1))
    if len(shapes[0]) == 2 and not a_batched:  # a @ b[e], side by side: columns of one
        columns = fnp.reshape(fnp.transpose(b, (1, 0, 2)), (k, size * n))
        return fnp.transpose(fnp.reshape(fnp.matmul_(a, columns), (m, size, n)), (1, 0, 2))
    return batched_linalg(prim, args, shapes, params, size)


def along_axis(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                params: dict[str, Any], size: int) -> Any:
    """Sorting, gathers and scans along one axis: every operand batched, the axis moved."""
    batched = [_batch_all(a, s, size) for a, s in zip(args, shapes)]
    return bind(prim, *batched, **{**params, "axis": params["axis"] + 1})


def _batched_rows(args: list[Batched], shapes: list[tuple[int, ...]], size: int,
                  table: int, index: int) -> tuple[Any, Any]:
    """For a gather or scatter by traced rows: the batched table flattened to
    (size * rows, ...), and each example's row indices (wrapped and checked
    by gathering them from a constant range) offset into its own block."""
    rows = shapes[table][0]
    x = _batch_all(args[table], shapes[table], size)
    x = fnp.reshape(x, (size * rows,) + tuple(shapes[table][1:]))
    idx = _batch_all(args[index], shapes[index], size)
    wrapped = bind(registry["gather_rows"], np.arange(rows, dtype=np.float64), idx)
    offsets = (np.arange(size, dtype=np.float64) * rows).reshape(
        (size,) + (1,) * len(shapes[index]))
    return x, wrapped + offsets


def gather_rows(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                params: dict[str, Any], size: int) -> Any:
    x, idx = _batched_rows(args, shapes, size, 0, 1)
    return bind(prim, x, idx)


def scatter_add_rows(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                     params: dict[str, Any], size: int) -> Any:
    acc, idx = _batched_rows(args, shapes, size, 0, 1)
    v = _batch_all(args[2], shapes[2], size)
    out = bind(prim, acc, idx, v)
    return fnp.reshape(out, (size,) + tuple(shapes[0]))


def interpolate(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                 params: dict[str, Any], size: int) -> Any:
    if args[1][1] or args[2][1]:  # one table per example
        return per_example(prim, args, shapes, params, size)
    return bind(prim, args[0][0], args[1][0], args[2][0], **params)


class BranchesDiffer(TracingError):
    """The examples of a batch take different branches of the Python control
    flow the tape was recorded on (a guard that holds for some and fails for
    others), so no one batched tape computes them all."""


class CountedDiffer(BranchesDiffer):
    """A loop derived from a while loop (its derivative) runs the first
    example's trip count, and the examples' counts differ."""


def _check_shared_guard(holds: Any, line: Any) -> None:
    """A guard on a value every example shares holds when replayed, since
    the example's recording computed the same value, unless the value came
    from a collective (`primitives.collectives`), whose recorded value was a
    stand-in: then the branch was chosen on a value no example has."""
    if not bool(getattr(holds, "value", holds)):
        raise BranchesDiffer(f"vmap: Python control flow at {where(line)} depends on the "
                             "result of a collective (lax.psum, ...) over the vmapped axis; "
                             "use fastad.numpy.where or lax.cond")


def _guard(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
           params: dict[str, Any], size: int, line: Any = None) -> Any:
    pred = args[0][0]
    agree = fnp.all(fnp.equal(pred, params["expected"]))
    concrete = getattr(agree, "value", agree)
    if not bool(concrete):
        raise BranchesDiffer(f"vmap: Python control flow at {where(line)} depends on the "
                             "batched value and the examples take different branches "
                             "(fastad.numpy.where stays branch-free)")
    return bind(prim, agree, expected=True)


# The rules as one table (primitive -> `Primitive.batch_rule`), a view of the
# traits; a guard (the "guard" effect) has its own rule, `_guard`.  Every
# builtin primitive has a rule (tests/test_primitive_tables.py);
# NO_BATCHING_RULE would list any that may not.  Primitives that run as NumPy
# calls (``builtin=False``: scipy.special's Bessel functions, users'
# primitives) are batched by their own rule, else by `elementwise` when
# declared elementwise.
RULES = TraitTable("batch_rule")
NO_BATCHING_RULE: dict[Primitive, str] = check_table({}, "batching.NO_BATCHING_RULE")
# fastad's own NumPy-call primitives left without a batching rule, by name (their
# modules load after this one), each with the reason vmap reports: none today
HOST_NO_BATCHING_RULE: dict[str, str] = {}


def per_example(prim: Primitive, args: list[Batched], shapes: list[tuple[int, ...]],
                params: dict[str, Any], size: int) -> Any:
    """The primitive once per example, stacked: the rule of NumPy calls whose
    work differs between examples, so that a batch is not one call (an
    adaptive ODE solver's steps, an iteration to a tolerance, a user's
    function with a rule of its own).  Its derivatives stay its own."""
    rows = [bind(prim, *(v[k] if batched else v for v, batched in args), **params)
            for k in range(size)]
    return fnp.stack(rows)


def batching_rule(prim: Primitive) -> Callable[..., Any] | None:
    """The rule that batches ``prim``, or None."""
    rule = prim.batch_rule
    if rule is None and prim.elementwise:
        rule = elementwise
    return rule


class _Replays(threading.local):
    """Per replay (innermost last): whether a while loop's examples took
    different numbers of steps, so that the loops derived from it (recorded
    for the first example's count) cannot be batched."""

    def __init__(self) -> None:
        self.differ: list[bool] = []


_replays = _Replays()


def mark_trips_differ() -> None:
    if _replays.differ:
        _replays.differ[-1] = True


def trips_differ() -> bool:
    return bool(_replays.differ and _replays.differ[-1])


def batch_replay(tape: Tape, inputs: Sequence[Batched], size: int) -> list[Batched]:
    """Replay ``tape`` (recorded for one example) on batched inputs."""
    _replays.differ.append(False)
    try:
        return _batch_replay(tape, inputs, size)
    finally:
        _replays.differ.pop()


def _batch_replay(tape: Tape, inputs: Sequence[Batched], size: int) -> list[Batched]:
    env: dict[int, Batched] = dict(zip(tape.inputs, inputs))
    env.update((s, (v, False)) for s, v in tape.consts.items())
    for ins in tape.instrs:
        prim = registry[ins.prim]
        args = [env[s] for s in ins.ins]
        params = dict(ins.params)
        if prim.axis_collective:  # returns (value, batched)
            env[ins.out] = prim.batch_rule(prim, args, [tape.avals[s].shape for s in ins.ins],
                                           params, size)
            continue
        if not any(batched for _, batched in args):
            env[ins.out] = (bind(prim, *(v for v, _ in args), **params), False)
            if prim.effect == "guard":
                _check_shared_guard(env[ins.out][0], ins.line)
            continue
        shapes = [tape.avals[s].shape for s in ins.ins]
        if prim.effect == "guard":
            env[ins.out] = (_guard(prim, args, shapes, params, size, ins.line), False)
            continue
        rule = batching_rule(prim)
        if rule is None:
            why = HOST_NO_BATCHING_RULE.get(ins.prim, "call the function in a loop instead")
            raise TracingError(f"vmap: primitive {ins.prim!r} has no batching rule; {why}")
        env[ins.out] = (rule(prim, args, shapes, params, size), True)
    return [env[s] for s in tape.outputs]
