"""Integer and boolean data through transforms of compiled functions:
``vmap(jit(f))``, ``jit(vmap(f))``, ``vmap(compile(f))``, ``vmap(jit(grad(f)))``
and ``vmap(grad(jit(f)))`` give the values and dtypes eager ``vmap`` and
NumPy (one example at a time) give, for integer and boolean operations of
every integer dtype and any in_axes; integer results of compiled gradients
(an aux's argmax, argsort, casts) keep their dtype; ``g.batch`` takes
integer labels and boolean masks."""
import warnings

import numpy as onp
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as np
from conftest import BACKENDS

COMPILED = [b for b in ("c", "numba") if b in BACKENDS]  # the compiled backends this run has

# (name, f(x, k)) with x a float vector of 4 and k an integer (or boolean)
# vector of 4 or a scalar: NumPy's operations only integers have, integer
# arithmetic, float functions of integers (NumPy's float16/float32 for small
# ones), comparisons, gathers and masks
OPS = {
    "and": lambda x, k: k & 1,
    "or": lambda x, k: k | 4,
    "xor": lambda x, k: k ^ 3,
    "invert": lambda x, k: ~k,
    "shift": lambda x, k: k << 1,
    "mul": lambda x, k: k * 2,
    "add": lambda x, k: k + 3,
    "mod": lambda x, k: k % 3,
    "floordiv": lambda x, k: k // 2,
    "maximum": lambda x, k: np.maximum(k, 2),
    "abs": lambda x, k: np.abs(k),
    "exp": lambda x, k: np.exp(k),
    "sqrt": lambda x, k: np.sqrt(np.abs(k)),
    "sin_plus": lambda x, k: np.sin(k) + np.cos(k),
    "truediv": lambda x, k: k / 3,
    "equal": lambda x, k: k == 2,
    "gather": lambda x, k: x[k % 4],
    "where": lambda x, k: np.where(k > 1, x, 0.0),
    "sum": lambda x, k: np.sum(k),
    "scale": lambda x, k: x * k,
    "scale32": lambda x, k: x.astype(np.float32) * k,
}

DTYPES = [onp.int8, onp.uint8, onp.int16, onp.uint16, onp.int32, onp.int64, onp.bool_]
BATCH = 3


def _numpy_loop(f, x, k, x_axis, k_axis):
    """f on each example with NumPy's own arrays, stacked: the reference."""
    outs = []
    for i in range(BATCH):
        xi = x if x_axis is None else onp.take(x, i, axis=x_axis)
        ki = k if k_axis is None else onp.take(k, i, axis=k_axis)
        outs.append(onp.asarray(f(xi, ki)))
    return onp.stack(outs)


def _same(got, want, what):
    """The same dtype and shape; integers the same values, floats to a few
    ulps (Numba's float32 sin, exp, sqrt are libm's, NumPy's its own loops)."""
    got, want = onp.asarray(got), onp.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    _close(got, want, what)


def _close(got, want, what=""):
    got, want = onp.asarray(got), onp.asarray(want)
    if want.dtype.kind in "fc":
        eps = 4 * onp.finfo(want.dtype).eps
        onp.testing.assert_allclose(got, want, rtol=eps, atol=eps, err_msg=what)
    else:
        onp.testing.assert_array_equal(got, want, err_msg=what)


@st.composite
def _cases(draw):
    name = draw(st.sampled_from(sorted(OPS)))
    dtype = draw(st.sampled_from(DTYPES))
    x_axis = draw(st.sampled_from([0, None]))
    k_axis = draw(st.sampled_from([0, 1, None] if x_axis is not None else [0, 1]))
    scalar_k = k_axis is None and draw(st.booleans())
    info_low = 0 if dtype in (onp.uint8, onp.uint16, onp.bool_) else -3
    shape = () if scalar_k else (4,)
    if k_axis == 0:
        shape = (BATCH,) + shape
    elif k_axis == 1:
        shape = (4, BATCH)
    values = draw(st.lists(st.integers(info_low, 7), min_size=int(onp.prod(shape)),
                           max_size=int(onp.prod(shape))))
    k = onp.array(values).reshape(shape)
    k = (k % 2 == 1) if dtype is onp.bool_ else k.astype(dtype)
    if scalar_k and draw(st.booleans()):
        k = int(k) if dtype is not onp.bool_ else k  # a Python int, unbatched
    x_shape = (BATCH, 4) if x_axis == 0 else (4,)
    x = onp.asarray(draw(st.lists(st.floats(-2, 2), min_size=int(onp.prod(x_shape)),
                                  max_size=int(onp.prod(x_shape))))).reshape(x_shape)
    return name, dtype, x, k, x_axis, k_axis


