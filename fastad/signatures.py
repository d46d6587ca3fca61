"""Signatures of compiled functions: what in a call's arguments is data (the
tape's inputs) and what is keyed by value, the cache entry a trace becomes,
the kinds of computation (gradient, value, outputs) a trace records, and the
checks a saved function's signatures and structures pass when loaded.

A *signature* is the pytree structure of the arguments, the shape and dtype
of every float leaf, the shape and dtype of every integer and boolean taken
as data (`int_data_key`, `array_data_key`), and the value of everything else
(strings, integers a trace used by value, ``static_argnums``/
``static_argnames``).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from . import locks
from .core import pytree
from .api import gradient_of_scalar, plain_array, unpack_grads
from .core.arrays import is_foreign_array
from .recorded import Recorded
from .core.errors import TapeError, TracingError
from .core.watched import WatchedArray
from .core.registry import registry
from .core.tape import Tape, where
from .core.tracer import Tracer
from .core.weak_float import WeakFloatTracer

if TYPE_CHECKING:
    from .specializer import Specializer



def is_dynamic(leaf: Any) -> bool:
    if isinstance(leaf, np.ndarray):
        return leaf.dtype.kind in "fc"
    return isinstance(leaf, (float, complex, np.floating, np.complexfloating, Tracer))


def as_differentiable(leaf: Any) -> Any:
    """An integer the caller differentiates with respect to is the float it
    stands for (as in ``fastad.grad``), not a constant of the signature."""
    if isinstance(leaf, (int, np.integer)) and not isinstance(leaf, (bool, np.bool_)):
        return np.float64(leaf)
    return leaf


def static_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        leaf = plain_array(leaf, "a constant argument")
        return ("array", leaf.dtype.str, leaf.shape, leaf.tobytes())
    try:
        hash(leaf)
    except (TypeError, ValueError):  # (a writable memoryview's is a ValueError)
        raise TypeError(f"a non-float argument of type {type(leaf).__name__} is compiled in as a "
                        "constant and must be hashable; pass it through a closure instead") from None
    return ("value", type(leaf), leaf)


class ForeignArrays(Exception):
    """An argument holds another library's array (`core.arrays.is_foreign_array`):
    the caller reads the arguments as NumPy arrays and splits them again."""


class ClosedOverTracer(TracingError):
    """The function being compiled closed over a value traced by an enclosing
    transformation: its trace would depend on that trace.  The call runs the
    function instead (`Specializer.general`)."""


class TracedArguments(Exception):
    """An argument leaf is a traced value: the call is inlined (`Specializer.inline`)."""


def static_names(fn: Callable[..., Any] | None, static_argnums: Sequence[int],
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


def any_tracer(tree: Any) -> bool:
    return any(isinstance(leaf, Tracer) for leaf in pytree.flatten(tree)[0])


def int_data_key(data_dtype: Any) -> tuple[Any, ...]:
    """An integer taken as data's part of a signature: a 0-d input marked by
    its dtype's character ("int" for a Python int), which the results'
    dtypes and the wrapping of narrow integers depend on."""
    return ((), "int" if data_dtype is int else np.dtype(data_dtype).char)


#: the dtype marks of integer leaves taken as data (their dtype's character,
#: "int" for a Python int; the tape holds them in float64)
INT_CHARS = frozenset(np.typecodes["AllInteger"]) | {"int"}
#: and of boolean ones
DATA_CHARS = INT_CHARS | {"?"}

#: integers past this magnitude are not exact in a float64 input
EXACT_INTEGERS = 2**53


def plain_views(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with JAX-style arrays (`fastad.numpy._array_type.Array`, an
    ndarray that only adds methods) as the plain ndarrays the compiled
    programs' exact argument checks take."""
    from .numpy._array_type import Array
    return tuple(a.view(np.ndarray) if type(a) is Array else a for a in args)


def array_data(leaf: Any) -> np.ndarray | None:
    """An integer or boolean array argument as the tape's input holds it:
    integers as float64 (the VM's registers are floating point; integers
    below 2**53 are exact there), booleans as they are.  None when it cannot
    be data: not such an array, or integers too large to be exact (keyed by
    value instead)."""
    if type(leaf) is not np.ndarray:
        return None
    kind = leaf.dtype.kind
    if kind == "b":
        return leaf
    if kind not in "iu":
        return None
    if leaf.dtype.itemsize == 8 and leaf.size and (
            leaf.max() >= EXACT_INTEGERS or leaf.min() <= -EXACT_INTEGERS):
        return None
    return leaf.astype(np.float64)


