"""If-conversion of per-element branches (transforms/ifconvert.py).

Generated loop programs with an ``if``/``else`` per element (random
predicates of the element's data, random branch bodies, the branches adding
to a sum or writing the same output element) are called compiled with inputs
whose branch patterns change between calls: values and gradients equal the
eager function's on every call (elements exactly at the branch boundary and
NaN predicates included), a converted loop is traced at most twice (once if
its first pattern is mixed already), and its
gradient agrees with central finite differences away from the boundary.
Branches that cannot be converted soundly (a logarithm, a square root, a
branch that adds to the sum only on one side) keep their guards, and still
give the eager function's results.
"""
from __future__ import annotations

import linecache
import os
import warnings

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.transforms import branch_source

# the C VM where it is built, else the reference interpreter
COMPILED = "c" if "c" in BACKENDS else "numpy"
N = 12

IFCONV = settings(max_examples=int(os.environ.get("FASTAD_IFCONV_EXAMPLES", "30")), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# branch bodies: functions of d (the element's traced value), a = x[i], b = t[i]
_LEAVES = ["d", "a", "b", "1.5", "0.25"]
_SAFE_UNARY = ["np.sin({})", "np.cos({})", "abs({})", "({}) ** 2", "({}) ** 3", "-({})",
               "({}) / 4.0"]
_BINARY = ["({} + {})", "({} - {})", "({} * {})"]
_UNSAFE_UNARY = ["np.sqrt(abs({}) + 0.0)", "np.log(abs({}) + 1e-300)", "np.exp({})"]
# derivatives finite where the value is (converted as they are), and derivatives
# unbounded next to a point (converted with a guard that no argument is there)
_BOUNDED_UNARY = ["np.exp({})", "np.tanh({})", "np.arctan({})", "np.log1p(abs({}))",
                  "np.maximum({}, 0.5)"]
_SINGULAR_UNARY = ["np.sqrt(abs({}))", "np.log(abs({}) + 1e-300)", "1.0 / (1.0 + abs({}))",
                   "abs({}) ** 1.5", "np.cbrt({})", "np.arcsin(np.sin({}))"]


def _expressions(unary: list[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        st.sampled_from(_LEAVES),
        lambda inner: st.one_of(
            st.builds(lambda f, e: f.format(e), st.sampled_from(unary), inner),
            st.builds(lambda f, l, r: f.format(l, r), st.sampled_from(_BINARY), inner, inner)),
        max_leaves=5)


# predicates: (expression of a = x[i], b = t[i], d = a - b) compared with a constant
_PREDICATES = st.tuples(st.sampled_from(["d", "a * b", "a + 0.5 * b", "np.sin(a) - b", "d * d"]),
                        st.sampled_from([">", "<", ">=", "<="]),
                        st.sampled_from([0.0, 0.25, -0.5]))


def _source(pred: tuple[str, str, float], then: str, other: str, mode: str) -> str:
    lhs, op, c = pred
    head = ["def f(x, t):", "    s = 0.0", "    out = np.zeros_like(x)",
            "    for i in range(len(x)):", "        a = x[i]", "        b = t[i]",
            "        d = a - b", f"        if {lhs} {op} {c!r}:"]
    if mode == "sum":
        body = [f"            s = s + {then}", "        else:", f"            s = s + {other}",
                "    return s"]
    elif mode == "sum2":  # two links per element on both sides
        body = [f"            s = s + {then} + a * b", "        else:",
                f"            s = s + {other} - 0.5", "    return s"]
    else:
        body = [f"            out[i] = {then}", "        else:", f"            out[i] = {other}",
                "    return np.sum(out * np.cos(t)) + s"]
    return "\n".join(head + body) + "\n"


def _make(source: str):
    # registered with linecache, as IPython registers a cell's source: the
    # conversion reads the branch's source
    linecache.cache["<generated>"] = (len(source), None, source.splitlines(True), "<generated>")
    branch_source._parsed.cache_clear()
    namespace = {"np": np}
    exec(compile(source, "<generated>", "exec"), namespace)  # noqa: S102
    return namespace["f"]


def _margin(pred: tuple[str, str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
    lhs, _, c = pred
    a, b = x, t
    d = a - b
    return np.abs(eval(lhs, {"np": np, "a": a, "b": b, "d": d}) - c)


def _check_against_eager(f, g, x, t) -> None:
    with np.errstate(all="ignore"):
        value, grad = fa.value_and_grad(f)(x, t)
        got_value, got_grad = g.value_and_grad(x, t)
    np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-12, atol=1e-12, equal_nan=True)


def _calls(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inputs whose branch patterns differ from call to call."""
    return [(rng.standard_normal(N), rng.standard_normal(N)) for _ in range(count)]


@IFCONV
@given(pred=_PREDICATES, then=_expressions(_SAFE_UNARY), other=_expressions(_SAFE_UNARY),
       mode=st.sampled_from(["sum", "sum2", "write"]), seed=st.integers(0, 2**31 - 1))
def test_converted_loops_equal_eager_and_trace_at_most_twice(pred, then, other, mode, seed):
    f = _make(_source(pred, then, other, mode))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(seed)
    for x, t in _calls(rng, 6):
        _check_against_eager(f, g, x, t)
    info = g.cache_info()
    if info["entries"][0]["converted"]:
        assert info["traces"] <= 2, info
        # the converted trace is tried first and holds for new patterns
        for x, t in _calls(rng, 4):
            _check_against_eager(f, g, x, t)
        assert g.cache_info()["traces"] == info["traces"]


@IFCONV
@given(pred=_PREDICATES, then=_expressions(_SAFE_UNARY), other=_expressions(_SAFE_UNARY),
       mode=st.sampled_from(["sum", "sum2", "write"]), seed=st.integers(0, 2**31 - 1))
def test_converted_gradients_match_finite_differences(pred, then, other, mode, seed):
    f = _make(_source(pred, then, other, mode))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(seed)
    for x, t in _calls(rng, 4):
        grad = g(x, t)
        if np.min(_margin(pred, x, t)) < 1e-3 or not np.all(np.isfinite(grad)):
            continue  # a step of finite differences could cross the boundary
        v = rng.standard_normal(N)
        h = 1e-6
        fd = (f(x + h * v, t) - f(x - h * v, t)) / (2 * h)
        scale = max(1.0, abs(fd), float(np.abs(grad) @ np.abs(v)))
        assert abs(grad @ v - fd) <= 1e-5 * scale


@IFCONV
@given(then=_expressions(_SAFE_UNARY), other=_expressions(_SAFE_UNARY),
       mode=st.sampled_from(["sum", "sum2", "write"]), seed=st.integers(0, 2**31 - 1))
def test_boundary_elements_and_nan_predicates_take_the_eager_branch(then, other, mode, seed):
    pred = ("d", ">", 0.0)
    f = _make(_source(pred, then, other, mode))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(seed)
    for x, t in _calls(rng, 2):
        _check_against_eager(f, g, x, t)
    x, t = _calls(rng, 1)[0]
    at = rng.choice(N, size=3, replace=False)
    t[at] = x[at]  # d == 0 exactly: the else branch, and its derivative
    _check_against_eager(f, g, x, t)
    x[at[0]] = np.nan  # NaN > 0 is False; the result is NaN either way
    _check_against_eager(f, g, x, t)
    x, t = _calls(rng, 1)[0]
    _check_against_eager(f, g, x, t)


@IFCONV
@given(pred=_PREDICATES, then=_expressions(_UNSAFE_UNARY), other=_expressions(_SAFE_UNARY),
       mode=st.sampled_from(["sum", "sum2", "write"]), seed=st.integers(0, 2**31 - 1))
def test_branches_with_unbounded_derivatives_equal_eager(pred, then, other, mode, seed):
    """Square roots, logarithms and exponentials in a branch: kept as guards
    (or converted when they act on constants only), eager's results always."""
    f = _make(_source(pred, then, other, mode))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # traced too often: evaluated eagerly
        for x, t in _calls(rng, 5):
            _check_against_eager(f, g, x, t)


@IFCONV
@given(pred=_PREDICATES, then=_expressions(_SAFE_UNARY + _BOUNDED_UNARY + _SINGULAR_UNARY),
       other=_expressions(_SAFE_UNARY + _BOUNDED_UNARY + _SINGULAR_UNARY),
       mode=st.sampled_from(["sum", "sum2", "write"]), seed=st.integers(0, 2**31 - 1))
def test_branches_with_singular_points_convert_and_leave_them_to_other_traces(
        pred, then, other, mode, seed):
    """Exponentials, logarithms, square roots, reciprocals in the branches:
    converted (a pattern change costs no trace) unless a branch's value is not
    finite; an element whose branch not taken computes a square root or a
    logarithm exactly at 0 (an infinite derivative times the zero cotangent
    would be NaN) sends that call to other traces: eager's results always."""
    f = _make(_source(pred, then, other, mode))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # traced too often: evaluated eagerly
        for x, t in _calls(rng, 4):
            _check_against_eager(f, g, x, t)
        converted = bool(g.cache_info()["entries"][0]["converted"])
        if converted:
            assert g.cache_info()["traces"] <= 2
        x, t = _calls(rng, 1)[0]
        at = rng.choice(N, size=3, replace=False)
        t[at] = x[at]  # d == 0: sqrt(abs(d)), log(abs(d)), cbrt(d) at their singular point
        x[at[0]] = 0.0
        t[at[0]] = 0.0  # a == b == 0 too
        _check_against_eager(f, g, x, t)
        for x, t in _calls(rng, 2):
            _check_against_eager(f, g, x, t)
    singular = ("np.sqrt", "np.log(", "np.cbrt", "np.arcsin", "** 1.5", "1.0 /")
    if converted and not any(u in then + other for u in singular):
        assert g.cache_info()["traces"] <= 2  # no singular point: the zeros changed nothing


def _root_or_log(x, t):
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + np.sqrt(abs(d)) * t[i]
        else:
            s = s + (np.log1p(d * d) + np.exp(-d))
    return s


def test_a_branch_with_a_square_root_converts_and_its_singular_point_is_exact():
    g = fa.compile(_root_or_log, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(4)
    for x, t in _calls(rng, 6):
        _check_against_eager(_root_or_log, g, x, t)
    assert g.cache_info()["entries"][0]["converted"] and g.cache_info()["traces"] <= 2
    x, t = _calls(rng, 1)[0]
    t[:3] = x[:3]  # d == 0: the else branch taken, sqrt(|d|) not taken at its singular point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_against_eager(_root_or_log, g, x, t)
    assert np.all(np.isfinite(g(x, t)))


def _one_sided(x, t):
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + d ** 2
    return s


def _accumulator_predicate(x, t):
    s = 0.0
    for i in range(len(x)):
        if s > 1.0:
            s = s + 0.5 * x[i] * t[i]
        else:
            s = s + x[i] ** 2
    return s


def _carried_flag(x, t):
    s, flag = 0.0, 1.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + flag * d
            flag = 2.0
        else:
            s = s - flag * d
            flag = 1.0
    return s


def _zero_else(x, t):
    out = np.zeros_like(x)
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            out[i] = d * t[i]
        else:
            out[i] = 0.0
    return np.sum(out * out)


def _leaky(x, t):
    out = np.empty_like(x)
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            out[i] = d  # a value computed before the branch, also read by its predicate
            s = s + (d * d - 1.0)  # a term that is itself a difference
        else:
            out[i] = 0.5 * d
            s = s + d * t[i]
    return np.sum(out * t) + s


def _two_terms(x, t):
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + d * d + np.exp(-t[i])  # two links of the chain on each side
        else:
            s = s + 0.5 * d - np.tanh(d)
    return s


def _plus_minus(x, t):
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + d * d
        else:
            s = s - 0.5 * d  # s - t: the link adds -t
    return s


def _python_counter(x, t):
    s, taken = 0.0, 0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + d * d
            taken += 1  # Python state: the output depends on how many took this branch
        else:
            s = s + 0.5 * d
    return s + taken


def _python_float_sum(x, t):
    s = 0.0
    for i in range(len(x)):
        if x[i] > t[i]:
            s = s + 1.5  # s stays a Python float: the tape's output is a constant
        else:
            s = s + 0.25
    return s + 0.0 * x[0]


def _sqrt_branch(x, t):
    s = 0.0
    for i in range(len(x)):
        d = x[i] - t[i]
        if d > 0.0:
            s = s + np.sqrt(d)
        else:
            s = s + d
    return s


@pytest.mark.parametrize("f", [_one_sided, _accumulator_predicate, _carried_flag, _sqrt_branch,
                               _zero_else, _leaky, _two_terms, _plus_minus, _python_counter,
                               _python_float_sum])
def test_loops_outside_the_conversion_still_equal_eager(f):
    """A branch that adds only on one side, a predicate on the accumulator,
    a branch that sets Python state the next element reads, a square root, a
    constant written by one branch, two chains in one branch: converted where
    sound, kept as guards otherwise; results equal eager on every call."""
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x, t in _calls(rng, 8):
            # half the elements take each branch: flipping them all keeps the count
            order = np.argsort(x - t)
            x[order[: N // 2]] = t[order[: N // 2]] - np.abs(x[order[: N // 2]]) - 0.1
            x[order[N // 2:]] = t[order[N // 2:]] + np.abs(x[order[N // 2:]]) + 0.1
            _check_against_eager(f, g, x, t)
    if f in (_zero_else, _leaky, _two_terms, _plus_minus):  # where(d > 0, d * t, 0.0), where(d > 0, d, 0.5 * d), ...
        assert g.cache_info()["entries"][0]["converted"]
    if f in (_carried_flag, _sqrt_branch, _python_counter, _python_float_sum):
        # the next element reads the branch's Python state; sqrt of the
        # negative d the branch not taken would compute is NaN; the last two
        # count the branches taken in Python (calls below balance them)
        assert not any(e["converted"] for e in g.cache_info()["entries"])


def test_cache_info_names_the_converted_guard_and_the_numba_backend_agrees():
    f = _make(_source(("d", ">", 0.0), "d ** 2", "0.1 * d ** 2", "sum"))
    backends = [COMPILED] + (["numba"] if "numba" in BACKENDS else [])
    rng = np.random.default_rng(0)
    calls = _calls(rng, 5)
    for backend in backends:
        g = fa.compile(f, argnums=0, backend=backend)
        for x, t in calls:
            _check_against_eager(f, g, x, t)
        info = g.cache_info()
        assert info["traces"] == 1  # the first pattern is mixed: converted at once
        assert info["entries"][0]["converted"] == ["<generated>:8"]
        assert [line for line, _ in info["entries"][0]["guards"]] == ["<generated>:8"]


def test_a_uniform_first_pattern_keeps_its_vector_guard_until_it_changes():
    f = _make(_source(("d", ">", 0.0), "d ** 2", "0.1 * d ** 2", "sum"))
    g = fa.compile(f, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(1)
    x, t = _calls(rng, 1)[0]
    _check_against_eager(f, g, np.abs(x) + 1.0, t - np.abs(t))  # every d > 0
    info = g.cache_info()
    assert info["traces"] == 1 and not info["entries"][0]["converted"]
    for x, t in _calls(rng, 5):
        _check_against_eager(f, g, x, t)
    info = g.cache_info()
    assert info["traces"] == 2 and info["entries"][0]["converted"] == ["<generated>:8"]


def _newton_steps(x, t):
    """A while loop whose guards see both outcomes: forced out of its path,
    it could run for ever (it must not be converted, nor hang)."""
    s = 0.0
    for i in range(len(x)):
        y = x[i] * x[i] + 1.0
        while y > 1.5:
            y = y * 0.5
        s = s + y * t[i]
    return s


def test_a_loop_forced_off_its_path_stops_and_keeps_its_guards():
    g = fa.compile(_newton_steps, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x, t in _calls(rng, 3):
            _check_against_eager(_newton_steps, g, 3.0 * x, t)
    assert not any(e["converted"] for e in g.cache_info()["entries"])


def test_a_signature_that_cannot_be_converted_is_not_tried_again():
    """Each attempt runs the function twice more; after a failed one, a
    retrace runs it once, as before."""
    runs = []

    def counted(x, t):
        runs.append(1)
        return _sqrt_branch(x, t)
    g = fa.compile(counted, argnums=0, backend=COMPILED)
    rng = np.random.default_rng(7)
    for x, t in _calls(rng, 4):
        _check_against_eager(_sqrt_branch, g, x, t)
    traces = g.cache_info()["traces"]
    assert traces == 4 and not any(e["converted"] for e in g.cache_info()["entries"])
    assert len(runs) == traces + 2  # the first trace's attempt: two forced runs


# Python state a branch changes beside the values the tape sees, each as the
# two branches' extra statements and how the result uses the state: parity and
# modular counters can agree across the three forced traces by chance
_PYTHON_STATE = [
    ("odd = not odd", "odd = odd", "s * 2.0 if odd else s"),
    ("k = (k + 1) % 3", "k = k", "s + k"),
    ("seen.append(i)", "seen.append(-1)", "s * (1 + len([j for j in seen if j >= 0]) % 2)"),
    ("odd = not odd", "pass", "s * 2.0 if odd else s"),
]


@IFCONV
@given(state=st.sampled_from(_PYTHON_STATE), pred=_PREDICATES,
       then=_expressions(_SAFE_UNARY), other=_expressions(_SAFE_UNARY), seed=st.integers(0, 2**31 - 1))
def test_branches_that_change_python_state_keep_their_guards(state, pred, then, other, seed):
    """A flag, a modular counter or a list a branch changes is state no where
    holds: the branch's source says so, and the function keeps its guards."""
    then_extra, other_extra, result = state
    lhs, op, c = pred
    source = "\n".join([
        "def f(x, t):", "    s = 0.0", "    odd = False", "    k = 0", "    seen = []",
        "    for i in range(len(x)):", "        d = x[i] - t[i]", "        a = x[i]",
        "        b = t[i]", f"        if {lhs} {op} {c!r}:", f"            s = s + {then}",
        f"            {then_extra}", "        else:", f"            s = s + {other}",
        f"            {other_extra}", f"    return {result}"]) + "\n"
    f = _make(source)
    g = fa.compile(f, argnums=0, backend=COMPILED)
    for x, t in _calls(np.random.default_rng(seed), 4):
        _check_against_eager(f, g, x, t)
    assert not any(e["converted"] for e in g.cache_info()["entries"])


@given(lhs=st.sampled_from(["s", "y[i]"]), op=st.sampled_from(["+", "-"]),
       term=st.sampled_from(["d", "d ** 2", "np.sin(d)", "abs(d)"]))
def test_the_source_check_accepts_sums_and_refuses_other_carried_state(lhs, op, term):
    ns = {"np": np}

    def check(then: str, other: str) -> bool:
        src = f"if d > 0:\n    {then}\nelse:\n    {other}\n"
        linecache.cache["<check>"] = (len(src), None, src.splitlines(True), "<check>")
        branch_source._parsed.cache_clear()
        return branch_source.effect_free("<check>", 1, ns)
    assert check(f"{lhs} = {lhs} {op} {term}", f"{lhs} {op}= 0.5 * {term}")
    assert check(f"{lhs} = {term}", f"{lhs} = -{term}")
    assert check(f"z = {term} if d > 1 else {lhs}", "z = d")
    assert not check(f"{lhs} = {lhs} {op} {term}", f"w = {term}")  # other targets
    assert not check(f"{lhs} = {lhs} * {term}", f"{lhs} = {lhs} {op} d")
    assert not check(f"{lhs} = ({lhs} {op} 1) % 3", f"{lhs} = {lhs}")
    assert not check(f"{lhs} {op}= {term}", "print(d)")
    assert not check(f"{lhs} {op}= {term}", f"{lhs} {op}= helper(d)")
    assert not check(f"self.n {op}= {term}", f"self.n {op}= d")
    assert not check(f"{lhs} {op}= (m := {term})", f"{lhs} {op}= d")
