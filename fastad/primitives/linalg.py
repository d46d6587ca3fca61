"""Matrix decompositions and triangular / Sylvester solves, batched over
leading axes.

A decomposition with several results is one primitive whose result packs
them along the second-to-last axis (``eigh``: the eigenvalues as row 0 and
the eigenvectors below; ``svd``: s, U and V; ``qr``: Q and R), so the
factorization runs once; `fastad.numpy.linalg` slices the parts out.  The
rules are written with fastad's own operations on the packed result, so
every order traces.

Every primitive here treats leading axes as a batch, so vmap batches it by
batching every operand (`batching.batched_linalg`).

Where the derivative exists (documented in docs/conformance.md, refused
otherwise):
  cholesky, eigh: read the lower triangle, as NumPy does; eigh needs distinct
    eigenvalues for the eigenvectors' derivative (a function of the eigenvalues
    alone, or an eigenvector cotangent that is zero, is differentiable at
    repeated ones: the 1/gap terms meet a zero there and are left out).
  eig: real input with real, distinct eigenvalues (complex ones raise
    LinAlgError); eigenvectors are unit columns, as NumPy returns them.
  svd: reduced (full_matrices=False, or square), distinct nonzero singular values
    (not needed for a function of the singular values alone: svdvals, norm(A, 2),
    the nuclear norm).
  qr: reduced, m >= n, full column rank.
  pinv: at points where the rank does not change (the Golub-Pereyra formula).
  sqrtm: SciPy's principal root (complex for a real matrix without a real one),
  no eigenvalue pair of the root summing to 0.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import shapes
from ..core.registry import defbatch, defjvp, defprim, defshape, defvjp, registry
from ..core.tracer import current_builder
from ..transforms import batching
from .numpy_proxy import fnp


def _call(name, *args, **params):
    from ..core.tracer import bind
    return bind(registry[name], *args, **params)


def _mT(a):
    return fnp.swapaxes(a, -1, -2)


def _mm(a, b):
    return fnp.matmul_(a, b)


def _eye(x):
    return fnp.eye_like(x)


def _diag_part(x):
    return fnp.diagonal(x, 0, -2, -1)


def _diag_embed(v):
    return fnp.expand_dims(v, -2) * _eye(v)


def _inverse_gaps(w):
    """F[..., i, j] = 1 / (w_j - w_i) off the diagonal, 0 on it."""
    gaps = fnp.expand_dims(w, -2) - fnp.expand_dims(w, -1)
    eye = _eye(w) > 0
    return fnp.where(eye, 0.0, 1.0 / fnp.where(eye, 1.0, gaps))


def _gap_product(f, k):
    """f * k where k != 0, 0 where k == 0.  f holds 1/gap, infinite between
    repeated eigen- or singular values; a cotangent (or tangent) that does not
    reach that pair (k == 0: a function of the values only, eigvalsh, svdvals,
    norm(A, 2)) contributes nothing there, as with JAX's symbolic zeros,
    instead of inf * 0 = NaN."""
    return fnp.where(k == 0, 0.0, f * k)


def _over_values(x, s):
    """x / s where x != 0, 0 where x == 0: the rank-deficient part of a reduced
    SVD's derivative, where a zero singular value meets a zero cotangent."""
    return fnp.where(x == 0, 0.0, x / fnp.where(x == 0, 1.0, s))


def _mH(a):
    """The conjugate transpose (the transpose of a real matrix)."""
    return fnp.conj(_mT(a)) if fnp.iscomplexobj(a) else _mT(a)


def _lower_read(p):
    """Adjoint of "the symmetric (Hermitian) matrix whose lower triangle is
    read": a tangent's strictly-lower part counts on both sides of the
    diagonal (conjugated above it), the real part of its diagonal only."""
    if fnp.iscomplexobj(p):
        return fnp.tril(p, -1) + fnp.tril(_mH(p), -1) + _diag_embed(fnp.real(_diag_part(p)))
    return fnp.tril(p) + fnp.tril(_mT(p), -1)


