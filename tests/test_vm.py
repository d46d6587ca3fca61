"""The C virtual machine against the NumPy reference interpreter.

Every primitive is traced into a tape, run by the VM and by
`reference.evaluate`, and the results compared: random shapes with
broadcasting (size-0 and size-1 axes included), random axes, both float
dtypes.  Then whole gradient tapes, threads, argument checking, and hostile
programs.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad as fa
import fastad.numpy as fnp
import fastad.scipy.linalg as fsla
import fastad.scipy.special as fsc
from fastad.backends import c_backend, reference
from fastad.backends.lower import UNARY, lower
from fastad.core.errors import SignatureError, TapeError
from fastad.primitives.linalg import triangular_matmul
from helpers import (altered, executable_or_none, loop_descriptors, rosenbrock,
                     rosenbrock_loop, run_corrupted_loops, seconds_until_interrupted)

pytestmark = pytest.mark.skipif(not c_backend.available, reason="C extension not built")

DTYPES = [np.float64, np.float32]
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 3e-5}
EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 25)), deadline=None)

# Arguments inside each unary function's domain.
DOMAIN = {"log": (0.2, 3), "log2": (0.2, 3), "log10": (0.2, 3), "sqrt": (0.2, 3),
          "reciprocal": (0.5, 2), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9),
          "arctanh": (-0.9, 0.9), "arccosh": (1.2, 3), "log1p": (-0.5, 2), "logit": (0.05, 0.95)}
# scipy.special's functions among the VM's (polygamma: the VM's is psi, its order 0)
SPECIAL = {"erf": fsc.erf, "erfc": fsc.erfc, "expit": fsc.expit, "log_expit": fsc.log_expit,
           "logit": fsc.logit, "gammaln": fsc.gammaln, "polygamma": fsc.digamma, "ndtr": fsc.ndtr}


def run_both(f, *args):
    """(VM results, reference results) of f's tape on args."""
    tape = fa.make_tape(f)(*args)
    got = c_backend.build(tape).run(list(args))
    want = reference.evaluate(tape, list(args))
    return got, want


def assert_same(got, want, inputs=()):
    """VM results equal the reference's: dtypes and shapes exactly, values to
    the rounding of the least precise input (float32 sums round differently)."""
    assert (got is None) == (want is None)
    if want is None:
        return
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert isinstance(g, np.ndarray)
        assert g.dtype == w.dtype and g.shape == w.shape
        rtol = max([RTOL.get(w.dtype, 0)] + [RTOL.get(np.asarray(x).dtype, 0) for x in inputs])
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


def check(f, *args):
    assert_same(*run_both(f, *args))


def rand(shape, dtype=np.float64, lo=-2.0, hi=2.0, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype)


# -- the extension itself ---------------------------------------------------------
def test_extension_builds_and_imports():
    from fastad.backends import _vm
    assert c_backend.available
    assert "MATMUL_B" in [name for name, _ in _vm.tables()["OPCODES"]]


# -- elementwise --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(UNARY) & set(fa.primitives.registry)))
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
def test_unary(name, dtype, shape):
    lo, hi = DOMAIN.get(name, (-2, 2))
    fn = SPECIAL.get(name) or getattr(fnp, {"neg": "negative", "round": "rint"}.get(name, name))
    check(fn, rand(shape, dtype, lo, hi))


BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "arctan2",
          "hypot", "logaddexp", "less", "less_equal", "greater", "greater_equal", "equal",
          "not_equal", "xlogy", "xlog1py"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float32),
                                    (np.float32, np.float64)])
@EXAMPLES
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                min_side=0, max_side=4))
def test_binary_broadcasting(name, dtypes, shapes):
    sa, sb = shapes.input_shapes
    lo = 0.3 if name == "power" else -2.0
    a, b = rand(sa, dtypes[0], lo, 2.0, seed=1), rand(sb, dtypes[1], -2.0, 2.0, seed=2)
    if name.startswith("xlog"):  # y in the domain of log (log1p), x zero in places
        a, b = np.where(np.abs(a) < 0.5, 0.0, a).astype(dtypes[0]), np.abs(b).astype(dtypes[1])
    if name.endswith("equal"):
        b = np.broadcast_to(a.astype(dtypes[1]), np.broadcast_shapes(sa, sb)).copy() \
            if sb == np.broadcast_shapes(sa, sb) else b  # some ties
    check(getattr(fsc, name) if name.startswith("xlog") else getattr(fnp, name), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weak_scalars_take_the_array_dtype(dtype):
    x = rand((5,), dtype)
    check(lambda x: 2.5 * x + 1 - x / 3.0, x)
    check(lambda x: np.maximum(x, 0.5) ** 2, x)


def test_nan_and_inf_propagate():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0])
    check(lambda x: (np.maximum(x, 0.0), np.minimum(x, 0.0), np.sign(x), np.exp(x) * x), x)
    check(lambda x: (np.max(x), np.min(x), np.sum(x), np.logaddexp(x, x)), x)


@EXAMPLES
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                min_side=0, max_side=4))
def test_where_and_logic(shapes):
    sc, sa, sb = shapes.input_shapes
    c, a, b = rand(sc, seed=3), rand(sa, seed=4), rand(sb, seed=5)
    check(lambda c, a, b: np.where(c > 0, a, b), c, a, b)
    check(lambda c, a: (np.logical_and(c > 0, a < 0.5), np.logical_or(c > 1, a < 0),
                        np.logical_not(c > 0)), c, a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_casts(dtype):
    x = rand((3, 4), dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    check(lambda x: (x.astype(other), (x > 0).astype(dtype) * x, x.astype(other) + x), x)


# -- reductions ---------------------------------------------------------------------
@st.composite
def shape_and_axes(draw, min_side=0):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=min_side, max_side=4))
    axes = draw(st.lists(st.integers(0, max(len(shape) - 1, 0)), unique=True,
                         max_size=len(shape)))
    return shape, (tuple(sorted(axes)) if axes or not shape else None)


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min", "mean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@EXAMPLES
@given(case=shape_and_axes(min_side=1))
def test_reductions(name, dtype, keepdims, case):
    shape, axes = case
    x = rand(shape, dtype, 0.5, 1.5)
    check(lambda x: getattr(np, name)(x, axis=axes, keepdims=keepdims), x)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=shape_and_axes())
