"""Integers computed from traced floats (``astype``, ``floor``/``rint`` then
``astype``, ``digitize``, ``searchsorted``, ``argsort``, ``argmax``) are
integer data (docs/design.md, "Integer arguments are data until their value
is used"): a compiled function using them to index, take, scatter, set,
compare, compute or return equals NumPy and the eager function, in NumPy's
dtypes, and traces once."""
import platform
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

#: the primitive checked here rather than by a Case (its operands are integers
#: held in float64 with their dtypes as parameters): tests/test_primitives.py
ELSEWHERE = {"integer_op": "test_integer_only_operations_of_computed_integers_are_numpys"}

N = 6
BINS = np.array([-2.5, -1.0, 0.5, 2.0])
# points k/8 + 0.05: away from every jump of the routes below by 0.05 or more,
# so that central differences never straddle one
GRID = np.arange(-32, 32) / 8.0 + 0.05


def _floats(x, dtype, scale):
    """x scaled, made nonnegative for an unsigned dtype (NumPy's cast of a
    negative float to one is undefined)."""
    v = x * scale
    return np.abs(v) if np.dtype(dtype).kind == "u" else v


ROUTES = {
    "floor": lambda x, dt: np.floor(_floats(x, dt, 1.5)).astype(dt),
    "method": lambda x, dt: _floats(x, dt, 2.0).astype(dt),
    "fnp_astype": lambda x, dt: fnp.astype(_floats(x, dt, 1.0) - 1.0, dt),
    "rint": lambda x, dt: np.rint(_floats(x, dt, 1.0)).astype(dt),
    "wraps": lambda x, dt: _floats(x, dt, 40.3).astype(dt),  # past int8's range
    "bool": lambda x, dt: (x > 0.5).astype(dt),
    "digitize": lambda x, dt: np.digitize(x, BINS),
    "digitize_decreasing": lambda x, dt: np.digitize(x, BINS[::-1], right=True),
    "searchsorted": lambda x, dt: np.searchsorted(BINS, x, side="right"),
    "argsort": lambda x, dt: np.argsort(x),
    "argsort_top": lambda x, dt: np.argsort(x)[:3],
    "argmax": lambda x, dt: np.argmax(x),
}


def _at(i):
    return np.clip(i, 0, N - 1)


def _like(x, i):
    """As many of x as there are integers i, in i's shape."""
    return x[:np.size(i)].reshape(np.shape(i))


def _add_at(x, i):
    y = np.zeros_like(x)
    np.add.at(y, _at(i), _like(x, i) ** 2)
    return y


def _set(x, i):
    y = np.zeros_like(x) + x[0]
    y[_at(i)] = _like(x, i) * 3.0
    return y


USES = {
    "index": lambda x, i: x[_at(i)] * x[1],
    "take": lambda x, i: np.take(x, _at(i)) ** 2,
    "add_at": _add_at,
    "setitem": _set,
    "compare": lambda x, i: np.where(i > 1, _like(x, i), -_like(x, i)),
    "arithmetic": lambda x, i: _like(x, i) * ((i * 3 + 7) % 5 + i // 2),
    "ufuncs": lambda x, i: x[np.mod(i, N)] * (np.remainder(i + 7, 5) + np.floor_divide(i, 2)),
    "sum": lambda x, i: x * np.sum(i) + np.max(i),
    "bitwise": lambda x, i: _like(x, i) * (((i & 3) ^ 1) + (i >> 1) + (i | 4) - (i << 1)),
    "return": lambda x, i: (np.sum(x), i, np.sum(i), i % 3, np.abs(i)),
    # what the function sees of them: NumPy's dtype, not the float64 they are held in
    "dtype": lambda x, i: x * (i.dtype.itemsize + 10 * (i.dtype.kind == "u")
                               + 100 * (i * 1).dtype.itemsize),
}
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def _program(route, use, dtype):
    return lambda x: USES[use](x, ROUTES[route](x, dtype))


def _leaves(out):
    return out if isinstance(out, tuple) else (out,)


def _same(got, want, rtol=1e-12):
    """Equal values, and NumPy's dtypes (a compiled Python int for a Python int)."""
    for g, w in zip(_leaves(got), _leaves(want)):
        assert np.asarray(g).dtype == np.asarray(w).dtype, (g, w)
        if np.asarray(w).dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)


def _points(seed):
    rng = np.random.default_rng(seed)
    return [rng.choice(GRID, N, replace=False) for _ in range(3)]


def _loss(f):
    """A scalar of f's first result, weighting each element differently."""
    def loss(x):
        first = _leaves(f(x))[0]
        return np.sum(first * np.linspace(0.5, 1.5, np.size(first)).reshape(np.shape(first)))
    return loss


