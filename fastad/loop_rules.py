"""The loop's derivatives, written as loops (`fastad.scan`), so they
differentiate, batch and compile again.

Forward mode is one loop of the body's JVP: the carry is (state, tangent).

Reverse mode is a reverse loop of the body's VJP, whose inputs are the
carried states step by step.  Keeping all T of them would cost T states;
instead the states are *checkpointed*: a first loop over chunks of k steps
stores the state at the start of each chunk (T/k states), and the reverse
loop over the chunks recomputes each chunk's k states from its checkpoint
before running the body's VJP back through them (k states at a time).  With
k about sqrt(T) (`loops.default_checkpoint`, or ``checkpoint=k``) reverse
mode keeps O(sqrt(T)) states and runs the body about twice per step.
States that fit `STORE_BYTES` (or the loop's own inputs and outputs) are
all stored instead, by the forward loop itself (`transforms.loop_merge`); a
run-time count's, up to 64 steps, in buffers of a fixed size
(`_stored_back`).  A longer scan the user wrote is recorded as a loop over
chunks (`loops.recorded`), whose forward loop stores the chunks' first
states and whose VJP recomputes the previous chunk beside running back
through this one (`_Sweep.pipelined_back`).  The cotangents of closed-over
values are carried and summed across steps.
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from .core.registry import prims as P
from .core.tracer import Tracer, bind, current_builder, replay, value_of
from .loop_hoist import residuals, scan as hoisting_scan
from .loop_reads import filled as _filled, inside as _inside, vjp_reads
from .loops import (_while as while_, counted, default_checkpoint, deriving, found_count,
                    frozen, in_counted, in_loop_body, scan, unpack)
from .primitives.loops import RUN_TIME, LoopBody, layout, packed_dtype
from .primitives.numpy_proxy import fnp


def _inexact(dtype: Any) -> bool:
    return np.dtype(dtype).kind in "fc"


def _counters_as_floats(carry: Sequence[Any], body: LoopBody) -> list[Any]:
    """Integer and boolean carries (counters, a while loop's condition) in the
    packed dtype, as a traced loop's results hold them, so the loops below
    keep one dtype and stay on the VM's LOOP.  A body whose integer steps may
    pass 2**53 (``c * 1103515245 % 2**31``, `rounds_integers`) keeps its
    integers: there float64 would round, and the interpreter runs it."""
    from .backends.lower_loop import rounds_integers
    keep = rounds_integers(body)
    return [fnp.astype(c, np.float64) if np.result_type(c).kind == "b"
            or (np.result_type(c).kind in "iu" and not keep) else c for c in carry]


def _held(v: Any) -> np.dtype:
    """The dtype v is held in (integers taken as data: float64 words)."""
    return np.dtype(v.aval.dtype) if isinstance(v, Tracer) else np.result_type(v)


def _as_carried(new: Sequence[Any], carry: Sequence[Any]) -> list[Any]:
    """A step's new carry in the dtypes the loop carries (a while loop's
    condition is carried as float64 by `_counters_as_floats`, a stored
    integer state in float64 words)."""
    return [fnp.astype(n, _held(c)) if _held(n) != _held(c) else n for n, c in zip(new, carry)]


def _pack(parts: Sequence[Any], avals: Sequence[Any]) -> Any:
    dtype = packed_dtype(avals)
    if not parts:
        return np.zeros(0, dtype)
    return fnp.concatenate([fnp.astype(fnp.ravel(p), dtype) for p in parts])


def _deriving(body: LoopBody) -> Any:
    """The derivative loops of a while loop (or of one derived from it) run
    its recorded trip count: mark them `counted`, so that vmap knows they
    hold for the examples that take that many steps only."""
    return counted() if body.is_while or body.counted else contextlib.nullcontext()


def loop_jvp(tangents: Sequence[Any], args: Sequence[Any], body: LoopBody, length: int,
             checkpoint: int) -> Any:
    with deriving():
        if length == RUN_TIME:
            return _run_time_jvp(tangents, args, body)
        with _deriving(body):
            return _loop_jvp(tangents, args, body, length, checkpoint)


# A loop of run-time length whose count is at least this when its reverse
# mode is traced outside any loop body is reversed with checkpoints for that
# count behind a guard (`_loop_vjp`: about 3n body runs); a shorter one, or
# one in a loop's body, by `_run_time_vjp` (about n^1.5), for any count.
RECOMPUTE_MAX = 64


def loop_vjp(g: Any, ans: Any, args: Sequence[Any], active: Sequence[int], body: LoopBody,
             length: int, checkpoint: int) -> list[Any]:
    """The cotangent of each operand in ``active`` (None where it has none)."""
    with deriving():
        return _reverse(g, ans, args, active, body, length, checkpoint)


def _reverse(g: Any, ans: Any, args: Sequence[Any], active: Sequence[int], body: LoopBody,
             length: int, checkpoint: int) -> list[Any]:
    parts = [unpack(g, start, stop, aval) for start, stop, aval in layout(body, length)]
    if length == RUN_TIME:
        count = unpack(ans, *layout(body, RUN_TIME)[-1])
        n = int(np.asarray(value_of(count)))
        if n < RECOMPUTE_MAX or in_loop_body():
            return _run_time_vjp(parts, count, args, active, body, in_loop_body())
        # the forward loop's count, fixed by a guard (a compiled gradient
        # traces again when an input takes another count), for checkpoints
        # of O(sqrt(n)) states where recomputing would run the body n^1.5 times
        bool(count == n)  # records a guard (True here)
        length, parts = n, parts[:-1] + [None]
    with _deriving(body):
        return _loop_vjp(parts, args, active, body, length, checkpoint)


# -- forward mode ---------------------------------------------------------------------
def _loop_jvp(tangents: Sequence[Any], args: Sequence[Any], body: LoopBody, length: int,
             checkpoint: int) -> Any:
    from .transforms.forward import forward
    nc, nx = body.n_carry, body.n_xs
    carry, xs, consts = list(args[:nc]), list(args[nc:nc + nx]), list(args[nc + nx:])
    carry = _counters_as_floats(carry, body)
    c_diff = [j for j, a in enumerate(body.carry_avals) if _inexact(a.dtype)]
    x_diff = [j for j in range(nx) if tangents[nc + j] is not None
              and _inexact(body.x_avals[j].dtype)]
    k_diff = [j for j in range(len(consts)) if tangents[nc + nx + j] is not None
              and _inexact(body.const_avals[j].dtype)]
    dcarry = [tangents[j] if tangents[j] is not None else fnp.zeros_for(carry[j])
              for j in c_diff]
    dxs = [tangents[nc + j] for j in x_diff]
    dconsts = [tangents[nc + nx + j] for j in k_diff]
    y_diff = [j for j, a in enumerate(body.y_avals) if _inexact(a.dtype)]

    def step(state: Any, x: Any) -> tuple[Any, Any]:
        (c, dc), (xv, dx) = state, x
        k_in = _inside(consts)
        builder = current_builder()
        outs = replay(body.tape, list(c) + list(xv) + k_in)
        wrt = [c[j] for j in c_diff] + [xv[j] for j in x_diff] + [k_in[j] for j in k_diff]
        seeds = list(dc) + list(dx) + _inside(dconsts)
        douts = forward(builder, len(builder.tape.instrs), wrt, seeds,
                        [outs[j] for j in c_diff] + [outs[nc + j] for j in y_diff])
        new_c, ys = _as_carried(outs[:nc], c), outs[nc:]
        return (new_c, douts[:len(c_diff)]), (ys, douts[len(c_diff):])

    (_, dc_final), (_, dys) = scan(step, (carry, dcarry), (xs, dxs), length=length,
                                   checkpoint=checkpoint or None)
    # the packed tangent: zeros for the parts with no derivative (integers)
    results = body.result_avals(length)
    parts = [fnp.zeros(a.shape, a.dtype) for a in results]
    for j, d in zip(c_diff, dc_final):
        parts[j] = d
    for j, d in zip(y_diff, dys):
        parts[nc + j] = d
    return _pack(parts, results)


def _run_time_jvp(tangents: Sequence[Any], args: Sequence[Any], body: LoopBody) -> Any:
    """Forward mode of a loop of run-time length: a while loop over (state,
    tangent) on the same carried condition, so it too reads its count at run
    time."""
    from .transforms.forward import forward
    nc = body.n_carry
    carry, consts = _counters_as_floats(args[:nc], body), list(args[nc:])
    c_diff = [j for j, a in enumerate(body.carry_avals) if _inexact(a.dtype)]
    k_diff = [j for j in range(len(consts)) if tangents[nc + j] is not None
              and _inexact(body.const_avals[j].dtype)]
    dcarry = [tangents[j] if tangents[j] is not None else fnp.zeros_for(carry[j])
              for j in c_diff]
    dconsts = [tangents[nc + j] for j in k_diff]

    def step(state: Any) -> Any:
        c, dc = state
        k_in = _inside(consts)
        builder = current_builder()
        outs = replay(body.tape, list(c) + k_in)
        wrt = [c[j] for j in c_diff] + [k_in[j] for j in k_diff]
        douts = forward(builder, len(builder.tape.instrs), wrt, list(dc) + _inside(dconsts),
                        [outs[j] for j in c_diff])
        return _as_carried(outs[:nc], c), douts

    _, dc_final = while_(lambda state: state[0][-1], step, (carry, dcarry))
    results = body.result_avals(RUN_TIME)
    parts = [fnp.zeros(a.shape, a.dtype) for a in results]
    for j, d in zip(c_diff, dc_final):
        parts[j] = d
    return _pack(parts, results)


# -- reverse mode ---------------------------------------------------------------------
class _Sweep:
    """What the reverse loops share: the body, which of its inputs and
    outputs carry derivatives, and the closed-over values."""

    def __init__(self, body: LoopBody, consts: Sequence[Any], active_xs: Sequence[int],
                 active_consts: Sequence[int]) -> None:
        from .backends.lower_loop import rounds_integers
        self.body, self.consts = body, list(consts)
        # whether a step computes its integer carries in their dtype (`typed`)
        self.exact_integers = rounds_integers(body)
        self.c_diff = [j for j, a in enumerate(body.carry_avals) if _inexact(a.dtype)]
        self.x_diff = [j for j in active_xs if _inexact(body.x_avals[j].dtype)]
        self.y_diff = [j for j, a in enumerate(body.y_avals) if _inexact(a.dtype)]
        self.k_diff = [j for j in active_consts if _inexact(body.const_avals[j].dtype)]

    def step(self, c: Sequence[Any], x: Sequence[Any], keep: Sequence[int] | None = None,
             fixed: dict[int, Any] | None = None) -> list[Any]:
        """The body's new carry (forward only, for recomputing states); with
        ``keep``, only those carries of it, ``c`` holding only those and the
        others standing in as ``fixed`` (outer values the kept ones never read)."""
        if keep is not None:
            c = _filled(c, keep, fixed or {}, self.body.n_carry)
        outs = replay(self.body.tape, self.typed(c) + list(x) + self.consts)
        new = _as_carried(outs[:self.body.n_carry], c)
        return new if keep is None else [new[j] for j in keep]

    def typed(self, c: Sequence[Any]) -> list[Any]:
        """The carry with its integers in their dtype: stored states and marks
        hold them as float64 words (exact: `pack` checks they stay below
        2**53), but a step of them may pass 2**53 (``c * 1103515245 %
        2**31``), where float64 rounds and int64 does not."""
        out = list(c)
        if not self.exact_integers:  # (a counter's float64 word is exact: the VM's LOOP)
            return out
        for j, a in enumerate(self.body.carry_avals):
            dtype = np.dtype(a.dtype)
            if dtype.kind in "iu" and _held(out[j]) != dtype:
                # (integers carry no derivative: a stored state that is a
                # float64 slot, differentiated again, sends none through)
                out[j] = bind(P.astype, bind(P.stop_gradient, out[j]), dtype=dtype.str) \
                    if isinstance(out[j], Tracer) else np.asarray(out[j], dtype)
        return out

    def states(self, c0: Sequence[Any], xs: Sequence[Any], n: int,
               keep: Sequence[int] | None = None, fixed: dict[int, Any] | None = None
               ) -> list[Any]:
        """The carry before each of the ``n`` steps, stacked (the stored
        states); with ``keep``, those carries' alone (`step`)."""
        if keep is not None:
            c0 = [c0[j] for j in keep]
        _, stored = scan(lambda c, x: (self.step(c, x, keep, fixed), c), list(c0), list(xs),
                         length=n)
        return stored

    def stored(self, c0: Sequence[Any], xs: Sequence[Any], n: int) -> list[Any]:
        """`states` of the loop's own operands, as a loop of the body's
        `LoopBody.storing` form: the same operands and count as the forward
        loop, which `transforms.loop_merge` then reads from this one, so the
        forward steps run once."""
        also = self.residuals()
        body = self.body.storing(in_counted(), tuple(slot for slot, _ in also))
        packed = bind(P.loop, *c0, *xs, *self.consts, body=body, length=n, checkpoint=0)
        spans = layout(body, n)
        end = len(spans) - len(also)
        known = {key: unpack(packed, *span) for (_, key), span in zip(also, spans[end:])}
        return [unpack(packed, *span) for span in spans[end - self.body.n_carry:end]], known

    def const_keys(self) -> dict[int, Any]:
        """The closed-over values' keys (`loop_hoist.keys`), by their ids."""
        return {id(c): ("const", m) for m, c in enumerate(self.consts)}

    def residuals(self) -> list[tuple[int, Any]]:
        """The body's transcendental functions of its states that its VJP
        would compute again (`loop_hoist.residuals`), each once, taking no
        more bytes a step than the state: what `stored` stores besides."""
        seen, out, size = set(), [], 0
        budget = _bytes(self.body.carry_avals)
        tape = self.body.tape
        for slot, key in residuals(self.body, [("const", m) for m in range(len(self.consts))]):
            aval = tape.avals[slot]
            if key in seen or size + _bytes([aval]) > budget:
                continue
            seen.add(key)
            size += _bytes([aval])
            out.append((slot, key))
        return out

    def final(self, c0: Sequence[Any], xs: Sequence[Any], n: int) -> list[Any]:
        last, _ = scan(lambda c, x: (self.step(c, x), None), list(c0), list(xs), length=n)
        return last

    def back(self, ct: Any, stored: Sequence[Any], xs: Sequence[Any], ct_ys: Sequence[Any],
             n: int, live: Any = None, hoist: bool = False, known: Any = None,
             fixed: Any = None) -> tuple[Any, list[Any]]:
        """The body's VJP run back over ``n`` steps whose states are ``stored``:
        (the carried cotangents before them, the xs' cotangents stacked).
        ``live`` (a traced count m <= n): only the first m steps are the
        loop's; a later one leaves the cotangents as they are, its state
        entering behind `frozen` so that its partials (of a step run past
        the end, which may overflow) meet exact zeros at any order.
        ``hoist``: the body's transcendental functions of the states are
        computed for all steps at once, before the loop (`loop_hoist`; for
        states the forward loop stored: where a loop recomputes them, the
        Numba backend overlaps it with this one, which nothing may split),
        or read from ``known``, what `stored` stored besides the states.
        ``fixed``: (kept, {carry: value}) when ``stored`` holds only the kept
        carries' states, the others, which the VJP never reads, standing in
        as those outer values."""
        index = [np.arange(n, dtype=np.float64)] if live is not None else []

        def vjp_step(ct_state: Any, per_step: Any) -> tuple[Any, Any]:
            ct_c, ct_k = ct_state
            c, x, ct_y = per_step[:3]
            if fixed is not None:
                c = _filled(c, fixed[0], fixed[1], self.body.n_carry)
            going = per_step[3][0] < live if live is not None else None
            state = c if going is None else [frozen(v, going) for v in c]
            new_c, new_k, ct_x = self.step_back(ct_c, ct_k, c, state, x, ct_y)
            if going is not None:
                new_c = [fnp.where(going, a, b) for a, b in zip(new_c, ct_c)]
                new_k = [fnp.where(going, a, b) for a, b in zip(new_k, ct_k)]
            return (new_c, new_k), ct_x

        # (not past a loop's end: steps there may overflow, behind `frozen`)
        if not hoist or live is not None or fixed is not None:
            return scan(vjp_step, ct, (list(stored), list(xs), list(ct_ys), index), length=n,
                        reverse=True)
        x_keys = [("carry", j) for j in range(len(stored))] + [("x", j) for j in range(len(xs))]
        return hoisting_scan(vjp_step, ct, (list(stored), list(xs), list(ct_ys), index), n,
                             reverse=True, x_keys=x_keys, known=known,
                             const_keys=self.const_keys())

    def step_back(self, ct_c: Sequence[Any], ct_k: Sequence[Any], c: Sequence[Any],
                  state: Sequence[Any], x: Sequence[Any], ct_y: Sequence[Any]
                  ) -> tuple[list[Any], list[Any], list[Any]]:
        """One step's VJP, recorded in the active trace (a loop's body): the
        body replayed on ``state`` (``c``, or ``c`` behind `frozen`) and its
        reverse sweep; (the carry's cotangent before the step, the summed
        closed-over values', the step's inputs')."""
        from .transforms.reverse import backward
        nc = self.body.n_carry
        k_in = _inside(self.consts)
        builder = current_builder()
        outs = replay(self.body.tape, self.typed(state) + list(x) + k_in)
        outputs = [outs[j] for j in self.c_diff] + [outs[nc + j] for j in self.y_diff]
        wrt = [c[j] for j in self.c_diff] + [x[j] for j in self.x_diff] \
            + [k_in[j] for j in self.k_diff]
        grads = backward(builder, len(builder.tape.instrs), outputs, list(ct_c) + list(ct_y), wrt)
        grads = [_like(g, w) for g, w in zip(grads, wrt)]
        n_c, n_x = len(self.c_diff), len(self.x_diff)
        return (grads[:n_c], [a + b for a, b in zip(ct_k, grads[n_c + n_x:])],
                grads[n_c:n_c + n_x])

    def pipelined_back(self, ct: Any, marks: Sequence[Any], x_chunks: Sequence[Any],
                       ct_y_chunks: Sequence[Any], chunks: int, k: int
                       ) -> tuple[Any, list[Any]]:
        """`back` over ``chunks`` chunks of k steps of this body, each chunk's
        first state in ``marks``, every input stacked by chunk: a reverse
        loop over chunks C-2 .. 0 whose carry holds the cotangents and the
        next chunk's states, inputs and output cotangents, and whose step is
        one loop of k steps running step j of this chunk's recomputation
        (from its mark, forwards) beside step k - 1 - j of the next chunk's
        VJP.  The two are independent chains of arithmetic in one step, which
        the processor overlaps, where a recomputing loop followed by the
        VJP's loop would wait on each in turn.  Before the loop the last
        chunk's states are recomputed; after it the first chunk's VJP runs
        alone.  The steps' VJPs run in `back`'s order on the same values, so
        the results are its bit for bit.  (Per-step inputs are whole rows of
        the stacked ones, read in place: no copy of the data.)"""
        def flip(a: Any) -> Any:
            return fnp.flip(a, 0)

        def last(a: Any) -> Any:
            return a[chunks - 1]
        nc = self.body.n_carry
        x_last, ct_y_last = [last(x) for x in x_chunks], [last(y) for y in ct_y_chunks]
        # carries the VJP never reads (a loss) are neither recomputed nor
        # handed on: their value is any one, a chunk's first below
        keep = vjp_reads(self, ct, [last(m) for m in marks], [row[0] for row in x_last],
                              [row[0] for row in ct_y_last])
        if len(keep) == nc:
            keep = None
        drop = [] if keep is None else [j for j in range(nc) if j not in keep]
        held0 = (self.states([last(m) for m in marks], x_last, k, keep,
                             {j: last(marks[j]) for j in drop}), x_last, ct_y_last)

        def chunk_back(state: Any, per_chunk: Any) -> tuple[Any, Any]:
            (ct_c, ct_k), (held, x_held, ct_y_held) = state
            mark, xc, ct_yc = per_chunk
            fixed = {j: mark[j] for j in drop}

            def step(inner: Any, per_step: Any) -> tuple[Any, Any]:
                c_prev, ct_c, ct_k = inner
                x_p, c, x, ct_y = per_step
                state = c if keep is None else _filled(c, keep, fixed, nc)
                new_c, new_k, ct_x = self.step_back(ct_c, ct_k, state, state, x, ct_y)
                return (self.step(c_prev, x_p, keep, fixed), new_c, new_k), (c_prev, ct_x)
            (_, ct_c, ct_k), (recomputed, ct_x) = scan(
                step, (list(mark) if keep is None else [mark[j] for j in keep],
                       list(ct_c), list(ct_k)),
                (list(xc), [flip(v) for v in held], [flip(x) for x in x_held],
                 [flip(y) for y in ct_y_held]), length=k)
            return ((ct_c, ct_k), (recomputed, list(xc), list(ct_yc))), [flip(g) for g in ct_x]

        def lead(a: Any) -> Any:  # the rows of chunks 0 .. C-2
            return a[:chunks - 1]
        (ct, (held, x_held, ct_y_held)), ct_xs = scan(
            chunk_back, (ct, held0),
            ([lead(m) for m in marks], [lead(x) for x in x_chunks], [lead(y) for y in ct_y_chunks]),
            length=chunks - 1, reverse=True)
        ct, first = self.back(ct, held, x_held, ct_y_held, k, fixed=None if keep is None else
                              (keep, {j: marks[j][0] for j in drop}))
        return ct, [fnp.concatenate([fnp.reshape(f, (1,) + tuple(fnp.shape(f))), rest])
                    for f, rest in zip(first, ct_xs)]


