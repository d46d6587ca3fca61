"""JAX's runtime names (`fastad.runtime`, `fastad.debug`, `fastad.typing`)
and `jax.nn.initializers` (`fastad.initializers`): code written for JAX
that uses them runs, eager and compiled."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import random
from fastad.nn import initializers
from conftest import BACKENDS

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)
KEY = random.PRNGKey(7)


def test_config_devices_and_array():
    fa.config.update("jax_enable_x64", True)
    assert fa.config.jax_enable_x64 and fa.config.read("jax_enable_x64")
    fa.config.update("jax_debug_nans", False)
    with pytest.raises(ValueError, match="float32"):
        fa.config.update("jax_enable_x64", False)
    with fa.enable_x64():
        pass
    assert fa.device_count() == 1 and fa.devices()[0].platform == "cpu"
    assert fa.default_backend() == "cpu" and fa.process_index() == 0
    seen = []
    fa.grad(lambda x: seen.append(isinstance(x, fa.Array)) or fnp.sum(x))(np.ones(2))
    assert seen == [True] and isinstance(np.ones(2), fa.Array)
    assert not isinstance([1.0], fa.Array)
    from fastad.typing import ArrayLike  # noqa: F401


# (constructor, its arguments): what JAX code builds arrays with
_CONSTRUCTED = [("zeros", (5,)), ("ones", ((2, 3),)), ("full", ((4,), 2.5)), ("arange", (6.0,)),
                ("linspace", (0.0, 1.0, 5)), ("eye", (3,)), ("array", ([[1.0, 2.0], [3.0, 4.0]],)),
                ("asarray", (np.arange(4.0),)), ("zeros_like", (np.ones((2, 2)),)),
                ("full_like", (np.ones(3), 7.0)), ("copy", (np.arange(3.0),))]
_UPDATES = ["set", "add", "subtract", "multiply", "divide", "power", "min", "max"]


@pytest.mark.parametrize("name, args", _CONSTRUCTED, ids=[c[0] for c in _CONSTRUCTED])
@settings(max_examples=6, deadline=None)
@given(method=st.sampled_from(_UPDATES), seed=st.integers(0, 2**16))
def test_constructed_arrays_have_jax_methods(name, args, method, seed):
    """``jnp.zeros(n).at[i].set(v)`` outside a trace, chained, as jax.Array's:
    each update equals NumPy's in-place ufunc on a copy; the arrays stay
    ndarrays (reductions NumPy's scalars), and a captured one's update inside a
    compiled function is differentiated in the values written."""
    rng = np.random.default_rng(seed)
    x = getattr(fnp, name)(*args)
    assert isinstance(x, np.ndarray) and isinstance(x, fa.Array)
    assert x.block_until_ready() is x and x.device.platform == "cpu"
    flat = np.asarray(x, float).ravel()
    i = int(rng.integers(flat.size))
    v = float(rng.uniform(0.5, 2.0))
    ufunc = {"set": None, "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
             "divide": np.divide, "power": np.power, "min": np.minimum, "max": np.maximum}
    got = getattr(x.astype(float).ravel().at[i], method)(v).at[0].add(1.0)
    want = flat.copy()
    want[i] = v if method == "set" else ufunc[method](want[i], v)
    want[0] += 1.0
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert type(got) is type(x) and type(got.sum()) is np.float64
    np.testing.assert_array_equal(np.asarray(x, float).ravel(), flat)  # x unchanged

    base = fnp.asarray(flat + 1.0)

    def f(w):
        return fnp.sum(getattr(base.at[i], method)(w[0] ** 2) * w[1])
    w = rng.uniform(0.5, 1.5, 2)
    np.testing.assert_allclose(jit(f)(w), f(w), rtol=1e-14)
    d, h = rng.normal(size=2), 1e-6
    np.testing.assert_allclose(jit(fa.grad(f))(w) @ d, (f(w + h * d) - f(w - h * d)) / (2 * h),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["array", "tuple", "dict"])
def test_jitted_results_are_arrays_of_arrays(kind):
    """jax.jit(f)(x).block_until_ready(): given Arrays a jitted function returns
    Arrays, as the function itself does on them; given NumPy's arrays, NumPy's;
    the same values either way, one trace."""
    def f(x):
        y = fnp.sin(x) * 2.0
        return {"array": y, "tuple": (y, x[:2]), "dict": {"y": y, "s": [x + 1.0]}}[kind]
    g = jit(f)
    for x in (fnp.linspace(0.0, 1.0, 4), np.linspace(0.0, 1.0, 4)):
        for _ in range(2):  # the first call traces, the second takes the fast path
            got, want = g(x), f(x)
            for a, b in zip(fa.tree_util.tree_leaves(got), fa.tree_util.tree_leaves(want)):
                assert type(a) is type(b)
                np.testing.assert_array_equal(a, b)
    fa.tree_util.tree_map(lambda a: a.block_until_ready(), g(fnp.ones(4)))
    assert g.cache_info()["traces"] == 1
    loss = lambda x: fnp.sum(fnp.sin(x) ** 2)  # noqa: E731
    for x in (fnp.linspace(0.0, 1.0, 4), np.linspace(0.0, 1.0, 4)):
        for grad in (fa.grad(loss), lambda x: fa.value_and_grad(loss)(x)[1]):
            assert type(grad(x)) is type(x)


#: every transform's result on x, and (loss f, vector function g) to transform
TRANSFORMED = {
    "grad": lambda f, g, x: fa.grad(f)(x),
    "value_and_grad": lambda f, g, x: fa.value_and_grad(f)(x),
    "jvp": lambda f, g, x: fa.jvp(g, (x,), (x * 0.5,)),
    "vjp": lambda f, g, x: (lambda out, pull: (out, pull(out)))(*fa.vjp(g, x)),
    "vmap": lambda f, g, x: fa.vmap(g)(np.stack([x, x * 2.0]).view(type(x))),
    "jacobian": lambda f, g, x: fa.jacobian(g)(x),
    "jacfwd": lambda f, g, x: fa.jacfwd(g)(x),
    "jacrev": lambda f, g, x: fa.jacrev(g)(x),
    "hessian": lambda f, g, x: fa.hessian(f)(x),
    "hvp": lambda f, g, x: fa.hvp(f)(x, x),
    "linearize": lambda f, g, x: fa.linearize(g, x)[1](x),
    "jit(grad)": lambda f, g, x: fa.jit(fa.grad(f))(x),
    "jit of a dict": lambda f, g, x: fa.jit(lambda p: g(p["w"]) * p["s"])({"w": x, "s": 2.0}),
    "compile": lambda f, g, x: (fa.compile(f)(x), fa.compile(f).value_and_grad(x)),
    "params dict": lambda f, g, x: fa.grad(lambda p: f(p["w"]) * p["s"])({"w": x, "s": 2.0}),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMED))
def test_every_transform_returns_arrays_given_arrays(name):
    """As jax.grad(f)(x) does: given Arrays (or pytrees of them), a
    transformed function's arrays are Arrays; given NumPy's, NumPy's; the
    same values either way."""
    f = lambda x: fnp.sum(fnp.sin(x) ** 2 * x[0])  # noqa: E731
    g = lambda x: fnp.sin(x) * x[0]  # noqa: E731
    leaves = lambda out: [v for v in fa.tree_util.tree_leaves(out)  # noqa: E731
                          if isinstance(v, np.ndarray) and v.ndim]
    x = np.linspace(0.2, 1.0, 4)
    for _ in range(2):  # compiled ones: the first call traces, the second takes the fast path
        ours, plain = leaves(TRANSFORMED[name](f, g, fnp.asarray(x))), leaves(
            TRANSFORMED[name](f, g, x))
        assert ours and len(ours) == len(plain)
        for a, b in zip(ours, plain):
            assert type(a) is fa.Array and type(b) is np.ndarray, (type(a), type(b))
            np.testing.assert_array_equal(a, b)


_TRACED_KEYS = {  # how a function indexes a jax.Array by its integer argument i
    "row": lambda i: i, "element": lambda i: (i, 1), "reversed": lambda i: (i, slice(None, None, -1)),
    "shifted": lambda i: (i + 1) % 4, "rows": lambda i: (i + np.array([0, 1])) % 4,
}


@pytest.mark.parametrize("key", sorted(_TRACED_KEYS))
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_an_array_indexed_by_traced_integers_is_a_gather(key, seed):
    """As jax.Array's: a captured Array indexed by a jitted function's integer
    argument is one compiled gather for every index (one trace), equal to
    eager; its derivative in the values multiplied against central
    differences; under vmap, the rows of the examples."""
    rng = np.random.default_rng(seed)
    table = fnp.asarray(rng.uniform(0.5, 2.0, (4, 3)))
    index = _TRACED_KEYS[key]

    def f(w, i):
        return fnp.sum(table[index(i)] * w)
    w = rng.uniform(0.5, 1.5, 3)
    g, dg = jit(f), jit(fa.grad(f))
    for i in rng.integers(0, 4, 3):
        np.testing.assert_allclose(g(w, int(i)), f(w, int(i)), rtol=1e-14)
        d, h = rng.normal(size=3), 1e-6
        np.testing.assert_allclose(dg(w, int(i)) @ d,
                                   (f(w + h * d, int(i)) - f(w - h * d, int(i))) / (2 * h),
                                   rtol=1e-6)
    assert g.cache_info()["traces"] == 1
    ii = np.array([0, 3, 1])
    np.testing.assert_allclose(fa.vmap(f, in_axes=(None, 0))(w, ii),
                               [f(w, int(i)) for i in ii], rtol=1e-14)


def _namespace_calls():
    """(name, function, arguments) for every public function of fastad.numpy,
    .linalg and .fft and of fastad.scipy's modules: the first of a few
    argument lists NumPy's arrays take."""
    import importlib
    import types
    rng = np.random.default_rng(3)
    vec, mat = rng.uniform(0.2, 0.9, 4), rng.uniform(0.2, 0.9, (3, 3)) + 2 * np.eye(3)
    tries = [(mat,), (vec,), (mat, mat), (vec, vec), (mat, vec), (vec, 2), (mat, 1), (2, vec),
             (np.array([1, 0, 2, 1]),), (vec > 0.5,), (vec > 0.5, vec, vec[::-1])]
    modules = [fnp, fnp.linalg, fnp.fft] + [importlib.import_module(f"fastad.scipy.{name}") for name in (
        "linalg", "special", "fft", "signal", "integrate", "ndimage", "stats", "optimize",
        "sparse.linalg")]
    for module in modules:
        prefix = module.__name__ + "."
        for name in sorted(n for n in dir(module) if not n.startswith("_")):
            fn = getattr(module, name)
            if not isinstance(fn, types.FunctionType):
                continue
            for args in tries:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        out = fn(*(np.copy(a) for a in args))
                except Exception:  # noqa: BLE001 - not this function's arguments
                    continue
                if out is not None:  # not one that writes into its argument
                    yield prefix + name, fn, args
                break


def test_every_function_given_arrays_returns_arrays():
    """As jax.numpy's: outside a trace, every function of fastad.numpy (its
    linalg and fft, and fastad.scipy's modules) given Arrays returns Arrays where NumPy returns
    ndarrays, with NumPy's values; given NumPy's arrays, NumPy's."""
    def arrays(out):
        if isinstance(out, (tuple, list)):
            return [a for leaf in out for a in arrays(leaf)]
        return [out] if isinstance(out, np.ndarray) else []
    calls = list(_namespace_calls())
    assert len(calls) > 400
    returning = 0
    for name, fn, args in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = fn(*(np.copy(a) for a in args))
            ours = fn(*(fnp.array(a) if isinstance(a, np.ndarray) else a for a in args))
        plain, ours = arrays(plain), arrays(ours)
        assert len(plain) == len(ours), name
        returning += bool(ours)
        for a, b in zip(ours, plain):
            assert type(a) is (fa.Array if type(b) is np.ndarray else type(b)), name
            if not name.endswith((".empty", ".empty_like")):  # their values are whatever memory held
                np.testing.assert_array_equal(a, b, err_msg=name)
    assert returning > 300


def test_make_jaxpr_prints_the_program():
    tape = fa.make_jaxpr(lambda x, n: fnp.sin(x) * n, static_argnums=1)(np.ones(3), 2)
    text = str(tape)
    assert "sin" in text and "mul" in text


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2 ** 31))
def test_pure_callback_runs_each_call(n, seed):
    """A NumPy function inside a compiled function sees each call's values
    (no retrace), per example under vmap; its results can be several arrays."""
    def f(x):
        srt, rank = fa.pure_callback(
            lambda v: (np.sort(v), np.argsort(v).astype(np.float64)),
            (fa.ShapeDtypeStruct(x.shape, x.dtype), fa.ShapeDtypeStruct(x.shape, np.float64)), x)
        return fnp.sum(srt * x) + fnp.sum(rank)

    def expect(x):
        return np.sum(np.sort(x) * x) + np.sum(np.argsort(x))

    rng = np.random.default_rng(seed)
    g = jit(f)
    xs = rng.normal(size=(3, n))
    for x in xs:
        np.testing.assert_allclose(g(x), expect(x), rtol=1e-13)
    assert g.cache_info()["traces"] == 1
    np.testing.assert_allclose(fa.vmap(f)(xs), [expect(x) for x in xs], rtol=1e-13)


