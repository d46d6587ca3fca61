"""Integer and boolean array arguments are data: a compiled function called
with new labels, indices or masks on every call (a minibatch loop) reuses
its trace.  Random minibatch-style programs (gathers, one-hot comparisons,
where-masks, label arithmetic) equal the eager function on every backend,
with one trace; their gradients match central finite differences; indices
out of range raise IndexError on every backend; uses of the values
themselves key the argument by value and still equal the eager function.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from helpers import altered, executable_or_none

COMPILED = "c" if "c" in BACKENDS else "numpy"


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Terms of a minibatch loss of (w, X, labels, idx, mask, bits): X is (n, d),
# labels (b,) in 0..k-1 with k <= d, idx (b,) in -n..n-1 (negative and
# repeated rows), mask (b,) bool, bits (b,) in {0, 1}.
TERMS = {
    "rows": lambda w, X, labels, idx, mask, bits: np.sum(np.tanh(X[idx] @ w)),
    "take": lambda w, X, labels, idx, mask, bits: np.sum(np.take(X, idx, axis=0) * w ** 2),
    "rows_sliced": lambda w, X, labels, idx, mask, bits: np.sum(X[idx, 1:] * w[1:]),
    "columns": lambda w, X, labels, idx, mask, bits: np.sum(np.sin(X[:, labels] * w[labels])),
    "one_hot": lambda w, X, labels, idx, mask, bits: np.sum(
        (labels[:, None] == np.arange(X.shape[1])) * np.log1p((X[:labels.size] * w) ** 2)),
    "pick": lambda w, X, labels, idx, mask, bits: np.sum(
        np.log(_sigmoid(X[idx] * w))[np.arange(labels.size), labels]),
    "along": lambda w, X, labels, idx, mask, bits: np.sum(
        np.take_along_axis(np.cos(X[:labels.size] * w), labels[:, None], axis=1)),
    "where": lambda w, X, labels, idx, mask, bits: np.sum(
        np.where(mask, X[:mask.size] @ w, (X[:mask.size] @ w) ** 2)),
    "mask_arithmetic": lambda w, X, labels, idx, mask, bits: (
        np.sum(mask * (X[:mask.size] @ w)) + np.sum(mask) * w[0] ** 2),
    "labels_arithmetic": lambda w, X, labels, idx, mask, bits: -np.sum(
        bits * np.log(_sigmoid(X[idx] @ w)) + (1 - bits) * np.log(1 - _sigmoid(X[idx] @ w))),
    "integer_arithmetic": lambda w, X, labels, idx, mask, bits: np.sum(
        X[np.abs(idx) - 1, labels] * w[labels]) + np.sum((2 * labels + 1) * w[0]),
    # labels moved by shape functions stay integers: reshaped, expanded,
    # transposed, broadcast, flipped, then used as indices
    "reshaped": lambda w, X, labels, idx, mask, bits: np.sum(
        np.take_along_axis(np.cos(X[:labels.size] * w), labels.reshape(-1, 1), axis=1)),
    "expanded": lambda w, X, labels, idx, mask, bits: np.sum(
        (np.expand_dims(labels, 1) == np.arange(X.shape[1])) * (X[:labels.size] * w) ** 2),
    "moved": lambda w, X, labels, idx, mask, bits: np.sum(
        w[np.broadcast_to(labels, (2, labels.size)).T[::-1, 0]] * np.ravel(X[idx.T, 0])),
}


def make_program(names):
    def loss(w, X, labels, idx, mask, bits):
        return sum(TERMS[name](w, X, labels, idx, mask, bits) for name in names)
    loss.__name__ = "loss_" + "_".join(names)
    return loss


def minibatch(rng, n, d, b, k):
    """New integer and boolean data of one minibatch."""
    return (rng.integers(0, k, b), rng.integers(-n, n, b), rng.random(b) < 0.5,
            rng.integers(0, 2, b).astype(np.int32))


def check_against_eager(g, loss, w, X, data):
    value, grad = g.value_and_grad(w, X, *data)
    want_value, want_grad = fa.value_and_grad(loss)(w, X, *data)
    assert np.allclose(value, loss(w, X, *data), rtol=1e-11, atol=1e-12)
    assert np.allclose(value, want_value, rtol=1e-11, atol=1e-12)
    assert np.allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(names=st.lists(st.sampled_from(sorted(TERMS)), min_size=1, max_size=4, unique=True),
       n=st.integers(2, 7), d=st.integers(2, 4), b=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_minibatch_programs_reuse_one_trace_and_equal_eager(names, n, d, b, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, d + 1))
    b = min(b, n)
    loss = make_program(names)
    w, X = rng.normal(size=d), rng.normal(size=(n, d))
    g = fa.compile(loss, backend=COMPILED)
    for _ in range(3):
        check_against_eager(g, loss, w, X, minibatch(rng, n, d, b, k))
    assert g.cache_info()["traces"] == 1


@settings(max_examples=10, deadline=None)
@given(names=st.lists(st.sampled_from(sorted(TERMS)), min_size=1, max_size=3, unique=True),
       seed=st.integers(0, 2**31))
def test_gradients_match_central_differences(names, seed):
    rng = np.random.default_rng(seed)
    n, d, b = 5, 3, 4
    loss = make_program(names)
    w, X = rng.normal(size=d), rng.normal(size=(n, d))
    data = minibatch(rng, n, d, b, d)
    fa.check_grads(lambda w, X: loss(w, X, *data), (w, X), order=1, modes=("rev",),
                   seed=seed % 1000)
    g = fa.compile(loss, backend=COMPILED, argnums=(0, 1))
    got = g(w, X, *data)
    want = fa.grad(loss, argnums=(0, 1))(w, X, *data)
    for a, e in zip(got, want):
        assert np.allclose(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_term_on_every_backend(backend):
    rng = np.random.default_rng(7)
    n, d, b = 6, 3, 5
    loss = make_program(sorted(TERMS))
    w, X = rng.normal(size=d), rng.normal(size=(n, d))
    g = fa.compile(loss, backend=backend)
    for _ in range(3):
        check_against_eager(g, loss, w, X, minibatch(rng, n, d, b, d))
    assert g.cache_info()["traces"] == 1


def test_labels_of_another_dtype_trace_again():
    # the dtype is part of the signature: int8 arithmetic wraps where int64's
    # does not, and results keep their arguments' dtypes
    rng = np.random.default_rng(1)
    loss = make_program(["pick", "rows"])
    w, X = rng.normal(size=3), rng.normal(size=(5, 3))
    g = fa.compile(loss, backend=COMPILED)
    labels, idx, mask, bits = minibatch(rng, 5, 3, 4, 3)
    check_against_eager(g, loss, w, X, (labels, idx, mask, bits))
    check_against_eager(g, loss, w, X, (labels.astype(np.int32), idx.astype(np.int16),
                                        mask, bits.astype(np.uint8)))
    assert g.cache_info()["traces"] == 2
    f = fa.jit(lambda a: a * 100, backend=COMPILED)
    for dtype in (np.int32, np.int8, np.uint8, np.int64):
        a = np.array([100, 2], dtype=dtype)
        out = f(a)
        assert out.dtype == dtype and np.array_equal(out, a * dtype(100))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [5, -6, 7])
@pytest.mark.parametrize("term", ["rows", "pick", "take"])
def test_indices_out_of_range_raise_index_error(backend, bad, term):
    rng = np.random.default_rng(2)
    loss = make_program([term])
    w, X = rng.normal(size=3), rng.normal(size=(5, 3))
    labels, idx, mask, bits = minibatch(rng, 5, 3, 4, 3)
    g = fa.compile(loss, backend=backend)
    g(w, X, labels, idx, mask, bits)
    idx = idx.copy()
    idx[2] = bad
    with pytest.raises(IndexError):
        loss(w, X, labels, idx, mask, bits)  # NumPy's verdict
    with pytest.raises(IndexError):
        g(w, X, labels, idx, mask, bits)
    with pytest.raises(IndexError):
        g.value(w, X, labels, idx, mask, bits)
    assert g.cache_info()["traces"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_label_past_its_axis_raises_before_flattening(backend):
    """p[arange(b), labels] with a label equal to the row length would read the
    next row's first element if checked only against the flat size."""
    loss = make_program(["pick"])
    rng = np.random.default_rng(3)
    w, X = rng.normal(size=3), rng.normal(size=(5, 3))
    labels, idx, mask, bits = minibatch(rng, 5, 3, 4, 3)
    g = fa.compile(loss, backend=backend)
    g(w, X, labels, idx, mask, bits)
    labels = np.array([0, 3, 1, 2])
    with pytest.raises(IndexError):
        g(w, X, labels, idx, mask, bits)