def _like(g: Any, w: Any) -> Any:
    """A cotangent with its primal's dtype and shape (the carry's must not change)."""
    aval = w.aval if isinstance(w, Tracer) else None
    if aval is not None and fnp.result_dtype(g) != aval.dtype:
        g = fnp.astype(g, aval.dtype)
    if aval is not None and fnp.shape(g) != tuple(aval.shape):
        g = fnp.broadcast_to(g, aval.shape)
    return g


def _by_operand(sweep: _Sweep, active: Sequence[int], ct_c: Sequence[Any],
                ct_xs: Sequence[Any], ct_k: Sequence[Any]) -> list[Any]:
    """The cotangents in the order of ``active`` (None for an operand with none)."""
    nc, nx = sweep.body.n_carry, sweep.body.n_xs
    by_operand: dict[int, Any] = {}
    for j, c in zip(sweep.c_diff, ct_c):
        by_operand[j] = c
    for j, c in zip(sweep.x_diff, ct_xs):
        by_operand[nc + j] = c
    for j, c in zip(sweep.k_diff, ct_k):
        by_operand[nc + nx + j] = c
    return [by_operand.get(a) for a in active]


# A loop of run-time length of at most CHUNK * MARKS (= RECOMPUTE_MAX) steps
# is reversed with every state stored (`_stored_back`), in buffers of that
# fixed size; a longer one in a loop's body recomputes its states
# (`_recomputed_back`), both recorded behind `_cond`s on the count.
CHUNK, MARKS = 8, 8


