"""Integer and boolean arguments of a compiled function traced as data
(docs/design.md, "Integer arguments are data until their value is used").

`IntTracer` (a Python or NumPy integer), `IntArrayTracer` (an integer array,
its integers held in float64) and `BoolArrayTracer` (a boolean array) are
traced values whose values a trace may use only as data: any use of the
values themselves raises `IntValueNeeded`, and the compiled function keys
those arguments by value and traces again.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .narrowing import NARROWING_TYPES, narrow_floats
from .weak_float import WEAK_TRACED, is_weak_traced
from .tracer import (_TRACERS, FRONT_END, KEEP_INTEGERS, ArrayTracer, Builder, Tracer, _traces,
                     bind)


class IntValueNeeded(BaseException):
    """A trace used the value of an integer argument it was given as data
    (``range(n)``, an index, a shape, ``int()``, hashing, formatting): the
    compiled function keys that argument by value from then on and traces
    again (`fastad.compiled`).  A BaseException, so that a user's ``except
    Exception`` around the use does not swallow it."""

    def __init__(self, sources: frozenset[Any]) -> None:
        # (the compiled function's id, the argument's position or keyword) pairs
        super().__init__(sources)
        self.sources = sources


class _IntegerData:
    """What `IntTracer` and `IntArrayTracer` share: the arguments they came
    from (``sources``), the refusal of any use of their values, and integer
    arithmetic that stays integer data."""

    __slots__ = ()

    def __init__(self, builder: Builder, slot: int, value: Any, sources: frozenset[Any],
                 data_dtype: Any = int, interval: tuple[int, int] | None = None) -> None:
        super().__init__(builder, slot, value)  # type: ignore[call-arg]
        self.sources = sources
        # the dtype NumPy would give the integers (``int``: a Python int), which
        # a compiled function's result taken from them is cast back to
        self.data_dtype = data_dtype
        # bounds every value of them lies within at every call (`integers_in`)
        self.interval = dtype_interval(data_dtype) if interval is None else interval

    @property
    def dtype(self) -> np.dtype:
        """NumPy's dtype of the integers (``x.astype(np.int32).dtype``), not
        the float64 they are held in (the tape's aval)."""
        return storage_dtype(self.data_dtype)

    @property
    def narrows(self) -> bool:
        """Whether a float operand may take these integers into a float dtype
        narrower than float64 (`narrow_floats`): integers of 16 bits or
        fewer, or a Python int, which is weak (an array of Python ints is
        NumPy's int64, which is not)."""
        return is_weak_traced(self) or self.dtype.itemsize <= 2

    def _needed(self, *_args: Any, **_kwargs: Any) -> Any:
        """Refuse a use of the values of integers from arguments (their
        arguments are keyed by value from then on); integers computed from
        traced floats (``argmax``'s, no ``sources``) give their values under
        a guard instead, as the plain results of traced values do."""
        if self.sources:
            raise IntValueNeeded(self.sources)

    def integer_tracer(self) -> Any:
        """The integers as a traced value of their own integer dtype (the
        ``astype`` primitive), for the operations only integers have (bitwise
        ones, shifts, ``gcd``) that `integer_op` does not take: those of
        arguments raise `IntValueNeeded` first (keyed by value)."""
        self._needed()
        from .registry import registry
        return bind(registry["astype"], self, dtype=storage_dtype(self.data_dtype).str)

    def _values(self) -> Any:
        """The integers' values, under a guard (`_needed` first)."""
        self._needed()
        value = np.asarray(FRONT_END["concrete"](self))
        return value.astype(np.int64 if self.data_dtype is int else self.data_dtype)

    def _integer(self, result: Any, other: Any, op: str | None = None) -> Any:
        """``result`` of self and ``other`` (the operation ``op`` of `_INTERVALS`,
        self first unless its name starts with "~"), integer data when both
        are integers: NumPy's dtype, the bounds the operation gives."""
        if isinstance(other, _IntegerData):
            sources = self.sources | other.sources
        elif _integer_valued(other):
            sources = self.sources
        else:
            return result
        dtype = combined_dtype(self.data_dtype, integer_dtype(other))
        if dtype is not int and np.dtype(dtype).kind not in "iu":
            return result  # int64 with uint64: NumPy's float64, which it is
        _python_int_fits(self, dtype)
        _python_int_fits(other, dtype)
        name = op.lstrip("~") if op else ""
        operands = (other, self) if op and op.startswith("~") else (self, other)
        return integers_in(result, sources, dtype, interval=operation_bounds(name, operands))

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """NumPy's integer-closed ufuncs of integers keep them integers taken
        as data (``np.abs(idx)``, ``np.minimum(idx, n - 1)``)."""
        if method == "__call__" and not kwargs and len(inputs) == 2:
            # NumPy's integer power and divmod are the operators'
            a, b = inputs
            if ufunc is np.power and _integer_valued(a) and _integer_valued(b):
                return a ** b if isinstance(a, _IntegerData) else b.__rpow__(a)
            if ufunc is np.divmod:
                return FRONT_END["divmod"](a, b)
        narrowed = narrow_floats(ufunc.__name__, inputs) if method == "__call__" else None
        if narrowed is not None:  # np.exp(pixels_uint8): float16, as NumPy's
            return FRONT_END["ufunc"](ufunc, method, narrowed, kwargs)
        # bitwise_and, left_shift, gcd, ...; or with a constant float64 would round
        if ufunc.__name__ in _INTEGERS_ONLY or any(map(_beyond_float64, inputs)):
            out = integer_op(ufunc.__name__, inputs) if method == "__call__" and not kwargs \
                else None
            if out is not None:
                return out
            inputs = tuple(x.integer_tracer() if isinstance(x, _IntegerData) else x
                           for x in inputs)
            return FRONT_END["ufunc"](ufunc, method, inputs, kwargs)
        result = FRONT_END["ufunc"](ufunc, method, inputs, kwargs)
        if method != "__call__" or kwargs:
            return result
        if ufunc.__name__ in _INTEGER_CLOSED:
            return integer_result(result, inputs, ufunc.__name__)
        keep = INTEGER_RESULTS.get(ufunc.__name__)  # np.sign, np.floor, np.matmul
        return result if keep is None else keep(result, inputs)


    def __pow__(self, other: Any) -> Any:
        # integers to a power that is no negative constant: integers (a
        # negative constant exponent gives Python's float, NumPy's error)
        if _integer_valued(other) and not _beyond_float64(other):
            _check_exponent(other, self.data_dtype)
            if self.data_dtype is int and integer_dtype(other) is int and _negative(other):
                return Tracer.__pow__(self, other)  # Python's float
        return self._arithmetic("__pow__", other)

    def __rpow__(self, other: Any) -> Any:
        if _integer_valued(other) and not _beyond_float64(other):
            _check_exponent(self, integer_dtype(other))
            if self.data_dtype is int and integer_dtype(other) is int and _negative(self):
                return Tracer.__rpow__(self, other)  # Python's float
        return self._arithmetic("__rpow__", other)

    def _arithmetic(self, name: str, other: Any) -> Any:
        """The operator ``name`` with ``other``: integers again when it is one;
        in the integers' own dtype when ``other`` holds a constant float64
        would round (2**53 or more), which computing in float64 would not keep."""
        if _beyond_float64(other):
            return getattr(self.integer_tracer(), name)(other)
        if self.narrows:  # small or Python integers and a float32 operand: float32
            narrowed = narrow_floats(_OPERATOR_UFUNCS[name], (self, other))
            if narrowed is not None:
                return getattr(Tracer, name)(*narrowed)
        return self._integer(getattr(Tracer, name)(self, other), other, _OPERATOR_UFUNCS[name]
                             if not name.startswith("__r") else "~" + _OPERATOR_UFUNCS[name])

    def __truediv__(self, other: Any) -> Any:
        return self._divided_as_floats("__truediv__", other)

    def __rtruediv__(self, other: Any) -> Any:
        return self._divided_as_floats("__rtruediv__", other)

    def _divided_as_floats(self, name: str, other: Any) -> Any:
        """A true division: floats, of NumPy's precision for small integers."""
        narrowed = narrow_floats("divide", (self, other)) if self.narrows else None
        return getattr(Tracer, name)(*(narrowed or (self, other)))

    def __neg__(self) -> Any:
        return self._integer(Tracer.__neg__(self), 0, "negative")

    def __abs__(self) -> Any:
        return self._integer(Tracer.__abs__(self), 0, "absolute")

    def __pos__(self) -> Any:  # the same integers, a new value
        return integer_like(Tracer.__pos__(self), self.sources, self.data_dtype, self.interval)


#: the ufunc each operator of `_IntegerData._arithmetic` computes
_OPERATOR_UFUNCS = {"__add__": "add", "__radd__": "add", "__sub__": "subtract",
                    "__rsub__": "subtract", "__mul__": "multiply", "__rmul__": "multiply",
                    "__pow__": "power", "__rpow__": "power"}


def _operator(name: str) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        return self._arithmetic(name, other)
    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__"):
    setattr(_IntegerData, _name, _operator(_name))


def _integer_valued(x: Any) -> bool:
    """Integers other than data: plain ones, or traced ones of an integer dtype
    (a loop's counter, a cast) whose sum with data is data again."""
    return _is_integer(x) or (isinstance(x, (np.ndarray, Tracer)) and x.dtype.kind in "iu")


def _beyond_float64(x: Any) -> bool:
    """A constant integer (array) with a value float64 does not hold exactly."""
    if isinstance(x, Tracer) or not (_is_integer(x) or (isinstance(x, np.ndarray)
                                                         and x.dtype.kind in "iu")):
        return False
    return bool(np.any(np.abs(np.asarray(x, dtype=object if isinstance(x, int) else None))
                       >= 2 ** 53))


def _by_value(op: Callable[..., Any], scalar: bool = False) -> Callable[..., Any]:
    """A method applying ``op`` to the integers' values (`_IntegerData._values`)."""
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        value = self._values()
        return op(value[()] if scalar and not value.ndim else value, *args, **kwargs)
    method.__name__ = getattr(op, "__name__", "method")
    return method


def _by_integers(name: str, reflected: bool = False) -> Callable[..., Any]:
    """The operator of NumPy's integer-only ufunc ``name`` (`integer_op`)."""
    ufunc = getattr(np, name)

    def method(self: Any, *args: Any) -> Any:
        inputs = (args[0], self) if reflected else (self, *args)
        out = integer_op(name, inputs)
        if out is not None:
            return out
        return ufunc(*(self.integer_tracer() if x is self else x for x in inputs))
    return method


def integer_op(name: str, inputs: Any) -> Any:
    """``np.<name>(*inputs)``, an operation only integers have (`_INTEGERS_ONLY`),
    of integers taken as data and plain integers: one host call at every call
    (the ``integer_op`` primitive, float64 in and out), integers taken as data
    again, of NumPy's dtype, so it needs no guard.  None when it does not
    apply (another ufunc, no integers taken as data, a float, boolean or
    integer-dtype traced value, a constant float64 would round)."""
    if name not in _INTEGERS_ONLY:
        return None
    sources: frozenset[Any] = frozenset()
    operands, dtypes, standins = [], [], []
    for x in inputs:
        if isinstance(x, _IntegerData):
            sources |= x.sources
            dtype = storage_dtype(x.data_dtype)
            standins.append(0 if x.data_dtype is int else np.zeros((), dtype))
            operands.append(x)
        elif (_is_integer(x) or isinstance(x, np.bool_)
              or (isinstance(x, np.ndarray) and x.dtype.kind in "iub")) \
                and not _beyond_float64(x):
            dtype = np.asarray(x).dtype
            standins.append(x if type(x) is int else np.zeros((), dtype))
            operands.append(np.asarray(x, dtype=np.float64))
        else:
            return None
        dtypes.append(dtype.str)
    if len(operands) == len(standins) and not any(isinstance(x, _IntegerData) for x in inputs):
        return None
    with np.errstate(all="ignore"):
        kind = getattr(np, name)(*standins)  # NumPy's result dtype (a Python int stays weak)
    dtype = int if all(type(v) is int for v in standins) else np.asarray(kind).dtype
    from .registry import registry
    out = bind(registry["integer_op"], *operands, op=name, dtypes=tuple(dtypes))
    return integers_in(out, sources, dtype)


def _divided(name: str, reflected: bool) -> Callable[[Any, Any], Any]:
    """``//`` (``floor_divide``) or ``%`` (``remainder``) of integers, as
    NumPy's integers give them (exact below 2**52, 0 for a division by zero:
    the front end divides integers held in float64 as integers), and integers
    again when the other operand is one."""
    def method(self: Any, other: Any) -> Any:
        a, b = (other, self) if reflected else (self, other)
        if integer_dtype(a) is int and integer_dtype(b) is int:
            _nonzero(b)  # Python's ints: ZeroDivisionError
        for x in (a, b):
            # the float quotient is off by at most one step (corrected) below 2**52
            if isinstance(x, Tracer) and _magnitude(interval_of(x)) >= 2 ** 52:
                _check_exact(x, getattr(x, "sources", frozenset()), False, float(2 ** 52))
        return self._integer(FRONT_END[name](a, b), other, ("~" if reflected else "") + name)
    return method


def _nonzero(divisor: Any) -> None:
    """Python's ZeroDivisionError for a Python int divisor of 0 (a traced
    one's is a guard)."""
    low, high = interval_of(divisor)
    if low > 0 or high < 0:
        return
    if isinstance(divisor, Tracer):
        if bool(FRONT_END["not_equal"](divisor, 0.0)):
            return
    elif divisor != 0:
        return
    raise ZeroDivisionError("integer division or modulo by zero")


def _int_value(v: Any) -> int:
    return int(v)


_BY_VALUE = {
    "__index__": _by_value(_int_value, True), "__int__": _by_value(_int_value, True),
    "__float__": _by_value(float, True), "__complex__": _by_value(complex, True),
    "__format__": _by_value(format, True), "__str__": _by_value(str, True),
    "__array__": _by_value(lambda v, dtype=None, copy=None: v if dtype is None else
                           v.astype(dtype)),
    "__lshift__": _by_integers("left_shift"), "__rlshift__": _by_integers("left_shift", True),
    "__rshift__": _by_integers("right_shift"), "__rrshift__": _by_integers("right_shift", True),
    "__and__": _by_integers("bitwise_and"), "__rand__": _by_integers("bitwise_and", True),
    "__or__": _by_integers("bitwise_or"), "__ror__": _by_integers("bitwise_or", True),
    "__xor__": _by_integers("bitwise_xor"), "__rxor__": _by_integers("bitwise_xor", True),
    "__invert__": _by_integers("invert"), "item": _by_value(lambda v, *a: v.item(*a)),
    "tolist": _by_value(lambda v: v.tolist()),
    "__floordiv__": _divided("floor_divide", False),
    "__rfloordiv__": _divided("floor_divide", True),
    "__mod__": _divided("remainder", False), "__rmod__": _divided("remainder", True),
}


class IntTracer(_IntegerData, Tracer):
    """An integer argument of a compiled function, traced as data (a float64
    input holding the integer exactly), so that a loop passing its iteration
    number does not compile once per number.  Sums, differences, products and
    negations with integers stay `IntTracer`; arithmetic with floats gives
    ordinary traced floats; comparisons give traced booleans (a Python ``if``
    on them is a guard).  Any use of the value itself raises `IntValueNeeded`
    naming the arguments it came from (``sources``); an integer computed from
    traced floats (``argmax``'s: no sources) gives its value under a guard."""

    __slots__ = ("sources", "data_dtype", "interval")
    __hash__ = _by_value(lambda v: hash(int(v)), True)
    __round__ = _by_value(lambda v, *n: round(int(v), *n), True)
    __trunc__ = __floor__ = __ceil__ = _by_value(_int_value, True)

    def __divmod__(self, other: Any) -> Any:
        return self // other, self % other

    def __rdivmod__(self, other: Any) -> Any:
        return other // self, other % self

    def __repr__(self) -> str:
        return f"IntTracer(%{self.slot}: an integer argument traced as data)"


def integer_result(result: Any, inputs: Any, name: str = "") -> Any:
    """``result`` of the integer-closed function ``name`` (`_INTEGER_CLOSED`,
    ``clip``, ``where``'s choices) of ``inputs`` as integer data when every
    input is an integer (taken as data, or plain), else as it is."""
    sources, dtype = frozenset(), int
    for x in inputs:
        if isinstance(x, (IntTracer, IntArrayTracer)):
            sources |= x.sources
        elif not _integer_valued(x):
            return result
        dtype = combined_dtype(dtype, integer_dtype(x))
    if dtype is not int and np.dtype(dtype).kind not in "iu":
        return result  # int64 with uint64: NumPy's float64, which it is
    for x in inputs:
        _python_int_fits(x, dtype)
    if name in ("clip", "where") and inputs:  # a choice among the inputs
        bounds = [interval_of(x) for x in inputs]
        interval = (min(b[0] for b in bounds), max(b[1] for b in bounds))
    else:
        interval = operation_bounds(name, inputs)
    # a ufunc of Python ints gives a NumPy int64 (the operators keep a Python int)
    return integers_in(result, sources, np.dtype(np.int64) if dtype is int else dtype,
                       interval=interval)


def integer_closed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a fastad.numpy function named in `_INTEGER_CLOSED`, ``clip`` or
    ``where``) keeping integers taken as data integers when called directly,
    as NumPy's dispatch to `_IntegerData.__array_ufunc__` does."""
    import functools

    name = fn.__name__
    chosen = name == "where"  # where(condition, x, y): integers if x and y are

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if any(type(a) in _INTEGER_TYPES for a in args) and any(map(_beyond_float64, args)):
            # a constant float64 would round: the integers in their own dtype
            return fn(*(a.integer_tracer() if type(a) in _INTEGER_TYPES else a for a in args),
                      **kwargs)
        result = fn(*args, **kwargs)
        for a in args:
            if type(a) in _INTEGER_TYPES:
                if kwargs or (chosen and len(args) != 3):
                    return result
                return integer_result(result, args[1:] if chosen else args,
                                      "absolute" if name == "abs" else
                                      "remainder" if name == "mod" else name)
        return result
    return call


