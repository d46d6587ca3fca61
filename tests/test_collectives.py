"""Collectives over a vmapped axis (``vmap(f, axis_name="i")`` with
``lax.psum`` and the rest): generated programs of per-example operations
and collectives, each against the same program written on the whole batch
in NumPy; derivatives against central differences; JAX's convention that
``vmap(grad(f))`` is the gradient of the sum over the examples; jit, compile
and nesting; and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import lax
from fastad.core.errors import TracingError

# a Case of tests/test_primitives.py cannot draw these (they need a vmap naming an axis)
ELSEWHERE = {name: "test_derivatives_match_central_differences"
             for name in ("psum", "all_gather", "psum_scatter")}

# (per-example function of x and the example count n, the same on the batch X)
OPS = {
    "sin": (lambda x, n: fnp.sin(x), lambda X: np.sin(X)),
    "square": (lambda x, n: x * x, lambda X: X * X),
    "decay": (lambda x, n: fnp.exp(-0.3 * x) + x, lambda X: np.exp(-0.3 * X) + X),
    "psum": (lambda x, n: x * lax.psum(x, "i"), lambda X: X * X.sum(0)),
    "pmean": (lambda x, n: x - lax.pmean(x, "i"), lambda X: X - X.mean(0)),
    "pmax": (lambda x, n: x * lax.pmax(x, "i"), lambda X: X * X.max(0)),
    "pmin": (lambda x, n: x + lax.pmin(fnp.sin(x), "i"), lambda X: X + np.sin(X).min(0)),
    "gather": (lambda x, n: x * fnp.sum(lax.all_gather(x, "i") * _weights(n)[:, None], axis=0),
               lambda X: X * (_weights(len(X)) @ X)),
    "scatter": (lambda x, n: lax.psum_scatter(fnp.outer(_weights(n), x), "i") + x,
                lambda X: _weights(len(X))[:, None] * X.sum(0) + X),
    "shift": (lambda x, n: lax.ppermute(x, "i", [(k, (k + 1) % n) for k in range(n)]) * x,
              lambda X: np.roll(X, 1, axis=0) * X),
    "drop": (lambda x, n: lax.ppermute(x, "i", [(k, k + 1) for k in range(n - 1)]) + x,
             lambda X: np.concatenate([np.zeros_like(X[:1]), X[:-1]]) + X),
    "index": (lambda x, n: x * (lax.axis_index("i") + 1.0),
              lambda X: X * (np.arange(len(X)) + 1.0)[:, None]),
}


def _weights(n: int) -> np.ndarray:
    return np.cos(np.arange(n) * 0.7) + 0.5


def _program(names):
    def per_example(x):
        n = lax.axis_size("i")
        for name in names:
            x = OPS[name][0](x, n)
        return x

    def batch(X):
        for name in names:
            X = OPS[name][1](X)
        return X
    return per_example, batch


programs = st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=4)
sizes = st.tuples(st.integers(1, 4), st.integers(1, 3))


def _data(n, k, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 1.2, (n, k)), rng.normal(size=(n, k)), rng.normal(size=(n, k))


@settings(max_examples=40, deadline=None)
@given(programs, sizes, st.integers(0, 2**31 - 1))
def test_values_match_the_whole_batch(names, shape, seed) -> None:
    f, batch = _program(names)
    X, _, _ = _data(*shape, seed)
    want = batch(X)
    np.testing.assert_allclose(fa.vmap(f, axis_name="i")(X), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fa.jit(fa.vmap(f, axis_name="i"))(X), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fa.vmap(fa.jit(f), axis_name="i")(X), want, rtol=1e-12, atol=1e-12)


def _central(fun, X, D, h=1e-6):
    return (fun(X + h * D) - fun(X - h * D)) / (2 * h)


@settings(max_examples=30, deadline=None)
@given(programs, sizes, st.integers(0, 2**31 - 1))
def test_derivatives_match_central_differences(names, shape, seed) -> None:
    f, batch = _program(names)
    X, R, D = _data(*shape, seed)
    loss = lambda X: fnp.sum(fa.vmap(f, axis_name="i")(X) * R)
    fd = _central(lambda X: np.sum(batch(X) * R), X, D)
    g = fa.grad(loss)(X)
    assert np.sum(g * D) == pytest.approx(fd, rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(fa.jit(fa.grad(loss))(X), g, rtol=1e-12, atol=1e-12)
    # JAX's convention: vmap(grad) of the examples' losses is the gradient of their sum
    per = fa.vmap(fa.grad(lambda x, r: fnp.sum(f(x) * r)), axis_name="i")(X, R)
    np.testing.assert_allclose(per, g, rtol=1e-10, atol=1e-12)
    _, tangent = fa.jvp(fa.vmap(f, axis_name="i"), (X,), (D,))
    np.testing.assert_allclose(tangent, _central(batch, X, D), rtol=1e-6, atol=1e-7)
    per_jvp = fa.vmap(lambda x, d: fa.jvp(f, (x,), (d,))[1], axis_name="i")(X, D)
    np.testing.assert_allclose(per_jvp, tangent, rtol=1e-10, atol=1e-12)


def test_second_order_under_vmap() -> None:
    """vmap(hessian) with a psum: the forward-over-reverse of psum's rules."""
    xs = np.array([1.0, 2.0, 4.0])
    h = fa.vmap(fa.hessian(lambda x: x * lax.psum(x ** 2, "i")), axis_name="i")(xs)
    # the gradient of sum_j x_j S2 is S2 + 2 x_j S1; its derivative along all-ones is
    # 2 S1 + 2 S1 + 2 n x_j
    s1, n = xs.sum(), len(xs)
    np.testing.assert_allclose(h, 4 * s1 + 2 * n * xs)


