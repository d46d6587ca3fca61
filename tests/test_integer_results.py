"""Integers in, NumPy's integers out: sums, extremes, roundings, products and
the shape functions NumPy answers with integers for integer operands give
the same values of the same dtype eagerly, compiled (integers taken as
data) and under vmap, called as fastad.numpy functions, as NumPy's own
(``np.sum(labels)`` dispatched), as methods and as operators."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp

# name -> f(module, a, b): a and b integer arrays of shape (2, 3) and (3,)
OPS = {
    "sum": lambda m, a, b: m.sum(a), "sum_axis": lambda m, a, b: m.sum(a, axis=0),
    "sum_method": lambda m, a, b: a.sum(axis=1), "prod": lambda m, a, b: m.prod(b),
    "cumsum": lambda m, a, b: m.cumsum(a, axis=1), "cumprod": lambda m, a, b: m.cumprod(b),
    "nansum": lambda m, a, b: m.nansum(a), "trace": lambda m, a, b: m.trace(a),
    "max": lambda m, a, b: m.max(a), "min_axis": lambda m, a, b: m.min(a, axis=0),
    "amax": lambda m, a, b: m.amax(a, axis=1), "nanmin": lambda m, a, b: m.nanmin(a),
    "max_method": lambda m, a, b: a.max(axis=0), "max_initial": lambda m, a, b: m.max(b, initial=3),
    "ptp": lambda m, a, b: m.ptp(a, axis=1), "sign": lambda m, a, b: m.sign(a),
    "round": lambda m, a, b: m.round(a), "floor": lambda m, a, b: m.floor(b),
    "fix": lambda m, a, b: m.fix(a),
    "triu": lambda m, a, b: m.triu(a), "tril": lambda m, a, b: m.tril(a, -1),
    "pad": lambda m, a, b: m.pad(a, 1), "dot": lambda m, a, b: m.dot(a, b),
    "matmul_operator": lambda m, a, b: a @ b, "inner": lambda m, a, b: m.inner(a, b),
    "outer": lambda m, a, b: m.outer(b, b), "einsum": lambda m, a, b: m.einsum("ij,j->i", a, b),
    "tensordot": lambda m, a, b: m.tensordot(a, b, axes=1), "kron": lambda m, a, b: m.kron(b, b),
    "cross": lambda m, a, b: m.cross(b, a[0]), "convolve": lambda m, a, b: m.convolve(b, a[1]),
    "add.reduce": lambda m, a, b: m.add.reduce(a, axis=1),
    "maximum.reduce": lambda m, a, b: m.maximum.reduce(a),
    "add.accumulate": lambda m, a, b: m.add.accumulate(b),
    "sum_dtype": lambda m, a, b: m.sum(a, dtype=np.int32),
    "sum_float_dtype": lambda m, a, b: m.sum(a, dtype=np.float64),
    "mixed": lambda m, a, b: m.dot(a, b * 0.5),
    "mean": lambda m, a, b: m.mean(a),
}
DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32]


def _arrays(dtype, seed):
    rng = np.random.default_rng(seed)
    hi = 12 if np.dtype(dtype).kind == "u" else 6
    lo = 0 if np.dtype(dtype).kind == "u" else -6
    return (rng.integers(lo, hi, (2, 3)).astype(dtype), rng.integers(lo, hi, 3).astype(dtype))


def _check(got, want, how):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape, (how, got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want, err_msg=how)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(OPS)), st.sampled_from(DTYPES), st.integers(0, 2**31 - 1))
def test_integer_operands_give_numpys_integers(name, dtype, seed) -> None:
    op = OPS[name]
    a, b = _arrays(dtype, seed)
    want = np.asarray(op(np, a, b))
    _check(op(fnp, a, b), want, "eager")
    _check(fa.jit(lambda a, b: op(fnp, a, b))(a, b), want, "jit")
    _check(fa.jit(lambda a, b: op(np, a, b))(a, b), want, "jit, NumPy's function dispatched")
    _check(fa.vmap(lambda a, b: op(fnp, a, b))(a[None], b[None])[0], want, "vmap")


def test_integer_results_index_and_wrap_as_numpys() -> None:
    """A compiled sum of labels indexes, and an int8 product wraps as NumPy's."""
    table = np.arange(10.0) ** 2
    labels = np.array([1, 2, 3])
    pick = fa.jit(lambda t, l: t[fnp.sum(l)] + t[fnp.max(l)])
    assert pick(table, labels) == table[6] + table[3]
    assert pick(table, np.array([0, 1, 2])) == table[3] + table[2]  # one trace, new labels
    big = np.array([100, 100, 3], dtype=np.int8)
    for f in (lambda v: fnp.dot(v, v), lambda v: fnp.outer(v, v), lambda v: v @ v):
        got = fa.jit(f)(big)
        with np.errstate(over="ignore"):
            want = np.asarray(f(big))  # fastad.numpy on plain int8: NumPy's wrapped result
        assert want.dtype == np.int8
        _check(got, want, "int8 wraps")


def test_floats_are_untouched() -> None:
    x = np.array([[1.5, -2.0], [0.25, 4.0]])
    for f in (lambda x: fnp.sum(x), lambda x: x @ x, lambda x: fnp.triu(x), lambda x: x.max()):
        assert fa.jit(f)(x).dtype == np.float64
    g = fa.grad(lambda x, l: fnp.sum(x * fnp.sum(l)))(x, np.array([1, 2]))
    np.testing.assert_array_equal(g, np.full_like(x, 3.0))
