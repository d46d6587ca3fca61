"""Recurrence detection (`fastad.transforms.recurrence`): Python time-stepping
loops traced step by step become one ``loop`` instruction, bit for bit."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import backends
from fastad.backends.reference import evaluate
from fastad.transforms import recurrence
from fastad.transforms.recurrence import find_recurrences
from conftest import BACKENDS
from helpers import FAST

COMPILED = "c" if "c" in BACKENDS else "numpy"


@contextlib.contextmanager
def _host_call_notice():
    """Compiled loops are host calls on some backends, which they announce;
    these tests check results, not that notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop",
                                category=UserWarning)
        yield


# -- a generator of recurrence programs ------------------------------------------------
UNARY = ("sin", "tanh", "neg", "square", "cube", "det", "solve")
BINARY = ("add", "sub", "mul")


@st.composite
def programs(draw):
    """A Python loop over T steps on ``n`` carried vectors of size ``m``: a
    random body of elementwise operations, a matmul with a closed-over matrix,
    per-step reads ``x[t]``, per-step outputs stacked or summed after the loop,
    a discounted sum, optionally a step-dependent constant (``t * dt``, or
    the loop counter ``t`` itself, an integer), and carries updated by
    ``tanh`` of a mix or by adding to them (``c = c + term``: a running sum
    other values read, which is not a parallel loop rerolling can vectorize).
    ``inner`` repeats the body that many times per step, each repetition
    also reading the step's initial carry, as a fixed count of Newton
    iterations inside an implicit time step does: a loop of too few
    iterations to convert, or (9) one loop per step, inside the time loop."""
    spec = {
        "steps": draw(st.integers(recurrence.MIN_TRIP, 24)),
        "inner": draw(st.integers(1, 9)),
        "size": draw(st.integers(1, 3)),
        "carried": draw(st.integers(1, 3)),
        "reads": draw(st.booleans()),
        "matmul": draw(st.booleans()),
        "time_constant": draw(st.sampled_from([False, "float", "int"])),
        "update": draw(st.sampled_from(["tanh", "accumulate"])),
        "outputs": draw(st.sampled_from(["none", "stack", "sum", "discount"])),
    }
    pool = spec["carried"] + spec["reads"] + spec["matmul"] + bool(spec["time_constant"])
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            ops.append((draw(st.sampled_from(UNARY)), draw(st.integers(0, pool - 1)), 0))
        else:
            ops.append((draw(st.sampled_from(BINARY)), draw(st.integers(0, pool - 1)),
                        draw(st.integers(0, pool - 1))))
        pool += 1
    spec["ops"] = ops
    # each carried vector is updated from a value the step computed
    spec["updates"] = [draw(st.integers(0, pool - 1)) for _ in range(spec["carried"])]
    spec["output_of"] = draw(st.integers(0, pool - 1))
    return spec


def _spd(a):
    """A small symmetric positive definite matrix of vector ``a`` (1 to 3 rows)."""
    return np.eye(len(a)) + 0.25 * (a[:, None] * a[None, :])


# det and solve of a matrix each step builds (a Kalman filter's innovation
# covariance): no guard or other effect in the step, which stays a loop's
UNARIES = {"sin": np.sin, "tanh": np.tanh, "neg": np.negative, "square": np.square,
           "cube": lambda a: a ** 3,  # an integer constant its derivative reads as data
           "det": lambda a: a * np.linalg.det(_spd(a)),
           "solve": lambda a: np.linalg.solve(_spd(a), a)}


def _apply(op, a, b):
    return UNARIES[op](a) if op in UNARY else \
        {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](a, b)


