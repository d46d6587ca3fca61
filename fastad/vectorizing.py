"""``vmap``: a function of one example run on a batch as one batched tape
(`transforms.batching.batch_replay` of the example's trace), with JAX's
conventions for ``in_axes``, keyword arguments, ``axis_size`` and
``out_axes``.  A `while_loop` whose examples take different numbers of steps
stays one batched loop (`loop_rules.while_batch`; its derivative loops by a
second recording with the loop padded, `loops.Padding`); when the examples
take different Python branches (an ``if`` on a batched value), the loop it
stands for (`_per_example`)."""
from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from typing import Any, Callable

import numpy as np

from .recorded import _owned, check_leaf, record
from .numpy._array_type import arrays_out
from .core import pytree
from .core.errors import TracingError
from .core.int_data import BoolArrayTracer, IntArrayTracer, IntTracer, integer_like
from .core.tracer import Tracer, user_stacklevel
from .core.weak_float import WeakFloatTracer
from .loops import Padding, padded_recording
from .primitives.collectives import binding_axis, replaying_axis


class _Recording(threading.local):
    depth = 0  # > 0 while vmap records its function on one example


_recording = _Recording()


@contextlib.contextmanager
def _recording_example() -> Any:
    """While vmap records its function on one example.  (A function of the
    module, so that a vmapped function that cloudpickle copies by value
    refers to it by name instead of copying the thread-local state.)"""
    _recording.depth += 1
    try:
        yield
    finally:
        _recording.depth -= 1


def in_vmap_trace() -> bool:
    """Whether what runs now is recorded for an enclosing vmap (which batches
    it again: `loop_rules.while_batch` then keeps a while loop a while loop)."""
    return _recording.depth > 0