def test_pure_callback_refuses_differentiation_and_wrong_shapes():
    cb = functools.partial(fa.pure_callback, np.cos, fa.ShapeDtypeStruct((2,), np.float64))
    with pytest.raises(NotImplementedError, match="VJP rule"):
        fa.grad(lambda x: fnp.sum(cb(x)))(np.ones(2))
    with pytest.raises(ValueError, match="declared"):
        fa.pure_callback(np.cos, fa.ShapeDtypeStruct((3,), np.float64), np.ones(2))


def test_debug_print_and_callback(capsys):
    got = []

    def f(x):
        fa.debug.print("x0={} n={n}", x[0], n=3)
        fa.debug.callback(lambda v: got.append(float(v.sum())), x)
        return fnp.sum(x ** 2)

    fa.grad(f)(np.array([1.5, 2.0]))
    assert "x0=1.5 n=3" in capsys.readouterr().out
    assert got == [3.5]


# where a debug print sits: the function itself, a loop body, a vmapped function
_PRINTING = {
    "plain": lambda x: (fa.debug.print("v={:.6f}", fnp.sum(x)), fnp.sum(fnp.sin(x) * x))[1],
    "loop": lambda x: fa.lax.fori_loop(
        0, 2, lambda i, c: (fa.debug.print("v={:.6f}", fnp.sum(c)), c * 0.5)[1], x).sum(),
    "vmap": lambda x: fnp.sum(fa.vmap(
        lambda r: (fa.debug.print("v={:.6f}", fnp.sum(r)), r ** 2)[1])(fnp.reshape(x, (2, -1)))),
}
_SHOWN = {"plain": lambda x: [x.sum()], "loop": lambda x: [x.sum(), x.sum() / 2],
          "vmap": lambda x: list(x.reshape(2, -1).sum(axis=1))}


