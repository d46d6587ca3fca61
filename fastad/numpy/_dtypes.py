"""Result dtypes as NumPy's: a function of traced values returns the dtype
NumPy (or SciPy) gives for inputs of the same dtypes.

fastad's composites compute with NumPy float64 constants (``log(2)``, a
``linspace`` of fractions) that would promote float32 values, and SciPy
functions that compute in float64 only (``gammainc``, ``polygamma``, ``cov``)
return float64 where fastad's primitives keep float32.  Rather than fix each
function by hand, one rule applies where every such function is entered
(`numpy_dtype`): the traced result is cast to the dtype NumPy's own function
gives.  For a ufunc that dtype is its type resolution
(``ufunc.resolve_dtypes``, Python scalars weak, exactly as the call); for
any other function it is read off NumPy's function called on small probe
arrays of the traced arguments' dtypes and ranks, once per signature.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import numpy as _np

from ..core.narrowing import operand_kind
from ..core.tracer import Tracer
from ..core.weak_float import WeakFloatTracer, is_weak_traced
from ._base import _contains_tracer, result_dtype, shape

_CACHE_SIZE = 256
_CASTABLE = frozenset(_np.dtype(t) for t in ("float32", "float64", "complex64", "complex128"))


def resolution_kind(x: Any) -> Any:
    """`operand_kind` of an array_like too (a list of traced values has a
    dtype only once its array is built)."""
    return result_dtype(x) if isinstance(x, (list, tuple)) else operand_kind(x)


def ufunc_dtype(ufunc: _np.ufunc, args: tuple) -> _np.dtype | None:
    """The dtype ``ufunc(*args)`` gives, or None if NumPy has no loop for them."""
    if ufunc.nout != 1 or len(args) != ufunc.nin:
        return None
    operands = tuple(map(resolution_kind, args))
    key = (ufunc, operands)
    if key in _UFUNC_DTYPES:  # resolve_dtypes takes microseconds: once per signature
        return _UFUNC_DTYPES[key]
    try:
        dtype = ufunc.resolve_dtypes(operands + (None,))[-1]
    except (TypeError, ValueError):
        dtype = None
    if len(_UFUNC_DTYPES) >= _CACHE_SIZE:
        _UFUNC_DTYPES.clear()
    _UFUNC_DTYPES[key] = dtype
    return dtype


_UFUNC_DTYPES: dict[Any, Any] = {}


def _probe(x: Any) -> Any:
    """A small array of x's dtype and rank (axes clipped to 3) standing for x."""
    if is_weak_traced(x):
        return 0.5 if type(x) is WeakFloatTracer else 1
    if isinstance(x, Tracer):
        shp = tuple(min(d, 3) for d in shape(x))
        return _np.full(shp, 0.5, dtype=result_dtype(x))
    return x


def _key(args: tuple, kwargs: dict) -> Any:
    """A hashable key of the signature, or None when some argument is not one."""
    def one(x: Any) -> Any:
        if is_weak_traced(x):
            return ("weak", type(x).__name__)
        if isinstance(x, Tracer):
            return ("traced", result_dtype(x).str, len(shape(x)))
        if x is None or type(x) in (bool, int, float, complex, str):
            return (type(x).__name__, x)
        if type(x) is _np.ndarray:  # probed as itself: the outcome is its dtype and shape's
            return ("array", x.dtype.str, x.shape)
        raise TypeError
    try:
        return (tuple(one(a) for a in args), tuple((k, one(v)) for k, v in sorted(kwargs.items())))
    except TypeError:
        return None


def probed_dtypes(plain: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """The dtypes of ``plain``'s results on probes of the arguments (a dtype, a
    tuple of them for a tuple result), or None if the probe fails.  Traced
    values nested in lists are not probed (NumPy would read their values)."""
    if any(not isinstance(a, Tracer) and _contains_tracer(a)
           for a in (*args, *kwargs.values())):
        return None
    with warnings.catch_warnings(), _np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out = plain(*(_probe(a) for a in args), **{k: _probe(v) for k, v in kwargs.items()})
        except Exception:  # noqa: BLE001 - a probe NumPy refuses: keep fastad's dtype
            return None
    if isinstance(out, tuple):
        return tuple(getattr(o, "dtype", None) for o in out)
    return getattr(out, "dtype", None)


_PRECISION = {("f", 4): _np.dtype("float32"), ("f", 8): _np.dtype("float64"),
              ("c", 8): _np.dtype("float32"), ("c", 16): _np.dtype("float64")}


def _with_precision(kind: str, dtype: _np.dtype) -> _np.dtype:
    """The dtype of ``kind`` ("f" or "c") with the precision of dtype: only the
    precision is taken from NumPy's result, never the kind, since NumPy decides
    real or complex by value for some functions (eig, roots), and probes are
    not the values."""
    real = _PRECISION[(dtype.kind, dtype.itemsize)]
    return real if kind == "f" else _np.result_type(real, _np.complex64)


def _cast(out: Any, dtype: Any) -> Any:
    from ._elementwise import astype
    if isinstance(out, tuple) and isinstance(dtype, tuple) and len(out) == len(dtype):
        return type(out)(_cast(o, d) for o, d in zip(out, dtype)) if type(out) is tuple \
            else type(out)(*(_cast(o, d) for o, d in zip(out, dtype)))
    if not isinstance(dtype, _np.dtype) or dtype not in _CASTABLE:
        return out
    if isinstance(out, Tracer):
        have = result_dtype(out)
        if have in _CASTABLE and have != _with_precision(have.kind, dtype):
            return astype(out, _with_precision(have.kind, dtype))
        return out
    if isinstance(out, (_np.ndarray, _np.generic)) and out.dtype in _CASTABLE:
        want = _with_precision(out.dtype.kind, dtype)  # fastad's function on plain values
        return out.astype(want) if out.dtype != want else out
    return out


def with_numpy_dtype(out: Any, plain: Callable[..., Any], args: tuple) -> Any:
    """``out`` (fastad's result of ``plain(*args)`` on traced values) with the
    precision ``plain`` gives, probed afresh: for calls not made by name."""
    return _cast(out, probed_dtypes(plain, args, {}))


def numpy_dtype(plain: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for fastad's version of NumPy's/SciPy's function ``plain``
    called on traced values: its floating results get ``plain``'s dtypes."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if isinstance(plain, _np.ufunc):
            @functools.wraps(fn)
            def by_ufunc(*args: Any, **kwargs: Any) -> Any:
                return _cast(fn(*args, **kwargs), ufunc_dtype(plain, args))
            return by_ufunc
        cache: dict[Any, Any] = {}

        @functools.wraps(fn)
        def by_probe(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            key = _key(args, kwargs)
            if key is None:
                dtype = probed_dtypes(plain, args, kwargs)
            elif key in cache:
                dtype = cache[key]
            else:
                if len(cache) >= _CACHE_SIZE:  # scalar arguments that vary call by call
                    cache.clear()
                dtype = cache[key] = probed_dtypes(plain, args, kwargs)
            return _cast(out, dtype)
        return by_probe
    return wrap
