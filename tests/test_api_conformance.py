"""Code written for autograd and JAX runs unchanged: the public names of
autograd's ``numpy``/``scipy`` modules and JAX's transforms, over fastad.

Each row of ``CASES`` is one function of NumPy, ``numpy.linalg``,
``numpy.fft``, ``scipy.special`` or ``scipy.stats`` on inputs inside its
smooth domain, with the arguments it is differentiated in.  The name must
exist in ``fastad.numpy``/``fastad.scipy.*`` (and in ``autograd``'s module,
where autograd has it), and the function is called the way user code calls
it: through plain ``numpy``/``scipy`` on traced values where fastad
dispatches them ("np" in the test id), else through ``fastad.numpy`` /
``fastad.scipy`` ("fa" in the id).  For each row the scalar loss
``sum(w * f(args))`` (fixed random weights ``w``; ``abs(.)**2`` or the real
part of complex results) is checked for:

* its value against plain NumPy/SciPy;
* ``fa.grad`` (reverse) and ``fa.jvp`` (forward) against central finite
  differences in a random direction;
* order 2: ``fa.hessian``, forward-over-reverse (``jvp`` of ``grad``) and
  forward-over-forward (``jvp`` of ``jvp``) against finite differences of
  the gradient;
* ``fa.jit(loss)`` and ``fa.jit(fa.grad(loss))`` against eager, and
  ``fa.compile(loss)`` on the C backend (the NumPy reference for complex
  code, which the C VM does not hold) against the eager gradient; order 2
  compiled too: ``fa.jit(fa.hessian(loss))``, ``fa.hessian(fa.jit(loss))``,
  a jitted ``jvp``, ``fa.compile(loss).hvp`` and ``.hessian``;
* the same code through ``fastad.numpy``/``fastad.scipy`` (autograd's
  import style) for the rows called through plain NumPy/SciPy;
* ``fa.vmap(fa.grad(loss))`` (per-example gradients) and ``fa.jacobian``
  of the function itself in both modes (``jacfwd``/``jacrev``).

The differentiated arguments are packed in one vector ``theta`` so every
transform sees a function of one array.  The JAX and autograd calling
conventions (``has_aux``, ``argnums`` tuples, ``vmap``'s ``in_axes``,
``jacobian(mode="fwd"/"rev")``, ``argnum`` ints, elementwise gradients by
``vjp`` with ones) and the transforms' top-level names are tested at the end.
Whatever fastad lacks is an ``xfail(strict=True)`` naming the failure.
"""
from __future__ import annotations

import enum

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
import fastad.scipy.special as fsp
import fastad.scipy.stats as fst

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


class NS:
    """The modules a case's function is called through."""

    def __init__(self, np_, la, fft, sp, st):
        self.np, self.la, self.fft, self.sp, self.st = np_, la, fft, sp, st


PLAIN = NS(np, np.linalg, np.fft, scipy.special, scipy.stats)
FASTAD = NS(fnp, fnp.linalg, fnp.fft, fsp, fst)

FASTAD_MODULE = {"numpy": "fastad.numpy", "numpy.linalg": "fastad.numpy.linalg",
                 "numpy.fft": "fastad.numpy.fft", "scipy.special": "fastad.scipy.special",
                 "scipy.stats": "fastad.scipy.stats"}
AUTOGRAD_MODULE = {"numpy": "autograd.numpy", "numpy.linalg": "autograd.numpy.linalg",
                   "numpy.fft": "autograd.numpy.fft", "scipy.special": "autograd.scipy.special",
                   "scipy.stats": "autograd.scipy.stats"}


# -- inputs inside each function's smooth domain -------------------------------------
def anyv(*shape):
    return lambda rng: rng.normal(0.0, 1.0, shape)


def uni(lo, hi, *shape):
    return lambda rng: rng.uniform(lo, hi, shape)


def pos(*shape):
    return uni(0.5, 2.0, *shape)


def distinct(*shape):
    """Distinct magnitudes at least 0.2 apart, 0.3 from zero: no ties or kinks."""
    def build(rng):
        n = int(np.prod(shape))
        mag = 0.3 + 0.25 * rng.permutation(n) + rng.uniform(-0.02, 0.02, n)
        return (rng.choice([-1.0, 1.0], n) * mag).reshape(shape)
    return build


def wellcond(n=3, m=None):
    m = n if m is None else m
    return lambda rng: 3.0 * np.eye(n, m) + 0.4 * rng.normal(size=(n, m))


def spd(n=3):
    def build(rng):
        a = rng.normal(size=(n, n))
        return a @ a.T + n * np.eye(n)
    return build


def sym_distinct(n=3):
    """Symmetric with eigenvalues 1, 2.5, 4, ... (well separated)."""
    def build(rng):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        return (q * (1.0 + 1.5 * np.arange(n))) @ q.T
    return build


def const(value):
    return lambda rng: np.asarray(value, dtype=float)


def simplex(n):
    def build(rng):
        p = rng.uniform(0.5, 1.5, n)
        return p / p.sum()
    return build


def sym(m, a):
    return (a + m.np.swapaxes(a, -1, -2)) / 2


@dataclass
class Case:
    module: str            # numpy, numpy.linalg, numpy.fft, scipy.special, scipy.stats
    name: str              # the public name, dotted for distributions: "norm.logpdf"
    call: Callable          # call(ns, *args): the function, its result made real
    args: list             # builders rng -> array
    diff: tuple = (0,)     # the differentiated arguments
    via: str = "np"        # "np": plain numpy/scipy on traced values; "fa": fastad's modules
    tag: str = ""          # tells apart rows of one name
    complex_: bool = False  # complex intermediates: compiled on the NumPy reference, not the C VM
    autograd: bool = True  # autograd has this name too
    xfail: dict = field(default_factory=dict)  # check -> reason (strict)

    @property
    def id(self):
        base = f"{self.module}.{self.name}"
        return f"{base}[{self.tag}]-{self.via}" if self.tag else f"{base}-{self.via}"


