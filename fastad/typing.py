"""``jax.typing``: names for annotations."""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from .runtime import Array

ArrayLike = Union[Array, np.ndarray, np.generic, bool, int, float, complex]
DTypeLike = Union[str, type, np.dtype, Any]

__all__ = ["Array", "ArrayLike", "DTypeLike"]
