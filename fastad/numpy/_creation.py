"""Array creation: constants (traced when a trace is active, so that writes
into them are recorded), and arrays built from traced values."""
from __future__ import annotations

from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.int_data import INTEGER_DATA, storage_dtype
from ..core.tracer import Tracer, current_builder
from ._base import _constant, _contains_tracer, _fresh, result_dtype, shape_of
from ._elementwise import astype
from ._shape import broadcast_to, reshape, stack

__all__ = ["zeros", "ones", "full", "eye", "array", "asarray", "copy", "zeros_like",
           "ones_like"]


# ``order``, ``device`` and ``like`` are NumPy's (checked by it); ``like`` a traced
# value asks for what this module makes anyway, and NumPy would dispatch it back here.
def _like(like: Any) -> Any:
    return None if isinstance(like, Tracer) else like


def zeros(shape: Any, dtype: Any = float, order: str = "C", *, device: Any = None,
          like: Any = None) -> Any:
    return _constant(_np.zeros(shape, dtype, order, device=device, like=_like(like)))


def ones(shape: Any, dtype: Any = None, order: str = "C", *, device: Any = None,
         like: Any = None) -> Any:
    return _constant(_np.ones(shape, dtype, order, device=device, like=_like(like)))


def full(shape: Any, fill_value: Any, dtype: Any = None, order: str = "C", *,
         device: Any = None, like: Any = None) -> Any:
    if isinstance(fill_value, Tracer):
        _np.empty((0,), dtype, order, device=device)  # NumPy's checks of the others
        filled = broadcast_to(fill_value, shape)
        return filled if dtype is None else astype(filled, dtype)
    return _constant(_np.full(shape, fill_value, dtype, order, device=device, like=_like(like)))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = float, order: str = "C", *,
        device: Any = None, like: Any = None) -> Any:
    return _np.eye(N, M, k, dtype=dtype, order=order, device=device, like=_like(like))


def array(object: Any, dtype: Any = None, *, copy: Any = True, order: str = "K",  # noqa: A002
          subok: bool = False, ndmin: int = 0, ndmax: int = 0, like: Any = None) -> Any:
    """An array; a (nested) list holding traced values becomes a traced stack.
    (``order``, ``subok``: layout and subclass, no effect on traced values.)"""
    obj = object
    if isinstance(obj, Tracer) or (isinstance(obj, (list, tuple)) and _contains_tracer(obj)):
        if ndmax:
            raise TracingError("array(..., ndmax=...) of traced values: nested sequences "
                               "of traced values are always stacked")
        if isinstance(obj, Tracer):
            out = obj if copy is False or copy is None else _fresh(obj)
        else:
            parts = [array(o) for o in obj]
            if any(shape_of(p) != shape_of(parts[0]) for p in parts):
                raise ValueError("setting an array element with a sequence. The requested array "
                                 "has an inhomogeneous shape: its parts have shapes "
                                 f"{[tuple(shape_of(p)) for p in parts]}")
            out = stack(parts)
        if dtype is not None:
            out = astype(out, dtype, copy=copy is not False)
        extra = ndmin - len(shape_of(out))
        return reshape(out, (1,) * extra + tuple(shape_of(out))) if extra > 0 else out
    options = {k: v for k, v, default in (("copy", copy, True), ("order", order, "K"),
                                          ("subok", subok, False), ("ndmin", ndmin, 0),
                                          ("ndmax", ndmax, 0), ("like", _like(like), None))
               if v is not default and v != default}
    return _plain_constant(_np.array(obj, dtype=dtype, **options), obj)


def _plain_constant(value: _np.ndarray, source: Any) -> Any:
    """NumPy's array; under a trace a constant of its own (never the caller's
    memory, which the caller may write into after the trace)."""
    if current_builder() is None:
        return value
    if isinstance(source, _np.ndarray) and _np.may_share_memory(value, source):
        value = value.copy()
    return _constant(value)


def asarray(a: Any, dtype: Any = None, order: Any = None, *, device: Any = None,
            copy: Any = None, like: Any = None) -> Any:
    if not isinstance(a, Tracer) and not _contains_tracer(a):
        return _plain_constant(_np.asarray(a, dtype, order, device=device, copy=copy,
                                           like=_like(like)), a)
    return array(a, dtype=dtype, copy=copy if copy is not None else False)


def copy(a: Any, order: str = "K", subok: bool = False) -> Any:
    return _fresh(a) if isinstance(a, Tracer) else _np.array(a, copy=True, order=order,
                                                              subok=subok)


def _like_dtype(a: Tracer) -> Any:
    """a's NumPy dtype: integers held in float64 (`core.int_data`) give theirs."""
    return storage_dtype(a.data_dtype) if isinstance(a, INTEGER_DATA) else result_dtype(a)


def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True,
               shape: Any = None, *, device: Any = None) -> Any:
    if not isinstance(a, Tracer):
        return _constant(_np.zeros_like(a, dtype, order, subok, shape, device=device))
    return _constant(_np.zeros(shape_of(a) if shape is None else shape,
                               dtype or _like_dtype(a)))


def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True,
              shape: Any = None, *, device: Any = None) -> Any:
    if not isinstance(a, Tracer):
        return _constant(_np.ones_like(a, dtype, order, subok, shape, device=device))
    return _constant(_np.ones(shape_of(a) if shape is None else shape,
                              dtype or _like_dtype(a)))
