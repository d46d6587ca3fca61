"""Data-dependent orderings and the gathers that follow them.

``take`` and the scatters of `structural` use constant indices, fixed when a
function is traced.  Sorting is different: which element lands where depends
on the values, so a compiled replay must recompute it.  Here the indices are
values on the tape: ``argsort``/``argpartition`` (not differentiable) compute
them, ``take_along`` gathers with them along one axis, ``scatter_add_along``
is its transpose.  ``sort(x)`` is ``take_along(x, argsort(x))``, so its
derivative routes each cotangent back to the element that was moved there.

``cumprod``'s derivative divides by x where no zero precedes; with zeros it
is written without dividing by them (`_cumprod_vjp`), exact to the second
derivative for up to two zeros in a row of the scan.  ``prod_others`` is
``prod``'s partial derivatives, the products of the other factors of each
slice: one pass with a quotient where no factor is zero; its own derivatives
are those of the products before and after each factor, cumulative products,
so they are exact at zeros too.  ``interp`` is
differentiable in x (piecewise linear: the slope of the segment x falls in,
0 outside [xp[0], xp[-1]], the left segment's at a breakpoint) and in fp, where
it is linear: each x mixes the two table values of its segment with the hat
weights, so its transpose ``interp_scatter`` adds each cotangent back onto
those two entries (``slope=True``: with the weights' derivatives in x, the
transpose of ``interp_slope``).  The breakpoints xp stay constants.
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.registry import defbatch, defjvp, defprim, defreads, defshape, defvjp, registry
from ..core.tracer import current_builder
from ..transforms import batching
from .elementwise import no_rule
from .numpy_proxy import fnp


def _call(name, *args, **params):
    from ..core.tracer import bind
    return bind(registry[name], *args, **params)


def _grids(idx, axis):
    """An index tuple addressing, for each position of idx, the element along
    ``axis`` that idx names (the other coordinates are the position's own)."""
    grids = list(np.ogrid[tuple(slice(n) for n in idx.shape)])
    grids[axis] = idx
    return tuple(grids)


def _indices(idx):
    """Indices held in float64 (as argsort gives them) as NumPy's integers."""
    idx = np.asarray(idx)
    return idx if idx.dtype.kind in "iu" else idx.astype(np.intp)


def _scatter_add_along(x, idx, v, axis):
    out = np.array(x, copy=True)
    np.add.at(out, _grids(_indices(idx), axis), v)
    return out


# The orderings give their indices in float64, as integers taken as data are
# held (`core.int_data`): the host call's result then feeds a compiled segment
# (the VM's registers are floating point), and indexing with it is a gather.
def _argsort(x, axis):
    return np.argsort(x, axis=axis, kind="stable").astype(np.float64)


def _argpartition(x, kth, axis):
    return np.argpartition(x, kth, axis=axis).astype(np.float64)


def _cumprod(x, axis):
    return np.cumprod(x, axis=axis)



def _interp(x, xp, fp, left, right):
    return np.interp(x, xp, fp, left=left, right=right)  # float64, as NumPy's


def _interp_weights(x, xp, left, right, slope):
    """For each x: its segment's first table index and the weights (or, with
    ``slope``, their derivatives in x) of that entry and the next; the clamped
    ends weigh fp[0]/fp[-1] fully unless a ``left``/``right`` value replaces them."""
    x, xp = np.asarray(x, dtype=np.float64), np.asarray(xp, dtype=np.float64)
    seg = np.clip(np.searchsorted(xp, x, side="left") - 1, 0, len(xp) - 2)
    width = xp[seg + 1] - xp[seg]
    if slope:
        hi = 1.0 / width
        lo = -hi
    else:
        hi = (x - xp[seg]) / width
        lo = 1.0 - hi
    below, above = x < xp[0], x > xp[-1]
    outside = below | above
    lo, hi = np.where(outside, 0.0, lo), np.where(outside, 0.0, hi)
    if not slope:
        # NumPy's interp returns fp[-1] at x == xp[-1] and clamps outside
        lo = np.where(below & (left is None), 1.0, lo)
        hi = np.where((above & (right is None)) | (x == xp[-1]), 1.0, hi)
        lo = np.where(x == xp[-1], 0.0, lo)
    return seg, lo, hi


def _interp_scatter(g, x, xp, size, left, right, slope):
    """The transpose of fp -> interp(x, xp, fp) (or of ``interp_slope`` in fp):
    each g (of x's shape) added onto its segment's two table entries."""
    seg, lo, hi = _interp_weights(x, xp, left, right, slope)
    g = np.asarray(g, dtype=np.float64)
    return (np.bincount(seg.ravel(), (g * lo).ravel(), size)
            + np.bincount(seg.ravel() + 1, (g * hi).ravel(), size))


def _interp_slope(x, xp, fp):
    xp, fp = np.asarray(xp), np.asarray(fp)
    seg = np.clip(np.searchsorted(xp, x, side="left") - 1, 0, len(xp) - 2)
    slope = (fp[seg + 1] - fp[seg]) / (xp[seg + 1] - xp[seg])
    inside = (np.asarray(x) >= xp[0]) & (np.asarray(x) <= xp[-1])
    return np.where(inside, slope, 0.0)


# The primitives working along their ``axis`` parameter, every operand of one
# shape but along that axis, batch by moving the axis (`batching.along_axis`).
_p = defprim("argsort", _argsort, 1, differentiable=False)
defshape(_p, shapes.along)
defbatch(_p, batching.along_axis)
_p = defprim("argpartition", _argpartition, 1, differentiable=False)
defshape(_p, shapes.partition)
defbatch(_p, batching.along_axis)

_p = defprim("interp_slope", _interp_slope, 3)
defshape(_p, shapes.interp)
defbatch(_p, batching.interpolate)
# piecewise constant in x; linear in fp
defvjp(_p, lambda g, ans, x, xp, fp: fnp.zeros_for(x, g), no_rule("interp with respect to xp"),
       lambda g, ans, x, xp, fp: _call("interp_scatter", g, x, xp, size=len(xp), left=None,
                                       right=None, slope=True))
defreads(_p, ("ans",), (), (0, 1))
defjvp(_p, lambda t, ans, x, xp, fp: fnp.zeros_for(ans, t), no_rule("interp with respect to xp"),
       lambda t, ans, x, xp, fp: _call("interp_slope", x, xp, t))

_p = defprim("interp_scatter", _interp_scatter, 3)
defshape(_p, shapes.interp_scatter)
defbatch(_p, batching.per_example)


def _interp_scatter_dg(g, x, xp, left, right, slope):
    """interp_scatter's derivative in its cotangent: the forward map itself,
    with 0 outside the table where a left/right value replaces the ends."""
    if slope:
        return _call("interp_slope", x, xp, g)
    return _call("interp", x, xp, g, left=None if left is None else 0.0,
                 right=None if right is None else 0.0)


defvjp(_p, lambda c, ans, g, x, xp, size, left, right, slope:
       _interp_scatter_dg(c, x, xp, left, right, slope),
       lambda c, ans, g, x, xp, size, left, right, slope:
       fnp.zeros_for(x, c) if slope else g * _call("interp_slope", x, xp, c),
       no_rule("interp with respect to xp"))  # a traced xp is interp's composite
defreads(_p, (1, 2), (0, 1, 2), ())
defjvp(_p, lambda t, ans, g, x, xp, size, left, right, slope:
       _call("interp_scatter", t, x, xp, size=size, left=left, right=right, slope=slope),
       lambda t, ans, g, x, xp, size, left, right, slope:
       fnp.zeros_for(ans, t) if slope else
       _call("interp_scatter", g * t, x, xp, size=size, left=left, right=right, slope=True),
       no_rule("interp with respect to xp"))

_p = defprim("take_along", lambda x, idx, axis: np.take_along_axis(x, _indices(idx), axis), 2)
_p.keeps_integers = True
defvjp(_p, lambda g, ans, x, idx, axis:
       _call("scatter_add_along", fnp.zeros_for(x, g), idx, g, axis=axis), None)
defreads(_p, (1,), ())
defjvp(_p, lambda t, ans, x, idx, axis: _call("take_along", t, idx, axis=axis), None)
defshape(_p, shapes.take_along)
defbatch(_p, batching.along_axis)

_p = defprim("scatter_add_along", _scatter_add_along, 3)
defvjp(_p, lambda g, ans, x, idx, v, axis: g, None,
       lambda g, ans, x, idx, v, axis: _call("take_along", g, idx, axis=axis))
defreads(_p, (), (), (1,))
defjvp(_p, lambda t, ans, x, idx, v, axis: t, None,
       lambda t, ans, x, idx, v, axis:
       _call("scatter_add_along", fnp.zeros_for(x, t), idx, t, axis=axis))
defshape(_p, shapes.scatter_add_along)
defbatch(_p, batching.along_axis)

def _zero_counts(x, axis):
    """(zero, c, safe, Q, zs) along ``axis``: where x is 0, the number of zeros
    up to each element, x with 1 at the zeros, the products of the nonzeros up
    to each element, and the running sum of the zeros (0 in value: a product
    times it has the zero's derivative)."""
    zero = x == 0
    c = fnp.cumsum_(fnp.where(zero, 1.0, 0.0), axis)
    safe = fnp.where(zero, 1.0, x)
    return zero, c, safe, fnp.cumprod(safe, axis=axis), fnp.cumsum_(fnp.where(zero, x, 0.0), axis)


def _cumprod_vjp(g, ans, x, axis):
    """d/dx_i of sum_k g_k prod_{j<=k} x_j: sum over k >= i of g_k times the
    product of the others up to k.  With zeros: for a nonzero x_i the
    products of the nonzeros Q_k over x_i, times 1 before the first zero,
    the zero itself (0, with its derivative) up to the second; at a zero Q_k
    up to the next zero, then the other zero times Q_k."""
    if type(x) is np.ndarray and current_builder() is None and x.all():
        return fnp.cumsum_(g * ans, axis, reverse=True) / x  # a plain sweep, no zero
    zero, c, safe, Q, zs = _zero_counts(x, axis)
    gQ = g * Q
    nonzero = fnp.cumsum_(gQ * fnp.where(c == 0, 1.0, fnp.where(c == 1, zs, 0.0)), axis,
                          reverse=True) / safe
    second = gQ * fnp.where(c == 2, 1.0, 0.0)
    at_zero = (fnp.cumsum_(gQ * fnp.where(c == 1, 1.0, 0.0), axis, reverse=True)
               + fnp.cumsum_(second * zs, axis, reverse=True)
               - x * fnp.cumsum_(second, axis, reverse=True))
    return fnp.where(zero, at_zero, nonzero)


def _cumprod_jvp(t, ans, x, axis):
    """The tangent of prod_{j<=k} x_j: sum over i <= k of t_i times the product
    of the others up to k, without dividing by a zero (as `_cumprod_vjp`)."""
    if type(x) is np.ndarray and current_builder() is None and x.all():
        return ans * fnp.cumsum_(t / x, axis)
    zero, c, safe, Q, zs = _zero_counts(x, axis)
    nonzero = Q * fnp.where(c == 0, 1.0, fnp.where(c == 1, zs, 0.0)) \
        * fnp.cumsum_(fnp.where(zero, 0.0, t / safe), axis)
    tz = fnp.cumsum_(fnp.where(zero, t, 0.0), axis)
    at_zero = Q * (fnp.where(c == 1, tz, 0.0) + fnp.where(
        c == 2, zs * tz - fnp.cumsum_(fnp.where(zero, t * x, 0.0), axis), 0.0))
    return nonzero + at_zero


_p = defprim("cumprod", _cumprod, 1, cost="reduction")
defvjp(_p, _cumprod_vjp)
defreads(_p, ("ans", 0))
defjvp(_p, _cumprod_jvp)
defshape(_p, shapes.along)
defbatch(_p, batching.along_axis)

_p = defprim("interp", _interp, 3)
defvjp(_p, lambda g, ans, x, xp, fp, left, right: g * _call("interp_slope", x, xp, fp),
       no_rule("interp with respect to xp"),
       lambda g, ans, x, xp, fp, left, right:
       _call("interp_scatter", g, x, xp, size=len(xp), left=left, right=right, slope=False))
defreads(_p, (0, 1, 2), (), (0, 1))  # the rule of xp raises
defjvp(_p, lambda t, ans, x, xp, fp, left, right: t * _call("interp_slope", x, xp, fp),
       no_rule("interp with respect to xp"),
       lambda t, ans, x, xp, fp, left, right:
       _call("interp", x, xp, t, left=None if left is None else 0.0,
             right=None if right is None else 0.0))
defshape(_p, shapes.interp)
defbatch(_p, batching.interpolate)


# -- the products of the other factors: prod's partial derivatives ----------------
def _prod_others(x, axis):
    """d prod / d x_i along ``axis``: the product of the other elements of
    x_i's slice.  Where the slice holds no zero that is the quotient
    prod / x_i; at its only zero the product of the nonzeros; 0 elsewhere."""
    ans = np.prod(x, axis=axis, keepdims=True)
    if x.all():
        return ans / x
    zero = x == 0
    count = zero.sum(axis=axis, keepdims=True)
    rest = np.prod(np.where(zero, 1, x), axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count == 0, ans / x, np.where(zero & (count == 1), rest, 0)).astype(
            x.dtype, copy=False)


def _exclusive_scans(x):
    """The products before and after each element along x's last axis, as
    cumulative products of x shifted by one from either end (JAX's form of
    prod's partials): their derivatives are `cumprod`'s, exact at zeros.
    Returns (head, before, tail, after reversed): before = cumprod(head),
    tail the reversed shift the other way."""
    last = fnp.ndim(x) - 1
    one = fnp.ones_like(x[..., :1])
    head = fnp.concatenate([one, x[..., :-1]], axis=last)
    tail = fnp.flip(fnp.concatenate([x[..., 1:], one], axis=last), last)
    return head, fnp.cumprod(head, axis=last), tail, fnp.cumprod(tail, axis=last)


def _prod_others_jvp(t, ans, x, axis):
    x, t, last = fnp.moveaxis(x, axis, -1), fnp.moveaxis(t, axis, -1), fnp.ndim(x) - 1
    head, before, tail, after_r = _exclusive_scans(x)
    zero = fnp.zeros_for(t[..., :1])
    d_before = _cumprod_jvp(fnp.concatenate([zero, t[..., :-1]], axis=last), before, head, last)
    d_after_r = _cumprod_jvp(fnp.flip(fnp.concatenate([t[..., 1:], zero], axis=last), last),
                             after_r, tail, last)
    return fnp.moveaxis(d_before * fnp.flip(after_r, last) + before * fnp.flip(d_after_r, last),
                        -1, axis)


def _prod_others_vjp(g, ans, x, axis):
    x, g, last = fnp.moveaxis(x, axis, -1), fnp.moveaxis(g, axis, -1), fnp.ndim(x) - 1
    head, before, tail, after_r = _exclusive_scans(x)
    after = fnp.flip(after_r, last)
    g_head = _cumprod_vjp(g * after, before, head, last)  # head[k] is x[k - 1]
    g_shifted = fnp.flip(_cumprod_vjp(fnp.flip(g * before, last), after_r, tail, last), last)
    zero = fnp.zeros_for(g[..., :1])  # ... and the unreversed tail's [k] is x[k + 1]
    return fnp.moveaxis(fnp.concatenate([g_head[..., 1:], zero], axis=last)
                        + fnp.concatenate([zero, g_shifted[..., :-1]], axis=last), -1, axis)


_p = defprim("prod_others", _prod_others, 1, cost="reduction")
defvjp(_p, _prod_others_vjp)
defreads(_p, (0,))
defjvp(_p, _prod_others_jvp)
defshape(_p, shapes.along)
defbatch(_p, batching.along_axis)