def test_sum_over_empty_and_unit_axes(dtype, case):
    shape, axes = case
    check(lambda x: (np.sum(x, axis=axes), np.prod(x, axis=axes, keepdims=True)),
          rand(shape, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), data=st.data())
def test_cumsum_both_directions(dtype, shape, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = rand(shape, dtype)
    check(lambda x: (np.cumsum(x, axis=axis), np.flip(np.cumsum(np.flip(x, axis), axis), axis)),
          x)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), data=st.data())
def test_product_scans_with_zeros(dtype, shape, data):
    """SCAN_B's products: cumprod, and prod's partials (the products of the
    others) with none, one or several exact zeros in a slice."""
    from fastad.core.registry import registry
    from fastad.core.tracer import bind
    axis = data.draw(st.integers(0, len(shape) - 1))
    zeros = data.draw(hnp.arrays(np.bool_, shape, elements=st.sampled_from([False, False, True])))
    x = np.where(zeros, 0, rand(shape, dtype)).astype(dtype)
    check(lambda x: (np.cumprod(x, axis=axis), bind(registry["prod_others"], x, axis=axis)), x)


# -- shape and indexing -------------------------------------------------------------
@EXAMPLES
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4), data=st.data())
def test_transpose_reshape_broadcast(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    lead = data.draw(st.integers(0, 2))
    x = rand(shape)
    check(lambda x: (np.transpose(x, perm), np.reshape(x, (-1,)),
                     np.broadcast_to(x, (3,) * lead + shape) * 1.5), x)


def test_indexing_patterns():
    x = rand((6, 5))
    check(lambda x: (x[2], x[1:4], x[:, 1], x[::2, ::-1], x[1, 3], x[[0, 5, 2, 2]],
                     x[x.shape[0] - 1, [4, 0]], x[None, 2:3, ...]), x)


def test_scatter_updates():
    idx = np.array([0, 3, 3, 1])

    def f(x, v):
        a = fnp.scatter_add(x, idx, v)           # duplicates accumulate
        b = fnp.scatter_set(x, np.arange(2, 6), v)
        c = fnp.scatter_add(x * 2.0, 4, v[0])    # one element, in place
        return a, b, c
    check(f, rand((7,)), rand((4,)))


def test_item_assignment_in_a_loop():
    def f(x):
        y = fnp.zeros_like(x)
        for i in range(len(x)):
            y[i] = x[i] * (i + 1)
        return y * x
    check(f, rand((9,)))


# -- linear algebra -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((1, 7), (7, 1)),
                                    ((40, 30), (30, 20)), ((3, 0), (0, 2)), ((0, 3), (3, 2))])
def test_matmul(dtype, shapes):
    a, b = rand(shapes[0], dtype, seed=1), rand(shapes[1], dtype, seed=2)
    check(lambda a, b: (a @ b, np.swapaxes(b, -1, -2) @ np.swapaxes(a, -1, -2)), a, b)


@EXAMPLES
@given(dtype=st.sampled_from(DTYPES), rows=st.integers(1, 300), k=st.integers(60, 300),
       batch=st.sampled_from([(), (2,)]), vector_first=st.booleans(),
       transposed=st.booleans(), added=st.booleans(), seed=st.integers(0, 2**16))
def test_matrix_vector_products(dtype, rows, k, batch, vector_first, transposed, added, seed):
    """Products of a matrix and a vector above the VM's small-product limit
    (`gemv`), each operand either way round and either layout, with and
    without an addend (`matmul_add`), against the reference."""
    rows = max(rows, 16384 // k + 1)  # past SMALL_MATVEC multiply-adds
    shape = (k, rows) if transposed else (rows, k)
    m = rand(batch + shape, dtype, seed=seed)
    v = rand(batch + (1, k) if vector_first else batch + (k, 1), dtype, seed=seed + 1)
    c = rand(batch + ((1, rows) if vector_first else (rows, 1)), dtype, seed=seed + 2)

    def f(m, v, c):
        mat = np.swapaxes(m, -1, -2) if transposed else m
        prod = v @ np.swapaxes(mat, -1, -2) if vector_first else mat @ v
        return prod + c if added else prod  # (the product read once: accumulated in place)
    got, want = run_both(f, m, v, c)
    assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=16 * k * eps)
    program = str(c_backend.build(fa.make_tape(f)(m, v, c)))
    assert "MATMUL_B" in program


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [16385, 40000])
def test_long_dot_products(dtype, k):
    """Vector times vector above the small-product limit (`dot`), 1-d and as
    (1, k) @ (k, 1) matrices, against the reference."""
    a, b = rand((k,), dtype, seed=3), rand((k,), dtype, seed=4)
    got, want = run_both(lambda a, b: (a @ b, a[None] @ b[:, None], np.dot(b, a)), a, b)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=16 * k * np.finfo(dtype).eps)


def well_conditioned(shape, dtype, seed=0):
    n = shape[-1]
    rng = np.random.default_rng(seed)
    a = np.eye(n) + rng.uniform(-0.3, 0.3, shape) / max(n, 1)
    a[..., :1, :] *= -1
    return a.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,batch", [(1, ()), (3, ()), (4, (2,)), (20, ())])
def test_solve_and_slogdet(dtype, n, batch):
    a = well_conditioned(batch + (n, n), dtype)
    b = rand(batch + (n, 2), dtype)
    check(lambda a, b: (np.linalg.solve(a, b), np.linalg.slogdet(a)[1],
                        np.linalg.slogdet(a)[0], np.linalg.inv(a)), a, b)


