"""A ``loop`` instruction lowered to the VM's LOOP instruction.

The body tape is lowered once, whatever the trip count, into code of its own
(`_BodyLowerer`: the body's instructions ending with their HALT), which the
LOOP instruction carries right after its two words (csrc/opcodes.h) and runs
once per step over the same arena (csrc/loop.c).  The body lowerer shares
the outer program's planner, buffers, constants and pools, so the body's
values get places in the same arena, none of them overlapping a value live
across the loop; its references are resolved when the outer program is
finished.  Around the LOOP the rule emits plain instructions:

    COPY_V    the initial carry into the body's carry input slots, and each
              closed-over value into its input slot, once per loop (they
              stay there: the body never writes them, see `_BodyLowerer.plan`)
    LOOP      per step t: row t of each stacked input into its slot, the
              body, each per-step output into row t of the packed result,
              the new carry through a scratch region into the carry slots
    COPY_V /  the final carry (in the carry slots after the last step) into
    CAST_V    the packed result

Per-step outputs are converted by the body to the packed result's dtype
(a while loop's boolean condition becomes float64 there), so the LOOP only
copies bytes.  A loop in a body lowers the same way, inside the body's code:
reverse mode's loops over chunks, which hold inner loops, run in the VM.

A while loop whose count is read at run time (length `RUN_TIME`) is a LOOP
of trips -1: it steps while its carried condition holds and writes its step
count after the final carry.  Integer values of a body (a counter carried,
the step number used as data) are held as float64 words (`on_floats`), exact
below 2**53, where the body only adds, compares and selects them.

What the LOOP cannot take (`refusal`) stays a host call (`loop_host`): a body
that computes with integers otherwise (an index, a float cast to an
integer), with a primitive the VM lacks or a complex value, or nested
deeper than the VM allows.  Those need values or code the arena has no
place for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.registry import registry
from ..core.tape import Aval, Instr, Tape
from ..transforms.analysis import affine, c_strides
from ..primitives.loops import RUN_TIME, LoopBody, layout, packed_dtype
from .arena import END, Ref
from .vm_header import CONSTANTS, DTYPE_CODE

if TYPE_CHECKING:
    from .lower import _Lowerer

MAX_DEPTH = CONSTANTS["FASTAD_LOOP_MAX_DEPTH"]


def _used(body: LoopBody) -> set[int]:
    """The body's slots its outputs need: the outputs, the instructions kept for
    their effects, and the operands of the instructions that compute them (as
    lowering keeps them)."""
    tape = body.tape
    needed = set(tape.outputs)
    for ins in reversed(tape.instrs):
        if ins.out in needed or registry[ins.prim].effect is not None:
            needed.add(ins.out)
            needed.update(live_operands(ins))
    return needed


def live_operands(ins: Instr, tape: Tape | None = None,
                  consts: dict[int, Any] | None = None) -> tuple[int, ...]:
    """The operands a loop instruction reads: its carries, and the stacked and
    closed-over values its body uses (reverse mode passes a fori_loop's
    integer step numbers to loops whose bodies ignore them); given the tape
    it is in, a stacked value read through a reversing take is read from
    that take's operand instead (`row_sources`)."""
    if ins.prim != "loop":
        return ins.ins
    body = ins.kwargs["body"]
    used = _used(body)
    rows = row_sources(ins, tape, consts) if tape is not None else {}
    return tuple(rows[k][0] if k in rows else s for k, s in enumerate(ins.ins)
                 if k < body.n_carry or body.tape.inputs[k] in used)