def _mask_index(w, mask):
    return np.sum(w[mask] ** 2)


def _unique(w, labels):
    return np.sum(w[:len(np.unique(labels))] ** 2)


def _bincount(w, labels):
    return np.sum(np.bincount(labels, minlength=w.size)[:w.size] * w ** 2)


def _int_of_element(w, labels):
    return w[int(labels[0])] ** 3


def _tolist(w, labels):
    return sum(w[i] for i in labels.tolist())


def _python_if(w, labels):
    return np.sum(w ** 2) if labels[0] > 1 else np.sum(w ** 3)


def _range(w, labels):
    out = 0.0
    for i in range(labels[0]):
        out = out + w[i] ** 2
    return out


def _modulo_index(w, labels):
    return np.sum(w[np.abs(labels) % w.size] ** 2)


@pytest.mark.parametrize("fn", [_mask_index, _unique, _bincount, _int_of_element, _tolist,
                                _python_if, _range, _modulo_index], ids=lambda f: f.__name__)
def test_uses_of_the_values_retrace_and_equal_eager(fn):
    rng = np.random.default_rng(4)
    w = rng.normal(size=4)
    g = fa.compile(fn, backend=COMPILED)
    arrays = [rng.random(4) < 0.5 if fn is _mask_index else rng.integers(0, 4, 3)
              for _ in range(4)]
    for a in arrays + arrays[:1]:
        assert np.allclose(g(w, a), fa.grad(fn)(w, a), rtol=1e-12, atol=1e-14)
        assert np.allclose(g.value(w, a), fn(w, a), rtol=1e-12, atol=1e-14)
    assert g.cache_info()["traces"] <= len(arrays) + 1


