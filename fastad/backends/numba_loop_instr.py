"""The Numba generator's code for a ``loop`` instruction: a real ``for`` loop.

A loop instruction (``fastad.scan``, ``fori_loop``, ``while_loop``, a
recurrence found in a traced Python loop, and reverse mode's loops over
checkpointed chunks) holds its body as a tape of its own.  The generator
writes that body's code once, whatever the trip count, inside a ``for``
loop of the kernel:

    b1_x0 = x0                      the carry in local variables: scalars
    b1_x1 = v3                      as scalars, arrays as arrays
    for b1_t in range(T):
        b1_x2 = v5[b1_t]            a row of a stacked input (a view), or its element
        ...                         the body's code
        v7[2 + b1_t] = b1_v9        per-step outputs into the packed result
        b1_x0, b1_x1, = b1_v8, b1_v4,   the new carry at once (an output may
                                    be another carry's input: a swap)
    v7[0] = b1_x0                   the final carry into it after the loop

The packed result is `primitives.loops`': the final carry's leaves, then
each stacked output, raveled, in one array of their common dtype.

The body's code comes from a generator of the same class walking the body
tape (`loop_body`), sharing the module's packed constants; every name that
code defines is renamed with the loop's prefix (``b1_``), so it sits in the
kernel beside the outer code, and a loop in a body nests (``b1_b2_t``):
reverse mode's loops over chunks, holding inner loops, are nested ``for``
loops.  (Bodies as jitted functions called per step compiled slower:
Numba's fixed cost per function, about a second each under load, times the
18 functions of a nested scan's gradient.)

The body never writes its per-step and closed-over inputs (buffers the
generated code does not own) and its outputs are fresh arrays
(`emit_outputs`).  A carried array is the loop's own: a copy of the first
carry, made once, then each step's fresh output, dead once the next carry
is made; so the body may write it in place (a point update of the carry,
`u[i, j] = ...`, copied the whole array every step before).  Its tape is cut to what its outputs need and common
subexpressions merged (both exact); the rest of the optimizer is not run on
it, so values are those of the reference interpreter's step.
"""
from __future__ import annotations

import ast
import re

import numpy as np

from ..core.tape import Instr
from ..primitives.loops import LoopBody, layout, packed_dtype
from .numba_loop_pipeline import _PipelinedLoop
from .numba_loop_pipeline import plan as pipeline_plan


# Instructions of a loop's bodies (nested ones included) past which the loop
# stays a host call: a body is one step of straight-line code that the
# kernel's parts cannot split, and Numba's compile time grows faster than
# linearly with a function's length (solve_ivp's RK4 gradient, 1,439
# instructions in its loops: 3 minutes under load; RK45's 2,257: 7).
MAX_BODY_INSTRUCTIONS = 800


def refusal(ins: Instr) -> str | None:
    """Why the generated code cannot run loop ``ins``, or None: a body (or a
    body of a loop in it) with a primitive the generator has no code for, or
    a real-only one applied to complex values, or bodies too long to compile
    in reasonable time.  Such a loop stays a host call (`fallback.refused`)."""
    from .numba_emitters import EMITTERS
    from .numba_tables import REAL_ONLY
    from ..core.registry import registry
    stack = [ins.kwargs["body"].tape]
    count = 0
    while stack:
        tape = stack.pop()
        count += len(tape.instrs)
        for inner in tape.instrs:
            prim = registry[inner.prim]
            if prim not in EMITTERS:
                return f"a body that runs {inner.prim}"
            if prim in REAL_ONLY and any(tape.avals[s].dtype.kind == "c" for s in inner.ins):
                return f"a body that runs {inner.prim} of complex values"
            if inner.prim == "loop":
                stack.append(inner.kwargs["body"].tape)
    if count > MAX_BODY_INSTRUCTIONS:
        return f"bodies of {count} instructions (more than {MAX_BODY_INSTRUCTIONS})"
    return None


