"""The Numba generator's fused loops: elementwise code of one shape as one loop.

Consecutive elementwise instructions over arrays of one shape become one
loop over the elements (`_Loop`), full reductions of their values become
accumulators in it (reductions over trailing axes, one accumulator per row),
broadcasts of smaller arrays are read in place, gathers by an index table affine over the loop become
reads at ``start + i * stride``, and scatter-adds into an accumulator the
code owns become in-place updates, delayed a few iterations where needed so
every element gets its updates in tape order (bitwise the unfused results).
`_scatter_delays` finds the delays (the grid an index table is affine over
is `analysis.affine_grid`), `_grouped_by_shape` brings instructions of one
loop shape together (a 3-D stencil's slices along each axis have shapes of
their own, which the traced order alternates), and `_sink_scalars` moves
scalar work down to its first reader so it does not split a loop.  `_LoopFusion` is the part of
the generator (`numba_codegen._Generator`) that gathers and closes loops.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.registry import registry
from ..core.registry import prims as P
from ..core.tape import Instr, Tape
from ..transforms.analysis import affine, affine_grid, c_strides, common_affine_grid, is_range
from .numba_sums import BLOCK, SCRATCH, STREAM_IMPORT
from .numba_tables import (REDUCER_START, REDUCERS, SPECIAL_FUNCTIONS, UFUNCS, _literal, _shape,
                           _Step)


MAX_DELAY = 4  # iterations a fused scatter may wait to keep its order (see _Loop)


def _scatter_delays(indexed: Sequence[tuple[Instr, np.ndarray]], grid: tuple[int, ...],
                    target: Callable[[Instr], int]) -> dict[int, tuple[int, int, int]] | None:
    """For each scatter of a fused loop, (delay, start, stride): its update of
    element ``start + stride * i`` uses the value computed ``delay``
    iterations earlier, so that every element of an accumulator receives its
    updates in tape order, as the scatters run one after another would, and
    results stay bitwise those of unfused code.  None when no such schedule
    exists (the loop then leaves the scatter out)."""
    groups: dict[int, list[tuple[Instr, int, list[int]]]] = {}
    for ins, flat in indexed:
        if ins.prim == "scatter_add":
            start, strides = affine(flat.reshape(grid))
            groups.setdefault(target(ins), []).append((ins, start, strides))
    delays = {}
    for members in groups.values():
        if len({(start, tuple(strides)) for _, start, strides in members}) == 1:
            delays.update((ins.out, (0, start, 0)) for ins, start, _ in members)
            continue  # every update of an iteration goes to one element
        strides = {tuple(st) for _, _, st in members}
        if len(grid) != 1 or len(strides) != 1 or strides.pop()[0] <= 0:
            return None
        step = members[0][2][0]
        low = min(start for _, start, _ in members)
        order = []
        for ins, start, _ in members:
            if (start - low) % step:
                return None
            order.append((start - low) // step)
            delays[ins.out] = (order[-1], low, step)
        if order != sorted(order) or order[-1] > MAX_DELAY:
            return None
    return delays


def _sink_scalars(tape: Tape) -> Tape:
    """The tape with each instruction on scalars moved down to just before its
    first reader.  A scalar computed from a loop's accumulators (the value of
    a sum, returned as an output) would otherwise close the loop before the
    adjoint's elementwise code, which never reads it, could join."""
    moved: list[Instr] = []
    pending: dict[int, Instr] = {}  # out slot -> instruction waiting for a reader

    def emit_needed(ins: Instr) -> None:
        """Emits the pending instructions ``ins`` reads, theirs first: a loop,
        not recursion, as a scalar chain can be a loop's whole length."""
        stack = [(ins, iter(ins.ins))]
        while stack:
            current, inputs = stack[-1]
            for s in inputs:
                waiting = pending.pop(s, None)
                if waiting is not None:
                    stack.append((waiting, iter(waiting.ins)))
                    break
            else:
                stack.pop()
                if current is not ins:
                    moved.append(current)

    for ins in tape.instrs:
        if (registry[ins.prim].effect is None and tape.avals[ins.out].shape == ()
                and all(tape.avals[s].shape == () for s in ins.ins)):
            pending[ins.out] = ins
            continue
        emit_needed(ins)
        moved.append(ins)
    for out in sorted(pending, key=lambda out: pending[out].out):  # read by outputs only
        waiting = pending.pop(out, None)
        if waiting is not None:
            emit_needed(waiting)
            moved.append(waiting)
    return Tape(inputs=tape.inputs, outputs=tape.outputs, consts=tape.consts, instrs=moved,
                avals=tape.avals)


