"""Recovery of sparse Hessian values from the compressed product, on generated
patterns and colorings, against the dense matrix; and the CSR results a
compiled sparse Hessian returns owning their structure and values.

`recovery.Substitution` turns the product of an acyclic coloring into the
CSR values by the needed subtractions and one gather; a nonzero alone in
its entry is read as the product holds it, so for a star coloring (every
off-diagonal nonzero alone in one of its two entries) the values are the
star coloring's gather bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.sparse import coloring, csr, derivatives, patterns, recovery
from test_sparse import COMPILED, close, hvp_matches_fd
from test_sparse_forms import landau, stencil3d


@st.composite
def symmetric_patterns(draw):
    """A canonical symmetric pattern with its diagonal: random edges, or a
    path, a cycle, a star, a 2-D grid or a band, the shapes whose trees the
    substitution walks."""
    kind = draw(st.sampled_from(["random", "path", "cycle", "star", "grid", "band"]))
    if kind == "grid":
        r, c = draw(st.integers(1, 7)), draw(st.integers(1, 7))
        n, idx = r * c, np.arange(r * c).reshape(r, c)
        edges = [*zip(idx[1:].ravel(), idx[:-1].ravel()), *zip(idx[:, 1:].ravel(),
                                                               idx[:, :-1].ravel())]
    else:
        n = draw(st.integers(1, 40))
        if kind == "random":
            edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                  max_size=3 * n))
        elif kind == "band":
            w = draw(st.integers(1, 4))
            edges = [(i, i + d) for d in range(1, w + 1) for i in range(n - d)]
        elif kind == "star":
            edges = [(0, i) for i in range(1, n)]
        else:
            edges = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if kind == "cycle" else [])
    rows = np.array([e[0] for e in edges] + list(range(n)), np.int64)
    cols = np.array([e[1] for e in edges] + list(range(n)), np.int64)
    p = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(n, n))
    return patterns.canonical(p + p.T)


@st.composite
def acyclic_colorings(draw, pattern):
    """An acyclic coloring of the pattern: the greedy acyclic or star one, one
    color per vertex, or a random coloring that happens to be acyclic."""
    n = pattern.shape[0]
    how = draw(st.sampled_from(["acyclic", "star", "distinct", "random"]))
    if how == "acyclic":
        return coloring.acyclic_coloring(pattern)
    if how == "star":
        return coloring.star_coloring(pattern)
    if how == "distinct":
        return np.array(draw(st.permutations(range(n))), np.int64)
    colors = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), np.int64)
    assume(coloring.is_acyclic_coloring(pattern, colors))
    return colors


def symmetric_values(pattern, rng):
    """A random symmetric matrix with exactly the pattern's nonzeros."""
    h = sp.triu(sp.csr_matrix(pattern, dtype=float), format="csr")
    h.data = rng.uniform(0.5, 2.0, h.nnz) * rng.choice([-1.0, 1.0], h.nnz)
    return (h + sp.triu(h, 1).T).tocsr()


def recover(pattern, colors, h):
    compressed = np.ascontiguousarray((h @ coloring.seed_matrix(colors).T).T)
    data = np.full(pattern.nnz, np.nan)
    recovery.Substitution(pattern, colors)(compressed.reshape(-1), data)
    return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2 ** 32 - 1))
def test_recovered_values_equal_the_dense_matrix(data, seed):
    pattern = data.draw(symmetric_patterns())
    colors = data.draw(acyclic_colorings(pattern))
    h = symmetric_values(pattern, np.random.default_rng(seed))
    got = recover(pattern, colors, h)
    # every nonzero written, each to rounding of the matrix it came from
    np.testing.assert_allclose(got.toarray(), h.toarray(), rtol=1e-12, atol=1e-12)
    if coloring.is_star_coloring(pattern, colors):
        # all alone in an entry: read off exactly as the star gather reads them
        compressed = np.ascontiguousarray((h @ coloring.seed_matrix(colors).T).T).reshape(-1)
        star = compressed[coloring.hessian_gather(pattern, colors)]
        assert np.array_equal(got.data, star)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_recovery_rejects_a_coloring_that_is_not_acyclic(data):
    pattern = data.draw(symmetric_patterns())
    n = pattern.shape[0]
    colors = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64)
    assume(not coloring.is_acyclic_coloring(pattern, colors))
    with pytest.raises(ValueError):
        recovery.Substitution(pattern, colors)


