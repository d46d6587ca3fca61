"""The Numba generator's code for each primitive: one ``emit_*`` method each.

`EMITTERS` maps every primitive the Numba backend runs to the method that
writes its lines (through the generator's variables and buffers,
`numba_codegen._Generator`, of which `_Emitters` is a part); `NOT_EMITTED`
lists, with a reason, the builtin primitives it leaves to host calls between
compiled segments.  Both are keyed by the `Primitive` object and checked at
import.  An elementwise primitive needs no method of its own: its row in
`numba_tables.UFUNCS` (or `SPECIAL_FUNCTIONS`) gives it `emit_elementwise`
and a place in fused loops.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P
from ..core.tape import Instr
from ..transforms.analysis import affine, affine_grid, is_range
from .numba_loop_instr import _LoopInstruction
from .numba_sums import IMPORT as SUMS_IMPORT
from .numba_loops import _index_expr, _nested_loops
from .numba_tables import (REDUCER_IDENTITY, REDUCERS, SPECIAL_FUNCTIONS, UFUNCS, _numba_type,
                           _shape)
from .fallback import NOT_COMPILED


class _Emitters:
    """The per-primitive part of the generator (mixed into
    `numba_codegen._Generator`)."""

    def emit_elementwise(self, ins: Instr) -> None:
        vector = self.vector_loop(ins)
        if vector is not None:  # NumPy's loop over the whole array (`numba_vecmath`)
            self.emit_vector_loop(ins, *vector)
            return
        dtype = self.operand_dtype(ins)
        args = [self.ref(s, dtype) for s in ins.ins]
        aval = self.avals[ins.out]
        if aval.shape == ():
            self.define_scalar(ins, self.scalar_expr(ins, args))
            return
        if registry[ins.prim] in SPECIAL_FUNCTIONS:  # no ufunc: an empty array (a
            # nonempty one is a fused loop's member, `numba_loops.starts_loop`)
            self.special_function(ins)
            self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
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
        pairwise = registry[ins.prim] is P.sum and xval.dtype.kind == "f"
        if pairwise:  # float sums: NumPy's pairwise order, error ~ log n (numba_sums)
            self.module_lines[SUMS_IMPORT] = None
            zero = self.literal(0, aval.dtype)
        if len(axes) == xval.ndim and xval.size > 0:  # everything: one accumulator
            xf = self.flat(x)
            if pairwise:
                lines.append(f"acc{o} = {zero} + pairwise_sum({xf}, 0, {xval.size})")
            else:
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
            if pairwise:
                lines.append(f"    row{o} = {zero} + pairwise_sum({xf}, a * {nn}, {nn})")
            else:
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

    def emit_scan(self, ins: Instr) -> None:
        """cumsum, cumprod and prod_others along one axis (the C VM's SCAN_B):
        running sums or products; each element's product of the others in
        its slice, the quotient where the slice holds no zero."""
        x, o = ins.ins[0], ins.out
        aval = self.avals[o]
        if self.is_scalar(x):
            self.alias(ins, x)
            return
        na, nn, nb = self.blocks(aval.shape, [ins.kwargs["axis"]])
        out = self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        x3, o3 = f"x3_{o}", f"o3_{o}"
        self.step.lines += [f"{x3} = {self.ref(x)}.reshape(({na}, {nn}, {nb}))",
                            f"{o3} = {out}.reshape(({na}, {nn}, {nb}))"]
        if ins.prim == "prod_others":
            one = f"np.{aval.dtype.name}(1)"
            self.step.lines += [
                f"for a in range({na}):",
                f"    for b in range({nb}):",
                f"        rest, zeros = {one}, 0",
                f"        for n in range({nn}):",
                f"            if {x3}[a, n, b] == 0:",
                "                zeros += 1",
                "            else:",
                f"                rest *= {x3}[a, n, b]",
                f"        for n in range({nn}):",
                f"            v = {x3}[a, n, b]",
                f"            {o3}[a, n, b] = (rest / v if zeros == 0 else rest if v == 0 "
                f"and zeros == 1 else 0)"]
            return
        op = "*" if ins.prim == "cumprod" else "+"
        first, order, prev = ((nn - 1, f"range({nn - 1}, -1, -1)", "n + 1")
                              if ins.kwargs.get("reverse") else (0, f"range({nn})", "n - 1"))
        self.step.lines += [
            f"for a in range({na}):",
            f"    for n in {order}:",
            f"        for b in range({nb}):",
            f"            {o3}[a, n, b] = {x3}[a, n, b] if n == {first} "
            f"else {o3}[a, {prev}, b] {op} {x3}[a, n, b]"]

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
        elif perm == (1, 0) and (self.only_small_products(ins.out) or (
                self._only_multiplied(ins.out) and self._whole_array(x))):
            # X.T @ r: a Fortran-ordered view that BLAS reads as it is, where
            # a contiguous copy would cost a pass over X per call (Numba's dot
            # takes C and F arrays; x is C-ordered: an input, a constant or
            # an array the code made); a small product's loops read any view
            self.define_array(ins, f"{self.ref(x)}.T", view_of=x)
        else:
            self.define_array(ins, f"np.ascontiguousarray(np.transpose({self.ref(x)}, {perm}))")

    def _whole_array(self, x: int) -> bool:
        """Is ``x``'s variable a whole C-ordered array of its shape: a constant,
        or the variable of its buffer (an input, an array the code made, or
        one an in-place update or NumPy's loop wrote, `alias`), not a view?"""
        b = self.buffer.get(x)
        return x in self.tape.consts or (b is not None and self.name.get(x) == self.name.get(b)
                                         and self.avals[b].shape == self.avals[x].shape)

    def _only_multiplied(self, s: int) -> bool:
        """Whether every reader of ``s`` is a product of two matrices."""
        instrs = self.tape.instrs
        return all(k < len(instrs) and instrs[k].prim == "matmul"
                   and all(self.avals[o].ndim == 2 for o in instrs[k].ins)
                   for k in self.readers[s])

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
            grid = affine_grid(idx.reshape(-1))
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

    # -- gathers and scatters by traced rows (indices held in float64) ------------
    def row_loop(self, ins: Instr, table: int, idx: int, body: str) -> None:
        """A loop over the indices of ``idx`` computing k{out}, the row of
        ``table`` each names (wrapped as NumPy does; IndexError for one out
        of range or not an integer), around ``body`` (indented, in j and c)."""
        o, rows = ins.out, self.avals[table].shape[0]
        if self.is_scalar(idx):
            self.step.lines += [f"ix{o} = np.empty(1, np.float64)",
                                f"ix{o}[0] = {self.ref(idx, np.dtype(np.float64))}"]
            ix = f"ix{o}"
        else:
            ix = self.flat(idx)
        self.step.lines += [
            f"for j in range({self.avals[idx].size}):",
            f"    u{o} = {ix}[j]",
            f"    if not (u{o} >= -{rows} and u{o} < {rows}) or u{o} != np.floor(u{o}):",
            "        raise IndexError('an index is out of bounds for the axis it indexes "
            "(or not an integer)')",
            f"    k{o} = int(u{o})",
            f"    if k{o} < 0:",
            f"        k{o} += {rows}",
            *("    " + line for line in body.split("\n"))]

    def emit_gather_rows(self, ins: Instr) -> None:
        x, idx = ins.ins
        aval, o = self.avals[ins.out], ins.out
        r = math.prod(self.avals[x].shape[1:])
        xf = self.flat(x) if self.avals[x].ndim else self.ref(x)
        if aval.shape == ():  # one element of a vector
            self.row_loop(ins, x, idx, f"s{o} = {xf}[k{o}]")
            self.define_scalar(ins, f"s{o}")
            return
        self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{aval.dtype.name})")
        of = self.flat(ins.out)
        self.row_loop(ins, x, idx, f"for c in range({r}):\n"
                                   f"    {of}[j * {r} + c] = {xf}[k{o} * {r} + c]")

    def emit_scatter_add_rows(self, ins: Instr) -> None:
        acc, idx, v = ins.ins
        o = ins.out
        r = math.prod(self.avals[acc].shape[1:])
        self.writable(acc, ins)
        target = self.flat(ins.out)
        value = self.ref(v) if self.is_scalar(v) else f"{self.flat(v)}[j * {r} + c]"
        self.row_loop(ins, acc, idx, f"for c in range({r}):\n"
                                     f"    {target}[k{o} * {r} + c] += {value}")

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
        if self.small_product(ins):  # loops, not BLAS (`numba_products`)
            return
        a, b = (self.avals[s] for s in ins.ins)
        self.batched(ins, "np.dot({0}, {1})", (a.shape[-2], b.shape[-1]))

    def emit_gram(self, ins: Instr) -> None:
        n = self.avals[ins.out].shape[-1]
        self.batched(ins, "np.dot({0}, {0}.T)" if ins.kwargs["trans"] else "np.dot({0}.T, {0})",
                     (n, n))

    def emit_solve(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.solve({0}, {1})", self.avals[ins.ins[1]].shape[-2:])

    def emit_logabsdet(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[1]", ())

    def emit_detsign(self, ins: Instr) -> None:
        self.batched(ins, "np.linalg.slogdet({0})[0]", ())

    def emit_cholesky(self, ins: Instr) -> None:
        # Numba's cholesky: LAPACK potrf, the upper triangle zeroed, LinAlgError
        # where the matrix is not positive definite, as NumPy's
        self.batched(ins, "np.linalg.cholesky({0})", self.avals[ins.out].shape[-2:])

    def emit_triangular_matmul(self, ins: Instr) -> None:
        """op(T) b by blocks of TRI_BLOCK rows: each block of op(T)'s rows is
        copied without the columns its triangle leaves zero (the other
        triangle inside the diagonal block zeroed) and multiplied with one
        np.dot (gemm), so the product costs half a full gemm, as the VM's trmm."""
        aval, o = self.avals[ins.out], ins.out
        dt = aval.dtype.name
        n, k = aval.shape[-2], aval.shape[-1]
        batch = math.prod(aval.shape[:-2])
        a, b = (self.ref(s) if self.avals[s].dtype == aval.dtype else
                f"{self.ref(s)}.astype(np.{dt})" for s in ins.ins)
        trans = bool(ins.kwargs["trans"])
        op_lower = bool(ins.kwargs["lower"]) != trans  # op(T) is lower triangular
        cols = "0, e" if op_lower else f"s, {n}"
        rows = "t[lo:hi, s:e].T" if trans else "t[s:e, lo:hi]"
        zero = "r[i, s - lo + i + 1:e - lo] = 0" if op_lower else "r[i, :i] = 0"
        self.step.lines += [
            f"m0_{o} = {a}.reshape({_shape((batch, n, n))})",
            f"m1_{o} = {b}.reshape({_shape((batch, n, k))})",
            f"o{o} = np.empty({_shape((batch, n, k))}, np.{dt})",
            f"for p in range({batch}):",
            f"    t = m0_{o}[p]",
            f"    x = m1_{o}[p]",
            f"    for s in range(0, {n}, {TRI_BLOCK}):",
            f"        e = min(s + {TRI_BLOCK}, {n})",
            f"        lo, hi = {cols}",
            f"        r = np.empty((e - s, hi - lo), np.{dt})",
            f"        r[:] = {rows}",
            "        for i in range(e - s):",
            f"            {zero}",
            f"        o{o}[p, s:e] = np.dot(r, np.ascontiguousarray(x[lo:hi]))"]
        self.define_array(ins, f"o{o}.reshape({_shape(aval.shape)})")

    def packed_decomposition(self, ins: Instr, rows: int, body: list[str]) -> None:
        """A decomposition packed along the second-to-last axis, each matrix
        m{o}[p] computed in float64 (as NumPy computes float32 too, so the
        vectors' signs agree with it) and written into o{o}[p], rows x k."""
        aval, o = self.avals[ins.out], ins.out
        a_aval = self.avals[ins.ins[0]]
        m, n = a_aval.shape[-2:]
        batch = math.prod(a_aval.shape[:-2])
        self.step.lines += [
            f"m_{o} = {self.ref(ins.ins[0])}.reshape({_shape((batch, m, n))})",
            f"o{o} = np.empty({_shape((batch, rows, aval.shape[-1]))}, np.{aval.dtype.name})",
            f"for p in range({batch}):",
            f"    a_ = np.ascontiguousarray(m_{o}[p]).astype(np.float64)",
            *("    " + line for line in body)]
        self.define_array(ins, f"o{o}.reshape({_shape(aval.shape)})")

    def emit_svd(self, ins: Instr) -> None:
        # Numba's svd: gesdd (jobz 'S' when reduced), NumPy's driver
        o = ins.out
        m, n = self.avals[ins.ins[0]].shape[-2:]
        if min(m, n) == 0:
            return self.define_array(ins, f"np.zeros({_shape(self.avals[o].shape)}, "
                                          f"np.{self.avals[o].dtype.name})")
        self.packed_decomposition(ins, 1 + m + n, [
            "u_, s_, vh_ = np.linalg.svd(a_, full_matrices=False)",
            f"o{o}[p, 0] = s_",
            f"o{o}[p, 1:{1 + m}] = u_",
            f"o{o}[p, {1 + m}:] = vh_.T"])

    def emit_pinv(self, ins: Instr) -> None:
        """NumPy's pinv step by step: its SVD (in float64, rounded), singular values
        at most 1e-15 times the largest dropped, then V diag(1/s) U^T."""
        aval, o = self.avals[ins.out], ins.out
        m, n = self.avals[ins.ins[0]].shape[-2:]
        dt = aval.dtype.name
        if min(m, n) == 0:
            return self.define_array(ins, f"np.zeros({_shape(aval.shape)}, np.{dt})")
        self.packed_decomposition(ins, n, [
            "u_, s_, vh_ = np.linalg.svd(a_, full_matrices=False)",
            f"st_ = s_.astype(np.{dt})",
            "cut_ = 1e-15 * np.float64(st_.max())",
            f"inv_ = np.where(st_.astype(np.float64) > cut_, np.{dt}(1) / st_, np.{dt}(0))",
            f"w_ = inv_.reshape(-1, 1) * np.ascontiguousarray(u_.T).astype(np.{dt})",
            f"o{o}[p] = np.dot(np.ascontiguousarray(vh_.T).astype(np.{dt}), w_)"])

    def emit_qr(self, ins: Instr) -> None:
        # Numba's qr: geqrf then orgqr, as NumPy's reduced mode
        o = ins.out
        m, n = self.avals[ins.ins[0]].shape[-2:]
        if n == 0:
            return self.define_array(ins, f"np.zeros({_shape(self.avals[o].shape)}, "
                                          f"np.{self.avals[o].dtype.name})")
        self.packed_decomposition(ins, m + n, [
            "q_, r_ = np.linalg.qr(a_)",
            f"o{o}[p, :{m}] = q_",
            f"o{o}[p, {m}:] = r_"])

    def emit_eigh(self, ins: Instr) -> None:
        """LAPACK dsyevd per matrix, as numpy.linalg.eigh calls it: the same
        triangle, in float64 for float32 too (NumPy computes in double and
        rounds), with the workspace LAPACK's query asks for, so the results are
        NumPy's bit for bit, signs included.  Numba's own eigh reads the lower
        triangle only (a transposed call would flip vectors' signs against
        NumPy's 'U'), so the code calls the entry behind it, Numba's
        ``numba_ez_xxxevd`` (``numba.np.linalg._LAPACK``, not public API: the
        tests fail if a Numba release moves it), with the triangle asked for.
        Packed [w; V]; no convergence (as for most NaN matrices) raises
        LinAlgError where NumPy's call does."""
        aval, o = self.avals[ins.out], ins.out
        n = aval.shape[-1]
        batch = math.prod(aval.shape[:-2])
        if n == 0:
            return self.define_array(ins, f"np.zeros({_shape(aval.shape)}, "
                                          f"np.{aval.dtype.name})")
        self.module_lines.update(dict.fromkeys([
            "from numba import types as nb_types",
            "from numba.np.linalg import _LAPACK",
            "syevd = _LAPACK().numba_ez_xxxevd(nb_types.float64)"]))
        uplo = "L" if ins.kwargs["lower"] else "U"
        self.step.lines += [
            f"m_{o} = {self.ref(ins.ins[0])}.reshape({_shape((batch, n, n))})",
            f"o{o} = np.empty({_shape((batch, n + 1, n))}, np.{aval.dtype.name})",
            # z holds the matrix transposed: its row-major buffer is the matrix
            # column-major, as LAPACK reads it, and holds V column-major after
            f"z_{o} = np.empty({_shape((n, n))}, np.float64)",
            f"w_{o} = np.empty({n}, np.float64)",
            f"for p in range({batch}):",
            f"    z_{o}[:] = m_{o}[p].T",
            f"    info = syevd(ord('d'), ord('V'), ord('{uplo}'), {n}, z_{o}.ctypes, {n}, "
            f"w_{o}.ctypes)",
            "    if info != 0:",
            "        raise np.linalg.LinAlgError('Eigenvalues did not converge')",
            f"    o{o}[p, 0] = w_{o}",
            f"    o{o}[p, 1:] = z_{o}.T"]
        self.define_array(ins, f"o{o}.reshape({_shape(aval.shape)})")

    def emit_solve_triangular(self, ins: Instr) -> None:
        """Substitution by blocks of TRI_BLOCK rows: each block first takes the
        rows solved before it off its right-hand side with one np.dot (BLAS
        gemm), then is solved row by row; so the O(n^2 k) work is mostly gemm,
        and nothing is factorized.  A zero on the diagonal raises LinAlgError,
        as the reference's solve does."""
        aval, o = self.avals[ins.out], ins.out
        dt = aval.dtype.name
        a_slot, b_slot = ins.ins
        n, k = aval.shape[-2], aval.shape[-1]
        batch = math.prod(aval.shape[:-2])
        a, b = self.ref(a_slot), self.ref(b_slot)
        if self.avals[a_slot].dtype != aval.dtype:
            a = f"{a}.astype(np.{dt})"
        lower = bool(ins.kwargs["lower"])
        blocks = (f"range(0, {n}, {TRI_BLOCK})" if lower else
                  f"range({(n - 1) // TRI_BLOCK * TRI_BLOCK}, -1, -{TRI_BLOCK})")
        done, solved = ("t[s:e, :s]", "x[:s]") if lower else ("t[s:e, e:]", "x[e:]")
        rows, earlier = (("range(s, e)", "range(s, i)") if lower else
                         ("range(e - 1, s - 1, -1)", "range(i + 1, e)"))
        self.step.lines += [
            f"m0_{o} = {a}.reshape({_shape((batch, n, n))})",
            f"o{o} = np.empty({_shape((batch, n, k))}, np.{dt})",
            f"o{o}[:] = {b}.reshape({_shape((batch, n, k))})",
            f"for p in range({batch}):",
            f"    t = m0_{o}[p]",
            f"    x = o{o}[p]",
            f"    for s in {blocks}:",
            f"        e = min(s + {TRI_BLOCK}, {n})",
            f"        if {'s > 0' if lower else f'e < {n}'}:",
            f"            x[s:e] -= np.dot(np.ascontiguousarray({done}), {solved})",
            f"        for i in {rows}:",
            f"            for j in {earlier}:",
            "                c = t[i, j]",
            f"                for q in range({k}):",
            "                    x[i, q] -= c * x[j, q]",
            "            d = t[i, i]",
            "            if d == 0:",
            "                raise np.linalg.LinAlgError('Singular matrix')",
            f"            for q in range({k}):",
            "                x[i, q] /= d"]
        self.define_array(ins, f"o{o}.reshape({_shape(aval.shape)})")

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


# Rows of a triangular solve's or product's block (emit_solve_triangular,
# emit_triangular_matmul): each block's update from the rows before it, or its
# product, is one gemm of this many rows.
TRI_BLOCK = 64

# primitive -> the generator method that emits its code
EMITTERS: dict[Primitive, Callable[[Any, Instr], None]] = check_table({
    **{p: _Emitters.emit_elementwise for p in UFUNCS},
    **{p: _Emitters.emit_elementwise for p in SPECIAL_FUNCTIONS},
    **{p: _Emitters.emit_reduce for p in REDUCERS},
    P.where: _Emitters.emit_where, P.astype: _Emitters.emit_astype,
    P.stop_gradient: _Emitters.emit_stop_gradient,
    P.no_derivative: _Emitters.emit_stop_gradient, P.guard: _Emitters.emit_guard,
    P.cumsum: _Emitters.emit_scan, P.cumprod: _Emitters.emit_scan,
    P.prod_others: _Emitters.emit_scan, P.reshape: _Emitters.emit_reshape,
    P.transpose: _Emitters.emit_transpose, P.broadcast_to: _Emitters.emit_broadcast_to,
    P.take: _Emitters.emit_take, P.scatter_add: _Emitters.emit_scatter_add,
    P.scatter_set: _Emitters.emit_scatter_set, P.matmul: _Emitters.emit_matmul,
    P.gram: _Emitters.emit_gram,
    P.gather_rows: _Emitters.emit_gather_rows,
    P.scatter_add_rows: _Emitters.emit_scatter_add_rows,
    P.solve: _Emitters.emit_solve, P.logabsdet: _Emitters.emit_logabsdet,
    P.detsign: _Emitters.emit_detsign, P.fft: _Emitters.emit_fft,
    P.cholesky: _Emitters.emit_cholesky, P.solve_triangular: _Emitters.emit_solve_triangular,
    P.triangular_matmul: _Emitters.emit_triangular_matmul,
    P.svd: _Emitters.emit_svd, P.qr: _Emitters.emit_qr, P.pinv: _Emitters.emit_pinv,
    P.loop: _LoopInstruction.emit_loop,
    P.eigh: _Emitters.emit_eigh,
}, "numba_backend.EMITTERS")

# Builtin primitives the generated code does not compute, each with why: a
# compiled function whose tape holds one runs it as a host call (its NumPy
# implementation) between compiled segments (`backends.fallback`).
NOT_EMITTED: dict[Primitive, str] = check_table({
    **NOT_COMPILED,
}, "numba_backend.NOT_EMITTED")
