"""fastad.random (JAX's jax.random): JAX's bits where JAX is installed, every
sampler's distribution against SciPy's moments, reparameterized derivatives
against central differences, compiled draws equal to eager ones for each key
without tracing again, and vmap over keys."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs

import fastad as fa
import fastad.numpy as fnp
from fastad import random
from conftest import BACKENDS
from helpers import case_test, one_shape, registrar

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)

pytestmark = pytest.mark.filterwarnings("ignore:fastad:UserWarning")  # erfinv's host call

KEY = random.PRNGKey(1234)
N = 40_000

# -- the primitives' cases (tests/test_primitives.py collects CASES) ---------------------
CASES: list = []
case = registrar(CASES, dtypes=(np.float64,), order=1)


@case("random_gamma", ["pos"], one_shape(), covers=["prng_gamma"])
def _gamma(x):
    return random.gamma(KEY, x + 0.5, np.shape(x)) * x


@case("gamma_slope", ["pos"], one_shape(), covers=["gamma_slope"],
      tolerances={"rtol": 1e-3, "atol": 1e-5})
def _gamma_slope(x):
    """A gamma draw's derivative in its shape, differentiated again (its
    derivative in a is a central difference: checked loosely)."""
    return fa.grad(lambda a: fnp.sum(random.gamma(KEY, a, np.shape(a)) * a))(x + 1.0)


test_primitive_cases = case_test(CASES)

# the draws whose operand is a key, which a case cannot draw: checked below,
# the key an argument of compiled functions
ELSEWHERE = {name: "test_compiled_draws_follow_the_key" for name in
             ("prng_split", "prng_fold_in", "prng_uniform", "prng_normal", "prng_bits",
              "prng_randint", "prng_permutation", "prng_poisson", "prng_binomial")}

# sampler(key, shape) and the scipy.stats distribution it draws from
DISTRIBUTIONS = {
    "uniform": (lambda k, s: random.uniform(k, s, minval=-2.0, maxval=3.0),
                st.uniform(-2.0, 5.0)),
    "normal": (lambda k, s: random.normal(k, s), st.norm()),
    "truncated_normal": (lambda k, s: random.truncated_normal(k, -0.5, 1.5, s),
                         st.truncnorm(-0.5, 1.5)),
    "exponential": (lambda k, s: random.exponential(k, s), st.expon()),
    "laplace": (lambda k, s: random.laplace(k, s), st.laplace()),
    "logistic": (lambda k, s: random.logistic(k, s), st.logistic()),
    "gumbel": (lambda k, s: random.gumbel(k, s), st.gumbel_r()),
    "lognormal": (lambda k, s: random.lognormal(k, 0.5, s), st.lognorm(0.5)),
    "pareto": (lambda k, s: random.pareto(k, 5.0, s), st.pareto(5.0)),
    "weibull_min": (lambda k, s: random.weibull_min(k, 1.5, 2.0, s), st.weibull_min(2.0, scale=1.5)),
    "rayleigh": (lambda k, s: random.rayleigh(k, 2.0, s), st.rayleigh(scale=2.0)),
    "maxwell": (lambda k, s: random.maxwell(k, s), st.maxwell()),
    "wald": (lambda k, s: random.wald(k, 1.5, s), st.invgauss(1.5)),
    "triangular": (lambda k, s: random.triangular(k, -1.0, 0.5, 2.0, s),
                   st.triang(0.5, loc=-1.0, scale=3.0)),
    "gamma": (lambda k, s: random.gamma(k, 2.5, s), st.gamma(2.5)),
    "beta": (lambda k, s: random.beta(k, 2.0, 3.0, s), st.beta(2.0, 3.0)),
    "chisquare": (lambda k, s: random.chisquare(k, 4.0, s), st.chi2(4.0)),
    "t": (lambda k, s: random.t(k, 6.0, s), st.t(6.0)),
    "f": (lambda k, s: random.f(k, 5.0, 12.0, s), st.f(5.0, 12.0)),
    "poisson": (lambda k, s: random.poisson(k, 3.5, s), st.poisson(3.5)),
    "binomial": (lambda k, s: random.binomial(k, 12, 0.3, s), st.binom(12, 0.3)),
    "geometric": (lambda k, s: random.geometric(k, 0.3, s), st.geom(0.3)),
    "randint": (lambda k, s: random.randint(k, s, -3, 9), st.randint(-3, 9)),
    "bernoulli": (lambda k, s: random.bernoulli(k, 0.3, s), st.bernoulli(0.3)),
    "rademacher": (lambda k, s: random.rademacher(k, s), st.rv_discrete(values=([-1, 1], [.5, .5]))),
    "bits": (lambda k, s: random.bits(k, s), st.uniform(0, 2.0 ** 32)),
    "fold_in_normal": (lambda k, s: random.normal(random.fold_in(k, 5), s), st.norm()),
    "permutation": (lambda k, s: random.permutation(k, s[0]), st.randint(0, N)),
    "generalized_normal": (lambda k, s: random.generalized_normal(k, 3.0, s), st.gennorm(3.0)),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_distribution_moments(name):
    """Mean and variance of N draws within 5 standard errors of SciPy's."""
    sampler, dist = DISTRIBUTIONS[name]
    x = np.asarray(sampler(KEY, (N,)), dtype=np.float64)
    assert x.shape == (N,)
    mean, var = dist.mean(), dist.var()
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / N)
    fourth = dist.moment(4) - 4 * mean * dist.moment(3) + 6 * mean ** 2 * dist.moment(2) \
        - 3 * mean ** 4
    # (the second term: the sample mean's own spread, var/N per unit of z^2)
    assert abs(x.var() - var) < 5 * np.sqrt(max(fourth - var ** 2, 0.0) / N) + 25 * var / N
    # a function of the key: the same key, the same draws; another key, others
    np.testing.assert_array_equal(np.asarray(sampler(KEY, (7,))), np.asarray(sampler(KEY, (7,))))
    assert not np.array_equal(np.asarray(sampler(KEY, (50,))),
                              np.asarray(sampler(random.fold_in(KEY, 1), (50,))))


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_compiled_draws_follow_the_key(name):
    """A compiled function taking the key as an argument draws what the eager
    function draws, for each new key, from one trace."""
    sampler = DISTRIBUTIONS[name][0]

    def f(key):
        return sampler(key, (5,))

    g = jit(f)
    for k in random.split(KEY, 3):
        e, c = f(k), g(k)
        np.testing.assert_allclose(np.asarray(c, dtype=float), np.asarray(e, dtype=float),
                                   rtol=1e-14)
        assert np.asarray(c).dtype == np.asarray(e).dtype
    assert g.cache_info()["traces"] == 1


