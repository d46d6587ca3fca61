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
from ..core.guards import record_guard
from ..core.tracer import Tracer
from ..primitives import linalg as _prims

from ._lu import lu, lu_factor, lu_solve
from ._matfuncs import (cosm, coshm, expm_frechet, orthogonal_procrustes, polar, sinhm, sinm,
                        solve_continuous_lyapunov, solve_discrete_lyapunov, solve_lyapunov,
                        tanhm, tanm)
from ._special_matrices import (_plain, block_diag, circulant, companion, hankel, khatri_rao,
                                toeplitz)


# SciPy's keywords that choose how, not what: accepted, no effect on values
# (overwrite_*: SciPy may use the input's memory; check_finite: a NaN check)


def solve(a: Any, b: Any, lower: bool = False, overwrite_a: bool = False,
          overwrite_b: bool = False, check_finite: bool = True, assume_a: Any = None,
          transposed: bool = False) -> Any:
    """x with a x = b (a^T x = b, ``transposed``).  ``assume_a`` as SciPy's:
    'pos' solves by Cholesky, 'sym'/'her'/'pos' read only the ``lower`` (or
    upper) triangle of a, 'lower triangular'/'upper triangular' and
    'diagonal' read only those elements; others ('gen', 'banded',
    'tridiagonal', None) use all of a."""
    if _plain(a, b):
        return _scipy_linalg.solve(a, b, lower, overwrite_a, overwrite_b, check_finite,
                                   assume_a, transposed)
    kind = {"positive definite": "pos", "symmetric": "sym", "hermitian": "her",
            "general": "gen", "lower triangular": "lower", "upper triangular": "upper"}.get(
        assume_a, assume_a)
    if transposed:
        a = _mT(a)
    if kind in ("lower", "upper"):
        return solve_triangular(a, b, lower=kind == "lower")
    if kind == "diagonal":
        d = fnp.diagonal(a, axis1=-2, axis2=-1)
        return b / (d if fnp.ndim(b) == fnp.ndim(a) - 1 else d[..., :, None])
    if kind in ("sym", "her", "pos"):
        t = fnp.tril(a) if lower else fnp.triu(a)
        other = fnp.conj(_mT(t)) if kind != "sym" else _mT(t)
        a = t + other - fnp.where(fnp.eye_like(a) > 0, t, 0.0)
        if kind == "pos":
            return cho_solve((cholesky(a, lower=True), True), b)
    return fnp.linalg.solve(a, b)


def inv(a: Any, overwrite_a: bool = False, check_finite: bool = True) -> Any:
    return fnp.linalg.inv(a)


def det(a: Any, overwrite_a: bool = False, check_finite: bool = True) -> Any:
    return fnp.linalg.det(a)


def pinv(a: Any, *, atol: Any = None, rtol: Any = None, return_rank: bool = False,
         check_finite: bool = True) -> Any:
    """The pseudo-inverse, singular values below max(atol, rtol * s_max)
    dropped (rtol's default max(m, n) * eps, as SciPy's)."""
    if _plain(a):
        return _scipy_linalg.pinv(a, atol=atol, rtol=rtol, return_rank=return_rank,
                                  check_finite=check_finite)
    u, s, vh = fnp.linalg.svd(a, full_matrices=False)
    cut = _cutoff(fnp.max(s, axis=-1, keepdims=True), atol, rtol, fnp.shape(a), fnp.result_dtype(a))
    kept = s > cut
    out = _mT(vh) @ (fnp.where(kept, 1.0 / fnp.where(kept, s, 1.0), 0.0)[..., :, None] * _mT(u))
    return (out, fnp.sum(kept, axis=-1)) if return_rank else out


def pinvh(a: Any, atol: Any = None, rtol: Any = None, lower: bool = True,
          return_rank: bool = False, check_finite: bool = True) -> Any:
    """The pseudo-inverse of a symmetric (Hermitian) matrix from its
    ``lower`` (or upper) triangle, by eigendecomposition."""
    if _plain(a):
        return _scipy_linalg.pinvh(a, atol, rtol, lower, return_rank, check_finite)
    w, v = fnp.linalg.eigh(a, UPLO="L" if lower else "U")
    cut = _cutoff(fnp.max(fnp.abs(w), axis=-1, keepdims=True), atol, rtol, fnp.shape(a),
                  fnp.result_dtype(a))
    kept = fnp.abs(w) > cut
    out = (v * fnp.where(kept, 1.0 / fnp.where(kept, w, 1.0), 0.0)[..., None, :]) @ fnp.conj(_mT(v))
    return (out, fnp.sum(kept, axis=-1)) if return_rank else out


