"""Linear algebra: products (``matmul``, ``dot``, ``tensordot``, ``einsum``,
...), as transposes, reshapes and one batched ``matmul``, and the functions
of ``fastad.numpy.linalg``, each a primitive (a factorization, packed) or
written with them."""
from __future__ import annotations

import bisect
import builtins
import collections
import math
import operator
import types
from typing import Any

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.errors import TracingError
from ..core.tracer import Tracer, bind, bind_computed, value_of
from ._base import _axes, _float_dtype, _p, eye_like, iscomplexobj, ndim, result_dtype, shape
from ._elementwise import (_abs2, absolute, astype, conjugate, exp, log, multiply, power, real,
                           sqrt, stop_gradient, ufunc_like)
from ._reductions import all as all_, max, min, sum
from ._shape import (broadcast_to, diagonal, expand_dims, matrix_transpose, moveaxis, ravel,
                     reshape, swapaxes, transpose)

__all__ = ["matmul_", "solve_", "matmul", "dot", "vdot", "inner", "outer", "tensordot", "einsum",
           "EighResult", "EigResult", "SVDResult", "QRResult", "SlogdetResult", "linalg"]


def matmul_(a: Any, b: Any) -> Any:
    return bind(_p("matmul"), a, b)


def solve_(a: Any, b: Any) -> Any:
    return bind(_p("solve"), a, b)


def _is_mask(x: Any) -> bool:
    # (the dtype read directly where there is one: asked on every product)
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    return (kind if type(kind) is str else result_dtype(x).kind) == "b"


def _matmul(a: Any, b: Any) -> Any:
    """a @ b, NumPy's matmul of traced values."""
    # On every traced product (and every rule of one): each shape is asked
    # once, and reshapes and broadcasts known to change the shape are bound
    # directly, without the front end's checks.
    sa, sb = shape(a), shape(b)
    if not sa or not sb:
        raise ValueError("matmul: input operand does not have enough dimensions")
    if _is_mask(a) and _is_mask(b):
        # NumPy's product of masks: whether any pair is true (counted in floats)
        return _matmul(astype(a, _np.float64), astype(b, _np.float64)) > 0.0
    squeeze_a, squeeze_b = len(sa) == 1, len(sb) == 1
    if squeeze_a:
        sa = (1, sa[0])
        a = bind(_p("reshape"), a, shape=sa)
    if squeeze_b:
        sb = (sb[0], 1)
        b = bind(_p("reshape"), b, shape=sb)
    if sa[-1] != sb[-2]:
        raise ValueError(f"matmul: shapes {sa} and {sb} do not align")
    if not (squeeze_a or squeeze_b) and sa[:-2] == sb[:-2]:
        gram = _gram_of(a, b)
        if gram is not None:
            return gram
    batch: tuple[int, ...] = ()
    if len(sa) > 2 or len(sb) > 2:
        batch = _np.broadcast_shapes(sa[:-2], sb[:-2])
        a = broadcast_to(a, batch + sa[-2:])
        b = broadcast_to(b, batch + sb[-2:])
    out = matmul_(a, b)
    if squeeze_a or squeeze_b:
        out_shape = batch + ((sa[-2],) if not squeeze_a else ()) + (
            (sb[-1],) if not squeeze_b else ())
        out = bind(_p("reshape"), out, shape=out_shape)
    return out


matmul = ufunc_like(_np.matmul, _matmul)


def _gram_of(a: Any, b: Any) -> Any:
    """x.T @ x or x @ x.T of one real traced x, as the `gram` primitive, else
    None: a Gram matrix (least squares' normal equations, a linear kernel)
    has a derivative of one product where two general ones would take two."""
    if not (isinstance(a, Tracer) and isinstance(b, Tracer) and a.builder is b.builder) \
            or _np.dtype(a.dtype).kind != "f" or a.dtype != b.dtype:
        return None
    tape = a.builder.tape
    swap = tuple(range(ndim(a) - 2)) + (ndim(a) - 1, ndim(a) - 2)
    for t, x, trans in ((a, b, False), (b, a, True)):
        instr = _producer(tape, t.slot)
        if instr is not None and instr.prim == "transpose" and instr.ins[0] == x.slot \
                and instr.kwargs.get("perm") == swap:
            return bind(_p("gram"), x, trans=trans)
    return None


