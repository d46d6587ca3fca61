"""Sparse derivatives: pattern detection and coloring time, colors against the
lower bound, and the per-call cost of the compiled sparse Hessian (Jacobian)
against one compiled gradient (function call).

    python benchmarks/sparse_derivatives.py [--sizes 10000,100000] [--backends c,numba]

Workloads (n variables):
  rosenbrock   chained (extended) Rosenbrock, Hessian (tridiagonal)
  grid         2-D grid energy, 5-point Laplacian quadratic form plus a
               quartic on a sqrt(n) x sqrt(n) grid, Hessian (5-point stencil)
  surface      minimal-surface area on a grid, Hessian (7 nonzeros per row)
  collocation  trapezoidal collocation residuals of x' = -x^3 + sin t,
               Jacobian (n-1 x n, bidiagonal)

Each line: the time of ``fa.sparsity`` (trace, pattern, coloring), the
colors and the lower bound (the most nonzeros in a row), the best of
``--repeats`` calls of the compiled sparse derivative (pattern already kept)
and of the compiled gradient (or, for the Jacobian, the compiled function),
and their ratio.  Dense Hessians are timed where n <= 4000 (n^2 doubles).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastad as fa  # noqa: E402


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def grid(x):
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    lap = 4.0 * u[1:-1, 1:-1] - u[:-2, 1:-1] - u[2:, 1:-1] - u[1:-1, :-2] - u[1:-1, 2:]
    return 0.5 * np.sum(lap * u[1:-1, 1:-1]) + 0.25 * np.sum(u ** 4)


def surface(x):
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    dx = u[1:, :-1] - u[:-1, :-1]
    dy = u[:-1, 1:] - u[:-1, :-1]
    return np.sum(np.sqrt(1.0 + dx ** 2 + dy ** 2))


def collocation(x):
    h = 0.01
    rhs = -x ** 3 + np.sin(np.arange(x.size) * h)
    return x[1:] - x[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])


WORKLOADS = {"rosenbrock": (rosenbrock, "hessian"), "grid": (grid, "hessian"),
             "surface": (surface, "hessian"), "collocation": (collocation, "jacobian")}


def best(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def square(n):
    k = int(round(np.sqrt(n)))
    return k * k


def run(sizes, backends, repeats, out):
    print(f"# sparse derivatives, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", file=out)
    print(f"{'workload':12s} {'n':>7s} {'what':8s} {'detect+color':>12s} {'colors':>6s} "
          f"{'bound':>5s} {'backend':7s} {'sparse/call':>11s} {'grad/call':>10s} {'ratio':>6s} "
          f"{'dense/call':>10s}", file=out)
    fa.sparsity(rosenbrock)(np.ones(100))  # Numba's coloring loaded before anything is timed
    for name, (f, kind) in WORKLOADS.items():
        for n in sizes:
            n = square(n) if name in ("grid", "surface") else n
            x = np.random.default_rng(0).uniform(-1, 1, n)
            start = time.perf_counter()
            s = fa.sparsity(f)(x)
            detect = time.perf_counter() - start
            if kind == "hessian":
                colors, bound = s.ncolors["hessian"], s.lower_bounds["hessian"]
            else:
                side = "columns" if s.jacobian_mode == "fwd" else "rows"
                colors, bound = s.ncolors[side], s.lower_bounds[side]
            for backend in backends:
                if kind == "hessian":
                    g = fa.compile(f, backend=backend)
                    g.hessian(x, sparse=True)
                    g(x)
                    per = best(lambda: g.hessian(x, sparse=True), repeats)
                    base = best(lambda: g(x), repeats)
                    dense = ""
                    if n <= 4000:
                        g.hessian(x)
                        dense = f"{best(lambda: g.hessian(x), max(3, repeats // 5)) * 1e3:8.2f}ms"
                else:
                    g = fa.jit(f, backend=backend)
                    g.jacobian(x, sparse=True)
                    g(x)
                    per = best(lambda: g.jacobian(x, sparse=True), repeats)
                    base = best(lambda: g(x), repeats)
                    dense = ""
                print(f"{name:12s} {n:7d} {kind:8s} {detect * 1e3:10.1f}ms {colors:6d} {bound:5d} "
                      f"{backend:7s} {per * 1e3:9.3f}ms {base * 1e3:8.4f}ms {per / base:6.1f} "
                      f"{dense:>10s}", file=out, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="c,numba")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    run([int(v) for v in args.sizes.split(",")], args.backends.split(","), args.repeats,
        sys.stdout)


if __name__ == "__main__":
    main()
