"""``jax.debug``: ``print`` and ``callback`` inside traced functions.

Eagerly (plain values, or ``fa.grad``, which traces on every call) they
print, or call, at once with the values.  Inside a compiled function's
trace they are recorded as a host call run for what it does (a primitive of
effect "io": kept by dead-code elimination, never merged or rerolled), so
every call of the compiled function prints its own values, as
``jax.debug.print`` does under ``jax.jit``; the trace itself prints
nothing.  Under vmap they run once per example.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable

import numpy as np

from .core import pytree
from .core.tracer import Tracer, bind, in_compiled_trace

__all__ = ["print", "callback", "breakpoint"]


def _value(x: Any) -> Any:
    return np.asarray(x.value) if isinstance(x, Tracer) else x


def _called(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
    """``fn`` on the values of ``args`` and ``kwargs``: now, or, inside a
    compiled function's trace, at every call of the compiled function."""
    leaves, tree = pytree.flatten((args, kwargs))
    traced = [k for k, leaf in enumerate(leaves) if isinstance(leaf, Tracer)]
    if not traced or not in_compiled_trace():
        args, kwargs = pytree.unflatten(tree, [_value(leaf) for leaf in leaves])
        fn(*args, **kwargs)
        return None

    def host(*values: Any) -> Any:
        if not in_compiled_trace():  # a call of the compiled function, not its trace
            filled = list(leaves)
            for k, v in zip(traced, values):
                filled[k] = v
            a, kw = pytree.unflatten(tree, filled)
            fn(*a, **kw)
        return np.float64(0.0)

    bind(_effect(fn, host), *[leaves[k] for k in traced])
    return None


def _effect(fn: Callable[..., Any], host: Callable[..., Any]) -> Any:
    """A new primitive running ``host`` at every call of a compiled function,
    for what it does; no derivative, and nothing while the trace records it."""
    from .custom_rules import _new_primitive
    from .transforms import batching
    prim = _new_primitive(fn, "debug_callback", host)
    prim.effect = "io"
    prim.differentiable = False
    prim.batch_rule = batching.per_example
    return prim


def print(fmt: str, *args: Any, ordered: bool = False, **kwargs: Any) -> None:  # noqa: A001
    """``fmt.format(*args, **kwargs)`` of the arguments' values."""
    _called(lambda *a, **kw: builtins.print(fmt.format(*a, **kw)), args, kwargs)


def callback(callback: Callable[..., Any], *args: Any, ordered: bool = False,
             **kwargs: Any) -> None:
    """``callback`` called on the arguments' values (see the module's note on
    when, for a compiled function)."""
    _called(callback, args, kwargs)


def breakpoint(*, backend: Any = None, filter_frames: bool = True, num_frames: Any = None,
               ordered: bool = False, token: Any = None, **kwargs: Any) -> None:  # noqa: A001
    """Python's debugger, where the function is traced."""
    builtins.breakpoint()
