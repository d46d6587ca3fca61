"""The VM's transcendental functions (exp, log, tanh, sin, ..., pow, arctan2,
hypot, logaddexp) run NumPy's own ufunc loops (csrc/vecmath.c): on random
inputs with NaN, infinities, signed zeros, subnormals and huge arguments, the
VM's results are NumPy's to the bit,
float32 and float64, unfused (UNARY_V) and inside FUSED runs, below and above
the size from which a run is split over the thread pool.  Where NumPy has no
loop (or the loops are switched off) the C library's functions run, within a
few ulps of NumPy and bitwise the same fused and unfused.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from helpers import altered
from fastad.backends import c_backend

pytestmark = pytest.mark.skipif(not c_backend.available, reason="C extension not built")
if c_backend.available:
    from fastad.backends import _vm
    from fastad.backends.lower import lower

    LOOPS, BINARY_LOOPS = _vm.unary_loops(), _vm.binary_loops()
    THREADS, PARALLEL_MIN = _vm.threads()
else:
    LOOPS, BINARY_LOOPS, THREADS, PARALLEL_MIN = {}, {}, 1, 1 << 15

COMPILED = "c" if "c" in BACKENDS else "numpy"
EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 40)), deadline=None)
DTYPES = {"F64": np.float64, "F32": np.float32}
# Functions NumPy computes with SIMD loops on x86-64 (numpy/_core/src/umath,
# loops_*.dispatch): the VM must reach NumPy's loop for each of these.
VECTORIZED = ["EXP", "LOG", "TANH", "SIN", "COS", "EXPM1", "LOG1P", "EXP2", "LOG2", "LOG10",
              "SQRT", "ARCTAN", "SINH", "COSH", "ARCSINH", "ARCTANH"]
FUNCTIONS = sorted({name for name, _ in LOOPS})
BINARY_FUNCTIONS = sorted({name for name, _ in BINARY_LOOPS})
# a binary function of two arrays, of an array and a scalar constant, of a
# constant and an array (BINARY_VV, _VS, _SV unfused; a step reading a
# SCALAR slot, fused); o is an array of ones
BINARY_FORMS = {"vv": lambda uf: lambda x, y, o: uf(x, y),
                "vs": lambda uf: lambda x, y, o: uf(x, 2.5),
                "sv": lambda uf: lambda x, y, o: uf(0.75, y)}
# sizes: one element, a block's tail, several blocks, and past the parallel
# threshold (a run split over the pool's threads)
SIZES = [1, 3, 511, 513, 1100, PARALLEL_MIN + 1029]


def special_values(dtype) -> np.ndarray:
    """NaN, infinities, signed zeros, subnormals, the extremes of the dtype,
    domain edges and arguments past every function's overflow."""
    info = np.finfo(dtype)
    vals = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, info.smallest_subnormal,
            -info.smallest_subnormal, info.tiny, -info.tiny, info.tiny / 3, info.max, -info.max,
            info.eps, 1.0, -1.0, 0.5, -0.5, 2.0, 1.0 - info.epsneg, -1.0 + info.epsneg,
            88.72, -87.3, 89.5, -104.0, 709.78, -745.2, 710.0, 1e22, -1e22, 1e300, 3.0e38,
            np.pi, -np.pi / 2, 1e5, 8192.5, 0.49999997]
    with np.errstate(over="ignore"):
        return np.array(vals, dtype=np.float64).astype(dtype)


