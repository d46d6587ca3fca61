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
(`emit_outputs`).  A carried array is the loop's own: a buffer holding a
copy of the first carry, into which each step's new carry is copied, or,
where a carry output is an input's buffer, each step's fresh output, dead
once the next carry is made; so the body may write it in place (a point
update of the carry, `u[i, j] = ...`, copied the whole array every step
before).  The arrays and views a step makes are made once, before the loop
(`made_once`): an allocation per product and a reference count per view
were most of an RNN step.  Its tape is cut to what its outputs need and common
subexpressions merged (both exact); the rest of the optimizer is not run on
it, so values are those of the reference interpreter's step.
"""
from __future__ import annotations

import ast
import re

import numpy as np

from ..core.tape import Instr
from ..primitives.loops import RUN_TIME, LoopBody, layout, packed_dtype
from .numba_tables import _shape
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
    from .fallback import special_refusal
    from .numba_tables import REAL_ONLY
    from ..core.registry import registry
    from .lower_loop import rounds_integers
    if rounds_integers(ins.kwargs["body"]):
        return "a body whose integers may pass 2**53 (held as float64 words, they would round)"
    stack = [ins.kwargs["body"].tape]
    count = 0
    while stack:
        tape = stack.pop()
        count += len(tape.instrs)
        for inner in tape.instrs:
            prim = registry[inner.prim]
            if prim not in EMITTERS:
                return f"a body that runs {inner.prim}"
            if (why := special_refusal(inner)) is not None:
                return f"a body that runs {inner.prim} of {why}"
            if prim in REAL_ONLY and any(tape.avals[s].dtype.kind == "c" for s in inner.ins):
                return f"a body that runs {inner.prim} of complex values"
            if inner.prim == "loop":
                stack.append(inner.kwargs["body"].tape)
    if count > MAX_BODY_INSTRUCTIONS:
        return f"bodies of {count} instructions (more than {MAX_BODY_INSTRUCTIONS})"
    return None


# a step's allocation of an array of literal shape: np.empty, or np.full of a value
_ALLOCATION = re.compile(r"^(\w+) = np\.(?:empty\(([\d(), ]+)|full\(([\d(), ]+), (-?\w[\w.+-]*))"
                         r", np\.(\w+)\)$")
# a view of an array, or another name for it: a reshape to a literal shape, a transpose
_VIEW = re.compile(r"^(\w+) = (\w+)(?:\.reshape\([\d(), ]+\)|\.T)?$")
# rows of stacked inputs up to this size are copied into a buffer of the loop
# (a view per step costs two atomic reference counts, and so does each view of it)
ROW_COPY = 4096


def _step_arrays(sub, tape, n_carry: int, lines: list[str]) -> tuple[set[str], bool]:
    """The arrays a step of the body generated by ``sub`` makes that its loop
    may make once, before it, and whether its array carries may live in
    buffers of their own, each step's new carry copied into them.

    Every array a step makes is dead when the step ends, but for the new
    carry, which the next step reads.  So if the step's array carries are
    copied at its end into the loop's carry buffers, every array it makes can
    be one buffer for all steps.  Not when a carry output is an input's
    buffer (a carry passed on, or updated in place: the copies could
    overwrite what a later one reads); then the carries' arrays are made per
    step and the carries move as before.  Scratch buffers of loops in the
    body (made once by `made_once`) are the body's own too."""
    slots = {name: s for s, name in sub.name.items() if name in sub.vars}
    carried = {sub.buffer.get(slots.get(n)) for n in sub.outputs[:n_carry]} - {None}
    inputs = {sub.buffer.get(s) for s in tape.inputs} - {None}
    fixed = not carried & inputs
    once = set(sub.scratch)
    for line in lines:
        m = _ALLOCATION.match(line)
        if m is None or m.group(1) not in slots:
            continue
        b = sub.buffer.get(slots[m.group(1)])
        if b is not None and sub.owned.get(b) and b not in inputs and (fixed or b not in carried):
            once.add(m.group(1))
    return once, fixed


