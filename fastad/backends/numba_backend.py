"""The Numba backend: a tape becomes Python source, compiled by ``numba.njit``.

Why generate source rather than interpret: a tape of scalar instructions (a
Python loop over ``x[i]``, traced) is tens of thousands of one-flop
instructions.  As straight-line code over local variables each is one machine
instruction on a register: no dispatch, no arena traffic.

How a slot appears in the generated code:

  shape ()            a local scalar variable ``v12`` (or a literal, for a
                      constant); 0-d arrays never appear.
  any other shape     a C-contiguous array variable.  Several slots may share
                      one *buffer* (a reshape is a view; an update whose input
                      dies there is done in place), so the generator tracks
                      buffers and the last instruction that reads each.
  weak constants      Python ints and floats (NEP 50) take the float dtype of
                      the instruction that reads them, written as a literal
                      of that dtype.
  constant arrays     slices of one packed argument per dtype, so that the
                      generated source (and its hash) does not hold the data.

The adjoint of a gather, ``scatter_add(acc, k, g)`` chained thousands of
times, becomes ``acc[k] += g`` on one buffer: an update is done in place when
no slot of the updated buffer is read again and the code owns that buffer
(it is neither an input nor a constant).

Long tapes are split into *parts* of about ``PART_LINES`` lines, each its own
jitted function called by one jitted ``kernel``: Numba's compile time grows
faster than linearly with the length of a function.  Scalars that cross a
part boundary travel through one "spill" array per dtype; arrays are passed
as arguments and returned.

Kernels are cached on disk: the generated module is written once into
``$FASTAD_CACHE_DIR/numba`` (default ``~/.cache/fastad/numba``) under the hash
of its source and compiled with ``cache=True``, so a tape compiles once per
machine, whichever process asks first.  Where that directory cannot be
created or written, kernels are compiled in memory, with one warning naming
the directory.

Fork safety: a process forked while another thread compiles would inherit
Numba's compiler lock (and this module's) held by a thread that does not
exist in the child, and hang on its first compile.  So a fork waits for a
running compile (``os.register_at_fork``: both locks are taken before the
fork and released after it, in parent and child alike).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import SignatureError
from ..primitives.registry import Primitive, check_table, registry
from ..primitives.registry import prims as P
from ..tape import Instr, Tape
from ..tracer import user_stacklevel
from ..transforms.analysis import affine, bitwise_uniform, c_strides, is_range
from ..transforms.analysis import is_weak as _is_weak
from .segmented import NOT_COMPILED

try:
    import numba
except ImportError:  # the backend registry then skips this backend
    numba = None

available = numba is not None

PART_LINES = 2000  # lines per generated function; see the module docstring
_FORMAT = "fastad-numba-2"  # written into every generated module, so part of its hash

# -- the primitive tables ------------------------------------------------------
# Scalar forms are Python operators where one exists: Numba types them
# fastest, and compile time is what this backend pays for its speed.
# Everything else, and every array form, is the NumPy ufunc, which Numba
# implements for scalars and broadcasting arrays with NumPy's semantics.
SCALAR_OPERATORS: dict[Primitive, str] = check_table({
    P.neg: "-{0}", P.square: "{0} * {0}",
    P.add: "{0} + {1}", P.sub: "{0} - {1}", P.mul: "{0} * {1}", P.div: "{0} / {1}",
    P.lt: "{0} < {1}", P.le: "{0} <= {1}", P.gt: "{0} > {1}", P.ge: "{0} >= {1}",
    P.eq: "{0} == {1}", P.ne: "{0} != {1}",
    P.real: "{0}.real", P.imag: "{0}.imag", P.conj: "{0}.conjugate()",
}, "numba_backend.SCALAR_OPERATORS")
UFUNCS: dict[Primitive, str] = check_table({
    P.neg: "negative", P.abs: "abs", P.exp: "exp", P.exp2: "exp2", P.log: "log",
    P.log2: "log2", P.log10: "log10", P.log1p: "log1p", P.expm1: "expm1", P.sqrt: "sqrt",
    P.cbrt: "cbrt", P.square: "square", P.reciprocal: "reciprocal", P.sin: "sin",
    P.cos: "cos", P.tan: "tan", P.arcsin: "arcsin", P.arccos: "arccos", P.arctan: "arctan",
    P.sinh: "sinh", P.cosh: "cosh", P.tanh: "tanh", P.arcsinh: "arcsinh",
    P.arccosh: "arccosh", P.arctanh: "arctanh", P.sign: "sign", P.floor: "floor",
    P.ceil: "ceil", P.round: "rint", P.logical_not: "logical_not",
    P.add: "add", P.sub: "subtract", P.mul: "multiply", P.div: "divide", P.pow: "power",
    P.maximum: "maximum", P.minimum: "minimum", P.arctan2: "arctan2", P.hypot: "hypot",
    P.logaddexp: "logaddexp", P.lt: "less", P.le: "less_equal", P.gt: "greater",
    P.ge: "greater_equal", P.eq: "equal", P.ne: "not_equal", P.logical_and: "logical_and",
    P.logical_or: "logical_or", P.real: "real", P.imag: "imag", P.conj: "conjugate",
}, "numba_backend.UFUNCS")
# Primitives the generated code runs as a call back into NumPy (in Numba's
# object mode, holding the GIL for that one instruction): Numba has no FFT.
# Names, as docs/conformance.md shows them; the primitive still has an emitter.
HOST_CALLS = frozenset({"fft"})
# Primitives NumPy defines on complex numbers that Numba does not (ordering,
# and functions of real numbers only): tapes applying them to complex values
# run on the reference backend.
REAL_ONLY = check_table(frozenset({
    P.maximum, P.minimum, P.lt, P.le, P.gt, P.ge, P.max, P.min, P.floor, P.ceil, P.round,
    P.cbrt, P.arctan2, P.hypot, P.logaddexp, P.logabsdet, P.detsign}),
    "numba_backend.REAL_ONLY")
# combine(acc, v) of a reduction; max and min let a NaN win, as NumPy does.
REDUCERS: dict[Primitive, str] = check_table({
    P.sum: "{acc} + {v}",
    P.prod: "{acc} * {v}",
    P.max: "{v} if ({v} > {acc} or {v} != {v}) else {acc}",
    P.min: "{v} if ({v} < {acc} or {v} != {v}) else {acc}",
}, "numba_backend.REDUCERS")
REDUCER_IDENTITY = {P.sum: 0, P.prod: 1}  # the value of an empty sum or product
REDUCER_START = {P.sum: 0, P.prod: 1, P.max: -np.inf, P.min: np.inf}

_NUMBA_TYPE = {"float64": "float64", "float32": "float32", "int64": "int64", "bool": "boolean",
               "complex128": "complex128", "complex64": "complex64"}
_COMPLEX_OF = {np.dtype(np.float32): np.dtype(np.complex64)}  # else complex128


def _literal(value: Any, dtype: np.dtype) -> str:
    """Source text of a scalar of ``dtype`` (the type Numba will give it)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c" or isinstance(value, (complex, np.complexfloating)):
        dtype = dtype if dtype.kind == "c" else _COMPLEX_OF.get(dtype, np.dtype(np.complex128))
        value = complex(value)
        text = f"complex({_literal(value.real, np.float64)}, {_literal(value.imag, np.float64)})"
        return text if dtype == np.complex128 else f"np.{dtype.name}({text})"
    if dtype.kind == "b":
        return repr(bool(value))
    if dtype.kind in "iu":
        return f"np.{dtype.name}({int(value)})"
    v = float(value)
    text = repr(v) if math.isfinite(v) else ("np.nan" if v != v else
                                              ("np.inf" if v > 0 else "-np.inf"))
    return text if dtype == np.float64 else f"np.{dtype.name}({text})"


