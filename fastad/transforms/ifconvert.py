"""If-conversion: per-element branches of a loop become a ``where``.

A loop ``for i: if p(x[i]): s = s + a(x[i]) else: s = s + b(x[i])`` records
one guard per iteration and, per iteration, only the branch it took.  When
the branch pattern changes between calls, every such guard makes the
compiled function retrace.  This pass builds, from a trace A (the pattern
of the call), the tape of the same loop with

    s = s + where(p(x[i]), a(x[i]), b(x[i]))

which holds for every pattern: both branches are computed, and ``where``
selects the value and, in the reverse sweep, the derivative of the branch
taken (its VJP gives the other branch exact zeros).

The branch not taken is recorded by running the function again with the
guards' outcomes forced (`core.guards.watching`): trace B takes the other
branch at every per-element guard (a guard whose line is recorded at least
MIN_RUN times), trace C at every other one.  The three traces are replayed
into one recording with common subexpressions shared, and the value each
chain link (`reroll._chains`: sums, writes and accumulations into an array)
adds is replaced, where the link reads it, by a placeholder of its own.
The conversion holds only if

- the three traces then agree on everything but those terms: the same
  outputs, the same predicates for the per-element guards and the same other
  guards (the branches change no shape, no write, no control flow, and the
  rest of the loop reads their results only through the chain);
- a link whose term differs between the traces belongs to the element of
  the last per-element guard recorded before it (in all three), and trace
  C (whose outcomes differ from A's at every other element, so that each
  element sees both outcomes of its neighbours) has at each link the term A
  or B recorded for that outcome: what an element's branch computes depends on its own outcome
  only; every per-element guard selects a term (one that selects none acts
  through Python state), and C takes the first branch a number of times
  neither A nor B does (a Python counter of the branches would differ);
- the terms are computed by primitives whose derivatives are finite wherever
  their value is (polynomials, sin, cos, exp, tanh, log1p, abs, division by
  constants: `SAFE`), so the zero cotangent the branch not taken receives
  stays zero; a guard checks at each call that both branches' terms are
  finite (a sum of their differences, times 0, is 0: an overflow or a NaN in
  the branch not taken would otherwise turn that zero into a NaN), and a
  call where they are not goes to the function's other traces.  Primitives
  whose derivatives are unbounded only next to a point (sqrt, log, 1/x and
  fractional powers at 0, arcsin at +-1: `SINGULAR`) are allowed with the
  same guard checking that none of their arguments, in either branch, lies
  that close to it.

- the branch's source (`branch_source.effect_free`) is an expression
  ``a if p else b``, or an ``if``/``else`` whose two suites only assign to
  the same targets and call nothing that could change Python state: state
  the tape cannot see (a flag flipped in one branch, a list appended to, a
  counter modulo 3) could otherwise agree across the three traces by chance.

Otherwise the function keeps its guards.  Values are bit-identical to the
branch taken: ``where`` copies the element.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..core.guards import GuardLog, PathLeft
from ..core.registry import registry
from ..core.tape import Instr, Tape
from ..core.tape import where as line_of
from ..core.tracer import bind, recording
from ..primitives.numpy_proxy import fnp
from . import branch_source
from .reroll import MIN_RUN, _chains, _TapeIndex

# primitives a converted branch may compute: their derivatives (of every
# order) are finite where their value is (pow: by a constant integer exponent
# >= 1; div: by a constant), so the zero cotangent of the branch not taken
# stays zero
SAFE = frozenset({"add", "sub", "mul", "neg", "square", "abs", "sin", "cos", "take",
                  "take_flat", "reshape", "broadcast_to", "astype", "positive", "pow", "div",
                  "exp", "exp2", "expm1", "log1p", "tanh", "sinh", "cosh", "arctan", "arcsinh",
                  "erf", "erfc", "expit", "log_expit", "ndtr", "logaddexp", "sign", "floor",
                  "ceil", "maximum", "minimum", "where", "sum", "eq", "ne", "lt", "le", "gt",
                  "ge", "logical_and", "logical_or", "logical_not", "stop_gradient"})
# and those whose derivatives are unbounded only next to a point (sqrt, log,
# 1/x at 0; arcsin at +-1): allowed with a guard that no argument of theirs,
# in either branch, lies within TINY of it, where a derivative of order five
# or less could overflow: such a call goes to the function's other traces.
# Per primitive: (argument, point, about |argument|) for each such point
SINGULAR = {"sqrt": ((0, 0.0, False),), "cbrt": ((0, 0.0, False),), "log": ((0, 0.0, False),),
            "log2": ((0, 0.0, False),), "log10": ((0, 0.0, False),),
            "reciprocal": ((0, 0.0, False),), "div": ((1, 0.0, False),),
            "pow": ((0, 0.0, False),), "arcsin": ((0, 1.0, True),), "arccos": ((0, 1.0, True),),
            "arctanh": ((0, 1.0, True),), "arccosh": ((0, 1.0, False),),
            "logit": ((0, 0.0, False), (0, 1.0, False))}
TINY = {np.dtype(np.float64): 1e-60, np.dtype(np.float32): 1e-7}  # TINY**-5 is finite


@dataclass
class Converted:
    """The forward tape with the per-element guards converted, and the source
    lines of those guards (what ``cache_info()`` reports)."""
    tape: Tape
    lines: list[str]


Rerun = Callable[[Sequence[bool]], tuple[Tape, GuardLog]]


def _per_element(tape: Tape, log: GuardLog) -> tuple[list[int], dict[int, Any]]:
    """The numbers of the per-element guards among those logged (a guard
    whose line is recorded at least MIN_RUN times), and each guard's line."""
    slots = set(log.slots)
    guard_line = {ins.out: ins.line for ins in tape.instrs if ins.out in slots}
    per_line = Counter(guard_line[s] for s in log.slots)
    return [k for k, s in enumerate(log.slots) if per_line[guard_line[s]] >= MIN_RUN], guard_line


