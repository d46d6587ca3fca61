"""Reductions, shape changes, indexing and linear algebra.

Indexing is one mechanism: every read ``x[key]`` becomes ``take(x, idx)``
with a constant array of flat indices into ``x`` (slices, integers, None,
Ellipsis, integer arrays and boolean masks all reduce to that), and every
write becomes ``scatter_set``/``scatter_add`` with such an index.  The
compiled backends recognise contiguous and strided index patterns.

Non-differentiable points:
  max/min reductions at ties -> the cotangent is split evenly among the tied
  elements (as autograd does).
  prod -> the gradient is the product of the other elements of each slice
  (`ordering.prod_others`: ans / x where the slice holds no zero), exact at
  zeros to every order; a plain sweep without zeros keeps the quotient.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from .. import shapes
from .numpy_proxy import fnp
from ..core.registry import defbatch, defjvp, defprim, defreads, defshape, defvjp, registry
from ..core.tracer import bind, current_builder
from ..transforms import batching


#: a plain sweep's cotangent: an array, or a NumPy scalar (a full reduction's)
_PLAIN_COTANGENTS = frozenset({np.ndarray, np.float64, np.float32, np.float16, np.longdouble})


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _expand_to(g, x, axes, keepdims):
    """Broadcast a reduced cotangent back to x's shape."""
    shape = fnp.shape(x)
    if type(g) in _PLAIN_COTANGENTS and current_builder() is None:
        # a plain sweep's (nothing records it): NumPy's own reshape and
        # broadcast, without the front end's (a full reduction's cotangent
        # is a NumPy scalar, which the front end's reshape would bind)
        g = np.asarray(g)
        if not keepdims:
            g = g.reshape(_keepdims_shape(shape, axes))
        if math.prod(shape) > 4096:
            return np.broadcast_to(g, shape)
        out = np.empty(shape, g.dtype)  # short: NumPy's broadcast_to costs more than a fill
        out[...] = g
        return out
    if not keepdims:
        g = fnp.reshape(g, _keepdims_shape(shape, axes))
    if type(g) is np.ndarray and math.prod(shape) <= 4096 and current_builder() is None:
        # a plain sweep's (nothing records it), short: the elements of NumPy's
        # broadcast_to, which is Python code taking several times as long
        out = np.empty(shape, g.dtype)
        out[...] = g
        return out
    return fnp.broadcast_to(g, shape)


# -- reductions: one row per op -----------------------------------------------
def _reducer(fn):
    """The primitive's implementation: NumPy's reduction over ``axes``."""
    def impl(x, axes, keepdims):
        return fn(x, axis=axes, keepdims=keepdims)
    impl.__name__ = impl.__qualname__ = f"_{fn.__name__}"
    return impl


def _extremum_vjp(g, ans, x, axes, keepdims):
    if type(g) is np.ndarray and type(x) is np.ndarray and g.dtype.kind == "f" \
            and current_builder() is None:
        # a plain sweep's: NumPy broadcasts the reduced answer and cotangent in
        # the comparison and the products, and the products are made in place,
        # instead of materializing each broadcast (the same values, bit for bit)
        kept = _keepdims_shape(x.shape, axes)
        hit = np.asarray(x == ans.reshape(kept), dtype=g.dtype)  # (0-d: an array, not a scalar)
        count = hit.sum(axis=axes, keepdims=True)
        np.multiply(g.reshape(kept), hit, out=hit)
        return np.divide(hit, count, out=hit)
    hit = fnp.astype(x == _expand_to(ans, x, axes, keepdims), fnp.result_dtype(g))
    count = fnp.sum(hit, axis=axes, keepdims=True)
    return _expand_to(g, x, axes, keepdims) * hit / count


def _extremum_jvp(t, ans, x, axes, keepdims):
    hit = fnp.astype(x == _expand_to(ans, x, axes, keepdims), fnp.result_dtype(t))
    return (fnp.sum(t * hit, axis=axes, keepdims=keepdims)
            / fnp.sum(hit, axis=axes, keepdims=keepdims))


def _without_zeros(x):
    """Whether ``x`` is a plain array (a plain sweep's) holding no zero."""
    return type(x) is np.ndarray and current_builder() is None and bool(x.all())


