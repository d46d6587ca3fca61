"""``fastad.example_libraries`` (JAX's ``optimizers`` and ``stax``) and the
JAX-named modules around them (``flatten_util``, ``experimental.ode``,
``lax.conv_transpose``): JAX's programs written with them run, eager and
compiled, and agree with JAX where it is installed."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as jnp
from fastad import random
from fastad.example_libraries import optimizers, stax
from conftest import BACKENDS

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)
KEY = random.PRNGKey(3)

OPTIMIZERS = {
    "sgd": lambda: optimizers.sgd(0.05),
    "momentum": lambda: optimizers.momentum(0.05, 0.9),
    "nesterov": lambda: optimizers.nesterov(0.05, 0.9),
    "adagrad": lambda: optimizers.adagrad(0.3),
    "rmsprop": lambda: optimizers.rmsprop(0.05),
    "rmsprop_momentum": lambda: optimizers.rmsprop_momentum(0.01),
    "adam": lambda: optimizers.adam(optimizers.exponential_decay(0.1, 50, 0.5)),
    "adamax": lambda: optimizers.adamax(optimizers.inverse_time_decay(0.1, 10, 0.1)),
    "sm3": lambda: optimizers.sm3(optimizers.polynomial_decay(0.3, 100, 0.01)),
}


def _quadratic(params):
    return (jnp.sum((params["w"] - 1.5) ** 2) + jnp.sum((params["b"][0] + 0.5) ** 2)
            + 0.1 * jnp.sum(params["w"] * params["b"][0][0]))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_converge_compiled_once(name):
    """Each optimizer lowers a quadratic over a pytree; the jitted update
    takes the step number as data (one trace) and equals the eager one."""
    opt_init, opt_update, get_params = OPTIMIZERS[name]()
    params = {"w": np.zeros((2, 3)), "b": (np.ones(2),)}
    state = opt_init(params)

    @jit
    def step(i, state):
        return opt_update(i, fa.grad(_quadratic)(get_params(state)), state)

    eager = state
    start = float(_quadratic(get_params(state)))
    for i in range(300):
        state = step(i, state)
        if i < 3:
            eager = opt_update(i, fa.grad(_quadratic)(get_params(eager)), eager)
            for a, b in zip(fa.tree.leaves(get_params(state)), fa.tree.leaves(get_params(eager))):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert float(_quadratic(get_params(state))) < 0.05 * start
    assert step.cache_info()["traces"] == 1
    packed = optimizers.pack_optimizer_state(optimizers.unpack_optimizer_state(state))
    for a, b in zip(fa.tree.leaves(packed), fa.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_optimizers_match_jax_where_installed():
    jax = pytest.importorskip("jax")
    jopt = pytest.importorskip("jax.example_libraries.optimizers")
    with jax.enable_x64(True):
        for name in ("sgd", "momentum", "adam", "rmsprop", "adagrad", "adamax", "sm3"):
            ours = getattr(optimizers, name)(0.1) if name in ("sgd", "adam", "rmsprop",
                                                              "adagrad", "adamax", "sm3") \
                else getattr(optimizers, name)(0.1, 0.8)
            theirs = getattr(jopt, name)(0.1) if name != "momentum" else jopt.momentum(0.1, 0.8)
            params = {"w": np.linspace(-1, 1, 6).reshape(2, 3)}
            s1, s2 = ours[0](params), theirs[0](params)
            for i in range(4):
                g = {"w": np.cos(np.arange(6.0) + i).reshape(2, 3)}
                s1, s2 = ours[1](i, g, s1), theirs[1](i, g, s2)
            np.testing.assert_allclose(ours[2](s1)["w"], np.asarray(theirs[2](s2)["w"]),
                                       rtol=1e-12, err_msg=name)


def test_schedules_and_clipping():
    sched = optimizers.piecewise_constant([10, 20], [1.0, 0.5, 0.1])
    assert [float(sched(i)) for i in (0, 10, 11, 25)] == [1.0, 1.0, 0.5, 0.1]
    g = {"a": np.array([3.0, 4.0])}
    np.testing.assert_allclose(optimizers.l2_norm(g), 5.0)
    np.testing.assert_allclose(optimizers.clip_grads(g, 1.0)["a"], [0.6, 0.8])
    with pytest.raises(TypeError, match="gradient tree"):
        opt = optimizers.sgd(0.1)
        opt[1](0, {"b": np.zeros(2)}, opt[0]({"a": np.zeros(2)}))


def _convnet():
    return stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.BatchNorm(), stax.Relu,
        stax.MaxPool((2, 2), strides=(2, 2)), stax.Conv(3, (2, 2)), stax.Tanh,
        stax.AvgPool((2, 2)), stax.Flatten, stax.Dense(5), stax.Dropout(0.9), stax.LogSoftmax)


def test_stax_network_trains_eager_and_compiled():
    init_fun, apply_fun = _convnet()
    out_shape, params = init_fun(KEY, (-1, 8, 8, 2))
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(6, 8, 8, 2)), rng.integers(0, 5, 6)
    out = apply_fun(params, x, rng=KEY)
    assert out_shape == (-1, 5) and out.shape == (6, 5)

    def loss(params, x, labels, key):
        logp = apply_fun(params, x, rng=key)
        return -jnp.mean(jnp.sum(logp * fa.nn.one_hot(labels, 5), axis=-1))

    g = fa.grad(loss)(params, x, labels, KEY)
    cg = jit(fa.grad(loss))(params, x, labels, KEY)
    for a, b in zip(fa.tree.leaves(g), fa.tree.leaves(cg)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    flat, unravel = fa.flatten_util.ravel_pytree(params)
    fa.check_grads(lambda v: loss(unravel(v), x, labels, KEY), (flat,), order=1)


def test_stax_matches_jax_where_installed():
    jax = pytest.importorskip("jax")
    jstax = pytest.importorskip("jax.example_libraries.stax")
    with jax.enable_x64(True):
        layers = lambda s: s.serial(s.Conv(4, (3, 3), padding="SAME"), s.Relu,  # noqa: E731
                                    s.MaxPool((2, 2)), s.Flatten, s.Dense(3), s.Softmax)
        shape1, p1 = layers(stax)[0](KEY, (-1, 6, 6, 2))
        shape2, p2 = layers(jstax)[0](jax.random.PRNGKey(3), (-1, 6, 6, 2))
        assert tuple(shape1)[1:] == tuple(shape2)[1:]  # (JAX's stax gives 0 for a -1 batch)
        x = np.random.default_rng(1).normal(size=(2, 6, 6, 2))
        np.testing.assert_allclose(layers(stax)[1](p1, x), np.asarray(layers(jstax)[1](p2, x)),
                                   rtol=1e-6, atol=1e-8)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(["SAME", "VALID", ((1, 0), (0, 2))]), st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       st.booleans(), st.integers(0, 2**31))
def test_conv_transpose(padding, strides, flip, seed):
    """conv_transpose against JAX's where installed; linear in its input and
    differentiable in both operands everywhere."""
    rng = np.random.default_rng(seed)
    y1, y2 = rng.normal(size=(2, 1, 4, 5, 3))
    w = rng.normal(size=(3, 2, 2, 3) if flip else (3, 2, 3, 2))
    ct = lambda y, w: fa.lax.conv_transpose(y, w, strides, padding,  # noqa: E731
                                            transpose_kernel=flip)
    np.testing.assert_allclose(ct(2.0 * y1 + y2, w), 2.0 * ct(y1, w) + ct(y2, w), rtol=1e-12,
                               atol=1e-12)
    fa.check_grads(ct, (y1, w), order=1)
    try:
        import jax
    except ImportError:
        return
    with jax.enable_x64(True):
        want = np.asarray(jax.lax.conv_transpose(y1, w, strides, padding, transpose_kernel=flip))
    np.testing.assert_allclose(ct(y1, w), want, rtol=1e-12, atol=1e-12)


def test_experimental_odeint_of_pytrees():
    from fastad.experimental.ode import odeint

    def f(y, t, p):
        return {"a": -p["k"] * y["a"], "b": jnp.sum(y["a"]) - y["b"]}

    y0 = {"a": np.array([1.0, 2.0]), "b": np.array(0.5)}
    ts = np.linspace(0.0, 1.0, 4)
    out = odeint(f, y0, ts, {"k": np.array(0.7)})
    np.testing.assert_allclose(out["a"], np.exp(-0.7 * ts)[:, None] * [1.0, 2.0], rtol=1e-6)
    assert out["b"].shape == (4,)
    loss = lambda k: jnp.sum(odeint(f, y0, ts, {"k": k})["b"])  # noqa: E731
    eps = 1e-5
    fd = (loss(0.7 + eps) - loss(0.7 - eps)) / (2 * eps)
    np.testing.assert_allclose(fa.grad(loss)(0.7), fd, rtol=1e-5)
    np.testing.assert_allclose(jit(fa.grad(loss))(0.7), fd, rtol=1e-5)
