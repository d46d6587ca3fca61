"""``backend="auto"``: when a compiled function should leave the C VM for Numba.

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
After that compile both executables are timed on the current input and the
faster one is kept, so a wrong prediction costs one compile, never a slower
function.  When the C extension is missing, ``auto`` is Numba from the start.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Sequence

from ..core.registry import registry
from ..core.tape import Tape

ELEMENTWISE_SAVING_S = 0.06e-9  # per array element of a cheap elementwise instruction, per call
TRANSCENDENTAL_SAVING_S = 0.5e-9  # per array element of a transcendental one, per call
NUMBA_EXTRA_CALL_S = 0.5e-6  # Numba's larger fixed cost per call (boxing, allocations)
NUMBA_COMPILE_S = (0.5, 3e-3)  # cold compile: fixed (more for a process's first) + per instruction
NUMBA_LOAD_S = (0.1, 0.2e-3)  # from the disk cache (measured 0.06-0.07 s)
VERIFY_CALLS = 5  # calls timed on each backend before keeping the faster


def tape_stats(tape: Tape) -> dict[str, Any]:
    """What the rule reads: instructions, scalar instructions, and the array
    elements that elementwise instructions produce per call (all of them, and
    those of transcendental functions), by each primitive's cost class
    (`Primitive.cost`: "cheap" or "transcendental"; views are free)."""
    scalar = elements = transcendental = 0
    for ins in tape.instrs:
        aval = tape.avals[ins.out]
        if aval.shape == ():
            scalar += 1
            continue
        cost = registry[ins.prim].cost
        if cost == "cheap":
            elements += aval.size
        elif cost == "transcendental":
            elements += aval.size
            transcendental += aval.size
    n = len(tape.instrs)
    return {"instructions": n, "scalar": scalar, "elementwise_elements": elements,
            "transcendental_elements": transcendental,
            "scalar_share": scalar / n if n else 0.0}


def saving_per_call(stats: dict[str, Any]) -> float:
    """Seconds per call Numba is predicted to save over the C VM (may be < 0)."""
    cheap = stats["elementwise_elements"] - stats["transcendental_elements"]
    return (ELEMENTWISE_SAVING_S * cheap + TRANSCENDENTAL_SAVING_S * stats["transcendental_elements"]
            - NUMBA_EXTRA_CALL_S)


def compile_cost(stats: dict[str, Any], cached: bool) -> float:
    fixed, per_instruction = NUMBA_LOAD_S if cached else NUMBA_COMPILE_S
    return fixed + per_instruction * stats["instructions"]


def break_even_calls(extra_compile_s: float, saving_per_call_s: float) -> float:
    """Calls after which a compile that costs ``extra_compile_s`` has paid for
    itself by saving ``saving_per_call_s`` per call (inf: never)."""
    if saving_per_call_s <= 0:
        return math.inf
    return max(1.0, math.ceil(extra_compile_s / saving_per_call_s))


def promote_after(tape: Tape, numba_cached: bool) -> float:
    """How many calls ``auto`` runs ``tape`` on the C VM before compiling it
    with Numba; inf when it never does."""
    stats = tape_stats(tape)
    return break_even_calls(compile_cost(stats, numba_cached), saving_per_call(stats))


def numba_cached(tape: Tape) -> bool:
    """Is this tape's Numba code already in the disk cache?"""
    from . import numba_backend
    try:
        return numba_backend.cached(tape)
    except Exception:  # noqa: BLE001 -- code Numba cannot generate is never cached
        return False


class Tiered:
    """An executable that runs on the C VM and moves itself to Numba after
    ``after`` calls (see the module docstring).  After the move, ``run`` and
    ``run_args`` are the chosen executable's own: no wrapper is left."""

    def __init__(self, tape: Tape, first: Any, after: float,
                 build_second: Callable[[Tape], Any], names: tuple[str, str] = ("c", "numba")
                 ) -> None:
        self.tape = tape
        self.first = self.current = first
        self.names = names
        self.left = after
        self.build_second = build_second
        self._lock = threading.Lock()
        self.run = self._counting_run
        self.run_args = self._counting_run_args

    def _counting_run(self, inputs: Sequence[Any]) -> list[Any] | None:
        self.left -= 1
        if self.left <= 0:
            self._decide(inputs)
        return self.current.run(inputs)

    def _counting_run_args(self, args: tuple[Any, ...], which: int) -> Any:
        result = self.current.run_args(args, which)
        if result is not None:  # a call the fast path took: args are what was compiled for
            self.left -= 1
            if self.left <= 0:
                self._decide(args)
        return result

    def __getattr__(self, name: str) -> Any:
        # what else the running executable offers (the C VM's run_batch)
        if name in ("current", "first"):
            raise AttributeError(name)
        return getattr(self.current, name)

    def _decide(self, inputs: Sequence[Any]) -> None:
        # Threads (batches, callers) decide once: a thread that finds another
        # deciding runs on meanwhile instead of waiting.  Nor does a forked
        # child whose parent was deciding wait: it stays on the first backend.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self.run == self._counting_run:
                self._decide_now(inputs)
        finally:
            self._lock.release()

    def _decide_now(self, inputs: Sequence[Any]) -> None:
        first = self.current
        try:
            second = self.build_second(self.tape)
        except Exception:  # noqa: BLE001 -- Numba failing to compile keeps the VM
            second = None
        if second is not None and _time(second, inputs) < _time(first, inputs):
            self.current = second
        self.left = math.inf  # shortcuts that still hold the counting run_args stop counting
        self.run = self.current.run
        self.run_args = self.current.run_args

    @property
    def backend(self) -> str:
        """The name of the backend running the calls now."""
        return self.names[0] if self.current is self.first else self.names[1]

    def __str__(self) -> str:
        return str(self.current)


def _time(exe: Any, inputs: Sequence[Any]) -> float:
    exe.run(inputs)  # first call: caches warmed
    start = time.perf_counter()
    for _ in range(VERIFY_CALLS):
        exe.run(inputs)
    return time.perf_counter() - start
