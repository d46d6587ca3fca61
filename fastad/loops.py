"""Loops that stay loops: ``scan``, ``fori_loop`` and ``while_loop``, with JAX's signatures.

Each traces its body once, on the first step's values, into a sub-tape
(`primitives.loops.LoopBody`) and records one ``loop`` instruction, so a
recurrence of T steps is one instruction whatever T is, and its reverse mode
keeps O(sqrt(T)) carried states instead of T (`loop_rules`).  The carry's
structure, shapes and dtypes must be the same after a step as before it
(a TypeError otherwise, as JAX gives).

The step's integers (fori_loop's counter, scanned integer arrays, carried
integer data) are integer data: indexing by them is a gather, and the body
stays one sub-tape.  A body that branches in Python on a traced value (a
guard: ``if c > 0``, ``range(i)``) has no one sub-tape for every step; such a
loop runs as the Python loop it stands for, traced step by step, which is
always right and is what the function meant.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .core import pytree
from .core.registry import prims as P
from .core.tape import aval_of
from .core.errors import TracingError
from .core.tracer import Tracer, bind, recording, replay, value_of
from .primitives.loops import RUN_TIME, LoopBody, layout

__all__ = ["scan", "fori_loop", "while_loop"]

_NONE = pytree.flatten(None)[1]


def _leaf_value(x: Any) -> Any:
    """A carry or step leaf as the body's trace takes it: a NumPy value whose
    dtype is kept (a Python int stays an integer, as in JAX)."""
    value = x.value if isinstance(x, Tracer) else x
    return np.asarray(value) if not isinstance(value, np.ndarray) else value


def _is_guard_free(body: LoopBody) -> bool:
    from .core.registry import registry
    return not any(registry[i.prim].effect == "guard" for i in body.tape.instrs)


class _Counted(threading.local):
    depth = 0  # > 0 while a while loop's derivative is traced: its loops are `counted`
    bodies = 0  # > 0 while a loop's body is traced: a guard there unrolls that loop
    rules = 0  # > 0 while a loop's derivative is traced: its loops are not chunked


_counted = _Counted()


def in_loop_body() -> bool:
    """Whether what is recorded now is a loop's body (where a guard would make
    the loop run as the Python loop it stands for)."""
    return _counted.bodies > 0


def in_counted() -> bool:
    """Whether loops recorded now are `LoopBody.counted` (in `counted`)."""
    return _counted.depth > 0


@contextlib.contextmanager
def counted() -> Iterator[None]:
    """Loops traced in this block derive from a while loop and run its
    recorded trip count (`LoopBody.counted`)."""
    _counted.depth += 1
    try:
        yield
    finally:
        _counted.depth -= 1


@contextlib.contextmanager
def deriving() -> Iterator[None]:
    """Loops recorded in this block are a loop's derivative (`loop_rules`):
    they take the structure of the loop they derive from, and `recorded`
    does not cut them into chunks again."""
    _counted.rules += 1
    try:
        yield
    finally:
        _counted.rules -= 1


class _Unroll(Exception):
    """The body branched on a traced value: run the loop as Python instead."""


def _traced(trace: Callable[[], Any]) -> Any:
    """``trace()``, with any body that cannot be one sub-tape for every step
    (a guard, or a traced step number used where only a constant can go, as
    an index into a NumPy array) reported as `_Unroll`: the Python loop that
    runs instead either works or raises the error a plain loop would."""
    try:
        return trace()
    except TracingError:
        raise _Unroll from None


def _integers_as_data(x_leaves: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """The scanned leaves as the loop steps over them, and how its body sees
    each: integers (plain, or taken as data) as integer data held in float64,
    ``(sources, dtype)``, so that indexing by a step's integers (an
    observation, a label) is a gather and the loop stays a loop, where an
    integer-typed step would be a guard that unrolls it; None for the rest."""
    from .core.int_data import _IntegerData, stepped_interval
    leaves, kinds = [], []
    for x in x_leaves:
        if isinstance(x, _IntegerData):
            leaves.append(x)
            # (a loop's derivative steps over its stored states, a replay of its
            # body, which adds to them nothing a check would spare: the guard
            # would unroll an enclosing loop's derivative instead)
            kinds.append((x.sources, x.data_dtype,
                          x.interval if _counted.rules else stepped_interval(x)))
        elif (not isinstance(x, Tracer) and np.asarray(x).dtype.kind in "iu"
              and not np.any(np.abs(np.asarray(x, np.float64)) >= 2.0 ** 53)):
            leaves.append(np.asarray(x, np.float64))
            # (the steps' own bounds: a body's ``i + 1`` needs no check, which
            # as a guard would unroll the loop)
            kinds.append((frozenset(), np.asarray(x).dtype, stepped_interval(x)))
        else:
            leaves.append(x)
            kinds.append(None)
    return leaves, kinds


def trace_body(step: Callable[[Any, Any], tuple[Any, Any]], carry_leaves: Sequence[Any],
               carry_tree: Any, x_leaves: Sequence[Any], x_tree: Any, where: str,
               is_while: bool = False, x_kinds: Sequence[Any] = ()) -> tuple[LoopBody, list[Any], Any]:
    """The body's sub-tape, the outer values it closed over (the loop's last
    operands) and the structure of its per-step outputs; ``x_kinds``: the
    steps' integer data (`_integers_as_data`)."""
    from .core.int_data import _IntegerData, integer_like
    with recording() as builder:
        # (a carried index taken as data, or drawn by categorical, stays one)
        c_in = [integer_like(builder.new_input(_leaf_value(v)), v.sources, v.data_dtype)
                if isinstance(v, _IntegerData) else builder.new_input(_leaf_value(v))
                for v in carry_leaves]
        x_in = [builder.new_input(_leaf_value(v)) for v in x_leaves]
        x_in = [integer_like(v, *kind) if kind else v
                for v, kind in zip(x_in, list(x_kinds) + [None] * len(x_in))]
        _counted.bodies += 1
        try:
            result = step(pytree.unflatten(carry_tree, c_in), pytree.unflatten(x_tree, x_in))
        finally:
            _counted.bodies -= 1
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"{where}: the body must return a pair (new carry, per-step output)")
        new_carry, y = result
        new_leaves, new_tree = pytree.flatten(new_carry)
        if new_tree != carry_tree:
            raise TypeError(f"{where}: the body's carry output has structure {new_tree}, "
                            f"but its input has {carry_tree}; they must be the same")
        for k, (a, b) in enumerate(zip(new_leaves, c_in)):
            if isinstance(a, _IntegerData) and not isinstance(b, _IntegerData) \
                    and b.dtype.kind in "iu" and a.dtype.kind in "iu":
                # integers (an argmax) into a carry a plain integer started: of its dtype
                a = new_leaves[k] = bind(P.astype, a, dtype=np.dtype(b.dtype).str)
            got, want = aval_of(_leaf_value(a)), aval_of(_leaf_value(b))
            if isinstance(a, _IntegerData) and not isinstance(b, _IntegerData) \
                    and np.dtype(b.dtype).kind not in "iub":
                # (held in a float64 word, as the float carry is: JAX refuses it too)
                raise TypeError(f"{where}: the body's carry output leaf {k} is integers "
                                f"({np.dtype(a.dtype).name}), but its input is {want}; the "
                                "carry's dtypes must stay the same across a step (start "
                                "it as an integer, or make the output a float)")
            if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
                raise TypeError(f"{where}: the body's carry output leaf {k} is {got}, but its "
                                f"input is {want}; the carry's shapes and dtypes must stay "
                                "the same across a step")
        y_leaves, y_tree = pytree.flatten(y)
        outs = list(new_leaves) + list(y_leaves)
        builder.tape.outputs = [builder.slot_of(v) for v in outs]
    body = LoopBody(builder.tape, len(c_in), len(x_in), is_while, _counted.depth > 0)
    if not _is_guard_free(body):
        raise _Unroll
    kinds = [(v.sources, v.data_dtype) if isinstance(v, _IntegerData) else None for v in outs]
    return body, list(builder.captures), y_tree, kinds