def vmap(f: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0,
         axis_size: int | None = None, axis_name: Any = None,
         spmd_axis_name: Any = None) -> Callable[..., Any]:
    """Vectorize ``f`` over an axis of its arguments, as one batched tape.

    ``in_axes``: an int or None for all arguments, or one per positional
    argument (None: not batched, shared by every example), each a pytree
    prefix of its argument.  Keyword arguments are batched along axis 0, as
    in JAX.  Results are stacked along ``out_axes`` (an int, None for a
    result every example shares, or a pytree prefix of the result);
    ``axis_size`` gives the batch size when no argument is batched.
    Composes with grad, jit and compile: ``vmap(grad(loss), in_axes=(None,
    0, 0))`` gives per-example gradients.  ``axis_name`` names the batch
    axis for the collectives of `fastad.lax` (``lax.psum(x, axis_name)``,
    pmean, all_gather, axis_index, ...; `primitives.collectives`), as in
    JAX; ``spmd_axis_name`` (a sharding of the batch across devices) has no
    effect on one device.
    """
    from . import numpy as fnp
    from .transforms.batching import BranchesDiffer, CountedDiffer, batch_replay

    # (f's name and docstring, not its attributes: a compiled function's
    # caches would travel with a pickle of this one)
    @functools.wraps(f, updated=())
    def vmapped(*args: Any, **kwargs: Any) -> Any:
        if kwargs:  # batched along axis 0: one more positional argument, a dict
            positional = len(args)
            return vmap(lambda *a: f(*a[:positional], **a[positional]),
                        (tuple(in_axes) if isinstance(in_axes, (tuple, list))
                         else (in_axes,) * positional) + (0,),
                        out_axes, axis_size)(*args, kwargs)
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(axes)} entries for {len(args)} arguments")
        leaves, batched, examples, size = [], [], [], None
        trees, kinds = [], {}  # kinds: flat leaf position -> how f sees an integer or bool leaf
        for i, (arg, ax_tree) in enumerate(zip(args, axes)):
            arg_leaves, tree = pytree.flatten(arg)
            trees.append(tree)
            for leaf, ax in zip(arg_leaves, _leaf_axes(arg, ax_tree, i)):
                leaf, kinds[len(leaves)] = _data_leaf(leaf, i)
                leaf = check_leaf(leaf, f"vmap argument {i}")
                if ax is None:
                    leaves.append(leaf)
                    batched.append(False)
                    examples.append(leaf)
                    continue
                shape = np.shape(leaf.value if isinstance(leaf, Tracer) else leaf)
                if not -len(shape) <= ax < len(shape):
                    raise ValueError(f"vmap: in_axes={ax} for argument {i} of shape {shape}")
                n = shape[ax]
                if size is not None and n != size:
                    raise ValueError(f"vmap: batch sizes differ: {size} and {n} (argument {i})")
                size = n
                leaf = fnp.moveaxis(leaf, ax, 0)
                leaves.append(leaf)
                batched.append(True)
                value = leaf.value if isinstance(leaf, Tracer) else leaf
                examples.append(np.asarray(value)[0] if n else np.zeros(shape[:ax] + shape[ax + 1:]))
        if axis_size is not None and size is not None and axis_size != size:
            raise ValueError(f"vmap: axis_size={axis_size} but the batch size is {size}")
        size = axis_size if size is None else size
        if size is None:
            raise ValueError("vmap: no argument is batched (all in_axes are None); "
                             "pass axis_size")
        recorded = f
        if axis_name is not None:  # one more input: the example's index, for axis_index
            kinds[len(leaves)] = ("int", frozenset(), np.dtype(np.int32))
            leaves.append(np.arange(size, dtype=np.float64))
            batched.append(True)
            examples.append(np.float64(0.0))
            trees.append(pytree.LEAF)
            recorded = _naming(f, axis_name, size)
        example_args, k = [], 0
        for tree in trees:
            n = pytree.num_leaves(tree)
            example_args.append(pytree.unflatten(tree, examples[k:k + n]))
            k += n
        lengths: dict[int, int] = {}
        failure: Exception | None = None
        for _ in range(_MAX_RECORDINGS):
            pad = Padding(lengths)
            with _recording_example(), padded_recording(pad):
                rec, _ = record(_seeing_data(recorded, trees, kinds), example_args,
                                tuple(range(len(trees))))
            tape = rec.builder.tape
            tape.outputs = [rec.builder.slot_of(v) for v in rec.out_leaves]
            inputs = list(zip(leaves, batched)) + [(c, False) for c in rec.builder.captures]
            try:
                with padded_recording(pad, replaying=True), replaying_axis(axis_name):
                    replayed = batch_replay(tape, inputs, size)
                failure = None
                break
            except CountedDiffer as exc:
                # a while loop's derivative ran the first example's count: pad that loop
                more = {k: n for k, n in pad.found.items() if k not in lengths}
                failure = exc
                if not more:
                    break
                lengths.update(more)
            except BranchesDiffer as exc:
                failure = exc
                break
        else:
            failure = TracingError("vmap: while loops still differ after padding")
        if failure is not None and axis_name is not None:
            raise TracingError(f"{failure}; and vmap(axis_name={axis_name!r}) cannot evaluate "
                               "one example at a time, since its collectives need them all")
        if failure is not None:
            warnings.warn(f"{failure}: evaluated one example at a time",
                          stacklevel=user_stacklevel())
            return _per_example(f, trees, leaves, batched, size, out_axes, kinds)
        outs = []
        replayed = [(_as_integers(traced, value), is_batched)
                    for traced, (value, is_batched) in zip(rec.out_leaves, replayed)]
        shape_of_result = pytree.unflatten(rec.out_tree, [v for v, _ in replayed])
        for (value, is_batched), ax in zip(replayed, _leaf_axes(shape_of_result, out_axes,
                                                                "out_axes")):
            if ax is None:
                if is_batched:
                    raise ValueError("vmap: out_axes=None for a result that depends on the "
                                     "batched arguments")
                outs.append(_owned(value))
                continue
            if not is_batched:
                value = fnp.broadcast_to(value, (size,) + tuple(fnp.shape(value)))
            # (an out axis past a result's rank wraps around: out_axes=1 of
            # per-example scalars is the batch axis, as before)
            ax = ax % fnp.ndim(value) if ax else ax
            outs.append(_owned(fnp.moveaxis(value, 0, ax) if ax else value))
        return pytree.unflatten(rec.out_tree, outs)
    return arrays_out(vmapped)


_MAX_RECORDINGS = 8  # records of one call, each padding more while loops, before the fallback


def _naming(f: Callable[..., Any], axis_name: Any, size: int) -> Callable[..., Any]:
    """``f`` recorded with its vmapped axis named: its last argument, the
    example's traced index, is what `lax.axis_index` returns."""
    def named(*args: Any) -> Any:
        with binding_axis(axis_name, size, args[-1]):
            return f(*args[:-1])
    return named


def _data_leaf(leaf: Any, i: int) -> tuple[Any, Any]:
    """(the leaf as the batched tape takes it, how ``f`` sees it): integer
    and boolean arrays (labels, masks) are data, batched as float64 (exact
    integers) and handed to ``f`` as integers or a mask again; None for a
    float leaf."""
    if isinstance(leaf, (IntTracer, IntArrayTracer)):
        return leaf, ("int", leaf.sources, leaf.data_dtype)
    if isinstance(leaf, BoolArrayTracer):
        return leaf.astype(np.float64), ("bool",)
    if type(leaf) is float or type(leaf) is WeakFloatTracer:
        return leaf, ("weak",)  # a Python float: weak in f, as eagerly (`core.weak_float`)
    if isinstance(leaf, Tracer) or isinstance(leaf, (float, complex)):
        return leaf, None
    kind = np.asarray(leaf).dtype.kind
    if kind == "b":
        return np.asarray(leaf, dtype=np.float64), ("bool",)
    if kind in "iu":
        values = np.asarray(leaf)
        if values.size and np.max(np.abs(values.astype(np.float64))) >= 2.0 ** 53:
            raise ValueError(f"vmap argument {i}: integers of magnitude 2**53 or more are not "
                             "exact in float64")
        return values.astype(np.float64), ("int", frozenset(),
                                           int if isinstance(leaf, int) else values.dtype)
    return leaf, None