def _eager_reference(f, x, k, axes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fa.vmap(f, in_axes=axes)(x, k)
    except (TypeError, ValueError, IndexError):  # an operation NumPy refuses for this dtype
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases(), st.sampled_from(["vmap(jit)", "jit(vmap)"]))
def test_integer_operations_batched_through_compiled_functions(case, transform):
    name, dtype, x, k, x_axis, k_axis = case
    f = OPS[name]
    axes = (x_axis, k_axis)
    try:
        with onp.errstate(all="ignore"):
            want = _numpy_loop(f, x, k, x_axis, k_axis)
    except (TypeError, ValueError, IndexError):
        assume(False)
    eager = _eager_reference(f, x, k, axes)
    assert eager is not None
    _same(eager, want, f"eager vmap of {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = (fa.vmap(fa.jit(f), in_axes=axes) if transform == "vmap(jit)"
             else fa.jit(fa.vmap(f, in_axes=axes)))
        _same(g(x, k), want, f"{transform} of {name}")
        _same(g(x, k), want, f"{transform} of {name}, called again")


# float-valued operations of integers, for the losses whose gradients are taken
GRAD_OPS = ["mul", "add", "mod", "exp", "sqrt", "sin_plus", "truediv", "equal", "gather",
            "where", "scale", "and", "invert", "maximum", "scale32"]


def _loss(name):
    op = OPS[name]
    return lambda x, k: np.sum(x * op(x, k) + x ** 2)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases(), st.sampled_from(["vmap(jit(grad))", "vmap(grad(jit))", "vmap(compile)"]))