def test_singular_solve_raises_like_numpy():
    a = np.ones((3, 3))
    exe = c_backend.build(fa.make_tape(lambda a, b: np.linalg.solve(a, b))(np.eye(3), np.eye(3)))
    with pytest.raises(np.linalg.LinAlgError):
        exe.run([a, np.eye(3)])
    sign, logabs = c_backend.build(fa.make_tape(np.linalg.slogdet)(np.eye(3))).run([a])
    assert sign == 0 and logabs == -np.inf


# -- guards ---------------------------------------------------------------------------
def test_guard_failure_returns_none():
    def f(x):
        return x * 2.0 if np.sum(x) > 0 else x * 3.0
    tape = fa.make_tape(f)(np.ones(3))
    exe = c_backend.build(tape)
    np.testing.assert_array_equal(exe.run([np.full(3, 2.0)])[0], np.full(3, 4.0))
    assert exe.run([-np.ones(3)]) is None


# -- whole gradient tapes --------------------------------------------------------------
def mlp_loss(W1, b1, W2, b2, X, labels):
    h = np.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    logits = logits - np.max(logits, axis=1, keepdims=True)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(np.sum(logp * labels, axis=1))


def gaussian_loglik(L, x):
    cov = L @ L.T + np.eye(L.shape[0])
    return -0.5 * (x @ np.linalg.solve(cov, x) + np.linalg.slogdet(cov)[1])


def mlp_args(dtype):
    rng = np.random.default_rng(7)
    return tuple(a.astype(dtype) for a in (rng.standard_normal((6, 5)), np.zeros(5),
                                           rng.standard_normal((5, 3)), np.zeros(3),
                                           rng.standard_normal((4, 6)), np.eye(3)[[0, 2, 1, 2]]))


GRADIENT_CASES = [
    (rosenbrock_loop, lambda dt: (rand((12,), dt),)),
    (rosenbrock, lambda dt: (rand((50,), dt),)),
    (lambda x: np.sum(np.sin(x) * x ** 2), lambda dt: (rand((10,), dt),)),
    (mlp_loss, mlp_args),
    (gaussian_loglik, lambda dt: (rand((4, 4), dt, seed=3), rand((4,), dt, seed=4))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(GRADIENT_CASES)))
def test_gradient_tapes(case, dtype):
    f, make_args = GRADIENT_CASES[case]
    args = make_args(dtype)
    g = fa.compile(f, argnums=tuple(range(len(args))), backend="numpy")
    g(*args)
    tape = g.tape
    assert_same(c_backend.build(tape).run(list(args)), reference.evaluate(tape, list(args)), args)


# -- threads ---------------------------------------------------------------------------
def test_threads_give_serial_results_bit_for_bit():
    x = rand((200,))
    g = fa.compile(rosenbrock, backend="numpy")
    g(x)
    exe = c_backend.build(g.tape)
    inputs = [[x + 0.01 * k] for k in range(8)]
    serial = [exe.run(inp) for inp in inputs]
    failures = []

    def worker(k):
        for _ in range(1000):
            out = exe.run(inputs[k])
            if not all(np.array_equal(a, b) for a, b in zip(out, serial[k])):
                failures.append(k)
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


# -- arguments ---------------------------------------------------------------------------
def test_arguments_are_checked_and_converted():
    exe = c_backend.build(fa.make_tape(lambda x, s: x * s)(np.ones((2, 3)), 2.0))
    want = np.arange(6.0).reshape(2, 3) * 2.0
    base = np.arange(12.0).reshape(2, 6)
    readonly = np.arange(6.0).reshape(2, 3)
    readonly.flags.writeable = False
    for x in (np.arange(6.0).reshape(2, 3), base[:, ::2] / 2 * 1.0 + 0 * base[:, ::2],
              readonly, [[0, 1, 2], [3, 4, 5]]):
        np.testing.assert_array_equal(exe.run([x, 2])[0], want)
    noncontiguous = np.arange(12.0).reshape(3, 4)[:2, :3].T.T
    np.testing.assert_array_equal(exe.run([noncontiguous, 2.0])[0],
                                  np.arange(12.0).reshape(3, 4)[:2, :3] * 2)
    with pytest.raises(SignatureError, match="argument 0"):
        exe.run([np.ones((3, 2)), 2.0])
    with pytest.raises(SignatureError, match="argument 0"):
        exe.run([np.ones((2, 3), np.float32), 2.0])
    with pytest.raises(SignatureError, match="argument 1"):
        exe.run([np.ones((2, 3)), "two"])
    with pytest.raises(SignatureError):
        exe.run([np.ones((2, 3))])


def test_outputs_match_reference_dtypes_and_shapes():
    x = np.float32(1.5) * np.ones((), np.float32)
    got, want = run_both(lambda x: (x * 2, np.sum(x), x > 1), x)
    assert_same(got, want)
    assert got[0].shape == () and got[0].dtype == np.float32 and got[2].dtype == np.bool_


# -- hostile programs ---------------------------------------------------------------------
def test_corrupt_programs_are_rejected_not_run():
    tape = fa.make_tape(lambda x: np.sum(np.sin(x)[::2] * x[[0, 1, 2, 0, 1]]))(rand((10,)))
    program = lower(tape)
    rng = np.random.default_rng(0)
    x = [rand((10,))]
    rejected = 0
    for trial in range(2000):
        code = program.code.copy()
        meta, index = program.meta.copy(), program.index.copy()
        target = rng.integers(3)
        if target == 0:
            code[rng.integers(len(code))] = rng.choice([-1, 0, 1, 7, 2**20, 2**31 - 1, -2**31,
                                                        rng.integers(-100, 100)])
        elif target == 1 and len(meta):
            meta[rng.integers(len(meta))] = rng.choice([-1, 0, 2**40, 2**62, rng.integers(-9, 9)])
        elif len(index):
            index[rng.integers(len(index))] = rng.choice([-1, 10, 2**40])
        hostile = altered(program, code=code, meta=meta, index=index)
        exe = executable_or_none(hostile)
        if exe is None:
            rejected += 1
            continue
        exe.run(x)  # a program that passes validation may compute garbage, never crash
    assert rejected > 500


