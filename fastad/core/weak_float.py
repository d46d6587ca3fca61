"""A Python float a compiled function takes as data: weak, as NumPy's.

NumPy 2 promotes a Python scalar weakly: ``x32 * 2.0`` is float32, where
``x32 * np.float64(2.0)`` is float64.  A compiled function's Python float
argument is a float64 input of its tape, and an ordinary float64 tracer
would make ``x32 * s`` float64 where the eager call gives float32.  Traced
as a `WeakFloatTracer`, it is cast to the float precision NumPy computes
in where a ufunc or an operator meets it (`narrowing.narrow_floats`, as
for integers taken as data), and the operators between it and Python
numbers give a weak float again, as Python's floats do; NumPy's own
functions of it (``np.exp(s)``, a NumPy float64 scalar eagerly) give
ordinary float64 tracers.  The signature tells a Python float from a NumPy
one (`signatures.PYTHON_FLOAT`).
"""
from __future__ import annotations

from .traced import _TRACERS, Tracer


class WeakFloatTracer(Tracer):
    __slots__ = ()
    narrows = True  # (`narrowing.narrow_floats`)

    def __repr__(self) -> str:
        return f"WeakFloatTracer(%{self.slot}: a Python float traced as data)"


def weak_result(result: object, operands: tuple) -> object:
    """``result`` of Python's operator on ``operands`` as Python computes it:
    a weak float when every operand is a Python number or a traced one (a
    weak float, a Python int taken as data) and one at least is traced."""
    if type(result) is Tracer and all(type(x) in _PYTHON or is_weak_traced(x) for x in operands) \
            and any(is_weak_traced(x) for x in operands):
        return WeakFloatTracer(result.builder, result.slot, result.value)
    return result


def is_weak_traced(x: object) -> bool:
    """Whether ``x`` is a traced Python number: a weak float, a Python int
    taken as data."""
    test = WEAK_TRACED.get(type(x))
    return test is not None and test(x)


_PYTHON = frozenset((float, int, bool))
#: traced types that may hold a Python number, and whether one does: filled by
#: `int_data` (a Python int taken as data)
WEAK_TRACED = {WeakFloatTracer: lambda x: True}


_TRACERS.add(WeakFloatTracer)  # a traced value wherever the trace asks by type
