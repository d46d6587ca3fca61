"""Every primitive's sparsity rule against the dense derivatives.

A detected pattern must hold every nonzero of the dense Jacobian and Hessian
(a missed one is a wrong answer), and the sparse values must equal the dense
ones to rounding.  Checked here per primitive and per kind of parameter it
takes: a generator draws reductions over any axes with or without keepdims,
slices with steps and negative bounds, gathers and scatters with repeated
and negative indices, cumulative sums and products, products with a zero
block, structural operations, sorts, and loops, each at random points and at
one on the kinks (zeros and ties: ``abs``, ``clip``, ``maximum``, ``where``);
a table covers the rest (decompositions, FFT, interpolation, special
functions, custom rules, while loops, branches), and a test checks that the
table reaches every differentiable primitive of the registry.  Then: the
compiled forms on the C VM and Numba against the reference interpreter, a
compiled plan kept only while what the function captured is unchanged, and
bad input refused with a clear error.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.lax as lax
import fastad.numpy as fnp
import fastad.scipy.linalg as fsl
import fastad.scipy.special as fss
from conftest import BACKENDS
from fastad.core.registry import registry
from fastad.sparse import derivatives

AUDIT = settings(max_examples=int(os.environ.get("FASTAD_SPARSE_EXAMPLES", 40)), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def points(n: int, seed: int) -> list[np.ndarray]:
    """Two random points and one on the kinks (zeros, ties, +-1)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, n), rng.uniform(0.2, 1.2, n) * rng.choice([-1, 1], n),
            rng.integers(-2, 3, n) * 0.5]


def dense_and_sparse(f, x, w):
    """The dense Jacobian and Hessian (of the weighted sum) and the patterns
    and sparse values of both."""
    def loss(v):
        return np.sum(f(v) * w)
    jac = np.asarray(fa.jacobian(f)(x)).reshape(-1, x.size)
    hess = np.asarray(fa.hessian(loss)(x)).reshape(x.size, x.size)
    return (jac, fa.sparsity(f)(x).jacobian, fa.jacobian(f, sparse=True)(x),
            hess, fa.sparsity(loss)(x).hessian, fa.hessian(loss, sparse=True)(x))


def assert_covered(pattern: sp.spmatrix, dense: np.ndarray, what: str) -> None:
    """Every finite nonzero of ``dense`` is in the pattern (a NaN of the dense
    derivative, prod's gradient at a zero, spreads to entries it does not
    depend on)."""
    missed = (dense != 0) & np.isfinite(dense) & ~pattern.toarray()
    assert not missed.any(), f"{what}: pattern misses {np.argwhere(missed)[:6].tolist()}"


def structure(m: sp.csr_matrix) -> sp.csr_matrix:
    """A sparse result's stored entries (zeros included) as a pattern."""
    return sp.csr_matrix((np.ones(m.nnz, bool), m.indices, m.indptr), shape=m.shape)


def assert_values(got: sp.spmatrix, want: np.ndarray, rtol: float, what: str) -> None:
    if not np.all(np.isfinite(want)):
        return
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got.toarray(), want, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_central_differences(f, w, x, js, hs, what: str) -> None:
    """The sparse Jacobian and Hessian times a random direction against
    central differences of f and of the weighted sum's gradient (away from
    the kinks: the random points only)."""
    v = np.random.default_rng(2).standard_normal(x.size)
    h = 1e-6
    fd = (np.reshape(f(x + h * v), -1) - np.reshape(f(x - h * v), -1)) / (2 * h)
    grad = fa.grad(lambda u: np.sum(f(u) * w))
    hd = (np.asarray(grad(x + h * v)) - np.asarray(grad(x - h * v))) / (2 * h)
    for got, want, name in ((js @ v, fd, "jacobian"), (hs @ v, hd, "hessian")):
        if np.all(np.isfinite(want)) and np.all(np.isfinite(got)):
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale,
                                       err_msg=f"{what} {name} against differences")


def audit(f, n: int, seed: int = 0, what: str = "", differences: bool = True) -> None:
    for k, x in enumerate(points(n, seed)):
        out = np.asarray(f(x))
        w = np.random.default_rng(seed + 1).standard_normal(out.shape)
        jac, jp, js, hess, hp, hs = dense_and_sparse(f, x, w)
        assert jp.shape == jac.shape and hp.shape == hess.shape
        assert (hp != hp.T).nnz == 0, what
        assert_covered(jp, jac, f"{what} jacobian at {x}")
        assert_covered(hp, hess, f"{what} hessian at {x}")
        assert_values(js, jac, 1e-9, f"{what} jacobian at {x}")
        assert_values(hs, hess, 1e-8, f"{what} hessian at {x}")
        if k < 2 and differences:
            assert_central_differences(f, w, x, js, hs, f"{what} at {x}")


