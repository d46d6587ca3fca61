"""Loop re-rolling: scalar Python loops become vector instructions.

A Python loop ``for i in range(n): s = s + term(x[i], x[i+1], ...)`` traces to
an unrolled chain of scalar ``add``s whose terms are isomorphic expression
DAGs, differing only in the flat indices they read from arrays and in the
scalar constants they use.  This pass finds such chains; where a run of
consecutive terms is isomorphic and every varying index is an arithmetic
progression, it replaces the run by the term computed once on vectors
(``take`` with an index range, constants gathered into arrays) and a
``sum``.  The same holds for a chain of ``scatter_set``s writing terms into
``out[i]``.

Exactness: the vector code computes each term with the same operations as
the scalar code, so terms are bit-identical; only the summation order of a
rerolled sum changes (pairwise summation instead of left to right).  Pass
``exact_sums=True`` to keep sums sequential (those chains then stay
unrolled).

Differentiation, the optimizer and the backends then see vector code: a
gradient of a rerolled loop costs what the gradient of the vectorized
function costs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..primitives import elementwise
from ..primitives.registry import fnp, registry
from ..tape import Instr, Tape
from ..tracer import bind, recording

_ELEMENTWISE = (set(elementwise.UNARY) | set(elementwise.UNARY_ZERO_DERIVATIVE)
                | set(elementwise.BINARY) | set(elementwise.BINARY_ZERO_DERIVATIVE)
                | {"where", "astype"})
MIN_RUN = 4


class _Term:
    """One term of a chain: its DAG in canonical order, and the per-term
    values at the positions where terms may differ."""

    def __init__(self, tape: Tape, producer: dict[int, Instr], root: int) -> None:
        self.signature: list[Any] = []
        self.varying: list[Any] = []  # per varying position: an index or a constant
        self.body: list[int] = []     # slots computed inside the term
        self._number: dict[int, int] = {}
        self._tape, self._producer = tape, producer
        self.ok = True
        self.root = self._visit(root)

    def _visit(self, slot: int) -> int:
        if slot in self._number:
            return self._number[slot]
        tape, ins = self._tape, self._producer.get(slot)
        aval = tape.avals[slot]
        if slot in tape.consts:
            value = tape.consts[slot]
            if np.ndim(value) == 0 and np.result_type(value).kind in "fiub":
                node: Any = ("const", type(value).__name__, np.result_type(value).str)
                self.varying.append(value)
            else:
                node = ("shared", slot)
        elif ins is None or aval.shape != ():
            node = ("shared", slot)
        elif (ins.prim == "take" and ins.ins[1] in tape.consts
              and np.ndim(tape.consts[ins.ins[1]]) == 0):
            node = ("take", ins.ins[0])  # the array must be the same in every term
            self.varying.append(int(tape.consts[ins.ins[1]]))
            self.body.append(slot)
        elif ins.prim in _ELEMENTWISE:
            children = tuple(self._visit(s) for s in ins.ins)
            node = (ins.prim, ins.params, children, aval.dtype.str)
            self.body.append(slot)
        else:
            node = ("shared", slot)
        self._number[slot] = len(self.signature)
        self.signature.append(node)
        return self._number[slot]


def _chains(tape: Tape, producer: dict[int, Instr], uses: dict[int, int]
            ) -> list[tuple[str, list[Instr]]]:
    """Maximal chains of scalar ``add``s (s = s + t) and ``scatter_set``s
    (out[i] = t) where each link is used only by the next, found from their
    ends backwards."""
    preds = {ins.out: _predecessor(tape, ins, producer, uses) for ins in tape.instrs
             if ins.prim in ("add", "scatter_set")}
    continued = {p for p in preds.values() if p is not None}
    chains = []
    for ins in tape.instrs:
        if preds.get(ins.out) is None or ins.out in continued:
            continue
        chain = [ins]
        while preds.get(chain[-1].out) is not None:
            chain.append(producer[preds[chain[-1].out]])
        chain.reverse()
        chains.append((ins.prim, chain))
    return chains


def _predecessor(tape: Tape, ins: Instr, producer: dict[int, Instr], uses: dict[int, int]
                 ) -> int | None:
    """The previous link of the chain ``ins`` extends, if any.  For ``add`` the
    first operand is preferred: Python evaluates ``s = s + t`` as add(s, t)."""
    if ins.prim == "add" and tape.avals[ins.out].shape == ():
        for s in ins.ins:
            prev = producer.get(s)
            if prev is not None and prev.prim == "add" and uses.get(s) == 1:
                return s
    if ins.prim == "scatter_set" and _scalar_index(tape, ins):
        s = ins.ins[0]
        prev = producer.get(s)
        if prev is not None and prev.prim == "scatter_set" and uses.get(s) == 1 \
                and _scalar_index(tape, prev):
            return s
    return None


def _scalar_index(tape: Tape, ins: Instr) -> bool:
    return ins.ins[1] in tape.consts and np.ndim(tape.consts[ins.ins[1]]) == 0


def _term_of(tape: Tape, kind: str, link: Instr, previous: int | None) -> int:
    if kind == "scatter_set":
        return link.ins[2]
    a, b = link.ins
    return b if a == previous else a


class _Run:
    """Consecutive iterations of one chain, to be computed as vectors.

    An iteration is ``period`` consecutive links (``s = s + a + b`` adds twice
    per iteration); ``before`` is the chain's value the run adds to (or the
    array it writes into)."""

    def __init__(self, kind: str, links: list[Instr], terms: list[_Term], period: int,
                 before: int) -> None:
        self.kind, self.links, self.terms = kind, links, terms
        self.period, self.before = period, before


MAX_PERIOD = 8


def _runs(tape: Tape, exact_sums: bool) -> list[_Run]:
    producer = {ins.out: ins for ins in tape.instrs}
    uses: dict[int, int] = {}
    for ins in tape.instrs:
        for s in ins.ins:
            uses[s] = uses.get(s, 0) + 1
    for s in tape.outputs:
        uses[s] = uses.get(s, 0) + 1
    runs = []
    for kind, chain in _chains(tape, producer, uses):
        if kind == "add" and exact_sums:
            continue
        # the first link's term cannot be told from the chain's start, so it
        # stays as it is
        first = 1 if kind == "add" else 0
        terms: list[_Term] = [_Term(tape, producer,
                                    _term_of(tape, kind, chain[k], chain[k - 1].out if k else None))
                              for k in range(first, len(chain))]
        k = 0
        while k < len(terms):
            found = _longest_run(kind, chain[first:], terms, k, tape)
            if found is None:
                k += 1
                continue
            period, count = found
            end = k + period * count
            link = k + first
            before = chain[link - 1].out if kind == "add" else chain[link].ins[0]
            runs.append(_Run(kind, chain[link:link + period * count], terms[k:end], period,
                             before))
            k = end
    return runs


def _longest_run(kind: str, links: list[Instr], terms: list[_Term], k: int, tape: Tape
                 ) -> tuple[int, int] | None:
    """(period, iterations) of the shortest-period run starting at term k."""
    for period in range(1, MAX_PERIOD + 1):
        def signature(j: int) -> Any:
            return tuple(repr(t.signature) for t in terms[j:j + period])
        head = signature(k)
        count = 1
        while k + (count + 1) * period <= len(terms) and signature(k + count * period) == head:
            count += 1
        if count >= MIN_RUN:
            count = _compatible_prefix(kind, links[k:k + count * period],
                                       terms[k:k + count * period], period, tape)
            if count >= MIN_RUN:
                return period, count
    return None


def _compatible_prefix(kind: str, links: list[Instr], terms: list[_Term], period: int,
                       tape: Tape) -> int:
    """How many iterations from the start vary only by constant strides."""
    count = len(terms) // period
    for q in range(period):
        for column in zip(*(t.varying for t in terms[q::period])):
            values = np.asarray(column)
            if values.dtype.kind in "iu" and not np.all(values == values[0]):
                count = min(count, _affine_prefix(values))
    if kind == "scatter_set":
        positions = np.asarray([int(tape.consts[link.ins[1]]) for link in links])
        count = min(count, _affine_prefix(positions))
        if len(set(positions[:count].tolist())) != count:
            return 0
    return count


def _affine_prefix(values: np.ndarray) -> int:
    """Length of the longest prefix of values that is an arithmetic progression."""
    if len(values) < 3:
        return len(values)
    steps = np.diff(values)
    bad = np.nonzero(steps != steps[0])[0]
    return len(values) if len(bad) == 0 else int(bad[0]) + 1


def reroll(tape: Tape, examples: Sequence[Any], exact_sums: bool = False) -> Tape | None:
    """The tape with its rerollable loops as vector code, or None if it has none.

    ``examples`` are input values to re-record with (the tape is replayed)."""
    runs = _runs(tape, exact_sums)
    if not runs:
        return None
    replaced = {run.links[-1].out: run for run in runs}
    needed = _needed(tape, replaced)
    with recording() as builder:
        env: dict[int, Any] = {s: builder.new_input(v) for s, v in zip(tape.inputs, examples)}
        env.update(tape.consts)
        for ins in tape.instrs:
            if ins.out not in needed:
                continue
            run = replaced.get(ins.out)
            if run is not None:
                env[ins.out] = _emit(tape, run, env)
                continue
            env[ins.out] = bind(registry[ins.prim], *(env[s] for s in ins.ins),
                                **dict(ins.params))
        builder.tape.outputs = [builder.slot_of(env[s]) for s in tape.outputs]
    from .optimize import eliminate_dead_code
    return eliminate_dead_code(builder.tape)


def _needed(tape: Tape, replaced: dict[int, _Run]) -> set[int]:
    """The slots the rerolled tape still computes: the scalar code of rerolled
    iterations is not even replayed."""
    needed = set(tape.outputs)
    for ins in reversed(tape.instrs):
        run = replaced.get(ins.out)
        if run is not None:
            if ins.out in needed:
                needed.add(run.before)
                needed.update(node[1] for term in run.terms for node in term.signature
                              if node[0] in ("shared", "take"))
            continue
        if ins.out in needed or ins.prim == "guard":
            needed.add(ins.out)
            needed.update(ins.ins)
    return needed


def _emit(tape: Tape, run: _Run, env: dict[int, Any]) -> Any:
    """The run's iterations as vector code, combined as the chain combined them."""
    count = len(run.terms) // run.period
    parts = [_vectorize(tape, run.terms[q::run.period][:count], env,
                        tape.avals[run.links[-1].out].dtype)
             for q in range(run.period)]
    if run.kind == "scatter_set":
        positions = [int(tape.consts[link.ins[1]]) for link in run.links]
        return fnp.scatter_set(env[run.before], np.asarray(positions, dtype=np.int64), parts[0])
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return env[run.before] + fnp.sum(total)


def _vectorize(tape: Tape, terms: list[_Term], env: dict[int, Any], dtype: np.dtype) -> Any:
    """Isomorphic scalar terms computed once, on vectors of length len(terms)."""
    n = len(terms)
    first = terms[0]
    columns = iter(zip(*(t.varying for t in terms)))
    vectors: list[Any] = []
    for node in first.signature:
        if node[0] == "shared":
            vectors.append(env[node[1]])
        elif node[0] == "const":
            values = next(columns)
            if all(v == values[0] and type(v) is type(values[0]) for v in values):
                vectors.append(values[0])
            else:
                vectors.append(np.asarray(values, dtype=dtype))
        elif node[0] == "take":
            vectors.append(fnp.take_flat(env[node[1]], np.asarray(next(columns), np.int64)))
        else:
            prim, params, children = node[0], node[1], node[2]
            vectors.append(bind(registry[prim], *(vectors[c] for c in children),
                                **dict(params)))
    out = vectors[first.root]
    return out if fnp.shape(out) == (n,) else fnp.broadcast_to(out, (n,))