def _into(out: Any, result: Any, name: str) -> Any:
    """``out=`` of a product: NumPy's when nothing is traced, else a write into out."""
    from ._keywords import write_out  # the item assignment of the modules after this one
    return write_out(out, result, name)


def dot(a: Any, b: Any, out: Any = None) -> Any:
    if out is not None and not _traced(a, b, out):
        return _np.dot(a, b, out)
    na, nb = len(shape(a)), len(shape(b))
    if na == 0 or nb == 0:
        result = multiply(a, b)
    elif nb <= 2:
        result = _matmul(a, b)
    else:
        result = tensordot(a, b, axes=([na - 1], [nb - 2]))
    return result if out is None else _into(out, result, "dot")


def vdot(a: Any, b: Any) -> Any:
    return dot(conjugate(ravel(a)), ravel(b))  # NumPy conjugates the first argument


def inner(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([ndim(a) - 1], [ndim(b) - 1]))


def outer(a: Any, b: Any, out: Any = None) -> Any:
    if out is not None and not _traced(a, b, out):
        return _np.outer(a, b, out)
    result = multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))
    return result if out is None else _into(out, result, "outer")


def _traced(*values: Any) -> bool:
    return builtins.any(isinstance(v, Tracer) for v in values)


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    if isinstance(axes, (int, _np.integer)):
        axes_a = list(range(ndim(a) - int(axes), ndim(a)))
        axes_b = list(range(int(axes)))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = [_axis_index(x, ndim(a)) for x in axes_a]
    axes_b = [_axis_index(x, ndim(b)) for x in axes_b]
    for i, j in zip(axes_a, axes_b):
        if shape(a)[i] != shape(b)[j]:
            raise ValueError("tensordot: shape-mismatch for sum")
    free_a = [i for i in range(ndim(a)) if i not in axes_a]
    free_b = [j for j in range(ndim(b)) if j not in axes_b]
    k = math.prod(shape(a)[i] for i in axes_a)
    m = math.prod(shape(a)[i] for i in free_a)
    n = math.prod(shape(b)[j] for j in free_b)
    a2 = reshape(transpose(a, free_a + axes_a), (m, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, n))
    out = matmul_(a2, b2)
    return reshape(out, tuple(shape(a)[i] for i in free_a) + tuple(shape(b)[j] for j in free_b))


