"""Other libraries' arrays as arguments: read as the NumPy arrays they hold.

A jax.Array, a CPU torch.Tensor or an xarray DataArray has ``__array__``,
``shape`` and ``dtype``.  Eagerly, some transforms read such an argument
as a NumPy array and others refused it; compiled, every transform refused
it with a message about hashing.  Now each transform, eager and compiled,
reads it as ``np.asarray`` gives it, differentiated or as data, in pytrees
too.  A stand-in class plays the foreign array, so the test needs no other
library; JAX's own arrays are checked where JAX is installed.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS

fnp = fa.numpy
COMPILED = "c" if "c" in BACKENDS else "numpy"


class Foreign:
    """Another library's array, as far as NumPy is concerned."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001, ANN204
        return self._values if dtype is None else self._values.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._values.shape

    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype


class Refusing(Foreign):
    """One that cannot be read on the host (a tensor that requires grad)."""

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001, ANN204
        raise RuntimeError("call .detach() first")


def _loss(x, data):
    return fnp.sum(fnp.sin(x) * data["w"] + x ** 2 * fnp.sum(data["v"]))


TRANSFORMS = {
    "grad": lambda: fa.grad(_loss),
    "value_and_grad": lambda: fa.value_and_grad(_loss),
    "jacobian": lambda: fa.jacobian(lambda x, d: fnp.cos(x) * d["w"]),
    "hessian": lambda: fa.hessian(_loss),
    "vmap": lambda: fa.vmap(fa.grad(lambda x, d: fnp.sum(fnp.sin(x) * d["w"])),
                            in_axes=(0, None)),
    "value": lambda: _loss,
}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(TRANSFORMS)), n=st.integers(1, 5),
       dtype=st.sampled_from([np.float64, np.float32]), wrap_x=st.booleans(),
       seed=st.integers(0, 2**16))
def test_each_transform_reads_a_foreign_array_as_numpy(name, n, dtype, wrap_x, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, n) if name == "vmap" else n).astype(dtype)
    data = {"w": rng.uniform(-1, 1, n).astype(dtype), "v": rng.uniform(0, 1, 3)}
    want = TRANSFORMS[name]()(x, data)
    given_ = (Foreign(x) if wrap_x else x, {"w": Foreign(data["w"]), "v": Foreign(data["v"])})
    # (the plain function, not a transform, is compiled only: fastad reads
    # its arguments when it traces them)
    eager = [] if name == "value" else [TRANSFORMS[name]()]
    for f in eager + [fa.jit(TRANSFORMS[name](), backend=COMPILED)]:
        got = f(*given_)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            assert np.asarray(g).dtype == np.asarray(w).dtype
            np.testing.assert_allclose(g, w, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_an_unreadable_foreign_array_is_a_clear_type_error():
    x = Refusing(np.ones(3))
    for f in (fa.grad(lambda x: fnp.sum(x ** 2)),
              fa.jit(fa.grad(lambda x: fnp.sum(x ** 2)), backend=COMPILED)):
        with pytest.raises(TypeError, match="cannot read .*Refusing as a NumPy array"):
            f(x)


def test_jax_arrays_where_jax_is_installed():
    jnp = pytest.importorskip("jax.numpy")
    x = np.linspace(-1, 1, 6)
    for f in (fa.grad(lambda x: fnp.sum(fnp.sin(x) * x)),
              fa.jit(fa.grad(lambda x: fnp.sum(fnp.sin(x) * x)), backend=COMPILED),
              fa.jit(fa.hessian(lambda x: fnp.sum(fnp.sin(x) * x)), backend=COMPILED)):
        want = f(x.astype(np.float32))
        got = f(jnp.asarray(x, dtype=jnp.float32))
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)


Pair = __import__("collections").namedtuple("Pair", "a b")


@pytest.mark.parametrize("wrap", [lambda a, b: Pair(a, b), lambda a, b: [a, (b,)],
                                  lambda a, b: {"a": a, "b": {"c": b}}],
                         ids=["namedtuple", "nested list", "nested dict"])
def test_foreign_arrays_in_any_pytree_compiled(wrap):
    """Every pytree node holding one is read (a namedtuple's once looped)."""
    a, b = np.linspace(-1, 1, 4), np.linspace(0.5, 1.5, 4)

    def loss(p):
        x, y = fa.tree_util.tree_leaves(p)
        return fnp.sum(fnp.sin(x) * y)
    want = fa.grad(loss)(wrap(a, b))
    got = fa.jit(fa.grad(loss), backend=COMPILED)(wrap(Foreign(a), Foreign(b)))
    for g, w in zip(fa.tree_util.tree_leaves(got), fa.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-12)
