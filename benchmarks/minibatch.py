"""Minibatch SGD: logistic regression with a new index array every step.

    python benchmarks/minibatch.py [--quick]

The loss takes the whole data set and the step's indices,
``loss(w, X, y, idx)``, and gathers the minibatch itself (``X[idx]``,
``y[idx]``), as minibatch loops written for autograd and JAX do.  Integer
arrays are data in fastad's compiled functions, so every step reuses one
trace; the row "idx keyed by value" passes the indices as a static argument
instead (what every integer array was before), which traces on every step.
The row "X and y in a closure" reads the data set from the loss's closure
instead of its arguments, ``loss(w, idx)``.

Rows: fastad compiled (C VM, Numba), autograd, JAX ``jit(grad)`` if JAX is
installed.  Each round runs ``steps`` SGD steps per row, rows interleaved
round by round; the figure is the median over rounds of the time per step.
Every row's final weights are checked against NumPy's hand-written gradient.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

N, D, BATCH, LR = 20000, 50, 128, 0.1


def make_loss(xp):
    def loss(w, X, y, idx):
        Xb, yb = X[idx], y[idx]
        z = Xb @ w
        p = 1.0 / (1.0 + xp.exp(-z))
        return -xp.sum(yb * xp.log(p) + (1 - yb) * xp.log(1 - p)) / idx.shape[0]
    return loss


def hand_grad(w, X, y, idx):
    Xb, yb = X[idx], y[idx]
    p = 1.0 / (1.0 + np.exp(-(Xb @ w)))
    return Xb.T @ (p - yb) / idx.shape[0]


def engines(X, y):
    """Row label -> a gradient function of (w, X, y, idx)."""
    import fastad as fa
    rows = {"fastad[c]": fa.compile(make_loss(np), backend="c")}
    # the data set in a closure, as a script's globals hold it: X[idx] of the
    # captured matrix is a gather from it, read in place at each call
    loss = make_loss(np)
    closed = fa.compile(lambda w, idx: loss(w, X, y, idx), backend="c")
    rows["fastad[c], X and y in a closure"] = lambda w, X_, y_, idx: closed(w, idx)
    try:
        rows["fastad[numba]"] = fa.compile(make_loss(np), backend="numba")
    except Exception as exc:  # noqa: BLE001 - an optional backend
        print(f"fastad[numba]: skipped ({exc})")
    rows["fastad[c], idx keyed by value"] = fa.compile(make_loss(np), backend="c",
                                                       static_argnums=(3,))
    try:
        import autograd
        import autograd.numpy as anp
        rows["autograd"] = autograd.grad(make_loss(anp))
    except ImportError:
        print("autograd: not installed")
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        jitted = jax.jit(jax.grad(make_loss(jnp)))
        device = {}  # the data set moved to JAX's arrays once, as a JAX user would

        def jax_grad(w, X, y, idx):
            if id(X) not in device:
                device[id(X)] = (jnp.asarray(X), jnp.asarray(y))
            Xj, yj = device[id(X)]
            return np.asarray(jitted(w, Xj, yj, idx))
        rows["JAX jit(grad)"] = jax_grad
    except ImportError:
        print("JAX: not installed")
    return rows


def sgd(grad, w, X, y, batches):
    for idx in batches:
        w = w - LR * grad(w, X, y, idx)
    return w


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, steps = (3, 20) if args.quick else (7, 100)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = (X @ rng.normal(size=D) + 0.5 * rng.normal(size=N) > 0).astype(np.int64)
    w0 = np.zeros(D)
    rows = engines(X, y)
    warm = [rng.integers(0, N, BATCH) for _ in range(3)]
    want = sgd(hand_grad, w0, X, y, warm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the keyed-by-value row warns of its retraces
        for name, grad in rows.items():  # first calls (traces, compiles) off the clock
            got = sgd(grad, w0, X, y, warm)
            assert np.allclose(got, want, rtol=1e-9, atol=1e-12), name
        samples = {name: [] for name in rows}
        for _ in range(rounds):
            batches = [rng.integers(0, N, BATCH) for _ in range(steps)]
            for name, grad in rows.items():
                t0 = time.perf_counter()
                sgd(grad, w0, X, y, batches)
                samples[name].append((time.perf_counter() - t0) / steps)
    load = os.getloadavg()
    print(f"minibatch SGD, logistic regression: X {N}x{D}, batch {BATCH}, a new index array "
          f"per step; median of {rounds} rounds of {steps} steps; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, times in samples.items():
        print(f"  {name:34s} {statistics.median(times) * 1e6:10.1f} us/step")
    traces = rows["fastad[c]"].cache_info()["traces"]
    print(f"  fastad[c] traces after {3 + rounds * steps} steps: {traces}")


if __name__ == "__main__":
    main()
