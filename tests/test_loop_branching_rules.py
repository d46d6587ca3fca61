"""Loops whose derivative step cannot be one body.

A loop's derivative is a loop of its body's VJP or JVP, traced once; when
that trace branches on a value (a guard: a custom rule written with a Python
``if``, an inner loop's derivative checking its integers), the derivative
loop runs as the Python loop it stands for, one replayed and differentiated
step at a time, in whatever trace is active, and in none for an eager
first-order gradient, whose rules compute on plain values.  Each step must
take the derivative of its own operands only: not pass it on to the stored
states they were read from (which gave zeros, or recursed into the forward
loop's derivative without end)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS


def _vjp_sin():
    """sin with a VJP that branches on its residual (the same derivative either way)."""
    @fa.custom_vjp
    def f(x):
        return fnp.sin(x)

    def fwd(x):
        return fnp.sin(x), x

    def bwd(x, g):
        if fnp.sum(x) > 0:
            return (g * fnp.cos(x),)
        return (g * fnp.cos(-x),)
    f.defvjp(fwd, bwd)
    return f


def _jvp_sin():
    """sin with a JVP that branches on its primal."""
    @fa.custom_jvp
    def f(x):
        return fnp.sin(x)

    @f.defjvp
    def rule(primals, tangents):
        (x,), (t,) = primals, tangents
        if fnp.sum(x) > 0:
            return f(x), fnp.cos(x) * t
        return f(x), fnp.cos(-x) * t
    return f


RULES = {"custom_vjp": _vjp_sin, "custom_jvp": _jvp_sin}


def _loops(sin, n, checkpoint):
    """The same recurrence c <- sin(c) * a + x_t through each loop form."""
    xs = np.linspace(-0.7, 0.9, n)

    def step(c, x, a):
        return sin(c) * a + x

    def by_scan(p):
        c, ys = fa.scan(lambda c, x: (step(c, x, p[0]), c * c), p[1:], xs,
                        checkpoint=checkpoint)
        return fnp.sum(c) + 0.5 * fnp.sum(ys)

    def by_fori(p):
        return fnp.sum(fa.fori_loop(0, n, lambda i, c: step(c, xs[i], p[0]), p[1:]))

    def by_while(p):
        k, c = fa.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, step(s[1], xs[s[0]], p[0])),
                             (0, p[1:]))
        return fnp.sum(c)

    def by_while_float(p):  # a float counter: a count read at run time in every mode
        k, c = fa.while_loop(lambda s: s[0] < n - 0.5,
                             lambda s: (s[0] + 1.0, step(s[1], 0.1 * s[0], p[0])), (0.0, p[1:]))
        return fnp.sum(c * c)

    def by_nested(p):  # the scan's derivative loops inside the outer loop's
        def outer(i, c):
            return fa.scan(lambda c, x: (step(c, x, p[0]), None), c, xs,
                           checkpoint=checkpoint)[0]
        return fnp.sum(fa.fori_loop(0, 2, outer, p[1:]))

    return {"scan": by_scan, "fori_loop": by_fori, "while_loop": by_while,
            "while_float": by_while_float, "nested": by_nested}


def _central(f, p, v, h=1e-6):
    return (f(p + h * v) - f(p - h * v)) / (2 * h)


@settings(max_examples=20, deadline=None)
@given(rule=st.sampled_from(sorted(RULES)),
       form=st.sampled_from(["scan", "fori_loop", "while_loop", "while_float", "nested"]),
       n=st.integers(1, 6), checkpoint=st.sampled_from([None, 2]),
       seed=st.integers(0, 2 ** 16))
def test_loops_of_rules_that_branch(rule, form, n, checkpoint, seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([[rng.uniform(0.5, 1.2)], rng.uniform(-1.0, 1.0, 3)])
    v = rng.standard_normal(p.size)
    f = _loops(RULES[rule](), n, checkpoint)[form]
    want = _central(lambda q: float(f(q)), p, v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # host calls, named by the backends
        if rule == "custom_vjp":  # reverse mode only
            runs = {"grad": fa.grad(f)(p) @ v}
            for backend in [b for b in BACKENDS if b != "numba"]:  # (compiles: slow)
                runs[backend] = fa.jit(fa.grad(f), backend=backend)(p) @ v
        else:
            runs = {"jvp": fa.jvp(f, (p,), (v,))[1], "grad": fa.grad(f)(p) @ v}
            for backend in [b for b in BACKENDS if b != "numba"]:
                runs[backend] = fa.jit(lambda q: fa.jvp(f, (q,), (v,))[1], backend=backend)(p)
            # differentiated again: the derivative loops' own derivatives
            hv = fa.hessian(f)(p) @ v
            want_hv = _central(lambda q: np.asarray(fa.grad(f)(q)), p, v, 1e-5)
            np.testing.assert_allclose(hv, want_hv, rtol=1e-5, atol=1e-6, err_msg=form)
    for name, got in runs.items():
        assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-8), (name, rule, form)


INTEGER_STEPS = {  # each passes 2**53 within the step, its result below it
    "lcg": lambda k: (k * 1103515245 + 12345) % 2 ** 31,
    "big_product": lambda k: (k * 2 ** 28 + 1) - k * 2 ** 28 + k % 7,
    "squared": lambda k: (k * k + 3) % 1000003 + 2 ** 30,
}


@pytest.mark.parametrize("checkpoint", [None, 2])
@pytest.mark.parametrize("name", sorted(INTEGER_STEPS))
def test_integers_of_unrolled_derivative_steps_stay_exact(name, checkpoint):
    """An integer carry whose steps pass 2**53 beside a float one, its loop's
    derivative unrolled (the custom rule branches): each step's integers are
    replayed in the compiled tape itself, outside any loop, where the
    compiled backends' float64 words would round them; they run as host
    calls, in int64 (the gradient was off by the float64 rounding)."""
    sin, update = _vjp_sin(), INTEGER_STEPS[name]

    def f(x):
        def body(state, _):
            k, c = state
            k = update(k)
            u = (k % 1000) / 1000.0
            return (k, sin(c) + u), c[0] * u
        (k, c), ys = fa.scan(body, (np.int64(7), x), None, length=4, checkpoint=checkpoint)
        return fnp.sum(c) + fnp.sum(ys)

    x = np.array([0.3, -0.5, 0.8])
    v = np.random.default_rng(len(name)).standard_normal(3)
    want = _central(lambda q: float(f(q)), x, v)
    eager = fa.grad(f)(x)
    assert float(eager @ v) == pytest.approx(want, rel=1e-6, abs=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for backend in [b for b in BACKENDS if b != "numba" or checkpoint is None]:
            np.testing.assert_allclose(fa.jit(fa.grad(f), backend=backend)(x), eager,
                                       rtol=1e-12, err_msg=backend)