def test_corrupt_cholesky_and_triangular_solve_descriptors_are_rejected_or_run_safely():
    """Every descriptor word of CHOLESKY_B, TRSOLVE_B, TRMM_B, EIGH_B, SVD_B, PINV_B and QR_B (batch,
    sizes, flags, LAPACK work sizes) set to hostile values: rejected by validation
    (sizes past the arena or LAPACK's int, flags other than 0 and 1, work below
    LAPACK's minimum, a wide QR), or a valid program that runs, raising at most
    LinAlgError on what it then reads (never a crash)."""
    a = well_conditioned((2, 4, 4), np.float64)
    a = a @ np.swapaxes(a, -1, -2)
    b = rand((2, 4, 3))
    program = lower(fa.make_tape(lambda a, b: (fsla.solve_triangular(
        np.linalg.cholesky(a), b, lower=True, trans=1), np.linalg.eigh(a)[0],
        np.linalg.svd(b, full_matrices=False)[1],
        np.linalg.svd(np.swapaxes(b, -1, -2), full_matrices=False)[1],
        np.linalg.qr(b)[1], np.linalg.pinv(b), triangular_matmul(a, b, True, True)))(a, b))
    # opcode -> (its descriptor's operand word, the descriptor's length)
    lengths = {"CHOLESKY_B": (3, 2), "TRSOLVE_B": (4, 5), "EIGH_B": (3, 3), "SVD_B": (3, 4),
               "PINV_B": (3, 4), "QR_B": (3, 4), "TRMM_B": (4, 5)}
    seen = set()
    rejected = ran = 0
    for pc, name, words in program.instructions():
        if name not in lengths:
            continue
        seen.add(name)
        d = words[lengths[name][0]]
        for word in range(lengths[name][1]):
            for value in (-1, 0, 1, 2, 3, 5, 8, 40, 46341, 2**31 - 1, 2**31, 2**40):
                meta = program.meta.copy()
                meta[d + word] = value
                hostile = altered(program, meta=meta)
                exe = executable_or_none(hostile)
                if exe is None:
                    rejected += 1
                    continue
                try:
                    exe.run([a, b])
                except np.linalg.LinAlgError:
                    pass
                ran += 1
    assert seen == set(lengths) and rejected > 20 and ran > 10


def test_truncated_and_oversized_programs_are_rejected():
    program = lower(fa.make_tape(lambda x: x * 2.0)(rand((3,))))
    P = type(program)
    for code in (program.code[:-1], program.code[:1], np.zeros(0, np.int32)):
        with pytest.raises(TapeError):
            c_backend.Executable(P(code, program.meta, program.index, program.const_image,
                                   program.arena_bytes, program.inputs, program.outputs))
    with pytest.raises(TapeError):
        c_backend.Executable(P(program.code, program.meta, program.index, program.const_image,
                               8, program.inputs, program.outputs))


def test_corrupt_fused_programs_are_rejected_not_run():
    """Mutations of FUSED micro-programs (registers, slots, steps, offsets):
    the validator rejects what could leave the arena or read an unset value."""
    def f(x, y):
        d = x[1:] - x[:-1] ** 2
        hits = np.sum(fnp.astype(fnp.logical_not(np.sin(y) < 0.25), np.float64))
        return (np.sum(100.0 * d ** 2 + (1.0 - x[:-1]) ** 2) + np.sum(np.sin(y) * np.cos(y) * 2.0)
                + hits)
    args = [rand((40,)), rand((39,), seed=1)]
    g = fa.compile(f, argnums=(0, 1), backend="numpy")
    g(*args)
    program = lower(g.tape)
    assert "FUSED" in [name for _, name, _ in program.instructions()] and "ncount(" in str(program)
    rng = np.random.default_rng(1)
    rejected = 0
    for trial in range(3000):
        code, meta = program.code.copy(), program.meta.copy()
        for _ in range(rng.integers(1, 3)):
            if rng.random() < 0.8:
                meta[rng.integers(len(meta))] = rng.choice(
                    [-1, 0, 1, 2, 3, 4, 5, 15, 16, 17, 47, 48, 63, 64, 2**31, 2**40, 2**62,
                     rng.integers(-9, 80)])
            else:
                code[rng.integers(len(code))] = rng.choice([-1, 0, 1, 3, 2**20, 2**31 - 1,
                                                            rng.integers(-100, 100)])
        hostile = altered(program, code=code, meta=meta)
        exe = executable_or_none(hostile)
        if exe is None:
            rejected += 1
            continue
        exe.run(args)  # may compute garbage, never crash
    assert rejected > 1500


def _loop_program():
    """A compiled gradient of a scan: LOOP instructions nested in LOOP bodies."""
    x, xs = rand((3,)), rand((6, 3), seed=1)
    return lower(fa.make_tape(fa.grad(_scanned))(x, xs)), [x, xs]


def test_corrupt_loop_programs_are_rejected_not_run():
    """Every word of every LOOP descriptor, and the body length, set to hostile
    values: rejected (counts, rows past the arena, a body past the code), or a
    valid program that runs (garbage, never a crash).  Trip counts the arena
    cannot bound (no stacked values) are not run."""
    program, args = _loop_program()
    want = c_backend.Executable(program).run(args)
    assert len(loop_descriptors(program)) >= 3
    rejected, ran, _ = run_corrupted_loops(
        program, args, (-(2**40), -9, -1, 0, 1, 7, 8, 13, 64, 1000, program.arena_bytes,
                        2**31 - 1, 2**40, 2**62))
    assert rejected > 200 and ran > 50
    np.testing.assert_array_equal(c_backend.Executable(program).run(args)[0], want[0])