def mixed(tape: Tape, log: GuardLog) -> bool:
    """Did the per-element guards of a first trace see both outcomes?  Then
    their pattern is no single vector guard's, and likely to change."""
    if len(log.slots) < MIN_RUN:
        return False
    flip, _ = _per_element(tape, log)
    return len({log.outcomes[k] for k in flip}) == 2


def convert(tape: Tape, log: GuardLog, examples: Sequence[Any], rerun: Rerun,
            namespace: dict[str, Any] | None = None) -> Converted | None:
    """``tape`` (trace A, outputs set, its guards in ``log``) with its
    per-element guards converted to ``where``, or None if it has none or
    they cannot be converted soundly.  ``rerun(forced)`` traces the function
    again on ``examples`` with the guards' outcomes forced; ``namespace``: the
    traced function's globals, for branches in source no loaded module holds."""
    if len(log.slots) < MIN_RUN:
        return None
    flip, guard_line = _per_element(tape, log)
    if not flip:
        return None
    for pos in {guard_line[log.slots[k]] for k in flip}:  # Python state the tape cannot see
        file, line = pos.resolve() if hasattr(pos, "resolve") else pos if pos else ("", 0)
        if not branch_source.effect_free(file, line,
                                         branch_source.namespace_of(file) or namespace or {}):
            return None
    outcomes = log.outcomes
    forced_b = list(outcomes)
    forced_c = list(outcomes)
    for rank, k in enumerate(flip):
        forced_b[k] = not outcomes[k]
        if rank % 2 == 0:
            forced_c[k] = not outcomes[k]
    _count_apart(forced_c, outcomes, flip)
    try:
        tape_b, log_b = rerun(forced_b)
        tape_c, log_c = rerun(forced_c)
    except (Exception, PathLeft):  # noqa: BLE001  (a branch not taken fails: keep the guards)
        return None
    if log_b.outcomes != forced_b or log_c.outcomes != forced_c:
        return None  # a branch changed how many guards the loop records
    union = _Union(examples)
    traces = [union.add(t, lg, flip) for t, lg in ((tape, log), (tape_b, log_b), (tape_c, log_c))]
    plan = _plan(union, traces, outcomes, forced_c, flip)
    if plan is None:
        return None
    lines = sorted({line_of(guard_line[log.slots[k]]) for k in flip})
    return _emit(union, traces[0], plan, examples, lines, guard_line[log.slots[flip[0]]])


def _count_apart(forced_c: list[bool], outcomes: list[bool], flip: list[int]) -> None:
    """Flip more of C's odd elements until C takes the first branch a number
    of times that neither A nor B does: Python state counting the branches
    taken (a counter, or an accumulator left a Python float) then differs
    between the traces, and the conversion is refused."""
    def count(pattern: list[bool]) -> int:
        return sum(pattern[k] for k in flip)
    taken = {count(outcomes), len(flip) - count(outcomes)}
    for rank in range(1, len(flip), 2):
        if count(forced_c) not in taken:
            return
        k = flip[rank]
        forced_c[k] = not forced_c[k]


