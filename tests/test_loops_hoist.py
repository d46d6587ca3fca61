"""Reverse mode over stored states computes the VJP body's transcendental
functions of the states for all steps at once (`fastad.loop_hoist`):
generated scans whose steps call sin, exp, tanh and ``**`` of their carries
and inputs, their gradients with and without the move bit for bit (eager,
the reference interpreter, the C VM, Numba), against central finite
differences, and the tape's loop body without the calls moved out."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad import loop_hoist, loop_rules
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from conftest import BACKENDS
from test_loops import _directional_fd

OPS = ("sin", "cos", "exp", "tanh", "pow", "mul", "add_x", "sub_w")
COMPILED = [b for b in ("c", "numba") if b in BACKENDS]


@st.composite
def scans(draw):
    n_carry = draw(st.integers(1, 3))
    return {"ops": [draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3))
                    for _ in range(n_carry)],
            "length": draw(st.integers(1, 30)), "reverse": draw(st.booleans()),
            "ys": draw(st.booleans()), "seed": draw(st.integers(0, 2**16))}


def _apply(op, v, other, x, w):
    if op == "sin":
        return np.sin(v) + 0.1 * other
    if op == "cos":
        return np.cos(v * x)
    if op == "exp":
        return np.exp(0.3 * v) - 1.0
    if op == "tanh":
        return np.tanh(v + w)
    if op == "pow":
        return (v * v + 1.0) ** -0.5
    if op == "mul":
        return 0.5 * v * other
    if op == "add_x":
        return v + x
    return v - w * other


def _loss(prog):
    def loss(init, xs, w):
        def step(carry, x):
            new = list(carry)
            for j, ops in enumerate(prog["ops"]):
                v = carry[j]
                for op in ops:
                    v = _apply(op, v, carry[(j + 1) % len(carry)], x, w)
                new[j] = v
            return tuple(new), (np.sin(new[0]) * x if prog["ys"] else None)
        carry, ys = fa.scan(step, tuple(init[k] for k in range(len(prog["ops"]))), xs,
                            reverse=prog["reverse"])
        total = sum(c * (k + 1) for k, c in enumerate(carry))
        if prog["ys"]:
            total = total + np.sum(ys)
        return total
    return loss


def _args(prog):
    rng = np.random.default_rng(prog["seed"])
    return [rng.uniform(-1, 1, len(prog["ops"])), rng.uniform(-0.5, 0.5, prog["length"]),
            rng.uniform(-1, 1)]


def _not_moved(monkeypatch):
    monkeypatch.setattr(loop_hoist, "split", lambda *args: None)
    monkeypatch.setattr(loop_rules, "residuals", lambda *args: [])


def _sweeps(tape):
    """The loop instructions of ``tape``, in order."""
    return [ins for ins in tape.instrs if ins.prim == "loop"]


@settings(max_examples=25, deadline=None)
@given(scans())
def test_moved_calls_give_the_same_gradients_bit_for_bit(prog):
    f, args = _loss(prog), _args(prog)
    grad = fa.grad(f, argnums=(0, 1, 2))
    tape = optimize(fa.make_tape(grad)(*args))
    got = grad(*args)
    with pytest.MonkeyPatch.context() as mp:
        _not_moved(mp)
        want = grad(*args)
        plain = optimize(fa.make_tape(grad)(*args))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # the reference interpreter on the tape with the calls moved out, too
    for a, b in zip(evaluate(tape, list(args)), evaluate(plain, list(args))):
        np.testing.assert_array_equal(a, b)
    direction = [np.random.default_rng(prog["seed"] + 1).standard_normal(np.shape(a))
                 for a in args]
    fd = _directional_fd(f, args, direction)
    along = sum(np.sum(g * d) for g, d in zip(got, direction))
    np.testing.assert_allclose(along, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_backends_match_the_reference_interpreter(backend):
    prog = {"ops": [["sin", "mul"], ["tanh"], ["pow", "add_x"]], "length": 40,
            "reverse": False, "ys": True, "seed": 3}
    f, args = _loss(prog), _args(prog)
    tape = optimize(fa.make_tape(fa.grad(f, argnums=(0, 1, 2)))(*args))
    want = evaluate(tape, list(args))
    got = fa.compile(f, argnums=(0, 1, 2), backend=backend)(*args)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
        if backend == "c":  # the VM calls NumPy's loops, as the interpreter does
            np.testing.assert_array_equal(a, b)


def _pendulum(params, track):
    def step(carry, obs):
        theta, omega, loss = carry
        omega = omega - 0.01 * (params[0] * np.sin(theta) + params[1] * omega)
        theta = theta + 0.01 * omega
        return (theta, omega, loss + (theta - obs) ** 2), None
    return fa.scan(step, (1.2, 0.0, 0.0), track)[0][2]


def test_the_pendulum_s_reverse_loop_calls_no_sin_or_cos():
    """Its states are stored: the VJP's cos of them runs over all steps
    before the reverse loop, and its sin is the forward loop's, stored
    beside the states; the reverse loop's body is arithmetic."""
    args = (np.array([8.0, 0.1]), np.linspace(1.0, -0.5, 300))
    tape = optimize(fa.make_tape(fa.grad(_pendulum))(*args))
    outer = {ins.prim for ins in tape.instrs}
    assert "cos" in outer and "sin" not in outer
    loops = _sweeps(tape)
    assert len(loops) == 2  # the forward loop, storing its states, and the reverse one
    forward, reverse = loops
    body = forward.kwargs["body"].tape
    sin = [i.out for i in body.instrs if i.prim == "sin"]
    assert len(sin) == 1 and body.outputs[-1] == sin[0]  # stored after the states
    assert not {"sin", "cos"} & {i.prim for i in reverse.kwargs["body"].tape.instrs}
    for backend in COMPILED:
        np.testing.assert_array_equal(fa.compile(_pendulum, backend=backend)(*args),
                                      evaluate(tape, list(args))[0])


def test_checkpointed_and_vmapped_loops_keep_their_calls():
    """Recomputed states (a checkpointed loop) and vmap's padded loops are
    not split: nothing changes there."""
    def f(w, xs):
        return fa.scan(lambda c, x: (np.sin(c * w) + x, None), 0.3, xs, checkpoint=4)[0]
    xs = np.linspace(0, 1, 16)
    tape = optimize(fa.make_tape(fa.grad(f))(0.7, xs))
    assert "sin" not in {ins.prim for ins in tape.instrs}
    np.testing.assert_allclose(fa.grad(f)(0.7, xs),
                               _directional_fd(lambda w: f(w, xs), [0.7], [1.0]), rtol=1e-6)
