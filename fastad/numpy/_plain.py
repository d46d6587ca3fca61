"""The rest of NumPy's namespace: constants, dtypes, classes and submodules
re-exported, and the functions that have no derivative, working on plain
values as NumPy's and on traced values through their values.

A function of a traced value that is not differentiable (``argmax``,
``nonzero``, ``unique``, ``isclose``, ``searchsorted``, ...) returns NumPy's
plain result computed from the value, and records a guard that the function
still gives that result: a compiled function replays while it does and
traces again when it changes, as after ``if x > 0`` (docs/design.md, "Guards
instead of refusing control flow").  Functions that read only dtypes, shapes
or print values (``result_type``, ``can_cast``, ``array2string``, ...) take
the values with no guard.  Any other NumPy function called on traced values
gives its plain result with a guard when the result is integer or boolean,
and refuses (TracingError) when it is a floating result, which would have
lost its derivative."""
from __future__ import annotations

import builtins
import functools
import inspect
import types
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.int_data import (DATA_TRACERS, INTEGER_DATA, IntValueNeeded, data_sources,
                              integer_op, storage_dtype)
from ..core.tracer import Tracer, bind
from ._base import _CHECK, _Call, _contains_tracer, _holes
from ._building import _as
from ._elementwise import two_results

#: functions with no derivative anywhere: plain result, guarded
NON_DIFFERENTIABLE = {
    "allclose", "isclose", "array_equal", "array_equiv", "argwhere",
    "nanargmax", "nanargmin", "count_nonzero", "digitize", "flatnonzero", "nonzero",
    "searchsorted", "isin", "lexsort", "histogram", "histogram2d", "histogramdd", "packbits",
    "unpackbits",
    "ravel_multi_index", "unravel_index", "signbit", "isnat", "bitwise_and", "bitwise_count",
    "bitwise_invert", "bitwise_left_shift", "bitwise_not", "bitwise_or", "bitwise_right_shift",
    "bitwise_xor", "gcd", "lcm", "invert", "left_shift", "right_shift", "logical_xor", "spacing",
    "tril_indices_from", "triu_indices_from", "diag_indices_from",
    "mask_indices",
}

#: functions of dtypes, shapes or printed values: the values, no guard
META = {
    "result_type", "can_cast", "promote_types", "min_scalar_type", "common_type", "mintypecode",
    "isscalar", "iterable", "isfortran", "array2string", "array_repr", "array_str", "save",
    "savetxt", "savez", "savez_compressed", "einsum_path", "isdtype", "issubdtype", "typename",
    "format_float_positional", "format_float_scientific", "base_repr", "binary_repr",
    "datetime_as_string", "datetime_data", "busday_count", "busday_offset", "is_busday", "info",
    "shape", "ndim", "size",
}


def plain_call(fn: Any, args: tuple, kwargs: dict, guard: bool = True) -> Any:
    """fn(*args, **kwargs) on the values of the traced arguments, as NumPy
    computes it; with ``guard``, a guard that it still gives that result."""
    found: list = []
    targs, tkwargs = _holes(args, found), _holes(kwargs, found)
    if guard:
        for k, t in enumerate(found):
            if isinstance(t, DATA_TRACERS):
                t._needed()  # an argument's integers: keyed by value (`IntValueNeeded`)
            if isinstance(t, INTEGER_DATA):  # integers computed in float64: in their dtype
                found[k] = t.integer_tracer()
    call = _Call(fn, targs, tkwargs, None)
    try:
        out = call(*(t.value if guard else _meta_value(t) for t in found))
    except TypeError:
        sources = data_sources()
        if sources:  # perhaps integers taken as data, computed in float64: by value
            raise IntValueNeeded(sources) from None
        raise
    if guard and found:
        call.expected = out
        bool(bind(_CHECK, *found, call=call))
    return out


