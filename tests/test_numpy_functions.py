"""NumPy functions beyond the core: sorting and partitioning, gathers along an
axis, cumprod, diff, cross, kron, pad, the nan-reductions, polyval, interp (in x
and in its table fp);
the methods of binary ufuncs (reduce, accumulate, outer, at) and
vectorize; values against NumPy, both modes to second order against finite differences
(float64 and float32), compiled against the reference interpreter.  Written
with plain ``import numpy as np``: NumPy's dispatch routes them to fastad.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
import fastad.scipy.signal as fsignal
from helpers import (Case, axes_for, broadcast_pair, case_test, registrar, shapes,
                     two_shapes)

CASES: list[Case] = []
ONE_COMPILED = "c" if "c" in fa.backends_available() else "numpy"


case = registrar(CASES)


@st.composite
def shape_and_axis(draw, min_dims=1, min_side=0, allow_none=True):
    shape = draw(shapes(min_dims=min_dims, min_side=min_side))
    return (shape,), {"axis": draw(axes_for(shape, allow_none=allow_none, allow_tuple=False))}


def along_axis(**kw):
    return lambda data: data.draw(shape_and_axis(**kw))


# -- sorting ------------------------------------------------------------------------
@case("sort", ["distinct"], along_axis(), covers=["argsort", "take_along"])
def _sort(x, axis):
    return np.sort(x, axis=axis) * np.arange(1, 1 + np.sort(x, axis=axis).shape[-1])


@case("sort_method_order", ["distinct"], along_axis(allow_none=False),
      covers=["argsort"])
def _sorted_by_argsort(x, axis):
    order = np.argsort(x, axis=axis)
    return np.sin(np.take_along_axis(x, order, axis=axis))


@st.composite
def top_k_args(draw):
    (shape,), params = draw(shape_and_axis(min_side=1, allow_none=False))
    params["k"] = draw(st.integers(0, shape[params["axis"]] + 2))  # fewer or more than the axis
    params["first_row"] = draw(st.booleans())  # arr of size 1 off the axis, broadcast
    return (shape,), params


@case("top_k_by_argsort", ["distinct"], lambda data: data.draw(top_k_args()),
      covers=["argsort"])
def _top_k(x, axis, k, first_row):
    order = np.argsort(x, axis=axis)
    picks = np.take(order, np.arange(k) % x.shape[axis], axis=axis)  # k of them, repeats too
    arr = np.take(x, [0], axis=(axis + 1) % x.ndim) if first_row and x.ndim > 1 else x
    return np.take_along_axis(arr, picks, axis=axis) ** 2


@st.composite
def histogram_args(draw):
    n = draw(st.integers(1, 6))
    return ((n,),), {"bins": draw(st.sampled_from([1, 3, 5, "auto", "sturges", "sqrt"]))}


@case("histogram_edges", ["distinct"], lambda data: data.draw(histogram_args()),
      covers=[])
def _histogram_edges(x, bins):
    """The edges found from the samples: a linspace between their extremes."""
    edges = np.histogram(x, bins=bins)[1] + np.histogram_bin_edges(x, bins) * 0.5
    _, xe, ye = np.histogram2d(x, x ** 2, bins=2)
    return edges.sum() * xe + ye * np.histogramdd(x[:, None], bins=3)[1][0][:3]


@st.composite
def partition_args(draw):
    (shape,), params = draw(shape_and_axis(min_side=1, allow_none=False))
    params["kth"] = draw(st.integers(0, shape[params["axis"]] - 1))
    return (shape,), params


@case("partition", ["distinct"], lambda data: data.draw(partition_args()),
      covers=["argpartition", "take_along"])
def _partition(x, kth, axis):
    return np.partition(x, kth, axis=axis) ** 2


@st.composite
def take_args(draw):
    (shape,), params = draw(shape_and_axis(min_side=1))
    n = int(np.prod(shape)) if params["axis"] is None else shape[params["axis"]]
    params["indices"] = np.asarray(draw(st.lists(st.integers(-n, n - 1), max_size=5)), np.int64)
    return (shape,), params


@case("take_constant_indices", ["real"], lambda data: data.draw(take_args()), covers=["take"])
def _take(x, indices, axis):
    return np.take(x, indices, axis=axis)


@case("take_traced_indices", ["distinct"], along_axis(min_dims=1, min_side=1),
      covers=["gather_rows"])
def _take_traced(x, axis):
    if axis is None:
        order = np.argsort(x.reshape(-1))
    else:
        order = np.argsort(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)[:, 0])
    return np.take(x, order[:2], axis=axis)


@case("take_along_axis_constant", ["real"], along_axis(min_side=1, allow_none=False),
      covers=["take"])
def _take_along_constant(x, axis):
    idx = np.flip(np.arange(x.shape[axis])).reshape(
        [-1 if i == axis % x.ndim else 1 for i in range(x.ndim)])
    return np.take_along_axis(x, np.broadcast_to(idx, x.shape), axis=axis)


# -- cumulative and differences --------------------------------------------------------
case("cumprod", ["nonzero"], along_axis(min_dims=0), covers=["cumprod"])(np.cumprod)


@case("cumprod_method_dtype", ["nonzero"], along_axis(), covers=["cumprod"])
def _cumprod_sum(x, axis):
    return np.cumprod(x, axis=axis) + np.cumsum(x, axis=axis)


@case("prod_others", ["real"], along_axis(allow_none=False), covers=["prod_others"])
def _prod_others(x, axis):
    """prod's partial derivatives, the products of the other factors of each
    slice (met in prod's derivative tapes): its own derivatives are the
    cumulative products' before and after each factor."""
    from fastad.core.registry import registry
    from fastad.core.tracer import bind
    return bind(registry["prod_others"], x, axis=axis % max(np.ndim(x), 1))


@st.composite
def diff_args(draw):
    (shape,), params = draw(shape_and_axis(allow_none=False))
    params["n"] = draw(st.integers(0, 2))
    extra = draw(st.sampled_from(["none", "scalar", "array"]))
    if extra == "scalar":
        params["prepend"], params["append"] = 0.5, -1.0
    elif extra == "array":
        side = tuple(1 if i == params["axis"] % len(shape) else d for i, d in enumerate(shape))
        params["append"] = np.full(side, 2.0)
    return (shape,), params


def _diff(x, n, axis, prepend=np._NoValue, append=np._NoValue):
    return np.diff(x, n=n, axis=axis, prepend=prepend, append=append)


case("diff", ["real"], lambda data: data.draw(diff_args()))(_diff)


@st.composite
def cross_shapes(draw):
    a, b = draw(broadcast_pair(max_dims=2))
    return (a + (3,), b + (3,)), {}


case("cross", ["real", "real"], lambda data: data.draw(cross_shapes()))(np.cross)


@st.composite
def cross_axis_args(draw):
    batch = draw(shapes(max_dims=2, min_side=1))
    position = draw(st.integers(0, len(batch)))
    shape = batch[:position] + (3,) + batch[position:]
    return (shape, shape), {"axis": position}


@case("cross_axis", ["real", "real"], lambda data: data.draw(cross_axis_args()))
def _cross_axis(a, b, axis):
    return np.cross(a, b, axis=axis)


@st.composite
def kron_shapes(draw):
    return (draw(shapes(max_dims=2, max_side=3)), draw(shapes(max_dims=2, max_side=3))), {}


case("kron", ["real", "real"], lambda data: data.draw(kron_shapes()))(np.kron)


# -- padding ---------------------------------------------------------------------------
@st.composite
def pad_args(draw):
    shape = draw(shapes(min_dims=1, max_dims=2, min_side=1))
    width = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape)
    mode = draw(st.sampled_from(["constant", "edge", "reflect", "symmetric", "wrap"]))
    params = {"pad_width": width, "mode": mode}
    if mode == "reflect":  # NumPy reflects repeatedly; keep widths below the side
        params["pad_width"] = tuple((min(lo, d - 1), min(hi, d - 1))
                                    for (lo, hi), d in zip(width, shape))
    if mode == "constant" and draw(st.booleans()):
        params["constant_values"] = draw(st.sampled_from([1.5, ((1.0, 2.0),) * len(shape)]))
    return (shape,), params


