"""Lowering: a tape becomes a `Program` for the C virtual machine.

A program is a flat int32 instruction stream (format and opcodes in
``csrc/opcodes.h``, parsed here: one source of truth), an int64 metadata pool
of descriptors, an int64 index pool for gathers and scatters, and an arena
layout: every slot of the tape lives at a byte offset of one arena.

The arena has two regions.  Constants come first and are written once when
an arena is created.  Everything else is placed by a linear-scan memory
planner: a buffer is allocated when its slot is defined and released after
its last use, so slots whose lifetimes do not overlap share space.

Lowering does the work that makes the VM fast:
  * ``reshape``, ``stop_gradient``, same-dtype ``astype``, a ``take`` of one
    element or of a contiguous range, and multiplication by an exact 1 are
    aliases: no instruction, the slot names part of another buffer (whose
    lifetime the alias extends).
  * ``take`` with an affine index pattern is a strided copy; only irregular
    patterns need the index pool.
  * ``scatter_add``/``scatter_set`` update their input in place when it dies
    there, so the reverse sweep of a Python loop over ``x[i]`` becomes one
    scalar add per element, not a copy of the adjoint array per element.
  * a ``transpose`` of the last two axes feeding ``matmul`` becomes a BLAS
    transpose flag.
  * float64 scalar arithmetic uses the one-flop _S opcodes, and a negation or
    product that only feeds an accumulation is fused into it.

Dtypes: every VM instruction is homogeneous.  Operands whose dtype differs
from the instruction's are converted by a CAST_V into a temporary; weak
Python scalar constants are stored in the dtype of the instruction they feed
(NumPy 2, NEP 50).  Integer slots other than constant index arrays are not
supported (`LoweringError`).
"""
from __future__ import annotations

import bisect
import collections
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np

from ..errors import LoweringError, TapeError
from ..primitives.registry import Primitive, check_table, registry
from ..primitives.registry import prims as P
from ..tape import Instr, Tape
from ..transforms.analysis import affine, all_zero_bits, bitwise_uniform, c_strides, is_range
from . import vm_header
from .segmented import NOT_COMPILED


# -- the instruction set, read from csrc/opcodes.h ------------------------------
_opcodes_header = vm_header.header_text


def _macro_body(text: str, name: str) -> str:
    match = re.search(rf"#define {name}\(\w\)((?:.*\\\n)*.*)", text)
    if match is None:
        raise ImportError(f"fastad: {name} missing from opcodes.h")
    return match.group(1)


def parse_opcodes_header(text: str) -> dict[str, Any]:
    """The tables of opcodes.h: OPCODES as (name, nargs, operand kinds, comment)
    in enum order, each function table as a list of names, DTYPE_SIZES,
    DESCRIPTORS as (name, head, per_dim), and CONSTANTS (vm_header)."""
    opcodes = []
    for m in re.finditer(r"X\((\w+), (\d+)\)\s*/\*\s*(.*?)\s*\*/", _macro_body(text, "FASTAD_OPCODES")):
        name, nargs, comment = m.group(1), int(m.group(2)), m.group(3)
        kinds = comment.split()[:nargs] if nargs else []
        opcodes.append((name, nargs, kinds, comment))
    tables: dict[str, Any] = {"OPCODES": opcodes}
    for table in ("UNARY_FNS", "BINARY_FNS", "COMPARE_FNS", "LOGIC_FNS", "REDUCE_FNS",
                  "FUSED_SLOTS", "FUSED_STEPS"):
        tables[table] = re.findall(r"F\((\w+)\)", _macro_body(text, f"FASTAD_{table}"))
    tables["DTYPES"] = re.findall(r"X\((\w+), \d+\)", _macro_body(text, "FASTAD_DTYPES"))
    tables["DTYPE_SIZES"] = [int(size) for size in
                             re.findall(r"X\(\w+, (\d+)\)", _macro_body(text, "FASTAD_DTYPES"))]
    tables["DESCRIPTORS"] = [(name, int(head), int(per_dim)) for name, head, per_dim in re.findall(
        r"D\((\w+), (\d+), (\d+)\)", _macro_body(text, "FASTAD_DESCRIPTORS"))]
    tables["CONSTANTS"] = vm_header.parse_constants(text)
    return tables


TABLES = parse_opcodes_header(_opcodes_header())
OP = {name: code for code, (name, *_rest) in enumerate(TABLES["OPCODES"])}
NARGS = [nargs for _name, nargs, _kinds, _comment in TABLES["OPCODES"]]
UNARY = {name.lower(): code for code, name in enumerate(TABLES["UNARY_FNS"])}
BINARY = {name.lower(): code for code, name in enumerate(TABLES["BINARY_FNS"])}
COMPARE = {name.lower(): code for code, name in enumerate(TABLES["COMPARE_FNS"])}
LOGIC = {name.lower(): code for code, name in enumerate(TABLES["LOGIC_FNS"])}
REDUCE = {name.lower(): code for code, name in enumerate(TABLES["REDUCE_FNS"])}
DTYPE_CODE = {np.dtype(np.float64): TABLES["DTYPES"].index("F64"),
              np.dtype(np.float32): TABLES["DTYPES"].index("F32"),
              np.dtype(np.bool_): TABLES["DTYPES"].index("BOOL")}
