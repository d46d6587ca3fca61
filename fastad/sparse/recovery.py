"""Recovery of an acyclically colored Hessian's values: subtractions, then one gather.

The compressed product of an acyclic coloring, (H S)^T flattened (p, n),
holds at entry (b, u) the sum of H[u, j] over the neighbors j of u of color
b (and, at (c(u), u), the diagonal alone).  An entry with one such neighbor
holds that nonzero alone (*direct*); an edge both of whose entries sum
several (*chained*) is recovered by substitution: once its entry's other
edges are subtracted from it, the entry holds the edge alone
(`_peel` finds the order, leaf by leaf of the two-colored trees).

After the subtractions every nonzero is the value of one entry, so a call is
two loops: the subtractions (an edge's entry minus into the entry that
needs it, in the peel's order; none for an entry nobody reads afterwards)
and one gather from the entries into the CSR values in their order, whose
writes are sequential.  The earlier form wrote each edge's two values (the
nonzero and its mirror, rows apart) at every substitution step, four 32-bit
tables per edge and a subtraction for every edge; at n = 10^5 a 6-color
pattern has about 45 % direct edges, whose subtraction nobody needs.

A direct nonzero is read from its entry as the product holds it, never from
one with values subtracted: only chained nonzeros carry rounding from
subtraction, along their tree's path.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import coloring


@coloring._compiled
def _peel(ptr, adj, eid, colors, n, p):  # noqa: ANN001, ANN202
    """The order in which substitution recovers the edges: repeatedly a leaf
    of a two-colored tree.  Returns, per edge in that order, the compressed
    entry that holds it alone, the entry it is then subtracted from, and its
    adjacency position, and the length of the longest chain of substitutions
    (each waiting for the one before); fewer than all edges if the coloring
    is not acyclic.

    Of the entries ready (one edge left), the one of the lowest row goes
    first (the least key row * p + color): the edges are then recovered
    nearly in the order of the CSR values, and a call walks its tables, the
    product and the values front to back.  (Round by round, each round a
    sweep over all rows, a grid's 300 rounds missed the cache at every edge.)"""
    # remaining[b * n + u]: edges of u to color b not yet recovered, whose sum
    # is the compressed entry (H S)[u, b]
    remaining = np.zeros(p * n, np.int64)
    for u in range(n):
        for a in range(ptr[u], ptr[u + 1]):
            remaining[colors[adj[a]] * n + u] += 1
    nedges = adj.size // 2
    done = np.zeros(max(adj.size, 1), np.bool_)
    # the ready entries' keys u * p + b, a set (an entry becomes ready once),
    # as bits in three levels of 64-bit words, each bit of a level marking a
    # nonzero word below: the least key in three word reads (a binary heap of
    # up to p * n keys took log2 of that in dependent steps, the most of the
    # plan's time for `rods` and the mesh at n = 10^5), the same order
    def lowest(word):  # noqa: ANN001, ANN202 -- position of the lowest set bit
        at = 0  # halving the word (no multiplication that wraps: Python runs it too)
        for width in (32, 16, 8, 4, 2, 1):
            if word & ((np.uint64(1) << np.uint64(width)) - np.uint64(1)) == 0:
                word >>= np.uint64(width)
                at += width
        return at

    keys = p * n
    words0 = (keys + 63) // 64
    words1 = (words0 + 63) // 64
    words2 = (words1 + 63) // 64
    level0 = np.zeros(max(words0, 1), np.uint64)
    level1 = np.zeros(max(words1, 1), np.uint64)
    level2 = np.zeros(max(words2, 1), np.uint64)
    one = np.uint64(1)

    def push(key):  # noqa: ANN001, ANN202 -- marks key ready; its word of level 2
        w0 = key >> 6
        w1 = w0 >> 6
        level0[w0] |= one << np.uint64(key & 63)
        level1[w1] |= one << np.uint64(w0 & 63)
        level2[w1 >> 6] |= one << np.uint64(w1 & 63)
        return w1 >> 6

    low = words2  # no top word below it holds a key
    size = 0
    for u in range(n):
        for b in range(p):
            if remaining[b * n + u] == 1:
                low = min(low, push(u * p + b))
                size += 1
    src = np.empty(nedges, np.int64)
    dst = np.empty(nedges, np.int64)
    pos = np.empty(nedges, np.int64)
    # depth[k]: substitutions entry k waits for, one after another
    depth = np.zeros(p * n, np.int64)
    longest = 0
    count = 0
    while size > 0:
        while level2[low] == 0:
            low += 1
        w1 = low * 64 + lowest(level2[low])
        w0 = w1 * 64 + lowest(level1[w1])
        key = w0 * 64 + lowest(level0[w0])
        level0[w0] &= ~(one << np.uint64(key & 63))
        if level0[w0] == 0:
            level1[w1] &= ~(one << np.uint64(w0 & 63))
            if level1[w1] == 0:
                level2[low] &= ~(one << np.uint64(w1 & 63))
        size -= 1
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
                if remaining[k2] == 1:  # j's entry of u's color is ready
                    low = min(low, push(j * p + colors[u]))
                    size += 1
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
        colors = np.asarray(colors, dtype=np.int64)
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
        cols = pattern.indices.astype(np.int64)
        off = rows != cols
        # the pattern is canonical and symmetric: its off-diagonal positions,
        # in order, are the adjacency's
        a = coloring._adjacency(pattern) if adjacency is None else adjacency
        if a.nnz != int(off.sum()):
            raise ValueError("substitution needs a symmetric pattern")
        if colors.shape != (n,) or (n and colors.min() < 0):
            raise ValueError(f"a coloring of {n} vertices needs {n} colors from 0, "
                             f"got shape {colors.shape}")
        arow = np.repeat(np.arange(n, dtype=np.int64), np.diff(a.indptr))
        acol = a.indices.astype(np.int64)
        if np.any(colors[arow] == colors[acol]):  # a diagonal would share an entry
            raise ValueError("the coloring is not an acyclic coloring of the pattern "
                             "(two neighbors share a color)")
        mirror = coloring._mirror(a)
        eid = np.minimum(np.arange(a.nnz, dtype=np.int64), mirror)
        p = int(colors.max(initial=-1)) + 1
        src, dst, apos, longest = _peel(
            a.indptr.astype(np.int64), a.indices.astype(np.int64), eid, colors, n, p)
        if src.size != a.nnz // 2:
            raise ValueError("the coloring is not an acyclic coloring of the pattern")
        #: the longest chain of substitutions, each reading the one before
        #: (a path's two-colored tree is one chain: a call then waits on memory
        #: at each edge)
        self.longest_chain = int(longest)
        self.nedges = int(src.size)

        # per adjacency position (u, j): the entry holding it in row u, and
        # how many edges that entry sums
        own = colors[acol] * n + arow
        summed = np.bincount(own, minlength=p * n)
        direct = summed[own] == 1
        # the edges in the peel's order: chained when neither entry is direct
        chained = ~direct[apos] & ~direct[mirror[apos]]
        needed = np.zeros(p * n, bool)  # entries a chained edge is read from
        needed[src[chained]] = True
        # an entry read for a chained edge first loses its direct edges (read
        # where they are alone), then, in the peel's order, its chained ones
        alone = np.where(direct[apos], own[apos], own[mirror[apos]])
        other = np.where(direct[apos], own[mirror[apos]], own[apos])
        first = ~chained & needed[other]
        then = chained & needed[dst]
        minus_from = np.concatenate([alone[first], src[then]])
        minus_into = np.concatenate([other[first], dst[then]])

        # every nonzero's entry once the subtractions are done: the diagonal's
        # own, a direct nonzero's (its own row's, else its mirror's), a chained
        # edge's the one it was read from
        edge_entry = np.empty(a.nnz, np.int64)
        edge_entry[eid[apos]] = src
        at = np.where(direct, own, np.where(direct[mirror], own[mirror], edge_entry[eid]))
        table = np.empty(pattern.nnz, np.int64)
        table[~off] = colors[cols[~off]] * n + rows[~off]
        table[np.flatnonzero(off)] = at
        # a call streams these tables: 32-bit indices halve its memory traffic
        index = np.int32 if max(pattern.nnz, p * n) < 2 ** 31 else np.int64
        self.minus_from, self.minus_into = minus_from.astype(index), minus_into.astype(index)
        self.table = table.astype(index)

    def __call__(self, flat: np.ndarray, data: np.ndarray) -> None:
        """Fill ``data`` (the CSR values) from ``flat`` (overwritten)."""
        _recover(flat, data, self.minus_from, self.minus_into, self.table)
