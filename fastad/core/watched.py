"""Captured arrays watched while a compiled function is traced.

A float array a compiled function reads from a closure or a global is read
by reference (`fastad.captures`): the tape takes it as an input, so a change
made in place is seen by the next call.  That holds for what the tape
computes from it, not for what plain NumPy computed from it while the
function was traced: ``W.sum(axis=0)``, ``W[[1, 0]]``, ``int(W[0, 0])``,
``if W.max() > 1`` leave constants or decisions of control flow in the tape
that the next call would not repeat.  Such an array must be guarded by its
contents instead (compared at each call, a retrace on a change).

To tell the two apart, the binding holding the array holds a `WatchedArray`
while the function runs.  Used as an operand of a traced operation (``x @
W``, ``W * t``, ``np.dot(W, t)``, ``jnp.concatenate([W, t])``), it stands
for the array itself and the tape reads it by reference.  Every other use
reads its values and marks it (`WatchedArray.read`): NumPy's ufuncs and functions
through ``__array_ufunc__``/``__array_function__``, conversions
(``__array__``, ``float()``, ``bool()``), its methods, iteration over its
elements.  Views of it (``W.T``, ``W[0]``, ``W.reshape(...)``) are watched
arrays too, as taking a view reads nothing; a copy (``W[[1, 0]]``,
``W.copy()``) is a read.  What it cannot see it counts as a read: the check
errs toward a guard, which costs a comparison per call, never toward a
stale value.

It passes for an ndarray (``isinstance(W, np.ndarray)``, through its
``__class__``), but is none: C code that converts arrays (NumPy's, SciPy's)
does so through ``__array__``, a read.  Compiled code of other libraries
that takes an array's memory directly (a Numba function, a Cython one) is
bound as a `ReadingCall` while the trace runs, which passes it the arrays
its arguments stand for, read.  Another thread that reads the
binding while the trace runs sees the watched array too; it computes the
same values.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from .traced import _TRACERS, FRONT_END

# NumPy functions of an array's shape and type only: no read of its values
_SHAPE_ONLY = frozenset({np.shape, np.ndim, np.size, np.result_type, np.iscomplexobj,
                         np.isrealobj, np.may_share_memory, np.shares_memory})
# NumPy functions giving a view of their first argument (watched as it is)
_VIEWS = frozenset({np.transpose, np.reshape, np.ravel, np.squeeze, np.swapaxes,
                    np.moveaxis, np.expand_dims, np.atleast_1d, np.atleast_2d,
                    np.atleast_3d, np.broadcast_to, np.diagonal, np.real})
# attributes of an array that read no values (the values of the rest may be read)
_STRUCTURE = frozenset({"shape", "ndim", "size", "dtype", "itemsize", "nbytes", "strides",
                        "flags", "__array_priority__"})
_VIEW_METHODS = frozenset({"reshape", "transpose", "swapaxes", "squeeze", "ravel", "view",
                           "diagonal"})
_VIEW_ATTRIBUTES = frozenset({"T", "mT", "real"})


def _traced(values: Any) -> bool:
    """Whether ``values`` (an operand, or a list/tuple of them) holds a traced value."""
    if type(values) in _TRACERS:
        return True
    if type(values) is list or type(values) is tuple:
        return any(_traced(v) for v in values)
    return False


def unwatched(value: Any, read: bool = False) -> Any:
    """``value`` with every watched array in it (lists, tuples, dicts) the
    array it stands for; each one's values read (marked) if ``read``."""
    kind = type(value)
    if kind is WatchedArray:
        return value.read_values() if read else value.array
    if kind is list or kind is tuple:
        return kind(unwatched(v, read) for v in value)
    if kind is dict:
        return {k: unwatched(v, read) for k, v in value.items()}
    return value


