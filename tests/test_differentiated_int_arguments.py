"""Differentiating with respect to an integer or boolean argument: compiled as
eagerly.

Eagerly, a Python or NumPy integer scalar is taken as a float and an
integer or boolean array (0-d included) or a bool is refused with a
TypeError.  Compiled, such an argument is traced as data (an integer
tracer), and every transform used to differentiate it anyway: float
derivatives of an int array, NaN float16 ones of a bool array.  Each
transform, eager and under `jit`, must now agree: both refuse, or both give
the same values and dtype.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS

fnp = fa.numpy
COMPILED = "c" if "c" in BACKENDS else "numpy"


def _loss(x):
    return fnp.sum(fnp.sin(x) * x + 0.5 * x ** 2)


def _vector(x):
    return fnp.sin(x) * x


TRANSFORMS = {
    "grad": lambda: fa.grad(_loss),
    "value_and_grad": lambda: fa.value_and_grad(_loss),
    "jacobian": lambda: fa.jacobian(_vector),
    "jacfwd": lambda: fa.jacfwd(_vector),
    "jacrev": lambda: fa.jacrev(_vector),
    "hessian": lambda: fa.hessian(_loss),
    "jvp": lambda: lambda x: fa.jvp(_vector, (x,), (np.ones(np.shape(x)),))[1],
    "vjp": lambda: lambda x: fa.vjp(_vector, x)[1](np.ones(np.shape(x)))[0],
    "elementwise_grad": lambda: fa.elementwise_grad(_vector),
}


@st.composite
def arguments(draw):
    kind = draw(st.sampled_from(["int array", "bool array", "python int", "numpy int",
                                 "python bool", "float array"]))
    shape = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "int array":
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int8]))
        return np.asarray(rng.integers(0, 5, shape), dtype)
    if kind == "bool array":
        return np.asarray(rng.integers(0, 2, shape) > 0)
    if kind == "python int":
        return int(rng.integers(-3, 4))
    if kind == "numpy int":
        return np.int32(rng.integers(-3, 4))
    if kind == "python bool":
        return bool(rng.integers(0, 2))
    return rng.uniform(-1, 1, shape)


def _outcome(call):
    try:
        out = call()
    except TypeError as exc:
        return ("TypeError", str(exc))
    leaves = out if isinstance(out, tuple) else (out,)
    return ("value", [np.asarray(v) for v in leaves])


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(TRANSFORMS)), x=arguments())
def test_compiled_transforms_refuse_or_accept_an_argument_as_eager_ones_do(name, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = _outcome(lambda: TRANSFORMS[name]()(x))
        compiled = _outcome(lambda: fa.jit(TRANSFORMS[name](), backend=COMPILED)(x))
    assert eager[0] == compiled[0], (name, repr(x), eager, compiled)
    if eager[0] == "TypeError":
        assert eager[1] == compiled[1]
        return
    for e, c in zip(eager[1], compiled[1]):
        assert e.dtype == c.dtype and e.shape == c.shape
        np.testing.assert_allclose(c, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x", [np.arange(3), np.array([True, False]), np.array(2)],
                         ids=["int", "bool", "0-d int"])
def test_compile_refuses_an_integer_array_to_differentiate(x):
    with pytest.raises(TypeError, match="integers have no derivative"):
        fa.compile(_loss, backend=COMPILED)(x)
    with pytest.raises(TypeError, match="integers have no derivative"):
        fa.grad(_loss)(x)


TANGENTS = {"float64": np.ones(3), "float32": np.ones(3, np.float32),
            "int": np.ones(3, np.int64), "bool": np.ones(3, bool), "complex": np.ones(3) + 0.5j,
            "wrong shape": np.ones(4), "scalar": 1.0}


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
@pytest.mark.parametrize("kind", sorted(TANGENTS))
def test_tangents_and_cotangents_of_other_dtypes_compiled_as_eagerly(mode, kind):
    """A (co)tangent of another dtype is converted to the primal's (output's)
    dtype, a complex one to its real part, or refused, the same way eagerly
    and compiled."""
    x, t = np.linspace(0.0, 1.0, 3), TANGENTS[kind]

    def run(x, t):
        if mode == "jvp":
            return fa.jvp(_vector, (x,), (t,))[1]
        return fa.vjp(_vector, x)[1](t)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcomes = []
        for f in (run, fa.jit(run, backend=COMPILED)):
            try:
                out = np.asarray(f(x, t))
                outcomes.append((out.dtype, out.shape, out.tolist()))
            except (TypeError, ValueError) as exc:
                outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
