"""``backend="auto"`` follows the documented rule (fastad/backends/fallback.py):
start on the C VM, move to Numba after the calls that pay for its compile,
only where Numba is predicted faster per call, and keep the faster of the two,
compiled in a background thread while the VM serves the calls.
Nothing here depends on timing except the last step's choice, which is
tested with executables a thousand times apart; tests wait for the
background step (`Tiered.wait`) instead of sleeping."""
import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastad as fa
from fastad import backends
from fastad.backends import fallback
from helpers import rosenbrock, rosenbrock_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    assert built == [] and exe.info()["calls"] == 2 and exe.info()["phase"] == "counting"
    assert exe.run([1.0]) == ["first"]  # the third call starts the compile, and does not wait
    assert exe.wait(30)
    assert built == ["tape"]
    winner = "second" if second_is_faster else "first"
    for _ in range(5):
        assert exe.run([1.0]) == [winner] and exe.run_args((1.0,), 0) == winner
    assert built == ["tape"]  # decided once
    assert exe.current is (second if second_is_faster else first)
    info = exe.info()
    assert info["phase"] == ("promoted" if second_is_faster else "kept")
    assert info["backend"] == ("numba" if second_is_faster else "c")
    assert info["calls"] == 3 and info["compile_s"] >= 0
    faster, slower = ("numba", "c") if second_is_faster else ("c", "numba")
    assert info["timed_s_per_call"][faster] < info["timed_s_per_call"][slower]


def test_tiered_keeps_the_vm_when_the_second_backend_fails():
    first = FakeExecutable("first")

    def failing(tape):
        raise NotImplementedError("no such primitive")
    exe = fallback.Tiered("tape", first, 1, failing)
    assert exe.run([0.0]) == ["first"]
    assert exe.wait(30)
    assert exe.run([0.0]) == ["first"] and exe.run([0.0]) == ["first"]
    info = exe.info()
    assert info["phase"] == "failed" and "no such primitive" in info["error"]
    assert info["backend"] == "c" and exe.run == first.run


def test_no_call_waits_for_the_compile():
    """The second backend's build blocks until the test lets it go: every call
    meanwhile returns the first backend's result (a call that waited would
    never return: the build waits for the calls to finish first)."""
    release, building = threading.Event(), threading.Event()
    second = FakeExecutable("second")

    def slow_build(tape):
        building.set()
        assert release.wait(60), "the test never released the build"
        return second
    exe = fallback.Tiered("tape", FakeExecutable("first", delay=1e-3), 2, slow_build)
    assert [exe.run([0.0]) for _ in range(2)] == [["first"]] * 2
    assert building.wait(30)  # the compile is running, in another thread
    for _ in range(50):
        assert exe.run([0.0]) == ["first"] and exe.run_args((0.0,), 0) == "first"
        assert exe.info()["phase"] == "compiling" and exe.backend == "c"
    release.set()
    assert exe.wait(30)
    assert exe.run([0.0]) == ["second"] and exe.info()["phase"] == "promoted"


def test_the_disk_cache_is_looked_up_in_the_background_and_sets_the_count():
    """Cached: the build starts after ``after_if_cached`` calls; not cached: the
    lookup answers, and the build waits for ``after`` calls.  The lookup runs
    in the background too (it generates the source to hash it)."""
    for cached in (True, False):
        looked, built = [], []
        exe = fallback.Tiered("tape", FakeExecutable("first", delay=1e-3), 6,
                              lambda tape: built.append(tape) or FakeExecutable("second"),
                              after_if_cached=2,
                              is_cached=lambda tape: looked.append(tape) or cached)
        assert exe.run([0.0]) == ["first"] and looked == []
        exe.run([0.0])
        assert exe.wait(30) and looked == ["tape"]
        assert exe.info()["second_cached"] is cached
        if not cached:
            assert built == [] and exe.info()["phase"] == "counting"
            for _ in range(3):
                exe.run([0.0])
            assert built == []
            exe.run([0.0])  # the sixth call
            assert exe.wait(30)
        assert built == ["tape"] and looked == ["tape"]
        assert exe.info()["phase"] == "promoted"