@pytest.mark.parametrize("where", sorted(_PRINTING))
@pytest.mark.parametrize("transform", ["jit", "compile", "jit_grad"])
def test_debug_print_runs_at_every_compiled_call(capsys, where, transform):
    """jax.debug.print inside a compiled function prints each call's values,
    not the trace's (JAX's behaviour under jit); the trace prints nothing."""
    f = _PRINTING[where]
    g = {"jit": jit(f), "compile": fa.compile(f, backend=ONE_COMPILED),
         "jit_grad": jit(fa.grad(f))}[transform]
    for x in (np.arange(1.0, 5.0), np.arange(1.0, 5.0) * 3):
        capsys.readouterr()
        g(x)
        printed = [float(line[2:]) for line in capsys.readouterr().out.split()]
        want = _SHOWN[where](x)
        # each value at least once, no other (a reverse sweep may recompute a loop body)
        assert sorted(set(np.round(printed, 6))) == sorted(set(np.round(want, 6))), printed
    assert g.cache_info()["traces"] == 1


@settings(max_examples=10, deadline=None)
@given(st.floats(0.1, 3.0), st.integers(0, 2 ** 31))
def test_custom_gradient(bound, seed):
    """jax.custom_gradient: the value is fun's, the gradient its vjp_fn's,
    eager and compiled."""
    @fa.custom_gradient
    def clipped(x, w):
        return x * w, lambda g: (fnp.clip(g * w, -bound, bound), g * x)

    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=4), rng.normal(size=4)
    loss = lambda x, w: fnp.sum(clipped(x, w) * 3.0)  # noqa: E731
    gx, gw = fa.grad(loss, (0, 1))(x, w)
    np.testing.assert_allclose(gx, np.clip(3.0 * w, -bound, bound), rtol=1e-14)
    np.testing.assert_allclose(gw, 3.0 * x, rtol=1e-14)
    cx, cw = jit(fa.grad(loss, (0, 1)))(x, w)
    np.testing.assert_allclose(cx, gx, rtol=1e-14)
    np.testing.assert_allclose(cw, gw, rtol=1e-14)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2 ** 31))
