"""Data-dependent control flow: guards, safe replay, retrace limits, check_nans."""
import logging
import warnings

import numpy as np
import pytest

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from helpers import signed_sum_loop

COMPILED = "c" if "c" in BACKENDS else "numpy"


def abs_by_if(x):
    if x > 0:
        return x * 1.0
    return -x


def huber(x, delta=1.0):
    if abs(x) <= delta:
        return 0.5 * x ** 2
    return delta * (abs(x) - 0.5 * delta)


def clamp(x):
    lo, hi = -1.0, 2.0
    if x < lo:
        return lo + 0.0 * x
    if x > hi:
        return hi + 0.0 * x
    return x * x


def halvings(x):
    """A loop whose trip count depends on the value."""
    while x > 1.0:
        x = x / 2.0
    return x * x


@pytest.mark.parametrize("f, points, traces", [
    (abs_by_if, [0.5, -2.0, 3.0, -0.1], 2),
    (huber, [0.3, 2.5, -4.0, -0.2, 0.9], 2),
    (clamp, [0.5, -3.0, 5.0, 1.5, -1.5], 3),
    (halvings, [0.5, 1.5, 3.0, 6.0, 0.25, 2.5], 4),
])
def test_both_sides_of_each_branch(backend, f, points, traces):
    g = fa.compile(f, backend=backend)
    for order in (points, points[::-1]):
        for p in order:
            np.testing.assert_allclose(g(p), fa.grad(f)(p), rtol=1e-14)
            np.testing.assert_allclose(g.value(p), f(p), rtol=1e-14)
    assert g.cache_info()["traces"] == traces
    assert all(len(e["guards"]) >= 1 for e in g.cache_info()["entries"])


def test_retraces_are_explained(backend, caplog):
    g = fa.compile(abs_by_if, backend=backend)
    with caplog.at_level(logging.INFO, logger="fastad"):
        g(1.0)
        g(-1.0)
        g(np.float32(1.0))
    text = caplog.text
    assert "test_guards.py" in text and "now evaluates to False" in text
    assert "new argument signature" in text