def integer_like(result: Any, sources: frozenset[Any], data_dtype: Any,
                 interval: tuple[int, int] | None = None) -> Any:
    """``result`` (integer-valued, held in float64) as an integer traced as
    data, every value within ``interval`` (by default, the dtype's range
    within +-2**53, which the tape's float64 holds exactly)."""
    cls = IntArrayTracer if result.ndim else IntTracer
    return cls(result.builder, result.slot, result.value, sources, data_dtype, interval)


def integer_dtype(x: Any) -> Any:
    """The dtype of integers x as NumPy promotes them: ``int`` for a Python
    int (weak: it takes the other operand's), else a NumPy dtype."""
    if isinstance(x, _IntegerData):
        return x.data_dtype
    if type(x) is int:
        return int
    return x.dtype if isinstance(x, Tracer) else np.asarray(x).dtype


def combined_dtype(a: Any, b: Any) -> Any:
    """NumPy's dtype of an integer operation on integers of dtypes a and b."""
    if a is int:
        return b
    return a if b is int else np.result_type(a, b)


def storage_dtype(data_dtype: Any) -> np.dtype:
    """The NumPy dtype of integers of ``data_dtype`` (int64 for a Python int)."""
    return np.dtype(np.int64 if data_dtype is int else data_dtype)


