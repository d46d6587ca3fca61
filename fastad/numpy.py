"""NumPy, differentiable: the same names as ``numpy``, working on traced values.

Plain ``import numpy as np`` code reaches these functions through NumPy's
dispatch protocols (``__array_ufunc__``, ``__array_function__``); this module
is also importable directly (``import fastad.numpy as fnp``), as autograd's
``autograd.numpy`` is.  Functions that are not primitives are written here
in terms of primitives (``mean`` is ``sum`` times ``1/n``, ``tensordot`` a
transpose, a reshape and a ``matmul``), so their derivatives come for free.

`where`, `clip`, `maximum`, `minimum`, `abs` are branch-free: they never
create guards, so prefer them to Python ``if`` on traced values inside
compiled functions.
"""
from __future__ import annotations

import builtins
import collections
import functools
import math
import operator
import types
import warnings
import weakref
from typing import Any, Sequence

import numpy as _np

from .errors import TracingError
from .primitives.registry import registry
from .tracer import FRONT_END as _FRONT_END
from .tracer import (ArrayTracer, Tracer, bind, current_builder, is_made_here, made_here,
                     new_tracer, positions)

pi = _np.pi
e = _np.e
inf = _np.inf
nan = _np.nan
newaxis = None
float64 = _np.float64
float32 = _np.float32
complex128 = _np.complex128
complex64 = _np.complex64
ndarray = _np.ndarray


# -- helpers used by the rules --------------------------------------------------
def shape(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tracer) else _np.shape(x)


def ndim(x: Any) -> int:
    return len(shape(x))


def size(x: Any) -> int:
    return int(math.prod(shape(x)))


def result_dtype(x: Any) -> _np.dtype:
    return x.dtype if isinstance(x, Tracer) else _np.result_type(x)


def _float_dtype(x: Any) -> _np.dtype:
    """x's dtype if it is inexact (float or complex), else float64."""
    dt = result_dtype(x)
    return dt if dt.kind in "fc" else _np.dtype(_np.float64)


def iscomplexobj(x: Any) -> bool:
    return result_dtype(x).kind == "c"


def isrealobj(x: Any) -> bool:
    return not iscomplexobj(x)


@functools.lru_cache(maxsize=256)
def _zeros_const(shp: tuple[int, ...], dtype: str) -> _np.ndarray:
    # one zero broadcast: a tape holds it without n elements of memory
    return made_here(_np.broadcast_to(_np.zeros((), dtype), shp))


def zeros_for(x: Any, like: Any = None, dtype: Any = None) -> Any:
    """Zeros of x's shape (dtype of ``like`` if given): a shared read-only constant
    for the rules, never a fresh allocation per call."""
    dt = _np.dtype(dtype) if dtype is not None else _float_dtype(like if like is not None else x)
    return _zeros_const(tuple(shape(x)), dt.str)


def eye_like(a: Any) -> _np.ndarray:
    return _np.eye(shape(a)[-1], dtype=_float_dtype(a))


def unbroadcast(g: Any, target: tuple[int, ...]) -> Any:
    """Sum g over the axes that broadcasting added or stretched to reach target."""
    gshape = shape(g)
    if tuple(gshape) == tuple(target):
        return g
    lead = len(gshape) - len(target)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(target) if d == 1 and gshape[lead + i] != 1)
    if axes:
        g = sum(g, axis=axes, keepdims=True)
    return reshape(g, target)


def _p(name: str):
    return registry[name]


# -- elementwise ---------------------------------------------------------------
def _unary(name: str):
    prim = _p(name)

    def fn(x: Any) -> Any:
        return bind(prim, x)
    fn.__name__ = name
    return fn


def _binary(name: str):
    prim = _p(name)

    def fn(x: Any, y: Any) -> Any:
        return bind(prim, x, y)
    fn.__name__ = name
    return fn


negative = _unary("neg")
absolute = abs = _unary("abs")
fabs = absolute
_sign_real = _unary("sign")
exp = _unary("exp")
exp2 = _unary("exp2")
log = _unary("log")
log2 = _unary("log2")
log10 = _unary("log10")
log1p = _unary("log1p")
expm1 = _unary("expm1")
sqrt = _unary("sqrt")
cbrt = _unary("cbrt")
square = _unary("square")
reciprocal = _unary("reciprocal")
sin = _unary("sin")
cos = _unary("cos")
tan = _unary("tan")
arcsin = _unary("arcsin")
arccos = _unary("arccos")
arctan = _unary("arctan")
sinh = _unary("sinh")
cosh = _unary("cosh")
tanh = _unary("tanh")
arcsinh = _unary("arcsinh")
arccosh = _unary("arccosh")
arctanh = _unary("arctanh")
floor = _unary("floor")
ceil = _unary("ceil")
rint = round_ = _unary("round")
logical_not = _unary("logical_not")
add = _binary("add")
subtract = _binary("sub")
multiply = _binary("mul")
divide = true_divide = _binary("div")
maximum = _binary("maximum")
minimum = _binary("minimum")
arctan2 = _binary("arctan2")
hypot = _binary("hypot")
logaddexp = _binary("logaddexp")
less = _binary("lt")
less_equal = _binary("le")
greater = _binary("gt")
greater_equal = _binary("ge")
equal = _binary("eq")
not_equal = _binary("ne")
logical_and = _binary("logical_and")
logical_or = _binary("logical_or")
fmax = maximum
fmin = minimum


def power(x: Any, y: Any) -> Any:
    if isinstance(y, (int, float)) and not isinstance(y, bool) and y == 2:
        return square(x)
    return bind(_p("pow"), x, y)


def round(x: Any, decimals: int = 0) -> Any:  # noqa: A001 - NumPy's name
    if decimals:
        scale = 10.0 ** decimals
        return rint(x * scale) / scale
    return rint(x)


around = round


def positive(x: Any) -> Any:
    return _fresh(x)


def sign(x: Any) -> Any:
    """sign(x); for complex x NumPy's x / |x| (0 at 0), which has a derivative."""
    if not iscomplexobj(x):
        return _sign_real(x)
    mag = absolute(x)
    return x / where(mag == 0.0, 1.0, mag)


# -- complex numbers -------------------------------------------------------------
def real(val: Any) -> Any:
    return bind(_p("real"), val) if iscomplexobj(val) else val


def imag(val: Any) -> Any:
    if iscomplexobj(val):
        return bind(_p("imag"), val)
    return _constant(_np.zeros(shape(val), _float_dtype(val)))


def conjugate(x: Any) -> Any:
    return bind(_p("conj"), x) if iscomplexobj(x) else _fresh(x)  # a ufunc: never x itself


conj = conjugate


def angle(z: Any, deg: bool = False) -> Any:
    """The argument of z, as arctan2(imag(z), real(z))."""
    out = arctan2(imag(z), real(z)) if iscomplexobj(z) else arctan2(
        _constant(_np.zeros(shape(z), _float_dtype(z))), z)
    return out * (180.0 / _np.pi) if deg else out

def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None or y is None:
        raise TracingError("where(condition) with one argument returns indices, which "
                           "cannot be traced; use where(condition, x, y)")
    return bind(_p("where"), condition, x, y)


_select = where  # for reductions, whose ``where=`` parameter hides the name


def clip(a: Any, a_min: Any = None, a_max: Any = None) -> Any:
    """Clip to [a_min, a_max]; at exactly a bound the cotangent is split evenly."""
    if a_min is not None:
        a = maximum(a, a_min)
    if a_max is not None:
        a = minimum(a, a_max)
    return a


def astype(x: Any, dtype: Any) -> Any:
    dtype = _np.dtype(dtype)
    if dtype.kind == "f" and dtype not in (_np.float64, _np.float32):
        raise TracingError(f"astype({dtype}): fastad computes in float64 and float32 only")
    if result_dtype(x) == dtype:
        return _fresh(x)
    return bind(_p("astype"), x, dtype=dtype.str)


def stop_gradient(x: Any) -> Any:
    """x, with no derivative flowing through it."""
    return bind(_p("stop_gradient"), x)


