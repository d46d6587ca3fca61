"""fastad.scan, fori_loop and while_loop: one loop instruction with a body
sub-tape, against the unrolled Python loop it stands for (values bit for bit
where the same operations run; derivatives against the unrolled loop's and
central finite differences in random directions), eager and compiled."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.backends.reference import evaluate
from fastad.primitives.loops import LoopBody
from conftest import BACKENDS
from helpers import FAST

COMPILED = "c" if "c" in BACKENDS else "numpy"


@contextlib.contextmanager
def _host_call_notice():
    """Compiled functions warn that a loop is a host call (on the backends that
    have host calls); the tests check results, not that notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop",
                                category=UserWarning)
        yield
N = 3  # length of each carried vector


# -- generated loop bodies ------------------------------------------------------------
OPS = ("sin", "tanh", "mul", "matmul", "add_x", "cos", "scale")


def _apply(op, v, other, x, w):
    if op == "sin":
        return np.sin(v)
    if op == "tanh":
        return np.tanh(v)
    if op == "mul":
        return 0.5 * v * other
    if op == "matmul":
        return w @ v * 0.5
    if op == "add_x":
        return v + x
    if op == "cos":
        return np.cos(v)
    return v * 0.7


@st.composite
def loop_programs(draw):
    n_carry = draw(st.integers(1, 3))
    ops = [draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3)) for _ in range(n_carry)]
    return {"ops": ops, "length": draw(st.integers(1, 9)),
            "checkpoint": draw(st.none() | st.integers(1, 4)), "reverse": draw(st.booleans()),
            "ys": draw(st.booleans()), "seed": draw(st.integers(0, 2**16))}


def _step(prog, w):
    def step(carry, x):
        new = [carry[j] for j in range(len(carry))]
        for j, ops in enumerate(prog["ops"]):
            v = carry[j]
            for op in ops:
                v = _apply(op, v, carry[(j + 1) % len(carry)], x, w)
            new[j] = v
        y = {"dot": np.sum(new[0] * x), "vec": new[-1] * 2.0} if prog["ys"] else None
        return new, y
    return step


def _scan_loss(prog):
    def loss(init, xs, w):
        carry, ys = fa.scan(_step(prog, w), list(init), xs, reverse=prog["reverse"],
                            checkpoint=prog["checkpoint"])
        total = sum(np.sum(c * (k + 1)) for k, c in enumerate(carry))
        if ys is not None:
            total = total + np.sum(ys["dot"] * np.arange(1, prog["length"] + 1)) \
                + np.sum(ys["vec"] ** 2)
        return total
    return loss


def _unrolled_loss(prog):
    def loss(init, xs, w):
        step, carry, ys = _step(prog, w), list(init), []
        order = range(prog["length"] - 1, -1, -1) if prog["reverse"] else range(prog["length"])
        for t in order:
            carry, y = step(carry, xs[t])
            ys.append(y)
        if prog["reverse"]:
            ys = ys[::-1]
        total = sum(np.sum(c * (k + 1)) for k, c in enumerate(carry))
        if prog["ys"]:
            total = total + np.sum(np.stack([y["dot"] for y in ys])
                                   * np.arange(1, prog["length"] + 1)) \
                + np.sum(np.stack([y["vec"] for y in ys]) ** 2)
        return total
    return loss


def _inputs(prog):
    rng = np.random.default_rng(prog["seed"])
    init = tuple(rng.uniform(-1, 1, N) for _ in prog["ops"])
    xs = rng.uniform(-0.5, 0.5, (prog["length"], N))
    w = rng.uniform(-1, 1, (N, N))
    return init, xs, w, rng


def _directional_fd(f, args, direction, h=1e-6):
    plus = [a + h * d for a, d in zip(args, direction)]
    minus = [a - h * d for a, d in zip(args, direction)]
    return (f(*plus) - f(*minus)) / (2 * h)


def _gradient_matches(got, want, prog, args, rng):
    """A compiled (value, gradient...) against the reference interpreter's, and
    the gradient along a random direction against central differences of the
    unrolled loop."""
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    direction = [rng.standard_normal(a.shape) for a in args]
    fd = _directional_fd(_from_flat(_unrolled_loss(prog)), args, direction)
    along = sum(np.sum(g * d) for g, d in zip(got[1:], direction))
    np.testing.assert_allclose(along, fd, rtol=1e-6, atol=1e-8)


def _flat_args(init, xs, w):
    return [np.stack(init), xs, w]


def _from_flat(f):
    return lambda stacked, xs, w: f(tuple(stacked), xs, w)


@FAST
@given(loop_programs())
def test_scan_values_bit_for_bit_and_gradients_against_the_unrolled_loop(prog):
    init, xs, w, rng = _inputs(prog)
    loss, unrolled = _scan_loss(prog), _unrolled_loss(prog)
    assert loss(init, xs, w) == unrolled(init, xs, w)  # the same operations, in order
    g = fa.grad(_from_flat(loss), argnums=(0, 1, 2))(*_flat_args(init, xs, w))
    g_unrolled = fa.grad(_from_flat(unrolled), argnums=(0, 1, 2))(*_flat_args(init, xs, w))
    for a, b in zip(g, g_unrolled):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    direction = [rng.standard_normal(a.shape) for a in _flat_args(init, xs, w)]
    fd = _directional_fd(_from_flat(unrolled), _flat_args(init, xs, w), direction)
    along = sum(np.sum(a * d) for a, d in zip(g, direction))
    np.testing.assert_allclose(along, fd, rtol=1e-6, atol=1e-8)


@FAST
@given(loop_programs())
def test_scan_forward_mode_against_finite_differences(prog):
    init, xs, w, rng = _inputs(prog)
    args = _flat_args(init, xs, w)
    direction = [rng.standard_normal(a.shape) for a in args]
    value, tangent = fa.jvp(_from_flat(_scan_loss(prog)), args, direction)
    assert value == _unrolled_loss(prog)(init, xs, w)
    fd = _directional_fd(_from_flat(_unrolled_loss(prog)), args, direction)
    np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-8)


