"""Traced values: what a `Tracer` can do, as a NumPy array of its shape and dtype.

A `Tracer` knows its slot on the tape being recorded (`core.tracer.Builder`)
and its concrete value; its operators, methods and properties apply the
NumPy-level functions of `FRONT_END`, which `fastad.numpy` fills in.
Recording (`Builder`, `bind`) is `core.tracer`, which imports this module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .errors import TracingError
from .tape import Aval, aval_of

if TYPE_CHECKING:
    from .tracer import Builder


#: The NumPy-level functions that `Tracer`'s operators, methods and properties
#: apply, by name: filled in by `fastad.numpy` when it is imported (it is,
#: by ``import fastad``, before any value can be traced).  The class body
#: below says what a traced value can do; fastad.numpy says how.  This
#: module does not import fastad.numpy: fastad.numpy is written on top of
#: it and of `core.tracer` (`Tracer`, `bind`, the builder), so a module-level
#: import here would be a cycle, and an import inside each operator would
#: cost an import statement per traced operation, on tracing's hot path.
FRONT_END: dict[str, Callable[..., Any]] = {}


#: the types of nearly every traced value, whose shape and dtype are attributes
_NUMPY_VALUES = frozenset({np.ndarray, np.float64, np.float32, np.complex128, np.complex64,
                           np.bool_, np.int64})


def _method(name: str) -> Callable[..., Any]:
    """A method of a traced value that applies ``FRONT_END[name]`` to it."""
    def method(self: "Tracer", *args: Any, **kwargs: Any) -> Any:
        return FRONT_END[name](self, *args, **kwargs)
    method.__name__ = name
    return method


class Tracer:
    """A value being traced.  Behaves like a NumPy array of its shape and dtype."""

    # view_of: how fastad.numpy keeps this value consistent with the array it
    # is a NumPy view of (a `_View`); views: weak references to the values made
    # as views of this one.  Both unset until a view is taken
    # (fastad/numpy/_views.py).
    __slots__ = ("builder", "slot", "value", "view_of", "views", "__weakref__")
    __array_priority__ = 1000.0

    def __init__(self, builder: Builder, slot: int, value: Any) -> None:
        self.builder = builder
        self.slot = slot
        self.value = value

    # -- what NumPy code asks of an array ----------------------------------
    @property
    def aval(self) -> Aval:
        return self.builder.tape.avals[self.slot]

    # Asked several times per traced operation by the front end: NumPy's own
    # attributes where the value is an array or NumPy scalar (it nearly
    # always is), its functions otherwise.
    @property
    def shape(self) -> tuple[int, ...]:
        v = self.value
        return v.shape if type(v) in _NUMPY_VALUES else np.shape(v)

    @shape.setter
    def shape(self, _shape: Any) -> None:  # NumPy's reshape in place
        raise AttributeError("setting the shape of a traced array in place is not supported; "
                             "use x = x.reshape(shape)")

    @property
    def dtype(self) -> np.dtype:
        v = self.value
        return v.dtype if type(v) in _NUMPY_VALUES else np.result_type(v)

    @property
    def ndim(self) -> int:
        v = self.value
        return v.ndim if type(v) in _NUMPY_VALUES else np.ndim(v)

    @property
    def size(self) -> int:
        v = self.value
        return v.size if type(v) in _NUMPY_VALUES else int(np.size(v))

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"Tracer(%{self.slot}: {aval_of(self.value)})"

    # -- leaving the trace is an error, never a silent constant -----------
    def _leave(self, what: str, fix: str) -> Any:
        from .errors import library_counterpart
        from .int_data import IntValueNeeded, data_sources
        sources = data_sources()
        if sources:  # perhaps computed from integers taken as data (labels.max()): by value
            raise IntValueNeeded(sources)
        ours = library_counterpart()
        if ours is not None:
            fix = f"The library function called converts its arguments; call {ours} instead."
        raise TracingError(f"{what} on a traced value would make it a constant and lose its "
                           f"derivative. {fix}")

    def __float__(self) -> float:
        if self.dtype.kind in "iub":
            return float(self._guarded_integers())
        return self._leave("float() (or storing it into a NumPy array)",
                           "Keep it an array: use numpy functions on it, and build arrays of "
                           "traced values with np.stack or fastad.numpy.zeros plus assignment.")

    def __int__(self) -> int:
        if self.dtype.kind in "iub":
            return int(self._guarded_integers())
        return self._leave("int()", "Keep it an array: use fastad.numpy / numpy functions.")

    def _guarded_integers(self) -> np.ndarray:
        """The values of an integer or boolean traced value wanted as plain
        ones (indexing a NumPy array with indices computed from x, ``range``
        of a count): they have no derivative to lose, so they are given, and
        a guard records that a compiled replay must see the same values (a
        change retraces).  From integers taken as data they key those
        arguments by value instead (`IntValueNeeded`)."""
        from .int_data import IntValueNeeded, data_sources
        sources = data_sources()
        if sources:
            raise IntValueNeeded(sources)
        return FRONT_END["concrete"](self)

    def __complex__(self) -> complex:
        return self._leave("complex()", "Keep it an array.")

    def __index__(self) -> int:
        if self.dtype.kind in "iu" and not self.shape:
            return int(self._guarded_integers())
        return self._leave("using it as an index", "Index with Python ints or constant arrays.")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.dtype.kind in "iub":
            values = self._guarded_integers()
            return values if dtype is None else values.astype(dtype)
        if dtype is not None and np.dtype(dtype).kind in "iub" and self.dtype.kind == "f":
            # np.int64(x), np.asarray(x, dtype=int): a cast with no derivative to
            # lose, its values under a guard, as the integers' above
            return FRONT_END["astype"](self, dtype)._guarded_integers()
        return self._leave(
            "np.asarray()/np.array() (or storing it into a NumPy array)",
            "Use fastad.numpy.stack/concatenate, or create the array with fastad.numpy.zeros "
            "and assign into it; math.* functions need numpy.* instead.")

    def item(self, *args: Any) -> Any:
        if self.dtype.kind in "iub":  # no derivative to lose: the value, under a guard
            return self._guarded_integers().item(*args)
        raise TracingError(".item()/.tolist() on a traced value would make it a constant and "
                           "lose its derivative; keep it an array")

    def tolist(self) -> Any:
        if self.dtype.kind in "iub":
            return self._guarded_integers().tolist()
        return self.item()

    # A 0-d value is indexed as NumPy's 0-d arrays are (x[None], x[()],
    # x[...]), yet is no sequence: len() and iteration raise, so NumPy's
    # array coercion takes it for a scalar and Python's fallback iteration
    # (which stops at the first IndexError) never yields an empty list.
    def __getitem__(self, key: Any) -> Any:
        return FRONT_END["getitem"](self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        FRONT_END["setitem"](self, key, value)

    def __len__(self) -> int:
        raise TypeError("len() of unsized object")

    def __iter__(self):
        raise TypeError("iteration over a 0-d array")

    def __bool__(self) -> bool:
        from .guards import record_guard
        return record_guard(self)

    def __hash__(self) -> int:  # defining __eq__ would otherwise unset it
        return id(self)

    # -- NumPy dispatch protocols -----------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return FRONT_END["ufunc"](ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        return FRONT_END["function"](func, args, kwargs)

    # -- operators ----------------------------------------------------------
    def __add__(self, other: Any) -> Any:
        return FRONT_END["add"](self, other)

    def __radd__(self, other: Any) -> Any:
        return FRONT_END["add"](other, self)

    def __sub__(self, other: Any) -> Any:
        return FRONT_END["subtract"](self, other)

    def __rsub__(self, other: Any) -> Any:
        return FRONT_END["subtract"](other, self)

    def __mul__(self, other: Any) -> Any:
        return FRONT_END["multiply"](self, other)

    def __rmul__(self, other: Any) -> Any:
        return FRONT_END["multiply"](other, self)

    def __truediv__(self, other: Any) -> Any:
        return FRONT_END["divide"](self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return FRONT_END["divide"](other, self)

    def __pow__(self, other: Any) -> Any:
        return FRONT_END["power"](self, other)

    def __rpow__(self, other: Any) -> Any:
        return FRONT_END["power"](other, self)

    def __mod__(self, other: Any) -> Any:
        return FRONT_END["remainder"](self, other)

    def __rmod__(self, other: Any) -> Any:
        return FRONT_END["remainder"](other, self)

    def __floordiv__(self, other: Any) -> Any:
        return FRONT_END["floor_divide"](self, other)

    def __rfloordiv__(self, other: Any) -> Any:
        return FRONT_END["floor_divide"](other, self)

    def __divmod__(self, other: Any) -> Any:
        return FRONT_END["divmod"](self, other)

    def __rdivmod__(self, other: Any) -> Any:
        return FRONT_END["divmod"](other, self)

    def __matmul__(self, other: Any) -> Any:
        return FRONT_END["matmul"](self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return FRONT_END["matmul"](other, self)

    def __neg__(self) -> Any:
        return FRONT_END["negative"](self)

    def __pos__(self) -> Any:
        return FRONT_END["positive"](self)

    def __abs__(self) -> Any:
        return FRONT_END["absolute"](self)

    def __lt__(self, other: Any) -> Any:
        return FRONT_END["less"](self, other)

    def __le__(self, other: Any) -> Any:
        return FRONT_END["less_equal"](self, other)

    def __gt__(self, other: Any) -> Any:
        return FRONT_END["greater"](self, other)

    def __ge__(self, other: Any) -> Any:
        return FRONT_END["greater_equal"](self, other)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return FRONT_END["equal"](self, other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return FRONT_END["not_equal"](self, other)

    def __and__(self, other: Any) -> Any:
        out = _bitwise("bitwise_and", self, other)
        return FRONT_END["logical_and"](self, other) if out is None else out

    def __rand__(self, other: Any) -> Any:
        out = _bitwise("bitwise_and", other, self)
        return FRONT_END["logical_and"](other, self) if out is None else out

    def __or__(self, other: Any) -> Any:
        out = _bitwise("bitwise_or", self, other)
        return FRONT_END["logical_or"](self, other) if out is None else out

    def __ror__(self, other: Any) -> Any:
        out = _bitwise("bitwise_or", other, self)
        return FRONT_END["logical_or"](other, self) if out is None else out

    def __xor__(self, other: Any) -> Any:  # of masks: where they differ
        out = _bitwise("bitwise_xor", self, other)
        return FRONT_END["not_equal"](self, other) if out is None else out

    def __rxor__(self, other: Any) -> Any:
        out = _bitwise("bitwise_xor", other, self)
        return FRONT_END["not_equal"](other, self) if out is None else out

    def __lshift__(self, other: Any) -> Any:
        return _bitwise("left_shift", self, other, shift=True)

    def __rlshift__(self, other: Any) -> Any:
        return _bitwise("left_shift", other, self, shift=True)

    def __rshift__(self, other: Any) -> Any:
        return _bitwise("right_shift", self, other, shift=True)

    def __rrshift__(self, other: Any) -> Any:
        return _bitwise("right_shift", other, self, shift=True)

    def __invert__(self) -> Any:  # of a mask: its negation; of integers: NumPy's ~
        if _kind(self) in "iu":
            return FRONT_END["ufunc"](np.invert, "__call__", (self,), {})
        return FRONT_END["logical_not"](self)

    # ``v op= b``: a 0-d traced value is immutable like a NumPy scalar (Python
    # rebinds the name to ``v op b``) unless it is a 0-d view of an array,
    # which it writes into (fastad.numpy's in-place functions decide)
    __iadd__ = _method("in_place_add_0d")
    __isub__ = _method("in_place_subtract_0d")
    __imul__ = _method("in_place_multiply_0d")
    __itruediv__ = _method("in_place_divide_0d")
    __ipow__ = _method("in_place_power_0d")

    # -- NumPy's array methods and properties ---------------------------------
    sum = _method("sum")
    mean = _method("mean")
    prod = _method("prod")
    max = _method("max")
    min = _method("min")
    var = _method("var")
    std = _method("std")
    cumsum = _method("cumsum")
    dot = _method("dot")
    clip = _method("clip")
    astype = _method("astype")
    copy = _method("copy")
    any = _method("any")
    all = _method("all")
    trace = _method("trace")
    put = _method("put")
    cumprod = _method("cumprod")
    round = _method("round")  # noqa: A003 - NumPy's name
    repeat = _method("repeat")
    take = _method("take")
    compress = _method("compress_method")
    choose = _method("choose")
    # with no derivative: plain results (guarded), as fastad.numpy's functions
    argmax = _method("argmax")
    argmin = _method("argmin")
    argsort = _method("argsort")
    argpartition = _method("argpartition")
    nonzero = _method("nonzero")
    searchsorted = _method("searchsorted")
    # those whose NumPy result may be a view of the array
    ravel = _method("ravel_method")
    squeeze = _method("squeeze_method")
    swapaxes = _method("swapaxes_method")
    diagonal = _method("diagonal_method")
    reshape = _method("reshape_method")
    transpose = _method("transpose_method")
    view = _method("view_method")
    conj = conjugate = _method("conj_method")
    flatten = _method("flatten_method")
    # those that write into the array
    sort = _method("sort_method")
    partition = _method("partition_method")
    fill = _method("fill_method")

    @property
    def flat(self) -> "_Flat":
        """``x.flat``: x's elements in C order, read by index or in a loop,
        written by index."""
        return _Flat(self)

    T = property(_method("T"))
    at = property(_method("at"))  # JAX's x.at[idx].set(v) and the other functional updates
    mT = property(_method("mT"))
    base = property(_method("base"))
    real = property(_method("real_property"), _method("set_real"))
    imag = property(_method("imag_property"), _method("set_imag"))


class ArrayTracer(Tracer):
    """A traced value with at least one axis: it can be iterated and measured
    with len().  0-d values are plain `Tracer`s, whose len() raises as a 0-d
    array's does, so that NumPy does not mistake them for sequences: storing
    one into an array then raises the TracingError of ``float()`` instead of
    NumPy's "setting an array element with a sequence"."""

    __slots__ = ()

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(self.shape[0]))

    # ``a op= b`` writes into a, where every name for it (and every view of
    # its memory) sees the change, as NumPy's in-place operators do
    __iadd__ = _method("in_place_add")
    __isub__ = _method("in_place_subtract")
    __imul__ = _method("in_place_multiply")
    __itruediv__ = _method("in_place_divide")
    __ipow__ = _method("in_place_power")
    __imatmul__ = _method("in_place_matmul")


