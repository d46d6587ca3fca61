"""Each example in examples/ runs at reduced size and converges."""
import contextlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    """Import examples/<name>.py by path: examples/ is not a package."""
    spec = importlib.util.spec_from_file_location(f"fastad_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_blas_thread():
    """SciPy's L-BFGS-B makes many tiny BLAS calls; on a busy machine OpenBLAS's
    threads wait on each other and make it 10-25x slower.  threadpoolctl comes
    with scikit-learn; without it the tests still pass, only slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        yield


def test_rosenbrock_reaches_the_optimum_like_scipy():
    result = load("rosenbrock_lbfgs").main(size=100, quiet=True)
    for label, run in result.items():
        assert run["success"] and run["max_error"] < 1e-3, label
    # The compiled gradient is the hand-written one, so L-BFGS-B takes
    # (nearly) the same path: iteration counts agree within a few percent.
    fastad, by_hand = result["L-BFGS-B  fastad"]["nit"], result["L-BFGS-B  by hand"]["nit"]
    assert abs(fastad - by_hand) <= 0.05 * by_hand


def test_logistic_regression_learns_the_digits():
    pytest.importorskip("sklearn")
    result = load("logistic_regression").main(size=600, quiet=True)
    assert result["loss"] < result["loss_start"] / 10
    assert result["loss"] == pytest.approx(result["loss_sklearn"], rel=1e-4)
    assert result["test_accuracy"] > 0.85  # chance is 0.10


def test_mlp_trained_with_adam_separates_the_spirals():
    result = load("mlp_adam").main(size=100, quiet=True, hidden=32, steps=400)
    assert result["loss"] < result["loss_start"] / 5
    assert result["accuracy"] > result["chance"] + 0.5


def test_least_squares_recovers_the_parameters():
    result = load("least_squares").main(size=200, quiet=True)
    assert np.all(result["z_scores"] < 5)
    assert result["cost"]["fastad"] == pytest.approx(result["cost"]["2-point"], rel=1e-6)
    # Exact Jacobians need no extra residual evaluations.
    assert result["residual_evals"]["fastad"] < result["residual_evals"]["2-point"]
