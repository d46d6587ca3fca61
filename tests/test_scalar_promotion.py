"""A scalar operand promotes a float array as NumPy's does, traced and
compiled: Python scalars are weak (float32 * 2.0 is float32), NumPy's
scalars are not (float32 ** np.float64(2.0) is float64), ``float_power``
computes in float64, whether the scalar is a constant of the function or
an argument of a compiled one.  Values near float32's range show where a
result was computed in the wrong precision (an overflow NumPy has, or
lacks)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 300)),
                    deadline=None)
COMPILED = [b for b in BACKENDS if b != "numpy"] or ["numpy"]

OPS = {
    "power": lambda a, b: a ** b,
    "np.power": np.power,
    "float_power": np.float_power,
    "multiply": lambda a, b: a * b,
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "divide": lambda a, b: a / b,
    "maximum": np.maximum,
    "arctan2": np.arctan2,
    "hypot": np.hypot,
    "where": lambda a, b: np.where(a > 1.0, a, b),
    "select": lambda a, b: np.select([a > b, a < b], [a, b], default=1.5),
    # Python's arithmetic of Python numbers stays weak; NumPy's functions of
    # them give NumPy float64 scalars, which are not
    "weak chain": lambda a, b: a * (b * 0.5 - 1 + b / 3),
    "strong exp": lambda a, b: a * np.exp(b * 0.1),
    "remainder": lambda a, b: a % b,
    "floor_divide": lambda a, b: a // b,
    "divmod": lambda a, b: divmod(a, b)[0] * 0.5 + divmod(a, b)[1],
    "signs": lambda a, b: a * (-b) + a * abs(b) + (+b) * a,
    "full_like": lambda a, b: np.full_like(a, b) * a,  # the array first, always
    "loop": lambda a, b: _loop(a, b),  # (the array first: the tracer's scalar fast paths)
}


def _loop(a, b):
    s = 0.0
    for i in range(len(a)):
        s = s + b * a[i] - a[i] / (b + 1) + np.float64(0.5) * a[i] * b
    return s
SCALARS = {
    "int": lambda v: int(v), "float": lambda v: float(v), "bool": lambda v: bool(v),
    "np.float64": np.float64, "np.float32": np.float32, "np.int64": np.int64,
    "np.int8": np.int8, "np.uint8": np.uint8, "0-d float64": lambda v: np.array(float(v)),
    "0-d int16": lambda v: np.array(int(v), np.int16),
}


def _array(dtype):
    # ordinary values, and values whose squares leave float32's range
    return np.array([1.5, 3.7, 0.25, 3e38, 1e-38, 2.0], dtype=dtype)


def _same(got, want, computed_in):
    """got is want: its dtype, its infinities and NaNs, and its values to a
    few units in the last place of the narrowest precision computed in (a
    backend's float32 exp may be an ulp from NumPy's; the wrong precision
    shows as an overflow or underflow at 3e38 and 1e-38)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    tol = 8 * np.finfo(computed_in).eps if want.dtype.kind == "f" else 0
    np.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=0)


@pytest.mark.parametrize("backend", COMPILED)
@EXAMPLES
@given(op=st.sampled_from(sorted(OPS)), kind=st.sampled_from(sorted(SCALARS)),
       value=st.sampled_from([2, 3, 1]), dtype=st.sampled_from(["float32", "float64"]),
       scalar_first=st.booleans(), as_argument=st.booleans())
def test_scalar_operands_promote_as_numpy(backend, op, kind, value, dtype, scalar_first,
                                          as_argument):
    x = _array(np.dtype(dtype))
    scalar_first = scalar_first and op not in ("full_like", "loop")
    if scalar_first and op in ("power", "np.power", "float_power"):
        x = np.abs(x) % 3.0 + 0.5  # powers of the scalar: exponents in range
        x = x.astype(dtype)
    s = SCALARS[kind](value)
    fn = OPS[op]

    def f(x, s):
        return fn(s, x) if scalar_first else fn(x, s)
    with np.errstate(all="ignore"):
        want = f(x, s)
        if as_argument:
            got_jit = fa.jit(f, backend=backend)(x, s)
            traced = fa.jit(f, backend="numpy")(x, s)
        else:
            got_jit = fa.jit(lambda x: f(x, s), backend=backend)(x)
            traced = fa.jit(lambda x: f(x, s), backend="numpy")(x)
    computed_in = np.float32 if np.float32 in (x.dtype, np.result_type(s)) else np.float64
    _same(traced, want, computed_in)
    _same(got_jit, want, computed_in)


@EXAMPLES
@given(op=st.sampled_from(sorted(OPS)), kind=st.sampled_from(sorted(SCALARS)),
       dtype=st.sampled_from(["float32", "float64"]),
       via=st.sampled_from(["nested jit", "vmap", "jit of vmap", "vmap of jit"]))
def test_scalar_arguments_stay_weak_through_compositions(op, kind, dtype, via):
    """The scalar handed on by an enclosing jit or vmap promotes as the
    scalar itself does (vmap takes a Python bool as a mask of booleans, as
    JAX's does: ``-b`` is refused there and ``b * 0.5`` is float64)."""
    if via != "nested jit" and kind == "bool" or op == "loop" and via != "nested jit":
        return
    x = _array(np.dtype(dtype))
    s = SCALARS[kind](2)
    fn = OPS[op]
    backend = "c" if "c" in BACKENDS else "numpy"
    inner = fa.jit(fn, backend=backend)
    rows = np.stack([x, x[::-1]])
    with np.errstate(all="ignore"):
        if via == "nested jit":
            got, want = fa.jit(lambda x, s: inner(x, s), backend=backend)(x, s), fn(x, s)
        else:
            f = {"vmap": fa.vmap(fn, in_axes=(0, None)),
                 "jit of vmap": fa.jit(fa.vmap(fn, in_axes=(0, None)), backend=backend),
                 "vmap of jit": fa.vmap(inner, in_axes=(0, None))}[via]
            got, want = f(rows, s), np.stack([fn(r, s) for r in rows])
    _same(got, want, np.float32 if np.float32 in (x.dtype, np.result_type(s)) else np.float64)
