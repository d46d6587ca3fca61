"""The C VM's lowering rules: one function per primitive, and their table.

Each rule appends the VM instructions of one tape instruction through the
lowering state (`lower._Lowerer`: reading operands, defining and aliasing
slots, emitting opcodes and descriptors).  `_RULES` maps each primitive the
VM runs to its rule; `HOST_CALLS` lists, with a reason, the builtin
primitives it leaves to NumPy as host calls between compiled segments.  Both
are keyed by the `Primitive` object and checked at import (`check_table`).

The rules decide what makes the VM fast: aliases instead of copies (reshape,
stop_gradient, same-dtype astype, a contiguous take, x * 1), strided copies
for affine index tables, in-place scatters into a dying buffer, BLAS
transpose flags, and the one-flop float64 scalar opcodes with products and
negations fused into their single consumer.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import LoweringError
from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P
from ..core.tape import Instr
from ..transforms.analysis import affine, all_zero_bits, bitwise_uniform, c_strides
from ..transforms.analysis import is_weak as _is_weak
from .arena import END, Ref
from .fallback import NOT_COMPILED, special_refusal
from .lower_loop import lower_loop
from .lower_loop import refusal as loop_refusal
from .vm_header import BINARY, COMPARE, CONSTANTS, DTYPE_CODE, LOGIC, REDUCE, UNARY

if TYPE_CHECKING:
    from .lower import _Lowerer

_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)


# -- shapes and strides -----------------------------------------------------------
def _broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides reading an array of ``shape`` broadcast to ``out_shape``."""
    lead = len(out_shape) - len(shape)
    own = c_strides(shape)
    return [0] * lead + [0 if d == 1 else s for d, s in zip(shape, own)]


