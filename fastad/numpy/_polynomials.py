"""NumPy's polynomial functions (coefficients, highest power first) on
traced values: sums, products, derivatives and integrals of coefficient
arrays, division, roots as a companion matrix's eigenvalues, fits.  Each is
NumPy's own function when no argument is traced (`_numpy_unless_traced`)."""
from __future__ import annotations

import builtins
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ._arrayfuncs import convolve
from ._base import ndim, shape
from ._composites import _as, _numpy_unless_traced, vander
from ._linalg import linalg, matmul
from ._reductions import _concrete
from ._shape import concatenate, ravel, reshape, stack

__all__ = ["polyadd", "polysub", "polymul", "polyder", "polyint", "polydiv", "poly", "roots",
           "polyfit"]


@_numpy_unless_traced("polyadd")
def polyadd(a1: Any, a2: Any) -> Any:
    a1, a2 = ravel(_as(a1)), ravel(_as(a2))
    n = builtins.max(shape(a1)[0], shape(a2)[0])

    def lift(p: Any) -> Any:
        k = n - shape(p)[0]
        return concatenate([_np.zeros(k), p]) if k else p
    return lift(a1) + lift(a2)


@_numpy_unless_traced("polysub")
def polysub(a1: Any, a2: Any) -> Any:
    return polyadd(a1, -_as(a2))


@_numpy_unless_traced("polymul")
def polymul(a1: Any, a2: Any) -> Any:
    return convolve(ravel(_as(a1)), ravel(_as(a2)))


@_numpy_unless_traced("polyder")
def polyder(p: Any, m: int = 1) -> Any:
    p = ravel(_as(p))
    for _ in range(m):
        n = shape(p)[0] - 1
        if n <= 0:
            return p[:0] * 0.0 if n < 0 else p[:1] * 0.0
        p = p[:-1] * _np.arange(n, 0, -1, dtype=float)
    return p


@_numpy_unless_traced("polyint")
def polyint(p: Any, m: int = 1, k: Any = None) -> Any:
    p = ravel(_as(p))
    ks = _np.zeros(m) if k is None else _np.atleast_1d(k)
    if _np.size(ks) == 1 and m > 1:
        ks = _np.full(m, ks.reshape(-1)[0])
    for i in range(m):
        n = shape(p)[0]
        p = concatenate([p / _np.arange(n, 0, -1, dtype=float), _np.atleast_1d(ks[i]) * 1.0])
    return p


@_numpy_unless_traced("polydiv")
def polydiv(u: Any, v: Any) -> tuple[Any, Any]:
    u, v = ravel(_as(u)) * 1.0, ravel(_as(v)) * 1.0
    m, n = shape(u)[0] - 1, shape(v)[0] - 1
    scale = 1.0 / v[0]
    r = [u[i] for i in range(m + 1)]
    q = []
    for k in range(0, m - n + 1):
        d = scale * r[k]
        q.append(d)
        for j in range(n + 1):
            r[k + j] = r[k + j] - d * v[j]
    rem = r[builtins.max(m - n + 1, 0):] or [u[0] * 0.0]
    while len(rem) > 1 and _np.allclose(_concrete(rem[0]), 0, rtol=1e-14):
        rem = rem[1:]
    return (stack(q) if q else u[:1] * 0.0), stack(rem)


@_numpy_unless_traced("poly")
def poly(seq_of_zeros: Any) -> Any:
    z = _as(seq_of_zeros)
    if ndim(z) == 2 and shape(z)[0] == shape(z)[1] and shape(z)[0] > 0:
        z = linalg.eigvals(z)
    z = ravel(z)
    p = None
    for i in range(shape(z)[0]):
        factor = stack([z[i] * 0.0 + 1.0, -z[i]])
        p = factor if p is None else convolve(p, factor)
    return _np.ones(1) if p is None else p


@_numpy_unless_traced("roots")
def roots(p: Any) -> Any:
    """The roots, as the eigenvalues of the companion matrix (traced: real,
    distinct roots only, as linalg.eig's)."""
    p = ravel(_as(p))
    nz = _np.flatnonzero(_concrete(p != 0))
    if nz.size == 0:
        return _np.array([])
    trailing = shape(p)[0] - nz[-1] - 1
    p = p[nz[0]:nz[-1] + 1]
    n = shape(p)[0] - 1
    if n < 1:
        return _np.zeros(trailing)
    row = -p[1:] / p[0]
    if n == 1:
        r = row
    else:
        companion = concatenate([reshape(row, (1, n)), _np.eye(n - 1, n)], axis=0)
        r = linalg.eigvals(companion)
    return concatenate([r, _np.zeros(trailing)]) if trailing else r


@_numpy_unless_traced("polyfit")
def polyfit(x: Any, y: Any, deg: int, rcond: Any = None, full: bool = False, w: Any = None,
            cov: Any = False) -> Any:
    if full or cov or w is not None:
        raise TracingError("polyfit: full=, w= and cov= are not supported on traced values")
    a = vander(x, deg + 1)
    return matmul(linalg.pinv(a), _as(y))
