"""First-call memory: a compiled gradient of a function of large arrays is
traced, differentiated and built in about the memory a reverse-mode gradient
needs, not one array per instruction (see `Builder.release`).

The peak of each first call is measured in a fresh process (resident memory
is per process), on random vectorized programs: slices of the input, chains
of elementwise operations, sums.  The bound, in arrays of the input's size,
is 1.5x (the program's length + 4): autograd's own first gradient of these
programs peaks at the length plus two to four arrays (benchmarks/README.md,
"First-call memory"), and fastad's did at two to four times that before
traces released their values.
"""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.api
from conftest import BACKENDS
from fastad.core import tracer as tracer_module
from fastad.core.registry import registry
from test_fuzz import programs as fuzz_programs

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux")

N = 2_000_000  # 16 MB per float64 array: far above the release threshold (1 MiB)
UNARY = ("sin", "tanh", "square", "gauss", "log1p_sq", "cube", "affine")
BINARY = ("add", "mul", "sub", "ratio")

# One program runner for fastad and autograd; prints the growth of the peak
# resident memory over the first call at N elements (after a call at 100
# elements, which loads every library the call needs).
RUNNER = textwrap.dedent('''
    import json, resource, sys, warnings
    import numpy as np
    spec, engine, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if engine == "autograd":
        import autograd, autograd.numpy as xp
    else:
        warnings.simplefilter("ignore")
        import fastad as fa
        xp = np
    UNARY = {"sin": xp.sin, "tanh": xp.tanh, "square": lambda a: a * a,
             "gauss": lambda a: xp.exp(-a * a), "log1p_sq": lambda a: xp.log(a * a + 1.0),
             "cube": lambda a: a ** 3, "affine": lambda a: 3.0 * a - 1.0}
    BINARY = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b,
              "sub": lambda a, b: a - b, "ratio": lambda a, b: a / (b * b + 1.0)}

    VIEWS = {"shift": lambda x: [x[1:], x[:-1]], "stride2": lambda x: [x[::2], x[1::2]],
             "reverse": lambda x: [x[::-1], x]}

    def f(x):
        views, ops = spec
        vals = VIEWS[views](x)
        for op, i, j in ops:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            vals.append(UNARY[op](a) if op in UNARY else BINARY[op](a, b))
        return xp.sum(vals[-1]) + xp.sum(vals[-2] * vals[-2])

    x = np.linspace(-1.0, 1.0, n)
    g = (autograd.grad(f) if engine == "autograd" else fa.grad(f) if engine == "eager"
         else fa.compile(f, backend=engine))
    g(x[:100])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad = g(x)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(json.dumps({"grown": grown, "nbytes": x.nbytes, "finite": bool(np.isfinite(grad).all())}))
''')


def peak_growth(spec, engine):
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(spec), engine, str(N)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# (the views of x the program starts from, its operations): shifted, strided
# and reversed slices, whose adjoints are scatters into the input's adjoint
VIEWS = {"shift": lambda x: [x[1:], x[:-1]], "stride2": lambda x: [x[::2], x[1::2]],
         "reverse": lambda x: [x[::-1], x]}
programs = st.tuples(st.sampled_from(sorted(VIEWS)),
                     st.lists(st.tuples(st.sampled_from(UNARY + BINARY), st.integers(0, 9),
                                        st.integers(0, 9)), min_size=2, max_size=10))
# the C VM where there is one: the Numba backend's first compile at a new size
# is LLVM's memory, not the trace's (measured in benchmarks, not here)
MEMORY_BACKEND = "c" if "c" in BACKENDS else "numpy"


@settings(max_examples=4, deadline=None)
@given(spec=programs)
def test_first_call_peak_memory_is_bounded(spec, record_count):
    measured = peak_growth(spec, MEMORY_BACKEND)
    assert measured["finite"]
    arrays = measured["grown"] / measured["nbytes"]
    record_count("first-call peak memory programs", 1)
    assert arrays <= 1.5 * (len(spec[1]) + 4), (spec, arrays)


@settings(max_examples=3, deadline=None)
@given(spec=programs)
def test_eager_gradient_peak_memory_is_bounded(spec, record_count):
    """Eager `fa.grad` lets go of each value once its sweep has passed it."""
    measured = peak_growth(spec, "eager")
    assert measured["finite"]
    record_count("first-call peak memory programs", 1)
    assert measured["grown"] / measured["nbytes"] <= 1.5 * (len(spec[1]) + 4), spec