# -- reductions ----------------------------------------------------------------
def _axes(axis: Any, nd: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, (int, _np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        a = int(a)
        if not -nd <= a < nd:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {nd}")
        out.append(a % nd)
    return tuple(sorted(set(out)))


def _reduce(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    return bind(_p(name), x, axes=_axes(axis, ndim(x)), keepdims=bool(keepdims))


def _cast(a: Any, dtype: Any) -> Any:
    """A reduction's ``dtype=``: NumPy converts the input, then accumulates."""
    return a if dtype is None else astype(a, dtype)


def _masked(a: Any, mask: Any, neutral: float) -> Any:
    """A reduction's ``where=``: elements left out count as the neutral element."""
    return a if mask is True else _select(mask, a, neutral)


def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,  # noqa: A001
        keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
    _no_out(out, "sum")
    if isinstance(a, (list, tuple)):
        a = stack(a)
    total = _reduce("sum", _masked(_cast(a, dtype), where, 0.0), axis, keepdims)
    return total if initial is None else total + initial


def prod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False, initial: Any = None, where: Any = True) -> Any:
    _no_out(out, "prod")
    total = _reduce("prod", _masked(_cast(a, dtype), where, 1.0), axis, keepdims)
    return total if initial is None else total * initial


def max(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    _no_out(out, "max")
    return _reduce("max", a, axis, keepdims)


def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    _no_out(out, "min")
    return _reduce("min", a, axis, keepdims)


amax = max
amin = min


def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False) -> Any:
    _no_out(out, "mean")
    a = _cast(a, dtype)
    axes = _axes(axis, ndim(a))
    count = math.prod(shape(a)[i] for i in axes)
    return sum(a, axis=axes, keepdims=keepdims) * (1.0 / count if count else _np.nan)


def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Any:
    _no_out(out, "var")
    a = _cast(a, dtype)
    axes = _axes(axis, ndim(a))
    count = math.prod(shape(a)[i] for i in axes)
    centered = a - mean(a, axis=axes, keepdims=True)
    denom = count - ddof
    return sum(_abs2(centered), axis=axes, keepdims=keepdims) * (
        1.0 / denom if denom > 0 else _np.nan)


def _abs2(x: Any) -> Any:
    """|x|**2, real: x*x, or re**2 + im**2 for complex x (as NumPy's var and norm)."""
    return square(real(x)) + square(imag(x)) if iscomplexobj(x) else square(x)


def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Any:
    return sqrt(var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims))


def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """log(sum(exp(a))), computed stably; the shift by max carries no gradient."""
    axes = _axes(axis, ndim(a))
    m = stop_gradient(max(a, axis=axes, keepdims=True))
    m = where(isfinite(m), m, 0.0)
    s = log(sum(exp(a - m), axis=axes, keepdims=True)) + m
    return s if keepdims else reshape(s, tuple(d for i, d in enumerate(shape(a)) if i not in axes))


def isfinite(x: Any) -> Any:
    return abs(x) < _np.inf


def isnan(x: Any) -> Any:
    return not_equal(x, x)


def cumsum_(x: Any, axis: int, reverse: bool = False) -> Any:
    return bind(_p("cumsum"), x, axis=int(axis), reverse=bool(reverse))


def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    _no_out(out, "cumsum")
    a = _cast(a, dtype)
    if axis is None:
        return cumsum_(ravel(a), 0)
    return cumsum_(a, _axes(axis, ndim(a))[0])


def _no_out(out: Any, name: str) -> None:
    if out is not None:
        raise TracingError(f"{name}(..., out=...) writes into an existing array, which cannot "
                           "be traced; use the returned value instead")


# -- shape ---------------------------------------------------------------------
def _shape_arg(newshape: Any, total: int) -> tuple[int, ...]:
    if isinstance(newshape, (int, _np.integer)):
        newshape = (newshape,)
    newshape = [int(d) for d in newshape]
    if newshape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in newshape:
        known = math.prod(d for d in newshape if d != -1)
        newshape[newshape.index(-1)] = total // known if known else 0
    if math.prod(newshape) != total:
        raise ValueError(f"cannot reshape array of size {total} into shape {tuple(newshape)}")
    return tuple(newshape)


def reshape(a: Any, newshape: Any = None, order: str = "C", shape: Any = None,
            copy: Any = None) -> Any:
    """(``copy``: NumPy's; a view or a copy is decided where views are tracked.)"""
    if order != "C":
        raise TracingError("reshape: only order='C' is supported")
    target = _shape_arg(newshape if newshape is not None else shape, size(a))
    if tuple(globals()["shape"](a)) == target:
        return a
    return bind(_p("reshape"), a, shape=target)


def ravel(a: Any, order: str = "C") -> Any:
    return reshape(a, (-1,), order=order)


def transpose(a: Any, axes: Any = None) -> Any:
    nd = ndim(a)
    if isinstance(axes, (int, _np.integer)):
        axes = (axes,)
    perm = tuple(range(nd))[::-1] if axes is None else tuple(int(x) % nd for x in axes)
    if sorted(perm) != list(range(nd)):
        raise ValueError(f"transpose: axes {axes} do not match an array of {nd} dimensions")
    if perm == tuple(range(nd)):
        return a
    return bind(_p("transpose"), a, perm=perm)


def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    perm = list(range(ndim(a)))
    i, j = axis1 % ndim(a), axis2 % ndim(a)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    nd = ndim(a)
    src = [s % nd for s in ((source,) if isinstance(source, int) else source)]
    dst = [d % nd for d in ((destination,) if isinstance(destination, int) else destination)]
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def expand_dims(a: Any, axis: Any) -> Any:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = ndim(a) + len(axes)
    axes = sorted(x % nd for x in axes)
    shp = list(shape(a))
    for ax in axes:
        shp.insert(ax, 1)
    return reshape(a, tuple(shp))


def squeeze(a: Any, axis: Any = None) -> Any:
    shp = shape(a)
    if axis is None:
        return reshape(a, tuple(d for d in shp if d != 1))
    axes = _axes(axis, len(shp))
    for ax in axes:
        if shp[ax] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, tuple(d for i, d in enumerate(shp) if i not in axes))


def broadcast_to(a: Any, shape: Any, subok: bool = False) -> Any:
    target = tuple(int(d) for d in ((shape,) if isinstance(shape, int) else shape))
    current = tuple(shape_of(a))
    if current == target:
        return a
    _np.broadcast_shapes(current, target)  # raises NumPy's error if impossible
    if not isinstance(a, Tracer):
        # a constant (a rule's seed or zeros): broadcast without its copies' memory,
        # from an array no caller can write into afterwards
        arr = _np.asarray(a)
        if is_made_here(arr) or arr.size <= 4096:
            return made_here(_np.broadcast_to(arr if is_made_here(arr) else arr.copy(), target))
    return bind(_p("broadcast_to"), a, shape=target)


def broadcast_arrays(*args: Any) -> list[Any]:
    target = _np.broadcast_shapes(*(shape(a) for a in args))
    return [broadcast_to(a, target) for a in args]


def atleast_1d(a: Any) -> Any:
    return reshape(a, (1,)) if ndim(a) == 0 else a


def atleast_2d(a: Any) -> Any:
    return reshape(a, (1,) * (2 - ndim(a)) + shape(a)) if ndim(a) < 2 else a


def atleast_3d(a: Any) -> Any:
    nd = ndim(a)
    if nd >= 3:
        return a
    shp = tuple(shape(a))
    return reshape(a, {0: (1, 1, 1), 1: (1,) + shp + (1,)}.get(nd, shp + (1,)))


def rollaxis(a: Any, axis: int, start: int = 0) -> Any:
    return transpose(a, _perm_of(lambda i: _np.rollaxis(i, axis, start), ndim(a)))


def _perm_of(fn: Any, nd: int) -> tuple[int, ...]:
    """The axis permutation a NumPy function applies to an nd-dimensional array."""
    probe = _np.broadcast_to(_np.empty(()), tuple(range(2, nd + 2)))  # no memory
    return tuple(probe.shape.index(d) for d in fn(probe).shape)


def matrix_transpose(x: Any) -> Any:
    if ndim(x) < 2:
        raise ValueError("matrix transpose with ndim < 2 is undefined")
    return swapaxes(x, -1, -2)


def permute_dims(a: Any, axes: Any = None) -> Any:
    return transpose(a, axes)


def concatenate(arrays: Sequence[Any], axis: int | None = 0) -> Any:
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    if not builtins.any(isinstance(a, Tracer) for a in arrays):
        return _np.concatenate([_np.asarray(a) for a in arrays], axis=axis)
    nd = ndim(arrays[0])
    axis %= nd
    out_shape = list(shape(arrays[0]))
    out_shape[axis] = builtins.sum(shape(a)[axis] for a in arrays)
    dtype = _np.result_type(*(result_dtype(a) for a in arrays))
    out: Any = _zeros_const(tuple(out_shape), dtype.str)
    flat = _np.arange(math.prod(out_shape)).reshape(out_shape)
    start = 0
    for a in arrays:
        n = shape(a)[axis]
        sel = [slice(None)] * nd
        sel[axis] = slice(start, start + n)
        out = scatter_set(out, flat[tuple(sel)], a)
        start += n
    return out


def stack(arrays: Sequence[Any], axis: int = 0) -> Any:
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    nd = ndim(arrays[0]) + 1
    return concatenate([expand_dims(a, axis % nd) for a in arrays], axis=axis % nd)


def hstack(tup: Sequence[Any]) -> Any:
    arrs = [atleast_1d(a) for a in tup]
    return concatenate(arrs, axis=0 if ndim(arrs[0]) == 1 else 1)


def vstack(tup: Sequence[Any]) -> Any:
    return concatenate([atleast_2d(a) for a in tup], axis=0)


def _gather(a: Any, build_index) -> Any:
    """Any fixed rearrangement of a's elements: ``build_index`` maps NumPy's
    own function over the array of flat positions."""
    idx = build_index(_np.arange(size(a)).reshape(shape(a)))
    return take_flat(a, idx)


def flip(m: Any, axis: Any = None) -> Any:
    return _gather(m, lambda i: _np.flip(i, axis))


def fliplr(m: Any) -> Any:
    return _gather(m, _np.fliplr)


def flipud(m: Any) -> Any:
    return _gather(m, _np.flipud)


def rot90(m: Any, k: int = 1, axes: Any = (0, 1)) -> Any:
    return _gather(m, lambda i: _np.rot90(i, k, axes))


def _gather_parts(a: Any, build_parts: Any) -> list[Any]:
    """The arrays NumPy's ``build_parts`` splits a into (each a gather)."""
    parts = build_parts(_np.arange(size(a)).reshape(shape(a)))
    return type(parts)(take_flat(a, p) for p in parts)


def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
    return _gather_parts(ary, lambda i: _np.split(i, indices_or_sections, axis))


def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
    return _gather_parts(ary, lambda i: _np.array_split(i, indices_or_sections, axis))


def hsplit(ary: Any, indices_or_sections: Any) -> list[Any]:
    return _gather_parts(ary, lambda i: _np.hsplit(i, indices_or_sections))


def vsplit(ary: Any, indices_or_sections: Any) -> list[Any]:
    return _gather_parts(ary, lambda i: _np.vsplit(i, indices_or_sections))


def dsplit(ary: Any, indices_or_sections: Any) -> list[Any]:
    return _gather_parts(ary, lambda i: _np.dsplit(i, indices_or_sections))


def unstack(x: Any, *, axis: int = 0) -> tuple[Any, ...]:
    return _gather_parts(x, lambda i: _np.unstack(i, axis=axis))


def roll(a: Any, shift: Any, axis: Any = None) -> Any:
    return _gather(a, lambda i: _np.roll(i, shift, axis))


def tile(a: Any, reps: Any) -> Any:
    return _gather(a, lambda i: _np.tile(i, reps))


