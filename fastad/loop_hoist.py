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

from typing import Any, Callable, Sequence

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


def _stepwise(tape: Tape, steps: set[int], fixed: set[int]) -> list[int]:
    """The float results of transcendental elementwise instructions of
    ``tape`` computed from ``steps`` (inputs that change from step to step)
    and ``fixed`` inputs (and constants) through elementwise instructions
    alone, in tape order."""
    fixed = fixed | set(tape.consts)
    stepwise: set[int] = set()
    for ins in tape.instrs:
        if _movable(ins) and all(s in steps or s in fixed or s in stepwise for s in ins.ins) \
                and any(s in steps or s in stepwise for s in ins.ins):
            stepwise.add(ins.out)
    return [ins.out for ins in tape.instrs if ins.out in stepwise
            and registry[ins.prim].cost == "transcendental"
            and tape.avals[ins.out].dtype.kind == "f"]


_PLAIN = (bool, int, float, str, type(None), np.dtype, np.generic)


def _param_key(params: Any) -> Any:
    """``params`` as a key, or None when a value is not a plain one (an array
    prints in part: two would compare equal)."""
    def plain(v: Any) -> bool:
        return isinstance(v, _PLAIN) or isinstance(v, tuple) and all(plain(u) for u in v)
    return params if all(plain(v) for _, v in params) else None


def keys(tape: Tape, input_keys: Sequence[Any]) -> dict[int, Any]:
    """A key per slot of ``tape`` that two slots share only when they hold
    the same computation of inputs whose keys are equal (``input_keys``, one
    per input; None matches nothing): the same primitive, parameters and
    operands' keys, constants by value."""
    out: dict[int, Any] = {}
    for k, (slot, key) in enumerate(zip(tape.inputs, input_keys)):
        out[slot] = key if key is not None else ("input", id(tape), k)
    for slot, value in tape.consts.items():
        a = np.asarray(value)
        out[slot] = ("const", a.dtype.str, a.shape, a.tobytes()) if a.size <= 16 \
            else ("const", id(tape), slot)
    for ins in tape.instrs:
        params = _param_key(ins.params)
        out[ins.out] = (ins.prim, params, tuple(out.get(s) for s in ins.ins)) \
            if params is not None else ("instr", id(tape), ins.out)
    return out


def residuals(body: LoopBody, const_keys: Sequence[Any]) -> list[tuple[int, Any]]:
    """(slot, key) of the body's transcendental functions of its carried
    and per-step inputs: what reverse mode over its stored states would
    compute again, and a loop storing its states can store too.  Carried
    input j has key ``("carry", j)``, per-step input j ``("x", j)``,
    closed-over input m ``const_keys[m]``."""
    tape, nc, nx = body.tape, body.n_carry, body.n_xs
    if body.is_while:
        return []
    named = [("carry", j) for j in range(nc)] + [("x", j) for j in range(nx)] \
        + list(const_keys)
    by_slot = keys(tape, named)
    return [(slot, by_slot[slot]) for slot in _stepwise(tape, set(tape.inputs[:nc + nx]),
                                                         set(tape.inputs[nc + nx:]))]


def split(body: LoopBody, x_keys: Sequence[Any] = (), closed_keys: Sequence[Any] = (),
          known: Any = ()) -> tuple[Tape, list[Any], LoopBody] | None:
    """(the tape from a step's per-step inputs and closed-over values to the
    values moved out that are not ``known``, those values' keys in the body's
    order of moved values (None: computed by that tape, in turn), the body
    reading the moved values as per-step inputs after its own), or None
    when there is nothing to move.  ``x_keys`` and ``closed_keys``: the
    per-step and closed-over inputs' keys (`keys`), which ``known`` values'
    keys are written in."""
    tape, nc, nx = body.tape, body.n_carry, body.n_xs
    if body.is_while or nx == 0:
        return None
    moved = _stepwise(tape, set(tape.inputs[nc:nc + nx]), set(tape.inputs[nc + nx:]))
    if not moved:
        return None
    taken: list[Any] = [None] * len(moved)
    if known:
        n_closed = len(tape.inputs) - nc - nx
        named = [None] * nc + list(x_keys)[:nx] + [None] * (nx - len(x_keys)) \
            + list(closed_keys)[:n_closed] + [None] * (n_closed - len(closed_keys))
        by_slot = keys(tape, named)
        taken = [by_slot[slot] if by_slot[slot] in known else None for slot in moved]
    computed = [slot for slot, key in zip(moved, taken) if key is None]
    # the computed values' tape: what they read, in tape order
    need, by_out = set(computed), {ins.out: ins for ins in tape.instrs}
    for ins in reversed(tape.instrs):
        if ins.out in need:
            need.update(s for s in ins.ins if s in by_out)
    pre = Tape(list(tape.inputs[nc:]), computed, dict(tape.consts),
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
    return pre, taken, LoopBody(rest, nc, nx + len(moved), counted=body.counted)


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, length: int,
         reverse: bool = False, x_keys: Sequence[Any] = (),
         known: dict[Any, Any] | None = None, const_keys: dict[int, Any] | None = None
         ) -> tuple[Any, Any]:
    """`fastad.scan(f, init, xs, length=length, reverse=reverse)` with the
    body's transcendental functions of its per-step inputs computed before
    the loop (`split`), or read from ``known`` (key -> the values stacked
    in the order of xs), keys written in ``x_keys`` (one per leaf of xs) and
    ``const_keys`` (id of a closed-over value -> its key)."""
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
    known = known or {}
    closed_keys = [(const_keys or {}).get(id(v)) for v in closed]
    parts = split(body, x_keys, closed_keys, known)
    if parts is not None:
        pre, taken, body = parts
        n_closed = len(closed)

        def per_step(*args: Any) -> tuple[Any, ...]:
            return tuple(replay(pre, list(args)))
        computed: list[Any] = []
        if pre.outputs:
            # (as the loop's own steps run: an overflow in a step a mask
            # then drops warns of nothing)
            with np.errstate(all="ignore"):
                computed = list(vmap(per_step, in_axes=(0,) * len(stepped) + (None,) * n_closed)(
                    *stepped, *closed))
        given = [known[key] for key in taken if key is not None]
        if reverse:
            given = _flip(given)
        given.reverse()
        computed.reverse()
        stepped = list(stepped) + [given.pop() if key is not None else computed.pop()
                                   for key in taken]
    final, ys = recorded(body, length, carry_leaves, stepped, closed)
    if reverse:
        ys = _flip(ys)
    return pytree.unflatten(carry_tree, final), pytree.unflatten(y_tree, ys)
