"""Random draws while a function is traced to be compiled are refused.

A compiled function runs its tape, not its Python code: numbers a trace drew
from ``np.random`` or Python's ``random`` would be constants of the tape, the
same draw on every call, where the function itself draws afresh.  So a trace
that advances a random generator the function can reach (NumPy's global
one, Python's ``random`` module's, or a ``Generator``/``RandomState``/
``random.Random`` found the way `fastad.captures` walks: closures, defaults,
globals, partial arguments, attributes) raises `TracingError` naming the
fix: pass the noise as an argument.  A generator made inside the function
from a fixed seed draws the same numbers on every call anyway, and is left
alone; one made from fresh entropy (``np.random.default_rng()``,
``random.Random()``) is refused like a reachable one, and so is any read of
the operating system's entropy (``os.urandom``, ``secrets``,
``random.SystemRandom``, ``uuid.uuid4``), which has no state to compare.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
from typing import Any, Callable, Iterator

import numpy as np
import numpy.random.bit_generator as _bit_generator

from .core.errors import TracingError
from .core import pytree
from . import capture_walk

_GENERATORS = (np.random.Generator, np.random.RandomState, np.random.BitGenerator,
               random.Random)


def _reachable(fn: Any) -> list[Any]:
    """The random generators ``fn``'s code can reach without arguments
    (a ``SystemRandom`` has no state: `_FreshEntropy` sees its draws)."""
    seen: dict[int, Any] = {id(np.random.mtrand._rand): np.random.mtrand._rand,
                            id(random._inst): random._inst}
    try:
        found = capture_walk.reachable(fn, _GENERATORS)
    except TracingError:  # state out of the walk's reach: `capture_walk.find` refuses it
        found = []
    fn_globals = getattr(getattr(getattr(fn, "__func__", fn), "__wrapped__", fn),
                         "__globals__", None) or {}
    for value in found + list(fn_globals.values()):
        if isinstance(value, _GENERATORS) and not isinstance(value, random.SystemRandom):
            seen[id(value)] = value
    return list(seen.values())


def _state(generator: Any) -> bytes:
    if isinstance(generator, random.Random):
        return repr(generator.getstate()).encode()
    bits = generator if isinstance(generator, np.random.BitGenerator) else \
        getattr(generator, "bit_generator", None) or generator._bit_generator
    return repr(_plain(bits.state)).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value


def _entry_points() -> list[tuple[Any, str, Callable[..., bool]]]:
    """(owner, attribute, whether a call with these arguments reads fresh
    entropy): the doors through which a trace can get numbers that differ
    at each call without any generator's state to compare.  Python's
    ``random`` module binds ``os.urandom`` under its own name, so
    ``SystemRandom`` (and ``secrets``, built on it) is watched at its
    methods that every other one of its draws goes through."""
    always = lambda *args, **kwargs: True  # noqa: E731
    return [(_bit_generator, "randbits", always), (os, "urandom", always),
            (random.SystemRandom, "random", always),
            (random.SystemRandom, "getrandbits", always),
            (random.SystemRandom, "randbytes", always),
            # random.Random() / .seed(): from the OS's entropy when given no seed
            (random.Random, "seed", lambda self, a=None, *rest, **kw: a is None)]


class _FreshEntropy:
    """The threads whose trace read fresh entropy: a generator seeded from
    it (``np.random.default_rng()``, ``PCG64()``, ``RandomState()``,
    ``random.Random()``) or the OS's random bytes (``os.urandom``,
    ``secrets``, ``random.SystemRandom``).  While any trace runs, each entry
    point of `_entry_points` is replaced by a spy that only notes the call,
    then calls the real one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracing: dict[int, int] = {}  # thread -> nesting of traces
        self.seeded: set[int] = set()  # threads whose trace asked for entropy
        self.originals: list[tuple[Any, str, Any]] = []

    def _spy(self, original: Any, fresh: Callable[..., bool]) -> Any:
        @functools.wraps(original)
        def spy(*args: Any, **kwargs: Any) -> Any:
            thread = threading.get_ident()
            if thread in self.tracing and fresh(*args, **kwargs):
                self.seeded.add(thread)
            return original(*args, **kwargs)
        return spy

    @contextlib.contextmanager
    def watched(self) -> Iterator[Callable[[], bool]]:
        thread = threading.get_ident()
        with self.lock:
            if not self.tracing:
                self.originals = []
                for owner, name, fresh in _entry_points():
                    original = owner.__dict__[name] if isinstance(owner, type) \
                        else getattr(owner, name)
                    self.originals.append((owner, name, original))
                    setattr(owner, name, self._spy(original, fresh))
            depth = self.tracing.get(thread, 0)
            self.tracing[thread] = depth + 1
            seeded_before = thread in self.seeded
            self.seeded.discard(thread)
        try:
            yield lambda: thread in self.seeded
        finally:
            with self.lock:
                if depth:
                    self.tracing[thread] = depth
                    if seeded_before:
                        self.seeded.add(thread)
                else:
                    del self.tracing[thread]
                    self.seeded.discard(thread)
                if not self.tracing:
                    for owner, name, original in self.originals:
                        setattr(owner, name, original)
                    self.originals = []


_fresh = _FreshEntropy()


@contextlib.contextmanager
def refused(fn: Callable[..., Any], same_twice: Callable[[], bool] | None = None
            ) -> Iterator[None]:
    """Raise `TracingError` if tracing ``fn`` inside the block draws from a
    generator it can reach, or seeds one from fresh entropy, and
    ``same_twice()`` (``fn`` run twice on the same arguments) says its
    results change: NumPy's ``RandomState(seed)`` asks for fresh entropy
    before it seeds, and draws that do not reach the results (a value drawn
    and not used) make no stale result either."""
    generators = _reachable(fn)
    before = [_state(g) for g in generators]
    with _fresh.watched() as seeded:
        yield
        fresh = seeded()
    name = getattr(fn, "__qualname__", repr(fn))
    drawn = [g for g, state in zip(generators, before) if _state(g) != state]
    if not (drawn or fresh) or (same_twice is not None and same_twice()):
        return
    if drawn:
        which = ("np.random's global generator" if drawn[0] is np.random.mtrand._rand else
                 "Python's random module" if drawn[0] is random._inst else
                 f"a {type(drawn[0]).__name__}")
        raise TracingError(_message(name, f"drew random numbers from {which}"))
    raise TracingError(_message(name, "read fresh entropy (a generator made without a seed: "
                                      "np.random.default_rng(), random.Random(); or "
                                      "os.urandom, secrets, random.SystemRandom)"))


def same_results(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 runs: int = 8) -> bool:
    """Whether ``runs`` eager calls of ``fn`` give the same results, bit for
    bit.  Asked only of a trace that drew: a draw from few outcomes
    (``random.choice`` of three) agrees between two calls too often to be
    told from a draw that never reaches the results."""
    first = pytree.flatten(fn(*args, **kwargs))[0]
    for _ in range(runs - 1):
        again = pytree.flatten(fn(*args, **kwargs))[0]
        if len(first) != len(again) or not all(
                np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again)):
            return False
    return True


def _message(name: str, what: str) -> str:
    return (f"{name} {what} while it was traced to be compiled: the compiled function would "
            "return that same draw on every call. Pass the random numbers as an argument "
            "(g(x, noise) with noise = rng.standard_normal(shape) drawn before each call), or "
            "use fastad.grad, which runs the function on every call")
