"""fastad.jit and fastad.compile: results, the signature cache, errors, threads."""
import threading
import warnings
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import fastad as fa
from fastad.core import pytree
from conftest import BACKENDS
from helpers import rosenbrock, rosenbrock_loop

rng = np.random.default_rng(1)


def tiny(x):
    return np.sum(np.sin(x) * x ** 2)


def mlp_loss(params, X, labels):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    logits = logits - np.max(logits, axis=1, keepdims=True)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(np.sum(logp * labels, axis=1))


def mlp_args(dtype=np.float64):
    params = tuple(p.astype(dtype) for p in (rng.standard_normal((6, 5)) * 0.3, np.zeros(5),
                                             rng.standard_normal((5, 3)) * 0.3, np.zeros(3)))
    X = rng.standard_normal((4, 6)).astype(dtype)
    labels = np.eye(3, dtype=dtype)[[0, 2, 1, 2]]
    return params, X, labels


CASES = [(rosenbrock_loop, (rng.standard_normal(12),)),
         (rosenbrock, (rng.standard_normal(50),)),
         (tiny, (rng.standard_normal(10),)),
         (mlp_loss, mlp_args())]


def assert_tree_close(a, b, rtol):
    la, ta = pytree.flatten(a)
    lb, tb = pytree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol)


def _like_x_but(x, kind):
    """x in a form the one-array fast path must not hand to compiled code as it is."""
    if kind == "float32":
        return x.astype(np.float32)
    if kind == "strided":
        return np.repeat(x, 2)[::2]
    if kind == "readonly":
        y = x.copy()
        y.flags.writeable = False
        return y
    if kind == "fortran-2d":
        return np.asfortranarray(np.stack([x, 2 * x]))
    if kind == "subclass":
        return x.view(_Sub)
    if kind == "big-endian":
        return x.astype(">f8")
    raise AssertionError(kind)


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("kind", ["float32", "strided", "readonly", "fortran-2d",
                                  "subclass", "big-endian"])
def test_fast_path_sends_other_arrays_to_the_general_path(backend, kind):
    """After a call with a float64 array, g(x), g.value and g.value_and_grad take
    a shortcut for the same array shape; anything else must still give the
    eager result (converted, or traced for a new signature), never a wrong one."""
    x = rng.standard_normal(12)
    f = lambda v: np.sum(np.sin(v) * v ** 2) + np.sum(v[1:] * v[:-1])  # noqa: E731
    g = fa.compile(f, backend=backend)
    g(x)  # the shortcut is now armed for float64[12]
    y = _like_x_but(x, kind)
    ref_value, ref_grad = fa.value_and_grad(f)(np.asarray(y, dtype=np.float64))
    rtol = 1e-5 if kind == "float32" else 1e-12
    np.testing.assert_allclose(g(y), ref_grad, rtol=rtol)
    value, grad = g.value_and_grad(y)
    np.testing.assert_allclose(value, ref_value, rtol=rtol)
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol)
    np.testing.assert_allclose(g.value(y), ref_value, rtol=rtol)
    np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)  # and the shortcut still


@pytest.mark.parametrize("kind", ["float32", "strided", "readonly", "subclass", "big-endian"])
def test_fast_path_with_several_arrays(backend, kind):
    """The shortcut covers calls with several arrays (g(a, b), g.hvp(x, v)):
    any argument that is not exactly what was compiled sends the call to the
    general path."""
    def f(a, b):
        return np.sum(np.sin(a) * b ** 2) + np.sum(a[1:] * b[:-1] ** 3)
    a, b, v = rng.standard_normal(12), rng.standard_normal(12), rng.standard_normal(12)
    g = fa.compile(f, backend=backend)
    np.testing.assert_allclose(g(a, b), fa.grad(f)(a, b), rtol=1e-12)
    other = _like_x_but(b, kind)
    plain = np.asarray(other, dtype=np.float64)
    rtol = 1e-5 if kind == "float32" else 1e-12
    np.testing.assert_allclose(g(a, other), fa.grad(f)(a, plain), rtol=rtol)
    np.testing.assert_allclose(g(a, b), fa.grad(f)(a, b), rtol=1e-12)
    want = fa.hvp(f)(a, b, v)
    for _ in range(2):  # traced, then the shortcut
        np.testing.assert_allclose(g.hvp(a, b, v), want, rtol=1e-10)
    np.testing.assert_allclose(g.hvp(a, b, _like_x_but(v, kind)),
                               fa.hvp(f)(a, b, np.asarray(_like_x_but(v, kind), np.float64)),
                               rtol=max(rtol, 1e-10))


