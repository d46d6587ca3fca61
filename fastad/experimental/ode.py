"""``jax.experimental.ode.odeint``: JAX's signature (``func(y, t, *args)``,
the arguments after ``t``, pytrees for the state and the arguments) over
`fastad.scipy.integrate.odeint` (SciPy's LSODA, differentiable by the
adjoint method in the initial state, the times and the arguments)."""
from __future__ import annotations

from typing import Any, Callable

from ..core import pytree
from ..misc.flatten import flatten
from ..scipy.integrate import odeint as _odeint

__all__ = ["odeint"]


def odeint(func: Callable[..., Any], y0: Any, t: Any, *args: Any, rtol: float = 1.4e-8,
           atol: float = 1.4e-8, mxstep: Any = float("inf"), hmax: Any = float("inf")) -> Any:
    """The states at times ``t`` (stacked on a new first axis of each leaf of
    ``y0``'s tree) of dy/dt = func(y, t, *args)."""
    y_flat, unravel = flatten(y0)
    arg_leaves, arg_tree = pytree.flatten(args)

    def flat_func(y: Any, tt: Any, *leaves: Any) -> Any:
        dy = func(unravel(y), tt, *pytree.unflatten(arg_tree, list(leaves)))
        return flatten(dy)[0]

    options = {"rtol": rtol, "atol": atol}
    if mxstep != float("inf"):
        options["mxstep"] = int(mxstep)
    if hmax != float("inf"):
        options["hmax"] = hmax
    states = _odeint(flat_func, y_flat, t, tuple(arg_leaves), **options)
    leaves, tree = pytree.flatten(y0)
    if tree == pytree.LEAF:
        return states.reshape((-1,) + tuple(getattr(y0, "shape", ())))
    out, start = [], 0
    for leaf in leaves:
        shape = tuple(getattr(leaf, "shape", ()))
        size = 1
        for n in shape:
            size *= n
        out.append(states[:, start:start + size].reshape((-1,) + shape))
        start += size
    return pytree.unflatten(tree, out)
