"""JAX's functional index updates on traced arrays: ``x.at[idx].set(v)``,
``.add``, ``.multiply``, ``.divide``, ``.power``, ``.min``, ``.max``,
``.apply`` and ``.get``, so code written for ``jax.numpy`` runs unchanged.
Each returns a new array and leaves x as it was.  Repeated indices
accumulate in every update but ``set`` (where one of the values lands), as
in JAX: the updates are the ufuncs' ``at`` methods (`_ufunc_methods`)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as _np

from ._creation import copy

# JAX's keyword arguments that only promise something about the indices
_PROMISES = frozenset({"indices_are_sorted", "unique_indices"})


class IndexUpdates:
    """``x.at``: indexing it names the elements an update applies to."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def __getitem__(self, index: Any) -> "IndexUpdate":
        return IndexUpdate(self.array, index)

    def __repr__(self) -> str:
        return f"IndexUpdates({self.array!r})"


class IndexUpdate:
    """``x.at[index]``: the functional updates of those elements."""

    __slots__ = ("array", "index")

    def __init__(self, array: Any, index: Any) -> None:
        self.array, self.index = array, index

    def get(self, **kwargs: Any) -> Any:
        _check(kwargs, "get")
        return self.array[self.index]

    def set(self, values: Any, **kwargs: Any) -> Any:
        _check(kwargs, "set")
        out = copy(self.array)
        out[self.index] = values
        return out

    def apply(self, func: Callable[[Any], Any], **kwargs: Any) -> Any:
        _check(kwargs, "apply")
        return self.set(func(self.array[self.index]))

    def _ufunc_at(self, ufunc: _np.ufunc, values: Any, kwargs: dict[str, Any], name: str) -> Any:
        _check(kwargs, name)
        out = copy(self.array)
        ufunc.at(out, self.index, values)
        return out

    def add(self, values: Any, **kwargs: Any) -> Any:
        return self._ufunc_at(_np.add, values, kwargs, "add")

    def subtract(self, values: Any, **kwargs: Any) -> Any:
        return self._ufunc_at(_np.subtract, values, kwargs, "subtract")

    def multiply(self, values: Any, **kwargs: Any) -> Any:
        return self._ufunc_at(_np.multiply, values, kwargs, "multiply")

    mul = multiply

    def divide(self, values: Any, **kwargs: Any) -> Any:
        return self._ufunc_at(_np.true_divide, values, kwargs, "divide")

    def power(self, values: Any, **kwargs: Any) -> Any:
        return self._ufunc_at(_np.power, values, kwargs, "power")

    def min(self, values: Any, **kwargs: Any) -> Any:  # noqa: A003 - JAX's name
        return self._ufunc_at(_np.minimum, values, kwargs, "min")

    def max(self, values: Any, **kwargs: Any) -> Any:  # noqa: A003 - JAX's name
        return self._ufunc_at(_np.maximum, values, kwargs, "max")


def _check(kwargs: dict[str, Any], name: str) -> None:
    """JAX's index promises are accepted; an out-of-bounds ``mode`` other than
    NumPy's (an IndexError) is refused, not silently changed."""
    mode = kwargs.get("mode")
    unknown = set(kwargs) - _PROMISES - {"mode"}
    if unknown:
        raise TypeError(f".at[...].{name}() got unexpected keyword arguments {sorted(unknown)}")
    if mode not in (None, "promise_in_bounds"):
        raise NotImplementedError(f".at[...].{name}(mode={mode!r}): out-of-bounds indices raise "
                                  "IndexError, as in NumPy; clip or filter the indices first")