def _reads_before_writes(tape: Tape) -> Tape:
    """The tape with each load of one element of an array (``take`` of a 0-d
    index, a scalar copied out) that follows a point update of that array
    (``scatter_set``, ``scatter_add``) moved to just before the update, when
    such loads are the array's only readers after it.  The update may then
    write the array's buffer in place (`_Generator.dies_here`) instead of a
    copy of it: reverse mode of ``u[i, j] = ...`` sweeps reads each old
    element once after the update that zeroes its adjoint, which made a copy
    of the whole array per point.  The loads read nothing else, so the moved
    tape computes the same values."""
    instrs = tape.instrs
    readers: dict[int, list[int]] = {}
    for k, ins in enumerate(instrs):
        for s in ins.ins:
            readers.setdefault(s, []).append(k)
    outputs = set(tape.outputs)

    def element_load(r: int, x: int) -> bool:
        ins = instrs[r]
        return (ins.prim == "take" and ins.ins[0] == x and ins.ins[1] in tape.consts
                and np.ndim(tape.consts[ins.ins[1]]) == 0)

    move: dict[int, int] = {}  # a load's position -> the update's it goes before
    for k, ins in enumerate(instrs):
        if ins.prim not in ("scatter_set", "scatter_add"):
            continue
        x = ins.ins[0]
        if x in tape.consts or x in outputs or tape.avals[x].shape == ():
            continue
        later = [r for r in readers[x] if r > k]
        if later and all(element_load(r, x) and r not in move for r in later):
            move.update(dict.fromkeys(later, k))
    if not move:
        return tape
    before: dict[int, list[int]] = {}
    for r, k in sorted(move.items()):
        before.setdefault(k, []).append(r)
    moved = []
    for k, ins in enumerate(instrs):
        if k not in move:
            moved += [instrs[r] for r in before.get(k, ())]
            moved.append(ins)
    return Tape(inputs=tape.inputs, outputs=tape.outputs, consts=tape.consts, instrs=moved,
                avals=tape.avals)


def _loop_shape(tape: Tape, ins: Instr) -> tuple[int, ...] | None:
    """The shape of the fused loop ``ins`` could be part of (its elements, a
    full reduction's operand, a scatter's values), or None for an instruction
    no loop takes and for scalars."""
    prim = registry[ins.prim]
    if prim in REDUCERS:
        shape = tape.avals[ins.ins[0]].shape
    elif ins.prim == "scatter_add":
        shape = tape.avals[ins.ins[2]].shape
    elif prim.elementwise or ins.prim == "take":
        shape = tape.avals[ins.out].shape
    else:
        return None
    return tuple(shape) or None


def _grouped_by_shape(tape: Tape) -> Tape:
    """The tape with instructions of one loop shape brought together where
    their dependencies allow.  The generator gathers one pending loop at a
    time, so a tape that alternates shapes (a 3-D stencil's differences along
    each axis, each of its own shape, and the quartic on the whole grid; the
    products of several seeds side by side) would make a loop of every few
    instructions, each storing its values for the next.  A list schedule:
    of the instructions whose operands are ready, the first (in tape order)
    of the current loop's shape, else the first of any; guards stay where they
    are, between the instructions before and after them.  Each value is still
    computed by the same instruction from the same operands, and a scatter
    chain keeps its order (each link reads the one before): results are
    bitwise those of the tape's own order."""
    instrs = tape.instrs
    made = {ins.out: k for k, ins in enumerate(instrs)}
    out: list[Instr] = []
    start = 0
    while start < len(instrs):
        end = start
        while end < len(instrs) and registry[instrs[end].prim].effect is None:
            end += 1
        out += _schedule(tape, instrs, start, end, made)
        if end < len(instrs):
            out.append(instrs[end])  # a guard: a barrier
        start = end + 1
    if [ins.out for ins in out] == [ins.out for ins in instrs]:
        return tape
    return Tape(inputs=tape.inputs, outputs=tape.outputs, consts=tape.consts, instrs=out,
                avals=tape.avals)