def _as_integers(parts: Sequence[Any], kinds: Sequence[Any]) -> list[Any]:
    """The loop's results (`run`) that its body made integer data, as the
    integers they stand for: integer data again under a trace, NumPy's
    integers on plain values (`trace_body`'s ``kinds``)."""
    from .core.int_data import integer_like, storage_dtype
    out = []
    for part, kind in zip(parts, kinds):
        if kind is None or isinstance(part, Tracer) and part.dtype.kind in "iu":
            out.append(part)
        elif isinstance(part, Tracer):
            out.append(integer_like(part, *kind))
        else:
            out.append(np.asarray(part).astype(storage_dtype(kind[1])))
    return out


def run(body: LoopBody, length: int, carry_leaves: Sequence[Any], x_leaves: Sequence[Any],
        closed: Sequence[Any], checkpoint: int = 0) -> tuple[list[Any], list[Any]]:
    """Bind the loop instruction; its final carry's and stacked outputs' leaves."""
    packed = bind(P.loop, *carry_leaves, *x_leaves, *closed, body=body, length=length,
                  checkpoint=checkpoint)
    parts = [unpack(packed, start, stop, aval) for start, stop, aval in layout(body, length)]
    return parts[:body.n_carry], parts[body.n_carry:]


def chunk_length(body: LoopBody, length: int, operands: Sequence[Any], checkpoint: int) -> int:
    """The steps per chunk k when a loop the user wrote is recorded as a loop
    over chunks (`recorded`), else 0.  That is when its reverse mode would
    checkpoint: its states exceed reverse mode's budget
    (`loop_rules.stores_all`) or ``checkpoint=k`` (k >= 2) asks for it, and
    k divides the trip count into two chunks or more (by default the divisor
    nearest sqrt(T) within a factor 2 of it; a count without one, a prime,
    is checkpointed as one loop).  Only under a trace (an operand traced),
    outside derivative rules (`deriving`) and vmap's padded records, and for
    fixed counts of loops whose carries are all floating point."""
    from .loop_rules import stores_all
    if length == RUN_TIME or body.is_while or body.counted or _counted.depth or _counted.rules \
            or _padding.recording or not any(isinstance(v, Tracer) for v in operands) \
            or any(np.dtype(a.dtype).kind not in "fc" for a in body.carry_avals):
        return 0
    if checkpoint:
        k = checkpoint
    elif stores_all(body, length):
        return 0
    else:
        k = _divisor_near_sqrt(length)
    return k if k >= 2 and length % k == 0 and length // k >= 2 else 0


