"""Code written for JAX and autograd runs unchanged: ``has_aux``, keyword and
static arguments of compiled functions, and autograd's curried ``defvjp``.

Every feature is checked eager and compiled (the C VM and the NumPy
reference, one case on Numba) against the eager result and central finite
differences.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from conftest import BACKENDS

import fastad as fa
import fastad.numpy as fnp
from helpers import central_difference_jacobian

COMPILED = [b for b in ("numpy", "c") if b in BACKENDS]
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
WITH_NUMBA = COMPILED + (["numba"] if "numba" in BACKENDS else [])


def _fd_grad(f, x, eps=1e-6):
    """Central differences of scalar f along each coordinate of x."""
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        out[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def _loss(w, x):
    r = fnp.sin(w * x)
    return fnp.sum(r ** 2) + fnp.prod(w[:2]), {"r": r, "mean": fnp.mean(r), "w0": w[0]}


W = np.array([0.3, -0.7, 1.1])
X = np.array([1.5, 0.5, -2.0])


def _value(w, x=X):
    return _loss(w, x)[0]


# -- has_aux ---------------------------------------------------------------------------

def test_grad_has_aux_eager():
    marker = object()

    def f(w):
        value, aux = _loss(w, X)
        return value, {"arrays": aux, "name": "loss", "count": 3, "marker": marker}

    g, aux = fa.grad(f, has_aux=True)(W)
    np.testing.assert_allclose(g, fa.grad(_value)(W), rtol=1e-14)
    np.testing.assert_allclose(g, _fd_grad(_value, W), rtol=1e-6)
    assert aux["name"] == "loss" and aux["count"] == 3 and aux["marker"] is marker
    np.testing.assert_allclose(aux["arrays"]["r"], np.sin(W * X), rtol=1e-15)
    assert type(aux["arrays"]["r"]) is np.ndarray
    (value, aux2), g2 = fa.value_and_grad(f, has_aux=True)(W)
    np.testing.assert_allclose(value, _value(W), rtol=1e-15)
    np.testing.assert_allclose(g2, g, rtol=1e-15)
    assert aux2["marker"] is marker


def test_has_aux_argnums_and_keywords():
    def f(x, w, scale=1.0):
        v, aux = _loss(w, x)
        return scale * v, aux

    (gx, gw), aux = fa.grad(f, argnums=(0, 1), has_aux=True)(X, W, scale=2.0)
    np.testing.assert_allclose(gw, 2 * fa.grad(_value)(W), rtol=1e-14)
    np.testing.assert_allclose(gx, _fd_grad(lambda x: 2 * _loss(W, x)[0], X), rtol=1e-6)
    np.testing.assert_allclose(aux["mean"], np.mean(np.sin(W * X)), rtol=1e-15)


def test_has_aux_requires_a_pair():
    with pytest.raises(TypeError, match="pair"):
        fa.grad(lambda w: fnp.sum(w), has_aux=True)(W)
    with pytest.raises(TypeError, match="pair"):
        fa.compile(lambda w: fnp.sum(w), has_aux=True, backend="numpy")(W)


def test_vjp_has_aux():
    def f(w):
        return fnp.sin(w) * X, {"c": fnp.cos(w), "tag": "t"}

    out, pull, aux = fa.vjp(f, W, has_aux=True)
    np.testing.assert_allclose(out, np.sin(W) * X)
    np.testing.assert_allclose(aux["c"], np.cos(W))
    assert aux["tag"] == "t"
    ct = np.array([1.0, -2.0, 0.5])
    (g,) = pull(ct)
    np.testing.assert_allclose(g, _fd_grad(lambda w: np.sum(ct * np.sin(w) * X), W), rtol=1e-6)
    # nested: the vjp inside a gradient, aux a value of the enclosing trace
    outer = fa.grad(lambda w: fnp.sum(fa.vjp(f, w, has_aux=True)[2]["c"] ** 3))(W)
    np.testing.assert_allclose(outer, -3 * np.cos(W) ** 2 * np.sin(W), rtol=1e-13)


def test_grad_has_aux_nested():
    """The aux of an inner gradient is differentiable by an outer one."""
    def outer(w):
        g, aux = fa.grad(lambda v: _loss(v, X), has_aux=True)(w)
        return fnp.sum(g ** 2) + aux["mean"], aux["r"]

    (value, r), gw = fa.value_and_grad(outer, has_aux=True)(W)
    np.testing.assert_allclose(r, np.sin(W * X))
    np.testing.assert_allclose(gw, _fd_grad(lambda w: outer(w)[0], W), rtol=1e-6)


@pytest.mark.parametrize("backend", WITH_NUMBA)
def test_compile_has_aux(backend):
    g = fa.compile(_loss, has_aux=True, backend=backend)
    for w in (W, W + 0.25, W):  # aux is computed by the tape, not baked in
        grad, aux = g(w, X)
        want_grad, want_aux = fa.grad(_loss, has_aux=True)(w, X)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12)
        np.testing.assert_allclose(grad, _fd_grad(lambda v: _value(v), w), rtol=1e-6)
        assert sorted(aux) == ["mean", "r", "w0"]
        for k in aux:
            np.testing.assert_allclose(aux[k], want_aux[k], rtol=1e-14)
        (value, aux2), grad2 = g.value_and_grad(w, X)
        np.testing.assert_allclose(value, _value(w), rtol=1e-14)
        np.testing.assert_allclose(grad2, grad, rtol=1e-14)
        np.testing.assert_allclose(aux2["r"], aux["r"], rtol=1e-15)
        value3, aux3 = g.value(w, X)
        np.testing.assert_allclose(value3, value, rtol=1e-14)
        np.testing.assert_allclose(aux3["mean"], aux["mean"], rtol=1e-14)
    assert g.cache_info()["traces"] == 1


@pytest.mark.parametrize("backend", COMPILED)
def test_compile_has_aux_methods_and_composition(backend):
    g = fa.compile(_loss, has_aux=True, backend=backend)
    np.testing.assert_allclose(g.hessian(W, X), fa.hessian(_value)(W), rtol=1e-12)
    v = np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(g.hvp(W, X, v), fa.hessian(_value)(W) @ v, rtol=1e-12)
    batch = np.stack([W, W + 1])
    grads, aux = g.batch(batch, X, in_axes=(0, None))
    np.testing.assert_allclose(grads, [fa.grad(_value)(w) for w in batch], rtol=1e-12)
    np.testing.assert_allclose(aux["r"], np.sin(batch * X), rtol=1e-14)

    # inside another traced function: grad and aux are values of that trace
    def uses(gf):
        return lambda w: fnp.sum(gf(w, X)[0] * gf(w, X)[1]["r"])

    eager = uses(fa.grad(_loss, has_aux=True))
    want = fa.grad(eager)(W)
    np.testing.assert_allclose(fa.grad(uses(g))(W), want, rtol=1e-10)
    np.testing.assert_allclose(fa.compile(uses(g), backend=backend)(W), want, rtol=1e-10)
    np.testing.assert_allclose(want, _fd_grad(eager, W), rtol=1e-6)


@pytest.mark.parametrize("backend", COMPILED)
def test_jitted_gradient_has_aux(backend):
    jg = fa.jit(fa.grad(_loss, has_aux=True), backend=backend)
    grad, aux = jg(W, X)
    want_grad, want_aux = fa.grad(_loss, has_aux=True)(W, X)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)
    np.testing.assert_allclose(aux["r"], want_aux["r"], rtol=1e-14)
    jvg = fa.jit(fa.value_and_grad(_loss, has_aux=True), backend=backend)
    (value, aux), grad = jvg(W, X)
    np.testing.assert_allclose(value, _value(W), rtol=1e-14)
    np.testing.assert_allclose(aux["w0"], W[0])


def test_compile_has_aux_saved_and_loaded():
    g = fa.compile(_loss, has_aux=True, backend="numpy")
    want = g(W, X)
    loaded = fa.loads(fa.dumps(g))
    grad, aux = loaded(W, X)
    np.testing.assert_allclose(grad, want[0], rtol=1e-15)
    np.testing.assert_allclose(aux["r"], want[1]["r"], rtol=1e-15)
    (value, aux), _ = loaded.value_and_grad(W + 1, X)
    np.testing.assert_allclose(value, _value(W + 1), rtol=1e-14)


# -- keyword and static arguments of compiled functions ------------------------------------

def _scaled(w, x=X, scale=1.0, mode="sin", power=2):
    base = fnp.sin(w * x) if mode == "sin" else fnp.cos(w * x)
    return fnp.sum(base ** power) * scale


@pytest.mark.parametrize("backend", WITH_NUMBA)
def test_compile_keyword_arguments(backend):
    g = fa.compile(_scaled, backend=backend)
    cases = [dict(scale=3.0), dict(scale=np.float64(0.5)), dict(scale=2.0, mode="cos"),
             dict(x=X[::-1].copy(), scale=1.5), dict(power=3), dict(mode="cos", power=3)]
    for kw in cases:
        want = fa.grad(_scaled)(W, **kw)
        np.testing.assert_allclose(g(W, **kw), want, rtol=1e-12)
        np.testing.assert_allclose(want, _fd_grad(lambda w: _scaled(w, **kw), W), rtol=1e-6)
        value, grad = g.value_and_grad(W, **kw)
        np.testing.assert_allclose(value, _scaled(W, **kw), rtol=1e-13)
        np.testing.assert_allclose(grad, want, rtol=1e-12)
        np.testing.assert_allclose(g.value(W, **kw), _scaled(W, **kw), rtol=1e-13)
    # floats are data: scale=3.0 and scale=1.5 share a signature, and NumPy's
    # float64 has one of its own (a Python float is weak, NumPy's is not);
    # strings and ints are keyed by value: "cos" and power=3 each trace
    keys = [e["signature"] for e in g.cache_info()["entries"]]
    assert len(keys) == 6, keys
    # positional and keyword calls agree
    np.testing.assert_allclose(g(W, X, 2.0), g(W, scale=2.0), rtol=1e-15)


@pytest.mark.parametrize("backend", COMPILED)
def test_jit_keyword_arrays_are_data(backend):
    calls = []

    def f(w, *, offset):
        calls.append(1)
        return fnp.sum(fnp.exp(w) * offset["a"]) + fnp.sum(offset["b"])

    j = fa.jit(f, backend=backend)
    for k in range(3):
        off = {"a": np.full(3, k + 1.0), "b": np.arange(2.0) + k}
        np.testing.assert_allclose(j(W, offset=off), f(W, offset=off), rtol=1e-13)
    assert len(calls) == 1 + 3  # traced once (plus the three eager references)
    j(W, offset={"a": np.ones(3), "b": np.ones(4)})  # a new shape: a new signature
    assert j.cache_info()["signatures"] == 2


@pytest.mark.parametrize("backend", COMPILED)
def test_static_argnames(backend):
    traced = []

    def f(w, n, mode="sin"):
        traced.append((n, mode))
        base = fnp.sin(w) if mode == "sin" else fnp.cos(w)
        return fnp.sum(base ** n)

    j = fa.jit(f, static_argnames=("n", "mode"), backend=backend)
    np.testing.assert_allclose(j(W, n=2), np.sum(np.sin(W) ** 2), rtol=1e-14)
    np.testing.assert_allclose(j(W, 2), np.sum(np.sin(W) ** 2), rtol=1e-14)  # by position
    np.testing.assert_allclose(j(W, n=3, mode="cos"), np.sum(np.cos(W) ** 3), rtol=1e-14)
    assert traced == [(2, "sin"), (2, "sin"), (3, "cos")]  # positional n is static too
    g = fa.compile(f, static_argnums=(1,), static_argnames="mode", backend=backend)
    for kw in (dict(n=2), dict(n=3, mode="cos")):
        want = fa.grad(f)(W, **kw)
        np.testing.assert_allclose(g(W, **kw), want, rtol=1e-12)
        np.testing.assert_allclose(want, _fd_grad(lambda w: f(w, **kw), W), rtol=1e-6)
    with pytest.raises(ValueError, match="both differentiated and static"):
        fa.compile(f, static_argnames="w")


def test_static_keyword_must_be_hashable():
    j = fa.jit(lambda w, opts: fnp.sum(w) * len(opts), static_argnames="opts", backend="numpy")
    assert j(W, opts=(1, 2)) == pytest.approx(2 * np.sum(W))
    with pytest.raises(TypeError, match="hashable"):
        j(W, opts=[1, 2])


def test_keyword_signatures_saved_and_loaded():
    j = fa.jit(_scaled, static_argnames="mode", backend="numpy")
    j(W, scale=2.0, mode="cos")
    loaded = fa.loads(fa.dumps(j))
    np.testing.assert_allclose(loaded(W, scale=3.0, mode="cos"), _scaled(W, scale=3.0,
                                                                          mode="cos"))
    with pytest.raises(fa.SignatureError):
        loaded(W, scale=3.0, mode="sin")


def test_keyword_call_does_not_take_a_positional_shortcut():
    """A signature whose one float array is passed by keyword is not the one
    of a positional call with that array."""
    j = fa.jit(lambda x=None, y=None: fnp.sum(x) if y is None else fnp.sum(y) * 2,
               backend="numpy")
    a = np.arange(3.0)
    assert j(y=a) == 6.0
    assert j(a) == 3.0
    assert j(y=a) == 6.0 and j(a) == 3.0


# -- defvjp: autograd's curried form and the (g, ans, *args) form -------------------------------

def _logsigmoid_primitives():
    @fa.primitive
    def logsig_curried(x):
        return -np.logaddexp(0, -x)

    @fa.primitive
    def logsig_plain(x):
        return -np.logaddexp(0, -x)

    fa.defvjp(logsig_curried, lambda ans, x: lambda g: g * fnp.exp(-fnp.logaddexp(0, x)))
    fa.defvjp(logsig_plain, lambda g, ans, x: g * fnp.exp(-fnp.logaddexp(0, x)))
    return logsig_curried, logsig_plain


def _scaled_product_primitive():
    @fa.primitive
    def scaled_product(x, y, c=2.0):
        return c * x * y

    # curried, with the primitive's optional parameter: arity 1 + 3
    fa.defvjp(scaled_product,
              lambda ans, x, y, c=2.0: lambda g: g * c * y,
              lambda ans, x, y, c=2.0: lambda g: g * c * x)
    return scaled_product


@pytest.mark.parametrize("backend", WITH_NUMBA)
def test_defvjp_curried_form(backend):
    curried, plain = _logsigmoid_primitives()
    product = _scaled_product_primitive()

    def f(use):
        return lambda x: fnp.sum(use(x) * fnp.cos(x)) + fnp.sum(product(x, fnp.sin(x)))

    x = np.linspace(-1.5, 2.0, 5)
    want = fa.grad(f(plain))(x)
    np.testing.assert_allclose(fa.grad(f(curried))(x), want, rtol=1e-15)
    np.testing.assert_allclose(want, _fd_grad(f(plain), x), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # user primitives run as host calls
        np.testing.assert_allclose(fa.compile(f(curried), backend=backend)(x), want,
                                   rtol=1e-12)
        np.testing.assert_allclose(fa.jit(fa.grad(f(curried)), backend=backend)(x), want,
                                   rtol=1e-12)
    # reverse over reverse: the curried rule traces like any other
    hv = fa.grad(lambda x: fnp.sum(fa.grad(f(curried))(x) ** 2))(x)
    np.testing.assert_allclose(hv, fa.grad(lambda x: fnp.sum(fa.grad(f(plain))(x) ** 2))(x),
                               rtol=1e-12)
    np.testing.assert_allclose(
        hv, _fd_grad(lambda x: np.sum(fa.grad(f(plain))(x) ** 2), x), rtol=1e-5)


def test_defvjp_tells_forms_apart_by_arity():
    from fastad.core.registry import _is_curried

    @fa.primitive
    def unary(x):
        return x

    @fa.primitive
    def variadic(*xs):
        return xs[0]

    prim = unary.primitive
    assert _is_curried(lambda ans, x: None, prim)
    assert not _is_curried(lambda g, ans, x: None, prim)
    assert not _is_curried(lambda g, ans, x, **params: None, prim)
    # the primitive's parameters cannot be counted: the first name decides
    assert _is_curried(lambda ans, *args: None, variadic.primitive)
    assert not _is_curried(lambda g, ans, *args: None, variadic.primitive)


def test_jvp_has_aux():
    def f(w):
        return fnp.sin(w) * X, {"c": fnp.cos(w), "tag": "t"}

    v = np.array([0.2, -1.0, 0.5])
    out, tangent, aux = fa.jvp(f, (W,), (v,), has_aux=True)
    np.testing.assert_allclose(out, np.sin(W) * X)
    np.testing.assert_allclose(tangent, np.cos(W) * X * v, rtol=1e-14)
    eps = 1e-6
    np.testing.assert_allclose(tangent, (np.sin(W + eps * v) - np.sin(W - eps * v)) * X
                               / (2 * eps), rtol=1e-6)
    np.testing.assert_allclose(aux["c"], np.cos(W))
    assert aux["tag"] == "t"
    # under jit, aux's arrays are outputs of the compiled tape (a jitted
    # function's outputs are arrays: no strings)
    def g(w):
        return fnp.sin(w) * X, {"c": fnp.cos(w)}

    jitted = fa.jit(lambda w, v: fa.jvp(g, (w,), (v,), has_aux=True)[::2], backend="numpy")
    (out2, aux2) = jitted(W, v)
    np.testing.assert_allclose(aux2["c"], np.cos(W), rtol=1e-15)
    np.testing.assert_allclose(out2, out, rtol=1e-15)


# -- an output of one element, of any shape, is a scalar (as in autograd) -------------
@pytest.mark.parametrize("shape", [(1,), (1, 1), (1, 1, 1)])
@pytest.mark.parametrize("backend", [None] + WITH_NUMBA)
def test_one_element_outputs_of_any_shape_are_scalars(shape, backend):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(4)

    def scalar(x):
        return fnp.sum(fnp.sin(x) * x ** 2) + fnp.prod(x[:2])

    def boxed(x):
        return fnp.reshape(scalar(x), shape)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vg = fa.value_and_grad(boxed) if backend is None else \
            fa.compile(boxed, backend=backend).value_and_grad
        value, grad = vg(x)
    assert np.shape(value) == shape  # the value keeps its shape
    np.testing.assert_allclose(np.reshape(value, ()), scalar(x), rtol=1e-12)
    np.testing.assert_allclose(grad, fa.grad(scalar)(x), rtol=1e-12)
    np.testing.assert_allclose(grad, _fd_grad(scalar, x), rtol=1e-6, atol=1e-8)


def test_outputs_of_more_than_one_element_are_refused():
    with pytest.raises(TypeError, match="scalar output"):
        fa.grad(lambda x: x[:2] * 2.0)(np.ones(3))


# -- random draws in a compiled function ------------------------------------------------
_RNG = np.random.default_rng(0)
_LEGACY = np.random.RandomState(0)


def _draw_global_generator(x):
    return fnp.sum(x * _RNG.standard_normal(x.shape))


def _draw_legacy_module(x):
    return fnp.sum(x * np.random.normal(size=x.shape))


def _draw_random_state(x):
    return fnp.sum(x * _LEGACY.uniform(size=x.shape))


def _closure_drawer():
    rng = np.random.default_rng(1)
    return lambda x: fnp.sum(x * rng.standard_normal(x.shape))


def _default_drawer(x, rng=np.random.default_rng(2)):
    return fnp.sum(x * rng.standard_normal(x.shape))


def _fresh_generator(x):  # seeded from the operating system's entropy at each call
    return fnp.sum(x * np.random.default_rng().standard_normal(x.shape))


def _fresh_bit_generator(x):
    return fnp.sum(x * np.random.Generator(np.random.PCG64()).uniform(size=x.shape))


def _fresh_random_state(x):
    return fnp.sum(x * np.random.RandomState().normal(size=x.shape))


@pytest.mark.parametrize("fn", [_draw_global_generator, _draw_legacy_module, _draw_random_state,
                                _closure_drawer(), _default_drawer,
                                functools.partial(_default_drawer), _fresh_generator,
                                _fresh_bit_generator, _fresh_random_state],
                         ids=["global-generator", "np.random", "RandomState", "closure",
                              "default", "partial", "fresh-generator", "fresh-bit-generator",
                              "fresh-RandomState"])
@pytest.mark.parametrize("entry", ["jit", "compile", "value_and_grad"])
def test_random_draws_while_tracing_for_compilation_are_refused(fn, entry):
    """A compiled function would repeat the trace's draw on every call: refused at
    trace time, naming the fix; the eager gradient draws afresh."""
    x = np.ones(3)
    compiled = {"jit": lambda: fa.jit(fn)(x), "compile": lambda: fa.compile(fn)(x),
                "value_and_grad": lambda: fa.compile(fn).value_and_grad(x)}[entry]
    with pytest.raises(fa.TracingError, match="random numbers.*argument"):
        compiled()
    assert not np.array_equal(fa.grad(fn)(x), fa.grad(fn)(x))


def _unused_global_draw(x):  # autograd's tests draw values they never use
    np.random.randn(3, 2)
    return fnp.sum(fnp.sin(x) ** 2)


def _unused_closure_draw():
    rng = np.random.default_rng(3)
    return lambda x: fnp.sum(x * x[0]) + 0.0 * float(rng.uniform() > 2.0)


@pytest.mark.parametrize("fn", [_unused_global_draw, _unused_closure_draw()],
                         ids=["global-generator", "closure"])
@pytest.mark.parametrize("entry", ["jit", "compile"])
def test_random_draws_that_do_not_reach_the_results_compile(fn, entry):
    """Draws whose values never reach the results (two eager runs agree) make
    no stale result: such a function compiles, and equals the eager one."""
    x = np.linspace(0.1, 0.7, 3)
    compiled = {"jit": fa.jit(fn), "compile": fa.compile(fn)}[entry]
    want = {"jit": fn, "compile": fa.grad(fn)}[entry]
    for _ in range(2):
        np.testing.assert_allclose(compiled(x), want(x), rtol=1e-13)


def test_fresh_generators_of_other_threads_are_not_the_traces():
    """Another thread seeding generators from fresh entropy while a function
    is traced does not make that trace refused."""
    import threading
    stop = threading.Event()

    def seed_forever():
        while not stop.is_set():
            np.random.default_rng()
    other = threading.Thread(target=seed_forever)
    other.start()
    try:
        for k in range(20):
            f = fa.jit(lambda x, k=k: fnp.sum(fnp.sin(x) * k))
            assert f(np.ones(3)) == pytest.approx(3 * np.sin(1.0) * k)
    finally:
        stop.set()
        other.join()


_SEEDED_INSIDE = {  # generators made inside the function from a seed (the same each call)
    "default_rng(seed)": lambda: np.random.default_rng(7).standard_normal(4),
    # RandomState(seed) seeds its MT19937 from fresh entropy first, then from the seed
    "RandomState(seed)": lambda: np.random.RandomState(7).normal(size=4),
    "Generator(PCG64(seed))": lambda: np.random.Generator(np.random.PCG64(7)).uniform(size=4),
    # a fresh generator whose draws never reach the results
    "unused fresh": lambda: (np.random.default_rng(), np.ones(4))[1],
}


@pytest.mark.parametrize("name", sorted(_SEEDED_INSIDE))
def test_a_generator_seeded_inside_the_function_compiles(name):
    draw = _SEEDED_INSIDE[name]

    def f(x):
        return fnp.sum(fnp.sin(x) * draw())

    x = np.linspace(0.1, 1.0, 4)
    for backend in COMPILED:
        g = fa.compile(f, backend=backend)
        for scale in (1.0, 2.0):
            np.testing.assert_allclose(g(x * scale), fa.grad(f)(x * scale), rtol=1e-12)


# -- autograd's and JAX's other names for the transforms --------------------------------
def test_autograd_differential_operators_match_autograd():
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    x = np.linspace(0.1, 1.3, 5)
    v = np.random.default_rng(3).standard_normal(5)

    def vector(xp):
        return lambda x: xp.sin(x) * x ** 2 + xp.cumsum(x)

    def scalar(xp):
        return lambda x: xp.sum(xp.tanh(x) ** 2) + xp.prod(x[:3])

    def pair(xp):
        return lambda x: (xp.sum(x ** 3), {"mean": xp.mean(x)})

    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)  # noqa: E731
    close(fa.elementwise_grad(vector(fnp))(x), autograd.elementwise_grad(vector(anp))(x))
    close(fa.hessian_vector_product(scalar(fnp))(x, v),
          autograd.hessian_vector_product(scalar(anp))(x, v))
    close(fa.hessian_tensor_product(scalar(fnp))(x, v),
          autograd.hessian_tensor_product(scalar(anp))(x, v))
    close(fa.vector_jacobian_product(vector(fnp))(x, v),
          autograd.vector_jacobian_product(vector(anp))(x, v))
    close(fa.tensor_jacobian_product(vector(fnp))(x, v),
          autograd.tensor_jacobian_product(vector(anp))(x, v))
    (vjp_fn, ans), (avjp, aans) = fa.make_vjp(vector(fnp))(x), autograd.make_vjp(vector(anp))(x)
    close(ans, aans)
    close(vjp_fn(v), avjp(v))
    close(fa.make_jvp(vector(fnp))(x)(v)[1], autograd.make_jvp(vector(anp))(x)(v)[1])
    (hvp_fn, g), (ahvp, ag) = fa.make_hvp(scalar(fnp))(x), autograd.make_hvp(scalar(anp))(x)
    close(g, ag)
    close(hvp_fn(v), ahvp(v))
    (g, aux), (ag, _) = fa.grad_and_aux(pair(fnp))(x), autograd.grad_and_aux(pair(anp))(x)
    close(g, ag)
    close(aux["mean"], np.mean(x))  # (autograd's aux comes back boxed; fastad's is a value)
    close(fa.checkpoint(scalar(fnp))(x), scalar(np)(x))
    close(fa.grad(fa.checkpoint(scalar(fnp)))(x), autograd.grad(autograd.checkpoint(scalar(anp)))(x))


def test_named_gradients_and_jax_jacobians_and_linearize():
    x = np.linspace(0.2, 1.0, 4)
    v = np.random.default_rng(4).standard_normal(4)

    def f(a, b=2.0):
        return fnp.sum(fnp.sin(a) * b) + b ** 3

    eps = 1e-6
    fd_b = (f(x, 3.0 + eps) - f(x, 3.0 - eps)) / (2 * eps)
    np.testing.assert_allclose(fa.grad_named(f, "b")(x, 3.0), fd_b, rtol=1e-7)
    both = fa.multigrad_dict(f)(x, 3.0)
    assert set(both) == {"a", "b"}
    np.testing.assert_allclose(both["a"], 3.0 * np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(both["b"], fd_b, rtol=1e-7)

    def g(x):
        return fnp.sin(x) * fnp.cumsum(x)

    np.testing.assert_allclose(fa.jacfwd(g)(x), fa.jacobian(g)(x), rtol=1e-12)
    np.testing.assert_allclose(fa.jacrev(g)(x), fa.jacobian(g)(x), rtol=1e-12)
    out, g_jvp = fa.linearize(g, x)
    np.testing.assert_allclose(out, g(x), rtol=1e-12)
    fd = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(g_jvp(v), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", range(8))
def test_jacrev_blocks_have_their_inputs_dtypes_and_jacfwd_their_outputs(seed):
    """As JAX's: jacrev's rows are cotangents of the inputs (the input leaf's
    float dtype), jacfwd's columns tangents of the outputs; values alike."""
    rng = np.random.default_rng(seed)
    dtypes = [np.dtype(rng.choice(["float32", "float64"])) for _ in range(3)]
    up = np.dtype(rng.choice(["float32", "float64"]))
    sizes = rng.integers(1, 4, 3)
    params = {"u": rng.uniform(0.5, 1.5, sizes[0]).astype(dtypes[0]),
              "v": (rng.uniform(0.5, 1.5, sizes[1]).astype(dtypes[1]),
                    rng.uniform(0.5, 1.5, sizes[2]).astype(dtypes[2]))}

    def f(p):
        u, (v, w) = p["u"], p["v"]
        s = fnp.sum(fnp.sin(u.astype(up))) * fnp.sum(v * v) + fnp.sum(fnp.exp(w))
        return {"a": fnp.cos(v) * s, "b": (u * 2.0).astype(up) + fnp.sum(w)}

    out_dtypes = {k: np.result_type(v) for k, v in f(params).items()}
    tol = 1e-5 if np.float32 in dtypes + [up] else 1e-12
    for jac in (fa.jacrev(f), fa.jit(fa.jacrev(f))):
        rev = jac(params)
        fwd = fa.jacfwd(f)(params)
        for k in ("a", "b"):
            for leaf, want, fleaf in zip(fa.tree_util.tree_leaves(rev[k]), dtypes,
                                         fa.tree_util.tree_leaves(fwd[k])):
                assert leaf.dtype == want
                assert fleaf.dtype == out_dtypes[k]
                np.testing.assert_allclose(leaf, fleaf, rtol=tol, atol=tol)