case("pad", ["real"], lambda data: data.draw(pad_args()))(np.pad)


# -- nan-reductions --------------------------------------------------------------------
def _with_nans(x):
    """NaN where x > 0.45 ("offint" values are at least 0.15 from it), except in
    the first position of the last axis, so no slice is all NaN."""
    keep = np.arange(x.shape[-1]) == 0
    return np.where((x > 0.45) & ~keep, np.nan, x)


def nan_reduction(data):
    """Over all elements or the last axis: every reduced slice keeps a number."""
    shape = data.draw(shapes(min_dims=1, min_side=1), label="shape")
    params = {"axis": data.draw(st.sampled_from([None, -1, len(shape) - 1]), label="axis")}
    params["keepdims"] = data.draw(st.booleans(), label="keepdims")
    return (shape,), params


@case("nan_reductions", ["offint"], nan_reduction)
def _nan_reductions(x, axis, keepdims):
    y = _with_nans(x)
    return (np.nansum(y, axis=axis, keepdims=keepdims), np.nanmean(y, axis=axis, keepdims=keepdims),
            np.nanprod(y, axis=axis, keepdims=keepdims))


@case("nanmax_nanmin", ["distinct"], nan_reduction)
def _nan_extrema(x, axis, keepdims):
    y = _with_nans(x)
    return np.nanmax(y, axis=axis, keepdims=keepdims) + np.nanmin(y, axis=axis, keepdims=keepdims)