def test_many_threads_calling_during_the_swap():
    """Threads call while the build finishes and the faster executable is
    swapped in: each call returns one executable's whole result, and a thread
    that has seen the second never sees the first again."""
    release = threading.Event()

    def build(tape):
        release.wait(60)
        return FakeExecutable("second")
    exe = fallback.Tiered("tape", FakeExecutable("first", delay=2e-4), 1, build)
    seen = {k: [] for k in range(8)}
    started = threading.Barrier(9)

    def caller(k):
        started.wait()
        for i in range(400):
            seen[k].append(exe.run([float(i)])[0] if i % 2 else exe.run_args((1.0,), 0))
    threads = [threading.Thread(target=caller, args=(k,)) for k in seen]
    for t in threads:
        t.start()
    started.wait()
    release.set()
    for t in threads:
        t.join(60)
    assert exe.wait(30) and exe.backend == "numba"
    for results in seen.values():
        assert set(results) <= {"first", "second"}
        if "second" in results:
            assert "first" not in results[results.index("second"):]
    assert exe.run([0.0]) == ["second"]


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
    entry = g._vg.last
    assert entry.built.wait(120) and entry.rest.built.wait(120)
    np.testing.assert_allclose(g(x), want, rtol=1e-12)
    np.testing.assert_allclose(g.value_and_grad(x)[1], want, rtol=1e-12)
    for key in ("tier", "grads_tier"):
        info = g.cache_info()["entries"][0][key]
        assert info["phase"] in ("promoted", "kept") and info["calls"] >= 3
        assert info["backend"] == ("numba" if info["phase"] == "promoted" else "c")
        assert set(info["timed_s_per_call"]) == {"c", "numba"} and info["compile_s"] > 0


@needs_c_and_numba
@pytest.mark.parametrize("f", [rosenbrock, lambda x: np.sum(np.sin(x) * x + np.exp(-x * x))])
def test_promoted_results_equal_the_vms(monkeypatch, tmp_path, f):
    """Numba made to win the timing: after the swap every result equals the VM's
    (to rounding: the two backends may sum in different orders)."""
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fallback, "promote_after", lambda tape, numba_cached: 1)
    monkeypatch.setattr(fallback, "_best_times", lambda exes, inputs: {"c": 1.0, "numba": 0.5})
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1.0, 1.0, 5000) for _ in range(4)]
    g, vm = fa.compile(f), fa.compile(f, backend="c")
    g(xs[0])
    assert g._vg.last.rest.built.wait(120) and g.cache_info()["entries"][0][
        "grads_tier"]["backend"] == "numba"
    for x in xs:
        np.testing.assert_allclose(g(x), vm(x), rtol=1e-12, atol=1e-14)
        value, grad = g.value_and_grad(x)
        want_value, want_grad = vm.value_and_grad(x)
        np.testing.assert_allclose(value, want_value, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-14)


@needs_c_and_numba
def test_threads_calling_a_compiled_function_while_it_moves_to_numba(monkeypatch, tmp_path):
    """Threads call one compiled gradient, each with its own inputs, before,
    during and after the background compile and swap: every result is its
    own input's gradient (the VM's to rounding), whichever backend ran it."""
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fallback, "promote_after", lambda tape, numba_cached: 2)
    monkeypatch.setattr(fallback, "_best_times", lambda exes, inputs: {"c": 1.0, "numba": 0.5})

    def f(x):
        return np.sum(np.cos(x) * x ** 2 + x)
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-2.0, 2.0, 3000) for _ in range(6)]
    vm = fa.compile(f, backend="c")
    wants = [vm(x) for x in xs]
    g = fa.compile(f)
    g(xs[0])
    program = g._vg.last.rest.built
    failures, started, after_swap = [], threading.Barrier(len(xs)), [0] * len(xs)
    deadline = time.time() + 240  # a bound on the loop, not a measurement

    def caller(k):
        started.wait()
        i = 0
        while after_swap[k] < 30 and time.time() < deadline:  # until well after the swap
            got = g(xs[k]) if i % 3 else g.value_and_grad(xs[k])[1]
            if not np.allclose(got, wants[k], rtol=1e-12, atol=1e-13):
                failures.append((k, i))
            after_swap[k] += program.state.decided
            i += 1
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures and min(after_swap) == 30
    assert program.wait(120) and program.backend == "numba"
    for x, want in zip(xs, wants):
        np.testing.assert_allclose(g(x), want, rtol=1e-12, atol=1e-13)