# -- jax.lax's selections, eval_shape, tree_util, vmap's in_axes as a pytree ----------------
def _piecewise(w, x):
    """cond on a traced predicate and switch on a traced index: Python control flow."""
    y = fa.cond(fnp.sum(w) > 0, lambda a: fnp.sin(a) * x, lambda a: a ** 2 - x, w)
    k = fnp.argmax(w)  # an integer computed from the values: switch clamps it
    return fnp.sum(fa.switch(k, [lambda a: a * 2.0, lambda a: fnp.exp(a), lambda a: a ** 3],
                             y))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend", COMPILED)
def test_cond_and_switch_follow_their_values(seed, backend):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=3)
    f = functools.partial(_piecewise, x=X)
    eager = fa.grad(f)(w)
    np.testing.assert_allclose(eager, _fd_grad(f, w), rtol=1e-6, atol=1e-8)
    compiled = fa.compile(f, backend=backend)
    for v in (w, -w, rng.normal(size=3)):  # outcomes that change: guards retrace
        np.testing.assert_allclose(compiled(v), fa.grad(f)(v), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fa.jit(f, backend=backend)(v), f(v), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # examples take different branches: one at a time
        batch = rng.normal(size=(4, 3))
        np.testing.assert_allclose(fa.vmap(fa.grad(f))(batch),
                                   np.stack([fa.grad(f)(b) for b in batch]), rtol=1e-12)


def test_switch_clamps_and_cond_takes_operands():
    branches = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b]
    assert [fa.switch(i, branches, 3.0, 2.0) for i in (-4, 0, 1, 2, 9)] == [5.0, 5.0, 1.0, 6.0,
                                                                         6.0]
    assert fa.cond(False, lambda a, b: a, lambda a, b: b, 1.0, 2.0) == 2.0
    with pytest.raises(ValueError):
        fa.switch(0, [], 1.0)


