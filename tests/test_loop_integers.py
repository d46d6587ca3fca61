"""Integer carries of fastad.scan, fori_loop and while_loop, compiled: the
values NumPy's int64 gives, on every backend, with trip counts fixed and
read at run time, carries started from constants and from arguments.

A compiled loop holds integers as float64 words, exact below 2**53; a step
may pass 2**53 where its result does not (a linear congruential generator's
``c * 1103515245 % 2**31``, ``(c * 2**40 + 1) - c * 2**40``), and bitwise
operators of integer carries are integers, never the masks' logic."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS

#: one step of an integer carry pair (a, b) and a scanned integer x: each
#: keeps magnitudes within about 2**33, so no product leaves int64 (NumPy's
#: wrap-around is not what is asked here), while some steps pass 2**53
STEPS = {
    "lcg": lambda a, b, x: (a * 1103515245 + 12345) % 2147483648,
    "big_product": lambda a, b, x: (a * 2 ** 28 + 1) - a * 2 ** 28 + x,
    "xor": lambda a, b, x: a ^ b,
    "and": lambda a, b, x: (a & 255) + x,
    "or": lambda a, b, x: a | (b & 7),
    "shift": lambda a, b, x: ((a & 65535) << 2) >> 1,
    "invert": lambda a, b, x: ~a,
    "sum": lambda a, b, x: (a + b) % 1000003,
    "floordiv": lambda a, b, x: a // 3 + x,
    "remainder": lambda a, b, x: (a % 100003) * (b % 100003) * 977 % 1009,
    "clip": lambda a, b, x: np.clip(a - b, -1000, 1000),
    "where": lambda a, b, x: np.where(a > b, a - x, b + x),
}


def _reference(first, second, a, b, xs):
    """The loop as NumPy runs it, in int64."""
    a, b = np.int64(a), np.int64(b)
    ys = []
    for x in xs:
        a, b = np.int64(STEPS[first](a, b, x)), np.int64(STEPS[second](b, a, x))
        ys.append(a - b)
    return (a, b), np.array(ys, np.int64)


def _scan(first, second):
    def body(carry, x):
        a, b = carry
        a2 = STEPS[first](a, b, x)
        b2 = STEPS[second](b, a, x)
        return (a2, b2), a2 - b2
    return body


@settings(max_examples=30, deadline=None)
@given(first=st.sampled_from(sorted(STEPS)), second=st.sampled_from(sorted(STEPS)),
       a=st.integers(-10 ** 6, 10 ** 6), b=st.integers(-10 ** 6, 10 ** 6),
       n=st.integers(0, 9), as_argument=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_integer_carries_compute_as_numpys_int64(first, second, a, b, n, as_argument, seed):
    xs = np.random.default_rng(seed).integers(-50, 50, size=n)
    want_carry, want_ys = _reference(first, second, a, b, xs)
    body = _scan(first, second)
    init = (np.int64(a), np.int64(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # host calls, named by the backends
        eager = fa.scan(body, init, xs)
        runs = {"eager": eager}
        for backend in [b for b in BACKENDS if b != "numba"]:  # (compiles: the next test)
            if as_argument:  # carries from arguments (integer data)
                f = fa.jit(lambda c, X: fa.scan(body, c, X), backend=backend)
                runs[backend] = f(init, xs)
            else:  # carries from constants (plain integer values in the body)
                f = fa.jit(lambda X: fa.scan(body, init, X), backend=backend)
                runs[backend] = f(xs)
    for name, (carry, ys) in runs.items():
        assert [int(v) for v in carry] == [int(v) for v in want_carry], (name, first, second)
        assert np.asarray(ys).dtype == np.int64, name
        assert np.array_equal(ys, want_ys), (name, first, second)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step", ["lcg", "big_product", "xor", "remainder"])
def test_integer_carries_with_trip_counts_read_at_run_time(backend, step):
    """fori_loop and while_loop with a traced trip count keep their loop; its
    integer steps are int64's."""
    def body(i, c):
        return STEPS[step](c, c ^ 5, i)

    def numpy_loop(c, n):
        c = np.int64(c)
        for i in range(n):
            c = np.int64(body(np.int64(i), c))
        return c

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fori = fa.jit(lambda c, n: fa.fori_loop(0, n, body, c), backend=backend)
        counted = fa.jit(lambda c, n: fa.while_loop(
            lambda s: s[0] < n, lambda s: (s[0] + 1, body(s[0], s[1])), (0, c))[1],
            backend=backend)
        for c, n in [(123456789, 6), (10 ** 5, 4), (-77, 0), (3, 9)]:
            want = numpy_loop(c, n)
            assert int(fori(np.int64(c), n)) == int(want), (c, n)
            assert int(counted(np.int64(c), n)) == int(want), (c, n)
            const = fa.jit(lambda n: fa.fori_loop(0, n, body, np.int64(c)), backend=backend)
            assert int(const(n)) == int(want), (c, n)


