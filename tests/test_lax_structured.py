"""``fastad.lax``'s pieces with more structure than a table row:
associative_scan on pytrees against its sequential definition, dot_general
against ``np.einsum`` over drawn dimension numbers, pad against an index
placement, top_k's order, custom_root and custom_linear_solve against finite
differences of the solved value, lu, the names the module promises or
explains, and clear errors for bad input.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.lax.linalg
from fastad import lax
from helpers import check_function
from test_lax import _jax_or_skip, _pad_oracle
from conftest import BACKENDS

# the backend is not the point here: one compiled backend (the reference
# interpreter without the C extension, never a cold Numba compile per case)
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)

FEW = settings(max_examples=8, deadline=None)
pytestmark = pytest.mark.filterwarnings("ignore:fastad.*runs on the")


# -- pieces with more structure ---------------------------------------------------------------
def _sequential_scan(fn: Callable, elems: Any, reverse: bool = False) -> Any:
    """The definition: out[k] = fn(out[k-1], elems[k]) (from the end when reversed)."""
    leaves = elems if isinstance(elems, tuple) else (elems,)
    n = leaves[0].shape[0]
    order = range(n - 1, -1, -1) if reverse else range(n)
    out, acc = [None] * n, None
    for k in order:
        x = tuple(leaf[k] for leaf in leaves)
        x = x if isinstance(elems, tuple) else x[0]
        acc = x if acc is None else fn(acc, x)
        out[k] = acc
    if isinstance(elems, tuple):
        return tuple(np.stack([o[i] for o in out]) for i in range(len(leaves)))
    return np.stack(out)


def _affine(a: tuple, b: tuple) -> tuple:
    """Composition of x -> m x + c maps, (m, c) pairs: associative, not commutative."""
    return a[0] * b[0], b[0] * a[1] + b[1]


@FEW
@given(n=st.integers(0, 9), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_associative_scan_pytrees(n: int, reverse: bool, seed: int) -> None:
    """A linear recurrence as a scan of (m, c) pairs: the values of the
    definition, derivatives against finite differences."""
    rng = np.random.default_rng(seed)
    m, c = rng.uniform(0.5, 1.5, (n, 2)), rng.uniform(-1, 1, (n, 2))
    want = _sequential_scan(_affine, (m, c), reverse) if n else (m, c)
    got = lax.associative_scan(_affine, (m, c), reverse=reverse)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    if n:
        fa.check_grads(lambda m, c: lax.associative_scan(_affine, (m, c), reverse=reverse)[1],
                       (m, c), order=2, modes=("fwd", "rev"), seed=seed)


@FEW
@given(n=st.integers(1, 7), axis=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_associative_scan_matmul_along_axis(n: int, axis: int, seed: int) -> None:
    """Matrix products (not commutative) along either axis, dicts as pytrees, compiled."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 2, 2) if axis == 0 else (2, n, 2))
    mats = x if axis == 0 else np.moveaxis(x, 1, 0)  # the scanned axis first

    def body(x):
        out = lax.associative_scan(lambda a, b: {"m": np.einsum("...ij,...jk->...ik", a["m"],
                                                                 b["m"])},
                                   {"m": x if axis == 0 else np.moveaxis(x, 1, 0)})
        return out["m"]
    want = _sequential_scan(lambda a, b: a @ b, mats)
    np.testing.assert_allclose(body(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jit(body)(x), want, rtol=1e-12, atol=1e-12)
    fa.check_grads(body, (x,), order=1, modes=("rev",), seed=seed)


@st.composite
def dot_general_problem(draw):
    """Two operands with drawn batch, contracting and free axes, in shuffled positions."""
    nb, nc = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    nl, nr = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sizes = draw(st.lists(st.integers(1, 3), min_size=nb + nc + nl + nr,
                          max_size=nb + nc + nl + nr))
    b, c = sizes[:nb], sizes[nb:nb + nc]
    free_l, free_r = sizes[nb + nc:nb + nc + nl], sizes[nb + nc + nl:]
    lperm = draw(st.permutations(range(nb + nc + nl)))
    rperm = draw(st.permutations(range(nb + nc + nr)))
    lshape = [(b + c + free_l)[i] for i in lperm]
    rshape = [(b + c + free_r)[i] for i in rperm]
    where_l = {k: lperm.index(k) for k in range(nb + nc)}
    where_r = {k: rperm.index(k) for k in range(nb + nc)}
    dims = ((tuple(where_l[nb + i] for i in range(nc)), tuple(where_r[nb + i] for i in range(nc))),
            (tuple(where_l[i] for i in range(nb)), tuple(where_r[i] for i in range(nb))))
    return tuple(lshape), tuple(rshape), dims


def _einsum_oracle(a: np.ndarray, b: np.ndarray, dims: tuple) -> np.ndarray:
    (lc, rc), (lb, rb) = dims
    ls, rs = list(range(a.ndim)), list(range(a.ndim, a.ndim + b.ndim))
    for i, j in zip(lc + lb, rc + rb):
        rs[j] = ls[i]
    out = [ls[i] for i in lb] + [ls[i] for i in range(a.ndim) if i not in lc + lb]
    out += [rs[j] for j in range(b.ndim) if j not in rc + rb]
    return np.einsum(a, ls, b, rs, out)


@FEW
@given(problem=dot_general_problem(), seed=st.integers(0, 2**16))
def test_dot_general_against_einsum(problem: tuple, seed: int) -> None:
    lshape, rshape, dims = problem
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, lshape), rng.uniform(-1, 1, rshape)
    f = functools.partial(lax.dot_general, dimension_numbers=dims)
    check_function(f, (a, b), order=1, oracle=lambda a, b: _einsum_oracle(a, b, dims), seed=seed)
    out = lax.dot_general(a, b, dims, preferred_element_type=np.float32)
    assert out.dtype == np.float32


