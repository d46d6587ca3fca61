"""``argmax``/``argmin`` of traced values are traced integers (JAX's): a
compiled training step that computes an accuracy, picks the best element or
indexes with the winner compiles once, whatever the winners are at later
calls; a use of the value itself (an ``if``, ``range``) is a guard.  Checked
against NumPy over generated shapes, axes, ties and NaNs, eager and
compiled, with new values at every call."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.numpy._index_update import IndexUpdate  # what x.at[i] gives, on plain arrays too
from helpers import case_test, central_difference_jacobian, registrar, shapes

COMPILED = [b for b in ("c", "numba", "numpy") if b in BACKENDS]
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"  # where the backend is not the point


CASES: list = []
case = registrar(CASES)


@st.composite
def _shape_and_axis(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    return (shape,), {"axis": draw(st.integers(-len(shape), len(shape) - 1))}


@case("argmax, argmin picking", ["distinct"], lambda data: data.draw(_shape_and_axis()))
def _picked(x, axis):
    """The element each index names (a gather with a derivative) plus the
    indices themselves (no derivative)."""
    top = fnp.take_along_axis(x, fnp.argmax(x, axis, keepdims=True), axis)
    return top + fnp.argmin(x, axis=axis, keepdims=True) * 0.5


test_picked_values_and_derivatives = case_test(CASES)


@st.composite
def arrays_and_axes(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    axis = draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return shape, axis, ties, draw(st.booleans()), seed


def _draw(shape, ties, rng):
    x = rng.standard_normal(shape)
    return np.round(x) if ties else x  # ties: the first of equal extrema wins, as NumPy's


@settings(max_examples=40, deadline=None)
@given(arrays_and_axes(), st.sampled_from(COMPILED), st.sampled_from(["argmax", "argmin"]))
def test_values_match_numpy_and_compile_once(case, backend, name):
    shape, axis, ties, keepdims, seed = case
    rng = np.random.default_rng(seed)
    ours, theirs = getattr(fnp, name), getattr(np, name)
    j = fa.jit(lambda x: ours(x, axis=axis, keepdims=keepdims), backend=backend)
    for _ in range(3):  # new winners each call: one trace
        x = _draw(shape, ties, rng)
        want = theirs(x, axis=axis, keepdims=keepdims)
        got = j(x)
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == np.asarray(want).dtype and type(got) is type(want)
    assert j.cache_info()["traces"] == 1


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_accuracy_and_picked_elements_in_a_compiled_step(n, k, seed):
    """The uses a training step makes: compare with labels, index, do arithmetic."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)

    def step(w, labels):
        scores = w * w
        acc = fnp.mean(fnp.argmax(scores, axis=1) == labels)
        best = scores[fnp.arange(n), fnp.argmax(scores, axis=1)]
        shifted = (fnp.argmin(scores, axis=1) + 1) % k
        return fnp.sum(best) + acc + fnp.sum(shifted * 0.5)

    def reference(w, labels):
        s = w * w
        return (np.sum(s[np.arange(n), np.argmax(s, 1)]) + np.mean(np.argmax(s, 1) == labels)
                + np.sum(((np.argmin(s, 1) + 1) % k) * 0.5))
    g = fa.compile(step, backend=ONE_COMPILED)
    j = fa.jit(step, backend=ONE_COMPILED)
    for _ in range(3):
        w = rng.standard_normal((n, k))
        with warnings.catch_warnings():  # the accuracy's count stays float64: no move
            warnings.simplefilter("error", UserWarning)
            assert j(w, labels) == pytest.approx(reference(w, labels), rel=1e-13)
        fd = central_difference_jacobian(lambda v: reference(v.reshape(n, k), labels), w.ravel())
        np.testing.assert_allclose(g(w, labels).ravel(), np.ravel(fd), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(fa.grad(step)(w, labels), g(w, labels), rtol=1e-14)
    assert g.cache_info()["traces"] == 1 and j.cache_info()["traces"] == 1


def test_a_use_of_the_value_is_a_guard():
    def f(x):
        i = fnp.argmax(x)
        head = fnp.sum(x[:i]) if i > 0 else 0.0  # control flow and a shape on the value
        return head + x[i] * int(i)
    j = fa.jit(f)
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.standard_normal(5)
        assert j(x) == pytest.approx(f(x), rel=1e-14)
    assert j.cache_info()["traces"] >= 2  # the winner moved: traced again, never wrong


def test_batched_saved_and_refused():
    X = np.random.default_rng(4).standard_normal((3, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # batched, no example on its own
        np.testing.assert_allclose(fa.vmap(lambda x: x[fnp.argmax(x)] * 2)(X), 2 * X.max(1))
    j = fa.jit(lambda x: fnp.argmax(x, axis=0))
    j(X)
    loaded = fa.loads(fa.dumps(j))
    np.testing.assert_array_equal(loaded(X), np.argmax(X, axis=0))
    with pytest.raises(ValueError, match="empty"):
        fa.jit(lambda x: fnp.argmax(x))(np.zeros(0))
    assert fnp.argmax([1.0, 3.0, 2.0]) == 1  # plain values: NumPy's own


# The winner used as an index of the ways JAX code uses it: an assignment, a
# functional update, lax's dynamic slices, and arithmetic through
# fastad.numpy's own functions (clip, maximum, where) that keeps it an integer.
_WINNER_USES = {
    "assign": lambda x: _assigned(x, fnp.argmax(x)),
    "at set": lambda x: fnp.sum(IndexUpdate(x, fnp.argmin(x)).set(0.0) * x),  # x.at[i].set
    "clipped neighbour": lambda x: x[fnp.clip(fnp.argmax(x) + 1, 0, x.size - 1)] * 3.0,
    "maximum, where": lambda x: x[fnp.where(fnp.argmax(x) > 0, fnp.maximum(fnp.argmax(x) - 1, 0),
                                            x.size - 1)] ** 2,
    "dynamic_slice": lambda x: fnp.sum(fa.lax.dynamic_slice(x, (fnp.argmax(x),), (2,)) ** 2),
    "dynamic_update_slice": lambda x: fnp.sum(fa.lax.dynamic_update_slice(
        x, np.array([5.0]), (fnp.argmin(x),)) * x),
}


def _assigned(x, i):
    y = x * 1.0
    y[i] = 7.0
    return fnp.sum(y * x)


@pytest.mark.parametrize("use", sorted(_WINNER_USES))
def test_the_winner_as_an_index(use):
    """Compiled equals eager as the winner moves, and the gradient matches
    central differences (away from ties)."""
    f = _WINNER_USES[use]
    g = fa.jit(fa.grad(f), backend=ONE_COMPILED)
    rng = np.random.default_rng(len(use))
    for _ in range(4):
        x = rng.permutation(np.linspace(-1.0, 1.5, 6))
        eager = fa.grad(f)(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # host calls of a guard
            np.testing.assert_allclose(g(x), eager, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(eager, central_difference_jacobian(f, x), rtol=1e-6, atol=1e-8)
