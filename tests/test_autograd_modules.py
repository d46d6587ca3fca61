"""autograd's module layout over fastad: ``fastad.extend``,
``fastad.differential_operators``, ``fastad.test_util``, ``fastad.builtins``
and ``fastad.misc.flatten`` hold autograd's names, and a primitive defined
with each of autograd's rule forms differentiates as autograd's does."""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import extend

MODULES = {  # autograd's module -> the names of it fastad provides
    "extend": ["primitive", "defvjp", "defjvp", "defvjp_argnum", "defvjp_argnums",
               "defjvp_argnum", "defjvp_argnums", "def_linear", "notrace_primitive"],
    "differential_operators": [
        "grad", "elementwise_grad", "value_and_grad", "grad_and_aux", "jacobian", "hessian",
        "make_vjp", "make_jvp", "make_jvp_reversemode", "make_hvp", "make_ggnvp",
        "hessian_tensor_product",
        "hessian_vector_product", "tensor_jacobian_product", "vector_jacobian_product",
        "holomorphic_grad", "grad_named", "multigrad_dict", "checkpoint", "deriv",
        "defvjp_argnum", "primitive"],
    "test_util": ["check_grads", "check_vjp", "check_jvp", "check_equivalent", "scalar_close",
                  "combo_check"],
    "builtins": ["tuple", "list", "dict", "isinstance", "type"],
    "misc.flatten": ["flatten", "flatten_func"],
    "misc.optimizers": ["sgd", "rmsprop", "adam", "unflatten_optimizer"],
    "misc.fixed_points": ["fixed_point"],
    "misc": ["flatten", "const_graph"],
    "tracer": ["primitive", "notrace_primitive", "getval", "isbox"],
    "wrap_util": ["unary_to_nary", "wraps"],
    "util": ["quick_grad_check"],
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_autograds_modules_and_names(module):
    ours = importlib.import_module(f"fastad.{module}")
    missing = [n for n in MODULES[module] if not hasattr(ours, n)]
    assert missing == []
    autograd = pytest.importorskip(f"autograd.{module}")
    assert [n for n in MODULES[module] if not hasattr(autograd, n)] == []


def test_autograd_cores_names_are_in_fastad_tracer():
    """What user code imports from autograd.core lives in fastad.tracer."""
    from fastad import tracer
    names = ["make_vjp", "make_jvp", "primitive_vjps", "primitive_jvps", "primitive"]
    assert [n for n in names if not hasattr(tracer, n)] == []
    core = pytest.importorskip("autograd.core")
    assert [n for n in names if not hasattr(core, n)] == []


def test_misc_flatten_is_the_function_and_the_module():
    from fastad.misc import flatten
    from fastad.misc.flatten import flatten as same
    assert flatten is same is fa.flatten and callable(flatten)


def test_flatten_func_and_unflatten_optimizer_work_on_pytrees():
    """autograd's flatten_func turns a function of a pytree into one of a
    vector; unflatten_optimizer an optimizer of vectors into one of pytrees."""
    from fastad.misc.flatten import flatten_func
    from fastad.misc.optimizers import unflatten_optimizer
    params = {"w": np.array([1.0, -2.0]), "b": (np.array(0.5), [np.ones((2, 2))])}
    loss = lambda p, k: k * (fnp.sum(p["w"] ** 2) + p["b"][0] ** 2 + fnp.sum(p["b"][1][0]))  # noqa: E731
    flat_loss, unflatten, flat = flatten_func(loss, params)
    assert flat.shape == (7,)
    np.testing.assert_allclose(flat_loss(flat, 2.0), [loss(params, 2.0)])
    np.testing.assert_allclose(fa.grad(lambda v: flat_loss(v, 2.0)[0])(flat),
                               fa.flatten(fa.grad(loss)(params, 2.0))[0])

    @unflatten_optimizer
    def descend(grad, x, callback=None, num_iters=60):
        for i in range(num_iters):
            x = x - 0.1 * grad(x, i)
        return x
    found = descend(lambda p, i: fa.grad(loss)(p, 1.0), params)
    np.testing.assert_allclose(found["w"], params["w"] * 0.8 ** 60, atol=1e-12)
    from fastad.differential_operators import make_jvp_reversemode
    reverse = make_jvp_reversemode(lambda x: fnp.sin(x) * x[0])(np.array([0.3, 0.7]))
    np.testing.assert_allclose(reverse(np.array([1.0, 0.0])),
                               np.cos([0.3, 0.7]) * 0.3 * [1, 0] + np.sin([0.3, 0.7]))


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


@pytest.mark.parametrize("name", ["VSpace", "Box", "vspace"])
def test_autograds_tracer_types_name_the_pytree_way(name):
    """autograd's VSpace and Box have no counterpart: importing one says how
    fastad differentiates with respect to a value of one's own class, and that
    way works: the gradient is a value of the class, equal to central
    differences in each of its fields, eager and compiled."""
    with pytest.raises(ImportError, match="register_pytree_node"):
        exec(f"from fastad.extend import {name}", {})

    @fa.tree_util.register_pytree_node_class
    class Fun:
        def __init__(self, w, b):
            self.w, self.b = w, b

        def tree_flatten(self):
            return (self.w, self.b), None

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(*children)

        def __call__(self, x):
            return fnp.tanh(self.w * x + self.b)

    rng = np.random.default_rng(len(name))
    xs, ys = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5)
    loss = lambda f: fnp.sum((f(xs) - ys) ** 2)  # noqa: E731
    f = Fun(rng.uniform(0.5, 1.5, 5), 0.3)
    for g in (fa.grad(loss)(f), fa.compile(loss)(f)):
        assert type(g) is Fun
        d, h = rng.normal(size=5), 1e-6
        fd = (loss(Fun(f.w + h * d, f.b)) - loss(Fun(f.w - h * d, f.b))) / (2 * h)
        assert g.w @ d == pytest.approx(fd, rel=1e-6)
        fd = (loss(Fun(f.w, f.b + h)) - loss(Fun(f.w, f.b - h))) / (2 * h)
        assert g.b == pytest.approx(fd, rel=1e-6)


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