# -- the generator ----------------------------------------------------------------
#: elementwise maps around the operation under test: nonlinear ones give it
#: Hessian terms, ``flip`` couples distant elements
MAPS = {
    "id": lambda v: v, "sin": np.sin, "square": lambda v: v * v, "cube": lambda v: v ** 3,
    "exp": np.exp, "abs": np.abs, "recip": lambda v: 1.0 / (2.5 + v),
    "flip": lambda v: v * v.reshape(-1)[::-1].reshape(v.shape),
}
maps = st.sampled_from(sorted(MAPS))


@st.composite
def shapes(draw, max_dims=3):
    return tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=max_dims)))


@st.composite
def axes_of(draw, ndim):
    kind = draw(st.sampled_from(["none", "one", "many"]))
    if kind == "none":
        return None
    if kind == "one":
        return draw(st.integers(-ndim, ndim - 1))
    return tuple(draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                               unique=True)))


@st.composite
def reductions(draw):
    shape, inner, outer = draw(shapes()), MAPS[draw(maps)], MAPS[draw(maps)]
    name = draw(st.sampled_from(["sum", "prod", "max", "min", "mean", "var", "amax"]))
    axis, keepdims = draw(axes_of(len(shape))), draw(st.booleans())
    op = getattr(np, name)

    def f(x):
        return np.reshape(outer(op(inner(x.reshape(shape)), axis=axis, keepdims=keepdims)), (-1,))
    return f"{name}(axis={axis}, keepdims={keepdims})", f, int(np.prod(shape))


bounds = st.one_of(st.none(), st.integers(-7, 7))


@st.composite
def slicing(draw):
    shape = draw(shapes(2))
    key = tuple(slice(draw(bounds), draw(bounds), draw(st.sampled_from([None, 1, 2, 3, -1, -2])))
                for _ in shape)
    if draw(st.booleans()):  # an integer index, negative or not, on the first axis
        key = (draw(st.integers(-shape[0], shape[0] - 1)),) + key[1:]
    outer = MAPS[draw(maps)]

    def f(x):
        y = x.reshape(shape)[key]
        return np.concatenate([np.reshape(outer(y), (-1,)), x * x[0]])
    return f"x.reshape({shape})[{key}]", f, int(np.prod(shape))


@st.composite
def gathers(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    n = rows * cols
    flat = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=7)))
    r = np.array(draw(st.lists(st.integers(-rows, rows - 1), min_size=1, max_size=4)))
    c = np.array(draw(st.lists(st.integers(-cols, cols - 1), min_size=len(r), max_size=len(r))))
    axis = draw(st.integers(-2, 1))
    inner, outer = MAPS[draw(maps)], MAPS[draw(maps)]

    def f(x):
        m = inner(x).reshape(rows, cols)
        parts = [outer(x[flat]) * x[flat[::-1]], m[r].ravel() * m[r[::-1]].ravel(),
                 outer(m[:, c]).ravel(), m[r, c] * x[flat[0]],
                 np.take(m, r if axis % 2 == 0 else c, axis=axis).ravel() ** 2]
        return np.concatenate(parts)
    return f"gathers {flat} {r} {c} axis {axis}", f, n


@st.composite
def scatters(draw):
    n = draw(st.integers(2, 12))
    dest = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    dest = np.array([d - n if draw(st.booleans()) else d for d in dest])  # some negative
    src = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=len(dest), max_size=len(dest))))
    acc = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=8)))  # repeats
    step = draw(st.sampled_from([1, 2, -1, -2]))
    form = draw(st.sampled_from(["set", "add", "add.at", "scatter_add", "slice", "item", "mul"]))
    inner, outer = MAPS[draw(maps)], MAPS[draw(maps)]
    scalar, on_x = draw(st.booleans()), draw(st.booleans())

    def f(x):
        y = inner(x) if on_x else fnp.zeros(n)
        if form == "set":
            y[dest] = x[0] * x[-1] if scalar else outer(x[src])
        elif form == "add":
            y[dest] += outer(x[src]) * x[src[::-1]]
        elif form == "add.at":
            np.add.at(y, acc, outer(x[acc]) if not scalar else x[1 % n] ** 2)
        elif form == "scatter_add":
            y = fnp.scatter_add(y, acc, outer(x[acc[::-1]]))
        elif form == "slice":
            part = y[::step]
            y[::step] = outer(x[: part.shape[0]]) * x[0]
        elif form == "item":
            y[int(dest[0])] = outer(x[src[0]]) * x[src[-1]]
        else:
            y[dest] *= outer(x[src])
        return np.concatenate([y * x, np.sin(y)])
    return f"{form} dest {dest} src {src} acc {acc} step {step}", f, n


