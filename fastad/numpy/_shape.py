"""Shape and structural functions: reshapes, transposes, broadcasts, joins,
and every fixed rearrangement of elements (flips, rolls, splits, diagonals),
each a gather or scatter by a constant index (`take_flat`, `scatter_set`,
`scatter_add`: the three indexing primitives everything else reduces to)."""
from __future__ import annotations

import builtins
import functools
import math
from typing import Any, Sequence

import numpy as _np
from numpy.lib.array_utils import normalize_axis_index as _axis_index
from numpy.lib.array_utils import normalize_axis_tuple as _axis_tuple

from ..core.errors import TracingError
from ..core.arrays import is_made_here, made_here
from ..core.tracer import Tracer, bind, current_builder
from ._base import (_axes, _contains_tracer, _float_dtype, _p, _zeros_const, ndim, result_dtype,
                    shape, shape_of, size)
from ._elementwise import where

__all__ = ["reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze",
           "broadcast_to", "broadcast_arrays", "atleast_1d", "atleast_2d", "atleast_3d",
           "rollaxis", "matrix_transpose", "permute_dims", "concatenate", "stack", "hstack",
           "vstack", "flip", "fliplr", "flipud", "rot90", "split", "array_split", "hsplit",
           "vsplit", "dsplit", "unstack", "roll", "tile", "repeat", "diag", "diagonal", "triu",
           "tril", "sliding_window_view", "take_flat", "scatter_set", "scatter_add"]


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


def reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None,
            copy: Any = None) -> Any:
    """NumPy's signature (``newshape``: NumPy 1's name for ``shape``; ``copy``:
    NumPy's; a view or a copy is decided where views are tracked)."""
    if type(a) is _np.ndarray and type(shape) is tuple and order == "C":
        return a.reshape(shape)  # a rule's plain value: what `bind` would compute
    target = _shape_arg(shape if shape is not None else newshape, size(a))
    if order == "F":  # Fortran order: the C-order reshape of the reversed axes, reversed
        return transpose(reshape(transpose(a), target[::-1]))
    if order not in ("C", "A"):
        raise ValueError(f"reshape: order must be one of 'C', 'F' or 'A', not {order!r}")
    # 'A' (and ravel's 'K') follow the memory layout, which for a traced
    # value is C order (a compiled function lays its arguments out in C order)
    if tuple(shape_of(a)) == target:
        return a
    return bind(_p("reshape"), a, shape=target)


def ravel(a: Any, order: str = "C") -> Any:
    return reshape(a, (-1,), order="C" if order == "K" else order)


def transpose(a: Any, axes: Any = None) -> Any:
    if type(a) is _np.ndarray and (axes is None or type(axes) is tuple):
        return a.transpose(axes)  # a rule's plain value: what `bind` would compute
    nd = ndim(a)
    if isinstance(axes, (int, _np.integer)):
        axes = (axes,)
    if axes is not None and len(axes) != nd:
        raise ValueError("axes don't match array")
    perm = tuple(range(nd))[::-1] if axes is None else _axis_tuple(axes, nd, "axes")
    if perm == tuple(range(nd)):
        return a
    return bind(_p("transpose"), a, perm=perm)


def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    if type(a) is _np.ndarray:
        return a.swapaxes(axis1, axis2)  # a rule's plain value: what `bind` would compute
    perm = list(range(ndim(a)))
    i, j = _axis_index(axis1, ndim(a), "axis1"), _axis_index(axis2, ndim(a), "axis2")
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    nd = ndim(a)
    src = _axis_tuple(source, nd, "source")
    dst = _axis_tuple(destination, nd, "destination")
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number "
                         "of elements")
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def expand_dims(a: Any, axis: Any) -> Any:
    axes = (axis,) if isinstance(axis, (int, _np.integer)) else tuple(axis)
    axes = sorted(_axis_tuple(axes, ndim(a) + len(axes)))
    shp = list(shape(a))
    for ax in axes:
        shp.insert(ax, 1)
    return reshape(a, tuple(shp))


def squeeze(a: Any, axis: Any = None) -> Any:
    shp = shape(a)
    if axis is None:
        return reshape(a, tuple(d for d in shp if d != 1))
    axes = _axes(axis, len(shp), lists=False)
    for ax in axes:
        if shp[ax] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, tuple(d for i, d in enumerate(shp) if i not in axes))


