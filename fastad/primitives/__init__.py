"""The primitive registry and the families of primitives declared in it."""
from . import (collectives, elementwise, fft, gathers, linalg, loops, ordering, random,  # noqa: F401
               special, structural)  # (registers the primitives)
from ..core.registry import Primitive, defjvp, defprim, defvjp, registry

__all__ = ["Primitive", "defprim", "defvjp", "defjvp", "registry"]
