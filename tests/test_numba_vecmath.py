"""The Numba backend's transcendental functions over arrays call NumPy's own
loops (`fastad.backends.numba_vecmath`): where the C extension gives their
addresses, results are NumPy's to the bit (NaN, infinities, signed zeros,
subnormals, huge arguments; float32 and float64; empty, one-element and
sliced arrays); without it, the per-element code Numba always ran, within a
few ulps.  The addresses reach the compiled code as an argument, so a kernel
compiled by one process and loaded from the disk cache by another calls that
process's loops; gradients of losses built on these functions agree with
eager mode and central differences.
"""
import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKENDS  # noqa: E402

nb = pytest.importorskip("fastad.backends.numba_backend")
if not nb.available or "numba" not in BACKENDS:
    pytest.skip("the Numba backend is not installed or not selected", allow_module_level=True)

import fastad as fa  # noqa: E402
from fastad.backends import numba_vecmath as vm  # noqa: E402
from helpers import fresh_cache_dir  # noqa: E402
from test_vecmath import random_inputs, same_bits  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [np.float64, np.float32]
# every function the generated code may hand to NumPy, by its NumPy ufunc
UNARY = sorted(name for name in vm.VECTOR_FUNCTIONS if getattr(np, name).nin == 1)
BINARY = sorted(name for name in vm.VECTOR_FUNCTIONS if getattr(np, name).nin == 2)
# empty, one element, a few, many
SIZES = [0, 1, 7, 1000]
EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 10)),
                    deadline=None)


fresh_cache = pytest.fixture(scope="module", autouse=True)(fresh_cache_dir)


def compiled(fn, *args):
    """fn's tape compiled by the Numba backend (one kernel per tape: inputs vary freely)."""
    return nb.build(fa.make_tape(fn)(*args))


def agrees(got, want, name, dtype, what):
    """NumPy's bits where the generated code calls NumPy's loop; else Numba's
    own function: NumPy's value within a few ulps (moderate arguments only,
    see the callers), infinities and NaN where NumPy has them."""
    if vm.loop_for(name, dtype) is not None:
        same_bits(got, want, what)
    else:
        np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps,
                                   atol=4 * np.finfo(dtype).tiny, err_msg=what)


def moderate(seed, n, dtype):
    """Arguments every function takes without overflow or a pole."""
    return np.random.default_rng(seed).uniform(0.05, 0.95, n).astype(dtype)


def inputs(seed, n, dtype):
    """The special values of test_vecmath where NumPy's loops run (the
    comparison is to the bit), else moderate ones."""
    if vm.LOOPS and n > 0:
        return random_inputs(seed, n, dtype)
    return moderate(seed, n, dtype)


def all_unary(x):
    return [getattr(np, name)(x) for name in UNARY]


def all_binary(x, y):
    """Each binary function of two arrays, of an array and a constant, of a
    constant and an array (a broadcast operand, read with a step of 0)."""
    out = []
    for name in BINARY:
        uf = getattr(np, name)
        out += [uf(x, y), uf(x, 2.5), uf(0.75, y)]
    return out


def test_generated_code_calls_numpys_loops_where_there_are_some():
    x = np.linspace(0.1, 0.9, 16)
    exe = compiled(all_unary, x)
    calls = exe.source.count("call_loop1(")
    assert calls == sum(vm.loop_for(name, np.float64) is not None for name in UNARY)
    assert calls == 0 or "import call_loop1" in exe.source
    # no address is written into the source: it is the argument's
    for (name, _), (loop, data) in vm.LOOPS.items():
        assert str(loop) not in exe.source and (data == 0 or str(data) not in exe.source)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
def test_unary_functions_are_numpys(dtype, n, seed):
    x = inputs(seed, n, dtype)
    exe = compiled(all_unary, x)
    with np.errstate(all="ignore"):
        got, want = exe.run([x]), all_unary(x)
    for name, g, w in zip(UNARY, got, want):
        agrees(g, w, name, dtype, f"{name} {np.dtype(dtype).name} n={n}")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
