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
function costs.
"""
from __future__ import annotations

import contextlib
import gc
import math
from typing import Any, Iterator, Sequence

import numpy as np

from ..core.registry import registry
from ..primitives.numpy_proxy import fnp
from ..core.tape import Instr, Tape
from ..core.tracer import bind, recording
from .analysis import bitwise_equal

MIN_RUN = 4            # segments shorter than this stay scalar code
MAX_PERIOD = 8         # a class may interleave this many index patterns (a loop body's copies)
MAX_TERM_NODES = 256   # bigger terms are not loop bodies worth matching
MAX_CONST_SIZE = 64    # constants up to this size may differ between iterations
PASSES = 3             # one per loop level

_SUM_LINKS = ("add", "sub")
_SCATTER_LINKS = ("scatter_set", "scatter_add")
_LINKS = frozenset(_SUM_LINKS + _SCATTER_LINKS)
_INT64 = np.dtype(np.int64)
_UNSEEN = object()
# what a term may compute per iteration (take is matched apart: its index varies):
# fastad's own primitives with a batching rule (the families of
# fastad/primitives/, eig_complex among them though it runs as a NumPy call)
_BODY = frozenset(p.name for p in registry.values() if p.batch_rule is not None
                  and (p.builtin or p.name == "numpy.linalg.eig_complex")
                  ) - {"take", *_SCATTER_LINKS}


class _TapeIndex:
    """Producers, positions and uses of every slot of a tape."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self.producer: dict[int, Instr] = {}
        self.position: dict[int, int] = {}
        self.uses: dict[int, int] = {}
        self.takes_of: dict[int, list[Instr]] = {}
        self._ints: dict[int, np.ndarray | None] = {}
        self._index_lists: dict[int, list[int]] = {}
        self._const_nodes: dict[int, tuple[Any, tuple[int, ...]]] = {}
        # one step per instruction of a trace of up to millions
        producer, position, uses, takes_of = self.producer, self.position, self.uses, self.takes_of
        get = uses.get
        for n, ins in enumerate(tape.instrs):
            out = ins.out
            producer[out] = ins
            position[out] = n
            for s in ins.ins:
                uses[s] = get(s, 0) + 1
            if ins.prim == "take":
                takes_of.setdefault(ins.ins[0], []).append(ins)
        for s in tape.outputs:
            uses[s] = get(s, 0) + 1

    def const_ints(self, slot: int) -> np.ndarray | None:
        """The constant at ``slot`` as an index array, or None if it is not one."""
        found = self._ints.get(slot, _UNSEEN)
        if found is _UNSEEN:
            value = self.tape.consts.get(slot)
            if type(value) is np.ndarray and value.dtype == _INT64:  # x[i]'s index: most of them
                found = value
            else:
                is_index = value is not None and np.result_type(value).kind in "iu"
                found = np.asarray(value, dtype=np.int64) if is_index else None
            self._ints[slot] = found
        return found

    def index_list(self, slot: int) -> list[int]:
        found = self._index_lists.get(slot)
        if found is None:
            found = self._index_lists[slot] = self.const_ints(slot).ravel().tolist()
        return found

    def const_node(self, slot: int) -> tuple[Any, tuple[int, ...]]:
        """A constant's node in a term signature, and its integers (which
        must be affine across a segment)."""
        found = self._const_nodes.get(slot)
        if found is None:
            value = self.tape.consts[slot]
            if type(value) is np.ndarray and value.ndim == 0 and value.dtype == _INT64:
                # x[i]'s index (a new one per iteration), as below
                found = self._const_nodes[slot] = (("const", "ndarray", self.tape.avals[slot]),
                                                   (int(value),))
                return found
            kind = np.result_type(value).kind
            if np.size(value) > MAX_CONST_SIZE or kind not in "fiub":
                found = (("shared", slot), ())
            else:
                ints = tuple(np.ravel(value).astype(np.int64).tolist()) if kind in "iub" else ()
                found = (("const", type(value).__name__, self.tape.avals[slot]), ints)
            self._const_nodes[slot] = found
        return found


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
        return [link.out for link in self.links[:-1]]

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
        before = producer.get(a)
        found = a if before is not None and before.prim in _SUM_LINKS and uses[a] == 1 else None
        if prim == "add":
            before = producer.get(b)
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
    # one step per instruction: the links' predecessors, and the guards
    preds: dict[int, int | None] = {}  # in tape order
    guards: list[Instr] = []
    is_guard: dict[str, bool] = {}
    for ins in ix.tape.instrs:
        prim = ins.prim
        if prim in _LINKS:
            preds[ins.out] = _previous_link(ix, ins)
            continue
        guard = is_guard.get(prim)
        if guard is None:
            guard = is_guard[prim] = registry[prim].effect == "guard"
        if guard:
            guards.append(ins)
    continued = {p for p in preds.values() if p is not None}
    chains = []
    producer = ix.producer
    for out in preds:
        if out in continued:
            continue
        ins = producer[out]
        links = [ins]
        while preds[links[-1].out] is not None:
            links.append(ix.producer[preds[links[-1].out]])
        if len(links) < MIN_RUN:
            continue
        links.reverse()
        if ins.prim in _SUM_LINKS:
            if not exact_sums:
                chains.append(_sum_chain(links))
        elif _scatter_link(ix, ins) is not None:
            chains.extend(_scatter_chains(ix, links, exact_sums))
    chains.append(_Chain("guard", guards, -1, [g.ins[0] for g in guards], {}))
    return [c for c in chains if len(c.links) >= MIN_RUN]


