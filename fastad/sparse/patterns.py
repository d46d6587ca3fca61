"""Sparsity patterns read off a tape: which inputs each value depends on.

Every slot that depends on the differentiated input gets a boolean CSR
matrix ``P`` of shape (slot size, n): row k holds the input elements the
slot's element k (flat, C order) depends on.  The input's is the identity.
An instruction's pattern is its operands' patterns composed with the
instruction's own dependency structure, itself a 0/1 matrix ``D`` (result
element x operand element): ``P_out = sum_args D_arg @ P_arg``, the sum and
product boolean (scipy's bool sparse arithmetic is OR/AND).  Most rules are
row gathers (``D`` with one 1 per row: elementwise with broadcasting,
``take``, ``transpose``, ``broadcast_to``), which need no product at all.

Rules are exact (every dependency the structure allows, no more) for the
primitives in `RULES`; any other primitive, and a gather or scatter whose
index is computed rather than constant, is *conservative*: each result
element depends on every input element any operand depends on.  A missing
dependency would be a wrong derivative, an extra one only a stored zero.

The Hessian pattern of a scalar (or of a weighted sum of the outputs) is
second-order propagation: the Hessian is the sum, over instructions the
output depends on, of the operands' Jacobians transposed, times the
instruction's own second derivative, times the operands' Jacobians.  So a
linear instruction adds nothing, a product ``a * b`` adds ``A^T B + B^T A``
(rows of a and b at each result element), a division ``a / b`` those and
``B^T B``, and any other nonlinear elementwise primitive ``U^T U`` for the
union U of its operands' rows.  Each such term is one sparse product.
Instructions nothing differentiable leads from to an output are skipped
(`live_instructions`), so a nonlinearity that only feeds a comparison adds
nothing.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P
from ..core.tape import Tape
from .coloring import _compiled

Pattern = sp.csr_matrix  # boolean, (slot size, n)


# -- building blocks ------------------------------------------------------------
def identity(n: int) -> Pattern:
    return sp.identity(n, dtype=bool, format="csr")


def empty(m: int, n: int) -> Pattern:
    return sp.csr_matrix((m, n), dtype=bool)


def union(parts: list[Pattern]) -> Pattern | None:
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def gather(p: Pattern | None, rows: np.ndarray) -> Pattern | None:
    """Rows ``rows`` of p (a dependency map with one 1 per result row)."""
    if p is None:
        return None
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.shape[0] == p.shape[0] and np.array_equal(rows, np.arange(p.shape[0])):
        return p
    return p[rows]


def selector(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """The 0/1 matrix with ones at (rows[k], cols[k])."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    return sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=shape)


#: the most nonzeros a pattern of one value may have: beyond it the
#: derivative is not sparse, and building its pattern would exhaust memory
MAX_NONZEROS = 1 << 28


class NotSparse(ValueError):
    """The derivative's pattern would have more than `MAX_NONZEROS` entries."""


def _check_size(count: int, what: str) -> None:
    if count > MAX_NONZEROS:
        raise NotSparse(f"the derivative is not sparse: {what} makes a pattern of {count} "
                        f"nonzeros (more than {MAX_NONZEROS}); use sparse=False")


def dense_rows(p_list: list[Pattern | None], m: int, n: int) -> Pattern | None:
    """Every one of m rows depends on every column any operand row depends on."""
    cols = np.unique(np.concatenate([p.indices for p in p_list if p is not None] or [[]]))
    if not any(p is not None for p in p_list):
        return None
    _check_size(m * cols.size, "an operation whose every result depends on all its inputs")
    cols = cols.astype(np.int32 if n < 2**31 else np.int64)
    indptr = np.arange(m + 1, dtype=np.int64) * cols.size
    return sp.csr_matrix((np.ones(m * cols.size, dtype=bool), np.tile(cols, m), indptr),
                         shape=(m, n))


