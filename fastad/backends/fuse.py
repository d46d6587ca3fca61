"""Loop fusion for the VM: runs of elementwise instructions become one FUSED.

While lowering walks the tape, `Fusion` collects consecutive instructions
that are elementwise over the same number of elements n: unary and binary
arithmetic whose operands are n-element arrays in the same element order or
broadcast scalars, a full ``sum`` of such a value, a full ``sum`` of a
comparison of such values cast to float (the count a rerolled guard checks),
a ``scatter_add`` of such a value into a contiguous range, and a
``scatter_set`` of a value made in the run into a contiguous range of zeros
(a padded array: ``concatenate([zeros(k), v, zeros(m)])``), which places
the value in the padded array's interior as the run computes it, so that
only the padding is zeroed and nothing is copied.  Free views of arena values (reshape,
a contiguous ``take``, ...) are lowered at once and do not end the run.  When
the run ends it becomes one FUSED instruction (format in ``csrc/opcodes.h``):
a micro-program over registers that the VM runs block by block, so the run's
intermediate values never reach main memory.  Only values read after the run
get arena buffers.  One-element work on the run's results, guards included,
runs after the run instead of ending it: a guard only has to fail before the
program returns, and nothing in a run can fail.

What keeps blocks (and threads) independent:
  * nothing is released while a run is open, so no buffer the run writes
    overlaps one it reads;
  * a ``scatter_add`` updates its target in place only where no other array
    read of that buffer overlaps the written range at another offset, and an
    update of a range a previous update of the run wrote continues it in place;
  * a value made in the run is only ever read at the same element.
Each element is computed by the same operations in the same order as in the
unfused program, so results are bitwise equal; so are sums, which the VM
adds in NumPy's pairwise order as the unfused reduction does (csrc/fused.c).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..core.tape import Instr
from ..transforms.analysis import all_zero_bits, bitwise_uniform, is_range
from .arena import Ref
from .lower_rules import _compare_dtype, rule_of
from .vm_header import BINARY, COMPARE, CONSTANTS, UNARY

# Limits of one FUSED instruction, read from opcodes.h (FASTAD_FUSED_MAX_*).
MAX_REGS = CONSTANTS["FASTAD_FUSED_MAX_REGS"]
MAX_SLOTS = CONSTANTS["FASTAD_FUSED_MAX_SLOTS"]
MAX_STEPS = CONSTANTS["FASTAD_FUSED_MAX_STEPS"]
MAX_SUMS = CONSTANTS["FASTAD_FUSED_MAX_SUMS"]
MAX_SHIFT = CONSTANTS["FASTAD_FUSED_MAX_SHIFT"]
MAX_SHIFTS = CONSTANTS["FASTAD_FUSED_MAX_SHIFTS"]

# Slot and step kinds, in the order of FASTAD_FUSED_SLOTS / FASTAD_FUSED_STEPS.
IN, SCALAR, OUT, ACC = range(4)
UNARY_STEP, BINARY_STEP, SUM_STEP, SHIFT_STEP, COUNT_STEP, NCOUNT_STEP = range(6)

_VIEW_PRIMS = ("reshape", "stop_gradient", "no_derivative")


class Operand(NamedTuple):
    kind: str   # "value": made in the run | "array": an n-element arena value | "scalar"
    slot: int   # for "value": the value's root slot


class Member(NamedTuple):
    step: int            # the instruction's index in the lowering order
    ins: Instr
    kind: str            # "unary" | "binary" | "sum" | "scatter" | "place" | "count" | "ncount"
    operands: tuple[Operand, ...]
    in_place: bool       # scatter: updates x's own buffer (x dies here)
    shift: int = 0       # scatter continuing a chain of the run at another start
    total: int = -1      # count: the slot of the sum the comparison ins feeds
    subtract: bool = False  # scatter: adds the negation of its value (see _fold_negations)


class Count(NamedTuple):
    """sum(astype(compare, float)), or of its logical_not: one COUNT step."""
    total: int           # the sum's slot
    negate: bool
    chain: tuple[int, ...]  # the slots of the instructions after the comparison


class Fusion:
    """The open run of fusible instructions of one lowering."""

    def __init__(self, lw: Any) -> None:
        self.lw = lw
        self.counts = _counts(lw)  # comparison slot -> the count it could become
        self.absorbed: set[int] = set()  # instructions a COUNT step of a run computes
        self.reset()

    def reset(self) -> None:
        self.members: list[Member] = []
        self.deferred: list[tuple[int, Instr]] = []  # release_dead calls held back
        self.n = 0
        self.dtype: np.dtype | None = None
        self.root: dict[int, int] = {}       # slot made in the run (or a view of one) -> root
        self.views: dict[int, list[int]] = {}  # root -> views of it made in the run
        self.sealed: set[int] = set()  # values made in the run that it cannot read back
        self.reads: list[tuple[int, int, int]] = []   # arena arrays read: (buffer, start, bytes)
        self.writes: list[tuple[int, int, int]] = []  # in-place scatter targets
        self.chain_start: dict[int, int] = {}  # scatter result -> byte start of its range
        self.chain_buf: dict[int, tuple[int, int]] = {}  # in-place chains: (buffer, x's offset)
        self.postponed: list[tuple[int, Instr]] = []  # lowered after the run (see _postpone)
        self.postponed_slots: set[int] = set()
        self.postponed_bufs: set[int] = set()  # buffers they read: never updated in place
        self.shifts = 0
        self.kind_of: dict[int, str] = {}  # value made in the run -> its member's kind
        # root value -> the scatter_set into zeros that places it (see `_placeable`)
        self.placed: dict[int, Instr] = {}

    # -- collecting ------------------------------------------------------------------
    def offer(self, step: int, ins: Instr) -> bool:
        """Take ins into the run, or start a run with it.  False if it cannot
        be fused: the run it would have broken is emitted first."""
        if ins.out in self.absorbed:
            if self.members:
                self.deferred.append((step, ins))
            else:
                self.lw.release_dead(ins)
            return True
        member = self._member(step, ins)
        if member is None and self.members:
            if self._take_view(step, ins) or self._postpone(step, ins):
                return True
            self.flush()
            member = self._member(step, ins)
        if member is None:
            return False
        self._add(member)
        return True

    def _postpone(self, step: int, ins: Instr) -> bool:
        """A one-element instruction of the run's sums (``loss = a + b`` of two
        sums of the run) or of arena values runs after the run instead of
        ending it.  Whatever reads its result ends the run."""
        lw = self.lw
        if lw.avals[ins.out].size != 1:
            return False
        bufs = set()
        for s in ins.ins:
            if s in self.root:
                return False
            if s in lw.loc and s not in self.sealed:
                bufs.add(lw.loc[s].buf)
        if any(b == buf for b in bufs for buf, _, _ in self.writes):
            return False
        self.postponed.append((step, ins))
        self.postponed_slots.add(ins.out)
        self.postponed_bufs |= bufs
        self.deferred.append((step, ins))
        return True

    def _take_view(self, step: int, ins: Instr) -> bool:
        """A free view: of a value made in the run it joins the run; of an
        arena value it is lowered at once (no instruction) and the run goes on."""
        lw = self.lw
        if not ins.ins or ins.ins[0] in self.sealed or ins.ins[0] in self.postponed_slots:
            return False
        src = ins.ins[0]
        view = ins.prim in _VIEW_PRIMS or (ins.prim == "astype"
                                           and lw.avals[src].dtype == lw.avals[ins.out].dtype)
        if src in self.root:
            if not view:
                return False
            root = self.root[src]
            self.root[ins.out] = root
            self.views.setdefault(root, []).append(ins.out)
        elif view or (ins.prim == "take" and range_start(lw, ins) is not None):
            rule_of(ins)(lw, ins)
        else:
            return False
        self.deferred.append((step, ins))
        return True

    def _member(self, step: int, ins: Instr) -> Member | None:
        lw = self.lw
        out = lw.avals[ins.out]
        count = self.counts.get(ins.out)
        dtype = lw.avals[count.total].dtype if count else out.dtype
        if dtype.kind != "f" or (self.members and dtype != self.dtype):
            return None
        if count:
            kind, n, data = "ncount" if count.negate else "count", out.size, ins.ins
        elif ins.prim in UNARY:
            kind, n, data = "unary", out.size, ins.ins
        elif ins.prim in BINARY:
            kind, n, data = "binary", out.size, ins.ins
        elif ins.prim == "sum" and out.size == 1:
            kind, n, data = "sum", lw.avals[ins.ins[0]].size, ins.ins
        elif ins.prim == "scatter_add" and range_start(lw, ins) is not None:
            kind, n, data = "scatter", lw.avals[ins.ins[2]].size, ins.ins[2:]
        elif ins.prim == "scatter_set" and self._placeable(ins):
            kind, n, data = "place", lw.avals[ins.ins[2]].size, ins.ins[2:]
        else:
            return None
        if n < 2 or (self.members and n != self.n):
            return None
        pairs = kind in ("binary", "count", "ncount")
        operands = tuple(self._operand(s, n, scalar_ok=pairs) for s in data)
        if None in operands or (pairs and all(o.kind == "scalar" for o in operands)):
            return None
        if any(_clashes(r, self.writes) for r in self._regions(operands)):
            return None
        if count:
            return Member(step, ins, kind, operands, False, total=count.total)
        if kind != "scatter":
            return Member(step, ins, kind, operands, False)
        update = self._scatter_update(step, ins, n)
        if update is None:
            return None
        if isinstance(update, bool):
            return Member(step, ins, kind, operands, update)
        return Member(step, ins, kind, operands, True, update)

    def _placeable(self, ins: Instr) -> bool:
        """``scatter_set(zeros, range, v)`` where v is computed by an
        arithmetic step of the run that no other such scatter places: v's
        step then writes into the result's interior (`_Emitter._place`).
        The buffer then holds both values, so the lowerer's buffer lifetimes
        (the later of the two last uses) keep either from being updated in
        place while the other is read."""
        lw = self.lw
        x, _, v = ins.ins
        root = self.root.get(v)
        return (root is not None and self.kind_of.get(root) in ("unary", "binary")
                and root not in self.placed and x in lw.consts
                and all_zero_bits(lw.consts[x])
                and lw.avals[x].dtype == lw.avals[ins.out].dtype == lw.avals[v].dtype
                and range_start(lw, ins) is not None)

    def _operand(self, slot: int, n: int, scalar_ok: bool) -> Operand | None:
        lw = self.lw
        if slot in self.sealed or slot in self.postponed_slots:
            return None
        if slot in self.root:
            return Operand("value", self.root[slot])
        aval = lw.avals[slot]
        if slot in lw.consts:
            value = np.asarray(lw.consts[slot])
            if value.dtype.kind not in "fiub":
                return None
            if aval.size == 1 or (aval.size == n and bitwise_uniform(value)):
                return Operand("scalar", slot) if scalar_ok else None
        if aval.dtype.kind != "f":
            return None
        if aval.size == n:
            return Operand("array", slot)
        if aval.size == 1 and scalar_ok:
            return Operand("scalar", slot)
        return None

    def _regions(self, operands: tuple[Operand, ...]) -> list[tuple[int, int, int]]:
        lw = self.lw
        regions = []
        for op in operands:
            if op.kind == "array" and op.slot not in lw.consts and op.slot in lw.loc:
                ref, aval = lw.loc[op.slot], lw.avals[op.slot]
                regions.append((ref.buf, ref.offset, aval.size * aval.dtype.itemsize))
        return regions

    def _scatter_update(self, step: int, ins: Instr, n: int) -> int | bool | None:
        """How x[start:start+n] += v joins the run: True to update x's buffer
        in place, False to update a fresh copy, a nonzero shift to continue
        the run's update of x at start - shift, None if it cannot join."""
        lw = self.lw
        x = ins.ins[0]
        itemsize = lw.avals[ins.out].dtype.itemsize
        if lw.avals[x].dtype != lw.avals[ins.out].dtype:
            return None
        start = range_start(lw, ins) * itemsize
        if x in self.root:  # continues an update made in the run
            if not (x in self.chain_start and lw.last_use.get(x) == step and lw.uses[x] == 1):
                return None
            shift = (start - self.chain_start[x]) // itemsize
            if shift == 0:
                return True
            if abs(shift) > MAX_SHIFT or self.shifts >= MAX_SHIFTS:
                return None
            if x in self.chain_buf:  # x's own buffer: the elements reached are checked
                buf, base = self.chain_buf[x]
                reach = (buf, base + start, n * itemsize)
                if _clashes(reach, self.reads):
                    return None
            return shift
        if x in self.postponed_slots:
            return None
        if x in lw.consts:
            return False
        ref = lw.place(x)
        buf = lw.buffers[ref.buf]
        if buf.readonly or buf.last_use > step or ref.buf in self.postponed_bufs:
            return False
        if _clashes((ref.buf, ref.offset + start, n * itemsize), self.reads):
            return None
        return True

    def _add(self, member: Member) -> None:
        lw = self.lw
        ins = member.ins
        if not self.members:
            self.n = (lw.avals[ins.ins[2]].size if member.kind == "scatter" else
                      lw.avals[ins.ins[0]].size if member.kind == "sum" else lw.avals[ins.out].size)
            self.dtype = lw.avals[member.total if member.total >= 0 else ins.out].dtype
        self.members.append(member)
        self.deferred.append((member.step, ins))
        self.reads.extend(self._regions(member.operands))
        if member.kind == "sum":
            self.sealed.add(ins.out)
            return
        if member.total >= 0:
            self.sealed.add(member.total)
            self.absorbed.update(self.counts[ins.out].chain)
            return
        if member.kind == "place":  # read after the run only, from its buffer
            self.sealed.add(ins.out)
            self.placed[member.operands[0].slot] = ins
            return
        self.root[ins.out] = ins.out
        self.kind_of[ins.out] = member.kind
        if member.kind == "scatter":
            x = ins.ins[0]
            start = range_start(lw, ins) * self.dtype.itemsize
            nbytes = self.n * self.dtype.itemsize
            if member.shift:  # the chain ends here: nothing reads or extends it in the run
                self.shifts += 1
                self.sealed.add(ins.out)
                if x in self.chain_buf:
                    buf, base = self.chain_buf[x]
                    self.writes.append((buf, base + start, nbytes))
                return
            self.chain_start[ins.out] = start
            if x in self.chain_buf:
                self.chain_buf[ins.out] = self.chain_buf[x]
            elif member.in_place and x not in self.root:
                ref = lw.loc[x]
                self.chain_buf[ins.out] = (ref.buf, ref.offset)
                self.writes.append((ref.buf, ref.offset + start, nbytes))

    # -- emitting --------------------------------------------------------------------
    def flush(self) -> None:
        """Emit the open run and release what died in it."""
        lw = self.lw
        members, deferred, views = self.members, self.deferred, self.views
        n, dtype, postponed, placed = self.n, self.dtype, self.postponed, self.placed
        self.reset()
        if not members:
            return
        lw.step_temps = []
        for part in _split(members):
            _Emitter(lw, _fold_negations(lw, part, views), views, n, dtype, placed).emit()
        for step, ins in postponed:
            lw.step = step
            rule_of(ins)(lw, ins)
        for step, ins in deferred:
            lw.step = step
            lw.release_dead(ins)


