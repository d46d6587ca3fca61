"""vmap of derivatives through loops whose trip count differs per example:
fori_loop with a batched bound, while_loop on a batched counter or on the
data, a while loop in a scan's body and loops nested in loops, under
vmap of grad, value_and_grad, jacrev and hessian, eager and compiled.

Any counts: 0, 1, equal, all different, the largest first or last, and
in particular a first example that takes no step (whose derivative loops
once ran no loop at all, so every example got the 0-step gradient).  The
results are compared with a Python loop of the transform over the examples
and with central finite differences of the per-example values.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

COMPILED = "c" if "c" in BACKENDS else "numpy"
COMPILING = [b for b in BACKENDS if b != "numpy"] or ["numpy"]


# -- the programs: f(p, n), p a parameter vector of 3, n the example's trip count ----------
def fori_affine(p, n):
    return fa.fori_loop(0, n, lambda i, c: c * p[0] + p[1], p[2])


def fori_sin(p, n):
    return fa.fori_loop(0, n, lambda i, c: fnp.sin(c) * p[0] + p[1] * c + 0.1 * i, p[2])


def fori_vector(p, n):  # a carry of two leaves, one a vector
    def step(i, c):
        v, s = c
        return v * p[0] + fnp.cos(s) * p[1], s + fnp.sum(v) * p[2]
    v, s = fa.fori_loop(0, n, step, (p[:2] * 1.0, p[2] * 0.5))
    return fnp.sum(v) + s


def while_counter(p, n):
    return fa.while_loop(lambda s: s[1] < n,
                         lambda s: (s[0] * p[0] + p[1], s[1] + 1), (p[2], 0))[0]


def while_on_data(p, n):
    """Counts from the data: x from 3.5 - n in steps of about 1 while below 3
    (n steps; the 0.5 keeps finite differences off the count's jumps)."""
    x0 = p[0] * 0.0 + (3.5 - n)
    return fa.while_loop(lambda s: s[0] < 3.0,
                         lambda s: (s[0] + 1.0 + 0.01 * p[0], s[1] * p[1] + p[2]),
                         (x0, p[2]))[1]


def while_in_scan(p, n):  # a while loop in a scan's body: a count per step and example
    def step(c, x):
        inner = fa.while_loop(lambda s: s[1] < n + x,
                              lambda s: (s[0] * p[0] + p[1], s[1] + 1.0), (c, 0.0))[0]
        return inner * 0.5 + p[2], None
    return fa.scan(step, p[2], np.array([0.0, 1.0]))[0]


def fori_nested(p, n):  # an inner loop of the example's count in an outer one
    def outer(i, c):
        return fa.fori_loop(0, n, lambda j, d: d * p[0] + p[1], c) * 0.5 + p[2]
    return fa.fori_loop(0, n, outer, p[2])


PROGRAMS = {f.__name__: f for f in (fori_affine, fori_sin, fori_vector, while_counter,
                                     while_on_data, while_in_scan, fori_nested)}
# a fori_loop whose bound is per example inside another: Python control flow
# that differs per example, which vmap evaluates one example at a time (right,
# with a warning); the others batch (a while loop in a scan's body included)
PER_EXAMPLE = {"fori_nested"}


def _value_and_grad(f):
    def both(p, n):
        v, g = fa.value_and_grad(f)(p, n)
        return fnp.concatenate([fnp.reshape(v, (1,)), g])
    return both


TRANSFORMS = {"grad": fa.grad, "value_and_grad": _value_and_grad, "jacrev": fa.jacrev,
              "hessian": fa.hessian}


@contextlib.contextmanager
def _no_fallback(name):
    """No warning at all (vmap's 'evaluated one example at a time' in
    particular) for the programs that batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if name in PER_EXAMPLE else "error")
        yield


def _per_example(g, P, N):
    return np.stack([np.asarray(g(p, int(n))) for p, n in zip(P, N)])


def _check(f, name, tname, P, N, how="eager", backend=None):
    g = TRANSFORMS[tname](f)
    want = _per_example(g, P, N)
    with _no_fallback(name):
        if how == "eager":
            got = fa.vmap(g)(P, N)
        elif how == "jit":
            got = fa.jit(fa.vmap(g), backend=backend)(P, N)
        else:  # a compiled derivative under vmap
            got = fa.vmap(fa.jit(g, backend=backend))(P, N)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12,
                               err_msg=f"{name} {tname} {how} {backend} counts {list(N)}")
    return want


def _central_fd(f, P, N, h=1e-6):
    """Each example's gradient by central differences of its value."""
    out = np.zeros_like(P)
    for k, (p, n) in enumerate(zip(P, N)):
        for j in range(p.size):
            d = np.zeros_like(p)
            d[j] = h * max(1.0, abs(p[j]))
            out[k, j] = (float(f(p + d, int(n))) - float(f(p - d, int(n)))) / (2 * d[j])
    return out


def _params(data, size):
    # |p0| < 1 keeps the recurrences bounded over a few steps
    rows = data.draw(st.lists(st.tuples(st.floats(-0.9, 0.9), st.floats(-1.0, 1.0),
                                        st.floats(-1.0, 1.0)), min_size=size, max_size=size))
    return np.array(rows, dtype=np.float64).reshape(size, 3)


# -- generated programs and batches ----------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(sorted(set(PROGRAMS) - PER_EXAMPLE)),
       tname=st.sampled_from(sorted(TRANSFORMS)), size=st.integers(1, 4), data=st.data())
