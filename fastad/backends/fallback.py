"""Where a tape runs: the fallback chain, compiled segments, and tiering.

A compiled function asks for a backend ("c", "numba", "numpy", or "auto",
which starts on the C VM and may move to Numba: tiering, below).  Its tape
may hold what that backend has no code for: a primitive missing from the
backend's rule table (special functions, decompositions, sorting, any
`fastad.primitive`), or a dtype (complex values on the C VM, real-only
primitives applied to complex values on Numba).  `route` walks the chain
once per tape:

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
generated from them.

Tiering (``backend="auto"``, `build_auto`, `Tiered`): when a function should
leave the C VM for Numba.

Measured (``benchmarks/backend_choice.py``, calls of both backends timed in
alternating rounds; numbers in benchmarks/README.md):

* the C VM builds any tape in milliseconds and runs a scalar instruction in
  a few nanoseconds, which generated straight-line Numba code does not beat
  (scalar tapes of 170 to 2,700 instructions: Numba 0.9-2.1x the VM's time);
* Numba's fused loops are faster where a few elementwise instructions run on
  long arrays: about 0.06 ns saved per array element of every cheap
  elementwise instruction (rerolled loops and mixed tapes of 10,000 to
  1,100,000 elements: 0.05-0.06 ns), 0.5-1.5 ns per element of a
  transcendental one (``sin`` chains), and slower on long chains of cheap
  ones (35 to 1,050 instructions: 1.5-6x), where its loops store every
  intermediate that the adjoint reads;
* a call costs Numba about 0.5 us more than the VM (W4: 1.48 against 0.85 us);
* a cold Numba compile costs 0.1-0.7 s for tens of instructions and grows
  faster than linearly on long scalar code (908 instructions: 4.6 s; 2,708:
  2 min); a tape in the disk cache loads in 0.06-0.07 s.

How often a function will be called is not known when it is compiled.  So
``auto`` starts every function on the C VM and counts its calls; a tape on
which Numba is predicted to save time per call moves to Numba once the calls
made so far have lost as much time to the VM as the Numba compile costs (the
ski-rental rule: at most twice the cost of the best choice made in hindsight).
The compile runs in a background thread while the VM serves the calls
(`Tiered`: a JIT's tier-up); the thread then times both executables on the
input of the call that started it and swaps the faster in, so a wrong
prediction costs one compile in the background, never a slower function,
and no call waits for Numba.  Whether the kernel is already in Numba's disk
cache (which lowers the count) takes generating its source to know, about
1 s for 40,000 instructions, so the first call never asks: the background
thread does, once the calls reach the cached kernel's break-even.  When the
C extension is missing, ``auto`` is Numba from the start.
"""
from __future__ import annotations

import atexit
import math
import os
import threading
import time
import weakref
from types import ModuleType
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .. import locks
from ..primitives import random, special
from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P
from ..core.tape import Instr, Tape
from .reference import RunsArgs

# Builtin primitives that neither compiled backend (the C VM, the Numba
# generator) computes, each with why: a compiled function whose tape holds one
# runs it as a host call between compiled segments.  Each backend's own table
# adds what only it lacks (`lower_rules.HOST_CALLS`, `numba_emitters.NOT_EMITTED`).
# scipy.special's functions both compiled backends compute themselves
# (csrc/special.h, numba_special); polygamma of order 0 only (psi), both
# backends refusing other orders (`special_refusal`).
COMPILED_SPECIAL = frozenset({"erf", "erfc", "expit", "log_expit", "logit", "gammaln",
                              "polygamma", "ndtr", "xlogy", "xlog1py"})


def special_refusal(ins: Instr) -> str | None:
    """Why neither compiled backend computes ``ins``, one of `COMPILED_SPECIAL`'s
    primitives, or None: both compute polygamma of order 0 (psi) only."""
    if ins.prim == "polygamma" and ins.kwargs.get("n") != 0:
        return "order n > 0 (the compiled backends compute psi, order 0, only)"
    return None