def range_start(lw: Any, ins: Instr) -> int | None:
    """The first index when ins (take, scatter_add) indexes a contiguous range
    given by a constant; else None."""
    idx_slot = ins.ins[1]
    if idx_slot not in lw.consts:
        return None
    idx = np.asarray(lw.consts[idx_slot])
    size = lw.avals[ins.ins[0]].size
    if idx.dtype.kind not in "iu" or idx.size == 0 or size == 0:
        return None
    flat = idx.astype(np.int64).ravel()
    if flat.min() < -size or flat.max() >= size:
        return None
    flat = np.where(flat < 0, flat + size, flat)
    return int(flat[0]) if is_range(flat) else None


def _counts(lw: Any) -> dict[int, Count]:
    """The comparisons whose only use is a float count of where they hold
    (or, through a logical_not, where they fail), each step read once, and
    compared in the dtype of the count."""
    reader: dict[int, Instr] = {}
    for ins in lw.kept:
        for s in lw.operands(ins):
            reader[s] = ins

    def sole_reader(slot: int) -> Instr | None:
        return reader.get(slot) if lw.uses[slot] == 1 else None
    counts = {}
    for ins in lw.kept:
        if ins.prim not in COMPARE or lw.avals[ins.out].size < 2:
            continue
        nxt, negate, chain = sole_reader(ins.out), False, []
        if nxt is not None and nxt.prim == "logical_not":
            negate, chain = True, [nxt.out]
            nxt = sole_reader(nxt.out)
        if nxt is None or nxt.prim != "astype":
            continue
        dtype = lw.avals[nxt.out].dtype
        chain.append(nxt.out)
        total = sole_reader(nxt.out)
        if (dtype.kind != "f" or _compare_dtype(lw, ins.ins) != dtype or total is None
                or total.prim != "sum" or lw.avals[total.out].size != 1
                or lw.avals[total.out].dtype != dtype):
            continue
        chain.append(total.out)
        counts[ins.out] = Count(total.out, negate, tuple(chain))
    return counts