@FAST
@given(loop_programs())
def test_compiled_scan_gradient_against_eager(prog):
    init, xs, w, _ = _inputs(prog)
    f = _from_flat(_scan_loss(prog))
    args = _flat_args(init, xs, w)
    eager = fa.value_and_grad(f, argnums=(0, 2))(*args)
    with _host_call_notice():
        g = fa.compile(f, argnums=(0, 2), backend=COMPILED)
        compiled = g.value_and_grad(*args)
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-13)
    for a, b in zip(compiled[1], eager[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@FAST
@given(loop_programs())
def test_second_order_through_the_loop_against_finite_differences(prog):
    init, xs, w, rng = _inputs(prog)
    v = rng.standard_normal(w.shape)

    def grad_w(w_):
        return fa.grad(lambda ww: _scan_loss(prog)(init, xs, ww))(w_)
    hv = fa.jvp(grad_w, (w,), (v,))[1]
    h = 1e-5
    fd = (fa.grad(lambda ww: _unrolled_loss(prog)(init, xs, ww))(w + h * v)
          - fa.grad(lambda ww: _unrolled_loss(prog)(init, xs, ww))(w - h * v)) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-7)
    hess = fa.grad(lambda ww: np.sum(grad_w(ww) * v))(w)  # reverse over reverse
    np.testing.assert_allclose(hess, fd, rtol=1e-5, atol=1e-7)


def test_the_loop_is_one_instruction_whatever_the_trip_count():
    def f(x, n):
        return np.sum(fa.scan(lambda c, _: (np.sin(c) * 1.01, None), x, None, length=n)[0])
    sizes = [len(fa.make_tape(lambda x: f(x, n))(np.ones(3)).instrs) for n in (10, 1000)]
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("checkpoint", [None, 1, 3, 50])
def test_checkpoint_strides_give_the_same_gradient(checkpoint):
    rng = np.random.default_rng(1)
    x0, xs = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, (23, 4))

    def f(x, xs, checkpoint):
        c, ys = fa.scan(lambda c, x: (np.tanh(c * 1.1 + x), np.sum(c * x)), x, xs,
                        checkpoint=checkpoint)
        return np.sum(c) + np.sum(ys)
    full = fa.grad(f, argnums=(0, 1))(x0, xs, 10**6)  # every state stored
    got = fa.grad(f, argnums=(0, 1))(x0, xs, checkpoint)
    for a, b in zip(got, full):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_fori_loop_against_python_and_finite_differences():
    rng = np.random.default_rng(2)
    x, w = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (3, 3))

    def f(x, w):
        return np.sum(fa.fori_loop(2, 9, lambda i, c: np.tanh(w @ c + i * 0.1), x))

    def python(x, w):
        for i in range(2, 9):
            x = np.tanh(w @ x + i * 0.1)
        return np.sum(x)
    assert f(x, w) == python(x, w)
    d = rng.standard_normal(3)
    np.testing.assert_allclose(np.dot(fa.grad(f)(x, w), d),
                               _directional_fd(lambda x: python(x, w), [x], [d]), rtol=1e-6)


def test_fori_loop_indexing_by_the_step_runs_as_python():
    xs = np.arange(6.0)

    def f(c):
        return fa.fori_loop(0, 5, lambda i, c: c * 0.5 + xs[i] * c, c)
    c = 1.5
    for i in range(5):
        c = c * 0.5 + xs[i] * c
    assert f(1.5) == c
    np.testing.assert_allclose(fa.grad(f)(1.5), c / 1.5, rtol=1e-12)


def test_while_loop_values_and_reverse_mode_through_the_run_time_trip_count():
    def f(x):
        _, y = fa.while_loop(lambda c: c[0] < 7, lambda c: (c[0] + 1, np.sin(c[1]) * 1.3),
                             (0, x))
        return np.sum(y)

    def python(x):
        for _ in range(7):
            x = np.sin(x) * 1.3
        return np.sum(x)
    x = np.array([0.3, -0.8])
    assert f(x) == python(x)
    d = np.array([0.6, -1.1])
    np.testing.assert_allclose(np.dot(fa.grad(f)(x), d), _directional_fd(python, [x], [d]),
                               rtol=1e-6)
    g = fa.jit(fa.grad(f))
    with _host_call_notice():
        np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)


def test_while_loop_compiled_retraces_when_the_trip_count_changes():
    def f(x):
        return fa.while_loop(lambda c: np.sum(c) < 10.0, lambda c: c * 1.5, x)
    with _host_call_notice():
        g = fa.jit(f)
        for x in (np.array([1.0, 1.0]), np.array([3.0, 4.0]), np.array([0.1, 0.2])):
            want = x
            while np.sum(want) < 10.0:
                want = want * 1.5
            np.testing.assert_array_equal(g(x), want)


