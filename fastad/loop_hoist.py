"""A scan whose body calls transcendental functions of its per-step inputs
alone computes them for every step at once, before the loop.

Reverse mode runs the body's VJP back over the stored states, which are the
reverse loop's per-step inputs: the ``sin(theta)`` and ``cos(theta)`` of a
pendulum's step are functions of the stored ``theta`` and nothing carried.
Each is a call into NumPy's loop for one element per step (for the
interpreter's bits), several times the cost of the same loop over all the
steps' elements (a native step gives up its registers at each call).  So
`scan` here traces the body once, finds the transcendental elementwise
instructions that depend only on per-step inputs and closed-over values
through elementwise instructions, computes them with `vmap` over the stacked
inputs (one instruction over T elements each), and runs the loop of the body
that reads them as further per-step inputs.  NumPy's loops compute each
element on its own, so every value is the one the step computed; products,
sums and other instructions whose vectorized form could round otherwise are
never moved.  A body with nothing to move is the loop `fastad.scan` records.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .core import pytree
from .core.registry import registry
from .core.tape import Tape
from .core.tracer import replay
from .loops import (_Unroll, _flip, _integers_as_data, _traced, recorded, run_time_form,
                    trace_body)
from .loops import scan as plain_scan
from .primitives.loops import LoopBody


def _movable(ins: Any) -> bool:
    prim = registry.get(ins.prim)
    return prim is not None and prim.elementwise and prim.effect is None


def split(body: LoopBody) -> tuple[Tape, LoopBody] | None:
    """(the tape from a step's per-step inputs and closed-over values to the
    values moved out, the body reading them as per-step inputs after its
    own), or None when there is nothing to move."""
    tape, nc, nx = body.tape, body.n_carry, body.n_xs
    if body.is_while or nx == 0:
        return None
    steps = set(tape.inputs[nc:nc + nx])
    fixed = set(tape.inputs[nc + nx:]) | set(tape.consts)
    stepwise: set[int] = set()  # computed elementwise from per-step and fixed values alone
    for ins in tape.instrs:
        if _movable(ins) and all(s in steps or s in fixed or s in stepwise for s in ins.ins) \
                and any(s in steps or s in stepwise for s in ins.ins):
            stepwise.add(ins.out)
    moved = [ins.out for ins in tape.instrs if ins.out in stepwise
             and registry[ins.prim].cost == "transcendental"
             and tape.avals[ins.out].dtype.kind == "f"]
    if not moved:
        return None
    # the moved values' tape: what they read, in tape order
    need, by_out = set(moved), {ins.out: ins for ins in tape.instrs}
    for ins in reversed(tape.instrs):
        if ins.out in need:
            need.update(s for s in ins.ins if s in by_out)
    pre = Tape(list(tape.inputs[nc:]), list(moved), dict(tape.consts),
               [ins for ins in tape.instrs if ins.out in need], list(tape.avals))
    # the body without them, cut to what its outputs still read
    gone = set(moved)
    live = set(tape.outputs)
    kept = []
    for ins in reversed(tape.instrs):
        if ins.out in live and ins.out not in gone:
            kept.append(ins)
            live.update(ins.ins)
    kept.reverse()
    inputs = list(tape.inputs[:nc + nx]) + list(moved) + list(tape.inputs[nc + nx:])
    rest = Tape(inputs, list(tape.outputs), dict(tape.consts), kept, list(tape.avals))
    return pre, LoopBody(rest, nc, nx + len(moved), counted=body.counted)


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, length: int,
         reverse: bool = False) -> tuple[Any, Any]:
    """`fastad.scan(f, init, xs, length=length, reverse=reverse)` with the
    body's transcendental functions of its per-step inputs computed before
    the loop (`split`)."""
    from .vectorizing import vmap
    carry_leaves, carry_tree = pytree.flatten(init)
    x_leaves, x_tree = pytree.flatten(xs)
    # (not where vmap records: its padded loops' masked steps past their end
    # may overflow, which a batched replay would then compute outside a loop)
    if not length or not x_leaves or not run_time_form():
        return plain_scan(f, init, xs, length=length, reverse=reverse)
    if reverse:
        x_leaves = _flip(x_leaves)
    stepped, kinds = _integers_as_data(x_leaves)
    if any(k is not None for k in kinds):
        return plain_scan(f, init, xs, length=length, reverse=reverse)
    try:
        body, closed, y_tree, _ = _traced(lambda: trace_body(
            f, carry_leaves, carry_tree, [x[0] for x in stepped], x_tree, "fastad.scan"))
    except _Unroll:
        return plain_scan(f, init, xs, length=length, reverse=reverse)
    parts = split(body)
    if parts is not None:
        pre, body = parts
        n_closed = len(closed)

        def per_step(*args: Any) -> tuple[Any, ...]:
            return tuple(replay(pre, list(args)))
        # (as the loop's own steps run: an overflow in a step a mask then
        # drops, as a padded while loop's past its end, warns of nothing)
        with np.errstate(all="ignore"):
            moved = vmap(per_step, in_axes=(0,) * len(stepped) + (None,) * n_closed)(
                *stepped, *closed)
        stepped = list(stepped) + list(moved)
    final, ys = recorded(body, length, carry_leaves, stepped, closed)
    if reverse:
        ys = _flip(ys)
    return pytree.unflatten(carry_tree, final), pytree.unflatten(y_tree, ys)
