"""One seed's product split in two: the part that does not depend on the seed,
run once per call, and the part that does, run once per seed.

A Hessian-vector product (forward over reverse) of f's tape carries f's values
and adjoints (the same for every seed) and their tangents (the seed's own).
Run one compiled call per seed (`derivatives.single`), each call computes the
shared part again; run side by side in one call (`derivatives.per_seed`), the
working set is the seeds' arrays together.  Split, the shared part is one
call returning the values the tangents read (the *residuals*), and each
seed's call reads them: partial evaluation of the transformed tape, known
(seed-free) against unknown, as JAX's ``linearize`` does.

Which shared values are passed rather than computed again per seed: a value
that costs about a read per element to compute again is recomputed in each
seed's call (cheap elementwise arithmetic, views and gathers of values
that are themselves recomputed or inputs): writing and reading it back costs
more.  A residual is every other shared value a seed's instruction reads:
what a reduction, a scatter (an adjoint's accumulation), a transcendental
function or anything else computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..core.registry import registry
from ..core.tape import Tape

#: primitive cost classes (`registry` ``cost``) recomputed per seed rather than
#: passed: a few instructions per element, or none
RECOMPUTED_COSTS = ("cheap", "view")
#: structural primitives recomputed per seed when their operands are: slices
#: and gathers of x or of cheap values cost a read per element either way
RECOMPUTED_STRUCTURAL = ("take", "reshape", "broadcast_to", "transpose")


@dataclass(frozen=True)
class Split:
    """The partition of a transformed tape whose last input is the seed."""

    #: known slots a seed's part reads, in slot order: the shared part's outputs
    residuals: tuple[int, ...]
    #: per instruction: replayed in the shared part (known) or in a seed's
    #: (unknown, or known and recomputed there)
    shared: tuple[bool, ...]
    per_seed: tuple[bool, ...]


def _recomputable(prim: str) -> bool:
    p = registry[prim]
    if p.effect is not None:
        return False
    return p.cost in RECOMPUTED_COSTS or prim in RECOMPUTED_STRUCTURAL


def partition(tape: Tape, out_slot: int) -> Split:
    """Split ``tape`` (its last input the seed) into the instructions that
    do not depend on the seed and those that do; ``out_slot`` is the product."""
    seed = tape.inputs[-1]
    unknown = {seed}
    available = set(tape.inputs) | set(tape.consts)  # in a seed's part without a residual
    recomputed: set[int] = set()
    guards = set()
    for ins in tape.instrs:
        if any(s in unknown for s in ins.ins):
            unknown.add(ins.out)
        elif registry[ins.prim].effect is not None:
            # a guard on shared values runs in both parts: each compiled part
            # then checks the branch it was traced on (a seed's part reads the
            # guarded values as residuals)
            guards.add(ins.out)
        elif _recomputable(ins.prim) and all(s in available for s in ins.ins):
            available.add(ins.out)
            recomputed.add(ins.out)
    needed = set()
    for ins in tape.instrs:
        if ins.out in unknown or ins.out in guards:
            needed.update(s for s in ins.ins if s not in unknown)
    needed.add(out_slot)
    # a recomputed value's own operands are available by construction; only
    # those a seed's instruction (or the result) reads that are not are passed
    residuals = tuple(sorted(s for s in needed if s not in unknown and s not in available))
    per_seed = tuple(ins.out in unknown or ins.out in recomputed or ins.out in guards
                     for ins in tape.instrs)
    shared = tuple(ins.out not in unknown for ins in tape.instrs)
    return Split(residuals, shared, per_seed)


def _run(tape: Tape, which: Sequence[bool], env: dict[int, Any]) -> dict[int, Any]:
    from ..core.tracer import bind
    env.update(tape.consts)
    for ins, run in zip(tape.instrs, which):
        if run:
            env[ins.out] = bind(registry[ins.prim], *(env[s] for s in ins.ins),
                                **dict(ins.params))
    return env


def shared_part(tape: Tape, split: Split, inputs: Sequence[Any]) -> tuple[Any, ...]:
    """The residuals, from the tape's inputs but the seed."""
    env = _run(tape, split.shared, dict(zip(tape.inputs[:-1], inputs)))
    return tuple(env[s] for s in split.residuals)


def seed_part(tape: Tape, split: Split, inputs: Sequence[Any], residuals: Sequence[Any],
              seed: Any, out_slot: int) -> Any:
    """The product with one seed, from the residuals of `shared_part`."""
    if len(residuals) != len(split.residuals):
        raise ValueError(f"expected {len(split.residuals)} residuals, got {len(residuals)}")
    env = dict(zip(tape.inputs[:-1], inputs))
    env[tape.inputs[-1]] = seed
    env.update(zip(split.residuals, residuals))
    return _run(tape, split.per_seed, env)[out_slot]