NOT_COMPILED: dict[Primitive, str] = check_table({
    **{registry[name]: "a special function (scipy.special): no compiled implementation"
       for name in sorted(special.ELEMENTWISE - COMPILED_SPECIAL)},
    **{registry[name]: "a keyed random draw: computed from the key on the host at every call"
       for name in sorted(random.DRAWS)},
    P.argsort: "sorting: no compiled code",
    P.argpartition: "sorting: no compiled code",
    P.take_along: "gathers by computed indices: no compiled code",
    P.scatter_add_along: "scatters by computed indices: no compiled code",
    P.interp: "a table search per element: no compiled code",
    P.interp_slope: "a table search per element: no compiled code",
    P.interp_scatter: "a table search per element: no compiled code",
    P.integer_op: "bitwise operations of integers held in float64: on the host at every call",
    **{registry[name]: "a LAPACK decomposition or solver the compiled code does not call"
       for name in ("eig", "sylvester", "sqrtm", "linalg_factors")},
    **{registry[name]: "a collective over a vmapped axis: vmap's replay replaces it by "
       "operations on the batch before any tape is compiled"
       for name in ("psum", "all_gather", "psum_scatter")},
}, "fallback.NOT_COMPILED")

def by_design(name: str) -> bool:
    """Whether primitive ``name`` is a host call by what it is, not by a
    backend's gap (a keyed random draw, a user's ``pure_callback``): routed
    into segments without the fallback warning."""
    loop = "loop of a body that runs "  # (`missing`'s name of a loop the backend refused)
    if name.startswith(loop):
        return by_design(name[len(loop):])
    return (name in random.DRAWS or name == "integer_op" or name.startswith("pure_callback.")
            or (name in registry and registry[name].effect == "io"))

# The kinds of NumPy dtype each backend's values may have (b bool, i/u integer
# index constants, f float, c complex).
NATIVE_DTYPE_KINDS = {"c": "biuf", "numba": "biufc", "numpy": "biufc"}


# -- the chain ------------------------------------------------------------------------
def fallbacks(module: ModuleType) -> Iterator[ModuleType]:
    """``module`` followed by the available backends after it in order of
    preference: where a tape goes when a backend cannot run it.  Each is
    imported when it is reached, so a tape the C VM runs whole does not
    import Numba (a second and some 50 MB)."""
    from . import _PREFERENCE, _load, name_of
    yield module
    name = name_of(module)
    for later in _PREFERENCE[_PREFERENCE.index(name) + 1:] if name in _PREFERENCE else ():
        loaded = _load(later)
        if loaded is not None:
            yield loaded


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


def refused(name: str, ins: Instr) -> str | None:
    """Why backend ``name``, whose table has ``ins``'s primitive, cannot run
    this instruction (the C VM's LOOP takes only some loops:
    `lower_rules.REFUSED`; Numba's loops only those whose bodies it has code
    for: `numba_loop_instr.refusal`; both compute polygamma of order 0 only:
    `special_refusal`), or None."""
    if name == "numba":
        if ins.prim != "loop":
            return special_refusal(ins)
        from .numba_loop_instr import refusal
        return refusal(ins)
    if name != "c":
        return None
    from .lower_rules import REFUSED
    rule = REFUSED.get(registry[ins.prim])
    return None if rule is None else rule(ins)


