"""Pattern detection and coloring: the faster forms of the greedy colorings
and of the plan's choice give the colors and plans of the plain forms, on
random graphs (hypothesis) and on the benchmark's patterns."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastad.sparse import coloring


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