def _nested_loops(depth):
    """A program of ``depth`` LOOPs, each the whole body of the one around it,
    one step each, no values: only the nesting."""
    from fastad.backends.lower import OP
    f64 = np.dtype(np.float64)
    code = [OP["HALT"]]  # the innermost body
    for _ in range(depth):
        code = [OP["LOOP"], 0, len(code)] + code + [OP["HALT"]]
    return type(_loop_program()[0])(np.array(code, np.int32), np.array([1, 0, 0, 0, 0, -1], np.int64),
                                    np.zeros(0, np.int64), b"", 64, [(0, f64, ())], [(0, f64, ())])


def test_loops_nested_past_the_vm_bound_are_rejected():
    from fastad.backends.vm_header import CONSTANTS
    deepest = CONSTANTS["FASTAD_LOOP_MAX_DEPTH"]
    exe = c_backend.Executable(_nested_loops(deepest))
    assert exe.run([np.float64(2.5)])[0] == 2.5
    with pytest.raises(TapeError, match="nest deeper"):
        c_backend.Executable(_nested_loops(deepest + 1))
    with pytest.raises(TapeError, match="runs past the end|HALT"):
        bad = _nested_loops(2)
        bad.code[2] += 1  # the outer body swallows the program's HALT
        c_backend.Executable(bad)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
def test_ctrl_c_stops_a_long_loop_of_scalar_steps():
    """A LOOP whose body is scalar instructions (no poll inside it) polls
    between steps: SIGINT 0.2 s in stops a run of many seconds."""
    tape = fa.make_tape(lambda x: fa.scan(lambda c, _: (c * 0.999 + 1e-3, None), x, None,
                                          length=3)[0])(0.5)
    program = lower(tape)
    exe = c_backend.Executable(program)
    want = exe.run([0.5])[0]
    (pc, d, _n, _len), = loop_descriptors(program)
    meta = program.meta.copy()
    meta[d] = 10**10  # steps: minutes uninterrupted
    long = c_backend.Executable(type(program)(program.code, meta, program.index,
                                              program.const_image, program.arena_bytes,
                                              program.inputs, program.outputs))
    elapsed = seconds_until_interrupted(lambda: long.run([0.5]))
    assert 0.2 <= elapsed < 1.5
    assert exe.run([0.5])[0] == want


# -- regions an instruction writes overlap nothing else it uses ----------------------------
ARENA_LETTERS = set("oabcvwpi")  # opcodes.h: the operand kinds that are arena offsets
OVERLAP_IDX = np.array([0, 3, 3, 1])


def _many_opcodes(x, m, v):
    return (fnp.scatter_add(x, OVERLAP_IDX, v), fnp.scatter_set(x, np.arange(2, 6), v),
            fnp.scatter_add(x * 2.0, 4, v[0]), x[[0, 5, 2, 2]], x[::2], np.cumsum(m, axis=1),
            fnp.scatter_add(x, np.arange(0, 6, 2), v[:3]), fnp.scatter_set(x, np.arange(5, 0, -2), v[1:]),
            np.max(m, axis=0), np.where(m > 0, m, -m), fnp.logical_and(m > 0, m < 1),
            fnp.logical_not(m > 0), fnp.astype(x, np.float32), np.sin(x), x * x, x + v[0],
            v[0] - x, m + x[:3], np.sum(x))


def _row_opcodes(m, k, v):
    """Gathers and scatters by traced rows (indices held in float64)."""
    return fnp.gather_rows(m, k), fnp.scatter_add_rows(m * 2.0, k, v), fnp.gather_rows(m[0], k)


def _scalar_opcodes(x):
    y = fnp.scatter_add(fnp.scatter_set(x, 2, x[0] + x[1]), 3, -x[1])
    z = fnp.scatter_set(x, np.array([4, 0, 2]), x[:3])
    w = x[0] * 2.0 if x[0] + x[1] > -100 else x[0]
    return (x[0] + x[1], -(x[0] * x[1]), np.square(x[2]), y, z, w,
            x[0] * x[1] + x[2] - x[3] / x[4], -x[0], np.sin(x[2]), np.arctan2(x[0], x[1]))


def _linalg(a, b):
    chol = np.linalg.cholesky(a @ np.swapaxes(a, -1, -2))
    return (np.linalg.solve(a, b), np.linalg.slogdet(a)[0], np.linalg.slogdet(a)[1], a @ b,
            np.linalg.det(a[0]), chol, fsla.solve_triangular(chol, b, lower=True),
            fsla.solve_triangular(chol, b, lower=True, trans=1),
            np.linalg.eigh(a @ np.swapaxes(a, -1, -2))[1] ** 2,
            np.linalg.svd(b, full_matrices=False)[0],
            np.linalg.svd(np.swapaxes(b, -1, -2), full_matrices=False)[2],
            np.linalg.qr(b)[0], np.linalg.pinv(np.swapaxes(b, -1, -2)),
            triangular_matmul(chol, b, True, True), triangular_matmul(a, b, False, False))


def _scanned(x, xs):
    """A loop: its gradient holds LOOP instructions nested in LOOP bodies (the
    checkpointed form: short loops' states would be stored by one loop)."""
    c, ys = fa.scan(lambda c, x: (np.sin(c) * x + c, np.sum(c * c)), x, xs, checkpoint=2)
    return np.sum(c) + np.sum(ys)


def region_programs():
    """Lowered programs, with and without fusion, that between them use every opcode:
    LAPACK and BLAS (solve, slogdet, cholesky, triangular solves, eigh, svd, pinv, qr) in both
    dtypes, copies, gathers, scatters, scalar code."""
    a, b = well_conditioned((2, 4, 4), np.float64), rand((2, 4, 3))
    tapes = [fa.make_tape(_linalg)(a, b),
             fa.make_tape(_linalg)(a.astype(np.float32), b.astype(np.float32)),
             fa.make_tape(_many_opcodes)(rand((6,)), rand((3, 3)), rand((4,))),
             fa.make_tape(_scalar_opcodes)(rand((5,))),
             fa.make_tape(fa.grad(_scanned))(rand((3,)), rand((5, 3))),
             fa.make_tape(_row_opcodes)(rand((3, 3)), np.array([2.0, -3.0, 0.0, 2.0]),
                                        rand((4, 3)))]
    g = fa.compile(rosenbrock_loop, backend="numpy", reroll=False)
    g(rand((6,)))
    tapes.append(g.tape)
    programs = [lower(t, fuse=fuse) for t in tapes for fuse in (False, True)]
    # opcodes the lowering does not emit today, by hand: D[1] = D[0] ** 2
    from fastad.backends.lower import OP
    f64 = np.dtype(np.float64)
    programs.append(type(programs[0])(np.array([OP["SQUARE_S"], 1, 0, OP["HALT"]], np.int32),
                                      np.zeros(0, np.int64), np.zeros(0, np.int64), b"", 64,
                                      [(0, f64, ())], [(8, f64, ())]))
    return programs