def test_binary_functions_are_numpys(dtype, n, seed):
    x, y = inputs(seed, n, dtype), inputs(seed + 1, n, dtype)
    exe = compiled(all_binary, x, y)
    with np.errstate(all="ignore"):
        got, want = exe.run([x, y]), all_binary(x, y)
    forms = [(name, form) for name in BINARY for form in ("vv", "vs", "sv")]
    for (name, form), g, w in zip(forms, got, want):
        agrees(g, w, name, dtype, f"{name}({form}) {np.dtype(dtype).name} n={n}")


def sliced(x):
    """Functions of strided slices, of a transposed block and of a column:
    each operand made contiguous by the generated code before the call."""
    m = x.reshape(8, 6)
    return [np.tanh(x[::3]), np.exp(m[1:7:2, ::2].T), np.log1p(m[:, 4] ** 2),
            np.arctan2(m[::2, 1], m[1::2, 3]), np.sin(x[::-1])]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
def test_functions_of_slices_and_of_strided_arguments(dtype, seed):
    x = inputs(seed, 48, dtype)
    exe = compiled(sliced, x)
    names = ["tanh", "exp", "log1p", "arctan2", "sin"]
    with np.errstate(all="ignore"):
        want = sliced(x)
        for arg in (x, np.repeat(x, 2)[::2]):  # a strided argument is copied in
            for name, g, w in zip(names, exe.run([arg]), want):
                agrees(g, w, name, dtype, f"{name} of a slice, {np.dtype(dtype).name}")


def test_without_the_loops_the_code_is_numbas_own(monkeypatch):
    """With no addresses (no C extension) the generator writes the code it
    always has: no call, Numba's per-element function, close to NumPy."""
    x = moderate(0, 64, np.float64)
    fused = lambda x: np.tanh(x * 0.5 + 0.25) * x  # noqa: E731
    with_loops = compiled(fused, x)
    assert ("call_loop1(" in with_loops.source) == (vm.loop_for("tanh", np.float64) is not None)
    monkeypatch.setattr(vm, "LOOPS", {})
    without = compiled(fused, x)
    assert "call_loop" not in without.source and "np.tanh(" in without.source
    np.testing.assert_allclose(without.run([x])[0], fused(x), rtol=4e-16)
    np.testing.assert_allclose(with_loops.run([x])[0], without.run([x])[0], rtol=4e-16)


# -- gradients of losses built on them ------------------------------------------------
def mlp(w, X, y):
    W1, W2 = w[:12].reshape(3, 4), w[12:].reshape(4, 1)
    h = np.tanh(X @ W1)  # in place of X @ W1; the gradient multiplies with h.T
    return np.mean((h @ W2 - y) ** 2) + np.mean(np.sin(h))