def _prod_partials(x, axes):
    """d prod / d x_i over ``axes``: `ordering.prod_others` along one axis, the
    reduced axes moved last and merged into one for more."""
    if len(axes) == 1:
        return bind(registry["prod_others"], x, axis=axes[0])
    shape = fnp.shape(x)
    kept = [a for a in range(len(shape)) if a not in axes]
    order = kept + sorted(axes)
    moved = fnp.transpose(x, order) if order != list(range(len(shape))) else x
    merged = fnp.reshape(moved, tuple(shape[a] for a in kept) + (math.prod(shape[a] for a in axes),))
    others = fnp.reshape(bind(registry["prod_others"], merged, axis=len(kept)), fnp.shape(moved))
    return others if moved is x else fnp.transpose(others, list(np.argsort(order)))


def _prod_vjp(g, ans, x, axes, keepdims):
    if _without_zeros(x):
        return _expand_to(g * ans, x, axes, keepdims) / x
    return _expand_to(g, x, axes, keepdims) * _prod_partials(x, axes)


def _prod_jvp(t, ans, x, axes, keepdims):
    if _without_zeros(x):
        return ans * fnp.sum(t / x, axis=axes, keepdims=keepdims)
    return fnp.sum(t * _prod_partials(x, axes), axis=axes, keepdims=keepdims)


# name: (NumPy function, its public names in fastad.numpy, identity, what the
# VJP reads, vjp(g, ans, x, axes, keepdims), jvp(t, ans, x, axes, keepdims)).
# The identity is (the element ``where=`` masks with, how ``initial=``
# combines with the result); a row with one has NumPy's signature with
# ``dtype``, ``initial`` and ``where`` (`fastad.numpy._reductions`), one
# without has ``(a, axis, out, keepdims)``.  Each row's shape rule is
# `shapes.reduce`, its batching rule `batching.reduction`.
REDUCTIONS = {
    "sum":  (np.sum,  ("sum",),         (0.0, operator.add), (),
             lambda g, ans, x, axes, keepdims: _expand_to(g, x, axes, keepdims),
             lambda t, ans, x, axes, keepdims: fnp.sum(t, axis=axes, keepdims=keepdims)),
    "prod": (np.prod, ("prod",),        (1.0, operator.mul), ("ans", 0),
             lambda g, ans, x, axes, keepdims: _prod_vjp(g, ans, x, axes, keepdims),
             lambda t, ans, x, axes, keepdims: _prod_jvp(t, ans, x, axes, keepdims)),
    "max":  (np.max,  ("max", "amax"),  None, ("ans", 0), _extremum_vjp, _extremum_jvp),
    "min":  (np.min,  ("min", "amin"),  None, ("ans", 0), _extremum_vjp, _extremum_jvp),
}

for _name, (_fn, _public, _identity, _reads, _vjp, _jvp) in REDUCTIONS.items():
    _p = defprim(_name, _reducer(_fn), 1, cost="reduction")
    _p.numpy_names = _public
    defvjp(_p, _vjp)
    defreads(_p, _reads)
    defjvp(_p, _jvp)
    defshape(_p, shapes.reduce)
    defbatch(_p, batching.reduction)


def _cumsum(x, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis), axis)
    return np.cumsum(x, axis)


_p = defprim("cumsum", _cumsum, 1, cost="reduction")
defvjp(_p, lambda g, ans, x, axis, reverse: fnp.cumsum_(g, axis, not reverse))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, axis, reverse: fnp.cumsum_(t, axis, reverse))
defshape(_p, shapes.cumsum)
defbatch(_p, batching.cumsum)

# -- shape --------------------------------------------------------------------
def _reshape(x, shape):
    # (an array's method: np.reshape is a Python function dispatching to it)
    return x.reshape(shape) if type(x) is np.ndarray else np.reshape(x, shape)


_p = defprim("reshape", _reshape, 1, cost="view")
_p.keeps_integers = True
defvjp(_p, lambda g, ans, x, shape: fnp.reshape(g, fnp.shape(x)))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, shape: fnp.reshape(t, shape))
defshape(_p, shapes.reshape)
defbatch(_p, batching.reshape)

_p = defprim("transpose", lambda x, perm: np.transpose(x, perm), 1)
_p.keeps_integers = True
defvjp(_p, lambda g, ans, x, perm: fnp.transpose(g, tuple(np.argsort(perm).tolist())))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, perm: fnp.transpose(t, perm))
defshape(_p, shapes.transpose)
defbatch(_p, batching.transpose)

