"""The tape as integer arrays: what recurrence detection (`transforms/recurrence.py`)
and rerolling (`transforms/reroll.py`, `reroll_terms.py`) read of a long tape
instead of a Python step per instruction.

Per instruction its operand slots (the first MAX_ARITY, -1 past its arity),
the position of each operand's producer, its exact features (primitive and
parameters, result and operand avals by number, arity) and its primitive's
number; per slot whether it is a constant, its aval's number and how often
it is read.  Detection builds them for its hashes; when it finds no loop it
keeps them (`keep_columns`) for rerolling, which works on the same tape
next (`columns_of`).
"""
from __future__ import annotations

import itertools
import operator
import weakref
from typing import Any, NamedTuple

import numpy as np

from ..core.registry import registry
from ..core.tape import Aval, Tape
from ..core.tracer import _tracing

MAX_ARITY = 4         # instructions with more operands never belong to a body

_PRIM, _OUT, _INS, _PARAMS = (operator.itemgetter(k) for k in range(4))  # of an Instr


class TapeArrays:
    """The tape as integer arrays (see the module's docstring)."""

    def __init__(self, tape: Tape) -> None:
        instrs = tape.instrs
        self.tape = tape
        n = self.n = len(instrs)
        nslots = len(tape.avals)
        recorded = tape.recorded  # its trace's list of operands, if it has one
        traced = recorded is not None and recorded.describe(tape)
        column = recorded.c_column(tape) if traced else None  # the same, as C arrays
        if column is not None:
            arity, flat = column.operands()
        else:
            ins_lists = recorded.operands if traced else list(map(_INS, instrs))
            arity = np.fromiter(map(len, ins_lists), np.int64, n)
            flat = np.fromiter(itertools.chain.from_iterable(ins_lists), np.int64,
                               int(arity.sum()))
        # the operand table filled by arity (few): on a long tape each array
        # is fresh memory to fault in, which costs more than the arithmetic
        starts = np.cumsum(arity) - arity
        ops = np.full((n, MAX_ARITY), -1, np.int64)
        for a in np.flatnonzero(np.bincount(arity)).tolist():
            if a:
                at = np.flatnonzero(arity == a)
                width = min(a, MAX_ARITY)
                ops[at, :width] = flat[starts[at, None] + np.arange(width)]
        self.ops = ops
        outs = _traced_outs(tape) if traced else None
        if outs is None:
            outs = np.fromiter(map(_OUT, instrs), np.int64, n)
        self.outs = outs
        producer = np.full(nslots + 1, -1, np.int64)  # index -1 (a pad) maps to -1
        producer[outs] = np.arange(n, dtype=np.int64)
        self.producer = producer
        self.pp = producer[ops]  # producer position of each operand (-1: none)
        is_const = np.zeros(nslots + 1, bool)
        is_const[np.fromiter(tape.consts, np.int64, len(tape.consts))] = True
        self.is_const = is_const
        # exact features: primitive and parameters, result and operand avals
        self.features, blocked, self.names, self.prim_names, self.aval_id = \
            _features(tape, ops, outs, arity, flat, column)
        self.blocked = blocked
        # how often each slot is read (rerolling's `_TapeIndex`: outputs aside)
        self.uses = np.bincount(flat, minlength=nslots)


def _traced_outs(tape: Tape) -> np.ndarray | None:
    """The output slots of a tape as its trace recorded it, in order: a trace
    numbers slots as it makes them, so they are the slots that are neither
    inputs nor constants (None if the count says otherwise)."""
    instrs = tape.instrs
    computed = np.ones(len(tape.avals), bool)
    computed[np.asarray(tape.inputs, np.int64)] = False
    computed[np.fromiter(tape.consts, np.int64, len(tape.consts))] = False
    outs = np.flatnonzero(computed)
    if len(outs) != len(instrs) or (len(outs) and (outs[0] != instrs[0].out
                                                   or outs[-1] != instrs[-1].out)):
        return None
    return outs


class Columns(NamedTuple):
    """What rerolling reads of `TapeArrays` (its index of the tape,
    `reroll_terms._TapeIndex`, its chains and its batched term matching,
    `reroll_terms._Batches`), without the tape."""

    producer: np.ndarray
    ops: np.ndarray
    features: np.ndarray
    is_const: np.ndarray
    names: np.ndarray
    prim_names: list[str]
    aval_id: np.ndarray
    uses: np.ndarray

    @classmethod
    def of(cls, arrays: TapeArrays) -> Columns:
        return cls(arrays.producer, arrays.ops, arrays.features, arrays.is_const, arrays.names,
                   arrays.prim_names, arrays.aval_id, arrays.uses)