_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)

# The tape's primitive names that differ from the VM's function names.
_BINARY_PRIM = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "pow": "pow",
                "maximum": "maximum", "minimum": "minimum", "arctan2": "arctan2",
                "hypot": "hypot", "logaddexp": "logaddexp"}

ARENA_ALIGN = TABLES["CONSTANTS"]["FASTAD_ARENA_ALIGN"]  # bytes
END = 1 << 62  # "used after the last instruction": program outputs


# -- the program ----------------------------------------------------------------
class Port(NamedTuple):
    """An input or output: byte offset in the arena, dtype, shape."""
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass
class Program:
    code: np.ndarray             # int32 instruction stream ending with HALT
    meta: np.ndarray             # int64 descriptors
    index: np.ndarray            # int64 gather/scatter indices
    const_image: bytes           # arena bytes [0, len): constants, written once per arena
    arena_bytes: int
    inputs: list[Port]
    outputs: list[Port]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def peak_arena_bytes(self) -> int:
        return self.arena_bytes

    def instructions(self) -> Iterator[tuple[int, str, list[int]]]:
        """(word offset, opcode name, operand words) for each instruction."""
        pc, code = 0, self.code.tolist()
        while pc < len(code):
            op = code[pc]
            if not 0 <= op < len(NARGS):
                raise TapeError(f"word {pc}: unknown opcode {op}")
            yield pc, TABLES["OPCODES"][op][0], code[pc + 1:pc + 1 + NARGS[op]]
            pc += 1 + NARGS[op]

    def __str__(self) -> str:
        lines = [f"program: {len(self.code)} words, arena {self.arena_bytes} bytes "
                 f"(constants {len(self.const_image)}), {len(self.meta)} descriptor words, "
                 f"{len(self.index)} indices"]
        for i, p in enumerate(self.inputs):
            lines.append(f"  input {i}: {p.dtype.name}{list(p.shape)} at byte {p.offset}")
        for pc, name, words in self.instructions():
            kinds = TABLES["OPCODES"][OP[name]][2]
            if name == "FUSED":
                lines.extend(_fused_listing(pc, words, self.meta))
                continue
            operands = " ".join(_operand_text(name, k, w, self.meta) for k, w in zip(kinds, words))
            lines.append(f"  {pc:6d}  {name:<14s}{operands}")
        for i, p in enumerate(self.outputs):
            lines.append(f"  output {i}: {p.dtype.name}{list(p.shape)} at byte {p.offset}")
        return "\n".join(lines)


def _operand_text(opname: str, kind: str, word: int, meta: np.ndarray) -> str:
    if kind == "f":
        table = ("UNARY_FNS" if opname.startswith("UNARY") else
                 "COMPARE_FNS" if opname.startswith("COMPARE") else
                 "LOGIC_FNS" if opname.startswith("LOGIC") else
                 "REDUCE_FNS" if opname.startswith("REDUCE") else
                 None if opname.startswith("SLOGDET") else "BINARY_FNS")
        names = TABLES[table] if table else ["LOGABSDET", "SIGN"]
        return names[word].lower() if 0 <= word < len(names) else f"f?{word}"
    if kind in "ts":
        return TABLES["DTYPES"][word].lower() if 0 <= word < len(TABLES["DTYPES"]) else f"t?{word}"
    if kind == "d":
        return f"d{word}{meta[word:word + _descriptor_len(opname, meta, word)].tolist()}"
    if kind in "oabcv":
        return f"@{word}"
    return f"{kind}={word}"


