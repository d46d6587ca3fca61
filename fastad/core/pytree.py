"""Pytrees: nested tuples, lists, dicts and namedtuples with array leaves,
and the classes registered as nodes (`register_node`, JAX's
``register_pytree_node``)."""
from __future__ import annotations

from typing import Any, Callable, Hashable

Treedef = Hashable  # a nested tuple describing the structure; equal trees, equal defs
LEAF = "*"

#: class -> (flatten(node) -> (children, aux), unflatten(aux, children) -> node):
#: the classes registered as pytree nodes, matched by exact type as in JAX
NODES: dict[type, tuple[Callable[[Any], tuple[Any, Any]], Callable[[Any, Any], Any]]] = {}


def register_node(cls: type, flatten_fn: Callable[[Any], tuple[Any, Any]],
                  unflatten_fn: Callable[[Any, Any], Any]) -> None:
    """Make instances of ``cls`` pytree nodes: ``flatten_fn(node)`` gives
    ``(children, aux)`` (aux hashable: it is part of the structure, which
    keys compiled functions), ``unflatten_fn(aux, children)`` rebuilds one."""
    if not isinstance(cls, type):
        raise TypeError(f"register_pytree_node: expected a class, got {cls!r}")
    if cls in (tuple, list, dict, type(None)) or cls in NODES:
        raise ValueError(f"{cls.__qualname__} is already a pytree node")
    if not (callable(flatten_fn) and callable(unflatten_fn)):
        raise TypeError("register_pytree_node: flatten and unflatten must be callables")
    NODES[cls] = (flatten_fn, unflatten_fn)


def flatten(tree: Any) -> tuple[list[Any], Treedef]:
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> Treedef:
    node = NODES.get(type(tree))
    if node is not None:
        return _flatten_node(tree, node[0], leaves)
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


def _flatten_node(tree: Any, flatten_fn: Callable[[Any], tuple[Any, Any]],
                  leaves: list[Any]) -> Treedef:
    children, aux = flatten_fn(tree)
    try:
        hash(aux)
    except TypeError:
        raise TypeError(f"the auxiliary data of a {type(tree).__qualname__} pytree node must be "
                        f"hashable (it is part of the tree's structure), got "
                        f"{type(aux).__name__}") from None
    return ("custom", type(tree), aux, tuple(_flatten(c, leaves) for c in children))


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
    if kind == "custom":
        return NODES[td[1]][1](td[2], [_unflatten(c, it) for c in td[3]])
    if kind == "static":
        return td[1]
    return None


def held_static(treedef: Treedef, leaves: list[Any], static: Callable[[Any], bool]
                ) -> tuple[list[Any], Treedef]:
    """``leaves`` and ``treedef`` with each leaf for which ``static(leaf)``
    holds moved into the structure, as a node ``("static", leaf)`` with no
    leaves that `unflatten` gives back as it is: a compiled function's
    results that no tape computes (the strings of an aux)."""
    if not any(static(leaf) for leaf in leaves):
        return leaves, treedef
    it = iter(leaves)
    kept: list[Any] = []

    def rebuild(td: Treedef) -> Treedef:
        if td == LEAF:
            leaf = next(it)
            if static(leaf):
                return ("static", leaf)
            kept.append(leaf)
            return LEAF
        kind = td[0]
        if kind in ("namedtuple", "dict"):
            return (kind, td[1], tuple(rebuild(c) for c in td[2]))
        if kind in ("tuple", "list"):
            return (kind, tuple(rebuild(c) for c in td[1]))
        if kind == "custom":
            return (kind, td[1], td[2], tuple(rebuild(c) for c in td[3]))
        return td
    return kept, rebuild(treedef)


def num_leaves(treedef: Treedef) -> int:
    if treedef == LEAF:
        return 1
    kind = treedef[0]
    children = treedef[2] if kind in ("namedtuple", "dict") else (
        treedef[1] if kind in ("tuple", "list") else treedef[3] if kind == "custom" else ())
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
        if kind == "static" and len(td) == 2 and isinstance(td[1], (str, bytes)):
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
