"""autograd's ``autograd.builtins``: its container types, which autograd
needs so that tuples, lists and dicts of traced values are traced (fastad
traces Python's own containers, pytrees, so these are Python's), and its
``isinstance`` and ``type``, which see a traced value as the value it
stands for (``isinstance(x, np.ndarray)`` holds for a traced array, as for
autograd's boxes)."""
from __future__ import annotations

import builtins as _builtins
from typing import Any

from .core.tracer import Tracer

tuple = _builtins.tuple  # noqa: A001 - autograd's names
list = _builtins.list  # noqa: A001
dict = _builtins.dict  # noqa: A001


def isinstance(obj: Any, classinfo: Any) -> bool:  # noqa: A001
    """Python's isinstance, of a traced value's value."""
    if _builtins.isinstance(obj, Tracer):
        return _builtins.isinstance(obj, classinfo) or _builtins.isinstance(obj.value, classinfo)
    return _builtins.isinstance(obj, classinfo)


def type(obj: Any, *rest: Any) -> Any:  # noqa: A001
    """Python's type; of a traced value, its value's type."""
    if not rest and _builtins.isinstance(obj, Tracer):
        return _builtins.type(obj.value)
    return _builtins.type(obj, *rest)


__all__ = ["tuple", "list", "dict", "isinstance", "type"]