def _fused_listing(pc: int, words: list[int], meta: np.ndarray) -> list[str]:
    """A FUSED instruction and its micro-program, one step a line, each over
    the elements i of a block: registers r0, r1, ...; arena arrays @offset;
    broadcast scalars @offset[0]."""
    t, d, n = words
    dtype = TABLES["DTYPES"][t].lower() if 0 <= t < len(TABLES["DTYPES"]) else f"t?{t}"
    try:
        nregs, nslots, nsteps = (int(w) for w in meta[d:d + 3])
        slots = meta[d + 3:d + 3 + 2 * nslots].reshape(nslots, 2).tolist()
        steps = meta[d + 3 + 2 * nslots:d + 3 + 2 * nslots + 5 * nsteps].reshape(nsteps, 5).tolist()
    except (ValueError, TypeError):
        return [f"  {pc:6d}  {'FUSED':<14s}{dtype} d{d} n={n} (malformed)"]
    kinds = TABLES["FUSED_SLOTS"]

    def name(x: int) -> str:
        if x < nregs:
            return f"r{x}"
        if 0 <= x - nregs < nslots:
            kind, off = slots[x - nregs]
            return f"@{off}[0]" if 0 <= kind < len(kinds) and kinds[kind] == "SCALAR" else f"@{off}"
        return f"?{x}"

    lines = [f"  {pc:6d}  {'FUSED':<14s}{dtype} d{d} n={n}: {nsteps} steps, {nregs} registers"]
    step_kinds = TABLES["FUSED_STEPS"]
    for kind, f, dst, a, b in steps:
        step = step_kinds[kind] if 0 <= kind < len(step_kinds) else "?"
        if step == "SUM":
            text = f"{name(dst)} = sum({name(a)})"
        elif step == "SHIFT":
            text = f"{name(dst)}[i{f:+d}] += {name(a)}[i]"
        elif step in ("COUNT", "NCOUNT"):
            fn = TABLES["COMPARE_FNS"][f].lower() if 0 <= f < len(TABLES["COMPARE_FNS"]) else f"f?{f}"
            text = f"{name(dst)} = {step.lower()}({fn}({name(a)}, {name(b)}))"
        elif step == "UNARY":
            fn = TABLES["UNARY_FNS"][f].lower() if 0 <= f < len(TABLES["UNARY_FNS"]) else f"f?{f}"
            text = f"{name(dst)} = {fn}({name(a)})"
        else:
            fn = TABLES["BINARY_FNS"][f].lower() if 0 <= f < len(TABLES["BINARY_FNS"]) else f"f?{f}"
            text = f"{name(dst)} = {fn}({name(a)}, {name(b)})"
        lines.append(f"  {'':6s}  {'|':<14s}{text}")
    return lines


def _descriptor_len(opname: str, meta: np.ndarray, d: int) -> int:
    if not 0 <= d < len(meta):
        return 0
    nd = int(meta[d])
    return {"BINARY_B": 1 + 3 * nd, "COMPARE_B": 1 + 3 * nd, "LOGIC_B": 1 + 3 * nd,
            "WHERE_B": 1 + 4 * nd, "STRIDED_B": 2 + 2 * nd, "REDUCE_B": 2 + 2 * nd,
            "CUMSUM_B": 4, "MATMUL_B": 6, "SOLVE_B": 3, "SLOGDET_B": 2}.get(opname, 0)


# -- the memory planner ----------------------------------------------------------
class ArenaPlanner:
    """First-fit allocation over a free list of byte ranges, coalescing on
    release; `top` is the high-water mark (the arena size)."""

    def __init__(self) -> None:
        self.starts: list[int] = []  # free blocks, sorted by start
        self.ends: list[int] = []
        self.top = 0

    def alloc(self, nbytes: int) -> int:
        nbytes = _round_up(max(nbytes, 1), 8)
        align = ARENA_ALIGN if nbytes >= ARENA_ALIGN else 8
        for i, (start, end) in enumerate(zip(self.starts, self.ends)):
            at = _round_up(start, align)
            if at + nbytes <= end or (end == self.top and i == len(self.starts) - 1):
                self._take(i, at, nbytes)
                return at
        at = _round_up(self.top, align)
        self.top = at + nbytes
        return at

    def _take(self, i: int, at: int, nbytes: int) -> None:
        start, end = self.starts[i], self.ends[i]
        del self.starts[i], self.ends[i]
        if end < at + nbytes:  # the last block grows the arena
            self.top = at + nbytes
        elif at + nbytes < end:
            self._insert(at + nbytes, end)
        if start < at:
            self._insert(start, at)

    def _insert(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)

    def release(self, at: int, nbytes: int) -> None:
        start, end = at, at + _round_up(max(nbytes, 1), 8)
        i = bisect.bisect_left(self.starts, start)
        if i > 0 and self.ends[i - 1] == start:  # merge with the block before
            i -= 1
            start = self.starts[i]
            del self.starts[i], self.ends[i]
        if i < len(self.starts) and self.starts[i] == end:  # and the one after
            end = self.ends[i]
            del self.starts[i], self.ends[i]
        self._insert(start, end)


def _round_up(n: int, k: int) -> int:
    return (n + k - 1) // k * k


# -- shapes and strides -----------------------------------------------------------
def _broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides reading an array of ``shape`` broadcast to ``out_shape``."""
    lead = len(out_shape) - len(shape)
    own = c_strides(shape)
    return [0] * lead + [0 if d == 1 else s for d, s in zip(shape, own)]


def _simplify(shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop unit axes and merge axes that are contiguous for every operand;
    the result has at least one axis."""
    keep = [k for k, d in enumerate(shape) if d != 1]
    out_shape: list[int] = []
    out_strides: list[list[int]] = [[] for _ in strides]
    for k in keep:
        if out_shape and all(s[-1] == ss[k] * shape[k] for s, ss in zip(out_strides, strides)):
            out_shape[-1] *= shape[k]
            for s, ss in zip(out_strides, strides):
                s[-1] = ss[k]
            continue
        out_shape.append(shape[k])
        for s, ss in zip(out_strides, strides):
            s.append(ss[k])
    if not out_shape:
        return [1], [[0] for _ in strides]
    return out_shape, out_strides