def test_autograds_top_level_names():
    """autograd's ``from autograd import grad, deriv, tuple, isinstance``: the
    top level has them (out of ``__all__``: a star import shadows nothing)."""
    for name in ("deriv", "tuple", "list", "dict", "isinstance", "type"):
        module = "differential_operators" if name == "deriv" else "builtins"
        assert getattr(fa, name) is getattr(importlib.import_module(f"fastad.{module}"), name)
        assert name not in fa.__all__
    seen = []

    def f(x, n):
        seen.append((fa.isinstance(x, np.ndarray), fa.isinstance(n, float),
                     fa.type(x) is np.ndarray, fa.isinstance(x, (tuple, list))))
        return fnp.sum(x ** 2) * n
    fa.grad(f)(np.ones(3), 2.0)
    assert seen == [(True, True, True, False)]
    assert fa.deriv(fnp.sin)(0.5) == np.cos(0.5)


@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jacobian", "hessian", "hvp"])
def test_argnum_is_autograds_name_for_argnums(transform):
    rng = np.random.default_rng(0)
    a, b, v = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)

    def f(a, b):
        return fnp.sum(fnp.sin(a) * b ** 3)
    extra = (v,) if transform == "hvp" else ()
    fn = getattr(fa, transform)
    got = fn(f if transform != "jacobian" else lambda a, b: fnp.sin(a) * b ** 3, argnum=1)(
        a, b, *extra)
    want = fn(f if transform != "jacobian" else lambda a, b: fnp.sin(a) * b ** 3, 1)(
        a, b, *extra)
    for g, w in zip(np.atleast_1d(got) if transform != "value_and_grad" else got,
                    np.atleast_1d(want) if transform != "value_and_grad" else want):
        np.testing.assert_array_equal(g, w)


def test_test_util_checks_catch_a_wrong_rule():
    """check_grads with a tuple of argnums, combo_check over values and
    keywords, check_vjp/check_jvp/check_equivalent: they pass on fastad's
    derivatives and fail on a primitive whose rule is wrong."""
    from fastad import test_util
    rng = np.random.default_rng(1)
    a, z = rng.normal(size=3), rng.normal(size=3) + 1j * rng.normal(size=3)
    test_util.check_grads(lambda x, y, k: fnp.sum(fnp.sin(x) * y ** k), (0, 1))(a, a + 1.0, 3)
    test_util.combo_check(lambda x, axis, keepdims: fnp.sum(fnp.exp(x), axis=axis,
                                                           keepdims=keepdims), [0])(
        [a, a.reshape(1, 3)], axis=[None, -1], keepdims=[True, False])
    for check in (test_util.check_vjp, test_util.check_jvp):
        check(lambda x: (fnp.exp(x) * fnp.conj(x), fnp.abs(x)), z)
    test_util.check_equivalent((a, [a * 2]), (a + 1e-9, [a * 2]))
    assert test_util.scalar_close(1.0, 1.0 + 1e-9) and not test_util.scalar_close(1.0, 1.1)

    wrong = extend.primitive(lambda x: x ** 2)
    extend.defvjp(wrong, lambda ans, x: lambda g: 3.0 * g * x)
    extend.defjvp(wrong, lambda g, ans, x: 3.0 * g * x)
    for check in (test_util.check_vjp, test_util.check_jvp):
        with pytest.raises(AssertionError):
            check(lambda x: fnp.sum(wrong(x)), a)
    with pytest.raises(AssertionError):
        test_util.check_equivalent(a, a + 0.1)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