def _float_step(a2, w, theta, sin=np.sin):
    """A float carry driven by the integer state: its derivative in theta
    depends on every integer step being int64's."""
    return sin(w) * (1.0 + (a2 % 7) / 10.0) + theta * ((a2 % 101) / 101.0)


def _dual_reference(first, second, a, b, xs, theta):
    """(w, dw/dtheta, d2w/dtheta2) after the loop, forward mode by hand in
    NumPy's int64."""
    a, b, w, dw, d2w = np.int64(a), np.int64(b), 0.5, 0.0, 0.0
    for x in xs:
        a, b = np.int64(STEPS[first](a, b, x)), np.int64(STEPS[second](b, a, x))
        r, s = 1.0 + (a % 7) / 10.0, (a % 101) / 101.0
        w, dw, d2w = (np.sin(w) * r + theta * s, np.cos(w) * dw * r + s,
                      (np.cos(w) * d2w - np.sin(w) * dw * dw) * r)
    return w, dw, d2w


@settings(max_examples=30, deadline=None)
@given(first=st.sampled_from(sorted(STEPS)), second=st.sampled_from(sorted(STEPS)),
       a=st.integers(-10 ** 6, 10 ** 6), b=st.integers(-10 ** 6, 10 ** 6),
       n=st.sampled_from([0, 1, 2, 5, 9, 70]), checkpoint=st.sampled_from([None, 2, 3]),
       seed=st.integers(0, 2 ** 16))
def test_derivatives_through_integer_carries(first, second, a, b, n, checkpoint, seed):
    """grad, jvp and hessian of a float carry driven by integer carries, through
    scan (stored and recomputed states) and a while loop of run-time count, eager
    and compiled: the derivative of NumPy's int64 loop (the derivative loops
    compute the integers in int64 too, never in float64 words)."""
    xs = np.random.default_rng(seed).integers(-50, 50, size=n)
    theta = 0.3
    want, dwant, d2want = _dual_reference(first, second, a, b, xs, theta)

    def by_scan(t):
        def body(c, x):
            u, v, w = c
            u2, v2 = STEPS[first](u, v, x), STEPS[second](v, u, x)
            return (u2, v2, _float_step(u2, w, t, fa.numpy.sin)), None
        return fa.scan(body, (np.int64(a), np.int64(b), 0.5), xs, checkpoint=checkpoint)[0][2]

    def by_while(t):
        def body(c):
            k, u, v, w = c
            x = fa.numpy.asarray(xs)[k] if n else 0
            u2, v2 = STEPS[first](u, v, x), STEPS[second](v, u, x)
            return k + 1, u2, v2, _float_step(u2, w, t, fa.numpy.sin)
        return fa.while_loop(lambda c: c[0] < n, body, (0, np.int64(a), np.int64(b), 0.5))[3]

    def by_nested(t):  # the scan in a loop: its derivative loops inside the outer's
        def inner(c, x):
            u, v, w = c
            u2, v2 = STEPS[first](u, v, x), STEPS[second](v, u, x)
            return (u2, v2, _float_step(u2, w, t, fa.numpy.sin)), None
        return fa.fori_loop(0, 2, lambda i, c: fa.scan(inner, c, xs, checkpoint=checkpoint)[0],
                            (np.int64(a), np.int64(b), 0.5))[2]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for f in (by_scan, by_while, by_nested):
            if f is by_nested:
                want, dwant, d2want = _dual_reference(first, second, a, b, np.tile(xs, 2), theta)
            runs = {"grad": fa.grad(f)(theta), "jvp": fa.jvp(f, (theta,), (1.0,))[1]}
            for backend in [b for b in BACKENDS if b != "numba"]:  # (compiles: slow)
                runs[backend] = fa.compile(f, backend=backend)(theta)
            assert float(f(theta)) == pytest.approx(want, rel=1e-12, abs=1e-12)
            for name, got in runs.items():
                assert float(got) == pytest.approx(dwant, rel=1e-9, abs=1e-12), \
                    (f.__name__, name, first, second)
            # the second derivative: the derivative loops differentiated again
            assert float(fa.hessian(f)(theta)) == pytest.approx(d2want, rel=1e-8, abs=1e-11), \
                (f.__name__, "hessian", first, second)


