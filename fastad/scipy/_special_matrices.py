"""scipy.linalg's special matrices built from traced vectors and blocks:
each element is a gather of the arguments at constant indices (or zero), so
their derivatives are the scatters back.  On plain values they are SciPy's."""
from __future__ import annotations

from typing import Any

import numpy as _np
import scipy.linalg as _scipy_linalg

from .. import numpy as fnp
from ..numpy._base import _contains_tracer


def _plain(*args: Any) -> bool:
    """Whether no argument is (or holds) a traced value: SciPy's own then runs."""
    return not _contains_tracer(list(args))


def _vector(v: Any) -> Any:
    return fnp.ravel(fnp.asarray(v))


def _gathered(values: Any, index: _np.ndarray) -> Any:
    """values[index] for a constant integer matrix of positions."""
    return fnp.reshape(fnp.take(values, index.ravel()), index.shape)


def toeplitz(c: Any, r: Any = None) -> Any:
    """T[i, j] = c[i - j] below the diagonal, r[j - i] above (r defaults to
    conj(c); r[0] is ignored)."""
    if _plain(c, r):
        return _scipy_linalg.toeplitz(c, r)
    c = _vector(c)
    r = fnp.conj(c) if r is None else _vector(r)
    m, n = fnp.size(c), fnp.size(r)
    values = fnp.concatenate([c[::-1], r[1:]])
    return _gathered(values, m - 1 - _np.arange(m)[:, None] + _np.arange(n)[None, :])


def circulant(c: Any) -> Any:
    """C[i, j] = c[(i - j) mod n]."""
    if _plain(c):
        return _scipy_linalg.circulant(c)
    c = _vector(c)
    n = fnp.size(c)
    return _gathered(c, (_np.arange(n)[:, None] - _np.arange(n)[None, :]) % n)


def hankel(c: Any, r: Any = None) -> Any:
    """H[i, j] = c[i + j] while that is in c, then r[i + j - len(c) + 1]
    (r defaults to zeros; r[0] is ignored)."""
    if _plain(c, r):
        return _scipy_linalg.hankel(c, r)
    c = _vector(c)
    r = fnp.zeros_like(c) if r is None else _vector(r)
    m, n = fnp.size(c), fnp.size(r)
    values = fnp.concatenate([c, r[1:]])
    return _gathered(values, _np.arange(m)[:, None] + _np.arange(n)[None, :])


def companion(a: Any) -> Any:
    """The companion matrix of the polynomial with coefficients a (highest
    first): first row -a[1:] / a[0], ones below the diagonal."""
    if _plain(a):
        return _scipy_linalg.companion(a)
    a = _vector(a)
    n = fnp.size(a) - 1
    if n < 1:
        raise ValueError("The length of `a` must be at least 2.")
    first = -a[1:] / a[0]
    return fnp.concatenate([first[None, :], _np.eye(n - 1, n)], axis=0)


def block_diag(*arrs: Any) -> Any:
    """The blocks along the diagonal, zeros elsewhere (0-d and 1-d arguments
    are 1 x 1 and 1 x n blocks, as SciPy's)."""
    if _plain(*arrs):
        return _scipy_linalg.block_diag(*arrs)
    blocks = [fnp.atleast_2d(fnp.asarray(a)) for a in arrs]
    if any(fnp.ndim(b) > 2 for b in blocks):
        raise ValueError("arguments in the following positions have dimension greater than "
                         f"2: {[i for i, b in enumerate(blocks) if fnp.ndim(b) > 2]}")
    dtype = _np.result_type(*[fnp.result_dtype(b) for b in blocks])
    widths = [fnp.shape(b)[1] for b in blocks]
    total, rows, before = sum(widths), [], 0
    for b, w in zip(blocks, widths):
        h = fnp.shape(b)[0]
        rows.append(fnp.concatenate([_np.zeros((h, before), dtype), fnp.astype(b, dtype),
                                     _np.zeros((h, total - before - w), dtype)], axis=1))
        before += w
    return fnp.concatenate(rows, axis=0)


def khatri_rao(a: Any, b: Any) -> Any:
    """The column-wise Kronecker product: column j is kron(a[:, j], b[:, j])."""
    if _plain(a, b):
        return _scipy_linalg.khatri_rao(a, b)
    if fnp.shape(a)[1] != fnp.shape(b)[1]:
        raise ValueError("The number of columns for both arrays should be equal.")
    return fnp.reshape(a[:, None, :] * b[None, :, :], (-1, fnp.shape(a)[1]))


__all__ = ["toeplitz", "circulant", "hankel", "companion", "block_diag", "khatri_rao"]