def _symmetric_from_lower(t):
    """The symmetric (Hermitian: LAPACK ignores the diagonal's imaginary
    part) matrix whose lower triangle is t's."""
    if fnp.iscomplexobj(t):
        low = fnp.tril(t, -1)
        return low + _mH(low) + _diag_embed(fnp.real(_diag_part(t)))
    return fnp.tril(t) + _mT(fnp.tril(t, -1))


def _sesquilinear(rule):
    """A VJP rule written with conjugate transposes, which gives the adjoint
    for the inner product Re tr(x^H y), as autograd's convention wants it
    (the adjoint for Re sum(x * y)): conj(rule(conj(g)))."""
    def vjp(g, ans, *args, **params):
        if not fnp.iscomplexobj(ans):
            return rule(g, ans, *args, **params)
        return fnp.conj(rule(fnp.conj(g), ans, *args, **params))
    return vjp


def _batched(fn, *arrays):
    """fn applied to each matrix (or matrix pair) of a stack."""
    batch = np.broadcast_shapes(*(np.shape(a)[:-2] for a in arrays))
    arrays = [np.broadcast_to(a, batch + np.shape(a)[-2:]) for a in arrays]
    out = [fn(*(a[i] for a in arrays)) for i in np.ndindex(*batch)]
    return np.stack(out).reshape(batch + out[0].shape) if out else \
        np.zeros(batch + fn(*(np.eye(a.shape[-1]) for a in arrays)).shape)


# -- triangular solve: x = T^{-1} b with T the lower/upper triangle of a ------------
def _solve_triangular(a, b, lower):
    # a triangular solve (LAPACK trtrs), never a factorisation: one thread,
    # n = 100: 8x faster than NumPy's LU solve on the triangle for one
    # right-hand side, 3x for 100; n = 1000: 900x and 2.6x.  Only stacks of small matrices (and empty stacks) go to
    # NumPy's batched solve, which beats a Python loop of LAPACK calls below
    # about 32 x 32.  A zero on the diagonal raises LinAlgError, as NumPy's does.
    batch = np.broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2])
    n = np.shape(a)[-1]
    if batch and (n < _SMALL_TRIANGLE or 0 in batch):
        tri = np.broadcast_to(np.tril(a) if lower else np.triu(a), batch + (n, n))
        return np.linalg.solve(tri, np.broadcast_to(b, batch + np.shape(b)[-2:]))
    a, b = np.asarray(a), np.asarray(b)  # (NumPy's array_like)
    dtype = np.result_type(a, b)
    one = _trtrs(lower) if dtype.kind in "fc" and n else \
        (lambda t, rhs: sla.solve_triangular(t, rhs, lower=lower, check_finite=False))
    out = one(a, b) if not batch else _batched(one, a, b)
    return np.asarray(out, dtype=dtype)


def _trtrs(lower):
    """LAPACK's trtrs on one triangle, called directly: SciPy's
    solve_triangular spends as long checking its arguments as trtrs takes
    for n = 60 and one right-hand side.  A C-ordered triangle is read as its
    transpose (the other triangle, trans), as SciPy does, without a copy.
    NaN and inf propagate as in NumPy's solve (no finiteness check)."""
    def one(t, rhs):
        trtrs = sla.lapack.get_lapack_funcs("trtrs", (t, rhs))
        if t.flags.c_contiguous and not t.flags.f_contiguous:
            x, info = trtrs(t.T, rhs, lower=not lower, trans=1)
        else:
            x, info = trtrs(t, rhs, lower=lower)
        if info > 0:
            raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal "
                                        f"{info - 1}")
        if info < 0:
            raise ValueError(f"illegal value in {-info}-th argument of internal trtrs")
        return x
    return one


_SMALL_TRIANGLE = 32


def _tri(a, lower):
    return fnp.tril(a) if lower else fnp.triu(a)


def solve_triangular(a, b, lower):
    return _call("solve_triangular", a, b, lower=bool(lower))


def _solve_tri_transposed(a, g, lower):
    """T^{-T} g: the transposed triangle is a triangle of the other kind."""
    return solve_triangular(_mT(a), g, not lower)


_p = defprim("solve_triangular", _solve_triangular, 2, cost="linalg")
defvjp(_p, lambda g, ans, a, b, lower:
       -_tri(_mm(_solve_tri_transposed(a, g, lower), _mT(ans)), lower),
       lambda g, ans, a, b, lower: _solve_tri_transposed(a, g, lower))
