"""Guards: Python control flow on traced values.

``bool()`` of a traced value returns the concrete outcome and records a
``guard`` instruction holding the predicate and that outcome.  A compiled
replay checks every guard; one that disagrees means the recorded path is not
the path this input takes, and nothing from that replay is used.

While `watching` is active, each guard recorded this way is logged, and its
outcome may be forced: if-conversion (`transforms.ifconvert`) runs the
function again down the branches it did not take, to record them.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from .registry import registry


class GuardLog:
    """The guards ``bool()`` recorded into ``builder`` during `watching`:
    their instructions' output slots and the outcomes the function saw."""

    def __init__(self, forced: Sequence[bool] | None) -> None:
        self.forced = forced
        self.slots: list[int] = []
        self.outcomes: list[bool] = []
        self.builder: Any = None


class PathLeft(BaseException):
    """A run with forced outcomes reached more guards than were forced: it
    has left the path it was to record (a BaseException, so that the
    function's own ``except Exception`` cannot keep it running)."""


class _Watch(threading.local):
    def __init__(self) -> None:
        self.log: GuardLog | None = None


_watch = _Watch()


@contextlib.contextmanager
def watching(forced: Sequence[bool] | None = None) -> Iterator[GuardLog]:
    """Log the guards recorded into the innermost trace from now on; with
    ``forced``, guard k takes outcome ``forced[k]`` whatever its predicate's
    value (the trace then records an untaken path, which only if-conversion
    reads: its own guards say it does not hold for these inputs), and a
    guard beyond them raises `PathLeft`: a loop forced out of its path
    cannot run on for ever."""
    from .tracer import current_builder
    log, before = GuardLog(forced), _watch.log
    log.builder = current_builder()
    _watch.log = log
    try:
        yield log
    finally:
        _watch.log = before


def record_guard(t: Any) -> bool:
    from .tracer import bind
    value = t.value
    if np.size(value) != 1:
        raise ValueError(f"the truth value of a traced array of shape {np.shape(value)} is "
                         "ambiguous; use .any() or .all(), or fastad.numpy.where to stay "
                         "branch-free")
    outcome = bool(np.asarray(value).reshape(()))
    pred = t if t.dtype == np.bool_ else t != 0
    if np.ndim(pred.value) != 0:  # one element of any shape
        pred = bind(registry["reshape"], pred, shape=())
    log = _watch.log
    if log is not None and pred.builder is log.builder:
        k = len(log.outcomes)
        if log.forced is not None:
            if k >= len(log.forced):
                raise PathLeft(f"more than the {len(log.forced)} guards forced")
            outcome = bool(log.forced[k])
        bind(registry["guard"], pred, expected=outcome)
        log.slots.append(log.builder.tape.instrs[-1].out)
        log.outcomes.append(outcome)
        return outcome
    bind(registry["guard"], pred, expected=outcome)
    return outcome