def test_carry_that_changes_shape_or_dtype_is_a_clear_error():
    with pytest.raises(TypeError, match="carry output leaf 0"):
        fa.scan(lambda c, x: (np.concatenate([c, np.reshape(x, (1,))]), None), np.ones(2),
                np.ones(3))
    with pytest.raises(TypeError, match="carry output leaf 0"):
        fa.fori_loop(0, 3, lambda i, c: c + 0.5, 0)
    with pytest.raises(TypeError, match="structure"):
        fa.scan(lambda c, x: ((c, c), None), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="trip count"):
        fa.scan(lambda c, x: (c, None), 0.0, [np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="checkpoint"):
        fa.scan(lambda c, x: (c, None), 0.0, np.ones(3), checkpoint=0)


def test_saved_function_holds_the_body_tape_and_nested_loops():
    def f(x):
        def outer(c, _):
            inner, _ = fa.scan(lambda d, _: (np.sin(d) + c * 0.1, None), c, None, length=3)
            return inner, np.sum(inner)
        c, ys = fa.scan(outer, x, None, length=4)
        return np.sum(c) + np.sum(ys)
    x = np.array([0.2, 0.7])
    with _host_call_notice():
        g = fa.compile(f)
        want = g(x)
        loaded = fa.loads(fa.dumps(g))
        np.testing.assert_array_equal(loaded(x), want)
    np.testing.assert_allclose(want, fa.grad(f)(x), rtol=1e-12)
    tape = fa.make_tape(f)(x)
    again = fa.Tape.from_bytes(tape.to_bytes())
    np.testing.assert_array_equal(evaluate(again, [x])[0], evaluate(tape, [x])[0])


@FAST
@given(loop_programs())
def test_vmap_over_a_loop_against_each_example(prog):
    init, xs, w, rng = _inputs(prog)
    f = _from_flat(_scan_loss(prog))
    batch = rng.uniform(-1, 1, (3,) + np.stack(init).shape)
    got = fa.vmap(lambda s: f(s, xs, w))(batch)
    want = [f(s, xs, w) for s in batch]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    xs_batch = rng.uniform(-0.5, 0.5, (3,) + xs.shape)
    got = fa.vmap(lambda s, x: fa.grad(f, argnums=2)(s, x, w))(batch, xs_batch)
    want = [fa.grad(f, argnums=2)(s, x, w) for s, x in zip(batch, xs_batch)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("steps", [100, 400])
def test_reverse_mode_keeps_about_sqrt_of_the_trip_count_states(steps):
    """Past `STORE_BYTES` of states, checkpoints of about sqrt(T) states;
    within it, every state stored (one forward run less)."""
    from fastad.loop_rules import STORE_BYTES

    def f(x, checkpoint):
        c, _ = fa.scan(lambda c, _: (np.sin(c) * 1.01, None), x, None, length=steps,
                       checkpoint=checkpoint)
        return np.sum(c)

    def largest(tape):  # the largest value computed, in the tape or a loop body's
        return max([tape.avals[i.out].size for i in tape.instrs]
                   + [largest(v.tape) for i in tape.instrs for _, v in i.params
                      if isinstance(v, LoopBody)])

    def gradient_tape(x, checkpoint):
        return fa.make_tape(fa.grad(lambda x: f(x, checkpoint)))(x)
    state = 2 * STORE_BYTES // (8 * steps)  # the states twice the budget
    x = np.linspace(-1, 1, state)
    assert largest(gradient_tape(x, None)) <= 3 * np.sqrt(steps) * state  # checkpoints, a chunk
    assert largest(gradient_tape(x, 1)) >= steps * state  # every state stored, which it avoids
    x = x[:state // 4]  # within the budget: every state stored
    assert largest(gradient_tape(x, None)) >= steps * x.size


@FAST
@given(loop_programs())
def test_stored_states_share_the_forward_loop_and_equal_the_checkpointed_bits(prog):
    """A loop whose states fit STORE_BYTES: reverse mode's storing loop is the
    forward loop too (one loop runs the forward steps on the optimized
    value-and-gradient tape), and the value and gradient are the
    checkpointed reverse mode's bit for bit (the reference interpreter)."""
    from fastad import loop_rules
    from fastad.transforms.optimize import optimize
    init, xs, w, rng = _inputs(prog)
    args = _flat_args(init, xs, w)
    prog = dict(prog, checkpoint=None)
    f = _from_flat(_scan_loss(prog))

    def tape():
        return optimize(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1, 2)))(*args))
    stored = tape()
    bodies = [i.kwargs["body"] for i in stored.instrs if i.prim == "loop"]
    assert sum(b.extends is not None for b in bodies) == 1
    assert not any(b is other.extends for b in bodies for other in bodies)  # merged
    saved = loop_rules.STORE_BYTES, loop_rules.STORE_RATIO
    loop_rules.STORE_BYTES, loop_rules.STORE_RATIO = 0, 0.0
    try:
        checkpointed = tape()
    finally:
        loop_rules.STORE_BYTES, loop_rules.STORE_RATIO = saved
    # checkpointed: the states stored are the chunks' first ones and the last
    # length % k (a loop over chunks, `loops.recorded`), never all of them
    assert all(i.kwargs["body"].extends.chunk_of or i.kwargs["length"] < prog["length"]
               for i in checkpointed.instrs if i.prim == "loop" and i.kwargs["body"].extends)
    for a, b in zip(evaluate(stored, args), evaluate(checkpointed, args)):
        np.testing.assert_array_equal(a, b)


@st.composite
def chunked_programs(draw):
    """Loops long enough to be cut into chunks: a length with divisors."""
    prog = draw(loop_programs())
    length = draw(st.sampled_from([4, 6, 9, 12, 16, 20, 30]))
    k = draw(st.none() | st.sampled_from([d for d in range(2, length) if length % d == 0]))
    return dict(prog, length=length, checkpoint=k)


@contextlib.contextmanager
def _chunking(chunked):
    """Loops recorded past a state budget of 0, in chunks or (``chunked``
    False) as one loop; the settings restored after."""
    import sys
    from fastad import loop_rules
    loops = sys.modules["fastad.loops"]
    saved = loop_rules.STORE_BYTES, loop_rules.STORE_RATIO, loops.chunk_length
    loop_rules.STORE_BYTES, loop_rules.STORE_RATIO = 0, 0.0
    if not chunked:
        loops.chunk_length = lambda *a: 0
    try:
        yield
    finally:
        loop_rules.STORE_BYTES, loop_rules.STORE_RATIO, loops.chunk_length = saved


@FAST
@given(chunked_programs(), st.booleans())
def test_loops_recorded_in_chunks_equal_the_one_loop_bit_for_bit(prog, compiled):
    """A loop whose reverse mode checkpoints is recorded as a loop over
    chunks (`loops.recorded`): value and gradient equal the one loop's bit
    for bit (the reference interpreter's tapes, or both compiled for the
    VM), and its gradient agrees with central differences; with
    ``checkpoint=k`` or past the state budget (here 0)."""
    init, xs, w, rng = _inputs(prog)
    args = _flat_args(init, xs, w)
    f = _from_flat(_scan_loss(prog))

    def results(chunked):
        with _chunking(chunked):
            vg = fa.value_and_grad(f, argnums=(0, 1, 2))
            tape = fa.make_tape(vg)(*args)
            chunks = any(i.prim == "loop" and i.kwargs["body"].chunk_of for i in tape.instrs)
            if compiled:
                with _host_call_notice():
                    value, grads = fa.jit(vg, backend=COMPILED)(*args)
                return chunks, [value, *grads]
            return chunks, evaluate(tape, args)
    chunks, got = results(True)
    assert chunks  # every length here has a divisor near its square root
    assert not results(False)[0]
    for a, b in zip(got, results(False)[1]):
        np.testing.assert_array_equal(a, b)
    d = [rng.standard_normal(np.shape(a)) for a in args]
    along = sum(np.sum(g * v) for g, v in zip(got[1:], d))
    np.testing.assert_allclose(along, _directional_fd(f, args, d), rtol=1e-6, atol=1e-8)


@FAST
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([(12, 3), (16, 4), (30, 5)]),
       st.lists(st.sampled_from(["loss", "counter", "state"]), min_size=1, max_size=3))