def integers_in(result: Any, sources: frozenset[Any], dtype: Any, source: Any = None,
                interval: tuple[int, int] | None = None) -> Any:
    """``result`` (integer-valued, held in float64) as integers of ``dtype``
    taken as data.  Float64 holds the integers within +-2**53 exactly: unless
    ``interval`` (bounds the operation's results lie within at every call)
    or ``source`` (the dtype they had, which ``dtype`` holds) says they stay
    there, a guard checks they do (`_check_exact`), so that no call returns
    a rounded value.  Wrapped around into a dtype narrower than 64 bits as
    NumPy's casts and arithmetic wrap (exact: the span is a power of two)."""
    held = _held(dtype)
    if source is not None and (dtype is int or np.can_cast(source, dtype)):
        interval = dtype_interval(source)
    if interval is None or not (held[0] <= interval[0] and interval[1] <= held[1]):
        _check_exact(result, sources, held[0] == 0)
        interval = held if interval is None else (max(interval[0], held[0]),
                                                  min(interval[1], held[1]))
    if dtype is int:
        return integer_like(result, sources, dtype, interval)
    dtype = np.dtype(dtype)
    if dtype.itemsize < 8 and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if interval[0] < info.min or interval[1] > info.max:
            low, span = float(info.min), float(2 ** (8 * dtype.itemsize))
            result = FRONT_END["remainder"](FRONT_END["subtract"](result, low), span) + low
            result = FRONT_END["astype"](result, np.float64)  # a plain float for `integer_like`
            interval = (int(info.min), int(info.max))
    return integer_like(result, sources, dtype, interval)