def test_recovery_leaves_out_the_subtractions_nobody_reads():
    # a path of 8 vertices in 2 colors is one two-colored tree: the end
    # vertices' entries hold their edge alone, every other entry sums two.
    # The walk starts at one end: that edge and the 4 chained ones after it
    # are subtracted, the last chained one's entry and the far end's edge
    # are read by nobody afterwards
    path = patterns.canonical(sp.diags([1, 1, 1], [-1, 0, 1], shape=(8, 8), dtype=bool))
    s = recovery.Substitution(path, np.arange(8) % 2)
    assert s.minus_from.size == 1 + 4 and s.table.size == path.nnz
    # a star coloring's nonzeros are all alone: no subtraction at all
    star = coloring.star_coloring(path)
    assert recovery.Substitution(path, star).minus_from.size == 0


@pytest.mark.parametrize("form", derivatives.UNBATCHED_FORMS)
def test_compiled_results_own_their_structure_and_values(monkeypatch, form):
    """A returned matrix changed in place (`eliminate_zeros`, its values)
    changes neither the plan's pattern nor a later or earlier result, also
    when a call's product array is kept for the next."""
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})

    def f(x):  # the diagonal, 12 x^2, is zero at x = 0
        return np.sum(x[1:] * x[:-1]) + np.sum(x ** 4)

    g = fa.compile(f, backend=COMPILED)
    x, zero = np.linspace(-1.0, 1.0, 9), np.zeros(9)
    g.hessian(x, sparse=True)
    g._sparse.plan("hessian", (x,), {}).extra["form"] = form
    first = g.hessian(x, sparse=True)
    kept = first.toarray()
    dropped = g.hessian(zero, sparse=True)
    dropped.eliminate_zeros()
    dropped.data *= 7.0
    assert dropped.nnz < first.nnz
    again = g.hessian(x, sparse=True)
    assert np.array_equal(first.toarray(), kept)
    assert again.nnz == first.nnz and np.array_equal(again.toarray(), kept)
    close(again, np.asarray(fa.hessian(f)(x)))


def mesh_energy(x):
    """A P1 finite-element energy on a triangulated square grid whose nodes
    are numbered in a shuffled order: gathers by index arrays, no band."""
    k = int(round(np.sqrt(x.size)))
    node = np.random.default_rng(1).permutation(k * k).reshape(k, k)
    a, b, c, d = node[:-1, :-1], node[:-1, 1:], node[1:, :-1], node[1:, 1:]
    tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                          np.stack([d, c, b], -1).reshape(-1, 3)])
    g0, g1 = x[tri[:, 1]] - x[tri[:, 0]], x[tri[:, 2]] - x[tri[:, 0]]
    return np.sum(np.sqrt(1.0 + g0 ** 2 + g1 ** 2)) + 0.25 * np.sum(x ** 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("f,n", [(stencil3d, 5 ** 3), (landau, 2 * 7 * 7), (mesh_energy, 8 * 8)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_acyclic_recovery_matches_the_dense_hessian_and_differences(monkeypatch, backend, f, n):
    """The grids' acyclic colorings, recovered, against the dense Hessian and
    central differences of the gradient, with the product kept between calls."""
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})
    g = fa.compile(f, backend=backend)
    rng = np.random.default_rng(n)
    for _ in range(3):  # the first calls time the forms; the later keep one
        x = rng.uniform(-1, 1, n)
        h = g.hessian(x, sparse=True)
        assert g._sparse.plan("hessian", (x,), {}).extra["coloring"] == "acyclic"
        close(h, np.asarray(fa.hessian(f)(x)))
        hvp_matches_fd(h, f, x, n)


@pytest.mark.parametrize("form", derivatives.UNBATCHED_FORMS)
def test_concurrent_calls_each_get_their_own_product(monkeypatch, form):
    """Threads calling one compiled sparse Hessian at once, the product array
    kept between calls: each result is its own point's Hessian."""
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})
    n = 2 * 6 * 6
    g = fa.compile(landau, backend=COMPILED)
    rng = np.random.default_rng(3)
    xs = [rng.uniform(-1, 1, n) for _ in range(12)]
    g.hessian(xs[0], sparse=True)
    g._sparse.plan("hessian", (xs[0],), {}).extra["form"] = form
    want = [g.hessian(x, sparse=True).toarray() for x in xs]  # one at a time
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: g.hessian(x, sparse=True).toarray(), xs * 10))
    for k, h in enumerate(got):
        assert np.array_equal(h, want[k % len(xs)])
    close(sp.csr_matrix(want[0]), np.asarray(fa.hessian(landau)(xs[0])))


