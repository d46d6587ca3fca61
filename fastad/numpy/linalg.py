"""``fastad.numpy.linalg``: NumPy's ``linalg`` namespace, differentiable
(``import fastad.numpy.linalg``, ``from fastad.numpy.linalg import solve``).

The factorizations and solves are in `_linalg`; this module adds the names
written with them (``lstsq``, ``cond``, ``multi_dot``, ``tensorsolve``,
...) and re-exports the rest of ``numpy.linalg`` (``LinAlgError``).  On
plain values each function gives NumPy's result."""
from __future__ import annotations

import math
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.tracer import Tracer
from ._base import ndim, result_dtype, shape
from ._composites import _numpy_unless_traced, _traced
from ._elementwise import _abs2, conjugate, multiply
from ._linalg import _matrix_norm, linalg as _ns
from ._linalg import matmul, outer
from ._linalg import tensordot as _tensordot
from ._reductions import amax, sum
from ._shape import moveaxis, reshape

LinAlgError = _np.linalg.LinAlgError
#: autograd.numpy.linalg's helpers, which code written for it calls: the
#: batched product and the transpose of the last two axes
_dot = matmul


def T(x: Any) -> Any:  # noqa: N802 - autograd's name
    return moveaxis(x, -1, -2)


def lstsq(a: Any, b: Any, rcond: Any = None) -> tuple[Any, Any, Any, Any]:
    """(x, residuals, rank, s) as NumPy's: x = pinv(a) @ b (a of full rank for
    the derivative); the rank NumPy's int32, read off the singular values."""
    if not _traced(a, b):
        return _np.linalg.lstsq(a, b, rcond=rcond)
    m, n = shape(a)[-2:]
    x = matmul(pinv(a), b)
    s = svd(a, compute_uv=False)
    rank = (_guarded_rank(s, m, n) if isinstance(s, Tracer)
            else int(_np.linalg.matrix_rank(_np.asarray(a))))
    if m > n and rank == n:
        r = b - matmul(a, x)
        residuals = sum(_abs2(r), axis=0)
        if ndim(b) == 1:
            residuals = reshape(residuals, (1,))
    else:  # none, in the singular values' real dtype, as NumPy's
        residuals = _np.empty((0,), result_dtype(s))
    return x, residuals, _np.int32(rank), s


def _guarded_rank(s: Tracer, m: int, n: int) -> int:
    """matrix_rank's count of the singular values s above max(s) max(m, n) eps,
    with guards that the count holds (s is sorted, so two comparisons): compiled
    code checks them itself, with no host call."""
    values = _np.asarray(s.value)
    eps = _np.finfo(values.dtype).eps
    rank = int(_np.count_nonzero(values > values.max(initial=0) * max(m, n) * eps))
    if values.size:
        tol = amax(s, axis=-1) * (max(m, n) * eps)
        if rank > 0:
            bool(s[..., rank - 1] > tol)
        if rank < values.shape[-1]:
            bool(s[..., rank] <= tol)
    return rank


def cond(x: Any, p: Any = None) -> Any:
    if not _traced(x):
        return _np.linalg.cond(x, p)
    if p is None or p == 2 or p == -2:
        s = svd(x, compute_uv=False)
        return s[..., 0] / s[..., -1] if p != -2 else s[..., -1] / s[..., 0]
    return norm(x, p, axis=(-2, -1)) * norm(inv(x), p, axis=(-2, -1))


def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:
    if not _traced(x):
        return _np.linalg.matrix_norm(x, keepdims=keepdims, ord=ord)
    if ord is None or ord == "fro":  # (NumPy takes None for the Frobenius norm)
        return norm(x, axis=(-2, -1), keepdims=keepdims)
    return _matrix_norm(x, ord, (ndim(x) - 2, ndim(x) - 1), keepdims)