# -- polynomials and interpolation ------------------------------------------------------
@st.composite
def polyval_args(draw):
    return ((draw(st.integers(0, 4)),), draw(shapes())), {}


case("polyval", ["real", "real"], lambda data: data.draw(polyval_args()))(np.polyval)

XP = np.array([-2.5, -1.5, 0.5, 1.5])  # half-integers: "offint" inputs stay 0.2 away
FP = np.array([1.0, -0.5, 2.0, 0.25])


@case("interp", ["offint"], lambda data: ((data.draw(shapes()),), {}), covers=["interp"],
      oracle=lambda x: np.interp(x, XP, FP))
def _interp(x):
    return np.interp(x, XP, FP)


@case("interp_left_right", ["offint"], lambda data: ((data.draw(shapes()),), {}),
      covers=["interp"], oracle=lambda x: np.interp(x, XP, FP, left=3.0, right=-2.0) * x)
def _interp_bounds(x):
    return np.interp(x, XP, FP, left=3.0, right=-2.0) * x


@st.composite
def interp_table_args(draw):
    bounds = draw(st.sampled_from([{}, {"left": 3.0}, {"right": -2.0}, {"left": 3.0, "right": -2.0}]))
    return (draw(shapes()), (len(XP),)), bounds


@case("interp_table", ["offint", "real"], lambda data: data.draw(interp_table_args()),
      covers=["interp"],
      oracle=lambda x, fp, **bounds: np.interp(x, XP, fp, **bounds) * np.interp(x, XP, fp ** 2))
def _interp_table(x, fp, **bounds):
    return np.interp(x, XP, fp, **bounds) * np.interp(x, XP, fp ** 2)


