"""``ufunc.reduce`` on traced values against NumPy's: values, shapes and
exceptions over ufuncs with and without an identity, commutative or not,
every kind of axis (negative, None, tuples, empty, repeated, out of range),
empty axes, 0-d arrays and an ``initial`` value (which starts the chain of a
ufunc that is not commutative); derivatives against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa

UFUNCS = [np.add, np.multiply, np.maximum, np.minimum, np.subtract, np.divide, np.power,
          np.arctan2, np.logaddexp, np.hypot]
SHAPES = [(3,), (2, 3), (2, 3, 2), (3, 0), (0,), ()]
AXES = [0, -1, 1, 2, None, (0, 1), (0, -1), (0, 0), 5, ()]


@pytest.mark.parametrize("ufunc", UFUNCS, ids=lambda u: u.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reduce_gives_numpys_values_and_errors(ufunc, shape):
    rng = np.random.default_rng(len(shape))
    a = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    for axis in AXES:
        for kw in ({}, {"initial": 1.5}, {"keepdims": True}):
            try:
                want, refused = ufunc.reduce(a, axis=axis, **kw), None
            except Exception as exc:  # NumPy's AxisError, ValueError
                want, refused = None, exc
            f = fa.jit(lambda x: ufunc.reduce(x, axis=axis, **kw))
            if refused is not None:
                with pytest.raises((type(refused), ValueError, TypeError)):
                    f(a)
                continue
            got = f(a)
            assert np.shape(got) == np.shape(want), (axis, kw)
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{axis} {kw}")


@pytest.mark.parametrize("ufunc", [np.subtract, np.divide, np.power, np.arctan2, np.logaddexp],
                         ids=lambda u: u.__name__)
def test_reduce_with_an_initial_value_differentiates(ufunc):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, size=(3, 4))

    def f(v):
        return np.sum(ufunc.reduce(v, axis=1, initial=1.25) ** 2)

    g = fa.grad(f)(x)
    for _ in range(3):
        d = rng.standard_normal(x.shape)
        fd = (f(x + 1e-6 * d) - f(x - 1e-6 * d)) / 2e-6
        assert np.isclose(np.sum(g * d), fd, rtol=1e-5, atol=1e-8)
