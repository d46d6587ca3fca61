"""A captured float array whose values plain NumPy reads while the function
is traced (a reduction, a copy, a branch, an integer taken from it) is
guarded by its contents; one the tape only reads by reference is not.

Generated cases: a plain read of a captured array W (``READS``: what a
function computes from W outside the traced operations) combined with W's
use by reference in a traced product, W held by one of several kinds of
binding (``HOLDERS``), compiled with ``jit`` or as a gradient, then changed
in place, several times.  The compiled result must equal the eager one after
every change, on each backend.  And a function that only uses W in traced
operations reads the changed values without a retrace.
"""
from __future__ import annotations

import functools
import hashlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.core.watched import WatchedArray
from conftest import BACKENDS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# what a function computes from W (3x4) in plain NumPy and Python while traced
READS = {
    "sum_axis": lambda W: W.sum(axis=0)[:3],
    "power_of_row": lambda W: W[0, :3] ** 2,
    "fancy_copy": lambda W: W[[2, 0]][0, :3],
    "diag": lambda W: np.diag(W[:, :3]),
    "branch_max": lambda W: 2.0 if W.max() > 1.5 else 1.0,
    "branch_item": lambda W: 3.0 if W[1, 1] < 0 else -1.0,
    "float_mean": lambda W: float(W.mean()),
    "int_slice": lambda W: np.ones(3) * (int(abs(W[0, 0]) * 3) % 3 + 1),
    "sorted_row": lambda W: np.sort(W[1])[:3],
    "tolist": lambda W: np.array(W.tolist()[2][:3]),
    "iterate_row": lambda W: np.array([v for v in W[0]][:3]),
    "copy": lambda W: W.copy()[1, :3],
    "astype": lambda W: W.astype(np.float32)[0, :3].astype(np.float64),
    "argmax": lambda W: np.ones(3) * float(W.argmax()),
    "asarray": lambda W: np.asarray(W)[:, 0],
    "ufunc": lambda W: np.tanh(W[2, :3]),
    "negated": lambda W: -W[1, 1:],
    "boolean_mask": lambda W: np.where(W[0, :3] > 0, 1.0, -1.0),
    "repr": lambda W: np.ones(3) * (len(repr(W)) % 5),
    "matmul_plain": lambda W: (W @ W.T)[0],
    "concatenate": lambda W: np.concatenate([W[0, :1], W[1, :2]]),
    "in_fastad_numpy": lambda W: fnp.max(W, axis=1),
    "nothing": lambda W: np.ones(3),
    # C code that takes the array's memory through the buffer protocol (a stand-in
    # refuses it: traced again with W itself, read)
    "memoryview": lambda W: np.array(memoryview(W).tolist()[1][:3]),
    "frombuffer": lambda W: np.frombuffer(W, dtype=np.float64)[5:8].copy(),
    "bytes": lambda W: np.frombuffer(bytes(W), dtype=np.float64)[:3].copy(),
    "hash": lambda W: np.ones(3) * (hashlib.sha1(W).digest()[0] % 3),
    # compiled code that takes the array's memory (bound as the function's ``read``)
    "numba_sum_axis": numba.njit(lambda W: W.sum(axis=0)[:3]),
    "numba_loop": numba.njit(lambda W: np.array([W[i, i] * W[0, i] for i in range(3)])),
}


def _holders(value):
    """kind -> (f(read) -> traced function reading W through that kind, W now)."""
    def closure(read):
        W = value

        def f(x):
            return fnp.sum((x @ W.T) * read(W)) + fnp.sum(W[0] * x)
        return f
    g = {"fnp": fnp}

    def global_(read):
        g["W"], g["read"] = value, read
        exec("def f(x):\n    return fnp.sum((x @ W.T) * read(W)) + fnp.sum(W[0] * x)\n", g)
        return g["f"]

    def default(read):
        return lambda x, W=value: fnp.sum((x @ W.T) * read(W)) + fnp.sum(W[0] * x)

    def partial_keyword(read):
        return functools.partial(lambda x, W: fnp.sum((x @ W.T) * read(W))
                                 + fnp.sum(W[0] * x), W=value)

    class Model:
        def __init__(self, read):
            self.W, self.read = value, read

        def __call__(self, x):
            return fnp.sum((x @ self.W.T) * self.read(self.W)) + fnp.sum(self.W[0] * x)

    def tuple_item(read):
        held = (value,)
        return lambda x: fnp.sum((x @ held[0].T) * read(held[0])) + fnp.sum(held[0][0] * x)
    return {"closure": closure, "global": global_, "default": default,
            "partial_keyword": partial_keyword, "attribute": Model,
            "tuple_item": tuple_item}


