"""Derivatives of products where factors are exactly zero (a relu'd factor,
a masked entry): `prod`, `cumprod` and `hypot` give the finite derivatives
finite differences and JAX give, not NaN from dividing by the zero.

Generated cases: arrays with 0 to 3 exact zeros per slice at random places,
a random axis, gradients, forward-mode tangents and Hessians (up to two
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


def _fd(f, x, eps=1e-6):
    basis = np.eye(x.size).reshape((x.size,) + x.shape)
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in basis]
                    ).reshape(x.shape)


def _with_zeros(rng, shape, axis, zeros):
    x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    moved = np.moveaxis(x, axis, -1)  # a view: zeros placed per slice along ``axis``
    for idx in np.ndindex(moved.shape[:-1]):
        k = min(zeros, moved.shape[-1])
        moved[idx][rng.choice(moved.shape[-1], k, replace=False)] = 0.0
    return x


LOSSES = {
    "prod": lambda axis, w: lambda x: fnp.sum(fnp.prod(x, axis=axis) * w),
    "prod_keepdims": lambda axis, w: lambda x: fnp.sum(
        fnp.sin(fnp.prod(x, axis=axis, keepdims=True)) * fnp.expand_dims(w, axis)),
    "cumprod": lambda axis, w: lambda x: fnp.sum(fnp.cumprod(x, axis=axis) ** 2),
    "cumprod_weighted": lambda axis, w: lambda x: fnp.sum(
        fnp.cumprod(x, axis=axis) * fnp.cos(x)),
}


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(LOSSES)), shape=st.sampled_from([(5,), (3, 4), (2, 3, 3)]),
       zeros=st.integers(0, 3), backend=st.sampled_from(BACKENDS),
       seed=st.integers(0, 2 ** 16), data=st.data())
def test_products_with_zero_factors(name, shape, zeros, backend, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    x = _with_zeros(rng, shape, axis, zeros)
    w = rng.normal(size=shape[:axis] + shape[axis + 1:])
    f = LOSSES[name](axis, w)
    g = fa.grad(f)(x)
    np.testing.assert_allclose(g, _fd(f, x), rtol=1e-6, atol=1e-7)
    t = rng.normal(size=shape)
    np.testing.assert_allclose(fa.jvp(f, (x,), (t,))[1], np.sum(_fd(f, x) * t),
                               rtol=1e-6, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(fa.compile(f, backend=backend)(x), g, rtol=1e-12,
                                   atol=1e-14, err_msg=backend)
    if zeros <= 2 and x.size <= 12:
        H = fa.hessian(f)(x).reshape(x.size, x.size)
        flat = lambda y, i: fa.grad(f)(y.reshape(shape)).ravel()[i]  # noqa: E731
        H_fd = np.array([_fd(lambda y: flat(y, i), x).ravel() for i in range(x.size)])
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
