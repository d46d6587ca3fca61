"""Reliability under load and abuse: no leaks over a million calls, threads
that give serial results bit for bit, and every case of docs/bad-input.md:
a clear exception or the documented result, never a crash or a wrong number."""
from __future__ import annotations

import concurrent.futures
import gc
import os
import sys

import numpy as np
import pytest

import fastad as fa
from fastad.backends import c_backend
from fastad.core.tape import Aval, Instr, Tape

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from workloads import make_rosenbrock, make_rosenbrock_loop, make_sin_poly  # noqa: E402

sin_poly, rosenbrock, rosenbrock_loop = make_sin_poly(), make_rosenbrock(), make_rosenbrock_loop()


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- leaks ---------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_a_million_gradient_calls_do_not_grow_memory(record_count):
    """W4's compiled gradient, 10^6 calls: resident memory grows by < 1 MB."""
    g = fa.compile(sin_poly)
    x = np.linspace(-1.0, 1.0, 10)
    expected = g(x)
    for _ in range(20_000):  # warm up: arena pool, allocator free lists
        g(x)
    gc.collect()
    before = resident_bytes()
    calls = 1_000_000
    for _ in range(calls):
        g(x)
    gc.collect()
    grown = resident_bytes() - before
    np.testing.assert_array_equal(g(x), expected)
    record_count("gradient calls in the leak test", calls)
    record_count("resident memory growth over them (bytes, limit 1 MB)", grown)
    assert grown < 1 << 20, f"resident memory grew by {grown} bytes over {calls} calls"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not c_backend.available,
                    reason="needs Linux /proc and the C extension")
def test_rejected_calls_do_not_leak():
    """VM calls that raise (wrong argument) return their arena and leak nothing."""
    runner = c_backend.build(fa.make_tape(lambda x: x * 2.0)(np.ones(3)))
    bad = [np.arange(3), np.ones(4), "text"]
    for _ in range(2_000):
        for arg in bad:
            with pytest.raises(fa.SignatureError):
                runner.run([arg])
    gc.collect()
    before = resident_bytes()
    for _ in range(20_000):
        for arg in bad:
            with pytest.raises(fa.SignatureError):
                runner.run([arg])
    gc.collect()
    assert resident_bytes() - before < 1 << 20


