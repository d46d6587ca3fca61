"""The Numba backend: a tape becomes Python source, compiled by ``numba.njit``.

Why generate source rather than interpret: a tape of scalar instructions (a
Python loop over ``x[i]``, traced) is tens of thousands of one-flop
instructions.  As straight-line code over local variables, each is one
machine instruction on a register; no dispatch, no arena traffic.

How a slot is represented in the generated code:

  shape ()            a local scalar variable ``v12`` (or a literal, for a
                      constant); NumPy's 0-d arrays never appear.
  any other shape     a C-contiguous array variable.  Several slots may share
                      one *buffer* (a reshape is a view; an update whose input
                      dies there is done in place), so the generator tracks
                      buffers and their last use.
  weak constants      Python ints and floats (NEP 50) take the float dtype of
                      the instruction that reads them, written as a literal
                      of that dtype.

The adjoint of a gather, ``scatter_add(acc, k, g)`` chained thousands of
times, becomes ``acc[k] += g`` on one buffer: an update is done in place when
the updated slot dies at that instruction and the code owns its buffer (it is
neither an input nor a constant, and no other live slot views it).

Long tapes are split into *parts* of at most ``PART_LINES`` lines, each its
own jitted function called by one jitted ``kernel``: Numba's compile time
grows faster than linearly with the length of one function.  Scalars that
cross a part boundary travel through a "spill" array per dtype; arrays are
passed as arguments and returned.

Compiled kernels are cached on disk: the generated module is written once
into ``$FASTAD_CACHE_DIR/numba`` (default ``~/.cache/fastad/numba``) under
the hash of its source, and compiled with ``cache=True``, so the same tape
compiles once per machine, whichever process asks first.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from ..tape import Instr, Tape

try:
    import numba
except ImportError:  # the backend registry then skips this backend
    numba = None

available = numba is not None

PART_LINES = 1500  # lines per generated function; see the module docstring
_FORMAT = "fastad-numba-1"  # bump when generated code changes meaning

# -- the primitive tables ------------------------------------------------------
# Scalar forms are Python operators where one exists: they are what Numba
# types fastest, and compile time is the cost of this backend.  Everything
# else, and every array form, is the NumPy ufunc, which Numba implements for
# scalars and (broadcasting) arrays alike with NumPy's semantics.
SCALAR_OPERATORS = {
    "neg": "-{0}", "square": "{0} * {0}",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}",
    "eq": "{0} == {1}", "ne": "{0} != {1}",
}
UFUNCS = {
    "neg": "negative", "abs": "abs", "exp": "exp", "exp2": "exp2", "log": "log",
    "log2": "log2", "log10": "log10", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt",
    "cbrt": "cbrt", "square": "square", "reciprocal": "reciprocal", "sin": "sin",
    "cos": "cos", "tan": "tan", "arcsin": "arcsin", "arccos": "arccos", "arctan": "arctan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "arcsinh": "arcsinh",
    "arccosh": "arccosh", "arctanh": "arctanh", "sign": "sign", "floor": "floor",
    "ceil": "ceil", "round": "rint", "logical_not": "logical_not",
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide", "pow": "power",
    "maximum": "maximum", "minimum": "minimum", "arctan2": "arctan2", "hypot": "hypot",
    "logaddexp": "logaddexp", "lt": "less", "le": "less_equal", "gt": "greater",
    "ge": "greater_equal", "eq": "equal", "ne": "not_equal", "logical_and": "logical_and",
    "logical_or": "logical_or",
}
# combine(acc, v) of a reduction; max/min let a NaN win, as NumPy does.
REDUCERS = {
    "sum": "{acc} + {v}",
    "prod": "{acc} * {v}",
    "max": "{v} if ({v} > {acc} or {v} != {v}) else {acc}",
    "min": "{v} if ({v} < {acc} or {v} != {v}) else {acc}",
}
REDUCER_EMPTY = {"sum": 0, "prod": 1}
ALIASES = {"stop_gradient"}  # the value itself

_NUMBA_TYPE = {"float64": "float64", "float32": "float32", "int64": "int64", "bool": "boolean"}


def _literal(value: Any, dtype: np.dtype) -> str:
    """Source text of a scalar of ``dtype`` (the dtype Numba will type it as)."""
    if dtype.kind == "b":
        return repr(bool(value))
    if dtype.kind in "iu":
        return f"np.{dtype.name}({int(value)})"
    v = float(value)
    text = repr(v) if math.isfinite(v) else ("np.nan" if v != v else
                                              ("np.inf" if v > 0 else "-np.inf"))
    return text if dtype == np.float64 else f"np.{dtype.name}({text})"


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + "".join(f"{d}, " for d in shape) + ")"


def _c_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def _affine(idx: np.ndarray) -> tuple[int, list[int]] | None:
    """(start, strides) if ``idx[i0, i1, ...] == start + sum(i_k * strides_k)``."""
    if idx.size == 0:
        return None
    start = int(idx.reshape(-1)[0])
    strides = []
    for axis, d in enumerate(idx.shape):
        corner = [0] * idx.ndim
        if d > 1:
            corner[axis] = 1
        strides.append(int(idx[tuple(corner)]) - start if d > 1 else 0)
    grid = np.full(idx.shape, start, dtype=np.int64)
    for axis, s in enumerate(strides):
        shape = [1] * idx.ndim
        shape[axis] = idx.shape[axis]
        grid = grid + s * np.arange(idx.shape[axis], dtype=np.int64).reshape(shape)
    return (start, strides) if np.array_equal(grid, idx) else None


def _is_weak(value: Any) -> bool:
    # np.float64 subclasses float, so test the exact type.
    return type(value) in (int, float, bool)


# -- code generation -----------------------------------------------------------
@dataclass
class _Step:
    """The generated lines of one instruction and the variables they touch."""

    lines: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
    is_guard: bool = False


@dataclass
class _Var:
    """A variable of the generated code: a scalar (spilled across parts) or an array."""

    scalar: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    local: str | None = None  # source that (re)defines it in any part: constants


class _Generator:
    """Turns one tape into the source of a module defining ``kernel``."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self.avals = tape.avals
        self.vars: dict[str, _Var] = {}
        self.name: dict[int, str] = {}  # slot -> variable name (or scalar literal)
        n = len(tape.instrs)
        self.last_use = {s: -1 for s in range(len(self.avals))}
        for k, ins in enumerate(tape.instrs):
            for s in ins.ins:
                self.last_use[s] = k
        for s in tape.outputs:
            self.last_use[s] = n  # outlives every instruction
        # Buffers: every array slot belongs to the buffer it views.  A buffer
        # may be overwritten once none of its slots is read again.
        self.buffer: dict[int, int] = {}
        self.buffer_owned: dict[int, bool] = {}
        self.buffer_last_use: dict[int, int] = {}
        self.flat_view: dict[str, str] = {}
        # constants packed per dtype into one argument each
        self.packed: dict[str, list[np.ndarray]] = {}
        self.packed_size: dict[str, int] = {}
        self.step: _Step = _Step()
        self.k = 0

    # -- values --------------------------------------------------------------
    def new_var(self, name: str, slot: int | None, scalar: bool, dtype: np.dtype,
                shape: tuple[int, ...] = (), local: str | None = None) -> str:
        self.vars[name] = _Var(scalar, np.dtype(dtype), tuple(shape), local)
        if slot is not None:
            self.name[slot] = name
        if local is None:
            self.step.defines.append(name)
        return name

    def ref(self, s: int, dtype: np.dtype | None = None) -> str:
        """The expression of slot ``s``; ``dtype`` types a weak constant."""
        if s in self.tape.consts:
            return self.const_ref(s, dtype)
        name = self.name[s]
        self.step.reads.append(name)
        return name

    def const_ref(self, s: int, dtype: np.dtype | None) -> str:
        value = self.tape.consts[s]
        aval = self.avals[s]
        if _is_weak(value):
            dt = np.dtype(dtype) if dtype is not None else np.result_type(value)
            return self.literal(value, dt)
        if aval.shape == ():
            return self.literal(np.asarray(value).reshape(()), aval.dtype)
        name = f"c{s}"
        if name not in self.vars:
            arr = np.ascontiguousarray(value, dtype=aval.dtype)
            buf = self.pack(arr)
            self.new_var(name, None, False, aval.dtype, aval.shape,
                         local=f"{buf}.reshape({_shape_text(aval.shape)})")
        self.step.reads.append(name)
        return name

    def literal(self, value: Any, dtype: np.dtype) -> str:
        text = _literal(value, np.dtype(dtype))
        if not text.startswith("np."):
            return text
        # np.float32(2.0) becomes a per-part local: one call, not one per use
        name = "k_" + hashlib.sha1(text.encode()).hexdigest()[:10]
        if name not in self.vars:
            self.new_var(name, None, True, dtype, (), local=text)
        self.step.reads.append(name)
        return name

    def pack(self, arr: np.ndarray) -> str:
        """A constant array as a slice of the packed argument of its dtype."""
        key = np.dtype(arr.dtype).name
        start = self.packed_size.get(key, 0)
        self.packed.setdefault(key, []).append(arr.reshape(-1))
        self.packed_size[key] = start + arr.size
        return f"const_{key}[{start}:{start + arr.size}]"

    def index_array(self, idx: np.ndarray) -> str:
        name = f"idx{self.k}"
        self.new_var(name, None, False, np.dtype(np.int64), (idx.size,), local=self.pack(idx))
        self.step.reads.append(name)
        return name

    def flat(self, s: int) -> str:
        """A 1-D view of array slot ``s`` (its buffer is contiguous)."""
        aval = self.avals[s]
        base = self.ref(s)
        if aval.ndim == 1:
            return base
        if base not in self.flat_view:
            name = f"{base}_flat"
            var = self.vars[base]
            local = f"{base}.reshape({aval.size})" if var.local is not None else None
            if local is None:
                self.step.lines.append(f"{name} = {base}.reshape({aval.size})")
            self.new_var(name, None, False, aval.dtype, (aval.size,), local=local)
            self.flat_view[base] = name
        name = self.flat_view[base]
        self.step.reads.append(name)
        return name

    def is_scalar(self, s: int) -> bool:
        return self.avals[s].shape == ()

    # -- buffers -------------------------------------------------------------
    def join(self, s: int, buffer: int) -> None:
        self.buffer[s] = buffer
        self.buffer_last_use[buffer] = max(self.buffer_last_use.get(buffer, -1),
                                           self.last_use[s])

    def own(self, s: int) -> None:
        """Slot ``s`` is a fresh buffer the generated code may overwrite."""
        self.buffer_owned[s] = True
        self.join(s, s)

    def dies_here(self, s: int, ins: Instr) -> bool:
        """Can the buffer of ``s`` be overwritten by instruction ``ins``?"""
        if s in self.tape.consts or s not in self.buffer:
            return False
        b = self.buffer[s]
        others = [t for t in ins.ins if t != s and self.buffer.get(t) == b]
        return (self.buffer_owned.get(b, False) and not others
                and self.buffer_last_use[b] <= self.k)

    def define_array(self, ins: Instr, expr: str, view_of: int | None = None) -> str:
        """``v{out} = expr``: a new buffer, or a view of ``view_of``'s buffer."""
        aval = self.avals[ins.out]
        name = self.new_var(f"v{ins.out}", ins.out, False, aval.dtype, aval.shape)
        self.step.lines.append(f"{name} = {expr}")
        if view_of is None or view_of in self.tape.consts or view_of not in self.buffer:
            # a view of a constant or an input: never written
            if view_of is None:
                self.own(ins.out)
            else:
                self.buffer_owned[ins.out] = False
                self.join(ins.out, ins.out)
        else:
            self.join(ins.out, self.buffer[view_of])
        return name

    def define_scalar(self, ins: Instr, expr: str) -> str:
        aval = self.avals[ins.out]
        name = self.new_var(f"v{ins.out}", ins.out, True, aval.dtype)
        self.step.lines.append(f"{name} = {expr}")
        return name

    def alias(self, ins: Instr, s: int) -> None:
        """The output is the value of slot ``s`` (same variable, same buffer)."""
        expr = self.ref(s)
        self.name[ins.out] = expr
        if s in self.buffer:
            self.join(ins.out, self.buffer[s])
        elif not self.is_scalar(s):
            self.buffer_owned[ins.out] = False
            self.join(ins.out, ins.out)

    def writable_copy(self, s: int, ins: Instr) -> str:
        """A buffer holding ``s``'s value that this instruction may overwrite."""
        aval = self.avals[ins.out]
        if not self.is_scalar(s) and self.dies_here(s, ins):
            self.alias(ins, s)
            return self.name[ins.out]
        if s in self.tape.consts:
            value = np.asarray(self.tape.consts[s])
            if value.size and np.all(value == value.reshape(-1)[0]):
                # the adjoint accumulators: zeros made here, no copy of a constant
                fill = _literal(value.reshape(-1)[0], aval.dtype)
                return self.define_array(ins, f"np.full({_shape_text(aval.shape)}, {fill}, "
                                              f"np.{aval.dtype.name})")
        if self.is_scalar(s):
            return self.define_array(ins, f"np.full({_shape_text(aval.shape)}, "
                                          f"{self.ref(s, aval.dtype)}, np.{aval.dtype.name})")
        return self.define_array(ins, f"{self.ref(s)}.copy()")

    # -- the driver ------------------------------------------------------------
    def generate(self) -> list[_Step]:
        steps = []
        for k, ins in enumerate(self.tape.instrs):
            self.k = k
            self.step = _Step()
            emit = getattr(self, f"emit_{ins.prim}", None)
            if emit is None:
                emit = self.emit_elementwise if ins.prim in UFUNCS else None
            if emit is None and ins.prim in REDUCERS:
                emit = self.emit_reduce
            if emit is None:
                raise NotImplementedError(f"the Numba backend has no code for primitive "
                                          f"{ins.prim!r}")
            emit(ins)
            steps.append(self.step)
        return steps

    # -- elementwise -----------------------------------------------------------
    def operand_dtype(self, ins: Instr) -> np.dtype:
        """The dtype a weak constant operand of ``ins`` takes (NEP 50)."""
        for s in ins.ins:
            if s in self.tape.consts and _is_weak(self.tape.consts[s]):
                continue
            if self.avals[s].dtype.kind == "f":
                return self.avals[s].dtype
        out = self.avals[ins.out].dtype
        return out if out.kind == "f" else np.dtype(np.float64)

    def emit_elementwise(self, ins: Instr) -> None:
        dtype = self.operand_dtype(ins)
        args = [self.ref(s, dtype) for s in ins.ins]
        aval = self.avals[ins.out]
        if aval.shape == ():
            template = SCALAR_OPERATORS.get(ins.prim)
            expr = (template.format(*args) if template
                    else f"np.{UFUNCS[ins.prim]}({', '.join(args)})")
            self.define_scalar(ins, expr)
            return
        ufunc = f"np.{UFUNCS[ins.prim]}"
        # reuse a dying operand of the result's shape and dtype as the output
        for s in ins.ins:
            if (not self.is_scalar(s) and self.avals[s] == aval and self.dies_here(s, ins)):
                target = self.ref(s)
                self.step.lines.append(f"{ufunc}({', '.join(args)}, {target})")
                self.alias(ins, s)
                return
        self.define_array(ins, f"{ufunc}({', '.join(args)})")

    def emit_where(self, ins: Instr) -> None:
        dtype = self.operand_dtype(ins)
        c, a, b = (self.ref(s, dtype) for s in ins.ins)
        aval = self.avals[ins.out]
        if aval.shape == ():
            self.define_scalar(ins, f"{a} if {c} else {b}")
            return
        # np.where wants arrays of one dtype; broadcast scalars explicitly
        shape, dt = _shape_text(aval.shape), f"np.{aval.dtype.name}"
        ops = []
        for s, text in zip(ins.ins, (c, a, b)):
            kind = "np.bool_" if s == ins.ins[0] else dt
            ops.append(f"np.full({shape}, {text}, {kind})" if self.is_scalar(s) else text)
        self.define_array(ins, f"np.where({', '.join(ops)})")

    def emit_astype(self, ins: Instr) -> None:
        aval = self.avals[ins.out]
        x = self.ref(ins.ins[0])
        if aval.shape == ():
            self.define_scalar(ins, f"np.{aval.dtype.name}({x})")
        else:
            self.define_array(ins, f"{x}.astype(np.{aval.dtype.name})")

    def emit_stop_gradient(self, ins: Instr) -> None:
        self.alias(ins, ins.ins[0])

    def emit_guard(self, ins: Instr) -> None:
        pred = ins.ins[0]
        expected = bool(ins.kwargs["expected"])
        value = self.ref(pred) if self.is_scalar(pred) else f"{self.flat(pred)}[0]"
        self.step.lines.append(f"if bool({value}) != {expected}:")
        self.step.lines.append("    return FAIL")
        self.step.is_guard = True
        self.name[ins.out] = "True"

    # -- reductions and scans ----------------------------------------------------
    @staticmethod
    def blocks(shape: tuple[int, ...], axes: Sequence[int]) -> tuple[int, int, int] | None:
        """(A, N, B) when ``axes`` are adjacent: x viewed as (A, N, B) reduces over N."""
        axes = sorted(axes)
        if axes != list(range(axes[0], axes[-1] + 1)):
            return None
        return (math.prod(shape[:axes[0]]), math.prod(shape[axes[0]:axes[-1] + 1]),
                math.prod(shape[axes[-1] + 1:]))

    def as_blocks(self, s: int, axes: Sequence[int]) -> tuple[str, tuple[int, int, int]]:
        """``s`` as a 3-D (A, N, B) array reducing over N, transposing if needed."""
        shape = self.avals[s].shape
        x = self.ref(s)
        dims = self.blocks(shape, axes)
        if dims is None:
            kept = [a for a in range(len(shape)) if a not in axes]
            perm = tuple(kept + sorted(axes))
            x = f"np.ascontiguousarray(np.transpose({x}, {perm}))"
            shape = tuple(shape[a] for a in perm)
            dims = self.blocks(shape, range(len(kept), len(shape)))
        return f"{x}.reshape({_shape_text(dims)})", dims

    def emit_reduce(self, ins: Instr) -> None:
        x = ins.ins[0]
        axes, keepdims = tuple(ins.kwargs["axes"]), ins.kwargs["keepdims"]
        aval = self.avals[ins.out]
        combine = REDUCERS[ins.prim]
        if self.is_scalar(x):  # reducing a 0-d value over no axes
            self.alias(ins, x) if aval.shape == () else self.define_array(
                ins, f"np.full({_shape_text(aval.shape)}, {self.ref(x)})")
            return
        xshape = self.avals[x].shape
        if not axes:
            self.define_array(ins, f"{self.ref(x)}.copy()")
            return
        lines = self.step.lines
        if len(axes) == len(xshape) and self.avals[x].size > 0:
            xf = self.flat(x)
            acc = f"acc{ins.out}"
            lines.append(f"{acc} = {xf}[0]")
            lines.append(f"for i in range(1, {self.avals[x].size}):")
            lines.append(f"    {acc} = " + combine.format(acc=acc, v=f"{xf}[i]"))
            if aval.shape == ():
                self.name[ins.out] = acc
                self.new_var(acc, ins.out, True, aval.dtype)
            else:
                self.define_array(ins, f"np.full({_shape_text(aval.shape)}, {acc})")
            return
        x3, (a_, n_, b_) = self.as_blocks(x, axes)
        out = f"r{ins.out}"
        self.new_var(out, None, False, aval.dtype, (a_, b_))
        if n_ == 0:
            lines.append(f"{out} = np.full(({a_}, {b_}), {REDUCER_EMPTY[ins.prim]}, "
                         f"np.{aval.dtype.name})")
        else:
            lines.append(f"x3 = {x3}")
            lines.append(f"{out} = x3[:, 0, :].copy()")
            lines.append(f"for a in range({a_}):")
            lines.append(f"    for n in range(1, {n_}):")
            lines.append(f"        for b in range({b_}):")
            lines.append(f"            {out}[a, b] = "
                         + combine.format(acc=f"{out}[a, b]", v="x3[a, n, b]"))
        if aval.shape == ():
            self.define_scalar(ins, f"{out}[0, 0]")
        else:
            self.define_array(ins, f"{out}.reshape({_shape_text(aval.shape)})", view_of=None)

    def emit_cumsum(self, ins: Instr) -> None:
        x = ins.ins[0]
        axis, reverse = ins.kwargs["axis"], ins.kwargs["reverse"]
        aval = self.avals[ins.out]
        if self.is_scalar(x):
            self.alias(ins, x)
            return
        a_, n_, b_ = self.blocks(aval.shape, [axis])
        out = self.define_array(ins, f"np.empty({_shape_text(aval.shape)}, "
                                     f"np.{aval.dtype.name})")
        lines = self.step.lines
        lines.append(f"x3 = {self.ref(x)}.reshape(({a_}, {n_}, {b_}))")
        lines.append(f"o3 = {out}.reshape(({a_}, {n_}, {b_}))")
        order = f"range({n_} - 1, -1, -1)" if reverse else f"range({n_})"
        prev = "n + 1" if reverse else "n - 1"
        first = n_ - 1 if reverse else 0
        lines.append(f"for a in range({a_}):")
        lines.append(f"    for n in {order}:")
        lines.append(f"        for b in range({b_}):")
        lines.append(f"            o3[a, n, b] = x3[a, n, b] if n == {first} "
                     f"else o3[a, {prev}, b] + x3[a, n, b]")

    # -- shapes ------------------------------------------------------------------
    def emit_reshape(self, ins: Instr) -> None:
        x = ins.ins[0]
        aval = self.avals[ins.out]
        if self.is_scalar(x):
            if aval.shape == ():
                self.alias(ins, x)
            else:
                self.define_array(ins, f"np.full({_shape_text(aval.shape)}, {self.ref(x)}, "
                                       f"np.{aval.dtype.name})")
        elif aval.shape == ():
            self.define_scalar(ins, f"{self.flat(x)}[0]")
        elif aval.shape == self.avals[x].shape:
            self.alias(ins, x)
        else:
            self.define_array(ins, f"{self.ref(x)}.reshape({_shape_text(aval.shape)})",
                              view_of=x)

    def emit_transpose(self, ins: Instr) -> None:
        x = ins.ins[0]
        perm = tuple(ins.kwargs["perm"])
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
            self.define_array(ins, f"np.full({_shape_text(aval.shape)}, "
                                   f"{self.ref(x, aval.dtype)}, np.{aval.dtype.name})")
        else:
            self.define_array(ins, f"np.broadcast_to({self.ref(x)}, "
                                   f"{_shape_text(aval.shape)}).copy()")

    # -- indexing ------------------------------------------------------------------
    def index_loop(self, idx: np.ndarray, body: str) -> None:
        """Loop over every position of an index array; ``body`` sees ``j`` (the
        position, flat) and ``src`` (the flat index it holds)."""
        lines = self.step.lines
        pattern = _affine(idx)
        if pattern is None:
            table = self.index_array(idx)
            lines.append(f"for j in range({idx.size}):")
            lines.append("    src = " + f"{table}[j]")
            lines.append("    " + body)
            return
        start, strides = pattern
        loops = [f"i{d}" for d in range(idx.ndim)]
        pad = ""
        for d, n in enumerate(idx.shape):
            lines.append(f"{pad}for i{d} in range({n}):")
            pad += "    "
        position = " + ".join(f"i{d} * {s}" for d, s in enumerate(_c_strides(idx.shape))) or "0"
        source = " + ".join([str(start)] + [f"i{d} * {s}" for d, s in enumerate(strides) if s])
        lines.append(f"{pad}j = {position}")
        lines.append(f"{pad}src = {source}")
        lines.append(pad + body)
        del loops

    def emit_take(self, ins: Instr) -> None:
        x, idx_slot = ins.ins
        idx = np.asarray(self.tape.consts[idx_slot], dtype=np.int64)
        aval = self.avals[ins.out]
        if self.is_scalar(x):  # every index is 0
            if aval.shape == ():
                self.alias(ins, x)
            else:
                self.define_array(ins, f"np.full({_shape_text(aval.shape)}, {self.ref(x)}, "
                                       f"np.{aval.dtype.name})")
            return
        if idx.ndim == 0:  # the scalar load of a traced loop over x[i]
            self.define_scalar(ins, f"{self.flat(x)}[{int(idx)}]")
            return
        pattern = _affine(idx)
        if pattern is not None and pattern[1] == _c_strides(idx.shape) or idx.size == 1 \
                and pattern is not None:
            start = pattern[0]
            view = f"{self.flat(x)}[{start}:{start + idx.size}]"
            if aval.ndim != 1:
                view += f".reshape({_shape_text(aval.shape)})"
            self.define_array(ins, view, view_of=x)
            return
        xf = self.flat(x)
        out = self.define_array(ins, f"np.empty({_shape_text(aval.shape)}, "
                                     f"np.{aval.dtype.name})")
        of = self.flat(ins.out)
        self.index_loop(idx, f"{of}[j] = {xf}[src]")
        del out

    def emit_scatter(self, ins: Instr, update: str) -> None:
        x, idx_slot, v = ins.ins
        idx = np.asarray(self.tape.consts[idx_slot], dtype=np.int64)
        aval = self.avals[ins.out]
        scalar_out = aval.shape == ()
        if scalar_out:  # a 0-d target: work on a 1-element buffer
            self.step.lines.append(f"b{ins.out} = np.full(1, {self.ref(x, aval.dtype)}, "
                                   f"np.{aval.dtype.name})")
            target = f"b{ins.out}"
        else:
            buf = self.writable_copy(x, ins)
            target = self.flat(ins.out) if aval.ndim != 1 else buf
        vshape = self.avals[v].shape
        if self.is_scalar(v):
            value = self.ref(v, aval.dtype)
            source = value
        else:
            if vshape != idx.shape:
                self.step.lines.append(f"vb{ins.out} = np.broadcast_to({self.ref(v)}, "
                                       f"{_shape_text(idx.shape)}).copy()")
                vf = f"vb{ins.out}.reshape({idx.size})"
            else:
                vf = self.flat(v)
            source = f"{vf}[j]"
        if idx.ndim == 0:
            self.step.lines.append(f"{target}[{int(idx)}] {update} "
                                   + (source.replace("[j]", "[0]")))
        else:
            self.index_loop(idx, f"{target}[src] {update} {source}")
        if scalar_out:
            self.define_scalar(ins, f"{target}[0]")

    def emit_scatter_add(self, ins: Instr) -> None:
        self.emit_scatter(ins, "+=")

    def emit_scatter_set(self, ins: Instr) -> None:
        self.emit_scatter(ins, "=")

    # -- linear algebra (batched over equal leading axes) -----------------------------
    def batched(self, ins: Instr, call: str, core: tuple[int, ...]) -> None:
        """out[i] = call(a[i], b[i], ...) over the flattened batch axes."""
        aval = self.avals[ins.out]
        dt = aval.dtype
        args = []
        for s in ins.ins:
            a = self.avals[s]
            x = self.ref(s)
            if a.dtype != dt:
                x = f"{x}.astype(np.{dt.name})"
            batch = math.prod(a.shape[:-2])
            args.append((x, batch, a.shape[-2:]))
        batch = args[0][1]
        if self.avals[ins.ins[0]].ndim == 2:
            expr = call.format(*(x for x, _, _ in args))
            if aval.shape == ():
                self.define_scalar(ins, expr)
            else:
                self.define_array(ins, f"np.ascontiguousarray({expr})")
            return
        out = f"o{ins.out}"
        self.step.lines.append(f"{out} = np.empty(({batch},) + {_shape_text(core)}, np.{dt.name})")
        views = [f"{x}.reshape(({n},) + {_shape_text(m)})[i]" for x, n, m in args]
        self.step.lines.append(f"for i in range({batch}):")
        self.step.lines.append(f"    {out}[i] = {call.format(*views)}")
        self.define_array(ins, f"{out}.reshape({_shape_text(aval.shape)})")

    def emit_matmul(self, ins: Instr) -> None:
        a, b = (self.avals[s] for s in ins.ins)
        self.batched(ins, "np.dot({0}, {1})", (a.shape[-2], b.shape[-1]))

    def emit_solve(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.solve({0}, {1})", self.avals[ins.ins[1]].shape[-2:])

    def emit_logabsdet(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[1]", ())

    def emit_detsign(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[0]", ())