def unsupported(module: ModuleType, tape: "Tape") -> list[str]:
    """What of ``tape`` backend ``module`` cannot run: its primitives the
    backend lacks, sorted, then the dtypes of values it has no code for."""
    from . import name_of
    name = name_of(module)
    native, kinds = native_primitives(name), NATIVE_DTYPE_KINDS[name]
    missing = {ins.prim for ins in tape.instrs if ins.prim not in native}
    missing |= {f"{ins.prim} of {why}" for ins in tape.instrs
                if ins.prim in native and (why := refused(name, ins)) is not None}
    if name == "numba":
        from .numba_tables import REAL_ONLY
        missing |= {f"{ins.prim} of complex values" for ins in tape.instrs
                    if registry[ins.prim] in REAL_ONLY
                    and any(tape.avals[s].dtype.kind == "c" for s in ins.ins)}
    if name in ("c", "numba"):  # (both hold integers as float64 words)
        from .lower_loop import rounding_integers
        missing |= {f"{ins.prim} of integers that may pass 2**53"
                    for ins in rounding_integers(tape)}
    dtypes = {f"{a.dtype} values" for a in tape.avals if a.dtype.kind not in kinds}
    if name != "numpy":  # arithmetic on booleans (``mask + mask``, NumPy's logical or):
        # the VM computes in floating point, Numba's operators in integers
        from ..primitives.elementwise import BINARY, UNARY
        dtypes |= {f"{ins.prim} of bool values" for ins in tape.instrs
                   if tape.avals[ins.out].dtype.kind == "b" and (ins.prim in BINARY
                                                                 or ins.prim in UNARY)}
    if name == "numba":  # of each kind, the precisions its generator types
        from .numba_tables import _NUMBA_TYPE
        dtypes |= {f"{a.dtype} values" for a in tape.avals if a.dtype.name not in _NUMBA_TYPE}
    if name == "c":  # float16 and longdouble (NumPy's exp of uint8, of bool): no VM registers
        from .vm_header import DTYPE_CODE
        dtypes |= {f"{a.dtype} values" for a in tape.avals
                   if a.dtype.kind == "f" and a.dtype not in DTYPE_CODE}
        # the VM's elementwise arithmetic makes floats only (``np.abs(mask)``
        # is a bool): such an instruction would fail to lower
        from .lower_rules import _RULES, _binary, _unary
        dtypes |= {f"{ins.prim} of {tape.avals[ins.out].dtype} values" for ins in tape.instrs
                   if tape.avals[ins.out].dtype.kind != "f"
                   and _RULES.get(registry[ins.prim]) in (_unary, _binary)}
        # integer constants flow as indices, but a result lives in the arena
        dtypes |= {f"{tape.avals[s].dtype} results" for s in tape.outputs
                   if tape.avals[s].dtype.kind in "iu"}
        # an integer made by an instruction the VM would run (``astype(x, int)``)
        # has no register to live in: the whole tape goes to a backend that has one
        dtypes |= {f"{tape.avals[ins.out].dtype} values" for ins in tape.instrs
                   if ins.prim in native and tape.avals[ins.out].dtype.kind in "iu"}
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
        if module is not reference and not refused and all(map(by_design, missing)):
            return module, True, []  # host calls by design: no warning
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

    def __init__(self, ins: Instr, tape: Tape, backend: ModuleType | None = None) -> None:
        self.ins = ins
        prim = registry[ins.prim]
        self.params = ins.kwargs
        # a primitive holding a tape of its own (a loop) builds it for the backend once
        on_backend = getattr(prim, "host_impl", None)
        self.impl = prim.impl if on_backend is None else on_backend(self.params, backend)
        self.dtype = tape.avals[ins.out].dtype

    def run(self, env: dict[int, Any]) -> bool:
        with np.errstate(all="ignore"):
            value = self.impl(*(env[s] for s in self.ins.ins), **self.params)
        env[self.ins.out] = np.asarray(value, dtype=self.dtype)
        return True


def _runs(tape: Tape, native: frozenset[str], name: str = ""
          ) -> list[tuple[bool, list[Instr]]]:
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
    compiled = {id(ins) for ins in tape.instrs
                if ins.prim in native and refused(name, ins) is None}
    if name in ("c", "numba"):
        from .lower_loop import rounding_integers
        compiled.difference_update(map(id, rounding_integers(tape)))
    for ins in tape.instrs:
        level = max((available.get(s, 0) for s in ins.ins), default=0)
        levels.append(level)
        available[ins.out] = level + (id(ins) not in compiled)
    runs: list[tuple[bool, list[Instr]]] = []
    for level in range(max(levels, default=-1) + 1):
        here = [ins for ins, lv in zip(tape.instrs, levels) if lv == level]
        body = [ins for ins in here if id(ins) in compiled]
        if body:
            runs.append((True, body))
        runs.extend((False, [ins]) for ins in here if id(ins) not in compiled)
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
        runs = _runs(tape, native, name_of(backend))
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
                self.steps.append(_Host(ins, tape, backend))

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