def _program(spec, xp=np):
    def f(x):
        views, ops = spec
        vals = VIEWS[views](x)
        for op, i, j in ops:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            vals.append({"sin": xp.sin, "tanh": xp.tanh, "square": lambda a: a * a,
                         "gauss": lambda a: xp.exp(-a * a),
                         "log1p_sq": lambda a: xp.log(a * a + 1.0), "cube": lambda a: a ** 3,
                         "affine": lambda a: 3.0 * a - 1.0}[op](a) if op in UNARY else
                        {"add": lambda a, b: a + b, "mul": lambda a, b: a * b,
                         "sub": lambda a, b: a - b,
                         "ratio": lambda a, b: a / (b * b + 1.0)}[op](a, b))
        return xp.sum(vals[-1]) + xp.sum(vals[-2] * vals[-2])
    return f


@settings(max_examples=20, deadline=None)
@given(spec=programs, double=st.booleans(), n=st.sampled_from([50, 300_000]))
def test_eager_sweep_that_lets_go_of_values_gives_the_same_bits(spec, double, n):
    """An eager gradient's sweep computes on plain values and lets go of values
    of 1 MiB and more as it passes them: the gradient is bit for bit the one of
    a recorded sweep that keeps every value, and a gradient of a gradient
    (whose inner sweep is recorded, to be replayed) agrees too."""
    from fastad.transforms import reverse
    x = np.linspace(-1.0, 1.0, n)  # 2.4 MB per array at 300,000
    f = _program(spec)
    if double:
        inner = f
        f = lambda x: np.sum(np.sin(fa.grad(inner)(x)))  # noqa: E731
    got = fa.value_and_grad(f)(x)
    with mock.patch.object(fastad.api, "backward",
                           lambda *a, once=False, plain=False, **k: reverse.backward(*a, **k)):
        want = fa.value_and_grad(f)(x)
    assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()


def test_slices_of_one_array_share_one_index_table():
    """The tape holds each slice's index table as a view of one shared table."""
    x = np.linspace(0.0, 1.0, 200_000)

    def f(x):
        return np.sum(x[1:] * x[:-1]) + np.sum(x[2:] ** 2) + np.sum(x[::2])

    tape = fa.make_tape(f)(x)
    tables = [v for v in tape.consts.values()
              if isinstance(v, np.ndarray) and v.dtype.kind == "i" and v.size > 1000]
    assert len(tables) >= 4
    assert all(np.shares_memory(t, tables[0]) for t in tables)
    assert all(not t.flags.writeable for t in tables)


def _basic_slices(draw_shape, draw_key):
    """A strategy of (shape, key): an array shape of 1-3 axes and a basic
    slice of it, steps of either sign."""
    def key_for(shape):
        return st.tuples(*[st.tuples(st.integers(-n - 1, n + 1), st.integers(-n - 1, n + 1),
                                     st.sampled_from([1, 2, 3, -1, -2]))
                           for n in shape]).map(lambda t: tuple(slice(*k) for k in t))
    return draw_shape.flatmap(lambda shape: st.tuples(st.just(shape), key_for(shape)))


@settings(max_examples=200, deadline=None)
@given(case=_basic_slices(st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple), None),
       window=st.booleans(), seed=st.integers(0, 2**16))
def test_slice_updates_in_place_are_add_at(case, window, seed):
    """A gather's adjoint added into the accumulator itself (`in_place_impl`,
    through a strided view where the slice's positions are distinct) is
    ``np.add.at`` bit for bit; overlapping windows of the position table (an
    as_strided view, positions repeating) take ``np.add.at`` itself."""
    from fastad.core.arrays import positions
    from fastad.primitives.structural import _scatter_add_into
    shape, key = case
    idx = positions(shape)[key]
    if window:  # sliding windows over the flat positions: each repeats
        flat = positions((int(np.prod(shape)),))
        w = max(1, min(3, flat.size))
        idx = np.lib.stride_tricks.sliding_window_view(flat, w)
    from fastad.primitives.structural import _slice_of
    rng = np.random.default_rng(seed)
    acc = rng.standard_normal(shape)
    v = rng.standard_normal(idx.shape)
    want = acc.copy()
    np.add.at(want.reshape(-1), idx, v)
    got = _scatter_add_into(acc.copy(), idx, v)
    assert got.tobytes() == want.tobytes()
    # the strided view itself (used for large slices), where it is offered
    part_of = acc.copy()
    part = _slice_of(part_of.reshape(-1), idx)
    assert part is None or not window or w == 1  # overlapping windows are never viewed
    if part is not None:
        part += v
        assert part_of.tobytes() == want.tobytes()


