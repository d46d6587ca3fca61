"""Tracing: running user code on `Tracer`s records a tape.

A `Tracer` is the seeds' `Node`: it knows its slot on the tape being recorded
and its concrete value.  Every primitive call goes through `bind`, which
computes the value with NumPy and, if any argument is a Tracer, appends one
instruction to the innermost active `Builder`.

Nested traces (a `grad` inside a function being traced) each have their own
builder.  A tracer of an enclosing trace met by an inner one is *captured*:
it becomes an extra input of the inner tape, so the inner tape stays closed
and its transformed version can be replayed on the outer tracers.
"""
from __future__ import annotations

import gc
import math
import operator
import os
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from .arrays import is_made_here, plain_array, same_bits, scalar_key
from .errors import TracingError
from .registry import Primitive, registry
from .tape import Aval, Instr, SourcePos, Tape, _scalar_avals, aval_of
# what a traced value can do (re-exported: the rest of fastad imports them from here)
from .traced import _TRACERS, FRONT_END, ArrayTracer, Tracer, new_tracer  # noqa: F401
from .watched import WatchedArray

# fastad's own frames are not user lines: the package is the folder above core/
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TOUR = os.path.join(_PKG_DIR, "__main__.py")  # user code, though inside the package
_SCALAR_TYPES = (int, float, complex, bool, np.number, np.bool_)
_FLOAT_AVAL = Aval((), np.dtype(np.float64))
_INT_AVAL = Aval((), np.result_type(1))  # a Python int's, within _INT_BOUND
_INT_BOUND = 1 << 62
_INT64 = np.dtype(np.int64)
_INT64_STR = _INT64.str
_INDEX_AVAL = Aval((), _INT64)

#: the allocations of a trace (the collector's count of its youngest generation)
#: from which its objects are moved to the oldest generation as it ends
#: (`recording.__exit__`): a long loop's, never a small eager gradient's
YOUNG_OBJECTS_PROMOTED = 200_000

#: values of at least this many bytes are what a releasing trace (`Builder.release`)
#: lets go of once nothing but the trace holds them
RELEASE_BYTES = 1 << 20


def stand_in(value: np.ndarray) -> np.ndarray:
    """A value's shape and dtype without its memory: what a released slot holds."""
    return np.broadcast_to(np.zeros((), value.dtype), value.shape)