defjvp(_p, lambda t, ans, a, b, lower: -solve_triangular(a, _mm(_tri(t, lower), ans), lower),
       lambda t, ans, a, b, lower: solve_triangular(a, t, lower))
defshape(_p, shapes.solve_triangular)
defbatch(_p, batching.batched_linalg)


# -- triangular product: op(T) b with T the lower/upper triangle of a ----------------
def _triangular_matmul(a, b, lower, trans):
    t = np.tril(a) if lower else np.triu(a)
    return np.matmul(np.swapaxes(t, -1, -2) if trans else t, b)


def triangular_matmul(a, b, lower, trans):
    """op(T) b, T = tril(a) or triu(a), op(T) = T or T^T: BLAS trmm in the VM,
    half the work of a general product."""
    return _call("triangular_matmul", a, b, lower=bool(lower), trans=bool(trans))


_p = defprim("triangular_matmul", _triangular_matmul, 2, cost="linalg")
defvjp(_p, lambda g, ans, a, b, lower, trans:
       _tri(_mm(b, _mT(g)) if trans else _mm(g, _mT(b)), lower),
       lambda g, ans, a, b, lower, trans: triangular_matmul(a, g, lower, not trans))
defjvp(_p, lambda t, ans, a, b, lower, trans: triangular_matmul(t, b, lower, trans),
       lambda t, ans, a, b, lower, trans: triangular_matmul(a, t, lower, trans))
defshape(_p, shapes.triangular_matmul)
defbatch(_p, batching.batched_linalg)


# -- cholesky: a = L L^T, reading a's lower triangle ----------------------------------
def _phi(x):
    """The lower triangle with its diagonal halved."""
    if type(x) is np.ndarray and x.dtype.kind == "f" and current_builder() is None:
        # a plain sweep's: halved in place (x - x / 2 is x / 2 exactly) instead
        # of subtracting an n x n matrix made of the diagonal and an identity
        out = fnp.tril(x)
        if out is x or not out.flags.writeable:
            out = out.copy()
        i = np.arange(x.shape[-1])
        out[..., i, i] *= 0.5
        return out
    return fnp.tril(x) - 0.5 * _diag_embed(_diag_part(x))


def _cholesky_jvp(t, L, a):
    s = _symmetric_from_lower(t)
    inner = solve_triangular(L, _mH(solve_triangular(L, _mH(s), True)), True)
    return _mm(L, _phi(inner))


def _cholesky_vjp(g, L, a):
    lc = fnp.conj(L) if fnp.iscomplexobj(L) else L  # L^H is conj(L)^T
    p = _phi(triangular_matmul(lc, g, True, True))  # L^H g with trmm: L is triangular
    p = _solve_tri_transposed(lc, _mH(_solve_tri_transposed(lc, _mH(p), True)), True)
    return _lower_read(p)


_p = defprim("cholesky", lambda a: np.linalg.cholesky(a), 1, cost="linalg")
defvjp(_p, _sesquilinear(_cholesky_vjp))
defjvp(_p, _cholesky_jvp)
defshape(_p, shapes.factor)
defbatch(_p, batching.batched_linalg)


# -- eigh: packed [w; V] ----------------------------------------------------------------
def _eigh(a, lower):
    w, v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    return np.concatenate([w[..., None, :], v], axis=-2)


def _split_eig(packed):
    return packed[..., 0, :], packed[..., 1:, :]


def _read(t, lower):
    return _symmetric_from_lower(t) if lower else _mT(_symmetric_from_lower(_mT(t)))


def _read_transposed(p, lower):
    return _lower_read(p) if lower else _mT(_lower_read(_mT(p)))


def _eigh_jvp(t, ans, a, lower):
    w, v = _split_eig(ans)
    k = _mm(_mH(v), _mm(_read(t, lower), v))
    if fnp.iscomplexobj(ans):  # real eigenvalues; eigenvectors' phases fixed as JAX's
        w = fnp.real(w)
        dw = fnp.real(_diag_part(k)) + 0j
    else:
        dw = _diag_part(k)
    dv = _mm(v, _gap_product(_inverse_gaps(w), k))
    return fnp.concatenate([fnp.expand_dims(dw, -2), dv], axis=-2)