@pytest.fixture(scope="module")
def programs_with_regions():
    return region_programs()


def test_the_validator_knows_the_region_of_every_arena_operand(programs_with_regions):
    """Drift test: for every opcode, the validator records a region (with a role) for
    exactly the operands opcodes.h names as arena offsets; FUSED, one per slot."""
    from fastad.backends import _vm
    from fastad.backends.lower import TABLES
    kinds = {name: k for name, _n, k, _c in TABLES["OPCODES"]}
    seen = set()
    for program in programs_with_regions:
        for pc, name, words in program.instructions():
            seen.add(name)
            regions = _vm.regions(program, pc)
            assert all(role and set(role) <= set("rws") for *_r, role in regions)
            if name == "FUSED":
                nslots = program.meta[words[1] + 1]
                assert sorted(r[0] for r in regions) == sorted(-1 - s for s in range(nslots))
                continue
            expected = [k + 1 for k, kind in enumerate(kinds[name]) if kind in ARENA_LETTERS]
            assert sorted(r[0] for r in regions) == expected, name
            if name in ("SOLVE_B", "SLOGDET_B", "EIGH_B", "SVD_B", "PINV_B"):  # written: output,
                # workspaces
                assert [r[4] for r in regions if r[0] in (expected[0], *expected[-2:])] == ["w"] * 3
    assert seen == set(kinds), f"no test program uses {sorted(set(kinds) - seen)}"


def _moved(program, pc, region, target):
    """program with the operand of ``region`` (of the instruction at pc) moved so that
    the region starts at byte ``target``."""
    operand, lo, _nbytes, itemsize, _role = region
    code, meta = program.code.copy(), program.meta.copy()
    step = (target - lo) // itemsize
    if operand > 0:
        code[pc + operand] += step
    else:  # slot s of a FUSED descriptor: (kind, offset) pairs after 3 words
        meta[code[pc + 2] + 3 + 2 * (-1 - operand) + 1] += step
    return altered(program, code=code, meta=meta)


