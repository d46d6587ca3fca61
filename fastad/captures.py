"""Closures and globals of compiled functions: read at each call, rebinding
detected.

A compiled function keeps its trace, so what the trace read from outside its
arguments must not go stale.  Before tracing, the closure cells and the
module globals that the function's code names are looked up, and so are
those of the Python functions it reaches through them (helpers in globals or
closures, and the code objects nested in each: what fastad can see without
running anything).  Of the bindings found:

* a float or complex ``numpy.ndarray`` is *read by reference*: the trace
  takes it as a hidden input of the tape (the first time an operation uses
  it, or a NumPy view of it: ``W.T``, ``W[::-1]`` become gathers from the
  input) instead of a constant, and each call passes the array the binding
  holds then, so a change made in place is seen by the next call; what plain
  NumPy computes from it while the function runs (``W.sum()``, ``2 * W``,
  ``if W.max() > 1``) is a constant or a branch of the tape, so an array
  read that way is guarded by its contents as well (`watching` tells the
  two uses apart, `settle` adds the guards);
* every binding holding an array or a number is *guarded*: at each call it
  must still hold the same object (a number: an equal one), else the trace
  is not used and the function is traced again, as PyTorch's compiler guards
  the globals and closure cells a frame read; an integer or boolean array
  (an index table or a mask, a constant of the tape) must also still hold
  the contents it had when traced, compared at each call (a pass over it,
  cheaper than the gather or select that uses it).

What the function can reach is found by `fastad.capture_walk` (defaults,
partial arguments, containers up to eight levels deep, the functions
reached); where it would stop short the trace is refused (`_refuse`).

A compiled function called inside another one's trace brings its captures
to it (`collecting`, `note`), also when the walk cannot find it.

Functions that capture nothing pay nothing per call (their compiled call
path is unchanged); the others check their bindings (`_checker`: a dict or
cell read and an identity test each).
"""
from __future__ import annotations

import array
import collections
import collections.abc
import contextlib
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .core.arrays import digest, same_bits
from .core.errors import TracingError
from .core.watched import STAND_INS, AdvancedIterator, ReadingCall, WatchedArray, takes_memory

_NUMBERS = (bool, int, float, complex, np.number, np.bool_)
_EQUAL = _NUMBERS + (str, bytes)  # a binding to an equal one of these still holds
@dataclass(frozen=True, eq=False)
class Binding:
    """A closure cell or a module global, and the object it held when traced."""

    where: Any  # a cell, or a module's globals dict
    name: str
    value: Any
    # an integer or boolean array's contents when traced: the tape holds it as
    # a constant (an index table, a mask), so a change in place must retrace
    contents: np.ndarray | None = None

    def current(self) -> Any:
        if type(self.where) is Lookup:
            return self.where.get(self.name)
        if isinstance(self.where, dict):
            return self.where.get(self.name, _MISSING)
        if isinstance(self.where, _SEQUENCES):
            return self.where[self.name] if self.name < len(self.where) else _MISSING
        try:
            return self.where.cell_contents
        except ValueError:  # an empty cell
            return _MISSING

    def holds(self) -> bool:
        now = self.current()
        if type(now) is WatchedArray and now.array is now.origin:
            now = now.origin  # an enclosing trace watches it (`watching`)
        elif type(now) in STAND_INS:
            now = now.target
        if now is self.value:
            if self.contents is None:
                return True
            if type(self.contents) is np.ndarray:
                return same_bits(np.asarray(now), self.contents)
            return _equal(now, self.contents)
        if isinstance(self.value, _EQUAL) and type(now) is type(self.value):
            return bool(now == self.value)
        return False

    def describe(self) -> str:
        if type(self.where) is Lookup:
            return self.where.label if self.name is None else f"{self.where.label} {self.name!r}"
        if isinstance(self.where, _SEQUENCES):
            return f"item {self.name} of a {type(self.where).__name__}"
        if isinstance(self.where, dict):
            kind = "global" if "__builtins__" in self.where else "attribute or item"
            return f"{kind} {self.name!r}"
        return f"closure variable {self.name!r}"


_MISSING = object()
_SEQUENCES = (list, tuple, collections.deque)  # followed item by item
# mutable collections not followed item by item: bound with a copy, compared by ==
_SNAPSHOTS = (set, bytearray, array.array)


