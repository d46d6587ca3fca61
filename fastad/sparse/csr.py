"""The CSR matrices sparse derivatives return: a fresh data array on the
plan's structure, shared read-only rather than copied per call.

Copying ``indices`` and ``indptr`` for every result cost 0.06-0.1 ms at
n = 10^5 (6 x 10^5 to 1.3 x 10^6 nonzeros; 0.03 ms for the chained
Rosenbrock function's 3 x 10^5, two of its gradients on Numba).  Sharing them is safe only if nothing writes them:
scipy changes a matrix's structure in place in a few methods
(`eliminate_zeros` compacts it, `sum_duplicates` and `sort_indices` on a
matrix not known to be canonical, `resize` when it drops columns), and a
user may write ``H.indices`` directly.  So the shared arrays are read-only
(a direct write raises NumPy's "assignment destination is read-only"), and
`SharedCSR`, a `csr_matrix`, gives itself copies before those methods run:
the plan's pattern and every other result stay as they were.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp


class SharedCSR(sp.csr_matrix):
    """A `scipy.sparse.csr_matrix` whose ``indices`` and ``indptr`` may be
    shared read-only with other matrices; the methods that change them in
    place copy them first."""

    def _own_structure(self) -> None:
        if not self.indices.flags.writeable:
            self.indices = self.indices.copy()
        if not self.indptr.flags.writeable:
            self.indptr = self.indptr.copy()

    def asformat(self, format: str | None, copy: bool = False) -> Any:
        # scipy builds a matrix on another through its asformat, sharing the
        # arrays unless asked to copy (``csr_array(H)``); the new matrix is
        # not a SharedCSR and may change its structure in place
        # (``eliminate_zeros``), so it gets a structure of its own.  The
        # values stay shared, as scipy shares them.
        if format in (None, self.format) and not copy:
            out = like(self, self.data)
            out._own_structure()
            return out
        return super().asformat(format, copy=copy)


def _copying_first(name: str) -> Callable[..., Any]:
    method = getattr(sp.csr_matrix, name)

    @functools.wraps(method)
    def own_first(self: SharedCSR, *args: Any, **kwargs: Any) -> Any:
        self._own_structure()
        return method(self, *args, **kwargs)
    return own_first


#: scipy's methods that write a CSR matrix's indices or indptr in place
IN_PLACE = ("eliminate_zeros", "sum_duplicates", "sort_indices", "resize")
for _name in IN_PLACE:
    setattr(SharedCSR, _name, _copying_first(_name))


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a`` to share among results."""
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


def on_structure(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 shape: tuple[int, int], canonical: bool) -> SharedCSR:
    """``data`` on a structure given as read-only arrays (`frozen`), neither
    copied; ``canonical`` when it is known to be sorted without duplicates."""
    out = SharedCSR((data, indices, indptr), shape=shape, copy=False)
    if canonical:  # known once per plan: scipy need not sweep the indices again
        out.has_canonical_format = True
    return out


def like(model: SharedCSR, data: np.ndarray) -> SharedCSR:
    """``model``'s structure (shared, as `on_structure` made it) with ``data``
    (one value of the model's dtype per stored position), without scipy's
    constructor:
    a plan's results differ only in their values, and the constructor's
    checks of the structure cost 0.01-0.03 ms per call (a tenth of the
    chained Rosenbrock function's sparse Hessian at n = 10^4 on Numba).  The
    matrix's state is its attributes (scipy 1.17: the three arrays, the
    shape, the print limit and the format flags), copied."""
    out = SharedCSR.__new__(SharedCSR)
    out.__dict__.update(model.__dict__)
    out.data = data
    return out
