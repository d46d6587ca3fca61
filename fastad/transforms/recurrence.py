"""Recurrence detection: Python time-stepping loops become one ``loop`` instruction.

A Python loop whose step consumes the previous step's state (an RK4 or
leapfrog integrator, a recurrent network over a sequence, a fixed number of
Gauss-Seidel sweeps, a discounted return) traces to steps x body
instructions: a *run* of isomorphic groups of P consecutive instructions in
which group k + 1 reads group k's results.  This pass finds such runs on the
traced tape and replaces each by one ``loop`` instruction (the primitive
``fastad.scan`` records, `primitives/loops.py`) whose body is one group as a
sub-tape, so differentiation (checkpointed reverse loops), batching, saving
and every backend treat it as they treat a scan.

Finding runs.  Each instruction gets a structural hash of its primitive,
parameters, shapes and the hashes of its operands' producers a few levels
deep (constants all hash alike, so step-dependent constants match).  The
period P of a run is a distance at which equal hashes recur often; a run is
a stretch where the hash at i equals the hash at i + P.  Hashes only
propose: a run is converted only after every instruction of every step is
checked exactly against the body (`_verify`).

What a step may read, checked per operand of each body instruction:

* a value of the same step at the same offset (internal);
* a value of the previous step at a fixed offset (carried: the loop's carry;
  the first step reads the initial value there, which must be the same
  slot for every reader);
* a value from before the run that is the same slot in every step (closed
  over);
* a constant: equal in every step (bits and type), it stays in the body;
  differing, it becomes a per-step input stacked along the trip count (a
  ``take`` of a closed-over array at a step-dependent index ``x[t]`` is
  hoisted whole: one ``take`` with the stacked indices before the loop).

Anything else (a step reading two steps back, values of differing slots,
guards or other effects inside a step, steps of different structure) ends
the run there: the steps before it may still convert, the rest stay
unrolled.  Values of a step read after the run become the loop's per-step
outputs (the last step's carried values its final carry), read back from the
loop's packed result by ``take``.

Exactness: the body is one step's instructions with the same primitives,
parameters and operands, run in the same order, so the loop computes bit for
bit what the unrolled steps computed (`tests/test_recurrence.py` checks
generated programs on the reference interpreter and the C VM).

Nested loops: rerolling runs first, so a time loop around a spatial loop
whose iterations reroll into vector code becomes a loop over a vector body.
"""
from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np

from ..core.registry import registry
from ..core.tape import Aval, Instr, Tape
from ..primitives.loops import LoopBody, packed_dtype
from .analysis import bitwise_equal
from .optimize import eliminate_dead_code
from .reroll import _without_gc
from .tape_arrays import MAX_ARITY, TapeArrays, forget_columns, keep_columns

MIN_TRIP = 8          # runs of fewer steps stay unrolled (not worth a loop)
HASH_DEPTH = 4        # levels of operands a structural hash looks through
MAX_LAG = 3           # a hash's k-th next occurrence, k <= MAX_LAG, proposes a period
MAX_CANDIDATES = 6    # periods tried per pass, most frequent first
MAX_PASSES = 8        # one loop converted per pass
MAX_INSTRUCTIONS = 4_000_000  # longer tapes are left as traced (the arrays would not fit)
MAX_ROTATIONS = 512   # alignments of a step tried when telling a parallel loop (`_parallel`)

_MIX = np.uint64(0x9E3779B97F4A7C15)
_INT64 = np.dtype(np.int64)
_DTYPE, _SHAPE = operator.attrgetter("dtype"), operator.attrgetter("shape")


