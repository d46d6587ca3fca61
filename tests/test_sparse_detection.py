"""Pattern detection and coloring: the faster forms of the greedy colorings
and of the plan's choice give the colors and plans of the plain forms, on
random graphs (hypothesis) and on the benchmark's patterns."""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastad.sparse import coloring, patterns


def _graph(seed, n, density):
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=density, random_state=rng, format="csr")
    a = ((a + a.T) != 0).astype(bool)
    return coloring._adjacency(a.tocsr())


def _orders(a):
    n = a.shape[0]
    ptr, adj = a.indptr.astype(np.int64), a.indices.astype(np.int64)
    deg = np.diff(a.indptr).astype(np.float64)
    rng = np.random.default_rng(n)
    return ptr, adj, (coloring._largest_first(deg), coloring._smallest_last(ptr, adj, n),
                      rng.permutation(n).astype(np.int64))


@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 80),
       density=st.floats(0.0, 0.4))
@settings(max_examples=60, deadline=None)
def test_star_coloring_with_neighbor_counts_equals_the_neighbor_search(seed, n, density):
    a = _graph(seed, n, density)
    ptr, adj, orders = _orders(a)
    for order in orders:
        plain = coloring._greedy_star(order, ptr, adj, n, 0)  # no counters: the search
        counted = coloring._greedy_star(order, ptr, adj, n, 1 << 30)
        # counters given up part way, when the colors outgrow the first table
        switched = coloring._greedy_star(order, ptr, adj, n, 8 * n)
        assert np.array_equal(plain, counted) and np.array_equal(plain, switched)
        assert coloring.is_star_coloring(a, counted)


def test_star_coloring_with_neighbor_counts_on_banded_and_grid_graphs():
    band = sp.diags([np.ones(3000 - abs(k)) for k in range(-6, 7)], list(range(-6, 7)))
    side = 40
    grid = sp.kronsum(sp.diags([np.ones(side - 1)] * 2, [-1, 1]),
                      sp.diags([np.ones(side - 1)] * 2, [-1, 1]))
    for pattern in (band, grid):
        a = coloring._adjacency(sp.csr_matrix(pattern != 0))
        ptr, adj, orders = _orders(a)
        for order in orders:
            assert np.array_equal(coloring._greedy_star(order, ptr, adj, a.shape[0], 0),
                                  coloring._greedy_star(order, ptr, adj, a.shape[0], 1 << 30))


@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 90), count=st.integers(1, 6),
       density=st.floats(0.0, 0.6))
@settings(max_examples=60, deadline=None)
def test_the_union_of_hessian_terms_is_scipys(seed, n, count, density):
    """Rows long and short (the sort and the insertion sort), unsorted indices,
    duplicates and stored zeros in the terms: the canonical union all the same."""
    rng = np.random.default_rng(seed)
    terms = []
    for _ in range(count):
        t = sp.random(n, n, density=density, random_state=rng, format="coo")
        rows = np.concatenate([t.row, t.row[: t.nnz // 3]])  # duplicates
        cols = np.concatenate([t.col, t.col[: t.nnz // 3]])
        data = rng.random(rows.size) < 0.9  # some stored False
        perm = rng.permutation(rows.size)
        t = sp.csr_matrix((data[perm], (rows[perm], cols[perm])), shape=(n, n))
        if rng.random() < 0.5:  # indices out of order within rows
            t = sp.csr_matrix((t.data[::-1].copy(), t.indices[::-1].copy(),
                               (t.nnz - t.indptr[::-1]).copy()), shape=(n, n))[::-1]
            t = sp.csr_matrix(t)
        terms.append(t)
    got = patterns.union_of_terms(terms, n)
    want = patterns.canonical(functools.reduce(lambda a, b: a + b,
                                               [sp.csr_matrix(t, dtype=bool) for t in terms]))
    assert got.has_canonical_format and got.dtype == bool
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert got.indices.dtype == want.indices.dtype and got.indptr.dtype == want.indptr.dtype