class _LoopInstruction(_PipelinedLoop):
    """The ``loop`` instruction's part of the generator (mixed into
    `numba_codegen._Generator`, whose variables, buffers and packed
    constants it uses)."""

    def loop_body(self, body: LoopBody, prefix: str, owns_carry: bool = False
                  ) -> tuple[list[str], list[str], list[str], list[str], tuple[set[str], bool]]:
        """One step of ``body`` as code to paste into a loop: the names of the
        body's inputs (those its outputs need; None for the others), the lines
        made once before the loop (its constants), the lines of a step, the
        names holding its outputs after it, and the arrays a step makes that
        the loop may make once (`_step_arrays`).  Every name the code defines
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
        arrays = _step_arrays(sub, tape, body.n_carry, lines)
        for const in {d for n in made for d in sub.vars[n].deps if d.startswith("const_")}:
            self.packed_argument(const)
        local = {n for n in inputs if n is not None}
        for node in ast.walk(ast.parse("\n".join(before + lines))):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
        if not local:
            return inputs, before, lines, list(sub.outputs), arrays
        pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(local, key=len, reverse=True))
                             + r")\b")

        def rename(text: str) -> str:
            return pattern.sub(lambda m: prefix + m.group(1), text)
        return ([None if n is None else prefix + n for n in inputs],
                [rename(line) for line in before], [rename(line) for line in lines],
                [rename(n) for n in sub.outputs], ({rename(n) for n in arrays[0]}, arrays[1]))

    def made_once(self, step: list[str], arrays: set[str], fixed: set[str]
                  ) -> tuple[list[str], list[str]]:
        """The step's lines making `arrays` (`_step_arrays`) and the views of
        those and of the ``fixed`` names (bound before the loop, never
        rebound), moved before the loop: the lines made once, and the step's
        lines.  An allocation made once is in turn made once by a loop around
        this one (`scratch`): none outlives a run of this loop."""
        made, kept = [], []
        once = set(fixed)
        for line in step:
            view = _VIEW.match(line)
            if view is not None and view.group(2) in once:
                made.append(line)
                once.add(view.group(1))
                continue
            m = _ALLOCATION.match(line)
            if m is None or m.group(1) not in arrays:
                kept.append(line)
                continue
            name, empty_shape, full_shape, fill, dtype = m.groups()
            made.append(f"{name} = np.empty({empty_shape or full_shape}, np.{dtype})")
            self.scratch.add(name)
            once.add(name)
            if fill is not None:
                kept.append(f"{name}.fill({fill})")
        return made, kept

    def row(self, name: str, stacked: str, index: str, aval, arrays: set[str]) -> list[str]:
        """Lines binding ``name`` to row ``index`` of ``stacked``: its element,
        a copy into a buffer of the loop (added to ``arrays``), or, past
        `ROW_COPY` elements, a view."""
        if aval.shape == () or aval.size > ROW_COPY:
            return [f"{name} = {stacked}[{index}]"]
        arrays.add(name)
        lines = [f"{name} = np.empty({_shape(aval.shape)}, np.{aval.dtype.name})"]
        at = [f"{name}_r{d}" for d in range(aval.ndim)]
        for d, n in enumerate(aval.shape):
            lines.append("    " * d + f"for {at[d]} in range({n}):")
        lines.append("    " * aval.ndim + f"{name}[{', '.join(at)}] = {stacked}[{index}, {', '.join(at)}]")
        return lines

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
        inputs, before, step, outputs, (arrays, fixed) = self.loop_body(body, p, owns_carry=True)
        lines = self.step.lines
        index = f"{p}t"
        carry = [n if n is not None else f"{p}unused{k}" for k, n in enumerate(inputs[:nc])]
        lines += before
        bound = set()  # arrays bound before the loop, never rebound in it
        for k in range(nc):  # an array carry: the loop's own copy, which steps may write
            s, aval = ins.ins[k], in_avals[k]
            if aval.shape == ():
                lines.append(f"{carry[k]} = {self.ref(s, aval.dtype)}")
            elif fixed:  # the loop's buffer, each step's new carry copied into it
                lines.append(f"{carry[k]} = np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
                lines.append(f"{carry[k]}[:] = {self.ref(s)}")
                self.scratch.add(carry[k])
                bound.add(carry[k])
            else:
                lines.append(f"{carry[k]} = {self.ref(s)}.copy()")
        for k in range(nc + nx, len(inputs)):  # closed-over values: bound once
            if inputs[k] is not None:
                s = ins.ins[k]
                lines.append(f"{inputs[k]} = " + (self.ref(s, in_avals[k].dtype)
                                                  if in_avals[k].shape == () else self.ref(s)))
                bound.add(inputs[k])
        inner = []
        for k in range(nc, nc + nx):  # a row of the stacked value, or its element
            if inputs[k] is not None:
                inner += self.row(inputs[k], self.ref(ins.ins[k]), index, in_avals[k], arrays)
        inner += step
        until = length == RUN_TIME  # a while loop: no rows, its count written last
        for j, aval in enumerate([] if until else body.y_avals):
            start, y = spans[nc + j][0], outputs[nc + j]
            if aval.size == 0:
                continue
            if aval.shape == ():
                inner.append(f"{result}[{start} + {index}] = {y}")
            else:
                row = f"{start} + {index} * {aval.size}"
                if aval.ndim != 1:
                    inner.append(f"{y}_flat_out = {y}.reshape({aval.size})")
                    y = f"{y}_flat_out"
                inner.append(f"{result}[{row}:{row} + {aval.size}] = {y}")
        arrays_out = [k for k in range(nc) if fixed and in_avals[k].shape != ()]
        for k in arrays_out:  # copied into the loop's buffer
            inner.append(f"{carry[k]}[:] = {outputs[k]}")
        scalars = [k for k in range(nc) if k not in arrays_out]
        if scalars:  # the new carry, all at once: an output may be another carry's input
            inner.append(", ".join(carry[k] for k in scalars) + ", = "
                         + ", ".join(outputs[k] for k in scalars) + ",")
        made, inner = self.made_once(inner, arrays, bound)
        lines += made
        if until:
            lines += [f"{index} = 0", f"while {carry[nc - 1]}:"]
            inner.append(f"{index} += 1")
        else:
            lines.append(f"for {index} in range({length}):")
        lines += ["    " + line for line in inner]
        if until:
            lines.append(f"{result}[{spans[-1][0]}] = {index}")
        for k in range(nc):
            start, stop, aval = spans[k]
            if aval.size == 0:
                continue
            if aval.shape == ():
                lines.append(f"{result}[{start}] = {carry[k]}")
            else:
                value = carry[k] if aval.ndim == 1 else f"{carry[k]}.reshape({aval.size})"
                lines.append(f"{result}[{start}:{stop}] = {value}")
