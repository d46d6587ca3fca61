"""Reverse mode: the seeds' ``gradient(out)`` algorithm, emitting instructions.

    node_to_grad = {out: [seed]}
    for node in reverse topological order:
        v_bar = sum(node_to_grad[node])
        for each input k of node:
            node_to_grad[k].append(vjp_k(v_bar, node, *inputs))

The sweep runs while the builder that recorded the forward instructions is
still active, so every VJP rule it calls is itself recorded: the adjoint is a
graph of its own, and differentiating it again gives higher derivatives.
Partial adjoints are summed as they arrive rather than kept in lists.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..core.registry import registry
from ..primitives.numpy_proxy import fnp
from ..core import tracer as tracer_module
from ..core.tracer import Builder, Tracer, donate

if TYPE_CHECKING:
    from ..core.tape import Tape


def active_slots(builder: Builder, wrt: Sequence[int], stop: int) -> set[int]:
    """Slots whose value depends differentiably on the ``wrt`` slots."""
    active = set(wrt)
    for ins in builder.tape.instrs[:stop]:
        if not active.isdisjoint(ins.ins) and registry[ins.prim].differentiable:
            active.add(ins.out)
    return active


def backward(builder: Builder, stop: int, outputs: Sequence[Tracer], cotangents: Sequence[Any],
             wrt: Sequence[Tracer], strong_zero: bool = False, once: bool = False,
             plain: bool = False) -> list[Any]:
    """Record the adjoint sweep over ``builder``'s first ``stop`` instructions.

    Returns the cotangent of each ``wrt`` tracer (zeros where it does not
    influence the outputs).  With ``strong_zero``, a zero cotangent times an
    infinite or NaN partial derivative is zero (not NaN) in elementwise
    operations: then ``where(x > 0, sqrt(x), 0)`` has gradient 0, not NaN,
    at x < 0, at the cost of one select per elementwise adjoint.

    ``once``: nothing reads the trace's values after this sweep but the
    tracers it returns (an eager gradient's), so the sweep lets go of each
    forward value once the instruction that defined it is processed (its
    readers came first) and of each large value of its own that no tracer
    holds: an eager gradient needs about the memory of autograd's, whose
    VJP closures keep what they read.  A releasing trace does the same.

    ``plain`` (with ``once``): nothing traces the results further either (a
    first-order eager gradient), so the rules compute on the values and
    record nothing, as autograd's do: a third of the tracing work.
    """
    if once and not builder.release:
        builder.release_exact = True
        # plain: it records nothing, so no trace is active while it runs (its
        # builder taken off the stack here, not by a context object: an eager
        # gradient's fixed cost)
        stack = tracer_module._traces.stack
        taken = plain and bool(stack) and stack[-1] is builder
        if taken:
            stack.pop()
        try:
            return backward(builder, stop, outputs, cotangents, wrt, strong_zero, plain=plain)
        finally:
            if taken:
                stack.append(builder)
            builder.release_exact = False
    wrt_slots = [t.slot for t in wrt]
    active = active_slots(builder, wrt_slots, stop)
    releasing = builder.release or builder.release_exact
    if builder.release or builder.drop_unread:  # forward values the user's code dropped
        builder.release_unreferenced()
    recorded = len(builder.tape.instrs)
    adjoint: dict[int, Any] = {}
    for out, ct in zip(outputs, cotangents):
        if isinstance(out, Tracer) and out.builder is builder and out.slot in active:
            _accumulate(adjoint, out.slot, ct)

    instrs, consts, values = builder.tape.instrs, builder.tape.consts, builder.values
    avals = builder.tape.avals
    large = tracer_module.RELEASE_BYTES
    # an eager gradient's trace that held large values: let go of each once the
    # last rule that reads it has run, not only once its definition is reached
    last_read = _last_reads(builder, stop, active) if plain and builder._kept else {}
    read_last: list[int] | None = None
    for k in range(stop - 1, -1, -1):
        if read_last:  # the rules of the previous instruction were their last readers
            args = ans = None
            for s in read_last:
                builder.release_slot(s)
        read_last = last_read.get(k)
        ins = instrs[k]
        out_slot = ins.out
        g = adjoint.pop(out_slot, None)
        if g is None:
            if releasing:
                builder.release_slot(out_slot)
            continue
        prim = registry[ins.prim]
        params = dict(ins.params) if ins.params else _NO_PARAMS
        if plain:  # (a constant's slot holds its value too)
            operands = ins.ins
            args = [values[operands[0]], values[operands[1]]] if len(operands) == 2 else \
                [values[s] for s in operands]
            ans = values[out_slot]
        else:
            builder.line_override = ins.line  # derivative code belongs to the user's line
            args = [consts[s] if s in consts else builder.tracer(s) for s in ins.ins]
            ans = builder.tracer(out_slot)
        vjps, accumulating = prim.vjps, prim.accumulating_vjps
        joint = prim.joint_vjp  # one rule for every operand (a loop)
        if joint is not None:
            wanted = [a for a, s in enumerate(ins.ins) if s in active]
            for argnum, part in zip(wanted, joint(g, ans, *args, active=wanted, **params)):
                if part is not None:
                    _accumulate(adjoint, ins.ins[argnum],
                                _conformed(builder, ins.ins[argnum], part))
        for argnum, slot in enumerate(ins.ins if joint is None else ()):
            if slot not in active:
                continue
            if accumulating and argnum in accumulating:
                acc = adjoint.pop(slot, None)
                if acc is None:
                    acc = fnp.zeros_for(args[argnum], g)
                elif releasing or plain:  # nothing reads an accumulator but the sweep
                    donate(builder.donatable(acc))
                try:
                    adjoint[slot] = accumulating[argnum](acc, g, ans, *args, **params)
                finally:
                    donate(None)
                acc = None  # the sum replaced it: no local may keep a large array alive
                continue
            if strong_zero and prim.elementwise_partials:
                part = fnp.where(g == 0, 0.0, prim.elementwise_partials[argnum](g, ans, *args))
                _accumulate(adjoint, slot, _conformed(
                    builder, slot, fnp.unbroadcast(part, fnp.shape(args[argnum]))))
                continue
            # (a primitive with no derivative has no active result, so no g)
            rule = vjps[argnum] if argnum < len(vjps) else prim.vjp_rule(argnum)
            if rule is None:
                continue
            ct = rule(g, ans, *args, **params)
            if type(ct) not in _PLAIN_REAL or ct.dtype is not avals[slot].dtype:
                ct = _conformed(builder, slot, ct)
            previous = adjoint.get(slot)
            adjoint[slot] = ct if previous is None else previous + ct
            ct = previous = None
        if releasing:  # no rule reads ins.out again: its readers came first
            v = values[out_slot]
            if type(v) is np.ndarray and v.nbytes >= large:
                del args, ans, g, v
                builder.release_slot(out_slot)
    builder.line_override = None
    for s in read_last or ():
        builder.release_slot(s)
    if releasing:
        builder.release_unreferenced()
    if builder.released and any(registry[i.prim].effect == "guard" for i in instrs[recorded:]):
        raise ReleasedValueRead("a derivative rule branched on a value the trace had let go of")

    return [adjoint.get(s, None) if s in adjoint else fnp.zeros_for(t)
            for s, t in zip(wrt_slots, wrt)]


def _last_reads(builder: Builder, stop: int, active: set[int]) -> dict[int, list[int]]:
    """Instruction k -> the large values whose last reader in the sweep (the
    first in the tape) is a rule of instruction k (`Primitive.vjp_reads`)."""
    values, first = builder.values, {}
    large = tracer_module.RELEASE_BYTES
    for k, ins in enumerate(builder.tape.instrs[:stop]):
        if ins.out not in active:
            continue  # no cotangent reaches it: its rules never run
        reads = registry[ins.prim].vjp_reads
        for argnum, slot in enumerate(ins.ins):
            if slot not in active:
                continue
            if reads is None or argnum >= len(reads):
                read = (ins.out, *ins.ins)
            else:
                read = [ins.out if r == "ans" else ins.ins[r] for r in reads[argnum]]
            for s in read:
                first.setdefault(s, k)
    by_reader: dict[int, list[int]] = {}
    for s, k in first.items():
        v = values[s]
        if type(v) is np.ndarray and v.nbytes >= large:
            by_reader.setdefault(k, []).append(s)
    return by_reader


class ReleasedValueRead(Exception):
    """A releasing trace's reverse sweep depended on a released value's
    contents; the caller traces again without releasing (`Builder.release`)."""


def _conformed(builder: Builder, slot: int, contribution: Any) -> Any:
    """A cotangent has its primal's dtype, as a tangent has (`forward`).  The
    cotangent of a real slot is real: a complex contribution (a real x times
    a complex y) keeps its real part, the transpose of embedding the reals in
    the complex numbers under the pairing Re(ct * t).  A float32 slot's
    cotangent is float32 however a rule computed it (a Python float in a
    ``where``, a float64 table of ``interp``, a user's rule, the integer
    ``bincount`` of no weights at all), and a float64
    slot read through ``astype(float32)`` gets a float64 one, as in JAX."""
    want = builder.tape.avals[slot].dtype
    if type(contribution) in _PLAIN_REAL and contribution.dtype is want:
        return contribution  # the sweep's common case, on plain values
    got = fnp.result_dtype(contribution)
    if got == want or want.kind not in "fc":
        return contribution
    if want.kind != "c" and got.kind == "c":
        contribution = fnp.real(contribution)
    return fnp.astype(contribution, want) if fnp.result_dtype(contribution) != want \
        else contribution


_PLAIN_REAL = (np.ndarray, np.float64, np.float32)
_NO_PARAMS: dict[str, Any] = {}  # (rules take parameters as keywords and never change them)


def _accumulate(adjoint: dict[int, Any], slot: int, contribution: Any) -> None:
    previous = adjoint.get(slot)
    adjoint[slot] = contribution if previous is None else previous + contribution


def vjp_tape(tape: "Tape", wrt: Sequence[int], examples: Sequence[Any] | None = None
             ) -> "Tape":
    """The reverse transform as tape -> tape.

    The result takes ``tape.inputs`` followed by one cotangent per output and
    returns ``tape.outputs`` followed by the cotangent of each input position
    in ``wrt``.  Re-recording evaluates the tape, so it needs input values:
    ``examples`` if given (some primitives, like solve, reject arbitrary ones),
    else seeded random normals.
    """
    import numpy as np
    from ..core.tracer import recording, replay

    rng = np.random.default_rng(0)

    def example(slot: int) -> Any:
        aval = tape.avals[slot]
        return rng.standard_normal(aval.shape).astype(aval.dtype)

    if examples is None:
        examples = [example(s) for s in tape.inputs]
    with recording() as builder:
        inputs = [builder.new_input(v) for v in examples]
        outputs = replay(tape, inputs)
        cotangents = [builder.new_input(example(s)) for s in tape.outputs]
        grads = backward(builder, len(builder.tape.instrs), outputs, cotangents,
                         [inputs[i] for i in wrt])
        builder.tape.outputs = [builder.slot_of(v) for v in list(outputs) + grads]
    return builder.tape
