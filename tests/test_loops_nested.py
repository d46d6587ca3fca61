"""Generated programs of while_loop / fori_loop / scan nested 2-3 deep, with
data-dependent trip counts and carries of a few arrays, compiled on the C VM:
values against eager and against the NumPy reference backend, and the trace
count: a while loop reads its trip count at run time, so inputs that take
other counts replay the one trace, values and gradients alike.  Integer
counters stay on the VM (float64 words)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.loops import fori_loop, scan, while_loop
from conftest import BACKENDS

N = 3
KINDS = ("while", "fori", "scan")


def _program(kinds, ops):
    """A function of x nesting one loop per entry of ``kinds`` (outermost
    first); each level carries (y, z), two arrays, and runs the next level in
    its body.  While loops stop on a data-dependent threshold."""
    def level(depth, y, z):
        if depth == len(kinds):
            a = fnp.tanh(y) * 0.8 + 0.1 * z if ops[0] else fnp.sin(y) * 0.7 + 0.2 * z
            return a, z * 0.9 + 0.05 * fnp.cos(a)
        kind = kinds[depth]
        if kind == "while":
            # the count depends on y's values: 0 to a few steps
            def cond(c):
                return fnp.sum(fnp.abs(c[0])) > 0.2 * N
            def body(c):
                a, b = level(depth + 1, c[0], c[1])
                return c[0] * 0.6 + 0.1 * a, b  # shrinks: a few steps
            return while_loop(cond, body, (y, z))
        if kind == "fori":
            return fori_loop(0, 2, lambda i, c: level(depth + 1, *c), (y, z))
        def step(c, xs):
            a, b = level(depth + 1, c[0] + xs, c[1])
            return (a, b), fnp.sum(a)
        (a, b), ys = scan(step, (y, z), fnp.stack([y * 0.1, z * 0.1]))
        return a + 0.01 * fnp.sum(ys), b
    def f(x):
        a, b = level(0, x, fnp.cos(x))
        return a + b
    return f


programs = st.tuples(st.lists(st.sampled_from(KINDS), min_size=2, max_size=3)
                     .filter(lambda ks: "while" in ks),
                     st.lists(st.booleans(), min_size=1, max_size=1),
                     st.integers(0, 2**31 - 1))


def _inputs(rng):
    x0 = rng.uniform(0.5, 2.0, N)
    return (x0, x0 * 1.5, x0 * 0.5, x0 * 3.0)  # other trip counts, the same trace


def _check_gradient(h, f, x, rng):
    """A compiled gradient against central differences in a random direction
    and against eager reverse mode."""
    v = rng.standard_normal(N)
    eps = 1e-6
    fd = (np.sum(f(x + eps * v)) - np.sum(f(x - eps * v))) / (2 * eps)
    val, grad = h.value_and_grad(x)
    np.testing.assert_allclose(val, np.sum(f(x)), rtol=1e-12)
    np.testing.assert_allclose(grad @ v, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, fa.grad(lambda x: fnp.sum(f(x)))(x), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@settings(max_examples=6, deadline=None)
@given(programs)
def test_nested_loops_on_the_vm(case):
    kinds, ops, seed = case
    f = _program(kinds, ops)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback off the VM would warn
        g = fa.jit(f, backend="c")
        ref = fa.jit(f, backend="numpy")
        h = fa.compile(lambda x: fnp.sum(f(x)), backend="c")
        for x in _inputs(rng):
            want = np.asarray(f(x))
            np.testing.assert_allclose(g(x), want, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(ref(x), want, rtol=1e-12, atol=1e-14)
            # reverse mode through the nested loops, compiled
            _check_gradient(h, f, x, rng)
    # no count is recorded: one trace for inputs that take other counts
    assert g._spec.traces == ref._spec.traces == h._vg.traces == 1


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
def test_nested_loops_on_numba():
    f = _program(("while", "scan"), (False,))
    g = fa.jit(f, backend="numba")
    x0 = np.array([0.7, 1.3, 1.9])
    for x in (x0, x0):
        np.testing.assert_allclose(g(x), f(x), rtol=1e-12, atol=1e-14)
    assert g._spec.traces == 1


def _counted(x):
    """The nesting of the issue's report: an outer while loop on a tolerance and
    an integer counter, an inner one of 3 steps counted by another integer."""
    def cond(s):
        return fnp.logical_and(fnp.sum(fnp.abs(s[0])) > 1e-3, s[1] < 50)

    def body(s):
        y, _ = while_loop(lambda t: t[1] < 3, lambda t: (fnp.sin(t[0]) * 0.9, t[1] + 1),
                          (s[0], 0))
        return y, s[1] + 1
    return while_loop(cond, body, (x, 0))[0]


def _descent(x):
    """A while loop whose body takes a gradient (a few steps of descent)."""
    def body(s):
        v, g = fa.value_and_grad(lambda y: fnp.sum(fnp.sin(y) ** 2))(s[0])
        return s[0] - 0.1 * g, s[1] + 1
    return while_loop(lambda s: s[1] < 5, body, (x, 0))[0]


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@pytest.mark.parametrize("f", [_counted, _descent])
def test_integer_counters_stay_on_the_vm(f):
    """Integer carries are held by the VM as float64 words: no fallback to
    another backend, one trace, values as eager's, the gradient as eager's
    and against central differences."""
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = fa.jit(f, backend="c")
        h = fa.compile(lambda x: fnp.sum(f(x)), backend="c")
        for s in (1.0, 2.0, 3.0):
            x = np.array([0.3, -0.7, 1.1]) * s
            np.testing.assert_allclose(g(x), f(x), rtol=1e-12, atol=1e-15)
            _check_gradient(h, f, x, rng)
    assert g._spec.traces == h._vg.traces == 1


def test_one_trace_for_new_counts():
    f = _program(("while", "fori"), (True,))
    for backend in [b for b in ("c", "numpy") if b in BACKENDS]:
        g = fa.jit(f, backend=backend)
        x = np.ones(N)
        for s in (1.0, 2.0, 4.0):
            np.testing.assert_allclose(g(x * s), f(x * s), rtol=1e-12)
        assert g._spec.traces == 1


def test_saved_run_time_loops_and_a_hostile_length():
    """A tape of nested while loops of run-time length round-trips through the
    saved format (the reference interpreter's values equal); a run-time
    length on a body that is not a while loop's is refused on loading."""
    from fastad.backends.reference import evaluate
    from fastad.core import wire
    f = _program(("while", "scan"), (False,))
    x = np.array([0.7, 1.3, 1.9])
    tape = fa.make_tape(f)(x)
    assert any(i.kwargs.get("length") == -1 for i in tape.instrs if i.prim == "loop")
    again = fa.Tape.from_bytes(tape.to_bytes())
    for s in (1.0, 2.5):
        np.testing.assert_array_equal(evaluate(again, [x * s])[0], f(x * s))
    scan_tape = fa.make_tape(lambda x: scan(lambda c, _: (c * 0.5, None), x, None,
                                            length=3)[0])(x)
    payload = scan_tape._payload()
    payload["instrs"] = [(p, o, i, tuple((k, -1 if k == "length" else v) for k, v in ps), ln)
                         if p == "loop" else (p, o, i, ps, ln)
                         for p, o, i, ps, ln in payload["instrs"]]
    with pytest.raises((fa.TapeError, ValueError), match="while loop"):
        fa.Tape.from_bytes(wire.dumps(wire.TAPE, payload))


# The default backend compiles the first; the others compile on the C VM, or
# the reference without it: Numba's cold compile of a nested while loop's
# Hessian takes minutes, and one case covers it.
_ON_VM = "c" if "c" in BACKENDS else "numpy"


@pytest.mark.parametrize("kinds, backend", [(("while", "fori"), "auto"),
                                            (("scan", "while"), _ON_VM),
                                            (("while", "while"), _ON_VM)])
def test_forward_mode_and_hessians_through_nested_while_loops(kinds, backend):
    """Forward mode against reverse mode, and the Hessian (eager, and compiled)
    against central differences of the gradient."""
    f = _program(kinds, (True,))

    def loss(x):
        return fnp.sum(f(x) ** 2)
    x = np.array([0.7, 1.3, 1.9])
    np.testing.assert_allclose(fa.jacfwd(f)(x), fa.jacrev(f)(x), rtol=1e-12, atol=1e-14)
    hess = fa.hessian(loss)(x)
    grad, eps = fa.grad(loss), 1e-5
    fd = np.stack([(grad(x + eps * e) - grad(x - eps * e)) / (2 * eps) for e in np.eye(N)])
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fa.compile(loss, backend=backend).hessian(x), hess,
                               rtol=1e-12, atol=1e-14)


