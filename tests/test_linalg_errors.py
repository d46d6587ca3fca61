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
