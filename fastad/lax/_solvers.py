"""``jax.lax.custom_root`` and ``jax.lax.custom_linear_solve``: solutions
whose derivatives come from the implicit function theorem, not from the
solver's iterations.

``custom_root(f, x0, solve, tangent_solve)``: the solver runs on the
primal values (its steps are not differentiated: ``stop_gradient``); the
result x* is then corrected by two Newton steps ``y <- y - T(f(y))`` with
``T = tangent_solve(jvp of f at y, .)``, each step's value removed again
(``d - stop_gradient(d)``), so the value is the solver's own and the
derivatives are the implicit ones: the first step makes the first
derivative exact (``dx* = -J^-1 df``), the second the second derivative
(Newton's iteration doubles the order of derivatives it gets right).  ``f``
may close over traced parameters, as in JAX.

``custom_linear_solve(matvec, b, solve, transpose_solve, symmetric)``:
where ``matvec`` closes over no traced value (a fixed operator), the
solution is a function of b whose reverse-mode derivative is
``transpose_solve(vecmat, g)`` (``solve`` itself when symmetric) and whose
forward mode is ``solve(matvec, t)``: a `custom_vjp`, so solver iterations
are never differentiated.  Where ``matvec`` depends on traced parameters,
the solution is traced through ``solve`` itself (its derivative is the
solver's, exact for direct solvers; fastad cannot take a closure's traced
values out as JAX's closure conversion does)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as _np

from .. import numpy as fnp
from ..api import jvp, vjp
from ..core import pytree
from ..core.tracer import Tracer
from ..custom_rules import custom_vjp

__all__ = ["custom_root", "custom_linear_solve"]


def _map(fn: Callable[..., Any], *trees: Any) -> Any:
    leaves = [pytree.flatten(t)[0] for t in trees]
    return pytree.unflatten(pytree.flatten(trees[0])[1], [fn(*xs) for xs in zip(*leaves)])


def _stopped(tree: Any) -> Any:
    return _map(lambda x: fnp.stop_gradient(x) if isinstance(x, Tracer) else x, tree)


def _split_aux(out: Any, has_aux: bool, name: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{name} with has_aux=True: solve must return (solution, aux)")
    return out[0], _stopped(out[1])


def custom_root(f: Callable[[Any], Any], initial_guess: Any,
                solve: Callable[[Callable[[Any], Any], Any], Any],
                tangent_solve: Callable[[Callable[[Any], Any], Any], Any],
                has_aux: bool = False) -> Any:
    """x with ``f(x) = 0``, found by ``solve(f, initial_guess)``; its
    derivative in whatever ``f`` closes over is implicit, through
    ``tangent_solve(g, y)`` (solve the linear ``g(x) = y``).  With
    ``has_aux``, solve returns (solution, aux) and so does this."""
    out = solve(f, _stopped(initial_guess))
    solution, aux = _split_aux(out, has_aux, "custom_root")
    x = _stopped(solution)
    for _ in range(2):
        x = _newton_step(f, x, tangent_solve)
    return (x, aux) if has_aux else x


def _newton_step(f: Callable[[Any], Any], x: Any,
                 tangent_solve: Callable[[Callable[[Any], Any], Any], Any]) -> Any:
    """x - (d - stop_gradient(d)), d = J(x)^-1 f(x): x's value, one more order
    of correct derivatives."""
    def linearized(v: Any) -> Any:
        return jvp(f, (x,), (v,))[1]

    d = tangent_solve(linearized, f(x))
    if pytree.flatten(d)[1] != pytree.flatten(x)[1]:
        raise TypeError("custom_root: tangent_solve must return a value of the solution's "
                        "structure")
    return _map(lambda xi, di: xi - (di - fnp.stop_gradient(di)) if isinstance(di, Tracer)
                else xi, x, d)


# -- linear solves --------------------------------------------------------------------------
def _plain(tree: Any) -> bool:
    return not any(isinstance(v, Tracer) for v in pytree.flatten(tree)[0])


def _zeros_of(b: Any) -> Any:
    return _map(lambda v: _np.zeros(_np.shape(v), _np.result_type(v)), b)


def _transposed(matvec: Callable[[Any], Any], like: Any) -> Callable[[Any], Any]:
    """x -> A^T x for the linear A of ``matvec`` (its pullback)."""
    pullback = vjp(matvec, _zeros_of(like))[1]
    return lambda y: pullback(y)[0]


def _solve_fixed(fns: list, b: Any) -> Any:
    """``solve(matvec, b)`` with fns = [matvec, solve, transpose_solve]: a list,
    unhashable, so that the custom_vjp keeps no cache entry per call's closures."""
    matvec, solve, _ = fns
    return solve(matvec, b)


_solve_fixed = custom_vjp(_solve_fixed, nondiff_argnums=(0,))


def _solve_fixed_fwd(fns: list, b: Any) -> tuple:
    return _solve_fixed(fns, b), _zeros_of(b)


def _solve_fixed_bwd(fns: list, like: Any, g: Any) -> tuple:
    matvec, _, transpose_solve = fns
    return (transpose_solve(_transposed(matvec, like), g),)


_solve_fixed.defvjp(_solve_fixed_fwd, _solve_fixed_bwd)


def custom_linear_solve(matvec: Callable[[Any], Any], b: Any,
                        solve: Callable[[Callable[[Any], Any], Any], Any],
                        transpose_solve: Callable[[Callable[[Any], Any], Any], Any] | None = None,
                        symmetric: bool = False, has_aux: bool = False) -> Any:
    """x with ``matvec(x) = b``, found by ``solve(matvec, b)``; reverse mode
    solves the transposed system with ``transpose_solve(vecmat, g)`` (with
    ``solve`` itself when ``symmetric``)."""
    if symmetric:
        transpose_solve = solve
    if has_aux:  # the aux of the primal solve; the derivative rules drop theirs
        aux = _split_aux(solve(matvec, _stopped(b)), True, "custom_linear_solve")[1]
        solve_only = solve
        solve = lambda m, v: solve_only(m, v)[0]  # noqa: E731
        if transpose_solve is not None and transpose_solve is not solve_only:
            transpose_only = transpose_solve
            transpose_solve = lambda m, v: transpose_only(m, v)[0]  # noqa: E731
        elif transpose_solve is solve_only:
            transpose_solve = solve
    fixed = transpose_solve is not None and _plain(matvec(_zeros_of(b)))
    x = _solve_fixed([matvec, solve, transpose_solve], b) if fixed else solve(matvec, b)
    return (x, aux) if has_aux else x
