"""jax.numpy's extra keywords on fastad.numpy's functions (`_jax_keywords`),
eager and compiled, against NumPy spelling the same thing, with derivatives
against central differences where the result is differentiable."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

# the backend is not the point here: one compiled backend (the reference
# interpreter without the C extension, never a cold Numba compile per case)
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)

pytestmark = pytest.mark.filterwarnings("ignore:fastad:UserWarning")  # host calls (argsort)


def _both(f, *args):
    """f eager under a trace (fa.vjp's value) and compiled, equal (to rounding:
    a compiled product may sum in another order), returned."""
    eager = fa.vjp(f, *args)[0] if np.asarray(args[0]).dtype.kind == "f" else f(*args)
    compiled = jit(f)(*args)
    for e, c in zip(eager if isinstance(eager, tuple) else (eager,),
                    compiled if isinstance(compiled, tuple) else (compiled,)):
        np.testing.assert_allclose(np.asarray(c), np.asarray(e), rtol=1e-13, atol=1e-15)
        assert np.asarray(c).dtype == np.asarray(e).dtype
    return compiled


def _fd_check(f, x, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=x.shape)
    eps = 1e-6
    fd = (f(x + eps * d) - f(x - eps * d)) / (2 * eps)
    g = fa.grad(f)(x)
    assert abs(np.sum(g * d) - fd) <= 1e-6 * (1 + abs(fd))
    np.testing.assert_allclose(jit(fa.grad(f))(x), g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, call", [
    ("dot", lambda a, b: fnp.dot(a, b, precision="highest")),
    ("matmul", lambda a, b: fnp.matmul(a, b, precision=("highest", "default"))),
    ("einsum", lambda a, b: fnp.einsum("ij,jk->ik", a, b, precision="high")),
    ("tensordot", lambda a, b: fnp.tensordot(a, b, axes=1, precision=None)),
    ("inner", lambda a, b: fnp.inner(a, b.T, precision="highest")),
    ("preferred_element_type", lambda a, b: fnp.dot(a, b, preferred_element_type=np.float32)),
])
def test_products_take_precision(name, call):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    got = _both(call, a, b)
    np.testing.assert_allclose(got, a @ b, rtol=1e-6 if got.dtype == np.float32 else 1e-14)
    assert got.dtype == (np.float32 if name == "preferred_element_type" else np.float64)
    if got.dtype == np.float64:  # (central differences of float32 sums are noise)
        _fd_check(lambda a: fnp.sum(call(a, b) ** 2), a)


@settings(max_examples=30, deadline=None)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.integers(-3, 3).map(float)),
       axis=st.sampled_from([-1, 0, None]))
def test_descending_sorts_keep_equal_elements_in_order(a, axis):
    order = _both(lambda a: fnp.argsort(a, axis=axis, descending=True, stable=True), a)
    values = _both(lambda a: fnp.sort(a, axis=axis, descending=True), a)
    flat = a.ravel() if axis is None else a
    ax = 0 if axis is None else axis
    picked = np.take_along_axis(flat, order, axis=ax)
    np.testing.assert_array_equal(picked, values)
    np.testing.assert_array_equal(values, np.flip(np.sort(flat, axis=ax), axis=ax))
    # ties: original positions increase along the axis
    ties = np.diff(picked, axis=ax) == 0
    assert np.all(np.diff(order, axis=ax)[ties] > 0)


def _sized(values, size, fill):
    values = np.asarray(values)
    if len(values) >= size:
        return values[:size]
    pad = np.full((size - len(values),) + values.shape[1:], fill, dtype=values.dtype)
    return np.concatenate([values, pad])


@settings(max_examples=30, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
                    elements=st.sampled_from([0.0, 1.5, -2.0])),
       size=st.integers(0, 8), fill=st.sampled_from([None, -1]))
def test_fixed_size_index_results(x, size, fill):
    f = 0 if fill is None else fill
    got = _both(lambda x: fnp.nonzero(x, size=size, fill_value=fill), x)
    for g, want in zip(got, np.nonzero(x)):
        np.testing.assert_array_equal(g, _sized(want, size, f))
    np.testing.assert_array_equal(_both(lambda x: fnp.where(x > 0, size=size, fill_value=fill)[0],
                                        x), _sized(np.where(x > 0)[0], size, f))
    np.testing.assert_array_equal(_both(lambda x: fnp.flatnonzero(x, size=size, fill_value=fill),
                                        x), _sized(np.flatnonzero(x), size, f))
    np.testing.assert_array_equal(_both(lambda x: fnp.argwhere(x, size=size, fill_value=fill), x),
                                  _sized(np.argwhere(x), size, f))
    unique = np.unique(x)
    want = _sized(unique, size, unique[0] if fill is None and unique.size else f)
    np.testing.assert_array_equal(jit(lambda x: fnp.unique(x, size=size, fill_value=fill))(x),
                                  want)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_take_with_fill_reads_fill_value_out_of_bounds(axis):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4))
    idx = np.array([0, -1, 5, 2, -9])
    n = x.size if axis is None else x.shape[axis]
    flat = x.ravel() if axis is None else x

    def want(fill):
        wrapped = np.where(idx < 0, idx + n, idx)
        ok = (wrapped >= 0) & (wrapped < n)
        out = np.take(flat, np.where(ok, wrapped, 0), axis=0 if axis is None else axis)
        shape = [1] * out.ndim
        shape[0 if axis is None else axis] = len(idx)
        return np.where(ok.reshape(shape), out, fill)
    np.testing.assert_array_equal(
        _both(lambda x: fnp.take(x, idx, axis=axis, mode="fill", fill_value=-7.0), x), want(-7.0))
    np.testing.assert_array_equal(_both(lambda x: fnp.take(x, idx, axis=axis, mode="fill"), x),
                                  want(np.nan))
    _fd_check(lambda x: fnp.sum(fnp.take(x, idx, axis=axis, mode="fill", fill_value=0.0) ** 2), x)
    along = np.array([[0, 4], [-1, 1], [2, 9]])
    got = _both(lambda x: fnp.take_along_axis(x, along, axis=1, mode="fill", fill_value=0.0), x)
    ok = (along >= -4) & (along < 4)
    np.testing.assert_array_equal(got, np.where(ok, np.take_along_axis(x, np.where(ok, along, 0),
                                                                       axis=1), 0.0))


@pytest.mark.parametrize("total", [0, 3, 7, 12])
@pytest.mark.parametrize("axis", [None, 1])
def test_repeat_to_a_total_length(total, axis):
    x = np.arange(6.0).reshape(2, 3) + 1.0
    full = np.repeat(x, [1, 2, 1] if axis == 1 else 2, axis=axis)
    along = 0 if axis is None else axis
    have = full.shape[along]
    picks = np.minimum(np.arange(total), have - 1)
    got = _both(lambda x: fnp.repeat(x, [1, 2, 1] if axis == 1 else 2, axis=axis,
                                     total_repeat_length=total), x)
    np.testing.assert_array_equal(got, np.take(full, picks, axis=along))


def test_bincount_of_traced_weights_and_its_length():
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 5, size=9)
    w = rng.normal(size=9)
    for kwargs in ({}, {"minlength": 8}, {"length": 3}, {"length": 7}):
        want = np.bincount(idx, weights=w, minlength=kwargs.get("minlength", 0))
        if "length" in kwargs:
            want = _sized(np.bincount(idx, weights=w, minlength=kwargs["length"]),
                          kwargs["length"], 0.0)
        np.testing.assert_allclose(_both(lambda w: fnp.bincount(idx, weights=w * 1.0, **kwargs),
                                         w), want)
    _fd_check(lambda w: fnp.sum(fnp.bincount(idx, weights=w ** 2) ** 2), w)
    np.testing.assert_array_equal(fnp.bincount(idx, length=7), _sized(np.bincount(idx), 7, 0))


def test_the_extra_keywords_are_refused_where_they_mean_nothing():
    x = np.arange(3.0)
    with pytest.raises(ValueError, match="one-argument"):
        jit(lambda x: fnp.where(x > 0, x, 0.0, size=2))(x)
    with pytest.raises(TypeError):
        fnp.dot(x, x, precison="high")  # misspelled: NumPy's own error