def test_per_example_gradients_with_integer_data(case, transform):
    name, dtype, x, k, x_axis, k_axis = case
    assume(name in GRAD_OPS)
    loss = _loss(name)
    axes = (x_axis, k_axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with onp.errstate(all="ignore"):
                _numpy_loop(loss, x, k, x_axis, k_axis)
        except (TypeError, ValueError, IndexError):
            assume(False)
        want = fa.vmap(fa.grad(loss), in_axes=axes)(x, k)
        g = {"vmap(jit(grad))": lambda: fa.vmap(fa.jit(fa.grad(loss)), in_axes=axes),
             "vmap(grad(jit))": lambda: fa.vmap(fa.grad(fa.jit(loss)), in_axes=axes),
             "vmap(compile)": lambda: fa.vmap(fa.compile(loss), in_axes=axes)}[transform]()
        got = g(x, k)
    onp.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=transform)
    assert onp.asarray(got).dtype == onp.float64
    # the eager gradient of the first example against central differences
    x0 = x if x_axis is None else x[0]
    k0 = k if k_axis is None else onp.take(k, 0, axis=k_axis)
    # (x in float32: a step float32 resolves; the loss is quadratic in x, so
    # central differences are exact but for rounding)
    h, fd = (1e-2 if name == "scale32" else 1e-6), onp.zeros_like(x0)
    for j in range(x0.size):
        e = onp.zeros_like(x0)
        e[j] = h
        with onp.errstate(all="ignore"):
            fd[j] = (float(loss(x0 + e, k0)) - float(loss(x0 - e, k0))) / (2 * h)
    g0 = onp.asarray(want) if x_axis is None else onp.asarray(want)[0]
    if x_axis is None:  # unbatched x: each example's gradient, stacked
        g0 = g0[0]
    onp.testing.assert_allclose(g0, fd, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", COMPILED)
def test_small_integers_compute_in_numpys_float_precision(backend):
    x = onp.array([1, 2, 3], dtype=onp.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in (x, x.astype(onp.int8), x.astype(onp.int16), onp.array([True, False, True])):
            f = lambda v: np.exp(v) * 2  # noqa: E731
            _same(fa.jit(f, backend=backend)(data), f(data), f"exp of {data.dtype}")
            w = onp.linspace(0.5, 1.5, 3)
            g = lambda w, v: np.sum(w * np.sqrt(v))  # noqa: E731
            _close(fa.compile(g, backend=backend)(w, data), fa.grad(g)(w, data))
            onp.testing.assert_array_equal(fa.grad(g)(w, data), onp.sqrt(data))


def test_unbatched_python_int_under_vmap_of_jit():
    X = onp.stack([onp.arange(1., 5.)] * 2)

    def power(x, n):
        r = 1.0
        for _ in range(n):
            r = r * x
        return r.sum()

    for f, n in [(lambda x, k: x[k] * 2, 2), (power, 3), (lambda x, n: x.sum() * (n & 1), 2),
                 (lambda x, n: x.sum() * (n & 1), 3)]:
        want = fa.vmap(f, in_axes=(0, None))(X, n)
        onp.testing.assert_array_equal(want, [f(x, n) for x in X])
        onp.testing.assert_array_equal(fa.vmap(fa.jit(f), in_axes=(0, None))(X, n), want)


def _aux_loss(w):
    return np.sum(w ** 2), {"pred": np.argmax(w), "order": np.argsort(w),
                            "k": (w * 3).astype(np.int32), "small": (w * 3).astype(np.int8),
                            "count": np.sum(w > 0)}


@pytest.mark.parametrize("transform", ["jit(grad)", "jit(value_and_grad)", "vmap(grad)",
                                       "vmap(jit(grad))"]
                         + [f"compile {b}" for b in COMPILED])
def test_integer_aux_of_compiled_gradients_keeps_its_dtype(transform):
    x = onp.array([0.3, -1.2, 2.0])
    _, want = fa.grad(_aux_loss, has_aux=True)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if transform.startswith("vmap"):
            xs = onp.stack([x, -x])
            inner = fa.grad(_aux_loss, has_aux=True)
            g = fa.vmap(fa.jit(inner) if "jit" in transform else inner)
            _, got = g(xs)
            for key in want:
                _same(got[key][0], want[key], f"{transform} aux {key}")
            return
        if transform == "jit(grad)":
            got = fa.jit(fa.grad(_aux_loss, has_aux=True))(x)[1]
        elif transform == "jit(value_and_grad)":
            got = fa.jit(fa.value_and_grad(_aux_loss, has_aux=True))(x)[0][1]
        else:  # "compile <backend>"
            got = fa.compile(_aux_loss, has_aux=True, backend=transform.split()[1])(x)[1]
    for key in want:
        _same(got[key], want[key], f"{transform} aux {key}")


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("label_dtype", [onp.int64, onp.int32, onp.uint8])
def test_batch_takes_integer_labels_and_masks(backend, label_dtype):
    rng = onp.random.default_rng(0)
    W, X = rng.normal(size=(3, 4)), rng.normal(size=(20, 3))
    y = rng.integers(0, 4, size=20).astype(label_dtype)

    def xent(W, x, label):
        z = x @ W
        return np.log(np.sum(np.exp(z))) - z[label], np.argmax(z) + label

    want = fa.vmap(fa.grad(xent, has_aux=True), in_axes=(None, 0, 0))(W, X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.compile(xent, has_aux=True, backend=backend).batch(W, X, y, in_axes=(None, 0, 0),
                                                                    chunk=7, threads=2)
    onp.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    _same(got[1], want[1], "aux of g.batch")
    M = onp.stack([y % 2 == 0] * 4, 1)
    masked = lambda W, x, m: np.sum(np.where(m, x @ W, 0.0) ** 2)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.compile(masked, backend=backend).batch(W, X, M, in_axes=(None, 0, 0), chunk=6)
    onp.testing.assert_allclose(got, fa.vmap(fa.grad(masked), in_axes=(None, 0, 0))(W, X, M),
                                rtol=1e-12)



def test_mask_bitwise_with_integers():
    """A mask's &, |, ^ and shifts with integers are NumPy's integers, eager
    under vmap and compiled; of two masks, their logic."""
    k, x = onp.array([[True, False], [False, True], [True, True]]), onp.array([0.5, -1.0])
    ops = (lambda x, k: k & 1, lambda x, k: 3 ^ k, lambda x, k: k << 1, lambda x, k: k >> 1,
           lambda x, k: k | k, lambda x, k: k ^ k, lambda x, k: (x > 0) & k)
    for op in ops:
        want = _numpy_loop(op, x, k, None, 0)
        for g in (fa.vmap(op, in_axes=(None, 0)), fa.vmap(fa.jit(op), in_axes=(None, 0)),
                  fa.jit(fa.vmap(op, in_axes=(None, 0)))):
            _same(g(x, k), want, "mask op")
        _same(fa.jit(lambda m: op(x, m))(k[0]), op(x, k[0]), "jit of a mask op")