def _equal(now: Any, then: Any) -> bool:
    """``now == then`` for a collection's snapshot; False where that is no bool."""
    try:
        return type(now) is type(then) and (now == then) is True
    except Exception:  # items that do not compare (arrays in a deque)
        return False


class Lookup:
    """Where a binding lives that is no cell, dict or list: a function's
    defaults (``lambda w, U=U: ...``) or keyword defaults, a
    ``functools.partial``'s arguments and keywords.  ``get(name)`` reads it
    now (`_MISSING` if it is gone: ``f.__defaults__ = ...`` rebinds them)."""

    __slots__ = ("get", "label", "put")

    def __init__(self, get: Callable[[Any], Any], label: str,
                 put: Callable[[Any, Any], None] | None = None) -> None:
        self.get = get
        self.label = label
        self.put = put  # put(name, value) binds it anew (`watching`), if it can be


def _refuse(what: str) -> None:
    raise TracingError(
        f"the function reads {what}: compiled code could neither read it at each call nor "
        "notice a change to it. Pass that state as an argument (arrays and numbers are data; "
        "static_argnums/static_argnames for the rest), or use fastad.grad, which runs the "
        "function on every call")


@dataclass(frozen=True, eq=False)
class Captures:
    """What one trace of a function read from outside its arguments."""

    guarded: tuple[Binding, ...]  # arrays and numbers: the same object at each call
    # float arrays, by id, that may become inputs of the tape when first used
    arrays: dict[int, Binding]
    # id -> a checksum of each float array's contents before the trace (`_unwritten`)
    digests: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hold", _checker(self.guarded))

    def hold(self) -> bool:  # replaced per instance by `_checker`'s
        return all(b.holds() for b in self.guarded)

    def changed(self) -> str:
        return ", ".join(b.describe() for b in self.guarded if not b.holds())


def _checker(guarded: tuple[Binding, ...]) -> Callable[[], bool]:
    """``Captures.hold`` for ``guarded``, checked on every call: a dict or
    cell read and an identity test per binding (what almost every binding
    passes), `Binding.holds` only where that test fails (an equal number)
    or contents must be compared."""
    in_dicts, in_cells, others = [], [], []
    for b in guarded:
        if b.contents is not None:
            others.append(b)
        elif type(b.where) is dict:
            in_dicts.append((b.where, b.name, b.value, b))
        elif type(b.where) is types.CellType:
            in_cells.append((b.where, b.value, b))
        else:
            others.append(b)
    missing = _MISSING

    def hold() -> bool:
        for where, name, value, b in in_dicts:
            if where.get(name, missing) is not value and not b.holds():
                return False
        for cell, value, b in in_cells:
            try:
                if cell.cell_contents is not value and not b.holds():
                    return False
            except ValueError:  # emptied
                return False
        for b in others:
            if not b.holds():
                return False
        return True
    return hold


NONE = Captures((), {})


def settle(found: Captures, by_reference: list[Binding], read: set[int]) -> Captures:
    """``found`` after a trace: the float arrays whose values the trace read
    outside the tape (``read``, the ids `watching` saw) are guarded by their
    contents too (a copy taken now, compared bit for bit at each call), so a
    change in place retraces instead of leaving a stale constant or branch.

    An array the tape only took as an input (``x @ W``) is read at each call
    and costs no pass over it per call (a data matrix in a closure).  So is
    one the trace did not use.  The arrays of compiled functions called in
    the trace (`merged`) that this trace did not watch are guarded by their
    contents.  A function that writes into an array it reads by reference is
    refused (`_unwritten`, here and at the first read): its compiled form
    would read the array once, as it is at the call."""
    if found is NONE:
        return found
    for binding in by_reference:
        _unwritten(found, binding)
    guarded = []
    for b in found.guarded:
        if type(b.where) is Lookup and b.name is None and b.where.get(None) != b.value:
            # a container's number of items that the trace changed: a list the
            # function appends to as a side effect (``calls.append(1)``, a log),
            # which it writes while traced and need not read: not bound (each
            # trace would change it again, and another compiled function's
            # trace of the same code too)
            continue
        value = b.value
        if (b.contents is None and type(value) is np.ndarray and value.dtype.kind in "fc"
                and (id(value) in read or id(value) not in found.arrays)):
            b = Binding(b.where, b.name, value, value.copy())
        guarded.append(b)
    return Captures(tuple(guarded), found.arrays, found.digests)


