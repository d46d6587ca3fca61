"""Optimizer rules for the adjoints of shifted slices: scatter-adds of one
value broadcast over the rows of an index table.

The reverse sweep of ``x[d:d + n]`` for several d (a banded or stencil
objective written with shifted slices of one array) adds each slice's
adjoint into the array's at its range; the rerolling pass gathers those
scatter-adds into one over a (k, n) table of the k ranges, with the adjoint
broadcast to (k, n).  The broadcast is then a k x n array written and read
once per call (per seed, in a Hessian-vector product), where the adjoint
itself is n values.  `split_broadcast_scatters` writes it back as k
scatter-adds of the n values, one per row of the table, in the rows'
order: each element receives the same additions in the same order, so the
values are the same bit for bit, and each row, a plain range, is one
in-place vector addition on the C VM and a loop over the range on Numba.
"""
from __future__ import annotations

import collections

import numpy as np

from ..core.tape import Aval, Instr, Tape
from .analysis import affine

#: split a broadcast scatter-add into at most this many rows: the rerolling
#: pass made one instruction of many, which must not come back as thousands
MAX_ROWS = 64


def split_broadcast_scatters(tape: Tape) -> Tape:
    """``scatter_add(acc, T, broadcast_to(v, (k,) + v.shape))``, T a constant
    (k,) + v.shape table and the broadcast used only there, as k scatter-adds
    of v by T[0], ..., T[k-1] in turn."""
    uses = collections.Counter(s for ins in tape.instrs for s in ins.ins)
    uses.update(tape.outputs)
    producer = {ins.out: ins for ins in tape.instrs}
    consts, avals = dict(tape.consts), list(tape.avals)
    instrs: list[Instr] = []
    changed = False
    for ins in tape.instrs:
        rows = _broadcast_rows(tape, ins, producer, uses)
        if rows is None:
            instrs.append(ins)
            continue
        v, table = rows
        acc = ins.ins[0]
        for r in range(table.shape[0]):
            consts[len(avals)] = np.ascontiguousarray(table[r])
            avals.append(Aval(table.shape[1:], table.dtype))
            index = len(avals) - 1
            if r + 1 < table.shape[0]:
                avals.append(avals[ins.out])
                out = len(avals) - 1
            else:
                out = ins.out
            instrs.append(Instr("scatter_add", out, (acc, index, v), (), ins.line))
            acc = out
        changed = True
    if not changed:
        return tape
    # the broadcasts now unused are left to dead-code elimination
    return Tape(list(tape.inputs), list(tape.outputs), consts, instrs, avals)


def _broadcast_rows(tape: Tape, ins: Instr, producer: dict[int, Instr],
                    uses: collections.Counter[int]) -> tuple[int, np.ndarray] | None:
    """(v, T) when ``ins`` is a scatter-add of a broadcast of v over T's
    leading axis, used nowhere else; None otherwise."""
    if ins.prim != "scatter_add":
        return None
    _, idx, value = ins.ins
    table = tape.consts.get(idx)
    src = producer.get(value)
    if (src is None or src.prim != "broadcast_to" or uses[value] != 1
            or not isinstance(table, np.ndarray) or table.ndim < 1):
        return None
    v = src.ins[0]
    shape = tuple(tape.avals[value].shape)
    if (table.shape != shape or tuple(tape.avals[v].shape) != shape[1:]
            or not 1 < shape[0] <= MAX_ROWS or tape.avals[v].dtype != tape.avals[value].dtype):
        return None
    # only rows that are ranges or basic slices (a strided update each, no
    # index list): a row of scattered indices would gain nothing
    if any(affine(row) is None for row in table):
        return None
    return v, table


