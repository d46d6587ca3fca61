"""Shared machinery of the core tests: random inputs inside a function's
domain, hypothesis strategies for shapes and axes, and the two oracles every
primitive test uses (NumPy for values, finite differences for derivatives).
"""
from __future__ import annotations

import functools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad as fa
from fastad.backends.reference import evaluate

DTYPES = (np.float64, np.float32)
# FASTAD_TEST_EXAMPLES raises the budget for a thorough run; the default keeps
# the suite within a few minutes on two cores.
FAST = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 12)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COMPLEX_DTYPES = (np.complex128, np.complex64)
VALUE_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5,
              np.dtype(np.complex128): 1e-12, np.dtype(np.complex64): 2e-5}
DOUBLE = (np.dtype(np.float64), np.dtype(np.complex128))  # second-order checks run in these


# -- inputs inside each function's domain -------------------------------------------
def _uniform(lo: float, hi: float) -> Callable[[np.random.Generator, tuple], np.ndarray]:
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def _away_from_zero(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape)


def _off_integers(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Away from integers and half-integers: floor, ceil and round are locally constant."""
    return rng.integers(-3, 3, shape) + rng.choice([0.2, 0.7], shape) + rng.uniform(-0.1, 0.1, shape)


def _distinct(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Values with distinct magnitudes, at least 0.16 apart and 0.28 from zero:
    max/min reductions and abs have no ties or kinks within a finite-difference
    step, even float32's."""
    n = int(np.prod(shape, dtype=np.int64))
    magnitude = 0.3 + 0.2 * rng.permutation(n) + rng.uniform(-0.02, 0.02, n)
    return (rng.choice([-1.0, 1.0], n) * magnitude).reshape(shape)


def _mid(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Integers plus 0.4..0.5: at least 0.1 from every value of the "offint" domain."""
    return rng.integers(-3, 3, shape) + rng.uniform(0.4, 0.5, shape)


DOMAINS: dict[str, Callable[[np.random.Generator, tuple], np.ndarray]] = {
    "real": lambda rng, shape: rng.uniform(-2.0, 2.0, shape),
    "pos": _uniform(0.5, 2.0),
    "gt1": _uniform(1.2, 3.0),
    "unit": _uniform(-0.8, 0.8),
    "nonzero": _away_from_zero,
    "offint": _off_integers,
    "distinct": _distinct,
    "mid": _mid,
}


def well_conditioned(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Square matrices (batched over leading axes), strictly diagonally dominant
    with condition number below ~3; the first row's sign is random, so both
    signs of the determinant occur."""
    n = shape[-1]
    a = np.eye(n) + rng.uniform(-0.3, 0.3, shape) / max(n, 1)
    a[..., :1, :] *= rng.choice([-1.0, 1.0], shape[:-2] + (1, 1))
    return a


DOMAINS["matrix"] = well_conditioned


def _complex(real_part: Callable, imag_part: Callable) -> Callable:
    return lambda rng, shape: real_part(rng, shape) + 1j * imag_part(rng, shape)


# Complex inputs (for complex dtypes only): "cright" keeps clear of the branch
# cut of log and sqrt on the negative real axis, "csmall" of the cuts of
# arcsin, arctanh, ... beyond +-1 and +-i.
DOMAINS["complex"] = _complex(_uniform(-1.5, 1.5), _uniform(-1.5, 1.5))
DOMAINS["cright"] = _complex(_uniform(0.5, 2.0), _uniform(-1.0, 1.0))
DOMAINS["csmall"] = _complex(_uniform(-0.5, 0.5), _uniform(-0.5, 0.5))
DOMAINS["cnonzero"] = _complex(_away_from_zero, _away_from_zero)


def complex_well_conditioned(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return well_conditioned(rng, shape) + 1j * rng.uniform(-0.3, 0.3, shape) / max(shape[-1], 1)


DOMAINS["cmatrix"] = complex_well_conditioned


def make_args(seed: int, shapes: tuple, domains: tuple, dtype: Any) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(np.asarray(DOMAINS[d](rng, tuple(s)), dtype=dtype) for s, d in zip(shapes, domains))


# -- shapes ---------------------------------------------------------------------------
def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0, max_side: int = 4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def broadcast_pair(draw, min_side: int = 0, max_dims: int = 3):
    """Two shapes that broadcast together (size-0 and size-1 axes included)."""
    bs = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims,
                                                min_side=min_side, max_side=4))
    return bs.input_shapes


@st.composite
def broadcast_triple(draw, min_side: int = 0):
    bs = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                min_side=min_side, max_side=4))
    return bs.input_shapes


