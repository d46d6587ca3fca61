"""Batched evaluation: ``g.batch`` against a Python loop, and over threads.

  B1  per-sample gradients of W3 (MLP 784-256-10) over a batch of 256:
      ``g.batch(params, X, Y, in_axes=(None, 0, 0))`` against
      ``[g(params, X[i], Y[i]) for i in range(256)]``, both keeping every
      gradient (256 x 1.6 MB).  Target: the batched call >= 5x faster.
  B2  gradients of W2 (vectorized Rosenbrock, n=1e4) at 64 points:
      ``g.batch(X, threads=2)`` against ``threads=1``.  Target: >= 1.7x.

The rows of one problem are timed in alternating rounds, so that the noise
of a shared machine falls on all of them alike; the table shows medians.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import timing
import workloads


@dataclass
class BatchProblem:
    name: str
    title: str
    rows: dict[str, Callable[[], object]]  # label -> call; the first row is the baseline
    check: Callable[[object], float]  # max relative error of a row's result
    target: tuple[str, str, float]  # (row, baseline row, speed-up wanted)


def _relative_error(got, want) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def per_sample_mlp(batch: int = 256) -> BatchProblem:
    import fastad
    params, X, Y = workloads.mlp_inputs(batch=batch)
    Xb, Yb = X[:, None, :], Y[:, None, :]  # one example: a batch of one row
    g = fastad.compile(workloads.make_mlp_loss(np))
    want = [np.stack(leaf) for leaf in zip(*(workloads.mlp_grad_numpy(params, x, y)
                                             for x, y in zip(Xb, Yb)))]

    def check(result) -> float:
        if isinstance(result, list):  # the loop's list of per-example gradient tuples
            result = [np.stack(leaf) for leaf in zip(*result)]
        return max(_relative_error(got, ref) for got, ref in zip(result, want))

    rows = {"loop of g(params, x, y)": lambda: [g(params, Xb[i], Yb[i]) for i in range(batch)],
            "g.batch, 1 thread": lambda: g.batch(params, Xb, Yb, in_axes=(None, 0, 0),
                                                 threads=1),
            "g.batch, 2 threads": lambda: g.batch(params, Xb, Yb, in_axes=(None, 0, 0),
                                                  threads=2)}
    return BatchProblem("B1-per-sample-W3", f"per-sample gradients of W3 over a batch of {batch}",
                        rows, check, ("g.batch, 1 thread", "loop of g(params, x, y)", 5.0))


def rosenbrock_points(points: int = 64, n: int = 10 ** 4) -> BatchProblem:
    import fastad
    X = np.stack([workloads.rosenbrock_point(n, seed=s) for s in range(points)])
    g = fastad.compile(workloads.make_rosenbrock(np))
    want = np.stack([workloads.rosenbrock_grad_numpy(x) for x in X])
    rows = {"g.batch, 1 thread": lambda: g.batch(X, threads=1),
            "g.batch, 2 threads": lambda: g.batch(X, threads=2)}
    return BatchProblem("B2-W2-threads", f"W2 gradients, n={n:,}, at {points} points",
                        rows, lambda result: _relative_error(result, want),
                        ("g.batch, 2 threads", "g.batch, 1 thread", 1.7))


def all_problems() -> list[BatchProblem]:
    return [per_sample_mlp(), rosenbrock_points()]


def measure(problem: BatchProblem, rounds: int = 7, min_round_s: float = 0.2
            ) -> dict[str, float]:
    """Median seconds per call of each row, rounds alternating between rows."""
    calls = list(problem.rows.values())
    reps = [timing.calibrate(call, (), min_round_s) for call in calls]
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for k, call in enumerate(calls):
            start = time.perf_counter()
            for _ in range(reps[k]):
                call()
            samples[k].append((time.perf_counter() - start) / reps[k])
    return {label: timing.median(s) for label, s in zip(problem.rows, samples)}


def available_parallelism(threads: int = 2, rounds: int = 5) -> float:
    """How much faster this process runs ``threads`` GIL-free jobs on as many
    threads than one after another, now: about ``threads`` on a quiet
    machine, about 1 when other processes hold every core (the scheduler
    then gives a process the same share however many threads it runs), so
    thread speed-ups measured beside it read against it."""
    import hashlib
    import threading
    data = os.urandom(32 << 20)

    def job() -> None:
        hashlib.sha256(data).digest()

    def run(n: int) -> float:
        workers = [threading.Thread(target=job) for _ in range(n)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - start
    ratios = [threads * run(1) / run(threads) for _ in range(rounds)]
    return timing.median(ratios)


def batch_table(quick: bool) -> str:
    """The report section: one table per problem, with its target."""
    lines = ["## Batched evaluation\n",
             f"`g.batch` (see `benchmarks/batch.py`); {os.cpu_count()} cores, rounds "
             "alternating between the rows of a problem, medians.\n"]
    lines.append(f"Parallel speed-up available to this process when measured (2 SHA-256 "
                 f"jobs on 2 threads against 1 on 1): {available_parallelism():.2f}x.\n")
    for problem in all_problems():
        errors = {label: problem.check(call()) for label, call in problem.rows.items()}
        times = measure(problem, rounds=3 if quick else 7, min_round_s=0.05 if quick else 0.2)
        row, base, wanted = problem.target
        speedup = times[base] / times[row]
        lines += [f"### {problem.name}: {problem.title}\n",
                  "| row | per call | vs first row | max rel. error |", "|---|---|---|---|"]
        first = next(iter(times.values()))
        lines += [f"| {label} | {timing.format_seconds(t)} | {first / t:.3g}x | "
                  f"{errors[label]:.1e} |" for label, t in times.items()]
        lines.append(f"\nTarget: {row} >= {wanted:g}x {base}: measured {speedup:.2f}x "
                     f"({'met' if speedup >= wanted else 'missed'}).\n")
    return "\n".join(lines)