def test_keys_split_fold_in_and_dtypes():
    keys = random.split(KEY, (2, 3))
    assert keys.shape == (2, 3, 2) and keys.dtype == np.uint32
    assert len({tuple(k) for k in keys.reshape(-1, 2)}) == 6
    assert random.fold_in(KEY, 3).dtype == np.uint32
    assert random.normal(KEY, (3,), np.float32).dtype == np.float32
    assert random.randint(KEY, (3,), 0, 5, np.int32).dtype == np.int32
    assert random.bits(KEY, (2,), np.uint8).dtype == np.uint8
    np.testing.assert_array_equal(random.key_data(random.key(7)), random.PRNGKey(7))
    u = np.asarray(random.uniform(KEY, (1000,), minval=2.0, maxval=2.5))
    assert u.min() >= 2.0 and u.max() < 2.5


def test_jax_bits_where_installed():
    jax = pytest.importorskip("jax")
    jr, jnp = jax.random, jax.numpy
    for seed in (0, 42, 2 ** 31 - 1):
        k, jk = random.PRNGKey(seed), jr.PRNGKey(seed)
        np.testing.assert_array_equal(k, np.asarray(jk))
        for num in (2, 3, (2, 2)):
            np.testing.assert_array_equal(random.split(k, num), np.asarray(jr.split(jk, num)))
        np.testing.assert_array_equal(random.fold_in(k, 17), np.asarray(jr.fold_in(jk, 17)))
        np.testing.assert_array_equal(random.bits(k, (3, 5)),
                                      np.asarray(jr.bits(jk, (3, 5), jnp.uint32)))
        np.testing.assert_array_equal(random.uniform(k, (9,), np.float32),
                                      np.asarray(jr.uniform(jk, (9,), jnp.float32)))
        np.testing.assert_array_equal(random.randint(k, (9,), -4, 100, np.int32),
                                      np.asarray(jr.randint(jk, (9,), -4, 100, jnp.int32)))
        np.testing.assert_array_equal(random.permutation(k, 12), np.asarray(jr.permutation(jk, 12)))
        np.testing.assert_allclose(random.normal(k, (9,), np.float32),
                                   np.asarray(jr.normal(jk, (9,), jnp.float32)), rtol=2e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(
            random.categorical(k, np.log(np.array([0.1, 0.2, 0.7], np.float32)), shape=(6,)),
            np.asarray(jr.categorical(jk, jnp.log(jnp.array([0.1, 0.2, 0.7], jnp.float32)),
                                      shape=(6,))))


# (function of theta and a key, theta) whose derivative in theta is a reparameterization
REPARAMETERIZED = [
    (lambda th, k: random.uniform(k, (4,), minval=th[0], maxval=th[1]), np.array([-1.0, 2.0])),
    (lambda th, k: th[0] + th[1] * random.normal(k, (4,)), np.array([0.3, 1.7])),
    (lambda th, k: random.truncated_normal(k, th[0], th[1], (4,)), np.array([-0.7, 1.2])),
    (lambda th, k: random.multivariate_normal(
        k, th[:2], fnp.array([[th[2], 0.3], [0.3, th[3]]]), (3,)), np.array([0.1, -0.2, 1.5, 2.0])),
    (lambda th, k: random.lognormal(k, th[0], (4,)), np.array([0.6])),
    (lambda th, k: random.pareto(k, th[0], (4,)), np.array([3.0])),
    (lambda th, k: random.weibull_min(k, th[0], th[1], (4,)), np.array([1.2, 2.5])),
    (lambda th, k: random.rayleigh(k, th[0], (4,)), np.array([1.3])),
    (lambda th, k: random.triangular(k, th[0], th[1], th[2], (4,)), np.array([-1.0, 0.2, 1.5])),
    (lambda th, k: random.double_sided_maxwell(k, th[0], th[1], (4,)), np.array([0.5, 1.5])),
    (lambda th, k: th[0] * random.exponential(k, (4,)) + th[1] * random.laplace(k, (4,))
     + th[2] * random.cauchy(k, (4,)), np.array([1.0, 2.0, 0.1])),
]


@pytest.mark.parametrize("case", range(len(REPARAMETERIZED)))
def test_reparameterized_derivatives(case):
    f, theta = REPARAMETERIZED[case]
    for k in random.split(KEY, 2):
        fk = functools.partial(lambda th, key: f(th, key), key=k)
        fa.check_grads(fk, (theta,), order=2, modes=("fwd", "rev"))
        g = jit(fa.jacobian(f))
        np.testing.assert_allclose(g(theta, k), fa.jacobian(f)(theta, k), rtol=1e-12, atol=1e-14)


@settings(max_examples=15, deadline=None)
@given(hs.floats(0.3, 8.0), hs.integers(0, 2 ** 32 - 1))
def test_gamma_shape_derivative(a, seed):
    """gamma's derivative in a is the implicit one: x moved at its CDF value
    held fixed, x(a) = P^-1(a, P(a0, x0))."""
    k = random.PRNGKey(seed)
    x0 = np.asarray(random.gamma(k, a, (3,)))
    u = sc.gammainc(a, x0)
    h = 1e-5 * a
    fd = (sc.gammaincinv(a + h, u) - sc.gammaincinv(a - h, u)) / (2 * h)
    keep = (u > 1e-6) & (u < 1 - 1e-6)
    jac = fa.jacobian(lambda a: random.gamma(k, a, (3,)))(a)
    np.testing.assert_allclose(jac[keep], fd[keep], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(jit(fa.jacobian(lambda a, k: random.gamma(k, a, (3,))))(a, k), jac,
                               rtol=1e-12)


def test_training_step_with_keys_compiles_once():
    """Dropout and a minibatch drawn from a key passed per step (JAX's
    convention), compiled gradients equal to eager ones for each key."""
    def loss(w, x, key):
        k1, k2 = random.split(key)
        mask = random.bernoulli(k1, 0.8, x.shape)
        rows = random.permutation(k2, x.shape[0])[:4]
        h = fnp.where(mask, fnp.tanh(x @ w), 0.0) / 0.8
        pick = random.choice(k2, x.shape[0], (3,), replace=False)
        return fnp.sum(h[rows] ** 2) + fnp.sum(h[pick])

    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(3, 3)), rng.normal(size=(8, 3))
    g = jit(fa.value_and_grad(loss))
    for k in random.split(KEY, 4):
        v, dw = g(w, x, k)
        ve, dwe = fa.value_and_grad(loss)(w, x, k)
        np.testing.assert_allclose(v, ve, rtol=1e-13)
        np.testing.assert_allclose(dw, dwe, rtol=1e-12, atol=1e-14)
    assert g.cache_info()["traces"] == 1


def test_vmap_over_keys():
    def f(key, scale):
        return scale * random.normal(key, (3,)) + random.uniform(random.fold_in(key, 1))

    keys = random.split(KEY, 5)
    expect = np.stack([f(k, 2.0) for k in keys])
    np.testing.assert_allclose(fa.vmap(f, in_axes=(0, None))(keys, 2.0), expect, rtol=1e-15)
    np.testing.assert_allclose(jit(fa.vmap(f, in_axes=(0, None)))(keys, 2.0), expect, rtol=1e-15)


def test_keys_returned_from_compiled_functions():
    def step(key):
        key, sub = random.split(key)
        return key, random.normal(sub, (2,))

    k, z = jit(step)(KEY)
    ke, ze = step(KEY)
    assert k.dtype == np.uint32
    np.testing.assert_array_equal(k, ke)
    np.testing.assert_allclose(z, ze, rtol=1e-15)


def test_discrete_samplers_and_orderings():
    x = np.arange(10.0) * 3
    p = random.permutation(KEY, x)
    np.testing.assert_array_equal(np.sort(p), x)
    q = random.permutation(KEY, np.arange(12.0).reshape(3, 4), axis=1, independent=True)
    np.testing.assert_array_equal(np.sort(q, axis=1), np.arange(12.0).reshape(3, 4))
    c = random.choice(KEY, 6, (200,), p=np.array([0.0, 0.5, 0.0, 0.5, 0.0, 0.0]))
    assert set(np.unique(c)) <= {1, 3}
    c = random.choice(KEY, 7, (7,), replace=False)
    np.testing.assert_array_equal(np.sort(c), np.arange(7))
    m = random.multinomial(KEY, 20, np.array([0.2, 0.3, 0.5]), shape=(4,))
    assert m.shape == (4, 3) and np.all(m.sum(-1) == 20)
    d = random.dirichlet(KEY, np.array([1.0, 2.0, 3.0]), (5,))
    np.testing.assert_allclose(d.sum(-1), 1.0)
    o = random.orthogonal(KEY, 4, (2,))
    np.testing.assert_allclose(np.swapaxes(o, -1, -2) @ o, np.broadcast_to(np.eye(4), (2, 4, 4)),
                               atol=1e-12)
    b = random.ball(KEY, 3, shape=(100,))
    assert np.all(np.linalg.norm(b, axis=-1) <= 1.0)
    logits = np.log(np.array([0.05, 0.15, 0.8]))
    draws = random.categorical(KEY, logits, shape=(N,))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / N, np.exp(logits), atol=0.01)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="two uint32 words"):
        random.normal(np.zeros(3, np.uint32), (2,))
    with pytest.raises(TypeError, match="PRNG seed"):
        random.PRNGKey(1.5)
    with pytest.raises(TypeError, match="integer dtype"):
        random.randint(KEY, (2,), 0, 4, np.float64)
    with pytest.raises(TypeError, match="float dtype"):
        random.normal(KEY, (2,), np.int32)
    with pytest.raises(ValueError, match="without replacement"):
        random.choice(KEY, 3, (4,), replace=False)
    with pytest.raises(ValueError, match="two uint32 words"):
        jit(lambda ks: random.normal(ks, (2,)))(random.split(KEY, 3))
