"""Rerolling's view of a tape and of its loops' terms (`transforms.reroll`).

`_TapeIndex`: producers, positions and uses of every slot, and the constants
read as term nodes and indices.  `_Term`: one term of a chain as a
canonical DAG, numbered in post-order (its signature), with the constants
and take indices that may differ between iterations.  `_terms` finds a
chain's terms: the first of each kind is walked (`_Term._visit`), the
others are matched against it (`_matched`), a loop's terms being copies of
one DAG; a term that does not match is walked.  Once a template has
matched a few terms in a row, the next are matched in batches on the
tape's arrays (`_Batches`), with the same results.
"""
from __future__ import annotations

import bisect
import itertools
import operator
from typing import Any

import numpy as np

from ..core.registry import registry
from ..core.tape import Instr, Tape

MAX_PERIOD = 8         # a class may interleave this many index patterns (a loop body's copies)
MAX_TERM_NODES = 256   # bigger terms are not loop bodies worth matching
MAX_CONST_SIZE = 64    # constants up to this size may differ between iterations

_SUM_LINKS = ("add", "sub")
_SCATTER_LINKS = ("scatter_set", "scatter_add")
_INT64 = np.dtype(np.int64)
_UNSEEN = object()
_OUT = operator.itemgetter(1)  # an Instr's result slot
_NAME, _DTYPE = operator.attrgetter("__name__"), operator.attrgetter("dtype")
_FOUND, _AT = operator.attrgetter("found"), operator.attrgetter("at")
# what a term may compute per iteration (take is matched apart: its index varies):
# fastad's own primitives with a batching rule (the families of
# fastad/primitives/, eig_complex among them though it runs as a NumPy call)
_BODY = frozenset(p.name for p in registry.values() if p.batch_rule is not None
                  and (p.builtin or p.name == "numpy.linalg.eig_complex")
                  ) - {"take", *_SCATTER_LINKS}


class _BySlot(list):
    """Per slot number, an entry (``missing`` where a slot has none), with a
    dict's ``get``: what `_TapeIndex` keeps of a tape, made from arrays."""

    __slots__ = ("missing",)

    def __init__(self, entries: list[Any], missing: Any) -> None:
        super().__init__(entries)
        self.missing = missing

    def get(self, slot: int, default: Any = None) -> Any:
        if 0 <= slot < len(self):
            found = self[slot]
            if found is not self.missing and found != self.missing:
                return found
        return default


class _SparseSlots(dict):
    """`_BySlot` as a dict, for a tape with few instructions among many slots."""

    def __init__(self, entries: Any, missing: Any) -> None:
        super().__init__(entries)
        self.missing = missing

    def __missing__(self, slot: int) -> Any:
        return self.missing


class _TapeIndex:
    """Producers, positions and uses of every slot of a tape (by slot:
    ``producer[s]`` is None and ``position[s]`` -1 for a slot no instruction
    computes), made from the tape's arrays (`tape_arrays.columns_of`:
    detection's, when it saw this tape) instead of a Python step per
    instruction."""

    def __init__(self, tape: Tape) -> None:
        from .tape_arrays import columns_of
        self.tape = tape
        self.columns = cols = columns_of(tape)
        nslots, instrs = len(tape.avals), tape.instrs
        uses = cols.uses[:nslots].copy()
        np.add.at(uses, np.asarray(tape.outputs, np.int64), 1)
        self.use_counts = uses  # (the same as an array)
        if nslots <= 4 * len(instrs) + 1024:
            at = cols.producer[:nslots].tolist()  # slot -> its instruction's position, or -1
            self.position: Any = _BySlot(at, -1)
            # (position -1 picks the None appended)
            self.producer: Any = _BySlot(list(map((instrs + [None]).__getitem__, at)), None)
            self.uses: Any = uses.tolist()
        else:  # few instructions among many slots (a tape whose loops were found)
            outs = [ins.out for ins in instrs]
            self.position = _SparseSlots(zip(outs, range(len(outs))), missing=-1)
            self.producer = _SparseSlots(zip(outs, instrs), missing=None)
            read = np.flatnonzero(uses)
            self.uses = _SparseSlots(zip(read.tolist(), uses[read].tolist()), missing=0)
        self._takes_of: dict[int, list[Instr]] | None = None
        self._ints: dict[int, np.ndarray | None] = {}
        self._index_lists: dict[int, list[int]] = {}
        self._const_nodes: dict[int, tuple[Any, tuple[int, ...]]] = {}

    @property
    def takes_of(self) -> dict[int, list[Instr]]:
        """The takes reading each array, in tape order (asked of scatter chains only)."""
        if self._takes_of is None:
            takes: dict[int, list[Instr]] = {}
            cols, instrs = self.columns, self.tape.instrs
            if "take" in cols.prim_names:
                for n in np.flatnonzero(cols.names == cols.prim_names.index("take")).tolist():
                    ins = instrs[n]
                    takes.setdefault(ins.ins[0], []).append(ins)
            self._takes_of = takes
        return self._takes_of

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


