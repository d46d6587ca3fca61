"""fastad.scipy has what autograd.scipy has: every public function of
autograd's scipy.special, scipy.stats distributions (with their methods),
scipy.linalg and scipy.signal, each new one against SciPy's value, central
finite differences (both modes, order 2) and the compiled C VM against eager;
SciPy's own Python functions (logsumexp, softmax, ...) dispatch on traced
values."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import scipy.linalg
import scipy.signal
import scipy.special
import scipy.stats

import fastad as fa
import fastad.scipy.linalg as fla
import fastad.scipy.signal as fsignal
import fastad.scipy.special as fsc
import fastad.scipy.stats as fst

autograd_scipy = pytest.importorskip("autograd.scipy")
import autograd.scipy.linalg as ag_linalg  # noqa: E402
import autograd.scipy.special as ag_special  # noqa: E402
import autograd.scipy.stats as ag_stats  # noqa: E402
from conftest import BACKENDS

# the C VM where it is built, else the reference interpreter
COMPILED = "c" if "c" in BACKENDS else "numpy"

_HELPERS = {"defjvp", "defvjp", "fwd_grad_logsumexp", "make_gammainc_vjp_arg1",
            "make_grad_logsumexp", "np", "primitive", "repeat_to_match_shape", "scipy",
            "unbroadcast_f", "inv_root_pi", "root_pi"}


def test_every_function_of_autograds_scipy_special_is_there():
    names = [n for n in dir(ag_special) if not n.startswith("_") and n not in _HELPERS]
    assert [n for n in names if not hasattr(fsc, n)] == []


@pytest.mark.parametrize("dist", ["beta", "chi2", "dirichlet", "gamma", "multivariate_normal",
                                  "norm", "poisson", "t"])
def test_every_distribution_of_autograds_scipy_stats_is_there(dist):
    ours = getattr(fst, dist)
    theirs = getattr(ag_stats, dist)
    methods = [m for m in ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf", "pmf", "logpmf",
                           "entropy", "rvs") if hasattr(theirs, m)]
    assert [m for m in methods if not hasattr(ours, m)] == []


def test_scipy_linalg_names_are_there():
    names = [n for n in dir(ag_linalg) if not n.startswith("_") and hasattr(scipy.linalg, n)]
    assert [n for n in names if not hasattr(fla, n)] == []


rng = np.random.default_rng(3)
X = np.array([0.6, 1.3, 2.7, 3.1])
SIMPLEX = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]).T
ALPHA = np.array([1.5, 2.0, 3.0])
COV = np.array([[2.0, 0.3], [0.3, 1.0]])
AB = np.array([[0.0, 0.3, 0.2, 0.1], [2.0, 3.0, 4.0, 5.0], [0.5, 0.4, 0.1, 0.0]])
A3 = rng.normal(size=(5, 4, 3))
B3 = rng.normal(size=(2, 3, 6))

# (name, function, arguments, SciPy's value of the function)
CASES = [
    ("special.j0", fsc.j0, (X,), scipy.special.j0(X)),
    ("special.j1", fsc.j1, (X,), scipy.special.j1(X)),
    ("special.jn", lambda x: fsc.jn(3, x), (X,), scipy.special.jn(3, X)),
    ("special.y0", fsc.y0, (X,), scipy.special.y0(X)),
    ("special.y1", fsc.y1, (X,), scipy.special.y1(X)),
    ("special.yn", lambda x: fsc.yn(2, x), (X,), scipy.special.yn(2, X)),
    ("special.jv", lambda x: fsc.jv(2.5, x), (X,), scipy.special.jv(2.5, X)),
    ("special.yv", lambda x: fsc.yv(-0.7, x), (X,), scipy.special.yv(-0.7, X)),
    ("special.rgamma", fsc.rgamma, (X,), scipy.special.rgamma(X)),
    ("special.gammasgn", lambda x: fsc.gammasgn(x - 2.0) * x, (X,),
     scipy.special.gammasgn(X - 2.0) * X),
    ("special.multigammaln", lambda a: fsc.multigammaln(a, 3), (X[2],),
     scipy.special.multigammaln(X[2], 3)),
    ("plain scipy.special.logsumexp", lambda x: scipy.special.logsumexp(x), (X,),
     scipy.special.logsumexp(X)),
    ("plain scipy.special.logsumexp b=", lambda x: scipy.special.logsumexp(x, b=X), (X,),
     scipy.special.logsumexp(X, b=X)),
    ("plain scipy.special.softmax", lambda x: scipy.special.softmax(x), (X,),
     scipy.special.softmax(X)),
    ("plain scipy.special.log_softmax", lambda x: scipy.special.log_softmax(x), (X,),
     scipy.special.log_softmax(X)),
    ("plain scipy.special.j0 (ufunc)", lambda x: scipy.special.j0(x), (X,), scipy.special.j0(X)),
    ("stats.chi2.logpdf", lambda x, k: fst.chi2.logpdf(x, k, 0.1, 2.0), (X, X[1] + 1.0),
     scipy.stats.chi2.logpdf(X, X[1] + 1.0, 0.1, 2.0)),
    ("stats.chi2.pdf", lambda x: fst.chi2.pdf(x, 3.5), (X,), scipy.stats.chi2.pdf(X, 3.5)),
    ("stats.chi2.cdf", lambda x: fst.chi2.cdf(x, 3.5), (X,), scipy.stats.chi2.cdf(X, 3.5)),
    ("stats.dirichlet.logpdf", fst.dirichlet.logpdf, (SIMPLEX, ALPHA),
     scipy.stats.dirichlet.logpdf(SIMPLEX, ALPHA)),
    ("stats.dirichlet.pdf", fst.dirichlet.pdf, (SIMPLEX[:, 0], ALPHA),
     scipy.stats.dirichlet.pdf(SIMPLEX[:, 0], ALPHA)),
    ("stats.multivariate_normal.entropy", lambda c: fst.multivariate_normal.entropy(
        np.zeros(2), c), (COV,), scipy.stats.multivariate_normal.entropy(np.zeros(2), COV)),
    ("linalg.solve_banded", lambda ab, b: fla.solve_banded((1, 1), ab, b), (AB, X),
     scipy.linalg.solve_banded((1, 1), AB, X)),
    ("signal.convolve axes dot_axes", lambda a, b: fsignal.convolve(
        a, b, axes=[[0], [2]], dot_axes=[[2], [1]]), (A3, B3), None),
    ("signal.convolve axes valid", lambda a, b: fsignal.convolve(
        a, b, axes=[[0], [2]], dot_axes=[[2], [1]], mode="valid"), (A3, B3), None),
    ("signal.convolve dot_axes only", lambda a, b: fsignal.convolve(
        a, b, axes=[[], []], dot_axes=[[2], [1]]), (A3, B3),
     np.tensordot(A3, B3, axes=([2], [1]))),
]


@pytest.mark.parametrize("name,fn,args,want", CASES, ids=[c[0] for c in CASES])
def test_value_and_derivatives(name, fn, args, want):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.vjp(fn, *args)[0]
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        fa.check_grads(fn, args, order=2)


@pytest.mark.parametrize("name,fn,args,want", CASES, ids=[c[0] for c in CASES])
def test_compiled_equals_eager(name, fn, args, want):
    def loss(*a):
        return np.sum(fn(*a) ** 2)
    argnums = tuple(range(len(args)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = fa.grad(loss, argnums)(*args)
        compiled = fa.jit(fa.grad(loss, argnums), backend=COMPILED)
        for _ in range(2):
            for g, e in zip(compiled(*args), eager):
                np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_convolve_axes_matches_autograds():
    import autograd.scipy.signal as ag_signal
    for mode in ("full", "valid", "same"):
        want = ag_signal.convolve(A3, B3, axes=[[0], [2]], dot_axes=[[2], [1]], mode=mode)
        got = fsignal.convolve(A3, B3, axes=[[0], [2]], dot_axes=[[2], [1]], mode=mode)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_scipy_functions_keep_working_on_plain_values():
    assert scipy.special.logsumexp(X) == pytest.approx(np.log(np.sum(np.exp(X))))
    assert scipy.special.logsumexp(X, return_sign=True)[1] == 1.0
    np.testing.assert_allclose(scipy.special.softmax(X).sum(), 1.0)
    assert fsc.ellipk is scipy.special.ellipk and fst.weibull_max is scipy.stats.weibull_max
    # SciPy's Python functions fastad wraps to dispatch stay SciPy's on plain values
    assert scipy.special.zeta(2.0) == pytest.approx(np.pi ** 2 / 6)
    assert scipy.special.factorial(5, exact=True) == 120 and scipy.special.comb(5, 2) == 10.0
    assert fla.logm is scipy.linalg.logm
    assert scipy.signal is not None


def _decay(y, t, a, b):
    return -a * y + b * np.sin(t)


ODE_ARGS = (np.array([1.0, 0.5]), np.linspace(0.0, 2.0, 5), np.array([0.7, 1.3]), np.array(0.4))


def _ode(y0, t, a, b):
    from fastad.scipy.integrate import odeint
    return odeint(_decay, y0, t, args=(a, b), rtol=1e-11, atol=1e-11)


def test_odeint_is_scipys_and_its_adjoint_gradient_matches_finite_differences():
    import scipy.integrate
    from fastad.scipy import integrate
    assert hasattr(integrate, "odeint") and integrate.quad is scipy.integrate.quad
    want = scipy.integrate.odeint(_decay, ODE_ARGS[0], ODE_ARGS[1], args=ODE_ARGS[2:],
                                  rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(fa.vjp(_ode, *ODE_ARGS)[0], want, rtol=1e-12)
    fa.check_grads(_ode, ODE_ARGS, order=1, rtol=1e-4)  # both modes


def test_odeint_compiled_equals_eager():
    def loss(*args):
        return np.sum(_ode(*args) ** 2)
    argnums = (0, 1, 2, 3)
    eager = fa.grad(loss, argnums)(*ODE_ARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.jit(fa.grad(loss, argnums), backend=COMPILED)
        for _ in range(2):
            for g, e in zip(compiled(*ODE_ARGS), eager):
                np.testing.assert_allclose(g, e, rtol=1e-9)


@pytest.mark.parametrize("closes_over", ["a", "b", "both"])
def test_odeint_of_a_function_closing_over_traced_values(closes_over):
    """A neural-ODE style func reading traced parameters from its closure (as
    JAX users write it): they become arguments of the solve, and its
    gradients in them match finite differences of SciPy's own odeint, eager
    and compiled; y0 and args= traced as well."""
    from fastad.scipy.integrate import odeint
    y0, t, a, b = ODE_ARGS

    def loss(y0, a, b):
        aa = a if closes_over != "b" else ODE_ARGS[2]
        bb = b if closes_over != "a" else ODE_ARGS[3]
        extra = () if closes_over == "both" else ((bb,) if closes_over == "a" else (aa,))

        def f(y, tt, *rest):
            return _decay(y, tt, aa, bb) if not rest else _decay(y, tt, aa, bb) * (1 + 0 * rest[0])
        return np.sum(odeint(f, y0, t, args=extra, rtol=1e-11, atol=1e-11) ** 2)

    eager = fa.grad(loss, (0, 1, 2))(y0, a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.jit(fa.grad(loss, (0, 1, 2)))(y0, a, b)
    rng = np.random.default_rng(4)
    for k, arg in enumerate((y0, a, b)):
        d = rng.normal(size=np.shape(arg))
        eps = 1e-5
        plus, minus = [y0, a, b], [y0, a, b]
        plus[k], minus[k] = arg + eps * d, arg - eps * d
        fd = (loss(*plus) - loss(*minus)) / (2 * eps)
        assert abs(np.sum(eager[k] * d) - fd) <= 1e-5 * (1 + abs(fd))
        np.testing.assert_allclose(compiled[k], eager[k], rtol=1e-9, atol=1e-12)


def test_odeint_refuses_a_closure_that_branches_on_traced_values():
    from fastad.scipy.integrate import odeint

    def loss(a):
        def f(y, tt):
            return -a * y if np.sum(a) > 0 else a * y
        return np.sum(odeint(f, ODE_ARGS[0], ODE_ARGS[1]))
    with pytest.raises(fa.TracingError, match="pass the traced values as arguments"):
        fa.grad(loss)(ODE_ARGS[2])


def test_distributions_are_modules():
    import importlib
    mvn = importlib.import_module("fastad.scipy.stats.multivariate_normal")
    assert mvn is fst.multivariate_normal
    from fastad.scipy.stats.norm import logpdf
    assert logpdf(0.0) == pytest.approx(scipy.stats.norm.logpdf(0.0))


@pytest.mark.parametrize("wrt", [0, 1, 2, 3])
def test_odeint_second_derivatives_match_finite_differences(wrt):
    """odeint's derivatives are odeints of augmented systems, differentiable
    again: second order in y0, t and the arguments, both modes (autograd's
    check_grads on odeint is order 2), and a compiled Hessian equal to the eager."""
    from fastad.scipy.integrate import odeint
    base = list(ODE_ARGS)
    base[1] = ODE_ARGS[1][::2]  # three times, loose tolerances: each solve nests two adjoints

    def loss(arg):
        y0, t, a, b = base[:wrt] + [arg] + base[wrt + 1:]
        out = odeint(_decay, y0, t, args=(a, b), rtol=1e-9, atol=1e-9)
        return np.sum(out ** 2 * np.arange(1.0, 3.0))
    fa.check_grads(loss, (base[wrt],), order=2, rtol=1e-3, atol=1e-5)
    if wrt == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_allclose(fa.jit(fa.hessian(loss), backend=COMPILED)(base[wrt]),
                                       fa.hessian(loss)(base[wrt]), rtol=1e-9, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 16), size=st.integers(1, 3))
def test_odeint_under_vmap_solves_each_example(seed, size):
    """vmap of odeint (and of its adjoint and tangent, under grad and jvp) is
    each example's solve in turn, stacked: the loop over the examples."""
    rng = np.random.default_rng(seed)
    y0s, a = rng.uniform(-1.0, 1.0, (size, 2)), rng.uniform(0.3, 1.5, 2)
    t, b = ODE_ARGS[1], ODE_ARGS[3]

    def loss(y0):
        return np.sum(_ode(y0, t, a, b) ** 2)

    np.testing.assert_allclose(fa.vmap(loss)(y0s), [loss(y) for y in y0s], rtol=1e-13)
    np.testing.assert_allclose(fa.vmap(fa.grad(loss))(y0s),
                               np.stack([fa.grad(loss)(y) for y in y0s]), rtol=1e-12)
    v = rng.standard_normal(2)
    np.testing.assert_allclose(fa.vmap(lambda y: fa.jvp(loss, (y,), (v,))[1])(y0s),
                               [fa.jvp(loss, (y,), (v,))[1] for y in y0s], rtol=1e-12)


