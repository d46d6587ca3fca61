"""``jax.scipy.optimize``: ``minimize(fun, x0, args, method="BFGS")`` with
JAX's signature and ``OptimizeResults``.  On plain values SciPy's BFGS (or
L-BFGS-B) runs with fastad's compiled gradient; inside a traced function
(``jit(lambda x0: minimize(...).x)``) the same minimization is a host
call, so a compiled function minimizes anew every call without tracing
again.  Traced values ``fun`` closes over become arguments
(`closure_convert`), and the minimizer's derivative in the arguments is
the implicit function theorem's, -H^-1 d(grad f)/d(args), exact to first
order (JAX's minimize has none in reverse mode); in x0 it is zero."""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import scipy.optimize as _sopt

from .. import numpy as fnp
from ..core.tracer import Tracer
from ..runtime import closure_convert

__all__ = ["OptimizeResults", "minimize"]

_METHODS = ("bfgs", "l-bfgs-experimental-do-not-rely-on-this")


class OptimizeResults(NamedTuple):
    x: Any
    success: Any
    status: Any
    fun: Any
    jac: Any
    hess_inv: Any
    nfev: Any
    njev: Any
    nit: Any


def minimize(fun: Callable[..., Any], x0: Any, args: tuple = (), *, method: str,
             tol: float | None = None, options: Mapping[str, Any] | None = None
             ) -> OptimizeResults:
    """A minimum of ``fun(x, *args)`` for a 1-D x0."""
    if method.lower() not in _METHODS:
        raise ValueError(f"method must be 'BFGS' (or JAX's L-BFGS name), not {method!r}")
    if fnp.ndim(x0) != 1:
        raise ValueError(f"x0 must be a 1-D array, not one of shape {fnp.shape(x0)}")
    options = dict(options or {})
    maxiter = int(options.pop("maxiter", 200 * fnp.shape(x0)[0]))
    gtol = float(options.pop("gtol", 1e-5 if tol is None else tol))
    options.pop("norm", None)
    options.pop("line_search_maxiter", None)
    if options:
        raise TypeError(f"minimize: unknown options {sorted(options)}")
    lbfgs = method.lower() != "bfgs"
    fun, consts = closure_convert(fun, *(getattr(v, "value", v) for v in (x0, *args)))
    args = tuple(args) + tuple(consts)  # the traced values fun closes over: arguments
    if not any(isinstance(v, Tracer) for v in (x0, *args)):
        return _scipy_minimize(fun, x0, args, lbfgs, maxiter, gtol)
    res = _minimize_per_call(fun, x0, args, lbfgs, maxiter, gtol)
    if not any(isinstance(v, Tracer) for v in args):
        return res
    x = _implicit(fun, res.x, args)
    return res._replace(x=x, fun=fun(x, *args))


def _implicit(fun: Callable[..., Any], found: Any, args: tuple) -> Any:
    """The minimizer ``found`` with the implicit derivative in ``args``:
    x - (d - stop_gradient(d)), d = H^-1 grad f(x), H the Hessian at x taken
    as a constant, so the value is ``found``'s and the derivative -H^-1
    d(grad f)/d(args) (as `lax.custom_root`'s Newton correction)."""
    from ..api import grad, hessian
    x = fnp.stop_gradient(found)
    gradient = grad(fun)(x, *args)
    d = fnp.linalg.solve(fnp.stop_gradient(hessian(fun)(x, *args)), gradient)
    return x - (d - fnp.stop_gradient(d))


def _scipy_minimize(fun: Callable[..., Any], x0: Any, args: tuple, lbfgs: bool, maxiter: int,
                    gtol: float) -> OptimizeResults:
    from ..compiled import compile as compiled
    value_and_grad = compiled(lambda x: fun(x, *args)).value_and_grad
    res = _sopt.minimize(lambda x: value_and_grad(x), np.asarray(x0, dtype=float), jac=True,
                         method="L-BFGS-B" if lbfgs else "BFGS",
                         options={"maxiter": maxiter, "gtol": gtol})
    hess_inv = res.hess_inv.todense() if lbfgs else res.hess_inv
    return OptimizeResults(np.asarray(res.x), bool(res.success), int(res.status),
                           float(res.fun), np.asarray(res.jac), np.asarray(hess_inv),
                           int(res.nfev), int(res.get("njev", res.nfev)), int(res.nit))


def _minimize_per_call(fun: Callable[..., Any], x0: Any, args: tuple, lbfgs: bool,
                       maxiter: int, gtol: float) -> OptimizeResults:
    """Under a trace: the SciPy minimization as a host call on each call's x0
    and args (`fastad.pure_callback`), so a compiled function minimizes anew
    every call; the result has no derivative (JAX's minimize has none in
    reverse mode either).  ``fun`` must not close over traced values: pass
    them through ``args``."""
    from ..runtime import pure_callback
    from ..conventions import ShapeDtypeStruct
    n = fnp.shape(x0)[0]
    f64 = np.float64
    specs = OptimizeResults(ShapeDtypeStruct((n,), f64), ShapeDtypeStruct((), f64),
                            ShapeDtypeStruct((), f64), ShapeDtypeStruct((), f64),
                            ShapeDtypeStruct((n,), f64), ShapeDtypeStruct((n, n), f64),
                            ShapeDtypeStruct((), f64), ShapeDtypeStruct((), f64),
                            ShapeDtypeStruct((), f64))

    def host(x0: Any, *values: Any) -> Any:
        res = _scipy_minimize(fun, x0, values, lbfgs, maxiter, gtol)
        return OptimizeResults(*(np.asarray(v, dtype=f64) for v in res))

    out = pure_callback(host, specs, x0, *args)
    return out._replace(success=out.success > 0.5, status=fnp.astype(out.status, np.int64),
                        nfev=fnp.astype(out.nfev, np.int64), njev=fnp.astype(out.njev, np.int64),
                        nit=fnp.astype(out.nit, np.int64))

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
