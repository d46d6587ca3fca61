"""vmap: batched tapes agree with loops; composition with grad and jit."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

rng = np.random.default_rng(3)


def per_example_loss(w, x, y):
    return (np.tanh(x @ w) - y) ** 2


def test_per_example_gradients_match_a_loop(backend):
    X, w, y = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal(6)
    loop = np.stack([fa.grad(per_example_loss)(w, X[i], y[i]) for i in range(6)])
    eager = fa.vmap(fa.grad(per_example_loss), in_axes=(None, 0, 0))(w, X, y)
    np.testing.assert_allclose(eager, loop, rtol=1e-12)
    g = fa.compile(per_example_loss, backend=backend)
    np.testing.assert_allclose(g.batch(w, X, y, in_axes=(None, 0, 0)), loop, rtol=1e-12)


@pytest.mark.parametrize("f", [
    lambda x: np.sum(np.sin(x) * x ** 2),
    lambda x: np.cumsum(x[::-1])[1:] * x[0],
    lambda x: np.outer(x, x).T @ x,
    lambda x: np.linalg.solve(np.eye(3) * 4 + np.outer(x, x), x),
    lambda x: np.max(x) + np.linalg.slogdet(np.eye(3) + np.outer(x, x))[1],
    lambda x: np.concatenate([x, x[:1] * 2]).reshape(2, 2).sum(axis=0),
], ids=["elementwise", "cumsum-slices", "matmul", "solve", "reductions-det", "concat"])
def test_vmap_matches_loop(backend, f):
    X = rng.standard_normal((5, 3))
    loop = np.stack([f(x) for x in X])
    np.testing.assert_allclose(fa.vmap(f)(X), loop, rtol=1e-12)
    np.testing.assert_allclose(fa.jit(f, backend=backend).batch(X), loop, rtol=1e-12)
    np.testing.assert_allclose(fa.vmap(f, in_axes=1)(X.T), loop, rtol=1e-12)
    np.testing.assert_allclose(fa.vmap(f, out_axes=1)(X), loop.T if loop.ndim == 2 else loop,
                               rtol=1e-12)


def test_gradient_through_vmap():
    X = rng.standard_normal((4, 3))
    g = fa.grad(lambda X: np.sum(fa.vmap(lambda x: np.sum(np.sin(x) * x))(X)))(X)
    np.testing.assert_allclose(g, np.cos(X) * X + np.sin(X), rtol=1e-12)
    fa.check_grads(lambda X: fa.vmap(lambda x: fnp.logsumexp(x) * x[0])(X), (X,), order=2)


def test_index_update_under_vmap():
    def f(x):
        y = fnp.zeros(3)
        y[1] = x[0] * x[1]
        return y
    X = rng.standard_normal((4, 2))
    np.testing.assert_allclose(fa.vmap(f)(X), np.stack([f(x) for x in X]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), size=st.integers(1, 5), threshold=st.floats(-1.0, 1.0))
def test_examples_that_take_different_branches_run_one_at_a_time(seed, size, threshold):
    """Python control flow on a batched value (an ``if``, a while_loop whose
    trip count differs): when the examples disagree, vmap evaluates each one
    (with a warning) and stacks the results, as the loop over the examples
    would; when they agree, one batched tape.  Gradients too."""
    def f(x):
        if x.sum() > threshold:
            y = np.sin(x) * x[0]
        else:
            y = -x ** 2
        c = fa.while_loop(lambda c: c[1] < 3.0,
                          lambda c: (c[0] * 0.9 + y, c[1] + np.abs(x[1]) + 0.5), (x, 0.0))
        return c[0]
    X = np.random.default_rng(seed).standard_normal((size, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.vmap(f)(X)
        grads = fa.vmap(fa.jacobian(f))(X)
    np.testing.assert_allclose(got, np.stack([f(x) for x in X]), rtol=1e-13)
    np.testing.assert_allclose(grads, np.stack([fa.jacobian(f)(x) for x in X]), rtol=1e-12)


def test_divergent_branches_run_one_example_at_a_time_with_a_warning():
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    with pytest.warns(UserWarning, match="different branches"):
        got = fa.vmap(f)(np.array([[1.0, 2.0], [-3.0, -4.0]]))
    np.testing.assert_allclose(got, [[1.0, 2.0], [3.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the examples agree: one batched tape, no warning
        np.testing.assert_allclose(fa.vmap(f)(np.ones((2, 2))), np.ones((2, 2)))


def test_bad_axes():
    with pytest.raises(ValueError, match="batch sizes differ"):
        fa.vmap(lambda a, b: a + b)(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="no argument is batched"):
        fa.vmap(lambda a: a, in_axes=None)(np.ones(3))


def test_vmap_composes_with_jit_compile_and_grad(compiled_backend):
    def f(w, x):
        return np.sum(np.tanh(x @ w) ** 2)
    w, X = rng.standard_normal((3, 2)), rng.standard_normal((7, 3))
    loop_grads = np.stack([fa.grad(f)(w, x) for x in X])
    jitted = fa.jit(fa.vmap(fa.grad(f), in_axes=(None, 0)), backend=compiled_backend)
    np.testing.assert_allclose(jitted(w, X), loop_grads, rtol=1e-12, atol=1e-14)

    def total(w):  # a compiled gradient through a vmapped function
        return np.sum(fa.vmap(f, in_axes=(None, 0))(w, X))
    g = fa.compile(total, backend=compiled_backend)
    np.testing.assert_allclose(g(w), loop_grads.sum(axis=0), rtol=1e-12, atol=1e-14)
    fa.check_grads(total, (w,), order=2)


def test_keyword_arguments_axis_size_and_out_axes_as_jax():
    """JAX's vmap conventions: keyword arguments batched along axis 0,
    ``axis_size`` when nothing is batched, ``out_axes`` None for a shared
    result or a prefix of the result's structure; each against the loop."""
    rng = np.random.default_rng(4)
    x, s = rng.normal(size=(4, 3)), rng.normal(size=4)

    def f(a, scale=1.0):
        return {"v": np.sin(a) * scale, "n": np.sum(a ** 2), "c": np.arange(2.0)}
    got = fa.vmap(f, out_axes={"v": 1, "n": 0, "c": None})(x, scale=s)
    np.testing.assert_allclose(got["v"], np.stack([np.sin(x[k]) * s[k] for k in range(4)], 1))
    np.testing.assert_allclose(got["n"], np.sum(x ** 2, axis=1))
    np.testing.assert_array_equal(got["c"], np.arange(2.0))
    np.testing.assert_array_equal(fa.vmap(lambda a: a * 2.0, in_axes=None, axis_size=3)(x[0]),
                                  np.stack([x[0] * 2.0] * 3))
    loss = lambda w: np.sum(fa.vmap(f)(x, scale=s * w)["v"])  # noqa: E731
    d, h = fa.grad(loss)(0.7), 1e-6
    np.testing.assert_allclose(d, (loss(0.7 + h) - loss(0.7 - h)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(fa.jit(fa.grad(loss))(0.7), d, rtol=1e-13)
    with pytest.raises(ValueError, match="out_axes=None"):
        fa.vmap(lambda a: a, out_axes=None)(x)
    with pytest.raises(ValueError, match="axis_size=5"):
        fa.vmap(lambda a: a, axis_size=5)(x)
    with pytest.raises(ValueError, match="pass axis_size"):
        fa.vmap(lambda a: a, in_axes=None)(x)


_BRANCHES = [lambda v: v * 2.0, lambda v: -v, lambda v: fnp.sin(v) * v, lambda v: v ** 2 + 1.0,
             lambda v: fnp.exp(-v)]


@settings(max_examples=25, deadline=None)
@given(picks=st.lists(st.integers(0, len(_BRANCHES) - 1), min_size=2, max_size=4),
       seed=st.integers(0, 2**16), use_switch=st.booleans())
def test_cond_and_switch_under_vmap_select_per_example(picks, seed, use_switch):
    """A traced predicate (or index) under vmap runs every branch and selects
    each example's, as JAX's batched cond does: one batched tape, no
    per-example fallback, the same values and derivatives as the examples
    one at a time."""
    import warnings as _warnings
    branches = [_BRANCHES[k] for k in picks]

    def f(x):
        if use_switch:
            return fa.switch(fnp.sum(x > 0.0), branches, x)
        return fa.cond(fnp.sum(x) > 0.0, branches[0], branches[1], x)

    xs = np.random.default_rng(seed).normal(size=(6, 3))
    want = np.stack([f(x) for x in xs])
    with _warnings.catch_warnings():
        _warnings.filterwarnings("error", message=".*one example at a time")
        np.testing.assert_allclose(fa.vmap(f)(xs), want, rtol=1e-13)
        np.testing.assert_allclose(fa.jit(fa.vmap(f))(xs), want, rtol=1e-13)
        g = fa.grad(lambda xs: fnp.sum(fa.vmap(f)(xs) ** 2))(xs)
    g_each = np.stack([fa.grad(lambda x: fnp.sum(f(x) ** 2))(x) for x in xs])
    np.testing.assert_allclose(g, g_each, rtol=1e-12, atol=1e-14)
