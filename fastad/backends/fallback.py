"""Where a tape runs when its backend cannot run all of it: the fallback chain.

A compiled function asks for a backend ("c", "numba", "numpy", or "auto",
which starts on the C VM: `choice`).  Its tape may hold what that backend
has no code for: a primitive missing from the backend's rule table (special
functions, decompositions, sorting, any `fastad.primitive`), or a dtype
(complex values on the C VM, real-only primitives applied to complex values
on Numba).  `route` walks the chain once per tape:

1. `fallbacks`: the backend asked for, then the available ones after it in
   the order C VM, Numba, NumPy;
2. `unsupported`: what of the tape each lacks, read from the backends' own
   tables (`native_primitives`: the C lowering's `_RULES`, Numba's
   `EMITTERS`; `NATIVE_DTYPE_KINDS`), so the list cannot drift;
3. the first backend that lacks nothing runs the whole tape; when none does,
   the first that lacks only primitives (no dtypes) runs it as compiled
   `Segments` with host calls (each missing instruction's NumPy
   implementation) between them; otherwise the reference interpreter.

`specializer.Specializer._build` follows the route and warns once per function
and reason.  What each compiled backend leaves to host calls on purpose is
declared beside its table with a reason (`lower_rules.HOST_CALLS`,
`numba_emitters.NOT_EMITTED`, both extending `NOT_COMPILED` below);
`host_calls` and `coverage` report them, and docs/conformance.md is
generated from them.  Tiering (``backend="auto"`` moving a function from
the VM to Numba once it has paid) is a separate decision, in `choice`.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..primitives import special
from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P
from ..core.tape import Instr, Tape
from .reference import RunsArgs

# Builtin primitives that neither compiled backend (the C VM, the Numba
# generator) computes, each with why: a compiled function whose tape holds one
# runs it as a host call between compiled segments.  Each backend's own table
# adds what only it lacks (`lower_rules.HOST_CALLS`, `numba_emitters.NOT_EMITTED`).
NOT_COMPILED: dict[Primitive, str] = check_table({
    **{registry[name]: "a special function (scipy.special): no compiled implementation"
       for name in sorted(special.ELEMENTWISE)},
    P.argsort: "sorting: no compiled code",
    P.argpartition: "sorting: no compiled code",
    P.take_along: "gathers by computed indices: no compiled code",
    P.scatter_add_along: "scatters by computed indices: no compiled code",
    P.interp: "a table search per element: no compiled code",
    P.interp_slope: "a table search per element: no compiled code",
    P.cumprod: "no compiled code (cumsum has some)",
    **{registry[name]: "a LAPACK decomposition or solver the compiled code does not call"
       for name in ("eig", "svd", "qr", "pinv", "sylvester", "sqrtm")},
}, "fallback.NOT_COMPILED")

# The kinds of NumPy dtype each backend's values may have (b bool, i/u integer
# index constants, f float, c complex).
NATIVE_DTYPE_KINDS = {"c": "biuf", "numba": "biufc", "numpy": "biufc"}


# -- the chain ------------------------------------------------------------------------
def fallbacks(module: ModuleType) -> list[ModuleType]:
    """``module`` followed by the available backends after it in order of
    preference: where a tape goes when a backend cannot run it."""
    from . import _PREFERENCE, _load, name_of
    name = name_of(module)
    later = _PREFERENCE[_PREFERENCE.index(name) + 1:] if name in _PREFERENCE else ()
    return [module] + [m for m in map(_load, later) if m is not None]


def native_primitives(name: str) -> frozenset[str]:
    """The names of the primitives backend ``name`` runs itself; any other
    primitive in a tape is a host call between compiled segments
    (`Segments`).  Read from the backends' own tables, keyed by primitive:
    the C lowering's rules, the Numba generator's emitters, and every
    registered primitive for "numpy".  Each compiled backend lists the
    builtin primitives it leaves to host calls beside its table
    (`host_calls`)."""
    if name == "c":
        from .lower_rules import _RULES
        return frozenset(p.name for p in _RULES)
    if name == "numba":
        from .numba_emitters import EMITTERS
        return frozenset(p.name for p in EMITTERS)
    if name == "numpy":
        return frozenset(registry)
    raise ValueError(f"unknown backend {name!r}")


def host_calls(name: str) -> dict[str, str]:
    """The builtin primitives backend ``name`` runs as host calls on purpose,
    each with the reason its table gives (empty for "numpy")."""
    if name == "c":
        from .lower_rules import HOST_CALLS
        return {p.name: why for p, why in HOST_CALLS.items()}
    if name == "numba":
        from .numba_emitters import NOT_EMITTED
        return {p.name: why for p, why in NOT_EMITTED.items()}
    if name == "numpy":
        return {}
    raise ValueError(f"unknown backend {name!r}")


def unsupported(module: ModuleType, tape: "Tape") -> list[str]:
    """What of ``tape`` backend ``module`` cannot run: its primitives the
    backend lacks, sorted, then the dtypes of values it has no code for."""
    from . import name_of
    name = name_of(module)
    native, kinds = native_primitives(name), NATIVE_DTYPE_KINDS[name]
    missing = {ins.prim for ins in tape.instrs if ins.prim not in native}
    if name == "numba":
        from .numba_tables import REAL_ONLY
        missing |= {f"{ins.prim} of complex values" for ins in tape.instrs
                    if registry[ins.prim] in REAL_ONLY
                    and any(tape.avals[s].dtype.kind == "c" for s in ins.ins)}
    dtypes = {f"{a.dtype} values" for a in tape.avals if a.dtype.kind not in kinds}
    if name == "c":  # integer constants flow as indices, but a result lives in the arena
        dtypes |= {f"{tape.avals[s].dtype} results" for s in tape.outputs
                   if tape.avals[s].dtype.kind in "iu"}
    return sorted(missing) + sorted(dtypes)


def route(chosen: ModuleType, tape: Tape) -> tuple[ModuleType, bool, list[str]]:
    """Where ``tape`` runs when backend ``chosen`` is asked for: (the backend,
    whether it runs the tape in compiled segments with host calls, and why
    each backend before it was passed over, for the warning)."""
    from . import name_of, reference
    refused, segmentable = [], []
    for module in fallbacks(chosen):
        missing = unsupported(module, tape)
        if not missing and (module is not reference or chosen is reference):
            return module, False, refused
        refused.append(f"the {name_of(module)} backend does not implement {', '.join(missing)}")
        if module is not reference and not any(m.endswith(" values") for m in missing):
            segmentable.append((module, refused[-1]))  # lacks primitives only, no dtypes
    if not segmentable:  # every compiled backend lacks a dtype of the tape
        return reference, False, refused
    module, reason = segmentable[0]
    return module, True, [reason]


def coverage(show: bool = True) -> dict[str, dict[str, bool]]:
    """Per primitive, whether each backend runs it natively ("c", "numba",
    "numpy").  A compiled function whose tape holds a primitive its backend
    lacks calls that primitive's NumPy implementation between compiled
    segments (with a warning), so "fallback" lists the host calls.  Prints a
    table unless ``show`` is False; returns {primitive: {backend: native}}."""
    from . import _MODULES
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


# -- compiled segments with host calls between them ----------------------------------
# A tape whose primitives a compiled backend mostly runs, but not all of them,
# is cut at the instructions the backend lacks: each run of instructions it
# has becomes a sub-tape built by that backend, and each instruction it lacks
# is a host call, its NumPy implementation applied to the values the segments
# before it produced.  Nothing is traced again: the cut happens once, when the
# tape is built.
def _scalar(value: Any) -> Any:
    """0-d values as NumPy scalars, the form Numba kernels take them in (the C
    VM copies from arrays)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


