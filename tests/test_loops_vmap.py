"""vmap of while loops whose examples take different numbers of steps: one
batched loop runs until the last example finishes, each finished example's
carry frozen (as JAX runs it), with no fallback to one example at a time.

Values are the per-example loop's bit for bit; reverse and forward mode
through the batched loop equal the per-example derivatives and central
finite differences; compiled (every backend present) equals eager.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS

COMPILED = "c" if "c" in BACKENDS else "numpy"
SETTINGS = settings(max_examples=15, deadline=None)


@contextlib.contextmanager
def _batched():
    """No warning at all: in particular not vmap's 'evaluated one example at a time'."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- the loops: (function of one example, how to draw one example's input) ----------------
def newton_sqrt(a):
    def going(c):
        return np.abs(c[0] * c[0] - a) > 1e-13 * a

    def step(c):
        return 0.5 * (c[0] + a / c[0]), c[1] + 1.0
    return fa.while_loop(going, step, (a, 0.0))[0]


def newton_cbrt(a):
    def step(x):
        return x - (x * x * x - a) / (3.0 * x * x)
    return fa.while_loop(lambda x: np.abs(x * x * x - a) > 1e-12 * a, step, a + 1.0)


def fixed_point(p):  # x = cos(p x), until the step is small
    def step(c):
        return np.cos(p * c[0]), c[0]
    return fa.while_loop(lambda c: np.abs(c[0] - c[1]) > 1e-10, step, (p * 0.0 + 1.0, p))[0]


def fori_bounded(x, n):  # a traced upper bound: a while loop over (i, x)
    return fa.fori_loop(0, n, lambda i, c: np.sin(c) * 1.2 + 0.05 * c, x)


def fori_plain(x, n):  # the same with the bound as the int it stands for
    return fori_bounded(x, int(n))


LOOPS = {
    "sqrt": (newton_sqrt, st.floats(0.01, 1e6)),
    "cbrt": (newton_cbrt, st.floats(0.01, 1e4)),
    "fixed_point": (fixed_point, st.floats(0.1, 0.95)),
}


def _batch(data, name, size):
    return np.array(data.draw(st.lists(LOOPS[name][1], min_size=size, max_size=size)))


def _per_example(f, *batches):
    return np.stack([np.asarray(f(*args)) for args in zip(*batches)])


def _central_fd(f, x, d, h=1e-6):
    return (f(x + h * d) - f(x - h * d)) / (2 * h)


# -- values and derivatives ------------------------------------------------------------
@SETTINGS
@given(name=st.sampled_from(sorted(LOOPS)), size=st.integers(1, 6), data=st.data())
def test_values_and_gradients_equal_the_per_example_loop(name, size, data):
    f = LOOPS[name][0]
    a = _batch(data, name, size)
    with _batched():
        got = fa.vmap(f)(a)
        grad = fa.grad(lambda a: np.sum(fa.vmap(f)(a)))(a)
        jac = fa.jacobian(fa.vmap(f))(a)
    np.testing.assert_array_equal(got, _per_example(f, a))
    want = _per_example(fa.grad(f), a)
    np.testing.assert_allclose(grad, want, rtol=1e-12)
    np.testing.assert_allclose(jac, np.diag(want), rtol=1e-12, atol=0)
    d = np.random.default_rng(size).standard_normal(size)
    fd = _central_fd(lambda a: np.sum(_per_example(f, a)), a, d * np.abs(a) * 1e-3)
    np.testing.assert_allclose(np.dot(grad, d * np.abs(a) * 1e-3), fd, rtol=1e-5, atol=1e-9)


