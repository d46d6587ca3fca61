"""``jax.example_libraries``: ``optimizers`` and ``stax``, with JAX's
signatures, over fastad's pytrees, `fastad.random` keys and `fastad.lax`."""
from . import optimizers, stax  # noqa: F401