def test_fast_path_refuses_integers_like_the_general_path(backend):
    g = fa.compile(rosenbrock, backend=backend)
    x = rng.standard_normal(12)
    g(x)
    with pytest.raises(TypeError, match="integers have no derivative"):
        g(np.arange(12))


def test_fast_path_results_are_fresh_and_scalars_are_numpy(backend):
    x = rng.standard_normal(12)
    g = fa.compile(rosenbrock, backend=backend)
    first = g(x)
    second = g(x)
    assert first is not second and not np.shares_memory(first, second)
    first[:] = 0
    np.testing.assert_allclose(second, fa.grad(rosenbrock)(x), rtol=1e-12)
    value, _ = g.value_and_grad(x)
    assert isinstance(value, np.float64) and isinstance(g.value(x), np.float64)
    j = fa.jit(fa.value_and_grad(rosenbrock))
    j(x)
    v, gr = j(x)
    np.testing.assert_allclose(v, rosenbrock(x), rtol=1e-12)
    np.testing.assert_allclose(gr, fa.grad(rosenbrock)(x), rtol=1e-12)


@pytest.mark.parametrize("f, args", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_compiled_gradient_matches_eager(backend, f, args):
    g = fa.compile(f, backend=backend)
    value, grad = g.value_and_grad(*args)
    ref_value, ref_grad = fa.value_and_grad(f)(*args)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    assert_tree_close(grad, ref_grad, 1e-10)
    assert_tree_close(g(*args), ref_grad, 1e-10)
    np.testing.assert_allclose(g.value(*args), f(*args), rtol=1e-12)


def test_float32_gradient(backend):
    args = mlp_args(np.float32)
    grad = fa.compile(mlp_loss, backend=backend)(*args)
    ref = fa.grad(mlp_loss)(*args)
    for g, r in zip(grad, ref):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_jit_of_grad_and_of_any_function(backend):
    x = rng.standard_normal(7)
    jg = fa.jit(fa.grad(rosenbrock), backend=backend)
    np.testing.assert_allclose(jg(x), fa.grad(rosenbrock)(x), rtol=1e-12)
    both = fa.jit(lambda x: {"sin": np.sin(x), "sum": np.sum(x ** 3)}, backend=backend)
    out = both(x)
    np.testing.assert_allclose(out["sin"], np.sin(x), rtol=1e-14)
    np.testing.assert_allclose(out["sum"], np.sum(x ** 3), rtol=1e-12)


def test_signature_cache(backend):
    g = fa.compile(rosenbrock, backend=backend)
    x = rng.standard_normal(5)
    g(x)
    g(x + 1.0)
    assert g.cache_info()["traces"] == 1
    g(rng.standard_normal(6))                      # new shape
    assert g.cache_info()["traces"] == 2
    g(x.astype(np.float32))                        # new dtype
    assert g.cache_info()["traces"] == 3
    assert g.cache_info()["signatures"] == 3
    h = fa.compile(lambda p: np.sum(p[0] ** 2) * p[1], backend=backend)
    h((x, 2.0))
    h([x, 2.0])                                    # new structure: a list, not a tuple
    h((x, 3.0))
    assert h.cache_info()["traces"] == 2


def test_integer_arguments_are_data_until_their_value_is_used(backend):
    """An int argument used in arithmetic is data: one trace for every value
    (an optimizer passing its iteration number); one whose value the trace
    needs (a range, an index, a shape) is keyed by value from then on."""
    def power_sum(x, n):
        return np.sum(x ** n) * (1.0 + 0.5 ** (n + 1)) + n * 2 - (3 - n)

    def looped(x, n):
        return sum(x[j] ** 2 for j in range(n)) + np.sum(x[n % 3:]) * n

    x = rng.standard_normal(4)
    g = fa.compile(power_sum, backend=backend)
    for n in (3, 2, 5, np.int64(4), 0, -2, np.int64(-7)):
        np.testing.assert_allclose(g(x, n), fa.grad(power_sum)(x, n), rtol=1e-12)
    # one trace per integer type: a Python int and an np.int64 promote
    # differently in NumPy (as JAX's weak and strong types trace apart)
    assert g.cache_info()["traces"] == 2
    loaded = fa.loads(fa.dumps(g))  # a saved function takes every integer too
    np.testing.assert_allclose(loaded(x, 7), fa.grad(power_sum)(x, 7), rtol=1e-12)
    h = fa.compile(looped, backend=backend)
    for n in (1, 3, 2, 3):
        np.testing.assert_allclose(h(x, n), fa.grad(looped)(x, n), rtol=1e-12)
    assert h.cache_info()["signatures"] == 3


def test_static_argnums_and_pytrees(backend):
    Params = namedtuple("Params", "w b")

    def loss(p, data, scale):
        return scale * np.sum((data["X"] @ p.w + p.b - data["y"]) ** 2)
    g = fa.compile(loss, static_argnums=(2,), backend=backend)
    p = Params(rng.standard_normal(3), 0.5)
    data = {"X": rng.standard_normal((4, 3)), "y": rng.standard_normal(4)}
    grad = g(p, data, 2.0)
    assert isinstance(grad, Params)
    ref = fa.grad(loss)(p, data, 2.0)
    np.testing.assert_allclose(grad.w, ref.w, rtol=1e-12)
    np.testing.assert_allclose(grad.b, ref.b, rtol=1e-12)


def test_closed_over_arrays_are_read_at_each_call(backend):
    a = np.array([1.0, 2.0])
    g = fa.compile(lambda x: np.sum(a * x ** 2), backend=backend)
    x = np.ones(2)
    np.testing.assert_allclose(g(x), 2 * a * x)
    a[:] = 100.0  # read by reference (tests/test_captures.py)
    np.testing.assert_allclose(g(x), [200.0, 200.0])


def test_scipy_minimize_takes_value_and_grad(backend):
    g = fa.compile(rosenbrock, backend=backend)
    res = minimize(g.value_and_grad, np.full(10, -1.0), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})
    assert res.success
    np.testing.assert_allclose(res.x, 1.0, atol=1e-4)
    res2 = fa.minimize(rosenbrock, np.full(10, -1.0), method="Newton-CG", backend=backend,
                       options={"xtol": 1e-10})
    np.testing.assert_allclose(res2.x, 1.0, atol=1e-6)


