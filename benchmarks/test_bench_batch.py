"""Batched evaluation (benchmarks/batch.py): per-sample gradients of W3 as one
batched call against a loop of compiled calls, and W2 batches over threads."""
import pytest

import batch

PROBLEMS = {problem.name: problem for problem in batch.all_problems()}
ROWS = [(name, label) for name, problem in PROBLEMS.items() for label in problem.rows]


@pytest.mark.parametrize("name, label", ROWS, ids=[f"{n}-{l}" for n, l in ROWS])
def test_batch(benchmark, name, label):
    problem = PROBLEMS[name]
    benchmark.group = f"{name}"
    call = problem.rows[label]
    assert problem.check(call()) <= 1e-6  # also keeps compiling out of the timing
    assert problem.check(benchmark(call)) <= 1e-6
