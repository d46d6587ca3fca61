"""Building arrays: ranges and grids whose endpoints may be traced
(``linspace(a, b)`` is differentiable in a and b), joins and splits NumPy
writes in Python (``append``, ``insert``, ``delete``, ``block``,
``column_stack``, ``r_``, ``c_``, ...), and selections (``select``,
``choose``, ``compress``, ``piecewise``).  Without a traced argument each is
NumPy's own function."""
from __future__ import annotations

import builtins
import inspect
from typing import Any

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index

from ..core.errors import TracingError
from ..core.narrowing import standin
from ..core.tracer import Tracer
from ._base import _constant, _float_dtype, ndim, result_dtype, shape
from ._composites import _as, _numpy_unless_traced, _traced
from ._dtypes import resolution_kind, with_numpy_dtype
from ._creation import array, eye, full, zeros, zeros_like
from ._elementwise import astype, ceil, exp, log, power, where
from ._reductions import _concrete
from ._shape import (_gather, atleast_1d, atleast_2d, atleast_3d, broadcast_to, concatenate,
                     diag, expand_dims, moveaxis, ravel, reshape, stack, take_flat)

__all__ = ["linspace", "logspace", "geomspace", "arange", "meshgrid", "full_like", "empty",
           "empty_like", "identity", "asanyarray", "ascontiguousarray", "asfortranarray",
           "asarray_chkfinite", "require", "append", "insert", "delete", "resize", "block",
           "column_stack", "row_stack", "dstack", "concat", "select", "choose", "compress",
           "extract", "piecewise", "diagflat", "trim_zeros", "apply_along_axis",
           "apply_over_axes", "r_", "c_", "make_diagonal", "concatenate_args",
           "array_from_args"]


@_numpy_unless_traced("linspace")
def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, retstep: bool = False,
             dtype: Any = None, axis: int = 0, *, device: Any = None) -> Any:
    """start + (stop - start) * k / div, differentiable in start and stop."""
    num = int(num)
    div = (num - 1) if endpoint else num
    start, stop = _as(start) * 1.0, _as(stop) * 1.0
    delta = stop - start
    frac = _np.arange(num, dtype=_np.float64) / div if div > 0 else _np.zeros(num)
    frac = frac.reshape((-1,) + (1,) * builtins.max(ndim(start), ndim(stop)))
    out = start + frac * delta
    if endpoint and num > 1:
        out = concatenate([out[:-1], expand_dims(stop + 0.0 * start, 0)], axis=0)
    if axis != 0:
        out = moveaxis(out, 0, axis)
    if retstep:
        return out, (delta / div if div > 0 else delta * _np.nan)
    return out


@_numpy_unless_traced("logspace")
def logspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, base: Any = 10.0,
             dtype: Any = None, axis: int = 0) -> Any:
    return power(base, linspace(start, stop, num, endpoint, axis=axis))


@_numpy_unless_traced("geomspace")
def geomspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, dtype: Any = None,
              axis: int = 0) -> Any:
    """Positive endpoints (traced): exp of a linspace of their logarithms, the
    endpoints exact."""
    out = exp(linspace(log(start), log(stop), num, endpoint, axis=0))
    ends = [expand_dims(_as(start) * 1.0, 0)]
    middle = out[1:-1] if endpoint and num > 1 else out[1:]
    if endpoint and num > 1:
        out = concatenate(ends + [middle, expand_dims(_as(stop) * 1.0, 0)], axis=0)
    elif num > 0:
        out = concatenate(ends + [middle], axis=0)
    return moveaxis(out, 0, axis) if axis else out


def arange(*args: Any, dtype: Any = None, **kw: Any) -> Any:
    """NumPy's arange; with traced start/step, start + k * step, the number of
    elements a guard on their values under compilation."""
    if not _traced(*args, *kw.values()):
        return _np.arange(*args, dtype=dtype, **kw)
    unknown = set(kw) - {"start", "stop", "step", "device", "like"}
    if unknown:
        raise TypeError(f"arange() got an unexpected keyword argument '{sorted(unknown)[0]}'")
    start, stop, step = 0.0, None, 1.0
    if "start" in kw or "stop" in kw or "step" in kw:
        start, stop, step = kw.get("start", 0.0), kw.get("stop"), kw.get("step", 1.0)
    if len(args) == 1:
        stop = args[0]
    elif len(args) >= 2:
        start, stop = args[0], args[1]
        if len(args) == 3:
            step = args[2]
    n = int(builtins.max(_concrete(ceil((stop - start) / step)), 0))
    return start + _np.arange(n, dtype=_np.float64) * step


arange.__signature__ = inspect.signature(_np.arange)  # what the arguments are taken as