def test_linear_transpose_is_the_matrix_transpose(m, n, seed):
    a = np.random.default_rng(seed).normal(size=(m, n))
    transpose = fa.linear_transpose(lambda x: a @ x, np.zeros(n))
    ct = np.random.default_rng(seed + 1).normal(size=m)
    (got,) = transpose(ct)
    np.testing.assert_allclose(got, a.T @ ct, rtol=1e-13, atol=1e-14)
    converted, consts = fa.closure_convert(lambda x: a @ x, np.zeros(n))
    np.testing.assert_allclose(converted(np.ones(n), *consts), a @ np.ones(n))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2 ** 31))
def test_closure_convert_hoists_the_traced_values_a_function_closes_over(n, seed):
    """Inside a trace, the traced values ``fun`` closes over become its last
    arguments: replayed on plain values it computes fun's values, on traced
    ones its derivatives in them, eager and compiled, as with fun itself."""
    rng = np.random.default_rng(seed)
    x, w, v = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)

    def loss(w):
        fun = lambda y, s: fnp.sum(fnp.sin(y * w) * s) + fnp.sum(w ** 2)  # noqa: E731
        converted, consts = fa.closure_convert(fun, x, 2.0)
        assert len(consts) == 1
        plain, wv = converted(v, 3.0, *[c.value for c in consts]), consts[0].value
        np.testing.assert_allclose(plain, np.sum(np.sin(v * wv) * 3.0) + np.sum(wv ** 2))
        return converted(x, 2.0, *consts)
    direct = lambda w: fnp.sum(fnp.sin(x * w) * 2.0) + fnp.sum(w ** 2)  # noqa: E731
    np.testing.assert_allclose(fa.grad(loss)(w), fa.grad(direct)(w), rtol=1e-13)
    np.testing.assert_allclose(fa.jit(fa.grad(loss), backend=ONE_COMPILED)(w),
                               fa.grad(direct)(w), rtol=1e-12)
    with pytest.raises(fa.TracingError, match="branches"):
        fa.grad(lambda w: fa.closure_convert(
            lambda y: fnp.sum(y * w) if bool(fnp.sum(y * w) > -1e9) else 0.0, x)[0](x))(w)


