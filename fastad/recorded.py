"""A function traced with respect to some of its arguments (`record`), and
how its results reach the caller (`finish`): values when it was called on
values, tracers of the enclosing trace when it was called inside one.  The
eager transformations of `fastad.api` and `fastad.vmap` are built on it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from .core import pytree
from .core.arrays import plain_array
from .core.errors import TracingError, unsupported_precision
from .core.int_data import INTEGER_DATA, integer_like, storage_dtype
from .core.tape import Tape
from .core.tracer import Builder, Tracer, current_builder, recording, replay
from .data_arguments import Watch, WroteIntoData, lend, lendable

_INEXACT = tuple(np.dtype(t) for t in (np.float64, np.float32, np.complex128, np.complex64))


def _check_precision(x: np.ndarray, where: str) -> None:
    """float16 and long double are refused, not silently run in another precision."""
    if x.dtype.kind in "fc" and x.dtype not in _INEXACT:
        raise unsupported_precision(where, x.dtype)


def _plain_leaves(tree: Any, where: str) -> Any:
    """``tree`` with its ndarray-subclass leaves as `plain_array` makes them."""
    if type(tree) in _PLAIN_LEAVES:  # data passed as an argument: one leaf, plain already
        return tree
    leaves, treedef = pytree.flatten(tree)
    plain = [plain_array(leaf, where) for leaf in leaves]
    if all(a is b for a, b in zip(plain, leaves)):
        return tree
    return pytree.unflatten(treedef, plain)


_PLAIN_LEAVES = frozenset({np.ndarray, float, int})


def check_leaf(x: Any, where: str) -> Any:
    """A differentiable input leaf: a float or complex number or array (or a traced value)."""
    if type(x) is np.ndarray and x.dtype in _INEXACT:  # the common case, checked once
        return x
    if isinstance(x, Tracer):
        return x
    x = plain_array(x, where)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{where}: cannot differentiate with respect to a bool")
    if isinstance(x, (int, float, np.integer)):
        return np.float64(x)
    if isinstance(x, complex):
        return np.complex128(x)
    if isinstance(x, (np.floating, np.complexfloating)):
        _check_precision(np.asarray(x), where)
        return x
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        hint = ""
        if dataclasses.is_dataclass(x) or hasattr(x, "__dict__"):
            hint = ("; to pass its arrays, make the class a pytree node "
                    "(fastad.tree_util.register_dataclass or register_pytree_node)")
        raise TypeError(f"{where}: expected a float or a NumPy float array, got "
                        f"{type(x).__name__}{hint}")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    _check_precision(x, where)
    if x.dtype not in _INEXACT:
        raise TypeError(_not_inexact(where, x.dtype))
    return x


def differentiable_leaf(x: Any, where: str) -> Any:
    """`check_leaf` of a leaf to differentiate with respect to, which an
    integer or boolean argument of a compiled function (a tracer of integer
    data) is not: refused as eagerly, where the value itself arrives (vmap
    takes such tracers as data leaves through `check_leaf`)."""
    if isinstance(x, Tracer):
        kind = x.dtype.kind
        if kind == "b" and type(x.value) is not np.ndarray:
            raise TypeError(f"{where}: cannot differentiate with respect to a bool")
        if kind in "biu" and type(x.value) is np.ndarray:
            raise TypeError(_not_inexact(where, x.dtype))
        return x
    return check_leaf(x, where)


def _not_inexact(where: str, dtype: np.dtype) -> str:
    return (f"{where}: expected a float64 or float32 (or complex128, complex64) array, got "
            f"dtype {dtype}; integers have no derivative: convert with .astype(float)")


class Recorded:
    """A function traced with respect to some of its arguments."""

    def __init__(self, builder: Builder, inputs: list[Tracer], in_trees: list[Any],
                 outer_leaves: list[Any], out_leaves: list[Any], out_tree: Any) -> None:
        self.builder = builder
        self.inputs = inputs
        self.in_trees = in_trees
        self.outer_leaves = outer_leaves  # what the caller passed (may be outer tracers)
        self.outer_traced = any(isinstance(v, Tracer) for v in outer_leaves)
        self.out_leaves = out_leaves
        self.out_tree = out_tree
        self.lent_views: dict[int, Any] = {}  # id of a lent view -> the caller's array
        self.wrote_data = False  # (watched calls only: `record`'s ``watch``)


def record(f: Callable[..., Any], args: Sequence[Any], argnums: tuple[int, ...],
           then: Callable[[Recorded], Any] | None = None,
           drop_unread: bool = False, lends: bool = False,
           watch: bool = False, aux: Aux | None = None) -> tuple[Recorded, Any]:
    """Trace ``f(*args)`` w.r.t. ``args[argnums]``; run ``then`` inside the trace.
    ``drop_unread``: ``then`` is a first-order gradient's sweep; unless an
    enclosing trace will replay this one, keep only the values its rules
    read (`Builder.drop_unread`).

    ``lends`` (with ``drop_unread``, outermost): the data arguments (the
    ones not differentiated) are passed to ``f`` as read-only views, read in
    place (`fastad.data_arguments`); a write into one raises `WroteIntoData`
    before it changes anything.  ``watch``: set ``rec.wrote_data``, whether
    ``f`` wrote into its data arguments' arrays.  ``aux``: f's `Aux`, called
    in f's place.

    Inside a compiled function's trace, f's loops are rerolled (and its
    time loops found) before ``then`` differentiates it, as `fastad.compile`
    does with its own trace: ``jit(grad(f))`` of a Python loop differentiates
    vector code, not one instruction per element, which the enclosing trace
    could not roll up again once differentiated."""
    args = [arg if i in argnums else _plain_leaves(arg, f"argument {i}")
            for i, arg in enumerate(args)]
    enclosing = current_builder()
    outermost = enclosing is None
    reroller = None if outermost else enclosing.reroller
    fn = f if aux is None else aux.value
    with recording() as builder:
        builder.reroller = reroller
        builder.drop_unread = drop_unread and outermost
        # its tape is never replayed nor shown: source lines would go unread
        builder.record_lines = not builder.drop_unread
        new_args = list(args)
        views: dict[int, Any] = {}
        if lends and builder.drop_unread:
            new_args = [arg if i in argnums else lend(arg, builder.lent, views)
                        for i, arg in enumerate(args)]
        watching = Watch(lendable(args, argnums)) if watch else None
        inputs, in_trees, outer = [], [], []
        for i in argnums:
            arg = args[i]
            if type(arg) is np.ndarray:  # the common argument: one leaf
                leaves, tree = [arg], pytree.LEAF
            else:
                leaves, tree = pytree.flatten(arg)
            leaves = [differentiable_leaf(v, f"argument {i}") for v in leaves]
            tracers = [builder.new_input(v) for v in leaves]
            new_args[i] = builder.tracer(tracers[0].slot) if tree is pytree.LEAF else \
                pytree.unflatten(tree, [builder.tracer(t.slot) for t in tracers])
            inputs += tracers
            in_trees.append(tree)
            outer += leaves
        try:
            out = fn(*new_args)
        except ValueError as exc:  # NumPy's "assignment destination is read-only"
            if builder.lent and "read-only" in str(exc):
                raise WroteIntoData(str(exc)) from exc
            raise
        wrote_data = watching is not None and watching.wrote()
        out_leaves, out_tree = pytree.flatten(out)
        rec = Recorded(builder, inputs, in_trees, outer, out_leaves, out_tree)
        rec.lent_views, rec.wrote_data = views, wrote_data
        rolled = None if reroller is None else _rolled(rec, aux, reroller)
        if rolled is None:
            return rec, (then(rec) if then is not None else None)
    with recording() as builder:
        builder.reroller = reroller
        rec = _replayed(rec, rolled, builder, aux)
        return rec, (then(rec) if then is not None else None)


def _rolled(rec: Recorded, aux: Aux | None, reroller: Callable[..., Tape | None]
            ) -> Tape | None:
    """``rec``'s tape rerolled by the enclosing compiled trace's ``reroller``
    (`Specializer._rerolled`), its outputs f's results and aux's traced
    leaves; None if nothing rolled up, or a result is integer data (whose
    integer type a replay would not keep)."""
    leaves = rec.out_leaves + (aux.traced() if aux is not None else [])
    if any(isinstance(v, INTEGER_DATA) for v in leaves):
        return None
    return reroller(rec.builder, leaves)


def _replayed(rec: Recorded, rolled: Tape, builder: Builder, aux: Aux | None) -> Recorded:
    """``rec`` recorded afresh into ``builder`` from its rerolled tape: new
    inputs for the differentiated leaves, the same outer tracers for what it
    captured; aux's traced leaves moved to their replayed values."""
    old = rec.builder
    inputs = [builder.new_input(old.values[t.slot]) for t in rec.inputs]
    given = dict(zip((t.slot for t in rec.inputs), inputs))
    given.update((old.slot_of(x), x) for x in old.captures)
    outs = replay(rolled, [given[s] for s in old.tape.inputs])  # rolled's, position by position
    n = len(rec.out_leaves)
    if aux is not None:
        aux.moved(builder, dict(zip(map(id, aux.traced()), outs[n:])))
    new = Recorded(builder, inputs, rec.in_trees, rec.outer_leaves, outs[:n], rec.out_tree)
    new.lent_views, new.wrote_data = rec.lent_views, rec.wrote_data
    return new


