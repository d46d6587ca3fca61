"""Differentiating through a fixed-point iteration (autograd's ``misc.fixed_points``).

``fixed_point(f, a, x0, distance, tol)`` iterates ``x = f(a)(x)`` from ``x0``
until ``distance(x, x_prev) <= tol`` and returns the fixed point x*.  Its
derivative with respect to ``a`` is the implicit one: at x* = f(a)(x*), the
cotangent ``g`` of x* gives ``w = g + (df/dx)^T w``, found by a fixed-point
iteration of its own (so higher derivatives follow the same rule), and the
cotangent of ``a`` is ``(df/da)^T w``.  No step of the forward iteration is
recorded: a compiled function runs the iteration on each call, in NumPy.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import numpy as fnp
from ..api import primitive, vjp
from ..core.registry import defbatch
from ..primitives import defvjp
from ..transforms.batching import per_example
from . import flatten


def _iterate(step: Callable[[Any], Any], x0: Any, distance: Callable[[Any, Any], Any],
             tol: float) -> Any:
    x, x_prev = step(x0), x0
    while distance(x, x_prev) > tol:
        x, x_prev = step(x), x
    return x


@primitive
def _solve(a: Any, x0: Any, *, f: Callable[..., Any], distance: Callable[..., Any],
           tol: float) -> Any:
    return _iterate(f(a), x0, distance, tol)


def fixed_point(f: Callable[[Any], Callable[[Any], Any]], a: Any, x0: Any,
                distance: Callable[[Any, Any], Any], tol: float) -> Any:
    """The fixed point of ``f(a)`` reached from ``x0``, differentiable in ``a``
    (an array or a number; pass several parameters as one flat vector,
    `fastad.misc.flatten`)."""
    return _solve(a, x0, f=f, distance=distance, tol=tol)


def _solve_vjp(g: Any, ans: Any, a: Any, x0: Any, *, f: Callable[..., Any],
               distance: Callable[..., Any], tol: float) -> Any:
    packed, unpack = flatten((a, ans, g))

    def adjoint_step(params: Any) -> Callable[[Any], Any]:
        a_, x_star, g_ = unpack(params)
        vjp_x = vjp(f(a_), x_star)[1]
        return lambda w: g_ + vjp_x(w)[0]

    w = fixed_point(adjoint_step, packed, fnp.zeros_like(ans), distance, tol)
    return vjp(lambda b: f(b)(ans), a)[1](w)[0]


defvjp(_solve, _solve_vjp, None)
defbatch(_solve, per_example)  # each example iterates to its own tolerance

__all__ = ["fixed_point"]
