"""Compiled functions under threads, forks and many signatures, and inputs
fastad refuses or works around (docs/bad-input.md): ndarray subclasses and
unwritable cache directories.

Every test is driven by a generator (hypothesis, or a seeded random loop), so
each class of failure is tried many ways rather than once.  Forks run in a
subprocess with a timeout, so a hang fails the test instead of the suite."""
from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad import signatures
from fastad.backends import c_backend, numba_backend

MANY_SHAPES_BACKEND = "c" if c_backend.available else "numpy"

numba_only = pytest.mark.skipif(not numba_backend.available, reason="needs numba")
ROOT = os.path.join(os.path.dirname(__file__), "..")


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class fast_switching:
    """Threads switch every microsecond: interleavings that a call's few
    hundred bytecodes would rarely meet at the default 5 ms happen every
    few calls."""

    def __enter__(self):
        self.old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)

    def __exit__(self, *exc):
        sys.setswitchinterval(self.old)


def run_threads(worker, count):
    """worker(k) for k in range(count), each in its own thread, started together;
    the first exception a worker raised is raised here."""
    barrier = threading.Barrier(count)
    errors = []

    def body(k):
        try:
            barrier.wait()
            worker(k)
        except BaseException as error:  # noqa: BLE001 -- reported below
            errors.append(error)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- 1. threads calling with shapes whose outputs differ in structure -----------------------
def per_row(x):
    """A tuple with one entry per row: its structure is the shape's."""
    return tuple(np.sum(np.sin(x[i]) * x[i]) for i in range(x.shape[0]))


def keyed_by_shape(x):
    return {f"n{x.shape[0]}": np.cos(x) * 2.0, "total": np.sum(x * x)}


def check_per_row(x, out):
    assert isinstance(out, tuple) and len(out) == x.shape[0], (x.shape, type(out), len(out))
    for i, v in enumerate(out):
        assert v == np.sum(np.sin(x[i]) * x[i]) or np.isclose(v, np.sum(np.sin(x[i]) * x[i]))


def check_keyed(x, out):
    assert isinstance(out, dict) and set(out) == {f"n{x.shape[0]}", "total"}, (x.shape, out)
    np.testing.assert_allclose(out[f"n{x.shape[0]}"], np.cos(x) * 2.0, rtol=1e-13)
    assert out[f"n{x.shape[0]}"].shape == x.shape


@pytest.mark.parametrize("seed", range(2))
def test_threads_with_new_shapes_get_their_own_structure(compiled_backend, seed):
    """Threads calling one jitted function with shapes in random order (each new
    shape a trace that replaces the shortcut; a bound of 4 signatures keeps
    evicting and retracing them) always get the structure and values of
    their own argument, never another signature's."""
    rng = random.Random(seed)
    shapes = [(n, 3) for n in range(1, 13)]
    bound = 4
    if compiled_backend == "numba":  # a Numba compile per trace: keep them few
        shapes, bound = shapes[:3], None
    plans = [[rng.choice(shapes) for _ in range(300)] for _ in range(6)]
    per_row_jit = fa.jit(per_row, backend=compiled_backend, max_signatures=bound)
    keyed_jit = fa.jit(keyed_by_shape, backend=compiled_backend, max_signatures=bound)
    inputs = {s: np.linspace(-1.0, 1.0, s[0] * s[1]).reshape(s) + 0.1 * seed for s in shapes}

    def worker(k):
        for shape in plans[k]:
            x = inputs[shape]
            check_per_row(x, per_row_jit(x))
            check_keyed(x, keyed_jit(x))

    with fast_switching():
        run_threads(worker, len(plans))
    info = per_row_jit.cache_info()
    assert info["signatures"] <= info["max_signatures"] and not info["eager"]