def row_sources(ins: Instr, tape: Tape, consts: Any) -> dict[int, tuple[int, int, int]]:
    """Stacked operands of loop ``ins`` that are a ``take`` of whole rows at an
    affine row index (``flip(x, 0)``, which a reverse scan and reverse mode's
    loops over chunks apply to their stacked values): operand position ->
    (the take's operand, its first row's first element, the elements from
    one row to the next).  The LOOP reads those rows in place, so the
    reversed copy (as large as the stacked value) is never made."""
    producers = {i.out: i for i in tape.instrs}
    body = ins.kwargs["body"]
    found = {}
    for k in range(body.n_carry, body.n_carry + body.n_xs):
        take = producers.get(ins.ins[k])
        if take is None or take.prim != "take" or take.ins[1] not in consts:
            continue
        idx = np.asarray(consts[take.ins[1]])
        row_shape = tuple(body.x_avals[k - body.n_carry].shape)
        size = int(np.prod(tape.avals[take.ins[0]].shape, dtype=np.int64))
        if idx.dtype.kind not in "iu" or idx.ndim != 1 + len(row_shape) \
                or tuple(idx.shape[1:]) != row_shape or idx.size == 0 or idx.min() < 0 \
                or idx.max() >= size:
            continue
        pattern = affine(idx)
        if pattern is None:
            continue
        start, strides = pattern
        inner = c_strides(row_shape)
        if any(d > 1 and s != i for d, s, i in zip(row_shape, strides[1:], inner)):
            continue  # rows not contiguous in the source
        found[k] = (take.ins[0], start, strides[0])
    return found


# Instructions whose integer operands and results the VM may hold as float64
# words: exact for integers below 2**53 (a counter's ``k + 1``, ``k < n``).
_EXACT_ON_FLOATS = frozenset({"add", "sub", "mul", "neg", "abs", "maximum", "minimum", "sign",
                              "lt", "le", "gt", "ge", "eq", "ne", "where", "div", "reshape",
                              "broadcast_to", "stop_gradient", "astype", "loop"})
_F64, _I64 = np.dtype(np.float64), np.dtype(np.int64)


def rounds_integers(body: LoopBody) -> bool:
    """Whether ``body`` computes integers that may round in float64 words
    (`_may_round`), in it or in a loop it holds: the reference interpreter
    runs such a loop, in their dtype."""
    stack = [body.tape]
    while stack:
        tape = stack.pop()
        for ins in tape.instrs:
            if _integer(tape, ins) and _may_round(ins, tape.consts):
                return True
            if ins.prim == "loop":
                stack.append(ins.kwargs["body"].tape)
    return False


def rounding_integers(tape: Any) -> list[Instr]:
    """The instructions of ``tape`` outside loops whose integers may pass
    2**53 (`_may_round`: a loop's body replayed in the tape, a step of its
    derivative) and those that read such integers (until a remainder
    brings them back, which may be decomposed: every reader of them, of any
    dtype, is one): held as float64 words, as the compiled backends hold
    integers, they would round; the reference interpreter runs them in their
    dtype, as host calls."""
    instrs = tape.instrs
    first = next((k for k, ins in enumerate(instrs) if ins.prim == "mul"  # (the usual: none)
                  and _integer(tape, ins) and _may_round(ins, tape.consts)), None)
    if first is None:
        return []
    big: set[int] = set()
    out = []
    for ins in instrs[first:]:
        integer = _integer(tape, ins)
        if not big.isdisjoint(ins.ins) or (integer and _may_round(ins, tape.consts)):
            out.append(ins)
            if integer and ins.prim not in _BOUNDING:
                big.add(ins.out)
    return out


def _integer(tape: Any, ins: Instr) -> bool:
    return np.dtype(tape.avals[ins.out].dtype).kind in "iu"


#: integer operations whose result stays below their constant operand's
#: magnitude (``k % 2**31``, ``k & 255``), whatever the other holds
_BOUNDING = frozenset({"remainder", "fmod", "bitwise_and"})


