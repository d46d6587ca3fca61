"""The program the C VM runs, as lowering hands it over: `Program` and its listing.

A program is a flat int32 instruction stream (format and opcodes in
``csrc/opcodes.h``, read by `vm_header`), an int64 metadata pool of
descriptors, an int64 index pool for gathers and scatters, the bytes of the
constants and the arena's size, with the byte offsets of its inputs and
outputs.  This module holds that container and its human-readable listing
(``str(program)``, one instruction a line, FUSED micro-programs step by
step), apart from how a tape becomes one (`lower`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np

from ..core.errors import TapeError
from .vm_header import NARGS, OP, TABLES


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
    # bytes past the arena addressed by inputs read in place: an input port
    # at or past arena_bytes is bound to the caller's array (csrc/vm.h)
    bound_bytes: int = 0

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
            where = " (read in place)" if p.offset >= self.arena_bytes else ""
            lines.append(f"  input {i}: {p.dtype.name}{list(p.shape)} at byte {p.offset}{where}")
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
            "WHERE_B": 1 + 4 * nd, "STRIDED_B": 2 + 2 * nd, "STRIDED_SET_B": 2 + 2 * nd,
            "STRIDED_ADD_B": 2 + 2 * nd, "REDUCE_B": 2 + 2 * nd,
            "SCAN_B": 4, "MATMUL_B": 7, "SOLVE_B": 3, "SLOGDET_B": 2,
            "CHOLESKY_B": 2, "TRSOLVE_B": 5, "EIGH_B": 3, "TRMM_B": 5, "SVD_B": 4,
            "PINV_B": 4, "QR_B": 4,
            "LOOP": 6 + 4 * int(sum(meta[d + 1:d + 4]))}.get(opname, 0)


def _walk(code: np.ndarray) -> Iterator[int]:
    pc = 0
    while pc < len(code):
        yield pc
        pc += 1 + NARGS[code[pc]]
