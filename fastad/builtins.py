"""autograd's ``autograd.builtins``: its container types, which autograd
needs so that tuples, lists and dicts of traced values are traced.  fastad
traces Python's own containers (pytrees), so these are Python's."""
from __future__ import annotations

import builtins as _builtins

tuple = _builtins.tuple  # noqa: A001 - autograd's names
list = _builtins.list  # noqa: A001
dict = _builtins.dict  # noqa: A001
isinstance = _builtins.isinstance  # noqa: A001
type = _builtins.type  # noqa: A001

__all__ = ["tuple", "list", "dict", "isinstance", "type"]
