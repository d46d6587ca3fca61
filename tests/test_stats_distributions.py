"""JAX's scipy.stats distributions beyond autograd's (expon, laplace,
logistic, cauchy, uniform, lognorm, pareto, vonmises, truncnorm, gennorm,
wrapcauchy; bernoulli, binom, betabinom, nbinom, geom, multinomial): values
against SciPy's at random points of the support, both modes to second order
against central differences in every float argument and parameter, and the
compiled gradient against the eager one."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.scipy.stats as fst
from conftest import BACKENDS

COMPILED = "c" if "c" in BACKENDS else "numpy"


def _u(lo, hi):
    return lambda r, n: r.uniform(lo, hi, n)


def _k(lo, hi):  # counts: constants, not differentiated
    return lambda r, n: r.integers(lo, hi, n).astype(float)


# (distribution, method, argument makers, which arguments are differentiated)
CASES = [
    ("expon", "logpdf", [_u(0.3, 3), _u(-0.2, 0.2), _u(0.5, 2)], (0, 1, 2)),
    ("expon", "cdf", [_u(0.3, 3), _u(-0.2, 0.2), _u(0.5, 2)], (0, 1, 2)),
    ("expon", "logsf", [_u(0.3, 3), _u(-0.2, 0.2), _u(0.5, 2)], (0, 1, 2)),
    ("laplace", "logpdf", [_u(0.2, 2), _u(-0.1, 0.1), _u(0.5, 2)], (0, 1, 2)),
    ("laplace", "cdf", [_u(-2, -0.2), _u(-0.1, 0.1), _u(0.5, 2)], (0, 1, 2)),
    ("logistic", "logpdf", [_u(-2, 2), _u(-1, 1), _u(0.5, 2)], (0, 1, 2)),
    ("logistic", "logcdf", [_u(-2, 2), _u(-1, 1), _u(0.5, 2)], (0, 1, 2)),
    ("logistic", "ppf", [_u(0.1, 0.9), _u(-1, 1), _u(0.5, 2)], (0, 1, 2)),
    ("cauchy", "logpdf", [_u(-2, 2), _u(-1, 1), _u(0.5, 2)], (0, 1, 2)),
    ("cauchy", "cdf", [_u(-2, 2), _u(-1, 1), _u(0.5, 2)], (0, 1, 2)),
    ("uniform", "cdf", [_u(0.2, 0.8), _u(-0.1, 0.1), _u(1.0, 1.5)], (0, 1, 2)),
    ("lognorm", "logpdf", [_u(0.3, 3), _u(0.4, 1.5), _u(-0.1, 0.1), _u(0.5, 2)], (0, 1, 2, 3)),
    ("lognorm", "cdf", [_u(0.3, 3), _u(0.4, 1.5), _u(-0.1, 0.1), _u(0.5, 2)], (0, 1, 2, 3)),
    ("pareto", "logpdf", [_u(1.2, 3), _u(1, 3)], (0, 1)),
    ("pareto", "cdf", [_u(1.2, 3), _u(1, 3)], (0, 1)),
    ("vonmises", "logpdf", [_u(-2, 2), _u(0.5, 4), _u(-0.5, 0.5)], (0, 1, 2)),
    ("truncnorm", "logpdf", [_u(-0.3, 0.9), _u(-1.5, -1), _u(1, 1.5), _u(-0.1, 0.1),
                             _u(0.8, 1.2)], (0, 1, 2, 3, 4)),
    ("truncnorm", "cdf", [_u(-0.3, 0.9), _u(-1.5, -1), _u(1, 1.5)], (0, 1, 2)),
    ("gennorm", "logpdf", [_u(0.2, 2), _u(1.2, 3), _u(-0.1, 0.1), _u(0.5, 2)], (0, 1, 2, 3)),
    ("wrapcauchy", "logpdf", [_u(0.1, 6), _u(0.1, 0.8)], (0, 1)),  # support [0, 2 pi)
    ("bernoulli", "logpmf", [_k(0, 2), _u(0.1, 0.9)], (1,)),
    ("binom", "logpmf", [_k(0, 6), lambda r, n: np.full(n, 7.0), _u(0.1, 0.9)], (2,)),
    ("betabinom", "logpmf", [_k(0, 6), lambda r, n: np.full(n, 7.0), _u(0.5, 3), _u(0.5, 3)],
     (2, 3)),
    ("nbinom", "logpmf", [_k(0, 6), _u(1, 4), _u(0.1, 0.9)], (1, 2)),
    ("geom", "logpmf", [_k(1, 6), _u(0.1, 0.9)], (1,)),
    ("geom", "cdf", [_k(1, 6), _u(0.1, 0.9)], (1,)),
    ("weibull_min", "logpdf", [_u(0.3, 3), _u(0.8, 2.5), _u(-0.2, 0.2), _u(0.5, 2)],
     (0, 1, 2, 3)),
    ("weibull_min", "cdf", [_u(0.3, 3), _u(0.8, 2.5)], (0, 1)),
    ("invgamma", "logpdf", [_u(0.3, 3), _u(0.8, 3), _u(-0.2, 0.2), _u(0.5, 2)], (0, 2, 3)),
    ("invgamma", "cdf", [_u(0.3, 3), _u(0.8, 3)], (0,)),
    *[(dist, method, [_u(-2, 2), _u(-0.5, 0.5), _u(0.5, 2)], (0, 1, 2))
      for dist in ("gumbel_r", "gumbel_l") for method in ("logpdf", "cdf", "logcdf", "logsf")],
    ("gumbel_r", "ppf", [_u(0.1, 0.9), _u(-0.5, 0.5), _u(0.5, 2)], (0, 1, 2)),
    ("gumbel_l", "ppf", [_u(0.1, 0.9), _u(-0.5, 0.5), _u(0.5, 2)], (0, 1, 2)),
]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ddof=st.integers(0, 1), base=st.sampled_from([None, 2]))
def test_entropy_and_zscore_against_scipy_and_differences(seed, ddof, base):
    r = np.random.default_rng(seed)
    p, q = r.uniform(0.1, 1.0, (2, 5))
    np.testing.assert_allclose(fst.entropy(p, base=base), scipy.stats.entropy(p, base=base))
    np.testing.assert_allclose(fst.entropy(p, q, base=base),
                               scipy.stats.entropy(p, q, base=base))
    np.testing.assert_allclose(fa.jit(lambda p: fst.zscore(p, ddof=ddof))(p),
                               scipy.stats.zscore(p, ddof=ddof), rtol=1e-12)
    fa.check_grads(lambda p, q: fst.entropy(p, q, base=base), (p, q), order=2)
    fa.check_grads(lambda p: fst.zscore(p, ddof=ddof) * np.arange(5), (p,), order=2)


@pytest.mark.parametrize("dist,method,makers,wrt", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_distribution_against_scipy_and_differences(dist, method, makers, wrt, seed):
    r = np.random.default_rng(seed)
    args = [make(r, 4) for make in makers]
    ours, theirs = getattr(getattr(fst, dist), method), getattr(getattr(scipy.stats, dist), method)
    np.testing.assert_allclose(ours(*args), theirs(*args), rtol=1e-11, atol=1e-13)

    def f(*free):
        call = list(args)
        for i, v in zip(wrt, free):
            call[i] = v
        return ours(*call)
    fa.check_grads(f, tuple(args[i] for i in wrt), order=2, modes=("fwd", "rev"))
    loss = lambda *free: np.sum(f(*free))  # noqa: E731
    argnums = tuple(range(len(wrt)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.compile(loss, argnums=argnums, backend=COMPILED)(*(args[i] for i in wrt))
    for a, b in zip(compiled, fa.grad(loss, argnums)(*(args[i] for i in wrt))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_multinomial_and_uniform_against_scipy_and_differences():
    p = np.array([0.2, 0.3, 0.5])
    x = np.array([[2.0, 3.0, 5.0], [1.0, 1.0, 8.0]])
    np.testing.assert_allclose(fst.multinomial.logpmf(x, 10, p),
                               scipy.stats.multinomial.logpmf(x, 10, p), rtol=1e-12)
    fa.check_grads(lambda p: fst.multinomial.logpmf(x, 10, p), (p,), order=2)
    y = np.array([-0.5, 0.2, 0.7, 1.6])
    np.testing.assert_array_equal(fst.uniform.logpdf(y, 0.0, 1.5),
                                  scipy.stats.uniform.logpdf(y, 0.0, 1.5))
    fa.check_grads(lambda s: fst.uniform.logpdf(y[1:3], 0.0, s), (1.5,), order=2)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 7), axis=st.sampled_from([None, 0, 1]),
       method=st.sampled_from(["average", "min", "max", "dense", "ordinal"]))
def test_rankdata_mode_sem_against_scipy(seed, n, axis, method):
    """Ranks and modes of data with ties, eager and compiled (each call's
    values ranked, one trace), and sem's derivatives."""
    r = np.random.default_rng(seed)
    a = r.integers(0, 3, (3, n)).astype(float)
    want = scipy.stats.rankdata(a, method, axis=axis)
    got = fst.rankdata(a, method, axis=axis)
    np.testing.assert_array_equal(got, want)
    assert np.asarray(got).dtype == want.dtype
    g = fa.jit(lambda a: fst.rankdata(a, method, axis=axis), backend=COMPILED)
    for b in (a, r.integers(0, 4, (3, n)).astype(float)):
        np.testing.assert_array_equal(g(b), scipy.stats.rankdata(b, method, axis=axis))
    ax = 0 if axis is None else axis
    m, M = fst.mode(a, axis=ax), scipy.stats.mode(a, axis=ax)
    np.testing.assert_array_equal(m.mode, M.mode)
    np.testing.assert_array_equal(m.count, M.count)
    x = r.normal(size=(3, n))
    np.testing.assert_allclose(fst.sem(x, axis=axis), scipy.stats.sem(x, axis=axis), rtol=1e-13)
    fa.check_grads(lambda x: fst.sem(x, axis=axis), (x,), order=2)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 3),
       bw=st.sampled_from([None, "silverman", 0.4]), weighted=st.booleans())
def test_gaussian_kde_against_scipy_and_differences(seed, d, bw, weighted):
    r = np.random.default_rng(seed)
    data, points = r.normal(size=(d, 12)), r.normal(size=(d, 4))
    w = r.uniform(0.5, 1.5, 12) if weighted else None
    ours, theirs = fst.gaussian_kde(data, bw, w), scipy.stats.gaussian_kde(data, bw, w)
    np.testing.assert_allclose(ours(points), theirs(points), rtol=1e-11)
    np.testing.assert_allclose(ours.logpdf(points), theirs.logpdf(points), rtol=1e-11)
    fa.check_grads(lambda data, p: fst.gaussian_kde(data, bw, w).logpdf(p), (data, points),
                   order=2, modes=("fwd", "rev"))
