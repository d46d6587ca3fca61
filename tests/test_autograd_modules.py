"""autograd's module layout over fastad: ``fastad.extend``,
``fastad.differential_operators``, ``fastad.test_util``, ``fastad.builtins``
and ``fastad.misc.flatten`` hold autograd's names, and a primitive defined
with each of autograd's rule forms differentiates as autograd's does."""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

import fastad as fa
import fastad.numpy as fnp
from fastad import extend

MODULES = {  # autograd's module -> the names of it fastad provides
    "extend": ["primitive", "defvjp", "defjvp", "defvjp_argnum", "defvjp_argnums",
               "defjvp_argnum", "defjvp_argnums", "def_linear", "notrace_primitive"],
    "differential_operators": [
        "grad", "elementwise_grad", "value_and_grad", "grad_and_aux", "jacobian", "hessian",
        "make_vjp", "make_jvp", "make_hvp", "make_ggnvp", "hessian_tensor_product",
        "hessian_vector_product", "tensor_jacobian_product", "vector_jacobian_product",
        "holomorphic_grad", "grad_named", "multigrad_dict", "checkpoint", "deriv",
        "defvjp_argnum", "primitive"],
    "test_util": ["check_grads"],
    "builtins": ["tuple", "list", "dict", "isinstance", "type"],
    "misc.flatten": ["flatten"],
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_autograds_modules_and_names(module):
    ours = importlib.import_module(f"fastad.{module}")
    missing = [n for n in MODULES[module] if not hasattr(ours, n)]
    assert missing == []
    autograd = pytest.importorskip(f"autograd.{module}")
    assert [n for n in MODULES[module] if not hasattr(autograd, n)] == []


def test_misc_flatten_is_the_function_and_the_module():
    from fastad.misc import flatten
    from fastad.misc.flatten import flatten as same
    assert flatten is same is fa.flatten and callable(flatten)


def _cube(x, y):
    return x ** 3 * y


def _check(f, args, want):
    for g in (fa.grad(f, (0, 1))(*args), fa.jit(fa.grad(f, (0, 1)))(*args)):
        for got, w in zip(g, want):
            np.testing.assert_allclose(got, w, rtol=1e-12)


def _expected(x, y, w):
    return w * 3 * x ** 2 * y, w * x ** 3


@pytest.mark.parametrize("form", ["argnums", "argnum", "argnums maker", "jvp argnum",
                                  "jvp argnums"])
def test_each_of_autograds_rule_forms(form):
    cube = extend.primitive(lambda x, y: _cube(x, y))
    if form == "argnums":
        extend.defvjp(cube, lambda ans, x, y: lambda g: g * x ** 3, argnums=[1])
        extend.defvjp(cube, lambda ans, x, y: lambda g: g * 3 * x ** 2 * y,
                      lambda ans, x, y: lambda g: g * x ** 3, argnums=(0, 1))
    elif form == "argnum":
        extend.defvjp_argnum(cube, lambda k, ans, args, kwargs: (
            (lambda g: g * 3 * args[0] ** 2 * args[1]) if k == 0 else (lambda g: g * args[0] ** 3)))
    elif form == "argnums maker":
        extend.defvjp_argnums(cube, lambda ks, ans, args, kwargs: lambda g: tuple(
            g * 3 * args[0] ** 2 * args[1] if k == 0 else g * args[0] ** 3 for k in ks))
    elif form == "jvp argnum":
        extend.defjvp_argnum(cube, lambda k, g, ans, args, kwargs: (
            g * 3 * args[0] ** 2 * args[1] if k == 0 else g * args[0] ** 3))
    else:
        extend.defjvp_argnums(cube, lambda ks, gs, ans, args, kwargs: sum(
            g * 3 * args[0] ** 2 * args[1] if k == 0 else g * args[0] ** 3
            for k, g in zip(ks, gs)))
    x, y, w = np.array([0.5, -1.2]), np.array([2.0, 0.3]), np.array([1.5, -0.5])
    f = lambda x, y: fnp.sum(w * cube(x, y))  # noqa: E731
    if form.startswith("jvp"):  # forward mode: one tangent per argument
        for k in (0, 1):
            t = [np.zeros(2), np.zeros(2)]
            t[k] = np.array([1.0, 2.0])
            _, tangent = fa.jvp(f, (x, y), tuple(t))
            assert tangent == pytest.approx(np.sum(_expected(x, y, w)[k] * t[k]))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a user primitive runs as a host call
        _check(f, (x, y), _expected(x, y, w))


def test_def_linear_and_notrace_primitive():
    scale = extend.primitive(lambda x, a: x * a)
    extend.def_linear(scale)
    x, a = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    _, tangent = fa.jvp(lambda x: fnp.sum(scale(x, a)), (x,), (np.array([1.0, 1.0]),))
    assert tangent == pytest.approx(np.sum(a))
    count = extend.notrace_primitive(lambda v: float(np.sum(v > 0)))
    g = fa.grad(lambda x: fnp.sum(x) * count(x))(np.array([1.0, -2.0, 3.0]))
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])  # the count has no derivative
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.jit(fa.grad(lambda x: fnp.sum(x) * count(x)))
        np.testing.assert_array_equal(compiled(np.array([1.0, -2.0, 3.0])), [2.0, 2.0, 2.0])
        np.testing.assert_array_equal(compiled(np.array([1.0, 2.0, 3.0])), [3.0, 3.0, 3.0])


def test_autograd_code_runs_with_the_modules_swapped():
    """A snippet written for autograd, its imports renamed."""
    from fastad.differential_operators import elementwise_grad, grad
    from fastad.misc.flatten import flatten
    from fastad.test_util import check_grads

    params = {"w": np.array([0.5, -0.3]), "b": (np.array(0.1),)}
    flat, unflatten = flatten(params)

    def loss(v):
        p = unflatten(v)
        return fnp.sum(fnp.tanh(p["w"] * 2.0 + p["b"][0]) ** 2)
    check_grads(loss, modes=["rev", "fwd"], order=2)(flat)
    assert grad(loss)(flat).shape == flat.shape
    np.testing.assert_allclose(elementwise_grad(fnp.sin)(flat), np.cos(flat))