@st.composite
def cumulative(draw):
    shape = draw(shapes(2))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    op = draw(st.sampled_from([np.cumsum, np.cumprod]))
    reverse = draw(st.booleans())
    inner, outer = MAPS[draw(maps)], MAPS[draw(maps)]

    def f(x):
        m = inner(x.reshape(shape))
        if reverse:
            m = np.flip(m, axis=axis)
        return outer(op(m, axis=axis)).ravel()
    return f"{op.__name__} {shape} axis {axis} reverse {reverse}", f, int(np.prod(shape))


@st.composite
def products(draw):
    m, k, q = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch = draw(st.sampled_from([(), (2,)]))
    form = draw(st.sampled_from(["const @ x", "x @ const", "x @ x", "vec", "einsum", "dot"]))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    const = rng.normal(size=batch + (m, k)) * (rng.random(batch + (m, k)) < 0.5)
    const[..., : m // 2, : k // 2] = 0.0  # a zero block
    outer = MAPS[draw(maps)]
    n = int(np.prod(batch + (k, q)))

    def f(x):
        b = x.reshape(batch + (k, q))
        if form == "const @ x":
            y = const @ outer(b)
        elif form == "x @ const":
            y = outer(np.swapaxes(b, -1, -2)) @ np.swapaxes(const, -1, -2)
        elif form == "x @ x":
            y = np.swapaxes(b, -1, -2) @ outer(b)
        elif form == "vec":  # 1-D operands
            y = np.concatenate([np.reshape(b[..., 0] @ const.reshape(-1, k).T, (-1,)),
                                np.reshape(x[:k] @ outer(x[:k]), (1,))])
        elif form == "einsum":
            y = np.einsum("...ij,...jk->...ik", const, b * b)
        else:
            y = np.dot(outer(x), x[::-1])
        return np.reshape(outer(y), (-1,))
    return f"{form} batch {batch} m{m} k{k} q{q}", f, n


@st.composite
def structural(draw):
    shape = draw(shapes(3))
    ndim = len(shape)
    perm = tuple(draw(st.permutations(range(ndim))))
    axis = draw(st.integers(-ndim, ndim - 1))
    form = draw(st.sampled_from(["concat", "concat_list", "stack", "transpose", "broadcast",
                                 "flip", "roll", "repeat", "tile", "pad", "diff", "tri"]))
    outer = MAPS[draw(maps)]

    def f(x):
        u = x.reshape(shape)
        if form == "concat":
            y = np.concatenate([u, outer(u)], axis=axis)
        elif form == "concat_list":  # plain lists of traced scalars among the parts
            flat = np.reshape(u, (-1,))
            y = np.concatenate([outer(flat), [np.sum(outer(u)), flat[-1] * flat[0]],
                                (1.0, flat[0])])
        elif form == "stack":
            y = np.stack([u, outer(u), u * u], axis=axis)
        elif form == "transpose":
            y = outer(np.transpose(u, perm)) * np.transpose(u, perm)
        elif form == "broadcast":
            y = u * np.sum(outer(u), axis=axis, keepdims=True)
        elif form == "flip":
            y = outer(np.flip(u, axis=axis)) * u
        elif form == "roll":
            y = np.roll(outer(u), 1, axis=axis) * u
        elif form == "repeat":
            y = np.repeat(outer(u), 2, axis=axis)
        elif form == "tile":
            y = np.tile(outer(u), 2)
        elif form == "pad":
            y = outer(np.pad(u, 1)) * 2.0
        elif form == "diff":
            y = outer(np.diff(u, axis=axis)) if u.shape[axis] > 1 else outer(u)
        else:
            y = outer(np.triu(u.reshape(u.shape[0], -1)))
        return np.reshape(y, (-1,))
    return f"{form} {shape} perm {perm} axis {axis}", f, int(np.prod(shape))


@st.composite
def kinks(draw):
    n = draw(st.integers(1, 6))
    lo, hi = sorted(draw(st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.5]), min_size=2,
                                  max_size=2)))
    form = draw(st.sampled_from(["abs", "clip", "maximum", "minimum", "where", "sign", "sort",
                                 "argsort", "argmax"]))
    outer = MAPS[draw(maps)]

    def f(x):
        r = x[::-1]
        y = {"abs": lambda: np.abs(x) * r, "clip": lambda: np.clip(outer(x), lo, hi) * r,
             "maximum": lambda: np.maximum(x, r) * outer(x), "minimum": lambda: np.minimum(outer(x), lo),
             "where": lambda: np.where(x >= r, outer(x), x * r), "sign": lambda: np.sign(x) * outer(r),
             "sort": lambda: outer(np.sort(x)) * x, "argsort": lambda: x[np.argsort(r)] * outer(r),
             "argmax": lambda: x[np.argmax(x)] * outer(x)}[form]()
        return np.reshape(y, (-1,))
    return f"{form} clip {lo} {hi}", f, n


