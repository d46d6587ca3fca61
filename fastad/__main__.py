"""``python -m fastad``: a short tour.  Traces a NumPy function and prints its
tape, checks the gradient, minimizes with the compiled gradient, and times
the compiled gradient against eager tracing."""
import time

import numpy as np

import fastad as fa


def rosenbrock(x):
    """Plain NumPy, no edits for fastad."""
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _per_call(fn, x, seconds=0.2):
    fn(x)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(x)
        reps += 1
    return (time.perf_counter() - start) / reps


def _progress(g):
    """A SciPy callback printing the iteration, objective and gradient norm at
    iterations 1, 2, 5, 10, 20, 50, ... (one compiled value_and_grad each)."""
    state = {"k": 0, "next": 1}

    def callback(xk, *_):
        state["k"] += 1
        if state["k"] == state["next"]:
            value, grad = g.value_and_grad(xk)
            print(f"   {state['k']:>9}  {value:10.3e}  {np.linalg.norm(grad):10.3e}", flush=True)
            step = state["next"]
            state["next"] = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return callback


def main() -> None:
    x0 = np.full(4, -1.0)
    print("1. The tape fastad records for rosenbrock(x), x of length 4:\n")
    print(fa.make_tape(rosenbrock)(x0))

    print("\n2. Its gradient at x = -1:", fa.grad(rosenbrock)(x0))
    fa.check_grads(rosenbrock, (x0,), order=2)
    print("   check_grads: first and second derivatives agree with finite differences")

    n = 1000
    backend = fa.backends_available()[0]
    g = fa.compile(rosenbrock)
    print(f"\n3. fastad.minimize (L-BFGS-B, compiled gradient, backend {backend!r}), n = {n}:")
    print(f"   {'iteration':>9}  {'objective':>10}  {'|gradient|':>10}")
    start = time.perf_counter()
    result = fa.minimize(g, np.full(n, -1.0), method="L-BFGS-B", options={"maxiter": 10000},
                         callback=_progress(g))
    elapsed = time.perf_counter() - start
    print(f"   f = {result.fun:.3e} after {result.nit} iterations, {result.nfev} gradient "
          f"evaluations, {elapsed:.2f} s including tracing and compilation")
    print(f"   max |x - 1| = {np.max(np.abs(result.x - 1.0)):.2e}")
    if not (result.success and np.allclose(result.x, 1.0, atol=1e-4)):
        raise SystemExit("the optimization did not converge")

    x = np.random.default_rng(0).standard_normal(n)
    compiled, eager = _per_call(g, x), _per_call(fa.grad(rosenbrock), x)
    print(f"\n4. One gradient of rosenbrock, n = {n}: compiled {compiled * 1e6:.1f} us, "
          f"eager tracing {eager * 1e6:.1f} us ({eager / compiled:.0f}x)")


if __name__ == "__main__":
    main()