def _sum_chain(links: list[Instr]) -> _Chain:
    terms = [links[0].ins[1]]
    for prev, link in zip(links, links[1:]):
        a, b = link.ins
        terms.append(b if a == prev.out else a)
    return _Chain("sum", links, links[0].ins[0], terms, {})


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


# -- terms -----------------------------------------------------------------------
_NOT_CONSTANT = (("shared",), ())  # a slot with no producer that is no constant: an input
class _Term:
    """One term of a chain as a canonical DAG: ``nodes`` (its signature), the
    slot of each node here, and per node that may differ between iterations
    (constants, take indices) the value it has here."""

    def __init__(self, ix: _TapeIndex, root: int, bound: int, own: set[int],
                 arrays: set[int], foreign: set[int]) -> None:
        self._ix, self._bound, self._own, self._foreign = ix, bound, own, foreign
        self._arrays = arrays  # a scatter chain's own arrays, read as its start
        self.nodes: list[Any] = []
        self.slots: list[int] = []
        self.varying: list[Any] = []   # per const/take node: the constant or the index
        self.ints: list[int] = []      # every integer among them, flattened
        self.shared: list[int] = []    # slots the term reads from outside itself
        self._number: dict[int, int] = {}
        self._plan: list[tuple[int, Any, tuple[int, ...]]] | None = None
        self.ok = True
        self.root = self._visit(root)
        self.signature: Any = tuple(self.nodes) if self.ok else object()

    def _visit(self, root: int) -> int:
        """Number the nodes of the DAG below ``root`` in post-order (children
        left to right, each node once), iteratively: a term may reach back
        through thousands of unrolled instructions (a recurrence computed
        before the loop), deeper than Python's recursion limit.  Terms with
        more than MAX_TERM_NODES nodes, or that deep, are not loop bodies:
        the walk stops and the term matches nothing."""
        # the hot loop of the pass: one step per node of every term
        number_of, nodes, slots = self._number, self.nodes, self.slots
        ix, foreign, own, bound = self._ix, self._foreign, self._own, self._bound
        producer, position, consts, avals = ix.producer, ix.position, ix.tape.consts, ix.tape.avals
        # a constant's node and integers, found once per pass (`const_node`)
        const_nodes, const_node = ix._const_nodes, ix.const_node
        shared, ints, varying = self.shared, self.ints, self.varying
        # frames: [slot, instruction, numbers of the children visited so far]
        stack: list[list[Any]] = [[root, None, None]]
        last = 0
        while stack:
            frame = stack[-1]
            ins = frame[1]
            if ins is not None:           # a child of this frame has just been numbered
                kids = frame[2]
                kids.append(last)
                operands = ins.ins
                while len(kids) < len(operands):  # numbered already: no frame of its own
                    number = number_of.get(operands[len(kids)])
                    if number is None:
                        break
                    kids.append(number)
                if len(kids) < len(operands):
                    stack.append([operands[len(kids)], None, None])
                    continue
                slot = frame[0]
                if ins.prim == "take":
                    node = self._take(ins, kids[0])
                else:
                    node = (ins.prim, ins.params, tuple(kids), avals[slot])
            else:
                slot = frame[0]
                number = number_of.get(slot)
                if number is not None:
                    stack.pop()
                    last = number
                    continue
                if len(nodes) >= MAX_TERM_NODES or len(stack) > MAX_TERM_NODES:
                    self.ok = False
                    return 0
                ins = producer.get(slot)
                if ins is None:  # a constant, or an input
                    found = const_nodes.get(slot) if slot in consts else _NOT_CONSTANT
                    if found is None:
                        found = const_node(slot)
                    node = found[0]
                    if node[0] == "shared":
                        shared.append(slot)
                        node = ("shared", slot)
                    else:
                        ints.extend(found[1])
                        varying.append(consts[slot])
                elif slot in foreign or slot in own:
                    self.ok = False  # an unrolled inner chain: rerolled by an earlier pass
                    return 0
                elif position[slot] <= bound:
                    node = self._shared(slot)
                elif ins.prim == "take" and ix.const_ints(ins.ins[1]) is not None:
                    if ins.ins[0] in self._arrays:
                        node = self._take(ins, None)
                    else:
                        frame[1], frame[2] = ins, []
                        stack.append([ins.ins[0], None, None])
                        continue
                elif ins.prim in _BODY:
                    if ins.ins:
                        frame[1], frame[2] = ins, []
                        stack.append([ins.ins[0], None, None])
                        continue
                    node = (ins.prim, ins.params, (), avals[slot])
                else:
                    node = self._shared(slot)  # computed per iteration, not batchable: no match
            stack.pop()
            last = number_of[slot] = len(nodes)
            nodes.append(node)
            slots.append(slot)
        return last

    def plan(self) -> list[tuple[int, Any, tuple[int, ...]]]:
        """(number, node, the numbers of its instruction's operands) per node,
        parents first: how `_matched` follows this term (a take_chain's
        operands are not nodes)."""
        if self._plan is None:
            producer, number = self._ix.producer, self._number
            self._plan = [(j, node, () if node[0] in ("shared", "const", "take_chain")
                           else tuple(number[s] for s in producer[slot].ins))
                          for j, node, slot in zip(range(len(self.nodes) - 1, -1, -1),
                                                   reversed(self.nodes), reversed(self.slots))]
        return self._plan

    def _shared(self, slot: int) -> Any:
        self.shared.append(slot)
        return ("shared", slot)

    def _take(self, ins: Instr, array_node: int | None) -> Any:
        """A take's node, once the array it reads has its node: its index
        joins ``varying`` in node order, after those of the array's nodes
        (``_vectorize`` hands them out in that order)."""
        index = self._ix.const_ints(ins.ins[1])
        self.ints.extend(self._ix.index_list(ins.ins[1]))
        self.varying.append(index)
        if array_node is None:
            # out[i] = out[i] + t reads the chain's own array at positions not
            # yet written: the values of the array the chain started from
            return ("take_chain",)
        return ("take", array_node, index.shape)