# -- the three traces in one recording -------------------------------------------------
class _Trace:
    """One trace replayed into the union: its outputs, the predicates of its
    per-element guards, its other guards, and per chain the term of each link."""

    def __init__(self) -> None:
        self.outputs: list[Any] = []
        self.preds: list[Any] = []
        self.kept: list[tuple[Any, Any]] = []
        self.chains: list[tuple[str, list[Any]]] = []
        # per chain and link: the number of the per-element guards recorded
        # before it, less one (the guard of its element, if it has one)
        self.guard_of: list[list[int]] = []
        self.ok = True


class _Union:
    """Traces replayed into one graph, each instruction a node once per
    distinct (primitive, parameters, arguments): what the traces compute
    alike is one node.  Values are ('t', input number), ('n', node),
    ('c', constant key) or, for chain link k's term, the placeholder
    ('p', chain, k)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.examples = examples
        self.memo: dict[Any, Any] = {}
        self.consts: dict[Any, Any] = {}
        self.producer: dict[Any, tuple[str, tuple[Any, ...], Any]] = {}
        self.avals: dict[Any, Any] = {}
        self.lines: dict[Any, Any] = {}  # the user's line of each node, as first recorded

    def const(self, value: Any) -> Any:
        a = np.asarray(value)
        key = ("c", type(value).__name__, a.dtype.str, a.shape, a.tobytes())
        self.consts.setdefault(key, value)
        return key

    def add(self, tape: Tape, log: GuardLog, flip: list[int]) -> _Trace:
        trace = _Trace()
        ix = _TapeIndex(tape)
        chains = [c for c in _chains(ix, exact_sums=False) if c.kind != "guard"]
        # each link's read of its term becomes the link's placeholder (other
        # reads of the same value keep it: they are not the branch's result)
        at_link: dict[tuple[int, int], Any] = {}  # (reader's output, argument) -> link
        link_of: dict[int, tuple[int, int]] = {}
        for c, chain in enumerate(chains):
            trace.chains.append((chain.kind + str(len(chain.links)), [None] * len(chain.terms)))
            trace.guard_of.append([-1] * len(chain.links))
            for k, (term, link) in enumerate(zip(chain.terms, chain.links)):
                link_of[link.out] = (c, k)
                reader = _reader(ix, chain, link, term)
                if reader is None or reader in at_link:
                    trace.ok = False
                    continue
                at_link[reader] = (c, k)
        flipped = {log.slots[k] for k in flip}
        env: dict[int, Any] = {}

        for n, slot in enumerate(tape.inputs):
            self.avals[("t", n)] = tape.avals[slot]
            env[slot] = ("t", n)
        for slot, value in tape.consts.items():
            env[slot] = self.const(value)
        for ins in tape.instrs:
            args = tuple(env[s] for s in ins.ins)
            prim = ins.prim
            if at_link and prim == "sub" and (ins.out, 1) in at_link:
                # a link subtracting its term adds the term's negation (s - t
                # is s + (-t) in IEEE arithmetic, bit for bit), so that
                # ``s = s + a`` and ``s = s - b`` are one link with two terms
                prim, args = "add", (args[0], self._node("neg", (args[1],), (), ins.line,
                                                         tape.avals[ins.ins[1]]))
            if at_link:
                args = tuple(_at_link(trace, at_link, ins.out, n, a) for n, a in enumerate(args))
            found = link_of.get(ins.out)
            if found is not None:
                trace.guard_of[found[0]][found[1]] = len(trace.preds) - 1
            if registry[prim].effect == "guard":
                if ins.out in flipped:
                    trace.preds.append(args[0])
                else:
                    trace.kept.append((args[0], ins.params))
                continue
            env[ins.out] = self._node(prim, args, ins.params, ins.line, tape.avals[ins.out])
        trace.outputs = [env[s] for s in tape.outputs]
        return trace

    def _node(self, prim: str, args: tuple[Any, ...], params: Any, line: Any, aval: Any) -> Any:
        """The node of ``prim(*args, **params)``, made if it is new."""
        key = (prim, params, args)
        v = self.memo.get(key)
        if v is None:
            v = self.memo[key] = ("n", len(self.memo))
            self.producer[v] = (prim, args, params)
            self.lines[v] = line
            self.avals[v] = aval
        return v


def _reader(ix: _TapeIndex, chain: Any, link: Instr, term: int) -> tuple[int, int] | None:
    """(output, argument number) of the instruction by which ``link`` reads
    its term: the link itself, or the ``add`` of ``out[p] = out[p] + t``."""
    reader = link
    if chain.kind != "sum" and term not in link.ins[2:]:
        reader = ix.producer.get(link.ins[2])
        if reader is None or reader.prim != "add":
            return None
    # the last position holding it: s + s adds its second operand
    positions = [n for n, s in enumerate(reader.ins) if s == term]
    return (reader.out, positions[-1]) if positions else None


def _at_link(trace: _Trace, at_link: dict[tuple[int, int], Any], out: int, n: int, v: Any) -> Any:
    found = at_link.get((out, n))
    if found is None:
        return v
    c, k = found
    trace.chains[c][1][k] = v
    return ("p", c, k)


# -- what to convert ---------------------------------------------------------------------
@dataclass
class _Plan:
    """Per chain and link: (guard number, term if it holds, term if not), or
    the single term when the traces agree on it."""
    links: dict[tuple[int, int], tuple[int | None, Any, Any]]
    singular: set[Any]  # the branches' nodes computed next to a singular point (`SINGULAR`)


def _plan(union: _Union, traces: list[_Trace], outcomes: list[bool], forced_c: list[bool],
          flip: list[int]) -> _Plan | None:
    a, b, c = traces
    if not (a.ok and b.ok and c.ok):
        return None
    if not (a.outputs == b.outputs == c.outputs and a.preds == b.preds == c.preds
            and a.kept == b.kept == c.kept and len(a.preds) == len(flip)):
        return None
    if [name for name, _ in a.chains] != [name for name, _ in b.chains] or \
            [name for name, _ in a.chains] != [name for name, _ in c.chains]:
        return None
    links: dict[tuple[int, int], tuple[int | None, Any, Any]] = {}
    checked: set[Any] = set()
    singular: set[Any] = set()
    selecting: set[int] = set()  # the per-element guards that select a term
    for n, ((_, terms_a), (_, terms_b), (_, terms_c)) in enumerate(zip(a.chains, b.chains,
                                                                       c.chains)):
        if terms_a == terms_b:
            if terms_c != terms_a:
                return None
            links.update(((n, k), (None, t, t)) for k, t in enumerate(terms_a))
            continue
        if not a.guard_of[n] == b.guard_of[n] == c.guard_of[n]:
            return None
        for k, (ta, tb, tc) in enumerate(zip(terms_a, terms_b, terms_c)):
            if ta == tb == tc:
                links[(n, k)] = (None, ta, ta)
                continue
            # a link whose term the branches change belongs to the element of
            # the last per-element guard before it (``s = s + a + b`` in both
            # branches: two links, each its where, (s + a) + b the bits of
            # the branch taken)
            number = a.guard_of[n][k]
            if number < 0:
                return None
            guard = flip[number]
            if tc != (ta if forced_c[guard] == outcomes[guard] else tb):
                return None  # the branch depends on more than its own outcome
            if not (_safe(union, ta, checked, singular)
                    and _safe(union, tb, checked, singular)):
                return None
            if _aval(union, ta) != _aval(union, tb):
                return None
            taken, other = (ta, tb) if outcomes[guard] else (tb, ta)
            links[(n, k)] = (number, taken, other)
            selecting.add(number)
    if len(selecting) != len(flip):
        # a guard that selects no term acts through Python state (a float
        # accumulator, a counter) or not at all: keep the guards
        return None
    return _Plan(links, singular)


def _aval(union: _Union, v: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of a node, an input or a constant."""
    if v[0] == "c":
        value = np.asarray(union.consts[v])
        return value.shape, value.dtype
    aval = union.avals[v]
    return tuple(aval.shape), np.dtype(aval.dtype)