@st.composite
def loops(draw):
    length = draw(st.integers(1, 5))
    width = draw(st.integers(1, 3))
    form = draw(st.sampled_from(["scan", "fori", "python", "python_items"]))
    outer = MAPS[draw(maps)]
    n = width + length

    def f(x):
        c0, xs = x[:width], x[width:]
        if form == "scan":
            c, ys = fa.scan(lambda c, xi: (np.sin(c) * xi + c * c[::-1], c[0] * xi), c0, xs)
            return np.concatenate([outer(c), ys])
        if form == "fori":
            return outer(fa.fori_loop(0, length, lambda i, c: c * 0.5 + np.cos(c) * c[::-1], c0))
        if form == "python":
            c, out = c0, []
            for i in range(length):
                c = np.sin(c) * xs[i] + c[::-1] ** 2
                out.append(c[0])
            return np.concatenate([outer(c), fnp.stack(out)])
        y = fnp.zeros(n)
        for i in range(1, n):
            y[i] = x[i - 1] * outer(x[i]) + y[i - 1] * 0.5
        return y
    return f"{form} length {length} width {width}", f, n


FAMILIES = [reductions(), slicing(), gathers(), scatters(), cumulative(), products(),
            structural(), kinks(), loops()]


@AUDIT
@given(case=st.one_of(*FAMILIES), seed=st.integers(0, 2**16))
def test_patterns_hold_every_nonzero_of_generated_operations(case, seed):
    what, f, n = case
    audit(f, n, seed, what)


def float32_const(x):
    """A float32 x through float64 constants and bincount's float64 weights."""
    a = np.arange(1.0, x.size + 1.0)
    y = np.bincount(np.arange(x.size) % 3, weights=x * x[::-1], minlength=3)
    return np.concatenate([(a * x) ** 2, np.sin(y)])


@AUDIT
@given(case=st.one_of(*FAMILIES, st.just(("float64 constants", float32_const, 5))),
       seed=st.integers(0, 2**16))
def test_float32_sparse_derivatives_have_the_dense_dtypes(case, seed):
    """At a float32 x, the sparse Jacobian takes f's dtype and the sparse
    Hessian x's, as the dense Hessian (max and min's tie weights were float64
    constants: a float32 function's sparse Hessian was float64, and a star
    coloring's float64 product gave a float64 Hessian where substitution gave
    float32); values equal the float64 ones to float32 rounding."""
    what, f, n = case
    x = points(n, seed)[0]
    x32 = x.astype(np.float32)
    w = np.random.default_rng(seed).standard_normal(np.shape(f(x))).astype(np.float32)

    def loss(v):
        return np.sum(f(v) * w)
    jac = np.asarray(fa.jacobian(f)(x32))
    hess = np.asarray(fa.hessian(loss)(x32))
    js, hs = fa.jacobian(f, sparse=True)(x32), fa.hessian(loss, sparse=True)(x32)
    compiled = fa.compile(loss).hessian(x32, sparse=True)
    assert js.dtype == np.result_type(f(x32)), what
    assert hs.dtype == compiled.dtype == hess.dtype == np.float32, what
    assert_values(js, np.asarray(fa.jacobian(f)(x)).reshape(js.shape), 1e-4, what)
    for h in (hs, compiled):
        assert_values(h, np.asarray(fa.hessian(lambda v: np.sum(f(v) * w.astype(np.float64)))(x)),
                      1e-4, what)


# -- the table: what the generator does not draw ----------------------------------
def _custom(x):
    @fa.custom_vjp
    def g(a):
        return np.sin(a) * a[::-1]

    def g_fwd(a):
        return g(a), a

    def g_bwd(a, ct):
        return (ct * np.cos(a) * a[::-1] + (ct * np.sin(a))[::-1],)
    g.defvjp(g_fwd, g_bwd)

    @fa.custom_jvp
    def h(a):
        return np.exp(a) * 2.0

    @h.defjvp
    def h_jvp(primals, tangents):
        return h(primals[0]), h(primals[0]) * tangents[0]
    return np.concatenate([g(x[:3]), h(x[3:]) * x[:3]])


def _while(x):
    state = fa.while_loop(lambda s: s[1] < 3, lambda s: (s[0] * np.cos(s[0]) + x[3:], s[1] + 1),
                          (x[:3], 0))
    return np.concatenate([state[0], x[:3] ** 2])


