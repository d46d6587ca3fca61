"""``fastad.minimize``: scipy.optimize.minimize with compiled derivatives."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .core import pytree
from .compiled import CompiledGrad, compile

# Methods that use a Hessian-vector product when one is given.
_HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
# Methods that take the Hessian as a scipy.sparse matrix (hess="sparse").
_SPARSE_HESS_METHODS = {"newton-cg", "trust-constr"}


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

    ``hess="sparse"`` (trust-constr, Newton-CG): SciPy receives the compiled
    sparse Hessian (``g.hessian(x, sparse=True)``, a CSR matrix from the
    pattern detected and colored once, `fastad.sparse`) instead of the
    Hessian-vector product: for large problems whose Hessian has a few
    nonzeros per row, one batched pass per color rather than one
    Hessian-vector product per inner iteration.

    Constraints for trust-constr: a ``scipy.optimize.NonlinearConstraint``
    given ``jac="sparse"`` has its function compiled (``fastad.jit``) and its
    Jacobian given to SciPy as the compiled sparse Jacobian; with
    ``hess="sparse"`` too, the Hessian of ``v . c(x)`` as well (compiled, its
    pattern found once: ``v`` is an argument, never read into it).
    """
    from scipy.optimize import minimize as scipy_minimize

    restore = None
    if isinstance(fun, CompiledGrad) or isinstance(x0, (np.ndarray, float, int, list)):
        x_flat = np.asarray(x0, dtype=np.float64)
    else:
        fun, x_flat, restore = _flattened(fun, x0)
    compiled = fun if isinstance(fun, CompiledGrad) else compile(fun, backend=backend)
    if isinstance(kwargs.get("hess"), str) and kwargs["hess"] == "sparse":
        if method is None or method.lower() not in _SPARSE_HESS_METHODS:
            raise ValueError(f"hess='sparse' needs a method that takes a sparse Hessian: "
                             f"{sorted(_SPARSE_HESS_METHODS)}, not {method!r}")
        kwargs["hess"] = _sparse_hess(compiled)
    if "constraints" in kwargs:
        kwargs["constraints"] = _sparse_constraints(kwargs["constraints"], backend)
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
        # trust-constr probes the operator with an int8 vector for its dtype
        return compiled.hvp(x, *args, np.asarray(p, dtype=np.result_type(x, np.float64)))
    return hessp


def _sparse_hess(compiled: CompiledGrad) -> Callable[..., Any]:
    def hess(x: np.ndarray, *args: Any) -> Any:
        return compiled.hessian(x, *args, sparse=True)
    return hess


def _sparse_constraints(constraints: Any, backend: str) -> Any:
    """``constraints`` with each NonlinearConstraint of ``jac="sparse"`` given
    compiled sparse derivatives (see `minimize`)."""
    from scipy.optimize import NonlinearConstraint

    def convert(c: Any) -> Any:
        if not isinstance(c, NonlinearConstraint) or not (isinstance(c.jac, str)
                                                          and c.jac == "sparse"):
            return c
        from . import numpy as fnp
        from .compiled import jit
        f = c.fun
        jitted = jit(f, backend=backend)
        hess = c.hess
        if isinstance(hess, str) and hess == "sparse":
            weighted = compile(lambda x, v: fnp.sum(v * f(x)), backend=backend)

            def hess(x: np.ndarray, v: np.ndarray) -> Any:
                return weighted.hessian(x, np.asarray(v, dtype=np.float64), sparse=True)
        return NonlinearConstraint(jitted, c.lb, c.ub,
                                   jac=lambda x: jitted.jacobian(x, sparse=True), hess=hess,
                                   keep_feasible=c.keep_feasible,
                                   finite_diff_rel_step=c.finite_diff_rel_step,
                                   finite_diff_jac_sparsity=c.finite_diff_jac_sparsity)
    if isinstance(constraints, (list, tuple)):
        return type(constraints)(convert(c) for c in constraints)
    return convert(constraints)