@pytest.mark.parametrize("name,scale,mode", [
    ("glorot_normal", 1.0, "fan_avg"), ("glorot_uniform", 1.0, "fan_avg"),
    ("he_normal", 2.0, "fan_in"), ("he_uniform", 2.0, "fan_in"),
    ("lecun_normal", 1.0, "fan_in"), ("lecun_uniform", 1.0, "fan_in"),
    ("kaiming_normal", 2.0, "fan_in"), ("xavier_uniform", 1.0, "fan_avg")])
@pytest.mark.parametrize("shape", [(60, 80), (3, 3, 16, 32)])
def test_variance_scaling_initializers(name, scale, mode, shape):
    w = getattr(initializers, name)()(KEY, shape)
    receptive = int(np.prod(shape[:-2]))
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    fan = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
    assert w.shape == shape and w.dtype == np.float64
    np.testing.assert_allclose(np.var(w), scale / fan, rtol=0.12)


def test_other_initializers():
    q = initializers.orthogonal(2.0)(KEY, (6, 4))
    np.testing.assert_allclose(q.T @ q, 4.0 * np.eye(4), atol=1e-12)
    q = initializers.orthogonal()(KEY, (3, 7))
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    d = initializers.delta_orthogonal()(KEY, (3, 3, 4, 4))
    np.testing.assert_allclose(d[1, 1].T @ d[1, 1], np.eye(4), atol=1e-12)
    assert np.count_nonzero(d) == np.count_nonzero(d[1, 1])
    np.testing.assert_array_equal(initializers.constant(0.5)(KEY, (2, 3)), np.full((2, 3), 0.5))
    assert initializers.normal(0.1)(KEY, (2,), np.float32).dtype == np.float32
    t = initializers.truncated_normal(1.0)(KEY, (1000,))
    assert np.all(np.abs(t) < 2.0)


def test_initializers_match_jax_where_installed():
    jax = pytest.importorskip("jax")
    for name in ("glorot_uniform", "he_uniform", "lecun_normal", "normal", "uniform"):
        ours = getattr(initializers, name)()(KEY, (5, 6), np.float32)
        theirs = getattr(jax.nn.initializers, name)()(jax.random.PRNGKey(7), (5, 6),
                                                      jax.numpy.float32)
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=2e-5, atol=1e-6)