def _linalg(x):
    a = x.reshape(3, 3) + 4.0 * np.eye(3)
    s = a @ a.T
    w, v = np.linalg.eigh(s)
    low = np.tril(a)
    q, r = np.linalg.qr(a)
    one = lambda v: np.reshape(v, (1,))  # noqa: E731
    return np.concatenate([
        np.linalg.solve(a, x[:3]), np.linalg.inv(a).ravel(), one(np.linalg.det(a)),
        one(np.linalg.slogdet(a)[1]), np.linalg.cholesky(s).ravel(), w, np.abs(v[:, 0]),
        np.linalg.svd(a, compute_uv=False), r.ravel(), np.abs(q[0]),
        np.linalg.pinv(a).ravel(), fsl.solve_triangular(low, x[:3], lower=True),
        fsl.sqrtm(s).ravel(), fsl.solve_sylvester(a, s, x.reshape(3, 3)).ravel(),
        np.abs(np.linalg.eigvals(a)), one(np.linalg.norm(a))])


def _special(x):
    p = 0.5 + 0.3 * np.tanh(x)  # in (0, 1)
    q = 1.0 + x ** 2  # positive
    return np.concatenate([
        fss.erf(x), fss.erfc(x), fss.erfinv(0.5 * np.tanh(x)), fss.erfcinv(p), fss.expit(x),
        fss.logit(p), fss.log_expit(x), fss.ndtr(x), fss.ndtri(p), fss.log_ndtr(x),
        fss.gamma(q), fss.gammaln(q), fss.rgamma(q), fss.polygamma(1, q), fss.beta(q, q[::-1]),
        fss.betaln(q, q[::-1]), fss.betainc(2.0, 3.0, p), fss.gammainc(2.0, q),
        fss.gammaincc(1.5, q), fss.iv(1.0, x), fss.ive(1.0, x), fss.jn(2, x), fss.yn(1, q),
        fss.stdtr(3.0, x), fss.xlogy(q, q[::-1]), fss.xlog1py(x, q), np.cbrt(q), np.exp2(x),
        fss.exp1(q), fss.expi(q), fss.erfcx(x), fss.kv(1.5, q), fss.kve(0.5, q), fss.expn(2, q),
        fss.spence(q), fss.dawsn(x), *fss.sici(q), *fss.fresnel(x), fss.zeta(2.5, q),
        fss.owens_t(x, x[::-1]), fss.hyp1f1(0.5, 1.5, x),
        # traced orders (no derivative in them): a compiled function's arguments
        fss.iv(fnp.stop_gradient(q[0]), x), fss.ive(fnp.stop_gradient(q[1]), x),
        fss.kv(fnp.stop_gradient(q[0]), q), fss.kve(fnp.stop_gradient(q[1]), q),
        np.log2(q), np.log10(q), np.arctan2(x, q), np.hypot(x, x[::-1]), np.logaddexp(x, x[::-1]),
        np.copysign(x, x[::-1]), np.power(q, x), np.reciprocal(q), np.arccosh(q + 1.0),
        np.fmod(x * 3.0, q), np.remainder(x * 3.0, q),
        np.arcsinh(x), np.arctanh(0.5 * np.tanh(x)), np.arcsin(0.5 * np.tanh(x)),
        np.arccos(0.5 * np.tanh(x)), np.tan(0.5 * x), np.sinh(x), np.cosh(x), np.deg2rad(x),
        np.expm1(x), np.log1p(q), np.log(q), np.arctan(x), np.sqrt(q), np.real(x * (1 + 1j)) * np.imag(np.conj(x * 1j))])


def _interp(x):
    grid = np.linspace(-2.0, 2.0, 5)
    return np.concatenate([np.interp(x, grid, grid ** 2) * x,
                           np.interp(grid[1:4] + x[:3] * 0.1, grid, x[:5] ** 2)])


def _fft(x):
    return np.concatenate([np.abs(np.fft.fft(x)) ** 2, np.fft.rfft(x).real * x[:5],
                           np.fft.irfft(np.fft.rfft(x ** 2), 8)])


def _traced_gathers(x):
    """Gathers and scatters by traced integers (a compiled function's integer
    data): every row may be read."""
    m = x.reshape(4, 3)
    i = np.argsort(x[:4])
    rows = fnp.zeros((4, 3))
    np.add.at(rows, i[:2], m[:2] ** 2)
    return np.concatenate([(m[i] * m).ravel(), np.sort(m, axis=1).ravel() ** 2,
                           rows.ravel() * x, lax.dynamic_update_slice(x ** 2, x[:3] * x[3:6],
                                                                      (4,))])


def _branch(x):
    r = fa.cond(x[0] > 0, lambda a: a ** 2, lambda a: np.sin(a), x[1:4])
    k = fa.switch(1, [lambda a: a * a[::-1], lambda a: np.exp(a)], x[2:])
    return np.concatenate([r, k, x[4:] * x[:2]])


