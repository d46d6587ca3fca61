"""Saving and loading compiled functions as bytes.

What is stored is what was compiled: for every cached signature its tapes,
and the pytree structures that rebuild results.  The user's Python function
is not stored, so a loaded function runs the signatures it was saved with on
any machine with fastad, without the source.

Loading is safe on untrusted bytes: the payload is in fastad's own format
(`fastad.core.wire`: typed, length-prefixed plain data and arrays of numeric
dtypes, parsed without recursion and without pickle, so no code runs and no
NumPy reconstruction routine sees its bytes), every tape is validated, and
every signature is checked against its tape's inputs before any backend sees
it.  ``pickle.dumps(compiled_function)`` stores ``(loads, (dumps(f),))``: the
same bytes, handed to `loads` when unpickled.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .core.errors import TapeError
from .core import wire
from .core.tape import Tape

_TYPE_MARK = "__fastad_type__"
_BUILTIN_TYPES = {t.__name__: t for t in (int, float, complex, bool, str, bytes, type(None))}
_NUMPY_TYPES = {dt.str: dt.type for dt in wire.DTYPES}


def encode(obj: Any) -> Any:
    """Signatures and tree structures as plain data: classes become marks."""
    if isinstance(obj, type):
        if obj.__name__ in _BUILTIN_TYPES and _BUILTIN_TYPES[obj.__name__] is obj:
            return (_TYPE_MARK, "builtin", obj.__name__)
        if issubclass(obj, tuple) and hasattr(obj, "_fields"):
            return (_TYPE_MARK, "namedtuple", f"{obj.__module__}:{obj.__qualname__}")
        if issubclass(obj, np.generic) and np.dtype(obj).str in _NUMPY_TYPES:
            return (_TYPE_MARK, "numpy", np.dtype(obj).str)
        raise TypeError(f"cannot save a compiled function whose signature holds the class "
                        f"{obj.__qualname__}")
    if isinstance(obj, tuple):
        return tuple(encode(x) for x in obj)
    if isinstance(obj, (int, float, complex, str, bytes, bool, type(None), np.generic)):
        return obj
    raise TypeError(f"cannot save a compiled function whose signature holds a "
                    f"{type(obj).__name__}; pass such values through a closure instead")


def decode(obj: Any) -> Any:
    if isinstance(obj, tuple):
        if len(obj) == 3 and isinstance(obj[0], str) and obj[0] == _TYPE_MARK:
            return _resolve_type(obj[1], obj[2])
        return tuple(decode(x) for x in obj)
    return obj


def _resolve_type(kind: str, name: str) -> type:
    if kind == "builtin" and name in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[name]
    if kind == "numpy" and name in _NUMPY_TYPES:  # never a string NumPy would parse
        return _NUMPY_TYPES[name]
    if kind == "namedtuple":
        module_name, _, qualname = name.partition(":")
        obj: Any = sys.modules.get(module_name)  # never import: importing runs code
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields"):
            return obj
        raise TapeError(f"the saved function's arguments use the namedtuple {qualname} of module "
                        f"{module_name}; import that module before loading")
    raise TapeError(f"invalid type mark {kind}:{name} in a saved compiled function")


def dumps(compiled: Any) -> bytes:
    """The bytes of a compiled function (``fastad.jit``/``fastad.compile``)."""
    return wire.dumps(wire.FUNCTION, compiled.__getstate__())


def loads(data: bytes) -> Any:
    """A compiled function from ``dumps``' bytes; rejects anything malformed."""
    from .compiled import CompiledGrad, Jitted
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    state = wire.loads(data, wire.FUNCTION)
    try:
        if not isinstance(state, dict) or state.get("class") not in ("jit", "compile"):
            raise TapeError("not a saved fastad compiled function")
        cls = {"jit": Jitted, "compile": CompiledGrad}[state["class"]]
        obj = cls.__new__(cls)
        obj.__setstate__(state)
    except TapeError:
        raise
    except Exception as exc:  # any malformed payload is one kind of error
        raise TapeError(f"not a valid saved compiled function: {exc!r}") from None
    return obj


def tape_from_bytes(data: Any) -> Tape:
    if not isinstance(data, bytes):
        raise TapeError("a saved tape must be bytes")
    return Tape.from_bytes(data)
