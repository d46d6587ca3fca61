"""Array creation: constants (traced when a trace is active, so that writes
into them are recorded), and arrays built from traced values."""
from __future__ import annotations

from typing import Any

import numpy as _np

from ..core.tracer import Tracer
from ._base import _constant, _contains_tracer, _fresh, result_dtype, shape_of
from ._elementwise import astype
from ._shape import broadcast_to, stack

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


def array(obj: Any, dtype: Any = None, copy: bool = True, **kw: Any) -> Any:
    """An array; a (nested) list holding traced values becomes a traced stack."""
    if isinstance(obj, Tracer):
        return _fresh(obj) if dtype is None else astype(obj, dtype)
    if isinstance(obj, (list, tuple)) and _contains_tracer(obj):
        out = stack([array(o) for o in obj])
        return out if dtype is None else astype(out, dtype)
    return _constant(_np.array(obj, dtype=dtype))


def asarray(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return array(a, dtype=dtype)


def copy(a: Any, **kw: Any) -> Any:
    return _fresh(a) if isinstance(a, Tracer) else _np.array(a, copy=True)


def zeros_like(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return _constant(_np.zeros(shape_of(a), dtype or result_dtype(a)))


def ones_like(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return _constant(_np.ones(shape_of(a), dtype or result_dtype(a)))
