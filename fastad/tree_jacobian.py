"""Jacobians of functions of pytrees, as ``jax.jacrev``/``jax.jacfwd`` give
them: for a tuple ``argnums``, or an argument or a result that is a tuple,
list, dict or namedtuple of arrays, the Jacobian is the result's structure
holding, at each result leaf, the argument's structure (a tuple of them for
a tuple ``argnums``) of blocks of shape ``out_leaf.shape + in_leaf.shape``.

It is one dense Jacobian of the function with its arguments and results
flattened into vectors (`fastad.misc.flatten`), cut into those blocks; so
one batched pass, as for arrays.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .core import pytree
from .core.tracer import Tracer


def is_array(x: Any) -> bool:
    """An array or a number: what the plain Jacobian takes and gives."""
    return isinstance(x, (np.ndarray, Tracer, float, int, complex, np.number))


def tree_jacobian(array_jacobian: Callable[..., Callable[..., Any]], f: Callable[..., Any],
                  args: Sequence[Any], kwargs: dict[str, Any], nums: tuple[int, ...],
                  as_tuple: bool) -> Any:
    """The Jacobian of ``f`` at ``args`` w.r.t. the arguments ``nums`` (a tuple
    of them in the result if ``as_tuple``), from ``array_jacobian`` (the
    Jacobian of a function of one vector returning one vector)."""
    from .misc import flatten
    from . import numpy as fnp
    from .recorded import differentiable_leaf
    for i in nums:  # what grad refuses, with grad's message (not flatten's)
        for leaf in pytree.flatten(args[i])[0]:
            differentiable_leaf(leaf, f"argument {i}")
    vector, unflatten = flatten(tuple(args[i] for i in nums))
    results: list[Any] = []  # the result's structure and leaf shapes, seen while tracing

    def flat_f(v: Any) -> Any:
        call = list(args)
        for i, part in zip(nums, unflatten(v)):
            call[i] = part
        leaves, tree = pytree.flatten(f(*call, **kwargs))
        results[:] = [tree, [fnp.shape(leaf) for leaf in leaves]]
        return fnp.concatenate([fnp.ravel(fnp.asarray(leaf)) for leaf in leaves]) if leaves \
            else np.zeros(0)

    jac = array_jacobian(flat_f)(vector)
    out_tree, out_shapes = results
    arg_trees = [pytree.flatten(args[i]) for i in nums]
    rows = 0
    per_output = []
    for out_shape in out_shapes:
        n_out = int(np.prod(out_shape, dtype=np.int64))
        cols, per_argument = 0, []
        for leaves, tree in arg_trees:
            blocks = []
            for leaf in leaves:
                in_shape = fnp.shape(leaf)
                n_in = int(np.prod(in_shape, dtype=np.int64))
                blocks.append(fnp.reshape(jac[rows:rows + n_out, cols:cols + n_in],
                                          tuple(out_shape) + tuple(in_shape)))
                cols += n_in
            per_argument.append(pytree.unflatten(tree, blocks))
        per_output.append(tuple(per_argument) if as_tuple else per_argument[0])
        rows += n_out
    return pytree.unflatten(out_tree, per_output)