def _terms(ix: _TapeIndex, chain: _Chain, foreign: set[int]) -> list[_Term]:
    """The chain's terms.  Term k may use what was computed since link
    k - MAX_PERIOD (the values of its iteration, which several links of the
    iteration may share); older values are shared by all terms alike."""
    own = set(chain.intermediates())
    arrays = own | {chain.before} if chain.writes else set()
    start = ix.position.get(chain.before, -1)
    bounds = [ix.position[chain.links[k - MAX_PERIOD].out] if k >= MAX_PERIOD else start
              for k in range(len(chain.links))]
    terms: list[_Term] = []
    # a loop's terms are copies of one DAG: each is matched against the last
    # term walked whose root computes the same (`_matched`), walked if it differs
    templates: dict[Any, _Term] = {}
    producer, blocked = ix.producer, own | foreign
    for t, bound in zip(chain.terms, bounds):
        ins = producer.get(t)
        key = (ins.prim, ins.params, ix.tape.avals[t]) if ins is not None else None
        try:
            template = templates.get(key)
        except TypeError:  # parameters that cannot be hashed: walked, never a template
            key = template = None
        term = _matched(template, t, bound, blocked) if template is not None else None
        if term is None:
            term = _Term(ix, t, bound, own, arrays, foreign)
            if term.ok and key is not None:
                templates[key] = term
        terms.append(term)
    return terms