# -- terms -----------------------------------------------------------------------
_NOT_CONSTANT = (("shared",), ())  # a slot with no producer that is no constant: an input
class _Term:
    """One term of a chain as a canonical DAG: ``nodes`` (its signature), the
    slot of each node here, and per node that may differ between iterations
    (constants, take indices) the value it has here."""

    # as a `_Copy` has them: a walked term is its own template, matched with no batch
    found = None
    at = 0

    @property
    def template(self) -> _Term:
        return self

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
        self._collect: list[tuple[int, int]] | None = None
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
                ins = producer[slot]
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

    def collected(self) -> list[tuple[int, int]]:
        """(what, number) of the nodes a copy of this term collects values
        of, in node order: 0 a shared slot, 1 a constant, 2 a take's index."""
        if self._collect is None:
            what = {"shared": 0, "const": 1, "take": 2, "take_chain": 2}
            self._collect = [(what[node[0]], j) for j, node in enumerate(self.nodes)
                             if node[0] in what]
        return self._collect

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


def _terms(ix: _TapeIndex, chain: Any, foreign: set[int]) -> list[_Term]:
    """The chain's terms.  Term k may use what was computed since link
    k - MAX_PERIOD (the values of its iteration, which several links of the
    iteration may share); older values are shared by all terms alike."""
    own = set(chain.intermediates())
    arrays = own | {chain.before} if chain.writes else set()
    start = ix.position.get(chain.before, -1)
    links = chain.links
    # term k: the position of link k - MAX_PERIOD's result, or the chain's start
    bounds = [start] * min(MAX_PERIOD, len(links)) + list(
        map(ix.position.__getitem__, map(_OUT, links[:max(0, len(links) - MAX_PERIOD)])))
    # a loop's terms are copies of one DAG: each is matched against the last
    # term walked whose root computes the same (`_matched`), walked if it differs
    blocked = own | foreign
    keys, members = _term_keys(ix, chain.terms)
    batch = _Batches(ix, chain, bounds, blocked, arrays, members)
    roots = chain.terms
    terms: list[Any] = [None] * len(roots)
    # key by key, each key's terms in chain order: a term is matched against
    # its key's template only, and the templates, batches and streaks are
    # the key's own, so this finds what a walk of the terms in chain order
    # finds; a batch's copies (a loop's terms: nearly all) are then placed
    # in one step instead of one Python step each
    for key, ks in _by_key(keys, members):
        # (key None: a term that is an input or a constant, or whose
        # parameters cannot be hashed: walked, never a template)
        template = None
        i, count = 0, len(ks)
        while i < count:
            k = ks[i]
            term = None
            if template is not None:
                found = batch.found.pop(k, None)
                if found is not None and found[0] is template:
                    terms[k] = found[1]
                    i += 1
                    continue
                term = batch.unbatched(template, key, k, roots[k], bounds[k])
                block = batch.block
                if block is not None:  # term k and the copies after it, one batch
                    batch.block = None
                    placed = len(block)
                    for at, copy in zip(ks[i:i + placed], block):
                        terms[at] = copy
                    i += placed
                    continue
            if term is None:
                term = _Term(ix, roots[k], bounds[k], own, arrays, foreign)
                if term.ok and key is not None:
                    template = term
            terms[k] = term
            i += 1
    return terms


def _by_key(keys: list[Any], members: dict[Any, list[int]]) -> list[tuple[Any, list[int]]]:
    """The terms' numbers by key, each in chain order (key None: one term
    each, in a group of its own)."""
    groups = [(key, ks) for key, ks in members.items() if key is not None]
    if None in keys:
        groups += [(None, [k]) for k, key in enumerate(keys) if key is None]
    return groups


