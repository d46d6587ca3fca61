"""The tape optimizer preserves meaning: on random programs built from the
primitives (with the constants 0 and 1 that algebraic simplification looks
for, repeated subexpressions for CSE, constant-only subexpressions for
folding, and dead values), the optimized tape gives exactly the outputs of
the original under the reference interpreter, at inputs other than those it
was traced at, and so does the optimized reverse-mode tape."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from fastad.transforms.reverse import vjp_tape
from conftest import BACKENDS
from helpers import FAST, shapes

UNARY = ["negative", "exp", "sin", "tanh", "square", "abs", "sqrt", "log", "floor",
         "reciprocal", "sign", "expm1", "arctan"]
BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "arctan2",
          "hypot", "logaddexp"]
SCALARS = [0.0, 1.0, -1.0, 2.0, 0.5]

operand = st.integers(0, 5)  # counted back from the newest value, modulo their count
step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(UNARY), operand),
    st.tuples(st.just("binary"), st.sampled_from(BINARY), operand, operand),
    st.tuples(st.just("scalar"), st.sampled_from(BINARY), operand, st.sampled_from(SCALARS),
              st.booleans()),
    st.tuples(st.just("reduce"), st.sampled_from(["sum", "max", "mean"]), operand,
              st.integers(0, 10)),
    st.tuples(st.just("where"), operand, operand, operand),
    st.tuples(st.just("flip"), operand),
    st.tuples(st.just("const"), st.sampled_from(SCALARS)),  # a constant computation, folded
    st.tuples(st.just("repeat"), st.integers(0, 20)),  # a step again: a common subexpression
)


def program(shape, steps, outputs):
    """A function of two arrays of ``shape`` built from ``steps``."""
    def f(x, y):
        values = [x, y]
        done = []

        def run(s):
            kind, args = s[0], s[1:]
            pick = lambda i: values[-1 - i % len(values)]  # noqa: E731
            if kind == "unary":
                return getattr(np, args[0])(pick(args[1]))
            if kind == "binary":
                return getattr(np, args[0])(pick(args[1]), pick(args[2]))
            if kind == "scalar":
                a, c = pick(args[1]), args[2]
                return getattr(np, args[0])(*((a, c) if args[3] else (c, a)))
            if kind == "reduce":
                a = pick(args[1])
                axis = args[2] % len(shape) if shape else None
                if args[0] == "max" and 0 in shape:
                    return a
                return getattr(np, args[0])(a, axis=axis, keepdims=True) + a
            if kind == "const":
                return fnp.ones(shape) * args[0] + 1.0
            if kind == "where":
                return np.where(pick(args[0]) > pick(args[1]), pick(args[1]), pick(args[2]))
            return np.flip(pick(args[0]))

        for s in steps:
            if s[0] == "repeat":
                s = done[s[1] % len(done)] if done else ("flip", s[1])
            values.append(run(s))
            done.append(s)
        return tuple(values[-1 - i % len(values)] for i in outputs)  # counted from the last
    return f


programs = st.tuples(shapes(max_dims=2, max_side=3), st.lists(step, min_size=1, max_size=12),
                     st.lists(st.integers(0, 4), min_size=1, max_size=3),
                     st.integers(0, 2**31 - 1))


def _inputs(shape, seed):
    r = np.random.default_rng(seed)
    return [r.uniform(-2.0, 2.0, shape) for _ in range(2)]


def _assert_same(tape, optimized, inputs):
    want = evaluate(tape, inputs)
    got = evaluate(optimized, inputs)
    assert want is not None and got is not None
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)  # NaN where NaN, equal otherwise
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))  # -0.0 where -0.0


@FAST
@given(programs)
def test_optimized_tape_computes_the_same_outputs(prog):
    shape, steps, outputs, seed = prog
    f = program(shape, steps, outputs)
    traced_at = _inputs(shape, seed)
    with np.errstate(all="ignore"):
        tape = fa.make_tape(f)(*traced_at)
        optimized = optimize(tape)
        optimized.validate()
        assert len(optimized.instrs) <= len(tape.instrs)
        for k in range(3):
            _assert_same(tape, optimized, traced_at if k == 0 else _inputs(shape, seed + k))


@FAST
@given(programs)
def test_optimized_gradient_tape_computes_the_same_outputs(prog):
    shape, steps, outputs, seed = prog
    f = program(shape, steps, outputs)
    traced_at = _inputs(shape, seed)
    with np.errstate(all="ignore"):
        tape = fa.make_tape(f)(*traced_at)
        reverse = vjp_tape(tape, wrt=[0, 1], examples=traced_at)
        optimized = optimize(reverse)
        optimized.validate()
        r = np.random.default_rng(seed)
        for k in range(2):
            xs = _inputs(shape, seed + k)
            cts = [r.standard_normal(tape.avals[s].shape) for s in tape.outputs]
            _assert_same(reverse, optimized, xs + cts)


def test_optimizer_removes_what_it_promises():
    def f(x):
        a = np.sin(x) * 1.0 + -0.0  # simplified away (+ 0.0 is not: -0.0 + 0.0 is 0.0)
        b = np.sin(x)  # a common subexpression
        unused = np.exp(x)  # noqa: F841  dead
        c = fnp.ones(3) * 2.0  # folded
        return -(-(a + b)) / 1.0 - 0.0, c * x

    x = np.array([0.1, 0.2, 0.3])
    tape = fa.make_tape(f)(x)
    optimized = optimize(tape)
    prims = [ins.prim for ins in optimized.instrs]
    assert prims.count("sin") == 1 and "exp" not in prims and "neg" not in prims
    assert sorted(prims) == sorted(["sin", "add", "mul"])
    _assert_same(tape, optimized, [np.array([-1.0, -0.0, 5.0])])


def test_powers_become_squares_and_identities_keep_ieee_values():
    def f(x):
        two = fnp.ones(()) * 2.0  # a constant 2 the tracer did not see as a literal
        return np.power(x, two), np.power(x, two - 1.0), x * 0.0, np.exp(np.log(x))

    x = np.array([0.5, -0.0, np.inf, np.nan, -3.0])
    with np.errstate(all="ignore"):
        tape = fa.make_tape(f)(x)
        optimized = optimize(tape)
        prims = [ins.prim for ins in optimized.instrs]
        assert "pow" not in prims and "square" in prims
        assert "mul" in prims  # x * 0 stays: inf * 0 is nan
        assert "exp" in prims and "log" in prims  # exp(log(x)) is not x to the last bit
        _assert_same(tape, optimized, [x])


def test_stats_report_instructions_and_bytes_before_and_after():
    def f(x):
        return np.sum(np.sin(x) * 1.0 + np.sin(x) + 0.0 * np.exp(x) * 0.0)

    g = fa.compile(f, backend="numpy")
    g(np.linspace(0, 1, 100))
    report = g.tape.stats()["optimize"]
    before, after = report["before"], report["after"]
    assert after["instructions"] < before["instructions"]
    assert after["bytes"] < before["bytes"]
    assert after["bytes"] == g.tape.computed_bytes()


def test_partial_adjoints_of_slices_accumulate_in_one_buffer():
    """add(scatter_add(0, I, a), scatter_add(0, J, b)) becomes a chain of
    scatter_adds into one buffer: no buffer per contribution and no sum, the
    same bits (sums started from +0.0 are never -0.0)."""
    def f(x, v):
        return fa.hvp(lambda x: np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))(x, v)

    x = np.linspace(-1, 1, 20)
    v = np.cos(np.arange(20.0))
    tape = fa.make_tape(f)(x, v)
    optimized = optimize(tape)
    adds_of_scatters = [ins for ins in optimized.instrs if ins.prim == "add" and all(
        any(p.out == s and p.prim == "scatter_add" for p in optimized.instrs) for s in ins.ins)]
    assert not adds_of_scatters
    _assert_same(tape, optimized, [x, v])
    _assert_same(tape, optimized, [np.full(20, -0.0), np.full(20, -0.0)])


def _same_bits(got, want):
    """Equal to the bit, signed zeros included; NaN where NaN (IEEE leaves the
    sign and payload of a NaN result open)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bits = f"u{want.dtype.itemsize}"
    np.testing.assert_array_equal(got[~nan].view(bits), want[~nan].view(bits))


