"""The cache of a compiled computation: one `Specializer` per computation
(a gradient, a value, a jitted function's outputs) traces ``fn`` once per
signature and guard path, keeps the traces as `Entry` objects in a bounded
LRU, runs them, and publishes the shortcut that lets a call skip the cache.

Python control flow on traced values records guards.  A signature keeps a
list of traces; a replay whose guard disagrees is discarded and the next
trace is tried, and if none fits, ``fn`` is traced again at this input.
Called on traced values (inside ``fastad.grad``, ``vmap``, an enclosing
``jit``), a compiled function replays its cached tape for their signature
into the enclosing trace (`Specializer.inline`), so transforms compose with
it.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from . import backends, capture_walk, captures, custom_rules, draws, locks
from .core import pytree
from .core.arrays import foreign_arrays_read
from .recorded import Recorded, check_leaf
from .backends import fallback, reference
from .core.errors import SignatureError, TapeError
from .serialize import decode, encode, tape_from_bytes
from .entries import baked, guards_hold, replayed, takes_shortcut, with_captures
from .signatures import (
    KINDS,
    MAX_TRACES_PER_SIGNATURE,
    NO_SHORTCUT,
    ClosedOverTracer,
    ForeignArrays,
    Entry,
    Shortcut,
    Structure,
    TracedArguments,
    any_tracer,
    array_data_of,
    as_differentiable,
    as_scalar,
    plain_views,
    cast_results,
    concrete_call,
    traced_casts,
    check_signature,
    check_structure,
    checked_argnames,
    checked_argnums,
    checked_int_static,
    describe,
    first_difference,
    int_data,
    is_dynamic,
    saved_max_signatures,
    signatures_bound,
    split_call,
    static_names,
    with_data,
)
from .core.tape import Tape
from .core.int_data import (BoolArrayTracer, IntArrayTracer, IntTracer, IntValueNeeded,
                            raise_for_data_arguments,
                            integer_dtype)
from .core.tracer import Tracer, recording, replay, user_stacklevel
from .core.weak_float import WeakFloatTracer
from .vectorizing import in_vmap_trace
from .numpy._array_type import Array as _ARRAY, as_arrays, given_arrays
from .core import guards
from .transforms import ifconvert
from .transforms.optimize import eliminate_dead_code, optimize
from .transforms.recurrence import find_recurrences, reroll_bodies
from .transforms.reroll import reroll
from .transforms.reverse import ReleasedValueRead

log = logging.getLogger("fastad")


def _check_results(fn: Any, leaves: list[Any]) -> None:
    """A compiled function returns arrays and numbers (in any pytree), and
    the immutable values of `_static_result`, which its structure holds."""
    for leaf in leaves:
        if not isinstance(leaf, (Tracer, np.ndarray, np.generic, int, float, complex)):
            name = getattr(fn, "__qualname__", "the function")
            raise TypeError(f"fastad: {name} returned a {type(leaf).__name__} ({leaf!r:.40}), "
                            "which is not an array or a number; a compiled function returns "
                            "arrays, numbers, strings, dtypes and enums in tuples, lists, "
                            "dicts and registered pytree nodes")


def _static_result(leaf: Any) -> bool:
    """A result no tape computes, which the trace's structure holds and each
    call returns as traced (an aux's label, a dtype): immutable values only,
    so that no call's result can change another's."""
    return isinstance(leaf, (str, bytes, np.dtype, type, enum.Enum))


def _as_float_constant(leaf: Any) -> Any:
    """A constant integer result (``len(x)``, labels keyed by value) as the
    float constant the tape holds, exact below 2**53; other results as they are."""
    if type(leaf) is int or isinstance(leaf, np.integer):
        return np.float64(leaf) if abs(int(leaf)) < 2**53 else leaf
    if type(leaf) is np.ndarray and leaf.dtype.kind in "iu" \
            and np.abs(leaf.astype(np.float64)).max(initial=0.0) < 2**53:
        return leaf.astype(np.float64)
    return leaf


def _integer_casts(traced: list[Any], replayed: list[Any], results: list[Any]
                   ) -> tuple[tuple[int, str], ...]:
    """`Structure.casts` of a trace: each result that is an output computed
    from integers taken as data (``traced``, the outputs as recorded;
    ``replayed``, the same after a reroll), with the integer type it has eagerly."""
    codes = {}
    for before, after in zip(traced, replayed):
        if isinstance(before, (IntTracer, IntArrayTracer)):
            codes[id(after)] = "int" if before.data_dtype is int else before.data_dtype.str
        elif type(before) is int:  # a constant Python int (past 2**53 too): Python's
            codes[id(after)] = "int"
        elif _as_float_constant(before) is not before:  # a constant integer result
            codes[id(after)] = before.dtype.str
    return tuple((i, codes[id(r)]) for i, r in enumerate(results) if id(r) in codes)


def _has_while(tape: Any) -> bool:
    """Whether ``tape`` (or a loop body in it) holds a while loop."""
    for ins in tape.instrs:
        body = dict(ins.params).get("body") if ins.params else None
        if body is not None and (getattr(body, "is_while", False) or _has_while(body.tape)):
            return True
    return False


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
        # the arguments (positions, keyword names) whose integers a trace used
        # by value (`IntValueNeeded`): keyed by value; other integers are data
        self.int_static: set[Any] = set()
        self.gave_up: set[Any] = set()
        # signatures whose per-element guards could not be if-converted
        self.unconvertible: set[Any] = set()
        self.fallbacks_warned: set[tuple[str, ...]] = set()
        self.outputs, self.unpack = KINDS[kind]
        wrt = None if argnums is None else ((argnums,) if isinstance(argnums, int) else argnums)
        self.wrt = None if wrt is None else tuple(wrt)
        self.static_argnums, self.static_argnames = static_names(fn, static_argnums,
                                                                 static_argnames)
        self.backend_name = backend
        self.backend = backends.get(backend)
        self.optimize_tape = optimize_tape
        self.max_signatures = signatures_bound(max_signatures)
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
        """The signature of a call and its dynamic leaves (`signatures.split_call`)."""
        return split_call(self, args, kwargs, traced)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        shortcut = self.shortcut  # read once: its program and structure belong together
        run_args = shortcut.run_args
        if run_args is not None and not kwargs:  # `take_shortcut` written out: the call loops make
            outs = run_args(args, -1)
            arrays = outs is None and _ARRAY in map(type, args)
            if arrays:
                outs = run_args(plain_views(args), -1)
            if outs is not None:
                structure = shortcut.structure
                out = self.unpack(structure, cast_results(structure.casts, outs)
                                  if structure.casts else outs, self.argnums)
                return as_arrays(out) if arrays else out
        if not given_arrays(args):
            return self.general(args, kwargs=kwargs)
        # jax.Array arguments (fastad.numpy's constructors', in pytrees too):
        # computed as the ndarrays they are, the arrays returned as Arrays, as
        # NumPy's operations on them would return them
        return as_arrays(self.general(plain_views(args), kwargs=kwargs))

    def inline(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
               grads_only: bool = False) -> Any:
        while True:
            try:
                return self._inline(args, kwargs, grads_only)
            except IntValueNeeded as need:
                self._key_by_value(need)

    def _inline(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
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
        if (any(any_tracer(arg) for i, arg in enumerate(args) if i in self.static_argnums)
                or any(any_tracer(v) for k, v in kwargs.items() if k in self.static_argnames)):
            return self._eager_on_traced(args, kwargs)  # a static argument holds a traced value
        try:
            key, dynamic = self.split(args, kwargs, traced=True)
        except TracedArguments:  # a traced static argument, mask or index: no signature
            return self._eager_on_traced(args, kwargs)
        values = [d.value if isinstance(d, Tracer) else d for d in dynamic]
        entries = self.cache.get(key, ())
        entry = next((e for e in entries if e.bindings_hold()
                      and guards_hold(e, e.inputs(values))), None)
        if entry is None and self.fn is not None and key not in self.gave_up:
            with self._trace_lock(key):
                entries = self._without_stale(key)
                entry = next((e for e in entries if guards_hold(e, e.inputs(values))), None)
                if entry is None and key not in self.gave_up:
                    try:
                        # traced at the arguments the traced values stand for:
                        # integers taken as data as integers, masks as booleans
                        plain_args, plain_kwargs = concrete_call(self, args, kwargs)
                        entry = self._traced(key, plain_args, entries, plain_kwargs)
                    except ClosedOverTracer:
                        entry = None
        if entry is None or (self.fn is not None and in_vmap_trace() and _has_while(entry.tape)):
            # (under vmap's recording, a tape with a while loop holds its
            # derivative recorded for one trip count, which vmap cannot pad
            # for examples taking other counts: the function, recorded
            # afresh, meets the padding)
            return self._eager_on_traced(args, kwargs)
        captures.note(entry.captures)  # an enclosing trace depends on its bindings
        if grads_only:
            outs = [None] + replay(self.grads_of(entry).tape, entry.inputs(dynamic))
        else:
            outs = replay(entry.tape, entry.inputs(dynamic))
        outs = traced_casts(entry.structure.casts, [as_scalar(v) for v in outs], dynamic)
        return self.unpack(entry.structure, outs, self.argnums)

    def _eager_on_traced(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.fn is None:
            raise SignatureError(
                "this compiled function was loaded from bytes without its Python function; on "
                "traced values (inside fastad.grad, vmap, jit, ...) it replays the tapes of the "
                "signatures it was saved with, and this call's is new")
        if captures.active():  # an enclosing compiled trace reads what it reads
            captures.note(capture_walk.find(self.fn))
        return self.eager(*args, **kwargs)

    def general(self, args: tuple[Any, ...], grads_only: bool = False,
                kwargs: dict[str, Any] | None = None) -> Any:
        """A call the shortcut did not take: by signature and guards, tracing
        again when no cached trace fits.  ``grads_only`` (value and gradient
        kinds): run `grads_of` the trace, and return (None, grads).  A call on
        traced values is inlined (`inline`)."""
        while True:
            try:
                return self._general(args, grads_only, kwargs)
            except IntValueNeeded as need:
                self._key_by_value(need)
            except ForeignArrays:  # read as NumPy arrays, as eagerly
                args = foreign_arrays_read(args)
                if kwargs:
                    kwargs = dict(zip(kwargs, foreign_arrays_read(tuple(kwargs.values()))))

    def _key_by_value(self, need: IntValueNeeded) -> None:
        """A trace used the value of integer arguments taken as data: key them
        by value from now on (the next signature computed says so).  Sources
        are (function, argument) pairs: arguments of an enclosing compiled
        function's trace are that function's to key, so the need goes on to it."""
        own = frozenset(where for owner, where in need.sources if owner == id(self))
        if not own:
            raise need
        with self._cache_lock:
            new = own - self.int_static
            if not new:
                raise RuntimeError(f"fastad: integer arguments {sorted(map(str, own))} "
                                   "were needed by value twice")
            self.int_static |= new
        log.info("fastad: %s uses the value of its integer argument(s) %s (an index, a range, "
                 "a shape): keyed by value from now on",
                 getattr(self.fn, "__qualname__", "the function"), sorted(map(str, new)))

    def _general(self, args: tuple[Any, ...], grads_only: bool,
                 kwargs: dict[str, Any] | None) -> Any:
        try:
            key, dynamic = self.split(args, kwargs)
        except TracedArguments:
            return self.inline(args, kwargs, grads_only)
        kwargs = kwargs or {}
        tried = self.cache.get(key, ())
        if tried:
            self._touch(key)
            for entry in tried:
                if not entry.bindings_hold():
                    continue
                inputs = entry.inputs(dynamic)
                outs = self.run(entry, inputs, grads_only)
                if outs is not None:
                    return self.finish(entry, inputs, outs)
            if key in self.gave_up:
                return self.eager(*args, **kwargs)
        with self._trace_lock(key):
            # Another thread may have traced this signature (and path) while this
            # one ran the old traces or waited for the lock: run its trace.
            entries = self._without_stale(key)
            for entry in entries:
                if entry not in tried:
                    inputs = entry.inputs(dynamic)
                    outs = self.run(entry, inputs, grads_only)
                    if outs is not None:
                        return self.finish(entry, inputs, outs)
            try:
                entry = None if key in self.gave_up else self._traced(key, args, entries, kwargs)
            except ClosedOverTracer:  # defined inside a traced function: runs as Python
                entry = None
        if entry is None:
            return self.eager(*args, **kwargs)
        inputs = entry.inputs(dynamic)
        outs = self.run(entry, inputs, grads_only)
        if outs is None:
            raise RuntimeError("a freshly traced function failed its own guards; the function "
                               "is not deterministic")
        return self.finish(entry, inputs, outs)

    def _without_stale(self, key: Any) -> tuple[Entry, ...]:
        """The traces of ``key`` whose closure and global bindings still hold;
        the others leave the cache (a rebinding makes a trace stale for good,
        unlike a guard, whose other branch may come back)."""
        entries = self.cache.get(key, ())
        fresh = tuple(e for e in entries if e.bindings_hold())
        if len(fresh) != len(entries):
            with self._cache_lock:
                if key in self.cache:
                    if fresh:
                        self.cache[key] = fresh
                    else:
                        del self.cache[key]
                    self.gave_up.discard(key)
            name = getattr(self.fn, "__qualname__", "the function")
            for e in entries:
                if e not in fresh:
                    log.info("fastad: retracing %s: %s changed", name, e.captures.changed())
        return fresh

    def _traced(self, key: Any, args: tuple[Any, ...], entries: tuple[Entry, ...],
                kwargs: dict[str, Any]) -> Entry | None:
        """A new trace of ``args``, whose signature ``key`` has ``entries``,
        cached; None if the signature has been traced too often and is
        evaluated eagerly from now on.  Called with the signature's lock held."""
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        try:
            with draws.refused(self.fn, lambda: draws.same_results(self.fn, args, kwargs)):
                # per-element branches may become `where`: on a retrace (their pattern
                # changed), or on a first trace if they went both ways; not again for a
                # signature where they could not (each attempt runs fn twice more)
                entry = self.trace(args, kwargs, convert=(False if key in self.unconvertible
                                                          else True if entries else None))
        except BaseException:
            if not entries:  # nothing cached for it: its lock would only take memory
                with self._cache_lock:
                    self._trace_locks.pop(key, None)
            raise
        if entries:
            reason = first_difference(entry, list(entries))
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
                     "dtypes or static values) %s", name, describe(key))
        if entry.converted == []:
            self.unconvertible.add(key)
        self._insert(key, entry, first=bool(entry.converted))
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

    def _insert(self, key: Any, entry: Entry, first: bool = False) -> None:
        """Publish ``entry`` as a new trace of ``key`` (a new tuple, so that a
        thread going through the old one is undisturbed) and as the shortcut;
        evict the least recently used signatures beyond the bound.  Calls through
        the shortcut do not reorder the cache (that would cost every call), so
        the shortcut's signature counts as used now, before the new one.
        ``first``: the new trace is tried before the signature's others (its
        per-element guards were converted: it holds for more inputs).  A
        function loaded from bytes evicts nothing: it could not trace a
        signature again."""
        shortcut = (Shortcut(None, None, entry.structure, entry)
                    if takes_shortcut(key) and not self.check_nans else NO_SHORTCUT)
        with self._cache_lock:
            if self.shortcut.entry is not None and self._shortcut_key in self.cache:
                self.cache.move_to_end(self._shortcut_key)
            traces = self.cache.get(key, ())
            self.cache[key] = (entry,) + traces if first else traces + (entry,)
            self.cache.move_to_end(key)
            self.last = entry
            self.shortcut = shortcut
            self.full_run_args = self.grads_run_args = None
            self._shortcut_key = key
            while self.fn is not None and len(self.cache) > self.max_signatures:
                old, _ = self.cache.popitem(last=False)
                self.gave_up.discard(old)
                self.unconvertible.discard(old)
                self._trace_locks.pop(old, None)
                self.evicted += 1

    def run(self, entry: Entry, dynamic: list[Any], grads_only: bool) -> list[Any] | None:
        """The entry's outputs (None in place of the value if ``grads_only``),
        or None if a guard failed."""
        exe = self.grads_of(entry).exe if grads_only else entry.exe
        shortcut = self.shortcut
        if shortcut.entry is entry and (shortcut.grads if grads_only
                                        else shortcut.run_args) is None:
            run_args = (exe.run_args if entry.captures is None
                        else with_captures(entry, exe.run_args))
            self._publish(entry, with_data(self._shortcut_key, run_args), grads_only)
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
        captures.note(entry.captures)  # inside an enclosing trace: it depends on them
        if self.check_nans and not all(np.all(np.isfinite(v)) for v in outs if v is not None):
            # The compiled code runs at full speed; only a non-finite result pays
            # for a checked replay that finds the instruction which made it.
            culprit = reference.first_nonfinite(entry.tape, dynamic)
            if culprit is not None:
                raise FloatingPointError(f"fastad check_nans: {culprit}")
        return self.unpack(entry.structure, cast_results(entry.structure.casts,
                                                         [as_scalar(v) for v in outs]),
                           self.argnums)

    def trace(self, args: Sequence[Any], kwargs: dict[str, Any] | None = None,
              convert: bool | None = False) -> Entry:
        if self.fn is None:
            raise SignatureError(
                "this compiled function was loaded from bytes without its Python function, so "
                "it runs only the argument signatures it was saved with; this call's is new: "
                f"{describe(self.split(args, kwargs)[0])}")
        with self._cache_lock:
            self.traces += 1
        try:
            try:
                return self._trace(args, kwargs or {}, release=True, convert=convert)
            except captures.WatchedArrayRefused:
                # C code that takes an array's memory (memoryview, bytes(W),
                # np.frombuffer, hashlib) refused a watched stand-in: trace again
                # with the captured arrays themselves, each guarded by its contents
                return self._trace(args, kwargs or {}, release=True, convert=convert,
                                   watch=False)
        except ReleasedValueRead:
            # a derivative rule failed or branched on a value the trace had let
            # go of (a decomposition's rule on a stand-in matrix): keep them all
            return self._trace(args, kwargs or {}, release=False, convert=convert)

    def _traced_args(self, builder: Any, args: Sequence[Any], kwargs: dict[str, Any]
                     ) -> tuple[list[Any], dict[str, Any], list[Tracer], list[Tracer], list[Any]]:
        """``args`` and ``kwargs`` with their dynamic leaves traced in ``builder``;
        the input tracers, those differentiated, and the differentiated trees."""
        new_args = list(args)
        inputs: list[Tracer] = []
        wrt: list[Tracer] = []
        in_trees: list[Any] = []

        def traced_tree(arg: Any, differentiated: bool, where: str,
                        position: int | str) -> Any:
            leaves, tree = pytree.flatten(arg)
            traced = []
            for leaf in leaves:
                if differentiated:
                    leaf = as_differentiable(check_leaf(leaf, where))
                elif int_data(self, leaf, position):
                    t = builder.new_input(np.float64(leaf))
                    inputs.append(t)
                    traced.append(IntTracer(builder, t.slot, t.value,
                                            frozenset({(id(self), position)}),
                                            integer_dtype(leaf)))
                    continue
                elif (data := array_data_of(self, leaf, position)) is not None:
                    t = builder.new_input(data)
                    inputs.append(t)
                    cls = BoolArrayTracer if data.dtype == np.bool_ else (
                        IntArrayTracer if data.ndim else IntTracer)
                    sources = frozenset({(id(self), position)})
                    traced.append(cls(builder, t.slot, t.value, sources) if cls is BoolArrayTracer
                                  else cls(builder, t.slot, t.value, sources,
                                           integer_dtype(leaf)))
                    continue
                if is_dynamic(leaf):
                    t = builder.new_input(check_leaf(leaf, where))
                    inputs.append(t)
                    traced.append(WeakFloatTracer(builder, t.slot, t.value)
                                  if type(leaf) is float and not differentiated
                                  else builder.tracer(t.slot))
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
                                          f"argument {i}", i)
        new_kwargs = {name: kwargs[name] if name in self.static_argnames else
                      traced_tree(kwargs[name], False, f"keyword argument {name!r}", name)
                      for name in sorted(kwargs)}
        return new_args, new_kwargs, inputs, wrt, in_trees

    def _trace(self, args: Sequence[Any], kwargs: dict[str, Any], release: bool,
               convert: bool | None = False, watch: bool = True) -> Entry:
        """One recording of ``fn`` at ``args`` and ``kwargs``; ``release``: see
        `Builder.release`.  Its per-element guards are if-converted where
        that is sound (`transforms.ifconvert`) if ``convert`` is True (a
        retrace: a pattern changed), or None and their outcomes are mixed
        already.  The entry's ``converted``: the converted guards' lines,
        [] if they could not be converted, None if not tried.  ``watch``:
        captured arrays are watched (`captures.watching`), else each is read."""
        converted = None
        with contextlib.ExitStack() as scope:
            builder = scope.enter_context(recording(release=release))
            if self.reroll:
                builder.reroller = self._nested_rerolled
            new_args, new_kwargs, inputs, wrt, in_trees = self._traced_args(builder, args, kwargs)
            builder.data_sources = frozenset().union(*(
                t.sources for t in pytree.flatten((new_args, new_kwargs))[0]
                if isinstance(t, (IntArrayTracer, BoolArrayTracer))))
            found = capture_walk.find(self.fn, (args, kwargs))
            by_reference: list[Any] = []
            if found.arrays:
                builder.by_reference = captures.reader(builder, found, inputs, by_reference)
                # forced reruns would read the captures anew: no if-conversion
                convert = False
            with guards.watching() as log, captures.collecting() as nested, \
                    captures.watching(found, watch) as read:
                try:
                    out = self.fn(*new_args, **new_kwargs)
                except Exception as exc:
                    raise_for_data_arguments(exc, (new_args, new_kwargs))
                    captures.refused_by_c_code(exc, found, watch)
                    raise
            builder.by_reference = None
            out_leaves, out_tree = pytree.flatten(out)
            out_leaves = captures.unwatched_results(out_leaves, read)
            out_leaves, out_tree = pytree.held_static(out_tree, out_leaves, _static_result)
            found = captures.settle(captures.merged(found, nested), by_reference, read)
            _check_results(self.fn, out_leaves)
            traced_leaves = list(out_leaves)  # before a reroll replays them
            # a constant integer result (len(x)) is a float constant of the tape, cast
            # back (`Structure.casts`): the VM holds no integers
            out_leaves = [_as_float_constant(leaf) for leaf in out_leaves]
            if builder.captures:
                raise ClosedOverTracer("a compiled function closed over a value traced by an "
                                       "enclosing transformation")
            stages = {"traced": len(builder.tape.instrs)}
            tried = bool(log.slots) and (convert or (convert is None
                                                     and ifconvert.mixed(builder.tape, log)))
            if tried:
                converted = self._if_converted(builder, out_leaves, out_tree, log, args, kwargs)
            if converted is not None:
                stages["if-converted"] = len(converted.tape.instrs)
                examples = [builder.values[s] for s in builder.tape.inputs]
                rolled = ((reroll(converted.tape, examples, self.exact_sums) if self.reroll
                           else None) or converted.tape)
                if self.reroll:
                    looped = find_recurrences(rolled)
                    if looped is not None:
                        stages["recurrences"] = len(looped.instrs)
                        rolled = looped
            else:
                rolled = self._rerolled(builder, out_leaves, stages) if self.reroll else None
            if rolled is not None:
                stages["rerolled"] = len(rolled.instrs)
                traced = builder
                builder, wrt, out_leaves = replayed(
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
            casts = _integer_casts(traced_leaves, rec.out_leaves, results)
            tape = (None if builder.released else
                    custom_rules.inlined(builder.tape, builder.values)) or builder.tape
            builder.values.clear()  # the executable computes them again
        stages["differentiated"] = len(tape.instrs)
        if self.optimize_tape:
            tape = optimize(tape)
        stages["optimized"] = len(tape.instrs)
        tape.stages = stages
        entry = Entry(tape, Structure(out_tree, tuple(in_trees), casts), self._build,
                      captures=None if found is captures.NONE else found,
                      by_reference=tuple(by_reference))
        entry.converted = converted.lines if converted is not None else [] if tried else None
        return entry

    def _if_converted(self, builder: Any, out_leaves: list[Any], out_tree: Any,
                      log: guards.GuardLog, args: Sequence[Any], kwargs: dict[str, Any]
                      ) -> ifconvert.Converted | None:
        """The forward tape with its per-element guards converted to ``where``,
        or None; the branches not taken are recorded by running ``fn`` again
        with the guards' outcomes forced."""
        tape = builder.tape
        tape.outputs = [builder.slot_of(v) for v in out_leaves]

        def rerun(forced: Sequence[bool]) -> tuple[Tape, guards.GuardLog]:
            with recording(record_lines=False) as again:  # the lines are trace A's
                new_args, new_kwargs, *_ = self._traced_args(again, args, kwargs)
                with guards.watching(forced) as forced_log:
                    out = self.fn(*new_args, **new_kwargs)
                leaves, tree = pytree.flatten(out)
                if tree != out_tree or again.captures:
                    raise ValueError("the forced path returns another structure")
                again.tape.outputs = [again.slot_of(v) for v in leaves]
            return again.tape, forced_log
        return ifconvert.convert(tape, log, [builder.values[s] for s in tape.inputs], rerun,
                                 getattr(self.fn, "__globals__", None))

    def state(self) -> dict[str, Any]:
        """What `fastad.serialize` stores: the compiled tapes, not the function.
        Arrays a tape reads from closures and globals at each call are stored
        as constants holding their values now (`entries.baked`): a saved function is
        data, with no bindings of this process to read."""
        return {"kind": self.kind, "argnums": self.argnums, "reroll": self.reroll,
                "exact_sums": self.exact_sums,
                "static_argnums": tuple(sorted(self.static_argnums)),
                "static_argnames": tuple(sorted(self.static_argnames)),
                "int_static": tuple(sorted(self.int_static, key=str)),
                "backend": self.backend_name, "max_traces": self.max_traces,
                "max_signatures": self.max_signatures, "check_nans": self.check_nans,
                "entries": [(encode(key), [(baked(e).to_bytes(), encode(tuple(e.structure)))
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
        spec = cls(None, state["kind"], checked_argnums(state["argnums"]),
                   checked_argnums(state["static_argnums"]), backend, eager=None,
                   max_traces=int(state["max_traces"]), check_nans=bool(state["check_nans"]),
                   reroll=bool(state["reroll"]), exact_sums=bool(state["exact_sums"]),
                   max_signatures=saved_max_signatures(state.get("max_signatures")),
                   static_argnames=checked_argnames(state.get("static_argnames", ())))
        spec.int_static = set(checked_int_static(state.get("int_static", ())))
        for key, entries in state["entries"]:
            key = decode(key)
            for tape_bytes, structure in entries:
                tape = tape_from_bytes(tape_bytes)
                check_signature(key, tape)
                structure = Structure(*decode(structure))
                check_structure(spec, structure, tape)
                spec._insert(key, Entry(tape, structure, spec._build))
        # as before saving, the first call takes the general path
        spec.shortcut, spec.full_run_args, spec.grads_run_args = NO_SHORTCUT, None, None
        return spec

    def _build(self, tape: Tape) -> Any:
        """The chosen backend's executable or, when it cannot run the tape (a
        primitive or a dtype it has no code for), the next backend's that can:
        Numba.  When none runs every primitive, the first that lacks only
        primitives (no dtypes) runs the tape in compiled segments with host
        calls (NumPy) for those primitives: no retracing, and one missing
        special function does not send the whole tape to the interpreter.
        Otherwise the NumPy reference interpreter.  The chain is
        `backends.fallback.route`; this warns once per function and reason."""
        module, in_segments, refused = backends.route(self.backend, tape)
        name = backends.name_of(module)
        if in_segments:
            self._warn_fallback(refused, f"runs on the {name} backend in compiled segments with "
                                         "host calls for the rest")
            return fallback.build_segments(tape, module, backends.native_primitives(name))
        self._warn_fallback(refused, f"runs on the {name} backend")
        if module is self.backend:  # "auto" may move to Numba later (fallback.Tiered)
            return backends.build(self.backend_name, tape)
        return module.build(tape)

    def _warn_fallback(self, refused: list[str], what: str) -> None:
        if refused and tuple(refused) not in self.fallbacks_warned:
            self.fallbacks_warned.add(tuple(refused))  # once per function and reason
            warnings.warn(f"fastad: {getattr(self.fn, '__qualname__', 'the function')} {what} "
                          f"({'; '.join(refused)}; fastad.backends.coverage() lists what each "
                          "backend runs)", stacklevel=user_stacklevel())

    def _rerolled(self, builder: Any, out_leaves: list[Any], stages: dict[str, int]
                  ) -> Tape | None:
        """The forward tape with its time-stepping loops as loop instructions
        (`transforms.recurrence`: first, so that rerolling sees their steps
        once, as loop bodies) and its scalar loops rerolled, or None if it
        has neither."""
        tape = builder.tape
        tape.outputs = [builder.slot_of(v) for v in out_leaves]
        examples = [builder.values[s] for s in tape.inputs]
        refused: set[str] = set()
        looped = find_recurrences(tape, refused=refused)
        if looped is not None:
            stages["recurrences"] = len(looped.instrs)
            values = builder.values
            looped = reroll_bodies(looped, lambda s: values[s] if s < len(values) else None,
                                   self.exact_sums)
        rolled = reroll(tape if looped is None else looped, examples, self.exact_sums) or looped
        if "parallel" in refused:
            # the parallel loops rerolling could not turn into vector code (a
            # per-step constant not affine in the step) run as loops
            parallel = find_recurrences(tape if rolled is None else rolled, parallel=True)
            if parallel is not None:
                stages["recurrences"] = len(parallel.instrs)
                rolled = parallel
        return rolled

    def _nested_rerolled(self, builder: Any, out_leaves: list[Any]) -> Tape | None:
        """`_rerolled` for a transformation traced inside this function's trace."""
        return self._rerolled(builder, out_leaves, {})

    def cache_info(self) -> dict[str, Any]:
        """How many traces happened, each cached trace with its guards (least
        recently used signature first) and, where ``backend="auto"`` may move
        it to Numba, the calls, timings and decision of its program and of its
        gradient-only program (``tier``, ``grads_tier``: `fallback.Tiered.info`,
        None for a program that never moves), the bound on signatures and how
        many were evicted by it."""
        items = self._snapshot()
        with self._cache_lock:
            gave_up = list(self.gave_up)
        return {"traces": self.traces, "signatures": len(items),
                "max_signatures": self.max_signatures, "evicted": self.evicted,
                "entries": [{"signature": describe(key), "guards": e.guards,
                             "tier": fallback.tier_info(e.built),
                             "grads_tier": fallback.tier_info(e.rest and e.rest.built),
                             "converted": getattr(e, "converted", None) or []}
                            for key, entries in items for e in entries],
                "eager": [describe(key) for key in gave_up]}
