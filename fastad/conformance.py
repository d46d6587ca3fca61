"""The conformance table: which NumPy/SciPy functions fastad traces,
differentiates (forward and reverse mode) and compiles natively.

Every row is measured, not written by hand: the function is traced on a
sample input, its value-and-gradient tape is recorded, and the primitives in
it are looked up in each backend's own tables (`fastad.backends.coverage`).
A compiled function whose tape holds a primitive its backend lacks runs on
the NumPy reference interpreter ("fallback").  ``python -m fastad.conformance``
prints docs/conformance.md; a test keeps that file up to date.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.signal
import scipy.special as sc

from . import api, backends, lax
from .backends.numba_backend import HOST_CALLS
from . import numpy as fnp
from .scipy import integrate as fint
from .scipy import linalg as fla
from .scipy import signal as fsignal
from .scipy import special as fsc
from .scipy import stats as fst

VEC = np.array([0.3, 0.45, 0.6, 0.75])  # inside every unary function's domain
MAT = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.5]])  # SPD, distinct eigenvalues
RECT = np.array([[1.0, 0.2], [0.3, 2.0], [0.5, 0.1]])
ROT = np.array([[0.0, -1.0, 0.2], [1.0, 0.0, 0.3], [0.1, 0.2, 0.5]])  # complex eigenvalues


@dataclass
class Row:
    name: str  # as users call it: numpy.sin, scipy.special.gammaln
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    note: str = ""


def _ufunc_rows() -> list[Row]:
    special_domain = {"arccosh": VEC + 1.0}
    rows = []
    for name in sorted(fnp._UFUNCS):
        if name == "matmul":
            continue
        ufunc = getattr(np, name)
        x = special_domain.get(name, VEC)
        if ufunc.nin == 1:
            rows.append(Row(f"numpy.{name}", ufunc, (x,)))
        else:
            rows.append(Row(f"numpy.{name}", ufunc, (x, x[::-1] + 0.1)))
    return rows


_NUMPY = [
    ("sum", lambda x: np.sum(x, axis=0), (MAT,), ""),
    ("prod", np.prod, (VEC,), ""),
    ("max", np.max, (VEC,), "ties share the derivative"),
    ("min", np.min, (VEC,), "ties share the derivative"),
    ("mean", np.mean, (VEC,), ""), ("var", np.var, (VEC,), ""), ("std", np.std, (VEC,), ""),
    ("cumsum", np.cumsum, (VEC,), ""),
    ("cumprod", np.cumprod, (VEC,), ""),
    ("diff", np.diff, (VEC,), ""),
    ("sort", np.sort, (VEC[::-1],), "order recomputed on every call"),
    ("argsort", np.argsort, (VEC[::-1],), "integer result: no derivative"),
    ("partition", lambda x: np.partition(x, 1), (VEC[::-1],), ""),
    ("argpartition", lambda x: np.argpartition(x, 1), (VEC[::-1],), "integer result"),
    ("take", lambda x: np.take(x, [2, 0]), (VEC,), "constant or traced indices"),
    ("take_along_axis", lambda x: np.take_along_axis(x, np.argsort(x), 0), (VEC[::-1],), ""),
    ("where", lambda x: np.where(x > 0.5, x, 2.0 * x), (VEC,), ""),
    ("clip", lambda x: np.clip(x, 0.4, 0.7), (VEC,), ""),
    ("dot", np.dot, (MAT, MAT), ""), ("matmul", np.matmul, (MAT, MAT), ""),
    ("tensordot", lambda a, b: np.tensordot(a, b, 1), (MAT, MAT), ""),
    ("einsum", lambda a, b: np.einsum("ij,jk->ik", a, b), (MAT, MAT),
     "'...', any number of operands, size-1 axes broadcast"),
    ("einsum (3 operands, ...)", lambda a, b: np.einsum("...ij,jk,k->...i", a, b, b[0]),
     (MAT, MAT), ""),
    ("outer", np.outer, (VEC, VEC), ""), ("inner", np.inner, (VEC, VEC), ""),
    ("kron", np.kron, (MAT, RECT), ""), ("cross", np.cross, (MAT, MAT[::-1]), "3-vectors"),
    ("trace", np.trace, (MAT,), ""), ("diagonal", np.diagonal, (MAT,), ""),
    ("diag", np.diag, (VEC,), ""), ("triu", np.triu, (MAT,), ""), ("tril", np.tril, (MAT,), ""),
    ("reshape", lambda x: np.reshape(x, (2, 2)), (VEC,), ""),
    ("transpose", np.transpose, (RECT,), ""),
    ("concatenate", lambda x: np.concatenate([x, x]), (VEC,), ""),
    ("stack", lambda x: np.stack([x, x]), (VEC,), ""),
    ("flip", np.flip, (VEC,), ""), ("roll", lambda x: np.roll(x, 1), (VEC,), ""),
    ("tile", lambda x: np.tile(x, 2), (VEC,), ""),
    ("repeat", lambda x: np.repeat(x, 2), (VEC,), ""),
    ("pad", lambda x: np.pad(x, 2, mode="reflect"), (VEC,),
     "constant, edge, reflect, symmetric, wrap"),
    ("nansum", np.nansum, (VEC,), ""), ("nanmean", np.nanmean, (VEC,), ""),
    ("nanprod", np.nanprod, (VEC,), ""), ("nanmax", np.nanmax, (VEC,), ""),
    ("nanmin", np.nanmin, (VEC,), ""),
    ("polyval", np.polyval, (VEC, VEC), ""),
    ("interp", lambda x: np.interp(x, [0.0, 0.5, 1.0], [1.0, 3.0, 2.0]), (VEC,),
     "differentiable in x, fp and the breakpoints xp (a traced xp: NumPy's formula on each x's segment, found by comparisons)"),
    ("convolve", np.convolve, (VEC, VEC[:3]), ""), ("correlate", np.correlate, (VEC, VEC[:3]), ""),
    ("linalg.solve", np.linalg.solve, (MAT, MAT[0]), ""), ("linalg.inv", np.linalg.inv, (MAT,), ""),
    ("linalg.det", np.linalg.det, (MAT,), "gradient the adjugate, finite at singular matrices"), ("linalg.slogdet", np.linalg.slogdet, (MAT,), ""),
    ("linalg.norm", np.linalg.norm, (MAT,), "vector ords, 'fro'"),
    ("linalg.norm (ord=2, 'nuc')", lambda a: np.linalg.norm(a, 2) + np.linalg.norm(a, "nuc"),
     (MAT,), "distinct singular values; also 1, -1, inf, -inf, -2, N-d with axis="),
    ("linalg.lstsq", lambda a, b: np.linalg.lstsq(a, b)[0], (RECT, VEC[:3]),
     "full rank; residuals too; rank is a plain integer"),
    ("linalg.cond", np.linalg.cond, (MAT,), ""),
    ("linalg.multi_dot", lambda a: np.linalg.multi_dot([a, a, a]), (MAT,), ""),
    ("linalg.cholesky", np.linalg.cholesky, (MAT,), "reads the lower triangle"),
    ("linalg.eigh", np.linalg.eigh, (MAT,), "distinct eigenvalues for the vectors"),
    ("linalg.eigvalsh", np.linalg.eigvalsh, (MAT,), ""),
    ("linalg.eig", np.linalg.eig, (MAT,), "distinct eigenvalues"),
    ("linalg.eig (complex eigenvalues)", lambda a: np.linalg.eig(a)[0], (ROT,),
     "complex output, as NumPy's; eigenvectors' derivative up to their phases"),
    ("linalg.eigvals", np.linalg.eigvals, (MAT,), "distinct eigenvalues"),
    ("linalg.svd", lambda a: np.linalg.svd(a, full_matrices=False), (RECT,),
     "reduced; distinct singular values (full_matrices of a rectangular matrix: values, no derivative, as JAX's)"),
    ("linalg.qr", np.linalg.qr, (RECT,), "reduced, m >= n (complete, or wide: values, no derivative, as JAX's)"),
    ("linalg.pinv", np.linalg.pinv, (RECT,), "constant rank"),
    ("linalg.matrix_power", lambda a: np.linalg.matrix_power(a, 3), (MAT,), ""),
    # fastad.numpy's drop-in surface (tests/test_numpy_dropin.py)
    ("remainder, %", lambda x: np.remainder(x, 0.2) + x % 0.25, (VEC,),
     "derivative 1 in x, -floor(x/y) in y, off the jumps"),
    ("fmod", lambda x: np.fmod(x, 0.2), (VEC,), "off the jumps"),
    ("floor_divide", lambda x: np.floor_divide(x, 0.2) + x, (VEC,), "derivative 0"),
    ("radians, degrees", lambda x: np.radians(x) + np.degrees(x), (VEC,), ""),
    ("sinc", np.sinc, (VEC,), ""), ("logaddexp2", np.logaddexp2, (VEC, VEC[::-1]), ""),
    ("heaviside", lambda x: np.heaviside(x - 0.5, 0.5) * x, (VEC,), "derivative 0 in x"),
    ("nan_to_num", np.nan_to_num, (VEC,), ""),
    ("average", lambda x: np.average(x, weights=VEC[::-1]), (VEC,), ""),
    ("median", np.median, (VEC,), "order recomputed on every call"),
    ("quantile, percentile", lambda x: np.quantile(x, 0.3) + np.percentile(x, 70.0), (VEC,),
     "q constant; linear, lower, higher, nearest, midpoint"),
    ("nanmedian, nanquantile", np.nanmedian, (VEC,), "the NaN pattern is a guard"),
    ("nanvar, nanstd", lambda x: np.nanvar(x) + np.nanstd(x), (VEC,), ""),
    ("nancumsum, nancumprod", lambda x: np.nancumsum(x) + np.nancumprod(x), (VEC,), ""),
    ("ptp", np.ptp, (VEC,), ""), ("cov", np.cov, (MAT,), "no fweights/aweights"),
    ("corrcoef", np.corrcoef, (MAT,), ""),
    ("trapezoid", np.trapezoid, (VEC,), ""),
    ("gradient", np.gradient, (VEC,), "scalar spacings or coordinates; edge_order 1, 2"),
    ("ediff1d", np.ediff1d, (VEC,), ""),
    ("vander", lambda x: np.vander(x, 3), (VEC,), ""),
    ("polyfit", lambda y: np.polyfit(VEC, y, 2), (VEC[::-1],), "no w=, full=, cov="),
    ("polymul, polyder, polyint", lambda p: (np.polyder(np.polymul(p, p)), np.polyint(p)),
     (VEC,), ""),
    ("roots", np.roots, (np.poly(VEC[:3]),), "real, distinct roots"),
    ("unwrap", np.unwrap, (VEC * 5.0,), ""),
    ("linspace", lambda a: fnp.linspace(a[0], a[1], 5), (VEC,), "traced endpoints"),
    ("arange", lambda a: fnp.arange(a[0], 2.0, 0.5), (VEC,),
     "traced start/step: the length is a guard"),
    ("meshgrid", lambda x: np.meshgrid(x, x)[0], (VEC,), ""),
    ("append, insert, delete", lambda x: np.delete(np.insert(np.append(x, x), 1, x[0]), 2),
     (VEC,), ""),
    ("block, column_stack", lambda x: np.column_stack([x, x]) @ np.block([[x[:2]]]).T, (VEC,),
     ""),
    ("r_, c_", lambda x: (fnp.r_[x, 1.0], fnp.c_[x, x]), (VEC,), "no string directives"),
    ("select, piecewise", lambda x: np.select([x > 0.5], [x ** 2], x), (VEC,), ""),
    ("compress, extract", lambda x: np.compress(x > 0.5, x), (VEC,), "mask pattern a guard"),
    ("boolean mask x[x > 0]", lambda x: x[x > 0.5], (VEC,), "the mask pattern is a guard"),
    ("argmax as an index", lambda x: x[np.argmax(x)], (VEC,), "a traced integer: a gather, no guard"),
    ("array([t1, t2, ...])", lambda x: fnp.array([x[0], 2.0 * x[1]]), (VEC,), ""),
    ("fft.hfft, fft.ihfft", lambda x: np.fft.hfft(x) + np.fft.ihfft(x).real.sum(), (VEC,), ""),
]

_SCIPY = [
    *[(f"special.{u.__name__ if u is not sc.psi else 'digamma'}", u,
       (VEC * 2.0 if u in (sc.erfcinv,) else VEC,), "") for u in (
        sc.gammaln, sc.gamma, sc.psi, sc.erf, sc.erfc, sc.erfinv, sc.erfcinv, sc.expit,
        sc.log_expit, sc.logit, sc.ndtr, sc.log_ndtr, sc.ndtri, sc.i0, sc.i1, sc.i0e, sc.i1e,
        sc.entr)],
    *[(f"special.{u.__name__}", u, (VEC, VEC[::-1]), "") for u in (
        sc.xlogy, sc.xlog1py, sc.beta, sc.betaln, sc.rel_entr)],
    ("special.iv", lambda x: sc.iv(2.5, x), (VEC,), "no derivative in the order"),
    ("special.ive", lambda x: sc.ive(1.5, x), (VEC,), "no derivative in the order"),
    ("special.polygamma", lambda x: fsc.polygamma(2, x), (VEC,), "fastad.scipy.special"),
    ("special.gammainc", lambda x: sc.gammainc(1.5, x), (VEC,), "differentiable in x only"),
    ("special.gammaincc", lambda x: sc.gammaincc(1.5, x), (VEC,), "differentiable in x only"),
    ("special.stdtr", lambda x: sc.stdtr(3.0, x), (VEC,), "differentiable in t only"),
    ("special.betainc", lambda x: sc.betainc(2.0, 3.0, x), (VEC,), "differentiable in x only"),
    ("special.logsumexp", fsc.logsumexp, (VEC,), "fastad.scipy.special; b=, return_sign="),
    ("special.softmax", fsc.softmax, (VEC,), "fastad.scipy.special"),
    ("special.log_softmax", fsc.log_softmax, (VEC,), "fastad.scipy.special"),
    ("stats.norm.logpdf", fst.norm.logpdf, (VEC, 0.2, 1.5), ""),
    ("stats.norm.cdf", fst.norm.cdf, (VEC, 0.2, 1.5), "also logcdf, sf, logsf"),
    ("stats.norm.ppf", fst.norm.ppf, (VEC, 0.2, 1.5), ""),
    ("stats.t.logpdf", fst.t.logpdf, (VEC, 3.0, 0.2, 1.5), ""),
    ("stats.t.cdf", lambda x: fst.t.cdf(x, 3.0), (VEC,), "not in df"),
    ("stats.gamma.logpdf", fst.gamma.logpdf, (VEC, 2.0), ""),
    ("stats.gamma.cdf", lambda x: fst.gamma.cdf(x, 2.0), (VEC,), "not in a"),
    ("stats.beta.logpdf", fst.beta.logpdf, (VEC, 2.0, 3.0), ""),
    ("stats.beta.cdf", lambda x: fst.beta.cdf(x, 2.0, 3.0), (VEC,), "not in a, b"),
    ("stats.poisson.logpmf", lambda mu: fst.poisson.logpmf(np.array([0.0, 1, 2, 3]), mu), (VEC,),
     "in mu"),
    ("stats.poisson.cdf", lambda mu: fst.poisson.cdf(np.array([0.0, 1, 2, 3]), mu), (VEC,),
     "in mu"),
    ("stats.multivariate_normal.logpdf", fst.multivariate_normal.logpdf, (MAT, VEC[:3], MAT), ""),
    ("linalg.cholesky", fla.cholesky, (MAT,), ""),
    ("linalg.cho_solve", lambda a, b: fla.cho_solve(fla.cho_factor(a), b), (MAT, MAT), ""),
    ("linalg.solve_triangular", fla.solve_triangular, (MAT, MAT), ""),
    ("linalg.solve_sylvester", fla.solve_sylvester, (MAT, MAT, MAT), ""),
    ("linalg.sqrtm", fla.sqrtm, (MAT,),
     "a complex root where a real matrix has no real one, as SciPy's"),
    ("linalg.eigh", fla.eigh, (MAT,), ""), ("linalg.svd", fla.svd, (MAT,), ""),
    ("linalg.qr", fla.qr, (MAT,), "economic"),
    ("signal.convolve", fsignal.convolve, (MAT, RECT), "full, same, valid; N-d"),
    ("signal.convolve (axes, dot_axes)", lambda a, b: fsignal.convolve(
        a, b, axes=[[0], [0]], dot_axes=[[1], [1]]), (MAT, MAT[:2]),
     "autograd's convention"),
    ("special.logsumexp (plain SciPy)", lambda x: sc.logsumexp(x) + sc.softmax(x)[0], (VEC,),
     "SciPy's own, dispatched; also log_softmax, multigammaln"),
    ("special.j0, j1, jn, y0, y1, yn", lambda x: sc.j0(x) + sc.jn(2, x) + sc.y1(x), (VEC,),
     "constant integer order; NumPy calls in compiled code"),
    ("special.rgamma, gammasgn", lambda x: sc.rgamma(x) * sc.gammasgn(x), (VEC,), ""),
    ("special.multigammaln", lambda x: fsc.multigammaln(x + 2.0, 3), (VEC,), "d constant"),
    ("stats.chi2.logpdf", fst.chi2.logpdf, (VEC, 3.0), "also pdf, cdf"),
    ("stats.dirichlet.logpdf", fst.dirichlet.logpdf, (VEC[:3] / VEC[:3].sum(), VEC[:3] + 1.0),
     "SciPy's convention: components on x's first axis"),
    ("stats.multivariate_normal.entropy", lambda c: fst.multivariate_normal.entropy(None, c),
     (MAT,), ""),
    ("integrate.odeint", lambda y0: fint.odeint(lambda y, t: -y * 0.5, y0, VEC), (VEC[:2],),
     "reverse: adjoint method; forward: sensitivities; any order"),
    ("integrate.solve_ivp", lambda y0: fint.solve_ivp(lambda t, y: -y * 0.5, (0.0, 1.0), y0,
                                                      t_eval=VEC).y, (VEC[:2],),
     "RK45 (one while loop) and RK4 (a scan): derivatives of the discrete solution"),
    ("linalg.solve_banded", lambda ab, b: fla.solve_banded((1, 0), ab, b), (RECT.T, VEC[:3]),
     "solved densely"),
    ("signal.correlate", fsignal.correlate, (MAT, RECT), ""),
    ("signal.convolve2d, correlate2d", lambda a, b: fsignal.convolve2d(a, b, "same", fillvalue=1.5)
     + fsignal.correlate2d(a, b, "same"), (MAT, RECT), 'boundary="fill" (any fillvalue)'),
    ("signal.fftconvolve", fsignal.fftconvolve, (MAT, RECT), "computed directly"),
    ("special.exp1, expi, erfcx, kv, kve, expn", lambda x: sc.exp1(x) + sc.expi(x)
     + sc.erfcx(x) + sc.kv(1.5, x) + sc.kve(0.5, x) + sc.expn(2, x), (VEC,),
     "constant orders; NumPy calls in compiled code"),
    ("special.kl_div, huber, pseudo_huber", lambda x: sc.kl_div(x, 0.5) + sc.huber(0.5, x)
     + sc.pseudo_huber(0.5, x), (VEC,), "SciPy's ufuncs, composed"),
    ("special.poch, boxcox, boxcox1p, inv_boxcox", lambda x: sc.poch(x, 1.5) + sc.boxcox(x, 0.3)
     + sc.boxcox1p(x, 0.3) + sc.inv_boxcox(x, 0.3), (VEC,), "also inv_boxcox1p"),
    ("special.cosm1, powm1, exprel, exp10", lambda x: sc.cosm1(x) + sc.powm1(x, 1.5)
     + sc.exprel(x) + sc.exp10(x), (VEC,), "also exp2, expm1, log1p, cbrt"),
    ("stats.weibull_min.logpdf, invgamma.logpdf", lambda x: fst.weibull_min.logpdf(x, 1.5)
     + fst.invgamma.logpdf(x, 2.0), (VEC,), "also cdf; invgamma's not in a"),
    ("stats.entropy, zscore", lambda p: fst.entropy(p, p[::-1]) + fst.zscore(p), (VEC,),
     "base, axis, ddof"),
    ("special.spence, dawsn, sici, fresnel", lambda x: sc.spence(x) + sc.dawsn(x) + sc.sici(x)[0]
     + sc.fresnel(x)[1], (VEC,), "NumPy calls in compiled code"),
    ("special.zeta, owens_t, hyp1f1", lambda x: sc.zeta(2.5, x) + sc.owens_t(x, x)
     + sc.hyp1f1(0.5, 1.5, x), (VEC,), "in zeta's q, hyp1f1's x; also loggamma, factorial, comb"),
    ("stats.gumbel_r.logpdf, gumbel_l.cdf", lambda x: fst.gumbel_r.logpdf(x)
     + fst.gumbel_l.cdf(x), (VEC,), "also logcdf, sf, logsf, ppf"),
    ("stats.sem, gaussian_kde", lambda x: fst.sem(x) + fst.gaussian_kde(x).logpdf(x), (VEC,),
     "rankdata and mode: no derivative"),
    ("linalg.solve", lambda a, b: fla.solve(a, b, assume_a="pos", lower=True), (MAT, VEC[:3]),
     "assume_a, lower, transposed as SciPy's"),
    ("linalg.lu_factor, lu_solve", lambda a, b: fla.lu_solve(fla.lu_factor(a), b), (MAT, VEC[:3]),
     "pivots found on the values (a guard)"),
    ("linalg.lu", lambda a: fla.lu(a)[1] @ fla.lu(a)[2], (MAT,),
     "pivots found on the values (a guard); square"),
    ("linalg.eigh (generalized)", lambda a, b: fla.eigh(a, b)[0], (MAT, MAT + np.eye(3)),
     "a x = w b x, by Cholesky reduction"),
    ("linalg.eigvalsh, svdvals", lambda a: fla.eigvalsh(a) + fla.svdvals(a), (MAT,), ""),
    ("linalg.pinv, pinvh", lambda a: fla.pinv(a) + fla.pinvh(a), (MAT,), "atol, rtol"),
    ("linalg.lstsq", lambda a, b: fla.lstsq(a, b)[0], (RECT, VEC[:3]), ""),
    ("linalg.toeplitz, circulant, hankel", lambda c: fla.toeplitz(c) + fla.circulant(c)
     + fla.hankel(c), (VEC,), "also companion, block_diag, khatri_rao"),
    ("linalg.solve_toeplitz, solve_circulant", lambda c, b: fla.solve_toeplitz(c, b)
     + fla.solve_circulant(c, b), (VEC + 1.0, VEC), "solved densely"),
    ("linalg.cosm, sinm, coshm, sinhm", lambda a: fla.cosm(a) + fla.sinhm(a), (MAT,),
     "also tanm, tanhm; from expm"),
    ("linalg.expm_frechet", lambda a: fla.expm_frechet(a, MAT)[1], (0.3 * MAT,),
     "a forward-mode pass of expm"),
    ("linalg.polar, orthogonal_procrustes", lambda a: fla.polar(a)[1]
     + fla.orthogonal_procrustes(a, MAT)[0], (MAT,), "from the SVD"),
    ("linalg.solve_continuous_lyapunov", lambda a: fla.solve_continuous_lyapunov(a, MAT), (-MAT,),
     "also solve_discrete_lyapunov (the n^2 system, densely)"),
]

ZVEC = VEC + 1j * VEC[::-1]  # complex samples
ZMAT = MAT + 0.5j * MAT[::-1]
ZHPD = ZMAT @ ZMAT.conj().T + 3.0 * np.eye(3)  # Hermitian positive definite

_COMPLEX = [
    ("real", np.real, (ZVEC,), ""), ("imag", np.imag, (ZVEC,), ""),
    ("conj", np.conj, (ZVEC,), ""), ("angle", np.angle, (ZVEC,), ""),
    ("absolute (complex)", np.abs, (ZVEC,), "derivative undefined at 0"),
    ("exp, log, sqrt (complex)", lambda z: np.exp(z) * np.log(z) + np.sqrt(z), (ZVEC,),
     "principal branches"),
    ("matmul (complex)", np.matmul, (ZMAT, ZMAT), ""),
    ("linalg.solve (complex)", np.linalg.solve, (ZMAT, ZVEC[:3]), ""),
    ("linalg.cholesky (complex)", np.linalg.cholesky, (ZHPD,), "Hermitian: reads the lower "
     "triangle and the diagonal's real part"),
    ("linalg.eigh (complex)", lambda a: (np.linalg.eigvalsh(a), np.abs(np.linalg.eigh(a)[1])),
     (ZMAT,), "Hermitian from the lower triangle; eigenvectors up to their phases"),
    ("linalg.svd (complex)", lambda a: (np.linalg.svd(a, compute_uv=False),
                                        np.abs(np.linalg.svd(a)[0])), (ZMAT,),
     "distinct singular values; singular vectors up to their phases"),
    ("linalg.det, slogdet (complex)", lambda a: (np.linalg.det(a), np.linalg.slogdet(a)[0],
                                                 np.linalg.slogdet(a)[1]), (ZMAT,),
     "slogdet's sign a phase on the unit circle"),
    ("linalg.qr (complex)", lambda a: np.abs(np.linalg.qr(a)[1]), (ZMAT,), "reduced, m >= n"),
    ("linalg.pinv, lstsq (complex)", lambda a: (np.linalg.pinv(a[:, :2]),
                                                np.linalg.lstsq(a[:, :2], ZVEC[:3])[0]),
     (ZMAT,), "constant rank"),
    ("fft.fft", np.fft.fft, (ZVEC,), "n=, axis=, norm="),
    ("fft.ifft", np.fft.ifft, (ZVEC,), ""),
    ("fft.rfft", np.fft.rfft, (VEC,), ""),
    ("fft.irfft", np.fft.irfft, (ZVEC,), ""),
    ("fft.fft2", np.fft.fft2, (ZMAT,), "s=, axes="), ("fft.ifft2", np.fft.ifft2, (ZMAT,), ""),
    ("fft.fftn", np.fft.fftn, (ZMAT,), ""), ("fft.ifftn", np.fft.ifftn, (ZMAT,), ""),
    ("fft.rfft2", np.fft.rfft2, (MAT,), ""), ("fft.irfft2", np.fft.irfft2, (ZMAT,), ""),
    ("fft.rfftn", np.fft.rfftn, (MAT,), ""), ("fft.irfftn", np.fft.irfftn, (ZMAT,), ""),
    ("fft.fftshift", np.fft.fftshift, (ZVEC,), ""),
    ("fft.ifftshift", np.fft.ifftshift, (ZVEC,), ""),
]

def _cubic_root(a: Any) -> Any:
    """x^3 + x = a by custom_root: Newton's steps solve, the implicit rule differentiates."""
    def newton(f: Callable[[Any], Any], x: Any) -> Any:
        for _ in range(30):
            x = x - f(x) / (3.0 * x ** 2 + 1.0)
        return x
    return lax.custom_root(lambda x: x ** 3 + x - a, fnp.zeros_like(a), newton,
                           lambda g, y: y / g(fnp.ones_like(y)))


