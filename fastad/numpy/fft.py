"""``fastad.numpy.fft``: NumPy's discrete Fourier transforms, differentiable.

Plain ``np.fft.fft(x)`` on a traced ``x`` arrives here through NumPy's
``__array_function__`` protocol.  Every transform is the one ``fft``
primitive (a complex, shape-preserving ``fftn``/``ifftn``, see
`fastad.primitives.fft`) plus gathers:

  n / s        crop with a gather, or zero-pad with a concatenation, first
  rfft         the first n//2 + 1 outputs of the complex transform of x
  irfft        real(ifft) of the Hermitian extension [a, conj(a[n-m:0:-1])],
               which is what NumPy computes (imag(a[0]) is ignored, as is
               imag(a[n/2]) for even n) and so has the same derivatives
  fftshift     a roll

so forward and reverse derivatives of any order follow from the primitive's.
Derivatives use autograd's and JAX's convention for complex numbers (see
`fastad.primitives.elementwise`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as _np

from ..core.registry import registry
from ..core.tracer import bind
from ..primitives.fft import NORMS
from ._base import _no_out, iscomplexobj, ndim, result_dtype, shape
from ._elementwise import astype, conj, real
from ._shape import concatenate, roll, take_flat

fftfreq = _np.fft.fftfreq
rfftfreq = _np.fft.rfftfreq


def transform(x: Any, axes: Sequence[int], inverse: bool, norm: str) -> Any:
    """The complex ``fftn`` (or ``ifftn``) of x over ``axes``: the primitive."""
    return bind(registry["fft"], x, axes=tuple(int(a) for a in axes), inverse=bool(inverse),
                norm=norm)


# -- arguments, checked as NumPy checks them -----------------------------------------
def _norm(norm: Any) -> str:
    norm = "backward" if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f'Invalid norm value {norm}; should be "backward", "ortho" or '
                         '"forward".')
    return norm


def _axis(axis: Any, nd: int) -> int:
    axis = int(axis)
    if not -nd <= axis < nd:
        raise _np.exceptions.AxisError(axis, nd)
    return axis % nd


def _length(n: Any) -> int:
    n = int(n)
    if n < 1:
        raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    return n


def _axes_and_lengths(a: Any, s: Any, axes: Any) -> tuple[list[int], list[int | None]]:
    """fftn's (s, axes) defaults: all axes, or the last len(s) when only s is given."""
    nd = ndim(a)
    if axes is None:
        axes = list(range(nd)) if s is None else list(range(nd - len(s), nd))
    axes = [_axis(ax, nd) for ax in ((axes,) if isinstance(axes, int) else axes)]
    if s is None:
        return axes, [None] * len(axes)
    if len(s) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    return axes, [None if n is None or n == -1 else _length(n) for n in s]


# -- building blocks ------------------------------------------------------------------
def _inexact_complex(a: Any) -> Any:
    """a as a complex array of its own precision (float32 -> complex64)."""
    dt = result_dtype(a)
    if dt.kind == "c":
        return a
    return astype(a, _np.complex64 if dt == _np.float32 else _np.complex128)


def _along(a: Any, axis: int, positions: Any) -> Any:
    """a's entries at ``positions`` along ``axis``: one gather."""
    dims = shape(a)
    flat = _np.arange(math.prod(dims), dtype=_np.int64).reshape(dims)
    return take_flat(a, _np.take(flat, _np.asarray(positions, _np.int64), axis=axis))


def _resized(a: Any, axis: int, n: int | None) -> Any:
    """a cropped or zero-padded to length n along axis (NumPy's ``n``)."""
    have = shape(a)[axis]
    if n is None or n == have:
        return a
    if n < have:
        return _along(a, axis, _np.arange(n))
    pad_shape = list(shape(a))
    pad_shape[axis] = n - have
    zeros = _np.zeros(pad_shape, result_dtype(a))
    return concatenate([a, zeros], axis=axis)


