"""Forward mode: tangents carried alongside primals, emitting instructions.

    for node in topological order:
        v_dot = sum(jvp_k(v_dot_k, node, *inputs) for each input k with a tangent)

Like the reverse sweep, it runs inside the active trace, so tangents are
instructions too and compose with every other transformation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..core.registry import registry
from ..primitives.numpy_proxy import fnp
from ..core.tracer import Builder, Tracer

if TYPE_CHECKING:
    from ..core.tape import Tape


def _sub_joint(ts: list[Any], ans: Any, x: Any, y: Any) -> Any:
    return ts[0] - ts[1]


def _scatter_joint(prim: str) -> Any:
    def rule(ts: list[Any], ans: Any, x: Any, idx: Any, v: Any) -> Any:
        return getattr(fnp, prim)(ts[0], idx, ts[2])
    return rule


# Linear primitives whose tangent, when several arguments carry one, is the
# primitive applied to the tangents: one instruction where the per-argument
# rules would build a part per argument and add them (the adjoint's
# scatter_add chains, differentiated again in forward-over-reverse, stay
# one in-place chain instead of a sum of scatters into zero arrays).
JOINT_JVPS = {"sub": _sub_joint, "scatter_add": _scatter_joint("scatter_add"),
              "scatter_set": _scatter_joint("scatter_set")}


def forward(builder: Builder, stop: int, wrt: Sequence[Tracer], tangents: Sequence[Any],
            outputs: Sequence[Any]) -> list[Any]:
    """Record the tangent sweep over ``builder``'s first ``stop`` instructions;
    the tangent of each of ``outputs`` (zeros where it does not depend on wrt)."""
    tangent: dict[int, Any] = {t.slot: dt for t, dt in zip(wrt, tangents)}
    consts = builder.tape.consts
    instrs = builder.tape.instrs
    # only the instructions the outputs read: a value recorded and then not
    # used (det's chain through log|det| where its test chose the adjugate at
    # a singular matrix) would otherwise be differentiated, and could fail
    live = {out.slot for out in outputs if isinstance(out, Tracer) and out.builder is builder}
    needed = [False] * stop
    for k in range(stop - 1, -1, -1):
        if instrs[k].out in live:
            needed[k] = True
            live.update(instrs[k].ins)
    for k in range(stop):
        ins = instrs[k]
        if not needed[k] or not any(s in tangent for s in ins.ins):
            continue
        prim = registry[ins.prim]
        if not prim.differentiable:
            continue
        params = dict(ins.params)
        builder.line_override = ins.line  # derivative code belongs to the user's line
        args = [consts[s] if s in consts else builder.tracer(s) for s in ins.ins]
        ans = builder.tracer(ins.out)
        total = None
        joint = JOINT_JVPS.get(ins.prim)
        with_tangent = [tangent.get(slot) if argnum != 1 or ins.prim == "sub" else None
                        for argnum, slot in enumerate(ins.ins)]
        joint_all = prim.joint_jvp  # one rule for every operand (a loop)
        if joint_all is not None:
            total = joint_all([tangent.get(s) for s in ins.ins], ans, *args, **params)
        elif joint is not None and with_tangent[0] is not None and with_tangent[-1] is not None:
            total = joint(with_tangent, ans, *args, **params)
            if fnp.shape(total) != ans.shape:
                total = fnp.broadcast_to(total, ans.shape)
        for argnum, slot in enumerate(ins.ins if total is None else ()):
            if slot not in tangent:
                continue
            rule = prim.jvp_rule(argnum)
            if rule is None:
                continue
            part = rule(tangent[slot], ans, *args, **params)
            if fnp.shape(part) != ans.shape:
                part = fnp.broadcast_to(part, ans.shape)
            total = part if total is None else total + part
        if total is not None:
            if fnp.result_dtype(total) != ans.dtype:
                total = fnp.astype(total, ans.dtype)
            tangent[ins.out] = total
    builder.line_override = None
    result = []
    for out in outputs:
        if isinstance(out, Tracer) and out.builder is builder and out.slot in tangent:
            result.append(tangent[out.slot])
        else:
            result.append(fnp.zeros_for(out))
    return result


def jvp_tape(tape: "Tape", wrt: Sequence[int], examples: Sequence[Any]) -> "Tape":
    """The forward transform as tape -> tape.

    The result takes ``tape.inputs`` followed by one tangent per input position
    in ``wrt``, and returns ``tape.outputs`` followed by their tangents.
    ``examples`` are input values to re-record with.
    """
    from ..core.tracer import recording, replay

    with recording() as builder:
        inputs = [builder.new_input(v) for v in examples]
        outputs = replay(tape, inputs)
        stop = len(builder.tape.instrs)
        tangents = [builder.new_input(fnp.zeros_for(inputs[i])) for i in wrt]
        out_tangents = forward(builder, stop, [inputs[i] for i in wrt], tangents, outputs)
        builder.tape.outputs = [builder.slot_of(v) for v in list(outputs) + out_tangents]
    return builder.tape