def _schedule(tape: Tape, instrs: Sequence[Instr], start: int, end: int,
              made: dict[int, int]) -> list[Instr]:
    """`_grouped_by_shape`'s order of ``instrs[start:end]``."""
    waiting = [0] * (end - start)  # operands made in the segment and not yet placed
    readers: dict[int, list[int]] = {}
    for k in range(start, end):
        for s in set(instrs[k].ins):
            j = made.get(s, -1)
            if start <= j < k:
                waiting[k - start] += 1
                readers.setdefault(j, []).append(k)
    shapes = [_loop_shape(tape, instrs[k]) for k in range(start, end)]
    ready: list[int] = []
    by_shape: dict[tuple[int, ...] | None, list[int]] = {}
    placed = [False] * (end - start)

    def release(k: int) -> None:
        heapq.heappush(ready, k)
        heapq.heappush(by_shape.setdefault(shapes[k - start], []), k)

    def first(queue: list[int] | None) -> int | None:
        while queue and placed[queue[0] - start]:
            heapq.heappop(queue)
        return heapq.heappop(queue) if queue else None

    for k in range(start, end):
        if not waiting[k - start]:
            release(k)
    order: list[Instr] = []
    current: tuple[int, ...] | None = None
    while len(order) < end - start:
        # the current shape's next, else the first of any.  (Taking next the
        # instructions of no loop, a reshape or a view, that let another
        # seed's chain of the current shape start fuses the seeds of a
        # side-by-side product into one loop, but at n = 10^5 that made them
        # 2-3 times slower: every seed's values stored for the scatters after
        # the loop, out of cache, where one seed's loop and scatters run while
        # its values are in cache)
        k = first(by_shape.get(current)) if current is not None else None
        if k is None:
            k = first(ready)
        placed[k - start] = True
        order.append(instrs[k])
        if shapes[k - start] is not None:
            current = shapes[k - start]
        for r in readers.get(k, ()):
            waiting[r - start] -= 1
            if not waiting[r - start]:
                release(r)
    return order


def _shape_runs(tape: Tape) -> list[int]:
    """For each instruction, how many instructions of its loop shape follow
    from it on (itself included) before one of another loop shape."""
    runs = [0] * len(tape.instrs)
    shape, count = None, 0
    for k in range(len(tape.instrs) - 1, -1, -1):
        own = _loop_shape(tape, tape.instrs[k])
        if own is not None and own != shape:
            shape, count = own, 0
        if own is not None:
            count += 1
        runs[k] = count if own is not None else 0
    return runs


def _nested_loops(lines: list[str], shape: Sequence[int]) -> tuple[str, str]:
    """Appends ``for i0 ...: for i1 ...:`` over ``shape``; returns the body's
    indentation and the flat C-order position of (i0, i1, ...)."""
    pad = ""
    for d, n in enumerate(shape):
        lines.append(f"{pad}for i{d} in range({n}):")
        pad += "    "
    return pad, " + ".join(f"i{d} * {st}" for d, st in enumerate(c_strides(shape))) or "0"


def _index_expr(start: int, strides: Sequence[int], names: Sequence[str]) -> str:
    terms = [str(start)] if start else []
    terms += [name if st == 1 else f"{name} * {st}" for name, st in zip(names, strides) if st]
    return " + ".join(terms) or "0"