def broadcast_to(array: Any, shape: Any, subok: bool = False) -> Any:
    a = array
    target = tuple(int(d) for d in ((shape,) if isinstance(shape, int) else shape))
    current = tuple(shape_of(a))
    if current == target:
        return a
    if type(a) is _np.ndarray and current_builder() is None:
        return _np.broadcast_to(a, target)  # a plain sweep's value: no trace could keep it
    _np.broadcast_shapes(current, target)  # raises NumPy's error if impossible
    if not isinstance(a, Tracer):
        # a constant (a rule's seed or zeros): broadcast without its copies' memory,
        # from an array no caller can write into afterwards
        arr = _np.asarray(a)
        if is_made_here(arr) or arr.size <= 4096:
            return made_here(_np.broadcast_to(arr if is_made_here(arr) else arr.copy(), target))
    return bind(_p("broadcast_to"), a, shape=target)


def broadcast_arrays(*args: Any, subok: bool = False) -> tuple[Any, ...]:
    if not builtins.any(isinstance(a, Tracer) for a in args):
        return _np.broadcast_arrays(*args, subok=subok)
    target = _np.broadcast_shapes(*(shape(a) for a in args))
    return [broadcast_to(a, target) for a in args]


def _each_array(numpy_fn: Any):
    """NumPy's ``atleast_Nd(*arys)`` around ``one`` (a traced array's): one
    result for one array, a tuple for several, NumPy's own for plain ones."""
    def wrap(one: Any) -> Any:
        def fn(*arys: Any) -> Any:
            results = tuple(one(a) if isinstance(a, Tracer) else numpy_fn(a) for a in arys)
            return results[0] if len(results) == 1 else results
        fn.__name__ = fn.__qualname__ = numpy_fn.__name__
        fn.__doc__ = one.__doc__
        return fn
    return wrap


@_each_array(_np.atleast_1d)
def atleast_1d(a: Any) -> Any:
    return reshape(a, (1,)) if ndim(a) == 0 else a


@_each_array(_np.atleast_2d)
def atleast_2d(a: Any) -> Any:
    return reshape(a, (1,) * (2 - ndim(a)) + shape(a)) if ndim(a) < 2 else a


@_each_array(_np.atleast_3d)
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


def concatenate(arrays: Sequence[Any], axis: int | None = 0, out: Any = None, *,
                dtype: Any = None, casting: str = "same_kind") -> Any:
    arrays = list(arrays)
    if builtins.any(not isinstance(a, Tracer) and _contains_tracer(a) for a in arrays):
        # a list of traced values among the parts (np.concatenate([x, [t]])):
        # stacked, as fastad.numpy.array stacks it (NumPy's asarray would
        # make it a constant)
        from ._creation import asarray
        arrays = [a if isinstance(a, Tracer) else asarray(a) for a in arrays]
    if out is not None or dtype is not None or casting != "same_kind":
        if not builtins.any(isinstance(a, Tracer) for a in arrays + [out]):
            return _np.concatenate(arrays, axis, out, dtype=dtype, casting=casting)
        from ._keywords import write_out  # the modules after this one write into arrays
        # NumPy's casting check (or its error) on empty arrays of the inputs' dtypes
        _np.concatenate([_np.empty((0,), result_dtype(a)) for a in arrays], dtype=dtype,
                        out=None if out is None else _np.empty((0,), result_dtype(out)),
                        casting=casting)
        result = concatenate(arrays, axis)
        if dtype is not None and result_dtype(result) != _np.dtype(dtype):
            from ._elementwise import astype
            result = astype(result, dtype)
        return result if out is None else write_out(out, result, "concatenate")
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    if not builtins.any(isinstance(a, Tracer) for a in arrays):
        return _np.concatenate([_np.asarray(a) for a in arrays], axis=axis)
    arrays = [a if isinstance(a, Tracer) else _np.asarray(a) for a in arrays]
    nd = ndim(arrays[0])
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    if not -nd <= axis < nd:
        raise _np.exceptions.AxisError(axis, nd)
    axis %= nd
    _check_concatenated(arrays, axis)
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


def _check_concatenated(arrays: list[Any], axis: int) -> None:
    """NumPy's errors for arrays that do not fit together: the traced
    concatenation writes each into its part of the result, which would
    broadcast a part that is too small."""
    first = shape(arrays[0])
    for i, a in enumerate(arrays[1:], 1):
        sa = shape(a)
        if len(sa) != len(first):
            raise ValueError("all the input arrays must have same number of dimensions, but the "
                             f"array at index 0 has {len(first)} dimension(s) and the array at "
                             f"index {i} has {len(sa)} dimension(s)")
        for d, (n0, n) in enumerate(zip(first, sa)):
            if d != axis and n != n0:
                raise ValueError("all the input array dimensions except for the concatenation "
                                 f"axis must match exactly, but along dimension {d}, the array "
                                 f"at index 0 has size {n0} and the array at index {i} has "
                                 f"size {n}")


