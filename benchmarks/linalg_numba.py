"""Compiled gradients of two linear-algebra losses, for A/B runs of two checkouts.

A batched eigh loss (64 symmetric 24 x 24 matrices: eigenvalues and squared
eigenvectors weighted) and the GP negative log likelihood of
benchmarks/usercode.py (Cholesky and a triangular solve, n = 200), each
compiled with ``fa.compile(f).value_and_grad`` on the backends asked for;
prints the median of rounds of calls, in wall time and in this process's CPU
time (steadier on a loaded machine; with OPENBLAS_NUM_THREADS=1 the call is
single-threaded), and the load average, one line each.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=<checkout> python benchmarks/linalg_numba.py \
        [--backends numba,c] [--rounds 5]

Run it for each checkout in turn (alternating processes) to compare them;
PYTHONPATH says which fastad is imported, and each line prints it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastad as fa  # noqa: E402
from usercode import make_gp_nll  # noqa: E402


def eigh_loss(a, c):
    w, v = np.linalg.eigh(a)
    return np.sum(w ** 2) + np.sum(v ** 2 * c)


def workloads():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((64, 24, 24))
    a = q + np.swapaxes(q, -1, -2)
    c = rng.uniform(0.5, 1.5, (24, 24))
    n = 200
    X = rng.uniform(0.0, 10.0, (n, 2))
    y = np.sin(X[:, 0]) + np.cos(X[:, 1]) + 0.1 * rng.standard_normal(n)
    theta = np.log(np.array([1.5, 1.0, 0.1]))
    return {"eigh-64x24x24": (eigh_loss, (a, c)),
            "gp-n200": (make_gp_nll(np), (theta, X, y))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="numba")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    for name, (f, inputs) in workloads().items():
        for backend in args.backends.split(","):
            g = fa.compile(f, backend=backend, argnums=0).value_and_grad
            start = time.perf_counter()
            g(*inputs)
            first = time.perf_counter() - start
            wall, cpu = [], []
            for _ in range(args.rounds):
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(args.calls):
                    g(*inputs)
                wall.append((time.perf_counter() - start) / args.calls)
                cpu.append((time.process_time() - start_cpu) / args.calls)
            print(f"{name} {backend}: {statistics.median(wall) * 1e3:.3f} ms per gradient, "
                  f"{statistics.median(cpu) * 1e3:.3f} ms of CPU "
                  f"(median of {args.rounds} rounds of {args.calls}; first call {first:.1f} s; "
                  f"load {os.getloadavg()[0]:.1f}; fastad at {os.path.dirname(fa.__file__)})",
                  flush=True)


if __name__ == "__main__":
    main()