def _cond(pred: Any, fun: Any, value: Any) -> Any:
    """``fun(value)`` where ``pred`` holds, else ``value``: a while loop of at
    most one step (the VM runs it as a LOOP, so what is not taken costs
    nothing)."""
    return while_(lambda s: s[0], lambda s: (fnp.logical_not(s[0]), fun(s[1])),
                  (pred, value))[1]


def _advance(sweep: _Sweep, c: Any, steps: Any) -> Any:
    """The carry ``steps`` (traced) steps after ``c``, by a while loop."""
    return while_(lambda s: s[0] < steps, lambda s: (s[0] + 1.0, sweep.step(s[1], [])),
                  (np.float64(0.0), c))[1]


def _run_time_vjp(parts: Sequence[Any], count: Any, args: Sequence[Any],
                  active: Sequence[int], body: LoopBody, in_body: bool) -> list[Any]:
    """Reverse mode of a loop of run-time length, reading the forward loop's
    ``count`` n (under RECOMPUTE_MAX = CHUNK * MARKS outside loop bodies).
    In a loop's body nothing recorded may depend on n (a guard there would
    unroll the loop around it): the stored form for n up to CHUNK * MARKS
    (about 2n body runs besides the n VJPs), the recomputing one above
    (about n^1.5), each behind a `_cond`.  Outside, the stored form alone,
    behind a guard on that bound: recording both doubled a first call (each
    loop recorded is also built to compute its trace's values), and a count
    past the bound takes the checkpointed form of its count anyway."""
    nc = body.n_carry
    carry, consts = _counters_as_floats(args[:nc], body), list(args[nc:])
    sweep = _Sweep(body, consts, [], [a - nc for a in active if a >= nc])
    ct0 = ([parts[j] for j in sweep.c_diff], [fnp.zeros_for(consts[j]) for j in sweep.k_diff])
    short = count <= float(CHUNK * MARKS)
    if not in_body:
        bool(short)  # records a guard (True here)
        ct_c, ct_k = _stored_back(sweep, carry, count, ct0)
    else:
        ct = _cond(short, lambda ct: _stored_back(sweep, carry, count, ct), ct0)
        ct_c, ct_k = _cond(fnp.logical_not(short),
                           lambda ct: _recomputed_back(sweep, carry, count, ct), ct)
    return _by_operand(sweep, active, ct_c, [], ct_k)