@st.composite
def axes_for(draw, shape: tuple, allow_none: bool = True, allow_tuple: bool = True):
    """An ``axis`` argument valid for ``shape``: None, an int or a tuple, negatives included."""
    nd = len(shape)
    choices = []
    if allow_none:
        choices.append(st.none())
    if nd:
        choices.append(st.integers(-nd, nd - 1))
        if allow_tuple:
            choices.append(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd).flatmap(
                lambda axes: st.tuples(*(st.sampled_from([a, a - nd]) for a in axes))))
    return draw(st.one_of(*choices))


def reduced_axes(shape: tuple, axis: Any) -> tuple[int, ...]:
    nd = len(shape)
    if axis is None:
        return tuple(range(nd))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(sorted(a % nd for a in axis))


# -- oracles ---------------------------------------------------------------------------
def central_difference_jacobian(f: Callable[[np.ndarray], Any], x: np.ndarray,
                                h: float = 1e-6) -> np.ndarray:
    """The Jacobian of f at the vector x by central differences, one column
    per coordinate: shape f(x).shape + (x.size,)."""
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


def central_difference_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray,
                                h: float = 1e-6) -> np.ndarray:
    """The gradient of scalar f at x of any shape (an empty x included) by
    central differences."""
    if x.size == 0:
        return np.zeros_like(x)
    return central_difference_jacobian(lambda v: f(v.reshape(x.shape)), x.ravel(), h
                                       ).reshape(x.shape)


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)


def check_values(f: Callable[..., Any], args: tuple, oracle: Callable[..., Any] | None = None,
                 rtol: float | None = None) -> fa.Tape:
    """fastad's traced values, and the recorded tape re-run by the reference
    interpreter, equal NumPy's own result (value, shape and dtype); returns the tape."""
    expected = (oracle or f)(*args)
    expected_leaves = _leaves(expected)
    traced, _ = fa.vjp(f, *args)
    tape = fa.make_tape(f)(*args)
    replayed = evaluate(tape, list(args))
    assert replayed is not None
    dtype = np.result_type(*args) if args else np.dtype(np.float64)
    for got_leaves in (_leaves(traced), replayed):
        assert len(got_leaves) == len(expected_leaves)
        for got, want in zip(got_leaves, expected_leaves):
            got, want = np.asarray(got), np.asarray(want)
            tol = rtol if rtol is not None else max(VALUE_RTOL.get(np.dtype(d), 1e-12)
                                                    for d in (dtype, want.dtype))
            assert got.shape == want.shape, (got.shape, want.shape)
            assert got.dtype == want.dtype, (got.dtype, want.dtype)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)
    return tape


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def check_derivative_dtypes(f: Callable[..., Any], args: tuple) -> None:
    """Each argument's cotangent has the argument's dtype and each output's
    tangent the output's, as in JAX and autograd: a rule must not widen a
    float32 derivative to float64 (a Python float in ``np.where``, a float64
    constant)."""
    out, pullback = fa.vjp(f, *args)
    outs = _leaves(out)
    if not outs or not all(np.asarray(o).dtype.kind in "fc" for o in outs):
        return
    ones = _like_tree(out, [np.ones(np.shape(o), np.asarray(o).dtype) for o in outs])
    cotangents = pullback(ones)
    for i, (arg, ct) in enumerate(zip(args, cotangents)):
        if np.asarray(arg).dtype.kind in "fc":
            assert np.asarray(ct).dtype == np.asarray(arg).dtype, (i, np.asarray(ct).dtype)
    tangents = tuple(np.ones(np.shape(a), np.asarray(a).dtype) for a in args)
    _, tangent_out = fa.jvp(f, args, tangents)
    for o, t in zip(outs, _leaves(tangent_out)):
        assert np.asarray(t).dtype == np.asarray(o).dtype, (np.asarray(t).dtype, np.asarray(o).dtype)


