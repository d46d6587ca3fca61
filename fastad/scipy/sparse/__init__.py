"""``jax.scipy.sparse``: the iterative solvers of ``linalg``."""
from . import linalg  # noqa: F401
