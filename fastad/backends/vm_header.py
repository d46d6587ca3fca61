"""csrc/opcodes.h as Python reads it: the VM's single source of truth.

The header ships inside the package (setup.py copies it next to this module),
so the lowering reads the VM's tables and constants from it with or without
the compiled extension.  `CONSTANTS` holds every ``#define FASTAD_NAME
integer`` of the header (limits of a FUSED instruction, its block size,
descriptor word counts, MAX_NDIM, the arena's alignment, status codes);
``lower.parse_opcodes_header`` reads the X-macro tables.  This module imports
nothing of fastad, so lower.py and fuse.py can both read it at import time.
"""
from __future__ import annotations

import os
import re


def header_text() -> str:
    """The text of opcodes.h: the installed copy, else the source tree's."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "opcodes.h"),  # installed: shipped as package data
                 os.path.join(here, "..", "..", "csrc", "opcodes.h")):  # source tree
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
    raise ImportError("fastad: csrc/opcodes.h not found (broken installation)")


def parse_constants(text: str) -> dict[str, int]:
    """Every ``#define FASTAD_NAME <integer>`` line of the header, by name."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^#define (FASTAD_\w+) (-?\d+)\b", text, re.M)}


CONSTANTS = parse_constants(header_text())
