"""The Numba backend agrees with the NumPy reference interpreter.

Numba compiles are slow (a fraction of a second to seconds per tape), so
each test builds one tape that holds many primitives at once and lets
hypothesis vary the values fed to it; shapes, axes and dtypes vary over a
few compiles per test.  Compiled tapes go to a fresh cache directory for the
module, so the tests compile for real and never see a stale cache.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKENDS  # noqa: E402

nb = pytest.importorskip("fastad.backends.numba_backend")
if not nb.available or "numba" not in BACKENDS:
    pytest.skip("the Numba backend is not installed or not selected", allow_module_level=True)

import fastad as fa  # noqa: E402
from fastad.backends.reference import evaluate  # noqa: E402
from fastad.backends.numba_sums import SCRATCH  # noqa: E402
from fastad.core.errors import SignatureError  # noqa: E402
from fastad.primitives import registry  # noqa: E402
from fastad.primitives.elementwise import (BINARY, BINARY_ZERO_DERIVATIVE, UNARY,  # noqa: E402
                                           UNARY_ZERO_DERIVATIVE)
from fastad.core.tape import Aval, Instr, Tape, aval_of  # noqa: E402
from helpers import fresh_cache_dir, laplacian_energy, rosenbrock_loop  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = {np.dtype(np.float64): dict(rtol=1e-11, atol=1e-12),
       np.dtype(np.float32): dict(rtol=2e-5, atol=1e-5)}


fresh_cache = pytest.fixture(scope="module", autouse=True)(fresh_cache_dir)


class Builder:
    """A tape written by hand, one primitive at a time, with example values
    (avals come from running each primitive's NumPy implementation)."""

    def __init__(self):
        self.tape = Tape()
        self.values = {}

    def _slot(self, value):
        s = self.tape.new_slot(aval_of(value))
        self.values[s] = value
        return s

    def input(self, value):
        s = self._slot(np.asarray(value))
        self.tape.inputs.append(s)
        return s

    def const(self, value):
        s = self._slot(value)
        self.tape.consts[s] = value
        return s

    def op(self, prim, *ins, **params):
        with np.errstate(all="ignore"):
            value = registry[prim].impl(*(self.values[s] for s in ins), **params)
        s = self.tape.new_slot(Aval(np.shape(value), np.result_type(value)))
        self.values[s] = value
        self.tape.instrs.append(Instr(prim, s, tuple(ins), tuple(sorted(params.items()))))
        return s

    def finish(self, outputs):
        self.tape.outputs = list(outputs)
        self.tape.validate()
        return self.tape


def check(tape, exe, inputs):
    """Numba's outputs equal the reference's: values, dtypes, shapes, NaNs."""
    want = evaluate(tape, inputs)
    got = exe.run(inputs)
    assert (got is None) == (want is None)
    if want is None:
        return
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, (np.ndarray, np.generic)), f"output {k} is a {type(g).__name__}"
        assert g.shape == w.shape and g.dtype == w.dtype, f"output {k}: {g.dtype}{g.shape}"
        tol = TOL.get(w.dtype, dict(rtol=0, atol=0))
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, equal_nan=True, err_msg=f"output {k}", **tol)
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")


def arrays(shape, dtype, lo=-3.0, hi=3.0):
    n = int(np.prod(shape, dtype=np.int64))
    return st.lists(st.floats(lo, hi, allow_nan=False, width=32), min_size=n,
                    max_size=n).map(lambda v: np.asarray(v, dtype).reshape(shape))


_built = {}


def built(key, make):
    """Build (and compile) each tape once for the module."""
    if key not in _built:
        tape = make()
        _built[key] = (tape, nb.build(tape))
    return _built[key]


# -- elementwise ----------------------------------------------------------------
UNARIES = sorted(set(UNARY) | set(UNARY_ZERO_DERIVATIVE))
BINARIES = sorted(set(BINARY) | set(BINARY_ZERO_DERIVATIVE))
# (shape of x, shape of y): scalars, equal shapes, broadcasting both ways
SHAPES = [((), ()), ((4,), (4,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 2))]