def _like_tree(tree: Any, leaves: list[Any]) -> Any:
    """``leaves`` in the tuple/list structure of ``tree`` (`_leaves`' inverse)."""
    it = iter(leaves)

    def build(t: Any) -> Any:
        if isinstance(t, (tuple, list)):
            items = [build(x) for x in t]
            return type(t)(*items) if hasattr(t, "_fields") else type(t)(items)  # (namedtuples)
        return next(it)
    return build(tree)


def check_function(f: Callable[..., Any], args: tuple, order: int = 2,
                   oracle: Callable[..., Any] | None = None, seed: int = 0,
                   **tolerances: Any) -> fa.Tape:
    """Values against NumPy, then derivatives (forward and reverse) against
    central finite differences; second order only in float64.  Returns the tape."""
    tape = check_values(f, args, oracle)
    check_derivative_dtypes(f, args)
    dtype = np.result_type(*args)
    fa.check_grads(f, args, order=order if dtype in DOUBLE else 1,
                   modes=("fwd", "rev"), seed=seed, **tolerances)
    return tape


@dataclass
class Case:
    """One function under test.

    ``draw(data)`` returns ``(shapes, params)``; the function is called as
    ``fn(*arrays, **params)`` with one array per shape, filled from ``domains``.
    ``covers`` names the primitives its tape must contain.
    """

    name: str
    fn: Callable[..., Any]
    domains: tuple[str, ...]
    draw: Callable[[Any], tuple[tuple, dict]]
    order: int = 2
    oracle: Callable[..., Any] | None = None
    dtypes: tuple = DTYPES
    tolerances: dict = field(default_factory=dict)
    f32_tolerances: dict = field(default_factory=dict)  # float32 only, on top of the above
    covers: tuple[str, ...] = ()

    def run(self, data: Any, dtype: Any) -> None:
        shp, params = self.draw(data)
        seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
        args = make_args(seed, shp, self.domains, dtype)
        f = functools.partial(self.fn, **params) if params else self.fn
        oracle = None
        if self.oracle is not None:
            oracle = functools.partial(self.oracle, **params) if params else self.oracle
        tolerances = dict(self.tolerances)
        if np.dtype(dtype) not in DOUBLE:
            tolerances.update(self.f32_tolerances)
        tape = check_function(f, args, self.order, oracle, seed=seed % 1000, **tolerances)
        recorded = {ins.prim for ins in tape.instrs}
        assert set(self.covers) <= recorded, (self.covers, sorted(recorded))


def case_id(case: Case) -> str:
    return case.name


def registrar(cases: list[Case], **defaults: Any) -> Callable[..., Any]:
    """A decorator ``case(name, domains, draw, covers=...)`` adding a Case to ``cases``."""
    def case(name, domains, draw, covers=(), **kw):
        def register(fn):
            cases.append(Case(name, fn, tuple(domains), draw, covers=tuple(covers),
                              **{**defaults, **kw}))
            return fn
        return register
    return case


def one_shape(**kw: Any) -> Callable[[Any], tuple[tuple, dict]]:
    return lambda data: ((data.draw(shapes(**kw), label="shape"),), {})


def two_shapes(**kw: Any) -> Callable[[Any], tuple[tuple, dict]]:
    return lambda data: (data.draw(broadcast_pair(**kw), label="shapes"), {})


def case_test(cases: list[Case]) -> Callable[..., Any]:
    """The test that runs every case in float64 and float32 (values, then
    derivatives); a module binds it to a name starting with test_."""
    import pytest
    from hypothesis import given

    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    @pytest.mark.parametrize("case", cases, ids=case_id)
    @FAST
    @given(data=st.data())
    def test_values_and_derivatives(case: Case, dtype: Any, data: Any) -> None:
        if dtype not in case.dtypes:
            pytest.skip("not defined for this dtype")
        case.run(data, dtype)
    return test_values_and_derivatives


# -- the running example: Rosenbrock as a Python loop and vectorized ----------------------
def rosenbrock_loop(x: Any) -> Any:
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosenbrock(x: Any) -> Any:
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_loop_guarded(x: Any) -> Any:
    """The loop with an `if` per term that never branches: a guard per iteration."""
    total = 0.0
    for i in range(len(x) - 1):
        term = 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        if term < 0.0:
            term = -term
        total = total + term
    return total