def _solve_mat(matvec: Any, b: Any) -> Any:
    return fnp.linalg.solve(MAT, b)


_LAX = [
    ("dot_general", lambda a, b: lax.dot_general(a, b, (((1,), (1,)), ((0,), (0,)))),
     (MAT, MAT), "batch and contracting axes"),
    ("batch_matmul", lambda a: lax.batch_matmul(a[None], a[None]), (MAT,), ""),
    ("broadcast_in_dim", lambda x: lax.broadcast_in_dim(x, (2, 4, 3), (1,)), (VEC,), ""),
    ("pad", lambda x: lax.pad(x, 0.5, [(2, -1, 1)]), (VEC,), "interior and negative padding"),
    ("slice, rev, collapse", lambda x: lax.collapse(lax.rev(lax.slice(x, (0, 1), (3, 3), (2, 1)),
                                                            (0,)), 0), (MAT,), ""),
    ("dynamic_slice_in_dim", lambda x: lax.dynamic_slice_in_dim(x, 2, 3), (VEC,), "clamped"),
    ("dynamic_update_slice", lambda x: lax.dynamic_update_slice(x, x[:2] * 2.0, (3,)), (VEC,),
     "clamped"),
    ("reduce_sum, reduce_max, reduce_prod", lambda x: lax.reduce_sum(x, (0,))
     + lax.reduce_max(x, (1,)) * lax.reduce_prod(x, (0,)), (MAT,), ""),
    ("reduce (a fold)", lambda x: lax.reduce(x, 0.0, lambda a, b: lax.max(a, b) + a * b, (0,)),
     (MAT,), "a scan over the reduced elements"),
    ("cumsum, cumprod", lambda x: lax.cumsum(x, 1) * lax.cumprod(x, 0, reverse=True), (MAT,),
     ""),
    ("cummax, cummin", lambda x: lax.cummax(x, 0) - lax.cummin(x, 1), (MAT,), ""),
    ("cumlogsumexp", lambda x: lax.cumlogsumexp(x, 0), (MAT,), ""),
    ("sort (num_keys)", lambda x, y: lax.sort((x, y), num_keys=1)[1], (VEC, VEC[::-1]),
     "several operands, lexicographic keys"),
    ("top_k", lambda x: lax.top_k(x, 2)[0], (VEC,), ""),
    ("associative_scan", lambda x: lax.associative_scan(lax.mul, x), (VEC,),
     "JAX's odd-even recursion, pytrees"),
    ("select_n", lambda x: lax.select_n(lax.convert_element_type(x > 0.5, np.int32), x, x * x),
     (VEC,), ""),
    ("round, rem", lambda x: lax.round(x * 3.0) + lax.rem(x, 0.4), (VEC,), ""),
    ("custom_root", _cubic_root, (VEC,), "implicit derivative (two Newton corrections)"),
    ("custom_linear_solve", lambda b: lax.custom_linear_solve(lambda x: MAT @ x, b, _solve_mat,
                                                              symmetric=True), (VEC[:3],),
     "transpose_solve in reverse mode"),
    ("conv_general_dilated", lambda x, w: lax.conv_general_dilated(
        x, w, (1, 1), "SAME", rhs_dilation=(1, 2)), (MAT[None, None], MAT[None, None, :2, :2]),
     "strides, padding, dilations, dimension numbers, feature groups"),
    ("reduce_window", lambda x: lax.reduce_window(x, -np.inf, lax.max, (2, 2), (1, 1), "SAME"),
     (MAT,), "any elementwise computation; padding, dilations"),
    ("linalg.cholesky", lax.linalg.cholesky, (MAT,), "symmetrized input"),
    ("linalg.triangular_solve", lambda a, b: lax.linalg.triangular_solve(a, b, left_side=True),
     (MAT, MAT), "left_side, lower, transpose_a, conjugate_a, unit_diagonal"),
    ("linalg.eigh", lax.linalg.eigh, (MAT,), "(v, w) as JAX's"),
    ("linalg.qr", lax.linalg.qr, (MAT,), "square, or full_matrices=False"),
    ("linalg.svd", lambda a: lax.linalg.svd(a, full_matrices=False), (RECT,), ""),
    ("linalg.lu", lambda a: lax.linalg.lu(a)[0], (MAT,), "one square matrix"),
    ("linalg.tridiagonal_solve", lax.linalg.tridiagonal_solve,
     (VEC[:3] * 0.1, VEC[:3] + 1.0, VEC[:3] * 0.2, RECT), "solved densely"),
]

