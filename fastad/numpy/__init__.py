"""NumPy, differentiable: the same names as ``numpy``, working on traced values.

Plain ``import numpy as np`` code reaches these functions through NumPy's
dispatch protocols (``__array_ufunc__``, ``__array_function__``); this module
is also importable directly (``import fastad.numpy as fnp``), as autograd's
``autograd.numpy`` is.  Functions that are not primitives are written in
terms of primitives (``mean`` is ``sum`` times ``1/n``, ``tensordot`` a
transpose, a reshape and a ``matmul``), so their derivatives come for free.

`where`, `clip`, `maximum`, `minimum`, `abs` are branch-free: they never
create guards, so prefer them to Python ``if`` on traced values inside
compiled functions.

The functions live in the modules of this package, one family each
(docs/design.md, "Front end: where each thing lives"); this module gathers
their public names into one namespace, which is also the one NumPy's
``__array_function__`` dispatch looks names up in (`_dispatch`).
"""
from __future__ import annotations

import numpy as _np

from ..core.tracer import FRONT_END as _FRONT_END
from ._base import *  # noqa: F403
from ._elementwise import *  # noqa: F403
from ._shape import *  # noqa: F403
from ._reductions import *  # noqa: F403
from ._creation import *  # noqa: F403
from ._views import *  # noqa: F403
from ._gathers import *  # noqa: F403
from ._indexing import *  # noqa: F403
from ._linalg import *  # noqa: F403
from ._ordering import *  # noqa: F403
from ._arrayfuncs import *  # noqa: F403
from ._composites import *  # noqa: F403
from ._polynomials import *  # noqa: F403
from ._building import *  # noqa: F403
from ._vectorize import *  # noqa: F403
from ._plain import *  # noqa: F403
from ._dispatch import _UFUNCS  # noqa: F401  (the ufuncs dispatched, read by fastad.conformance)
from ._methods import TRACER_FRONT_END as _TRACER_FRONT_END
# private helpers the rest of fastad reaches through this namespace
from ._arrayfuncs import _flip_any  # noqa: F401  (fastad.scipy.signal)
from ._base import _axes, _no_out  # noqa: F401  (fastad.scipy.special)
from ._linalg import _square  # noqa: F401  (fastad.scipy.linalg)

pi = _np.pi
e = _np.e
inf = _np.inf
nan = _np.nan
newaxis = None
from ._scalar_types import casting_types as _casting_types  # noqa: E402

globals().update(_casting_types())  # float32(x) casts traced values, as jnp.float32(x)
ndarray = _np.ndarray

# Names fastad.numpy has had since it was one module: the tracing API it is
# written with, and the modules it imported.  Kept, so that the package exports
# the names the module did (code may have reached fastad.numpy.Tracer).
import builtins  # noqa: E402,F401,I001
import collections  # noqa: E402,F401
import functools  # noqa: E402,F401
import math  # noqa: E402,F401
import operator  # noqa: E402,F401
import types  # noqa: E402,F401
import warnings  # noqa: E402,F401
import weakref  # noqa: E402,F401
from typing import Any, Sequence  # noqa: E402,F401

from ..core.errors import TracingError  # noqa: E402,F401
from ..core.registry import registry  # noqa: E402,F401
from ..core.arrays import is_made_here, made_here, positions  # noqa: E402,F401
from ..core.tracer import ArrayTracer, Tracer, bind, current_builder, new_tracer  # noqa: E402,F401

_FRONT_END.update(_TRACER_FRONT_END)  # Tracer's operators and methods apply these

from . import fft  # noqa: E402,F401  (fastad.numpy.fft, written with this package's functions)
import importlib as _importlib  # noqa: E402

# a module (import fastad.numpy.linalg), in place of the namespace `_linalg` exports
linalg = _importlib.import_module(__name__ + ".linalg")
from . import _plain as _plain_module  # noqa: E402
import sys as _sys  # noqa: E402

random = _np.random  # NumPy's own: draws are plain values
_sys.modules[__name__ + ".random"] = random
# The rest of NumPy's public names: constants, dtypes, classes and submodules as
# NumPy's, functions without a derivative working on values (`_plain`).
globals().update(_plain_module.names(globals()))
from ._ufunc_methods import attach as _attach_ufunc_methods  # noqa: E402

_attach_ufunc_methods(globals())  # fastad.numpy.add.reduce, .accumulate, .outer, .at
from ._jax_keywords import extend as _jax_keywords  # noqa: E402

_jax_keywords(globals())  # jax.numpy's extra keywords: precision=, size=, descending=, ...
from ..core.int_data import _INTEGER_CLOSED, integer_closed as _integer_closed  # noqa: E402

# integers taken as data stay integers through these, called directly as
# through NumPy's dispatch (fnp.clip(argmax(x) - 1, 0, n - 1) indexes)
globals().update({_name: _integer_closed(globals()[_name])
                  for _name in (*_INTEGER_CLOSED, "abs", "mod", "clip", "where") if _name in globals()})
_UFUNCS.update({_name: globals()[_name] for _name in _INTEGER_CLOSED if _name in _UFUNCS})
from ._integer_results import RULES as _INTEGER_RULES, integer_results as _integer_results  # noqa: E402,I001

# and integers give NumPy's integers through sums, maxima, products, ...
_once: dict[int, Any] = {}  # one wrapper per function, shared by its aliases (amax is max)
for _name in _INTEGER_RULES:
    if _name in globals():
        _fn = globals()[_name]
        globals()[_name] = _once.setdefault(id(_fn), _integer_results(_name, _fn))
_UFUNCS.update({_name: globals()[_name] for _name in _INTEGER_RULES if _name in _UFUNCS})
for _name, _front in (("sum", "sum"), ("prod", "prod"), ("max", "max"), ("min", "min"),
                      ("cumsum", "cumsum"), ("cumprod", "cumprod"), ("dot", "dot"),
                      ("trace", "trace"), ("round", "round"), ("matmul", "matmul")):
    _FRONT_END[_front] = _integer_results(_name, _FRONT_END[_front])  # x.sum(), x @ y, ...
from ._array_type import CONSTRUCTORS as _CONSTRUCTORS, making_arrays as _making_arrays  # noqa: E402,I001

# outside a trace the constructors make jax.Array's: NumPy's ndarray with ``.at``
globals().update({_name: _making_arrays(globals()[_name]) for _name in _CONSTRUCTORS
                  if _name in globals()})
from ._array_type import keep_arrays_in as _keep_arrays_in  # noqa: E402

# and the other functions, given Arrays, give Arrays
for _names in (globals(), vars(linalg), vars(fft)):
    _keep_arrays_in(_names, skip=(*_UFUNCS, *_CONSTRUCTORS))
del _names
