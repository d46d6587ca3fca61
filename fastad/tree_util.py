"""``jax.tree_util``'s names over fastad's pytrees (nested tuples, lists,
dicts and namedtuples; None is an empty subtree, as in JAX; and the classes
registered with `register_pytree_node`, `register_pytree_node_class` or
`register_dataclass`), so code written for JAX's tree functions runs
unchanged: ``import fastad.tree_util as tu``.  Registered classes are
arguments and results of every transformation, compiled or not."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

from .core import pytree

__all__ = ["tree_flatten", "tree_unflatten", "tree_leaves", "tree_structure", "tree_map",
           "tree_reduce", "tree_all", "tree_transpose", "register_pytree_node",
           "register_pytree_node_class", "register_pytree_with_keys", "register_dataclass",
           "Partial", "SequenceKey", "DictKey", "GetAttrKey", "FlattenedIndexKey", "keystr",
           "tree_flatten_with_path", "tree_leaves_with_path", "tree_map_with_path",
           "all_leaves", "treedef_is_leaf", "tree_reduce_associative", "flatten_one_level",
           "tree_broadcast", "register_static", "register_pytree_with_keys_class",
           "treedef_children", "treedef_tuple", "PyTreeDef", "KeyEntry", "KeyPath"]


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None
                 ) -> tuple[list[Any], Any]:
    """``(leaves, treedef)``, the leaves in fastad's order (a dict's by sorted
    key); ``is_leaf(node)`` True makes a node one leaf."""
    if is_leaf is None:
        leaves, treedef = pytree.flatten(tree)
        return leaves, PyTreeDef(treedef) if type(treedef) is tuple else treedef
    leaves = [leaf for _, leaf in _with_paths(tree, (), is_leaf)]
    treedef = pytree.flatten(_map_until(lambda _: 0, tree, (), is_leaf))[1]
    return leaves, PyTreeDef(treedef) if type(treedef) is tuple else treedef


def tree_unflatten(treedef: Any, leaves: Any) -> Any:
    return pytree.unflatten(treedef, list(leaves))


def tree_leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list[Any]:
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    return tree_flatten(tree, is_leaf)[1]


def all_leaves(iterable: Any) -> bool:
    """Whether every item is a leaf (not a pytree node)."""
    return all(pytree.flatten(x)[1] == pytree.LEAF for x in iterable)


def treedef_is_leaf(treedef: Any) -> bool:
    return treedef == pytree.LEAF


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
    if is_leaf(node):  # (None too, where is_leaf selects it: JAX's)
        return f(node, *rest)
    if node is None:
        return None
    registered = pytree.NODES.get(type(node))
    if registered is not None:
        children, aux = registered[0](node)
        others = [registered[0](o)[0] for o in rest]
        return registered[1](aux, [_map_until(f, c, tuple(o[i] for o in others), is_leaf)
                                   for i, c in enumerate(children)])
    if isinstance(node, dict):
        return type(node)((k, _map_until(f, v, tuple(o[k] for o in rest), is_leaf))
                          for k, v in node.items())
    if isinstance(node, (tuple, list)):
        parts = [_map_until(f, v, tuple(o[i] for o in rest), is_leaf) for i, v in enumerate(node)]
        if hasattr(node, "_fields"):  # a namedtuple
            return type(node)(*parts)
        return type(node)(parts)
    return f(node, *rest)


def tree_reduce(f: Callable[[Any, Any], Any], tree: Any, initializer: Any = None,
                is_leaf: Callable[[Any], bool] | None = None) -> Any:
    leaves = tree_leaves(tree, is_leaf)
    return functools.reduce(f, leaves) if initializer is None else functools.reduce(
        f, leaves, initializer)


_NO_IDENTITY = object()


def tree_reduce_associative(operation: Callable[[Any, Any], Any], tree: Any, *,
                            identity: Any = _NO_IDENTITY,
                            is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``operation`` (associative) over the leaves; ``identity`` for none."""
    leaves = tree_leaves(tree, is_leaf)
    if not leaves:
        if identity is _NO_IDENTITY:
            raise TypeError("tree_reduce_associative of a tree without leaves needs identity")
        return identity
    return functools.reduce(operation, leaves)


