"""What a loop's reverse step reads, for `loop_rules`: the carries one
step's VJP reads (the others, a loss summed along or a counter, need not be
recomputed for it), and the outer values a sweep's trace takes as inputs of
its own."""
from __future__ import annotations

from typing import Any, Sequence

from .core import pytree
from .core.tracer import Tracer, current_builder
from .loops import _Unroll, trace_body


def inside(values: Sequence[Any]) -> list[Any]:
    """``values`` (outer tracers or arrays) as tracers of the active trace
    (captured), so a sweep can ask for their derivatives.  A plain value
    (an eager gradient's closed-over operand) is captured as an outer tracer
    is, an input of its own: as a constant, two values equal on this call
    would share one slot, and each would get the derivative of both (so
    would two operands holding one object: each gets a slot of its own)."""
    builder = current_builder()
    out = []
    for v in values:
        if isinstance(v, Tracer):
            out.append(builder.tracer(builder.slot_of(v)))
            continue
        slot = builder._new_slot(v)
        builder.tape.inputs.append(slot)
        builder.captures.append(v)
        out.append(builder.tracer(slot))
    return out


def filled(c: Sequence[Any], keep: Sequence[int], fixed: dict[int, Any], n: int) -> list[Any]:
    """The full carry from the kept carries ``c`` (in ``keep``'s order) and
    the others' stand-ins ``fixed`` (outer values, captured)."""
    full: list[Any] = [None] * n
    for j, v in zip(keep, c):
        full[j] = v
    rest = sorted(fixed)
    for j, v in zip(rest, inside([fixed[j] for j in rest])):
        full[j] = v
    return full


def live_inputs(tape: Any, outputs: Any) -> set[int]:
    """The positions of ``tape``'s inputs that its outputs at positions
    ``outputs`` read, through its instructions."""
    live = {tape.outputs[o] for o in outputs}
    for ins in reversed(tape.instrs):
        if ins.out in live:
            live.update(ins.ins)
    return {k for k, slot in enumerate(tape.inputs) if slot in live}


def vjp_reads(sweep: Any, ct: Any, c: Sequence[Any], x: Sequence[Any], ct_y: Sequence[Any]
              ) -> list[int]:
    """The carries whose values a step's VJP (``sweep.step_back``, a
    `loop_rules._Sweep`'s) reads, and those their recomputation reads in
    turn (a loss carried along is read by neither: its cotangent passes
    through the step's sum unchanged), found on one step's VJP traced on
    these values."""
    nc = sweep.body.n_carry
    n_ct = len(ct[0]) + len(ct[1])

    def probe(cts: Any, per_step: Any) -> tuple[Any, Any]:
        (ct_c, ct_k), (c, x, ct_y) = cts, per_step
        new_c, new_k, ct_x = sweep.step_back(ct_c, ct_k, c, c, x, ct_y)
        return (new_c, new_k), ct_x
    cts, ct_tree = pytree.flatten(ct)
    per_step, x_tree = pytree.flatten((list(c), list(x), list(ct_y)))
    try:
        probe_body = trace_body(probe, cts, ct_tree, per_step, x_tree, "reverse mode")[0]
    except _Unroll:
        return list(range(nc))
    tape = probe_body.tape
    read = live_inputs(tape, range(len(tape.outputs)))
    need = {j for j in range(nc) if n_ct + j in read}
    while True:  # what the kept carries' recomputation reads
        more = {j for j in live_inputs(sweep.body.tape, sorted(need)) if j < nc} - need
        if not more:
            return sorted(need)
        need |= more
