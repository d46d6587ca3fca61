"""JAX's custom_jvp / custom_vjp and autograd's holomorphic_grad / make_ggnvp.

Each custom function is generated from a small family of smooth elementwise
and reducing bodies with random parameters; its rule is the true derivative,
so every transform (reverse, forward, second order, jit, compile, vmap) of a
loss through it must agree with central finite differences and with the same
loss written without the custom rule.  A rule that differs from the true
derivative on purpose (a clipped gradient) shows the rule is the one used.
JAX's own results are a cross-check where JAX is installed.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.extend
from conftest import BACKENDS

COMPILED = "c" if "c" in BACKENDS else "numpy"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def fd(f, x, v, h=1e-4):
    return (-f(x + 2 * h * v) + 8 * f(x + h * v) - 8 * f(x - h * v) + f(x - 2 * h * v)) / (12 * h)


# body(x, y, a) and its partial derivatives in x and y (elementwise)
BODIES = {
    "sin*y": (lambda x, y, a: np.sin(a * x) * y,
              lambda x, y, a: a * np.cos(a * x) * y, lambda x, y, a: np.sin(a * x)),
    "softplus+xy": (lambda x, y, a: np.log1p(np.exp(a * x)) + x * y,
                    lambda x, y, a: a / (1 + np.exp(-a * x)) + y, lambda x, y, a: x),
    "x^2/(1+y^2)": (lambda x, y, a: a * x ** 2 / (1 + y ** 2),
                    lambda x, y, a: 2 * a * x / (1 + y ** 2),
                    lambda x, y, a: -2 * a * x ** 2 * y / (1 + y ** 2) ** 2),
}


def make_vjp_fn(body, a):
    f0, dx, dy = BODIES[body]

    @fa.custom_vjp
    def f(x, y):
        return f0(x, y, a)

    def fwd(x, y):
        return f(x, y), (dx(x, y, a), dy(x, y, a))

    def bwd(res, g):
        return res[0] * g, res[1] * g

    f.defvjp(fwd, bwd)
    return f


def make_jvp_fn(body, a):
    f0, dx, dy = BODIES[body]

    @fa.custom_jvp
    def f(x, y):
        return f0(x, y, a)

    @f.defjvp
    def rule(primals, tangents):
        (x, y), (tx, ty) = primals, tangents
        return f(x, y), dx(x, y, a) * tx + dy(x, y, a) * ty

    return f


def make_jvps_fn(body, a):
    f0, dx, dy = BODIES[body]

    @fa.custom_jvp
    def f(x, y):
        return f0(x, y, a)

    f.defjvps(lambda tx, ans, x, y: dx(x, y, a) * tx, lambda ty, ans, x, y: dy(x, y, a) * ty)
    return f


MAKERS = {"custom_vjp": make_vjp_fn, "custom_jvp": make_jvp_fn, "defjvps": make_jvps_fn}


def _case(data, maker, body):
    a = data.draw(st.floats(0.5, 1.5))
    n = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    x, y, w = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 1.5, n)
    f = MAKERS[maker](body, a)
    f0 = BODIES[body][0]

    def loss(xy):  # the custom function inside other operations
        u = f(np.tanh(xy[:n]) * 1.3, xy[n:] ** 2 + 0.1)
        return np.sum(w * u * np.cos(u))

    def plain(xy):
        u = f0(np.tanh(xy[:n]) * 1.3, xy[n:] ** 2 + 0.1, a)
        return np.sum(w * u * np.cos(u))

    return loss, plain, np.concatenate([x, y]), rng.normal(size=2 * n)


@settings(max_examples=12, deadline=None)
@given(data=st.data(), maker=st.sampled_from(sorted(MAKERS)), body=st.sampled_from(sorted(BODIES)))
def test_first_order_against_finite_differences_and_eager(data, maker, body):
    loss, plain, xy, v = _case(data, maker, body)
    want = fd(plain, xy, v)
    g = fa.grad(loss)(xy)
    np.testing.assert_allclose(g @ v, want, rtol=1e-6, atol=1e-8)
    value, tangent = fa.jvp(loss, (xy,), (v,))
    np.testing.assert_allclose(value, plain(xy), rtol=1e-13)
    np.testing.assert_allclose(tangent, want, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g, fa.grad(plain)(xy), rtol=1e-10, atol=1e-12)
    for _ in range(2):  # traced, then replayed
        np.testing.assert_allclose(fa.jit(fa.grad(loss), backend=COMPILED)(xy), g, rtol=1e-12)
        np.testing.assert_allclose(fa.compile(loss, backend=COMPILED)(xy), g, rtol=1e-12)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@settings(max_examples=12, deadline=None)
@given(data=st.data(), maker=st.sampled_from(sorted(MAKERS)), body=st.sampled_from(sorted(BODIES)))
def test_compiled_custom_functions_run_their_traced_bodies(data, maker, body):
    """A compiled function inlines the custom function's body (the rule ran
    already): the VM runs it, no call into Python is left, the value, the
    gradient and the Hessian-vector product are the eager ones."""
    import warnings
    loss, plain, xy, v = _case(data, maker, body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a host call would warn
        g = fa.compile(loss, backend="c")
        value, grad = g.value_and_grad(xy)
        hv = g.hvp(xy, v)
        jitted = fa.jit(loss, backend="c")(xy)
    want = fa.value_and_grad(loss)(xy)
    np.testing.assert_allclose(value, want[0], rtol=1e-13)
    np.testing.assert_allclose(jitted, want[0], rtol=1e-13)
    np.testing.assert_allclose(grad, want[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hv, fa.hessian(loss)(xy) @ v, rtol=1e-9, atol=1e-11)


def test_a_custom_function_whose_body_does_not_trace_stays_a_call():
    """Its primal converts to plain arrays (SciPy's own function): a compiled
    function calls it, as before, and its rule gives the derivative."""
    import scipy.special

    @fa.custom_vjp
    def f(x):
        return np.asarray(scipy.special.expit(np.asarray(x)))

    f.defvjp(lambda x: (fa.numpy.exp(-fa.numpy.logaddexp(0.0, -x)), x),
             lambda x, g: (g * fa.numpy.exp(-x) / (1 + fa.numpy.exp(-x)) ** 2,))
    x = np.linspace(-2.0, 2.0, 5)
    want = scipy.special.expit(x) * (1 - scipy.special.expit(x))
    np.testing.assert_allclose(fa.compile(lambda x: np.sum(f(x)), backend=COMPILED)(x), want,
                               rtol=1e-12)


@settings(max_examples=8, deadline=None)
@given(data=st.data(), maker=st.sampled_from(sorted(MAKERS)), body=st.sampled_from(sorted(BODIES)))
def test_second_order_and_vmap(data, maker, body):
    loss, plain, xy, v = _case(data, maker, body)
    H = fa.hessian(loss)(xy)
    np.testing.assert_allclose(H, fa.hessian(plain)(xy), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(H @ v, fd(fa.grad(plain), xy, v), rtol=1e-5, atol=1e-7)
    _, hv = fa.jvp(fa.grad(loss), (xy,), (v,))  # forward over reverse
    np.testing.assert_allclose(hv, H @ v, rtol=1e-9, atol=1e-10)
    batch = np.stack([xy, xy + 0.1 * v, xy - 0.2 * v])
    np.testing.assert_allclose(fa.vmap(fa.grad(loss))(batch),
                               np.stack([fa.grad(plain)(b) for b in batch]), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(fa.vmap(loss)(batch), [plain(b) for b in batch], rtol=1e-13)


def _clipped():
    """A rule that is not the derivative: JAX's gradient-clipping example."""
    @fa.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (np.clip(g, -1.0, 1.0),))
    return clip_gradient


