"""scipy.signal, differentiable: ``convolve`` and ``correlate``, and
``fftconvolve``, ``convolve2d``, ``correlate2d`` (JAX's ``jax.scipy.signal``
names): all by the direct method, a constant Toeplitz gather of one input
times the other, so the compiled backends run it natively."""
from __future__ import annotations

from typing import Any

import numpy as _np

from .. import numpy as fnp


def _output_shape(s1: tuple[int, ...], s2: tuple[int, ...], mode: str) -> tuple[int, ...]:
    if mode == "full":
        return tuple(a + b - 1 for a, b in zip(s1, s2))
    if mode == "same":
        return tuple(s1)
    if mode == "valid":
        if not (all(a >= b for a, b in zip(s1, s2)) or all(b >= a for a, b in zip(s1, s2))):
            raise ValueError("For 'valid' mode, one must be at least as large as the other "
                             "in every dimension")
        return tuple(abs(a - b) + 1 for a, b in zip(s1, s2))
    raise ValueError(f"convolve: mode must be 'full', 'same' or 'valid', not {mode!r}")


def convolve(in1: Any, in2: Any, mode: str = "full", method: str = "auto", axes: Any = None,
             dot_axes: Any = ((), ())) -> Any:
    """SciPy's convolve; with autograd's ``axes=[axes of in1, axes of in2]``
    (the axes convolved, pairwise) and ``dot_axes`` (summed, as tensordot's),
    the result's axes are in1's others, in2's others, then the convolved ones."""
    if axes is not None or any(len(d) for d in dot_axes):
        return _convolve_axes(in1, in2, axes, dot_axes, mode)
    if fnp.ndim(in1) != fnp.ndim(in2):
        raise ValueError("in1 and in2 should have the same dimensionality")
    return fnp.convolve_nd(in1, in2, _output_shape(fnp.shape(in1), fnp.shape(in2), mode))


