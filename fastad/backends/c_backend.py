"""The C virtual machine backend: ``build(tape)`` -> an `Executable`.

``available`` says whether the compiled extension could be imported; when it
cannot (no compiler at install time, FASTAD_NO_EXT=1), importing this module
warns once and `build` raises ImportError, so callers fall back to another
backend.
"""
from __future__ import annotations

import warnings
from typing import Sequence

from ..core.tape import Tape
from .lower import Program, lower

try:
    from ._vm import Executable, tables
    available = True
except ImportError as _exc:  # the extension was not built
    available = False
    _import_error = _exc
    warnings.warn(f"fastad's compiled C backend is unavailable ({_exc}); using the fallback "
                  "backends. Reinstall with a C compiler to enable it.", RuntimeWarning,
                  stacklevel=2)

__all__ = ["available", "build", "Program", "Executable", "tables"]


def build(tape: Tape, input_names: Sequence[str] | None = None,
          bind_inputs: bool = True) -> "Executable":
    """Lower ``tape`` and wrap it for the VM.  ``Executable.run(inputs)`` returns
    the outputs as NumPy arrays, or None when a guard fails.  ``bind_inputs=False``:
    every input and output lives in the arena (what `Executable.run_steps` needs)."""
    if not available:
        raise ImportError(f"fastad's C backend is not built: {_import_error}")
    return Executable(lower(tape, bind_inputs=bind_inputs), input_names)