def _transforms(x):
    g = fa.grad(lambda a: np.sum(np.sin(a) * a[::-1] ** 2))
    v = fa.vmap(lambda r: r[0] * np.sin(r[1]))
    c = fa.checkpoint(lambda a: np.sin(a) * a[::-1])
    return np.concatenate([g(x) * x, v(x.reshape(3, 2)), c(x) ** 2,
                           fa.stop_gradient(x ** 2) * x + x[::-1] * fa.stop_gradient(x[0])])


def _basics(x):
    """One of each structural primitive the generator draws (so that the
    coverage test below need not draw)."""
    m = x.reshape(3, 4)
    y = fnp.zeros(12)
    y[[1, 3]] = x[:2]
    y = fnp.scatter_add(y, np.array([2, 2]), x[2:4])
    c, _ = fa.scan(lambda c, xi: (c * xi, c), x[0], x[1:4])
    return np.concatenate([
        np.sum(m, axis=0), np.prod(m, axis=1), np.max(m, axis=0), np.min(m, axis=1),
        np.cumsum(m, axis=1).ravel(), np.cumprod(x[:4]), m.T.ravel() * x,
        np.broadcast_to(x[:4], (3, 4)).ravel() * x, (m @ m.T).ravel(), (m.T @ np.sin(m)).ravel(),
        np.sort(x) * x,
        y * x, np.reshape(c, (1,)), np.maximum(x, 0.0) * np.minimum(x, 0.0) + np.abs(x) / 2.0
        - np.where(x > 0, x, -x) ** 2])


def _draws(x):
    """Keyed draws: a gamma's of a constant shape (its derivative in the shape
    has no derivative of its own, which Hessians would need), a normal's
    reparameterized, a uniform's bounds."""
    key = fa.random.PRNGKey(3)
    return np.concatenate([fa.random.gamma(key, 2.0, (2, 3)).ravel() * x[3],
                           x[3:] * fa.random.normal(key, (3,)) + x[:3],
                           fa.random.uniform(key, (3,), minval=x[:3], maxval=x[3:] + 4)])


TABLE = {"custom": (_custom, 6), "draws": (_draws, 6), "while": (_while, 6), "linalg": (_linalg, 9),
         "special": (_special, 6), "interp": (_interp, 8), "fft": (_fft, 8),
         "traced_gathers": (_traced_gathers, 12), "branch": (_branch, 6),
         "transforms": (_transforms, 6), "basics": (_basics, 12)}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_patterns_hold_every_nonzero_of_the_other_primitives(name):
    f, n = TABLE[name]
    # stop_gradient's derivative is by definition not the differences'
    audit(f, n, 7, name, differences=name != "transforms")


def _prims(tape, seen):
    for ins in tape.instrs:
        seen.add(ins.prim)
        body = dict(ins.params).get("body")
        if body is not None:  # a loop's body: its own instructions
            _prims(body.tape, seen)


#: differentiable primitives the audit does not reach from NumPy code, and why
UNREACHED = {
    "eig": "its real form is taken through numpy.linalg.eig_complex",
    "interp_scatter": "the transpose of interp: met in derivative tapes only",
    "interp_slope": "interp's slope, met in derivative tapes only",
    "gamma_slope": "a gamma draw's derivative in its shape: met in derivative tapes only",
    "prod_others": "prod's partial derivatives: met in derivative tapes only",
    "no_derivative": "its derivative is refused (NotImplementedError): nothing to compare",
    "linalg_factors": "complete QR and full SVD: their derivative is refused (as JAX's)",
    "scatter_add_along": "take_along's transpose: met in derivative tapes only",
    "triangular_matmul": "made by the optimizer from solve_triangular's derivative",
    **{name: "a collective over a vmapped axis: vmap's replay replaces it before a "
       "pattern is detected" for name in ("psum", "all_gather", "psum_scatter")},
}


def test_the_audit_reaches_every_differentiable_primitive():
    """Each primitive gets its rule checked: the table and the structural
    primitives the generator draws record every differentiable primitive of
    the registry but those listed (with the reason) in UNREACHED."""
    seen: set[str] = set()
    for f, n in TABLE.values():
        _prims(derivatives._lifted_tape(f, 0, (points(n, 0)[0],), {})[0], seen)
    wanted = {name for name, p in registry.items() if p.differentiable and p.builtin}
    assert not wanted - seen - set(UNREACHED), sorted(wanted - seen - set(UNREACHED))
    assert not seen & set(UNREACHED), "reached now: check it and drop it from UNREACHED"