def test_integers_past_two_to_the_53_are_keyed_by_value():
    def f(w, big):
        return np.sum(w * (big - 2**60))
    g = fa.compile(f, backend=COMPILED)
    w = np.ones(2)
    for big in (np.array([2**60 + 1, 2**60 + 3]), np.array([2**60 + 5, 2**60 + 7])):
        assert np.array_equal(g.value(w, big), f(w, big))


def test_boolean_masks_as_data_stay_compiled():
    def f(w, mask):
        return np.sum(np.where(mask & (w > 0), w, -w) ** 2) + np.sum(~mask * w)
    rng = np.random.default_rng(5)
    w = rng.normal(size=6)
    g = fa.compile(f, backend=COMPILED)
    for _ in range(3):
        mask = rng.random(6) < 0.5
        assert np.allclose(g(w, mask), fa.grad(f)(w, mask), rtol=1e-12)
    assert g.cache_info()["traces"] == 1


def test_gather_by_traced_rows_batches_under_vmap():
    rng = np.random.default_rng(6)
    xs = rng.normal(size=(3, 4, 2))
    ks = np.array([[0.0, 3.0, -1.0], [2.0, 2.0, 1.0], [-4.0, 0.0, 3.0]])

    def f(x, k):
        return np.sum(fnp.gather_rows(x, k) ** 2, axis=1)

    got = fa.vmap(f)(xs, ks)
    want = np.stack([np.sum(xs[i][ks[i].astype(int)] ** 2, axis=1) for i in range(3)])
    assert np.allclose(got, want)
    jac = fa.jacobian(lambda x: f(x, ks[0]))(xs[0])
    assert np.allclose(jac, fa.jacobian(lambda x: np.sum(x[[0, 3, -1]] ** 2, axis=1))(xs[0]))


def test_sparsity_of_a_gather_by_traced_rows_covers_the_jacobian():
    """A gather whose indices are computed: dense over the gathered axis."""
    def f(x):
        k = np.floor(x[:2] * 0.0 + np.array([2.0, -1.0]))  # traced, integral
        return fnp.gather_rows(np.reshape(x, (3, 2)), k).reshape(-1) ** 2

    x = np.random.default_rng(8).normal(size=6)
    pattern = fa.sparsity(f)(x).jacobian.toarray()
    dense = fa.jacobian(f)(x) != 0
    assert not np.any(dense & ~pattern)
    # position c of any row, never the other column
    assert not pattern[0, 1] and not pattern[1, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [1.5, np.nan, np.inf, -np.inf, 2.0**60, -4.0, 3.0])
