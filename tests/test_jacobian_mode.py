"""jacobian(mode="auto"): the mode whose batched tape is estimated to cost
less (fastad.transforms.cost), with the values of both fixed modes."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
from fastad import api
from fastad.core.tape import Aval, Instr, Tape
from fastad.transforms import cost, forward, reverse
from helpers import central_difference_jacobian


def _problem(n, m, seed=0, hidden=4):
    """The function of benchmarks/jacobian_sweep.py."""
    r = np.random.default_rng(seed)
    a, b, c = (r.standard_normal((hidden, n)), r.standard_normal((m, hidden)),
               r.standard_normal((m, n)))

    def f(x):
        return np.tanh(b @ np.sin(a @ x)) * (c @ x)
    return f, r.standard_normal(n)



def _estimates(f, x, compiled):
    """Forward and reverse cost estimates, computed here from the two tapes."""
    tape = fa.make_tape(f)(x)
    m = int(np.prod(tape.avals[tape.outputs[0]].shape))
    flags = dict(batched=[False, True], dynamic=[compiled, False], folded=compiled,
                 weights=cost.COMPILED if compiled else cost.EAGER,
                 wanted=[1] if compiled else None)
    return (cost.batched_cost(forward.jvp_tape(tape, [0], [x]), size=x.size, **flags),
            cost.batched_cost(reverse.vjp_tape(tape, [0], [x]), size=m, **flags))


SHAPES = [(3, 3), (6, 2), (2, 6), (8, 3), (3, 8), (12, 2), (2, 12)]


@pytest.mark.parametrize("n, m", SHAPES)
def test_auto_agrees_with_both_modes_and_finite_differences(n, m):
    f, x = _problem(n, m, seed=n * 31 + m)
    expected = central_difference_jacobian(f, x)
    values = {mode: fa.jacobian(f, mode=mode)(x) for mode in ("fwd", "rev", "auto")}
    for mode, jac in values.items():
        np.testing.assert_allclose(jac, expected, rtol=1e-7, atol=1e-8, err_msg=mode)
    np.testing.assert_allclose(values["auto"], values["fwd"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(values["auto"], values["rev"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n, m", SHAPES)
def test_compiled_auto_agrees_with_the_reference_interpreter(n, m, compiled_backend):
    f, x = _problem(n, m, seed=n * 31 + m)
    reference = fa.jit(fa.jacobian(f, mode="auto"), backend="numpy")(x)
    np.testing.assert_allclose(reference, central_difference_jacobian(f, x), rtol=1e-7, atol=1e-8)
    for mode in ("fwd", "rev", "auto"):
        jac = fa.jit(fa.jacobian(f, mode=mode), backend=compiled_backend)(x)
        np.testing.assert_allclose(jac, reference, rtol=1e-12, atol=1e-14,
                                   err_msg=f"{compiled_backend} {mode}")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("n, m", SHAPES)
def test_auto_picks_the_cheaper_estimated_tape(n, m, compiled):
    f, x = _problem(n, m, seed=n * 31 + m)
    fwd_cost, rev_cost = _estimates(f, x, compiled)
    picked = fa.api.jacobian_mode(f, compiled=compiled)(x)
    assert picked == ("fwd" if fwd_cost <= rev_cost else "rev"), (fwd_cost, rev_cost)


def test_both_modes_are_picked_between_the_decisive_pass_ratios():
    picks = set()
    for n, m in SHAPES:
        f, x = _problem(n, m, seed=n * 31 + m)
        picks |= {fa.api.jacobian_mode(f, compiled=c)(x) for c in (False, True)}
    assert picks == {"fwd", "rev"}


def test_the_sweep_point_the_pass_counts_got_wrong():
    """n/m = 4, compiled: reverse mode has four times fewer passes, but its
    products with the (m, m) cotangent seeds cost more than forward mode's
    tangents, whose products with the seeds run at trace time."""
    f, x = _problem(200, 50, hidden=32)
    fwd_cost, rev_cost = _estimates(f, x, compiled=True)
    assert fwd_cost < rev_cost
    assert fa.api.jacobian_mode(f, compiled=True)(x) == "fwd"


@pytest.mark.parametrize("n_in, n_out, mode", [(1, 100, "fwd"), (10, 1000, "fwd"),
                                               (1000, 10, "rev"), (100, 1, "rev")])
def test_far_apart_pass_counts_decide_without_estimates(n_in, n_out, mode):
    def no_estimate():
        raise AssertionError("estimated costs although the pass counts decide")
    assert api.auto_mode(n_in, n_out, no_estimate) == mode


@pytest.mark.parametrize("costs, mode", [((1.0, 2.0), "fwd"), ((2.0, 1.0), "rev"),
                                         ((1.0, 1.0), "fwd")])
def test_close_pass_counts_take_the_cheaper_estimate(costs, mode):
    assert api.auto_mode(50, 100, lambda: costs) == mode
    assert api.auto_mode(100, 50, lambda: costs) == mode


def test_far_apart_pass_counts_build_one_tape(monkeypatch):
    built = []
    monkeypatch.setattr(forward, "jvp_tape", _counting(forward.jvp_tape, built, "fwd"))
    monkeypatch.setattr(reverse, "vjp_tape", _counting(reverse.vjp_tape, built, "rev"))
    f, x = _problem(40, 2)
    fa.jacobian(f)(x)
    assert built == ["rev"]


def test_the_estimate_is_made_once_per_tape_structure(monkeypatch):
    api._PICKED.clear()
    built = []
    monkeypatch.setattr(forward, "jvp_tape", _counting(forward.jvp_tape, built, "fwd"))
    monkeypatch.setattr(reverse, "vjp_tape", _counting(reverse.vjp_tape, built, "rev"))
    f, x = _problem(5, 5)
    jac = fa.jacobian(f)
    first = jac(x)
    assert sorted(built) == ["fwd", "rev"]
    del built[:]
    np.testing.assert_allclose(jac(x + 0.5), central_difference_jacobian(f, x + 0.5), rtol=1e-7,
                               atol=1e-8)
    assert len(built) == 1
    assert first.shape == (5, 5)


def _counting(fn, log, name):
    def counted(*args, **kwargs):
        log.append(name)
        return fn(*args, **kwargs)
    return counted


# -- the cost model ------------------------------------------------------------------
def _matmul_tape(k=3, n=4):
    """y = a @ s for a constant a (k, n) and an input s (n, 1); z = sin(y)."""
    f64 = np.dtype(np.float64)
    tape = Tape()
    s = tape.new_slot(Aval((n, 1), f64))
    a = tape.new_slot(Aval((k, n), f64))
    y = tape.new_slot(Aval((k, 1), f64))
    z = tape.new_slot(Aval((k, 1), f64))
    tape.inputs, tape.consts = [s], {a: np.ones((k, n))}
    tape.instrs = [Instr("matmul", y, (a, s)), Instr("sin", z, (y,))]
    tape.outputs = [y, z]
    return tape


def test_cost_charges_each_instruction_its_work_times_the_batch():
    w = cost.Weights(instruction=1.0, multiply_add=10.0, batched_multiply_add=0.0,
                     element=0.0, transcendental=100.0, moved=0.0)
    tape = _matmul_tape(k=3, n=4)
    one = cost.batched_cost(tape, [False], [True], 7, folded=False, weights=w)
    assert one == 2 * 1.0 + 12 * 10.0 + 3 * 100.0
    batched = cost.batched_cost(tape, [True], [True], 7, folded=False, weights=w)
    assert batched == 2 * 1.0 + 7 * (12 * 10.0 + 3 * 100.0)


def test_cost_of_work_on_constants_alone_is_folded_when_compiled():
    w = cost.Weights(1.0, 10.0, 0.0, 0.0, 100.0, 0.0)
    tape = _matmul_tape()
    assert cost.batched_cost(tape, [True], [False], 7, folded=True, weights=w) == 0.0
    assert cost.batched_cost(tape, [True], [False], 7, folded=False, weights=w) > 0.0


def test_cost_drops_what_only_unwanted_outputs_need():
    w = cost.Weights(1.0, 10.0, 0.0, 0.0, 100.0, 0.0)
    tape = _matmul_tape(k=3, n=4)
    assert cost.batched_cost(tape, [False], [True], 7, folded=True, weights=w,
                             wanted=[0]) == 1.0 + 12 * 10.0
