"""``backend="auto"`` follows the documented rule (fastad/backends/fallback.py):
start on the C VM, move to Numba after the calls that pay for its compile,
only where Numba is predicted faster per call, and keep the faster of the two.
Nothing here depends on timing except the last step's choice, which is
tested with executables a thousand times apart."""
import math
import time

import numpy as np
import pytest

import fastad as fa
from fastad import backends
from fastad.backends import fallback
from helpers import rosenbrock, rosenbrock_loop


def tape_of(f, n, reroll=True):
    g = fa.compile(f, backend="numpy", reroll=reroll)
    g(np.linspace(-1.0, 1.0, n))
    return g.tape


def test_scalar_tapes_never_leave_the_vm():
    tape = tape_of(rosenbrock_loop, 60, reroll=False)
    stats = fallback.tape_stats(tape)
    assert stats["scalar_share"] > 0.8 and stats["elementwise_elements"] == 0
    assert fallback.promote_after(tape, numba_cached=False) == math.inf
    assert fallback.promote_after(tape, numba_cached=True) == math.inf


def test_transcendental_functions_count_for_more():
    def f(x):
        return np.sum(np.sin(x) * x)
    def g(x):
        return np.sum((x * 0.5) * x)
    sin_tape, cheap_tape = tape_of(f, 10**4), tape_of(g, 10**4)
    assert fallback.tape_stats(sin_tape)["transcendental_elements"] > 0
    assert fallback.saving_per_call(fallback.tape_stats(sin_tape)) > \
        fallback.saving_per_call(fallback.tape_stats(cheap_tape))


def test_small_arrays_never_leave_the_vm():
    # below NUMBA_EXTRA_CALL_S / ELEMENTWISE_SAVING_S elements Numba saves nothing
    assert fallback.promote_after(tape_of(rosenbrock, 50), numba_cached=True) == math.inf


@pytest.mark.parametrize("cached", [False, True])
def test_larger_arrays_switch_after_fewer_calls(cached):
    calls = [fallback.promote_after(tape_of(rosenbrock, n), cached) for n in (10**3, 10**4, 10**5)]
    assert all(math.isfinite(c) for c in calls)
    assert calls[0] > calls[1] > calls[2] >= 1


def test_the_rule_is_the_documented_break_even():
    tape = tape_of(rosenbrock, 10**4)
    stats = fallback.tape_stats(tape)
    fixed, per_instruction = fallback.NUMBA_COMPILE_S
    compile_s = fixed + per_instruction * stats["instructions"]
    assert stats["transcendental_elements"] == 0  # Rosenbrock: + - * only
    saving = fallback.ELEMENTWISE_SAVING_S * stats["elementwise_elements"] \
        - fallback.NUMBA_EXTRA_CALL_S
    assert fallback.promote_after(tape, numba_cached=False) == math.ceil(compile_s / saving)
    assert fallback.promote_after(tape, numba_cached=True) < math.ceil(compile_s / saving)


class FakeExecutable:
    def __init__(self, result, delay=0.0):
        self.result, self.delay, self.calls = result, delay, 0

    def run(self, inputs):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return [self.result]

    def run_args(self, args, which):
        outs = self.run(list(args))
        return outs if which < 0 else outs[which]


@pytest.mark.parametrize("second_is_faster", [True, False])
def test_tiered_switches_once_after_the_count_and_keeps_the_faster(second_is_faster):
    first = FakeExecutable("first", delay=0.0 if second_is_faster is False else 2e-3)
    second = FakeExecutable("second", delay=2e-3 if second_is_faster is False else 0.0)
    built = []

    def build_second(tape):
        built.append(tape)
        return second
    exe = fallback.Tiered("tape", first, 3, build_second)
    assert exe.run_args((1.0,), -1) == ["first"] and exe.run([1.0]) == ["first"]
    assert built == []
    winner = "second" if second_is_faster else "first"
    assert exe.run([1.0]) == [winner]  # the third call compiles and decides
    assert built == ["tape"]
    for _ in range(5):
        assert exe.run([1.0]) == [winner] and exe.run_args((1.0,), 0) == winner
    assert built == ["tape"]  # decided once
    assert exe.current is (second if second_is_faster else first)


def test_tiered_keeps_the_vm_when_the_second_backend_fails():
    first = FakeExecutable("first")

    def failing(tape):
        raise NotImplementedError("no such primitive")
    exe = fallback.Tiered("tape", first, 1, failing)
    assert exe.run([0.0]) == ["first"] and exe.run([0.0]) == ["first"]


needs_c_and_numba = pytest.mark.skipif(
    fa.backends_available()[:2] != ["c", "numba"], reason="needs the C and Numba backends")


@needs_c_and_numba
def test_auto_builds_plain_vm_code_where_numba_never_pays():
    tape = tape_of(rosenbrock_loop, 30, reroll=False)
    exe = backends.build("auto", tape)
    assert not isinstance(exe, fallback.Tiered)
    assert type(exe).__module__.endswith("_vm")


@needs_c_and_numba
def test_compiled_function_moves_to_numba_and_stays_correct(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fallback, "promote_after", lambda tape, numba_cached: 3)
    x = np.linspace(-1.0, 1.0, 10**4)
    g = fa.compile(rosenbrock)
    want = fa.compile(rosenbrock, backend="numpy")(x)
    np.testing.assert_allclose(g(x), want, rtol=1e-12)
    assert isinstance(g.program, fallback.Tiered) and g.program.backend == "c"
    np.testing.assert_allclose(g(x), want, rtol=1e-12)
    assert g.program.backend == "c"  # two calls so far
    for _ in range(3):
        np.testing.assert_allclose(g(x), want, rtol=1e-12)
        np.testing.assert_allclose(g.value_and_grad(x)[1], want, rtol=1e-12)
    assert g.program.backend in ("c", "numba")  # the faster one


def test_auto_is_numba_without_the_c_extension(monkeypatch):
    monkeypatch.setattr(backends, "available", lambda: ["numba", "numpy"])
    tape = tape_of(rosenbrock, 10**4)
    picked = []
    monkeypatch.setattr(backends, "get", lambda name: picked.append(name) or _Stub)
    backends.build("auto", tape)
    assert picked == ["auto"]  # get("auto") resolves to the first available: numba


class _Stub:
    @staticmethod
    def build(tape):
        return FakeExecutable("stub")


def test_tiered_offers_what_the_running_executable_offers():
    class WithBatch(FakeExecutable):
        def run_batch(self, *args):
            return "batched"
    exe = fallback.Tiered("tape", WithBatch("first"), 10, lambda tape: FakeExecutable("second"))
    assert hasattr(exe, "run_batch") and exe.run_batch() == "batched"
    assert not hasattr(fallback.Tiered("tape", FakeExecutable("x"), 10, None), "run_batch")
