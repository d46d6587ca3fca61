"""The ``loop`` primitive: a body sub-tape run a fixed number of times, or
(a while loop's) while its carried condition holds.

One instruction stands for a whole recurrence (``fastad.scan``,
``fori_loop``, ``while_loop`` are written on it, in `fastad.loops`).  Its
parameters hold the body as a traced tape (`LoopBody`) and the trip count
(`RUN_TIME` for a count read at run time);
its operands are, in order, the carried values' leaves, the per-step inputs'
leaves (stacked along a leading axis of the trip count) and the values the
body closed over.  The body tape takes the same three groups (one step's
slice of each stacked input) and returns the new carry's leaves followed by
the step's outputs' leaves.

An instruction has one result, so the loop packs its results as
decompositions do: the final carry's leaves and the stacked outputs, each
raveled, in one 1-D array of their common dtype; `fastad.loops` slices them
out again.  The derivative rules take every operand at once (`joint_vjp`,
`joint_jvp`: one loop for all cotangents, not one per operand) and are loops
themselves, so they differentiate, batch and compile again.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.registry import defbatch, defprim, defshape
from ..core.errors import TapeError
from ..core.tape import SUBTAPE_PARAMS, Aval, Tape

# The ``length`` of a while loop whose trip count is read at run time: it
# steps while its carried condition (the body's last carried value) holds,
# and its packed result is the final carry and the number of steps taken (a
# float64), so no count is recorded and no guard checks one.
RUN_TIME = -1


class LoopBody:
    """A loop's body: its tape and how its inputs and outputs divide into
    carried values, per-step inputs (xs), closed-over values, and per-step
    outputs (ys).  Compared and hashed by identity, as one traced body is one
    object: CSE merges two loops only when they run the same traced body."""

    __slots__ = ("tape", "n_carry", "n_xs", "is_while", "counted", "_plan", "_on_vm", "_floats",
                 "_int_inputs", "extends", "_storing", "chunk_of")

    def __init__(self, tape: Tape, n_carry: int, n_xs: int, is_while: bool = False,
                 counted: bool = False) -> None:
        if type(n_carry) is not int or type(n_xs) is not int or n_carry < 0 or n_xs < 0 \
                or n_carry + n_xs > len(tape.inputs) or n_carry > len(tape.outputs):
            raise TapeError(f"a loop body of {len(tape.inputs)} inputs and "
                            f"{len(tape.outputs)} outputs cannot have {n_carry!r} carried "
                            f"and {n_xs!r} per-step values")
        if type(is_while) is not bool or type(counted) is not bool:
            raise TapeError("a loop body's while and counted marks must be bools")
        self.tape, self.n_carry, self.n_xs = tape, n_carry, n_xs
        # ``is_while``: a `while_loop`'s body, whose last carried value is the
        # condition on the carry (a bool scalar) and whose one per-step output
        # is that condition on the step's input carry, so the trip count can
        # be found again per example (`loop_rules.while_batch`).  ``counted``:
        # a loop derived from one (its derivative), whose trip count is that
        # loop's, fixed when it was recorded.
        self.is_while, self.counted = is_while, counted
        if is_while and not self._while_shaped():
            raise TapeError("a while loop's body needs a bool condition as its last carried "
                            "value and as its one per-step output, and no per-step inputs")
        self._plan: Any = None
        self._on_vm: Any = None  # the loop with this body built for the C VM, once asked
        self._floats: Any = None  # its integers as float64 words (`lower_loop.on_floats`)
        self._int_inputs: Any = None  # (`integer_inputs`)
        # the body this one is with each step's input carry as further
        # per-step outputs (`storing`), so that a loop of it can stand for a
        # loop of that one (`transforms.loop_merge`); not saved
        self.extends: LoopBody | None = None
        self._storing: dict[tuple[bool, tuple[int, ...]], LoopBody] = {}
        # (body, k) when this body is the loop of ``body`` over one chunk of
        # k steps (`loops.recorded`), whose reverse mode then recomputes the
        # next chunk's states while running back through this one
        # (`loop_rules._pipelined_back`); not saved
        self.chunk_of: tuple[LoopBody, int] | None = None

    def storing(self, counted: bool, also: tuple[int, ...] = ()) -> LoopBody:
        """This body with each step's input carry appended to its per-step
        outputs, then the values of slots ``also`` (values its reverse mode
        would compute again from the states, `loop_hoist.residuals`): a loop
        of it computes this one's results followed by the state before every
        step (reverse mode's stored states), and those.  One object per body
        (and `counted` mark, which the loops recorded where it is made carry,
        and ``also``), so the derivatives of its loop all share it."""
        body = self._storing.get((counted, also))
        if body is None:
            tape = self.tape
            stored = Tape(list(tape.inputs), list(tape.outputs) + list(tape.inputs[:self.n_carry])
                          + list(also), dict(tape.consts), list(tape.instrs), list(tape.avals))
            body = self._storing[(counted, also)] = LoopBody(stored, self.n_carry, self.n_xs,
                                                             counted=counted)
            body.extends = self
        return body

    def interpret(self, inputs: list[Any]) -> list[Any]:
        """One step by the reference interpreter's rules (each primitive's
        NumPy implementation, in tape order; `backends.reference.evaluate`),
        with the per-instruction look-ups done once per body, not per step."""
        plan = self._plan
        if plan is None:
            from ..core.registry import registry
            tape = self.tape
            plan = self._plan = (
                [(registry[i.prim].impl, i.ins, i.out, i.kwargs) for i in tape.instrs],
                [(s, tape.avals[s].dtype) for s in tape.outputs])
        env = dict(zip(self.tape.inputs, inputs))
        env.update(self.tape.consts)
        for impl, ins, out, params in plan[0]:
            env[out] = impl(*[env[s] for s in ins], **params)
        return [np.asarray(env[s], dtype=d) for s, d in plan[1]]

    @property
    def n_consts(self) -> int:
        return len(self.tape.inputs) - self.n_carry - self.n_xs

    def avals(self, slots: Sequence[int]) -> list[Aval]:
        return [self.tape.avals[s] for s in slots]

    @property
    def carry_avals(self) -> list[Aval]:
        return self.avals(self.tape.inputs[:self.n_carry])

    @property
    def x_avals(self) -> list[Aval]:
        return self.avals(self.tape.inputs[self.n_carry:self.n_carry + self.n_xs])

    @property
    def const_avals(self) -> list[Aval]:
        return self.avals(self.tape.inputs[self.n_carry + self.n_xs:])

    @property
    def y_avals(self) -> list[Aval]:
        return self.avals(self.tape.outputs[self.n_carry:])

    def result_avals(self, length: int) -> list[Aval]:
        """The loop's results before packing: the final carry, the stacked ys
        (for a loop of `RUN_TIME` length: the final carry, the step count)."""
        if length == RUN_TIME:
            return self.carry_avals + [Aval((), np.dtype(np.float64))]
        return self.carry_avals + [Aval((length,) + a.shape, a.dtype) for a in self.y_avals]

    def integer_inputs(self) -> tuple[tuple[int, np.dtype], ...]:
        """(position, dtype) of the inputs of integer dtype, found once."""
        if self._int_inputs is None:
            self._int_inputs = tuple(
                (k, np.dtype(a.dtype)) for k, a in enumerate(self.avals(self.tape.inputs))
                if np.dtype(a.dtype).kind in "iu")
        return self._int_inputs

    def _while_shaped(self) -> bool:
        flag = [a for a in self.carry_avals[-1:] + self.avals(self.tape.outputs[-1:])
                if a.shape == () and a.dtype == np.bool_]
        return self.n_xs == 0 and self.n_carry >= 1 and len(flag) == 2 \
            and len(self.tape.outputs) == self.n_carry + 1

    def wire_fields(self) -> tuple[Any, ...]:
        if self.is_while or self.counted:
            return self.n_carry, self.n_xs, self.is_while, self.counted
        return self.n_carry, self.n_xs

    def __repr__(self) -> str:
        return (f"<loop body: {len(self.tape.instrs)} instructions, {self.n_carry} carried, "
                f"{self.n_xs} per step, {self.n_consts} closed over>")


SUBTAPE_PARAMS["loop body"] = LoopBody


def packed_dtype(avals: Sequence[Aval]) -> np.dtype:
    """The dtype of a loop's packed result: its parts' common dtype (float64 if
    none is inexact, so integer counters round-trip exactly below 2**53)."""
    dtype = np.result_type(*[a.dtype for a in avals]) if avals else np.dtype(np.float64)
    return dtype if dtype.kind in "fc" else np.result_type(dtype, np.float64)


def layout(body: LoopBody, length: int) -> list[tuple[int, int, Aval]]:
    """(start, stop, aval) of each result inside the packed array."""
    out, at = [], 0
    for aval in body.result_avals(length):
        out.append((at, at + aval.size, aval))
        at += aval.size
    return out


def pack(values: Sequence[Any], dtype: np.dtype) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype)
    for v in values:  # an integer past 2**53 would come back rounded: refuse it
        if np.asarray(v).dtype.kind in "iu" and dtype.kind in "fc" and np.size(v) \
                and np.max(np.abs(np.asarray(v, dtype=np.float64))) >= 2.0 ** 53:
            raise OverflowError("a loop's integer results are carried in floating point and "
                                "exact below 2**53; this one is larger")
    return np.concatenate([np.asarray(v, dtype=dtype).ravel() for v in values])


def run_loop(*args: Any, body: LoopBody, length: int, checkpoint: int = 0,
             step: Any = None, steps: Any = None) -> np.ndarray:
    """The loop on NumPy values: the body tape run ``length`` times by the
    reference interpreter (what eager calls and the reference backend run),
    or by ``step(inputs) -> outputs`` (the body built for a compiled backend),
    or all at once by ``steps(carry, xs, consts, ys, length) -> final carry`` (the
    steps in compiled code, writing the ys in place)."""
    step = step or body.interpret
    nc, nx = body.n_carry, body.n_xs
    # integers a compiled program holds as float64 words back in their
    # dtype (exact below 2**53), so that the body computes in int64 as
    # NumPy does: ``c * K`` may pass 2**53 where its step's result does not
    ints = body.integer_inputs()
    if ints:
        args = list(args)
        for k, dtype in ints:
            if np.asarray(args[k]).dtype.kind == "f":
                args[k] = np.asarray(args[k], dtype)
    carry = list(args[:nc])
    xs = [np.asarray(x) for x in args[nc:nc + nx]]
    consts = list(args[nc + nx:])
    if length == RUN_TIME:
        return pack(*_run_time(body, carry, consts, step, steps))
    ys = [np.empty((length,) + a.shape, a.dtype) for a in body.y_avals]
    if steps is not None:
        final = steps(carry, xs, consts, ys, length)
        return pack(list(final) + ys, packed_dtype(body.result_avals(length)))
    with np.errstate(all="ignore"):
        for t in range(length):
            outs = step(carry + [x[t] for x in xs] + consts)
            carry = outs[:nc]
            for y, v in zip(ys, outs[nc:]):
                y[t] = v
    return pack(carry + ys, packed_dtype(body.result_avals(length)))


def _run_time(body: LoopBody, carry: list[Any], consts: list[Any], step: Any,
              steps: Any) -> tuple[list[Any], np.dtype]:
    """A loop of `RUN_TIME` length: the steps while the carried condition
    holds; its packed parts and dtype."""
    n, nc = 0, body.n_carry
    with np.errstate(all="ignore"):
        while bool(np.asarray(carry[-1])):
            carry = list(steps(carry, [], consts, [np.empty((1,) + a.shape, a.dtype)
                                                   for a in body.y_avals], 1)) \
                if steps is not None else step(carry + consts)[:nc]
            n += 1
    return carry + [np.float64(n)], packed_dtype(body.result_avals(RUN_TIME))


def shape_rule(*shapes: tuple[int, ...], body: LoopBody, length: int,
               checkpoint: int = 0) -> tuple[int, ...]:
    """The packed result's shape, after checking the operands against the body's inputs."""
    if not isinstance(body, LoopBody) or type(length) is not int or length < RUN_TIME \
            or type(checkpoint) is not int or checkpoint < 0:
        raise ValueError("a loop needs a body, a trip count >= 0 and a checkpoint stride >= 0")
    if length == RUN_TIME and not body.is_while:
        raise ValueError("only a while loop's body runs a trip count read at run time")
    expected = ([a.shape for a in body.carry_avals]
                + [(length,) + a.shape for a in body.x_avals]
                + [a.shape for a in body.const_avals])
    from ..core.registry import registry
    if any(registry[i.prim].effect == "guard" for i in body.tape.instrs):
        raise ValueError("a loop body holds a guard (one sub-tape must serve every step)")
    if [tuple(s) for s in shapes] != [tuple(s) for s in expected]:
        raise ValueError(f"loop operands {list(shapes)} for a body taking {expected}")
    if [a.shape for a in body.avals(body.tape.outputs[:body.n_carry])] != \
            [a.shape for a in body.carry_avals]:
        raise ValueError("the loop body's carry output does not match its carry input")
    return (sum(a.size for a in body.result_avals(length)),)


loop = defprim("loop", run_loop, None, cost="structural",
               doc="a body sub-tape run `length` times over carried and stacked values")


def _joint_vjp(g: Any, ans: Any, *args: Any, active: Sequence[int], body: LoopBody,
               length: int, checkpoint: int = 0) -> list[Any]:
    from ..loop_rules import loop_vjp
    return loop_vjp(g, ans, args, active, body, length, checkpoint)


def _joint_jvp(tangents: Sequence[Any], ans: Any, *args: Any, body: LoopBody,
               length: int, checkpoint: int = 0) -> Any:
    from ..loop_rules import loop_jvp
    return loop_jvp(tangents, args, body, length, checkpoint)


def host_impl(params: dict[str, Any], backend: Any) -> Any:
    """The loop as a compiled function's host call runs it (`backends.loop_host`)."""
    from ..backends.loop_host import host_impl as on_backend
    return on_backend(params, backend)