def _einsum_subscripts(interleaved: tuple[Any, ...]) -> tuple[Any, ...]:
    """einsum's interleaved form (op, [0, 1], op, [1, 2], [0, 2]) as its
    subscripts form ("ab,bc->ac", op, op): axis numbers become letters."""
    pairs = len(interleaved) // 2
    operands, subs = interleaved[0:2 * pairs:2], interleaved[1:2 * pairs:2]
    output = interleaved[-1] if len(interleaved) % 2 else None  # a trailing output sublist

    def letters(sub: Any) -> str:
        out = []
        for k in sub:
            if k is Ellipsis:
                out.append("...")
            elif isinstance(k, (int, _np.integer)) and 0 <= k < 52:
                out.append("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(k)])
            else:
                raise ValueError(f"einsum: subscript {k!r} is not an integer in [0, 52)")
        return "".join(out)
    spec = ",".join(letters(sub) for sub in subs)
    if output is not None:
        spec += "->" + letters(output)
    return (spec, *operands)


def einsum(*operands: Any, out: Any = None, optimize: Any = False, **kwargs: Any) -> Any:
    """Einstein summation, as transposes, reshapes, diagonals and batched
    matmuls: ``...``, any number of operands (contracted left to right), and
    size-1 axes broadcast against longer ones, as NumPy's.  ``kwargs``:
    NumPy's ``dtype``, ``order`` and ``casting``."""
    if not _traced(out, *operands):
        return _np.einsum(*operands, out=out, optimize=optimize, **kwargs)
    unknown = set(kwargs) - {"dtype", "order", "casting"}
    if unknown:
        raise TypeError(f"einsum() got an unexpected keyword argument '{sorted(unknown)[0]}'")
    result = _einsum(*operands)
    if kwargs.get("dtype") is not None:
        result = astype(result, kwargs["dtype"])
    return result if out is None else _into(out, result, "einsum")


def _einsum(*operands: Any) -> Any:
    """einsum of traced operands."""
    if not isinstance(operands[0], str):
        operands = _einsum_subscripts(operands)
    subscripts, operands = operands[0], operands[1:]
    ins, out_sub = _einsum_parse(subscripts.replace(" ", ""), [ndim(op) for op in operands])
    if len(ins) != len(operands):
        raise ValueError("einsum: more operands than subscripts, or fewer")
    dims: dict[str, int] = {}
    for sub, op in zip(ins, operands):
        if len(sub) != ndim(op):
            raise ValueError(f"einsum: '{sub}' does not match an operand of shape {shape(op)}")
        for c, d in zip(sub, shape(op)):
            if c not in dims or dims[c] == 1:
                dims[c] = d
            elif d not in (1, dims[c]):
                raise ValueError(f"einsum: operands could not be broadcast together on '{c}'")
    ops = []
    for sub, op in zip(ins, operands):  # size-1 axes broadcast to the others' size
        full = tuple(dims[c] for c in sub)
        ops.append((sub, broadcast_to(op, full) if tuple(shape(op)) != full else op))
    while len(ops) > 2:  # contract the first two, keeping what the rest or the output need
        (sa, a), (sb, b) = ops[0], ops[1]
        later = set(out_sub).union(*(set(s) for s, _ in ops[2:]))
        keep = "".join(dict.fromkeys(c for c in sa + sb if c in later))
        ops = [(keep, _einsum2(sa, a, sb, b, keep))] + ops[2:]
    if len(ops) == 1:
        sub, op = ops[0]
        return _einsum1(sub, op, out_sub)
    (sa, a), (sb, b) = ops
    return _einsum2(sa, a, sb, b, out_sub)


def _einsum_parse(spec: str, ndims: list[int]) -> tuple[list[str], str]:
    """Input subscripts and the output's, with ``...`` written out in letters
    no subscript uses (broadcast from the right, as NumPy's)."""
    lhs, arrow, out_sub = spec.partition("->")
    ins = lhs.split(",")
    used = set(spec)
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell = 0
    for sub, nd in zip(ins, ndims):
        if "..." in sub:
            ell = builtins.max(ell, nd - (len(sub) - 3))
    letters = "".join(spare[:ell])
    expanded = []
    for sub, nd in zip(ins, ndims):
        if "..." in sub:
            k = nd - (len(sub) - 3)
            sub = sub.replace("...", letters[ell - k:] if k else "")
        expanded.append(sub)
    if arrow:
        out_sub = out_sub.replace("...", letters)
    else:
        joined = "".join(s for s in expanded)
        out_sub = letters + "".join(sorted(c for c in set(joined) if joined.count(c) == 1
                                           and c not in letters))
    return expanded, out_sub


def _einsum1(sub: str, op: Any, out_sub: str) -> Any:
    sub, op = _einsum_diagonal(sub, op)
    lonely = tuple(i for i, c in enumerate(sub) if c not in out_sub)
    if lonely:
        op = sum(op, axis=lonely)
        sub = "".join(c for i, c in enumerate(sub) if i not in lonely)
    return transpose(op, [sub.index(c) for c in out_sub])


def _einsum2(sa: str, a: Any, sb: str, b: Any, out_sub: str) -> Any:
    sa, a = _einsum_diagonal(sa, a)
    sb, b = _einsum_diagonal(sb, b)
    lonely_a = tuple(i for i, c in enumerate(sa) if c not in out_sub and c not in sb)
    if lonely_a:  # summed out before the contraction
        a = sum(a, axis=lonely_a)
        sa = "".join(c for i, c in enumerate(sa) if i not in lonely_a)
    lonely_b = tuple(i for i, c in enumerate(sb) if c not in out_sub and c not in sa)
    if lonely_b:
        b = sum(b, axis=lonely_b)
        sb = "".join(c for i, c in enumerate(sb) if i not in lonely_b)
    batch = [c for c in out_sub if c in sa and c in sb]
    contract = [c for c in sa if c in sb and c not in out_sub]
    free_a = [c for c in sa if c not in sb]
    free_b = [c for c in sb if c not in sa]
    dims = {c: shape(a)[sa.index(c)] for c in sa}
    dims.update({c: shape(b)[sb.index(c)] for c in sb})
    a3 = transpose(a, [sa.index(c) for c in batch + free_a + contract])
    b3 = transpose(b, [sb.index(c) for c in batch + contract + free_b])
    nb = math.prod(dims[c] for c in batch)
    fa = math.prod(dims[c] for c in free_a)
    fb = math.prod(dims[c] for c in free_b)
    k = math.prod(dims[c] for c in contract)
    out = matmul_(reshape(a3, (nb, fa, k)), reshape(b3, (nb, k, fb)))
    out = reshape(out, tuple(dims[c] for c in batch + free_a + free_b))
    have = batch + free_a + free_b
    return transpose(out, [have.index(c) for c in out_sub])


def _einsum_diagonal(sub: str, op: Any) -> tuple[str, Any]:
    """Take diagonals for letters repeated within one operand ('ii->i')."""
    while len(set(sub)) < len(sub):
        c = next(ch for ch in sub if sub.count(ch) > 1)
        i, j = sub.index(c), sub.index(c, sub.index(c) + 1)
        op = moveaxis(diagonal(op, 0, i, j), -1, 0)
        sub = c + "".join(ch for k, ch in enumerate(sub) if k not in (i, j))
    return sub, op


def _solve(a: Any, b: Any) -> Any:
    if ndim(a) < 2 or shape(a)[-1] != shape(a)[-2]:
        raise _np.linalg.LinAlgError("solve: a must be square in its last two dimensions")
    vector = ndim(b) == 1  # NumPy 2: only a 1-d b is a vector (else a stack of matrices)
    if vector:
        b = expand_dims(b, -1)
    sa, sb = shape(a), shape(b)
    if len(sa) > 2 or len(sb) > 2:  # (two matrices: nothing to broadcast)
        batch = _np.broadcast_shapes(sa[:-2], sb[:-2])
        a = broadcast_to(a, batch + sa[-2:])
        b = broadcast_to(b, batch + sb[-2:])
    lower = _triangle_of(a)
    x = solve_(a, b) if lower is None else bind(_p("solve_triangular"), a, b, lower=lower)
    return reshape(x, shape(x)[:-1]) if vector else x


def _inv(a: Any) -> Any:
    _square(a, "inv")  # NumPy's LinAlgError, not a broadcasting error
    eye = broadcast_to(eye_like(a), shape(a))
    lower = _triangle_of(a)
    return solve_(a, eye) if lower is None else bind(_p("solve_triangular"), a, eye, lower=lower)


def _triangle_of(a: Any) -> bool | None:
    """Whether a traced matrix is lower (True) or upper (False) triangular by
    how it was made, else None (`_triangles`).  A solve against it, or its
    inverse, is then a triangular solve: NumPy code written without SciPy
    solves against a Cholesky factor with ``np.linalg.solve``, which
    factorizes the triangle again (an LU, O(n^3)) in each solve and in each
    solve's derivative."""
    if not isinstance(a, Tracer) or ndim(a) < 2:
        return None
    kinds = _triangles(a.builder.tape, a.slot, ndim(a), 8)
    return True if "lower" in kinds else False if "upper" in kinds else None


_FLIP = {"lower": "upper", "upper": "lower"}


def _triangles(tape: Any, slot: int, rank: int, depth: int) -> frozenset[str]:
    """The triangles ("lower", "upper": both for a diagonal) that hold slot's
    matrices' nonzeros, as far as the instructions making it show: a Cholesky
    factor; a constant's own pattern; a `where` of a constant mask and zero
    (`tril`, `triu`); a transpose of the last two axes; sums and differences
    of triangles, negated, or scaled by finite constants; ``depth`` steps
    back.  Each is a triangle for every value the inputs may take (a traced
    factor could be inf, and inf * 0 is not 0), so a compiled tape keeps it."""
    if slot in tape.consts:
        value = tape.consts[slot]
        if _np.ndim(value) < 2:
            return frozenset()
        return _triangles_of_pattern(value != 0)
    instr = _producer(tape, slot)
    if depth == 0 or instr is None:
        return frozenset()  # an input, or too far back
    prim, ins = instr.prim, instr.ins
    if prim == "cholesky":
        return frozenset({"lower"})
    if prim == "transpose":
        swap = tuple(range(rank - 2)) + (rank - 1, rank - 2)
        if instr.kwargs.get("perm") != swap:
            return frozenset()
        return frozenset(_FLIP[k] for k in _triangles(tape, ins[0], rank, depth - 1))
    if prim == "neg":
        return _triangles(tape, ins[0], rank, depth - 1)
    if prim in ("add", "sub"):  # of two triangles of the result's shape
        if any(tape.avals[i].shape != tape.avals[slot].shape for i in ins):
            return frozenset()
        return _triangles(tape, ins[0], rank, depth - 1) & \
            _triangles(tape, ins[1], rank, depth - 1)
    if prim in ("mul", "div"):  # a triangle by a finite constant (nonzero below)
        m, c = ins if ins[1] in tape.consts or prim == "div" else ins[::-1]
        if m in tape.consts or c not in tape.consts \
                or tape.avals[m].shape != tape.avals[slot].shape:
            return frozenset()
        value = _np.asarray(tape.consts[c])
        if not _np.all(_np.isfinite(value)) or (prim == "div" and not _np.all(value)):
            return frozenset()  # inf * 0 and 0 / 0 are not zero
        return _triangles(tape, m, rank, depth - 1)
    if prim == "where":  # where(mask, m, 0) or where(mask, 0, m), the mask a constant
        mask, x, zero = ins
        if mask not in tape.consts or (zero not in tape.consts and x not in tape.consts):
            return frozenset()
        kept = _np.asarray(tape.consts[mask], bool)
        if zero not in tape.consts:
            kept, zero = ~kept, x
        if _np.ndim(kept) < 2 or _np.any(tape.consts[zero]):
            return frozenset()
        return _triangles_of_pattern(kept)
    return frozenset()


def _triangles_of_pattern(kept: Any) -> frozenset[str]:
    return frozenset(k for k, part in (("lower", _np.triu(kept, 1)),
                                       ("upper", _np.tril(kept, -1))) if not part.any())


def _producer(tape: Any, slot: int) -> Any:
    """The instruction whose result is ``slot``, or None (an input or a
    constant): results are numbered in tape order."""
    k = bisect.bisect_left(tape.instrs, slot, key=_out_slot)
    return tape.instrs[k] if k < len(tape.instrs) and tape.instrs[k].out == slot else None


def _out_slot(instr: Any) -> int:
    return instr.out


def _slogdet(a: Any) -> tuple[Any, Any]:
    _square(a, "slogdet")
    # the two primitives' values from one factorization, as NumPy computes them;
    # a complex determinant's sign is a phase, with a derivative
    sign, logdet = _np.linalg.slogdet(value_of(a))
    phase = _p("numpy.linalg.det_phase") if iscomplexobj(a) else _p("detsign")
    return SlogdetResult(bind_computed(phase, sign, a), bind_computed(_p("logabsdet"), logdet, a))


_DET_GUARDED = 24  # rows up to which det tells singular matrices (e^-12 > 1e-8)


_DET_EXPANDED = 3  # rows up to which det is its cofactor expansion


def _det(a: Any) -> Any:
    _square(a, "det")
    if iscomplexobj(a) or not isinstance(a, Tracer):
        s, logdet = _slogdet(a)
        return s * exp(logdet)
    if shape(a)[-1] <= _DET_EXPANDED:
        # a polynomial of a few products: finite derivatives at singular
        # matrices without the guard below, so that a det inside a loop's
        # step (a Kalman filter's likelihood, a Jacobian's determinant in
        # a time step) leaves the steps alike and the loop a loop
        return _cofactor_det(a)
    # |det| above 1e-8 of Hadamard's bound (the product of the rows' norms):
    # the chain through log|det| is accurate (a guard under compilation,
    # decided on a's value alone, so that no derivative is taken of the test).
    # A random n x n matrix's |det| is about e^(-n/2) of the bound: beyond
    # _DET_GUARDED rows it would fall under the test, so there the chain is
    # taken without it (a singular matrix raises LinAlgError in its gradient).
    # The test reads the chain's own factorization, stopped (one LU per det)
    s, logdet = _slogdet(a)
    if shape(a)[-1] > _DET_GUARDED:
        return s * exp(logdet)
    fixed = stop_gradient(a)
    bound = sum(0.5 * log(sum(fixed * fixed, axis=-1)), axis=-1) + math.log(1e-8)
    if bool(all_(stop_gradient(logdet) > bound)):
        return s * exp(logdet)
    # a singular matrix, where the chain through log|det| would invert it: one
    # primitive whose derivative is the adjugate, finite there (JAX's); a
    # NumPy call between compiled segments, traced only for such matrices
    return bind(_p("numpy.linalg.det"), a)


def _cofactor_det(a: Any) -> Any:
    """det of (..., n, n) ``a``, n <= 3, by cofactor expansion along the first row."""
    n = shape(a)[-1]
    e = [[a[..., i, j] for j in range(n)] for i in range(n)]
    if n == 0:
        return sum(a, axis=(-2, -1)) * 0.0 + 1.0
    if n == 1:
        return e[0][0]
    if n == 2:
        return e[0][0] * e[1][1] - e[0][1] * e[1][0]
    return (e[0][0] * (e[1][1] * e[2][2] - e[1][2] * e[2][1])
            - e[0][1] * (e[1][0] * e[2][2] - e[1][2] * e[2][0])
            + e[0][2] * (e[1][0] * e[2][1] - e[1][1] * e[2][0]))


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    if axis is not None:
        if not isinstance(axis, (tuple, int, _np.integer)):
            raise TypeError("'axis' must be None, an integer or a tuple of integers")
        _axes(axis, ndim(x), zero_d=False)  # (NumPy's AxisError, duplicates' ValueError)
    if axis is None and ord is not None and ndim(x) > 2:
        raise ValueError("Improper number of dimensions to norm.")
    if axis is None and ndim(x) == 2 and ord is not None:
        axis = (0, 1)
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = int(axis[0])
    vector = (ndim(x) == 1 and axis is None) or isinstance(axis, (int, _np.integer))
    if ord is None or (ord == "fro" and not vector) or (ord == 2 and vector):
        return sqrt(sum(_abs2(x), axis=axis, keepdims=keepdims))
    if vector and isinstance(ord, (int, float)) and not isinstance(ord, bool):
        if ord == _np.inf:
            return max(absolute(x), axis=axis, keepdims=keepdims)
        if ord == -_np.inf:
            return min(absolute(x), axis=axis, keepdims=keepdims)
        if ord == 0:  # the number of nonzero entries
            return sum(astype(x != 0, _float_dtype(x)), axis=axis, keepdims=keepdims)
        if ord == 1:
            return sum(absolute(x), axis=axis, keepdims=keepdims)
        return power(sum(power(absolute(x), float(ord)), axis=axis, keepdims=keepdims),
                     1.0 / ord)
    if not vector and isinstance(axis, tuple) and len(axis) == 2:
        return _matrix_norm(x, ord, tuple(_axis_index(int(a), ndim(x)) for a in axis), keepdims)
    raise ValueError(f"Invalid norm order {ord!r} for {'vectors' if vector else 'matrices'}")


def _matrix_norm(x: Any, ord: Any, axes: tuple[int, int], keepdims: bool) -> Any:
    """Matrix norms over two axes: 1, -1, inf, -inf (column and row sums of
    |x|), 2, -2 and 'nuc' (singular values; distinct ones for the derivative)."""
    r, c = axes
    if ord in (2, -2, "nuc"):
        m = moveaxis(x, (r, c), (-2, -1))
        s = _svd(m, compute_uv=False)
        out = max(s, axis=-1) if ord == 2 else min(s, axis=-1) if ord == -2 else sum(s, axis=-1)
    elif ord in (1, -1):
        col = sum(absolute(x), axis=r)
        out = (max if ord == 1 else min)(col, axis=c - 1 if c > r else c)
    elif ord in (_np.inf, -_np.inf):
        row = sum(absolute(x), axis=c)
        out = (max if ord == _np.inf else min)(row, axis=r - 1 if r > c else r)
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices")
    if keepdims:
        out = expand_dims(expand_dims(out, builtins.min(r, c)), builtins.max(r, c))
    return out


def _square(a: Any, name: str) -> None:
    if ndim(a) < 2 or shape(a)[-1] != shape(a)[-2]:
        raise _np.linalg.LinAlgError(f"{name}: the last two dimensions must be square")


def _numpys_result(name: str, fields: str, probe: Any) -> type:
    """NumPy's named result class (``numpy.linalg.eigh(a)``'s EighResult), so
    that a traced result is of the type NumPy's function returns eagerly;
    a namedtuple of the same fields where NumPy has none."""
    with _np.errstate(all="ignore"):
        kind = type(probe(_np.eye(2)))
    if kind is not tuple and getattr(kind, "_fields", None) == tuple(fields.split()):
        return kind
    return collections.namedtuple(name, fields)


EighResult = _numpys_result("EighResult", "eigenvalues eigenvectors", _np.linalg.eigh)
EigResult = _numpys_result("EigResult", "eigenvalues eigenvectors", _np.linalg.eig)
SVDResult = _numpys_result("SVDResult", "U S Vh", _np.linalg.svd)
QRResult = _numpys_result("QRResult", "Q R", _np.linalg.qr)
SlogdetResult = _numpys_result("SlogdetResult", "sign logabsdet", _np.linalg.slogdet)


def _cholesky(a: Any, upper: bool = False) -> Any:
    _square(a, "cholesky")
    if upper:  # reads the upper triangle, as NumPy does
        return swapaxes(bind(_p("cholesky"), swapaxes(a, -1, -2)), -1, -2)
    return bind(_p("cholesky"), a)


def _eigh(a: Any, UPLO: str = "L") -> Any:
    _square(a, "eigh")
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    packed = bind(_p("eigh"), a, lower=UPLO == "L")
    w = packed[..., 0, :]  # real, as NumPy's, of a complex (Hermitian) matrix too
    return EighResult(real(w) if iscomplexobj(packed) else w, packed[..., 1:, :])


def _eigvalsh(a: Any, UPLO: str = "L") -> Any:
    return _eigh(a, UPLO).eigenvalues


def _eig(a: Any) -> Any:
    """Eigenvalues and unit eigenvectors, distinct eigenvalues for the
    derivative: real ones for a real matrix whose spectrum is real, else
    complex ones, as NumPy's dtype (under compilation, which case it is is a
    guard)."""
    _square(a, "eig")
    if iscomplexobj(a) or not _real_spectrum(a):
        packed = bind(_p("numpy.linalg.eig_complex"), a)
    else:
        packed = bind(_p("eig"), a)
    return EigResult(packed[..., 0, :], packed[..., 1:, :])


def _real_spectrum(a: Any) -> bool:
    from ..core.tracer import Tracer
    from ._base import _CHECK, _Call, _Slot
    def real(v: Any) -> bool:  # noqa: E306
        return bool(_np.all(_np.isreal(_np.linalg.eigvals(v))))
    if not isinstance(a, Tracer):
        return real(a)
    outcome = real(a.value)
    bool(bind(_CHECK, a, call=_Call(real, (_Slot,), {}, outcome)))
    return outcome


def _eigvals(a: Any) -> Any:
    return _eig(a).eigenvalues


def _svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
         hermitian: bool = False) -> Any:
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("svd: the array must be at least two-dimensional")
    m, n = shape(a)[-2:]
    if compute_uv and full_matrices and m != n:
        # the completed singular vectors: NumPy's, with no derivative (JAX's too)
        packed = bind(_p("linalg_factors"), a, kind="svd_full")
        s = packed[..., 0, :m if m < n else n]
        return SVDResult(packed[..., 1:1 + m, :m], real(s) if iscomplexobj(packed) else s,
                         packed[..., 1 + m:, :n])
    packed = bind(_p("svd"), a)
    s = packed[..., 0, :]
    s = real(s) if iscomplexobj(packed) else s  # real, as NumPy's
    if not compute_uv:
        return s
    return SVDResult(packed[..., 1:1 + m, :], s, swapaxes(packed[..., 1 + m:, :], -1, -2))