def _host_code_cases():
    """Functions fastad runs as Python on plain values while a trace is open
    (the values of custom rules' functions, solvers, odeint's dynamics,
    callbacks, user primitives), each written with fastad.numpy's creation
    functions, which inside a trace would make traced constants."""
    from fastad import lax
    from fastad.scipy.integrate import odeint

    def made(x):  # fastad.numpy's constructors, as user code writes them
        return x * fnp.ones((), x.dtype) + fnp.zeros_like(x) + fnp.asarray(0.0) \
            + fnp.array([0.0])[0] + fnp.full(x.shape, 0.0)

    @fa.custom_vjp
    def cube(x):
        return made(x) ** 3

    cube.defvjp(lambda x: (made(x) ** 3, x), lambda x, g: (3 * made(x) ** 2 * g,))

    @fa.custom_jvp
    def sq(x):
        return made(x) ** 2

    sq.defjvp(lambda p, t: (made(p[0]) ** 2, 2 * made(p[0]) * t[0]))
    mat = np.diag([2.0, 3.0, 4.0])

    @fa.primitive
    def doubled(x):
        return made(x) * 2.0

    fa.defvjp(doubled, lambda g, ans, x: 2.0 * g)
    return {
        "custom_vjp": (lambda x: fnp.sum(cube(x)), lambda x: 3 * x ** 2),
        "custom_jvp": (lambda x: fnp.sum(sq(x)), lambda x: 2 * x),
        "custom_linear_solve": (
            lambda x: fnp.sum(lax.custom_linear_solve(lambda v: mat @ v, x,
                                                      lambda mv, r: made(r) / np.diag(mat),
                                                      symmetric=True) ** 2),
            lambda x: 2 * x / np.diag(mat) ** 2),
        "odeint": (lambda x: fnp.sum(odeint(lambda y, t, k: -made(k) * y, np.ones(3),
                                            np.array([0.0, 1.0]), (x,))[-1]),
                   lambda x: -np.exp(-x)),
        "primitive": (lambda x: fnp.sum(doubled(x)), lambda x: np.full_like(x, 2.0)),
    }


@pytest.mark.parametrize("name", sorted(_host_code_cases()))
def test_host_code_with_fastad_constructors_inside_traces(name):
    f, dfdx = _host_code_cases()[name]
    x = np.array([0.3, 0.7, 1.1])
    np.testing.assert_allclose(fa.grad(f)(x), dfdx(x), rtol=1e-6)
    np.testing.assert_allclose(jit(fa.grad(f))(x), dfdx(x), rtol=1e-6)
    np.testing.assert_allclose(fa.grad(lambda x: f(x) * fnp.sum(x))(x),
                               dfdx(x) * np.sum(x) + f(x), rtol=1e-6)


_SEGMENT_REFERENCE = {"segment_sum": (np.add, 0.0), "segment_prod": (np.multiply, 1.0),
                      "segment_max": (np.maximum, -np.inf), "segment_min": (np.minimum, np.inf)}


@pytest.mark.parametrize("name", sorted(_SEGMENT_REFERENCE))
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 9), k=st.integers(1, 5), cols=st.sampled_from([(), (2,)]),
       seed=st.integers(0, 2**16))
def test_segment_reductions(name, n, k, cols, seed):
    """``jax.ops.segment_*`` against a loop over the rows (ids out of range
    dropped, empty segments the identity), differentiated in the data against
    central differences, compiled equal to eager with one trace for new ids."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.5, 2.0, (n,) + cols)
    ids = rng.integers(-1, k + 1, n)
    ufunc, identity = _SEGMENT_REFERENCE[name]
    want = np.full((k,) + cols, identity)
    for row, i in zip(data, ids):
        if 0 <= i < k:
            want[i] = ufunc(want[i], row)
    op = getattr(fa.ops, name)
    np.testing.assert_allclose(op(data, ids, k), want, rtol=1e-14)
    weights = rng.normal(size=(k,) + cols)

    def f(x, ids):
        out = op(x, ids, k)
        return fnp.sum(fnp.where(fnp.isfinite(out), out, 0.0) * weights)
    g = jit(fa.grad(f))
    d, h = rng.normal(size=data.shape), 1e-6
    np.testing.assert_allclose(np.sum(g(data, ids) * d),
                               (f(data + h * d, ids) - f(data - h * d, ids)) / (2 * h),
                               rtol=1e-6, atol=1e-9)
    other = rng.integers(-1, k + 1, n)
    np.testing.assert_allclose(g(data, other), fa.grad(f)(data, other), rtol=1e-14)
    assert g.cache_info()["traces"] == 1