def _clashes(region: tuple[int, int, int], others: list[tuple[int, int, int]]) -> bool:
    """region overlaps one of others at a different start."""
    buf, start, size = region
    return any(b == buf and s != start and s < start + size and start < s + z
               for b, s, z in others)


def _fold_negations(lw: Any, members: list[Member], views: dict[int, list[int]]) -> list[Member]:
    """p + (-a) * b as p - a * b, one step fewer, where the negation and the
    product are read once, by the next member of the chain, and p + ... is an
    add or a scatter_add of the run: the same bits, as (-a) * b is exactly
    -(a * b) and p + -(q) is by definition p - q.  No scatter runs between
    the negation and the product, so a reads the same values at either."""
    members: list[Member | None] = list(members)

    def sole_reader(slot: int, after: int) -> int | None:
        if lw.uses.get(slot) != 1 or views.get(slot):
            return None
        for i in range(after + 1, len(members)):
            m = members[i]
            if m is None:
                continue
            data = m.ins.ins[2:] if m.kind == "scatter" else m.ins.ins
            if slot in data:
                return i if m.kind != "sum" and m.total < 0 else None
        return None
    for k, neg in enumerate(members):
        if neg is None or neg.kind != "unary" or neg.ins.prim != "neg":
            continue
        i = sole_reader(neg.ins.out, k)
        if i is None or members[i].ins.prim != "mul" or members[i].kind != "binary":
            continue
        if any(m is not None and m.kind == "scatter" for m in members[k + 1:i]):
            continue
        mul = members[i]
        j = sole_reader(mul.ins.out, i)
        if j is None:
            continue
        user = members[j]
        w = mul.ins.out
        if user.kind == "scatter" and not user.shift and not user.subtract:
            members[j] = user._replace(subtract=True)
        elif user.kind == "binary" and user.ins.prim == "add":
            p = 1 if user.ins.ins[0] == w else 0
            members[j] = user._replace(
                ins=Instr("sub", user.ins.out, (user.ins.ins[p], w), user.ins.params, user.ins.line),
                operands=(user.operands[p], user.operands[1 - p]))
        else:
            continue
        slot = mul.ins.ins.index(neg.ins.out)
        operands = list(mul.operands)
        operands[slot] = neg.operands[0]
        members[i] = mul._replace(operands=tuple(operands))
        members[k] = None
    return [m for m in members if m is not None]