@pytest.mark.parametrize("seed", range(3))
def test_threads_with_new_shapes_get_their_own_gradients(seed):
    """The same for a compiled gradient: g(x), g.value_and_grad(x), g.value(x)
    from threads with shapes in random order, each the eager result."""
    rng = random.Random(100 + seed)
    f = lambda v: np.sum(np.sin(v) * v ** 2) + np.sum(v[1:] * v[:-1])  # noqa: E731
    g = fa.compile(f)
    sizes = list(range(2, 10))
    xs = {n: np.linspace(-1.0, 1.0, n) + 0.01 * seed for n in sizes}
    want = {n: fa.value_and_grad(f)(xs[n]) for n in sizes}
    plans = [[(rng.choice(sizes), rng.randrange(3)) for _ in range(400)] for _ in range(6)]

    def worker(k):
        for n, call in plans[k]:
            value, grad = want[n]
            if call == 0:
                out = g(xs[n])
                assert out.shape == (n,)
                np.testing.assert_allclose(out, grad, rtol=1e-12)
            elif call == 1:
                v, d = g.value_and_grad(xs[n])
                assert d.shape == (n,)
                np.testing.assert_allclose(v, value, rtol=1e-12, atol=1e-15)
                np.testing.assert_allclose(d, grad, rtol=1e-12)
            else:
                np.testing.assert_allclose(g.value(xs[n]), value, rtol=1e-12, atol=1e-15)

    with fast_switching():
        run_threads(worker, len(plans))


def test_an_entry_is_built_once_whatever_the_threads():
    """Threads asking at once for a trace's executable get one executable."""
    for seed in range(5):
        built = []
        tape = fa.make_tape(lambda x: np.sin(x) * (1.0 + seed))(np.ones(3))

        def build(t):
            built.append(t)
            return object()

        entry = signatures.Entry(tape, signatures.Structure(None, ()), build)
        seen = []
        with fast_switching():
            run_threads(lambda k: seen.append(entry.exe), 8)
        assert len(built) == 1 and len({id(e) for e in seen}) == 1


# -- 2. concurrent first calls of a guarded function -----------------------------------------
def guarded(x):
    if x[0] > 0:
        return np.sum(np.sin(x) * x)
    return np.sum(np.cos(x) * x)


@settings(max_examples=12)
@given(signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=8, max_size=8),
       threads=st.integers(2, 8), size=st.integers(2, 6))
def test_concurrent_first_calls_trace_each_path_once(signs, threads, size):
    """Threads making the first calls of a guarded function at once trace each
    path once: no duplicate trace, none counted toward max_traces (2 here, so
    that a duplicate would send the function to eager evaluation)."""
    g = fa.jit(guarded, max_traces=2)
    xs = [s * np.linspace(0.5, 1.5, size) for s in signs[:threads]]
    results = [None] * threads
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the eager fallback's warning would fail the test
        with fast_switching():
            run_threads(lambda k: results.__setitem__(k, g(xs[k])), threads)
    for x, r in zip(xs, results):
        assert r == guarded(x) or np.isclose(r, guarded(x))
    info = g.cache_info()
    paths = len({s for s in signs[:threads]})
    assert info["traces"] == paths and len(info["entries"]) == paths and not info["eager"]


def test_concurrent_first_calls_of_a_compiled_gradient_trace_once():
    for seed in range(5):
        g = fa.compile(lambda v, c=seed: np.sum(np.sin(v) * v ** 2) * (c + 1.0))
        x = np.linspace(-1.0, 1.0, 5 + seed)
        calls = [g, g.value_and_grad, g.value]
        with fast_switching():
            run_threads(lambda k: calls[k % 3](x), 8)
        assert g.cache_info()["traces"] == 1


# -- 3. the signature cache is bounded ------------------------------------------------------
@settings(max_examples=25)
@given(bound=st.integers(1, 6),
       sizes=st.lists(st.integers(1, 12), min_size=1, max_size=40),
       grads=st.lists(st.booleans(), min_size=40, max_size=40))
def test_signature_cache_is_a_bounded_lru(bound, sizes, grads):
    """Any sequence of shapes: the cache never holds more than the bound, a
    signature used by the previous call is not the one evicted, every
    evicted signature is traced again when it comes back, and every result
    is the eager one."""
    f = lambda v: np.sum(np.sin(v) * v ** 2)  # noqa: E731
    g = fa.compile(f, max_signatures=bound)
    previous = None
    for n, as_grad in zip(sizes, grads):
        x = np.linspace(-1.0, 1.0, n)
        before = g.cache_info()
        out = g(x) if as_grad else g.value_and_grad(x)[1]
        np.testing.assert_allclose(out, fa.grad(f)(x), rtol=1e-12)
        info = g.cache_info()
        assert info["signatures"] <= bound and info["max_signatures"] == bound
        cached = [e["signature"] for e in info["entries"]]
        assert any(f"(({n},), 'd')" in c for c in cached)
        if previous is not None and bound >= 2 and previous != n:
            assert any(f"(({previous},), 'd')" in c for c in cached), (previous, cached)
        was_cached = any(f"(({n},), 'd')" in e["signature"] for e in before["entries"])
        assert info["traces"] == before["traces"] + (0 if was_cached else 1)
        assert info["traces"] == info["signatures"] + info["evicted"]
        previous = n