# -- convolution ---------------------------------------------------------------------------
@st.composite
def convolve_args(draw, max_dims=1):
    nd = draw(st.integers(1, max_dims))
    a = tuple(draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    b = tuple(draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    modes = ["full", "same"]
    if all(x >= y for x, y in zip(a, b)) or all(y >= x for x, y in zip(a, b)):
        modes.append("valid")
    return (a, b), {"mode": draw(st.sampled_from(modes))}


@case("convolve", ["real", "real"], lambda data: data.draw(convolve_args()), covers=["matmul"])
def _convolve(a, v, mode):
    return np.convolve(a, v, mode), np.correlate(a, v, mode)


def _signal(module):
    def f(a, b, mode):
        return module.convolve(a, b, mode), module.correlate(a, b, mode)
    return f


CASES.append(Case("signal_convolve", _signal(fsignal), ("real", "real"),
                  lambda data: data.draw(convolve_args(max_dims=2)),
                  oracle=_signal(scipy.signal), covers=("matmul",)))


# -- the methods of binary ufuncs ------------------------------------------------------
# fastad's own reductions for add/multiply/maximum/minimum, a chain along the
# axis for the others
REDUCING = ["add", "multiply", "maximum", "minimum", "subtract", "logaddexp", "hypot"]


@st.composite
def ufunc_reduce_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    return (shape,), {"ufunc": draw(st.sampled_from(REDUCING)), "axis": axis,
                      "keepdims": draw(st.booleans()),
                      "initial": draw(st.sampled_from([None, 0.5]))}


@case("ufunc_reduce", ["real"], lambda data: data.draw(ufunc_reduce_args()),
      tolerances={"rtol": 1e-5})
def _ufunc_reduce(x, ufunc, axis, keepdims, initial):
    u = getattr(np, ufunc)
    kw = {} if initial is None or ufunc == "subtract" else {"initial": initial}
    if ufunc in ("subtract", "logaddexp", "hypot") and axis is None:
        x, axis = x.ravel(), 0  # NumPy reduces these over one axis only
    return u.reduce(x, axis=axis, keepdims=keepdims, **kw)


@st.composite
def ufunc_accumulate_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    return (shape,), {"ufunc": draw(st.sampled_from(REDUCING)),
                      "axis": draw(st.integers(-len(shape), len(shape) - 1))}


@case("ufunc_accumulate", ["distinct"], lambda data: data.draw(ufunc_accumulate_args()),
      tolerances={"rtol": 1e-5})
def _ufunc_accumulate(x, ufunc, axis):
    return getattr(np, ufunc).accumulate(x, axis=axis)


@st.composite
def ufunc_reduceat_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    indices = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    return (shape,), {"ufunc": draw(st.sampled_from(REDUCING)), "axis": axis,
                      "indices": indices}


@case("ufunc_reduceat", ["distinct"], lambda data: data.draw(ufunc_reduceat_args()),
      tolerances={"rtol": 1e-5})
def _ufunc_reduceat(x, ufunc, axis, indices):
    return getattr(np, ufunc).reduceat(x, indices, axis=axis)


@st.composite
def ufunc_outer_args(draw):
    return (draw(shapes(max_dims=2)), draw(shapes(max_dims=2))), {
        "ufunc": draw(st.sampled_from(["add", "multiply", "subtract", "hypot", "arctan2",
                                       "logaddexp"]))}


@case("ufunc_outer", ["distinct", "distinct"], lambda data: data.draw(ufunc_outer_args()))
def _ufunc_outer(a, b, ufunc):
    return getattr(np, ufunc).outer(a, b)


@st.composite
def ufunc_at_args(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(0, 6))
    return ((n,), (k,)), {"ufunc": draw(st.sampled_from(["add", "subtract", "multiply",
                                                           "maximum"])),
                          "idx": tuple(draw(st.lists(st.integers(-n, n - 1), min_size=k,
                                                      max_size=k)))}


@case("ufunc_at", ["distinct", "real"], lambda data: data.draw(ufunc_at_args()))
def _ufunc_at(a, v, ufunc, idx):
    out = a * 1.0  # a new array to write into: repeated indices apply once each
    getattr(np, ufunc).at(out, list(idx), v)
    return out


@case("vectorize", ["real", "real"], two_shapes(min_side=1),  # NumPy's needs an element
      oracle=lambda a, b: np.vectorize(_elementwise_branch)(a, b))
def _vectorized(a, b):
    return fnp.vectorize(_elementwise_branch)(a, b)


def _elementwise_branch(a, b):
    """Python control flow per element: vmap falls back to one example at a time."""
    return a * b + np.sin(a) if a > 0 else a ** 2 - b


@case("vectorize_signature", ["real", "real"], lambda data: data.draw(vectorize_args()),
      oracle=lambda a, b: np.vectorize(_row_product, signature="(n),(n)->()")(a, b))
def _vectorized_rows(a, b):
    return fnp.vectorize(_row_product, signature="(n),(n)->()")(a, b)


def _row_product(r, s):
    return np.sum(r * s) + np.sum(r ** 2)


@st.composite
def vectorize_args(draw):
    n = draw(st.integers(1, 4))
    batch_a = draw(shapes(max_dims=2, min_side=1))
    return (batch_a + (n,), batch_a[len(batch_a) - draw(st.integers(0, len(batch_a))):] + (n,)), {}


# derivatives as functions: their tapes hold the primitives only rules record
@case("sort_gradient", ["distinct"], lambda data: ((data.draw(shapes(min_dims=1)),), {}),
      covers=["scatter_add_along"], oracle=lambda x: np.take_along_axis(
          np.arange(1.0, 1 + x.shape[-1]) * np.cos(np.sort(x, axis=-1)),
          np.argsort(np.argsort(x, axis=-1), axis=-1), axis=-1).astype(x.dtype))
def _sort_gradient(x):
    return fa.grad(lambda x: np.sum(np.sin(np.sort(x)) * np.arange(1.0, 1 + x.shape[-1])))(x)


@case("interp_gradient", ["offint"], lambda data: ((data.draw(shapes()),), {}),
      covers=["interp_slope"], order=1,
      oracle=lambda x: (_interp_slope_oracle(x) * x + np.interp(x, XP, FP)).astype(x.dtype))
def _interp_gradient(x):
    return fa.grad(lambda x: np.sum(np.interp(x, XP, FP) * x))(x)


@case("interp_table_gradient", ["offint", "real"],
      lambda data: ((data.draw(shapes()), (len(XP),)), {}),
      covers=["interp_scatter"], order=1,
      oracle=lambda x, fp: np.array([np.sum(x * np.interp(x, XP, np.eye(len(XP))[k], left=0.0))
                                     for k in range(len(XP))]).astype(x.dtype))
def _interp_table_gradient(x, fp):
    return fa.grad(lambda fp: np.sum(np.interp(x, XP, fp, left=3.0) * x))(fp)


def _interp_slope_oracle(x):
    seg = np.clip(np.searchsorted(XP, x) - 1, 0, len(XP) - 2)
    slope = (FP[seg + 1] - FP[seg]) / (XP[seg + 1] - XP[seg])
    return np.where((x >= XP[0]) & (x <= XP[-1]), slope, 0.0)


test_values_and_derivatives = case_test(CASES)


# -- what is refused ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize("transform", [fa.grad, lambda f: fa.jit(fa.grad(f))])
def test_float16_and_longdouble_inputs_are_refused(dtype, transform):
    f = transform(lambda x: np.sum(np.sin(x)))
    with pytest.raises(TypeError, match="not supported"):
        f(np.ones(3, dtype))
    with pytest.raises(TypeError, match="not supported"):
        f(dtype(0.5))


def test_casting_to_float16_inside_is_refused():
    with pytest.raises(fa.TracingError, match="float64 and float32"):
        fa.grad(lambda x: np.sum(x.astype(np.float16)))(np.ones(3))


def test_float16_argument_and_cast_are_refused_alike():
    """One error for one meaning: a float16 argument and a cast to float16 inside
    the function raise the same type (a TypeError and a TracingError) with the
    same message."""
    from fastad.core.errors import PrecisionError
    for f, x in [(np.sum, np.ones(3, np.float16)),
                 (lambda x: np.sum(x.astype(np.float16)), np.ones(3))]:
        with pytest.raises(PrecisionError, match="float16 values are not supported .fastad "
                                                 "computes in float64 and float32"):
            fa.grad(f)(x)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 2**16),
       bounds=st.sampled_from([{}, {"left": 3.0}, {"right": -2.0}, {"left": 3.0, "right": -2.0}]))