class _LoopInstruction(_PipelinedLoop):
    """The ``loop`` instruction's part of the generator (mixed into
    `numba_codegen._Generator`, whose variables, buffers and packed
    constants it uses)."""

    def loop_body(self, body: LoopBody, prefix: str, owns_carry: bool = False
                  ) -> tuple[list[str], list[str], list[str], list[str]]:
        """One step of ``body`` as code to paste into a loop: the names of the
        body's inputs (those its outputs need; None for the others), the lines
        made once before the loop (its constants), the lines of a step, and
        the names holding its outputs after it.  Every name the code defines
        starts with ``prefix``.  With ``owns_carry`` the body may write its
        carried arrays in place: the loop owns them (a copy of the first
        carry, then each step's fresh outputs, dead once the next carry is
        made), which saves a copy per step of an array updated point by point."""
        from ..transforms.optimize import eliminate_common_subexpressions, eliminate_dead_code
        from .numba_source import _with_deps
        tape = eliminate_dead_code(eliminate_common_subexpressions(body.tape))
        sub = type(self)(tape)
        if owns_carry:
            for s in tape.inputs[:body.n_carry]:
                if s in sub.owned:  # an array: its own buffer
                    sub.owned[s] = True
        sub.packed, sub.packed_size = self.packed, self.packed_size  # one set of constants
        sub.loops = self.loops
        sub.module_lines = self.module_lines  # names the body's emitters need (LAPACK)
        steps = sub.generate()
        self.host_calls = self.host_calls or sub.host_calls
        reads = dict.fromkeys(n for step in steps for n in step.reads)
        inputs = [sub.name[s] if sub.name[s] in reads else None for s in tape.inputs]
        made = _with_deps([n for n in reads if sub.vars[n].local is not None], sub.vars)
        before = [f"{n} = {sub.vars[n].local}" for n in made]
        lines = [line for step in steps for line in step.lines]
        for const in {d for n in made for d in sub.vars[n].deps if d.startswith("const_")}:
            self.packed_argument(const)
        local = {n for n in inputs if n is not None}
        for node in ast.walk(ast.parse("\n".join(before + lines))):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
        if not local:
            return inputs, before, lines, list(sub.outputs)
        pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(local, key=len, reverse=True))
                             + r")\b")

        def rename(text: str) -> str:
            return pattern.sub(lambda m: prefix + m.group(1), text)
        return ([None if n is None else prefix + n for n in inputs],
                [rename(line) for line in before], [rename(line) for line in lines],
                [rename(n) for n in sub.outputs])

    def packed_argument(self, const: str) -> None:
        """Makes the packed constant argument ``const`` a parameter of the part
        whose code names it (through a local the parts know)."""
        var = f"whole_{const}"
        if var not in self.vars:
            self.add_var(var, None, False, np.dtype(const[len("const_"):]), local=const,
                         deps=(const,), ndim=1)
        self.read(var)

    def emit_loop(self, ins: Instr) -> None:
        body: LoopBody = ins.kwargs["body"]
        length: int = ins.kwargs["length"]
        nc, nx = body.n_carry, body.n_xs
        tape = body.tape
        in_avals = body.avals(tape.inputs)
        pdtype = packed_dtype(body.result_avals(length))
        spans = layout(body, length)
        total = spans[-1][1] if spans else 0
        pipeline = pipeline_plan(body, length)
        if pipeline is not None:  # two inner loops, overlapped (reverse mode's chunks)
            return self.emit_pipelined(ins, pipeline)
        result = self.define_array(ins, f"np.empty({total}, np.{pdtype.name})")
        if not tape.outputs:
            return
        self.loops.append(ins.out)
        p = f"b{len(self.loops)}_"
        inputs, before, step, outputs = self.loop_body(body, p, owns_carry=True)
        lines = self.step.lines
        index = f"{p}t"
        carry = [n if n is not None else f"{p}unused{k}" for k, n in enumerate(inputs[:nc])]
        lines += before
        for k in range(nc):  # an array carry: the loop's own copy, which steps may write
            s = ins.ins[k]
            lines.append(f"{carry[k]} = " + (self.ref(s, in_avals[k].dtype)
                                             if in_avals[k].shape == () else f"{self.ref(s)}.copy()"))
        for k in range(nc + nx, len(inputs)):  # closed-over values: bound once
            if inputs[k] is not None:
                s = ins.ins[k]
                lines.append(f"{inputs[k]} = " + (self.ref(s, in_avals[k].dtype)
                                                  if in_avals[k].shape == () else self.ref(s)))
        lines.append(f"for {index} in range({length}):")
        inner = []
        for k in range(nc, nc + nx):  # a row of the stacked value (a view), or its element
            if inputs[k] is not None:
                inner.append(f"{inputs[k]} = {self.ref(ins.ins[k])}[{index}]")
        inner += step
        for j, aval in enumerate(body.y_avals):
            start, y = spans[nc + j][0], outputs[nc + j]
            if aval.size == 0:
                continue
            if aval.shape == ():
                inner.append(f"{result}[{start} + {index}] = {y}")
            else:
                row = f"{start} + {index} * {aval.size}"
                value = y if aval.ndim == 1 else f"{y}.reshape({aval.size})"
                inner.append(f"{result}[{row}:{row} + {aval.size}] = {value}")
        if nc:  # the new carry, all at once: an output may be another carry's input
            inner.append(", ".join(carry) + ", = " + ", ".join(outputs[:nc]) + ",")
        lines += ["    " + line for line in inner]
        for k in range(nc):
            start, stop, aval = spans[k]
            if aval.size == 0:
                continue
            if aval.shape == ():
                lines.append(f"{result}[{start}] = {carry[k]}")
            else:
                value = carry[k] if aval.ndim == 1 else f"{carry[k]}.reshape({aval.size})"
                lines.append(f"{result}[{start}:{stop}] = {value}")