def _as_given(leaf: Any, kind: Any) -> Any:
    """A plain leaf `_data_leaf` made float64 as the integers or mask it was."""
    if kind is None or isinstance(leaf, Tracer):
        return leaf
    if kind[0] == "weak":
        return float(leaf)
    if kind[0] == "bool":
        return np.asarray(leaf) != 0.0
    return int(leaf) if kind[2] is int else np.asarray(leaf).astype(kind[2])[()]


def _seeing_data(f: Callable[..., Any], trees: list[Any], kinds: dict[int, Any]
                 ) -> Callable[..., Any]:
    """``f`` handed its integer and boolean leaves as integers and masks."""
    if not any(kinds.values()):
        return f

    def seeing(*args: Any) -> Any:
        leaves = [leaf for arg in args for leaf in pytree.flatten(arg)[0]]
        for k, kind in kinds.items():
            if kind is not None and kind[0] == "int":
                leaves[k] = integer_like(leaves[k], kind[1], kind[2])
            elif kind is not None and kind[0] == "weak":
                t = leaves[k]
                if isinstance(t, Tracer):
                    leaves[k] = WeakFloatTracer(t.builder, t.slot, t.value)
            elif kind is not None:
                leaves[k] = leaves[k] != 0.0
        new_args, at = [], 0
        for tree in trees:
            n = pytree.num_leaves(tree)
            new_args.append(pytree.unflatten(tree, leaves[at:at + n]))
            at += n
        return f(*new_args)
    return seeing


def _as_integers(traced: Any, value: Any) -> Any:
    """A batched result as the integers its example's result was (an
    ``argmax``, labels + 1: integers held in float64 by the batched tape),
    of the dtype NumPy gives them."""
    if not isinstance(traced, (IntTracer, IntArrayTracer)):
        return value
    if isinstance(value, Tracer):  # under an enclosing trace: integers there too
        return integer_like(value, traced.sources, traced.data_dtype)
    return np.asarray(value).astype(np.int64 if traced.data_dtype is int else traced.data_dtype)


def _leaf_axes(arg: Any, axes: Any, i: int | str) -> list[Any]:
    """The in_axes of each leaf of ``arg``: ``axes`` is an int or None for all
    of them, or a pytree prefix of ``arg`` (JAX's convention: ``{"w": 0, "b":
    None}`` for a dict argument)."""
    if axes is None or isinstance(axes, int):
        return [axes] * len(pytree.flatten(arg)[0])
    if isinstance(axes, dict) and isinstance(arg, dict) and set(axes) == set(arg):
        return [a for k in sorted(arg) for a in _leaf_axes(arg[k], axes[k], i)]
    if (isinstance(axes, (tuple, list)) and isinstance(arg, (tuple, list))
            and len(axes) == len(arg)):
        return [a for sub, ax in zip(arg, axes) for a in _leaf_axes(sub, ax, i)]
    what = "out_axes" if i == "out_axes" else f"in_axes {axes!r} for argument {i}"
    raise ValueError(f"vmap: {what} is neither an int, None nor a prefix of its structure")


def _per_example(f: Callable[..., Any], trees: list[Any], leaves: list[Any],
                 batched: list[bool], size: int, out_axes: Any, kinds: dict[int, Any]) -> Any:
    """vmap as the loop it stands for: ``f`` on each example (the batched
    leaves, moved to axis 0, indexed; integers and masks as they were given),
    the results stacked.  What vmap does when the examples take different
    Python branches (an ``if`` on a batched value, an index), which no one
    batched tape computes."""
    from . import numpy as fnp
    results, tree = [], None
    for k in range(size):
        example = [_as_given(leaf[k] if b else leaf, kinds.get(i))
                   for i, (leaf, b) in enumerate(zip(leaves, batched))]
        args, at = [], 0
        for t in trees:
            n = pytree.num_leaves(t)
            args.append(pytree.unflatten(t, example[at:at + n]))
            at += n
        out_leaves, out_tree = pytree.flatten(f(*args))
        if tree is not None and out_tree != tree:
            raise TracingError("vmap: the examples' results have different structures")
        tree = out_tree
        results.append(out_leaves)
    axes = _leaf_axes(pytree.unflatten(tree, results[0]), out_axes, "out_axes")
    try:  # (a result every example shares: the first example's, out_axes None)
        stacked = [_owned(parts[0] if ax is None else fnp.stack(parts, axis=ax))
                   for parts, ax in zip(zip(*results), axes)]
    except ValueError as exc:
        raise TracingError(f"vmap: the examples' results have different shapes ({exc})") from None
    return pytree.unflatten(tree, stacked)