def test_carries_the_vjp_never_reads_are_not_recomputed(seed, length_k, extra):
    """Reverse mode of a loop over chunks recomputes a chunk's states for the
    VJP beside it (`_Sweep.pipelined_back`); carries the VJP reads neither
    directly nor through the kept ones' recomputation (a loss summed along,
    a counter) are left out of it.  Value and gradient equal the one loop's
    bit for bit, compiled and on the reference interpreter, and agree with
    central differences; the carries kept are the ones read."""
    from fastad import loop_rules
    length, k = length_k
    rng = np.random.default_rng(seed)
    coef = rng.uniform(-0.5, 0.5, (len(extra), 4))

    def f(theta, xs):
        def step(c, x):
            q, p = c[0], c[1]
            q1 = q + 0.1 * p
            p1 = p - 0.1 * (theta[0] * np.sin(q) + theta[1] * p) + 0.01 * x
            new = [q1, p1]
            for j, (kind, (a, b, u, v)) in enumerate(zip(extra, coef)):
                old = c[2 + j]
                new.append(old + (q1 - x) ** 2 * a if kind == "loss" else old + 1.0
                           if kind == "counter" else np.tanh(old * b + u * q1) + v * old)
            return tuple(new), None
        init = (0.3, -0.2) + tuple(0.1 * j for j in range(len(extra)))
        c, _ = fa.scan(step, init, xs, checkpoint=k)
        return sum(c[j] * (j + 1.0) for j in range(len(c)))
    theta, xs = np.array([1.3, 0.2]), rng.uniform(-1, 1, length)
    kept = []
    real = loop_rules.vjp_reads

    def spy(*args):
        kept.append(real(*args))
        return kept[-1]

    def results(chunked, backend):
        with _chunking(chunked):
            vg = fa.value_and_grad(f, argnums=(0, 1))
            if backend is None:
                return evaluate(fa.make_tape(vg)(theta, xs), [theta, xs])
            with _host_call_notice():
                value, grads = fa.jit(vg, backend=backend)(theta, xs)
            return [value, *grads]
    loop_rules.vjp_reads = spy
    try:
        chunked = [results(True, b) for b in (None, COMPILED)]
    finally:
        loop_rules.vjp_reads = real
    want = [2 + j for j, kind in enumerate(extra) if kind == "state"]
    assert kept and all(keep == [0, 1] + want for keep in kept)
    for got, backend in zip(chunked, (None, COMPILED)):
        for a, b in zip(got, results(False, backend)):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    d = [rng.standard_normal(2), rng.standard_normal(length)]
    along = sum(np.sum(g * v) for g, v in zip(chunked[1][1:], d))
    np.testing.assert_allclose(along, _directional_fd(f, [theta, xs], d), rtol=1e-6, atol=1e-8)


@FAST
@given(st.floats(-1.0, 1.0), st.integers(1, 4), st.booleans())
def test_closed_over_values_equal_on_the_call_get_their_own_derivatives(v, m, same):
    """Reverse mode of a loop computed eagerly: closed-over operands whose
    values are equal (here all of them, or ``same``: one NumPy scalar read
    twice) each get their own derivative, as the unrolled loop's, compiled,
    and central differences give."""
    def f(r, xs):
        ks = [r[0]] * m if same else [r[j] for j in range(m)]

        def step(c, x):
            for j, k in enumerate(ks):
                c = c + k * x * (j + 1.0) - 0.3 * k * c * x
            return c, None
        c, _ = fa.scan(step, 0.3, xs)
        return c

    def unrolled(r, xs):
        ks = [r[0]] * m if same else [r[j] for j in range(m)]
        c = 0.3
        for x in xs:
            for j, k in enumerate(ks):
                c = c + k * x * (j + 1.0) - 0.3 * k * c * x
        return c
    r, xs = np.full(m, v), np.linspace(0.1, 1.0, 5)
    got = fa.grad(f)(r, xs)
    np.testing.assert_allclose(got, fa.grad(unrolled)(r, xs), rtol=1e-12, atol=1e-14)
    with _host_call_notice():
        np.testing.assert_allclose(got, fa.compile(f, backend=COMPILED)(r, xs), rtol=1e-12,
                                   atol=1e-14)
    h = 1e-6
    fd = [(unrolled(r + h * e, xs) - unrolled(r - h * e, xs)) / (2 * h) for e in np.eye(m)]
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_states_no_larger_than_the_loops_inputs_are_stored():
    """Past STORE_BYTES, a loop whose states take no more than its stacked
    inputs stores them all (the forward pass holds the inputs anyway): no
    loop over chunks; a wider state is recorded in chunks."""
    from fastad.loop_rules import STORE_BYTES
    steps = 2 * STORE_BYTES // 64  # (8,192 = 128 chunks of 64 steps)

    def tape(width):
        def f(c0, xs):
            c, _ = fa.scan(lambda c, x: (np.tanh(c * 0.9 + np.sum(x)), None), c0, xs)
            return np.sum(c)
        return fa.make_tape(fa.grad(f))(np.ones(width), np.ones((steps, 8)))
    narrow, wide = tape(8), tape(16)  # 64 bytes of state a step, against 64 of input
    assert not any(i.prim == "loop" and i.kwargs["body"].chunk_of for i in narrow.instrs)
    assert any(i.prim == "loop" and i.kwargs["body"].extends for i in narrow.instrs)
    assert any(i.prim == "loop" and i.kwargs["body"].chunk_of for i in wide.instrs)


def _pytree_loop(length, kind, reverse):
    """A scan of a pytree carry and pytree ys (over rows of xs, or xs=None
    with length=), or a fori_loop, its results summed."""
    def f(theta, xs):
        init = {"a": theta[0] * np.ones(2), "b": (theta[1], theta[2])}

        def step(c, x):
            a = np.tanh(c["a"] * theta[3] + (0.3 if x is None else x["u"]))
            b0 = c["b"][0] * 0.9 + np.sin(c["b"][1]) * theta[4]
            b1 = c["b"][1] - 0.1 * np.sum(a) * b0
            return {"a": a, "b": (b0, b1)}, {"y": a[0] * b1, "z": (b0,)}
        if kind == "fori":
            c = fa.fori_loop(0, length, lambda i, c: step(c, {"u": xs[i] * i})[0], init)
            ys = {"y": c["a"], "z": (c["b"][0],)}
        else:
            c, ys = fa.scan(step, init, {"u": xs[:length]} if kind == "xs" else None,
                            length=None if kind == "xs" else length, reverse=reverse)
        return np.sum(c["a"] ** 2) + c["b"][0] * c["b"][1] \
            + np.sum(ys["y"] * np.arange(np.size(ys["y"]))) + np.sum(ys["z"][0] ** 2)
    return f


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@pytest.mark.parametrize("length,kind,reverse", [(1, "xs", False), (2, "none", True),
                                                 (13, "xs", True), (16, "xs", True),
                                                 (16, "none", False), (9, "fori", False)])