def _stored_back(sweep: _Sweep, carry: Any, count: Any, ct: Any) -> Any:
    """The reverse of n <= CHUNK * MARKS steps from stored states: the first
    state of each chunk of CHUNK steps (MARKS rows, each chunk advanced by a
    while loop of its own length, so the n steps run once), then back over
    the chunks, each taken (`_cond`) only when it holds steps: its CHUNK
    states stored by a scan from its first, and the VJP back over the first
    ``count - i CHUNK`` of them (the rest masked)."""
    def steps_in(i: Any) -> Any:
        return fnp.clip(count - i * float(CHUNK), 0.0, float(CHUNK))

    def mark(c: Any, i: Any) -> tuple[Any, Any]:
        return _advance(sweep, c, steps_in(i[0])), c
    chunk_index = [np.arange(MARKS, dtype=np.float64)]
    _, marks = scan(mark, list(carry), chunk_index, length=MARKS)

    def chunk_back(ct: Any, per_chunk: Any) -> tuple[Any, None]:
        first, i = per_chunk
        m = steps_in(i[0])

        def back(ct: Any) -> Any:
            return sweep.back(ct, sweep.states(first, [], CHUNK), [], [], CHUNK, live=m)[0]
        return _cond(m > 0.0, back, ct), None
    return scan(chunk_back, ct, (list(marks), chunk_index), length=MARKS, reverse=True)[0]