def test_max_signatures_settings():
    assert fa.jit(np.sin).cache_info()["max_signatures"] == signatures.MAX_SIGNATURES == 64
    assert fa.compile(np.sum, max_signatures=3).cache_info()["max_signatures"] == 3
    for bad in (0, -1, 1.5, True, "4"):
        with pytest.raises(ValueError, match="max_signatures"):
            fa.jit(np.sin, max_signatures=bad)
    code = ("import fastad as fa, numpy as np; "
            "print(fa.jit(np.sin).cache_info()['max_signatures'])")
    env = dict(os.environ, FASTAD_MAX_SIGNATURES="7")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "7", out.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_bounded_over_many_shapes(record_count):
    """500 shapes with a bound of 16: the cache never holds more than 16, and
    resident memory stays flat over the last 250 new shapes (once fastad's
    other bounded caches, of constants and cost estimates, are full; without
    the bound these 250 signatures take about 50 MB)."""
    f = lambda v: np.sum(np.sin(v) * v ** 2) + np.sum(v[1:] * v[:-1])  # noqa: E731
    # the C VM, or the reference without it: Numba keeps every kernel it
    # compiled (docs/bad-input.md), and 500 Numba compiles take minutes
    g = fa.compile(f, max_signatures=16, backend=MANY_SHAPES_BACKEND)
    sizes = random.Random(0).sample(range(2, 3000), 500)
    for k, n in enumerate(sizes):
        x = np.linspace(-1.0, 1.0, n)
        g(x)
        g.value_and_grad(x)
        assert g.cache_info()["signatures"] <= 16
        if k == 249:
            gc.collect()
            before = resident_bytes()
    gc.collect()
    grown = resident_bytes() - before
    info = g.cache_info()
    assert info["evicted"] == 500 - 16 and info["signatures"] == 16
    # an evicted shape comes back: traced again, the same result
    x = np.linspace(-1.0, 1.0, sizes[0])
    np.testing.assert_array_equal(g(x), fa.compile(f, backend=MANY_SHAPES_BACKEND)(x))
    assert g.cache_info()["traces"] == 501
    record_count("resident memory growth over 250 new shapes, bound 16 (bytes)", grown)
    assert grown < 12 << 20, f"resident memory grew by {grown} bytes"


