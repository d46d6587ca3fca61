"""Compiled functions: trace once per signature, replay the compiled tape after.

A *signature* is the pytree structure of the arguments, the shape and dtype
of every float leaf, and the value of everything else (ints, strings,
``static_argnums``).  Float leaves become inputs of the tape; other leaves are
baked in as constants.  Values that ``f`` closes over are captured as
constants when it is traced: changing them later does not change the
compiled function (as with ``jax.jit``).

Python control flow on traced values records guards.  A signature keeps a
list of traces; a replay whose guard disagrees is discarded and the next
trace is tried, and if none fits, ``f`` is traced again at this input.

Keyword arguments are part of the signature in the same way (float leaves
are data, others keyed by value; ``static_argnames`` keys a whole argument
by value).  Called on traced values (inside ``fastad.grad``, ``vmap``, an
enclosing ``jit``), a compiled function replays its cached tape for their
signature into the enclosing trace (`Specializer.inline`), so transforms
compose with it.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from . import backends, batched, locks, pytree
from .backends import reference, segmented
from .api import (Recorded, check_leaf, grad, gradient_of_scalar, hessian, hvp, jacobian,
                  plain_array, unpack_grads, value_and_grad, vmap)
from .errors import SignatureError, TapeError, TracingError
from .primitives.registry import registry
from .serialize import decode, dumps, encode, loads, tape_from_bytes
from .tape import Tape, where
from .tracer import Tracer, recording, replay, user_stacklevel
from .transforms.optimize import eliminate_dead_code, optimize
from .transforms.reroll import reroll
from .transforms.reverse import ReleasedValueRead

log = logging.getLogger("fastad")


def _is_dynamic(leaf: Any) -> bool:
    if isinstance(leaf, np.ndarray):
        return leaf.dtype.kind in "fc"
    return isinstance(leaf, (float, complex, np.floating, np.complexfloating, Tracer))


def _as_differentiable(leaf: Any) -> Any:
    """An integer the caller differentiates with respect to is the float it
    stands for (as in ``fastad.grad``), not a constant of the signature."""
    if isinstance(leaf, (int, np.integer)) and not isinstance(leaf, (bool, np.bool_)):
        return np.float64(leaf)
    return leaf


def _static_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        leaf = plain_array(leaf, "a constant argument")
        return ("array", leaf.dtype.str, leaf.shape, leaf.tobytes())
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(f"a non-float argument of type {type(leaf).__name__} is compiled in as a "
                        "constant and must be hashable; pass it through a closure instead") from None
    return ("value", type(leaf), leaf)


class ClosedOverTracer(TracingError):
    """The function being compiled closed over a value traced by an enclosing
    transformation: its trace would depend on that trace.  The call runs the
    function instead (`Specializer.general`)."""


class _TracedArguments(Exception):
    """An argument leaf is a traced value: the call is inlined (`Specializer.inline`)."""


def _static_names(fn: Callable[..., Any] | None, static_argnums: Sequence[int],
                  static_argnames: Sequence[str]) -> tuple[frozenset[int], frozenset[str]]:
    """``static_argnums`` and ``static_argnames`` each completed with the
    other's parameters (as ``jax.jit`` does): a static positional parameter
    passed by keyword is static too, and a name given in ``static_argnames``
    makes that parameter static when passed by position."""
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)
    if isinstance(static_argnames, str):
        static_argnames = (static_argnames,)
    nums, names = set(static_argnums), set(static_argnames)
    try:
        params = list(inspect.signature(fn).parameters.values()) if fn is not None else []
    except (TypeError, ValueError):  # a builtin or C callable: no signature to map
        params = []
    positional = [p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, name in enumerate(positional):
        if i in nums and params[i].kind is not params[i].POSITIONAL_ONLY:
            names.add(name)
        if name in names:
            nums.add(i)
    return frozenset(nums), frozenset(names)


def _any_tracer(tree: Any) -> bool:
    return any(isinstance(leaf, Tracer) for leaf in pytree.flatten(tree)[0])


def _leaf_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, leaf.dtype.char)
    return ((), np.result_type(leaf).char)


def _scalar(v: Any) -> Any:
    """0-d results as NumPy scalars, as NumPy's own reductions return them."""
    return v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v


class Structure(NamedTuple):
    """What turns a flat list of results back into the caller's pytrees."""

    out_tree: Any
    in_trees: tuple[Any, ...]


@dataclass(eq=False)
class Entry:
    """One trace: its tape, how results unpack, and its executable, built by
    ``build`` when first run (``g(x)`` alone never needs the full program).

    Threads: the executable is built once, under the entry's own lock (a
    second thread asking for it meanwhile waits for that build), and
    published by one assignment."""

    tape: Tape
    structure: Structure
    build: Callable[[Tape], Any]
    built: Any = None
    # the entry of the tape's outputs but the first, made when first needed:
    # `Specializer.grads_of`
    rest: "Entry | None" = None
    lock: locks.Lock = field(default_factory=locks.Lock, repr=False)
    # whether the tape records guards, found when first replayed on traced values
    guarded: bool | None = None

    @property
    def exe(self) -> Any:
        built = self.built
        if built is None:
            with self.lock:
                if self.built is None:
                    self.built = self.build(self.tape)
                built = self.built
        return built

    @property
    def guards(self) -> list[tuple[str, bool]]:
        """Each guard's source line and the outcome this trace recorded."""
        return [(where(ins.line), dict(ins.params)["expected"])
                for ins in self.tape.instrs if registry[ins.prim].effect == "guard"]


def _first_difference(new: Entry, old: list[Entry]) -> str:
    """Which guard sent this input down a path no cached trace took."""
    best = ""
    for entry in old:
        for (line_new, took), (line_old, took_old) in zip(new.guards, entry.guards):
            if line_new != line_old or took != took_old:
                best = f"the guard at {line_new} now evaluates to {took}"
                break
    return best or "a guard disagreed with every cached trace"


#: default for how many traces one signature may accumulate before fastad stops
#: compiling it and evaluates the function eagerly
MAX_TRACES_PER_SIGNATURE = 8

#: default for how many argument signatures one compiled function keeps (the
#: least recently used one's traces and executables are dropped beyond it;
#: FASTAD_MAX_SIGNATURES or ``max_signatures=`` change it).  A signature costs
#: its tapes and executables: kilobytes to megabytes on the C VM (the arena is
#: sized by the largest arrays), a compiled module and its constants on Numba.
#: 64 holds every shape of the usual shape-varying code (a few batch sizes,
#: a last short batch, train and test sets, the sizes of a multigrid or
#: sequence-bucketing loop) many times over, while a function called with a
#: new shape on every call (a growing sequence) stays at 64 signatures'
#: memory instead of growing without end; such a function retraces on every
#: call anyway, so a larger cache would not make it faster.
MAX_SIGNATURES = 64


def _max_signatures(value: int | None) -> int:
    if value is None:
        env = os.environ.get("FASTAD_MAX_SIGNATURES", "")
        try:
            value = int(env) if env else MAX_SIGNATURES
        except ValueError:
            raise ValueError(f"FASTAD_MAX_SIGNATURES must be a positive integer, got {env!r}"
                             ) from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"max_signatures must be a positive integer, got {value!r}")
    return int(value)