def broadcast_positions(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """For each element of ``out_shape`` (flat), the flat position in an operand
    of ``shape`` that NumPy broadcasting reads."""
    size = math.prod(shape)
    if tuple(shape) == tuple(out_shape):
        return np.arange(size, dtype=np.int64)
    return np.broadcast_to(np.arange(size, dtype=np.int64).reshape(shape), out_shape).reshape(-1)


# -- the rules ------------------------------------------------------------------
class Context:
    """What a rule sees: the tape, each slot's pattern, and the Hessian terms."""

    def __init__(self, tape: Tape, n: int, hessian: bool, reads: list | None = None) -> None:
        self.tape = tape
        self.n = n
        self.hessian = hessian
        # the constants whose values (not only shapes) a rule read: a pattern
        # holds while they are unchanged (`derivatives.CapturedValues`)
        self.reads = reads if reads is not None else []
        self.patterns: dict[int, Pattern] = {}
        self.terms: list[sp.csr_matrix] = []  # n x n pieces of the Hessian pattern
        # per slot, the elements an output depends on (`element_liveness`);
        # a slot not here has all of them live
        self.live: dict[int, np.ndarray] = {}

    def live_of(self, slot: int) -> np.ndarray | None:
        return self.live.get(slot)

    def shape(self, slot: int) -> tuple[int, ...]:
        return tuple(self.tape.avals[slot].shape)

    def size(self, slot: int) -> int:
        return self.tape.avals[slot].size

    def const(self, slot: int) -> Any:
        return self.tape.consts.get(slot)

    def add_outer(self, a: Pattern | None, b: Pattern | None,
                  live: np.ndarray | None = None) -> None:
        """Add ``sum_k outer(a[k], b[k])`` and its transpose to the Hessian,
        over the rows k where ``live`` (a mask of a's rows) holds."""
        if not self.hessian or a is None or b is None or a.nnz == 0 or b.nnz == 0:
            return
        if live is not None and not live.all():
            rows = np.flatnonzero(live)
            a, b = (a[rows], a[rows]) if a is b else (a[rows], b[rows])
            if a.nnz == 0 or b.nnz == 0:
                return
        bound = int(np.dot(np.diff(a.indptr).astype(np.int64), np.diff(b.indptr)))
        if bound <= MAX_NONZEROS:
            t = (a.T @ b).tocsr()
        else:  # a few rows at a time, the running union checked: a dense
            # Hessian is refused before it exhausts memory
            t = None
            step = max(1, a.shape[0] * MAX_NONZEROS // (4 * bound))
            for lo in range(0, a.shape[0], step):
                part = (a[lo:lo + step].T @ b[lo:lo + step]).tocsr()
                t = part if t is None else (t + part).tocsr()
                _check_size(t.nnz, "a nonlinear operation coupling many inputs")
        self.terms.append(t)
        if a is not b:
            self.terms.append(t.T.tocsr())


Rule = Callable[[Context, Any, list], "Pattern | None"]


def _args(ctx: Context, ins: Any) -> list[Pattern | None]:
    return [ctx.patterns.get(s) for s in ins.ins]


#: elementwise primitives with no second derivative (linear, or linear
#: piecewise: the derivative's switch is a comparison, which has none)
LINEAR_ELEMENTWISE = check_table({P.neg, P.add, P.sub, P.real, P.imag, P.conj, P.astype,
                                  P.where, P.maximum, P.minimum}, "LINEAR_ELEMENTWISE")


def _elementwise(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    out_shape = ctx.shape(ins.out)
    rows = []
    for argnum, slot in enumerate(ins.ins):
        p = ctx.patterns.get(slot)
        if p is None or not _differentiable_arg(prim, argnum):
            rows.append(None)
            continue
        rows.append(gather(p, broadcast_positions(ctx.shape(slot), out_shape)))
    out = union(rows)
    if out is None or not ctx.hessian:
        return out
    linear = prim in LINEAR_ELEMENTWISE
    if prim is P.abs:  # |x| is linear piecewise for real x, not for complex x
        linear = ctx.tape.avals[ins.ins[0]].dtype.kind != "c"
    if linear:
        return out
    live = ctx.live_of(ins.out)
    if prim is P.mul:
        ctx.add_outer(rows[0], rows[1], live)
    elif prim is P.div:
        ctx.add_outer(rows[0], rows[1], live)
        ctx.add_outer(rows[1], rows[1], live)
    else:
        ctx.add_outer(out, out, live)
    return out


def _reduce_map(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool
                ) -> tuple[np.ndarray, int]:
    """For each input element, the flat position of its result element."""
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    size = math.prod(kept)
    return broadcast_positions(kept, shape).copy() if size else np.zeros(0, np.int64), size


def _reduction(ctx: Context, ins: Any, nonlinear: bool) -> Pattern | None:
    p = ctx.patterns.get(ins.ins[0])
    if p is None:
        return None
    params = dict(ins.params)
    shape = ctx.shape(ins.ins[0])
    axes = tuple(a % len(shape) for a in params["axes"]) if shape else ()
    group, m = _reduce_map(shape, axes, params["keepdims"])
    d = selector(group, np.arange(group.size), (m, group.size))
    out = (d @ p).tocsr()
    if nonlinear:
        ctx.add_outer(out, out, ctx.live_of(ins.out))
    return out


def _sum(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    return _reduction(ctx, ins, nonlinear=False)


def _prod(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    return _reduction(ctx, ins, nonlinear=True)


def _cumsum(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    p = ctx.patterns.get(ins.ins[0])
    if p is None:
        return None
    params = dict(ins.params)
    shape = ctx.shape(ins.ins[0])
    axis, reverse = params["axis"] % len(shape), params["reverse"]
    pos = np.moveaxis(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), axis, -1)
    lines = pos.reshape(-1, shape[axis])
    _check_size(lines.shape[0] * shape[axis] * (shape[axis] + 1) // 2, "a cumulative sum")
    i, j = np.tril_indices(shape[axis])  # result i of a line reads j <= i
    if reverse:
        i, j = j, i
    rows = lines[:, i].reshape(-1)
    cols = lines[:, j].reshape(-1)
    return (selector(rows, cols, (p.shape[0], p.shape[0])) @ p).tocsr()


def _reshape(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    return ctx.patterns.get(ins.ins[0])


def _transpose(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    shape = ctx.shape(ins.ins[0])
    perm = dict(ins.params)["perm"]
    pos = np.transpose(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), perm)
    return gather(ctx.patterns.get(ins.ins[0]), pos.reshape(-1))


def _broadcast_to(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    pos = broadcast_positions(ctx.shape(ins.ins[0]), ctx.shape(ins.out))
    return gather(ctx.patterns.get(ins.ins[0]), pos)


def _index(ctx: Context, ins: Any) -> np.ndarray | None:
    idx = ctx.const(ins.ins[1])
    if idx is None:
        return None
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def _take(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    idx = _index(ctx, ins)
    p = ctx.patterns.get(ins.ins[0])
    if idx is None or p is None:  # a computed index: any element may be read
        return conservative(ctx, ins, prim, nonlinear=False)
    return gather(p, idx % max(p.shape[0], 1))


def _scatter(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    idx = _index(ctx, ins)
    px, pv = ctx.patterns.get(ins.ins[0]), ctx.patterns.get(ins.ins[2])
    if idx is None:
        return conservative(ctx, ins, prim, nonlinear=False)
    m = ctx.size(ins.out)
    idx = idx % max(m, 1)
    parts = []
    if px is not None:
        if prim is P.scatter_set:  # written positions no longer depend on x
            keep = np.ones(m, dtype=bool)
            keep[idx] = False
            kept = np.flatnonzero(keep)
            parts.append((selector(kept, kept, (m, m)) @ px).tocsr())
        else:
            parts.append(px)
    if pv is not None:
        vshape = ctx.shape(ins.ins[2])
        ishape = tuple(np.shape(ctx.const(ins.ins[1])))
        while len(vshape) > len(ishape) and vshape[0] == 1:  # as NumPy's assignment drops them
            vshape = vshape[1:]
        vpos = broadcast_positions(vshape, ishape)
        parts.append((selector(idx, vpos, (m, pv.shape[0])) @ pv).tocsr())
    return union(parts)


def _matmul_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple:
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    return a2, b2, batch


#: (result element, k) pairs a product's exact rule may enumerate; beyond
#: them it takes each result's row of a and column of b whole (`_matmul`)
MATMUL_PAIRS = 1 << 22


def _matmul(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    """out[β, i, j] reads a[β, i, k] and b[β, k, j] for every k; where the other
    operand is a constant, only the k where it is nonzero (enumerated from its
    nonzeros, so a large constant matrix costs its nonzeros).  Two variable
    operands with more than `MATMUL_PAIRS` (element, k) pairs: each result
    element depends on its whole row of a and column of b (the same pattern,
    its Hessian terms a superset)."""
    a, b = ins.ins
    return _product(ctx, ins, ctx.shape(a), ctx.shape(b), ctx.patterns.get(a),
                    ctx.patterns.get(b), ctx.const(a), ctx.const(b))


def _gram(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    """x^T x (x x^T): the product of x's transpose and x (x and its transpose)."""
    x = ins.ins[0]
    shape, p, c = ctx.shape(x), ctx.patterns.get(x), ctx.const(x)
    perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
    pos = np.transpose(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), perm)
    t_shape = tuple(shape[i] for i in perm)
    pt, ct = gather(p, pos.reshape(-1)), (None if c is None else np.swapaxes(c, -1, -2))
    if dict(ins.params)["trans"]:
        return _product(ctx, ins, shape, t_shape, p, pt, c, ct)
    return _product(ctx, ins, t_shape, shape, pt, p, ct, c)


def _product(ctx: Context, ins: Any, sa: tuple, sb: tuple, pa: Pattern | None,
             pb: Pattern | None, ca: Any, cb: Any) -> Pattern | None:
    """`_matmul`'s pattern of a @ b given the operands' shapes, patterns and
    constant values (None where not constant)."""
    if pa is None and pb is None:
        return None
    a2, b2, batch = _matmul_shapes(sa, sb)
    m, K, q = a2[-2], a2[-1], b2[-1]
    nb = math.prod(batch)
    apos = broadcast_positions(a2[:-2], batch) if a2[:-2] else np.zeros(nb, np.int64)
    bpos = broadcast_positions(b2[:-2], batch) if b2[:-2] else np.zeros(nb, np.int64)
    size = ctx.size(ins.out)
    live = ctx.live_of(ins.out)
    if pb is None and cb is not None:  # a variable, b a constant: b's nonzeros
        ctx.reads.append(cb)
        nz = np.broadcast_to(np.asarray(cb).reshape(b2), batch + (K, q)).reshape(nb, K, q)
        beta, k, j = (np.repeat(v.astype(np.int64), m) for v in np.nonzero(nz))
        i = np.tile(np.arange(m, dtype=np.int64), beta.size // max(m, 1))
    elif pa is None and ca is not None:  # b variable, a a constant: a's nonzeros
        ctx.reads.append(ca)
        nz = np.broadcast_to(np.asarray(ca).reshape(a2), batch + (m, K)).reshape(nb, m, K)
        beta, i, k = (np.repeat(v.astype(np.int64), q) for v in np.nonzero(nz))
        j = np.tile(np.arange(q, dtype=np.int64), beta.size // max(q, 1))
    elif nb * m * q * K <= MATMUL_PAIRS:
        beta, i, j, k = (g.reshape(-1) for g in np.indices((nb, m, q, K), dtype=np.int64))
    else:
        return _matmul_blocks(ctx, ins, pa, pb, a2, b2, batch, apos, bpos, live)
    out = (beta * m + i) * q + j
    ai = (apos[beta] * m + i) * K + k
    bi = (bpos[beta] * K + k) * q + j
    parts = []
    ra = gather(pa, ai) if pa is not None else None
    rb = gather(pb, bi) if pb is not None else None
    for r in (ra, rb):
        if r is not None:
            parts.append((selector(out, np.arange(out.size), (size, out.size)) @ r).tocsr())
    if not parts:
        return empty(size, ctx.n)
    ctx.add_outer(ra, rb, live[out] if live is not None else None)
    return union(parts)


def _matmul_blocks(ctx: Context, ins: Any, pa: Pattern | None, pb: Pattern | None,
                   a2: tuple, b2: tuple, batch: tuple, apos: np.ndarray, bpos: np.ndarray,
                   live: np.ndarray | None) -> Pattern | None:
    """A large product's pattern: out[β, i, j] on all of a[β, i, :] and b[β, :, j]."""
    m, K, q = a2[-2], a2[-1], b2[-1]
    nb = math.prod(batch)
    beta, i, j = (g.reshape(-1) for g in np.indices((nb, m, q), dtype=np.int64))
    ga = gb = None
    if pa is not None:
        e = np.arange(pa.shape[0], dtype=np.int64)
        rows_a = (selector(e // K, e, (pa.shape[0] // max(K, 1), pa.shape[0])) @ pa).tocsr()
        ga = gather(rows_a, apos[beta] * m + i)
    if pb is not None:
        e = np.arange(pb.shape[0], dtype=np.int64)
        cols_b = (selector((e // (K * q)) * q + e % q, e, (pb.shape[0] // max(K, 1),
                                                          pb.shape[0])) @ pb).tocsr()
        gb = gather(cols_b, bpos[beta] * q + j)
    ctx.add_outer(ga, gb, live)
    return union([ga, gb])


def _operand_patterns(ctx: Context, ins: Any, prim: Primitive) -> list[tuple[int, Pattern]]:
    """(slot, pattern) of each operand the result is differentiable in."""
    return [(slot, ctx.patterns[slot]) for argnum, slot in enumerate(ins.ins)
            if slot in ctx.patterns and _differentiable_arg(prim, argnum)]


def conservative(ctx: Context, ins: Any, prim: Primitive, nonlinear: bool = True
                 ) -> Pattern | None:
    """Every result element depends on every input element of the operands."""
    rows = [p for _, p in _operand_patterns(ctx, ins, prim)]
    if not rows:
        return None
    out = dense_rows(rows, ctx.size(ins.out), ctx.n)
    live = ctx.live_of(ins.out)
    if nonlinear and ctx.hessian and out.nnz and (live is None or live.any()):
        cols = out.indices[:out.indptr[1]] if out.shape[0] else out.indices[:0]
        row = sp.csr_matrix((np.ones(cols.size, bool), cols, [0, cols.size]),
                            shape=(1, ctx.n))
        ctx.add_outer(row, row)
    return out


def _stacked_matrices(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    """A linear-algebra primitive of stacked matrices (``inv``, ``solve``,
    ``cholesky`` of shape (..., n, n)): `conservative` within each matrix of
    the stack, none across them.  The stack is the first operand's leading
    axes (every one of these takes a matrix first); where an operand or the
    result does not start with them (broadcast stacks), `conservative`."""
    k = len(ctx.shape(ins.ins[0])) - 2
    stack = ctx.shape(ins.ins[0])[:k]
    slots = [*ins.ins, ins.out]
    count = math.prod(stack)
    if k < 1 or count == 0 or any(ctx.shape(s)[:k] != stack for s in slots):
        return conservative(ctx, ins, prim)
    per = []  # each operand's rows summed into its matrix's row
    for slot, p in _operand_patterns(ctx, ins, prim):
        size = ctx.size(slot)
        per.append((selector(np.arange(size) // max(size // count, 1), np.arange(size),
                             (count, size)) @ p).tocsr())
    matrices = union(per)
    if matrices is None:
        return None
    out_size = ctx.size(ins.out)
    out_of = np.arange(out_size) // max(out_size // count, 1)  # each result's matrix
    live = ctx.live_of(ins.out)
    if ctx.hessian:
        ctx.add_outer(matrices, matrices, None if live is None else
                      np.bincount(out_of[live], minlength=count) > 0)
    return gather(matrices, out_of)


def _row_positions(ctx: Context, idx_slot: int, rows: int, r: int) -> np.ndarray | None:
    """The flat positions a gather or scatter by rows of r elements reaches
    for a constant index operand, None for a traced one (integer data)."""
    idx = ctx.const(idx_slot)
    if idx is None:
        return None
    k = np.asarray(idx).astype(np.int64).reshape(-1) % max(rows, 1)
    return (k[:, None] * r + np.arange(r)).reshape(-1)


def _any_row(p: Pattern, rows: int, r: int) -> Pattern:
    """For each position c within a row: what element c of any of p's rows
    depends on (a traced index may pick any row)."""
    cols = np.arange(rows * r)
    return (selector(cols % max(r, 1), cols, (r, rows * r)) @ p).tocsr()


def _gather_rows(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    """Exact for constant indices; for traced ones dense over the gathered
    axis (each result element may be that position of any row), never
    missing a nonzero."""
    x, idx = ins.ins
    p = ctx.patterns.get(x)
    if p is None:
        return None
    shape = ctx.shape(x)
    rows, r = shape[0], math.prod(shape[1:])
    positions = _row_positions(ctx, idx, rows, r)
    if positions is not None:
        return gather(p, positions)
    return gather(_any_row(p, rows, r), np.tile(np.arange(r), ctx.size(idx)))


def _scatter_add_rows(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    acc, idx, v = ins.ins
    pa, pv = ctx.patterns.get(acc), ctx.patterns.get(v)
    parts = [pa]
    if pv is not None:
        shape = ctx.shape(acc)
        rows, r = shape[0], math.prod(shape[1:])
        positions = _row_positions(ctx, idx, rows, r)
        if positions is not None:
            parts.append((selector(positions, np.arange(positions.size),
                                   (ctx.size(ins.out), pv.shape[0])) @ pv).tocsr())
        else:
            parts.append(gather(_any_row(pv, ctx.size(idx), r), np.tile(np.arange(r), rows)))
    return union(parts)


def _linear_conservative(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    return conservative(ctx, ins, prim, nonlinear=False)


def _none(ctx: Context, ins: Any, prim: Primitive) -> Pattern | None:
    return None


def _differentiable_arg(prim: Primitive, argnum: int) -> bool:
    if not prim.differentiable:
        return False
    try:
        return prim.jvp_rule(argnum) is not None or prim.vjp_rule(argnum) is not None
    except NotImplementedError:
        return True  # a user's primitive without rules: assume it depends


#: exact rules (and conservative ones known to be linear), by primitive;
#: elementwise primitives all share `_elementwise`, and any primitive not
#: here is `conservative`
RULES: dict[Primitive, Callable[..., Any]] = check_table({
    P.sum: _sum, P.max: _sum, P.min: _sum,  # extrema: linear piecewise
    P.prod: _prod,
    P.cumsum: _cumsum,
    P.reshape: _reshape, P.transpose: _transpose, P.broadcast_to: _broadcast_to,
    P.take: _take, P.scatter_set: _scatter, P.scatter_add: _scatter,
    P.matmul: _matmul, P.gram: _gram,
    P.stop_gradient: _none, P.guard: _none,
    P.fft: _linear_conservative, P.take_along: _linear_conservative,
    P.scatter_add_along: _linear_conservative,
    P.gather_rows: _gather_rows, P.scatter_add_rows: _scatter_add_rows,
    **{registry[name]: _stacked_matrices for name in (
        "solve", "solve_triangular", "triangular_matmul", "cholesky", "eigh", "eig",
        "numpy.linalg.eig_complex", "svd", "qr", "linalg_factors", "pinv", "sylvester", "sqrtm",
        "logabsdet", "numpy.linalg.det", "numpy.linalg.adjugate", "numpy.linalg.det_phase")},
}, "sparse.patterns.RULES")


def rule_for(prim: Primitive) -> Callable[..., Any]:
    if not prim.differentiable:
        return _none
    rule = RULES.get(prim)
    if rule is not None:
        return rule
    if prim.elementwise:
        return _elementwise
    return conservative


# -- the sweep ------------------------------------------------------------------
def live_instructions(tape: Tape) -> list[int]:
    """Indices of the instructions an output depends on through differentiable
    arguments, in tape order."""
    live_slots = set(tape.outputs)
    keep = []
    for k in range(len(tape.instrs) - 1, -1, -1):
        ins = tape.instrs[k]
        if ins.out not in live_slots:
            continue
        prim = registry[ins.prim]
        keep.append(k)
        for argnum, s in enumerate(ins.ins):
            if _differentiable_arg(prim, argnum):
                live_slots.add(s)
    keep.reverse()
    return keep


def element_liveness(tape: Tape, keep: list[int]) -> dict[int, np.ndarray]:
    """Per slot, a mask of the elements an output depends on through
    differentiable arguments (a backward sweep over the live instructions
    ``keep``): a nonlinearity's elements outside it have a zero adjoint and
    add nothing to the Hessian.  Exact for elementwise operations, gathers,
    scatters, reshapes, transposes, broadcasts and reductions; any other
    instruction makes all of its operands' elements live."""
    live: dict[int, np.ndarray] = {}
    for s in tape.outputs:
        live[s] = np.ones(tape.avals[s].size, dtype=bool)

    def mark(slot: int, positions: np.ndarray | None, mask: np.ndarray | None = None) -> None:
        m = live.get(slot)
        if m is None:
            m = live[slot] = np.zeros(tape.avals[slot].size, dtype=bool)
        if mask is not None:
            m |= mask
        elif positions is None:
            m[:] = True
        else:
            m[positions] = True

    for k in reversed(keep):
        ins = tape.instrs[k]
        out = live.get(ins.out)
        if out is None or not out.any():
            continue
        prim = registry[ins.prim]
        shape = tuple(tape.avals[ins.out].shape)
        args = [(a, s) for a, s in enumerate(ins.ins) if _differentiable_arg(prim, a)]
        idx = tape.consts.get(ins.ins[1]) if len(ins.ins) > 1 else None
        if prim.elementwise or prim is P.broadcast_to:
            for _, s in args:
                pos = broadcast_positions(tuple(tape.avals[s].shape), shape)
                mark(s, pos[out])
        elif prim is P.reshape:
            mark(ins.ins[0], None, out)
        elif prim is P.transpose:
            src = tuple(tape.avals[ins.ins[0]].shape)
            pos = np.transpose(np.arange(math.prod(src)).reshape(src), dict(ins.params)["perm"])
            mark(ins.ins[0], pos.reshape(-1)[out])
        elif prim is P.take and idx is not None:
            size = max(tape.avals[ins.ins[0]].size, 1)
            mark(ins.ins[0], np.asarray(idx, dtype=np.int64).reshape(-1)[out] % size)
        elif prim in (P.scatter_set, P.scatter_add) and idx is not None:
            flat = np.asarray(idx, dtype=np.int64).reshape(-1) % max(out.size, 1)
            if prim is P.scatter_set:
                kept = out.copy()
                kept[flat] = False
                mark(ins.ins[0], None, kept)
            else:
                mark(ins.ins[0], None, out)
            vshape = tuple(tape.avals[ins.ins[2]].shape)
            ishape = tuple(np.shape(idx))
            while len(vshape) > len(ishape) and vshape[0] == 1:
                vshape = vshape[1:]
            vpos = broadcast_positions(vshape, ishape)
            mark(ins.ins[2], vpos[out[flat]])
        elif prim in (P.sum, P.prod, P.max, P.min):
            src = tuple(tape.avals[ins.ins[0]].shape)
            axes = tuple(a % len(src) for a in dict(ins.params)["axes"]) if src else ()
            group, _ = _reduce_map(src, axes, dict(ins.params)["keepdims"])
            mark(ins.ins[0], None, out[group] if group.size else np.zeros(0, bool))
        else:
            for _, s in args:
                mark(s, None)
    return live


def propagate(tape: Tape, wrt: int, hessian: bool = False, reads: list | None = None
              ) -> Context:
    """Patterns of every live slot with respect to input slot ``wrt`` (and, with
    ``hessian``, the terms of the outputs' Hessian pattern); the constants
    whose values a rule read are appended to ``reads``."""
    n = tape.avals[wrt].size
    ctx = Context(tape, n, hessian, reads)
    ctx.patterns[wrt] = identity(n)
    keep = live_instructions(tape)
    if hessian:
        ctx.live = element_liveness(tape, keep)
    for k in keep:
        ins = tape.instrs[k]
        if not any(s in ctx.patterns for s in ins.ins):
            continue
        prim = registry[ins.prim]
        out = rule_for(prim)(ctx, ins, prim)
        if out is not None:
            if out.shape != (ctx.size(ins.out), n):  # a rule's mistake must not pass silently
                raise AssertionError(f"sparsity rule of {ins.prim} made a {out.shape} pattern "
                                     f"for a result of size {ctx.size(ins.out)}")
            ctx.patterns[ins.out] = out
    return ctx


def jacobian_pattern(tape: Tape, wrt: int, output: int | None = None,
                     reads: list | None = None) -> sp.csr_matrix:
    """The Jacobian pattern (bool CSR, output size x input size) of ``output``
    (default the tape's only output) with respect to input slot ``wrt``."""
    out = tape.outputs[0] if output is None else output
    ctx = propagate(tape, wrt, reads=reads)
    p = ctx.patterns.get(out)
    if p is None:
        p = empty(tape.avals[out].size, tape.avals[wrt].size)
    return canonical(p)


def hessian_pattern(tape: Tape, wrt: int, reads: list | None = None) -> sp.csr_matrix:
    """The Hessian pattern (bool CSR, n x n, symmetric) of the tape's outputs'
    (a scalar's) with respect to input slot ``wrt``."""
    ctx = propagate(tape, wrt, hessian=True, reads=reads)
    n = ctx.n
    if not ctx.terms:
        return canonical(empty(n, n))
    return union_of_terms(ctx.terms, n)


def union_of_terms(terms: list[sp.csr_matrix], n: int) -> sp.csr_matrix:
    """The union of n x n patterns in canonical form, row by row in one
    compiled pass (a marker per column) rather than by scipy from their
    concatenated coordinates: at n = 10^5 the terms of a banded objective
    hold several million entries, and the coordinates' copies, conversion
    and sort were most of the pattern's time."""
    index = np.int32 if n < 2**31 - 1 else np.int64
    ptrs = np.empty((len(terms), n + 1), np.int64)
    offset = 0
    for k, t in enumerate(terms):
        ptrs[k] = t.indptr
        ptrs[k] += offset
        offset += t.indptr[-1]
    cols = np.concatenate([t.indices for t in terms]).astype(index, copy=False)
    kept = np.concatenate([t.data for t in terms]).astype(bool, copy=False)
    indptr, indices = _union_rows(ptrs, cols, kept, n)
    if indptr[-1] >= 2**31 - 1:
        index = np.int64
    p = sp.csr_matrix((np.ones(indices.size, bool), indices.astype(index, copy=False),
                       indptr.astype(index)), shape=(n, n))
    p.has_canonical_format = True  # sorted and without duplicates by construction
    return p


@_compiled
def _union_rows(ptrs, cols, kept, n):  # noqa: ANN001, ANN202
    mark = np.full(n, -1, np.int64)
    indptr = np.zeros(n + 1, np.int64)
    out = np.empty(max(ptrs[-1, -1], 1), cols.dtype)
    size = 0
    for i in range(n):
        start = size
        for k in range(ptrs.shape[0]):
            for a in range(ptrs[k, i], ptrs[k, i + 1]):
                j = cols[a]
                if kept[a] and mark[j] != i:
                    mark[j] = i
                    out[size] = j
                    size += 1
        if size - start > 32:
            out[start:size] = np.sort(out[start:size])
        else:  # a short row: insertion sort
            for q in range(start + 1, size):
                v = out[q]
                r = q - 1
                while r >= start and out[r] > v:
                    out[r + 1] = out[r]
                    r -= 1
                out[r + 1] = v
        indptr[i + 1] = size
    return indptr, out[:size].copy()


def canonical(p: Any) -> sp.csr_matrix:
    p = sp.csr_matrix(p, dtype=bool)
    p.eliminate_zeros()
    p.sum_duplicates()
    p.sort_indices()
    # scipy's own index type (int32 while it fits): a CSR matrix made from
    # these arrays each call then takes them as they are, without a copy
    index = np.int32 if max(p.shape + (p.nnz,)) < 2**31 - 1 else np.int64
    p.indices = p.indices.astype(index, copy=False)
    p.indptr = p.indptr.astype(index, copy=False)
    return p