def test_bad_arguments_raise_clearly(backend):
    g = fa.compile(rosenbrock, backend=backend)
    with pytest.raises(TypeError, match="float64 or float32"):
        g(np.arange(5))
    with pytest.raises(TypeError, match="scalar"):
        fa.compile(lambda x: x * 2, backend=backend)(np.ones(3))
    with pytest.raises(TypeError, match="hashable"):
        fa.compile(lambda x, d: np.sum(x), backend=backend)(np.ones(2), {"a": [1]}.items())


def test_empty_and_special_values(backend):
    g = fa.compile(lambda x: np.sum(x ** 2), backend=backend)
    assert g(np.zeros(0)).shape == (0,)
    out = g(np.array([np.nan, np.inf, 1.0]))
    assert np.isnan(out[0]) and np.isinf(out[1]) and out[2] == 2.0
    x = np.arange(10.0)[::2]                      # non-contiguous
    np.testing.assert_allclose(g(x), 2 * x)
    x.flags.writeable = False                     # read-only
    np.testing.assert_allclose(g(x), 2 * x)


def test_inspection(backend):
    g = fa.compile(tiny, backend=backend)
    with pytest.raises(RuntimeError, match="not been called"):
        g.tape
    g(np.ones(3))
    listing = str(g.tape)
    assert "sin" in listing and "test_compiled.py" in listing
    assert str(g.program)
    info = g.cache_info()
    assert info["traces"] == 1 and info["entries"][0]["guards"] == []


def test_hvp_hessian_jacobian_compiled(backend):
    x = rng.standard_normal(6)
    v = rng.standard_normal(6)
    g = fa.compile(rosenbrock, backend=backend)
    H = fa.hessian(rosenbrock)(x)
    np.testing.assert_allclose(g.hessian(x), H, rtol=1e-10)
    np.testing.assert_allclose(g.hvp(x, v), H @ v, rtol=1e-10)

    def f(x):
        return np.tanh(np.outer(x, x[:3])).ravel()
    for mode in ("fwd", "rev", "auto"):
        J = fa.jit(fa.jacobian(f, mode=mode), backend=backend)(x)
        np.testing.assert_allclose(J, fa.jacobian(f, mode="fwd")(x), rtol=1e-12)


