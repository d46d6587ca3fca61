"""The benchmark workloads, written as a NumPy user would write them.

Each workload is a function ``f`` in plain NumPy, its deterministic inputs, and
two hand-derived analytic baselines of the quantity being differentiated: one
in vectorized NumPy and one as a Numba ``@njit`` loop.  The NumPy hand result
is the reference every engine is checked against.

The user functions are built by factories taking the array namespace ``xp``
(``numpy``, ``autograd.numpy``, ``jax.numpy``, ``torch``): the code is the same
text for every engine, and for fastad it is exactly ``import numpy as np`` code.

  W1  Rosenbrock as a Python loop over ``x[i]`` (scalar-heavy code), n=100, 1000
  W1g W1 with an ``if`` per term that always goes the same way (guards), fastad only
  W2  Rosenbrock vectorized with slices, n=1000, 1e6
  W3  MLP loss 784-256-10, tanh, batch 64, softmax cross-entropy
  W4  ``sum(sin(x) * x**2)``, n=10: the per-call overhead floor
  W5  Hessian-vector product of W2, n=1000
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

try:
    import numba
except ImportError:  # the Numba baseline is then skipped, nothing else
    numba = None


# --------------------------------------------------------------------------
# User functions (factories over the array namespace)

def make_rosenbrock_loop(xp=np):
    """W1: the textbook Rosenbrock, one scalar at a time."""
    def rosenbrock_loop(x):
        total = 0.0
        for i in range(len(x) - 1):
            total = total + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return total
    return rosenbrock_loop


def make_rosenbrock_loop_guarded(xp=np):
    """W1g: W1 with a data-dependent branch per term, always taken the same way
    (an abs written as an if): every iteration records a guard."""
    def rosenbrock_loop_guarded(x):
        total = 0.0
        for i in range(len(x) - 1):
            term = 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
            if term < 0.0:  # never true
                term = -term
            total = total + term
        return total
    return rosenbrock_loop_guarded


def make_rosenbrock(xp=np):
    """W2/W5: the same function with slices."""
    def rosenbrock(x):
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return rosenbrock


def make_mlp_loss(xp=np):
    """W3: mean softmax cross-entropy of a one-hidden-layer tanh MLP.

    ``params`` is the tuple ``(W1, b1, W2, b2)``; ``Y`` is one-hot.  The
    log-softmax subtracts the row maximum, as numerically careful code does.
    """
    def mlp_loss(params, X, Y):
        W1, b1, W2, b2 = params
        h = xp.tanh(X @ W1 + b1)
        z = h @ W2 + b2
        z = z - xp.max(z, axis=1, keepdims=True)
        log_p = z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))
        return -xp.sum(Y * log_p) / X.shape[0]
    return mlp_loss


def make_sin_poly(xp=np):
    """W4: ten elements, so the time is all call overhead."""
    def sin_poly(x):
        return xp.sum(xp.sin(x) * x ** 2)
    return sin_poly


# --------------------------------------------------------------------------
# Hand-derived gradients in NumPy (the reference)

def rosenbrock_grad_numpy(x):
    a, b = x[:-1], x[1:]
    d = b - a ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * d - 2.0 * (1.0 - a)
    g[1:] += 200.0 * d
    return g


def rosenbrock_hvp_numpy(x, v):
    # The Hessian is tridiagonal: for each term i (a = x[i], b = x[i+1])
    # d2/da2 = 1200 a^2 - 400 b + 2, d2/dadb = -400 a, d2/db2 = 200.
    a, b = x[:-1], x[1:]
    va, vb = v[:-1], v[1:]
    hv = np.zeros_like(x)
    hv[:-1] = (1200.0 * a ** 2 - 400.0 * b + 2.0) * va - 400.0 * a * vb
    hv[1:] += -400.0 * a * va + 200.0 * vb
    return hv


def mlp_grad_numpy(params, X, Y):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - Y) / X.shape[0]
    da = (dz @ W2.T) * (1.0 - h ** 2)
    return (X.T @ da, da.sum(axis=0), h.T @ dz, dz.sum(axis=0))


def sin_poly_grad_numpy(x):
    return np.cos(x) * x ** 2 + 2.0 * x * np.sin(x)


# --------------------------------------------------------------------------
# Hand-derived gradients as Numba loops (the speed baseline)

def _njit(fn):
    return numba.njit(cache=False, fastmath=False)(fn) if numba is not None else None


@_njit
def rosenbrock_grad_numba(x):
    n = x.shape[0]
    g = np.zeros(n)
    for i in range(n - 1):
        d = x[i + 1] - x[i] * x[i]
        g[i] += -400.0 * x[i] * d - 2.0 * (1.0 - x[i])
        g[i + 1] += 200.0 * d
    return g


@_njit
def rosenbrock_hvp_numba(x, v):
    n = x.shape[0]
    hv = np.zeros(n)
    for i in range(n - 1):
        a = x[i]
        b = x[i + 1]
        hv[i] += (1200.0 * a * a - 400.0 * b + 2.0) * v[i] - 400.0 * a * v[i + 1]
        hv[i + 1] += -400.0 * a * v[i] + 200.0 * v[i + 1]
    return hv


@_njit
def _mlp_grad_numba(W1, b1, W2, b2, X, Y):
    # Matrix products go to BLAS through np.dot; the elementwise parts are loops.
    B, H = X.shape[0], W1.shape[1]
    K = W2.shape[1]
    h = np.dot(X, W1)
    for r in range(B):
        for j in range(H):
            h[r, j] = np.tanh(h[r, j] + b1[j])
    dz = np.dot(h, W2)
    db2 = np.zeros(K)
    for r in range(B):
        m = -np.inf
        for k in range(K):
            dz[r, k] += b2[k]
            m = max(m, dz[r, k])
        s = 0.0
        for k in range(K):
            dz[r, k] = np.exp(dz[r, k] - m)
            s += dz[r, k]
        for k in range(K):
            dz[r, k] = (dz[r, k] / s - Y[r, k]) / B
            db2[k] += dz[r, k]
    da = np.dot(dz, W2.T)
    db1 = np.zeros(H)
    for r in range(B):
        for j in range(H):
            da[r, j] *= 1.0 - h[r, j] * h[r, j]
            db1[j] += da[r, j]
    return np.dot(X.T, da), db1, np.dot(h.T, dz), db2


def mlp_grad_numba(params, X, Y):
    return _mlp_grad_numba(*params, X, Y)


@_njit
def sin_poly_grad_numba(x):
    g = np.empty_like(x)
    for i in range(x.shape[0]):
        g[i] = np.cos(x[i]) * x[i] * x[i] + 2.0 * x[i] * np.sin(x[i])
    return g


# --------------------------------------------------------------------------
# Workloads

@dataclass
class Workload:
    """One benchmark problem.

    ``kind`` is ``"grad"`` (gradient of ``f`` w.r.t. ``args[0]``) or ``"hvp"``
    (Hessian of ``f`` at ``args[0]`` times ``tangent``).
    """
    name: str
    title: str
    make_f: Callable[[Any], Callable]
    args: tuple
    hand_numpy: Callable
    hand_numba: Callable | None
    kind: str = "grad"
    tangent: np.ndarray | None = None
    scalar_loop: bool = False  # the code indexes single elements (micrograd can run it)
    size: int = 0
    peers: bool = True  # False: only fastad and the hand-written baselines
    gemm: tuple[int, int, int] | None = None  # (m, k, n) of its largest matrix product
    f: Callable = field(init=False)

    def __post_init__(self) -> None:
        self.f = self.make_f(np)

    @property
    def op_args(self) -> tuple:
        """Arguments of the differentiated quantity: ``args``, plus ``v`` for an HVP."""
        return self.args if self.kind == "grad" else self.args + (self.tangent,)

    def reference(self):
        """The NumPy hand-derived result every engine is checked against."""
        return self.hand_numpy(*self.op_args)

    def reference_value(self) -> float:
        return float(self.f(*self.args))


def rosenbrock_point(n: int, seed: int = 0) -> np.ndarray:
    # Around the classic start point (-1.2, 1, ...) so no term is degenerate.
    rng = np.random.default_rng(seed)
    return np.where(np.arange(n) % 2 == 0, -1.2, 1.0) + 0.1 * rng.standard_normal(n)


def mlp_inputs(batch: int = 64, sizes=(784, 256, 10), seed: int = 0):
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = sizes
    params = (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in),
              0.1 * rng.standard_normal(n_hidden),
              rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden),
              0.1 * rng.standard_normal(n_out))
    X = rng.standard_normal((batch, n_in))
    Y = np.eye(n_out)[rng.integers(0, n_out, size=batch)]
    return params, X, Y


def rosenbrock_loop_workload(n: int) -> Workload:
    return Workload(f"W1-n{n}", f"scalar Rosenbrock, Python loop over x[i], n={n}",
                    make_rosenbrock_loop, (rosenbrock_point(n),),
                    rosenbrock_grad_numpy, rosenbrock_grad_numba,
                    scalar_loop=True, size=n)


def rosenbrock_loop_guarded_workload(n: int) -> Workload:
    """W1 with guards: only fastad and the hand-written baselines run it (it
    is the same gradient; the comparison is fastad with and without guards)."""
    return Workload(f"W1g-n{n}", f"W1 with an if per term (a guard per iteration), n={n}",
                    make_rosenbrock_loop_guarded, (rosenbrock_point(n),),
                    rosenbrock_grad_numpy, rosenbrock_grad_numba,
                    scalar_loop=True, size=n, peers=False)


def rosenbrock_workload(n: int) -> Workload:
    label = "1e6" if n == 10 ** 6 else str(n)
    return Workload(f"W2-n{label}", f"vectorized Rosenbrock, n={n:,}",
                    make_rosenbrock, (rosenbrock_point(n),),
                    rosenbrock_grad_numpy, rosenbrock_grad_numba, size=n)


def mlp_workload() -> Workload:
    params, X, Y = mlp_inputs()
    return Workload("W3-mlp", "MLP 784-256-10, tanh, batch 64, softmax cross-entropy",
                    make_mlp_loss, (params, X, Y), mlp_grad_numpy,
                    mlp_grad_numba if numba is not None else None,
                    size=sum(p.size for p in params), gemm=(X.shape[0], X.shape[1],
                                                            params[0].shape[1]))


def sin_poly_workload(n: int = 10) -> Workload:
    x = np.linspace(-2.0, 2.0, n) + 0.01
    return Workload("W4-tiny", f"sum(sin(x) * x**2), n={n}", make_sin_poly, (x,),
                    sin_poly_grad_numpy, sin_poly_grad_numba, scalar_loop=False, size=n)


def rosenbrock_hvp_workload(n: int = 1000) -> Workload:
    v = np.random.default_rng(1).standard_normal(n)
    return Workload(f"W5-hvp", f"Hessian-vector product of vectorized Rosenbrock, n={n}",
                    make_rosenbrock, (rosenbrock_point(n),),
                    rosenbrock_hvp_numpy, rosenbrock_hvp_numba,
                    kind="hvp", tangent=v, size=n)


def all_workloads() -> list[Workload]:
    """W1-W5 in report order."""
    return [rosenbrock_loop_workload(100), rosenbrock_loop_workload(1000),
            rosenbrock_loop_guarded_workload(100), rosenbrock_loop_guarded_workload(1000),
            rosenbrock_workload(1000), rosenbrock_workload(10 ** 6),
            mlp_workload(), sin_poly_workload(10), rosenbrock_hvp_workload(1000)]


def select(names: str | None) -> list[Workload]:
    """Workloads whose name starts with one of the comma-separated prefixes."""
    workloads = all_workloads()
    if not names:
        return workloads
    prefixes = [p.strip() for p in names.split(",") if p.strip()]
    return [w for w in workloads if any(w.name.startswith(p) for p in prefixes)]