class Shortcut(NamedTuple):
    """What a call with exactly the arrays of the last traced signature runs
    (`Specializer.__call__`): ``run_args`` of the full program, ``grads``
    (that of `Specializer.grads_of`), each None until that program first
    runs, the structure their outputs unpack with, and whose they are.  One
    immutable object, replaced whole: a call reads it once, so another
    thread's new trace can never pair one entry's program with another's
    structure."""

    run_args: Callable[[Any, int], Any] | None
    grads: Callable[[Any, int], Any] | None
    structure: Structure | None
    entry: Entry | None


NO_SHORTCUT = Shortcut(None, None, None, None)


# What a compiled computation returns, by kind: the values to compute, recorded
# inside the trace, and how the caller receives them.
def _outputs_all(rec: Recorded) -> list[Any]:
    return list(rec.out_leaves)


def _unpack_all(structure: Structure, values: list[Any], argnums: Any) -> Any:
    return pytree.unflatten(structure.out_tree, values)


def _outputs_value_and_grad(rec: Recorded) -> list[Any]:
    return gradient_of_scalar(rec, "fastad.compile")


def _outputs_value_and_grad_strong_zero(rec: Recorded) -> list[Any]:
    return gradient_of_scalar(rec, "fastad.compile", strong_zero=True)


def _unpack_value_and_grad(structure: Structure, values: list[Any], argnums: Any) -> Any:
    return values[0], unpack_grads(structure.in_trees, argnums, values[1:])


def _outputs_value(rec: Recorded) -> list[Any]:
    return list(rec.out_leaves[:1])


def _unpack_value(structure: Structure, values: list[Any], argnums: Any) -> Any:
    return values[0]


def _aux_pair(out_tree: Any) -> bool:
    """Is ``out_tree`` that of ``(value, aux)`` with a one-leaf value?"""
    return (isinstance(out_tree, tuple) and len(out_tree) == 2
            and out_tree[0] in ("tuple", "list") and isinstance(out_tree[1], tuple)
            and len(out_tree[1]) == 2 and out_tree[1][0] == pytree.LEAF)


def _value_and_aux(rec: Recorded, strong_zero: bool) -> list[Any]:
    """``has_aux``: f returned ``(value, aux)``; the value and its gradient as
    without aux, then aux's leaves (outputs of the tape, not differentiated)."""
    if not _aux_pair(rec.out_tree):
        raise TypeError("fastad.compile(..., has_aux=True) requires a function returning a "
                        "pair (value, aux) whose value is one scalar")
    value = Recorded(rec.builder, rec.inputs, rec.in_trees, rec.outer_leaves,
                     rec.out_leaves[:1], pytree.LEAF)
    return (gradient_of_scalar(value, "fastad.compile", strong_zero=strong_zero)
            + list(rec.out_leaves[1:]))


def _unpack_value_and_aux(structure: Structure, values: list[Any], argnums: Any) -> Any:
    k = 1 + sum(pytree.num_leaves(t) for t in structure.in_trees)
    aux = pytree.unflatten(structure.out_tree[1][1], values[k:])
    return (values[0], aux), unpack_grads(structure.in_trees, argnums, values[1:k])


KINDS = {"outputs": (_outputs_all, _unpack_all),
         "value_and_grad": (_outputs_value_and_grad, _unpack_value_and_grad),
         "value_and_grad_strong_zero": (_outputs_value_and_grad_strong_zero,
                                        _unpack_value_and_grad),
         "value_and_grad_aux": (lambda rec: _value_and_aux(rec, False), _unpack_value_and_aux),
         "value_and_grad_strong_zero_aux": (lambda rec: _value_and_aux(rec, True),
                                            _unpack_value_and_aux),
         "value": (_outputs_value, _unpack_value)}