# -- lowering ---------------------------------------------------------------------
class Ref(NamedTuple):
    """A place in the arena: ``offset`` bytes into buffer ``buf``."""
    buf: int
    offset: int


@dataclass
class _Buffer:
    nbytes: int
    last_use: int
    const: bool
    addr: int = -1
    freed: bool = False


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
        # Scalar expressions deferred into their single consumer (see _fuse_scalar):
        # slot -> (kind, operand refs); `fused` keeps the refs once consumed.
        self.pending: dict[int, tuple[str, tuple[Ref, ...]]] = {}
        self.fused: dict[int, tuple[Ref, ...]] = {}
        self.matmul_trans: dict[int, tuple[bool, bool]] = {}

    # -- analysis ------------------------------------------------------------
    def plan(self) -> list[Instr]:
        """Fold transposes into matmuls, drop dead instructions, compute last uses."""
        producer = {ins.out: ins for ins in self.tape.instrs}
        for k, ins in enumerate(self.tape.instrs):
            if ins.prim == "matmul":
                ops, flags = [], []
                for s in ins.ins:
                    src = producer.get(s)
                    swapped = (src is not None and src.prim == "transpose"
                               and _swaps_last_two(dict(src.params)["perm"]))
                    ops.append(src.ins[0] if swapped else s)
                    flags.append(swapped)
                self.reads[id(ins)] = tuple(ops)
                self.matmul_trans[id(ins)] = (flags[0], flags[1])
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


def _walk(code: np.ndarray) -> Iterator[int]:
    pc = 0
    while pc < len(code):
        yield pc
        pc += 1 + NARGS[code[pc]]


def _is_weak(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) and not isinstance(value, np.generic)


def _check_dtype(dtype: np.dtype, slot: int) -> None:
    if dtype not in DTYPE_CODE:
        raise LoweringError(f"slot %{slot} has dtype {dtype}; the VM runs float64, float32 "
                            "and bool values")


def _swaps_last_two(perm: tuple[int, ...]) -> bool:
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def _flat_indices(lw: _Lowerer, idx_slot: int, size: int) -> np.ndarray:
    idx = np.asarray(lw.consts.get(idx_slot))
    if idx_slot not in lw.consts or idx.dtype.kind not in "iu":
        raise LoweringError(f"index operand %{idx_slot} must be a constant integer array")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise LoweringError(f"index out of range for an array of {size} elements")
    return np.where(idx < 0, idx + size, idx)


# -- one rule per primitive -------------------------------------------------------
def _unary(lw: _Lowerer, ins: Instr) -> None:
    (x,), dtype = ins.ins, lw.avals[ins.out].dtype
    _check_float(dtype, ins)
    n = lw.avals[ins.out].size
    if dtype == _F64 and n == 1 and ins.prim in ("neg", "square"):
        _scalar_arithmetic(lw, ins)
        return
    a = lw.read(x, dtype)
    o = lw.define(ins.out)
    if dtype == _F64 and n == 1:
        lw.emit("UNARY_S", UNARY[ins.prim], (o, dtype), (a, dtype))
    else:
        lw.emit("UNARY_V", UNARY[ins.prim], lw.dt(dtype), (o, dtype), (a, dtype), n)


# -- scalar float64 arithmetic: one-flop opcodes, fused where an intermediate
# has a single consumer.  A product or negation whose only use is an add, a
# sub, a mul, a neg or a scalar scatter_add is deferred (`pending`) and
# emitted inside that consumer: x - y*y is one MULSUB_S, acc[i] -= a*b one
# NMULACC_S.  Every fused form rounds exactly as the separate operations do.
_SCALAR_OPCODE = {"add": "ADD_S", "sub": "SUB_S", "mul": "MUL_S", "div": "DIV_S",
                  "neg": "NEG_S", "nmul": "NMUL_S", "mov": "MOV_S", "muladd": "MULADD_S",
                  "mulsub": "MULSUB_S"}
# (consumer, deferred operand's kind) -> the consumer's fused kind.  For add and
# mul the deferred operand may be either one; for sub only the subtrahend.
_ABSORB = {("add", "mul"): "muladd", ("add", "nmul"): "mulsub", ("add", "neg"): "sub",
           ("sub", "mul"): "mulsub", ("sub", "nmul"): "muladd", ("sub", "neg"): "add",
           ("mul", "neg"): "nmul",
           ("neg", "mul"): "nmul", ("neg", "nmul"): "mul", ("neg", "neg"): "mov"}
