"""NumPy's array_likes (nested lists and tuples, of numbers or of traced
values) wherever an array is taken: operands of traced operations and
operators, arguments of fastad.numpy's, SciPy's and the distributions'
functions.  Each is checked against the same call with arrays, eager and
compiled: values and gradients."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.conformance import ROWS

COMPILED = "c" if "c" in BACKENDS else "numpy"

# rows of the conformance table with two or more array arguments: one traced,
# the others given as nested lists
PAIRS = [(row, k) for row in ROWS
         for k in [i for i, a in enumerate(row.args) if isinstance(a, np.ndarray)]
         if sum(isinstance(a, np.ndarray) for a in row.args) >= 2]


def _scalar(out):
    out = out[0] if isinstance(out, tuple) else out
    return fnp.sum(fnp.real(out)) if np.iscomplexobj(fnp.asarray(out).dtype.type(0)) else \
        fnp.sum(out)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("row,traced", PAIRS, ids=[f"{r.name}-{k}" for r, k in PAIRS])
def test_functions_take_lists_where_they_take_arrays(row, traced):
    def f(x, listed):
        args = list(row.args)
        args[traced] = x
        if listed:
            args = [a.tolist() if isinstance(a, np.ndarray) and i != traced else a
                    for i, a in enumerate(args)]
        return _scalar(row.fn(*args))
    x = row.args[traced]
    try:
        want, want_g = f(x, False), fa.grad(lambda v: f(v, False))(x)
    except (NotImplementedError, TypeError):
        pytest.skip("not differentiable in this argument")
    np.testing.assert_allclose(f(x, True), want, rtol=1e-13)
    np.testing.assert_allclose(fa.grad(lambda v: f(v, True))(x), want_g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fa.compile(lambda v: f(v, True), backend=COMPILED)(x), want_g,
                               rtol=1e-12, atol=1e-14)


BINARY = [fnp.add, fnp.subtract, fnp.multiply, fnp.divide, fnp.maximum, fnp.minimum,
          fnp.arctan2, fnp.hypot, fnp.power, fnp.copysign, fnp.logaddexp, fnp.logaddexp2,
          lambda a, b: a @ b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: fnp.dot(a, b),
          lambda a, b: fnp.where(fnp.greater(a, b), a, b), lambda a, b: fnp.clip(a, b, 3.0)]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(range(len(BINARY))), st.booleans(), st.integers(1, 4),
       st.integers(0, 2**31 - 1), st.booleans())
def test_operands_given_as_lists(k, traced_first, n, seed, holds_traced):
    """Either operand a list (of floats, or holding a traced value)."""
    op = BINARY[k]
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n)

    def f(v, listed):
        other = y.tolist() if listed else y
        if holds_traced and listed:
            other = [v[0] * 0.5] + other[1:]  # a list holding a traced value
        elif holds_traced:
            other = fnp.concatenate([v[:1] * 0.5, y[1:]])
        a, b = (v, other) if traced_first else (other, v)
        return fnp.sum(op(a, b))
    want = f(x, False)
    np.testing.assert_allclose(f(x, True), want, rtol=1e-14)
    g = fa.grad(lambda v: f(v, False))(x)
    np.testing.assert_allclose(fa.grad(lambda v: f(v, True))(x), g, rtol=1e-13, atol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(fa.compile(lambda v: f(v, True), backend=COMPILED)(x), g,
                                   rtol=1e-13, atol=1e-15)


def test_plain_lists_reach_special_and_triangular_solves():
    import fastad.scipy.linalg as fla
    import fastad.scipy.special as fsc
    import fastad.scipy.stats as fst
    import scipy.linalg
    import scipy.special
    np.testing.assert_allclose(fsc.xlogy([1.0, 2.0], [3.0, 4.0]), scipy.special.xlogy([1, 2], [3, 4]))
    np.testing.assert_allclose(fla.solve_triangular([[2.0, 0.0], [1.0, 1.0]], [1.0, 2.0], lower=True),
                               scipy.linalg.solve_triangular([[2, 0], [1, 1]], [1, 2], lower=True))
    g = fa.grad(lambda m: fnp.sum(fst.norm.logpdf([0.1, 0.2], m, [1.0, 2.0])))(0.3)
    assert g == pytest.approx(-0.2 - 0.1 / 4)
