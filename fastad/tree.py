"""``jax.tree``'s short names for `fastad.tree_util`'s functions:
``fastad.tree.map(f, params)`` is ``fastad.tree_util.tree_map(f, params)``."""
from .tree_util import (  # noqa: F401 - the module's names
    tree_all as all, tree_flatten as flatten, tree_flatten_with_path as flatten_with_path,
    tree_leaves as leaves, tree_leaves_with_path as leaves_with_path, tree_map as map,
    tree_map_with_path as map_with_path, tree_reduce as reduce, tree_structure as structure,
    tree_transpose as transpose, tree_unflatten as unflatten, tree_broadcast as broadcast,
    tree_reduce_associative as reduce_associative)

__all__ = ["all", "flatten", "flatten_with_path", "leaves", "leaves_with_path", "map",
           "map_with_path", "reduce", "structure", "transpose", "unflatten", "broadcast",
           "reduce_associative", "static"]


def static(**kwargs):
    """A dataclass field that `register_dataclass` takes as static (aux) data."""
    import dataclasses
    metadata = dict(kwargs.pop("metadata", None) or {}, static=True)
    return dataclasses.field(metadata=metadata, **kwargs)
