"""Random draws while a function is traced to be compiled are refused.

A compiled function runs its tape, not its Python code: numbers a trace drew
from ``np.random`` would be constants of the tape, the same draw on every
call, where the function itself draws afresh.  So a trace that advances a
random generator the function can reach (NumPy's global one, or a
``Generator``/``RandomState`` in its closure, defaults or module globals)
raises `TracingError` naming the fix: pass the noise as an argument.  A
generator made inside the function from a fixed seed draws the same numbers
on every call anyway, and is left alone; one made from fresh entropy
(``np.random.default_rng()``) is refused like a reachable one.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator

import numpy as np
import numpy.random.bit_generator as _bit_generator

from .core.errors import TracingError
from .core import pytree

_GENERATORS = (np.random.Generator, np.random.RandomState, np.random.BitGenerator)


def _reachable(fn: Any) -> list[Any]:
    """The random generators ``fn``'s code can reach without arguments."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    fn = getattr(fn, "__wrapped__", fn)
    seen: dict[int, Any] = {id(np.random.mtrand._rand): np.random.mtrand._rand}
    candidates: list[Any] = list(getattr(fn, "__defaults__", None) or ())
    candidates += list((getattr(fn, "__kwdefaults__", None) or {}).values())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    candidates += list((getattr(fn, "__globals__", None) or {}).values())
    for value in candidates:
        if isinstance(value, _GENERATORS):
            seen[id(value)] = value
    return list(seen.values())


def _state(generator: Any) -> bytes:
    bits = generator if isinstance(generator, np.random.BitGenerator) else \
        getattr(generator, "bit_generator", None) or generator._bit_generator
    return repr(_plain(bits.state)).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value


class _FreshEntropy:
    """The threads whose trace seeded a generator from fresh entropy
    (``np.random.default_rng()``, ``PCG64()``, ``RandomState()``): NumPy asks
    `numpy.random.bit_generator.randbits` for it, which this spies on while
    any trace runs (the spy only counts, then asks the real one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracing: dict[int, int] = {}  # thread -> nesting of traces
        self.seeded: set[int] = set()  # threads whose trace asked for entropy
        self.original: Any = None

    def spy(self, bits: int) -> Any:
        thread = threading.get_ident()
        if thread in self.tracing:
            self.seeded.add(thread)
        return self.original(bits)

    @contextlib.contextmanager
    def watched(self) -> Iterator[Callable[[], bool]]:
        thread = threading.get_ident()
        with self.lock:
            if not self.tracing:
                self.original = _bit_generator.randbits
                _bit_generator.randbits = self.spy
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
                    _bit_generator.randbits = self.original


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
        which = "np.random's global generator" if drawn[0] is np.random.mtrand._rand else \
            f"a {type(drawn[0]).__name__}"
        raise TracingError(_message(name, f"drew random numbers from {which}"))
    raise TracingError(_message(name, "made a random generator from fresh entropy "
                                      "(np.random.default_rng() without a seed)"))


def same_results(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether two eager calls of ``fn`` give the same results, bit for bit."""
    first, second = (pytree.flatten(fn(*args, **kwargs))[0] for _ in range(2))
    return len(first) == len(second) and all(
        np.array_equal(a, b, equal_nan=True) for a, b in zip(first, second))


def _message(name: str, what: str) -> str:
    return (f"{name} {what} while it was traced to be compiled: the compiled function would "
            "return that same draw on every call. Pass the random numbers as an argument "
            "(g(x, noise) with noise = rng.standard_normal(shape) drawn before each call), or "
            "use fastad.grad, which runs the function on every call")