ROWS: list[Row] = (_ufunc_rows()
                   + [Row(f"numpy.{n}", f, a, note) for n, f, a, note in _NUMPY]
                   + [Row(f"numpy.{n}", f, a, note) for n, f, a, note in _COMPLEX]
                   + [Row(f"scipy.{n}", f, a, note) for n, f, a, note in _SCIPY]
                   + [Row(f"lax.{n}", f, a, note) for n, f, a, note in _LAX])
_ = scipy.signal  # the functions above stand for scipy.signal's


def _scalar_loss(row: Row) -> Callable[..., Any]:
    def loss(*args: Any) -> Any:
        out = row.fn(*args)
        leaves = list(out) if isinstance(out, tuple) else [out]
        return sum(fnp.sum(_real_part(leaf) * (k + 1.0)) for k, leaf in enumerate(leaves))
    return loss


def _real_part(x: Any) -> Any:
    """A real quantity of x that depends on all of it: |x|^2 for complex x."""
    return fnp.real(x * fnp.conj(x)) if np.iscomplexobj(x) else x


def _works(thunk: Callable[[], Any]) -> bool:
    try:
        thunk()
    except (NotImplementedError, TypeError, ValueError, np.linalg.LinAlgError):
        return False
    return True


def _single_precision(a: Any) -> Any:
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return a.astype(np.complex64)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def _dtypes(out: Any) -> list[np.dtype]:
    leaves = list(out) if isinstance(out, tuple) else [out]
    return [np.asarray(leaf).dtype for leaf in leaves]