def test_gather_rows_refuses_indices_that_are_not_rows(backend, bad):
    """Indices held in float64 that are not integers in -m..m-1 (a fraction,
    NaN, infinities, past 2**53): IndexError, never a read outside x."""
    def f(x, k):
        return fnp.gather_rows(x, k) * 2.0, fnp.scatter_add_rows(x, k, x[:2])

    x = np.arange(6.0).reshape(3, 2)
    j = fa.jit(f, backend=backend)
    good = np.array([2.0, -3.0])
    for a, e in zip(j(x, good), f(x, good)):
        assert np.array_equal(a, e)
    with pytest.raises(IndexError):
        j(x, np.array([0.0, bad]))


def _classes_from_labels(w, labels):
    k = labels.max() + 1  # a traced value computed from the labels, used as a size
    return np.sum(np.eye(int(k))[labels] @ w[:3] ** 2)


def test_a_size_computed_from_data_keys_it_by_value():
    rng = np.random.default_rng(9)
    w = rng.normal(size=3)
    g = fa.compile(_classes_from_labels, backend=COMPILED)
    for _ in range(3):
        labels = rng.integers(0, 3, 5)
        assert np.allclose(g(w, labels), fa.grad(_classes_from_labels)(w, labels))


def test_a_compiled_function_inside_one_with_integer_data_keys_only_its_own_arguments():
    """``labels.max()`` used as a size inside the outer function's trace, and a
    jitted inner function whose own trace reads a plain value of its input:
    each compiled function keys only its own arguments by value."""
    inner = fa.jit(lambda v: v[:3] * float(len(np.unique(np.round(v)))))

    def outer(w, labels):
        k = labels.max() + 1
        return np.sum(inner(w) * np.eye(int(k))[labels][:, :3].sum(0)) + np.sum(w[labels])

    rng = np.random.default_rng(10)
    w = rng.normal(size=4)
    g = fa.compile(outer, backend=COMPILED)
    for _ in range(3):
        labels = np.concatenate([[3], rng.integers(0, 4, 3)])
        assert np.allclose(g(w, labels), fa.grad(outer)(w, labels))


# keys mixing integer data with NumPy's other index forms, for X of shape (5, 4, 3),
# i in -5..4 and j in -3..2 (three of each)
KEYS = {
    "ellipsis": lambda X, i, j: X[..., j],
    "new_axis": lambda X, i, j: X[None, i],
    "broadcast": lambda X, i, j: X[i[:, None], j[None, :]],
    "slice_before": lambda X, i, j: X[1:, j],
    "integer_after": lambda X, i, j: X[i, 0],
    "constant_and_data": lambda X, i, j: X[[0, 1, 2], j],
    "separated": lambda X, i, j: X[i, :, j],
    "chained": lambda X, i, j: X[i][:, ::-1],
    "constant_mask": lambda X, i, j: X[np.array([True, False, True, True, False]), j],
    "scalars": lambda X, i, j: X[i[0], j[1], 2],
}


@pytest.mark.parametrize("key", sorted(KEYS))
def test_index_forms_mixed_with_data_equal_eager(key):
    def f(X, i, j):
        return np.sum(np.sin(KEYS[key](X, i, j)))

    rng = np.random.default_rng(11)
    X = rng.normal(size=(5, 4, 3))
    g = fa.compile(f, backend=COMPILED)
    for _ in range(3):
        i, j = rng.integers(-5, 5, 3), rng.integers(-3, 3, 3)
        assert np.allclose(g.value(X, i, j), f(X, i, j), rtol=1e-12)
        assert np.allclose(g(X, i, j), fa.grad(f)(X, i, j), rtol=1e-12)
    assert g.cache_info()["traces"] == 1


def test_hessian_vector_products_with_integer_data_reuse_one_trace():
    rng = np.random.default_rng(12)
    loss = make_program(sorted(TERMS))
    w, X = rng.normal(size=3), rng.normal(size=(6, 3))
    g = fa.compile(loss, backend=COMPILED)
    for _ in range(3):
        data, v = minibatch(rng, 6, 3, 5, 3), rng.normal(size=3)
        H = fa.hessian(lambda w: loss(w, X, *data))(w)
        assert np.allclose(g.hvp(w, X, *data, v), H @ v, rtol=1e-10, atol=1e-12)
        assert np.allclose(g.hessian(w, X, *data), H, rtol=1e-10, atol=1e-12)
    assert g._hvp.cache_info()["traces"] == 1
    assert g._hessian.cache_info()["traces"] == 1