def test_eval_shape_and_tree_util():
    out = fa.eval_shape(lambda a, n: {"s": fnp.sum(a ** n), "v": (a[:2].astype(np.float32),)},
                        np.ones(4), 3)
    assert out == {"s": fa.ShapeDtypeStruct((), np.float64),
                   "v": (fa.ShapeDtypeStruct((2,), np.float32),)}
    # arguments given as ShapeDtypeStructs, as jax.eval_shape takes them
    spec = {"x": fa.ShapeDtypeStruct((3, 4), np.float32), "k": fa.ShapeDtypeStruct((), np.int64)}
    out = fa.eval_shape(lambda p, w: (p["x"] @ w * p["k"], fnp.log(w).sum()), spec,
                        w=fa.ShapeDtypeStruct((4, 2), np.float32))
    # NumPy's promotion: float32 times an int64 array is float64
    assert out == (fa.ShapeDtypeStruct((3, 2), np.float64), fa.ShapeDtypeStruct((), np.float32))
    tree = {"b": [np.ones(2), (3.0, None)], "a": np.zeros(3)}
    leaves, treedef = fa.tree_util.tree_flatten(tree)
    assert len(leaves) == 3 and fa.tree_util.tree_structure(tree) == treedef
    doubled = fa.tree_map(lambda u, v: u + v, tree, tree)
    np.testing.assert_array_equal(doubled["b"][0], 2 * np.ones(2))
    assert doubled["b"][1] == (6.0, None)
    assert fa.tree_util.tree_unflatten(treedef, leaves)["b"][1][0] == 3.0
    assert fa.tree_util.tree_reduce(lambda u, v: u + np.sum(v), tree, 0.0) == 5.0
    with pytest.raises(ValueError, match="structures"):
        fa.tree_map(lambda u, v: u, tree, {"a": 1.0})