_ACCUMULATE = {None: "ACC_S", "neg": "NACC_S", "mul": "MULACC_S", "nmul": "NMULACC_S"}


def _scalar_arithmetic(lw: _Lowerer, ins: Instr) -> None:
    kind, refs = _scalar_expression(lw, ins)
    if kind in ("mul", "nmul", "neg") and _consumer_absorbs(lw, ins.out, kind):
        lw.pending[ins.out] = (kind, refs)
        consumer = lw.last_use[ins.out]
        for r in refs:  # the operands must live until the consumer runs
            buf = lw.buffers[r.buf]
            buf.last_use = max(buf.last_use, consumer)
        return
    o = lw.define(ins.out)
    lw.emit(_SCALAR_OPCODE[kind], (o, _F64), *((r, _F64) for r in refs))


def _scalar_expression(lw: _Lowerer, ins: Instr) -> tuple[str, tuple[Ref, ...]]:
    """The instruction as (kind, operands), absorbing a deferred operand."""
    if ins.prim == "square":
        a = lw.read(ins.ins[0], _F64)
        return "mul", (a, a)
    if ins.prim == "neg":
        (x,) = ins.ins
        if ("neg", lw.pending_kind(x)) in _ABSORB:
            kind, refs = lw.take_pending(x)
            return _ABSORB[("neg", kind)], refs
        return "neg", (lw.read(x, _F64),)
    a, b = ins.ins
    orders = {"add": ((a, b), (b, a)), "mul": ((a, b), (b, a)), "sub": ((a, b),)}
    for x, y in orders.get(ins.prim, ()):
        fused = _ABSORB.get((ins.prim, lw.pending_kind(y)))
        if fused is not None:
            _, refs = lw.take_pending(y)
            return fused, (lw.read(x, _F64), *refs)
    return ins.prim, (lw.read(a, _F64), lw.read(b, _F64))


def _consumer_absorbs(lw: _Lowerer, slot: int, kind: str) -> bool:
    if lw.uses[slot] != 1 or lw.last_use.get(slot, END) >= END:
        return False
    c = lw.kept[lw.last_use[slot]]
    out = lw.avals[c.out]
    if out.dtype != _F64:
        return False
    if c.prim == "scatter_add":
        return c.ins[2] == slot and lw.avals[c.ins[1]].size == 1
    if out.size != 1 or (c.prim, kind) not in _ABSORB:
        return False
    return c.prim != "sub" or c.ins[1] == slot


def _check_float(dtype: np.dtype, ins: Instr) -> None:
    if dtype.kind != "f" or dtype not in DTYPE_CODE:
        raise LoweringError(f"{ins.prim} producing {dtype} is not supported by the VM "
                            "(only float32/float64 arithmetic)")


def _is_exact_one(lw: _Lowerer, slot: int) -> bool:
    if slot not in lw.consts:
        return False
    value = lw.consts[slot]
    if _is_weak(value):
        return value == 1
    value = np.asarray(value)
    return value.dtype.kind == "f" and bool(np.all(value == 1))


