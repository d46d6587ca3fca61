"""The NumPy surface code written for autograd reaches for: each function
fastad.numpy added as a drop-in for numpy, called through plain NumPy on
traced values, against NumPy's value, central finite differences (forward and
reverse mode, to order 2) in random directions, and the compiled C VM
against eager."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

# the C VM where it is built, else the reference interpreter
COMPILED = "c" if "c" in BACKENDS else "numpy"

rng = np.random.default_rng(7)
V = np.array([0.3, -1.2, 2.5, 0.7, 1.9])  # no ties, no zeros
P = np.array([0.3, 0.45, 0.6, 0.75, 0.9])  # in (0, 1)
M = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.5]])
R = rng.normal(size=(3, 4))

# (name, function of traced arrays, sample arguments, order)
CASES = [
    ("remainder %", lambda x: x % 0.65, (V,), 2),
    ("remainder in y", lambda x, y: np.remainder(x, y), (V, P + 0.5), 2),
    ("mod", lambda x: np.mod(3.1, x), (P + 0.5,), 2),
    ("fmod", lambda x, y: np.fmod(x, y), (V, P + 0.5), 2),
    ("floor_divide x // y", lambda x: x // 0.65 + x, (V,), 2),
    ("divmod", lambda x: divmod(x, 0.65)[1], (V,), 2),
    ("modf", lambda x: np.modf(x)[0], (V,), 2),
    ("radians", np.radians, (V,), 2), ("degrees", np.degrees, (V,), 2),
    ("deg2rad", np.deg2rad, (V,), 2), ("rad2deg", np.rad2deg, (V,), 2),
    ("heaviside", lambda x: np.heaviside(x, 0.5) * x, (V,), 2),
    ("copysign", lambda x: np.copysign(x, -1.0), (V,), 2),
    ("logaddexp2", np.logaddexp2, (V, P), 2),
    ("sinc", np.sinc, (V,), 2), ("ldexp", lambda x: np.ldexp(x, 3), (V,), 2),
    ("trunc", lambda x: np.trunc(x) + x, (V,), 2), ("fix", lambda x: np.fix(x) * x, (V,), 2),
    ("nan_to_num", np.nan_to_num, (V,), 2),
    ("float_power", lambda x: np.float_power(x, 3), (V,), 2),
    ("acos", np.acos, (P,), 2), ("atan2", np.atan2, (V, P), 2), ("pow", np.pow, (P, V), 2),
    ("average", lambda x: np.average(x, weights=P), (V,), 2),
    ("average axis", lambda x: np.average(x, axis=1, weights=[1.0, 2.0, 3.0, 4.0]), (R,), 2),
    ("median", np.median, (V,), 2),
    ("median axis", lambda x: np.median(x, axis=0), (R,), 2),
    ("percentile", lambda x: np.percentile(x, [10.0, 75.0]), (V,), 2),
    ("quantile axis", lambda x: np.quantile(x, 0.3, axis=1, keepdims=True), (R,), 2),
    ("nanmedian", lambda x: np.nanmedian(np.where(x > 2.0, np.nan, x)), (V,), 2),
    ("nanvar", lambda x: np.nanvar(np.where(x > 2.0, np.nan, x)), (V,), 2),
    ("nanstd", lambda x: np.nanstd(np.where(x > 2.0, np.nan, x), ddof=1), (V,), 2),
    ("nancumsum", np.nancumsum, (V,), 2),
    ("ptp", np.ptp, (V,), 2),
    ("cov", np.cov, (R,), 2), ("corrcoef", np.corrcoef, (R,), 2),
    ("cov rowvar", lambda x: np.cov(x, rowvar=False, bias=True), (R,), 2),
    ("trapezoid", np.trapezoid, (V,), 2),
    ("trapezoid x", lambda y, x: np.trapezoid(y, x), (V, np.cumsum(P)), 2),
    ("gradient", np.gradient, (V,), 2),
    ("gradient 2-d", lambda x: np.gradient(x, 0.5, edge_order=2), (R,), 2),
    ("gradient coordinates", lambda x: np.gradient(x, np.cumsum(P)), (V,), 2),
    ("ediff1d", lambda x: np.ediff1d(x, to_begin=1.0), (V,), 2),
    ("cumulative_sum", lambda x: np.cumulative_sum(x, include_initial=True), (V,), 2),
    ("vander", lambda x: np.vander(x, 3), (V,), 2),
    ("polyadd", np.polyadd, (V, P[:3]), 2), ("polymul", np.polymul, (V, P[:3]), 2),
    ("polyder", np.polyder, (V,), 2), ("polyint", np.polyint, (V,), 2),
    ("polydiv", lambda u, v: np.polydiv(u, v)[0], (V, P[:3]), 2),
    ("poly", np.poly, (V,), 2), ("polyfit", lambda y: np.polyfit(P, y, 2), (V,), 2),
    ("roots", lambda p: np.roots(p), (np.poly(np.array([0.5, 1.5, -2.0])),), 1),
    ("unwrap", np.unwrap, (np.array([0.0, 3.0, 6.5, 9.0, 12.5]),), 2),
    ("vecdot", np.vecdot, (R, R), 2), ("matvec", np.matvec, (M, V[:3]), 2),
    ("linspace", lambda a, b: np.linspace(a, b, 7), (P[0], P[1] + 1.0), 2),
    ("linspace arrays", lambda a, b: np.linspace(a, b, 4, axis=1), (P[:2], V[:2]), 2),
    ("logspace", lambda a: np.logspace(a, 1.0, 5), (P[0],), 2),
    ("geomspace", lambda a: np.geomspace(a, 4.0, 5), (P[1],), 2),
    ("arange traced", lambda a: fnp.arange(a, 3.0, 0.5), (P[0],), 2),
    ("meshgrid", lambda x, y: np.meshgrid(x, y)[0] * np.meshgrid(x, y)[1], (V, P[:3]), 2),
    ("full_like", lambda x: fnp.full_like(V, x[0]) * x, (V,), 2),
    ("append", lambda x: np.append(x, [1.0, x[0]]), (V,), 2),
    ("insert", lambda x: np.insert(x, [1, 3], [9.0, x[2]]), (V,), 2),
    ("delete", lambda x: np.delete(x, [0, 2]), (V,), 2),
    ("resize", lambda x: np.resize(x, (2, 4)), (V,), 2),
    ("block", lambda a: np.block([[a, a], [a, a]]), (M,), 2),
    ("column_stack", lambda x: np.column_stack([x, x * 2.0]), (V,), 2),
    ("row_stack", lambda x: np.row_stack([x, x * 2.0]), (V,), 2),
    ("dstack", lambda x: np.dstack([x, x]), (V,), 2),
    ("concat", lambda x: np.concat([x, x]), (V,), 2),
    ("split", lambda x: np.split(x, [2])[1], (V,), 2),
    ("array_split", lambda x: np.array_split(x, 2)[0], (V,), 2),
    ("hsplit vsplit", lambda a: np.hsplit(a, 3)[1] * np.vsplit(a, 3)[2].T, (M,), 2),
    ("select", lambda x: np.select([x < 0, x > 1], [x, x ** 2], 0.5), (V,), 2),
    ("choose", lambda x: np.choose([0, 1, 0, 1, 1], [x, x ** 2]), (V,), 2),
    ("compress", lambda x: np.compress(x > 0, x), (V,), 2),
    ("extract", lambda x: np.extract(x > 0, x), (V,), 2),
    ("piecewise", lambda x: np.piecewise(x, [x < 0, x >= 0], [lambda t: -t, lambda t: t ** 2]),
     (V,), 2),
    ("diagflat", np.diagflat, (V[:3],), 2),
    ("trim_zeros", lambda x: np.trim_zeros(np.concatenate([[0.0], x, [0.0]])), (V,), 2),
    ("apply_along_axis", lambda x: np.apply_along_axis(lambda r: np.sum(r ** 2), 1, x), (R,), 2),
    ("apply_over_axes", lambda x: np.apply_over_axes(np.sum, x, [0]), (R,), 2),
    ("sort_complex", lambda x: np.abs(np.sort_complex(x)), (V,), 2),
    ("make_diagonal", lambda x: fnp.make_diagonal(np.reshape(x[:4], (2, 2)), axis1=-1,
                                                  axis2=-2), (V,), 2),
    ("concatenate_args", lambda x: fnp.concatenate_args(0, x, x[:2]), (V,), 2),
    ("array_from_args", lambda x: fnp.array_from_args((), {}, x[0], x[1]), (V,), 2),
    ("r_", lambda x: fnp.r_[x, 1.0, x[:2]], (V,), 2),
    ("c_", lambda x: fnp.c_[x, x * 3.0], (V,), 2),
    ("array of traced scalars", lambda x: fnp.array([x[0], x[1] * 2.0, 3.0]), (V,), 2),
    ("nested list", lambda x: fnp.array([[x[0], 1.0], [2.0, x[1]]]) @ x[:2], (V,), 2),
    ("zeros then assignment", lambda x: _assigned(x), (V,), 2),
    ("empty then assignment", lambda x: _assigned(x, fnp.empty), (V,), 2),
    ("boolean mask", lambda x: x[x > 0] ** 2, (V,), 2),
    ("boolean mask assignment", lambda x: _masked(x), (V,), 2),
    ("argmax as index", lambda x: x[np.argmax(x)] * x[np.argmin(x)], (V,), 2),
    ("nonzero", lambda x: x[np.nonzero(x > 1.0)], (V,), 2),
    ("unique", lambda x: np.unique(np.concatenate([x, x[:2]])), (V,), 2),
    ("unique_counts", lambda x: np.unique_counts(x).values * np.unique_counts(x).counts, (V,), 2),
    ("frexp", lambda x: np.frexp(x)[0], (V,), 2),
    ("where one argument", lambda x: x[np.where(x < 1.0)], (V,), 2),
    ("einsum ...", lambda a, b: np.einsum("...ij,...jk->...ik", a, b), (
        rng.normal(size=(2, 3, 3)), M), 2),
    ("einsum 3 operands", lambda a, b, c: np.einsum("ij,jk,k->i", a, b, c), (M, R, V[:4]), 2),
    ("einsum broadcast", lambda a, b: np.einsum("mnd,mdo->mno", a, b), (
        rng.normal(size=(1, 4, 1)), rng.normal(size=(3, 1, 2))), 2),
    ("einsum implicit ...", lambda a: np.einsum("...i", a), (R,), 2),
    ("atleast_Nd of several", lambda a, b: sum(np.sum(t ** 2) for t in np.atleast_2d(a, b[0])
                                               + fnp.atleast_3d(a, b)), (V, M), 2),
    ("einsum interleaved", lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2])
     + np.einsum(a, [0, 1], b, [1, 2]), (M, R), 2),
    ("einsum interleaved ...", lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [1, 2],
                                                       [Ellipsis, 0, 2]),
     (rng.normal(size=(2, 3, 3)), M), 2),
    ("array methods", lambda x: x.cumprod() + x.round(1) * x + x.repeat(2)[::2]
     + x.take([4, 3, 2, 1, 0]) + x[x.argmax()] * x[x.argsort()] + np.sum(x.compress(x > 0)),
     (V,), 2),
    ("prod dtype", lambda x: np.prod((2, 3), dtype=float) * fnp.prod([x[0], x[1]]), (V,), 2),
    ("norm 2", lambda a: np.linalg.norm(a, 2), (M,), 2),
    ("norm nuc", lambda a: np.linalg.norm(a, "nuc"), (M,), 2),
    ("norm 1, inf, -1", lambda a: np.linalg.norm(a, 1) + np.linalg.norm(a, np.inf)
     + np.linalg.norm(a, -1), (R,), 2),
    ("norm N-d", lambda a: np.linalg.norm(a), (rng.normal(size=(2, 3, 2)),), 2),
    ("norm axis pair", lambda a: np.linalg.norm(a, "fro", axis=(0, 2)),
     (rng.normal(size=(2, 3, 2)),), 2),
    ("lstsq", lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], (R.T, V[:4]), 2),
    ("lstsq residuals", lambda a, b: np.linalg.lstsq(a, b)[1], (R.T, V[:4]), 2),
    ("cond", np.linalg.cond, (M,), 2),
    ("matrix_norm", lambda a: np.linalg.matrix_norm(a, ord=2), (M,), 2),
    ("vector_norm", lambda a: np.linalg.vector_norm(a, ord=3), (V,), 2),
    ("multi_dot", lambda a, b: np.linalg.multi_dot([a, b, b.T]), (M, R), 2),
    ("tensorinv", lambda a: np.linalg.tensorinv(np.reshape(a, (2, 2, 2, 2)), 2),
     (np.eye(4).reshape(-1) + 0.1 * rng.normal(size=16),), 2),
    ("svdvals", np.linalg.svdvals, (R,), 2),
    ("linalg.trace", np.linalg.trace, (M,), 2),
    ("hfft", lambda x: np.fft.hfft(x * (1 + 0.5j)), (V,), 2),
    ("ihfft", lambda x: np.abs(np.fft.ihfft(x)) ** 2, (V,), 2),
]


def _assigned(x, make=fnp.zeros):
    z = make((3, 2))
    z[0, 1] = x[0]
    z[1:, 0] = x[1:3] * 2.0
    z[2] += x[3]
    if make is fnp.empty:
        z[0, 0] = 1.0
    return z


def _masked(x):
    y = x * 1.0
    y[y < 0.5] = 0.25 * y[y < 0.5]
    return y


def _loss(fn):
    def loss(*args):
        out = fn(*args)
        leaves = list(out) if isinstance(out, (tuple, list)) else [out]
        return sum(np.sum(np.real(leaf) * (k + 1.0) ** 0.5) for k, leaf in enumerate(leaves))
    return loss


@pytest.mark.parametrize("name,fn,args,order", CASES, ids=[c[0] for c in CASES])
def test_value_is_numpys_and_derivatives_match_finite_differences(name, fn, args, order):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = fn(*args)
        got = fa.vjp(fn, *args)[0]
        for w, g in zip(*(list(o) if isinstance(o, (tuple, list)) else [o]
                          for o in (want, got))):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10, atol=1e-12)
        fa.check_grads(fn, args, order=order)


@pytest.mark.parametrize("name,fn,args,order", CASES, ids=[c[0] for c in CASES])
def test_compiled_equals_eager(name, fn, args, order):
    loss = _loss(fn)
    argnums = tuple(range(len(args)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = fa.grad(loss, argnums)(*args)
        compiled = fa.jit(fa.grad(loss, argnums), backend=COMPILED)
        for _ in range(2):  # the first call traces, the second replays
            got = compiled(*args)
            for g, e in zip(got, eager):
                np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
        moved = tuple(a + 0.01 * np.sign(a) for a in args)  # a nearby input: same guards
        for g, e in zip(compiled(*moved), fa.grad(loss, argnums)(*moved)):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_guards_retrace_when_a_plain_result_changes():
    """argmax, a mask's pattern and allclose give plain values; a compiled
    function retraces when they change instead of replaying a stale one."""
    def f(x):
        i = np.argmax(x)
        tail = np.sum(x[x > 1.0])
        near = np.allclose(x, V)
        return x[i] ** 2 + tail + (1.0 if near else 2.0) * np.sum(x)
    g = fa.jit(fa.grad(f), backend=COMPILED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in (V, V[::-1].copy(), V - 1.0, V + 5.0, V):
            np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)


def test_plain_results_of_traced_values():
    seen = {}

    def f(x):
        seen["isclose"] = np.isclose(x, V)
        seen["count"] = np.count_nonzero(x > 1.0)
        seen["unique"] = np.unique(np.round(x), return_counts=True)[1]  # counts: plain
        seen["result_type"] = np.result_type(x, np.float32)
        seen["array_equal"] = np.array_equal(x, V)
        return np.sum(x)
    fa.grad(f)(V)
    assert seen["isclose"].all() and seen["count"] == 2 and seen["array_equal"]
    assert seen["result_type"] == np.float64
    np.testing.assert_array_equal(seen["unique"], np.unique(np.round(V), return_counts=True)[1])


def test_a_floating_result_without_derivative_is_refused():
    with pytest.raises(fa.TracingError, match="kaiser"):
        fa.grad(lambda b: np.sum(fnp.kaiser(5, b)))(2.0)


def test_vmap_of_a_plain_result_the_examples_agree_on():
    X = rng.normal(size=(3, 4))
    got = fa.vmap(lambda x: np.sum(x ** 2) * (1.0 + np.allclose(x, 5.0)))(X)
    np.testing.assert_allclose(got, np.sum(X ** 2, axis=1))
    # a plain result the examples disagree on: each example on its own, with a warning
    with pytest.warns(UserWarning, match="examples"):
        got = fa.vmap(lambda x: x[np.nonzero(x > np.median(x))[0][0]])(X)
    np.testing.assert_allclose(got, [x[np.nonzero(x > np.median(x))[0][0]] for x in X])
    # argmax is a traced integer: batched, no example on its own
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        np.testing.assert_allclose(fa.vmap(lambda x: x[np.argmax(x)])(X), np.max(X, axis=1))


def test_floating_results_of_set_routines_are_refused_not_cut_off():
    with pytest.raises(fa.TracingError, match="union1d"):
        fa.grad(lambda x: np.sum(np.union1d(x, [5.0])))(V)
    with pytest.raises(fa.TracingError, match="weights"):
        fa.grad(lambda w: np.sum(np.histogram(V, 3, weights=w)[0]))(V)


INTEGERS = st.integers(-(2**51), 2**51)  # a loop carries its integers exactly below 2**53


def _divisions(a, b):
    """//, %, divmod and fmod of the integers a scan steps through (traced
    integers, as a loop counter or an argmax is), beside NumPy's."""
    def f(x):
        def step(c, ab):
            i, j = ab
            q, r = divmod(i, j)
            return c, (i // j, i % j, np.floor_divide(i, 7), np.remainder(i, -3), np.fmod(i, j),
                       q, r, 11 % j, np.fmod(i, -4))
        return fa.scan(step, x, (a, b))[1]
    with np.errstate(all="ignore"):
        want = [a // b, a % b, a // 7, a % -3, np.fmod(a, b), *np.divmod(a, b), 11 % b,
                np.fmod(a, -4)]
    return f, want


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.one_of(st.integers(-50, 50), INTEGERS),
                                st.one_of(st.integers(-9, 9), INTEGERS)), min_size=1, max_size=6),
       dtype=st.sampled_from([np.int64, np.int32]))
