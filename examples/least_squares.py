"""Nonlinear least squares: fit a sum of two exponential decays to noisy data.

    python examples/least_squares.py

    y(t) = a1 exp(-k1 t) + a2 exp(-k2 t)

Two decays with similar rates are notoriously hard to tell apart, which makes
this a good test of the Jacobian: ``scipy.optimize.least_squares`` is given
``fa.jit(fa.jacobian(residuals))``, the exact Jacobian compiled once, and is
compared with its default finite-difference Jacobian (``jac="2-point"``).
The exact Jacobian at the solution also gives the parameters' standard errors.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import least_squares

import fastad as fa

NAMES = ("a1", "k1", "a2", "k2")
TRUE = np.array([3.0, 2.0, 1.5, 0.3])


def model(theta, t):
    a1, k1, a2, k2 = theta[0], theta[1], theta[2], theta[3]
    return a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t)


def residuals(theta, t, y):
    return model(theta, t) - y


def noisy_data(size: int, noise: float = 0.02, seed: int = 0):
    t = np.linspace(0.0, 10.0, size)
    y = model(TRUE, t) + noise * np.random.default_rng(seed).standard_normal(size)
    return t, y


def fit(jac, t, y, theta0, verbose: int):
    """Run least_squares; also count residual evaluations, finite differences included."""
    calls = 0

    def counted_residuals(theta, t, y):
        nonlocal calls
        calls += 1
        return residuals(theta, t, y)

    start = time.perf_counter()
    result = least_squares(counted_residuals, theta0, jac=jac, args=(t, y), method="trf",
                           xtol=1e-12, ftol=1e-12, gtol=1e-12, verbose=verbose)
    return result, calls, time.perf_counter() - start


def main(size: int = 2000, quiet: bool = False) -> dict:
    say = (lambda *a: None) if quiet else print
    t, y = noisy_data(size)
    theta0 = np.array([1.0, 1.0, 1.0, 0.1])  # a rough guess, rates in the wrong order of size
    say(f"fitting a1 exp(-k1 t) + a2 exp(-k2 t) to {len(t)} noisy points")

    # Step 1: the Jacobian of the residual vector, compiled.  With 4 parameters
    # and many residuals, mode="auto" picks forward mode (4 tangents, not `size`
    # cotangents).  The first call traces and compiles; later calls replay.
    jacobian = fa.jit(fa.jacobian(residuals))
    start = time.perf_counter()
    jacobian(theta0, t, y)
    say(f"trace + compile the Jacobian: {time.perf_counter() - start:.3f} s")

    # Step 2: fit twice, with the exact Jacobian and with finite differences.
    # verbose=2 makes SciPy print one line per iteration.
    runs = {}
    for label, jac in [("fastad", jacobian), ("2-point", "2-point")]:
        say(f"\njac = {label}:")
        runs[label] = fit(jac, t, y, theta0, verbose=0 if quiet else 2)

    # Step 3: compare.  Standard errors come from the Gauss-Newton covariance
    # s^2 (J^T J)^-1, with J the exact Jacobian at the solution.
    best = runs["fastad"][0]
    J = jacobian(best.x, t, y)
    dof = len(t) - len(best.x)
    covariance = (2 * best.cost / dof) * np.linalg.inv(J.T @ J)
    stderr = np.sqrt(np.diag(covariance))
    say(f"\n{'':<5}{'true':>8}{'fitted':>10}{'std err':>10}")
    for name, true, value, err in zip(NAMES, TRUE, best.x, stderr):
        say(f"{name:<5}{true:>8.3f}{value:>10.4f}{err:>10.4f}")

    # Both take the same steps: the difference is what each Jacobian costs.
    # "2-point" spends one residual evaluation per parameter on every Jacobian
    # and is accurate to about sqrt(machine epsilon); fastad's is exact.
    say(f"\n{'jac':<10}{'cost':>14}{'Jacobians':>11}{'residual evals':>16}{'time (s)':>10}")
    for label, (result, calls, seconds) in runs.items():
        say(f"{label:<10}{result.cost:>14.8f}{result.njev:>11}{calls:>16}{seconds:>10.3f}")

    # The fit must recover the true parameters to within a few standard errors.
    assert best.success, best.message
    z_scores = np.abs(best.x - TRUE) / stderr
    assert np.all(z_scores < 5), f"fitted parameters far from the truth: z = {z_scores}"
    return {"theta": best.x, "stderr": stderr, "z_scores": z_scores,
            "cost": {label: float(r.cost) for label, (r, _, _) in runs.items()},
            "residual_evals": {label: calls for label, (_, calls, _) in runs.items()},
            "seconds": {label: s for label, (_, _, s) in runs.items()}}


if __name__ == "__main__":
    main()