# -- tiering: backend="auto" moves a function from the C VM to Numba once it has paid --
ELEMENTWISE_SAVING_S = 0.06e-9  # per array element of a cheap elementwise instruction, per call
TRANSCENDENTAL_SAVING_S = 0.5e-9  # per array element of a transcendental one, per call
# per scalar instruction of a loop body, per step: the VM dispatches each
# (about 3 ns), Numba's for loop runs the body as straight-line code
# (benchmarks/README.md, "Recurrences on the Numba backend")
LOOP_SCALAR_SAVING_S = 2e-9
NUMBA_EXTRA_CALL_S = 0.5e-6  # Numba's larger fixed cost per call (boxing, allocations)
NUMBA_COMPILE_S = (0.5, 3e-3)  # cold compile: fixed (more for a process's first) + per instruction
NUMBA_LOAD_S = (0.1, 0.2e-3)  # from the disk cache (measured 0.06-0.07 s)
VERIFY_CALLS = 5  # calls timed on each backend before keeping the faster


def tape_stats(tape: Tape) -> dict[str, Any]:
    """What the rule reads: instructions, scalar instructions, and the array
    elements that elementwise instructions produce per call (all of them, and
    those of transcendental functions), by each primitive's cost class
    (`Primitive.cost`: "cheap" or "transcendental"; views are free).  A loop
    instruction's body counts once among the instructions (it is compiled
    once) and its trip count of times among the elements, and its scalar
    instructions run per step are ``loop_scalar``."""
    scalar = elements = transcendental = loop_scalar = 0
    instructions = 0
    stack = [(tape, 1, False)]  # (tape, runs per call, inside a loop)
    while stack:
        current, runs, in_loop = stack.pop()
        instructions += len(current.instrs)
        for ins in current.instrs:
            aval = current.avals[ins.out]
            if ins.prim == "loop":
                # (a while loop's count is read at run time: counted as one step)
                stack.append((ins.kwargs["body"].tape, runs * max(ins.kwargs["length"], 1),
                              True))
                continue
            if aval.shape == ():
                scalar += not in_loop
                loop_scalar += runs if in_loop else 0
                continue
            cost = registry[ins.prim].cost
            if cost == "cheap":
                elements += aval.size * runs
            elif cost == "transcendental":
                elements += aval.size * runs
                transcendental += aval.size * runs
    n = len(tape.instrs)
    return {"instructions": instructions, "scalar": scalar, "elementwise_elements": elements,
            "transcendental_elements": transcendental, "loop_scalar": loop_scalar,
            "scalar_share": scalar / n if n else 0.0}


def saving_per_call(stats: dict[str, Any]) -> float:
    """Seconds per call Numba is predicted to save over the C VM (may be < 0)."""
    cheap = stats["elementwise_elements"] - stats["transcendental_elements"]
    return (ELEMENTWISE_SAVING_S * cheap + TRANSCENDENTAL_SAVING_S * stats["transcendental_elements"]
            + LOOP_SCALAR_SAVING_S * stats.get("loop_scalar", 0) - NUMBA_EXTRA_CALL_S)


def compile_cost(stats: dict[str, Any], cached: bool) -> float:
    fixed, per_instruction = NUMBA_LOAD_S if cached else NUMBA_COMPILE_S
    return fixed + per_instruction * stats["instructions"]


def break_even_calls(extra_compile_s: float, saving_per_call_s: float) -> float:
    """Calls after which a compile that costs ``extra_compile_s`` has paid for
    itself by saving ``saving_per_call_s`` per call (inf: never)."""
    if saving_per_call_s <= 0:
        return math.inf
    return max(1.0, math.ceil(extra_compile_s / saving_per_call_s))


def build_auto(tape: Tape) -> Any:
    """``tape`` built for ``backend="auto"`` where both the C VM and Numba are
    available: a plain VM executable where Numba never pays, else a `Tiered`
    one that moves itself once it has.  Nothing here generates Numba source:
    whether the kernel is in the disk cache is looked up in the background,
    once the calls have reached the cached kernel's break-even."""
    from . import get
    exe = get("c").build(tape)
    if unsupported(get("numba"), tape):
        return exe
    cold = promote_after(tape, numba_cached=False)
    if not math.isfinite(cold):
        return exe
    warm = promote_after(tape, numba_cached=True)
    return Tiered(tape, exe, cold, get("numba").build, after_if_cached=warm,
                  is_cached=numba_cached)