class _Arrays(TapeArrays):
    """The tape as integer arrays (`TapeArrays`: per instruction its exact
    features, for verification, operand slots and producer positions), and
    its structural hashes."""

    def __init__(self, tape: Tape) -> None:
        super().__init__(tape)
        self._plain_hash: np.ndarray | None = None
        self._valued_hash: np.ndarray | None = None
        self._local_hash: np.ndarray | None = None
        self._index: np.ndarray | None = None
        self.parallel_refused = False  # a run was left to rerolling as a parallel loop

    @property
    def hash(self) -> np.ndarray:
        """The structural hash (constants all alike); computed when first
        asked: rerolling reads the other arrays only (`columns_of`)."""
        if self._plain_hash is None:
            self._plain_hash = self._hash(np.full(len(self.is_const), 2, np.uint64))
        return self._plain_hash

    @property
    def valued_hash(self) -> np.ndarray:
        """A hash that tells constants apart by value: a time step holding a
        spatial loop (whose iterations differ only in their indices) recurs
        with the period of the time step only in this one."""
        if self._valued_hash is None:
            const_code = np.full(len(self.is_const), 2, np.uint64)
            consts = self.tape.consts
            const_code[np.fromiter(consts, np.int64, len(consts))] = \
                _value_codes(list(consts.values())) + np.uint64(1 << 40)
            self._valued_hash = self._hash(const_code)
        return self._valued_hash

    def _hash(self, const_code: np.ndarray) -> np.ndarray:
        # the operands' hashes are gathered from one array holding every
        # instruction's hash and then every slot's leaf code (operands without
        # a producer: constants by ``const_code``, inputs by slot, the pad 1),
        # a column at a time into one buffer: on a long tape each new array is
        # fresh memory to fault in, which costs more than the arithmetic
        # (uint64 arithmetic wraps alike either way, int64 -> uint64 keeps the bits)
        n, local, index = self.n, self._local(), self._operand_index()
        nslots = len(self.is_const) - 1
        source = np.empty(n + 1 + nslots, np.uint64)
        source[n] = 1
        codes = source[n + 1:]
        np.add(np.arange(nslots, dtype=np.uint64), np.uint64(3), out=codes)
        np.copyto(codes, const_code[:nslots], where=self.is_const[:nslots])
        child = np.empty(n, np.uint64)
        h = local
        for _ in range(HASH_DEPTH):
            source[:n] = h
            new = local.copy()
            for m in range(MAX_ARITY):
                np.take(source, index[m], out=child, mode="clip")  # (all in range)
                _mix_in(new, child, m + 7)
            h = new
        return h

    def _local(self) -> np.ndarray:
        """Each instruction's hash of its own features (both hashes start from it)."""
        if self._local_hash is None:
            f = self.features.view(np.uint64)
            local = np.zeros(self.n, np.uint64)
            for c in range(f.shape[1]):
                _mix_in(local, f[:, c], c + 1)
            self._local_hash = local
        return self._local_hash

    def _operand_index(self) -> np.ndarray:
        """Per operand column, where `_hash` finds each operand's hash: its
        producer's position, else n + 1 + its slot (n for the pad)."""
        if self._index is None:
            index = np.empty((MAX_ARITY, self.n), np.int64)
            np.add(self.ops.T, self.n + 1, out=index)
            pp = self.pp.T
            np.copyto(index, pp, where=pp >= 0)
            self._index = index
        return self._index

    def periods(self, min_trip: int, valued: bool) -> list[int]:
        """Distances at which equal hashes recur, the most promising first."""
        found = []
        for hashes in (self.valued_hash if valued else self.hash,):
            order = np.argsort(hashes, kind="stable")
            hs = hashes[order]
            for lag in range(1, MAX_LAG + 1):
                if len(hs) <= lag:
                    break
                same = hs[lag:] == hs[:-lag]
                found.append((order[lag:] - order[:-lag])[same])
        if not found:
            return []
        # the distances (positive: a stable sort keeps equal hashes in tape
        # order) and how often each occurs, as np.unique's return_counts
        # gives them, without its sort of up to 3n values
        counts = np.bincount(np.concatenate(found))
        values = np.flatnonzero(counts)
        counts = counts[values]
        keep = counts >= min_trip - 1
        values, counts = values[keep], counts[keep]
        # by the instructions they might cover: a time step holding a spatial
        # loop recurs less often than the spatial loop's iterations
        return [int(v) for v in values[np.argsort(-counts * values, kind="stable")]
                [:MAX_CANDIDATES]]

    def alike(self, period: int) -> np.ndarray:
        """Whether instruction i has the features of instruction i + period."""
        return ((self.features[:-period] == self.features[period:]).all(axis=1)
                & ~self.blocked[:-period] & ~self.blocked[period:])

    def stretches(self, period: int, min_trip: int) -> list[tuple[int, int]]:
        """(start, steps) of stretches where the hashes repeat with ``period``."""
        if self.n < 2 * period:
            return []
        match = np.concatenate([[False], self.hash[period:] == self.hash[:-period], [False]])
        edges = np.flatnonzero(np.diff(match.astype(np.int8)))
        starts = edges[::2]
        steps = (edges[1::2] - starts) // period + 1
        # the first steps' hashes see initial values: `_verify` looks back
        long = steps >= max(2, min_trip - HASH_DEPTH - 1)
        return list(zip(starts[long].tolist(), steps[long].tolist()))


def _same_as(values: list[Any], r: int) -> np.ndarray:
    """Per value, whether it is of ``values[r]``'s type and has its dtype, shape
    and bits (`bitwise_equal`): at once for Python floats and 0-d int64
    arrays (a loop's data and ``x[i]``'s indices), else one by one."""
    ref = values[r]
    kinds = set(map(type, values))
    if kinds == {float}:
        bits = np.fromiter(values, np.float64, len(values)).view(np.int64)
        return bits == bits[r]
    if kinds == {np.ndarray} and all(v.dtype == _INT64 and not v.shape for v in values):
        ints = np.fromiter(values, np.int64, len(values))  # (np.array's look at each: done)
        return ints == ints[r]
    return np.array([type(v) is type(ref) and bitwise_equal(v, ref) for v in values])


