"""Graph colorings of sparsity patterns, and the seed and gather tables they give.

*Column coloring* (distance-2 in the bipartite row/column graph) of a
Jacobian pattern: two columns sharing a row get different colors, so J @ S
(S the n x p 0/1 seed matrix, column k seeding every column of color k)
holds each nonzero J[i, j] alone at row i, color c(j).  *Row coloring* is the
column coloring of the transpose: S^T @ J by p reverse passes.

*Star coloring* of a symmetric Hessian pattern's adjacency graph: a proper
coloring in which every path on four vertices uses at least three colors.
Then each off-diagonal nonzero H[i, j] is alone in row i at color c(j), or
in row j at color c(i) (`hessian_gather`), and H @ S needs fewer colors
than a distance-2 coloring.  The greedy algorithm is Gebremedhin, Manne and
Pothen's (SIAM Review 47, 2005, Algorithm 4.1): a vertex may not take the
color of a vertex at distance 2 through an uncolored one, nor that of a
vertex x two steps away through a colored w when x has another neighbor of
w's color.

Vertices are colored in largest-first order (by an upper bound of the
degree in the conflict graph), each with the smallest color allowed; a star
coloring is also made in smallest-last order and the one with fewer colors
kept.  The
loops run under Numba (compiled once, cached on disk); without Numba they
run as Python.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

def _compiled(fn):  # noqa: ANN001, ANN202
    """``fn`` compiled by Numba on its first call: importing fastad does not
    import Numba (nor does a process that never colors a pattern)."""
    compiled = None

    @functools.wraps(fn)
    def call(*args):  # noqa: ANN002, ANN202
        nonlocal compiled
        if compiled is None:
            try:
                from numba import njit
                compiled = njit(cache=True, nogil=True)(fn)
            except ImportError:  # pragma: no cover - Numba is a dependency
                compiled = fn
        return compiled(*args)
    return call


@_compiled
def _greedy_distance2(order, col_ptr, col_rows, row_ptr, row_cols, n):  # noqa: ANN001, ANN202
    colors = np.full(n, -1, np.int64)
    forbidden = np.full(n + 1, -1, np.int64)
    for v in order:
        for a in range(col_ptr[v], col_ptr[v + 1]):
            r = col_rows[a]
            for b in range(row_ptr[r], row_ptr[r + 1]):
                c = colors[row_cols[b]]
                if c >= 0:
                    forbidden[c] = v
        c = 0
        while forbidden[c] == v:
            c += 1
        colors[v] = c
    return colors


#: the most (vertex, color) counters `_greedy_star` keeps (int32 each); past
#: it a vertex's neighbors are searched for the color instead
STAR_COUNT_ENTRIES = 1 << 23


@_compiled
def _greedy_star(order, ptr, adj, n, limit, hub):  # noqa: ANN001, ANN202
    colors = np.full(n, -1, np.int64)
    forbidden = np.full(n + 1, -1, np.int64)
    # the hubs (`hubs`) take colors 0..k-1 of their own first: no path on four
    # vertices through a color held once has two colors, so no one's color is
    # checked through a hub, nor a hub's neighbors walked (n steps per vertex
    # next to an arrowhead's dense row and column)
    k = 0
    for v in order:
        if hub[v]:
            colors[v] = k
            k += 1
    # count[x * cap + c - k]: x's colored neighbors of color c (hubs' colors
    # are never asked for).  The test "x has a neighbor y != w of w's color"
    # is then count >= 2 (w being one) instead of a walk over x's neighbors:
    # d^2 steps per vertex rather than d^3
    cap = 8
    counted = n * cap <= limit
    count = np.zeros(n * cap if counted else 1, np.int32)
    for v in order:
        if hub[v]:
            continue
        for a in range(ptr[v], ptr[v + 1]):
            w = adj[a]
            if hub[w]:
                continue
            cw = colors[w]
            if cw >= 0:
                forbidden[cw] = v
            for b in range(ptr[w], ptr[w + 1]):
                x = adj[b]
                if x == v or hub[x]:
                    continue
                cx = colors[x]
                if cx < 0:
                    continue
                if cw < 0:
                    forbidden[cx] = v
                elif counted:
                    if count[x * cap + cw - k] >= 2:
                        forbidden[cx] = v
                else:
                    for d in range(ptr[x], ptr[x + 1]):
                        y = adj[d]
                        if y != w and colors[y] == cw:
                            forbidden[cx] = v
                            break
        c = k
        while forbidden[c] == v:
            c += 1
        colors[v] = c
        if counted and c - k >= cap:
            wider = cap
            while wider <= c - k:
                wider *= 2
            if n * wider <= limit:
                grown = np.zeros(n * wider, np.int32)
                for u in range(n):
                    for j in range(cap):
                        grown[u * wider + j] = count[u * cap + j]
                count, cap = grown, wider
            else:
                counted = False
        if counted:
            for a in range(ptr[v], ptr[v + 1]):
                count[adj[a] * cap + c - k] += 1
    return colors


@_compiled
def _smallest_last(ptr, adj, n):  # noqa: ANN001, ANN202
    """Smallest-last order of a graph: repeatedly remove a vertex of least
    remaining degree; color in the reverse order of removal (bucket queue)."""
    deg = np.empty(n, np.int64)
    for v in range(n):
        deg[v] = ptr[v + 1] - ptr[v]
    maxd = 0
    for v in range(n):
        if deg[v] > maxd:
            maxd = deg[v]
    head = np.full(maxd + 1, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    for v in range(n):
        d = deg[v]
        nxt[v] = head[d]
        if head[d] >= 0:
            prv[head[d]] = v
        head[d] = v
    removed = np.zeros(n, np.bool_)
    order = np.empty(n, np.int64)
    low = 0
    for pos in range(n - 1, -1, -1):
        while head[low] < 0:
            low += 1
        v = head[low]
        head[low] = nxt[v]
        if nxt[v] >= 0:
            prv[nxt[v]] = -1
        removed[v] = True
        order[pos] = v
        for a in range(ptr[v], ptr[v + 1]):
            w = adj[a]
            if removed[w]:
                continue
            d = deg[w]
            if prv[w] >= 0:  # unlink w from bucket d
                nxt[prv[w]] = nxt[w]
            else:
                head[d] = nxt[w]
            if nxt[w] >= 0:
                prv[nxt[w]] = prv[w]
            deg[w] = d - 1
            prv[w] = -1
            nxt[w] = head[d - 1]
            if head[d - 1] >= 0:
                prv[head[d - 1]] = w
            head[d - 1] = w
        low = low - 1 if low > 0 else 0
    return order


def _csr(p: sp.spmatrix) -> sp.csr_matrix:
    p = sp.csr_matrix(p, dtype=bool)
    p.sum_duplicates()
    return p


def _largest_first(degree: np.ndarray) -> np.ndarray:
    return np.argsort(-degree, kind="stable").astype(np.int64)


def column_coloring(pattern: sp.spmatrix) -> np.ndarray:
    """Colors (n,) of the columns of an m x n pattern: columns sharing a row differ."""
    p = _csr(pattern)
    m, n = p.shape
    if n == 0:
        return np.zeros(0, np.int64)
    pc = p.tocsc()
    pc.sort_indices()
    row_len = np.diff(p.indptr)
    # conflict degree of a column, bounded above by the lengths of its rows
    degree = np.bincount(p.indices, weights=row_len[np.repeat(np.arange(m), row_len)],
                         minlength=n)
    return _greedy_distance2(_largest_first(degree), pc.indptr.astype(np.int64),
                             pc.indices.astype(np.int64), p.indptr.astype(np.int64),
                             p.indices.astype(np.int64), n)


def row_coloring(pattern: sp.spmatrix) -> np.ndarray:
    """Colors (m,) of the rows of an m x n pattern: rows sharing a column differ."""
    return column_coloring(_csr(pattern).T)


def _adjacency(pattern: sp.spmatrix) -> sp.csr_matrix:
    """The symmetric pattern's graph: its off-diagonal nonzeros, symmetrized."""
    p = _csr(pattern)
    p = _csr(p + p.T)
    p.setdiag(False)
    p.eliminate_zeros()
    p.sort_indices()
    return p


