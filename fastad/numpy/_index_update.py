"""JAX's functional index updates on traced arrays: ``x.at[idx].set(v)``,
``.add``, ``.multiply``, ``.divide``, ``.power``, ``.min``, ``.max``,
``.apply`` and ``.get``, so code written for ``jax.numpy`` runs unchanged.
Each returns a new array and leaves x as it was.  Repeated indices
accumulate in every update but ``set`` (where one of the values lands), as
in JAX: the updates are the ufuncs' ``at`` methods (`_ufunc_methods`).

Out-of-bounds integer indices follow JAX's ``mode``: ``"clip"`` clamps them,
``"drop"`` (and ``"fill"``) sends them to one element padded past the end of
their axis, which an update writes and then slices off and ``get`` fills with
``fill_value``; ``wrap_negative_indices=False`` makes negative ones out of
bounds too.  Without a mode (or with ``"promise_in_bounds"``) they raise
NumPy's IndexError instead of JAX's silent clamp or drop."""
from __future__ import annotations

from typing import Any, Callable

import numpy as _np

from ..core.tracer import Tracer, current_builder
from ._base import _constant
from ._creation import copy
from ._gathers import is_index_data

# JAX's keyword arguments that only promise something about the indices
_PROMISES = frozenset({"indices_are_sorted", "unique_indices"})
_MODES = (None, "promise_in_bounds", "clip", "drop", "fill")


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

    def get(self, *, fill_value: Any = None, **kwargs: Any) -> Any:
        mode = _check(kwargs, "get")
        if fill_value is None and mode in ("drop", "fill"):
            fill_value = _default_fill(_np.result_type(self.array))
        array, index, _ = _bounded(self.array, self.index, mode, kwargs, fill_value)
        return array[index]

    def set(self, values: Any, **kwargs: Any) -> Any:
        return self._update(lambda out, index: out.__setitem__(index, values), kwargs, "set")

    def apply(self, func: Callable[[Any], Any], **kwargs: Any) -> Any:
        return self.set(func(self.get(**kwargs)), **kwargs)

    def _ufunc_at(self, ufunc: _np.ufunc, values: Any, kwargs: dict[str, Any], name: str) -> Any:
        return self._update(lambda out, index: ufunc.at(out, index, values), kwargs, name)

    def _update(self, write: Callable[[Any, Any], None], kwargs: dict[str, Any],
                name: str) -> Any:
        mode = _check(kwargs, name)
        out = copy(self.array)
        if not isinstance(out, Tracer) and current_builder() is not None:
            out = _constant(out)  # a plain array updated in a trace: the writes are recorded
        out, index, padded = _bounded(out, self.index, mode, kwargs, updates=True)
        write(out, index)
        if padded:  # drop the element padded past the end of each axis
            out = out[tuple(slice(0, n) if n is not None else slice(None) for n in padded)]
        if type(out) is _np.ndarray and isinstance(self.array, _np.ndarray):
            out = out.view(type(self.array))  # a jax.Array's update is one (`_array_type`)
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


def _check(kwargs: dict[str, Any], name: str) -> Any:
    """JAX's index promises are accepted; its ``mode`` and
    ``wrap_negative_indices`` are taken (see the module's docstring)."""
    unknown = set(kwargs) - _PROMISES - {"mode", "wrap_negative_indices"}
    if unknown:
        raise TypeError(f".at[...].{name}() got unexpected keyword arguments {sorted(unknown)}")
    mode = kwargs.get("mode")
    mode = getattr(mode, "name", mode)  # jax.lax.GatherScatterMode members
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in _MODES:
        raise ValueError(f".at[...].{name}(mode={kwargs.get('mode')!r}): mode must be one of "
                         "'promise_in_bounds', 'clip', 'drop' or 'fill'")
    return mode


def _default_fill(dtype: Any) -> Any:
    """JAX's fill value for out-of-bounds elements of ``get``."""
    dtype = _np.dtype(dtype)
    if dtype.kind in "fc":
        return _np.nan
    if dtype.kind == "b":
        return True
    info = _np.iinfo(dtype)
    return info.min if dtype.kind == "i" else info.max


def _bounded(array: Any, index: Any, mode: Any, kwargs: dict[str, Any],
             fill_value: Any = 0, updates: bool = False) -> tuple[Any, Any, list[Any]]:
    """(array, index, padded): ``index``'s integer parts clamped into their
    axes ('clip') or their out-of-bounds entries sent to an element padded
    past the end of the axis ('drop', 'fill': ``padded`` gives each axis's
    old length, None where nothing was padded); unchanged without a mode."""
    wrap = kwargs.get("wrap_negative_indices", True)
    if mode in (None, "promise_in_bounds") and wrap:
        return array, index, []
    shape = _np.shape(array)
    key = list(index) if isinstance(index, tuple) else [index]
    key = [_np.asarray(k) if isinstance(k, list) else k for k in key]
    taken = sum(_axes_taken(k) for k in key if k is not Ellipsis)
    padded: list[Any] = [None] * len(shape)  # per axis: (its length, elements padded)
    axis = 0
    for i, k in enumerate(key):
        if k is Ellipsis:
            axis += len(shape) - taken
            continue
        if _is_integer(k):
            n = shape[axis]
            k = _np.where(k < 0, k + n, k) if wrap else k
            if mode == "clip":
                key[i] = _np.clip(k, 0, n - 1)
            elif mode in ("drop", "fill"):
                # out of bounds: to an element padded past the end, one per
                # entry of the index where an update writes (a set writes no
                # position twice), one for all where get reads
                size = int(_np.size(k)) if updates else 1
                past = n + (_np.arange(size).reshape(_np.shape(k)) if updates else 0)
                key[i] = _np.where((k >= 0) & (k < n), k, past)
                padded[axis] = (n, max(size, padded[axis][1] if padded[axis] else 0))
            else:  # negative indices not wrapped, promised in bounds: NumPy's IndexError
                key[i] = _np.where(k >= 0, k, -1 - n)
        axis += _axes_taken(k)
    if not any(padded):
        return array, tuple(key), []
    widths = [(0, extra[1] if extra else 0) for extra in padded]
    array = _np.pad(array, widths, constant_values=fill_value)
    return array, tuple(key), [extra[0] if extra else None for extra in padded]


def _is_integer(k: Any) -> bool:
    if isinstance(k, (bool, _np.bool_)):
        return False
    if isinstance(k, (int, _np.integer)) or is_index_data(k):  # (integers held as float64)
        return True
    dtype = getattr(k, "dtype", None)
    return dtype is not None and _np.dtype(dtype).kind in "iu"


def _axes_taken(k: Any) -> int:
    """How many of the array's axes an index component consumes."""
    if k is None:
        return 0
    dtype = getattr(k, "dtype", None)
    if dtype is not None and _np.dtype(dtype).kind == "b":
        return _np.ndim(k)
    return 1