def random_inputs(seed: int, n: int, dtype) -> np.ndarray:
    """n values: magnitudes spread over the dtype's exponents, moderate values
    and special values at random places."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    lo, hi = np.log10(info.smallest_subnormal), np.log10(info.max)
    spread = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(lo, hi, n)
    moderate = rng.uniform(-4, 4, n)
    unit = rng.uniform(-1.2, 1.2, n)
    pick = rng.integers(0, 4, n)
    with np.errstate(over="ignore"):
        x = np.where(pick == 0, spread, np.where(pick == 1, unit, moderate)).astype(dtype)
    specials = special_values(dtype)
    at = rng.integers(0, n, max(1, n // 8))
    x[at] = rng.choice(specials, len(at))
    if n >= len(specials):
        x[:len(specials)] = specials  # every one at least once
    return x


def same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal to the bit, signed zeros included; NaN where NaN (IEEE leaves the
    sign and payload of a NaN result open)."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what)
    bits = f"u{want.dtype.itemsize}"
    bad = got[~nan].view(bits) != want[~nan].view(bits)
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements differ, e.g. x -> got "
                           f"{got[~nan][bad][:3]}, NumPy {want[~nan][bad][:3]}")


def ufunc_of(name: str):
    return LOOPS[name, "F64"] if (name, "F64") in LOOPS else LOOPS[name, "F32"]


def unfused(uf):
    return lambda x, y: uf(x)


def fused(uf):
    # a run of three elementwise steps: f, a negation and a product with
    # y = 1 (both exact, so the expected value is NumPy's f to the bit)
    return lambda x, y: -uf(x) * y


def vm_run(fn, x: np.ndarray, fuse: bool):
    y = np.ones_like(x)
    tape = fa.make_tape(fn)(x, y)
    program = lower(tape, fuse=fuse)
    names = [name for _, name, _ in program.instructions()]
    assert ("FUSED" in names) == (fuse and x.size > 1), names  # one element: no run
    return c_backend.Executable(program).run([x, y])[0], fn(x, y)


def vm_run_binary(fn, x: np.ndarray, y: np.ndarray, fuse: bool):
    """fn(x, y, ones) on the VM, and NumPy's; fused, fn is negated and
    multiplied by the ones (exact), so that it is one run of three steps."""
    o = np.ones_like(x)
    run = (lambda x, y, o: -fn(x, y, o) * o) if fuse else fn
    program = lower(fa.make_tape(run)(x, y, o), fuse=fuse)
    names = [name for _, name, _ in program.instructions()]
    assert ("FUSED" in names) == (fuse and x.size > 1), names
    got = c_backend.Executable(program).run([x, y, o])[0]
    return (-got if fuse else got), fn(x, y, o)


@contextlib.contextmanager
def library_functions():
    """The C library's functions instead of NumPy's loops, for one test."""
    before = _vm.use_numpy_loops(False)
    try:
        yield
    finally:
        _vm.use_numpy_loops(before)


def test_numpy_loops_are_installed_for_every_vectorized_function():
    missing = [(name, dt) for name in VECTORIZED for dt in DTYPES if (name, dt) not in LOOPS]
    assert not missing, missing
    for (name, dt), uf in LOOPS.items():
        assert isinstance(uf, np.ufunc) and uf.nin == 1
        assert f"{np.dtype(DTYPES[dt]).char}->{np.dtype(DTYPES[dt]).char}" in uf.types


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("dt", sorted(DTYPES))
@pytest.mark.parametrize("name", FUNCTIONS)
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from(SIZES))
def test_vm_functions_are_numpys_to_the_bit(name, dt, fuse, seed, n):
    uf = LOOPS[name, dt]
    x = random_inputs(seed, n, DTYPES[dt])
    with np.errstate(all="ignore"):
        got, want = vm_run(fused(uf) if fuse else unfused(uf), x, fuse)
    same_bits(got, want, f"{name} {dt} n={n} fuse={fuse}")


@pytest.mark.parametrize("form", sorted(BINARY_FORMS))
@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("dt", sorted(DTYPES))
@pytest.mark.parametrize("name", BINARY_FUNCTIONS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from(SIZES))
def test_vm_binary_functions_are_numpys_to_the_bit(name, dt, fuse, form, seed, n):
    """pow, arctan2, hypot, logaddexp: NumPy's loops, a broadcast scalar read
    with step 0 as NumPy reads it."""
    uf = BINARY_LOOPS[name, dt]
    x = random_inputs(seed, n, DTYPES[dt])
    y = random_inputs(seed + 1, n, DTYPES[dt])
    with np.errstate(all="ignore"):
        got, want = vm_run_binary(BINARY_FORMS[form](uf), x, y, fuse)
    same_bits(got, want, f"{name}({form}) {dt} n={n} fuse={fuse}")


@pytest.mark.parametrize("dt", sorted(DTYPES))
@pytest.mark.parametrize("name", BINARY_FUNCTIONS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([7, 1100]))
def test_library_binary_functions_run_without_the_loops(name, dt, seed, n):
    """With the loops off: the C library's function, NumPy's value within a few
    ulps on moderate arguments, the same bits fused and unfused."""
    dtype = DTYPES[dt]
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0.01, 4, n).astype(dtype), rng.uniform(-4, 4, n).astype(dtype)
    fn = BINARY_FORMS["vv"](BINARY_LOOPS[name, dt])
    with library_functions():
        plain, want = vm_run_binary(fn, x, y, False)
        in_run, _ = vm_run_binary(fn, x, y, True)
    same_bits(in_run, plain, f"{name} {dt}: fused against unfused")
    ulps = 8 if dtype == np.float64 else 4
    np.testing.assert_allclose(plain, want, rtol=ulps * np.finfo(dtype).eps)


@pytest.mark.parametrize("n", [PARALLEL_MIN - 1, PARALLEL_MIN, 3 * PARALLEL_MIN + 7])
def test_runs_split_over_threads_give_numpys_bits_and_repeat(n):
    """Around the parallel threshold: chunks on the pool's threads call the
    loops concurrently; every repetition gives the same, NumPy's, bits."""
    x = random_inputs(n, n, np.float64)

    def f(x, y):
        return np.tanh(x) * y + np.exp(-np.abs(x)) * np.log1p(np.abs(y * x))
    y = np.ones_like(x)
    exe = c_backend.Executable(lower(fa.make_tape(f)(x, y)))
    with np.errstate(all="ignore"):
        want = f(x, y)
    for _ in range(3):
        same_bits(exe.run([x, y])[0], want, f"n={n}, {THREADS} threads")