def test_generated_batches_against_the_per_example_loop_and_central_differences(
        name, tname, size, data):
    f = PROGRAMS[name]
    counts = data.draw(st.lists(st.integers(0, 5), min_size=size, max_size=size))
    if data.draw(st.booleans()):  # often a first example that takes no step
        counts[0] = 0
    P, N = _params(data, size), np.array(counts)
    want = _check(f, name, tname, P, N)
    if tname == "grad":
        np.testing.assert_allclose(want, _central_fd(f, P, N), rtol=1e-5, atol=1e-7)


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(sorted(set(PROGRAMS) - PER_EXAMPLE)),
       tname=st.sampled_from(["grad", "hessian"]), size=st.integers(1, 4), data=st.data())
def test_generated_batches_compiled(name, tname, size, data):
    """jit(vmap(...)) on the C VM (the reference interpreter without it)."""
    f = PROGRAMS[name]
    counts = data.draw(st.lists(st.integers(0, 4), min_size=size, max_size=size))
    P, N = _params(data, size), np.array(counts)
    _check(f, name, tname, P, N, "jit", COMPILED)


# -- the orders of counts, on every backend ------------------------------------------
ORDERS = [[0, 3, 7], [7, 3, 0], [3, 0, 7], [0, 0, 0], [2, 2, 2], [1, 0, 4], [0, 1], [0]]