_p = defprim("broadcast_to", lambda x, shape: np.broadcast_to(x, shape).copy(), 1)
_p.keeps_integers = True
defvjp(_p, lambda g, ans, x, shape: fnp.unbroadcast(g, fnp.shape(x)))
defreads(_p, ())
defjvp(_p, lambda t, ans, x, shape: fnp.broadcast_to(t, shape))
defshape(_p, shapes.broadcast_to)
defbatch(_p, batching.broadcast_to)


# -- indexing: flat gather and scatter with constant integer indices -----------
def _take(x, idx):
    return np.asarray(x).reshape(-1)[idx]


def _take_view(x, idx):
    """x.ravel()[idx] as a read-only view of x where idx is a basic slice's
    index (a strided view of the position table): no copy of a large slice."""
    flat = np.asarray(x).reshape(-1)
    if idx.size < 4096:  # x[i], a short slice: copied faster than a view is made
        return flat[idx]
    from ..core.arrays import position_layout
    layout = position_layout(idx, flat.size)
    if layout is None:
        return flat[idx]
    offset, strides = layout  # (a 1-D x may itself be strided: its ravel is x)
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=idx.shape, strides=tuple(s * flat.strides[0] for s in strides),
        writeable=False)


def _slice_of(flat, idx):
    """``flat[idx]`` as a writeable strided view of ``flat`` when idx is a basic
    slice's index whose positions are distinct (a view of the position
    table), else None: then adding into the view is ``np.add.at`` bit for bit,
    each element gaining its one value, without a gather and a scatter."""
    from ..core.arrays import position_layout
    layout = position_layout(idx, flat.size)
    if layout is None:
        return None
    offset, strides = layout
    extent = 1  # distinct positions: each axis steps over all the inner ones
    for size, stride in sorted(((n, abs(s)) for n, s in zip(idx.shape, strides) if n > 1),
                               key=lambda a: a[1]):
        if stride < extent:
            return None
        extent = stride * size
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=idx.shape, strides=tuple(s * flat.strides[0] for s in strides))


def _scatter_set(x, idx, v):
    out = np.array(x, copy=True, order="C")  # reshape(-1) below must be a view
    out.reshape(-1)[idx] = v
    return out


def _scatter_add_into(out, idx, v):
    """Add v at idx into ``out`` itself (C-contiguous), and return it."""
    flat = out.reshape(-1)
    # (a short index: np.add.at takes microseconds where making the view takes tens)
    part = _slice_of(flat, idx) if idx.size >= 4096 else None
    if part is None:
        np.add.at(flat, idx, v)
    else:
        part += v
    return out


def _scatter_add(x, idx, v):
    return _scatter_add_into(np.array(x, copy=True, order="C"), idx, v)


_p = defprim("take", _take, 2)
_p.keeps_integers = True
_p.view_impl = _take_view
defvjp(_p, lambda g, ans, x, idx: fnp.scatter_add(fnp.zeros_for(x, g), idx, g), None)
defreads(_p, (1,), ())  # the accumulating rule reads idx too
defjvp(_p, lambda t, ans, x, idx: fnp.take_flat(t, idx), None)
_p.accumulating_vjps[0] = lambda acc, g, ans, x, idx: fnp.scatter_add(acc, idx, g)
defshape(_p, shapes.take, consts=True)
defbatch(_p, batching.take)

_p = defprim("scatter_set", _scatter_set, 3)
defvjp(_p, lambda g, ans, x, idx, v: fnp.scatter_set(g, idx, fnp.zeros_for(v, g)), None,
       lambda g, ans, x, idx, v: fnp.take_flat(g, idx))
defreads(_p, (1,), (), (1,))
defjvp(_p, lambda t, ans, x, idx, v: fnp.scatter_set(t, idx, fnp.zeros_for(v, t)), None,
       lambda t, ans, x, idx, v: fnp.scatter_set(fnp.zeros_for(x, t), idx, t))
defshape(_p, shapes.scatter, consts=True)
defbatch(_p, batching.scatter)

_p = defprim("scatter_add", _scatter_add, 3)
_p.in_place_impl = _scatter_add_into
defvjp(_p, lambda g, ans, x, idx, v: g, None, lambda g, ans, x, idx, v: fnp.take_flat(g, idx))
defreads(_p, (), (), (1,))
defjvp(_p, lambda t, ans, x, idx, v: t, None,
       lambda t, ans, x, idx, v: fnp.scatter_add(fnp.zeros_for(x, t), idx, t))
