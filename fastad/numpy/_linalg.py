"""Linear algebra: products (``matmul``, ``dot``, ``tensordot``, ``einsum``,
...), as transposes, reshapes and one batched ``matmul``, and the functions
of ``fastad.numpy.linalg``, each a primitive (a factorization, packed) or
written with them."""
from __future__ import annotations

import collections
import math
import operator
import types
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.tracer import bind
from ._base import _float_dtype, _p, eye_like, iscomplexobj, ndim, shape
from ._elementwise import _abs2, absolute, astype, conjugate, exp, multiply, power, sqrt
from ._reductions import max, min, sum
from ._shape import (broadcast_to, diagonal, expand_dims, matrix_transpose, moveaxis, ravel,
                     reshape, swapaxes, transpose)

__all__ = ["matmul_", "solve_", "matmul", "dot", "vdot", "inner", "outer", "tensordot", "einsum",
           "EighResult", "EigResult", "SVDResult", "QRResult", "linalg"]


def matmul_(a: Any, b: Any) -> Any:
    return bind(_p("matmul"), a, b)


def solve_(a: Any, b: Any) -> Any:
    return bind(_p("solve"), a, b)


def matmul(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        raise ValueError("matmul: input operand does not have enough dimensions")
    squeeze_a, squeeze_b = ndim(a) == 1, ndim(b) == 1
    if squeeze_a:
        a = reshape(a, (1, shape(a)[0]))
    if squeeze_b:
        b = reshape(b, (shape(b)[0], 1))
    if shape(a)[-1] != shape(b)[-2]:
        raise ValueError(f"matmul: shapes {shape(a)} and {shape(b)} do not align")
    batch = _np.broadcast_shapes(shape(a)[:-2], shape(b)[:-2])
    a = broadcast_to(a, batch + shape(a)[-2:])
    b = broadcast_to(b, batch + shape(b)[-2:])
    out = matmul_(a, b)
    out_shape = batch + ((shape(a)[-2],) if not squeeze_a else ()) + (
        (shape(b)[-1],) if not squeeze_b else ())
    return reshape(out, out_shape)


def dot(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    if ndim(b) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([ndim(a) - 1], [ndim(b) - 2]))


def vdot(a: Any, b: Any) -> Any:
    return dot(conjugate(ravel(a)), ravel(b))  # NumPy conjugates the first argument


def inner(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([ndim(a) - 1], [ndim(b) - 1]))


def outer(a: Any, b: Any) -> Any:
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    if isinstance(axes, (int, _np.integer)):
        axes_a = list(range(ndim(a) - int(axes), ndim(a)))
        axes_b = list(range(int(axes)))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = [x % ndim(a) for x in axes_a]
    axes_b = [x % ndim(b) for x in axes_b]
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


def einsum(subscripts: str, *operands: Any, optimize: Any = False) -> Any:
    """Einstein summation for one or two operands, as transposes, reshapes,
    diagonals and a batched matmul."""
    spec = subscripts.replace(" ", "")
    if "..." in spec:
        raise TracingError("einsum: '...' is not supported; write the axes out")
    if "->" in spec:
        lhs, out_sub = spec.split("->")
    else:
        lhs = spec
        letters = lhs.replace(",", "")
        out_sub = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != len(operands) or len(ins) not in (1, 2):
        raise TracingError("einsum: one or two operands are supported; chain calls for more")
    ops = []
    for k, (sub, op) in enumerate(zip(ins, operands)):
        if len(sub) != ndim(op):
            raise ValueError(f"einsum: '{sub}' does not match an operand of shape {shape(op)}")
        sub, op = _einsum_diagonal(sub, op)
        elsewhere = set(out_sub).union(*(set(s) for j, s in enumerate(ins) if j != k))
        lonely = tuple(i for i, c in enumerate(sub) if c not in elsewhere)
        if lonely:  # summed out before the contraction
            op = sum(op, axis=lonely)
            sub = "".join(c for i, c in enumerate(sub) if i not in lonely)
        ops.append((sub, op))
    if len(ops) == 1:
        sub, op = ops[0]
        return transpose(op, [sub.index(c) for c in out_sub])
    (sa, a), (sb, b) = ops
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
    batch = _np.broadcast_shapes(shape(a)[:-2], shape(b)[:-2])
    a = broadcast_to(a, batch + shape(a)[-2:])
    b = broadcast_to(b, batch + shape(b)[-2:])
    x = solve_(a, b)
    return reshape(x, shape(x)[:-1]) if vector else x


def _inv(a: Any) -> Any:
    return solve_(a, broadcast_to(eye_like(a), shape(a)))


def _slogdet(a: Any) -> tuple[Any, Any]:
    if iscomplexobj(a):  # the sign's derivative is not zero: refuse, never a wrong answer
        raise TracingError("slogdet/det of a complex matrix is not supported on traced values")
    return bind(_p("detsign"), a), bind(_p("logabsdet"), a)


def _det(a: Any) -> Any:
    s, logdet = _slogdet(a)
    return s * exp(logdet)


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
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
    raise TracingError(f"linalg.norm with ord={ord!r} on a {ndim(x)}-d array is not supported")


def _square(a: Any, name: str) -> None:
    if ndim(a) < 2 or shape(a)[-1] != shape(a)[-2]:
        raise _np.linalg.LinAlgError(f"{name}: the last two dimensions must be square")


EighResult = collections.namedtuple("EighResult", "eigenvalues eigenvectors")
EigResult = collections.namedtuple("EigResult", "eigenvalues eigenvectors")
SVDResult = collections.namedtuple("SVDResult", "U S Vh")
QRResult = collections.namedtuple("QRResult", "Q R")


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
    return EighResult(packed[..., 0, :], packed[..., 1:, :])


def _eigvalsh(a: Any, UPLO: str = "L") -> Any:
    return _eigh(a, UPLO).eigenvalues


def _eig(a: Any) -> Any:
    """Real matrices with real, distinct eigenvalues (others raise LinAlgError)."""
    _square(a, "eig")
    packed = bind(_p("eig"), a)
    return EigResult(packed[..., 0, :], packed[..., 1:, :])


def _eigvals(a: Any) -> Any:
    return _eig(a).eigenvalues


def _svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
         hermitian: bool = False) -> Any:
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("svd: the array must be at least two-dimensional")
    m, n = shape(a)[-2:]
    if compute_uv and full_matrices and m != n:
        raise TracingError("svd(full_matrices=True) of a non-square matrix: the extra singular "
                           "vectors have no unique derivative; pass full_matrices=False")
    packed = bind(_p("svd"), a)
    s = packed[..., 0, :]
    if not compute_uv:
        return s
    return SVDResult(packed[..., 1:1 + m, :], s, swapaxes(packed[..., 1 + m:, :], -1, -2))


def _qr(a: Any, mode: str = "reduced") -> Any:
    if mode not in ("reduced", "r"):
        raise TracingError(f"qr(mode={mode!r}) is not supported; use 'reduced' or 'r'")
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("qr: the array must be at least two-dimensional")
    m = shape(a)[-2]
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