def promote_after(tape: Tape, numba_cached: bool) -> float:
    """How many calls ``auto`` runs ``tape`` on the C VM before compiling it
    with Numba; inf when it never does."""
    stats = tape_stats(tape)
    return break_even_calls(compile_cost(stats, numba_cached), saving_per_call(stats))


def numba_cached(tape: Tape) -> bool:
    """Is this tape's Numba code already in the disk cache?  (Generates the
    source to hash it: about 1 s for 40,000 instructions, so only the
    background tier-up asks.)"""
    from . import numba_backend
    try:
        return numba_backend.cached(tape)
    except Exception:  # noqa: BLE001 -- code Numba cannot generate is never cached
        return False


class TierState(NamedTuple):
    """What a `Tiered` executable runs now.  One immutable object, replaced
    whole: a call reads it once, so it never pairs one backend's executable
    with the other's name, and a swap is one assignment."""

    exe: Any
    backend: str
    decided: bool  # no more counting: the calls go straight to ``exe``


class Tiered:
    """An executable that runs on the C VM, counts its calls, and after
    ``after`` of them (``after_if_cached`` when ``is_cached(tape)`` says the
    second backend's code is already in its disk cache) builds the second
    backend's executable in a background thread, times both there and swaps
    the faster in (`TierState`).  No call waits for that: calls meanwhile run
    on the VM.  Once decided, ``run`` and ``run_args`` are the chosen
    executable's own (holders of the counting ones, such as a published call
    shortcut, pass straight through).

    Counters are updated without a lock (a lost increment under threads
    shifts the promotion by a call); starting the background job is guarded
    so that it starts once.  A forked child does not inherit the parent's
    running job (its thread does not exist there): `_forget_jobs_in_child`
    lets the child start its own.  The thread is a daemon, and an
    interpreter that is exiting starts no job and skips a job's next step."""

    def __init__(self, tape: Tape, first: Any, after: float,
                 build_second: Callable[[Tape], Any], names: tuple[str, str] = ("c", "numba"),
                 after_if_cached: float | None = None,
                 is_cached: Callable[[Tape], bool] | None = None) -> None:
        self.tape = tape
        self.first = first
        self.names = names
        self.after = after
        self.after_if_cached = after if after_if_cached is None else min(after, after_if_cached)
        self.is_cached = is_cached
        self.build_second = build_second
        self.state = TierState(first, names[0], False)
        # what cache_info() shows (`info`)
        self.calls = 0
        self.first_seconds = 0.0  # the counted calls' time on the first backend
        self.phase = "counting"
        self.second_cached: bool | None = None
        self.compile_s: float | None = None
        self.timed: dict[str, float] = {}
        self.error: str | None = None
        self._next_step = self.after_if_cached if is_cached is not None else after
        self._job: threading.Event | None = None  # set when the running step ends
        self._start_lock = locks.Lock()
        self.run = self._counting_run
        self.run_args = self._counting_run_args
        _tiered.add(self)

    # -- the calls -----------------------------------------------------------------------
    def _counting_run(self, inputs: Sequence[Any]) -> list[Any] | None:
        state = self.state
        if state.decided:
            return state.exe.run(inputs)
        start = time.perf_counter()
        result = state.exe.run(inputs)
        self._count(time.perf_counter() - start, inputs)
        return result

    def _counting_run_args(self, args: tuple[Any, ...], which: int) -> Any:
        state = self.state
        if state.decided:
            return state.exe.run_args(args, which)
        start = time.perf_counter()
        result = state.exe.run_args(args, which)
        if result is not None:  # a call the fast path took: args are what was compiled for
            self._count(time.perf_counter() - start, args)
        return result

    def _count(self, seconds: float, inputs: Sequence[Any]) -> None:
        self.calls += 1
        self.first_seconds += seconds
        if self.calls >= self._next_step and self._job is None:
            self._start(inputs)

    def __getattr__(self, name: str) -> Any:
        # what else the running executable offers (the C VM's run_batch)
        if name in ("state", "first"):
            raise AttributeError(name)
        return getattr(self.state.exe, name)

    # -- the background job --------------------------------------------------------------
    def _start(self, inputs: Sequence[Any]) -> None:
        """Start the next step in a daemon thread, once whatever the threads
        (a thread that finds another starting it runs on)."""
        if _exiting or not self._start_lock.acquire(blocking=False):
            return
        try:
            if self._job is not None or self.state.decided:
                return
            # the inputs as they are now: a caller may update its arrays in place
            saved = [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in inputs]
            self._job = done = threading.Event()
            threading.Thread(target=self._step, args=(saved, done), daemon=True,
                             name="fastad-tier-up").start()
        finally:
            self._start_lock.release()

    def _step(self, inputs: list[Any], done: threading.Event) -> None:
        try:
            if self.is_cached is not None and self.second_cached is None:
                self.phase = "looking up the disk cache"
                self.second_cached = bool(self.is_cached(self.tape))
                if not self.second_cached and self.calls < self.after:
                    self.phase = "counting"
                    self._next_step = self.after  # a cold compile waits for its break-even
                    done.set()
                    self._job = None
                    return
            if not _exiting:
                self._promote(inputs)
        except Exception as error:  # noqa: BLE001 -- whatever fails keeps the first backend
            self.error = f"{type(error).__name__}: {error}"
            self._decide(self.first, "failed")
        finally:
            done.set()

    def _promote(self, inputs: list[Any]) -> None:
        self.phase = "compiling"
        start = time.perf_counter()
        second = self.build_second(self.tape)
        self.compile_s = time.perf_counter() - start
        if _exiting:
            return
        self.phase = "timing"
        self.timed = _best_times({self.names[0]: self.first, self.names[1]: second}, inputs)
        faster = second if self.timed[self.names[1]] < self.timed[self.names[0]] else self.first
        self._decide(faster, "promoted" if faster is second else "kept")

    def _decide(self, exe: Any, phase: str) -> None:
        self.state = TierState(exe, self.names[0] if exe is self.first else self.names[1], True)
        self.run = exe.run
        self.run_args = exe.run_args
        self.phase = phase

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running background step (tests, benchmarks); whether one
        had finished or none was running."""
        job = self._job
        return job is None or job.wait(timeout)

    # -- what it shows -------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The name of the backend running the calls now."""
        return self.state.backend

    @property
    def current(self) -> Any:
        return self.state.exe

    def info(self) -> dict[str, Any]:
        """The counts, timings and decision that drive promotion (`cache_info`)."""
        calls = self.calls
        return {"backend": self.state.backend, "phase": self.phase, "calls": calls,
                "promote_after": self.after, "promote_after_if_cached": self.after_if_cached,
                "second_cached": self.second_cached,
                "first_s_per_call": self.first_seconds / calls if calls else None,
                "compile_s": self.compile_s, "timed_s_per_call": dict(self.timed),
                "error": self.error}

    def __str__(self) -> str:
        return str(self.state.exe)


