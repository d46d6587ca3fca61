"""A minimal surface on a 100 x 100 grid (10^4 unknowns), Newton with the sparse Hessian.

    python examples/minimal_surface.py [k]

The surface u(x, y) over the unit square with given boundary heights that
has the least area: minimize  sum sqrt(1 + u_x^2 + u_y^2) h^2  over the
interior heights, u_x and u_y forward differences.  The objective is plain
NumPy; each term couples a point with its right and upper neighbors, so the
Hessian has 7 nonzeros per row out of 10^4.

fastad finds that pattern on the traced tape, colors it acyclically (4
colors), and computes the whole Hessian from that many compiled
Hessian-vector products, recovered into a scipy.sparse CSR matrix:

    g = fa.compile(area)
    H = g.hessian(u, sparse=True)             # or fa.minimize(..., hess="sparse")

Compared here: SciPy's trust-constr given that sparse Hessian, the same
method given only Hessian-vector products (fastad's default), IPOPT given
the sparse Hessian (``method="ipopt"``, when cyipopt is installed:
``pip install "fastad[ipopt]"``), and, on a grid small enough for it, the
dense Hessian (n^2 memory, n passes): per call and as a whole solve, its
first call (compiling the batched pass over n seeds) timed apart.  At
n = 10^4 the dense path does not fit a small machine: the matrix alone is
800 MB, and its batched pass at n = 4900 already peaked at 9.4 GB.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import fastad as fa


def boundary(k: int) -> np.ndarray:
    """The (k+2) x (k+2) heights: the boundary's, zero inside."""
    s = np.linspace(0.0, 1.0, k + 2)
    b = np.zeros((k + 2, k + 2))
    b[0, :] = np.sin(np.pi * s)
    b[-1, :] = 0.5 * np.sin(2 * np.pi * s)
    b[:, 0] = 0.2 * s
    b[:, -1] = 0.2 * s
    return b


def area(u: np.ndarray, edge: np.ndarray) -> float:
    """The surface's area; ``u`` the k*k interior heights."""
    k = edge.shape[0] - 2
    h = 1.0 / (k + 1)
    full = np.pad(u.reshape(k, k), 1) + edge
    ux = (full[1:, :-1] - full[:-1, :-1]) / h
    uy = (full[:-1, 1:] - full[:-1, :-1]) / h
    return np.sum(np.sqrt(1.0 + ux ** 2 + uy ** 2)) * h * h


def solve(k: int, hess: str | None, tol: float = 1e-9) -> tuple[float, object]:
    edge = boundary(k)
    u0 = np.zeros(k * k)
    kwargs = {"hess": hess} if hess else {}
    start = time.perf_counter()
    result = fa.minimize(area, u0, args=(edge,), method="trust-constr",
                         options={"gtol": tol, "maxiter": 1000}, **kwargs)
    return time.perf_counter() - start, result


def solve_dense(k: int, tol: float = 1e-9) -> tuple[float, object]:
    edge = boundary(k)
    g = fa.compile(area)
    start = time.perf_counter()
    result = fa.minimize(g, np.zeros(k * k), args=(edge,), method="trust-constr",
                         hess=lambda u, e: g.hessian(u, e), options={"gtol": tol, "maxiter": 1000})
    return time.perf_counter() - start, result


def best(call, repeats: int = 20) -> float:
    """The fastest of ``repeats`` calls, in seconds (the machine may be busy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main(k: int = 100) -> None:
    edge = boundary(k)
    u = np.zeros(k * k)
    s = fa.sparsity(area)(u, edge)
    print(f"n = {k * k}: Hessian {s.hessian.nnz} nonzeros, {s.ncolors['hessian']} "
          f"{s.hessian_coloring} colors (most nonzeros in a row: "
          f"{s.lower_bounds['hessian']})")
    g = fa.compile(area)
    g.hessian(u, edge, sparse=True)
    g(u, edge)
    per_hessian = best(lambda: g.hessian(u, edge, sparse=True))
    per_gradient = best(lambda: g(u, edge))
    print(f"sparse Hessian {per_hessian * 1e3:.2f} ms per call, gradient "
          f"{per_gradient * 1e3:.3f} ms ({per_hessian / per_gradient:.0f}x)")
    for label, hess in (("trust-constr, sparse Hessian", "sparse"),
                        ("trust-constr, Hessian-vector products", None)):
        seconds, r = solve(k, hess)
        print(f"{label:40s} {seconds:7.2f} s  {r.nit:4d} iterations  area {r.fun:.10f}  "
              f"optimality {r.optimality:.1e}")
    try:
        import cyipopt  # noqa: F401
        start = time.perf_counter()
        r = fa.minimize(area, np.zeros(k * k), args=(edge,), method="ipopt",
                        options={"tol": 1e-9})
        print(f"{'IPOPT, sparse Hessian':40s} {time.perf_counter() - start:7.2f} s  "
              f"{r.nfev:4d} evaluations  area {r.fun:.10f}  {r.message}")
    except ImportError:
        print("IPOPT: not installed (pip install \"fastad[ipopt]\")")
    small = min(k, 30)
    edge, u = boundary(small), np.zeros(small * small)
    dense = fa.compile(area)
    start = time.perf_counter()
    full = dense.hessian(u, edge)
    first = time.perf_counter() - start
    g = fa.compile(area)
    sparse = g.hessian(u, edge, sparse=True)
    assert np.allclose(sparse.toarray(), full, rtol=1e-12, atol=1e-12)
    print(f"n = {small * small}: dense Hessian {best(lambda: dense.hessian(u, edge), 5) * 1e3:.2f} "
          f"ms per call (first call, compiling: {first:.2f} s), sparse "
          f"{best(lambda: g.hessian(u, edge, sparse=True)) * 1e3:.3f} ms")
    for label, run in (("sparse Hessian", lambda: solve(small, "sparse")),
                       ("dense Hessian", lambda: solve_dense(small))):
        seconds, r = run()
        print(f"n = {small * small}, trust-constr, {label:22s} {seconds:7.2f} s  {r.nit:4d} "
              f"iterations  area {r.fun:.10f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
