"""Pytrees: nested tuples, lists, dicts and namedtuples with array leaves."""
from __future__ import annotations

from typing import Any, Hashable

Treedef = Hashable  # a nested tuple describing the structure; equal trees, equal defs
LEAF = "*"


def flatten(tree: Any) -> tuple[list[Any], Treedef]:
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> Treedef:
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return ("namedtuple", type(tree), tuple(_flatten(v, leaves) for v in tree))
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, tuple(_flatten(v, leaves) for v in tree))
    if isinstance(tree, dict):
        keys = sorted(tree)
        return ("dict", tuple(keys), tuple(_flatten(tree[k], leaves) for k in keys))
    if tree is None:
        return ("none",)
    leaves.append(tree)
    return LEAF


def unflatten(treedef: Treedef, leaves: list[Any]) -> Any:
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(td: Treedef, it: Any) -> Any:
    if td == LEAF:
        return next(it)
    kind = td[0]
    if kind == "namedtuple":
        return td[1](*(_unflatten(c, it) for c in td[2]))
    if kind == "tuple":
        return tuple(_unflatten(c, it) for c in td[1])
    if kind == "list":
        return [_unflatten(c, it) for c in td[1]]
    if kind == "dict":
        return {k: _unflatten(c, it) for k, c in zip(td[1], td[2])}
    return None


def num_leaves(treedef: Treedef) -> int:
    if treedef == LEAF:
        return 1
    children = treedef[2] if treedef[0] in ("namedtuple", "dict") else (
        treedef[1] if treedef[0] in ("tuple", "list") else ())
    return sum(num_leaves(c) for c in children)
