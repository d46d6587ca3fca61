"""``solve_ivp`` on the loop machinery: explicit Runge-Kutta integrators whose
derivatives are the exact derivatives of the discrete solution
(discretize-then-differentiate), taken through `fastad.scan` and
`fastad.while_loop`.

* ``method="RK4"``: the classical fixed-step method, a `scan` over the steps
  (an outer `scan` over the output intervals when ``t_eval`` is given).
* ``method="RK45"``: Dormand-Prince 5(4) with SciPy's error norm, step-size
  controller (safety 0.9, factor limits 0.2 and 10, no growth right after a
  rejection) and first step (``select_initial_step``), as one `while_loop`
  over (t, y, f, |h|, ...) in which each trip is one attempted step and
  accept/reject is written with ``where``: the body is one sub-tape, so the
  loop compiles to one loop instruction whatever the number of steps.
  Outputs at ``t_eval`` come from the method's dense output (as SciPy's):
  each accepted step writes the points it passed into a carried (m, n)
  buffer.  Dense output rather than steps clamped onto the ``t_eval`` points
  because it keeps SciPy's step sequence (the same steps with or without
  ``t_eval``, so results match SciPy's to rounding when the first step is
  the same), costs no extra steps per output point, and still gives
  derivatives in ``t_eval`` (through the interpolant's argument).
  Without ``t_eval`` the accepted steps are the outputs: their number is
  found on the values (a loop with a buffer large enough, run again with a
  larger one if not) and checked by a guard, so a compiled function whose
  new input takes another number of steps traces again.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.integrate._ivp.rk import RK45 as _SCIPY_RK45

from .. import numpy as fnp
from ..core.tracer import Tracer
from ..loops import scan, while_loop

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
_A, _B, _C, _E, _P = (_SCIPY_RK45.A, _SCIPY_RK45.B, _SCIPY_RK45.C, _SCIPY_RK45.E,
                      _SCIPY_RK45.P)
_ERROR_EXPONENT = -1.0 / (_SCIPY_RK45.error_estimator_order + 1)
_FIRST_BUFFER = 64  # rows of the accepted-step buffer tried first when t_eval is None
MESSAGES = {0: "The solver successfully reached the end of the integration interval.",
            -1: "Required step size is less than spacing between numbers."}


class OdeResult(dict):
    """SciPy's result of solve_ivp: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return "\n".join(f"{k:>9}: {v!r}" for k, v in self.items())


def _value(x: Any) -> Any:
    """The number a (possibly traced) value holds, for choices made once
    (the direction, a step count), each checked by a guard where it matters."""
    return np.asarray(x.value if isinstance(x, Tracer) else x)


def _state(v: Any, n: int, where: str) -> Any:
    """fun's result as a float vector of the state's length."""
    if isinstance(v, (list, tuple)):
        v = fnp.stack([fnp.asarray(e, dtype=np.float64) for e in v])
    v = fnp.asarray(v, dtype=np.float64)
    if tuple(np.shape(v)) != (n,):
        raise ValueError(f"{where}: fun(t, y) must return an array of shape ({n},), "
                         f"not {tuple(np.shape(v))}")
    return v


def _norm(x: Any) -> Any:
    """SciPy's RMS norm, whose derivative at 0 is taken as 0 (not NaN); a NaN
    stays NaN (a rejected step)."""
    s = fnp.sum(x * x) / np.size(x)
    zero = s == 0
    return fnp.where(zero, 0.0, fnp.sqrt(fnp.where(zero, 1.0, s)))