def meshgrid(*xi: Any, copy: bool = True, sparse: bool = False, indexing: str = "xy") -> Any:
    if not _traced(*xi):
        return _np.meshgrid(*xi, copy=copy, sparse=sparse, indexing=indexing)
    xs = [ravel(_as(x)) for x in xi]
    nd = len(xs)
    outs = []
    for i, x in enumerate(xs):
        view = [1] * nd
        view[i] = shape(x)[0]
        if indexing == "xy" and nd > 1:
            view[0], view[1] = view[1], view[0]
        outs.append(reshape(x, tuple(view)))
    if not sparse:
        full_shape = _np.broadcast_shapes(*(shape(o) for o in outs))
        outs = [broadcast_to(o, full_shape) * 1.0 for o in outs]
    return tuple(outs)


def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True,
              shape: Any = None, *, device: Any = None) -> Any:
    if not _traced(a, fill_value):
        return _np.full_like(a, fill_value, dtype, order, subok, shape, device=device)
    shp = _shape_of(a) if shape is None else shape
    if isinstance(fill_value, Tracer):
        filled = broadcast_to(fill_value, shp) * 1.0
        if dtype is not None:
            return filled.astype(dtype)
        # a's dtype, as NumPy's (a float one: integers would lose the derivative)
        like = result_dtype(a)
        return filled.astype(like) if like.kind in "fc" and like != result_dtype(filled) \
            else filled
    return full(shp, fill_value, dtype or result_dtype(a))


def _shape_of(a: Any) -> tuple[int, ...]:
    return tuple(a.shape) if isinstance(a, Tracer) else _np.shape(a)


def empty(shape: Any, dtype: Any = float, order: str = "C", *, device: Any = None,
          like: Any = None) -> Any:
    """Zeros (what an empty array holds is unspecified): traced when a trace
    is active, so that writes into it are recorded."""
    return zeros(shape, dtype, order, device=device, like=like)


def empty_like(prototype: Any, dtype: Any = None, order: str = "K", subok: bool = True,
               shape: Any = None, *, device: Any = None) -> Any:
    if not _traced(prototype):
        return _np.empty_like(prototype, dtype, order, subok, shape, device=device)
    return zeros(_shape_of(prototype) if shape is None else shape,
                 dtype or result_dtype(prototype))


def identity(n: int, dtype: Any = None, *, like: Any = None) -> Any:
    return eye(n, dtype=float if dtype is None else dtype)


def _as_array(name: str):
    plain = getattr(_np, name)
    signature = inspect.signature(plain)

    def call(a: Any, *args: Any, **kwargs: Any) -> Any:
        if not _traced(a):
            return plain(a, *args, **kwargs)
        dtype = signature.bind(a, *args, **kwargs).arguments.get("dtype")  # NumPy's names
        out = array(a, dtype=dtype)
        if name == "asarray_chkfinite" and not _np.all(_np.isfinite(_concrete(out))):
            raise ValueError("array must not contain infs or NaNs")
        return out
    call.__name__ = call.__qualname__ = name
    call.__signature__ = signature
    return call


asanyarray, ascontiguousarray, asfortranarray, asarray_chkfinite, require = (
    _as_array(n) for n in ("asanyarray", "ascontiguousarray", "asfortranarray",
                           "asarray_chkfinite", "require"))


@_numpy_unless_traced("append")
def append(arr: Any, values: Any, axis: Any = None) -> Any:
    arr, values = _as(arr), _as(values)
    if axis is None:
        return concatenate([ravel(arr), ravel(values)])
    return concatenate([arr, values], axis=axis)


def _pieces(*parts: Any) -> Any:
    """The parts flattened into one traced vector (plain ones as constants)."""
    return concatenate([ravel(p if isinstance(p, Tracer) else _constant(
        _np.asarray(p, dtype=_np.result_type(p, _np.float64)))) for p in parts])


@_numpy_unless_traced("insert")
def insert(arr: Any, obj: Any, values: Any, axis: Any = None) -> Any:
    """A gather from arr and values, at the positions NumPy's insert gives."""
    if isinstance(obj, Tracer):
        raise TracingError("insert: the indices must be constants")
    arr, values = _as(arr), _as(values)
    if axis is None:
        arr, axis = ravel(arr), 0
    n = int(_np.prod(shape(arr)))
    from_arr = _np.insert(_np.arange(1, n + 1).reshape(shape(arr)), obj, 0, axis)
    vsize = int(_np.prod(shape(values)))
    from_values = _np.insert(_np.zeros(shape(arr), _np.int64), obj,
                             _np.arange(1, vsize + 1).reshape(shape(values)), axis)
    idx = _np.where(from_arr > 0, from_arr - 1, n + from_values - 1)
    return reshape(take_flat(_pieces(arr, values), idx.reshape(-1)), idx.shape)