def finish(rec: Recorded, results: list[Any]) -> list[Any]:
    """The values of ``results``, as outer tracers if the call was nested."""
    if not (rec.builder.captures or rec.outer_traced):
        return [r.value if type(r) is Tracer and type(r.value) in _SCALAR_RESULTS  # a loss
                else _owned(_value(r)) if isinstance(r, Tracer) else _owned(r) for r in results]
    tape = rec.builder.tape
    tape.outputs = [rec.builder.slot_of(r) for r in results]
    outs = replay(tape, list(rec.outer_leaves) + list(rec.builder.captures))
    # integers held in float64 (an argmax, labels + 1 in an aux) stay integers
    # in the enclosing trace, which gives them back in their own dtype
    return [_integers_again(r, o) if isinstance(r, INTEGER_DATA) else o
            for r, o in zip(results, outs)]


def _integers_again(inner: Any, outer: Any) -> Any:
    """``outer``, the enclosing trace's value of the integer data ``inner``,
    as integer data of the same dtype and sources."""
    if isinstance(outer, Tracer):
        return integer_like(outer, inner.sources, inner.data_dtype)
    if inner.data_dtype is int and not np.ndim(outer):
        return int(outer)
    return np.asarray(outer).astype(storage_dtype(inner.data_dtype))[()]


