"""scipy.signal, differentiable: ``convolve`` and ``correlate`` (direct
method: a constant Toeplitz gather of one input times the other, so the
compiled backends run it natively)."""
from __future__ import annotations

from typing import Any

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


def convolve(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Any:
    if fnp.ndim(in1) != fnp.ndim(in2):
        raise ValueError("in1 and in2 should have the same dimensionality")
    return fnp.convolve_nd(in1, in2, _output_shape(fnp.shape(in1), fnp.shape(in2), mode))


def correlate(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Any:
    if mode == "valid" and not all(a >= b for a, b in zip(fnp.shape(in1), fnp.shape(in2))):
        # SciPy swaps the inputs (and so reverses the result) in this case
        return fnp._flip_any(convolve(in2, fnp._flip_any(in1), mode))
    return convolve(in1, fnp._flip_any(in2), mode)


__all__ = ["convolve", "correlate"]