class Builder:
    """Records one tape.  Lives on the trace stack while its function runs."""

    def __init__(self, record_lines: bool = True, release: bool = False) -> None:
        self.tape = Tape()
        self.values: list[Any] = []  # concrete value of every slot
        self.captures: list[Tracer] = []  # outer tracers, in input order
        self._capture_slot: dict[int, int] = {}
        self._const_slot: dict[Any, int] = {}
        self._const_keep: list[Any] = []
        # array -> the slot of an input standing for it, or None (a constant):
        # set by a compiled function's trace (`fastad.captures`)
        self.by_reference: Callable[[Any], int | None] | None = None
        # the arguments whose integer or boolean arrays are inputs of this
        # tape (`IntArrayTracer`): set by a compiled function's trace
        self.data_sources: frozenset[Any] = frozenset()
        # a compiled function's trace: rerolls a transformation's own trace
        # nested in it before that differentiates it (`fastad.recorded.record`)
        self.reroller: Callable[[Builder, list[Any]], Any] | None = None
        self.record_lines = record_lines
        self.line_override: tuple[str, int] | None = None  # set while differentiating
        self.finished = False
        # A releasing trace is one whose values nobody reads after it is recorded
        # (a compiled function's: its executable computes the results).  Large
        # values that only the trace still holds are swapped for stand-ins as
        # they pile up, so tracing a function of large arrays needs about the
        # memory NumPy needs to run it, not one array per instruction.
        self.release = release
        self.released = False  # whether any slot holds a stand-in
        # An eager reverse sweep's trace lets go of exactly the values no rule
        # reads again (`transforms.reverse.backward`): nothing sees a stand-in.
        self.release_exact = False
        # An eager first-order gradient's trace (`fastad.recorded.record`): its
        # sweep computes on plain values and reads only what the rules read
        # (`Primitive.vjp_reads`), so a large forward value no rule will read
        # is let go of as soon as the user's code drops it, as autograd keeps
        # only what its VJP closures capture.  `_active`: slots that depend on
        # the inputs; `_kept`: slots some rule still to run reads.
        self.drop_unread = False
        self._active: set[int] = set()
        self._kept: set[int] = set()
        self._scanned = 0  # instructions whose activity `_active` records
        self._large: list[int] = []  # slots of large values not yet released
        self._large_bytes = 0
        self._sweep_at = 8 * RELEASE_BYTES
        # An eager gradient's data arguments are lent to the function as
        # read-only views (`fastad.recorded.record`): the memory owners of those
        # views, by id.  A read-only view of one is read in place, not copied.
        self.lent: dict[int, Any] = {}
        # a compiled function's trace (a releasing one) goes to recurrence
        # detection and rerolling, which read it as arrays: recorded as it goes
        if release:
            self.tape.recorded = RecordedColumns(self.tape.instrs)

    def new_input(self, value: Any) -> "Tracer":
        if type(value) is np.ndarray:  # an eager gradient's argument, once per call
            self.values.append(value)
            slot = self.tape.new_slot(_new_instr(Aval, (value.shape, value.dtype)))
        else:
            value = _as_value(value)
            slot = self._new_slot(value)
        self.tape.inputs.append(slot)
        if self.drop_unread:
            self._active.add(slot)
        return new_tracer(self, slot, value)

    def _new_slot(self, value: Any) -> int:
        self.values.append(value)
        return self.tape.new_slot(aval_of(value))

    def tracer(self, slot: int) -> "Tracer":
        """A new traced value for ``slot``.  User code gets its own objects, never
        the ones fastad keeps: item assignment and in-place operators rebind the
        traced value they are applied to, and must not move fastad's inputs."""
        return new_tracer(self, slot, self.values[slot])

    def const(self, value: Any) -> int:
        if type(value) is float:  # the user's 0.5 or 1.0: most constants of a trace
            key: Any = (float, value, math.copysign(1.0, value), 1.0)  # = scalar_key(value)
            slot = self._const_slot.get(key)
            if slot is None:
                slot = self._const_slot[key] = len(self.tape.avals)
                self.values.append(value)
                self.tape.avals.append(_FLOAT_AVAL)
                self.tape.consts[slot] = value
            return slot
        if type(value) is int and -_INT_BOUND < value < _INT_BOUND:  # x ** 4
            key = (int, value)  # = scalar_key(value)
            slot = self._const_slot.get(key)
            if slot is None:
                slot = self._const_slot[key] = len(self.tape.avals)
                self.values.append(value)
                self.tape.avals.append(_INT_AVAL)
                self.tape.consts[slot] = value
            return slot
        if type(value) is np.ndarray and value.dtype is _INT64 and not value.ndim:
            # x[i]'s index (`fastad.numpy.getitem`: one per element read), as below,
            # its slot made as `_new_slot` would (its aval is always _INDEX_AVAL)
            key = (_INT64_STR, (), value.tobytes())
            slot = self._const_slot.get(key)
            if slot is None:
                value = value.copy()
                value.flags.writeable = False
                slot = self._new_index(key, value)
            return slot
        if type(value) is list or type(value) is tuple:  # NumPy's array_like: [1.0, 2.0]
            if _holds_tracer(value):  # [t, 1.0]: the traced array of it
                return self.slot_of(FRONT_END["asarray"](value))
            value = np.asarray(value)
        elif type(value) is WatchedArray:  # a captured array, as the traced operation uses it
            value = value.array
        elif type(value) is not np.ndarray and hasattr(type(value), "__array__") and \
                type(value) not in _TRACERS and \
                not isinstance(value, (np.ndarray, type, Tracer) + _SCALAR_TYPES):
            value = np.asarray(value)  # a jax.Array or torch tensor: NumPy's copy of it
        is_array = isinstance(value, np.ndarray)
        if not is_array and isinstance(value, _SCALAR_TYPES):
            key = scalar_key(value)
        elif is_array and value.dtype.kind in "iub" and value.size <= 4096:
            key = _index_key(value)  # index arrays repeat
        else:
            key = id(value)
            if self.by_reference is not None and key not in self._const_slot:
                slot = self.reference_slot(value)  # an array a closure or global holds
                if slot is not None:  # is an input of the tape, read at each call
                    return slot
            self._const_keep.append(value)  # keep id() unique while recording
        slot = self._const_slot.get(key)
        if (slot is not None and is_array and value.flags.writeable and slot in self.tape.consts
                and not same_bits(value, self.tape.consts[slot])):
            slot = None  # the user's array, written since its last use: a new constant
        if slot is None:
            # (fastad's own arrays are read-only: a writeable one is the user's)
            if is_array and (value.flags.writeable or not is_made_here(value)) \
                    and not (self.lent and self.is_lent(value)):
                # a subclass's meaning (a mask, np.matrix's *) would be lost
                if type(value) is not np.ndarray:
                    value = plain_array(value, "an array the function uses as a constant")
                value = value.copy()
                value.flags.writeable = False
            slot = self._new_slot(value)
            self.tape.consts[slot] = value
            self._const_slot[key] = slot
        return slot

    def _new_index(self, key: Any, value: np.ndarray) -> int:
        """The slot of a new constant 0-d int64 index (read-only), known by ``key``."""
        slot = self._const_slot[key] = len(self.tape.avals)
        self.values.append(value)
        self.tape.avals.append(_INDEX_AVAL)
        self.tape.consts[slot] = value
        return slot

    def is_lent(self, value: np.ndarray) -> bool:
        """Whether ``value`` is a read-only view of a data argument lent to
        the function: no write through it is possible while the trace runs."""
        return not value.flags.writeable and value.base is not None \
            and self.lent.get(id(value.base)) is value.base

    def reference_slot(self, value: Any) -> int | None:
        """The slot standing for an array read by reference (`by_reference`),
        or None: the array is a constant."""
        key = id(value)
        slot = self._const_slot.get(key)
        if slot is not None:
            return None if slot in self.tape.consts else slot
        if self.by_reference is None:
            return None
        slot = self.by_reference(value)
        if slot is not None:
            self._const_slot[key] = slot
            self._const_keep.append(value)
        return slot

    def slot_of(self, x: Any) -> int:
        if isinstance(x, Tracer):
            if x.builder is self:
                return x.slot
            if x.builder.finished:
                raise TracingError(
                    "a traced value escaped the function it was traced in (stored in a global or "
                    "a closure and used later); return it from the function instead")
            slot = self._capture_slot.get(id(x))
            if slot is None:
                slot = self._new_slot(x.value)
                self.tape.inputs.append(slot)
                self._capture_slot[id(x)] = slot
                self.captures.append(x)
            return slot
        return self.const(x)

    def record(self, prim: Primitive, args: Sequence[Any], params: dict[str, Any],
               value: Any) -> "Tracer":
        # The hot path of tracing: one call per traced operation, most of one
        # or two operands (spelled out: a comprehension costs a frame)
        if len(args) == 2:
            a, b = args
            ins = (a.slot if type(a) in _TRACERS and a.builder is self else self.slot_of(a),
                   b.slot if type(b) in _TRACERS and b.builder is self else self.slot_of(b))
        elif len(args) == 1 and type(args[0]) in _TRACERS and args[0].builder is self:
            ins = (args[0].slot,)
        else:
            ins = tuple([a.slot if type(a) in _TRACERS and a.builder is self else self.slot_of(a)
                         for a in args])
        return _append(self, prim, ins, tuple(sorted(params.items())) if params else (), value, 3)

    def _keep_reads(self, prim: Primitive, ins: tuple[int, ...], out: int) -> None:
        """Keep, for the sweep, the values the VJP rules of ``out = prim(*ins)``
        read (only those of the arguments that depend on the inputs run).
        Called only while the trace holds a large value it could let go of, so
        which slots depend on the inputs is brought up to date here."""
        active, instrs = self._active, self.tape.instrs
        for k in range(self._scanned, len(instrs) - 1):
            i = instrs[k]
            if registry[i.prim].differentiable and any(s in active for s in i.ins):
                active.add(i.out)
        self._scanned = len(instrs)
        live = [k for k, s in enumerate(ins) if s in active]
        if not live or not prim.differentiable:
            return
        active.add(out)
        reads, kept = prim.vjp_reads, self._kept
        for k in live:
            if reads is None or k >= len(reads):
                kept.add(out)
                kept.update(ins)
                return
            for r in reads[k]:
                kept.add(out if r == "ans" else ins[r])

    def _hold_large(self, slot: int, nbytes: int) -> None:
        self._large.append(slot)
        self._large_bytes += nbytes
        # Each large value took at least a millisecond or so of NumPy to compute,
        # so checking a few dozen others each time costs nothing next to it;
        # past that, sweep once as much again is held (amortized linear).
        if len(self._large) <= 64 or self._large_bytes >= self._sweep_at:
            self.release_unreferenced()
            self._sweep_at = max(2 * self._large_bytes, 8 * RELEASE_BYTES)

    def release_unreferenced(self) -> None:
        """Swap each large value that only this trace holds (its tracers are
        gone) for a stand-in.  Only a releasing trace does this: reading a
        released value again gives the stand-in, which the reverse sweep's
        caller must notice (`released`)."""
        values, kept, held, read = self.values, [], 0, self._kept
        for s in self._large:
            v = values[s]
            if s in read:  # an eager gradient's rule reads it: the sweep lets go
                continue
            if sys.getrefcount(v) <= 3:  # values, v, getrefcount's argument
                values[s] = stand_in(v)
                self.released = self.release
            else:
                kept.append(s)
                held += v.nbytes
        self._large, self._large_bytes = kept, held

    def donatable(self, acc: Any) -> Any:
        """The array the sweep's accumulator ``acc`` holds if an update may
        overwrite it, else None: a large array of its own memory that nothing
        refers to but ``acc`` (and, traced, this trace's slot; only a
        releasing trace, whose values never reach the user, gives its slots
        up).  The caller then drops ``acc``."""
        traced = type(acc) in _TRACERS
        value = acc.value if traced else acc
        if (type(value) is not np.ndarray or value.nbytes < RELEASE_BYTES or value.base is not None
                or not value.flags.c_contiguous or not value.flags.writeable):
            return None
        if traced and (not self.release or acc.builder is not self or sys.getrefcount(acc) > 3
                       or self.values[acc.slot] is not value or acc.slot in self.tape.consts
                       or acc.slot in self.tape.inputs):
            return None  # not this trace's own slot, or another adjoint is the same tracer
        # plain: the caller's acc, this call's acc; traced: the slot's entry in
        # `values`, acc.value; and value, getrefcount's argument
        return value if sys.getrefcount(value) <= 4 else None

    def release_slot(self, slot: int) -> None:
        """Let go of slot's value, which nothing records from again."""
        v = self.values[slot]
        if type(v) is np.ndarray and v.nbytes >= RELEASE_BYTES and slot not in self.tape.consts:
            self.values[slot] = stand_in(v)
            self.released = self.release


