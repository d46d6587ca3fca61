"""What a tape would cost replayed on a batch, estimated from its avals alone.

`jacobian(mode="auto")` compares forward and reverse mode by this estimate
of their batched tapes instead of by pass counts alone: the two transformed
tapes differ in which values carry the batch (tangents of every active value
against cotangents), in which matrix products run on it, and in how much of
the work is on the seeds alone.  Work on the seeds and constants alone
depends on no input: when the batched tape is traced into a compiled
function it runs once, at trace time (`batch_replay` evaluates instructions
without traced operands), so ``folded=True`` counts it as free.

The model charges every instruction that runs a fixed cost plus its work:
matrix products per multiply-add, elementwise instructions per element (the
transcendental ones more), everything else (copies, gathers, sums) per
element moved, times the batch size when an operand is batched.  The
weights are seconds measured on the C VM and on NumPy
(benchmarks/jacobian_sweep.py, benchmarks/README.md); only their ratios
matter for a choice between two tapes.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from ..core.registry import registry
from ..core.tape import Instr, Tape


class Weights(NamedTuple):
    instruction: float  # fixed cost of running one instruction
    multiply_add: float  # per multiply-add of a matrix product of unbatched matrices
    batched_multiply_add: float  # per multiply-add of a product of two batched operands
    element: float  # per element of a cheap elementwise instruction
    transcendental: float  # per element of exp, sin, tanh, ...
    moved: float  # per element of any other instruction


#: a compiled tape: the VM's dispatch per instruction, BLAS products
COMPILED = Weights(instruction=0.1e-6, multiply_add=0.05e-9, batched_multiply_add=0.5e-9,
                   element=0.75e-9, transcendental=10e-9, moved=1e-9)
#: eager evaluation: every instruction is recorded, transformed and run by NumPy
#: (fresh arrays for every result, so elements cost more)
EAGER = Weights(instruction=30e-6, multiply_add=0.1e-9, batched_multiply_add=0.5e-9,
                element=3e-9, transcendental=10e-9, moved=3e-9)



def _work(tape: Tape, ins: Instr, both_batched: bool, w: Weights) -> float:
    """By the primitive's cost class (`Primitive.cost`)."""
    out = tape.avals[ins.out]
    cost = registry[ins.prim].cost
    if cost == "view":  # no element is touched
        return 0.0
    if cost == "matmul":
        depth = tape.avals[ins.ins[0]].shape[-1] if tape.avals[ins.ins[0]].shape else 1
        rate = w.batched_multiply_add if both_batched else w.multiply_add
        return out.size * depth * rate
    if cost == "cheap":
        return out.size * w.element
    if cost == "transcendental":
        return out.size * w.transcendental
    return max([out.size] + [tape.avals[s].size for s in ins.ins]) * w.moved


def batched_cost(tape: Tape, batched: Sequence[bool], dynamic: Sequence[bool], size: int,
                 folded: bool, weights: Weights, wanted: Sequence[int] | None = None) -> float:
    """Estimated seconds of replaying ``tape`` once on a batch of ``size``.

    ``batched[i]`` / ``dynamic[i]``: whether input i carries the batch, and
    whether it varies between calls (else it is a constant of the batched
    tape, as the seeds are).  ``folded``: work on constants alone is free
    (compiled).  ``wanted``: the output positions used; instructions only
    the others need are dropped, as the optimizer drops them (default all).
    """
    live = _live(tape, wanted)
    is_batched = dict(zip(tape.inputs, batched))
    is_dynamic = dict(zip(tape.inputs, dynamic))
    total = 0.0
    for ins in tape.instrs:
        flags = [is_batched.get(s, False) for s in ins.ins]
        b = any(flags)
        d = any(is_dynamic.get(s, False) for s in ins.ins)
        is_batched[ins.out], is_dynamic[ins.out] = b, d
        if ins.out not in live or (folded and not d):
            continue
        work = _work(tape, ins, len(flags) > 1 and all(flags), weights)
        total += weights.instruction + work * (size if b else 1)
    return total


def _live(tape: Tape, wanted: Sequence[int] | None) -> set[int]:
    outputs = tape.outputs if wanted is None else [tape.outputs[i] for i in wanted]
    live = set(outputs)
    for ins in reversed(tape.instrs):
        if ins.out in live:
            live.update(ins.ins)
    return live

