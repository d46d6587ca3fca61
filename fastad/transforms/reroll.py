"""Loop re-rolling: scalar Python loops become vector instructions.

A Python loop ``for i in range(n): s = s + term(x[i], x[i+1], ...)`` traces to
an unrolled *chain* of ``add``s whose terms are isomorphic expression DAGs,
differing only in the flat indices they read (``take``) and in the constants
they use.  So does ``out[i] = term`` (a chain of ``scatter_set``s), and
``out[i] = out[i] + term``.  This pass finds such chains, sorts their terms
into classes of equal shape (``s = s + a_i + b_i`` has two), and within each
class finds *segments*: consecutive members whose integers (read indices,
written positions, integer constants) form a 1-D or 2-D affine grid in the
member number -- the trace of one loop, or of two nested loops over
``x[i, j]``.  A segment becomes the term computed once on vectors (``take``
with index arrays, varying constants stacked, other primitives by their
batching rules) and a ``sum`` or one vector ``scatter_set``.  Terms that fit
no segment (a guarded branch taken at scattered iterations, reads through a
permutation ``x[perm[i]]``) stay scalar code.

Guards are a chain of their own: the guards of a loop body (``if term < 0``
in every iteration) are isomorphic predicates, and a segment of them becomes
one guard that all the vector predicate's elements agree with the outcomes
recorded, so a guarded loop compiles to the vector code of the unguarded one
plus one reduction.

Loops nest by passes: a term that contains another chain (the inner loop of
``out[i] = sum_j f(x[i, j])``) waits until that chain is rerolled, and the
next pass rerolls the outer loop over the now vector-valued terms.

Exactness: every term is computed with the same operations as in the scalar
code, so terms are bit-identical.  Sums are reassociated: a segment is
summed pairwise, and segments and leftover terms are added in chain order.
``exact_sums=True`` keeps sums sequential (their chains stay unrolled);
scatter chains are exact either way (their positions are distinct).

Differentiation, the optimizer and the backends then see vector code: a
gradient of a rerolled loop costs what the gradient of the vectorized
function costs.  The tape's index and the terms' DAGs are in
`transforms/reroll_terms.py`.
"""
from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import math
import operator
from typing import Any, Iterator, Sequence

import numpy as np

from ..core.registry import registry
from ..primitives.numpy_proxy import fnp
from ..core.tape import Instr, Tape
from ..core.tracer import bind, recording
from .analysis import bitwise_equal
from .reroll_terms import (_INDEX_NODE, _SCATTER_LINKS, _SUM_LINKS, MAX_PERIOD, _Copy, _TapeIndex,
                           _Term, _terms, int_matrix, varying_columns)

_PRIM, _OUT = operator.itemgetter(0), operator.itemgetter(1)  # an Instr's primitive, result
_NDIM = operator.attrgetter("ndim")
_TEMPLATE_SIGNATURE = operator.attrgetter("template.signature")
_TEMPLATE = operator.attrgetter("template")
_OK = operator.attrgetter("ok")
_SHARED = operator.attrgetter("shared")
MIN_RUN = 4            # segments shorter than this stay scalar code
PASSES = 3             # one per loop level


# -- chains ----------------------------------------------------------------------
class _Chain:
    """Links s_k = s_{k-1} (+|-) t_k (kind "sum"), out_k = out_{k-1} with t_k
    written at positions p_k ("set") or added there ("accumulate": scatter_add,
    or out[p] = out[p] + t), starting from the value ``before``; or the
    guards of the tape, whose terms are their predicates (kind "guard")."""

    def __init__(self, kind: str, links: list[Instr], before: int, terms: list[int],
                 consts: dict[int, Any]) -> None:
        self.kind, self.links, self.before, self.terms = kind, links, before, terms
        self.consts = consts

    def sign(self, k: int) -> Any:
        """What links of one segment must share besides their term's shape:
        the sign of a sum's term, a guard's recorded outcome."""
        if self.kind == "guard":
            return bool(dict(self.links[k].params)["expected"])
        return -1 if self.links[k].prim == "sub" else 1

    @property
    def writes(self) -> bool:
        return self.kind in ("set", "accumulate")

    def intermediates(self) -> list[int]:
        """The links' results but the last (asked several times of a long chain)."""
        found = self.__dict__.get("_intermediates")
        if found is None:
            found = self._intermediates = list(map(_OUT, self.links[:-1]))
        return found

    def const_index(self, link: Instr) -> np.ndarray:
        return np.asarray(self.consts[link.ins[1]], dtype=np.int64)