def _simplify(shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop unit axes and merge axes that are contiguous for every operand;
    the result has at least one axis."""
    keep = [k for k, d in enumerate(shape) if d != 1]
    out_shape: list[int] = []
    out_strides: list[list[int]] = [[] for _ in strides]
    for k in keep:
        if out_shape and all(s[-1] == ss[k] * shape[k] for s, ss in zip(out_strides, strides)):
            out_shape[-1] *= shape[k]
            for s, ss in zip(out_strides, strides):
                s[-1] = ss[k]
            continue
        out_shape.append(shape[k])
        for s, ss in zip(out_strides, strides):
            s.append(ss[k])
    if not out_shape:
        return [1], [[0] for _ in strides]
    return out_shape, out_strides


def _check_dtype(dtype: np.dtype, slot: int) -> None:
    if dtype not in DTYPE_CODE:
        raise LoweringError(f"slot %{slot} has dtype {dtype}; the VM runs float64, float32 "
                            "and bool values")


def _flat_indices(lw: _Lowerer, idx_slot: int, size: int) -> np.ndarray:
    idx = np.asarray(lw.consts.get(idx_slot))
    if idx_slot not in lw.consts or idx.dtype.kind not in "iu":
        raise LoweringError(f"index operand %{idx_slot} must be a constant integer array")
    idx = idx.astype(np.int64, copy=False)
    low = idx.min() if idx.size else 0
    if idx.size and (low < -size or idx.max() >= size):
        raise LoweringError(f"index out of range for an array of {size} elements")
    return np.where(idx < 0, idx + size, idx) if low < 0 else idx


# -- one rule per primitive -------------------------------------------------------
def _unary(lw: _Lowerer, ins: Instr) -> None:
    (x,), dtype = ins.ins, lw.avals[ins.out].dtype
    _check_float(dtype, ins)
    if (why := special_refusal(ins)) is not None:
        raise LoweringError(why)
    n = lw.avals[ins.out].size
    if dtype == _F64 and n == 1 and ins.prim in ("neg", "square"):
        _scalar_arithmetic(lw, ins)
        return
    a = lw.read(x, dtype)
    o = lw.define(ins.out)
    if dtype == _F64 and n == 1:
        lw.emit("UNARY_S", UNARY[ins.prim], (o, dtype), (a, dtype))
    else:
        lw.emit("UNARY_V", UNARY[ins.prim], lw.dt(dtype), (o, dtype), (a, dtype), n)


# -- scalar float64 arithmetic: one-flop opcodes, fused where an intermediate
# has a single consumer.  A product or negation whose only use is an add, a
# sub, a mul, a neg or a scalar scatter_add is deferred (`pending`) and
# emitted inside that consumer: x - y*y is one MULSUB_S, acc[i] -= a*b one
# NMULACC_S.  Every fused form rounds exactly as the separate operations do.
_SCALAR_OPCODE = {"add": "ADD_S", "sub": "SUB_S", "mul": "MUL_S", "div": "DIV_S",
                  "neg": "NEG_S", "nmul": "NMUL_S", "mov": "MOV_S", "muladd": "MULADD_S",
                  "mulsub": "MULSUB_S"}
# (consumer, deferred operand's kind) -> the consumer's fused kind.  For add and
# mul the deferred operand may be either one; for sub only the subtrahend.
_ABSORB = {("add", "mul"): "muladd", ("add", "nmul"): "mulsub", ("add", "neg"): "sub",
           ("sub", "mul"): "mulsub", ("sub", "nmul"): "muladd", ("sub", "neg"): "add",
           ("mul", "neg"): "nmul",
           ("neg", "mul"): "nmul", ("neg", "nmul"): "mul", ("neg", "neg"): "mov"}
_ACCUMULATE = {None: "ACC_S", "neg": "NACC_S", "mul": "MULACC_S", "nmul": "NMULACC_S"}


def _scalar_arithmetic(lw: _Lowerer, ins: Instr) -> None:
    kind, refs = _scalar_expression(lw, ins)
    if kind == "neg" and lw.uses[ins.out] > 1 and _consumers_absorb_negation(lw, ins.out):
        # each consumer absorbs it (a - (-b) is a + b, bit for bit): reverse
        # mode negates a closed-over value or a partial for several readers
        lw.pending_uses[ins.out] = lw.uses[ins.out]
    elif not (kind in ("mul", "nmul", "neg") and _consumer_absorbs(lw, ins.out, kind)):
        o = lw.define(ins.out)
        lw.emit(_SCALAR_OPCODE[kind], (o, _F64), *((r, _F64) for r in refs))
        return
    lw.pending[ins.out] = (kind, refs)
    consumer = lw.last_use[ins.out]
    for r in refs:  # the operands must live until the (last) consumer runs
        buf = lw.buffers[r.buf]
        buf.last_use = max(buf.last_use, consumer)


def _consumers_absorb_negation(lw: _Lowerer, slot: int) -> bool:
    """Whether every reader of the negation ``slot`` is a float64 scalar add,
    sub (as its subtrahend), mul or neg reading it once: each folds it into
    its own opcode (`_ABSORB`)."""
    if lw.last_use.get(slot, END) >= END:
        return False
    for k in lw.readers[slot]:
        c = lw.kept[k]
        out = lw.avals[c.out]
        if out.dtype != _F64 or out.size != 1 or (c.prim, "neg") not in _ABSORB \
                or c.ins.count(slot) != 1 or (c.prim == "sub" and c.ins[1] != slot):
            return False
    return True


def _scalar_expression(lw: _Lowerer, ins: Instr) -> tuple[str, tuple[Ref, ...]]:
    """The instruction as (kind, operands), absorbing a deferred operand."""
    if ins.prim == "square":
        a = lw.read(ins.ins[0], _F64)
        return "mul", (a, a)
    if ins.prim == "neg":
        (x,) = ins.ins
        if ("neg", lw.pending_kind(x)) in _ABSORB:
            kind, refs = lw.take_pending(x)
            return _ABSORB[("neg", kind)], refs
        return "neg", (lw.read(x, _F64),)
    a, b = ins.ins
    orders = {"add": ((a, b), (b, a)), "mul": ((a, b), (b, a)), "sub": ((a, b),)}
    for x, y in orders.get(ins.prim, ()):
        fused = _ABSORB.get((ins.prim, lw.pending_kind(y)))
        if fused is not None:
            _, refs = lw.take_pending(y)
            return fused, (lw.read(x, _F64), *refs)
    return ins.prim, (lw.read(a, _F64), lw.read(b, _F64))


def _consumer_absorbs(lw: _Lowerer, slot: int, kind: str) -> bool:
    if lw.uses[slot] != 1 or lw.last_use.get(slot, END) >= END:
        return False
    c = lw.kept[lw.last_use[slot]]
    out = lw.avals[c.out]
    if out.dtype != _F64:
        return False
    if c.prim == "scatter_add":
        return c.ins[2] == slot and lw.avals[c.ins[1]].size == 1
    if out.size != 1 or (c.prim, kind) not in _ABSORB:
        return False
    return c.prim != "sub" or c.ins[1] == slot


def _check_float(dtype: np.dtype, ins: Instr) -> None:
    if dtype.kind != "f" or dtype not in DTYPE_CODE:
        raise LoweringError(f"{ins.prim} producing {dtype} is not supported by the VM "
                            "(only float32/float64 arithmetic)")


def _is_exact_one(lw: _Lowerer, slot: int) -> bool:
    if slot not in lw.consts:
        return False
    value = lw.consts[slot]
    if _is_weak(value):
        return value == 1
    value = np.asarray(value)
    return value.dtype.kind == "f" and bool(np.all(value == 1))


def _binary(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    if ins.prim == "mul":  # x * 1 is x, bit for bit
        for one, other in ((a_slot, b_slot), (b_slot, a_slot)):
            if (_is_exact_one(lw, one) and other not in lw.consts
                    and lw.avals[other].dtype == dtype and lw.avals[other].shape == out.shape):
                lw.alias(ins.out, lw.place(other))
                return
    if dtype == _F64 and out.size == 1 and ins.prim in ("add", "sub", "mul", "div"):
        _scalar_arithmetic(lw, ins)
        return
    a, sa, na = _operand(lw, a_slot, dtype)
    b, sb, nb = _operand(lw, b_slot, dtype)
    o = lw.define(ins.out)
    fn = BINARY[ins.prim]
    if dtype == _F64 and out.size == 1:
        lw.emit("BINARY_S", fn, (o, dtype), (a, dtype), (b, dtype))
        return
    t = lw.dt(dtype)
    if na == out.size and nb == out.size and sa == sb:
        lw.emit("BINARY_VV", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    elif na == out.size and sa == out.shape and nb == 1:
        lw.emit("BINARY_VS", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    elif nb == out.size and sb == out.shape and na == 1:
        lw.emit("BINARY_SV", fn, t, (o, dtype), (a, dtype), (b, dtype), out.size)
    else:
        d = _broadcast_descriptor(lw, out.shape, [sa, sb])
        lw.emit("BINARY_B", fn, t, (o, dtype), (a, dtype), (b, dtype), d)


def _operand(lw: _Lowerer, slot: int, dtype: np.dtype) -> tuple[Ref, tuple[int, ...], int]:
    """(where, shape, size) of a binary operand; a constant array whose
    elements are all equal is read as one scalar (no array streamed)."""
    if slot in lw.consts and not _is_weak(lw.consts[slot]):
        value = np.asarray(lw.consts[slot])
        if value.size > 1 and value.dtype.kind == "f" and bitwise_uniform(value):
            return lw.const_ref(np.asarray(value.flat[0], dtype=dtype)), (), 1
    aval = lw.avals[slot]
    return lw.read(slot, dtype), aval.shape, aval.size


def _broadcast_descriptor(lw: _Lowerer, out_shape: tuple[int, ...],
                          shapes: list[tuple[int, ...]]) -> int:
    shape, strides = _simplify(out_shape, [_broadcast_strides(s, out_shape) for s in shapes])
    return lw.descriptor([len(shape), *shape, *(x for s in strides for x in s)])


def _compare_dtype(lw: _Lowerer, slots: tuple[int, ...]) -> np.dtype:
    strong = [lw.avals[s].dtype for s in slots
              if not (s in lw.consts and _is_weak(lw.consts[s]))]
    dtype = np.result_type(*strong) if strong else _F64
    return dtype if dtype.kind == "f" else _F64


def _compare(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    dtype = _compare_dtype(lw, ins.ins)
    a, b = lw.read(a_slot, dtype), lw.read(b_slot, dtype)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, lw.avals[ins.out].shape,
                              [lw.avals[a_slot].shape, lw.avals[b_slot].shape])
    lw.emit("COMPARE_B", COMPARE[ins.prim], lw.dt(dtype), (o, _BOOL), (a, dtype), (b, dtype), d)


def _logic(lw: _Lowerer, ins: Instr) -> None:
    a_slot, b_slot = ins.ins
    a, b = lw.read(a_slot, _BOOL), lw.read(b_slot, _BOOL)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, lw.avals[ins.out].shape,
                              [lw.avals[a_slot].shape, lw.avals[b_slot].shape])
    lw.emit("LOGIC_B", LOGIC[ins.prim], (o, _BOOL), (a, _BOOL), (b, _BOOL), d)


def _logical_not(lw: _Lowerer, ins: Instr) -> None:
    a = lw.read(ins.ins[0], _BOOL)
    o = lw.define(ins.out)
    lw.emit("NOT_V", (o, _BOOL), (a, _BOOL), lw.avals[ins.out].size)


def _where(lw: _Lowerer, ins: Instr) -> None:
    c_slot, a_slot, b_slot = ins.ins
    out = lw.avals[ins.out]
    _check_dtype(out.dtype, ins.out)
    c, a, b = lw.read(c_slot, _BOOL), lw.read(a_slot, out.dtype), lw.read(b_slot, out.dtype)
    o = lw.define(ins.out)
    d = _broadcast_descriptor(lw, out.shape, [lw.avals[s].shape for s in ins.ins])
    lw.emit("WHERE_B", lw.dt(out.dtype), (o, out.dtype), (c, _BOOL), (a, out.dtype),
            (b, out.dtype), d)


def _alias_rule(lw: _Lowerer, ins: Instr) -> None:
    """reshape, stop_gradient, no_derivative: the same bytes under another name."""
    lw.alias(ins.out, lw.read(ins.ins[0]))


def _astype(lw: _Lowerer, ins: Instr) -> None:
    x, out = ins.ins[0], lw.avals[ins.out]
    _check_dtype(out.dtype, ins.out)
    if lw.avals[x].dtype == out.dtype or x in lw.consts:
        lw.alias(ins.out, lw.read(x, out.dtype))
        return
    a = lw.read(x)
    o = lw.define(ins.out)
    lw.emit("CAST_V", lw.dt(out.dtype), lw.dt(lw.avals[x].dtype), (o, out.dtype),
            (a, lw.avals[x].dtype), out.size)


def _reduce(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    params = ins.kwargs
    axes = set(params["axes"])
    out, xa = lw.avals[ins.out], lw.avals[x]
    _check_float(out.dtype, ins)
    a = lw.read(x, out.dtype)
    if xa.size == out.size and xa.size > 0:  # only unit axes are reduced
        lw.alias(ins.out, a)
        return
    o = lw.define(ins.out)
    kept_shape = tuple(1 if k in axes else d for k, d in enumerate(xa.shape))
    out_strides = [0 if k in axes else s
                   for k, s in enumerate(c_strides(kept_shape))]
    in_strides = c_strides(xa.shape)
    # Merge axes where both the (contiguous) input and the output are contiguous.
    shape, (_, so) = _simplify(xa.shape, [in_strides, out_strides])
    d = lw.descriptor([len(shape), *shape, *so, out.size])
    lw.emit("REDUCE_B", REDUCE[ins.prim], lw.dt(out.dtype), (o, out.dtype), (a, out.dtype), d)


def _scan(lw: _Lowerer, ins: Instr) -> None:
    """cumsum, cumprod and prod_others: SCAN_B along one axis, its kind
    (opcodes.h's FASTAD_SCAN_*) named by the primitive."""
    x = ins.ins[0]
    axis = ins.kwargs["axis"]
    kind = {"cumsum": "SUM_REVERSED" if ins.kwargs.get("reverse") else "SUM",
            "cumprod": "PROD", "prod_others": "PROD_OTHERS"}[ins.prim]
    out = lw.avals[ins.out]
    _check_float(out.dtype, ins)
    shape = out.shape
    axis = axis % len(shape)
    a = lw.read(x, out.dtype)
    o = lw.define(ins.out)
    d = lw.descriptor([int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
                       int(np.prod(shape[axis + 1:], dtype=np.int64)),
                       CONSTANTS[f"FASTAD_SCAN_{kind}"]])
    lw.emit("SCAN_B", lw.dt(out.dtype), (o, out.dtype), (a, out.dtype), d)


def _strided_copy(lw: _Lowerer, out_slot: int, a: Ref, start: int, shape: tuple[int, ...],
                  strides: list[int]) -> None:
    """out = a[start + j . strides], or an alias when that is a plain range."""
    dtype = lw.avals[out_slot].dtype
    sshape, (sstrides,) = _simplify(shape, [strides])
    if len(sshape) == 1 and sstrides[0] in (0, 1) and (sstrides[0] == 1 or sshape[0] == 1):
        lw.alias(out_slot, Ref(a.buf, a.offset + start * dtype.itemsize))
        return
    o = lw.define(out_slot)
    d = lw.descriptor([len(sshape), start, *sshape, *sstrides])
    lw.emit("STRIDED_B", lw.dt(dtype), (o, dtype), (a, dtype), d)


def _transpose(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    perm = ins.kwargs["perm"]
    own = c_strides(lw.avals[x].shape)
    _strided_copy(lw, ins.out, lw.read(x), 0, lw.avals[ins.out].shape, [own[p] for p in perm])


def _broadcast_to(lw: _Lowerer, ins: Instr) -> None:
    x = ins.ins[0]
    out = lw.avals[ins.out]
    _strided_copy(lw, ins.out, lw.read(x), 0, out.shape,
                  _broadcast_strides(lw.avals[x].shape, out.shape))


def _take(lw: _Lowerer, ins: Instr) -> None:
    x, idx_slot = ins.ins
    xa = lw.avals[x]
    idx = _flat_indices(lw, idx_slot, xa.size)
    a = lw.read(x)
    pattern = affine(idx)
    if pattern is not None:  # a plain range is an alias (see _strided_copy)
        _strided_copy(lw, ins.out, a, pattern[0], idx.shape, pattern[1])
        return
    flat = idx.ravel()
    o = lw.define(ins.out)
    x_at = lw.indices(idx_slot, flat)
    lw.emit("GATHER_V", lw.dt(xa.dtype), (o, xa.dtype), (a, xa.dtype), xa.size, x_at, flat.size)


def _scatter(lw: _Lowerer, ins: Instr) -> None:
    x, idx_slot, v_slot = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_dtype(dtype, ins.out)
    adding = ins.prim == "scatter_add"
    if adding:
        _check_float(dtype, ins)
    idx = _flat_indices(lw, idx_slot, out.size)
    if lw.avals[v_slot].size != idx.size:
        raise LoweringError(f"{ins.prim}: {lw.avals[v_slot].size} values for {idx.size} indices")
    if idx.size == 1 and dtype == _F64:  # one element: a scalar move or accumulation
        kind = lw.pending_kind(v_slot) if adding else None
        refs = lw.take_pending(v_slot)[1] if kind else (lw.read(v_slot, dtype),)
        o = _updatable_copy(lw, ins, x, {r.buf for r in refs})
        at = Ref(o.buf, o.offset + int(idx.reshape(-1)[0]) * dtype.itemsize)
        lw.emit(_ACCUMULATE[kind] if adding else "MOV_S", (at, dtype), *((r, dtype) for r in refs))
        return
    v = lw.read(v_slot, dtype)
    o = _updatable_copy(lw, ins, x, {v.buf})
    if idx.size == 0:
        return
    n = idx.size
    pattern = affine(idx)
    shape, (strides,) = _simplify(idx.shape, [pattern[1]]) if pattern else ((), ([],))
    if pattern and len(shape) == 1 and (strides[0] == 1 or shape[0] == 1):  # a plain range
        at = Ref(o.buf, o.offset + pattern[0] * dtype.itemsize)
        if adding:
            lw.emit("BINARY_VV", BINARY["add"], lw.dt(dtype), (at, dtype), (at, dtype),
                    (v, dtype), n)
        else:
            lw.emit("COPY_V", lw.dt(dtype), (at, dtype), (v, dtype), n)
        return
    if pattern:  # a basic slice: no index list in the program
        d = lw.descriptor([len(shape), pattern[0], *shape, *strides])
        lw.emit("STRIDED_ADD_B" if adding else "STRIDED_SET_B", lw.dt(dtype), (o, dtype),
                (v, dtype), d)
        return
    flat = idx.ravel()
    x_at = lw.indices(idx_slot, flat)
    lw.emit("SCATTER_ADD_V" if adding else "SCATTER_SET_V", lw.dt(dtype), (o, dtype), out.size,
            x_at, (v, dtype), n)


def _rows(lw: _Lowerer, table: int, idx: int, ins: Instr) -> tuple[int, int, Ref]:
    """A gather or scatter by traced rows: the table's rows and row length,
    and where the indices are, as float64 (integers taken as data are
    float64 inputs; a constant index array is converted once)."""
    ta, ia = lw.avals[table], lw.avals[idx]
    if not ta.shape or ia.dtype.kind not in "fiu":
        raise LoweringError(f"{ins.prim}: indices of dtype {ia.dtype} into {ta.shape}")
    return ta.shape[0], math.prod(ta.shape[1:]), lw.read(idx, _F64)


def _gather_rows(lw: _Lowerer, ins: Instr) -> None:
    x, idx = ins.ins
    dtype = lw.avals[x].dtype
    _check_dtype(dtype, x)
    rows, r, i = _rows(lw, x, idx, ins)
    a = lw.read(x)
    o = lw.define(ins.out)
    lw.emit("GATHER_ROWS_V", lw.dt(dtype), (o, dtype), (a, dtype), rows, r, (i, _F64),
            lw.avals[idx].size)


def _scatter_add_rows(lw: _Lowerer, ins: Instr) -> None:
    acc, idx, v_slot = ins.ins
    dtype = lw.avals[ins.out].dtype
    _check_float(dtype, ins)
    rows, r, i = _rows(lw, acc, idx, ins)
    v = lw.read(v_slot, dtype)
    o = _updatable_copy(lw, ins, acc, {v.buf, i.buf})
    lw.emit("SCATTER_ADD_ROWS_V", lw.dt(dtype), (o, dtype), rows, r, (i, _F64), (v, dtype),
            lw.avals[idx].size)


def _updatable_copy(lw: _Lowerer, ins: Instr, x: int, read_bufs: set[int]) -> Ref:
    """The buffer a scatter writes into: x's own when x dies here and the
    values written are not read from it (in place), else a fresh copy of x."""
    dtype = lw.avals[ins.out].dtype
    if x not in lw.consts and lw.avals[x].dtype == dtype:
        ref = lw.place(x)
        buf = lw.buffers[ref.buf]
        if not buf.readonly and buf.last_use <= lw.step and ref.buf not in read_bufs:
            lw.alias(ins.out, ref)
            return ref
    o = lw.define(ins.out)
    n = lw.avals[ins.out].size
    if x in lw.consts and all_zero_bits(lw.consts[x]):
        lw.emit("ZERO_V", lw.dt(dtype), (o, dtype), n)
    else:
        lw.emit("COPY_V", lw.dt(dtype), (o, dtype), (lw.read(x, dtype), dtype), n)
    return o


def _matmul(lw: _Lowerer, ins: Instr, into: Any = None) -> None:
    """o = a @ b; with ``into`` (a ref holding the addend, the result's
    place), o += a @ b."""
    a_slot, b_slot = lw.operands(ins)
    ta, tb = lw.matmul_trans[id(ins)]
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    a, b = lw.read(a_slot, dtype), lw.read(b_slot, dtype)
    o = lw.define(ins.out) if into is None else into
    m, n = out.shape[-2], out.shape[-1]
    ashape = lw.avals[a_slot].shape
    k = ashape[-2] if ta else ashape[-1]
    batch = int(np.prod(out.shape[:-2], dtype=np.int64))
    d = lw.descriptor([batch, m, k, n, int(ta), int(tb), int(into is not None)])
    lw.emit("MATMUL_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype), d)


def _gram(lw: _Lowerer, ins: Instr) -> None:
    """x^T x (x x^T): one product of x with itself, the transpose a flag."""
    trans = bool(ins.kwargs["trans"])
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    x = lw.read(ins.ins[0], dtype)
    xshape = lw.avals[ins.ins[0]].shape
    n, k = out.shape[-1], (xshape[-1] if trans else xshape[-2])
    batch = int(np.prod(out.shape[:-2], dtype=np.int64))
    d = lw.descriptor([batch, n, k, n, int(not trans), int(trans), 0])
    lw.emit("MATMUL_B", lw.dt(dtype), (lw.define(ins.out), dtype), (x, dtype), (x, dtype), d)


def matmul_add(lw: _Lowerer, ins: Instr, mm: Instr, addend: int) -> None:
    """``ins`` = addend + product ``mm`` (`_Lowerer.plan_accumulations`) as
    one accumulating MATMUL: into the addend's place when it dies here (and is
    the arena's, apart from the product's operands), else into a copy."""
    dtype = lw.avals[ins.out].dtype
    src = lw.read(addend, dtype)
    buf = lw.buffers[src.buf]
    operands = {lw.loc[s].buf for s in lw.operands(mm) if s in lw.loc}
    if (addend in lw.consts or buf.readonly or buf.bound or buf.last_use > lw.step
            or src.buf in lw.loop_bufs or src.buf in operands):
        o = lw.define(ins.out)
        lw.emit("COPY_V", lw.dt(dtype), (o, dtype), (src, dtype), lw.avals[ins.out].size)
    else:
        o = src
        lw.alias(ins.out, src)
    _matmul(lw, mm, into=o)


def _system(lw: _Lowerer, ins: Instr, a_slot: int, b_slot: int
            ) -> tuple[Any, Any, Any, np.dtype, int, int, int]:
    """A solve's matrix and right-hand sides read, its result defined: their
    refs, the dtype, the order, the right-hand sides' count and the batch."""
    out = lw.avals[ins.out]
    _check_float(out.dtype, ins)
    a, b = lw.read(a_slot, out.dtype), lw.read(b_slot, out.dtype)
    o = lw.define(ins.out)
    return (a, b, o, out.dtype, out.shape[-2], out.shape[-1],
            int(np.prod(out.shape[:-2], dtype=np.int64)))


def _solve(lw: _Lowerer, ins: Instr) -> None:
    a, b, o, dtype, n, k, batch = _system(lw, ins, *ins.ins)
    w = lw.temp((n * n + n * k) * dtype.itemsize)
    p = lw.temp(n * 4)
    lw.emit("SOLVE_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype),
            lw.descriptor([batch, n, k]), (w, dtype), (p, np.dtype(np.int32)))


def _slogdet(lw: _Lowerer, ins: Instr) -> None:
    (a_slot,) = ins.ins
    out = lw.avals[ins.out]
    dtype = out.dtype
    _check_float(dtype, ins)
    a = lw.read(a_slot, dtype)
    o = lw.define(ins.out)
    n = lw.avals[a_slot].shape[-1]
    w = lw.temp(n * n * dtype.itemsize)
    p = lw.temp(n * 4)
    lw.emit("SLOGDET_B", 0 if ins.prim == "logabsdet" else 1, lw.dt(dtype), (o, dtype),
            (a, dtype), lw.descriptor([out.size, n]), (w, dtype), (p, np.dtype(np.int32)))


def _decomposition(lw: _Lowerer, ins: Instr) -> tuple[Any, Any, np.dtype, int, int, int]:
    """A decomposition's one operand read, its result defined: their refs, the
    dtype, the matrices' rows and columns, and how many matrices there are."""
    (a_slot,) = ins.ins
    out = lw.avals[ins.out]
    _check_float(out.dtype, ins)
    a = lw.read(a_slot, out.dtype)
    o = lw.define(ins.out)
    m, n = lw.avals[a_slot].shape[-2:]
    return a, o, out.dtype, m, n, int(np.prod(out.shape[:-2], dtype=np.int64))


def _cholesky(lw: _Lowerer, ins: Instr) -> None:
    a, o, dtype, _, n, batch = _decomposition(lw, ins)
    lw.emit("CHOLESKY_B", lw.dt(dtype), (o, dtype), (a, dtype), lw.descriptor([batch, n]))


def _solve_triangular(lw: _Lowerer, ins: Instr) -> None:
    """A triangular solve (trsm); a transposed triangle is read in place
    through trsm's transpose flag (`lower._Lowerer.plan` folds it)."""
    trans = lw.solve_trans.get(id(ins), False)
    a, b, o, dtype, n, k, batch = _system(lw, ins, *lw.operands(ins))
    # T^T of a transposed lower triangle is the upper triangle of the untransposed one
    lower = bool(ins.kwargs["lower"]) != trans
    lw.emit("TRSOLVE_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype),
            lw.descriptor([batch, n, k, int(lower), int(trans)]))


def _triangular_matmul(lw: _Lowerer, ins: Instr) -> None:
    """op(T) b with T a triangle of a: trmm on a copy of b, half a gemm."""
    a, b, o, dtype, n, k, batch = _system(lw, ins, *ins.ins)
    lw.emit("TRMM_B", lw.dt(dtype), (o, dtype), (a, dtype), (b, dtype),
            lw.descriptor([batch, n, k, int(bool(ins.kwargs["lower"])),
                           int(bool(ins.kwargs["trans"]))]))


def _eigh(lw: _Lowerer, ins: Instr) -> None:
    a, o, dtype, _, n, batch = _decomposition(lw, ins)
    # dsyevd's copy, eigenvalues and work, in float64 for both dtypes as NumPy's
    w = lw.temp((3 * n * n + 7 * n + 1) * 8)
    p = lw.temp((3 + 5 * n) * 4)  # its iwork
    lw.emit("EIGH_B", lw.dt(dtype), (o, dtype), (a, dtype),
            lw.descriptor([batch, n, int(bool(ins.kwargs["lower"]))]),
            (w, np.dtype(np.float64)), (p, np.dtype(np.int32)))


def _gesdd(lw: _Lowerer, ins: Instr, opname: str, extra: Any) -> None:
    """An instruction built on the reduced SVD as gesdd computes it for NumPy
    (in float64 for both dtypes), its work size the workspace query's optimum
    (at least the documented minimum); extra(m, n, k): doubles of workspace
    past gesdd's."""
    from scipy.linalg import lapack
    a, o, dtype, m, n, batch = _decomposition(lw, ins)
    k, big = min(m, n), max(m, n)
    lwork = 0
    if k:
        optimum, _info = lapack.dgesdd_lwork(m, n, compute_uv=1, full_matrices=0)
        lwork = max(int(optimum), 4 * k * k + 7 * k, 3 * k + max(big, 4 * k * k + 4 * k))
    # the copy, s, U, VT, gesdd's work, then the extra
    w = lw.temp((m * n + k + m * k + k * n + lwork + extra(m, n, k)) * 8)
    p = lw.temp(8 * k * 4)  # gesdd's iwork
    lw.emit(opname, lw.dt(dtype), (o, dtype), (a, dtype), lw.descriptor([batch, m, n, lwork]),
            (w, np.dtype(np.float64)), (p, np.dtype(np.int32)))


def _svd(lw: _Lowerer, ins: Instr) -> None:
    _gesdd(lw, ins, "SVD_B", lambda m, n, k: 0)


def _pinv(lw: _Lowerer, ins: Instr) -> None:
    """NumPy's pinv: its SVD, small singular values dropped, V diag(1/s) U^T (gemm)."""
    _gesdd(lw, ins, "PINV_B", lambda m, n, k: k + k * m + n * k)


def _qr(lw: _Lowerer, ins: Instr) -> None:
    """The reduced QR as NumPy computes it (geqrf, orgqr, in float64 for both
    dtypes), with the larger of the two workspace queries' optima."""
    from scipy.linalg import lapack
    a, o, dtype, m, n, batch = _decomposition(lw, ins)
    lwork = max(n, 1)
    if n:
        probe = np.zeros((m, n), order="F")
        _qr, _tau, work, _info = lapack.dgeqrf(probe, lwork=-1)
        _q, work2, _info = lapack.dorgqr(probe, np.zeros(n), lwork=-1)
        lwork = max(lwork, int(work[0]), int(work2[0]))
    w = lw.temp((m * n + n + lwork) * 8)  # copy (then Q), tau, work
    lw.emit("QR_B", lw.dt(dtype), (o, dtype), (a, dtype), lw.descriptor([batch, m, n, lwork]),
            (w, np.dtype(np.float64)))


def _guard(lw: _Lowerer, ins: Instr) -> None:
    pred = lw.read(ins.ins[0], _BOOL)
    lw.emit("GUARD", (pred, _BOOL), int(bool(ins.kwargs["expected"])))
    # A run that gets past the guard has its output true.
    lw.alias(ins.out, lw.const_ref(np.ones(lw.avals[ins.out].shape, dtype=_BOOL)))


# primitive -> rule(lowerer, ins).  The function tables of opcodes.h name
# primitives (a name there that is not one fails here, at import).
_RULES: dict[Primitive, Any] = check_table({
    **{registry[name]: _unary for name in UNARY},
    **{registry[name]: _binary for name in BINARY},
    **{registry[name]: _compare for name in COMPARE},
    **{registry[name]: _logic for name in LOGIC},
    P.logical_not: _logical_not,
    P.where: _where,
    P.reshape: _alias_rule,
    P.stop_gradient: _alias_rule, P.no_derivative: _alias_rule,
    P.astype: _astype,
    P.sum: _reduce, P.prod: _reduce, P.max: _reduce, P.min: _reduce,
    P.cumsum: _scan, P.cumprod: _scan, P.prod_others: _scan,
    P.transpose: _transpose,
    P.broadcast_to: _broadcast_to,
    P.take: _take,
    P.scatter_set: _scatter,
    P.scatter_add: _scatter,
    P.gather_rows: _gather_rows,
    P.scatter_add_rows: _scatter_add_rows,
    P.matmul: _matmul,
    P.gram: _gram,
    P.solve: _solve,
    P.logabsdet: _slogdet,
    P.detsign: _slogdet,
    P.cholesky: _cholesky,
    P.solve_triangular: _solve_triangular,
    P.triangular_matmul: _triangular_matmul,
    P.eigh: _eigh,
    P.svd: _svd,
    P.pinv: _pinv,
    P.qr: _qr,
    P.guard: _guard,
    P.loop: lower_loop,
}, "lower._RULES")

# Primitives the VM runs only in some instructions: ``REFUSED[p](ins)`` says
# why it cannot run ``ins`` (None if it can); such an instruction is a host
# call between compiled segments (`fallback.refused`).
REFUSED: dict[Primitive, Any] = check_table({
    P.loop: loop_refusal,
    P.polygamma: special_refusal,
}, "lower.REFUSED")

# Builtin primitives the VM does not run, each with why: a compiled function
# whose tape holds one runs it as a host call (its NumPy implementation)
# between compiled segments (`backends.fallback`).
HOST_CALLS: dict[Primitive, str] = check_table({
    **NOT_COMPILED,
    P.real: "complex values only: the VM has no complex dtype",
    P.imag: "complex values only: the VM has no complex dtype",
    P.conj: "complex values only: the VM has no complex dtype",
    P.fft: "complex values only: the VM has no complex dtype",
}, "lower.HOST_CALLS")


def rule_of(ins: Instr) -> Any:
    """The lowering rule of ``ins``'s primitive; LoweringError if the VM has none."""
    rule = _RULES.get(registry[ins.prim])
    if rule is None:
        raise LoweringError(f"primitive {ins.prim!r} has no VM lowering")
    return rule