def make_program(spec):
    T, n = spec["steps"], spec["carried"]

    def f(c0, x, W):
        cs = [c0 * (0.5 + 0.25 * k) for k in range(n)]
        ys, total, weight = [], 0.0, 1.0
        for t in range(T):
            initial = cs
            for _ in range(spec.get("inner", 1)):
                pool = list(cs)
                if spec["reads"]:
                    pool.append(x[t])
                if spec["matmul"]:
                    pool.append(W @ cs[0])
                if spec["time_constant"] == "int":
                    pool.append(cs[-1] * t)
                elif spec["time_constant"]:
                    pool.append(cs[-1] * (t * 0.01))
                for op, a, b in spec["ops"]:
                    pool.append(_apply(op, pool[a], pool[b]))
                # tanh keeps the carried values bounded over any number of steps
                if spec.get("update") == "accumulate":
                    cs = [c + 0.1 * np.tanh(pool[u]) for c, u in zip(cs, spec["updates"])]
                elif spec.get("inner", 1) > 1:
                    cs = [np.tanh(0.5 * c + 0.5 * pool[u] + 0.25 * c0)
                          for c, u, c0 in zip(cs, spec["updates"], initial)]
                else:
                    cs = [np.tanh(0.5 * c + 0.5 * pool[u]) for c, u in zip(cs, spec["updates"])]
            y = pool[spec["output_of"]]
            if spec["outputs"] == "discount":
                total = total + weight * np.sum(y)
                weight = weight * 0.9
            elif spec["outputs"] != "none":
                ys.append(y)
        out = sum(np.sum(c * c) for c in cs) + total
        if spec["outputs"] == "stack":
            out = out + np.sum(np.stack(ys) ** 2)
        elif spec["outputs"] == "sum":
            out = out + np.sum(sum(ys))
        return out
    return f


def _args(spec, seed=0):
    rng = np.random.default_rng(seed)
    m = spec["size"]
    return (rng.uniform(-1, 1, m), rng.uniform(-1, 1, (spec["steps"], m)),
            rng.uniform(-0.5, 0.5, (m, m)))


def _loops(tape):
    return [ins for ins in tape.instrs if ins.prim == "loop"]


def _run_compiled(tape, inputs):
    """``tape`` on the compiled backend, a loop instruction as the compiled
    functions run it (a host call between compiled segments where needed)."""
    from fastad.backends import fallback
    module, in_segments, _ = fallback.route(backends.get(COMPILED), tape)
    if in_segments:
        native = backends.native_primitives(backends.name_of(module))
        return fallback.build_segments(tape, module, native).run(inputs)
    return module.build(tape).run(inputs)


def _bits(values):
    return [np.asarray(v).tobytes() for v in values]


@FAST
@given(programs())
def test_generated_recurrences_become_loops_bit_for_bit(spec):
    f = make_program(spec)
    args = _args(spec)
    tape = fa.make_tape(f)(*args)
    refused = set()
    looped = find_recurrences(tape, refused=refused)
    if looped is None and "parallel" in refused:  # steps that only add to their carries
        looped = find_recurrences(tape, parallel=True)
    assert looped is not None and len(_loops(looped)) >= 1
    assert len(looped.instrs) < len(tape.instrs)
    (loop,) = _loops(looped)[:1]
    # every step but the first (whose initial values differ in structure) is in the loop
    assert dict(loop.params)["length"] >= spec["steps"] - 2
    if spec["time_constant"]:
        assert dict(loop.params)["body"].n_xs >= 1  # t * dt is a per-step input
    # np.stack of a value each step computes (not the carry it starts from,
    # nor x[t]): one write of the loop's stacked output
    # (a loop of inner iterations, where steps repeat them alike, stacks every
    # inner-th value: writes not of one output)
    if spec["outputs"] == "stack" and spec["output_of"] >= spec["carried"] + spec["reads"] \
            and dict(loop.params)["length"] <= spec["steps"]:
        unrolled = spec["steps"] - dict(loop.params)["length"]
        assert sum(ins.prim == "scatter_set" for ins in looped.instrs) <= 1 + unrolled
    for seed in (0, 1):
        inputs = list(_args(spec, seed))
        assert _bits(evaluate(looped, inputs)) == _bits(evaluate(tape, inputs))
        with _host_call_notice():
            assert _bits(_run_compiled(looped, inputs)) == _bits(_run_compiled(tape, inputs))


