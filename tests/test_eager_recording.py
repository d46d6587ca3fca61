"""How eager gradients record, checked on generated programs.

Products (``dot``, ``matmul``, ``@``) of generated shapes, 0-d to 3-d,
against NumPy's values and central finite differences, eagerly and compiled;
an eager gradient's plain sweep (rules on plain arrays, no recording)
against the recorded sweep of the same tape; the front end's shape
functions on plain arrays against NumPy's; and ``x[i]``'s short path against
the general indexing path's tape.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import BACKENDS
from helpers import FAST, check_function
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

COMPILED = "c" if "c" in BACKENDS else "numpy"

PRODUCTS = {"dot": np.dot, "matmul": np.matmul, "at": lambda a, b: a @ b}


@st.composite
def product_shapes(draw, name: str):
    """Shapes NumPy's ``name`` accepts: any two for dot (a 0-d operand is a
    scaling), at least 1-d for matmul, with broadcast batch axes."""
    k, m, n = (draw(st.integers(1, 4)) for _ in range(3))
    nd_a = draw(st.integers(0 if name == "dot" else 1, 3))
    nd_b = draw(st.integers(0 if name == "dot" else 1, 3))
    if nd_a == 0 or nd_b == 0:
        return (), draw(st.lists(st.integers(1, 3), max_size=3).map(tuple))
    if name == "dot":  # a's last axis with b's second to last (its only one if 1-d)
        a = tuple(draw(st.integers(1, 3)) for _ in range(nd_a - 1)) + (k,)
        b = (k,) if nd_b == 1 else tuple(draw(st.integers(1, 3)) for _ in range(nd_b - 2)) + (k, n)
        return a, b
    batch = tuple(draw(st.integers(1, 3)) for _ in range(max(nd_a, nd_b) - 2))
    a = (k,) if nd_a == 1 else _batch(draw, batch, nd_a - 2) + (m, k)
    b = (k,) if nd_b == 1 else _batch(draw, batch, nd_b - 2) + (k, n)
    return a, b


def _batch(draw, batch: tuple, nd: int) -> tuple:
    """The last ``nd`` batch axes, some of them 1 (broadcast)."""
    mine = batch[len(batch) - nd:] if nd else ()
    return tuple(1 if draw(st.booleans()) else d for d in mine)


def _loss(product):
    def loss(a, b):
        return np.sum(np.sin(product(a, b)) * 1.5)
    return loss


def _operands(seed: int, shapes: tuple) -> tuple:
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s) if s else np.float64(rng.standard_normal())
                 for s in shapes)


@pytest.mark.parametrize("name", sorted(PRODUCTS))
@FAST
@given(data=st.data())
def test_products_of_generated_shapes(name, data):
    product = PRODUCTS[name]
    shapes = data.draw(product_shapes(name))
    a, b = _operands(data.draw(st.integers(0, 2**16)), shapes)
    # values against NumPy, derivatives against central finite differences
    tape = check_function(product, (a, b), order=1)
    if np.ndim(a) and np.ndim(b):  # one matmul; a reshape for each vector in, one out
        counts = tape.stats()["by_primitive"]
        squeezed = (np.ndim(a) == 1) + (np.ndim(b) == 1)
        assert counts.get("matmul", 0) + counts.get("mul", 0) >= 1
        if name != "dot" or np.ndim(b) <= 2:
            assert counts.get("matmul") == 1
            assert counts.get("reshape", 0) == squeezed + (squeezed > 0)
    loss = _loss(product)
    eager = fa.grad(loss, argnums=(0, 1))(a, b)
    compiled = fa.compile(loss, argnums=(0, 1), backend=COMPILED)(a, b)
    for got, want in zip(compiled, eager):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _recorded_sweep(f, args):
    """The gradient from a recorded sweep (the rules applied to traced values,
    as under an enclosing transformation), evaluated on ``args``."""
    _, pullback = fa.vjp(f, *args)
    return pullback(np.float64(1.0))


PROGRAMS = {
    "dot_vector": lambda w, X: np.sum(np.tanh(np.dot(X, w)) * 0.5 + 1.0),
    "matmul_keepdims": lambda w, X: np.sum(np.exp(X @ w.T - np.max(X @ w.T, axis=1,
                                                                     keepdims=True))),
    "broadcast_sums": lambda w, X: np.sum((X[:, None, :] - w[None, :, :]) ** 2, axis=(0, 2))
    @ np.ones(w.shape[0]),
    "transposes": lambda w, X: np.sum(np.swapaxes(X.reshape(2, -1, X.shape[1]), 0, 1)
                                      * w[:1]),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@FAST
@given(seed=st.integers(0, 2**16), rows=st.integers(2, 5), cols=st.integers(1, 4))
def test_plain_sweep_agrees_with_the_recorded_sweep(name, seed, rows, cols):
    rng = np.random.default_rng(seed)
    w, X = rng.standard_normal((3, cols)), rng.standard_normal((2 * rows, cols))
    if name == "dot_vector":
        w = w[0]
    f = PROGRAMS[name]
    plain = fa.grad(f, argnums=(0, 1))(w, X)
    recorded = _recorded_sweep(f, (w, X))
    # (not bit for bit: NumPy's sums follow the memory layout, and a recorded
    # broadcast is a copy where the plain sweep's is a view)
    for got, want in zip(plain, recorded):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_shape_functions_of_plain_arrays_are_numpys(shape, data):
    x = np.random.default_rng(0).standard_normal(shape)
    nd = len(shape)
    perm = tuple(data.draw(st.permutations(range(nd))))
    i, j = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    cases = [(fnp.reshape(x, (-1,)), x.reshape(-1)),
             (fnp.reshape(x, shape[::-1]), x.reshape(shape[::-1])),
             (fnp.transpose(x, perm), np.transpose(x, perm)),
             (fnp.transpose(x), np.transpose(x)),
             (fnp.swapaxes(x, i, j), np.swapaxes(x, i, j)),
             (fnp.broadcast_to(x, (2,) + shape), np.broadcast_to(x, (2,) + shape))]
    target = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    summed = x.sum(axis=tuple(a for a, d in enumerate(target) if d == 1 and shape[a] != 1),
                   keepdims=True)
    cases.append((fnp.unbroadcast(x, target), summed.reshape(target)))
    cases.append((fnp.unbroadcast(np.broadcast_to(x, (3,) + shape), shape), 3 * x))
    for got, want in cases:
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        fnp.reshape(x, (x.size + 1,))


@FAST
@given(n=st.integers(1, 6), data=st.data())
def test_vector_element_reads_record_what_the_general_path_records(n, data):
    i = data.draw(st.integers(-n, n - 1))
    x = np.random.default_rng(n).standard_normal(n)
    short = fa.make_tape(lambda v: np.sin(v[i]) * v[i])(x)
    general = fa.make_tape(lambda v: np.sin(v[(i,)]) * v[(i,)])(x)
    assert [(s.prim, s.ins, s.params) for s in short.instrs] == \
        [(s.prim, s.ins, s.params) for s in general.instrs]
    assert short.consts.keys() == general.consts.keys()
    for slot, value in short.consts.items():
        assert np.array_equal(value, general.consts[slot])
    got = fa.grad(lambda v: np.sin(v[i]) * v[i])(x)
    fa.check_grads(lambda v: np.sin(v[i]) * v[i], (x,))
    assert np.count_nonzero(got) <= 1
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            fa.grad(lambda v: v[bad])(x)


@FAST
@given(n=st.integers(1, 5), batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float64, np.float32]))
def test_slogdet_factorizes_once_and_records_its_two_primitives(n, batch, seed, dtype):
    """``slogdet`` of a traced matrix computes one factorization (NumPy's
    ``slogdet``, whose values both primitives take) and records what it did
    before: ``detsign`` and ``logabsdet`` of the same operand (``det`` too,
    beyond the rows it is a cofactor expansion)."""
    from fastad.numpy._linalg import _DET_EXPANDED
    slogdets = 1 + (n > _DET_EXPANDED)
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(batch + (n, n)) + 3 * np.eye(n)).astype(dtype)

    def f(m):
        sign, logdet = np.linalg.slogdet(m)
        return np.sum(sign * logdet) + np.sum(np.linalg.det(m))

    tape = fa.make_tape(f)(a)
    prims = [ins.prim for ins in tape.instrs]
    assert prims.count("detsign") == prims.count("logabsdet") == slogdets
    for k, ins in enumerate(tape.instrs):
        if ins.prim == "detsign":
            assert tape.instrs[k + 1].prim == "logabsdet" and tape.instrs[k + 1].ins == ins.ins
    calls = []
    numpy_slogdet = np.linalg.slogdet
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np.linalg, "slogdet", lambda m: (type(m) is np.ndarray and calls.append(1))
                      or numpy_slogdet(m))  # (f's own call passes the traced value)
        value, grad = fa.value_and_grad(f)(a)
    assert len(calls) == slogdets  # one per traced slogdet (a large det is written with it)
    sign, logdet = np.linalg.slogdet(a)
    if slogdets == 2:
        assert value == np.sum(sign * logdet) + np.sum(sign * np.exp(logdet))
    else:
        np.testing.assert_allclose(value, np.sum(sign * logdet) + np.sum(np.linalg.det(a)),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12)
    # the plain sweep inverts with NumPy's inv, the recorded one solves against
    # the identity: the same LAPACK call on the same numbers
    np.testing.assert_array_equal(grad, _recorded_sweep(f, (a,))[0])
    fa.check_grads(f, (a.astype(np.float64),))
    compiled = fa.compile(f, backend=COMPILED)(a)
    np.testing.assert_allclose(compiled, grad, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@FAST
@given(n=st.integers(1, 5), batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
       vector=st.booleans(), seed=st.integers(0, 2**16))
def test_solve_gives_both_cotangents_from_one_solve(n, batch, vector, seed):
    """``solve(a, b)`` with both operands traced: its joint rule solves with
    a's transpose once, and gives the cotangents the two rules give apart,
    bit for bit; against finite differences and the compiled gradient."""
    from fastad.core.registry import registry
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch + (n, n)) + 3 * np.eye(n)
    b = rng.standard_normal((n,) if vector else batch + (n, 2))

    def f(a, b):
        return np.sum(np.sin(np.linalg.solve(a, b)))

    tape = fa.make_tape(lambda a, b: fa.grad(f, argnums=(0, 1))(a, b)[0])(a, b)
    assert sum(ins.prim == "solve" for ins in tape.instrs) == 2  # the forward's and one
    joint = fa.grad(f, argnums=(0, 1))(a, b)
    solve = registry["solve"]
    rule, solve.joint_vjp = solve.joint_vjp, None
    try:
        apart = fa.grad(f, argnums=(0, 1))(a, b)
    finally:
        solve.joint_vjp = rule
    for got, want in zip(joint, apart):
        np.testing.assert_array_equal(got, want)
    fa.check_grads(f, (a, b))
    compiled = fa.compile(f, argnums=(0, 1), backend=COMPILED)(a, b)
    for got, want in zip(compiled, joint):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
