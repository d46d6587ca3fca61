"""scipy.special: values against SciPy, forward and reverse derivatives (first
and second order) against central finite differences, in float64 and
float32; SciPy's ufuncs on traced values dispatch to fastad; compiled
functions agree with the reference interpreter.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special as sc
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.scipy.special as fsc
from helpers import DOMAINS, Case, broadcast_pair, case_test, shapes

DOMAINS.setdefault("prob", lambda rng, shape: rng.uniform(0.1, 0.9, shape))
DOMAINS.setdefault("erfc_range", lambda rng, shape: rng.uniform(0.2, 1.8, shape))

CASES: list[Case] = []
#: the primitives checked here rather than by a Case (their order operand is traced)
ELSEWHERE = {name: "test_bessel_orders_taken_as_compiled_arguments"
             for name in ("iv_v", "ive_v", "kv_v", "kve_v")}
# float32: steep functions (logit near 0.1, ndtri) need a smaller step than 1e-2
F32 = {"eps": 3e-3, "rtol": 0.05}


def one_shape(data):
    return (data.draw(shapes(), label="shape"),), {}


def two_shapes(data):
    return data.draw(broadcast_pair(), label="shapes"), {}


# scipy ufunc, primitive it records, domain; called as plain scipy.special code
UNARY = [
    (sc.gammaln, "gammaln", "pos"), (sc.gamma, "gamma", "pos"), (sc.digamma, "polygamma", "pos"),
    (sc.erf, "erf", "real"), (sc.erfc, "erfc", "real"), (sc.erfinv, "erfinv", "unit"),
    (sc.erfcinv, "erfcinv", "erfc_range"), (sc.expit, "expit", "real"),
    (sc.log_expit, "log_expit", "real"), (sc.logit, "logit", "prob"), (sc.ndtr, "ndtr", "real"),
    (sc.log_ndtr, "log_ndtr", "real"), (sc.ndtri, "ndtri", "prob"), (sc.i0, "iv", "nonzero"),
    (sc.i1, "iv", "nonzero"), (sc.i0e, "ive", "nonzero"), (sc.i1e, "ive", "nonzero"),
    (sc.entr, "log", "pos"), (sc.exp1, "exp1", "pos"), (sc.expi, "expi", "pos"),
    (sc.erfcx, "erfcx", "real"), (sc.spence, "spence", "pos"), (sc.dawsn, "dawsn", "real"),
]
for _fn, _prim, _domain in UNARY:
    CASES.append(Case(f"special_{_fn.__name__}", _fn, (_domain,), one_shape, covers=(_prim,),
                      f32_tolerances=F32))

BINARY = [
    (sc.xlogy, "xlogy", "real", "pos"), (sc.xlog1py, "xlog1py", "real", "pos"),
    (sc.beta, "beta", "pos", "pos"), (sc.betaln, "betaln", "pos", "pos"),
    (sc.rel_entr, "log", "pos", "pos"), (sc.poch, "scipy.special.poch", "pos", "pos"),
    (sc.owens_t, "owens_t", "real", "real"),
]
for _fn, _prim, _dx, _dy in BINARY:
    CASES.append(Case(f"special_{_fn.__name__}", _fn, (_dx, _dy), two_shapes, covers=(_prim,),
                      f32_tolerances=F32))


def _with_constant_first(fn, *constants):
    def f(x):
        return fn(*constants, x)
    return f


# differentiable in the last argument only; the others are constants
PARTIAL = [
    ("gammainc", sc.gammainc, (1.7,), "pos"), ("gammaincc", sc.gammaincc, (0.8,), "pos"),
    ("stdtr", sc.stdtr, (3.5,), "real"), ("betainc", sc.betainc, (2.5, 1.5), "prob"),
    ("iv", sc.iv, (2.5,), "pos"), ("ive", sc.ive, (1.5,), "pos"),
    ("kv", sc.kv, (1.5,), "pos"), ("kve", sc.kve, (0.0,), "pos"),
    ("zeta", sc.zeta, (2.5,), "pos"), ("hyp1f1", sc.hyp1f1, (0.5, 1.5), "real"),
]
for _prim, _fn, _consts, _domain in PARTIAL:
    CASES.append(Case(f"special_{_prim}_in_x", _with_constant_first(_fn, *_consts), (_domain,),
                      one_shape, covers=(_prim,), f32_tolerances=F32))

# the functions of two results: the sine and cosine integrals, Fresnel's
CASES.append(Case("special_sici", sc.sici, ("pos",), one_shape, covers=("sinint", "cosint"),
                  f32_tolerances=F32))
CASES.append(Case("special_fresnel", sc.fresnel, ("real",), one_shape,
                  covers=("fresnel_s", "fresnel_c"), f32_tolerances=F32))

for _n in (0, 1, 3):  # E_0 has its own derivative rule; E_n' = -E_{n-1} for the others
    CASES.append(Case(f"special_expn_{_n}", _with_constant_first(sc.expn, _n), ("pos",),
                      one_shape, covers=("expn",), f32_tolerances=F32))

for _n in (0, 1, 3):  # x > 1.2: polygamma(3, x) ~ 6 / x^4 is too steep below for float32
    CASES.append(Case(f"special_polygamma_{_n}", _with_constant_first(fsc.polygamma, _n), ("gt1",),
                      one_shape, covers=("polygamma",),
                      oracle=_with_constant_first(sc.polygamma, _n),  # SciPy's dtype too
                      f32_tolerances={"eps": 3e-3, "rtol": 0.1, "atol": 0.05}))


def _logsumexp_args(data):
    shape = data.draw(shapes(min_dims=1), label="shape")  # SciPy gives 0-d input a 1-d result
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))), label="axis")
    if axis is None and 0 in shape or axis is not None and shape[axis] == 0:
        axis = None
        shape = tuple(max(d, 1) for d in shape)
    return (shape, shape), {"axis": axis, "keepdims": data.draw(st.booleans(), label="keepdims")}


def _logsumexp_weighted(a, b, axis, keepdims):
    lse = fsc if isinstance(a, fa.numpy.Tracer) or isinstance(b, fa.numpy.Tracer) else sc
    return lse.logsumexp(a, axis=axis, b=b, keepdims=keepdims)


CASES.append(Case("special_logsumexp_b", _logsumexp_weighted, ("real", "pos"), _logsumexp_args,
                  oracle=lambda a, b, axis, keepdims: sc.logsumexp(a, axis=axis, b=b,
                                                                  keepdims=keepdims),
                  covers=("stop_gradient",)))


def _softmaxes(x):
    traced = isinstance(x, fa.numpy.Tracer)
    module = fsc if traced else sc
    return module.softmax(x, axis=-1), module.log_softmax(x, axis=-1), module.softplus(x)


CASES.append(Case("special_softmax", _softmaxes, ("real",),
                  lambda data: ((data.draw(shapes(min_dims=1, min_side=1)),), {})))


test_values_and_derivatives = case_test(CASES)


def test_logsumexp_return_sign_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    want = sc.logsumexp(a, axis=1, b=b, return_sign=True)

    def f(a):
        return fsc.logsumexp(a, axis=1, b=b, return_sign=True)
    got, _ = fa.vjp(f, a)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_array_equal(got[1], want[1])
    fa.check_grads(lambda a: f(a)[0], (a,), order=2)


@pytest.mark.parametrize("fn", [lambda a, x: sc.gammainc(a, x), lambda a, x: sc.stdtr(a, x),
                                lambda a, x: fsc.betainc(a, 2.0, x)])
def test_derivative_in_a_shape_parameter_is_refused(fn):
    with pytest.raises(NotImplementedError, match="not implemented"):
        fa.grad(lambda a: np.sum(fn(a, 0.5)))(np.array([1.5, 2.0]))


def test_traced_orders_are_refused():
    with pytest.raises(NotImplementedError, match="constant"):
        fa.grad(lambda v: fsc.iv(v, 1.0))(1.0)


COMPILED = [
    lambda x: np.sum(sc.gammaln(x) * sc.erf(x) + sc.i1e(x) + sc.xlogy(x, x + 1.0)),
    lambda x: np.sum(fsc.polygamma(1, x) + sc.betaln(x, 2.0 * x) + sc.gammainc(2.0, x)),
    lambda x: fsc.logsumexp(sc.log_ndtr(x) + sc.logit(x / 3.0)),
]


@pytest.mark.parametrize("f", COMPILED)
def test_compiled_agrees_with_the_reference(compiled_backend, f):
    x = np.linspace(0.3, 2.5, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback warning
        got = fa.compile(f, backend=compiled_backend).value_and_grad(x)
        hvp = fa.jit(fa.hvp(f), backend=compiled_backend)(x, np.ones_like(x))
    want = fa.value_and_grad(f)(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13)
    np.testing.assert_allclose(hvp, fa.hvp(f)(x, np.ones_like(x)), rtol=1e-12)


def test_vmap_of_special_functions():
    def f(x):
        return np.sum(sc.gammaln(x) * sc.i1e(x) + fsc.iv(2.5, x))

    xs = np.random.default_rng(1).uniform(0.5, 2.0, (3, 4))
    np.testing.assert_allclose(fa.vmap(fa.grad(f))(xs), np.stack([fa.grad(f)(x) for x in xs]),
                               rtol=1e-13)


@settings(max_examples=25, deadline=None)
@given(order=st.floats(-3.0, 3.0, allow_nan=False).filter(lambda v: abs(v - round(v)) > 0.05),
       kind=st.sampled_from([sc.jv, sc.yv]))
def test_bessel_functions_of_real_order(order, kind):
    """jv/yv of a non-integer constant order: SciPy's values, both modes to
    second order, compiled like the rest."""
    x = np.linspace(0.7, 4.1, 5)
    f = lambda x: kind(order, x) * x  # noqa: E731
    loss = lambda x: np.sum(kind(order, x) ** 2)  # noqa: E731
    with warnings.catch_warnings():  # (they run as host calls between compiled segments)
        warnings.simplefilter("ignore")
        assert np.array_equal(fa.jit(f)(x), kind(order, x) * x)
        assert np.allclose(fa.compile(loss)(x), fa.grad(loss)(x), rtol=1e-13, atol=0)
    fa.check_grads(f, (x,), order=2)


@pytest.mark.parametrize("call, ours", [
    (lambda x: sc.polygamma(1, x), "fastad.scipy.special.polygamma"),
    (lambda x: scipy.stats.norm.logpdf(x, 0.5), "fastad.scipy.stats.norm.logpdf"),
    (lambda x: scipy.stats.norm(0.5, 2.0).logpdf(x), "fastad.scipy.stats.norm.logpdf"),
    (lambda x: scipy.stats.multivariate_normal.logpdf(x, np.zeros(3)),
     "fastad.scipy.stats.multivariate_normal.logpdf"),
    (lambda x: scipy.stats.gamma.logpdf(x, 2.0), "fastad.scipy.stats.gamma.logpdf"),
    (lambda x: scipy.linalg.solve_triangular(np.diag(x) + 1.0, x),  # through a decorator
     "fastad.scipy.linalg.solve_triangular"),
    (lambda x: np.vectorize(lambda v: v * 2.0)(x), "fastad.numpy.vectorize"),
])
def test_scipy_functions_that_convert_their_arguments_name_ours(call, ours):
    with pytest.raises(fa.TracingError, match=f"call {ours.replace('.', '[.]')} instead"):
        fa.grad(lambda x: np.sum(call(x)))(np.array([0.5, 1.0, 2.0]))


def test_other_conversions_keep_the_general_advice():
    with pytest.raises(fa.TracingError, match="fastad.numpy.zeros") as info:
        fa.grad(lambda x: np.sum(scipy.integrate.trapezoid(np.asarray(x))))(np.ones(3))
    assert "converts its arguments" not in str(info.value)


# SciPy's ufuncs written as compositions (no primitive of their own), called
# through SciPy itself on traced values: (call, how x is drawn from a normal sample)
_COMPOSED = {
    "kl_div": (lambda x: sc.kl_div(x, 0.7), lambda v: np.abs(v) + 0.1),
    "huber": (lambda x: sc.huber(0.8, x), lambda v: v * 1.3 + 0.05),
    "pseudo_huber": (lambda x: sc.pseudo_huber(0.6, x), lambda v: v),
    "poch": (lambda x: sc.poch(x, 1.7), lambda v: np.abs(v) + 0.3),
    "boxcox": (lambda x: sc.boxcox(x, 0.4) + sc.boxcox(x, 0.0), lambda v: np.abs(v) + 0.2),
    "boxcox1p": (lambda x: sc.boxcox1p(x, -0.3), lambda v: np.abs(v)),
    "inv_boxcox": (lambda x: sc.inv_boxcox(x, 0.5) + sc.inv_boxcox1p(x, 0.0), lambda v: v * 0.3),
    "cosm1, powm1": (lambda x: sc.cosm1(x) + sc.powm1(x + 2.0, 1.3), lambda v: np.clip(v, -1, 1)),
    "exprel": (sc.exprel, lambda v: np.concatenate([v, [0.0, 2e-4]])),
    "loggamma, factorial, comb": (
        lambda x: sc.loggamma(x) + sc.factorial(x) + sc.comb(x + 2.5, x) + sc.zeta(3.0, x),
        lambda v: np.abs(v) + 0.3),
    "exp10, exp2, expm1, log1p, cbrt": (
        lambda x: sc.exp10(x) + sc.exp2(x) + sc.expm1(x) + sc.log1p(x + 1.5) + sc.cbrt(x + 2.0),
        lambda v: v * 0.5),
}


@pytest.mark.parametrize("name", sorted(_COMPOSED))
def test_composed_scipy_ufuncs(name):
    call, domain = _COMPOSED[name]
    x = domain(np.random.default_rng(len(name)).normal(size=5))
    want = call(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host calls of gammaln/xlogy in compiled code
        np.testing.assert_allclose(fa.jit(call)(x), want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fa.vjp(call, x)[0], want, rtol=1e-12, atol=1e-14)
        g = fa.grad(lambda x: np.sum(call(x)))(x)
    eps = 1e-6
    fd = np.array([(np.sum(call(x + eps * e)) - np.sum(call(x - eps * e))) / (2 * eps)
                   for e in np.eye(x.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["iv", "ive", "kv", "kve"]), v=st.floats(-2.5, 6.0),
       seed=st.integers(0, 2**16))
def test_bessel_orders_taken_as_compiled_arguments(name, v, seed):
    """iv, ive, kv, kve with the order an argument of a compiled function (a
    traced float): SciPy's values, the derivative in x against central
    differences, one trace for every order; the derivative in the order is
    refused, never a silent zero."""
    ours, theirs = getattr(fsc, name), getattr(sc, name)
    x = np.random.default_rng(seed).uniform(0.3, 4.0, 5)
    values = fa.jit(lambda v, x: ours(v, x))
    grads = fa.jit(fa.grad(lambda v, x: np.sum(ours(v, x) * np.arange(1.0, 6.0)), 1))
    for order in (v, v + 0.75):
        np.testing.assert_allclose(values(order, x), theirs(order, x), rtol=1e-12)
        h = 1e-6 * x
        fd = (theirs(order, x + h) - theirs(order, x - h)) / (2 * h) * np.arange(1.0, 6.0)
        np.testing.assert_allclose(grads(order, x), fd, rtol=1e-5, atol=1e-8)
    assert values.cache_info()["traces"] == 1 and grads.cache_info()["traces"] == 1
    with pytest.raises(NotImplementedError, match="order"):
        fa.grad(lambda v: np.sum(ours(v, x)))(v)


# every value class of float64: infinities, zeros of both signs, the smallest
# normal magnitudes, integers (the poles of gamma), halves, large values, NaN
EDGES = np.array([-np.inf, -800.0, -30.0, -2.5, -1.0, -0.5, -0.0, 0.0, 1e-300, 1e-8, 0.5,
                  1.0, 2.5, 30.0, 800.0, np.inf, np.nan])
# SciPy's ufuncs of one or two real arguments and one result that fastad.scipy.special has
_EDGE_UFUNCS = sorted(name for name in dir(fsc) if not name.startswith("_")
                      and isinstance(getattr(sc, name, None), np.ufunc)
                      and getattr(sc, name).nin in (1, 2) and getattr(sc, name).nout == 1)


def _scipy_quirk(name, args, ref):
    """Where SciPy's value is its error policy's, not the function's: powm1
    returns 0 where x^y overflows (fastad gives inf, x^y - 1)."""
    if name == "powm1":
        x, y = args
        with np.errstate(all="ignore"):
            return (ref == 0) & (np.abs(y * np.log(np.abs(x))) > 690)
    return np.zeros(ref.shape, bool)


@pytest.mark.parametrize("name", _EDGE_UFUNCS)
def test_special_values_at_every_edge(name, compiled_backend):
    """Traced and compiled, each function gives SciPy's value at infinities,
    signed zeros, poles, NaN and huge or tiny arguments (the compositions
    among them are written with ``where`` around each of SciPy's cases)."""
    ufunc, ours = getattr(sc, name), getattr(fsc, name)
    args = (EDGES,) if ufunc.nin == 1 else tuple(m.ravel() for m in np.meshgrid(EDGES, EDGES))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ufunc(*args)
        try:
            traced = fa.jit(lambda *t: ours(*t), backend="numpy")(*args)
        except (NotImplementedError, ValueError) as e:  # an order that must be a constant
            assert "constant" in str(e)
            return
        compiled = fa.jit(lambda *t: ours(*t), backend=compiled_backend)(*args)
    skip = _scipy_quirk(name, args, ref)
    for got in (traced, compiled):
        same = np.isclose(got, ref, rtol=1e-9, atol=0, equal_nan=True) | (got == ref) | skip
        bad = np.flatnonzero(~same)
        assert not bad.size, [(tuple(float(a[i]) for a in args), float(got[i]), float(ref[i]))
                              for i in bad[:5]]