@FAST
@given(programs(), st.integers(0, 2**31 - 1))
def test_generated_recurrences_differentiate(spec, seed):
    f = make_program(spec)
    args = _args(spec)
    with _host_call_notice():
        g = fa.compile(f, argnums=(0, 1, 2), backend=COMPILED)
        value, grads = g.value_and_grad(*args)
    stages = g.tape.stages
    if COMPILED == "c":  # every loop of the gradient runs in the VM, none as a host call
        from fastad.backends.lower_loop import refusal
        assert [refusal(ins) for ins in _loops(g.tape)] == [None] * len(_loops(g.tape))
    if spec["update"] == "accumulate":  # a loop, or vector code if its steps are parallel
        assert stages["rerolled"] < stages["traced"]
    else:
        assert "recurrences" in stages
    assert value == pytest.approx(f(*args), rel=1e-12, abs=1e-12)
    rng = np.random.default_rng(seed)
    eps = 1e-6
    for k, a in enumerate(args):
        d = rng.standard_normal(a.shape)
        plus = list(args)
        minus = list(args)
        plus[k], minus[k] = a + eps * d, a - eps * d
        fd = (f(*plus) - f(*minus)) / (2 * eps)
        assert np.sum(grads[k] * d) == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_compiled_functions_convert_their_loops():
    spec = {"steps": 40, "size": 2, "carried": 2, "reads": True, "matmul": True,
            "time_constant": True, "outputs": "stack",
            "ops": [("mul", 0, 2), ("sin", 4, 0), ("add", 5, 1)], "updates": [6, 3],
            "output_of": 6}
    f = make_program(spec)
    args = _args(spec)
    with _host_call_notice():
        g = fa.jit(f, backend=COMPILED)
        got = g(*args)
    assert got == pytest.approx(f(*args), rel=1e-13)
    assert "recurrences" in g.tape.stages
    assert len(g.tape.stages) and len(_loops(g.tape)) == 1


def test_short_loops_stay_unrolled_unless_asked():
    spec = {"steps": 5, "size": 2, "carried": 1, "reads": True, "matmul": False,
            "time_constant": False, "outputs": "none", "ops": [("mul", 0, 1)],
            "updates": [2], "output_of": 2}
    args = _args(spec)
    tape = fa.make_tape(make_program(spec))(*args)
    assert find_recurrences(tape) is None
    looped = find_recurrences(tape, min_trip=3)
    assert looped is not None and _loops(looped)
    assert _bits(evaluate(looped, list(args))) == _bits(evaluate(tape, list(args)))


def _no_conversion_or_exact(f, args):
    tape = fa.make_tape(f)(*args)
    looped = find_recurrences(tape)
    if looped is not None:
        assert _bits(evaluate(looped, list(args))) == _bits(evaluate(tape, list(args)))
    return tape, looped


def test_guards_inside_steps_stay_unrolled():
    def f(c, x):
        for t in range(20):
            c = np.sin(c) + x[t] if c[0] > 0 else np.cos(c) - x[t]
        return np.sum(c)
    args = (np.array([0.3, -0.2]), np.random.default_rng(1).uniform(-1, 1, (20, 2)))
    tape, looped = _no_conversion_or_exact(f, args)
    guards = sum(ins.prim == "guard" for ins in tape.instrs)
    assert guards >= 20
    if looped is not None:  # no loop body holds a guard: they all stay outside
        assert sum(ins.prim == "guard" for ins in looped.instrs) == guards


def test_constants_in_parameters_that_differ_between_steps_stay_unrolled():
    def f(c):
        s = c
        for t in range(12):
            s = np.sin(s) + c ** (t + 2)  # the exponent is a parameter of the power
        return np.sum(s)
    args = (np.array([0.3, 0.4]),)
    tape, looped = _no_conversion_or_exact(f, args)
    assert looped is None or not _loops(looped)


def test_steps_of_different_structure_stay_unrolled():
    rng = np.random.default_rng(3)
    kinds = rng.integers(0, 3, 30)

    def f(c):
        for k in kinds:
            c = (np.sin(c), np.tanh(c) * 0.5, c * c - 0.1)[k]
        return np.sum(c)
    args = (np.array([0.3, 0.4]),)
    _no_conversion_or_exact(f, args)


def test_a_step_reading_two_steps_back_is_exact():
    def f(a, b):
        for _ in range(30):
            a, b = b, np.tanh(a + 0.5 * b)
        return np.sum(a * b)
    args = (np.array([0.3, 0.4]), np.array([-0.1, 0.2]))
    _no_conversion_or_exact(f, args)


