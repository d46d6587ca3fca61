"""User code (issue 24): functions a user writes that no other benchmark has.

    python benchmarks/report.py --only usercode [--quick]

Each workload is timed side by side in one process: its rows (a hand-written
NumPy/SciPy gradient, a hand-written Numba one where there is one, fastad
compiled on the C VM and on the Numba backend, eager ``fa.grad``, JAX
``jit(grad)``, autograd, PyTorch eager if it is installed) run in interleaved
rounds (`timing.interleaved`), medians.  Data are passed as arguments
(``f(w, X, y)``, gradient w.r.t. the first).  First call = trace + compile +
first result, in a fresh subprocess per row in a full run (`report.py`'s own
first-call machinery), in this process with ``--quick``; ``fastad[auto]``
(the default ``backend="auto"``) is timed for its first call only.  Every
result is checked against the hand-written NumPy/SciPy gradient.

  GP       Gaussian-process negative log likelihood (Cholesky, triangular solve),
           gradient w.r.t. (log lengthscale, log variance, log noise); n = 200, 1000
  logreg   logistic regression, X 5000x50
  mlp      tanh MLP 32-64-1, batch 256, squared error; gradient w.r.t. (W1, b1, W2, b2)
  softmax  softmax cross-entropy, X 1000x50, W 50x20, 20 classes
  rk4      fit of a damped oscillator's (stiffness, damping) through 200 RK4 steps
           written as a Python loop
  powloop  sum_i log(1 + x[i]**2) + x[i]**4 as a Python loop; n = 1000, 100,000
  descent  a piecewise penalty with an ``if`` per element, in a gradient-descent
           loop whose branch pattern changes every step; time per step (JAX: `where`)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.linalg

import engines
import timing
from engines import Case, Skipped
from workloads import Workload, numba

TOLERANCE = 1e-6
# Row label -> column heading, in table order.
COLUMNS = {"numpy_hand": "hand NumPy/SciPy", "numba_hand": "hand Numba",
           "fastad[c]": "fastad[c]", "fastad[numba]": "fastad[numba]",
           "fastad.grad (eager)": "fa.grad (eager)", "jax": "JAX jit(grad)",
           "autograd": "autograd", "torch": "torch (eager)", "fastad[auto]": "fastad[auto]"}
FIRST_CALL_ONLY = ("fastad[auto]",)  # backend="auto" may switch backends while timed
FASTAD_COMPILED = ("fastad[c]", "fastad[numba]")


def _namespace(xp: Any) -> str:
    return getattr(xp, "__name__", "numpy").split(".")[0]


def _solve_triangular(xp: Any) -> Callable:
    """The differentiable ``scipy.linalg.solve_triangular`` each engine's user imports."""
    if _namespace(xp) == "jax":
        import jax.scipy.linalg
        return jax.scipy.linalg.solve_triangular
    if _namespace(xp) == "autograd":
        import autograd.scipy.linalg
        return autograd.scipy.linalg.solve_triangular
    if _namespace(xp) == "torch":
        import torch

        def torch_solve_triangular(L, b, lower=False):
            return torch.linalg.solve_triangular(L, b[:, None], upper=not lower)[:, 0]
        return torch_solve_triangular
    import fastad.scipy.linalg  # SciPy's own converts with np.asarray, which tracing refuses
    return fastad.scipy.linalg.solve_triangular


# --------------------------------------------------------------------------
# User functions (factories over the array namespace, as in workloads.py)

def make_gp_nll(xp=np):
    solve_triangular = _solve_triangular(xp)

    def gp_nll(theta, X, y):
        lengthscale, variance, noise = xp.exp(theta[0]), xp.exp(theta[1]), xp.exp(theta[2])
        sq = xp.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
        K = variance * xp.exp(-0.5 * sq / lengthscale ** 2) + noise * xp.eye(X.shape[0], dtype=X.dtype)
        L = xp.linalg.cholesky(K)
        alpha = solve_triangular(L, y, lower=True)
        return (0.5 * xp.sum(alpha ** 2) + xp.sum(xp.log(xp.diag(L)))
                + 0.5 * X.shape[0] * math.log(2.0 * math.pi))
    return gp_nll


def make_logreg(xp=np):
    def logreg(w, X, y):  # y in {-1, +1}
        return xp.mean(xp.log(1.0 + xp.exp(-y * (X @ w)))) + 1e-3 * xp.sum(w ** 2)
    return logreg


