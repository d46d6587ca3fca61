"""Cheap values of the kernel's inputs computed again in the loop that reads them.

A fused loop (`numba_loops._Loop`) stores into an array every value read
after it.  When the reader is a later loop reading element ``i`` in
iteration ``i``, and the value is a few cheap elementwise operations on the
kernel's inputs, constants and scalars, the store and the read back cost
more than the arithmetic: a Hessian-vector product of a banded objective
(`broyden` in benchmarks/sparse_derivatives.py) wrote four such arrays of n
in its first loop for the next one, functions of x and of the seed that the
next loop computes again from the x and the seed it reads anyway.

So a loop value whose readers after the loop are all elementwise
instructions of its shape, and which a *recipe* computes (its instruction
and those of the loop values it reads, each cheap and elementwise, reading
otherwise only inputs and constants of its shape and scalars), is not
stored: it is *deferred*, and each loop that reads it runs the recipe's
instructions again as members of its own, before their reader.  A reader
that ends up in no loop (or a gather, a scatter, a reduction) has the value
made into its array first (`materialize`), by a loop of the recipe.  Which
instructions a recipe may hold is decided in one place, `recomputable`.
Each recomputed value is the same scalar expression of the same operands as
in the loop that first computed it, so results are bit for bit those of the
stored arrays: the operands a recipe reads are never written while it may
run, and a loop's member reads a recomputed value only below the recipe's
run in the body (`numba_loops._LoopFusion.close_loop`).
"""
from __future__ import annotations

import math
from typing import Sequence

from ..core.registry import registry
from ..core.registry import prims as P
from ..core.tape import Instr
from .numba_tables import _shape, _Step

#: at most this many instructions recomputed for one value (its recipe):
#: beyond a few operations per element the arithmetic costs more than the
#: store and the read it saves
MAX_RECIPE = 8
#: cheap primitives not recomputed: ``fmod`` is a libm call in Numba's code
NOT_RECOMPUTED = frozenset({P.fmod})
#: defer only values whose readers after the loop all read them in loops of
#: their shape (else the value is made into an array for the others anyway,
#: by a loop that reads the inputs again); False defers every value with a
#: recipe that no guard reads, which the tests use to reach `materialize`
ONLY_LOOP_READERS = True


