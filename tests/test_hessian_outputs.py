"""``hessian`` of a function with more than one output (JAX's and autograd's
``hessian``): the Jacobian of the Jacobian, of shape out.shape + x.shape +
x.shape, for arrays and pytrees of outputs, against central finite
differences of the Jacobian, eager and through ``jit``.  (An output of one
element is a scalar, as for ``grad``: its Hessian has x.shape + x.shape.)"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp

FUNCTIONS = {
    "elementwise": lambda x: fnp.sin(x) * fnp.flip(x) ** 2,
    "outer": lambda x: fnp.outer(fnp.ravel(x), fnp.tanh(fnp.ravel(x))),
    "matrix": lambda x: fnp.tanh(x) @ fnp.ones(x.shape[-1]),
    "pytree": lambda x: {"sum": fnp.sum(x ** 3), "exp": fnp.exp(0.3 * x)},
    "scalar": lambda x: fnp.sum(fnp.cos(x) * x),
}


def _fd_jacobian(f, x, eps=1e-5):
    """d f / d x by central differences: leaves of shape out + x.shape."""
    basis = np.eye(x.size).reshape((x.size,) + x.shape)
    cols = [fa.tree_util.tree_map(lambda a, b: (np.asarray(a) - np.asarray(b)) / (2 * eps),
                                  f(x + eps * e), f(x - eps * e)) for e in basis]
    return fa.tree_util.tree_map(
        lambda *c: np.moveaxis(np.array(c), 0, -1).reshape(np.shape(c[0]) + x.shape), *cols)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(sorted(FUNCTIONS)), shape=st.sampled_from([(3,), (2, 3)]),
       jit=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_hessian_of_many_outputs(name, shape, jit, seed):
    x = np.random.default_rng(seed).normal(size=shape)
    f = FUNCTIONS[name]
    h = fa.hessian(f)
    H = fa.jit(h)(x) if jit else h(x)
    want = _fd_jacobian(fa.jacobian(f), x)
    for got, ref in zip(fa.tree_util.tree_leaves(H), fa.tree_util.tree_leaves(want)):
        assert np.shape(got) == np.shape(ref)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_hessian_matches_jax_on_vector_outputs():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    x = np.array([0.3, -1.2, 0.7])
    H = fa.hessian(lambda x: fnp.sin(x) * fnp.flip(x) ** 2)(x)
    J = jax.hessian(lambda x: jax.numpy.sin(x) * jax.numpy.flip(x) ** 2)(x)
    np.testing.assert_allclose(H, J, rtol=1e-14, atol=1e-15)