def _matched(template: _Term, root: int, bound: int, blocked: set[int]) -> _Term | None:
    """The term at ``root`` if it is ``template``'s DAG with other slots, node
    for node, and every slot is of the kind the template's is (what
    `_Term._visit` would find, found without its stack); else None.  The
    template's nodes are visited parents first, each giving its operands the
    slots of the instruction found for it; the mapping from node numbers to
    slots must be one to one.  ``blocked``: the chain's own and foreign slots."""
    ix = template._ix
    producer, position, consts, avals = ix.producer, ix.position, ix.tape.consts, ix.tape.avals
    const_nodes, const_ints, arrays = ix._const_nodes, ix.const_ints, template._arrays
    nodes = template.nodes
    slots: list[Any] = [None] * len(nodes)
    slots[template.root] = root
    number: dict[int, int] = {}
    for j, node, operands in template.plan():
        slot = slots[j]
        if slot is None or number.setdefault(slot, j) != j:
            return None
        kind = node[0]
        ins = producer.get(slot)
        if kind == "shared":  # the same slot, shared here too
            if slot != node[1] or (ins is not None and position[slot] > bound
                                   and (ins.prim in _BODY or ins.prim == "take")):
                return None
            continue
        if kind == "const":
            if slot not in consts or (const_nodes.get(slot) or ix.const_node(slot))[0] != node:
                return None
            continue
        if ins is None or slot in blocked or position[slot] <= bound:
            return None
        if kind == "take" or kind == "take_chain":
            index = const_ints(ins.ins[1]) if ins.prim == "take" else None
            if index is None or (ins.ins[0] in arrays) != (kind == "take_chain") \
                    or (kind == "take" and index.shape != node[2]):
                return None
        elif ins.prim != kind or ins.params != node[1] or avals[slot] != node[3]:
            return None
        for s, k in zip(ins.ins, operands):
            if slots[k] is None:
                slots[k] = s
            elif slots[k] != s:
                return None
    term = _Term.__new__(_Term)
    term._ix, term._bound, term._own, term._foreign = ix, bound, template._own, template._foreign
    term._arrays, term._plan = arrays, template._plan
    term.nodes, term.slots, term._number = nodes, slots, number
    term.ok, term.root, term.signature = True, template.root, template.signature
    # per node, in node order, what `_Term._visit` collects
    term.varying, term.ints, term.shared = varying, ints, shared = [], [], []
    for node, slot in zip(nodes, slots):
        kind = node[0]
        if kind == "shared":
            shared.append(slot)
        elif kind == "const":
            ints.extend(const_nodes[slot][1])
            varying.append(consts[slot])
        elif kind == "take" or kind == "take_chain":
            index = producer[slot].ins[1]
            ints.extend(ix.index_list(index))
            varying.append(const_ints(index))
    return term


# -- segments ------------------------------------------------------------------------
def _segments(chain: _Chain, ix: _TapeIndex, terms: list[_Term]) -> list[list[int]]:
    """Lists of link numbers, each a segment of isomorphic terms on an affine grid."""
    classes: dict[Any, list[int]] = {}
    for k, term in enumerate(terms):
        if term.ok:
            # writes of one segment must write the same number of positions
            # (out[i:i + L] = ... of ragged lengths L are separate classes)
            where = np.shape(chain.consts[chain.links[k].ins[1]]) if chain.writes else ()
            classes.setdefault((chain.sign(k), where, term.signature), []).append(k)
    found = []
    for members in classes.values():
        if len(members) < MIN_RUN:
            continue
        ints = np.asarray([_integers(chain, ix, terms, k) for k in members], dtype=np.int64)
        found.extend(_best_split(members, ints))
    return found


def _integers(chain: _Chain, ix: _TapeIndex, terms: list[_Term], k: int) -> list[int]:
    if not chain.writes:
        return terms[k].ints
    return ix.index_list(chain.links[k].ins[1]) + terms[k].ints