def test_accumulators_are_updated_in_place_only_when_nothing_else_holds_them():
    """The sweep hands an accumulator to an in-place update only when no other
    adjoint or value holds its array (`Builder.donatable`): the gradient of
    slices whose cotangents alias one another (add's VJP passes g on to both
    operands) is what a sweep that never updates in place computes."""
    x = np.linspace(-1.0, 1.0, 200_000)

    def f(x):
        a = x[::2] + x[1::2]  # both adjoints are the same g
        b = np.sin(x[::-1]) * x
        return np.sum(a * a) + np.sum(b[1:] * b[:-1]) + np.sum(x[::3] ** 2)

    with mock.patch.object(tracer_module.Builder, "donatable", lambda self, acc: None):
        want = fa.value_and_grad(f)(x)
        want_c = fa.compile(f, backend=MEMORY_BACKEND).value_and_grad(x)
    got = fa.value_and_grad(f)(x)
    got_c = fa.compile(f, backend=MEMORY_BACKEND).value_and_grad(x)
    for a, b in ((got, want), (got_c, want_c)):
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    with mock.patch.object(tracer_module, "RELEASE_BYTES", 0):
        low = fa.value_and_grad(f)(x)
    assert low[1].tobytes() == want[1].tobytes()


def _gram(a):
    return a @ a.T + a.shape[0] * np.eye(a.shape[0])


@fa.primitive
def _clipped_log(x):
    return np.log(np.abs(x) + 1.0)


def _clipped_log_vjp(g, ans, x):
    # a rule that branches on a value: a guard recorded in the reverse sweep
    if np.max(ans) > 0:
        return g * np.sign(x) / (np.abs(x) + 1.0)
    return g * 0.0


fa.defvjp(_clipped_log, _clipped_log_vjp)


@pytest.mark.parametrize("f", [
    # the Cholesky VJP solves with the factor, a value the user's code dropped:
    # on a released value it fails, and the trace is made again keeping them
    lambda a: np.sum(np.linalg.cholesky(_gram(a))),
    # a derivative rule whose Python `if` reads a released value
    lambda a: np.sum(_clipped_log(np.sin(a)) ** 2),
], ids=["rule-fails-on-released-value", "rule-branches-on-released-value"])
def test_rules_that_read_released_values_trace_again(f, compiled_backend):
    a = np.random.default_rng(0).standard_normal((400, 400)) / 20  # 1.3 MB per matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host calls where a backend lacks a primitive
        g = fa.compile(f, backend=compiled_backend)
        got = g(a)
    np.testing.assert_allclose(got, fa.grad(f)(a), rtol=1e-9, atol=1e-12)
    assert g.cache_info()["traces"] == 1