@pytest.mark.parametrize("change", [
    lambda m: m.eliminate_zeros(),
    lambda m: m.resize(5, 4),
    lambda m: (setattr(m, "has_sorted_indices", False), m.sort_indices()),
    lambda m: (setattr(m, "has_canonical_format", False), m.sum_duplicates()),
    lambda m: m.__setitem__((0, 8), 5.0),
    lambda m: m.setdiag(0.0),
], ids=["eliminate_zeros", "resize", "sort_indices", "sum_duplicates", "setitem", "setdiag"])
@pytest.mark.parametrize("wrap", [lambda m: m, sp.csr_matrix, sp.csr_array,
                                  lambda m: sp.csr_matrix(m, copy=False)],
                         ids=["as_returned", "csr_matrix", "csr_array", "csr_matrix_no_copy"])
def test_results_share_a_read_only_structure(change, wrap):
    """Results share the plan's indices and indptr, read-only: scipy's
    methods that change them in place take copies first (`csr.SharedCSR`),
    as does a scipy matrix built on a result (which shares its arrays by
    default), so the other results and the plan's pattern keep theirs, and
    a direct write raises rather than changing them."""
    def f(x):
        return np.sum(x[1:] * x[:-1]) + np.sum(x ** 4)

    g = fa.compile(f, backend=COMPILED)
    x, zero = np.linspace(-1.0, 1.0, 9), np.zeros(9)
    first, second = g.hessian(x, sparse=True), g.hessian(zero, sparse=True)
    assert np.shares_memory(first.indices, second.indices)
    pattern = g._sparse.plan("hessian", (x,), {}).pattern.copy()
    kept = first.toarray()
    with pytest.raises(ValueError, match="read-only"):
        second.indices[0] = 1
    plain = sp.csr_matrix((second.data.copy(), second.indices.copy(), second.indptr.copy()),
                          shape=second.shape)
    second = wrap(second)
    change(second)
    change(plain)  # as on a matrix of scipy's own
    assert second.shape == plain.shape and second.nnz == plain.nnz
    assert np.array_equal(second.toarray(), plain.toarray())
    assert np.array_equal(first.toarray(), kept)
    again = g.hessian(x, sparse=True)
    assert np.array_equal(again.toarray(), kept) and again.has_canonical_format
    plan = g._sparse.plan("hessian", (x,), {}).pattern
    assert np.array_equal(plan.indices, pattern.indices) and np.array_equal(plan.indptr,
                                                                            pattern.indptr)
    close(again, np.asarray(fa.hessian(f)(x)))


def test_results_made_from_the_model_equal_scipys_own():
    """Each result after the first copies a model's attributes (`csr.like`)
    instead of running scipy's constructor: the same attributes as a matrix
    scipy makes of the same arrays, the values its own, and a change to one
    result (its shape, its flags, its structure) reaches no other."""
    def f(x):
        return np.sum(x[1:] * x[:-1]) + np.sum(np.sin(x) * x ** 2)

    g = fa.compile(f, backend=COMPILED)
    xs = [np.linspace(-1.0, 1.0, 11) * k for k in (1.0, 2.0, 3.0)]
    results = [g.hessian(x, sparse=True) for x in xs]
    for x, h in zip(xs, results):
        own = csr.SharedCSR((h.data, h.indices, h.indptr), shape=h.shape)
        own.has_canonical_format = True
        assert sorted(vars(h)) == sorted(vars(own))
        for name, value in vars(own).items():
            if name != "data":
                assert np.array_equal(getattr(h, name), value), name
        close(h, np.asarray(fa.hessian(f)(x)))
    assert len({id(h.data) for h in results}) == len(results)
    results[0].resize(4, 4)
    results[0].has_canonical_format = False
    results[0].data[:] = 0.0
    later = g.hessian(xs[1], sparse=True)
    assert later.shape == (11, 11) and later.has_canonical_format
    assert np.array_equal(later.toarray(), results[1].toarray())