class WatchedArrayRefused(Exception):
    """C code refused a `WatchedArray` where it takes an array's memory
    (the buffer protocol, which a Python class cannot provide before Python
    3.12): the trace is repeated with the arrays themselves, read."""


def refused_by_c_code(exc: Exception, found: Captures, watch: bool) -> None:
    """Raise `WatchedArrayRefused` if ``exc`` is a TypeError raised while
    ``found``'s arrays were watched: most likely the buffer protocol meeting
    a stand-in.  A TypeError of the function's own comes again from the
    trace that follows, which watches none."""
    if isinstance(exc, TypeError) and watch and any(type(b.value) is np.ndarray
                                                    for b in found.guarded):
        raise WatchedArrayRefused() from exc


@contextlib.contextmanager
def watching(found: Captures, watch: bool = True) -> Iterator[set[int]]:
    """While ``found``'s function is traced, each binding holding one of its
    float arrays holds a `WatchedArray` standing for it, which tells the uses
    of the array by traced operations (read by reference) from every other
    read of its values (see `fastad.core.watched`).  Yields the ids of the
    arrays read, for `settle`; an array one of whose bindings cannot be bound
    anew (a tuple's item, a class attribute) counts as read.  A Numba or
    Cython function bound there is a `ReadingCall` meanwhile, an iterator an
    `AdvancedIterator`: a trace that takes values from one is refused.
    Without ``watch``, every array is read (guarded by its contents), none
    stands in."""
    read: set[int] = set()
    proxies: dict[int, WatchedArray] = {}
    swapped: list[tuple[Binding, Any]] = []
    advanced: list[Any] = []
    try:
        for b in found.guarded:
            value = b.value
            stand_in = (ReadingCall(value) if takes_memory(value) else
                        AdvancedIterator(value, advanced)
                        if isinstance(value, collections.abc.Iterator) else None)
            if stand_in is not None:
                if b.current() is value and _rebind(b, stand_in):
                    swapped.append((b, stand_in))
                continue
            if id(value) not in found.arrays and not (b.contents is not None
                                                     and type(value) is np.ndarray):
                continue  # (an integer or boolean array is watched for ``y[idx]``'s gather)
            if not watch:
                read.add(id(value))
                continue
            proxy = proxies.get(id(value))
            if proxy is None:
                proxy = proxies[id(value)] = WatchedArray(value, value, read)
            if b.current() is value and _rebind(b, proxy):
                swapped.append((b, proxy))
            else:
                read.add(id(value))
        yield read
        if advanced:
            raise TracingError(
                f"the function took values from a {type(advanced[0]).__name__} object, an "
                "iterator it reads from outside its arguments, while it was traced to be "
                "compiled: the compiled function would return what those values gave on every "
                "call. Pass the values as arguments, or use fastad.grad, which runs the "
                "function on every call")
    finally:
        for b, proxy in reversed(swapped):
            if b.current() is proxy:
                _rebind(b, b.value)


def unwatched_results(leaves: list[Any], read: set[int]) -> list[Any]:
    """A traced function's results with a watched array returned as it is
    (``return loss, W``) the array: a constant of the tape, so read."""
    for i, leaf in enumerate(leaves):
        if type(leaf) is WatchedArray:
            read.add(id(leaf.origin))
            leaves[i] = leaf.array
    return leaves


def _rebind(b: Binding, value: Any) -> bool:
    """Bind ``b``'s name to ``value``; False if its place cannot be written."""
    where = b.where
    if type(where) is dict or type(where) is list or type(where) is collections.deque:
        where[b.name] = value
    elif type(where) is types.CellType:
        where.cell_contents = value
    elif type(where) is Lookup and where.put is not None:
        where.put(b.name, value)
    else:
        return False
    return True


_traces = threading.local()  # .open: the lists of `collecting` blocks of this thread
_collectors = [0]  # `collecting` blocks open in all threads: `note`'s quick exit


@contextlib.contextmanager
def collecting() -> Iterator[list[Captures]]:
    """While a compiled function is traced: the captures of the compiled
    functions it calls (`note`), which its own walk may not reach (one
    passed as an argument, found in a dict by a computed key).  Their tapes
    are replayed into this trace, so this trace depends on their bindings."""
    open_lists = _traces.__dict__.setdefault("open", [])
    found: list[Captures] = []
    open_lists.append(found)
    _collectors[0] += 1  # (an estimate under threads: `note` then looks anyway)
    try:
        yield found
    finally:
        _collectors[0] -= 1
        open_lists.pop()


