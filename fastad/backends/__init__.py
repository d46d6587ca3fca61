"""Backends turn a tape into an executable whose ``run(inputs)`` returns the
outputs, or None when a guard disagrees with its recording.

  "c"      the C virtual machine (fastad.backends.c_backend), when built
  "numba"  generated code compiled by Numba (fastad.backends.numba_backend)
  "numpy"  the reference interpreter (fastad.backends.reference)
"""
from __future__ import annotations

import importlib
from types import ModuleType

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
