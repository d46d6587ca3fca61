"""``fastad.scipy.signal``'s 2-D and FFT names (JAX's ``jax.scipy.signal``):
values against SciPy's own functions over generated shapes, modes and fill
values (either input the larger), derivatives in both inputs against
central differences, compiled against eager."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
from conftest import BACKENDS
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
import fastad.scipy.signal as fs
from helpers import central_difference_jacobian

COMPILED = "c" if "c" in BACKENDS else "numpy"
PAIRS = {"convolve2d": (fs.convolve2d, ss.convolve2d), "correlate2d": (fs.correlate2d, ss.correlate2d)}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(PAIRS)), st.tuples(st.integers(1, 5), st.integers(1, 5)),
       st.tuples(st.integers(1, 4), st.integers(1, 4)), st.sampled_from(["full", "same", "valid"]),
       st.sampled_from([0, 0.0, 1.5, -2]), st.integers(0, 2**31 - 1))
def test_2d_names_match_scipy_with_derivatives(name, s1, s2, mode, fill, seed):
    ours, theirs = PAIRS[name]
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(s1), rng.standard_normal(s2)
    try:
        want = theirs(a, b, mode, fillvalue=fill)
    except ValueError:
        with pytest.raises(ValueError):
            ours(a, b, mode, fillvalue=fill)
        return
    np.testing.assert_allclose(ours(a, b, mode, fillvalue=fill), want, rtol=1e-12, atol=1e-12)
    w = rng.standard_normal(want.shape)

    def loss(a, b):
        return fnp.sum(w * ours(a, b, mode, fillvalue=fill) ** 2)
    ga, gb = fa.grad(loss, argnums=(0, 1))(a, b)
    fda = central_difference_jacobian(lambda v: loss(v.reshape(s1), b), a.ravel())
    fdb = central_difference_jacobian(lambda v: loss(a, v.reshape(s2)), b.ravel())
    np.testing.assert_allclose(ga.ravel(), np.ravel(fda), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gb.ravel(), np.ravel(fdb), rtol=1e-6, atol=1e-6)
    ca, cb = fa.compile(loss, argnums=(0, 1), backend=COMPILED)(a, b)
    np.testing.assert_allclose(ca, ga, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cb, gb, rtol=1e-12, atol=1e-13)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from(["full", "same", "valid"]), st.integers(0, 2**31 - 1))
def test_fftconvolve_is_scipys(ndim, n1, n2, mode, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n1,) * ndim)
    b = rng.standard_normal((n2,) * ndim)
    np.testing.assert_allclose(fs.fftconvolve(a, b, mode), ss.fftconvolve(a, b, mode),
                               rtol=1e-10, atol=1e-10)


def test_unsupported_options_say_what_to_do():
    a = np.ones((3, 3))
    with pytest.raises(NotImplementedError, match="pad"):
        fs.convolve2d(a, a, boundary="wrap")
    with pytest.raises(ValueError, match="2-D"):
        fs.correlate2d(np.ones(3), a)
    with pytest.raises(NotImplementedError, match="axes"):
        fs.fftconvolve(a, a, axes=[0])