SCALES = [2.0, 4.0, -2.0, 1.0, -1.0, 0.5, 0.25, 3.0, -3.0, 100.0, 0.1, 2.0 ** 60, 2.0 ** -60,
          1e300, -1e-300, 2.0 ** 1023]


def _extremes(dtype, n=64, seed=0):
    info = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max, info.tiny,
               info.tiny / 8, -info.smallest_subnormal, info.max / 3, 1.0, -1.5, info.eps]
    r = np.random.default_rng(seed)
    wild = r.standard_normal(n) * 10.0 ** r.integers(-300, 300, n)
    return np.concatenate([np.array(special), wild]).astype(dtype)


@FAST
@given(st.lists(st.sampled_from(SCALES), min_size=2, max_size=4),
       st.sampled_from([np.float64, np.float32]), st.booleans(), st.integers(0, 2**31 - 1))
def test_constant_scales_fold_only_where_every_input_gives_the_same_bits(scales, dtype, array,
                                                                         seed):
    """c1 * (c2 * x) -> (c1 * c2) * x keeps every bit at every x (huge, tiny,
    subnormal, signed zeros, inf, NaN): a chain of constant multiplies, weak
    scalars or uniform arrays (as a gradient makes them), before and after."""
    def f(x):
        for c in scales:
            x = (fnp.full(x.shape, c, dtype) if array else c) * x
        return x
    with np.errstate(all="ignore"):  # float32 casts of float64 extremes overflow, as meant
        x = _extremes(dtype, seed=seed)
        tape = fa.make_tape(f)(x)
        optimized = optimize(tape)
        optimized.validate()
        _same_bits(evaluate(optimized, [x])[0], evaluate(tape, [x])[0])
    muls = sum(ins.prim == "mul" for ins in optimized.instrs)
    foldable = any(inner in (2.0, 4.0, -2.0, -1.0) and outer in (2.0, 4.0, -2.0, 3.0, -3.0, 100.0)
                   for inner, outer in zip(scales, scales[1:]))
    assert muls < len(scales) or not foldable