# -- compiled ---------------------------------------------------------------------
def _indexing(x):
    """Gathers and scatters with negative and repeated indices, slices with
    negative steps, the scatters' batched forms (negative flat indices used
    to reach the example before)."""
    y = fnp.zeros(12)
    y[[-1, 3, -12]] = x[[0, -2, 5]] ** 2
    y = fnp.scatter_add(y, np.array([2, 2, -4, 0]), x[:4] * x[4:8])
    m = x.reshape(3, 4)
    return np.concatenate([y * x, m[::-1, -1::-2].ravel() ** 3, np.cumsum(m, axis=0).ravel() * x,
                           np.prod(m[:, :2], axis=1)])


def _blocks(x):
    a = np.zeros((6, 12))
    a[:3, :4] = np.arange(1.0, 13.0).reshape(3, 4)
    a[3:, 8:] = 1.0
    m = x.reshape(3, 4)
    return np.concatenate([(a @ x) * x[:6], np.sum(m ** 2, axis=1, keepdims=True).ravel(),
                           np.max(m, axis=0) * np.min(m, axis=1)[:1], (m @ m.T).ravel()])


def _kinked(x):
    return np.concatenate([np.abs(x) * x[::-1], np.clip(x * x[0], -0.5, 0.5),
                           np.maximum(x, x[::-1]) ** 2, np.where(x > 0, x ** 2, x * x[1])])


COMPILED = {"indexing": (_indexing, 12), "blocks": (_blocks, 12), "kinked": (_kinked, 6),
            "custom": TABLE["custom"], "branch": TABLE["branch"], "interp": TABLE["interp"]}


def compiled_against_reference(f, n, backend):
    """The compiled sparse Jacobian and Hessian on ``backend`` equal the
    reference interpreter's and the eager dense derivatives, at random points
    and on the kinks; the patterns as eagerly detected."""
    for k, x in enumerate(points(n, 5)):
        w = np.random.default_rng(6).standard_normal(np.shape(f(x)))

        def loss(v):
            return np.sum(f(v) * w)
        jac = np.asarray(fa.jacobian(f)(x)).reshape(-1, n)
        hess = np.asarray(fa.hessian(loss)(x))
        for b in (backend, "numpy"):
            js = fa.jit(f, backend=b).jacobian(x, sparse=True)
            hs = fa.compile(loss, backend=b).hessian(x, sparse=True)
            assert_covered(structure(js), jac, f"{b} jacobian")
            assert_covered(structure(hs), hess, f"{b} hessian")
            assert_values(js, jac, 1e-9, f"{b} jacobian")
            assert_values(hs, hess, 1e-8, f"{b} hessian")
            if k < 2:  # away from the kinks
                assert_central_differences(f, w, x, js, hs, f"{b} at {x}")


@pytest.mark.skipif("c" not in BACKENDS, reason="needs the C extension")
@pytest.mark.parametrize("name", sorted(COMPILED))
def test_compiled_sparse_derivatives_on_the_c_vm(name):
    compiled_against_reference(*COMPILED[name], "c")


def _negative(x):
    """Negative flat indices in a gather and in a scatter-add (apart: a batched
    product's two shifts to the example before cancelled out when one fed the
    other): small, for Numba."""
    return np.concatenate([fnp.scatter_add(x * x[0], np.array([-1, 2, -6]), x[:3] ** 2),
                           fnp.take_flat(x, np.array([-2, 0, -5])) * x[:3]])


@pytest.mark.skipif("numba" not in BACKENDS, reason="needs numba")
def test_compiled_sparse_derivatives_on_numba():
    compiled_against_reference(_negative, 6, "numba")  # one: Numba compiles are slow


# -- a compiled plan holds while what it read holds --------------------------------
COMPILED_BACKEND = "c" if "c" in BACKENDS else "numpy"
CAPTURED = {"matrix": np.diag(np.arange(1.0, 7.0)), "rows": np.array([0, 1, 2]), "k": 2}


def _captured(x):
    return (CAPTURED["matrix"] @ x) ** 2 + x[CAPTURED["rows"]].sum() * x[CAPTURED["k"]]