@pytest.mark.parametrize("backend", COMPILED)
def test_vmap_in_axes_as_a_prefix_of_the_argument(backend):
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
    xs = rng.normal(size=(5, 3))

    def loss(p, x):
        return fnp.sum(fnp.tanh(p["w"] * x + p["b"]) ** 2)

    per = fa.vmap(fa.grad(loss), in_axes=({"w": 0, "b": None}, 0))
    want = [fa.grad(loss)({"w": params["w"][k], "b": params["b"]}, xs[k]) for k in range(5)]
    got = per(params, xs)
    np.testing.assert_allclose(got["w"], np.stack([g["w"] for g in want]), rtol=1e-12)
    np.testing.assert_allclose(got["b"], np.stack([g["b"] for g in want]), rtol=1e-12)
    jitted = fa.jit(per, backend=backend)(params, xs)
    np.testing.assert_allclose(jitted["b"], got["b"], rtol=1e-12)
    total = fa.grad(lambda p: fnp.sum(fa.vmap(loss, in_axes=({"w": 0, "b": None}, 0))(p, xs)))
    g = total(params)
    np.testing.assert_allclose(g["b"], _fd_grad(lambda b: float(np.sum(
        [loss({"w": params["w"][k], "b": b}, xs[k]) for k in range(5)])), params["b"]),
        rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="prefix"):
        fa.vmap(loss, in_axes=({"w": 0}, 0))(params, xs)