def flatten_one_level(tree: Any) -> tuple[list[Any], Any]:
    """The children of the tree's root node and its metadata (a dict's sorted
    keys, a registered node's aux data; None for lists and tuples)."""
    registered = pytree.NODES.get(type(tree))
    if registered is not None:
        children, aux = registered[0](tree)
        return list(children), aux
    if isinstance(tree, dict):
        keys = tuple(sorted(tree))
        return [tree[k] for k in keys], keys
    if isinstance(tree, (tuple, list)):
        return list(tree), None
    if tree is None:
        return [], None
    raise ValueError(f"flatten_one_level: a leaf ({type(tree).__name__}) is not a node")


def tree_broadcast(prefix_tree: Any, full_tree: Any,
                   is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``prefix_tree`` with each leaf repeated over the subtree of
    ``full_tree`` at its place (JAX's prefix broadcasting)."""
    if (is_leaf is not None and is_leaf(prefix_tree)) or \
            pytree.flatten(prefix_tree)[1] == pytree.LEAF:
        return tree_map(lambda _: prefix_tree, full_tree, is_leaf=is_leaf)
    prefix_children, prefix_aux = flatten_one_level(prefix_tree)
    full_children, full_aux = flatten_one_level(full_tree)
    if type(prefix_tree) is not type(full_tree) or prefix_aux != full_aux \
            or len(prefix_children) != len(full_children):
        raise ValueError(f"tree_broadcast: {type(prefix_tree).__name__} node is not a prefix of "
                         f"the full tree's {type(full_tree).__name__}")
    children = [tree_broadcast(p, f, is_leaf) for p, f in zip(prefix_children, full_children)]
    if isinstance(full_tree, dict):
        return type(full_tree)(zip(prefix_aux, children))
    return _rebuilt(prefix_tree, children)


def _rebuilt(node: Any, children: list[Any]) -> Any:
    registered = pytree.NODES.get(type(node))
    if registered is not None:
        return registered[1](registered[0](node)[1], children)
    if hasattr(node, "_fields"):
        return type(node)(*children)
    return type(node)(children)


def register_static(cls: type) -> type:
    """Instances of ``cls`` as pytree nodes with no children: the instance
    itself is the (hashable) auxiliary data, compiled in."""
    register_pytree_node(cls, lambda x: ((), x), lambda aux, _: aux)
    return cls


def register_pytree_with_keys_class(cls: type) -> type:
    """Class decorator: ``tree_flatten_with_keys(self) -> (((key, child), ...),
    aux)`` and the classmethod ``tree_unflatten(aux, children)``."""
    register_pytree_with_keys(cls, lambda x: x.tree_flatten_with_keys(), cls.tree_unflatten)
    return cls


def treedef_children(treedef: Any) -> list[Any]:
    """The structures of the root's children."""
    if treedef == pytree.LEAF or treedef[0] == "none":
        return []
    kind = treedef[0]
    return list(treedef[2] if kind in ("namedtuple", "dict") else
                treedef[1] if kind in ("tuple", "list") else treedef[3])


def treedef_tuple(treedefs: Sequence[Any]) -> Any:
    """The structure of a tuple of trees of these structures."""
    return PyTreeDef(("tuple", tuple(treedefs)))


class PyTreeDef(tuple):
    """A tree's structure (`tree_structure`): fastad's nested tuple (equal to
    it, hashed as it, accepted wherever it is), with the methods of JAX's
    ``PyTreeDef``.  A leaf's structure is the string `pytree.LEAF`."""

    __slots__ = ()

    @property
    def num_leaves(self) -> int:
        return sum(1 if c == pytree.LEAF else PyTreeDef(c).num_leaves
                   for c in treedef_children(self))

    @property
    def num_nodes(self) -> int:
        return 1 + sum(1 if c == pytree.LEAF else PyTreeDef(c).num_nodes
                       for c in treedef_children(self))

    def unflatten(self, leaves: Any) -> Any:
        return tree_unflatten(self, leaves)

    def children(self) -> list[Any]:
        return [c if c == pytree.LEAF else PyTreeDef(c) for c in treedef_children(self)]

    def flatten_up_to(self, tree: Any) -> list[Any]:
        """The subtrees of ``tree`` at this structure's leaves."""
        probe = pytree.unflatten(self, [0] * self.num_leaves)  # a tree of this structure
        children, aux = flatten_one_level(tree) if tree is not None or probe is None else ([], 0)
        probe_children, probe_aux = flatten_one_level(probe) if probe is not None else ([], None)
        if type(tree) is not type(probe) or aux != probe_aux or \
                len(children) != len(probe_children):
            raise ValueError(f"flatten_up_to: a {type(tree).__name__} where the structure "
                             f"has a {type(probe).__name__} of {len(probe_children)} children")
        out: list[Any] = []
        for c, child in zip(treedef_children(self), children):
            out.extend([child] if c == pytree.LEAF else PyTreeDef(c).flatten_up_to(child))
        return out

    def __repr__(self) -> str:
        return f"PyTreeDef({tree_unflatten(self, ['*'] * self.num_leaves)!r})"


KeyEntry = Any
KeyPath = tuple


def tree_all(tree: Any) -> bool:
    return all(pytree.flatten(tree)[0])


def tree_transpose(outer_treedef: Any, inner_treedef: Any, pytree_to_transpose: Any) -> Any:
    """A tree of structure outer(inner(leaves)) as inner(outer(leaves))."""
    leaves = pytree.flatten(pytree_to_transpose)[0]
    n_out, n_in = pytree.num_leaves(outer_treedef), pytree.num_leaves(inner_treedef)
    if len(leaves) != n_out * n_in:
        raise TypeError("tree_transpose: the tree does not have the structure outer(inner)")
    groups = [leaves[i * n_in:(i + 1) * n_in] for i in range(n_out)]
    return pytree.unflatten(inner_treedef, [pytree.unflatten(outer_treedef, [g[j] for g in groups])
                                            for j in range(n_in)])


# -- registering classes as pytree nodes ------------------------------------

def register_pytree_node(nodetype: type, flatten_func: Callable[[Any], tuple[Any, Any]],
                         unflatten_func: Callable[[Any, Any], Any],
                         flatten_with_keys_func: Callable[[Any], Any] | None = None) -> None:
    """Make ``nodetype``'s instances pytree nodes: ``flatten_func(x)`` returns
    ``(children, aux_data)``, aux_data hashable (part of the structure, which
    keys compiled functions: a new aux_data traces again), and
    ``unflatten_func(aux_data, children)`` rebuilds an instance."""
    pytree.register_node(nodetype, flatten_func, unflatten_func)
    if flatten_with_keys_func is not None:
        _KEYED[nodetype] = flatten_with_keys_func


def register_pytree_with_keys(nodetype: type, flatten_with_keys: Callable[[Any], Any],
                              unflatten_func: Callable[[Any, Any], Any],
                              flatten_func: Callable[[Any], Any] | None = None) -> None:
    """`register_pytree_node` whose flatten gives ``((key, child), ...), aux``:
    the keys name the children in paths (`tree_flatten_with_path`)."""
    def flatten(x: Any) -> tuple[list[Any], Any]:
        keyed, aux = flatten_with_keys(x)
        return [child for _, child in keyed], aux
    register_pytree_node(nodetype, flatten_func or flatten, unflatten_func, flatten_with_keys)


def register_pytree_node_class(cls: type) -> type:
    """Class decorator: ``cls.tree_flatten(self) -> (children, aux)`` and the
    classmethod ``cls.tree_unflatten(aux, children)`` make it a pytree node."""
    register_pytree_node(cls, lambda x: x.tree_flatten(), cls.tree_unflatten)
    return cls


def register_dataclass(nodetype: type, data_fields: Sequence[str] | None = None,
                       meta_fields: Sequence[str] | None = None,
                       drop_fields: Sequence[str] = ()) -> type:
    """A dataclass as a pytree node (also a class decorator): its
    ``data_fields`` are children (arrays: differentiated, traced), its
    ``meta_fields`` auxiliary data (hashable, compiled in).  Without the lists,
    a field declared with ``field(metadata={"static": True})`` is meta and
    every other field data, as in JAX."""
    if data_fields is None and meta_fields is None:
        if not dataclasses.is_dataclass(nodetype):
            raise TypeError(f"register_dataclass: {nodetype.__qualname__} is not a dataclass; "
                            "pass data_fields and meta_fields")
        fields = [f for f in dataclasses.fields(nodetype) if f.init and f.name not in drop_fields]
        meta_fields = [f.name for f in fields if f.metadata.get("static", False)]
        data_fields = [f.name for f in fields if not f.metadata.get("static", False)]
    data, meta = tuple(data_fields or ()), tuple(meta_fields or ())
    names = data + meta

    def flatten_with_keys(x: Any) -> tuple[list[Any], Any]:
        return [(GetAttrKey(n), getattr(x, n)) for n in data], tuple(getattr(x, n) for n in meta)

    def unflatten(aux: Any, children: Any) -> Any:
        return nodetype(**dict(zip(names, tuple(children) + tuple(aux))))
    register_pytree_with_keys(nodetype, flatten_with_keys, unflatten)
    return nodetype


class Partial(functools.partial):
    """``jax.tree_util.Partial``: a ``functools.partial`` that is a pytree
    (its arguments are children, the function auxiliary data), so it can be
    passed to and returned from transformed functions."""


register_pytree_node(Partial, lambda p: ((p.args, p.keywords), p.func),
                     lambda func, children: Partial(func, *children[0], **children[1]))


# -- paths --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SequenceKey:
    idx: int

    def __str__(self) -> str:
        return f"[{self.idx!r}]"


@dataclasses.dataclass(frozen=True)
class DictKey:
    key: Any

    def __str__(self) -> str:
        return f"[{self.key!r}]"


@dataclasses.dataclass(frozen=True)
class GetAttrKey:
    name: str

    def __str__(self) -> str:
        return f".{self.name}"


@dataclasses.dataclass(frozen=True)
class FlattenedIndexKey:
    key: int

    def __str__(self) -> str:
        return f"[<flat index {self.key}>]"


#: registered classes whose children have keys (`register_pytree_with_keys`)
_KEYED: dict[type, Callable[[Any], Any]] = {}


def keystr(keys: Sequence[Any]) -> str:
    """A path as text: ``"['a'][0].w"``."""
    return "".join(str(k) for k in keys)


def _with_paths(node: Any, path: tuple, is_leaf: Callable[[Any], bool] | None
                ) -> list[tuple[tuple, Any]]:
    """(path, leaf) pairs in flattening order."""
    if is_leaf is not None and is_leaf(node):
        return [(path, node)]
    if node is None:
        return []
    registered = pytree.NODES.get(type(node))
    if registered is not None:
        keyed = _KEYED.get(type(node))
        pairs = (keyed(node)[0] if keyed is not None else
                 [(FlattenedIndexKey(i), c) for i, c in enumerate(registered[0](node)[0])])
    elif isinstance(node, tuple) and hasattr(node, "_fields"):
        pairs = [(GetAttrKey(n), v) for n, v in zip(node._fields, node)]
    elif isinstance(node, (tuple, list)):
        pairs = [(SequenceKey(i), v) for i, v in enumerate(node)]
    elif isinstance(node, dict):
        pairs = [(DictKey(k), node[k]) for k in sorted(node)]
    else:
        return [(path, node)]
    return [pair for key, child in pairs for pair in _with_paths(child, path + (key,), is_leaf)]


def tree_flatten_with_path(tree: Any, is_leaf: Callable[[Any], bool] | None = None
                           ) -> tuple[list[tuple[tuple, Any]], Any]:
    """``([(path, leaf), ...], treedef)``; a path is a tuple of keys."""
    return _with_paths(tree, (), is_leaf), tree_structure(tree, is_leaf)


def tree_leaves_with_path(tree: Any, is_leaf: Callable[[Any], bool] | None = None
                          ) -> list[tuple[tuple, Any]]:
    return _with_paths(tree, (), is_leaf)


def tree_map_with_path(f: Callable[..., Any], tree: Any, *rest: Any,
                       is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``f(path, leaf, *others)`` leaf by leaf, in ``tree``'s structure."""
    pairs, treedef = tree_flatten_with_path(tree, is_leaf)
    others = [tree_flatten(o, is_leaf) for o in rest]
    if any(d != treedef for _, d in others):
        raise ValueError("tree_map_with_path: the trees have different structures")
    mapped = [f(path, leaf, *(o[0][k] for o in others)) for k, (path, leaf) in enumerate(pairs)]
    return tree_unflatten(treedef, mapped)