def test_saved_functions_keep_their_signatures_and_bound():
    g = fa.compile(lambda v: np.sum(v ** 3), max_signatures=5)
    for n in range(2, 10):
        g(np.ones(n))
    state = g.__getstate__()
    plain = (dict, list, tuple, str, int, float, bool, type(None), bytes)

    def check(value):
        assert isinstance(value, plain), type(value)
        if isinstance(value, dict):
            for k, v in value.items():
                check(k)
                check(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                check(v)

    check(state)
    loaded = fa.loads(fa.dumps(g))
    info = loaded.cache_info()
    assert info["signatures"] == 5 and info["max_signatures"] == 5
    for n in range(5, 10):
        np.testing.assert_array_equal(loaded(np.ones(n)), g(np.ones(n)))
    with pytest.raises(fa.SignatureError):
        loaded(np.ones(2))  # evicted before saving


# -- 4. masked arrays and other ndarray subclasses -------------------------------------------
class Plain(np.ndarray):
    """A subclass that changes nothing NumPy computes: read as its ndarray."""


class OwnUfuncs(np.ndarray):
    """A subclass with its own ufunc semantics (as unit-carrying arrays have)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = [np.asarray(i) if isinstance(i, OwnUfuncs) else i for i in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs) * 2.0


def make_subclass(kind, data):
    if kind == "masked":
        return np.ma.masked_array(data, mask=np.arange(data.size).reshape(data.shape) % 2 == 0)
    if kind == "matrix":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(data)
    if kind == "own-ufuncs":
        return data.view(OwnUfuncs)
    if kind == "plain":
        return data.view(Plain)
    if kind == "memmap":
        m = np.memmap(tempfile.TemporaryFile(), dtype=data.dtype, mode="w+", shape=data.shape)
        m[...] = data
        return m
    raise AssertionError(kind)


REFUSED = {"masked": "masked arrays", "matrix": "np.matrix", "own-ufuncs": "__array_ufunc__"}


def loss(x):
    return np.sum(np.sin(x) * x ** 2)


def entry_points():
    """name -> call(x_or_subclass, y_plain) returning something comparable."""
    jitted = fa.jit(lambda x: np.sin(x) * x)
    compiled = fa.compile(loss)
    batched_jit = fa.jit(lambda x: np.sum(x * x))
    batched_grad = fa.compile(loss)
    return {
        "grad": lambda x, y: fa.grad(loss)(x),
        "value_and_grad": lambda x, y: fa.value_and_grad(loss)(x)[1],
        "grad, second argument": lambda x, y: fa.grad(lambda a, b: np.sum(a * b))(y, x),
        "vjp primal": lambda x, y: fa.vjp(lambda a: np.sin(a), x)[1](np.ones_like(y))[0],
        "vjp cotangent": lambda x, y: fa.vjp(lambda a: np.sin(a), y)[1](x)[0],
        "jvp primal": lambda x, y: fa.jvp(lambda a: np.sin(a), (x,), (np.ones_like(y),))[1],
        "jvp tangent": lambda x, y: fa.jvp(lambda a: np.sin(a), (y,), (x,))[1],
        "vmap": lambda x, y: fa.vmap(lambda a: np.sum(a * a))(x),
        "jit": lambda x, y: jitted(x),
        "jit, after a plain call": lambda x, y: (jitted(y), jitted(x))[1],
        "compile": lambda x, y: compiled(x),
        "compile, after a plain call": lambda x, y: (compiled(y), compiled(x))[1],
        "compile value_and_grad": lambda x, y: compiled.value_and_grad(x)[1],
        "compile value": lambda x, y: compiled.value(x),
        "jit batch": lambda x, y: batched_jit.batch(x, threads=2),
        "compile batch": lambda x, y: batched_grad.batch(x, threads=2),
    }


@settings(max_examples=60)
@given(kind=st.sampled_from(["masked", "matrix", "own-ufuncs", "plain", "memmap"]),
       entry=st.sampled_from(sorted(entry_points())),
       rows=st.integers(2, 4), cols=st.integers(2, 4))
def test_ndarray_subclasses_are_refused_or_read_as_plain_arrays(kind, entry, rows, cols):
    """Every entry point treats a subclass the same way: refused with a
    TypeError naming it when it changes what NumPy computes (masked arrays,
    np.matrix, own __array_ufunc__), otherwise the plain array's result."""
    y = np.linspace(-1.0, 1.0, rows * cols).reshape(rows, cols)
    x = make_subclass(kind, y.copy())
    call = entry_points()[entry]
    if kind in REFUSED:
        with pytest.raises(TypeError, match=REFUSED[kind]):
            call(x, y)
    else:
        out = call(x, y)
        assert type(out) is np.ndarray or np.isscalar(out)
        np.testing.assert_array_equal(out, call(y, y))


def test_a_masked_constant_argument_is_refused():
    g = fa.jit(lambda x, m: x * m, static_argnums=(1,))
    with pytest.raises(TypeError, match="masked"):
        g(np.ones(3), np.ma.masked_array(np.arange(3), mask=[0, 1, 0]))
    h = fa.jit(lambda x, k: x * k)  # an integer array that is not traced: a constant
    with pytest.raises(TypeError, match="masked"):
        h(np.ones(3), np.ma.masked_array(np.arange(3), mask=[0, 1, 0]))


# -- 5. an unwritable Numba cache directory -----------------------------------------------------
@numba_only
@pytest.mark.parametrize("how", ["FASTAD_CACHE_DIR under a file", "HOME under a file",
                                 "directory refusing writes"])
def test_unwritable_cache_directory_compiles_in_memory(tmp_path, monkeypatch, how):
    """A cache directory that cannot be created or written (root ignores
    chmod, so the directory lies under a regular file, or mkdir is made to
    fail as it does in a read-only directory): one warning naming it, and the
    kernels compile in memory."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    if how == "HOME under a file":
        monkeypatch.delenv("FASTAD_CACHE_DIR", raising=False)
        monkeypatch.setenv("HOME", str(blocker / "home"))
        expected = blocker / "home" / ".cache" / "fastad" / "numba"
    elif how == "FASTAD_CACHE_DIR under a file":
        monkeypatch.setenv("FASTAD_CACHE_DIR", str(blocker / "sub"))
        expected = blocker / "sub" / "numba"
    else:
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o555)
        monkeypatch.setenv("FASTAD_CACHE_DIR", str(readonly))
        expected = readonly / "numba"
        real_mkdir = type(expected).mkdir

        def refusing_mkdir(self, *args, **kwargs):
            if str(self).startswith(str(readonly)):
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(type(expected), "mkdir", refusing_mkdir)
    rng = np.random.default_rng(abs(hash((how, str(tmp_path)))) % 2**32)
    warned = []
    for _ in range(2):
        c = float(rng.uniform(1.0, 2.0))  # a literal in the source: a kernel no one compiled
        f = lambda v, c=c: np.sum(np.sin(v * c) * v)  # noqa: E731
        x = np.linspace(-1.0, 1.0, 6)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = fa.compile(f, backend="numba")
            out = g(x)
            g.value_and_grad(x)
        np.testing.assert_allclose(out, fa.grad(f)(x), rtol=1e-12)
        warned += [str(w.message) for w in caught if "cache directory" in str(w.message)]
    assert len(warned) == 1 and str(expected) in warned[0], warned  # once, naming it
    assert not expected.exists()


# -- 6. forks ------------------------------------------------------------------------------------
def run_script(script, *args, timeout=240, env=None):
    """``script`` in a fresh interpreter; a hang fails the test after ``timeout``."""
    env = dict(os.environ, **(env or {}))
    try:
        done = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the script hung: {hung.stdout} {hung.stderr}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


WAIT_FOR_CHILD = """
import os, random, sys, threading, time
import numpy as np
import fastad as fa

def wait(pid, seconds):
    deadline = time.time() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.02)