class _Flat:
    """What ``x.flat`` gives of a traced array (NumPy's flatiter)."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def __getitem__(self, key: Any) -> Any:
        return self.array.ravel()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        # the positions in C order, written through the array's own indices
        # (a reshape of a transposed or sliced array would be a copy)
        shape = self.array.shape
        flat = np.arange(int(np.prod(shape)))[key]
        self.array[np.unravel_index(flat, shape)] = value

    def __len__(self) -> int:
        return int(np.prod(self.array.shape))

    def __iter__(self) -> Any:
        return iter(self.array.ravel())


# the classes of traced values `bind` records: these two, and the integer and
# boolean arguments taken as data (`int_data` adds its classes when imported)
_TRACERS = {Tracer, ArrayTracer}


def new_tracer(builder: Builder, slot: int, value: Any) -> Tracer:
    ndim = value.ndim if isinstance(value, (np.ndarray, np.generic)) else np.ndim(value)
    cls = ArrayTracer if ndim else Tracer
    return cls(builder, slot, value)



def _kind(x: Any) -> str:
    """NumPy's dtype kind of an operand ("?" for what has none)."""
    if isinstance(x, (bool, np.bool_)):
        return "b"
    if isinstance(x, (int, np.integer)):
        return "i"
    if isinstance(x, (float, complex)):
        return "f" if isinstance(x, float) else "c"
    dtype = getattr(x, "dtype", None)
    return "?" if dtype is None else np.dtype(dtype).kind