def active() -> bool:
    """Whether a compiled function's trace may be collecting (`collecting`)."""
    return bool(_collectors[0]) and bool(getattr(_traces, "open", ()))


def note(found: Captures | None) -> None:
    """A compiled function whose trace read ``found`` was called inside the
    traces being recorded in this thread: each of them depends on it."""
    if found is None or found is NONE or not _collectors[0]:
        return
    for open_list in getattr(_traces, "open", ()):
        open_list.append(found)


def merged(found: Captures, nested: list[Captures]) -> Captures:
    """``found`` guarding also the bindings of ``nested`` (see `collecting`).
    Their arrays are constants of this trace unless this trace's own walk
    reads them by reference: `settle` guards them by their contents; those
    whose values the inner trace read are guarded by them."""
    if not nested:
        return found
    guarded = {(id(b.where), b.name): b for b in found.guarded}
    for inner in nested:
        for b in inner.guarded:
            key = (id(b.where), b.name)
            if key not in guarded or (b.contents is not None and guarded[key].value is b.value):
                guarded[key] = b  # (the inner trace read its values: guarded by them)
    return Captures(tuple(guarded.values()), found.arrays, found.digests)


def view_indices(view: np.ndarray, base: np.ndarray) -> np.ndarray | None:
    """The flat indices into ``base`` (C-contiguous) of each element of
    ``view``, a NumPy view of it (``base[::-1]``, ``base.T``, ``base[:, 0]``;
    both may be views of one array NumPy owns), or None when ``view`` is not
    a strided view of ``base``'s elements."""
    if (view.dtype != base.dtype or not base.flags.c_contiguous or base.size == 0
            or view.base is None or view.base is not (base if base.base is None else base.base)):
        return None
    item = base.itemsize
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if offset % item or any(s % item for s in view.strides):
        return None
    flat = np.arange(base.size, dtype=np.int64)[offset // item:]
    strides = tuple(s // item * flat.itemsize for s in view.strides)
    if offset < 0 or not flat.size:
        return None
    idx = np.lib.stride_tricks.as_strided(flat, shape=view.shape, strides=strides)
    # the same memory as base's elements? (as_strided reads past flat otherwise)
    first = offset // item
    last = first + sum((n - 1) * s // item for n, s in zip(view.shape, view.strides) if s > 0)
    low = first + sum((n - 1) * s // item for n, s in zip(view.shape, view.strides) if s < 0)
    if view.size and (low < 0 or last >= base.size):
        return None
    return np.array(idx)


def _unwritten(found: Captures, binding: Binding) -> None:
    """Refuse a trace during which the function wrote into an array it reads
    by reference: the compiled tape reads the array once per call, where the
    function read it before and after its write."""
    if digest(binding.value) != found.digests[id(binding.value)]:
        raise TracingError(
            f"the function writes into {binding.describe()}, an array it reads from outside "
            "its arguments: compiled code reads such an array as it is at the call and does "
            "not repeat the write; pass the array as an argument (or use fastad.grad, which "
            "runs the function each time)")



def reader(builder: Any, found: Captures, inputs: list[Any], by_reference: list[Binding]
           ) -> Callable[[Any], int | None]:
    """``builder.by_reference`` for a trace of a function that captured
    ``found``: a captured array the trace reads becomes a new input (appended
    to ``inputs``, its binding to ``by_reference``, in the order the call
    passes them); a view of one, a gather from its base."""
    from .core.registry import registry

    def read_by_reference(value: Any) -> int | None:
        binding = found.arrays.get(id(value))
        if binding is None or binding.value is not value:
            return view_by_reference(value)
        _unwritten(found, binding)
        t = builder.new_input(value)
        inputs.append(t)
        by_reference.append(binding)
        return t.slot

    def view_by_reference(value: Any) -> int | None:
        if getattr(value, "base", None) is None:
            return None
        for binding in found.arrays.values():
            base = binding.value
            idx = view_indices(value, base)
            if idx is not None:
                break
        else:
            return None
        # recorded into this trace, which may not be the innermost
        base_slot = builder.const(base)
        gathered = builder.values[base_slot].reshape(-1)[idx]
        return builder.record(registry["take"], [builder.tracer(base_slot), idx],
                              {}, gathered).slot
    return read_by_reference