def float32_dtype(row: Row) -> str:
    """"yes" when the traced result of float32 (complex64) inputs has the dtype
    the same call on plain values gives (NumPy's, SciPy's)."""
    args = tuple(_single_precision(a) for a in row.args)
    want = _dtypes(row.fn(*args))
    got = _dtypes(api.vjp(row.fn, *args)[0])
    return "yes" if got == want else "no"


def measure(row: Row) -> dict[str, str]:
    """Traced / fwd / rev / float32 / C / Numba for one row."""
    args = tuple(np.asarray(a, dtype=np.result_type(a, np.float64)) for a in row.args)
    out, _ = api.vjp(row.fn, *args)
    leaves = list(out) if isinstance(out, tuple) else [out]
    if all(np.asarray(leaf).dtype.kind in "iub" for leaf in leaves):
        tape = api.make_tape(row.fn)(*args)
        fwd = rev = "n/a"
    else:
        loss = _scalar_loss(row)
        argnums = tuple(range(len(args)))
        tape = api.make_tape(api.value_and_grad(loss, argnums))(*args)
        rev = "yes" if _works(lambda: api.grad(loss, argnums)(*args)) else "no"
        tangents = tuple(np.ones_like(a) for a in args)
        fwd = "yes" if _works(lambda: api.jvp(loss, args, tangents)) else "no"
    prims = {ins.prim for ins in tape.instrs}
    result = {"traced": "yes", "fwd": fwd, "rev": rev, "float32": float32_dtype(row)}
    kinds = {aval.dtype.kind for aval in tape.avals}
    for backend in ("c", "numba"):
        if kinds - set(backends.NATIVE_DTYPE_KINDS[backend]):
            result[backend] = "on Numba"  # the whole function: the VM has no complex dtype
        elif prims & HOST_CALLS and backend == "numba":
            result[backend] = "native, calls NumPy"
        else:
            lacking = prims - backends.native_primitives(backend)
            # instructions of a native primitive the backend still refuses (a loop
            # whose body it cannot take)
            lacking |= {ins.prim for ins in tape.instrs
                        if backends.fallback.refused(backend, ins) is not None}
            result[backend] = "native" if not lacking else "fallback"
    return result