#: a vertex is a hub (`hubs`) when its degree passes this many times the
#: mean degree, and this many times 8 (an arrowhead's dense row and column,
#: a variable every term reads); at most `HUB_COUNT` of them
HUB_DEGREE = 16
HUB_COUNT = 256


def dense(degree: np.ndarray) -> np.ndarray:
    """bool (n,): the degrees above `HUB_DEGREE` times both the mean degree and 8."""
    if degree.size == 0:
        return np.zeros(0, np.bool_)
    return degree > HUB_DEGREE * max(8.0, float(degree.mean()))


def hubs(degree: np.ndarray) -> np.ndarray:
    """The vertices the star and acyclic colorings give colors of their own
    (bool (n,)): those whose degree passes `HUB_DEGREE` times both the mean
    degree and 8, at most `HUB_COUNT`, the highest.  The greedy algorithms
    walk each neighbor's neighbors, the sum over vertices of the squared
    degree: n^2 steps for one vertex adjacent to all (0.4 s for the star
    coloring and 2.4 for the acyclic one at n = 10^4, a hundred times that
    at 10^5); a hub's color held by it alone makes the walk through it
    needless, for a color per hub (an arrowhead's star coloring has those
    2 colors either way)."""
    hub = dense(degree)
    candidates = np.flatnonzero(hub)
    if candidates.size > HUB_COUNT:
        hub[:] = False
        candidates = candidates[np.argsort(-degree[candidates], kind="stable")[:HUB_COUNT]]
    hub[candidates] = True
    return hub


