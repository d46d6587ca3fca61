"""scipy.integrate.odeint, differentiable in the initial state, the times
and the extra arguments by the adjoint method (as autograd's
``autograd.scipy.integrate.odeint``): the cotangent is carried backwards
through the augmented system (state, its cotangent, the times' and the
arguments' cotangents), integrated by SciPy's own ``odeint`` between the
observation times, with ``func``'s vector-Jacobian products taken by fastad.

``odeint`` is a primitive that runs SciPy (a NumPy call in compiled code);
a ``func`` closing over traced values (a neural ODE's weights) is recorded
once and replayed, those values passed as arguments; forward mode
integrates the sensitivities beside the state; ``vmap`` solves each
example's problem in turn (SciPy's adaptive solver picks its steps per
trajectory).  Both derivatives are written with odeint itself (the
augmented systems solved by the same primitive), so they are
differentiable again: Hessians, any order, as autograd's are.

``solve_ivp`` (RK45, RK4) is written on fastad's loops instead (`_ivp`):
the exact derivatives of the discrete solution, compiled as loop
instructions.  The rest of ``scipy.integrate`` is SciPy's own.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as _np
import scipy.integrate as _scipy_integrate

from .. import numpy as fnp
from ..core import pytree
from ..core.registry import defbatch, defprim
from ..core.tracer import Tracer, bind
from ..transforms.batching import per_example


def _flat(args: tuple) -> tuple[Any, Callable[[Any], tuple]]:
    """The arguments raveled into one float vector (traced or plain), and
    the inverse, which slices such a vector back into their shapes."""
    shapes = [fnp.shape(a) for a in args]
    sizes = [int(_np.prod(s)) for s in shapes]
    flat = fnp.concatenate([fnp.ravel(fnp.astype(a, _np.float64)) for a in args]) if args \
        else _np.zeros(0)

    def unflatten(v: Any) -> tuple:
        out, k = [], 0
        for s, n in zip(shapes, sizes):
            out.append(fnp.reshape(v[k:k + n], s))
            k += n
        return tuple(out)
    return flat, unflatten


def _odeint(y0: Any, t: Any, *args: Any, func: Any, options: tuple) -> _np.ndarray:
    return _scipy_integrate.odeint(func, y0, t, args=tuple(args), **dict(options))


def _solve(func: Any, y0: Any, t: Any, args: tuple, options: tuple) -> Any:
    """odeint as the primitive (SciPy's own on plain values)."""
    return bind(_ODEINT, y0, t, *args, func=func, options=options)


def _compiled_dynamics(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An augmented system's right-hand side, compiled once for the solve:
    SciPy calls it hundreds of times on plain values, each call a compiled
    call rather than a fresh trace of the user's function and its
    derivative (traced values, a higher derivative's, trace through it)."""
    from ..backends import available
    from ..compiled import jit
    return jit(fn, backend="c" if "c" in available() else "numpy")


def _cotangents(g: Any, yt: Any, y0: Any, t: Any, args: tuple, func: Any,
                options: tuple) -> tuple[Any, Any, tuple]:
    """The cotangents of y0, t and args for the output cotangent g, by the
    adjoint method (autograd's grad_odeint): the augmented system (state,
    its cotangent, t0's and the arguments' cotangents) integrated backwards
    by odeint itself between the observation times, so that these are
    differentiable again (a Hessian is odeint's derivatives of odeints)."""
    from ..api import vjp
    steps, dim = fnp.shape(yt)
    flat_args, unflatten = _flat(args)

    def flat_func(y: Any, tt: Any, fa: Any) -> Any:
        return func(y, tt, *unflatten(fa))

    @_compiled_dynamics
    def augmented(state: Any, tt: Any, fa: Any) -> Any:
        y, ct_y = state[:dim], state[dim:2 * dim]
        dy, back = vjp(flat_func, y, fnp.astype(tt, _np.float64), fa)
        ct = back(-ct_y)
        return fnp.concatenate([fnp.ravel(dy), fnp.ravel(ct[0]), fnp.reshape(ct[1], (1,)),
                                fnp.ravel(ct[2])])

    ct_y, ct_t0, ct_times = g[-1], 0.0, []
    ct_args = fnp.zeros(fnp.shape(flat_args))
    for i in range(steps - 1, 0, -1):
        ct_now = fnp.sum(fnp.ravel(func(yt[i], t[i], *args)) * g[i])
        ct_times.append(ct_now)
        ct_t0 = ct_t0 - ct_now
        state = fnp.concatenate([yt[i], ct_y, fnp.reshape(ct_t0, (1,)), ct_args])
        back = _solve(augmented, state, fnp.stack([t[i], t[i - 1]]), (flat_args,), options)[1]
        ct_y, ct_t0, ct_args = back[dim:2 * dim], back[2 * dim], back[2 * dim + 1:]
        ct_y = ct_y + g[i - 1]
    ct_times.append(ct_t0)
    return (fnp.reshape(ct_y, fnp.shape(y0)),
            fnp.reshape(fnp.stack(ct_times[::-1]), fnp.shape(t)), unflatten(ct_args))


def _tangent(tan: Any, yt: Any, y0: Any, t: Any, args: tuple, func: Any, options: tuple,
             which: int) -> Any:
    """The states' tangent for a tangent of input ``which`` alone: forward
    sensitivities s' = J_y f s + J_args f dargs, integrated beside the state
    by odeint itself (differentiable again)."""
    from ..api import jvp
    dim = fnp.shape(yt)[1]
    flat_args, unflatten = _flat(args)
    d_args, s0 = fnp.zeros(fnp.shape(flat_args)), fnp.zeros(dim)
    if which == 0:
        s0 = fnp.ravel(tan)
    elif which == 1:  # moving t0 moves the whole trajectory
        s0 = -fnp.ravel(func(yt[0], t[0], *args)) * fnp.ravel(tan)[0]
    else:
        d_args = _flat(tuple(tan if k == which - 2 else fnp.zeros(fnp.shape(a))
                             for k, a in enumerate(args)))[0]

    def flat_func(y: Any, tt: Any, fa: Any) -> Any:
        return func(y, tt, *unflatten(fa))

    @_compiled_dynamics
    def augmented(state: Any, tt: Any, fa: Any, da: Any) -> Any:
        y, sens = state[:dim], state[dim:]
        dy, dsens = jvp(flat_func, (y, fnp.astype(tt, _np.float64), fa),
                        (sens, _np.float64(0.0), da))
        return fnp.concatenate([fnp.ravel(dy), fnp.ravel(dsens)])
    out = _solve(augmented, fnp.concatenate([yt[0], s0]), t, (flat_args, d_args),
                 options)[:, dim:]
    if which == 1:  # and moving t_i moves where the state is read
        moved = fnp.stack([fnp.ravel(func(yt[i], t[i], *args)) for i in range(len(yt))])
        out = out + moved * fnp.reshape(tan, (-1, 1))
        out = fnp.concatenate([fnp.zeros((1, dim)), out[1:]])
    return out


_ODEINT = defprim("scipy.integrate.odeint", _odeint, None, cost="linalg",
                  doc="SciPy's odeint; a NumPy call in compiled code")
_ODEINT.builtin = False
defbatch(_ODEINT, per_example)  # SciPy picks the steps per trajectory


_LAST = threading.local()  # the last instruction's cotangents, and what they were of


def _rule(which: int) -> Any:
    def rule(g: Any, ans: Any, y0: Any, t: Any, *args: Any, func: Any, options: tuple) -> Any:
        # the sweep asks each input's rule in turn with the same operands: one
        # backward integration gives them all
        key = (g, ans, y0, t, *args, func)
        last = getattr(_LAST, "entry", None)
        if last is None or len(last[0]) != len(key) or \
                not all(a is b for a, b in zip(last[0], key)):
            last = _LAST.entry = (key, _cotangents(g, ans, y0, t, args, func, options))
        ct_y0, ct_t, ct_args = last[1]
        if which == len(key) - 4:  # the last input's rule: let go of the operands
            _LAST.entry = None
        return (ct_y0, ct_t, *ct_args)[which]
    return rule


def _jvp_rule(which: int) -> Any:
    def rule(tan: Any, ans: Any, y0: Any, t: Any, *args: Any, func: Any, options: tuple) -> Any:
        return _tangent(tan, ans, y0, t, args, func, options, which)
    return rule


# one rule per input: y0, t, and up to 14 extra arguments
_ODEINT.vjps = [_rule(k) for k in range(16)]
_ODEINT.jvps = [_jvp_rule(k) for k in range(16)]


def odeint(func: Callable[..., Any], y0: Any, t: Any, args: tuple = (), **kwargs: Any) -> Any:
    """SciPy's odeint(func, y0, t, args): the states at times t, differentiable
    in y0, t and args (by the adjoint method in reverse mode, forward
    sensitivities in forward mode; to any order)."""
    if not isinstance(args, tuple):
        args = (args,)
    leaves, tree = pytree.flatten(list(args))
    if any(isinstance(a, (list, tuple, dict)) for a in args):  # pytrees (a network's weights)
        inner = func
        func = lambda y, tt, *flat: inner(y, tt, *pytree.unflatten(tree, list(flat)))  # noqa: E731
        args = tuple(leaves)
    from ..runtime import closure_convert
    func, consts = closure_convert(func, _np.asarray(_value(y0), dtype=float),
                                   _np.asarray(_value(t), dtype=float)[0],
                                   *[_np.asarray(_value(a), dtype=float) for a in args])
    args = tuple(args) + tuple(consts)  # traced values func closes over: arguments
    if not any(isinstance(v, Tracer) for v in (y0, t, *args)):
        return _scipy_integrate.odeint(func, y0, t, args=args, **kwargs)
    if kwargs.get("full_output"):
        raise NotImplementedError("odeint(full_output=True) is not supported on traced values")
    return bind(_ODEINT, y0, t, *args, func=func, options=tuple(sorted(kwargs.items())))


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Tracer) else _np.asarray(v)


def __getattr__(name: str) -> Any:
    """The rest of scipy.integrate, as SciPy's (on plain values)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_scipy_integrate, name)


__all__ = ["odeint", "solve_ivp"]


def solve_ivp(fun: Callable[..., Any], t_span: Any, y0: Any, method: str = "RK45",
              t_eval: Any = None, dense_output: bool = False, events: Any = None,
              vectorized: bool = False, args: tuple | None = None, *, rtol: float = 1e-3,
              atol: Any = 1e-6, first_step: Any = None, max_step: float = _np.inf,
              steps: int | None = None) -> Any:
    """SciPy's solve_ivp for explicit Runge-Kutta methods, differentiable in y0,
    args, t_span and t_eval: the exact derivatives of the discrete solution,
    through `fastad.scan` (``method="RK4"``, fixed steps: ``steps`` per output
    interval, or as many as first_step/max_step need) and `fastad.while_loop`
    (``method="RK45"``, SciPy's adaptive Dormand-Prince).  See `_ivp`."""
    from . import _ivp
    where = "fastad.scipy.integrate.solve_ivp"
    if method not in ("RK45", "RK4"):
        raise NotImplementedError(f"{where}: method {method!r}; 'RK45' (adaptive) and 'RK4' "
                                  "(fixed step) are differentiable (SciPy has the others)")
    if dense_output or events is not None:
        raise NotImplementedError(f"{where}: dense_output and events are not supported")
    if vectorized:
        raise NotImplementedError(f"{where}: vectorized=True is not supported")
    if args is not None and not isinstance(args, tuple):
        args = (args,)
    args = args or ()
    if len(t_span) != 2 or any(_np.ndim(t) != 0 for t in (t_span[0], t_span[1])):
        raise ValueError(f"{where}: t_span must be a pair (t0, t_bound)")
    t0, t_bound = t_span[0], t_span[1]
    if _np.ndim(y0) != 1:
        raise ValueError(f"{where}: y0 must be 1-dimensional, not of shape {_np.shape(y0)}")
    if _np.iscomplexobj(_ivp._value(y0)):
        raise NotImplementedError(f"{where}: complex y0 is not supported")
    y0 = fnp.asarray(y0, dtype=_np.float64)
    n = int(_np.shape(y0)[0])
    rtol = float(rtol)
    if not rtol > 0:
        raise ValueError(f"{where}: rtol must be positive")
    atol = _np.asarray(atol, dtype=_np.float64)
    if _np.any(atol < 0) or atol.ndim > 1 or (atol.ndim == 1 and atol.shape != (n,)):
        raise ValueError(f"{where}: atol must be a non-negative number or an array of "
                         f"shape ({n},)")
    if not float(max_step) > 0:
        raise ValueError(f"{where}: max_step must be positive")
    if t_eval is not None:
        te, a, b = _ivp._value(t_eval), float(_ivp._value(t0)), float(_ivp._value(t_bound))
        if te.ndim != 1:
            raise ValueError(f"{where}: t_eval must be 1-dimensional")
        if _np.any(te < min(a, b)) or _np.any(te > max(a, b)):
            raise ValueError(f"{where}: values in t_eval are not within t_span")
        d = _np.diff(te)
        if (b >= a and _np.any(d <= 0)) or (b < a and _np.any(d >= 0)):
            raise ValueError(f"{where}: values in t_eval are not properly sorted")

    def rhs(t: Any, y: Any) -> Any:
        return _ivp._state(fun(t, y, *args), n, where)
    if method == "RK4":
        count = _ivp.rk4_step_count(t0, t_bound, t_eval, steps, first_step, max_step)
        out = _ivp.rk4(rhs, t0, t_bound, y0, t_eval, count)
    else:
        if steps is not None:
            raise ValueError(f"{where}: steps= is for method='RK4' (RK45 picks its steps)")
        if first_step is not None and not 0 < float(_ivp._value(first_step)) <= abs(
                float(_ivp._value(t_bound)) - float(_ivp._value(t0))):
            raise ValueError(f"{where}: first_step must be positive and at most the "
                             "length of t_span")
        out = _ivp.rk45(rhs, t0, t_bound, y0, t_eval, rtol, atol, first_step, float(max_step))
    return _ivp.OdeResult(out)

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