def _eigh_vjp(g, ans, a, lower):
    w, v = _split_eig(ans)
    gw, gv = _split_eig(g)
    if fnp.iscomplexobj(ans):
        w, gw = fnp.real(w), fnp.real(gw)
    inner = _diag_embed(gw) + _gap_product(_inverse_gaps(w), _mm(_mH(v), gv))
    return _read_transposed(_mm(v, _mm(inner, _mH(v))), lower)


_p = defprim("eigh", _eigh, 1, cost="linalg")
defvjp(_p, _sesquilinear(_eigh_vjp))
defjvp(_p, _eigh_jvp)
defshape(_p, shapes.eigen)
defbatch(_p, batching.batched_linalg)


# -- eig: real, distinct eigenvalues; packed [w; V] with unit columns -------------------
def _eig(a):
    w, v = np.linalg.eig(a)
    if np.iscomplexobj(w) and np.any(np.imag(w) != 0):
        raise np.linalg.LinAlgError("eig: the matrix has complex eigenvalues; fastad "
                                    "differentiates eig only where they are real and distinct")
    w, v = np.real(w).astype(a.dtype), np.real(v).astype(a.dtype)
    return np.concatenate([w[..., None, :], v], axis=-2)


def _eig_jvp(t, ans, a):
    w, v = _split_eig(ans)
    k = fnp.solve_(v, _mm(t, v))
    dv = _mm(v, _inverse_gaps(w) * k)
    dv = dv - v * fnp.sum(v * dv, axis=-2, keepdims=True)  # columns stay unit vectors
    return fnp.concatenate([fnp.expand_dims(_diag_part(k), -2), dv], axis=-2)


def _eig_vjp(g, ans, a):
    w, v = _split_eig(ans)
    gw, gv = _split_eig(g)
    gv = gv - v * fnp.sum(v * gv, axis=-2, keepdims=True)
    inner = _diag_embed(gw) + _gap_product(_inverse_gaps(w), _mm(_mT(v), gv))
    return fnp.solve_(_mT(v), _mm(inner, _mT(v)))  # V^{-T} inner V^T


_p = defprim("eig", _eig, 1, cost="linalg")
defvjp(_p, _eig_vjp)
defjvp(_p, _eig_jvp)
defshape(_p, shapes.eigen)
defbatch(_p, batching.batched_linalg)


# -- eig with complex eigenvalues: packed complex [w; V], NumPy's unit columns ------------
# The eigenvectors' phase is NumPy's (LAPACK's); their derivative is taken in the
# gauge where each column's change is orthogonal to it (v^H dv = 0), so only
# functions of the eigenvectors that do not depend on their phases (|v|, v v^H,
# products of a column and its conjugate) have a derivative that is theirs.
def _eig_complex(a):
    w, v = np.linalg.eig(a)
    dtype = np.result_type(a.dtype, np.complex64)
    return np.concatenate([w[..., None, :], v], axis=-2).astype(dtype)


def _unit_gauge(v, dv):
    return dv - v * fnp.sum(fnp.conj(v) * dv, axis=-2, keepdims=True)


def _eig_complex_jvp(t, ans, a):
    w, v = _split_eig(ans)
    k = fnp.solve_(v, _mm(t, v))
    dv = _unit_gauge(v, _mm(v, _inverse_gaps(w) * k))
    return fnp.concatenate([fnp.expand_dims(_diag_part(k), -2), dv], axis=-2)


def _eig_complex_vjp(g, ans, a):
    w, v = _split_eig(ans)
    gw, gv = _split_eig(g)
    gv = gv - fnp.conj(v) * fnp.sum(gv * v, axis=-2, keepdims=True)  # the gauge's transpose
    inner = _diag_embed(gw) + _gap_product(_inverse_gaps(w), _mm(_mT(v), gv))
    ga = fnp.solve_(_mT(v), _mm(inner, _mT(v)))  # V^{-T} inner V^T
    return ga if np.iscomplexobj(a.value if hasattr(a, "value") else a) else fnp.real(ga)


