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
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import backends, pytree
from .backends import reference
from .api import (Recorded, check_leaf, grad, gradient_of_scalar, hessian, hvp, value_and_grad,
                  vmap)
from .tape import Tape, where
from .tracer import Tracer, recording, user_stacklevel
from .transforms.optimize import optimize

log = logging.getLogger("fastad")


def _is_dynamic(leaf: Any) -> bool:
    if isinstance(leaf, np.ndarray):
        return leaf.dtype.kind == "f"
    return isinstance(leaf, (float, np.floating, Tracer))


def _static_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        return ("array", leaf.dtype.str, leaf.shape, leaf.tobytes())
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(f"a non-float argument of type {type(leaf).__name__} is compiled in as a "
                        "constant and must be hashable; pass it through a closure instead") from None
    return ("value", type(leaf), leaf)


def _leaf_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, leaf.dtype.char)
    return ((), np.result_type(leaf).char)


def _scalar(v: Any) -> Any:
    """0-d results as NumPy scalars, as NumPy's own reductions return them."""
    return v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v


@dataclass
class Entry:
    exe: Any
    tape: Tape
    unpack: Callable[[list[Any]], Any]

    @property
    def guards(self) -> list[tuple[str, bool]]:
        """Each guard's source line and the outcome this trace recorded."""
        return [(where(ins.line), dict(ins.params)["expected"])
                for ins in self.tape.instrs if ins.prim == "guard"]


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


class Specializer:
    """One compiled computation of ``fn``, cached per signature.

    ``outputs(rec)`` runs inside the trace and returns the values to compute;
    ``unpack(rec, values)`` turns computed values into what the caller gets.
    """

    def __init__(self, fn: Callable[..., Any], outputs: Callable[[Recorded], list[Any]],
                 unpack: Callable[[Recorded, list[Any]], Any], wrt: Sequence[int] | None,
                 static_argnums: Sequence[int], backend: str, eager: Callable[..., Any],
                 max_traces: int | None = None, check_nans: bool | None = None,
                 optimize_tape: bool = True) -> None:
        self.fn = fn
        self.check_nans = (os.environ.get("FASTAD_CHECK_NANS", "") not in ("", "0")
                           if check_nans is None else check_nans)
        self.eager = eager
        self.max_traces = MAX_TRACES_PER_SIGNATURE if max_traces is None else max_traces
        self.gave_up: set[Any] = set()
        self.outputs = outputs
        self.unpack = unpack
        self.wrt = None if wrt is None else tuple(wrt)
        self.static_argnums = frozenset(static_argnums)
        self.backend_name = backend
        self.backend = backends.get(backend)
        self.optimize_tape = optimize_tape
        self.cache: dict[Any, list[Entry]] = {}
        self.traces = 0
        self.last: Entry | None = None

    def split(self, args: Sequence[Any]) -> tuple[Any, list[Any]]:
        key, dynamic = [], []
        for i, arg in enumerate(args):
            if i in self.static_argnums:
                key.append(("static", _static_key(arg)))
                continue
            leaves, tree = pytree.flatten(arg)
            parts = []
            for leaf in leaves:
                if _is_dynamic(leaf):
                    dynamic.append(leaf)
                    parts.append(_leaf_key(leaf))
                else:
                    parts.append(_static_key(leaf))
            key.append((tree, tuple(parts)))
        return tuple(key), dynamic

    def __call__(self, *args: Any) -> Any:
        key, dynamic = self.split(args)
        entries = self.cache.get(key)
        if entries:
            for entry in entries:
                outs = entry.exe.run(dynamic)
                if outs is not None:
                    return self.finish(entry, dynamic, outs)
            if key in self.gave_up:
                return self.eager(*args)
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        entry = self.trace(args)
        if entries:
            reason = _first_difference(entry, entries)
            if len(entries) >= self.max_traces:
                self.gave_up.add(key)
                warnings.warn(f"fastad: {name} was traced {len(entries) + 1} times for one "
                              f"signature because {reason}; it is evaluated eagerly from now on "
                              "for these argument shapes. Branch-free code (fastad.numpy.where, "
                              "clip, maximum) compiles once.", stacklevel=user_stacklevel())
                return self.eager(*args)
            log.info("fastad: retracing %s: %s", name, reason)
        elif self.cache:
            log.info("fastad: tracing %s again: new argument signature (structure, shapes, "
                     "dtypes or static values) %s", name, _describe(key))
        self.cache.setdefault(key, []).append(entry)
        outs = entry.exe.run(dynamic)
        if outs is None:
            raise RuntimeError("a freshly traced function failed its own guards; the function "
                               "is not deterministic")
        return self.finish(entry, dynamic, outs)

    def finish(self, entry: Entry, dynamic: list[Any], outs: list[Any]) -> Any:
        if self.check_nans and not all(np.all(np.isfinite(v)) for v in outs):
            # The compiled code runs at full speed; only a non-finite result pays
            # for a checked replay that finds the instruction which made it.
            culprit = reference.first_nonfinite(entry.tape, dynamic)
            if culprit is not None:
                raise FloatingPointError(f"fastad check_nans: {culprit}")
        return entry.unpack([_scalar(v) for v in outs])

    def trace(self, args: Sequence[Any]) -> Entry:
        self.traces += 1
        with recording() as builder:
            new_args = list(args)
            inputs: list[Tracer] = []
            wrt: list[Tracer] = []
            in_trees: list[Any] = []
            for i, arg in enumerate(args):
                if i in self.static_argnums:
                    continue
                leaves, tree = pytree.flatten(arg)
                traced = []
                differentiated = self.wrt is not None and i in self.wrt
                for leaf in leaves:
                    if differentiated:
                        check_leaf(leaf, f"argument {i}")
                    if _is_dynamic(leaf):
                        t = builder.new_input(check_leaf(leaf, f"argument {i}"))
                        inputs.append(t)
                        traced.append(t)
                        if differentiated:
                            wrt.append(t)
                    else:
                        traced.append(leaf)
                new_args[i] = pytree.unflatten(tree, traced)
                if self.wrt is not None and i in self.wrt:
                    in_trees.append(tree)
            out = self.fn(*new_args)
            out_leaves, out_tree = pytree.flatten(out)
            rec = Recorded(builder, wrt, in_trees, list(wrt), out_leaves, out_tree)
            results = self.outputs(rec)
            builder.tape.outputs = [builder.slot_of(r) for r in results]
        if builder.captures:
            raise TypeError("a compiled function closed over a value traced by an enclosing "
                            "transformation; pass it as an argument instead")
        tape = builder.tape
        if self.optimize_tape:
            tape = optimize(tape)
        entry = Entry(self.backend.build(tape), tape, functools.partial(self.unpack, rec))
        self.last = entry
        return entry

    def cache_info(self) -> dict[str, Any]:
        """How many traces happened, and each cached trace with its guards."""
        return {"traces": self.traces, "signatures": len(self.cache),
                "entries": [{"signature": _describe(key), "guards": e.guards}
                            for key, entries in self.cache.items() for e in entries],
                "eager": [_describe(key) for key in self.gave_up]}