def _per_example_loop(w, X, idx, labels):
    out = 0.0
    for i in range(idx.shape[0]):
        z = X[idx[i]] @ w
        out = out + np.log1p(np.exp(-z)) * (labels[i] == 1) + z * labels[i]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_python_loop_over_the_minibatch_rerolls_and_checks_each_index(backend):
    rng = np.random.default_rng(13)
    w, X = rng.normal(size=3), rng.normal(size=(50, 3))
    g = fa.compile(_per_example_loop, backend=backend)
    for _ in range(3):
        idx, labels = rng.integers(-50, 50, 40), rng.integers(0, 2, 40)
        assert np.allclose(g.value(w, X, idx, labels), _per_example_loop(w, X, idx, labels))
        assert np.allclose(g(w, X, idx, labels), fa.grad(_per_example_loop)(w, X, idx, labels))
    assert g.cache_info()["traces"] == 1
    assert len(g.tape.instrs) < 40  # the loop is rerolled, not unrolled per example
    idx[17] = 50
    with pytest.raises(IndexError):
        g(w, X, idx, labels)


@pytest.mark.skipif("c" not in BACKENDS, reason="C extension not built")
def test_corrupt_row_gathers_are_rejected_or_run_safely():
    """GATHER_ROWS_V and SCATTER_ADD_ROWS_V with any word of the program
    changed: the validator rejects the program, or it runs (a wrong index is
    an IndexError), never a crash or a read outside the arena."""
    from fastad.backends.lower import lower

    def f(x, k):
        return np.sum(fnp.gather_rows(x, k) ** 2) + np.sum(fnp.scatter_add_rows(x, k, x[:3]))

    x, k = np.arange(12.0).reshape(4, 3), np.array([3.0, -1.0, 0.0])
    program = lower(fa.make_tape(f)(x, k))
    starts = [pc for pc, name, _ in program.instructions()
              if name in ("GATHER_ROWS_V", "SCATTER_ADD_ROWS_V")]
    assert len(starts) == 2
    rng = np.random.default_rng(14)
    rejected = ran = 0
    for _ in range(600):
        code = program.code.copy()
        pc = starts[rng.integers(2)]
        code[pc + 1 + rng.integers(7)] = rng.choice([-1, 0, 1, 3, 5, 2**20, 2**31 - 1, -2**31,
                                                     rng.integers(-50, 50)])
        hostile = altered(program, code=code)
        exe = executable_or_none(hostile)
        if exe is None:
            rejected += 1
            continue
        try:
            exe.run([x, k])
        except IndexError:
            pass
        ran += 1
    assert rejected > 100 and ran > 100


_INTEGER_RESULTS = [lambda a, n: a + n, lambda a, n: a * 2 - n, lambda a, n: -a,
                    lambda a, n: np.abs(a - 3), lambda a, n: np.maximum(a, n), lambda a, n: a[1:],
                    lambda a, n: a[0] * n, lambda a, n: a.astype(np.int16) + 1,
                    lambda a, n: n + 1, lambda a, n: a + np.int64(2),
                    lambda a, n: np.arange(3) + n, lambda a, n: np.maximum(n, 2) * a,
                    lambda a, n: a ** 2 + n ** 2, lambda a, n: 2 ** n - a ** n]


@settings(max_examples=40, deadline=None)
@given(chain=st.lists(st.integers(0, len(_INTEGER_RESULTS) - 1), min_size=1, max_size=3),
       dtype=st.sampled_from(["int16", "int32", "int64"]),
       n_kind=st.sampled_from(["int", "int64", "int32"]))
def test_integer_results_have_the_eager_type(chain, dtype, n_kind):
    """A compiled function's results computed from integers taken as data
    come back as the eager function's integers (Python int, NumPy scalar or
    array, of its dtype), not as the float64 the tape holds them in; also
    after pickling.  (Values that would wrap around in a narrow dtype do not:
    the tape computes them exactly.)"""
    import pickle
    a = np.array([4, 1, 7], dtype)
    n = 3 if n_kind == "int" else np.dtype(n_kind).type(3)

    def f(x, a, n):
        out = a
        for k in chain:
            out = _INTEGER_RESULTS[k](out if np.ndim(out) else a, n)
        return x * 2.0, out
    want = f(1.5, a, n)
    g = fa.jit(f, backend=COMPILED)
    for got in (g(1.5, a, n), g(1.5, a + 1, n), pickle.loads(pickle.dumps(g))(1.5, a, n)):
        assert type(got[1]) is type(f(1.5, a, n)[1])
        assert np.asarray(got[1]).dtype == np.asarray(want[1]).dtype
    np.testing.assert_array_equal(g(1.5, a, n)[1], want[1])
    np.testing.assert_array_equal(g(1.5, a + 1, n)[1], f(1.5, a + 1, n)[1])
    assert g.cache_info()["traces"] == 1