def make_mlp(xp=np):
    def mlp(params, X, y):
        W1, b1, W2, b2 = params
        h = xp.tanh(X @ W1 + b1)
        return xp.mean((h @ W2 + b2 - y) ** 2)
    return mlp


def make_softmax(xp=np):
    def softmax_xent(W, X, Y):
        z = X @ W
        z = z - xp.amax(z, axis=1, keepdims=True)  # torch.max returns (values, indices)
        log_p = z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))
        return -xp.sum(Y * log_p) / X.shape[0]
    return softmax_xent


RK4_DT = 0.05


def rk4_step(k, c):
    """One RK4 step of the fit: the carry is (q, p, loss), the step's input a
    data point; plain arithmetic, so fastad.scan and jax.lax.scan both take it."""
    h = RK4_DT

    def step(carry, d):
        q, p, loss = carry
        q1, p1 = p, -k * q - c * p
        qa, pa = q + 0.5 * h * q1, p + 0.5 * h * p1
        q2, p2 = pa, -k * qa - c * pa
        qb, pb = q + 0.5 * h * q2, p + 0.5 * h * p2
        q3, p3 = pb, -k * qb - c * pb
        qc, pc = q + h * q3, p + h * p3
        q4, p4 = pc, -k * qc - c * pc
        q = q + h / 6.0 * (q1 + 2.0 * q2 + 2.0 * q3 + q4)
        p = p + h / 6.0 * (p1 + 2.0 * p2 + 2.0 * p3 + p4)
        return (q, p, loss + (q - d) ** 2), None
    return step


def make_rk4_fit(xp=np):
    """The fit as a plain Python loop over the data (traced, it unrolls)."""
    def rk4_fit(theta, data):
        step = rk4_step(theta[0], theta[1])
        carry = (1.0, 0.0, 0.0)
        for t in range(len(data)):
            carry, _ = step(carry, data[t])
        return carry[2]
    return rk4_fit


def make_powloop(xp=np):
    def powloop(x):
        s = 0.0
        for i in range(len(x)):
            s = s + xp.log(1.0 + x[i] ** 2) + x[i] ** 4
        return s
    return powloop


def make_penalty(xp=np):
    if _namespace(xp) == "jax":  # a traced `if` is an error in JAX: its user writes `where`
        def penalty_where(x, t):
            d = x - t
            return xp.sum(xp.where(d > 0.0, d ** 2, 0.1 * d ** 2))
        return penalty_where

    def penalty(x, t):
        s = 0.0
        for i in range(len(x)):
            d = x[i] - t[i]
            if d > 0.0:
                s = s + d ** 2
            else:
                s = s + 0.1 * d ** 2
        return s
    return penalty


# --------------------------------------------------------------------------
# Hand-written gradients

def gp_nll_grad(theta, X, y):
    lengthscale, variance, noise = np.exp(theta)
    sq = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    Kse = variance * np.exp(-0.5 * sq / lengthscale ** 2)
    K = Kse + noise * np.eye(X.shape[0])
    c = scipy.linalg.cho_factor(K, lower=True)
    alpha = scipy.linalg.cho_solve(c, y)
    W = scipy.linalg.cho_solve(c, np.eye(X.shape[0])) - np.outer(alpha, alpha)
    # d nll / d theta_j = 0.5 tr(W dK/dtheta_j)
    return 0.5 * np.array([np.sum(W * Kse * sq) / lengthscale ** 2, np.sum(W * Kse),
                           noise * np.trace(W)])


def logreg_grad(w, X, y):
    m = y * (X @ w)
    return X.T @ (-y / (1.0 + np.exp(m))) / X.shape[0] + 2e-3 * w


def mlp_grad(params, X, y):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    dz = 2.0 * (h @ W2 + b2 - y) / y.size
    da = (dz @ W2.T) * (1.0 - h ** 2)
    return X.T @ da, da.sum(axis=0), h.T @ dz, dz.sum(axis=0)


def softmax_grad(W, X, Y):
    z = X @ W
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return X.T @ (p - Y) / X.shape[0]


