"""Sparse Jacobians and Hessians of NumPy code: patterns detected on the tape
(`patterns`), colored (`coloring`), evaluated compressed and decompressed
into scipy.sparse CSR matrices (`derivatives`).  See docs/design.md,
"Sparse derivatives"."""
from . import coloring, patterns
from .derivatives import CompiledSparse, Plan, Sparsity, hessian, jacobian, sparsity

__all__ = ["sparsity", "Sparsity", "Plan", "CompiledSparse", "jacobian", "hessian",
           "coloring", "patterns"]