def test_retrace_limit_warns_once_and_stays_correct(backend):
    g = fa.compile(halvings, backend=backend, max_traces=2)
    points = [0.5, 1.5, 3.0, 6.0, 12.0, 24.0, 0.7, 48.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for p in points:
            np.testing.assert_allclose(g(p), fa.grad(halvings)(p), rtol=1e-14)
    messages = [str(w.message) for w in caught if "traced" in str(w.message)]
    assert len(messages) == 1
    assert "test_guards.py" in messages[0]
    assert caught[0].filename == __file__


def test_branch_free_functions_create_no_guards(backend):
    def smooth(x):
        return np.sum(fnp.where(x > 0, x, 0.1 * x) + np.clip(x, -1, 1) + np.maximum(x, 0.5)
                      + np.abs(x))
    g = fa.compile(smooth, backend=backend)
    x = np.array([-2.0, -0.5, 0.7, 3.0])
    g(x)
    g(-x)
    assert g.cache_info()["traces"] == 1
    assert g.cache_info()["entries"][0]["guards"] == []


def test_where_gives_exact_zeros_to_the_branch_not_taken():
    def f(x):
        return np.sum(fnp.where(x > 0, np.log(np.abs(x) + (x <= 0)), 0.0))
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(fa.grad(f)(x), [0.0, 0.0, 0.5])


def test_check_nans_names_primitive_and_line(backend):
    def f(x):
        y = x - 1.0
        return np.sum(np.log(y))  # the line check_nans must name
    line = f.__code__.co_firstlineno + 2
    g = fa.jit(f, backend=backend, check_nans=True)
    assert np.isfinite(g(np.array([2.0, 3.0])))
    with pytest.raises(FloatingPointError, match=rf"log at .*test_guards.py:{line}"):
        g(np.array([0.5, 3.0]))
    grad = fa.compile(f, backend=backend, check_nans=True)  # compiled gradients: their results
    assert np.all(np.isfinite(grad(np.array([2.0, 3.0]))))
    with pytest.raises(FloatingPointError, match=rf"log at .*test_guards.py:{line}"):
        grad.value(np.array([0.5, 3.0]))
    with pytest.raises(FloatingPointError, match=rf" at .*test_guards.py:{line}"):
        grad(np.array([1.0, 3.0]))  # a gradient of 1 / 0


def test_guards_inside_nested_transformations(backend):
    def f(x):
        return fa.grad(huber)(x) * x
    jf = fa.jit(f, backend=backend)
    for p in (0.3, 3.0, -0.4, -3.0):
        np.testing.assert_allclose(jf(p), f(p), rtol=1e-14)


def test_strong_zero_rule_is_opt_in(backend):
    def f(x):
        return np.sum(fnp.where(x > 0, np.sqrt(x), 0.0))
    x = np.array([-1.0, 0.0, 4.0])
    plain = fa.grad(f)(x)
    assert np.isnan(plain[0])                     # 0 * (0.5 / sqrt(-1)) = NaN by IEEE
    strong = fa.grad(f, strong_zero=True)(x)
    np.testing.assert_array_equal(strong, [0.0, 0.0, 0.25])
    np.testing.assert_array_equal(fa.compile(f, backend=backend, strong_zero=True)(x), strong)


def huber_loop(x):
    """A loop whose every iteration branches on its own term."""
    total = 0.0
    for i in range(len(x) - 1):
        d = x[i + 1] - x[i]
        if abs(d) <= 1.0:
            total = total + 0.5 * d * d
        else:
            total = total + abs(d) - 0.5
    return total


def test_guards_of_a_loop_reroll_into_one_vector_guard(backend):
    """The guards of a loop body reroll with it: the compiled tape is vector
    code with one guard per branch taken, not one per iteration."""
    x = np.linspace(-0.5, 0.5, 40)  # every |d| <= 1: one side everywhere
    g = fa.compile(huber_loop, backend=backend)
    np.testing.assert_allclose(g(x), fa.grad(huber_loop)(x), rtol=1e-13, atol=1e-15)
    assert g.tape.stages["rerolled"] < g.tape.stages["traced"] // 10
    assert len(g.cache_info()["entries"][0]["guards"]) <= 2


def test_rerolled_guard_fails_where_any_iteration_branches_otherwise(backend):
    g = fa.compile(huber_loop, backend=backend)
    calm = np.linspace(-0.5, 0.5, 40)
    for x in (calm, calm + np.where(np.arange(40) == 17, 3.0, 0.0), calm, -calm):
        np.testing.assert_allclose(g(x), fa.grad(huber_loop)(x), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g.value(x), huber_loop(x), rtol=1e-13)
    assert g.cache_info()["traces"] == 2  # one per pattern of branches, reused after


def test_rerolled_guards_agree_with_eager_code_at_nans_and_both_sides(backend):
    """The vector guard (a count checked after the fused loop on the compiled
    backends) sends every input down the branches eager code takes, NaN
    comparisons included."""
    g = fa.compile(signed_sum_loop, backend=backend)
    pos = np.linspace(0.5, 2.0, 300)
    for x in (pos, -pos, np.where(np.arange(300) == 7, np.nan, pos),
              np.where(np.arange(300) == 7, np.nan, -pos), np.where(np.arange(300) == 299, -1.0, pos),
              pos, -pos):
        np.testing.assert_allclose(g(x), fa.grad(signed_sum_loop)(x), rtol=1e-13)
        np.testing.assert_allclose(g.value(x), signed_sum_loop(x), rtol=1e-13)
    # a trace per pattern until one mixes both branches: then the if becomes a
    # where (`s - t` pairs with `s + t`), which holds for every later pattern
    info = g.cache_info()
    assert info["traces"] <= 4 and any(e["converted"] for e in info["entries"])


def test_guards_of_a_rerolled_loop_name_the_line_of_their_if(caplog):
    """The retrace message, the warning after max_traces and cache_info name the
    `if` inside the loop, not the line that called the compiled function."""
    import inspect
    import logging

    def f(x):
        s = 0.0
        for i in range(len(x)):
            if x[i] > 0:  # the guard's line
                s = s + x[i] ** 2  # (one-sided: not converted to a where)
        return s

    source, first = inspect.getsourcelines(f)
    line = first + next(k for k, text in enumerate(source) if "the guard's line" in text)
    where = f"{__file__}:{line}"
    g = fa.compile(f, max_traces=2, backend="numpy")
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.INFO, logger="fastad"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(6):
            x = rng.standard_normal(6)
            np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)
    assert g.cache_info()["entries"][0]["guards"]
    assert all(at == where for entry in g.cache_info()["entries"] for at, _ in entry["guards"])
    assert any(where in r.getMessage() for r in caplog.records if "retracing" in r.getMessage())
    assert any(where in str(m.message) for m in w if "traced 3 times" in str(m.message))


def test_integers_computed_from_traced_values_index_numpy_arrays_under_a_guard():
    """Indices computed from traced values (``np.floor(x).astype(int)``, as in
    semi-Lagrangian advection) index a plain NumPy array: they have no
    derivative, so their values are used, and a guard retraces a compiled
    function when they change; ``range`` of a computed count, ``.item()``,
    ``.tolist()`` and ``float()`` of integers likewise."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    table = np.linspace(-1.0, 2.0, 7) ** 2

    def f(x):
        cells = np.floor(np.abs(x) * 2.0).astype(int) % table.size
        left, right = table[cells], table[(cells + 1) % table.size]
        frac = np.abs(x) * 2.0 - np.floor(np.abs(x) * 2.0)
        total = np.sum((1 - frac) * left + frac * right)
        for k in range(int(np.max(cells)) % 3):  # a count computed from x
            total = total + np.sin(x[k])
        first, flags = cells[0].item(), (cells > 2).tolist()  # plain Python values
        total = total + float(cells[1]) * x[first % x.size] + sum(flags) * x[-1]
        return total

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.floats(-3.0, 3.0).filter(lambda v: abs(v * 2 - round(v * 2)) > 0.01),
                    min_size=3, max_size=3))
    def check(values):
        x = np.array(values)
        g, h = fa.grad(f)(x), 1e-7
        fd = [(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(3)]
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(compiled(x), g, rtol=1e-13, atol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = fa.compile(f, backend=COMPILED, max_traces=10**6)
        check()
        assert compiled.cache_info()["traces"] > 1  # the indices changed, and were seen to