def test_vmap_of_a_recorded_run_time_loop():
    """A tape holding while loops of run-time length, replayed under vmap,
    batches them as masked loops (each example to its own count): values and
    the gradient of the batch's sum equal each example's."""
    from fastad.core.tracer import replay
    f = _program(("while", "fori"), (True,))
    xs = np.random.default_rng(0).uniform(0.5, 2.0, (4, N)) * np.array([[1], [2], [3], [0.3]])
    tape = fa.make_tape(f)(xs[0])

    def g(x):
        return replay(tape, [x])[0]
    np.testing.assert_array_equal(fa.vmap(g)(xs), np.stack([f(x) for x in xs]))
    grads = fa.grad(lambda a: fnp.sum(fa.vmap(g)(a)))(xs)
    np.testing.assert_allclose(grads, np.stack([fa.grad(lambda x: fnp.sum(f(x)))(x)
                                                for x in xs]), rtol=1e-12, atol=1e-14)


# counts around the reverse modes' thresholds: a chunk of stored states
# (loop_rules.CHUNK), the stored form's bound (CHUNK * MARKS) and RECOMPUTE_MAX
def _threshold_counts():
    from fastad.loop_rules import CHUNK, MARKS, RECOMPUTE_MAX
    edges = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * MARKS - 1, CHUNK * MARKS,
             CHUNK * MARKS + 1, RECOMPUTE_MAX - 1, RECOMPUTE_MAX, RECOMPUTE_MAX + 3}
    return sorted(c for c in edges if c >= 0)