HOLDERS = list(_holders(None))
X = np.array([0.4, -1.1, 0.7, 2.0])


@settings(max_examples=40, deadline=None)
@given(read=st.sampled_from(sorted(READS)), holder=st.sampled_from(HOLDERS),
       how=st.sampled_from(["jit", "grad"]), backend=st.sampled_from(BACKENDS),
       seed=st.integers(0, 2 ** 16))
def test_plain_reads_of_captured_arrays_never_stale(read, holder, how, backend, seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(3, 4))
    f = _holders(W)[holder](READS[read])
    eager = f if how == "jit" else fa.grad(f)
    compiled = fa.jit(eager, backend=backend)
    for step in range(4):
        np.testing.assert_allclose(compiled(X), eager(X), rtol=1e-12, atol=1e-12,
                                   err_msg=f"{read} through {holder}, change {step}")
        if step % 2:
            W[...] = rng.normal(size=W.shape) * 2.0
        else:
            W[rng.integers(3), rng.integers(4)] = rng.normal() * 2.0
    assert not isinstance(W, WatchedArray) and type(W) is np.ndarray


@pytest.mark.parametrize("use", ["x @ W.T", "W @ y", "np.dot(W, y)", "W[0] * x",
                                 "x * W[1, :]", "np.tanh(W @ y + 1.0)", "W.T @ (W @ y)",
                                 "np.einsum('ij,j->i', W, y)", "(x - W) ** 2",
                                 "sum(np.dot(r, y) for r in W)", "W.reshape(-1)[:4] * x"])
def test_uses_by_reference_need_no_retrace(use):
    """A data matrix used only by traced operations is read at each call: a
    change in place is seen without a retrace (no pass over it per call)."""
    W = np.random.default_rng(0).normal(size=(3, 4))
    env = {"np": fnp, "W": W}
    exec(f"def f(x):\n    y = x * 1.0\n    return np.sum({use})\n", env)
    f = env["f"]
    compiled = fa.jit(f, backend=BACKENDS[-1])
    for k in range(3):
        np.testing.assert_allclose(compiled(X), f(X), rtol=1e-12, atol=1e-12)
        W *= 1.5 + k
    assert compiled.cache_info()["traces"] == 1


def test_watched_array_is_gone_after_the_trace():
    """The bindings hold the user's array again after a trace, also one that raised."""
    W = np.ones((2, 2))
    holder = {"W": W}

    def f(x):
        if holder["W"][0, 0] > 0:
            raise ValueError("from the function")
        return fnp.sum(x @ holder["W"])
    with pytest.raises(ValueError, match="from the function"):
        fa.jit(f)(np.ones(2))
    assert holder["W"] is W
    W[0, 0] = -1.0
    assert fa.jit(f)(np.ones(2)) == f(np.ones(2))
    assert holder["W"] is W


