"""W4: sum(sin(x) * x**2) with n=10: the per-call overhead."""
import pytest

from suite import first_call_params, run_first_call, run_steady, steady_params
from workloads import sin_poly_workload

WORKLOADS = [sin_poly_workload(10)]


@pytest.mark.parametrize("wl, case", steady_params(WORKLOADS))
def test_steady(benchmark, wl, case):
    run_steady(benchmark, wl, case)


@pytest.mark.parametrize("wl, case", first_call_params(WORKLOADS))
def test_first_call(benchmark, wl, case):
    run_first_call(benchmark, wl, case)