# -- threads -------------------------------------------------------------------------------
def in_threads(worker, args):
    """worker(a) for each a of args, each in its own thread, all at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(args)) as pool:
        for done in [pool.submit(worker, a) for a in args]:
            done.result()  # a worker's exception fails the test


def test_eight_threads_give_serial_results_bit_for_bit(compiled_backend, record_count):
    """8 threads x 10^4 calls of one compiled gradient, each thread its own input."""
    g = fa.compile(rosenbrock, backend=compiled_backend)
    inputs = [np.linspace(-1.0, 1.5, 100) + 0.01 * k for k in range(8)]
    serial = [g.value_and_grad(x) for x in inputs]
    calls, mismatches = 10_000, []

    def worker(k):
        x, (value, grad) = inputs[k], serial[k]
        for _ in range(calls):
            v, d = g.value_and_grad(x)
            if v != value or not np.array_equal(d, grad):
                mismatches.append(k)
                return

    in_threads(worker, list(range(8)))
    record_count(f"threaded calls on the {compiled_backend} backend", 8 * calls)
    assert not mismatches


def test_threads_tracing_at_once(compiled_backend):
    """Threads that trace at the same time each record their own tape (the
    active trace is per thread): every result is the serial one."""
    sizes = list(range(5, 13))
    expected = {n: fa.grad(rosenbrock_loop)(np.linspace(-1.0, 1.0, n)) for n in sizes}
    for _ in range(3):
        g = fa.compile(rosenbrock_loop, backend=compiled_backend)
        results: dict[int, np.ndarray] = {}

        def worker(n):
            results[n] = g(np.linspace(-1.0, 1.0, n))

        in_threads(worker, sizes)
        for n in sizes:
            np.testing.assert_allclose(results[n], expected[n], rtol=1e-12)


# -- bad input (the table in docs/bad-input.md) -----------------------------------------------
@pytest.fixture
def compiled(backend):
    """A compiled gradient already traced for float64 arrays of shape (3,)."""
    g = fa.compile(sin_poly, backend=backend)
    g(np.ones(3))
    return g


def expected_grad(x):
    x = np.asarray(x, dtype=np.float64)
    return np.cos(x) * x ** 2 + 2 * x * np.sin(x)


def test_wrong_shape_is_a_new_signature(compiled):
    np.testing.assert_allclose(compiled(np.ones(4)), expected_grad(np.ones(4)), rtol=1e-14)
    assert compiled.cache_info()["signatures"] == 2


def test_wrong_shape_of_a_loaded_function_is_a_clear_error(compiled):
    loaded = fa.loads(fa.dumps(compiled))
    with pytest.raises(fa.SignatureError, match="without its Python function"):
        loaded(np.ones(4))


def test_float32_is_its_own_signature_and_stays_float32(compiled):
    x = np.linspace(0.1, 1.0, 3).astype(np.float32)
    got = compiled(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected_grad(x), rtol=1e-5)


# (complex arrays are differentiable: tests/test_complex.py)
@pytest.mark.parametrize("arg", [np.arange(3), np.ones(3, bool), np.ones(3, np.float16),
                                 np.ones(3, np.clongdouble),
                                 np.array([1.0, 2.0, 3.0], dtype=object),
                                 "abc"], ids=["int", "bool", "float16", "clongdouble", "object",
                                              "str"])
def test_non_float_arrays_cannot_be_differentiated(compiled, arg):
    with pytest.raises(TypeError, match="argument 0"):
        compiled(arg)


def test_int_and_bool_scalars(compiled):
    np.testing.assert_allclose(compiled(2), expected_grad(2.0), rtol=1e-14)
    with pytest.raises(TypeError, match="bool"):
        compiled(True)


def test_integer_arrays_that_are_not_differentiated_are_data(backend):
    j = fa.jit(lambda x, idx: np.sum(x * idx), backend=backend)
    x = np.linspace(0.0, 1.0, 3)
    assert j(x, np.arange(3)) == pytest.approx(np.sum(x * np.arange(3)), rel=1e-14)
    assert j(x, np.arange(3) + 1) == pytest.approx(np.sum(x * (np.arange(3) + 1)), rel=1e-14)
    assert j.cache_info()["signatures"] == 1  # keyed by shape and kind, not by value


def test_lists_are_pytrees_not_arrays(compiled):
    """A list argument is a list of scalar arguments; NumPy calls on the list
    itself raise TracingError naming np.asarray.  Convert it first."""
    with pytest.raises(fa.TracingError, match="asarray"):
        compiled([1.0, 2.0, 3.0])
    np.testing.assert_allclose(compiled(np.asarray([1.0, 2.0, 3.0])),
                               expected_grad([1.0, 2.0, 3.0]), rtol=1e-14)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)])
def test_empty_arrays(backend, shape):
    g = fa.compile(sin_poly, backend=backend)
    value, grad = g.value_and_grad(np.ones(shape))
    assert value == 0.0 and grad.shape == shape
    out = fa.jit(lambda x: (np.sum(x, axis=0), np.cumsum(x), x * 2.0), backend=backend)(
        np.ones(shape))
    for got, want in zip(out, (np.sum(np.ones(shape), axis=0), np.cumsum(np.ones(shape)),
                               np.ones(shape) * 2.0)):
        assert got.shape == want.shape


def test_max_of_an_empty_array_raises_like_numpy(backend):
    with pytest.raises(ValueError):
        fa.jit(np.max, backend=backend)(np.ones(0))


def layouts():
    base = np.linspace(0.1, 2.0, 24)
    readonly = base[:6].copy()
    readonly.flags.writeable = False
    swapped = base[:6].astype(">f8")
    return {"strided": base[::4], "fortran": np.asfortranarray(base[:6].reshape(2, 3)).T,
            "readonly": readonly, "byteswapped": swapped,
            "transposed": base[:6].reshape(3, 2).T}


@pytest.mark.parametrize("layout", list(layouts()))
def test_non_contiguous_read_only_and_byteswapped_arrays(backend, layout):
    x = layouts()[layout]
    g = fa.compile(sin_poly, backend=backend)
    g(np.ascontiguousarray(x, dtype=np.float64))  # traced on a plain copy first
    got = g(x)
    np.testing.assert_allclose(got, expected_grad(x), rtol=1e-14)
    assert got.shape == x.shape
    if layout == "readonly":
        assert not x.flags.writeable  # the caller's array is not touched


def test_nan_and_inf_propagate_as_in_numpy(backend):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0])
    value, grad = fa.compile(sin_poly, backend=backend).value_and_grad(x)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(grad, expected_grad(x))
        assert np.isnan(value) and np.isnan(sin_poly(x))


def test_nans_can_be_located(backend):
    f = fa.jit(lambda x: np.log(x) * 2.0, backend=backend, check_nans=True)
    f(np.ones(3))
    with pytest.raises(FloatingPointError, match="log"):
        f(np.array([1.0, -1.0, 2.0]))


def test_sizes_that_overflow_are_refused_when_tracing():
    with pytest.raises(ValueError):
        fa.jit(lambda x: np.broadcast_to(x, (2**31, 2**31)))(np.ones(1))


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**62, 4), (2**21, 2**21)],
                         ids=["wraps-int64", "wraps-bytes", "over-limit"])
def test_saved_tapes_with_huge_sizes_are_rejected(shape):
    """Sizes whose element or byte count overflows int64 (or exceeds the VM's
    arena limit) are refused before any backend computes an arena from them."""
    tape = Tape(inputs=[0], outputs=[1], instrs=[Instr("sin", 1, (0,))],
                avals=[Aval(shape, np.dtype(np.float64))] * 2)
    with pytest.raises(fa.TapeError, match="bytes"):
        Tape.from_bytes(tape.to_bytes())


@pytest.mark.parametrize("key", [5, -4, (0, 3), [0, 7], np.array([-5])],
                         ids=["int", "negative", "tuple", "list", "array"])
def test_out_of_range_indices_raise_index_error(backend, key):
    x = np.ones((3, 2)) if isinstance(key, tuple) else np.ones(3)
    with pytest.raises(IndexError):
        fa.jit(lambda x: x[key], backend=backend)(x)
    with pytest.raises(IndexError):
        fa.grad(lambda x: np.sum(x[key]))(x)


def test_traced_indices_are_refused(backend):
    """A float index is refused as NumPy refuses it, eager and compiled alike
    (integer and boolean traced indices work: tests/test_numpy_dropin.py)."""
    with pytest.raises(IndexError, match="integer"):
        np.ones(3)[np.float64(1.0)]
    with pytest.raises(IndexError, match="integer"):
        fa.grad(lambda x: x[x[0]])(np.ones(3))
    with pytest.raises(IndexError, match="integer"):
        fa.jit(lambda x: x[x[0]], backend=backend)(np.ones(3))


# -- traced functions that write into their arrays ------------------------------------------
def overwrites_its_argument(x):
    x[0] = 5.0
    return np.sum(x * x)


def adds_in_place_through_an_alias(x):
    y = x
    y += 1.0
    y *= x
    return np.sum(x * x)


@pytest.mark.parametrize("f", [overwrites_its_argument, adds_in_place_through_an_alias])
def test_writes_into_arrays_follow_numpy(backend, f):
    """Item assignment into an argument, and in-place operators through an alias,
    give NumPy's value and the derivative of that value (the gradient with
    respect to an overwritten argument was zero: it followed the new value)."""
    x = np.array([1.0, 2.0, 3.0])
    value, grad = fa.compile(f, backend=backend).value_and_grad(x.copy())
    assert value == f(x.copy())
    np.testing.assert_allclose(grad, fa.grad(f)(x.copy()), rtol=1e-14)
    fa.check_grads(f, (x.copy(),), order=2)


def test_in_place_operators_keep_the_dtype_and_shape_as_numpy_does():
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        y = x.astype(np.float32)
        y += x  # float64 result cast back into float32
        return y
    assert fa.jit(f)(x).dtype == f(x.copy()).dtype == np.float32

    def grows(x):
        y = x[:1]
        y += x  # (1,) += (3,): no room for the broadcast result
        return y
    with pytest.raises(ValueError, match="non-broadcastable output"):
        fa.jit(grows)(x)
