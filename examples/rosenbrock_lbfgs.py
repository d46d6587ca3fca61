"""Rosenbrock in 1000 dimensions: fastad.minimize against a hand-written gradient.

    python examples/rosenbrock_lbfgs.py

The chained Rosenbrock function has one narrow, curved valley leading to its
minimum at x = (1, ..., 1).  We minimize it four ways and compare:

  1. L-BFGS-B with fastad's compiled gradient (``fa.minimize``),
  2. L-BFGS-B with a gradient derived and written by hand,
  3. Newton-CG with fastad's compiled gradient and Hessian-vector product,
  4. Newton-CG with the hand-written gradient and SciPy's hand-written
     Hessian-vector product (``scipy.optimize.rosen_hess_prod``).

fastad needs only ``rosenbrock`` itself; the hand-written rows need a
derivative someone worked out on paper.  Both should take the same path to
the same optimum, at about the same speed.

Timing note: L-BFGS-B spends most of its time in many tiny BLAS calls.  On a
machine busy with other work, OpenBLAS's threads can make those 10x slower;
``OPENBLAS_NUM_THREADS=1 python examples/rosenbrock_lbfgs.py`` gives stable
numbers.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import minimize, rosen_hess_prod

import fastad as fa


def rosenbrock(x):
    """Plain NumPy: fastad traces it as written."""
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_grad(x):
    """The gradient by hand: each x[i] appears in term i and in term i - 1."""
    inner = x[1:] - x[:-1] ** 2
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * x[:-1] * inner - 2.0 * (1.0 - x[:-1])
    grad[1:] += 200.0 * inner
    return grad


def progress(label: str, every: int, quiet: bool):
    """A SciPy callback that prints the objective every ``every`` iterations."""
    iteration = 0

    def callback(intermediate_result):
        nonlocal iteration
        iteration += 1
        if not quiet and iteration % every == 0:
            print(f"  {label:<22} iteration {iteration:>6}  f = {intermediate_result.fun:.3e}")
    return callback


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main(size: int = 1000, quiet: bool = False) -> dict:
    # The classic starting point (-1.2, 1, -1.2, 1, ...), far from the valley floor.
    x0 = np.resize([-1.2, 1.0], size)
    every = max(1, size // 2)
    say = (lambda *a: None) if quiet else print

    # Step 1: check the hand-written gradient against fastad's before trusting
    # the comparison (a wrong hand-written gradient is the usual bug).
    probe = np.random.default_rng(0).standard_normal(size)
    assert np.allclose(rosenbrock_grad(probe), fa.grad(rosenbrock)(probe))

    # Step 2: compile once.  The first call traces, differentiates and compiles;
    # every later call replays the compiled tape.
    compiled, compile_time = timed(lambda: fa.compile(rosenbrock))
    _, first_call = timed(lambda: compiled.value_and_grad(x0))
    say(f"Rosenbrock, n = {size}; fastad backend {fa.backends_available()[0]!r}, "
        f"trace + compile {compile_time + first_call:.3f} s")

    # Step 3: the four runs.  fa.minimize passes value-and-gradient as jac=True,
    # and for Newton-CG also the compiled Hessian-vector product as hessp.
    # Newton-CG's default xtol (1e-5) stops while still creeping along the
    # valley; a tighter one lets it reach the optimum.
    newton = {"xtol": 1e-10}
    runs = {
        "L-BFGS-B  fastad": lambda cb: fa.minimize(
            compiled, x0, method="L-BFGS-B", callback=cb),
        "L-BFGS-B  by hand": lambda cb: minimize(
            rosenbrock, x0, jac=rosenbrock_grad, method="L-BFGS-B", callback=cb),
        "Newton-CG fastad": lambda cb: fa.minimize(
            compiled, x0, method="Newton-CG", options=newton, callback=cb),
        "Newton-CG by hand": lambda cb: minimize(
            rosenbrock, x0, jac=rosenbrock_grad, hessp=rosen_hess_prod, method="Newton-CG",
            options=newton, callback=cb),
    }
    results = {}
    for label, run in runs.items():
        say(f"{label}:")
        results[label] = timed(lambda: run(progress(label, every, quiet)))

    # Step 4: the comparison.  All four must reach x = (1, ..., 1).
    say(f"\n{'method':<20}{'iterations':>12}{'f evals':>10}{'time (s)':>10}"
        f"{'f':>12}{'max |x - 1|':>14}")
    summary = {}
    for label, (result, seconds) in results.items():
        error = float(np.max(np.abs(result.x - 1.0)))
        say(f"{label:<20}{result.nit:>12}{result.nfev:>10}{seconds:>10.2f}"
            f"{result.fun:>12.2e}{error:>14.2e}")
        summary[label] = {"nit": result.nit, "seconds": seconds, "fun": float(result.fun),
                          "max_error": error, "success": bool(result.success)}
        assert result.success and error < 1e-3, f"{label} did not converge: {result.message}"
    return summary


if __name__ == "__main__":
    main()
