"""Fast paths of tracing for scalar loops.

A Python loop over a vector's elements records millions of operations of
0-d float64 values (``s = s + np.log(1.0 + x[i] ** 2)``).  Through the front
end each costs four to six Python calls (the operator, FRONT_END's
function, `bind`, `record`, `slot_of`/`const`) and a list of values; the
methods here replace Tracer's arithmetic, comparison and unary operators,
``x ** n``, ``x[i]``, NumPy's ufuncs of one or two inputs and ``np.where``
for exactly those operands, record the instruction `bind` would (same
primitive, operands, constant slots, value and source line:
`tracer._append`, which `Builder.record` ends with) and
fall back to the methods they replace for anything else: other types,
another trace than the innermost one (a capture), integer data.
Importing this module installs them: `fastad.numpy` does (`_dispatch`,
which fills `UFUNC_PRIMS`), as it fills FRONT_END, before anything traces.

The operators and the ufuncs take float arrays too (`_array_binary`): an
eager loss is a few dozen operations on arrays, and the front end's way
costs about as much per operation as NumPy's work on a small array.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Callable

import numpy as np

from . import tracer as _tracer_module
from .registry import Primitive, registry
from .traced import FRONT_END, ArrayTracer, Tracer
from .weak_float import WeakFloatTracer
from .tracer import _F64, _FLOAT64_OPERATORS, _INT64, _INT64_STR, Builder, _append, _traces


def _beside_float64(a: Any, b: Any) -> tuple[Any, Any]:
    """A weak float beside a float64 scalar as a plain float64 scalar, which
    the fast paths take: its precision is the other's, as of two of them."""
    if type(a) is WeakFloatTracer and type(b) is Tracer and type(b.value) is _F64:
        return Tracer(a.builder, a.slot, a.value), b
    if type(b) is WeakFloatTracer and type(a) is Tracer and type(a.value) is _F64:
        return a, Tracer(b.builder, b.slot, b.value)
    return a, b


def _arithmetic(prim_name: str, front_name: str, reflected: bool) -> Callable[..., Any]:
    op = _FLOAT64_OPERATORS[prim_name]

    def method(self: Tracer, other: Any) -> Any:
        if type(self) is WeakFloatTracer or type(other) is WeakFloatTracer:
            self, other = _beside_float64(self, other)
        if type(self) is Tracer and type(self.value) is _F64:
            builder, stack = self.builder, _traces.stack
            if stack and stack[-1] is builder:
                kind, slot = type(other), -1
                if kind is Tracer:  # of this trace, a float64 scalar
                    if other.builder is builder and type(other.value) is _F64:
                        slot, v = other.slot, other.value
                elif kind is float:  # `Builder.const`'s first case, inlined
                    key = (float, other, math.copysign(1.0, other), 1.0)
                    slot = builder._const_slot.get(key)
                    if slot is None:
                        slot = builder.const(other)
                    v = other
                if slot >= 0:
                    p = registry[prim_name]
                    if reflected:
                        return _append(builder, p, (slot, self.slot), (), op(v, self.value), 2)
                    return _append(builder, p, (self.slot, slot), (), op(self.value, v), 2)
                elif kind is Tracer and other.builder is builder and _float_0d(other.value):
                    # and a 0-d float array (a `where`'s): the primitive's ufunc, as `bind`
                    # computes it (the scalars' operator is for two scalars only)
                    p = registry[prim_name]
                    if _plain(p):
                        if reflected:
                            return _append(builder, p, (other.slot, self.slot), (),
                                           p.impl(other.value, self.value), 2)
                        return _append(builder, p, (self.slot, other.slot), (),
                                       p.impl(self.value, other.value), 2)
                if kind is ArrayTracer or kind is np.ndarray:  # and an array: the array's way
                    out = _array_binary(builder, registry[prim_name], *(
                        (other, self) if reflected else (self, other)))
                    if out is not None:
                        return out
        elif type(self) is ArrayTracer and _float_array(self.value):
            out = _array_arithmetic(self, other, registry[prim_name], reflected)
            if out is not None:
                return out
        if reflected:
            return FRONT_END[front_name](other, self)
        return FRONT_END[front_name](self, other)
    return method


