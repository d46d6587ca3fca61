"""csrc/opcodes.h as Python reads it: the VM's single source of truth.

The header ships inside the package (setup.py copies it next to this module),
so the lowering reads the VM's tables and constants from it with or without
the compiled extension.  `CONSTANTS` holds every ``#define FASTAD_NAME
integer`` of the header (limits of a FUSED instruction, its block size,
descriptor word counts, MAX_NDIM, the arena's alignment, status codes);
`parse_opcodes_header` reads the X-macro tables (opcodes and their operand
kinds, function codes, FUSED slot and step kinds, dtypes, descriptors), and
`OP`, `UNARY`, `BINARY`, ... are those tables as the lowering looks them up.
This module imports nothing of fastad, so every lowering module (lower,
lower_rules, fuse, vm_program, arena) can read it at import time.
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np


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


# -- the X-macro tables ------------------------------------------------------------
def _macro_body(text: str, name: str) -> str:
    match = re.search(rf"#define {name}\(\w\)((?:.*\\\n)*.*)", text)
    if match is None:
        raise ImportError(f"fastad: {name} missing from opcodes.h")
    return match.group(1)


def parse_opcodes_header(text: str) -> dict[str, Any]:
    """The tables of opcodes.h: OPCODES as (name, nargs, operand kinds, comment)
    in enum order, each function table as a list of names, DTYPE_SIZES,
    DESCRIPTORS as (name, head, per_dim), and CONSTANTS."""
    opcodes = []
    for m in re.finditer(r"X\((\w+), (\d+)\)\s*/\*\s*(.*?)\s*\*/", _macro_body(text, "FASTAD_OPCODES")):
        name, nargs, comment = m.group(1), int(m.group(2)), m.group(3)
        kinds = comment.split()[:nargs] if nargs else []
        opcodes.append((name, nargs, kinds, comment))
    tables: dict[str, Any] = {"OPCODES": opcodes}
    for table in ("UNARY_FNS", "BINARY_FNS", "COMPARE_FNS", "LOGIC_FNS", "REDUCE_FNS",
                  "FUSED_SLOTS", "FUSED_STEPS"):
        tables[table] = re.findall(r"F\((\w+)\)", _macro_body(text, f"FASTAD_{table}"))
    tables["DTYPES"] = re.findall(r"X\((\w+), \d+\)", _macro_body(text, "FASTAD_DTYPES"))
    tables["DTYPE_SIZES"] = [int(size) for size in
                             re.findall(r"X\(\w+, (\d+)\)", _macro_body(text, "FASTAD_DTYPES"))]
    tables["DESCRIPTORS"] = [(name, int(head), int(per_dim)) for name, head, per_dim in re.findall(
        r"D\((\w+), (\d+), (\d+)\)", _macro_body(text, "FASTAD_DESCRIPTORS"))]
    tables["CONSTANTS"] = parse_constants(text)
    return tables


TABLES = parse_opcodes_header(header_text())
OP = {name: code for code, (name, *_rest) in enumerate(TABLES["OPCODES"])}
NARGS = [nargs for _name, nargs, _kinds, _comment in TABLES["OPCODES"]]
UNARY = {name.lower(): code for code, name in enumerate(TABLES["UNARY_FNS"])}
BINARY = {name.lower(): code for code, name in enumerate(TABLES["BINARY_FNS"])}
COMPARE = {name.lower(): code for code, name in enumerate(TABLES["COMPARE_FNS"])}
LOGIC = {name.lower(): code for code, name in enumerate(TABLES["LOGIC_FNS"])}
REDUCE = {name.lower(): code for code, name in enumerate(TABLES["REDUCE_FNS"])}
DTYPE_CODE = {np.dtype(np.float64): TABLES["DTYPES"].index("F64"),
              np.dtype(np.float32): TABLES["DTYPES"].index("F32"),
              np.dtype(np.bool_): TABLES["DTYPES"].index("BOOL")}

ARENA_ALIGN = TABLES["CONSTANTS"]["FASTAD_ARENA_ALIGN"]  # bytes
