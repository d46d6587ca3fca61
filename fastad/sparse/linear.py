"""A seed's product folded as linear combinations: the seed-free coefficients
computed once, each seed's values by the fewest operations.

Every product a sparse derivative evaluates is linear in its seed: the
tangent of f (``J v``), its cotangent (``u^T J``) or the tangent of its
gradient (``H v``).  The transformed tape spells that out operation by
operation as the chain rule writes it: for ``s = x * (1 + x)`` the tangent
is ``v * (1 + x) + x * v``, three operations per seed where one, ``v * c``
with ``c = 1 + 2x`` computed once, gives the same value to rounding.
Broyden's banded least squares had 55 instructions depending on the seed
in its Hessian-vector tape, 32 folded.

`fold` rewrites a transformed tape (its last input the seed) so that an
elementwise value depending on the seed is held as a sum of terms
``basis * coefficient``: a basis is the seed or a value an operation other
than the four below made (a gather, a scatter, a reduction, a product of
two seed-dependent values), a coefficient a seed-free value (or a number, or
1).  ``a + b``, ``a - b`` and ``-a`` combine the terms (a basis in both
takes the sum of its coefficients, a seed-free operation), ``a * k`` and
``a / k`` (k seed-free, a number or of a's shape) scale them by k or 1 / k;
anything else reads the sum written out (``b1 * c1 - b2 + b3 * c3 ...``,
once).  Written out, a sum
costs at most the operations it replaced, provided a sum times k is written
out before it is scaled (one product, not one per term) and a value read
more than once is written out where it was computed unless it is a basis
as it stands (else each reader would write its own sum): folded so, the
tape never has more operations per seed.  Folding further often saves
more, where the terms later merge with others of the same basis
(Broyden's ``v c + (v 10x) x`` is ``v (c + 10 x^2)``; scaled term by term,
``(r' a + v b) k`` joins the final sum's terms of r' and v): a sum times k
scaled term by term, a one-term value read more than once folded into
each reader.  `fold` makes the three foldings (`FOLDINGS`) and keeps the
one with the fewest operations depending on the seed, so never more than
the tape had (tests/test_sparse_linear.py counts them on the fuzz
generator's programs).  The coefficients are seed-free, so the split
form computes them in its shared part (or again per seed, where cheap) and
the side-by-side form once for all seeds (the optimizer's common
subexpressions).  Values change by rounding only (``v (1 + x) + x v``
against ``v (1 + 2x)``).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.tape import Aval, Instr, Tape

#: terms of a folded value at most; a longer sum is written out
MAX_TERMS = 8


class _Folder:
    def __init__(self, tape: Tape, distribute: bool, shared_terms: bool) -> None:
        self.src = tape
        # whether a sum times k scales each term (else it is written out first),
        # and whether a one-term value read more than once is folded into each
        # reader (else written out)
        self.distribute, self.shared_terms = distribute, shared_terms
        self.out = Tape(inputs=list(tape.inputs), outputs=[], consts=dict(tape.consts),
                        instrs=[], avals=list(tape.avals))
        # slot -> {basis slot: coefficient}, for every seed-dependent slot; a
        # coefficient is ("one",), ("num", number) or ("slot", seed-free slot)
        self.forms: dict[int, dict[int, tuple]] = {}
        self.written: dict[int, int] = {}  # a folded slot -> the slot of its sum

    # -- coefficients -----------------------------------------------------------
    def _emit(self, prim: str, ins: tuple[int, ...], aval: Aval) -> int:
        slot = self.out.new_slot(aval)
        self.out.instrs.append(Instr(prim, slot, ins))
        return slot

    def _const(self, value: float, dtype: np.dtype) -> int:
        slot = self.out.new_slot(Aval((), dtype))
        self.out.consts[slot] = dtype.type(value)
        return slot

    def _slot(self, c: tuple, dtype: np.dtype) -> int:
        if c[0] == "slot":
            return c[1]
        return self._const(1.0 if c[0] == "one" else c[1], dtype)

    def _binary(self, prim: str, a: tuple, b: tuple, dtype: np.dtype) -> tuple:
        sa, sb = self._slot(a, dtype), self._slot(b, dtype)
        shape = np.broadcast_shapes(self.out.avals[sa].shape, self.out.avals[sb].shape)
        return ("slot", self._emit(prim, (sa, sb), Aval(shape, dtype)))

    def _scale(self, c: tuple, k: tuple, dtype: np.dtype) -> tuple:
        if c[0] == "one":
            return k
        if c[0] == "num" and k[0] == "num":
            return ("num", c[1] * k[1])
        return self._binary("mul", c, k, dtype)

    def _inverse(self, k: tuple, dtype: np.dtype) -> tuple:
        if k[0] == "num" and k[1] != 0.0:
            return ("num", 1.0 / k[1])
        return self._binary("div", ("one",), k, dtype)

    def _add(self, a: tuple, b: tuple, dtype: np.dtype) -> tuple:
        if a[0] != "slot" and b[0] != "slot":
            return ("num", (1.0 if a[0] == "one" else a[1]) + (1.0 if b[0] == "one" else b[1]))
        return self._binary("add", a, b, dtype)

    def _negate(self, c: tuple, dtype: np.dtype) -> tuple:
        if c[0] != "slot":
            return ("num", -(1.0 if c[0] == "one" else c[1]))
        return ("slot", self._emit("neg", (c[1],), self.out.avals[c[1]]))

    # -- values ----------------------------------------------------------------
    def value(self, slot: int) -> int:
        """The slot holding ``slot``'s value, its sum written out if folded."""
        form = self.forms.get(slot)
        if form is None or form == {slot: ("one",)}:
            return slot
        if slot not in self.written:
            aval = self.src.avals[slot]
            acc = None
            for basis, c in form.items():
                if acc is not None and c == ("num", -1.0):
                    acc = self._emit("sub", (acc, basis), aval)
                    continue
                term = basis if c[0] == "one" else self._emit(
                    "mul", (basis, self._slot(c, aval.dtype)), aval)
                acc = term if acc is None else self._emit("add", (acc, term), aval)
            self.written[slot] = acc
        return self.written[slot]

    def _known(self, slot: int) -> tuple:
        value = self.src.consts.get(slot)
        if value is not None and np.ndim(value) == 0:
            return ("num", float(value))
        return ("slot", slot)

    def fold(self, ins: Instr) -> dict[int, tuple] | None:
        """The terms of ``ins``'s result, or None when it is not folded."""
        avals, aval = self.src.avals, self.src.avals[ins.out]
        if aval.dtype.kind != "f" or any(avals[s].dtype != aval.dtype for s in ins.ins):
            return None
        dependent = [s in self.forms for s in ins.ins]
        full = [avals[s].shape == aval.shape for s in ins.ins]
        dtype = aval.dtype
        if ins.prim in ("add", "sub") and all(dependent) and all(full) and not ins.params:
            a, b = (self.forms[s] for s in ins.ins)
            terms = dict(a)
            for basis, c in b.items():
                c = self._negate(c, dtype) if ins.prim == "sub" else c
                terms[basis] = self._add(terms[basis], c, dtype) if basis in terms else c
            return terms if len(terms) <= MAX_TERMS else None
        if ins.prim == "neg" and full[0] and not ins.params:
            return {basis: self._negate(c, dtype) for basis, c in self.forms[ins.ins[0]].items()}
        if ins.prim in ("mul", "div") and sum(dependent) == 1 and not ins.params:
            at = dependent.index(True)
            if ins.prim == "div" and at == 1:  # k / a is not linear in a
                return None
            k = ins.ins[1 - at]
            if not full[at] or avals[k].shape not in ((), aval.shape):
                return None
            terms = self.forms[ins.ins[at]]
            if len(terms) > 1 and not self.distribute:  # one product, not one per term
                terms = {self.value(ins.ins[at]): ("one",)}
            known = self._known(k)
            if ins.prim == "div":
                known = self._inverse(known, dtype)
            return {basis: self._scale(c, known, dtype) for basis, c in terms.items()}
        return None

    def run(self, seed: int) -> Tape:
        src = self.src
        readers = Counter(s for ins in src.instrs for s in ins.ins)
        readers.update(src.outputs)
        self.forms[seed] = {seed: ("one",)}
        for ins in src.instrs:
            if not any(s in self.forms for s in ins.ins):
                self.out.instrs.append(ins)  # seed-free: as it was
                continue
            terms = self.fold(ins)
            if terms is not None:
                self.forms[ins.out] = terms
                if readers[ins.out] > 1 and (len(terms) > 1 or not self.shared_terms
                                             and list(terms.values()) != [("one",)]):
                    # read more than once: written out once, here
                    self.forms[ins.out] = {self.value(ins.out): ("one",)}
                continue
            self.out.instrs.append(ins._replace(ins=tuple(self.value(s) for s in ins.ins)))
            self.forms[ins.out] = {ins.out: ("one",)}
        self.out.outputs = [self.value(s) for s in src.outputs]
        return self.out


def per_seed(tape: Tape, seed: int) -> int:
    """How many instructions of ``tape`` depend on its input ``seed``."""
    dependent, count = {seed}, 0
    for ins in tape.instrs:
        if any(s in dependent for s in ins.ins):
            dependent.add(ins.out)
            count += 1
    return count


def fold(tape: Tape, seed: int | None = None) -> Tape:
    """``tape`` (linear in its input ``seed``, by default its last) with the
    seed-dependent elementwise arithmetic folded into linear combinations,
    never more instructions depending on the seed than it had."""
    seed = tape.inputs[-1] if seed is None else seed
    # the last never adds an operation; the others may save more
    tries = [_Folder(tape, *how).run(seed) for how in FOLDINGS]
    return min(tries, key=lambda t: per_seed(t, seed))


#: (distribute, shared_terms) of the foldings tried, the more folded first
FOLDINGS = ((True, True), (False, True), (False, False))
