"""Bad input to the traced linear algebra raises NumPy's exception type."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (2, 3, 4), (5,)])
def test_inv_of_a_non_square_matrix_is_a_linalg_error(backend, shape):
    a = np.ones(shape)
    with pytest.raises(np.linalg.LinAlgError, match="square"):
        fa.jit(fnp.linalg.inv, backend=backend)(a)
    with pytest.raises(np.linalg.LinAlgError, match="square"):
        fa.grad(lambda m: fnp.sum(fnp.linalg.inv(m)))(a)


import scipy.linalg as sla  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastad.scipy.linalg as fsla  # noqa: E402

# functions of one matrix argument (b of a's rows, where there is one), as
# (fastad's, the reference's): each refuses what its reference refuses
_SQUARE_ONLY = {
    "det": (fnp.linalg.det, np.linalg.det),
    "slogdet": (lambda a: fnp.linalg.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1]),
    "inv": (fnp.linalg.inv, np.linalg.inv),
    "cholesky": (fnp.linalg.cholesky, np.linalg.cholesky),
    "eigh": (lambda a: fnp.linalg.eigh(a)[0], lambda a: np.linalg.eigh(a)[0]),
    "eigvalsh": (fnp.linalg.eigvalsh, np.linalg.eigvalsh),
    "matrix_power": (lambda a: fnp.linalg.matrix_power(a, 3),
                     lambda a: np.linalg.matrix_power(a, 3)),
    "solve": (lambda a: fnp.linalg.solve(a, fnp.ones(np.shape(a)[:-1])),
              lambda a: np.linalg.solve(a, np.ones(np.shape(a)[:-1]))),
    "scipy det": (fsla.det, sla.det),
    "solve_triangular": (lambda a: fsla.solve_triangular(a, fnp.ones(np.shape(a)[-2:-1]),
                                                         lower=True),
                         lambda a: sla.solve_triangular(a, np.ones(np.shape(a)[-2:-1]),
                                                        lower=True)),
    "solve_triangular trans": (lambda a: fsla.solve_triangular(a, fnp.ones(np.shape(a)[-1:]),
                                                               trans=1),
                               lambda a: sla.solve_triangular(a, np.ones(np.shape(a)[-1:]),
                                                              trans=1)),
    "cho_solve": (lambda a: fsla.cho_solve((a, True), fnp.ones(np.shape(a)[-2:-1])),
                  lambda a: sla.cho_solve((a, True), np.ones(np.shape(a)[-2:-1]))),
}


def _refusal(fn, a):
    try:
        with np.errstate(all="ignore"):
            fn(a)
    except (np.linalg.LinAlgError, ValueError) as e:
        return type(e)
    return None


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(_SQUARE_ONLY)),
       shape=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_shapes_the_reference_refuses_are_refused_eagerly_and_compiled(name, shape):
    ours, reference = _SQUARE_ONLY[name]
    a = np.eye(*shape[-2:]) * 2.0 + 0.1 if len(shape) >= 2 else np.full(shape, 2.0)
    a = np.broadcast_to(a, shape).copy()
    wanted = _refusal(reference, a)
    if wanted is None:
        return  # the values are other tests' (test_linalg*, test_scipy_linalg)
    # LinAlgError is a ValueError: NumPy's own class, or SciPy's ValueError
    for call in (lambda: fa.grad(lambda m: fnp.sum(ours(m)))(a),
                 lambda: fa.jit(ours, backend="c" if "c" in BACKENDS else "numpy")(a)):
        with pytest.raises(wanted):
            call()
