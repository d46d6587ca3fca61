"""Pattern detection and coloring: the faster forms of the greedy colorings
and of the plan's choice give the colors and plans of the plain forms, on
random graphs (hypothesis) and on the benchmark's patterns."""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastad.sparse import coloring, patterns, recovery


def _graph(seed, n, density):
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=density, random_state=rng, format="csr")
    a = ((a + a.T) != 0).astype(bool)
    return coloring._adjacency(a.tocsr())


def NO_HUBS(n):
    return np.zeros(n, np.bool_)


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
        plain = coloring._greedy_star(order, ptr, adj, n, 0, NO_HUBS(n))  # no counters: the search
        counted = coloring._greedy_star(order, ptr, adj, n, 1 << 30, NO_HUBS(n))
        # counters given up part way, when the colors outgrow the first table
        switched = coloring._greedy_star(order, ptr, adj, n, 8 * n, NO_HUBS(n))
        assert np.array_equal(plain, counted) and np.array_equal(plain, switched)
        assert coloring.is_star_coloring(a, counted)


def _with_hubs(seed, n, density, spokes):
    """A random graph plus a few vertices adjacent to many others (an
    arrowhead's dense row and column), and a random set of hubs."""
    rng = np.random.default_rng(seed)
    a = sp.lil_matrix(_graph(seed, n, density))
    for h in rng.choice(n, size=min(spokes, n), replace=False):
        others = rng.choice(n, size=int(rng.integers(0, n)), replace=False)
        a[h, others] = True
        a[others, h] = True
    a = coloring._adjacency(sp.csr_matrix(a))
    hub = rng.random(n) < 0.2
    hub[np.argsort(-np.diff(a.indptr))[:spokes]] = rng.random() < 0.8
    return a, hub


@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 80), density=st.floats(0.0, 0.3),
       spokes=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_colorings_with_hubs_are_star_and_acyclic_colorings(seed, n, density, spokes):
    """Any set of vertices may take colors of their own (`coloring.hubs`):
    the results stay star (acyclic) colorings, with the counters or without,
    and each hub's color is its alone."""
    a, hub = _with_hubs(seed, n, density, spokes)
    ptr, adj, orders = _orders(a)
    eid = coloring._edge_ids(a)
    for order in orders:
        star = coloring._greedy_star(order, ptr, adj, n, 1 << 30, hub)
        assert np.array_equal(star, coloring._greedy_star(order, ptr, adj, n, 0, hub))
        assert np.array_equal(star, coloring._greedy_star(order, ptr, adj, n, 8 * n, hub))
        assert coloring.is_star_coloring(a, star)
        acyclic = coloring._greedy_acyclic(order, ptr, adj, eid, n, a.nnz, hub)
        assert coloring.is_acyclic_coloring(a, acyclic)
        for colors in (star, acyclic):
            assert np.array_equal(np.sort(colors[hub]), np.arange(hub.sum()))
            assert not np.isin(colors[~hub], colors[hub]).any()


def test_an_arrowhead_colors_its_dense_row_and_column_alone():
    """The vertex adjacent to all is a hub (its neighbors' neighbors are not
    walked: n^2 steps before), and the colorings keep 2 colors; a band with
    an arrow gets one color more than the band alone."""
    n = 20000
    arrow = sp.lil_matrix((n, n), dtype=bool)
    arrow[-1, :] = True
    arrow[:, -1] = True
    arrow.setdiag(True)
    band = sp.diags([np.ones(n - abs(k)) for k in range(-3, 4)], list(range(-3, 4))) != 0
    for pattern, colors in ((arrow, 2), (band + sp.csr_matrix(arrow), None)):
        a = coloring._adjacency(sp.csr_matrix(pattern))
        hub = coloring.hubs(np.diff(a.indptr))
        assert np.flatnonzero(hub).tolist() == [n - 1]
        star, acyclic = coloring.star_coloring(a), coloring.acyclic_coloring(a)
        assert coloring.is_star_coloring(a, star) and coloring.is_acyclic_coloring(a, acyclic)
        if colors is None:
            alone = coloring._adjacency(sp.csr_matrix(band))
            assert star.max() == coloring.star_coloring(alone).max() + 1
            assert acyclic.max() == coloring.acyclic_coloring(alone).max() + 1
        else:
            assert star.max() + 1 == acyclic.max() + 1 == colors