def array_data_key(leaf: np.ndarray) -> tuple[Any, ...]:
    """An integer or boolean array's part of a signature: its shape and kind,
    and an integer array's dtype (int8 and int64 labels give results of
    their own dtypes, and int8 arithmetic wraps)."""
    return (leaf.shape, leaf.dtype.char)


def with_data(key: Any, run_args: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    """``run_args`` for a signature with integer or boolean array arguments
    taken as data: converts them as `array_data` does (declining, None, for
    an argument that is not such an array of the signature's shape)."""
    data = [(i, arg[1][0]) for i, arg in enumerate(key) if arg[1][0][1] in DATA_CHARS]
    if not data:
        return run_args

    def run(args: tuple[Any, ...], which: int) -> Any:
        if len(args) != len(key):
            return None
        args = list(args)
        for i, (shape, char) in data:
            a = args[i]
            if type(a) is not np.ndarray or a.shape != shape or a.dtype.char != char:
                return None
            a = array_data(a)
            if a is None:
                return None
            args[i] = a
        return run_args(tuple(args), which)
    return run


def split_call(spec: "Specializer", args: Sequence[Any], kwargs: dict[str, Any] | None = None,
               traced: bool = False) -> tuple[Any, list[Any]]:
    """The signature of a call and its dynamic leaves (the tape's inputs, in
    order: positional arguments, then keyword arguments by sorted name).
    A keyword argument's entry in the signature names it last.  Raises
    `TracedArguments` if any leaf is a traced value, unless ``traced``
    (then a traced leaf is dynamic, keyed by its shape and dtype); a
    traced static argument raises it either way."""
    key: list[Any] = []
    dynamic: list[Any] = []
    for i, arg in enumerate(args):
        if i in spec.static_argnums:
            if isinstance(arg, Tracer):
                raise TracedArguments
            key.append(("static", static_key(arg)))
            continue
        differentiated = spec.wrt is not None and i in spec.wrt
        key.append(_split_leaves(spec, arg, differentiated, i, dynamic, traced))
    if kwargs:
        for name in sorted(kwargs):
            value = kwargs[name]
            if name in spec.static_argnames:
                if isinstance(value, Tracer):
                    raise TracedArguments
                key.append(("static", static_key(value), name))
                continue
            key.append(_split_leaves(spec, value, False, name, dynamic, traced) + (name,))
    return tuple(key), dynamic


def int_data(spec: "Specializer", leaf: Any, where: int | str) -> bool:
    """Is ``leaf`` an integer this function takes as data (`IntTracer`)?
    Integers past 2**53 are not exact in the float64 input: keyed by value."""
    return (isinstance(leaf, (int, np.integer)) and not isinstance(leaf, (bool, np.bool_))
            and where not in spec.int_static and -2**53 < leaf < 2**53)


def array_data_of(spec: "Specializer", leaf: Any, where: int | str) -> np.ndarray | None:
    """An integer or boolean array this function takes as data, as the
    tape's input holds it (integers as float64, booleans as they are), or
    None: keyed by value (`array_data`)."""
    if where in spec.int_static:
        return None
    return array_data(leaf)


def _split_leaves(spec: "Specializer", arg: Any, differentiated: bool, where: int | str,
                  dynamic: list[Any], traced: bool = False) -> tuple[Any, tuple[Any, ...]]:
    """The signature of one argument (positional ``where``, or keyword
    ``where``), its dynamic leaves appended to ``dynamic``."""
    leaves, tree = pytree.flatten(arg)
    parts = []
    for leaf in leaves:
        if isinstance(leaf, Tracer):
            if not traced:
                raise TracedArguments
            part = traced_data_key(spec, leaf, where, differentiated)
            if part is None and leaf.aval.dtype.kind not in "fc":
                # a traced integer of its own dtype, or integers this function
                # keys by value: no signature (the function runs on them)
                raise TracedArguments
            dynamic.append(leaf)
            parts.append(part or (tuple(leaf.aval.shape), leaf.aval.dtype.char))
            continue
        if type(leaf) is WatchedArray and traced:
            # a captured array of an enclosing trace (`fastad.core.watched`): a
            # call on traced values replays this tape on it, read by reference
            # (on plain values, `plain_array` reads its values)
            leaf = leaf.array
        if isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray:
            leaf = plain_array(leaf, f"argument {where}" if isinstance(where, int)
                               else f"keyword argument {where!r}")
        if differentiated:
            leaf = as_differentiable(leaf)
        elif int_data(spec, leaf, where):
            dynamic.append(np.float64(leaf))
            parts.append(int_data_key(int if type(leaf) is int else np.asarray(leaf).dtype))
            continue
        else:
            data = array_data_of(spec, leaf, where)
            if data is not None:
                dynamic.append(data)
                parts.append(array_data_key(leaf))
                continue
        if is_dynamic(leaf):
            if isinstance(leaf, np.ndarray) and not leaf.dtype.isnative:
                # native order here: no backend ever reads swapped bytes
                leaf = leaf.astype(leaf.dtype.newbyteorder("="))
            dynamic.append(leaf)
            parts.append(PYTHON_FLOAT if type(leaf) is float and not differentiated
                         else leaf_key(leaf))
        else:
            if is_foreign_array(leaf):
                raise ForeignArrays
            parts.append(static_key(leaf))
    return tree, tuple(parts)


def traced_data_key(spec: "Specializer", leaf: Tracer, where: int | str,
                    differentiated: bool) -> Any:
    """The signature part of a traced leaf that is integer or boolean data
    (integers taken as data by an enclosing trace or vmap, an argmax, a traced
    mask): the part the same integers or booleans given as arrays have
    (`int_data_key`, `array_data_key`), so that the trace is the one of such a
    call and sees them as integers (`concrete_leaf`); None for a float leaf.
    Raises `TracedArguments` for integers this function keys by value."""
    from .core.int_data import INTEGER_DATA
    if type(leaf) is WeakFloatTracer and not differentiated:
        return PYTHON_FLOAT
    if isinstance(leaf, INTEGER_DATA) and not differentiated:
        if where in spec.int_static:
            raise TracedArguments
        from .core.int_data import storage_dtype
        return (int_data_key(leaf.data_dtype) if not leaf.ndim else
                (tuple(leaf.aval.shape), storage_dtype(leaf.data_dtype).char))
    if leaf.aval.dtype.kind == "b":
        if where in spec.int_static:
            raise TracedArguments
        return (tuple(leaf.aval.shape), "?")
    return None


def concrete_leaf(leaf: Any, differentiated: bool) -> Any:
    """A traced leaf's value as the argument it stands for: integers taken as
    data as integers of their dtype, masks as booleans (the signature
    `traced_data_key` gives them), anything else as its value."""
    from .core.int_data import INTEGER_DATA, storage_dtype
    if not isinstance(leaf, Tracer):
        return leaf
    if type(leaf) is WeakFloatTracer and not differentiated:
        return float(leaf.value)  # a Python float again: weak
    if isinstance(leaf, INTEGER_DATA) and not differentiated:
        value = np.asarray(leaf.value)
        if not leaf.ndim:
            return (int(value) if leaf.data_dtype is int
                    else storage_dtype(leaf.data_dtype).type(value[()]))
        return value.astype(storage_dtype(leaf.data_dtype))
    if leaf.aval.dtype.kind == "b":
        return np.asarray(leaf.value, dtype=np.bool_)
    return leaf.value


def concrete_call(spec: "Specializer", args: Sequence[Any], kwargs: dict[str, Any]
                  ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with their traced leaves as `concrete_leaf`
    gives them: what a call on traced values is traced at."""
    def concrete(tree: Any, differentiated: bool) -> Any:
        leaves, structure = pytree.flatten(tree)
        return pytree.unflatten(structure, [concrete_leaf(v, differentiated) for v in leaves])
    return (tuple(concrete(a, spec.wrt is not None and i in spec.wrt)
                  for i, a in enumerate(args)),
            {k: concrete(v, False) for k, v in kwargs.items()})


def traced_casts(casts: tuple[tuple[int, str], ...], outs: list[Any],
                 inputs: Sequence[Any]) -> list[Any]:
    """`cast_results` for a trace's tape replayed on traced values: results
    computed from integers taken as data are integer data again (of the
    trace's dtype, the enclosing trace's arguments among their sources)."""
    from .core.int_data import DATA_TRACERS, integer_like
    if not casts:
        return outs
    sources = frozenset().union(*(v.sources for v in inputs if isinstance(v, DATA_TRACERS)))
    outs = list(outs)
    for i, code in casts:
        v = outs[i]
        if isinstance(v, Tracer):
            outs[i] = integer_like(v, sources, int if code == "int" else np.dtype(code))
        elif v is not None:
            outs[i] = cast_results(((i, code),), outs)[i]
    return outs


#: a Python float taken as data's part of a signature: weak, as NumPy
#: promotes it (`core.weak_float`), where a NumPy float64 is not
PYTHON_FLOAT = ((), "float")


def leaf_key(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, leaf.dtype.char)
    return ((), np.result_type(leaf).char)


def as_scalar(v: Any) -> Any:
    """0-d results as NumPy scalars, as NumPy's own reductions return them."""
    return v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v


class Structure(NamedTuple):
    """What turns a flat list of results back into the caller's pytrees."""

    out_tree: Any
    in_trees: tuple[Any, ...]
    # (result index, "int" or an integer dtype's str): results computed from
    # integers taken as data, held in float64, given back the integer type
    # the function returns eagerly
    casts: tuple[tuple[int, str], ...] = ()


def cast_results(casts: tuple[tuple[int, str], ...], outs: list[Any]) -> list[Any]:
    """``outs`` with `Structure.casts` applied."""
    if not casts:
        return outs
    outs = list(outs)
    for i, code in casts:
        v = outs[i]
        if v is not None:
            outs[i] = int(v) if code == "int" else as_scalar(np.asarray(v).astype(code))
    return outs


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
    # the closure and global bindings the trace read (`fastad.captures.Captures`),
    # None if none: then nothing is checked per call
    captures: Any = None
    # the bindings whose arrays are the tape's last inputs, in order
    by_reference: tuple[Any, ...] = ()

    def inputs(self, dynamic: list[Any]) -> list[Any]:
        """The tape's inputs for a call's dynamic leaves: the arrays read by
        reference appended, as their bindings hold them now."""
        if not self.by_reference:
            return dynamic
        return dynamic + [b.current() for b in self.by_reference]

    def bindings_hold(self) -> bool:
        return self.captures is None or self.captures.hold()

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


def first_difference(new: Entry, old: list[Entry]) -> str:
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


def signatures_bound(value: int | None) -> int:
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
    if len(rec.out_leaves) != 1:  # (its first leaf alone would pass for f's value)
        from .api import NotScalarOutput
        raise NotScalarOutput(f"fastad.compile(f).value: f returned a {len(rec.out_leaves)}-leaf "
                              "structure; compile takes f of one result (or of (value, aux) "
                              "with has_aux=True); fastad.jit(f) returns any structure")
    return list(rec.out_leaves)


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


def saved_max_signatures(value: Any) -> int | None:
    """A saved bound (None in payloads from before it existed: the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TapeError(f"invalid max_signatures {value!r} in a saved compiled function")
    return value


def checked_argnames(names: Any) -> tuple[str, ...]:
    if isinstance(names, tuple) and all(isinstance(n, str) for n in names):
        return names
    raise TapeError(f"invalid static_argnames {names!r} in a saved compiled function")


def checked_argnums(argnums: Any) -> Any:
    if argnums is None or isinstance(argnums, int):
        return argnums
    if isinstance(argnums, tuple) and all(isinstance(i, int) for i in argnums):
        return argnums
    raise TapeError(f"invalid argnums {argnums!r} in a saved compiled function")


def check_structure(spec: "Specializer", structure: Structure, tape: Tape) -> None:
    """A saved structure must unpack exactly the tape's outputs: its trees are
    well formed, and their leaves count the values the kind of computation
    returns (all outputs; the value; the value and one gradient per leaf of
    each differentiated argument)."""
    try:
        outputs = pytree.checked_num_leaves(structure.out_tree)
        if not isinstance(structure.in_trees, tuple):
            raise ValueError("the differentiated arguments' structures are not a tuple")
        gradients = sum(pytree.checked_num_leaves(t) for t in structure.in_trees)
        for i, code in structure.casts:
            if type(i) is not int or not 0 <= i < len(tape.outputs) or not (
                    code == "int" or np.dtype(code).kind in "iu"):
                raise ValueError(f"a result cast {(i, code)!r}")
    except (ValueError, TypeError) as exc:
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


def check_signature(key: Any, tape: Tape) -> None:
    """The float leaves a signature promises must be exactly the tape's inputs."""
    dynamic = [part for arg in key if arg[0] != "static" for part in arg[1]
               if part[0] not in ("array", "value")]
    declared = [(tuple(tape.avals[s].shape), tape.avals[s].dtype.char) for s in tape.inputs]
    if [(tuple(shape), "d" if char in INT_CHARS or char == "float" else char)
            for shape, char in dynamic] != declared:
        raise TapeError("a saved signature does not match the inputs of its tape")


def checked_int_static(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, (int, str)) for v in value):
        raise TapeError("a saved function's integer arguments kept by value are malformed")
    return value


def describe(key: Any) -> str:
    return repr(key) if len(repr(key)) < 200 else repr(key)[:197] + "..."