def test_the_rule_is_the_one_used():
    clip_gradient = _clipped()
    x = np.array([0.5, 2.0, -3.0])
    g = fa.grad(lambda x: np.sum(clip_gradient(x) ** 2))(x)
    np.testing.assert_allclose(g, np.clip(2 * x, -1, 1))
    np.testing.assert_allclose(fa.jit(fa.grad(lambda x: np.sum(clip_gradient(x) ** 2)),
                                      backend=COMPILED)(x), np.clip(2 * x, -1, 1))


def test_nondiff_argnums():
    @partial(fa.custom_vjp, nondiff_argnums=(0,))
    def apply(fn, x):
        return fn(x)

    def fwd(fn, x):
        return fn(x), x

    def bwd(fn, x, g):  # JAX's order: nondiff arguments, residuals, cotangent
        return (fa.grad(lambda t: np.sum(fn(t) * g))(x),)

    apply.defvjp(fwd, bwd)

    @partial(fa.custom_jvp, nondiff_argnums=(0,))
    def power(n, x):
        return x ** n

    @power.defjvp
    def power_jvp(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return power(n, x), n * x ** (n - 1) * t

    x = np.array([0.3, 0.7, 1.1])
    for f, want in ((lambda x: np.sum(apply(np.sin, x) * x), np.cos(x) * x + np.sin(x)),
                    (lambda x: np.sum(power(3, x)), 3 * x ** 2)):
        np.testing.assert_allclose(fa.grad(f)(x), want, rtol=1e-12)
        np.testing.assert_allclose(fa.jvp(f, (x,), (np.ones(3),))[1], np.sum(want), rtol=1e-12)
        np.testing.assert_allclose(fa.jit(fa.grad(f), backend=COMPILED)(x), want, rtol=1e-12)


def test_plain_values_call_the_function_and_bad_rules_raise():
    f = make_vjp_fn("sin*y", 1.0)
    x, y = np.array([0.2, 0.4]), np.array([1.0, 2.0])
    np.testing.assert_array_equal(f(x, y), np.sin(x) * y)

    @fa.custom_vjp
    def no_rule(x):
        return x * 2.0

    with pytest.raises(NotImplementedError, match="defvjp"):
        fa.grad(lambda x: np.sum(no_rule(x)))(x)

    @fa.custom_vjp
    def bad(x):
        return x * 2.0

    bad.defvjp(lambda x: (bad(x), None), lambda res, g: g)  # not a tuple
    with pytest.raises(TypeError, match="tuple"):
        fa.grad(lambda x: np.sum(bad(x)))(x)


def test_against_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x = np.array([0.3, -0.8, 1.4])

    def build(custom, npm):
        @custom
        def f(x):
            return npm.log1p(npm.exp(x))

        f.defvjp(lambda x: (f(x), x), lambda x, g: (g / (1 + npm.exp(-x)) * 0.5,))  # halved
        return f

    f_fa, f_jax = build(fa.custom_vjp, np), build(jax.custom_vjp, jnp)
    want = jax.grad(lambda x: jnp.sum(f_jax(x) * jnp.sin(x)))(jnp.asarray(x))
    got = fa.grad(lambda x: np.sum(f_fa(x) * np.sin(x)))(x)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12)