_p = defprim("numpy.linalg.eig_complex", _eig_complex, 1, cost="linalg",
             doc="eig with complex eigenvalues; a NumPy call in compiled code")
_p.builtin = False  # runs as a NumPy call between compiled segments, as users' primitives do
defvjp(_p, _eig_complex_vjp)
defjvp(_p, _eig_complex_jvp)
defbatch(_p, batching.batched_linalg)


# -- svd (reduced): packed [s; U; V], a = U diag(s) V^T ----------------------------------
def _svd(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return np.concatenate([s[..., None, :], u, np.swapaxes(vh, -1, -2)], axis=-2)


def _split_svd(packed, m):
    return packed[..., 0, :], packed[..., 1:1 + m, :], packed[..., 1 + m:, :]


def _svd_f(s):
    """F[..., i, j] = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it."""
    return _inverse_gaps(fnp.square(s))


def _svd_complex(ans, m):
    """s, U and V of the packed result, V itself: the packed V is V^H's
    transpose, its conjugate for a complex matrix."""
    s, u, v = _split_svd(ans, m)
    if fnp.iscomplexobj(ans):
        return fnp.real(s), u, fnp.conj(v), True
    return s, u, v, False


def _svd_jvp(t, ans, a):
    m, n = fnp.shape(a)[-2:]
    s, u, v, cplx = _svd_complex(ans, m)
    f = _svd_f(s)
    row = fnp.expand_dims(s, -2)  # row[..., i, j] = s_j
    ds_mat = _mm(_mH(u), _mm(t, v))
    dss = row * ds_mat
    sds = _mT(row) * ds_mat
    du = _mm(u, f * (dss + _mH(dss)))
    dv = _mm(v, f * (sds + _mH(sds)))
    if cplx:  # the phases of U's and V's columns, fixed as JAX fixes them
        du = du + _mm(u, 0.5 * (ds_mat - _mH(ds_mat)) * _diag_embed(1.0 / s))
    if m > n:
        tv = _mm(t, v)
        du = du + (tv - _mm(u, _mm(_mH(u), tv))) / row
    if n > m:
        tu = _mm(_mH(t), u)
        dv = dv + (tu - _mm(v, _mm(_mH(v), tu))) / row
    ds = _diag_part(ds_mat)
    if cplx:
        ds, dv = fnp.real(ds) + 0j, fnp.conj(dv)
    return fnp.concatenate([fnp.expand_dims(ds, -2), du, dv], axis=-2)


def _svd_vjp(g, ans, a):
    m, n = fnp.shape(a)[-2:]
    s, u, v, cplx = _svd_complex(ans, m)
    gs, gu, gv = _split_svd(g, m)
    if cplx:
        gs, gv = fnp.real(gs), fnp.conj(gv)
    f = _svd_f(s)
    row = fnp.expand_dims(s, -2)
    uhgu = _mm(_mH(u), gu)
    ju = _gap_product(f, uhgu - _mm(_mH(gu), u))
    jv = _gap_product(f, _mm(_mH(v), gv) - _mm(_mH(gv), v))
    core = ju * row + _diag_embed(gs) + _mT(row) * jv
    if cplx:  # the gauge: a loss that sees the columns' phases (PyTorch's svd_backward)
        core = core + _diag_embed(_over_values(1j * fnp.imag(_diag_part(uhgu)), s))
    out = _mm(u, _mm(core, _mH(v)))
    if m > n:
        out = out + _mm(_over_values(gu - _mm(u, _mm(_mH(u), gu)), row), _mH(v))
    if n > m:
        out = out + _mm(u, _mH(_over_values(gv - _mm(v, _mm(_mH(v), gv)), row)))
    return out


_p = defprim("svd", _svd, 1, cost="linalg")
defvjp(_p, _sesquilinear(_svd_vjp))
defjvp(_p, _svd_jvp)
defshape(_p, shapes.svd)
defbatch(_p, batching.batched_linalg)


# -- qr (reduced, m >= n): packed [Q; R] --------------------------------------------------
def _qr(a):
    if a.shape[-2] < a.shape[-1]:
        raise np.linalg.LinAlgError("qr: fastad differentiates the reduced QR of matrices "
                                    "with at least as many rows as columns")
    q, r = np.linalg.qr(a, mode="reduced")
    return np.concatenate([q, r], axis=-2)


def _split_qr(packed, m):
    return packed[..., :m, :], packed[..., m:, :]


def _qr_jvp(t, ans, a):
    m = fnp.shape(a)[-2]
    q, r = _split_qr(ans, m)
    y = _mT(_solve_tri_transposed(r, _mT(t), False))  # t R^{-1}
    c = _mm(_mH(q), y)
    low = fnp.tril(c, -1)
    omega = low - _mH(low)
    if fnp.iscomplexobj(ans):  # R's diagonal stays real (LAPACK's): Q^H dQ takes i Im
        omega = omega + _diag_embed(1j * fnp.imag(_diag_part(c)))
    dq = _mm(q, omega - c) + y
    dr = _mm(c - omega, r)
    return fnp.concatenate([dq, dr], axis=-2)


def _qr_vjp(g, ans, a):
    m = fnp.shape(a)[-2]
    q, r = _split_qr(ans, m)
    gq, gr = _split_qr(g, m)
    mm = _mm(gr, _mH(r)) - _mm(_mH(q), gq)
    gc = mm - fnp.tril(mm - _mH(mm), -1)
    if fnp.iscomplexobj(ans):
        gc = gc - _diag_embed(1j * fnp.imag(_diag_part(mm)))
    gy = gq + _mm(q, gc)
    return _mH(solve_triangular(r, _mH(gy), False))  # gy R^{-H}


_p = defprim("qr", _qr, 1, cost="linalg")
defvjp(_p, _sesquilinear(_qr_vjp))
defjvp(_p, _qr_jvp)
defshape(_p, shapes.qr)
defbatch(_p, batching.batched_linalg)


# -- the factors JAX does not differentiate either: packed rows ---------------------------
def _factors_width(kind, m, n):
    k = m if kind == "qr_complete" else min(m, n)
    return k, (max(k, n) if kind != "svd_full" else max(m, n))


def _factors(a, kind):
    """NumPy's complete QR (``kind`` "qr_complete"), reduced QR of any shape
    ("qr"), or SVD with full matrices ("svd_full"), packed as rows of one
    width (zero-padded): [Q; R], or [s; U; Vh]."""
    m, n = a.shape[-2:]
    k, width = _factors_width(kind, m, n)
    if kind == "svd_full":
        u, s, vh = np.linalg.svd(a, full_matrices=True)
        parts = [s[..., None, :], u, vh]
    else:
        parts = list(np.linalg.qr(a, mode="complete" if kind == "qr_complete" else "reduced"))
    pad = [(0, 0)] * (a.ndim - 1)
    return np.concatenate([np.pad(x, pad + [(0, width - x.shape[-1])]) for x in parts], axis=-2)


def _factors_shape(a, kind):
    m, n = a[-2:]
    k, width = _factors_width(kind, m, n)
    rows = 1 + m + n if kind == "svd_full" else m + k
    return a[:-2] + (rows, width)


def _no_derivative(g, ans, a, kind=""):
    # JAX has none either: the extra columns (of Q, U, V) are any orthonormal
    # completion, and a wide QR's R has no unique derivative
    raise NotImplementedError(
        f"fastad: {kind.replace('_', ' ')} has no derivative (the completed orthonormal "
        "columns are not unique; JAX refuses it too): differentiate the reduced "
        "factorization (qr(mode='reduced') of a tall matrix, svd(full_matrices=False))")


_p = defprim("linalg_factors", _factors, 1, cost="linalg")
defvjp(_p, _no_derivative)
defjvp(_p, _no_derivative)
defshape(_p, _factors_shape)
defbatch(_p, batching.batched_linalg)


# -- pinv (Golub-Pereyra: constant rank) ---------------------------------------------------
def _pinv_jvp(t, p, a):
    eye_m = fnp.eye_like(_mm(a, p))
    eye_n = fnp.eye_like(_mm(p, a))
    return (-_mm(p, _mm(t, p))
            + _mm(_mm(p, _mH(p)), _mm(_mH(t), eye_m - _mm(a, p)))
            + _mm(eye_n - _mm(p, a), _mm(_mH(t), _mm(_mH(p), p))))


def _pinv_vjp(g, p, a):
    eye_m = fnp.eye_like(_mm(a, p))
    eye_n = fnp.eye_like(_mm(p, a))
    return (-_mm(_mH(p), _mm(g, _mH(p)))
            + _mm(eye_m - _mm(a, p), _mm(_mH(g), _mm(p, _mH(p))))
            + _mm(_mm(_mH(p), p), _mm(_mH(g), eye_n - _mm(p, a))))


_p = defprim("pinv", lambda a: np.linalg.pinv(a), 1, cost="linalg")
defvjp(_p, _sesquilinear(_pinv_vjp))
defjvp(_p, _pinv_jvp)
defshape(_p, shapes.pinv)
defbatch(_p, batching.batched_linalg)


# -- Sylvester equation a x + x b = q, and sqrtm ----------------------------------------------
def _sylvester(a, b, q):
    """a x + x b = q as one linear system in x's entries (row-major):
    (a kron I + I kron b^T) vec(x) = vec(q), batched by NumPy.  The system
    has (n m)^2 entries, fine for the small matrices this is meant for."""
    n, m = np.shape(a)[-1], np.shape(b)[-1]
    batch = np.broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2], np.shape(q)[:-2])
    a = np.broadcast_to(a, batch + (n, n))
    b = np.broadcast_to(b, batch + (m, m))
    op = (np.einsum("...ij,kl->...ikjl", a, np.eye(m, dtype=a.dtype))
          + np.einsum("ij,...lk->...ikjl", np.eye(n, dtype=b.dtype), b))
    rhs = np.broadcast_to(q, batch + (n, m)).reshape(batch + (n * m, 1))
    return np.linalg.solve(op.reshape(batch + (n * m, n * m)), rhs).reshape(batch + (n, m))