"""


@numba_only
@pytest.mark.parametrize("seed", range(2))
def test_fork_while_another_thread_compiles_with_numba(tmp_path, seed):
    """A thread compiles a fresh function with Numba; the main thread forks at a
    random moment; the child compiles and runs another one and exits 0."""
    script = WAIT_FOR_CHILD + textwrap.dedent("""
    seed = int(sys.argv[1])
    rng = random.Random(seed)
    x = np.linspace(-1.0, 1.0, 7)
    for rep in range(3):
        c = 1.0 + rng.random() + rep + 10 * seed
        g = fa.compile(lambda v, c=c: np.sum(np.sin(v * c) * v ** 2 + np.tanh(v) * c),
                       backend="numba")
        thread = threading.Thread(target=g, args=(x,))
        thread.start()
        time.sleep(rng.uniform(0.0, 0.5))
        pid = os.fork()
        if pid == 0:
            code = 4
            try:
                c2 = c + 0.5
                h = fa.compile(lambda v: np.sum(np.cos(v * c2) * v), backend="numba")
                want = -c2 * np.sin(x * c2) * x + np.cos(x * c2)
                code = 0 if np.allclose(h(x), want, rtol=1e-12) else 3
            finally:
                os._exit(code)
        status = wait(pid, 60)
        thread.join()
        assert status == 0, f"repetition {rep}: child {status}"
    print("ok")
    """)
    assert "ok" in run_script(script, seed, env={"FASTAD_CACHE_DIR": str(tmp_path)})


@pytest.mark.skipif(not fa.backends_available()[0] == "c", reason="needs the C VM")
def test_fork_during_a_pooled_vm_run():
    """A thread runs a fused loop over 2^17 elements (split over the VM's thread
    pool) in a loop; forks at random moments give children that run compiled
    functions, large and small, with the parent's results."""
    script = WAIT_FOR_CHILD + textwrap.dedent("""
    rng = random.Random(int(sys.argv[1]))
    f = lambda v: np.sum(np.sin(v) * v ** 2 + np.cos(v) * v)
    g = fa.compile(f, backend="c")
    big, small = np.linspace(-1.0, 1.0, 1 << 17), np.linspace(-1.0, 1.0, 9)
    want_big, want_small = g(big), fa.grad(f)(small)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            g(big)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        for rep in range(20):
            time.sleep(rng.uniform(0.0, 0.005))
            pid = os.fork()
            if pid == 0:
                code = 4
                try:
                    same = np.array_equal(g(big), want_big)
                    code = 0 if same and np.allclose(g(small), want_small, rtol=1e-12) else 3
                finally:
                    os._exit(code)
            status = wait(pid, 30)
            assert status == 0, f"repetition {rep}: child {status}"
    finally:
        stop.set()
        thread.join()
    print("ok")
    """)
    assert "ok" in run_script(script, 7, env={"FASTAD_NUM_THREADS": "2"})


