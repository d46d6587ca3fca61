"""SciPy, differentiable: ``fastad.scipy.special``, ``.stats``, ``.linalg``,
``.signal``, ``.integrate`` (``odeint``), and jax.scipy's ``.optimize``
(``minimize``), ``.sparse.linalg`` (``cg``, ``bicgstab``, ``gmres``),
``.ndimage`` (``map_coordinates``) and ``.fft`` (the DCTs), with SciPy's
names and signatures (as ``autograd.scipy`` and ``jax.scipy`` have).  SciPy's own ufuncs (``scipy.special.gammaln``, ...)
called on traced values reach these functions through NumPy's dispatch, and
so do ``scipy.special.logsumexp``, ``softmax``, ``log_softmax`` and
``multigammaln`` (`special` wraps them at import); the rest (``polygamma``,
``scipy.stats``, ...) are imported from here.

The submodules are imported when first used (``fastad.scipy.stats`` imports
``scipy.stats``, which takes a while).
"""
import importlib as _importlib

__all__ = ["special", "stats", "linalg", "signal", "integrate", "optimize", "sparse", "ndimage",
           "fft"]


def __getattr__(name: str):
    if name in __all__:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
