"""User-defined primitives and the finite-difference checker itself."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
from helpers import FAST, shapes

rng = np.random.default_rng(0)


def _logsigmoid_numpy(x):
    return -np.logaddexp(0.0, -x)


@fa.primitive
def logsigmoid(x):
    return -np.logaddexp(0.0, -x)


# the rules are written with plain NumPy: they trace, so second order works too
fa.defvjp(logsigmoid, lambda g, ans, x: g * np.exp(-np.logaddexp(0.0, x)))
fa.defjvp(logsigmoid, lambda t, ans, x: t * np.exp(-np.logaddexp(0.0, x)))


@fa.primitive
def scaled_roll(x, shift, scale):
    """Two differentiable arguments and an integer one in the middle."""
    return np.roll(x, shift) * scale


fa.defvjp(scaled_roll,
          lambda g, ans, x, shift, scale: np.roll(g, -shift) * scale,
          None,
          lambda g, ans, x, shift, scale: np.sum(g * np.roll(x, shift)))
fa.defjvp(scaled_roll,
          lambda t, ans, x, shift, scale: np.roll(t, shift) * scale,
          None,
          lambda t, ans, x, shift, scale: np.roll(x, shift) * t)


@FAST
@given(shape=shapes(), seed=st.integers(0, 2**31 - 1))
def test_user_primitive_values_and_derivatives(shape, seed):
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, shape)
    out, _ = fa.vjp(logsigmoid, x)
    np.testing.assert_allclose(out, _logsigmoid_numpy(x), rtol=1e-14)
    fa.check_grads(lambda x: logsigmoid(x) * x, (x,), order=2, modes=("fwd", "rev"))
    fa.check_grads(lambda x: logsigmoid(x.astype(np.float32)), (x.astype(np.float32),), order=1)


def test_user_primitive_is_one_instruction_on_the_tape():
    tape = fa.make_tape(lambda x: np.sum(logsigmoid(x)))(np.ones(3))
    assert [ins.prim for ins in tape.instrs][0] == logsigmoid.primitive.name
    assert logsigmoid.primitive.name in str(tape)


@pytest.mark.parametrize("shift", [0, 1, -2])
def test_user_primitive_with_a_non_differentiable_argument(shift):
    x, scale = rng.standard_normal(5), 1.7
    f = lambda x, scale: np.sum(np.sin(scaled_roll(x, shift, scale)))  # noqa: E731
    fa.check_grads(f, (x, scale), order=2, modes=("fwd", "rev"))
    gx, gs = fa.grad(f, argnums=(0, 1))(x, scale)
    np.testing.assert_allclose(gx, np.roll(np.cos(np.roll(x, shift) * scale), -shift) * scale,
                               rtol=1e-14)


def test_user_primitive_under_jit_and_compile():
    def loss(x):
        return np.sum(logsigmoid(x) ** 2)

    x = rng.standard_normal(4)
    expected = fa.grad(loss)(x)
    np.testing.assert_allclose(fa.compile(loss, backend="numpy")(x), expected, rtol=1e-14)
    np.testing.assert_allclose(fa.jit(fa.grad(loss), backend="numpy")(x), expected, rtol=1e-14)


@pytest.mark.filterwarnings("ignore:.*does not implement")
def test_user_primitive_under_the_default_backend():
    def loss(x):
        return np.sum(logsigmoid(x) ** 2)

    x = rng.standard_normal(4)
    np.testing.assert_allclose(fa.compile(loss)(x), fa.grad(loss)(x), rtol=1e-14)


def test_wrong_user_vjp_makes_check_grads_fail():
    @fa.primitive
    def cube(x):
        return x ** 3

    fa.defvjp(cube, lambda g, ans, x: g * 2.0 * x ** 2)  # wrong: should be 3 x^2
    fa.defjvp(cube, lambda t, ans, x: t * 3.0 * x ** 2)
    x = rng.uniform(0.5, 1.5, 3)
    with pytest.raises(AssertionError, match="rev mode"):
        fa.check_grads(cube, (x,), order=1, modes=("fwd", "rev"))
    fa.check_grads(cube, (x,), order=1, modes=("fwd",))  # the JVP is right


def test_wrong_user_jvp_makes_check_grads_fail():
    @fa.primitive
    def cube(x):
        return x ** 3

    fa.defvjp(cube, lambda g, ans, x: g * 3.0 * x ** 2)
    fa.defjvp(cube, lambda t, ans, x: t * 3.0 * x)  # wrong
    x = rng.uniform(0.5, 1.5, 3)
    with pytest.raises(AssertionError, match="fwd mode"):
        fa.check_grads(cube, (x,), order=1)
    fa.check_grads(cube, (x,), order=1, modes=("rev",))


def test_wrong_second_derivative_is_caught_at_order_two():
    @fa.primitive
    def softplus(x):
        return np.logaddexp(0.0, x)

    # right value of the first derivative, but computed from a non-traceable
    # constant: its own derivative is lost
    fa.defvjp(softplus, lambda g, ans, x: g * fa.numpy.stop_gradient(1.0 / (1.0 + np.exp(-x))))
    fa.defjvp(softplus, lambda t, ans, x: t * fa.numpy.stop_gradient(1.0 / (1.0 + np.exp(-x))))
    x = rng.standard_normal(3)
    fa.check_grads(softplus, (x,), order=1)
    with pytest.raises(AssertionError, match="order"):
        fa.check_grads(softplus, (x,), order=2)


def test_missing_rule_is_a_clear_error():
    @fa.primitive
    def mystery(x):
        return x * 2.0

    with pytest.raises(NotImplementedError, match="defvjp"):
        fa.grad(lambda x: np.sum(mystery(x)))(np.ones(2))
    with pytest.raises(NotImplementedError, match="defjvp"):
        fa.jvp(mystery, (np.ones(2),), (np.ones(2),))


# -- check_grads ------------------------------------------------------------------------
def test_check_grads_passes_on_pytrees_and_float32():
    def f(params, x):
        return np.tanh(params["w"] @ x + params["b"][0]), np.sum(x ** 2)

    params = {"w": rng.standard_normal((2, 3)), "b": [rng.standard_normal(2)]}
    x = rng.standard_normal(3)
    fa.check_grads(f, (params, x), order=2)
    params32 = {"w": params["w"].astype(np.float32), "b": [params["b"][0].astype(np.float32)]}
    fa.check_grads(f, (params32, x.astype(np.float32)), order=1)


def test_check_grads_reports_the_mismatch():
    @fa.primitive
    def double(x):
        return 2.0 * x

    fa.defvjp(double, lambda g, ans, x: 3.0 * g)
    fa.defjvp(double, lambda t, ans, x: 2.0 * t)
    with pytest.raises(AssertionError) as info:
        fa.check_grads(lambda x: np.sum(double(x)), (np.ones(3),), modes=("rev",))
    message = str(info.value)
    assert "finite differences" in message and "relative" in message and "rev" in message


def test_check_grads_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode"):
        fa.check_grads(np.sin, (np.ones(2),), modes=("sideways",))


@pytest.mark.parametrize("f", [lambda x: np.sum(x), lambda x: np.mean(x.reshape(-1, 1)),
                               lambda x: np.sum(np.broadcast_to(x, (2,) + x.shape)),
                               lambda x: 3.0 * np.sum(x[1:]), lambda x: np.sum(x * x)],
                         ids=["sum", "mean-reshape", "broadcast", "slice", "square"])
def test_every_transform_returns_arrays_the_caller_can_write(f):
    """A gradient made of a broadcast seed (``sum``'s) was a read-only view, so
    ``g *= lr`` raised; each transform's array results are the caller's."""
    x = np.random.default_rng(0).standard_normal(4)
    results = [fa.grad(f)(x), fa.value_and_grad(f)(x)[1], fa.vjp(f, x)[1](1.0)[0],
               fa.jacobian(lambda x: x * f(x))(x), fa.hessian(f)(x), fa.hvp(f)(x, x),
               fa.vmap(fa.grad(f))(np.stack([x, x])), fa.vmap(lambda x: np.ones(3))(np.stack([x, x])),
               fa.compile(f)(x), fa.jit(fa.grad(f))(x)]
    for r in results:
        assert isinstance(r, np.ndarray) and r.flags.writeable
        r *= 2.0


@pytest.mark.parametrize("shape", [(4,), (3, 1), ()])
def test_a_tangent_of_the_wrong_shape_is_named_as_a_tangent(shape):
    with pytest.raises(ValueError, match=r"tangent of shape .* for a primal of shape \(3,\)"):
        fa.jvp(lambda x: x * 2.0, (np.ones(3),), (np.ones(shape),))
    with pytest.raises(ValueError, match=r"cotangent of shape .* for an output of shape \(3,\)"):
        fa.vjp(lambda x: x * 2.0, np.ones(3))[1](np.ones(shape))


@pytest.mark.parametrize("sparse", [False, True])
def test_hessian_has_aux_as_jax(sparse):
    def f(x):
        return np.sum(fa.numpy.sin(x) * x), {"stage": "warmup", "x0": x[0]}
    x = np.array([0.3, -1.2, 2.0])
    h, aux = fa.hessian(f, has_aux=True, sparse=sparse)(x)
    want = fa.hessian(lambda x: f(x)[0])(x)
    np.testing.assert_allclose(h.toarray() if sparse else h, want, rtol=1e-12)
    assert aux == {"stage": "warmup", "x0": x[0]}