def test_nested_axes() -> None:
    X = np.arange(1.0, 7.0).reshape(2, 3)
    both = fa.vmap(fa.vmap(lambda x: x / lax.psum(x, ("i", "j")), axis_name="j"), axis_name="i")
    np.testing.assert_allclose(both(X), X / X.sum())
    outer = fa.vmap(fa.vmap(lambda x: x / lax.psum(x, "i"), axis_name="j"), axis_name="i")
    np.testing.assert_allclose(outer(X), X / X.sum(0))
    inner = fa.vmap(fa.vmap(lambda x: x / lax.psum(x, "j"), axis_name="j"), axis_name="i")
    np.testing.assert_allclose(inner(X), X / X.sum(1, keepdims=True))
    gathered = fa.vmap(fa.vmap(lambda x: lax.all_gather(x, "i"), axis_name="j"), axis_name="i")
    np.testing.assert_allclose(gathered(X), np.broadcast_to(X.T[None], (2, 3, 2)))
    index = fa.vmap(fa.vmap(lambda x: x * 0 + lax.axis_index(("i", "j")), axis_name="j"),
                    axis_name="i")
    np.testing.assert_array_equal(index(X), np.arange(6.0).reshape(2, 3))
    W = np.arange(12.0).reshape(2, 3, 2)  # example (i, j) holds a row per i
    scattered = fa.vmap(fa.vmap(lambda w: lax.psum_scatter(w, "i"), axis_name="j"),
                        axis_name="i")(W)
    np.testing.assert_allclose(scattered, W.sum(0).T)
    loss = lambda X: fnp.sum(outer(X) ** 2)
    D = np.cos(X)
    fd = (np.sum(((X + 1e-6 * D) / (X + 1e-6 * D).sum(0)) ** 2)
          - np.sum(((X - 1e-6 * D) / (X - 1e-6 * D).sum(0)) ** 2)) / 2e-6
    assert np.sum(fa.grad(loss)(X) * D) == pytest.approx(fd, rel=1e-6)


def test_loops_and_compiled_functions_inside() -> None:
    xs = np.array([1.0, 2.0, 4.0])
    body = lambda c, _: (c / lax.psum(c, "i") + 0.1 * c, None)
    scanned = fa.vmap(lambda x: lax.scan(body, x, None, length=3)[0], axis_name="i")
    want = xs.copy()
    for _ in range(3):
        want = want / want.sum() + 0.1 * want
    np.testing.assert_allclose(scanned(xs), want)
    np.testing.assert_allclose(fa.jit(scanned)(xs), want)
    looped = fa.vmap(lambda x: lax.fori_loop(0, 3, lambda i, c: body(c, None)[0], x),
                     axis_name="i")
    np.testing.assert_allclose(looped(xs), want)
    g = fa.grad(lambda xs: fnp.sum(scanned(xs) ** 2))(xs)
    D = np.array([0.3, -0.2, 0.5])

    def plain(xs):
        for _ in range(3):
            xs = xs / xs.sum() + 0.1 * xs
        return np.sum(xs ** 2)
    fd = (plain(xs + 1e-6 * D) - plain(xs - 1e-6 * D)) / 2e-6
    assert np.sum(g * D) == pytest.approx(fd, rel=1e-6)
    compiled = fa.compile(lambda x: fnp.sum(x / lax.psum(x, "i")))
    with pytest.raises(NameError, match="unbound axis name"):
        compiled(xs)