def _may_round(ins: Instr, consts: dict[int, Any]) -> bool:
    """Whether an integer product of ``ins`` may pass 2**53, where float64
    words round and int64 does not, though the loop's results (checked by
    `pack`) stay below it: a product of two computed values (``a * b % m``)
    or by a constant past 2**21 (``c * 1103515245 % m``), which take a value
    of 2**32 past it.  Not caught: a value past 2**32 times a smaller
    constant, and sums of values near 2**53 (a counter's ``k + 1``, an
    accumulated ``s + i``, stay far below it; checking every sum would send
    those loops to the interpreter, 100x slower)."""
    if ins.prim != "mul":
        return False
    factors = [np.abs(consts[s]) for s in ins.ins if s in consts]
    return not factors or any(np.any(f > _SMALL_FACTOR) for f in factors)


_SMALL_FACTOR = 2 ** 21


def on_floats(body: LoopBody) -> LoopBody | None:
    """``body`` with its integer values held as float64 (the VM has no integer
    registers), itself when it has none; None when it computes with integers
    other than int64 ones by `_EXACT_ON_FLOATS` (an index, a cast of a float
    to an integer, a narrower or unsigned integer, which wraps around where a
    float would not, or products that may pass 2**53, `rounds_integers`),
    which then stays off the LOOP.  Integer constants read only as indices
    keep their dtype.  Nested loop bodies are converted the same way.  The
    result is kept on the body (``_floats``; False: None)."""
    cached = body._floats
    if cached is not None:
        return cached or None
    if rounds_integers(body):
        body._floats = False
        return None
    tape, used = body.tape, _used(body)
    ints = {s for s, a in enumerate(tape.avals) if np.dtype(a.dtype).kind in "iu"}
    data, index, instrs = set(), set(), []
    data_uses = []  # positions in instrs of the instructions that compute on integer data
    for ins in tape.instrs:
        touched = [s for s in (*ins.ins, ins.out) if s in ints]
        if not touched or ins.out not in used:
            instrs.append(ins)
            continue
        if ins.prim not in _EXACT_ON_FLOATS or any(tape.avals[s].dtype != _I64 for s in touched) \
                or (ins.prim == "astype" and ins.out in ints
                    and np.dtype(tape.avals[ins.ins[0]].dtype).kind == "f"):
            if ins.out in ints or any(s not in tape.consts for s in ins.ins if s in ints):
                body._floats = False
                return None
            index.update(touched)
            instrs.append(ins)
            continue
        data.update(touched)
        data_uses.append(len(instrs))
        if ins.prim == "loop":
            inner = on_floats(ins.kwargs["body"])
            if inner is None:
                body._floats = False
                return None
            ins = ins._replace(params=tuple((k, inner if k == "body" else v)
                                            for k, v in ins.params))
        instrs.append(ins)
    data |= ints & (set(tape.inputs) | set(tape.outputs))
    both = data & index
    if both - set(tape.consts):
        body._floats = False
        return None
    if not data:
        body._floats = body
        return body
    # an integer constant read as an index and as data (the exponent of
    # ``z ** 3`` and the 3 of its derivative ``3 * z ** 2``): data reads a
    # float64 copy of it, the index reads it as it is
    avals, consts = list(tape.avals), dict(tape.consts)
    copies = {}
    for s in sorted(both):
        copies[s] = len(avals)
        avals.append(avals[s])
        consts[copies[s]] = consts[s]
    for k in data_uses if copies else ():
        instrs[k] = instrs[k]._replace(ins=tuple(copies.get(s, s) for s in instrs[k].ins))
    data = (data - both) | set(copies.values())
    avals = [Aval(a.shape, _F64) if s in data else a for s, a in enumerate(avals)]
    consts = {s: np.asarray(v, _F64) if s in data else v for s, v in consts.items()}
    new = Tape(list(tape.inputs), list(tape.outputs), consts, instrs, avals)
    converted = LoopBody(new, body.n_carry, body.n_xs, body.is_while, body.counted)
    converted._floats = converted
    body._floats = converted
    return converted