defshape(_p, shapes.scatter, consts=True)
defbatch(_p, batching.scatter)


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
    if type(a) is np.ndarray and current_builder() is None:
        # a plain sweep's: NumPy's inv is the same gesv against the identity
        # (the same bits), without making and broadcasting the identity
        return np.linalg.inv(a)
    return fnp.solve_(a, fnp.broadcast_to(fnp.eye_like(a), fnp.shape(a)))


_p = defprim("matmul", np.matmul, 2, cost="matmul")
defvjp(_p, lambda g, ans, a, b: fnp.matmul_(g, _mT(b)),
       lambda g, ans, a, b: fnp.matmul_(_mT(a), g))
defreads(_p, (1,), (0,))
defjvp(_p, lambda t, ans, a, b: fnp.matmul_(t, b), lambda t, ans, a, b: fnp.matmul_(a, t))
defshape(_p, shapes.matmul)
defbatch(_p, batching.matmul)


def _gram(x, trans):
    # NumPy's matmul of a matrix and its own transposed view is a syrk: half
    # the work of the general product (a stack: a gemm per matrix)
    xt = np.swapaxes(x, -1, -2)
    return np.matmul(x, xt) if trans else np.matmul(xt, x)


def _gram_vjp(g, ans, x, trans):
    s = g + _mT(g)
    return fnp.matmul_(s, x) if trans else fnp.matmul_(x, s)


def _gram_jvp(t, ans, x, trans):
    u = fnp.matmul_(t, _mT(x)) if trans else fnp.matmul_(_mT(t), x)
    return u + _mT(u)


# x^T x (x x^T with ``trans``) of a real x, which `numpy._linalg._matmul`
# records for x.T @ x (x @ x.T): its VJP is one product, x (g + g^T), where
# matmul's two rules would take two
_p = defprim("gram", _gram, 1, cost="matmul")
defvjp(_p, _gram_vjp)
defreads(_p, (0,))
defjvp(_p, _gram_jvp)
defshape(_p, shapes.gram)
defbatch(_p, batching.batched_linalg)

_p = defprim("solve", _solve, 2, cost="linalg")
defvjp(_p, lambda g, ans, a, b: -fnp.matmul_(fnp.solve_(_mT(a), g), _mT(ans)),
       lambda g, ans, a, b: fnp.solve_(_mT(a), g))
defreads(_p, ("ans", 0), (0,))


def _solve_joint_vjp(g, ans, a, b, active):
    """Both operands' cotangents (the rules above) from one solve with a's
    transpose, where each rule alone would solve it again."""
    gb = fnp.solve_(_mT(a), g)
    return [-fnp.matmul_(gb, _mT(ans)) if k == 0 else gb for k in active]


_p.joint_vjp = _solve_joint_vjp
defjvp(_p, lambda t, ans, a, b: -fnp.solve_(a, fnp.matmul_(t, ans)),
       lambda t, ans, a, b: fnp.solve_(a, t))
defshape(_p, shapes.solve)
defbatch(_p, batching.batched_linalg)

def _log_det_tangent(t, a):
    """tr(a^{-1} t): the tangent of log det a (its real part that of log |det a|)."""
    return fnp.sum(_mT(_inv(a)) * t, axis=(-2, -1))


# d log|det a| = Re tr(a^{-1} da): for a real cotangent g, g a^{-T} (complex a too)
_p = defprim("logabsdet", _logabsdet, 1, cost="linalg")
defvjp(_p, lambda g, ans, a: fnp.reshape(g, fnp.shape(g) + (1, 1)) * _mT(_inv(a)))
defreads(_p, (0,))
defjvp(_p, lambda t, ans, a: fnp.real(_log_det_tangent(t, a)) if fnp.iscomplexobj(a)
       else _log_det_tangent(t, a))
defshape(_p, shapes.determinant)
defbatch(_p, batching.batched_linalg)

def _det(a):
    # sign * |det| from one LU, as `numpy._linalg._det` composed it
    sign, logdet = np.linalg.slogdet(a)
    return sign * np.exp(logdet)