def _qr(a: Any, mode: str = "reduced") -> Any:
    if mode not in ("reduced", "r", "complete"):
        raise ValueError(f"Unrecognized mode '{mode}'" if mode != "raw" else
                         "qr(mode='raw') (LAPACK's Householder reflectors) is not supported "
                         "on traced values; use 'reduced', 'complete' or 'r'")
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("qr: the array must be at least two-dimensional")
    m, n = shape(a)[-2:]
    if m < n or (mode == "complete" and m != n):
        # a wide matrix's, or the completed Q: NumPy's, with no derivative (JAX's too)
        kind = "qr_complete" if mode == "complete" else "qr"
        k = m if kind == "qr_complete" or m < n else n
        packed = bind(_p("linalg_factors"), a, kind=kind)
        q, r = packed[..., :m, :k], packed[..., m:, :n]
        return r if mode == "r" else QRResult(q, r)
    packed = bind(_p("qr"), a)
    q, r = packed[..., :m, :], packed[..., m:, :]
    return r if mode == "r" else QRResult(q, r)


def _pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    if rcond is not None or rtol is not None:
        raise TracingError("pinv: rcond/rtol are not supported on traced values; the default "
                           "cutoff is used")
    return bind(_p("pinv"), a)


def _matrix_power(a: Any, n: int) -> Any:
    """a @ a @ ... (n times) by repeated squaring; n < 0 inverts first."""
    _square(a, "matrix_power")
    n = operator.index(n)
    if n < 0:
        a, n = _inv(a), -n
    result = None
    while n:
        if n & 1:
            result = a if result is None else matmul_(result, a)
        n >>= 1
        if n:
            a = matmul_(a, a)
    return result if result is not None else broadcast_to(eye_like(a), shape(a))


linalg = types.SimpleNamespace(
    solve=_solve, inv=_inv, slogdet=_slogdet, det=_det, norm=_norm, cholesky=_cholesky,
    eigh=_eigh, eigvalsh=_eigvalsh, eig=_eig, eigvals=_eigvals, svd=_svd, qr=_qr, pinv=_pinv,
    matrix_power=_matrix_power, LinAlgError=_np.linalg.LinAlgError,
    matrix_transpose=matrix_transpose,
    diagonal=lambda x, offset=0: diagonal(x, offset, axis1=-2, axis2=-1))