#: integers float64 holds exactly: below 2**53 in magnitude
EXACT = 2 ** 53 - 1


def _held(dtype: Any) -> tuple[int, int]:
    """The values integers of ``dtype`` held in float64 may take: uint64's
    below zero would wrap past 2**53 (NumPy's), the others within +-2**53
    (narrower dtypes wrap after the check)."""
    if dtype is not int and np.dtype(dtype) == np.uint64:
        return (0, EXACT)
    return (-EXACT, EXACT)


def _check_exact(result: Any, sources: frozenset[Any], unsigned: bool,
                 limit: float = float(2 ** 53), why: str = "") -> None:
    """A guard that the integers ``result`` holds are exact in float64
    (within +-2**53, and not below zero for uint64): rounding is monotonic,
    so a float64 result passes 2**53 exactly when the integer it stands for
    does.  Where they are not, the arguments they came from are keyed by
    value (`IntValueNeeded`), and NumPy computes them exactly as constants;
    integers computed from traced floats (no arguments) raise OverflowError."""
    if not isinstance(result, Tracer):
        return
    held = FRONT_END["less"](FRONT_END["absolute"](result), limit)
    if unsigned:
        held = FRONT_END["logical_and"](held, FRONT_END["greater_equal"](result, 0.0))
    if bool(FRONT_END["all"](held)):
        return
    needed = sources or data_sources()
    if needed:
        raise IntValueNeeded(needed)
    if why:
        raise OverflowError(f"fastad: integers computed in a traced function reach "
                            f"2**{int(limit).bit_length() - 1}, {why}")
    raise OverflowError("fastad: integers computed in a traced function pass 2**53 (or, for "
                        "uint64, fall below zero), which its float64 registers do not hold "
                        "exactly; compute them outside the traced function or in floats")


