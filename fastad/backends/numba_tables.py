"""What the Numba generator writes, per primitive: the source templates.

The tables the code generator (`numba_codegen`) reads for each primitive,
keyed by the `Primitive` object and checked at import: the scalar form of
an operation (a Python operator where one exists), its NumPy ufunc, the
combining step and start value of each reduction, which primitives Numba
has only for real numbers, and which run as a call back into NumPy.  Also
the text of literals and Numba types, and the two records the generator
builds (`_Var`, a variable of the generated code; `_Step`, the lines of one
instruction).  Adding an elementwise primitive to the Numba backend is a
row in `UFUNCS` (and `SCALAR_OPERATORS` where Python has an operator), or,
for a function NumPy has no ufunc for, in `SPECIAL_FUNCTIONS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.registry import Primitive, check_table, registry
from ..core.registry import prims as P

# Scalar forms are Python operators where one exists: Numba types them
# fastest, and compile time is what this backend pays for its speed.
# Everything else, and every array form, is the NumPy ufunc, which Numba
# implements for scalars and broadcasting arrays with NumPy's semantics.
SCALAR_OPERATORS: dict[Primitive, str] = check_table({
    P.neg: "-{0}", P.square: "{0} * {0}",
    P.add: "{0} + {1}", P.sub: "{0} - {1}", P.mul: "{0} * {1}", P.div: "{0} / {1}",
    P.lt: "{0} < {1}", P.le: "{0} <= {1}", P.gt: "{0} > {1}", P.ge: "{0} >= {1}",
    P.eq: "{0} == {1}", P.ne: "{0} != {1}",
    P.real: "{0}.real", P.imag: "{0}.imag", P.conj: "{0}.conjugate()",
}, "numba_backend.SCALAR_OPERATORS")
# Every elementwise primitive whose implementation is a NumPy ufunc is that
# ufunc here, by its name (Numba implements NumPy's ufuncs): a new ufunc row
# needs no line of its own.  The rest are named: abs (np.abs, which the
# generated code has always called) and real and imag (functions, not ufuncs).
UFUNCS: dict[Primitive, str] = check_table({
    **{p: p.impl.__name__ for p in registry.values()
       if p.builtin and p.elementwise and isinstance(p.impl, np.ufunc)},
    P.abs: "abs", P.real: "real", P.imag: "imag",
}, "numba_backend.UFUNCS")
# scipy.special's functions the generated code computes itself
# (`numba_special`, one function per dtype: ``<name>_<dtype>``); elementwise
# as the ufuncs above.  polygamma is psi: order 0 only (`fallback.special_refusal`).
SPECIAL_FUNCTIONS: dict[Primitive, str] = check_table({
    P.erf: "erf", P.erfc: "erfc", P.expit: "expit", P.log_expit: "log_expit",
    P.logit: "logit", P.gammaln: "gammaln", P.polygamma: "digamma", P.ndtr: "ndtr",
    P.xlogy: "xlogy", P.xlog1py: "xlog1py",
}, "numba_backend.SPECIAL_FUNCTIONS")
# what a generated module imports to call one of them
SPECIAL_IMPORT = "from fastad.backends.numba_special import {}"


# Primitives the generated code runs as a call back into NumPy (in Numba's
# object mode, holding the GIL for that one instruction): Numba has no FFT.
# Names, as docs/conformance.md shows them; the primitive still has an emitter.
HOST_CALLS = frozenset({"fft"})
# Primitives NumPy defines on complex numbers that Numba does not (ordering,
# and functions of real numbers only): tapes applying them to complex values
# run on the reference backend.
REAL_ONLY = check_table(frozenset({
    P.maximum, P.minimum, P.lt, P.le, P.gt, P.ge, P.max, P.min, P.floor, P.ceil, P.round,
    P.cbrt, P.arctan2, P.hypot, P.logaddexp, P.logabsdet, P.detsign,
    # the decompositions whose kernels call LAPACK's real drivers (dsyevd, and
    # the float64 copies `numba_emitters.packed_decomposition` makes)
    P.eigh, P.svd, P.qr, P.pinv,
    *SPECIAL_FUNCTIONS}),  # (`numba_special`: real arguments only)
    "numba_backend.REAL_ONLY")
# combine(acc, v) of a reduction; max and min let a NaN win, as NumPy does.
REDUCERS: dict[Primitive, str] = check_table({
    P.sum: "{acc} + {v}",
    P.prod: "{acc} * {v}",
    P.max: "{v} if ({v} > {acc} or {v} != {v}) else {acc}",
    P.min: "{v} if ({v} < {acc} or {v} != {v}) else {acc}",
}, "numba_backend.REDUCERS")
REDUCER_IDENTITY = {P.sum: 0, P.prod: 1}  # the value of an empty sum or product
REDUCER_START = {P.sum: 0, P.prod: 1, P.max: -np.inf, P.min: np.inf}

_NUMBA_TYPE = {"float64": "float64", "float32": "float32", "int64": "int64", "bool": "boolean",
               "complex128": "complex128", "complex64": "complex64"}
_COMPLEX_OF = {np.dtype(np.float32): np.dtype(np.complex64)}  # else complex128


def _literal(value: Any, dtype: np.dtype) -> str:
    """Source text of a scalar of ``dtype`` (the type Numba will give it)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c" or isinstance(value, (complex, np.complexfloating)):
        dtype = dtype if dtype.kind == "c" else _COMPLEX_OF.get(dtype, np.dtype(np.complex128))
        value = complex(value)
        text = f"complex({_literal(value.real, np.float64)}, {_literal(value.imag, np.float64)})"
        return text if dtype == np.complex128 else f"np.{dtype.name}({text})"
    if dtype.kind == "b":
        return repr(bool(value))
    if dtype.kind in "iu":
        if not math.isfinite(float(value)):  # a max/min reduction's identity: the type's end
            info = np.iinfo(dtype)
            value = info.max if float(value) > 0 else info.min
        return f"np.{dtype.name}({int(value)})"
    v = float(value)
    text = repr(v) if math.isfinite(v) else ("np.nan" if v != v else
                                              ("np.inf" if v > 0 else "-np.inf"))
    return text if dtype == np.float64 else f"np.{dtype.name}({text})"


def _shape(shape: Sequence[int]) -> str:
    return "(" + "".join(f"{d}, " for d in shape) + ")"


def _numba_type(dtype: np.dtype, ndim: int) -> str:
    base = _NUMBA_TYPE[np.dtype(dtype).name]
    return base if ndim == 0 else f"{base}[{', '.join([':'] * (ndim - 1) + ['::1'])}]"


@dataclass
class _Var:
    """A variable of the generated code that other instructions may read.

    ``local`` is the source of a variable every part defines for itself
    (constants, literals); ``deps`` are the names that source mentions."""

    scalar: bool
    dtype: np.dtype
    ndim: int
    local: str | None = None
    deps: tuple[str, ...] = ()


@dataclass
class _Step:
    """The generated lines of one instruction and the variables they touch."""

    lines: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
