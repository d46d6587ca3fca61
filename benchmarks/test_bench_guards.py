"""Guards (issue 5): W1 with an ``if`` per term that always goes the same way,
side by side with plain W1, on each compiled fastad backend.  The benchmark
group holds both, so ``--benchmark-only`` prints them one above the other;
`report.py` prints the ratio (the target: guards cost at most 5 %)."""
import pytest

from suite import run_steady, steady_params
from workloads import rosenbrock_loop_guarded_workload, rosenbrock_loop_workload

SIZES = (100, 1000)
PAIRS = [(rosenbrock_loop_workload(n), rosenbrock_loop_guarded_workload(n)) for n in SIZES]


def _fastad_compiled(case) -> bool:
    return case.engine.startswith("fastad[") and getattr(case, "op", "grad") == "grad"


@pytest.mark.parametrize("wl, case", [p for plain, guarded in PAIRS
                                      for p in steady_params([plain, guarded])
                                      if _fastad_compiled(p.values[1])
                                      or p.values[1].engine == "numba_hand"],
                         ids=lambda v: getattr(v, "name", getattr(v, "label", None)))
def test_steady(benchmark, wl, case):
    run_steady(benchmark, wl, case)
    benchmark.group = f"guards n={wl.size} steady"
