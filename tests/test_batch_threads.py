"""Batched compiled calls split over threads: bit-identical to the serial call
for every thread count and chunk size, equal to a loop of single calls, and
guards, padding and bad input handled."""
import pickle
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
from fastad import batched
from fastad.core import pytree
from helpers import FAST, rosenbrock, seconds_until_interrupted

rng = np.random.default_rng(11)


def mlp_loss(params, x, y):
    W1, b1, W2 = params
    h = np.tanh(x @ W1 + b1)
    return np.sum((h @ W2 - y) ** 2)


def mlp_params():
    return (rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal((4, 2)))


def assert_same_bits(a, b):
    for x, y in zip(_leaves(a), _leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def _leaves(tree):
    return pytree.flatten(tree)[0] if isinstance(tree, (tuple, list, dict)) else [tree]


@pytest.mark.parametrize("count", [1, 7, 64, 67])
def test_threads_are_bit_identical_to_serial(compiled_backend, count):
    X = rng.standard_normal((count, 30))
    g = fa.compile(rosenbrock, backend=compiled_backend)
    serial = g.batch(X, threads=1)
    for threads in (2, 3, 8, None):
        assert_same_bits(g.batch(X, threads=threads), serial)
    loop = np.stack([g(x) for x in X])
    np.testing.assert_allclose(serial, loop, rtol=1e-13, atol=1e-13)


def test_per_example_gradients_of_shared_weights(compiled_backend):
    params, X, Y = mlp_params(), rng.standard_normal((45, 1, 5)), rng.standard_normal((45, 1, 2))
    g = fa.compile(mlp_loss, backend=compiled_backend)
    serial = g.batch(params, X, Y, in_axes=(None, 0, 0), threads=1)
    assert_same_bits(g.batch(params, X, Y, in_axes=(None, 0, 0), threads=2), serial)
    loop = [g(params, x, y) for x, y in zip(X, Y)]
    for k, leaf in enumerate(serial):
        assert leaf.shape == (45,) + params[k].shape
        np.testing.assert_allclose(leaf, np.stack([grads[k] for grads in loop]), rtol=1e-12,
                                   atol=1e-12)
    for k, leaf in enumerate(fa.vmap(fa.grad(mlp_loss), in_axes=(None, 0, 0))(params, X, Y)):
        np.testing.assert_allclose(serial[k], leaf, rtol=1e-12, atol=1e-12)


@given(count=st.integers(1, 40), chunk=st.integers(1, 12), threads=st.integers(2, 5),
       axis=st.integers(0, 1))
@FAST
def test_any_chunking_matches_serial_and_loop(count, chunk, threads, axis):
    X = np.random.default_rng(count).standard_normal((count, 6))
    f = fa.jit(lambda x: (np.sin(x) * x[0], np.sum(x ** 2)))
    data = X if axis == 0 else np.ascontiguousarray(X.T)
    serial = f.batch(data, in_axes=axis, threads=1, chunk=chunk)
    assert_same_bits(f.batch(data, in_axes=axis, threads=threads, chunk=chunk), serial)
    for got, want in zip(serial, zip(*[f(x) for x in X])):
        np.testing.assert_allclose(got, np.stack(want), rtol=1e-13, atol=1e-13)


def test_chunks_that_take_other_branches_are_retraced(compiled_backend):
    def f(x):
        if np.sum(x) > 0:
            return np.sum(x ** 2)
        return np.sum(np.sin(x))
    X = np.concatenate([np.abs(rng.standard_normal((8, 3))), -np.abs(rng.standard_normal((8, 3)))])
    g = fa.compile(f, backend=compiled_backend)
    want = np.stack([fa.grad(f)(x) for x in X])
    for threads in (1, 2):
        np.testing.assert_allclose(g.batch(X, threads=threads, chunk=4), want, rtol=1e-13)
    # one chunk holding both branches: its examples run one at a time, with a warning
    with pytest.warns(UserWarning, match="different branches"):
        np.testing.assert_allclose(g.batch(X, chunk=16), want, rtol=1e-13)


@pytest.mark.filterwarnings("ignore:fastad.*runs on the")
def test_complex_batches(compiled_backend):
    Z = rng.standard_normal((13, 3)) + 1j * rng.standard_normal((13, 3))
    g = fa.compile(lambda z: np.sum(np.abs(z * (1 + 2j)) ** 2), backend=compiled_backend)
    serial = g.batch(Z, threads=1, chunk=3)
    assert_same_bits(g.batch(Z, threads=2, chunk=3), serial)
    np.testing.assert_allclose(serial, np.stack([g(z) for z in Z]), rtol=1e-13)


def test_empty_batch(compiled_backend):
    g = fa.compile(rosenbrock, backend=compiled_backend)
    assert g.batch(np.ones((0, 5)), threads=2).shape == (0, 5)
    f = fa.jit(lambda x: (x * 2.0, np.sum(x)), backend=compiled_backend)
    doubled, sums = f.batch(np.ones((0, 3)))
    assert doubled.shape == (0, 3) and sums.shape == (0,)


def test_default_chunk_depends_on_the_batch_not_the_threads():
    assert batched.default_chunk(256, None) == 8
    assert batched.default_chunk(256, 1 << 20) == 4
    assert batched.default_chunk(256, 1 << 30) == 1
    assert batched.default_chunk(5, None) == 1


def test_pickled_function_keeps_its_batched_programs(compiled_backend):
    X = rng.standard_normal((20, 4))
    g = fa.compile(rosenbrock, backend=compiled_backend)
    want = g.batch(X, threads=2)
    loaded = pickle.loads(pickle.dumps(g))
    assert loaded.fn is None
    assert_same_bits(loaded.batch(X, threads=2), want)
    with pytest.raises(fa.SignatureError, match="without its Python function"):
        loaded.batch(rng.standard_normal((20, 5)))
    jitted = fa.jit(lambda x: np.cos(x) * x, backend=compiled_backend)
    want = jitted.batch(X, threads=1)
    assert_same_bits(pickle.loads(pickle.dumps(jitted)).batch(X, threads=2), want)


@pytest.mark.parametrize("bad, match", [
    (dict(threads=0), "threads must be a positive int"),
    (dict(threads=1.5), "threads must be a positive int"),
    (dict(chunk=0), "chunk must be a positive int"),
    (dict(in_axes=2), "in_axes=2"),
    (dict(in_axes=None), "no argument is batched"),
])
def test_bad_batch_arguments(bad, match):
    g = fa.compile(rosenbrock)
    with pytest.raises(ValueError, match=match):
        g.batch(np.ones((4, 3)), **bad)


def test_batch_sizes_must_agree():
    g = fa.compile(mlp_loss)
    with pytest.raises(ValueError, match="batch sizes differ"):
        g.batch(mlp_params(), np.ones((4, 1, 5)), np.ones((3, 1, 2)), in_axes=(None, 0, 0))
    with pytest.raises(ValueError, match="must be float, complex, integer or boolean arrays"):
        g.batch(mlp_params(), [1.0, 2.0], np.ones((2, 1, 2)), in_axes=(None, 0, 0))


def test_executable_run_batch_checks_its_arguments():
    c_backend = pytest.importorskip("fastad.backends.c_backend")
    if not c_backend.available:
        pytest.skip("the C extension is not built")
    g = fa.jit(lambda x: x * 2.0, backend="c")
    g.batch(np.ones((8, 3)), chunk=4)
    exe = g._batched[(0,)].program
    with pytest.raises(fa.SignatureError, match=r"shape \(8, 3\)"):
        exe.run_batch([np.ones((8, 2))], [True], 8, 2)
    with pytest.raises(fa.SignatureError, match="not batched"):
        exe.run_batch([np.ones((4, 3))], [False], 8, 2)
    with pytest.raises(ValueError, match="count must be positive"):
        exe.run_batch([np.ones((0, 3))], [True], 0, 2)
    outs, failed = exe.run_batch([np.arange(24.0).reshape(8, 3)], [True], 8, 3)
    np.testing.assert_array_equal(outs[0], np.arange(24.0).reshape(8, 3) * 2)
    assert failed == []


# -- Ctrl-C during a long batch ------------------------------------------------------------
def _wavy(x):
    for _ in range(20):
        x = np.sin(x) * 0.9 + np.cos(x[::-1]) * 0.1
    return np.sum(x ** 2)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_stops_a_long_batch_and_the_function_still_works(threads):
    """SIGINT 0.2 s into a batch that would take about a second (timed
    beforehand): KeyboardInterrupt well before it would have finished, on one
    thread (the caller's chunks poll) or two (a flag stops the other thread's
    chunks), every thread ended, and the same function then gives the same bits."""
    c_backend = pytest.importorskip("fastad.backends.c_backend")
    if not c_backend.available:
        pytest.skip("the C extension is not built")
    g = fa.compile(_wavy, backend="c")
    small = rng.standard_normal((16, 2000))
    want = g.batch(small, threads=threads, chunk=4)  # also compiles the chunk's program
    start = time.perf_counter()
    g.batch(small, threads=threads, chunk=4)
    per_example = (time.perf_counter() - start) / len(small)
    count = max(64, int(1.0 / per_example))  # about 1 s uninterrupted
    X = np.resize(small, (count, small.shape[1]))
    alive = threading.active_count()
    elapsed = seconds_until_interrupted(lambda: g.batch(X, threads=threads, chunk=4))
    assert 0.2 <= elapsed < 0.6 * per_example * count
    assert threading.active_count() == alive
    assert_same_bits(g.batch(small, threads=threads, chunk=4), want)
