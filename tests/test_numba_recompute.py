"""Cheap values of a Numba kernel's inputs computed again in the loop that
reads them, rather than stored by the loop that made them
(`backends/numba_recompute.py`).

Generated programs of elementwise chains over two inputs, broken into
several loops by shifted slices, with the deferred values read by
everything that can read them: later loops, gathers, reductions, NumPy's
vector loops, guards and outputs.  Their kernels (the function's, its
gradient's and a Hessian-vector product's) give bit for bit the results of
the kernels that store every value, and the reference interpreter's to
rounding; Broyden's seed kernel stores four arrays fewer.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.backends import numba_recompute
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")

N = 37
CHEAP = ("add", "sub", "mul", "div", "square", "neg", "max", "where", "sqrt", "scale")
OTHER = ("shift", "gather", "sum", "sin", "branch")
PERMUTATION = np.random.default_rng(5).permutation(N)


def _apply(op, u, v):
    if op == "add":
        return u + v
    if op == "sub":
        return u - v
    if op == "mul":
        return u * v
    if op == "div":
        return u / (1.5 + v * v)
    if op == "square":
        return u ** 2
    if op == "neg":
        return -u
    if op == "max":
        return np.maximum(u, v)
    if op == "where":
        return np.where(u > v, u, 2.0 * v)
    if op == "sqrt":
        return np.sqrt(1.0 + u * u)
    if op == "scale":
        return 0.5 * u + 1.0
    if op == "shift":  # a new loop: the padded array is read at other positions
        return np.concatenate([np.zeros(2), u[:-2]]) + v
    if op == "gather":
        return u[PERMUTATION]
    if op == "sum":
        return v * np.sum(u)
    if op == "sin":  # NumPy's vector loop where Numba has one
        return np.sin(u)
    if op == "branch":  # a guard reading a value
        return u if np.sum(u) > 0 else v
    raise AssertionError(op)


@st.composite
def programs(draw):
    steps = []
    for k in range(draw(st.integers(6, 16))):
        kinds = CHEAP if draw(st.integers(0, 3)) else OTHER
        steps.append((draw(st.sampled_from(kinds)), draw(st.integers(0, 2 + k)),
                      draw(st.integers(0, 2 + k))))
    return steps


def _function(prog):
    def f(x, y):
        pool = [x, y, x * y]
        for op, a, b in prog:
            pool.append(_apply(op, pool[a], pool[b]))
        return np.sum(pool[-1] * pool[-2]) + np.sum(np.sin(pool[-3]))
    return f


def _kernels(tape, args, recompute, only_loop_readers=True):
    from fastad.backends import numba_backend
    saved = numba_recompute.MAX_RECIPE, numba_recompute.ONLY_LOOP_READERS
    numba_recompute.MAX_RECIPE = saved[0] if recompute else 0
    numba_recompute.ONLY_LOOP_READERS = only_loop_readers
    try:
        exe = numba_backend.build(tape)
        return exe.run(list(args)), exe.source
    finally:
        numba_recompute.MAX_RECIPE, numba_recompute.ONLY_LOOP_READERS = saved


def _check(tape, args, only_loop_readers=True):
    tape = optimize(tape)
    got, source = _kernels(tape, args, True, only_loop_readers)
    stored, plain = _kernels(tape, args, False)
    for a, b, c in zip(got, stored, evaluate(tape, list(args))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit, NaNs too
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    return source, plain


@settings(max_examples=6, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_generated_programs_bit_for_bit_with_and_without_recomputing(prog, seed):
    rng = np.random.default_rng(seed)
    x, y, t = (rng.uniform(-1.5, 1.5, N) for _ in range(3))
    f = _function(prog)
    _check(fa.make_tape(lambda x, y: [f(x, y)])(x, y), (x, y))
    _check(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1)))(x, y), (x, y))
    hvp = fa.make_tape(lambda x, y, t: fa.jvp(lambda x: fa.grad(f)(x, y), (x,), (t,))[1])
    _check(hvp(x, y, t), (x, y, t))


@settings(max_examples=4, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_values_made_into_arrays_for_readers_outside_loops(prog, seed):
    """Every value with a recipe deferred, whatever reads it: gathers,
    scatters and NumPy's vector loops have it made into an array first
    (`materialize`), bit for bit the array the loop would have stored."""
    rng = np.random.default_rng(seed)
    x, y, t = (rng.uniform(-1.5, 1.5, N) for _ in range(3))
    f = _function(prog)
    _check(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1)))(x, y), (x, y), False)
    hvp = fa.make_tape(lambda x, y, t: fa.jvp(lambda x: fa.grad(f)(x, y), (x,), (t,))[1])
    _check(hvp(x, y, t), (x, y, t), False)


def test_values_read_by_later_loops_at_the_same_index_are_not_stored():
    """Broyden's seed kernel (the split form's per-seed call): 1 + 2x, the
    band term's coefficients and the seed times a residual were stored by
    the first loop for the next ones; now they are computed there again."""
    n, lower, upper = 64, 5, 1

    def broyden(x):
        s = x * (1.0 + x)
        padded = np.concatenate([np.zeros(lower), s, np.zeros(upper)])
        near = padded[:n]
        for d in range(1, lower + upper + 1):
            if d != lower:
                near = near + padded[d:d + n]
        r = x * (2.0 + 5.0 * x ** 2) + 1.0 - near
        return np.sum(r ** 2)

    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    tape = fa.make_tape(lambda x, t: fa.jvp(fa.grad(broyden), (x,), (t,))[1])(x, t)
    source, plain = _check(tape, (x, t))
    assert source.count("np.empty((64, ), np.float64)") < plain.count(
        "np.empty((64, ), np.float64)")
    # the first loop computes 1 + 2x for the tangent it pads; the last adds
    # the band's tangent times it, computing it again from x
    assert "for i in range(64):" in source