def _bitwise(name: str, a: Any, b: Any, shift: bool = False) -> Any:
    """NumPy's ``name`` of a traced mask and an integer (``mask & 1``,
    ``mask << 2``): integers of NumPy's dtype, the mask taken as integer
    data (`int_data.integer_op`).  None for two masks (their logic, as
    NumPy's ``&`` of booleans is) or what is no integer operation, which
    the caller computes as before; shifts have no such fallback."""
    kinds = _kind(a) + _kind(b)
    if (kinds == "bb" and not shift) or not set(kinds) <= {"b", "i", "u"}:
        if shift or "f" in kinds or "c" in kinds:  # NumPy's: no bitwise loop for floats
            raise TypeError(f"ufunc '{name}' not supported for the input types")
        return None
    from .int_data import integer_like, integer_op

    def as_data(x: Any) -> Any:
        if isinstance(x, Tracer) and _kind(x) == "b":
            return integer_like(FRONT_END["astype"](x, np.float64),
                                getattr(x, "sources", frozenset()), np.dtype(np.bool_))
        return np.bool_(x) if type(x) is bool else x  # (NumPy's: True << mask is int8)
    out = integer_op(name, (as_data(a), as_data(b)))
    if out is None and ("i" in kinds or "u" in kinds):
        # a traced value of an integer dtype that is no data (a loop's
        # integer carry): NumPy's ufunc of it, never the masks' logic
        return FRONT_END["ufunc"](getattr(np, name), "__call__", (a, b), {})
    if out is None and shift:
        raise TypeError(f"ufunc '{name}' of traced values that are not integers taken "
                        "as data is not supported")
    return out
