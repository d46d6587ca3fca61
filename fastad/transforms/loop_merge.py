"""A forward loop read from the loop that stores its states.

Reverse mode of a fixed-count loop whose states fit `loop_rules.STORE_BYTES`
stores every state by a loop of the body's `LoopBody.storing` form: the same
operands and count as the forward loop, whose packed result begins with
the forward loop's (the final carry, the per-step outputs) and goes on with
the state before each step.  Both would run the body T times; this pass
moves the storing loop to the forward loop's place and makes the forward
loop's result its first elements (a `take`), so the forward steps run once,
as in a hand-written adjoint that stores its states while going forward.
Values are unchanged: the same body on the same operands, in the same order.
"""
from __future__ import annotations

import numpy as np

from ..core.tape import Aval, Instr, Tape


def merge_stored_states(tape: Tape) -> Tape:
    """``tape`` with each loop that a storing loop of the same operands and
    count extends (`LoopBody.extends`) read from that loop's result."""
    first: dict[tuple, int] = {}  # (body, operands, count) -> the first such loop
    for k, ins in enumerate(tape.instrs):
        if ins.prim == "loop":
            kw = ins.kwargs
            first.setdefault((id(kw["body"]), ins.ins, kw["length"]), k)
    moves: dict[int, int] = {}  # the forward loop's position -> the storing loop's
    for k, ins in enumerate(tape.instrs):
        if ins.prim != "loop" or ins.kwargs["body"].extends is None:
            continue
        kw = ins.kwargs
        a = first.get((id(kw["body"].extends), ins.ins, kw["length"]))
        if a is not None and a < k and a not in moves:
            moves[a] = k
    if not moves:
        return tape
    avals, consts = list(tape.avals), dict(tape.consts)
    moved = set(moves.values())
    instrs: list[Instr] = []
    for k, ins in enumerate(tape.instrs):
        if k in moved:
            continue
        if k not in moves:
            instrs.append(ins)
            continue
        # a chain: the storing loop may itself be extended (reverse mode of
        # reverse mode stores the storing loop's states): the last one runs,
        # and each before it is its first elements
        chain = [k]
        while chain[-1] in moves:
            chain.append(moves[chain[-1]])
        storing = tape.instrs[chain[-1]]
        instrs.append(storing)  # (its operands are the forward loop's: defined here)
        for at in chain[:-1]:
            out = tape.instrs[at].out
            index = np.arange(avals[out].size, dtype=np.int64)
            avals.append(Aval(index.shape, index.dtype))
            consts[len(avals) - 1] = index
            instrs.append(Instr("take", out, (storing.out, len(avals) - 1), (), ins.line))
    return Tape(list(tape.inputs), list(tape.outputs), consts, instrs, avals)