def test_remat_and_stop_gradient_are_jaxs():
    f = fa.remat(lambda a: fnp.sum(fnp.sin(a) * fa.stop_gradient(a)))
    np.testing.assert_allclose(fa.grad(f)(W), np.cos(W) * W, rtol=1e-14)


# -- x.at[idx].<update>(v): JAX's functional index updates -------------------------------
_AT_UPDATES = {  # fastad's spelling, and NumPy's on a copy
    "set": (lambda y, i, v, kw: y.at[i].set(v, **kw), lambda y, i, v: y.__setitem__(i, v)),
    "add": (lambda y, i, v, kw: y.at[i].add(v, **kw), lambda y, i, v: np.add.at(y, i, v)),
    "multiply": (lambda y, i, v, kw: y.at[i].multiply(v, **kw),
                 lambda y, i, v: np.multiply.at(y, i, v)),
    "divide": (lambda y, i, v, kw: y.at[i].divide(v, **kw), lambda y, i, v: np.divide.at(y, i, v)),
    "min": (lambda y, i, v, kw: y.at[i].min(v, **kw), lambda y, i, v: np.minimum.at(y, i, v)),
    "max": (lambda y, i, v, kw: y.at[i].max(v, **kw), lambda y, i, v: np.maximum.at(y, i, v)),
    "apply": (lambda y, i, v, kw: y.at[i].apply(np.sin, **kw),
              lambda y, i, v: y.__setitem__(i, np.sin(y[i]))),
    "get": (lambda y, i, v, kw: y + 0.5 * y.at[i].get(fill_value=0.25, **kw).sum(),
            None),
}
_N = 5


