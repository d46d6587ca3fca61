"""The special functions both compiled backends compute themselves (the C
VM's csrc/special.h, the Numba backend's numba_special): erf, erfc, expit,
log_expit, logit, gammaln, psi (polygamma of order 0), ndtr, xlogy and
xlog1py.

Values: compiled, alone (one VM instruction, a scalar instruction) and inside
a fused chain, against the reference interpreter (SciPy) over every range
of float64 and float32: signed zeros, the smallest normal and subnormal
magnitudes, poles, negative non-integers, huge values, infinities and NaN.
Where SciPy's value is NaN or infinite the compiled value is the same, and
where SciPy's is finite so is the compiled one.  Finite values agree within

    |compiled - SciPy| <= 8 eps * scale + tiny

(eps and tiny, the smallest normal, of the dtype), scale the magnitude of
SciPy's value, except where the two implementations round differently by
construction: for gammaln and psi, max(|value|, 1) (near their zeros at 1, 2
and between the negative poles, the C library's lgamma and cephes' sums
differ by ulps of 1, not of the tiny value); for erfc and ndtr,
|value| (1 + t^2), t the argument of erfc (cephes rounds t^2 before its
exp(-t^2)).  Measured: at most 1.7 eps (erf), 3.9 (erfc, ndtr), 3.9
(gammaln), 7.5 (psi), 2 (xlog1py), and SciPy's own bits for expit,
log_expit, logit, xlogy and every float32 result (docs/design.md).

Derivatives: the compiled gradient and Hessian-vector product against the
reference interpreter, and against central differences of the compiled
value and gradient in random directions, on both backends.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.backends
import fastad.scipy.special as fsc
from conftest import BACKENDS
from helpers import DTYPES, FAST, shapes

# name: (fastad's function, SciPy's)
UNARY = {"erf": (fsc.erf, sc.erf), "erfc": (fsc.erfc, sc.erfc), "expit": (fsc.expit, sc.expit),
         "log_expit": (fsc.log_expit, sc.log_expit), "logit": (fsc.logit, sc.logit),
         "gammaln": (fsc.gammaln, sc.gammaln), "psi": (fsc.digamma, sc.psi),
         "ndtr": (fsc.ndtr, sc.ndtr)}
BINARY = {"xlogy": (fsc.xlogy, sc.xlogy), "xlog1py": (fsc.xlog1py, sc.xlog1py)}
PRIMITIVES = {"erf", "erfc", "expit", "log_expit", "logit", "gammaln", "polygamma", "ndtr",
              "xlogy", "xlog1py"}
TOL_EPS = 8  # the bound above, in eps of the dtype
COMPILED = [b for b in BACKENDS if b != "numpy"]


def every_range(dtype, seed=0):
    """Values of every class of ``dtype``: edges, the functions' poles and
    zeros, normals of three scales, log-uniform magnitudes of both signs
    from tiny to max, (0, 1) for logit, and near and at the negative integers."""
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, fi.tiny, -fi.tiny, fi.smallest_subnormal,
             -fi.smallest_subnormal, fi.max, -fi.max, 0.5, 1.0, 2.0, -1.0, -2.0, -100.0, 0.3, 0.65,
             1e-8, -1e-8, 0.99999, 1.00001, 1.4616321449683622, -0.504083008264455409,
             -2.4570247382208, 9.5, 10.0, -9.5, 26.0, -38.0, 40.0, -720.0, 720.0, -88.5, 88.5,
             2.556348e305, 2.5563481e305, 1e17, -1e17, 1e300, -1e300]
    magnitudes = np.exp(rng.uniform(np.log(fi.tiny), np.log(fi.max), 2000))
    near_poles = -np.arange(1.0, 120.0)
    parts = [edges, rng.standard_normal(2000), rng.standard_normal(2000) * 30,
             rng.standard_normal(1000) * 1000, magnitudes, -magnitudes, rng.uniform(0, 1, 2000),
             near_poles + rng.uniform(-1e-6, 1e-6, near_poles.size), near_poles]
    with np.errstate(all="ignore"):
        return np.concatenate([np.asarray(p, np.float64) for p in parts]).astype(dtype)


def scale(name, x, want):
    """What the tolerance is relative to (the module docstring)."""
    w = np.abs(want.astype(np.float64))
    if name in ("gammaln", "psi"):
        return np.maximum(w, 1.0)
    if name in ("erfc", "ndtr"):
        t = x.astype(np.float64) / (np.sqrt(2.0) if name == "ndtr" else 1.0)
        with np.errstate(all="ignore"):
            return w * (1.0 + t * t)
    return w


def assert_agrees(name, got, want, x):
    assert got.dtype == want.dtype and got.shape == want.shape
    nan, inf = np.isnan(want), np.isinf(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{name}: NaN where SciPy's is not")
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{name}: infinities")
    finite = ~(nan | inf)
    assert np.all(np.isfinite(got[finite])), f"{name}: not finite where SciPy's value is"
    fi = np.finfo(want.dtype)
    err = np.abs(got[finite].astype(np.float64) - want[finite].astype(np.float64))
    bound = TOL_EPS * fi.eps * scale(name, x[finite], want[finite]) + float(fi.tiny)
    bad = np.flatnonzero(err > bound)
    assert not bad.size, [(float(x[finite][i]), float(got[finite][i]), float(want[finite][i]))
                          for i in bad[:5]]


def native(fn, backend):
    """fa.jit(fn) on ``backend``, called with a fallback warning (a host
    call) an error: the functions here run natively."""
    jitted = fa.jit(fn, backend=backend)

    def call(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return jitted(*args)
    call.program = lambda: jitted.program
    return call


# -- values ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_values_over_every_range(name, dtype, compiled_backend):
    ours, theirs = UNARY[name]
    x = every_range(dtype)
    with np.errstate(all="ignore"):
        want = theirs(x)
    alone = native(lambda x: ours(x), compiled_backend)
    assert_agrees(name, alone(x), want, x)
    assert "host call" not in str(alone.program())
    # inside a fused chain (the VM's FUSED steps, Numba's loop bodies); 2 v is exact
    chain = native(lambda x: ours(-(-x)) * 2.0 - ours(x), compiled_backend)
    with np.errstate(all="ignore"):
        assert_agrees(name, chain(x), want * dtype(2.0) - want, x)
    # one value at a time (the VM's scalar instruction, Numba's scalar code)
    scalar = native(lambda x: ours(x), compiled_backend)
    picks = x[:: max(1, x.size // 60)]
    got = np.array([scalar(np.asarray(v)) for v in picks], dtype=dtype)
    assert_agrees(name, got, want[:: max(1, x.size // 60)], picks)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_values_over_every_range(name, dtype, compiled_backend):
    ours, theirs = BINARY[name]
    a, b = every_range(dtype, 1), every_range(dtype, 2)
    np.random.default_rng(3).shuffle(b)
    a[::7] = 0  # x = 0: 0 unless y is NaN
    edges = every_range(dtype)[:42]  # every pair of them: a column against a row
    f = native(lambda a, b: ours(a, b), compiled_backend)
    with np.errstate(all="ignore"):
        for x, y in ((a, b), (edges[:, None], edges[None, :]), (a, dtype(0.5)),
                     (dtype(0.0), b)):
            want = theirs(x, y)
            assert_agrees(name, f(x, y), want, np.broadcast_to(y, want.shape))


def test_polygamma_of_a_higher_order_stays_a_host_call(compiled_backend):
    def f(x):
        return fsc.polygamma(1, x) * fsc.digamma(x)
    x = np.linspace(0.3, 4.0, 9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = fa.jit(f, backend=compiled_backend)
        np.testing.assert_allclose(g(x), sc.polygamma(1, x) * sc.psi(x), rtol=1e-14)
    assert str(g.program).count("host call") == 1
    assert any("order n > 0" in str(w.message) for w in caught)


def test_polygamma_of_a_higher_order_in_a_loop_body_keeps_the_loop_on_the_host(
        compiled_backend):
    def f(x):
        def step(c, xi):
            return c + fsc.polygamma(1, c + xi) + fsc.digamma(c), c
        c, ys = fa.scan(step, x, np.stack([x, 2.0 * x]))
        return c + ys.sum(axis=0)
    x = np.linspace(0.5, 2.0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.jit(f, backend=compiled_backend)(x)
    np.testing.assert_allclose(got, fa.jit(f, backend="numpy")(x), rtol=1e-14)


def test_none_is_a_host_call_any_more():
    for backend in ("c", "numba"):
        if backend in fastad.backends_available():
            assert not PRIMITIVES & set(fastad.backends.fallback.host_calls(backend))
            native = fastad.backends.fallback.native_primitives(backend)
            assert PRIMITIVES <= native


# -- derivatives ---------------------------------------------------------------------------
# name: (function of x, the domain it is smooth on); binary ones of (x, y)
SMOOTH = {
    "erf": (lambda x: fsc.erf(x), (-3.0, 3.0)),
    "erfc": (lambda x: fsc.erfc(x), (-3.0, 3.0)),
    "expit": (lambda x: fsc.expit(x), (-8.0, 8.0)),
    "log_expit": (lambda x: fsc.log_expit(x), (-8.0, 8.0)),
    "logit": (lambda x: fsc.logit(x), (0.05, 0.95)),
    "gammaln": (lambda x: fsc.gammaln(x), (0.2, 8.0)),
    "gammaln_negative": (lambda x: fsc.gammaln(x), (-2.9, -2.1)),
    "psi": (lambda x: fsc.digamma(x), (0.3, 8.0)),
    "ndtr": (lambda x: fsc.ndtr(x), (-4.0, 4.0)),
    "xlogy": (lambda x: fsc.xlogy(x, x * x + 0.5), (-2.0, 2.0)),
    "xlog1py": (lambda x: fsc.xlog1py(x, x * x - 0.5), (-2.0, 2.0)),
    "xlogy_y": (lambda x: fsc.xlogy(1.5, x), (0.2, 3.0)),
    "chain": (lambda x: fsc.log_expit(fsc.erf(x) * 3.0) + fsc.gammaln(fsc.expit(x) + 1.0),
              (-2.0, 2.0)),
}


@pytest.mark.parametrize("compiled_backend", COMPILED)
@pytest.mark.parametrize("name", sorted(SMOOTH))
@FAST
@given(shape=shapes(min_dims=0, max_dims=2, min_side=1, max_side=6),
       seed=st.integers(0, 2**31 - 1))
def test_derivatives_to_second_order(name, compiled_backend, shape, seed):
    """The compiled gradient and Hessian-vector product equal the reference
    interpreter's, and central differences of the compiled value and
    gradient in a random direction (float64)."""
    fn, (lo, hi) = SMOOTH[name]
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, shape)
    w = rng.standard_normal(shape)
    v = rng.standard_normal(shape)

    def loss(x):
        return (w * fn(x)).sum()
    grad = fa.compile(loss, backend=compiled_backend)
    value = fa.jit(loss, backend=compiled_backend)
    hvp = fa.jit(fa.hvp(loss), backend=compiled_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # psi's derivatives: polygamma, n > 0
        g, hv = grad(x), hvp(x, v)
    np.testing.assert_allclose(g, fa.grad(loss)(x), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hv, fa.hvp(loss)(x, v), rtol=1e-11, atol=1e-12)
    h = 1e-5 * max(1.0, float(np.max(np.abs(x))))
    h = min(h, 0.4 * float(np.min(np.minimum(x - lo + 1e-3, hi - x + 1e-3))))
    first = (value(x + h * v) - value(x - h * v)) / (2 * h)
    np.testing.assert_allclose(np.sum(g * v), first, rtol=1e-6, atol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        second = (grad(x + h * v) - grad(x - h * v)) / (2 * h)
    np.testing.assert_allclose(hv, second, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gradients_in_both_dtypes_equal_the_reference(dtype, compiled_backend):
    rng = np.random.default_rng(7)
    x = rng.uniform(0.1, 0.9, 300).astype(dtype)

    def loss(x):
        p = fsc.expit(x * 4.0 - 2.0)
        return (fsc.xlogy(x, p) + fsc.xlog1py(1.0 - x, -p) + fsc.logit(x) * fsc.ndtr(x)
                + fsc.gammaln(x + 1.0) * fsc.digamma(x) + fsc.erfc(x) - fsc.log_expit(x)).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # psi's derivative: polygamma, n = 1
        got = fa.compile(loss, backend=compiled_backend).value_and_grad(x)
    want = fa.value_and_grad(loss)(x)
    rtol = 1e-13 if dtype == np.float64 else 2e-5
    assert got[1].dtype == dtype
    np.testing.assert_allclose(got[0], want[0], rtol=rtol)
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=rtol)