@pytest.mark.parametrize("read", ["branch_max", "sum_axis", "fancy_copy", "nothing"])
def test_sparse_plans_follow_plain_reads(read):
    """A sparse Hessian's pattern and values follow a captured array that
    plain NumPy read while traced (a branch can change the pattern)."""
    rng = np.random.default_rng(1)
    W = rng.normal(size=(3, 4))
    plain = READS[read]

    def f(x):
        c = plain(W)
        if W[0, 0] > 0:
            return fnp.sum(x[1:] * x[:-1] * W[1, 1:]) + fnp.sum(x[:3] ** 3 * c)
        return fnp.sum(x ** 4 * W[2]) + fnp.sum(x[1:] ** 2 * c)
    compiled = fa.compile(f, backend=BACKENDS[-1])
    for step in range(4):
        H = compiled.hessian(X, sparse=True).toarray()
        np.testing.assert_allclose(H, fa.hessian(f)(X), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{read}, change {step}")
        W[0, 0] = -W[0, 0]
        W[rng.integers(3), rng.integers(4)] = rng.normal() * 2.0


@pytest.mark.parametrize("index", ["X[idx]", "X[idx, :]", "X[idx][:, 1:]", "X[:, idx[:2]].T",
                                   "X[idx[0]] * 2.0", "X[idx, idx[:1]]",
                                   "X[idx] * labels[idx][:, None]", "X[labels[idx]]"])
def test_minibatch_indices_into_captured_data_need_no_retrace(index):
    """A captured data matrix (and integer labels) indexed by the integer
    arrays of a minibatch (data arguments): one trace for every new index
    array, values read at each call."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 5))
    env = {"np": fnp, "X": X, "labels": rng.integers(0, 5, size=40)}
    exec(f"def loss(w, idx):\n    return np.sum(({index}) ** 2 * w[0]) + np.sum(w ** 2)\n", env)
    loss = env["loss"]
    w = rng.normal(size=5)
    compiled = fa.compile(loss, backend=BACKENDS[-1])
    for step in range(6):
        idx = rng.integers(0, 5, size=4)
        np.testing.assert_allclose(compiled(w, idx), fa.grad(loss)(w, idx), rtol=1e-12,
                                   atol=1e-12)
        X *= 1.1
    assert compiled.cache_info()["traces"] == 1


class _Layer:
    def __init__(self, W, scale):
        self.W, self.scale = W, scale


class _Net:
    def __init__(self, rng):
        self.layers = [_Layer(rng.normal(size=(3, 4)), 1.5), _Layer(rng.normal(size=(2, 3)), 0.5)]
        self.offset = rng.normal(size=2)


@settings(max_examples=20, deadline=None)
@given(changes=st.lists(st.sampled_from(["in_place", "rebind_array", "rebind_number",
                                         "rebind_layer", "offset_in_place"]),
                        min_size=1, max_size=5),
       how=st.sampled_from(["jit", "grad"]), backend=st.sampled_from(BACKENDS),
       seed=st.integers(0, 2 ** 16))
def test_objects_passed_as_arguments_are_read_like_captured_ones(changes, how, backend, seed):
    """An object argument (keyed by identity) is state: its attributes the
    function reads are read at each call or guarded, as a captured object's."""
    rng = np.random.default_rng(seed)
    net = _Net(rng)

    def loss(x, net):
        h = x
        for layer in net.layers:
            h = fnp.tanh(layer.W @ h) * layer.scale
        return fnp.sum((h - net.offset) ** 2)
    eager = loss if how == "jit" else fa.grad(loss)
    compiled = fa.jit(eager, backend=backend)
    for change in changes + ["none"]:
        np.testing.assert_allclose(compiled(X, net), eager(X, net), rtol=1e-12, atol=1e-12,
                                   err_msg=change)
        layer = net.layers[rng.integers(2)]
        if change == "in_place":
            layer.W[0, rng.integers(layer.W.shape[1])] += 1.0
        elif change == "rebind_array":
            layer.W = rng.normal(size=layer.W.shape)
        elif change == "rebind_number":
            layer.scale = float(rng.normal())
        elif change == "rebind_layer":
            net.layers[0] = _Layer(rng.normal(size=(3, 4)), 2.0)
        elif change == "offset_in_place":
            net.offset[1] = rng.normal()


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("read", ["numba_sum_axis", "numba_loop"])
def test_numba_functions_read_captured_arrays(read, holder, compiled_backend):
    """A Numba function takes an array's memory, which the stand-in watching
    a captured array has not: it is called with the array, read."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(3, 4))
    f = _holders(W)[holder](READS[read])
    compiled = fa.jit(f, backend=compiled_backend)
    for step in range(3):
        np.testing.assert_allclose(compiled(X), f(X), rtol=1e-12, err_msg=f"change {step}")
        W[step, 1] += 1.5


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("read", ["memoryview", "frombuffer", "bytes", "hash"])
def test_buffer_reads_of_captured_arrays(read, holder, compiled_backend):
    """C code that takes a captured array's memory through the buffer
    protocol (which the stand-in watching it cannot give) gets the array:
    the function is traced again with it, guarded by its contents, and every
    later change is seen, with or without a gradient."""
    rng = np.random.default_rng(4)
    W = rng.normal(size=(3, 4))
    f = _holders(W)[holder](READS[read])
    compiled, gradient = fa.jit(f, backend=compiled_backend), fa.compile(f, backend=compiled_backend)
    for step in range(3):
        np.testing.assert_allclose(compiled(X), f(X), rtol=1e-12, err_msg=f"change {step}")
        np.testing.assert_allclose(gradient(X), fa.grad(f)(X), rtol=1e-12,
                                   err_msg=f"change {step}")
        W[step, step] += 1.5


def test_a_type_error_of_the_function_itself_is_raised():
    """A TypeError while captured arrays are watched is traced again once
    without them; the function's own error then comes through."""
    W = np.ones((2, 2))

    def f(x):
        return fnp.sum(x @ W) + len(5)
    with pytest.raises(TypeError, match="has no len"):
        fa.jit(f)(np.ones(2))