@dataclass
class _Loop:
    """Elementwise instructions of one shape fused into one loop over the
    elements, and full reductions of their values folded into accumulators:
    ``sum(sin(x) * x**2)`` allocates nothing.  Only values read outside the
    loop are stored into arrays.

    Gathers by an index table affine over the loop (``x[i + 1]``, a 2-D block)
    join as reads ``x[start + i * stride]``, and scatter-adds of loop values
    into an accumulator the code owns as in-place updates, so the adjoint of
    a rerolled scalar loop is one pass, as a hand-written gradient loop is.
    Their index tables set the loop's ``grid``: the nested loops the flat
    position ``i`` runs over."""

    shape: tuple[int, ...]
    members: list[Instr] = field(default_factory=list)
    reductions: list[Instr] = field(default_factory=list)
    rows: list[Instr] = field(default_factory=list)  # reductions over trailing axes
    split: int = 0  # their first axis: the loops over axes from it run per row
    positions: set[int] = field(default_factory=set)  # of its instructions in the tape
    values: set[int] = field(default_factory=set)  # elementwise values it computes
    results: set[int] = field(default_factory=set)  # values and accumulators
    buffers_read: set[int] = field(default_factory=set)
    indexed: list[tuple[Instr, np.ndarray]] = field(default_factory=list)  # with flat tables
    written: dict[int, int] = field(default_factory=dict)  # scatter output -> its buffer
    broadcasts: bool = False  # some member broadcasts an operand (nested loops per axis)
    prelude: list[_Step] = field(default_factory=list)  # accumulators its scatters make
    zeroed: dict[int, _Step] = field(default_factory=dict)  # scatter out -> prelude making +0s
    recomputed: set[int] = field(default_factory=set)  # deferred values' recipes run here


