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

    ``method="ipopt"`` (``pip install "fastad[ipopt]"``: cyipopt and the
    IPOPT library) solves with IPOPT, given the compiled gradient, the
    sparse Jacobian of the constraints and the sparse Hessian of the
    Lagrangian (`minimize_ipopt`); ``constraints`` are NonlinearConstraint
    objects (their ``jac``/``hess`` are ignored: fastad differentiates
    ``fun``), ``bounds`` a ``scipy.optimize.Bounds`` or (low, high) pairs,
    ``options`` IPOPT's options.
    """
    from scipy.optimize import minimize as scipy_minimize

    if isinstance(method, str) and method.lower() == "ipopt":
        if not (isinstance(x0, (np.ndarray, float, int, list))):
            raise TypeError("method='ipopt' takes x0 as one array")
        if isinstance(fun, CompiledGrad):
            raise TypeError("method='ipopt' compiles fun itself: pass the Python function")
        return minimize_ipopt(fun, x0, args=args, backend=backend, **kwargs)

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


# -- IPOPT -------------------------------------------------------------------------
def minimize_ipopt(fun: Callable[..., Any], x0: Any, args: tuple = (), constraints: Any = (),
                   bounds: Any = None, options: dict[str, Any] | None = None,
                   backend: str = "auto", tol: float | None = None) -> Any:
    """Minimize ``fun(x, *args)`` subject to ``constraints`` (NonlinearConstraint
    objects, ``lb <= c(x) <= ub``) and ``bounds`` with IPOPT (cyipopt).

    IPOPT is given compiled derivatives: the gradient (``fastad.compile``),
    the constraints' Jacobian as its sparse values (``fastad.jit(c).jacobian(x,
    sparse=True)``) and the Hessian of the Lagrangian ``s f(x) + lam . c(x)``
    as the values of its lower triangle (one compiled sparse Hessian of x with
    ``s`` and ``lam`` arguments, its pattern found once).  IPOPT fixes the
    structures at the start: a function whose pattern changes between calls
    (a branch on traced values taking another path) is refused with a
    ValueError.  Returns a scipy ``OptimizeResult`` (``x``, ``fun``,
    ``success``, ``status``, ``message``, ``info``: IPOPT's dict, with the
    multipliers).
    """
    try:
        import cyipopt
    except ImportError as exc:
        raise ImportError("method='ipopt' needs cyipopt and the IPOPT library: "
                          'pip install "fastad[ipopt]" (or conda install -c conda-forge '
                          "cyipopt)") from exc
    from scipy.optimize import OptimizeResult

    problem = _IpoptProblem(fun, np.asarray(x0, dtype=np.float64), tuple(args),
                            constraints, backend)
    lb, ub = _bounds(bounds, problem.n)
    nlp = cyipopt.Problem(n=problem.n, m=problem.m, problem_obj=problem, lb=lb, ub=ub,
                          cl=problem.cl, cu=problem.cu)
    options = dict(options or {})
    if tol is not None:
        options.setdefault("tol", tol)
    options.setdefault("print_level", 0)
    for name, value in options.items():
        nlp.add_option(name, value)
    x, info = nlp.solve(problem.x0)
    message = info["status_msg"]
    message = message.decode() if isinstance(message, bytes) else message
    return OptimizeResult(x=x.reshape(problem.shape), fun=info["obj_val"],
                          success=info["status"] in (0, 1), status=info["status"],
                          message=message, info=info,
                          nfev=problem.nfev)


def _bounds(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if bounds is None:
        return np.full(n, -np.inf), np.full(n, np.inf)
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb, ub = bounds.lb, bounds.ub
    else:
        pairs = np.asarray([(-np.inf if lo is None else lo, np.inf if hi is None else hi)
                            for lo, hi in bounds], dtype=np.float64)
        if pairs.shape != (n, 2):
            raise ValueError(f"bounds: {n} (low, high) pairs needed, got {len(pairs)}")
        lb, ub = pairs[:, 0], pairs[:, 1]
    return (np.broadcast_to(np.asarray(lb, np.float64), (n,)).copy(),
            np.broadcast_to(np.asarray(ub, np.float64), (n,)).copy())


class _IpoptProblem:
    """cyipopt's problem object: values and fixed sparse structures, compiled."""

    def __init__(self, fun: Callable[..., Any], x0: np.ndarray, args: tuple, constraints: Any,
                 backend: str) -> None:
        from scipy.optimize import NonlinearConstraint

        from . import numpy as fnp
        from .compiled import jit

        if isinstance(constraints, NonlinearConstraint):
            constraints = [constraints]
        constraints = list(constraints or [])
        for c in constraints:
            if not isinstance(c, NonlinearConstraint):
                raise TypeError("method='ipopt' takes scipy.optimize.NonlinearConstraint "
                                f"constraints, not {type(c).__name__}")
        self.x0, self.n, self.args, self.nfev = x0.ravel(), x0.size, args, 0
        self.shape = x0.shape
        funs = [c.fun for c in constraints]

        def c_all(x: Any, *a: Any) -> Any:
            return fnp.concatenate([fnp.reshape(g(x, *a), (-1,)) for g in funs])

        def lagrangian(x: Any, s: Any, lam: Any, *a: Any) -> Any:
            value = s * fun(x, *a)
            return value + fnp.sum(lam * c_all(x, *a)) if funs else value

        self.objective_grad = compile(lambda x, *a: fun(x.reshape(self.shape), *a),
                                      backend=backend)
        self.c = jit(lambda x, *a: c_all(x.reshape(self.shape), *a), backend=backend) \
            if funs else None
        self.hess_l = compile(lambda x, s, lam, *a: lagrangian(x.reshape(self.shape), s, lam,
                                                               *a), backend=backend)
        self.m = int(np.size(self.c(self.x0, *args))) if funs else 0
        sizes = [int(np.size(g(x0, *args))) for g in funs]
        self.cl = np.concatenate([np.broadcast_to(np.asarray(c.lb, np.float64), (k,))
                                  for c, k in zip(constraints, sizes)]) if funs else np.zeros(0)
        self.cu = np.concatenate([np.broadcast_to(np.asarray(c.ub, np.float64), (k,))
                                  for c, k in zip(constraints, sizes)]) if funs else np.zeros(0)
        self._jac_structure = self._hess_structure = None
        self._hess_lower = self._last = None

    def _value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        # IPOPT asks for the objective and the gradient at one point in turn
        if self._last is None or not np.array_equal(self._last[0], x):
            self.nfev += 1
            value, grad = self.objective_grad.value_and_grad(x, *self.args)
            self._last = (np.array(x), float(value), np.asarray(grad, np.float64))
        return self._last[1], self._last[2]

    def objective(self, x: np.ndarray) -> float:
        return self._value_and_grad(x)[0]

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return self._value_and_grad(x)[1]

    def constraints(self, x: np.ndarray) -> np.ndarray:
        if self.c is None:
            return np.zeros(0)
        return np.asarray(self.c(x, *self.args), np.float64).ravel()

    def _jac(self, x: np.ndarray) -> Any:
        return self.c.jacobian(x, *self.args, sparse=True)

    def jacobianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        if self._jac_structure is None:
            if self.c is None:
                self._jac_structure = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            else:
                j = self._jac(self.x0)
                self._jac_structure = _structure(j)
                self._jac_pattern = (j.indptr.copy(), j.indices.copy())
        return self._jac_structure

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        if self.c is None:
            return np.zeros(0)
        self.jacobianstructure()
        j = self._jac(x)
        _same_pattern(j, self._jac_pattern, "constraint Jacobian")
        return j.data

    def _hess(self, x: np.ndarray, s: float, lam: np.ndarray) -> Any:
        return self.hess_l.hessian(x, np.float64(s), np.asarray(lam, np.float64), *self.args,
                                   sparse=True)

    def hessianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        if self._hess_structure is None:
            h = self._hess(self.x0, 1.0, np.ones(self.m))
            rows, cols = _structure(h)
            self._hess_lower = np.flatnonzero(rows >= cols)  # IPOPT takes one triangle
            self._hess_structure = (rows[self._hess_lower], cols[self._hess_lower])
            self._hess_pattern = (h.indptr.copy(), h.indices.copy())
        return self._hess_structure

    def hessian(self, x: np.ndarray, lagrange: np.ndarray, obj_factor: float) -> np.ndarray:
        self.hessianstructure()
        h = self._hess(x, obj_factor, lagrange)
        _same_pattern(h, self._hess_pattern, "Hessian of the Lagrangian")
        return h.data[self._hess_lower]


def _structure(m: Any) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows, m.indices.astype(np.int64)


def _same_pattern(m: Any, pattern: tuple[np.ndarray, np.ndarray], what: str) -> None:
    if not (np.array_equal(m.indptr, pattern[0]) and np.array_equal(m.indices, pattern[1])):
        raise ValueError(f"the {what}'s sparsity pattern changed between calls (a branch on "
                         "traced values took another path); IPOPT needs one fixed structure")