def _best_split(members: list[int], ints: np.ndarray) -> list[list[int]]:
    """Segments of the class, reading it as ``d`` interleaved sequences for the
    d (up to MAX_PERIOD) that covers the most members."""
    best: list[list[int]] = []
    for d in range(1, min(MAX_PERIOD, len(members) // MIN_RUN) + 1):
        found = [[members[q + d * (start + j)] for j in range(length)]
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
    u, width = start, 16
    while u < len(steps):
        stop = min(len(steps), u + width)
        expected = np.broadcast_to(inner, (stop - u, len(inner)))
        if row:
            at_jump = (np.arange(u, stop) - origin) % row == row - 1
            expected = np.where(at_jump[:, None], jump, inner)
        bad = np.nonzero(np.any(steps[u:stop] != expected, axis=1))[0]
        if len(bad):
            return u + int(bad[0])
        u, width = stop, width * 2
    return len(steps)


# -- rewriting ---------------------------------------------------------------------
class _Rewrite:
    """A chain with its segments: replayed as vector code at its last link."""

    def __init__(self, chain: _Chain, terms: list[_Term], segments: list[list[int]]) -> None:
        self.chain, self.terms = chain, terms
        self.segment_at = {seg[0]: seg for seg in segments}
        self.covered = {k for seg in segments for k in seg}

    def requires(self) -> set[int]:
        """The slots the vector code reads (before aliasing)."""
        chain = self.chain
        slots = {chain.before} if chain.kind != "guard" else set()
        for k, link in enumerate(chain.links):
            if k in self.segment_at:
                slots.update(s for j in self.segment_at[k] for s in self.terms[j].shared)
            elif k not in self.covered:
                slots.add(chain.terms[k])
                if chain.writes:
                    slots.add(link.ins[1])
        return slots

    def emit(self, ix: _TapeIndex, value_of: Any) -> Any:
        """The chain's final value: its start combined, in chain order, with
        each segment as one vector operation and each leftover term alone."""
        chain = self.chain
        if chain.kind == "guard":
            return self.emit_guards(ix, value_of)
        start = value = value_of(chain.before)
        for k, link in enumerate(chain.links):
            segment = self.segment_at.get(k)
            if segment is not None:
                vector = _vectorize([self.terms[j] for j in segment], ix.tape.avals, value_of,
                                    start)
                value = _combine(chain, value, [chain.links[j] for j in segment], vector)
            elif k not in self.covered:
                value = _combine(chain, value, [link], value_of(chain.terms[k]))
        return value


    def emit_guards(self, ix: _TapeIndex, value_of: Any) -> Any:
        """Each segment of guards as one guard: every element of the vector
        predicate agrees with the outcome its iteration recorded."""
        chain, value = self.chain, None
        for k, link in enumerate(chain.links):
            segment = self.segment_at.get(k)
            if segment is not None:
                vector = _vectorize([self.terms[j] for j in segment], ix.tape.avals, value_of,
                                    None)
                # the count of iterations that branch otherwise must be 0 (a sum:
                # backends reduce sums faster than NaN-aware max and min)
                disagree = fnp.logical_not(vector) if chain.sign(k) else vector
                count = fnp.sum(fnp.astype(disagree, np.float64))
                value = bind(registry["guard"], count, expected=False)
            elif k not in self.covered:
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
    columns = iter(zip(*(t.varying for t in terms)))
    values: list[tuple[Any, bool]] = []
    weak: set[int] = set()  # stacked Python scalars: they take their consumer's dtype
    for node in first.nodes:
        kind = node[0]
        if kind == "shared":
            values.append((value_of(node[1]), False))
        elif kind == "const":
            column = next(columns)
            if all(type(v) is type(column[0]) and bitwise_equal(v, column[0]) for v in column):
                values.append((column[0], False))
            else:
                if node[1] in ("int", "float", "bool"):
                    weak.add(len(values))
                values.append((np.stack([np.asarray(v) for v in column]), True))
        elif kind in ("take", "take_chain"):
            index = np.stack(next(columns))
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
    alias = {s: r.chain.before for r in rewrites if r.chain.kind != "guard"
             for s in r.chain.intermediates()}
    needed = _needed(tape, at_end, alias, {link.out for r in rewrites if r.chain.kind == "guard"
                                           for link in r.chain.links[:-1]})
    with recording() as builder:
        env: dict[int, Any] = {s: builder.new_input(v) for s, v in zip(tape.inputs, examples)}
        env.update(tape.consts)
        for ins in tape.instrs:
            if ins.out not in needed:
                continue
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


def _needed(tape: Tape, at_end: dict[int, _Rewrite], alias: dict[int, int],
            merged_guards: set[int]) -> set[int]:
    """The slots the rerolled tape still computes: the scalar code of rerolled
    terms is not even replayed.  Guards are always kept, those merged into a
    rerolled guard as that guard."""
    needed = set(tape.outputs)
    effects: dict[str, bool] = {}  # by primitive: asked per instruction not needed
    for ins in reversed(tape.instrs):
        if ins.out in merged_guards:
            continue
        kept = ins.out in needed
        if not kept:
            kept = effects.get(ins.prim)
            if kept is None:
                kept = effects[ins.prim] = registry[ins.prim].effect is not None
        rewrite = at_end.get(ins.out)
        if rewrite is not None:
            if kept:
                needed.add(ins.out)
                needed.update(alias.get(s, s) for s in rewrite.requires())
            continue
        if kept:
            needed.add(ins.out)
            needed.update(alias.get(s, s) for s in ins.ins)
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