def _select_initial_step(fun: Callable, t0: Any, y0: Any, f0: Any, t_bound: Any,
                         max_step: float, direction: float, rtol: float, atol: Any) -> Any:
    """SciPy's select_initial_step (Hairer, Norsett, Wanner II.4), with where."""
    interval = fnp.abs(t_bound - t0)
    scale = atol + fnp.abs(y0) * rtol
    d0, d1 = _norm(y0 / scale), _norm(f0 / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = fnp.where(small, 1e-6, 0.01 * d0 / fnp.where(small, 1.0, d1))
    h0 = fnp.minimum(h0, interval)
    f1 = fun(t0 + h0 * direction, y0 + h0 * direction * f0)
    d2 = _norm((f1 - f0) / scale) / fnp.where(h0 > 0, h0, 1.0)  # h0 = 0: an empty span
    flat = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = fnp.where(flat, fnp.maximum(1e-6, h0 * 1e-3),
                   (0.01 / fnp.where(flat, 1.0, fnp.maximum(d1, d2))) ** -_ERROR_EXPONENT)
    return fnp.minimum(fnp.minimum(100 * h0, h1), fnp.minimum(interval, max_step))


def _dp_step(fun: Callable, t: Any, y: Any, f: Any, h: Any) -> tuple[Any, Any, list]:
    """One Dormand-Prince step of size h: the new state, its slope and the stages."""
    K = [f]
    for s in range(1, len(_C)):
        dy = sum(_A[s, j] * K[j] for j in range(s) if _A[s, j] != 0)
        K.append(fun(t + _C[s] * h, y + h * dy))
    y_new = y + h * sum(_B[j] * K[j] for j in range(len(_B)) if _B[j] != 0)
    f_new = fun(t + h, y_new)
    K.append(f_new)
    return y_new, f_new, K


def rk45(fun: Callable, t0: Any, t_bound: Any, y0: Any, t_eval: Any, rtol: float, atol: Any,
         first_step: Any, max_step: float) -> dict:
    n = int(np.shape(y0)[0])
    direction = 1.0 if bool(t_bound >= t0) else -1.0
    f0 = fun(t0, y0)
    nfev = 1
    if bool(t_bound == t0):  # an empty span: every output is y0 (a guard when traced)
        # (SciPy's solver takes one step of none: t0 twice)
        t = fnp.zeros(2) + t0 if t_eval is None else fnp.asarray(t_eval, np.float64)
        y = fnp.zeros((n, int(np.shape(t)[0]))) + y0[:, None]
        return _result({"status": 0.0, "attempts": 0.0}, t, y, nfev)
    if first_step is None:
        h_abs = _select_initial_step(fun, t0, y0, f0, t_bound, max_step, direction, rtol, atol)
        nfev += 1
    else:
        h_abs = fnp.asarray(first_step, dtype=np.float64) * 1.0

    def attempt(c: dict) -> tuple[dict, Any, Any, Any, Any, list]:
        """One attempted step: the carry updated as SciPy's step() would after
        it, whether it was accepted, and the step's t, h and stages."""
        t, y, f, h_abs = c["t"], c["y"], c["f"], c["h_abs"]
        fresh = c["rejected"] == 0  # a new step clamps |h| into [min_step, max_step]
        min_step = 10 * np.finfo(np.float64).eps * fnp.abs(t)
        clamped = fnp.where(h_abs > max_step, max_step,
                            fnp.where(h_abs < min_step, min_step, h_abs))
        h_abs = fnp.where(fresh, clamped, h_abs)
        too_small = ~(h_abs >= min_step)  # a NaN step too: the loop must end
        t_new = t + h_abs * direction
        t_new = fnp.where(direction * (t_new - t_bound) > 0, t_bound, t_new)
        h = t_new - t
        y_new, f_new, K = _dp_step(fun, t, y, f, h)
        scale = atol + fnp.maximum(fnp.abs(y), fnp.abs(y_new)) * rtol
        err = h * sum(_E[j] * K[j] for j in range(len(_E)) if _E[j] != 0)
        error_norm = _norm(err / scale)
        ok = error_norm < 1
        power = SAFETY * fnp.where(error_norm == 0, 1.0, error_norm) ** _ERROR_EXPONENT
        grow = fnp.where(error_norm == 0, MAX_FACTOR, fnp.minimum(MAX_FACTOR, power))
        grow = fnp.where(fresh, grow, fnp.minimum(1.0, grow))
        # a NaN error (fun returned NaN) shrinks the step as SciPy's max(0.2, nan)
        # does, so it ends in the too-small failure instead of looping forever
        shrink = fnp.where(power > MIN_FACTOR, power, MIN_FACTOR)
        factor = fnp.where(ok, grow, shrink)
        accepted = ok & ~too_small
        new = {"t": fnp.where(accepted, t_new, t), "y": fnp.where(accepted, y_new, y),
               "f": fnp.where(accepted, f_new, f),
               "h_abs": fnp.where(too_small, h_abs, fnp.abs(h) * factor),
               "rejected": fnp.where(accepted, 0.0, 1.0),
               "status": fnp.where(too_small, -1.0, c["status"]),
               "attempts": c["attempts"] + fnp.where(too_small, 0.0, 1.0)}
        return new, accepted, t, h, y, K

    def alive(c: dict) -> Any:
        return (direction * (c["t"] - t_bound) < 0) & (c["status"] == 0)

    init = {"t": t0 * 1.0, "y": y0, "f": f0, "h_abs": h_abs, "rejected": 0.0, "status": 0.0,
            "attempts": 0.0}
    if t_eval is not None:
        t_eval = fnp.asarray(t_eval, dtype=np.float64)
        m = int(np.shape(t_eval)[0])

        def body(c: dict) -> dict:
            new, accepted, t, h, y, K = attempt(c)
            # dense output on the points this step passed (SciPy's RkDenseOutput)
            rows = accepted & (c["written"] == 0) & (direction * (t_eval - new["t"]) <= 0)
            x = (t_eval - t) / fnp.where(h == 0, 1.0, h)
            Q = [sum(_P[j, k] * K[j] for j in range(len(K)) if _P[j, k] != 0)
                 for k in range(_P.shape[1])]
            # x, x^2, ... by products: x ** k would put 0 * inf in second
            # derivatives at x = 0 (a point at the step's start)
            xk = [x]
            for _ in range(1, _P.shape[1]):
                xk.append(xk[-1] * x)
            xp = fnp.stack(xk, axis=1)  # (m, 4)
            dense = y[None, :] + h * fnp.matmul(xp, fnp.stack(Q))
            new["Y"] = fnp.where(rows[:, None], dense, c["Y"])
            new["written"] = fnp.where(rows, 1.0, c["written"])
            return new
        init.update(Y=fnp.zeros((m, n)) + y0[None, :] * 0.0, written=np.zeros(m))
        final = while_loop(alive, body, init)
        return _result(final, t_eval, final["Y"].T, nfev)

    def run(capacity: int) -> tuple[dict, int]:
        rows_at = np.arange(capacity, dtype=np.float64)

        def body(c: dict) -> dict:
            new, accepted, *_ = attempt(c)
            row = accepted & (rows_at == c["count"])
            new["T"] = fnp.where(row, new["t"], c["T"])
            new["Y"] = fnp.where(row[:, None], new["y"][None, :], c["Y"])
            new["count"] = c["count"] + fnp.where(accepted, 1.0, 0.0)
            return new
        start = dict(init, T=fnp.zeros(capacity) + t0 * 1.0 * (rows_at == 0),
                     Y=fnp.zeros((capacity, n)) + y0[None, :] * (rows_at == 0)[:, None],
                     count=1.0)
        final = while_loop(alive, body, start)
        return final, int(_value(final["count"]))
    final, count = run(_FIRST_BUFFER)
    if count > _FIRST_BUFFER:  # the buffer overflowed: once more with room for every step
        final, count = run(count)
    bool(final["count"] == count)  # a guard: another number of steps traces again
    return _result(final, final["T"][:count], final["Y"][:count].T, nfev)


def _result(final: dict, t: Any, y: Any, nfev: int) -> dict:
    status = int(_value(final["status"]))
    attempts = int(_value(final["attempts"]))
    return {"t": t, "y": y, "status": status, "message": MESSAGES[status],
            "success": status >= 0, "nfev": nfev + 6 * attempts, "njev": 0, "nlu": 0,
            "sol": None, "t_events": None, "y_events": None}


def _rk4_step(fun: Callable, t: Any, y: Any, h: Any) -> Any:
    k1 = fun(t, y)
    k2 = fun(t + h / 2, y + h / 2 * k1)
    k3 = fun(t + h / 2, y + h / 2 * k2)
    k4 = fun(t + h, y + h * k3)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def _rk4_steps(fun: Callable, t: Any, y: Any, t_end: Any, steps: int, outputs: bool) -> Any:
    h = (t_end - t) / steps

    def step(c: tuple, k: Any) -> tuple:
        tc, yc = c
        y_new = _rk4_step(fun, tc, yc, h)
        # t from the step number, not by summing h (no drift over many steps)
        t_new = t + (k + 1.0) * h
        return (t_new, y_new), ((t_new, y_new) if outputs else None)
    return scan(step, (t * 1.0, y), np.arange(steps, dtype=np.float64))


def rk4(fun: Callable, t0: Any, t_bound: Any, y0: Any, t_eval: Any, steps: int) -> dict:
    """Fixed steps: ``steps`` equal steps over t_span (every step an output),
    or over each interval between consecutive output times when t_eval is given."""
    if t_eval is None:
        _, (ts, ys) = _rk4_steps(fun, t0, y0, t_bound, steps, True)
        t = fnp.concatenate([fnp.reshape(t0 * 1.0, (1,)), ts])
        y = fnp.concatenate([y0[None, :], ys]).T
        n_steps = steps
    else:
        t_eval = fnp.asarray(t_eval, dtype=np.float64)
        starts = fnp.concatenate([fnp.reshape(t0 * 1.0, (1,)), t_eval[:-1]])

        def interval(y: Any, ends: tuple) -> tuple:
            start, end = ends
            (_, y_end), _ = _rk4_steps(fun, start, y, end, steps, False)
            return y_end, y_end
        _, ys = scan(interval, y0, (starts, t_eval))
        t, y = t_eval, ys.T
        n_steps = steps * int(np.shape(t_eval)[0])
    return {"t": t, "y": y, "status": 0, "message": MESSAGES[0], "success": True,
            "nfev": 4 * n_steps, "njev": 0, "nlu": 0, "sol": None, "t_events": None,
            "y_events": None}


def rk4_step_count(t0: Any, t_bound: Any, t_eval: Any, steps: Any, first_step: Any,
                   max_step: float) -> int:
    """``steps`` as given, or enough steps of at most first_step (or max_step)
    for the longest interval between output times."""
    if steps is not None:
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
                or steps < 1:
            raise ValueError(f"solve_ivp(method='RK4'): steps must be a positive int, "
                             f"not {steps!r}")
        return int(steps)
    h = first_step if first_step is not None else max_step
    if not np.isfinite(_value(h)) or _value(h) <= 0:
        raise ValueError("solve_ivp(method='RK4') takes its step count from steps=, or from "
                         "a positive finite first_step or max_step")
    ends = t_bound if t_eval is None else t_eval
    times = np.concatenate([[_value(t0)], np.ravel(_value(ends))])
    longest = float(np.max(np.abs(np.diff(times)))) if times.size > 1 else 0.0
    n = max(1, math.ceil(longest / float(_value(h)) - 1e-12))
    if times.size > 1 and any(isinstance(v, Tracer) for v in (t0, ends, h)):
        # The count comes from traced times: a Python test of the same count
        # on the traced values is a guard, so a compiled function called with
        # times that need another count traces again instead of keeping it.
        traced = fnp.concatenate([fnp.reshape(t0, (1,)), fnp.ravel(ends)])
        ratio = fnp.max(fnp.abs(fnp.diff(traced))) / h - 1e-12
        if not (ratio <= n and (n == 1 or ratio > n - 1)):
            raise ValueError("solve_ivp(method='RK4'): the step count from the traced "
                             "times does not match their values")
    return n
