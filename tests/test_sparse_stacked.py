"""Sparse derivatives of linear algebra on stacks of matrices: dense within
each matrix of the stack, never across them (50 inverses of 3 x 3 blocks
are 50 blocks of 9 x 9 nonzeros, not one dense 450 x 450 Jacobian), and
never missing a nonzero the dense derivative has at any point."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa


def _sym(a):
    return a + np.swapaxes(a, -1, -2)


#: f(A) of a stack A of shape (*stack, n, n), each a flat vector of values
STACKED = {
    "inv": lambda a, b: np.linalg.inv(a),
    "solve": lambda a, b: np.linalg.solve(a, b),
    "det": lambda a, b: np.linalg.det(a),
    "slogdet": lambda a, b: np.linalg.slogdet(a)[1],
    "cholesky": lambda a, b: np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) + np.eye(a.shape[-1])),
    "eigh": lambda a, b: np.linalg.eigh(_sym(a))[0],
    "eigh_vectors": lambda a, b: np.abs(np.linalg.eigh(_sym(a))[1]),
    "svdvals": lambda a, b: np.linalg.svd(a, compute_uv=False),
    "qr": lambda a, b: np.linalg.qr(a)[1],
    "pinv": lambda a, b: np.linalg.pinv(a),
    "triangular": lambda a, b: np.linalg.solve(np.tril(a), b),
    "two_products": lambda a, b: np.linalg.inv(a) @ np.linalg.inv(np.swapaxes(a, -1, -2)),
}


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(sorted(STACKED)), stack=st.sampled_from([(1,), (4,), (2, 3)]),
       n=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_stacked_linear_algebra_is_dense_per_matrix(name, stack, n, seed):
    rng = np.random.default_rng(seed)
    count = int(np.prod(stack))
    b = rng.normal(size=stack + (n, 2))

    def f(x):
        return np.ravel(STACKED[name](np.reshape(x, stack + (n, n)), b))
    points = [(rng.normal(size=stack + (n, n)) + 3 * np.eye(n)).reshape(-1) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # host calls, named by the backends
        jac = fa.jacobian(f, sparse=True)(points[0])
        hess = fa.hessian(lambda x: np.sum(f(x) ** 2), sparse=True)(points[0])
        # the pattern: within matrices, and holding every nonzero seen at any point
        size = n * n
        for p, what in ((jac, "jacobian"), (hess, "hessian")):
            structure = p.tocoo()  # (stored entries, zeros included)
            rows, cols = structure.row, structure.col
            per_row = p.shape[0] // count
            assert np.all(rows // per_row == cols // size), (name, what)
        for x in points:
            dense = np.asarray(fa.jacobian(f)(x)).reshape(jac.shape)
            got = fa.jacobian(f, sparse=True)(x).toarray()
            np.testing.assert_allclose(got, dense, rtol=1e-9, atol=1e-9)
            hd = np.asarray(fa.hessian(lambda v: np.sum(f(v) ** 2))(x)).reshape(hess.shape)
            np.testing.assert_allclose(fa.hessian(lambda v: np.sum(f(v) ** 2), sparse=True)(x)
                                       .toarray(), hd, rtol=1e-8, atol=1e-8)
        compiled = fa.jit(f).jacobian(points[1], sparse=True).toarray()
        np.testing.assert_allclose(compiled, np.asarray(fa.jacobian(f)(points[1]))
                                   .reshape(compiled.shape), rtol=1e-9, atol=1e-9)
