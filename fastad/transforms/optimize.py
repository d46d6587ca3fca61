"""Tape optimization: dead code, common subexpressions, constants, algebra.

Rewrites keep IEEE values: ``x * 1``, ``x / 1``, ``x - 0``, ``x + 0``,
``x ** 1`` and ``-(-x)`` become ``x`` when that keeps x's shape and dtype
(``x + 0`` may turn a -0.0 into +0.0, which compares equal); ``x ** 2`` is
``square(x)``, the same correctly rounded ``x * x``; ``c1 * (c2 * x)`` is
``(c1 * c2) * x`` when c2 is a power of two at least 1 and ``|c1| >= 1`` (see
``_exact_scale``: the only two that agree for every x); ``x ** n`` for other
integers n in [-4, 8] is squarings and products, the one rewrite that is not
bit for bit (within |n| ulp: `reduce_powers`); ``x * 0`` is never ``0``,
since x may be inf or NaN, and ``exp(log(x))`` is never ``x`` (it is not,
to the last bit).  Guards are never removed: they are side effects.
"""
from __future__ import annotations

import collections
import hashlib
from typing import Any

import numpy as np

from ..core.arrays import scalar_key
from ..core.registry import registry
from ..core.tape import Instr, Tape, aval_of
from .analysis import bitwise_uniform
from .loop_merge import merge_stored_states
from .scatters import fuse_shifted_adjoints, split_broadcast_scatters
from .scatters import positive_zeros as _positive_zeros

_FOLD_LIMIT = 1 << 16  # elements: larger constant results stay computed at run time


def optimize(tape: Tape) -> Tape:
    """All passes; the result's ``stats()["optimize"]`` has the instruction
    count and computed bytes before and after."""
    before = {"instructions": len(tape.instrs), "bytes": tape.computed_bytes()}
    # simplify again once folding has turned constant subexpressions into constants
    # the adjoints of shifted slices as one pass each (`scatters`): after the
    # scatter-adds are merged into chains, before the links left are dropped
    # a forward loop read from the loop storing its states: after common
    # subexpressions, which make their operands the same slots
    out = eliminate_dead_code(fuse_shifted_adjoints(split_broadcast_scatters(accumulate_in_place(
        merge_stored_states(eliminate_common_subexpressions(
            reduce_powers(simplify(fold_constants(simplify(tape))))))))))
    out.optimized_from = {"before": before,
                          "after": {"instructions": len(out.instrs), "bytes": out.computed_bytes()}}
    return out


def eliminate_dead_code(tape: Tape) -> Tape:
    live = set(tape.outputs)
    kept: list[Instr] = []
    for ins in reversed(tape.instrs):
        if ins.out in live or registry[ins.prim].effect is not None:
            kept.append(ins)
            live.update(ins.ins)
    kept.reverse()
    consts = {s: v for s, v in tape.consts.items() if s in live}
    return Tape(list(tape.inputs), list(tape.outputs), consts, kept, list(tape.avals))