C = Case
CASES = [
    # -- numpy: elementwise ------------------------------------------------------
    C("numpy", "sin", lambda m, x: m.np.sin(x), [anyv(4)]),
    C("numpy", "cos", lambda m, x: m.np.cos(x), [anyv(4)]),
    C("numpy", "tan", lambda m, x: m.np.tan(x), [uni(-1, 1, 4)]),
    C("numpy", "exp", lambda m, x: m.np.exp(x), [anyv(2, 3)]),
    C("numpy", "log", lambda m, x: m.np.log(x), [pos(4)]),
    C("numpy", "log1p", lambda m, x: m.np.log1p(x), [pos(4)]),
    C("numpy", "expm1", lambda m, x: m.np.expm1(x), [anyv(4)]),
    C("numpy", "sqrt", lambda m, x: m.np.sqrt(x), [pos(4)]),
    C("numpy", "tanh", lambda m, x: m.np.tanh(x), [anyv(4)]),
    C("numpy", "arcsin", lambda m, x: m.np.arcsin(x), [uni(-0.8, 0.8, 4)]),
    C("numpy", "arccos", lambda m, x: m.np.arccos(x), [uni(-0.8, 0.8, 4)]),
    C("numpy", "arctan", lambda m, x: m.np.arctan(x), [anyv(4)]),
    C("numpy", "arcsinh", lambda m, x: m.np.arcsinh(x), [anyv(4)]),
    C("numpy", "arccosh", lambda m, x: m.np.arccosh(x), [uni(1.5, 3, 4)]),
    C("numpy", "arctanh", lambda m, x: m.np.arctanh(x), [uni(-0.8, 0.8, 4)]),
    C("numpy", "sinh", lambda m, x: m.np.sinh(x), [anyv(4)]),
    C("numpy", "cosh", lambda m, x: m.np.cosh(x), [anyv(4)]),
    C("numpy", "square", lambda m, x: m.np.square(x), [anyv(4)]),
    C("numpy", "reciprocal", lambda m, x: m.np.reciprocal(x), [pos(4)]),
    C("numpy", "cbrt", lambda m, x: m.np.cbrt(x), [pos(4)]),
    C("numpy", "log2", lambda m, x: m.np.log2(x), [pos(4)]),
    C("numpy", "log10", lambda m, x: m.np.log10(x), [pos(4)]),
    C("numpy", "exp2", lambda m, x: m.np.exp2(x), [anyv(4)]),
    C("numpy", "abs", lambda m, x: m.np.abs(x), [distinct(4)]),
    C("numpy", "sinc", lambda m, x: m.np.sinc(x), [uni(0.2, 0.8, 4)]),
    C("numpy", "power", lambda m, x, y: m.np.power(x, y), [pos(4), anyv(4)], (0, 1)),
    C("numpy", "power", lambda m, x: x ** 3.0, [anyv(4)], tag="**"),
    C("numpy", "arctan2", lambda m, y, x: m.np.arctan2(y, x), [anyv(4), pos(4)], (0, 1)),
    C("numpy", "hypot", lambda m, x, y: m.np.hypot(x, y), [pos(4), anyv(4)], (0, 1)),
    C("numpy", "logaddexp", lambda m, x, y: m.np.logaddexp(x, y), [anyv(4), anyv(4)], (0, 1)),
    C("numpy", "maximum", lambda m, x, y: m.np.maximum(x, y),
      [const([0.1, 2.0, 0.3, 2.2]), uni(1.0, 1.2, 4)], (0, 1), tag="x,y"),
    C("numpy", "divide", lambda m, x, y: m.np.divide(x, y), [anyv(2, 3), pos(3)], (0, 1),
      tag="broadcast"),
    C("numpy", "float_power", lambda m, x, y: m.np.float_power(x, y), [pos(4), anyv(4)], (0, 1)),
    # -- numpy: reductions ---------------------------------------------------------
    C("numpy", "sum", lambda m, x: m.np.sum(x, axis=0), [anyv(3, 4)], tag="axis=0"),
    C("numpy", "sum", lambda m, x: m.np.sum(m.np.sin(x), axis=1, keepdims=True),
      [anyv(3, 4)], tag="keepdims"),
    C("numpy", "mean", lambda m, x: m.np.mean(x ** 2, axis=(0, 2)), [anyv(2, 3, 2)],
      tag="axis-tuple"),
    C("numpy", "var", lambda m, x: m.np.var(x, axis=1, ddof=1), [anyv(3, 4)]),
    C("numpy", "std", lambda m, x: m.np.std(x, axis=0), [anyv(3, 4)]),
    C("numpy", "prod", lambda m, x: m.np.prod(x, axis=1), [pos(3, 3)]),
    C("numpy", "max", lambda m, x: m.np.max(x, axis=1), [distinct(3, 4)]),
    C("numpy", "min", lambda m, x: m.np.min(x, axis=0, keepdims=True), [distinct(3, 4)]),
    C("numpy", "cumsum", lambda m, x: m.np.cumsum(x, axis=1), [anyv(3, 3)]),
    C("numpy", "cumprod", lambda m, x: m.np.cumprod(x), [pos(4)]),
    C("numpy", "diff", lambda m, x: m.np.diff(x ** 2, n=2), [anyv(5)]),
    C("numpy", "average", lambda m, x, w: m.np.average(x, weights=w), [anyv(4), pos(4)], (0, 1)),
    C("numpy", "trapezoid", lambda m, y: m.np.trapezoid(y ** 2, dx=0.5), [anyv(5)]),
    C("numpy", "cov", lambda m, x: m.np.cov(x), [anyv(2, 4)]),
    # -- numpy: shapes and products ------------------------------------------------
    C("numpy", "reshape", lambda m, x: m.np.reshape(x, (3, 2)) ** 2, [anyv(2, 3)]),
    C("numpy", "transpose", lambda m, x: (m.np.transpose(x, (1, 0, 2))
                                        * m.np.arange(6.0).reshape(3, 1, 2)),
      [anyv(2, 3, 2)]),
    C("numpy", "concatenate", lambda m, x, y: m.np.concatenate([x, m.np.sin(y)], axis=0),
      [anyv(2, 3), anyv(1, 3)], (0, 1)),
    C("numpy", "stack", lambda m, x, y: m.np.stack([x, x * y], axis=1), [anyv(3), anyv(3)], (0, 1)),
    C("numpy", "flip", lambda m, x: m.np.flip(x, axis=1) * x, [anyv(2, 3)]),
    C("numpy", "roll", lambda m, x: m.np.roll(x, 1) * x, [anyv(4)]),
    C("numpy", "tile", lambda m, x: m.np.tile(x, (2, 1)) ** 2, [anyv(3)]),
    C("numpy", "repeat", lambda m, x: m.np.repeat(x, 2) ** 2, [anyv(3)]),
    C("numpy", "pad", lambda m, x: m.np.pad(x, 1, mode="reflect") ** 2, [anyv(4)]),
    C("numpy", "expand_dims", lambda m, x: m.np.expand_dims(x, 0) * m.np.squeeze(x[None]),
      [anyv(3)]),
    C("numpy", "swapaxes", lambda m, x: m.np.swapaxes(x, 0, 1) @ x, [anyv(3, 3)]),
    C("numpy", "trace", lambda m, x: m.np.trace(x @ x), [anyv(3, 3)]),
    C("numpy", "diagonal", lambda m, x: m.np.diagonal(x) * m.np.diag(x @ x), [anyv(3, 3)]),
    C("numpy", "triu", lambda m, x: m.np.triu(x) @ m.np.tril(x), [anyv(3, 3)]),
    C("numpy", "outer", lambda m, x, y: m.np.outer(x, y), [anyv(3), anyv(2)], (0, 1)),
    C("numpy", "kron", lambda m, x, y: m.np.kron(x, y), [anyv(2, 2), anyv(2, 2)], (0, 1)),
    C("numpy", "cross", lambda m, x, y: m.np.cross(x, y), [anyv(3), anyv(3)], (0, 1)),
    C("numpy", "dot", lambda m, x, y: m.np.dot(x, y), [anyv(2, 3), anyv(3)], (0, 1)),
    C("numpy", "matmul", lambda m, x, y: x @ y, [anyv(2, 3, 3), anyv(3, 2)], (0, 1)),
    C("numpy", "tensordot", lambda m, x, y: m.np.tensordot(x, y, axes=([1, 2], [0, 1])),
      [anyv(2, 3, 2), anyv(3, 2)], (0, 1)),
    C("numpy", "einsum", lambda m, x, y: m.np.einsum("ij,jk->ik", x, y), [anyv(2, 3), anyv(3, 2)],
      (0, 1), tag="ij,jk"),
    C("numpy", "einsum", lambda m, x: m.np.einsum("ii->", x @ x), [anyv(3, 3)], tag="ii"),
    C("numpy", "einsum", lambda m, x, y, z: m.np.einsum("...i,ij,...j->...", x, y, z),
      [anyv(2, 3), anyv(3, 3), anyv(2, 3)], (0, 1, 2), tag="ellipsis-3"),
    C("numpy", "where", lambda m, x, y: m.np.where(np.array([True, False, True, False]),
                                                 x ** 2, m.np.sin(y)),
      [anyv(4), anyv(4)], (0, 1)),
    C("numpy", "clip", lambda m, x: m.np.clip(x, -0.5, 0.5) * x,
      [const([-0.9, -0.2, 0.1, 0.3, 0.8])]),
    C("numpy", "polyval", lambda m, p, x: m.np.polyval(p, x), [anyv(3), anyv(4)], (0, 1)),
    C("numpy", "convolve", lambda m, x, y: m.np.convolve(x, y), [anyv(4), anyv(3)], (0, 1)),
    # -- numpy.linalg --------------------------------------------------------------
    C("numpy.linalg", "solve", lambda m, a, b: m.la.solve(a, b), [wellcond(3), anyv(3)], (0, 1)),
    C("numpy.linalg", "solve", lambda m, a, b: m.la.solve(a, b), [spd(3), anyv(3, 2)], (0, 1),
      tag="spd,matrix"),
    C("numpy.linalg", "inv", lambda m, a: m.la.inv(a), [wellcond(3)]),
    C("numpy.linalg", "det", lambda m, a: m.la.det(a), [wellcond(3)]),
    C("numpy.linalg", "slogdet", lambda m, a: m.la.slogdet(a)[1], [spd(3)]),
    C("numpy.linalg", "cholesky", lambda m, a: m.la.cholesky(sym(m, a)), [spd(3)]),
    C("numpy.linalg", "eigh", lambda m, a: m.la.eigh(sym(m, a))[0], [sym_distinct(3)],
      tag="eigenvalues"),
    C("numpy.linalg", "eigh", lambda m, a: m.la.eigh(sym(m, a))[1] ** 2, [sym_distinct(3)],
      tag="eigenvectors^2"),
    C("numpy.linalg", "eigvalsh", lambda m, a: m.la.eigvalsh(sym(m, a)), [sym_distinct(3)]),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x), [anyv(4)], tag="2"),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, ord=1), [distinct(4)], tag="ord=1"),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, ord=3), [pos(4)], tag="ord=3"),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, ord=np.inf), [distinct(4)], tag="ord=inf"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, "fro"), [anyv(3, 3)], tag="fro"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, 2), [wellcond(3)], tag="matrix-2"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, "nuc"), [wellcond(3)], tag="nuc"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, axis=1), [anyv(3, 3)], tag="axis=1"),
    C("numpy.linalg", "qr", lambda m, a: m.la.qr(a)[1], [wellcond(4, 3)], tag="R"),
    C("numpy.linalg", "svd", lambda m, a: m.la.svd(a, compute_uv=False), [wellcond(3)],
      tag="singular-values"),
    C("numpy.linalg", "lstsq", lambda m, a, b: m.la.lstsq(a, b, rcond=None)[0],
      [wellcond(5, 3), anyv(5)], (0, 1)),
    C("numpy.linalg", "pinv", lambda m, a: m.la.pinv(a), [wellcond(3, 4)]),
    C("numpy.linalg", "matrix_power", lambda m, a: m.la.matrix_power(a, 3), [anyv(3, 3)]),
    C("numpy.linalg", "multi_dot", lambda m, a, b, c: m.la.multi_dot([a, b, c]),
      [anyv(2, 3), anyv(3, 3), anyv(3, 2)], (0, 1, 2)),
    C("numpy.linalg", "det", lambda m, a: m.la.det(a),
      [lambda rng: 2 * np.eye(3) + 0.3 * rng.normal(size=(2, 3, 3))],
      tag="batched"),
    # -- numpy.fft -------------------------------------------------------------------
    C("numpy.fft", "fft", lambda m, x: m.np.abs(m.fft.fft(x)) ** 2, [anyv(5)], complex_=True),
    C("numpy.fft", "fft", lambda m, x: m.np.real(m.fft.fft(x, n=6, norm="ortho")), [anyv(4)],
      tag="n,ortho", complex_=True),
    C("numpy.fft", "ifft", lambda m, x: m.np.real(m.fft.ifft(m.np.sin(x))), [anyv(5)], complex_=True),
    C("numpy.fft", "rfft", lambda m, x: m.np.abs(m.fft.rfft(x)) ** 2, [anyv(5)], complex_=True),
    C("numpy.fft", "irfft", lambda m, x: m.fft.irfft(x, n=6), [anyv(4)], complex_=True),
    C("numpy.fft", "fft2", lambda m, x: m.np.abs(m.fft.fft2(x)) ** 2, [anyv(3, 3)], complex_=True),
    C("numpy.fft", "ifft2", lambda m, x: m.np.imag(m.fft.ifft2(x ** 2)), [anyv(3, 3)], complex_=True),
    C("numpy.fft", "fftn", lambda m, x: m.np.abs(m.fft.fftn(x)) ** 2, [anyv(2, 3, 2)], complex_=True),
    C("numpy.fft", "rfftn", lambda m, x: m.np.abs(m.fft.rfftn(x, axes=(0, 1))) ** 2, [anyv(3, 4)],
      complex_=True),
    C("numpy.fft", "fftshift", lambda m, x: m.fft.fftshift(x) * x, [anyv(5)]),
    # -- scipy.special ---------------------------------------------------------------
    C("scipy.special", "gammaln", lambda m, x: m.sp.gammaln(x), [pos(4)]),
    C("scipy.special", "gamma", lambda m, x: m.sp.gamma(x), [pos(4)]),
    C("scipy.special", "digamma", lambda m, x: m.sp.digamma(x), [pos(4)]),
    C("scipy.special", "polygamma", lambda m, x: m.sp.polygamma(1, x), [pos(4)], via="fa"),
    C("scipy.special", "erf", lambda m, x: m.sp.erf(x), [anyv(4)]),
    C("scipy.special", "erfc", lambda m, x: m.sp.erfc(x), [anyv(4)]),
    C("scipy.special", "erfinv", lambda m, x: m.sp.erfinv(x), [uni(-0.7, 0.7, 4)]),
    C("scipy.special", "expit", lambda m, x: m.sp.expit(x), [anyv(4)]),
    C("scipy.special", "logit", lambda m, x: m.sp.logit(x), [uni(0.2, 0.8, 4)]),
    C("scipy.special", "log_ndtr", lambda m, x: m.sp.log_ndtr(x), [anyv(4)], autograd=False),
    C("scipy.special", "ndtr", lambda m, x: m.sp.ndtr(x), [anyv(4)], autograd=False),
    C("scipy.special", "ndtri", lambda m, x: m.sp.ndtri(x), [uni(0.2, 0.8, 4)], autograd=False),
    C("scipy.special", "xlogy", lambda m, x, y: m.sp.xlogy(x, y), [anyv(4), pos(4)], (0, 1),
      autograd=False),
    C("scipy.special", "xlog1py", lambda m, x, y: m.sp.xlog1py(x, y), [anyv(4), pos(4)], (0, 1),
      autograd=False),
    C("scipy.special", "i0", lambda m, x: m.sp.i0(x), [anyv(4)]),
    C("scipy.special", "i1", lambda m, x: m.sp.i1(x), [anyv(4)]),
    C("scipy.special", "iv", lambda m, x: m.sp.iv(1.5, x), [pos(4)]),
    C("scipy.special", "ive", lambda m, x: m.sp.ive(2.0, x), [pos(4)]),
    C("scipy.special", "beta", lambda m, a, b: m.sp.beta(a, b), [pos(3), pos(3)], (0, 1)),
    C("scipy.special", "betaln", lambda m, a, b: m.sp.betaln(a, b), [pos(3), pos(3)], (0, 1)),
    C("scipy.special", "entr", lambda m, x: m.sp.entr(x), [pos(4)], autograd=False),
    C("scipy.special", "rel_entr", lambda m, x, y: m.sp.rel_entr(x, y), [pos(4), pos(4)], (0, 1),
      autograd=False),
    C("scipy.special", "logsumexp", lambda m, x: m.sp.logsumexp(x), [anyv(4)], tag="all"),
    C("scipy.special", "logsumexp", lambda m, x: m.sp.logsumexp(x, axis=1, keepdims=True),
      [anyv(3, 3)], tag="axis,keepdims"),
    C("scipy.special", "logsumexp", lambda m, x, b: m.sp.logsumexp(x, axis=0, b=b),
      [anyv(3, 2), pos(3, 2)], (0, 1), tag="b"),
    C("scipy.special", "softmax", lambda m, x: m.sp.softmax(x, axis=1), [anyv(2, 3)], autograd=False),
    C("scipy.special", "log_softmax", lambda m, x: m.sp.log_softmax(x, axis=0), [anyv(3, 2)],
      autograd=False),
    C("scipy.special", "multigammaln", lambda m, x: m.sp.multigammaln(x, 2), [uni(2.0, 3.0)]),
    # -- scipy.stats (SciPy's own functions refuse traced values: fastad.scipy.stats) ---
    C("scipy.stats", "norm.logpdf", lambda m, x, mu, s: m.st.norm.logpdf(x, mu, s),
      [anyv(4), anyv(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "norm.pdf", lambda m, x, mu, s: m.st.norm.pdf(x, mu, s),
      [anyv(4), anyv(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "norm.cdf", lambda m, x, mu, s: m.st.norm.cdf(x, mu, s),
      [anyv(4), anyv(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "norm.logcdf", lambda m, x, mu, s: m.st.norm.logcdf(x, mu, s),
      [anyv(4), anyv(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "norm.logsf", lambda m, x: m.st.norm.logsf(x, 0.5, 2.0), [anyv(4)], via="fa"),
    C("scipy.stats", "t.logpdf", lambda m, x, df, mu, s: m.st.t.logpdf(x, df, mu, s),
      [anyv(4), uni(2, 6, 4), anyv(4), pos(4)], (0, 1, 2, 3), via="fa"),
    C("scipy.stats", "t.cdf", lambda m, x, df: m.st.t.cdf(x, df), [anyv(4), uni(2, 6, 4)], (0,),
      via="fa"),
    C("scipy.stats", "gamma.logpdf", lambda m, x, a: m.st.gamma.logpdf(x, a), [pos(4), pos(4)],
      (0, 1), via="fa"),
    C("scipy.stats", "gamma.cdf", lambda m, x, a: m.st.gamma.cdf(x, a), [pos(4), pos(4)], (0,),
      via="fa"),
    C("scipy.stats", "beta.logpdf", lambda m, x, a, b: m.st.beta.logpdf(x, a, b),
      [uni(0.2, 0.8, 4), pos(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "beta.cdf", lambda m, x, a, b: m.st.beta.cdf(x, a, b),
      [uni(0.2, 0.8, 4), pos(4), pos(4)], (0,), via="fa"),
    C("scipy.stats", "poisson.logpmf", lambda m, k, mu: m.st.poisson.logpmf(k, mu),
      [const([0.0, 1.0, 3.0, 5.0]), pos(4)], (1,), via="fa"),
    C("scipy.stats", "poisson.cdf", lambda m, k, mu: m.st.poisson.cdf(k, mu),
      [const([0.0, 1.0, 3.0, 5.0]), pos(4)], (1,), via="fa"),
    C("scipy.stats", "multivariate_normal.logpdf",
      lambda m, x, mu, c: m.st.multivariate_normal.logpdf(x, mu, sym(m, c)),
      [anyv(3), anyv(3), spd(3)], (0, 1, 2), via="fa"),
    C("scipy.stats", "multivariate_normal.pdf",
      lambda m, x, mu, c: m.st.multivariate_normal.pdf(x, mu, sym(m, c)),
      [anyv(3), anyv(3), spd(3)], (0, 1, 2), via="fa"),
    C("scipy.stats", "multivariate_normal.entropy",
      lambda m, mu, c: m.st.multivariate_normal.entropy(mu, sym(m, c)),
      [anyv(3), spd(3)], (1,), via="fa"),
    C("scipy.stats", "dirichlet.logpdf", lambda m, x, a: m.st.dirichlet.logpdf(x, a),
      [simplex(3), pos(3)], (1,), via="fa"),
    C("scipy.stats", "chi2.logpdf", lambda m, x, df: m.st.chi2.logpdf(x, df), [pos(4), uni(2, 5, 4)],
      (0, 1), via="fa"),
    C("scipy.stats", "chi2.cdf", lambda m, x, df: m.st.chi2.cdf(x, df), [pos(4), uni(2, 5, 4)],
      (0,), via="fa"),
]

# -- more of each module: methods, indexing, aliases, ord variants, batches ---------------
CASES += [
    C("numpy", "ndarray", lambda m, x: (x.T @ x).sum(axis=0) * x.mean() + x.ravel()[:3]
      + x.reshape(3, 2).cumsum(axis=0)[:, 1] + x.clip(-5, 5).std(), [anyv(2, 3)], tag="methods"),
    C("numpy", "ndarray", lambda m, x: x[::2, [0, 2]] * x[1, 1:], [anyv(3, 3)], tag="getitem"),
    C("numpy", "take", lambda m, x: m.np.take(x, [2, 0, 2]) * x[..., -1], [anyv(4)]),
    C("numpy", "logaddexp2", lambda m, x, y: m.np.logaddexp2(x, y), [anyv(4), anyv(4)], (0, 1)),
    C("numpy", "deg2rad", lambda m, x: m.np.sin(m.np.deg2rad(x * 60)), [anyv(4)]),
    C("numpy", "fmod", lambda m, x: m.np.fmod(x, 0.7) * x, [uni(0.05, 0.65, 4)]),
    C("numpy", "nansum", lambda m, x: m.np.nansum(x ** 2, axis=1) + m.np.nanmean(x, axis=1),
      [anyv(3, 3)]),
    C("numpy", "sort", lambda m, x: m.np.sort(x) * m.np.arange(1.0, 6.0), [distinct(5)]),
    C("numpy", "median", lambda m, x: m.np.median(x, axis=0), [distinct(5, 2)]),
    C("numpy", "quantile", lambda m, x: m.np.quantile(x, [0.3, 0.8]), [distinct(6)]),
    C("numpy", "linspace", lambda m, a, b: m.np.linspace(a, b, 4) ** 2, [anyv(), anyv()], (0, 1)),
    C("numpy", "outer", lambda m, x: m.np.outer(x, x) @ x, [anyv(3)], tag="quadratic"),
    C("numpy", "einsum", lambda m, x, y: m.np.einsum("bij,bjk->bik", x, y),
      [anyv(2, 2, 3), anyv(2, 3, 2)], (0, 1), tag="batched"),
    C("numpy", "einsum", lambda m, x: m.np.einsum("i,i->", x, x) * m.np.einsum("ij->ji", x[None])[:, 0],
      [anyv(3)], tag="i,i"),
    C("numpy", "mean", lambda m, x: m.np.mean(x), [anyv(3, 2)], tag="all"),
    C("numpy", "sum", lambda m, x: m.np.sum(x, axis=-1) ** 2, [anyv(2, 2, 3)], tag="axis=-1"),
    C("numpy", "corrcoef", lambda m, x: m.np.corrcoef(x), [anyv(3, 5)]),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, ord=-np.inf), [distinct(4)], tag="ord=-inf"),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, ord=0.5), [pos(4)], tag="ord=0.5"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, 1), [distinct(3, 3)], tag="matrix-1"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, np.inf), [distinct(3, 3)], tag="matrix-inf"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, -2), [wellcond(3)], tag="matrix--2"),
    C("numpy.linalg", "norm", lambda m, a: m.la.norm(a, axis=(1, 2)), [anyv(2, 3, 3)],
      tag="axis-pair"),
    C("numpy.linalg", "norm", lambda m, x: m.la.norm(x, axis=0, keepdims=True), [anyv(3, 2)],
      tag="keepdims"),
    C("numpy.linalg", "slogdet", lambda m, a: m.la.slogdet(a)[0] * m.la.slogdet(a)[1],
      [lambda rng: np.diag([-2.0, 1.5, 3.0]) + 0.3 * rng.normal(size=(3, 3))], tag="negative-det"),
    C("numpy.linalg", "inv", lambda m, a: m.la.inv(a),
      [lambda rng: 3 * np.eye(3) + 0.4 * rng.normal(size=(2, 3, 3))],
      tag="batched"),
    C("numpy.linalg", "solve", lambda m, a, b: m.la.solve(a, b[..., None])[..., 0],
      [lambda rng: 3 * np.eye(3) + 0.4 * rng.normal(size=(2, 3, 3)), anyv(2, 3)], (0, 1), tag="batched"),
    C("numpy.linalg", "cholesky", lambda m, a: m.la.cholesky(sym(m, a)),
      [lambda rng: np.stack([spd(3)(rng), spd(3)(rng)])], tag="batched"),
    C("numpy.linalg", "qr", lambda m, a: m.la.qr(a)[0] ** 2, [wellcond(4, 3)], tag="Q^2"),
    C("numpy.linalg", "svd", lambda m, a: m.la.svd(a, full_matrices=False)[0] ** 2, [wellcond(3)],
      tag="U^2"),
    C("numpy.linalg", "eig", lambda m, a: m.np.real(m.la.eig(a)[0]),
      [lambda rng: np.diag([1.0, 2.5, 4.0]) + 0.2 * rng.normal(size=(3, 3))], tag="real-eigenvalues"),
    C("numpy.linalg", "eigvals", lambda m, a: m.np.sum(m.np.abs(m.la.eigvals(a)) ** 3),
      [lambda rng: (np.array([[1.0, -2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
                    + 0.2 * rng.normal(size=(3, 3)))],
      tag="complex-pair", complex_=True),
    C("numpy.linalg", "cond", lambda m, a: m.la.cond(a), [wellcond(3)]),
    C("numpy.linalg", "matrix_power", lambda m, a: m.la.matrix_power(a, -2), [wellcond(3)],
      tag="negative"),
    C("numpy.linalg", "lstsq", lambda m, a, b: m.la.lstsq(a, b, rcond=None)[1],
      [wellcond(5, 3), anyv(5)], (0, 1), tag="residuals"),
    C("numpy.fft", "irfft2", lambda m, x: m.fft.irfft2(x, s=(3, 4)), [anyv(3, 3)], complex_=True),
    C("numpy.fft", "irfftn", lambda m, x: m.fft.irfftn(x ** 2, s=(2, 4), axes=(0, 1)), [anyv(2, 3)],
      complex_=True),
    C("numpy.fft", "ifftn", lambda m, x: m.np.real(m.fft.ifftn(x, norm="forward")), [anyv(3, 2)],
      complex_=True),
    C("numpy.fft", "rfft2", lambda m, x: m.np.abs(m.fft.rfft2(x)) ** 2, [anyv(3, 4)], complex_=True),
    C("numpy.fft", "fft", lambda m, x: m.np.abs(m.fft.fft(x, axis=0)) ** 2, [anyv(3, 2)],
      tag="axis=0", complex_=True),
    C("numpy.fft", "ifftshift", lambda m, x: m.fft.ifftshift(x, axes=1) * x, [anyv(2, 3)]),
    C("numpy.fft", "hfft", lambda m, x: m.fft.hfft(x, n=6), [anyv(4)], complex_=True),
    C("numpy.fft", "ihfft", lambda m, x: m.np.abs(m.fft.ihfft(x)) ** 2, [anyv(5)], complex_=True),
    C("scipy.special", "psi", lambda m, x: m.sp.psi(x), [pos(4)]),
    C("scipy.special", "polygamma", lambda m, x: m.sp.polygamma(np.array([0, 1, 2, 3]), x), [pos(4)],
      via="fa", tag="array-order"),
    C("scipy.special", "erfcinv", lambda m, x: m.sp.erfcinv(x), [uni(0.3, 1.7, 4)]),
    C("scipy.special", "log_expit", lambda m, x: m.sp.log_expit(x), [anyv(4)], autograd=False),
    C("scipy.special", "i0e", lambda m, x: m.sp.i0e(x), [pos(4)], autograd=False),
    C("scipy.special", "i1e", lambda m, x: m.sp.i1e(x), [pos(4)], autograd=False),
    C("scipy.special", "gammainc", lambda m, x: m.sp.gammainc(2.5, x), [pos(4)]),
    C("scipy.special", "gammaincc", lambda m, x: m.sp.gammaincc(1.5, x), [pos(4)]),
    C("scipy.special", "betainc", lambda m, x: m.sp.betainc(2.0, 3.0, x), [uni(0.2, 0.8, 4)]),
    C("scipy.special", "stdtr", lambda m, t: m.sp.stdtr(4.0, t), [anyv(4)], autograd=False),
    C("scipy.special", "rgamma", lambda m, x: m.sp.rgamma(x), [pos(4)]),
    C("scipy.special", "gammasgn", lambda m, x: m.sp.gammasgn(x) * x ** 2,
      [const([-2.5, -0.5, 0.7, 1.5])]),
    C("scipy.special", "j0", lambda m, x: m.sp.j0(x), [anyv(4)]),
    C("scipy.special", "j1", lambda m, x: m.sp.j1(x), [anyv(4)]),
    C("scipy.special", "y0", lambda m, x: m.sp.y0(x), [pos(4)]),
    C("scipy.special", "y1", lambda m, x: m.sp.y1(x), [pos(4)]),
    C("scipy.special", "jn", lambda m, x: m.sp.jn(2, x), [anyv(4)]),
    C("scipy.special", "yn", lambda m, x: m.sp.yn(2, x), [pos(4)]),
    C("scipy.special", "jv", lambda m, x: m.sp.jv(1.5, x) + m.sp.jv(-0.5, x), [pos(4)], autograd=False),
    C("scipy.special", "yv", lambda m, x: m.sp.yv(0.3, x), [pos(4)], autograd=False),
    C("scipy.special", "logsumexp", lambda m, x, b: m.sp.logsumexp(x, b=b, return_sign=True)[0],
      [uni(-0.3, 0.3, 4), const([1.0, -0.2, 0.5, -0.1])], (0, 1), tag="return_sign"),
    C("scipy.special", "softmax", lambda m, x: m.sp.softmax(x), [anyv(4)], tag="all", autograd=False),
    C("scipy.special", "logsumexp", lambda m, x: m.sp.logsumexp(x, axis=0), [anyv(3, 2)], via="fa",
      tag="axis=0"),
    C("scipy.special", "softmax", lambda m, x: m.sp.softmax(x, axis=0), [anyv(3, 2)], via="fa",
      tag="axis=0", autograd=False),
    C("scipy.stats", "norm.sf", lambda m, x, mu, s: m.st.norm.sf(x, mu, s),
      [anyv(4), anyv(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "norm.ppf", lambda m, q, mu, s: m.st.norm.ppf(q, mu, s),
      [uni(0.2, 0.8, 4), anyv(4), pos(4)], (0, 1, 2), via="fa", autograd=False),
    C("scipy.stats", "norm.logpdf", lambda m, x, mu, s: m.st.norm.logpdf(x, mu, s),
      [anyv(4), anyv(), pos()], (0, 1, 2), via="fa", tag="scalar-parameters"),
    C("scipy.stats", "t.pdf", lambda m, x, df, mu, s: m.st.t.pdf(x, df, mu, s),
      [anyv(4), uni(2, 6, 4), anyv(4), pos(4)], (0, 1, 2, 3), via="fa"),
    C("scipy.stats", "t.logcdf", lambda m, x, df, mu, s: m.st.t.logcdf(x, df, mu, s),
      [anyv(4), uni(2, 6, 4), anyv(4), pos(4)], (0, 2, 3), via="fa"),
    C("scipy.stats", "t.cdf", lambda m, x, df, mu, s: m.st.t.cdf(x, df, mu, s),
      [anyv(4), uni(2, 6, 4), anyv(4), pos(4)], (0, 2, 3), via="fa", tag="loc,scale"),
    C("scipy.stats", "gamma.pdf", lambda m, x, a: m.st.gamma.pdf(x, a), [pos(4), pos(4)],
      (0, 1), via="fa"),
    C("scipy.stats", "beta.pdf", lambda m, x, a, b: m.st.beta.pdf(x, a, b),
      [uni(0.2, 0.8, 4), pos(4), pos(4)], (0, 1, 2), via="fa"),
    C("scipy.stats", "poisson.pmf", lambda m, k, mu: m.st.poisson.pmf(k, mu),
      [const([0.0, 1.0, 3.0, 5.0]), pos(4)], (1,), via="fa"),
    C("scipy.stats", "dirichlet.pdf", lambda m, x, a: m.st.dirichlet.pdf(x, a),
      [simplex(3), pos(3)], (1,), via="fa"),
    C("scipy.stats", "chi2.pdf", lambda m, x, df: m.st.chi2.pdf(x, df), [pos(4), uni(2, 5, 4)],
      (0, 1), via="fa"),
    C("scipy.stats", "multivariate_normal.logpdf",
      lambda m, x, mu, c: m.st.multivariate_normal.logpdf(x, mu, sym(m, c)),
      [anyv(4, 3), anyv(3), spd(3)], (0, 1, 2), via="fa", tag="batch-of-x"),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), [i for i in IDS if IDS.count(i) > 1]


# -- the loss of a case: sum(w * f(args)) over one packed vector ---------------------
class Setup:
    def __init__(self, case: Case, index: int):
        rng = np.random.default_rng(1000 + index)
        self.case = case
        self.args = [np.asarray(b(rng), dtype=float) for b in case.args]
        self.ns = PLAIN if case.via == "np" else FASTAD
        ref = case.call(PLAIN, *self.args)
        self.ref = np.asarray(ref)
        self.w = rng.uniform(0.5, 1.5, self.ref.shape)
        self.theta = np.concatenate([self.args[i].ravel() for i in case.diff])
        self.v = rng.normal(size=self.theta.shape)
        self.u = rng.normal(size=self.theta.shape)

    def unpack(self, theta):
        full = list(self.args)
        off = 0
        for i in self.case.diff:
            n = self.args[i].size
            full[i] = theta[off:off + n].reshape(self.args[i].shape)
            off += n
        return full

    def loss(self, theta):
        out = self.case.call(self.ns, *self.unpack(theta))
        return self.ns.np.sum(self.w * out)

    def plain_loss(self, theta):
        return float(np.sum(self.w * self.case.call(PLAIN, *self.unpack(np.asarray(theta)))))


def fd(f, x, v, h=1e-3):
    """Fourth-order central difference of f at x in the direction v."""
    return (-f(x + 2 * h * v) + 8 * f(x + h * v) - 8 * f(x - h * v) + f(x - 2 * h * v)) / (12 * h)


def close(got, want, rtol, atol=None):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=(atol if atol is not None else rtol) * scale)


CHECKS = ("names", "value", "rev", "fwd", "hessian", "fwd_over_rev", "fwd_over_fwd", "jit", "compiled",
          "fastad_module", "jit_hessian", "jit_jvp", "compiled_hvp", "vmap", "jacobian", "float32")


def params(check):
    out = []
    for i, c in enumerate(CASES):
        if check == "fastad_module" and c.via == "fa":
            continue  # already called through fastad's modules
        marks = ()
        if check in c.xfail:
            marks = (pytest.mark.xfail(strict=True, reason=c.xfail[check]),)
        out.append(pytest.param(i, id=c.id, marks=marks))
    return out


_setups: dict = {}


def setup(i) -> Setup:
    if i not in _setups:
        _setups[i] = Setup(CASES[i], i)
    return _setups[i]


def _resolve(modname, dotted):
    obj = importlib.import_module(modname)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("i", params("names"))
def test_names(i):
    c = CASES[i]
    assert callable(_resolve(FASTAD_MODULE[c.module], c.name))
    try:
        importlib.import_module("autograd")
    except ImportError:
        return
    try:
        _resolve(AUTOGRAD_MODULE[c.module], c.name)
        in_autograd = True
    except AttributeError:
        in_autograd = False
    assert in_autograd == c.autograd, "the table's autograd flag is out of date"


@pytest.mark.parametrize("i", params("value"))
def test_value(i):
    s = setup(i)
    got = s.case.call(s.ns, *s.args)
    close(got, s.ref, 1e-12)
    close(s.loss(s.theta), np.sum(s.w * s.ref), 1e-12)


@pytest.mark.parametrize("i", params("rev"))
def test_reverse(i):
    s = setup(i)
    g = fa.grad(s.loss)(s.theta)
    assert g.shape == s.theta.shape
    close(g @ s.v, fd(s.plain_loss, s.theta, s.v), 1e-6)


@pytest.mark.parametrize("i", params("fwd"))
def test_forward(i):
    s = setup(i)
    out, tangent = fa.jvp(s.loss, (s.theta,), (s.v,))
    close(out, s.plain_loss(s.theta), 1e-12)
    close(tangent, fd(s.plain_loss, s.theta, s.v), 1e-6)


def _grad_fd(s, direction):
    grad = fa.grad(s.loss)
    return fd(lambda t: np.asarray(grad(t)), s.theta, direction)


@pytest.mark.parametrize("i", params("hessian"))
def test_hessian(i):
    s = setup(i)
    H = fa.hessian(s.loss)(s.theta)
    n = s.theta.size
    assert H.shape == (n, n)
    close(H, H.T, 1e-8)
    close(H @ s.v, _grad_fd(s, s.v), 1e-5)


@pytest.mark.parametrize("i", params("fwd_over_rev"))
def test_forward_over_reverse(i):
    s = setup(i)
    _, hv = fa.jvp(fa.grad(s.loss), (s.theta,), (s.v,))
    close(hv, _grad_fd(s, s.v), 1e-5)


@pytest.mark.parametrize("i", params("fwd_over_fwd"))
def test_forward_over_forward(i):
    s = setup(i)

    def directional(t):
        return fa.jvp(s.loss, (t,), (s.u,))[1]

    _, uhv = fa.jvp(directional, (s.theta,), (s.v,))
    grad = fa.grad(s.loss)
    close(uhv, fd(lambda t: float(np.asarray(grad(t)) @ s.u), s.theta, s.v), 1e-5)


# the C VM where it is built; else the reference interpreter (Numba would
# compile each of the thousands of cases)
COMPILED = "c" if "c" in BACKENDS else "numpy"


def _backend(c):
    return "numpy" if c.complex_ else COMPILED


@pytest.mark.parametrize("i", params("jit"))
def test_jit(i):
    s = setup(i)
    backend = _backend(s.case)
    value = fa.jit(s.loss, backend=backend)
    gradient = fa.jit(fa.grad(s.loss), backend=backend)
    eager_value, eager_grad = s.loss(s.theta), fa.grad(s.loss)(s.theta)
    for _ in range(2):  # the second call replays the compiled trace
        close(value(s.theta), eager_value, 1e-11)
        close(gradient(s.theta), eager_grad, 1e-10)
    # a new point of the same signature reuses the compilation
    t2 = s.theta + 0.01 * s.v
    close(gradient(t2), fa.grad(s.loss)(t2), 1e-10)


@pytest.mark.parametrize("i", params("compiled"))
def test_compiled(i):
    s = setup(i)
    g = fa.compile(s.loss, backend=_backend(s.case))
    eager_value, eager_grad = fa.value_and_grad(s.loss)(s.theta)
    close(g(s.theta), eager_grad, 1e-10)
    value, grad = g.value_and_grad(s.theta)
    close(value, eager_value, 1e-11)
    close(grad, eager_grad, 1e-10)


@pytest.mark.parametrize("i", params("fastad_module"))
def test_fastad_module(i):
    """The same code through fastad.numpy / fastad.scipy (autograd's style of import)."""
    s = setup(i)
    fast = Setup(s.case, i)
    fast.ns = FASTAD
    close(fast.case.call(FASTAD, *fast.args), s.ref, 1e-12)
    close(fa.grad(fast.loss)(s.theta), fa.grad(s.loss)(s.theta), 1e-12)


@pytest.mark.parametrize("i", params("jit_hessian"))
def test_jit_hessian(i):
    s = setup(i)
    backend = _backend(s.case)
    H = fa.hessian(s.loss)(s.theta)
    close(fa.jit(fa.hessian(s.loss), backend=backend)(s.theta), H, 1e-9)
    close(fa.hessian(fa.jit(s.loss, backend=backend))(s.theta), H, 1e-9)


@pytest.mark.parametrize("i", params("jit_jvp"))
def test_jit_jvp(i):
    s = setup(i)
    eager = fa.jvp(s.loss, (s.theta,), (s.v,))
    jitted = fa.jit(lambda t, v: fa.jvp(s.loss, (t,), (v,)), backend=_backend(s.case))
    got = jitted(s.theta, s.v)
    close(got[0], eager[0], 1e-11)
    close(got[1], eager[1], 1e-10)
    close(fa.jvp(fa.jit(s.loss, backend=_backend(s.case)), (s.theta,), (s.v,))[1], eager[1], 1e-10)


@pytest.mark.parametrize("i", params("compiled_hvp"))
def test_compiled_hvp(i):
    s = setup(i)
    g = fa.compile(s.loss, backend=_backend(s.case))
    H = fa.hessian(s.loss)(s.theta)
    close(g.hvp(s.theta, s.v), H @ s.v, 1e-9)
    close(g.hessian(s.theta), H, 1e-9)


@pytest.mark.parametrize("i", params("vmap"))
def test_vmap_of_grad(i):
    """Per-example gradients at three points: vmap(grad(loss)) over a batch axis."""
    s = setup(i)
    thetas = np.stack([s.theta, s.theta + 0.01 * s.v, s.theta - 0.01 * s.u])
    want = np.stack([fa.grad(s.loss)(t) for t in thetas])
    close(fa.vmap(fa.grad(s.loss))(thetas), want, 1e-10)
    close(fa.vmap(s.loss)(thetas), [s.plain_loss(t) for t in thetas], 1e-11)


@pytest.mark.parametrize("i", params("jacobian"))
def test_jacobian_fwd_rev(i):
    """jacfwd and jacrev of the function itself (not the loss): the same matrix,
    output axes first, and w^T J is the loss's gradient."""
    s = setup(i)

    def f(theta):
        return s.case.call(s.ns, *s.unpack(theta))

    Jf = fa.jacobian(f, mode="fwd")(s.theta)
    Jr = fa.jacobian(f, mode="rev")(s.theta)
    assert Jf.shape == Jr.shape == s.ref.shape + s.theta.shape
    close(Jf, Jr, 1e-10)
    close(np.tensordot(s.w, Jr, axes=s.w.ndim), fa.grad(s.loss)(s.theta), 1e-10)


@pytest.mark.parametrize("i", params("float32"))
def test_float32(i):
    """float32 inputs (JAX's default): the traced result has NumPy's dtype (SciPy's
    distributions return float64 where fastad's keep float32, as JAX's do), the
    gradient and the tangent stay float32 and agree with float64's."""
    s = setup(i)
    args32 = [a.astype(np.float32) for a in s.args]
    t32 = s.theta.astype(np.float32)
    s32 = Setup(s.case, i)
    s32.args, s32.w = args32, s.w.astype(np.float32)

    def f(t):
        return s.case.call(s.ns, *s32.unpack(t))

    out, tangent = fa.jvp(f, (t32,), (s.v.astype(np.float32),))
    if s.case.module != "scipy.stats":
        want = np.asarray(s.case.call(PLAIN, *args32)).dtype
        assert np.asarray(out).dtype == want, f"value: {np.asarray(out).dtype}, NumPy's {want}"
    assert np.asarray(tangent).dtype == np.asarray(out).dtype
    g = fa.grad(s32.loss)(t32)
    assert g.dtype == np.float32
    close(g, fa.grad(s.loss)(s.theta), 2e-3)


def test_case_count():
    """The table spans the five modules with enough rows to be a conformance suite."""
    modules = {c.module for c in CASES}
    assert modules == set(FASTAD_MODULE)
    assert len(CASES) * len(CHECKS) >= 300


# -- JAX's conventions ---------------------------------------------------------------
W0 = np.array([0.3, -0.7, 1.1])
X0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.4], [0.1, 0.9, 0.3]])


def _model(w, x):
    return np.sum(np.tanh(x @ w) ** 2)


def _model_ref_grad(w, x, h=1e-6):
    return np.array([(_model(w + h * e, x) - _model(w - h * e, x)) / (2 * h) for e in np.eye(w.size)])


class _Phase(enum.Enum):
    TRAIN = 1


_AUX_EXTRA = {"array": lambda w: np.cos(w), "float": lambda w: 2.5, "int": lambda w: 3,
              "labels": lambda w: ("tanh", b"v1", _Phase.TRAIN, np.dtype(np.float32), float)}


@pytest.mark.parametrize("aux_kind", sorted(_AUX_EXTRA))
@pytest.mark.parametrize("how", ["grad", "value_and_grad", "jit-grad", "compile"])
def test_jax_has_aux(how, aux_kind, request):
    """aux is any pytree, returned untouched: arrays and numbers, and labels
    (strings, bytes, enums, dtypes, classes) a compiled function's structure holds."""
    def f(w):
        pred = np.tanh(X0 @ w)
        return np.sum(pred ** 2), {"pred": pred, "extra": _AUX_EXTRA[aux_kind](w)}

    if how == "grad":
        g, aux = fa.grad(f, has_aux=True)(W0)
    elif how == "value_and_grad":
        (v, aux), g = fa.value_and_grad(f, has_aux=True)(W0)
        close(v, _model(W0, X0), 1e-12)
    elif how == "jit-grad":
        g, aux = fa.jit(fa.grad(f, has_aux=True), backend=COMPILED)(W0)
    else:
        g, aux = fa.compile(f, has_aux=True, backend=COMPILED)(W0)
    close(g, _model_ref_grad(W0, X0), 1e-7)
    close(aux["pred"], np.tanh(X0 @ W0), 1e-12)
    if aux_kind == "labels":
        assert aux["extra"] == _AUX_EXTRA["labels"](W0)
    else:
        close(aux["extra"], _AUX_EXTRA[aux_kind](W0), 1e-12)


@pytest.mark.parametrize("argnums", [(0, 1), (1, 0), (1,)])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_jax_value_and_grad_argnums_tuple(argnums, mode):
    def f(w, x, scale):
        return scale * np.sum(np.sin(x @ w) * w[0])

    vg = fa.value_and_grad(f, argnums=argnums)
    if mode == "jit":
        vg = fa.jit(vg, backend=COMPILED)
    value, grads = vg(W0, X0, 2.0)
    assert isinstance(grads, tuple) and len(grads) == len(argnums)
    close(value, f(W0, X0, 2.0), 1e-12)
    h = 1e-6
    for a, g in zip(argnums, grads):
        arg = (W0, X0)[a]
        want = np.zeros(arg.shape)
        for idx in np.ndindex(arg.shape):
            e = np.zeros(arg.shape)
            e[idx] = h
            plus = [W0, X0]
            minus = [W0, X0]
            plus[a], minus[a] = arg + e, arg - e
            want[idx] = (f(*plus, 2.0) - f(*minus, 2.0)) / (2 * h)
        close(g, want, 1e-7)


@pytest.mark.parametrize("in_axes", [0, (0, None), (None, 0), (1, None)])
def test_jax_vmap_in_axes(in_axes):
    rng = np.random.default_rng(7)
    W = rng.normal(size=(4, 3))
    X = rng.normal(size=(4, 3, 3))
    f = lambda w, x: np.tanh(x @ w) * np.sum(w ** 2)
    if in_axes == 0 or in_axes == (0, 0):
        args, get = (W, X), (lambda k: (W[k], X[k]))
        in_axes = (0, 0)
    elif in_axes == (0, None):
        args, get = (W, X0), (lambda k: (W[k], X0))
    elif in_axes == (None, 0):
        args, get = (W0, X), (lambda k: (W0, X[k]))
    else:
        args, get = (W.T, X0), (lambda k: (W[k], X0))
    got = fa.vmap(f, in_axes=in_axes)(*args)
    want = np.stack([f(*get(k)) for k in range(4)])
    close(got, want, 1e-12)
    per_example = fa.vmap(fa.grad(lambda w, x: np.sum(f(w, x))), in_axes=in_axes)(*args)
    close(per_example, np.stack([fa.grad(lambda w, x: np.sum(f(w, x)))(*get(k)) for k in range(4)]),
          1e-12)


@pytest.mark.parametrize("mode", ["fwd", "rev", "auto"])
@pytest.mark.parametrize("fn", ["square", "wide", "tall"])
def test_jax_jacobian_modes(mode, fn):
    funcs = {"square": (lambda x: np.sin(x) * np.sum(x ** 2), np.array([0.3, -0.5, 1.2])),
             "wide": (lambda x: np.array([1.0, 2.0]) * np.sum(np.exp(x)),
                      np.array([0.1, 0.2, 0.3, 0.4])),
             "tall": (lambda x: np.outer(x, x).ravel(), np.array([0.5, -1.5]))}
    f, x = funcs[fn]
    J = fa.jacobian(f, mode=mode)(x)
    out = f(x)
    assert J.shape == out.shape + x.shape  # jacfwd/jacrev: output axes first
    h = 1e-6
    want = np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=-1)
    close(J, want, 1e-7)


def test_jax_jacobian_fwd_rev_agree_on_matrix_input():
    f = lambda a: np.linalg.inv(a) @ np.array([1.0, 2.0, 3.0])
    a = 3 * np.eye(3) + 0.2 * X0
    Jf = fa.jacobian(f, mode="fwd")(a)
    Jr = fa.jacobian(f, mode="rev")(a)
    assert Jf.shape == Jr.shape == (3, 3, 3)
    close(Jf, Jr, 1e-12)


def test_jax_hessian_and_hvp():
    f = lambda x: np.sum(np.sin(x) * x[0]) + np.prod(x)
    x, v = np.array([0.3, 1.1, -0.4]), np.array([1.0, -2.0, 0.5])
    H = fa.hessian(f)(x)
    close(fa.hvp(f)(x, v), H @ v, 1e-12)
    _, hv = fa.jvp(fa.grad(f), (x,), (v,))
    close(hv, H @ v, 1e-12)


def test_jax_jvp_vjp_pytrees():
    def f(p):
        return {"y": np.tanh(p["a"] @ p["b"]), "z": p["a"].sum()}

    p = {"a": X0[:2], "b": W0}
    t = {"a": np.ones_like(X0[:2]), "b": np.array([1.0, 0.0, -1.0])}
    out, tangent = fa.jvp(f, (p,), (t,))
    out2, vjp_fn = fa.vjp(f, p)
    ct = {"y": np.array([1.0, 2.0]), "z": np.array(0.5)}
    (cot,) = vjp_fn(ct)
    # <ct, J t> = <J^T ct, t>
    lhs = np.sum(ct["y"] * tangent["y"]) + ct["z"] * tangent["z"]
    rhs = np.sum(cot["a"] * t["a"]) + np.sum(cot["b"] * t["b"])
    close(lhs, rhs, 1e-12)
    close(out["y"], out2["y"], 1e-15)


# -- autograd's conventions ----------------------------------------------------------
@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_autograd_grad_argnum_int(argnum):
    def f(a, b, c):
        return np.sum(np.sin(a) * b ** 2 + np.exp(c * a))

    args = [np.array([0.1, 0.5]), np.array([1.0, -2.0]), np.array([0.3, 0.4])]
    g = fa.grad(f, argnum)(*args)
    h = 1e-6
    want = []
    for k in range(2):
        p = [a.copy() for a in args]
        m = [a.copy() for a in args]
        p[argnum][k] += h
        m[argnum][k] -= h
        want.append((f(*p) - f(*m)) / (2 * h))
    close(g, want, 1e-7)


@pytest.mark.parametrize("fname", ["tanh", "log", "expit", "gammaln"])
def test_autograd_elementwise_grad_by_vjp(fname):
    fn = {"tanh": np.tanh, "log": np.log, "expit": scipy.special.expit,
          "gammaln": scipy.special.gammaln}[fname]
    x = np.array([0.4, 1.3, 2.2, 0.9])
    out, vjp_fn = fa.vjp(fn, x)
    (eg,) = vjp_fn(np.ones_like(x))
    h = 1e-6
    close(eg, (fn(x + h) - fn(x - h)) / (2 * h), 1e-7)
    close(out, fn(x), 1e-14)


def test_autograd_value_and_grad():
    v, g = fa.value_and_grad(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]))
    close(v, 9.0, 1e-15)
    close(g, [3.0, 12.0], 1e-15)


