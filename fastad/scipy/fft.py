"""``jax.scipy.fft`` (and SciPy's): discrete cosine transforms, the
forward ``dct``/``dctn`` and inverse ``idct``/``idctn``, of every type and
norm SciPy has.  On traced values each axis is a product with the
transform's matrix (SciPy's transform of the identity), so the derivative
is the transposed product; O(n^2) per axis, meant for the sizes of signal
and spectral-method code, not for transforms of 10^5 points."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import scipy.fft as _sfft

from .. import numpy as fnp
from ..core.tracer import Tracer

__all__ = ["dct", "dctn", "idct", "idctn"]


@functools.lru_cache(maxsize=64)
def _matrix(inverse: bool, kind: int, n: int, norm: Any) -> np.ndarray:
    transform = _sfft.idct if inverse else _sfft.dct
    m = transform(np.eye(n), type=kind, axis=0, norm=norm)
    m.flags.writeable = False
    return m


def _resized(x: Any, n: Any, axis: int) -> Any:
    """x cut or zero-padded to n along axis (SciPy's ``n``)."""
    size = fnp.shape(x)[axis]
    if n is None or n == size:
        return x
    if n < size:
        return fnp.take(x, np.arange(n), axis=axis)
    pad = [(0, 0)] * fnp.ndim(x)
    pad[axis] = (0, n - size)
    return fnp.pad(x, pad)


def _along(x: Any, inverse: bool, kind: int, n: Any, axis: int, norm: Any) -> Any:
    axis = axis % fnp.ndim(x)
    x = _resized(x, n, axis)
    m = _matrix(inverse, kind, fnp.shape(x)[axis], norm)
    return fnp.moveaxis(fnp.tensordot(m, x, axes=([1], [axis])), 0, axis)


def _check(kind: int, norm: Any) -> None:
    if kind not in (1, 2, 3, 4):
        raise ValueError(f"the DCT type is 1, 2, 3 or 4, not {kind}")
    if norm not in (None, "ortho", "backward", "forward"):
        raise ValueError(f"norm must be None, 'backward', 'ortho' or 'forward', not {norm!r}")


def dct(x: Any, type: int = 2, n: Any = None, axis: int = -1, norm: Any = None) -> Any:  # noqa: A002
    _check(type, norm)
    if not isinstance(x, Tracer):
        return _sfft.dct(np.asarray(x), type=type, n=n, axis=axis, norm=norm)
    return _along(x, False, type, n, axis, norm)


def idct(x: Any, type: int = 2, n: Any = None, axis: int = -1, norm: Any = None) -> Any:  # noqa: A002
    _check(type, norm)
    if not isinstance(x, Tracer):
        return _sfft.idct(np.asarray(x), type=type, n=n, axis=axis, norm=norm)
    return _along(x, True, type, n, axis, norm)


def _axes(x: Any, s: Any, axes: Any) -> list[tuple[int, Any]]:
    if axes is None:
        axes = tuple(range(fnp.ndim(x))) if s is None else tuple(range(-len(s), 0))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    sizes = (None,) * len(axes) if s is None else tuple(s)
    if len(sizes) != len(axes):
        raise ValueError("s and axes must have the same length")
    return list(zip(axes, sizes))


def _transform_n(inverse: bool) -> Any:
    scipy_fn = _sfft.idctn if inverse else _sfft.dctn

    def transform(x: Any, type: int = 2, s: Sequence[int] | None = None,  # noqa: A002
                  axes: Any = None, norm: Any = None) -> Any:
        _check(type, norm)
        if not isinstance(x, Tracer):
            return scipy_fn(np.asarray(x), type=type, s=s, axes=axes, norm=norm)
        for axis, n in _axes(x, s, axes):
            x = _along(x, inverse, type, n, axis, norm)
        return x
    transform.__name__ = transform.__qualname__ = scipy_fn.__name__
    return transform


dctn = _transform_n(False)
idctn = _transform_n(True)

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