def _recomputed_back(sweep: _Sweep, carry: Any, count: Any, ct: Any) -> Any:
    """While loops back over chunks of k = ceil(sqrt(n)) steps and back over
    each chunk's steps, each state recomputed by a while loop from the
    initial carry (the chunk's first) or from its chunk's first (the
    step's): nothing stored whose size depends on n, about n^1.5 body runs
    besides the n VJPs (which `loop_vjp` bounds by `RECOMPUTE_MAX` outside
    loop bodies)."""
    k = fnp.ceil(fnp.sqrt(count))
    chunks = fnp.ceil(count / fnp.maximum(k, 1.0))

    def chunk_back(state: Any) -> Any:
        i, ct = state[0] - 1.0, state[1]
        first = _advance(sweep, carry, i * k)

        def step_back(inner: Any) -> Any:
            j = inner[0] - 1.0
            c = _advance(sweep, first, j)
            # (the state as a one-step scan's row: a sweep's wrt are its trace's inputs)
            rows = [fnp.reshape(v, (1,) + fnp.shape(v)) for v in c]
            return j, sweep.back(inner[1], rows, [], [], 1)[0]
        return i, while_(lambda inner: inner[0] > 0.0, step_back,
                         (fnp.minimum(k, count - i * k), ct))[1]

    return while_(lambda state: state[0] > 0.0, chunk_back, (chunks, ct))[1]