def _value_codes(values: list[Any]) -> np.ndarray:
    """A number per constant, equal for two constants exactly when they are
    of one type, dtype, shape and bits (large ones: when they are the same
    object).  Only equality of the hashes they feed matters, so the numbers
    themselves are arbitrary.  The constants of a long loop's trace are
    nearly all Python floats and ``x[i]``'s 0-d int64 indices: those are
    numbered by their bits in NumPy, the rest one by one."""
    n = len(values)
    codes = np.zeros(n, np.uint64)
    # (per value in C: `map` of builtins, no generator frame per constant)
    types = list(map(type, values))
    taken = 0  # codes used so far
    floats = np.fromiter(map(operator.is_, types, itertools.repeat(float)), bool, n)
    if floats.any():
        at = np.flatnonzero(floats)
        bits = np.fromiter(map(values.__getitem__, at.tolist()), np.float64,
                           len(at)).view(np.int64)
        _, inverse = np.unique(bits, return_inverse=True)
        codes[at] = inverse.ravel().astype(np.uint64)
        taken = int(inverse.max()) + 1
    # the 0-d int64 arrays among the constants (x[i]'s indices: most of a loop's)
    arrays = np.flatnonzero(np.fromiter(map(operator.is_, types, itertools.repeat(np.ndarray)),
                                        bool, n))
    array_values = list(map(values.__getitem__, arrays.tolist()))
    int64 = np.fromiter(map(_INT64.__eq__, map(_DTYPE, array_values)), bool, len(arrays))
    int64 &= np.fromiter(map(operator.not_, map(_SHAPE, array_values)), bool, len(arrays))
    at = arrays[int64]
    indices = np.zeros(n, bool)
    if len(at):
        indices[at] = True
        ints = np.fromiter(itertools.compress(array_values, int64), np.int64, len(at))
        _, inverse = np.unique(ints, return_inverse=True)
        codes[at] = inverse.ravel().astype(np.uint64) + np.uint64(taken)
        taken += int(inverse.max()) + 1
    value_ids: dict[Any, int] = {}
    for k in np.flatnonzero(~(floats | indices)).tolist():
        value = values[k]
        v = np.asarray(value)
        key = (type(value).__name__, v.dtype.str, v.shape, v.tobytes()) \
            if v.size <= 64 else id(value)
        codes[k] = value_ids.setdefault(key, len(value_ids)) + taken
    return codes



def _mix_in(h: np.ndarray, column: np.ndarray, salt: int) -> None:
    """h = (h ^ column) * _MIX + salt, in place (uint64, wrapping)."""
    np.bitwise_xor(h, column, out=h)
    np.multiply(h, _MIX, out=h)
    np.add(h, np.uint64(salt), out=h)


class _Run:
    """A verified run: ``steps`` groups of ``period`` instructions from ``start``."""

    def __init__(self, arrays: _Arrays, start: int, period: int, steps: int,
                 varying: dict[tuple[int, int], list[Any]], hoisted: set[int]) -> None:
        self.arrays, self.start, self.period, self.steps = arrays, start, period, steps
        self.varying, self.hoisted = varying, hoisted

    @property
    def end(self) -> int:
        return self.start + self.period * self.steps


