"""fastad.scipy.stats: log densities, densities and distribution functions
against scipy.stats, derivatives in the argument and the parameters (both
modes, second order) against finite differences; compiled against the
reference.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.scipy.stats as fst
from conftest import BACKENDS
from helpers import DOMAINS, Case, broadcast_pair, case_test, shapes

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"

DOMAINS.setdefault("prob", lambda rng, shape: rng.uniform(0.1, 0.9, shape))
DOMAINS.setdefault("shape_param", lambda rng, shape: rng.uniform(1.5, 4.0, shape))
CASES: list[Case] = []
#: the primitive checked here rather than by a Case (its derivative is refused)
ELSEWHERE = {"no_derivative": "test_multivariate_normal_allows_a_singular_covariance_as_scipys"}


def as_input_dtype(oracle):
    """scipy.stats computes in float64; fastad keeps float32 inputs float32."""
    def cast(*args):
        dtype = np.result_type(*args)
        return tuple(np.asarray(v).astype(dtype)[()] for v in oracle(*args))
    return cast


def pair(data):
    return data.draw(broadcast_pair(), label="shapes")


def scalars_and(data, n):
    """The argument's shape, then n scalar parameters."""
    return (data.draw(shapes(), label="shape"),) + ((),) * n, {}


# float32: densities curve enough that the default step (1e-2) misleads finite differences
F32 = {"eps": 3e-3, "rtol": 0.05}


def add(name, domains, draw, fn, oracle, **kw):
    CASES.append(Case(name, fn, tuple(domains), draw, oracle=as_input_dtype(oracle),
                      f32_tolerances=F32, **kw))


def _norm(module):
    def f(x, loc, scale):
        d = module.norm
        return (d.logpdf(x, loc, scale), d.pdf(x, loc, scale), d.cdf(x, loc, scale),
                d.logcdf(x, loc, scale), d.sf(x, loc, scale), d.logsf(x, loc, scale))
    return f


add("norm", ["real", "real", "pos"], lambda data: scalars_and(data, 2), _norm(fst), _norm(ss),
    covers=("ndtr", "log_ndtr"))


def _norm_ppf(module):
    return lambda q, loc, scale: (module.norm.ppf(q, loc, scale),)


add("norm_ppf", ["prob", "real", "pos"], lambda data: scalars_and(data, 2), _norm_ppf(fst),
    _norm_ppf(ss), covers=("ndtri",))


def _t(module):
    def f(x, df, loc, scale):
        return module.t.logpdf(x, df, loc, scale), module.t.pdf(x, df, loc, scale)
    return f


add("t", ["real", "shape_param", "real", "pos"], lambda data: scalars_and(data, 3), _t(fst),
    _t(ss), covers=("gammaln",))


def _t_cdf(module):
    return lambda x, loc, scale: (module.t.cdf(x, 3.5, loc, scale), module.t.sf(x, 3.5, loc, scale))


add("t_cdf", ["real", "real", "pos"], lambda data: scalars_and(data, 2), _t_cdf(fst), _t_cdf(ss),
    covers=("stdtr",))


def _gamma(module):
    def f(x, a, scale):
        return (module.gamma.logpdf(x, a, 0.0, scale), module.gamma.pdf(x, a, 0.0, scale))
    return f


add("gamma", ["pos", "shape_param", "pos"], lambda data: scalars_and(data, 2), _gamma(fst),
    _gamma(ss), covers=("xlogy", "gammaln"))


def _gamma_cdf(module):
    return lambda x, scale: (module.gamma.cdf(x, 2.5, 0.0, scale),)


add("gamma_cdf", ["pos", "pos"], lambda data: scalars_and(data, 1), _gamma_cdf(fst),
    _gamma_cdf(ss), covers=("gammainc",))


def _beta(module):
    def f(x, a, b):
        return module.beta.logpdf(x, a, b), module.beta.pdf(x, a, b)
    return f


add("beta", ["prob", "shape_param", "shape_param"], lambda data: scalars_and(data, 2), _beta(fst),
    _beta(ss), covers=("xlog1py", "betaln"))


def _beta_cdf(module):
    return lambda x: (module.beta.cdf(x, 2.5, 1.5),)


add("beta_cdf", ["prob"], lambda data: ((data.draw(shapes()),), {}), _beta_cdf(fst),
    _beta_cdf(ss), covers=("betainc",))

COUNTS = np.array([0.0, 1.0, 3.0, 7.0])


def _poisson(module):
    def f(mu):
        mu, k = np.expand_dims(mu, -1), COUNTS.astype(mu.dtype)
        return (module.poisson.logpmf(k, mu), module.poisson.pmf(k, mu),
                module.poisson.cdf(k, mu))
    return f


add("poisson", ["pos"], lambda data: ((data.draw(shapes(max_dims=2)),), {}), _poisson(fst),
    _poisson(ss), covers=("gammaincc",))


@st.composite
def mvn_args(draw):
    d = draw(st.integers(1, 3))
    rows = draw(st.sampled_from([(), (2,), (3,)]))
    return (rows + (d,), (d,), (d, d)), {}