def test_star_coloring_with_neighbor_counts_on_banded_and_grid_graphs():
    band = sp.diags([np.ones(3000 - abs(k)) for k in range(-6, 7)], list(range(-6, 7)))
    side = 40
    grid = sp.kronsum(sp.diags([np.ones(side - 1)] * 2, [-1, 1]),
                      sp.diags([np.ones(side - 1)] * 2, [-1, 1]))
    for pattern in (band, grid):
        a = coloring._adjacency(sp.csr_matrix(pattern != 0))
        ptr, adj, orders = _orders(a)
        for order in orders:
            assert np.array_equal(coloring._greedy_star(order, ptr, adj, a.shape[0], 0, NO_HUBS(a.shape[0])),
                                  coloring._greedy_star(order, ptr, adj, a.shape[0], 1 << 30,
                                                         NO_HUBS(a.shape[0])))


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


@coloring._compiled
def _heap_peel(ptr, adj, eid, colors, n, p):
    """`recovery._peel` as it was, with a binary heap: the reference."""
    # remaining[b * n + u]: edges of u to color b not yet recovered, whose sum
    # is the compressed entry (H S)[u, b]
    remaining = np.zeros(p * n, np.int64)
    for u in range(n):
        for a in range(ptr[u], ptr[u + 1]):
            remaining[colors[adj[a]] * n + u] += 1
    nedges = adj.size // 2
    done = np.zeros(max(adj.size, 1), np.bool_)
    heap = np.empty(p * n + nedges + 1, np.int64)  # keys u * p + b
    size = 0
    for u in range(n):  # in key order: already a heap
        for b in range(p):
            if remaining[b * n + u] == 1:
                heap[size] = u * p + b
                size += 1
    src = np.empty(nedges, np.int64)
    dst = np.empty(nedges, np.int64)
    pos = np.empty(nedges, np.int64)
    # depth[k]: substitutions entry k waits for, one after another
    depth = np.zeros(p * n, np.int64)
    longest = 0
    count = 0
    while size > 0:
        key = heap[0]  # pop the least key
        size -= 1
        heap[0] = heap[size]
        i = 0
        while True:
            low, left = i, 2 * i + 1
            if left < size and heap[left] < heap[low]:
                low = left
            if left + 1 < size and heap[left + 1] < heap[low]:
                low = left + 1
            if low == i:
                break
            heap[low], heap[i] = heap[i], heap[low]
            i = low
        u, b = key // p, key % p
        k = b * n + u
        if remaining[k] != 1:
            continue
        for a in range(ptr[u], ptr[u + 1]):
            j = adj[a]
            if colors[j] == b and not done[eid[a]]:
                done[eid[a]] = True
                remaining[k] = 0
                k2 = colors[u] * n + j
                remaining[k2] -= 1
                if remaining[k2] == 1:  # push its key
                    i = size
                    heap[i] = j * p + colors[u]
                    size += 1
                    while i > 0 and heap[(i - 1) // 2] > heap[i]:
                        heap[(i - 1) // 2], heap[i] = heap[i], heap[(i - 1) // 2]
                        i = (i - 1) // 2
                if depth[k2] < depth[k] + 1:
                    depth[k2] = depth[k] + 1
                    if depth[k2] > longest:
                        longest = depth[k2]
                src[count], dst[count], pos[count] = k, k2, a
                count += 1
                break
    return src[:count], dst[:count], pos[:count], longest
@coloring._compiled
def _recover(flat, data, minus_from, minus_into, table):  # noqa: ANN001, ANN202
    for k in range(minus_from.size):
        flat[minus_into[k]] -= flat[minus_from[k]]
    for q in range(table.size):
        data[q] = flat[table[q]]


class Substitution:
    """Recovery of a symmetric pattern's values (its canonical CSR order) from
    the compressed product (H S)^T, flattened (p, n), of an acyclic coloring.
    The order is fixed by the pattern: a call is one loop over the needed
    subtractions and one gather over the nonzeros.  Rounding errors add along
    a tree's paths (every coefficient is 1), never grow."""

    def __init__(self, pattern: sp.csr_matrix, colors: np.ndarray,
                 adjacency: sp.csr_matrix | None = None) -> None:
        n = pattern.shape[0]


def _proper_coloring(a):
    """Greedy distance-1 colors: proper, often not acyclic (the peel stops short)."""
    colors = np.full(a.shape[0], -1, np.int64)
    for v in range(a.shape[0]):
        used = set(colors[a.indices[a.indptr[v]:a.indptr[v + 1]]].tolist())
        colors[v] = min(set(range(len(used) + 1)) - used)
    return colors


def _peel_inputs(pattern, proper=False):
    a = coloring._adjacency(sp.csr_matrix(pattern))
    colors = _proper_coloring(a) if proper else coloring.acyclic_coloring(a, a)
    eid = coloring._edge_ids(a)
    return (a.indptr.astype(np.int64), a.indices.astype(np.int64), eid, colors, a.shape[0],
            int(colors.max(initial=-1)) + 1)


@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 120),
       density=st.floats(0.0, 0.3))