def star_coloring(pattern: sp.spmatrix, adjacency: sp.csr_matrix | None = None) -> np.ndarray:
    """A star coloring (n,) of a symmetric n x n pattern's adjacency graph
    (``adjacency``, `_adjacency` of the pattern, when the caller has it)."""
    a = _adjacency(pattern) if adjacency is None else adjacency
    n = a.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    ptr, adj = a.indptr.astype(np.int64), a.indices.astype(np.int64)
    deg = np.diff(a.indptr)
    hub = hubs(deg)
    best = None
    for order in (_largest_first(deg.astype(np.float64)), _smallest_last(ptr, adj, n)):
        colors = _greedy_star(order, ptr, adj, n, STAR_COUNT_ENTRIES, hub)
        if best is None or colors.max() < best.max():
            best = colors
    return best


def _mirror(a: sp.csr_matrix) -> np.ndarray:
    """For each stored position (i, j) of a canonical symmetric pattern, the
    position of (j, i)."""
    t = sp.csr_matrix((np.arange(a.nnz, dtype=np.int64), a.indices, a.indptr),
                      shape=a.shape).T.tocsr()
    t.sort_indices()
    return t.data


def _edge_ids(a: sp.csr_matrix) -> np.ndarray:
    """For each stored position of a symmetric, sorted adjacency, the id of its
    undirected edge (the smaller of its two positions), below ``a.nnz``."""
    return np.minimum(np.arange(a.nnz, dtype=np.int64), _mirror(a))


@_compiled
def _greedy_acyclic(order, ptr, adj, eid, n, nedges, hub):  # noqa: ANN001, ANN202
    def _find(parent, e):  # noqa: ANN001, ANN202
        while parent[e] != e:  # path halving
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    colors = np.full(n, -1, np.int64)
    forbidden = np.full(n + 1, -1, np.int64)
    parent = np.arange(max(nedges, 1), dtype=np.int64)  # disjoint sets of edges: the
    first_v = np.full(max(nedges, 1), -1, np.int64)     # two-colored trees
    first_w = np.full(max(nedges, 1), -1, np.int64)
    seen = np.full(n + 1, -1, np.int64)
    seen_edge = np.zeros(n + 1, np.int64)
    # the hubs take colors 0..k-1 of their own first (as in `_greedy_star`):
    # a two-colored cycle holds each of its colors twice, so none passes
    # through a hub, whose edges are left out of the trees
    k = 0
    for v in order:
        if hub[v]:
            colors[v] = k
            k += 1
    for v in order:
        if hub[v]:
            continue
        for a in range(ptr[v], ptr[v + 1]):
            cw = colors[adj[a]]
            if cw >= 0:
                forbidden[cw] = v
        # v reaching one two-colored tree through two different neighbors
        # would close a cycle in it: forbid the tree's other color
        for a in range(ptr[v], ptr[v + 1]):
            w = adj[a]
            if colors[w] < 0 or hub[w]:
                continue
            for b in range(ptr[w], ptr[w + 1]):
                x = adj[b]
                if x == v or hub[x]:
                    continue
                cx = colors[x]
                if cx < 0 or forbidden[cx] == v:
                    continue
                t = _find(parent, eid[b])
                if first_v[t] != v:
                    first_v[t] = v
                    first_w[t] = w
                elif first_w[t] != w:
                    forbidden[cx] = v
        c = k
        while forbidden[c] == v:
            c += 1
        colors[v] = c
        # v's edges join the trees of their neighbors' edges to v's color, and
        # v's edges to neighbors of one color are one tree
        for a in range(ptr[v], ptr[v + 1]):
            w = adj[a]
            cw = colors[w]
            if cw < 0 or hub[w]:
                continue
            e = eid[a]
            if seen[cw] == v:
                r1, r2 = _find(parent, e), _find(parent, seen_edge[cw])
                if r1 != r2:
                    parent[r1] = r2
            else:
                seen[cw] = v
                seen_edge[cw] = e
            for b in range(ptr[w], ptr[w + 1]):
                if adj[b] != v and colors[adj[b]] == c:
                    r1, r2 = _find(parent, e), _find(parent, eid[b])
                    if r1 != r2:
                        parent[r1] = r2
    return colors


