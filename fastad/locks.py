"""Locks that a forked child receives unheld.

``os.fork()`` copies a lock in whatever state it is in, but only the thread
that forked exists in the child: a lock another thread held at the fork
(tracing a signature, building an executable) would stay held in the child
forever, and the child's first call that needs it would hang.  The locks
made here are replaced by fresh ones in the child (``os.register_at_fork``),
so the child traces or builds for itself whatever the parent had not
finished; what they guard is published by single assignments, never left
half-written by a thread that stopped at the fork.

They are re-entrant: a function traced under its signature's lock may call
itself (same thread) without deadlocking.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_all: "weakref.WeakSet[Lock]" = weakref.WeakSet()


class Lock:
    """A re-entrant lock, fresh (unheld) in a forked child."""

    __slots__ = ("_lock", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        _all.add(self)

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> "Lock":
        self._lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


def _reset_in_child() -> None:
    for lock in list(_all):
        if not lock._lock._is_owned():  # the forking thread's own locks it releases itself
            lock._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