def test_a_time_loop_around_a_scalar_spatial_loop_rerolls_its_body():
    n = 12

    def f(u, k):
        for _ in range(30):
            new = [u[0]]
            for i in range(1, n - 1):
                new.append(u[i] + k[0] * (u[i - 1] - 2.0 * u[i] + u[i + 1]))
            new.append(u[n - 1])
            u = np.stack(new)
        return np.sum(u * u)
    rng = np.random.default_rng(2)
    args = (rng.uniform(-1, 1, n), np.array([0.2]))
    with _host_call_notice():
        g = fa.compile(f, argnums=(0, 1), backend=COMPILED)
        value, grads = g.value_and_grad(*args)
        want_value, want = fa.value_and_grad(f, argnums=(0, 1))(*args)
        jitted = fa.jit(f, backend=COMPILED)
        jitted(*args)
    assert value == pytest.approx(want_value, rel=1e-12)
    for x, y in zip(grads, want):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    tape = jitted.tape
    loops = _loops(tape)
    assert loops, "the time loop is a loop instruction"
    body = dict(loops[0].params)["body"]
    # the spatial loop's iterations are (partly) vector code inside the body
    one_step = len(fa.make_tape(f)(*args).instrs) // 30
    assert len(body.tape.instrs) < one_step
    assert any(body.tape.avals[ins.out].shape not in ((), (1,), (n,)) for ins in body.tape.instrs)