def _convolve_axes(a: Any, b: Any, axes: Any, dot_axes: Any, mode: str) -> Any:
    dot_a, dot_b = (list(d) for d in dot_axes)
    if axes is None:
        axes = [[k for k in range(fnp.ndim(a)) if k not in dot_a],
                [k for k in range(fnp.ndim(b)) if k not in dot_b]]
    conv_a, conv_b = (list(x) for x in axes)
    rest_a = [k for k in range(fnp.ndim(a)) if k not in conv_a + dot_a]
    rest_b = [k for k in range(fnp.ndim(b)) if k not in conv_b + dot_b]
    shape_a, shape_b = fnp.shape(a), fnp.shape(b)
    sa = tuple(shape_a[k] for k in conv_a)
    sb = tuple(shape_b[k] for k in conv_b)
    if any(shape_a[i] != shape_b[j] for i, j in zip(dot_a, dot_b)):
        raise ValueError("convolve: dot_axes of different lengths")
    nd = int(_np.prod([shape_a[k] for k in dot_a]))
    keep_a = tuple(shape_a[k] for k in rest_a)
    keep_b = tuple(shape_b[k] for k in rest_b)
    a3 = fnp.reshape(fnp.transpose(a, rest_a + conv_a + dot_a), (-1, int(_np.prod(sa)), nd))
    b3 = fnp.reshape(fnp.transpose(b, rest_b + conv_b + dot_b), (-1, int(_np.prod(sb)), nd))
    if not sa:  # nothing convolved: the tensor product over dot_axes
        return fnp.reshape(fnp.einsum("ajd,bjd->ab", a3, b3), keep_a + keep_b)
    full = tuple(x + y - 1 for x, y in zip(sa, sb))
    # the Toeplitz gather: t[., k, j, .] = b[., k - j, .], 0 where k - j is outside b
    lag = (_np.indices(full).reshape(len(full), -1, 1)
           - _np.indices(sa).reshape(len(full), 1, -1))
    inside = _np.all((lag >= 0) & (lag < _np.array(sb).reshape(-1, 1, 1)), axis=0)
    flat = _np.where(inside, _np.ravel_multi_index(tuple(_np.where(inside, lag, 0)), sb),
                     int(_np.prod(sb)))
    zero = _np.zeros((fnp.shape(b3)[0], 1, nd), dtype=_np.result_type(fnp.result_dtype(b),
                                                                        _np.float64))
    padded = fnp.concatenate([b3, zero], axis=1)
    t = fnp.reshape(fnp.take(padded, flat.reshape(-1), axis=1),
                    (fnp.shape(b3)[0],) + flat.shape + (nd,))
    out = fnp.einsum("ajd,bkjd->abk", a3, t)
    out = fnp.reshape(out, keep_a + keep_b + full)
    target = {"full": full, "same": sa,
              "valid": tuple(abs(x - y) + 1 for x, y in zip(sa, sb))}[mode]
    lead = (slice(None),) * (len(keep_a) + len(keep_b))
    crop = tuple(slice((f - t_) // 2, (f - t_) // 2 + t_) for f, t_ in zip(full, target))
    return out[lead + crop]


def correlate(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Any:
    if mode == "valid" and not all(a >= b for a, b in zip(fnp.shape(in1), fnp.shape(in2))):
        # SciPy swaps the inputs (and so reverses the result) in this case
        return fnp._flip_any(convolve(in2, fnp._flip_any(in1), mode))
    return convolve(in1, fnp._flip_any(in2), mode)


def fftconvolve(in1: Any, in2: Any, mode: str = "full", axes: Any = None) -> Any:
    """SciPy's fftconvolve, computed directly (exact where the FFT rounds)."""
    if axes is not None:
        raise NotImplementedError("fftconvolve: axes= is not supported; use "
                                  "fastad.scipy.signal.convolve(..., axes=[...]) (autograd's)")
    return convolve(in1, in2, mode)


def _two_d(name: str, in1: Any, in2: Any, boundary: str) -> tuple[Any, Any]:
    """The inputs as arrays (they may be array_likes), checked."""
    in1, in2 = fnp.asarray(in1), fnp.asarray(in2)
    if fnp.ndim(in1) != 2 or fnp.ndim(in2) != 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays")
    if boundary != "fill":
        raise NotImplementedError(
            f"{name}: boundary={boundary!r} is not supported; pad in1 with "
            "fastad.numpy.pad(mode='wrap' or 'symmetric') and use mode='valid'")
    return in1, in2


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: Any = 0) -> Any:
    """SciPy's convolve2d with ``boundary="fill"``."""
    in1, in2 = _two_d("convolve2d", in1, in2, boundary)
    return _filled(convolve, in1, in2, mode, fillvalue)


def correlate2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
                fillvalue: Any = 0) -> Any:
    """SciPy's correlate2d with ``boundary="fill"``.  Its "same" is centred
    as SciPy's correlate2d centres it, which for an even-sized in2 is one
    step off scipy.signal.correlate's "same"."""
    in1, in2 = _two_d("correlate2d", in1, in2, boundary)
    if mode != "same":
        return _filled(correlate, in1, in2, mode, fillvalue)
    full = _filled(correlate, in1, in2, "full", fillvalue)
    return full[tuple(slice(k // 2, k // 2 + n) for k, n in zip(fnp.shape(in2), fnp.shape(in1)))]


def _filled(op: Any, in1: Any, in2: Any, mode: str, fillvalue: Any) -> Any:
    """``op`` of in1 extended by ``fillvalue`` outside its support: in1 -
    fillvalue there, plus a constant extension, whose convolution is
    fillvalue * sum(in2).  "valid" reads no extension."""
    if mode == "valid" or (isinstance(fillvalue, (int, float)) and fillvalue == 0):
        return op(in1, in2, mode)
    return op(in1 - fillvalue, in2, mode) + fillvalue * fnp.sum(in2)


__all__ = ["convolve", "correlate", "fftconvolve", "convolve2d", "correlate2d"]

from ..numpy._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402
_keep_arrays_in(globals())  # given jax.Arrays, the functions give Arrays
