"""NumPy's numeric scalar types that also cast traced values.

``jnp.float32(x)`` is a cast in JAX code (``jnp.int32(i)``, ``jnp.float64(t)``
on traced values), while autograd code uses ``np.float32`` as NumPy's type:
in ``dtype=``, ``isinstance``, ``issubdtype``, dictionary keys.  Each type
here is a subclass of NumPy's whose metaclass makes it both: called on a
traced value it is ``astype`` (its derivative kept for float and complex
types, an integer or boolean result without one), called on anything else
it is NumPy's own constructor, returning NumPy's scalar or array; compared,
hashed and checked with ``isinstance``/``issubclass`` it is NumPy's type.
``np.dtype`` resolves a subclass of a NumPy scalar type to that type's dtype,
so every ``dtype=`` NumPy and fastad accept takes these unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as _np

from ._base import _contains_tracer
from ._creation import asarray
from ._elementwise import astype


class _CastingScalar(type):
    """The metaclass: one NumPy scalar type, ``_base``, with a cast for traced values."""

    _base: type

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if _contains_tracer(args):
            if len(args) != 1 or kwargs:  # NumPy's scalar types take one value
                raise TypeError(f"{cls.__name__}() of a traced value takes one argument")
            return astype(asarray(args[0]), cls._base)
        return cls._base(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._base)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls._base)

    def __eq__(cls, other: Any) -> bool:
        return other is cls or other is cls._base

    def __hash__(cls) -> int:
        return hash(cls._base)

    def __repr__(cls) -> str:
        return repr(cls._base)


def _numeric_types() -> dict[str, type]:
    """NumPy's public names of concrete numeric and boolean scalar types."""
    concrete = set(_np.sctypeDict.values())
    return {name: obj for name in dir(_np) if not name.startswith("_")
            and isinstance(obj := getattr(_np, name), type) and obj in concrete
            and _np.dtype(obj).kind in "biufc"}


def casting_types() -> dict[str, type]:
    """fastad.numpy's names for NumPy's numeric scalar types: one casting
    subclass per type, under every name NumPy gives it (``double`` is
    ``float64``)."""
    made: dict[type, type] = {}
    out = {}
    for name, base in _numeric_types().items():
        if base not in made:
            made[base] = _CastingScalar(base.__name__, (base,), {
                "_base": base, "__module__": "fastad.numpy", "__slots__": ()})
        out[name] = made[base]
    return out


__all__ = ["casting_types"]
