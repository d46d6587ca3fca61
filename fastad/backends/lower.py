"""Lowering: a tape becomes a `Program` for the C virtual machine.

This module is the walk and its state: `lower(tape)` plans the tape (folds
transposes into matrix products, drops dead instructions, computes each
slot's last use), then visits the instructions in order, offering each to
the fusion pass (`fuse.Fusion`) and otherwise to its primitive's rule
(`lower_rules`), and finally resolves every arena reference to a byte
offset.  The `_Lowerer` is what the rules and the fusion pass work through:
where a slot's value is (`read`, `place`), defining and aliasing slots,
constants, temporaries, emitting opcodes and descriptors.  The other parts
live beside it:

  vm_header     the instruction set and constants read from csrc/opcodes.h
  vm_program    the `Program` container and its listing
  arena         memory planning: buffers, `Ref`, the linear-scan planner
  lower_rules   one rule per primitive, `_RULES` and `HOST_CALLS`
  fuse          runs of elementwise instructions as one FUSED instruction

Dtypes: every VM instruction is homogeneous.  Operands whose dtype differs
from the instruction's are converted by a CAST_V into a temporary; weak
Python scalar constants are stored in the dtype of the instruction they feed
(NumPy 2, NEP 50).  Integer slots other than constant index arrays are not
supported (`LoweringError`).  The names tests and tools read from here
(`TABLES`, `OP`, `UNARY`, ..., `HOST_CALLS`, `ArenaPlanner`) are re-exported.

Inputs read in place: an array input of more than one element is bound to
the caller's array (a segment past the arena, `arena`) rather than copied
into the arena, unless the program would write it, return it as an output,
or read it with an opcode the VM does not map onto bound inputs (scalar
opcodes, GUARD: `MAPS_BOUND`); those inputs are found in the finished
program and the tape is lowered again with them copied.
"""
from __future__ import annotations

import collections
import math
from typing import Any, NamedTuple

import numpy as np

from ..core.errors import LoweringError
from ..core.registry import registry
from ..core.tape import Instr, Tape
from ..transforms.analysis import is_weak as _is_weak
from .arena import END, ArenaPlanner, Ref, _Buffer, _round_up
from .fuse import Fusion
from .lower_loop import live_operands
from .lower_rules import (_F64, _RULES, _SCALAR_OPCODE, HOST_CALLS, _check_dtype, matmul_add,
                          rule_of)
from .vm_header import (ARENA_ALIGN, BINARY, COMPARE, DTYPE_CODE, LOGIC, NARGS, OP, REDUCE,
                        TABLES, UNARY, parse_opcodes_header)
from .vm_program import Port, Program, _walk

__all__ = ["lower", "Program", "Port", "LoweringError", "ArenaPlanner", "rule_of", "_RULES",
           "HOST_CALLS", "TABLES", "OP", "NARGS", "UNARY", "BINARY", "COMPARE", "LOGIC", "REDUCE", "DTYPE_CODE",
           "ARENA_ALIGN", "parse_opcodes_header"]


# The opcodes whose arena operands the VM maps onto bound inputs and outputs
# (csrc/vm.c, fastad_maps_bound; tests/test_vm.py checks the two agree).
MAPS_BOUND = frozenset(OP[name] for name in (
    "UNARY_V", "BINARY_VV", "BINARY_VS", "BINARY_SV", "BINARY_B", "COMPARE_B", "LOGIC_B",
    "NOT_V", "WHERE_B", "CAST_V", "ZERO_V", "COPY_V", "STRIDED_B", "GATHER_V", "SCATTER_SET_V",
    "SCATTER_ADD_V", "GATHER_ROWS_V", "SCATTER_ADD_ROWS_V", "STRIDED_SET_B", "STRIDED_ADD_B", "REDUCE_B", "SCAN_B", "MATMUL_B",
    "SOLVE_B", "SLOGDET_B", "CHOLESKY_B", "TRSOLVE_B", "TRMM_B", "EIGH_B", "SVD_B", "PINV_B",
    "QR_B", "FUSED"))
