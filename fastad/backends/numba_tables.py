"""What the Numba generator writes, per primitive: the source templates.

The tables the code generator (`numba_codegen`) reads for each primitive,
keyed by the `Primitive` object and checked at import: the scalar form of
an operation (a Python operator where one exists), its NumPy ufunc, the
combining step and start value of each reduction, which primitives Numba
has only for real numbers, and which run as a call back into NumPy.  Also
the text of literals and Numba types, and the two records the generator
builds (`_Var`, a variable of the generated code; `_Step`, the lines of one
instruction).  Adding an elementwise primitive to the Numba backend is a
row in `UFUNCS` (and `SCALAR_OPERATORS` where Python has an operator).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..primitives.registry import Primitive, check_table
from ..primitives.registry import prims as P

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
UFUNCS: dict[Primitive, str] = check_table({
    P.neg: "negative", P.abs: "abs", P.exp: "exp", P.exp2: "exp2", P.log: "log",
    P.log2: "log2", P.log10: "log10", P.log1p: "log1p", P.expm1: "expm1", P.sqrt: "sqrt",
    P.cbrt: "cbrt", P.square: "square", P.reciprocal: "reciprocal", P.sin: "sin",
    P.cos: "cos", P.tan: "tan", P.arcsin: "arcsin", P.arccos: "arccos", P.arctan: "arctan",
    P.sinh: "sinh", P.cosh: "cosh", P.tanh: "tanh", P.arcsinh: "arcsinh",
    P.arccosh: "arccosh", P.arctanh: "arctanh", P.sign: "sign", P.floor: "floor",
    P.ceil: "ceil", P.round: "rint", P.logical_not: "logical_not",
    P.add: "add", P.sub: "subtract", P.mul: "multiply", P.div: "divide", P.pow: "power",
    P.maximum: "maximum", P.minimum: "minimum", P.arctan2: "arctan2", P.hypot: "hypot",
    P.logaddexp: "logaddexp", P.lt: "less", P.le: "less_equal", P.gt: "greater",
    P.ge: "greater_equal", P.eq: "equal", P.ne: "not_equal", P.logical_and: "logical_and",
    P.logical_or: "logical_or", P.real: "real", P.imag: "imag", P.conj: "conjugate",
}, "numba_backend.UFUNCS")
# Primitives the generated code runs as a call back into NumPy (in Numba's
# object mode, holding the GIL for that one instruction): Numba has no FFT.
# Names, as docs/conformance.md shows them; the primitive still has an emitter.
HOST_CALLS = frozenset({"fft"})
# Primitives NumPy defines on complex numbers that Numba does not (ordering,
# and functions of real numbers only): tapes applying them to complex values
# run on the reference backend.
REAL_ONLY = check_table(frozenset({
    P.maximum, P.minimum, P.lt, P.le, P.gt, P.ge, P.max, P.min, P.floor, P.ceil, P.round,
    P.cbrt, P.arctan2, P.hypot, P.logaddexp, P.logabsdet, P.detsign}),
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