def _adjugate(a):
    """adj(a) = det(a) a^{-1} from one LU where a is far from singular (its
    |det| above 1e-8 of Hadamard's bound, the product of its rows' norms);
    elsewhere from its SVD a = U S V^H: det(U) det(V^H) V adj(S) U^H, adj(S)
    the products of all singular values but one, finite at a singular
    matrix (JAX's det gradient there)."""
    a = np.asarray(a)
    n = a.shape[-1]
    if n == 0:
        return np.zeros_like(a)
    flat = a.reshape((-1, n, n))
    out = np.empty_like(flat)
    bound = np.prod(np.linalg.norm(flat, axis=-1), axis=-1)
    sign, logdet = np.linalg.slogdet(flat)
    det = sign * np.exp(logdet)
    far = np.abs(det) > 1e-8 * bound
    if far.any():
        out[far] = det[far][:, None, None] * np.linalg.inv(flat[far])
    near = ~far
    if near.any():
        u, s, vh = np.linalg.svd(flat[near])
        # prod_{j != i} s_j as the products before and after s_i (no quotient,
        # which a product of tiny singular values would underflow)
        one = np.ones_like(s[:, :1])
        before = np.cumprod(np.concatenate([one, s[:, :-1]], axis=-1), axis=-1)
        after = np.cumprod(np.concatenate([one, s[:, :0:-1]], axis=-1), axis=-1)[:, ::-1]
        others = before * after
        phase = np.linalg.det(u) * np.linalg.det(vh)
        out[near] = phase[:, None, None] * np.matmul(
            np.swapaxes(vh, -1, -2) * others[:, None, :], np.swapaxes(u, -1, -2))
    return out.reshape(a.shape)


def _adjugate_tangent(t, ans, a):
    """d adj(a) = (tr(adj(a) t) I - adj(a) t) a^{-1} (a nonsingular: at a
    singular matrix the solve raises LinAlgError, a clear refusal)."""
    k = fnp.sum(_mT(ans) * t, axis=(-2, -1))
    left = fnp.reshape(k, fnp.shape(k) + (1, 1)) * fnp.broadcast_to(fnp.eye_like(a), fnp.shape(a)) \
        - fnp.matmul_(ans, t)
    return _mT(fnp.solve_(_mT(a), _mT(left)))  # left a^{-1}


def _adjugate_cotangent(g, ans, a):
    """The transpose of `_adjugate_tangent`: with Y = g a^{-T},
    tr(Y) adj^T - adj^T Y."""
    y = _mT(fnp.solve_(a, _mT(g)))  # g a^{-T}
    k = fnp.sum(fnp.broadcast_to(fnp.eye_like(a), fnp.shape(a)) * y, axis=(-2, -1))
    return fnp.reshape(k, fnp.shape(k) + (1, 1)) * _mT(ans) - fnp.matmul_(_mT(ans), y)


# det as one primitive, so that its derivative is the adjugate (finite at a
# singular matrix, where sign * exp(logabsdet)'s chain would invert it)
_p = defprim("numpy.linalg.det", _det, 1, cost="linalg",
             doc="the determinant; a NumPy call in compiled code")
_p.builtin = False
defvjp(_p, lambda g, ans, a: fnp.reshape(g, fnp.shape(g) + (1, 1)) * _mT(_adjugate_p(a)))
defjvp(_p, lambda t, ans, a: fnp.sum(_mT(_adjugate_p(a)) * t, axis=(-2, -1)))
defshape(_p, shapes.determinant)
defbatch(_p, batching.batched_linalg)

_adjugate_prim = defprim("numpy.linalg.adjugate", _adjugate, 1, cost="linalg",
                         doc="the adjugate matrix; a NumPy call in compiled code")
_adjugate_prim.builtin = False
defvjp(_adjugate_prim, _adjugate_cotangent)
defjvp(_adjugate_prim, _adjugate_tangent)
defshape(_adjugate_prim, lambda a: a)
defbatch(_adjugate_prim, batching.batched_linalg)


def _adjugate_p(a):
    return bind(_adjugate_prim, a)


_p = defprim("detsign", _detsign, 1, differentiable=False, cost="linalg")
defshape(_p, shapes.determinant)
defbatch(_p, batching.batched_linalg)

# det a / |det a| of a complex matrix, on the unit circle: d phase = i phase
# Im tr(a^{-1} da); as a cotangent, -i Re(i g phase) a^{-T} (autograd's pairing)
_p = defprim("numpy.linalg.det_phase", _detsign, 1, cost="linalg",
             doc="the phase of a complex determinant; a NumPy call in compiled code")
_p.builtin = False  # runs as a NumPy call between compiled segments, as users' primitives do
defvjp(_p, lambda g, ans, a: fnp.reshape(-1j * fnp.real(1j * g * ans), fnp.shape(g) + (1, 1))
       * _mT(_inv(a)))
defjvp(_p, lambda t, ans, a: 1j * ans * fnp.imag(_log_det_tangent(t, a)))
defshape(_p, shapes.determinant)
defbatch(_p, batching.batched_linalg)
