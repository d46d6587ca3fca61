"""The tracer's fast paths for scalar loops (`core.fast_paths.FAST_PATHS`: the
arithmetic and unary operators, ``x ** n``, NumPy's ufuncs of one or two
inputs, comparisons, ``np.where`` and ``x[i]`` of float64 scalars) record exactly what the front end's functions they replace
record: the same tape, byte for byte (source lines included), the same
values, and so the same gradients."""
from __future__ import annotations

import contextlib
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.core import fast_paths
from fastad.core import tracer as tracer_module
from fastad.core.tracer import recording

UNARY = (np.log, np.exp, np.sin, np.tanh, np.sqrt, np.square, np.abs, np.negative, np.log1p,
         np.cbrt, np.floor)
BINARY = ("+", "-", "*", "/")
BINARY_UFUNCS = (np.maximum, np.minimum, np.arctan2, np.hypot, np.add, np.multiply, np.greater,
                 np.logaddexp, np.copysign)
CONSTANTS = (0.5, -0.0, 0.0, 2.0, 1e300, float("nan"))
EXPONENTS = (2, 3, 4, -1, 0.5, 2.0, 0)
COMPARISONS = (operator.lt, operator.le, operator.gt, operator.ge)


@contextlib.contextmanager
def front_end_only():
    """The methods the fast paths replaced, put back for the ``with`` body."""
    try:
        for (cls, name), method in fast_paths.FRONT_END_PATHS.items():
            setattr(cls, name, method)
        yield
    finally:
        for (cls, name), method in fast_paths.FAST_PATHS.items():
            setattr(cls, name, method)


def _program(ops):
    """A scalar loop's body as a list of steps over the values made so far
    (``x[i]`` reads, constants on either side, powers, ufuncs)."""
    def f(x):
        values = [x[0]]
        for kind, a, b, c in ops:
            u = values[a % len(values)]
            if kind == "read":
                values.append(x[a % 7 - 3])  # negative indices too
            elif kind == "binary":
                v = CONSTANTS[b % len(CONSTANTS)] if c % 3 == 0 else values[b % len(values)]
                op = BINARY[c % len(BINARY)]
                left, right = (v, u) if c % 2 else (u, v)
                values.append(left + right if op == "+" else left - right if op == "-"
                              else left * right if op == "*" else left / right)
            elif kind == "power":
                values.append(u ** EXPONENTS[b % len(EXPONENTS)])
            elif kind == "negate":  # the unary operators
                values.append(-u if b % 2 else abs(u))
            elif kind == "where":  # a comparison (either side) choosing between two values
                v = CONSTANTS[b % len(CONSTANTS)] if c % 3 == 0 else values[b % len(values)]
                compare = COMPARISONS[c % len(COMPARISONS)]
                w = values[(a + b) % len(values)] if c % 5 else CONSTANTS[a % len(CONSTANTS)]
                values.append(np.where(compare(v, u) if c % 2 else compare(u, v), u, w))
            elif kind == "ufunc2":  # a traced value and a constant or another, either side
                v = CONSTANTS[b % len(CONSTANTS)] if c % 3 == 0 else values[b % len(values)]
                fn = BINARY_UFUNCS[c % len(BINARY_UFUNCS)]
                out = fn(v, u) if c % 2 else fn(u, v)
                # (a comparison's boolean as a float: NumPy refuses -True and True ** -1)
                values.append(out * 1.0 if fn is np.greater else out)
            else:
                values.append(UNARY[b % len(UNARY)](u))
        total = values[-1]
        for v in values[-4:-1]:
            total = total + v
        return total
    return f


def _recorded(f, x, **options):
    with recording(**options) as builder:
        out = f(builder.new_input(x))
    builder.tape.outputs = [builder.slot_of(out)]
    return builder.tape.to_bytes(), np.asarray(out.value).tobytes()



def _same_both_ways(f, x, other_way, options):
    """``f``'s tape (recorded with ``options``) and eager gradient at ``x``
    are byte for byte the same as with the ``other_way`` context."""
    fast = _recorded(f, x, **options)
    with other_way():
        slow = _recorded(f, x, **options)
    assert fast == slow
    grads = [np.asarray(fa.grad(f)(x)).tobytes()]
    with other_way():
        grads.append(np.asarray(fa.grad(f)(x)).tobytes())
    assert grads[0] == grads[1]


step = st.tuples(st.sampled_from(["read", "binary", "power", "ufunc", "ufunc2", "where",
                                  "negate"]),
                 st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=40, deadline=None)