def test_integer_division_of_traced_integers_is_numpys(pairs, dtype):
    """Bit for bit and in NumPy's dtype, division by zero included."""
    info = np.iinfo(dtype)
    a, b = (np.clip(np.array(v), info.min, info.max).astype(dtype) for v in zip(*pairs))
    f, want = _divisions(a, b)
    for g, w in zip(f(1.0), want):
        assert g.dtype == w.dtype and np.array_equal(g, w), (g, w)


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_integer_division_compiled_is_numpys(dtype):
    rng = np.random.default_rng(3)
    lim = min(2**51, np.iinfo(dtype).max)
    a = np.concatenate([rng.integers(-lim, lim, 50), rng.integers(-20, 20, 50), [0, 7, -7]])
    b = np.concatenate([rng.integers(-lim, lim, 50), rng.integers(-5, 5, 50), [0, 0, 3]])
    f, want = _divisions(a.astype(dtype), b.astype(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.jit(f)(1.0)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w), (g, w)


def test_a_loop_refuses_an_integer_it_would_round():
    with pytest.raises(OverflowError, match="2[*][*]53"):
        fa.scan(lambda c, j: (c, j + 1), 0.0, np.array([2**60]))


def test_fori_loop_indexing_by_a_remainder_of_the_step():
    x = np.array([0.5, -1.2, 2.0, 0.3])

    def f(x):
        return fa.fori_loop(0, 9, lambda i, c: c * np.cos(c) + x[i % 4] * x[i // 3], x[0])

    def python(x):
        c = x[0]
        for i in range(9):
            c = c * np.cos(c) + x[i % 4] * x[i // 3]
        return c
    assert f(x) == python(x)
    np.testing.assert_allclose(fa.grad(f)(x), fa.grad(python)(x), rtol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(fa.compile(f, backend=COMPILED)(x), fa.grad(python)(x),
                                   rtol=1e-13)