def _describe(key: Any) -> str:
    return repr(key) if len(repr(key)) < 200 else repr(key)[:197] + "..."


def _all_outputs(rec: Recorded) -> list[Any]:
    return list(rec.out_leaves)


def _unpack_outputs(rec: Recorded, values: list[Any]) -> Any:
    return pytree.unflatten(rec.out_tree, values)


class Jitted:
    """``fastad.jit(f)``: f compiled per signature; any f, transformations included."""

    def __init__(self, fn: Callable[..., Any], static_argnums: Sequence[int] = (),
                 backend: str = "auto", max_traces: int | None = None,
                 check_nans: bool | None = None) -> None:
        functools.update_wrapper(self, fn)
        self._spec = Specializer(fn, _all_outputs, _unpack_outputs, None, static_argnums, backend,
                                 eager=fn, max_traces=max_traces, check_nans=check_nans)
        self._batched: dict[Any, Jitted] = {}

    def __call__(self, *args: Any) -> Any:
        return self._spec(*args)

    @property
    def tape(self) -> Tape:
        return _last(self._spec).tape

    @property
    def program(self) -> Any:
        return _last(self._spec).exe

    def cache_info(self) -> dict[str, Any]:
        return self._spec.cache_info()

    def batch(self, *args: Any, in_axes: Any = 0) -> Any:
        """The compiled ``vmap(f, in_axes)``: f over a batch of examples at once."""
        key = _axes_key(in_axes)
        if key not in self._batched:
            spec = self._spec
            self._batched[key] = Jitted(vmap(spec.fn, in_axes), tuple(spec.static_argnums),
                                        spec.backend_name, spec.max_traces)
        return self._batched[key](*args)


def _axes_key(in_axes: Any) -> Any:
    return tuple(in_axes) if isinstance(in_axes, list) else in_axes


def _with_vector_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Jitted functions take positional arrays only; hvp's vector comes last."""
    return functools.wraps(fn)(lambda *args: fn(*args))


def _last(spec: Specializer) -> Entry:
    if spec.last is None:
        raise RuntimeError("the function has not been called yet, so nothing is compiled")
    return spec.last