def _meta_value(t: Tracer) -> Any:
    """What a function of dtypes and shapes reads of t: integers held in
    float64 (`core.int_data`) read as their integer dtype."""
    if not isinstance(t, INTEGER_DATA):
        return t.value
    with _np.errstate(invalid="ignore"):
        return _np.asarray(t.value).astype(storage_dtype(t.data_dtype))


def _wrap(name: str, kind: str) -> Any:
    fn = getattr(_np, name)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not (_contains_tracer(args) or _contains_tracer(list(kwargs.values()))):
            return fn(*args, **kwargs)
        if kind == "meta":
            return plain_call(fn, args, kwargs, guard=False)
        if isinstance(fn, _np.ufunc) and not kwargs:  # bitwise_and, gcd, ... of integer data
            out = integer_op(name, args)
            if out is not None:
                return out
        out = plain_call(fn, args, kwargs)
        if kind == "other" and _inexact(out):
            raise TracingError(f"numpy.{name} on traced values is not differentiable in fastad; "
                               "pass its arguments as constants, or write it with "
                               "fastad.numpy functions")
        return out
    call.__name__ = call.__qualname__ = name
    call.__wrapped__ = fn
    return call


def _inexact(out: Any) -> bool:
    if isinstance(out, (tuple, list)):
        return builtins.any(_inexact(o) for o in out)
    try:
        return _np.asarray(out).dtype.kind in "fc"
    except (TypeError, ValueError):
        return False


def _is_function(obj: Any) -> bool:
    return (isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, _np.ufunc))
            or type(obj).__name__ == "_ArrayFunctionDispatcher")


def sort_complex(a: Any) -> Any:
    """Sorted by real part, then imaginary part (differentiable: a gather; the
    order is a guard under compilation)."""
    if not isinstance(a, Tracer) and not _contains_tracer(a):
        return _np.sort_complex(a)
    from ._elementwise import astype
    from ._shape import ravel, take_flat
    a = _as(a)
    order = plain_call(lambda v: _np.lexsort((_np.imag(v), _np.real(v))), (ravel(a),), {})
    out = take_flat(ravel(a), order)
    return out if out.dtype.kind == "c" else astype(out, _np.complex128)