def dtype_interval(dtype: Any) -> tuple[int, int]:
    """The values integers of ``dtype`` taken as data may hold (`_held`)."""
    low, high = _held(dtype)
    if dtype is int:
        return (low, high)
    if np.dtype(dtype).kind == "b":
        return (0, 1)
    info = np.iinfo(np.dtype(dtype))
    return (max(low, int(info.min)), min(high, int(info.max)))


def interval_of(x: Any) -> tuple[int, int]:
    """Bounds of an integer operand: integers taken as data carry theirs, a
    constant has its own, other traced integers are those float64 holds."""
    if isinstance(x, _IntegerData):
        return x.interval
    if isinstance(x, Tracer):
        return (-EXACT, EXACT)
    a = np.asarray(x)
    if not a.size:
        return (0, 0)
    return (int(a.min()), int(a.max()))


def _narrowed(x: Any, limit: int, why: str = "") -> tuple[int, int]:
    """``x``'s bounds, those of integers taken as data reaching ``limit``
    narrowed below it by a guard (failing, their arguments are keyed by
    value, `_check_exact`)."""
    if not isinstance(x, _IntegerData):
        return interval_of(x)
    if _magnitude(x.interval) < limit:
        return x.interval
    _check_exact(x, x.sources, False, float(limit), why)
    return (max(x.interval[0], 1 - limit), min(x.interval[1], limit - 1))


