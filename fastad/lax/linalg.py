"""``jax.lax.linalg``: the factorizations and solves under JAX's names,
argument conventions and result orders (``eigh`` gives ``(v, w)``), on top
of `fastad.numpy.linalg` and `fastad.scipy.linalg`, differentiable as those
are.  Unlike JAX's, a factorization that fails (``cholesky`` of a matrix
that is not positive definite) raises NumPy's LinAlgError instead of
returning NaNs."""
from __future__ import annotations

from typing import Any

import numpy as _np

from .. import numpy as fnp
from ..scipy import linalg as _sl

__all__ = ["cholesky", "triangular_solve", "eigh", "qr", "svd", "lu", "tridiagonal_solve"]


def _mT(x: Any) -> Any:
    return fnp.swapaxes(x, -1, -2)


def _symmetrized(x: Any) -> Any:
    """(x + x^H) / 2: the derivative then falls on both triangles, as JAX's."""
    return (x + fnp.conjugate(_mT(x))) / 2


def cholesky(x: Any, *, symmetrize_input: bool = True) -> Any:
    """The lower factor L with L L^H = x."""
    return fnp.linalg.cholesky(_symmetrized(x) if symmetrize_input else x)


def triangular_solve(a: Any, b: Any, *, left_side: bool = False, lower: bool = False,
                     transpose_a: bool = False, conjugate_a: bool = False,
                     unit_diagonal: bool = False) -> Any:
    """x with op(a) x = b (``left_side``) or x op(a) = b (JAX's default),
    op(a) = a, a^T, conj(a) or a^H as ``transpose_a`` / ``conjugate_a`` say;
    a's other triangle is not read."""
    if conjugate_a:
        a = fnp.conjugate(a)
    if left_side:
        return _sl.solve_triangular(a, b, trans=1 if transpose_a else 0, lower=lower,
                                    unit_diagonal=unit_diagonal)
    # x op(a) = b  <=>  op(a)^T x^T = b^T
    xt = _sl.solve_triangular(a, _mT(b), trans=0 if transpose_a else 1, lower=lower,
                              unit_diagonal=unit_diagonal)
    return _mT(xt)


def eigh(x: Any, *, lower: bool = True, symmetrize_input: bool = True,
         sort_eigenvalues: bool = True, subset_by_index: Any = None, **_impl: Any) -> tuple:
    """``(v, w)``: the eigenvectors (columns) and ascending eigenvalues."""
    if subset_by_index is not None:
        raise NotImplementedError("eigh: subset_by_index is not supported by fastad")
    w, v = fnp.linalg.eigh(_symmetrized(x) if symmetrize_input else x, UPLO="L" if lower else "U")
    return v, w


def qr(x: Any, *, pivoting: bool = False, full_matrices: bool = True, **_impl: Any) -> tuple:
    if pivoting:
        raise NotImplementedError("qr: pivoting is not supported by fastad")
    return tuple(_sl.qr(x, mode="full" if full_matrices else "economic"))


def svd(x: Any, *, full_matrices: bool = True, compute_uv: bool = True,
        subset_by_index: Any = None, algorithm: Any = None) -> Any:
    if subset_by_index is not None:
        raise NotImplementedError("svd: subset_by_index is not supported by fastad")
    return _sl.svd(x, full_matrices=full_matrices, compute_uv=compute_uv)


def lu(x: Any) -> tuple:
    """``(lu, pivots, permutation)`` of a square matrix by partial pivoting
    (LAPACK's getrf): the unit-lower L and U packed in lu, pivots[i] the row
    swapped with row i, ``x[permutation] = L U``.  Written as row gathers and
    rank-1 updates, so it traces (pivots are integer data of the trace) and
    is differentiable in x away from ties of the pivot search."""
    n = fnp.shape(x)[-1]
    if fnp.ndim(x) != 2 or fnp.shape(x)[0] != n:
        raise ValueError(f"lu: fastad factors one square matrix; got shape {fnp.shape(x)}")
    rows = _np.arange(n)
    # the permutation as data of the trace when x is traced (gathered by traced pivots)
    perm = fnp.asarray(fnp.zeros_like(x[:, 0])).astype(_np.int64) + rows
    a, pivots = x, []
    for k in range(n):
        p = k + fnp.argmax(fnp.absolute(a[k:, k]))
        pivots.append(p)
        swap = fnp.where(rows == k, p, fnp.where(rows == p, k, rows))  # rows k and p swapped
        swap = fnp.asarray(swap).astype(_np.int64)
        a, perm = fnp.take(a, swap, axis=0), fnp.take(perm, swap)
        multipliers = a[k + 1:, k] / a[k, k]
        trailing = a[k + 1:, k + 1:] - fnp.outer(multipliers, a[k, k + 1:])
        below = fnp.concatenate([a[k + 1:, :k], multipliers[:, None], trailing], axis=1)
        a = fnp.concatenate([a[:k + 1], below], axis=0)
    return (a, fnp.asarray(fnp.stack(pivots)).astype(_np.int32),
            fnp.asarray(perm).astype(_np.int32))


def tridiagonal_solve(dl: Any, d: Any, du: Any, b: Any, *, perturb_singular: bool = False
                      ) -> Any:
    """x with A x = b, A tridiagonal with sub-, main and super-diagonals dl,
    d, du (dl[0] and du[-1] unused, as JAX's), solved densely."""
    dl, d, du = fnp.asarray(dl), fnp.asarray(d), fnp.asarray(du)
    m = fnp.shape(d)[-1]
    a = (fnp.expand_dims(d, -1) * _np.eye(m) + fnp.expand_dims(du, -1) * _np.eye(m, k=1)
         + fnp.expand_dims(dl, -1) * _np.eye(m, k=-1))
    return fnp.linalg.solve(a, b)
