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
        """Passes in all: forward colors plus reverse colors (none for a
        direction that gives no nonzero)."""
        return sum(int(c.max(initial=-1)) + 1 for c, gives in
                   ((self.column_colors, self.forward.any()),
                    (self.row_colors, not self.forward.all())) if gives)


def entries(pattern: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The canonical CSR pattern of the nonzeros ``keep`` (bool, one per stored
    nonzero) of a canonical CSR pattern, in the same shape and order."""
    kept = sp.csr_matrix((keep, pattern.indices, pattern.indptr), shape=pattern.shape,
                         copy=True)  # (eliminate_zeros compacts its arrays in place)
    kept.eliminate_zeros()
    return kept


def _rows(pattern: sp.csr_matrix) -> np.ndarray:
    """The row of each stored nonzero."""
    return np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))


def _dense_rows_reverse(pattern: sp.csr_matrix, dense: np.ndarray) -> Split:
    forward = ~dense[_rows(pattern)]
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
    dense_rows = coloring.dense(np.diff(pattern.indptr))
    dense_columns = coloring.dense(np.bincount(pattern.indices, minlength=pattern.shape[1]))
    found = []
    # (beyond `coloring.HUB_COUNT` dense lines, coloring them among themselves
    # would cost k^2 n steps: the one-directional colorings are left)
    if 0 < np.count_nonzero(dense_rows) <= coloring.HUB_COUNT:
        found.append(_dense_rows_reverse(pattern, dense_rows))
    if 0 < np.count_nonzero(dense_columns) <= coloring.HUB_COUNT:
        found.append(_dense_columns_forward(pattern, dense_columns))
    return min(found, key=lambda s: s.ncolors, default=None)


def is_valid(pattern: sp.csr_matrix, split: Split) -> bool:
    """Every nonzero alone in its product: a forward one at (row, its column's
    color) among the seeded columns, a reverse one at (its row's color,
    column) among the seeded rows, and every seeded line's color >= 0."""
    rows, cols = _rows(pattern), pattern.indices.astype(np.int64)
    cc, rc = split.column_colors, split.row_colors
    f, r = split.forward, ~split.forward
    if np.any(cc[cols[f]] < 0) or np.any(rc[rows[r]] < 0):
        return False

    def alone(line: np.ndarray, color: np.ndarray, given: np.ndarray) -> bool:
        # every seeded nonzero of a line adds into its product at its color
        seeded = color >= 0
        keys = line * (int(color.max(initial=0)) + 1) + color
        found, counts = np.unique(keys[seeded], return_counts=True)
        return bool(np.all(counts[np.searchsorted(found, keys[given])] == 1))
    return alone(rows, cc[cols], f) and alone(cols, rc[rows], r)