def _verify(arrays: _Arrays, start: int, period: int, steps: int, ref: int, min_trip: int,
            enclosing: set[int] | None = None) -> _Run | None:
    """The longest run of exactly matching steps around the step starting at
    ``ref`` (inside the stretch whose hashes matched), between ``start`` and
    ``steps`` steps on: steps that break the pattern after ``ref`` cut the
    run there, before it move its start past them, and the run's first step
    must read initial values from before the run where the others read the
    previous step.  ``enclosing`` gets the period of a loop around this one
    when the steps that break the pattern recur at a fixed distance (an
    inner loop whose first iteration reads the outer step's initial value,
    hashed alike)."""
    consts = arrays.tape.consts
    P = period
    steps = min(steps, (arrays.n - start) // P)
    if not (steps >= min_trip and start <= ref < start + steps * P):
        return None
    # a step reading nothing of the one before is not a recurrence: known from
    # the reference step alone (its operands' producers relative to its
    # start, the same for every start the passes below move to)
    at = start + P * ((ref - start) // P)
    ref_rel = arrays.pp[at:at + P] - at
    if not ((ref_rel >= -P) & (ref_rel < 0)).any():
        return None
    while steps >= min_trip and start <= ref < start + steps * P:
        r = (ref - start) // P
        # the steps' rows: views (a gather of them would be fresh memory)
        end = start + steps * P
        feats = arrays.features[start:end].reshape(steps, P, -1)
        ops = arrays.ops[start:end].reshape(steps, P, -1)
        pp = arrays.pp[start:end].reshape(steps, P, -1)
        rel = pp - (start + P * np.arange(steps, dtype=np.int64))[:, None, None]
        ref_rel, ref_ops, ref_pp = rel[r], ops[r], pp[r]
        pad = ref_ops < 0
        produced = ref_rel >= -P              # internal (>= 0) or carried
        outside = ~produced & ~pad            # from before the run, or it starts later
        const = outside & arrays.is_const[ref_ops]
        shared = outside & ~const
        latest = int(ref_pp[shared].max(initial=-1))
        if latest >= start:                   # the run starts after what it closes over
            skip = (latest - start) // P + 1
            start, steps = start + P * skip, steps - skip
            continue
        carried = produced & (ref_rel < 0)
        row_ok = (feats == feats[r]).all(axis=(1, 2)) & \
            ~arrays.blocked[start:end].reshape(steps, P).any(axis=1)
        operand_ok = np.where(produced, rel == ref_rel, True)
        operand_ok &= np.where(shared, ops == ref_ops, True)
        operand_ok &= np.where(const, arrays.is_const[ops], True)
        # the first step reads initial values (from before it) where the
        # others read the previous step
        operand_ok[0] = np.where(carried, (pp[0] < start) & (ops[0] >= 0), operand_ok[0])
        row_ok &= operand_ok.all(axis=(1, 2))
        bad = np.flatnonzero(~row_ok)
        if enclosing is not None:  # the first, widest view of the stretch only
            # the steps that break the pattern, or the ones that keep it (an
            # inner iteration reading the outer step's initial value, a
            # fixed number of steps back, matches only those at its index)
            for rows in (bad, np.flatnonzero(row_ok)):
                enclosing.update(P * gap for gap in _recurring_gaps(rows, min_trip))
            enclosing = None
        after = bad[bad > r]
        if len(after):
            steps = int(after[0])
            continue
        before = bad[bad < r]
        if len(before):
            start, steps = start + P * (int(before[-1]) + 1), steps - int(before[-1]) - 1
            continue
        if not _initial_values_agree(ops[0], ref_rel, carried, P):
            start, steps = start + P, steps - 1
            continue
        # constants: equal in every step, or per-step inputs where that is exact
        varying: dict[tuple[int, int], list[Any]] = {}
        hoisted: set[int] = set()
        first, last = 0, steps
        for j, m in zip(*np.nonzero(const)):
            slots = ops[:, j, m]
            if np.all(slots == slots[0]):
                continue
            values = [consts[s] for s in slots.tolist()]
            same = _same_as(values, r)
            if same.all():
                continue
            if _hoistable_take(arrays, start + r * P + int(j), int(m), shared[j], const[j]):
                hoisted.add(int(j))
                varying[(int(j), int(m))] = values
            elif _stackable(arrays.tape, arrays.tape.instrs[start + r * P + int(j)], int(m),
                            values):
                varying[(int(j), int(m))] = values
            else:  # the steps around the reference whose constant is its
                differ = np.flatnonzero(~same)
                last = min(last, int(differ[differ > r][0]) if np.any(differ > r) else last)
                first = max(first, int(differ[differ < r][-1]) + 1 if np.any(differ < r)
                            else first)
        if first or last < steps:
            start, steps = start + P * first, last - first
            continue
        return _Run(arrays, start, P, steps, varying, hoisted)
    return None


_ACCUMULATIONS = {"add": (0, 1), "sub": (0,), "scatter_set": (0,), "scatter_add": (0,)}


def _parallel(arrays: _Arrays, start: int, P: int, steps: int) -> bool:
    """Whether the ``steps`` steps of period ``P`` from ``start`` only add into
    their carries or write into a buffer: a parallel loop, which rerolling
    makes vector code.  Judged on every alignment of a step in the middle of
    the run (up to `MAX_ROTATIONS`): the alignment the run was found in may
    cut each step elsewhere, where its terms' values, computed one step and
    used the next, look like carries."""
    instrs = arrays.tape.instrs
    mid = start + P * (steps // 2)
    for at in range(mid, min(mid + P, mid + MAX_ROTATIONS, arrays.n - P + 1)):
        ref_rel = arrays.pp[at:at + P] - at
        carried = (ref_rel >= -P) & (ref_rel < 0)
        rows = np.flatnonzero(carried.any(axis=1))
        if not len(rows) or any(instrs[at + j].prim not in _ACCUMULATIONS
                                for j in rows.tolist()):
            continue  # (a carry read by anything but a link: not this alignment)
        if _only_accumulates(arrays, np.arange(at, at + P), ref_rel, carried, P):
            return True
    return False


def _only_accumulates(arrays: _Arrays, row: np.ndarray, ref_rel: np.ndarray,
                      carried: np.ndarray, P: int) -> bool:
    """Does each step read the previous one only as the accumulator of its
    own sum or writes (``s = s + term``, ``out[i] = term``)?  Then the steps
    are a parallel loop, which rerolling turns into vector code."""
    instrs = arrays.tape.instrs
    # the step's readers of each of its values, (instruction, operand) in order
    readers: dict[int, list[tuple[int, int]]] = {}
    rows, cols = np.nonzero(ref_rel >= 0)
    for j, m, o in zip(rows.tolist(), cols.tolist(), ref_rel[rows, cols].tolist()):
        readers.setdefault(o, []).append((j, m))
    for j, m in zip(*np.nonzero(carried)):
        j, m = int(j), int(m)
        o = int(ref_rel[j, m]) + P  # the new carry
        # the carried value runs through links s1 = s + a, s2 = s1 + b, ... to o
        while True:
            if m not in _ACCUMULATIONS.get(instrs[int(row[j])].prim, ()):
                return False
            if j == o:
                break
            found = readers.get(j, ())
            if len(found) != 1:
                return False
            j, m = found[0]
    return True


def _initial_values_agree(first_ops: np.ndarray, ref_rel: np.ndarray, carried: np.ndarray,
                          P: int) -> bool:
    """Every reader of one carried value reads the same initial value in the first step."""
    init: dict[int, int] = {}
    for j, m in zip(*np.nonzero(carried)):
        o = int(ref_rel[j, m]) + P
        if init.setdefault(o, int(first_ops[j, m])) != int(first_ops[j, m]):
            return False
    return True


def _hoistable_take(arrays: _Arrays, pos: int, m: int, shared: np.ndarray,
                    const: np.ndarray) -> bool:
    """``x[t]`` of an array from before the loop: one take of all steps' indices."""
    ins = arrays.tape.instrs[pos]
    return ins.prim == "take" and m == 1 and bool(shared[0] or const[0])


#: arithmetic that meets an integer constant as the float it converts to
#: (``x * i`` of a float array x and a Python int i is ``x * float(i)``)
_INTEGER_AS_FLOAT = frozenset({"add", "sub", "mul", "div"})


def _stackable(tape: Tape, ins: Instr, m: int, values: list[Any]) -> bool:
    """A differing constant (operand ``m`` of ``ins``, ``values`` per step)
    can be a per-step input where a step's slice of the stacked array gives
    the same result as the constant itself: when it has its consumer's
    dtype, as do the consumer's other operands (a Python float meets a
    float64 array either way), or is an integer the arithmetic converts to
    that float dtype exactly (``c * 0.5 + x[i] * i``: the loop counter)."""
    if ins.prim == "take" or registry[ins.prim].effect is not None:
        return False
    dtype = tape.avals[ins.out].dtype
    if dtype.kind != "f" or any(tape.avals[s].dtype != dtype
                                for k, s in enumerate(ins.ins) if k != m):
        return False
    own = tape.avals[ins.ins[m]].dtype
    if own == dtype:
        return True
    if own.kind not in "iu" or ins.prim not in _INTEGER_AS_FLOAT:
        return False
    stacked = np.asarray(values)
    return bool(np.array_equal(stacked.astype(dtype).astype(stacked.dtype), stacked))


def _stacked_dtype(tape: Tape, ins: Instr, m: int) -> np.dtype:
    """The dtype a per-step constant is stacked in (`_stackable`): its own,
    or its consumer's float dtype for an integer."""
    own = tape.avals[ins.ins[m]].dtype
    return own if own.kind not in "iu" else tape.avals[ins.out].dtype


# -- rewriting ---------------------------------------------------------------------
class _Rewriter:
    """The tape with one run replaced by a loop instruction."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        arrays = run.arrays
        self.tape = tape = arrays.tape
        self.new = Tape(list(tape.inputs), list(tape.outputs), dict(tape.consts),
                        list(tape.instrs[:run.start]), list(tape.avals))

    def slot(self, aval: Aval) -> int:
        return self.new.new_slot(aval)

    def const(self, value: Any) -> int:
        value = np.asarray(value)
        s = self.slot(Aval(value.shape, value.dtype))
        self.new.consts[s] = value
        return s

    def emit(self, prim: str, ins: tuple[int, ...], aval: Aval, params: tuple = (),
             line: Any = None) -> int:
        out = self.slot(aval)
        self.new.instrs.append(Instr(prim, out, ins, params, line))
        return out

    def rows_of(self, source: int, offset: int, aval: Aval, rows: slice | int,
                line: Any) -> int:
        """Row(s) of a stacked value inside the flat array ``source``, by ``take``."""
        size = aval.size
        if isinstance(rows, int):
            index = np.arange(offset + rows * size, offset + (rows + 1) * size,
                              dtype=np.int64).reshape(aval.shape)
            return self.emit("take", (source, self.const(index)), aval, (), line)
        count = rows.stop - rows.start
        index = np.arange(offset + rows.start * size, offset + rows.stop * size,
                          dtype=np.int64).reshape((count,) + aval.shape)
        return self.emit("take", (source, self.const(index)),
                         Aval((count,) + aval.shape, aval.dtype), (), line)

    def rewrite(self) -> Tape | None:
        run, tape = self.run, self.tape
        arrays = run.arrays
        P, T, start, end = run.period, run.steps, run.start, run.end
        instrs, avals = tape.instrs, tape.avals
        body_ins = [instrs[start + P + j] for j in range(P)]  # the second step's
        first_ins = instrs[start:start + P]
        line = first_ins[0].line

        def role(j: int, m: int) -> tuple[str, int]:
            s = body_ins[j].ins[m]
            q = int(arrays.producer[s])
            if q >= start + P:
                return "internal", q - start - P
            if q >= start:
                return "carried", q - start
            if (j, m) in run.varying:
                return "varying", 0
            return ("const", s) if s in tape.consts else ("shared", s)

        roles = [[role(j, m) for m in range(len(ins.ins))] for j, ins in enumerate(body_ins)]
        carried = sorted({o for row in roles for kind, o in row if kind == "carried"})
        init = {}
        for j, row in enumerate(roles):
            for m, (kind, o) in enumerate(row):
                if kind == "carried":
                    init[o] = first_ins[j].ins[m]
        closed = sorted({s for j, row in enumerate(roles) if j not in run.hoisted
                         for kind, s in row if kind == "shared"})

        # what is read after the run: a step's value at (k, j)
        def step_of(slot: int) -> tuple[int, int] | None:
            q = int(arrays.producer[slot]) if slot < len(arrays.producer) - 1 else -1
            if start <= q < end:
                return divmod(q - start, P)
            return None

        later = list(instrs[end:])
        stacks = _stacked_outputs(later, tape.outputs, tape.consts, step_of, T, run.hoisted)
        skipped = {n for chain in stacks.values() for n in chain[1]}
        wanted: set[tuple[int, int]] = set()
        for n, ins in enumerate(later):
            if n in skipped:
                continue
            for s in ins.ins:
                where = step_of(s)
                if where is not None:
                    wanted.add(where)
        for s in tape.outputs:
            where = step_of(s)
            if where is not None:
                wanted.add(where)
        ys = sorted({j for k, j in wanted if j not in run.hoisted
                     and not (k == T - 1 and j in carried)} | {j for j, _ in stacks.values()})

        # the body: one step's instructions, reading its inputs
        body = Tape()
        bslot: dict[tuple[str, int], int] = {}

        def new_input(key: tuple[str, int], aval: Aval) -> int:
            s = bslot[key] = body.new_slot(aval)
            body.inputs.append(s)
            return s

        for o in carried:
            new_input(("carry", o), avals[body_ins[o].out])
        xs_keys = sorted(run.varying)
        for j, m in xs_keys:
            if j in run.hoisted:
                new_input(("take", j), avals[body_ins[j].out])
            else:
                aval = avals[body_ins[j].ins[m]]
                new_input(("x", j * MAX_ARITY + m),
                          Aval(aval.shape, _stacked_dtype(tape, body_ins[j], m)))
        for s in closed:
            new_input(("closed", s), avals[s])

        def body_value(j: int) -> int:
            return bslot[("take", j)] if j in run.hoisted else bslot[("value", j)]

        for j, ins in enumerate(body_ins):
            if j in run.hoisted:
                continue
            operands = []
            for m, (kind, ref) in enumerate(roles[j]):
                if kind == "internal":
                    operands.append(body_value(ref))
                elif kind == "carried":
                    operands.append(bslot[("carry", ref)])
                elif kind == "varying":
                    operands.append(bslot[("x", j * MAX_ARITY + m)])
                elif kind == "shared":
                    operands.append(bslot[("closed", ref)])
                else:
                    key = ("const", ref)
                    if key not in bslot:
                        bslot[key] = body.new_slot(avals[ref])
                        body.consts[bslot[key]] = tape.consts[ref]
                    operands.append(bslot[key])
            out = bslot[("value", j)] = body.new_slot(avals[ins.out])
            body.instrs.append(Instr(ins.prim, out, tuple(operands), ins.params, ins.line))
        body.outputs = [body_value(o) for o in carried] + [body_value(j) for j in ys]
        loop_body = LoopBody(body, len(carried), len(xs_keys))
        result_avals = loop_body.result_avals(T)
        dtype = packed_dtype(result_avals)
        if any(a.dtype != dtype for a in result_avals):
            return None  # a packed integer would come back as float: leave it unrolled

        # before the loop: the stacked per-step inputs
        xs = []
        for j, m in xs_keys:
            values = run.varying[(j, m)]
            if j in run.hoisted:
                take = body_ins[j]
                index = np.stack([np.asarray(v) for v in values])
                aval = avals[take.out]
                xs.append(self.emit("take", (take.ins[0], self.const(index)),
                                    Aval((T,) + aval.shape, aval.dtype), (), take.line))
            else:
                dtype = _stacked_dtype(tape, body_ins[j], m)
                xs.append(self.const(np.stack([np.asarray(v, dtype=dtype) for v in values])))
        packed_size = sum(a.size for a in result_avals)
        loop = self.emit("loop", tuple([init[o] for o in carried] + xs + closed),
                         Aval((packed_size,), dtype),
                         (("body", loop_body), ("checkpoint", 0), ("length", T)), line)
        offsets, at = [], 0
        for a in result_avals:
            offsets.append(at)
            at += a.size

        # after it: the values read later, from the packed result
        rename: dict[int, int] = {}
        for k, j in sorted(wanted):
            old = instrs[start + k * P + j].out
            aval = avals[old]
            if j in run.hoisted:
                x = xs[xs_keys.index(next(key for key in xs_keys if key[0] == j))]
                rename[old] = self.rows_of(x, 0, aval, k, line)
            elif k == T - 1 and j in carried:
                rename[old] = self.rows_of(loop, offsets[carried.index(j)], aval, 0, line)
            else:
                rename[old] = self.rows_of(loop, offsets[len(carried) + ys.index(j)], aval, k,
                                           line)
        for n, ins in enumerate(later):
            if n in stacks:  # the last write of a stack of every step's value
                j, chain = stacks[n]
                links = [later[m] for m in chain if later[m].prim == "scatter_set"]
                shape = avals[links[0].ins[2]].shape
                size = avals[instrs[start + j].out].size
                at = offsets[len(carried) + ys.index(j)]
                rows = np.arange(at, at + T * size, dtype=np.int64).reshape((T,) + shape)
                where = np.stack([np.asarray(tape.consts[link.ins[1]]) for link in links])
                values = self.emit("take", (loop, self.const(rows)),
                                   Aval((T,) + shape, dtype), (), ins.line)
                self.new.instrs.append(Instr("scatter_set", ins.out,
                                             (links[0].ins[0], self.const(where), values),
                                             (), ins.line))
                continue
            if n in skipped:
                continue
            if any(s in rename for s in ins.ins):
                ins = ins._replace(ins=tuple(rename.get(s, s) for s in ins.ins))
            self.new.instrs.append(ins)
        self.new.outputs = [rename.get(s, s) for s in tape.outputs]
        return self.new


def _stacked_outputs(later: list[Instr], outputs: list[int], consts: dict[int, Any],
                     step_of: Any, steps: int, hoisted: set[int]
                     ) -> dict[int, tuple[int, list[int]]]:
    """``np.stack`` of one value of every step, after the loop: a chain of
    writes ``buffer[k] = reshape(value of step k)`` for k = 0 .. steps - 1
    (distinct positions; each reshape and each intermediate buffer read by
    the next write only).  By the position of its last write: (the body
    value, the positions of its reshapes and writes), to become one write of
    the loop's stacked output."""
    uses: dict[int, int] = {}
    for ins in later:
        for s in ins.ins:
            uses[s] = uses.get(s, 0) + 1
    for s in outputs:
        uses[s] = uses.get(s, 0) + 1
    position = {ins.out: n for n, ins in enumerate(later)}
    link_of: dict[int, tuple[int, int, int]] = {}  # write's out -> (step, value, reshape's n)
    for n, ins in enumerate(later):
        if ins.prim != "scatter_set" or len(ins.ins) != 3:
            continue
        r = position.get(ins.ins[2])
        if r is None or later[r].prim != "reshape" or uses.get(ins.ins[2]) != 1:
            continue
        where = step_of(later[r].ins[0])
        if where is not None and where[1] not in hoisted:
            link_of[ins.out] = (where[0], where[1], r)
    found: dict[int, tuple[int, list[int]]] = {}
    for out, (k, j, r) in link_of.items():
        if k != steps - 1:
            continue
        chain, cur = [], out
        for step in range(steps - 1, -1, -1):
            info = link_of.get(cur)
            if info is None or info[:2] != (step, j) or (step < steps - 1 and uses.get(cur) != 1):
                break
            chain += [position[cur], info[2]]
            cur = later[position[cur]].ins[0]
        else:
            links = [later[n] for n in sorted(chain) if later[n].prim == "scatter_set"]
            if step_of(links[0].ins[0]) is not None or any(l.ins[1] not in consts for l in links):
                continue
            where = np.concatenate([np.ravel(consts[l.ins[1]]) for l in links])
            if len(np.unique(where)) == len(where):  # one write per position: any order
                found[position[out]] = (j, sorted(chain))
    return found


# -- the pass ----------------------------------------------------------------------------
def _best_run(arrays: _Arrays, min_trip: int, parallel: bool) -> _Run | None:
    best = None
    tried: set[int] = set()
    for valued in (False, True):
        best = _best_run_of(arrays, arrays.periods(min_trip, valued), min_trip, tried, parallel)
        if best is not None:
            break
    return best


def _best_run_of(arrays: _Arrays, proposed: list[int], min_trip: int, tried: set[int],
                 parallel: bool) -> _Run | None:
    """The best run of the proposed periods (and their divisors) not in
    ``tried``, which it adds them to: a period's stretches and runs depend on
    the tape alone (the plain hash, not the one that proposed it), so one
    that gave none in the first pass gives none in the second."""
    best = None
    # a run of period 2p is also one of period p, with twice the steps: try
    # the divisors too, the shortest body covering the most instructions wins
    periods = sorted({p // k for p in proposed for k in range(1, MAX_LAG + 1) if p % k == 0}
                     - tried)
    tried.update(periods)
    enclosing: set[int] = set()
    for period in periods:
        alike = None  # of the whole tape: computed for the periods with a stretch only
        stretches = arrays.stretches(period, min_trip)
        enclosing.update(_enclosing_periods(stretches, period, min_trip))
        for start, steps in stretches:
            if alike is None:
                alike = arrays.alike(period)
            # the hashes of the first steps see initial values, not a previous
            # step: the run reaches as far as instructions look alike a step
            # apart, and its steps end where the last one does
            begin = int(np.flatnonzero(~alike[:start])[-1]) + 1 if not alike[:start].all() else 0
            after = np.flatnonzero(~alike[start:])
            end = (start + int(after[0]) if len(after) else len(alike)) + period
            steps = (end - begin) // period
            # the steps end where the last one does, or (when the code after
            # the loop looks like its steps' ends) begin where the first does
            if best is not None and steps * period <= best.steps * best.period:
                continue  # verifying only shortens a run: this one cannot cover more
            firsts = {first: min(first + period * ((start - first) // period + 1),
                                 first + (steps - 1) * period)
                      for first in (end - steps * period, begin)}  # ties: the first
            if not parallel and _parallel(arrays, begin, period, steps):
                arrays.parallel_refused = True
                continue  # rerolling's
            for first, ref in firsts.items():
                run = _verify(arrays, first, period, steps, ref, min_trip, enclosing)
                if run is not None and (best is None or run.steps * run.period
                                        > best.steps * best.period):  # ties: shorter body
                    best = run
    # a loop around short loops (Newton's iterations inside an implicit time
    # step): its period is where no hash recurs within MAX_LAG occurrences
    # when the inner loop has more iterations, but the inner loops' stretches
    # start one outer step apart
    if enclosing - tried:
        outer = _best_run_of(arrays, sorted(enclosing - tried), min_trip, tried, parallel)
        if outer is not None and (best is None or outer.steps * outer.period
                                  > best.steps * best.period):
            best = outer
    return best


def _enclosing_periods(stretches: list[tuple[int, int]], period: int, min_trip: int
                       ) -> list[int]:
    """Distances, longer than a stretch of ``period``, at which at least
    ``min_trip`` stretches follow one another: the period of a loop whose
    step holds a loop of period ``period`` (too few iterations to be a run,
    or a run per outer step, which one pass per loop would not all convert)."""
    if len(stretches) < min_trip:
        return []
    starts = np.fromiter((start for start, _ in stretches), np.int64, len(stretches))
    ends = starts + period * np.fromiter((steps for _, steps in stretches), np.int64,
                                         len(stretches))
    longer = np.diff(starts) >= (ends - starts)[:-1]
    return [gap for gap in _recurring_gaps(starts, min_trip) if longer.any()]


def _recurring_gaps(positions: np.ndarray, min_trip: int) -> list[int]:
    """Distances (over 1) between consecutive ``positions`` that occur at
    least ``min_trip - 2`` times (proposals: the outer loop's first step may
    lie before what ``positions`` saw)."""
    if len(positions) < min_trip - 1:
        return []
    counts = np.bincount(np.diff(positions))
    counts[:2] = 0
    return np.flatnonzero(counts >= min_trip - 2).tolist()


def find_recurrences(tape: Tape, min_trip: int | None = None, parallel: bool = False,
                     refused: set[str] | None = None) -> Tape | None:
    """The tape with each run of isomorphic chained steps (at least ``min_trip``,
    default `MIN_TRIP`) as one ``loop`` instruction, or None if it has none.
    ``parallel``: parallel loops too (sums of terms, writes into a buffer),
    for the runs rerolling did not turn into vector code (a term with a
    per-step constant that is not affine in the step, ``s + x[i] * c[i]``):
    a loop instruction, exact as the steps it replaces, rather than every
    step unrolled.  ``refused`` gets "parallel" if a parallel loop was left
    to rerolling (without ``parallel``): worth a second pass if rerolling
    leaves it."""
    min_trip = max(2, MIN_TRIP if min_trip is None else int(min_trip))
    with _without_gc():  # a long tape is millions of tracked objects to rescan
        return _converted(tape, min_trip, parallel, set() if refused is None else refused)


def _converted(tape: Tape, min_trip: int, parallel: bool, refused: set[str]) -> Tape | None:
    converted = None
    forget_columns()
    for _ in range(MAX_PASSES):
        current = tape if converted is None else converted
        if not 2 * min_trip <= len(current.instrs) <= MAX_INSTRUCTIONS:
            break
        arrays = _Arrays(current)
        run = _best_run(arrays, min_trip, parallel)
        if arrays.parallel_refused:
            refused.add("parallel")
        if run is None:
            if converted is None:  # rerolling may work on this tape next
                keep_columns(tape, arrays)
            break
        new = _Rewriter(run).rewrite()
        if new is None:
            break
        # without its dead code and the constants only that read (the next
        # pass's hash walks the constants); slots keep their numbers, which
        # `reroll_bodies` looks values up by
        converted = eliminate_dead_code(new)
    return converted


def reroll_bodies(tape: Tape, value_of: Any, exact_sums: bool = False) -> Tape:
    """``tape`` with the bodies of its loops rerolled (`transforms.reroll`):
    a time step holding a scalar spatial loop becomes vector code.  Rerolling
    re-records a body on example inputs, its first step's: ``value_of(slot)``
    gives an outer slot's value (None if unknown; the body then stays)."""
    from .reroll import reroll
    instrs = list(tape.instrs)
    changed = False
    for n, ins in enumerate(instrs):
        if ins.prim != "loop":
            continue
        params = dict(ins.params)
        body = params["body"]
        examples = []
        for k, s in enumerate(ins.ins):
            value = tape.consts[s] if s in tape.consts else value_of(s)
            if value is None:
                break
            is_x = body.n_carry <= k < body.n_carry + body.n_xs
            value = np.asarray(value)[0] if is_x and np.ndim(value) else value
            want = body.tape.avals[body.tape.inputs[k]]
            if np.shape(value) != want.shape or np.result_type(value) != want.dtype:
                break  # not this step's value: the body stays as it is
            examples.append(value)
        else:
            with np.errstate(all="ignore"):
                rolled = reroll(body.tape, examples, exact_sums)
            if rolled is not None:
                params["body"] = LoopBody(rolled, body.n_carry, body.n_xs, body.is_while,
                                          body.counted)
                instrs[n] = ins._replace(params=tuple(sorted(params.items())))
                changed = True
    if not changed:
        return tape
    return Tape(list(tape.inputs), list(tape.outputs), dict(tape.consts), instrs,
                list(tape.avals))