def _index_key(value: np.ndarray) -> tuple[Any, ...]:
    """`Builder.const`'s key of a short integer array: its dtype, shape and
    bytes.  fastad's own index arrays (a slice's positions, read-only, made
    once per shape and key) are used again at every call of an eager
    gradient: their keys are kept, by the array (making one of 2000
    positions costs 5 us)."""
    if value.size < 64 or not is_made_here(value):
        return (value.dtype.str, value.shape, value.tobytes())
    kept = _index_keys.get(id(value))
    if kept is None or kept[0] is not value:
        if len(_index_keys) >= 1024:
            _index_keys.clear()
        kept = _index_keys[id(value)] = (value, (value.dtype.str, value.shape, value.tobytes()))
    return kept[1]


#: id of a read-only index array of fastad's -> (the array, its const key)
_index_keys: dict[int, tuple[np.ndarray, tuple[Any, ...]]] = {}


class RecordedColumns:
    """The operands of each instruction of a tape being recorded, a list of
    their tuples appended as each is recorded: what `transforms.tape_arrays`
    reads of a long tape, which costs more to gather from a million
    instructions scattered in memory than to keep while each is at hand.
    (Their output slots need no column: a trace numbers its slots in order,
    so they are the slots that are neither inputs nor constants.)"""

    __slots__ = ("instrs", "operands", "column")

    def __init__(self, instrs: list[Instr]) -> None:
        self.instrs = instrs  # the list they describe, which only `_append` appends to
        self.operands: list[tuple[int, ...]] = []
        # with the C hot path, also each instruction's operands, primitive
        # and parameters as C arrays (`_tracing.Column`, which its `append` fills)
        self.column = _tracing.Column() if _tracing is not None else None

    def describe(self, tape: Tape) -> bool:
        return tape.instrs is self.instrs and len(self.operands) == len(self.instrs)

    def c_column(self, tape: Tape) -> Any:
        """The C arrays (`_tracing.Column`) if they describe the tape: every
        instruction was recorded by the C `_append`; else None."""
        column = self.column
        return column if column is not None and self.describe(tape) \
            and len(column) == len(self.instrs) else None


