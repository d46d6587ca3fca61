"""Loop instructions on the Numba backend: a ``for`` loop around the body's
generated code (`backends/numba_loop_instr.py`), against the reference
interpreter on the same tape (bit for bit where the body's operations are
exact in both), the eager values, and central finite differences in random
directions.  The programs are the loop tests' generators: scans with
several carried vectors, stacked inputs and outputs, reverse scans and
checkpoint strides (`test_loops.loop_programs`), and Python recurrences
found as loops (`test_recurrence.programs`); their gradients' tapes hold
reverse mode's loops over chunks, which hold inner loops."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import fastad as fa
from fastad import loop_rules
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from conftest import BACKENDS
from test_loops import (EXACT_OPS, _directional_fd, _flat_args, _from_flat, _gradient_matches,
                        _inputs, _scan_loss, _step, loop_programs, nested_scan_loss)
from test_recurrence import _args, _bits, make_program, programs

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
# each example compiles two kernels cold: a few, not the suite's dozen
FEW = settings(max_examples=5, deadline=None)


def _numba_and_reference(tape, args):
    """``tape`` (optimized) run by a Numba kernel and by the reference
    interpreter, and the kernel's source."""
    from fastad.backends import numba_backend
    tape = optimize(tape)
    assert any(ins.prim == "loop" for ins in tape.instrs)
    exe = numba_backend.build(tape)
    return exe.run(list(args)), evaluate(tape, list(args)), exe.source