# -- autograd's holomorphic_grad and make_ggnvp ----------------------------------------
@settings(max_examples=10, deadline=None)
@given(re=st.floats(-1.5, 1.5), im=st.floats(-1.5, 1.5), k=st.integers(0, 2))
def test_holomorphic_grad_is_the_complex_derivative(re, im, k):
    f = [lambda z: z ** 3, lambda z: np.exp(z) * z, lambda z: np.sin(z) + 2.0 * z][k]
    z, h = complex(re, im), 1e-6
    want = (f(z + h) - f(z - h)) / (2 * h)  # along the real axis: f'(z) for holomorphic f
    np.testing.assert_allclose(fa.holomorphic_grad(f)(z), want, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(fa.holomorphic_grad(f)(z), (f(z + 1j * h) - f(z - 1j * h)) / (2j * h),
                               rtol=1e-7, atol=1e-8)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 4), m=st.integers(1, 3))
def test_make_ggnvp(seed, n, m):
    rng = np.random.default_rng(seed)
    A, x, v = rng.normal(size=(m, n)), rng.normal(size=n), rng.normal(size=n)

    def f(x):
        return np.tanh(A @ x)

    def g(y):
        return np.sum(np.exp(0.3 * y) + y ** 4) / 4

    J = fa.jacobian(f)(x)
    Hg = fa.hessian(g)(f(x))
    np.testing.assert_allclose(fa.make_ggnvp(f, g)(x)(v), J.T @ Hg @ J @ v, rtol=1e-10, atol=1e-12)
    # autograd's default g: 0.5 * |y|^2, whose Hessian is the identity
    np.testing.assert_allclose(fa.make_ggnvp(f)(x)(v), J.T @ J @ v, rtol=1e-10, atol=1e-12)
    J_fd = np.stack([fd(f, x, e) for e in np.eye(n)], axis=-1)
    np.testing.assert_allclose(J, J_fd, rtol=1e-6, atol=1e-8)


