"""Sparse derivatives: pattern detection and coloring time, colors against the
lower bound, and the per-call cost of the compiled sparse Hessian (Jacobian)
against one compiled gradient (function call).

    python benchmarks/sparse_derivatives.py [--sizes 10000,100000] [--backends c,numba]

Workloads (n variables):
  rosenbrock   chained (extended) Rosenbrock, Hessian (tridiagonal)
  grid         2-D grid energy, 5-point Laplacian quadratic form plus a
               quartic on a sqrt(n) x sqrt(n) grid, Hessian (5-point stencil)
  surface      minimal-surface area on a grid, Hessian (7 nonzeros per row)
  stencil3d    3-D 7-point stencil energy on a cbrt(n)^3 grid with a log
               barrier, Hessian (7 nonzeros per row; not tuned for)
  landau       2-D Ginzburg-Landau energy of a two-component field on a
               sqrt(n/2)^2 grid, Hessian (6 nonzeros per row; not tuned for)
  mesh         P1 finite-element energy on a triangle mesh of a sqrt(n)^2
               grid, nodes numbered in a shuffled order, by index-array
               gathers, Hessian (7 nonzeros per row; not tuned for)
  broyden      least squares of Broyden's banded residuals (each on x[i-5],
               ..., x[i+1]), Hessian (13 nonzeros per row, a band; not
               tuned for)
  rodchain     a periodic 1-D chain written with np.diff and np.roll: a
               bending term sqrt(1 + (second difference)^2) and a coupling
               (x_i x_{i+1} - x_{i-1})^2, Hessian (a band of 5 that wraps
               around; not tuned for)
  plaplace     the 2-D p-Laplacian energy (p = 3) on a sqrt(n) x sqrt(n)
               grid, Hessian (7 nonzeros per row; not tuned for)
  rods         a chain of n/3 points in 3-D with stretching and bending,
               Hessian (3 x 3 blocks, 15 nonzeros per row; not tuned for)
  diag9        a 2-D grid energy with a 9-point stencil: log(1 + d^2) of the
               differences along both axes, sqrt(1 + d1^2 + d2^2) of each
               cell's diagonals, exp(u / 2) - u, Hessian (9 nonzeros per row;
               not tuned for)
  bdqrtic      CUTEst's BDQRTIC: a band of 7 plus the last variable in every
               term (an arrowhead), Hessian (9 nonzeros per row, one dense
               row and column; not tuned for)
  collocation  trapezoidal collocation residuals of x' = -x^3 + sin t,
               Jacobian (n-1 x n, bidiagonal)
  freetime     the same with a free final time (a dense column) and an
               integral constraint (a dense row), Jacobian (n-1 x n): taken
               by forward and reverse passes together (the colors column:
               passes in all; the bound: the one-directional colorings')

Each line: the time of ``fa.sparsity`` (trace, pattern, coloring), the
colors and the lower bound (the most nonzeros in a row), the best of
``--repeats`` calls of the compiled sparse derivative (pattern already kept)
and of the compiled gradient (or, for the Jacobian, the compiled function),
and their ratio.  Dense Hessians are timed where n <= 4000 (n^2 doubles).

With CasADi installed (``pip install casadi``), each workload is written
again in its symbolic API, the sparse Hessian (Jacobian) taken by
``casadi.hessian`` (``casadi.jacobian``), which detects and colors the
pattern itself, and the compiled ``casadi.Function`` timed per call from a
NumPy array, in both of its graph types: SX (scalar expressions, run by its
virtual machine) and MX (matrix-valued operations); its setup (expression,
derivative, Function) is reported too.  CasADi returns its own sparse DM,
not converted here; fastad's time includes the scipy CSR matrix.  With JAX
installed, its dense ``jax.hessian`` (``jax.jacfwd``) under ``jax.jit`` is
timed where n <= 4000.

``--breakdown`` prints instead where each compiled sparse Hessian's call
goes: the product in the form the plan kept and in each unbatched form (the
split form's shared call and one seed's call too), the recovery's
subtractions and gather, and the CSR result, next to the whole call and the
gradient (a star coloring's "gather" is its whole assembly, CSR included).
The parts are timed alone, their data in cache; inside a call the recovery
reads the product and its tables from memory and costs more.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastad as fa  # noqa: E402


def rosenbrock(x, xp=np):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def grid(x, xp=np):
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    lap = 4.0 * u[1:-1, 1:-1] - u[:-2, 1:-1] - u[2:, 1:-1] - u[1:-1, :-2] - u[1:-1, 2:]
    return 0.5 * xp.sum(lap * u[1:-1, 1:-1]) + 0.25 * xp.sum(u ** 4)


def surface(x, xp=np):
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    dx = u[1:, :-1] - u[:-1, :-1]
    dy = u[:-1, 1:] - u[:-1, :-1]
    return xp.sum(xp.sqrt(1.0 + dx ** 2 + dy ** 2))


def stencil3d(x, xp=np):
    """Differences to the six neighbors squared, a quartic and a log barrier
    keeping each value above -2: written after the others were measured."""
    k = int(round(x.size ** (1 / 3)))
    u = x.reshape(k, k, k)
    d0, d1, d2 = u[1:] - u[:-1], u[:, 1:] - u[:, :-1], u[:, :, 1:] - u[:, :, :-1]
    return (xp.sum(d0 ** 2) + xp.sum(d1 ** 2) + xp.sum(d2 ** 2) + 0.1 * xp.sum(u ** 4)
            - xp.sum(xp.log(2.0 + u)))


def landau(x, xp=np):
    """A real two-component (Ginzburg-Landau) order parameter psi = (a, b) on a
    grid: the squared differences of both components along both axes, and
    the potential (1 - |psi|^2)^2 coupling a and b at each point.  Added
    after the 3-D stencil's work was measured, to see whether it carries."""
    k = int(round(np.sqrt(x.size // 2)))
    u = x.reshape(2, k, k)
    rho = u[0] ** 2 + u[1] ** 2
    return (0.5 * (xp.sum((u[:, 1:] - u[:, :-1]) ** 2) + xp.sum((u[:, :, 1:] - u[:, :, :-1]) ** 2))
            + 0.25 * xp.sum((1.0 - rho) ** 2))


@functools.lru_cache(maxsize=4)
def triangles(n):
    """A k x k grid of nodes (k = sqrt(n)), each square cut into two right
    triangles, the nodes numbered in a shuffled order (so the pattern is
    no band): (t, 3) node indices, the right angle's node first."""
    k = int(round(np.sqrt(n)))
    node = np.random.default_rng(1).permutation(k * k).reshape(k, k)
    a, b, c, d = node[:-1, :-1], node[:-1, 1:], node[1:, :-1], node[1:, 1:]
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                           np.stack([d, c, b], -1).reshape(-1, 3)])


def mesh(x, xp=np):
    """A P1 finite-element energy of a scalar field on a triangle mesh: each
    triangle's area times sqrt(1 + |grad u|^2) (the field's gradient from
    its three nodes, gathered by index arrays) plus a quartic at the nodes.
    Written after the work on `landau`, as a workload nothing was tuned
    for: gathers and scatter-adds rather than slices, nodes numbered out
    of order."""
    tri = triangles(x.size)
    h = 1.0 / (np.sqrt(x.size) - 1.0)
    u0, u1, u2 = x[tri[:, 0]], x[tri[:, 1]], x[tri[:, 2]]
    gx, gy = (u1 - u0) / h, (u2 - u0) / h
    return 0.5 * h * h * xp.sum(xp.sqrt(1.0 + gx ** 2 + gy ** 2)) + 0.25 * h * h * xp.sum(x ** 4)


#: Broyden's banded function's band: residual i reads x[i - LOWER] ... x[i + UPPER]
LOWER, UPPER = 5, 1


def broyden(x, xp=np):
    """The sum of squares of Broyden's banded residuals (Moré, Garbow and
    Hillstrom's test problem 31): r_i = x_i (2 + 5 x_i^2) + 1 - sum over
    j in [i-5, i+1], j != i, of x_j (1 + x_j).  A 1-D chained objective with
    a wider band than Rosenbrock's (Hessian entries up to 6 apart, 13 per
    row), written after the work on `mesh` as a workload nothing was tuned
    for."""
    n = x.size
    s = x * (1.0 + x)
    padded = xp.concatenate([xp.zeros(LOWER), s, xp.zeros(UPPER)])
    near = padded[:n]
    for d in range(1, LOWER + UPPER + 1):
        if d != LOWER:
            near = near + padded[d:d + n]
    r = x * (2.0 + 5.0 * x ** 2) + 1.0 - near
    return xp.sum(r ** 2)


def rodchain(x, xp=np):
    """A periodic chain: the bending energy sqrt(1 + (x_{i+2} - 2 x_{i+1} +
    x_i)^2) of the open chain's second differences (np.diff) and a coupling
    of each element with both neighbors around the ring (np.roll, a
    permutation gather), Hessian entries up to 2 apart and in the corners.
    Written after the work on the adjoints of shifted slices, as a workload
    nothing was tuned for."""
    d2 = xp.diff(x, 2)
    w = x * xp.roll(x, -1) - xp.roll(x, 1)
    return xp.sum(xp.sqrt(1.0 + d2 ** 2)) + 0.5 * xp.sum(w ** 2)


#: the p-Laplacian's exponent and regularization
P_EXPONENT, P_EPS = 3.0, 0.1


def plaplace(x, xp=np):
    """The 2-D p-Laplacian energy (p = 3) on a sqrt(n) x sqrt(n) grid: each
    cell's (eps + |grad u|^2)^(p/2) / p from forward differences, minus a
    load term.  Written after the work on the folded products, as a
    workload nothing was tuned for (a real power of a sum of squares)."""
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    dx = u[1:, :-1] - u[:-1, :-1]
    dy = u[:-1, 1:] - u[:-1, :-1]
    return (xp.sum((P_EPS + dx ** 2 + dy ** 2) ** (P_EXPONENT / 2)) / P_EXPONENT
            - 0.1 * xp.sum(x))


def rods(x, xp=np):
    """A chain of n/3 points in 3-D (x flat, C order): each segment's
    stretching (|d_i| - 1)^2 and the bending 1 - cos of the angle between
    neighboring segments, d_i . d_{i+1} / (|d_i| |d_{i+1}|): sums over the
    coordinate axis, Hessian blocks of 3 x 3 coupling points up to two apart
    (15 nonzeros per row).  Written after the work on the folded products,
    as a workload nothing was tuned for."""
    p = x.reshape(-1, 3)
    d = p[1:] - p[:-1]
    length = xp.sqrt(xp.sum(d ** 2, axis=1))
    cosine = xp.sum(d[1:] * d[:-1], axis=1) / (length[1:] * length[:-1])
    return xp.sum((length - 1.0) ** 2) + 0.5 * xp.sum(1.0 - cosine)


def diag9(x, xp=np):
    """A 2-D grid energy with a 9-point stencil: a Lorentzian penalty
    log(1 + d^2) of the differences along both axes, the area-like
    sqrt(1 + d1^2 + d2^2) of each cell's two diagonal differences, and an
    exponential potential exp(u / 2) - u at each point.  Hessian entries
    with all 8 neighbors (9 nonzeros per row).  Written after the work on
    recomputing cheap values in Numba's loops, as a workload nothing was
    tuned for."""
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    dx, dy = u[:, 1:] - u[:, :-1], u[1:] - u[:-1]
    d1, d2 = u[1:, 1:] - u[:-1, :-1], u[1:, :-1] - u[:-1, 1:]
    return (xp.sum(xp.log(1.0 + dx ** 2)) + xp.sum(xp.log(1.0 + dy ** 2))
            + xp.sum(xp.sqrt(1.0 + d1 ** 2 + d2 ** 2)) + xp.sum(xp.exp(0.5 * x) - x))


def bdqrtic(x, xp=np):
    """CUTEst's BDQRTIC: a band of 7 and the last variable in every term (an
    arrowhead: one dense row and column, whose vertex the colorings give a
    color of its own, `coloring.hubs`; not tuned for)."""
    n = x.size
    return xp.sum((3.0 - 4.0 * x[:n - 4]) ** 2
                  + (x[:n - 4] ** 2 + 2 * x[1:n - 3] ** 2 + 3 * x[2:n - 2] ** 2
                     + 4 * x[3:n - 1] ** 2 + 5 * x[-1] ** 2) ** 2)


def collocation(x, xp=np):
    h = 0.01
    rhs = -x ** 3 + xp.sin(xp.arange(x.size) * h)
    return x[1:] - x[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])