def _rk4_propagator(theta: np.ndarray) -> np.ndarray:
    """Forward sensitivities: the state (q, p) and its derivatives w.r.t. (k, c)
    follow a linear ODE y' = J y, so an RK4 step is y <- P y with P the
    degree-4 Taylor polynomial of h J (which is also the derivative of the
    discrete RK4 step)."""
    k, c = theta
    A = np.array([[0.0, 1.0], [-k, -c]])
    J = np.zeros((6, 6))
    J[0:2, 0:2] = J[2:4, 2:4] = J[4:6, 4:6] = A
    J[3, 0] = -1.0  # d/dk of -k q
    J[5, 1] = -1.0  # d/dc of -c p
    hJ = RK4_DT * J
    eye = np.eye(6)
    return eye + hJ @ (eye + hJ @ (eye / 2 + hJ @ (eye / 6 + hJ / 24)))


def rk4_fit_grad(theta, data):
    P = _rk4_propagator(theta)
    y = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    out = np.empty((len(data), 6))
    for t in range(len(data)):
        y = P @ y
        out[t] = y
    r = 2.0 * (out[:, 0] - data)
    return np.array([r @ out[:, 2], r @ out[:, 4]])


def _njit(fn):
    return numba.njit(cache=False)(fn) if numba is not None else None


@_njit
def _rk4_sensitivities_numba(P, data):
    y = np.zeros(6)
    y[0] = 1.0
    z = np.empty(6)
    gk = gc = 0.0
    for t in range(data.shape[0]):
        for i in range(6):
            s = 0.0
            for j in range(6):
                s += P[i, j] * y[j]
            z[i] = s
        y[:] = z
        r = 2.0 * (y[0] - data[t])
        gk += r * y[2]
        gc += r * y[4]
    return np.array([gk, gc])


def rk4_fit_grad_numba(theta, data):
    return _rk4_sensitivities_numba(_rk4_propagator(theta), data)


def powloop_grad(x):
    return 2.0 * x / (1.0 + x ** 2) + 4.0 * x ** 3


@_njit
def powloop_grad_numba(x):
    g = np.empty_like(x)
    for i in range(x.shape[0]):
        xi = x[i]
        g[i] = 2.0 * xi / (1.0 + xi * xi) + 4.0 * xi * xi * xi
    return g


def penalty_grad(x, t):
    d = x - t
    return np.where(d > 0.0, 2.0 * d, 0.2 * d)


# --------------------------------------------------------------------------
# Workloads

@dataclass
class UserWorkload(Workload):
    skip: dict = field(default_factory=dict)  # row label -> why it is not run
    # Gradient descent: each timed call is one step x <- x - lr g(x, t) on the next
    # of these targets (rows), so the sign pattern of x - t changes every step.
    targets: np.ndarray | None = None


def _gp(n: int) -> UserWorkload:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, 10.0, (n, 2))
    y = np.sin(X[:, 0]) + np.cos(X[:, 1]) + 0.1 * rng.standard_normal(n)
    theta = np.log(np.array([1.5, 1.0, 0.1]))
    return UserWorkload(f"GP-n{n}", f"GP negative log likelihood, Cholesky + triangular "
                        f"solve, n={n}, grad w.r.t. 3 hyperparameters",
                        make_gp_nll, (theta, X, y), gp_nll_grad, None, size=n)


def _logreg() -> UserWorkload:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 50))
    y = np.sign(X @ rng.standard_normal(50) + rng.standard_normal(5000))
    w = 0.1 * rng.standard_normal(50)
    return UserWorkload("logreg", "logistic regression, X 5000x50, grad w.r.t. w",
                        make_logreg, (w, X, y), logreg_grad, None, size=X.size)


def _mlp() -> UserWorkload:
    rng = np.random.default_rng(2)
    params = (rng.standard_normal((32, 64)) / np.sqrt(32), 0.1 * rng.standard_normal(64),
              rng.standard_normal((64, 1)) / 8.0, 0.1 * rng.standard_normal(1))
    X = rng.standard_normal((256, 32))
    y = np.sin(X[:, :1])
    return UserWorkload("mlp", "tanh MLP 32-64-1, batch 256, squared error, "
                        "grad w.r.t. (W1, b1, W2, b2)", make_mlp, (params, X, y),
                        mlp_grad, None, size=X.size)


def _softmax() -> UserWorkload:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 50))
    W = 0.1 * rng.standard_normal((50, 20))
    Y = np.eye(20)[rng.integers(0, 20, 1000)]
    return UserWorkload("softmax", "softmax cross-entropy, X 1000x50, W 50x20, grad w.r.t. W",
                        make_softmax, (W, X, Y), softmax_grad, None, size=X.size)


