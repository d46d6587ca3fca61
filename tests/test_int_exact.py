"""Integer arithmetic of integers taken as data equals NumPy's, bit for bit.

A compiled function holds integer arguments in float64 registers; any
result that could leave +-2**53 (where float64 stops holding every integer)
is checked at run time, and a call whose integers leave it is computed by
NumPy from the arguments' values (`core.int_data.integers_in`).  These
tests generate integer programs (every integer dtype, + - * // % ** abs
minimum maximum divmod, magnitudes up to the dtype's limits) and compare
``fa.jit`` with NumPy: values, dtypes, and NumPy's errors.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

COMPILED = [b for b in BACKENDS if b != "numpy"] or ["numpy"]

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
BINARY = ["+", "-", "*", "//", "%", "**", "minimum", "maximum", "divmod0", "divmod1"]
UNARY = ["abs", "neg", "square"]


def _apply(op, xs, lib):
    x = xs[0]
    if op == "abs":
        return lib.abs(x)
    if op == "neg":
        return -x
    if op == "square":
        return x * x
    y = xs[1]
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "//":
        return x // y
    if op == "%":
        return x % y
    if op == "**":
        return x ** y
    if op in ("minimum", "maximum"):
        return getattr(lib, op)(x, y)
    return lib.divmod(x, y)[int(op[-1])]


def evaluate(expr, env, lib):
    if isinstance(expr, str):
        return env[expr]
    op, *args = expr
    return _apply(op, [evaluate(a, env, lib) for a in args], lib)


def _values(dtype):
    info = np.iinfo(dtype)
    near = [0, 1, 2, 3, -1, -2, 7, info.max, info.min, info.max - 1, info.min + 1,
            2 ** 31 - 1, 46341, 3037000499, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1, -(2 ** 53) - 1,
            94906265]
    return st.one_of(st.sampled_from([v for v in near if info.min <= v <= info.max]),
                     st.integers(int(info.min), int(info.max)),
                     st.integers(max(-100, int(info.min)), 100))


@st.composite
def programs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    # a second operand of another integer dtype NumPy keeps integer, or a Python int
    other = draw(st.sampled_from([dtype] + [d for d in DTYPES if np.result_type(d, dtype).kind
                                            in "iu"]))
    arrays = {name: np.array(draw(st.lists(_values(d), min_size=3, max_size=3)), dtype=d)
              for name, d in (("a", dtype), ("b", other))}
    c = draw(st.integers(0, 5) | st.sampled_from([-3, 17, 2 ** 40]))

    def expr(depth):
        if depth == 0 or draw(st.integers(0, 3)) == 0:
            return draw(st.sampled_from(["a", "b", "a", "b", "c"]))
        if draw(st.booleans()):
            return (draw(st.sampled_from(UNARY)), expr(depth - 1))
        return (draw(st.sampled_from(BINARY)), expr(depth - 1), expr(depth - 1))
    tree = expr(3)
    if isinstance(tree, str) or tree == "c":
        tree = ("+", tree, "a")
    return tree, arrays, c


def _reference(tree, arrays, c):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return evaluate(tree, {**arrays, "c": c}, np), None
        except (ValueError, OverflowError, TypeError, ZeroDivisionError) as exc:
            return None, type(exc)


def _compiled(tree, arrays, c, backend):
    def f(a, b, c):
        return evaluate(tree, {"a": a, "b": b, "c": c}, fnp)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return fa.jit(f, backend=backend)(arrays["a"], arrays["b"], c), None
        except (ValueError, OverflowError, TypeError, ZeroDivisionError) as exc:
            return None, type(exc)


def _same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(got, want)
    else:
        assert np.array_equal(got, want), (got.tolist(), want.tolist())


def _check(tree, arrays, c, backend):
    want, error = _reference(tree, arrays, c)
    got, got_error = _compiled(tree, arrays, c, backend)
    if error is not None:
        assert got_error is error, (tree, got, error)
        return
    assert got_error is None, (tree, got_error)
    if type(want) is int:  # Python ints only (c with c): Python's int
        assert type(got) is int and got == want, (tree, got, want)
        return
    if np.asarray(want).dtype.kind == "f" and not np.all(np.isfinite(want)):
        return  # float64 results of mixed signed/unsigned 64-bit operands: NumPy's own
    _same(got, want)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built (Numba: the test below)")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_integer_programs_equal_numpy(program):
    _check(*program, backend="c")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_integer_programs_equal_numpy_numba(program):
    pytest.importorskip("numba")
    _check(*program, backend="numba")


@pytest.mark.parametrize("name, f, args", [
    ("int64 k ** 2", lambda a: a ** 2, (np.array([3037000499, 123456789, 7]),)),
    ("int64 k ** 3", lambda a: a ** 3, (np.array([2097151, 1234567]),)),
    ("int64 minimum past 2**53", fnp.minimum,
     (np.array([-123456789012345678, 5]), np.array([3, 9]))),
    ("int32 k * k wraps", lambda a: a * a, (np.array([2 ** 31 - 1, 46341, 3], np.int32),)),
    ("divmod quotient", lambda a: fnp.divmod(a, 3)[0], (np.array([3037000499, 7]),)),
    ("divmod remainder", lambda a: fnp.divmod(a, 3)[1], (np.array([3037000499, -7]),)),
    ("Python int squared", lambda n: n * n, (2 ** 40 + 1,)),
    ("uint64 below zero", lambda a: a - np.uint64(3), (np.array([1, 5], np.uint64),)),
])
def test_audited_cases(name, f, args):
    with np.errstate(all="ignore"):
        want = f(*args) if name != "int64 minimum past 2**53" else np.minimum(*args)
        g = fa.jit(f, backend=COMPILED[0])
        for _ in range(2):
            got = g(*args)
            assert type(got) is type(want)
            _same(got, want)


def test_a_later_call_past_2_53_is_exact():
    """The trace saw small integers; a later call whose products pass 2**53
    fails the range guard and is computed from the arguments' values."""
    g = fa.jit(lambda a, b: a * b + 1, backend=COMPILED[0])
    small = np.array([3, 4, 5])
    np.testing.assert_array_equal(g(small, small), small * small + 1)
    big = np.array([3037000499, 2 ** 40, 5])
    with np.errstate(all="ignore"):
        _same(g(big, big), big * big + 1)
    _same(g(small + 1, small), (small + 1) * small + 1)


