"""csrc/opcodes.h is the single source of truth for the VM's constants.

The C files use its macros, the lowering (lower.py, fuse.py) reads them from
the header's text at import, _vm.pyx through ``cdef extern``.  Python modules
that must know a constant without the extension (fastad.core.tape, fastad.core.wire)
keep their own copy, checked here against the header's text, so these tests
also run where the extension is not built.
"""
import os
import re

import numpy as np
import pytest

from fastad.core import tape, wire
from fastad.backends import c_backend, fuse
from fastad.backends import lower as lowering
from fastad.backends import vm_header

CSRC = os.path.join(os.path.dirname(__file__), "..", "csrc")


def header_text():
    with open(os.path.join(CSRC, "opcodes.h")) as f:
        return f.read()


def header_constants():
    """Every ``#define FASTAD_NAME integer`` of opcodes.h, parsed here
    independently of vm_header."""
    return {name: int(value) for name, value in
            re.findall(r"^#define (FASTAD_\w+) (-?\d+)\b", header_text(), re.M)}


def test_the_header_defines_the_constants():
    c = header_constants()
    for name in ("FASTAD_FUSED_MAX_REGS", "FASTAD_FUSED_MAX_SLOTS", "FASTAD_FUSED_MAX_STEPS",
                 "FASTAD_FUSED_MAX_SUMS", "FASTAD_FUSED_MAX_SHIFT", "FASTAD_FUSED_MAX_SHIFTS",
                 "FASTAD_FUSED_SLOT_WORDS", "FASTAD_FUSED_STEP_WORDS", "FASTAD_FUSED_BLOCK",
                 "FASTAD_FUSED_REG_PAD", "FASTAD_MAX_NDIM", "FASTAD_ARENA_ALIGN",
                 "FASTAD_VM_OK", "FASTAD_VM_GUARD_FAILED", "FASTAD_VM_SINGULAR",
                 "FASTAD_VM_INTERRUPTED"):
        assert name in c, name
    # validate.c keeps a uint64_t bit per register and slot of a FUSED instruction
    assert c["FASTAD_FUSED_MAX_REGS"] + c["FASTAD_FUSED_MAX_SLOTS"] <= 64


def test_python_reads_the_header():
    c = header_constants()
    assert vm_header.CONSTANTS == c
    assert lowering.TABLES["CONSTANTS"] == c
    assert lowering.ARENA_ALIGN == c["FASTAD_ARENA_ALIGN"]
    for name in ("REGS", "SLOTS", "STEPS", "SUMS", "SHIFT", "SHIFTS"):
        assert getattr(fuse, f"MAX_{name}") == c[f"FASTAD_FUSED_MAX_{name}"], name


def test_python_copies_agree_with_the_header():
    """MAX_NDIM is needed without the extension (tracing, saved files)."""
    c = header_constants()
    assert tape.MAX_NDIM == c["FASTAD_MAX_NDIM"]
    assert wire.MAX_NDIM == c["FASTAD_MAX_NDIM"]


def test_fused_slot_and_step_kinds_follow_the_header():
    assert [fuse.IN, fuse.SCALAR, fuse.OUT, fuse.ACC] == [
        lowering.TABLES["FUSED_SLOTS"].index(k) for k in ("IN", "SCALAR", "OUT", "ACC")]
    steps = lowering.TABLES["FUSED_STEPS"]
    assert [fuse.UNARY_STEP, fuse.BINARY_STEP, fuse.SUM_STEP, fuse.SHIFT_STEP, fuse.COUNT_STEP,
            fuse.NCOUNT_STEP] == [steps.index(k) for k in
                                  ("UNARY", "BINARY", "SUM", "SHIFT", "COUNT", "NCOUNT")]


def test_dtype_codes_and_sizes():
    sizes = dict(zip(lowering.TABLES["DTYPES"], lowering.TABLES["DTYPE_SIZES"]))
    for name, dtype in (("F64", np.float64), ("F32", np.float32), ("BOOL", np.bool_)):
        assert sizes[name] == np.dtype(dtype).itemsize, name
        assert lowering.DTYPE_CODE[np.dtype(dtype)] == lowering.TABLES["DTYPES"].index(name)


def test_every_descriptor_of_the_header_has_a_length():
    """Each descriptor opcodes.h documents has its length in FASTAD_DESCRIPTORS."""
    text = header_text()
    documented = re.findall(r"^ \*   ([A-Z][A-Z0-9]+) +\S", text.split("Descriptors (int64")[1]
                            .split("*/")[0], re.M)
    assert [name for name, _, _ in lowering.TABLES["DESCRIPTORS"]] == documented


@pytest.mark.skipif(not os.path.exists(os.path.join(CSRC, "vm.c")), reason="no source tree")
def test_dispatch_loop_steps_by_the_header_arities():
    """vm.c steps past an instruction by its FASTAD_OPCODES arity (NEXT(name)),
    never by a number of its own, and every opcode has its case (a
    LINALG_CASE(name, call) is a case stepping by NEXT(name))."""
    with open(os.path.join(CSRC, "vm.c")) as f:
        source = f.read()
    assert not re.search(r"NEXT\(\s*\d", source)
    loop = source.split("for (;;) {", 1)[1]  # the dispatch loop's body
    cases = re.split(r"(?:vmcase\(|LINALG_CASE\()(\w+)", loop)[1:]
    names = cases[0::2]
    assert sorted(names) == sorted(name for name, *_ in lowering.TABLES["OPCODES"])
    for name, body in zip(names, cases[1::2]):
        for used in re.findall(r"NEXT\((\w+)\)", body):
            assert used == name, (name, used)


@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
def test_the_extension_was_compiled_with_the_header():
    compiled = c_backend.tables()
    assert compiled["CONSTANTS"] == header_constants()  # every constant, exported
    assert compiled["DESCRIPTORS"] == lowering.TABLES["DESCRIPTORS"]
    assert compiled["DTYPE_SIZES"] == lowering.TABLES["DTYPE_SIZES"]


def test_no_copies_of_the_vm_limits_in_the_lowering_or_the_wrapper():
    """The lowering and _vm.pyx name the header's constants, not their values."""
    backends = os.path.dirname(lowering.__file__)
    for module in ("lower.py", "fuse.py", "_vm.pyx"):
        path = os.path.join(backends, module)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            source = f.read()
        assert not re.search(r"^\s*(MAX_\w+|ARENA_ALIGN)\s*=\s*\d", source, re.M), module
        assert not re.search(r"\[(32|48|64)\]", source), module


def test_no_copies_of_the_vm_limits_in_any_lowering_module():
    """The lowering is several modules; none names a limit by its value."""
    backends = os.path.dirname(lowering.__file__)
    for module in ("lower.py", "lower_rules.py", "arena.py", "vm_program.py", "vm_header.py",
                   "fuse.py"):
        with open(os.path.join(backends, module)) as f:
            source = f.read()
        assert not re.search(r"^\s*(MAX_\w+|ARENA_ALIGN)\s*=\s*\d", source, re.M), module
        assert not re.search(r"\[(32|48|64)\]", source), module