def _rk4() -> UserWorkload:
    noise = 0.01 * np.random.default_rng(4).standard_normal(200)
    data = _rk4_trajectory(np.array([2.5, 0.2]), 200) + noise
    return UserWorkload("rk4", "damped-oscillator fit, 200 RK4 steps as a Python loop, "
                        "grad w.r.t. (stiffness, damping)", make_rk4_fit,
                        (np.array([2.0, 0.3]), data), rk4_fit_grad,
                        rk4_fit_grad_numba if numba is not None else None, size=200)


def _rk4_trajectory(theta: np.ndarray, steps: int) -> np.ndarray:
    k, c = theta
    q, p, h, out = 1.0, 0.0, RK4_DT, []
    for _ in range(steps):
        q1, p1 = p, -k * q - c * p
        q2, p2 = p + 0.5 * h * p1, -k * (q + 0.5 * h * q1) - c * (p + 0.5 * h * p1)
        q3, p3 = p + 0.5 * h * p2, -k * (q + 0.5 * h * q2) - c * (p + 0.5 * h * p2)
        q4, p4 = p + h * p3, -k * (q + h * q3) - c * (p + h * p3)
        q, p = q + h / 6 * (q1 + 2 * q2 + 2 * q3 + q4), p + h / 6 * (p1 + 2 * p2 + 2 * p3 + p4)
        out.append(q)
    return np.array(out)


def _powloop(n: int) -> UserWorkload:
    x = np.random.default_rng(5).uniform(-1.5, 1.5, n)
    skip = {}
    if n > 10_000:
        why = "a Python loop of 10^5 iterations per call (or an unrolled graph to compile)"
        skip = {"jax": why, "autograd": why, "fastad.grad (eager)": why}
    return UserWorkload(f"powloop-n{n}", f"sum log(1 + x[i]**2) + x[i]**4 as a Python loop, "
                        f"n={n:,}", make_powloop, (x,), powloop_grad, powloop_grad_numba,
                        size=n, skip=skip)


DESCENT_N, DESCENT_LR, DESCENT_TARGETS = 1000, 0.5, 64


def _descent() -> UserWorkload:
    targets = np.random.default_rng(6).standard_normal((DESCENT_TARGETS, DESCENT_N))
    return UserWorkload("descent", f"piecewise penalty with an if per element, n={DESCENT_N}, "
                        "gradient descent on a fresh target each step, time per step",
                        make_penalty, (np.full(DESCENT_N, 0.3), targets[0]), penalty_grad,
                        None, size=DESCENT_N, targets=targets)


BUILDERS = {"GP-n200": lambda: _gp(200), "GP-n1000": lambda: _gp(1000), "logreg": _logreg,
            "mlp": _mlp, "softmax": _softmax, "rk4": _rk4,
            "powloop-n1000": lambda: _powloop(1000), "powloop-n100000": lambda: _powloop(100_000),
            "descent": _descent}


def all_workloads() -> list[UserWorkload]:
    return [build() for build in BUILDERS.values()]


# --------------------------------------------------------------------------
# Rows

def _auto_case(wl: Workload) -> Case | Skipped:
    try:
        import fastad as fa
    except Exception as exc:
        return Skipped("fastad[auto]", f"import fastad failed: {type(exc).__name__}: {exc}")
    return Case("fastad[auto]", "grad", wl.args, lambda: fa.compile(wl.f, argnums=0),
                warm_up=lambda: engines._warm_up_fastad(fa, "c"))


def cases(wl: UserWorkload, quick: bool = False) -> list[Case | Skipped]:
    """The rows of one workload (those of `engines`, filtered), in column order."""
    found: dict[str, Case | Skipped] = {}
    for group in (engines.hand_cases, engines.fastad_cases, engines.jax_cases,
                  engines.autograd_cases, engines.torch_cases):
        for case in group(wl, quick):
            if case.label not in COLUMNS or case.label in found or (
                    case.label == "numba_hand" and wl.hand_numba is None):
                continue
            found[case.label] = Skipped(case.label, wl.skip[case.label]) \
                if case.label in wl.skip else case
    found["fastad[auto]"] = _auto_case(wl)
    return [found[label] for label in COLUMNS if label in found]