def test_loops_in_chunks_under_every_transform_equal_the_one_loop(length, kind, reverse):
    """Past the state budget (here 0) a scan or fori_loop of a pytree carry
    is recorded in chunks when its length has a divisor near its square root
    (16, 9), else as one loop (a prime, 1, 2): value and gradient, the
    Hessian, a JVP and a vmapped gradient, compiled, equal the one loop's bit
    for bit; the gradient and Hessian agree with central differences."""
    f = _pytree_loop(length, kind, reverse)
    theta, xs = np.linspace(-0.7, 0.6, 5), np.linspace(-1.0, 1.0, 20)
    d = np.linspace(-1.0, 1.0, 5)

    def results(chunked):
        with _chunking(chunked):
            tape = fa.make_tape(fa.value_and_grad(f))(theta, xs)
            chunks = any(i.prim == "loop" and i.kwargs["body"].chunk_of for i in tape.instrs)
            value, grad = fa.jit(fa.value_and_grad(f), backend="c")(theta, xs)
            got = [value, grad, fa.jit(fa.hessian(f), backend="c")(theta, xs),
                   *fa.jit(lambda t: fa.jvp(lambda u: f(u, xs), (t,), (d,)), backend="c")(theta),
                   fa.jit(fa.vmap(fa.grad(f), in_axes=(0, None)), backend="c")(
                       theta + 0.01 * np.arange(3)[:, None], xs)]
            return chunks, [np.asarray(a) for a in got]
    chunks, got = results(True)
    assert chunks == (length in (9, 16))
    for a, b in zip(got, results(False)[1]):
        assert a.tobytes() == b.tobytes()
    h = 1e-6
    fd = [(f(theta + h * e, xs) - f(theta - h * e, xs)) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(got[1], fd, rtol=1e-5, atol=1e-7)
    grad = fa.grad(f)
    fd_h = [(grad(theta + 1e-5 * e, xs) - grad(theta - 1e-5 * e, xs)) / 2e-5 for e in np.eye(5)]
    np.testing.assert_allclose(got[2], fd_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[4], got[1] @ d, rtol=1e-12)  # the JVP
    np.testing.assert_allclose(got[5][0], got[1], rtol=1e-12)  # vmap's first row


@pytest.mark.parametrize("length", [1, 2, 7])
def test_reverse_of_reverse_mode_merges_a_chain_of_storing_loops(length):
    """Reverse mode of reverse mode through a scan stores the states of the
    loop that stores the forward states (`LoopBody.extends` twice): the
    three merge into the last (`transforms.loop_merge`), which runs once;
    the optimized tape computes the unoptimized one's values bit for bit
    (the reference interpreter, and the C VM), and the Hessian-vector
    product agrees with central differences of the gradient."""
    from fastad.transforms.loop_merge import merge_stored_states
    from fastad.transforms.optimize import eliminate_common_subexpressions, optimize, simplify

    def f(theta, xs):
        def step(c, x):
            c2 = np.tanh(c * theta[0] + x) + theta[1] * np.sin(c)
            return c2, c2 * c
        c, ys = fa.scan(step, theta[2], xs)
        return c * c + np.sum(ys)
    d = np.array([0.3, -1.0, 0.5])

    def hvp(theta, xs):
        return np.sum(fa.grad(f)(theta, xs) * d)
    args = [np.array([0.7, -0.3, 0.4]), np.linspace(-1.0, 1.0, length)]
    tape = fa.make_tape(fa.grad(hvp))(*args)
    plain = eliminate_common_subexpressions(simplify(tape))
    bodies = [i.kwargs["body"] for i in plain.instrs if i.prim == "loop"]
    assert any(b.extends is not None and b.extends.extends is not None for b in bodies)
    merged = merge_stored_states(plain)
    ran = {id(i.kwargs["body"]) for i in merged.instrs if i.prim == "loop"}
    assert not any(id(b.extends) in ran for b in bodies if b.extends is not None and id(b) in ran)
    want = evaluate(tape, args)
    for got in (evaluate(merged, args), evaluate(optimize(tape), args)):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    if "c" in BACKENDS:
        for a, b in zip(fa.jit(fa.grad(hvp), backend="c")(*args), want[0]):
            np.testing.assert_array_equal(a, b)
    h = 1e-6
    fd = [(hvp(args[0] + h * e, args[1]) - hvp(args[0] - h * e, args[1])) / (2 * h)
          for e in np.eye(3)]
    np.testing.assert_allclose(want[0], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("carry", [(), (1.5,)])
def test_stored_states_of_a_loop_with_no_carry_or_a_scalar_one(carry):
    """A map (no carry: no states to store) and a loop of one scalar carry
    beside it: gradients against central differences and the compiled
    gradient equal to the eager one."""
    def f(x):
        c, ys = fa.scan(lambda c, r: (tuple(v * np.sum(r) for v in c), np.sin(r) * r),
                        carry, x.reshape(3, 2))
        return np.sum(ys ** 2) + sum(np.sum(v) for v in c)
    x = np.linspace(-1.0, 1.0, 6)
    g = fa.grad(f)(x)
    d = np.random.default_rng(0).standard_normal(6)
    np.testing.assert_allclose(g @ d, _directional_fd(f, [x], [d]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fa.compile(f, backend=COMPILED)(x), g, rtol=1e-13, atol=1e-15)


def test_compiled_steps_with_a_carry_that_swaps_and_passes_through():
    def f(a, b, xs):
        (a, b, c), ys = fa.scan(lambda c, x: ((c[1], c[0] * x, c[2]), c[0] + c[2]),
                                (a, b, a * 2.0), xs)
        return np.sum(a) + 2.0 * np.sum(b) + np.sum(c) + np.sum(ys * ys)
    rng = np.random.default_rng(5)
    a, b, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0.5, 1.5, (7, 3))
    with _host_call_notice():
        g = fa.compile(f, argnums=(0, 1, 2), backend=COMPILED)
        got = g.value_and_grad(a, b, xs)
    want = fa.value_and_grad(f, argnums=(0, 1, 2))(a, b, xs)
    assert got[0] == want[0]
    for x, y in zip(got[1], want[1]):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built")
def test_vm_run_steps_refuses_arrays_that_do_not_fit():
    from fastad.backends import c_backend
    tape = fa.make_tape(lambda c, x: c * x)(np.ones(2), np.ones(2))
    exe = c_backend.build(tape)
    ys: list = []
    with pytest.raises(ValueError, match="run_steps"):
        exe.run_steps([np.ones(3)], [np.ones((4, 2))], [], 4, ys)
    with pytest.raises(ValueError, match="run_steps"):
        exe.run_steps([np.ones(2)], [np.ones((3, 2))], [], 4, ys)
    with pytest.raises(ValueError, match="run_steps"):
        exe.run_steps([np.ones(2, np.float32)], [np.ones((4, 2))], [], 4, ys)


def _loop_tape():
    return fa.make_tape(lambda x: np.sum(fa.scan(lambda c, x: (np.sin(c) * x, c), x,
                                                 np.ones((3, 2)))[1]))(np.ones(2))


def _resaved(tape, edit):
    from fastad.core import wire
    payload = tape._payload()
    edit(payload)
    return wire.dumps(wire.TAPE, payload)


def _edit_body(edit_params):
    def edit(payload):
        for k, (prim, out, ins, params, line) in enumerate(payload["instrs"]):
            if prim == "loop":
                payload["instrs"][k] = (prim, out, ins, edit_params(params), line)
    return edit


def _body_field(params, change):
    return tuple((k, change(v) if k == "body" else v) for k, v in params)


@pytest.mark.parametrize("change, message", [
    (lambda body: (body[0], body[1], body[2], (99, 0)), "cannot have"),  # carry count
    (lambda body: (body[0], "no such thing", body[2], body[3]), "unknown sub-tape"),
    (lambda body: (body[0], body[1], {**body[2], "outputs": [10**6]}, body[3]), "never defined"),
    (lambda body: (body[0], body[1], {**body[2], "instrs": body[2]["instrs"] + [
        ("guard", len(body[2]["avals"]), (body[2]["inputs"][0],), (("expected", True),), None)],
        "avals": body[2]["avals"] + [((), np.dtype(bool))]}, body[3]), "guard"),
])
def test_hostile_saved_loop_bodies_are_refused_with_a_clear_error(change, message):
    tape = _loop_tape()
    data = _resaved(tape, _edit_body(lambda params: _body_field(params, change)))
    with pytest.raises(fa.TapeError, match=message):
        fa.Tape.from_bytes(data)


def test_loops_nested_past_the_saved_format_bound_are_refused_when_saved():
    def nested(depth):
        def f(x):
            if depth == 0:
                return np.sin(x)
            return fa.scan(lambda c, _: (nested(depth - 1)(c), None), x, None, length=1)[0]
        return f
    shallow = fa.make_tape(lambda x: np.sum(nested(3)(x)))(np.ones(2))
    np.testing.assert_array_equal(evaluate(fa.Tape.from_bytes(shallow.to_bytes()), [np.ones(2)]),
                                  evaluate(shallow, [np.ones(2)]))
    deep = fa.make_tape(lambda x: np.sum(nested(20)(x)))(np.ones(2))
    with pytest.raises(ValueError, match="nested more than"):
        deep.to_bytes()


def test_fori_loop_with_a_traced_bound_is_a_while_loop_and_differentiates():
    def f(x, n):
        return np.sum(fa.fori_loop(0, n, lambda i, c: np.sin(c) * 1.2, x))

    def python(x, n):
        for _ in range(int(n)):
            x = np.sin(x) * 1.2
        return np.sum(x)
    x = np.array([0.4, -0.3])
    g = fa.jit(fa.value_and_grad(f))  # an int argument of a compiled function is traced data
    with _host_call_notice():
        for n in (3, 0, 5):
            value, grad = g(x, n)
            d = np.array([1.0, 0.5])
            np.testing.assert_allclose(value, python(x, n), rtol=1e-14)
            np.testing.assert_allclose(np.dot(grad, d),
                                       _directional_fd(lambda x: python(x, n), [x], [d]),
                                       rtol=1e-6, atol=1e-9)


def test_an_empty_scan_gives_the_initial_carry_and_empty_stacked_outputs():
    carry, ys = fa.scan(lambda c, x: (c + x, {"y": c * x}), np.ones(2), np.zeros((0, 2)))
    np.testing.assert_array_equal(carry, np.ones(2))
    assert ys["y"].shape == (0, 2)
    g = fa.grad(lambda c: np.sum(fa.scan(lambda c, x: (np.sin(c), c), c, None, length=0)[0]))
    np.testing.assert_array_equal(g(np.ones(3)), np.ones(3))
    f = lambda xs: np.sum(fa.scan(lambda c, x: (c + x, c * x), np.ones(2), xs)[1]) + 1.0
    assert fa.grad(f)(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built")
@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 6), length=st.integers(0, 5))
def test_run_steps_needs_a_program_whose_ports_live_in_the_arena(n, length):
    """A program that reads its inputs in place has ports outside its arena,
    where the steps' copies would land: run_steps refuses it, and the body a
    loop builds has none."""
    from fastad.backends import c_backend
    rng = np.random.default_rng(n)
    c, xs = rng.standard_normal(n), rng.standard_normal((length, n))
    tape = fa.make_tape(lambda c, x: np.sin(c) * 0.5 + x)(c, xs[0] if length else c)
    with pytest.raises(ValueError, match="in place"):
        c_backend.build(tape).run_steps([c], [xs], [], length, [])
    final = c_backend.build(tape, bind_inputs=False).run_steps([c], [xs], [], length, [])[0]
    want = c
    for x in xs:
        want = np.sin(want) * 0.5 + x
    np.testing.assert_array_equal(final, want)


# -- the C VM's LOOP instruction --------------------------------------------------------
needs_vm = pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built")
EXACT_OPS = ("mul", "add_x", "scale")  # the same IEEE operations in NumPy and the VM


def _vm_and_reference(tape, args):
    """``tape`` (optimized) run by the C VM's program and by the reference
    interpreter, and the program's listing."""
    from fastad.backends import c_backend
    from fastad.backends.lower import lower
    from fastad.transforms.optimize import optimize
    tape = optimize(tape)
    program = lower(tape)
    return c_backend.Executable(program).run(list(args)), evaluate(tape, list(args)), str(program)


def _loop_words(listing):
    return [line for line in listing.splitlines() if " LOOP " in line]


@needs_vm
@FAST
@given(loop_programs())
def test_vm_loop_instruction_against_the_reference_interpreter_and_finite_differences(prog):
    """Generated bodies: the gradient's tape (its loops over chunks holding inner
    loops) run as LOOP instructions in the VM, against the reference interpreter
    on the same tape (bit for bit where the body's operations are exact in both)
    and central finite differences of the unrolled loop."""
    init, xs, w, rng = _inputs(prog)
    args = _flat_args(init, xs, w)

    def loop_only(stacked, xs, w):  # the loop's own results: no sums after it
        carry, ys = fa.scan(_step(prog, w), list(stacked), xs, reverse=prog["reverse"])
        return carry, ys
    got, want, listing = _vm_and_reference(fa.make_tape(loop_only)(*args), args)
    assert _loop_words(listing) and "host" not in listing
    # exact operations (no sum inside the body, whose order may differ) agree bit for bit
    exact = all(op in EXACT_OPS for ops in prog["ops"] for op in ops) and not prog["ys"]
    for a, b in zip(got, want):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    f = _from_flat(_scan_loss(prog))
    tape = fa.make_tape(fa.value_and_grad(f, argnums=(0, 1, 2)))(*args)
    got, want, listing = _vm_and_reference(tape, args)
    assert _loop_words(listing) and "host" not in listing  # reverse mode's loops, in the VM
    _gradient_matches(got, want, prog, args, rng)


def nested_scan_loss(x, xs):
    """A scan whose body holds a scan: reverse mode makes loops over chunks
    holding loops."""
    def outer(c, x):
        inner, ys = fa.scan(lambda d, _: (np.tanh(d * 0.9 + c * x), np.sum(d)), c, None,
                            length=3)
        return inner * 1.1, np.sum(ys) * x
    c, ys = fa.scan(outer, x, xs)
    return np.sum(c) + np.sum(ys * ys)


@needs_vm
def test_compiled_loops_run_in_the_vm_without_host_calls():
    """A scan, its reverse mode (loops over chunks holding loops) and a scan in a
    scan compile to LOOP instructions: no host-call notice, the gradient equal to
    the eager one."""
    f = nested_scan_loss
    rng = np.random.default_rng(7)
    x, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (9, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a host call would warn
        g = fa.compile(f, argnums=(0, 1), backend="c")
        value, grads = g.value_and_grad(x, xs)
    assert "LOOP" in str(g.program.program)
    want = fa.value_and_grad(f, argnums=(0, 1))(x, xs)
    np.testing.assert_allclose(value, want[0], rtol=1e-13)
    for a, b in zip(grads, want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    d = [rng.standard_normal(x.shape), rng.standard_normal(xs.shape)]
    along = sum(np.sum(a * b) for a, b in zip(grads, d))
    np.testing.assert_allclose(along, _directional_fd(f, [x, xs], d), rtol=1e-6, atol=1e-8)


@needs_vm
def test_second_order_of_a_loop_compiled_for_the_vm():
    """Reverse over reverse mode of a scan: loops of the loops' VJPs, in the VM."""
    rng = np.random.default_rng(8)
    x, xs, v = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (6, 3)), rng.standard_normal(3)

    def f(x):
        c, _ = fa.scan(lambda c, x: (np.sin(c) * x + c * 0.5, None), x, xs, checkpoint=2)
        return np.sum(c * c)

    def hvp(x):
        return fa.grad(lambda y: np.sum(fa.grad(f)(y) * v))(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = fa.jit(hvp, backend="c")
        got = g(x)
    np.testing.assert_allclose(got, hvp(x), rtol=1e-11, atol=1e-13)
    h = 1e-5
    np.testing.assert_allclose(got, (fa.grad(f)(x + h * v) - fa.grad(f)(x - h * v)) / (2 * h),
                               rtol=1e-5, atol=1e-7)


@needs_vm
def test_while_and_fori_loops_compile_to_loop_instructions():
    """A while loop's per-step condition (bool) is packed as float64 by the
    body; a fori_loop whose body ignores its integer step number needs no slot
    for it; one that uses it as data holds it as a float64 word."""
    x = np.array([0.5, 0.25])

    def while_f(x):
        return np.sum(fa.while_loop(lambda c: np.sum(c) < 10.0, lambda c: c * 1.5 + 0.1, x))

    def fori_f(x):
        return np.sum(fa.fori_loop(0, 6, lambda i, c: np.sin(c) * 1.2, x))

    def fori_data(x):
        return np.sum(fa.fori_loop(0, 6, lambda i, c: np.sin(c) * 1.2 + i * 0.01, x))
    for f in (while_f, fori_f, fori_data):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = fa.compile(f, backend="c")
            value, grad = g.value_and_grad(x)
        assert "LOOP" in str(g.program.program)
        assert value == f(x)
        np.testing.assert_allclose(grad, fa.grad(f)(x), rtol=1e-13)


@needs_vm
def test_a_guard_failing_inside_a_loop_body_fails_the_whole_call():
    """A body program whose GUARD fails stops the run (None), as anywhere else."""
    from fastad.backends import c_backend
    from fastad.backends.lower import OP, lower
    tape = fa.make_tape(lambda x: np.sum(fa.scan(lambda c, _: (c * 0.5, None), x, None,
                                                 length=4)[0]))(np.ones(2))
    program = lower(tape, bind_inputs=False)
    exe = c_backend.Executable(program)
    assert exe.run([np.ones(2)])[0] == 2 * 0.5 ** 4
    code = program.code.copy()
    (loop_pc, _, (d, n)), = [i for i in program.instructions() if i[1] == "LOOP"]
    body_halt = loop_pc + 3 + n - 1
    assert code[body_halt] == OP["HALT"]
    # a guard on a constant false byte: the body's last instruction before its HALT
    const_false = len(program.const_image)  # a fresh zero byte after the constants
    image = program.const_image + b"\0" * 8
    guarded = np.concatenate([code[:body_halt], [OP["GUARD"], const_false, 1],
                              code[body_halt:]]).astype(np.int32)
    guarded[loop_pc + 2] = n + 3
    hostile = type(program)(guarded, program.meta, program.index, image,
                            program.arena_bytes + 64, program.inputs, program.outputs)
    assert c_backend.Executable(hostile).run([np.ones(2)]) is None


@needs_vm
def test_a_reverse_scan_reads_its_stacked_values_in_place():
    """flip(xs, 0) feeding a loop is not copied: the LOOP reads the rows of xs
    backwards (a negative row stride), with the reference interpreter's values."""
    from fastad.backends.lower import lower
    from fastad.backends.vm_header import CONSTANTS
    from fastad.transforms.optimize import optimize
    rng = np.random.default_rng(9)
    x, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (40, 3))

    def f(x, xs):
        c, ys = fa.scan(lambda c, x: (c * 0.9 + x, c * x), x, xs, reverse=True)
        return c, ys
    got, want, listing = _vm_and_reference(fa.make_tape(f)(x, xs), [x, xs])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    program = lower(optimize(fa.make_tape(f)(x, xs)))
    (d, _n), = [w for _, name, w in program.instructions() if name == "LOOP"]
    nc, entry = int(program.meta[d + 1]), CONSTANTS["FASTAD_LOOP_ENTRY_WORDS"]
    x_entry = program.meta[d + 6 + entry * nc: d + 6 + entry * (nc + 1)]  # 6 head words
    assert x_entry[2] == 24 and x_entry[3] == -24  # a row of 3 float64, read backwards
    assert program.arena_bytes < 2 * xs.nbytes + 1024  # xs once (copied in), not twice


@needs_vm
def test_loop_results_returned_and_batched_on_the_vm():
    """The stacked outputs returned as they are (the program's result would be
    written in place, which the LOOP's rows never are), a closed-over array,
    and vmap of a loop compiled: the eager values (bit for bit where the
    operations are exact)."""
    rng = np.random.default_rng(10)
    w, xs, batch = rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (8, 3)), rng.uniform(-1, 1, (4, 3))

    def f(x, xs):
        return fa.scan(lambda c, x: (c * w[0] * 0.5 + x, c * x), x, xs)

    def batched(xs0):
        return fa.vmap(lambda x: np.sum(f(x, xs)[1]))(xs0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fa.jit(f, backend="c")(batch[0], xs)
        got_batched = fa.jit(batched, backend="c")(batch)
    want = f(batch[0], xs)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got_batched, batched(batch), rtol=1e-14)


@needs_vm
def test_loop_carries_and_outputs_of_several_dtypes_on_the_vm():
    """A float32 carry, a float64 one and a bool per-step output: the packed
    result is float64, the body converts its outputs and the final carry is
    cast back, bit for bit the eager values."""
    def f(a, b, xs):
        (a, b), ys = fa.scan(lambda c, x: ((c[0] * np.float32(0.5) + np.float32(1.0),
                                            c[1] * 0.9 + x), (c[0], c[1] > 0)), (a, b), xs)
        return a, b, ys[0], ys[1]
    a, b = np.ones(3, np.float32), np.ones(2)
    xs = np.random.default_rng(11).uniform(-1, 1, (6, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = fa.jit(f, backend="c")
        got = g(a, b, xs)
    assert "LOOP" in str(g.program.program)
    for x, y in zip(got, f(a, b, xs)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# Loops whose steps index by integers: scanned observations (plain, or a
# compiled function's integer argument), an index carried from argmax, and
# the counter of a fori_loop with a traced bound.  Each of (loop function,
# its python loop), of w (4, 5), ints (T,) in 0..4 and n = T.
def _hmm_forward(w, ints, n):
    def step(alpha, obs):
        return fa.numpy.log(fa.numpy.sum(fa.numpy.exp(alpha[:, None] + w[:4, :4]), 0)) \
            + w[:4, obs], None
    return fa.numpy.sum(fa.scan(step, w[:4, 0], ints)[0])


def _hmm_python(w, ints, n):
    alpha = w[:4, 0]
    for obs in ints:
        alpha = np.log(np.sum(np.exp(alpha[:, None] + w[:4, :4]), 0)) + w[:4, obs]
    return np.sum(alpha)


def _carried_argmax(w, ints, n):
    def step(c, obs):
        v, k = c
        v = np.tanh(v + w[k]) + w[obs]
        return (v, np.argmax(v)), None
    return np.sum(fa.scan(step, (w[0], np.argmax(w[0])), ints)[0][0])


def _carried_python(w, ints, n):
    v, k = w[0], np.argmax(w[0])
    for obs in ints:
        v = np.tanh(v + w[k]) + w[obs]
        k = np.argmax(v)
    return np.sum(v)


def _counter(w, ints, n):
    return np.sum(fa.fori_loop(0, n, lambda i, c: np.sin(c) + w[(i * 3) % 4], w[4]))


def _counter_python(w, ints, n):
    c = w[4]
    for i in range(int(n)):
        c = np.sin(c) + w[(i * 3) % 4]
    return np.sum(c)


_INDEXED_LOOPS = {"scanned": (_hmm_forward, _hmm_python),
                  "carried": (_carried_argmax, _carried_python),
                  "counter": (_counter, _counter_python)}


@pytest.mark.parametrize("name", sorted(_INDEXED_LOOPS))
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 30))
def test_loops_indexed_by_integer_steps_stay_loops(name, seed, steps):
    """Indexing by a step's integers is a gather: the loop stays one loop
    instruction (it unrolled, or failed, before), compiled once for any
    integers, its values those of the Python loop, its gradient against
    central differences."""
    f, python = _INDEXED_LOOPS[name]
    rng = np.random.default_rng(seed)
    w, ints = rng.uniform(-1, 1, (5, 5)), rng.integers(0, 5, steps)
    tape = fa.make_tape(lambda w: f(w, ints, steps))(w)
    assert sum(i.prim == "loop" for i in tape.instrs) == 1 and len(tape.instrs) < 40
    np.testing.assert_allclose(f(w, ints, steps), python(w, ints, steps), rtol=1e-13)
    g = fa.jit(fa.value_and_grad(f), backend=COMPILED)
    d = rng.standard_normal(w.shape)
    with _host_call_notice():
        for _ in range(2):  # new integers: the same trace
            value, grad = g(w, ints, steps)
            np.testing.assert_allclose(value, python(w, ints, steps), rtol=1e-12)
            np.testing.assert_allclose(np.sum(grad * d), _directional_fd(
                lambda w: python(w, ints, steps), [w], [d]), rtol=1e-6, atol=1e-8)
            ints = rng.integers(0, 5, steps)
    assert g.cache_info()["traces"] == 1
