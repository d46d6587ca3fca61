"""``jax.experimental``'s modules that have a meaning here: ``ode``."""
from . import ode  # noqa: F401