@settings(max_examples=60, deadline=None)
@given(route=st.sampled_from(sorted(ROUTES)), use=st.sampled_from(sorted(USES)),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       backend=st.sampled_from([b for b in ("c", "numpy") if b in BACKENDS]))
def test_computed_integers_compile_once_and_equal_numpy(route, use, dtype, seed, backend):
    f = _program(route, use, dtype)
    points = _points(seed)
    compiled = fa.jit(f, backend=backend)
    for x in points:
        want = f(x)  # NumPy's own
        _same(compiled(x), want)
        _same(fa.vjp(f, x)[0], want)  # eager, traced
    assert compiled.cache_info()["traces"] == 1
    # derivatives: through the integers (piecewise constant) to the floats
    loss, x = _loss(f), points[0]
    grad = fa.grad(loss)(x)
    e, h = np.random.default_rng(seed).normal(size=N), 1e-6
    fd = (loss(x + h * e) - loss(x - h * e)) / (2 * h)
    np.testing.assert_allclose(grad @ e, fd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fa.compile(loss, backend=backend)(x), grad, rtol=1e-12,
                               atol=1e-12)


def test_every_route_and_use_on_numba_in_one_compile():
    """One program holding every route with every use (one Numba compile)."""
    if "numba" not in BACKENDS:
        pytest.skip("numba is not installed")

    def f(x):
        parts = []
        for k, route in enumerate(sorted(ROUTES)):
            use = sorted(USES)[k % len(USES)]
            parts.extend(np.ravel(v) * 1.0 for v in _leaves(_program(route, use, "int32")(x)))
        return np.concatenate(parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host calls between compiled segments (argsort)
        compiled = fa.jit(f, backend="numba")
        for x in _points(5):
            np.testing.assert_allclose(compiled(x), f(x), rtol=1e-12, atol=1e-12)
    assert compiled.cache_info()["traces"] == 1


def test_narrow_casts_wrap_around_as_numpys():
    x = np.array([-300.7, -129.0, -128.5, 127.9, 128.0, 255.5, 256.0, 1e6 + 0.5])
    for dtype in ("int8", "int16", "int32", "uint8", "uint16"):
        def f(x):
            v = np.abs(x) if np.dtype(dtype).kind == "u" else x
            i = v.astype(dtype)
            return i, (i + 100).astype(np.int8), i * 3
        _same(fa.jit(f, backend="numpy")(x), f(x))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="a negative float cast to an unsigned integer is undefined in C; "
                           "NumPy's result is the x86-64 one checked here")
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
def test_negative_floats_cast_to_unsigned_as_numpys(dtype):
    """Negative floats cast to an unsigned dtype narrower than 64 bits wrap
    around.  (uint64's would be past 2**53, where integers held in float64
    are no longer exact: refused, below.)"""
    def f(x):
        i = x.astype(dtype)
        return i, i * 1.0, np.sum(i * x)
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    x = np.concatenate([-np.abs(rng.normal(size=4)) * 10.0 ** rng.integers(0, 9, 4),
                        np.abs(rng.normal(size=3)) * 50])
    with np.errstate(invalid="ignore"):
        want = f(x)
        for backend in BACKENDS:
            _same(fa.jit(f, backend=backend)(x), want)


@pytest.mark.parametrize("bad", [-1.0, -3.7, 2.0 ** 53, 1e300])
def test_uint64_casts_past_float64s_integers_are_refused(bad):
    """uint64 of a negative traced float wraps past 2**53 (as does a float
    of 2**53 or more), which integers held in float64 cannot hold: a clear
    OverflowError, eagerly and compiled (where a guard sees the values
    change), never a wrong value; values inside compute as NumPy's."""
    def f(x):
        i = x.astype(np.uint64)
        return (i % 7).astype(float) * x
    fine = np.array([0.5, 2.5, 3.7, 1e10])
    g = fa.jit(f, backend="c" if "c" in BACKENDS else "numpy")
    _same(g(fine), f(fine))
    _same(fa.vjp(f, fine)[0], f(fine))
    worse = fine.copy()
    worse[1] = bad
    for run in (g, lambda x: fa.vjp(f, x)[0], fa.grad(lambda x: np.sum(f(x)))):
        with pytest.raises(OverflowError, match="2[*][*]53"):
            run(worse)


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8", "int64"])
def test_integer_only_operations_of_computed_integers_are_numpys(dtype):
    """Bitwise operations, shifts and gcd take the integers in their own dtype
    (a host call at every call: one trace), wrapping as NumPy's do."""
    def f(x):
        i = (x * 3.0).astype(dtype)
        return (i & 5, i | 8, i ^ 3, ~i, i << 2, i >> 1, np.gcd(i, 6), np.bitwise_count(i),
                7 & i, np.left_shift(i, i % 4))
    compiled = fa.jit(f, backend="c" if "c" in BACKENDS else "numpy")
    for x in (np.array([0.5, 3.2, 7.9, 12.1, 60.0]), np.array([1.5, 9.2, 2.9, 0.1, 44.0])):
        _same(compiled(x), f(x))
        _same(fa.vjp(f, x)[0], f(x))
    assert compiled.cache_info()["traces"] == 1


def test_argsort_indexing_batches_under_vmap_without_the_per_example_loop():
    X = np.random.default_rng(2).normal(size=(5, N))

    def f(x):
        return np.sum(x[np.argsort(x)[:3]] * np.arange(3.0)) + x[np.searchsorted(BINS, x[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "examples disagree" fallback
        got = fa.vmap(f)(X)
    np.testing.assert_allclose(got, [f(x) for x in X], rtol=1e-13)