@pytest.mark.parametrize("dt", sorted(DTYPES))
@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([7, 1100, PARALLEL_MIN + 1029]))
def test_library_functions_run_without_the_loops(name, dt, seed, n):
    """The fallback: with the loops off, the C library's function gives NumPy's
    value within a few ulps (NaN, infinities and zeros where NumPy has them),
    and the same bits fused and unfused."""
    dtype = DTYPES[dt]
    uf = LOOPS[name, dt]
    x = random_inputs(seed, n, dtype)
    with library_functions(), np.errstate(all="ignore"):
        plain, want = vm_run(unfused(uf), x, False)
        in_run, _ = vm_run(fused(uf), x, True)
    same_bits(-in_run, plain, f"{name} {dt}: fused against unfused")
    exact = np.isnan(want) | np.isinf(want) | (want == 0)
    np.testing.assert_array_equal(plain[exact], want[exact])
    # the trigonometric functions of huge arguments depend on the argument
    # reduction; compare where |x| is moderate
    ok = ~exact & (np.abs(x) < 1e4)
    ulps = 8 if dtype == np.float64 else 4
    np.testing.assert_allclose(plain[ok], want[ok], rtol=ulps * np.finfo(dtype).eps,
                               atol=ulps * np.finfo(dtype).tiny)


@pytest.mark.parametrize("name", ["TANH", "EXP", "LOG1P", "SIN", "ARCTAN", "SQRT"])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([5, 700]))
def test_compiled_gradients_equal_eager_ones_to_the_bit(name, seed, n):
    """The gradient of sum(f(x) * w) is elementwise (f'(x) * w: no sums), so
    the compiled one, whose f runs NumPy's loop, is the eager one to the bit;
    both agree with central differences."""
    uf = ufunc_of(name)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, n)
    w = rng.standard_normal(n)

    def loss(x, w):
        return np.sum(uf(x) * w)
    compiled = fa.compile(loss, backend=COMPILED)(x, w)
    eager = fa.grad(loss)(x, w)
    same_bits(compiled, eager, name)
    d = rng.standard_normal(n)
    h = 1e-6
    fd = (loss(x + h * d, w) - loss(x - h * d, w)) / (2 * h)
    np.testing.assert_allclose(eager @ d, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_function_codes_reach_their_own_loop_and_hostile_ones_are_rejected(fuse):
    """The loop table is indexed by the instruction's function code: every
    valid code runs its own function (NumPy's loop where there is one), and a
    code outside the table is rejected by the validator, never called."""
    from fastad.backends.vm_program import TABLES
    from fastad.core.errors import TapeError
    names = TABLES["UNARY_FNS"]
    x = random_inputs(5, 1100, np.float64)
    program = lower(fa.make_tape(fused(np.tanh) if fuse else unfused(np.tanh))(x, np.ones_like(x)),
                    fuse=fuse)
    opcode = "FUSED" if fuse else "UNARY_V"
    pc, _, words = next(i for i in program.instructions() if i[1] == opcode)
    if fuse:  # the function word of the descriptor's UNARY step
        d = words[1]
        nslots, nsteps = int(program.meta[d + 1]), int(program.meta[d + 2])
        steps = d + 3 + 2 * nslots
        at = next(steps + 5 * k + 1 for k in range(nsteps)
                  if TABLES["FUSED_STEPS"][int(program.meta[steps + 5 * k])] == "UNARY")
    checked = rejected = 0
    for code in [-1, len(names), len(names) + 1, 2**31 - 1, -2**31, *range(len(names))]:
        prog_code, meta = program.code.copy(), program.meta.copy()
        if fuse:
            meta[at] = code
        else:
            prog_code[pc + 1] = code
        hostile = altered(program, code=prog_code, meta=meta)
        if not 0 <= code < len(names):
            with pytest.raises(TapeError, match="invalid program"):
                c_backend.Executable(hostile)
            rejected += 1
            continue
        got = c_backend.Executable(hostile).run([x, np.ones_like(x)])[0]
        if (names[code], "F64") in LOOPS:
            with np.errstate(all="ignore"):
                want = LOOPS[names[code], "F64"](x)
            same_bits(-got if fuse else got, want, names[code])
            checked += 1
    assert rejected == 5 and checked == sum(dt == "F64" for _, dt in LOOPS)