def find(wl: UserWorkload, label: str, quick: bool = False) -> Case:
    """One row (`report.py`'s first-call subprocesses use this)."""
    for case in cases(wl, quick):
        if case.label == label and isinstance(case, Case):
            return case
    raise KeyError(f"no engine row {label!r} for {wl.name}")


def _like(template: Any, a: np.ndarray) -> Any:
    """``a`` in the container of ``template`` (a JAX Array for the JAX row)."""
    if "jax" in type(template).__module__:
        import jax.numpy as jnp
        return jnp.asarray(a)
    if type(template).__module__.startswith("torch"):
        import torch
        return torch.tensor(a)
    return a


DESCENT_CHECK_STEPS = 20


def _stepper(wl: UserWorkload, case: Case, fn: Callable, x: Any) -> Callable:
    """One step of gradient descent with ``fn``, on the next target each call,
    from ``x`` where the checked first steps left off (so that the timing's
    calibration sees steps the function has not already been traced for)."""
    targets = [_like(case.args[1], t) for t in wl.targets]
    state = {"x": x, "k": DESCENT_CHECK_STEPS % len(targets)}

    def step() -> None:
        k = state["k"]
        state["k"] = (k + 1) % len(targets)
        state["x"] = state["x"] - DESCENT_LR * fn(state["x"], targets[k])
    return step


def _trajectory(gradient: Callable, x: Any, targets: list) -> Any:
    """Where the first steps of gradient descent lead (the descent rows' check)."""
    for t in targets[:DESCENT_CHECK_STEPS]:
        x = x - DESCENT_LR * gradient(x, t)
    return x


# Engines whose compile was interrupted by the time limit in this process: their
# caches may be half-built, so their later rows here are not run (as in report.py).
INTERRUPTED: set[str] = set()


def measure(wl: UserWorkload, case: Case, limit_s: float,
            first_call_elsewhere: Callable | None) -> tuple[dict, Callable | None]:
    """A row's first call and correctness, and the function to time (None if none)."""
    row = {"label": case.label, "first_call": None, "rel_err": None, "steady": None, "note": "",
           "warnings": []}
    if case.engine in INTERRUPTED:
        row["note"] = (f"not run: an earlier {case.engine} compile in this process was "
                       "interrupted by the time limit")
        return row, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row, fn = _measure(wl, case, row, limit_s, first_call_elsewhere)
    row["warnings"] = list(dict.fromkeys(str(w.message)[:300] for w in caught))
    return row, fn


def _measure(wl: UserWorkload, case: Case, row: dict, limit_s: float,
             first_call_elsewhere: Callable | None) -> tuple[dict, Callable | None]:
    try:
        case.warm_up()
        if first_call_elsewhere is not None:
            row["first_call"], note = first_call_elsewhere(wl.name, case.label, limit_s)
            if row["first_call"] is None:
                row["note"] = note
                return row, None
        first = timing.first_call(case, limit_s)
        if first_call_elsewhere is None:
            row["first_call"] = first.seconds
        row["rel_err"] = engines.check(wl, case.op, case.to_numpy(first.result))
        if wl.targets is None:
            return row, lambda: first.function(*case.args)
        mine = _trajectory(first.function, case.args[0],
                           [_like(case.args[1], t) for t in wl.targets])
        hand = _trajectory(wl.hand_numpy, wl.args[0], list(wl.targets))
        row["rel_err"] = max(row["rel_err"],
                             engines.relative_error(case.to_numpy(mine), hand))
        return row, _stepper(wl, case, first.function, mine)
    except timing.TimeLimitExceeded as exc:
        row["note"] = f"first call {exc}"
        INTERRUPTED.add(case.engine)
    except Exception as exc:  # a failing row is reported, not hidden
        row["note"] = f"error: {type(exc).__name__}: {str(exc)[:300]}"
    return row, None