def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    return _gather(a, lambda i: _np.repeat(i, repeats, axis))


def diag(v: Any, k: int = 0) -> Any:
    if ndim(v) == 2:
        return _gather(v, lambda i: _np.diag(i, k))
    if ndim(v) != 1:
        raise ValueError("diag: input must be 1-d or 2-d")
    n = size(v) + builtins.abs(k)
    positions = _np.diag(_np.arange(1, size(v) + 1), k).reshape(-1)
    where_ = _np.nonzero(positions)[0]
    return reshape(scatter_set(_zeros_const((n * n,), _float_dtype(v).str), where_, v), (n, n))


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return _gather(a, lambda i: _np.diagonal(i, offset, axis1, axis2).copy())


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return sum(diagonal(a, offset, axis1, axis2), axis=-1)


def triu(m: Any, k: int = 0) -> Any:
    return where(_np.triu(_np.ones(shape(m)[-2:], bool), k), m, 0.0)


def tril(m: Any, k: int = 0) -> Any:
    return where(_np.tril(_np.ones(shape(m)[-2:], bool), k), m, 0.0)


# -- indexing ------------------------------------------------------------------
def take_flat(a: Any, idx: Any) -> Any:
    """a.ravel()[idx] for a constant integer array idx."""
    return bind(_p("take"), a, _np.asarray(idx, dtype=_np.int64))


def scatter_set(a: Any, idx: Any, v: Any) -> Any:
    """A copy of a with a.ravel()[idx] = v (v broadcast to idx's shape)."""
    idx = _np.asarray(idx, dtype=_np.int64)
    return bind(_p("scatter_set"), a, idx, _broadcast_value(v, idx.shape, a))


def scatter_add(a: Any, idx: Any, v: Any) -> Any:
    """A copy of a with v added at a.ravel()[idx]; repeated indices accumulate."""
    idx = _np.asarray(idx, dtype=_np.int64)
    return bind(_p("scatter_add"), a, idx, _broadcast_value(v, idx.shape, a))


def _broadcast_value(v: Any, target: tuple[int, ...], into: Any) -> Any:
    if not isinstance(v, Tracer) and not isinstance(v, _np.ndarray):
        return made_here(_np.broadcast_to(_np.asarray(v, dtype=_float_dtype(into)), target))
    return broadcast_to(v, target)


def _flat_index(shp: tuple[int, ...], key: Any) -> _np.ndarray:
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if isinstance(k, Tracer):
            raise TracingError("indexing with a traced value is not supported: indices must be "
                               "Python ints, slices or constant integer/boolean arrays (for "
                               "indices computed from traced values, such as argsort's, use "
                               "np.take_along_axis or np.take)")
    if len(key) == len(shp) and builtins.all(
            isinstance(k, (int, _np.integer)) and not isinstance(k, bool) for k in key):
        flat = 0
        for k, d in zip(key, shp):
            k = int(k)
            if not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis with size {d}")
            flat = flat * d + (k % d)
        return made_here(_np.asarray(flat, dtype=_np.int64))
    return made_here(_np.asarray(positions(shp)[key]))


def getitem(a: Any, key: Any) -> Any:
    idx = _flat_index(shape(a), key)
    if idx.shape == tuple(shape(a)) and _np.array_equal(idx.reshape(-1), _np.arange(idx.size)):
        out = _fresh(a)  # x[:], x[...]: a new view of all of x
    else:
        out = take_flat(a, idx)
    if type(out) is ArrayTracer:
        if _is_basic(key):  # NumPy's basic indexing makes a view
            return _link(a, out, lambda s: s[key])
    elif type(key) is tuple and _has_ellipsis(key) and _is_basic(key):
        return _link(a, out, lambda s: s[key])  # x[..., 0] of a vector: a 0-d view
    return out  # (x[0] of a vector is a scalar: a copy)


def _is_basic(key: Any) -> bool:
    """Whether NumPy's a[key] would be a view of a (basic indexing)."""
    keys = key if isinstance(key, tuple) else (key,)
    return builtins.all(k is None or k is Ellipsis or isinstance(k, slice)
                        or (isinstance(k, (int, _np.integer)) and not isinstance(k, bool))
                        for k in keys)


def _has_ellipsis(key: tuple) -> bool:
    return builtins.any(k is Ellipsis for k in key)


# -- views: NumPy's shared memory, on traced values --------------------------------
# Every traced value holds its own copy of its elements.  An operation whose
# NumPy result is a view of its input (a basic slice, reshape, .T, the real or
# imaginary part of a complex array, the parts of split, ...) records how it
# was made (`_link`), and fastad keeps the two consistent as NumPy's shared
# memory would: a write through any of them is written into the array that
# owns the memory (the root) and refreshes the views of it still alive.
#
# Which elements of the root a view holds, whether it is a view at all (NumPy's
# x.T.reshape(-1) is a copy) and whether it may be written (broadcast_to's
# result may not) are NumPy's own answers: the same operation applied to the
# parent's *shadow*, the root's flat positions np.arange(root.size) in the
# root's shape, gives the view's shadow; it shares the root shadow's memory
# exactly when NumPy's result is a view, and its flags say whether it is
# writeable.  Shadows are computed only when something is written into a
# family of arrays with views alive, and cached.
class _View:
    """How a traced value was made from ``parent``: ``make`` maps the parent's
    shadow to its own.  ``part``: "real" or "imag" for a part of a complex
    array.  Once resolved, ``shadow`` holds the positions in the root; a copy
    has ``parent`` None (it owns its memory), and may still be read-only."""

    __slots__ = ("parent", "make", "part", "shadow", "writeable")

    def __init__(self, parent: Any, make: Any, part: str | None = None) -> None:
        self.parent, self.make, self.part = parent, make, part
        self.shadow: Any = None
        self.writeable = True


def _link(base: Any, out: Any, make: Any, part: str | None = None) -> Any:
    """out, recorded as made from base by ``make`` (a NumPy view of it, if the
    shadow says so).  0-d traced values are immutable, like NumPy scalars: their
    views are copies, unless they are themselves views (``x[0, ...]``)."""
    if not isinstance(out, Tracer) or not isinstance(base, Tracer) \
            or out.builder is not base.builder:
        return out
    if type(base) is not ArrayTracer:
        link = getattr(base, "view_of", None)
        if link is None or link.parent is None:  # a scalar, not a 0-d view (x[0, ...])
            if type(out) is ArrayTracer:
                _copy_of_scalar(out, make)
            return out
    if out is base:
        out = base.builder.tracer(out.slot)  # a view is a new object, as in NumPy
    out.view_of = _View(base, make, part)  # (replacing a link fastad's code made)
    ref = weakref.ref(out)
    views = getattr(base, "views", None)
    if views is None:
        base.views = [ref]
    else:
        views.append(ref)
        if not len(views) & 255:  # views made in a loop and dropped: forget the dead
            views[:] = [r for r in views if r() is not None]
    return out


def _copy_of_scalar(out: ArrayTracer, make: Any) -> None:
    """out, made from a 0-d traced value (immutable, like a NumPy scalar), is a
    copy; but NumPy makes broadcast_to's read-only even then."""
    try:
        s = make(_root_shadow((), False))
    except Exception:  # fastad allowed what NumPy refuses: its own choice
        return
    if isinstance(s, _np.ndarray) and not _writeable(s):
        link = out.view_of = _View(None, None)
        link.writeable = False


def _writeable(s: _np.ndarray) -> bool:
    """Whether NumPy lets a view with shadow s be written.  A view repeating
    elements (broadcast_arrays' results) is not written either: NumPy
    deprecates it, and which write of a repeated element wins is ambiguous."""
    with warnings.catch_warnings():  # broadcast_arrays' FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        return bool(s.flags.writeable) and not builtins.any(
            st == 0 and d > 1 for st, d in zip(s.strides, s.shape))


@functools.lru_cache(maxsize=64)
def _root_shadow(shp: tuple[int, ...], complex_: bool) -> _np.ndarray:
    """The flat positions in shape shp.  A complex array's are complex (p + pj):
    NumPy's real and imag of it are then views with the strides of the parts
    of a complex array, whose values are still the positions."""
    p = _np.arange(math.prod(shp), dtype=_np.intp).reshape(shp)
    return p + p * 1j if complex_ else p


def _pos(s: _np.ndarray) -> _np.ndarray:
    """A shadow's values as integer positions."""
    return s if s.dtype.kind in "iu" else s.real.astype(_np.intp)


def _owner(s: Any) -> Any:
    """The object at the end of s's chain of bases (as_strided's goes through
    a non-array holder)."""
    base = getattr(s, "base", None)
    while base is not None:
        s, base = base, getattr(base, "base", None)
    return s


def _is_view(s: Any, of: _np.ndarray) -> bool:
    """Whether NumPy's result s shares memory with the shadow ``of``."""
    return isinstance(s, _np.ndarray) and (
        _owner(s) is _owner(of) or (s.size > 0 and _np.shares_memory(s, of)))


def _shadow(t: Any) -> _np.ndarray | None:
    """The positions of t's elements in the array that owns their memory, as
    NumPy would lay them out; None when t owns its memory."""
    link = getattr(t, "view_of", None)
    if link is None or link.parent is None:
        return None
    if link.shadow is None:
        chain = [t]  # the views from t up to one resolved, or to the owner
        parent = link.parent
        while True:
            plink = getattr(parent, "view_of", None)
            if plink is None or plink.parent is None or plink.shadow is not None:
                break
            chain.append(parent)
            parent = plink.parent
        for view in reversed(chain):  # from the owner down: no recursion
            _resolve(view.view_of)
    return link.shadow


