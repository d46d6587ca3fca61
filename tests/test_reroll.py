"""Loop rerolling: random loop-shaped programs compute the same values and
gradients rerolled as unrolled, on every backend; the stages show the drop;
what is not a loop over affine reads (a permutation, a guarded branch) stays
scalar code and stays correct."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.backends.reference import evaluate
from fastad.transforms.reroll import MIN_RUN, reroll
from helpers import laplacian_energy, rosenbrock_loop

# Numba compiles each new program for a few seconds: it gets fewer examples.
EXAMPLES = {"numba": 6, "c": 15, "numpy": 25}
RTOL = 1e-9   # sums are reassociated; every term is bit-identical


def budget(backend: str) -> Any:
    return settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", EXAMPLES[backend])),
                    deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


# -- random loop programs ------------------------------------------------------------
UNARY = {"sin": np.sin, "cos": np.cos, "tanh": np.tanh, "square": np.square,
         "exp": lambda v: np.exp(0.1 * v), "abs1": lambda v: np.sqrt(v * v + 1.0)}
BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def expressions(reads: int) -> st.SearchStrategy:
    leaves = st.one_of(st.tuples(st.just("read"), st.integers(0, reads - 1)),
                       st.tuples(st.just("const"), st.floats(-2, 2).map(lambda c: round(c, 2))),
                       st.just(("index",)))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), inner),
        st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), inner, inner)),
        max_leaves=5)


def evaluate_expression(e: tuple, values: list[Any], index: int) -> Any:
    if e[0] == "read":
        return values[e[1]]
    if e[0] == "const":
        return e[1]
    if e[0] == "index":
        return 0.25 * index  # a constant that differs in every iteration
    if e[0] == "unary":
        return UNARY[e[1]](evaluate_expression(e[2], values, index))
    return BINARY[e[1]](evaluate_expression(e[2], values, index),
                        evaluate_expression(e[3], values, index))


@dataclass
class LoopProgram:
    """``for i (for j): acc <- body(x[i + di, j + dj] ...)``."""

    levels: int
    rows: int          # loop length (outer loop length with two levels)
    cols: int          # inner loop length (1 with one level)
    offsets: list      # per read: (di, dj)
    body: tuple
    accumulate: str    # "sum" | "sub" | "out" | "out_add"

    def shape(self) -> tuple[int, ...]:
        return (self.rows + 2,) if self.levels == 1 else (self.rows + 1, self.cols + 1)

    def __call__(self, x: Any) -> Any:
        s = 0.0
        out = fnp.zeros(self.rows * self.cols) + 0.5 if self.accumulate.startswith("out") else None
        for i in range(self.rows):
            for j in range(self.cols):
                reads = [x[i + di] if self.levels == 1 else x[i + di, j + dj]
                         for di, dj in self.offsets]
                term = evaluate_expression(self.body, reads, i * self.cols + j)
                k = i * self.cols + j
                if self.accumulate == "sum":
                    s = s + term
                elif self.accumulate == "sub":
                    s = s - term
                elif self.accumulate == "out":
                    out[k] = term
                else:
                    out[k] = out[k] + term
        return s if out is None else np.sum(out * out)


@st.composite
def loop_programs(draw: Any) -> LoopProgram:
    levels = draw(st.integers(1, 2))
    rows = draw(st.integers(1, 12 if levels == 1 else 5))
    cols = 1 if levels == 1 else draw(st.integers(1, 5))
    n_reads = draw(st.integers(1, 3))
    offsets = [(draw(st.integers(0, 2 if levels == 1 else 1)), draw(st.integers(0, 1)))
               for _ in range(n_reads)]
    body = draw(expressions(n_reads))
    accumulate = draw(st.sampled_from(["sum", "sub", "out", "out_add"]))
    return LoopProgram(levels, rows, cols, offsets, body, accumulate)


def assert_agree(f: Any, x: np.ndarray, backend: str) -> tuple[Any, Any]:
    rolled = fa.compile(f, backend=backend)
    unrolled = fa.compile(f, backend=backend, reroll=False)
    v1, g1 = rolled.value_and_grad(x)
    v0, g0 = unrolled.value_and_grad(x)
    scale = 1.0 + np.max(np.abs(g0))
    np.testing.assert_allclose(v1, v0, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(g1, g0, rtol=RTOL, atol=RTOL * scale)
    return rolled, unrolled


@pytest.mark.parametrize("seed", [0])
def test_random_loops_agree(backend: str, seed: int) -> None:
    @budget(backend)
    @given(program=loop_programs(), data=st.data())
    def check(program: LoopProgram, data: Any) -> None:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        assert_agree(program, rng.uniform(-1.5, 1.5, program.shape()), backend)
    check()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(program=loop_programs(), data=st.data())
def test_random_loops_on_the_tape(program: LoopProgram, data: Any) -> None:
    """The transform alone, on the reference interpreter: same value, and
    long enough loops shrink."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.uniform(-1.5, 1.5, program.shape())
    tape = fa.make_tape(program)(x)
    rolled = reroll(tape, [x])
    if rolled is None:
        return
    np.testing.assert_allclose(evaluate(rolled, [x])[0], evaluate(tape, [x])[0],
                               rtol=RTOL, atol=RTOL)
    assert len(rolled.instrs) <= len(tape.instrs)