def test_flat_points_have_autograds_zero_derivatives(backend):
    """Where the function is flat but a rule's formula would give 0 * inf:
    x ** 0 (at x == 0, a zero exponent traced or not), std over one element;
    a 0-d array reduced over axis 0 or -1 (NumPy's reductions allow it)."""
    grad = fa.grad if backend == "eager" else lambda f, *a: fa.jit(fa.grad(f, *a))
    assert grad(lambda x: x ** 0.0)(0.0) == 0.0
    assert grad(lambda x, y: x ** y)(0.0, 0.0) == 0.0
    assert grad(lambda x, y: x ** y, 1)(2.0, 0.0) == np.log(2.0)
    assert fa.jvp(lambda x: fnp.power(x, 0.0), (0.0,), (1.0,))[1] == 0.0
    np.testing.assert_array_equal(grad(lambda x: fnp.sum(fnp.std(x, axis=1)))(np.ones((3, 1))),
                                  np.zeros((3, 1)))
    assert grad(lambda x: fnp.std(x))(np.float64(2.5)) == 0.0
    assert grad(lambda x: fnp.sum(fnp.exp(x), axis=0) + fnp.max(x, axis=-1))(0.3) \
        == np.exp(0.3) + 1.0


def test_integer_casts_of_traced_floats_are_guarded_values():
    """np.int64(x) and np.asarray(x, dtype=int) of a traced float: NumPy's
    integers (no derivative to lose), under a guard: a compiled function
    retraces when they change and never returns a stale result."""
    def f(w):
        rows = np.int64(w[:, -1])
        cols = np.asarray(w[:, 0], dtype=np.int32)
        assert rows.dtype == np.int64 and cols.dtype == np.int32
        return fnp.sum(w[rows, 1:] * w[cols % 3, :1])
    rng = np.random.default_rng(2)
    w = rng.uniform(0.0, 2.9, (4, 3))
    g = fa.compile(f, backend="numpy")
    for x in (w, w + 0.01, np.flipud(w)):
        np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-14)
        h, d = 1e-7, rng.normal(size=x.shape) * (x % 1 > 0.01) * (x % 1 < 0.99)
        np.testing.assert_allclose(np.sum(g(x) * d), (f(x + h * d) - f(x - h * d)) / (2 * h),
                                   rtol=1e-5, atol=1e-7)


