"""Reductions, shape changes, indexing and linear algebra.

Indexing is one mechanism: every read ``x[key]`` becomes ``take(x, idx)``
with a constant array of flat indices into ``x`` (slices, integers, None,
Ellipsis, integer arrays and boolean masks all reduce to that), and every
write becomes ``scatter_set``/``scatter_add`` with such an index.  The
compiled backends recognise contiguous and strided index patterns.

Non-differentiable points:
  max/min reductions at ties -> the cotangent is split evenly among the tied
  elements (as autograd does).
  prod -> the gradient is ans / x, so an input exactly 0 gives a NaN
  derivative (never a silently wrong number).
"""
from __future__ import annotations

import numpy as np

from .numpy_proxy import fnp
from ..core.registry import defjvp, defprim, defreads, defvjp


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _expand_to(g, x, axes, keepdims):
    """Broadcast a reduced cotangent back to x's shape."""
    if not keepdims:
        g = fnp.reshape(g, _keepdims_shape(fnp.shape(x), axes))
    return fnp.broadcast_to(g, fnp.shape(x))


# -- reductions ---------------------------------------------------------------
def _sum(x, axes, keepdims):
    return np.sum(x, axis=axes, keepdims=keepdims)


def _prod(x, axes, keepdims):
    return np.prod(x, axis=axes, keepdims=keepdims)


def _max(x, axes, keepdims):
    return np.max(x, axis=axes, keepdims=keepdims)


def _min(x, axes, keepdims):
    return np.min(x, axis=axes, keepdims=keepdims)


def _extremum_vjp(g, ans, x, axes, keepdims):
    hit = fnp.astype(x == _expand_to(ans, x, axes, keepdims), fnp.result_dtype(g))
    count = fnp.sum(hit, axis=axes, keepdims=True)
    return _expand_to(g, x, axes, keepdims) * hit / count


def _extremum_jvp(t, ans, x, axes, keepdims):
    hit = fnp.astype(x == _expand_to(ans, x, axes, keepdims), fnp.result_dtype(t))
    return (fnp.sum(t * hit, axis=axes, keepdims=keepdims)
            / fnp.sum(hit, axis=axes, keepdims=keepdims))


_p = defprim("sum", _sum, 1, cost="reduction")
defvjp(_p, lambda g, ans, x, axes, keepdims: _expand_to(g, x, axes, keepdims))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, axes, keepdims: fnp.sum(t, axis=axes, keepdims=keepdims))

_p = defprim("prod", _prod, 1, cost="reduction")
defvjp(_p, lambda g, ans, x, axes, keepdims: _expand_to(g * ans, x, axes, keepdims) / x)
defreads(_p, ("ans", 0))
defjvp(_p, lambda t, ans, x, axes, keepdims:
       ans * fnp.sum(t / x, axis=axes, keepdims=keepdims))

for _name, _impl in (("max", _max), ("min", _min)):
    _p = defprim(_name, _impl, 1, cost="reduction")
    defvjp(_p, _extremum_vjp)
    defreads(_p, ("ans", 0))
    defjvp(_p, _extremum_jvp)


def _cumsum(x, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis), axis)
    return np.cumsum(x, axis)


_p = defprim("cumsum", _cumsum, 1, cost="reduction")
defvjp(_p, lambda g, ans, x, axis, reverse: fnp.cumsum_(g, axis, not reverse))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, axis, reverse: fnp.cumsum_(t, axis, reverse))

# -- shape --------------------------------------------------------------------
_p = defprim("reshape", lambda x, shape: np.reshape(x, shape), 1, cost="view")
defvjp(_p, lambda g, ans, x, shape: fnp.reshape(g, fnp.shape(x)))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, shape: fnp.reshape(t, shape))

_p = defprim("transpose", lambda x, perm: np.transpose(x, perm), 1)
defvjp(_p, lambda g, ans, x, perm: fnp.transpose(g, tuple(np.argsort(perm).tolist())))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, perm: fnp.transpose(t, perm))

_p = defprim("broadcast_to", lambda x, shape: np.broadcast_to(x, shape).copy(), 1)
defvjp(_p, lambda g, ans, x, shape: fnp.unbroadcast(g, fnp.shape(x)))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, shape: fnp.broadcast_to(t, shape))


# -- indexing: flat gather and scatter with constant integer indices -----------
def _take(x, idx):
    return np.asarray(x).reshape(-1)[idx]