# -- the transforms' names -----------------------------------------------------------
AUTOGRAD_TRANSFORMS = ["grad", "value_and_grad", "jacobian", "hessian", "elementwise_grad",
                       "make_vjp", "make_jvp", "make_hvp", "grad_and_aux", "holomorphic_grad",
                       "hessian_tensor_product", "hessian_vector_product",
                       "vector_jacobian_product", "tensor_jacobian_product", "grad_named",
                       "multigrad_dict", "make_ggnvp", "checkpoint", "primitive"]
JAX_TRANSFORMS = ["grad", "value_and_grad", "jacobian", "hessian", "jvp", "vjp", "vmap", "jit",
                  "jacfwd", "jacrev", "linearize", "custom_jvp", "custom_vjp", "checkpoint"]
HAVE = {"grad", "value_and_grad", "jacobian", "hessian", "jvp", "vjp", "vmap", "jit", "primitive",
        "elementwise_grad", "make_vjp", "make_jvp", "make_hvp", "grad_and_aux",
        "hessian_vector_product", "hessian_tensor_product", "vector_jacobian_product",
        "tensor_jacobian_product", "grad_named", "multigrad_dict", "checkpoint", "jacfwd",
        "jacrev", "linearize", "custom_jvp", "custom_vjp", "holomorphic_grad", "make_ggnvp"}


def _name_params():
    out = []
    for convention, names in (("autograd", AUTOGRAD_TRANSFORMS), ("jax", JAX_TRANSFORMS)):
        for name in names:
            marks = () if name in HAVE else (pytest.mark.xfail(
                strict=True, reason=f"fastad has no top-level {name!r} ({convention}'s name)"),)
            out.append(pytest.param(convention, name, id=f"{convention}.{name}", marks=marks))
    return out


@pytest.mark.parametrize("convention,name", _name_params())
def test_transform_names(convention, name):
    if convention == "autograd":
        import autograd
        assert hasattr(autograd, name)  # the table names autograd's real API
    assert callable(getattr(fa, name))
