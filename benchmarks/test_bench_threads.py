"""Threads: the compiled gradient releases the GIL while it runs.

W2 (vectorized Rosenbrock) at n = 10^5, one compiled gradient called from one
thread and from two threads at once; each benchmark round is a fixed number of
calls per thread, so the throughput ratio is ``2 * t(1 thread) / t(2 threads)``
(2.0 is perfect scaling, 1.0 is a GIL held throughout).

The C VM splits long fused loops over its own thread pool (csrc/pool.h), so a
single caller may already use both cores; FASTAD_NUM_THREADS=1 keeps the VM
on its caller's thread, which isolates what releasing the GIL gives.  The
script sets it unless it is set; the pytest suite takes the environment as is.

    FASTAD_NUM_THREADS=1 pytest benchmarks/test_bench_threads.py --benchmark-only
    python benchmarks/test_bench_threads.py          # the ratio per backend, medians
"""
from __future__ import annotations

import os
import statistics
import threading
import time

import numpy as np
import pytest

import fastad as fa
from workloads import make_rosenbrock, rosenbrock_grad_numpy

N = 10 ** 5
CALLS = 200  # per thread and round
BACKENDS = [b for b in ("c", "numba") if b in fa.backends_available()]


def compiled(backend: str):
    g = fa.compile(make_rosenbrock(), backend=backend)
    x = np.random.default_rng(0).uniform(-1.0, 1.5, N)
    got, want = g(x), rosenbrock_grad_numpy(x)
    assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))
    return g, x


def run_threads(g, x, threads: int, calls: int = CALLS) -> float:
    """Seconds for ``threads`` threads to make ``calls`` calls each, started together."""
    start = threading.Barrier(threads + 1)

    def worker():
        start.wait()
        for _ in range(calls):
            g(x)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_threads(benchmark, backend, threads):
    g, x = compiled(backend)
    run_threads(g, x, threads, 10)  # warm up
    benchmark.extra_info.update(calls_per_round=CALLS * threads, n=N)
    benchmark.pedantic(run_threads, args=(g, x, threads), rounds=5, iterations=1)


def throughput_ratio(backend: str, rounds: int = 7) -> tuple[float, float, float]:
    """(median s for one thread, median s for two, throughput ratio), measured
    interleaved so load on the machine hits both alike."""
    g, x = compiled(backend)
    run_threads(g, x, 2, 10)
    one, two = [], []
    for _ in range(rounds):
        one.append(run_threads(g, x, 1))
        two.append(run_threads(g, x, 2))
    t1, t2 = statistics.median(one), statistics.median(two)
    return t1, t2, 2 * t1 / t2


def numpy_ratio(rounds: int = 7) -> float:
    """The same ratio for NumPy's own GIL-free loops (sin of 10^5 elements):
    the parallelism the machine actually offers at the moment."""
    x = np.random.default_rng(0).uniform(-1.0, 1.0, N)
    one = [run_threads(lambda v: np.sin(v), x, 1) for _ in range(rounds)]
    two = [run_threads(lambda v: np.sin(v), x, 2) for _ in range(rounds)]
    return 2 * statistics.median(one) / statistics.median(two)


if __name__ == "__main__":
    os.environ.setdefault("FASTAD_NUM_THREADS", "1")  # read by the VM on its first run
    print(f"NumPy sin, n={N}: two threads give x{numpy_ratio():.2f} the throughput of one "
          "(what this machine offers now)")
    for name in BACKENDS:
        t1, t2, ratio = throughput_ratio(name)
        print(f"W2 n={N} [{name}]: {CALLS} calls in {t1 * 1e3:.1f} ms on one thread, "
              f"{2 * CALLS} calls in {t2 * 1e3:.1f} ms on two: throughput x{ratio:.2f}")