def acyclic_coloring(pattern: sp.spmatrix, adjacency: sp.csr_matrix | None = None
                     ) -> np.ndarray:
    """An acyclic coloring (n,) of a symmetric n x n pattern's adjacency graph:
    proper, and every two colors induce a forest.  Fewer colors than a star
    coloring (a 2-D 5-point stencil: 3-4 against 5-6); the Hessian is then
    recovered by substitution (`recovery.Substitution`) rather than read off.
    ``adjacency``: `_adjacency` of the pattern, when the caller has it."""
    a = _adjacency(pattern) if adjacency is None else adjacency
    n = a.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    ptr, adj = a.indptr.astype(np.int64), a.indices.astype(np.int64)
    eid = _edge_ids(a)
    hub = hubs(np.diff(a.indptr))
    best = None
    for order in (_largest_first(np.diff(a.indptr).astype(np.float64)),
                  _smallest_last(ptr, adj, n)):
        colors = _greedy_acyclic(order, ptr, adj, eid, n, a.nnz, hub)
        if best is None or colors.max() < best.max():
            best = colors
    return best


def is_acyclic_coloring(pattern: sp.spmatrix, colors: np.ndarray) -> bool:
    """Proper, and the subgraph of any two colors is a forest: in the graph of
    (vertex, other color) nodes, where edge (u, j) joins (u, c(j)) and
    (j, c(u)), edges = nodes - components."""
    from scipy.sparse.csgraph import connected_components
    a = sp.coo_matrix(_adjacency(pattern))
    keep = a.row < a.col
    u, j = a.row[keep].astype(np.int64), a.col[keep].astype(np.int64)
    if np.any(colors[u] == colors[j]):
        return False
    if u.size == 0:
        return True
    p = int(colors.max()) + 1
    nodes, inverse = np.unique(np.concatenate([u * p + colors[j], j * p + colors[u]]),
                               return_inverse=True)
    graph = sp.coo_matrix((np.ones(u.size), (inverse[:u.size], inverse[u.size:])),
                          shape=(nodes.size, nodes.size))
    components = connected_components(graph, directed=False)[0]
    return u.size == nodes.size - components


def distance2_coloring(pattern: sp.spmatrix) -> np.ndarray:
    """A distance-2 coloring of a symmetric pattern's graph (a star coloring too)."""
    p = _csr(pattern)
    return column_coloring(_csr(p + sp.identity(p.shape[0], dtype=bool)))


def lower_bound(pattern: sp.spmatrix, axis: int = 1) -> int:
    """The most nonzeros in a row (axis=1) or a column (axis=0): no coloring
    of the columns (rows) needs fewer colors."""
    p = _csr(pattern)
    if p.nnz == 0:
        return 0
    counts = np.diff(p.indptr) if axis == 1 else np.bincount(p.indices, minlength=p.shape[1])
    return int(counts.max())


# -- validity -------------------------------------------------------------------
def is_column_coloring(pattern: sp.spmatrix, colors: np.ndarray) -> bool:
    """No two columns of one color share a row."""
    p = sp.coo_matrix(_csr(pattern))
    keys = p.row.astype(np.int64) * (int(colors.max(initial=0)) + 1) + colors[p.col]
    return np.unique(keys).size == keys.size


