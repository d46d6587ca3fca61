"""The NumPy reference interpreter: slow, simple, trusted.

Runs a tape instruction by instruction with each primitive's NumPy
implementation.  The compiled backends are tested against it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.registry import registry
from ..core.tape import Tape, where


def evaluate(tape: Tape, inputs: Sequence[Any], check_guards: bool = True) -> list[Any] | None:
    """Values of ``tape.outputs``; None if a guard disagrees with its recording."""
    env: dict[int, Any] = dict(zip(tape.inputs, inputs))
    env.update(tape.consts)
    with np.errstate(all="ignore"):
        for ins in tape.instrs:
            prim = registry[ins.prim]
            value = prim.impl(*(env[s] for s in ins.ins), **dict(ins.params))
            if prim.effect == "guard" and check_guards and not value:
                return None
            env[ins.out] = value
    return [np.asarray(env[s], dtype=tape.avals[s].dtype) for s in tape.outputs]


def first_nonfinite(tape: Tape, inputs: Sequence[Any]) -> str | None:
    """Describe the first instruction whose result has a NaN or inf that its
    operands did not have, or None if there is none."""
    env: dict[int, Any] = dict(zip(tape.inputs, inputs))
    env.update(tape.consts)
    with np.errstate(all="ignore"):
        for ins in tape.instrs:
            args = [env[s] for s in ins.ins]
            value = registry[ins.prim].impl(*args, **dict(ins.params))
            env[ins.out] = value
            if _nonfinite(value) and not any(_nonfinite(a) for a in args):
                shown = ", ".join(np.array2string(np.asarray(a), threshold=8, precision=6)
                                  for a in args)
                return (f"{ins.prim} at {where(ins.line)} produced "
                        f"{np.array2string(np.asarray(value), threshold=8)} from ({shown})")
    return None


def _nonfinite(value: Any) -> bool:
    arr = np.asarray(value)
    return arr.dtype.kind == "f" and not bool(np.all(np.isfinite(arr)))


class RunsArgs:
    """`run_args(args, which)` on top of ``run`` for an executable with a
    ``tape`` (the C VM's own is in `_vm.Executable.run_args`): output
    ``which`` (all, as a list, for -1), 0-d outputs as NumPy scalars, or None
    when ``args`` are not exactly the arrays the tape takes or a guard fails."""

    tape: Tape

    def run_args(self, args: tuple[Any, ...], which: int) -> Any:
        if len(args) != len(self.tape.inputs):
            return None
        for x, s in zip(args, self.tape.inputs):
            aval = self.tape.avals[s]
            if type(x) is not np.ndarray or x.shape != tuple(aval.shape) or x.dtype != aval.dtype:
                return None
        outs = self.run(args)
        if outs is None:
            return None
        outs = [v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v for v in outs]
        return outs if which < 0 else outs[which]


class Executable(RunsArgs):
    """The reference backend's compiled form of a tape: the tape itself."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        return evaluate(self.tape, inputs)

    def __str__(self) -> str:
        return str(self.tape)


def build(tape: Tape) -> Executable:
    return Executable(tape)