def _resolve(link: _View) -> None:
    """Apply link's operation to its parent's shadow (already resolved)."""
    parent = link.parent
    plink = getattr(parent, "view_of", None)
    ps = plink.shadow if plink is not None and plink.parent is not None else None
    if ps is None and type(parent) is not ArrayTracer:
        link.parent = link.make = None  # made from a 0-d copy: a NumPy scalar's are copies
        return
    if ps is None:
        ps = _root_shadow(tuple(shape(parent)), iscomplexobj(parent))
        if plink is not None and not plink.writeable:
            ps = ps.view()
            ps.flags.writeable = False
    try:
        s = link.make(ps)
    except Exception:  # NumPy refuses what fastad allowed (a choice of its own): a copy
        s = None
    if _is_view(s, ps):
        link.shadow = s
        link.writeable = _writeable(s)
        if link.part is None and plink is not None and plink.parent is not None:
            link.part = plink.part
        return
    # NumPy's result is new memory: the value owns its elements from now on
    link.parent = link.make = None
    link.writeable = bool(s.flags.writeable) if isinstance(s, _np.ndarray) else True


def _root(t: Any) -> Any:
    """The array owning t's memory (after `_shadow(t)` has resolved t's chain)."""
    link = getattr(t, "view_of", None)
    while link is not None and link.parent is not None:
        t = link.parent
        link = getattr(t, "view_of", None)
    return t


def _part(t: Any) -> str | None:
    link = getattr(t, "view_of", None)
    return link.part if link is not None and link.parent is not None else None


def _check_writeable(a: Any, message: str = "assignment destination is read-only") -> None:
    """Raise NumPy's ValueError if a is a read-only view (broadcast_to, diagonal, ...)."""
    link = getattr(a, "view_of", None)
    if link is not None:
        _shadow(a)
        if not link.writeable:
            raise ValueError(message)


def _rebind(a: Tracer, new: Tracer) -> None:
    a.builder, a.slot, a.value = new.builder, new.slot, new.value


def _in_part(part: str | None, value: Any, old: Any) -> Any:
    """The complex elements that result from writing value into their ``part``."""
    if part is None:
        return value
    if part == "real":
        return value + imag(old) * 1j
    return real(old) + value * 1j


def _of_part(part: str | None, value: Any) -> Any:
    if part is None:
        return value
    return real(value) if part == "real" else imag(value)


def _written(a: Tracer, positions: _np.ndarray | None) -> None:
    """a was just written at a.ravel()[positions] (None: everywhere): write
    it into the array owning its memory and refresh the views of that array
    which hold a written element."""
    link = getattr(a, "view_of", None)
    if link is None and not getattr(a, "views", None):
        return  # a owns its memory and no view of it was taken: nothing to do
    s = _shadow(a)
    if s is None:
        root, at = a, positions
    else:
        s = _pos(s)
        root = _root(a)
        if positions is None:
            at, value = s, a
        else:
            at, value = s.reshape(-1)[positions], take_flat(a, positions)
        old = take_flat(root, at) if link.part is not None else None
        _rebind(root, scatter_set(root, at, _in_part(link.part, value, old)))
        at = at.reshape(-1)
    _refresh(root, a, at)


def _refresh(root: Tracer, writer: Tracer, at: _np.ndarray | None) -> None:
    """Gather anew, from root, every live view of it (except writer, which is
    already up to date) holding one of the root's positions ``at`` (None: all)."""
    todo = [root]
    while todo:
        node = todo.pop()
        views = getattr(node, "views", None)
        if not views:
            continue
        live, seen = [], set()
        for ref in views:
            v = ref()
            if v is None or id(v) in seen:
                continue
            link = getattr(v, "view_of", None)
            if link is None or link.parent is not node:
                continue  # made a view of another array since
            sv = _shadow(v)
            if sv is None:
                continue  # a copy in NumPy: it owns its memory
            sv = _pos(sv)
            seen.add(id(v))
            live.append(ref)
            if v is not writer and sv.size and (at is None or _np.isin(sv, at).any()):
                _rebind(v, _of_part(link.part, take_flat(root, sv)))
            todo.append(v)
        node.views = live


def _memory(t: Any) -> tuple[Any, _np.ndarray, str | None]:
    """(owner, t's positions in it, part) of a traced value."""
    s = _shadow(t)
    if s is None:
        return t, _pos(_root_shadow(tuple(shape(t)), False)), None
    return _root(t), _pos(s), _part(t)


def shares_memory(a: Any, b: Any, max_work: Any = None) -> bool:
    """Whether NumPy's a and b would share memory: views of one array holding a
    common element.  A traced value shares none with a NumPy array (fastad never
    writes into its caller's arrays)."""
    if not (isinstance(a, Tracer) and isinstance(b, Tracer)):
        return False
    (ra, pa, parta), (rb, pb, partb) = _memory(a), _memory(b)
    if ra is not rb or (parta is not None and partb is not None and parta != partb):
        return False
    return bool(_np.intersect1d(pa, pb).size)


may_share_memory = shares_memory


def _base_property(self: Tracer) -> Any:
    """x.base: the array whose memory a view shows (None for an array that owns its own)."""
    if _shadow(self) is None:
        return None
    return _root(self)


def _same_memory(value: Any, a: Any, idx: _np.ndarray) -> bool:
    """Whether value is a live view of exactly a.ravel()[idx] (``a[k] = a[k]``)."""
    if getattr(value, "view_of", None) is None:
        return False
    sv = _shadow(value)
    if sv is None or _root(value) is not _root(a) or _part(value) != _part(a):
        return False
    sv, sa = _pos(sv), _shadow(a)
    sa = None if sa is None else _pos(sa)
    at = idx if sa is None else sa.reshape(-1)[idx.reshape(-1)].reshape(idx.shape)
    return sv.shape == at.shape and _np.array_equal(sv, at)


def _store(a: Any, new: Any, positions: _np.ndarray | None = None) -> None:
    """a (a traced array, checked writeable) takes the value new, which differs
    from a's at most at a.ravel()[positions] (None: anywhere)."""
    _rebind(a, new)
    _written(a, positions)


def setitem(a: Tracer, key: Any, value: Any) -> None:
    _check_writeable(a)
    idx = _flat_index(shape(a), key)
    if _np.unique(idx).size != idx.size:
        raise TracingError("assignment through an index with repeated positions is ambiguous; "
                           "use fastad.numpy.scatter_add to accumulate instead")
    if _same_memory(value, a, idx):
        return  # a[k] = a[k] after `a[k] += v` wrote through the view already
    _store(a, scatter_set(a, idx, value), idx.reshape(-1))


# -- functions that write into an array ---------------------------------------------
def _target(a: Any, what: str) -> ArrayTracer:
    """a, a traced array that may be written (else the error NumPy or fastad gives)."""
    if isinstance(a, ArrayTracer):
        return a
    if isinstance(a, Tracer):
        raise TracingError(f"{what} writes into a 0-d traced value, which is immutable like a "
                           "NumPy scalar; use the value computed instead")
    raise TracingError(f"{what} writes traced values into a NumPy array, which cannot be "
                       "traced; create the array with fastad.numpy.zeros (or copy a traced one) "
                       "and write into that")


def _cast_into(value: Any, a: Any, what: str) -> Any:
    """value in a's dtype, as NumPy's same_kind casting allows."""
    vdt, adt = result_dtype(value), result_dtype(a)
    if vdt == adt:
        return value
    if vdt.kind == "c" and adt.kind != "c":
        raise TypeError(f"Cannot cast {what} from {vdt!r} to {adt!r} with casting rule "
                        "'same_kind'")
    if not isinstance(value, Tracer):
        return _np.asarray(value).astype(adt)
    return astype(value, adt)


def _as_operand(v: Any) -> Any:
    """v as a traced value or a NumPy array (lists holding traced values are stacked)."""
    if isinstance(v, Tracer):
        return v
    return array(v) if _contains_tracer(v) else _np.asarray(v)


def _write_all(a: Any, value: Any, mask: Any = True, what: str = "output") -> None:
    """a[...] = value (broadcast to a's shape, cast to its dtype), where mask."""
    value = _as_operand(value)
    if not isinstance(value, Tracer):
        value = _constant(value)
    full = _np.broadcast_shapes(shape(value), shape(a))
    if full != tuple(shape(a)):
        raise ValueError(f"non-broadcastable output operand with shape {shape(a)} doesn't "
                         f"match the broadcast shape {full}")
    value = _cast_into(broadcast_to(value, tuple(shape(a))), a, what)
    if mask is not True:
        value = _select(mask, value, a)
    _store(a, _fresh(value) if value is a else value)


def _write_tagged(a: Any, values: Any, numpy_write: Any) -> None:
    """Write values into a as ``numpy_write(a, values)`` would: NumPy's own
    function, run on an array of tags, says which element of values lands
    where (repeats, cycling, modes and errors included)."""
    vals = _as_operand(values)
    tags = _np.full(shape(a), -1, _np.int64)
    numpy_write(tags, _np.arange(size(vals), dtype=_np.int64).reshape(shape(vals)))
    flat = tags.reshape(-1)
    at = _np.flatnonzero(flat >= 0)
    if not at.size:
        return
    src = flat[at]
    v = take_flat(vals, src) if isinstance(vals, Tracer) else vals.reshape(-1)[src]
    _store(a, scatter_set(a, at, _cast_into(v, a, "the values")), at)


def copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    dst = _target(dst, "copyto")
    _check_writeable(dst)
    _write_all(dst, src, where, "the source")


def put(a: Any, ind: Any, v: Any, mode: str = "raise") -> None:
    a = _target(a, "put")
    _check_writeable(a, "put: output array is read-only")
    _write_tagged(a, v, lambda t, vi: _np.put(t, ind, vi, mode))


def place(arr: Any, mask: Any, vals: Any) -> None:
    arr = _target(arr, "place")
    _check_writeable(arr, "WRITEBACKIFCOPY base is read-only")
    if isinstance(mask, Tracer):
        raise TracingError("place: the mask must be a constant; use np.where for a traced mask")
    _write_tagged(arr, vals, lambda t, vi: _np.place(t, mask, vi))