def test_scales_that_would_round_differently_stay_apart():
    """Power-of-two outer constants, inner constants below 1 and |outer| < 1
    change bits at some x (subnormal or overflowing intermediates): kept."""
    for inner, outer in ((3.0, 2.0), (0.5, 3.0), (2.0, 0.5), (2.0, 0.1), (2.0 ** 60, 2.0 ** 1000)):
        tape = fa.make_tape(lambda x: outer * (inner * x))(np.ones(3))
        assert sum(ins.prim == "mul" for ins in optimize(tape).instrs) == 2, (inner, outer)
    tape = fa.make_tape(lambda x: 100.0 * (2.0 * x))(np.ones(3))
    assert sum(ins.prim == "mul" for ins in optimize(tape).instrs) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(n=st.sampled_from([-4, -3, -2, -1, 3, 4, 5, 6, 7, 8]),
       dtype=st.sampled_from([np.float64, np.float32]),
       exponent_type=st.sampled_from([int, float]),
       data=st.data())
def test_integer_powers_are_products_within_n_ulp(n, dtype, exponent_type, data, backend):
    """x ** n for constant integer n in [-4, 8] runs as squarings and products
    (and one division for n < 0), within |n| ulp of NumPy's power outside
    the subnormal range; its derivative is reduced the same way."""
    info = np.finfo(dtype)
    # magnitudes whose n-th power and its derivative's stay normal and finite
    limit = float(np.exp(np.log(info.max) / (abs(n) + 1) - 1))
    magnitude = st.floats(1 / limit, limit, allow_nan=False, allow_infinity=False)
    values = data.draw(st.lists(st.tuples(magnitude, st.booleans()), min_size=1, max_size=12))
    x = np.array([m if positive else -m for m, positive in values], dtype=dtype)
    power = exponent_type(n)
    j = fa.jit(lambda x: x ** power, backend=backend)
    got = j(x)
    assert "pow" not in j.tape.stats()["by_primitive"]
    expected = np.power(x, dtype(n))
    assert got.dtype == expected.dtype
    ulps = np.abs(got.astype(np.float64) - expected) / np.spacing(np.abs(expected))
    assert ulps.max() <= abs(n), (x, got, expected)
    g = fa.jit(fa.grad(lambda x: np.sum(x ** power)), backend=backend)
    derivative = g(x)
    assert "pow" not in g.tape.stats()["by_primitive"] or n == -4  # x**-5 stays a pow
    np.testing.assert_allclose(derivative, n * np.power(x, dtype(n - 1)),
                               rtol=(abs(n) + 2) * info.eps)


def test_half_powers_stay_pow_since_sqrt_differs_at_minus_infinity():
    j = fa.jit(lambda x: x ** 0.5, backend="numpy")
    x = np.array([-np.inf, -0.0, 4.0])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(j(x), np.power(x, 0.5))
    assert "pow" in j.tape.stats()["by_primitive"]
