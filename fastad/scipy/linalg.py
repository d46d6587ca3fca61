"""scipy.linalg, differentiable (real matrices, batched over leading axes).

SciPy's own functions convert their arguments with ``np.asarray``, which a
traced value refuses: import these instead.  The derivative conditions of
each decomposition are those of `fastad.primitives.linalg`.
"""
from __future__ import annotations

from typing import Any

import numpy as _np
import scipy.linalg as _scipy_linalg

from .. import numpy as fnp
from ..core.tracer import Tracer
from ..primitives import linalg as _prims

solve = fnp.linalg.solve
inv = fnp.linalg.inv
det = fnp.linalg.det
pinv = fnp.linalg.pinv
norm = fnp.linalg.norm


def _mT(a: Any) -> Any:
    return fnp.swapaxes(a, -1, -2)


def cholesky(a: Any, lower: bool = False, overwrite_a: bool = False,
             check_finite: bool = True) -> Any:
    """The Cholesky factor reading a's lower triangle (lower=True, L L^T = a)
    or its upper one (the default, U^T U = a), as SciPy does."""
    return fnp.linalg.cholesky(a) if lower else _mT(fnp.linalg.cholesky(_mT(a)))


def cho_factor(a: Any, lower: bool = False, overwrite_a: bool = False,
               check_finite: bool = True) -> tuple[Any, bool]:
    """(factor, lower); the factor's other triangle is zero (SciPy leaves it
    arbitrary)."""
    return cholesky(a, lower=lower), lower


def cho_solve(c_and_lower: tuple[Any, bool], b: Any, overwrite_b: bool = False,
              check_finite: bool = True) -> Any:
    c, lower = c_and_lower
    if lower:
        return solve_triangular(c, solve_triangular(c, b, lower=True), trans=1, lower=True)
    return solve_triangular(c, solve_triangular(c, b, trans=1), lower=False)


def solve_triangular(a: Any, b: Any, trans: Any = 0, lower: bool = False,
                     unit_diagonal: bool = False, overwrite_b: bool = False,
                     check_finite: bool = True) -> Any:
    """x with T x = b (trans=0) or T^T x = b (trans=1 / 'T' / 'C'), T the lower
    or upper triangle of a."""
    if trans not in (0, 1, 2, "N", "T", "C"):
        raise ValueError(f"solve_triangular: unknown trans {trans!r}")
    if unit_diagonal:
        a = fnp.where(fnp.eye_like(a) > 0, 1.0, a)
    if trans not in (0, "N"):
        a, lower = _mT(a), not lower
    # SciPy's rule: a 1-d b is a vector, anything else a stack of (n, k) matrices
    # broadcast against a's stack; a stack of vectors, one per matrix of a, is
    # taken too where it cannot be read as matrices (SciPy refuses it)
    n, b_shape = fnp.shape(a)[-1], tuple(fnp.shape(b))
    vector = len(b_shape) == 1 or (len(b_shape) == fnp.ndim(a) - 1 and b_shape[-2] != n)
    if vector:
        b = fnp.expand_dims(b, -1)
    batch = _np.broadcast_shapes(tuple(fnp.shape(a)[:-2]), tuple(fnp.shape(b)[:-2]))
    if tuple(fnp.shape(a)[:-2]) != batch:
        a = fnp.broadcast_to(a, batch + tuple(fnp.shape(a)[-2:]))
    if tuple(fnp.shape(b)[:-2]) != batch:
        b = fnp.broadcast_to(b, batch + tuple(fnp.shape(b)[-2:]))
    x = _prims.solve_triangular(a, b, lower)
    return fnp.squeeze(x, -1) if vector else x


def solve_sylvester(a: Any, b: Any, q: Any) -> Any:
    """x with a x + x b = q."""
    return _prims.sylvester(a, b, q)


def sqrtm(A: Any, disp: bool = True, blocksize: int = 64) -> Any:
    """The principal square root of a matrix that has a real one; its
    derivative solves a Sylvester equation (no two eigenvalues of the root
    may sum to zero)."""
    fnp._square(A, "sqrtm")
    return _prims._call("sqrtm", A)


def eigh(a: Any, b: Any = None, lower: bool = True, eigvals_only: bool = False,
         **kwargs: Any) -> Any:
    if b is not None or kwargs:
        raise NotImplementedError("eigh: only the standard problem (no b, no subset) is "
                                  "differentiable here")
    w, v = fnp.linalg.eigh(a, UPLO="L" if lower else "U")
    return w if eigvals_only else (w, v)


def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True, **kwargs: Any) -> Any:
    result = fnp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)
    return tuple(result) if compute_uv else result