def test_a_saved_result_cast_out_of_range_is_refused():
    from fastad.core.errors import TapeError
    from fastad.signatures import Structure, check_structure
    g = fa.jit(lambda x, a: (x * 2.0, a + 1))
    g(1.0, np.arange(3))
    spec = g._spec
    entry = next(iter(spec.cache.values()))[0]
    for casts in (((5, "int"),), ((0, "<f8"),), (("0", "int"),)):
        with pytest.raises(TapeError, match="malformed"):
            check_structure(spec, Structure(entry.structure.out_tree, entry.structure.in_trees,
                                            casts), entry.tape)


_BOOLEAN_ARITHMETIC = [lambda m: m + m, lambda m: m * m, lambda m: m + True, lambda m: np.maximum(m, ~m),
                       lambda m: np.minimum(m, True) * m, lambda m: m * ~m + m]


@settings(max_examples=20, deadline=None)
@given(chain=st.lists(st.integers(0, len(_BOOLEAN_ARITHMETIC) - 1), min_size=1, max_size=3),
       backend=st.sampled_from(BACKENDS))
def test_arithmetic_on_boolean_data_is_numpys(chain, backend):
    """``mask + mask`` is NumPy's logical or (``*`` its and): a backend that
    would compute it in floats (the VM) or integers (Numba's operators)
    hands the tape on, and the result and gradient are the eager ones."""
    import warnings
    m = np.array([True, False, True, False])

    def f(x, m):
        for k in chain:
            m = _BOOLEAN_ARITHMETIC[k](m)
        return m, np.sum(x * m * x)
    x = np.linspace(0.5, 2.0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fa.jit(f, backend=backend)(x, m)
        grad = fa.compile(lambda x, m: f(x, m)[1], backend=backend)(x, m)
    want = f(x, m)
    assert got[0].dtype == want[0].dtype and np.array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-15)
    np.testing.assert_allclose(grad, fa.grad(lambda x: f(x, m)[1])(x), rtol=1e-15)


# Per-example terms of (w, x, label, mask): x (d,), label an int in 0..d-1,
# mask a bool; vmap batches label and mask as data.
EXAMPLE_TERMS = {
    "regression": lambda w, x, y, m: (fnp.dot(x, w) - y) ** 2,
    "pick": lambda w, x, y, m: -fnp.log(fnp.exp(x * w)[y] / fnp.sum(fnp.exp(x * w))),
    "masked": lambda w, x, y, m: fnp.where(m, fnp.sum(fnp.sin(x * w)), fnp.sum(x * w) ** 2),
    "label_arithmetic": lambda w, x, y, m: w[(y + 1) % x.size] * x[y] + (2 * y + 1) * w[0],
    "argmax_hit": lambda w, x, y, m: fnp.sum(w * x) * (fnp.argmax(x * w) == y),
    # a jax.Array indexed by the label: a gather, as JAX's
    "table_row": lambda w, x, y, m: fnp.sum(_TABLE[y, :x.size] * w * x),
    # a loop's counter plus the label is an integer again
    "counter_plus_label": lambda w, x, y, m: fa.lax.fori_loop(
        0, 2, lambda t, acc: acc + w[(t + y) % x.size] * x[t % x.size], 0.0),
    # a NumPy array indexed by the label's Python value: one example at a time
    "python_index": lambda w, x, y, m: fnp.sum(w * x) * _NUMBERS[int(y)],
}
_TABLE = fnp.asarray(np.linspace(0.5, 2.0, 16).reshape(4, 4))
_NUMBERS = np.array([1.5, -0.5, 2.0, 0.25])