def run_workload(wl: UserWorkload, quick: bool, limit_s: float,
                 first_call_elsewhere: Callable | None) -> dict:
    rows, calls, skipped = [], {}, {}
    for case in cases(wl, quick):
        if isinstance(case, Skipped):
            skipped[case.label] = case.reason
            continue
        print(f"  {wl.name:16} {case.label:22}", end="", flush=True)
        row, fn = measure(wl, case, limit_s, first_call_elsewhere)
        print(f" first {timing.format_seconds(row['first_call']):>9}  err {row['rel_err']}"
              f" {row['note'][:80]} {' / '.join(row['warnings'])[:100]}", flush=True)
        rows.append(row)
        if fn is not None and case.label not in FIRST_CALL_ONLY:
            calls[case.label] = fn
    min_round_s, rounds = _rounds(quick)
    try:
        steady = timing.interleaved(calls, (), min_round_s, rounds)
    except Exception:  # time the rows one by one to find out which one fails
        steady = {}
        for label, fn in calls.items():
            try:
                steady.update(timing.interleaved({label: fn}, (), min_round_s, rounds))
            except Exception as exc:
                row = next(r for r in rows if r["label"] == label)
                row["note"] = f"error while timed: {type(exc).__name__}: {str(exc)[:300]}"
    for row in rows:
        row["steady"] = steady.get(row["label"])
    return {"workload": wl.name, "title": wl.title, "rows": rows, "skipped": skipped}


def run(quick: bool, limit_s: float, first_call_elsewhere: Callable | None = None,
        names: list[str] | None = None) -> list[dict]:
    """Every workload (or those named); ``first_call_elsewhere(workload, label,
    limit_s) -> (seconds or None, note)`` times first calls in a fresh process."""
    results = []
    for name in names or BUILDERS:
        wl = BUILDERS[name]()
        print(f"  {wl.name}: {wl.title}", flush=True)
        results.append(run_workload(wl, quick, limit_s, first_call_elsewhere))
    return results


# --------------------------------------------------------------------------
# Targets (issue 24) and the report

def _hand_limits(name: str) -> list[tuple[str, float]]:
    """The hand-written rows a workload's fastad rows are held to, and how close."""
    if name.startswith("powloop"):
        return [("numba_hand", 1.5)]
    limits = [("numpy_hand", 1.2 if name == "GP-n1000" else 1.3)]
    if name == "rk4":  # its NumPy gradient is a Python loop: hold fastad to the Numba one too
        limits.append(("numba_hand", 1.3))
    return limits


def _ok(row: dict) -> bool:
    return row["steady"] is not None and row["rel_err"] is not None and \
        row["rel_err"] <= TOLERANCE