def freetime(x, xp=np):
    """Trapezoidal collocation of s' = -s^3 + sin(s) with a free final time
    (the last variable, read by every residual: a dense column) and an
    integral constraint (a dense row): about n colors in either direction,
    a few split between both (`fastad.sparse.bidirectional`)."""
    s, t = x[:-1], x[-1]
    h = t / (s.size - 1)
    rhs = -s ** 3 + xp.sin(s)
    r = s[1:] - s[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])
    return xp.concatenate([r, (h * xp.sum(s ** 2) - 1.0)[None]])


def casadi_workload(name, x, ca):
    """The workload in CasADi's symbolic API, on its symbol x (n x 1): the
    objective (a scalar) or the residuals.  CasADi's reshape is column-major:
    the transpose gives NumPy's C-order grid."""
    n = x.shape[0]
    if name == "rosenbrock":
        return ca.sum1(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    if name in ("grid", "surface"):
        k = int(round(np.sqrt(n)))
        u = ca.reshape(x, k, k).T
        if name == "grid":
            lap = (4.0 * u[1:-1, 1:-1] - u[:-2, 1:-1] - u[2:, 1:-1] - u[1:-1, :-2]
                   - u[1:-1, 2:])
            return (0.5 * ca.sum1(ca.sum2(lap * u[1:-1, 1:-1]))
                    + 0.25 * ca.sum1(ca.sum2(u ** 4)))
        dx = u[1:, :-1] - u[:-1, :-1]
        dy = u[:-1, 1:] - u[:-1, :-1]
        return ca.sum1(ca.sum2(ca.sqrt(1.0 + dx ** 2 + dy ** 2)))
    if name == "stencil3d":  # x[i, j, l] at i*k*k + j*k + l, C order, by index lists
        k = int(round(n ** (1 / 3)))
        idx = np.arange(n).reshape(k, k, k)
        total = 0.1 * ca.sum1(x ** 4) - ca.sum1(ca.log(2.0 + x))
        for a, b in ((idx[1:], idx[:-1]), (idx[:, 1:], idx[:, :-1]),
                     (idx[:, :, 1:], idx[:, :, :-1])):
            d = x[a.reshape(-1).tolist()] - x[b.reshape(-1).tolist()]
            total = total + ca.sum1(d ** 2)
        return total
    if name == "mesh":
        tri = triangles(n)
        h = 1.0 / (np.sqrt(n) - 1.0)
        u0, u1, u2 = (x[tri[:, v].tolist()] for v in range(3))
        gx, gy = (u1 - u0) / h, (u2 - u0) / h
        return 0.5 * h * h * ca.sum1(ca.sqrt(1.0 + gx ** 2 + gy ** 2)) + 0.25 * h * h * ca.sum1(x ** 4)
    if name == "landau":  # x[c, i, j] at c*k*k + i*k + j, by index lists
        k = int(round(np.sqrt(n // 2)))
        idx = np.arange(n).reshape(2, k, k)
        total = 0
        for a, b in ((idx[:, 1:], idx[:, :-1]), (idx[:, :, 1:], idx[:, :, :-1])):
            d = x[a.reshape(-1).tolist()] - x[b.reshape(-1).tolist()]
            total = total + 0.5 * ca.sum1(d ** 2)
        rho = x[idx[0].reshape(-1).tolist()] ** 2 + x[idx[1].reshape(-1).tolist()] ** 2
        return total + 0.25 * ca.sum1((1.0 - rho) ** 2)
    if name == "broyden":
        s = x * (1.0 + x)
        padded = ca.vertcat(ca.DM.zeros(LOWER), s, ca.DM.zeros(UPPER))
        near = padded[:n]
        for d in range(1, LOWER + UPPER + 1):
            if d != LOWER:
                near = near + padded[d:d + n]
        return ca.sum1((x * (2.0 + 5.0 * x ** 2) + 1.0 - near) ** 2)
    if name == "rodchain":  # np.roll by index lists
        d = x[1:] - x[:-1]
        d2 = d[1:] - d[:-1]
        ahead, behind = np.roll(np.arange(n), -1).tolist(), np.roll(np.arange(n), 1).tolist()
        w = x * x[ahead] - x[behind]
        return ca.sum1(ca.sqrt(1.0 + d2 ** 2)) + 0.5 * ca.sum1(w ** 2)
    if name == "plaplace":
        k = int(round(np.sqrt(n)))
        u = ca.reshape(x, k, k).T
        dx = u[1:, :-1] - u[:-1, :-1]
        dy = u[:-1, 1:] - u[:-1, :-1]
        return (ca.sum1(ca.sum2((P_EPS + dx ** 2 + dy ** 2) ** (P_EXPONENT / 2))) / P_EXPONENT
                - 0.1 * ca.sum1(x))
    if name == "diag9":
        k = int(round(np.sqrt(n)))
        u = ca.reshape(x, k, k).T
        dx, dy = u[:, 1:] - u[:, :-1], u[1:, :] - u[:-1, :]
        d1, d2 = u[1:, 1:] - u[:-1, :-1], u[1:, :-1] - u[:-1, 1:]
        return (ca.sum1(ca.sum2(ca.log(1.0 + dx ** 2))) + ca.sum1(ca.sum2(ca.log(1.0 + dy ** 2)))
                + ca.sum1(ca.sum2(ca.sqrt(1.0 + d1 ** 2 + d2 ** 2)))
                + ca.sum1(ca.exp(0.5 * x) - x))
    if name == "rods":  # point i's coordinates at 3i, 3i + 1, 3i + 2, by index lists
        m = n // 3
        d = [x[(3 * np.arange(1, m) + c).tolist()] - x[(3 * np.arange(m - 1) + c).tolist()]
             for c in range(3)]
        length = ca.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        dot = sum(dc[1:] * dc[:-1] for dc in d)
        cosine = dot / (length[1:] * length[:-1])
        return ca.sum1((length - 1.0) ** 2) + 0.5 * ca.sum1(1.0 - cosine)
    if name == "bdqrtic":
        return ca.sum1((3.0 - 4.0 * x[:n - 4]) ** 2
                       + (x[:n - 4] ** 2 + 2 * x[1:n - 3] ** 2 + 3 * x[2:n - 2] ** 2
                          + 4 * x[3:n - 1] ** 2 + 5 * x[n - 1] ** 2) ** 2)
    if name == "freetime":
        s, t = x[:n - 1], x[n - 1]
        h = t / (n - 2)
        rhs = -s ** 3 + ca.sin(s)
        r = s[1:] - s[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])
        return ca.vertcat(r, h * ca.sum1(s ** 2) - 1.0)
    h = 0.01
    rhs = -x ** 3 + np.sin(np.arange(n) * h)
    return x[1:] - x[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])


def casadi_times(name, kind, x, repeats):
    """Setup and per-call seconds of CasADi's sparse derivative in SX and in
    MX, and its number of nonzeros; None without CasADi."""
    try:
        import casadi as ca
    except ImportError:
        return None
    out = {}
    for graph in ("SX", "MX"):
        start = CLOCK()
        sym = getattr(ca, graph).sym("x", x.size)
        expr = casadi_workload(name, sym, ca)
        deriv = ca.hessian(expr, sym)[0] if kind == "hessian" else ca.jacobian(expr, sym)
        fn = ca.Function(f"{name}_{kind}", [sym], [deriv])
        fn(x)
        setup = CLOCK() - start
        out[graph] = (setup, best(lambda: fn(x), repeats), deriv.nnz())
    return out


def jax_dense_time(name, kind, x, repeats):
    """Per-call seconds of JAX's jitted dense Hessian (Jacobian); None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    f = WORKLOADS[name][0]
    derivative = jax.jit(jax.hessian(lambda v: f(v, jnp)) if kind == "hessian"
                         else jax.jacfwd(lambda v: f(v, jnp)))
    xj = jnp.asarray(x)
    derivative(xj).block_until_ready()
    return best(lambda: derivative(xj).block_until_ready(), repeats)


WORKLOADS = {"rosenbrock": (rosenbrock, "hessian"), "grid": (grid, "hessian"),
             "surface": (surface, "hessian"), "stencil3d": (stencil3d, "hessian"),
             "landau": (landau, "hessian"), "mesh": (mesh, "hessian"),
             "broyden": (broyden, "hessian"), "rodchain": (rodchain, "hessian"),
             "plaplace": (plaplace, "hessian"), "rods": (rods, "hessian"),
             "diag9": (diag9, "hessian"), "bdqrtic": (bdqrtic, "hessian"),
             "collocation": (collocation, "jacobian"), "freetime": (freetime, "jacobian")}


#: the clock of `best`: wall time, or with --clock cpu the process's CPU time
#: (user and system), which leaves out the time other processes of a busy
#: machine hold the core (a call of several ms is then preempted in most
#: repeats, one of 0.1 ms rarely, and the ratios of the two grow)
CLOCK = time.perf_counter


def best(call, repeats):
    times = []
    for _ in range(repeats):
        start = CLOCK()
        call()
        times.append(CLOCK() - start)
    return min(times)


def square(n):
    k = int(round(np.sqrt(n)))
    return k * k


def two_squares(n):
    k = int(round(np.sqrt(n / 2)))
    return 2 * k * k


def cube(n):
    k = int(round(n ** (1 / 3)))
    return k ** 3


def triples(n):
    return 3 * (n // 3)


#: the sizes a workload takes near n
SIZES = {"grid": square, "surface": square, "mesh": square, "stencil3d": cube,
         "landau": two_squares, "plaplace": square, "rods": triples, "diag9": square}


def run(sizes, backends, repeats, out, with_casadi=True, workloads=tuple(WORKLOADS)):
    print(f"# sparse derivatives, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"{'CPU' if CLOCK is time.process_time else 'wall'} time", file=out)
    print(f"{'workload':12s} {'n':>7s} {'what':8s} {'detect+color':>12s} {'colors':>6s} "
          f"{'bound':>5s} {'backend':7s} {'sparse/call':>11s} {'grad/call':>10s} {'ratio':>6s} "
          f"{'dense/call':>10s}", file=out)
    fa.sparsity(rosenbrock)(np.ones(100))  # Numba's coloring loaded before anything is timed
    for name in workloads:
        f, kind = WORKLOADS[name]
        for n in sizes:
            n = SIZES.get(name, lambda n: n)(n)
            x = np.random.default_rng(0).uniform(-1, 1, n)
            start = CLOCK()
            s = fa.sparsity(f)(x)
            detect = CLOCK() - start
            if kind == "hessian":
                colors, bound = s.ncolors["hessian"], s.lower_bounds["hessian"]
            elif s.jacobian_mode == "fwd+rev":  # passes in all; the one-directional bound
                colors, bound = s.ncolors["jacobian"], min(s.lower_bounds.values())
            else:
                side = "columns" if s.jacobian_mode == "fwd" else "rows"
                colors, bound = s.ncolors[side], s.lower_bounds[side]
            for backend in backends:
                if kind == "hessian":
                    g = fa.compile(f, backend=backend)
                    g.hessian(x, sparse=True)
                    g(x)
                    per = best(lambda: g.hessian(x, sparse=True), repeats)
                    base = best(lambda: g(x), repeats)
                    dense = ""
                    if n <= 4000:
                        g.hessian(x)
                        dense = f"{best(lambda: g.hessian(x), max(3, repeats // 5)) * 1e3:8.2f}ms"
                else:
                    g = fa.jit(f, backend=backend)
                    g.jacobian(x, sparse=True)
                    g(x)
                    per = best(lambda: g.jacobian(x, sparse=True), repeats)
                    base = best(lambda: g(x), repeats)
                    dense = ""
                print(f"{name:12s} {n:7d} {kind:8s} {detect * 1e3:10.1f}ms {colors:6d} {bound:5d} "
                      f"{backend:7s} {per * 1e3:9.3f}ms {base * 1e3:8.4f}ms {per / base:6.1f} "
                      f"{dense:>10s}", file=out, flush=True)
            if n <= 4000:
                jax_time = jax_dense_time(name, kind, x, repeats)
                if jax_time is not None:
                    print(f"{name:12s} {n:7d} {kind:8s} {'':12s} {'':6s} {'':5s} {'jax':7s} "
                          f"{'':11s} {'':10s} {'':6s} {jax_time * 1e3:8.2f}ms (dense, jit)",
                          file=out, flush=True)
            if with_casadi:
                theirs = casadi_times(name, kind, x, repeats)
                for graph, (setup, call, nnz) in (theirs or {}).items():
                    print(f"{name:12s} {n:7d} {kind:8s} {setup * 1e3:10.1f}ms {'':6s} {'':5s} "
                          f"{'casadi' + graph:7s} {call * 1e3:9.3f}ms {'':10s} {'':6s} "
                          f"{'':10s} (setup; {nnz} nonzeros)", file=out, flush=True)


def breakdown(sizes, backends, repeats, out, workloads=tuple(WORKLOADS)):
    """Where a compiled sparse Hessian's call goes (``--breakdown``): per
    workload, size and backend, the best of ``repeats`` calls of the whole
    Hessian, of the gradient, of the product in the form the plan kept and
    in each unbatched form (split: its shared call and one seed's call), of
    the recovery's subtractions and gather on the product just computed (an
    acyclic coloring's; a star coloring's gather alone) and of the CSR
    result made from the values."""
    from fastad.sparse import csr, derivatives, recovery

    print(f"# sparse Hessian breakdown, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"{'CPU' if CLOCK is time.process_time else 'wall'} time, ms per call", file=out)
    print(f"{'workload':10s} {'n':>6s} {'backend':7s} {'p':>2s} {'form':8s} {'hessian':>8s} "
          f"{'grad':>6s} {'ratio':>5s} {'product':>8s} {'per_seed':>8s} {'single':>7s} "
          f"{'split':>7s} {'shared':>6s} {'seed':>6s} {'minus':>6s} {'gather':>6s} "
          f"{'csr':>5s}", file=out)
    for name in workloads:
        f, kind = WORKLOADS[name]
        if kind != "hessian":
            continue
        for n in sizes:
            n = SIZES.get(name, lambda n: n)(n)
            x = np.random.default_rng(0).uniform(-1, 1, n)
            for backend in backends:
                g = fa.compile(f, backend=backend)
                g(x)
                for _ in range(2 + len(derivatives.UNBATCHED_FORMS) * 3):  # the form chosen
                    g.hessian(x, sparse=True)
                sparse = g._sparse
                plan = sparse.plan("hessian", (x,), {})
                p, mode = plan.ncolors, plan.mode
                whole = best(lambda: g.hessian(x, sparse=True), repeats)
                grad = best(lambda: g(x), repeats)
                product = best(lambda: sparse.run(plan, (x,), {}), repeats)
                forms = {form: best(lambda: sparse._unbatched(plan, form, (x,), {}), repeats)
                         for form in derivatives.UNBATCHED_FORMS}
                shared = sparse.product(mode, "shared")
                residuals = tuple(shared(x))
                seed = sparse.product(mode, "seed", len(residuals))
                seed(x, *residuals, plan.seeds[0])
                t_shared = best(lambda: shared(x), repeats)
                t_seed = best(lambda: seed(x, *residuals, plan.seeds[0]), repeats)
                flat = np.asarray(sparse.run(plan, (x,), {})).reshape(-1)
                data = np.empty(plan.pattern.nnz)
                sub = plan.extra.get("substitution")
                none = np.zeros(0, np.int32)
                if sub is not None:
                    work = flat.copy()
                    minus = best(lambda: recovery._recover(work, data, sub.minus_from,
                                                           sub.minus_into, none), repeats)
                    gather = best(lambda: recovery._recover(work, data, none, none, sub.table),
                                  repeats)
                else:
                    minus = 0.0
                    gather = best(lambda: plan.assemble(flat), repeats)
                model = plan.extra["model"]
                made = best(lambda: csr.like(model, data), repeats)
                ms = [v * 1e3 for v in (whole, grad)]
                form = plan.extra.get("form", "batched")
                print(f"{name:10s} {n:6d} {backend:7s} {p:2d} {form:8s} {ms[0]:8.3f} "
                      f"{ms[1]:6.3f} {whole / grad:5.1f} {product * 1e3:8.3f} "
                      + " ".join(f"{forms[f] * 1e3:{w}.3f}" for f, w in
                                 zip(derivatives.UNBATCHED_FORMS, (8, 7, 7)))
                      + f" {t_shared * 1e3:6.3f} {t_seed * 1e3:6.3f} {minus * 1e3:6.3f} "
                      f"{gather * 1e3:6.3f} {made * 1e3:5.3f}", file=out, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated, from " + ", ".join(WORKLOADS))
    parser.add_argument("--backends", default="c,numba")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="per-call, detection and setup times in wall time or in the "
                             "process's CPU time")
    parser.add_argument("--no-casadi", action="store_true",
                        help="leave CasADi out (its SX setup takes ~1 min at n = 10^5)")
    parser.add_argument("--breakdown", action="store_true",
                        help="instead: where each sparse Hessian's call goes (product forms, "
                             "recovery, CSR result)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.breakdown:
        breakdown([int(v) for v in args.sizes.split(",")], args.backends.split(","),
                  args.repeats, sys.stdout, args.workloads.split(","))
        return
    run([int(v) for v in args.sizes.split(",")], args.backends.split(","), args.repeats,
        sys.stdout, not args.no_casadi, args.workloads.split(","))


if __name__ == "__main__":
    main()
