"""NumPy's other array functions, written with the front end's: differences,
cross and Kronecker products, padding, polynomials, interpolation and
convolution."""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.errors import TracingError
from ..core.tracer import Tracer, bind
from ._base import _constant, _contains_tracer, _float_dtype, _p, ndim, shape, size
from ._creation import asarray, zeros_like
from ._linalg import matmul
from ._shape import (_gather, broadcast_to, concatenate, flip, moveaxis, ravel, reshape,
                     scatter_set, stack, take_flat)

__all__ = ["diff", "cross", "kron", "pad", "polyval", "interp", "convolve_nd", "convolve",
           "correlate"]


def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = _np._NoValue,
         append: Any = _np._NoValue) -> Any:
    if n == 0:
        return a
    axis = _axis_index(axis, ndim(a))
    parts = []
    for extra in (prepend, a, append):
        if extra is _np._NoValue:
            continue
        if extra is not a and ndim(extra) == 0:
            extra = broadcast_to(extra, tuple(1 if i == axis else d
                                              for i, d in enumerate(shape(a))))
        parts.append(extra)
    a = concatenate(parts, axis=axis) if len(parts) > 1 else a
    lead = (slice(None),) * axis
    for _ in range(n):
        a = a[lead + (slice(1, None),)] - a[lead + (slice(None, -1),)]
    return a


def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
          axis: Any = None) -> Any:
    """Cross product of 3-vectors along an axis."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = (asarray(v) if isinstance(v, (list, tuple)) else v for v in (a, b))
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    if shape(a)[-1] != 3 or shape(b)[-1] != 3:
        raise ValueError("cross: only 3-vectors are supported (NumPy 2 deprecates 2-vectors)")
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return moveaxis(c, -1, axisc)


def kron(a: Any, b: Any) -> Any:
    nd = builtins.max(ndim(a), ndim(b))
    sa = (1,) * (nd - ndim(a)) + tuple(shape(a))
    sb = (1,) * (nd - ndim(b)) + tuple(shape(b))
    a2 = reshape(a, tuple(d for n in sa for d in (n, 1)))
    b2 = reshape(b, tuple(d for n in sb for d in (1, n)))
    return reshape(a2 * b2, tuple(x * y for x, y in zip(sa, sb)))


_PAD_GATHER_MODES = ("edge", "reflect", "symmetric", "wrap")


def pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Any:
    """np.pad: "constant" writes the array into the padded constant, the modes
    that copy elements ("edge", "reflect", "symmetric", "wrap") are a gather."""
    if callable(mode) or mode not in ("constant",) + _PAD_GATHER_MODES:
        raise TracingError(f"pad: mode {mode!r} is not supported on traced values; use one of "
                           f"'constant', {', '.join(repr(m) for m in _PAD_GATHER_MODES)}")
    if mode != "constant":
        return _gather(array, lambda i: _np.pad(i, pad_width, mode, **kwargs))
    values = kwargs.get("constant_values", 0)
    if isinstance(values, Tracer) or _contains_tracer(values):
        raise TracingError("pad: constant_values must be constants")
    positions = _np.pad(_np.arange(1, size(array) + 1).reshape(shape(array)), pad_width)
    base = _np.pad(_np.zeros(shape(array), _float_dtype(array)), pad_width,
                   constant_values=values)
    base.flags.writeable = False
    return reshape(scatter_set(base.reshape(-1), _np.flatnonzero(positions), ravel(array)),
                   positions.shape)


def polyval(p: Any, x: Any) -> Any:
    """p[0] * x**(n-1) + ... + p[n-1], by Horner's rule."""
    if ndim(p) != 1:
        raise ValueError("polyval: p must be 1-d")
    y = zeros_like(x) if shape(p)[0] == 0 else p[0] + zeros_like(x)
    for k in range(1, shape(p)[0]):
        y = y * x + p[k]
    return y


def interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None,
           period: Any = None) -> Any:
    """Piecewise-linear interpolation, differentiable in x and fp (one
    primitive on a constant table xp) and, for a traced xp, in all three to
    any order (`_interp_traced_table`)."""
    if period is not None:
        raise TracingError("interp: period= is not supported on traced values")
    for name, bound in (("left", left), ("right", right)):
        if isinstance(bound, Tracer):
            raise TracingError(f"interp: {name}= must be a constant")
    left = None if left is None else float(left)
    right = None if right is None else float(right)
    if isinstance(xp, Tracer):
        return _interp_traced_table(x, xp, fp, left, right)
    xp, fp = (v if isinstance(v, Tracer) else _np.asarray(v, dtype=_np.float64) for v in (xp, fp))
    return bind(_p("interp"), x, xp, fp, left=left, right=right)


