"""A Numba loop's arrays made once, before it (`numba_loop_instr.made_once`):
recurrent cells of small products (an RNN, a GRU, an LSTM with two carries)
of random sizes, batched or not, in float32 and float64, their values and
gradients on Numba against the reference interpreter to rounding and against
central differences; and the kernel's steps making no array."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize
from conftest import BACKENDS

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
# each example compiles a gradient's nested loops cold (seconds each): a few,
# and no shrinking (minutes of compiles)
FEW = settings(max_examples=3, deadline=None,
               phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _sigmoid(z):
    return 1.0 / (1.0 + fa.numpy.exp(-z))


def _cell(kind, params, carry, x):
    """One step; h and x are (hidden,) and (inputs,), or (batch, ...) rows."""
    np_ = fa.numpy
    if kind == "rnn":
        W, U = params
        return (np_.tanh(carry[0] @ W + x @ U),)
    if kind == "gru":
        Wz, Uz, Wh, Uh = params
        z = _sigmoid(carry[0] @ Wz + x @ Uz)
        return ((1.0 - z) * carry[0] + z * np_.tanh((z * carry[0]) @ Wh + x @ Uh),)
    Wi, Wf, Wc, Ui, Uf, Uc = params
    h, c = carry
    c = _sigmoid(h @ Wf + x @ Uf) * c + _sigmoid(h @ Wi + x @ Ui) * np_.tanh(h @ Wc + x @ Uc)
    return np_.tanh(c) * _sigmoid(h @ Wi), c


def _loss(kind):
    def loss(params, xs, readout):
        def step(carry, x):
            carry = _cell(kind, params, carry, x)
            return carry, fa.numpy.sum((carry[0] @ readout) ** 2)
        zero = fa.numpy.zeros(xs.shape[1:-1] + readout.shape[:1], xs.dtype)
        _, per_step = fa.scan(step, (zero,) * (2 if kind == "lstm" else 1), xs)
        return fa.numpy.sum(per_step)
    return loss


# the order `_cell` takes its weights in: h for (hidden, hidden), x for (inputs, hidden)
WEIGHTS = {"rnn": "hx", "gru": "hxhx", "lstm": "hhhxxx"}


def _problem(kind, hidden, inputs, batch, dtype, seed):
    rng = np.random.default_rng(seed)
    rows = {"h": hidden, "x": inputs}
    params = tuple(rng.normal(0, 0.5 / np.sqrt(rows[w]), (rows[w], hidden)).astype(dtype)
                   for w in WEIGHTS[kind])
    xs = rng.normal(size=(7,) + ((batch,) if batch else ()) + (inputs,)).astype(dtype)
    return params, xs, rng.normal(0, 0.5, (hidden, 2)).astype(dtype), rng


def _kernel(tape, args):
    from fastad.backends import numba_backend
    exe = numba_backend.build(optimize(tape))
    return exe.run(list(args)), exe.source


@FEW
@given(st.sampled_from(["rnn", "gru", "lstm"]), st.integers(2, 12), st.integers(1, 5),
       st.integers(0, 3), st.sampled_from([np.float64, np.float32]), st.integers(0, 2**31 - 1))
def test_cells_of_small_products_against_the_reference(kind, hidden, inputs, batch, dtype, seed):
    params, xs, readout, rng = _problem(kind, hidden, inputs, batch, dtype, seed)
    loss = _loss(kind)
    flat = lambda *a: loss(a[:-2], a[-2], a[-1])  # noqa: E731
    args = [*params, xs, readout]
    tape = fa.make_tape(fa.value_and_grad(flat, argnums=tuple(range(len(params)))))(*args)
    got, source = _kernel(tape, args)
    want = evaluate(optimize(tape), args)
    rtol = 1e-12 if dtype == np.float64 else 2e-4
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.max(np.abs(w)))
    if dtype == np.float64:  # the gradient along a random direction: central differences
        d = [rng.standard_normal(p.shape) for p in params]
        eps = 1e-6
        fd = (flat(*[p + eps * v for p, v in zip(params, d)], xs, readout)
              - flat(*[p - eps * v for p, v in zip(params, d)], xs, readout)) / (2 * eps)
        along = sum(np.sum(g * v) for g, v in zip(got[1:], d))
        np.testing.assert_allclose(along, fd, rtol=1e-5, atol=1e-8)


STEP = re.compile(r"\s*for b\w*_t in range")
MAKES = re.compile(r"np\.(empty|full|zeros)\(|\.reshape\(|\.copy\(\)|\.T\b")


def _made_in_steps(source):
    """The lines of innermost step loops (``for bN_t``, holding no other) that
    make an array or a view, each step."""
    lines, found = source.splitlines(), []
    for k, line in enumerate(lines):
        if not STEP.match(line):
            continue
        indent, body = len(line) - len(line.lstrip()), []
        for inner in lines[k + 1:]:
            if len(inner) - len(inner.lstrip()) <= indent:
                break
            body.append(inner.strip())
        if not any(STEP.match(" " + b) for b in body):
            found += [b for b in body if MAKES.search(b)]
    return found


def test_an_rnns_steps_make_no_arrays():
    """The RNN of benchmarks/recurrences.py, batched: the value and gradient
    kernels' step loops (forward, storing its states, and VJP) make no array
    and no view (each cost an allocation or two atomic reference counts), and the results
    are the reference interpreter's to rounding."""
    params, xs, readout, _ = _problem("rnn", 16, 4, 2, np.float64, 1)
    loss = _loss("rnn")
    flat = lambda *a: loss(a[:-2], a[-2], a[-1])  # noqa: E731
    args = [*params, xs, readout]
    tape = fa.make_tape(fa.value_and_grad(flat, argnums=(0, 1)))(*args)
    got, source = _kernel(tape, args)
    assert source.count("_t in range(") >= 2 and _made_in_steps(source) == []
    for g, w in zip(got, evaluate(optimize(tape), args)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_carries_passed_on_keep_their_own_arrays():
    """Array carries that swap or pass through (an output that is an input's
    buffer) are made per step, not in buffers the copies would overwrite; a
    float32 carry beside them: bit for bit the eager values."""
    def f(a, b, xs):
        def step(c, x):
            return (c[1], c[0] * x, c[2] + c[0], np.float32(0.5) * c[3] + c[3]), c[0] - c[1]
        return fa.scan(step, (a, b, a * 2.0, a.astype(np.float32)), xs)
    rng = np.random.default_rng(4)
    a, b, xs = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0.5, 1.5, (8, 3))
    got = fa.jit(f, backend="numba")(a, b, xs)
    want = f(a, b, xs)
    leaves = lambda t: [x for y in t for x in leaves(y)] if isinstance(t, tuple) else [t]  # noqa: E731
    for x, y in zip(leaves(got), leaves(want)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)