def _scatter_link(ix: _TapeIndex, ins: Instr) -> tuple[str, int, Instr | None] | None:
    """(kind, term, the take of out[p] it adds to) of a scatter with constant positions."""
    if ins.prim not in _SCATTER_LINKS or ix.const_ints(ins.ins[1]) is None:
        return None
    array, index, value = ins.ins
    if ins.prim == "scatter_add":
        return "accumulate", value, None
    add = ix.producer.get(value)
    if add is not None and add.prim == "add" and ix.uses[value] == 1:
        for read, term in (add.ins, add.ins[::-1]):
            take = ix.producer.get(read)
            if (take is not None and take.prim == "take" and take.ins[0] == array
                    and ix.uses[read] == 1 and ix.tape.avals[term] == ix.tape.avals[value]
                    and np.array_equal(ix.const_ints(take.ins[1]), ix.const_ints(index))):
                return "accumulate", term, take
    return "set", value, None


def _previous_link(ix: _TapeIndex, ins: Instr) -> int | None:
    """The link ``ins`` continues, if any."""
    avals, producer = ix.tape.avals, ix.producer
    prim = ins.prim
    if prim == "add" or prim == "sub":  # (_SUM_LINKS, by name: asked per sum of a trace)
        a, b = ins.ins
        out = avals[ins.out]
        if avals[a] != out or avals[b] != out:
            return None  # a broadcasting add is not an accumulation
        consts = ix.tape.consts
        if prim == "add" and ((a in consts and _is_zero(ix, a))
                              or (b in consts and _is_zero(ix, b))):
            # `s = 0.0` then `s = s + t`: the zero starts the chain, t is its
            # first term (even when t is itself a sum, t = a - b)
            return None
        # of two candidate accumulators, the one recorded first: in s + t
        # and t + s alike the term is computed after the previous sum
        uses = ix.uses
        before = producer[a]
        found = a if before is not None and before.prim in _SUM_LINKS and uses[a] == 1 else None
        if prim == "add":
            before = producer[b]
            if before is not None and before.prim in _SUM_LINKS and uses[b] == 1 and (
                    found is None or ix.position[b] < ix.position[found]):
                found = b
        return found
    link = _scatter_link(ix, ins)
    if link is None:
        return None
    s = ins.ins[0]
    prev = producer.get(s)
    if prev is None or ix.uses[s] - len(ix.takes_of.get(s, ())) != 1:
        return None  # the array before this write is used otherwise: a chain boundary
    before = _scatter_link(ix, prev)
    return s if before is not None and before[0] == link[0] else None


def _is_zero(ix: _TapeIndex, slot: int) -> bool:
    value = ix.tape.consts.get(slot)
    if value is None:
        return False
    if type(value) is float or type(value) is int:  # the user's `s = 0.0`
        return value == 0
    return np.size(value) == 1 and np.ndim(value) == 0 and value == 0