def _value(r: Tracer) -> Any:
    """A result's value; integers held in float64 (`core.int_data`) in their
    own dtype, as NumPy gives them (a compiled function's `Structure.casts`)."""
    if not isinstance(r, INTEGER_DATA):
        return r.value
    if r.data_dtype is int and not r.ndim:
        return int(r.value)
    return np.asarray(r.value).astype(storage_dtype(r.data_dtype))[()]


#: values of a result that are the caller's as they are (`_owned`, `_value`)
_SCALAR_RESULTS = frozenset({np.float64, np.float32, np.complex128, np.complex64})


def _owned(v: Any) -> Any:
    """``v``, copied if it is a read-only array: a result made inside the
    trace may be a broadcast view of a seed or a slice the trace kept
    read-only, and the caller owns what a transform returns (``g *= lr``)."""
    if type(v) is np.ndarray and not v.flags.writeable:
        return v.copy()
    return v


def tape_of(rec: Recorded, results: list[Any]) -> Tape:
    tape = rec.builder.tape
    tape.outputs = [rec.builder.slot_of(r) for r in results]
    if rec.builder.captures:
        raise TracingError("a compiled function closed over a value traced by an enclosing "
                           "transformation; pass it as an argument instead")
    return tape


class Aux:
    """``f`` of ``has_aux=True``, which returns ``(value, aux)``: `value` calls f
    and keeps aux aside, so that only the value is differentiated.  Aux is
    returned as f made it, except that its leaves traced by the call's own
    recording become values (or, nested, values of the enclosing trace):
    `traced` lists them for `finish`, `rebuild` puts their results back."""

    def __init__(self, f: Callable[..., Any], name: str) -> None:
        self.f, self.name = f, name
        self.leaves: list[Any] = []
        self.tree: Any = None
        self.builder: Builder | None = None

    def value(self, *args: Any, **kwargs: Any) -> Any:
        from .core.tracer import current_builder
        out = self.f(*args, **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{self.name}(..., has_aux=True) requires a function returning a "
                            f"pair (value, aux), got {type(out).__name__}")
        self.builder = current_builder()
        self.leaves, self.tree = pytree.flatten(out[1])
        return out[0]

    def _own(self, leaf: Any) -> bool:
        return isinstance(leaf, Tracer) and leaf.builder is self.builder

    def moved(self, builder: Builder, new_of: dict[int, Any]) -> None:
        """f was recorded afresh into ``builder`` (`record` rerolled it): its
        traced leaves are now ``new_of[id(leaf)]``."""
        self.builder = builder
        self.leaves = [new_of.get(id(leaf), leaf) for leaf in self.leaves]

    def traced(self) -> list[Any]:
        return [leaf for leaf in self.leaves if self._own(leaf)]

    def rebuild(self, values: Sequence[Any], lent_views: dict[int, Any] | None = None) -> Any:
        """Aux with its traced leaves' results; a data argument the function
        was lent (`record`) and returns as it received it is the caller's array."""
        it = iter(values)
        lent = lent_views or {}
        return pytree.unflatten(self.tree, [next(it) if self._own(leaf) else
                                            lent.get(id(leaf), leaf) for leaf in self.leaves])