def _shape(shape: Sequence[int]) -> str:
    return "(" + "".join(f"{d}, " for d in shape) + ")"


def _grid_of(flat: np.ndarray) -> tuple[int, ...] | None:
    """A shape over which the flat index table ``flat`` is affine: (n,) for a
    strided run, (rows, cols) for a block of a 2-D array read flat (the
    interior ``x[1:-1, 1:-1]`` of a rerolled nested loop), else None."""
    if flat.size == 0:
        return None
    if affine(flat) is not None:
        return (flat.size,)
    steps = np.diff(flat)
    cols = int(np.flatnonzero(steps != steps[0])[0]) + 1
    if flat.size % cols:
        return None
    grid = (flat.size // cols, cols)
    return grid if affine(flat.reshape(grid)) is not None else None


def _common_grid(flats: Sequence[np.ndarray]) -> tuple[int, ...] | None:
    """One shape over which every index table in ``flats`` is affine."""
    candidates = {g for g in map(_grid_of, flats) if g is not None}
    for grid in sorted(candidates, key=len, reverse=True):
        if all(affine(f.reshape(grid)) is not None for f in flats):
            return grid
    return None


MAX_DELAY = 4  # iterations a fused scatter may wait to keep its order (see _Loop)


def _scatter_delays(indexed: Sequence[tuple[Instr, np.ndarray]], grid: tuple[int, ...],
                    target: Callable[[Instr], int]) -> dict[int, tuple[int, int, int]] | None:
    """For each scatter of a fused loop, (delay, start, stride): its update of
    element ``start + stride * i`` uses the value computed ``delay``
    iterations earlier, so that every element of an accumulator receives its
    updates in tape order, as the scatters run one after another would, and
    results stay bitwise those of unfused code.  None when no such schedule
    exists (the loop then leaves the scatter out)."""
    groups: dict[int, list[tuple[Instr, int, list[int]]]] = {}
    for ins, flat in indexed:
        if ins.prim == "scatter_add":
            start, strides = affine(flat.reshape(grid))
            groups.setdefault(target(ins), []).append((ins, start, strides))
    delays = {}
    for members in groups.values():
        if len({(start, tuple(strides)) for _, start, strides in members}) == 1:
            delays.update((ins.out, (0, start, 0)) for ins, start, _ in members)
            continue  # every update of an iteration goes to one element
        strides = {tuple(st) for _, _, st in members}
        if len(grid) != 1 or len(strides) != 1 or strides.pop()[0] <= 0:
            return None
        step = members[0][2][0]
        low = min(start for _, start, _ in members)
        order = []
        for ins, start, _ in members:
            if (start - low) % step:
                return None
            order.append((start - low) // step)
            delays[ins.out] = (order[-1], low, step)
        if order != sorted(order) or order[-1] > MAX_DELAY:
            return None
    return delays


def _sink_scalars(tape: Tape) -> Tape:
    """The tape with each instruction on scalars moved down to just before its
    first reader.  A scalar computed from a loop's accumulators (the value of
    a sum, returned as an output) would otherwise close the loop before the
    adjoint's elementwise code, which never reads it, could join."""
    moved: list[Instr] = []
    pending: dict[int, Instr] = {}  # out slot -> instruction waiting for a reader

    def emit_needed(ins: Instr) -> None:
        """Emits the pending instructions ``ins`` reads, theirs first: a loop,
        not recursion, as a scalar chain can be a loop's whole length."""
        stack = [(ins, iter(ins.ins))]
        while stack:
            current, inputs = stack[-1]
            for s in inputs:
                waiting = pending.pop(s, None)
                if waiting is not None:
                    stack.append((waiting, iter(waiting.ins)))
                    break
            else:
                stack.pop()
                if current is not ins:
                    moved.append(current)

    for ins in tape.instrs:
        if (registry[ins.prim].effect is None and tape.avals[ins.out].shape == ()
                and all(tape.avals[s].shape == () for s in ins.ins)):
            pending[ins.out] = ins
            continue
        emit_needed(ins)
        moved.append(ins)
    for out in sorted(pending, key=lambda out: pending[out].out):  # read by outputs only
        waiting = pending.pop(out, None)
        if waiting is not None:
            emit_needed(waiting)
            moved.append(waiting)
    return Tape(inputs=tape.inputs, outputs=tape.outputs, consts=tape.consts, instrs=moved,
                avals=tape.avals)


def _nested_loops(lines: list[str], shape: Sequence[int]) -> tuple[str, str]:
    """Appends ``for i0 ...: for i1 ...:`` over ``shape``; returns the body's
    indentation and the flat C-order position of (i0, i1, ...)."""
    pad = ""
    for d, n in enumerate(shape):
        lines.append(f"{pad}for i{d} in range({n}):")
        pad += "    "
    return pad, " + ".join(f"i{d} * {st}" for d, st in enumerate(c_strides(shape))) or "0"


def _index_expr(start: int, strides: Sequence[int], names: Sequence[str]) -> str:
    terms = [str(start)] if start else []
    terms += [name if st == 1 else f"{name} * {st}" for name, st in zip(names, strides) if st]
    return " + ".join(terms) or "0"


# -- code generation -----------------------------------------------------------
@dataclass
class _Var:
    """A variable of the generated code that other instructions may read.

    ``local`` is the source of a variable every part defines for itself
    (constants, literals); ``deps`` are the names that source mentions."""

    scalar: bool
    dtype: np.dtype
    ndim: int
    local: str | None = None
    deps: tuple[str, ...] = ()


@dataclass
class _Loop:
    """Elementwise instructions of one shape fused into one loop over the
    elements, and full reductions of their values folded into accumulators:
    ``sum(sin(x) * x**2)`` allocates nothing.  Only values read outside the
    loop are stored into arrays.

    Gathers by an index table affine over the loop (``x[i + 1]``, a 2-D block)
    join as reads ``x[start + i * stride]``, and scatter-adds of loop values
    into an accumulator the code owns as in-place updates, so the adjoint of
    a rerolled scalar loop is one pass, as a hand-written gradient loop is.
    Their index tables set the loop's ``grid``: the nested loops the flat
    position ``i`` runs over."""

    shape: tuple[int, ...]
    members: list[Instr] = field(default_factory=list)
    reductions: list[Instr] = field(default_factory=list)
    positions: set[int] = field(default_factory=set)  # of its instructions in the tape
    values: set[int] = field(default_factory=set)  # elementwise values it computes
    results: set[int] = field(default_factory=set)  # values and accumulators
    buffers_read: set[int] = field(default_factory=set)
    indexed: list[tuple[Instr, np.ndarray]] = field(default_factory=list)  # with flat tables
    written: dict[int, int] = field(default_factory=dict)  # scatter output -> its buffer
    broadcasts: bool = False  # some member broadcasts an operand (nested loops per axis)
    prelude: list[_Step] = field(default_factory=list)  # accumulators its scatters make
    zeroed: dict[int, _Step] = field(default_factory=dict)  # scatter out -> prelude making +0s


@dataclass
class _Step:
    """The generated lines of one instruction and the variables they touch."""

    lines: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)


class _Generator:
    """Generates the code of each instruction of one tape (``steps``)."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape = _sink_scalars(tape)
        self.avals = tape.avals
        self.vars: dict[str, _Var] = {}
        self.name: dict[int, str] = {}  # slot -> variable name or scalar literal
        self.k = 0  # the instruction being generated
        self.step = _Step()
        self.loop: _Loop | None = None  # the elementwise loop being gathered
        self.loop_guards: list[Instr] = []  # guards on its accumulators, checked after it
        self.outputs: list[str] = []  # the variables returned, set by emit_outputs
        self.host_calls = False  # whether some instruction calls back into NumPy
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
        if self.loop is not None and b in self.loop.buffers_read:
            return False  # the pending loop, emitted after ins, still reads it
        shared = any(t != s and self.buffer.get(t) == b for t in ins.ins)
        return not shared and self.buffer_last_use[b] <= self.k

    def define_array(self, ins: Instr, expr: str, view_of: int | None = None) -> str:
        """``v{out} = expr``: a fresh buffer, or a view of ``view_of``'s buffer."""
        aval = self.avals[ins.out]
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
        return self.define_array(ins, f"np.full({_shape(aval.shape)}, {value}, "
                                      f"np.{aval.dtype.name})")

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
        steps = []
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
            if self.loop is not None and self.joins_loop(ins):
                self.join_loop(ins)
                continue
            if self.starts_loop(ins):
                pending, self.loop = self.loop, _Loop(self.avals[ins.out].shape)
                self.join_loop(ins)
                if pending is not None:  # another shape: a loop of its own, now
                    steps.append(self.close_loop())
                    self.loop = pending
                continue
            self.step = _Step()
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

    # -- fused elementwise loops ---------------------------------------------------
    ELEMENTWISE = frozenset(UFUNCS) | {P.where, P.astype}

    def starts_loop(self, ins: Instr) -> bool:
        shape = self.avals[ins.out].shape
        if ins.prim == "take":
            return shape != () and self.fusable_gather(ins) is not None
        return registry[ins.prim] in self.ELEMENTWISE and shape != () and math.prod(shape) > 0

    def fusable_gather(self, ins: Instr) -> np.ndarray | None:
        """The flat index table of a gather that can be a loop member: a table
        (not a slice, which is a view already) affine over some grid."""
        x, i = ins.ins
        idx = np.asarray(self.tape.consts.get(i, 0))
        if i not in self.tape.consts or idx.ndim == 0 or self.is_scalar(x) or is_range(idx):
            return None
        flat = idx.reshape(-1).astype(np.int64)
        return flat if _grid_of(flat) is not None else None

    def joins_loop(self, ins: Instr) -> bool:
        loop = self.loop
        if registry[ins.prim] in REDUCERS:  # a full reduction of a loop value: an accumulator
            x = ins.ins[0]
            return (x in loop.values and not ins.kwargs["keepdims"]
                    and len(ins.kwargs["axes"]) == len(loop.shape))
        if ins.prim in ("take", "scatter_add"):
            return self.indexed_joins(ins)
        # operands of the loop's shape or broadcast to it (the output's shape is
        # the broadcast of the operands'), never an accumulator still pending
        return (registry[ins.prim] in self.ELEMENTWISE and self.avals[ins.out].shape == loop.shape
                and not any(self.is_scalar(s) and s in loop.results for s in ins.ins)
                and not any(s in loop.written for s in ins.ins)
                and not (loop.indexed and self.broadcasts(ins)))

    def broadcasts(self, ins: Instr) -> bool:
        return any(not self.is_scalar(s) and self.avals[s].shape != self.loop.shape
                   for s in ins.ins)

    def indexed_joins(self, ins: Instr) -> bool:
        loop = self.loop
        if loop.broadcasts:
            return False
        if ins.prim == "take":
            flat = self.fusable_gather(ins)
            x = ins.ins[0]
            if (flat is None or self.avals[ins.out].shape != loop.shape or x in loop.results
                    or self.buffer.get(x) in loop.written.values()):
                return False
        else:
            x, i, v = ins.ins
            if i not in self.tape.consts or v not in loop.values:
                return False
            flat = np.asarray(self.tape.consts[i]).reshape(-1).astype(np.int64)
            if flat.size != math.prod(loop.shape) or self.is_scalar(x) or x in loop.values:
                return False
            if not (self.fresh_accumulator(x) or x in self.buffer and self.dies_here(x, ins)):
                return False
        indexed = loop.indexed + [(ins, flat)]
        grid = _common_grid([f for _, f in indexed])
        return grid is not None and _scatter_delays(indexed, grid, self.target) is not None

    def fresh_accumulator(self, x: int) -> bool:
        """Is ``x`` a constant of one value (the zeros an adjoint starts from),
        which a scatter into it makes as a new buffer?"""
        return self.uniform_value(x) is not None

    def target(self, ins: Instr) -> int:
        """The buffer a fused scatter updates (a key of its own for one that
        is yet to make its buffer)."""
        x = ins.ins[0]
        if x in self.tape.consts:
            return self.buffer.get(ins.out, -1 - ins.out)
        return self.buffer[x]

    def join_loop(self, ins: Instr) -> None:
        loop = self.loop
        loop.positions.add(self.k)
        loop.results.add(ins.out)
        if registry[ins.prim] in REDUCERS:
            loop.reductions.append(ins)
            return
        loop.members.append(ins)
        if ins.prim == "scatter_add":  # in place: the result is the target's variable
            x, i, _ = ins.ins
            loop.indexed.append((ins, np.asarray(self.tape.consts[i]).reshape(-1)
                                 .astype(np.int64)))
            if x in self.tape.consts:  # made before the loop, with the loop's step
                outer, self.step = self.step, _Step()
                self.writable(x, ins)
                loop.prelude.append(self.step)
                first = np.asarray(self.tape.consts[x]).reshape(-1)[0]
                if (self.fresh_accumulator(x) and first.dtype.kind == "f" and first == 0
                        and not np.signbit(first)):  # writable made it with np.full
                    loop.zeroed[ins.out] = self.step
                self.step = outer
            else:
                self.name[ins.out] = self.name[x]
                self.join(ins.out, self.buffer[x])
            loop.written[ins.out] = self.buffer[ins.out]
            return
        if ins.prim == "take":
            loop.indexed.append((ins, self.fusable_gather(ins)))
        else:
            loop.broadcasts = loop.broadcasts or self.broadcasts(ins)
        loop.values.add(ins.out)
        for s in ins.ins:
            if s in self.buffer:
                loop.buffers_read.add(self.buffer[s])

    def close_loop(self) -> _Step:
        loop, self.loop = self.loop, None
        size = math.prod(loop.shape)
        grid = _common_grid([flat for _, flat in loop.indexed]) if loop.indexed else None
        names = ["i"] if grid is None or len(grid) == 1 else [f"i{d}" for d in range(len(grid))]
        where = {ins.out: affine(flat.reshape(grid)) for ins, flat in loop.indexed}
        delays = _scatter_delays(loop.indexed, grid, self.target) if grid else {}
        scatter_at = {}  # scatter output -> the element it updates in iteration i
        for ins in loop.members:
            if ins.prim == "scatter_add":
                delay, low, step = delays[ins.out]
                scatter_at[ins.out] = _index_expr(*(where[ins.out] if delay == step == 0
                                                    else (low, [step])), names)
        most = max((d for d, _, _ in delays.values()), default=0)
        nested = loop.broadcasts or len(names) > 1
        local = {} if nested else self.local_accumulators(loop, scatter_at, size + most)
        self.step = _Step()
        for made in loop.prelude:
            self.step.lines += made.lines
            self.step.reads += made.reads
            self.step.defines += made.defines
        lines = self.step.lines
        stored = []
        for ins in loop.members:  # values read after the loop are kept in arrays
            if ins.out in loop.values and any(r not in loop.positions
                                              for r in self.readers[ins.out]):
                stored.append(ins)
                aval = self.avals[ins.out]
                self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        for ins in loop.reductions:
            dt = self.avals[ins.out].dtype
            lines.append(f"acc{ins.out} = {_literal(REDUCER_START[registry[ins.prim]], dt)}")
        body, late, shift, fill = [], [], [], []
        for ins in loop.members:
            if ins.prim == "scatter_add":
                continue
            if ins.prim == "take":
                position = _index_expr(*where[ins.out], names)
                body.append(f"e{ins.out} = {self.flat(ins.ins[0])}[{position}]")
                continue
            dtype = self.operand_dtype(ins)
            args = [f"e{s}" if s in loop.values else
                    self.ref(s, dtype) if self.is_scalar(s) else
                    self.uniform_const(s) or
                    f"{self.flat(s)}[{self.broadcast_index(s, loop.shape)}]" for s in ins.ins]
            body.append(f"e{ins.out} = {self.scalar_expr(ins, args)}")
        for ins in loop.members:
            if ins in stored:
                body.append(f"{self.flat(ins.out)}[i] = e{ins.out}")
        for ins in loop.reductions:
            acc = f"acc{ins.out}"
            combine = REDUCERS[registry[ins.prim]]
            body.append(f"{acc} = " + combine.format(acc=acc, v=f"e{ins.ins[0]}"))
        for ins in loop.members:  # in tape order: each element's updates keep their order
            if ins.prim != "scatter_add":
                continue
            buffer = loop.written[ins.out]
            target = f"t{local[buffer]}" if buffer in local else \
                f"{self.flat(ins.out)}[{scatter_at[ins.out]}]"
            value = f"e{ins.ins[2]}"
            delay = delays[ins.out][0]
            if delay == 0:
                body.append(f"{target} += {value}")
            else:  # the value of `delay` iterations ago, kept in q<out>_<delay>
                q = [f"q{ins.out}_{d}" for d in range(1, delay + 1)]
                zero = _literal(0, self.avals[ins.out].dtype)
                lines.append(f"{' = '.join(q)} = {zero}")
                late += [f"if i >= {delay} and i < {size + delay}:", f"    {target} += {q[-1]}"]
                shift += [f"{a} = {b}" for a, b in zip(q[:0:-1], q[-2::-1])]
                fill.append(f"{q[0]} = {value}")
        first = [f"t{o} = {_literal(0, self.avals[o].dtype)}" for o in local.values()]
        store = [line for o in local.values() for line in
                 ([f"if i < {self.avals[o].size}:", f"    {self.flat(o)}[i] = t{o}"]
                  if self.avals[o].size < size + most else [f"{self.flat(o)}[i] = t{o}"])]
        if nested:  # one loop per axis of the shape or grid
            pad, flat = _nested_loops(lines, loop.shape if loop.broadcasts else grid)
            lines += [f"{pad}i = {flat}"] + [pad + line for line in body]
        elif most:  # scatters wait up to `most` iterations past the last element
            lines.append(f"for i in range({size + most}):")
            lines += ["    " + line for line in first]
            lines += [f"    if i < {size}:"] + ["        " + line for line in body]
            lines += ["    " + line for line in late + store + shift]
            lines += [f"    if i < {size}:"] + ["        " + line for line in fill]
        else:
            lines.append(f"for i in range({size}):")
            lines += ["    " + line for line in first + body + store]
        for ins in loop.reductions:
            self.add_var(f"acc{ins.out}", ins.out, True, self.avals[ins.out].dtype)
        guards, self.loop_guards = self.loop_guards, []
        for ins in guards:
            self.emit_guard(ins)
        return self.step

    def local_accumulators(self, loop: _Loop, scatter_at: dict[int, str], visits: int
                           ) -> dict[int, int]:
        """The accumulators a 1-D loop may sum per element in a local variable
        and store once, instead of adding each update into memory: the loop
        made them as zeros and every update lands on element ``i`` in the
        iteration ``i`` that covers it (iterations 0 .. visits - 1).  Their
        arrays then start uninitialized, each element adding its updates in
        tape order to +0 as memory would, bit for bit.  Maps buffer -> the
        scatter output whose variable names it."""
        groups: dict[int, list[int]] = {}
        for ins in loop.members:
            if ins.prim == "scatter_add":
                groups.setdefault(loop.written[ins.out], []).append(ins.out)
        local = {}
        for buffer, outs in groups.items():
            made = outs[0]
            if (made in loop.zeroed and all(scatter_at[o] == "i" for o in outs)
                    and self.avals[made].size <= visits):
                local[buffer] = made
        for made in local.values():  # their arrays need no zeros
            name, aval = self.name[made], self.avals[made]
            empty = f"{name} = np.empty({_shape(aval.shape)}, np.{aval.dtype.name})"
            step = loop.zeroed[made]
            step.lines = [empty if line.startswith(f"{name} = ") else line for line in step.lines]
        return local

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
        if ins.prim == "astype":
            return f"np.{self.avals[ins.out].dtype.name}({self.real_part(ins, args[0])})"
        prim = registry[ins.prim]
        template = SCALAR_OPERATORS.get(prim)
        return template.format(*args) if template else f"np.{UFUNCS[prim]}({', '.join(args)})"

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

    def emit_elementwise(self, ins: Instr) -> None:
        dtype = self.operand_dtype(ins)
        args = [self.ref(s, dtype) for s in ins.ins]
        aval = self.avals[ins.out]
        if aval.shape == ():
            self.define_scalar(ins, self.scalar_expr(ins, args))
            return
        call = f"np.{UFUNCS[registry[ins.prim]]}({', '.join(args)}"
        for s in ins.ins:  # a dying operand of the result's shape and dtype holds it
            if self.avals[s] == aval and self.dies_here(s, ins):
                self.step.lines.append(f"{call}, {self.ref(s)})")
                self.alias(ins, s)
                return
        self.define_array(ins, call + ")")

    def emit_where(self, ins: Instr) -> None:
        dtype = self.operand_dtype(ins)
        c, a, b = (self.ref(s, dtype) for s in ins.ins)
        aval = self.avals[ins.out]
        if aval.shape == ():
            self.define_scalar(ins, f"{a} if {c} else {b}")
            return
        shape = _shape(aval.shape)
        c, a, b = (f"np.full({shape}, {text}, np.{kind})" if self.is_scalar(s) else text
                   for s, text, kind in zip(ins.ins, (c, a, b),
                                            ("bool_", aval.dtype.name, aval.dtype.name)))
        self.define_array(ins, f"np.where({c}, {a}, {b})")

    def real_part(self, ins: Instr, x: str) -> str:
        """x, or its real part when ``ins`` casts complex to real (as NumPy does)."""
        complex_to_real = (self.avals[ins.ins[0]].dtype.kind == "c"
                           and self.avals[ins.out].dtype.kind != "c")
        return f"{x}.real" if complex_to_real else x

    def emit_astype(self, ins: Instr) -> None:
        aval = self.avals[ins.out]
        x = self.real_part(ins, self.ref(ins.ins[0]))
        if aval.shape == ():
            self.define_scalar(ins, f"np.{aval.dtype.name}({x})")
        else:
            self.define_array(ins, f"{x}.astype(np.{aval.dtype.name})")

    def emit_stop_gradient(self, ins: Instr) -> None:
        self.alias(ins, ins.ins[0])

    def emit_guard(self, ins: Instr) -> None:
        pred = ins.ins[0]
        value = self.ref(pred) if self.is_scalar(pred) else f"{self.flat(pred)}[0]"
        self.step.lines.append(f"if bool({value}) != {bool(ins.kwargs['expected'])}:")
        self.step.lines.append("    return FAIL")  # the part fills in its failure tuple
        self.name[ins.out] = "True"

    # -- reductions and scans ----------------------------------------------------
    @staticmethod
    def blocks(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, int, int] | None:
        """(A, N, B) when ``axes`` are adjacent: x seen as (A, N, B) reduces over N."""
        axes = sorted(axes)
        if axes != list(range(axes[0], axes[-1] + 1)):
            return None
        return (math.prod(shape[:axes[0]]), math.prod(shape[axes[0]:axes[-1] + 1]),
                math.prod(shape[axes[-1] + 1:]))

    def as_blocks(self, s: int, axes: Sequence[int]) -> tuple[str, tuple[int, int, int]]:
        """Slot ``s`` as an (A, N, B) array to reduce over N (transposed if needed)."""
        shape, x = self.avals[s].shape, self.ref(s)
        dims = self.blocks(shape, axes)
        if dims is None:  # reduced axes apart: move them last
            kept = [a for a in range(len(shape)) if a not in axes]
            perm = tuple(kept + sorted(axes))
            x = f"np.ascontiguousarray(np.transpose({x}, {perm}))"
            dims = self.blocks([shape[a] for a in perm], range(len(kept), len(shape)))
        return f"{x}.reshape({_shape(dims)})", dims

    def emit_reduce(self, ins: Instr) -> None:
        x = ins.ins[0]
        axes = tuple(ins.kwargs["axes"])
        aval, xval = self.avals[ins.out], self.avals[x]
        combine = REDUCERS[registry[ins.prim]]
        lines, o = self.step.lines, ins.out
        if not axes:
            self.alias(ins, x)
            return
        if len(axes) == xval.ndim and xval.size > 0:  # everything: one accumulator
            xf = self.flat(x)
            lines.append(f"acc{o} = {xf}[0]")
            lines.append(f"for i in range(1, {xval.size}):")
            lines.append(f"    acc{o} = " + combine.format(acc=f"acc{o}", v=f"{xf}[i]"))
            if aval.shape == ():
                self.add_var(f"acc{o}", o, True, aval.dtype)
            else:
                self.full(ins, f"acc{o}")
            return
        dims = self.blocks(xval.shape, axes)
        if dims is not None and dims[1] > 0 and dims[2] == 1:  # trailing axes: row by row
            na, nn, _ = dims
            xf = self.flat(x)
            lines.append(f"r{o} = np.empty({na}, np.{aval.dtype.name})")
            lines.append(f"for a in range({na}):")
            lines.append(f"    row{o} = {xf}[a * {nn}]")
            lines.append(f"    for n in range(1, {nn}):")
            lines.append(f"        row{o} = "
                         + combine.format(acc=f"row{o}", v=f"{xf}[a * {nn} + n]"))
            lines.append(f"    r{o}[a] = row{o}")
            if aval.shape == ():
                self.define_scalar(ins, f"r{o}[0]")
            else:
                self.define_array(ins, f"r{o}.reshape({_shape(aval.shape)})")
            return
        x3, (na, nn, nb) = self.as_blocks(x, axes)
        if nn == 0:
            lines.append(f"r{o} = np.full(({na}, {nb}), {REDUCER_IDENTITY[registry[ins.prim]]}, "
                         f"np.{aval.dtype.name})")
        else:
            lines.append(f"x3_{o} = {x3}")
            lines.append(f"r{o} = x3_{o}[:, 0, :].copy()")
            lines.append(f"for a in range({na}):")
            lines.append(f"    for n in range(1, {nn}):")
            lines.append(f"        for b in range({nb}):")
            lines.append(f"            r{o}[a, b] = "
                         + combine.format(acc=f"r{o}[a, b]", v=f"x3_{o}[a, n, b]"))
        if aval.shape == ():
            self.define_scalar(ins, f"r{o}[0, 0]")
        else:
            self.define_array(ins, f"r{o}.reshape({_shape(aval.shape)})")

    def emit_cumsum(self, ins: Instr) -> None:
        x, o = ins.ins[0], ins.out
        axis, reverse = ins.kwargs["axis"], ins.kwargs["reverse"]
        aval = self.avals[o]
        if self.is_scalar(x):
            self.alias(ins, x)
            return
        na, nn, nb = self.blocks(aval.shape, [axis])
        out = self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        first, order, prev = ((nn - 1, f"range({nn - 1}, -1, -1)", "n + 1") if reverse
                              else (0, f"range({nn})", "n - 1"))
        self.step.lines += [
            f"x3_{o} = {self.ref(x)}.reshape(({na}, {nn}, {nb}))",
            f"o3_{o} = {out}.reshape(({na}, {nn}, {nb}))",
            f"for a in range({na}):",
            f"    for n in {order}:",
            f"        for b in range({nb}):",
            f"            o3_{o}[a, n, b] = x3_{o}[a, n, b] if n == {first} "
            f"else o3_{o}[a, {prev}, b] + x3_{o}[a, n, b]"]

    # -- shapes ------------------------------------------------------------------
    def emit_reshape(self, ins: Instr) -> None:
        x = ins.ins[0]
        aval = self.avals[ins.out]
        if aval.shape == self.avals[x].shape:
            self.alias(ins, x)
        elif self.is_scalar(x):
            self.full(ins, self.ref(x, aval.dtype))
        elif aval.shape == ():
            self.define_scalar(ins, f"{self.flat(x)}[0]")
        else:
            self.define_array(ins, f"{self.ref(x)}.reshape({_shape(aval.shape)})", view_of=x)

    def emit_transpose(self, ins: Instr) -> None:
        x, perm = ins.ins[0], tuple(ins.kwargs["perm"])
        if perm == tuple(range(len(perm))):
            self.alias(ins, x)
        else:
            self.define_array(ins, f"np.ascontiguousarray(np.transpose({self.ref(x)}, {perm}))")

    def emit_broadcast_to(self, ins: Instr) -> None:
        x = ins.ins[0]
        aval = self.avals[ins.out]
        if self.avals[x].shape == aval.shape:
            self.alias(ins, x)
        elif self.is_scalar(x):
            self.full(ins, self.ref(x, aval.dtype))
        else:  # one loop per axis, reading x's element at each position
            xf = self.flat(x)
            self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
            out = self.flat(ins.out)
            pad, flat = _nested_loops(self.step.lines, aval.shape)
            self.step.lines.append(f"{pad}{out}[{flat}] = {xf}[{self.broadcast_index(x, aval.shape)}]")

    # -- indexing ------------------------------------------------------------------
    def index_loop(self, idx: np.ndarray, body: str) -> None:
        """Visit every position of an index array: ``body`` sees ``j`` (the flat
        position in ``idx``) and ``src`` (the flat index it holds)."""
        lines = self.step.lines
        pattern = affine(idx)
        if pattern is None:  # a block of a 2-D array, read flat?
            grid = _grid_of(idx.reshape(-1))
            if grid is not None and len(grid) > 1:
                idx = idx.reshape(grid)
                pattern = affine(idx)
        if pattern is None:
            table = self.index_table(idx)
            lines += [f"for j in range({idx.size}):", f"    src = {table}[j]", "    " + body]
            return
        start, strides = pattern
        pad, position = _nested_loops(lines, idx.shape)
        source = _index_expr(start, strides, [f"i{d}" for d in range(len(strides))])
        lines += [f"{pad}j = {position}", f"{pad}src = {source}", pad + body]

    def emit_take(self, ins: Instr) -> None:
        x, idx = ins.ins[0], np.asarray(self.tape.consts[ins.ins[1]], dtype=np.int64)
        aval = self.avals[ins.out]
        if self.is_scalar(x):  # every index is 0
            if aval.shape == ():
                self.alias(ins, x)
            else:
                self.full(ins, self.ref(x))
        elif idx.ndim == 0:  # the scalar load of a traced loop over x[i]
            self.define_scalar(ins, f"{self.flat(x)}[{int(idx)}]")
        elif is_range(idx):  # a slice: a view
            start = int(idx.reshape(-1)[0])
            view = f"{self.flat(x)}[{start}:{start + idx.size}]"
            if aval.ndim != 1:
                view += f".reshape({_shape(aval.shape)})"
            self.define_array(ins, view, view_of=x)
        else:
            xf = self.flat(x)
            self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
            self.index_loop(idx, f"{self.flat(ins.out)}[j] = {xf}[src]")

    def emit_scatter(self, ins: Instr, update: str) -> None:
        x, v = ins.ins[0], ins.ins[2]
        idx = np.asarray(self.tape.consts[ins.ins[1]], dtype=np.int64)
        aval, o = self.avals[ins.out], ins.out
        if aval.shape == ():  # a 0-d target: update a 1-element buffer
            self.step.lines.append(f"b{o} = np.full(1, {self.ref(x, aval.dtype)}, "
                                   f"np.{aval.dtype.name})")
            target = f"b{o}"
        else:
            self.writable(x, ins)
            target = self.flat(ins.out)
        if self.is_scalar(v):
            value = self.ref(v, aval.dtype)
        elif self.avals[v].shape == idx.shape:
            value = f"{self.flat(v)}[j]"
        else:  # v broadcasts to idx's shape
            self.step.lines.append(f"vb{o} = np.broadcast_to({self.ref(v)}, "
                                   f"{_shape(idx.shape)}).copy().reshape({idx.size})")
            value = f"vb{o}[j]"
        if idx.ndim == 0:  # the adjoint of a scalar load: one in-place update
            self.step.lines.append(f"{target}[{int(idx)}] {update} {value.replace('[j]', '[0]')}")
        else:
            self.index_loop(idx, f"{target}[src] {update} {value}")
        if aval.shape == ():
            self.define_scalar(ins, f"{target}[0]")

    def emit_scatter_add(self, ins: Instr) -> None:
        self.emit_scatter(ins, "+=")

    def emit_scatter_set(self, ins: Instr) -> None:
        self.emit_scatter(ins, "=")

    # -- linear algebra: the 2-D call, looped over equal leading batch axes --------
    def batched(self, ins: Instr, call: str, core: tuple[int, ...]) -> None:
        aval, o = self.avals[ins.out], ins.out
        dt = aval.dtype.name
        operands = []
        for s in ins.ins:
            x = self.ref(s)
            if self.avals[s].dtype != aval.dtype and aval.dtype.kind in "fc":
                x = f"{x}.astype(np.{dt})"
            operands.append(x)
        a = self.avals[ins.ins[0]]
        if a.ndim == 2:
            expr = call.format(*operands)
            if aval.shape == ():
                self.define_scalar(ins, expr)
            else:
                self.define_array(ins, f"np.ascontiguousarray({expr})")
            return
        batch = math.prod(a.shape[:-2])
        lines = self.step.lines
        views = []
        for n, (s, x) in enumerate(zip(ins.ins, operands)):
            lines.append(f"m{n}_{o} = {x}.reshape({_shape((batch,) + self.avals[s].shape[-2:])})")
            views.append(f"m{n}_{o}[i]")
        lines += [f"o{o} = np.empty({_shape((batch,) + core)}, np.{dt})",
                  f"for i in range({batch}):",
                  f"    o{o}[i] = {call.format(*views)}"]
        self.define_array(ins, f"o{o}.reshape({_shape(aval.shape)})")

    def emit_matmul(self, ins: Instr) -> None:
        a, b = (self.avals[s] for s in ins.ins)
        self.batched(ins, "np.dot({0}, {1})", (a.shape[-2], b.shape[-1]))

    def emit_solve(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.solve({0}, {1})", self.avals[ins.ins[1]].shape[-2:])

    def emit_logabsdet(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[1]", ())

    def emit_detsign(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[0]", ())

    # -- host calls: NumPy functions Numba has no code for, called in object mode ----
    def emit_fft(self, ins: Instr) -> None:
        """NumPy's FFT with the GIL held, for the one instruction; the rest of the
        kernel stays compiled, and nothing is traced again."""
        aval, params = self.avals[ins.out], ins.kwargs
        transform = "ifftn" if params["inverse"] else "fftn"
        name = self.add_var(f"v{ins.out}", ins.out, False, aval.dtype)
        self.host_calls = True
        self.step.lines += [
            f"with objmode({name}='{_numba_type(aval.dtype, aval.ndim)}'):",
            f"    {name} = np.ascontiguousarray(np.fft.{transform}({self.ref(ins.ins[0])}, "
            f"axes={tuple(params['axes'])}, norm={params['norm']!r}), np.{aval.dtype.name})"]
        self.new_buffer(ins.out, owned=True)


# -- parts and the kernel ----------------------------------------------------------
# primitive -> the _Generator method that emits its code
EMITTERS: dict[Primitive, Callable[[_Generator, Instr], None]] = check_table({
    **{p: _Generator.emit_elementwise for p in UFUNCS},
    **{p: _Generator.emit_reduce for p in REDUCERS},
    P.where: _Generator.emit_where, P.astype: _Generator.emit_astype,
    P.stop_gradient: _Generator.emit_stop_gradient, P.guard: _Generator.emit_guard,
    P.cumsum: _Generator.emit_cumsum, P.reshape: _Generator.emit_reshape,
    P.transpose: _Generator.emit_transpose, P.broadcast_to: _Generator.emit_broadcast_to,
    P.take: _Generator.emit_take, P.scatter_add: _Generator.emit_scatter_add,
    P.scatter_set: _Generator.emit_scatter_set, P.matmul: _Generator.emit_matmul,
    P.solve: _Generator.emit_solve, P.logabsdet: _Generator.emit_logabsdet,
    P.detsign: _Generator.emit_detsign, P.fft: _Generator.emit_fft,
}, "numba_backend.EMITTERS")
assert all(p.elementwise for p in _Generator.ELEMENTWISE), "a loop member that is not elementwise"

# Builtin primitives the generated code does not compute, each with why: a
# compiled function whose tape holds one runs it as a host call (its NumPy
# implementation) between compiled segments (`backends.segmented`).
NOT_EMITTED: dict[Primitive, str] = check_table(dict(NOT_COMPILED),
                                                "numba_backend.NOT_EMITTED")


def _numba_type(dtype: np.dtype, ndim: int) -> str:
    base = _NUMBA_TYPE[np.dtype(dtype).name]
    return base if ndim == 0 else f"{base}[{', '.join([':'] * (ndim - 1) + ['::1'])}]"


def _placeholder(var: _Var) -> str:
    """A value of ``var``'s type, returned in place of it when a guard fails."""
    if var.scalar:
        return _literal(0, var.dtype)
    return f"np.empty({_shape((0,) * var.ndim)}, np.{var.dtype.name})"


def _split(steps: list[_Step], part_lines: int) -> list[list[_Step]]:
    parts: list[list[_Step]] = [[]]
    count = 0
    for step in steps:
        if count >= part_lines and parts[-1]:
            parts.append([])
            count = 0
        parts[-1].append(step)
        count += len(step.lines)
    return parts


def _module_source(gen: _Generator, steps: list[_Step], part_lines: int = PART_LINES
                   ) -> tuple[str, list[np.ndarray]]:
    """The module's source and the packed constant arguments of its kernel.

    One part is the kernel itself.  Several parts are functions the kernel
    calls in order, passing arrays along and scalars through spill arrays."""
    tape, vars_ = gen.tape, gen.vars
    parts = _split(steps, part_lines)
    single = len(parts) == 1
    kernel = 0 if single else len(parts)  # the kernel reads the outputs, after the parts
    inputs = [gen.name[s] for s in tape.inputs]
    home = {name: kernel if single else -1 for name in inputs}
    readers: dict[str, set[int]] = {}
    for p, part in enumerate(parts):
        for step in part:
            for name in step.defines:
                home.setdefault(name, p)
            for name in step.reads:
                readers.setdefault(name, set()).add(p)
    for name in gen.outputs:
        readers.setdefault(name, set()).add(kernel)
    packed_names = [f"const_{key}" for key in sorted(gen.packed)]

    def crosses(name: str) -> bool:
        return any(p != home[name] for p in readers.get(name, ()))

    spill: dict[str, dict[str, int]] = {}  # dtype -> variable -> position
    for name in home:
        var = vars_[name]
        if var.scalar and crosses(name):
            slots = spill.setdefault(var.dtype.name, {})
            slots[name] = len(slots)

    def spilled(name: str) -> str:
        dt = vars_[name].dtype.name
        return f"spill_{dt}[{spill[dt][name]}]"

    # Only a tape with guards returns a status flag: a literal ``True`` in the
    # returned tuple is boxed by unpickling on every call (~0.1 us).
    guarded = any("return FAIL" in line for step in steps for line in step.lines)

    def failure(names: list[str]) -> str:
        return "(False, " + "".join(f"{_placeholder(vars_[n])}, " for n in names) + ")"

    def success(names: list[str]) -> str:
        return "(" + ("True, " if guarded else "") + "".join(f"{n}, " for n in names) + ")"

    spill_args = [f"spill_{dt}" for dt in sorted(spill)]
    # a kernel that calls back into NumPy holds the GIL (Numba refuses nogil there)
    options = 'cache=True, error_model="numpy"' + ("" if gen.host_calls else ", nogil=True")
    out = [f"# {_FORMAT}: generated by fastad.backends.numba_backend; do not edit",
           "import numpy as np", "from numba import njit, objmode", ""]
    calls, body = [], []
    for p, part in enumerate(parts):
        reads = dict.fromkeys(n for step in part for n in step.reads)
        defined = dict.fromkeys(n for step in part for n in step.defines)
        imported = [n for n in reads if vars_[n].local is None and home[n] != p]
        exported = [n for n in defined if crosses(n)]
        locals_ = _with_deps([n for n in reads if vars_[n].local is not None], vars_)
        arrays_in = [n for n in imported if not vars_[n].scalar]
        arrays_out = [n for n in exported if not vars_[n].scalar]
        consts_in = [n for n in packed_names if any(n in vars_[m].deps for m in locals_)]
        params = arrays_in + consts_in + spill_args
        fail = failure(gen.outputs if single else arrays_out)
        body = [f"{n} = {vars_[n].local}" for n in locals_]
        body += [f"{n} = {spilled(n)}" for n in imported if vars_[n].scalar]
        body += [line.replace("return FAIL", f"return {fail}")
                 for step in part for line in step.lines]
        if single:
            break
        body += [f"{spilled(n)} = {n}" for n in exported if vars_[n].scalar]
        body.append("return " + success(arrays_out))
        out += [f"@njit({options})", f"def part{p}({', '.join(params)}):"]
        out += ["    " + line for line in body] + [""]
        targets = ("ok, " if guarded else "") + "".join(f"{n}, " for n in arrays_out)
        call = f"part{p}({', '.join(params)})"
        calls.append(f"{targets}= {call}" if targets else call)
    if not single:  # the kernel: spill arrays, the parts in order
        body = [f"spill_{dt} = np.empty({len(slots)}, np.{dt})"
                for dt, slots in sorted(spill.items())]
        body += [f"{spilled(n)} = {n}" for n in inputs if vars_[n].scalar and crosses(n)]
        for call in calls:
            body += [call] + (["if not ok:", f"    return {failure(gen.outputs)}"]
                              if guarded else [])
    results = [spilled(n) if n in spill.get(vars_[n].dtype.name, {}) and home[n] != -1 else n
               for n in gen.outputs]
    body.append("return " + success(results))
    signature = ", ".join([_numba_type(gen.avals[s].dtype, gen.avals[s].ndim)
                           for s in tape.inputs]
                          + [_numba_type(np.dtype(n[len("const_"):]), 1) for n in packed_names])
    out += [f'@njit("({signature}{"," if signature else ""})", {options})',
            f"def kernel({', '.join(inputs + packed_names)}):"]
    out += ["    " + line for line in body] + [""]
    packed = [np.concatenate(gen.packed[n[len("const_"):]]) for n in packed_names]
    return "\n".join(out), packed


def _with_deps(names: list[str], vars_: dict[str, _Var]) -> list[str]:
    """``names`` and the locals they are made from, each after what it needs."""
    done: dict[str, None] = {}

    def visit(n: str) -> None:
        if n in done or n not in vars_ or vars_[n].local is None:
            return
        for d in vars_[n].deps:
            visit(d)
        done[n] = None
    for n in names:
        visit(n)
    return list(done)


def generate(tape: Tape, part_lines: int = PART_LINES) -> tuple[str, list[np.ndarray]]:
    """The source of a module whose ``kernel(*inputs, *packed)`` runs ``tape``.

    It returns the tuple of outputs; a tape with guards returns ``(ok, *outputs)``,
    ``ok`` False when a guard disagrees."""
    gen = _Generator(tape)
    steps = gen.generate()
    return _module_source(gen, steps, part_lines)


# -- the disk cache ----------------------------------------------------------------
def cache_dir() -> Path:
    root = os.environ.get("FASTAD_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "fastad")
    return Path(root) / "numba"


_modules: dict[str, ModuleType] = {}
# held while a module is written and compiled; re-entrant so that a fork from
# the thread holding it (see `_before_fork`) does not wait for itself
_lock = threading.RLock()
_unwritable: set[str] = set()  # cache directories already warned about


def _compiler_lock() -> Any:
    """Numba's global compiler lock (every Numba compile holds it), where this
    Numba keeps it: ``numba.core.compiler_lock``, an object with the
    ``acquire`` and ``release`` of the re-entrant lock inside it."""
    try:
        from numba.core.compiler_lock import global_compiler_lock
    except ImportError:
        return None
    return global_compiler_lock if hasattr(global_compiler_lock, "acquire") else None


def _before_fork() -> None:
    """Wait for a running compile and keep others from starting until the fork
    is done: fastad's lock first, then Numba's (the order a compile takes them)."""
    _lock.acquire()
    lock = _compiler_lock()
    if lock is not None:
        lock.acquire()


def _after_fork() -> None:
    """In the parent and in the child: release what `_before_fork` took (the
    child's thread is the one that took them)."""
    lock = _compiler_lock()
    if lock is not None:
        lock.release()
    _lock.release()


if numba is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork)


def _key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def cached(tape: Tape) -> bool:
    """Is ``tape`` compiled already, in this process or in the disk cache?"""
    key = _key(generate(tape, PART_LINES)[0])
    if key in _modules:
        return True
    try:
        return any((cache_dir() / "__pycache__").glob(f"fastad_{key}.*.nbi"))
    except OSError:  # an unreadable cache directory caches nothing
        return False


def _load(source: str) -> ModuleType:
    """The module of ``source``, written to the cache directory once (compiled
    in memory when the directory cannot be written).

    Concurrent processes: the file is created by an atomic link of a complete
    temporary file and never rewritten, so its timestamp (which keys Numba's
    own cache index) is stable; Numba writes its cache files atomically."""
    key = _key(source)
    with _lock:
        if key in _modules:
            return _modules[key]
        directory = cache_dir()
        try:
            path = _written(directory, key, source)
        except OSError as error:
            module = _in_memory(directory, key, source, error)
        else:
            name = f"fastad_numba_{key}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # Numba's cache locates functions by module
            spec.loader.exec_module(module)
        _modules[key] = module
        return module


def _written(directory: Path, key: str, source: str) -> Path:
    """The path of ``source``'s module in ``directory``, written if it is not there."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fastad_{key}.py"
    if not path.exists():
        tmp = directory / f".fastad_{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(source)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race with the same content
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _in_memory(directory: Path, key: str, source: str, error: OSError) -> ModuleType:
    """``source``'s module compiled without the disk cache (Numba's
    ``cache=False``): the cache directory cannot be written."""
    if str(directory) not in _unwritable:
        _unwritable.add(str(directory))
        warnings.warn(f"fastad: the Numba cache directory {directory} cannot be written "
                      f"({error.strerror or error}); compiling in memory, without the disk "
                      "cache (set FASTAD_CACHE_DIR to a writable directory to keep compiled "
                      "kernels across processes)", RuntimeWarning, stacklevel=user_stacklevel())
    name = f"fastad_numba_{key}"
    module = ModuleType(name)
    code = compile(source.replace("cache=True", "cache=False"), f"<{name}>", "exec")
    exec(code, module.__dict__)  # noqa: S102 -- source generated from a validated tape
    return module


# -- the executable ------------------------------------------------------------------
class Executable:
    """A tape compiled by Numba; ``run(inputs)`` as every backend has it.

    The fast path hands the arguments to the kernel untouched: Numba checks
    dtype, dimension count, layout and writability against the kernel's one
    signature (raising TypeError), and ``run`` checks the shapes, which Numba
    does not know.  Anything else is converted once and the call retried.
    0-d outputs are NumPy scalars of their dtype."""

    def __init__(self, tape: Tape, source: str, packed: list[np.ndarray],
                 kernel: Callable[..., Any]) -> None:
        self.tape = tape
        self.source = source
        self.packed = tuple(packed)
        self.kernel = kernel
        self._in = [(tape.avals[s].shape, tape.avals[s].dtype) for s in tape.inputs]
        self._shapes = [shape or None for shape, _ in self._in]
        self._scalar_out = [(k, tape.avals[s].dtype.type) for k, s in enumerate(tape.outputs)
                            if tape.avals[s].shape == ()]
        self._guarded = any(registry[ins.prim].effect == "guard" for ins in tape.instrs)
        self.run = self._runner()

    def _coerce(self, k: int, value: Any) -> Any:
        shape, dtype = self._in[k]
        if isinstance(value, (bool, np.bool_)) or np.asarray(value).dtype.kind not in "fiuc":
            raise SignatureError(f"input {k}: expected a {dtype.name} array of shape {shape}, "
                                 f"got {type(value).__name__}")
        arr = np.array(value, dtype=dtype, order="C")  # a private, writable copy
        if arr.shape != shape:
            raise SignatureError(f"input {k}: expected shape {shape}, got {arr.shape}")
        return dtype.type(arr[()]) if shape == () else arr

    def _slow_run(self, inputs: Sequence[Any]) -> list[Any] | None:
        """Converts what Numba's signature rejects, then runs."""
        if len(inputs) != len(self._in):
            raise SignatureError(f"expected {len(self._in)} inputs, got {len(inputs)}")
        args = [self._coerce(k, v) for k, v in enumerate(inputs)]
        return self._results(self.kernel(*args, *self.packed))

    def _results(self, result: tuple[Any, ...]) -> list[Any] | None:
        if self._guarded:
            if not result[0]:
                return None
            result = result[1:]
        outs = list(result)
        for k, scalar in self._scalar_out:  # NumPy scalars of the output's dtype
            outs[k] = scalar(outs[k])
        return outs

    def _runner(self) -> Callable[[Sequence[Any]], list[Any] | None]:
        """``run``, written out for this kernel's arity: a W4-sized call is
        dominated by Python overhead, which generic ``*args`` code doubles."""
        n = len(self._in)
        if n == 0:
            return self._slow_run
        names = [f"a{k}" for k in range(n)]
        packed = [f"p{k}" for k in range(len(self.packed))]
        checks = [f"{a}.shape != s{k}" for k, (a, shape) in enumerate(zip(names, self._shapes))
                  if shape is not None]
        scalars = dict(self._scalar_out)
        first = 1 if self._guarded else 0
        outs = [f"o{k}(r[{first + k}])" if k in scalars else f"r[{first + k}]"
                for k in range(len(self.tape.outputs))]
        finish = (["    if not r[0]:", "        return None"] if self._guarded else []) + [
            f"    return [{', '.join(outs)}]"]
        call = f"kernel({', '.join(names + packed)})"
        lines = ["def run(inputs):",
                 "    try:",
                 f"        {', '.join(names)}, = inputs"]
        if checks:
            lines += [f"        if {' or '.join(checks)}:", "            raise TypeError"]
        lines += [f"        r = {call}",
                  "    except (TypeError, AttributeError, ValueError):",
                  "        return slow(inputs)"] + finish
        # run_args(args, which): see `fastad.backends.reference.RunsArgs`.  It
        # calls the compiled entry point, skipping Numba's type dispatch, which
        # trusts its arguments' layout: hence the exact checks first.
        exact = " or ".join(f"type({a}) is not ndarray or {a}.shape != s{k} or {a}.strides != t{k}"
                            f" or ({a}.dtype is not d{k} and {a}.dtype != d{k})"
                            for k, a in enumerate(names))
        lines += ["def run_args(args, which):",
                  f"    if len(args) != {n}:",
                  "        return None",
                  f"    {', '.join(names)}, = args",
                  f"    if {exact}:",
                  "        return None",
                  f"    r = {call.replace('kernel(', 'entry(', 1)}"] + finish[:-1] + [
                  line for k, out in enumerate(outs)
                  for line in (f"    if which == {k}:", f"        return {out}")] + [finish[-1]]
        scope: dict[str, Any] = {"kernel": self.kernel, "slow": self._slow_run,
                                 "entry": _entry_point(self.kernel), "ndarray": np.ndarray}
        for k, (shape, dtype) in enumerate(self._in):
            scope[f"d{k}"], scope[f"t{k}"] = dtype, np.empty(shape, dtype).strides
        scope.update({f"p{k}": v for k, v in enumerate(self.packed)})
        scope.update({f"s{k}": shape for k, shape in enumerate(self._shapes)})
        scope.update({f"o{k}": scalar for k, scalar in self._scalar_out})
        exec("\n".join(lines), scope)  # noqa: S102 -- text made above from shapes only
        if all(shape is not None for shape in self._shapes):
            self.run_args = scope["run_args"]
        return scope["run"]

    def run_args(self, args: tuple[Any, ...], which: int) -> Any:
        """Replaced by the generated one for a kernel whose inputs are arrays."""
        return None

    def __str__(self) -> str:
        return self.source


def _entry_point(kernel: Any) -> Callable[..., Any]:
    """The compiled wrapper of the kernel's one signature (no type dispatch),
    or the kernel itself where this Numba does not expose it."""
    try:
        return kernel.overloads[kernel.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):
        return kernel


def build(tape: Tape) -> Executable:
    if numba is None:
        raise RuntimeError("the Numba backend needs numba: pip install numba")
    source, packed = generate(tape, PART_LINES)
    module = _load(source)
    return Executable(tape, source, packed, module.kernel)