def _counted_by(nested):
    """A while loop run ``n`` steps (n an argument: a count read at run time),
    with a closed-over x and an array carry, at the top level or in a
    fori_loop's body (where its reverse mode is always the run-time form)."""
    def inner(y, x, n):
        def body(c):
            return fnp.sin(c[0]) * 0.9 + 0.2 * x * c[0][::-1], c[1] + 1.0
        return while_loop(lambda c: c[1] < n, body, (y, 0.0))[0]

    def f(x, n):
        if nested:
            return fnp.sum(fori_loop(0, 2, lambda i, y: inner(y, x, n), x) ** 2)
        return fnp.sum(inner(x, x, n) ** 2)
    return f


@pytest.mark.parametrize("backend", [b for b in ("c", "numpy") if b in BACKENDS])
@settings(max_examples=4, deadline=None)
@given(st.booleans(), st.permutations(_threshold_counts()), st.integers(0, 2**31 - 1))
def test_run_time_reverse_around_its_thresholds(backend, nested, counts, seed):
    """Reverse mode of a run-time count on both sides of each threshold, in a
    generated order, through one compiled gradient (nested: traced once, the
    stored and the recomputing forms both recorded): equal to eager's
    gradient (which records the count) bit for bit on the reference backend,
    and against central differences."""
    from fastad.loop_rules import CHUNK, MARKS, RECOMPUTE_MAX
    f = _counted_by(nested)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, N)
    h = fa.compile(f, backend=backend)
    for n in counts:
        want = fa.grad(f)(x, float(n))
        got = h(x, float(n))
        if backend == "numpy":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
        v = rng.standard_normal(N)
        fd = (f(x + 1e-6 * v, float(n)) - f(x - 1e-6 * v, float(n))) / 2e-6
        np.testing.assert_allclose(got @ v, fd, rtol=1e-5, atol=1e-7)
    # nested: one trace for every count; at the top level one for the counts
    # the stored form takes (up to CHUNK * MARKS, guarded by that bound) and
    # one per longer count (checkpointed, guarded by the count; RECOMPUTE_MAX
    # itself too when it comes first)
    longer = len({c for c in counts if c > CHUNK * MARKS})
    assert h._vg.traces == 1 if nested else \
        longer + 1 <= h._vg.traces <= len({c for c in counts if c >= RECOMPUTE_MAX}) + 1
