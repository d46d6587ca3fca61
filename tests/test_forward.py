"""Forward mode and higher order: JVPs agree with VJPs on every primitive
case, and Hessians (nested, forward-over-reverse, compiled) match analytic ones."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
from helpers import DTYPES, FAST, _leaves, case_id, make_args, rosenbrock
from test_primitives import CASES

rng = np.random.default_rng(0)


# -- <w, J u> from jvp equals <J^T w, u> from vjp ------------------------------------
def _pairing(a, b):
    return sum(float(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64)))
               for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@FAST
@given(data=st.data())
def test_jvp_and_vjp_are_adjoint(case, dtype, data):
    shp, params = case.draw(data)
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    args = make_args(seed, shp, case.domains, dtype)
    f = functools.partial(case.fn, **params) if params else case.fn
    r = np.random.default_rng(seed)
    tangents = tuple(r.standard_normal(a.shape).astype(dtype) for a in args)
    out, tangent_out = fa.jvp(f, args, tangents)
    out_leaves = _leaves(out)
    weights = [np.asarray(r.standard_normal(np.shape(o)), dtype=np.result_type(o))
               for o in out_leaves]
    out2, vjp_fn = fa.vjp(f, *args)
    cotangent = fa.tree_util.tree_unflatten(fa.tree_util.tree_structure(out2), weights)
    cts = vjp_fn(cotangent)
    lhs = _pairing(weights, _leaves(tangent_out))
    rhs = _pairing(cts, tangents)
    # float32 tolerance also where the function computes in float32 inside (astype)
    tol = 1e-10 if dtype == np.float64 and not case.tolerances else 2e-4
    scale = sum(float(np.sum(np.abs(w))) for w in weights) * max(
        [1.0] + [float(np.max(np.abs(t))) for t in _leaves(tangent_out) if np.size(t)])
    assert abs(lhs - rhs) <= tol * max(abs(lhs), abs(rhs), scale), (lhs, rhs)


# -- Hessians ------------------------------------------------------------------------
def _assert_close(got, want, rtol=1e-10):
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


def _hessian_paths(f, x):
    """The Hessian of f at x by every route fastad offers."""
    n = x.size
    eye = np.eye(n)
    compiled = fa.compile(f, backend="numpy")
    yield "hessian", fa.hessian(f)(x)
    yield "hvp", np.stack([fa.hvp(f)(x, e) for e in eye], axis=1)
    yield "compiled hvp", np.stack([compiled.hvp(x, e) for e in eye], axis=1)
    yield "jit hessian", fa.jit(fa.hessian(f), backend="numpy")(x)
    yield "rev over rev", np.stack(
        [fa.grad(lambda y, e=e: np.sum(fa.grad(f)(y) * e))(x) for e in eye], axis=1)
    yield "fwd over fwd", np.array(
        [[fa.jvp(lambda y, e=e: fa.jvp(f, (y,), (e,))[1], (x,), (d,))[1] for e in eye]
         for d in eye])
    yield "rev over fwd", np.stack(
        [fa.grad(lambda y, e=e: fa.jvp(f, (y,), (e,))[1])(x) for e in eye])
    yield "jacobian of grad (fwd)", fa.jacobian(fa.grad(f), mode="fwd")(x)
    yield "jacobian of grad (rev)", fa.jacobian(fa.grad(f), mode="rev")(x)


@FAST
@given(n=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_hessian_of_quadratic_form(n, seed):
    r = np.random.default_rng(seed)
    a, b, x = r.standard_normal((n, n)), r.standard_normal(n), r.standard_normal(n)

    def f(x):
        return 0.5 * x @ a @ x + b @ x + 3.0

    expected = 0.5 * (a + a.T)
    for name, h in _hessian_paths(f, x):
        _assert_close(h, expected)
    np.testing.assert_allclose(fa.grad(f)(x), expected @ x + b, rtol=1e-12, atol=1e-12)


def rosenbrock_hessian(x):
    n = x.size
    h = np.zeros((n, n))
    i = np.arange(n - 1)
    h[i, i] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = h[i + 1, i] = -400.0 * x[:-1]
    return h


@FAST
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1))
def test_hessian_of_rosenbrock(n, seed):
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    expected = rosenbrock_hessian(x)
    for name, h in _hessian_paths(rosenbrock, x):
        _assert_close(h, expected)


def test_hvp_of_rosenbrock_without_forming_the_hessian():
    x, v = rng.uniform(-2, 2, 50), rng.standard_normal(50)
    expected = rosenbrock_hessian(x) @ v
    _assert_close(fa.hvp(rosenbrock)(x, v), expected)
    _assert_close(fa.compile(rosenbrock, backend="numpy").hvp(x, v), expected)
    _assert_close(fa.compile(rosenbrock).hvp(x, v), expected)


def test_third_order_by_nesting():
    # f(x) = sum(x^4): the third derivative along v, twice more along v, is 24 sum(v^3 ...)
    def f(x):
        return np.sum(x ** 4)

    x, v = rng.standard_normal(3), rng.standard_normal(3)
    third = fa.jvp(lambda y: fa.hvp(f)(y, v), (x,), (v,))[1]
    np.testing.assert_allclose(third, 24.0 * x * v * v, rtol=1e-12)


# -- Jacobians -----------------------------------------------------------------------
@FAST
@given(n=st.integers(1, 5), m=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_jacobian_modes_agree_with_the_analytic_one(n, m, seed):
    r = np.random.default_rng(seed)
    a, x = r.standard_normal((m, n)), r.standard_normal(n)

    def f(x):
        return a @ np.tanh(x) + np.sum(x ** 2)

    expected = a * (1.0 - np.tanh(x) ** 2) + 2.0 * x
    for mode in ("fwd", "rev", "auto"):
        _assert_close(fa.jacobian(f, mode=mode)(x), expected, rtol=1e-13)
        _assert_close(fa.jit(fa.jacobian(f, mode=mode), backend="numpy")(x), expected,
                      rtol=1e-13)


def test_jvp_with_pytrees():
    def f(p, x):
        return {"y": p[0] * np.sin(x), "z": np.sum(p[1] * x)}

    p, x = (rng.standard_normal(3), rng.standard_normal(3)), rng.standard_normal(3)
    tp, tx = (rng.standard_normal(3), rng.standard_normal(3)), rng.standard_normal(3)
    out, t = fa.jvp(f, (p, x), (tp, tx))
    assert sorted(out) == ["y", "z"] and sorted(t) == ["y", "z"]
    np.testing.assert_allclose(t["y"], tp[0] * np.sin(x) + p[0] * np.cos(x) * tx, rtol=1e-14)
    np.testing.assert_allclose(t["z"], np.sum(tp[1] * x + p[1] * tx), rtol=1e-13)
    fa.check_grads(f, (p, x), order=2)


def test_hvp_keeps_the_adjoint_scatter_chain_in_place():
    """Forward over reverse: the tangent of a chain of scatter_adds is one
    chain (started once from zeros), not a sum of scatters into zero arrays."""
    def f(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    x, v = np.linspace(-1.0, 1.0, 12), np.linspace(0.5, -0.5, 12)
    g = fa.compile(f, backend="numpy")
    hv = g.hvp(x, v)
    tape = g._hvp.tape
    scatters = [ins for ins in tape.instrs if ins.prim == "scatter_add"]
    from_constants = [ins for ins in scatters if ins.ins[0] in tape.consts]
    assert len(scatters) >= 2 and len(from_constants) == 1
    assert not any(ins.prim == "add" and tape.avals[ins.out].shape == x.shape
                   for ins in tape.instrs)
    h = fa.hessian(f)(x)
    np.testing.assert_allclose(hv, h @ v, rtol=1e-12)
