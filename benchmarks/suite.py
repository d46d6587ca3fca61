"""Shared parts of the pytest-benchmark suites (``test_bench_*.py``).

Each suite file names its workloads; this module turns every engine `Case`
of those workloads into a parametrized test, and every test checks its result
against the NumPy hand-derived gradient.  Engines that are not installed (or
fastad backends that are not available) become skipped tests with the reason.

Run with ``pytest benchmarks/ --benchmark-only``.
"""
from __future__ import annotations

import pytest

import engines
from engines import Case, Skipped
from workloads import Workload

TOLERANCE = 1e-6
FIRST_CALL_ROUNDS = 3


def _params(workloads: list[Workload], keep) -> list:
    params = []
    for wl in workloads:
        for case in engines.cases(wl):
            test_id = f"{wl.name}-{case.label}"
            if isinstance(case, Skipped):
                params.append(pytest.param(wl, case, id=test_id,
                                           marks=pytest.mark.skip(reason=f"{case.label}: {case.reason}")))
            elif keep(case):
                params.append(pytest.param(wl, case, id=test_id))
    return params


def steady_params(workloads: list[Workload]) -> list:
    """Every engine row of the workloads."""
    return _params(workloads, lambda case: True)


def first_call_params(workloads: list[Workload]) -> list:
    """fastad's rows: trace + compile + first call is part of what it promises."""
    return _params(workloads, lambda case: case.engine.startswith("fastad"))


def _assert_correct(wl: Workload, case: Case, result) -> None:
    error = engines.check(wl, case.op, case.to_numpy(result))
    assert error <= TOLERANCE, f"{case.label} on {wl.name}: relative error {error:.2e}"


def _built(case: Case):
    try:
        case.warm_up()
        return case.build()
    except (AttributeError, NotImplementedError) as exc:
        pytest.skip(f"{case.label}: not available: {exc}")


def run_steady(benchmark, wl: Workload, case: Case) -> None:
    """Time repeated calls of the built function (build and first call excluded)."""
    benchmark.group = f"{wl.name} steady"
    function = _built(case)
    _assert_correct(wl, case, function(*case.args))  # also keeps compile out of the timing
    _assert_correct(wl, case, benchmark(function, *case.args))


def run_first_call(benchmark, wl: Workload, case: Case) -> None:
    """Time build (trace + compile) plus the first call, from scratch each round."""
    benchmark.group = f"{wl.name} first call"
    _built(case)  # engine-wide warm-up, and skip early if the API is missing

    def build_and_call():
        return case.build()(*case.args)
    result = benchmark.pedantic(build_and_call, rounds=FIRST_CALL_ROUNDS, iterations=1)
    _assert_correct(wl, case, result)


def workload_tests(workloads: list[Workload]):
    """A suite file's two tests over its workloads: ``test_steady, test_first_call =
    workload_tests([...])``."""
    @pytest.mark.parametrize("wl, case", steady_params(workloads))
    def test_steady(benchmark, wl, case):
        run_steady(benchmark, wl, case)

    @pytest.mark.parametrize("wl, case", first_call_params(workloads))
    def test_first_call(benchmark, wl, case):
        run_first_call(benchmark, wl, case)
    return test_steady, test_first_call
