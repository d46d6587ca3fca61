"""Backends turn a tape into an executable whose ``run(inputs)`` returns the
outputs, or None when a guard disagrees with its recording.

  "c"      the C virtual machine (fastad.backends.c_backend), when built
  "numba"  generated code compiled by Numba (fastad.backends.numba_backend)
  "numpy"  the reference interpreter (fastad.backends.reference)
  "auto"   the C VM, moving a function to Numba once its calls have paid for
           the compile (fastad.backends.choice); Numba without the C extension
"""
from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tape import Tape

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


def fallbacks(module: ModuleType) -> list[ModuleType]:
    """``module`` followed by the available backends after it in order of
    preference: where a tape goes when a backend cannot run it."""
    name = name_of(module)
    later = _PREFERENCE[_PREFERENCE.index(name) + 1:] if name in _PREFERENCE else ()
    return [module] + [m for m in map(_load, later) if m is not None]


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


# -- which primitives each backend runs natively -----------------------------------
def native_primitives(name: str) -> frozenset[str]:
    """The names of the primitives backend ``name`` runs itself; any other
    primitive in a tape is a host call between compiled segments
    (`segmented`).  Read from the backends' own tables, keyed by primitive:
    the C lowering's rules, the Numba generator's emitters, and every
    registered primitive for "numpy".  Each compiled backend lists the
    builtin primitives it leaves to host calls beside its table
    (`host_calls`)."""
    from ..primitives.registry import registry
    if name == "c":
        from .lower import _RULES
        return frozenset(p.name for p in _RULES)
    if name == "numba":
        from .numba_backend import EMITTERS
        return frozenset(p.name for p in EMITTERS)
    if name == "numpy":
        return frozenset(registry)
    raise ValueError(f"unknown backend {name!r}")


def host_calls(name: str) -> dict[str, str]:
    """The builtin primitives backend ``name`` runs as host calls on purpose,
    each with the reason its table gives (empty for "numpy")."""
    if name == "c":
        from .lower import HOST_CALLS
        return {p.name: why for p, why in HOST_CALLS.items()}
    if name == "numba":
        from .numba_backend import NOT_EMITTED
        return {p.name: why for p, why in NOT_EMITTED.items()}
    if name == "numpy":
        return {}
    raise ValueError(f"unknown backend {name!r}")


# The kinds of NumPy dtype each backend's values may have (b bool, i/u integer
# index constants, f float, c complex).
NATIVE_DTYPE_KINDS = {"c": "biuf", "numba": "biufc", "numpy": "biufc"}


def unsupported(module: ModuleType, tape: "Tape") -> list[str]:
    """What of ``tape`` backend ``module`` cannot run: its primitives the
    backend lacks, sorted, then the dtypes of values it has no code for."""
    name = name_of(module)
    native, kinds = native_primitives(name), NATIVE_DTYPE_KINDS[name]
    missing = {ins.prim for ins in tape.instrs if ins.prim not in native}
    if name == "numba":
        from ..primitives.registry import registry
        from .numba_backend import REAL_ONLY
        missing |= {f"{ins.prim} of complex values" for ins in tape.instrs
                    if registry[ins.prim] in REAL_ONLY
                    and any(tape.avals[s].dtype.kind == "c" for s in ins.ins)}
    return sorted(missing) + sorted({f"{a.dtype} values" for a in tape.avals if a.dtype.kind not in kinds})


def coverage(show: bool = True) -> dict[str, dict[str, bool]]:
    """Per primitive, whether each backend runs it natively ("c", "numba",
    "numpy").  A compiled function whose tape holds a primitive its backend
    lacks calls that primitive's NumPy implementation between compiled
    segments (with a warning), so "fallback" lists the host calls.  Prints a
    table unless ``show`` is False; returns {primitive: {backend: native}}."""
    from ..primitives.registry import registry
    native = {b: native_primitives(b) for b in _MODULES}
    table = {p: {b: p in native[b] for b in _MODULES} for p in sorted(registry)}
    if show:
        width = max(len(p) for p in table)
        print(f"{'primitive':<{width}}  {'c':>3} {'numba':>5}  fallback")
        for p, row in table.items():
            fallback = "host call" if not (row["c"] and row["numba"]) else ""
            print(f"{p:<{width}}  {'yes' if row['c'] else '-':>3} "
                  f"{'yes' if row['numba'] else '-':>5}  {fallback}")
    return table


def build(name: str, tape: "Tape") -> Any:
    """``tape`` built by backend ``name``; "auto" follows `fastad.backends.choice`."""
    if name != "auto" or available()[:2] != ["c", "numba"]:
        return get(name).build(tape)
    from . import choice
    exe = get("c").build(tape)
    if unsupported(get("numba"), tape):
        return exe
    after = choice.promote_after(tape, numba_cached=False)
    if math.isfinite(after) and choice.numba_cached(tape):
        after = choice.promote_after(tape, numba_cached=True)
    if not math.isfinite(after):
        return exe
    return choice.Tiered(tape, exe, after, get("numba").build)