@pytest.mark.skipif(not c_backend.available, reason="needs the C VM")
@pytest.mark.parametrize("ratio", ["0.5", "0"])
def test_the_pools_waits_change_only_who_runs_a_chunk(ratio):
    """Random pauses between large fused jobs, from two threads at once, put
    the pool's workers in every state (polling, asleep and woken, asleep and
    left asleep for chunks shorter than their wake-up; with ratio 0 they never
    poll): every call gives the bits of the first one of its size, on three
    threads (two workers), and the eager gradient's values to rounding."""
    script = textwrap.dedent("""
    import random, sys, threading, time
    import numpy as np
    import fastad as fa

    def f(x):
        return np.sum(np.sin(x) * x + np.cos(x) ** 2)

    g = fa.compile(f, backend="c")
    xs = [np.random.default_rng(n).uniform(-2, 2, n) for n in (1 << 15, 100_003, 300_000)]
    want = [g(x) for x in xs]
    for x, w in zip(xs, want):
        assert np.allclose(w, fa.grad(f)(x), rtol=1e-12, atol=1e-12)
    bad = []

    def calls(seed):
        rng = random.Random(seed)
        for _ in range(40):
            k = rng.randrange(len(xs))
            pause = rng.choice([0.0, 2e-5, 3e-4, 3e-3])
            end = time.perf_counter() + pause
            while time.perf_counter() < end:  # a busy pause: the worker may poll through it
                pass
            if not np.array_equal(g(xs[k]), want[k]):
                bad.append(k)

    threads = [threading.Thread(target=calls, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad
    print("ok")
    """)
    env = {"FASTAD_NUM_THREADS": "3", "FASTAD_POOL_SPIN_RATIO": ratio}
    assert "ok" in run_script(script, env=env)


@numba_only
def test_multiprocessing_fork_pool_while_compiling(tmp_path):
    """multiprocessing with the fork start method, as a user would, while the
    parent compiles with Numba on another thread: the workers compile and
    run their own functions."""
    script = """
    import multiprocessing, random, sys, threading, time
    import numpy as np
    import fastad as fa

    def work(c):
        h = fa.compile(lambda v: np.sum(np.cos(v * c) * v), backend="numba")
        x = np.linspace(-1.0, 1.0, 5)
        return float(np.max(np.abs(h(x) - (-c * np.sin(x * c) * x + np.cos(x * c)))))

    if __name__ == "__main__":
        rng = random.Random(3)
        x = np.linspace(-1.0, 1.0, 7)
        for rep in range(2):
            g = fa.compile(lambda v, c=rep: np.sum(np.sin(v * (c + 2.5)) * v ** 3),
                           backend="numba")
            thread = threading.Thread(target=g, args=(x,))
            thread.start()
            time.sleep(rng.uniform(0.0, 0.3))
            with multiprocessing.get_context("fork").Pool(2) as pool:
                errors = pool.map_async(work, [1.25 + rep, 1.75 + rep, 2.5 + rep]).get(90)
            thread.join()
            assert max(errors) < 1e-12, errors
        print("ok")
    """
    path = tmp_path / "pool_script.py"
    path.write_text(textwrap.dedent(script))
    try:
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=240, cwd=ROOT,
                              env=dict(os.environ, FASTAD_CACHE_DIR=str(tmp_path / "cache")))
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the pool hung: {hung.stdout} {hung.stderr}")
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