@SETTINGS
@given(size=st.integers(1, 6), data=st.data())
def test_fori_loop_with_a_batched_bound(size, data):
    x = np.array(data.draw(st.lists(st.floats(-1.0, 1.0), min_size=size, max_size=size)))
    n = np.array(data.draw(st.lists(st.integers(0, 9), min_size=size, max_size=size)), float)
    with _batched():
        got = fa.vmap(fori_bounded)(x, n)
        grad = fa.grad(lambda x: np.sum(fa.vmap(fori_bounded)(x, n)))(x)
        tangent = fa.jvp(lambda x: fa.vmap(fori_bounded)(x, n), (x,), (np.ones(size),))[1]
    np.testing.assert_array_equal(got, _per_example(fori_plain, x, n))
    want = _per_example(fa.grad(fori_plain), x, n)
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(tangent, want, rtol=1e-12, atol=1e-300)
    d = np.random.default_rng(size).standard_normal(size)
    fd = _central_fd(lambda x: np.sum(_per_example(fori_plain, x, n)), x, d)
    np.testing.assert_allclose(np.dot(grad, d), fd, rtol=1e-6, atol=1e-8)


def test_the_batch_really_takes_different_numbers_of_steps():
    """What the tests above rely on: these inputs' trip counts differ."""
    def count(a):
        return fa.while_loop(lambda c: np.abs(c[0] * c[0] - a) > 1e-13 * a,
                             lambda c: (0.5 * (c[0] + a / c[0]), c[1] + 1.0), (a, 0.0))[1]
    a = np.array([1.0, 4.0, 1e6, 0.01])
    with _batched():
        counts = fa.vmap(count)(a)
    np.testing.assert_array_equal(counts, _per_example(count, a))
    assert counts[0] == 0 and len(set(counts)) == 4


def test_a_step_past_an_example_s_end_adds_no_inf_or_nan():
    """The body overflows when run on a finished example's final carry; the
    batched loop runs it there (the others go on), and neither its value nor
    its derivative reaches the results."""
    def f(x, s):
        return fa.while_loop(lambda c: c < 3.0,
                             lambda c: c + s + 1e-3 * np.exp(1e6 * (c - 3.0)), x)
    x = np.array([0.1, 2.9, 3.5, -1.05, 1.3, 2.2])
    s = np.array([0.5, 0.3, 0.7, 0.25, 0.45, 0.3])
    with np.errstate(over="ignore"):
        finals = _per_example(f, x, s)
        assert np.all(np.isinf(finals + s + 1e-3 * np.exp(1e6 * (finals - 3.0))))
    with _batched():
        got = fa.vmap(f)(x, s)
        gx, gs = fa.grad(lambda x, s: np.sum(fa.vmap(f)(x, s)), argnums=(0, 1))(x, s)
        tx = fa.jvp(lambda x: fa.vmap(f)(x, s), (x,), (np.ones_like(x),))[1]
    np.testing.assert_array_equal(got, finals)
    want_x = _per_example(fa.grad(f, argnums=0), x, s)
    want_s = _per_example(fa.grad(f, argnums=1), x, s)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gs)) and np.all(np.isfinite(tx))
    np.testing.assert_allclose(gx, want_x, rtol=1e-12)
    np.testing.assert_allclose(gs, want_s, rtol=1e-12)
    np.testing.assert_allclose(tx, want_x, rtol=1e-12)
    # a parameter every example shares: its gradient sums theirs, still finite
    g_shared = fa.grad(lambda s0: np.sum(fa.vmap(f, in_axes=(0, None))(x, s0)))(0.5)
    np.testing.assert_allclose(g_shared, np.sum(_per_example(
        lambda x: fa.grad(f, argnums=1)(x, 0.5), x)), rtol=1e-12)


# -- compiled ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_batched_loop_against_eager_and_retraced_when_the_counts_change(backend):
    a = np.array([4.0, 1.0, 100.0, 2.0, 1e6])
    jitted = fa.jit(fa.vmap(newton_sqrt), backend=backend)
    grad = fa.compile(lambda a: np.sum(fa.vmap(newton_sqrt)(a)), backend=backend)
    with _batched():
        for batch in (a, a[::-1] * 1e-2, np.full(5, 9.0), a):
            np.testing.assert_allclose(jitted(batch), fa.vmap(newton_sqrt)(batch), rtol=1e-14)
            np.testing.assert_allclose(grad(batch), _per_example(fa.grad(newton_sqrt), batch),
                                       rtol=1e-12)


