"""A cached trace at a call: the arrays its closure and globals hold now
(`with_captures`, `baked` for saving), whether its guards take a call's
path (`guards_hold`), and the shortcut that runs it on arrays without the
cache (`take_shortcut`, `takes_shortcut`)."""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from . import captures
from .backends import reference
from .core import pytree
from .core.registry import registry
from .core.tape import Tape
from .core.tracer import Tracer, replay
from .numpy._array_type import Array as _ARRAY, as_arrays
from .signatures import Entry, plain_views


def replayed(tape: Tape, builder: Any, old: Any, inputs: list[Tracer], wrt: list[Tracer]
              ) -> tuple[Any, list[Tracer], list[Any]]:
    """Record ``tape`` afresh into ``builder``, which replaces ``old``: the
    builder, the tracers standing for ``wrt``, and the outputs."""
    new_inputs = [builder.new_input(old.values[t.slot]) for t in inputs]
    position = {t.slot: k for k, t in enumerate(inputs)}
    outs = replay(tape, new_inputs)
    return builder, [new_inputs[position[t.slot]] for t in wrt], outs


def baked(entry: Entry) -> Tape:
    """entry's tape with the arrays it reads by reference (its last inputs)
    turned into constants of the values their bindings hold now."""
    if not entry.by_reference:
        return entry.tape
    tape = copy.copy(entry.tape)
    n = len(entry.by_reference)
    tape.inputs, read = list(tape.inputs[:-n]), tape.inputs[-n:]
    tape.consts = dict(tape.consts)
    for slot, binding in zip(read, entry.by_reference):
        value = np.array(binding.current(), copy=True)
        aval = tape.avals[slot]
        if value.shape != aval.shape or value.dtype != aval.dtype:
            raise TypeError(f"{binding.describe()} changed shape or dtype since it was traced; "
                            "call the function once before saving it")
        value.flags.writeable = False
        tape.consts[slot] = value
    return tape


def with_captures(entry: Entry, run_args: Callable[[Any, int], Any]
                   ) -> Callable[[Any, int], Any]:
    """``run_args`` for a trace that read its closure or globals: declines
    (None, the general path retraces) when a binding changed, else runs on the
    arguments and the arrays the bindings hold now."""
    found, by_reference = entry.captures, entry.by_reference
    hold, note = found.hold, captures.note

    def run(args: tuple[Any, ...], which: int) -> Any:
        if not hold():
            return None
        note(found)  # inside an enclosing trace: it depends on them
        return run_args(args + tuple([b.current() for b in by_reference]), which)

    def run_guarded(args: tuple[Any, ...], which: int) -> Any:
        if not hold():
            return None
        note(found)
        return run_args(args, which)
    return run if by_reference else run_guarded


def guards_hold(entry: Entry, values: list[Any]) -> bool:
    """Does the trace ``entry`` take the path that ``values`` take?  A tape
    without guards fits any values of its signature; one with guards is
    evaluated on them (NumPy) before it is replayed, since a replayed guard
    that disagreed would have been recorded into the enclosing trace."""
    if entry.guarded is None:
        entry.guarded = any(registry[ins.prim].effect == "guard" for ins in entry.tape.instrs)
    return not entry.guarded or reference.evaluate(entry.tape, values) is not None


def take_shortcut(fast: Callable[[tuple[Any, ...], int], Any] | None, args: tuple[Any, ...],
              which: int) -> Any:
    """``fast(args, which)``, or None when there is no shortcut or it declines
    (given jax.Array's: of their plain views, the arrays returned as Arrays)."""
    if fast is None:
        return None
    out = fast(args, which)
    if out is None and _ARRAY in map(type, args):
        out = fast(plain_views(args), which)
        return None if out is None else as_arrays(out)
    return out


def takes_shortcut(key: Any) -> bool:
    """Is every argument of the signature one float array (or an integer or
    boolean array taken as data, converted by `with_data`)?  Then a call with
    exactly such arrays goes to ``run_args(args, which)`` of the compiled
    executable, skipping flattening and the cache (every backend's
    executable has `run_args`)."""
    for arg in key:  # a dynamic leaf's key is (shape, dtype char); static ones differ
        if len(arg) != 2 or arg[0] != pytree.LEAF or len(arg[1]) != 1 or len(arg[1][0]) != 2:
            return False
        shape = arg[1][0][0]
        if not isinstance(shape, tuple) or len(shape) == 0:
            return False
    return True