def _split(members: list[Member]) -> list[list[Member]]:
    """Cut the run where one FUSED instruction would exceed the VM's limits
    (counted generously: every member may need a slot of its own, two for a
    scatter; a value made before the part, in an earlier part or outside
    the run, is read from a slot as an array is)."""
    parts: list[list[Member]] = [[]]
    reads: set[tuple[str, int]] = set()
    made: set[int] = set()
    sums = outs = 0
    for m in members:
        part = parts[-1]
        new = {(op.kind, op.slot) for op in m.operands
               if op.kind != "value" or op.slot not in made}
        if part and (len(reads | new) + outs + 2 + (m.kind == "scatter") > MAX_SLOTS
                     or len(part) + 1 > MAX_STEPS
                     or sums + (m.total >= 0 or m.kind == "sum") > MAX_SUMS):
            parts.append([])
            reads, made, sums, outs = set(), set(), 0, 0
            new = {(op.kind, op.slot) for op in m.operands}
        parts[-1].append(m)
        reads |= new
        made.add(m.ins.out)
        outs += 1 + (m.kind == "scatter")
        sums += m.total >= 0 or m.kind == "sum"
    return parts


class _Emitter:
    """Turns one run into a FUSED instruction: registers for values that die
    in the run, arena slots for the rest."""

    def __init__(self, lw: Any, members: list[Member], views: dict[int, list[int]], n: int,
                 dtype: np.dtype, placed: dict[int, Instr] | None = None) -> None:
        self.lw, self.members, self.views, self.n, self.dtype = lw, members, views, n, dtype
        # values written straight into a padded array (`Fusion._placeable`),
        # for the whole run: the value's step and its scatter may fall in
        # different parts of a run cut by `_split`
        self.placed = placed or {}
        self.last_step = members[-1].step
        self.slots: list[tuple[int, Any]] = []
        self.slot_index: dict[tuple[int, Any], int] = {}
        self.steps: list[tuple[int, int, int, int, int]] = []
        self.where: dict[int, int] = {}   # root value -> register or slot operand
        self.reg_of: dict[int, int] = {}
        self.free_regs = list(range(MAX_REGS - 1, -1, -1))
        self.nregs = 0
        self.last_read: dict[int, int] = {}
        for i, m in enumerate(members):
            for op in m.operands:
                if op.kind == "value":
                    self.last_read[op.slot] = i

    def emit(self) -> None:
        lw = self.lw
        if (len(self.members) == 1 and self.members[0].kind in ("unary", "binary", "sum")
                and self.members[0].ins.out not in self.placed):
            m = self.members[0]
            lw.step = m.step
            rule_of(m.ins)(lw, m.ins)
            self._alias_views(m.ins.out)
            return
        for i, m in enumerate(self.members):
            lw.step = m.step
            self._member(i, m)
        if not self.steps:  # a part of placing scatters only: their values are in place
            return
        words: list[Any] = [self.nregs, len(self.slots), len(self.steps)]
        for kind, ref in self.slots:
            words += [kind, ("ref", ref, self.dtype.itemsize)]
        for kind, f, dst, a, b in self.steps:
            words += [kind, f, self._number(dst), self._number(a), self._number(b)]
        lw.emit("FUSED", lw.dt(self.dtype), lw.descriptor(words), self.n)

    def _number(self, x: int) -> int:
        """Slots were numbered from MAX_REGS while registers were counted."""
        return x if x < MAX_REGS else self.nregs + x - MAX_REGS

    def _slot(self, kind: int, ref: Any) -> int:
        key = (kind, ref)
        if key not in self.slot_index:
            self.slot_index[key] = len(self.slots)
            self.slots.append(key)
        return MAX_REGS + self.slot_index[key]

    def _read(self, op: Operand) -> int:
        lw, dtype = self.lw, self.dtype
        if op.kind == "value" and op.slot in self.where:
            return self.where[op.slot]
        if op.kind == "scalar":
            value = lw.consts.get(op.slot)
            if value is not None and np.size(value) > 1:  # a uniform constant array
                return self._slot(SCALAR, lw.const_ref(np.asarray(np.asarray(value).flat[0],
                                                                  dtype=dtype)))
            return self._slot(SCALAR, lw.read(op.slot, dtype))
        return self._slot(IN, lw.read(op.slot, dtype))

    def _needs_arena(self, value: int) -> bool:
        return any(self.lw.last_use.get(s, -1) > self.last_step
                   for s in [value, *self.views.get(value, ())])

    def _place(self, value: int) -> int:
        """A register for value, or an OUT slot if it is read after the run."""
        lw = self.lw
        scatter = self.placed.get(value)
        if scatter is not None:
            dst = self._slot(OUT, self._padded(value, scatter))
            self._alias_views(value)
        elif self._needs_arena(value) or not self.free_regs:
            dst = self._slot(OUT, lw.define(value))
            self._alias_views(value)
        else:
            dst = self.free_regs.pop()
            self.reg_of[value] = dst
            self.nregs = max(self.nregs, dst + 1)
        self.where[value] = dst
        return dst

    def _alias_views(self, value: int) -> None:
        for v in self.views.get(value, ()):
            self.lw.alias(v, self.lw.loc[value])

    def _member(self, i: int, m: Member) -> None:
        if m.kind == "place":  # its value's step wrote it there (`_place`)
            return
        ops = [self._read(op) for op in m.operands]
        for op in m.operands:  # registers read for the last time are free for the result
            if op.kind == "value" and self.last_read.get(op.slot) == i and op.slot in self.reg_of:
                self.free_regs.append(self.reg_of.pop(op.slot))
        out = m.ins.out
        if m.kind == "sum":
            self.steps.append((SUM_STEP, 0, self._slot(ACC, self.lw.define(out)), ops[0], 0))
        elif m.total >= 0:
            self.steps.append((NCOUNT_STEP if m.kind == "ncount" else COUNT_STEP,
                               COMPARE[m.ins.prim], self._slot(ACC, self.lw.define(m.total)),
                               ops[0], ops[1]))
        elif m.kind == "scatter" and m.shift and m.ins.ins[0] in self.where:
            x = m.ins.ins[0]
            self.steps.append((SHIFT_STEP, m.shift, self.where[x], ops[0], 0))
            self.lw.alias(out, self.lw.loc[x])
            self._alias_views(out)
        elif m.kind == "scatter":
            dst, base = self._scatter_target(m)
            self.steps.append((BINARY_STEP, BINARY["sub" if m.subtract else "add"], dst, base,
                               ops[0]))
            self.where[out] = dst
            self._alias_views(out)
        elif m.kind == "unary":
            self.steps.append((UNARY_STEP, UNARY[m.ins.prim], self._place(out), ops[0], 0))
        else:
            self.steps.append((BINARY_STEP, BINARY[m.ins.prim], self._place(out),
                               ops[0], ops[1]))

    def _padded(self, value: int, scatter: Instr) -> Ref:
        """Where ``scatter`` (zeros with value set into a range) is made, its
        padding zeroed, and value's place: the range, inside it."""
        lw, dtype = self.lw, self.dtype
        out = lw.define(scatter.out)
        first, size = range_start(lw, scatter), lw.avals[scatter.out].size
        for lo, hi in ((0, first), (first + self.n, size)):
            if hi > lo:
                lw.emit("ZERO_V", lw.dt(dtype),
                        (Ref(out.buf, out.offset + lo * dtype.itemsize), dtype), hi - lo)
        at = Ref(out.buf, out.offset + first * dtype.itemsize)
        lw.alias(value, at)
        return at

    def _scatter_target(self, m: Member) -> tuple[int, int]:
        """(OUT slot written, operand added to) for x[start:start+n] += v."""
        lw, dtype, n = self.lw, self.dtype, self.n
        x, out = m.ins.ins[0], m.ins.out
        size = lw.avals[out].size
        first = range_start(lw, m.ins)
        if x in self.where:  # the run's previous update of this range
            lw.alias(out, lw.loc[x])
            return self.where[x], self.where[x]
        if m.in_place:
            ref = lw.place(x)
            lw.alias(out, ref)
        else:
            ref = lw.define(out)
            if x in lw.consts and not np.any(np.asarray(lw.consts[x])):
                # zero outside the range; inside, the run adds v to a zero scalar
                for lo, hi in ((0, first), (first + n, size)):
                    if hi > lo:
                        lw.emit("ZERO_V", lw.dt(dtype),
                                (Ref(ref.buf, ref.offset + lo * dtype.itemsize), dtype), hi - lo)
                dst = self._slot(OUT, Ref(ref.buf, ref.offset + first * dtype.itemsize))
                zero = self._slot(SCALAR, lw.const_ref(np.zeros((), dtype=dtype)))
                return dst, zero
            lw.emit("COPY_V", lw.dt(dtype), (ref, dtype), (lw.read(x, dtype), dtype), size)
        at = Ref(ref.buf, ref.offset + first * dtype.itemsize)
        return self._slot(OUT, at), self._slot(IN, at)