def _cutoff(largest: Any, atol: Any, rtol: Any, shape: tuple, dtype: Any) -> Any:
    atol = 0.0 if atol is None else atol
    if rtol is None:
        rtol = max(shape[-2:]) * _np.finfo(_np.result_type(dtype, _np.float32)).eps
    return fnp.stop_gradient(fnp.maximum(atol, rtol * largest))


def norm(a: Any, ord: Any = None, axis: Any = None, keepdims: bool = False,  # noqa: A002
         check_finite: bool = True) -> Any:
    return fnp.linalg.norm(a, ord, axis, keepdims)


def eig(a: Any, b: Any = None, left: bool = False, right: bool = True, overwrite_a: bool = False,
        overwrite_b: bool = False, check_finite: bool = True, homogeneous_eigvals: bool = False) -> Any:
    """(w, vr) of the standard problem, w complex as SciPy gives it."""
    if _plain(a, b):
        return _scipy_linalg.eig(a, b, left, right, overwrite_a, overwrite_b, check_finite,
                                 homogeneous_eigvals)
    if b is not None or left or homogeneous_eigvals:
        raise NotImplementedError("eig: only the standard problem's right eigenvectors are "
                                  "differentiable here (no b, left, homogeneous_eigvals)")
    w, v = fnp.linalg.eig(a)
    w = w if fnp.iscomplexobj(w) else w + 0j
    return (w, v) if right else w


def eigvals(a: Any, b: Any = None, overwrite_a: bool = False, check_finite: bool = True,
            homogeneous_eigvals: bool = False) -> Any:
    return eig(a, b, right=False, homogeneous_eigvals=homogeneous_eigvals)


def eigvalsh(a: Any, b: Any = None, *, lower: bool = True, **kwargs: Any) -> Any:
    return eigh(a, b, lower=lower, eigvals_only=True, **kwargs)


def svdvals(a: Any, overwrite_a: bool = False, check_finite: bool = True) -> Any:
    return fnp.linalg.svd(a, compute_uv=False)


def lstsq(a: Any, b: Any, cond: Any = None, overwrite_a: bool = False, overwrite_b: bool = False,
          check_finite: bool = True, lapack_driver: Any = None) -> Any:
    """(x, residues, rank, s), as SciPy's (``cond``: NumPy's ``rcond``)."""
    if _plain(a, b):
        return _scipy_linalg.lstsq(a, b, cond, overwrite_a, overwrite_b, check_finite,
                                   lapack_driver)
    return fnp.linalg.lstsq(a, b, rcond=cond)


def solveh_banded(ab: Any, b: Any, overwrite_ab: bool = False, overwrite_b: bool = False,
                  lower: bool = False, check_finite: bool = True) -> Any:
    """x with a x = b, a symmetric positive definite given by its upper (or
    ``lower``) diagonals in LAPACK's band storage: solved densely."""
    if _plain(ab, b):
        return _scipy_linalg.solveh_banded(ab, b, overwrite_ab, overwrite_b, lower, check_finite)
    u = fnp.shape(ab)[0] - 1
    half = _dense_from_band((0, u) if not lower else (u, 0), ab)
    return solve(half, b, lower=lower, assume_a="pos")


def solve_toeplitz(c_or_cr: Any, b: Any, check_finite: bool = True) -> Any:
    c, r = c_or_cr if isinstance(c_or_cr, tuple) else (c_or_cr, None)
    if _plain(c, r, b):
        return _scipy_linalg.solve_toeplitz(c_or_cr, b, check_finite)
    return _in_double(fnp.linalg.solve(toeplitz(c, r), b))  # SciPy's Levinson is double only


def _in_double(x: Any) -> Any:
    return fnp.astype(x, _np.result_type(fnp.result_dtype(x), _np.float64))


def matmul_toeplitz(c_or_cr: Any, x: Any, check_finite: bool = False, workers: Any = None) -> Any:
    c, r = c_or_cr if isinstance(c_or_cr, tuple) else (c_or_cr, None)
    if _plain(c, r, x):
        return _scipy_linalg.matmul_toeplitz(c_or_cr, x, check_finite, workers)
    return toeplitz(c, r) @ x