def table() -> str:
    lines = ["| function | traced | fwd | rev | float32 | C VM | Numba | notes |",
             "|---|---|---|---|---|---|---|---|"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in ROWS:
            m = measure(row)
            lines.append(f"| `{row.name}` | {m['traced']} | {m['fwd']} | {m['rev']} "
                         f"| {m['float32']} | {m['c']} | {m['numba']} | {row.note} |")
    return "\n".join(lines)


HEADER = """# Conformance

Generated by `python -m fastad.conformance > docs/conformance.md` (a test
checks it is up to date): each function is traced on a sample input, its
forward- and reverse-mode derivatives are taken, and the primitives of its
value-and-gradient tape are looked up in each compiled backend's own tables.
"native": the C VM / Numba backend runs the whole tape itself ("native,
calls NumPy": Numba's compiled kernel calls NumPy's FFT in place); "on
Numba": the C VM holds no complex values, so the whole function compiles
with Numba instead (the NumPy reference interpreter without Numba); "fallback":
some primitive is missing there, so a compiled function using it calls that
primitive's NumPy implementation between compiled segments (traced once,
replayed without retracing, with a warning). `fastad.backends.coverage()`
prints the same per primitive.  "float32": on float32 (complex64) inputs the
traced result has the dtype the same call on plain values gives (NumPy's and
SciPy's promotion: `gammainc`, `cov` and `float_power` give float64, `median`
and `logaddexp2` float32), eager and compiled alike.
Every function here is tested against NumPy/SciPy values and against finite
differences to second order in both modes (tests/test_primitives.py,
test_special.py, test_stats.py, test_linalg.py, test_numpy_functions.py).

`numpy.*` functions are reached by plain NumPy calls on traced values;
`scipy.special` ufuncs too. The other `scipy.*` rows are imported from
`fastad.scipy` (SciPy's own versions convert their arguments with
`np.asarray`, which a traced value refuses with a `TracingError`).
Restrictions are in the notes; where a derivative is not defined (an
argument of `gammainc`,
...) fastad raises rather than return a wrong number. Inputs are float64,
float32, complex128 or complex64; float16 and long double are refused with a
`TypeError`. Gradients of real functions of complex inputs follow autograd's
and JAX's convention (conjugate of the Wirtinger derivative, df/dx - i df/dy);
rows marked "(complex)" are measured on complex inputs, with |f|^2 as the loss
for complex results. Complex rows are tested in tests/test_complex.py and
tests/test_fft.py. `lax.*` rows are `fastad.lax`'s, under `jax.lax`'s names and
conventions (tests/test_lax.py, which also compares them with JAX's where
JAX is installed).

Beyond these rows, `fastad.numpy` has every public name of `numpy`,
`numpy.linalg` and `numpy.fft` (tests/test_numpy_namespace.py; on plain
values each gives NumPy's result). Functions with no derivative (`argmax`,
`nonzero`, `unique`, `isclose`, `allclose`, `searchsorted`, `count_nonzero`,
...) return NumPy's plain result computed from a traced value's value, and a
compiled function records a guard that they still give it, retracing when
they do not; a boolean mask or integer array computed from traced values
indexes the same way (`x[x > 0]`: the mask's pattern is the guard). Those of
dtypes and shapes only (`result_type`, `can_cast`, ...) read the values with
no guard. `np.array`, `np.arange` and `np.full_like(plain, traced)` cannot be
intercepted by NumPy's protocols: call them from `fastad.numpy`.

Every function takes NumPy's parameters, under NumPy's names and in its
positional order (tests/test_numpy_keywords.py enumerates them). With no
traced argument the result is NumPy's own. On traced values: a ufunc's
`dtype`, `casting` and `signature` give NumPy's result dtype (or NumPy's
error); `where=` without `out=` gives zeros where the mask is False (NumPy
leaves those elements uninitialized); `out=` must be a traced array
(`fastad.numpy.zeros(...)`, a traced copy), which the result is written into
(only where `where` holds) and which is returned; a NumPy array as `out=` of
a traced result is a `TracingError`, and so is a 0-d `out` (a 0-d traced value
is immutable, like a NumPy scalar). `order` and `subok` are accepted and
change no value. Reductions take `initial` and `where` (an extremum with
`where=` needs `initial`, as in NumPy), `out`, and `var`/`std`'s `mean` and
`correction`; generalized ufuncs (`matmul`) take `axes`.

"""


def main() -> None:
    print(HEADER + table())


if __name__ == "__main__":
    main()
