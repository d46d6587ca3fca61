"""Optimizer rules for the adjoints of shifted slices (`optimize` runs them).

The reverse sweep of ``padded[d:d + n]`` for several d (a banded or chained
objective written with shifted slices of one padded array) adds each
slice's adjoint into the padded array's at its range, and reads the middle
back; the rerolling pass gathers several of those scatter-adds into one
over a (k, n) table of the ranges, with the adjoint broadcast to (k, n).
A Hessian-vector product carries this twice for every seed.

`split_broadcast_scatters` writes a broadcast scatter-add as k scatter-adds
of the n values, one per row of the table, in the rows' order: no k x n
array is written and read again.  `fuse_shifted_adjoints` then writes the
middle of a scatter-add chain into zeros as one sum of shifted slices of
the values, which the backends run as one fused pass instead of one pass
over the padded array per slice.  Both keep every value bit for bit: each
element receives the same additions in the same order.
"""
from __future__ import annotations

import collections
from typing import Any, Callable

import numpy as np

from ..core.tape import Aval, Instr, Tape
from .analysis import affine

#: split a broadcast scatter-add into at most this many rows: the rerolling
#: pass made one instruction of many, which must not come back as thousands
MAX_ROWS = 64


class _Rewrite:
    """A tape being rewritten: the instructions kept or made so far, and new
    constants and slots appended to the original's."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self.uses = collections.Counter(s for ins in tape.instrs for s in ins.ins)
        self.uses.update(tape.outputs)
        self.producer = {ins.out: ins for ins in tape.instrs}
        self.consts, self.avals = dict(tape.consts), list(tape.avals)
        self.instrs: list[Instr] = []

    def slot(self, aval: Aval) -> int:
        self.avals.append(aval)
        return len(self.avals) - 1

    def const(self, value: Any) -> int:
        self.consts[len(self.avals)] = value
        return self.slot(Aval(np.shape(value), np.asarray(value).dtype))

    def run(self, match: Callable[["_Rewrite", Instr], Any],
            emit: Callable[["_Rewrite", Instr, Any], None]) -> Tape:
        """Each instruction ``match`` finds something in replaced by what
        ``emit`` appends for it; the tape itself when none is.  The
        instructions left unused go to dead-code elimination."""
        changed = False
        for ins in self.tape.instrs:
            found = match(self, ins)
            if found is None:
                self.instrs.append(ins)
            else:
                emit(self, ins, found)
                changed = True
        if not changed:
            return self.tape
        return Tape(list(self.tape.inputs), list(self.tape.outputs), self.consts, self.instrs,
                    self.avals)


def split_broadcast_scatters(tape: Tape) -> Tape:
    """``scatter_add(acc, T, broadcast_to(v, (k,) + v.shape))``, T a constant
    (k,) + v.shape table and the broadcast used only there, as k scatter-adds
    of v by T[0], ..., T[k-1] in turn."""
    def emit(rw: _Rewrite, ins: Instr, found: tuple[int, np.ndarray]) -> None:
        v, table = found
        acc = ins.ins[0]
        for r in range(table.shape[0]):
            index = rw.const(np.ascontiguousarray(table[r]))
            out = ins.out if r + 1 == table.shape[0] else rw.slot(rw.avals[ins.out])
            rw.instrs.append(Instr("scatter_add", out, (acc, index, v), (), ins.line))
            acc = out
    return _Rewrite(tape).run(_broadcast_rows, emit)


def _broadcast_rows(rw: _Rewrite, ins: Instr) -> tuple[int, np.ndarray] | None:
    """(v, T) when ``ins`` is a scatter-add of a broadcast of v over T's
    leading axis, used nowhere else; None otherwise."""
    tape, producer, uses = rw.tape, rw.producer, rw.uses
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
    def emit(rw: _Rewrite, ins: Instr, terms: list[tuple[int, int]]) -> None:
        out = rw.avals[ins.out]
        m, dtype = out.shape[0], out.dtype
        padded: dict[int, tuple[int, int]] = {}  # value -> (its padded slot, left pad)
        for v in dict.fromkeys(v for v, _ in terms):
            size = rw.avals[v].shape[0]
            # a term's shift is v's index of R's first element
            shifts = [shift for w, shift in terms if w == v]
            left, right = max(0, -min(shifts)), max(0, max(shifts) + m - size)
            padded[v] = (v, 0)
            if left or right:
                into = rw.slot(Aval((left + size + right,), dtype))
                rw.instrs.append(Instr("scatter_set", into, (
                    rw.const(np.zeros(left + size + right, dtype)),
                    rw.const(np.arange(left, left + size, dtype=np.int64)), v), (), ins.line))
                padded[v] = (into, left)
        total = rw.const(dtype.type(0))  # the +0.0 the zeros start each element from
        for k, (v, shift) in enumerate(terms):
            source, left = padded[v]
            part = rw.slot(out)
            rw.instrs.append(Instr("take", part, (
                source, rw.const(np.arange(left + shift, left + shift + m, dtype=np.int64))),
                (), ins.line))
            into = ins.out if k == len(terms) - 1 else rw.slot(out)
            rw.instrs.append(Instr("add", into, (total, part), (), ins.line))
            total = into
    return _Rewrite(tape).run(_shifted_terms, emit)


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


def _shifted_terms(rw: _Rewrite, ins: Instr) -> list[tuple[int, int]] | None:
    """The terms (value, shift) in order when ``ins`` is a take of a plain
    range R from a chain of scatter-adds at plain ranges into +0.0 zeros
    (scatter-sets outside R allowed), each link used only by the next; at
    least two terms inside R.  A term's shift is the index into its value
    of R's first element."""
    tape, producer, uses = rw.tape, rw.producer, rw.uses
    if ins.prim != "take" or tape.avals[ins.out].dtype.kind != "f":
        return None
    chain, at = ins.ins
    link = producer.get(chain)
    if (link is None or link.prim not in ("scatter_add", "scatter_set") or uses[chain] != 1
            or tape.avals[chain].ndim != 1):
        return None  # the cheap tests first: every take of every tape comes here
    window = _plain_range(tape, at)
    if window is None:
        return None
    r0, m = window
    terms: list[tuple[int, int]] = []
    while True:
        if positive_zeros(tape, chain):
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


def positive_zeros(tape: Tape, slot: int) -> bool:
    """Is ``slot`` a constant float array of +0.0 only?"""
    value = tape.consts.get(slot)
    return (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 0
            and not np.any(value) and not np.any(np.signbit(value)))