#: a tuple subclass's constructor without NamedTuple's Python-level ``__new__``
#: (an instruction is made per traced operation)
_new_instr = tuple.__new__


def _append(builder: Builder, prim: Primitive, ins: tuple[int, ...], params: tuple[Any, ...],
            value: Any, depth: int) -> Tracer:
    """Record ``out = prim(*ins, **params)`` of value ``value`` on ``builder``'s
    tape and give its tracer: the tail of `Builder.record` and of the scalar
    fast paths (`core.fast_paths`).  ``depth``: `sys._getframe`'s depth of the frame that
    called fastad (the user's source line is the first one outside fastad
    from there on)."""
    tape = builder.tape
    out = len(tape.avals)
    builder.values.append(value)
    kind = type(value)
    if kind is np.ndarray:
        tape.avals.append(_new_instr(Aval, (value.shape, value.dtype)))
    else:  # a NumPy scalar (a scalar loop's values), whose Aval is kept per type
        tape.avals.append(_scalar_avals.get(kind) or aval_of(value))
    line = builder.line_override
    if not line:
        line = None
        if builder.record_lines:  # `_user_line`, inlined: asked per operation
            f = sys._getframe(depth)
            while f is not None:
                code = f.f_code
                positions = _code_positions.get(id(code), _UNSEEN)
                if positions is _UNSEEN:
                    positions = _positions_of(code)
                if positions is not None:  # the user's code
                    offset = f.f_lasti
                    line = positions.get(offset)
                    if line is None:
                        line = positions[offset] = _new_instr(SourcePos, (code, offset))
                    break
                f = f.f_back
    tape.instrs.append(_new_instr(Instr, (prim.name, out, ins, params, line)))
    if tape.recorded is not None:
        tape.recorded.operands.append(ins)
    if kind is np.ndarray:
        if (builder.release or builder.release_exact or builder.drop_unread) \
                and value.nbytes >= RELEASE_BYTES:
            builder._hold_large(out, value.nbytes)
        if builder.drop_unread and builder._large:
            builder._keep_reads(prim, ins, out)
        return (ArrayTracer if value.ndim else Tracer)(builder, out, value)
    if builder.drop_unread and builder._large:  # else no value it could keep is held
        builder._keep_reads(prim, ins, out)
    if kind in _scalar_avals:
        return Tracer(builder, out, value)
    return new_tracer(builder, out, value)