def _interp_traced_table(x: Any, xp: Any, fp: Any, left: float | None,
                         right: float | None) -> Any:
    """interp with a traced table, written as NumPy computes it: x's segment j
    (``xp[j] <= x < xp[j+1]``, integers taken as data), ``slope * (x - xp[j])
    + fp[j]``, ``fp[-1]`` at ``x == xp[-1]``, the ends or ``left``/``right``
    outside; the segment's width kept away from zero where two knots meet."""
    from .. import numpy as fnp  # its clip keeps integers taken as data integers
    from ._elementwise import equal, greater, less, where
    n = shape(xp)[0]
    if ndim(xp) != 1 or shape(fp) != (n,) or n == 0:
        raise ValueError("interp: xp and fp must be 1-d sequences of the same length, not empty")
    fp = fp if isinstance(fp, Tracer) else _np.asarray(fp, dtype=_np.float64)
    if n == 1:
        return broadcast_to(fp, shape(x)) * 1.0 if left is None and right is None else where(
            less(x, xp[0]), fp[0] if left is None else left,
            where(greater(x, xp[0]), fp[0] if right is None else right, fp[0]))
    j = fnp.clip(fnp.searchsorted(xp, x, side="right") - 1, 0, n - 2)
    lo, hi = xp[j], xp[j + 1]
    width = hi - lo
    flat = equal(width, 0.0)
    slope = (fp[j + 1] - fp[j]) / where(flat, 1.0, width)
    inside = where(flat, fp[j], slope * (x - lo) + fp[j])
    inside = where(equal(x, xp[n - 1]), fp[n - 1], inside)
    below = fp[0] if left is None else left
    above = fp[n - 1] if right is None else right
    return where(less(x, xp[0]), below, where(greater(x, xp[n - 1]), above, inside))


def convolve_nd(in1: Any, in2: Any, out_shape: Sequence[int] | None = None) -> Any:
    """The full N-d convolution of in1 and in2 (same number of dimensions),
    centered-cropped to ``out_shape`` as SciPy's and NumPy's modes are: a
    constant gather of one operand into a Toeplitz matrix times the other."""
    if ndim(in1) != ndim(in2):
        raise ValueError("convolve: in1 and in2 should have the same dimensionality")
    if size(in1) == 0 or size(in2) == 0:
        raise ValueError("convolve: inputs cannot be empty")
    if size(in1) > size(in2):  # the Toeplitz matrix is (output size) x (smaller size)
        in1, in2 = in2, in1
    s1, s2 = _np.array(shape(in1)), _np.array(shape(in2))
    full = tuple(int(d) for d in s1 + s2 - 1)
    target = full if out_shape is None else tuple(int(d) for d in out_shape)
    start = [(f - t) // 2 for f, t in zip(full, target)]
    kept = _np.indices(target).reshape(len(full), -1) + _np.array(start)[:, None]
    lag = kept[:, :, None] - _np.indices(tuple(s1)).reshape(len(full), 1, -1)
    valid = _np.all((lag >= 0) & (lag < s2[:, None, None]), axis=0)
    flat = _np.where(valid, _np.ravel_multi_index(tuple(_np.where(valid, lag, 0)), tuple(s2)),
                     int(s2.prod()))
    padded = concatenate([ravel(in2), _np.zeros(1, _float_dtype(in2))])
    toeplitz = take_flat(padded, flat) if isinstance(padded, Tracer) else _constant(padded[flat])
    return reshape(matmul(toeplitz, ravel(in1)), target)


def convolve(a: Any, v: Any, mode: str = "full") -> Any:
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError("convolve: a and v must be 1-d")
    n, m = shape(a)[0], shape(v)[0]
    lengths = {"full": n + m - 1, "same": builtins.max(n, m), "valid": builtins.abs(n - m) + 1}
    if mode not in lengths:
        raise ValueError(f"convolve: mode must be one of {', '.join(lengths)}")
    return convolve_nd(a, v, (lengths[mode],))


def correlate(a: Any, v: Any, mode: str = "valid") -> Any:
    if shape(v)[0] > shape(a)[0]:  # NumPy swaps the inputs and reverses the result
        return _flip_any(correlate(v, a, mode))
    return convolve(a, _flip_any(v), mode)


def _flip_any(x: Any) -> Any:
    return flip(x) if isinstance(x, Tracer) else _np.flip(_np.asarray(x))