@FEW
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=2),
       data=st.data(), seed=st.integers(0, 2**16))
def test_pad_against_placement(shape: list, data: Any, seed: int) -> None:
    """Interior, negative and positive edge padding against an index placement."""
    config = []
    for n in shape:
        interior = data.draw(st.integers(0, 2))
        size = n + max(n - 1, 0) * interior
        lo = data.draw(st.integers(-size, 2))
        hi = data.draw(st.integers(-(size + min(lo, 0)), 2))
        config.append((lo, hi, interior))
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    want = _pad_oracle(x, -0.25, config)
    got = lax.pad(x, -0.25, config)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if x.size:
        check_function(lambda x, v: lax.pad(x, v, config), (x, np.array(0.3)), order=1,
                       oracle=lambda x, v: _pad_oracle(x, v, config), seed=seed)


@pytest.mark.parametrize("values", [
    [1.0, np.nan, 3.0, 3.0, -0.0, np.inf, -np.inf, np.nan],
    np.array([3, 1, 3, np.iinfo(np.int32).min, np.iinfo(np.int32).max, 0], np.int32),
    np.array([3, 0, 255, 3], np.uint8), [True, False, True]])
def test_top_k_order(values: Any) -> None:
    """Decreasing, ties by index, NaN above every number (as XLA's), integers
    at their extremes; eager and compiled (the indices as traced data)."""
    x = np.asarray(values)
    nan = np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, bool)
    want = sorted(range(len(x)), key=lambda i: (not nan[i], -int(x[i]) if x.dtype.kind in "iub"
                                                else -x[i], i))[:3]
    got_values, got_indices = lax.top_k(x, 3)
    np.testing.assert_array_equal(got_indices, want)
    np.testing.assert_array_equal(got_values, x[want])
    assert got_indices.dtype == np.int32
    if x.dtype.kind == "f":
        compiled = jit(lambda v: lax.top_k(v, 3)[0])
        np.testing.assert_array_equal(compiled(x), x[want])
        np.testing.assert_array_equal(compiled(x[::-1].copy()), lax.top_k(x[::-1], 3)[0])


def test_reduce_precision_to_float32() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 5)
    want = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(lax.reduce_precision(x, 8, 23), want)
    np.testing.assert_array_equal(jit(lambda x: lax.reduce_precision(x, 8, 23))(x), want)
    assert lax.reduce_precision(x, 11, 52) is x
    with pytest.raises(NotImplementedError, match="reduce_precision"):
        lax.reduce_precision(x, 5, 10)