def _mvn(module):
    def f(x, mean, cov):
        return (module.multivariate_normal.logpdf(x, mean, cov),
                module.multivariate_normal.pdf(x, mean, cov))
    return f


def _spd_cov(rng, shape):
    n = shape[-1]
    m = rng.uniform(-0.5, 0.5, shape)
    return m @ m.T + np.eye(n)


DOMAINS.setdefault("covariance", _spd_cov)
add("multivariate_normal", ["real", "real", "covariance"], lambda data: data.draw(mvn_args()),
    _mvn(fst), _mvn(ss), covers=("cholesky", "solve_triangular"))


test_values_and_derivatives = case_test(CASES)


def test_derivative_in_a_cdf_shape_parameter_is_refused():
    with pytest.raises(NotImplementedError, match="not implemented"):
        fa.grad(lambda a: fst.gamma.cdf(1.0, a))(2.0)


def test_a_normal_log_likelihood_fit_compiles(compiled_backend):
    data = np.random.default_rng(2).normal(1.5, 0.7, 50)

    def nll(params):
        loc, log_scale = params[0], params[1]
        return -np.sum(fst.norm.logpdf(data, loc, np.exp(log_scale)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback warning, if any
        result = fa.minimize(nll, np.zeros(2), backend=compiled_backend)
    np.testing.assert_allclose(result.x, [data.mean(), np.log(data.std())], rtol=1e-5)


def test_multivariate_normal_compiled_agrees_with_the_reference(compiled_backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3))

    def f(chol_params):
        lower = np.tril(chol_params) + 2.0 * np.eye(3)
        return np.sum(fst.multivariate_normal.logpdf(x, np.zeros(3), lower @ lower.T))

    p = rng.uniform(-0.3, 0.3, (3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = fa.compile(f, backend=compiled_backend).value_and_grad(p)
    want = fa.value_and_grad(f)(p)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 4), data=st.data(), seed=st.integers(0, 2**16))
def test_multivariate_normal_allows_a_singular_covariance_as_scipys(d, data, seed):
    """allow_singular=True: SciPy's pseudo-determinant and pseudo-inverse
    (-inf off the support), derivatives in x and the mean along the support
    (central differences), compiled equal to eager; a full-rank cov takes the
    Cholesky path and differentiates in cov; a traced singular cov is refused."""
    rank = data.draw(st.integers(1, d), label="rank")
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, rank))
    cov, mean = a @ a.T, rng.normal(size=d)
    x = mean + (a @ rng.normal(size=(rank, 3))).T  # on the support
    off = x + rng.normal(size=x.shape)
    mvn, want = fst.multivariate_normal, ss.multivariate_normal
    points = np.concatenate([x, off]) if rank < d else x
    np.testing.assert_allclose(mvn.logpdf(points, mean, cov, allow_singular=True),
                               want.logpdf(points, mean, cov, allow_singular=True),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mvn.entropy(mean, cov), want.entropy(mean, cov), rtol=1e-9)

    def f(x, mean):
        return np.sum(mvn.logpdf(x, mean, cov, allow_singular=True) * np.arange(1.0, 4.0))
    gx, gm = fa.grad(f, argnums=(0, 1))(x, mean)
    cx, cm = fa.jit(fa.grad(f, argnums=(0, 1)), backend=ONE_COMPILED)(x, mean)
    np.testing.assert_allclose(cx, gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cm, gm, rtol=1e-12, atol=1e-12)
    dx, dm, h = (a @ rng.normal(size=(rank, 3))).T, a @ rng.normal(size=rank), 1e-6
    fd = (f(x + h * dx, mean + h * dm) - f(x - h * dx, mean - h * dm)) / (2 * h)
    np.testing.assert_allclose(np.sum(gx * dx) + gm @ dm, fd, rtol=1e-5, atol=1e-6)
    def g(x, mean, cov):  # the covariance traced too: compiled values, derivatives in x
        return np.sum(mvn.logpdf(x, mean, cov, allow_singular=True) * np.arange(1.0, 4.0))
    np.testing.assert_allclose(fa.jit(g, backend=ONE_COMPILED)(x, mean, cov), f(x, mean),
                               rtol=1e-12)
    np.testing.assert_allclose(fa.jit(fa.grad(g), backend=ONE_COMPILED)(x, mean, cov), gx,
                               rtol=1e-10, atol=1e-10)
    if rank < d:
        for how in (fa.grad, lambda h: fa.jit(fa.grad(h))):
            with pytest.raises(NotImplementedError, match="singular covariance"):
                how(lambda c: np.sum(mvn.logpdf(x, mean, c, allow_singular=True)))(cov)
    full = cov + np.eye(d)
    fa.check_grads(lambda c: np.sum(mvn.logpdf(x, mean, (c + c.T) / 2, allow_singular=True)),
                   (full,), order=1, modes=("rev",))
    with pytest.raises(ValueError, match="positive semidefinite"):
        mvn.logpdf(x, mean, -cov - np.eye(d), allow_singular=True)