def putmask(a: Any, mask: Any, values: Any) -> None:
    a = _target(a, "putmask")
    _check_writeable(a, "putmask: output array is read-only")
    if not isinstance(mask, Tracer):
        _write_tagged(a, values, lambda t, vi: _np.putmask(t, mask, vi))
        return
    values = _as_operand(values)
    n = size(values)  # values repeat over a's flat positions, as in NumPy
    if not n:
        raise ValueError("putmask: values must not be empty")
    cyclic = _np.arange(size(a)) % n
    full = take_flat(values, cyclic) if isinstance(values, Tracer) else \
        _np.asarray(values).reshape(-1)[cyclic]
    _write_all(a, reshape(full, tuple(shape(a))), mask, "the values")


def put_along_axis(arr: Any, indices: Any, values: Any, axis: Any) -> None:
    arr = _target(arr, "put_along_axis")
    _check_writeable(arr)
    if isinstance(indices, Tracer):
        raise TracingError("put_along_axis: the indices must be constants")
    _write_tagged(arr, values, lambda t, vi: _np.put_along_axis(t, indices, vi, axis))


def fill_diagonal(a: Any, val: Any, wrap: bool = False) -> None:
    a = _target(a, "fill_diagonal")
    _check_writeable(a, "underlying array is read-only")
    _write_tagged(a, val, lambda t, vi: _np.fill_diagonal(t, vi, wrap))


# -- linear algebra ------------------------------------------------------------
def matmul_(a: Any, b: Any) -> Any:
    return bind(_p("matmul"), a, b)


def solve_(a: Any, b: Any) -> Any:
    return bind(_p("solve"), a, b)


def matmul(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        raise ValueError("matmul: input operand does not have enough dimensions")
    squeeze_a, squeeze_b = ndim(a) == 1, ndim(b) == 1
    if squeeze_a:
        a = reshape(a, (1, shape(a)[0]))
    if squeeze_b:
        b = reshape(b, (shape(b)[0], 1))
    if shape(a)[-1] != shape(b)[-2]:
        raise ValueError(f"matmul: shapes {shape(a)} and {shape(b)} do not align")
    batch = _np.broadcast_shapes(shape(a)[:-2], shape(b)[:-2])
    a = broadcast_to(a, batch + shape(a)[-2:])
    b = broadcast_to(b, batch + shape(b)[-2:])
    out = matmul_(a, b)
    out_shape = batch + ((shape(a)[-2],) if not squeeze_a else ()) + (
        (shape(b)[-1],) if not squeeze_b else ())
    return reshape(out, out_shape)


def dot(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    if ndim(b) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([ndim(a) - 1], [ndim(b) - 2]))


def vdot(a: Any, b: Any) -> Any:
    return dot(conjugate(ravel(a)), ravel(b))  # NumPy conjugates the first argument


def inner(a: Any, b: Any) -> Any:
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([ndim(a) - 1], [ndim(b) - 1]))


def outer(a: Any, b: Any) -> Any:
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    if isinstance(axes, (int, _np.integer)):
        axes_a = list(range(ndim(a) - int(axes), ndim(a)))
        axes_b = list(range(int(axes)))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = [x % ndim(a) for x in axes_a]
    axes_b = [x % ndim(b) for x in axes_b]
    for i, j in zip(axes_a, axes_b):
        if shape(a)[i] != shape(b)[j]:
            raise ValueError("tensordot: shape-mismatch for sum")
    free_a = [i for i in range(ndim(a)) if i not in axes_a]
    free_b = [j for j in range(ndim(b)) if j not in axes_b]
    k = math.prod(shape(a)[i] for i in axes_a)
    m = math.prod(shape(a)[i] for i in free_a)
    n = math.prod(shape(b)[j] for j in free_b)
    a2 = reshape(transpose(a, free_a + axes_a), (m, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, n))
    out = matmul_(a2, b2)
    return reshape(out, tuple(shape(a)[i] for i in free_a) + tuple(shape(b)[j] for j in free_b))


def einsum(subscripts: str, *operands: Any, optimize: Any = False) -> Any:
    """Einstein summation for one or two operands, as transposes, reshapes,
    diagonals and a batched matmul."""
    spec = subscripts.replace(" ", "")
    if "..." in spec:
        raise TracingError("einsum: '...' is not supported; write the axes out")
    if "->" in spec:
        lhs, out_sub = spec.split("->")
    else:
        lhs = spec
        letters = lhs.replace(",", "")
        out_sub = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != len(operands) or len(ins) not in (1, 2):
        raise TracingError("einsum: one or two operands are supported; chain calls for more")
    ops = []
    for k, (sub, op) in enumerate(zip(ins, operands)):
        if len(sub) != ndim(op):
            raise ValueError(f"einsum: '{sub}' does not match an operand of shape {shape(op)}")
        sub, op = _einsum_diagonal(sub, op)
        elsewhere = set(out_sub).union(*(set(s) for j, s in enumerate(ins) if j != k))
        lonely = tuple(i for i, c in enumerate(sub) if c not in elsewhere)
        if lonely:  # summed out before the contraction
            op = sum(op, axis=lonely)
            sub = "".join(c for i, c in enumerate(sub) if i not in lonely)
        ops.append((sub, op))
    if len(ops) == 1:
        sub, op = ops[0]
        return transpose(op, [sub.index(c) for c in out_sub])
    (sa, a), (sb, b) = ops
    batch = [c for c in out_sub if c in sa and c in sb]
    contract = [c for c in sa if c in sb and c not in out_sub]
    free_a = [c for c in sa if c not in sb]
    free_b = [c for c in sb if c not in sa]
    dims = {c: shape(a)[sa.index(c)] for c in sa}
    dims.update({c: shape(b)[sb.index(c)] for c in sb})
    a3 = transpose(a, [sa.index(c) for c in batch + free_a + contract])
    b3 = transpose(b, [sb.index(c) for c in batch + contract + free_b])
    nb = math.prod(dims[c] for c in batch)
    fa = math.prod(dims[c] for c in free_a)
    fb = math.prod(dims[c] for c in free_b)
    k = math.prod(dims[c] for c in contract)
    out = matmul_(reshape(a3, (nb, fa, k)), reshape(b3, (nb, k, fb)))
    out = reshape(out, tuple(dims[c] for c in batch + free_a + free_b))
    have = batch + free_a + free_b
    return transpose(out, [have.index(c) for c in out_sub])


def _einsum_diagonal(sub: str, op: Any) -> tuple[str, Any]:
    """Take diagonals for letters repeated within one operand ('ii->i')."""
    while len(set(sub)) < len(sub):
        c = next(ch for ch in sub if sub.count(ch) > 1)
        i, j = sub.index(c), sub.index(c, sub.index(c) + 1)
        op = moveaxis(diagonal(op, 0, i, j), -1, 0)
        sub = c + "".join(ch for k, ch in enumerate(sub) if k not in (i, j))
    return sub, op


def _solve(a: Any, b: Any) -> Any:
    if ndim(a) < 2 or shape(a)[-1] != shape(a)[-2]:
        raise _np.linalg.LinAlgError("solve: a must be square in its last two dimensions")
    vector = ndim(b) == 1  # NumPy 2: only a 1-d b is a vector (else a stack of matrices)
    if vector:
        b = expand_dims(b, -1)
    batch = _np.broadcast_shapes(shape(a)[:-2], shape(b)[:-2])
    a = broadcast_to(a, batch + shape(a)[-2:])
    b = broadcast_to(b, batch + shape(b)[-2:])
    x = solve_(a, b)
    return reshape(x, shape(x)[:-1]) if vector else x


def _inv(a: Any) -> Any:
    return solve_(a, broadcast_to(eye_like(a), shape(a)))


def _slogdet(a: Any) -> tuple[Any, Any]:
    if iscomplexobj(a):  # the sign's derivative is not zero: refuse, never a wrong answer
        raise TracingError("slogdet/det of a complex matrix is not supported on traced values")
    return bind(_p("detsign"), a), bind(_p("logabsdet"), a)


def _det(a: Any) -> Any:
    s, logdet = _slogdet(a)
    return s * exp(logdet)


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    vector = (ndim(x) == 1 and axis is None) or isinstance(axis, (int, _np.integer))
    if ord is None or (ord == "fro" and not vector) or (ord == 2 and vector):
        return sqrt(sum(_abs2(x), axis=axis, keepdims=keepdims))
    if vector and isinstance(ord, (int, float)) and not isinstance(ord, bool):
        if ord == _np.inf:
            return max(absolute(x), axis=axis, keepdims=keepdims)
        if ord == -_np.inf:
            return min(absolute(x), axis=axis, keepdims=keepdims)
        if ord == 0:  # the number of nonzero entries
            return sum(astype(x != 0, _float_dtype(x)), axis=axis, keepdims=keepdims)
        if ord == 1:
            return sum(absolute(x), axis=axis, keepdims=keepdims)
        return power(sum(power(absolute(x), float(ord)), axis=axis, keepdims=keepdims),
                     1.0 / ord)
    raise TracingError(f"linalg.norm with ord={ord!r} on a {ndim(x)}-d array is not supported")


def _square(a: Any, name: str) -> None:
    if ndim(a) < 2 or shape(a)[-1] != shape(a)[-2]:
        raise _np.linalg.LinAlgError(f"{name}: the last two dimensions must be square")


EighResult = collections.namedtuple("EighResult", "eigenvalues eigenvectors")
EigResult = collections.namedtuple("EigResult", "eigenvalues eigenvectors")
SVDResult = collections.namedtuple("SVDResult", "U S Vh")
QRResult = collections.namedtuple("QRResult", "Q R")


def _cholesky(a: Any, upper: bool = False) -> Any:
    _square(a, "cholesky")
    if upper:  # reads the upper triangle, as NumPy does
        return swapaxes(bind(_p("cholesky"), swapaxes(a, -1, -2)), -1, -2)
    return bind(_p("cholesky"), a)