class CompiledGrad:
    """``fastad.compile(f)``: the gradient of scalar ``f``, compiled.

    ``g(x)`` is the gradient, ``g.value_and_grad(x)`` the pair (what
    ``scipy.optimize.minimize(..., jac=True)`` wants), ``g.value(x)`` the value.
    """

    def __init__(self, fn: Callable[..., Any], argnums: int | Sequence[int] = 0,
                 static_argnums: Sequence[int] = (), backend: str = "auto",
                 max_traces: int | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.argnums = argnums
        wrt = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        if any(i in static_argnums for i in wrt):
            raise ValueError("an argument cannot be both differentiated and static")
        self._static = tuple(static_argnums)
        self._backend = backend

        def value_and_grads(rec: Recorded) -> list[Any]:
            return gradient_of_scalar(rec, "fastad.compile")

        def unpack(rec: Recorded, values: list[Any]) -> tuple[Any, Any]:
            value = values[0]
            leaves, trees, k = values[1:], [], 0
            for tree in rec.in_trees:
                n = pytree.num_leaves(tree)
                trees.append(pytree.unflatten(tree, leaves[k:k + n]))
                k += n
            grads = trees[0] if isinstance(argnums, int) else tuple(trees)
            return value, grads

        self._max_traces = max_traces
        self._vg = Specializer(fn, value_and_grads, unpack, wrt, static_argnums, backend,
                               eager=value_and_grad(fn, argnums), max_traces=max_traces)
        self._value: Specializer | None = None
        self._hvp: Jitted | None = None
        self._hessian: Jitted | None = None
        self._batched: dict[Any, Jitted] = {}

    def __call__(self, *args: Any) -> Any:
        return self._vg(*args)[1]

    def value_and_grad(self, *args: Any) -> tuple[Any, Any]:
        return self._vg(*args)

    def value(self, *args: Any) -> Any:
        if self._value is None:
            def value_only(rec: Recorded) -> list[Any]:
                return [rec.out_leaves[0]] if len(rec.out_leaves) == 1 else list(rec.out_leaves)
            self._value = Specializer(self.fn, value_only, lambda rec, v: v[0], None,
                                      self._static, self._backend, eager=self.fn,
                                      max_traces=self._max_traces)
        return self._value(*args)

    def hvp(self, *args: Any) -> Any:
        """``g.hvp(*args, v)``: Hessian-vector product, forward over reverse,
        without forming the Hessian."""
        if self._hvp is None:
            self._hvp = self._derived(_with_vector_last(hvp(self.fn, self._argnum("hvp"))))
        return self._hvp(*args)

    def hessian(self, *args: Any) -> Any:
        """The Hessian at ``args``, forward over reverse, compiled."""
        if self._hessian is None:
            self._hessian = self._derived(hessian(self.fn, self._argnum("hessian")))
        return self._hessian(*args)

    def batch(self, *args: Any, in_axes: Any = 0) -> Any:
        """Per-example gradients: the compiled ``vmap(grad(f), in_axes)``."""
        key = _axes_key(in_axes)
        if key not in self._batched:
            self._batched[key] = self._derived(vmap(grad(self.fn, self.argnums), in_axes))
        return self._batched[key](*args)

    def _argnum(self, what: str) -> int:
        if not isinstance(self.argnums, int):
            raise NotImplementedError(f"{what} is defined for a single argnums")
        return self.argnums

    def _derived(self, fn: Callable[..., Any]) -> "Jitted":
        return Jitted(fn, self._static, self._backend, self._max_traces)

    @property
    def tape(self) -> Tape:
        return _last(self._vg).tape

    @property
    def program(self) -> Any:
        return _last(self._vg).exe

    def cache_info(self) -> dict[str, Any]:
        return self._vg.cache_info()


def jit(fn: Callable[..., Any] | None = None, *, static_argnums: Sequence[int] = (),
        backend: str = "auto", max_traces: int | None = None,
        check_nans: bool | None = None) -> Any:
    """Compile ``fn`` (any function of float arrays, ``grad(f)`` included).

    ``max_traces``: how many traces (paths through data-dependent branches)
    one signature may accumulate before fastad warns and evaluates eagerly.
    ``check_nans`` (or the environment variable FASTAD_CHECK_NANS=1): raise
    FloatingPointError naming the primitive, source line and operands of the
    first instruction that turned finite values into NaN or inf, whenever a
    result is not finite.
    """
    if fn is None:
        return lambda f: Jitted(f, static_argnums, backend, max_traces, check_nans)
    return Jitted(fn, static_argnums, backend, max_traces, check_nans)


def compile(fn: Callable[..., Any], argnums: int | Sequence[int] = 0,  # noqa: A001
            static_argnums: Sequence[int] = (), backend: str = "auto",
            max_traces: int | None = None) -> CompiledGrad:
    """The compiled gradient of scalar-valued ``fn`` with respect to ``args[argnums]``."""
    return CompiledGrad(fn, argnums, static_argnums, backend, max_traces)


