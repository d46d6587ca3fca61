"""``jax.dtypes`` over NumPy's dtypes (fastad computes in NumPy's: 64-bit
by default, no bfloat16)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["canonicalize_dtype", "finfo", "float0", "iinfo", "issubdtype", "result_type",
           "scalar_type_of"]

finfo, iinfo, issubdtype = np.finfo, np.iinfo, np.issubdtype
# JAX's dtype of the tangents of integer values (no tangent): an empty void
float0 = np.dtype([("float0", np.void, 0)])


def canonicalize_dtype(dtype: Any, allow_extended_dtype: bool = False) -> np.dtype:
    return np.dtype(dtype)


def result_type(*args: Any, return_weak_type_flag: bool = False) -> Any:
    from .numpy import result_type as traced_result_type
    dtype = traced_result_type(*args)
    return (dtype, False) if return_weak_type_flag else dtype


def scalar_type_of(x: Any) -> type:
    kind = np.result_type(x).kind
    return {"b": bool, "i": int, "u": int, "f": float, "c": complex}[kind]
