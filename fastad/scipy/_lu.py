"""scipy.linalg's LU family on traced matrices.

The pivots are LAPACK's, found on the values (`plain_call`, a guard: a
compiled replay whose values would pivot differently retraces); the rows so
permuted are factored by elimination without pivoting, traced, so the
factors' derivatives are exact for those pivots.  The elimination is n steps
of rank-1 updates, O(n^3) work as LAPACK's but held on the tape step by step,
so its reverse sweep keeps n matrices: meant for the small and moderate
matrices of a model, not for n in the thousands, where `solve` (one
instruction, whose derivative is two more solves) is the way.
`lu_solve` of a traced `lu_factor` is that `solve` of the matrix factored.
On plain values every function is SciPy's."""
from __future__ import annotations

from typing import Any

import numpy as _np
import scipy.linalg as _scipy_linalg

from .. import numpy as fnp
from ._special_matrices import _plain
from ..numpy._plain import plain_call


def _lapack_pivots(a: Any) -> _np.ndarray:
    return plain_call(lambda v: _scipy_linalg.lu_factor(v, check_finite=False)[1], (a,), {})


def _row_order(piv: _np.ndarray) -> _np.ndarray:
    """The rows of a in the order LAPACK's interchanges leave them (P a)."""
    order = _np.arange(piv.size)
    for i, p in enumerate(piv):
        order[i], order[p] = order[p], order[i]
    return order


def _eliminated(m: Any) -> Any:
    """Doolittle's elimination of a square matrix, in place as LAPACK packs
    it: the unit lower factor's multipliers below the diagonal, U on and
    above."""
    n = fnp.shape(m)[-1]
    rows, cols = _np.arange(n)[:, None], _np.arange(n)[None, :]
    for k in range(n - 1):
        below = rows[:, 0] > k
        mult = fnp.where(below, m[:, k] / fnp.where(below, m[k, k], 1.0), 0.0)
        m = m - fnp.where(cols > k, mult[:, None] * m[k][None, :], 0.0)
        m = fnp.where((rows > k) & (cols == k), mult[:, None], m)
    return m


def _square(a: Any, name: str) -> None:
    shp = fnp.shape(a)
    if len(shp) != 2 or shp[0] != shp[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {tuple(shp)}")


class LUFactors(tuple):
    """``(lu, piv)`` of a traced matrix, which `lu_solve` solves with the
    matrix itself."""

    matrix: Any

    def __new__(cls, lu: Any, piv: Any, matrix: Any) -> "LUFactors":
        self = super().__new__(cls, (lu, piv))
        self.matrix = matrix
        return self


def lu_factor(a: Any, overwrite_a: bool = False, check_finite: bool = True) -> Any:
    """``(lu, piv)``: L (unit diagonal, below) and U packed in one matrix,
    and LAPACK's row interchanges."""
    if _plain(a):
        return _scipy_linalg.lu_factor(a, overwrite_a, check_finite)
    _square(a, "lu_factor")
    piv = _lapack_pivots(a)
    return LUFactors(_eliminated(fnp.take(a, _row_order(piv), axis=0)), piv, a)


def lu_solve(lu_and_piv: Any, b: Any, trans: int = 0, overwrite_b: bool = False,
             check_finite: bool = True) -> Any:
    """x with a x = b (trans 0), a^T x = b (1) or a^H x = b (2)."""
    lu, piv = lu_and_piv
    if _plain(lu, b):
        return _scipy_linalg.lu_solve((lu, piv), b, trans, overwrite_b, check_finite)
    if trans not in (0, 1, 2):
        raise ValueError("trans must be 0, 1 or 2")
    if isinstance(lu_and_piv, LUFactors):
        a = lu_and_piv.matrix
        a = a if trans == 0 else fnp.swapaxes(fnp.conj(a) if trans == 2 else a, -1, -2)
        return fnp.linalg.solve(a, b)
    from .linalg import solve_triangular
    lu = fnp.conj(lu) if trans == 2 else lu
    order = _row_order(_np.asarray(piv))
    if trans == 0:  # L U x = P b
        y = solve_triangular(lu, fnp.take(b, order, axis=0), lower=True, unit_diagonal=True)
        return solve_triangular(lu, y)
    # U^T L^T (P x) = b
    y = solve_triangular(lu, b, trans=1)
    z = solve_triangular(lu, y, trans=1, lower=True, unit_diagonal=True)
    return fnp.take(z, _np.argsort(order), axis=0)


def lu(a: Any, permute_l: bool = False, overwrite_a: bool = False, check_finite: bool = True,
       p_indices: bool = False) -> Any:
    """``(p, l, u)`` with a = p @ l @ u (``p_indices``: p as the row of l each
    row of a is, a = l[p] @ u), or ``(p @ l, u)`` with ``permute_l``."""
    if _plain(a):
        return _scipy_linalg.lu(a, permute_l, overwrite_a, check_finite, p_indices)
    _square(a, "lu")
    order = _row_order(_lapack_pivots(a))
    packed = _eliminated(fnp.take(a, order, axis=0))
    n = fnp.shape(a)[-1]
    eye = _np.eye(n, dtype=fnp.result_dtype(packed))
    lower = fnp.tril(packed, -1) + eye
    upper = fnp.triu(packed)
    back = _np.argsort(order)  # a = (l u)[back]
    if permute_l:
        return fnp.take(lower, back, axis=0), upper
    if p_indices:
        return back, lower, upper
    return eye[order].T, lower, upper


__all__ = ["lu", "lu_factor", "lu_solve"]
