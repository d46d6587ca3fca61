"""autograd's ``autograd.misc.flatten``, JAX's ``ravel_pytree``: a pytree as
one vector and back."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import numpy as fnp
from ..core import pytree
from ..core.tracer import Tracer


def flatten(value: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(vector, unflatten)``: the leaves of a pytree (nested tuples, lists,
    dicts and namedtuples of arrays and numbers) raveled and concatenated in
    order, and the function that rebuilds the pytree from such a vector.

    Works on plain and traced values alike, so a loss can take the flat
    vector and differentiate through ``unflatten``.  Leaves keep their shapes;
    the vector has their common result dtype (float64 for numbers).
    """
    leaves, tree = pytree.flatten(value)
    shapes = [fnp.shape(leaf) for leaf in leaves]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    dtypes = [fnp.result_dtype(leaf) for leaf in leaves]
    ends = np.cumsum([0] + sizes)
    if leaves:
        # (NumPy's asarray for plain leaves: under a trace fnp.asarray would
        # make a traced constant of them, and a plain tree stays plain)
        vector = fnp.concatenate([fnp.ravel(leaf if isinstance(leaf, Tracer) else np.asarray(leaf))
                                  for leaf in leaves])
    else:
        vector = np.zeros(0)

    def unflatten(vector: Any) -> Any:
        if fnp.shape(vector) != (int(ends[-1]),):
            raise ValueError(f"unflatten: expected a vector of {int(ends[-1])} elements, got "
                             f"shape {fnp.shape(vector)}")
        parts = [fnp.reshape(vector[int(ends[k]):int(ends[k + 1])], shape)
                 for k, shape in enumerate(shapes)]
        parts = [p if fnp.result_dtype(p) == dt or dt.kind not in "fc" else fnp.astype(p, dt)
                 for p, dt in zip(parts, dtypes)]
        return pytree.unflatten(tree, parts)

    return vector, unflatten


def flatten_func(func: Callable[..., Any], example: Any) -> tuple[Callable[..., Any],
                                                                 Callable[[Any], Any], Any]:
    """autograd's ``flatten_func``: ``(flat_func, unflatten, flat_example)``,
    ``flat_func(v, *args)`` being ``func(unflatten(v), *args)`` flattened, a
    function of pytrees made one of vectors (an objective for an optimizer of
    flat arrays)."""
    flat_example, unflatten = flatten(example)

    def flat_func(v: Any, *args: Any) -> Any:
        return flatten(func(unflatten(v), *args))[0]
    return flat_func, unflatten, flat_example


__all__ = ["flatten", "flatten_func"]