def _index(mode):
    """An index into a vector of _N: an int, an integer array (repeats
    included) or a slice; out of bounds too where a mode says what happens."""
    from hypothesis import strategies as st
    lo, hi = (-2 * _N, 2 * _N) if mode in ("clip", "drop") else (-_N, _N - 1)
    return st.one_of(st.integers(lo, hi),
                     st.lists(st.integers(lo, hi), min_size=1, max_size=4).map(np.array),
                     st.tuples(st.integers(0, _N - 1), st.integers(0, _N)).map(
                         lambda t: slice(min(t), max(t) + 1)))


def _in_bounds(index, mode, wrap):
    """NumPy's index (an int as a 1-element array) doing what JAX's ``mode``
    does with out-of-bounds entries: clamped ("clip") or left out ("drop");
    and which entries were kept."""
    if isinstance(index, slice):
        return index, slice(None)
    i = np.atleast_1d(index)
    i = np.where(i < 0, i + _N, i) if wrap or mode is None else i
    if mode == "clip":
        return np.clip(i, 0, _N - 1), slice(None)
    kept = (i >= 0) & (i < _N)
    return i[kept], kept


def _at_program(updates):
    def apply(x, fastad_spelling, *data_indices):
        """(``data_indices``: the array indices, in order, as the function's
        arguments: integer data of a compiled function)"""
        y = x * 1.0
        given = iter(data_indices)
        for name, index, scale, mode, wrap in updates:
            if isinstance(index, np.ndarray) and data_indices:
                index = next(given)
            ours, numpy_s = _AT_UPDATES[name]
            kw = {} if mode is None else {"mode": mode, "wrap_negative_indices": wrap}
            count = np.arange(_N)[index].size if isinstance(index, slice) else np.size(index)
            # a value of the indexed shape (or a scalar), made from x: its derivative counts
            v = scale * (x[0] + 1.5) if np.ndim(index) == 0 else scale * (x[:count] + 1.5)
            if fastad_spelling:
                y = ours(y, index, v, kw)
                continue
            where, kept = _in_bounds(index, mode, wrap)
            if name == "get":  # dropped entries read the fill value
                got = np.full(count, 0.25)
                got[kept] = y[where]
                y = y + 0.5 * got.sum()
            else:
                y = y.copy()
                numpy_s(y, where, v if np.ndim(v) == 0 else v[kept])
        return np.sum(np.tanh(y) * x)
    return apply