def _take_view(x, idx):
    """x.ravel()[idx] as a read-only view of x where idx is a basic slice's
    index (a strided view of the position table): no copy of a large slice."""
    from ..core.arrays import position_layout
    flat = np.asarray(x).reshape(-1)
    if not idx.ndim:  # x[i]: one element, never a view
        return flat[idx]
    layout = position_layout(idx, flat.size)
    if layout is None:
        return flat[idx]
    offset, strides = layout
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=idx.shape, strides=tuple(s * flat.itemsize for s in strides),
        writeable=False)


def _scatter_set(x, idx, v):
    out = np.array(x, copy=True, order="C")  # reshape(-1) below must be a view
    out.reshape(-1)[idx] = v
    return out


def _scatter_add(x, idx, v):
    out = np.array(x, copy=True, order="C")  # reshape(-1) below must be a view
    np.add.at(out.reshape(-1), idx, v)
    return out


_p = defprim("take", _take, 2)
_p.view_impl = _take_view
defvjp(_p, lambda g, ans, x, idx: fnp.scatter_add(fnp.zeros_for(x, g), idx, g), None)
defreads(_p, (1,), ())  # the accumulating rule reads idx too
defjvp(_p, lambda t, ans, x, idx: fnp.take_flat(t, idx), None)
_p.accumulating_vjps[0] = lambda acc, g, ans, x, idx: fnp.scatter_add(acc, idx, g)

_p = defprim("scatter_set", _scatter_set, 3)
defvjp(_p, lambda g, ans, x, idx, v: fnp.scatter_set(g, idx, fnp.zeros_for(v, g)), None,
       lambda g, ans, x, idx, v: fnp.take_flat(g, idx))
defreads(_p, (1,), (), (1,))
defjvp(_p, lambda t, ans, x, idx, v: fnp.scatter_set(t, idx, fnp.zeros_for(v, t)), None,
       lambda t, ans, x, idx, v: fnp.scatter_set(fnp.zeros_for(x, t), idx, t))

_p = defprim("scatter_add", _scatter_add, 3)
defvjp(_p, lambda g, ans, x, idx, v: g, None, lambda g, ans, x, idx, v: fnp.take_flat(g, idx))
defreads(_p, (), (), (1,))
defjvp(_p, lambda t, ans, x, idx, v: t, None,
       lambda t, ans, x, idx, v: fnp.scatter_add(fnp.zeros_for(x, t), idx, t))


# -- linear algebra (batched over leading axes of equal shape) ----------------
def _mT(a):
    return fnp.swapaxes(a, -1, -2)


def _solve(a, b):
    return np.linalg.solve(a, b)


def _logabsdet(a):
    return np.linalg.slogdet(a)[1]


def _detsign(a):
    return np.linalg.slogdet(a)[0]


def _inv(a):
    return fnp.solve_(a, fnp.broadcast_to(fnp.eye_like(a), fnp.shape(a)))


_p = defprim("matmul", np.matmul, 2, cost="matmul")
defvjp(_p, lambda g, ans, a, b: fnp.matmul_(g, _mT(b)),
       lambda g, ans, a, b: fnp.matmul_(_mT(a), g))
defreads(_p, (1,), (0,))
defjvp(_p, lambda t, ans, a, b: fnp.matmul_(t, b), lambda t, ans, a, b: fnp.matmul_(a, t))

_p = defprim("solve", _solve, 2, cost="linalg")
defvjp(_p, lambda g, ans, a, b: -fnp.matmul_(fnp.solve_(_mT(a), g), _mT(ans)),
       lambda g, ans, a, b: fnp.solve_(_mT(a), g))
defreads(_p, ("ans", 0), (0,))
defjvp(_p, lambda t, ans, a, b: -fnp.solve_(a, fnp.matmul_(t, ans)),
       lambda t, ans, a, b: fnp.solve_(a, t))

_p = defprim("logabsdet", _logabsdet, 1, cost="linalg")
defvjp(_p, lambda g, ans, a: fnp.reshape(g, fnp.shape(g) + (1, 1)) * _mT(_inv(a)))
defreads(_p, (0,))
defjvp(_p, lambda t, ans, a: fnp.sum(_mT(_inv(a)) * t, axis=(-2, -1)))

defprim("detsign", _detsign, 1, differentiable=False, cost="linalg")
