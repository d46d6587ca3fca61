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

import pytest

import fastad as fa
from reroll import TOLERANCE, WORKLOADS, relative_error

ENGINES = ["fastad-reroll", "fastad-unrolled", "numba-hand"]


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
    error = relative_error(name, result)
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