@settings(max_examples=60, deadline=None)
def test_the_peel_order_with_bit_levels_is_the_heaps(seed, n, density):
    for proper in (False, True):
        args = _peel_inputs(_graph(seed, n, density), proper)
        got, want = recovery._peel(*args), _heap_peel(*args)
        for g, w in zip(got[:3], want[:3]):
            assert np.array_equal(g, w)
        assert got[3] == want[3]


def test_the_peel_order_with_bit_levels_is_the_heaps_past_one_top_word():
    """p * n past 64^3 keys: more than one word at the top level."""
    side = 400
    grid = sp.kronsum(sp.diags([np.ones(side - 1)] * 2, [-1, 1]),
                      sp.diags([np.ones(side - 1)] * 2, [-1, 1]))
    band = sp.diags([np.ones(70000 - abs(k)) for k in range(-4, 5)], list(range(-4, 5)))
    for pattern in (grid, band):
        args = _peel_inputs(pattern != 0)
        assert args[4] * args[5] > 64 ** 3
        got, want = recovery._peel(*args), _heap_peel(*args)
        for g, w in zip(got[:3], want[:3]):
            assert np.array_equal(g, w)
        assert got[3] == want[3]


def test_the_python_forms_without_numba_give_the_compiled_results():
    """`coloring._compiled` runs the loops as Python when Numba is missing."""
    import warnings
    a = _graph(7, 60, 0.15)
    ptr, adj, orders = _orders(a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for limit in (0, 8 * 60, 1 << 30):
            assert np.array_equal(coloring._greedy_star.__wrapped__(orders[0], ptr, adj, 60, limit,
                                                                    NO_HUBS(60)),
                                  coloring._greedy_star(orders[0], ptr, adj, 60, limit, NO_HUBS(60)))
        args = _peel_inputs(a)
        got, want = recovery._peel.__wrapped__(*args), recovery._peel(*args)
        assert all(np.array_equal(g, w) for g, w in zip(got[:3], want[:3])) and got[3] == want[3]
        terms = [sp.csr_matrix(_graph(s, 60, 0.1)) for s in range(3)]
        ptrs = np.array([t.indptr for t in terms], np.int64)
        ptrs += np.cumsum([0] + [t.nnz for t in terms[:-1]])[:, None]
        cols = np.concatenate([t.indices for t in terms])
        kept = np.concatenate([t.data for t in terms]).astype(bool)
        for g, w in zip(patterns._union_rows.__wrapped__(ptrs, cols, kept, 60),
                        patterns._union_rows(ptrs, cols, kept, 60)):
            assert np.array_equal(g, w)