def sylvester(a, b, q):
    return _call("sylvester", a, b, q)


def _sylvester_adjoint(g, a, b):
    return sylvester(_mT(a), _mT(b), g)


_p = defprim("sylvester", _sylvester, 3, cost="linalg")
defvjp(_p, lambda g, x, a, b, q: fnp.unbroadcast(-_mm(_sylvester_adjoint(g, a, b), _mT(x)),
                                                 fnp.shape(a)),
       lambda g, x, a, b, q: fnp.unbroadcast(-_mm(_mT(x), _sylvester_adjoint(g, a, b)),
                                             fnp.shape(b)),
       lambda g, x, a, b, q: fnp.unbroadcast(_sylvester_adjoint(g, a, b), fnp.shape(q)))
defjvp(_p, lambda t, x, a, b, q: sylvester(a, b, -_mm(t, x)),
       lambda t, x, a, b, q: sylvester(a, b, -_mm(x, t)),
       lambda t, x, a, b, q: sylvester(a, b, t))
defshape(_p, shapes.sylvester)
defbatch(_p, batching.batched_linalg)


def _sqrtm(a, complex_root=False):
    """SciPy's principal square root; of a real matrix a real one, or with
    ``complex_root`` (the front end's choice when a real matrix has none)
    the complex one, in a's complex dtype."""
    def one(m):
        root = sla.sqrtm(m)
        if complex_root:
            return root
        if np.iscomplexobj(root) and np.any(
                np.abs(np.imag(root)) > 1e-12 * max(1.0, np.abs(root).max())):
            raise np.linalg.LinAlgError("sqrtm: the matrix has no real square root")
        return np.real(root) if np.iscomplexobj(root) and not np.iscomplexobj(m) else root
    dtype = np.result_type(a, np.complex64) if complex_root else a.dtype
    return _batched(one, a).astype(dtype, copy=False)


_p = defprim("sqrtm", _sqrtm, 1, cost="linalg")
defvjp(_p, lambda g, x, a, complex_root=False: sylvester(_mT(x), _mT(x), g))
defjvp(_p, lambda t, x, a, complex_root=False: sylvester(x, x, t))
defshape(_p, shapes.factor)
defbatch(_p, batching.batched_linalg)