def qr(a: Any, mode: str = "full", **kwargs: Any) -> Any:
    """mode "economic", "r", or "full" where it is the same as "economic"
    (square matrices).  Tall matrices need "economic"; wide ones are refused
    by the primitive."""
    m, n = fnp.shape(a)[-2:]
    if mode == "full" and m > n:
        raise NotImplementedError("qr(mode='full') of a tall matrix: the extra columns of Q "
                                  "have no unique derivative; use mode='economic'")
    if mode == "r":
        return (fnp.linalg.qr(a, mode="r"),)
    if mode not in ("full", "economic"):
        raise NotImplementedError(f"qr: mode {mode!r} is not supported")
    return tuple(fnp.linalg.qr(a))


def solve_banded(l_and_u: tuple[int, int], ab: Any, b: Any, overwrite_ab: bool = False,
                 overwrite_b: bool = False, check_finite: bool = True) -> Any:
    """x with A x = b, A given by its diagonals in the rows of ab (LAPACK's
    band storage, as SciPy's): differentiable in ab and b, solved densely."""
    if not any(hasattr(v, "builder") for v in (ab, b)):
        return _scipy_linalg.solve_banded(l_and_u, ab, b, overwrite_ab, overwrite_b,
                                          check_finite)
    lower, upper = (int(v) for v in l_and_u)
    rows, n = fnp.shape(ab)
    if rows != lower + upper + 1:
        raise ValueError("invalid values for the number of lower and upper diagonals")
    i, j = _np.meshgrid(_np.arange(n), _np.arange(n), indexing="ij")
    inside = (i - j <= lower) & (j - i <= upper)
    dense_at = (i * n + j)[inside]
    band_at = ((upper + i - j) * n + j)[inside]
    zeros = _np.zeros(n * n, dtype=_np.result_type(fnp.result_dtype(ab), _np.float32))
    dense = fnp.scatter_set(zeros, dense_at, fnp.take_flat(fnp.ravel(ab), band_at))
    return fnp.linalg.solve(fnp.reshape(dense, (n, n)), b)


# Higham (2005), "The scaling and squaring method for the matrix exponential
# revisited": the [13/13] Pade approximant's coefficients and the 1-norm up to
# which it is accurate to double precision without squaring.
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
           1187353796428800.0, 129060195264000.0, 10559470521600.0, 670442572800.0,
           33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152


def expm(A: Any) -> Any:
    """The matrix exponential (batched over leading axes), as SciPy's: the
    [13/13] Pade approximant of A / 2**s, squared s times, s from A's 1-norm
    (Higham 2005).  Its derivative is that of those operations, exact for the
    approximant; the number of squarings is found on the values (a guard
    under a trace, `fastad.while_loop`).  On plain values it is SciPy's."""
    from ..loops import while_loop
    if not isinstance(A, Tracer):
        return _scipy_linalg.expm(A)
    A = fnp.asarray(A)
    shp = fnp.shape(A)
    if len(shp) < 2 or shp[-1] != shp[-2]:
        raise ValueError(f"expm expects square matrices, got shape {tuple(shp)}")
    if len(shp) > 2:
        flat = fnp.reshape(A, (-1,) + tuple(shp[-2:]))
        return fnp.reshape(fnp.stack([expm(flat[k]) for k in range(fnp.shape(flat)[0])]), shp)
    n = shp[-1]
    norm1 = fnp.max(fnp.sum(fnp.abs(A), axis=0))
    s = fnp.maximum(0.0, fnp.ceil(fnp.log2(fnp.maximum(norm1, 1e-300) / _THETA13)))
    As = A / 2.0 ** fnp.stop_gradient(s)
    b, eye = _PADE13, _np.eye(n, dtype=A.dtype if A.dtype.kind in "fc" else _np.float64)
    A2 = As @ As
    A4 = A2 @ A2
    A6 = A4 @ A2
    U = As @ (A6 @ (b[13] * A6 + b[11] * A4 + b[9] * A2)
              + b[7] * A6 + b[5] * A4 + b[3] * A2 + b[1] * eye)
    V = (A6 @ (b[12] * A6 + b[10] * A4 + b[8] * A2)
         + b[6] * A6 + b[4] * A4 + b[2] * A2 + b[0] * eye)
    R = fnp.linalg.solve(V - U, V + U)
    R, _ = while_loop(lambda c: c[1] > 0.5, lambda c: (c[0] @ c[0], c[1] - 1.0),
                      (R, fnp.stop_gradient(s)))
    return R


def __getattr__(name: str) -> Any:
    """The rest of scipy.linalg, as SciPy's (on plain values)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_scipy_linalg, name)


__all__ = ["cholesky", "cho_factor", "cho_solve", "solve_triangular", "solve_sylvester",
           "sqrtm", "expm", "eigh", "svd", "qr", "solve", "inv", "det", "pinv", "norm", "solve_banded"]
