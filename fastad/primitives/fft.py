"""The discrete Fourier transform as one primitive.

``fft(x, axes, inverse, norm)`` is NumPy's ``fftn``/``ifftn`` of a complex
array over ``axes``, shape-preserving.  Everything else in
``fastad.numpy.fft`` (lengths ``n``/``s``, real transforms, shifts) is written
in terms of it, of gathers and of ``real``/``astype`` (see `fastad.numpy.fft`).

The transform is linear, so its JVP is itself.  Its matrix is symmetric
(``F[j, k] = w**(j*k)``, the scaling of ``norm`` included), and cotangents
pair with tangents as ``Re(sum(ct * t))`` without conjugation (autograd's
and JAX's convention), so its VJP is the same transform again.
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from .numpy_proxy import fnp
from ..core.registry import defbatch, defjvp, defprim, defreads, defshape, defvjp
from ..transforms import batching

NORMS = ("backward", "ortho", "forward")


def _fft(x, axes, inverse, norm):
    transform = np.fft.ifftn if inverse else np.fft.fftn
    return transform(x, axes=axes, norm=norm)


def _shape(x, axes, inverse, norm):
    shapes.check_axes(x, axes)
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}")
    return x


def _same_transform(g, ans, x, axes, inverse, norm):
    return fnp.fft.transform(g, axes, inverse, norm)


_p = defprim("fft", _fft, 1, cost="linalg")
defvjp(_p, _same_transform)
defreads(_p, ())
defjvp(_p, _same_transform)
defshape(_p, _shape)
defbatch(_p, batching.fft)
