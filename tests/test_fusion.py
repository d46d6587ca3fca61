"""Fused elementwise execution (FUSED) against the reference interpreter and
against the same tape lowered without fusion.

Random elementwise/broadcast/reduction programs (and their gradient tapes,
whose slices become in-place scatter_add chains) are lowered with and without
fusion: every output agrees with the reference to rounding, and with the
unfused program bit for bit except sums (the VM adds them per block and per
thread chunk).  Then the pieces fusion relies on: large runs split over
threads deterministically, limits of one instruction, readable listings.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.backends import c_backend, reference
from fastad.backends.lower import lower
from helpers import rosenbrock_loop_guarded, signed_sum_loop

pytestmark = pytest.mark.skipif(not c_backend.available, reason="C extension not built")

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 40)), deadline=None)
RTOL = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 2e-4}

UNARY = {"sin": np.sin, "cos": np.cos, "tanh": np.tanh, "neg": np.negative,
         "square": np.square, "abs": np.abs, "sqrt_abs": lambda v: np.sqrt(np.abs(v)),
         "exp_small": lambda v: np.exp(np.tanh(v))}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
          "minimum": np.minimum, "hypot": np.hypot,
          "div_safe": lambda a, b: a / (1.5 + np.abs(b))}

# A program: steps over a growing list of values (index into it).  Values 0
# and 1 are the inputs x and y (same shape), value 2 the scalar input c.
step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), st.integers(0, 99)),
    st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), st.integers(0, 99),
              st.integers(0, 99)),
    st.tuples(st.just("const"), st.sampled_from(["mul", "add", "rsub"]), st.integers(0, 99),
              st.floats(-3, 3, allow_nan=False, width=32)),
    st.tuples(st.just("shift"), st.sampled_from(["diff", "sum2"]), st.integers(0, 99)),
)
programs = st.tuples(st.lists(step, min_size=1, max_size=14),
                     st.lists(st.integers(0, 99), min_size=1, max_size=3),
                     st.booleans())


def build(prog):
    """The program as a function of (x, y, c): NumPy code fastad traces."""
    steps, outs, with_sum = prog

    def f(x, y, c):
        vals = [x, y, c * x]
        for s in steps:
            pick = lambda i: vals[i % len(vals)]  # noqa: E731
            if s[0] == "unary":
                vals.append(UNARY[s[1]](pick(s[2])))
            elif s[0] == "binary":
                vals.append(BINARY[s[1]](pick(s[2]), pick(s[3])))
            elif s[0] == "const":
                v, k = pick(s[2]), s[3]
                vals.append(v * k if s[1] == "mul" else v + k if s[1] == "add" else k - v)
            else:  # neighbours: a stencil, as slices of the full-length values
                v = pick(s[2])
                d = v[1:] - v[:-1] if s[1] == "diff" else v[1:] + 2.0 * v[:-1]
                vals.append(np.concatenate([d, d[-1:]]) if d.ndim == 1 else v)
        chosen = [vals[i % len(vals)] for i in outs]
        total = sum(np.sum(v * v) for v in chosen) if with_sum else None
        return (total, *chosen) if with_sum else tuple(chosen)
    return f


def run_program(tape, args, fuse):
    return c_backend.Executable(lower(tape, fuse=fuse)).run(list(args))


def assert_fused_matches(tape, args):
    fused = run_program(tape, args, True)
    plain = run_program(tape, args, False)
    want = reference.evaluate(tape, list(args))
    for got, unfused, ref, slot in zip(fused, plain, want, tape.outputs):
        ref = np.asarray(ref)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        rtol = RTOL[got.dtype] * (100 if ref.ndim == 0 else 1)
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)
        if ref.ndim and not _has_sum(tape, slot):
            np.testing.assert_array_equal(got, unfused)  # fusion changes no bit


def _has_sum(tape, slot):
    """Whether slot depends on a sum (whose rounding fusion may change)."""
    producer = {ins.out: ins for ins in tape.instrs}
    todo, seen = [slot], set()
    while todo:
        s = todo.pop()
        if s in seen or s not in producer:
            continue
        seen.add(s)
        if producer[s].prim == "sum":
            return True
        todo.extend(producer[s].ins)
    return False


def inputs(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-2, 2, n).astype(dtype), rng.uniform(-2, 2, n).astype(dtype),
            dtype(0.75))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@EXAMPLES
@given(prog=programs, n=st.sampled_from([2, 3, 17, 256, 257, 512, 513, 1000, 1100]))
def test_random_programs_fused_match_reference_and_unfused(prog, dtype, n):
    args = inputs(n, dtype)
    tape = fa.make_tape(build(prog))(*args)
    assert_fused_matches(tape, args)


@EXAMPLES
@given(prog=programs, n=st.sampled_from([2, 5, 300]))
def test_random_gradient_tapes_fused_match_reference_and_unfused(prog, n):
    f = build(prog)
    args = inputs(n, np.float64, seed=1)

    def loss(x, y, c):
        outs = f(x, y, c)
        return sum(np.sum(np.sin(o)) for o in outs if o is not None)
    g = fa.compile(loss, argnums=(0, 1, 2), backend="numpy")
    g(*args)
    assert_fused_matches(g.tape, args)


def test_rosenbrock_gradient_is_one_pass_with_in_place_adjoints():
    def f(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    x = np.linspace(-1, 1, 1000)
    g = fa.compile(f, backend="numpy")
    g(x)
    program = lower(g.tape)
    names = [name for _, name, _ in program.instructions()]
    assert names.count("FUSED") >= 1
    assert "BINARY_VV" not in names and "UNARY_V" not in names
    # no temporary array of the input's size besides the gradient itself and x
    assert program.arena_bytes < 4 * x.nbytes
    assert_fused_matches(g.tape, [x])


STENCILS = {
    "forward difference": lambda x: np.sum(np.sin(x[1:] - x[:-1])),
    "backward pair": lambda x: np.sum(x[:-1] * np.cos(x[1:])),
    "three points": lambda x: np.sum(np.tanh(x[2:] - 2.0 * x[1:-1] + x[:-2])),
    "wide": lambda x: np.sum(x[5:] * x[:-5] + x[3:-2] ** 2),
}


@pytest.mark.parametrize("name", sorted(STENCILS))
@pytest.mark.parametrize("n", [7, 300, 1 << 15, 70_001])
def test_stencil_gradients_accumulate_shifted_slices_in_one_pass(name, n):
    """The adjoints of shifted slices land in one buffer: a SHIFT step adds
    x[i + s] += v[i] inside the run, across blocks and thread chunks, in the
    order of the unfused program (so bit for bit)."""
    g = fa.compile(STENCILS[name], backend="numpy")
    x = np.random.default_rng(5).uniform(-1, 1, n)
    g(x)
    program = lower(g.tape)
    steps = str(program)
    assert "[i+" in steps or "[i-" in steps
    assert_fused_matches(g.tape, [x])


@pytest.mark.parametrize("n", [(1 << 15) - 1, 1 << 15, 100_003])
def test_large_runs_split_over_threads_deterministically(n):
    """Past the threshold a FUSED instruction runs in chunks on threads; each
    chunk's sums are combined in chunk order, so repeated and concurrent runs
    give identical bits."""
    def f(x):
        return np.sum(np.sin(x) * x + 2.0), np.cos(x) * x
    x = np.random.default_rng(3).uniform(-1, 1, n)
    tape = fa.make_tape(f)(x)
    exe = c_backend.Executable(lower(tape))
    first = exe.run([x])
    results = []

    def worker():
        for _ in range(5):
            results.append(exe.run([x]))
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for a, b in zip(first, r):
            np.testing.assert_array_equal(a, b)
    assert_fused_matches(tape, [x])


def test_long_chains_are_split_within_the_vm_limits():
    def f(x):
        for k in range(150):
            x = np.sin(x) * (1.0 + k / 1000) + x
        return x
    x = np.linspace(0, 1, 50)
    tape = fa.make_tape(f)(x)
    program = lower(tape)
    assert sum(name == "FUSED" for _, name, _ in program.instructions()) >= 2
    assert_fused_matches(tape, [x])


def test_many_live_values_spill_to_the_arena():
    def f(x):
        parts = [np.sin(x * (k + 1)) for k in range(24)]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total
    x = np.linspace(0, 1, 40)
    tape = fa.make_tape(f)(x)
    assert_fused_matches(tape, [x])


@EXAMPLES
@given(k=st.integers(8, 70), mix=st.lists(st.sampled_from(["mul", "add", "sub", "sin"]),
                                          min_size=1, max_size=4),
       cut=st.sampled_from(["cumsum", "matvec"]), n=st.sampled_from([3, 40, 600]))
def test_runs_reading_many_values_made_before_them_fit_the_vm_limits(k, mix, cut, n):
    """A run whose members each read a value made before it (by another
    run, across an instruction fusion cannot take) and a constant array:
    each such value is a slot of the FUSED instruction, as an array is."""
    rng = np.random.default_rng(k)
    tables = rng.uniform(0.5, 1.5, (k, n))

    def f(x):
        made = [np.sin(x * (j + 1)) for j in range(k)]
        y = np.cumsum(x) if cut == "cumsum" else tables.T @ tables[:, 0] * 1e-2
        for j in range(k):
            op = mix[j % len(mix)]
            y = (y * made[j] if op == "mul" else y + made[j] if op == "add"
                 else tables[j] - y if op == "sub" else np.sin(y * tables[j]))
            y = y * tables[j]
        return y
    x = rng.uniform(-1, 1, n)
    tape = fa.make_tape(f)(x)
    assert_fused_matches(tape, [x])
    v = rng.standard_normal(n)
    want = fa.compile(lambda x: np.sum(f(x) ** 2), backend="numpy").hvp(x, v)
    got = fa.compile(lambda x: np.sum(f(x) ** 2), backend="c").hvp(x, v)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_listing_shows_the_micro_program():
    x = np.linspace(0, 1, 10)
    program = lower(fa.make_tape(lambda x: np.sum(np.sin(x) * 2.0 + x))(x))
    text = str(program)
    assert "FUSED" in text and "= sin(" in text and "= sum(" in text


def test_vm_reports_its_threads():
    from fastad.backends import _vm
    threads, threshold = _vm.threads()
    assert threads >= 1 and threshold > 0


def test_scalar_work_on_the_runs_sums_waits_for_the_run():
    """loss = a + b of two sums of one run does not cut the run in two; a
    value that reads such a result starts a new run after it."""
    def loss(x):
        return np.sum(np.sin(x) ** 2) * 0.5 + np.sum(np.cos(x) * x)

    def reads_back(x):
        total = np.sum(np.sin(x)) + 1.0
        return np.sum(np.tanh(x) * total) + np.sum(np.exp(-x * x))
    x = np.linspace(-1, 1, 300)
    for f in (loss, reads_back):
        g = fa.compile(f, backend="numpy")
        g(x)
        assert_fused_matches(g.tape, [x])
    tape = fa.make_tape(loss)(x)
    assert sum(name == "FUSED" for _, name, _ in lower(tape).instructions()) == 1


COMPARISONS = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
               "eq": np.equal, "ne": np.not_equal}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@EXAMPLES
@given(cmp=st.sampled_from(sorted(COMPARISONS)), negate=st.booleans(),
       operands=st.sampled_from(["uy", "xy", "uc", "cu", "u0", "eu"]), alone=st.booleans(),
       nans=st.sampled_from([0, 1, 7]), n=st.sampled_from([2, 3, 256, 512, 513, 1100]))
def test_counts_of_comparisons_are_one_step_and_exact(cmp, negate, operands, alone, nans, n,
                                                      dtype):
    """sum(astype(a < b)) (a rerolled guard's predicate), or of its logical_not,
    is one COUNT step of the run: the same count as the unfused program and
    the reference, NaN comparisons included (false, so counted by NCOUNT)."""
    def f(x, y, c):
        u = x * 2.0
        pick = {"u": u, "x": x, "y": y, "c": c, "0": 0.5, "e": x[0] * 0.0 + 0.25}
        hold = COMPARISONS[cmp](pick[operands[0]], pick[operands[1]])
        if negate:
            hold = fnp.logical_not(hold)
        count = np.sum(fnp.astype(hold, dtype))
        return count if alone else (count, np.sum(u * y))
    x, y, c = inputs(n, dtype, seed=nans)
    y[n // 2] = x[n // 2] * 2  # equal elements
    if nans:
        x[::max(1, n // nans)] = np.nan
    tape = fa.make_tape(f)(x, y, c)
    program = lower(tape)
    assert "count(" in str(program)
    assert "COMPARE_B" not in [name for _, name, _ in program.instructions()]
    fused = run_program(tape, (x, y, c), True)
    np.testing.assert_array_equal(fused[0], run_program(tape, (x, y, c), False)[0])
    np.testing.assert_array_equal(fused[0], reference.evaluate(tape, [x, y, c])[0])
    assert_fused_matches(tape, (x, y, c))


def test_a_comparison_read_elsewhere_is_not_counted():
    """The COUNT step replaces the comparison only when the count is its sole use."""
    def f(x):
        hold = x < 0.5
        return np.sum(fnp.astype(hold, np.float64)), fnp.where(hold, x, 2.0 * x)
    x = np.linspace(0, 1, 50)
    tape = fa.make_tape(f)(x)
    assert "count(" not in str(lower(tape))
    assert_fused_matches(tape, [x])


def test_a_rerolled_guard_joins_the_run_and_is_checked_after_it():
    """A loop with an `if` per term: the guard's count is one step of the
    single run, and the guard runs after the run (nothing in a run can fail,
    and nothing is returned from a run whose guard fails)."""
    g = fa.compile(rosenbrock_loop_guarded, backend="numpy")
    x = np.linspace(-1, 1.5, 300)
    g(x)
    program = lower(g.tape)
    names = [name for _, name, _ in program.instructions()]
    assert names.count("FUSED") == 1 and names.index("GUARD") > names.index("FUSED")
    assert_fused_matches(g.tape, [x])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fused_guards_fail_exactly_where_an_iteration_branches_otherwise(sign):
    """The recorded branch taken everywhere (COUNT of x < 0 for positive x,
    NCOUNT for negative x): the program fails its guard as soon as one
    element, NaN included, would take the other branch in eager code."""
    x = sign * np.linspace(0.5, 2.0, 600)
    tape = fa.compile(signed_sum_loop, backend="numpy")
    tape(x)
    program = lower(tape.tape)
    assert ("ncount(" if sign < 0 else "count(") in str(program)
    exe = c_backend.Executable(program)
    np.testing.assert_allclose(exe.run([x])[1], fa.grad(signed_sum_loop)(x), rtol=1e-13)
    for k, value in ((0, -sign), (599, -sign), (300, np.nan), (257, 0.0)):
        bent = x.copy()
        bent[k] = value
        takes_recorded = all((v < 0.0) == (sign < 0) for v in bent)
        assert (exe.run([bent]) is not None) == takes_recorded, (k, value)


def _same_bits(got, want):
    """Equal to the bit, signed zeros included; NaN where NaN (IEEE leaves the
    sign of a NaN result open)."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bits = f"u{want.dtype.itemsize}"
    np.testing.assert_array_equal(got[~nan].view(bits), want[~nan].view(bits))


NEGATED_PRODUCTS = {
    "p + (-a) * b": lambda x, y: (np.cos(x) + (-np.tanh(y)) * x,),
    "(-a) * b + p": lambda x, y: ((-np.tanh(y)) * x + np.cos(x),),
    "p + b * (-a), a kept": lambda x, y: (np.cos(x) + x * (-np.tanh(y)), np.tanh(y) * 2.0),
    "slices' adjoint": lambda x, y: (fa.grad(lambda v: np.sum(np.tanh(v[1:]) * -(v[:-1] * y[1:])))(x),),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(NEGATED_PRODUCTS))
def test_negated_products_fold_into_subtractions_bit_for_bit(name, dtype):
    """p + (-a) * b runs as p - a * b, one step fewer, with the same bits
    (signed zeros included) as the unfused program at zeros, infinities,
    NaNs and ordinary values."""
    f = NEGATED_PRODUCTS[name]
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 3.5, -2.0, 0.0])
    rng = np.random.default_rng(2)
    x = np.concatenate([special, np.repeat(special, 30), rng.uniform(-3, 3, 300)]).astype(dtype)
    y = np.concatenate([special[::-1], rng.permutation(np.repeat(special, 30)),
                        rng.uniform(-3, 3, 300)]).astype(dtype)
    with np.errstate(all="ignore"):
        tape = fa.make_tape(f)(x, y)
        fused, plain = run_program(tape, (x, y), True), run_program(tape, (x, y), False)
        want = reference.evaluate(tape, [x, y])
    for got, unfused, ref in zip(fused, plain, want):
        _same_bits(got, unfused)
        np.testing.assert_allclose(got, ref, rtol=RTOL[got.dtype], atol=RTOL[got.dtype])
    listing = str(lower(tape))
    assert listing.count("neg(") < sum(ins.prim == "neg" for ins in tape.instrs)


