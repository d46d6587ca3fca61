"""The Numba generator's state: a tape becomes steps of Python source.

`_Generator` walks the tape once and writes each instruction's lines as a
`_Step`, tracking what the generated code needs to stay correct and fast:
the variable each slot is (a local scalar, a literal, an array), the buffer
each array variable belongs to (views and in-place updates share one), the
last instruction reading each, and constant arrays packed into one argument
per dtype.  The code of each primitive is in `numba_emitters` and the fused
loops in `numba_loops` (both mixed into `_Generator`); `numba_source` joins
the steps into a module of jitted functions.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ..core.registry import registry
from ..core.tape import Instr, Tape
from ..transforms.analysis import bitwise_uniform, c_strides, is_range
from ..transforms.analysis import is_weak as _is_weak
from .numba_emitters import EMITTERS, _Emitters
from .numba_loop_instr import _LoopInstruction
from .numba_loops import (_Loop, _LoopFusion, _grouped_by_shape, _reads_before_writes,
                          _sink_scalars)
from .numba_products import _SmallProducts
from .numba_recompute import _Recompute
from .fallback import special_refusal
from .numba_tables import (SCALAR_OPERATORS, SPECIAL_FUNCTIONS, SPECIAL_IMPORT, UFUNCS,
                           _literal, _shape, _Step, _Var)
from .numba_vecmath import _VectorLoops


def _stacked_rows(tape: Tape) -> tuple[dict[int, tuple[int, int]], dict[int, Any],
                                       dict[int, int]]:
    """Rows made in place in the array they are stacked into.

    A stack (``fnp.stack``: scatter_sets of whole contiguous blocks, one
    after another, into a constant of one value) would make each row an
    array of its own and copy it: an allocation and a copy per row, and many
    large allocations in one call cost page faults.  Each row whose value
    (through reshapes and the in-place scatter-add chain that made it, every
    link read once) is a fresh array is instead made as a view of its block.
    Returns slot -> (the stack's first scatter_set, its block's start),
    that first scatter_set -> None when the blocks cover the array, else the
    constant's value and the ranges between the blocks (``[lo, hi)``, the
    only elements to fill: each block is written whole, by its row made in
    place or by the copy of its row, so a padded array's interior is not
    filled first), and each scatter_set of a stack -> its first."""
    readers: dict[int, list[int]] = {}
    for k, ins in enumerate(tape.instrs):
        for s in ins.ins:
            readers.setdefault(s, []).append(k)
    for s in tape.outputs:
        readers.setdefault(s, []).append(len(tape.instrs))
    made = {ins.out: (k, ins) for k, ins in enumerate(tape.instrs)}

    def read_once_by(s: int, k: int) -> bool:
        return s not in tape.consts and s in made and readers.get(s) == [k]

    root: dict[int, int] = {}  # scatter_set of a stack -> its first
    blocks: dict[int, list[tuple[int, int]]] = {}
    placed: dict[int, tuple[int, int]] = {}
    fill: dict[int, Any] = {}
    for k, ins in enumerate(tape.instrs):
        if ins.prim != "scatter_set":
            continue
        x, i, v = ins.ins
        idx = np.asarray(tape.consts.get(i, 0))
        aval = tape.avals[ins.out]
        if (i not in tape.consts or idx.ndim == 0 or not is_range(idx) or aval.shape == ()
                or tape.avals[v].size != idx.size or tape.avals[v].dtype != aval.dtype):
            continue
        if x in tape.consts:
            value = np.asarray(tape.consts[x]).reshape(-1)
            if not bitwise_uniform(value):
                continue
            first, fill[ins.out], blocks[ins.out] = ins.out, value[0], []
        elif x in root and read_once_by(x, k):
            first = root[x]
        else:
            continue
        root[ins.out] = first
        start = int(idx.reshape(-1)[0])
        blocks[first].append((start, idx.size))
        s, at = v, k
        while read_once_by(s, at):  # the row, back through reshapes and in-place updates
            placed[s] = (first, start)
            at, src = made[s]
            if src.prim not in ("reshape", "scatter_add"):
                break
            s = src.ins[0]
    stacks = {}
    for first, rows in blocks.items():
        rows.sort()
        if any(a + n > b for (a, n), (b, _) in zip(rows, rows[1:])):
            # overlapping blocks: a later row overwrites an earlier one's elements
            placed = {s: where for s, where in placed.items() if where[0] != first}
            continue
        size = tape.avals[first].size
        ends = [0] + [a + n for a, n in rows]
        gaps = [(lo, hi) for lo, hi in zip(ends, [a for a, _ in rows] + [size]) if hi > lo]
        stacks[first] = (fill[first], gaps) if gaps else None
    stacks = {first: fill for first, fill in stacks.items()
              if any(where[0] == first for where in placed.values())}
    return placed, stacks, {out: first for out, first in root.items() if first in stacks}


#: at most this many ranges between a stack's blocks are filled one by one
MAX_GAPS = 8


class _Generator(_LoopFusion, _Recompute, _LoopInstruction, _VectorLoops, _SmallProducts,
                 _Emitters):
    """Generates the code of each instruction of one tape (``steps``)."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape = _reads_before_writes(_sink_scalars(_grouped_by_shape(tape)))
        self.avals = tape.avals
        self.placed, self.stacks, self.stacked = _stacked_rows(tape)
        self.vars: dict[str, _Var] = {}
        self.name: dict[int, str] = {}  # slot -> variable name or scalar literal
        self.k = 0  # the instruction being generated
        self.step = _Step()
        self.loop: _Loop | None = None  # the elementwise loop being gathered
        self.loop_guards: list[Instr] = []  # guards on its accumulators, checked after it
        self.outputs: list[str] = []  # the variables returned, set by emit_outputs
        self.host_calls = False  # whether some instruction calls back into NumPy
        self.loops: list[int] = []  # loop instructions written, nested ones too (their names)
        self.module_lines: dict[str, None] = {}  # module-level names emitters need (LAPACK)
        self.scratch: set[str] = set()  # arrays loops make once, before them (`made_once`)
        self.inputs = set(tape.inputs)
        self.deferred: dict[int, tuple[Instr, ...]] = {}  # loop values not stored (`_Recompute`)
        self.recipes: dict[int, tuple[Instr, ...] | None] = {}
        end = len(tape.instrs)
        self.last_use = [-1] * len(self.avals)
        self.readers: list[list[int]] = [[] for _ in self.avals]
        for k, ins in enumerate(tape.instrs):
            for s in ins.ins:
                self.last_use[s] = k
                self.readers[s].append(k)
        for s in tape.outputs:
            self.last_use[s] = end + 1  # outlives every instruction
            self.readers[s].append(end + 1)
        # Buffers: an array slot belongs to the buffer it is (a view of).
        self.buffer: dict[int, int] = {}
        self.owned: dict[int, bool] = {}
        self.buffer_last_use: dict[int, int] = {}
        self.flat_view: dict[str, str] = {}
        # constant arrays, packed per dtype
        self.packed: dict[str, list[np.ndarray]] = {}
        self.packed_size: dict[str, int] = {}
        for s in tape.inputs:
            aval = self.avals[s]
            self.add_var(f"x{s}", s, aval.shape == (), aval.dtype)
            if aval.shape != ():
                self.new_buffer(s, owned=False)

    # -- variables -------------------------------------------------------------
    def add_var(self, name: str, slot: int | None, scalar: bool, dtype: np.dtype,
                local: str | None = None, deps: Sequence[str] = (), ndim: int | None = None
                ) -> str:
        if ndim is None:
            ndim = self.avals[slot].ndim if slot is not None else (0 if scalar else 1)
        self.vars[name] = _Var(scalar, np.dtype(dtype), ndim, local, tuple(deps))
        if slot is not None:
            self.name[slot] = name
        if local is None:
            self.step.defines.append(name)
        return name

    def read(self, name: str) -> str:
        if name in self.vars:
            self.step.reads.append(name)
        return name

    def ref(self, s: int, dtype: np.dtype | None = None) -> str:
        """The expression of slot ``s``; ``dtype`` is the type of a weak constant."""
        if s in self.tape.consts:
            return self.const_ref(s, dtype)
        return self.read(self.name[s])

    def const_ref(self, s: int, dtype: np.dtype | None) -> str:
        value, aval = self.tape.consts[s], self.avals[s]
        if _is_weak(value):
            return self.literal(value, dtype if dtype is not None else np.result_type(value))
        if aval.shape == ():
            return self.literal(np.asarray(value).reshape(()), aval.dtype)
        name = f"c{s}"
        if name not in self.vars:
            packed, part = self.pack(np.asarray(value, dtype=aval.dtype))
            self.add_var(name, None, False, aval.dtype,
                         local=f"{part}.reshape({_shape(aval.shape)})", deps=(packed,),
                         ndim=aval.ndim)
        return self.read(name)

    def literal(self, value: Any, dtype: np.dtype) -> str:
        text = _literal(value, dtype)
        if not text.startswith("np."):
            return text
        # np.float32(2.0) becomes one local per part, not one call per use
        name = "k_" + hashlib.sha1(text.encode()).hexdigest()[:10]
        if name not in self.vars:
            self.add_var(name, None, True, dtype, local=text)
        return self.read(name)

    def pack(self, arr: np.ndarray) -> tuple[str, str]:
        """A constant array as (packed argument, its slice holding ``arr``)."""
        key = arr.dtype.name
        start = self.packed_size.get(key, 0)
        self.packed.setdefault(key, []).append(np.ascontiguousarray(arr).reshape(-1))
        self.packed_size[key] = start + arr.size
        return f"const_{key}", f"const_{key}[{start}:{start + arr.size}]"

    def index_table(self, idx: np.ndarray) -> str:
        packed, part = self.pack(idx.astype(np.int64))
        return self.read(self.add_var(f"idx{self.k}", None, False, np.dtype(np.int64),
                                      local=part, deps=(packed,)))

    def flat(self, s: int) -> str:
        """A 1-D view of array slot ``s`` (every array variable is contiguous)."""
        aval = self.avals[s]
        base = self.ref(s)
        if aval.ndim == 1:
            return base
        if base not in self.flat_view:
            name, text = f"{base}_flat", f"{base}.reshape({aval.size})"
            if self.vars[base].local is not None:
                self.add_var(name, None, False, aval.dtype, local=text, deps=(base,))
            else:
                self.step.lines.append(f"{name} = {text}")
                self.add_var(name, None, False, aval.dtype)
            self.flat_view[base] = name
        return self.read(self.flat_view[base])

    def is_scalar(self, s: int) -> bool:
        return self.avals[s].shape == ()

    # -- buffers ---------------------------------------------------------------
    def new_buffer(self, s: int, owned: bool) -> None:
        self.owned[s] = owned
        self.join(s, s)

    def join(self, s: int, buffer: int) -> None:
        self.buffer[s] = buffer
        self.buffer_last_use[buffer] = max(self.buffer_last_use.get(buffer, -1),
                                           self.last_use[s])

    def dies_here(self, s: int, ins: Instr) -> bool:
        """May instruction ``ins`` overwrite the buffer of its operand ``s``?

        Only if the code owns it, no slot of it is read after ``ins``, and no
        other operand of ``ins`` reads it while it is being written."""
        b = self.buffer.get(s)
        if b is None or s in self.tape.consts or not self.owned[b]:
            return False
        if s in self.placed:  # its block of a stack is its own: the row's last use
            return self.last_use[s] <= self.k
        if self.loop is not None and b in self.loop.buffers_read:
            return False  # the pending loop, emitted after ins, still reads it
        shared = any(t != s and self.buffer.get(t) == b for t in ins.ins)
        # s itself read twice by an update of other positions, as
        # ``scatter_add(g, k, g)`` (the adjoint of ``x + x[::-1]``), reads
        # elements it has already changed (an elementwise one reads each
        # element before writing it)
        again = not registry[ins.prim].elementwise and list(ins.ins).count(s) > 1
        return not (shared or again) and self.buffer_last_use[b] <= self.k

    def define_array(self, ins: Instr, expr: str, view_of: int | None = None) -> str:
        """``v{out} = expr``: a fresh buffer, or a view of ``view_of``'s buffer."""
        aval = self.avals[ins.out]
        if view_of is None and ins.out in self.placed and expr.startswith("np.empty("):
            expr, view_of = self.block_view(ins.out)
        name = self.add_var(f"v{ins.out}", ins.out, False, aval.dtype)
        self.step.lines.append(f"{name} = {expr}")
        if view_of is None:
            self.new_buffer(ins.out, owned=True)
        elif view_of in self.buffer:
            self.join(ins.out, self.buffer[view_of])
        else:  # a view of a constant
            self.new_buffer(ins.out, owned=False)
        return name

    def define_scalar(self, ins: Instr, expr: str) -> str:
        name = self.add_var(f"v{ins.out}", ins.out, True, self.avals[ins.out].dtype)
        self.step.lines.append(f"{name} = {expr}")
        return name

    def alias(self, ins: Instr, s: int) -> None:
        """The result is slot ``s``'s value: the same variable, the same buffer."""
        self.name[ins.out] = self.ref(s)
        if s in self.buffer:
            self.join(ins.out, self.buffer[s])
        elif not self.is_scalar(s):  # a constant array
            self.new_buffer(ins.out, owned=False)

    def full(self, ins: Instr, value: str) -> str:
        aval = self.avals[ins.out]
        if ins.out in self.placed:  # filled in its block (`_stacked_rows`)
            view, first = self.block_view(ins.out)
            name = self.define_array(ins, view, view_of=first)
            self.step.lines.append(f"{name}[:] = {value}")
            return name
        return self.define_array(ins, f"np.full({_shape(aval.shape)}, {value}, "
                                      f"np.{aval.dtype.name})")

    # -- stacks made in place (`_stacked_rows`) ----------------------------------
    def block_view(self, s: int) -> tuple[str, int]:
        """A placed row's view of its block of the stack, and the stack's slot."""
        first, start = self.placed[s]
        aval = self.avals[s]
        view = f"{self.flat(first)}[{start}:{start + aval.size}]"
        if aval.ndim != 1:
            view += f".reshape({_shape(aval.shape)})"
        return view, first

    def accumulator(self, s: int) -> Any:
        """What a scatter into ``s`` updates: its buffer, or its block of a stack."""
        return ("block",) + self.placed[s] if s in self.placed else self.buffer[s]

    def make_stacks(self) -> _Step:
        """The arrays rows are stacked into, made before any row."""
        self.step = _Step()
        for first, gaps in self.stacks.items():
            aval = self.avals[first]
            name = self.add_var(f"v{first}", first, False, aval.dtype)
            self.step.lines.append(f"{name} = np.empty({_shape(aval.shape)}, "
                                   f"np.{aval.dtype.name})")
            self.new_buffer(first, owned=True)
            flat = self.flat(first)
            if gaps is not None:
                fill, ranges = gaps
                if len(ranges) > MAX_GAPS:  # one fill of the whole, not a line per gap
                    ranges = [(0, aval.size)]
                self.step.lines.extend(f"{flat}[{lo}:{hi}] = {_literal(fill, aval.dtype)}"
                                       for lo, hi in ranges)
        return self.step

    def emit_stacked(self, ins: Instr) -> None:
        """A scatter_set of a stack: nothing where its row was made in place,
        else the row copied into its block."""
        first = self.stacked[ins.out]
        x, i, v = ins.ins
        if ins.out != first:
            self.alias(ins, x)
        if self.buffer.get(v) == self.buffer[first]:
            return
        idx = np.asarray(self.tape.consts[i], dtype=np.int64)
        value = self.ref(v, self.avals[first].dtype) if self.is_scalar(v) else \
            f"{self.flat(v)}[j]"
        self.index_loop(idx, f"{self.flat(first)}[src] = {value}")

    def writable(self, s: int, ins: Instr) -> str:
        """A buffer holding ``s``'s value that ``ins`` may overwrite: ``s``'s own
        when it dies here (the chain of adjoint updates), else a copy."""
        if self.dies_here(s, ins):
            self.alias(ins, s)
            return self.name[ins.out]
        aval = self.avals[ins.out]
        if self.fresh_accumulator(s):  # zeros: made, not copied
            return self.full(ins, _literal(self.uniform_value(s), aval.dtype))
        return self.define_array(ins, f"{self.ref(s)}.copy()")

    # -- the instructions ------------------------------------------------------
    def generate(self) -> list[_Step]:
        """The steps of the tape, in order.  Elementwise instructions join the
        pending loop; an instruction that does not read the loop's values is
        emitted ahead of it, one that does closes the loop first.  A guard on
        the loop's accumulators waits for the loop's end: nothing in the loop
        can fail, and what follows it sees the guard first."""
        steps = [self.make_stacks()] if self.stacks else []
        for k, ins in enumerate(self.tape.instrs):
            self.k = k
            if (self.loop is not None and registry[ins.prim].effect == "guard"
                    and ins.ins[0] in self.loop.results and not self.joins_loop(ins)):
                self.loop_guards.append(ins)
                self.name[ins.out] = "True"
                continue
            if self.loop is not None and not self.joins_loop(ins):
                if self.loop_guards or any(s in self.loop.results for s in ins.ins):
                    steps.append(self.close_loop())
            if self.deferred:  # made into arrays unless ins recomputes them in its loop
                steps += self.materialized(ins)
            if self.loop is not None and self.joins_loop(ins):
                self.join_loop(ins)
                continue
            if self.starts_loop(ins):
                if self.loop is not None and self.switches_loop(ins):
                    steps.append(self.close_loop())
                pending, self.loop = self.loop, _Loop(self.avals[ins.out].shape)
                self.join_loop(ins)
                if pending is not None:  # another shape: a loop of its own, now
                    steps.append(self.close_loop())
                    self.loop = pending
                continue
            self.step = _Step()
            if ins.out in self.stacked:
                self.emit_stacked(ins)
                steps.append(self.step)
                continue
            emit = EMITTERS.get(registry[ins.prim])
            if emit is None:
                raise NotImplementedError(f"the Numba backend has no code for primitive "
                                          f"{ins.prim!r}")
            emit(self, ins)
            steps.append(self.step)
        self.k = len(self.tape.instrs)
        if self.loop is not None:
            steps.append(self.close_loop())
        self.step = _Step()
        self.emit_outputs()
        steps.append(self.step)
        return steps

    # -- constants of one value, and what loops and emitters share ---------------
    def fresh_accumulator(self, x: int) -> bool:
        """Is ``x`` a constant of one value (the zeros an adjoint starts from),
        which a scatter into it makes as a new buffer?"""
        return self.uniform_value(x) is not None

    def uniform_const(self, s: int) -> str | None:
        """A constant array of one repeated value (a broadcast scalar, as in
        ``100.0 * x`` differentiated) as a literal, or None."""
        value = self.uniform_value(s)
        return None if value is None else self.literal(value, self.avals[s].dtype)

    def uniform_value(self, s: int) -> Any:
        """The one value of a constant array of one bit pattern
        (`analysis.bitwise_uniform`) that a literal reproduces, or None."""
        if s not in self.tape.consts:
            return None
        value = np.asarray(self.tape.consts[s]).reshape(-1)
        if not bitwise_uniform(value):
            return None
        if value.dtype.kind in "fc" and np.isnan(value[0]) and \
                value[:1].tobytes() != np.full(1, np.nan, value.dtype).tobytes():
            return None  # a NaN of other bits than the literal np.nan's
        return value[0]

    def broadcast_index(self, s: int, shape: tuple[int, ...]) -> str:
        """The flat position in slot ``s`` of element (i0, i1, ...) of ``shape``."""
        own = self.avals[s].shape
        if own == shape:
            return "i"
        lead = len(shape) - len(own)
        terms = [f"i{lead + d} * {st}" if st != 1 else f"i{lead + d}"
                 for d, st in enumerate(c_strides(own)) if own[d] != 1]
        return " + ".join(terms) or "0"

    def scalar_expr(self, ins: Instr, args: list[str]) -> str:
        """The expression of an elementwise instruction on scalar operands."""
        if ins.prim == "where":
            return f"{args[1]} if {args[0]} else {args[2]}"
        if ins.prim == "broadcast_to":  # a member of a fused loop: its operand's element
            return args[0]
        if ins.prim == "astype":
            return f"np.{self.avals[ins.out].dtype.name}({self.real_part(ins, args[0])})"
        prim = registry[ins.prim]
        if prim in SPECIAL_FUNCTIONS:
            return f"{self.special_function(ins)}({', '.join(args)})"
        args = self.widened(ins, args)
        template = SCALAR_OPERATORS.get(prim)
        return template.format(*args) if template else f"np.{UFUNCS[prim]}({', '.join(args)})"

    def widened(self, ins: Instr, args: list[str]) -> list[str]:
        """``args`` of a float (complex) instruction in its result's precision,
        as NumPy casts its operands to the loop's dtype: Numba's own typing of
        a float32 and an int64 (``np.arctan2(x32, np.int64(2))``) computes in
        float32.  Weak constants are already literals of the right type."""
        out = self.avals[ins.out].dtype
        if out.kind not in "fc":
            return args
        widened = []
        for s, text in zip(ins.ins, args):
            dt = self.avals[s].dtype
            weak = s in self.tape.consts and _is_weak(self.tape.consts[s])
            if not weak and (dt.kind in "biu" or (dt.kind == out.kind
                                                  and dt.itemsize < out.itemsize)):
                text = f"np.{out.name}({text})"
            widened.append(text)
        return widened

    def special_function(self, ins: Instr) -> str:
        """The `numba_special` function computing ``ins`` in its result's
        dtype, imported by the generated module."""
        if (why := special_refusal(ins)) is not None:
            raise NotImplementedError(f"the Numba backend has no code for {ins.prim} of {why}")
        name = f"{SPECIAL_FUNCTIONS[registry[ins.prim]]}_{self.avals[ins.out].dtype.name}"
        self.module_lines[SPECIAL_IMPORT.format(name)] = None
        return name

    def emit_outputs(self) -> None:
        """Every output in a variable of its own: no two outputs share a buffer,
        and no output is an input, a constant, or a view of one."""
        returned: set[int] = set()
        for k, s in enumerate(self.tape.outputs):
            aval = self.avals[s]
            name = f"out{k}"
            if aval.shape == ():
                expr = self.ref(s, aval.dtype)
                if expr in self.vars and self.vars[expr].local is None:
                    name = expr
                else:
                    self.step.lines.append(f"{name} = {expr}")
                    self.add_var(name, None, True, aval.dtype)
            else:
                b = self.buffer.get(s)
                if s in self.tape.consts or not self.owned[b] or b in returned:
                    self.step.lines.append(f"{name} = {self.ref(s)}.copy()")
                    self.add_var(name, None, False, aval.dtype, ndim=aval.ndim)
                else:
                    name = self.ref(s)
                    returned.add(b)
            self.outputs.append(name)

    def operand_dtype(self, ins: Instr) -> np.dtype:
        """The dtype a weak constant operand of ``ins`` takes (NEP 50)."""
        for s in ins.ins:
            weak = s in self.tape.consts and _is_weak(self.tape.consts[s])
            if not weak and self.avals[s].dtype.kind in "fc":
                return self.avals[s].dtype
        out = self.avals[ins.out].dtype
        return out if out.kind in "fc" else np.dtype(np.float64)