def _eigh(a: Any, UPLO: str = "L") -> Any:
    _square(a, "eigh")
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    packed = bind(_p("eigh"), a, lower=UPLO == "L")
    return EighResult(packed[..., 0, :], packed[..., 1:, :])


def _eigvalsh(a: Any, UPLO: str = "L") -> Any:
    return _eigh(a, UPLO).eigenvalues


def _eig(a: Any) -> Any:
    """Real matrices with real, distinct eigenvalues (others raise LinAlgError)."""
    _square(a, "eig")
    packed = bind(_p("eig"), a)
    return EigResult(packed[..., 0, :], packed[..., 1:, :])


def _eigvals(a: Any) -> Any:
    return _eig(a).eigenvalues


def _svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
         hermitian: bool = False) -> Any:
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("svd: the array must be at least two-dimensional")
    m, n = shape(a)[-2:]
    if compute_uv and full_matrices and m != n:
        raise TracingError("svd(full_matrices=True) of a non-square matrix: the extra singular "
                           "vectors have no unique derivative; pass full_matrices=False")
    packed = bind(_p("svd"), a)
    s = packed[..., 0, :]
    if not compute_uv:
        return s
    return SVDResult(packed[..., 1:1 + m, :], s, swapaxes(packed[..., 1 + m:, :], -1, -2))


def _qr(a: Any, mode: str = "reduced") -> Any:
    if mode not in ("reduced", "r"):
        raise TracingError(f"qr(mode={mode!r}) is not supported; use 'reduced' or 'r'")
    if ndim(a) < 2:
        raise _np.linalg.LinAlgError("qr: the array must be at least two-dimensional")
    m = shape(a)[-2]
    packed = bind(_p("qr"), a)
    q, r = packed[..., :m, :], packed[..., m:, :]
    return r if mode == "r" else QRResult(q, r)


def _pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    if rcond is not None or rtol is not None:
        raise TracingError("pinv: rcond/rtol are not supported on traced values; the default "
                           "cutoff is used")
    return bind(_p("pinv"), a)


def _matrix_power(a: Any, n: int) -> Any:
    """a @ a @ ... (n times) by repeated squaring; n < 0 inverts first."""
    _square(a, "matrix_power")
    n = operator.index(n)
    if n < 0:
        a, n = _inv(a), -n
    result = None
    while n:
        if n & 1:
            result = a if result is None else matmul_(result, a)
        n >>= 1
        if n:
            a = matmul_(a, a)
    return result if result is not None else broadcast_to(eye_like(a), shape(a))


linalg = types.SimpleNamespace(
    solve=_solve, inv=_inv, slogdet=_slogdet, det=_det, norm=_norm, cholesky=_cholesky,
    eigh=_eigh, eigvalsh=_eigvalsh, eig=_eig, eigvals=_eigvals, svd=_svd, qr=_qr, pinv=_pinv,
    matrix_power=_matrix_power, LinAlgError=_np.linalg.LinAlgError,
    matrix_transpose=matrix_transpose,
    diagonal=lambda x, offset=0: diagonal(x, offset, axis1=-2, axis2=-1))


def sliding_window_view(x: Any, window_shape: Any, axis: Any = None, *, subok: bool = False,
                        writeable: bool = False) -> Any:
    """NumPy's read-only view of the sliding windows of x (a gather)."""
    if writeable:
        raise TracingError("sliding_window_view(writeable=True): its windows share elements, "
                           "and which write of a shared element wins is ambiguous")
    return _gather(x, lambda i: _np.lib.stride_tricks.sliding_window_view(i, window_shape, axis))


# -- sorting, gathers along an axis, and other common array functions -------------
def _axis_of(a: Any, axis: Any) -> tuple[Any, int]:
    """(a, axis) with axis=None meaning the flattened array, as NumPy does."""
    if axis is None:
        return ravel(a), 0
    return a, _axes(axis, ndim(a))[0]


def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, **kw: Any) -> Any:
    """Indices that sort a (stable): not differentiable; a traced integer array
    for `take_along_axis` (indexing with it is not supported)."""
    a, axis = _axis_of(a, axis)
    return bind(_p("argsort"), a, axis=axis)


def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, **kw: Any) -> Any:
    a, axis = _axis_of(a, axis)
    return _take_along(a, bind(_p("argsort"), a, axis=axis), axis)


def argpartition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
                 order: Any = None) -> Any:
    a, axis = _axis_of(a, axis)
    kth = tuple(int(k) for k in _np.atleast_1d(kth))
    return bind(_p("argpartition"), a, kth=kth, axis=axis)


def partition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
              order: Any = None) -> Any:
    a, axis = _axis_of(a, axis)
    return _take_along(a, argpartition(a, kth, axis), axis)


def _take_along(a: Any, idx: Any, axis: int) -> Any:
    return bind(_p("take_along"), a, idx, axis=axis)


def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    arr, axis = _axis_of(arr, axis)
    if not isinstance(indices, Tracer):  # constant: a fixed gather, compiled natively
        return _gather(arr, lambda i: _np.take_along_axis(i, _np.asarray(indices), axis))
    if ndim(indices) != ndim(arr):
        raise ValueError("take_along_axis: indices and arr must have the same number of "
                         "dimensions")
    target = list(_np.broadcast_shapes(shape(arr), shape(indices)))
    target[axis] = shape(indices)[axis]
    return _take_along(arr, broadcast_to(indices, tuple(target)), axis)


def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
    _no_out(out, "take")
    if not isinstance(indices, Tracer):
        return _gather(a, lambda i: _np.take(i, indices, axis=axis, mode=mode))
    if ndim(indices) > 1:
        raise TracingError("take with traced indices: only a 1-d index array is supported")
    a, axis = _axis_of(a, axis)
    view = [1] * ndim(a)
    view[axis] = shape(indices)[0]
    target = tuple(shape(indices)[0] if i == axis else d for i, d in enumerate(shape(a)))
    return _take_along(a, broadcast_to(reshape(indices, tuple(view)), target), axis)


def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Cumulative product; its derivative divides by a (NaN at an exact 0, as prod's)."""
    _no_out(out, "cumprod")
    a, axis = _axis_of(_cast(a, dtype), axis)
    return bind(_p("cumprod"), a, axis=axis)


def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = _np._NoValue,
         append: Any = _np._NoValue) -> Any:
    if n == 0:
        return a
    axis = _axes(axis, ndim(a))[0]
    parts = []
    for extra in (prepend, a, append):
        if extra is _np._NoValue:
            continue
        if extra is not a and ndim(extra) == 0:
            extra = broadcast_to(extra, tuple(1 if i == axis else d
                                              for i, d in enumerate(shape(a))))
        parts.append(extra)
    a = concatenate(parts, axis=axis) if len(parts) > 1 else a
    lead = (slice(None),) * axis
    for _ in range(n):
        a = a[lead + (slice(1, None),)] - a[lead + (slice(None, -1),)]
    return a


def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
          axis: Any = None) -> Any:
    """Cross product of 3-vectors along an axis."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    if shape(a)[-1] != 3 or shape(b)[-1] != 3:
        raise ValueError("cross: only 3-vectors are supported (NumPy 2 deprecates 2-vectors)")
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return moveaxis(c, -1, axisc)


def kron(a: Any, b: Any) -> Any:
    nd = builtins.max(ndim(a), ndim(b))
    sa = (1,) * (nd - ndim(a)) + tuple(shape(a))
    sb = (1,) * (nd - ndim(b)) + tuple(shape(b))
    a2 = reshape(a, tuple(d for n in sa for d in (n, 1)))
    b2 = reshape(b, tuple(d for n in sb for d in (1, n)))
    return reshape(a2 * b2, tuple(x * y for x, y in zip(sa, sb)))


_PAD_GATHER_MODES = ("edge", "reflect", "symmetric", "wrap")


def pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Any:
    """np.pad: "constant" writes the array into the padded constant, the modes
    that copy elements ("edge", "reflect", "symmetric", "wrap") are a gather."""
    if callable(mode) or mode not in ("constant",) + _PAD_GATHER_MODES:
        raise TracingError(f"pad: mode {mode!r} is not supported on traced values; use one of "
                           f"'constant', {', '.join(repr(m) for m in _PAD_GATHER_MODES)}")
    if mode != "constant":
        return _gather(array, lambda i: _np.pad(i, pad_width, mode, **kwargs))
    values = kwargs.get("constant_values", 0)
    if isinstance(values, Tracer) or _contains_tracer(values):
        raise TracingError("pad: constant_values must be constants")
    positions = _np.pad(_np.arange(1, size(array) + 1).reshape(shape(array)), pad_width)
    base = _np.pad(_np.zeros(shape(array), _float_dtype(array)), pad_width,
                   constant_values=values)
    base.flags.writeable = False
    return reshape(scatter_set(base.reshape(-1), _np.flatnonzero(positions), ravel(array)),
                   positions.shape)


def _not_nan(a: Any) -> Any:
    return equal(a, a)


def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
           keepdims: bool = False) -> Any:
    return sum(where(_not_nan(a), a, 0.0), axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def nanprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False) -> Any:
    return prod(where(_not_nan(a), a, 1.0), axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def nanmean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
            keepdims: bool = False) -> Any:
    count = sum(astype(_not_nan(a), _float_dtype(a)), axis=axis, keepdims=keepdims)
    return nansum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims) / count


def nanmax(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return max(where(_not_nan(a), a, -_np.inf), axis=axis, out=out, keepdims=keepdims)


def nanmin(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return min(where(_not_nan(a), a, _np.inf), axis=axis, out=out, keepdims=keepdims)


def polyval(p: Any, x: Any) -> Any:
    """p[0] * x**(n-1) + ... + p[n-1], by Horner's rule."""
    if ndim(p) != 1:
        raise ValueError("polyval: p must be 1-d")
    y = zeros_like(x) if shape(p)[0] == 0 else p[0] + zeros_like(x)
    for k in range(1, shape(p)[0]):
        y = y * x + p[k]
    return y


def interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None,
           period: Any = None) -> Any:
    """Piecewise-linear interpolation, differentiable in x; xp and fp constants
    (a derivative with respect to them raises NotImplementedError)."""
    if period is not None:
        raise TracingError("interp: period= is not supported on traced values")
    for name, bound in (("left", left), ("right", right)):
        if isinstance(bound, Tracer):
            raise TracingError(f"interp: {name}= must be a constant")
    left = None if left is None else float(left)
    right = None if right is None else float(right)
    xp, fp = (v if isinstance(v, Tracer) else _np.asarray(v, dtype=_np.float64) for v in (xp, fp))
    return bind(_p("interp"), x, xp, fp, left=left, right=right)


# -- convolution --------------------------------------------------------------------
def convolve_nd(in1: Any, in2: Any, out_shape: Sequence[int] | None = None) -> Any:
    """The full N-d convolution of in1 and in2 (same number of dimensions),
    centered-cropped to ``out_shape`` as SciPy's and NumPy's modes are: a
    constant gather of one operand into a Toeplitz matrix times the other."""
    if ndim(in1) != ndim(in2):
        raise ValueError("convolve: in1 and in2 should have the same dimensionality")
    if size(in1) == 0 or size(in2) == 0:
        raise ValueError("convolve: inputs cannot be empty")
    if size(in1) > size(in2):  # the Toeplitz matrix is (output size) x (smaller size)
        in1, in2 = in2, in1
    s1, s2 = _np.array(shape(in1)), _np.array(shape(in2))
    full = tuple(int(d) for d in s1 + s2 - 1)
    target = full if out_shape is None else tuple(int(d) for d in out_shape)
    start = [(f - t) // 2 for f, t in zip(full, target)]
    kept = _np.indices(target).reshape(len(full), -1) + _np.array(start)[:, None]
    lag = kept[:, :, None] - _np.indices(tuple(s1)).reshape(len(full), 1, -1)
    valid = _np.all((lag >= 0) & (lag < s2[:, None, None]), axis=0)
    flat = _np.where(valid, _np.ravel_multi_index(tuple(_np.where(valid, lag, 0)), tuple(s2)),
                     int(s2.prod()))
    padded = concatenate([ravel(in2), _np.zeros(1, _float_dtype(in2))])
    toeplitz = take_flat(padded, flat) if isinstance(padded, Tracer) else _constant(padded[flat])
    return reshape(matmul(toeplitz, ravel(in1)), target)


def convolve(a: Any, v: Any, mode: str = "full") -> Any:
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError("convolve: a and v must be 1-d")
    n, m = shape(a)[0], shape(v)[0]
    lengths = {"full": n + m - 1, "same": builtins.max(n, m), "valid": builtins.abs(n - m) + 1}
    if mode not in lengths:
        raise ValueError(f"convolve: mode must be one of {', '.join(lengths)}")
    return convolve_nd(a, v, (lengths[mode],))


def correlate(a: Any, v: Any, mode: str = "valid") -> Any:
    if shape(v)[0] > shape(a)[0]:  # NumPy swaps the inputs and reverses the result
        return _flip_any(correlate(v, a, mode))
    return convolve(a, _flip_any(v), mode)


def _flip_any(x: Any) -> Any:
    return flip(x) if isinstance(x, Tracer) else _np.flip(_np.asarray(x))


# -- constructors: constants, traced when a trace is active ------------------------
def _constant(value: _np.ndarray) -> Any:
    builder = current_builder()
    if builder is None:
        return value
    return new_tracer(builder, builder.const(value), value)


def zeros(shape_: Any, dtype: Any = float) -> Any:
    return _constant(_np.zeros(shape_, dtype))


def ones(shape_: Any, dtype: Any = float) -> Any:
    return _constant(_np.ones(shape_, dtype))


def full(shape_: Any, fill_value: Any, dtype: Any = None) -> Any:
    if isinstance(fill_value, Tracer):
        return broadcast_to(fill_value, shape_)
    return _constant(_np.full(shape_, fill_value, dtype))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = float) -> Any:
    return _np.eye(N, M, k, dtype=dtype)


def array(obj: Any, dtype: Any = None, copy: bool = True, **kw: Any) -> Any:
    """An array; a (nested) list holding traced values becomes a traced stack."""
    if isinstance(obj, Tracer):
        return _fresh(obj) if dtype is None else astype(obj, dtype)
    if isinstance(obj, (list, tuple)) and _contains_tracer(obj):
        out = stack([array(o) for o in obj])
        return out if dtype is None else astype(out, dtype)
    return _constant(_np.array(obj, dtype=dtype))


def asarray(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return array(a, dtype=dtype)


def _contains_tracer(obj: Any) -> bool:
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (list, tuple)):
        return builtins.any(_contains_tracer(o) for o in obj)
    return False


def copy(a: Any, **kw: Any) -> Any:
    return _fresh(a) if isinstance(a, Tracer) else _np.array(a, copy=True)


def _fresh(a: Any) -> Any:
    """A new traced value for a's slot.  Item assignment rebinds the traced
    value it is applied to, so a copy must not be the same object: assigning
    into ``b = a.copy()`` would change ``a`` too."""
    return a.builder.tracer(a.slot) if isinstance(a, Tracer) else a


def shape_of(a: Any) -> tuple[int, ...]:
    return shape(a)