def tier_info(exe: Any) -> dict[str, Any] | None:
    """What `Tiered.info` says of ``exe``; None for an executable that never moves."""
    return exe.info() if isinstance(exe, Tiered) else None


def _best_times(executables: dict[str, Any], inputs: Sequence[Any]) -> dict[str, float]:
    """Seconds per call of each executable on ``inputs``: the best of
    VERIFY_CALLS calls, in alternating rounds after one warming call each (the
    best, since calls in this thread wait for the interpreter lock now and
    then)."""
    best = {}
    for name, exe in executables.items():
        exe.run(inputs)
        best[name] = math.inf
    for _ in range(VERIFY_CALLS):
        for name, exe in executables.items():
            start = time.perf_counter()
            exe.run(inputs)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


# Every Tiered executable alive, for the fork handler; and whether the
# interpreter is exiting (no background step starts then).
_tiered: "weakref.WeakSet[Tiered]" = weakref.WeakSet()
_exiting = False


def _forget_jobs_in_child() -> None:
    """In a forked child, a background step of the parent's has no thread:
    forget it, so that the child's next counted call starts its own."""
    for exe in list(_tiered):
        if exe._job is not None and not exe.state.decided:
            exe._job = None
            exe.phase = "counting"


def _at_exit() -> None:
    global _exiting
    _exiting = True


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_jobs_in_child)