@given(st.lists(step, min_size=1, max_size=25), st.sampled_from([{}, {"release": True},
                                                                 {"record_lines": False}]))
def test_fast_paths_record_what_the_front_end_records(ops, options):
    f = _program(ops)
    x = np.random.default_rng(len(ops)).uniform(-2.0, 2.0, 7)
    fast = _recorded(f, x, **options)
    with front_end_only():
        slow = _recorded(f, x, **options)
    assert fast == slow


@settings(max_examples=15, deadline=None)
@given(st.lists(step, min_size=1, max_size=15))
def test_eager_gradients_are_the_front_ends(ops):
    f = _program(ops)
    x = np.random.default_rng(len(ops)).uniform(-2.0, 2.0, 7)
    fast = fa.grad(f)(x)
    with front_end_only():
        slow = fa.grad(f)(x)
    assert np.asarray(fast).tobytes() == np.asarray(slow).tobytes()


ARRAY_CONSTANTS = (0.5, -0.0, 2.0, np.array([1.0, -2.0, 0.0, 3.5, 1e300]),
                   np.array([1, 0, -3, 2, 5]), np.array([True, False, True, True, False]))


def _array_program(ops):
    """Array code (float vectors, their sums, constants of floats, float,
    integer and boolean arrays, on either side) through the operators and
    NumPy's ufuncs: what the array fast paths and the front end both record."""
    def f(x):
        values = [x, x[1:6], np.sum(x)]
        for kind, a, b, c in ops:
            u = values[a % len(values)]
            v = ARRAY_CONSTANTS[b % len(ARRAY_CONSTANTS)] if c % 3 == 0 else values[b % len(values)]
            if np.shape(u) == (7,):
                u = u[:5]
            if np.shape(v) == (7,):
                v = v[2:]
            left, right = (v, u) if c % 2 else (u, v)
            if kind == "binary":
                op = BINARY[c % len(BINARY)]
                values.append(left + right if op == "+" else left - right if op == "-"
                              else left * right if op == "*" else left / right)
            elif kind == "ufunc2":
                values.append(BINARY_UFUNCS[c % len(BINARY_UFUNCS)](left, right) * 1.0)
            else:
                values.append(UNARY[b % len(UNARY)](u))
        return np.sum(values[-1]) + np.sum(values[-2])
    return f


array_step = st.tuples(st.sampled_from(["binary", "ufunc", "ufunc2"]), st.integers(0, 50),
                       st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=30, deadline=None)
@given(st.lists(array_step, min_size=1, max_size=12), st.sampled_from([{}, {"release": True}]))
def test_array_fast_paths_record_what_the_front_end_records(ops, options):
    f = _array_program(ops)
    x = np.random.default_rng(len(ops)).uniform(-2.0, 2.0, 7)
    with np.errstate(all="ignore"):
        _same_both_ways(f, x, front_end_only, options)


def test_eager_array_loss_against_central_differences():
    """A loss of arrays and data arguments that takes the array fast paths
    (operators of arrays, scalars and array constants, unary and binary
    ufuncs) on every operation but the product."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((40, 6)), np.sign(rng.standard_normal(40))

    def loss(w, X, y):
        z = -y * (X @ w)
        soft = np.log(1.0 + np.exp(z)) + 0.5 * np.maximum(z, 0.0) / (2.0 + w[0] ** 2)
        return np.mean(soft) + 1e-2 * np.sum(w ** 2) - np.sum(np.tanh(w) * np.arange(6.0))

    w = rng.standard_normal(6)
    g = fa.grad(loss)
    for _ in range(2):  # the first call watches the data arguments, the second reads them lent
        got = g(w, X, y)
    for _ in range(3):
        d = rng.standard_normal(6)
        h = 1e-6
        central = (loss(w + h * d, X, y) - loss(w - h * d, X, y)) / (2 * h)
        np.testing.assert_allclose(got @ d, central, rtol=1e-6, atol=1e-8)


def test_compiled_scalar_loop_gradient_against_central_differences():
    def loop(x):
        s = 0.0
        for i in range(len(x)):
            s = s + np.log(1.0 + x[i] ** 2) + x[i] ** 4 - 0.5 * np.tanh(x[i]) / (2.0 + x[i - 1] ** 2)
        return s

    rng = np.random.default_rng(3)
    x = rng.uniform(-1.5, 1.5, 40)
    grad = fa.compile(loop)(x)  # its gradient
    with front_end_only():
        slow = fa.compile(loop)(x)
    assert grad.tobytes() == slow.tobytes()
    for _ in range(3):
        d = rng.standard_normal(x.shape)
        h = 1e-6
        central = (loop(x + h * d) - loop(x - h * d)) / (2 * h)
        np.testing.assert_allclose(grad @ d, central, rtol=1e-6, atol=1e-8)


def test_fast_paths_fall_back_for_other_operands():
    """Captured tracers of an outer trace, integer data and NumPy scalars
    take the front end's way and still differentiate."""
    def inner_uses_outer(x):
        return fa.grad(lambda y: (y * x[0] + x[1] * 2.0) ** 2)(x[2])

    x = np.array([0.3, -1.2, 0.7])
    g = fa.grad(inner_uses_outer)(x)
    h = 1e-6
    for k in range(3):
        e = np.eye(3)[k]
        central = (inner_uses_outer(x + h * e) - inner_uses_outer(x - h * e)) / (2 * h)
        np.testing.assert_allclose(g[k], central, rtol=1e-6, atol=1e-8)
    # a NumPy scalar operand, and x[i] past the end, as the front end has them
    assert fa.grad(lambda v: (np.float64(2.0) * v[0]) ** 2)(x)[0] == 8.0 * x[0]
    try:
        fa.grad(lambda v: v[7])(x)
    except IndexError as exc:
        assert "out of bounds" in str(exc)
    else:
        raise AssertionError("x[7] of a 3-vector must raise IndexError")