def signed_sum_loop(x: Any) -> Any:
    """Every iteration branches on its own element; NaN takes the else branch."""
    total = 0.0
    for i in range(len(x)):
        if x[i] < 0.0:
            total = total - x[i] * x[i]
        else:
            total = total + 2.0 * x[i]
    return total


def laplacian_energy(x: Any) -> Any:
    """A 2-D stencil written with two nested loops."""
    s = 0.0
    for i in range(1, x.shape[0] - 1):
        for j in range(1, x.shape[1] - 1):
            s = s + (4 * x[i, j] - x[i - 1, j] - x[i + 1, j] - x[i, j - 1] - x[i, j + 1]) ** 2
    return s


def seconds_until_interrupted(call: Callable[[], Any], after: float = 0.2) -> float:
    """Run ``call()`` with SIGINT sent to the main thread ``after`` seconds in,
    as Ctrl-C would; it must raise KeyboardInterrupt.  Returns how long it ran."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(after, signal.pthread_kill, (threading.main_thread().ident,
                                                         signal.SIGINT))
    try:
        start = time.perf_counter()
        timer.start()
        try:
            call()
        except KeyboardInterrupt:
            return time.perf_counter() - start
        raise AssertionError("the call ran to its end: no KeyboardInterrupt")
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)


def altered(program: Any, **fields: Any) -> Any:
    """A lowered VM program with some of its fields replaced (``code``,
    ``meta``, ``index``, ...): an edited or hostile program for the
    validator's tests."""
    import dataclasses
    return dataclasses.replace(program, **fields)


def executable_or_none(program: Any) -> Any:
    """The C VM's executable of ``program``, or None when its validator
    refuses the program (TapeError)."""
    from fastad.backends import c_backend
    from fastad.core.errors import TapeError
    try:
        return c_backend.Executable(program)
    except TapeError:
        return None


def loop_descriptors(program: Any) -> list:
    """(word of each LOOP of a lowered program, its descriptor's offset, its
    body's words, its descriptor's length in words)."""
    from fastad.backends.vm_header import CONSTANTS
    entry = CONSTANTS["FASTAD_LOOP_ENTRY_WORDS"]
    return [(pc, d, n, 6 + entry * int(sum(program.meta[d + 1:d + 4])))
            for pc, name, (d, n) in ((pc, name, w) for pc, name, w in program.instructions()
                                     if name == "LOOP")]


def run_corrupted_loops(program: Any, args: list, values: tuple) -> tuple[int, int, int]:
    """Every word of every LOOP descriptor of ``program``, and each body's
    length, set to each of ``values`` in turn: the edited programs the
    validator refuses, those that run (garbage, never a crash; trip counts
    the arena cannot bound, or until a garbage condition fails, are not
    run), and how many of those had native loop steps."""
    rejected = ran = native = 0
    for pc, d, _n, length in loop_descriptors(program):
        for word in range(-1, length):
            for value in values:
                code, meta = program.code.copy(), program.meta.copy()
                if word < 0:
                    if not -2**31 <= value < 2**31:
                        continue
                    code[pc + 2] = value
                else:
                    meta[d + word] = value
                hostile = altered(program, code=code, meta=meta)
                exe = executable_or_none(hostile)
                if exe is None:
                    rejected += 1
                    continue
                if any(not 0 <= meta[e] <= 10**4 for _, e, _, _ in loop_descriptors(hostile)):
                    continue
                exe.run(args)
                ran += 1
                native += exe.native_loops
    return rejected, ran, native


def fresh_cache_dir(tmp_path_factory: Any) -> Any:
    """A module's own empty FASTAD_CACHE_DIR (Numba kernels compiled afresh),
    the variable restored after; a test module binds it as an autouse fixture."""
    old = os.environ.get("FASTAD_CACHE_DIR")
    os.environ["FASTAD_CACHE_DIR"] = str(tmp_path_factory.mktemp("fastad-cache"))
    yield os.environ["FASTAD_CACHE_DIR"]
    if old is None:
        del os.environ["FASTAD_CACHE_DIR"]
    else:
        os.environ["FASTAD_CACHE_DIR"] = old
