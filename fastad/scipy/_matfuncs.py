"""scipy.linalg's matrix functions and matrix equations written with the
differentiable ones (`expm`, `svd`, `solve`, `solve_sylvester`), so their
derivatives are those of the compositions.  On plain values they are SciPy's."""
from __future__ import annotations

from typing import Any

import numpy as _np
import scipy.linalg as _scipy_linalg

from .. import numpy as fnp
from ._special_matrices import _plain


def _mH(a: Any) -> Any:
    return fnp.swapaxes(fnp.conj(a), -1, -2)


def _real_if_real(out: Any, a: Any) -> Any:
    return fnp.real(out) if not fnp.iscomplexobj(a) else out


def _expm(a: Any) -> Any:
    from .linalg import expm
    return expm(a)


def coshm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.coshm(A)
    return 0.5 * (_expm(A) + _expm(-A))


def sinhm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.sinhm(A)
    return 0.5 * (_expm(A) - _expm(-A))


def tanhm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.tanhm(A)
    return fnp.linalg.solve(coshm(A), sinhm(A))


def cosm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.cosm(A)
    return _real_if_real(0.5 * (_expm(1j * A) + _expm(-1j * A)), A)


def sinm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.sinm(A)
    return _real_if_real(-0.5j * (_expm(1j * A) - _expm(-1j * A)), A)


def tanm(A: Any) -> Any:
    if _plain(A):
        return _scipy_linalg.tanm(A)
    return fnp.linalg.solve(cosm(A), sinm(A))


def expm_frechet(A: Any, E: Any, method: Any = None, compute_expm: bool = True,
                 check_finite: bool = True) -> Any:
    """expm(A) and its derivative in the direction E (one forward-mode pass)."""
    if _plain(A, E):
        return _scipy_linalg.expm_frechet(A, E, method, compute_expm, check_finite)
    from ..api import jvp
    double = _np.result_type(fnp.result_dtype(A), fnp.result_dtype(E), _np.float64)
    A, E = fnp.astype(A, double), fnp.astype(E, double)  # SciPy computes in double
    value, frechet = jvp(_expm, (A,), (E,))
    return (value, frechet) if compute_expm else frechet


def polar(a: Any, side: str = "right") -> tuple[Any, Any]:
    """a = u p (side 'right') or p u ('left'): u unitary, p Hermitian
    positive semidefinite, from the SVD a = w s vh."""
    if _plain(a):
        return _scipy_linalg.polar(a, side)
    if side not in ("right", "left"):
        raise ValueError("`side` must be either 'right' or 'left'")
    w, s, vh = fnp.linalg.svd(a, full_matrices=False)
    u = w @ vh
    if side == "right":
        return u, (_mH(vh) * s) @ vh
    return u, (w * s) @ _mH(w)


def orthogonal_procrustes(A: Any, B: Any, check_finite: bool = True) -> tuple[Any, Any]:
    """(R, scale): the orthogonal R minimizing ||A R - B||, and the sum of
    the singular values of A^T B."""
    if _plain(A, B):
        return _scipy_linalg.orthogonal_procrustes(A, B, check_finite)
    u, w, vt = fnp.linalg.svd(fnp.swapaxes(B, -1, -2) @ fnp.conj(A), full_matrices=False)
    return _mH(u @ vt), fnp.sum(w)


def solve_continuous_lyapunov(a: Any, q: Any) -> Any:
    """x with a x + x a^H = q."""
    if _plain(a, q):
        return _scipy_linalg.solve_continuous_lyapunov(a, q)
    from .linalg import solve_sylvester
    return solve_sylvester(a, _mH(a), q)


def solve_discrete_lyapunov(a: Any, q: Any, method: Any = None) -> Any:
    """x with a x a^H - x + q = 0, solved as the n^2 linear system it is
    (row-major vec(a x a^H) = kron(a, conj(a)) vec(x)): for small n."""
    if _plain(a, q):
        return _scipy_linalg.solve_discrete_lyapunov(a, q, method)
    n = fnp.shape(a)[-1]
    system = _np.eye(n * n) - fnp.kron(a, fnp.conj(a))
    return fnp.reshape(fnp.linalg.solve(system, fnp.ravel(q)), (n, n))


solve_lyapunov = solve_continuous_lyapunov

__all__ = ["coshm", "sinhm", "tanhm", "cosm", "sinm", "tanm", "expm_frechet", "polar",
           "orthogonal_procrustes", "solve_continuous_lyapunov", "solve_lyapunov",
           "solve_discrete_lyapunov"]