def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:
    if not _traced(x):
        return _np.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    if axis is None:
        out = norm(reshape(x, (-1,)), ord)
        return reshape(out, (1,) * ndim(x)) if keepdims else out
    if isinstance(axis, tuple) and len(axis) > 1:
        axis = _np.lib.array_utils.normalize_axis_tuple(axis, ndim(x))
        rest = [i for i in range(ndim(x)) if i not in axis]
        moved = moveaxis(x, list(axis), list(range(len(rest), ndim(x))))
        out = norm(reshape(moved, tuple(shape(x)[i] for i in rest) + (-1,)), ord, axis=-1)
        if keepdims:
            out = reshape(out, tuple(1 if i not in rest else d for i, d in enumerate(shape(x))))
        return out
    return norm(x, ord, axis=axis, keepdims=keepdims)


def matrix_rank(A: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """A plain integer (a guard under compilation)."""
    from ._plain import plain_call
    return plain_call(_np.linalg.matrix_rank, (A,), {"tol": tol, "hermitian": hermitian,
                                                     "rtol": rtol})


def multi_dot(arrays: Any, *, out: Any = None) -> Any:
    if not _traced(*arrays):
        return _np.linalg.multi_dot(arrays, out=out)
    if out is not None:
        raise TracingError("multi_dot(..., out=...) cannot be traced")
    result = arrays[0]
    for a in arrays[1:]:
        result = matmul(result, a)
    return result


def svdvals(x: Any, /) -> Any:
    if not _traced(x):
        return _np.linalg.svdvals(x)
    return svd(x, compute_uv=False)


def tensorinv(a: Any, ind: int = 2) -> Any:
    if not _traced(a):
        return _np.linalg.tensorinv(a, ind)
    old = shape(a)
    rows, cols = math.prod(old[:ind]), math.prod(old[ind:])
    return reshape(inv(reshape(a, (rows, cols))), old[ind:] + old[:ind])


def tensorsolve(a: Any, b: Any, axes: Any = None) -> Any:
    if not _traced(a, b):
        return _np.linalg.tensorsolve(a, b, axes)
    if axes is not None:
        a = moveaxis(a, list(axes), [ndim(a) - len(axes) + i for i in range(len(axes))])
    oldshape = shape(a)[-(ndim(a) - ndim(b)):]
    n = math.prod(oldshape)
    x = solve(reshape(a, (-1, n)), reshape(b, (-1,)))
    return reshape(x, oldshape)


def trace(x: Any, /, *, offset: int = 0, dtype: Any = None) -> Any:
    if not _traced(x):
        return _np.linalg.trace(x, offset=offset, dtype=dtype)
    return sum(diagonal(x, offset), axis=-1)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    if not _traced(x1, x2):
        return _np.linalg.vecdot(x1, x2, axis=axis)
    return sum(multiply(conjugate(x1), x2), axis=axis)


def cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    if not _traced(x1, x2):
        return _np.linalg.cross(x1, x2, axis=axis)
    from ._arrayfuncs import cross as _cross
    return _cross(x1, x2, axis=axis)


def _plain_first(name: str, fn: Any) -> Any:
    return _numpy_unless_traced(name, _np.linalg)(fn)


# _linalg's decompositions and solves; NumPy's own on plain values
(solve, inv, slogdet, det, norm, cholesky, eigh, eigvalsh, eig, eigvals, svd, qr, pinv,
 matrix_power, matrix_transpose, diagonal) = (
    _plain_first(name, getattr(_ns, name)) for name in (
        "solve", "inv", "slogdet", "det", "norm", "cholesky", "eigh", "eigvalsh", "eig",
        "eigvals", "svd", "qr", "pinv", "matrix_power", "matrix_transpose", "diagonal"))
matmul = _plain_first("matmul", matmul)
outer = _plain_first("outer", outer)
tensordot = _plain_first("tensordot", lambda a, b, /, *, axes=2: _tensordot(a, b, axes))


def test(*args: Any, **kwargs: Any) -> Any:
    return _np.linalg.test(*args, **kwargs)


__all__ = [n for n in dir(_np.linalg) if not n.startswith("_")]
