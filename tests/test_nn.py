"""``fastad.nn`` (JAX's ``jax.nn``): values against independent NumPy/SciPy
formulas, derivatives of both modes to second order against central
differences (away from the kinks: the "offint" domain keeps every argument
away from the integers where relu6, hard_tanh and friends bend), float32 and
float64; the kink derivatives JAX chooses; and, where JAX is installed (an
optional extra), values and gradients against ``jax.nn`` itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.nn as nn
import fastad.numpy as fnp
from helpers import case_test, one_shape, registrar

CASES: list = []
case = registrar(CASES)


def _npsig(x):
    return sc.expit(x)


ORACLES = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "softplus": lambda x: np.logaddexp(x, 0),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
    "soft_sign": lambda x: x / (1 + np.abs(x)),
    "silu": lambda x: x * _npsig(x),
    "swish": lambda x: x * _npsig(x),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "celu": lambda x: np.maximum(x, 0) + np.expm1(np.minimum(x, 0)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "mish": lambda x: x * np.tanh(np.logaddexp(x, 0)),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "sigmoid": _npsig,
    "log_sigmoid": lambda x: -np.logaddexp(-x, 0),
    "tanh": np.tanh,
    "identity": lambda x: x,
}
TOL = {"atol": 1e-5, "rtol": 1e-4}

for _name, _oracle in ORACLES.items():
    case(_name, ["offint"], one_shape(max_dims=2), oracle=_oracle, tolerances=TOL,
         f32_tolerances={"atol": 3e-2, "rtol": 3e-2})(getattr(nn, _name))


@case("gelu exact", ["offint"], one_shape(max_dims=2), tolerances=TOL,
      oracle=lambda x: 0.5 * x * (1 + sc.erf(x / math.sqrt(2))),
      f32_tolerances={"atol": 3e-2, "rtol": 3e-2})
def _gelu_exact(x):
    return nn.gelu(x, approximate=False)


@case("elu alpha", ["offint"], one_shape(max_dims=2), tolerances=TOL,
      oracle=lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0))),
      f32_tolerances={"atol": 3e-2, "rtol": 3e-2})
def _elu_alpha(x):
    return nn.elu(x, alpha=0.5)


def _np_log_softmax(x, axis=-1):
    return x - sc.logsumexp(x, axis=axis, keepdims=True)


@case("log_softmax", ["real"], lambda d: ((d.draw(st.sampled_from([(3,), (2, 4), (3, 2, 2)])),), {}),
      oracle=_np_log_softmax, tolerances=TOL, f32_tolerances={"atol": 3e-2, "rtol": 3e-2})
def _log_softmax(x):
    return nn.log_softmax(x)


@case("softmax axis 0", ["real"], lambda d: ((d.draw(st.sampled_from([(3,), (2, 4)])),), {}),
      oracle=lambda x: np.exp(_np_log_softmax(x, 0)), tolerances=TOL,
      f32_tolerances={"atol": 3e-2, "rtol": 3e-2})
def _softmax0(x):
    return nn.softmax(x, axis=0)


@case("standardize", ["real"], lambda d: ((d.draw(st.sampled_from([(3,), (2, 4)])),), {}),
      oracle=lambda x: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5),
      tolerances={"atol": 1e-4, "rtol": 1e-3}, f32_tolerances={"atol": 5e-2, "rtol": 5e-2})
def _standardize(x):
    return nn.standardize(x)


@case("glu", ["real"], lambda d: ((d.draw(st.sampled_from([(4,), (3, 2)])),), {}),
      oracle=lambda x: np.split(x, 2, -1)[0] * _npsig(np.split(x, 2, -1)[1]), tolerances=TOL,
      f32_tolerances={"atol": 3e-2, "rtol": 3e-2})
def _glu(x):
    return nn.glu(x)


test_values_and_derivatives = case_test(CASES)


def test_kink_derivatives_are_jax_choices():
    at = np.array([0.0, 6.0, -1.0, 1.0, -3.0, 3.0])
    expect = {"relu": [0, 1, 0, 1, 0, 1], "relu6": [0, 0, 0, 1, 0, 1],
              "hard_tanh": [1, 0, 1, 1, 0, 0], "leaky_relu": [1, 1, 0.01, 1, 0.01, 1]}
    for name, want in expect.items():
        f = getattr(nn, name)
        for g in (fa.grad(lambda x: fnp.sum(f(x))), fa.compile(lambda x: fnp.sum(f(x)))):
            np.testing.assert_array_equal(g(at), want, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.sampled_from([-1, 0, 1]))
def test_one_hot_of_plain_and_data_integers(seed, k, axis):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, k + 1, (3, 2))  # out of range: all zeros
    got = nn.one_hot(labels, k, axis=axis)
    want = np.moveaxis((labels[..., None] == np.arange(k)).astype(float), -1, axis)
    np.testing.assert_array_equal(got, want)
    w = rng.standard_normal(want.shape)

    def loss(w, labels):
        return fnp.sum(nn.one_hot(labels, k, axis=axis) * w ** 2)
    g = fa.compile(loss)
    for _ in range(2):  # new labels reuse the trace: integers are data
        labels = rng.integers(0, k, (3, 2))
        want = np.moveaxis((labels[..., None] == np.arange(k)).astype(float), -1, axis)
        np.testing.assert_allclose(g(w, labels), 2 * w * want, rtol=1e-14)
    assert g.cache_info()["traces"] == 1
    with pytest.raises(TypeError, match="num_classes"):
        nn.one_hot(labels, 2.0)


def test_masked_softmax_and_infinities():
    x = np.array([[1.0, 2.0, 3.0], [-np.inf, 0.5, 0.5]])
    mask = np.array([[True, True, False], [True, True, True]])
    got = nn.softmax(x, where=mask)
    np.testing.assert_allclose(got[0], [1 / (1 + np.e), np.e / (1 + np.e), 0.0], rtol=1e-14)
    np.testing.assert_allclose(got[1], [0.0, 0.5, 0.5], rtol=1e-14)
    g = fa.grad(lambda t: fnp.sum(nn.softmax(t, where=mask) * np.arange(3.0)))(x)
    assert np.all(np.isfinite(g)) and g[0, 2] == 0.0


def test_against_jax_nn_where_installed():
    jnn = pytest.importorskip("jax.nn")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    x = np.linspace(-4.3, 7.1, 23)
    for name in list(ORACLES) + ["log_softmax", "softmax", "standardize", "glu"]:
        if name == "identity":
            continue
        ours, theirs = getattr(nn, name), getattr(jnn, name)
        np.testing.assert_allclose(ours(x[:22]), np.asarray(theirs(x[:22])), rtol=1e-12,
                                   atol=1e-12, err_msg=name)
        g = fa.grad(lambda t: fnp.sum(ours(t) ** 2))(x[:22])
        jg = jax.grad(lambda t: (theirs(t) ** 2).sum())(x[:22])
        np.testing.assert_allclose(g, np.asarray(jg), rtol=1e-10, atol=1e-12, err_msg=name)


def _attention_reference(q, k, v, bias, mask, causal, scale):
    """Softmax attention per batch and head, by loops over NumPy arrays."""
    b, t, n, h = q.shape
    s, heads = k.shape[1], k.shape[2]
    out = np.zeros_like(q)
    for i in range(b):
        for j in range(n):
            kj = j // (n // heads)
            logits = q[i, :, j] @ k[i, :, kj].T * scale
            if bias is not None:
                logits = logits + bias[i, j]
            keep = np.ones((t, s), bool) if mask is None else mask[i, j].copy()
            if causal:
                keep &= np.tril(np.ones((t, s), bool))
            logits = np.where(keep, logits, -1e300)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            out[i, :, j] = (p / p.sum(-1, keepdims=True)) @ v[i, :, kj]
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.integers(1, 4), s=st.integers(1, 5),
       heads=st.sampled_from([(2, 1), (2, 2), (4, 2)]), causal=st.booleans(),
       masked=st.booleans(), biased=st.booleans())
def test_dot_product_attention(seed, t, s, heads, causal, masked, biased):
    r = np.random.default_rng(seed)
    n, kh = heads
    s = max(s, t) if causal else s  # a causal row keeps its first key
    q, k, v = r.normal(size=(2, t, n, 3)), r.normal(size=(2, s, kh, 3)), r.normal(size=(2, s, kh, 3))
    bias = r.normal(size=(2, n, t, s)) if biased else None
    mask = None
    if masked:
        mask = r.uniform(size=(2, n, t, s)) > 0.3
        mask[..., 0] = True  # every row attends somewhere
    want = _attention_reference(q, k, v, bias, mask, causal, 1 / math.sqrt(3))
    got = nn.dot_product_attention(q, k, v, bias, mask, is_causal=causal)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    fa.check_grads(lambda q, k, v: nn.dot_product_attention(q, k, v, bias, mask,
                                                            is_causal=causal), (q, k, v), order=1)
    np.testing.assert_allclose(nn.dot_product_attention(q[0], k[0], v[0], is_causal=causal),
                               _attention_reference(q[:1], k[:1], v[:1], None, None, causal,
                                                    1 / math.sqrt(3))[0], rtol=1e-12, atol=1e-13)


def test_log1mexp_and_logmeanexp():
    x = np.array([1e-10, 1e-3, 0.3, math.log(2.0), 0.7, 5.0, 50.0])
    want = [math.log(-math.expm1(-v)) if v < 1 else math.log1p(-math.exp(-v)) for v in x]
    np.testing.assert_allclose(nn.log1mexp(x), want, rtol=1e-13)
    fa.check_grads(lambda x: nn.log1mexp(x), (x[1:],), order=2)
    a = np.random.default_rng(0).normal(size=(3, 5))
    where = a > -0.5
    np.testing.assert_allclose(nn.logmeanexp(a, axis=1),
                               np.log(np.mean(np.exp(a), axis=1)), rtol=1e-13)
    np.testing.assert_allclose(nn.logmeanexp(a, axis=1, where=where),
                               [np.log(np.mean(np.exp(r[w]))) for r, w in zip(a, where)],
                               rtol=1e-13)
    fa.check_grads(lambda a: nn.logmeanexp(a, axis=0), (a,), order=2)