class WatchedArray:
    """A captured float array (or a view of it) while a trace runs; see the module."""

    __slots__ = ("array", "origin", "read")
    __hash__ = None  # as an ndarray's

    def __init__(self, array: np.ndarray, origin: np.ndarray, read: set[int]) -> None:
        self.array = array  # the array, or a NumPy view of it
        self.origin = origin  # the captured array
        self.read = read  # the ids of the captured arrays whose values the trace read

    @property  # isinstance(W, np.ndarray), as for the array it stands for
    def __class__(self) -> type:
        return np.ndarray

    def read_values(self) -> np.ndarray:
        """The array, its values read (marked)."""
        self.read.add(id(self.origin))
        return self.array

    def _wrap(self, result: Any) -> Any:
        """``result`` of a structural operation: a watched view if it views the
        origin's memory, else (a copy) the origin is read."""
        if isinstance(result, np.ndarray) and result.base is not None and \
                np.may_share_memory(result, self.origin):
            return WatchedArray(result, self.origin, self.read)
        self.read_values()
        return result

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.read_values()
        return array if dtype is None else array.astype(dtype)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        read = not _traced(inputs)  # with a traced operand: the traced operation's
        return getattr(ufunc, method)(*unwatched(inputs, read), **unwatched(kwargs, read))

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        if func in _VIEWS and args and args[0] is self:
            return self._wrap(func(*unwatched(args), **unwatched(kwargs)))
        read = not (func in _SHAPE_ONLY or _traced(args) or _traced(tuple(kwargs.values())))
        return func(*unwatched(args, read), **unwatched(kwargs, read))

    def __getattr__(self, name: str) -> Any:
        if name in _STRUCTURE:
            return getattr(self.array, name)
        if name in _VIEW_ATTRIBUTES:
            return self._wrap(getattr(self.array, name))
        if name in _VIEW_METHODS:
            method = getattr(self.array, name)
            return lambda *args, **kwargs: self._wrap(method(*args, **kwargs))
        return getattr(self.read_values(), name)

    def __getitem__(self, index: Any) -> Any:
        if _traced(index):  # X[idx] of a minibatch's traced indices: a traced gather
            out = FRONT_END["getitem"](self.array, index)
            if self.array.dtype.kind in "iu" and type(out) in _TRACERS:
                # integers gathered from integers are integer data (``X[perm[idx]]``)
                from .int_data import DATA_TRACERS, integer_like
                sources = frozenset().union(*(getattr(i, "sources", frozenset())
                                              for i in (index if type(index) is tuple
                                                        else (index,))
                                              if isinstance(i, DATA_TRACERS)))
                if sources and not isinstance(out, DATA_TRACERS):
                    return integer_like(out, sources, self.array.dtype)
            return out
        return self._wrap(self.array[unwatched(index)])

    def __setitem__(self, index: Any, value: Any) -> None:
        self.array[unwatched(index)] = unwatched(value)

    def __len__(self) -> int:
        return len(self.array)

    def __iter__(self) -> Any:
        if self.array.ndim > 1:  # rows: views
            return (WatchedArray(row, self.origin, self.read) for row in self.array)
        return iter(self.read_values())

    def __copy__(self) -> np.ndarray:
        return self.read_values().copy()

    def __deepcopy__(self, memo: Any) -> np.ndarray:
        return self.read_values().copy()

    def __reduce__(self) -> Any:
        return self.read_values().__reduce__()


class ReadingCall:
    """A Numba or Cython function bound where the traced function finds it (a
    global, a closure) while a trace runs: such code takes its arguments'
    memory, which a watched array has not, so it is called with the arrays
    they stand for, read (its result is a constant of the tape)."""

    __slots__ = ("target",)

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target = target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*unwatched(args, True), **unwatched(kwargs, True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class AdvancedIterator:
    """An iterator bound where the traced function finds it (a generator, an
    ``itertools.count``, a file) while a trace runs: what the function takes
    from it would be a constant of the tape, the same on every call, where
    the function itself takes the next values; so its use is recorded
    (``advanced``) and the trace refused (`fastad.captures.watching`)."""

    __slots__ = ("target", "advanced")

    def __init__(self, target: Any, advanced: list[Any]) -> None:
        self.target = target
        self.advanced = advanced

    def __iter__(self) -> "AdvancedIterator":
        return self

    def __next__(self) -> Any:
        self.advanced.append(self.target)
        return next(self.target)

    def __getattr__(self, name: str) -> Any:  # ``gen.send``, ``f.readline``: a use
        self.advanced.append(self.target)
        return getattr(self.target, name)


# the stand-ins `fastad.captures.watching` binds for a function or an iterator
# (``.target``: what they stand for)
STAND_INS = (ReadingCall, AdvancedIterator)


def takes_memory(value: Any) -> bool:
    """Whether ``value`` is compiled code that reads its array arguments'
    memory instead of converting them: a Numba dispatcher, a Cython function."""
    kind = type(value)
    return ((kind.__module__ or "").startswith("numba.") and hasattr(value, "py_func")) \
        or kind.__name__ in ("cython_function_or_method", "fused_cython_function")


def _operator(op: Callable[[Any, Any], Any], reflected: bool) -> Callable[..., Any]:
    """``W + x`` (``x + W`` if ``reflected``): with a traced ``x``, the array
    itself (read by reference by the traced operation); else a read."""
    def method(self: WatchedArray, other: Any) -> Any:
        array = self.array if _traced(other) else self.read_values()
        if type(other) is WatchedArray:
            other = other.read_values()
        return op(other, array) if reflected else op(array, other)
    return method


def _in_place(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``W += x``: written into the array, as NumPy does (the trace is then
    refused: `fastad.captures` sees the captured array changed)."""
    def method(self: WatchedArray, other: Any) -> Any:
        op(self.array, unwatched(other))
        return self
    return method


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    def method(self: WatchedArray) -> Any:
        return op(self.read_values())
    return method


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
           "truediv": operator.truediv, "floordiv": operator.floordiv, "mod": operator.mod,
           "pow": operator.pow, "matmul": operator.matmul, "and": operator.and_,
           "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
           "rshift": operator.rshift, "divmod": divmod}
for _name, _op in _BINARY.items():
    setattr(WatchedArray, f"__{_name}__", _operator(_op, False))
    setattr(WatchedArray, f"__r{_name}__", _operator(_op, True))
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"):
    setattr(WatchedArray, f"__i{_name}__", _in_place(getattr(operator, f"i{_name}")))
for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt,
                   "ge": operator.ge, "eq": operator.eq, "ne": operator.ne}.items():
    setattr(WatchedArray, f"__{_name}__", _operator(_op, False))
# its values read: the unary operators and the conversions (``if W[0, 0] > 1``'s bool)
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs,
                   "invert": operator.invert, "repr": repr, "str": str, "bool": bool,
                   "float": float, "int": int, "complex": complex,
                   "index": operator.index}.items():
    setattr(WatchedArray, f"__{_name}__", _unary(_op))