def test_plain_values_and_integers() -> None:
    xs = np.array([3.0, 1.0, 2.0])
    out = fa.vmap(lambda x: x * lax.psum(1, "i"), axis_name="i")(xs)
    np.testing.assert_array_equal(out, 3 * xs)
    sizes = []
    fa.vmap(lambda x: sizes.append(lax.psum(1, "i")) or x, axis_name="i")(xs)
    assert sizes == [3] and type(sizes[0]) is int
    labels = np.array([3, 1, 2])
    total = fa.vmap(lambda l: lax.psum(l, "i"), axis_name="i")(labels)
    assert total.dtype.kind == "i" and list(total) == [6, 6, 6]
    smallest = fa.vmap(lambda l: lax.pmin(l, "i"), axis_name="i")(labels)
    assert smallest.dtype.kind == "i" and list(smallest) == [1, 1, 1]
    index = fa.vmap(lambda x: lax.axis_index("i"), axis_name="i")(xs)
    assert index.dtype == np.int32 and list(index) == [0, 1, 2]
    np.testing.assert_array_equal(
        fa.vmap(lambda x: lax.psum(np.ones(2), "i") + x, axis_name="i")(xs), np.add.outer(xs, [3.0, 3.0]))
    tree = fa.vmap(lambda x: lax.psum({"a": x, "b": (2 * x,)}, "i"), axis_name="i")(xs)
    np.testing.assert_allclose(tree["a"], [6, 6, 6])
    np.testing.assert_allclose(tree["b"][0], [12, 12, 12])
    shared = fa.vmap(lambda x, c: x + lax.psum(c, "i"), in_axes=(0, None), axis_name="i")
    np.testing.assert_allclose(shared(xs, 2.0), xs + 6)
    assert fa.grad(lambda c: fnp.sum(shared(xs, c)))(2.0) == pytest.approx(9.0)


def test_gather_and_all_to_all_shapes() -> None:
    X = np.arange(24.0).reshape(4, 2, 3)  # four examples of (2, 3)
    run = lambda f: fa.vmap(f, axis_name="i")(X)
    np.testing.assert_array_equal(run(lambda x: lax.all_gather(x, "i", axis=1)),
                                  np.broadcast_to(np.moveaxis(X, 0, 1)[None], (4, 2, 4, 3)))
    np.testing.assert_array_equal(run(lambda x: lax.all_gather(x, "i", tiled=True)),
                                  np.broadcast_to(X.reshape(8, 3)[None], (4, 8, 3)))
    Y = np.arange(32.0).reshape(4, 4, 2)  # the split axis has one entry per example
    out = fa.vmap(lambda y: lax.all_to_all(y, "i", 0, 0), axis_name="i")(Y)
    np.testing.assert_array_equal(out, np.swapaxes(Y, 0, 1))  # example k: Y[:, k]
    out = fa.vmap(lambda y: lax.all_to_all(y, "i", 0, 1), axis_name="i")(Y)
    np.testing.assert_array_equal(out, np.swapaxes(np.swapaxes(Y, 0, 1), 1, 2))
    Z = np.arange(64.0).reshape(4, 8, 2)  # tiled: blocks of two along axis 0
    out = fa.vmap(lambda z: lax.all_to_all(z, "i", 0, 1, tiled=True), axis_name="i")(Z)
    want = np.stack([np.concatenate([Z[j, 2 * k:2 * k + 2] for j in range(4)], axis=1)
                     for k in range(4)])
    np.testing.assert_array_equal(out, want)
    shuffled = fa.vmap(lambda x: lax.pshuffle(x, "i", [2, 0, 3, 1]), axis_name="i")(X)
    np.testing.assert_array_equal(shuffled, X[[2, 0, 3, 1]])


def test_refusals() -> None:
    xs = np.array([1.0, 2.0])
    with pytest.raises(NameError, match="unbound axis name"):
        lax.psum(1.0, "i")
    with pytest.raises(NameError, match="'k'"):
        fa.vmap(lambda x: lax.psum(x, "k"), axis_name="i")(xs)
    with pytest.raises(TracingError, match="collective"):
        fa.vmap(lambda x: x if lax.psum(x, "i") > 2.5 else -x, axis_name="i")(xs)
    with pytest.raises(TracingError, match="one example at a time"):
        fa.vmap(lambda x: x * lax.psum(x, "i") if x > 1.5 else x, axis_name="i")(xs)
    with pytest.raises(NotImplementedError, match="axis_index_groups"):
        fa.vmap(lambda x: lax.psum(x, "i", axis_index_groups=[[0, 1]]), axis_name="i")(xs)
    with pytest.raises(ValueError, match="leading axis of 2|axis size 2"):
        fa.vmap(lambda x: lax.psum_scatter(fnp.ones(3) * x, "i"), axis_name="i")(xs)
    with pytest.raises(ValueError, match="sends twice"):
        fa.vmap(lambda x: lax.ppermute(x, "i", [(0, 1), (1, 1)]), axis_name="i")(xs)
    np.testing.assert_array_equal(fa.vmap(lambda x: 2 * x, spmd_axis_name="d")(xs), 2 * xs)