def _histogram_weights(name: str, fn: Any) -> Any:
    """histogram's counts have no derivative, but traced weights would: refused.
    The bin edges found from traced samples (no explicit edges, no range) are
    the traced ``linspace`` between their extremes (`_edges`), as NumPy
    computes them: differentiable in the extremes, equal to NumPy's."""
    numpy_fn = getattr(_np, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("weights"), Tracer):
            raise TracingError(f"numpy.{name} with traced weights is not differentiable in "
                               "fastad; pass constant weights")
        bound = inspect.signature(numpy_fn).bind(*args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        out = fn(*args, **kwargs)
        if name == "histogram_bin_edges":
            return _edges(given["a"], given["bins"], given["range"], out)
        if name == "histogram":
            return out[0], _edges(given["a"], given["bins"], given["range"], out[1])
        from ._shape import stack
        sample = (stack([given["x"], given["y"]], axis=-1) if name == "histogram2d"
                  else given["sample"])
        edges = list(out[1:] if name == "histogram2d" else out[1])
        if isinstance(sample, Tracer):
            ranges = given["range"] or [None] * len(edges)
            edges = [_edges(sample[:, d], _np.size(e) - 1, ranges[d], e)
                     for d, e in enumerate(edges)]
        return (out[0], *edges) if name == "histogram2d" else (out[0], edges)
    functools.update_wrapper(call, fn)
    return call


def _edges(a: Any, bins: Any, range_: Any, plain: Any) -> Any:
    """The edges NumPy gave (``plain``, guarded) as a function of the traced
    samples: ``linspace`` from their least to their greatest (widened by 0.5
    each way when they are equal, as NumPy's), ``len(plain)`` of them.
    Explicit edges and a given range make constants, which they are."""
    explicit = _np.ndim(bins) > 0 and not isinstance(bins, str)
    if not isinstance(a, Tracer) or range_ is not None or explicit or _np.size(a.value) == 0:
        return plain
    from ._building import linspace
    from ._elementwise import astype
    from ._reductions import max as amax, min as amin
    lo, hi = amin(a), amax(a)
    if lo == hi:  # (a guard, as NumPy's test)
        lo, hi = lo - 0.5, hi + 0.5
    return astype(linspace(lo, hi, _np.size(plain)), plain.dtype)


def unique(ar: Any, return_index: bool = False, return_inverse: bool = False,
           return_counts: bool = False, axis: Any = None, *, equal_nan: bool = True,
           sorted: bool = True) -> Any:  # noqa: A002 - NumPy's name
    """NumPy's unique; on traced values the unique values are a gather of them
    (differentiable), the rest plain, all guarded under compilation."""
    kw = {"equal_nan": equal_nan, "sorted": sorted}
    if not isinstance(ar, Tracer) and not _contains_tracer(ar):
        return _np.unique(ar, return_index, return_inverse, return_counts, axis, **kw)
    from ._ordering import take
    from ._shape import ravel, take_flat
    a = _as(ar)
    found = plain_call(_np.unique, (a,), dict(return_index=True, return_inverse=return_inverse,
                                             return_counts=return_counts, axis=axis, **kw))
    index = found[1]
    values = take_flat(ravel(a), index) if axis is None else take(a, index, axis=axis)
    rest = ([index] if return_index else []) + list(found[2:])
    return (values, *rest) if rest else values


def _unique_result(name: str) -> Any:
    """unique_values, unique_counts, unique_inverse, unique_all: their values
    field as unique's, a gather of the traced values."""
    fn = getattr(_np, name)

    def call(x: Any) -> Any:
        if not isinstance(x, Tracer):
            return fn(x)
        from ._shape import ravel, take_flat
        out = plain_call(fn, (x,), {})
        index = plain_call(lambda v: _np.unique(v, return_index=True, equal_nan=False)[1],
                           (x,), {})
        values = take_flat(ravel(x), index)
        return values if name == "unique_values" else out._replace(values=values)
    functools.update_wrapper(call, fn)
    return call


def _frexp(x: Any) -> Any:
    """(mantissa, exponent): the exponent plain (guarded), the mantissa
    x * 2**-exponent, differentiable."""
    if not isinstance(x, Tracer):
        return _np.frexp(x)
    exponent = plain_call(lambda v: _np.frexp(v)[1], (x,), {})
    # 2**-exponent in two factors: for a subnormal x (exponent down to -1073,
    # -148 in float32) 2**-exponent itself overflows to inf; each half is
    # finite in x's dtype, and each product exact
    one = _np.ones((), x.dtype if x.dtype.kind == "f" else _np.float64)
    half = -_np.asarray(exponent) // 2
    return (x * _np.ldexp(one, half)) * _np.ldexp(one, -_np.asarray(exponent) - half), exponent


frexp = two_results(_np.frexp, _frexp)


def names(defined: dict) -> dict[str, Any]:
    """NumPy's public names ``defined`` lacks: re-exported objects, and the
    functions wrapped as above."""
    out: dict[str, Any] = {"sort_complex": sort_complex, "unique": unique, "frexp": frexp}
    out.update({n: _unique_result(n) for n in ("unique_values", "unique_counts",
                                               "unique_inverse", "unique_all")})
    out.update({n: _histogram_weights(n, _wrap(n, "nondiff")) for n in (
        "histogram", "histogram_bin_edges", "histogram2d", "histogramdd")})
    for name in dir(_np):
        if name.startswith("_") or name in defined or name in out:
            continue
        obj = getattr(_np, name)
        if not _is_function(obj):
            out[name] = obj  # constants, dtypes, classes, submodules, index helpers
        else:
            kind = ("nondiff" if name in NON_DIFFERENTIABLE else
                    "meta" if name in META else "other")
            out[name] = _wrap(name, kind)
    return out


__all__ = ["plain_call", "NON_DIFFERENTIABLE", "META"]