def _chains(ix: _TapeIndex, exact_sums: bool) -> list[_Chain]:
    """Maximal chains, found from their ends backwards and cut where writes
    would stop commuting; in the order of their ends (inner loops first)."""
    cols, instrs = ix.columns, ix.tape.instrs
    names, prim_names = cols.names, cols.prim_names
    # the links (sums by arrays, `_sum_preds`; scatters one by one) and the
    # link each continues, as positions on the tape (-1: none)
    sums, sum_preds, terms = _sum_preds(ix)
    scatters = _positions_of(cols, _SCATTER_LINKS)
    scatter_preds = np.array([_position(ix, _previous_link(ix, instrs[n]))
                              for n in scatters.tolist()], np.int64)
    links = np.concatenate([sums, scatters])
    order = np.argsort(links, kind="stable")
    links, preds = links[order], np.concatenate([sum_preds, scatter_preds])[order]
    # each link continues at most one (the one it reads, read nowhere else):
    # the chains are disjoint paths, numbered by their first link
    pred = np.searchsorted(links, preds)
    first = np.where(preds >= 0, pred, np.arange(len(links)))
    while True:
        further = first[first]
        if np.array_equal(further, first):
            break
        first = further
    # in the order of their last links, each chain's links in tape order
    by_chain = np.lexsort((links, first))
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(first[by_chain])) + 1,
                             [len(by_chain)]])
    long = np.flatnonzero(np.diff(bounds) >= MIN_RUN)  # (most links are chains of one)
    ends = bounds[long + 1]
    chains = []
    for k in np.argsort(links[by_chain[ends - 1]], kind="stable").tolist():
        group = by_chain[bounds[long[k]]:ends[k]]
        chain_links = list(map(instrs.__getitem__, links[group].tolist()))
        if chain_links[-1].prim in _SUM_LINKS:
            if not exact_sums:
                at = np.searchsorted(sums, links[group])
                chains.append(_Chain("sum", chain_links, chain_links[0].ins[0],
                                     [chain_links[0].ins[1]] + terms[at[1:]].tolist(), {}))
        elif _scatter_link(ix, chain_links[-1]) is not None:
            chains.extend(_scatter_chains(ix, chain_links, exact_sums))
    is_guard = [registry[name].effect == "guard" for name in prim_names]
    guards = [instrs[n] for n in np.flatnonzero(np.asarray(is_guard, bool)[names]).tolist()] \
        if any(is_guard) else []
    chains.append(_Chain("guard", guards, -1, [g.ins[0] for g in guards], {}))
    return [c for c in chains if len(c.links) >= MIN_RUN]


def _position(ix: _TapeIndex, slot: int | None) -> int:
    return -1 if slot is None else ix.position[slot]


def _positions_of(cols: Any, prims: Sequence[str]) -> np.ndarray:
    """The positions of the instructions of these primitives, in tape order."""
    ids = [k for k, name in enumerate(cols.prim_names) if name in prims]
    return np.flatnonzero(np.isin(cols.names, ids)) if ids else np.zeros(0, np.int64)


