"""``fastad.minimize``: scipy.optimize.minimize with compiled derivatives."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .compiled import CompiledGrad, compile

# Methods that use a Hessian-vector product when one is given.
_HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}


def minimize(fun: Callable[..., Any], x0: Any, args: tuple = (), method: str | None = None,
             backend: str = "auto", **kwargs: Any) -> Any:
    """Minimize scalar ``fun(x, *args)`` with ``scipy.optimize.minimize``.

    ``fun`` is compiled once (``fastad.compile``); SciPy receives the compiled
    value-and-gradient (``jac=True``) and, for Newton-CG, trust-ncg,
    trust-krylov and trust-constr, the compiled Hessian-vector product as
    ``hessp``.  ``args``, ``bounds``, ``constraints``, ``tol``, ``callback``
    and ``options`` pass through unchanged; so does everything else SciPy
    accepts.  Returns SciPy's ``OptimizeResult``.
    """
    from scipy.optimize import minimize as scipy_minimize

    compiled = fun if isinstance(fun, CompiledGrad) else compile(fun, backend=backend)
    x0 = np.asarray(x0, dtype=np.float64)
    if method is not None and method.lower() in _HESSP_METHODS and "hess" not in kwargs:
        kwargs.setdefault("hessp", _hessp(compiled))
    return scipy_minimize(compiled.value_and_grad, x0, args=args, method=method, jac=True,
                          **kwargs)


def _hessp(compiled: CompiledGrad) -> Callable[..., Any]:
    def hessp(x: np.ndarray, p: np.ndarray, *args: Any) -> np.ndarray:
        return compiled.hvp(x, *args, p)
    return hessp
