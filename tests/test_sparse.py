"""Sparse Jacobians and Hessians: detected patterns, colorings, compressed values.

A detected pattern must hold every nonzero of the dense derivative (a missed
one is a wrong answer): checked on the random programs of test_fuzz.py, on
each rule's primitive, and on banded and stencil objectives of ~10^3
variables, where the pattern is also exact.  Sparse values equal the dense
derivatives to rounding, eagerly and compiled on every backend.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.sparse import coloring, derivatives, patterns, recovery
from test_fuzz import programs

# the C VM where it is built, else the reference interpreter
COMPILED = "c" if "c" in BACKENDS else "numpy"

SPARSE_FUZZ = settings(max_examples=int(os.environ.get("FASTAD_SPARSE_EXAMPLES", 150)), deadline=None,
                       suppress_health_check=[HealthCheck.too_slow,
                                              HealthCheck.data_too_large])


def nonzeros(dense: np.ndarray) -> np.ndarray:
    return np.asarray(dense != 0)


def covers(pattern: sp.spmatrix, dense: np.ndarray) -> bool:
    """Every nonzero (or NaN) of ``dense`` is in the pattern."""
    return not np.any(nonzeros(dense) & ~pattern.toarray())


def close(got: sp.spmatrix, want: np.ndarray, rtol: float = 1e-9) -> None:
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got.toarray(), want, rtol=rtol, atol=rtol * scale)


# -- objectives ----------------------------------------------------------------------
def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def spring_chain(x):
    d = x[2:] - 2.0 * x[1:-1] + x[:-2]
    return np.sum(np.sqrt(1.0 + d ** 2)) + 0.5 * np.sum(np.cos(x) * x)


def stencil_energy(x):
    """A 2-D grid energy: the 5-point Laplacian's quadratic form plus a quartic."""
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    lap = 4.0 * u[1:-1, 1:-1] - u[:-2, 1:-1] - u[2:, 1:-1] - u[1:-1, :-2] - u[1:-1, 2:]
    return 0.5 * np.sum(lap * u[1:-1, 1:-1]) + 0.25 * np.sum(u ** 4)


def minimal_surface(x):
    k = int(round(np.sqrt(x.size)))
    u = x.reshape(k, k)
    dx = u[1:, :-1] - u[:-1, :-1]
    dy = u[:-1, 1:] - u[:-1, :-1]
    return np.sum(np.sqrt(1.0 + dx ** 2 + dy ** 2))


def arrowhead(x):
    """CUTEst's ARWHEAD: every term reads the last variable (a dense row and
    column, whose vertex the colorings color alone: `coloring.hubs`)."""
    return np.sum(-4.0 * x[:-1] + 3.0) + np.sum((x[:-1] ** 2 + x[-1] ** 2) ** 2)


def banded_arrowhead(x):
    """CUTEst's BDQRTIC: a band of 7 and the last variable in every term."""
    n = x.size
    return np.sum((3.0 - 4.0 * x[:n - 4]) ** 2
                  + (x[:n - 4] ** 2 + 2 * x[1:n - 3] ** 2 + 3 * x[2:n - 2] ** 2
                     + 4 * x[3:n - 1] ** 2 + 5 * x[-1] ** 2) ** 2)


def collocation(x):
    """Trapezoidal collocation residuals of x' = -x^3 + sin(t) on a grid of x's size."""
    h = 0.01
    rhs = -x ** 3 + np.sin(np.arange(x.size) * h)
    return x[1:] - x[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])


def mixed(x):
    """Slices, broadcasting, a reduction over one axis, a product and a transpose."""
    m = x.reshape(4, -1)
    rows = np.sum(m ** 2, axis=1, keepdims=True)
    y = np.exp(m[:, 1:] * m[:, :-1]) + rows * m[:, :-1]
    return np.concatenate([y.T.reshape(-1), np.prod(m[:2, :3], axis=0), np.cumsum(x[:5])])


# -- patterns on random programs --------------------------------------------------------
def _flat_program(prog):
    """The program as a function of one vector holding all its inputs (so that
    every input is traced, including those it writes into)."""
    sizes = [x.size for x in prog.inputs]
    offsets = np.cumsum([0] + sizes)

    def f(v):
        xs = [v[offsets[k]:offsets[k + 1]].reshape(x.shape).astype(x.dtype)
              for k, x in enumerate(prog.inputs)]
        return prog(*xs)[0]
    v = np.concatenate([x.astype(np.float64).reshape(-1) for x in prog.inputs])
    return f, v


@SPARSE_FUZZ
@given(prog=programs(max_steps=6))
def test_jacobian_pattern_covers_the_dense_jacobian_of_random_programs(prog):
    f, x = _flat_program(prog)
    dense = np.asarray(fa.jacobian(f)(x))
    dense = dense.reshape(-1, x.size)
    assume(np.all(np.isfinite(dense)))
    pattern = fa.sparsity(f)(x).jacobian
    assert pattern.shape == dense.shape
    assert covers(pattern, dense), prog
    if dense.size:
        close(fa.jacobian(f, sparse=True)(x), dense, 1e-9 if prog.dtype == np.float64 else 1e-4)


@SPARSE_FUZZ
@given(prog=programs(max_steps=6), seed=st.integers(0, 2**16))
def test_hessian_pattern_covers_the_dense_hessian_of_random_programs(prog, seed):
    f, x = _flat_program(prog)
    out = prog(*prog.inputs)[0]
    w = np.random.default_rng(seed).standard_normal(np.shape(out)).astype(out.dtype)

    def loss(v):
        return np.sum(f(v) * w)
    dense = np.asarray(fa.hessian(loss)(x)).reshape(x.size, x.size)
    assume(np.all(np.isfinite(dense)))
    pattern = fa.sparsity(loss)(x).hessian
    assert covers(pattern, dense), prog
    assert (pattern != pattern.T).nnz == 0
    rtol = 1e-8 if prog.dtype == np.float64 else 1e-3
    close(fa.hessian(loss, sparse=True)(x), dense, rtol)
    # either coloring alone, read off (star) or recovered by substitution (acyclic)
    tape, wrt, shape, _, dtype = derivatives._lifted_tape(loss, 0, (x,), {})
    trace = derivatives._trace(loss, 0, (x,), {})
    for method in ("star", "acyclic"):
        plan = derivatives.hessian_plan(tape, wrt, shape, np.dtype(dtype), method=method)
        if plan.ncolors:
            close(plan.assemble(derivatives.compressed(trace, plan.seeds, "hvp")), dense, rtol)


