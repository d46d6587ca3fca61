"""Gradients of functions of eigen- and singular values alone are finite at
repeated values, as JAX's are: the value-only VJP is Q diag(g) Q^T (U diag(g)
V^T), with no 1 / (l_i - l_j) term, and an eigenvector cotangent that is
exactly zero contributes nothing.  Checked against the closed forms on
matrices with tied spectra, and against central finite differences on
matrices with distinct ones, eagerly and on every compiled backend.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS

EXAMPLES = settings(max_examples=int(os.environ.get("FASTAD_TEST_EXAMPLES", 12)), deadline=None)


def orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


@st.composite
def tied_spectra(draw):
    """(n, values) with some values repeated, and a seed for the basis."""
    n = draw(st.integers(2, 5))
    pool = draw(st.lists(st.sampled_from([-2.0, -0.5, 0.5, 1.0, 1.0, 3.0]), min_size=1, max_size=3))
    values = np.array([pool[draw(st.integers(0, len(pool) - 1))] for _ in range(n)])
    values[draw(st.integers(1, n - 1))] = values[0]  # at least one tie
    return n, np.sort(values), draw(st.integers(0, 2**32 - 1))


def lower_read(e):
    """The gradient of a function that reads A's lower triangle (eigh, as
    NumPy's) from its symmetric gradient e: A[i, j] (i > j) stands for both."""
    return np.tril(e + e.T) - np.diag(np.diag(e))


def gradients(f, a, backend):
    return [fa.grad(f)(a)] + [fa.compile(f, backend=backend)(a)]


@pytest.mark.filterwarnings("ignore:.*host calls")  # eig runs as a NumPy call
@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(spec=tied_spectra(), identity_basis=st.booleans())
def test_eigenvalue_functions_at_repeated_eigenvalues(backend, spec, identity_basis):
    n, w, seed = spec
    q = np.eye(n) if identity_basis else orthogonal(np.random.default_rng(seed), n)
    a = (q * w) @ q.T
    a = (a + a.T) / 2
    expect_sq = (q * (2 * w)) @ q.T  # d sum(l^2) = Q diag(2 l) Q^T = 2A
    expect_sin = (q * np.cos(w)) @ q.T
    for g in gradients(lambda m: fnp.sum(fnp.linalg.eigvalsh(m) ** 2), a, backend):
        np.testing.assert_allclose(g, lower_read(expect_sq), atol=1e-9)
    for g in gradients(lambda m: fnp.sum(fnp.sin(fnp.linalg.eigh(m)[0])), a, backend):
        np.testing.assert_allclose(g, lower_read(expect_sin), atol=1e-9)
    for g in gradients(lambda m: fnp.sum(fnp.real(fnp.linalg.eigvals(m)) ** 2), a, backend):
        np.testing.assert_allclose(g, expect_sq, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@EXAMPLES
@given(spec=tied_spectra(), shape=st.sampled_from(["square", "tall", "wide"]))
def test_singular_value_functions_at_repeated_values(backend, spec, shape):
    n, w, seed = spec
    rng = np.random.default_rng(seed)
    s = np.abs(w) + 0.25  # positive, ties kept
    m = n + {"square": 0, "tall": 2, "wide": -1}[shape]
    if m < 1:
        return
    k = min(m, n)
    u, v = orthogonal(rng, m)[:, :k], orthogonal(rng, n)[:, :k]
    a = (u * s[:k]) @ v.T
    polar = u @ v.T  # d sum(s) = U V^T
    for f in (lambda x: fnp.sum(fnp.linalg.svd(x, compute_uv=False)),
              lambda x: fnp.linalg.matrix_norm(x, ord="nuc"),
              lambda x: fnp.sum(fnp.linalg.svdvals(x))):
        for g in gradients(f, a, backend):
            np.testing.assert_allclose(g, polar, atol=1e-9)
    top = np.argmax(s[:k])
    if np.sum(s[:k] == s[top]) == 1:  # the 2-norm is differentiable where its value is simple
        expect = np.outer(u[:, top], v[:, top])
        for f in (lambda x: fnp.linalg.norm(x, 2), lambda x: fnp.linalg.matrix_norm(x, ord=2)):
            for g in gradients(f, a, backend):
                np.testing.assert_allclose(g, expect, atol=1e-9)


def test_rank_deficient_tall_svdvals_gradient_is_finite():
    a = np.zeros((4, 3))
    a[0, 0], a[1, 1] = 2.0, 1.0  # singular values 2, 1, 0
    g = fa.grad(lambda x: fnp.sum(fnp.linalg.svd(x, compute_uv=False) ** 2))(a)
    np.testing.assert_allclose(g, 2 * a, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_distinct_spectra_match_finite_differences(backend):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(4, 4))
    sym = a + a.T
    h = 1e-6
    for f, x in [(lambda m: fnp.sum(fnp.linalg.eigvalsh(m) ** 3), sym),
                 (lambda m: fnp.sum(fnp.linalg.svd(m, compute_uv=False) ** 1.5), a),
                 (lambda m: fnp.linalg.norm(m, 2), a),
                 (lambda m: fnp.sum(fnp.linalg.eigh(m)[1][:, 0] ** 2 * fnp.arange(4.0)), sym)]:
        x = np.tril(x) if x is sym else x  # eigh reads the lower triangle: vary that
        fd = np.zeros_like(x)
        for i in range(4):
            for j in range(4):
                e = np.zeros_like(x)
                e[i, j] = h
                fd[i, j] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
        for g in gradients(f, x, backend):
            np.testing.assert_allclose(g, fd, atol=1e-5)