def _updates_strategy():
    from hypothesis import strategies as st
    one = st.sampled_from([None, "clip", "drop"]).flatmap(lambda mode: st.tuples(
        st.sampled_from(sorted(_AT_UPDATES)), _index(mode), st.floats(0.5, 2.0),
        st.just(mode), st.booleans()))
    return st.lists(one, min_size=1, max_size=4)


def test_at_updates_match_numpy_and_finite_differences():
    """Every update, repeated positions included (set: the last value, as
    NumPy), and JAX's out-of-bounds modes, against NumPy spelling the same."""
    from hypothesis import given, settings

    @settings(max_examples=60, deadline=None)
    @given(updates=_updates_strategy())
    def check(updates):
        prog = _at_program(updates)
        x = np.array([0.3, -0.7, 1.1, 0.4, -0.2])
        ours = lambda x: prog(x, True)  # noqa: E731
        want = prog(x, False)
        value, g = fa.value_and_grad(ours)(x)  # .at is a method of traced arrays
        np.testing.assert_allclose(value, want, rtol=1e-14)
        # (atol: a sum of five terms near 1 that cancels to 0.003 is off by
        # an ulp of the terms in another order, as the VM's fused sums add)
        np.testing.assert_allclose(fa.jit(ours)(x), want, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(g, _fd_grad(lambda z: prog(z, False), x), rtol=1e-5, atol=1e-7)
        for backend in COMPILED:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                np.testing.assert_allclose(fa.compile(ours, backend=backend)(x), g,
                                           rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(x, [0.3, -0.7, 1.1, 0.4, -0.2])  # x itself unchanged
        # the array indices as arguments: integer data, other values in the same trace
        indices = [u[1] for u in updates if isinstance(u[1], np.ndarray)]
        if indices:
            data = fa.jit(fa.value_and_grad(lambda x, *i: prog(x, True, *i)),
                          backend=ONE_COMPILED)
            others = [np.sort(i)[::-1].copy() for i in indices]  # the same bounds, reordered
            for each in (indices, others):
                value, g = fa.value_and_grad(lambda x: prog(x, True, *each))(x)
                got = data(x, *each)
                np.testing.assert_allclose(got[0], value, rtol=1e-14)
                np.testing.assert_allclose(got[1], g, rtol=1e-13, atol=1e-15)
            assert data.cache_info()["traces"] == 1
    check()


def test_at_get_fills_with_jax_defaults_and_refuses_unknown_modes():
    x = np.arange(3.0)
    got = fa.jit(lambda x: x.at[np.array([0, 3, -4])].get(mode="fill"))(x)
    np.testing.assert_array_equal(got, [0.0, np.nan, np.nan])
    assert fa.jit(lambda x: x.at[1].get(mode="fill", fill_value=-1.0))(x) == 1.0
    with pytest.raises(IndexError):
        fa.grad(lambda x: np.sum(x.at[5].add(1.0)))(x)
    with pytest.raises(ValueError, match="mode must be"):
        fa.grad(lambda x: np.sum(x.at[1].add(1.0, mode="wrap")))(x)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fa.grad(lambda x: np.sum(x.at[1].add(1.0, wrap=True)))(x)
    assert fa.grad(lambda x: x.at[1].get(unique_indices=True))(x).tolist() == [0.0, 1.0, 0.0]


# -- Jacobians and Hessians of pytrees, as jax.jacrev/jacfwd/hessian give them --------------
def _tree_strategy():
    from hypothesis import strategies as st
    leaf = st.sampled_from([(), (2,), (3,), (2, 2)])
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from("abc"), inner, min_size=1, max_size=3)), max_leaves=4)


def _tree_of(shapes_tree, rng):
    return fa.tree_map(lambda s: rng.uniform(0.5, 1.5, s) if s else float(rng.uniform(0.5, 1.5)),
                       shapes_tree, is_leaf=lambda s: isinstance(s, tuple) and all(
                           isinstance(n, int) for n in s))


