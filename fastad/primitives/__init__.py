"""The primitive registry and the families of primitives declared in it."""
from . import elementwise, fft, gathers, linalg, loops, ordering, random, special, structural  # noqa: F401  (registers the primitives)
from ..core.registry import Primitive, defjvp, defprim, defvjp, registry

__all__ = ["Primitive", "defprim", "defvjp", "defjvp", "registry"]
