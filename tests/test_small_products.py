"""Small matrix products as loops (csrc/small_matmul.c, the Numba
helper of `fastad.backends.numba_products`): random shapes, transposed
operands and dtypes against the reference interpreter to rounding, the two
compiled backends against each other bit for bit (both sum each element's
products in order), and recurrences built of such products (an RNN cell and
a GRU-like cell over a batch) differentiated against central differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad import backends
from fastad.backends.numba_products import is_small
from fastad.backends.reference import evaluate
from conftest import BACKENDS
from helpers import FAST

COMPILED = [b for b in ("c", "numba") if b in BACKENDS]
SIDES = st.one_of(st.integers(1, 3), st.integers(4, 20))  # 1 (vectors) and strip tails


@st.composite
def products(draw, count):
    """``count`` products (m, k, n, ta, tb) of one dtype."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    shapes = [(draw(SIDES), draw(SIDES), draw(SIDES), draw(st.booleans()), draw(st.booleans()))
              for _ in range(count)]
    return dtype, shapes


def _program(shapes):
    """f(*operands) = the products, each operand read transposed where asked
    (the C VM's ta/tb, a ``.T`` view in the Numba code)."""
    def f(*operands):
        out = []
        for (m, k, n, ta, tb), a, b in zip(shapes, operands[::2], operands[1::2]):
            out.append((a.T if ta else a) @ (b.T if tb else b))
        return tuple(out)
    return f


def _operands(shapes, dtypes, seed):
    """Both operands of each product, in that product's dtype."""
    rng = np.random.default_rng(seed)
    ops = []
    for (m, k, n, ta, tb), dtype in zip(shapes, dtypes):
        ops.append(rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(dtype))
        ops.append(rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(dtype))
    return ops


def _build(tape, backend):
    return backends.get(backend).build(tape)


def _check(shapes, ops, want, results):
    """Each product of each result to rounding (a bound on the error of a sum
    of k products), in its dtype and shape; the two compiled backends' loops
    the same bits."""
    for i, (m, k, n, ta, tb) in enumerate(shapes):
        a, b = ops[2 * i], ops[2 * i + 1]
        eps = np.finfo(a.dtype).eps
        a64, b64 = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
        exact = a64 @ b64
        bound = 2 * k * eps * (np.abs(a64) @ np.abs(b64))
        got = [r[i] for r in results]
        for g in [want[i]] + got:
            assert g.dtype == a.dtype and g.shape == (m, n)
            assert np.all(np.abs(g.astype(np.float64) - exact) <= bound)
        if len(got) == 2 and is_small(m, k, n):  # both backends' loops: one order of sums
            assert got[0].tobytes() == got[1].tobytes()


@pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built")
@settings(FAST, max_examples=10)
@given(products(6), st.integers(0, 2**31 - 1))
def test_small_products_agree_with_the_reference_to_rounding(spec, seed):
    dtype, shapes = spec
    ops = _operands(shapes, [dtype] * len(shapes), seed)
    tape = fa.make_tape(_program(shapes))(*ops)
    _check(shapes, ops, evaluate(tape, ops), [_build(tape, "c").run(ops)])


@pytest.mark.skipif("numba" not in BACKENDS, reason="Numba is not installed")
def test_numba_small_products_are_the_vms_bits():
    """One kernel (Numba's compiles are slow) of random products in both
    dtypes: every pair of transposes, sides of 1, strip tails and longer."""
    rng = np.random.default_rng(3)
    sides = [1, 2, 3, 5, 8, 11, 17]
    shapes = [(int(rng.choice(sides)), int(rng.choice(sides)), int(rng.choice(sides)), ta, tb)
              for ta in (False, True) for tb in (False, True) for _ in range(2)]
    shapes += [(16, 16, 1, False, False), (16, 1, 16, False, True), (1, 16, 16, True, False)]
    dtypes = [np.float64, np.float32] * 4 + [np.float64, np.float32, np.float32]
    ops = _operands(shapes, dtypes, 5)
    tape = fa.make_tape(_program(shapes))(*ops)
    _check(shapes, ops, evaluate(tape, ops), [_build(tape, b).run(ops) for b in COMPILED])


def _cell(kind):
    """One step of an RNN (tanh) or a GRU-like cell (gates from sigmoid) over a
    batch of sequences: h is (batch, hidden), x (batch, input)."""
    def sigmoid(z):
        return 1.0 / (1.0 + fa.numpy.exp(-z))

    def rnn(params, h, x):
        W, U, b = params
        return fa.numpy.tanh(h @ W.T + x @ U + b)

    def gru(params, h, x):
        Wz, Uz, Wh, Uh = params
        z = sigmoid(h @ Wz + x @ Uz)
        cand = fa.numpy.tanh((z * h) @ Wh + x @ Uh)
        return (1.0 - z) * h + z * cand
    return rnn if kind == "rnn" else gru