def test_jacobians_of_pytrees_are_jaxs_structure():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from fastad.core import pytree

    @settings(max_examples=25, deadline=None)
    @given(arg=_tree_strategy(), out_kind=st.sampled_from(["array", "tuple", "dict"]),
           mode=st.sampled_from(["rev", "fwd"]), seed=st.integers(0, 99))
    def check(arg, out_kind, mode, seed):
        rng = np.random.default_rng(seed)
        p = _tree_of(arg, rng)
        vec, unflatten = fa.flatten(p)

        def f(p):
            v, _ = fa.flatten(p)
            a, b = np.sin(v) * v[0], np.sum(v ** 2)
            return a if out_kind == "array" else (a, b) if out_kind == "tuple" else {"a": a, "b": b}

        def flat(v):
            out = f(unflatten(v))
            return fa.flatten(out)[0]
        jac = fa.jacobian(f, mode=mode)(p)
        dense = central_difference_jacobian(flat, vec)
        out_leaves, out_tree = pytree.flatten(f(p))
        jac_leaves, jac_tree = pytree.flatten(jac)
        assert jac_tree == pytree.flatten(pytree.unflatten(out_tree, [p] * len(out_leaves)))[1]
        in_leaves = pytree.flatten(p)[0]
        row = 0
        blocks = iter(jac_leaves)
        for out in out_leaves:
            m, col = np.size(out), 0
            for leaf in in_leaves:
                block = next(blocks)
                assert np.shape(block) == np.shape(out) + np.shape(leaf)
                np.testing.assert_allclose(np.reshape(block, (m, np.size(leaf))),
                                           dense[row:row + m, col:col + np.size(leaf)],
                                           rtol=1e-6, atol=1e-8)
                col += np.size(leaf)
            row += m
    check()


def test_hessians_and_tuple_argnums_nest_like_jax():
    x, y = np.array([0.3, -0.4, 1.2]), np.array([1.1, 0.7, -0.5])

    def f(a, b):
        return np.sum(a ** 2 * b) + a[0] * np.sin(b[1])
    H = fa.hessian(f, argnums=(0, 1))(x, y)
    dense = fa.hessian(lambda z: f(z[:3], z[3:]))(np.concatenate([x, y]))
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(H[i][j], dense[3 * i:3 * i + 3, 3 * j:3 * j + 3],
                                       rtol=1e-13)
    J = fa.jacrev(lambda a, b: a * b, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(J[0], np.diag(y))
    np.testing.assert_allclose(J[1], np.diag(x))
    p = {"w": x, "s": 2.0}
    Hp = fa.hessian(lambda p: np.sum(p["w"] ** 3) * p["s"])(p)
    np.testing.assert_allclose(Hp["w"]["w"], np.diag(6 * x * 2.0))
    np.testing.assert_allclose(Hp["w"]["s"], 3 * x ** 2)
    assert np.shape(Hp["s"]["s"]) == ()
    np.testing.assert_allclose(fa.jit(fa.jacfwd(lambda p: p["w"] * p["s"]))(p)["s"], x)


def test_lax_names_run_jax_style_code():
    """``from fastad import lax`` for ``from jax import lax``: loops, map,
    select, slices at traced starts (clamped as JAX clamps them) and the
    elementwise names, against the NumPy loop and central differences,
    eager and compiled."""
    from fastad import lax
    x = np.linspace(0.5, 3.0, 6)

    def f(x):
        def body(i, c):
            w = lax.dynamic_slice(x, (i + 2,), (3,))  # clamped at the end, as in JAX
            return c + lax.logistic(np.sum(w * c)) + lax.rsqrt(lax.integer_pow(w[0], 2) + 1.0)
        c = lax.fori_loop(0, 4, body, 0.1)
        m = lax.map(lambda r: np.sum(r ** 2), x.reshape(3, 2))
        u = lax.dynamic_update_slice(x, m * c, (5,))
        return (np.sum(lax.select(u > 3, u, -u)) + lax.dynamic_index_in_dim(x, 2, keepdims=False)
                + lax.clamp(0.0, c, 2.0))

    def python(x):
        c = 0.1
        for i in range(4):
            start = min(i + 2, 3)
            w = x[start:start + 3]
            c = c + 1 / (1 + np.exp(-np.sum(w * c))) + 1 / np.sqrt(w[0] ** 2 + 1)
        m = np.sum(x.reshape(3, 2) ** 2, axis=1)
        u = x.copy()
        u[3:6] = m * c
        return np.sum(np.where(u > 3, u, -u)) + x[2] + np.clip(c, 0.0, 2.0)
    np.testing.assert_allclose(f(x), python(x), rtol=1e-14)
    g = fa.grad(f)(x)
    np.testing.assert_allclose(g, _fd_grad(python, x), rtol=1e-6, atol=1e-8)
    for backend in COMPILED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_allclose(fa.compile(f, backend=backend)(x), g, rtol=1e-13)


@pytest.mark.parametrize("jac", [fa.jacfwd, fa.jacrev])
def test_jacfwd_and_jacrev_take_jaxs_options(jac):
    """has_aux (the result is (jacobian, aux)), holomorphic (complex inputs,
    the complex derivative; real ones refused), eager and jitted."""
    x = np.array([0.5, 1.5, -0.3])
    f = lambda x: (fnp.sin(x) * x[0], {"total": fnp.sum(x ** 2)})  # noqa: E731
    for call in (jac(f, has_aux=True), fa.jit(jac(f, has_aux=True))):
        got, aux = call(x)
        np.testing.assert_allclose(got, central_difference_jacobian(lambda v: f(v)[0], x),
                                   rtol=1e-6, atol=1e-8)
        assert aux["total"] == pytest.approx(np.sum(x ** 2))
    z = np.array([1.0 + 1.0j, 2.0 - 0.5j])
    got = jac(lambda z: z ** 2 * fnp.exp(z), holomorphic=True)(z)
    np.testing.assert_allclose(got, np.diag(2 * z * np.exp(z) + z ** 2 * np.exp(z)), rtol=1e-13)
    with pytest.raises(TypeError, match="complex inputs"):
        jac(fnp.sin, holomorphic=True)(x)


def test_checkpoint_options_and_device_helpers():
    x = np.array([0.5, 1.5])
    g = fa.grad(fa.checkpoint(lambda a: fnp.sum(fnp.sin(a)), prevent_cse=False, policy=None))(x)
    np.testing.assert_allclose(g, np.cos(x))
    assert fa.block_until_ready(x) is x
    put = fa.device_put({"a": [1.0, x]})
    assert isinstance(put["a"][0], np.ndarray) and put["a"][1] is not None
    np.testing.assert_array_equal(fa.device_get(put)["a"][1], x)