@pytest.mark.parametrize("f", [lambda a, b: fnp.sum(a), lambda a, b: a.sum(),
                               lambda a, b: fnp.dot(a, b), lambda a, b: fnp.cumsum(a),
                               lambda a, b: fnp.einsum("i,i->", a, b)])
def test_partial_sums_past_2_53_are_exact(f):
    """2**53 - 1 + 2 - 2: a partial sum passes 2**53 where the result does not."""
    a, b = np.array([2 ** 53 - 1, 2, -2]), np.array([1, 1, 1])
    g = fa.jit(f, backend=COMPILED[0])
    np.testing.assert_array_equal(g(np.array([1, 2, 3]), b), f(np.array([1, 2, 3]), b))
    want = f(a, b)
    got = g(a, b)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)


def test_negative_integer_powers_raise_as_numpys():
    g = fa.jit(lambda a: a ** -1, backend=COMPILED[0])
    with pytest.raises(ValueError, match="negative integer powers"):
        g(np.array([2, 4]))
    h = fa.jit(lambda a, b: a ** b, backend=COMPILED[0])
    np.testing.assert_array_equal(h(np.array([2, 3]), np.array([3, 2])), [8, 9])
    with pytest.raises(ValueError, match="negative integer powers"):
        h(np.array([2, 3]), np.array([3, -2]))
    # Python ints: Python's float for a negative exponent
    k = fa.jit(lambda n, m: n ** m, backend=COMPILED[0])
    assert k(2, 3) == 8 and type(k(2, 3)) is int
    assert k(2, -1) == 0.5


def test_labels_keep_compiling_once():
    """Bounded integers (int32 labels plus a constant, small products) need
    no range check; a sum of int64 labels has one, and reuses its trace."""
    g = fa.jit(lambda y: fnp.sum(y * 2 + 1), backend=COMPILED[0])
    rng = np.random.default_rng(0)
    for _ in range(3):
        y = rng.integers(0, 10, size=8)
        assert g(y) == np.sum(y * 2 + 1)
    assert g.cache_info()["traces"] == 1


def _loops(f, *args):
    g = fa.jit(f, backend=COMPILED[0])
    g(*args)
    return sum(i.prim == "loop" for i in g.tape.instrs)


