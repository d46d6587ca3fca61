"""Loops whose bodies update an array point by point (``u[i, j] = ...``
sweeps, found as loops in Python code) on the Numba backend: the loads of
old elements after an update moved before it so the update writes in place
(`numba_loops._reads_before_writes`), checked on generated sweeps against
the reference interpreter on the compiled gradient's tape (bit for bit: the
sweeps' only operations are + and *), and against central differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.backends.numba_loops import _reads_before_writes
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from conftest import BACKENDS
from test_loops import _directional_fd

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
FEW = settings(max_examples=4, deadline=None)  # each example compiles a kernel cold


@st.composite
def sweeps(draw):
    n = draw(st.integers(3, 5))
    points = draw(st.lists(st.tuples(st.integers(1, n - 2), st.integers(1, n - 2)),
                           min_size=1, max_size=6))
    return {"n": n, "points": points, "sweeps": draw(st.integers(6, 10)),
            "weights": draw(st.lists(st.sampled_from([0.25, 0.5, -0.3, 0.125]),
                                     min_size=3, max_size=3)),
            "seed": draw(st.integers(0, 2**16))}


def _loss(prog):
    a, b, c = prog["weights"]

    def loss(source, target):
        u = 0.0 * source
        for _ in range(prog["sweeps"]):
            for i, j in prog["points"]:
                u[i, j] = a * (u[i - 1, j] + u[i + 1, j]) + b * u[i, j - 1] \
                    + c * u[i, j] * u[i, j + 1] + source[i, j]
        return np.sum((u - target) * (u - target))
    return loss


def _bodies(tape):
    for ins in tape.instrs:
        if ins.prim == "loop":
            yield ins.kwargs["body"].tape
            yield from _bodies(ins.kwargs["body"].tape)


@FEW
@given(sweeps())
def test_point_update_sweeps_against_the_reference_and_differences(prog):
    from fastad.backends import numba_backend
    rng = np.random.default_rng(prog["seed"])
    n = prog["n"]
    args = [rng.uniform(0, 1, (n, n)), rng.uniform(0, 0.1, (n, n))]
    f = _loss(prog)
    looped = fa.compile(f, backend="numba")  # the Python loop found as a loop
    grad = looped(*args)
    tape = looped.tape  # the compiled gradient's: the value, then the gradient
    for body in _bodies(tape):  # the reordering is exact on every body
        moved = _reads_before_writes(body)
        assert sorted(i.out for i in moved.instrs) == sorted(i.out for i in body.instrs)
    exe = numba_backend.build(tape)
    got, want = exe.run(list(args)), evaluate(tape, list(args))
    for x, y in zip(got, want):
        if np.ndim(x) == 0:  # the loss: a sum, which rounds its own way
            np.testing.assert_allclose(x, y, rtol=1e-13)
        else:
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(grad, got[-1])
    direction = [rng.standard_normal((n, n)), np.zeros((n, n))]
    fd = _directional_fd(f, args, direction)
    np.testing.assert_allclose(np.sum(grad * direction[0]), fd, rtol=1e-6, atol=1e-8)


def test_the_sweep_gradient_writes_its_points_in_place():
    """Reverse mode of a sweep of point updates: each update zeroes its
    point's adjoint, then the old element is read; with the load moved first
    the adjoint array is updated in place, not copied per point."""
    prog = {"n": 5, "points": [(1, 1), (2, 2), (3, 3), (2, 1), (1, 3)], "sweeps": 8,
            "weights": [0.25, 0.5, 0.125], "seed": 0}
    rng = np.random.default_rng(1)
    args = [rng.uniform(0, 1, (5, 5)), rng.uniform(0, 0.1, (5, 5))]
    g = fa.compile(_loss(prog), backend="numba")
    g(*args)
    tape = g.tape
    assert any(True for _ in _bodies(tape))  # the sweeps are a loop
    from fastad.backends import numba_backend
    exe = numba_backend.build(tape)
    source = exe.source
    updates = sum(1 for body in [tape, *_bodies(tape)] for i in body.instrs
                  if i.prim == "scatter_set")
    assert source.count(".copy()") < updates
    got, want = exe.run(list(args)), evaluate(tape, list(args))
    np.testing.assert_array_equal(got[-1], want[-1])


@st.composite
def carried_updates(draw):
    n = draw(st.integers(3, 6))
    return {"n": n, "points": draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)),
            "length": draw(st.integers(1, 9)), "reverse": draw(st.booleans()),
            "checkpoint": draw(st.none() | st.integers(1, 3)),
            "seed": draw(st.integers(0, 2**16))}


def _scan_of_updates(prog):
    def f(u0, xs):
        def step(u, x):
            for i in prog["points"]:  # point updates of the carried array itself
                u[i] = 0.5 * u[i - 1] + x * u[(i + 1) % prog["n"]]
            return u, u[0] * x
        u, ys = fa.scan(step, u0, xs, reverse=prog["reverse"], checkpoint=prog["checkpoint"])
        return np.sum(u * u) + np.sum(ys)
    return f


@FEW
@given(carried_updates())
def test_a_scan_updating_its_carried_array_in_place(prog):
    """The loop owns its carried array (a copy of the first, then each step's
    output), so the body writes it in place; the caller's array is left as
    it was, and values and gradients are the reference interpreter's."""
    from fastad.backends import numba_backend
    rng = np.random.default_rng(prog["seed"])
    args = [rng.uniform(-1, 1, prog["n"]), rng.uniform(-0.5, 0.5, prog["length"])]
    kept = [a.copy() for a in args]
    f = _scan_of_updates(prog)
    tape = optimize(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1)))(*args))
    assert any(i.prim == "loop" for i in tape.instrs)
    got, want = numba_backend.build(tape).run(list(args)), evaluate(tape, list(args))
    for a, b in zip(args, kept):
        np.testing.assert_array_equal(a, b)
    for x, y in zip(got, want):
        if np.ndim(x) == 0:  # the loss: sums round their own way
            np.testing.assert_allclose(x, y, rtol=1e-13)
        else:
            np.testing.assert_array_equal(x, y)
    direction = [rng.standard_normal(a.shape) for a in args]
    fd = _directional_fd(f, args, direction)
    along = sum(np.sum(g * d) for g, d in zip(got[1:], direction))
    np.testing.assert_allclose(along, fd, rtol=1e-6, atol=1e-8)
