"""``jax.scipy.sparse.linalg``: conjugate gradients, BiCGSTAB and GMRES for
a matrix or a linear function ``A`` (pytrees of arrays as vectors), with
JAX's signatures and its ``(x, info)`` results (info is None).

The iterations are `fastad.lax.while_loop`s, so a compiled function runs
them as loops.  The solution's derivative is implicit: in b, another solve
with the transposed operator (`fastad.lax.custom_linear_solve`); in a traced
matrix A, -xbar x^T from that solve.  (A linear function closing over
traced values is differentiated through its iterations.)
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ... import numpy as fnp
from ...core.tracer import Tracer
from ...custom_rules import custom_vjp
from ...lax import custom_linear_solve, while_loop
from ...misc.flatten import flatten

__all__ = ["bicgstab", "cg", "gmres"]


def _operator(A: Any) -> Callable[[Any], Any]:
    if callable(A):
        return A
    if fnp.ndim(A) != 2:
        raise ValueError(f"A must be a function or a matrix, not an array of shape {fnp.shape(A)}")
    return lambda x: fnp.tensordot(A, x, axes=fnp.ndim(x))


def _flat(A: Any, b: Any, M: Any) -> tuple:
    """The problem on flat vectors: (matvec, b, preconditioner, unflatten)."""
    bv, unflatten = flatten(b)
    op, pre = _operator(A), (lambda v: v) if M is None else _operator(M)
    matvec = lambda v: flatten(op(unflatten(v)))[0]  # noqa: E731
    precond = lambda v: flatten(pre(unflatten(v)))[0]  # noqa: E731
    return matvec, bv, precond, unflatten


def _tolerance(b: Any, tol: float, atol: float) -> Any:
    return fnp.maximum(tol ** 2 * fnp.vdot(b, b), atol ** 2)


def _cg(matvec: Callable, b: Any, x0: Any, precond: Callable, tol: float, atol: float,
        maxiter: int) -> Any:
    bound = _tolerance(b, tol, atol)
    r0 = b - matvec(x0)
    z0 = precond(r0)

    def cond(state: Any) -> Any:
        _, r, gamma, _, k = state
        return (fnp.vdot(r, r) > bound) & (k < maxiter)

    def body(state: Any) -> Any:
        x, r, gamma, p, k = state
        ap = matvec(p)
        alpha = gamma / fnp.vdot(p, ap)
        x, r = x + alpha * p, r - alpha * ap
        z = precond(r)
        gamma_next = fnp.vdot(r, z)
        return x, r, gamma_next, z + (gamma_next / gamma) * p, k + 1
    return while_loop(cond, body, (x0, r0, fnp.vdot(r0, z0), z0, 0))[0]


def _bicgstab(matvec: Callable, b: Any, x0: Any, precond: Callable, tol: float, atol: float,
              maxiter: int) -> Any:
    bound = _tolerance(b, tol, atol)
    r0 = b - matvec(x0)

    def cond(state: Any) -> Any:
        r, k = state[1], state[-1]
        return (fnp.vdot(r, r) > bound) & (k < maxiter) & (k >= 0)

    def body(state: Any) -> Any:
        x, r, rhat, alpha, omega, rho, p, q, k = state
        rho_next = fnp.vdot(rhat, r)
        beta = rho_next / rho * alpha / omega
        p = r + beta * (p - omega * q)
        phat = precond(p)
        q = matvec(phat)
        alpha = rho_next / fnp.vdot(rhat, q)
        s = r - alpha * q
        done = fnp.vdot(s, s) < bound
        shat = precond(s)
        t = matvec(shat)
        tt = fnp.vdot(t, t)
        omega = fnp.where(tt > 0, fnp.vdot(t, s) / fnp.where(tt > 0, tt, 1.0), 0.0)
        x = fnp.where(done, x + alpha * phat, x + alpha * phat + omega * shat)
        r = fnp.where(done, s, s - omega * t)
        # a breakdown (rho, alpha or omega 0) ends the iteration, as JAX's
        k = fnp.where((rho_next == 0) | (alpha == 0) | ((omega == 0) & ~done), -1, k + 1)
        return x, r, rhat, alpha, omega, rho_next, p, q, k
    one = np.ones((), dtype=fnp.result_type(b))  # (plain: fnp.ones would be a traced constant)
    return while_loop(cond, body, (x0, r0, r0, one, one, one, r0, r0, 0))[0]


def _gmres(matvec: Callable, b: Any, x0: Any, precond: Callable, tol: float, atol: float,
           maxiter: int, restart: int) -> Any:
    """Restarted GMRES: per cycle, ``restart`` Arnoldi steps (modified Gram-Schmidt)
    on the preconditioned operator and the small least-squares problem."""
    bound = fnp.sqrt(_tolerance(precond(b), tol, atol))
    n = fnp.shape(b)[0]
    m = max(1, min(restart, n))

    zeros = np.zeros(m, dtype=fnp.result_type(b))

    def residual(x: Any) -> Any:
        return precond(b - matvec(x))

    def cond(state: Any) -> Any:
        x, k = state
        r = residual(x)
        return (fnp.sqrt(fnp.vdot(r, r)) > bound) & (k < maxiter)

    def body(state: Any) -> Any:
        x, k = state
        r = residual(x)
        beta = fnp.sqrt(fnp.vdot(r, r))
        basis, columns = [r / beta], []
        for j in range(m):
            w = precond(matvec(basis[j]))
            entries = []
            for i in range(j + 1):
                entries.append(fnp.vdot(basis[i], w))
                w = w - entries[-1] * basis[i]
            norm = fnp.sqrt(fnp.vdot(w, w))
            columns.append(fnp.concatenate([fnp.stack(entries + [norm]), zeros[:m - 1 - j]]))
            basis.append(w / fnp.where(norm > 0, norm, 1.0))
        h = fnp.stack(columns, axis=1)  # the (m + 1) x m Hessenberg matrix
        rhs = fnp.concatenate([fnp.reshape(beta, (1,)), zeros])
        y = fnp.linalg.lstsq(h, rhs, rcond=None)[0]
        return x + fnp.stack(basis[:m], axis=1) @ y, k + 1
    return while_loop(cond, body, (x0, 0))[0]


def _solve(method: Callable, A: Any, b: Any, x0: Any, M: Any, symmetric: bool,
           **options: Any) -> tuple[Any, None]:
    matvec, bv, precond, unflatten = _flat(A, b, M)
    # the iterations start from plain zeros (a start the solve's rules would
    # hold from the primal trace must not be traced); a given x0 solves for
    # the correction, x0 + A^-1 (b - A x0): the same x, no derivative in x0
    start = flatten(x0)[0] if x0 is not None else None
    if start is not None:
        bv = bv - matvec(start)
    zeros = np.zeros(fnp.shape(bv), fnp.result_type(bv))

    def solve(mv: Callable, rhs: Any) -> Any:
        return method(mv, rhs, zeros, precond, **options)
    if not callable(A) and isinstance(A, Tracer):
        # a traced matrix: its derivative is the implicit one, -xbar x^T
        # (custom_linear_solve would differentiate the iterations)
        x = _matrix_solve(solve, symmetric)(A, bv)
    else:
        x = custom_linear_solve(matvec, bv, solve=solve, transpose_solve=solve,
                                symmetric=symmetric)
    return unflatten(x if start is None else start + x), None


def _matrix_solve(solve: Callable, symmetric: bool) -> Callable:
    """x = A^-1 b for a matrix A by ``solve(matvec, b)``, with the implicit derivatives."""
    @custom_vjp
    def solved(A: Any, b: Any) -> Any:
        return solve(lambda v: A @ v, b)

    def fwd(A: Any, b: Any) -> Any:
        x = solve(lambda v: A @ v, b)
        return x, (A, x)

    def bwd(res: Any, g: Any) -> Any:
        A, x = res
        xbar = solve(lambda v: (A if symmetric else fnp.swapaxes(A, 0, 1)) @ v, g)
        return -fnp.outer(xbar, x), xbar

    solved.defvjp(fwd, bwd)
    return solved


def cg(A: Any, b: Any, x0: Any = None, *, tol: float = 1e-5, atol: float = 0.0,
       maxiter: Any = None, M: Any = None) -> tuple[Any, None]:
    """Conjugate gradients for a symmetric positive definite A."""
    size = flatten(b)[0].shape[0]
    return _solve(_cg, A, b, x0, M, True, tol=tol, atol=atol,
                  maxiter=10 * size if maxiter is None else maxiter)


def bicgstab(A: Any, b: Any, x0: Any = None, *, tol: float = 1e-5, atol: float = 0.0,
             maxiter: Any = None, M: Any = None) -> tuple[Any, None]:
    """BiCGSTAB for a general square A."""
    size = flatten(b)[0].shape[0]
    return _solve(_bicgstab, A, b, x0, M, False, tol=tol, atol=atol,
                  maxiter=10 * size if maxiter is None else maxiter)


def gmres(A: Any, b: Any, x0: Any = None, *, tol: float = 1e-5, atol: float = 0.0,
          restart: int = 20, maxiter: Any = None, M: Any = None,
          solve_method: str = "batched") -> tuple[Any, None]:
    """Restarted GMRES for a general square A (``maxiter`` restart cycles)."""
    if solve_method not in ("batched", "incremental"):
        raise ValueError(f"solve_method must be 'batched' or 'incremental', not {solve_method!r}")
    size = flatten(b)[0].shape[0]
    return _solve(_gmres, A, b, x0, M, False, tol=tol, atol=atol, restart=restart,
                  maxiter=10 * size if maxiter is None else maxiter)

from ...numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