def refusal(ins: Instr, depth: int = 1) -> str | None:
    """Why the VM's LOOP cannot run ``ins`` (a loop instruction), or None."""
    from .lower_rules import _RULES, REFUSED
    body = on_floats(ins.kwargs["body"])
    if body is None:
        return ("a body whose integers may pass 2**53" if rounds_integers(ins.kwargs["body"])
                else "a body that computes with integers (other than counting)")
    if depth > MAX_DEPTH:
        return f"loops nested more than {MAX_DEPTH} deep"
    tape, used = body.tape, _used(body)
    for aval in body.carry_avals:
        if np.dtype(aval.dtype) not in DTYPE_CODE:
            return f"a {aval.dtype} carry (the VM holds float and bool values)"
    if packed_dtype(body.result_avals(ins.kwargs["length"])) not in DTYPE_CODE:
        return "complex results"
    for s in tape.inputs:
        if s in used and np.dtype(tape.avals[s].dtype) not in DTYPE_CODE:
            return f"a body that uses a {tape.avals[s].dtype} value"
    native = {p.name for p in _RULES}
    for inner in tape.instrs:
        if inner.out not in used:  # dead: not lowered
            continue
        if inner.prim == "loop":
            why = refusal(inner, depth + 1)  # (its body converted on its own)
            if why is not None:
                return why
        elif inner.prim not in native:
            return f"a body that runs {inner.prim}"
        elif (rule := REFUSED.get(registry[inner.prim])) and (why := rule(inner)):
            return f"a body that runs {inner.prim} of {why}"  # (polygamma of order n > 0)
        elif np.dtype(tape.avals[inner.out].dtype) not in DTYPE_CODE:
            return f"a body that computes {tape.avals[inner.out].dtype} values"
    return None


def _body_lowerer(parent: "_Lowerer", body: LoopBody, ys_dtype: np.dtype) -> Any:
    from .lower import _Lowerer

    class _BodyLowerer(_Lowerer):
        """The body's instructions, lowered into the outer program's arena."""

        def __init__(self) -> None:
            super().__init__(body.tape)
            for shared in ("planner", "buffers", "const_bytes", "const_by_value", "meta",
                           "meta_at", "index", "loop_bufs"):
                setattr(self, shared, getattr(parent, shared))
            self.index_len = parent.index_len
            self.used = _used(body)
            self.out_refs: list[Ref] = []

        def plan(self) -> list[Instr]:
            kept = super().plan()
            # closed-over values are copied in once per loop: no step may
            # overwrite them or reuse their place
            for s in body.tape.inputs[body.n_carry + body.n_xs:]:
                if s in self.used:
                    self.last_use[s] = END
            return kept

        def place_inputs(self) -> None:
            # an unused integer input (the step number of a fori_loop whose
            # body ignores it) gets no slot: the LOOP never copies it.  A carry always has its slot: the steps write it
            for k, s in enumerate(body.tape.inputs):
                if s in self.used or k < body.n_carry:
                    super().define(s)

        def before_halt(self) -> None:
            tape = body.tape
            dtypes = [np.dtype(a.dtype) for a in body.carry_avals] + \
                [ys_dtype] * (len(tape.outputs) - body.n_carry)
            self.out_refs = [self.read(s, d) for s, d in zip(tape.outputs, dtypes)]

    return _BodyLowerer()


def _nbytes(aval: Any, dtype: Any = None) -> int:
    return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(dtype or aval.dtype).itemsize


