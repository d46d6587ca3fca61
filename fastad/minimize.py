"""``fastad.minimize``: scipy.optimize.minimize with compiled derivatives."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .core import pytree
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

    ``x0`` may be a pytree (a dict or tuple of arrays, say): SciPy then works
    on the concatenated leaves, ``fun`` still receives the pytree, and the
    result's ``x`` has ``x0``'s structure (``bounds`` refer to the flat
    vector).
    """
    from scipy.optimize import minimize as scipy_minimize

    restore = None
    if isinstance(fun, CompiledGrad) or isinstance(x0, (np.ndarray, float, int, list)):
        x_flat = np.asarray(x0, dtype=np.float64)
    else:
        fun, x_flat, restore = _flattened(fun, x0)
    compiled = fun if isinstance(fun, CompiledGrad) else compile(fun, backend=backend)
    if method is not None and method.lower() in _HESSP_METHODS and "hess" not in kwargs:
        kwargs.setdefault("hessp", _hessp(compiled))
    result = scipy_minimize(compiled.value_and_grad, x_flat, args=args, method=method,
                            jac=True, **kwargs)
    if restore is not None:
        result.x = restore(result.x)
    return result


def _flattened(fun: Callable[..., Any], x0: Any) -> tuple[Callable[..., Any], np.ndarray,
                                                           Callable[[np.ndarray], Any]]:
    """``fun`` of a pytree as a function of one flat vector."""
    leaves, tree = pytree.flatten(x0)
    arrays = [np.asarray(v, dtype=np.float64) for v in leaves]
    bounds = np.cumsum([0] + [a.size for a in arrays])

    def restore(v: Any) -> Any:
        return pytree.unflatten(tree, [v[bounds[k]:bounds[k + 1]].reshape(a.shape)
                                       for k, a in enumerate(arrays)])

    def flat_fun(v: Any, *args: Any) -> Any:
        return fun(restore(v), *args)
    flat_fun.__qualname__ = getattr(fun, "__qualname__", "fun")
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    return flat_fun, flat, restore


def _hessp(compiled: CompiledGrad) -> Callable[..., Any]:
    def hessp(x: np.ndarray, p: np.ndarray, *args: Any) -> np.ndarray:
        return compiled.hvp(x, *args, p)
    return hessp