def elementwise_tape(xshape, yshape, dtype):
    b = Builder()
    x = b.input(np.full(xshape, 0.5, dtype))
    y = b.input(np.full(yshape, 0.25, dtype))
    outs = [b.op(p, x) for p in UNARIES]
    outs += [b.op(p, x, y) for p in BINARIES]
    outs += [b.op(p, y, x) for p in ("sub", "div", "pow")]
    # weak Python scalars take the array's dtype (NEP 50)
    outs += [b.op("mul", b.const(2), x), b.op("add", x, b.const(0.5)),
             b.op("pow", x, b.const(2.0)), b.op("gt", x, b.const(0))]
    c = b.op("gt", x, y)
    outs += [b.op("where", c, x, y), b.op("where", c, x, b.const(0.0)),
             b.op("astype", x, dtype="float64" if dtype == np.float32 else "float32"),
             b.op("astype", c, dtype=np.dtype(dtype).str), b.op("stop_gradient", x)]
    return b.finish(outs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xshape,yshape", SHAPES)
def test_every_elementwise_primitive(xshape, yshape, dtype):
    tape, exe = built(("elementwise", xshape, yshape, dtype),
                      lambda: elementwise_tape(xshape, yshape, dtype))

    @settings(max_examples=15, deadline=None)
    @given(arrays(xshape, dtype), arrays(yshape, dtype))
    def agree(x, y):
        check(tape, exe, [x, y])
    agree()


def test_special_values_propagate_as_ieee():
    tape, exe = built(("elementwise", (4,), (4,), np.float64),
                      lambda: elementwise_tape((4,), (4,), np.float64))
    x = np.array([np.nan, np.inf, -np.inf, 0.0])
    y = np.array([0.0, np.nan, -0.0, np.inf])
    check(tape, exe, [x, y])


# -- structural -------------------------------------------------------------------
@st.composite
def structural_cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    perm = tuple(draw(st.permutations(range(ndim))))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    size = int(np.prod(shape))
    k = draw(st.integers(1, 6))
    gather = np.asarray(draw(st.lists(st.integers(0, size - 1), min_size=k, max_size=k)))
    keepdims = draw(st.booleans())
    return shape, axes, perm, dtype, gather, keepdims


def structural_tape(shape, axes, perm, dtype, gather, keepdims):
    b = Builder()
    x = b.input(np.ones(shape, dtype))
    size = int(np.prod(shape))
    outs = [b.op(p, x, axes=axes, keepdims=keepdims) for p in ("sum", "prod", "max", "min")]
    outs += [b.op("sum", x, axes=tuple(range(len(shape))), keepdims=False)]
    outs += [b.op("cumsum", x, axis=a, reverse=r) for a in (0, len(shape) - 1)
             for r in (False, True)]
    outs += [b.op("transpose", x, perm=perm), b.op("reshape", x, shape=(size,)),
             b.op("reshape", x, shape=(1, size, 1)), b.op("broadcast_to", x, shape=(2,) + shape)]
    flat = b.op("reshape", x, shape=(size,))
    idx_scalar = b.const(np.asarray(size - 1))
    idx_range = b.const(np.arange(size)[size // 2:].reshape(-1, 1))
    idx_step = b.const(np.arange(size)[::-2].copy())
    idx_any = b.const(gather)
    for idx in (idx_scalar, idx_range, idx_step, idx_any):
        outs.append(b.op("take", x, idx))
        v = b.op("take", flat, idx)
        outs.append(b.op("scatter_add", x, idx, b.op("sin", v)))
        outs.append(b.op("scatter_set", x, idx, v))
    zeros = b.const(np.zeros(shape, dtype))
    outs.append(b.op("scatter_add", zeros, idx_any, b.op("take", x, idx_any)))
    outs.append(b.op("scatter_add", x, idx_any, b.const(1.5)))
    return b.finish(outs)


@settings(max_examples=4, deadline=None)
@given(structural_cases(), st.data())
def test_structural_primitives(case, data):
    shape, axes, perm, dtype, gather, keepdims = case
    key = ("structural", shape, axes, perm, np.dtype(dtype).str, tuple(gather), keepdims)
    tape, exe = built(key, lambda: structural_tape(*case))
    for _ in range(3):
        check(tape, exe, [data.draw(arrays(shape, dtype))])


def linalg_tape(batch, n, k, dtype):
    b = Builder()
    a = b.input(np.eye(n, dtype=dtype) + np.zeros(batch + (n, n), dtype))
    rhs = b.input(np.ones(batch + (n, k), dtype))
    outs = [b.op("matmul", a, rhs), b.op("solve", a, rhs), b.op("logabsdet", a),
            b.op("detsign", a), b.op("matmul", b.op("transpose", rhs, perm=tuple(
                range(len(batch))) + (len(batch) + 1, len(batch))), a)]
    return b.finish(outs)


@pytest.mark.parametrize("batch,n,k,dtype", [((), 3, 2, np.float64), ((2, 2), 3, 3, np.float32)])
def test_linear_algebra(batch, n, k, dtype):
    tape, exe = built(("linalg", batch, n, k, dtype), lambda: linalg_tape(batch, n, k, dtype))
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = (rng.normal(size=batch + (n, n)) + 3 * np.eye(n)).astype(dtype)
        rhs = rng.normal(size=batch + (n, k)).astype(dtype)
        check(tape, exe, [a, rhs])


# -- guards, scalar chains, parts -------------------------------------------------------
def chain_tape():
    """A traced scalar loop: loads, arithmetic, a guard, and the adjoint
    accumulator chain of scatter_adds into one buffer."""
    b = Builder()
    x = b.input(np.linspace(0.1, 0.9, 6))
    acc = b.const(np.zeros(6))
    total = b.const(0.0)
    for i in range(5):
        xi = b.op("take", x, b.const(np.asarray(i)))
        xj = b.op("take", x, b.const(np.asarray(i + 1)))
        term = b.op("mul", b.op("square", b.op("sub", xj, b.op("square", xi))), b.const(100))
        total = b.op("add", total, term)
        acc = b.op("scatter_add", acc, b.const(np.asarray(i)), b.op("cos", term))
    b.op("guard", b.op("gt", total, b.const(1.0)), expected=True)
    return b.finish([total, acc])


def test_guard_failure_returns_none():
    tape, exe = built(("chain",), chain_tape)
    x = np.linspace(0.1, 0.9, 6)
    check(tape, exe, [x])
    assert exe.run([x]) is not None
    assert exe.run([np.zeros(6)]) is None
    assert evaluate(tape, [np.zeros(6)]) is None


def test_long_tapes_split_into_parts(monkeypatch):
    monkeypatch.setattr(nb, "PART_LINES", 6)
    tape = chain_tape()
    source, _ = nb.generate(tape, nb.PART_LINES)
    assert source.count("def part") > 2
    exe = nb.build(tape)
    check(tape, exe, [np.linspace(0.1, 0.9, 6)])
    assert exe.run([np.zeros(6)]) is None


def test_adjoint_chain_updates_in_place():
    source, _ = nb.generate(chain_tape())
    assert source.count("np.full((6, ), 0.0") == 1  # one accumulator buffer ...
    assert ".copy()" not in source                  # ... never copied per update
    assert source.count("] += ") == 5


def test_code_grows_linearly_with_the_tape():
    def w1(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
        return s
    sizes = []
    for n in (50, 100, 200):
        g = fa.compile(w1, backend="numpy", reroll=False)
        g(np.linspace(0, 1, n))
        sizes.append(len(nb.generate(g.tape)[0].splitlines()) / len(g.tape.instrs))
    assert max(sizes) < 1.5 * min(sizes)


def test_wrong_inputs_are_rejected_or_converted():
    tape, exe = built(("chain",), chain_tape)
    x = np.linspace(0.1, 0.9, 6)
    want = exe.run([x])
    for same in (x.tolist(), np.repeat(x, 2)[::2], np.asfortranarray(x)):
        np.testing.assert_allclose(exe.run([same])[1], want[1])
    readonly = x.copy()
    readonly.flags.writeable = False
    np.testing.assert_allclose(exe.run([readonly])[1], want[1])
    with pytest.raises(SignatureError):
        exe.run([np.ones(5)])
    with pytest.raises(SignatureError):
        exe.run([x, x])


# -- gradients through fastad.compile ------------------------------------------------------
def w1(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    return s


def w4(x):
    return np.sum(np.sin(x) * x ** 2)


def mlp(w, x):
    h = np.tanh(x @ w[:12].reshape(3, 4))
    logits = h @ w[12:].reshape(4, 2)
    z = logits - np.max(logits, axis=1, keepdims=True)
    return np.sum(np.log(np.sum(np.exp(z), axis=1))) - np.sum(z[:, 0])


def mixed(x):
    y = np.cumsum(x[::2]) * np.prod(x[1:3]) + np.maximum(x[:3], 0.2)
    return np.sum(y ** 2) + np.linalg.slogdet(np.outer(x[:2], x[:2]) + np.eye(2))[1]


@pytest.mark.parametrize("fn,n,dtype,reroll", [
    (w1, 8, np.float64, False), (w1, 30, np.float64, True), (w4, 10, np.float32, True),
    (mixed, 6, np.float64, True)])
def test_compiled_gradients_agree(fn, n, dtype, reroll):
    numba_grad = fa.compile(fn, backend="numba", reroll=reroll)
    numpy_grad = fa.compile(fn, backend="numpy", reroll=reroll)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.uniform(0.1, 1.0, n).astype(dtype)
        v0, g0 = numpy_grad.value_and_grad(x)
        v1, g1 = numba_grad.value_and_grad(x)
        np.testing.assert_allclose(v1, v0, **TOL[np.dtype(dtype)])
        np.testing.assert_allclose(g1, g0, **TOL[np.dtype(dtype)])
        assert np.asarray(g1).dtype == dtype


def test_compiled_mlp_gradient():
    x = np.random.default_rng(2).normal(size=(5, 3))
    g_numba = fa.compile(mlp, backend="numba")
    g_numpy = fa.compile(mlp, backend="numpy")
    w = np.random.default_rng(3).normal(size=20)
    np.testing.assert_allclose(g_numba(w, x), g_numpy(w, x), **TOL[np.dtype(np.float64)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_products_with_a_transpose_read_it_in_place(dtype):
    """X.T @ r (a gradient of X @ w): the transpose of an input, a constant or
    an array the code made is a Fortran-ordered view BLAS reads, not a copy;
    a transpose that something else reads is still made contiguous."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(40, 6)).astype(dtype), np.sign(rng.normal(size=40)).astype(dtype)
    C = rng.normal(size=(6, 40)).astype(dtype)

    def loss(w, X, y):
        h = np.tanh(X @ w)
        return np.sum(np.logaddexp(0.0, -y * h)) + np.sum((C.T @ w) * h)

    w = rng.normal(size=6).astype(dtype)
    g = fa.compile(loss, backend="numba")
    got = g(w, X, y)
    np.testing.assert_allclose(got, fa.compile(loss, backend="numpy")(w, X, y),
                               **TOL[np.dtype(dtype)])
    source = g.program.source
    import re
    assert re.search(r"= x1\.T$", source, re.M), source  # X.T, as a view
    assert "np.transpose(x1" not in source


def test_branches_are_guarded():
    def f(x):
        if x.sum() > 0:
            return np.sum(x ** 2)
        return np.sum(np.sin(x))
    g = fa.compile(f, backend="numba")
    pos, neg = np.array([1.0, 2.0, 0.5]), np.array([-1.0, -2.0, 0.5])
    np.testing.assert_allclose(g(pos), 2 * pos)
    np.testing.assert_allclose(g(neg), np.cos(neg))
    np.testing.assert_allclose(g(pos), 2 * pos)
    assert g.cache_info()["traces"] == 2


# -- the disk cache ---------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import sys
    from fastad.core.tape import Tape
    from fastad.backends import numba_backend as nb
    tape = Tape.from_bytes(open(sys.argv[1], "rb").read())
    exe = nb.build(tape)
    stats = exe.kernel.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
""")


def _child(tape_path, cache):
    env = dict(os.environ, FASTAD_CACHE_DIR=str(cache), PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(tape_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_disk_cache_across_processes(tmp_path):
    b = Builder()
    x = b.input(np.ones(3))
    tape = b.finish([b.op("sum", b.op("tanh", b.op("mul", x, b.const(1.25))), axes=(0,),
                          keepdims=False)])
    path = tmp_path / "tape.bin"
    path.write_bytes(tape.to_bytes())
    cache = tmp_path / "cache"
    # two processes race to compile the same new tape: both succeed
    first = [_child(path, cache) for _ in range(2)]
    for p in first:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert len(list((cache / "numba").glob("fastad_*.py"))) == 1
    # a third process finds it compiled
    p = _child(path, cache)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    hits, misses = map(int, out.split())
    assert (hits, misses) == (1, 0), err


def _shifted_terms(offsets, n):
    """sum_m c_m * sum(x[o_m : o_m + n] ** 3): its gradient is a chain of
    scatter-adds into one accumulator at the offsets o_m, in this order."""
    def f(x):
        total = 0.0
        for m, o in enumerate(offsets):
            v = x[o:o + n]
            total = total + np.sum((m + 1.5) * v * v * v)
        return total
    return f


@pytest.mark.parametrize("offsets", [(0, 1), (0, 0, 2), (2, 1, 0), (0, 3, 1), (0, 5),
                                     (0, 1, 2, 3, 4)])
def test_fused_scatter_chains_keep_the_order_of_updates(offsets):
    """A scatter chain fused into its loop updates each element in tape order
    (later offsets wait in registers), so gradients are bitwise those of the
    reference, which runs the scatters one after another."""
    f = _shifted_terms(offsets, 9)
    x = np.random.default_rng(len(offsets)).standard_normal(9 + max(offsets))
    got = fa.compile(f, backend="numba")(x)
    want = fa.compile(f, backend="numpy")(x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, fa.grad(f)(x), rtol=1e-12)


def test_rerolled_loop_gradient_is_one_loop():
    """W1's rerolled gradient, forward and adjoint, runs as one loop over x
    with its scatter-adds inside, as a hand-written gradient loop does: the
    only array of x's size it makes is the gradient, each element stored once
    (besides it, each of the two sums' scratch of a pairwise leaf and a
    stack, `numba_sums.SCRATCH` elements)."""
    x = np.random.default_rng(3).standard_normal(40)
    g = fa.compile(rosenbrock_loop, backend="numba")
    np.testing.assert_array_equal(g(x), fa.compile(rosenbrock_loop, backend="numpy")(x))
    source = g._vg.cache[next(iter(g._vg.cache))][0].exe.source
    scratch = source.count(f"np.empty({SCRATCH}, ")
    assert source.count("for i in range(") == 1 and source.count("np.empty(") - scratch == 1
    assert "np.full(" not in source and "] += " not in source


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_gradients_of_shifted_slices_are_stored_once_bit_for_bit(shift):
    """x[k:] next to x[:-k]: each gradient element sums its updates in a local
    variable, in tape order from +0 as the zero-filled array would, and is
    stored once into an uninitialized array; -0.0 and the edges included."""
    def f(x):
        return np.sum(x[shift:] * np.sin(x[:-shift]) - 0.5 * x[:-shift] ** 2)
    x = np.random.default_rng(5).standard_normal(30)
    x[[0, 7, -1]] = 0.0, -0.0, -0.0
    g = fa.compile(f, backend="numba")
    want = fa.compile(f, backend="numpy")
    for y in (x, -x):
        np.testing.assert_array_equal(g(y), want(y))
        np.testing.assert_array_equal(np.signbit(g(y)), np.signbit(want(y)))
    source = g._vg.grads_of(g._vg.last).exe.source
    assert "np.full(" not in source and "] += " not in source


def test_two_dimensional_blocks_are_read_without_index_tables():
    """The nested-loop stencil reads x[i±1, j±1] as affine positions over a
    (rows, cols) grid, fused into its loop, not through gathered copies."""
    x = np.random.default_rng(4).standard_normal((7, 9))
    g = fa.compile(laplacian_energy, backend="numba")
    np.testing.assert_allclose(g(x), fa.grad(laplacian_energy)(x), rtol=1e-12)
    source = g._vg.cache[next(iter(g._vg.cache))][0].exe.source
    assert "idx" not in source and "for i1 in range(7)" in source


def test_scalars_sink_to_their_readers_in_dependency_order():
    """Moving scalar instructions down to their first reader keeps every
    instruction once and after what it reads, also along a scalar chain far
    longer than Python's recursion limit."""
    def chain(x):
        p = x[0]
        for i in range(1, len(x)):
            p = p * x[i] + 0.5
        return p * x  # an array reads the end of the chain
    tape = fa.make_tape(chain)(np.linspace(0.5, 1.0, 1500))
    moved = nb._sink_scalars(tape)
    assert sorted(map(id, moved.instrs)) == sorted(map(id, tape.instrs))
    defined = set(tape.inputs) | set(tape.consts)
    for ins in moved.instrs:
        assert all(s in defined for s in ins.ins)
        defined.add(ins.out)


#: an array read beside a rearranged copy of itself: the adjoint of the gather
#: is an update of the array's own adjoint by that adjoint (``scatter_add(g,
#: k, g)``), which must read every element before it is updated.  Each makes
#: its rearrangement (its shift, permutation or indices drawn once) for a shape.
REARRANGED = {
    "reversed": lambda shape, rng: lambda v: v[::-1],
    "rolled": lambda shape, rng: (lambda k: lambda v: np.roll(v, k))(int(rng.integers(1, 9))),
    "permuted": lambda shape, rng: (lambda p: lambda v: v[p])(rng.permutation(shape[0])),
    "repeated": lambda shape, rng: (lambda p: lambda v: v[p])(
        rng.integers(0, shape[0], shape[0])),
    "transposed": lambda shape, rng: lambda v: v.T,
    "shifted": lambda shape, rng: lambda v: np.concatenate([v[1:], v[:1]]),
}
COMBINE = {"add": np.add, "mul": np.multiply, "sub": np.subtract}


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(sorted(REARRANGED)), n=st.integers(2, 9),
       square=st.booleans(), combine=st.sampled_from(sorted(COMBINE)),
       seed=st.integers(0, 2 ** 16))
def test_gradients_of_an_array_beside_a_rearranged_copy(kind, n, square, combine, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, (n, n) if square else n)
    other = REARRANGED[kind](x.shape, rng)

    def f(v):
        return np.sum(np.sin(COMBINE[combine](v, other(v))) ** 2)
    want = fa.compile(f, backend="numpy")(x)
    for backend in [b for b in BACKENDS if b != "numpy"]:
        np.testing.assert_allclose(fa.compile(f, backend=backend)(x), want, rtol=1e-12,
                                   atol=1e-14, err_msg=backend)
    d = rng.standard_normal(x.shape)
    fd = (f(x + 1e-6 * d) - f(x - 1e-6 * d)) / 2e-6
    np.testing.assert_allclose(np.sum(want * d), fd, rtol=1e-6, atol=1e-9)