def _term_keys(ix: _TapeIndex, roots: list[int]) -> tuple[list[Any], dict[Any, list[int]]]:
    """Per term (at ``roots``) a key, equal for two terms exactly when their
    root instructions have the same primitive, parameters and result aval
    (None: the root is an input or a constant, or its parameters cannot be
    hashed), and the terms of each key in chain order.  The terms are
    grouped on the tape's arrays first (features 0 and 1: the primitive and
    parameters, by value and repr, and the result's aval; groups no coarser
    than the keys, without touching each term's instruction), and the
    groups' keys compared by value (a loop's terms are a few kinds); else
    the keys are the triples themselves."""
    producer, avals, n = ix.producer, ix.tape.avals, len(roots)
    cols = ix.columns
    at = cols.producer[np.asarray(roots, np.int64)] if n else None
    if n and at.min() >= 0:
        kind, aval = cols.features[at, 0], cols.features[at, 1]
        code = kind * (int(aval.max()) + 2) + (aval + 1)
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        if len(first) <= 64:
            numbers: dict[Any, int] = {}
            group_key: list[Any] = []
            for r in first.tolist():
                ins = producer[roots[r]]
                try:
                    group_key.append(numbers.setdefault((ins.prim, ins.params, avals[roots[r]]),
                                                        len(numbers)))
                except TypeError:  # parameters that cannot be hashed
                    group_key.append(-1)
            code = np.asarray(group_key, np.int64)[inverse.ravel()]
            members = {key: np.flatnonzero(code == key).tolist() for key in numbers.values()}
            keys: list[Any] = code.tolist()
            if -1 in group_key:
                keys = [None if key == -1 else key for key in keys]
            return keys, members
    keys = []
    members = {}
    for k, t in enumerate(roots):
        ins = producer[t]
        key = (ins.prim, ins.params, avals[t]) if ins is not None else None
        try:
            members.setdefault(key, []).append(k)
        except TypeError:  # parameters that cannot be hashed: walked, never a template
            key = None
        keys.append(key)
    return keys, members


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
        ins = producer[slot]
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
    return _copies(template, [bound], np.array(slots, np.int64)[:, None])[0]


def _copies(template: _Term, bounds: list[int], S: np.ndarray) -> list[Any]:
    """The terms that are ``template``'s DAG at the slots of each column of
    ``S`` (matches, one term per column), with what `_Term._visit` collects,
    gathered a node of the template at a time (`_Copy`)."""
    ix = template._ix
    producer, consts, const_nodes, const_ints = ix.producer, ix.tape.consts, ix._const_nodes, \
        ix.const_ints
    count = len(bounds)
    if not count:  # (a batch none of whose terms passed)
        return []
    rows = S.tolist()  # per node, the slots of every term
    cols = ix.columns
    varying, pieces = [], []
    for what, j in template.collected():
        if what == 1:
            one = rows[j][0]
            # a constant every term reads at one slot (a loop's 1.0 or 4): its
            # value and node once (the same objects the per-term lists hold)
            same = (S[j] == one).all()
            values = [consts[one]] * count if same else list(map(consts.__getitem__, rows[j]))
            varying.append(values)
            if template.nodes[j][2].dtype.kind not in "iub":
                continue  # (its integers: none)
            # `const_node`'s integers: int64 arrays' values, flattened (the
            # constants of one node share an aval: one shape)
            node = template.nodes[j]
            if not same and _INDEX_NODE(node):
                block = np.fromiter(values, np.int64, count)  # (see `_INDEX_NODE`)
            else:
                block = np.array(values) if set(map(type, values)) == {np.ndarray} else None
            pieces.append(block if block is not None and block.dtype == _INT64 else
                          [(const_nodes.get(one) or ix.const_node(one))[1]] * count if same
                          else [(const_nodes.get(s) or ix.const_node(s))[1] for s in rows[j]])
        elif what == 2:
            # (each take's index slot, its second operand, from the arrays)
            indices = cols.ops[cols.producer[S[j]], 1].tolist()
            # `const_ints` of each, whose x[i] indices (most) are their constants
            column = list(map(consts.get, indices))
            if not (set(map(type, column)) == {np.ndarray}
                    and all(map(operator.is_, map(_DTYPE, column), itertools.repeat(_INT64)))):
                column = [v if type(v) is np.ndarray and v.dtype is _INT64 else const_ints(s)
                          for s, v in zip(indices, column)]
            varying.append(column)
            # every copy's indices have the template's shape (the node's): 0-d
            # ones are read in C, as `_INDEX_NODE` says
            node = template.nodes[j]
            pieces.append(np.fromiter(column, np.int64, count)
                          if node[0] == "take" and node[2] == () else column)
    found = _Found(S, bounds, varying, _int_rows(pieces, count))
    return list(map(_Copy, itertools.repeat(template, count), itertools.repeat(found),
                    range(count)))