def _binary(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    if ins.prim == "mul":  # x * 1 is x, bit for bit
        for one, other in ((a_slot, b_slot), (b_slot, a_slot)):
            if (_is_exact_one(lw, one) and other not in lw.consts
                    and lw.avals[other].dtype == dtype and lw.avals[other].shape == out.shape):
                lw.alias(ins.out, lw.place(other))
                return
    if dtype == _F64 and out.size == 1 and ins.prim in ("add", "sub", "mul", "div"):
        _scalar_arithmetic(lw, ins)
        return
    a, sa, na = _operand(lw, a_slot, dtype)
    b, sb, nb = _operand(lw, b_slot, dtype)
    o = lw.define(ins.out)
    fn = BINARY[_BINARY_PRIM[ins.prim]]
    if dtype == _F64 and out.size == 1:
        lw.emit("BINARY_S", fn, (o, dtype), (a, dtype), (b, dtype))
        return
    t = lw.dt(dtype)
    if na == out.size and nb == out.size and sa == sb:
        lw.emit("BINARY_VV", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    elif na == out.size and sa == out.shape and nb == 1:
        lw.emit("BINARY_VS", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    elif nb == out.size and sb == out.shape and na == 1:
        lw.emit("BINARY_SV", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    else:
        d = _broadcast_descriptor(lw, out.shape, [sa, sb])
        lw.emit("BINARY_B", fn, t, (o, dtype), (a, dtype), (b, dtype), d)


def _operand(lw: _Lowerer, slot: int, dtype: np.dtype) -> tuple[Ref, tuple[int, ...], int]:
    """(where, shape, size) of a binary operand; a constant array whose
    elements are all equal is read as one scalar (no array streamed)."""
    if slot in lw.consts and not _is_weak(lw.consts[slot]):
        value = np.asarray(lw.consts[slot])
        if value.size > 1 and value.dtype.kind == "f" and bitwise_uniform(value):
            return lw.const_ref(np.asarray(value.flat[0], dtype=dtype)), (), 1
    aval = lw.avals[slot]
    return lw.read(slot, dtype), aval.shape, aval.size


def _broadcast_descriptor(lw: _Lowerer, out_shape: tuple[int, ...],
                          shapes: list[tuple[int, ...]]) -> int:
    shape, strides = _simplify(out_shape, [_broadcast_strides(s, out_shape) for s in shapes])
    return lw.descriptor([len(shape), *shape, *(x for s in strides for x in s)])


def _compare_dtype(lw: _Lowerer, slots: tuple[int, ...]) -> np.dtype:
    strong = [lw.avals[s].dtype for s in slots
              if not (s in lw.consts and _is_weak(lw.consts[s]))]
    dtype = np.result_type(*strong) if strong else _F64
    return dtype if dtype.kind == "f" else _F64


def _compare(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    dtype = _compare_dtype(lw, ins.ins)
    a, b = lw.read(a_slot, dtype), lw.read(b_slot, dtype)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, lw.avals[ins.out].shape,
                              [lw.avals[a_slot].shape, lw.avals[b_slot].shape])
    lw.emit("COMPARE_B", COMPARE[ins.prim], lw.dt(dtype), (o, _BOOL), (a, dtype), (b, dtype), d)


def _logic(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    a, b = lw.read(a_slot, _BOOL), lw.read(b_slot, _BOOL)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, lw.avals[ins.out].shape,
                              [lw.avals[a_slot].shape, lw.avals[b_slot].shape])
    lw.emit("LOGIC_B", LOGIC[ins.prim], (o, _BOOL), (a, _BOOL), (b, _BOOL), d)


def _logical_not(lw: _Lowerer, ins: Instr) -> None:
    a = lw.read(ins.ins[0], _BOOL)
    o = lw.define(ins.out)
    lw.emit("NOT_V", (o, _BOOL), (a, _BOOL), lw.avals[ins.out].size)


def _where(lw: _Lowerer, ins: Instr) -> None:
    c_slot, a_slot, b_slot = ins.ins
    out = lw.avals[ins.out]
    _check_dtype(out.dtype, ins.out)
    c, a, b = lw.read(c_slot, _BOOL), lw.read(a_slot, out.dtype), lw.read(b_slot, out.dtype)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, out.shape, [lw.avals[s].shape for s in ins.ins])
    lw.emit("WHERE_B", lw.dt(out.dtype), (o, out.dtype), (c, _BOOL), (a, out.dtype),
            (b, out.dtype), d)


def _alias_rule(lw: _Lowerer, ins: Instr) -> None:
    """reshape, stop_gradient: the same bytes under another name."""
    lw.alias(ins.out, lw.read(ins.ins[0]))


def _astype(lw: _Lowerer, ins: Instr) -> None:
    x, out = ins.ins[0], lw.avals[ins.out]
    _check_dtype(out.dtype, ins.out)
    if lw.avals[x].dtype == out.dtype or x in lw.consts:
        lw.alias(ins.out, lw.read(x, out.dtype))
        return
    a = lw.read(x)
    o = lw.define(ins.out)
    lw.emit("CAST_V", lw.dt(out.dtype), lw.dt(lw.avals[x].dtype), (o, out.dtype),
            (a, lw.avals[x].dtype), out.size)


def _reduce(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    params = ins.kwargs
    axes = set(params["axes"])
    out, xa = lw.avals[ins.out], lw.avals[x]
    _check_float(out.dtype, ins)
    a = lw.read(x, out.dtype)
    if xa.size == out.size and xa.size > 0:  # only unit axes are reduced
        lw.alias(ins.out, a)
        return
    o = lw.define(ins.out)
    kept_shape = tuple(1 if k in axes else d for k, d in enumerate(xa.shape))
    out_strides = [0 if k in axes else s
                   for k, s in enumerate(c_strides(kept_shape))]
    in_strides = c_strides(xa.shape)
    # Merge axes where both the (contiguous) input and the output are contiguous.
    shape, (_, so) = _simplify(xa.shape, [in_strides, out_strides])
    d = lw.descriptor([len(shape), *shape, *so, out.size])
    lw.emit("REDUCE_B", REDUCE[ins.prim], lw.dt(out.dtype), (o, out.dtype), (a, out.dtype), d)


def _cumsum(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    axis, reverse = ins.kwargs["axis"], ins.kwargs["reverse"]
    out = lw.avals[ins.out]
    _check_float(out.dtype, ins)
    shape = out.shape
    axis = axis % len(shape)
    a = lw.read(x, out.dtype)
    o = lw.define(ins.out)
    d = lw.descriptor([int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
                       int(np.prod(shape[axis + 1:], dtype=np.int64)), int(bool(reverse))])
    lw.emit("CUMSUM_B", lw.dt(out.dtype), (o, out.dtype), (a, out.dtype), d)


def _strided_copy(lw: _Lowerer, out_slot: int, a: Ref, start: int, shape: tuple[int, ...],
                  strides: list[int]) -> None:
    """out = a[start + j . strides], or an alias when that is a plain range."""
    dtype = lw.avals[out_slot].dtype
    sshape, (sstrides,) = _simplify(shape, [strides])
    if len(sshape) == 1 and sstrides[0] in (0, 1) and (sstrides[0] == 1 or sshape[0] == 1):
        lw.alias(out_slot, Ref(a.buf, a.offset + start * dtype.itemsize))
        return
    o = lw.define(out_slot)
    d = lw.descriptor([len(sshape), start, *sshape, *sstrides])
    lw.emit("STRIDED_B", lw.dt(dtype), (o, dtype), (a, dtype), d)


def _transpose(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    perm = ins.kwargs["perm"]
    own = c_strides(lw.avals[x].shape)
    _strided_copy(lw, ins.out, lw.read(x), 0, lw.avals[ins.out].shape, [own[p] for p in perm])


def _broadcast_to(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    out = lw.avals[ins.out]
    _strided_copy(lw, ins.out, lw.read(x), 0, out.shape,
                  _broadcast_strides(lw.avals[x].shape, out.shape))


def _take(lw: _Lowerer, ins: Instr) -> None:
    x, idx_slot = ins.ins
    xa = lw.avals[x]
    idx = _flat_indices(lw, idx_slot, xa.size)
    a = lw.read(x)
    flat = idx.ravel()
    if is_range(flat):
        lw.alias(ins.out, Ref(a.buf, a.offset + int(flat[0]) * xa.dtype.itemsize))
        return
    pattern = affine(idx)
    if pattern is not None:
        _strided_copy(lw, ins.out, a, pattern[0], idx.shape, pattern[1])
        return
    o = lw.define(ins.out)
    x_at = lw.indices(idx_slot, flat)
    lw.emit("GATHER_V", lw.dt(xa.dtype), (o, xa.dtype), (a, xa.dtype), xa.size, x_at, flat.size)


def _scatter(lw: _Lowerer, ins: Instr) -> None:
    x, idx_slot, v_slot = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_dtype(dtype, ins.out)
    adding = ins.prim == "scatter_add"
    if adding:
        _check_float(dtype, ins)
    flat = _flat_indices(lw, idx_slot, out.size).ravel()
    if lw.avals[v_slot].size != flat.size:
        raise LoweringError(f"{ins.prim}: {lw.avals[v_slot].size} values for {flat.size} indices")
    if flat.size == 1 and dtype == _F64:  # one element: a scalar move or accumulation
        kind = lw.pending_kind(v_slot) if adding else None
        refs = lw.take_pending(v_slot)[1] if kind else (lw.read(v_slot, dtype),)
        o = _updatable_copy(lw, ins, x, {r.buf for r in refs})
        at = Ref(o.buf, o.offset + int(flat[0]) * dtype.itemsize)
        lw.emit(_ACCUMULATE[kind] if adding else "MOV_S", (at, dtype), *((r, dtype) for r in refs))
        return
    v = lw.read(v_slot, dtype)
    o = _updatable_copy(lw, ins, x, {v.buf})
    if flat.size == 0:
        return
    n = flat.size
    if is_range(flat):
        at = Ref(o.buf, o.offset + int(flat[0]) * dtype.itemsize)
        if adding:
            lw.emit("BINARY_VV", BINARY["add"], lw.dt(dtype), (at, dtype), (at, dtype),
                    (v, dtype), n)
        else:
            lw.emit("COPY_V", lw.dt(dtype), (at, dtype), (v, dtype), n)
        return
    x_at = lw.indices(idx_slot, flat)
    lw.emit("SCATTER_ADD_V" if adding else "SCATTER_SET_V", lw.dt(dtype), (o, dtype), out.size,
            x_at, (v, dtype), n)


def _updatable_copy(lw: _Lowerer, ins: Instr, x: int, read_bufs: set[int]) -> Ref:
    """The buffer a scatter writes into: x's own when x dies here and the
    values written are not read from it (in place), else a fresh copy of x."""
    dtype = lw.avals[ins.out].dtype
    if x not in lw.consts and lw.avals[x].dtype == dtype:
        ref = lw.place(x)
        buf = lw.buffers[ref.buf]
        if not buf.const and buf.last_use <= lw.step and ref.buf not in read_bufs:
            lw.alias(ins.out, ref)
            return ref
    o = lw.define(ins.out)
    n = lw.avals[ins.out].size
    if x in lw.consts and all_zero_bits(lw.consts[x]):
        lw.emit("ZERO_V", lw.dt(dtype), (o, dtype), n)
    else:
        lw.emit("COPY_V", lw.dt(dtype), (o, dtype), (lw.read(x, dtype), dtype), n)
    return o


def _matmul(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = lw.operands(ins)
    ta, tb = lw.matmul_trans[id(ins)]
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    a, b = lw.read(a_slot, dtype), lw.read(b_slot, dtype)
    o = lw.define(ins.out)
    m, n = out.shape[-2], out.shape[-1]
    ashape = lw.avals[a_slot].shape
    k = ashape[-2] if ta else ashape[-1]
    batch = int(np.prod(out.shape[:-2], dtype=np.int64))
    d = lw.descriptor([batch, m, k, n, int(ta), int(tb)])
    lw.emit("MATMUL_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype), d)


def _solve(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    a, b = lw.read(a_slot, dtype), lw.read(b_slot, dtype)
    o = lw.define(ins.out)
    n, k = out.shape[-2], out.shape[-1]
    batch = int(np.prod(out.shape[:-2], dtype=np.int64))
    w = lw.temp((n * n + n * k) * dtype.itemsize)
    p = lw.temp(n * 4)
    lw.emit("SOLVE_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype),
            lw.descriptor([batch, n, k]), (w, dtype), (p, np.dtype(np.int32)))


def _slogdet(lw: _Lowerer, ins: Instr) -> None:
    (a_slot,) = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    a = lw.read(a_slot, dtype)
    o = lw.define(ins.out)
    n = lw.avals[a_slot].shape[-1]
    w = lw.temp(n * n * dtype.itemsize)
    p = lw.temp(n * 4)
    lw.emit("SLOGDET_B", 0 if ins.prim == "logabsdet" else 1, lw.dt(dtype), (o, dtype),
            (a, dtype), lw.descriptor([out.size, n]), (w, dtype), (p, np.dtype(np.int32)))


def _guard(lw: _Lowerer, ins: Instr) -> None:
    pred = lw.read(ins.ins[0], _BOOL)
    lw.emit("GUARD", (pred, _BOOL), int(bool(ins.kwargs["expected"])))
    # A run that gets past the guard has its output true.
    lw.alias(ins.out, lw.const_ref(np.ones(lw.avals[ins.out].shape, dtype=_BOOL)))


# primitive -> rule(lowerer, ins).  The function tables of opcodes.h name
# primitives (a name there that is not one fails here, at import).
_RULES: dict[Primitive, Any] = check_table({
    **{registry[name]: _unary for name in UNARY},
    **{registry[name]: _binary for name in _BINARY_PRIM},
    **{registry[name]: _compare for name in COMPARE},
    **{registry[name]: _logic for name in LOGIC},
    P.logical_not: _logical_not,
    P.where: _where,
    P.reshape: _alias_rule,
    P.stop_gradient: _alias_rule,
    P.astype: _astype,
    P.sum: _reduce, P.prod: _reduce, P.max: _reduce, P.min: _reduce,
    P.cumsum: _cumsum,
    P.transpose: _transpose,
    P.broadcast_to: _broadcast_to,
    P.take: _take,
    P.scatter_set: _scatter,
    P.scatter_add: _scatter,
    P.matmul: _matmul,
    P.solve: _solve,
    P.logabsdet: _slogdet,
    P.detsign: _slogdet,
    P.guard: _guard,
}, "lower._RULES")

# Builtin primitives the VM does not run, each with why: a compiled function
# whose tape holds one runs it as a host call (its NumPy implementation)
# between compiled segments (`backends.segmented`).
HOST_CALLS: dict[Primitive, str] = check_table({
    **NOT_COMPILED,
    P.real: "complex values only: the VM has no complex dtype",
    P.imag: "complex values only: the VM has no complex dtype",
    P.conj: "complex values only: the VM has no complex dtype",
    P.fft: "complex values only: the VM has no complex dtype",
}, "lower.HOST_CALLS")


def rule_of(ins: Instr) -> Any:
    """The lowering rule of ``ins``'s primitive; LoweringError if the VM has none."""
    rule = _RULES.get(registry[ins.prim])
    if rule is None:
        raise LoweringError(f"primitive {ins.prim!r} has no VM lowering")
    return rule


def lower(tape: Tape, fuse: bool = True) -> Program:
    """Lower a tape to a program for the VM; ``fuse=False`` keeps every
    elementwise instruction separate (no FUSED)."""
    for aval in tape.avals:
        if aval.dtype.kind == "c":
            raise LoweringError(f"dtype {aval.dtype}: the VM has no complex numbers")
    return _Lowerer(tape).run(fuse)


from .fuse import Fusion  # noqa: E402  (fuse.py uses this module's tables)