class _Native:
    """A run of instructions, compiled as a tape of its own."""

    def __init__(self, exe: Any, inputs: list[int], outputs: list[int], scalars: bool) -> None:
        self.exe, self.inputs, self.outputs = exe, inputs, outputs
        self.convert = _scalar if scalars else (lambda value: value)

    def run(self, env: dict[int, Any]) -> bool:
        convert = self.convert
        outs = self.exe.run([convert(env[s]) for s in self.inputs])
        if outs is None:  # a guard disagreed
            return False
        env.update(zip(self.outputs, outs))
        return True


class _Host:
    """One instruction run by its NumPy implementation."""

    def __init__(self, ins: Instr, tape: Tape) -> None:
        self.ins = ins
        self.impl = registry[ins.prim].impl
        self.params = ins.kwargs
        self.dtype = tape.avals[ins.out].dtype

    def run(self, env: dict[int, Any]) -> bool:
        with np.errstate(all="ignore"):
            value = self.impl(*(env[s] for s in self.ins.ins), **self.params)
        env[self.ins.out] = np.asarray(value, dtype=self.dtype)
        return True


def _runs(tape: Tape, native: frozenset[str]) -> list[tuple[bool, list[Instr]]]:
    """The instructions grouped into native runs and host calls, as few runs as
    the dependencies allow: an instruction's level counts the host calls on its
    longest chain of inputs, and each level's native instructions run as one
    segment before that level's host calls.  A host call that needs only the
    inputs (say gammaln(x) in the forward pass, and its derivative in the
    reverse one) so runs before every native instruction that does not need it,
    instead of cutting the tape where it was traced (where hundreds of forward
    values the reverse pass reads would cross the cut)."""
    available: dict[int, int] = {}  # slot -> first level its value is there
    levels: list[int] = []
    for ins in tape.instrs:
        level = max((available.get(s, 0) for s in ins.ins), default=0)
        levels.append(level)
        available[ins.out] = level + (ins.prim not in native)
    runs: list[tuple[bool, list[Instr]]] = []
    for level in range(max(levels, default=-1) + 1):
        here = [ins for ins, lv in zip(tape.instrs, levels) if lv == level]
        body = [ins for ins in here if ins.prim in native]
        if body:
            runs.append((True, body))
        runs.extend((False, [ins]) for ins in here if ins.prim not in native)
    return runs


