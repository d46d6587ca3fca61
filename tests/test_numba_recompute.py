"""Cheap values of a Numba kernel's inputs computed again in the loop that
reads them, rather than stored by the loop that made them
(`backends/numba_recompute.py`).

Generated programs of elementwise chains over two inputs of one shape or
broadcast to it (size-1 axes, a row, a column), broken into several loops by
shifted slices, with values read by everything that can read them: later
loops, gathers, reductions of all axes or of one feeding elementwise code,
NumPy's vector loops, guards, outputs, views and `stop_gradient` (readers
that are no loop), and NumPy's ufuncs of two results (modf, divmod: several
instructions each).  Inputs hold zeros of both signs and integers.
Their kernels (the function's, its gradient's and a Hessian-vector
product's) give bit for bit the results of the kernels that store every
value and those of the NumPy reference interpreter; Broyden's seed kernel
stores four arrays fewer.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from fastad.backends import numba_recompute
from fastad.backends.reference import evaluate
from fastad.transforms.optimize import optimize

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")

CHEAP = ("add", "sub", "mul", "div", "square", "neg", "max", "where", "sqrt", "scale",
         "copysign", "floor")
PARTS = ("modf0", "modf1", "divmod0", "divmod1")  # ufuncs of two results (frexp: a host call)
OTHER = ("shift", "gather", "sum", "rowsum", "colmax", "sin", "branch", "stop", "view")
#: the programs' shapes, each with the shapes its second input may have
SHAPES = {(37,): [(37,), (1,)],
          (1, 12): [(1, 12), (12,), (1, 1)],
          (5, 8): [(5, 8), (1, 8), (5, 1), (8,)],
          (7, 1): [(7, 1), (1, 1), (1,)]}


def _full(u, shape):
    return u + np.zeros(shape)


def _apply(op, u, v, shape):
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
    if op == "copysign":
        return np.copysign(u, v)
    if op == "floor":
        return np.floor(u) * v
    if op in ("modf0", "modf1"):
        return np.modf(u)[int(op[-1])] + v
    if op in ("divmod0", "divmod1"):  # by nonzero divisors of both signs
        return np.divmod(u, np.where(v < 0, v - 0.5, v + 0.5))[int(op[-1])]
    if op == "shift":  # a new loop: the padded array is read at other positions
        flat = _full(u, shape).reshape(-1)
        return np.concatenate([np.zeros(2), flat[:-2]]).reshape(shape) + v
    if op == "gather":
        flat = _full(u, shape).reshape(-1)
        return flat[np.random.default_rng(5).permutation(flat.size)].reshape(shape)
    if op == "sum":
        return v * np.sum(u)
    if op == "rowsum":  # a reduction of one axis, broadcast back
        return u - np.sum(u, axis=-1, keepdims=True) * v
    if op == "colmax":
        return u * np.max(_full(u, shape), axis=0) + v
    if op == "sin":  # NumPy's vector loop where Numba has one
        return np.sin(u)
    if op == "branch":  # a guard reading a value
        return u if np.sum(u) > 0 else v
    if op == "stop":  # a reader that is no loop (a view of its operand)
        return fa.stop_gradient(u) - v
    if op == "view":
        return _full(u, shape).reshape(-1)[::-1].reshape(shape) * v
    raise AssertionError(op)


@st.composite
def programs(draw):
    shape = draw(st.sampled_from(sorted(SHAPES)))
    steps = []
    for k in range(draw(st.integers(6, 16))):
        kinds = draw(st.sampled_from((CHEAP, CHEAP, PARTS, OTHER)))
        steps.append((draw(st.sampled_from(kinds)), draw(st.integers(0, 2 + k)),
                      draw(st.integers(0, 2 + k))))
    return shape, draw(st.sampled_from(SHAPES[shape])), steps


def _values(rng, shape):
    """Values with zeros of both signs, integers and halves among them."""
    x = rng.uniform(-2.5, 2.5, shape)
    special = rng.choice([0.0, -0.0, 1.0, -2.0, 0.5, -1.5], shape)
    return np.where(rng.random(shape) < 0.3, special, x)


def _function(shape, prog):
    def f(x, y):
        pool = [x, y, x * y]
        for op, a, b in prog:
            pool.append(_apply(op, pool[a], pool[b], shape))
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


def _same_bits(a, b):
    """Equal bit for bit: signed zeros and NaNs too."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert a.tobytes() == b.tobytes(), np.argwhere(a.reshape(-1).view(np.uint8).reshape(
        a.size, -1) != b.reshape(-1).view(np.uint8).reshape(b.size, -1))[:5]