loop.host_impl = host_impl  # type: ignore[attr-defined]


def run_loop_on_vm(*args: Any, body: LoopBody, length: int, checkpoint: int = 0) -> Any:
    """The loop as a compiled function's trace computes it (`Primitive.release_impl`:
    a releasing trace's values never reach the user, only its executable's
    do): the body on the C VM where it is built, so tracing a loop of T steps
    and its derivative loops costs VM steps, not interpreted ones."""
    if body._on_vm is None:
        from ..backends import _load
        body._on_vm = host_impl({"body": body, "length": 0, "checkpoint": 0}, _load("c"))
    return body._on_vm(*args, length=length, checkpoint=checkpoint)


loop.release_impl = run_loop_on_vm


# Read by the reverse and forward sweeps (`transforms/reverse.py`,
# `transforms/forward.py`) before any per-argument rule: the loop's
# derivative is one loop for every operand.
loop.joint_vjp = _joint_vjp
loop.joint_jvp = _joint_jvp


def batching_rule(prim: Any, args: Sequence[Any], shapes: Sequence[Any],
                   params: dict[str, Any], size: int) -> Any:
    from ..loop_rules import loop_batch
    return loop_batch(prim, args, shapes, params, size)


defshape(loop, shape_rule)
defbatch(loop, batching_rule)
