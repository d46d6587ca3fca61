"""Rerolling never fails a function: random loop programs, rerolled or not.

hypothesis draws a *loop program*: a few blocks run one after the other, each
a Python loop nest (one to three levels; inner lengths may depend on the
outer index, so nests are ragged; lengths 1 to 40, and now and then a single
loop of about 2000 iterations, deeper than Python's recursion limit when
unrolled).  An iteration computes a scalar from

  * elementwise operations on reads ``x[a + b*i + c*j]`` of the flat input
    and ``A[i + di, j + dj]`` of the 2-D one (wrapped into range, so some
    reads are affine only piecewise), constants, ``0.25 * i``, the previous
    block's result (reaching back through everything computed before), or
  * a reduction of a slice of per-iteration length ``x[s*i : s*i + L(i)]``:
    sum, max, min, mean, logsumexp,

optionally behind a branch per element (``if r > 0:``, a guard).  A loop
level combines its iterations' results by accumulating (``s = s + r``,
``s - r``, ``s * (1 + r/8)``), by a recurrence (a logsumexp step
``s = logaddexp(s, r)``, a running max), by collecting them in a list and
reducing it (``sum(list)``, ``fnp.stack`` then sum, max, min, mean or
logsumexp, ``np.sum(np.stack(...))``), or by writing ``y[i] = r`` (or
``y[i] = y[i] + r``) into a traced ``fnp.zeros`` buffer.  Nested stacks of
sums, ragged loops and chains of logsumexp steps are the shapes of real
programs that once made the rerolling pass raise.

For each program:
  * the rerolled tape and the unrolled one agree on the reference
    interpreter: bit for bit with ``exact_sums=True`` (every rerolled term is
    computed with the same operations; only sums may be reassociated), and
    to rounding without it;
  * on every backend, ``fa.compile`` (value and gradient), ``fa.jit`` and
    ``fa.jit(fa.value_and_grad)`` agree with eager ``fa.value_and_grad``, at the input traced and at a
    second input that may take other branches; any exception the eager path
    does not raise is a failure.

A candidate run the pass cannot reroll safely is left unrolled, so no
program here is refused; see "Loop rerolling before differentiation" in
docs/design.md.  The CI budget is ``FASTAD_FUZZ_EXAMPLES`` (default 200)
divided by 40 programs per test (by 200 for Numba, which compiles each program
for seconds); a longer run over fresh programs:

    FASTAD_TEST_EXPLORE=1 FASTAD_FUZZ_EXAMPLES=4000 python -m pytest -q tests/test_reroll_fuzz.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from fastad.backends.reference import evaluate
from fastad.transforms.reroll import reroll

EXAMPLES = int(os.environ.get("FASTAD_FUZZ_EXAMPLES", 200))
FUZZ = settings(max_examples=max(EXAMPLES // 40, 1), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_NUMBA = settings(FUZZ, max_examples=max(EXAMPLES // 200, 1))
FAST_BACKENDS = [b for b in BACKENDS if b != "numba"]
M = 12          # the input is an M x M matrix A; x is its flat view
LONG = 2000     # a long loop: its unrolled chain is deeper than the recursion limit
RTOL = 1e-9     # compiled against eager: sums over rerolled loops are reassociated


# -- loop programs -------------------------------------------------------------------
UNARY = {"sin": np.sin, "cos": np.cos, "tanh": np.tanh, "square": np.square,
         "exp": lambda v: np.exp(0.1 * v), "soft": lambda v: np.sqrt(v * v + 1.0)}
BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "max": np.maximum, "min": np.minimum}


def _lse(v: Any) -> Any:
    m = np.max(v)
    return m + np.log(np.sum(np.exp(v - m)))


REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean, "lse": _lse,
          "fnp_lse": fnp.logsumexp, "sumsq": lambda v: np.sum(v * v)}
# how a loop level turns its iterations' results into one value
COMBINE = ["add", "sub", "mul", "logaddexp", "running_max", "list_sum", "stack_sum",
           "stack_max", "stack_min", "stack_mean", "stack_lse", "np_stack_sum", "write",
           "write_add"]


@dataclass
class Read:
    """x[(a + sum_l b_l * i_l) mod M*M], or A[(i + di) mod M, (j + dj) mod M]."""
    matrix: bool
    offset: int
    strides: tuple[int, ...]

    def __call__(self, x: Any, A: Any, idx: tuple[int, ...]) -> Any:
        if self.matrix and len(idx) >= 2:
            return A[(idx[-2] + self.offset) % M, (idx[-1] + self.strides[0]) % M]
        flat = self.offset + sum(b * i for b, i in zip(self.strides, idx))
        return x[flat % (M * M)]


@dataclass
class Slice:
    """reduce(x[s*i + a : s*i + a + L(i)]), L(i) = base + (mult * i) % mod."""
    reduce: str
    start: int
    step: int
    base: int
    mult: int
    mod: int

    def __call__(self, x: Any, idx: tuple[int, ...]) -> Any:
        i = idx[-1] if idx else 0
        length = self.base + (self.mult * i) % self.mod
        lo = (self.start + self.step * i) % (M * M - length)
        return REDUCE[self.reduce](x[lo:lo + length])


def expression_function(e: Any) -> Any:
    """The expression ``e`` as a function of (x, A, idx, prev): nested
    closures rather than the nested tuples, as a user's program holds its
    functions (a compiled function's walk over its closure follows functions
    to any depth, containers to 8 levels)."""
    kind = e[0]
    if kind == "read":
        read = e[1]
        return lambda x, A, idx, prev: read(x, A, idx)
    if kind == "slice":
        part = e[1]
        return lambda x, A, idx, prev: part(x, idx)
    if kind == "const":
        c = e[1]
        return lambda x, A, idx, prev: c
    if kind == "index":
        return lambda x, A, idx, prev: 0.25 * (idx[-1] if idx else 0)
    if kind == "prev":
        return lambda x, A, idx, prev: prev
    if kind == "unary":
        fn, a = UNARY[e[1]], expression_function(e[2])
        return lambda x, A, idx, prev: fn(a(x, A, idx, prev))
    fn, a, b = BINARY[e[1]], expression_function(e[2]), expression_function(e[3])
    return lambda x, A, idx, prev: fn(a(x, A, idx, prev), b(x, A, idx, prev))


@dataclass
class Level:
    """One loop of a nest: ``for i in range(length(outer index))``."""
    base: int
    mult: int          # ragged lengths: base + (mult * outer) % mod
    mod: int
    combine: str
    guard: str | None  # None | "result" (if r > 0) | "read" (if x[...] > 0)
    guard_read: Read | None = None

    def length(self, outer: int) -> int:
        return self.base + (self.mult * outer) % self.mod if self.mod else self.base


@dataclass
class Block:
    levels: list[Level]
    body: Any
    evaluate: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.evaluate = expression_function(self.body)

    def run(self, x: Any, A: Any, prev: Any, idx: tuple[int, ...] = ()) -> Any:
        depth = len(idx)
        level = self.levels[depth]
        n = level.length(idx[-1] if idx else 0)
        results = []
        for i in range(n):
            inner = idx + (i,)
            if depth + 1 < len(self.levels):
                r = self.run(x, A, prev, inner)
            else:
                r = self.evaluate(x, A, inner, prev)
            if level.guard is not None:
                test = r if level.guard == "result" else level.guard_read(x, A, inner)
                if test > 0:          # a guard per iteration
                    r = 0.5 * r
                else:
                    r = np.sin(r) - 0.25
            results.append(r)
        return combine(level.combine, results)


def combine(how: str, rs: list[Any]) -> Any:
    if how in ("add", "sub", "mul", "logaddexp", "running_max"):
        s = rs[0] if how in ("logaddexp", "running_max") else (1.0 if how == "mul" else 0.0)
        for r in (rs[1:] if how in ("logaddexp", "running_max") else rs):
            if how == "add":
                s = s + r
            elif how == "sub":
                s = s - r
            elif how == "mul":
                s = s * (1.0 + 0.125 * np.tanh(r))
            elif how == "logaddexp":
                m = np.maximum(s, r)
                s = m + np.log(np.exp(s - m) + np.exp(r - m))
            else:
                s = np.maximum(s, r)
        return s
    if how == "list_sum":
        return sum(rs)
    if how == "np_stack_sum":
        return np.sum(np.stack(rs))
    if how.startswith("stack_"):
        return REDUCE[{"stack_sum": "sum", "stack_max": "max", "stack_min": "min",
                       "stack_mean": "mean", "stack_lse": "lse"}[how]](fnp.stack(rs))
    y = fnp.zeros(len(rs)) + 0.5
    for k, r in enumerate(rs):
        y[k] = y[k] + r if how == "write_add" else r
    return np.sum(y * y) * 0.125


@dataclass
class LoopProgram:
    blocks: list[Block] = field(default_factory=list)

    def __call__(self, A: Any) -> Any:
        x = A.reshape(-1)
        prev: Any = 0.5
        total: Any = 0.0
        for block in self.blocks:
            prev = block.run(x, A, prev)
            total = total + prev
        return total

    def __repr__(self) -> str:
        return "LoopProgram(\n  " + ",\n  ".join(map(repr, self.blocks)) + ")"


# -- strategies ----------------------------------------------------------------------
@st.composite
def reads(draw: Any, depth: int) -> Read:
    matrix = depth >= 2 and draw(st.booleans())
    strides = tuple(draw(st.sampled_from([0, 1, 1, 2, 3, M])) for _ in range(max(depth, 1)))
    return Read(matrix, draw(st.integers(0, 2 if matrix else M * M - 1)),
                (draw(st.integers(0, 2)),) if matrix else strides)


@st.composite
def slices(draw: Any) -> Slice:
    return Slice(draw(st.sampled_from(sorted(REDUCE))), draw(st.integers(0, 40)),
                 draw(st.integers(0, 3)), draw(st.integers(1, 6)), draw(st.integers(0, 3)),
                 draw(st.integers(1, 5)))


def expressions(depth: int, first: bool) -> st.SearchStrategy:
    leaves = [st.tuples(st.just("read"), reads(depth)),
              st.tuples(st.just("read"), reads(depth)),
              st.tuples(st.just("slice"), slices()),
              st.tuples(st.just("const"), st.floats(-2, 2).map(lambda c: round(c, 2))),
              st.just(("index",))]
    if not first:
        leaves.append(st.just(("prev",)))
    return st.recursive(st.one_of(*leaves), lambda inner: st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), inner),
        st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), inner, inner)),
        max_leaves=4)


@st.composite
def levels(draw: Any, depth: int, long: bool) -> Level:
    if long:
        return Level(LONG + draw(st.integers(0, 40)), 0, 0,
                     draw(st.sampled_from(["add", "logaddexp", "stack_sum", "write"])), None)
    top = 40 if depth == 0 else 12
    ragged = depth > 0 and draw(st.booleans())
    guard = draw(st.sampled_from([None, None, None, "result", "read"]))
    return Level(draw(st.integers(1, top)),
                 draw(st.integers(1, 5)) if ragged else 0,
                 draw(st.integers(1, 8)) if ragged else 0,
                 draw(st.sampled_from(COMBINE)), guard,
                 draw(reads(depth + 1)) if guard == "read" else None)


@st.composite
def blocks(draw: Any, first: bool) -> Block:
    long = draw(st.integers(0, 9)) == 0
    depth = 1 if long else draw(st.sampled_from([1, 1, 2, 2, 3]))
    return Block([draw(levels(d, long)) for d in range(depth)],
                 draw(expressions(depth, first)))


@st.composite
def loop_programs(draw: Any) -> LoopProgram:
    n = draw(st.integers(1, 3))
    return LoopProgram([draw(blocks(k == 0)) for k in range(n)])


def inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.5, 1.5, (M, M)), rng.uniform(-1.5, 1.5, (M, M))


# -- checks --------------------------------------------------------------------------
def eager(prog: LoopProgram, A: np.ndarray) -> tuple[Any, Any]:
    return fa.value_and_grad(prog)(A)


def assert_close(got: Any, want: Any, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    scale = 1.0 + np.max(np.abs(want[np.isfinite(want)]), initial=0.0)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def check_tape(prog: LoopProgram, A: np.ndarray) -> None:
    """Rerolled against unrolled on the reference interpreter."""
    tape = fa.make_tape(prog)(A)
    want = evaluate(tape, [A])
    exact = reroll(tape, [A], exact_sums=True)
    if exact is not None:
        got = evaluate(exact, [A])
        assert got is not None, "a rerolled guard fails on the input traced"
        for g, w in zip(got, want):
            assert np.array_equal(g, w, equal_nan=True), (g, w)
    rolled = reroll(tape, [A])
    if rolled is not None:
        got = evaluate(rolled, [A])
        assert got is not None, "a rerolled guard fails on the input traced"
        for g, w in zip(got, want):
            assert_close(g, w, "reassociated sums")


def check_backend(prog: LoopProgram, seed: int, backend: str) -> None:
    A, B = inputs(seed)                     # B may take other branches: a retrace
    compiled = fa.compile(prog, backend=backend)
    for X in (A, B):
        v, g = eager(prog, X)
        cv, cg = compiled.value_and_grad(X)
        assert_close(cv, v, f"compiled value on {backend}")
        assert_close(cg, g, f"compiled gradient on {backend}")
    v, g = eager(prog, A)
    assert_close(fa.jit(prog, backend=backend)(A), v, f"jit on {backend}")
    # grad's own trace nested in jit's, rerolled before it is differentiated
    jv, jg = fa.jit(fa.value_and_grad(prog), backend=backend)(A)
    assert_close(jv, v, f"jit(value_and_grad) value on {backend}")
    assert_close(jg, g, f"jit(value_and_grad) gradient on {backend}")
    exact = fa.compile(prog, backend=backend, exact_sums=True)
    assert_close(exact.value_and_grad(A)[1], g, f"exact_sums gradient on {backend}")


@FUZZ
@given(prog=loop_programs(), seed=st.integers(0, 2**16))
def test_rerolled_tape_agrees_with_the_unrolled_one(prog: LoopProgram, seed: int,
                                                    record_count: Any) -> None:
    check_tape(prog, inputs(seed)[0])
    record_count("reroll fuzz programs (tape)", 1)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_compiled_loop_programs_agree_with_eager(backend: str, record_count: Any) -> None:
    @FUZZ
    @given(prog=loop_programs(), seed=st.integers(0, 2**16))
    def check(prog: LoopProgram, seed: int) -> None:
        check_backend(prog, seed, backend)
        record_count(f"reroll fuzz programs on the {backend} backend", 1)
    check()


@pytest.mark.skipif("numba" not in BACKENDS, reason="Numba is not installed")
@FUZZ_NUMBA
@given(prog=loop_programs(), seed=st.integers(0, 2**16))
def test_numba_loop_programs_agree_with_eager(prog: LoopProgram, seed: int,
                                              record_count: Any) -> None:
    check_backend(prog, seed, "numba")
    record_count("reroll fuzz programs on the numba backend", 1)


@FUZZ
@given(prog=loop_programs(), seed=st.integers(0, 2**16))
def test_terms_matched_against_a_template_are_what_the_walk_finds(prog: LoopProgram, seed: int,
                                                                  record_count: Any) -> None:
    """Rerolling matches a loop's terms against the last one walked
    (`reroll._matched`): each term it gives is the one `_Term` walks, node for
    node, with the same slots, constants, indices and shared values."""
    from fastad.transforms import reroll as rr
    tape = fa.make_tape(prog)(inputs(seed)[0])
    ix = rr._TapeIndex(tape)
    matched = 0
    for chain in rr._chains(ix, exact_sums=False):
        terms = rr._terms(ix, chain, set())
        templates = set()
        for term, root in zip(terms, chain.terms):
            walked = rr._Term(ix, root, term._bound, term._own, term._arrays, term._foreign)
            assert term.ok == walked.ok
            if walked.ok:
                assert (term.nodes, term.slots, term.root, term.ints, term.shared) == \
                    (walked.nodes, walked.slots, walked.root, walked.ints, walked.shared)
                assert len(term.varying) == len(walked.varying)
                for a, b in zip(term.varying, walked.varying):
                    assert type(a) is type(b) and np.array_equal(a, b)
                matched += id(term.nodes) in templates  # a matched term shares its nodes
                templates.add(id(term.nodes))
    record_count("reroll terms matched against a template", matched)


@pytest.mark.parametrize("odd", [(), (3,), (30,), (63,), tuple(range(5, 21))])
def test_terms_matched_in_batches_are_what_the_walk_finds(odd: Any, monkeypatch: Any) -> None:
    """A long loop's terms are matched many at a time on the tape's arrays
    (`reroll_terms._Batches`); an iteration computing something else
    (``odd``) fails the batch's checks and is walked (iterations 5-20: the
    whole first batch fails). Every term is the one `_Term` walks, and most
    came from batches."""
    from fastad.transforms import reroll as rr
    from fastad.transforms import reroll_terms

    def f(x):
        s = 0.0
        for i in range(len(x)):
            # (the odd term's root is a log too: it is in the batches, and fails them)
            s = s + np.log(1.0 + x[i] ** 2 if i not in odd else 2.0 + np.sin(x[i])) + x[i] ** 4
        return s
    batched = []
    copies = reroll_terms._copies

    def counted(template, bounds, S):
        batched.append(len(bounds))
        return copies(template, bounds, S)
    monkeypatch.setattr(reroll_terms, "_copies", counted)
    x = np.random.default_rng(0).uniform(-1.5, 1.5, 64)
    tape = fa.make_tape(f)(x)
    ix = rr._TapeIndex(tape)
    (chain,) = [c for c in rr._chains(ix, exact_sums=False) if c.kind == "sum"]
    terms = rr._terms(ix, chain, set())
    for term, root in zip(terms, chain.terms):
        walked = rr._Term(ix, root, term._bound, term._own, term._arrays, term._foreign)
        assert (term.ok, term.nodes, term.slots, term.ints, term.shared) == \
            (walked.ok, walked.nodes, walked.slots, walked.ints, walked.shared)
        assert all(type(a) is type(b) and np.array_equal(a, b)
                   for a, b in zip(term.varying, walked.varying))
    assert sum(n for n in batched if n > 1) > len(terms) // (2 if len(odd) < 2 else 4)
    assert (0 in batched) == (len(odd) > 1)  # a batch none of whose terms match
    rolled = rr.reroll(tape, [x])
    assert rolled is not None and len(rolled.instrs) < len(tape.instrs) // 4
    assert_close(evaluate(rolled, [x])[0], evaluate(tape, [x])[0], "reassociated sums")


# -- the failure classes found, as plain regression tests ----------------------------
def nested_stacks_of_sums(A: Any) -> Any:
    """A take of a take per term: the indices of the inner take were handed
    to the outer one ("cannot reshape array of size 4 into shape (4, 4)")."""
    rows = [A[i] for i in range(A.shape[0])]
    return fnp.stack([sum(fnp.stack([sum(p * q) for p in rows])) for q in rows]).sum()


def sum_after_a_long_recurrence(A: Any) -> Any:
    """The first terms of the sum reach back through the whole recurrence:
    once a RecursionError in the term walk."""
    x = A.reshape(-1)
    a = x[0]
    for i in range(LONG):
        a = np.log(np.exp(a) + x[i % 7] ** 2)
    s = 0.0
    for i in range(10):
        s = s + a * x[i]
    return s


@pytest.mark.parametrize("f", [nested_stacks_of_sums, sum_after_a_long_recurrence])
def test_found_failures(f: Any, backend: str) -> None:
    A = inputs(0)[0][:4, :4] if f is nested_stacks_of_sums else inputs(0)[0]
    check_tape(f, A)
    v, g = fa.value_and_grad(f)(A)
    cv, cg = fa.compile(f, backend=backend).value_and_grad(A)
    assert_close(cv, v, "value")
    assert_close(cg, g, "gradient")
