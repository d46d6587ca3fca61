"""fastad.misc: flatten, autograd's optimizers and fixed-point differentiation,
checked against central finite differences, eager against compiled, and
against autograd's own implementations where autograd is installed."""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.misc import flatten
from fastad.misc import optimizers
from fastad.misc.fixed_points import fixed_point

Pair = collections.namedtuple("Pair", "left right")
COMPILED = [b for b in ("c", "numpy") if b in BACKENDS]


def _leaf(draw, rng):
    kind = draw(st.sampled_from(["array", "float", "float32", "scalar0d"]))
    if kind == "float":
        return float(rng.standard_normal())
    shape = () if kind == "scalar0d" else tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    value = rng.standard_normal(shape)
    return value.astype(np.float32) if kind == "float32" else value


@st.composite
def pytrees(draw, depth=2):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if depth == 0 or draw(st.booleans()):
        return _leaf(draw, rng)
    n = draw(st.integers(1, 3))
    kids = [draw(pytrees(depth=depth - 1)) for _ in range(n)]
    kind = draw(st.sampled_from(["tuple", "list", "dict", "pair"]))
    if kind == "dict":
        return {f"k{i}": kid for i, kid in enumerate(kids)}
    if kind == "pair":
        return Pair(kids[0], kids[-1])
    return tuple(kids) if kind == "tuple" else kids


@settings(max_examples=40, deadline=None)
@given(tree=pytrees())
def test_flatten_round_trips_and_differentiates(tree):
    from fastad.core import pytree
    vector, unflatten = flatten(tree)
    leaves, structure = pytree.flatten(tree)
    assert vector.ndim == 1 and vector.size == sum(np.size(v) for v in leaves)
    back_leaves, back_structure = pytree.flatten(unflatten(vector))
    assert back_structure == structure
    for got, want in zip(back_leaves, leaves):
        assert np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, np.asarray(want))
    # a loss of the flat vector through unflatten (float64 leaves: finite differences)
    vector, unflatten = flatten(pytree.unflatten(structure, [np.float64(v) if np.ndim(v) == 0
                                                             else v.astype(np.float64)
                                                             for v in leaves]))
    weights = np.random.default_rng(vector.size).standard_normal(vector.size)

    def loss(v):
        parts = pytree.flatten(unflatten(v))[0]
        return sum(np.sum(np.sin(p) * k) for k, p in enumerate(parts, 1)) + np.sum(v * weights)

    v = vector.astype(np.float64)
    grad = fa.grad(loss)(v)
    u = np.random.default_rng(1).standard_normal(v.size)
    eps = 1e-6
    fd = (loss(v + eps * u) - loss(v - eps * u)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * u), fd, rtol=1e-5, atol=1e-5)
    for backend in COMPILED:
        np.testing.assert_allclose(fa.compile(loss, backend=backend)(v), grad, rtol=1e-10,
                                   atol=1e-12)


def test_flatten_refuses_a_vector_of_another_length():
    _, unflatten = flatten({"a": np.ones(3)})
    with pytest.raises(ValueError, match="3 elements"):
        unflatten(np.ones(4))


# -- optimizers ----------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", [("sgd", {"step_size": 0.1}),
                                         ("momentum", {"step_size": 0.05}),
                                         ("momentum", {"step_size": 0.05, "nesterov": True}),
                                         ("rmsprop", {"step_size": 0.05}),
                                         ("adam", {"step_size": 0.1})])