def lower_loop(lw: "_Lowerer", ins: Instr) -> None:
    body = on_floats(ins.kwargs["body"])
    assert body is not None  # `refusal` said so
    length: int = ins.kwargs["length"]
    nc, nx = body.n_carry, body.n_xs
    tape = body.tape
    results = body.result_avals(length)
    pdtype = packed_dtype(results)
    spans = layout(body, length)
    used = _used(body)
    in_avals = body.avals(tape.inputs)
    # by position (lw.operands holds the live ones only), stacked values read
    # in place through a reversing take where `row_sources` found one
    rows = row_sources(ins, lw.tape, lw.consts)
    operands = [rows[k][0] if k in rows else s for k, s in enumerate(ins.ins)]
    outer = [lw.read(s, np.dtype(a.dtype)) if tape.inputs[k] in used or k < nc else None
             for k, (s, a) in enumerate(zip(operands, in_avals))]
    packed = lw.define(ins.out)
    carry_bytes = sum(_nbytes(a) for a in body.carry_avals)
    scratch = lw.temp(carry_bytes)
    lw.loop_bufs.add(packed.buf)
    lw.loop_bufs.update(outer[k].buf for k in range(nc, nc + nx) if outer[k] is not None)

    first = len(lw.buffers)
    sub = _body_lowerer(lw, body, pdtype)
    sub.emit_code(getattr(lw, "fusing", True))
    lw.index_len = sub.index_len

    def copy(dst: Ref, src: Ref, aval: Any) -> None:
        n = int(np.prod(aval.shape, dtype=np.int64))
        if n:
            dt = np.dtype(aval.dtype)
            lw.emit("COPY_V", lw.dt(dt), (dst, dt), (src, dt), n)

    # the initial carry and the closed-over values into the body's slots
    for k, s in enumerate(tape.inputs):
        if (k < nc or k >= nc + nx) and s in sub.loc:
            copy(sub.loc[s], outer[k], in_avals[k])

    def byte(ref: Ref) -> tuple[str, Ref, int]:
        return ("ref", ref, 1)

    # a run-time count is written after the final carry; its loop has no rows
    count = byte(Ref(packed.buf, packed.offset + spans[-1][0] * pdtype.itemsize)) \
        if length == RUN_TIME else -1
    ys = [] if length == RUN_TIME else list(enumerate(body.y_avals))
    words: list[Any] = [length, nc, 0, len(ys), byte(scratch), count]
    for k in range(nc):
        s = tape.inputs[k]
        words += [byte(sub.loc[s]), byte(sub.out_refs[k]), _nbytes(in_avals[k]), 0]
    nxs = 0
    for k in range(nc, nc + nx):
        s = tape.inputs[k]
        if s in sub.loc:
            row, itemsize = _nbytes(in_avals[k]), np.dtype(in_avals[k].dtype).itemsize
            _, start, stride = rows.get(k, (None, 0, row // itemsize))
            base = Ref(outer[k].buf, outer[k].offset + start * itemsize)
            words += [byte(sub.loc[s]), byte(base), row, stride * itemsize]
            nxs += 1
    words[2] = nxs
    for j, aval in ys:
        start = spans[nc + j][0]
        row = _nbytes(aval, pdtype)
        words += [byte(sub.out_refs[nc + j]),
                  byte(Ref(packed.buf, packed.offset + start * pdtype.itemsize)), row, row]
    lw.emit("LOOP", lw.descriptor(words), len(sub.code))
    lw.code.extend(sub.code)

    # the final carry, in the carry slots after the last step, into the result
    for k in range(nc):
        aval, start = in_avals[k], spans[k][0]
        n = int(np.prod(aval.shape, dtype=np.int64))
        if not n:
            continue
        dst = Ref(packed.buf, packed.offset + start * pdtype.itemsize)
        src, dt = sub.loc[tape.inputs[k]], np.dtype(aval.dtype)
        if dt == pdtype:
            lw.emit("COPY_V", lw.dt(dt), (dst, dt), (src, dt), n)
        else:
            lw.emit("CAST_V", lw.dt(pdtype), lw.dt(dt), (dst, pdtype), (src, dt), n)
    # the body's places are free once the loop has run
    for b in range(first, len(lw.buffers)):
        buf = lw.buffers[b]
        if not buf.const and not buf.bound and not buf.freed:
            buf.freed = True
            lw.planner.release(buf.addr, buf.nbytes)