# -- the workloads of the issue ------------------------------------------------------
def grid_energy(x: Any) -> Any:
    s = 0.0
    for i in range(x.shape[0] - 1):
        for j in range(x.shape[1] - 1):
            s = s + (x[i, j + 1] - x[i, j]) ** 2 + (x[i + 1, j] - x[i, j]) ** 2
    return s


def spring_chain(p: Any) -> Any:
    s = 0.0
    for i in range(len(p) - 1):
        d = p[i + 1] - p[i]
        s = s + 3.0 * (np.sqrt(np.sum(d * d)) - 0.5) ** 2
    return s


def row_sums(x: Any) -> Any:
    out = fnp.zeros(x.shape[0])
    for i in range(x.shape[0]):
        acc = 0.0
        for j in range(x.shape[1]):
            acc = acc + np.sin(x[i, j]) * x[i, j]
        out[i] = acc
    return np.sum(out ** 2)


def overlapping_updates(x: Any) -> Any:
    out = fnp.zeros(len(x))
    for i in range(len(x) - 1):
        out[i] = out[i] + x[i] * x[i + 1]
        out[i + 1] = out[i + 1] + x[i]
    return np.sum(out ** 2)


def zipped(x: Any, y: Any) -> Any:
    s = 0.0
    for a, b in zip(x, y):
        s = s + a * b - np.exp(a)
    return s


@pytest.mark.parametrize("f, shape", [
    (rosenbrock_loop, (200,)), (grid_energy, (12, 9)), (laplacian_energy, (10, 12)),
    (spring_chain, (60, 2)), (row_sums, (9, 7)), (overlapping_updates, (30,))])
def test_loops_reroll_to_constant_size(f: Any, shape: tuple, compiled_backend: str) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, shape)
    rolled, _ = assert_agree(f, x, compiled_backend)
    stages = rolled.tape.stats()["stages"]
    assert stages["traced"] > 10 * stages["rerolled"]
    assert stages["rerolled"] <= 16


@pytest.mark.parametrize("f", [grid_energy, laplacian_energy, row_sums])
def test_two_loop_levels_become_one_vector_computation(f: Any) -> None:
    """The flat indices of x[i, j] form a 2-D grid: the rerolled tape has the
    same size whatever the grid."""
    sizes = []
    for shape in [(8, 6), (17, 23)]:
        x = np.random.default_rng(2).uniform(-1, 1, shape)
        sizes.append(len(reroll(fa.make_tape(f)(x), [x]).instrs))
    assert sizes[0] == sizes[1]


def test_zipped_arrays(backend: str) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, 40), rng.uniform(-1, 1, 40)
    g = fa.compile(zipped, argnums=(0, 1), backend=backend)
    h = fa.compile(zipped, argnums=(0, 1), backend=backend, reroll=False)
    (v1, (gx1, gy1)), (v0, (gx0, gy0)) = g.value_and_grad(x, y), h.value_and_grad(x, y)
    np.testing.assert_allclose([v1, *gx1, *gy1], [v0, *gx0, *gy0], rtol=RTOL, atol=RTOL)
    assert g.tape.stats()["stages"]["rerolled"] <= 12


def test_permuted_reads_stay_unrolled() -> None:
    n = 64
    perm = np.random.default_rng(4).permutation(n)

    def permuted(x: Any) -> Any:
        s = 0.0
        for i in range(n):
            s = s + x[perm[i]] ** 2 * x[i]
        return s
    x = np.random.default_rng(5).uniform(-1, 1, n)
    rolled, _ = assert_agree(permuted, x, "numpy")
    stages = rolled.tape.stats()["stages"]
    assert stages.get("rerolled", stages["traced"]) > 0.7 * stages["traced"]


def guarded(x: Any) -> Any:
    s = 0.0
    for i in range(len(x) - 1):
        t = x[i] ** 2
        if x[i] > 0.3:        # a guard on data in every iteration
            t = 3.0 * t
        s = s + t + (x[i + 1] - x[i]) ** 2
    return s