def _overlap_cases(program, pc, regions, fraction):
    """(region moved, target byte, exact alias allowed) for each ordered pair of
    regions of which one is written: the first moved to overlap the second, starting
    ``fraction`` of the way from one element before the second's start to its end."""
    for i, r in enumerate(regions):
        for j, q in enumerate(regions):
            if i == j or "w" not in r[4] + q[4] or not r[2] or not q[2]:
                continue
            lo, hi = q[1] - r[2] + r[3], q[1] + q[2] - 1  # starts that overlap q
            target = max(0, (lo + int(fraction * (hi - lo))) // r[3] * r[3])
            if target + r[2] <= q[1] or target >= q[1] + q[2]:
                target = q[1] // r[3] * r[3]
            exact = "s" in r[4] and "s" in q[4] and target == q[1] and r[2] == q[2]
            yield r, target, exact


def _check_overlap_rejected(program, pc, region, target, exact, args=None):
    hostile = _moved(program, pc, region, target)
    inside = target + region[2] <= program.arena_bytes
    in_output = any(off <= target < off + np.dtype(dt).itemsize * int(np.prod(shape))
                    for off, dt, shape in program.outputs if off >= program.arena_bytes)
    if exact and (inside or in_output):  # an in-place elementwise step: valid, and it runs
        # (onto an input read in place it is a write into the caller's array)
        exe = c_backend.Executable(hostile)
        if args is not None:
            exe.run(args)
        return
    with pytest.raises(TapeError, match="overlaps|reaches" if inside else "invalid program"):
        c_backend.Executable(hostile)


def test_lapack_workspace_pivots_output_and_copies_never_overlap(programs_with_regions):
    """Every ordered pair of regions of every SOLVE_B, SLOGDET_B, CHOLESKY_B, TRSOLVE_B,
    TRMM_B, EIGH_B, SVD_B, PINV_B, QR_B, MATMUL_B and copy (COPY_V, STRIDED_B, STRIDED_SET_B, STRIDED_ADD_B, GATHER_V, CAST_V)
    in the test programs, moved to overlap at the start, the middle and the end: every
    one is rejected by validation, never run."""
    from fastad.backends import _vm
    opcodes = {"SOLVE_B", "SLOGDET_B", "CHOLESKY_B", "TRSOLVE_B", "EIGH_B", "SVD_B", "PINV_B",
               "QR_B", "TRMM_B", "MATMUL_B", "COPY_V",
               "STRIDED_B", "GATHER_V", "CAST_V", "STRIDED_SET_B", "STRIDED_ADD_B"}
    tried, seen = 0, set()
    for program in programs_with_regions:
        for pc, name, _words in program.instructions():
            if name not in opcodes:
                continue
            seen.add(name)
            regions = _vm.regions(program, pc)
            for fraction in (0.0, 0.5, 1.0):
                for region, target, exact in _overlap_cases(program, pc, regions, fraction):
                    _check_overlap_rejected(program, pc, region, target, exact)
                    tried += 1
    assert seen == opcodes and tried > 200


@EXAMPLES
@given(st.data())
def test_overlapping_regions_are_rejected_in_every_opcode(programs_with_regions, data):
    """Any instruction of the test programs, any two of its regions one of which is
    written, moved to overlap anywhere: rejected, unless both are elementwise operands
    made to coincide exactly (in place), which then runs."""
    from fastad.backends import _vm
    program = data.draw(st.sampled_from(programs_with_regions), label="program")
    instrs = [(pc, name) for pc, name, _w in program.instructions()
              if len(_vm.regions(program, pc)) >= 2]
    pc, name = data.draw(st.sampled_from(instrs), label="instruction")
    regions = _vm.regions(program, pc)
    cases = list(_overlap_cases(program, pc, regions,
                                data.draw(st.floats(0, 1), label="where")))
    if not cases:
        return
    region, target, exact = data.draw(st.sampled_from(cases), label="case")
    _check_overlap_rejected(program, pc, region, target, exact)


def test_overlapping_input_ports_are_rejected():
    """Inputs are copied into the arena one by one (fastad_copy, batch copies):
    a program whose inputs share bytes is refused."""
    program = lower(fa.make_tape(lambda x, y: x * y)(rand((8,)), rand((8,))))
    (x_at, dt, shape), (y_at, *_rest) = program.inputs
    hostile = type(program)(program.code, program.meta, program.index, program.const_image,
                            program.arena_bytes, [(x_at, dt, shape), (x_at + 8, dt, shape)],
                            program.outputs)
    with pytest.raises(TapeError, match="overlaps"):
        c_backend.Executable(hostile)


# -- Ctrl-C during a long run ----------------------------------------------------------------
def _repeated(program, times):
    """program with its instructions (all but HALT) run ``times`` times over: the
    same results, ``times`` times the work (a long call traced in no time)."""
    code = np.concatenate([program.code[:-1]] * times + [program.code[-1:]])
    return altered(program, code=code)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
@pytest.mark.parametrize("fuse", [False, True], ids=["between-instructions", "fused-blocks"])
def test_ctrl_c_stops_a_long_run_and_the_function_still_works(fuse):
    """SIGINT 0.2 s into a call that would take over a second (timed beforehand):
    KeyboardInterrupt well before it would have finished (polled between
    instructions, or between blocks of FUSED runs split over the pool's threads),
    and the same executable then gives correct results."""
    x = rand((1 << 18,))
    program = lower(fa.make_tape(lambda x: np.sin(x) * np.cos(x) + x)(x), fuse=fuse)
    want = c_backend.Executable(program).run([x])[0]
    short = c_backend.Executable(_repeated(program, 20))
    start = time.perf_counter()
    short.run([x])
    per_repeat = (time.perf_counter() - start) / 20
    repeats = max(40, int(1.2 / per_repeat))  # about 1.2 s uninterrupted
    exe = c_backend.Executable(_repeated(program, repeats))
    elapsed = seconds_until_interrupted(lambda: exe.run([x]))
    assert 0.2 <= elapsed < 0.6 * per_repeat * repeats
    np.testing.assert_array_equal(exe.run_args((x,), 0), want)


def test_runs_off_the_main_thread_do_not_poll_and_still_work():
    """Only the main thread polls for signals; a run on another thread is unaffected."""
    x = rand((1 << 16,))
    program = lower(fa.make_tape(lambda x: np.sin(x) * np.cos(x) + x)(x))
    exe = c_backend.Executable(_repeated(program, 50))
    want = c_backend.Executable(program).run([x])[0]
    got = []
    worker = threading.Thread(target=lambda: got.append(exe.run([x])[0]))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(got[0], want)


# -- inputs read in place, outputs written in place ------------------------------------------
def _in_place_cases():
    """(f, argument shapes): programs that read their array inputs with every
    kind of opcode the VM maps onto bound inputs, and some that cannot bind
    one (an element read by a scalar opcode, an input returned)."""
    return [
        (lambda x, M: np.sum(np.sin(M @ x)) + M.T @ x[:3], [(5,), (3, 5)]),
        (lambda x, M: (M * x).sum(axis=0) - np.cumsum(x), [(5,), (3, 5)]),
        (lambda x, M: np.tanh(M[:, ::2]) @ x[1::2], [(4,), (3, 8)]),
        (lambda x, M: np.where(x > 0.0, x, -x) * M[1], [(6,), (2, 6)]),
        (lambda x, M: x[0] * x[1] + M, [(4,), (2, 2)]),
        (lambda x, M: (x, M.T @ M), [(3,), (4, 3)]),
        (lambda x, M: np.linalg.solve(M @ M.T + 4.0 * np.eye(3), x[:3]), [(3,), (3, 3)]),
        (lambda x, M: x[np.array([2, 0, 2])] + M.reshape(-1)[:3] ** 2, [(3,), (1, 3)]),
    ]


def _layout(a, kind, rng):
    """a as the caller might pass it: contiguous, strided, Fortran order,
    misaligned (not on an 8-byte boundary), or read-only; equal values."""
    if kind == "strided":
        big = np.empty((2,) + a.shape, a.dtype)
        big[0] = a
        return big[0] if a.ndim == 0 else np.stack([a, a], axis=-1)[..., 0]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "misaligned":
        raw = bytearray(a.nbytes + 8)
        out = np.frombuffer(raw, dtype=a.dtype, count=a.size,
                            offset=1 + int(rng.integers(3))).reshape(a.shape)
        out[...] = a
        return out
    if kind == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    return a.copy()


LAYOUTS = ["contiguous", "strided", "fortran", "misaligned", "readonly"]


@EXAMPLES
@given(case=st.integers(0, len(_in_place_cases()) - 1), dtype=st.sampled_from(DTYPES),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=2, max_size=2),
       grad=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_inputs_in_any_layout_are_read_in_place_or_copied(case, dtype, layouts, grad, seed):
    """Every layout of every argument gives the reference interpreter's
    results, whether the program reads it in place or copies it; the
    caller's arrays are never written; results do not share memory with the
    arguments or with each other, and the next call does not change them."""
    f, shapes = _in_place_cases()[case]
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1.0, 1.0, s).astype(dtype) for s in shapes]
    if grad:
        g = fa.compile(lambda x, M: fnp.sum(fnp.sin(fa.numpy.hstack(
            [fnp.ravel(o) for o in (f(x, M) if isinstance(f(x, M), tuple) else (f(x, M),))]))),
            argnums=(0, 1), backend="numpy")
        g(*args)
        tape = g.tape
    else:
        tape = fa.make_tape(f)(*args)
    exe = c_backend.build(tape)
    want = reference.evaluate(tape, args)
    passed = [_layout(a, kind, rng) for a, kind in zip(args, layouts)]
    before = [p.copy() for p in passed]
    got = exe.run(passed)
    assert_same(got, want, args)
    for p, b in zip(passed, before):
        np.testing.assert_array_equal(p, b)
    fast = exe.run_args(tuple(passed), -1)
    if all(p.flags.c_contiguous for p in passed):  # else the caller converts first
        assert_same([np.asarray(r) for r in fast], want, args)
    # results own their memory: a second call with other values leaves them be
    kept = [np.array(r, copy=True) for r in got]
    exe.run([-a for a in args])
    for r, k in zip(got, kept):
        np.testing.assert_array_equal(r, k)
        for p in passed:
            assert not np.shares_memory(r, p)
    for i, r in enumerate(got):
        for s in got[i + 1:]:
            assert not (r.size and s.size and np.shares_memory(r, s))