def test_locks_are_fresh_in_a_forked_child():
    """A fastad lock held by another thread at the fork is unheld in the child."""
    from fastad import locks
    lock = locks.Lock()
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if lock.acquire(blocking=False) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join()


def closure_entry_points(z):
    """name -> call(y_plain) of functions that close over ``z`` (either operand order)."""
    left = lambda a: np.sum(np.sin(a) * z)  # noqa: E731
    right = lambda a: np.sum(z * np.sin(a))  # noqa: E731
    return {
        "grad": lambda y: fa.grad(left)(y),
        "grad, subclass on the left": lambda y: fa.grad(right)(y),
        "vjp": lambda y: fa.vjp(lambda a: np.sin(a) * z, y)[1](np.ones_like(y))[0],
        "jvp": lambda y: fa.jvp(lambda a: a * z, (y,), (np.ones_like(y),))[1],
        "jit": lambda y: fa.jit(lambda a: a + z)(y),
        "compile": lambda y: fa.compile(left)(y),
        "compile, subclass on the left": lambda y: fa.compile(right).value_and_grad(y)[1],
        "compile on the reference": lambda y: fa.compile(left, backend="numpy")(y),
    }


@settings(max_examples=40)
@given(kind=st.sampled_from(["masked", "matrix", "own-ufuncs", "plain", "memmap"]),
       entry=st.sampled_from(sorted(closure_entry_points(None))),
       rows=st.integers(2, 4), cols=st.integers(2, 4))
def test_ndarray_subclasses_a_function_closes_over(kind, entry, rows, cols):
    """A subclass the function closes over is a constant of its trace: refused
    the same way as an argument, eager and compiled, or read as its ndarray."""
    # On the left of an operator, a subclass with its own __array_ufunc__ runs
    # first, as in NumPy, and hands fastad plain operands: nothing is lost.
    assume(not (kind == "own-ufuncs" and "left" in entry))
    y = np.linspace(-1.0, 1.0, rows * cols).reshape(rows, cols)
    z = make_subclass(kind, np.cos(y))
    call = closure_entry_points(z)[entry]
    if kind in REFUSED and "left" in entry:
        # np.ma's and np.matrix's own operators convert the traced operand first
        with pytest.raises((TypeError, fa.TracingError)):
            call(y)
    elif kind in REFUSED:
        with pytest.raises(TypeError, match=REFUSED[kind]):
            call(y)
    else:
        out = call(y)
        assert type(out) is np.ndarray or np.isscalar(out)
        np.testing.assert_array_equal(out, closure_entry_points(np.cos(y))[entry](y))


# -- inputs read and results written in place, from several threads ---------------------------
def matrix_loss(w, X, y):
    return np.mean(np.log(1.0 + np.exp(-y * (X @ w)))) + 1e-3 * np.sum(w ** 2)


@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2 ** 16), threads=st.integers(2, 4), rows=st.integers(2, 300))
def test_threads_with_different_arrays_read_their_own_in_place(seed, threads, rows):
    """The VM reads each caller's arrays in place and writes each result
    into the array it returns: threads calling one compiled gradient with
    different arrays (contiguous, strided, misaligned) each get the result
    serial calls give, bit for bit, and the arrays they passed unchanged."""
    rng = np.random.default_rng(seed)
    g = fa.compile(matrix_loss, backend="c")
    data = []
    for k in range(threads):
        X = rng.standard_normal((rows, 7))
        y = np.sign(rng.standard_normal(rows))
        w = rng.standard_normal(7)
        if k % 3 == 1:  # strided: converted, then bound
            X = np.repeat(X, 2, axis=1)[:, ::2]
        elif k % 3 == 2:  # misaligned: copied before the run
            raw = np.frombuffer(bytearray(X.nbytes + 8), dtype=np.float64, count=X.size,
                                offset=4).reshape(X.shape)
            raw[...] = X
            X = raw
        data.append((w, X, y))
    serial = [g(*args) for args in data]
    copies = [[a.copy() for a in args] for args in data]

    def worker(k):
        for _ in range(200):
            got = g(*data[k])
            assert np.array_equal(got, serial[k])
            for a, c in zip(data[k], copies[k]):
                assert np.array_equal(a, c)

    with fast_switching():
        run_threads(worker, threads)
    assert not any(np.shares_memory(a, b) for a in serial for b in serial if a is not b)
