"""Compiled segments with host calls between them.

A tape whose primitives a compiled backend mostly runs, but not all of them
(a special function, a decomposition), is cut at the instructions the
backend lacks: each maximal run of instructions it has becomes a sub-tape
built by that backend, and each instruction it lacks is a host call, its
NumPy implementation applied to the values the segments before it produced.
Nothing is traced again: the cut happens once, when the tape is built.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..primitives import special
from ..primitives.registry import Primitive, check_table, registry
from ..primitives.registry import prims as P
from ..tape import Instr, Tape
from .reference import RunsArgs


# Builtin primitives that neither compiled backend (the C VM, the Numba
# generator) computes, each with why: a compiled function whose tape holds one
# runs it as a host call between compiled segments.  Each backend's own table
# adds what only it lacks (`lower.HOST_CALLS`, `numba_backend.NOT_EMITTED`).
NOT_COMPILED: dict[Primitive, str] = check_table({
    **{registry[name]: "a special function (scipy.special): no compiled implementation"
       for name in sorted(special.ELEMENTWISE)},
    P.argsort: "sorting: no compiled code",
    P.argpartition: "sorting: no compiled code",
    P.take_along: "gathers by computed indices: no compiled code",
    P.scatter_add_along: "scatters by computed indices: no compiled code",
    P.interp: "a table search per element: no compiled code",
    P.interp_slope: "a table search per element: no compiled code",
    P.cumprod: "no compiled code (cumsum has some)",
    **{registry[name]: "a LAPACK decomposition or solver the compiled code does not call"
       for name in ("solve_triangular", "cholesky", "eigh", "eig", "svd", "qr", "pinv",
                    "sylvester", "sqrtm")},
}, "segmented.NOT_COMPILED")

def _scalar(value: Any) -> Any:
    """0-d values as NumPy scalars, the form Numba kernels take them in (the C
    VM copies from arrays)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


class _Native:
    """A run of instructions, compiled as a tape of its own."""

    def __init__(self, exe: Any, inputs: list[int], outputs: list[int], scalars: bool) -> None:
        self.exe, self.inputs, self.outputs = exe, inputs, outputs
        self.convert = _scalar if scalars else (lambda value: value)

    def run(self, env: dict[int, Any]) -> bool:
        convert = self.convert
        outs = self.exe.run([convert(env[s]) for s in self.inputs])
        if outs is None:  # a guard disagreed
            return False
        env.update(zip(self.outputs, outs))
        return True


class _Host:
    """One instruction run by its NumPy implementation."""

    def __init__(self, ins: Instr, tape: Tape) -> None:
        self.ins = ins
        self.impl = registry[ins.prim].impl
        self.params = ins.kwargs
        self.dtype = tape.avals[ins.out].dtype

    def run(self, env: dict[int, Any]) -> bool:
        with np.errstate(all="ignore"):
            value = self.impl(*(env[s] for s in self.ins.ins), **self.params)
        env[self.ins.out] = np.asarray(value, dtype=self.dtype)
        return True


def _runs(tape: Tape, native: frozenset[str]) -> list[tuple[bool, list[Instr]]]:
    """The instructions grouped into native runs and host calls, as few runs as
    the dependencies allow: an instruction's level counts the host calls on its
    longest chain of inputs, and each level's native instructions run as one
    segment before that level's host calls.  A host call that needs only the
    inputs (say gammaln(x) in the forward pass, and its derivative in the
    reverse one) so runs before every native instruction that does not need it,
    instead of cutting the tape where it was traced (where hundreds of forward
    values the reverse pass reads would cross the cut)."""
    available: dict[int, int] = {}  # slot -> first level its value is there
    levels: list[int] = []
    for ins in tape.instrs:
        level = max((available.get(s, 0) for s in ins.ins), default=0)
        levels.append(level)
        available[ins.out] = level + (ins.prim not in native)
    runs: list[tuple[bool, list[Instr]]] = []
    for level in range(max(levels, default=-1) + 1):
        here = [ins for ins, lv in zip(tape.instrs, levels) if lv == level]
        body = [ins for ins in here if ins.prim in native]
        if body:
            runs.append((True, body))
        runs.extend((False, [ins]) for ins in here if ins.prim not in native)
    return runs


def _sub_tape(tape: Tape, instrs: list[Instr], needed_after: set[int]) -> Tape:
    defined = {ins.out for ins in instrs}
    reads = [s for ins in instrs for s in ins.ins if s not in defined]
    inputs = list(dict.fromkeys(s for s in reads if s not in tape.consts))
    consts = {s: tape.consts[s] for s in reads if s in tape.consts}
    outputs = [ins.out for ins in instrs if ins.out in needed_after]
    return Tape(inputs=inputs, outputs=outputs, consts=consts, instrs=list(instrs),
                avals=list(tape.avals))


class Executable(RunsArgs):
    """``run(inputs)`` like every backend's: the outputs, or None when a guard fails."""

    def __init__(self, tape: Tape, backend: ModuleType, native: frozenset[str]) -> None:
        self.tape = tape
        runs = _runs(tape, native)
        # slots read after each run: the tape's outputs, then every later read
        needed = set(tape.outputs)
        needed_after: list[set[int]] = []
        for _, instrs in reversed(runs):
            needed_after.append(set(needed))
            needed.update(s for ins in instrs for s in ins.ins)
        needed_after.reverse()
        self.steps: list[Any] = []
        self.host_calls: list[str] = []
        for (here, instrs), after in zip(runs, needed_after):
            if here:
                sub = _sub_tape(tape, instrs, after)
                self.steps.append(_Native(backend.build(sub), sub.inputs, sub.outputs,
                                          scalars=backend.__name__.endswith("numba_backend")))
                continue
            for ins in instrs:
                self.steps.append(_Host(ins, tape))
                self.host_calls.append(ins.prim)

    def run(self, inputs: Sequence[Any]) -> list[np.ndarray] | None:
        env: dict[int, Any] = dict(zip(self.tape.inputs, inputs))
        env.update(self.tape.consts)
        for step in self.steps:
            if not step.run(env):
                return None
        return [np.asarray(env[s], dtype=self.tape.avals[s].dtype) for s in self.tape.outputs]

    def __str__(self) -> str:
        parts = []
        for step in self.steps:
            if isinstance(step, _Host):
                parts.append(f"host call: {step.ins.prim}")
            else:
                parts.append(str(step.exe))
        return "\n".join(parts)


def build(tape: Tape, backend: ModuleType, native: frozenset[str]) -> Executable:
    return Executable(tape, backend, native)
