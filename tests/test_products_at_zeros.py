"""Derivatives of products where factors are exactly zero (a relu'd factor,
a masked entry): `prod`, `cumprod` and `hypot` give the finite derivatives
finite differences and JAX give, not NaN from dividing by the zero.

Generated cases: arrays with 0 to 3 exact zeros per slice at random places,
a random axis (for `prod` also a tuple of axes, or all), gradients, forward-mode tangents and Hessians (up to two
zeros per slice, where the second derivatives are exact) against central
finite differences, eager and compiled.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from helpers import central_difference_gradient as _fd


def _with_zeros(rng, shape, axis, zeros):
    """Signed factors with ``zeros`` exact zeros in each slice ``axis`` reduces
    (an int, a tuple of axes or None: all)."""
    x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis) % len(shape)
    k = len(axes)
    moved = np.moveaxis(x, tuple(axes), tuple(range(-k, 0)))  # a view
    flat = moved.reshape(moved.shape[:len(shape) - k] + (int(np.prod(moved.shape[-k:])),))
    for idx in np.ndindex(flat.shape[:-1]):
        flat[idx][rng.choice(flat.shape[-1], min(zeros, flat.shape[-1]), replace=False)] = 0.0
    np.moveaxis(x, tuple(axes), tuple(range(-k, 0)))[...] = flat.reshape(moved.shape)
    return x


def _weights(rng, x, axis, keepdims=False):
    return rng.normal(size=np.shape(np.prod(x, axis=axis, keepdims=keepdims)))


LOSSES = {  # name: (the axes it takes, loss(axis, rng, x))
    "prod": ("many", lambda axis, rng, x: (
        lambda w: lambda v: fnp.sum(fnp.prod(v, axis=axis) * w))(_weights(rng, x, axis))),
    "prod_keepdims": ("many", lambda axis, rng, x: (
        lambda w: lambda v: fnp.sum(fnp.sin(fnp.prod(v, axis=axis, keepdims=True)) * w))(
            _weights(rng, x, axis, keepdims=True))),
    "cumprod": ("one", lambda axis, rng, x: lambda v: fnp.sum(fnp.cumprod(v, axis=axis) ** 2)),
    "cumprod_weighted": ("one", lambda axis, rng, x: lambda v: fnp.sum(
        fnp.cumprod(v, axis=axis) * fnp.cos(fnp.reshape(v, (-1,)) if axis is None else v))),
}


def _axes(takes, ndim):
    """An axis argument: an int (maybe negative) or None, and for reductions
    also a tuple of distinct axes in any order."""
    one = st.integers(-ndim, ndim - 1)
    if takes == "one":
        return st.one_of(one, st.none())
    return st.one_of(one, st.none(), st.lists(st.integers(0, ndim - 1), min_size=1,
                                              max_size=ndim, unique=True).map(tuple))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(LOSSES)), shape=st.sampled_from([(5,), (3, 4), (2, 3, 3), (2, 0, 3)]),
       zeros=st.integers(0, 3), backend=st.sampled_from(BACKENDS),
       seed=st.integers(0, 2 ** 16), data=st.data())
def test_products_with_zero_factors(name, shape, zeros, backend, seed, data):
    rng = np.random.default_rng(seed)
    takes, loss = LOSSES[name]
    axis = data.draw(_axes(takes, len(shape)), label="axis")
    x = _with_zeros(rng, shape, axis, zeros)
    f = loss(axis, rng, x)
    g = fa.grad(f)(x)
    np.testing.assert_allclose(g, _fd(f, x), rtol=1e-6, atol=1e-7)
    t = rng.normal(size=shape)
    np.testing.assert_allclose(fa.jvp(f, (x,), (t,))[1], np.sum(_fd(f, x) * t),
                               rtol=1e-6, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(fa.compile(f, backend=backend)(x), g, rtol=1e-12,
                                   atol=1e-14, err_msg=backend)
    # prod's second derivatives are exact with any number of zeros (its
    # partials are products), cumprod's with up to two per slice
    if (takes == "many" or zeros <= 2) and x.size <= 12:
        H = fa.hessian(f)(x).reshape(x.size, x.size)
        flat = lambda y, i: fa.grad(f)(y.reshape(shape)).ravel()[i]  # noqa: E731
        H_fd = np.array([_fd(lambda y: flat(y, i), x).ravel() for i in range(x.size)]
                        ).reshape(x.size, x.size)
        np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["eager"] + BACKENDS)
def test_hypot_at_the_origin_has_the_zero_subgradient(backend):
    f = lambda x: fnp.sum(fnp.hypot(fnp.maximum(x, 0.0), fnp.maximum(x, 0.0)))  # noqa: E731
    x = np.array([-1.0, 2.0, 0.5])
    g = fa.grad(f) if backend == "eager" else fa.compile(f, backend=backend)
    np.testing.assert_allclose(g(x), _fd(f, x), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", ["eager"] + BACKENDS)
@pytest.mark.parametrize("pair", [(-np.inf, -np.inf), (np.inf, np.inf), (1.5, 1.5),
                                  (-np.inf, 0.3), (0.3, -2.0)])
def test_logaddexp_of_equal_operands_shares_the_derivative(pair, backend):
    """d logaddexp / dx is exp(x - ans): 1/2 each where x == y, also at
    infinities, where x - ans is NaN (JAX's)."""
    f = lambda v: fnp.logaddexp(v[0], v[1])  # noqa: E731
    v = np.array(pair)
    g = (fa.grad(f) if backend == "eager" else fa.compile(f, backend=backend))(v)
    x, y = pair
    want = [0.5, 0.5] if x == y else [np.exp(x - np.logaddexp(x, y)), np.exp(y - np.logaddexp(x, y))]
    np.testing.assert_allclose(g, want, rtol=1e-15)
    if np.isfinite(x) and np.isfinite(y):  # second derivatives: those of exp(x - ans)
        h = fa.hessian(f)(v)
        np.testing.assert_allclose(h[0, 0], want[0] * want[1], rtol=1e-12)
