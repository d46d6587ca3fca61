"""Helpers that optimization code written for autograd and JAX reaches for:
`flatten` (autograd's ``misc.flatten``, JAX's ``ravel_pytree``), the
optimizers of `fastad.misc.optimizers` and `fastad.misc.fixed_points`."""
from __future__ import annotations

from .flatten import flatten  # (the module first, then its function under its name)

__all__ = ["flatten"]
