"""Jacobians by forward and reverse passes together.

A Jacobian with a dense row (a sum over all the variables: an integral or
budget constraint, a total cost) needs as many column colors as that row
has nonzeros; one with a dense column (a parameter every residual reads: a
free final time, a global scale) as many row colors as that column has.
With both, each one-directional coloring needs about n colors, n passes.

Splitting the nonzeros between the two directions removes the dense lines
from the coloring that would suffer from them: each dense row is taken by a
reverse pass (rows colored among themselves) and every other nonzero by a
column coloring in which the dense rows no longer conflict; or each dense
column by a forward pass and every other nonzero by a row coloring.  An
arrowhead's Jacobian (a band, a dense row and a dense column) then takes the
band's colors plus two or three.  This is the simplest of Coleman and
Verma's bidirectional partitions (SIAM J. Sci. Comput. 19(4), 1998), with
the dense lines chosen as the colorings choose their hubs
(`coloring.hubs`, of the row and column counts).

Why each product holds one nonzero per seed: the forward passes seed every
column of a color; where the dense rows go reverse, row i of J S at color
c(j) sums the nonzeros of a non-dense row i at the columns of c(j), of which
the coloring (made without the dense rows) leaves one.  The reverse passes
seed only the dense rows, colored so that no two of one color share a
column.  The other split is the transpose of this one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import coloring


@dataclass
class Split:
    """Which nonzeros each direction gives, and the colors of its seeds."""

    column_colors: np.ndarray  # (n,) forward seeds' colors; -1: a column not seeded
    row_colors: np.ndarray  # (m,) reverse seeds' colors; -1: a row not seeded
    forward: np.ndarray  # bool (nnz,): the pattern's nonzeros the forward passes give

    @property
    def ncolors(self) -> int:
        """Passes in all: forward colors plus reverse colors."""
        return sum(int(c.max(initial=-1)) + 1 for c in (self.column_colors, self.row_colors))


def entries(pattern: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The canonical CSR pattern of the nonzeros ``keep`` (bool, one per stored
    nonzero) of a canonical CSR pattern, in the same shape and order."""
    m = pattern.shape[0]
    counts = np.bincount(np.repeat(np.arange(m), np.diff(pattern.indptr))[keep], minlength=m)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(pattern.indptr.dtype)
    return sp.csr_matrix((np.ones(int(keep.sum()), bool), pattern.indices[keep], indptr),
                         shape=pattern.shape)


def _dense_rows_reverse(pattern: sp.csr_matrix, dense: np.ndarray) -> Split:
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    forward = ~dense[rows]
    columns = coloring.column_coloring(entries(pattern, forward))
    reverse = coloring.row_coloring(entries(pattern, ~forward))
    reverse[~dense] = -1
    return Split(columns, reverse, forward)


def _dense_columns_forward(pattern: sp.csr_matrix, dense: np.ndarray) -> Split:
    forward = dense[pattern.indices]
    columns = coloring.column_coloring(entries(pattern, forward))
    columns[~dense] = -1
    return Split(columns, coloring.row_coloring(entries(pattern, ~forward)), forward)


def best_split(pattern: sp.csr_matrix) -> Split | None:
    """The split with fewer passes, of the dense rows taken in reverse and the
    dense columns taken forward; None when no row or column is dense."""
    m, n = pattern.shape
    dense_rows = coloring.hubs(np.diff(pattern.indptr))
    dense_columns = coloring.hubs(np.bincount(pattern.indices, minlength=n))
    found = []
    if dense_rows.any():
        found.append(_dense_rows_reverse(pattern, dense_rows))
    if dense_columns.any():
        found.append(_dense_columns_forward(pattern, dense_columns))
    return min(found, key=lambda s: s.ncolors, default=None)


def is_valid(pattern: sp.csr_matrix, split: Split) -> bool:
    """Every nonzero alone in its product: a forward one at (row, its column's
    color) among the seeded columns, a reverse one at (its row's color,
    column) among the seeded rows, and every seeded line's color >= 0."""
    rows = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
    cols = pattern.indices.astype(np.int64)
    cc, rc = split.column_colors, split.row_colors
    f, r = split.forward, ~split.forward
    if np.any(cc[cols[f]] < 0) or np.any(rc[rows[r]] < 0):
        return False
    seeded = cc[cols] >= 0  # every seeded nonzero of a row adds into its color
    width = int(cc.max(initial=0)) + 1
    fkeys = rows[seeded] * width + cc[cols[seeded]]
    seeded_r = rc[rows] >= 0
    height = int(rc.max(initial=0)) + 1
    rkeys = cols[seeded_r] * height + rc[rows[seeded_r]]
    fcount = dict(zip(*np.unique(fkeys, return_counts=True)))
    rcount = dict(zip(*np.unique(rkeys, return_counts=True)))
    return (all(fcount[k] == 1 for k in rows[f] * width + cc[cols[f]])
            and all(rcount[k] == 1 for k in cols[r] * height + rc[rows[r]]))
