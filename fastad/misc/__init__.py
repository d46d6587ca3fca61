"""Helpers that optimization code written for autograd and JAX reaches for:
`flatten` (autograd's ``misc.flatten``, JAX's ``ravel_pytree``),
`const_graph`, the optimizers of `fastad.misc.optimizers` and
`fastad.misc.fixed_points`."""
from __future__ import annotations

import functools
from typing import Any, Callable

from .flatten import flatten  # (the module first, then its function under its name)

__all__ = ["flatten", "const_graph"]


def const_graph(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """autograd's ``const_graph``: ``fun`` with ``args`` and ``kwargs`` bound
    as constants, traced on its first call and replayed after: `fastad.jit`
    of the partial function (which traces again for new shapes or types,
    where autograd's would replay a graph that no longer fits)."""
    from ..compiled import jit
    return jit(functools.partial(fun, *args, **kwargs))