def test_fwd_runs_once_for_all_arguments_of_one_call():
    calls = []

    @fa.custom_vjp
    def f(x, y):
        return np.sin(x) * y

    def fwd(x, y):
        calls.append(1)
        return f(x, y), (np.cos(x), np.sin(x), y)

    f.defvjp(fwd, lambda res, g: (res[0] * g * res[2], res[1] * g))
    x, y = np.array([0.3, 0.5]), np.array([1.5, -0.7])
    gx, gy = fa.grad(lambda x, y: np.sum(f(x, y) ** 2), (0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * np.sin(x) * y ** 2 * np.cos(x), rtol=1e-13)
    np.testing.assert_allclose(gy, 2 * np.sin(x) ** 2 * y, rtol=1e-13)
    assert len(calls) == 1


# -- pytrees in and out, as JAX's custom rules take them ---------------------------------
class Pair(NamedTuple):
    x: object
    y: object


# how the custom function takes x and y: (wrap(x, y) -> arguments, unwrap(arguments) -> (x, y))
IN_TREES = {
    "dict": (lambda x, y: ({"x": x, "y": y},), lambda a: (a[0]["x"], a[0]["y"])),
    "nested": (lambda x, y: ((x, [y]),), lambda a: (a[0][0], a[0][1][0])),
    "namedtuple": (lambda x, y: (Pair(x, y),), lambda a: (a[0].x, a[0].y)),
    "array_and_dict": (lambda x, y: (x, {"y": y}), lambda a: (a[0], a[1]["y"])),
}
# what it returns from u: (make(u) -> result, merge(result) -> the sum of its parts,
# the weight of u in that sum, and the transpose of make: a cotangent of the result
# to the cotangent of u)
OUT_TREES = {
    "array": (lambda u: u, lambda r: r, 1.0, lambda g: g),
    "tuple": (lambda u: (u, 0.5 * u), lambda r: r[0] + r[1], 1.5,
              lambda g: g[0] + 0.5 * g[1]),
    "dict": (lambda u: {"u": u, "rest": [-2.0 * u]}, lambda r: r["u"] + r["rest"][0], -1.0,
             lambda g: g["u"] - 2.0 * g["rest"][0]),
}


def make_tree_fn(maker, body, a, in_tree, out_tree):
    f0, dx, dy = BODIES[body]
    wrap, unwrap = IN_TREES[in_tree]
    make, _, _, make_t = OUT_TREES[out_tree]

    if maker == "custom_vjp":
        f = fa.custom_vjp(lambda *args: make(f0(*unwrap(args), a)))

        def fwd(*args):
            x, y = unwrap(args)
            return f(*args), (dx(x, y, a), dy(x, y, a))

        def bwd(res, g):
            gu = make_t(g)  # the cotangent of u
            return wrap(res[0] * gu, res[1] * gu)

        f.defvjp(fwd, bwd)
    else:
        f = fa.custom_jvp(lambda *args: make(f0(*unwrap(args), a)))

        @f.defjvp
        def rule(primals, tangents):
            (x, y), (tx, ty) = unwrap(primals), unwrap(tangents)
            return f(*primals), make(dx(x, y, a) * tx + dy(x, y, a) * ty)
    return f


@settings(max_examples=24, deadline=None)
@given(data=st.data(), maker=st.sampled_from(["custom_vjp", "custom_jvp"]),
       body=st.sampled_from(sorted(BODIES)), in_tree=st.sampled_from(sorted(IN_TREES)),
       out_tree=st.sampled_from(sorted(OUT_TREES)))
def test_pytree_arguments_and_results(data, maker, body, in_tree, out_tree):
    """Arguments and results that are dicts, nested lists and tuples and
    namedtuples: every transform of a loss through the custom function agrees
    with the loss written without it and with finite differences, eager and
    compiled."""
    a = data.draw(st.floats(0.5, 1.5))
    n = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    xy, v, w = rng.normal(size=2 * n), rng.normal(size=2 * n), rng.uniform(0.5, 1.5, n)
    f = make_tree_fn(maker, body, a, in_tree, out_tree)
    f0 = BODIES[body][0]
    wrap, merge, weight = IN_TREES[in_tree][0], OUT_TREES[out_tree][1], OUT_TREES[out_tree][2]

    def loss(xy):
        u = merge(f(*wrap(np.tanh(xy[:n]) * 1.3, xy[n:] ** 2 + 0.1)))
        return np.sum(w * u * np.cos(u))

    def plain(xy):
        u = weight * f0(np.tanh(xy[:n]) * 1.3, xy[n:] ** 2 + 0.1, a)
        return np.sum(w * u * np.cos(u))

    g = fa.grad(loss)(xy)
    np.testing.assert_allclose(g, fa.grad(plain)(xy), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g @ v, fd(plain, xy, v), rtol=1e-6, atol=1e-8)
    value, tangent = fa.jvp(loss, (xy,), (v,))
    np.testing.assert_allclose(value, plain(xy), rtol=1e-13)
    np.testing.assert_allclose(tangent, g @ v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fa.compile(loss, backend=COMPILED)(xy), g, rtol=1e-12)
    np.testing.assert_allclose(fa.hessian(loss)(xy) @ v, fa.hessian(plain)(xy) @ v,
                               rtol=1e-9, atol=1e-10)
    batch = np.stack([xy, xy + 0.1 * v])
    np.testing.assert_allclose(fa.vmap(fa.grad(loss))(batch),
                               np.stack([fa.grad(plain)(b) for b in batch]), rtol=1e-10,
                               atol=1e-12)
    # called on plain values, the function is itself, structure included
    got = f(*wrap(xy[:n], xy[n:] + 2.0))
    want = OUT_TREES[out_tree][0](f0(xy[:n], xy[n:] + 2.0, a))
    for p, q in zip(fa.flatten(got)[0], fa.flatten(want)[0]):
        np.testing.assert_array_equal(p, q)


def test_pytree_rules_that_give_the_wrong_structure_raise():
    f = fa.custom_vjp(lambda p: {"a": np.sin(p["x"]), "b": p["x"]})
    f.defvjp(lambda p: (f(p), p["x"]), lambda x, g: ([g["a"] * np.cos(x)],))  # a list, not a dict
    with pytest.raises(TypeError, match="structure"):
        fa.grad(lambda x: np.sum(f({"x": x})["a"]))(np.ones(3))
    h = fa.custom_jvp(lambda p: (np.sin(p[0]), p[1]))
    h.defjvp(lambda primals, tangents: (h(*primals), np.cos(primals[0][0]) * tangents[0][0]))
    with pytest.raises(TypeError, match="structure"):
        fa.grad(lambda x: np.sum(h((x, x))[0]))(np.ones(3))


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]),
       widen=st.sampled_from(["float64 constant", "int array", "complex", "float32"]),
       n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_a_rules_cotangent_takes_its_inputs_dtype(dtype, widen, n, seed):
    """A rule computing a cotangent in another dtype (a float64 constant,
    integers, a complex intermediate) gives the input's dtype, eagerly and
    compiled, with the rule's values rounded to it (JAX's rule: a cotangent
    has its primal's dtype)."""
    wrong = {"float64 constant": lambda g: g * np.float64(3.0),
             "int array": lambda g: np.full(g.shape, 3, np.int64),
             "complex": lambda g: (g * (3.0 + 0j)).astype(np.complex128),
             "float32": lambda g: (g * 3.0).astype(np.float32)}[widen]

    @fa.custom_vjp
    def triple(x):
        return x * 3.0
    triple.defvjp(lambda x: (triple(x), None), lambda _, g: (wrong(g),))

    @fa.primitive
    def tripled(x):  # autograd's way
        return x * 3.0
    fa.extend.defvjp(tripled, lambda ans, x: wrong)

    x = np.random.default_rng(seed).uniform(-1, 1, n).astype(dtype)
    want = (np.asarray(wrong(x)).real + 3.0 * x).astype(dtype) if widen != "int array" \
        else (3 + 3.0 * x).astype(dtype)
    for f in (triple, tripled):
        def loss(x):
            return fa.numpy.sum(f(x) * x)
        for grad in (fa.grad(loss), fa.jit(fa.grad(loss), backend=COMPILED)):
            got = grad(x)
            assert got.dtype == x.dtype
            np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12)