def test_interp_with_a_traced_table(n, m, seed, bounds):
    """interp differentiated in its breakpoints too (xp traced): NumPy's values
    (inside, on the last knot, outside), first derivatives in xp, fp and x
    against central differences, the Hessian in xp against differences of the
    gradient, compiled equal to eager with one trace for new tables."""
    rng = np.random.default_rng(seed)
    xp = np.cumsum(rng.uniform(0.3, 1.0, n)) - 1.5
    fp = rng.normal(size=n)
    x = rng.uniform(xp[0] - 1.0, xp[-1] + 1.0, m)
    x = np.where(np.min(np.abs(x[:, None] - xp[None, :]), axis=1) < 0.05, xp[0] - 0.5, x)
    weights = rng.normal(size=m)

    def f(xp, fp, x):
        return np.sum(np.interp(x, xp, fp, **bounds) * weights)
    np.testing.assert_allclose(fa.jit(f)(xp, fp, np.append(x, xp[-1])[:m]),
                               f(xp, fp, np.append(x, xp[-1])[:m]), rtol=1e-14)
    g = fa.grad(f, argnums=(0, 1, 2))
    got = g(xp, fp, x)
    h = 1e-7
    for k, arg in enumerate((xp, fp, x)):
        d = rng.normal(size=arg.shape)
        plus, minus = [xp, fp, x], [xp, fp, x]
        plus[k], minus[k] = arg + h * d, arg - h * d
        np.testing.assert_allclose(np.sum(got[k] * d), (f(*plus) - f(*minus)) / (2 * h),
                                   rtol=1e-5, atol=1e-6)
    hess = fa.hessian(f)(xp, fp, x)
    d = rng.normal(size=n)
    gx = fa.grad(f)
    np.testing.assert_allclose(hess @ d, (gx(xp + h * d, fp, x) - gx(xp - h * d, fp, x)) / (2 * h),
                               rtol=1e-4, atol=1e-5)
    compiled = fa.jit(fa.grad(f, argnums=(0, 1, 2)), backend=ONE_COMPILED)
    for table in (xp, xp * 1.1 + 0.05):
        for a, b in zip(compiled(table, fp, x), g(table, fp, x)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert compiled.cache_info()["traces"] == 1


def test_indexing_with_argsort_uses_its_value_and_guards_it():
    def f(x):
        return np.sum(x[np.argsort(x)] * np.arange(3.0))
    x = np.array([0.5, 0.2, 0.1])
    assert np.allclose(fa.grad(f)(x), [2.0, 1.0, 0.0])
    g = fa.jit(fa.grad(f))
    for y in (x, x[::-1].copy(), np.array([0.2, 0.5, 0.1])):  # a new order retraces
        assert np.allclose(g(y), fa.grad(f)(y))


def test_pad_modes_that_compute_are_refused():
    with pytest.raises(fa.TracingError, match="mode"):
        fa.grad(lambda x: np.sum(np.pad(x, 1, mode="mean")))(np.ones(3))


# -- compiled ----------------------------------------------------------------------------
COMPILED = [
    lambda x: np.sum(np.sort(x) * np.arange(x.size)),
    lambda x: np.sum(np.partition(x, 3)[:3] ** 2),
    lambda x: np.sum(np.cumprod(x / 3.0 + 1.0)) + np.sum(np.diff(x, 2) ** 2),
    lambda x: np.sum(np.pad(x, 2, mode="reflect") * np.pad(x, (1, 3), constant_values=2.0)),
    lambda x: np.sum(np.interp(x, XP, FP) * np.polyval(x[:3], x)),
    lambda x: np.sum(np.kron(x[:2], x[2:5])) + np.sum(np.cross(x[:3], x[3:6]) ** 2),
    lambda x: np.nansum(np.where(x > 0.5, np.nan, x)) + np.nanmean(x),
]


@pytest.mark.parametrize("f", COMPILED)
def test_compiled_agrees_with_the_reference(compiled_backend, f):
    x = np.random.default_rng(3).uniform(-1.0, 1.0, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback warning
        g = fa.compile(f, backend=compiled_backend)
        got = g.value_and_grad(x)
        again = g.value_and_grad(x[::-1].copy())  # a new order: sorting is recomputed
        hvp = fa.jit(fa.hvp(f), backend=compiled_backend)(x, np.ones_like(x))
    for point, result in ((x, got), (x[::-1].copy(), again)):
        want = fa.value_and_grad(f)(point)
        np.testing.assert_allclose(result[0], want[0], rtol=1e-13)
        np.testing.assert_allclose(result[1], want[1], rtol=1e-13)
    np.testing.assert_allclose(hvp, fa.hvp(f)(x, np.ones_like(x)), rtol=1e-12, atol=1e-14)
    assert g.cache_info()["traces"] == 1


# -- writes into values NumPy lays out in Fortran order -----------------------------------
def test_assignment_into_a_transposed_value_is_kept(backend):
    def f(x):
        y = np.sin(x.T)
        y[0] = 0.0
        return np.sum(y * np.arange(6.0).reshape(3, 2))

    x = np.arange(6.0).reshape(2, 3)
    out, _ = fa.vjp(lambda x: (lambda y: (y.__setitem__(0, 0.0), y)[1])(np.sin(x.T)), x)
    want = np.sin(x.T)
    want[0] = 0.0
    np.testing.assert_array_equal(out, want)
    fa.check_grads(f, (x,), order=2)
    np.testing.assert_allclose(fa.compile(f, backend=backend)(x), fa.grad(f)(x), rtol=1e-14)


def test_second_derivative_through_a_gather_of_a_matrix_result():
    def f(c):
        return np.linalg.solve(c, np.ones((3, 2)))[1, 0] ** 2

    c = np.eye(3) + 0.1 * np.arange(9.0).reshape(3, 3) / 9.0
    fa.check_grads(f, (c,), order=2, modes=("rev",))