def _sum_preds(ix: _TapeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_previous_link` of every ``add`` and ``sub``, on the tape's arrays:
    their positions, the position of the link each continues (-1: none),
    and each one's term if it continues one (the operand that is not the
    previous sum)."""
    cols = ix.columns
    at = _positions_of(cols, _SUM_LINKS)
    at = at[cols.features[at, 2] == 2]  # (add and sub are binary: no other reaches here)
    feats = cols.features[at]
    a, b = cols.ops[at, 0], cols.ops[at, 1]
    is_add = cols.names[at] == cols.prim_names.index("add") if "add" in cols.prim_names \
        else np.zeros(len(at), bool)
    # a broadcasting add is not an accumulation
    ok = (feats[:, 3] == feats[:, 1]) & (feats[:, 4] == feats[:, 1])
    # `s = 0.0` then `s = s + t`: the zero starts the chain, t is its first
    # term (even when t is itself a sum, t = a - b)
    zero = np.zeros(len(cols.is_const), bool)
    zero[a[is_add]] = zero[b[is_add]] = True
    for s in np.flatnonzero(zero & cols.is_const).tolist():  # the constants adds read
        zero[s] = _is_zero(ix, s)
    zero &= cols.is_const
    ok &= ~(is_add & (zero[a] | zero[b]))
    # of two candidate accumulators, the one recorded first: in s + t and
    # t + s alike the term is computed after the previous sum
    is_sum = np.zeros(len(cols.names) + 1, bool)  # by position (-1: none)
    is_sum[at] = True
    uses = ix.use_counts
    pa, pb = cols.producer[a], cols.producer[b]
    a_ok = is_sum[pa] & (uses[a] == 1)
    b_ok = is_add & is_sum[pb] & (uses[b] == 1) & (~a_ok | (pb < pa))
    pred = np.where(b_ok, pb, np.where(a_ok, pa, -1))
    pred[~ok] = -1
    return at, pred, np.where(b_ok, a, b)


def _scatter_chains(ix: _TapeIndex, links: list[Instr], exact_sums: bool) -> list[_Chain]:
    """The chain cut into pieces whose writes commute: a read of an
    intermediate array sees only positions the piece has not touched (its
    starting array), "set" writes each position once, and so does
    "accumulate" if sums must stay exact."""
    kind = _scatter_link(ix, links[0])[0]
    pieces: list[list[Instr]] = []
    touched: set[int] = set()
    for k, link in enumerate(links):
        _, term, self_read = _scatter_link(ix, link)
        positions = ix.const_ints(link.ins[1]).ravel().tolist()
        reads = _positions_read(ix, links[k - 1].out, self_read) if k else set()
        may_repeat = kind == "accumulate" and not exact_sums
        fresh = may_repeat or (len(set(positions)) == len(positions)
                               and not touched.intersection(positions))
        if not pieces or not fresh or reads & touched:
            pieces.append([])
            touched = set()
        pieces[-1].append(link)
        touched.update(positions)
    return [_Chain(kind, piece, piece[0].ins[0], [_scatter_link(ix, link)[1] for link in piece],
                   ix.tape.consts) for piece in pieces]


def _positions_read(ix: _TapeIndex, array: int, self_read: Instr | None) -> set[int]:
    read: set[int] = set()
    for take in ix.takes_of.get(array, ()):
        if take is not self_read:
            read.update(ix.const_ints(take.ins[1]).ravel().tolist())
    return read


# -- segments ------------------------------------------------------------------------
def _segments(chain: _Chain, ix: _TapeIndex, terms: list[_Term]) -> list[list[int]]:
    """Lists of link numbers, each a segment of isomorphic terms on an affine grid."""
    classes: dict[Any, list[int]] = {}
    # a term's signature is a tuple of its nodes, whose hash Python does not
    # keep: numbered once per signature object (a template's copies share
    # it), then once per distinct value, so that classes are keyed by ints
    by_object: dict[int, int] = {}
    by_value: dict[Any, int] = {}
    writes, links, consts = chain.writes, chain.links, chain.consts
    if writes:
        # `_Chain.sign` of each link, spelled out for sums
        signs = [-1 if links[k].prim == "sub" else 1 for k in range(len(terms))]
        for k, term in enumerate(terms):
            if type(term) is _Copy:  # most terms of a long loop: its template's signature
                signature = term.template.signature
            elif term.ok:
                signature = term.signature
            else:
                continue
            number = by_object.get(id(signature))
            if number is None:
                number = by_object[id(signature)] = by_value.setdefault(signature, len(by_value))
            # writes of one segment must write the same number of positions
            # (out[i:i + L] = ... of ragged lengths L are separate classes)
            where = np.shape(consts[links[k].ins[1]])
            classes.setdefault((signs[k], where, number), []).append(k)
        groups: Any = classes.values()
    else:  # `_Chain.sign` of each link: whether it is positive (a guard's expected outcome)
        n = len(terms)
        positive = np.fromiter(map(chain.sign, range(n)), bool, n) if chain.kind == "guard" \
            else np.fromiter(map("sub".__ne__, map(_PRIM, links[:n])), bool, n)
        groups = _classes(terms, positive)
    found = []
    for members in groups:
        if len(members) < MIN_RUN:
            continue
        ints = int_matrix([terms[k] for k in members])
        if writes:  # the positions written come first
            ints = np.concatenate([np.asarray([ix.index_list(links[k].ins[1]) for k in members],
                                              dtype=np.int64), ints], axis=1)
        found.extend(_best_split(members, ints))
    return found


def _classes(terms: list[_Term], positive: np.ndarray) -> list[list[int]]:
    """The terms' classes by (sign, signature) as `_segments` makes them for
    chains that write nothing: each a list of term numbers in chain order,
    the classes in order of their first term; on arrays (a long loop's
    terms are copies of a few templates, numbered by object, then by value)."""
    n = len(terms)
    signatures = list(map(_TEMPLATE_SIGNATURE, terms))  # (a walked term is its own template)
    ok = np.fromiter(map(_OK, terms), bool, n)
    ids = np.fromiter(map(id, signatures), np.int64, n)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    by_value: dict[Any, int] = {}
    numbers = np.array([by_value.setdefault(signatures[k], len(by_value))
                        for k in first.tolist()], np.int64)
    code = numbers[inverse.ravel()] * 2 + positive  # (sign, signature)
    ks = np.flatnonzero(ok)
    _, first, inverse, counts = np.unique(code[ks], return_index=True, return_inverse=True,
                                          return_counts=True)
    members = ks[np.argsort(inverse.ravel(), kind="stable")].tolist()
    ends = np.cumsum(counts).tolist()
    groups = [members[end - count:end] for end, count in zip(ends, counts.tolist())]
    return [groups[g] for g in np.argsort(first, kind="stable").tolist()]


def _best_split(members: list[int], ints: np.ndarray) -> list[list[int]]:
    """Segments of the class, reading it as ``d`` interleaved sequences for the
    d (up to MAX_PERIOD) that covers the most members."""
    best: list[list[int]] = []
    for d in range(1, min(MAX_PERIOD, len(members) // MIN_RUN) + 1):
        found = [members[q + d * start:q + d * (start + length):d]
                 for q in range(d) for start, length in _grid_runs(ints[q::d])]
        if sum(map(len, found)) > sum(map(len, best)):
            best = found
        if sum(map(len, best)) == len(members):
            break
    return best


def _grid_runs(ints: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of maximal runs of rows that are v0 + r*A + c*B for the
    run's member number r*C + c: a 1-D loop, or two nested ones."""
    steps = np.diff(ints, axis=0)
    runs, k = [], 0
    while k <= len(ints) - MIN_RUN:
        length = _grid_run(steps, k)
        if length >= MIN_RUN:
            runs.append((k, length))
            k += length
        else:
            k += 1
    return runs


def _grid_run(steps: np.ndarray, k: int) -> int:
    """Rows in the grid run starting at row k.  Inside a row of the grid the
    step is ``inner``; from one row to the next it is ``jump``."""
    end = len(steps)
    inner = steps[k]
    row_end = _first_mismatch(steps, k, k, inner, inner, 0)
    if row_end == end:
        return end - k + 1
    row = row_end - k + 1
    return _first_mismatch(steps, row_end + 1, k, inner, steps[row_end], row) - k + 1


def _first_mismatch(steps: np.ndarray, start: int, origin: int, inner: np.ndarray,
                    jump: np.ndarray, row: int) -> int:
    """The first step from ``start`` that breaks the pattern (``jump`` after
    every ``row`` - 1 ``inner`` steps from ``origin``; row 0: never), or len(steps).
    Looks in growing windows so that a run that fails at once costs little."""
    u, width, n = start, 16, len(steps)
    while u < n:
        stop = min(n, u + width)
        expected = inner  # (broadcast by the comparison: a long ragged class makes
        if row:           # thousands of calls, each a few array methods)
            at_jump = (np.arange(u, stop) - origin) % row == row - 1
            expected = np.where(at_jump[:, None], jump, inner)
        bad = np.flatnonzero((steps[u:stop] != expected).any(axis=1))
        if len(bad):
            return u + int(bad[0])
        u, width = stop, width * 2
    return n


# -- rewriting ---------------------------------------------------------------------
class _Rewrite:
    """A chain with its segments: replayed as vector code at its last link."""

    def __init__(self, chain: _Chain, terms: list[_Term], segments: list[list[int]]) -> None:
        self.chain, self.terms = chain, terms
        self.segment_at = {seg[0]: seg for seg in segments}
        self.covered = set(itertools.chain.from_iterable(segments))

    def requires(self) -> set[int]:
        """The slots the vector code reads (before aliasing)."""
        chain, terms = self.chain, self.terms
        slots = {chain.before} if chain.kind != "guard" else set()
        for segment in self.segment_at.values():
            # a segment's copies read their template's list of shared slots:
            # each list once (by identity), not once per term
            # each list once: by its term's template (a copy's, or the term
            # itself if walked), then by identity
            templates = dict.fromkeys(map(_TEMPLATE, map(terms.__getitem__, segment)))
            lists = list(map(_SHARED, templates))
            slots.update(*dict(zip(map(id, lists), lists)).values())
        covered = self.covered
        for k in itertools.filterfalse(covered.__contains__, range(len(chain.links))):
            slots.add(chain.terms[k])
            if chain.writes:
                slots.add(chain.links[k].ins[1])
        return slots

    def emit(self, ix: _TapeIndex, value_of: Any) -> Any:
        """The chain's final value: its start combined, in chain order, with
        each segment as one vector operation and each leftover term alone."""
        chain = self.chain
        if chain.kind == "guard":
            return self.emit_guards(ix, value_of)
        start = value = value_of(chain.before)
        for k in self.steps():
            segment = self.segment_at.get(k)
            if segment is not None:
                vector = _vectorize(list(map(self.terms.__getitem__, segment)), ix.tape.avals,
                                    value_of, start)
                value = _combine(chain, value, list(map(chain.links.__getitem__, segment)),
                                 vector)
            else:
                value = _combine(chain, value, [chain.links[k]], value_of(chain.terms[k]))
        return value

    def steps(self) -> list[int]:
        """The links where the vector code does something, in chain order: the
        first of each segment, and each link no segment covers."""
        return sorted(self.segment_at.keys() | (set(range(len(self.chain.links))) - self.covered))

    def emit_guards(self, ix: _TapeIndex, value_of: Any) -> Any:
        """Each segment of guards as one guard: every element of the vector
        predicate agrees with the outcome its iteration recorded."""
        chain, value = self.chain, None
        for k in self.steps():
            link, segment = chain.links[k], self.segment_at.get(k)
            if segment is not None:
                vector = _vectorize(list(map(self.terms.__getitem__, segment)), ix.tape.avals,
                                    value_of, None)
                # the count of iterations that branch otherwise must be 0 (a sum:
                # backends reduce sums faster than NaN-aware max and min)
                disagree = fnp.logical_not(vector) if chain.sign(k) else vector
                count = fnp.sum(fnp.astype(disagree, np.float64))
                value = bind(registry["guard"], count, expected=False)
            else:
                value = bind(registry["guard"], value_of(chain.terms[k]), **dict(link.params))
        return value


def _combine(chain: _Chain, value: Any, links: list[Instr], term: Any) -> Any:
    """The chain's value after the links, whose terms are ``term`` (stacked
    along axis 0 if several links)."""
    several = len(links) > 1
    if chain.kind == "sum":
        total = fnp.sum(term, axis=0) if several else term
        return value - total if links[0].prim == "sub" else value + total
    positions = (np.stack([chain.const_index(link) for link in links]) if several
                 else chain.const_index(links[0]))
    prim = "scatter_set" if chain.kind == "set" else "scatter_add"
    return bind(registry[prim], value, positions, term)


def _vectorize(terms: list[_Term], avals: list[Any], value_of: Any, chain_start: Any) -> Any:
    """Isomorphic terms computed once, with a leading axis over the terms.
    Each value is (value, batched): unbatched ones are the same for all terms."""
    n, first = len(terms), terms[0]
    shapes = [tuple(avals[s].shape) for s in first.slots]  # of one term's values
    columns = iter(varying_columns(terms))
    values: list[tuple[Any, bool]] = []
    weak: set[int] = set()  # stacked Python scalars: they take their consumer's dtype
    for node in first.nodes:
        kind = node[0]
        if kind == "shared":
            values.append((value_of(node[1]), False))
        elif kind == "const":
            column = next(columns)
            if _all_same(column):
                values.append((column[0], False))
            else:
                if node[1] in ("int", "float", "bool"):
                    weak.add(len(values))
                values.append((np.fromiter(column, np.int64, n) if _INDEX_NODE(node)
                               else _stacked(column), True))
        elif kind in ("take", "take_chain"):
            column = next(columns)
            # (a take node's indices are int64 arrays of its shape: 0-d ones
            # read in C, as `_INDEX_NODE`'s are)
            index = np.fromiter(column, np.int64, n) \
                if kind == "take" and node[2] == () else _stacked(column)
            if kind == "take_chain":
                values.append(_gather((chain_start, False), index, ()))
            else:
                values.append(_gather(values[node[1]], index, shapes[node[1]]))
        else:
            prim, params, children, aval = node
            args = [(_cast(v, aval.dtype) if c in weak else v, b)
                    for c, (v, b) in ((c, values[c]) for c in children)]
            p = registry[prim]
            if not any(b for _, b in args):
                values.append((bind(p, *(v for v, _ in args), **dict(params)), False))
            else:
                values.append((p.batch_rule(p, args, [shapes[c] for c in children],
                                            dict(params), n), True))
    out, batched = values[first.root]
    root_shape = (n,) + shapes[first.root]
    return out if batched else fnp.broadcast_to(out, root_shape)


def _all_same(column: Sequence[Any]) -> bool:
    """Whether every value of ``column`` has the first's type and bits.  A
    loop's shared constant is one object in every term (the trace keeps one
    slot per value): checked by identity first, value by value only if not."""
    first = column[0]
    for v in column:
        if v is not first:
            break
    else:
        return True
    return all(type(v) is type(first) and bitwise_equal(v, first) for v in column)


def _stacked(column: Sequence[Any]) -> np.ndarray:
    """``np.stack`` of the values, as arrays.  0-d arrays (``x[i]``'s indices,
    one per term) are gathered by one ``np.array`` of the list, which gives
    what ``np.stack`` gives (the same shape and promoted dtype) at a tenth
    of the cost."""
    if set(map(type, column)) <= {np.ndarray} and not any(map(_NDIM, column)):
        out = np.array(column)
        if out.shape == (len(column),):
            return out
    return np.stack([np.asarray(v) for v in column])


def _gather(array: tuple[Any, bool], index: np.ndarray, example_shape: tuple[int, ...]
            ) -> tuple[Any, bool]:
    """The per-term takes ``array.ravel()[index[k]]`` as one take (a batched
    array holds term k's example at row k)."""
    value, batched = array
    if not batched and np.all(index == index[0]):
        return fnp.take_flat(value, index[0]), False
    if batched:
        example_size = math.prod(example_shape)
        offsets = np.arange(len(index), dtype=np.int64) * example_size
        index = index + offsets.reshape((-1,) + (1,) * (index.ndim - 1))
    return fnp.take_flat(value, index), True


def _cast(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return value.astype(dtype) if dtype.kind == "f" else value


# -- the pass ------------------------------------------------------------------------
def _rewrites(ix: _TapeIndex, exact_sums: bool) -> list[_Rewrite]:
    """Chains with segments, inner loops first: a term that contains a chain
    rewritten before it waits for the next pass."""
    chains = sorted(_chains(ix, exact_sums), key=lambda c: ix.position[c.links[-1].out])
    rewritten: set[int] = set()
    rewrites = []
    for chain in chains:
        terms = _terms(ix, chain, rewritten)
        segments = _segments(chain, ix, terms)
        if segments:
            rewrites.append(_Rewrite(chain, terms, segments))
            rewritten.update(chain.intermediates())
    return rewrites


def _reroll_once(tape: Tape, examples: Sequence[Any], exact_sums: bool) -> Tape | None:
    ix = _TapeIndex(tape)
    rewrites = _rewrites(ix, exact_sums)
    if not rewrites:
        return None
    at_end = {r.chain.links[-1].out: r for r in rewrites}
    # reads of a rewritten scatter chain's intermediate arrays see its start
    alias: dict[int, int] = {}
    for r in rewrites:
        if r.chain.kind != "guard":  # (a chain's intermediates at once, in C)
            alias.update(dict.fromkeys(r.chain.intermediates(), r.chain.before))
    needed = _needed(ix, at_end, alias, {link.out for r in rewrites if r.chain.kind == "guard"
                                         for link in r.chain.links[:-1]})
    position, instrs = ix.position, tape.instrs
    with recording() as builder:
        env: dict[int, Any] = {s: builder.new_input(v) for s, v in zip(tape.inputs, examples)}
        env.update(tape.consts)
        for n in sorted(position[s] for s in needed if position[s] >= 0):
            ins = instrs[n]
            # the user's line of the instruction (of a rewrite, its chain's last
            # link: a guard's `if`), not the line that called the compiled function
            builder.line_override = ins.line
            rewrite = at_end.get(ins.out)
            if rewrite is not None:
                env[ins.out] = rewrite.emit(ix, lambda s: env[alias.get(s, s)])
                continue
            env[ins.out] = bind(registry[ins.prim], *(env[alias.get(s, s)] for s in ins.ins),
                                **dict(ins.params))
        builder.line_override = None
        builder.tape.outputs = [builder.slot_of(env[s]) for s in tape.outputs]
    from .optimize import eliminate_dead_code
    return eliminate_dead_code(builder.tape)


def _needed(ix: _TapeIndex, at_end: dict[int, _Rewrite], alias: dict[int, int],
            merged_guards: set[int]) -> set[int]:
    """The slots the rerolled tape still computes: the scalar code of rerolled
    terms is not even replayed.  Guards are always kept, those merged into a
    rerolled guard as that guard.  Walked from the outputs and effects back
    to what they read, the latest instruction first (as a walk of the whole
    tape backwards would, but visiting only what is kept)."""
    tape, position, cols = ix.tape, ix.position, ix.columns
    needed = set(tape.outputs)
    effects = [k for k, name in enumerate(cols.prim_names) if registry[name].effect is not None]
    todo = np.flatnonzero(np.isin(cols.names, effects)).tolist() if effects else []
    todo += [position[s] for s in needed if position[s] >= 0]
    seen = set(todo)
    todo = [-n for n in seen]  # a heap of the positions to visit, latest first
    heapq.heapify(todo)
    instrs = tape.instrs
    while todo:
        ins = instrs[-heapq.heappop(todo)]
        if ins.out in merged_guards:
            continue
        rewrite = at_end.get(ins.out)
        reads = ins.ins if rewrite is None else rewrite.requires()
        needed.add(ins.out)
        for s in reads:
            s = alias.get(s, s)
            needed.add(s)
            n = position[s]
            if n >= 0 and n not in seen:
                seen.add(n)
                heapq.heappush(todo, -n)
    return needed


def reroll(tape: Tape, examples: Sequence[Any], exact_sums: bool = False) -> Tape | None:
    """The tape with its rerollable loops as vector code, or None if it has none.

    ``examples`` are input values to re-record with (the tape is replayed once
    per pass; a pass rerolls one loop level)."""
    rolled = None
    with _without_gc():
        for _ in range(PASSES):
            new = _reroll_once(tape if rolled is None else rolled, examples, exact_sums)
            if new is None:
                break
            rolled = new
    from .tape_arrays import forget_columns
    forget_columns()  # detection's columns of the tape, read by the first pass
    return rolled


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """The pass allocates millions of small acyclic tuples on a long tape;
    the cycle collector would rescan them all over again (2-3x the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