def _same_values(a, b):
    """Equal, with signed zeros and NaNs in the same places (a NaN's payload
    depends on the machine instruction that made it)."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(a, b)
    assert a.shape == b.shape
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)]))


def _check(tape, args, only_loop_readers=True):
    tape = optimize(tape)
    got, source = _kernels(tape, args, True, only_loop_readers)
    stored, plain = _kernels(tape, args, False)
    reference = evaluate(tape, list(args))
    assert got is not None and reference is not None
    for a, b, c in zip(got, stored, reference):
        _same_bits(a, b)
        _same_values(a, c)
    return source, plain


def _inputs(shape, y_shape, seed):
    rng = np.random.default_rng(seed)
    return _values(rng, shape), _values(rng, y_shape), rng.uniform(-1.5, 1.5, shape)


@settings(max_examples=10, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_generated_programs_bit_for_bit_with_and_without_recomputing(program, seed):
    shape, y_shape, prog = program
    x, y, t = _inputs(shape, y_shape, seed)
    f = _function(shape, prog)
    _check(fa.make_tape(lambda x, y: [f(x, y)])(x, y), (x, y))
    _check(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1)))(x, y), (x, y))
    hvp = fa.make_tape(lambda x, y, t: fa.jvp(lambda x: fa.grad(f)(x, y), (x,), (t,))[1])
    _check(hvp(x, y, t), (x, y, t))


@settings(max_examples=6, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_values_made_into_arrays_for_readers_outside_loops(program, seed):
    """Every value with a recipe deferred, whatever reads it: gathers,
    scatters and NumPy's vector loops have it made into an array first
    (`materialize`), bit for bit the array the loop would have stored."""
    shape, y_shape, prog = program
    x, y, t = _inputs(shape, y_shape, seed)
    f = _function(shape, prog)
    _check(fa.make_tape(fa.value_and_grad(f, argnums=(0, 1)))(x, y), (x, y), False)
    hvp = fa.make_tape(lambda x, y, t: fa.jvp(lambda x: fa.grad(f)(x, y), (x,), (t,))[1])
    _check(hvp(x, y, t), (x, y, t), False)


def test_a_value_read_from_its_array_before_a_recipe_computes_it_again():
    """modf's fraction f is stored for ``stop_gradient(f)`` (no loop) and its
    derivative's ``stop_gradient(f) - f`` reads it from that array, in the
    loop that then runs a recipe computing f again for a later member: the
    earlier member read the recipe's value of the previous iteration."""
    x = np.array([[0.10490012, 0.0]])
    for a in (x, np.array([[-2.0, -0.0, 0.25, 3.5]]), np.linspace(-3, 3, 13)):
        for k in (0, 1):
            for ours, numpy in ((fnp.modf, np.modf), (fnp.frexp, np.frexp)):
                got = fa.jit(lambda a: ours(a)[k], backend="numba")(a)
                _same_values(got, numpy(a)[k])
        tape = fa.make_tape(lambda a: [*fnp.modf(a), *fnp.divmod(a, 0.7), *fnp.divmod(0.7, a)])
        _check(tape(a), (a,))


def test_carries_a_loop_body_updates_in_place_are_not_read_by_recipes():
    """A loop body owns its array carries and may update one in place once its
    last reader in the body's tape has run, so recipes never read them (a
    value computed again after the update would read it): a body of
    elementwise values of its carry, shifted reads and a scatter into it."""
    idx = np.array([0, 3, 3, 7])

    def body(i, c):
        a = 2.0 * c + 1.0
        shifted = np.concatenate([np.zeros(1), a[:-1]])
        b = fnp.zeros_like(c).at[idx].add(shifted[idx]) + c
        return (b * a) * 0.5 + shifted

    x = np.linspace(-1.0, 1.0, 9)
    f = lambda x: fa.fori_loop(0, 3, body, x)
    expected = x
    for i in range(3):
        expected = body(i, expected)
    _same_values(fa.jit(f, backend="numba")(x), expected)
    _check(fa.make_tape(lambda x: [f(x)])(x), (x,))


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