@needs_c_and_numba
def test_first_call_generates_no_numba_source(monkeypatch):
    """``auto`` decides from the tape's statistics alone: no Numba source is
    generated on the first call (the disk-cache lookup is the background's)."""
    from fastad.backends import numba_backend
    generated = []
    real = numba_backend.generate
    monkeypatch.setattr(numba_backend, "generate",
                        lambda *a, **k: generated.append(1) or real(*a, **k))
    x = np.linspace(-1.0, 1.0, 10**5)
    g = fa.compile(rosenbrock)
    g(x)
    g.value_and_grad(x)
    assert generated == []
    info = g.cache_info()["entries"][0]["grads_tier"]
    assert info["phase"] == "counting" and info["second_cached"] is None
    assert 1 < info["promote_after_if_cached"] <= info["promote_after"] < math.inf


SCRIPT_HEAD = """
import os, sys, time
import numpy as np
import fastad as fa
from fastad.backends import fallback
fallback.promote_after = lambda tape, numba_cached: 1
x = np.linspace(-1.0, 1.0, 4000)
def f(v):
    return np.sum(np.sin(v) * v ** 2 + np.tanh(v * 0.5))
want = fa.compile(f, backend="numpy")(x)
"""


def run_script(script, tmp_path, timeout=240):
    env = dict(os.environ, FASTAD_CACHE_DIR=str(tmp_path))
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the script hung: {hung.stdout} {hung.stderr}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_c_and_numba
def test_fork_during_a_background_compile(tmp_path):
    """The parent forks while its background Numba compile runs (the fork
    waits for Numba's compiler lock, not for the promotion); the child's
    calls are correct on the VM, and it promotes on its own thread."""
    script = SCRIPT_HEAD + textwrap.dedent("""
    g = fa.compile(f)
    assert np.allclose(g(x), want, rtol=1e-12)  # the background compile starts
    program = g._vg.last.rest.built
    while program.info()["phase"] in ("counting", "looking up the disk cache"):
        time.sleep(0.001)
    print("forking while", program.info()["phase"])
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            ok = all(np.allclose(g(x), want, rtol=1e-12) for _ in range(3))
            mine = g._vg.last.rest.built
            ok = ok and mine.wait(120) and mine.info()["phase"] in ("promoted", "kept")
            ok = ok and np.allclose(g(x), want, rtol=1e-12)
            code = 0 if ok else 3
        finally:
            os._exit(code)
    deadline = time.time() + 180
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.time() < deadline, "the child hung"
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert program.wait(120) and np.allclose(g(x), want, rtol=1e-12)
    print("ok")
    """)
    out = run_script(script, tmp_path)
    assert "ok" in out and "forking while compiling" in out


@needs_c_and_numba
def test_exit_while_compiling_in_the_background(tmp_path):
    """The interpreter exits (cleanly, without waiting for it) while a
    background compile runs."""
    script = SCRIPT_HEAD + textwrap.dedent("""
    g = fa.compile(f)
    assert np.allclose(g(x), want, rtol=1e-12)
    program = g._vg.last.rest.built
    while program.info()["phase"] in ("counting", "looking up the disk cache"):
        time.sleep(0.001)
    print("exiting while", program.info()["phase"])
    """)
    out = run_script(script, tmp_path, timeout=120)
    assert "exiting while compiling" in out


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
    assert fallback.tier_info(FakeExecutable("x")) is None
    assert fallback.tier_info(exe)["phase"] == "counting"