def test_odeint_takes_pytrees_of_arguments():
    """autograd's ode_net passes a network's weights (a list of (W, b)
    tuples) as odeint's argument: gradients in each leaf, against central
    differences, eager and compiled."""
    from fastad.scipy.integrate import odeint
    rng = np.random.default_rng(5)
    params = [(rng.normal(size=(2, 3)) * 0.3, rng.normal(size=3) * 0.1),
              (rng.normal(size=(3, 2)) * 0.3, rng.normal(size=2) * 0.1)]
    y0, t = np.array([0.5, -0.2]), np.linspace(0.0, 1.0, 3)

    def dynamics(y, tt, weights):
        for w, b in weights[:-1]:
            y = np.tanh(y @ w + b)
        return y @ weights[-1][0] + weights[-1][1]

    def loss(weights):
        return np.sum(odeint(dynamics, y0, t, args=(weights,), rtol=1e-10, atol=1e-10) ** 2)
    eager = fa.grad(loss)(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.jit(fa.grad(loss), backend=COMPILED)(params)
    for leaf_e, leaf_c in zip(fa.tree_util.tree_leaves(eager), fa.tree_util.tree_leaves(compiled)):
        np.testing.assert_allclose(leaf_c, leaf_e, rtol=1e-9, atol=1e-12)
    flat, unflatten = fa.flatten(params)
    d, h = rng.normal(size=flat.shape), 1e-5
    fd = (loss(unflatten(flat + h * d)) - loss(unflatten(flat - h * d))) / (2 * h)
    np.testing.assert_allclose(fa.flatten(eager)[0] @ d, fd, rtol=1e-5)