def test_a_kept_plan_follows_what_the_function_captured():
    """The compiled function reads a captured float array at each call and
    retraces when an index table or a number changes; its kept plan must
    follow, or a new nonzero is missed (a matrix's zero filled in place, an
    index table written or rebound, a number rebound)."""
    x = np.linspace(0.1, 0.6, 6)
    j = fa.jit(_captured, backend=COMPILED_BACKEND)
    g = fa.compile(lambda v: np.sum(np.sin(_captured(v))), backend=COMPILED_BACKEND)
    old = dict(CAPTURED, matrix=CAPTURED["matrix"].copy(), rows=CAPTURED["rows"].copy())

    def check():
        assert_values(j.jacobian(x, sparse=True), np.asarray(fa.jacobian(_captured)(x)), 1e-9,
                      "jacobian")
        assert_values(g.hessian(x, sparse=True),
                      np.asarray(fa.hessian(lambda v: np.sum(np.sin(_captured(v))))(x)), 1e-8,
                      "hessian")
    try:
        check()
        CAPTURED["matrix"][0, 5] = 3.0  # in place: a new nonzero of the product
        check()
        CAPTURED["rows"][:] = [3, 4, 5]  # an index table written in place
        check()
        CAPTURED["rows"] = np.array([5, 0])  # rebound
        check()
        CAPTURED["k"] = 4
        check()
    finally:
        CAPTURED.update(old)


def test_a_kept_plan_is_per_integer_argument_values():
    """An index array passed to a compiled function is data there: the plan
    of one array's values must not serve another's."""
    def f(x, idx):
        return x[idx] ** 2 * x[idx[::-1]]
    x = np.linspace(0.1, 1.0, 6)
    j = fa.jit(f, backend=COMPILED_BACKEND)
    g = fa.compile(lambda x, idx: np.sum(np.cos(f(x, idx))), backend=COMPILED_BACKEND)
    for idx in ([1, 1, -1, 0], [2, 3, 4, 5], [1, 1, -1, 0], [0, 0, 0, 5]):
        idx = np.array(idx)
        assert_values(j.jacobian(x, idx, sparse=True), np.asarray(fa.jacobian(f)(x, idx)),
                      1e-9, f"jacobian {idx}")
        want = np.asarray(fa.hessian(lambda x, idx: np.sum(np.cos(f(x, idx))))(x, idx))
        assert_values(g.hessian(x, idx, sparse=True), want, 1e-8, f"hessian {idx}")
    assert len(j._sparse(0)._plans) == 3  # one per distinct index array


def test_a_guarded_function_gets_the_jacobian_pattern_of_its_branch():
    def f(x):
        if x[0] > 0:
            return x * x[::-1]
        return x[1:] ** 2 * x[0]
    j = fa.jit(f, backend=COMPILED_BACKEND)
    for x0 in (1.0, -1.0, 1.0):
        x = np.linspace(0.5, 1.5, 6)
        x[0] = x0
        dense = np.asarray(fa.jacobian(f)(x)).reshape(-1, 6)
        for got in (j.jacobian(x, sparse=True), fa.jacobian(f, sparse=True)(x)):
            assert got.shape == dense.shape
            assert_covered(structure(got), dense, f"branch {x0}")
            assert_values(got, dense, 1e-12, f"branch {x0}")


BAD = [
    ("hessian of a vector", lambda: fa.hessian(lambda x: x ** 2, sparse=True)(np.ones(3)),
     "one scalar"),
    ("compiled hessian of a vector",
     lambda: fa.jit(lambda x: x ** 2, backend=COMPILED_BACKEND).hessian(np.ones(3), sparse=True),
     "one scalar"),
    ("hessian of a complex scalar",
     lambda: fa.hessian(lambda x: np.sum(x ** 2 * 1j), sparse=True)(np.ones(3)), "real-valued"),
    ("compiled hessian of a complex scalar",
     lambda: fa.compile(lambda x: np.sum(x ** 2 * 1j), backend="numpy").hessian(
         np.ones(3), sparse=True), "real-valued"),
    ("hessian of a tuple",
     lambda: fa.hessian(lambda x: (np.sum(x), np.sum(x ** 2)), sparse=True)(np.ones(3)),
     "one array"),
    ("jacobian of a dict", lambda: fa.jacobian(lambda x: {"a": x}, sparse=True)(np.ones(3)),
     "one array"),
    ("jacobian by a tuple argument",
     lambda: fa.jacobian(lambda p: p[0] * p[1], sparse=True)((np.ones(2), np.ones(2))),
     "one array"),
    ("complex x", lambda: fa.hessian(lambda x: np.sum(x * x).real, sparse=True)(np.ones(3, complex)),
     "real floating-point"),
    ("integer x", lambda: fa.jacobian(lambda x: x * 2.0, sparse=True)(np.arange(3)), "integer"),
    ("compiled integer x",
     lambda: fa.compile(lambda x: np.sum(x * 2.0), backend="numpy").hessian(np.arange(3),
                                                                           sparse=True),
     "integer"),
    ("several argnums",
     lambda: fa.jacobian(lambda x, y: x * y, argnums=(0, 1), sparse=True)(np.ones(2), np.ones(2)),
     "one array"),
]


@pytest.mark.parametrize("what, call, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_with_a_clear_error(what, call, message):
    with pytest.raises(TypeError, match=message):
        call()
