"""Random draws while a function is traced to be compiled are refused.

A compiled function runs its tape, not its Python code: numbers a trace drew
from ``np.random`` would be constants of the tape, the same draw on every
call, where the function itself draws afresh.  So a trace that advances a
random generator the function can reach (NumPy's global one, or a
``Generator``/``RandomState`` in its closure, defaults or module globals)
raises `TracingError` naming the fix: pass the noise as an argument.  A
generator made inside the function from a fixed seed draws the same numbers
on every call anyway, and is left alone.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import numpy as np

from .core.errors import TracingError

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


@contextlib.contextmanager
def refused(fn: Callable[..., Any]) -> Iterator[None]:
    """Raise `TracingError` if tracing ``fn`` inside the block draws from a
    generator it can reach."""
    generators = _reachable(fn)
    before = [_state(g) for g in generators]
    yield
    for g, state in zip(generators, before):
        if _state(g) != state:
            name = getattr(fn, "__qualname__", repr(fn))
            which = "np.random's global generator" if g is np.random.mtrand._rand else \
                f"a {type(g).__name__}"
            raise TracingError(
                f"{name} drew random numbers from {which} while it was traced to be compiled: "
                "the compiled function would return that same draw on every call. Pass the "
                "random numbers as an argument (g(x, noise) with noise = "
                "rng.standard_normal(shape) drawn before each call), or use fastad.grad, "
                "which runs the function on every call")