def zeros_like(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return _constant(_np.zeros(shape(a), dtype or result_dtype(a)))


def ones_like(a: Any, dtype: Any = None, **kw: Any) -> Any:
    return _constant(_np.ones(shape(a), dtype or result_dtype(a)))


def any(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _reduce("max", astype(a != 0, _np.float64), axis, keepdims) > 0.0


def all(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _reduce("min", astype(a != 0, _np.float64), axis, keepdims) > 0.0


# -- NumPy dispatch ---------------------------------------------------------------
_UFUNCS = {
    "negative": negative, "absolute": absolute, "fabs": absolute, "sign": sign, "exp": exp,
    "exp2": exp2, "log": log, "log2": log2, "log10": log10, "log1p": log1p, "expm1": expm1,
    "sqrt": sqrt, "cbrt": cbrt, "square": square, "reciprocal": reciprocal, "sin": sin,
    "cos": cos, "tan": tan, "arcsin": arcsin, "arccos": arccos, "arctan": arctan, "sinh": sinh,
    "cosh": cosh, "tanh": tanh, "arcsinh": arcsinh, "arccosh": arccosh, "arctanh": arctanh,
    "floor": floor, "ceil": ceil, "rint": rint, "logical_not": logical_not, "add": add,
    "subtract": subtract, "multiply": multiply, "divide": divide, "true_divide": divide,
    "power": power, "float_power": power, "maximum": maximum, "minimum": minimum,
    "fmax": maximum, "fmin": minimum, "arctan2": arctan2, "hypot": hypot,
    "logaddexp": logaddexp, "less": less, "less_equal": less_equal, "greater": greater,
    "greater_equal": greater_equal, "equal": equal, "not_equal": not_equal,
    "logical_and": logical_and, "logical_or": logical_or, "matmul": matmul,
    "positive": positive, "isfinite": isfinite, "isnan": isnan, "conjugate": conjugate,
}
_REDUCERS = {"add": sum, "multiply": prod, "maximum": max, "minimum": min}


def _dispatch_ufunc(ufunc: _np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    name = ufunc.__name__
    if kwargs.get("out") is not None:
        return _ufunc_into(ufunc, method, inputs, kwargs)
    if method == "__call__" and name in _UFUNCS:
        extra = set(kwargs) - {"out", "dtype", "casting"}
        if not extra:
            out = _UFUNCS[name](*inputs)
            if out is inputs[0] or (len(inputs) > 1 and out is inputs[1]):
                out = _fresh(out)  # a ufunc's result is new memory
            return astype(out, kwargs["dtype"]) if kwargs.get("dtype") is not None else out
    if method == "reduce" and name in _REDUCERS:
        return _REDUCERS[name](inputs[0], axis=kwargs.get("axis", 0),
                               keepdims=kwargs.get("keepdims", False))
    if method == "accumulate" and name == "add":
        return cumsum(inputs[0], axis=kwargs.get("axis", 0))
    if method == "__call__" and not set(kwargs) - {"out", "dtype", "casting"}:
        foreign = _foreign_ufunc(ufunc)
        if foreign is not None:  # scipy.special's ufuncs
            out = foreign(*inputs)
            return astype(out, kwargs["dtype"]) if kwargs.get("dtype") is not None else out
    raise TracingError(f"numpy.{name}{'' if method == '__call__' else '.' + method} is not "
                       "supported on traced values; write it with supported functions or "
                       "define it with fastad.primitive and fastad.defvjp")


def _ufunc_into(ufunc: _np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``ufunc(..., out=a)``: a write into the traced array a, as NumPy's."""
    name = ufunc.__name__
    kwargs = dict(kwargs)
    out, mask = kwargs.pop("out"), kwargs.pop("where", True)
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != 1 or ufunc.nout != 1:
        _no_out(out, f"numpy.{name}{'' if method == '__call__' else '.' + method}")
    target = _target(outs[0], f"numpy.{name}(..., out=...)")
    _check_writeable(target, "output array is read-only")
    result = _dispatch_ufunc(ufunc, method, inputs, kwargs)
    _write_all(target, result, mask, f"ufunc '{name}' output")
    return target


def _foreign_ufunc(ufunc: _np.ufunc) -> Any:
    """The fastad function for a ufunc NumPy does not define, or None."""
    from .scipy.special import UFUNCS as special
    return special.get(ufunc)


_PUBLIC_RENAMES = {"shape": shape_of, "round": round, "around": round}


def _dispatch_function(func: Any, args: tuple, kwargs: dict) -> Any:
    name = func.__name__
    module = getattr(func, "__module__", "") or ""
    if module.startswith("numpy.linalg"):
        impl = getattr(linalg, name, None)
    elif module.startswith("numpy.fft"):
        impl = getattr(fft, name, None)
    else:
        impl = _PUBLIC_RENAMES.get(name) or globals().get(name)
        if impl is not None and not callable(impl):
            impl = None
    if impl is None or name.startswith("_"):
        raise TracingError(f"{module or 'numpy'}.{name} is not supported on traced values; "
                           "write it with supported functions or define it with "
                           "fastad.primitive and fastad.defvjp")
    if isinstance(kwargs.get("out"), Tracer):  # np.sum(x, axis=0, out=v), np.clip(.., out=x)
        kwargs = dict(kwargs)
        target = _target(kwargs.pop("out"), f"{name}(..., out=...)")
        _check_writeable(target, "output array is read-only")
        _write_all(target, impl(*args, **kwargs), True, f"{name}'s result")
        return target
    if name in _VIEWING and not module.startswith("numpy.fft"):
        return _viewing(func, impl, args, kwargs)
    out = impl(*args, **kwargs)
    if isinstance(out, Tracer) and (builtins.any(out is a for a in args)
                                    or builtins.any(out is a for a in kwargs.values())):
        return _fresh(out)  # NumPy's result is a new array, not its argument
    return out


# NumPy's functions whose result may be a view of their (first) argument; the
# shadow says when it is.  Those returning several arrays return views of one.
_VIEWING = {"reshape", "ravel", "transpose", "permute_dims", "matrix_transpose", "swapaxes",
            "moveaxis", "rollaxis", "expand_dims", "squeeze", "broadcast_to", "broadcast_arrays",
            "atleast_1d", "atleast_2d", "atleast_3d", "flip", "fliplr", "flipud", "rot90",
            "diagonal", "diag", "real", "imag", "split", "array_split", "hsplit", "vsplit",
            "dsplit", "unstack", "einsum", "diff", "sliding_window_view"}
_SEVERAL = {"split", "array_split", "hsplit", "vsplit", "dsplit", "unstack"}


def _viewing(func: Any, impl: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` for a NumPy function that may return views."""
    name = func.__name__
    if name == "broadcast_arrays":
        outs = impl(*args, **kwargs)
        shapes = [tuple(shape(a)) for a in args]

        def part(i: int) -> Any:
            return lambda s: func(*(s if j == i else _np.empty(shp)
                                    for j, shp in enumerate(shapes)), **kwargs)[i]
        return type(outs)(_link(a, o, part(i)) for i, (a, o) in enumerate(zip(args, outs)))
    if name == "einsum":  # one operand: NumPy's result may be a view of it
        out = impl(*args, **kwargs)
        if len(args) == 2 and isinstance(args[1], Tracer):
            return _link(args[1], out, lambda s: func(args[0], s, **kwargs))
        return _fresh(out) if builtins.any(out is a for a in args) else out
    if name.startswith("atleast_") and len(args) != 1:
        return tuple(_viewing(func, impl, (a,), kwargs) if isinstance(a, Tracer) else func(a)
                     for a in args)
    if not args:
        return impl(**kwargs)
    a, rest = args[0], args[1:]
    out = impl(*args, **kwargs)
    if name in _SEVERAL:
        def piece(i: int) -> Any:
            return lambda s: func(s, *rest, **kwargs)[i]
        return type(out)(_link(a, o, piece(i)) for i, o in enumerate(out))
    if name in ("real", "imag") and iscomplexobj(a):
        return _link(a, out, _np.real if name == "real" else _np.imag, name)
    return _link(a, out, lambda s: func(s, *rest, **kwargs))


# -- what Tracer's operators, methods and properties apply (tracer.FRONT_END) --------
def _reshape_method(self: Tracer, *shape_: Any, order: str = "C", copy: Any = None) -> Any:
    if len(shape_) == 1 and not isinstance(shape_[0], (int, _np.integer)):
        shape_ = tuple(shape_[0])
    return reshape(self, shape_, order=order)


def _transpose_method(self: Tracer, *axes: Any) -> Any:
    if len(axes) == 1 and not isinstance(axes[0], (int, _np.integer)):
        axes = tuple(axes[0]) if axes[0] is not None else ()
    return transpose(self, axes or None)


def _view_method(name: str, impl: Any) -> Any:
    """The array method ``name``, whose NumPy result may be a view of the array."""
    def method(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        return _link(self, impl(self, *args, **kwargs),
                     lambda s: getattr(s, name)(*args, **kwargs))
    method.__name__ = name
    return method


def _flatten_method(self: Tracer, order: str = "C") -> Any:
    out = ravel(self, order)
    return _fresh(out) if out is self else out  # always a copy, as NumPy's


def _view(self: Tracer, dtype: Any = None, type: Any = None) -> Any:  # noqa: A002
    if type is not None or (dtype is not None and _np.dtype(dtype) != result_dtype(self)):
        raise TracingError("view() with another dtype or type reinterprets memory, which "
                           "cannot be traced; use astype")
    return _link(self, self, _np.ndarray.view)


def _sort_method(self: Tracer, axis: int = -1, kind: Any = None, order: Any = None) -> None:
    target = _target(self, "sort()")
    _check_writeable(target, "sort array is read-only")
    _store(target, sort(target, axis))


def _partition_method(self: Tracer, kth: Any, axis: int = -1, kind: str = "introselect",
                      order: Any = None) -> None:
    target = _target(self, "partition()")
    _check_writeable(target, "partition array is read-only")
    _store(target, partition(target, kth, axis))


def _fill_method(self: Tracer, value: Any) -> None:
    target = _target(self, "fill()")
    _check_writeable(target)
    if isinstance(value, Tracer) and ndim(value):
        raise ValueError("fill: the value must be a scalar")
    _write_all(target, value)


def _in_place(op):
    """``a op= b`` on a traced array changes a's value where every name for a
    sees it, as NumPy's in-place operators do (a 0-d traced value is immutable,
    like a NumPy scalar)."""
    def method(self: Tracer, other: Any) -> Tracer:
        _check_writeable(self, "output array is read-only")
        new = op(self, other)
        if shape(new) != shape(self):
            raise ValueError(f"non-broadcastable output operand with shape {shape(self)} "
                             f"doesn't match the broadcast shape {shape(new)}")
        new = astype(new, result_dtype(self))  # NumPy casts back into a's dtype
        _store(self, new)
        return self
    return method


def _in_place_0d(op):
    """``v op= b`` on a 0-d traced value: a 0-d view of an array (``y[..., i, j]``,
    ``squeeze`` of a one-element slice) writes into it, as NumPy's 0-d views do;
    any other 0-d value is immutable like a NumPy scalar, so Python rebinds the
    name to ``v op b`` (NotImplemented)."""
    in_place = _in_place(op)

    def method(self: Tracer, other: Any) -> Any:
        link = getattr(self, "view_of", None)
        if link is None or link.parent is None:
            return NotImplemented
        return in_place(self, other)
    return method


def _real_property(self: Tracer) -> Any:
    return _link(self, real(self), _np.real, "real" if iscomplexobj(self) else None)


def _imag_property(self: Tracer) -> Any:
    if iscomplexobj(self):
        return _link(self, imag(self), _np.imag, "imag")
    return _link(self, imag(self), lambda s: s.imag)  # read-only zeros, as NumPy's


def _set_real(self: Tracer, value: Any) -> None:
    """``x.real = v`` writes into x (its real parts, if x is complex)."""
    target = _target(self, "setting .real")
    setitem(_real_property(target) if iscomplexobj(target) else target, Ellipsis, value)


def _set_imag(self: Tracer, value: Any) -> None:
    target = _target(self, "setting .imag")
    if not iscomplexobj(target):
        raise TypeError("array does not have imaginary part to set")
    setitem(_imag_property(target), Ellipsis, value)


def _conj_method(self: Tracer) -> Any:
    """x.conj(): a copy for complex x, but x itself (a view) for real x, as NumPy's."""
    if iscomplexobj(self):
        return conjugate(self)
    return _link(self, self, _np.ndarray.conj)


_TRACER_METHODS = {
    "ufunc": _dispatch_ufunc, "function": _dispatch_function,
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "power": power,
    "matmul": matmul, "negative": negative, "positive": positive, "absolute": absolute,
    "less": less, "less_equal": less_equal, "greater": greater, "greater_equal": greater_equal,
    "equal": equal, "not_equal": not_equal, "logical_and": logical_and,
    "logical_or": logical_or, "logical_not": logical_not,
    "sum": sum, "mean": mean, "prod": prod, "max": max, "min": min, "var": var, "std": std,
    "cumsum": cumsum, "dot": dot, "clip": clip, "astype": astype, "copy": copy, "any": any,
    "all": all, "trace": trace, "put": put,
    "ravel_method": _view_method("ravel", ravel),
    "squeeze_method": _view_method("squeeze", squeeze),
    "swapaxes_method": _view_method("swapaxes", swapaxes),
    "diagonal_method": _view_method("diagonal", diagonal),
    "reshape_method": _view_method("reshape", _reshape_method),
    "transpose_method": _view_method("transpose", _transpose_method),
    "view_method": _view, "conj_method": _conj_method, "flatten_method": _flatten_method,
    "sort_method": _sort_method, "partition_method": _partition_method,
    "fill_method": _fill_method,
    "T": lambda self: _link(self, transpose(self), lambda s: s.T),
    "mT": lambda self: _link(self, matrix_transpose(self), lambda s: s.mT),
    "base": _base_property, "real_property": _real_property, "set_real": _set_real,
    "imag_property": _imag_property, "set_imag": _set_imag,
    "getitem": getitem, "setitem": setitem,
}
for _name, _op in {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
                   "power": power, "matmul": matmul}.items():
    _TRACER_METHODS[f"in_place_{_name}"] = _in_place(_op)
    if _name != "matmul":
        _TRACER_METHODS[f"in_place_{_name}_0d"] = _in_place_0d(_op)
_FRONT_END.update(_TRACER_METHODS)

from . import fft  # noqa: E402  (fastad.numpy.fft; written with this module's functions)
