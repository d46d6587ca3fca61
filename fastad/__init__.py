"""fastad: tape-compiled automatic differentiation for NumPy code."""
from . import primitives  # noqa: F401  (registers the primitives first)
from . import numpy  # noqa: F401
from .scipy import special as _scipy_special  # noqa: F401  (SciPy's logsumexp dispatches)
from .api import (grad, hessian, hvp, jacobian, jvp, make_tape, primitive, value_and_grad, vjp)
from .vectorizing import vmap
from .backends import available as backends_available
from .check import check_grads
from .compiled import compile, disable_jit, jit
from .conventions import *  # noqa: F401,F403  (autograd's and JAX's other names)
from .conventions import __all__ as _conventions
from .loops import fori_loop, scan, while_loop
from .minimize import minimize
from .misc import flatten
from .serialize import dumps, loads
from . import sparse  # noqa: F401
from . import nn, tree, tree_util  # noqa: F401
from . import debug, lax, ops, random, typing  # noqa: F401
from . import ad_checkpoint, custom_derivatives, dtypes, experimental, flatten_util  # noqa: F401
from . import example_libraries  # noqa: F401
from .runtime import *  # noqa: F401,F403  (JAX's config, devices, make_jaxpr, ...)
from .sparse import sparsity
from .core.errors import FastadError, SignatureError, TapeError, TracingError
from .primitives import defjvp, defvjp
from .core.tape import Tape
# autograd's top-level names (not in __all__: a star import would shadow Python's)
from .builtins import dict, isinstance, list, tuple, type  # noqa: A004,F401,E402
deriv = elementwise_grad  # noqa: F405 - autograd's alias (`differential_operators.deriv`)

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp", "vmap", "make_tape", "check_grads", "jit", "disable_jit",
           "compile", "minimize", "flatten", "sparsity", "dumps", "loads", "primitive", "defvjp", "defjvp", "backends_available", "Tape",
           "FastadError", "TracingError", "TapeError", "SignatureError", "scan", "fori_loop",
           "while_loop", *_conventions]
__version__ = "0.1.0"