class _Traces(threading.local):
    """The active traces, innermost last, of each thread: threads may trace at once."""

    def __init__(self) -> None:
        self.stack: list[Builder] = []
        self.hidden: list[list[Builder]] = []  # stacks set aside by `outside_traces`
        # The accumulator the reverse sweep is adding a sparse cotangent into,
        # when nothing else holds it (`Builder.donatable`): `bind` lets the
        # primitive's `in_place_impl` write into it instead of copying it.
        self.donor: Any = None


_traces = _Traces()


def donate(value: Any) -> None:
    """Make ``value`` (an array of `Builder.donatable`, or None) the array the
    next in-place-capable primitive applied to it may overwrite."""
    _traces.donor = value


def current_builder() -> Builder | None:
    stack = _traces.stack
    return stack[-1] if stack else None


class outside_traces:  # noqa: N801 - used as ``with outside_traces():``
    """No trace is current for the ``with`` body: host code run for a value
    (a primitive's Python implementation calling fastad.numpy) gets plain
    arrays, where inside a trace `fastad.numpy` would make traced constants
    of the open trace that the value would then carry out of it."""

    def __enter__(self) -> None:
        self.saved = _traces.stack[:]
        _traces.hidden.append(self.saved)
        _traces.stack.clear()

    def __exit__(self, *exc: Any) -> None:
        _traces.hidden.pop()
        _traces.stack[:] = self.saved


