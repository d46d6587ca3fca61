"""SciPy, differentiable: ``fastad.scipy.special``, ``.stats``, ``.linalg``,
``.signal``, with SciPy's names and signatures (as ``autograd.scipy`` and
``jax.scipy`` have).  SciPy's own ufuncs (``scipy.special.gammaln``, ...)
called on traced values reach these functions through NumPy's dispatch; the
rest (``logsumexp``, ``polygamma``, ``scipy.stats``, ...) are imported from here.
"""
from . import linalg, signal, special, stats  # noqa: F401

__all__ = ["special", "stats", "linalg", "signal"]
