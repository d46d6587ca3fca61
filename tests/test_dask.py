"""fastad.dask: gradients over Dask collections on a LocalCluster of two worker
processes (loopback only), checked against local evaluation."""
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")

import fastad as fa  # noqa: E402
import fastad.dask  # noqa: E402

rng = np.random.default_rng(5)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def compiled_here():
    """A compiled function whose source exists only in this process: defined
    locally, so plain pickle could not ship the function itself."""
    def loss(params, x, y):
        W, b = params
        return np.sum((np.tanh(x @ W + b) - y) ** 2)
    return fa.compile(loss)


def test_compiled_functions_pickle_as_tapes():
    g = compiled_here()
    params = (rng.standard_normal((3, 2)), rng.standard_normal(2))
    x, y = rng.standard_normal((1, 3)), rng.standard_normal((1, 2))
    want = g(params, x, y)
    loaded = pickle.loads(pickle.dumps(g))
    assert loaded.fn is None
    for got, expected in zip(loaded(params, x, y), want):
        np.testing.assert_array_equal(got, expected)


def test_map_gradients_over_arrays_matches_local(client):
    g = compiled_here()
    params = (rng.standard_normal((3, 2)), rng.standard_normal(2))
    X, Y = rng.standard_normal((50, 1, 3)), rng.standard_normal((50, 1, 2))
    dX = da.from_array(X, chunks=(16, 1, 3))  # blocks of 16, 16, 16 and 2 examples
    dY = da.from_array(Y, chunks=(10, 1, 2))  # realigned to dX's blocks
    grads = fastad.dask.map_gradients(g, params, dX, dY)
    assert all(isinstance(leaf, da.Array) for leaf in grads)
    got = client.compute(grads, sync=True)
    local = g.batch(params, X, Y, in_axes=(None, 0, 0))
    loop = [g(params, x, y) for x, y in zip(X, Y)]
    for k, leaf in enumerate(got):
        np.testing.assert_allclose(leaf, local[k], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(leaf, np.stack([l[k] for l in loop]), rtol=1e-12, atol=1e-12)
    # the worker processes ran fastad, from the pickled tapes
    assert any(client.run(lambda: "fastad.compiled" in sys.modules).values())


def test_map_gradients_over_a_bag_matches_local(client):
    g = fa.compile(lambda x: np.sum(np.sin(x) * x ** 2))
    xs = [rng.standard_normal(4) for _ in range(9)]
    got = fastad.dask.map_gradients(g, db.from_sequence(xs, npartitions=3)).compute()
    for x, grad in zip(xs, got):
        np.testing.assert_allclose(grad, g(x), rtol=1e-14)


def test_dask_own_map_and_submit_ship_a_function_never_called_here(client):
    """client.map / client.submit with a compiled function that has traced
    nothing: it travels as its function (cloudpickle, by value) and each
    worker traces it; once traced, it travels as tapes (the test above)."""
    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)

    g, j = fa.compile(loss), fa.jit(loss)
    w = rng.standard_normal(3)
    xs = [rng.standard_normal((k + 2, 3)) for k in range(5)]  # a new shape each
    got = client.gather(client.map(g, [w] * len(xs), xs))
    values = client.gather(client.map(j, [w] * len(xs), xs))
    one = client.submit(g, w, xs[0]).result()
    for x, grad, value in zip(xs, got, values):
        np.testing.assert_allclose(grad, fa.grad(loss)(w, x), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(value, loss(w, x), rtol=1e-12)
    np.testing.assert_allclose(one, fa.grad(loss)(w, xs[0]), rtol=1e-12, atol=1e-14)
    assert g.cache_info()["traces"] == 0  # traced on the workers only


def test_pickle_of_an_untraced_function_names_the_function():
    g = fa.compile(np.linalg.norm)  # importable: plain pickle names it
    loaded = pickle.loads(pickle.dumps(g))
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose(loaded(x), x / 5.0, rtol=1e-14)
    g(x)
    assert pickle.loads(pickle.dumps(g)).fn is None  # traced: tapes only


def test_map_gradients_bad_input():
    g = compiled_here()
    with pytest.raises(ValueError, match="Dask arrays"):
        fastad.dask.map_gradients(g, np.ones((3, 1, 3)))
    with pytest.raises(ValueError, match="same length"):
        fastad.dask.map_gradients(g, None, da.ones((4, 1, 3)), da.ones((5, 1, 2)))