def _complex_nd(a: Any, s: Any, axes: Any, norm: Any, inverse: bool) -> Any:
    norm = _norm(norm)
    a = _inexact_complex(a)
    axes, lengths = _axes_and_lengths(a, s, axes)
    for ax, n in zip(axes, lengths):
        a = _resized(a, ax, n)
    return transform(a, axes, inverse, norm) if axes else a


def _real_input(a: Any, name: str) -> Any:
    if iscomplexobj(a):
        raise TypeError(f"{name}: the input must be real; use fft for complex input")
    return a


# -- the public transforms ------------------------------------------------------------
def fft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "fft")
    return _complex_nd(a, None if n is None else (n,), (axis,), norm, inverse=False)


def ifft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "ifft")
    return _complex_nd(a, None if n is None else (n,), (axis,), norm, inverse=True)


def fftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "fftn")
    return _complex_nd(a, s, axes, norm, inverse=False)


def ifftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "ifftn")
    return _complex_nd(a, s, axes, norm, inverse=True)


def fft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None) -> Any:
    return fftn(a, s, axes, norm, out)


def ifft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None
          ) -> Any:
    return ifftn(a, s, axes, norm, out)


def rfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "rfft")
    a = _real_input(a, "rfft")
    axis = _axis(axis, ndim(a))
    full = fft(a, n, axis, norm)
    return _along(full, axis, _np.arange(shape(full)[axis] // 2 + 1))


def irfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "irfft")
    norm = _norm(norm)
    axis = _axis(axis, ndim(a))
    n = _length(2 * (shape(a)[axis] - 1) if n is None else n)
    half = _resized(_inexact_complex(a), axis, n // 2 + 1)
    mirrored = _np.arange(n - (n // 2 + 1), 0, -1)  # full[k] = conj(a[n - k]), k > n // 2
    if mirrored.size:
        half = concatenate([half, conj(_along(half, axis, mirrored))], axis=axis)
    return real(transform(half, (axis,), True, norm))


def rfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "rfftn")
    a = _real_input(a, "rfftn")
    axes, lengths = _axes_and_lengths(a, s, axes)
    last = rfft(a, lengths[-1], axes[-1], norm)
    return fftn(last, lengths[:-1], axes[:-1], norm) if len(axes) > 1 else last


def irfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "irfftn")
    axes, lengths = _axes_and_lengths(a, s, axes)
    if len(axes) > 1:
        a = ifftn(a, lengths[:-1], axes[:-1], norm)
    return irfft(a, lengths[-1], axes[-1], norm)


def rfft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None
          ) -> Any:
    return rfftn(a, s, axes, norm, out)


def irfft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None
           ) -> Any:
    return irfftn(a, s, axes, norm, out)


def _shift(x: Any, axes: Any, sign: int) -> Any:
    nd = ndim(x)
    axes = list(range(nd)) if axes is None else (
        [axes] if isinstance(axes, int) else list(axes))
    axes = [_axis(ax, nd) for ax in axes]
    return roll(x, [sign * (shape(x)[ax] // 2) for ax in axes], axes)


def fftshift(x: Any, axes: Any = None) -> Any:
    return _shift(x, axes, 1)


def ifftshift(x: Any, axes: Any = None) -> Any:
    return _shift(x, axes, -1)


_SWAPPED = {None: "forward", "backward": "forward", "forward": "backward", "ortho": "ortho"}


def hfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    """The FFT of a signal with Hermitian symmetry (a real spectrum), as NumPy's:
    irfft of conj(a) with the opposite normalization."""
    _no_out(out, "hfft")
    return irfft(conj(_inexact_complex(a)), n, axis, _SWAPPED[norm])


def ihfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Any:
    _no_out(out, "ihfft")
    return conj(rfft(a, n, axis, _SWAPPED[norm]))
test = _np.fft.test  # NumPy's test runner for numpy.fft
