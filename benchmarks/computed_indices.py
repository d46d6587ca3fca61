"""Indices computed from traced floats: a table lookup with linear interpolation.

    python benchmarks/computed_indices.py [--tree PATH] [--rounds R] [--calls K]

``loss(c, table)`` looks each of 2,000 points ``c`` up in a 256-entry table,
``i = np.floor(c).astype(int)`` (a cell index, as semi-Lagrangian advection
and nearest-neighbour lookups compute), and interpolates between
``table[i]`` and ``table[i + 1]``; ``argsort`` picks the 16 smallest values.
Every call passes new points, so the cells change at every call.  The row is
the median time per call of the compiled gradient (C VM) over ``R`` rounds
of ``K`` calls, and the number of traces.  ``--tree`` imports fastad from
another checkout, so that two trees are measured in alternating processes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np

N, CELLS, TOP = 2000, 256, 16


def loss(c, table):
    i = np.clip(np.floor(c).astype(int), 0, CELLS - 2)
    frac = c - np.floor(c)
    value = (1.0 - frac) * table[i] + frac * table[i + 1]
    smallest = value[np.argsort(value)[:TOP]]
    return np.sum(value * c) + np.sum(smallest ** 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    import fastad as fa
    rng = np.random.default_rng(0)
    table = rng.normal(size=CELLS)
    grad = fa.compile(loss, backend="c", argnums=(0, 1))
    points = [rng.uniform(0, CELLS - 1, N) for _ in range(args.calls)]
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host calls (argsort); on retraces, max_traces
        grad(points[0], table)
        for _ in range(args.rounds):
            start = time.perf_counter()
            for c in points:
                grad(c, table)
            times.append((time.perf_counter() - start) / len(points))
    want = fa.grad(loss, argnums=(0, 1))(points[-1], table)
    got = grad(points[-1], table)
    assert all(np.allclose(g, w, rtol=1e-10) for g, w in zip(got, want))
    print(f"{fa.__file__}: {statistics.median(times) * 1e6:.0f} us/call, "
          f"traces {grad.cache_info()['traces']}")


if __name__ == "__main__":
    main()