def test_integer_arithmetic_in_loop_bodies_keeps_the_loop():
    """A loop's counter or scanned integers plus a constant need no range
    check in the body (its guard would unroll the loop): fori_loop's counter
    lies below its bound, scanned integers within their own bounds (integer
    data reaching 2**52 checked once before the loop)."""
    x = np.arange(12.0)

    def constant(x):
        return fa.fori_loop(0, 10, lambda i, c: c + x[i + 1] * c, 1.0)

    def bounded(x, n):
        return fa.fori_loop(0, n, lambda i, c: c + x[i + 1] * (i * 2 + 1), 1.0)

    def scanned(x, idx):
        return fa.scan(lambda c, j: (c + x[j + 1] * (j - 1), None), 0.0, idx)[0]

    idx = np.array([3, 0, 7, 2])
    cases = [(constant, (x,), np.prod(1.0 + x[1:11])),
             (bounded, (x, 6), 1.0 + sum(x[i + 1] * (2 * i + 1) for i in range(6))),
             (scanned, (x, idx), sum(x[j + 1] * (j - 1) for j in idx))]
    for f, args, want in cases:
        assert _loops(f, *args) == 1, f.__name__
        for backend in COMPILED:
            assert fa.jit(f, backend=backend)(*args) == want, (f.__name__, backend)
    big = np.array([2 ** 52 + 1, 3])  # past the check before the loop: keyed by value
    assert fa.jit(lambda i: fa.scan(lambda c, j: (c + (j - 1), None), 0, i)[0],
                  backend=COMPILED[0])(big) == 2 ** 52 + 2


@pytest.mark.parametrize("bound", [
    lambda p: fnp.argmax(p) + 2 ** 31, lambda p: 2 ** 40 - fnp.argmin(p)])
def test_a_computed_loop_bound_too_large_names_the_limit(bound):
    """A fori_loop bound computed from traced floats (no argument to key by
    value) past 2**31 raises OverflowError naming that limit and why."""
    def h(p):
        return fa.fori_loop(0, bound(p), lambda i, c: c * 0.5, p[0])
    with pytest.raises(OverflowError, match=r"2\*\*31.*fori_loop"):
        fa.jit(h, backend=COMPILED[0])(np.array([0.5, 0.9]))


_STEPS = {"+": lambda c, i: c + i, "-": lambda c, i: c - 2 * i, "*3": lambda c, i: 3 * c - i,
          "max": lambda c, i: fnp.maximum(c, i) + 1, "min": lambda c, i: fnp.minimum(c, -i) - 1}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_STEPS)), st.sampled_from(["int", "int64"]),
       st.lists(st.integers(-2 ** 62, 2 ** 62) | st.sampled_from(
           [0, 5, -7, 2 ** 52 - 3, -2 ** 52 + 3, 2 ** 52 + 5, 2 ** 53 - 1, 2 ** 53 + 1]),
           min_size=2, max_size=4))
def test_an_integer_argument_stepped_in_a_python_loop(step, kind, ks):
    """``c = k + i`` on an integer argument in a Python loop: one guard on k
    (its magnitude, before the first step) where each step's result was
    checked, so the steps stay alike; exact as Python's or NumPy's integers,
    and of their type, at every magnitude (past the guard's bound: checked
    per result, or keyed by value)."""
    def f(x, k):
        c, s = k, 0.0
        for i in range(12):
            c = _STEPS[step](c, i)
            s = s + x[i] * (c % 5)
        return c, s

    x = np.linspace(0.5, 1.5, 12)
    g = fa.jit(f, backend=COMPILED[0])
    for k in ks:
        k = int(k) if kind == "int" else np.int64(k)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            want = f(x, k)
            got = g(x, k)
        assert type(got[0]) is type(want[0]) and got[0] == want[0], (k, got, want)
        assert got[1] == pytest.approx(want[1], rel=1e-13)  # (a rerolled sum's order)
    if step == "*3":
        return  # c grows as 3**i k: its bound is checked step by step
    h = fa.jit(f, backend=COMPILED[0])
    h(x, 11 if kind == "int" else np.int64(11))
    (entry,) = h.cache_info()["entries"]
    assert len(entry["guards"]) <= 2, entry["guards"]


def test_vmap_of_a_fori_loop_with_batched_integer_bounds_batches():
    """Examples of different trip counts run in one batched loop (no
    warning), their counters plus a constant unchecked inside it."""
    def f(p, n):
        return fa.fori_loop(0, n, lambda i, c: c * p[0] + p[1] * (i + 1), p[2])
    P = np.array([[0.4, 0.1, 0.8], [-0.4, 0.3, 0.5], [0.7, -0.1, 0.2]])
    N = np.array([0, 3, 1])
    want = np.stack([fa.grad(f)(p, int(n)) for p, n in zip(P, N)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fa.vmap(fa.grad(f))(P, N)
    np.testing.assert_allclose(got, want, rtol=1e-12)
