"""Transforms compose with compiled functions, as ``jax.grad(jax.jit(f))`` does.

A jitted or compiled function called on traced values replays the tape it
cached for their signature (traced first if need be) into the enclosing
trace, so the enclosing transformation sees primitives.  The matrix below puts every outer transformation around
every inner compiled function of several functions; each composition is
compared with the same composition without jit/compile (eager), and the
first derivatives also with central finite differences in random
directions.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import BACKENDS

import fastad as fa
import fastad.numpy as fnp
from fastad.core import pytree
from fastad.core.errors import SignatureError

N = 4
_A = np.random.default_rng(7).normal(size=(N, N)) / 2

FUNCS = {
    "elementwise": lambda x: fnp.sum(fnp.sin(x) * fnp.exp(0.3 * x) + x ** 2),
    "reduction": lambda x: fnp.log(fnp.sum(fnp.exp(x))) + fnp.mean(x ** 3),
    "matmul": lambda x: fnp.sum(fnp.tanh(_A @ x)) + 0.1 * (x @ (_A @ x)),
    "slices": lambda x: fnp.sum(x[1:] * x[:-1]) + x[0] ** 3 - fnp.sum(x[::2] ** 2),
}


# Inner functions: (compiled, eager counterpart, whether it takes a batch of x).
def _inner(name: str, f, backend: str):
    if name == "jit":
        return fa.jit(f, backend=backend), f, False
    if name == "compile":
        return fa.compile(f, backend=backend), fa.grad(f), False
    if name == "grad":
        return fa.jit(fa.grad(f), backend=backend), fa.grad(f), False
    if name == "vmap":
        return fa.jit(fa.vmap(f), backend=backend), fa.vmap(f), True
    raise ValueError(name)


def _scalar(h):
    """A scalar function of h's output (h may return a scalar or an array)."""
    return lambda x: fnp.sum(fnp.cos(h(x)))


# Outer transformations: each takes the inner function and the backend, and
# returns a function of (x, v, ct) giving a pytree of arrays.
def _outer(name: str, h, backend: str):
    s = _scalar(h)
    return {
        "grad": lambda x, v, ct: fa.grad(s)(x),
        "value_and_grad": lambda x, v, ct: fa.value_and_grad(s)(x),
        "jvp": lambda x, v, ct: fa.jvp(h, (x,), (v,)),
        "vjp": lambda x, v, ct: _pulled(fa.vjp(h, x), ct),
        "vmap": lambda x, v, ct: fa.vmap(h)(np.stack([x, v, x + v])),
        "jacobian": lambda x, v, ct: fa.jacobian(h)(x),
        "hessian": lambda x, v, ct: fa.hessian(s)(x),
        "jit": lambda x, v, ct: fa.jit(h, backend=backend)(x),
        "compile": lambda x, v, ct: fa.compile(s, backend=backend)(x),
        "jit_grad": lambda x, v, ct: fa.jit(fa.grad(s), backend=backend)(x),
        "jit_jvp": lambda x, v, ct: fa.jit(lambda x, v: fa.jvp(h, (x,), (v,)),
                                           backend=backend)(x, v),
    }[name]


def _pulled(out_and_pull, ct):
    out, pull = out_and_pull
    return out, pull(ct)


OUTERS = ["grad", "value_and_grad", "jvp", "vjp", "vmap", "jacobian", "hessian", "jit",
          "compile", "jit_grad", "jit_jvp"]
INNERS = ["jit", "compile", "grad", "vmap"]


def _fd(fn, x, v, eps=1e-6):
    """The central finite difference of fn at x in direction v."""
    return (np.asarray(fn(x + eps * v)) - np.asarray(fn(x - eps * v))) / (2 * eps)


def _close(got, want, rtol=1e-9, atol=1e-11):
    gl, gt = pytree.flatten(got)
    wl, wt = pytree.flatten(want)
    assert gt == wt
    for g, w in zip(gl, wl):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def _inputs(batched: bool, seed: int):
    rng = np.random.default_rng(seed)
    shape = (2, N) if batched else (N,)
    return (rng.uniform(-1, 1, shape), rng.normal(size=shape), None)