#: (weak reference to a tape, its size, its `Columns`): kept when detection
#: finds no loop on a tape, for rerolling, which then works on the same tape
#: (`columns_of`); one tuple, replaced whole, so that threads tracing at
#: once read a consistent one.  No reference to the tape: once it is gone,
#: so are they.
_last: tuple[Any, tuple[int, int, int], Columns] | None = None


def _size(tape: Tape) -> tuple[int, int, int]:
    return len(tape.instrs), len(tape.avals), len(tape.consts)


def keep_columns(tape: Tape, arrays: TapeArrays) -> None:
    global _last
    _last = (weakref.ref(tape, _dropped), _size(tape), Columns.of(arrays))


def columns_of(tape: Tape) -> Columns:
    """The tape's `Columns`: those detection kept if they are this tape's and
    it is unchanged since, else made now."""
    last = _last
    if last is not None and last[0]() is tape and last[1] == _size(tape):
        return last[2]
    return Columns.of(TapeArrays(tape))


def forget_columns() -> None:
    """Let go of the columns kept for rerolling (a long tape's are large)."""
    global _last
    _last = None


def _dropped(ref: Any) -> None:
    global _last
    last = _last
    if last is not None and last[0] is ref:  # the tape is gone: so are its columns
        _last = None


def _features(tape: Tape, ops: np.ndarray, outs: np.ndarray, arity: np.ndarray,
              flat: np.ndarray, column: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                             list[str], np.ndarray]:
    """Per instruction: a number for its primitive and parameters, its
    result's and operands' avals, its arity; and whether it can be in no
    body (an effect, too many operands, parameters that cannot be compared).
    Also the number of each instruction's primitive, the primitives' names
    by number, and a number per slot for its aval (equal avals alike; -1
    for the pad and the slots no instruction reads or computes)."""
    instrs, n, avals = tape.instrs, len(tape.instrs), tape.avals
    # avals by object first (most slots share a few objects), then by value;
    # only the slots the instructions use (a tape whose loops were found
    # keeps its slot numbers: a few instructions among a million slots)
    used = np.zeros(len(avals) + 1, bool)
    used[outs] = used[flat] = True
    used = np.flatnonzero(used[:-1])
    if _tracing is not None:  # in C (numbers in order of first appearance)
        inverse, first = _tracing.object_numbers(avals, used)
    else:  # (numbers in order of the objects' ids: only equality matters)
        _, first, inverse = np.unique(
            np.fromiter(map(id, map(avals.__getitem__, used.tolist())), np.int64, len(used)),
            return_index=True, return_inverse=True)
    by_value: dict[Aval, int] = {}
    canonical = np.array([by_value.setdefault(avals[int(used[k])], len(by_value)) for k in first],
                         np.int64)
    aval_id = np.full(len(avals) + 1, -1, np.int64)
    aval_id[used] = canonical[inverse.ravel()] if len(first) else -1
    # primitives by name; parameters (rare) by value, and by repr, which
    # tells -0.0 from 0.0 where == and hash do not
    if column is not None:  # what the C `_append` recorded of each (`_tracing.Column`)
        prim_names, by_name, with_params = column.primitives()
        ids = {name: k for k, name in enumerate(prim_names)}
    else:
        names = list(map(_PRIM, instrs))
        prim_names = list(dict.fromkeys(names))  # (in order of appearance: deterministic)
        ids = {name: k for k, name in enumerate(prim_names)}
        by_name = np.fromiter(map(ids.__getitem__, names), np.int64, n)
        # the instructions with parameters (few), picked out in C
        with_params = itertools.compress(range(n), map(_PARAMS, instrs))
    kind = by_name.copy()
    keys: dict[Any, int] = {}
    for k in with_params:
        i = instrs[k]
        try:
            kind[k] = keys.setdefault((i.prim, i.params, repr(i.params)), len(keys)) + len(ids)
        except TypeError:  # unhashable parameters: they match nothing
            kind[k] = -1 - k
    effects = {ids[name] for name in ids if registry[name].effect is not None}
    blocked = arity > MAX_ARITY
    if effects:
        blocked |= np.isin(by_name, list(effects))
    kind[blocked] = -1 - np.nonzero(blocked)[0]
    features = np.empty((n, 3 + MAX_ARITY), np.int64)  # filled in place, as above
    features[:, 0] = kind
    np.take(aval_id, outs, out=features[:, 1], mode="wrap")  # (no index out of range)
    features[:, 2] = arity
    np.take(aval_id, ops, out=features[:, 3:], mode="wrap")  # (-1: the pad, as indexing)
    return features, blocked, by_name, prim_names, aval_id
