"""Reverse mode's loop over checkpointed chunks on the Numba backend, its
chunk's recomputation overlapped with the previous chunk's VJP in one
``for`` loop (`backends/numba_loop_pipeline.py`): generated scans of scalar
carries and per-step inputs, their compiled gradients against the
reference interpreter on the same tape (bit for bit where every operation
is exact in both), against central finite differences, and the pipeline
taken wherever reverse mode has two chunks or more."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad import loop_rules
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from conftest import BACKENDS
from test_loops import _directional_fd

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
FEW = settings(max_examples=4, deadline=None)  # each example compiles a kernel cold

OPS = ("mul", "add_x", "scale", "sub_w", "sin")
EXACT = {"mul", "add_x", "scale", "sub_w"}


@st.composite
def scalar_scans(draw):
    n_carry = draw(st.integers(1, 3))
    length = draw(st.integers(2, 24))
    return {"ops": [draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3))
                    for _ in range(n_carry)],
            "n_xs": draw(st.integers(1, 2)), "length": length,
            "checkpoint": draw(st.none() | st.integers(2, 5)),
            "reverse": draw(st.booleans()), "ys": draw(st.booleans()),
            "seed": draw(st.integers(0, 2**16))}


def _apply(op, v, other, x, w):
    if op == "mul":
        return 0.5 * v * other
    if op == "add_x":
        return v + x
    if op == "scale":
        return v * 0.7
    if op == "sub_w":
        return v - w * other
    return np.sin(v)


def _loss(prog, scan):
    def loss(init, xs, w):
        def step(carry, x):
            new = list(carry)
            for j, ops in enumerate(prog["ops"]):
                v = carry[j]
                for op in ops:
                    v = _apply(op, v, carry[(j + 1) % len(carry)], x[j % len(x)], w)
                new[j] = v
            return tuple(new), (new[0] * x[0] if prog["ys"] else None)
        carry, ys = scan(step, tuple(init[k] for k in range(len(prog["ops"]))),
                         tuple(xs[k] for k in range(prog["n_xs"])))
        total = sum(c * (k + 1) for k, c in enumerate(carry))
        if prog["ys"]:
            total = total + np.sum(ys * np.arange(1, prog["length"] + 1))
        return total
    return loss


def _scan(prog):
    def scan(step, init, xs):
        return fa.scan(step, init, xs, reverse=prog["reverse"], checkpoint=prog["checkpoint"])
    return scan


def _unrolled_scan(prog):
    def scan(step, carry, xs):
        ys = [None] * prog["length"]
        order = range(prog["length"] - 1, -1, -1) if prog["reverse"] else range(prog["length"])
        for t in order:
            carry, ys[t] = step(carry, tuple(x[t] for x in xs))
        return carry, (np.stack(ys) if prog["ys"] else None)
    return scan


def _args(prog):
    rng = np.random.default_rng(prog["seed"])
    return [rng.uniform(-1, 1, len(prog["ops"])),
            rng.uniform(-0.5, 0.5, (prog["n_xs"], prog["length"])), rng.uniform(-1, 1)], rng


@FEW
def _overlapped(tape, exe):
    """Whether reverse mode recomputes a chunk beside the VJP of another:
    in the tape (`loop_rules._Sweep.pipelined_back`: a loop over chunks
    carrying a chunk's states, whose step is one loop), or by the Numba
    generator overlapping a step's two loops (`numba_loop_pipeline`)."""
    if "_next = " in exe.source:
        return True
    for ins in tape.instrs:
        if ins.prim == "loop":
            body = ins.kwargs["body"]
            inner = [i for i in body.tape.instrs if i.prim == "loop"]
            if len(inner) == 1 and any(a.shape[:1] == (inner[0].kwargs["length"],)
                                       for a in body.carry_avals):
                return True
    return False


@given(scalar_scans())
def test_pipelined_chunk_loops_against_the_reference_and_differences(prog):
    from fastad.backends import numba_backend
    args, rng = _args(prog)
    f = _loss(prog, _scan(prog))
    tape = optimize(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1, 2)))(*args))
    exe = numba_backend.build(tape)
    got, want = exe.run(list(args)), evaluate(tape, list(args))
    # (the loss sums the per-step outputs: NumPy's pairwise order, Numba's in turn)
    exact = all(op in EXACT for ops in prog["ops"] for op in ops) and not prog["ys"]
    for a, b in zip(got, want):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:  # Numba's sin rounds on its own
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    chunk = prog["checkpoint"] or max(1, int(np.sqrt(prog["length"])))
    stored = not prog["checkpoint"] and loop_rules._stores_all(
        next(i for i in tape.instrs if i.prim == "loop").kwargs["body"], prog["length"])
    if not stored and chunk >= 2 and prog["length"] >= 2 * chunk:  # two chunks or more: overlapped
        assert _overlapped(tape, exe)
    direction = [rng.standard_normal(np.shape(a)) for a in args]
    fd = _directional_fd(_loss(prog, _unrolled_scan(prog)), args, direction)
    along = sum(np.sum(g * d) for g, d in zip(got[1:], direction))
    np.testing.assert_allclose(along, fd, rtol=1e-6, atol=1e-8)


def test_the_rk4_fit_gradient_is_overlapped_and_bit_for_bit_the_vm_s(monkeypatch):
    monkeypatch.setattr(loop_rules, "STORE_BYTES", 0)  # checkpointed, as a long fit is
    monkeypatch.setattr(loop_rules, "STORE_RATIO", 0.0)
    import sys, os
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from recurrences import make_rk4_scan
    from usercode import _rk4_trajectory
    data = _rk4_trajectory(np.array([2.5, 0.2]), 300)
    theta = np.array([2.0, 0.3])
    f = make_rk4_scan(fa)
    tape = optimize(fa.make_tape(fa.grad(f))(theta, data))
    from fastad.backends import numba_backend
    exe = numba_backend.build(tape)
    assert _overlapped(tape, exe)
    got = exe.run([theta, data])
    want = evaluate(tape, [theta, data])
    np.testing.assert_array_equal(got[0], want[0])
    rng = np.random.default_rng(0)
    d = rng.standard_normal(2)
    fd = _directional_fd(lambda th, x: f(th, x), [theta, data], [d, np.zeros_like(data)])
    np.testing.assert_allclose(np.dot(got[0], d), fd, rtol=1e-6)