def _params(kind, hidden, inputs, rng):
    if kind == "rnn":
        return (rng.normal(0, 0.4, (hidden, hidden)), rng.normal(0, 0.4, (inputs, hidden)),
                rng.normal(0, 0.1, hidden))
    return tuple(rng.normal(0, 0.4, shape) for shape in
                 [(hidden, hidden), (inputs, hidden), (hidden, hidden), (inputs, hidden)])


def _loss(kind, steps):
    cell = _cell(kind)

    def loss(params, xs, readout):
        def step(h, x):
            h = cell(params, h, x)
            return h, fa.numpy.sum((h @ readout) ** 2)
        h0 = fa.numpy.zeros((xs.shape[1], readout.shape[0]))
        _, per_step = fa.scan(step, h0, xs)
        return fa.numpy.sum(per_step)
    return loss


@settings(FAST, max_examples=4)
@given(st.sampled_from(["rnn", "gru"]), st.integers(2, 12), st.integers(1, 5),
       st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_recurrences_of_small_products_differentiate(kind, hidden, inputs, batch, seed):
    rng = np.random.default_rng(seed)
    steps = 9
    params = _params(kind, hidden, inputs, rng)
    xs = rng.normal(size=(steps, batch, inputs))
    readout = rng.normal(0, 0.5, (hidden, 2))
    loss = _loss(kind, steps)
    want = fa.grad(loss)(params, xs, readout)  # eager: the reference interpreter's rules
    direction = [rng.standard_normal(p.shape) for p in params]
    eps = 1e-6
    plus = tuple(p + eps * d for p, d in zip(params, direction))
    minus = tuple(p - eps * d for p, d in zip(params, direction))
    fd = (loss(plus, xs, readout) - loss(minus, xs, readout)) / (2 * eps)
    assert sum(np.sum(w * d) for w, d in zip(want, direction)) == pytest.approx(
        fd, rel=1e-5, abs=1e-8)
    # the VM only: Numba's compile of a gradient's nested loops takes tens of
    # seconds a shape (tests/test_numba_loops.py runs products in its bodies)
    if "c" in BACKENDS:
        got = fa.compile(loss, backend="c")(params, xs, readout)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C VM is not built")
@settings(FAST, max_examples=10)
@given(products(1), st.sampled_from(["dies", "lives", "input", "operand", "carry"]),
       st.integers(0, 2**31 - 1))
def test_a_product_added_to_a_value_is_one_accumulating_matmul(spec, where, seed):
    """t + a @ b, t an input of its tape and the product read only by the
    addition, runs as one MATMUL adding into t's place (t dying there: a
    scan's carried weight gradient) or into a copy (a caller's array, or an
    operand of the product); t computed (a temporary, dying or not) keeps
    the addition, which may join an elementwise run.  The reference's values
    to rounding, and the bits of the program whose product is also an
    output (not fused)."""
    from fastad.backends.lower import lower
    from fastad.backends.vm_header import OP
    from fastad.backends.vm_program import _walk
    from fastad.transforms.optimize import optimize
    dtype, [(m, k, n, ta, tb)] = spec
    if where == "operand":  # t is the product's left operand: square
        k = n = m
        ta = False
    a, b = _operands([(m, k, n, ta, tb)], [dtype], seed)
    g = np.random.default_rng(seed).uniform(-1, 1, (m, n)).astype(dtype)

    def prod(g, a, b):
        return (g if where == "operand" else a.T if ta else a) @ (b.T if tb else b)

    def fused(g, a, b):
        if where == "carry":
            return fa.scan(lambda c, x: (c + prod(g, a, b), x), g * dtype(2),
                           np.arange(3.0, dtype=dtype))[0]
        if where in ("input", "operand"):
            return g + prod(g, a, b)
        t = g * dtype(2)
        return (t + prod(g, a, b)) * t if where == "lives" else t + prod(g, a, b)

    args = [g, a, b]
    got = fa.jit(fused, backend="c")(*args)
    unfused = fa.jit(lambda *args: (fused(*args), prod(*args)), backend="c")(*args)[0]
    want = fused(*args)
    eps = np.finfo(dtype).eps
    assert got.dtype == want.dtype and got.shape == want.shape
    if is_small(m, k, n):
        assert got.tobytes() == unfused.tobytes()
    np.testing.assert_allclose(got, want, rtol=20 * k * eps, atol=20 * k * eps)
    code = np.asarray(lower(optimize(fa.make_tape(fused)(*args))).code)
    ops = [int(code[pc]) for pc in _walk(code)]
    if where in ("input", "operand", "carry") and is_small(m, k, n):
        assert OP["BINARY_VV"] not in ops  # the addition is the MATMUL's