# Padded arrays: a value of a run set into zeros (concatenate, np.pad) and
# read by shifted slices, with arithmetic before and after, the value, its
# padded array or both read later (after the other's last read: a buffer
# freed too early is reused and overwritten), returned, or padded twice.
pad_step = st.one_of(
    st.tuples(st.sampled_from(["tanh", "mul", "neg", "sub"]), st.integers(0, 99),
              st.integers(0, 99)),
    st.tuples(st.sampled_from(["concatenate", "pad"]), st.integers(0, 99), st.integers(0, 3),
              st.integers(0, 3)))
pad_programs = st.tuples(st.lists(pad_step, min_size=1, max_size=10),
                         st.lists(st.integers(0, 99), min_size=1, max_size=3),
                         st.lists(st.integers(0, 99), max_size=2))


def build_padded(prog):
    steps, outs, padded_outs = prog

    def f(x, y):
        vals, padded, n = [x, y], [], x.size
        for name, i, j, *k in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            if name in ("concatenate", "pad"):
                lo, hi = j, k[0]
                p = (np.concatenate([np.zeros(lo), a, np.zeros(hi)]) if name == "concatenate"
                     else np.pad(a, (lo, hi)))
                padded.append(p)
                # a band read off the padded array, as a chained objective's
                vals.append(sum(p[d:d + n] for d in range(lo + hi + 1)) * 0.5)
            else:
                vals.append(np.tanh(a) if name == "tanh" else a * b if name == "mul"
                            else -a if name == "neg" else a - b)
        chosen = tuple(vals[i % len(vals)] for i in outs)
        return chosen + tuple(padded[i % len(padded)] for i in padded_outs if padded)
    return f


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@EXAMPLES
@given(prog=pad_programs, n=st.sampled_from([2, 3, 17, 300, 1100]))
def test_padded_values_are_written_in_place_bit_for_bit(prog, dtype, n):
    """A value set into zeros is computed straight into the padded array
    (its padding zeroed, nothing copied): every output, the value and the
    padded array alike, has the unfused program's bits, signed zeros,
    infinities and NaNs included."""
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0], dtype)
    rng = np.random.default_rng(n)
    x = np.resize(np.concatenate([special, rng.uniform(-2, 2, n).astype(dtype)]), n)
    y = np.resize(np.concatenate([rng.uniform(-2, 2, n).astype(dtype), special[::-1]]), n)
    with np.errstate(all="ignore"):
        tape = fa.make_tape(build_padded(prog))(x, y)
        fused, plain = run_program(tape, (x, y), True), run_program(tape, (x, y), False)
        want = reference.evaluate(tape, [x, y])
    for got, unfused, ref in zip(fused, plain, want):
        _same_bits(got, unfused)
        _same_bits(got, np.asarray(ref))


def test_a_padded_value_is_not_copied():
    """Broyden's padded band: each value set into zeros is computed in place,
    so the program zeroes only the padding and copies nothing."""
    def f(x):
        s = x * (1.0 + x)
        p = np.concatenate([np.zeros(5), s, np.zeros(1)])
        return np.sum((x * (2.0 + 5.0 * x ** 2) + 1.0
                       - sum(p[d:d + x.size] for d in range(7) if d != 5)) ** 2)
    x = np.random.default_rng(3).uniform(-1, 1, 1000)
    g = fa.compile(f, backend="numpy")
    g(x)
    for tape in (g.tape, fa.make_tape(f)(x)):
        listing = str(lower(tape))
        assert "COPY_V" not in listing and "n=1006" not in listing
        assert_fused_matches(tape, [x])
