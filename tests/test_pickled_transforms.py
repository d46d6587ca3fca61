"""Transformed functions travel through cloudpickle (what Dask's client.map
and client.submit use): every transform around a compiled function, at
random depth, round-trips and gives the original's result.  A transformed
function keeps its function's name and docstring, never its attributes (a
compiled function's caches and locks would travel with it)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from helpers import FAST

cloudpickle = pytest.importorskip("cloudpickle")


def _loss(w, x):
    return fnp.sum(fnp.tanh(x @ w) ** 2) + fnp.sum(w ** 4)


# each maps a function of (w, x) to a function of (w, x) (scalar or not:
# the last step takes a sum where the next needs a scalar)
WRAPS = {
    "jit": lambda f: fa.jit(f),
    "jit_c": lambda f: fa.jit(f, backend="c") if "c" in fa.backends_available() else fa.jit(f),
    "grad": lambda f: (lambda w, x: fnp.sum(fa.grad(lambda w: fnp.sum(f(w, x)))(w) ** 2)),
    "fa_grad": lambda f: fa.grad(lambda w, x: fnp.sum(f(w, x))),
    "value_and_grad": lambda f: (lambda w, x: fa.value_and_grad(
        lambda w: fnp.sum(f(w, x)))(w)[1]),
    "vmap": lambda f: (lambda w, x: fnp.sum(fa.vmap(f, in_axes=(None, 0))(w, fnp.stack([x, x])))),
    "fa_vmap": lambda f: fa.vmap(f, in_axes=(None, 0)),
    "jacobian": lambda f: fa.jacobian(lambda w, x: fnp.sum(f(w, x))),
    "hessian": lambda f: fa.hessian(lambda w, x: fnp.sum(f(w, x))),
}
SHAPES = {"fa_vmap": 1}  # wraps whose function takes a stack of x


@FAST
@given(st.lists(st.sampled_from(sorted(WRAPS)), min_size=1, max_size=3),
       st.integers(0, 2**16))
def test_transformed_functions_round_trip_through_cloudpickle(chain, seed):
    rng = np.random.default_rng(seed)
    w, x = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (2, 3))
    f, stacks = _loss, 0
    for name in chain:
        f = WRAPS[name](f)
        stacks += SHAPES.get(name, 0)
    for _ in range(stacks):
        x = np.stack([x, 0.5 * x])
    want = f(w, x)
    again = cloudpickle.loads(cloudpickle.dumps(f))
    np.testing.assert_allclose(again(w, x), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("transform", [fa.grad, fa.vmap, fa.jacobian, fa.hessian,
                                       fa.value_and_grad])
def test_a_transform_keeps_the_name_not_the_attributes(transform):
    inner = fa.jit(_loss)
    outer = transform(inner)
    assert outer.__name__ == "_loss" and outer.__doc__ == inner.__doc__
    assert hasattr(inner, "cache_info") and not hasattr(outer, "cache_info")