#: operations whose results stay within +-2**52 when their operands are
#: within +-2**51 (and a constant factor's magnitude divides that bound)
_NARROWABLE = frozenset({"add", "subtract", "negative", "positive", "maximum", "minimum",
                         "fmax", "fmin", "multiply"})


def operation_bounds(name: str, operands: Any) -> tuple[int, int] | None:
    """Bounds of the results of ``name`` (`_INTERVALS`) of ``operands``, None
    where unknown.  Where they would pass what float64 holds only because an
    integer argument may be as large as 2**53 (``c = k + i`` in a loop, k an
    argument), that argument is narrowed by one guard on its value (below
    2**51, divided by a constant factor's magnitude; failing, it is keyed by
    value) rather than a guard on every result: the next steps' ``c + i``
    need none (the headroom to 2**52 also spares ``c % m`` its check), and
    the loop's steps stay alike (rerolled, or found as a recurrence)."""
    rule = _INTERVALS.get(name)
    if rule is None or len(operands) not in (1, 2):
        return None
    a, b = operands[0], operands[-1]
    bounds = rule(interval_of(a), interval_of(b))
    if bounds is None or _magnitude(bounds) <= EXACT or name not in _NARROWABLE:
        return bounds
    limit = 2 ** 51
    if name == "multiply":
        factors = [x for x in (a, b) if not isinstance(x, Tracer)]
        if len(factors) != 1:
            return bounds  # two traced factors: their product is checked
        limit //= max(1, _magnitude(interval_of(factors[0])))
    for x in ((a,) if a is b else (a, b)):
        # integers of arguments only (a failing guard keys them by value), and
        # only while this call's are below the limit: past it, every result
        # is checked as before
        if (isinstance(x, _IntegerData) and x.sources and _magnitude(x.interval) >= limit
                and np.all(np.abs(np.asarray(x.value, np.float64)) < limit)):
            x.interval = _narrowed(x, limit)
    return rule(interval_of(a), interval_of(b))


def stepped_interval(x: Any) -> tuple[int, int]:
    """Bounds of the steps of a loop over ``x`` (along its first axis): a
    constant's own; integers taken as data are checked below 2**52 once
    before the loop (a guard there, where one in the body would unroll the
    loop), so that a step's ``j + 1`` or ``2 * j`` needs no check in the body."""
    return _narrowed(x, 2 ** 52, "which the integers a loop steps over must stay below "
                     "(a step's j + 1 is not checked in the loop's body)")


def counter_bounds(lower: Any, upper: Any) -> tuple[int, int] | None:
    """Bounds of ``fori_loop``'s counter where its body runs (lower <= i <
    upper), for integer bounds (None for others); bounds taken as data are
    checked below 2**31 before the loop (a longer loop would not end), so
    that ``2 * i + 1`` or ``i * n`` of a small n needs no check in the body."""
    if not (_integer_valued(lower) and _integer_valued(upper)):
        return None
    why = ("past which a fori_loop's bounds are not taken (a loop that long would not "
           "end); compute them outside the traced function")
    low, high = _narrowed(lower, 2 ** 31, why)[0], _narrowed(upper, 2 ** 31, why)[1] - 1
    return (low, max(low, high))


def _corners(a: tuple[int, int], b: tuple[int, int], op: Callable[[int, int], int]
             ) -> tuple[int, int]:
    values = [op(x, y) for x in a for y in b]
    return (min(values), max(values))