def test_threads_give_serial_results(compiled_backend):
    g = fa.compile(rosenbrock_loop, backend=compiled_backend)
    inputs = [rng.standard_normal(30) for _ in range(8)]
    serial = [g(x) for x in inputs]
    results: dict[int, list] = {}

    calls = 1000 if compiled_backend != "numpy" else 100

    def work(k):
        results[k] = [g(inputs[k]) for _ in range(calls)]
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        for r in results[k]:
            assert np.array_equal(r, serial[k])


def test_minimize_with_a_pytree(backend):
    def f(p):
        return np.sum((p["a"] - 1.0) ** 2) + np.sum((p["b"] + 2.0) ** 2)
    res = fa.minimize(f, {"a": np.zeros((2, 2)), "b": np.zeros(3)}, method="L-BFGS-B",
                      backend=backend)
    np.testing.assert_allclose(res.x["a"], 1.0, atol=1e-5)
    np.testing.assert_allclose(res.x["b"], -2.0, atol=1e-5)


def test_exact_sums_keep_the_traced_summation_order(backend):
    x = rng.standard_normal(200)
    exact = fa.compile(rosenbrock_loop, backend=backend, exact_sums=True)
    assert exact.value(x) == rosenbrock_loop(x)              # bit for bit
    fast = fa.compile(rosenbrock_loop, backend=backend)
    np.testing.assert_allclose(fast.value(x), rosenbrock_loop(x), rtol=1e-13)


def test_gradient_alone_skips_the_value(backend):
    """g(x) runs a program without the value (as jax.grad does): the loss's
    final sum is dead code there.  Its gradients are those of value_and_grad,
    bit for bit, through the shortcut, the general path and a retrace."""
    from helpers import signed_sum_loop
    for f in (rosenbrock, signed_sum_loop):
        g = fa.compile(f, backend=backend)
        x = rng.standard_normal(40)
        g(x)
        assert g._vg.last.built is None  # only the gradient program was built
        for y in (x, x, -x, x[::-1].copy(), x):  # traced, shortcut, new branches, cached
            grad = g(y)
            np.testing.assert_array_equal(grad, g.value_and_grad(y)[1])
            np.testing.assert_allclose(grad, fa.grad(f)(y), rtol=1e-12)
        alone = g._vg.grads_of(g._vg.last).tape
        assert len(alone.instrs) < len(g.tape.instrs)
        if f is rosenbrock:  # (the loop's guards sum their counts)
            assert "sum" in g.tape.stats()["by_primitive"]
            assert "sum" not in alone.stats()["by_primitive"]


_INT_STEPS = [lambda n, k: n + k, lambda n, k: n * k, lambda n, k: k - n, lambda n, k: -n,
              lambda n, k: abs(n), lambda n, k: n - k]
_FLOAT_USES = [lambda x, n: x * n, lambda x, n: x ** 2 * (0.9 ** abs(n)), lambda x, n: x / (n * n + 1),
               lambda x, n: np.sin(x + n)]
_VALUE_USES = [lambda x, n: x[abs(n) % x.size], lambda x, n: np.sum(x[:abs(n) % 3 + 1]),
               lambda x, n: sum(x[j] for j in range(abs(n) % 4))]


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, len(_INT_STEPS) - 1), st.integers(-3, 3)),
                      max_size=4),
       use=st.integers(0, len(_FLOAT_USES) + len(_VALUE_USES) - 1),
       values=st.lists(st.integers(-50, 50), min_size=1, max_size=6))
def test_integer_argument_programs_match_eager(steps, use, values):
    """Random integer arithmetic on an int argument, then a float use (data:
    one trace) or a use of its value (keyed by value): compiled == eager."""
    uses = _FLOAT_USES + _VALUE_USES

    def f(x, n):
        for k, c in steps:
            n = _INT_STEPS[k](n, c)
        return np.sum(uses[use](x, n) * x)

    x = np.linspace(0.3, 1.1, 5)
    g = fa.compile(f, backend="c" if "c" in BACKENDS else "numpy")
    for n in values:
        np.testing.assert_allclose(g(x, n), fa.grad(f)(x, n), rtol=1e-12, atol=1e-12)
    if use < len(_FLOAT_USES):
        assert g.cache_info()["traces"] == 1