def solve_circulant(c: Any, b: Any, singular: str = "raise", tol: Any = None,
                    caxis: int = -1, baxis: int = 0, outaxis: int = 0) -> Any:
    if _plain(c, b):
        return _scipy_linalg.solve_circulant(c, b, singular, tol, caxis, baxis, outaxis)
    if fnp.ndim(c) != 1:
        raise NotImplementedError("solve_circulant: only a 1-d c is differentiable here")
    return fnp.linalg.solve(circulant(c), b)


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
    if fnp.ndim(a) < 2 or fnp.shape(a)[-1] != fnp.shape(a)[-2]:
        raise ValueError(f"solve_triangular: expected square matrix, got shape "
                         f"{tuple(fnp.shape(a))}")
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
    if len(b_shape) == 0 or fnp.shape(b)[-2] != n:
        raise ValueError(f"solve_triangular: shapes of a {tuple(fnp.shape(a))} and b "
                         f"{b_shape} are incompatible")
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
    """SciPy's principal square root: real for a real matrix that has a real
    one, else complex (a real matrix with negative eigenvalues), as SciPy's;
    its derivative solves a Sylvester equation (no two eigenvalues of the
    root may sum to zero).  Which of the two a traced matrix has is decided
    on its value, under a guard when compiled (the other kind retraces)."""
    fnp._square(A, "sqrtm")
    if not isinstance(A, fnp.Tracer):
        return _plain_sqrtm(A)
    try:
        return _prims._call("sqrtm", A)
    except _np.linalg.LinAlgError:  # a real matrix without a real root
        if fnp.iscomplexobj(A):
            raise
    root = _prims._call("sqrtm", A, complex_root=True)
    # a guard that the root stays complex (a real one retraces)
    record_guard(fnp.max(fnp.abs(fnp.imag(root)))
                 > 1e-12 * fnp.maximum(1.0, fnp.max(fnp.abs(root))))
    return root


def _plain_sqrtm(A: Any) -> Any:
    """SciPy's sqrtm of plain values (batched over leading axes)."""
    A = _np.asarray(A)
    if A.ndim == 2:
        return _scipy_linalg.sqrtm(A)
    roots = [_scipy_linalg.sqrtm(m) for m in _np.reshape(A, (-1,) + A.shape[-2:])]
    return _np.reshape(_np.stack(roots), A.shape[:-2] + A.shape[-2:]) if roots else A.copy()


def eigh(a: Any, b: Any = None, lower: bool = True, eigvals_only: bool = False,
         **kwargs: Any) -> Any:
    if _plain(a, b):
        return _scipy_linalg.eigh(a, b, lower=lower, eigvals_only=eigvals_only, **kwargs)
    kwargs = {k: v for k, v in kwargs.items()
              if k not in ("overwrite_a", "overwrite_b", "check_finite", "driver", "type")
              or (k == "type" and v != 1)}
    if kwargs:
        raise NotImplementedError(f"eigh: {sorted(kwargs)} are not differentiable here (the "
                                  "standard problem, or a x = w b x, all eigenvalues)")
    if b is None:
        w, v = fnp.linalg.eigh(a, UPLO="L" if lower else "U")
        return w if eigvals_only else (w, v)
    # a x = w b x is c y = w y with b = l l^H, c = l^-1 a l^-H, x = l^-H y (as
    # LAPACK's sygv reduces it): x^H b x = I
    half = fnp.tril(a) if lower else fnp.triu(a)
    a = half + fnp.conj(_mT(half)) - fnp.where(fnp.eye_like(a) > 0, half, 0.0)
    l = cholesky(b, lower=lower) if lower else fnp.conj(_mT(cholesky(b, lower=False)))
    c = solve_triangular(l, fnp.conj(_mT(solve_triangular(l, a, lower=True))), lower=True)
    w, y = fnp.linalg.eigh(c)
    return w if eigvals_only else (w, solve_triangular(l, y, trans=2, lower=True))


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
    return fnp.linalg.solve(_dense_from_band(l_and_u, ab), b)


def _dense_from_band(l_and_u: tuple[int, int], ab: Any) -> Any:
    """The n x n matrix whose diagonals are the rows of ab (LAPACK's band
    storage: a[i, j] = ab[upper + i - j, j]), zero outside the band."""
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
    return fnp.reshape(dense, (n, n))


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
           "sqrtm", "expm", "eigh", "eig", "eigvals", "eigvalsh", "svd", "svdvals", "qr", "solve",
           "inv", "det", "pinv", "pinvh", "norm", "lstsq", "solve_banded", "solveh_banded",
           "solve_toeplitz", "solve_circulant", "matmul_toeplitz", "lu", "lu_factor", "lu_solve",
           "block_diag", "circulant", "companion", "hankel", "khatri_rao", "toeplitz", "cosm",
           "coshm", "expm_frechet", "orthogonal_procrustes", "polar", "sinhm", "sinm",
           "solve_continuous_lyapunov", "solve_discrete_lyapunov", "solve_lyapunov", "tanhm",
           "tanm"]

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