def _first_derivatives_match_fd(outer: str, eager_h, x, v, result) -> None:
    """Outer first derivatives against central differences of the eager inner."""
    s = _scalar(eager_h)
    if outer in ("grad", "compile", "jit_grad"):
        g = result
    elif outer == "value_and_grad":
        g = result[1]
    elif outer in ("jvp", "jit_jvp"):
        np.testing.assert_allclose(result[1], _fd(eager_h, x, v), rtol=1e-5, atol=1e-6)
        return
    elif outer == "vjp":
        _, pulled = result
        (ct_x,) = pulled
        ct = np.ones(np.shape(result[0]))
        np.testing.assert_allclose(np.sum(ct_x * v), np.sum(ct * _fd(eager_h, x, v)),
                                   rtol=1e-5, atol=1e-6)
        return
    elif outer == "jacobian":
        out_shape = np.shape(eager_h(x))
        jv = np.tensordot(result, v, axes=v.ndim).reshape(out_shape)
        np.testing.assert_allclose(jv, _fd(eager_h, x, v), rtol=1e-5, atol=1e-6)
        return
    else:
        return
    np.testing.assert_allclose(np.sum(g * v), _fd(s, x, v), rtol=1e-5, atol=1e-6)


def _run(outer: str, inner: str, fname: str, backend: str, seed: int = 0):
    f = FUNCS[fname]
    h, eager_h, batched = _inner(inner, f, backend)
    x, v, _ = _inputs(batched, seed)
    ct = np.ones(np.shape(eager_h(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host-call notes of the reference backend
        got = _outer(outer, h, backend)(x, v, ct)
        want = _outer(outer, eager_h, "numpy")(x, v, ct)
    if outer == "vjp":
        got, want = (got[0], got[1]), (want[0], want[1])
    _close(got, want)
    _first_derivatives_match_fd(outer, eager_h, x, v, want)
    return got


MATRIX_BACKENDS = [b for b in ("numpy", "c") if b in BACKENDS]


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
@pytest.mark.parametrize("fname", sorted(FUNCS))
@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("outer", OUTERS)
def test_outer_of_inner(outer, inner, fname, backend):
    _run(outer, inner, fname, backend)


@pytest.mark.skipif("numba" not in BACKENDS, reason="Numba is not installed")
@pytest.mark.parametrize("outer,inner", [("grad", "jit"), ("jit_grad", "compile"),
                                         ("vmap", "grad")])
def test_outer_of_inner_numba(outer, inner):
    _run(outer, inner, "matmul", "numba", seed=3)


# -- higher orders -------------------------------------------------------------------

def _f3(s):
    return fnp.sin(s) ** 3 + fnp.exp(0.5 * s) * s


def _d3(s):
    """The third derivative of _f3, by hand."""
    sin, cos = np.sin(s), np.cos(s)
    return 6 * cos ** 3 - 21 * sin ** 2 * cos + np.exp(0.5 * s) * (0.125 * s + 0.75)


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_third_order_through_jit(backend):
    s = 0.37
    want = fa.grad(fa.grad(fa.grad(_f3)))(s)
    np.testing.assert_allclose(want, _d3(s), rtol=1e-12)
    jf = fa.jit(_f3, backend=backend)
    for got in (fa.grad(fa.grad(fa.grad(jf)))(s),
                fa.grad(fa.grad(fa.compile(_f3, backend=backend)))(s),
                fa.grad(fa.jit(fa.grad(fa.grad(jf)), backend=backend))(s),
                fa.jit(fa.grad(fa.grad(fa.grad(jf))), backend=backend)(s),
                fa.compile(fa.grad(fa.compile(_f3, backend=backend)), backend=backend)(s),
                fa.jvp(fa.grad(fa.jit(fa.grad(jf), backend=backend)), (s,), (1.0,))[1]):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    # and the second derivative against central differences of the first
    d2 = fa.grad(fa.grad(jf))(s)
    eps = 1e-6
    np.testing.assert_allclose(d2, (fa.grad(_f3)(s + eps) - fa.grad(_f3)(s - eps)) / (2 * eps),
                               rtol=1e-6)


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
@pytest.mark.parametrize("fname", ["matmul", "slices"])
def test_hessian_of_hessian_direction(fname, backend):
    """Third order on a vector function: the Hessian's derivative in a direction."""
    f = FUNCS[fname]
    x, v, _ = _inputs(False, 1)
    jf = fa.jit(f, backend=backend)
    got = fa.jvp(lambda y: fa.hessian(jf)(y), (x,), (v,))[1]
    want = fa.jvp(lambda y: fa.hessian(f)(y), (x,), (v,))[1]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


# -- compiled gradients inside other traced functions ---------------------------------

@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_loss_using_compiled_gradient(backend):
    """A loss that calls a compiled gradient, differentiated and compiled itself."""
    f = FUNCS["matmul"]
    g = fa.compile(f, backend=backend)

    def loss_using(grad_fn, w):
        return fnp.sum(grad_fn(w) ** 2) + f(w)

    x, v, _ = _inputs(False, 2)
    want_value = loss_using(fa.grad(f), x)
    want = fa.grad(lambda w: loss_using(fa.grad(f), w))(x)
    np.testing.assert_allclose(loss_using(g, x), want_value, rtol=1e-12)
    np.testing.assert_allclose(fa.grad(lambda w: loss_using(g, w))(x), want, rtol=1e-10)
    outer = fa.compile(lambda w: loss_using(g, w), backend=backend)
    np.testing.assert_allclose(outer(x), want, rtol=1e-10)
    np.testing.assert_allclose(outer(x + 0.1), fa.grad(lambda w: loss_using(fa.grad(f), w))(
        x + 0.1), rtol=1e-10)
    fd = _fd(lambda w: loss_using(fa.grad(f), w), x, v)
    np.testing.assert_allclose(np.sum(want * v), fd, rtol=1e-5)
    # the compiled gradient still runs compiled on arrays after being inlined
    np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)
    assert g.cache_info()["traces"] == 1


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_compiled_methods_inline(backend):
    """value_and_grad, value, hvp, hessian and batch of a compiled gradient, traced."""
    f = FUNCS["elementwise"]
    g = fa.compile(f, backend=backend)
    x, v, _ = _inputs(False, 4)
    X = np.stack([x, v])
    cases = [
        (lambda w: g.value_and_grad(w)[0] + fnp.sum(g.value_and_grad(w)[1]),
         lambda w: fa.value_and_grad(f)(w)[0] + fnp.sum(fa.grad(f)(w))),
        (lambda w: g.value(w), f),
        (lambda w: fnp.sum(g.hvp(w, v) ** 2), lambda w: fnp.sum(fa.hvp(f)(w, v) ** 2)),
        (lambda w: fnp.sum(fnp.sin(g.hessian(w))), lambda w: fnp.sum(fnp.sin(fa.hessian(f)(w)))),
        (lambda w: fnp.sum(g.batch(w * X) ** 2),
         lambda w: fnp.sum(fa.vmap(fa.grad(f))(w * X) ** 2)),
    ]
    for compiled, eager in cases:
        want = fa.grad(eager)(x)
        np.testing.assert_allclose(fa.grad(compiled)(x), want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fa.jit(fa.grad(compiled), backend=backend)(x), want,
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.sum(want * v), _fd(eager, x, v), rtol=1e-5, atol=1e-6)
    jf = fa.jit(f, backend=backend)
    np.testing.assert_allclose(fa.grad(lambda w: fnp.sum(jf.batch(w * X)))(x),
                               fa.grad(lambda w: fnp.sum(fa.vmap(f)(w * X)))(x), rtol=1e-10)


# -- static and keyword arguments of an inlined call ------------------------------------

def _scaled(w, scale=1.0, mode="sin", power=2):
    base = fnp.sin(w) if mode == "sin" else fnp.cos(w)
    return fnp.sum(base ** power) * scale


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_static_and_keyword_arguments_inline(backend):
    x, v, _ = _inputs(False, 5)
    j = fa.jit(_scaled, static_argnums=(2,), static_argnames=("power",), backend=backend)
    g = fa.compile(_scaled, static_argnames="mode", backend=backend)

    def uses(jf, gf):
        return lambda w: (jf(w, 2.0, "cos", power=3) + jf(w, scale=w[0], power=1)
                          + fnp.sum(gf(w, scale=w[1] ** 2, mode="cos") * w))

    eager = uses(_scaled, lambda w, **kw: fa.grad(_scaled)(w, **kw))
    compiled = uses(j, g)
    np.testing.assert_allclose(compiled(x), eager(x), rtol=1e-12)
    want = fa.grad(eager)(x)
    np.testing.assert_allclose(fa.grad(compiled)(x), want, rtol=1e-10)
    np.testing.assert_allclose(fa.compile(compiled, backend=backend)(x), want, rtol=1e-10)
    np.testing.assert_allclose(np.sum(want * v), _fd(eager, x, v), rtol=1e-5)
    np.testing.assert_allclose(fa.vmap(compiled)(np.stack([x, v])),
                               [eager(x), eager(v)], rtol=1e-12)


def test_loaded_function_replays_its_saved_signatures():
    f = FUNCS["elementwise"]
    g = fa.compile(f, backend="numpy")
    x = np.linspace(0.1, 0.4, N)
    g(x)
    loaded = fa.loads(fa.dumps(g))
    np.testing.assert_allclose(loaded(x), g(x))
    want = fa.grad(lambda w: fnp.sum(fa.grad(f)(w) ** 2))(x)
    np.testing.assert_allclose(fa.grad(lambda w: fnp.sum(loaded(w) ** 2))(x), want, rtol=1e-10)
    np.testing.assert_allclose(fa.jit(fa.grad(lambda w: fnp.sum(loaded(w) ** 2)),
                                      backend="c" if "c" in BACKENDS else "numpy")(x + 1),
                               fa.grad(lambda w: fnp.sum(fa.grad(f)(w) ** 2))(x + 1), rtol=1e-10)
    with pytest.raises(SignatureError, match="saved with"):
        fa.grad(lambda w: fnp.sum(loaded(w)))(np.ones(N + 1))


def test_traced_call_replays_the_cached_tape():
    """On traced values the compiled function's tape is replayed: the Python
    function runs once (the trace), not on every call of the outer transform."""
    calls = []

    def f(x):
        calls.append(1)
        return fnp.sum(x ** 2)

    jf = fa.jit(f, backend="numpy")
    x = np.arange(3.0)
    np.testing.assert_allclose(fa.grad(jf)(x), 2 * x)
    np.testing.assert_allclose(fa.grad(jf)(x + 1), 2 * (x + 1))
    np.testing.assert_allclose(jf(x), 5.0)  # the same trace runs on arrays
    assert jf.cache_info()["traces"] == 1
    assert len(calls) == 1


def _loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + fnp.sin(x[i]) * x[i + 1]
    return s


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_replayed_loop_is_the_rerolled_tape(backend):
    """A Python loop is rerolled once, when jf is traced; transforms of jf replay
    the few vector instructions instead of running the loop again."""
    x = np.linspace(0.0, 1.0, 200)
    jf = fa.jit(_loop, backend=backend)
    np.testing.assert_allclose(jf(x), _loop(x), rtol=1e-12)
    assert len(jf.tape.instrs) < 20
    tape = fa.make_tape(fa.grad(jf))(x)
    assert len(tape.instrs) < 60
    want = fa.grad(_loop)(x)
    np.testing.assert_allclose(fa.grad(jf)(x), want, rtol=1e-12)
    v = np.random.default_rng(0).normal(size=x.shape)
    np.testing.assert_allclose(fa.jvp(jf, (x,), (v,))[1], want @ v, rtol=1e-10)
    np.testing.assert_allclose(fa.vmap(jf)(np.stack([x, 2 * x])), [_loop(x), _loop(2 * x)],
                               rtol=1e-12)
    np.testing.assert_allclose(np.sum(want * v), _fd(_loop, x, v), rtol=1e-5)


def _branchy(x):
    if fnp.sum(x) > 0:
        return fnp.sum(fnp.sin(x) ** 2)
    return fnp.sum(fnp.exp(x))


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_guards_choose_the_replayed_trace(backend):
    """A cached trace whose guard disagrees with the traced values is not
    replayed: the other branch is traced (and then replayed in its turn)."""
    jf = fa.jit(_branchy, backend=backend)
    pos, neg = np.array([0.5, 1.0, -0.2]), np.array([-0.5, -1.0, 0.2])
    jf(pos)
    for x in (neg, pos, neg):
        want = fa.grad(_branchy)(x)
        np.testing.assert_allclose(fa.grad(jf)(x), want, rtol=1e-12)
        outer = fa.jit(fa.grad(jf), backend=backend)
        np.testing.assert_allclose(outer(x), want, rtol=1e-12)
        np.testing.assert_allclose(outer(-x), fa.grad(_branchy)(-x), rtol=1e-12)
    assert jf.cache_info()["traces"] == 2


def test_traced_static_argument_runs_the_function():
    """A static argument that is a traced value has no signature: the Python
    function runs on it, as it would without jit."""
    jf = fa.jit(lambda x, c: fnp.sum(x * c), static_argnums=1, backend="numpy")
    x = np.arange(3.0)
    np.testing.assert_allclose(fa.grad(lambda c: jf(x, c))(2.0), np.sum(x))


@pytest.mark.parametrize("backend", MATRIX_BACKENDS)
def test_compiled_function_closing_over_a_traced_value(backend):
    """A compiled function defined inside a traced function, closing over one
    of its traced values, runs as Python there (its trace would depend on the
    enclosing one), on traced values and on arrays alike."""
    def outer(w, jit, compile_):
        jf = jit(lambda x: fnp.sum(fnp.sin(x * w)))
        g = compile_(lambda x: fnp.sum(fnp.sin(x * w) ** 2))
        return jf(w) + jf(np.ones(N)) + fnp.sum(g(w) * g(np.ones(N)))

    def compiled(w):
        return outer(w, lambda f: fa.jit(f, backend=backend),
                     lambda f: fa.compile(f, backend=backend))

    def eager(w):
        return outer(w, lambda f: f, fa.grad)

    x, v, _ = _inputs(False, 6)
    np.testing.assert_allclose(compiled(x), eager(x), rtol=1e-12)
    want = fa.grad(eager)(x)
    np.testing.assert_allclose(fa.grad(compiled)(x), want, rtol=1e-10)
    np.testing.assert_allclose(fa.jit(fa.grad(compiled), backend=backend)(x), want, rtol=1e-10)
    np.testing.assert_allclose(np.sum(want * v), _fd(eager, x, v), rtol=1e-5)


@pytest.mark.parametrize("first", [False, True])
def test_traced_mask_argument_runs_the_function(first):
    """A traced boolean or integer argument is keyed by value on arrays, so it
    has no signature to replay: the Python function runs on it."""
    if first:
        jf = fa.jit(lambda m, x: fnp.sum(fnp.where(m, x, 0.0) * 2.0), backend="numpy")
        call = lambda x: jf(x > 1.0, x)  # noqa: E731
    else:
        jf = fa.jit(lambda x, m: fnp.sum(fnp.where(m, x, 0.0) * 2.0), backend="numpy")
        call = lambda x: jf(x, x > 1.0)  # noqa: E731
    x = np.array([0.3, 2.0, 1.0])
    np.testing.assert_allclose(fa.grad(call)(x), [0.0, 2.0, 0.0])
    np.testing.assert_allclose(fa.grad(call)(x + 1), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(fa.jit(fa.grad(call), backend="numpy")(x + 1), [2.0, 2.0, 2.0])


def test_traced_value_inside_a_static_argument_runs_the_function():
    jf = fa.jit(lambda x, opts: fnp.sum(x * opts[0]) + opts[1], static_argnums=1,
                static_argnames="extra", backend="numpy")
    x = np.arange(3.0)
    np.testing.assert_allclose(fa.grad(lambda c: jf(x, (c, 2.0)))(1.5), np.sum(x))
    np.testing.assert_allclose(fa.grad(lambda c: jf(x, opts=(c * c, 2.0)))(1.5), 3 * np.sum(x))
    np.testing.assert_allclose(fa.jit(fa.grad(lambda c: jf(x, (c, 2.0))), backend="numpy")(1.5),
                               np.sum(x))


# -- random chains of transformations ----------------------------------------------------

_V = np.random.default_rng(11).normal(size=N)
_SCALE = np.array([[1.0], [-0.5]])


def _chain_step(step: str, h, compiled: bool, backend: str):
    """One transformation of a function of x (shape (N,)) returning an array
    or a scalar; ``compiled`` picks jit/compile over their eager meaning."""
    if step == "grad":
        return fa.grad(_scalar(h))
    if step == "jit":
        return fa.jit(h, backend=backend) if compiled else h
    if step == "compile":
        return fa.compile(_scalar(h), backend=backend) if compiled else fa.grad(_scalar(h))
    if step == "jvp":
        return lambda x: fa.jvp(h, (x,), (_V,))[1]
    if step == "vmap":
        return lambda x: fnp.sum(fa.vmap(h)(x[None, :] * _SCALE), axis=0)
    raise ValueError(step)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fname=st.sampled_from(sorted(FUNCS)),
       steps=st.lists(st.sampled_from(["grad", "jit", "compile", "jvp", "vmap"]),
                      min_size=2, max_size=3),
       backend=st.sampled_from(MATRIX_BACKENDS), seed=st.integers(0, 2 ** 16))
def test_random_chains(fname, steps, backend, seed):
    """grad, jit, compile, jvp and vmap chained in random orders (innermost
    first) around each function, compiled against eager at a random point."""
    if "jit" not in steps and "compile" not in steps:
        steps = ["jit", *steps]
    x = np.random.default_rng(seed).uniform(-1, 1, N)
    compiled, eager = FUNCS[fname], FUNCS[fname]
    for step in steps:
        compiled = _chain_step(step, compiled, True, backend)
        eager = _chain_step(step, eager, False, backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(compiled(x), eager(x), rtol=1e-8, atol=1e-10)