def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None,
          casting: str = "same_kind") -> Any:
    if dtype is not None:
        from ._elementwise import astype
        return astype(stack(arrays, axis), dtype)
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    if builtins.any(shape(a) != shape(arrays[0]) for a in arrays):
        raise ValueError("all input arrays must have the same shape")
    axis = _axis_index(axis, ndim(arrays[0]) + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis)


def hstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    arrs = [atleast_1d(a) for a in tup]
    return concatenate(arrs, axis=0 if ndim(arrs[0]) == 1 else 1, dtype=dtype)


def vstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    return concatenate([atleast_2d(a) for a in tup], axis=0, dtype=dtype)


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


def tile(A: Any, reps: Any) -> Any:  # noqa: N803 - NumPy's name
    return _gather(A, lambda i: _np.tile(i, reps))


def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    return _gather(a, lambda i: _np.repeat(i, repeats, axis))


def diag(v: Any, k: int = 0) -> Any:
    if ndim(v) == 2:
        return _diagonal_gather(v, int(k), 0, 1)
    if ndim(v) != 1:
        raise ValueError("diag: input must be 1-d or 2-d")
    n = size(v) + builtins.abs(k)
    positions = _np.diag(_np.arange(1, size(v) + 1), k).reshape(-1)
    where_ = _np.nonzero(positions)[0]
    return reshape(scatter_set(_zeros_const((n * n,), _float_dtype(v).str), where_, v), (n, n))


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return _diagonal_gather(a, int(offset), int(axis1), int(axis2))


def _diagonal_gather(a: Any, offset: int, axis1: int, axis2: int) -> Any:
    """A diagonal's gather.  Asked on every call of a GP likelihood (``diag(L)``)
    and of the Cholesky rules: a plain sweep's value is NumPy's diagonal,
    copied (what the gather computes), and a traced one's index is made once
    per shape (building it takes an arange of the whole matrix)."""
    if type(a) is _np.ndarray and current_builder() is None:
        return _np.diagonal(a, offset, axis1, axis2).copy()
    shp = tuple(shape(a))
    if math.prod(shp) > 1 << 20:  # (no large index kept alive)
        return _gather(a, lambda i: _np.diagonal(i, offset, axis1, axis2).copy())
    return take_flat(a, _diagonal_index(shp, offset, axis1, axis2))


@functools.lru_cache(maxsize=64)
def _diagonal_index(shp: tuple[int, ...], offset: int, axis1: int, axis2: int) -> _np.ndarray:
    return made_here(_np.diagonal(_np.arange(math.prod(shp)).reshape(shp), offset, axis1,
                                  axis2).copy())


def _triangle_mask(shp: tuple[int, ...], k: int, lower: bool) -> _np.ndarray:
    ones = _np.ones(shp, bool)
    return made_here(_np.tril(ones, k) if lower else _np.triu(ones, k))


_cached_triangle_mask = functools.lru_cache(maxsize=32)(_triangle_mask)


def _triangle(shp: tuple[int, ...], k: int, lower: bool) -> _np.ndarray:
    """The mask of a triangle, made once per shape up to 256 x 256 (the
    Cholesky rules take three per call)."""
    if math.prod(shp) <= 1 << 16:
        return _cached_triangle_mask(shp, k, lower)
    return _triangle_mask(shp, k, lower)


def triu(m: Any, k: int = 0) -> Any:
    return where(_triangle(tuple(shape(m)[-2:]), int(k), False), m, 0.0)


def tril(m: Any, k: int = 0) -> Any:
    return where(_triangle(tuple(shape(m)[-2:]), int(k), True), m, 0.0)


def sliding_window_view(x: Any, window_shape: Any, axis: Any = None, *, subok: bool = False,
                        writeable: bool = False) -> Any:
    """NumPy's read-only view of the sliding windows of x (a gather)."""
    if writeable:
        raise TracingError("sliding_window_view(writeable=True): its windows share elements, "
                           "and which write of a shared element wins is ambiguous")
    return _gather(x, lambda i: _np.lib.stride_tricks.sliding_window_view(i, window_shape, axis))


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