def test_guards_inside_loops_stay(backend: str) -> None:
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, 24)
    traced = fa.make_tape(guarded)(x)
    rolled = reroll(traced, [x])
    guards = sum(ins.prim == "guard" for ins in traced.instrs)
    assert guards == len(x) - 1
    # runs of guards with the same outcome merge into vector guards; the rest stay
    assert 1 <= sum(ins.prim == "guard" for ins in rolled.instrs) <= guards
    assert len(rolled.instrs) < len(traced.instrs)
    g = fa.compile(guarded, backend=backend)
    h = fa.compile(guarded, backend=backend, reroll=False)
    for y in [x, -x, rng.uniform(-1, 1, 24), x]:   # other branches: retraced, then cached
        v1, g1 = g.value_and_grad(y)
        v0, g0 = h.value_and_grad(y)
        np.testing.assert_allclose([v1, *g1], [v0, *g0], rtol=RTOL, atol=RTOL)
        np.testing.assert_allclose(v1, fa.value_and_grad(guarded)(y)[0], rtol=RTOL)
    info = g.cache_info()
    # the branch went both ways: converted to a where at once (test_ifconvert.py);
    # otherwise each new pattern retraces
    assert info["traces"] == (1 if info["entries"][0]["converted"] else 3)


def test_guard_rejects_rerolled_replay_on_the_other_branch() -> None:
    x = np.full(20, 0.5)
    rolled = reroll(fa.make_tape(guarded)(x), [x])
    assert evaluate(rolled, [x]) is not None
    assert evaluate(rolled, [-x]) is None   # the guard sees the other branch


def test_exact_sums_are_bit_exact() -> None:
    x = np.random.default_rng(7).uniform(-1, 1, 500)
    tape = fa.make_tape(rosenbrock_loop)(x)
    assert reroll(tape, [x], exact_sums=True) is None   # the sum stays sequential
    rolled = reroll(tape, [x])
    assert evaluate(rolled, [x])[0] == pytest.approx(evaluate(tape, [x])[0], rel=1e-13)


def test_scatter_chains_are_exact_with_exact_sums() -> None:
    def squares(x: Any) -> Any:
        out = fnp.zeros(len(x))
        for i in range(len(x)):
            out[i] = out[i] + np.sin(x[i]) * x[i]
        return out
    x = np.random.default_rng(8).uniform(-1, 1, 50)
    tape = fa.make_tape(squares)(x)
    rolled = reroll(tape, [x], exact_sums=True)
    assert len(rolled.instrs) < 10
    assert np.array_equal(evaluate(rolled, [x])[0], evaluate(tape, [x])[0])


def test_recurrences_are_left_alone() -> None:
    def running(x: Any) -> Any:
        out = fnp.zeros(len(x))
        out[0] = x[0]
        for i in range(1, len(x)):
            out[i] = out[i - 1] * 0.5 + x[i]    # reads what the loop wrote
        return np.sum(out ** 2)
    x = np.random.default_rng(9).uniform(-1, 1, 30)
    tape = fa.make_tape(running)(x)
    rolled = reroll(tape, [x])
    assert rolled is None or np.allclose(evaluate(rolled, [x])[0], evaluate(tape, [x])[0])


def test_short_loops_stay_scalar() -> None:
    x = np.random.default_rng(10).uniform(-1, 1, MIN_RUN - 1)
    assert reroll(fa.make_tape(rosenbrock_loop)(x), [x]) is None


def test_float32_loops_keep_their_dtype() -> None:
    x = np.random.default_rng(11).uniform(-1, 1, 100).astype(np.float32)

    def weighted(x: Any) -> Any:
        s = np.float32(0.0)
        for i in range(len(x)):
            s = s + (0.5 * i) * x[i] ** 2   # a Python constant that varies
        return s
    tape = fa.make_tape(weighted)(x)
    rolled = reroll(tape, [x])
    assert rolled is not None and len(rolled.instrs) < 10
    assert rolled.avals[rolled.outputs[0]].dtype == np.float32
    np.testing.assert_allclose(evaluate(rolled, [x])[0], evaluate(tape, [x])[0], rtol=1e-5)


def test_per_iteration_constants_keep_their_sign_bits() -> None:
    """0.0 and -0.0 are different constants of an iteration: rerolling stacks
    them (constants are compared by their bits, `analysis.bitwise_equal`)
    instead of keeping the first for every iteration."""
    signs = [0.0, -0.0] * 20

    def scaled(x: Any) -> Any:
        out = fnp.zeros(len(x))
        for i in range(len(x)):
            out[i] = x[i] * np.array(signs[i])
        return out
    x = np.random.default_rng(3).uniform(0.5, 1.0, 40)
    tape = fa.make_tape(scaled)(x)
    rolled = reroll(tape, [x], exact_sums=True)
    assert rolled is not None and len(rolled.instrs) < 10
    want = evaluate(tape, [x])[0]
    assert np.signbit(want).any()
    assert evaluate(rolled, [x])[0].tobytes() == want.tobytes()