def fuse_shifted_adjoints(tape: Tape) -> Tape:
    """``take(S, R)``, S a chain of scatter-adds of 1-D values at plain ranges
    into +0.0 zeros and R a plain range, as one sum of shifted slices: each
    value padded with zeros once (where its slices run past its ends), then
    ``((0 + v_1[..]) + v_2[..]) + ...`` over R, the terms in the chain's
    order.

    That is the adjoint of a sum of shifted slices of a padded array (a
    banded objective's ``concatenate([zeros, s, zeros])[d:d + n]``): the
    chain adds each slice's adjoint into the padded array's, one pass over
    it each, and the take reads the middle; the sum is one elementwise
    chain, which the backends fuse into one pass.  The same values bit for
    bit: each element of R receives the same terms in the same order,
    started from +0.0 as the zeros start them, and a term past a value's
    end adds +0.0 to a sum started from +0.0, which is never -0.0.
    Elements of S outside R, and writes (scatter-sets, scatter-adds) that
    fall outside R, are not computed."""
    uses = collections.Counter(s for ins in tape.instrs for s in ins.ins)
    uses.update(tape.outputs)
    producer = {ins.out: ins for ins in tape.instrs}
    consts, avals = dict(tape.consts), list(tape.avals)
    instrs: list[Instr] = []

    def const(value: np.ndarray) -> int:
        consts[len(avals)] = value
        avals.append(Aval(value.shape, value.dtype))
        return len(avals) - 1

    def slot(aval: Aval) -> int:
        avals.append(aval)
        return len(avals) - 1

    changed = False
    for ins in tape.instrs:
        terms = _shifted_terms(tape, ins, producer, uses)
        if terms is None:
            instrs.append(ins)
            continue
        out = tape.avals[ins.out]
        m, dtype = out.shape[0], out.dtype
        padded: dict[int, tuple[int, int]] = {}  # value -> (its padded slot, left pad)
        for v in dict.fromkeys(v for v, _ in terms):
            size = tape.avals[v].shape[0]
            # a term's shift is v's index of R's first element
            shifts = [shift for w, shift in terms if w == v]
            left, right = max(0, -min(shifts)), max(0, max(shifts) + m - size)
            padded[v] = (v, 0)
            if left or right:
                into = slot(Aval((left + size + right,), dtype))
                instrs.append(Instr("scatter_set", into, (
                    const(np.zeros(left + size + right, dtype)),
                    const(np.arange(left, left + size, dtype=np.int64)), v), (), ins.line))
                padded[v] = (into, left)
        consts[len(avals)] = dtype.type(0)  # the +0.0 the zeros start each element from
        total = slot(Aval((), dtype))
        for k, (v, shift) in enumerate(terms):
            source, left = padded[v]
            start = left + shift
            part = slot(out)
            instrs.append(Instr("take", part, (
                source, const(np.arange(start, start + m, dtype=np.int64))), (), ins.line))
            into = ins.out if k == len(terms) - 1 else slot(out)
            instrs.append(Instr("add", into, (total, part), (), ins.line))
            total = into
        changed = True
    if not changed:
        return tape
    return Tape(list(tape.inputs), list(tape.outputs), consts, instrs, avals)


def _plain_range(tape: Tape, slot: int) -> tuple[int, int] | None:
    """(start, length) of a constant 1-D index table that is a plain range."""
    table = tape.consts.get(slot)
    if not isinstance(table, np.ndarray) or table.ndim != 1 or table.dtype.kind not in "iu":
        return None
    if table.size <= 1:  # an empty one writes nothing (concatenate's empty pieces)
        return (int(table[0]), 1) if table.size else (0, 0)
    pattern = affine(table)
    if pattern is None or pattern[1] != [1]:
        return None
    return pattern[0], table.size


def _shifted_terms(tape: Tape, ins: Instr, producer: dict[int, Instr],
                   uses: collections.Counter[int]) -> list[tuple[int, int]] | None:
    """The terms (value, shift) in order when ``ins`` is a take of a plain
    range R from a chain of scatter-adds at plain ranges into +0.0 zeros
    (scatter-sets outside R allowed), each link used only by the next; at
    least two terms inside R.  A term's shift is the index into its value
    of R's first element."""
    if ins.prim != "take" or tape.avals[ins.out].dtype.kind != "f":
        return None
    chain, at = ins.ins
    window = _plain_range(tape, at)
    if window is None or tape.avals[chain].ndim != 1 or uses[chain] != 1:
        return None
    r0, m = window
    terms: list[tuple[int, int]] = []
    while True:
        if _positive_zeros(tape, chain):
            break
        link = producer.get(chain)
        if link is None or link.prim not in ("scatter_add", "scatter_set"):
            return None
        acc, idx, v = link.ins
        span = _plain_range(tape, idx)
        if span is None or (uses[acc] != 1 and acc not in tape.consts):
            return None
        a, length = span
        outside = length == 0 or a + length <= r0 or a >= r0 + m
        if not outside:
            if (link.prim != "scatter_add" or tape.avals[v].shape != (length,)
                    or tape.avals[v].dtype != tape.avals[ins.out].dtype):
                return None
            terms.append((v, r0 - a))
        chain = acc
    if len(terms) < 2:
        return None
    terms.reverse()
    return terms


def _positive_zeros(tape: Tape, slot: int) -> bool:
    value = tape.consts.get(slot)
    return (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 0
            and not np.any(value) and not np.any(np.signbit(value)))