def in_compiled_trace() -> bool:
    """Whether this thread is recording a compiled function's trace (a
    releasing builder: `Builder.release`), in host code run for a value of it
    too: its values are never shown to the user, only its executable's."""
    return any(b.release for b in _traces.stack) or any(
        b.release for stack in _traces.hidden for b in stack)


class recording:  # noqa: N801 - used as ``with recording() as builder``
    """Make a new builder the innermost active trace for the ``with`` body
    (``release``: see `Builder.release`).  A class rather than a generator:
    an eager gradient enters one per call."""

    __slots__ = ("builder", "collecting", "errstate")

    def __init__(self, record_lines: bool = True, release: bool = False) -> None:
        self.builder = Builder(record_lines, release)

    def __enter__(self) -> Builder:
        builder = self.builder
        stack = _traces.stack
        if stack and stack[-1].by_reference is not None:
            # a transformation inside a compiled function's trace: the arrays that
            # trace reads by reference are its values, captured, not constants
            outer = stack[-1]

            def through_outer(value: Any) -> int | None:
                slot = None if outer.finished else outer.reference_slot(value)
                return None if slot is None else builder.slot_of(outer.tracer(slot))
            builder.by_reference = through_outer
        stack.append(builder)
        self.collecting = gc.isenabled()
        gc.disable()  # tracing allocates millions of small objects and frees none
        self.errstate = np.errstate(all="ignore")
        self.errstate.__enter__()
        return builder

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        try:
            self.errstate.__exit__(kind, error, traceback)
        finally:
            if self.collecting:
                if gc.get_count()[0] >= YOUNG_OBJECTS_PROMOTED:
                    # A long trace made millions of objects while the collector
                    # was off, all in its youngest generation: the first
                    # collection after would walk them all (0.1-0.2 s per
                    # million instructions) to find they are alive, as most
                    # are until the compiled function is built.  Moved to the
                    # oldest generation at once instead (freeze then unfreeze:
                    # two list splices): a full collection sees them, when
                    # the collector's own accounting next calls for one.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
            _traces.stack.pop()
            self.builder.finished = True
        if isinstance(error, ValueError) and isinstance(error.__cause__, TracingError):
            # NumPy storing a traced 0-d value into an array: its float()
            # raised, and NumPy put "setting an array element with a
            # sequence" (0-d values can be indexed) in front of the reason
            raise error.__cause__.with_traceback(traceback)


def replay(tape: Tape, inputs: Sequence[Any]) -> list[Any]:
    """Run a tape through `bind`: on tracers this records it into the active
    trace (inlining), on arrays it evaluates it."""
    env: dict[int, Any] = dict(zip(tape.inputs, inputs))
    env.update(tape.consts)
    target = current_builder()
    outer_line = target.line_override if target is not None else None
    try:
        for ins in tape.instrs:
            if target is not None:  # replayed code keeps the user's lines
                target.line_override = ins.line or outer_line
            env[ins.out] = bind(registry[ins.prim], *(env[s] for s in ins.ins),
                                **dict(ins.params))
    finally:
        if target is not None:
            target.line_override = outer_line
    return [env[s] for s in tape.outputs]