class _Recompute:
    """The generator's part (mixed into `numba_codegen._Generator`) that
    defers cheap loop values to their readers' loops."""

    def recomputable(self, ins: Instr) -> bool:
        """May loop member ``ins`` run again in a later loop that reads element
        ``i`` in iteration ``i`` (or in `materialize`'s loop), with the same
        result bit for bit?  The whole rule, checked here only:

        - a cheap elementwise primitive without effects (a fused loop's scalar
          expression, `scalar_expr`), not one of `NOT_RECOMPUTED`; every
          instruction of a tape has one result (NumPy's ufuncs of two, modf,
          frexp, divmod, are several instructions, each checked alone);
        - every array operand of exactly the result's shape, so it is read at
          the flat position ``i`` of the reading loop: a broadcast operand's
          position needs the loop's per-axis indices (a loop of broadcasts),
          which a loop joining the recipe may not have;
        - array operands the kernel never writes while the value may still be
          recomputed: constants, and inputs whose buffers the code does not
          own (a loop body's carries it owns are updated in place once their
          last reader in the tape has run, and a recipe runs later); scalars
          and constants of one value (names never rebound, literals).
        Operands that are values of the same loop are checked by `recipe`."""
        prim = registry[ins.prim]
        if (prim not in self.ELEMENTWISE or prim.cost != "cheap" or prim in NOT_RECOMPUTED
                or prim.effect is not None):
            return False
        shape = self.avals[ins.out].shape
        if shape == () or math.prod(shape) == 0:
            return False
        for o in ins.ins:
            if self.is_scalar(o) or self.uniform_value(o) is not None:
                continue
            if self.avals[o].shape != shape:
                return False
            if o in self.inputs and self.owned.get(self.buffer.get(o), False):
                return False
        return True

    def recipe(self, s: int, made: dict[int, Instr]) -> tuple[Instr, ...] | None:
        """The instructions computing loop value ``s`` (dependencies first),
        ``made`` the loop's members by result, or None when one of them is
        not `recomputable`, reads an array that is neither an input, a
        constant nor a value of the same loop with a recipe, or the recipe
        passes `MAX_RECIPE` instructions."""
        if s in self.recipes:
            return self.recipes[s]
        self.recipes[s] = None  # no cycles in a tape, but no recursion past one
        ins = made.get(s)
        if ins is None or not self.recomputable(ins):
            return None
        steps: dict[int, Instr] = {}
        for o in ins.ins:
            if (self.is_scalar(o) or self.uniform_value(o) is not None
                    or o in self.tape.consts or o in self.inputs):
                continue
            below = self.recipe(o, made) if o in made else None
            if below is None:  # an array of an earlier step: its buffer may be reused
                return None
            steps.update((dep.out, dep) for dep in below)
        steps[s] = ins
        if len(steps) > MAX_RECIPE:
            return None
        self.recipes[s] = tuple(steps.values())
        return self.recipes[s]

    def defers(self, s: int, later: Sequence[int], made: dict[int, Instr]) -> bool:
        """Is loop value ``s``, read after the loop at positions ``later``,
        left to its readers' loops rather than stored?"""
        if s in self.placed or self.last_use[s] >= len(self.tape.instrs):  # an output
            return False
        for r in later:
            reader = self.tape.instrs[r]
            if registry[reader.prim].effect is not None:  # a guard after the loop reads it
                return False
            if ONLY_LOOP_READERS and (registry[reader.prim] not in self.ELEMENTWISE
                    or self.avals[reader.out].shape != self.avals[s].shape
                    or self.vector_loop(reader) is not None):
                return False
        return self.recipe(s, made) is not None

    def inline_reads(self, ins: Instr) -> bool:
        """Will ``ins`` read its deferred operands in a loop of its own
        shape, where their recipes can run?"""
        if registry[ins.prim] not in self.ELEMENTWISE:
            return False
        if self.loop is not None and self.joins_loop(ins):
            return True
        return self.starts_loop(ins)

    def materialized(self, ins: Instr) -> list[_Step]:
        """Steps making the deferred operands of ``ins`` into arrays, unless
        ``ins`` recomputes them in its loop (`recompute_operands`)."""
        deferred = [s for s in dict.fromkeys(ins.ins) if s in self.deferred]
        if not deferred:
            return []
        shape = self.avals[ins.out].shape
        inline = self.inline_reads(ins)
        return [self.materialize(s) for s in deferred
                if not inline or self.avals[s].shape != shape]

    def materialize(self, s: int) -> _Step:
        """The deferred value ``s`` made into an array by a loop of its recipe."""
        outer, self.step = self.step, _Step()
        recipe = self.deferred.pop(s)
        aval = self.avals[s]
        self.define_array(recipe[-1], f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        lines, above = [], set()
        for dep in recipe:  # dependencies first
            lines.append(self.elementwise_line(dep, above, aval.shape))
            above.add(dep.out)
        target = self.flat(s)  # its flat view's line (of an array of several axes) first
        self.step.lines.append(f"for i in range({math.prod(aval.shape)}):")
        self.step.lines += ["    " + line for line in lines]
        self.step.lines.append(f"    {target}[i] = e{s}")
        step, self.step = self.step, outer
        return step

    def recompute_operands(self, ins: Instr) -> None:
        """The recipes of the deferred operands of ``ins`` as members of the
        pending loop, before ``ins``: values of this loop only, never stored
        (`numba_loops._LoopFusion.close_loop`) nor accumulated (a reduction
        of one is not joined: it would change a pairwise sum's rounding)."""
        loop = self.loop
        for s in ins.ins:
            if s not in self.deferred or s in loop.values:
                continue
            for dep in self.deferred[s]:
                if dep.out in loop.values:
                    continue
                loop.members.append(dep)
                loop.values.add(dep.out)
                loop.recomputed.add(dep.out)
                for o in dep.ins:
                    if o in self.buffer:
                        loop.buffers_read.add(self.buffer[o])

    def elementwise_line(self, ins: Instr, values: set[int], shape: tuple[int, ...]) -> str:
        """``e<out> = ...``: an elementwise instruction in a loop over
        ``shape`` whose own values (``e<slot>``) are ``values``."""
        dtype = self.operand_dtype(ins)
        args = [f"e{s}" if s in values else
                self.ref(s, dtype) if self.is_scalar(s) else
                self.uniform_const(s) or
                f"{self.flat(s)}[{self.broadcast_index(s, shape)}]" for s in ins.ins]
        return f"e{ins.out} = {self.scalar_expr(ins, args)}"