def _divisor_near_sqrt(n: int) -> int:
    """The divisor of n nearest sqrt(n) between sqrt(n) / 2 and 2 sqrt(n), or 0."""
    root = math.sqrt(n)
    best = 0
    for d in range(max(2, math.isqrt(n) // 2), 2 * math.isqrt(n) + 2):
        if n % d == 0 and root / 2 <= d <= 2 * root and (not best or abs(d - root) < abs(best - root)):
            best = d
    return best


def recorded(body: LoopBody, length: int, carry_leaves: Sequence[Any], x_leaves: Sequence[Any],
             closed: Sequence[Any], checkpoint: int = 0) -> tuple[list[Any], list[Any]]:
    """`run`, for a loop the user wrote (`scan`, `fori_loop`): a loop whose
    reverse mode checkpoints (`chunk_length` k) is recorded as a loop over
    its T / k chunks, each step of which is the loop of the body over one
    chunk.  The same body runs on the same values in the same order, so the
    results are the one loop's bit for bit.  Reverse mode of the loop over
    chunks stores each chunk's first state while the forward steps run
    (`transforms.loop_merge`), and runs back through a chunk while it
    recomputes the one before (`loop_rules._Sweep.pipelined_back`): with a
    value asked for too, the forward steps run twice besides the VJP's,
    where a checkpointing pass after the forward loop made three, and the
    recomputation overlaps the VJP.  (Cut into chunks and a remainder, the
    closed-over values' cotangents would be summed in another order.)"""
    k = chunk_length(body, length, list(carry_leaves) + list(x_leaves) + list(closed), checkpoint)
    if not k:
        return run(body, length, carry_leaves, x_leaves, closed, checkpoint)
    from .numpy import reshape
    chunks = length // k
    x_chunks = [reshape(x, (chunks, k) + tuple(np.shape(x)[1:])) for x in x_leaves]
    carry_tree = pytree.flatten(list(carry_leaves))[1]
    x_tree = pytree.flatten(list(x_chunks))[1]

    def chunk(c: Any, xc: Any) -> tuple[Any, Any]:
        # checkpoint=1: reverse mode stores the chunk's states (k of them)
        return run(body, k, c, xc, closed, 1)
    # (the chunk body is traced on the first chunk: its values are the loop's)
    chunk_body, chunk_closed, _, _ = trace_body(chunk, carry_leaves, carry_tree,
                                                [x[0] for x in x_chunks], x_tree,
                                                "fastad.scan")
    if len(chunk_closed) == len(closed) and all(a is b for a, b in zip(chunk_closed, closed)):
        chunk_body.chunk_of = (body, k)
    # checkpoint=1: reverse mode stores every chunk's first state
    final, ys = run(chunk_body, chunks, carry_leaves, x_chunks, chunk_closed, 1)
    return final, [reshape(y, (length,) + tuple(np.shape(y)[2:])) for y in ys]


def unpack(packed: Any, start: int, stop: int, aval: Any) -> Any:
    """One result of the packed loop, in its own dtype: an integer or boolean
    one (a counter) is packed with the floats and cast back, so that a traced
    loop returns what the plain one does."""
    part = packed[start:stop].reshape(aval.shape)
    if np.result_type(part.dtype) != aval.dtype and np.dtype(aval.dtype).kind in "iu" \
            and isinstance(part, Tracer):
        # integers of that dtype in the loop: no range check (a guard, which
        # would unroll a loop around this one)
        from .core.int_data import integers_in
        part = integers_in(part, frozenset(), aval.dtype, source=aval.dtype)
    elif np.result_type(part.dtype) != aval.dtype:
        from .numpy import astype
        part = astype(part, aval.dtype)
    return part


def _checkpoint(checkpoint: Any, where: str) -> int:
    if checkpoint is None:
        return 0
    if isinstance(checkpoint, (bool, np.bool_)) or not isinstance(checkpoint, (int, np.integer)) \
            or checkpoint < 1:
        raise ValueError(f"{where}: checkpoint must be a positive int (store every k-th "
                         f"carry) or None (about sqrt of the trip count), not {checkpoint!r}")
    return int(checkpoint)


def _flip(leaves: Sequence[Any]) -> list[Any]:
    from .numpy import flip
    return [flip(x, 0) for x in leaves]


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
         length: int | None = None, reverse: bool = False, unroll: int = 1,
         checkpoint: int | None = None) -> tuple[Any, Any]:
    """``jax.lax.scan``: ``carry, y = f(carry, x)`` for each x in xs (along
    axis 0); returns the final carry and the ys stacked.  ``checkpoint=k``:
    reverse mode stores every k-th carry and recomputes the ones between
    (k = 1: every carry stored).  Default: every carry stored when they take
    at most `loop_rules.STORE_BYTES` or no more than the loop's own per-step
    inputs and outputs, else about sqrt(length) (a divisor of it near its
    square root, when there is one: the loop is then recorded in chunks,
    `recorded`).  ``unroll`` is accepted for JAX's signature."""
    where = "fastad.scan"
    k = _checkpoint(checkpoint, where)
    carry_leaves, carry_tree = pytree.flatten(init)
    x_leaves, x_tree = pytree.flatten(xs)
    lengths = {int(np.shape(x)[0]) for x in x_leaves if np.ndim(x) > 0}
    if any(np.ndim(x) == 0 for x in x_leaves):
        raise ValueError(f"{where}: every leaf of xs needs a leading axis to scan over")
    if length is not None:
        if isinstance(length, Tracer) or int(length) != length or length < 0:
            raise ValueError(f"{where}: length must be a non-negative int, not {length!r}")
        lengths.add(int(length))
    if len(lengths) != 1:
        raise ValueError(f"{where}: the leaves of xs and length disagree on the trip count "
                         f"({sorted(lengths)})" if lengths else
                         f"{where}: with no xs, pass length")
    (n,) = lengths
    if reverse:
        x_leaves = _flip(x_leaves)
    try:
        stepped, kinds = _integers_as_data(x_leaves)
        # no first step to trace the body on: zeros of a step's shape (for the ys' shapes)
        first = [x[0] for x in stepped] if n else \
            [np.zeros(v.shape[1:], v.dtype) for v in map(_leaf_value, stepped)]
        body, closed, y_tree, outs = _traced(lambda: trace_body(
            f, carry_leaves, carry_tree, first, x_tree, where, x_kinds=kinds))
    except _Unroll:
        return _unrolled_scan(f, init, x_leaves, x_tree, n, reverse)
    final, ys = recorded(body, n, carry_leaves, stepped, closed, k)
    final, ys = _as_integers(final, outs), _as_integers(ys, outs[len(final):])
    if reverse:
        ys = _flip(ys)
    return pytree.unflatten(carry_tree, final), pytree.unflatten(y_tree, ys)


def _unrolled_scan(f: Callable[..., Any], init: Any, x_leaves: Sequence[Any], x_tree: Any,
                   n: int, reverse: bool) -> tuple[Any, Any]:
    return _as_python_loop(lambda step: _scan_steps(step, init, x_leaves, x_tree, n, reverse), f)


def _as_python_loop(run: Callable[[Any], Any], step: Callable[..., Any]) -> Any:
    """``run(step)``: a loop run as the Python loop it stands for.  In a
    loop's derivative (its step could not be one body: a guard in it) each
    step replays the body and differentiates it, so each is recorded in a
    trace of its own, whose inputs are its operands (`_closed_step`); an
    eager first-order gradient, whose rules compute on plain values, gets a
    trace to replay them into."""
    if not _counted.rules:
        return run(step)
    from .core.tracer import current_builder
    if current_builder() is None:
        with recording(record_lines=False):
            return _values(run(_closed_step(step)))
    return run(_closed_step(step))


def _closed_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` recorded in a trace of its own and replayed into the active
    one: a step's sweep then differentiates with respect to its own inputs
    (each operand apart, where two equal constants would share a slot) and
    walks only its own instructions, not back into the stored states and the
    loop that stored them."""
    from .core.int_data import _IntegerData, integer_like
    from .recorded import _integers_again

    def closed(*operands: Any) -> Any:
        leaves, tree = pytree.flatten(operands)
        taken = [k for k, v in enumerate(leaves)  # (Python ints: the steps' numbers)
                 if not isinstance(v, (int, bool)) and v is not None]
        with recording() as builder:
            inner = list(leaves)
            for k in taken:
                v = leaves[k]
                inner[k] = builder.new_input(_leaf_value(v))
                if isinstance(v, _IntegerData):
                    inner[k] = integer_like(inner[k], v.sources, v.data_dtype, v.interval)
            out_leaves, out_tree = pytree.flatten(step(*pytree.unflatten(tree, inner)))
            builder.tape.outputs = [builder.slot_of(v) for v in out_leaves]
        outs = replay(builder.tape, [leaves[k] for k in taken] + list(builder.captures))
        return pytree.unflatten(out_tree, [_integers_again(v, o) if isinstance(v, _IntegerData)
                                           else o for v, o in zip(out_leaves, outs)])
    return closed


def _scan_steps(f: Callable[..., Any], init: Any, x_leaves: Sequence[Any], x_tree: Any,
                n: int, reverse: bool) -> tuple[Any, Any]:
    from .numpy import stack
    carry, ys = init, []
    for t in range(n):
        carry, y = f(carry, pytree.unflatten(x_tree, [x[t] for x in x_leaves]))
        ys.append(pytree.flatten(y))
    if not ys:  # no step: what the ys are from one on a step's zeros, discarded
        leaves, tree = pytree.flatten(init)

        def plain(v: Any) -> Any:  # (integers taken as data: of their own dtype)
            return np.asarray(_leaf_value(v), v.dtype) if isinstance(v, Tracer) \
                else _leaf_value(v)
        zeros = [np.zeros(np.shape(x)[1:], plain(x).dtype) for x in x_leaves]
        try:
            _, y = f(pytree.unflatten(tree, [plain(v) for v in leaves]),
                     pytree.unflatten(x_tree, zeros))
        except Exception:  # a body that cannot take zeros (a factorization): no ys known
            return init, None
        y_leaves, y_tree = pytree.flatten(y)
        return init, pytree.unflatten(y_tree, [np.zeros((0,) + np.shape(v), _leaf_value(v).dtype)
                                               for v in y_leaves])
    y_tree = ys[0][1]
    stacked = [stack([leaves[j] for leaves, _ in ys]) for j in range(len(ys[0][0]))]
    return carry, pytree.unflatten(y_tree, _flip(stacked) if reverse else stacked)


def _values(tree: Any) -> Any:
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [value_of(v) for v in leaves])


def fori_loop(lower: int, upper: int, body_fun: Callable[[Any, Any], Any], init_val: Any,
              checkpoint: int | None = None) -> Any:
    """``jax.lax.fori_loop``: ``val = body_fun(i, val)`` for i in range(lower, upper);
    a scan over the step numbers, so reverse mode works as for `scan`.  Traced
    bounds make it a `while_loop` over (i, val), as in JAX (and reverse mode
    still works)."""
    if isinstance(lower, Tracer) or isinstance(upper, Tracer):
        from .core.int_data import _IntegerData
        from .core.int_data import counter_bounds, integer_like
        if isinstance(upper, _IntegerData) and not isinstance(lower, Tracer):
            # the counter as integer data, held in float64 as the bound is: a
            # loop the C VM runs (it holds no int64 values), indexing by it a gather
            lower = integer_like(Tracer.__add__(Tracer.__sub__(upper, upper), float(lower)),
                                 upper.sources, upper.data_dtype, (int(lower), int(lower)))
        # where the body runs, lower <= i < upper: i + 1 stays within upper's
        # bounds, so it needs no exactness check (a guard, which would unroll
        # the loop, and under vmap split a batch whose bounds differ)
        inside = counter_bounds(lower, upper)

        def step(state: Any) -> Any:
            i, val = state
            if inside is not None and isinstance(i, _IntegerData):
                i = integer_like(i, i.sources, i.data_dtype, inside)
            return i + 1, body_fun(i, val)
        return while_loop(lambda state: state[0] < upper, step, (lower, init_val))[1]
    bounds = []
    for name, b in (("lower", lower), ("upper", upper)):
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)):
            raise TypeError(f"fastad.fori_loop: {name} must be an int, not "
                            f"{type(b).__name__}")
        bounds.append(int(b))
    steps = np.arange(bounds[0], max(bounds), dtype=np.int64)
    if steps.size == 0:
        return init_val
    try:
        k = _checkpoint(checkpoint, "fastad.fori_loop")
        carry_leaves, carry_tree = pytree.flatten(init_val)

        def step(c: Any, i: Any) -> tuple[Any, None]:
            return body_fun(i, c), None
        # the counter as integer data: indexing by it is a gather, the loop
        # stays one; and weak, as the Python int of a plain loop (and JAX's
        # weak int32): ``c32 + i * 0.1`` stays float32, ``c_int32 + i`` int32
        stepped, kinds = _integers_as_data([steps])
        if kinds[0] is not None:  # (None: steps past 2**53, plain integers)
            kinds = [(kinds[0][0], int, kinds[0][2])]
        body, closed, _, outs = _traced(lambda: trace_body(step, carry_leaves, carry_tree,
                                                           [stepped[0][0]], pytree.LEAF,
                                                           "fastad.fori_loop", x_kinds=kinds))
    except _Unroll:
        def steps(body: Callable[[Any, Any], Any]) -> Any:
            val = init_val
            for i in range(bounds[0], bounds[1]):
                val = body(i, val)
            return val
        return _as_python_loop(steps, body_fun)
    final = _as_integers(recorded(body, int(steps.size), carry_leaves, stepped, closed, k)[0],
                         outs)
    return pytree.unflatten(carry_tree, final)


def while_loop(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any],
               init_val: Any) -> Any:
    """``jax.lax.while_loop``: ``while cond_fun(val): val = body_fun(val)``.

    Under a trace the loop reads its trip count at run time (a loop of
    `RUN_TIME` length, stepping while its carried condition holds), so a
    compiled function traces once for inputs that take any number of steps,
    and a while loop in another loop's body leaves that body one sub-tape.
    Reverse mode reads the forward loop's count (`loop_rules.loop_vjp`;
    JAX cannot differentiate it).  Where vmap records, the count is found on
    the values and checked by a guard, and the loop is a scan of that many
    steps carrying the condition along (its last carried value, and each
    step's input condition as its per-step output), so that `vmap` can run
    each example to its own end in one batched loop
    (`loop_rules.while_batch`).  On plain values it runs step by step."""
    return _while(cond_fun, body_fun, init_val)


def _while(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any], init_val: Any,
           counts: list[int] | None = None) -> Any:
    """`while_loop`; its trip count is appended to ``counts`` when given."""
    where = "fastad.while_loop"
    carry_tree = pytree.flatten(init_val)[1]

    def step(c: Any, _: Any) -> tuple[Any, Any]:
        val, going = c
        new = body_fun(val)
        return (new, _truth(cond_fun(new), where)), going
    try:
        going = _truth(cond_fun(init_val), where)
        state_leaves, state_tree = pytree.flatten((init_val, going))
        body, closed, _, _ = _traced(lambda: trace_body(step, state_leaves, state_tree, [], _NONE,
                                                     where, is_while=True))
    except _Unroll:
        def steps(body: Callable[[Any], Any]) -> Any:
            val = init_val
            while cond_fun(val):
                val = body(val)
            return val
        return _as_python_loop(steps, body_fun)
    if not any(isinstance(v, Tracer) for v in list(state_leaves) + list(closed)):
        # plain values: the loop run once, step by step, is the answer
        final, n = _run_while(body, state_leaves, closed)
        if counts is not None:
            counts.append(n)
        return pytree.unflatten(carry_tree, final[:-1]) if final is not None else init_val
    pad = _padding.recording[-1] if _padding.recording else None
    if pad is not None:  # recorded for vmap: padded to a length every example fits in?
        call, pad.calls = pad.calls, pad.calls + 1
        if call in pad.lengths:
            return pytree.unflatten(carry_tree, _padded(body, closed, state_leaves,
                                                        pad.lengths[call]))
        pad.index[id(body)] = call
    if run_time_form():
        # the count is read at run time: nothing recorded depends on it
        packed = bind(P.loop, *state_leaves, *closed, body=body, length=RUN_TIME, checkpoint=0)
        parts = [unpack(packed, a, b, aval) for a, b, aval in layout(body, RUN_TIME)]
        if counts is not None:
            counts.append(int(np.asarray(value_of(parts[-1]))))
        return pytree.unflatten(carry_tree, parts[:body.n_carry - 1])
    n = _run_while(body, state_leaves, closed)[1]
    if counts is not None:
        counts.append(n)
    final, (conds,) = run(body, n, state_leaves, [], closed)
    # the recorded count holds for this input only: every step starts with
    # its condition true, and the last one ends with it false
    if n:
        from .numpy import all as all_
        bool(all_(conds))  # records a guard (True here)
    bool(final[-1])  # records a guard (False here)
    return pytree.unflatten(carry_tree, final[:-1])


def run_time_form() -> bool:
    """Whether a while loop recorded now reads its trip count at run time
    (`primitives.loops.RUN_TIME`): always, except where vmap records (its
    batching of a while loop, `loop_rules.while_batch`, and the padding of
    derivative loops, `Padding`, start from the recorded count)."""
    from .vectorizing import in_vmap_trace
    return not _padding.recording and not in_vmap_trace()


class Padding:
    """While loops that vmap records to run a fixed number of steps.

    vmap records its function on one example.  A while loop whose examples
    take different numbers of steps batches as a masked loop
    (`loop_rules.while_batch`), but the loops derived from it in the same
    recording (its derivative's, for ``vmap(grad(f))``) run the first
    example's count.  vmap then records again with each such while loop,
    known by its place among the recording's while loops, *padded*: run for
    the largest count over the examples, each step kept only while the
    loop's condition holds (`_padded`), which is the same loop for every
    example that takes no more steps, so its derivative loops hold for all.
    ``lengths``: the padded lengths by place; ``found``: the counts the
    batched replay saw, by place (``index``: a recorded body's place)."""

    def __init__(self, lengths: dict[int, int]) -> None:
        self.lengths = dict(lengths)
        self.calls = 0
        self.index: dict[int, int] = {}
        self.found: dict[int, int] = {}


class _Paddings(threading.local):
    def __init__(self) -> None:
        self.recording: list[Padding] = []
        self.replaying: list[Padding] = []


_padding = _Paddings()


@contextlib.contextmanager
def padded_recording(pad: Padding, replaying: bool = False) -> Iterator[None]:
    """While loops recorded (or, with ``replaying``, batched) in this block
    belong to ``pad``."""
    stack = _padding.replaying if replaying else _padding.recording
    stack.append(pad)
    try:
        yield
    finally:
        stack.pop()


def found_count(body: LoopBody, n: int) -> None:
    """The batched replay ran the while loop of ``body`` for ``n`` steps."""
    pad = _padding.replaying[-1] if _padding.replaying else None
    if pad is not None and id(body) in pad.index:
        pad.found[pad.index[id(body)]] = n


def frozen(v: Any, going: Any) -> Any:
    """``v`` where the condition ``going`` holds; elsewhere its value with no
    derivative, so that a step run past the end (whose body may overflow on
    it) adds an exact zero to every derivative, not zero times inf."""
    from .numpy import result_dtype, stop_gradient, where as where_
    if np.dtype(result_dtype(v)).kind not in "fc":
        return v
    return where_(going, v, stop_gradient(v))


def _padded(body: LoopBody, closed: Sequence[Any], state_leaves: Sequence[Any],
            length: int) -> list[Any]:
    """The while loop of ``body`` as ``length`` masked steps: its final carry
    (the condition dropped), with a guard that the condition failed."""
    from .numpy import logical_and, where as where_
    nc = body.n_carry

    def step(c: Any, _: Any) -> tuple[Any, None]:
        vals, going = c[:-1], c[-1]
        consts = [frozen(k, going) if isinstance(k, Tracer) else k for k in closed]
        outs = replay(body.tape, [frozen(v, going) for v in vals] + [going] + consts)
        new = [where_(going, o, v) for o, v in zip(outs[:nc - 1], vals)]
        return new + [logical_and(going, outs[nc - 1])], None
    leaves, tree = pytree.flatten(list(state_leaves))
    masked, masked_closed, _, _ = trace_body(step, leaves, tree, [], _NONE, "fastad.while_loop")
    final, _ = run(masked, length, leaves, [], masked_closed)
    bool(final[-1])  # records a guard (False: every example this was recorded for is done)
    return final[:-1]


def _truth(value: Any, where: str) -> Any:
    """A loop condition as a bool scalar (traced or not), as Python's ``while``
    reads it."""
    if isinstance(value, Tracer):
        if np.size(value.value) != 1:
            raise ValueError(f"{where}: the condition must be one value, not an array of "
                             f"shape {np.shape(value.value)}")
        from .numpy import reshape
        value = value if value.dtype == np.bool_ else value != 0
        return reshape(value, ()) if np.ndim(value.value) else value
    return np.bool_(bool(np.asarray(value).reshape(()) if np.size(value) == 1 else value))


def _run_while(body: LoopBody, state_leaves: Sequence[Any], closed: Sequence[Any]
               ) -> tuple[list[Any] | None, int]:
    """The loop on the values: its final carry (None if it takes no step)
    and its trip count, the steps until the carried condition is false."""
    state = [_leaf_value(c) for c in state_leaves]
    consts = [_leaf_value(c) for c in closed]
    n = 0
    with np.errstate(all="ignore"):
        while bool(state[-1]):
            state = body.interpret(state + consts)[:body.n_carry]
            n += 1
    return (state if n else None), n


def default_checkpoint(length: int) -> int:
    """The stride of stored carries when none is given: about sqrt(length),
    which makes reverse mode keep O(sqrt(T)) states and run the body twice."""
    return max(1, math.isqrt(max(length - 1, 0)) + 1)
