"""Sparse Jacobians and Hessians of NumPy code: patterns detected on the tape
(`patterns`), colored (`coloring`), evaluated compressed and decompressed
into scipy.sparse CSR matrices (`derivatives`, `bidirectional`), reported
by `fastad.sparsity` (`inspection`).  See docs/design.md,
"Sparse derivatives"."""
from . import coloring, patterns
from .derivatives import CompiledSparse, Plan, hessian, jacobian
from .inspection import Sparsity, sparsity

__all__ = ["sparsity", "Sparsity", "Plan", "CompiledSparse", "jacobian", "hessian",
           "coloring", "patterns"]