# -- an eager gradient keeps only what its rules read (`Primitive.vjp_reads`) -------------
def _poison(value):
    """``value`` with other contents: NaN where it is inexact, out-of-range
    indices where it is an index, the opposite where it is a condition."""
    a = np.asarray(value)
    if a.dtype.kind in "fc":
        poisoned = np.full(a.shape, np.nan, a.dtype)
    elif a.dtype.kind == "b":
        poisoned = ~a
    else:
        poisoned = np.full(a.shape, np.iinfo(a.dtype).min // 2, a.dtype)
    return poisoned if isinstance(value, np.ndarray) else poisoned[()]


def _outcome(rule, *args, **params):
    """A rule's cotangent as bytes, or the kind of exception it raised."""
    try:
        with np.errstate(all="ignore"):
            ct = np.asarray(rule(*args, **params))
        return ct.dtype, ct.shape, ct.tobytes()
    except Exception as exc:  # a rule that reads a poisoned index fails
        return type(exc)


def _checked_rules(rec, rng):
    """For each instruction of ``rec`` whose primitive declares what its rules
    read: each rule's outcome on the real values and with every value it
    claims not to read poisoned, and the primitive's name."""
    builder = rec.builder
    tape, values = builder.tape, builder.values
    for ins in tape.instrs:
        prim = registry[ins.prim]
        if prim.vjp_reads is None or not prim.differentiable:
            continue
        params = dict(ins.params)
        ans = values[ins.out]
        args = [tape.consts.get(s, values[s]) for s in ins.ins]
        g = np.asarray(rng.standard_normal(np.shape(ans)), np.result_type(ans))
        if g.dtype.kind == "c":
            g = g + 1j * rng.standard_normal(np.shape(ans))
        if g.dtype.kind not in "fc":
            continue
        g = g if isinstance(ans, np.ndarray) else g[()]
        for argnum, reads in enumerate(prim.vjp_reads):
            rule = prim.vjp_rule(argnum)
            accumulate = prim.accumulating_vjps.get(argnum)
            p_ans = ans if "ans" in reads else _poison(ans)
            p_args = [a if k in reads else _poison(a) for k, a in enumerate(args)]
            if rule is not None:
                yield (_outcome(rule, g, ans, *args, **params),
                       _outcome(rule, g, p_ans, *p_args, **params), ins.prim)
            if accumulate is not None:
                acc = np.zeros(np.shape(args[argnum]), np.result_type(g))
                yield (_outcome(accumulate, acc.copy(), g, ans, *args, **params),
                       _outcome(accumulate, acc.copy(), g, p_ans, *p_args, **params),
                       ins.prim)


def _cases():
    from test_primitives import _all_cases
    declared = {n for n, p in registry.items() if p.vjp_reads is not None}
    return [c for c in _all_cases() if declared & set(c.covers)]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_rules_read_only_what_their_primitive_declares(case, data, record_count):
    """Each rule, run with every value its primitive says it does not read
    replaced by poison, gives the same cotangent bit for bit."""
    from helpers import make_args
    dtype = case.dtypes[0]
    shp, params = case.draw(data)
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    args = make_args(seed, shp, case.domains, dtype)
    f = (lambda *a: case.fn(*a, **params)) if params else case.fn
    rec, _ = fastad.api.record(f, args, tuple(range(len(args))))
    for real, poisoned, name in _checked_rules(rec, np.random.default_rng(seed)):
        assert real == poisoned, (name, case.name)
        record_count("rules checked against poisoned values", 1, key=name)


def test_every_declared_primitive_has_its_reads_checked():
    declared = {n for n, p in registry.items() if p.vjp_reads is not None and p.differentiable}
    covered = set().union(*(c.covers for c in _cases()))
    assert declared <= covered, sorted(declared - covered)


def _nan_stand_in(value):
    """A released value's stand-in that poisons any rule reading it."""
    fill = np.nan if value.dtype.kind in "fc" else 0
    return np.broadcast_to(np.full((), fill, value.dtype), value.shape)


def _gradient_keeping_every_value(f, *args):
    """``fa.value_and_grad`` as it was before its trace let go of unread values."""
    original = fastad.api.record
    with mock.patch.object(fastad.api, "record",
                           lambda *a, drop_unread=False, **k: original(*a, **k)):
        return fa.value_and_grad(f, argnums=tuple(range(len(args))))(*args)


def _same_bits(f, *args):
    """The eager gradient, letting go of every value (any size: the threshold
    patched to 0) no rule reads, with NaN stand-ins, bit for bit the one that
    keeps them."""
    want = _gradient_keeping_every_value(f, *args)
    with mock.patch.object(tracer_module, "RELEASE_BYTES", 0), \
            mock.patch.object(tracer_module, "stand_in", _nan_stand_in):
        got = fa.value_and_grad(f, argnums=tuple(range(len(args))))(*args)
    assert np.asarray(got[0]).tobytes() == np.asarray(want[0]).tobytes()
    for a, b in zip(got[1], want[1]):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@settings(max_examples=30, deadline=None)
@given(spec=programs)
def test_eager_gradient_dropping_unread_values_gives_the_same_bits(spec):
    _same_bits(_program(spec), np.linspace(-1.0, 1.0, 40))


@settings(max_examples=60, deadline=None)
@given(prog=fuzz_programs(), seed=st.integers(0, 2**16))
def test_eager_gradient_of_fuzz_programs_dropping_unread_values_gives_the_same_bits(prog, seed):
    from test_fuzz import weighted_loss, weights
    _same_bits(weighted_loss(prog, weights(prog, seed)), *prog.inputs)


def test_gradients_of_gradients_keep_what_their_replay_reads():
    """Only the outermost eager gradient lets go of values: an inner one's
    sweep is recorded and replayed by the enclosing trace."""
    def f(x):
        return np.sum(np.exp(np.sin(x)) * x)

    x = np.linspace(-1.0, 1.0, 30)
    hvp = lambda x: np.sum(fa.grad(f)(x) * np.cos(x))  # noqa: E731
    _same_bits(hvp, x)
    fa.check_grads(hvp, (x,), order=1, modes=("rev",))