def softmax_xent(w, X, Y):
    z = X @ w.reshape(3, 4)
    z = z - np.amax(z, axis=1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.sum(Y * log_p) / X.shape[0]


def logistic(w, X, y):
    z = X @ w[:3] + w[3] * np.arctan(X[:, 0])
    return np.mean(np.logaddexp(0.0, -y * z)) + np.sum(np.log1p(np.expm1(w * 0.1) ** 2))


@pytest.mark.parametrize("loss", [mlp, softmax_xent, logistic], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_compiled_gradients_of_losses(loss, dtype, seed):
    """Against eager mode (NumPy's functions: the same bits elementwise, sums
    perhaps in another order) and against central differences (float64) in a
    random direction."""
    rng = np.random.default_rng(seed)
    n_w = {"mlp": 16, "softmax_xent": 12, "logistic": 4}[loss.__name__]
    X = rng.standard_normal((40, 3)).astype(dtype)
    y = (rng.standard_normal((40, 1)) if loss is mlp else
         np.eye(4)[rng.integers(0, 4, 40)] if loss is softmax_xent else
         np.sign(rng.standard_normal(40))).astype(dtype)
    w = (0.5 * rng.standard_normal(n_w)).astype(dtype)
    grad = fa.compile(loss, argnums=0, backend="numba")
    got = grad(w, X, y)
    assert got.dtype == dtype
    # a product with the transpose of what NumPy's loop wrote (in place or
    # not) reads a view (BLAS's transpose flag), not a transposed copy
    source = grad.program.source
    written = re.findall(r"call_loop\d\(.*, (\w+?)(?:_flat)?\)$", source, re.M)
    assert bool(written) == bool(vm.LOOPS)
    for out in written:
        assert f"np.transpose({out}," not in source
    eager = fa.grad(loss)(w, X, y)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, eager, rtol=rtol, atol=rtol)
    if dtype == np.float64:
        v = rng.standard_normal(n_w)
        h = 1e-6
        slope = (loss(w + h * v, X, y) - loss(w - h * v, X, y)) / (2 * h)
        np.testing.assert_allclose(got @ v, slope, rtol=1e-6, atol=1e-8)


def test_threads_share_a_kernel():
    """Threads running one kernel at once get the results of one thread."""
    x = moderate(1, 5000, np.float64) * 4 - 2
    exe = compiled(lambda x: np.exp(np.tanh(x) * np.log(x * x + 1.0)), x)
    want = exe.run([x])[0]
    results, errors = [], []

    def work():
        try:
            for _ in range(50):
                results.append(exe.run([x])[0])
        except Exception as error:  # reported below
            errors.append(error)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 200
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_a_kernel_from_the_disk_cache_calls_this_process_s_loops(tmp_path):
    """Two processes, one cache: the second loads the first's compiled kernel
    (no compile) and, with the loops at its own addresses, gets NumPy's bits."""
    script = textwrap.dedent("""
        import sys, numpy as np, fastad as fa
        from fastad.backends import numba_backend as nb, numba_vecmath as vm
        x = np.linspace(-3, 3, 999)
        exe = nb.build(fa.make_tape(lambda x: [np.tanh(x * 2.0), np.logaddexp(x, 1.5)])(x))
        got = exe.run([x])
        ok = np.array_equal(got[0], np.tanh(x * 2.0)) and np.array_equal(
            got[1], np.logaddexp(x, 1.5))
        hits = sum(exe.kernel.stats.cache_hits.values())
        print(ok, hits, vm.LOOPS.get(("tanh", "float64"), (0, 0))[0], "call_loop" in exe.source)
    """)
    path = os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = dict(os.environ, FASTAD_CACHE_DIR=str(tmp_path), PYTHONPATH=path)
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, cwd=REPO, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    (ok1, hits1, addr1, calls1), (ok2, hits2, addr2, calls2) = (
        run.stdout.split()[-4:] for run in runs)
    assert ok1 == ok2 == "True" or (calls1 == "False" and not vm.LOOPS)
    assert hits1 == "0" and int(hits2) > 0  # the second process compiled nothing
    assert calls1 == calls2 == str(bool(vm.LOOPS))


# -- row broadcasts read in place by fused loops --------------------------------------
def row_normalized(x, w):
    """Row reductions whose VJPs broadcast each row's adjoint over the row."""
    z = x * w
    z = z - np.amax(z, axis=1, keepdims=True)
    p = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
    return np.sum(p * np.cos(x)) + np.sum(np.mean(z, axis=1) ** 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_row_broadcasts_are_read_in_place(dtype, seed):
    """The gradient's broadcasts of row values over rows are read by the
    fused loops (``v[i0]``), never made as arrays; values agree with eager
    mode and, in float64, central differences."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((30, 7)).astype(dtype)
    w = rng.standard_normal(7).astype(dtype)
    grad = fa.compile(row_normalized, argnums=0, backend="numba")
    got = grad(x, w)
    rtol = 1e-11 if dtype == np.float64 else 5e-5
    np.testing.assert_allclose(got, fa.grad(row_normalized)(x, w), rtol=rtol, atol=rtol)
    if dtype == np.float64:
        v = rng.standard_normal(x.shape)
        h = 1e-6
        slope = (row_normalized(x + h * v, w) - row_normalized(x - h * v, w)) / (2 * h)
        np.testing.assert_allclose(np.sum(got * v), slope, rtol=1e-6, atol=1e-8)
    exe = grad.program
    avals = exe.tape.avals
    broadcasts = [ins.out for ins in exe.tape.instrs if ins.prim == "broadcast_to"
                  and avals[ins.ins[0]].shape not in ((), avals[ins.out].shape)]
    assert broadcasts, "the gradient holds row broadcasts"
    for s in broadcasts:
        assert f"v{s} = " not in exe.source, f"broadcast {s} made as an array"


# -- row reductions folded into the loop that makes their operand --------------------
def row_reductions(x, y):
    """Row sums, products, maxima and minima of loop values, over the last
    axis and over the last two, beside a full sum."""
    z = x * y - 0.5
    w = np.abs(z) + 0.25
    return [np.sum(z, axis=-1), np.max(z, axis=-1, keepdims=True), np.prod(w, axis=-1),
            np.min(z * 2.0, axis=(-2, -1)) if z.ndim == 3 else np.min(z * 2.0, axis=-1),
            np.sum(z * w)]


@pytest.mark.parametrize("shape", [(4, 6), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_row_reductions_in_fused_loops_are_the_row_folds_bits(shape, dtype, seed, data):
    """Folded into the loop (one accumulator per row), each row's value is
    the bits of the separate row fold the generator wrote before: signed
    zeros, NaN and infinities in the rows included."""
    from fastad.backends import numba_loops
    rng = np.random.default_rng(seed)
    specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 0.5, -1.5], dtype)
    x = rng.choice(specials, shape) if data.draw(st.booleans()) else \
        rng.standard_normal(shape).astype(dtype)
    y = np.where(rng.random(shape) < 0.3, rng.choice(specials, shape),
                 rng.standard_normal(shape)).astype(dtype)
    folded = compiled(row_reductions, x, y)
    assert "racc" in folded.source
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_loops._LoopFusion, "row_reduction", lambda self, ins: False)
        separate = compiled(row_reductions, x, y)
    assert "racc" not in separate.source
    with np.errstate(all="ignore"):
        for arg in ((x, y), (-x, y), (x, x)):
            for got, want, expected in zip(folded.run(list(arg)), separate.run(list(arg)),
                                           row_reductions(*arg)):
                got, want = np.asarray(got), np.asarray(want)
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.tobytes() == want.tobytes() or (
                    np.array_equal(np.isnan(got), np.isnan(want))
                    and got[~np.isnan(got)].tobytes() == want[~np.isnan(want)].tobytes())
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def recurrent(x, W):
    """A scan whose step applies the functions to its carried vector."""
    def step(h, w):
        h = np.tanh(W @ h + w) * np.exp(-0.1 * np.abs(h))
        return h, np.sum(np.log1p(h * h))
    h, ys = fa.scan(step, x, np.linspace(0.0, 1.0, 12).reshape(4, 3) * x[0])
    return np.sum(ys) + np.sum(np.sin(h))


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_loop_bodies_call_the_loops_too(seed):
    """A loop instruction's body is generated by the same code: its arrays
    call NumPy's loops from inside the kernel's ``for`` loop, and the
    gradient is eager mode's and agrees with central differences."""
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal(3), 0.5 * rng.standard_normal((3, 3))
    grad = fa.compile(recurrent, argnums=0, backend="numba")
    got = grad(x, W)
    np.testing.assert_allclose(got, fa.grad(recurrent)(x, W), rtol=1e-12, atol=1e-12)
    assert ("call_loop1(b1_" in grad.program.source) == bool(vm.LOOPS)
    v, h = rng.standard_normal(3), 1e-6
    slope = (recurrent(x + h * v, W) - recurrent(x - h * v, W)) / (2 * h)
    np.testing.assert_allclose(got @ v, slope, rtol=1e-6, atol=1e-8)