def _power(a: tuple[int, int], e: tuple[int, int]) -> tuple[int, int] | None:
    if e[0] < 0 or e[1] > 64 and max(abs(a[0]), abs(a[1])) > 1:
        return None  # unknown: checked
    m = max(abs(a[0]), abs(a[1]), 1) ** e[1]
    return (0 if a[0] >= 0 else -m, m)


def _magnitude(a: tuple[int, int]) -> int:
    return max(abs(a[0]), abs(a[1]))


#: operation -> (bounds of its operands) -> bounds of its results (None: unknown)
_INTERVALS: dict[str, Callable[..., Any]] = {
    "add": lambda a, b: (a[0] + b[0], a[1] + b[1]),
    "subtract": lambda a, b: (a[0] - b[1], a[1] - b[0]),
    "multiply": lambda a, b: _corners(a, b, lambda x, y: x * y),
    "power": _power,
    "negative": lambda a, _: (-a[1], -a[0]),
    "absolute": lambda a, _: (0, _magnitude(a)),
    "square": lambda a, _: (0, _magnitude(a) ** 2),
    "maximum": lambda a, b: (max(a[0], b[0]), max(a[1], b[1])),
    "minimum": lambda a, b: (min(a[0], b[0]), min(a[1], b[1])),
    "floor_divide": lambda a, b: (-_magnitude(a), _magnitude(a)),
    "remainder": lambda a, b: (-_magnitude(b), _magnitude(b)),
    "fmod": lambda a, b: (-_magnitude(a), _magnitude(a)),
}
_INTERVALS.update({"positive": lambda a, _: a, "fmax": _INTERVALS["maximum"],
                   "fmin": _INTERVALS["minimum"]})


def _python_int_fits(x: Any, dtype: Any) -> None:
    """NumPy's OverflowError for a Python int operand outside the range of
    the other operand's dtype (``uint8_array + 300``), which it is cast to;
    a Python int taken as data is checked by a guard where its bounds do
    not settle it."""
    if dtype is int or integer_dtype(x) is not int:
        return
    info = np.iinfo(np.dtype(dtype))
    low, high = interval_of(x)
    if info.min <= low and high <= info.max:
        return
    if isinstance(x, Tracer):
        inside = FRONT_END["logical_and"](FRONT_END["greater_equal"](x, float(info.min)),
                                          FRONT_END["less_equal"](x, float(info.max)))
        if bool(inside):
            return
        x = x._values()[()]
    raise OverflowError(f"Python integer {int(x)} out of bounds for {np.dtype(dtype)}")


def _negative(exponent: Any) -> bool:
    """Is the Python int exponent below zero (Python's power is a float
    then)?  A traced one's sign is a guard."""
    if interval_of(exponent)[0] >= 0:
        return False
    if isinstance(exponent, Tracer):
        return bool(FRONT_END["less"](exponent, 0.0))
    return exponent < 0


def _check_exponent(exponent: Any, base_dtype: Any) -> None:
    """NumPy's error for integers to a negative integer power (a Python int
    base and exponent give Python's float instead, `__pow__`); a traced
    exponent's sign is checked by a guard."""
    if base_dtype is int and integer_dtype(exponent) is int:
        return  # Python's ints: `__pow__` decides between an int and a float
    if interval_of(exponent)[0] >= 0:
        return
    if isinstance(exponent, Tracer):
        if bool(FRONT_END["all"](FRONT_END["greater_equal"](exponent, 0.0))):
            return
    elif not np.any(np.asarray(exponent) < 0):
        return
    raise ValueError("Integers to negative integer powers are not allowed.")