def targets(result: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for one workload; met None when not measurable."""
    rows = {r["label"]: r for r in result["rows"]}
    t = {label: r["steady"] for label, r in rows.items() if _ok(r)}
    hands = _hand_limits(result["workload"])
    out = []
    for label in FASTAD_COMPILED:
        mine = t.get(label)
        failed = label in rows and not _ok(rows[label])
        for peer, bound, words in [(hand, limit, f"≤ {limit:g}× {COLUMNS[hand]}")
                                   for hand, limit in hands] + [
                                       ("jax", 1.0, "< JAX jit(grad)"),
                                       ("autograd", 1.0, "< autograd")]:
            if peer not in t:
                if peer in rows:  # it ran and failed: no ratio to give
                    out.append((f"{label} {words}", f"{COLUMNS[peer]} failed", None))
                continue
            if failed or mine is None:
                out.append((f"{label} {words}", "failed" if failed else "–", False if failed
                            else None))
                continue
            ratio = mine / t[peer]
            out.append((f"{label} {words}", _times(ratio),
                        ratio <= bound if peer.endswith("_hand") else ratio < bound))
    eager, autograd = t.get("fastad.grad (eager)"), t.get("autograd")
    if autograd is not None and "fastad.grad (eager)" in rows:
        speed = autograd / eager if eager else None
        out.append(("fa.grad (eager) ≥ 1.0× autograd's speed",
                    _times(speed) if speed else "failed", speed is not None and speed >= 1.0))
    auto = rows.get("fastad[auto]")
    if auto is not None:
        seconds = auto["first_call"]
        out.append(("first call, backend=\"auto\", < 1 s",
                    timing.format_seconds(seconds) if seconds is not None else "failed",
                    seconds is not None and seconds < 1.0))
    return out


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2f}×" if ratio >= 0.1 else \
        f"{ratio:.2g}×"


def _cell(row: dict | None, base: float | None, reason: str | None) -> str:
    if row is None:
        return "not run" if reason else "–"  # the reason is in the notes
    if row["steady"] is None:
        return "**failed**" if row["note"] else "–"
    text = timing.format_seconds(row["steady"])
    if base:
        text += f" ({_times(row['steady'] / base)})"
    if row["rel_err"] is None or row["rel_err"] > TOLERANCE:
        text += f" **wrong** (err {row['rel_err']:.1e})"
    return text


def _rounds(quick: bool) -> tuple[float, int]:
    """(seconds a round of all rows lasts at least, rounds)."""
    return (0.15, 5) if quick else (0.4, 9)


def plot(results: list[dict], path: str) -> None:
    """Steady time over the hand-written NumPy/SciPy gradient, per workload and
    engine, on a log scale (1 = the hand-written gradient's time)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    engines = [c for c in COLUMNS if c not in FIRST_CALL_ONLY and c != "numpy_hand"]
    names = [res["workload"] for res in results]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(names) * 1.6 + 1.5))
    height = 0.8 / len(engines)
    colors = plt.get_cmap("tab10")
    for j, engine in enumerate(engines):
        ys, ratios = [], []
        for i, res in enumerate(results):
            rows = {r["label"]: r for r in res["rows"]}
            base = rows.get("numpy_hand", {}).get("steady")
            row = rows.get(engine)
            if base and row and row.get("steady"):
                ys.append(i + (j - len(engines) / 2) * height)
                ratios.append(row["steady"] / base)
        ax.barh(ys, ratios, height=height, color=colors(j), label=COLUMNS[engine])
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("steady time per gradient / hand-written NumPy/SciPy gradient (log scale)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(results: list[dict], first_call_where: str, quick: bool = False) -> str:
    steady_cols = [c for c in COLUMNS if c not in FIRST_CALL_ONLY]
    min_round_s, rounds = _rounds(quick)
    lines = ["## User code (issue 24)", "",
             f"Rows of a workload ran in {rounds} interleaved rounds of at least "
             f"{min_round_s:g} s in one process (medians); data "
             "passed as arguments. Steady time per gradient (descent: per step, update "
             "included), and in brackets over the hand-written NumPy/SciPy gradient. "
             f"First call: trace + compile + first result, measured in {first_call_where}.", "",
             "| workload | " + " | ".join(COLUMNS[c] for c in steady_cols) + " |",
             "|---" * (len(steady_cols) + 1) + "|"]
    for res in results:
        rows = {r["label"]: r for r in res["rows"]}
        base = rows.get("numpy_hand", {}).get("steady")
        lines.append(f"| {res['workload']} | " + " | ".join(
            _cell(rows.get(c), base, res["skipped"].get(c)) for c in steady_cols) + " |")
    lines += ["", "First call (seconds) and correctness (max relative error against the "
              "hand-written gradient over every row that ran):", "",
              "| workload | " + " | ".join(COLUMNS[c] for c in COLUMNS) + " | max rel. err |",
              "|---" * (len(COLUMNS) + 2) + "|"]
    for res in results:
        rows = {r["label"]: r for r in res["rows"]}
        errors = [r["rel_err"] for r in res["rows"] if r["rel_err"] is not None]
        lines.append(f"| {res['workload']} | " + " | ".join(
            timing.format_seconds(rows[c]["first_call"]) if c in rows else "–"
            for c in COLUMNS) + (f" | {max(errors):.1e} |" if errors else " | – |"))
    lines += ["", "Targets (issue 24), each a ratio of medians in the same run:", "",
              "| workload | target | measured | met |", "|---|---|---|---|"]
    for res in results:
        for k, (what, measured, met) in enumerate(targets(res)):
            verdict = {True: "met", False: "**missed**", None: "–"}[met]
            lines.append(f"| {res['workload'] if k == 0 else ''} | {what} | {measured} "
                         f"| {verdict} |")
    notes = [f"- {res['workload']} {r['label']}: {r['note']}" for res in results
             for r in res["rows"] if r["note"]]
    notes += [f"- {res['workload']} {r['label']} warned: " + " / ".join(r["warnings"])
              for res in results for r in res["rows"]
              if r["warnings"] and r["label"].startswith("fastad")]
    notes += [f"- {res['workload']} {label}: not run ({why})" for res in results
              for label, why in res["skipped"].items() if label != "torch"]
    if any("torch" in res["skipped"] for res in results):
        notes.append(f"- torch: not run ({results[0]['skipped'].get('torch', '')})")
    lines += [""] + notes + [""]
    return "\n".join(lines)