def test_parallel_loops_with_sums_or_writes_are_left_to_rerolling():
    def sums(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + (1 - x[i]) ** 2 + 100 * (x[i + 1] - x[i] ** 2) ** 2
        return s

    def writes(x):
        out = 0.0 * x
        for i in range(len(x)):
            out[i] = np.sin(x[i]) * x[i]
        return np.sum(out)
    x = np.linspace(-1.0, 1.0, 30)
    for f in (sums, writes):
        assert find_recurrences(fa.make_tape(f)(x)) is None
        g = fa.jit(f, backend=COMPILED)
        assert g(x) == pytest.approx(f(x), rel=1e-12)
        assert "recurrences" not in g.tape.stages and not _loops(g.tape)


def test_a_discounted_return_with_a_traced_discount_is_a_loop():
    def ret(r, gamma):
        total, weight = 0.0, 1.0 + 0.0 * gamma[0]
        for t in range(len(r)):
            total = total + weight * r[t]
            weight = weight * gamma[0]
        return total
    args = (np.random.default_rng(4).uniform(-1, 1, 40), np.array([0.95]))
    tape = fa.make_tape(ret)(*args)
    looped = find_recurrences(tape)
    assert looped is not None and _loops(looped)
    assert _bits(evaluate(looped, list(args))) == _bits(evaluate(tape, list(args)))
    with _host_call_notice():
        grads = fa.compile(ret, argnums=(0, 1), backend=COMPILED)(*args)
    want = fa.grad(ret, argnums=(0, 1))(*args)
    for x, y in zip(grads, want):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_a_converted_loop_batches_saves_and_loads():
    from fastad import serialize
    spec = {"steps": 20, "size": 2, "carried": 2, "reads": True, "matmul": True,
            "time_constant": False, "outputs": "sum",
            "ops": [("mul", 0, 2), ("tanh", 4, 0)], "updates": [5, 3], "output_of": 5}
    f = make_program(spec)
    c0, x, W = _args(spec)
    batch = np.stack([c0, 0.5 * c0, -c0])
    with _host_call_notice():
        g = fa.jit(f, backend=COMPILED)
        value = g(c0, x, W)
        assert _loops(g.tape)
        got = g.batch(batch, x, W, in_axes=(0, None, None), threads=1)
        again = serialize.loads(serialize.dumps(g))
        assert again(c0, x, W) == value
    want = np.array([f(c, x, W) for c in batch])
    np.testing.assert_allclose(got, want, rtol=1e-13)


_CONSTANTS = [1.0, -0.0, 0.0, float("nan"), 2.5, 3, True, np.float64(1.0), np.int64(1),
              np.array(1), np.array(2), np.array(1, np.int32), np.array(1.0),
              np.array([1, 2]), np.array([1.0, 2.0]), np.zeros(100), np.zeros(100)]


@FAST
@given(picks=st.lists(st.integers(0, len(_CONSTANTS) - 1), max_size=14))
def test_valued_hash_numbers_constants_by_type_and_bits(picks: list[int]) -> None:
    """The valued hash's numbers for constants (`_value_codes`: Python floats
    and 0-d int64 indices numbered in NumPy) tell two constants apart exactly
    when their type, dtype, shape or bits differ (large ones: by identity)."""
    values = [_CONSTANTS[k] for k in picks]

    def key(value: object) -> object:
        v = np.asarray(value)
        return (type(value).__name__, v.dtype.str, v.shape, v.tobytes()) if v.size <= 64 \
            else id(value)
    codes = recurrence._value_codes(values).tolist()
    for i in range(len(values)):
        for j in range(len(values)):
            assert (codes[i] == codes[j]) == (key(values[i]) == key(values[j]))


@FAST
@given(st.integers(0, 3), st.sampled_from(["int", "float"]), st.integers(recurrence.MIN_TRIP + 4, 30))
def test_parallel_loops_are_left_to_rerolling_in_any_alignment(odd_step, kind, steps):
    """A sum of terms (``s = s + sin(x[i]) * (k + c_i)``) is a parallel loop
    however the steps are cut: one step of a different shape early on (an
    extra operation, as a guard would be) moves where the matching steps
    begin, and a step cut in the middle sees its terms' values as carries.
    It is left to rerolling (vector code) by the first pass; the second makes
    a loop of it only where rerolling does not take it (few steps for the
    seven values of ``c_i`` a Python int keys apart)."""
    def f(x, k):
        s = 0.0
        for i in range(steps):
            c = (i * i) % 7
            term = fnp.sin(x[i]) * (k + (c if kind == "int" else float(c)))
            if i == odd_step:
                term = fnp.cos(term)
            s = s + term
        return s
    x = np.linspace(0.0, 1.0, steps)
    tape = fa.make_tape(f)(x, 3.0)
    refused = set()
    assert find_recurrences(tape, refused=refused) is None
    assert "parallel" in refused
    with _host_call_notice():
        g = fa.jit(f, backend=COMPILED)
        assert g(x, 3.0) == pytest.approx(f(x, 3.0), rel=1e-13)
    assert g.tape.stages["rerolled"] < g.tape.stages["traced"]


@FAST
@given(st.integers(2, 6), st.sampled_from([2, 3, 4]), st.integers(0, 2**31 - 1))
def test_implicit_steps_with_integer_powers_run_in_the_vm(newton, power, seed):
    """An implicit Euler step solved by a fixed count of Newton iterations on
    ``z ** power``: one loop, whose gradient's bodies read the exponent both as
    a power's and (its derivative ``power * z ** (power - 1)``) as data; the
    VM runs them (no host call), as the reference interpreter and central
    differences say."""
    from fastad.backends.lower_loop import refusal

    def f(p):
        k, a, y = p[0], p[1], p[2]
        s = 0.0
        for t in range(24):
            z = y
            for _ in range(newton):
                g = z - y - 0.01 * (-k * z ** power + a * np.sin(0.01 * t))
                z = z - g / (1.0 + 0.01 * power * k * z ** (power - 1))
            y = z
            s = s + y ** 2
        return s
    p = np.random.default_rng(seed).uniform([0.5, -1.0, 0.2], [2.0, 1.0, 1.0])
    g = fa.compile(f, backend=COMPILED)
    value, grad = g.value_and_grad(p)
    assert "recurrences" in g.tape.stages
    if COMPILED == "c":
        assert _loops(g.tape) and all(refusal(ins) is None for ins in _loops(g.tape))
    reference = fa.compile(f, backend="numpy")
    np.testing.assert_allclose(grad, reference(p), rtol=1e-12, atol=1e-14)
    d = np.random.default_rng(seed + 1).standard_normal(3)
    eps = 1e-6
    fd = (f(p + eps * d) - f(p - eps * d)) / (2 * eps)
    assert grad @ d == pytest.approx(fd, rel=1e-5, abs=1e-8)
