"""An eager gradient's data arguments (the ones not differentiated) are read
in place: the function is lent read-only views of them, so neither the trace
nor its sweep copies them.  A function that writes into one is traced again
with the argument itself, and gets the gradient of what it read, as one that
writes into a captured array does.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.api import gradient_of_scalar, record

N = 6

# one step of a generated function: read the argument A, the captured array B
# or the tuple argument's first array, or write a value into A or B
STEPS = st.lists(st.tuples(st.sampled_from(["read A", "read B", "read T", "write A",
                                            "write B"]),
                           st.integers(0, N - 1), st.floats(-2.0, 2.0)),
                 min_size=1, max_size=8)


def _program(steps, B):
    def f(x, A, pair):
        total = 0.0
        for k, (what, i, v) in enumerate(steps):
            if what == "read A":
                total = total + np.sum(A * np.sin(x)) * (k + 1)
            elif what == "read B":
                total = total + np.sum(B * x * x)
            elif what == "read T":
                total = total + np.sum(pair[0] @ np.tanh(x)) * pair[1]
            elif what == "write A":
                A[i] = v
            else:
                B[i] = v
        return total
    return f


def _central_differences(f, x, state, h=1e-6):
    """f's gradient by central differences, each evaluation from ``state``
    (the arrays f writes into, restored before each call)."""
    def at(z):
        for array, start in state:
            array[...] = start
        return f(z)
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (at(x + e) - at(x - e)) / (2 * h)
    return g


@settings(max_examples=40, deadline=None)
@given(steps=STEPS, seed=st.integers(0, 2 ** 16))
def test_writes_into_data_and_captured_arrays_between_reads(steps, seed):
    rng = np.random.default_rng(seed)
    A, B, P = rng.normal(size=N), rng.normal(size=N), rng.normal(size=(3, N))
    f = _program(steps, B)
    x = rng.normal(size=N)
    start = [(A, A.copy()), (B, B.copy())]

    def plain(z):
        return f(z, A, (P, 0.5))
    want = _central_differences(plain, x, start)
    after_plain = A.copy(), B.copy()
    for array, value in start:
        array[...] = value
    g = fa.grad(f)
    got = g(x, A, (P, 0.5))  # watched: copies, and finds whether f writes into A
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the function's writes land in the caller's arrays, as in a plain call
    np.testing.assert_array_equal(A, after_plain[0])
    np.testing.assert_array_equal(B, after_plain[1])
    assert A.flags.writeable and B.flags.writeable
    for array, value in start:
        array[...] = value
    np.testing.assert_allclose(g(x, A, (P, 0.5)), want, rtol=1e-6, atol=1e-6)  # lent if not
    np.testing.assert_array_equal(A, after_plain[0])


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 8), seed=st.integers(0, 2 ** 16))
def test_data_arguments_are_read_in_place_with_the_same_bits(rows, cols, seed):
    """The sweep reads the caller's memory (no copy), and the gradient is bit
    for bit the one of a trace that copies the data (data in a list, which
    is not lent)."""
    rng = np.random.default_rng(seed)
    X, y, w = rng.normal(size=(rows, cols)), np.sign(rng.normal(size=rows)), rng.normal(size=cols)

    def loss(w, X, y):
        return np.mean(np.log(1.0 + np.exp(-(y * (X @ w))))) + 1e-3 * np.sum(w ** 2)

    rec, _ = record(loss, [w, X, y], (0,), drop_unread=True, lends=True)
    consts = [v for v in rec.builder.tape.consts.values() if isinstance(v, np.ndarray)]
    assert any(np.shares_memory(v, X) for v in consts)
    assert any(np.shares_memory(v, y) for v in consts)
    rec2, _ = record(loss, [w, X, y], (0,), drop_unread=True, lends=False)
    assert not any(np.shares_memory(v, X) for v in rec2.builder.tape.consts.values()
                   if isinstance(v, np.ndarray))
    g = fa.grad(loss)
    g(w, X, y)  # watched
    lent = g(w, X, y)
    copied = fa.grad(lambda w, data: loss(w, *data))(w, [X, y])
    np.testing.assert_array_equal(lent, copied)
    assert X.flags.writeable and y.flags.writeable


def test_a_function_writing_into_its_data_is_not_lent_it():
    """Its first call is watched (traced copying), finds the write, and no
    later call is lent the array."""
    calls = []

    def f(x, A):
        calls.append(1)
        s = np.sum(A * x)
        A *= 2.0
        return s + np.sum(A * x * x)

    A, x = np.arange(1.0, 4.0), np.array([0.5, -1.0, 2.0])
    g = fa.grad(f)
    for k in range(3):
        start = A.copy()
        np.testing.assert_allclose(g(x, A), start + 2 * 2 * start * x)
        np.testing.assert_array_equal(A, 2 * start)  # written once
        assert len(calls) == k + 1


def test_a_write_that_comes_later_traces_that_call_again():
    """The first call does not write, so later calls are lent the data; the
    call that writes stops at the write and is traced again with the array."""
    calls = []

    def f(x, A, when):
        calls.append(1)
        s = np.sum(A * np.sin(x))
        if when:
            A[0] = -A[0]
        return s + np.sum(A * x)

    A, x = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    g = fa.grad(f)
    np.testing.assert_allclose(g(x, A, False), A * np.cos(x) + A)
    np.testing.assert_allclose(g(x, A, False), A * np.cos(x) + A)
    assert len(calls) == 2
    start = A.copy()
    flipped = start * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(g(x, A, True), start * np.cos(x) + flipped)
    np.testing.assert_array_equal(A, flipped)  # written once
    assert len(calls) == 4  # stopped at the write into the lent view, traced again
    g(x, A, False)
    assert len(calls) == 5  # not lent any more: one trace per call


def test_aux_returns_the_callers_data_argument():
    X = np.linspace(0.0, 1.0, 5)

    def f(x, X):
        return np.sum(X * x), X

    grad_f = fa.grad(f, has_aux=True)
    for _ in range(2):  # watched, then lent
        g, aux = grad_f(np.ones(5), X)
        assert aux is X
    np.testing.assert_array_equal(g, X)


def test_read_only_errors_of_the_functions_own_arrays_are_raised():
    frozen = np.zeros(3)
    frozen.flags.writeable = False

    def f(x, A):
        frozen[0] = 1.0
        return np.sum(A * x)

    try:
        fa.grad(f)(np.ones(3), np.ones(3))
    except ValueError as exc:
        assert "read-only" in str(exc)
    else:
        raise AssertionError("a write into a read-only array was not refused")


def test_plain_sweep_of_a_lent_argument_gives_the_recorded_sweeps_gradient():
    """Nested (the gradient is traced by an enclosing gradient) nothing is
    lent; the two agree with the eager gradient of the same function."""
    rng = np.random.default_rng(0)
    X, w = rng.normal(size=(7, 3)), rng.normal(size=3)

    def loss(w, X):
        return np.sum(np.tanh(X @ w) ** 2)

    _, grads = record(loss, [w, X], (0,),
                        lambda r: gradient_of_scalar(r, "grad", once=True),
                        drop_unread=True, lends=True)
    np.testing.assert_array_equal(grads[1], fa.grad(loss)(w, X))
    hvp = fa.grad(lambda w: np.sum(fa.grad(loss)(w, X) * w))(w)
    h = 1e-6
    fd = np.array([(np.sum(fa.grad(loss)(w + e, X) * (w + e))
                    - np.sum(fa.grad(loss)(w - e, X) * (w - e))) / (2 * h)
                   for e in np.eye(3) * h])
    np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-6)


FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.nan, np.inf, -np.inf])


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), data=st.data())
def test_plain_tie_weights_are_the_general_rules_bits(shape, data):
    """maximum's and minimum's plain-sweep adjoint (`elementwise._tied`) is
    bit for bit ``g * _tie_weight(x, y)`` computed by NumPy, with ties, NaN,
    signed zeros and broadcasting."""
    from fastad.primitives.elementwise import _tie_weight, _tied
    size = int(np.prod(shape))
    x = np.array(data.draw(st.lists(FLOATS, min_size=size, max_size=size)),
                 dtype=np.float64).reshape(shape)
    y = data.draw(st.one_of(FLOATS, st.just(x[..., :1].copy() if shape else x.copy())))
    g = np.array(data.draw(st.lists(st.floats(-3, 3) | FLOATS, min_size=size, max_size=size)),
                 dtype=np.float64).reshape(shape)
    for a, b in ((x, y), (y, x)):
        want = g * np.where(np.greater(a, b), 1.0, np.where(np.equal(a, b), 0.5, 0.0))
        got = _tied(g, a, b)
        assert np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(np.asarray(got).view(np.uint64),
                                      np.asarray(want).view(np.uint64))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(g * _tie_weight(a, b)))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), data=st.data())
def test_plain_extremum_adjoint_is_the_general_rules_bits(shape, data):
    """max's and min's plain-sweep adjoint is bit for bit the general rule's
    (broadcasts materialized) on generated shapes and axes, with ties."""
    from fastad.primitives.structural import _extremum_vjp
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    keepdims = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.integers(-2, 3, shape).astype(np.float64)
    for reduce in (np.max, np.min):
        ans = reduce(x, axis=axes, keepdims=keepdims)
        g = np.asarray(rng.standard_normal(np.shape(ans)))
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        hit = (x == np.broadcast_to(np.reshape(ans, kept), shape)).astype(np.float64)
        want = np.broadcast_to(g.reshape(kept), shape) * hit / hit.sum(axis=axes, keepdims=True)
        got = _extremum_vjp(g, ans, x, axes, keepdims)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    # and the eager gradient through it against central differences away from ties
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7.0
    f = lambda x: np.sum(np.sin(np.max(x, axis=axes, keepdims=keepdims)))
    h, fd = 1e-6, np.zeros(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        fd[i] = (f(x + e.reshape(shape)) - f(x - e.reshape(shape))) / (2 * h)
    np.testing.assert_allclose(fa.grad(f)(x).ravel(), fd, rtol=1e-6, atol=1e-8)
