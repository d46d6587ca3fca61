"""Backends turn a tape into an executable whose ``run(inputs)`` returns the
outputs, or None when a guard disagrees with its recording.

  "c"      the C virtual machine (fastad.backends.c_backend), when built
  "numba"  generated code compiled by Numba (fastad.backends.numba_backend)
  "numpy"  the reference interpreter (fastad.backends.reference)
  "auto"   the C VM, moving a function to Numba once its calls have paid for
           the compile (tiering, fastad.backends.fallback); Numba without the
           C extension
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

# What each backend runs, and where a tape goes when its backend cannot run it.
from .fallback import (NATIVE_DTYPE_KINDS, coverage, fallbacks, host_calls, native_primitives,
                       route, unsupported)

if TYPE_CHECKING:
    from ..core.tape import Tape

__all__ = ["available", "get", "name_of", "build", "fallbacks", "route", "unsupported",
           "native_primitives", "host_calls", "coverage", "NATIVE_DTYPE_KINDS"]

_MODULES = {"c": "c_backend", "numba": "numba_backend", "numpy": "reference"}
_PREFERENCE = ("c", "numba", "numpy")


def _load(name: str) -> ModuleType | None:
    try:
        module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    except ImportError:
        return None
    usable = getattr(module, "available", True) and hasattr(module, "build")
    return module if usable else None


def available() -> list[str]:
    """The backends usable in this installation, fastest first."""
    return [name for name in _PREFERENCE if _load(name) is not None]


def name_of(module: ModuleType) -> str:
    """The backend name ("c", "numba", "numpy") of a backend module."""
    tail = module.__name__.rsplit(".", 1)[-1]
    return next((n for n, m in _MODULES.items() if m == tail), tail)


def get(name: str) -> ModuleType:
    if name == "auto":
        name = available()[0]
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose from 'auto', "
                         + ", ".join(repr(n) for n in _MODULES))
    module = _load(name)
    if module is None:
        raise RuntimeError(f"backend {name!r} is not available in this installation "
                           f"(available: {', '.join(available())})")
    return module


def build(name: str, tape: "Tape") -> Any:
    """``tape`` built by backend ``name``; "auto" follows `fallback.build_auto`."""
    if name != "auto" or available()[:2] != ["c", "numba"]:
        return get(name).build(tape)
    from .fallback import build_auto
    return build_auto(tape)