def bind(prim: Primitive, *args: Any, **params: Any) -> Any:
    """Apply a primitive: compute it, and record it if any argument is traced."""
    if len(args) == 2:  # most operations: spelled out, as no comprehension's frame is cheap
        a, b = args
        if type(a) in _TRACERS:
            values = [a.value, b.value if type(b) in _TRACERS else
                      sequence_value(b) if type(b) in _ARRAY_LIKES else b]
        elif type(b) in _TRACERS:
            values = [sequence_value(a) if type(a) in _ARRAY_LIKES else a, b.value]
        else:
            return _bind_plain(prim, args, params)
    elif len(args) == 1 and type(args[0]) in _TRACERS:
        values = [args[0].value]
    else:
        for a in args:
            if type(a) in _TRACERS:
                break
        else:
            return _bind_plain(prim, args, params)
        values = [a.value if type(a) in _TRACERS else
                  sequence_value(a) if type(a) in _ARRAY_LIKES else a for a in args]
    stack = _traces.stack
    if not stack:
        raise TracingError(
            f"{prim.name}: a traced value was used after its trace ended (stored in a global "
            "or a closure); return it from the function instead")
    builder = stack[-1]
    if prim.in_place_impl is not None and values[0] is _traces.donor is not None \
            and type(args[0]) in _TRACERS:  # (a plain donor would be recorded as a constant)
        value = prim.in_place_impl(*values, **params)
        builder.values[args[0].slot] = stand_in(value)  # it holds the update now
        builder.released = True
        return builder.record(prim, args, params, value)
    if len(values) == 2 and not params:  # a scalar loop's arithmetic: NumPy scalars' operators
        op = _FLOAT64_OPERATORS.get(prim.name)
        if op is not None:
            first, second = type(values[0]), type(values[1])
            if (first is _F64 and (second is _F64 or second is float)) or \
                    (second is _F64 and first is float):
                return builder.record(prim, args, params, op(*values))
    impl = prim.impl
    if builder.release or builder.drop_unread:  # no value is written through by the user
        impl = (builder.release and prim.release_impl) or prim.view_impl or impl
    if prim.builtin:
        value = impl(*values, **params)
    else:  # the user's Python (a custom rule's function, odeint's dynamics, a
        with outside_traces():  # callback) computes on plain values, never in the trace
            value = impl(*values, **params)
    out = builder.record(prim, args, params, value)
    if prim.keeps_integers:
        keep = KEEP_INTEGERS.get(type(args[0]))
        if keep is not None:
            return keep(out, args[0])
    return out


def _bind_plain(prim: Primitive, args: tuple[Any, ...], params: dict[str, Any]) -> Any:
    """`bind` of plain values (an eager gradient's sweep): no trace to record into."""
    if prim.in_place_impl is not None and args[0] is _traces.donor is not None:
        return prim.in_place_impl(*args, **params)
    try:
        if prim.builtin:
            return prim.impl(*args, **params)
        with outside_traces():
            return prim.impl(*args, **params)
    except Exception:
        if not any(type(a) in _SEQUENCES and _holds_tracer(a) for a in args):
            raise
    # a list holding traced values ([t, 1.0]): the traced array of it
    return bind(prim, *[FRONT_END["asarray"](a) if type(a) in _SEQUENCES else a
                        for a in args], **params)


#: type of an integer traced value -> (result, operand) -> the result as an
#: integer of the operand's kind, for primitives that keep integers
#: (`Primitive.keeps_integers`); filled by `core.int_data`, which imports this module
KEEP_INTEGERS: dict[type, Callable[[Any, Any], Any]] = {}


_SEQUENCES = frozenset({list, tuple})
_ARRAY_LIKES = _SEQUENCES | {WatchedArray}  # operands whose value `sequence_value` gives


def _holds_tracer(seq: Any) -> bool:
    return any(type(v) in _TRACERS or (type(v) in _SEQUENCES and _holds_tracer(v)) for v in seq)


def sequence_value(seq: Any) -> np.ndarray:
    """The value of an array_like operand (``[1.0, 2.0]``, ``[t, 1.0]``), as
    NumPy would make it: what the impls compute with (`Builder.const`
    records the same array, or the traced one of a list holding traced values);
    a watched captured array's, the array (`core.watched`)."""
    if type(seq) is WatchedArray:
        return seq.array
    def plain(v: Any) -> Any:
        return v.value if type(v) in _TRACERS else [plain(w) for w in v] \
            if type(v) in _SEQUENCES else v
    return np.asarray(plain(seq))


