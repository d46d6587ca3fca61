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
from .lower_rules import _F64, _RULES, _SCALAR_OPCODE, HOST_CALLS, _check_dtype, rule_of
from .vm_header import (ARENA_ALIGN, BINARY, COMPARE, DTYPE_CODE, LOGIC, NARGS, OP, REDUCE,
                        TABLES, UNARY, parse_opcodes_header)
from .vm_program import Port, Program, _walk

__all__ = ["lower", "Program", "Port", "LoweringError", "ArenaPlanner", "rule_of", "_RULES",
           "HOST_CALLS", "TABLES", "OP", "NARGS", "UNARY", "BINARY", "COMPARE", "LOGIC", "REDUCE", "DTYPE_CODE",
           "ARENA_ALIGN", "parse_opcodes_header"]


class _Slot(NamedTuple):
    """A slot's aval with its size computed once (lowering asks often)."""
    shape: tuple[int, ...]
    dtype: np.dtype
    size: int


class _Lowerer:
    def __init__(self, tape: Tape) -> None:
        self.tape = tape
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
        self.fused: dict[int, tuple[Ref, ...]] = {}
        self.matmul_trans: dict[int, tuple[bool, bool]] = {}
        self.solve_trans: dict[int, bool] = {}

    # -- analysis ------------------------------------------------------------
    def plan(self) -> list[Instr]:
        """Fold transposes into matmuls, drop dead instructions, compute last uses."""
        producer = {ins.out: ins for ins in self.tape.instrs}
        for k, ins in enumerate(self.tape.instrs):
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
        self.last_use: dict[int, int] = {}
        self.uses: collections.Counter[int] = collections.Counter()
        for k, ins in enumerate(kept):
            for s in self.operands(ins):
                self.last_use[s] = k
                self.uses[s] += 1
        for s in self.tape.outputs:
            self.last_use[s] = END
            self.uses[s] += 1
        self.kept = kept
        return kept

    def operands(self, ins: Instr) -> tuple[int, ...]:
        return self.reads.get(id(ins), ins.ins)

    # -- buffers and references ------------------------------------------------
    def new_buffer(self, nbytes: int, last_use: int) -> Ref:
        buf = _Buffer(nbytes, last_use, const=False, addr=self.planner.alloc(nbytes))
        self.buffers.append(buf)
        return Ref(len(self.buffers) - 1, 0)

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
            kind, refs = self.take_pending(slot)
            o = self.define(slot)
            self.emit(_SCALAR_OPCODE[kind], (o, _F64), *((r, _F64) for r in refs))
        return self.loc[slot]

    def take_pending(self, slot: int) -> tuple[str, tuple[Ref, ...]]:
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
        kept = self.plan()
        for slot in self.tape.inputs:
            _check_dtype(self.avals[slot].dtype, slot)
            self.define(slot)
        fusion = Fusion(self) if fuse else None
        for k, ins in enumerate(kept):
            self.step = k
            self.step_temps = []
            empty = self.avals[ins.out].size == 0 and registry[ins.prim].effect is None
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
        self.code.append(OP["HALT"])
        return self.finish()

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
            if not buf.const and not buf.freed and buf.last_use <= self.step:
                buf.freed = True
                self.planner.release(buf.addr, buf.nbytes)

    def finish(self) -> Program:
        input_refs = [self.loc[s] for s in self.tape.inputs]
        output_refs = [self.read(s) for s in self.tape.outputs]  # may place constants
        dynamic_base = _round_up(len(self.const_bytes), ARENA_ALIGN)
        base = [b.addr if b.const else dynamic_base + b.addr for b in self.buffers]

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
        arena = _round_up(dynamic_base + self.planner.top, ARENA_ALIGN)
        if arena // 8 >= 2 ** 31:
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
                       bytes(self.const_bytes), arena, inputs, outputs, stats)


def _swaps_last_two(perm: tuple[int, ...]) -> bool:
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def lower(tape: Tape, fuse: bool = True) -> Program:
    """Lower a tape to a program for the VM; ``fuse=False`` keeps every
    elementwise instruction separate (no FUSED)."""
    for aval in tape.avals:
        if aval.dtype.kind == "c":
            raise LoweringError(f"dtype {aval.dtype}: the VM has no complex numbers")
    return _Lowerer(tape).run(fuse)
