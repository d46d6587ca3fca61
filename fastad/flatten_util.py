"""``jax.flatten_util``: ``ravel_pytree(tree) -> (vector, unravel)``, the
same as `fastad.flatten` (autograd's ``misc.flatten``)."""
from __future__ import annotations

from .misc.flatten import flatten as ravel_pytree

__all__ = ["ravel_pytree"]