@pytest.mark.parametrize("backend", [None] + COMPILED)
def test_optimizers_minimize_pytrees_with_compiled_gradients(name, kwargs, backend):
    x0 = {"w": np.zeros(3), "b": (np.array([0.5]),)}

    def objective(params, i):
        return np.sum((params["w"] - 3.0) ** 2) + np.sum((params["b"][0] + 1.0) ** 2)

    grad = fa.grad(objective) if backend is None else fa.compile(objective, backend=backend)
    seen = []

    def callback(params, i, g):
        seen.append(i)
        assert set(params) == {"w", "b"} and set(g) == {"w", "b"}
        np.testing.assert_allclose(g["w"], 2 * (params["w"] - 3.0), rtol=1e-12)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = getattr(optimizers, name)(grad, x0, callback, num_iters=400, **kwargs)
    assert seen == list(range(400))
    np.testing.assert_allclose(result["w"], 3.0, atol=1e-3)
    np.testing.assert_allclose(result["b"][0], -1.0, atol=1e-3)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_optimizers_follow_autograds_steps(name):
    ag = pytest.importorskip("autograd.misc.optimizers")
    import autograd
    import autograd.numpy as anp

    def objective(xp):
        return lambda p, i: xp.sum(xp.sin(p["w"]) * p["w"] ** 2) + xp.sum(p["b"] ** 2) * (i % 3)

    x0 = {"w": np.linspace(-1, 1, 4), "b": np.ones(2)}
    want = getattr(ag, name)(autograd.grad(objective(anp)), x0, num_iters=50, step_size=0.05)
    got = getattr(optimizers, name)(fa.grad(objective(np)), x0, num_iters=50, step_size=0.05)
    for k in x0:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)


# -- fixed points --------------------------------------------------------------------
def _newton_sqrt(a):
    return lambda x: 0.5 * (x + a / x)


def _distance(x, y):
    return np.max(np.abs(x - y))


def _contraction(a):
    m = np.array([[0.3, -0.1, 0.05], [0.2, 0.1, -0.2], [0.0, 0.25, 0.1]])
    return lambda x: np.tanh(m @ x + a) * 0.5 + 0.1 * np.sin(a)


@settings(max_examples=15, deadline=None)
@given(a=st.floats(0.5, 20.0))
def test_fixed_point_of_newtons_square_root(a):
    def sqrt(a):
        return fixed_point(_newton_sqrt, a, 1.0, _distance, 1e-13)

    np.testing.assert_allclose(sqrt(a), np.sqrt(a), rtol=1e-12)
    np.testing.assert_allclose(fa.grad(sqrt)(a), 0.5 / np.sqrt(a), rtol=1e-9)
    np.testing.assert_allclose(fa.grad(fa.grad(sqrt))(a), -0.25 * a ** -1.5, rtol=1e-7)
    for backend in COMPILED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a host call between compiled segments
            g = fa.compile(sqrt, backend=backend)
            np.testing.assert_allclose(g(a), 0.5 / np.sqrt(a), rtol=1e-9)
            np.testing.assert_allclose(g(a + 1.0), 0.5 / np.sqrt(a + 1.0), rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(a=st.lists(st.floats(0.5, 20.0), min_size=1, max_size=4))
def test_fixed_point_under_vmap_iterates_each_example(a):
    """vmap of fixed_point: each example iterates to its own tolerance."""
    a = np.array(a)

    def sqrt(a):
        return fixed_point(_newton_sqrt, a, 1.0, _distance, 1e-13)

    np.testing.assert_allclose(fa.vmap(sqrt)(a), np.sqrt(a), rtol=1e-12)
    np.testing.assert_allclose(fa.vmap(fa.grad(sqrt))(a), 0.5 / np.sqrt(a), rtol=1e-9)


def test_fixed_point_of_a_vector_contraction():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(3)
    w = rng.standard_normal(3)

    def loss(a):
        return np.sum(w * fixed_point(_contraction, a, np.zeros(3), _distance, 1e-14))

    x_star = fixed_point(_contraction, a, np.zeros(3), _distance, 1e-14)
    np.testing.assert_allclose(_contraction(a)(x_star), x_star, atol=1e-13)
    grad = fa.grad(loss)(a)
    for _ in range(3):
        u = rng.standard_normal(3)
        eps = 1e-6
        fd = (loss(a + eps * u) - loss(a - eps * u)) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad * u), fd, rtol=1e-6, atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in COMPILED:
            np.testing.assert_allclose(fa.compile(loss, backend=backend)(a), grad, rtol=1e-10)
