"""W3: MLP 784-256-10 loss, gradient w.r.t. all weights."""
import pytest

from suite import first_call_params, run_first_call, run_steady, steady_params
from workloads import mlp_workload

WORKLOADS = [mlp_workload()]


@pytest.mark.parametrize("wl, case", steady_params(WORKLOADS))
def test_steady(benchmark, wl, case):
    run_steady(benchmark, wl, case)


@pytest.mark.parametrize("wl, case", first_call_params(WORKLOADS))
def test_first_call(benchmark, wl, case):
    run_first_call(benchmark, wl, case)