@_numpy_unless_traced("delete")
def delete(arr: Any, obj: Any, axis: Any = None) -> Any:
    if isinstance(obj, Tracer):
        raise TracingError("delete: the indices must be constants")
    return _gather(_as(arr), lambda i: _np.delete(i, obj, axis))


@_numpy_unless_traced("resize")
def resize(a: Any, new_shape: Any) -> Any:
    return _gather(_as(a), lambda i: _np.resize(i, new_shape))


def _depth(x: Any) -> int:
    return 1 + _depth(x[0]) if isinstance(x, list) and x else (1 if isinstance(x, list) else 0)


@_numpy_unless_traced("block")
def block(arrays: Any) -> Any:
    depth = _depth(arrays)

    def leaves(x: Any) -> list[Any]:
        return [e for item in x for e in leaves(item)] if isinstance(x, list) else [x]
    nd = builtins.max([depth] + [ndim(a) for a in leaves(arrays)])

    def build(x: Any, level: int) -> Any:
        if not isinstance(x, list):
            x = _as(x)
            return reshape(x, (1,) * (nd - ndim(x)) + tuple(shape(x)))
        return concatenate([build(e, level + 1) for e in x], axis=-(depth - level))
    return build(arrays, 0)


@_numpy_unless_traced("column_stack")
def column_stack(tup: Any) -> Any:
    cols = [_as(a) for a in tup]
    return concatenate([reshape(c, (-1, 1)) if ndim(c) < 2 else c for c in cols], axis=1)


@_numpy_unless_traced("vstack")
def row_stack(tup: Any, *, dtype: Any = None, casting: str = "same_kind") -> Any:
    return concatenate([atleast_2d(_as(a)) for a in tup], axis=0, dtype=dtype, casting=casting)


row_stack.__name__ = row_stack.__qualname__ = "row_stack"


@_numpy_unless_traced("dstack")
def dstack(tup: Any) -> Any:
    return concatenate([atleast_3d(_as(a)) for a in tup], axis=2)


@_numpy_unless_traced("concat")
def concat(arrays: Any, /, axis: Any = 0, out: Any = None, *, dtype: Any = None,
           casting: str = "same_kind") -> Any:
    return concatenate([_as(a) for a in arrays], axis, out, dtype=dtype, casting=casting)


@_numpy_unless_traced("select")
def select(condlist: Any, choicelist: Any, default: Any = 0) -> Any:
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    # NumPy's result type, a Python scalar default taking the choices' (weak)
    dtype = _np.result_type(*[standin(resolution_kind(c))
                              for c in (*choicelist, default)])
    if dtype == _np.float16:  # (not cast: the front end's float16 would round)
        dtype = None
    out = _as(default) if dtype is None else astype(_as(default), dtype)
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        out = where(_as(cond), _as(choice), out)
    return out if dtype is None else astype(out, dtype)


@_numpy_unless_traced("choose")
def choose(a: Any, choices: Any, out: Any = None, mode: str = "raise") -> Any:
    a = _np.asarray(_concrete(a))
    shp = _np.broadcast_shapes(a.shape, *[shape(c) for c in choices])
    stacked = stack([broadcast_to(_as(c) * 1.0, shp) for c in choices])
    index = _np.broadcast_to(a, shp)
    return _gather(stacked, lambda i: _np.choose(index, list(i), mode=mode))


@_numpy_unless_traced("compress")
def compress(condition: Any, a: Any, axis: Any = None, out: Any = None) -> Any:
    """The elements where condition holds (a traced condition's pattern is a
    guard under compilation)."""
    cond = _np.asarray(_concrete(condition), dtype=bool)
    return _gather(_as(a), lambda i: _np.compress(cond, i, axis))


@_numpy_unless_traced("extract")
def extract(condition: Any, arr: Any) -> Any:
    cond = _np.asarray(_concrete(condition), dtype=bool)
    return _gather(_as(arr), lambda i: _np.extract(cond, i))


@_numpy_unless_traced("piecewise")
def piecewise(x: Any, condlist: Any, funclist: Any, *args: Any, **kw: Any) -> Any:
    """Each function evaluated on all of x and selected where its condition
    holds (NumPy evaluates it on those elements only)."""
    x = _as(x)
    if isinstance(condlist, (Tracer, _np.ndarray)) and ndim(condlist) == ndim(x):
        condlist = [condlist]
    conds = list(condlist)
    if len(funclist) == len(conds) + 1:  # the otherwise case
        rest = conds[0] == conds[0] if not conds else None
        other = _np.ones(shape(x), bool)
        for c in conds:
            other = other & ~_np.asarray(_concrete(c), dtype=bool)
        conds.append(other if rest is None else rest)
    out = zeros_like(x) * 1.0 if not isinstance(x, Tracer) else x * 0.0
    for cond, fn in zip(conds, funclist):
        value = fn(x, *args, **kw) if callable(fn) else fn
        out = where(_as(cond), value, out)
    return out