@pytest.mark.parametrize("counts", ORDERS, ids=[",".join(map(str, c)) for c in ORDERS])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_orders_of_counts_eager(name, counts):
    f = PROGRAMS[name]
    P = np.array([[0.4, 0.1, 0.8], [-0.4, 0.3, 0.5], [0.7, -0.1, 0.2]])[:len(counts)]
    N = np.array(counts)
    for tname in TRANSFORMS:
        want = _check(f, name, tname, P, N)
        if tname == "grad":
            np.testing.assert_allclose(want, _central_fd(f, P, N), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", COMPILING)
@pytest.mark.parametrize("name", ["fori_sin", "while_counter", "while_on_data"])
def test_first_example_without_a_step_compiled(backend, name):
    """The reported case on each compiling backend: jit(vmap(grad)),
    vmap(compile) and vmap(jit(grad)), with the 0 first, last and absent."""
    f = PROGRAMS[name]
    P = np.array([[0.4, 0.1, 0.8], [-0.4, 0.3, 0.5], [0.7, -0.1, 0.2]])
    jitted = fa.jit(fa.vmap(fa.grad(f)), backend=backend)
    compiled = fa.vmap(fa.compile(f, backend=backend))
    for counts in ([0, 3, 7], [7, 3, 0], [2, 4, 1], [0, 3, 7]):
        N = np.array(counts)
        want = _per_example(fa.grad(f), P, N)
        with _no_fallback(name):
            for got in (jitted(P, N), compiled(P, N)):
                np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
    _check(f, name, "grad", P, np.array([0, 2, 5]), "inner", backend)


def test_the_first_example_s_zero_steps_no_longer_decide():
    """The reported inputs: before, every example got [0, 0, 1]."""
    P = np.array([[0.4, 0.1, 0.8], [-0.4, 0.3, 0.5], [2.0, -0.1, 0.2]])
    N = np.array([0, 3, 7])
    for f in (fori_affine, while_counter):
        with _no_fallback(f.__name__):
            got = fa.vmap(fa.grad(f))(P, N)
        np.testing.assert_allclose(got, [[0.0, 0.0, 1.0], [0.3, 0.76, -0.064],
                                         [57.5, 127.0, 128.0]], rtol=1e-12, atol=1e-12)


# -- vector results: Jacobians ----------------------------------------------------------
def fori_vector_out(p, n):
    c = fa.fori_loop(0, n, lambda i, c: c * p[0] + p[1:], p[1:] * 1.0)
    return fnp.concatenate([c, fnp.reshape(fnp.sum(c * c), (1,))])


def while_vector_out(p, n):
    return fa.while_loop(lambda s: s[1] < n,
                         lambda s: (fnp.sin(s[0]) * p[0] + p[1:], s[1] + 1),
                         (p[1:] * 1.0, 0))[0]


@pytest.mark.parametrize("counts", [[0, 3, 7], [7, 0, 3], [0, 0, 1]])
@pytest.mark.parametrize("f", [fori_vector_out, while_vector_out],
                         ids=["fori_vector_out", "while_vector_out"])
def test_jacobians_of_vector_results(f, counts):
    P = np.array([[0.4, 0.1, 0.8], [-0.4, 0.3, 0.5], [0.7, -0.1, 0.2]])
    N = np.array(counts)
    for T in (fa.jacrev, fa.jacfwd, fa.jacobian):
        want = _per_example(T(f), P, N)
        with _no_fallback(f.__name__):
            for got in (fa.vmap(T(f))(P, N), fa.jit(fa.vmap(T(f)), backend=COMPILED)(P, N)):
                np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
    h = 1e-6
    for j in range(3):  # the per-example Jacobians' columns by central differences
        d = np.zeros(3)
        d[j] = h
        fd = (_per_example(f, P + d, N) - _per_example(f, P - d, N)) / (2 * h)
        np.testing.assert_allclose(want[:, :, j], fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("counts", [[[0, 3], [2, 0]], [[0, 0], [0, 4]], [[3, 0], [0, 0]]])
def test_nested_vmap(counts):
    """vmap of vmap(grad): a 0 first in the inner batches, the outer, or both."""
    def f(p, n):
        return fa.while_loop(lambda s: s[1] < n,
                             lambda s: (fnp.sin(s[0]) * p[0] + p[1], s[1] + 1), (p[2], 0))[0]
    P = np.random.default_rng(0).uniform(-0.9, 0.9, (2, 2, 3))
    N = np.array(counts)
    want = np.stack([_per_example(fa.grad(f), p, n) for p, n in zip(P, N)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (an outer vmap may go one example at a time)
        for g in (fa.vmap(fa.vmap(fa.grad(f))), fa.jit(fa.vmap(fa.vmap(fa.grad(f))),
                                                       backend=COMPILED)):
            np.testing.assert_allclose(np.asarray(g(P, N)), want, rtol=1e-10, atol=1e-12)
