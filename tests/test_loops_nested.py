"""Generated programs of while_loop / fori_loop / scan nested 2-3 deep, with
data-dependent trip counts and carries of a few arrays, compiled on the C VM:
values against eager and against the NumPy reference backend, and the trace
count (a while loop's count is checked by a guard, so inputs that take the
same counts replay one trace; `test_one_trace_for_new_counts` records that
new counts still trace again)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.loops import fori_loop, scan, while_loop
from conftest import BACKENDS

N = 3
KINDS = ("while", "fori", "scan")


def _program(kinds, ops):
    """A function of x nesting one loop per entry of ``kinds`` (outermost
    first); each level carries (y, z), two arrays, and runs the next level in
    its body.  While loops stop on a data-dependent threshold."""
    def level(depth, y, z):
        if depth == len(kinds):
            a = fnp.tanh(y) * 0.8 + 0.1 * z if ops[0] else fnp.sin(y) * 0.7 + 0.2 * z
            return a, z * 0.9 + 0.05 * fnp.cos(a)
        kind = kinds[depth]
        if kind == "while":
            # the count depends on y's values: 0 to a few steps
            def cond(c):
                return fnp.sum(fnp.abs(c[0])) > 0.2 * N
            def body(c):
                a, b = level(depth + 1, c[0], c[1])
                return c[0] * 0.6 + 0.1 * a, b  # shrinks: a few steps
            return while_loop(cond, body, (y, z))
        if kind == "fori":
            return fori_loop(0, 2, lambda i, c: level(depth + 1, *c), (y, z))
        def step(c, xs):
            a, b = level(depth + 1, c[0] + xs, c[1])
            return (a, b), fnp.sum(a)
        (a, b), ys = scan(step, (y, z), fnp.stack([y * 0.1, z * 0.1]))
        return a + 0.01 * fnp.sum(ys), b
    def f(x):
        a, b = level(0, x, fnp.cos(x))
        return a + b
    return f


programs = st.tuples(st.lists(st.sampled_from(KINDS), min_size=2, max_size=3)
                     .filter(lambda ks: "while" in ks),
                     st.lists(st.booleans(), min_size=1, max_size=1),
                     st.integers(0, 2**31 - 1))


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@settings(max_examples=6, deadline=None)
@given(programs)
def test_nested_loops_on_the_vm(case):
    kinds, ops, seed = case
    f = _program(kinds, ops)
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0.5, 2.0, N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback off the VM would warn
        g = fa.jit(f, backend="c")
        ref = fa.jit(f, backend="numpy")
        for x in (x0, x0 * 1.5, x0 * 0.5, x0):
            want = np.asarray(f(x))
            np.testing.assert_allclose(g(x), want, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(ref(x), want, rtol=1e-12, atol=1e-14)
        # the repeated input replays its trace: at most one per distinct input
        assert 1 <= g._spec.traces <= 3
        assert g._spec.traces == ref._spec.traces
    # reverse mode through the nested loops, compiled, against central
    # differences in a random direction and against eager reverse mode
    h = fa.compile(lambda x: fnp.sum(f(x)), backend="c")
    v = rng.standard_normal(N)
    eps = 1e-6
    fd = (np.sum(f(x0 + eps * v)) - np.sum(f(x0 - eps * v))) / (2 * eps)
    val, grad = h.value_and_grad(x0)
    np.testing.assert_allclose(val, np.sum(f(x0)), rtol=1e-12)
    np.testing.assert_allclose(grad @ v, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, fa.grad(lambda x: fnp.sum(f(x)))(x0), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
def test_nested_loops_on_numba():
    f = _program(("while", "scan"), (False,))
    g = fa.jit(f, backend="numba")
    x0 = np.array([0.7, 1.3, 1.9])
    for x in (x0, x0):
        np.testing.assert_allclose(g(x), f(x), rtol=1e-12, atol=1e-14)
    assert g._spec.traces == 1


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@pytest.mark.xfail(strict=True, reason="a while loop's trip count is recorded and "
                   "checked by a guard: an input taking another count traces again")
def test_one_trace_for_new_counts():
    f = _program(("while", "fori"), (True,))
    g = fa.jit(f, backend="c")
    x = np.ones(N)
    for s in (1.0, 2.0, 4.0):
        g(x * s)
        np.testing.assert_allclose(g(x * s), f(x * s), rtol=1e-12)
    assert g._spec.traces == 1