def _float_array(value: Any) -> bool:
    return type(value) is np.ndarray and value.dtype.kind == "f"


def _float_0d(value: Any) -> bool:
    return type(value) is np.ndarray and value.dtype is _F64_DTYPE and not value.ndim


def _plain(prim: Primitive) -> bool:
    """Whether `bind` computes ``prim`` by ``prim.impl`` in every trace (no
    other implementation for releasing or eager traces, no in-place one, no
    integers kept): what a fast path may then compute it by."""
    return prim.builtin and prim.release_impl is None and prim.view_impl is None \
        and prim.in_place_impl is None and not prim.keeps_integers


def _comparison(ufunc: np.ufunc, front_name: str) -> Callable[..., Any]:
    """``x > c``, ``x <= y`` of a float64 scalar of the innermost trace and a
    Python float or another: the primitive the front end's function binds
    (`UFUNC_PRIMS`), computed by its ufunc as `bind` computes it."""
    def method(self: Tracer, other: Any) -> Any:
        if type(self) is WeakFloatTracer or type(other) is WeakFloatTracer:
            self, other = _beside_float64(self, other)
        if type(self) is Tracer and type(self.value) is _F64:
            builder, stack = self.builder, _traces.stack
            prim = UFUNC_PRIMS.get(ufunc)
            if prim is not None and stack and stack[-1] is builder and _is_scalar(builder, other):
                if type(other) is Tracer:
                    ins, v = (self.slot, other.slot), other.value
                else:
                    ins, v = (self.slot, builder.const(other)), other
                return _append(builder, prim, ins, (), prim.impl(self.value, v), 2)
        return FRONT_END[front_name](self, other)
    return method


def _unary_operator(ufunc: np.ufunc, front_name: str) -> Callable[..., Any]:
    """``-x``, ``abs(x)`` of a float64 scalar of the innermost trace: the
    primitive the front end's function binds (`UFUNC_PRIMS`), computed by its
    ufunc as `bind` computes it."""
    def method(self: Tracer) -> Any:
        if type(self) is Tracer and type(self.value) is _F64:
            builder, stack = self.builder, _traces.stack
            prim = UFUNC_PRIMS.get(ufunc)
            if prim is not None and stack and stack[-1] is builder:
                return _append(builder, prim, (self.slot,), (), prim.impl(self.value), 2)
        return FRONT_END[front_name](self)
    return method


