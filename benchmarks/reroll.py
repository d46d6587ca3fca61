"""Loop rerolling (issue 12): loop-style functions compiled by fastad, with
rerolling, against the same gradient hand-written as a Numba loop.

* W1: the scalar Rosenbrock loop, n = 1000 and n = 100,000;
* spring chain: sum_i k (|p[i+1] - p[i]| - L)^2 over 10,000 2-D points;
* grid Laplacian energy: sum over interior (i, j) of (4 x[i,j] - 4 neighbours)^2
  on a 100 x 100 grid, written with two nested loops.

    python benchmarks/report.py --only reroll

Each row: tracing alone, trace + reroll + differentiate + compile + first call
on the C VM (what rerolling must not outgrow), then the steady-state gradient
of the hand-written Numba loop, the C VM and the Numba backend, timed in
interleaved rounds; every result is checked against the hand-written
gradient.  ``benchmarks/test_bench_reroll.py`` runs the same workloads under
pytest-benchmark.
"""
from __future__ import annotations

import time

import numpy as np

import timing
from workloads import make_rosenbrock_loop, numba, rosenbrock_grad_numba, rosenbrock_point

TOLERANCE = 1e-8
SPRING_K, SPRING_L = 3.0, 0.5


def spring_chain(p):
    total = 0.0
    for i in range(len(p) - 1):
        d = p[i + 1] - p[i]
        total = total + SPRING_K * (np.sqrt(np.sum(d * d)) - SPRING_L) ** 2
    return total


def laplacian_energy(x):
    total = 0.0
    for i in range(1, x.shape[0] - 1):
        for j in range(1, x.shape[1] - 1):
            r = 4.0 * x[i, j] - x[i - 1, j] - x[i + 1, j] - x[i, j - 1] - x[i, j + 1]
            total = total + r * r
    return total


def _njit(fn):
    return numba.njit(cache=False)(fn) if numba is not None else None


@_njit
def spring_chain_grad_numba(p):
    g = np.zeros_like(p)
    for i in range(p.shape[0] - 1):
        dx, dy = p[i + 1, 0] - p[i, 0], p[i + 1, 1] - p[i, 1]
        length = np.sqrt(dx * dx + dy * dy)
        c = 2.0 * SPRING_K * (length - SPRING_L) / length
        g[i + 1, 0] += c * dx
        g[i + 1, 1] += c * dy
        g[i, 0] -= c * dx
        g[i, 1] -= c * dy
    return g


@_njit
def laplacian_energy_grad_numba(x):
    g = np.zeros_like(x)
    for i in range(1, x.shape[0] - 1):
        for j in range(1, x.shape[1] - 1):
            r = 4.0 * x[i, j] - x[i - 1, j] - x[i + 1, j] - x[i, j - 1] - x[i, j + 1]
            g[i, j] += 8.0 * r
            g[i - 1, j] -= 2.0 * r
            g[i + 1, j] -= 2.0 * r
            g[i, j - 1] -= 2.0 * r
            g[i, j + 1] -= 2.0 * r
    return g


def _spring_point(n):
    rng = np.random.default_rng(0)
    return np.cumsum(rng.uniform(0.2, 1.0, (n, 2)), axis=0)


def _grid_point(n):
    return np.random.default_rng(0).standard_normal((n, n))


# name -> (function, input, hand-written Numba gradient, unrolled fastad affordable)
WORKLOADS = {
    "W1-n1000": (make_rosenbrock_loop(), rosenbrock_point(1000), rosenbrock_grad_numba, True),
    "W1-n100000": (make_rosenbrock_loop(), rosenbrock_point(100_000), rosenbrock_grad_numba,
                   False),
    "spring-n10000": (spring_chain, _spring_point(10_000), spring_chain_grad_numba, False),
    "laplacian-100x100": (laplacian_energy, _grid_point(100), laplacian_energy_grad_numba,
                          False),
}


def relative_error(name: str, result: np.ndarray) -> float:
    f, x, hand, _ = WORKLOADS[name]
    expected = hand(x) if hand is not None else _fastad().grad(f)(x)
    return float(np.max(np.abs(result - expected)) / (1.0 + np.max(np.abs(expected))))


def _fastad():
    import fastad
    return fastad


def _best_of(times: int, fn) -> float:
    """Seconds of the fastest of ``times`` calls: tracing allocates a lot, and
    a call that lands on a garbage collection of earlier work runs slower."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(quick: bool) -> list[dict]:
    fa = _fastad()
    warm = make_rosenbrock_loop()  # first use of each stage in the process, not timed
    for backend in ("c", "numba"):
        fa.compile(warm, backend=backend)(rosenbrock_point(20))
    rows = []
    for name, (f, x, hand, _) in WORKLOADS.items():
        print(f"  {name}", flush=True)
        if hand is not None:
            hand(x)  # its first call compiles it: not part of any row
        row = {"workload": name, "trace_s": _best_of(2, lambda: fa.make_tape(f)(x))}
        fns = {"numba hand": hand} if hand is not None else {}
        for backend in ("c", "numba"):
            start = time.perf_counter()
            g = fa.compile(f, backend=backend)
            gradient = g(x)
            row[f"build_{backend}_s"] = time.perf_counter() - start
            row[f"error_{backend}"] = error = relative_error(name, gradient)
            if error <= TOLERANCE:
                fns[f"fastad[{backend}]"] = g
            row["stages"] = g.tape.stats()["stages"]
        row["steady_s"] = timing.interleaved(fns, (x,), 0.05 if quick else 0.2,
                                             3 if quick else 7)
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    lines = ["## Loop rerolling: loop-style functions against hand-written Numba", "",
             "| workload | instructions traced → rerolled | trace | trace, compile, first call: "
             "C VM | same: Numba | hand Numba | fastad[c] | fastad[numba] |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        steady, stages = row["steady_s"], row["stages"]
        hand = steady.get("numba hand")

        def cell(key: str) -> str:
            t = steady.get(key)
            if t is None:
                return "wrong result" if row.get(f"error_{key[7:-1]}", 0) > TOLERANCE else "–"
            ratio = f" ({t / hand:.2f}×)" if hand else ""
            return timing.format_seconds(t) + ratio
        lines.append(f"| {row['workload']} | {stages.get('traced')} → {stages.get('rerolled')} "
                     f"| {timing.format_seconds(row['trace_s'])} "
                     f"| {timing.format_seconds(row['build_c_s'])} "
                     f"| {timing.format_seconds(row['build_numba_s'])} "
                     f"| {timing.format_seconds(hand)} | {cell('fastad[c]')} "
                     f"| {cell('fastad[numba]')} |")
    lines += ["", "Trace: the best of two recordings of the Python loop. Numba compiles go "
              "through its disk cache: a tape compiled before loads in a fraction of a "
              "second.", ""]
    return "\n".join(lines)