_FUSED_WRITTEN_SLOTS = (2, 3)  # OUT, ACC (fuse.py)


class _Slot(NamedTuple):
    """A slot's aval with its size computed once (lowering asks often)."""
    shape: tuple[int, ...]
    dtype: np.dtype
    size: int


class _Lowerer:
    def __init__(self, tape: Tape, bind: frozenset[int] = frozenset(),
                 bind_out: frozenset[int] = frozenset()) -> None:
        self.tape = tape
        self.bind = bind            # input slots to read in place
        self.bind_out = bind_out    # output slots to write in place
        self.bound_top = 0          # bytes of their segments
        # the bound input and output slots the program cannot use in place
        self.unbindable: set[int] = set()
        self.avals = [_Slot(tuple(a.shape), np.dtype(a.dtype), math.prod(a.shape))
                      for a in tape.avals]
        self.consts = tape.consts
        self.planner = ArenaPlanner()
        self.const_bytes = bytearray()
        self.buffers: list[_Buffer] = []
        self.loc: dict[int, Ref] = {}
        self.const_loc: dict[tuple[int, str], Ref] = {}
        self.const_by_value: dict[tuple[str, tuple[int, ...], bytes], Ref] = {}
        self.code: list[Any] = []  # ints, and ("ref", Ref, itemsize) to resolve at the end
        self.meta: list[int] = []
        self.meta_at: dict[tuple[int, ...], int] = {}
        self.index: list[np.ndarray] = []
        self.index_len = 0
        self.index_at: dict[int, int] = {}
        self.step = -1
        self.step_temps: list[int] = []
        self.reads: dict[int, tuple[int, ...]] = {}  # instruction -> effective operands
        # Scalar expressions deferred into their single consumer (see
        # lower_rules._scalar_arithmetic):
        # slot -> (kind, operand refs); `fused` keeps the refs once consumed.
        self.pending: dict[int, tuple[str, tuple[Ref, ...]]] = {}
        # a negation deferred into each of its several consumers: the ones left
        self.pending_uses: dict[int, int] = {}
        self.fused: dict[int, tuple[Ref, ...]] = {}
        self.matmul_trans: dict[int, tuple[bool, bool]] = {}
        self.solve_trans: dict[int, bool] = {}
        # additions that run their operand's product as an accumulating MATMUL
        # (`plan_accumulations`): add -> (the matmul, the addend)
        self.accumulate: dict[int, tuple[Instr, int]] = {}
        # buffers a LOOP instruction copies rows from or into (`lower_loop`):
        # in the arena, never a caller's array (the VM does not rebase them)
        self.loop_bufs: set[int] = set()

    # -- analysis ------------------------------------------------------------
    def plan(self) -> list[Instr]:
        """Fold transposes into matmuls, drop dead instructions, compute last uses."""
        producer = {ins.out: ins for ins in self.tape.instrs}
        for k, ins in enumerate(self.tape.instrs):
            if ins.prim == "loop":  # the operands its body uses (lower_loop)
                self.reads[id(ins)] = live_operands(ins, self.tape, self.consts)
                continue
            # a matmul's operands and a triangular solve's matrix are read
            # through BLAS transpose flags rather than copied transposed
            folded = {"matmul": 2, "solve_triangular": 1}.get(ins.prim, 0)
            if folded:
                ops, flags = [], []
                for s in ins.ins[:folded]:
                    src = producer.get(s)
                    swapped = (src is not None and src.prim == "transpose"
                               and _swaps_last_two(dict(src.params)["perm"]))
                    ops.append(src.ins[0] if swapped else s)
                    flags.append(swapped)
                self.reads[id(ins)] = tuple(ops) + tuple(ins.ins[folded:])
                if ins.prim == "matmul":
                    self.matmul_trans[id(ins)] = (flags[0], flags[1])
                else:
                    self.solve_trans[id(ins)] = flags[0]
        needed = set(self.tape.outputs)
        kept = []
        for ins in reversed(self.tape.instrs):
            if ins.out in needed or registry[ins.prim].effect is not None:
                kept.append(ins)
                needed.update(self.operands(ins))
        kept.reverse()
        kept = self.plan_accumulations(kept)
        self.last_use: dict[int, int] = {}
        self.uses: collections.Counter[int] = collections.Counter()
        self.readers: dict[int, list[int]] = collections.defaultdict(list)
        for k, ins in enumerate(kept):
            for s in self.operands(ins):
                self.last_use[s] = k
                self.uses[s] += 1
                self.readers[s].append(k)
        for s in self.tape.outputs:
            self.last_use[s] = END
            self.uses[s] += 1
        self.kept = kept
        return kept

    def plan_accumulations(self, kept: list[Instr]) -> list[Instr]:
        """``g + a @ b``, g an input of the tape and the small product read by
        nothing else: one accumulating MATMUL at the addition
        (`lower_rules.matmul_add`), which reads g and the product's operands,
        and no instruction for the product.  A weight gradient's update in a
        loop body (the carried g + outer(d, h)) is then one pass adding into
        g's place, where it was the product into a temporary, an addition and
        the LOOP's copy of the sum into the carry.  The sum from 0 added to g:
        the bits of the two instructions.  A computed g keeps the addition,
        which may join an elementwise run (``W @ h + U @ x`` then tanh);
        larger products keep BLAS and their addition."""
        from .numba_products import is_small
        producer = {ins.out: ins for ins in kept}
        readers = collections.Counter(s for ins in kept for s in self.operands(ins))
        readers.update(self.tape.outputs)
        inputs = set(self.tape.inputs)
        dropped = set()
        for ins in kept:
            if ins.prim != "add":
                continue
            for k, s in enumerate(ins.ins[:2]):
                mm, addend = producer.get(s), ins.ins[1 - k]
                if (mm is None or mm.prim != "matmul" or readers[s] != 1 or addend == s
                        or addend not in inputs):
                    continue
                out, *others = [self.avals[t] for t in (ins.out, s, addend)]
                a_shape = self.avals[self.operands(mm)[0]].shape
                k_size = a_shape[-2] if self.matmul_trans[id(mm)][0] else a_shape[-1]
                if (len(out.shape) < 2 or out.dtype.kind != "f"
                        or any((a.shape, a.dtype) != (out.shape, out.dtype) for a in others)
                        or not is_small(out.shape[-2], k_size, out.shape[-1])):
                    continue
                self.accumulate[id(ins)] = (mm, addend)
                self.reads[id(ins)] = (addend,) + self.operands(mm)
                dropped.add(id(mm))
                break
        return [ins for ins in kept if id(ins) not in dropped]

    def operands(self, ins: Instr) -> tuple[int, ...]:
        return self.reads.get(id(ins), ins.ins)

    # -- buffers and references ------------------------------------------------
    def new_buffer(self, nbytes: int, last_use: int) -> Ref:
        buf = _Buffer(nbytes, last_use, const=False, addr=self.planner.alloc(nbytes))
        self.buffers.append(buf)
        return Ref(len(self.buffers) - 1, 0)

    def bind_input(self, slot: int) -> Ref:
        """An input read in place: a segment past the arena, the caller's array."""
        aval = self.avals[slot]
        nbytes = aval.size * aval.dtype.itemsize
        self.buffers.append(_Buffer(nbytes, END, const=False, addr=self.segment(nbytes),
                                    bound=True))
        ref = self.loc[slot] = Ref(len(self.buffers) - 1, 0)
        return ref

    def segment(self, nbytes: int) -> int:
        """A new segment past the arena (offset from its end)."""
        at = _round_up(self.bound_top, ARENA_ALIGN)
        self.bound_top = at + nbytes
        return at

    def bind_outputs(self, output_refs: list[Ref]) -> None:
        """Move each output's buffer that holds exactly that output, and no
        other output, to a segment: the VM writes it into the returned array."""
        owners = collections.Counter(r.buf for r in output_refs)
        owners.update(self.loc[s].buf for s in self.tape.inputs)  # never an input's
        for slot, ref in zip(self.tape.outputs, output_refs):
            buf, aval = self.buffers[ref.buf], self.avals[slot]
            if (slot in self.bind_out and owners[ref.buf] == 1 and ref.offset == 0
                    and not buf.const and not buf.bound
                    and buf.nbytes == aval.size * aval.dtype.itemsize):
                buf.bound = buf.written = True
                buf.addr = self.segment(buf.nbytes)

    def temp(self, nbytes: int) -> Ref:
        ref = self.new_buffer(nbytes, self.step)
        self.step_temps.append(ref.buf)
        return ref

    def define(self, slot: int) -> Ref:
        aval = self.avals[slot]
        ref = self.new_buffer(aval.size * aval.dtype.itemsize, self.last_use.get(slot, self.step))
        self.loc[slot] = ref
        return ref

    def alias(self, slot: int, ref: Ref) -> None:
        self.loc[slot] = ref
        buf = self.buffers[ref.buf]
        buf.last_use = max(buf.last_use, self.last_use.get(slot, self.step))

    def const_ref(self, value: np.ndarray) -> Ref:
        key = (value.dtype.str, value.shape, value.tobytes())
        ref = self.const_by_value.get(key)
        if ref is None:
            at = _round_up(len(self.const_bytes), ARENA_ALIGN if value.nbytes >= ARENA_ALIGN else 8)
            self.const_bytes.extend(b"\0" * (at - len(self.const_bytes)))
            self.const_bytes.extend(key[2])
            self.buffers.append(_Buffer(value.nbytes, END, const=True, addr=at))
            ref = self.const_by_value[key] = Ref(len(self.buffers) - 1, 0)
        return ref

    def read(self, slot: int, dtype: np.dtype | None = None) -> Ref:
        """Where slot's value is, in ``dtype`` (converting if it must)."""
        aval = self.avals[slot]
        dtype = aval.dtype if dtype is None else dtype
        if slot in self.consts:
            key = (slot, dtype.str)
            ref = self.const_loc.get(key)
            if ref is None:
                value = np.asarray(self.consts[slot])
                # an integer constant array in float arithmetic (x * np.arange(n)) is
                # converted here, as NumPy converts it to the result type
                if value.dtype.kind not in "fbiu" and not _is_weak(self.consts[slot]):
                    raise LoweringError(f"constant %{slot} of dtype {value.dtype} used as data")
                ref = self.const_loc[key] = self.const_ref(
                    np.ascontiguousarray(value.astype(dtype, copy=False)))
            return ref
        ref = self.place(slot)
        if aval.dtype == dtype:
            return ref
        _check_dtype(aval.dtype, slot)
        out = self.temp(aval.size * dtype.itemsize)
        self.emit("CAST_V", self.dt(dtype), self.dt(aval.dtype), (out, dtype), (ref, aval.dtype),
                  aval.size)
        return out

    def place(self, slot: int) -> Ref:
        """Where a computed slot is, materializing a deferred scalar expression."""
        if slot in self.pending:
            self.pending_uses.pop(slot, None)  # materialized: later consumers read it
            kind, refs = self.take_pending(slot)
            o = self.define(slot)
            self.emit(_SCALAR_OPCODE[kind], (o, _F64), *((r, _F64) for r in refs))
        return self.loc[slot]

    def take_pending(self, slot: int) -> tuple[str, tuple[Ref, ...]]:
        left = self.pending_uses.get(slot, 1) - 1
        if left:  # a negation that further consumers absorb too
            self.pending_uses[slot] = left
            return self.pending[slot]
        self.pending_uses.pop(slot, None)
        kind, refs = self.pending.pop(slot)
        self.fused[slot] = refs
        return kind, refs

    def pending_kind(self, slot: int) -> str | None:
        entry = self.pending.get(slot)
        return entry[0] if entry else None

    @staticmethod
    def dt(dtype: np.dtype) -> int:
        return DTYPE_CODE[dtype]

    def emit(self, opname: str, *operands: Any) -> None:
        """Append an instruction; arena operands are (Ref, dtype) pairs."""
        self.code.append(OP[opname])
        for w in operands:
            self.code.append(int(w) if isinstance(w, (int, np.integer))
                             else ("ref", w[0], w[1].itemsize))

    def descriptor(self, words: list[Any]) -> int:
        """Offset of words in the metadata pool; a word may be an arena
        operand ("ref", Ref, itemsize), resolved like those of the code."""
        key = tuple(w if isinstance(w, tuple) else int(w) for w in words)
        at = self.meta_at.get(key)
        if at is None:
            at = self.meta_at[key] = len(self.meta)
            self.meta.extend(key)
        return at

    def indices(self, slot: int, flat: np.ndarray) -> int:
        at = self.index_at.get(slot)
        if at is None:
            at = self.index_at[slot] = self.index_len
            self.index.append(flat)
            self.index_len += flat.size
        return at

    # -- the main loop ------------------------------------------------------------
    def run(self, fuse: bool = True) -> Program:
        self.emit_code(fuse)
        return self.finish()

    def place_inputs(self) -> None:
        for slot in self.tape.inputs:
            _check_dtype(self.avals[slot].dtype, slot)
            if slot in self.bind and slot not in self.loc:
                self.bind_input(slot)
            else:
                self.define(slot)

    def emit_code(self, fuse: bool = True) -> None:
        """The tape's instructions, ending with HALT (references left to `finish`)."""
        self.fusing = fuse  # loop bodies lower as their program does
        kept = self.plan()
        self.place_inputs()
        fusion = Fusion(self) if fuse else None
        for k, ins in enumerate(kept):
            self.step = k
            self.step_temps = []
            empty = self.avals[ins.out].size == 0 and registry[ins.prim].effect is None
            if id(ins) in self.accumulate:  # no elementwise run: a MATMUL of its own
                if fusion is not None:
                    fusion.flush()
                self.step = k
                self.step_temps = []
                matmul_add(self, ins, *self.accumulate[id(ins)])
                self.release_dead(ins)
                continue
            if fusion is not None and not empty and fusion.offer(k, ins):
                continue
            self.step = k
            self.step_temps = []
            if empty:
                self.define(ins.out)
            else:
                rule_of(ins)(self, ins)
            self.release_dead(ins)
        if fusion is not None:
            fusion.flush()
        self.before_halt()
        self.code.append(OP["HALT"])

    def before_halt(self) -> None:
        """What a loop body emits after its instructions (`lower_loop`)."""

    def release_dead(self, ins: Instr) -> None:
        dying = set(self.step_temps)
        for s in self.operands(ins):
            ref = self.loc.get(s)
            if ref is not None:
                dying.add(ref.buf)
            dying.update(r.buf for r in self.fused.pop(s, ()))
        if ins.out in self.loc:  # defined but never read (nothing else to free it)
            dying.add(self.loc[ins.out].buf)
        for b in dying:
            buf = self.buffers[b]
            if not buf.readonly and not buf.freed and buf.last_use <= self.step:
                buf.freed = True
                self.planner.release(buf.addr, buf.nbytes)

    def finish(self) -> Program:
        input_refs = [self.loc[s] for s in self.tape.inputs]
        output_refs = [self.read(s) for s in self.tape.outputs]  # may place constants
        self.bind_outputs(output_refs)
        dynamic_base = _round_up(len(self.const_bytes), ARENA_ALIGN)
        arena = _round_up(dynamic_base + self.planner.top, ARENA_ALIGN)
        base = [b.addr if b.const else arena + b.addr if b.bound else dynamic_base + b.addr
                for b in self.buffers]
        self.unbindable = self._unbindable(output_refs)

        def byte_addr(ref: Ref) -> int:
            return base[ref.buf] + ref.offset

        def resolve(w: Any) -> int:
            if type(w) is tuple:
                addr = byte_addr(w[1])
                assert addr % w[2] == 0, "misaligned operand"
                return addr // w[2]
            return w

        code = np.array([resolve(w) for w in self.code], dtype=np.int32)
        meta = np.array([resolve(w) for w in self.meta], dtype=np.int64)
        if (arena + self.bound_top) // 8 >= 2 ** 31:
            raise LoweringError(f"the program needs an arena of {arena} bytes; the VM "
                                "addresses at most 16 GiB")

        def ports(slots: list[int], refs: list[Ref]) -> list[Port]:
            return [Port(byte_addr(r), self.avals[s].dtype, self.avals[s].shape)
                    for s, r in zip(slots, refs)]

        inputs = ports(self.tape.inputs, input_refs)
        outputs = ports(self.tape.outputs, output_refs)
        index = np.concatenate(self.index) if self.index else np.zeros(0, np.int64)
        stats = {"instructions": sum(1 for _ in _walk(code)) - 1,
                 "tape_instructions": len(self.tape.instrs)}
        return Program(code, meta, index.astype(np.int64),
                       bytes(self.const_bytes), arena, inputs, outputs, stats,
                       _round_up(self.bound_top, ARENA_ALIGN))

    def _unbindable(self, output_refs: list[Ref]) -> set[int]:
        """The bound inputs the program writes, returns, or reads with an
        opcode that cannot read them in place, and the bound outputs used by
        such an opcode."""
        slot_of = {self.loc[s].buf: s for s in self.tape.inputs
                   if self.buffers[self.loc[s].buf].bound}
        bad = {slot_of[r.buf] for r in output_refs if r.buf in slot_of}
        slot_of.update((r.buf, s) for s, r in zip(self.tape.outputs, output_refs)
                       if self.buffers[r.buf].written)
        bad.update(slot_of[b] for b in self.loop_bufs if b in slot_of)
        pc, code = 0, self.code
        while pc < len(code):
            op = code[pc]
            kinds = TABLES["OPCODES"][op][2]
            for kind, w in zip(kinds, code[pc + 1:pc + 1 + NARGS[op]]):
                if type(w) is tuple and w[1].buf in slot_of and (op not in MAPS_BOUND or (
                        kind == "o" and not self.buffers[w[1].buf].written)):
                    bad.add(slot_of[w[1].buf])
            pc += 1 + NARGS[op]
        for prev, w in zip(self.meta, self.meta[1:]):  # FUSED slots: (kind, offset)
            if (type(w) is tuple and w[1].buf in slot_of and prev in _FUSED_WRITTEN_SLOTS
                    and not self.buffers[w[1].buf].written):
                bad.add(slot_of[w[1].buf])
        return bad


def _swaps_last_two(perm: tuple[int, ...]) -> bool:
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def lower(tape: Tape, fuse: bool = True, bind_inputs: bool = True) -> Program:
    """Lower a tape to a program for the VM; ``fuse=False`` keeps every
    elementwise instruction separate (no FUSED); ``bind_inputs=False`` copies
    every input into the arena (none is read in place)."""
    for aval in tape.avals:
        if aval.dtype.kind == "c":
            raise LoweringError(f"dtype {aval.dtype}: the VM has no complex numbers")
    def arrays(slots: list[int]) -> frozenset[int]:
        return frozenset(s for s in slots if bind_inputs and slots.count(s) == 1
                         and s not in tape.consts and math.prod(tape.avals[s].shape) > 1
                         and np.dtype(tape.avals[s].dtype).kind in "fb")

    bind, bind_out = arrays(tape.inputs), arrays(tape.outputs) - set(tape.inputs)
    lowerer = _Lowerer(tape, bind, bind_out)
    program = lowerer.run(fuse)
    if lowerer.unbindable:  # copy those; the others stay bound
        program = _Lowerer(tape, bind - lowerer.unbindable,
                           bind_out - lowerer.unbindable).run(fuse)
    return program