def _array_function(self: Tracer, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    """``np.where(c, x, y)`` of scalars of the innermost trace (a boolean or
    float64 condition, float64 values or Python floats): the `where` the
    front end binds, computed as `bind` computes it (a 0-d array)."""
    if func is np.where and not kwargs and len(args) == 3:
        builder, stack = self.builder, _traces.stack
        prim = registry["where"]
        if stack and stack[-1] is builder and _plain(prim) and _where_operand(builder, args[0]) \
                and _where_operand(builder, args[1]) and _where_operand(builder, args[2]):
            # (the slots in `record`'s order: left to right, constants made as met)
            ins = tuple([a.slot if type(a) is Tracer else builder.const(a) for a in args])
            values = [a.value if type(a) is Tracer else a for a in args]
            return _append(builder, prim, ins, (), prim.impl(*values), 2)
    return FRONT_END["function"](func, args, kwargs)


def _where_operand(builder: Builder, x: Any) -> bool:
    kind = type(x)
    if kind is Tracer:
        value_kind = type(x.value)
        return x.builder is builder and (value_kind is _F64 or value_kind is np.bool_)
    return kind is float


def _array_arithmetic(self: ArrayTracer, other: Any, prim: Primitive, reflected: bool) -> Any:
    """``x * y``, ``x + 1.0``, ``y - x`` of a float array of the innermost trace:
    `_array_binary`'s, or None."""
    builder, stack = self.builder, _traces.stack
    if not stack or stack[-1] is not builder:
        return None
    return _array_binary(builder, prim, other, self) if reflected else \
        _array_binary(builder, prim, self, other)


def _array_binary(builder: Builder, prim: Primitive, a: Any, b: Any) -> Any:
    """``prim(a, b)`` of float arrays or float64 scalars of ``builder``'s trace,
    Python floats and numeric array constants, one of them at least traced
    and one an array: the instruction `bind` records (a constant's slot made as
    `Builder.record` makes it, the first operand's first), computed by the
    primitive's ufunc, as `bind` computes it; None for any other operands
    (the front end's way).  An eager loss's arithmetic, a compiled trace's of arrays."""
    if not (_operand(builder, a) and _operand(builder, b)):
        return None
    kind_a, kind_b = type(a), type(b)
    traced_a = kind_a is ArrayTracer or kind_a is Tracer
    traced_b = kind_b is ArrayTracer or kind_b is Tracer
    if not (traced_a or traced_b) or (kind_a is not ArrayTracer and kind_a is not np.ndarray
                                      and kind_b is not ArrayTracer and kind_b is not np.ndarray):
        return None  # (two scalars: `bind` computes them by the scalars' operators)
    ins = (a.slot if traced_a else builder.const(a), b.slot if traced_b else builder.const(b))
    return _append(builder, prim, ins, (), prim.impl(a.value if traced_a else a,
                                                     b.value if traced_b else b), 2)


def _operand(builder: Builder, x: Any) -> bool:
    kind = type(x)
    if kind is ArrayTracer or kind is Tracer:
        v = x.value
        return x.builder is builder and (type(v) is _F64 or _float_array(v))
    return kind is float or (kind is np.ndarray and x.dtype.kind in "biuf")


def _power(self: Tracer, other: Any) -> Any:
    """``x ** 2`` (a square, as `fastad.numpy.power` records it) and ``x ** n``
    of a float64 scalar by a Python int or float constant."""
    kind = type(other)
    if type(self) is Tracer and type(self.value) is _F64 and (kind is int or kind is float):
        builder, stack = self.builder, _traces.stack
        if stack and stack[-1] is builder:
            if other == 2:
                prim = registry["square"]
                return _append(builder, prim, (self.slot,), (), prim.impl(self.value), 2)
            prim = registry["pow"]
            ins = (self.slot, builder.const(other))
            return _append(builder, prim, ins, (), prim.impl(self.value, other), 2)
    return FRONT_END["power"](self, other)


def _array_ufunc(self: Tracer, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
    """``np.log(x)``, ``np.maximum(x, y)`` of float64 scalars (or a Python
    float and one): the primitive the front end's function of the ufunc
    binds alone (`UFUNC_PRIMS`), if it binds one, computed as `bind` does."""
    if method == "__call__" and not kwargs:
        prim = UFUNC_PRIMS.get(ufunc)
        builder, stack = self.builder, _traces.stack
        if prim is not None and stack and stack[-1] is builder:
            if len(inputs) == 1:
                if (type(self) is Tracer and type(self.value) is _F64) or \
                        (type(self) is ArrayTracer and _float_array(self.value)):
                    return _append(builder, prim, (self.slot,), (), prim.impl(self.value), 2)
            else:
                a, b = inputs
                if _is_scalar(builder, a) and _is_scalar(builder, b):
                    # (the slots in `record`'s order: a constant's is made first)
                    ins = (a.slot if type(a) is Tracer else builder.const(a),
                           b.slot if type(b) is Tracer else builder.const(b))
                    a = a.value if type(a) is Tracer else a
                    b = b.value if type(b) is Tracer else b
                    op = _FLOAT64_OPERATORS.get(prim.name)  # np.add(x, y): x + y, as `bind`
                    return _append(builder, prim, ins, (), op(a, b) if op is not None
                                   else prim.impl(a, b), 2)
                out = _array_binary(builder, prim, a, b)
                if out is not None:
                    return out
    return FRONT_END["ufunc"](ufunc, method, inputs, kwargs)


def _is_scalar(builder: Builder, x: Any) -> bool:
    """Whether ``x`` is a float64 scalar of ``builder``'s trace or a Python float."""
    kind = type(x)
    return kind is float or (kind is Tracer and x.builder is builder and type(x.value) is _F64)


#: NumPy's ufunc of one or two inputs -> the primitive whose `bind` alone the
#: front end's function of it is, with the ufunc as its implementation
#: (filled by `fastad.numpy`); `_array_ufunc` records those directly
UFUNC_PRIMS: dict[np.ufunc, Primitive] = {}


def _item(self: Tracer, key: Any) -> Any:
    """``x[i]`` of a float vector by a Python int: the element, a `take` by
    a 0-d int64 constant as `fastad.numpy.getitem` records it."""
    value = self.value
    if type(key) is int and type(self) is ArrayTracer and type(value) is np.ndarray \
            and value.ndim == 1 and value.dtype is _F64_DTYPE:
        builder, stack = self.builder, _traces.stack
        d = value.shape[0]
        if stack and stack[-1] is builder and -d <= key < d:
            key %= d
            # `Builder.const` of np.array(key, np.int64), by the same key
            ckey = (_INT64_STR, (), key.to_bytes(8, sys.byteorder, signed=True))
            slot = builder._const_slot.get(ckey)
            if slot is None:
                index = np.array(key, dtype=_INT64)
                index.flags.writeable = False
                slot = builder._new_index(ckey, index)
            return _append(builder, registry["take"], (self.slot, slot), (), value[key], 2)
    return FRONT_END["getitem"](self, key)


_F64_DTYPE = np.dtype(np.float64)


#: (class, method name) -> the fast path set here (not in traced.py's class
#: body: they record, and recording is this module's)
FAST_PATHS: dict[tuple[type, str], Callable[..., Any]] = {
    (Tracer, "__pow__"): _power, (Tracer, "__array_ufunc__"): _array_ufunc,
    (ArrayTracer, "__getitem__"): _item, (Tracer, "__array_function__"): _array_function}
for _ufunc, _front, _dunder in ((np.less, "less", "lt"), (np.less_equal, "less_equal", "le"),
                                (np.greater, "greater", "gt"),
                                (np.greater_equal, "greater_equal", "ge")):
    FAST_PATHS[Tracer, f"__{_dunder}__"] = _comparison(_ufunc, _front)
FAST_PATHS[Tracer, "__neg__"] = _unary_operator(np.negative, "negative")
FAST_PATHS[Tracer, "__abs__"] = _unary_operator(np.absolute, "absolute")
for _prim_name, _front in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                           ("div", "divide")):
    _dunder = "truediv" if _front == "divide" else _front[:3]
    FAST_PATHS[Tracer, f"__{_dunder}__"] = _arithmetic(_prim_name, _front, False)
    FAST_PATHS[Tracer, f"__r{_dunder}__"] = _arithmetic(_prim_name, _front, True)
#: the methods they replace, which they fall back to (tests compare the two)
FRONT_END_PATHS = {(cls, name): getattr(cls, name) for cls, name in FAST_PATHS}
#: the fast paths in Python; with the C hot path of tracing (`core._tracing`)
#: FAST_PATHS holds its methods, which fall back to these
PYTHON_PATHS = dict(FAST_PATHS)
if _tracer_module._tracing is not None:
    _tracer_module._tracing.set_paths({name: fast for (_, name), fast in PYTHON_PATHS.items()},
                                      UFUNC_PRIMS)
    # 0-d values' methods in C; arrays keep the Python ones (the C ones would
    # only hand them over), which they would otherwise inherit from Tracer
    FAST_PATHS = {**{(cls, name): _tracer_module._tracing.METHODS.get(name, fast)
                     for (cls, name), fast in FAST_PATHS.items()},
                  **{(ArrayTracer, name): fast for (cls, name), fast in FAST_PATHS.items()
                     if cls is Tracer and name in _tracer_module._tracing.METHODS}}
    FRONT_END_PATHS.update({key: getattr(*key) for key in FAST_PATHS
                            if key not in FRONT_END_PATHS})
for (_cls, _method_name), _fast in FAST_PATHS.items():
    setattr(_cls, _method_name, _fast)


def binds_alone(prim: Primitive | None, ufunc: Any) -> bool:
    """Whether the front end's function of NumPy's ``ufunc`` of one or two
    inputs, which binds ``prim`` alone, computes what ``prim.impl`` (or, for
    the four operators, the scalars' operator) computes in every trace: no
    other implementation for releasing or eager traces, no in-place one."""
    return prim is not None and isinstance(ufunc, np.ufunc) and ufunc.nin in (1, 2) \
        and ufunc.nout == 1 and prim.builtin and prim.release_impl is None \
        and prim.view_impl is None and prim.in_place_impl is None and not prim.keeps_integers
