"""``jax.debug``: ``print`` and ``callback`` inside traced functions.

A traced function's values exist when it is traced: eagerly (``fa.grad``,
which traces on every call) the printout shows each call's values; inside
a compiled function it shows the values of the call that traced it, once
per trace, as a trace-time print (``print`` of a traced value shows its
value and marks it traced).  For a value at every compiled call, return it.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable

import numpy as np

from .core import pytree
from .core.tracer import Tracer

__all__ = ["print", "callback", "breakpoint"]


def _value(x: Any) -> Any:
    return np.asarray(x.value) if isinstance(x, Tracer) else x


def _values(tree: Any) -> Any:
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [_value(leaf) for leaf in leaves])


def print(fmt: str, *args: Any, ordered: bool = False, **kwargs: Any) -> None:  # noqa: A001
    """``fmt.format(*args, **kwargs)`` of the arguments' values."""
    builtins.print(fmt.format(*_values(args), **_values(kwargs)))


def callback(callback: Callable[..., Any], *args: Any, ordered: bool = False,
             **kwargs: Any) -> None:
    """``callback`` called on the arguments' values (see the module's note on
    when, for a compiled function)."""
    callback(*_values(args), **_values(kwargs))


def breakpoint(*, backend: Any = None, filter_frames: bool = True, num_frames: Any = None,
               ordered: bool = False, token: Any = None, **kwargs: Any) -> None:  # noqa: A001
    """Python's debugger, where the function is traced."""
    builtins.breakpoint()