def _sub_tape(tape: Tape, instrs: list[Instr], needed_after: set[int]) -> Tape:
    defined = {ins.out for ins in instrs}
    reads = [s for ins in instrs for s in ins.ins if s not in defined]
    inputs = list(dict.fromkeys(s for s in reads if s not in tape.consts))
    consts = {s: tape.consts[s] for s in reads if s in tape.consts}
    outputs = [ins.out for ins in instrs if ins.out in needed_after]
    return Tape(inputs=inputs, outputs=outputs, consts=consts, instrs=list(instrs),
                avals=list(tape.avals))


class Segments(RunsArgs):
    """A tape run as compiled segments with host calls between them (see the
    module docstring); ``run(inputs)`` like every backend's: the outputs, or
    None when a guard fails."""

    def __init__(self, tape: Tape, backend: ModuleType, native: frozenset[str]) -> None:
        from . import name_of
        self.tape = tape
        runs = _runs(tape, native)
        # slots read after each run: the tape's outputs, then every later read
        needed = set(tape.outputs)
        needed_after: list[set[int]] = []
        for _, instrs in reversed(runs):
            needed_after.append(set(needed))
            needed.update(s for ins in instrs for s in ins.ins)
        needed_after.reverse()
        self.steps: list[Any] = []
        for (here, instrs), after in zip(runs, needed_after):
            if here:
                sub = _sub_tape(tape, instrs, after)
                self.steps.append(_Native(backend.build(sub), sub.inputs, sub.outputs,
                                          scalars=name_of(backend) == "numba"))
                continue
            for ins in instrs:
                self.steps.append(_Host(ins, tape))

    def run(self, inputs: Sequence[Any]) -> list[np.ndarray] | None:
        env: dict[int, Any] = dict(zip(self.tape.inputs, inputs))
        env.update(self.tape.consts)
        for step in self.steps:
            if not step.run(env):
                return None
        return [np.asarray(env[s], dtype=self.tape.avals[s].dtype) for s in self.tape.outputs]

    def __str__(self) -> str:
        parts = []
        for step in self.steps:
            if isinstance(step, _Host):
                parts.append(f"host call: {step.ins.prim}")
            else:
                parts.append(str(step.exe))
        return "\n".join(parts)


def build_segments(tape: Tape, backend: ModuleType, native: frozenset[str]) -> Segments:
    """``tape`` built by ``backend`` as compiled segments, with host calls for
    the primitives not in ``native``."""
    return Segments(tape, backend, native)