class Specializer:
    """One compiled computation of ``fn`` (a ``kind`` of KINDS), cached per
    signature.  ``fn`` is None for one loaded from bytes: it runs the
    signatures it was saved with and cannot trace new ones.

    Threads: the cache maps each signature to an immutable tuple of entries,
    replaced whole (never appended to in place) under ``_cache_lock``, which
    also orders the signatures for the LRU bound; the shortcut is one
    immutable `Shortcut`.  A call reads each once.  Traces of one signature
    take that signature's lock and look at the cache again once they hold
    it, so threads making the first call at once trace once and the others
    run that trace; compiled code never runs under a lock shared between
    signatures."""

    def __init__(self, fn: Callable[..., Any] | None, kind: str, argnums: Any,
                 static_argnums: Sequence[int], backend: str,
                 eager: Callable[..., Any] | None, max_traces: int | None = None,
                 check_nans: bool | None = None, optimize_tape: bool = True,
                 reroll: bool = True, exact_sums: bool = False,
                 max_signatures: int | None = None, static_argnames: Sequence[str] = ()
                 ) -> None:
        self.fn = fn
        self.reroll = reroll
        self.exact_sums = exact_sums
        self.kind = kind
        self.argnums = argnums
        self.check_nans = (os.environ.get("FASTAD_CHECK_NANS", "") not in ("", "0")
                           if check_nans is None else check_nans)
        self.eager = eager
        self.max_traces = MAX_TRACES_PER_SIGNATURE if max_traces is None else max_traces
        self.gave_up: set[Any] = set()
        self.fallbacks_warned: set[tuple[str, ...]] = set()
        self.outputs, self.unpack = KINDS[kind]
        wrt = None if argnums is None else ((argnums,) if isinstance(argnums, int) else argnums)
        self.wrt = None if wrt is None else tuple(wrt)
        self.static_argnums, self.static_argnames = _static_names(fn, static_argnums,
                                                                 static_argnames)
        self.backend_name = backend
        self.backend = backends.get(backend)
        self.optimize_tape = optimize_tape
        self.max_signatures = _max_signatures(max_signatures)
        # signature -> its traces, least recently used first
        self.cache: OrderedDict[Any, tuple[Entry, ...]] = OrderedDict()
        self._cache_lock = locks.Lock()
        self._trace_locks: dict[Any, locks.Lock] = {}
        self.traces = 0
        self.evicted = 0
        self.last: Entry | None = None
        # the last traced entry's shortcut, when its signature is float arrays
        self.shortcut: Shortcut = NO_SHORTCUT
        # `shortcut.run_args` and `shortcut.grads` alone, published with it, for
        # the calls that need nothing else from it (``g(x)``, the gradient as
        # the program returns it; ``g.value_and_grad(x)`` and ``g.value(x)``,
        # the outputs as they are): one callable, read once, one attribute
        # read fewer on the calls loops make
        self.full_run_args: Callable[[Any, int], Any] | None = None
        self.grads_run_args: Callable[[Any, int], Any] | None = None
        self._shortcut_key: Any = None

    def split(self, args: Sequence[Any], kwargs: dict[str, Any] | None = None,
              traced: bool = False) -> tuple[Any, list[Any]]:
        """The signature of a call and its dynamic leaves (the tape's inputs, in
        order: positional arguments, then keyword arguments by sorted name).
        A keyword argument's entry in the signature names it last.  Raises
        `_TracedArguments` if any leaf is a traced value, unless ``traced``
        (then a traced leaf is dynamic, keyed by its shape and dtype); a
        traced static argument raises it either way."""
        key: list[Any] = []
        dynamic: list[Any] = []
        for i, arg in enumerate(args):
            if i in self.static_argnums:
                if isinstance(arg, Tracer):
                    raise _TracedArguments
                key.append(("static", _static_key(arg)))
                continue
            differentiated = self.wrt is not None and i in self.wrt
            key.append(self._split_leaves(arg, differentiated, i, dynamic, traced))
        if kwargs:
            for name in sorted(kwargs):
                value = kwargs[name]
                if name in self.static_argnames:
                    if isinstance(value, Tracer):
                        raise _TracedArguments
                    key.append(("static", _static_key(value), name))
                    continue
                key.append(self._split_leaves(value, False, name, dynamic, traced) + (name,))
        return tuple(key), dynamic

    @staticmethod
    def _split_leaves(arg: Any, differentiated: bool, where: int | str, dynamic: list[Any],
                      traced: bool = False) -> tuple[Any, tuple[Any, ...]]:
        """The signature of one argument (positional ``where``, or keyword
        ``where``), its dynamic leaves appended to ``dynamic``."""
        leaves, tree = pytree.flatten(arg)
        parts = []
        for leaf in leaves:
            if isinstance(leaf, Tracer):
                # a traced mask or index is keyed by value on arrays: no signature
                if not traced or leaf.aval.dtype.kind not in "fc":
                    raise _TracedArguments
                dynamic.append(leaf)
                parts.append((tuple(leaf.aval.shape), leaf.aval.dtype.char))
                continue
            if isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray:
                leaf = plain_array(leaf, f"argument {where}" if isinstance(where, int)
                                   else f"keyword argument {where!r}")
            if differentiated:
                leaf = _as_differentiable(leaf)
            if _is_dynamic(leaf):
                if isinstance(leaf, np.ndarray) and not leaf.dtype.isnative:
                    # native order here: no backend ever reads swapped bytes
                    leaf = leaf.astype(leaf.dtype.newbyteorder("="))
                dynamic.append(leaf)
                parts.append(_leaf_key(leaf))
            else:
                parts.append(_static_key(leaf))
        return tree, tuple(parts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        shortcut = self.shortcut  # read once: its program and structure belong together
        run_args = shortcut.run_args
        if run_args is not None and not kwargs:  # `_shortcut` written out: the call loops make
            outs = run_args(args, -1)
            if outs is not None:
                return self.unpack(shortcut.structure, outs, self.argnums)
        return self.general(args, kwargs=kwargs)

    def inline(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
               grads_only: bool = False) -> Any:
        """A call on traced values (inside an enclosing transformation or trace):
        the cached tape of their signature, replayed on them, so that the
        enclosing trace records its primitives; traced first (on the traced
        values' values) if the signature has none.  A trace whose guards
        disagree with these values is skipped, as on arrays.  When no tape
        fits (a traced static argument, a signature evaluated eagerly), the
        eager computation this one compiles runs on them instead.  See
        "Transforms compose with compiled functions" in docs/design.md.
        ``grads_only``: as in `general` (the tape without the value)."""
        kwargs = kwargs or {}
        if (any(_any_tracer(arg) for i, arg in enumerate(args) if i in self.static_argnums)
                or any(_any_tracer(v) for k, v in kwargs.items() if k in self.static_argnames)):
            return self._eager_on_traced(args, kwargs)  # a static argument holds a traced value
        try:
            key, dynamic = self.split(args, kwargs, traced=True)
        except _TracedArguments:  # a traced static argument, mask or index: no signature
            return self._eager_on_traced(args, kwargs)
        values = [d.value if isinstance(d, Tracer) else d for d in dynamic]
        entries = self.cache.get(key, ())
        entry = next((e for e in entries if _guards_hold(e, values)), None)
        if entry is None and self.fn is not None and key not in self.gave_up:
            concrete = lambda tree: pytree.unflatten(  # noqa: E731
                pytree.flatten(tree)[1],
                [v.value if isinstance(v, Tracer) else v for v in pytree.flatten(tree)[0]])
            with self._trace_lock(key):
                entries = self.cache.get(key, ())
                entry = next((e for e in entries if _guards_hold(e, values)), None)
                if entry is None and key not in self.gave_up:
                    try:
                        entry = self._traced(key, tuple(concrete(a) for a in args), entries,
                                             {k: concrete(v) for k, v in kwargs.items()})
                    except ClosedOverTracer:
                        entry = None
        if entry is None:
            return self._eager_on_traced(args, kwargs)
        if grads_only:
            outs = [None] + replay(self.grads_of(entry).tape, dynamic)
        else:
            outs = replay(entry.tape, dynamic)
        return self.unpack(entry.structure, [_scalar(v) for v in outs], self.argnums)

    def _eager_on_traced(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.fn is None:
            raise SignatureError(
                "this compiled function was loaded from bytes without its Python function; on "
                "traced values (inside fastad.grad, vmap, jit, ...) it replays the tapes of the "
                "signatures it was saved with, and this call's is new")
        return self.eager(*args, **kwargs)

    def general(self, args: tuple[Any, ...], grads_only: bool = False,
                kwargs: dict[str, Any] | None = None) -> Any:
        """A call the shortcut did not take: by signature and guards, tracing
        again when no cached trace fits.  ``grads_only`` (value and gradient
        kinds): run `grads_of` the trace, and return (None, grads).  A call on
        traced values is inlined (`inline`)."""
        try:
            key, dynamic = self.split(args, kwargs)
        except _TracedArguments:
            return self.inline(args, kwargs, grads_only)
        kwargs = kwargs or {}
        tried = self.cache.get(key, ())
        if tried:
            self._touch(key)
            for entry in tried:
                outs = self.run(entry, dynamic, grads_only)
                if outs is not None:
                    return self.finish(entry, dynamic, outs)
            if key in self.gave_up:
                return self.eager(*args, **kwargs)
        with self._trace_lock(key):
            # Another thread may have traced this signature (and path) while this
            # one ran the old traces or waited for the lock: run its trace.
            entries = self.cache.get(key, ())
            for entry in entries:
                if entry not in tried:
                    outs = self.run(entry, dynamic, grads_only)
                    if outs is not None:
                        return self.finish(entry, dynamic, outs)
            try:
                entry = None if key in self.gave_up else self._traced(key, args, entries, kwargs)
            except ClosedOverTracer:  # defined inside a traced function: runs as Python
                entry = None
        if entry is None:
            return self.eager(*args, **kwargs)
        outs = self.run(entry, dynamic, grads_only)
        if outs is None:
            raise RuntimeError("a freshly traced function failed its own guards; the function "
                               "is not deterministic")
        return self.finish(entry, dynamic, outs)

    def _traced(self, key: Any, args: tuple[Any, ...], entries: tuple[Entry, ...],
                kwargs: dict[str, Any]) -> Entry | None:
        """A new trace of ``args``, whose signature ``key`` has ``entries``,
        cached; None if the signature has been traced too often and is
        evaluated eagerly from now on.  Called with the signature's lock held."""
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        try:
            entry = self.trace(args, kwargs)
        except BaseException:
            if not entries:  # nothing cached for it: its lock would only take memory
                with self._cache_lock:
                    self._trace_locks.pop(key, None)
            raise
        if entries:
            reason = _first_difference(entry, list(entries))
            if len(entries) >= self.max_traces:
                with self._cache_lock:
                    self.gave_up.add(key)
                warnings.warn(f"fastad: {name} was traced {len(entries) + 1} times for one "
                              f"signature because {reason}; it is evaluated eagerly from now on "
                              "for these argument shapes. Branch-free code (fastad.numpy.where, "
                              "clip, maximum) compiles once.", stacklevel=user_stacklevel())
                return None
            log.info("fastad: retracing %s: %s", name, reason)
        elif self.cache:
            log.info("fastad: tracing %s again: new argument signature (structure, shapes, "
                     "dtypes or static values) %s", name, _describe(key))
        self._insert(key, entry)
        return entry

    def _trace_lock(self, key: Any) -> locks.Lock:
        lock = self._trace_locks.get(key)
        if lock is None:
            with self._cache_lock:
                lock = self._trace_locks.get(key)
                if lock is None:
                    lock = self._trace_locks[key] = locks.Lock()
        return lock

    def _touch(self, key: Any) -> None:
        """``key`` was used: the most recently used signature now."""
        with self._cache_lock:
            if key in self.cache:
                self.cache.move_to_end(key)

    def _insert(self, key: Any, entry: Entry) -> None:
        """Publish ``entry`` as a new trace of ``key`` (a new tuple, so that a
        thread going through the old one is undisturbed) and as the shortcut;
        evict the least recently used signatures beyond the bound.  Calls through
        the shortcut do not reorder the cache (that would cost every call), so
        the shortcut's signature counts as used now, before the new one.  A
        function loaded from bytes evicts nothing: it could not trace a
        signature again."""
        shortcut = (Shortcut(None, None, entry.structure, entry)
                    if _takes_shortcut(key) and not self.check_nans else NO_SHORTCUT)
        with self._cache_lock:
            if self.shortcut.entry is not None and self._shortcut_key in self.cache:
                self.cache.move_to_end(self._shortcut_key)
            self.cache[key] = self.cache.get(key, ()) + (entry,)
            self.cache.move_to_end(key)
            self.last = entry
            self.shortcut = shortcut
            self.full_run_args = self.grads_run_args = None
            self._shortcut_key = key
            while self.fn is not None and len(self.cache) > self.max_signatures:
                old, _ = self.cache.popitem(last=False)
                self.gave_up.discard(old)
                self._trace_locks.pop(old, None)
                self.evicted += 1

    def run(self, entry: Entry, dynamic: list[Any], grads_only: bool) -> list[Any] | None:
        """The entry's outputs (None in place of the value if ``grads_only``),
        or None if a guard failed."""
        exe = self.grads_of(entry).exe if grads_only else entry.exe
        shortcut = self.shortcut
        if shortcut.entry is entry and (shortcut.grads if grads_only
                                        else shortcut.run_args) is None:
            self._publish(entry, exe.run_args, grads_only)
        outs = exe.run(dynamic)
        return [None] + outs if grads_only and outs is not None else outs

    def _publish(self, entry: Entry, run_args: Callable[[Any, int], Any], grads_only: bool
                 ) -> None:
        """The shortcut of ``entry`` gains its now built program's ``run_args``
        (unless another trace has replaced the shortcut meanwhile)."""
        with self._cache_lock:
            shortcut = self.shortcut
            if shortcut.entry is entry:
                self.shortcut = (shortcut._replace(grads=run_args) if grads_only
                                 else shortcut._replace(run_args=run_args))
                self.full_run_args = self.shortcut.run_args
                self.grads_run_args = self.shortcut.grads

    def grads_of(self, entry: Entry) -> Entry:
        """The entry of the outputs but the first, the value: what ``g(x)`` runs.
        A gradient alone needs no value, so the loss's final reduction and what
        feeds only it are dead code, as in ``jax.grad``."""
        rest = entry.rest
        if rest is None:
            with entry.lock:  # made once, whichever thread asks first
                if entry.rest is None:
                    tape = eliminate_dead_code(replace(entry.tape,
                                                       outputs=entry.tape.outputs[1:]))
                    tape.stages = entry.tape.stages
                    tape.optimized_from = entry.tape.optimized_from
                    entry.rest = Entry(tape, entry.structure, self._build)
                rest = entry.rest
        return rest

    def entries_for(self, args: Sequence[Any]) -> tuple[Entry, ...]:
        """The cached traces of ``args``' signature, tracing it first (one call)
        if there are none; empty if it is evaluated eagerly."""
        key, _ = self.split(args)
        if not self.cache.get(key):
            self(*args)
        return self.cache.get(key, ())

    def finish(self, entry: Entry, dynamic: list[Any], outs: list[Any]) -> Any:
        if self.check_nans and not all(np.all(np.isfinite(v)) for v in outs if v is not None):
            # The compiled code runs at full speed; only a non-finite result pays
            # for a checked replay that finds the instruction which made it.
            culprit = reference.first_nonfinite(entry.tape, dynamic)
            if culprit is not None:
                raise FloatingPointError(f"fastad check_nans: {culprit}")
        return self.unpack(entry.structure, [_scalar(v) for v in outs], self.argnums)

    def trace(self, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> Entry:
        if self.fn is None:
            raise SignatureError(
                "this compiled function was loaded from bytes without its Python function, so "
                "it runs only the argument signatures it was saved with; this call's is new: "
                f"{_describe(self.split(args, kwargs)[0])}")
        with self._cache_lock:
            self.traces += 1
        try:
            return self._trace(args, kwargs or {}, release=True)
        except ReleasedValueRead:
            # a derivative rule failed or branched on a value the trace had let
            # go of (a decomposition's rule on a stand-in matrix): keep them all
            return self._trace(args, kwargs or {}, release=False)

    def _trace(self, args: Sequence[Any], kwargs: dict[str, Any], release: bool) -> Entry:
        """One recording of ``fn`` at ``args`` and ``kwargs``; ``release``: see
        `Builder.release`."""
        with contextlib.ExitStack() as scope:
            builder = scope.enter_context(recording(release=release))
            new_args = list(args)
            inputs: list[Tracer] = []
            wrt: list[Tracer] = []
            in_trees: list[Any] = []

            def traced_tree(arg: Any, differentiated: bool, where: str) -> Any:
                leaves, tree = pytree.flatten(arg)
                traced = []
                for leaf in leaves:
                    if differentiated:
                        leaf = _as_differentiable(check_leaf(leaf, where))
                    if _is_dynamic(leaf):
                        t = builder.new_input(check_leaf(leaf, where))
                        inputs.append(t)
                        traced.append(builder.tracer(t.slot))
                        if differentiated:
                            wrt.append(t)
                    else:
                        traced.append(leaf)
                if differentiated:
                    in_trees.append(tree)
                return pytree.unflatten(tree, traced)

            for i, arg in enumerate(args):
                if i not in self.static_argnums:
                    new_args[i] = traced_tree(arg, self.wrt is not None and i in self.wrt,
                                              f"argument {i}")
            new_kwargs = {name: kwargs[name] if name in self.static_argnames else
                          traced_tree(kwargs[name], False, f"keyword argument {name!r}")
                          for name in sorted(kwargs)}
            out = self.fn(*new_args, **new_kwargs)
            out_leaves, out_tree = pytree.flatten(out)
            if builder.captures:
                raise ClosedOverTracer("a compiled function closed over a value traced by an "
                                       "enclosing transformation")
            stages = {"traced": len(builder.tape.instrs)}
            rolled = self._rerolled(builder, out_leaves) if self.reroll else None
            if rolled is not None:
                stages["rerolled"] = len(rolled.instrs)
                traced = builder
                builder, wrt, out_leaves = _replayed(
                    rolled, scope.enter_context(recording(release=release)), builder, inputs, wrt)
                traced.values.clear()  # the rerolled tape replaced it
            rec = Recorded(builder, wrt, in_trees, list(wrt), out_leaves, out_tree)
            try:
                results = self.outputs(rec)
            except Exception as exc:
                if builder.released and not isinstance(exc, ReleasedValueRead):
                    raise ReleasedValueRead(f"a derivative rule raised {exc!r}") from exc
                raise
            builder.tape.outputs = [builder.slot_of(r) for r in results]
            builder.values.clear()  # the executable computes them again
        tape = builder.tape
        stages["differentiated"] = len(tape.instrs)
        if self.optimize_tape:
            tape = optimize(tape)
        stages["optimized"] = len(tape.instrs)
        tape.stages = stages
        return Entry(tape, Structure(out_tree, tuple(in_trees)), self._build)

    def state(self) -> dict[str, Any]:
        """What `fastad.serialize` stores: the compiled tapes, not the function."""
        return {"kind": self.kind, "argnums": self.argnums, "reroll": self.reroll,
                "exact_sums": self.exact_sums,
                "static_argnums": tuple(sorted(self.static_argnums)),
                "static_argnames": tuple(sorted(self.static_argnames)),
                "backend": self.backend_name, "max_traces": self.max_traces,
                "max_signatures": self.max_signatures, "check_nans": self.check_nans,
                "entries": [(encode(key), [(e.tape.to_bytes(), encode(tuple(e.structure)))
                                           for e in entries])
                            for key, entries in self._snapshot()]}

    def _snapshot(self) -> list[tuple[Any, tuple[Entry, ...]]]:
        """The cache's signatures and traces, least recently used first, as
        they are at one moment (other threads may trace meanwhile)."""
        with self._cache_lock:
            return list(self.cache.items())

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Specializer":
        if state["kind"] not in KINDS:
            raise TapeError(f"unknown kind of compiled computation {state['kind']!r}")
        backend = state["backend"] if state["backend"] in backends.available() else "auto"
        spec = cls(None, state["kind"], _checked_argnums(state["argnums"]),
                   _checked_argnums(state["static_argnums"]), backend, eager=None,
                   max_traces=int(state["max_traces"]), check_nans=bool(state["check_nans"]),
                   reroll=bool(state["reroll"]), exact_sums=bool(state["exact_sums"]),
                   max_signatures=_saved_max_signatures(state.get("max_signatures")),
                   static_argnames=_checked_argnames(state.get("static_argnames", ())))
        for key, entries in state["entries"]:
            key = decode(key)
            for tape_bytes, structure in entries:
                tape = tape_from_bytes(tape_bytes)
                _check_signature(key, tape)
                structure = Structure(*decode(structure))
                _check_structure(spec, structure, tape)
                spec._insert(key, Entry(tape, structure, spec._build))
        # as before saving, the first call takes the general path
        spec.shortcut, spec.full_run_args, spec.grads_run_args = NO_SHORTCUT, None, None
        return spec

    def _build(self, tape: Tape) -> Any:
        """The chosen backend's executable or, when it cannot run the tape (a
        primitive or a dtype it has no code for), the next backend's that can:
        Numba.  When none runs every primitive, the first that lacks only
        primitives (no dtypes) runs the tape in compiled segments with host
        calls (NumPy) for those primitives (`backends.segmented`): no
        retracing, and one missing special function does not send the whole
        tape to the interpreter.  Otherwise the NumPy reference interpreter."""
        refused, segmentable = [], []
        for module in backends.fallbacks(self.backend):
            missing = backends.unsupported(module, tape)
            if not missing and (module is not reference or self.backend is reference):
                self._warn_fallback(refused, f"runs on the {backends.name_of(module)} backend")
                if module is self.backend:  # "auto" may move to Numba later (choice.py)
                    return backends.build(self.backend_name, tape)
                return module.build(tape)
            refused.append(f"the {backends.name_of(module)} backend does not implement "
                           f"{', '.join(missing)}")
            if module is not reference and not any(m.endswith(" values") for m in missing):
                segmentable.append((module, refused[-1]))  # lacks primitives only, no dtypes
        if not segmentable:  # every compiled backend lacks a dtype of the tape
            self._warn_fallback(refused, "runs on the numpy backend")
            return reference.build(tape)
        module, reason = segmentable[0]
        name = backends.name_of(module)
        self._warn_fallback([reason], f"runs on the {name} backend in compiled segments with "
                                      "host calls for the rest")
        return segmented.build(tape, module, backends.native_primitives(name))

    def _warn_fallback(self, refused: list[str], what: str) -> None:
        if refused and tuple(refused) not in self.fallbacks_warned:
            self.fallbacks_warned.add(tuple(refused))  # once per function and reason
            warnings.warn(f"fastad: {getattr(self.fn, '__qualname__', 'the function')} {what} "
                          f"({'; '.join(refused)}; fastad.backends.coverage() lists what each "
                          "backend runs)", stacklevel=user_stacklevel())

    def _rerolled(self, builder: Any, out_leaves: list[Any]) -> Tape | None:
        """The forward tape with its scalar loops rerolled, or None if it has none."""
        tape = builder.tape
        tape.outputs = [builder.slot_of(v) for v in out_leaves]
        return reroll(tape, [builder.values[s] for s in tape.inputs], self.exact_sums)

    def cache_info(self) -> dict[str, Any]:
        """How many traces happened, each cached trace with its guards (least
        recently used signature first), the bound on signatures and how many
        were evicted by it."""
        items = self._snapshot()
        with self._cache_lock:
            gave_up = list(self.gave_up)
        return {"traces": self.traces, "signatures": len(items),
                "max_signatures": self.max_signatures, "evicted": self.evicted,
                "entries": [{"signature": _describe(key), "guards": e.guards}
                            for key, entries in items for e in entries],
                "eager": [_describe(key) for key in gave_up]}


def _replayed(tape: Tape, builder: Any, old: Any, inputs: list[Tracer], wrt: list[Tracer]
              ) -> tuple[Any, list[Tracer], list[Any]]:
    """Record ``tape`` afresh into ``builder``, which replaces ``old``: the
    builder, the tracers standing for ``wrt``, and the outputs."""
    new_inputs = [builder.new_input(old.values[t.slot]) for t in inputs]
    position = {t.slot: k for k, t in enumerate(inputs)}
    outs = replay(tape, new_inputs)
    return builder, [new_inputs[position[t.slot]] for t in wrt], outs


def _guards_hold(entry: Entry, values: list[Any]) -> bool:
    """Does the trace ``entry`` take the path that ``values`` take?  A tape
    without guards fits any values of its signature; one with guards is
    evaluated on them (NumPy) before it is replayed, since a replayed guard
    that disagreed would have been recorded into the enclosing trace."""
    if entry.guarded is None:
        entry.guarded = any(registry[ins.prim].effect == "guard" for ins in entry.tape.instrs)
    return not entry.guarded or reference.evaluate(entry.tape, values) is not None


def _shortcut(fast: Callable[[tuple[Any, ...], int], Any] | None, args: tuple[Any, ...],
              which: int) -> Any:
    """``fast(args, which)``, or None when there is no shortcut or it declines."""
    return None if fast is None else fast(args, which)


def _takes_shortcut(key: Any) -> bool:
    """Is every argument of the signature one float array?  Then a call with
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


def _saved_max_signatures(value: Any) -> int | None:
    """A saved bound (None in payloads from before it existed: the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TapeError(f"invalid max_signatures {value!r} in a saved compiled function")
    return value


def _checked_argnames(names: Any) -> tuple[str, ...]:
    if isinstance(names, tuple) and all(isinstance(n, str) for n in names):
        return names
    raise TapeError(f"invalid static_argnames {names!r} in a saved compiled function")


def _checked_argnums(argnums: Any) -> Any:
    if argnums is None or isinstance(argnums, int):
        return argnums
    if isinstance(argnums, tuple) and all(isinstance(i, int) for i in argnums):
        return argnums
    raise TapeError(f"invalid argnums {argnums!r} in a saved compiled function")


def _check_structure(spec: "Specializer", structure: Structure, tape: Tape) -> None:
    """A saved structure must unpack exactly the tape's outputs: its trees are
    well formed, and their leaves count the values the kind of computation
    returns (all outputs; the value; the value and one gradient per leaf of
    each differentiated argument)."""
    try:
        outputs = pytree.checked_num_leaves(structure.out_tree)
        if not isinstance(structure.in_trees, tuple):
            raise ValueError("the differentiated arguments' structures are not a tuple")
        gradients = sum(pytree.checked_num_leaves(t) for t in structure.in_trees)
    except ValueError as exc:
        raise TapeError(f"a saved result structure is malformed: {exc}") from None
    with_aux = spec.kind.endswith("_aux")
    if with_aux and not _aux_pair(structure.out_tree):
        raise TapeError("a saved result structure is not that of a (value, aux) pair")
    expected = {"outputs": outputs, "value": 1}.get(
        spec.kind, (outputs if with_aux else 1) + gradients)
    arguments = None if spec.wrt is None else len(spec.wrt)
    if len(tape.outputs) != expected or (
            spec.kind.startswith("value_and_grad") and len(structure.in_trees) != arguments):
        raise TapeError("a saved result structure does not match its tape's outputs")


def _check_signature(key: Any, tape: Tape) -> None:
    """The float leaves a signature promises must be exactly the tape's inputs."""
    dynamic = [part for arg in key if arg[0] != "static" for part in arg[1]
               if part[0] not in ("array", "value")]
    declared = [(tuple(tape.avals[s].shape), tape.avals[s].dtype.char) for s in tape.inputs]
    if [(tuple(shape), char) for shape, char in dynamic] != declared:
        raise TapeError("a saved signature does not match the inputs of its tape")


def _describe(key: Any) -> str:
    return repr(key) if len(repr(key)) < 200 else repr(key)[:197] + "..."


class _Inspectable:
    """What a compiled function shows of itself: its main computation's latest
    tape and program, and its cache."""

    _main: Specializer

    @property
    def tape(self) -> Tape:
        return _last(self._main).tape

    @property
    def program(self) -> Any:
        return _last(self._main).exe

    def cache_info(self) -> dict[str, Any]:
        return self._main.cache_info()


class Jitted(_Inspectable):
    """``fastad.jit(f)``: f compiled per signature; any f, transformations included."""

    def __init__(self, fn: Callable[..., Any], static_argnums: Sequence[int] = (),
                 backend: str = "auto", max_traces: int | None = None,
                 check_nans: bool | None = None, reroll: bool = True,
                 exact_sums: bool = False, max_signatures: int | None = None,
                 static_argnames: Sequence[str] = ()) -> None:
        functools.update_wrapper(self, fn)
        self._spec = Specializer(fn, "outputs", None, static_argnums, backend, eager=fn,
                                 max_traces=max_traces, check_nans=check_nans, reroll=reroll,
                                 exact_sums=exact_sums, max_signatures=max_signatures,
                                 static_argnames=static_argnames)
        self._main = self._spec
        self._batched: dict[Any, Jitted] = {}
        self._derivatives: dict[Any, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._spec(*args, **kwargs)

    def jacobian(self, *args: Any, sparse: bool = False, mode: str = "auto", argnums: int = 0,
                 **kwargs: Any) -> Any:
        """The Jacobian of f at ``args`` with respect to ``args[argnums]``, compiled.
        ``sparse=True``: a ``scipy.sparse.csr_matrix`` (out.size x x.size), its
        pattern and coloring found once per signature and kept here, the
        compressed product compiled (see `fastad.sparse`)."""
        if sparse:
            return self._sparse(argnums)("jacobian", args, kwargs, mode)
        return _lazily_in(self._derivatives, ("jacobian", argnums, mode), lambda: self._derived(
            jacobian(self._spec.fn, argnums, mode)))(*args, **kwargs)

    def hessian(self, *args: Any, sparse: bool = False, argnums: int = 0, **kwargs: Any) -> Any:
        """The Hessian of scalar f at ``args``, compiled (``sparse``: see `jacobian`)."""
        if sparse:
            return self._sparse(argnums)("hessian", args, kwargs)
        return _lazily_in(self._derivatives, ("hessian", argnums), lambda: self._derived(
            hessian(self._spec.fn, argnums)))(*args, **kwargs)

    def _sparse(self, argnums: int) -> Any:
        from .sparse import CompiledSparse
        return _lazily_in(self._derivatives, ("sparse", argnums), lambda: CompiledSparse(
            self._spec.fn, argnums, self._spec.split, self._derived))

    def __getstate__(self) -> dict[str, Any]:
        return {"class": "jit", "name": getattr(self, "__name__", "jitted"),
                "spec": self._spec.state(), "batched": _batched_state(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__name__ = self.__qualname__ = str(state["name"])
        self._spec = self._main = Specializer.from_state(state["spec"])
        self._batched = _batched_from_state(state.get("batched"))
        self._derivatives = {}

    def __reduce__(self) -> Any:
        return (loads, (dumps(self),))

    def batch(self, *args: Any, in_axes: Any = 0, threads: int | None = None,
              chunk: int | None = None) -> Any:
        """The compiled ``vmap(f, in_axes)``: f over a batch of examples at once,
        split into chunks run on ``threads`` threads (None: os.cpu_count());
        bit-identical for any thread count (see `fastad.batched`)."""
        if _any_tracer(args):  # traced: the compiled function's tape, batched
            return vmap(self, in_axes)(*args)
        return _batch_call(self, lambda axes: vmap(self._spec.fn, axes), args, in_axes, threads,
                           chunk)

    def _derived(self, fn: Callable[..., Any]) -> "Jitted":
        spec = self._spec
        if spec.fn is None:
            raise SignatureError("this compiled function was loaded from bytes without its "
                                 "Python function, so it cannot compile a new batch size")
        return Jitted(fn, tuple(spec.static_argnums), spec.backend_name, spec.max_traces,
                      reroll=spec.reroll, exact_sums=spec.exact_sums,
                      max_signatures=spec.max_signatures,
                      static_argnames=tuple(spec.static_argnames))


def _batch_call(owner: Any, vmapped: Callable[[Any], Callable[..., Any]], args: Sequence[Any],
                in_axes: Any, threads: int | None, chunk: int | None) -> Any:
    """``owner``'s compiled ``vmapped(axes)`` over a batch, chunk by chunk on threads;
    one compiled batched function per axes, kept (and pickled) with ``owner``."""
    moved, axes, count = batched.normalize_axes(args, in_axes)
    vjit = owner._batched.get(axes)
    if vjit is None:  # threads at once: one of them is kept (setdefault is atomic)
        vjit = owner._batched.setdefault(axes, owner._derived(vmapped(axes)))
    return batched.call(vjit, moved, axes, count, threads, chunk)


def _batched_state(owner: Any) -> list[Any]:
    return [(encode(axes), vjit.__getstate__()) for axes, vjit in owner._batched.items()]


def _batched_from_state(items: Any) -> dict[Any, "Jitted"]:
    out = {}
    for axes, state in items or ():
        axes = decode(axes)
        if not isinstance(axes, tuple) or any(ax not in (0, None) for ax in axes):
            raise TapeError(f"invalid batch axes {axes!r} in a saved compiled function")
        vjit = Jitted.__new__(Jitted)
        vjit.__setstate__(state)
        out[axes] = vjit
    return out


def _with_vector_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """hvp's vector comes last, after the positional arguments."""
    return functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **kwargs))


def _last(spec: Specializer) -> Entry:
    last = spec.last
    if last is None:
        raise RuntimeError("the function has not been called yet, so nothing is compiled")
    return last


_lazy_lock = locks.Lock()  # what a compiled function makes when first asked for


def _lazily_in(table: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``table[key]``, made by ``make()`` the first time, once whatever the threads."""
    value = table.get(key)
    if value is None:
        with _lazy_lock:
            value = table.get(key)
            if value is None:
                value = table[key] = make()
    return value


def _lazily(owner: Any, name: str, make: Callable[[], Any]) -> Any:
    """``owner.name``, made by ``make()`` the first time, once whatever the threads."""
    value = getattr(owner, name)
    if value is None:
        with _lazy_lock:
            value = getattr(owner, name)
            if value is None:
                value = make()
                setattr(owner, name, value)
    return value


class CompiledGrad(_Inspectable):
    """``fastad.compile(f)``: the gradient of scalar ``f``, compiled.

    ``g(x)`` is the gradient, ``g.value_and_grad(x)`` the pair (what
    ``scipy.optimize.minimize(..., jac=True)`` wants), ``g.value(x)`` the value.
    With ``has_aux=True`` f returns ``(value, aux)``: ``g(x)`` is
    ``(grad, aux)``, ``g.value_and_grad(x)`` is ``((value, aux), grad)`` and
    ``g.value(x)`` is ``(value, aux)``.  Each takes keyword arguments too
    (``g(w, scale=3.0)``), which are not differentiated.  Called on traced
    values (inside ``fastad.grad``, ``vmap``, ``jit``, ...), each is inlined:
    the eager transformation it compiles runs on them.
    """

    def __init__(self, fn: Callable[..., Any], argnums: int | Sequence[int] = 0,
                 static_argnums: Sequence[int] = (), backend: str = "auto",
                 max_traces: int | None = None, strong_zero: bool = False,
                 reroll: bool = True, exact_sums: bool = False,
                 max_signatures: int | None = None, has_aux: bool = False,
                 static_argnames: Sequence[str] = ()) -> None:
        functools.update_wrapper(self, fn)
        self._reroll = reroll
        self._exact_sums = exact_sums
        self.fn = fn
        self.argnums = argnums
        self.has_aux = has_aux
        # do the shortcuts' first outputs answer ``g(x)`` and the pair?
        self._fast = argnums == 0 and not has_aux
        wrt = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        self._backend = backend

        self._max_traces = max_traces
        kind = ("value_and_grad_strong_zero" if strong_zero else "value_and_grad"
                ) + ("_aux" if has_aux else "")
        self._vg = Specializer(fn, kind, argnums, static_argnums, backend,
                               eager=value_and_grad(fn, argnums, strong_zero, has_aux),
                               max_traces=max_traces, reroll=reroll, exact_sums=exact_sums,
                               max_signatures=max_signatures, static_argnames=static_argnames)
        if any(i in self._vg.static_argnums for i in wrt):
            raise ValueError("an argument cannot be both differentiated and static")
        self._static = tuple(self._vg.static_argnums)
        self._static_names = tuple(self._vg.static_argnames)
        self._max_signatures = self._vg.max_signatures
        self._main = self._vg
        self._value: Specializer | None = None
        self._hvp: Jitted | None = None
        self._hessian: Jitted | None = None
        self._sparse: Any = None
        self._batched: dict[Any, Jitted] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # argnums 0: the one gradient is the output as the shortcut returns it
        if not kwargs and self._fast:
            grad = _shortcut(self._vg.grads_run_args, args, 0)
            if grad is not None:
                return grad
        value, grad = self._vg.general(args, grads_only=True, kwargs=kwargs)
        return (grad, value[1]) if self.has_aux else grad

    def value_and_grad(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not kwargs and self._fast:
            outs = _shortcut(self._vg.full_run_args, args, -1)
            if outs is not None:
                return outs[0], outs[1]
        return self._vg.general(args, kwargs=kwargs)

    def value(self, *args: Any, **kwargs: Any) -> Any:
        spec = self._value
        if spec is None:
            spec = _lazily(self, "_value", lambda: Specializer(
                self.fn, "outputs" if self.has_aux else "value", None, self._static,
                self._backend, eager=self.fn, max_traces=self._max_traces, reroll=self._reroll,
                exact_sums=self._exact_sums, max_signatures=self._max_signatures,
                static_argnames=self._static_names))
        if not kwargs and not self.has_aux:
            value = _shortcut(spec.full_run_args, args, 0)
            if value is not None:
                return value
        return spec.general(args, kwargs=kwargs)

    def _scalar_fn(self) -> Callable[..., Any]:
        """f with its value alone (without aux)."""
        fn = self.fn
        if not self.has_aux or fn is None:
            return fn
        return functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **kwargs)[0])

    def hvp(self, *args: Any, **kwargs: Any) -> Any:
        """``g.hvp(*args, v)``: Hessian-vector product, forward over reverse,
        without forming the Hessian."""
        return _lazily(self, "_hvp", lambda: self._derived(
            _with_vector_last(hvp(self._scalar_fn(), self._argnum("hvp")))))(*args, **kwargs)

    def hessian(self, *args: Any, sparse: bool = False, **kwargs: Any) -> Any:
        """The Hessian at ``args``, forward over reverse, compiled.
        ``sparse=True``: a ``scipy.sparse.csr_matrix``, from the Hessian's
        pattern and star coloring, found once per signature and kept here, and
        compiled Hessian-vector products with the coloring's seeds."""
        if sparse:
            from .sparse import CompiledSparse
            return _lazily(self, "_sparse", lambda: CompiledSparse(
                self._scalar_fn(), self._argnum("hessian"), self._vg.split, self._derived))(
                "hessian", args, kwargs)
        return _lazily(self, "_hessian", lambda: self._derived(
            hessian(self._scalar_fn(), self._argnum("hessian"))))(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"class": "compile", "name": getattr(self, "__name__", "compiled"),
                "argnums": self.argnums, "has_aux": self.has_aux, "vg": self._vg.state(),
                "value": self._value.state() if self._value is not None else None,
                "batched": _batched_state(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__name__ = self.__qualname__ = str(state["name"])
        self.fn = None
        self.argnums = _checked_argnums(state["argnums"])
        self.has_aux = bool(state.get("has_aux", False))
        self._fast = self.argnums == 0 and not self.has_aux
        self._vg = self._main = Specializer.from_state(state["vg"])
        if self._vg.kind.endswith("_aux") != self.has_aux:
            raise TapeError("a saved compiled gradient's has_aux does not match its computation")
        self._value = Specializer.from_state(state["value"]) if state["value"] else None
        self._static = tuple(self._vg.static_argnums)
        self._static_names = tuple(self._vg.static_argnames)
        self._backend = self._vg.backend_name
        self._max_traces = self._vg.max_traces
        self._max_signatures = self._vg.max_signatures
        self._reroll = self._vg.reroll
        self._exact_sums = self._vg.exact_sums
        self._hvp = self._hessian = self._sparse = None
        self._batched = _batched_from_state(state.get("batched"))

    def __reduce__(self) -> Any:
        return (loads, (dumps(self),))

    def batch(self, *args: Any, in_axes: Any = 0, threads: int | None = None,
              chunk: int | None = None) -> Any:
        """Per-example gradients: the compiled ``vmap(grad(f), in_axes)``, split
        into chunks run on ``threads`` threads (None: os.cpu_count());
        bit-identical for any thread count (see `fastad.batched`).  With
        ``has_aux``, each example's ``(grad, aux)``, stacked."""
        if _any_tracer(args):  # traced: the compiled gradient's tape, batched
            return vmap(self, in_axes)(*args)
        return _batch_call(self, lambda axes: vmap(grad(self.fn, self.argnums,
                                                        has_aux=self.has_aux), axes),
                           args, in_axes, threads, chunk)

    def _argnum(self, what: str) -> int:
        if not isinstance(self.argnums, int):
            raise NotImplementedError(f"{what} is defined for a single argnums")
        return self.argnums

    def _derived(self, fn: Callable[..., Any]) -> "Jitted":
        if self.fn is None:
            raise SignatureError("this compiled gradient was loaded from bytes without its "
                                 "Python function; only g(), value_and_grad() and value() "
                                 "of the saved signatures are available")
        return Jitted(fn, self._static, self._backend, self._max_traces, reroll=self._reroll,
                      exact_sums=self._exact_sums, max_signatures=self._max_signatures,
                      static_argnames=self._static_names)


def jit(fn: Callable[..., Any] | None = None, *, static_argnums: Sequence[int] = (),
        backend: str = "auto", max_traces: int | None = None,
        check_nans: bool | None = None, reroll: bool = True, exact_sums: bool = False,
        max_signatures: int | None = None, static_argnames: Sequence[str] = ()) -> Any:
    """Compile ``fn`` (any function of float arrays, ``grad(f)`` included).

    Arguments, positional and keyword, are pytrees: their float leaves are
    data (part of the signature by shape and dtype), every other leaf is
    compiled in and keyed by value.  ``static_argnums`` and
    ``static_argnames`` name arguments that are keyed by value whole
    (hashable; a new value traces again); a parameter named by either is
    static however it is passed.
    Called on traced values (``fastad.grad(fastad.jit(f))``, ``vmap``, an
    enclosing ``jit``), the jitted function is inlined: ``fn`` runs on them.
    ``max_traces``: how many traces (paths through data-dependent branches)
    one signature may accumulate before fastad warns and evaluates eagerly.
    ``max_signatures``: how many argument signatures (shapes, dtypes, static
    values) stay compiled; beyond it the least recently used one is dropped,
    and traced again if it comes back (default `MAX_SIGNATURES`, 64, or the
    environment variable FASTAD_MAX_SIGNATURES).
    ``check_nans`` (or the environment variable FASTAD_CHECK_NANS=1): raise
    FloatingPointError naming the primitive, source line and operands of the
    first instruction that turned finite values into NaN or inf, whenever a
    result is not finite.
    ``reroll``: turn scalar Python loops into vector code (see
    `fastad.transforms.reroll`); sums over rerolled loops are then reassociated,
    unless ``exact_sums`` keeps summation loops unrolled and bit-exact.
    """
    if fn is None:
        return lambda f: Jitted(f, static_argnums, backend, max_traces, check_nans, reroll,
                                exact_sums, max_signatures, static_argnames)
    return Jitted(fn, static_argnums, backend, max_traces, check_nans, reroll, exact_sums,
                  max_signatures, static_argnames)


def compile(fn: Callable[..., Any], argnums: int | Sequence[int] = 0,  # noqa: A001
            static_argnums: Sequence[int] = (), backend: str = "auto",
            max_traces: int | None = None, strong_zero: bool = False,
            reroll: bool = True, exact_sums: bool = False,
            max_signatures: int | None = None, has_aux: bool = False,
            static_argnames: Sequence[str] = ()) -> CompiledGrad:
    """The compiled gradient of scalar-valued ``fn`` with respect to ``args[argnums]``
    (``strong_zero``: see `fastad.value_and_grad`; ``reroll``, ``exact_sums``,
    ``max_signatures``, ``static_argnums``, ``static_argnames``: see `jit`).
    ``has_aux=True``: fn returns ``(value, aux)`` (JAX's convention); aux's
    leaves are outputs of the compiled tape, computed but not differentiated,
    and ``g(x)`` returns ``(grad, aux)``.  Keyword arguments are passed to fn
    and not differentiated."""
    return CompiledGrad(fn, argnums, static_argnums, backend, max_traces, strong_zero, reroll,
                        exact_sums, max_signatures, has_aux, static_argnames)
