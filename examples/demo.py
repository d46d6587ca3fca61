"""The main job: trace a NumPy function, look at its tape, differentiate it,
check the gradient, and use the compiled gradient in an optimization loop."""
import time

import numpy as np
from scipy.optimize import minimize

import fastad as fa


def rosenbrock(x):
    """Plain NumPy, no edits for fastad."""
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def main() -> None:
    x0 = np.full(4, -1.0)
    print("The tape fastad records for rosenbrock on a vector of 4:")
    print(fa.make_tape(rosenbrock)(x0))

    g = fa.grad(rosenbrock)(x0)
    print("\ngradient at x0:", g)
    fa.check_grads(rosenbrock, (x0,), order=2)
    print("check_grads: first and second derivatives agree with finite differences")

    n = 1000
    x0 = np.full(n, -1.0)
    compiled = fa.compile(rosenbrock)          # traced and compiled on the first call
    start = time.perf_counter()
    result = minimize(compiled.value_and_grad, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000})
    elapsed = time.perf_counter() - start
    print(f"\nL-BFGS-B on rosenbrock, n={n}, with fastad.compile (backend: "
          f"{fa.backends_available()[0]}):")
    print(f"  f = {result.fun:.3e} after {result.nit} iterations and {result.nfev} "
          f"gradient evaluations, {elapsed:.2f} s including tracing and compilation")
    print(f"  max |x - 1| = {np.max(np.abs(result.x - 1.0)):.2e}")
    assert result.success and np.allclose(result.x, 1.0, atol=1e-4)


if __name__ == "__main__":
    main()