def _safe(union: _Union, root: Any, checked: set[Any], singular: set[Any]) -> bool:
    """Is every primitive below ``root`` (down to inputs, constants and
    placeholders) one whose derivative is finite where its value is, or
    finite away from a point (`SINGULAR`: those nodes go to ``singular``)?"""
    stack = [root]
    while stack:
        v = stack.pop()
        if v[0] != "n" or v in checked:
            continue
        checked.add(v)
        prim, args, _ = union.producer[v]
        if prim == "pow":
            if args[1][0] != "c":
                return False  # a traced exponent: its derivative reads log(base)
            if not _constant_integer_exponent(union, args[1]):
                singular.add(v)
        elif prim == "div":
            if args[1][0] != "c":
                singular.add(v)
        elif prim in SINGULAR:
            singular.add(v)
        elif prim not in SAFE:
            return False
        stack.extend(args)
    return True


def _near_singular(prim: str, args: Sequence[Any]) -> Any:
    """0.0 where no argument of ``prim`` lies within TINY of a point where its
    derivatives are unbounded (`SINGULAR`), NaN elsewhere, summed."""
    total = 0.0
    for k, point, about_abs in SINGULAR[prim]:
        u = args[k]
        value = getattr(u, "value", u)
        tiny = TINY.get(np.result_type(value), 1e-7)
        distance = fnp.abs((fnp.abs(u) if about_abs else u) - point)
        total = total + _summed(fnp.where(distance > tiny, 0.0, np.nan))
    return total