@settings(max_examples=8, deadline=None)
@given(name=st.sampled_from(sorted(LOOPS)), size=st.integers(1, 5), data=st.data())
def test_compiled_on_generated_batches_against_eager(name, size, data):
    """The C VM (or the reference interpreter without it): values, gradients
    of the sum and per-example gradients, against eager."""
    f = LOOPS[name][0]
    a = _batch(data, name, size)
    with _batched():
        values = fa.jit(fa.vmap(f), backend=COMPILED)(a)
        grad = fa.compile(lambda a: np.sum(fa.vmap(f)(a)), backend=COMPILED)(a)
        grads = fa.jit(fa.vmap(fa.grad(f)), backend=COMPILED)(a)
        np.testing.assert_allclose(values, fa.vmap(f)(a), rtol=1e-14)
        want = fa.vmap(fa.grad(f))(a)
    np.testing.assert_allclose(grad, want, rtol=1e-12)
    np.testing.assert_allclose(grads, want, rtol=1e-12)


def test_vmap_of_a_jitted_loop_and_nested_vmap():
    a = np.array([[4.0, 1.0, 100.0], [2.0, 1e6, 0.3]])
    with _batched():
        got = fa.vmap(fa.jit(newton_cbrt, backend=COMPILED))(a[0])
        nested = fa.vmap(fa.vmap(newton_cbrt))(a)
        nested_grad = fa.grad(lambda a: np.sum(fa.vmap(fa.vmap(newton_cbrt))(a)))(a)
    np.testing.assert_allclose(got, _per_example(newton_cbrt, a[0]), rtol=1e-14)
    np.testing.assert_array_equal(nested, np.stack([_per_example(newton_cbrt, r) for r in a]))
    np.testing.assert_allclose(nested_grad, np.stack([_per_example(fa.grad(newton_cbrt), r)
                                                      for r in a]), rtol=1e-12)


def test_in_axes_a_batch_of_one_and_examples_that_take_no_step():
    def f(x, scale):
        return fa.while_loop(lambda c: np.max(c[0]) < 10.0,
                             lambda c: (c[0] * scale + 0.5, c[1] + np.sum(c[0])), (x, 0.0))
    x = np.array([[1.0, 20.0, 3.0], [0.5, 11.0, 9.9]])
    with _batched():
        got = fa.vmap(f, in_axes=(1, None))(x, 1.5)
        one = fa.vmap(f, in_axes=(0, None))(x[:1, :1], 1.5)
        idle = fa.vmap(f, in_axes=(0, None))(np.array([[20.0], [30.0]]), 1.5)
    for k in range(3):
        for leaf, want in zip(got, f(x[:, k], 1.5)):
            np.testing.assert_array_equal(leaf[k], want)
    np.testing.assert_array_equal(one[0], [f(np.array([1.0]), 1.5)[0]])
    np.testing.assert_array_equal(idle[0], [[20.0], [30.0]])
    np.testing.assert_array_equal(idle[1], [0.0, 0.0])


def test_a_batch_whose_examples_agree_keeps_the_unmasked_loop():
    """Every example takes the recorded count: the batched loop is the plain
    batched scan (no masks), as fast as before; when they differ, the masked
    while loop."""
    def loops(tape):
        return [dict(i.params)["body"] for i in tape.instrs if i.prim == "loop"]
    same = fa.make_tape(fa.vmap(newton_sqrt))(np.array([4.0, 4.0, 4.0]))
    differ = fa.make_tape(fa.vmap(newton_sqrt))(np.array([4.0, 1e6, 0.5]))
    assert [b.is_while for b in loops(same)] == [False]
    assert True in [b.is_while for b in loops(differ)]
    compiled = fa.jit(fa.vmap(newton_sqrt), backend=COMPILED)
    compiled(np.array([4.0, 1e6, 0.5]))
    # the try at the first example's count is dead code there: optimized away
    assert [b.is_while for b in loops(compiled.tape)] == [True]