@contextlib.contextmanager
def _no_host_calls():
    """A loop left to a host call would warn; these must not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _leaves(tree):
    return [leaf for item in tree for leaf in _leaves(item)] \
        if isinstance(tree, (tuple, list)) else [np.asarray(tree)]


@FEW
@given(loop_programs())
def test_generated_scans_and_their_gradients_against_the_reference(prog):
    init, xs, w, rng = _inputs(prog)
    args = _flat_args(init, xs, w)

    def loop_only(stacked, xs, w):
        return fa.scan(_step(prog, w), list(stacked), xs, reverse=prog["reverse"],
                       checkpoint=prog["checkpoint"])
    got, want, source = _numba_and_reference(fa.make_tape(loop_only)(*args), args)
    assert "for b1_t in range(" in source and "with objmode" not in source
    exact = all(op in EXACT_OPS for ops in prog["ops"] for op in ops) and not prog["ys"]
    for a, b in zip(got, want):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:  # Numba's transcendental functions and matmul round on their own
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    f = _from_flat(_scan_loss(prog))
    tape = fa.make_tape(fa.value_and_grad(f, argnums=(0, 1, 2)))(*args)
    got, want, source = _numba_and_reference(tape, args)
    assert "with objmode" not in source  # reverse mode's loops, nested, in the kernel
    _gradient_matches(got, want, prog, args, rng)


@FEW
@given(programs())
def test_recurrences_found_in_python_loops_run_as_numba_loops(spec):
    """A Python loop traced step by step, found as a loop instruction: the
    Numba kernel of the found loop against the reference interpreter on the
    unrolled tape, and the compiled gradient against finite differences."""
    from fastad.transforms.recurrence import find_recurrences
    f = make_program(spec)
    args = _args(spec)
    tape = fa.make_tape(f)(*args)
    looped = find_recurrences(tape)
    got, want, _ = _numba_and_reference(looped, args)
    unrolled = evaluate(tape, list(args))
    np.testing.assert_allclose(got[0], unrolled[0], rtol=1e-13, atol=1e-15)
    assert _bits(want) == _bits(unrolled)
    with _no_host_calls():
        g = fa.compile(f, argnums=(0, 1, 2), backend="numba")
        value, grads = g.value_and_grad(*args)
    assert value == pytest.approx(f(*args), rel=1e-12, abs=1e-12)
    rng = np.random.default_rng(spec["steps"])
    direction = [rng.standard_normal(a.shape) for a in args]
    along = sum(np.sum(g * d) for g, d in zip(grads, direction))
    np.testing.assert_allclose(along, _directional_fd(f, list(args), direction),
                               rtol=1e-5, atol=1e-7)


def test_nested_scans_forward_and_reverse_compile_without_host_calls():
    f = nested_scan_loss
    rng = np.random.default_rng(7)
    x, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (9, 3))
    with _no_host_calls():
        g = fa.compile(f, argnums=(0, 1), backend="numba")
        value, grads = g.value_and_grad(x, xs)
    want = fa.value_and_grad(f, argnums=(0, 1))(x, xs)
    np.testing.assert_allclose(value, want[0], rtol=1e-13)
    for a, b in zip(grads, want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    d = [rng.standard_normal(x.shape), rng.standard_normal(xs.shape)]
    along = sum(np.sum(a * b) for a, b in zip(grads, d))
    np.testing.assert_allclose(along, _directional_fd(f, [x, xs], d), rtol=1e-6, atol=1e-8)
    # forward mode: a loop over (state, tangent)
    tangent = fa.jit(lambda x, xs: fa.jvp(lambda x: f(x, xs), (x,), (d[0],))[1], backend="numba")
    with _no_host_calls():
        np.testing.assert_allclose(tangent(x, xs), np.sum(grads[0] * d[0]), rtol=1e-12)


def test_fori_and_while_loops_with_integer_carries_run_natively():
    """The step counter a fori_loop or while_loop carries is an integer, which
    the C VM's LOOP refuses: Numba runs it in the loop, values and
    gradients as eagerly."""
    def fori(x, w):
        return np.sum(fa.fori_loop(2, 9, lambda i, c: np.tanh(w @ c + i * 0.1), x))

    def while_(x):
        _, y = fa.while_loop(lambda c: c[0] < 7, lambda c: (c[0] + 1, np.sin(c[1]) * 1.3),
                             (0, x))
        return np.sum(y)
    rng = np.random.default_rng(2)
    x, w = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (3, 3))
    with _no_host_calls():
        got = fa.compile(fori, argnums=(0, 1), backend="numba").value_and_grad(x, w)
        got_while = fa.compile(while_, backend="numba").value_and_grad(x)
    for (value, grads), (want_value, want) in (
            (got, fa.value_and_grad(fori, argnums=(0, 1))(x, w)),
            (got_while, fa.value_and_grad(while_)(x))):
        np.testing.assert_allclose(value, want_value, rtol=1e-13)
        for a, b in zip(np.atleast_1d(grads) if not isinstance(grads, tuple) else grads,
                        np.atleast_1d(want) if not isinstance(want, tuple) else want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    d = rng.standard_normal(3)
    np.testing.assert_allclose(np.dot(got_while[1], d), _directional_fd(while_, [x], [d]),
                               rtol=1e-6)


def test_second_order_through_a_loop_on_numba():
    def f(x):
        c, _ = fa.scan(lambda c, _: (np.sin(c) * 1.1 + 0.1 * c * c, None), x, None, length=6)
        return np.sum(c * c)
    x, v = np.array([0.3, -0.4, 0.5]), np.array([1.0, 0.5, -2.0])

    def hvp(x):
        return fa.jvp(fa.grad(f), (x,), (v,))[1]
    with _no_host_calls():
        got = fa.jit(hvp, backend="numba")(x)
    np.testing.assert_allclose(got, hvp(x), rtol=1e-12, atol=1e-14)
    g = fa.grad(f)
    np.testing.assert_allclose(got, (g(x + 1e-6 * v) - g(x - 1e-6 * v)) / 2e-6, rtol=1e-6,
                               atol=1e-8)


def test_carries_that_swap_several_dtypes_and_empty_loops():
    """A carry that swaps and one that passes through; a float32 carry, a
    float64 one and a bool per-step output (a float64 packed result); a scan
    of no steps: bit for bit the eager values."""
    def swap(a, b, xs):
        return fa.scan(lambda c, x: ((c[1], c[0] * x, c[2]), c[0] + c[2]), (a, b, a * 2.0), xs)

    def dtypes(a, b, xs):
        (a, b), ys = fa.scan(lambda c, x: ((c[0] * np.float32(0.5) + np.float32(1.0),
                                            c[1] * 0.9 + x), (c[0], c[1] > 0)), (a, b), xs)
        return a, b, ys[0], ys[1]

    def empty(a, b, xs):
        return fa.scan(lambda c, x: (c * x, c + x), a, xs[:0])
    rng = np.random.default_rng(5)
    a, b, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0.5, 1.5, (7, 3))
    a32 = a.astype(np.float32)
    for f, args in ((swap, (a, b, xs)), (dtypes, (a32, b, xs)), (empty, (a, b, xs))):
        with _no_host_calls():
            got = fa.jit(f, backend="numba")(*args)
        want = f(*args)
        for x, y in zip(_leaves(got), _leaves(want)):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


def test_a_body_with_a_primitive_numba_lacks_stays_a_host_call():
    """erfcx has no Numba code: the loop holding it is a host call (with the
    notice), the rest compiled, values and gradients as eagerly."""
    from fastad.backends import fallback

    def f(x, xs):
        c, ys = fa.scan(lambda c, x: (fa.scipy.special.erfcx(c + 2.0) * 0.5 + x, c), x, xs)
        return np.sum(c) + np.sum(ys)
    x, xs = np.array([0.3, 0.5]), np.random.default_rng(0).uniform(0, 1, (5, 2))
    loop = next(ins for ins in fa.make_tape(f)(x, xs).instrs if ins.prim == "loop")
    assert "erfcx" in fallback.refused("numba", loop)
    with pytest.warns(UserWarning, match="does not implement .*loop of a body that runs erfcx"):
        g = fa.compile(f, backend="numba")
        got = g(x, xs)
    np.testing.assert_allclose(got, fa.grad(f)(x, xs), rtol=1e-12)
    d = np.array([0.7, -1.2])
    np.testing.assert_allclose(np.dot(got, d), _directional_fd(lambda x: f(x, xs), [x], [d]),
                               rtol=1e-6)


def test_auto_counts_a_loops_steps_and_compiles_its_body_once(monkeypatch):
    """The tiering rule reads a loop's scalar instructions times its trip count
    as Numba's saving, and its body once as the compile cost: a longer loop
    is promoted after fewer calls, at the same compile cost."""
    from fastad.backends import fallback
    # both checkpointed (a short loop's states would be stored: another tape)
    monkeypatch.setattr(loop_rules, "STORE_BYTES", 0)
    monkeypatch.setattr(loop_rules, "STORE_RATIO", 0.0)

    def tape_of(steps):
        def f(x):
            c, _ = fa.scan(lambda c, _: ((c[0] * 0.9 + c[1], np.sin(c[1]) * c[0]), None), x,
                           None, length=steps)
            return c[0] + c[1]
        return optimize(fa.make_tape(fa.grad(f))((0.3, 0.4)))
    short, long = tape_of(50), tape_of(5000)
    stats = [fallback.tape_stats(t) for t in (short, long)]
    assert stats[0]["instructions"] == stats[1]["instructions"]
    assert stats[1]["loop_scalar"] > 50 * stats[0]["loop_scalar"] > 0
    assert fallback.promote_after(long, False) < fallback.promote_after(short, False) / 50