def _INDEX_NODE(node: Any) -> bool:
    """Whether a constant node is ``x[i]``'s index: its constants are 0-d
    int64 arrays (the node's type name and aval, which every term of the
    node's class has), which ``np.fromiter`` reads into one int64 array in C
    with the values ``np.array`` of their list gives, without its look at
    each one's type and shape first (a tenth of the time)."""
    return node[1] == "ndarray" and node[2].shape == () and node[2].dtype == _INT64


def _int_rows(pieces: list[list[Any]], count: int) -> np.ndarray | list[list[int]]:
    """Per term, its integers (each piece's values flattened, in order; a
    piece is an array or a list of a value per term): the rows of one int64
    array, or lists where the pieces' sizes differ."""
    blocks = []
    try:
        for piece in pieces:
            block = np.array(piece, np.int64)
            blocks.append(block.reshape(count, block.size // count))
    except ValueError:  # ragged
        return [list(itertools.chain.from_iterable(np.ravel(v).tolist() for v in term))
                for term in zip(*pieces)] if pieces else [[] for _ in range(count)]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((count, 0), np.int64)


def _runs(terms: list[Any]) -> list[tuple[Any, int, int]]:
    """The terms as runs: (its `_Found`, first, end) for consecutive copies
    matched together, in their batch's order, (the term, 0, 1) for any other."""
    n = len(terms)
    if not n:
        return []
    # on arrays: a run starts where the batch changes or its terms stop being
    # consecutive (a walked term's ``found`` is None: a run of its own)
    founds = list(map(_FOUND, terms))
    ats = np.fromiter(map(_AT, terms), np.int64, n)
    ids = np.fromiter(map(id, founds), np.int64, n)
    walked = ids == id(None)
    new = np.ones(n, bool)
    new[1:] = (ids[1:] != ids[:-1]) | (ats[1:] != ats[:-1] + 1) | walked[1:] | walked[:-1]
    starts = np.flatnonzero(new).tolist()
    at = ats.tolist()
    return [(founds[a], at[a], at[b - 1] + 1) if founds[a] is not None else (terms[a], 0, 1)
            for a, b in zip(starts, starts[1:] + [n])]


def varying_columns(terms: list[Any]) -> list[list[Any]]:
    """Per varying node, its values in the terms: ``zip(*(t.varying for t
    in terms))``, the copies matched together sliced from their batch."""
    pieces = [[column[first:end] for column in what.varying] if type(what) is _Found
              else [[v] for v in what.varying] for what, first, end in _runs(terms)]
    return [list(itertools.chain.from_iterable(columns)) for columns in zip(*pieces)]


def int_matrix(terms: list[Any]) -> np.ndarray:
    """The terms' integers, a row per term (of equal lengths: terms of one class)."""
    blocks = []
    for what, first, end in _runs(terms):
        ints = what.ints
        if type(what) is _Found and type(ints) is np.ndarray:
            blocks.append(ints[first:end])
        else:
            blocks.append(np.asarray(ints[first:end] if type(what) is _Found else [ints],
                                     dtype=np.int64))
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.int64)


class _Found:
    """What the terms matched together differ in: their slots (a column per
    term), bounds, per collected node the values (a list per node) and
    their integers."""

    __slots__ = ("S", "bounds", "varying", "ints", "_lists")

    def __init__(self, S: np.ndarray, bounds: list[int], varying: list[list[Any]],
                 ints: np.ndarray | list[list[int]]) -> None:
        self.S, self.bounds, self.varying, self.ints = S, bounds, varying, ints
        self._lists: list[list[int]] | None = None

    def int_list(self, at: int) -> list[int]:
        if self._lists is None:
            ints = self.ints
            self._lists = ints.tolist() if type(ints) is np.ndarray else ints
        return self._lists[at]


class _Copy:
    """A term that is its template's DAG at other slots (`_matched`, `_Batches`):
    what a `_Term` gives, read from the template and from the `_Found` of
    the terms matched with it when asked (most never are, one object per
    term of a long loop)."""

    __slots__ = ("template", "found", "at")
    ok = True

    def __init__(self, template: _Term, found: _Found, at: int) -> None:
        self.template, self.found, self.at = template, found, at

    @property
    def nodes(self) -> list[Any]:
        return self.template.nodes

    @property
    def root(self) -> int:
        return self.template.root

    @property
    def signature(self) -> Any:
        return self.template.signature

    @property
    def shared(self) -> list[int]:
        return self.template.shared  # a match reads the same shared slots

    @property
    def slots(self) -> list[int]:
        return self.found.S[:, self.at].tolist()

    @property
    def varying(self) -> list[Any]:
        at = self.at
        return [column[at] for column in self.found.varying]

    @property
    def ints(self) -> list[int]:
        return self.found.int_list(self.at)

    # what the term was matched with (as `_Term` keeps it)
    @property
    def _bound(self) -> int:
        return self.found.bounds[self.at]

    @property
    def _own(self) -> set[int]:
        return self.template._own

    @property
    def _arrays(self) -> set[int]:
        return self.template._arrays

    @property
    def _foreign(self) -> set[int]:
        return self.template._foreign


# -- many terms matched at once -------------------------------------------------------
STREAK = 4         # terms a template matches one by one before batches are tried
MIN_BATCH = 8      # terms matched together at first; doubled while all match


class _Batches:
    """Terms matched against their template many at a time, on the tape's
    arrays (`tape_arrays.columns_of`: detection's, when it saw this tape).
    The vectorized checks are stricter than `_matched`'s (a constant or
    parameters that compare equal but differ in bits, an operand beyond the
    arrays' MAX_ARITY columns fail them), so a term that passes them is one
    `_matched` finds, with the same slots; the others are left to
    `_matched`.  A loop's terms then cost a few NumPy operations per node
    of its body instead of a Python step per node of each term."""

    def __init__(self, ix: _TapeIndex, chain: Any, bounds: list[int], blocked: set[int],
                 arrays: set[int], members: dict[Any, list[int]]) -> None:
        self.ix, self.chain, self.bounds, self.blocked, self.arrays = ix, chain, bounds, \
            blocked, arrays
        self.members = members
        # term number -> (the template it matched, the term)
        self.found: dict[int, tuple[_Term, _Term]] = {}
        # key -> [its template, the terms it matched in a row, the size of its
        # next batch, the last term batched]
        self.state: dict[Any, list[Any]] = {}
        self.cols: Any = None
        # the copies `unbatched` last matched in one batch, from the term it
        # returned on, for consecutive terms of its key (`_terms` takes them)
        self.block: list[_Term] | None = None

    def unbatched(self, template: _Term, key: Any, k: int, root: int, bound: int
                  ) -> _Term | None:
        """Term k (of ``key``, at ``root``) matched against ``template``, once
        no batch matched it: by a batch from term k on once the template
        matched STREAK terms in a row (a loop; the batch's leading copies are
        left in ``block``), else by `_matched`; None if it does not match."""
        state = self.state.get(key)
        if state is None or state[0] is not template:
            state = self.state[key] = [template, 0, MIN_BATCH, -1]
        if state[1] >= STREAK and k > state[3]:
            self._match_from(state, key, k)
            if self.block is not None:
                return self.block[0]
        term = _matched(template, root, bound, self.blocked)
        state[1] = state[1] + 1 if term is not None else 0
        return term

    def _match_from(self, state: list[Any], key: Any, k: int) -> None:
        """Match a batch of the key's terms, from term k on, against the
        template; a batch where all match makes the next one twice as large,
        one where term k does not stops batches until the next streak."""
        template, _, size, _ = state
        members = self.members[key]
        at = bisect.bisect_left(members, k)
        batch = members[at:at + size]
        state[3] = batch[-1]
        found = self._match(template, batch) if len(batch) >= MIN_BATCH else None
        if found is None:
            return
        ok, S = found
        state[1], state[2] = (state[1] if ok[0] else 0), (2 * size if ok.all() else MIN_BATCH)
        chosen = np.flatnonzero(ok)
        ks = [batch[c] for c in chosen.tolist()]
        terms = _copies(template, [self.bounds[k] for k in ks], S[:, chosen])
        # the leading copies (term k on, consecutive) go to the caller as a
        # block, the others wait in ``found`` for their turn
        lead = len(ks) if ok.all() else int(np.argmin(ok))
        if lead:
            self.block = terms[:lead]
        self.found.update(zip(ks[lead:], zip(itertools.repeat(template), terms[lead:])))

    def _columns(self) -> Any:
        if self.cols is None:
            from .tape_arrays import MAX_ARITY, columns_of
            cols = columns_of(self.ix.tape)
            nslots = len(cols.is_const)
            blocked = np.zeros(nslots, bool)
            blocked[np.fromiter(self.blocked, np.int64, len(self.blocked))] = True
            arrays = np.zeros(nslots, bool)
            arrays[np.fromiter(self.arrays, np.int64, len(self.arrays))] = True
            self.cols = (cols, MAX_ARITY, blocked, arrays, np.asarray(self.bounds, np.int64))
        return self.cols

    def _match(self, template: _Term, batch: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per term of ``batch``: whether it passes the checks, and its slots
        (node by node, a column per term); None if none can."""
        cols, width, blocked, arrays, all_bounds = self._columns()
        ix = self.ix
        pos_of, ops, feats, is_const = cols.producer, cols.ops, cols.features, cols.is_const
        bounds = all_bounds[batch]
        roots = np.asarray([self.chain.terms[k] for k in batch], np.int64)
        S = np.full((len(template.nodes), len(batch)), -1, np.int64)
        assigned = [False] * len(template.nodes)
        S[template.root], assigned[template.root] = roots, True
        ok = np.ones(len(batch), bool)
        for j, node, operands in template.plan():
            if not assigned[j] or len(operands) > width:
                return None
            s = S[j]
            kind = node[0]
            p = pos_of[s]
            if kind == "shared":  # the same slot, computed before the terms may read it
                ok &= (s == node[1]) & ((p < 0) | (p <= bounds))
                continue
            if kind == "const":
                ok &= is_const[s]
                ok &= self._same_constants(s, ok, node, template.slots[j])
                continue
            tp = ix.position[template.slots[j]]
            ok &= (p >= 0) & (p > bounds) & ~blocked[s]
            row = feats[p]
            # the same primitive and parameters (by value and repr) and result aval
            ok &= (row[:, 0] == feats[tp, 0]) & (row[:, 1] == feats[tp, 1])
            if kind == "take" or kind == "take_chain":
                # a constant index of the template's shape and dtype
                ok &= is_const[ops[p, 1]] & (row[:, 4] == feats[tp, 4])
                ok &= arrays[ops[p, 0]] == (kind == "take_chain")
            for m, c in enumerate(operands):
                if assigned[c]:
                    ok &= S[c] == ops[p, m]
                else:
                    S[c], assigned[c] = ops[p, m], True
        # one to one: no slot is two nodes
        ordered = np.sort(S, axis=0)
        ok &= ~(ordered[1:] == ordered[:-1]).any(axis=0)
        return ok, S

    def _same_constants(self, s: np.ndarray, ok: np.ndarray, node: Any, template_slot: int
                        ) -> np.ndarray:
        """Whether each constant slot of ``s`` (where ``ok``) has the term
        node ``node`` (the template's, at ``template_slot``): ("const", its
        type's name, its aval), which `const_node` gives every constant of
        that aval (small, of a numeric kind), told by the avals' numbers and
        the values' types instead of a node made per slot."""
        same = np.zeros(len(s), bool)
        candidates = s[ok]
        if not len(candidates):
            return same
        cols = self._columns()[0]
        consts, name = self.ix.tape.consts, node[1]
        aval_ok = cols.aval_id[candidates] == cols.aval_id[template_slot]
        if (candidates == candidates[0]).all():  # a constant every term reads (a loop's 1.0)
            same[ok] = aval_ok & (type(consts[int(candidates[0])]).__name__ == name)
            return same
        types = list(map(type, map(consts.__getitem__, candidates.tolist())))
        kinds = set(types)
        if len(kinds) == 1:  # (x[i]'s indices: all arrays) the one type's name
            same[ok] = aval_ok & (kinds.pop().__name__ == name)
            return same
        same[ok] = aval_ok & np.fromiter(map(name.__eq__, map(_NAME, types)), bool,
                                         len(candidates))
        return same

