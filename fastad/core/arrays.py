"""The arrays a trace takes and makes.

What comes in: `plain_array` reads an argument as the plain ndarray every
transformation computes with, or refuses a subclass whose meaning would be
lost.  What fastad makes for a tape (index tables, broadcast zeros) is marked
`made_here`, so `Builder.const` keeps it uncopied where it must copy a user's
array; and the flat positions of every array size live in one shared table
(`positions`), so the slices of a large array share one index table.
"""
from __future__ import annotations

import math
import weakref
import zlib
from typing import Any

import numpy as np

from .watched import WatchedArray

#: arrays fastad made for a tape (index tables, zeros, broadcast scalars), by id:
#: `Builder.const` keeps them as they are instead of copying them, which is what
#: it must do with the user's arrays (captured as they were when traced)
_made: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()

def made_here(array: np.ndarray) -> np.ndarray:
    """``array``, read-only and known to `Builder.const` as fastad's own: a tape
    holds it (a view of a shared index table, a zero-stride broadcast) uncopied."""
    array.flags.writeable = False
    _made[id(array)] = array
    return array


#: flat positions 0..n-1, one read-only array per size while any index table
#: taken from it lives: every slice of an array of that size is a view of it,
#: so a tape of many slices of a large array holds one table, not one each
_position_tables: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()


def positions(shape: tuple[int, ...]) -> np.ndarray:
    """The flat positions of an array of ``shape``, a view of the shared table."""
    n = math.prod(shape)
    table = _position_tables.get(n)
    if table is None:
        table = _position_tables[n] = np.arange(n, dtype=np.int64)
        table.flags.writeable = False
    return table.reshape(shape)


def position_layout(index: np.ndarray, size: int) -> tuple[int, tuple[int, ...]] | None:
    """(offset, strides) in elements when ``index`` is a strided view of the
    position table of ``size`` elements (the index of a basic slice), else None:
    then ``a.ravel()[index]`` is that strided view of ``a.ravel()``."""
    table = _position_tables.get(size)
    if table is None or index.base is not table or index.dtype != np.int64:
        return None
    offset = (index.__array_interface__["data"][0] - table.__array_interface__["data"][0]) // 8
    return offset, tuple(s // 8 for s in index.strides)


def is_made_here(array: Any) -> bool:
    return _made.get(id(array)) is array


def is_foreign_array(x: Any) -> bool:
    """Another library's array: a type with ``__array__``, ``shape`` and
    ``dtype``, not NumPy's (arrays, scalars), nor fastad's own, nor a lazy
    dask array, whose conversion would compute it."""
    cls = type(x)
    return (hasattr(cls, "__array__") and not isinstance(x, (np.ndarray, np.generic))
            and cls.__module__.partition(".")[0] not in ("fastad", "dask")
            and hasattr(x, "shape") and hasattr(x, "dtype"))


def _foreign_array(x: Any, where: str) -> Any:
    """``np.asarray(x)`` of another library's array (`is_foreign_array`);
    anything else as it is."""
    if not is_foreign_array(x):
        return x
    cls = type(x)
    try:
        return np.asarray(x)
    except Exception as exc:  # a tensor that requires grad, an array on a GPU
        raise TypeError(f"{where}: cannot read {cls.__module__}.{cls.__qualname__} as a NumPy "
                        f"array ({exc}); pass a NumPy array") from None


def foreign_arrays_read(args: tuple) -> tuple:
    """``args`` with other libraries' arrays (`_foreign_array`) among the
    leaves of any pytree read as NumPy arrays."""
    from . import pytree
    leaves, tree = pytree.flatten(args)
    return pytree.unflatten(tree, [_foreign_array(leaf, "argument") for leaf in leaves])


def plain_array(x: Any, where: str) -> Any:
    """``x`` as a plain ndarray: every transformation and compiled function
    computes with plain arrays, so an instance of an ndarray subclass is read
    as the ndarray it holds when the subclass does not change what NumPy
    computes (np.memmap, subclasses that only add attributes), and refused
    with a TypeError when it does, since its meaning would be silently lost:
    masked arrays (the masked elements would count), np.matrix (``*`` is a
    matrix product, results stay 2-D), and any subclass with its own
    ``__array_ufunc__`` or ``__array_function__`` (units, lazy arrays).
    Another library's array (a jax.Array, a CPU torch.Tensor, an xarray
    DataArray: `_foreign_array`) is read as the ndarray ``np.asarray`` gives."""
    if type(x) is np.ndarray:
        return x
    if not isinstance(x, np.ndarray):
        return _foreign_array(x, where)
    if type(x) is WatchedArray:  # a captured array of an enclosing trace: its values read
        return x.read_values()
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{where}: masked arrays (numpy.ma.MaskedArray) are not supported: "
                        "fastad computes with plain arrays, so the masked elements would "
                        "count; pass x.filled(value), x.compressed(), or the data and the "
                        "mask as two arrays (fastad.numpy.where(mask, fill, data))")
    if isinstance(x, np.matrix):
        raise TypeError(f"{where}: np.matrix is not supported (its * is a matrix product and "
                        "its results stay 2-D, which fastad's plain arrays do not follow); "
                        "pass np.asarray(x) and use @")
    cls = type(x)
    if (cls.__array_ufunc__ is not np.ndarray.__array_ufunc__
            or cls.__array_function__ is not np.ndarray.__array_function__):
        raise TypeError(f"{where}: {cls.__module__}.{cls.__qualname__} is a subclass of "
                        "numpy.ndarray with its own __array_ufunc__ or __array_function__, "
                        "whose results fastad would not follow (it computes with plain "
                        "arrays); pass np.asarray(x)")
    return x.view(np.ndarray)


def scalar_key(value: Any) -> tuple[Any, ...]:
    """A key under which equal scalar constants share one slot: the type and
    the value, and for floats the signs, since ``0.0 == -0.0`` while
    ``arctan2(-0.0, -1.0)`` is -pi and ``1 / -0.0`` is -inf."""
    key: tuple[Any, ...] = (type(value), value)
    if isinstance(value, (float, complex, np.inexact)):
        z = complex(value)
        key += (math.copysign(1.0, z.real), math.copysign(1.0, z.imag))
    return key


def same_bits(now: np.ndarray, then: np.ndarray) -> bool:
    """Whether two arrays hold the same bits in the same shape and dtype:
    -0.0 is not 0.0 and a NaN equals itself (either can change what is
    computed from it)."""
    if now.shape != then.shape or now.dtype != then.dtype:
        return False
    if now.dtype.kind == "c":
        return same_bits(now.real, then.real) and same_bits(now.imag, then.imag)
    if now.dtype.itemsize not in (1, 2, 4, 8):  # longdouble
        return np.ascontiguousarray(now).tobytes() == np.ascontiguousarray(then).tobytes()
    bits = f"u{now.dtype.itemsize}"
    return bool(np.array_equal(np.ascontiguousarray(now).view(bits),
                               np.ascontiguousarray(then).view(bits)))


def digest(a: np.ndarray) -> int:
    """A checksum of ``a``'s contents (CRC-32: any change of up to 32
    adjacent bits changes it, at a few GB/s, without a copy kept): what
    tells that a function wrote into an array it was given or captured, per
    trace, not per call."""
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).data)
