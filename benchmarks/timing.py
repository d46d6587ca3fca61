"""Timing one `Case`: first call and steady state.

Steady state follows the peer measurements: a round calls the function
``reps`` times, with ``reps`` chosen so a round lasts at least ``min_round_s``,
and the per-call mean of each round is kept; the report shows the median of
the rounds.  The machine is shared and noisy, so medians, never minimums of
single calls.
"""
from __future__ import annotations

import math
import signal
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from engines import Case


@dataclass
class FirstCall:
    seconds: float
    function: Callable  # the built function, for the steady-state timing
    result: Any  # the first result, for the correctness check


class TimeLimitExceeded(Exception):
    pass


@contextmanager
def time_limit(seconds: float | None):
    """Raise `TimeLimitExceeded` in the block after ``seconds`` of wall time.

    One slow compile must not hold the whole report hostage.  SIGALRM is
    delivered between Python bytecodes, so a long native call (an LLVM pass,
    a BLAS call) is interrupted when it returns.  The alarm repeats every
    second until the block ends: an exception raised inside a garbage-collector
    callback (JAX registers one) is printed and dropped, and the next alarm
    must land.  Without SIGALRM (Windows, a non-main thread) there is no limit.
    """
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"did not finish within {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def first_call(case: Case, limit_s: float | None = None) -> FirstCall:
    """Build (trace and compile, if the engine does) plus one call."""
    with time_limit(limit_s):
        start = time.perf_counter()
        function = case.build()
        result = function(*case.args)
        elapsed = time.perf_counter() - start
    return FirstCall(elapsed, function, result)


def _round(function: Callable, args: tuple, reps: int, clock: Callable = time.perf_counter
           ) -> float:
    start = clock()
    for _ in range(reps):
        function(*args)
    return clock() - start


def calibrate(function: Callable, args: tuple, min_round_s: float) -> int:
    """Smallest power-of-two-ish rep count whose round reaches ``min_round_s``."""
    reps = 1
    while True:
        elapsed = _round(function, args, reps)
        if elapsed >= min_round_s:
            return reps
        # Aim a little past the target so the next try usually succeeds.
        guess = reps * 1.2 * min_round_s / max(elapsed, 1e-9)
        reps = max(reps * 2, math.ceil(guess)) if elapsed < min_round_s / 8 else math.ceil(guess)


def steady(function: Callable, args: tuple, min_round_s: float = 0.2,
           rounds: int = 5) -> list[float]:
    """Per-call seconds of each round."""
    reps = calibrate(function, args, min_round_s)
    return [_round(function, args, reps) / reps for _ in range(rounds)]


def interleaved(fns: dict, args: tuple, min_round_s: float, rounds: int,
                clock: Callable = time.perf_counter, summary: Callable = None) -> dict:
    """Median seconds per call of each function, their rounds interleaved so
    that the load of a shared machine falls on all of them alike (``clock``
    and ``summary``: another clock, such as the process's CPU time, and
    another statistic of the rounds, such as the best)."""
    reps = {k: calibrate(fn, args, min_round_s / len(fns)) for k, fn in fns.items()}
    samples: dict = {k: [] for k in fns}
    order = list(fns)
    for r in range(rounds):
        # A round right after a memory-heavy one runs slower (measured: up to
        # 1.5x).  Rotating the order alone keeps who follows whom (in a, b, c
        # c is always after b); every other cycle of rotations runs the order
        # backwards, so each function follows each other one equally often and
        # the median can drop those rounds.
        turn = order[r % len(order):] + order[:r % len(order)]
        for k in (turn[::-1] if (r // len(order)) % 2 else turn):
            fns[k](*args)
            samples[k].append(_round(fns[k], args, reps[k], clock) / reps[k])
    return {k: (summary or median)(v) for k, v in samples.items()}


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}" if unit != "s" else f"{seconds:.2f} s"
    return f"{seconds / 1e-9:.0f} ns"