@settings(SPARSE_FUZZ, max_examples=max(SPARSE_FUZZ.max_examples // 4, 1))
@given(prog=programs(max_steps=5))
def test_compiled_sparse_derivatives_of_random_programs(prog):
    f, x = _flat_program(prog)
    dense = np.asarray(fa.jacobian(f)(x)).reshape(-1, x.size)
    assume(np.all(np.isfinite(dense)) and dense.size)
    rtol = 1e-9 if prog.dtype == np.float64 else 1e-4
    backend = COMPILED if not prog.complex else "numpy"  # the C VM has no complex dtype
    j = fa.jit(f, backend=backend)
    close(j.jacobian(x, sparse=True), dense, rtol)
    close(j.jacobian(x, sparse=True), dense, rtol)  # the kept plan

    def loss(v):
        return np.sum(f(v))
    hd = np.asarray(fa.hessian(loss)(x))
    assume(np.all(np.isfinite(hd)))
    close(fa.compile(loss, backend=backend).hessian(x, sparse=True), hd, rtol * 10)


# -- each rule exact where the dense derivative has no accidental zeros ------------------
RULE_CASES = {
    "broadcast": lambda x: np.sin(x.reshape(3, 4)) * x.reshape(3, 4)[:, :1] + x[:4],
    "slices": lambda x: x[::2] * x[1::2] + x[3:9].sum(),
    "fancy_index": lambda x: np.exp(x[[5, 1, 1, 7]]) * x[[0, 2, 4, 6]],
    "sum_axis": lambda x: np.sum(np.sin(x.reshape(2, 3, 2)), axis=(0, 2)),
    "transpose": lambda x: np.cos(x.reshape(3, 4).T).reshape(-1)[::-1] * x,
    "broadcast_to": lambda x: np.broadcast_to(x[:3], (4, 3)).reshape(-1) * x,
    "concatenate": lambda x: np.concatenate([x[:3] ** 2, np.tanh(x[5:]), x[:1] * x[-1:]]),
    "assign": lambda x: _assign(x),
    "cumsum": lambda x: np.cumsum(np.sin(x.reshape(3, 4)), axis=1).reshape(-1),
    "prod_max": lambda x: np.stack([np.prod(x[:3]), np.max(x[4:8])]) * x[:2],
    "matmul_const": lambda x: (np.diag(np.arange(1.0, 13.0)) + np.eye(12, k=1)) @ x,
    "matmul_both": lambda x: x.reshape(3, 4) @ x.reshape(4, 3),
    "divide": lambda x: x[:6] / (1.5 + np.cos(x[6:])),
    "where": lambda x: np.where(x[:6] > 0, x[:6] ** 2, x[6:] * x[:6]),
}


def _assign(x):
    y = np.zeros_like(x)
    y[2:5] = x[:3] ** 3
    y[[0, 7]] += x[[9, 9]] * x[10]
    return y + np.sin(x)


@pytest.mark.parametrize("name", sorted(RULE_CASES))
def test_each_rule_gives_the_exact_jacobian_and_hessian_patterns(name):
    f = RULE_CASES[name]
    x = np.random.default_rng(1).uniform(0.3, 1.3, 12) * np.array([1, -1] * 6)
    s = fa.sparsity(f)(x)
    dense = np.asarray(fa.jacobian(f)(x)).reshape(-1, x.size)
    exact = name not in ("where", "prod_max")  # where: the branch not taken; max: one winner
    if exact:
        assert (s.jacobian.toarray() == nonzeros(dense)).all()
    assert covers(s.jacobian, dense)
    close(fa.jacobian(f, sparse=True)(x), dense)
    w = np.random.default_rng(2).standard_normal(dense.shape[0])

    def loss(x):
        return np.sum(f(x).reshape(-1) * w)
    hd = np.asarray(fa.hessian(loss)(x))
    hp = fa.sparsity(loss)(x).hessian
    assert covers(hp, hd)
    if exact:
        assert (hp.toarray() == nonzeros(hd)).all(), name
    close(fa.hessian(loss, sparse=True)(x), hd)


def test_a_nonlinearity_adds_only_the_elements_an_output_reads():
    """cos of 12 elements of which a gather keeps 7: 7 diagonal entries; a
    product of neighbors on a grid of which the interior is read: only the
    interior's pairs (element liveness)."""
    def loss(x):
        return np.sum(np.cos(x.reshape(3, 4).T).reshape(-1)[:7])
    x = np.linspace(0.1, 1.2, 12)
    hd = np.asarray(fa.hessian(loss)(x))
    hp = fa.sparsity(loss)(x).hessian
    assert np.count_nonzero(hd) == 7 and (hp.toarray() == nonzeros(hd)).all()
    close(fa.hessian(loss, sparse=True)(x), hd)

    def grid_loss(x):
        u = x.reshape(6, 6)
        prod = u[:, 1:] * u[:, :-1]
        prod = np.where(u[:, 1:] > 10.0, 0.0, prod)  # linear: the pattern stays
        return np.sum(prod[1:-1, 1:-1] ** 2) + np.sum(u[::2, ::3] ** 3)
    x = np.random.default_rng(0).uniform(0.5, 1.5, 36)
    hd = np.asarray(fa.hessian(grid_loss)(x))
    hp = fa.sparsity(grid_loss)(x).hessian
    assert (hp.toarray() == nonzeros(hd)).all()


def test_linear_operations_add_nothing_to_the_hessian():
    def f(x):
        return np.sum(x[1:] - 2.0 * x[:-1]) + np.sum(x[::3]) * 4.0 + np.sin(x[0])
    h = fa.sparsity(f)(np.ones(10)).hessian
    assert h.nnz == 1 and h[0, 0]


def test_the_hessian_pattern_is_not_the_square_of_the_jacobian_pattern():
    def f(x):  # J of the sum is dense; the Hessian is diagonal
        return np.sum(np.exp(x))
    s = fa.sparsity(f)(np.ones(50))
    assert s.jacobian.nnz == 50 and s.hessian.nnz == 50
    assert s.ncolors["hessian"] == 1


def test_nonlinearity_feeding_only_a_comparison_adds_nothing():
    def f(x):
        return np.sum(np.where(np.exp(x[:-1] * x[1:]) > 1.5, x[:-1], 2.0 * x[:-1]))
    assert fa.sparsity(f)(np.linspace(0, 1, 8)).hessian.nnz == 0


def test_unknown_primitives_are_conservative():
    def f(x):
        a = x.reshape(3, 3) + 4.0 * np.eye(3)
        return np.linalg.solve(a, x[:3] * 0 + 1.0)
    x = np.random.default_rng(0).normal(size=9)
    s = fa.sparsity(f)(x)
    assert s.jacobian.nnz == 27  # every output on every input
    close(fa.jacobian(f, sparse=True)(x), np.asarray(fa.jacobian(f)(x)).reshape(3, 9))


# -- colorings -----------------------------------------------------------------------
def random_pattern(seed, m, n, density):
    rng = np.random.default_rng(seed)
    p = sp.random(m, n, density=density, random_state=rng, format="csr") != 0
    return patterns.canonical(p)


def symmetric_pattern(seed, n, density):
    p = random_pattern(seed, n, n, density)
    return patterns.canonical((p + p.T) + sp.identity(n, dtype=bool))


def brute_force_is_star(pattern, colors):
    """Proper, and no path on four vertices colored a-b-a-b (enumerated)."""
    a = pattern.tolil()
    n = a.shape[0]
    adj = [set(a.rows[i]) - {i} for i in range(n)]
    for v in range(n):
        for w in adj[v]:
            if colors[v] == colors[w]:
                return False
            for x in adj[w] - {v}:
                for y in adj[x] - {w, v}:
                    if colors[v] == colors[x] and colors[w] == colors[y]:
                        return False
    return True


def brute_force_is_acyclic(pattern, colors):
    """Proper, and no cycle whose vertices take two colors (union-find per pair)."""
    a = sp.coo_matrix(pattern)
    edges = [(i, j) for i, j in zip(a.row, a.col) if i < j]
    if any(colors[i] == colors[j] for i, j in edges):
        return False
    parent = {}

    def find(v):
        while parent.setdefault(v, v) != v:
            v = parent[v]
        return v
    for i, j in edges:
        pair = tuple(sorted((colors[i], colors[j])))
        ri, rj = find((pair, i)), find((pair, j))
        if ri == rj:
            return False
        parent[ri] = rj
    return True


def recovered(pattern, colors, rng):
    """A random symmetric matrix on the pattern, and its values recovered from
    the compressed product of the coloring."""
    h = sp.triu(sp.csr_matrix(pattern, dtype=float), format="csr")
    h.data = rng.standard_normal(h.nnz)
    h = (h + sp.triu(h, 1).T).tocsr()
    h.sort_indices()
    compressed = (h @ coloring.seed_matrix(colors).T).T.copy()
    pat = patterns.canonical(pattern)
    data = np.empty(pat.nnz)
    recovery.Substitution(pat, colors)(compressed.reshape(-1), data)
    return h, sp.csr_matrix((data, pat.indices, pat.indptr), shape=pat.shape)


@pytest.mark.parametrize("seed", range(6))
def test_colorings_are_valid_on_random_patterns(seed):
    p = random_pattern(seed, 60, 40, 0.06)
    cols, rows = coloring.column_coloring(p), coloring.row_coloring(p)
    assert coloring.is_column_coloring(p, cols)
    assert coloring.is_column_coloring(p.T.tocsr(), rows)
    assert cols.max() + 1 >= coloring.lower_bound(p, 1)
    h = symmetric_pattern(seed, 30, 0.08)
    star = coloring.star_coloring(h)
    assert coloring.is_star_coloring(h, star) and brute_force_is_star(h, star)
    d2 = coloring.distance2_coloring(h)
    assert coloring.is_column_coloring(h, d2) and brute_force_is_star(h, d2)
    assert star.max() <= d2.max() + 1
    acyclic = coloring.acyclic_coloring(h)
    assert coloring.is_acyclic_coloring(h, acyclic) and brute_force_is_acyclic(h, acyclic)
    assert coloring.is_acyclic_coloring(h, star) and brute_force_is_acyclic(h, star)
    assert acyclic.max() <= star.max()


@pytest.mark.parametrize("seed", range(20))
def test_substitution_recovers_every_nonzero_of_random_symmetric_matrices(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    h = symmetric_pattern(seed, n, float(rng.uniform(0.01, 0.2)))
    colors = coloring.acyclic_coloring(h)
    want, got = recovered(h, colors, rng)
    np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=1e-12, atol=1e-12)


def test_the_star_checker_rejects_a_bicolored_path():
    path = patterns.canonical(sp.diags([1, 1, 1], [-1, 0, 1], shape=(4, 4), dtype=bool))
    assert not coloring.is_star_coloring(path, np.array([0, 1, 0, 1]))
    assert coloring.is_star_coloring(path, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError):
        coloring.hessian_gather(path, np.array([0, 1, 0, 1]))


def test_the_acyclic_checker_and_substitution_reject_a_two_colored_cycle():
    ring = sp.diags([1, 1, 1], [-1, 0, 1], shape=(4, 4), format="lil", dtype=bool)
    ring[0, 3] = ring[3, 0] = 1
    ring = patterns.canonical(ring.tocsr() != 0)
    assert not coloring.is_acyclic_coloring(ring, np.array([0, 1, 0, 1]))
    assert not brute_force_is_acyclic(ring, np.array([0, 1, 0, 1]))
    assert coloring.is_acyclic_coloring(ring, np.array([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="not an acyclic coloring"):
        recovery.Substitution(ring, np.array([0, 1, 0, 1]))
    # a path two-colored is acyclic: recovered by substitution, not read off
    path = patterns.canonical(sp.diags([1, 1, 1], [-1, 0, 1], shape=(6, 6), dtype=bool))
    want, got = recovered(path, np.arange(6) % 2, np.random.default_rng(0))
    np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=1e-12, atol=1e-12)


def valid_hessian_coloring(s):
    check = {"star": coloring.is_star_coloring, "acyclic": coloring.is_acyclic_coloring}
    return check[s.hessian_coloring](s.hessian, s.hessian_colors)


def test_colors_of_banded_and_stencil_patterns_are_near_the_lower_bound():
    s = fa.sparsity(rosenbrock)(np.ones(1000))
    # acyclic, 2 colors; but the path's substitution is one chain through x,
    # so "auto" takes the star coloring's 3 (`derivatives._chain_bound`)
    assert s.lower_bounds["hessian"] == 3 and s.ncolors["hessian"] == 3
    assert s.hessian_coloring == "star" and valid_hessian_coloring(s)
    plan = derivatives.hessian_plan(*hessian_plan_args(rosenbrock, np.ones(1000)),
                                    method="acyclic")
    assert plan.ncolors == 2 and plan.extra["substitution"].longest_chain >= 1000 // 2 - 1
    s = fa.sparsity(collocation)(np.ones(1000))
    assert s.ncolors["columns"] == s.lower_bounds["columns"] == 2
    s = fa.sparsity(stencil_energy)(np.ones(32 * 32))
    assert s.ncolors["hessian"] <= s.lower_bounds["hessian"]
    assert valid_hessian_coloring(s)
    for method in ("star", "acyclic"):  # either alone, each valid
        plan = derivatives.hessian_plan(*hessian_plan_args(stencil_energy, np.ones(32 * 32)),
                                        method=method)
        assert plan.extra["coloring"] == method and plan.ncolors <= 1.5 * plan.lower_bound
    with pytest.raises(ValueError, match="coloring"):
        derivatives.hessian_plan(*hessian_plan_args(rosenbrock, np.ones(10)), method="greedy")


def hessian_plan_args(f, x):
    tape, wrt, x_shape, _, dtype = derivatives._lifted_tape(f, 0, (x,), {})
    return tape, wrt, x_shape, np.dtype(dtype)


# -- values, eager and compiled ------------------------------------------------------
OBJECTIVES = [rosenbrock, spring_chain, stencil_energy, minimal_surface, arrowhead,
              banded_arrowhead]


@pytest.mark.parametrize("f", OBJECTIVES, ids=lambda f: f.__name__)
def test_sparse_hessians_of_banded_and_stencil_objectives_at_n_1000(f):
    n = 32 * 32
    x = np.random.default_rng(3).uniform(-1, 1, n)
    dense = np.asarray(fa.hessian(f)(x))
    s = fa.sparsity(f)(x)
    assert (s.hessian.toarray() == nonzeros(dense)).all()  # exact for these
    assert valid_hessian_coloring(s)
    h = fa.hessian(f, sparse=True)(x)
    assert isinstance(h, sp.csr_matrix) and h.shape == (n, n)
    close(h, dense)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_sparse_hessian_and_jacobian_on_each_backend(backend):
    if backend == "numba":
        fs, n = [stencil_energy], 36
    else:
        fs, n = OBJECTIVES, 100
    x = np.random.default_rng(4).uniform(-1, 1, n)
    for f in fs:
        g = fa.compile(f, backend=backend)
        close(g.hessian(x, sparse=True), np.asarray(fa.hessian(f)(x)))
        close(fa.jit(f, backend=backend).hessian(x, sparse=True), np.asarray(fa.hessian(f)(x)))
    j = fa.jit(collocation, backend=backend)
    want = np.asarray(fa.jacobian(collocation)(x))
    close(j.jacobian(x, sparse=True), want)
    close(j.jacobian(x, sparse=True, mode="rev"), want)
    np.testing.assert_allclose(j.jacobian(x), want, rtol=1e-12)


def test_compiled_plans_are_kept_per_signature(monkeypatch):
    from fastad.sparse import derivatives
    made = []
    original = derivatives.hessian_plan
    monkeypatch.setattr(derivatives, "hessian_plan",
                        lambda *a, **k: made.append(1) or original(*a, **k))
    g = fa.compile(spring_chain, backend=COMPILED)
    for n in (50, 50, 60, 50, 60):
        x = np.linspace(-1, 1, n)
        close(g.hessian(x, sparse=True), np.asarray(fa.hessian(spring_chain)(x)))
    assert len(made) == 2


def test_a_guarded_function_gets_the_pattern_of_its_branch():
    def f(x):
        if x[0] > 0:
            return np.sum(x[1:] * x[:-1])
        return np.sum(x ** 3)
    g = fa.compile(f, backend=COMPILED)
    for x0 in (1.0, -1.0, 1.0):
        x = np.linspace(0.5, 1.5, 8)
        x[0] = x0
        close(g.hessian(x, sparse=True), np.asarray(fa.hessian(f)(x)))
        close(fa.hessian(f, sparse=True)(x), np.asarray(fa.hessian(f)(x)))


def test_argument_values_are_not_read_into_a_kept_pattern():
    """A matrix passed as an argument may have zeros in new places next call."""
    def f(x, a):
        return a @ x
    j = fa.jit(f, backend=COMPILED)
    x = np.ones(4)
    a = np.diag([1.0, 2.0, 3.0, 4.0])
    close(j.jacobian(x, a, sparse=True), a)
    b = np.arange(16.0).reshape(4, 4) + 1
    close(j.jacobian(x, b, sparse=True), b)


def test_other_arguments_and_argnums():
    def f(a, x, scale=1.0):
        return np.sum(a * x[1:] * x[:-1]) * scale
    a = np.linspace(1, 2, 9)
    x = np.linspace(-1, 1, 10)
    want = np.asarray(fa.hessian(f, argnums=1)(a, x, scale=2.0))
    close(fa.hessian(f, argnums=1, sparse=True)(a, x, scale=2.0), want)
    g = fa.compile(f, argnums=1, backend=COMPILED)
    close(g.hessian(a, x, sparse=True, scale=2.0), want)


@pytest.mark.parametrize("wrap", [lambda v: {"a": v}, lambda v: (v,), lambda v: [{"w": v}]],
                         ids=["dict", "tuple", "nested"])
def test_a_pytree_of_one_array_is_that_array_eagerly_and_compiled(wrap):
    unwrap = lambda t: t["a"] if isinstance(t, dict) else (t[0] if isinstance(t, tuple)  # noqa: E731
                                                            else t[0]["w"])
    x = np.linspace(-1, 1, 12)
    jac = lambda t: np.sin(unwrap(t)[1:]) * unwrap(t)[:-1]  # noqa: E731
    loss = lambda t: np.sum(jac(t) ** 2)  # noqa: E731
    want_j = np.asarray(fa.jacobian(lambda v: jac(wrap(v)))(x))
    want_h = np.asarray(fa.hessian(lambda v: loss(wrap(v)))(x))
    close(fa.jacobian(jac, sparse=True)(wrap(x)), want_j)
    close(fa.jit(jac, backend=COMPILED).jacobian(wrap(x), sparse=True), want_j)
    close(fa.hessian(loss, sparse=True)(wrap(x)), want_h)
    close(fa.compile(loss, backend=COMPILED).hessian(wrap(x), sparse=True), want_h)
    two = lambda t: t["a"] * t["b"]  # noqa: E731
    for call in (lambda: fa.jacobian(two, sparse=True)({"a": x, "b": x}),
                 lambda: fa.jit(two, backend=COMPILED).jacobian({"a": x, "b": x}, sparse=True)):
        with pytest.raises(TypeError, match="one array argument"):
            call()


def test_sparsity_reports_colors_and_bounds():
    s = fa.sparsity(collocation)(np.ones(100))
    assert s.jacobian.shape == (99, 100) and s.hessian is None
    assert s.jacobian_mode == "fwd"
    assert s.ncolors["columns"] == 2 and s.lower_bounds == {"columns": 2, "rows": 2}
    assert "column colors" in repr(s)
    s = fa.sparsity(rosenbrock)(np.ones(100))
    assert s.ncolors["hessian"] == 3 and "3 star colors" in repr(s)
    assert s.hessian_coloring == "star" and valid_hessian_coloring(s)
    s = fa.sparsity(stencil_energy)(np.ones(32 * 32))
    count = s.ncolors["hessian"]
    assert f"{count} acyclic colors" in repr(s) and count <= s.lower_bounds["hessian"]
    assert s.hessian_coloring == "acyclic" and valid_hessian_coloring(s)


def test_spy_draws_through_matplotlib():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    ax = fa.sparsity(rosenbrock)(np.ones(20)).spy()
    assert "nonzeros" in ax.get_title()


def test_sparse_refuses_traced_arguments_and_complex_inputs():
    with pytest.raises(TypeError, match="traced"):
        fa.grad(lambda x: fa.hessian(rosenbrock, sparse=True)(x).sum())(np.ones(4))
    with pytest.raises(TypeError, match="real"):
        fa.jacobian(lambda z: z * z, sparse=True)(np.ones(3, complex))


def test_large_chain_pattern_and_coloring_are_fast():
    import time
    x = np.ones(10 ** 5)
    fa.sparsity(rosenbrock)(x[:100])  # Numba's coloring compiled (or loaded from its cache)
    t = time.perf_counter()
    s = fa.sparsity(rosenbrock)(x)
    assert s.ncolors["hessian"] == 3 and valid_hessian_coloring(s)
    assert time.perf_counter() - t < 10.0  # ~0.15 s on the development machine


# -- solvers ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["trust-constr", "newton-cg"])
def test_minimize_with_the_sparse_hessian(method):
    x0 = np.full(60, -0.5)
    r = fa.minimize(spring_chain, x0, method=method, hess="sparse",
                    options={"maxiter": 200} if method == "trust-constr" else {})
    ref = fa.minimize(spring_chain, x0, method="BFGS")
    assert r.fun <= ref.fun + 1e-6
    with pytest.raises(ValueError, match="sparse"):
        fa.minimize(spring_chain, x0, method="BFGS", hess="sparse")


def test_least_squares_takes_the_sparse_jacobian():
    from scipy.optimize import least_squares
    j = fa.jit(collocation)
    x0 = np.ones(200)
    r = least_squares(j, x0, jac=lambda x: j.jacobian(x, sparse=True), method="trf")
    assert r.success and np.max(np.abs(r.fun)) < 1e-7


def test_the_minimal_surface_example_converges():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "examples" / "minimal_surface.py"
    spec = importlib.util.spec_from_file_location("fastad_example_minimal_surface", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, sparse_result = module.solve(12, "sparse")
    _, dense_result = module.solve_dense(12)
    assert sparse_result.optimality < 1e-8
    assert abs(sparse_result.fun - dense_result.fun) < 1e-10


def test_trust_constr_takes_sparse_constraint_jacobians_and_hessians():
    from scipy.optimize import NonlinearConstraint

    def residuals(x):
        return x[1:] ** 2 + x[:-1] - 1.0

    target = np.linspace(-1, 1, 40)

    def objective(x):
        return 0.5 * np.sum((x - target) ** 2)
    x0 = np.full(40, 0.5)
    r = fa.minimize(objective, x0, method="trust-constr", hess="sparse",
                    constraints=NonlinearConstraint(residuals, 0.0, 0.0, jac="sparse",
                                                    hess="sparse"))
    assert np.max(np.abs(residuals(r.x))) < 1e-6
    jac = fa.jacobian(residuals)
    ref = fa.minimize(objective, x0, method="trust-constr",
                      constraints=NonlinearConstraint(residuals, 0.0, 0.0, jac=jac))
    assert abs(r.fun - ref.fun) < 1e-6


@given(seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=5, deadline=None)
def test_trust_constr_is_handed_sparse_constraint_derivatives_equal_to_dense(seed):
    """What SciPy receives for ``jac="sparse"`` and ``hess="sparse"``: CSR
    matrices, equal to the dense Jacobian and to the dense Hessian of v . c."""
    from scipy.optimize import NonlinearConstraint
    from fastad.minimize import _sparse_constraints

    def residuals(x):
        return x[2:] * x[1:-1] - np.sin(x[:-2])
    rng = np.random.default_rng(seed)
    x, v = rng.uniform(-1, 1, 30), rng.standard_normal(28)
    c = _sparse_constraints(NonlinearConstraint(residuals, 0.0, 0.0, jac="sparse",
                                                hess="sparse"), COMPILED)
    jac, hess = c.jac(x), c.hess(x, v)
    assert sp.issparse(jac) and sp.issparse(hess)
    close(jac, np.asarray(fa.jacobian(residuals)(x)))
    d, h = rng.standard_normal(30), 1e-6
    np.testing.assert_allclose(jac @ d, (residuals(x + h * d) - residuals(x - h * d)) / (2 * h),
                               rtol=1e-6, atol=1e-6)
    close(hess, np.asarray(fa.hessian(lambda y: np.sum(v * residuals(y)))(x)))
    hvp_matches_fd(hess, lambda y: np.sum(v * residuals(y)), x, seed)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numba"])
def test_seeds_side_by_side_for_large_arrays(backend, monkeypatch):
    from fastad.sparse import derivatives
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    x = np.random.default_rng(5).uniform(-1, 1, 64)
    for f in (rosenbrock, stencil_energy):
        close(fa.compile(f, backend=backend).hessian(x, sparse=True),
              np.asarray(fa.hessian(f)(x)))
    j = fa.jit(collocation, backend=backend)
    want = np.asarray(fa.jacobian(collocation)(x))
    close(j.jacobian(x, sparse=True), want)
    close(j.jacobian(x, sparse=True, mode="rev"), want)


# -- the seeds side by side: rows stacked in place, on Numba ------------------------------
NUMBA_FUZZ = settings(SPARSE_FUZZ, max_examples=max(SPARSE_FUZZ.max_examples // 25, 3))


def _fd_hvp(f, x, v, eps=1e-6):
    """Central differences of the gradient along v: H v without AD."""
    grad = fa.grad(f)
    return (np.asarray(grad(x + eps * v)) - np.asarray(grad(x - eps * v))) / (2 * eps)


def fuzz_hessian_case(prog):
    """(loss, x, dense Hessian) of a generated program made a scalar loss; the
    example is skipped where the Hessian is not finite or too large."""
    assume(prog.dtype == np.float64 and not prog.complex)
    f, x = _flat_program(prog)

    def loss(v):
        return np.sum(np.sin(f(v)) * f(v))
    dense = np.asarray(fa.hessian(loss)(x))
    assume(np.all(np.isfinite(dense)) and np.max(np.abs(dense), initial=0.0) < 1e6)
    return loss, x, dense


def hvp_matches_fd(hessian, loss, x, seed):
    """A sparse Hessian times a random vector against central differences of
    the gradient."""
    v = np.random.default_rng(seed).standard_normal(x.size)
    want = _fd_hvp(loss, x, v)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(hessian @ v, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.skipif("numba" not in BACKENDS, reason="needs numba")
@NUMBA_FUZZ
@given(prog=programs(max_steps=4), seed=st.integers(0, 2 ** 32 - 1))
def test_numba_sparse_hessians_of_random_programs_side_by_side(prog, seed):
    """The seeds' products side by side in one Numba kernel (rows stacked in
    place, the seeds fused into the function's loops) against the reference
    interpreter's, the dense Hessian and central differences."""
    loss, x, dense = fuzz_hessian_case(prog)
    with pytest.MonkeyPatch.context() as mp:  # side by side at any size
        mp.setattr(derivatives, "PER_SEED_MIN", 0)
        mp.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})
        got = fa.compile(loss, backend="numba").hessian(x, sparse=True)
        ref = fa.compile(loss, backend="numpy").hessian(x, sparse=True)
    close(got, ref.toarray(), 1e-12)
    close(got, dense)
    hvp_matches_fd(got, loss, x, seed)


def _stack_of(kinds, scale):
    """A function stacking rows of several kinds: elementwise loops, an
    adjoint accumulated in place (the gradient of a chain), the input itself
    (a view: copied into its block), a reversed gather and a constant."""
    def f(x, y):
        rows = []
        for k, kind in enumerate(kinds):
            if kind == 0:
                rows.append(np.sin(x) * (k + scale) + y)
            elif kind == 1:
                rows.append(fa.grad(lambda u: np.sum(u[1:] * u[:-1] ** 2))(x * (k + 1.0)))
            elif kind == 2:
                rows.append(x)
            elif kind == 3:
                rows.append(y[::-1] * x)
            else:
                rows.append(np.full_like(x, scale))
        return np.stack(rows) * 1.0 if len(kinds) % 2 else np.stack(rows)
    return f


@pytest.mark.skipif("numba" not in BACKENDS, reason="needs numba")
@NUMBA_FUZZ
@given(kinds=st.lists(st.integers(0, 4), min_size=1, max_size=4), n=st.integers(2, 40),
       scale=st.sampled_from([0.0, -0.0, 1.5]), seed=st.integers(0, 2 ** 32 - 1))
def test_numba_stacks_rows_in_place_bitwise_as_the_reference(kinds, n, scale, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    f = _stack_of(kinds, scale)
    got = fa.jit(f, backend="numba")(x, y)
    want = fa.jit(f, backend="numpy")(x, y)
    assert got.shape == (len(kinds), n)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)
    got[...] = 7.0  # the result is an array of its own: not x, y or a constant
    assert not np.any(x == 7.0) and not np.any(y == 7.0)
    np.testing.assert_array_equal(fa.jit(f, backend="numba")(x, y), want)


def _padded(pieces, fill):
    """Values set between runs of ``fill`` (np.pad, concatenate): a padded
    array's blocks, each row made in place and only the gaps filled."""
    def f(x, y):
        parts = []
        for k, (lo, kind) in enumerate(pieces):
            parts.append(np.full(lo, fill))
            parts.append(np.sin(x) * (k + 1.0) if kind == 0 else y * x if kind == 1 else x)
        padded = np.concatenate(parts + [np.full(2, fill)])
        band = padded[:x.size] + padded[2:x.size + 2] * 0.5
        return padded * 1.0, band, np.pad(x * y, (pieces[0][0], 1), constant_values=fill)
    return f


@pytest.mark.skipif("numba" not in BACKENDS, reason="needs numba")
@NUMBA_FUZZ
@given(pieces=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1,
                       max_size=4),
       n=st.integers(2, 40), fill=st.sampled_from([0.0, -0.0, 2.5]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_numba_padded_arrays_fill_only_their_gaps_bitwise(pieces, n, fill, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    f = _padded(pieces, fill)
    got = fa.jit(f, backend="numba")(x, y)
    want = fa.jit(f, backend="numpy")(x, y)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
        np.testing.assert_array_equal(a, b)


def test_a_padded_array_fills_its_padding_only():
    if "numba" not in BACKENDS:
        pytest.skip("needs numba")
    from fastad.backends import numba_backend
    f = _padded([(5, 0)], 0.0)
    x = np.linspace(-1, 1, 30)
    j = fa.jit(f, backend="numpy")
    j(x, x)
    text = numba_backend.generate(j.tape)[0]
    assert "np.full((37, )" not in text and "[0:5] = 0.0" in text


def test_stacked_rows_are_views_of_one_allocation():
    from fastad.backends import numba_codegen
    f = _stack_of([0, 1, 2, 3], 1.5)
    x = np.linspace(-1, 1, 30)
    j = fa.jit(f, backend="numpy")
    j(x, x)
    placed, stacks, stacked = numba_codegen._stacked_rows(j.tape)
    assert len(stacks) == 1 and len(stacked) == 4
    # candidates: every row (the input's is a view of x, so its block gets a copy)
    assert {where[1] for where in placed.values()} == {0, 30, 60, 90}
    if "numba" in BACKENDS:
        from fastad.backends import numba_backend
        text = numba_backend.generate(j.tape)[0]
        assert text.count("np.empty((4, 30, )") == 1 and "np.stack" not in text
        # the loop's rows and the adjoint's are views of their blocks, x's is copied
        assert "_flat[0:30]" in text and "_flat[90:120]" in text
    # overlapping blocks are not a stack made in place
    from fastad import numpy as fnp

    def overlapping(x):
        out = fnp.zeros(40)
        out[0:30] = np.sin(x)
        out[10:40] = np.cos(x)
        return out
    j = fa.jit(overlapping, backend="numpy")
    want = np.concatenate([np.sin(x[:10]), np.cos(x)])
    np.testing.assert_array_equal(j(x), want)
    if "numba" in BACKENDS:
        np.testing.assert_array_equal(fa.jit(overlapping, backend="numba")(x), want)
    assert numba_codegen._stacked_rows(j.tape)[1] == {}


def test_products_with_constant_matrices_cost_their_nonzeros(monkeypatch):
    n = 3000
    a = (np.diag(np.full(n, 2.0)) - np.eye(n, k=1) - np.eye(n, k=-1))  # dense storage

    def f(x):
        return np.sin(a @ x) * x
    x = np.linspace(-1, 1, n)
    s = fa.sparsity(f)(x)
    assert s.jacobian.nnz == 3 * n - 2 and s.ncolors["columns"] == 3
    small = np.linspace(-1, 1, 40)

    def g(x):
        m = x.reshape(5, 8)
        return np.sum(np.tanh(m @ m.T) * (m[:, :5] @ m[:5, :]).sum())
    want = fa.sparsity(g)(small)
    from fastad.sparse import patterns as pat
    monkeypatch.setattr(pat, "MATMUL_PAIRS", 0)  # the whole-row-and-column rule
    got = fa.sparsity(g)(small)
    assert (got.jacobian != want.jacobian).nnz == 0
    assert covers(got.hessian, want.hessian.toarray())
    close(fa.hessian(g, sparse=True)(small), np.asarray(fa.hessian(g)(small)))


def test_a_derivative_that_is_not_sparse_is_refused_before_memory_runs_out(monkeypatch):
    from fastad.sparse import patterns as pat
    monkeypatch.setattr(pat, "MAX_NONZEROS", 10_000)
    with pytest.raises(pat.NotSparse, match="cumulative sum"):
        fa.jacobian(np.cumsum, sparse=True)(np.ones(200))
    fa.jacobian(np.cumsum, sparse=True)(np.ones(100))  # 5050 nonzeros: fine
    monkeypatch.setattr(pat, "MAX_NONZEROS", 2_000)
    with pytest.raises(pat.NotSparse, match="nonlinear"):
        fa.hessian(lambda x: np.log(np.sum(x ** 2)), sparse=True)(np.ones(100))
    def repeated(x):  # 3000 rows of one element each, 10 distinct: taken in chunks
        return np.sum(np.sin(np.broadcast_to(x[:10], (300, 10))) * x[10])
    x = np.linspace(0, 1, 11)
    close(fa.hessian(repeated, sparse=True)(x), np.asarray(fa.hessian(repeated)(x)))


def test_compiled_sparse_plans_hold_for_the_integer_arguments_they_saw():
    """An integer argument is data to the compiled function's signature but a
    constant of the pattern's tape: a plan is kept per integer value."""
    def f(x, n):
        return np.concatenate([x[:n] ** 2, np.sin(x[n:]) * 3.0])

    x = np.linspace(0.1, 1.0, 6)
    g = fa.jit(f)
    for n in (2, 4, 2, 5):
        got = g.jacobian(x, n, sparse=True).toarray()
        want = fa.jacobian(lambda x: f(x, n))(x)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# -- IPOPT ---------------------------------------------------------------------------
def hs071_problem():
    from scipy.optimize import NonlinearConstraint

    def objective(x):
        return x[0] * x[3] * np.sum(x[:3]) + x[2]
    constraints = [NonlinearConstraint(lambda x: np.prod(x), 25.0, np.inf),
                   NonlinearConstraint(lambda x: np.sum(x ** 2), 40.0, 40.0)]
    return objective, np.array([1.0, 5.0, 5.0, 1.0]), constraints


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(2))
def test_ipopt_is_given_the_exact_sparse_jacobian_and_lagrangian_hessian(backend, seed):
    # the problem object needs no IPOPT: its values against dense derivatives
    from scipy.optimize import NonlinearConstraint

    from fastad.minimize import _IpoptProblem
    rng = np.random.default_rng(seed)
    n = 30
    problem = _IpoptProblem(spring_chain, rng.uniform(-1, 1, n), (),
                            [NonlinearConstraint(collocation, 0.0, 0.0),
                             NonlinearConstraint(lambda x: x[::3] * x[1::3], -1.0, 1.0)],
                            backend)
    x, s, lam = rng.uniform(-1, 1, n), rng.uniform(0.5, 2), rng.standard_normal(problem.m)

    def constraints(v):
        return np.concatenate([collocation(v), v[::3] * v[1::3]])
    assert problem.m == n - 1 + n // 3 and problem.cl.shape == problem.cu.shape == (problem.m,)
    np.testing.assert_allclose(problem.constraints(x), constraints(x), rtol=1e-13)
    np.testing.assert_allclose(problem.objective(x), spring_chain(x), rtol=1e-13)
    np.testing.assert_allclose(problem.gradient(x), fa.grad(spring_chain)(x), rtol=1e-12)
    rows, cols = problem.jacobianstructure()
    dense_j = np.asarray(fa.jacobian(constraints)(x))
    np.testing.assert_allclose(problem.jacobian(x), dense_j[rows, cols], rtol=1e-12)
    assert np.count_nonzero(dense_j) <= rows.size < dense_j.size // 4
    rows, cols = problem.hessianstructure()
    assert np.all(rows >= cols)  # one triangle
    dense_h = np.asarray(fa.hessian(lambda v: s * spring_chain(v) + lam @ constraints(v))(x))
    np.testing.assert_allclose(problem.hessian(x, lam, s), dense_h[rows, cols],
                               rtol=1e-10, atol=1e-12)
    lower = np.tril(dense_h)
    assert np.count_nonzero(lower) <= rows.size < lower.size // 4


def test_ipopt_refuses_a_pattern_that_changes_between_calls():
    from fastad.minimize import _IpoptProblem

    def branchy(x):
        if x[0] > 0:
            return np.sum(x ** 4)
        return np.sum(x[1:] * x[:-1]) ** 2
    problem = _IpoptProblem(branchy, np.ones(8), (), [], COMPILED)
    problem.hessianstructure()
    problem.hessian(np.ones(8), np.zeros(0), 1.0)
    with pytest.raises(ValueError, match="pattern changed"):
        problem.hessian(-np.ones(8), np.zeros(0), 1.0)


def test_ipopt_without_cyipopt_says_what_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cyipopt", None)
    objective, x0, constraints = hs071_problem()
    with pytest.raises(ImportError, match="fastad\\[ipopt\\]"):
        fa.minimize(objective, x0, method="ipopt", constraints=constraints)


def test_ipopt_solves_constrained_problems_as_trust_constr_does():
    from scipy.optimize import NonlinearConstraint
    pytest.importorskip("cyipopt")
    objective, x0, constraints = hs071_problem()
    r = fa.minimize(objective, x0, method="ipopt", bounds=[(1, 5)] * 4,
                    constraints=constraints, options={"tol": 1e-10})
    exact = [NonlinearConstraint(c.fun, c.lb, c.ub, jac="sparse", hess="sparse")
             for c in constraints]
    ref = fa.minimize(objective, x0, method="trust-constr", bounds=[(1, 5)] * 4,
                      constraints=exact, options={"gtol": 1e-10, "maxiter": 3000})
    assert r.success and abs(r.fun - ref.fun) < 1e-5 * abs(ref.fun)
    assert constraints[0].fun(r.x) >= 25.0 - 1e-6
    assert abs(constraints[1].fun(r.x) - 40.0) < 1e-6
    assert np.all((r.x >= 1 - 1e-8) & (r.x <= 5 + 1e-8))
    # unconstrained and large: the sparse Hessian alone
    x0 = np.full(2000, -0.5)
    r = fa.minimize(spring_chain, x0, method="ipopt")
    ref = fa.minimize(spring_chain, x0, method="trust-constr", hess="sparse",
                      options={"gtol": 1e-10, "maxiter": 500})
    assert r.success and r.fun <= ref.fun + 1e-6
