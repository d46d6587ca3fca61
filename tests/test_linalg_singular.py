"""Decompositions NumPy computes and JAX does not differentiate, the
determinant's derivative at singular matrices, and the errors of the
linear-algebra and compiled-call surface."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from helpers import central_difference_gradient

COMPILED = [b for b in BACKENDS if b != "numpy"] or ["numpy"]
# its derivative is refused (as JAX's): checked by the values and the refusal
ELSEWHERE = {"linalg_factors": "test_complete_and_wide_factorizations_compile"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 3), (2, 3, 4), (3, 3)])
def test_complete_and_wide_factorizations_compile(backend, shape):
    """NumPy's complete QR, the QR of a wide matrix and the full SVD of a
    rectangular one run compiled (no derivative is asked for) and equal
    NumPy's factors."""
    a = np.random.default_rng(4).normal(size=shape)
    cases = {
        "qr complete": (lambda x: fnp.linalg.qr(x, mode="complete"),
                        lambda x: np.linalg.qr(x, mode="complete")),
        "qr reduced": (lambda x: fnp.linalg.qr(x), lambda x: np.linalg.qr(x)),
        "qr r": (lambda x: fnp.linalg.qr(x, mode="r"), lambda x: np.linalg.qr(x, mode="r")),
        "svd full": (lambda x: fnp.linalg.svd(x), lambda x: np.linalg.svd(x)),
    }
    for name, (f, ref) in cases.items():
        want = ref(a)
        for got in (f(a), fa.jit(f, backend=backend)(a)):
            got, want_ = (got, want) if name == "qr r" else (tuple(got), tuple(want))
            for g, w in zip(np.atleast_1d(got) if name == "qr r" else got,
                            np.atleast_1d(want_) if name == "qr r" else want_):
                np.testing.assert_allclose(g, w, atol=1e-12, err_msg=name)
    # values of them compile too, and vmap batches them
    f = lambda x: fnp.abs(fnp.linalg.qr(x, mode="complete")[0]).sum()  # noqa: E731
    assert np.isclose(fa.jit(f, backend=backend)(a), np.abs(np.linalg.qr(a, "complete")[0]).sum())


def test_batched_full_svd_under_vmap():
    a = np.random.default_rng(1).normal(size=(4, 5, 3))
    u = fa.vmap(lambda x: fnp.linalg.svd(x)[0])(a)
    np.testing.assert_allclose(np.abs(u), np.abs(np.linalg.svd(a)[0]), atol=1e-12)


@pytest.mark.parametrize("f", [
    lambda x: fnp.sum(fnp.linalg.qr(x, mode="complete")[0]),
    lambda x: fnp.sum(fnp.linalg.svd(x)[0]),
])
def test_their_derivative_is_refused_by_name(f):
    a = np.random.default_rng(2).normal(size=(5, 3))
    for g in (fa.grad(f), fa.compile(f, backend=COMPILED[0])):
        with pytest.raises(NotImplementedError, match="no derivative"):
            g(a)
    wide = lambda x: fnp.sum(fnp.linalg.qr(x)[1])  # noqa: E731
    with pytest.raises(NotImplementedError, match="no derivative"):
        fa.grad(wide)(a.T)


def _singular(draw_rank, n, rng):
    u = rng.normal(size=(n, draw_rank))
    v = rng.normal(size=(draw_rank, n))
    return u @ v


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), deficit=st.integers(0, 2), seed=st.integers(0, 2 ** 16))
def test_det_gradient_is_the_adjugate_even_when_singular(n, deficit, seed):
    """grad det = adj(A)^T, finite at singular A (JAX's): against central
    finite differences (det is a polynomial), eager and compiled, and the
    C VM against the reference interpreter."""
    rng = np.random.default_rng(seed)
    a = _singular(max(n - deficit, 0), n, rng) if deficit else rng.normal(size=(n, n))
    fd = central_difference_gradient(np.linalg.det, a)
    scale = max(1.0, np.abs(fd).max())
    reference = fa.compile(fnp.linalg.det, backend="numpy")(a)
    for g in [fa.grad(fnp.linalg.det)] + [fa.compile(fnp.linalg.det, backend=b) for b in COMPILED]:
        got = g(a)
        np.testing.assert_allclose(got, fd, atol=1e-6 * scale, rtol=1e-6)
        np.testing.assert_allclose(got, reference, atol=1e-12 * scale, rtol=1e-12)
    t = rng.normal(size=(n, n))
    _, tangent = fa.jvp(fnp.linalg.det, (a,), (t,))
    np.testing.assert_allclose(tangent, np.sum(fd * t), atol=1e-6 * scale * n * n, rtol=1e-6)


@pytest.mark.parametrize("backend", ["eager", COMPILED[0]])
def test_det_second_order_and_batches(backend):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    h = fa.hessian(fnp.linalg.det)(a) if backend == "eager" else \
        fa.jit(fa.hessian(fnp.linalg.det), backend=backend)(a)
    fd = np.stack([central_difference_gradient(lambda x: fa.grad(fnp.linalg.det)(x)[i], a)
                   for i in np.ndindex(3, 3)]).reshape(3, 3, 3, 3)
    np.testing.assert_allclose(h, fd, atol=1e-6)
    batch = rng.normal(size=(2, 3, 3))
    batch[1, 2] = batch[1, 0] * 2  # one singular matrix in the batch
    g = fa.grad(lambda x: fnp.sum(fnp.linalg.det(x)))(batch)
    for k in range(2):
        np.testing.assert_allclose(g[k], central_difference_gradient(np.linalg.det, batch[k]), atol=1e-6)


def test_slogdet_of_a_singular_matrix_is_numpys():
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    sign, logdet = fa.jit(fnp.linalg.slogdet, backend=COMPILED[0])(a)
    want = np.linalg.slogdet(a)
    assert sign == want[0] and logdet == want[1]
    assert fa.jit(fnp.linalg.det, backend=COMPILED[0])(a) == np.linalg.det(a) == 0.0


def test_compiled_gradient_takes_its_arguments_by_keyword():
    f = lambda x, scale=1.0: scale * fnp.sum(x ** 2)  # noqa: E731
    x = np.arange(3.0)
    g = fa.compile(f, backend=COMPILED[0])
    np.testing.assert_array_equal(g(x=x), 2 * x)
    np.testing.assert_array_equal(g(x=x, scale=3.0), 6 * x)
    value, grad = g.value_and_grad(x=x)
    assert value == 5.0 and np.array_equal(grad, 2 * x)
    h = fa.compile(lambda a, b: fnp.sum(a * b), argnums=(0, 1), backend=COMPILED[0])
    ga, gb = h(b=np.ones(2), a=np.arange(2.0))
    assert np.array_equal(ga, np.ones(2)) and np.array_equal(gb, np.arange(2.0))
    with pytest.raises(TypeError, match="'x'"):
        g(scale=1.0)


@pytest.mark.parametrize("backend", COMPILED)
def test_cholesky_of_a_matrix_not_positive_definite_says_so(backend):
    """NumPy's message, also from a compiled program traced on a positive
    definite matrix (the C VM's own status for potrf)."""
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    g = fa.compile(lambda a: fnp.sum(fnp.linalg.cholesky(a)), backend=backend)
    j = fa.jit(fnp.linalg.cholesky, backend=backend)
    g(2 * np.eye(2))
    j(np.eye(2))
    for call in (lambda: g(bad), lambda: j(bad), lambda: j(np.stack([np.eye(2), bad]))):
        with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
            call()
