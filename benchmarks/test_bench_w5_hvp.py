"""W5: Hessian-vector product of vectorized Rosenbrock, n=1000."""
import pytest

from suite import first_call_params, run_first_call, run_steady, steady_params
from workloads import rosenbrock_hvp_workload

WORKLOADS = [rosenbrock_hvp_workload(1000)]


@pytest.mark.parametrize("wl, case", steady_params(WORKLOADS))
def test_steady(benchmark, wl, case):
    run_steady(benchmark, wl, case)


@pytest.mark.parametrize("wl, case", first_call_params(WORKLOADS))
def test_first_call(benchmark, wl, case):
    run_first_call(benchmark, wl, case)