def is_star_coloring(pattern: sp.spmatrix, colors: np.ndarray) -> bool:
    """Proper, and no path on four vertices has two colors: there is no edge
    (w, x) with w having another neighbor of x's color and x another of w's."""
    a = sp.coo_matrix(_adjacency(pattern))
    w, x = a.row.astype(np.int64), a.col.astype(np.int64)
    if np.any(colors[w] == colors[x]):
        return False
    count = _neighbor_color_counts(a, colors)
    return not np.any((count(w, colors[x]) >= 2) & (count(x, colors[w]) >= 2))


def _neighbor_color_counts(a: sp.coo_matrix, colors: np.ndarray):  # noqa: ANN202
    """``count(v, c)``: how many neighbors of v have color c (vectorized)."""
    p = int(colors.max(initial=0)) + 1
    keys = a.row.astype(np.int64) * p + colors[a.col]
    if a.shape[0] * p <= 1 << 26:  # a table of every (vertex, color): one pass
        table = np.bincount(keys, minlength=a.shape[0] * p)

        def count_table(v: np.ndarray, c: np.ndarray) -> np.ndarray:
            return table[v * p + c]
        return count_table
    uniq, counts = np.unique(keys, return_counts=True)

    def count(v: np.ndarray, c: np.ndarray) -> np.ndarray:
        k = v * p + c
        if uniq.size == 0:
            return np.zeros(k.shape, np.int64)
        pos = np.minimum(np.searchsorted(uniq, k), uniq.size - 1)
        return np.where(uniq[pos] == k, counts[pos], 0)
    return count


# -- seeds and decompression ------------------------------------------------------
def seed_matrix(colors: np.ndarray, dtype: np.dtype = np.float64) -> np.ndarray:
    """(p, n): row k is 1 at the columns of color k (a column of color -1 in
    none: `bidirectional`'s lines the other direction gives)."""
    p = int(colors.max(initial=-1)) + 1
    seeds = np.zeros((p, colors.size), dtype=dtype)
    seeded = np.flatnonzero(colors >= 0)
    seeds[colors[seeded], seeded] = 1
    return seeds


def column_gather(pattern: sp.csr_matrix, colors: np.ndarray) -> np.ndarray:
    """For each stored nonzero (i, j) of the CSR pattern, its position in the
    flattened compressed product of shape (p, m): c(j) * m + i."""
    m = pattern.shape[0]
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(pattern.indptr))
    return colors[pattern.indices] * m + rows


def row_gather(pattern: sp.csr_matrix, colors: np.ndarray) -> np.ndarray:
    """Position of each stored nonzero (i, j) in the flattened (p, n) product
    S^T J of a row coloring: c(i) * n + j."""
    m, n = pattern.shape
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(pattern.indptr))
    return colors[rows] * n + pattern.indices


def hessian_gather(pattern: sp.csr_matrix, colors: np.ndarray) -> np.ndarray:
    """Position of each stored nonzero (i, j) of a symmetric pattern in the
    flattened (p, n) product (H S)^T of a star coloring: c(j) * n + i when j is
    the only neighbor of i of its color, else c(i) * n + j."""
    n = pattern.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
    cols = pattern.indices.astype(np.int64)
    off = rows != cols
    a = sp.coo_matrix((np.ones(int(off.sum()), bool), (rows[off], cols[off])), shape=(n, n))
    count = _neighbor_color_counts(a, colors)
    direct = (~off) | (count(rows, colors[cols]) == 1)
    if not np.all(direct | (count(cols, colors[rows]) == 1)):
        raise ValueError("the coloring is not a star coloring of the pattern")
    return np.where(direct, colors[cols] * n + rows, colors[rows] * n + cols)


def index_table(table: np.ndarray, bound: int) -> np.ndarray:
    """A gather table of positions below ``bound`` in 32-bit integers where
    they fit: a call streams it, once per nonzero."""
    return table.astype(np.int32 if bound < 2 ** 31 else np.int64)


@_compiled
def _gather(flat, table, data):  # noqa: ANN001, ANN202
    for q in range(table.size):
        data[q] = flat[table[q]]


def gather(flat: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``flat[table]`` as one compiled loop (NumPy's fancy indexing converts a
    32-bit table and checks every index; the tables are made in range)."""
    data = np.empty(table.size, flat.dtype)
    if table.size:
        _gather(flat, table, data)
    return data