def _constant_integer_exponent(union: _Union, v: Any) -> bool:
    if v[0] != "c":
        return False
    e = np.asarray(union.consts[v])
    return e.size == 1 and bool(np.isfinite(e)) and float(e) == round(float(e)) and float(e) >= 1


# -- the converted tape ------------------------------------------------------------------
def _emit(union: _Union, a: _Trace, plan: _Plan, examples: Sequence[Any],
          lines: list[str], line: Any) -> Converted | None:
    """Record trace A's outputs afresh with each placeholder computed as its
    term, a ``where`` of the two branches' where they differ, and a guard that
    every branch's term is finite."""
    with recording() as builder:
        inputs = [builder.new_input(v) for v in examples]
        env: dict[Any, Any] = {("t", n): new for n, new in enumerate(inputs)}
        check: list[Any] = [0.0]

        def ready(v: Any) -> bool:
            return v in env or v[0] == "c"

        def get(v: Any) -> Any:
            return union.consts[v] if v[0] == "c" else env[v]

        def children(v: Any) -> list[Any]:
            if v[0] == "p":
                guard, taken, other = plan.links[(v[1], v[2])]
                kids = [taken, other]
                return kids + [a.preds[guard]] if guard is not None else kids
            return list(union.producer[v][1])

        def compute(v: Any) -> Any:
            if v[0] == "p":
                guard, taken, other = plan.links[(v[1], v[2])]
                if guard is None:
                    return get(taken)
                t, f = get(taken), get(other)
                builder.line_override = line
                check[0] = check[0] + _difference(t, f)
                return fnp.where(get(a.preds[guard]), t, f)
            prim, args, params = union.producer[v]
            builder.line_override = union.lines[v]
            values = [get(x) for x in args]
            if v in plan.singular:
                check[0] = check[0] + _near_singular(prim, values)
            return bind(registry[prim], *values, **dict(params))

        for root in [*a.outputs, *(p for p, _ in a.kept)]:
            stack, opened = [root], set()
            while stack:  # iteratively: chains are as long as loops
                v = stack[-1]
                if ready(v):
                    stack.pop()
                    continue
                pending = [k for k in children(v) if not ready(k)]
                if pending and v not in opened:
                    opened.add(v)
                    stack.extend(reversed(pending))
                    continue
                if pending:
                    return None  # a predicate that reads its own branch's result
                env[v] = compute(stack.pop())
        for pred, params in a.kept:
            bind(registry["guard"], get(pred), **dict(params))
        builder.line_override = line  # the finiteness guard belongs to the converted `if`
        finite = bind(registry["eq"], check[0] * 0.0, 0.0)
        if not bool(np.asarray(getattr(finite, "value", finite))):
            return None  # a branch's term is not finite at this input: keep the guards
        if finite is not check[0] and hasattr(finite, "value"):
            bind(registry["guard"], finite, expected=True)
        builder.tape.outputs = [builder.slot_of(get(v)) for v in a.outputs]
    return Converted(builder.tape, lines)


def _difference(t: Any, f: Any) -> Any:
    """Finite if both terms are (summed, finite unless they are not, or
    their sum overflows: the guard then only sends a call to other traces)."""
    return _summed(t - f)


def _summed(z: Any) -> Any:
    """``z`` summed to a scalar (a scalar as it is)."""
    return fnp.sum(z) if np.ndim(getattr(z, "value", z)) else z