def test_autograds_linalg_helpers():
    """autograd.numpy.linalg's _dot and T, which code written for autograd
    (its own tests) calls: einsum's "...ij,...jk->...ik", eagerly and in a
    gradient, and the transpose of the last two axes."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    np.testing.assert_allclose(fnp.linalg._dot(a, b), np.einsum("...ij,...jk->...ik", a, b),
                               rtol=1e-14)
    g = fa.grad(lambda a: fnp.sum(fnp.linalg._dot(a, b) ** 2))(a)
    np.testing.assert_allclose(g, 2 * np.einsum("...ik,...jk->...ij", a @ b, b), rtol=1e-12)
    np.testing.assert_array_equal(fnp.linalg.T(a), np.swapaxes(a, -1, -2))


# -- autograd.tracer, autograd.core, autograd.wrap_util as user code uses them --

OPTIONS = st.sampled_from(["mode", None, b"raw", np.tanh])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.just("array"), OPTIONS), min_size=1, max_size=4)
       .filter(lambda a: "array" in a), st.integers(0, 2**31 - 1))
def test_primitives_take_strings_none_and_functions_among_their_arguments(layout, seed):
    """autograd passes any argument through to a primitive's function and
    rules: strings, None and functions among the arrays, in any position."""
    rng = np.random.default_rng(seed)
    seen = []

    def impl(*args):
        seen.append(tuple(a for a in args if not isinstance(a, np.ndarray | float)))
        return sum(np.sin(a) * (k + 1) for k, a in enumerate(args)
                   if isinstance(a, (np.ndarray, float)))
    prim = fa.primitive(impl)
    rules = [(lambda g, ans, *args, k=k: g * np.cos(args[k]) * (k + 1))
             if kind == "array" else None for k, kind in enumerate(layout)]
    fa.defvjp(prim, *rules)
    arrays = [k for k, kind in enumerate(layout) if kind == "array"]
    values = [rng.normal(size=3) for _ in arrays]

    def call(*xs):
        it = iter(xs)
        return fnp.sum(prim(*(next(it) if kind == "array" else kind for kind in layout)))
    want = [np.cos(v) * (k + 1) for k, v in zip(arrays, values)]
    got = fa.grad(call, tuple(range(len(values))))(*values)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)
    compiled = fa.jit(fa.grad(call, tuple(range(len(values)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a user's primitive is a host call
        for g, w in zip(compiled(*values), want):
            np.testing.assert_allclose(g, w)
    options = tuple(kind for kind in layout if kind != "array")
    assert seen and all(s == options for s in seen)


def test_tracer_and_core_names():
    from fastad import tracer
    from fastad.wrap_util import unary_to_nary

    @unary_to_nary
    def my_grad(fun, x):
        vjp, _ = tracer.make_vjp(fun, x)
        return vjp(1.0)
    assert my_grad(lambda x, y: x * y ** 2, 1)(2.0, 3.0) == pytest.approx(12.0)
    assert my_grad(lambda x, y: x * y, (0, 1))(2.0, 3.0) == pytest.approx((3.0, 2.0))
    assert tracer.make_jvp(fnp.sin, 0.5)(2.0)[1] == pytest.approx(2 * np.cos(0.5))
    seen = []
    fa.grad(lambda x: seen.append((tracer.isbox(x), type(tracer.getval(x)))) or x * x)(1.5)
    assert seen == [(True, np.ndarray)] or seen == [(True, np.float64)]
    assert not tracer.isbox(1.0) and tracer.getval(2.0) == 2.0
    guarded = fa.jit(lambda x: x * (2.0 if tracer.getval(x) > 0 else -2.0))
    assert guarded(3.0) == 6.0 and guarded(-3.0) == 6.0  # the value is a guard: traced again

    square = fa.primitive(lambda x: x * x)
    fa.defvjp(square, lambda g, ans, x: 2 * g * x)
    assert square.primitive in tracer.primitive_vjps
    rules = tracer.primitive_vjps.pop(square)
    with pytest.raises(NotImplementedError):
        fa.grad(square)(3.0)
    tracer.primitive_vjps[square] = rules
    assert fa.grad(square)(3.0) == pytest.approx(6.0)


def test_autograds_first_rule_methods_warn_and_work():
    from fastad import tracer
    for method in ("defgrad", "defvjp"):
        mul = tracer.primitive(lambda x, y: x * y)
        with pytest.warns(DeprecationWarning):
            if method == "defgrad":
                mul.defgrad(lambda ans, x, y: lambda g: y * g)
                mul.defgrad(lambda ans, x, y: lambda g: x * g, argnum=1)
            else:
                mul.defvjp(lambda g, ans, vs, gvs, x, y: y * g)
                mul.defvjp(lambda g, ans, vs, gvs, x, y: x * g, argnum=1)
        assert fa.grad(mul, (0, 1))(2.0, 5.0) == pytest.approx((5.0, 2.0))
    zero = tracer.primitive(lambda x, y: x * y)
    with pytest.warns(DeprecationWarning):
        zero.defvjp_is_zero([0, 1])
    assert fa.grad(zero, (0, 1))(2.0, 5.0) == (0.0, 0.0)


def test_const_graph_traces_once_and_tensor_jacobian_products():
    from fastad.differential_operators import tensor_jacobian_product
    from fastad.misc import const_graph
    calls = []

    def f(x, y):
        calls.append(1)
        return fnp.sin(x) * y
    once = const_graph(f, y=2.0)
    assert once(0.5) == pytest.approx(np.sin(0.5) * 2) and once(0.7) == pytest.approx(
        np.sin(0.7) * 2)
    assert len(calls) == 1
    fun = lambda a: fnp.roll(fnp.sin(a), 1)  # noqa: E731
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4, 3))
    J = fa.jacobian(fun)(a)
    for shape in ((5,), (5, 4), (5, 4, 3)):
        v = rng.normal(size=shape)
        np.testing.assert_allclose(tensor_jacobian_product(fun)(a, v),
                                   np.tensordot(v, J, axes=len(shape)), atol=1e-12)


def test_second_order_checks_see_a_rule_wrong_in_its_cotangent():
    """check_grads at order 2 differentiates a VJP in its cotangent too: a
    rule right in x whose own VJP is off is caught, and named as autograd does."""
    from fastad.test_util import check_grads
    from fastad.util import quick_grad_check
    bar = fa.primitive(lambda x: x)
    fa.defvjp(bar, lambda g, ans, x: g * 1.001)
    foo = fa.primitive(lambda x: x * 2.0)
    fa.defvjp(foo, lambda g, ans, x: bar(g) * 2)
    check_grads(foo, modes=["rev"], order=1)(1.0)
    with pytest.raises(AssertionError, match=r"\(VJP\) check of vjp_"):
        check_grads(foo, modes=["rev"])(1.0)
    with pytest.warns(DeprecationWarning):
        quick_grad_check(lambda x, y: x ** 2 + y, 1.0, (2.0,))


# a user primitive defined with VJP rules only (autograd's usual way): the
# functions, their rules (curried or not) written with fastad.numpy, and the
# same function written directly as the oracle
VJP_ONLY = {
    "square": (lambda x, y: x * x, (lambda ans, x, y: lambda g: 2 * g * x, None)),
    "sin_times": (lambda x, y: np.sin(x) * y, (lambda g, ans, x, y: g * fnp.cos(x) * y,
                                               lambda g, ans, x, y: g * fnp.sin(x))),
    "exp_ratio": (lambda x, y: np.exp(x) / (1.0 + y * y),
                  (lambda ans, x, y: lambda g: g * ans,
                   lambda ans, x, y: lambda g: -g * ans * 2 * y / (1.0 + y * y))),
    "sum_outer": (lambda x, y: np.sum(np.outer(x, y) ** 2, axis=1),
                  (lambda g, ans, x, y: g * 2 * x * fnp.sum(y * y),
                   lambda g, ans, x, y: 2 * y * fnp.sum(g * x * x))),
}


@settings(max_examples=8, deadline=None)
@given(name=st.sampled_from(sorted(VJP_ONLY)), seed=st.integers(0, 2**16))
def test_primitives_with_vjp_rules_only_have_forward_mode(name, seed):
    """jvp, jacobian (forward mode), hessian and make_hvp of a primitive that
    has VJP rules only (its JVP is their transpose), as autograd computes them."""
    impl, rules = VJP_ONLY[name]
    prim = fa.primitive(impl)
    fa.defvjp(prim, *rules)
    rng = np.random.default_rng(seed)
    x, y, t = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
    direct = {"square": lambda x, y: x * x, "sin_times": lambda x, y: fnp.sin(x) * y,
              "exp_ratio": lambda x, y: fnp.exp(x) / (1.0 + y * y),
              "sum_outer": lambda x, y: fnp.sum(fnp.outer(x, y) ** 2, axis=1)}[name]
    np.testing.assert_allclose(prim(x, y), direct(x, y), rtol=1e-14)
    scalar = lambda f: lambda x: fnp.sum(fnp.sin(f(x, y)) * f(x, y))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a user primitive runs as a host call
        _, tangent = fa.jvp(lambda x: prim(x, y), (x,), (t,))
        np.testing.assert_allclose(tangent, fa.jvp(lambda x: direct(x, y), (x,), (t,))[1],
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fa.jacobian(lambda x: prim(x, y))(x),
                                   fa.jacobian(lambda x: direct(x, y))(x), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fa.hessian(scalar(prim))(x), fa.hessian(scalar(direct))(x),
                                   rtol=1e-10, atol=1e-12)
        hvp, _ = fa.make_hvp(scalar(prim))(x)
        np.testing.assert_allclose(hvp(t), fa.hessian(scalar(direct))(x) @ t,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fa.jit(fa.hessian(scalar(prim)))(x),
                                   fa.hessian(scalar(direct))(x), rtol=1e-10, atol=1e-12)
