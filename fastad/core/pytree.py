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


def checked_num_leaves(treedef: Any) -> int:
    """The leaf count of ``treedef``, after checking that it is a structure
    `flatten` could have made (a saved function's structures come from bytes);
    ValueError otherwise.  Iterative: a deep structure cannot overflow the stack."""
    count, stack = 0, [treedef]
    while stack:
        td = stack.pop()
        if td == LEAF:
            count += 1
            continue
        if not isinstance(td, tuple) or not td or not isinstance(td[0], str):
            raise ValueError(f"not a tree structure node: {td!r:.80}")
        kind = td[0]
        if kind == "none" and len(td) == 1:
            continue
        if kind in ("tuple", "list") and len(td) == 2 and isinstance(td[1], tuple):
            stack.extend(td[1])
            continue
        if (kind == "dict" and len(td) == 3 and isinstance(td[1], tuple)
                and isinstance(td[2], tuple) and len(td[1]) == len(td[2])):
            stack.extend(td[2])
            continue
        if (kind == "namedtuple" and len(td) == 3 and isinstance(td[1], type)
                and issubclass(td[1], tuple) and isinstance(td[2], tuple)
                and len(td[2]) == len(getattr(td[1], "_fields", ()))):
            stack.extend(td[2])
            continue
        raise ValueError(f"not a tree structure node: {td!r:.80}")
    return count
