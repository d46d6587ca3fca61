"""``fnp``: fastad.numpy as the derivative rules see it.

The rules of fastad/primitives/ are written with fastad.numpy's functions
(so that they trace, which makes gradients of gradients work), but
fastad.numpy is written on top of the primitives those rules belong to: the
rules reach it through this proxy, which imports it on first use.
"""
from __future__ import annotations

from typing import Any


class _FastadNumpy:
    """``fastad.numpy``, imported on first use: rules are declared before the
    module they are written in (which needs the registry) has loaded."""

    def __getattr__(self, name: str) -> Any:
        import fastad.numpy as module
        value = getattr(module, name)
        setattr(self, name, value)  # rules run per traced operation: look up once
        return value


fnp = _FastadNumpy()