@settings(max_examples=25, deadline=None)
@given(names=st.lists(st.sampled_from(sorted(EXAMPLE_TERMS)), min_size=1, max_size=3,
                      unique=True),
       b=st.integers(1, 5), d=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_vmap_batches_integer_and_boolean_arguments(names, b, d, seed):
    """Per-example gradients with labels and masks (JAX's ``vmap(grad(loss),
    in_axes=(None, 0, 0, 0))``) equal the loop over the examples, eager and
    compiled; integer results come back as NumPy's integers."""
    rng = np.random.default_rng(seed)
    warnings.filterwarnings("ignore", message=".*one example at a time")

    def loss(w, x, y, m):
        return sum(EXAMPLE_TERMS[name](w, x, y, m) for name in names)
    w, X = rng.standard_normal(d), rng.standard_normal((b, d))
    labels, mask = rng.integers(0, d, b), rng.random(b) < 0.5
    want = np.array([fa.grad(loss)(w, x, y, m) for x, y, m in zip(X, labels, mask)])
    per_example = fa.vmap(fa.grad(loss), in_axes=(None, 0, 0, 0))
    np.testing.assert_allclose(per_example(w, X, labels, mask), want, rtol=1e-12, atol=1e-14)
    jitted = fa.jit(per_example, backend=COMPILED)
    for _ in range(2):  # new labels and masks: one trace
        np.testing.assert_allclose(jitted(w, X, labels, mask), np.array(
            [fa.grad(loss)(w, x, y, m) for x, y, m in zip(X, labels, mask)]),
            rtol=1e-12, atol=1e-14)
        labels, mask = rng.integers(0, d, b), rng.random(b) < 0.5
    # (int(y) needs the labels' values: keyed by them)
    assert jitted.cache_info()["traces"] == 1 or "python_index" in names
    ints = fa.vmap(lambda x, y: (fnp.argmax(x), y + 1))(X, labels)
    np.testing.assert_array_equal(ints[0], np.argmax(X, axis=1))
    np.testing.assert_array_equal(ints[1], labels + 1)
    assert ints[0].dtype == np.argmax(X, axis=1).dtype and ints[1].dtype == labels.dtype


# Functions whose integer arguments set the result's structure (sections,
# axes, sublists, repetitions, widths), which NumPy reads as Python ints: a
# trace that fails with them as data keys them by value and traces again.
_STRUCTURAL = {
    "split": lambda x, k: fnp.sum(fnp.split(x, k)[0] ** 2),
    "array_split_axis": lambda x, k: fnp.sum(fnp.array_split(x.reshape(2, -1), k, axis=1)[-1]),
    "stack_axis": lambda x, k: fnp.sum(fnp.stack([x, 2 * x], k % 2) * fnp.arange(x.size * 2.0)
                                       .reshape((2, -1) if k % 2 == 0 else (-1, 2))),
    "tensordot_axes": lambda x, k: fnp.sum(fnp.tensordot(x.reshape(2, -1), x.reshape(-1, 2),
                                                         k % 2) ** 2),
    "einsum_sublists": lambda x, k: fnp.sum(fnp.einsum(x.reshape(2, -1), (0, 1 + k % 2),
                                                       (1 + k % 2,)) ** 2),
    "tile": lambda x, k: fnp.sum(fnp.tile(x, k) * fnp.arange(x.size * k)),
    "roll": lambda x, k: fnp.sum(fnp.roll(x, k) * fnp.arange(x.size)),
    "pad": lambda x, k: fnp.sum(fnp.pad(x, (k, 1)) * fnp.arange(x.size + k + 1.0)),
    "diff": lambda x, k: fnp.sum(fnp.diff(x, k % 3) ** 2),
    "repeat": lambda x, k: fnp.sum(fnp.repeat(x, k) ** 3),
}


@pytest.mark.parametrize("name", sorted(_STRUCTURAL))
def test_integer_arguments_that_set_structure_are_keyed_by_value(name):
    f = _STRUCTURAL[name]
    g = fa.jit(fa.value_and_grad(f), backend=COMPILED)
    rng = np.random.default_rng(0)
    for k in (2, 2, 1, 2):
        x = rng.normal(size=6)
        value, grad = g(x, k)
        want_value, want_grad = fa.value_and_grad(f)(x, k)
        np.testing.assert_allclose(value, want_value, rtol=1e-14)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-14)
    assert g.cache_info()["traces"] <= 3  # the one with k as data, then one per value


def test_a_genuine_error_with_integer_data_is_raised_as_it_is():
    with pytest.raises(ValueError, match="cannot reshape"):
        fa.jit(lambda x, k: x.reshape(k, 4), backend=COMPILED)(np.ones(6), 2)