# Reverse mode of a fixed-count loop stores every state outright (by the
# forward loop itself, `transforms.loop_merge`, then its VJP back: no chunk
# recomputed) when the states take at most this many bytes (about a core's
# L2 cache: the RNN, GRU and LSTM of benchmarks/recurrences.py), or no more
# than the loop's own per-step inputs and outputs, which the forward pass
# holds anyway (so the gradient's memory stays within a small multiple of
# the value's); a longer loop is checkpointed, so its memory stays
# O(sqrt(T)) states (issue 22's bound at T = 20,000: the RK4 fit's 480 KB
# of states against its 160 KB of data).
STORE_BYTES = 256 * 1024
STORE_RATIO = 1.0  # states per byte of the loop's per-step inputs and outputs


def _bytes(avals: Sequence[Any]) -> int:
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in avals)


def stores_all(body: LoopBody, length: int) -> bool:
    """Whether reverse mode of ``length`` steps of ``body`` stores every
    state (without ``checkpoint=``)."""
    states = length * _bytes(body.carry_avals)
    return states <= max(STORE_BYTES, STORE_RATIO * length * _bytes(body.x_avals + body.y_avals))


_stores_all = stores_all


def _loop_vjp(parts: Sequence[Any], args: Sequence[Any], active: Sequence[int],
              body: LoopBody, length: int, checkpoint: int) -> list[Any]:
    nc, nx = body.n_carry, body.n_xs
    carry, xs, consts = list(args[:nc]), list(args[nc:nc + nx]), list(args[nc + nx:])
    carry = _counters_as_floats(carry, body)
    sweep = _Sweep(body, consts, [a - nc for a in active if nc <= a < nc + nx],
                   [a - nc - nx for a in active if a >= nc + nx])
    ct_c = [parts[j] for j in sweep.c_diff]
    ct_ys = [parts[nc + j] for j in sweep.y_diff]
    ct_k = [fnp.zeros_for(consts[j]) for j in sweep.k_diff]
    ct_xs: list[Any] = [[] for _ in sweep.x_diff]
    k = checkpoint or default_checkpoint(length)
    chunks, tail = (length // k, length % k) if length else (0, 0)
    # checkpoint=1: every state is a checkpoint, stored as when they all fit
    if checkpoint == 1 or not checkpoint and stores_all(body, length):
        chunks, tail = 0, length

    def rows(a: Any, lo: int, hi: int) -> Any:
        return a[lo:hi]

    main = chunks * k
    if chunks:  # the state at the start of each chunk of k steps
        def chunked(a: Any) -> Any:
            return fnp.reshape(rows(a, 0, main), (chunks, k) + tuple(fnp.shape(a)[1:]))
        x_chunks = [chunked(x) for x in xs]
        c_main, marks = scan(lambda c, xc: (sweep.final(c, xc, k), c), carry, x_chunks,
                             length=chunks)
    else:
        c_main, marks, x_chunks = carry, [], []
    ct = (ct_c, ct_k)
    if tail:  # the last length % k steps, their states stored outright
        x_tail = [rows(x, main, length) for x in xs]
        # (every step's: the forward loop's operands, unless a counter became a float)
        own = tail == length and all(a is b for a, b in zip(carry, args[:nc]))
        stored, known = sweep.stored(carry, xs, length) if own else \
            (sweep.states(c_main, x_tail, tail), None)
        ct_y_tail = [rows(y, main, length) for y in ct_ys]
        chunk = body.chunk_of
        if own and chunk is not None and length >= 2:
            # a loop over chunks of the loop of chunk[0]: back through those
            inner = _Sweep(chunk[0], consts, sweep.x_diff, sweep.k_diff)
            ct, tail_cts = inner.pipelined_back(ct, stored, x_tail, ct_y_tail, length, chunk[1])
        else:
            ct, tail_cts = sweep.back(ct, stored, x_tail, ct_y_tail, tail, hoist=own,
                                      known=known)
    if not length and in_counted():
        # a while loop's derivative for a count of 0 is still a loop (of no
        # steps, `counted`): vmap then sees it, and pads the while loop when
        # another example takes steps, where passing the cotangent through
        # would give every example the 0-step derivative
        ct, _ = sweep.back(ct, sweep.states(carry, xs, 0), xs, ct_ys, 0)
    if chunks:
        def chunk_back(ct_state: Any, per_chunk: Any) -> tuple[Any, Any]:
            mark, xc, ct_yc = per_chunk
            stored = sweep.states(mark, xc, k)
            return sweep.back(ct_state, stored, xc, ct_yc, k)
        ct_y_chunks = [fnp.reshape(rows(y, 0, main), (chunks, k) + tuple(fnp.shape(y)[1:]))
                       for y in ct_ys]
        ct, main_cts = scan(chunk_back, ct, (marks, x_chunks, ct_y_chunks), length=chunks,
                            reverse=True)
        main_cts = [fnp.reshape(m, (main,) + tuple(fnp.shape(m)[2:])) for m in main_cts]
    for j, x_at in enumerate(sweep.x_diff):
        pieces = ([main_cts[j]] if chunks else []) + ([tail_cts[j]] if tail else [])
        ct_xs[j] = fnp.zeros_for(xs[x_at]) if not pieces else \
            pieces[0] if len(pieces) == 1 else fnp.concatenate(pieces)
    ct_c, ct_k = ct
    return _by_operand(sweep, active, ct_c, ct_xs, ct_k)


# -- batching -------------------------------------------------------------------------
def loop_batch(prim: Any, args: Sequence[Any], shapes: Sequence[Any], params: dict[str, Any],
               size: int) -> Any:
    """``vmap`` of a loop.  A while loop's examples may take different numbers
    of steps (`while_batch`); any other loop runs its one trip count for all
    (`scan_batch`), unless it is derived from a while loop whose examples
    did not agree: its count is the first example's only (CountedDiffer: vmap
    records again with that while loop padded, `loops.Padding`)."""
    from .transforms.batching import CountedDiffer, trips_differ
    body = params["body"]
    if body.counted and trips_differ():
        raise CountedDiffer("vmap: a derivative of a while_loop whose examples take different "
                             "numbers of steps is recorded for the first example's count")
    if body.is_while:
        return while_batch(prim, args, shapes, params, size)
    with counted() if body.counted else contextlib.nullcontext():
        return scan_batch(prim, args, shapes, params, size)


def scan_batch(prim: Any, args: Sequence[Any], shapes: Sequence[Any], params: dict[str, Any],
               size: int) -> Any:
    """One loop over batched carries whose body is the body's batched replay.
    Every carry is batched (a step may make an unbatched one batched);
    per-step inputs keep their flags, with the batch axis moved behind the
    step axis; the result is each example's packed array, one row per example."""
    from .transforms.batching import _batch_all, batch_replay
    body, length = params["body"], params["length"]
    nc, nx = body.n_carry, body.n_xs
    carry = [_batch_all(a, s, size) for a, s in zip(args[:nc], shapes[:nc])]
    x_flags = [b for _, b in args[nc:nc + nx]]
    xs = [fnp.swapaxes(x, 0, 1) if b else x for x, b in args[nc:nc + nx]]
    consts = list(args[nc + nx:])

    def step(c: Any, x: Any) -> tuple[Any, Any]:
        ins = [(v, True) for v in c] + list(zip(x, x_flags)) + consts
        outs = batch_replay(body.tape, ins, size)
        avals = body.avals(body.tape.outputs)
        return ([_batch_all(o, a.shape, size) for o, a in zip(outs[:nc], avals[:nc])],
                [_batch_all(o, a.shape, size) for o, a in zip(outs[nc:], avals[nc:])])
    final, ys = scan(step, carry, xs, length=length, checkpoint=params.get("checkpoint") or None)
    return _rows(body, length, size, final, [fnp.swapaxes(y, 0, 1) for y in ys])


def _rows(body: LoopBody, length: int, size: int, final: Sequence[Any],
          ys: Sequence[Any]) -> Any:
    """The batched loop's result: each example's packed array, one row each."""
    dtype = packed_dtype(body.result_avals(length))
    rows = [fnp.reshape(v, (size, -1)) for v in list(final) + list(ys)]
    if not rows:
        return fnp.zeros((size, 0), dtype)
    return fnp.concatenate([fnp.astype(r, dtype) for r in rows], axis=1)


def while_batch(prim: Any, args: Sequence[Any], shapes: Sequence[Any],
                params: dict[str, Any], size: int) -> Any:
    """``vmap`` of a while loop, as JAX runs it: while any example's condition
    holds, one batched step, whose new carry each example takes only while
    its own condition holds (a finished example's carry stays its final
    value).  The loop was recorded with the first example's trip count; when
    every example takes that many steps (the batched scan's conditions say
    so) that scan is the answer, as fast as a fixed-count loop, else the
    masked loop (itself a while loop, so it differentiates, compiles with a
    guard on its count and batches again) runs max-over-examples steps.

    Derivatives: a finished example's step must add nothing, even where the
    body run past its end overflows.  Its body inputs are its final values
    behind a `where` on its condition with a stop_gradient on the other side,
    so the (possibly inf or NaN) partials of that step meet an exact zero
    from the `where`'s rule rather than a product with zero; the
    closed-over values enter the same way (batched, since a `where` selects
    per example)."""
    from .transforms.batching import _batch_all, mark_trips_differ
    from .vectorizing import in_vmap_trace
    body, n0 = params["body"], params["length"]
    nested = in_vmap_trace()  # an enclosing vmap batches this loop again: keep it a while loop
    if n0 == RUN_TIME:
        return _run_time_batch(body, args, shapes, size)
    if not nested:
        # (when it fails, under a trace, the try stays behind as a dead
        # instruction: no derivative reaches it and compiling removes it, which
        # costs less than trying on the values first and then recording)
        packed = scan_batch(prim, args, shapes, params, size)
        if _every_example_took(packed, body, n0):
            return packed
    mark_trips_differ()
    nc = body.n_carry
    user_avals = body.carry_avals[:-1]
    vals = [_batch_all(a, s, size) for a, s in zip(args[:nc - 1], shapes[:nc - 1])]
    going = _batch_all(args[nc - 1], (), size)
    step = _masked_step(body, list(args[nc:]), shapes[nc:], size)
    counts: list[int] = []
    final, done = while_(lambda state: fnp.any(state[1]), step, (vals, going), counts)
    if counts:
        found_count(body, counts[0])
    # the rows read as the first example's loop: every step went on, the last stopped
    conds = np.ones((size, n0), packed_dtype(body.result_avals(n0)))
    return _rows(body, n0, size, [_batch_all((v, True), a.shape, size)
                                  for v, a in zip(final, user_avals)] + [done], [conds])


def _run_time_batch(body: LoopBody, args: Sequence[Any], shapes: Sequence[Any],
                    size: int) -> Any:
    """vmap of a loop of run-time length: the masked loop of `while_batch`,
    which also counts each example's steps (the loop's last result)."""
    from .transforms.batching import _batch_all
    nc = body.n_carry
    vals = [_batch_all(a, s, size) for a, s in zip(args[:nc - 1], shapes[:nc - 1])]
    going = _batch_all(args[nc - 1], (), size)
    masked = _masked_step(body, list(args[nc:]), shapes[nc:], size)

    def step(state: Any) -> Any:
        (vals, going), n = state[:2], state[2]
        return (*masked((vals, going)), n + fnp.astype(going, np.float64))
    final, done, n = while_(lambda state: fnp.any(state[1]), step,
                            (vals, going, fnp.zeros((size,), np.float64)))
    return _rows(body, RUN_TIME, size, [_batch_all((v, True), a.shape, size)
                                        for v, a in zip(final, body.carry_avals)] + [done], [n])


def _every_example_took(packed: Any, body: LoopBody, length: int) -> bool:
    """Whether the batched loop's conditions show every example going on at
    every step and stopping after the last (the recorded trip count)."""
    value = np.asarray(value_of(packed))
    spans = layout(body, length)
    (f0, f1, _), (y0, y1, _) = spans[body.n_carry - 1], spans[body.n_carry]
    return not np.any(value[:, f0:f1]) and bool(np.all(value[:, y0:y1]))


def _masked_step(body: LoopBody, consts: Sequence[Any], const_shapes: Sequence[Any],
                 size: int) -> Any:
    """The batched body of `while_batch`: (values, conditions) -> the next."""
    from .transforms.batching import _batch_all, batch_replay
    nc = body.n_carry
    avals = body.avals(body.tape.outputs)

    def mask(going: Any, shape: Sequence[int]) -> Any:
        return fnp.reshape(going, (size,) + (1,) * len(shape))

    def frozen_rows(v: Any, going: Any, shape: Sequence[int]) -> Any:
        return frozen(v, mask(going, shape))

    def step(state: Any) -> Any:
        vals, going = state
        ins = [(frozen_rows(v, going, a.shape), True) for v, a in zip(vals, body.carry_avals)]
        for (k, batched), shape in zip(consts, const_shapes):
            if isinstance(k, Tracer) and _inexact(fnp.result_dtype(k)):
                ins.append((frozen_rows(_batch_all((k, batched), shape, size), going, shape),
                            True))
            else:
                ins.append((k, batched))
        outs = batch_replay(body.tape, ins[:nc - 1] + [(going, True)] + ins[nc - 1:], size)
        new = [fnp.where(mask(going, a.shape), _batch_all(o, a.shape, size), v)
               for o, a, v in zip(outs[:nc - 1], avals, vals)]
        return new, fnp.logical_and(going, _batch_all(outs[nc - 1], (), size))
    return step