@settings(max_examples=15, deadline=None)
@given(dtype=st.sampled_from(["int8", "int32", "int64", "uint16"]),
       scale=st.floats(0.5, 50.0), use=st.sampled_from(["scale", "index", "output"]),
       backend=st.sampled_from([b for b in ("c", "numpy") if b in BACKENDS]))
def test_integers_made_inside_a_compiled_function_equal_the_eager_ones(dtype, scale, use,
                                                                       backend):
    """``astype(x, int)`` of a traced value is integers held in float64
    (`core.int_data`), so every backend runs it, with no fallback warning, and
    the result is the eager one, of its dtype."""
    import fastad.numpy as fnp
    x = np.random.default_rng(7).uniform(-1, 1, 5) * scale

    def f(x):
        k = fnp.astype(np.abs(x) + 1.0, dtype)
        if use == "output":
            return k
        return np.sum(x * k) if use == "scale" else np.sum(x * x) * k[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fa.jit(f, backend=backend)(x)
    want = f(x)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    if use == "output":  # the integers themselves, exactly
        np.testing.assert_array_equal(got, want)
    else:  # a sum in the VM's order
        np.testing.assert_allclose(got, want, rtol=1e-13)
    if use != "output":
        np.testing.assert_allclose(fa.compile(f, backend=backend)(x), fa.grad(f)(x), rtol=1e-12)


@pytest.mark.parametrize("result, kind", [
    (lambda x: (len(x), x.sum()), "int"), (lambda x: (np.int32(4), x * 2), "np.int32"),
    (lambda x: (x.shape[0] * 2, {"s": np.sum(x)}), "int"), (lambda x: (np.arange(3), x), "array")])
def test_constant_integer_results_keep_their_type(result, kind):
    """A result that does not depend on the arguments (``len(x)``) comes back
    as the eager function returns it, a Python int stays an int."""
    x = np.ones(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.jit(result)(x)
    want = result(x)
    assert type(got[0]) is type(want[0])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("result", [lambda x: {"f": len}, lambda x: (x, [object()]),
                                    lambda x: (x, {1, 2})])
def test_results_that_are_not_arrays_or_numbers_are_refused_clearly(result):
    with pytest.raises(TypeError, match="not an array or a number"):
        fa.jit(result)(np.ones(3))


@pytest.mark.parametrize("result", [lambda x: "name", lambda x: (x, x.dtype),
                                    lambda x: {"v": x * 2, "label": b"raw", "kind": float}])
def test_immutable_labels_are_returned_as_traced(result, backend):
    """Strings, bytes, dtypes and classes among the results are held by the
    trace's structure and returned as the eager function returns them."""
    g = fa.jit(result, backend=backend)
    for x in (np.ones(3), np.arange(3.0)):
        got, want = g(x), result(x)
        got_leaves, got_tree = fa.tree_util.tree_flatten(got)
        want_leaves, want_tree = fa.tree_util.tree_flatten(want)
        assert got_tree == want_tree
        for a, b in zip(got_leaves, want_leaves):
            if isinstance(b, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b
    assert g.cache_info()["traces"] == 1


def test_hessp_is_scipys_hessian_vector_product(backend):
    """``g.hessp(x, p, *args)`` is what ``scipy.optimize.minimize`` calls as
    ``hessp``: data arguments after the vector."""
    r = np.random.default_rng(5)
    X, y = r.standard_normal((40, 4)), r.integers(0, 2, 40).astype(float)

    def nll(w, X, y):
        z = X @ w
        return np.sum(np.logaddexp(0.0, z) - y * z) + 0.1 * np.sum(w ** 2)
    g = fa.compile(nll, backend=backend)
    w, p = r.standard_normal(4), r.standard_normal(4)
    np.testing.assert_allclose(g.hessp(w, p, X, y), fa.hessian(nll)(w, X, y) @ p, rtol=1e-12)
    res = minimize(nll, np.zeros(4), args=(X, y), jac=g, hessp=g.hessp, method="Newton-CG")
    assert res.success
    np.testing.assert_allclose(res.x, minimize(nll, np.zeros(4), args=(X, y), jac=g,
                                               method="BFGS").x, atol=1e-4)