def test_a_long_trace_leaves_its_objects_to_the_oldest_generation(monkeypatch):
    """The objects a long trace made with the collector off are moved to the
    oldest generation as it ends (no collection walks them all right after),
    and a garbage cycle among them is still collected."""
    import gc
    import weakref

    from fastad.core import tracer as tracer_module

    class Node:
        pass

    monkeypatch.setattr(tracer_module, "YOUNG_OBJECTS_PROMOTED", 2000)
    x = np.linspace(0.1, 1.0, 2000)
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        with recording() as builder:
            cycle = Node()
            cycle.me = cycle
            alive = weakref.ref(cycle)
            del cycle
            xs, s = builder.new_input(x), 0.0
            for i in range(len(x)):
                s = s + xs[i] * 2.0
        assert gc.isenabled()
        assert gc.get_count()[0] < 2000
        assert alive() is not None  # (kept until a collection)
        gc.collect()
        assert alive() is None
        assert len(builder.tape.instrs) == 3 * len(x)  # take, mul, add
    finally:
        if not was_enabled:
            gc.disable()


# -- the C hot path of tracing (`core._tracing`) against the Python one -------

_C_TRACING = tracer_module._tracing is not None


@contextlib.contextmanager
def python_tracing_only():
    """Tracing in Python for the ``with`` body: `_append` and the fast paths
    as they are without the extension (FASTAD_NO_EXT=1)."""
    c_append = tracer_module._append
    try:
        tracer_module._append = fast_paths._append = tracer_module._append_py
        for (cls, name), method in fast_paths.PYTHON_PATHS.items():
            setattr(cls, name, method)
        yield
    finally:
        tracer_module._append = fast_paths._append = c_append
        for (cls, name), method in fast_paths.FAST_PATHS.items():
            setattr(cls, name, method)


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
@settings(max_examples=30, deadline=None)
@given(st.lists(step, min_size=1, max_size=25), st.sampled_from([{}, {"release": True},
                                                                 {"record_lines": False}]))
