"""fastad.scipy.integrate.solve_ivp: values against SciPy's solve_ivp and the
exact solution (expm of stable linear systems), derivatives of the discrete
solution against central finite differences of the same integrator in random
directions (fixed step) and reverse against forward mode (adaptive, where
finite differences move the step sequence: they are checked at tight
tolerances with a looser bound), eager against compiled, vmap."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate as si
from conftest import BACKENDS
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

import fastad as fa
from fastad.core.errors import TracingError
from fastad.scipy.integrate import solve_ivp

COMPILED = "c" if "c" in BACKENDS else "numpy"
SOME = settings(max_examples=6, deadline=None)


def _fd(f, x, d, h=1e-6):
    return (f(x + h * d) - f(x - h * d)) / (2 * h)


@st.composite
def linear_systems(draw):
    """A random stable matrix (a skew part, minus a positive definite part),
    an initial state and an end time."""
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    skew = rng.normal(size=(n, n))
    s = rng.normal(size=(n, n)) * 0.5
    a = (skew - skew.T) - s @ s.T - 0.1 * np.eye(n)
    return a, rng.normal(size=n), draw(st.floats(0.3, 2.0)), rng


def linear(t, y, a):
    return a @ y


def lotka_volterra(t, y, p):
    return np.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def pendulum(t, y, p):
    return np.stack([y[1], -p[0] * np.sin(y[0]) - p[1] * y[1]])


def _plain(fun):
    """The same right-hand side for SciPy, on plain arrays."""
    return lambda t, y, p: np.asarray(fun(t, y, p))


@st.composite
def nonlinear_problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        return lotka_volterra, rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 2), rng
    return pendulum, rng.uniform([0.5, 0.0], [2.0, 0.3]), rng.uniform(-1.0, 1.0, 2), rng


# -- values -----------------------------------------------------------------------------
@SOME
@given(linear_systems(), st.sampled_from([(1e-3, 1e-6), (1e-8, 1e-10)]))
def test_rk45_takes_scipys_steps_and_matches_the_exact_solution(system, tols):
    a, y0, t1, _ = system
    rtol, atol = tols
    ours = solve_ivp(linear, (0.0, t1), y0, args=(a,), rtol=rtol, atol=atol)
    theirs = si.solve_ivp(linear, (0.0, t1), y0, args=(a,), rtol=rtol, atol=atol)
    assert ours.success and ours.status == 0 and ours.nfev == theirs.nfev
    # the error estimate is a difference of close values, summed in another order
    # than SciPy's: its rounding moves the step sizes a little
    np.testing.assert_allclose(ours.t, theirs.t, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-7, atol=1e-10)
    exact = np.stack([expm(a * t) @ y0 for t in ours.t], axis=1)
    np.testing.assert_allclose(ours.y, exact, atol=200 * (rtol * np.abs(exact).max() + atol))


@SOME
@given(nonlinear_problems())
def test_rk45_dense_output_at_t_eval_against_scipy(problem):
    fun, p, y0, rng = problem
    t_eval = np.sort(rng.uniform(0.0, 3.0, 7))
    first = float(rng.uniform(0.01, 0.1))
    ours = solve_ivp(fun, (0.0, 3.0), y0, args=(p,), t_eval=t_eval, first_step=first,
                     rtol=1e-7, atol=1e-9)
    theirs = si.solve_ivp(_plain(fun), (0.0, 3.0), y0, args=(p,), t_eval=t_eval,
                          first_step=first, rtol=1e-7, atol=1e-9)
    assert ours.nfev == theirs.nfev
    np.testing.assert_array_equal(ours.t, t_eval)
    # the same steps up to the rounding of the error estimate: within the tolerance
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-6, atol=1e-7)
    loose = solve_ivp(fun, (0.0, 3.0), y0, args=(p,), t_eval=t_eval)  # default tolerances
    scipys = si.solve_ivp(_plain(fun), (0.0, 3.0), y0, args=(p,), t_eval=t_eval)
    np.testing.assert_allclose(loose.y, scipys.y, rtol=1e-3, atol=1e-6)


@SOME
@given(linear_systems())
def test_rk4_converges_to_the_exact_solution_at_fourth_order(system):
    a, y0, t1, _ = system
    exact = expm(a * t1) @ y0
    errors = [np.abs(solve_ivp(linear, (0.0, t1), y0, args=(a,), method="RK4",
                               steps=s).y[:, -1] - exact).max() for s in (8, 16)]
    assert errors[1] <= errors[0] / 8 + 1e-13  # ~16x for a fourth-order method
    by_step = solve_ivp(linear, (0.0, t1), y0, args=(a,), method="RK4", max_step=t1 / 16)
    assert by_step.y.shape == (len(y0), 17)
    np.testing.assert_allclose(by_step.t, np.linspace(0.0, t1, 17), rtol=1e-14, atol=1e-15)


def test_more_steps_than_the_first_buffer_holds():
    p, y0 = np.array([1.5, 1.0, 3.0, 1.0]), np.array([1.0, 1.0])
    ours = solve_ivp(lotka_volterra, (0.0, 10.0), y0, args=(p,), rtol=1e-9, atol=1e-11)
    theirs = si.solve_ivp(_plain(lotka_volterra), (0.0, 10.0), y0, args=(p,), rtol=1e-9,
                          atol=1e-11)
    assert ours.t.size == theirs.t.size > 64 and ours.nfev == theirs.nfev
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-6, atol=1e-9)

    def last(z):
        out = solve_ivp(lotka_volterra, (0.0, 10.0), z[:2], args=(z[2:],), rtol=1e-9,
                        atol=1e-11)
        return np.sum(out.y[:, -1] ** 2)
    z, d = np.concatenate([y0, p]), np.random.default_rng(2).normal(size=6)
    _, forward = fa.jvp(last, (z,), (d,))
    np.testing.assert_allclose(fa.grad(last)(z) @ d, forward, rtol=1e-10)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop")
        value, grad = fa.compile(last, backend=COMPILED).value_and_grad(z)
    np.testing.assert_allclose(value, last(z), rtol=1e-12)
    np.testing.assert_allclose(grad @ d, forward, rtol=1e-9)


@pytest.mark.filterwarnings("ignore:invalid value")
def test_backwards_in_time_and_a_failing_step_size():
    y0 = np.array([1.0, 0.5])
    a = np.array([[-0.5, 1.0], [-1.0, -0.5]])
    ours = solve_ivp(linear, (2.0, 0.0), y0, args=(a,), rtol=1e-8, atol=1e-10)
    theirs = si.solve_ivp(linear, (2.0, 0.0), y0, args=(a,), rtol=1e-8, atol=1e-10)
    assert ours.nfev == theirs.nfev
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-6, atol=1e-8)
    # an empty span: y0 at every output, at t0 twice as SciPy's (given t_eval,
    # SciPy's gives none: empty lists)
    for t_eval, times in ((None, [2.0, 2.0]), (np.array([2.0]), [2.0])):
        empty = solve_ivp(linear, (2.0, 2.0), y0, args=(a,), t_eval=t_eval)
        assert empty.success and empty.y.shape == (2, len(times))
        np.testing.assert_array_equal(empty.t, times)
        np.testing.assert_array_equal(empty.y, np.stack([y0] * empty.y.shape[1], axis=1))
    # NaN from fun (a square root past zero) is rejected until the step is too small,
    # as in SciPy; a NaN first step ends at once (SciPy's own loop never ends there)
    root = solve_ivp(lambda t, y: -3 * np.sqrt(y), (0.0, 5.0), np.array([1.0]))
    scipys = si.solve_ivp(lambda t, y: -3 * np.sqrt(y), (0.0, 5.0), np.array([1.0]))
    assert root.status == scipys.status == -1
    # the same steps until the minimum step (10 eps |t|, SciPy's 10 ulp(t) within 2x) differs
    np.testing.assert_allclose(root.t[:90], scipys.t[:90], rtol=1e-6)
    np.testing.assert_allclose(root.t[-1], scipys.t[-1], rtol=1e-6)
    assert solve_ivp(lambda t, y: y * np.nan, (0.0, 5.0), np.array([1.0])).status == -1
    blowup = solve_ivp(lambda t, y: y * y, (0.0, 2.0), np.array([1.0]))  # blows up at t=1
    assert not blowup.success and blowup.status == -1 and "step size" in blowup.message


# -- derivatives ----------------------------------------------------------------------
@SOME
@given(nonlinear_problems(), st.booleans())
def test_rk4_gradients_in_y0_args_and_t_eval_against_finite_differences(problem, at_t_eval):
    fun, p, y0, rng = problem
    t_eval = np.sort(rng.uniform(0.1, 2.0, 4)) if at_t_eval else None
    w = rng.normal(size=(len(y0), 4 if at_t_eval else 13))

    def loss(z, te=t_eval):
        out = solve_ivp(fun, (0.0, 2.0), z[:2], args=(z[2:],), method="RK4", steps=12,
                        t_eval=te)
        return np.sum(out.y * w)
    z = np.concatenate([y0, p])
    d = rng.normal(size=z.size)
    np.testing.assert_allclose(fa.grad(loss)(z) @ d, _fd(loss, z, d), rtol=1e-6, atol=1e-8)
    if at_t_eval:
        dt = rng.normal(size=t_eval.size) * 0.01
        by_t = fa.grad(lambda te: loss(z, te))(t_eval) @ dt
        np.testing.assert_allclose(by_t, _fd(lambda te: loss(z, te), t_eval, dt),
                                   rtol=1e-6, atol=1e-8)


@SOME
@given(nonlinear_problems(), st.booleans())
def test_rk45_reverse_mode_against_forward_mode_and_finite_differences(problem, at_t_eval):
    fun, p, y0, rng = problem
    t_eval = np.linspace(0.0, 2.0, 5) if at_t_eval else None

    def loss(z, rtol=1e-3, atol=1e-6):
        out = solve_ivp(fun, (0.0, 2.0), z[:2], args=(z[2:],), t_eval=t_eval, rtol=rtol,
                        atol=atol)
        # (without t_eval the number of columns is the number of steps: use the last)
        return np.sum(out.y[:, -1] ** 2) + np.sum(out.y if at_t_eval else out.y[:, -1]) * 0.1
    z = np.concatenate([y0, p])
    d = rng.normal(size=z.size)
    reverse = fa.grad(loss)(z) @ d
    _, forward = fa.jvp(loss, (z,), (d,))
    np.testing.assert_allclose(reverse, forward, rtol=1e-10, atol=1e-12)

    def tight(x):
        return loss(x, 1e-10, 1e-12)
    np.testing.assert_allclose(fa.grad(tight)(z) @ d, _fd(tight, z, d), rtol=1e-4, atol=1e-6)


def test_rk45_gradient_in_the_end_of_t_span_and_t_eval():
    a = np.array([[-0.3, 2.0], [-2.0, -0.3]])
    rng = np.random.default_rng(3)

    def at_end(t1):
        return np.sum(solve_ivp(linear, fa.numpy.stack([0.0 * t1, t1]), np.array([1.0, 0.0]),
                                args=(a,), rtol=1e-10, atol=1e-12).y[:, -1])
    np.testing.assert_allclose(fa.grad(at_end)(1.7), _fd(at_end, 1.7, 1.0), rtol=1e-5)

    def span(ends):  # both ends traced, t_span a tuple as SciPy takes it
        return np.sum(solve_ivp(linear, (ends[0], ends[1]), np.array([1.0, 0.0]), args=(a,),
                                rtol=1e-10, atol=1e-12).y[:, -1])
    ends, d = np.array([0.2, 1.7]), rng.normal(size=2)
    np.testing.assert_allclose(fa.grad(span)(ends) @ d, _fd(span, ends, d), rtol=1e-5)

    def at_times(te):
        return np.sum(solve_ivp(linear, (0.0, 2.0), np.array([1.0, 0.0]), args=(a,),
                                t_eval=te, rtol=1e-10, atol=1e-12).y)
    te, d = np.array([0.3, 0.9, 1.4]), rng.normal(size=3)
    np.testing.assert_allclose(fa.grad(at_times)(te) @ d, _fd(at_times, te, d), rtol=1e-5)


@pytest.mark.parametrize("method", ["RK45", "RK4"])
@pytest.mark.parametrize("at_t_eval", [True, False])
def test_second_order_against_finite_differences_of_the_gradient(method, at_t_eval):
    rng = np.random.default_rng(11)
    t_eval = np.linspace(0.0, 3.0, 6) if at_t_eval else None  # a point at t0: x = 0

    def loss(p):
        out = solve_ivp(lotka_volterra, (0.0, 3.0), np.array([1.0, 0.8]), args=(p,),
                        t_eval=t_eval, method=method, **({"steps": 5} if method == "RK4" else {}))
        return np.sum(out.y ** 2) if at_t_eval else np.sum(out.y[:, -1] ** 2)
    p, d = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    grad = fa.grad(loss)
    np.testing.assert_allclose(fa.hvp(loss)(p, d), _fd(grad, p, d, 1e-5), rtol=1e-6, atol=1e-8)


# -- compiled, vmap -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["RK45", "RK4"])
def test_compiled_gradient_against_eager(method):
    rng = np.random.default_rng(7)
    p, y0 = rng.uniform(0.5, 1.5, 4), np.array([1.0, 0.8])
    t_eval = np.linspace(0.0, 4.0, 9)
    extra = {"steps": 5} if method == "RK4" else {"rtol": 1e-6, "atol": 1e-9}

    def loss(z):
        out = solve_ivp(lotka_volterra, (0.0, 4.0), z[:2], args=(z[2:],), t_eval=t_eval,
                        method=method, **extra)
        return np.sum((out.y - 1.0) ** 2)
    z = np.concatenate([y0, p])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop")
        compiled = fa.compile(loss, backend=COMPILED)
        value, grad = compiled.value_and_grad(z)
    np.testing.assert_allclose(value, loss(z), rtol=1e-13)
    np.testing.assert_allclose(grad, fa.grad(loss)(z), rtol=1e-10, atol=1e-12)
    if COMPILED == "c":
        assert "LOOP" in str(compiled.program.program)
    # another input that takes another number of steps traces again (a guard)
    z2 = z * 1.3
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop")
        value, grad = compiled.value_and_grad(z2)
    np.testing.assert_allclose(value, loss(z2), rtol=1e-12)
    np.testing.assert_allclose(grad, fa.grad(loss)(z2), rtol=1e-10, atol=1e-12)


def test_rk45_compiled_without_t_eval_retraces_when_the_step_count_changes():
    a = np.array([[-0.5, 1.0], [-1.0, -0.5]])

    def last(y0):
        return np.sum(solve_ivp(linear, (0.0, 3.0), y0, args=(a,)).y[:, -1])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not implement loop")
        g = fa.jit(fa.grad(last), backend=COMPILED)
        for y0 in (np.array([1.0, 0.0]), np.array([100.0, -30.0]), np.array([1e-3, 0.0])):
            np.testing.assert_allclose(g(y0), fa.grad(last)(y0), rtol=1e-10)


@settings(max_examples=6, deadline=None)
@given(ends=st.lists(st.floats(0.3, 2.5), min_size=2, max_size=4))
def test_rk4_compiled_with_traced_times_retraces_when_the_step_count_changes(ends):
    """RK4 without steps= takes its count from the times and max_step: a
    compiled function called with times that need another count traces again
    (a guard on the count), and always equals eager."""
    def f(t1, y0):
        sol = solve_ivp(lambda t, y: -0.5 * y + np.sin(t), (0.0, t1), y0, method="RK4",
                        max_step=0.1)
        return np.sum(sol.y[:, -1] ** 2)

    y0 = np.array([1.0, -2.0])
    g = fa.jit(f, backend=COMPILED)
    grad = fa.jit(fa.grad(f, argnums=(0, 1)), backend=COMPILED)
    for t1 in ends:
        np.testing.assert_allclose(g(t1, y0), f(t1, y0), rtol=1e-12)
        for got, want in zip(grad(t1, y0), fa.grad(f, argnums=(0, 1))(t1, y0)):
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_vmap_over_initial_states():
    a = np.array([[-1.0, 2.0], [-2.0, -1.0]])
    states = np.random.default_rng(5).normal(size=(4, 2))

    def final(y0):
        return solve_ivp(linear, (0.0, 2.0), y0, args=(a,), method="RK4", steps=10).y[:, -1]
    np.testing.assert_allclose(fa.vmap(final)(states), np.stack([final(y) for y in states]),
                               rtol=1e-14, atol=1e-15)
    d = np.random.default_rng(6).normal(size=2)
    np.testing.assert_allclose(fa.vmap(fa.grad(lambda y: final(y) @ d))(states),
                               np.stack([fa.grad(lambda y: final(y) @ d)(y) for y in states]),
                               rtol=1e-12)

    def adaptive(y0):  # each example picks its own steps: one batched while loop
        return solve_ivp(linear, (0.0, 2.0), y0, args=(a,), t_eval=np.array([2.0])).y[:, -1]
    scaled = states * np.array([[1.0], [10.0], [100.0], [1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one example at a time
        got = fa.vmap(adaptive)(scaled)
    np.testing.assert_array_equal(got, np.stack([adaptive(y) for y in scaled]))


# -- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "LSODA"}, NotImplementedError, "RK45"),
    ({"y0": np.ones((2, 1))}, ValueError, "1-dimensional"),
    ({"t_eval": np.array([0.5, 3.0])}, ValueError, "within t_span"),
    ({"t_eval": np.array([0.5, 0.2])}, ValueError, "sorted"),
    ({"method": "RK4"}, ValueError, "steps"),
    ({"method": "RK4", "steps": 0}, ValueError, "positive int"),
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"atol": np.ones(3)}, ValueError, "atol"),
    ({"first_step": 5.0}, ValueError, "first_step"),
    ({"events": lambda t, y: y[0]}, NotImplementedError, "events"),
    ({"fun": lambda t, y: np.ones(3)}, ValueError, "shape"),
])
def test_bad_input_is_a_clear_error(kwargs, error, match):
    call = {"fun": lambda t, y: -y, "t_span": (0.0, 1.0), "y0": np.array([1.0, 2.0])}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        solve_ivp(**call)