# -- solvers ------------------------------------------------------------------------------------
def _newton(f: Callable, x0: Any, steps: int = 30) -> Any:
    """A scalar Newton solver of the kind written for lax.custom_root."""
    x = x0
    for _ in range(steps):
        slope = fa.grad(f)(x) if not isinstance(x, np.ndarray) or x.ndim == 0 else None
        x = x - f(x) / slope
    return x


def _scalar_tangent_solve(g: Callable, y: Any) -> Any:
    return y / g(1.0)


def _cube_root(a: Any) -> Any:
    """x with x^3 + x - a = 0, by custom_root."""
    return lax.custom_root(lambda x: x ** 3 + x - a, 1.0,
                           lambda f, x0: _bisect(f, -10.0, 10.0), _scalar_tangent_solve)


def _bisect(f: Callable, lo: float, hi: float) -> float:
    """Bisection on plain values: its steps have no derivative, the implicit one is used."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(np.asarray(getattr(f(mid), "value", f(mid)))) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("a", [-1.5, 0.3, 2.0])
def test_custom_root_scalar_derivatives(a: float) -> None:
    """The root's derivatives to second order against finite differences of
    the solved root (the solver itself is not differentiable)."""
    x = _cube_root(np.array(a))
    np.testing.assert_allclose(x ** 3 + x - a, 0.0, atol=1e-12)
    fa.check_grads(_cube_root, (np.array(a),), order=2, modes=("fwd", "rev"), eps=1e-5)
    np.testing.assert_allclose(fa.grad(_cube_root)(np.array(a)), 1.0 / (3 * x ** 2 + 1),
                               rtol=1e-10)


def test_custom_root_vector_with_aux() -> None:
    """A vector root (a linear system's in disguise) with a Jacobian
    tangent_solve and aux from the solver; derivatives in the matrix and
    the right-hand side against finite differences."""
    rng = np.random.default_rng(3)
    a0, b0 = np.eye(3) * 3 + rng.uniform(-0.5, 0.5, (3, 3)), rng.uniform(-1, 1, 3)

    def root(a, b):
        f = lambda x: a @ x + 0.1 * np.sin(x) - b  # noqa: E731

        def solve(f, x0):
            x = x0
            for _ in range(50):
                x = x - np.linalg.solve(fa.jacobian(f)(x), f(x))
            return x, {"residual": np.max(np.abs(f(x)))}

        def tangent_solve(g, y):
            return np.linalg.solve(fa.jacobian(g)(y), y)
        x, aux = lax.custom_root(f, np.zeros(3), solve, tangent_solve, has_aux=True)
        assert float(np.asarray(getattr(aux["residual"], "value", aux["residual"]))) < 1e-10
        return x
    fa.check_grads(root, (a0, b0), order=2, modes=("fwd", "rev"))


def _cg(matvec: Callable, b: Any, iterations: int = 8) -> Any:
    """Conjugate gradients, a fixed number of steps (enough for the small systems here)."""
    x = np.zeros_like(b)
    r = b - matvec(x)
    p = r
    for _ in range(iterations):
        rr = np.sum(r * r)
        ap = matvec(p)
        alpha = rr / np.maximum(np.sum(p * ap), 1e-300)
        x, r = x + alpha * p, r - alpha * ap
        p = r + np.sum(r * r) / np.maximum(rr, 1e-300) * p
    return x


SPD = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])


@pytest.mark.parametrize("symmetric", [True, False])
def test_custom_linear_solve_fixed_operator(symmetric: bool) -> None:
    """A fixed operator: reverse mode uses transpose_solve, never the
    solver's own derivative (an opaque solver, its right-hand side cut by
    stop_gradient, still gives the right gradient); with a traceable
    solver, both modes to second order."""
    def opaque(matvec, b):
        return np.linalg.solve(SPD, fa.stop_gradient(b))

    def traceable(matvec, b):
        return np.linalg.solve(SPD, b)

    def f(b, solve=traceable):
        kw = {"symmetric": True} if symmetric else {"transpose_solve": solve}
        return np.sin(lax.custom_linear_solve(lambda x: SPD @ x, b, solve, **kw))
    b = np.array([0.3, -0.2, 0.5])
    np.testing.assert_allclose(f(b), np.sin(np.linalg.solve(SPD, b)), rtol=1e-12)
    fa.check_grads(functools.partial(f, solve=opaque), (b,), order=1, modes=("rev",))
    fa.check_grads(f, (b,), order=2, modes=("fwd", "rev"))


def test_custom_linear_solve_traced_operator_and_aux() -> None:
    """An operator closing over traced parameters: derivatives in them and
    in b against finite differences; aux passes through."""
    def f(scale, b):
        matvec = lambda x: SPD @ x + scale * x  # noqa: E731
        x, aux = lax.custom_linear_solve(matvec, b, lambda m, v: (_cg(m, v), "cg"),
                                         symmetric=True, has_aux=True)
        assert aux == "cg"
        return x
    args = (np.array(0.7), np.array([0.3, -0.2, 0.5]))
    np.testing.assert_allclose(f(*args), np.linalg.solve(SPD + 0.7 * np.eye(3), args[1]),
                               rtol=1e-10)
    fa.check_grads(f, args, order=2, modes=("fwd", "rev"))


# -- linalg -------------------------------------------------------------------------------------
def test_lu_factors_and_derivatives() -> None:
    """lu, pivots and permutation as scipy's, x[perm] = L U, eager and compiled."""
    x = np.random.default_rng(5).uniform(-1, 1, (4, 4))
    lu, pivots, perm = lax.linalg.lu(x)
    want_lu, want_piv = scipy.linalg.lu_factor(x)
    np.testing.assert_allclose(lu, want_lu, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(pivots, want_piv)
    low = np.tril(lu, -1) + np.eye(4)
    np.testing.assert_allclose(x[perm], low @ np.triu(lu), atol=1e-12)
    compiled = jit(lambda x: lax.linalg.lu(x)[0])
    for seed in (6, 7):
        y = np.random.default_rng(seed).uniform(-1, 1, (4, 4))
        np.testing.assert_allclose(compiled(y), scipy.linalg.lu_factor(y)[0], atol=1e-12)


def test_linalg_is_a_submodule() -> None:
    import importlib
    module = importlib.import_module("fastad.lax.linalg")
    from fastad.lax import linalg
    assert module is linalg is lax.linalg is fastad.lax.linalg


# -- the names ------------------------------------------------------------------------------------
PROMISED = """
scan fori_loop while_loop cond switch stop_gradient map select dynamic_slice
dynamic_update_slice dynamic_index_in_dim logistic rsqrt integer_pow square exp log log1p expm1
tanh sin cos sqrt abs neg max min pow add sub mul div dot clamp erf lgamma digamma
acos acosh asin asinh atan atan2 atanh cbrt ceil floor round RoundingMethod cosh sinh tan erfc
erf_inv exp2 reciprocal sign rem nextafter is_finite real imag conj complex polygamma igamma
igammac bessel_i0e bessel_i1e betainc eq ne lt le gt ge bitwise_and bitwise_or bitwise_not
bitwise_xor shift_left shift_right_logical shift_right_arithmetic population_count clz
convert_element_type select_n optimization_barrier reduce_precision dtype
broadcast broadcast_in_dim broadcast_to_rank broadcast_shapes broadcast_like broadcasted_iota
iota full full_like concatenate stack unstack expand_dims squeeze reshape rev slice
slice_in_dim index_in_dim dynamic_slice_in_dim dynamic_update_slice_in_dim
dynamic_update_index_in_dim transpose pad split tile collapse
reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax argmin
reduce cumsum cumprod cummax cummin cumlogsumexp sort sort_key_val top_k associative_scan
dot_general batch_matmul Precision custom_root custom_linear_solve linalg
conv_general_dilated conv conv_with_general_padding conv_dimension_numbers ConvDimensionNumbers
padtype_to_pads reduce_window
""".split()
PROMISED_LINALG = "cholesky triangular_solve eigh qr svd lu tridiagonal_solve".split()


def test_promised_names() -> None:
    missing = [n for n in PROMISED if not hasattr(lax, n)]
    missing += [f"linalg.{n}" for n in PROMISED_LINALG if not hasattr(lax.linalg, n)]
    assert not missing, missing
    assert set(PROMISED) <= set(lax.__all__)


@pytest.mark.parametrize("name,kind", [("pswapaxes", "across devices"),
                                       ("pbroadcast", "across devices"),
                                       ("with_sharding_constraint", "across devices"),
                                       ("rng_uniform", "XLA-only"),
                                       ("add_p", "XLA-only"), ("conv_general_dilated_local",
                                                               "not provided"),
                                       ("no_such_name", "no attribute")])
def test_names_without_meaning_here(name: str, kind: str) -> None:
    with pytest.raises(AttributeError, match=kind):
        getattr(lax, name)


def test_every_public_jax_lax_name_is_provided_or_explained() -> None:
    """Where JAX is installed: each public name of jax.lax is here or raises
    an AttributeError that says why."""
    jax = _jax_or_skip()
    unexplained = []
    for name in dir(jax.lax):
        if name.startswith("_") or hasattr(lax, name):
            continue
        try:
            getattr(lax, name)
        except AttributeError as e:
            if "no attribute" in str(e):
                unexplained.append(name)
    assert not unexplained, unexplained


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,error,match", [
    (lambda: lax.broadcast_in_dim(np.ones(3), (2, 4), (1,)), ValueError, "cannot go to"),
    (lambda: lax.broadcast_in_dim(np.ones(3), (3, 2), (1, 0)), ValueError, "increasing"),
    (lambda: lax.pad(np.ones(3), 0.0, [(1, 1)]), ValueError, "padding_config"),
    (lambda: lax.pad(np.ones(3), 0.0, [(1, 1, -1)]), ValueError, "interior"),
    (lambda: lax.slice(np.ones((2, 2)), (0,), (1,)), ValueError, "one entry per axis"),
    (lambda: lax.split(np.ones(5), (2, 2)), ValueError, "add up"),
    (lambda: lax.index_in_dim(np.ones(3), 3), IndexError, "out of range"),
    (lambda: lax.dot_general(np.ones((2, 3)), np.ones((2, 3)), (((1,), (0,)), ((), ()))),
     ValueError, "size"),
    (lambda: lax.dot_general(np.ones(2), np.ones(2), (((0, 0), (0, 0)), ((), ()))),
     ValueError, "distinct"),
    (lambda: lax.dot(np.ones((2, 2, 2)), np.ones(2)), TypeError, "dot_general"),
    (lambda: lax.batch_matmul(np.ones((2, 2, 2)), np.ones((3, 2, 2))), ValueError, "batch"),
    (lambda: lax.sort((np.ones(3), np.ones(4))), ValueError, "one shape"),
    (lambda: lax.sort(np.ones(3), num_keys=2), ValueError, "num_keys"),
    (lambda: lax.top_k(np.ones(3), 4), ValueError, "top_k"),
    (lambda: lax.select_n(np.ones(2), np.ones(2)), TypeError, "boolean or integer"),
    (lambda: lax.shift_left(np.ones(2), np.ones(2)), TypeError, "integer"),
    (lambda: lax.reduce_xor(np.ones(2), (0,)), TypeError, "boolean or integer"),
    (lambda: lax.associative_scan(None, np.ones(2)), TypeError, "callable"),
    (lambda: lax.associative_scan(_affine, (np.ones(2), np.ones(3))), ValueError, "same size"),
    (lambda: lax.linalg.qr(np.eye(2), pivoting=True), NotImplementedError, "pivoting"),
    (lambda: lax.linalg.lu(np.ones((2, 3))), ValueError, "square"),
    (lambda: lax.conv(np.ones((1, 3, 4, 4)), np.ones((1, 2, 2, 2)), (1, 1), "VALID"), ValueError,
     "feature_group_count"),
    (lambda: lax.conv(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), (1, 1), "FULL"), ValueError,
     "SAME_LOWER"),
    (lambda: lax.conv_general_dilated(np.ones((1, 1, 4)), np.ones((1, 1, 2)), (1,), "VALID",
                                      dimension_numbers=("NCW", "OIH", "NCW")), ValueError,
     "spatial letters"),
    (lambda: lax.reduce_window(np.ones(4), 0.0, lax.add, (2, 2)), ValueError, "one positive"),
    (lambda: fa.grad(lambda x: lax.nextafter(x, 1.0))(0.5), TypeError, "plain arrays"),
])
def test_bad_input_raises_clearly(call: Callable, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()