def _const_key(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.nbytes <= 4096:
            return ("array", value.dtype.str, value.shape, value.tobytes())
        # a digest, not the bytes: a key per large constant would double the
        # tape's memory; equal digests are compared element by element
        if not any(value.strides):  # a broadcast scalar (zeros of a shape)
            data = value.reshape(-1)[:1].tobytes()
        else:
            data = np.ascontiguousarray(value).data
        return ("digest", value.dtype.str, value.shape, not any(value.strides),
                hashlib.blake2b(data, digest_size=16).digest())
    return ("scalar",) + scalar_key(value)


def eliminate_common_subexpressions(tape: Tape) -> Tape:
    rename: dict[int, int] = {}
    canonical_const: dict[Any, int] = {}
    consts: dict[int, Any] = {}
    for s, v in tape.consts.items():
        key = _const_key(v)
        if key in canonical_const and (key[0] != "digest" or np.array_equal(
                v, consts[canonical_const[key]])):
            rename[s] = canonical_const[key]
        else:
            canonical_const[key] = s
            consts[s] = v
    seen: dict[Any, int] = {}
    instrs: list[Instr] = []
    for ins in tape.instrs:
        ins = _renamed(ins, rename)
        key = (ins.prim, ins.ins, _hashable(ins.params))
        if registry[ins.prim].effect is None and key in seen:
            rename[ins.out] = seen[key]
            continue
        seen[key] = ins.out
        instrs.append(ins)
    outputs = [rename.get(s, s) for s in tape.outputs]
    return Tape(list(tape.inputs), outputs, consts, instrs, list(tape.avals))


def _renamed(ins: Instr, rename: dict[int, int]) -> Instr:
    for s in ins.ins:
        if s in rename:
            return Instr(ins.prim, ins.out, tuple(rename.get(s, s) for s in ins.ins),
                         ins.params, ins.line)
    return ins


def _hashable(params: Any) -> Any:
    try:
        hash(params)
        return params
    except TypeError:
        return repr(params)


def fold_constants(tape: Tape) -> Tape:
    consts = dict(tape.consts)
    instrs: list[Instr] = []
    with np.errstate(all="ignore"):
        for ins in tape.instrs:
            if (registry[ins.prim].effect is None and all(s in consts for s in ins.ins)
                    and _worth_folding(tape, ins)):
                value = registry[ins.prim].impl(*(consts[s] for s in ins.ins), **dict(ins.params))
                if aval_of(value) == tape.avals[ins.out]:
                    consts[ins.out] = np.asarray(value) if np.ndim(value) else value
                    continue
            instrs.append(ins)
    return Tape(list(tape.inputs), list(tape.outputs), consts, instrs, list(tape.avals))


def _worth_folding(tape: Tape, ins: Instr) -> bool:
    """Fold unless the result is large and bigger than its operands: a
    broadcast scalar is cheaper to keep than to store as an array."""
    size = tape.avals[ins.out].size
    if size > _FOLD_LIMIT:
        return False
    return size <= 16 or size <= max((tape.avals[s].size for s in ins.ins), default=0)


def _is_const(tape: Tape, slot: int, number: float) -> bool:
    v = tape.consts.get(slot)
    if v is None:
        return False
    if not isinstance(v, np.ndarray):
        return v == number
    return v.dtype.kind in "fiub" and v.size > 0 and bool(np.all(v == number))


def simplify(tape: Tape) -> Tape:
    """x*1 -> x, x+0 -> x, x-0 -> x, x/1 -> x, x**1 -> x, -(-x) -> x, where
    the result keeps x's shape and dtype exactly; x**2 -> square(x); -(c*x)
    -> (-c)*x for a scalar constant c whose product has no other use (the
    same value: a product's sign is the xor of its operands' signs);
    c1 * (c2 * x) -> (c1 * c2) * x where that is exact (``_exact_scale``)."""
    rename: dict[int, int] = {}
    negated: dict[int, int] = {}
    scaled: dict[int, tuple[int, int]] = {}  # c*x with c a scalar constant -> (c, x)
    scales: dict[int, tuple[Any, int]] = {}  # c*x, c a uniform constant -> (c's value, x)
    uses = collections.Counter(s for ins in tape.instrs for s in ins.ins)
    uses.update(tape.outputs)
    consts, avals = dict(tape.consts), list(tape.avals)
    instrs: list[Instr] = []
    for ins in tape.instrs:
        ins = _renamed(ins, rename)
        operands = ins.ins
        keep = _identity_operand(tape, ins)
        if keep is None and ins.prim == "neg" and operands[0] in negated:
            keep = negated[operands[0]]
        if keep is not None and tape.avals[keep] == tape.avals[ins.out]:
            rename[ins.out] = keep
            continue
        if ins.prim == "neg":
            negated[ins.out] = operands[0]
        if ins.prim == "pow" and _is_const(tape, operands[1], 2) and \
                tape.avals[operands[0]] == tape.avals[ins.out]:
            ins = Instr("square", ins.out, (operands[0],), (), ins.line)
        if ins.prim == "mul":
            ins = _fold_scale(ins, tape, scales, uses, consts, avals)
            operands = ins.ins
            for c, x in (operands, operands[::-1]):
                if _scalar_const(tape, c) and tape.avals[x] == tape.avals[ins.out]:
                    scaled[ins.out] = (c, x)
                    break
        if ins.prim == "neg" and operands[0] in scaled and uses[operands[0]] == 1:
            c, x = scaled[operands[0]]
            consts[len(avals)] = -consts[c]
            avals.append(avals[c])
            ins = Instr("mul", ins.out, (len(avals) - 1, x), (), ins.line)
        instrs.append(ins)
    outputs = [rename.get(s, s) for s in tape.outputs]
    return Tape(list(tape.inputs), outputs, consts, instrs, avals)


def _fold_scale(ins: Instr, tape: Tape, scales: dict[int, tuple[Any, int]],
                uses: collections.Counter[int], consts: dict[int, Any], avals: list[Any]) -> Instr:
    """mul(c1, mul(c2, x)) as mul(c1 * c2, x) when exact and the inner product
    has no other use; records ins in ``scales`` when it scales a value of its
    own shape and dtype by a uniform constant."""
    out = avals[ins.out]
    for c, y in (ins.ins, ins.ins[::-1]):
        value = _uniform_const(consts, avals, c, out.dtype)
        if value is None or avals[y] != out:
            continue
        if y in scales and uses[y] == 1:
            inner, x = scales[y]
            product = _exact_scale(value, inner)
            if product is not None:
                consts[len(avals)] = float(product)  # weak: the instruction's dtype
                avals.append(aval_of(float(product)))
                ins = Instr("mul", ins.out, (len(avals) - 1, x), (), ins.line)
                value, y = product, x
        scales[ins.out] = (value, y)
        break
    return ins


def _uniform_const(consts: dict[int, Any], avals: list[Any], slot: int, dtype: np.dtype) -> Any:
    """The value, in ``dtype``, of a constant of one repeated float or integer
    value (any sign bit the same), as a product by it sees it; else None."""
    if slot not in consts or dtype.kind != "f":
        return None
    value = np.asarray(consts[slot])
    if value.dtype.kind not in "fi" or value.size == 0 or avals[slot].size != value.size:
        return None
    first = value.reshape(-1)[0]
    if not bitwise_uniform(value):
        return None
    with np.errstate(all="ignore"):
        cast = dtype.type(first)
    if value.dtype.kind == "i" and int(cast) != int(first):
        return None
    return cast


def _exact_scale(outer: Any, inner: Any) -> Any:
    """outer * inner if ``outer * (inner * x) == (outer * inner) * x`` for every
    x, in their dtype; else None.  With inner = ±2**k, k >= 0, inner * x is
    exact or overflows, and it overflows only where the whole product does
    when |outer| >= 1: both sides are then x's exact value times outer * inner,
    rounded once.  An outer power of two is not enough (inner * x may be
    rounded as a subnormal that outer * inner * x is not)."""
    if not (np.isfinite(outer) and np.isfinite(inner)) or abs(outer) < 1:
        return None
    mantissa, exponent = np.frexp(inner)
    if abs(mantissa) != 0.5 or exponent < 1:
        return None
    with np.errstate(all="ignore"):
        product = outer * inner
    return product if np.isfinite(product) else None


def _scalar_const(tape: Tape, slot: int) -> bool:
    value = tape.consts.get(slot)
    return (value is not None and np.ndim(value) == 0 and not isinstance(value, (bool, np.bool_))
            and np.asarray(value).dtype.kind == "f")


def accumulate_in_place(tape: Tape) -> Tape:
    """``p + scatter_add(zeros, I, b)`` -> ``scatter_add(p, I, b)`` when p is
    itself a scatter_add chain started from +0.0 zeros: the partial adjoints
    of a slice go into one buffer instead of one buffer each and a sum.  Bit
    for bit the same: sums started from +0.0 are never -0.0, so adding b or
    0.0 + b to them gives the same result."""
    uses = collections.Counter(s for ins in tape.instrs for s in ins.ins)
    uses.update(tape.outputs)
    producer: dict[int, Instr] = {}
    from_zeros: set[int] = set()  # scatter_add chains started from +0.0
    instrs: list[Instr] = []
    for ins in tape.instrs:
        if ins.prim == "add":
            for p, q in (ins.ins, ins.ins[::-1]):
                src = producer.get(q)
                if (p in from_zeros and src is not None and src.prim == "scatter_add"
                        and uses[q] == 1 and _positive_zeros(tape, src.ins[0])
                        and tape.avals[p] == tape.avals[q] == tape.avals[ins.out]):
                    ins = Instr("scatter_add", ins.out, (p, *src.ins[1:]), src.params, ins.line)
                    break
        if ins.prim == "scatter_add" and (ins.ins[0] in from_zeros
                                          or _positive_zeros(tape, ins.ins[0])):
            from_zeros.add(ins.out)
        producer[ins.out] = ins
        instrs.append(ins)
    return Tape(list(tape.inputs), list(tape.outputs), dict(tape.consts), instrs,
                list(tape.avals))


def _zeros_of_sign(tape: Tape, slot: int, negative: bool) -> bool:
    """Is ``slot`` a constant of zeros, all -0.0 (``negative``) or all +0.0?
    An integer zero adds as +0.0."""
    v = tape.consts.get(slot)
    if v is None or not _is_const(tape, slot, 0):
        return False
    v = np.asarray(v)
    if v.dtype.kind != "f":
        return not negative and v.dtype.kind in "iub"
    return bool(np.all(np.signbit(v) == negative))


def _identity_operand(tape: Tape, ins: Instr) -> int | None:
    if ins.prim == "mul":
        a, b = ins.ins
        if _is_const(tape, b, 1):
            return a
        if _is_const(tape, a, 1):
            return b
    elif ins.prim == "add":  # x + -0.0 is x; x + 0.0 is not when x is -0.0
        a, b = ins.ins
        if _zeros_of_sign(tape, b, negative=True):
            return a
        if _zeros_of_sign(tape, a, negative=True):
            return b
    elif ins.prim == "sub" and _zeros_of_sign(tape, ins.ins[1], negative=False):
        return ins.ins[0]  # x - 0.0 is x, -0.0 included
    elif ins.prim in ("div", "pow") and _is_const(tape, ins.ins[1], 1):
        return ins.ins[0]
    return None


#: x ** n as squarings and products, for these integer n (a negative n is one
#: division more); each list is the chain: ("sq", i) squares step i, ("mul", i)
#: multiplies step i by x, step 0 being x itself
_POWER_CHAINS = {
    1: [],
    2: [("sq", 0)],
    3: [("sq", 0), ("mul", 1)],
    4: [("sq", 0), ("sq", 1)],
    5: [("sq", 0), ("sq", 1), ("mul", 2)],
    6: [("sq", 0), ("mul", 1), ("sq", 2)],
    7: [("sq", 0), ("mul", 1), ("sq", 2), ("mul", 3)],
    8: [("sq", 0), ("sq", 1), ("sq", 2)],
}


def reduce_powers(tape: Tape) -> Tape:
    """``x ** n`` for a constant integer n in [-4, 8] (n not 0, 1, 2, which
    simplify handles) as squarings and products, and for negative n one
    division: a pow() call per element becomes a few multiplications.

    Not bit for bit: pow() is within an ulp of x**n and each product rounds
    once, so the result is within |n| ulp of NumPy's power (measured: at most
    5 for x**8, 3 for x**-4; tests/test_optimize.py checks |n| on random
    inputs), outside the subnormal range, where every product loses precision.  x ** 0.5 stays a
    pow(): IEEE's pow(-inf, 0.5) is +inf, sqrt(-inf) is NaN, so sqrt would
    change a value, not a last bit.  Real floats only (complex products round
    differently again)."""
    consts, avals = dict(tape.consts), list(tape.avals)
    instrs: list[Instr] = []
    one: int | None = None
    for ins in tape.instrs:
        n = _integer_exponent(tape, ins)
        if n is None:
            instrs.append(ins)
            continue
        x, out = ins.ins[0], ins.out

        def step(prim: str, operands: tuple[int, ...], last: bool) -> int:
            slot = out if last else len(avals)
            if not last:
                avals.append(avals[out])
            instrs.append(Instr(prim, slot, operands, (), ins.line))
            return slot

        chain = [x]
        plan = _POWER_CHAINS[abs(n)]
        for k, (kind, i) in enumerate(plan):
            last = n > 0 and k == len(plan) - 1
            chain.append(step("square", (chain[i],), last) if kind == "sq"
                         else step("mul", (chain[i], x), last))
        if n < 0:
            if one is None:
                one = len(avals)
                consts[one] = 1.0  # weak: the division's dtype
                avals.append(aval_of(1.0))
            step("div", (one, chain[-1]), True)
    return Tape(list(tape.inputs), list(tape.outputs), consts, instrs, avals)


def _integer_exponent(tape: Tape, ins: Instr) -> int | None:
    """n if ins is pow(x, n) of real floats, n a uniform constant integer in
    [-4, 8] other than 0, 1, 2, and the result has x's shape and dtype."""
    if ins.prim != "pow":
        return None
    x, y = ins.ins
    out = tape.avals[ins.out]
    if tape.avals[x] != out or out.dtype.kind != "f":
        return None
    value = _uniform_const(tape.consts, tape.avals, y, out.dtype)
    if value is None or not np.isfinite(value) or value != np.round(value):
        return None
    n = int(value)
    return n if -4 <= n <= 8 and n not in (0, 1, 2) else None