@_numpy_unless_traced("diagflat")
def diagflat(v: Any, k: int = 0) -> Any:
    return diag(ravel(_as(v)), k)


@_numpy_unless_traced("trim_zeros")
def trim_zeros(filt: Any, trim: str = "fb", axis: Any = None) -> Any:
    filt = _as(filt)
    nz = _np.flatnonzero(_concrete(filt != 0))
    if nz.size == 0:
        return filt[:0]
    lo = nz[0] if "f" in trim.lower() else 0
    hi = nz[-1] + 1 if "b" in trim.lower() else shape(filt)[0]
    return filt[lo:hi]


def apply_along_axis(func1d: Any, axis: int, arr: Any, *args: Any, **kwargs: Any) -> Any:
    if not _traced(arr, *args, *kwargs.values()) and not isinstance(arr, Tracer):
        return _np.apply_along_axis(func1d, axis, arr, *args, **kwargs)
    arr = _as(arr)
    ax = _axis_index(axis, ndim(arr))
    moved = moveaxis(arr, ax, -1)
    lead = shape(moved)[:-1]
    rows = reshape(moved, (-1, shape(moved)[-1]))
    outs = [_as(func1d(rows[i], *args, **kwargs)) for i in range(shape(rows)[0])]
    out = stack(outs)
    out = reshape(out, tuple(lead) + tuple(shape(outs[0])))
    if ndim(outs[0]) == 0:
        return out
    return moveaxis(out, list(range(len(lead), ndim(out))),
                    list(range(ax, ax + ndim(outs[0])))) if ax != len(lead) else out


def apply_over_axes(func: Any, a: Any, axes: Any) -> Any:
    if not _traced(a):
        return _np.apply_over_axes(func, a, axes)
    val = _as(a)
    for ax in _np.atleast_1d(axes):
        ax = _axis_index(int(ax), ndim(val))
        res = func(val, ax)
        val = res if ndim(res) == ndim(val) else expand_dims(res, ax)
    return val


# autograd.numpy's helpers beyond NumPy's names
def make_diagonal(D: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """An array of D's shape plus one axis, with D on the diagonal of its last
    two axes (autograd's; offset=0, axis1=-1, axis2=-2 only, as there)."""
    if not (offset == 0 and axis1 == -1 and axis2 == -2):
        raise NotImplementedError("make_diagonal only supports offset=0, axis1=-1, axis2=-2")
    D = _as(D)
    n = shape(D)[-1]
    return expand_dims(D, -1) * _np.eye(n, dtype=_float_dtype(D))


def concatenate_args(axis: int, *args: Any) -> Any:
    """concatenate(args, axis) (autograd's)."""
    return concatenate([_as(a) for a in args], axis=axis)


def array_from_args(array_args: Any, array_kwargs: Any, *args: Any) -> Any:
    """array(args, *array_args, **array_kwargs) (autograd's)."""
    return array(list(args), *array_args, **array_kwargs)


class _Concatenator:
    """``r_[...]`` and ``c_[...]``: NumPy's when nothing is traced; otherwise
    slices become ranges and the pieces are joined along the first (``r_``) or
    last axis with 1-d pieces as columns (``c_``)."""

    def __init__(self, plain: Any, columns: bool) -> None:
        self.plain, self.columns = plain, columns

    def __getitem__(self, key: Any) -> Any:
        items = key if isinstance(key, tuple) else (key,)
        if not _traced(*items):
            return self.plain[key]
        if builtins.any(isinstance(k, str) for k in items):
            raise TracingError("r_/c_ with a string directive is not supported on traced "
                               "values; use concatenate")
        pieces = [_as(self.plain[k]) if isinstance(k, slice) else _as(k) for k in items]
        if self.columns:
            pieces = [reshape(p, (-1, 1)) if ndim(p) <= 1 else p for p in pieces]
            out = concatenate(pieces, axis=-1)
        else:
            out = concatenate([atleast_1d(p) for p in pieces], axis=0)
        return with_numpy_dtype(out, lambda *probes: self.plain[probes], items)

    def __len__(self) -> int:
        return 0


r_ = _Concatenator(_np.r_, columns=False)
c_ = _Concatenator(_np.c_, columns=True)