def bind_computed(prim: Primitive, value: Any, *args: Any, **params: Any) -> Any:
    """`bind` of a primitive whose value the caller computed already, with the
    results of others, in one NumPy call (one LU factorization gives both
    `slogdet` primitives' values): the same instruction, computed once."""
    for a in args:
        if type(a) in _TRACERS:
            break
    else:
        return value
    stack = _traces.stack
    if not stack:
        raise TracingError(
            f"{prim.name}: a traced value was used after its trace ended (stored in a global "
            "or a closure); return it from the function instead")
    return stack[-1].record(prim, args, params, value)


def value_of(x: Any) -> Any:
    """The value of a traced value, or x itself."""
    return x.value if type(x) in _TRACERS else x


_F64 = np.float64
#: primitives whose NumPy ufunc, on two float64 scalars (or one and a Python
#: float), computes what the scalar's operator computes, bit for bit and with
#: the same `np.errstate` handling, in a tenth of the time
_FLOAT64_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _as_value(x: Any) -> Any:
    if isinstance(x, Tracer):
        return x.value
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return np.float64(x) if isinstance(x, (int, float, np.integer)) else x
    if isinstance(x, (complex, np.complexfloating)):
        return np.complex128(x) if isinstance(x, complex) else x
    raise TypeError(f"cannot trace an argument of type {type(x).__name__}; "
                    "pass floats, complex numbers or NumPy float/complex arrays")


def _internal(filename: str) -> bool:
    return filename.startswith(_PKG_DIR) and filename != _TOUR


#: id(code object) -> None for fastad's own code, else its `SourcePos` by
#: bytecode offset (one object per position, however many operations a loop
#: records there): asked per frame of every traced operation, by id (a code
#: object's own hash digests its bytecode and constants each time);
#: `_seen_code` holds the code objects, so that no id is reused while it is a key
_code_positions: dict[int, dict[int, SourcePos] | None] = {}
_seen_code: list[Any] = []
_UNSEEN = object()


def _positions_of(code: Any) -> dict[int, SourcePos] | None:
    _seen_code.append(code)
    positions = _code_positions[id(code)] = None if _internal(code.co_filename) else {}
    return positions


def user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel that points at the caller of fastad."""
    level, f = 1, sys._getframe(1)
    while f is not None and _internal(f.f_code.co_filename):
        f = f.f_back
        level += 1
    return level


def _tracing_extension() -> Any:
    """The C hot path of tracing (`core._tracing`), installed, or None: not
    built, or FASTAD_NO_EXT set (the Python functions then record the same tape)."""
    if os.environ.get("FASTAD_NO_EXT", "") not in ("", "0"):
        return None
    try:
        from . import _tracing
    except ImportError:
        return None
    _tracing.install({
        "Tracer": Tracer, "ArrayTracer": ArrayTracer, "Instr": Instr, "SourcePos": SourcePos,
        "Aval": Aval, "RELEASE_BYTES": RELEASE_BYTES,
        "F64": _F64, "F64_DTYPE": np.dtype(np.float64), "ndarray": np.ndarray,
        "INDEX_AVAL": _INDEX_AVAL, "INT_AVAL": _INT_AVAL, "FLOAT_AVAL": _FLOAT_AVAL,
        "INT64_STR": _INT64_STR, "scalar_avals": _scalar_avals, "code_positions": _code_positions,
        "registry": registry, "FRONT_END": FRONT_END, "positions_of": _positions_of,
        "UNSEEN": _UNSEEN, "traces": _traces, "append": _append,
        "operators": _FLOAT64_OPERATORS})
    return _tracing


#: `_append` in Python, which the C one (when there is one) falls back to
_append_py = _append
_tracing = _tracing_extension()
if _tracing is not None:
    _append = _tracing.append  # noqa: F811 - `Builder.record` and the fast paths record through it