class _LoopFusion:
    """The fused loops of the generator (mixed into `numba_codegen._Generator`,
    whose variables and buffers these methods use)."""

    ELEMENTWISE = frozenset(UFUNCS) | frozenset(SPECIAL_FUNCTIONS) | {P.where, P.astype}

    def starts_loop(self, ins: Instr) -> bool:
        shape = self.avals[ins.out].shape
        if ins.prim == "take":
            return shape != () and self.fusable_gather(ins) is not None
        if ins.prim == "broadcast_to":
            return self.fused_broadcast(ins)
        return (registry[ins.prim] in self.ELEMENTWISE and shape != () and math.prod(shape) > 0
                and self.vector_loop(ins) is None)  # a call of NumPy's loop instead

    def fused_broadcast(self, ins: Instr) -> bool:
        """Is ``ins`` a broadcast a loop reads in place (element ``i0`` of a
        row's value, the value of a scalar) rather than an array made for it?
        The VJP of a row reduction broadcasts each row's adjoint over the row:
        made, it was a pass writing the whole array and another reading it."""
        shape = self.avals[ins.out].shape
        return (ins.prim == "broadcast_to" and shape != () and math.prod(shape) > 0
                and self.avals[ins.ins[0]].shape != shape)

    def switches_loop(self, ins: Instr) -> bool:
        """Does ``ins``, starting a loop of another shape than the pending one,
        begin a run of several instructions of its shape (`_shape_runs`)?
        Then the pending loop is closed and the new one gathered; a lone
        instruction of another shape is a loop of its own, and the pending
        loop stays open for more of its members."""
        runs = getattr(self, "shape_runs", None)
        if runs is None:
            runs = self.shape_runs = _shape_runs(self.tape)
        return runs[self.k] > 1

    def fusable_gather(self, ins: Instr) -> np.ndarray | None:
        """The flat index table of a gather that can be a loop member: a table
        (not a slice, which is a view already) affine over some grid."""
        x, i = ins.ins
        idx = np.asarray(self.tape.consts.get(i, 0))
        if i not in self.tape.consts or idx.ndim == 0 or self.is_scalar(x) or is_range(idx):
            return None
        flat = idx.reshape(-1).astype(np.int64)
        return flat if affine_grid(flat) is not None else None

    def joins_loop(self, ins: Instr) -> bool:
        loop = self.loop
        if registry[ins.prim] in REDUCERS:  # a full reduction of a loop value: an accumulator
            x = ins.ins[0]
            return x in loop.values and x not in loop.recomputed and (
                (not ins.kwargs["keepdims"] and len(ins.kwargs["axes"]) == len(loop.shape))
                or self.row_reduction(ins))
        if ins.prim in ("take", "scatter_add"):
            return self.indexed_joins(ins)
        # operands of the loop's shape or broadcast to it (the output's shape is
        # the broadcast of the operands'), never an accumulator still pending
        return ((registry[ins.prim] in self.ELEMENTWISE or self.fused_broadcast(ins))
                and self.avals[ins.out].shape == loop.shape
                and not any(s in loop.results and s not in loop.values for s in ins.ins)
                and not any(s in loop.written for s in ins.ins)
                and not (loop.indexed and self.broadcasts(ins))
                and self.vector_loop(ins) is None)

    def row_reduction(self, ins: Instr) -> bool:
        """Can the loop fold reduction ``ins`` of its values over its trailing
        axes (a row sum, a row max), one accumulator per row?  Not in a loop
        of gathers or scatters (their grid is not the loop's shape), and one
        split of the axes per loop."""
        loop, nd = self.loop, len(self.loop.shape)
        axes = sorted(ins.kwargs["axes"])
        if not axes or loop.indexed or axes != list(range(axes[0], nd)) or axes[0] == 0:
            return False
        return loop.split in (0, axes[0])

    def broadcasts(self, ins: Instr) -> bool:
        return any(not self.is_scalar(s) and self.avals[s].shape != self.loop.shape
                   for s in ins.ins)

    def indexed_joins(self, ins: Instr) -> bool:
        loop = self.loop
        if loop.broadcasts or loop.rows:
            return False
        if ins.prim == "take":
            flat = self.fusable_gather(ins)
            x = ins.ins[0]
            if (flat is None or self.avals[ins.out].shape != loop.shape or x in loop.results
                    or self.buffer.get(x) in loop.written.values()):
                return False
        else:
            x, i, v = ins.ins
            if i not in self.tape.consts or not (v in loop.values or self.stored_value(v)):
                return False
            if v not in loop.values and self.buffer[v] == self.buffer.get(x):
                return False  # its own values, read while it is written
            flat = np.asarray(self.tape.consts[i]).reshape(-1).astype(np.int64)
            if flat.size != math.prod(loop.shape) or self.is_scalar(x) or x in loop.values:
                return False
            if not (self.fresh_accumulator(x) or x in self.buffer and self.dies_here(x, ins)):
                return False
        indexed = loop.indexed + [(ins, flat)]
        grid = common_affine_grid([f for _, f in indexed])
        return grid is not None and _scatter_delays(indexed, grid, self.target) is not None

    def stored_value(self, v: int) -> bool:
        """Can a fused scatter read ``v`` from its array, element i in iteration
        i?  An array of the loop's shape made before the loop (NumPy's loop of
        a transcendental function, `numba_vecmath`) that the loop does not write."""
        loop = self.loop
        return (v in self.buffer and v not in loop.results and self.avals[v].shape == loop.shape
                and self.buffer[v] not in loop.written.values())

    def target(self, ins: Instr) -> int:
        """The buffer a fused scatter updates (a key of its own for one that
        is yet to make its buffer)."""
        x = ins.ins[0]
        if ins.out in self.placed:  # a row of a stack: its block is an accumulator of its own
            return self.accumulator(ins.out)
        if x in self.tape.consts:
            return self.buffer.get(ins.out, -1 - ins.out)
        return self.buffer[x]

    def join_loop(self, ins: Instr) -> None:
        loop = self.loop
        loop.positions.add(self.k)
        loop.results.add(ins.out)
        if registry[ins.prim] in REDUCERS:
            if len(ins.kwargs["axes"]) == len(loop.shape) and not ins.kwargs["keepdims"]:
                loop.reductions.append(ins)
            else:
                loop.rows.append(ins)
                loop.split = min(ins.kwargs["axes"])
            return
        if self.deferred:
            self.recompute_operands(ins)
        loop.members.append(ins)
        if ins.prim == "scatter_add":  # in place: the result is the target's variable
            x, i, _ = ins.ins
            loop.indexed.append((ins, np.asarray(self.tape.consts[i]).reshape(-1)
                                 .astype(np.int64)))
            if ins.ins[2] not in loop.values:  # read from its array (`stored_value`)
                loop.buffers_read.add(self.buffer[ins.ins[2]])
            if x in self.tape.consts:  # made before the loop, with the loop's step
                outer, self.step = self.step, _Step()
                self.writable(x, ins)
                loop.prelude.append(self.step)
                first = np.asarray(self.tape.consts[x]).reshape(-1)[0]
                if (self.fresh_accumulator(x) and first.dtype.kind == "f" and first == 0
                        and not np.signbit(first)):  # writable made it with np.full
                    loop.zeroed[ins.out] = self.step
                self.step = outer
            else:
                self.name[ins.out] = self.name[x]
                self.join(ins.out, self.buffer[x])
            loop.written[ins.out] = self.accumulator(ins.out)
            return
        if ins.prim == "take":
            loop.indexed.append((ins, self.fusable_gather(ins)))
        else:
            loop.broadcasts = loop.broadcasts or self.broadcasts(ins)
        loop.values.add(ins.out)
        for s in ins.ins:
            if s in self.buffer:
                loop.buffers_read.add(self.buffer[s])

    def close_loop(self) -> _Step:
        loop, self.loop = self.loop, None
        size = math.prod(loop.shape)
        grid = common_affine_grid([flat for _, flat in loop.indexed]) if loop.indexed else None
        names = ["i"] if grid is None or len(grid) == 1 else [f"i{d}" for d in range(len(grid))]
        where = {ins.out: affine(flat.reshape(grid)) for ins, flat in loop.indexed}
        delays = _scatter_delays(loop.indexed, grid, self.target) if grid else {}
        scatter_at = {}  # scatter output -> the element it updates in iteration i
        for ins in loop.members:
            if ins.prim == "scatter_add":
                delay, low, step = delays[ins.out]
                scatter_at[ins.out] = _index_expr(*(where[ins.out] if delay == step == 0
                                                    else (low, [step])), names)
        most = max((d for d, _, _ in delays.values()), default=0)
        nested = loop.broadcasts or len(names) > 1 or bool(loop.rows)
        local = {} if nested else self.local_accumulators(loop, scatter_at, size + most)
        self.step = _Step()
        for made in loop.prelude:
            self.step.lines += made.lines
            self.step.reads += made.reads
            self.step.defines += made.defines
        lines = self.step.lines
        stored = []
        made = {ins.out: ins for ins in loop.members}
        for ins in loop.members:  # values read after the loop are kept in arrays
            if ins.out in loop.values and ins.out not in loop.recomputed:
                later = [r for r in self.readers[ins.out] if r not in loop.positions]
                if not later:
                    continue
                if self.defers(ins.out, later, made):  # `numba_recompute`
                    self.deferred[ins.out] = self.recipe(ins.out, made)
                    continue
                stored.append(ins)
                aval = self.avals[ins.out]
                self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        full = [ins for ins in loop.reductions if self.pairwise(ins)]
        per_row = [ins for ins in loop.rows if self.pairwise(ins)]
        for ins in loop.reductions:
            dt = self.avals[ins.out].dtype
            if ins not in full:
                lines.append(f"acc{ins.out} = {_literal(REDUCER_START[registry[ins.prim]], dt)}")
        lines += self.tree_buffers(full + per_row)
        if full:  # the walk of the loop's elements
            lines += self.tree_start(full, "f", size)
        rows = math.prod(loop.shape[:loop.split])
        for ins in loop.rows:
            lines.append(f"r{ins.out} = np.empty({rows}, np.{self.avals[ins.out].dtype.name})")
        body, late, shift, fill = [], [], [], []
        # a member reads e<s> only if s is computed above it in the body: a
        # recipe run for a later member (`numba_recompute`) may compute again
        # a value an earlier member read from its array
        above: set[int] = set()
        for ins in loop.members:
            if ins.prim == "scatter_add":
                continue
            if ins.prim == "take":
                position = _index_expr(*where[ins.out], names)
                body.append(f"e{ins.out} = {self.flat(ins.ins[0])}[{position}]")
            else:
                body.append(self.elementwise_line(ins, above, loop.shape))
            above.add(ins.out)
        for ins in loop.members:
            if ins in stored:
                body.append(f"{self.flat(ins.out)}[i] = e{ins.out}")
        for ins in loop.reductions:
            if ins in full:
                continue
            acc = f"acc{ins.out}"
            combine = REDUCERS[registry[ins.prim]]
            body.append(f"{acc} = " + combine.format(acc=acc, v=f"e{ins.ins[0]}"))
        for ins in loop.rows:
            if ins in per_row:
                continue
            acc = f"racc{ins.out}"
            combine = REDUCERS[registry[ins.prim]]
            body.append(f"{acc} = " + combine.format(acc=acc, v=f"e{ins.ins[0]}"))
        body += (self.tree_step(full, "f", size)
                 + self.tree_step(per_row, "r", math.prod(loop.shape[loop.split:])))
        for ins in loop.members:  # in tape order: each element's updates keep their order
            if ins.prim != "scatter_add":
                continue
            buffer = loop.written[ins.out]
            target = f"t{local[buffer]}" if buffer in local else \
                f"{self.flat(ins.out)}[{scatter_at[ins.out]}]"
            v = ins.ins[2]
            value = f"e{v}" if v in loop.values else f"{self.flat(v)}[i]"
            delay = delays[ins.out][0]
            if delay == 0:
                body.append(f"{target} += {value}")
            else:  # the value of `delay` iterations ago, kept in q<out>_<delay>
                q = [f"q{ins.out}_{d}" for d in range(1, delay + 1)]
                zero = _literal(0, self.avals[ins.out].dtype)
                lines.append(f"{' = '.join(q)} = {zero}")
                # the upper bound only where the loop runs past it: a condition
                # always true keeps LLVM from vectorizing a loop with several
                late += [f"if i >= {delay}" + (f" and i < {size + delay}:" if delay < most else ":"),
                         f"    {target} += {q[-1]}"]
                shift += [f"{a} = {b}" for a, b in zip(q[:0:-1], q[-2::-1])]
                fill.append(f"{q[0]} = {value}")
        first = [f"t{o} = {_literal(0, self.avals[o].dtype)}" for o in local.values()]
        store = [line for o in local.values() for line in
                 ([f"if i < {self.avals[o].size}:", f"    {self.flat(o)}[i] = t{o}"]
                  if self.avals[o].size < size + most else [f"{self.flat(o)}[i] = t{o}"])]
        if loop.rows:  # the rows' accumulators start and end around the loops over a row
            self.row_loops(loop, body)
        elif nested:  # one loop per axis of the shape or grid
            pad, flat = _nested_loops(lines, loop.shape if loop.broadcasts else grid)
            lines += [f"{pad}i = {flat}"] + [pad + line for line in body]
        elif most:  # scatters wait up to `most` iterations past the last element
            lines.append(f"for i in range({size + most}):")
            lines += ["    " + line for line in first]
            lines += [f"    if i < {size}:"] + ["        " + line for line in body]
            lines += ["    " + line for line in late + store + shift]
            lines += [f"    if i < {size}:"] + ["        " + line for line in fill]
        else:
            lines.append(f"for i in range({size}):")
            lines += ["    " + line for line in first + body + store]
        for ins in full:
            zero = self.literal(0, self.avals[ins.out].dtype)
            lines.append(f"acc{ins.out} = {zero} + ps{ins.out}[{BLOCK}]")
        for ins in loop.reductions:
            self.add_var(f"acc{ins.out}", ins.out, True, self.avals[ins.out].dtype)
        for ins in loop.rows:  # leading axes kept: never a scalar
            self.define_array(ins, f"r{ins.out}.reshape({_shape(self.avals[ins.out].shape)})")
        guards, self.loop_guards = self.loop_guards, []
        for ins in guards:
            self.emit_guard(ins)
        return self.step

    def row_loops(self, loop: _Loop, body: list[str]) -> None:
        """The loops over the axes before ``loop.split`` around, per row, each
        row accumulator's start, the loops over the row's axes running
        ``body``, and the accumulator's store.  A sum starts from -0.0 (a
        product from 1, a max from -inf): the identity of the first element,
        signed zeros and NaN included, so each row's value is the bits of
        the row fold `emit_reduce` makes from the row's first element."""
        lines, shape = self.step.lines, loop.shape
        per_row = [ins for ins in loop.rows if self.pairwise(ins)]
        pad = ""
        for d in range(len(shape)):
            if d == loop.split:
                lines += [pad + line for line in
                          self.tree_start(per_row, "r", math.prod(shape[loop.split:]))]
                for ins in loop.rows:
                    if ins in per_row:
                        continue
                    prim = registry[ins.prim]
                    start = -0.0 if prim is P.sum else REDUCER_START[prim]
                    lines.append(f"{pad}racc{ins.out} = "
                                 f"{_literal(start, self.avals[ins.out].dtype)}")
            lines.append(f"{pad}for i{d} in range({shape[d]}):")
            pad += "    "
        flat = " + ".join(f"i{d} * {st}" for d, st in enumerate(c_strides(shape)))
        lines += [f"{pad}i = {flat}"] + [pad + line for line in body]
        row = " + ".join(f"i{d} * {st}" for d, st in
                         enumerate(c_strides(shape[:loop.split])))
        pad = "    " * loop.split
        for ins in loop.rows:
            value = f"racc{ins.out}"
            if ins in per_row:  # 0 + the row's sum, as the unfused row sum
                value = f"{self.literal(0, self.avals[ins.out].dtype)} + ps{ins.out}[{BLOCK}]"
            lines.append(f"{pad}r{ins.out}[{row}] = {value}")

    # -- float sums in NumPy's pairwise order (numba_sums) ---------------------------
    def pairwise(self, ins: Instr) -> bool:
        """Is the loop's reduction ins a float sum, summed as NumPy's pairwise
        tree (`numba_sums`), as the unfused sum (`emit_reduce`) is?"""
        return registry[ins.prim] is P.sum and self.avals[ins.ins[0]].dtype.kind == "f"

    def tree_buffers(self, sums: list[Instr]) -> list[str]:
        """Per sum, its scratch: a leaf's values and the stack of subtree sums,
        dead after the loop, so a loop around this one's makes it once
        (`scratch`, `numba_loop_instr.made_once`)."""
        if sums:
            self.module_lines[STREAM_IMPORT] = None
        self.scratch.update(f"ps{ins.out}" for ins in sums)
        return [f"ps{ins.out} = np.empty({SCRATCH}, np.{self.avals[ins.ins[0]].dtype.name})"
                for ins in sums]

    @staticmethod
    def tree_start(sums: list[Instr], tag: str, n: int) -> list[str]:
        """A walk over n elements starts (``tag``: "f" the loop's elements, "r"
        each row's; its variables named after the first sum): the first leaf,
        empty stacks."""
        if not sums:
            return []
        w = f"{tag}{sums[0].out}"
        return ([f"pp{w} = 0", f"pn{w}, pd{w} = leaf_at({n}, 0)", f"pk{w} = 0"]
                + [f"nv{ins.out} = 0" for ins in sums])

    @staticmethod
    def tree_step(sums: list[Instr], tag: str, n: int) -> list[str]:
        """An element's values join the leaf; a full leaf is summed and pushed,
        and the next one found."""
        if not sums:
            return []
        w = f"{tag}{sums[0].out}"
        return ([f"ps{ins.out}[pk{w}] = e{ins.ins[0]}" for ins in sums]
                + [f"pk{w} += 1", f"if pk{w} == pn{w}:"]
                + [f"    nv{ins.out} = leaf_push(ps{ins.out}, nv{ins.out}, pn{w}, pd{w})"
                   for ins in sums]
                + [f"    pp{w} += pn{w}", f"    pk{w} = 0",
                   f"    pn{w}, pd{w} = leaf_at({n}, pp{w})"])

    def local_accumulators(self, loop: _Loop, scatter_at: dict[int, str], visits: int
                           ) -> dict[int, int]:
        """The accumulators a 1-D loop may sum per element in a local variable
        and store once, instead of adding each update into memory: the loop
        made them as zeros and every update lands on element ``i`` in the
        iteration ``i`` that covers it (iterations 0 .. visits - 1).  Their
        arrays then start uninitialized, each element adding its updates in
        tape order to +0 as memory would, bit for bit.  Maps buffer -> the
        scatter output whose variable names it."""
        groups: dict[int, list[int]] = {}
        for ins in loop.members:
            if ins.prim == "scatter_add":
                groups.setdefault(loop.written[ins.out], []).append(ins.out)
        local = {}
        for buffer, outs in groups.items():
            made = outs[0]
            if (made in loop.zeroed and all(scatter_at[o] == "i" for o in outs)
                    and self.avals[made].size <= visits):
                local[buffer] = made
        for made in local.values():  # their arrays need no zeros
            name, aval = self.name[made], self.avals[made]
            empty = f"{name} = np.empty({_shape(aval.shape)}, np.{aval.dtype.name})"
            step = loop.zeroed[made]
            fill = f"{name}[:] = "  # a row made in its block of a stack: the view stays
            if any(line.startswith(fill) for line in step.lines):
                step.lines = [line for line in step.lines if not line.startswith(fill)]
                continue
            step.lines = [empty if line.startswith(f"{name} = ") else line for line in step.lines]
        return local


assert all(p.elementwise for p in _LoopFusion.ELEMENTWISE), "a loop member that is not elementwise"