def _is_integer(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


#: ufuncs NumPy has for integers only (and booleans): a host call on integers
#: taken as data (`integer_op`), else on the integers as a traced value of
#: their own dtype (`_IntegerData.integer_tracer`)
_INTEGERS_ONLY = frozenset({"bitwise_and", "bitwise_or", "bitwise_xor", "invert", "left_shift",
                            "right_shift", "gcd", "lcm", "bitwise_count"})

#: ufunc name -> (result, inputs) -> the result as NumPy's integers when every
#: input is an integer; filled by `fastad.numpy._integer_results`, whose
#: wrapped functions give sums, extrema and products of integers the same way
#: (``labels.sum()``, ``np.max(labels)`` reach them through FRONT_END)
INTEGER_RESULTS: dict[str, Callable[[Any, tuple], Any]] = {}

#: ufuncs whose result is an integer when every operand is one
_INTEGER_CLOSED = frozenset({"add", "subtract", "multiply", "negative", "positive", "absolute",
                             "maximum", "minimum", "fmax", "fmin", "square", "remainder",
                             "floor_divide", "fmod"})


class IntArrayTracer(_IntegerData, ArrayTracer):
    """An integer array argument of a compiled function, traced as data: a
    float64 input holding the integers exactly (the VM's registers are
    floating point), so that a minibatch of new labels or indices reuses the
    compiled tape.  Indexing another array with it is a gather by traced
    indices (``gather_rows``); integer arithmetic and constant indexing keep
    it an `IntArrayTracer` (or an `IntTracer` when 0-d); arithmetic with
    floats and comparisons are ordinary traced values.  Any use of the values
    themselves (a shape, ``int()``, ``.tolist()``, a
    boolean mask's pattern) raises `IntValueNeeded` naming the arguments it
    came from (``sources``): they are keyed by value from then on."""

    __slots__ = ("sources", "data_dtype", "interval")

    def __divmod__(self, other: Any) -> Any:
        return self // other, self % other

    def __rdivmod__(self, other: Any) -> Any:
        return other // self, other % self

    def __getitem__(self, key: Any) -> Any:
        return integer_like(ArrayTracer.__getitem__(self, key), self.sources, self.data_dtype,
                            self.interval)

    def __repr__(self) -> str:
        return f"IntArrayTracer(%{self.slot}: an integer array argument traced as data)"


for _cls in (IntTracer, IntArrayTracer):  # the uses of their values, one table for both
    for _name, _method in _BY_VALUE.items():
        setattr(_cls, _name, _method)
    KEEP_INTEGERS[_cls] = lambda out, of: integer_like(out, of.sources, of.data_dtype,
                                                       of.interval)


class BoolArrayTracer(ArrayTracer):
    """A boolean array argument of a compiled function, traced as data (a bool
    input): masks in ``where``, products and logic stay compiled; a use of its
    pattern (``x[mask]``, whose shape is data) raises `IntValueNeeded`."""

    __slots__ = ("sources",)

    def __init__(self, builder: Builder, slot: int, value: Any, sources: frozenset[Any]) -> None:
        super().__init__(builder, slot, value)
        self.sources = sources

    def _needed(self, *_args: Any, **_kwargs: Any) -> Any:
        raise IntValueNeeded(self.sources)

    __index__ = __int__ = __float__ = __complex__ = __format__ = __str__ = __array__ = _needed
    item = tolist = _needed

    def __getitem__(self, key: Any) -> Any:
        out = ArrayTracer.__getitem__(self, key)
        if out.ndim:
            return BoolArrayTracer(out.builder, out.slot, out.value, self.sources)
        return out

    def sum(self, *args: Any, **kwargs: Any) -> Any:
        """A count: summed in float64 (the VM has no integer registers), NumPy's
        int64 as integer data, exact (at most the mask's size)."""
        out = FRONT_END["sum"](FRONT_END["astype"](self, np.float64), *args, **kwargs)
        if kwargs.get("dtype") is None and len(args) < 2 and isinstance(out, Tracer):
            return integer_like(out, self.sources, np.dtype(np.int64), (0, int(self.size)))
        return out

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.sum and args and args[0] is self:
            return self.sum(*args[1:], **kwargs)
        return FRONT_END["function"](func, args, kwargs)

    def __repr__(self) -> str:
        return f"BoolArrayTracer(%{self.slot}: a boolean array argument traced as data)"


#: traced values standing for integer or boolean arguments taken as data,
#: whose values a trace may not read (`IntValueNeeded`)
DATA_TRACERS = (IntTracer, IntArrayTracer, BoolArrayTracer)


def raise_for_data_arguments(exc: Exception, traced_args: Any) -> None:
    """A trace failed with integers (or booleans) taken as data among its
    arguments: most likely a function that needs their values for the
    structure it computes (``np.split(x, k)``, ``np.stack(xs, axis)``, einsum's
    sublists) and cannot say so.  Those arguments are keyed by value and the
    function traced again (`IntValueNeeded`); a failure then is the
    function's own and is raised."""
    from . import pytree
    sources = frozenset().union(*(t.sources for t in pytree.flatten(traced_args)[0]
                                  if isinstance(t, DATA_TRACERS)))
    if sources:
        raise IntValueNeeded(sources) from exc
_INTEGER_TYPES = frozenset((IntTracer, IntArrayTracer))
NARROWING_TYPES.update(_INTEGER_TYPES)
WEAK_TRACED[IntTracer] = lambda x: x.data_dtype is int  # a Python int's: weak
INTEGER_DATA = (IntTracer, IntArrayTracer)


def data_sources() -> frozenset[Any]:
    """The arguments of the compiled functions being traced whose integers
    or booleans are data (`IntArrayTracer`), for a use that needs the value
    of a traced value which may have been computed from them."""
    out: frozenset[Any] = frozenset()
    for builder in _traces.stack:
        out |= builder.data_sources
    return out

_TRACERS.update(DATA_TRACERS)