@EXAMPLES
@given(dtype=st.sampled_from(DTYPES), n=st.integers(2, 300), seed=st.integers(0, 2 ** 16))
def test_the_same_array_twice_and_arrays_mutated_between_calls(dtype, n, seed):
    """One array passed as both arguments, then mutated in place between
    calls: each call sees the values at its time, as the reference does."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, n).astype(dtype)
    f = lambda a, b: (np.sin(a) * b[::-1], np.sum(a * b))  # noqa: E731
    tape = fa.make_tape(f)(x, x)
    exe = c_backend.build(tape)
    for _ in range(3):
        assert_same(exe.run([x, x]), reference.evaluate(tape, [x.copy(), x.copy()]), [x])
        assert_same([np.asarray(r) for r in exe.run_args((x, x), -1)],
                    reference.evaluate(tape, [x, x]), [x])
        x *= -1.5
        x += 0.25


def test_array_inputs_and_outputs_are_bound_and_scalar_uses_are_not():
    """The lowering binds array inputs and results that are whole buffers; an
    input an element of which feeds a scalar opcode is copied instead."""
    x, M = rand((50,)), rand((20, 50), seed=1)
    program = lower(fa.make_tape(lambda x, M: (M @ x, np.sin(x)))(x, M))
    assert all(p.offset >= program.arena_bytes for p in program.inputs)
    assert all(p.offset >= program.arena_bytes for p in program.outputs)
    scalar = lower(fa.make_tape(lambda x, M: x[0] * x[1] + M)(x, M))
    assert scalar.inputs[0].offset < scalar.arena_bytes <= scalar.inputs[1].offset
    unbound = lower(fa.make_tape(lambda x, M: M @ x)(x, M), bind_inputs=False)
    assert all(p.offset < unbound.arena_bytes for p in unbound.inputs + unbound.outputs)


def test_the_lowering_and_the_vm_agree_on_opcodes_that_map_bound_segments():
    from fastad.backends import _vm
    from fastad.backends.lower import MAPS_BOUND, NARGS
    assert {op for op in range(len(NARGS)) if _vm.maps_bound(op)} == set(MAPS_BOUND)


def _with(program, **changes):
    import dataclasses
    return dataclasses.replace(program, **changes)


def test_programs_misusing_bound_segments_are_rejected():
    """Hostile programs: a write into an input read in place, a scalar opcode
    or an operand anchored outside its segment reading one, segments that
    overlap or leave the declared space: each refused by validation."""
    x, M = rand((8,)), rand((4, 8), seed=1)
    program = lower(fa.make_tape(lambda x, M: np.exp(M @ x) + np.sum(x))(x, M))
    c_backend.Executable(program)  # valid as lowered
    seg = program.inputs[0].offset // 8
    for pc, name, words in program.instructions():
        kinds = TABLES_OPCODES[name]
        for k, kind in enumerate(kinds):
            if kind == "o" and name != "FUSED":  # write into the bound input x
                code = program.code.copy()
                code[pc + 1 + k] = seg
                with pytest.raises(TapeError, match="invalid program"):
                    c_backend.Executable(_with(program, code=code))
    # a scalar opcode reading a bound input
    tape = fa.make_tape(lambda a, b: a * b)(1.0, 2.0)
    scalar = lower(tape)
    code = scalar.code.copy()
    assert TABLES_OPCODES_NAME[code[0]] == "MUL_S"
    code[3] = scalar.arena_bytes // 8
    hostile = _with(scalar, code=code, bound_bytes=64,
                    inputs=[scalar.inputs[0]._replace(offset=scalar.arena_bytes),
                            scalar.inputs[1]])
    with pytest.raises(TapeError, match="invalid program"):
        c_backend.Executable(hostile)
    # segments past the declared bytes, overlapping, or misaligned
    for bound_bytes, shift in ((program.bound_bytes - 64, 0), (program.bound_bytes, 8)):
        inputs = [program.inputs[0]._replace(offset=program.inputs[0].offset + shift),
                  *program.inputs[1:]]
        with pytest.raises(TapeError, match="invalid program"):
            c_backend.Executable(_with(program, inputs=inputs, bound_bytes=bound_bytes))
    inputs = [program.inputs[0], program.inputs[1]._replace(offset=program.inputs[0].offset)]
    with pytest.raises(TapeError, match="invalid program"):
        c_backend.Executable(_with(program, inputs=inputs))


def _opcode_tables():
    from fastad.backends.lower import TABLES
    return ({name: kinds for name, _n, kinds, _c in TABLES["OPCODES"]},
            [name for name, *_ in TABLES["OPCODES"]])


TABLES_OPCODES, TABLES_OPCODES_NAME = _opcode_tables()
