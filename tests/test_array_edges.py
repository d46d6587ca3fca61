"""Array usages on traced values that NumPy code writes and the front end
once refused or answered wrongly: extrema, products and counts of masks
(boolean arguments; a count is NumPy's int64), ``x.flat`` read, written and iterated, ``x.shape = ...`` (a
clear refusal), ``matrix_norm(ord=None)``, and a compiled function's
``value`` of a function returning several leaves (a refusal, never its
first leaf alone)."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
from fastad.api import NotScalarOutput

MASK_FUNCTIONS = {
    "max": lambda b, c: np.max(b),
    "max axis": lambda b, c: np.max(b, axis=0),
    "min keepdims": lambda b, c: np.min(b, axis=1, keepdims=True),
    "amax method": lambda b, c: b.max(axis=-1),
    "dot": lambda b, c: np.dot(b[0], c[:, 1]),
    "matmul": lambda b, c: b @ c,
    "any": lambda b, c: np.any(b, axis=0),
    "count": lambda b, c: np.sum(b),
    "count axis": lambda b, c: b.sum(axis=0) * 2 + np.sum(c, axis=1),
    "count scaled": lambda b, c: np.sum(b, keepdims=True) / 4.0,
}


@pytest.mark.parametrize("name", sorted(MASK_FUNCTIONS))
def test_masks_as_arguments(name):
    f = MASK_FUNCTIONS[name]
    rng = np.random.default_rng(len(name))
    for _ in range(4):
        b, c = rng.random((3, 3)) > 0.6, rng.random((3, 3)) > 0.4
        want, got = f(b, c), fa.jit(f)(b, c)
        assert np.asarray(got).dtype == np.asarray(want).dtype and np.array_equal(got, want)


@pytest.mark.parametrize("shape", [(6,), (2, 3), (2, 2, 2)])
def test_flat_reads_writes_and_iterates(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    n = x.size
    k = int(rng.integers(n))

    def f(v):
        y = np.swapaxes(v * 1.5, 0, -1)  # (not contiguous: written through its indices)
        y.flat[k] = 2.0 * v.flat[n - 1 - k]
        y.flat[1::3] = -v.flat[: len(range(n)[1::3])]
        return np.sum(y.flat[::2] ** 2) + sum(e * e for e in v.flat) + len(v.flat)

    assert np.isclose(fa.jit(f)(x), f(x))
    g = fa.grad(f)(x)
    for _ in range(3):
        d = rng.standard_normal(shape)
        fd = (f(x + 1e-6 * d) - f(x - 1e-6 * d)) / 2e-6
        assert np.isclose(np.sum(g * d), fd, rtol=1e-6)


def test_setting_the_shape_of_a_traced_array_is_refused_clearly():
    def f(x):
        y = x * 2.0
        y.shape = (3, 2)
        return y
    with pytest.raises(AttributeError, match="reshape"):
        fa.jit(f)(np.ones((2, 3)))


def test_matrix_norm_takes_ord_none_as_frobenius():
    x = np.random.default_rng(0).standard_normal((2, 3, 3))
    f = lambda v: np.linalg.matrix_norm(v, ord=None)  # noqa: E731
    np.testing.assert_allclose(fa.jit(f)(x), f(x), rtol=1e-12)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_compiled_value_of_several_leaves_is_refused(backend):
    if backend not in fa.backends_available():
        pytest.skip(f"{backend} not built")
    x = np.arange(3.0)
    g = fa.compile(lambda v: (np.sum(v ** 2), v), backend=backend)
    with pytest.raises(NotScalarOutput, match="has_aux"):
        g.value(x)
    aux = fa.compile(lambda v: (np.sum(v ** 2), v), has_aux=True, backend=backend)
    value, kept = aux.value(x)
    assert value == 5.0 and np.array_equal(kept, x)


OPERANDS = {
    "float": lambda x: x,
    "float32": lambda x: x.astype(np.float32),
    "mask": lambda x: x > 1.0,
    "int": lambda x: (x * 3).astype(np.int64),
    "python_float": lambda x: 1.5,
    "python_int": lambda x: 3,
    "python_bool": lambda x: True,
}


@pytest.mark.parametrize("op", ["and_", "or_", "xor", "lshift"])
def test_bitwise_operators_of_every_operand_kind(op):
    import operator
    fn = getattr(operator, op)
    x = np.random.default_rng(1).uniform(0.0, 2.0, 5)
    for left in OPERANDS:
        for right in OPERANDS:
            if left.startswith("python") and right.startswith("python"):
                continue

            def f(v, left=left, right=right):
                return fn(OPERANDS[left](v), OPERANDS[right](v))
            try:
                want, refused = f(x), None
            except TypeError as exc:
                want, refused = None, exc
            if refused is not None:  # NumPy has no loop: traced, a TypeError too
                with pytest.raises(TypeError):
                    fa.jit(f)(x)
                continue
            got = fa.jit(f)(x)
            assert got.dtype == want.dtype, (left, right)
            np.testing.assert_array_equal(got, want, err_msg=f"{left} {op} {right}")


def test_products_of_masks_read_their_dtype_from_any_array():
    """A mask read back by pickle has a dtype equal to bool's but not the same
    object: its product with another mask is still NumPy's mask product."""
    import pickle
    m = pickle.loads(pickle.dumps(np.array([[True, False], [False, False]])))

    def f(x):
        return (x > 0) @ m
    x = np.array([[1.0, -1.0], [-1.0, -1.0]])
    got = fa.jit(f)(x)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, f(x))