COUNTER_BODIES = {
    "add": lambda i, c: c + i,
    "scaled": lambda i, c: c + i * 0.1,
    "product": lambda i, c: c * (i + 1),
    "square": lambda i, c: c + i * i,
    "shifted": lambda i, c: c - (i // 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.int16])
@pytest.mark.parametrize("name", sorted(COUNTER_BODIES))
def test_fori_loop_counter_is_weak_as_a_python_int(name, dtype):
    """fori_loop's counter promotes as the Python int of a plain loop (and
    JAX's weak int): a float32 or int32 carry keeps its dtype, eagerly and
    compiled, on every backend."""
    body = COUNTER_BODIES[name]
    init = np.asarray(3, dtype)[()]
    if np.dtype(dtype).kind == "f" or name != "scaled":
        want = init
        for i in range(0, 6):
            want = body(i, want)
    else:  # an integer carry plus a float: no loop keeps its dtype
        with pytest.raises(TypeError):
            fa.fori_loop(0, 6, body, init)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        runs = {"eager": fa.fori_loop(0, 6, body, init)}
        for backend in [b for b in BACKENDS if b != "numba"]:  # (a dtype rule of tracing)
            runs[backend] = fa.jit(lambda c: fa.fori_loop(0, 6, body, c), backend=backend)(init)
    for where, got in runs.items():
        assert np.asarray(got).dtype == np.asarray(want).dtype, (where, name)
        np.testing.assert_array_equal(got, want, err_msg=where)


def test_fori_loop_with_steps_past_2_to_the_53():
    """Steps beyond float64's exact integers stay plain Python ints."""
    assert fa.fori_loop(2 ** 53, 2 ** 53 + 3, lambda i, c: c + 1.5, 0.0) == 4.5
    assert fa.grad(lambda x: fa.fori_loop(2 ** 53, 2 ** 53 + 3, lambda i, c: c + x * x,
                                          0.0))(2.0) == 12.0


INTEGER_OUTPUTS = {  # a float carry's step returning integers
    "fori_counter": lambda c: fa.fori_loop(0, 3, lambda i, v: i, c),
    "fori_counter_product": lambda c: fa.fori_loop(1, 4, lambda i, v: i * 2 - 1, c),
    "scanned": lambda c: fa.scan(lambda v, x: (x, v), c, np.arange(3))[0],
    "scanned_sum": lambda c: fa.scan(lambda v, x: (x + 1, v), c, np.arange(4))[0],
    "while_counter": lambda c: fa.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[0]),
                                             (0, c))[1],
}


@pytest.mark.parametrize("dtype", [float, np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("name", sorted(INTEGER_OUTPUTS))
def test_a_float_carry_that_becomes_integers_is_refused(name, dtype):
    """As JAX: a carry keeps its dtype, and a float one given integers is a
    TypeError eagerly and compiled (it had returned the integers, of
    differing types in the two)."""
    loop = INTEGER_OUTPUTS[name]
    init = dtype(1.0)
    with pytest.raises(TypeError, match="carry output"):
        loop(init)
    for backend in [b for b in BACKENDS if b != "numba"]:
        with pytest.raises(TypeError, match="carry output"):
            fa.jit(loop, backend=backend)(init)