def test_c_hot_path_records_what_python_records(ops, options):
    """The same tape byte for byte (source lines, constants, index slots),
    the same values; and so the same eager gradient."""
    _same_both_ways(_program(ops), np.random.default_rng(len(ops)).uniform(-2.0, 2.0, 7),
                    python_tracing_only, options)


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
def test_c_hot_path_compiled_loops_are_pythons():
    """Compiled scalar loops (rerolled, with a `where` per element, and a
    loop of neighbours) traced by the C hot path: their tapes at each stage
    and gradients are those of the Python tracer."""
    def loop(x):
        s = 0.0
        for i in range(1, len(x)):
            s = s + np.exp(-x[i] * x[i - 1]) + np.where(x[i] > 0.0, x[i] ** 3, 0.5 * x[i])
        return s + x[0] / 3.0

    x = np.random.default_rng(2).uniform(-1.5, 1.5, 60)
    fast = fa.compile(loop)
    grad = fast(x)
    with python_tracing_only():
        slow = fa.compile(loop)
        assert slow(x).tobytes() == grad.tobytes()
    assert fast.tape.to_bytes() == slow.tape.to_bytes()


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
def test_c_hot_path_keeps_what_an_eager_sweep_reads():
    """An eager gradient holding a large value (`Builder.drop_unread` with
    `_large` set): the C path asks `_keep_reads` as the Python one does, so
    the gradient is the same, and right."""
    def f(x):
        big = np.tanh(x) * 2.0  # 1 MiB: held, let go of when no rule reads it
        s = 0.0
        for i in range(0, len(x), 4096):
            s = s + np.log(1.0 + big[i] ** 2) * x[i + 1]
        return s + np.sum(big[:3])

    x = np.random.default_rng(6).uniform(-1.0, 1.0, 1 << 17)
    fast = fa.grad(f)(x)
    with python_tracing_only():
        slow = fa.grad(f)(x)
    assert fast.tobytes() == slow.tobytes()
    d = np.random.default_rng(7).standard_normal(x.shape)
    h = 1e-6
    np.testing.assert_allclose(fast @ d, (f(x + h * d) - f(x - h * d)) / (2 * h), rtol=1e-5)


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
@settings(max_examples=20, deadline=None)
@given(st.lists(step, min_size=1, max_size=25))
def test_c_columns_are_the_instructions(ops):
    """`TapeArrays` of a trace made from the C arrays its `_append` filled
    (`RecordedColumns.column`) is what it is from the instructions: the same
    operand table, primitive numbers and names, features."""
    from fastad.transforms.tape_arrays import TapeArrays
    f = _program(ops)

    def g(x):  # with arrays and parameters too (a sum over an axis, a reshape)
        return f(x) + np.sum(np.reshape(x * 2.0, (7, 1)), axis=0)[0]

    x = np.random.default_rng(len(ops)).uniform(-2.0, 2.0, 7)
    with recording(release=True) as builder:
        builder.tape.outputs = [builder.slot_of(g(builder.new_input(x)))]
    tape = builder.tape
    assert tape.recorded.c_column(tape) is not None
    fast = TapeArrays(tape)
    tape.recorded.column = None
    slow = TapeArrays(tape)
    for name in ("ops", "outs", "producer", "features", "blocked", "names", "aval_id", "uses"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.prim_names == slow.prim_names


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
@pytest.mark.parametrize("cond", [0.0, -0.0, 2.0, float("nan"), float("inf")])
def test_c_where_and_its_arithmetic_are_pythons(cond):
    """``np.where`` of scalars with a float64 or Python float condition (NaN
    and -0.0 among them: truth as NumPy takes it), and the four operators of
    a scalar and the 0-d value it gives, either side, dividing by zero too,
    recorded by the C paths: the tape and values of the Python fast paths
    and of the front end."""
    def f(x):
        c = x[0] * 0.0 + cond  # a float64 condition, traced
        w = np.where(c, x[1], -0.0)
        z = np.where(cond, 0.0, x[2] - x[2])  # a Python float condition; a zero
        v = np.where(x[0] > x[1], w, 1e300)
        out = [w + x[0], x[1] - w, w * x[2], x[0] / z, w / x[1], z - x[0], 1e300 * v]
        total = out[0]
        for o in out[1:]:
            total = total + o
        return total

    x = np.array([0.5, -1.25, 3.0])
    with np.errstate(all="ignore"):
        fast = _recorded(f, x)
        with python_tracing_only():
            slow = _recorded(f, x)
        with front_end_only():
            front = _recorded(f, x)
    assert fast == slow == front


@pytest.mark.skipif(not _C_TRACING, reason="fastad.core._tracing is not built (or FASTAD_NO_EXT)")
def test_c_hot_path_traces_of_two_threads_in_turn():
    """Two threads tracing in turn, an operation each at a time: each
    operation goes to its own thread's innermost trace (the C paths keep the
    stack of the thread that asked last), and each tape is what the loop
    records alone."""
    import threading

    x = np.random.default_rng(3).uniform(-1.0, 1.0, 16)
    turns = [threading.Semaphore(1), threading.Semaphore(0)]

    def record(me=None):
        with recording() as builder:
            xs = builder.new_input(x)
            v = xs[0]
            for i in range(len(x)):
                if me is not None:
                    turns[me].acquire()
                v = v * 0.5 + np.log(1.0 + xs[i] ** 2) - np.where(xs[i] > 0.0, xs[i], -xs[i])
                if me is not None:
                    turns[1 - me].release()
            builder.tape.outputs = [builder.slot_of(v)]
        return builder.tape.to_bytes(), np.asarray(v.value).tobytes()

    tapes = [None, None]
    other = threading.Thread(target=lambda: tapes.__setitem__(1, record(1)))
    other.start()
    tapes[0] = record(0)
    other.join()
    assert tapes[0] == tapes[1] == record()
