"""fastad: tape-compiled automatic differentiation for NumPy code."""
from . import primitives  # noqa: F401  (registers the primitives first)
from . import numpy  # noqa: F401
from .api import grad, jvp, make_tape, value_and_grad, vjp
from .check import check_grads
from .errors import FastadError, SignatureError, TapeError, TracingError
from .primitives import defjvp, defvjp
from .tape import Tape

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "check_grads", "make_tape", "defvjp", "defjvp", "Tape",
           "FastadError", "TracingError", "TapeError", "SignatureError"]
__version__ = "0.1.0"