@SETTINGS
@given(name=st.sampled_from(sorted(LOOPS)), size=st.integers(1, 5), data=st.data())
def test_per_example_derivatives_of_a_while_loop_are_batched(name, size, data):
    """vmap(grad(f)), vmap(jacobian(f)) and vmap of a JVP: the derivative loops
    recorded with f's while loop run its first example's count, so vmap
    records again with that loop padded to the largest count (each step
    masked by the example's own condition), and batches that."""
    f = LOOPS[name][0]
    a = _batch(data, name, size)
    with _batched():
        grads = fa.vmap(fa.grad(f))(a)
        jacs = fa.vmap(fa.jacobian(f))(a)
        tangents = fa.vmap(lambda x: fa.jvp(f, (x,), (1.0,))[1])(a)
        # a compiled derivative called under vmap: vmap records its function
        jitted = fa.vmap(fa.jit(fa.grad(f), backend=COMPILED))(a)
        compiled = fa.vmap(fa.compile(f, backend=COMPILED))(a)
    want = _per_example(fa.grad(f), a)
    np.testing.assert_allclose(grads, want, rtol=1e-12)
    np.testing.assert_allclose(jacs, want, rtol=1e-12)
    np.testing.assert_allclose(tangents, want, rtol=1e-12)
    np.testing.assert_allclose(jitted, want, rtol=1e-12)
    np.testing.assert_allclose(compiled, want, rtol=1e-12)


def test_per_example_gradients_past_the_end_and_compiled():
    def f(x, s):
        return fa.while_loop(lambda c: c < 3.0,
                             lambda c: c * s + 1e-3 * np.exp(1e6 * (c - 3.0)), x)
    x = np.array([0.1, 2.9, 3.5, 0.5, 1.3])
    s = np.array([1.5, 1.3, 1.7, 1.25, 1.45])
    want = np.stack([fa.grad(f, argnums=(0, 1))(*xs) for xs in zip(x, s)], axis=1)
    jitted = fa.jit(fa.vmap(fa.grad(f, argnums=(0, 1))), backend=COMPILED)
    with _batched():
        got = fa.vmap(fa.grad(f, argnums=(0, 1)))(x, s)
        for batch in ((x, s), (x[::-1], s), (x, s)):  # a retrace when the counts change
            want_b = np.stack([fa.grad(f, argnums=(0, 1))(*xs) for xs in zip(*batch)], axis=1)
            np.testing.assert_allclose(np.array(jitted(*batch)), want_b, rtol=1e-12)
    assert np.all(np.isfinite(np.array(got)))
    np.testing.assert_allclose(np.array(got), want, rtol=1e-12)


def _two_loops(a):  # a second while loop fed by the first
    r = newton_sqrt(a)
    return fa.while_loop(lambda c: c < 50.0, lambda c: c * 1.3 + r, r * 0.1) * r


def _loop_in_a_scan(a):  # a while loop in a scan's body: one count per step and example
    def step(c, x):
        inner = fa.while_loop(lambda d: d < 5.0 + x, lambda d: d * 1.5 + 0.1, c * 0.1 + a)
        return c + inner, None
    return fa.scan(step, a * 0.0, np.array([0.0, 1.0, 2.0]))[0]


@pytest.mark.parametrize("g", [fa.grad(_two_loops), fa.hessian(newton_sqrt),
                               fa.hessian(_two_loops), _loop_in_a_scan, fa.grad(_loop_in_a_scan)],
                         ids=["grad two loops", "hessian", "hessian two loops", "loop in a scan",
                              "grad loop in a scan"])
def test_several_while_loops_second_order_and_loops_in_loops(g):
    """Each while loop whose examples differ is padded in turn (one more
    recording each), second-order derivative loops included."""
    a = np.array([0.3, 2.0, 40.0, 1e4, 7.0])
    with _batched():
        got = fa.vmap(g)(a)
    np.testing.assert_allclose(got, _per_example(g, a), rtol=1e-11)
