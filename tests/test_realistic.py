"""Realistic functions: fastad's gradients agree with autograd's (to 1e-10
relative), eagerly, under fa.compile and under fa.jit; and pass second-order
checks in both modes.

Each function is written once against a NumPy-like module ``np_``: plain
``numpy`` for fastad (it traces through NumPy's dispatch) and
``autograd.numpy`` for autograd.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

rng = np.random.default_rng(0)


def rosenbrock_loop(np_, x):
    total = 0.0
    for i in range(len(x) - 1):
        total = total + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return total


def rosenbrock_vectorized(np_, x):
    return np_.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _logsumexp(np_, z):
    m = np_.max(z, axis=1, keepdims=True)
    return np_.log(np_.sum(np_.exp(z - m), axis=1, keepdims=True)) + m


MLP_X = rng.standard_normal((8, 5))
MLP_LABELS = np.eye(3)[rng.integers(0, 3, 8)]


def mlp_loss(np_, params):
    """Two-layer MLP, softmax cross-entropy over a fixed batch."""
    (w1, b1), (w2, b2) = params
    hidden = np_.tanh(np_.dot(MLP_X, w1) + b1)
    logits = np_.dot(hidden, w2) + b2
    log_probs = logits - _logsumexp(np_, logits)
    return -np_.mean(np_.sum(MLP_LABELS * log_probs, axis=1))


LR_X = rng.standard_normal((20, 4))
LR_Y = (rng.uniform(size=20) < 0.5).astype(float)


def logistic_regression(np_, w):
    z = np_.dot(LR_X, w[:-1]) + w[-1]
    # -log-likelihood, written stably: log(1 + exp(z)) - y z
    return np_.sum(np_.logaddexp(0.0, z) - LR_Y * z) + 0.1 * np_.sum(w ** 2)


GAUSS_X = rng.standard_normal((6, 3))


def gaussian_log_likelihood(np_, mean, chol):
    """Log-density of GAUSS_X's rows under N(mean, L L^T + 0.5 I)."""
    cov = np_.dot(chol, chol.T) + 0.5 * np_.eye(3)
    centered = GAUSS_X - mean
    sign, logdet = np_.linalg.slogdet(cov)
    maha = np_.sum(centered * np_.linalg.solve(cov, centered.T).T)
    n, d = GAUSS_X.shape
    return -0.5 * (maha + n * logdet + n * d * np_.log(2 * np_.pi))


CASES = {
    "rosenbrock_loop": (rosenbrock_loop, (rng.uniform(-1.5, 1.5, 6),)),
    "rosenbrock_vectorized": (rosenbrock_vectorized, (rng.uniform(-1.5, 1.5, 30),)),
    "mlp": (mlp_loss, (((0.5 * rng.standard_normal((5, 4)), 0.1 * rng.standard_normal(4)),
                        (0.5 * rng.standard_normal((4, 3)), 0.1 * rng.standard_normal(3))),)),
    "logistic_regression": (logistic_regression, (rng.standard_normal(5),)),
    "gaussian_log_likelihood": (gaussian_log_likelihood,
                                (rng.standard_normal(3), rng.standard_normal((3, 3)))),
}
ARGNUMS = {"gaussian_log_likelihood": (0, 1)}


def _flat(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _flat(t)]
    return [np.asarray(tree)]


def _assert_trees_close(got, want, rtol=1e-10):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(w))))


def _functions(name):
    fn, args = CASES[name]
    argnums = ARGNUMS.get(name, 0)
    ours = lambda *a: fn(np, *a)  # noqa: E731
    theirs = lambda *a: fn(anp, *a)  # noqa: E731
    expected_value = theirs(*args)
    expected_grad = autograd.grad(theirs, argnums)(*args)
    return ours, args, argnums, expected_value, expected_grad


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_agrees_with_autograd(name):
    ours, args, argnums, value, expected = _functions(name)
    got_value, got = fa.value_and_grad(ours, argnums)(*args)
    assert got_value == pytest.approx(value, rel=1e-12)
    _assert_trees_close(got, expected)


@pytest.mark.parametrize("backend", ["numpy", "auto"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_gradient_agrees_with_autograd(name, backend):
    ours, args, argnums, value, expected = _functions(name)
    compiled = fa.compile(ours, argnums=argnums, backend=backend)
    for _ in range(2):  # the second call replays the cached program
        got_value, got = compiled.value_and_grad(*args)
        assert got_value == pytest.approx(value, rel=1e-12)
        _assert_trees_close(got, expected)
    _assert_trees_close(compiled(*args), expected)
    assert compiled.value(*args) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "auto"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_gradient_agrees_with_autograd(name, backend):
    ours, args, argnums, value, expected = _functions(name)
    jitted = fa.jit(fa.value_and_grad(ours, argnums), backend=backend)
    for _ in range(2):
        got_value, got = jitted(*args)
        assert got_value == pytest.approx(value, rel=1e-12)
        _assert_trees_close(got, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_order_in_both_modes(name):
    ours, args, argnums, _, _ = _functions(name)
    fa.check_grads(ours, args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", ["rosenbrock_loop", "rosenbrock_vectorized",
                                  "logistic_regression"])
def test_hessian_agrees_with_autograd(name):
    ours, args, _, _, _ = _functions(name)
    fn = CASES[name][0]
    expected = autograd.hessian(lambda x: fn(anp, x))(*args)
    _assert_trees_close(fa.hessian(ours)(*args), expected)
    v = rng.standard_normal(args[0].shape)
    _assert_trees_close(fa.compile(ours, backend="numpy").hvp(args[0], v), expected @ v)


def test_float32_gradients_follow_float64_ones():
    ours, args, _, _, expected = _functions("rosenbrock_vectorized")
    x32 = args[0].astype(np.float32)
    got = fa.grad(ours)(x32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
