"""``jax.tree_util``'s names over fastad's pytrees (nested tuples, lists,
dicts and namedtuples; None is an empty subtree, as in JAX), so code written
for JAX's tree functions runs unchanged: ``import fastad.tree_util as tu``."""
from __future__ import annotations

from typing import Any, Callable

from .core import pytree

__all__ = ["tree_flatten", "tree_unflatten", "tree_leaves", "tree_structure", "tree_map",
           "tree_reduce", "tree_all"]


def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, treedef)``, the leaves in fastad's order (a dict's by sorted key)."""
    return pytree.flatten(tree)


def tree_unflatten(treedef: Any, leaves: Any) -> Any:
    return pytree.unflatten(treedef, list(leaves))


def tree_leaves(tree: Any) -> list[Any]:
    return pytree.flatten(tree)[0]


def tree_structure(tree: Any) -> Any:
    return pytree.flatten(tree)[1]


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any,
             is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``f`` applied leaf by leaf to ``tree`` and the trees in ``rest``, which
    must have its structure; ``is_leaf(node)`` True stops the descent there
    (JAX's argument: a tuple taken as one value)."""
    if is_leaf is not None:
        return _map_until(f, tree, rest, is_leaf)
    leaves, treedef = pytree.flatten(tree)
    others = []
    for other in rest:
        other_leaves, other_def = pytree.flatten(other)
        if other_def != treedef:
            raise ValueError("tree_map: the trees have different structures")
        others.append(other_leaves)
    return pytree.unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])


def _map_until(f: Callable[..., Any], node: Any, rest: tuple, is_leaf: Callable[[Any], bool]
               ) -> Any:
    if is_leaf(node) or node is None:
        return node if node is None else f(node, *rest)
    if isinstance(node, dict):
        return type(node)((k, _map_until(f, v, tuple(o[k] for o in rest), is_leaf))
                          for k, v in node.items())
    if isinstance(node, (tuple, list)):
        parts = [_map_until(f, v, tuple(o[i] for o in rest), is_leaf) for i, v in enumerate(node)]
        if hasattr(node, "_fields"):  # a namedtuple
            return type(node)(*parts)
        return type(node)(parts)
    return f(node, *rest)


def tree_reduce(f: Callable[[Any, Any], Any], tree: Any, initializer: Any = None) -> Any:
    import functools
    leaves = pytree.flatten(tree)[0]
    return functools.reduce(f, leaves) if initializer is None else functools.reduce(
        f, leaves, initializer)


def tree_all(tree: Any) -> bool:
    return all(pytree.flatten(tree)[0])
