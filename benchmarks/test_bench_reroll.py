"""Loop rerolling (issue 12): loop-style functions compiled by fastad with
rerolling, against the same gradient hand-written as a Numba loop.

* W1: scalar Rosenbrock loop, n = 1000 and n = 100,000;
* spring chain: sum_i k (|p[i+1] - p[i]| - L)^2 over 2-D points;
* grid Laplacian energy: sum over interior (i, j) of (4 x[i,j] - 4 neighbours)^2,
  written with two nested loops.

``test_steady`` times the compiled gradient (fastad rerolled, fastad unrolled
where that is affordable, hand-written Numba); ``test_trace_and_compile`` times
``fa.compile`` + first call against tracing alone, which is what rerolling
must not outgrow.  Every result is checked against the hand-written gradient.

Run with ``pytest benchmarks/test_bench_reroll.py --benchmark-only``.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
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
ENGINES = ["fastad-reroll", "fastad-unrolled", "numba-hand"]


def _expected(name):
    f, x, hand, _ = WORKLOADS[name]
    return hand(x) if hand is not None else fa.grad(f)(x)


def _gradient_function(name, engine):
    f, x, hand, unrolled_ok = WORKLOADS[name]
    if engine == "numba-hand":
        if hand is None:
            pytest.skip("numba is not installed")
        return hand
    if engine == "fastad-unrolled" and not unrolled_ok:
        pytest.skip("the unrolled tape is too large to compile in a benchmark run")
    return fa.compile(f, reroll=engine == "fastad-reroll")


def _check(name, result):
    expected = _expected(name)
    error = np.max(np.abs(result - expected)) / (1.0 + np.max(np.abs(expected)))
    assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_steady(benchmark, name, engine):
    """The compiled gradient, built and warmed up outside the timing."""
    benchmark.group = f"reroll {name} steady"
    grad = _gradient_function(name, engine)
    x = WORKLOADS[name][1]
    _check(name, grad(x))
    _check(name, benchmark(grad, x))
    if engine == "fastad-reroll":
        benchmark.extra_info["stages"] = grad.tape.stats()["stages"]


@pytest.mark.parametrize("stage", ["trace", "trace+compile"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_trace_and_compile(benchmark, name, stage):
    """Tracing alone, against trace + reroll + differentiate + compile + first
    call: rerolling must not grow faster than tracing."""
    benchmark.group = f"reroll {name} build"
    f, x, _, _ = WORKLOADS[name]
    if stage == "trace":
        benchmark.pedantic(lambda: fa.make_tape(f)(x), rounds=2, iterations=1)
    else:
        result = benchmark.pedantic(lambda: fa.compile(f)(x), rounds=2, iterations=1)
        _check(name, result)
