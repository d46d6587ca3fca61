"""Every primitive and every differentiable function of fastad.numpy: values
against NumPy, forward- and reverse-mode derivatives (first order, and second
where the function is smooth) against central finite differences, over random
shapes (broadcasting, size-1 and size-0 axes) and random inputs in each
function's domain, in float64 and float32.

The functions are written with plain ``import numpy as np``: NumPy's
dispatch routes them to fastad while tracing, and the same code run on plain
arrays is the value oracle.
"""
from __future__ import annotations

import importlib
import pathlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad
import fastad.numpy as fnp
from helpers import DTYPES, FAST, Case, axes_for, broadcast_pair, broadcast_triple, case_id
from helpers import one_shape, reduced_axes, registrar, shapes, two_shapes

CASES: list[Case] = []
case = registrar(CASES)


# -- elementwise unary ---------------------------------------------------------------
# primitive name: (NumPy function, domain)
UNARY = {
    "neg": (np.negative, "real"), "abs": (np.abs, "nonzero"), "exp": (np.exp, "real"),
    "exp2": (np.exp2, "real"), "log": (np.log, "pos"), "log2": (np.log2, "pos"),
    "log10": (np.log10, "pos"), "log1p": (np.log1p, "pos"), "expm1": (np.expm1, "real"),
    "sqrt": (np.sqrt, "pos"), "cbrt": (np.cbrt, "nonzero"), "square": (np.square, "real"),
    "reciprocal": (np.reciprocal, "nonzero"), "sin": (np.sin, "real"), "cos": (np.cos, "real"),
    "tan": (np.tan, "unit"), "arcsin": (np.arcsin, "unit"), "arccos": (np.arccos, "unit"),
    "arctan": (np.arctan, "real"), "sinh": (np.sinh, "real"), "cosh": (np.cosh, "real"),
    "tanh": (np.tanh, "real"), "arcsinh": (np.arcsinh, "real"), "arccosh": (np.arccosh, "gt1"),
    "arctanh": (np.arctanh, "unit"), "deg2rad": (np.deg2rad, "real"),
}
for _name, (_ufunc, _domain) in UNARY.items():
    case(_name, [_domain], one_shape(), covers=[_name])(_ufunc)

# Piecewise constant: multiplied by x so the derivative (the function itself) is nonzero.
ZERO_DERIVATIVE = {"sign": (np.sign, "nonzero"), "floor": (np.floor, "offint"),
                   "ceil": (np.ceil, "offint"), "round": (np.rint, "offint")}
for _name, (_ufunc, _domain) in ZERO_DERIVATIVE.items():
    case(_name, [_domain], one_shape(), covers=[_name])(
        lambda x, _u=_ufunc: x * _u(x))


@case("round_decimals", ["offint"], one_shape(), covers=["round"])
def _round_decimals(x):
    return x * np.round(x / 10.0, 1) + np.around(x)


# -- elementwise binary, broadcasting --------------------------------------------------
BINARY = {
    "add": (np.add, "real", "real"), "sub": (np.subtract, "real", "real"),
    "mul": (np.multiply, "real", "real"), "div": (np.divide, "real", "nonzero"),
    "pow": (np.power, "pos", "real"), "maximum": (np.maximum, "offint", "mid"),
    "minimum": (np.minimum, "offint", "mid"), "arctan2": (np.arctan2, "nonzero", "nonzero"),
    "hypot": (np.hypot, "nonzero", "nonzero"), "logaddexp": (np.logaddexp, "real", "real"),
    "copysign": (np.copysign, "nonzero", "nonzero"),
}
for _name, (_ufunc, _dx, _dy) in BINARY.items():
    case(_name, [_dx, _dy], two_shapes(), covers=[_name])(_ufunc)

# x / y stays at least 0.03 from an integer: fmod is smooth within a step
case("fmod", ["offint", "real"], two_shapes(), covers=["fmod"])(
    lambda x, y: np.fmod(x, 1.0 + 0.01 * y))
case("remainder", ["offint", "real"], two_shapes(), covers=["fmod"])(
    lambda x, y: np.remainder(x, -1.0 + 0.01 * y))
case("fmax", ["offint", "mid"], two_shapes(), covers=["maximum"])(np.fmax)
case("fmin", ["offint", "mid"], two_shapes(), covers=["minimum"])(np.fmin)


@case("operators", ["real", "nonzero"], two_shapes(), covers=["add", "sub", "mul", "div", "neg"])
def _operators(x, y):
    return (x + y) * x - y / (-y + 3.0 * y) + 2.0 - x / y + 1.0 / y


# x > 1: x ** -1.5's curvature near 0.5 outruns float32's finite-difference step
@case("power_forms", ["gt1", "real"], two_shapes(), covers=["pow", "square"])
def _power_forms(x, y):
    return x ** y + x ** 2 + x ** 3 + x ** 0.5 + 2.0 ** y + x ** -1.5


# -- comparisons, logical ops, where, clip ------------------------------------------------
@case("comparisons", ["offint", "mid"], two_shapes(),
      covers=["lt", "le", "gt", "ge", "eq", "ne"])
def _comparisons(x, y):
    same_floor = np.floor(x) == np.floor(y)
    return (np.where(x < y, x * y, x - y) + np.where(x <= y, x, y)
            + np.where(x > y, np.sin(x), y) + np.where(x >= y, y, x * x)
            + np.where(same_floor, x, 2.0 * y) + np.where(np.floor(x) != np.floor(y), y, x))


@case("logical", ["offint", "mid"], two_shapes(),
      covers=["logical_and", "logical_or", "logical_not"])
def _logical(x, y):
    return (np.where(np.logical_and(x > 0, y < 0.0), x * y, y)
            + np.where(np.logical_or(x > 1, y < -1), x, y * y)
            + np.where(np.logical_not(x > y), x, -y)
            + np.where((x > 0) & (y > 0) | ~(x > 2), x, y))


@case("where", ["offint", "real", "real"], lambda data: (data.draw(broadcast_triple()), {}),
      covers=["where"])
def _where(c, x, y):
    return np.where(c > 0, x, y)


@case("where_scalar_branches", ["offint"], one_shape(), covers=["where"])
def _where_scalar(x):
    return np.where(x > 0, x, 0.0) + np.where(x < 0.5, 1.0, np.exp(x))


@case("clip", ["offint"], one_shape(), covers=["maximum", "minimum"])
def _clip(x):
    return np.clip(x, -0.5, 0.5) + x.clip(0.0, None) + np.clip(x, None, 1.0)


@case("clip_array_bounds", ["offint", "mid"], two_shapes(), covers=["maximum", "minimum"])
def _clip_arrays(x, lo):
    return np.clip(x, lo, lo + 1.0)


# -- reductions ------------------------------------------------------------------------
@st.composite
def reduction(draw, empty_reduced=True, min_reduced=1, keepdims=True):
    """A shape, an axis and keepdims; reduced axes are at least ``min_reduced``
    long unless empty reductions are allowed (NumPy defines them)."""
    shape = draw(shapes(min_dims=1 if min_reduced > 1 else 0), label="shape")
    axis = draw(axes_for(shape), label="axis")
    if min_reduced > 1 and axis == ():
        axis = None
    if not empty_reduced:
        axes = reduced_axes(shape, axis)
        shape = tuple(max(d, min_reduced) if i in axes else d for i, d in enumerate(shape))
    params = {"axis": axis}
    if keepdims:
        params["keepdims"] = draw(st.booleans(), label="keepdims")
    return (shape,), params


def reducing(**kw):
    return lambda data: data.draw(reduction(**kw))


case("sum", ["real"], reducing(), covers=["sum"])(np.sum)
case("prod", ["pos"], reducing(), covers=["prod"])(np.prod)
case("max", ["distinct"], reducing(empty_reduced=False), covers=["max"])(np.max)
case("min", ["distinct"], reducing(empty_reduced=False), covers=["min"])(np.min)
case("amax", ["distinct"], reducing(empty_reduced=False), covers=["max"])(np.amax)
case("mean", ["real"], reducing(empty_reduced=False), covers=["sum"])(np.mean)
case("var", ["real"], reducing(empty_reduced=False), covers=["sum"])(np.var)
case("std", ["distinct"], reducing(empty_reduced=False, min_reduced=2), covers=["sqrt"])(np.std)


@case("var_ddof", ["real"], reducing(empty_reduced=False, min_reduced=2))
def _var_ddof(x, axis, keepdims):
    return np.var(x, axis=axis, ddof=1, keepdims=keepdims)


@case("methods", ["pos"], reducing(empty_reduced=False, min_reduced=2))
def _reduction_methods(x, axis, keepdims):
    return (x.sum(axis=axis, keepdims=keepdims) + x.mean(axis=axis, keepdims=keepdims)
            + x.prod(axis=axis, keepdims=keepdims) + x.var(axis=axis, keepdims=keepdims))


# distinct values: std is sqrt(var), whose curvature near var = 0 outruns finite differences
@case("std_method", ["distinct"], reducing(empty_reduced=False, min_reduced=2))
def _std_method(x, axis, keepdims):
    return x.std(axis=axis, keepdims=keepdims) + x.std(axis=axis, ddof=1, keepdims=keepdims)


@case("max_min_methods", ["distinct"], reducing(empty_reduced=False))
def _max_min_methods(x, axis, keepdims):
    return x.max(axis=axis, keepdims=keepdims) * x.min(axis=axis, keepdims=keepdims)


@st.composite
def masked_reduction(draw):
    (shape,), params = draw(reduction())
    params["where"] = draw(hnp.arrays(np.bool_, shape))
    params["initial"] = draw(st.sampled_from([None, 0.5, -2.0]))
    return (shape,), params


@case("sum_where_initial", ["pos"], lambda data: data.draw(masked_reduction()))
def _sum_where_initial(x, axis, keepdims, where, initial):
    kw = {} if initial is None else {"initial": initial}
    return (np.sum(x, axis=axis, keepdims=keepdims, where=where, **kw)
            + np.prod(x, axis=axis, keepdims=keepdims, where=where, **kw)
            + x.sum(axis=axis, keepdims=keepdims, where=where))


# distinct values: the std of nearly equal values has a kink (|x1 - x2| / 2 for two)
@case("reduction_dtype", ["distinct"], reducing(empty_reduced=False, min_reduced=2), order=1,
      tolerances={"eps": 1e-2, "rtol": 3e-2, "atol": 1e-3})
def _reduction_dtype(x, axis, keepdims):
    other = np.float32 if x.dtype == np.float64 else np.float64
    return (np.sum(x, axis=axis, keepdims=keepdims, dtype=other),
            np.prod(1.0 + 0.1 * x, axis=axis, keepdims=keepdims, dtype=other),  # stays O(1)
            np.mean(x, axis=axis, keepdims=keepdims, dtype=other),
            np.var(x, axis=axis, keepdims=keepdims, dtype=other),
            np.std(x, axis=axis, keepdims=keepdims, dtype=other),
            np.cumsum(x, dtype=other))


def _logsumexp_oracle(x, axis, keepdims):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


case("logsumexp", ["distinct"], reducing(empty_reduced=False),
     oracle=_logsumexp_oracle, covers=["stop_gradient"])(fnp.logsumexp)


@st.composite
def cumsum_args(draw):
    shape = draw(shapes(), label="shape")
    axis = draw(axes_for(shape, allow_tuple=False), label="axis")
    return (shape,), {"axis": axis}


case("cumsum", ["real"], lambda data: data.draw(cumsum_args()), covers=["cumsum"])(np.cumsum)


@case("cumsum_method", ["real"], lambda data: data.draw(cumsum_args()), covers=["cumsum"])
def _cumsum_method(x, axis):
    return np.sin(x.cumsum(axis=axis))


# -- linear algebra ------------------------------------------------------------------------
dims = st.integers(0, 3)
pdims = st.integers(1, 3)  # where NumPy rejects a size-0 dimension


@st.composite
def dot_shapes(draw):
    nd_a, nd_b = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    n = draw(dims)
    a = tuple(draw(st.lists(dims, min_size=max(nd_a - 1, 0), max_size=max(nd_a - 1, 0))))
    b = tuple(draw(st.lists(dims, min_size=max(nd_b - 1, 0), max_size=max(nd_b - 1, 0))))
    shape_a = () if nd_a == 0 else a + (n,)
    if nd_b == 0:
        shape_b = ()
    elif nd_b == 1:
        shape_b = (n,) if nd_a else b + (n,)
    else:
        shape_b = b[:-1] + (n,) + b[-1:] if nd_a else b + (n,)
    return (shape_a, shape_b), {}


case("dot", ["real", "real"], lambda data: data.draw(dot_shapes()))(np.dot)


@case("dot_method", ["real", "real"], lambda data: data.draw(dot_shapes()))
def _dot_method(a, b):
    return a.dot(b)


@st.composite
def matmul_shapes(draw):
    batch_a, batch_b = draw(broadcast_pair(max_dims=2), label="batch")
    m, n, k = draw(dims), draw(dims), draw(dims)
    shape_a = (n,) if draw(st.booleans()) else batch_a + (m, n)
    shape_b = (n,) if draw(st.booleans()) else batch_b + (n, k)
    return (shape_a, shape_b), {}


case("matmul", ["real", "real"], lambda data: data.draw(matmul_shapes()),
     covers=["matmul"])(np.matmul)


@st.composite
def gram_shapes(draw):
    batch = draw(st.sampled_from([(), (2,), (2, 1)]), label="batch")
    return (batch + (draw(dims), draw(dims)),), {"trans": draw(st.booleans())}


@case("gram", ["real"], lambda data: data.draw(gram_shapes()), covers=["gram"])
def _gram(a, trans):
    """x.T @ x and x @ x.T of one traced x: the `gram` primitive."""
    return a @ np.swapaxes(a, -1, -2) if trans else np.swapaxes(a, -1, -2) @ a


@case("matmul_operator", ["real", "real"], lambda data: data.draw(matmul_shapes()))
def _matmul_operator(a, b):
    return a @ b


case("outer", ["real", "real"], two_shapes())(np.outer)


@st.composite
def inner_shapes(draw):
    n = draw(dims)
    a = draw(shapes(max_dims=2)) + (n,)
    b = draw(shapes(max_dims=2)) + (n,)
    return (a, b), {}


case("inner", ["real", "real"], lambda data: data.draw(inner_shapes()))(np.inner)


@st.composite
def tensordot_args(draw):
    contracted = tuple(draw(st.lists(dims, max_size=2)))
    free_a = tuple(draw(st.lists(dims, max_size=2)))
    free_b = tuple(draw(st.lists(dims, max_size=2)))
    if draw(st.booleans()):  # axes as an int: the last of a against the first of b
        return (free_a + contracted, contracted + free_b), {"axes": len(contracted)}
    # axes as two lists: contracted axes scattered through both operands
    perm_a = draw(st.permutations(range(len(free_a) + len(contracted))))
    perm_b = draw(st.permutations(range(len(free_b) + len(contracted))))
    full_a, full_b = free_a + contracted, contracted + free_b
    shape_a = tuple(full_a[i] for i in perm_a)
    shape_b = tuple(full_b[i] for i in perm_b)
    axes_a = [list(perm_a).index(len(free_a) + j) for j in range(len(contracted))]
    axes_b = [list(perm_b).index(j) for j in range(len(contracted))]
    return (shape_a, shape_b), {"axes": (axes_a, axes_b)}


case("tensordot", ["real", "real"], lambda data: data.draw(tensordot_args()))(np.tensordot)

EINSUM = ["ij,jk->ik", "ij,ij->", "bij,bjk->bik", "i,j->ij", "ij,j", "ij,jk", "ii->i", "ii",
          "ij->ji", "ij->", "ijk->kj", "bi,bi->b", "ijk,kj->i", "iij,j->i", "i,i"]


@st.composite
def einsum_args(draw):
    spec = draw(st.sampled_from(EINSUM), label="subscripts")
    letters = {c: draw(dims) for c in sorted(set(spec) - set(",->"))}
    lhs = spec.split("->")[0]
    return tuple(tuple(letters[c] for c in op) for op in lhs.split(",")), {"spec": spec}


def _einsum(*operands, spec):
    return np.einsum(spec, *operands)


CASES.append(Case("einsum_1", _einsum, ("real",), lambda data: data.draw(
    einsum_args().filter(lambda a: len(a[0]) == 1))))
CASES.append(Case("einsum_2", _einsum, ("real", "real"), lambda data: data.draw(
    einsum_args().filter(lambda a: len(a[0]) == 2))))


@st.composite
def trace_args(draw):
    shape = draw(shapes(min_dims=2, max_dims=3))
    nd = len(shape)
    axis1, axis2 = draw(st.lists(st.integers(0, nd - 1), min_size=2, max_size=2, unique=True))
    offset = draw(st.integers(-2, 2))
    return (shape,), {"offset": offset, "axis1": axis1, "axis2": axis2}


case("trace", ["real"], lambda data: data.draw(trace_args()))(np.trace)
case("diagonal", ["real"], lambda data: data.draw(trace_args()))(np.diagonal)


@case("trace_method", ["real"], lambda data: data.draw(trace_args()))
def _trace_method(x, offset, axis1, axis2):
    return x.trace(offset, axis1, axis2) + x.diagonal(offset, axis1, axis2).sum()


@st.composite
def diag_args(draw):
    shape = draw(shapes(min_dims=1, max_dims=2))
    return (shape,), {"k": draw(st.integers(-2, 2))}


case("diag", ["real"], lambda data: data.draw(diag_args()), covers=[])(np.diag)


VECTOR_ORDS = [None, 0, 1, 2, np.inf, -np.inf, 3, 1.5, -1]


@st.composite
def norm_args(draw):
    if draw(st.booleans()):
        shape = draw(shapes(min_dims=1, max_dims=1, min_side=1))
        return (shape,), {"ord": draw(st.sampled_from(VECTOR_ORDS)), "axis": None}
    shape = draw(shapes(min_dims=2, max_dims=3, min_side=1))
    if draw(st.booleans()) and len(shape) == 2:
        return (shape,), {"ord": draw(st.sampled_from([None, "fro"])), "axis": None}
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return (shape,), {"ord": draw(st.sampled_from(VECTOR_ORDS)), "axis": axis}


case("norm", ["distinct"], lambda data: data.draw(norm_args()))(np.linalg.norm)


@st.composite
def square_batch(draw, min_n=1):
    batch = draw(shapes(max_dims=2, max_side=3))
    n = draw(st.integers(min_n, 4))
    return batch, n


@st.composite
def solve_args(draw):
    batch, n = draw(square_batch(min_n=0))
    if draw(st.booleans()):
        b = (n,)  # a vector right-hand side
    else:
        k = draw(dims)
        b = draw(st.sampled_from([batch, batch[1:], ()])) + (n, k)
    return ((batch + (n, n)), b), {}


# float32: a smaller finite-difference step, since the curvature of inverses
# makes float32's default step (1e-2) truncate visibly
LINALG_F32 = {"eps": 3e-3}

case("solve", ["matrix", "real"], lambda data: data.draw(solve_args()),
     covers=["solve"], f32_tolerances=LINALG_F32)(np.linalg.solve)


def _square(min_n=1):
    def draw(data):
        batch, n = data.draw(square_batch(min_n=min_n))
        return ((batch + (n, n)),), {}
    return draw


case("inv", ["matrix"], _square(0), covers=["solve"], f32_tolerances=LINALG_F32)(np.linalg.inv)
# (up to 3 rows det is its cofactor expansion: slogdet covers the primitives)
case("det", ["matrix"], _square(), f32_tolerances=LINALG_F32)(np.linalg.det)
case("slogdet", ["matrix"], _square(), covers=["logabsdet", "detsign"],
     f32_tolerances=LINALG_F32)(np.linalg.slogdet)


@case("logdet_of_product", ["matrix", "matrix"], lambda data: (
    (lambda n: ((n, n), (n, n)))(data.draw(st.integers(1, 4))), {}), f32_tolerances=LINALG_F32)
def _logdet_of_product(a, b):
    sign, logdet = np.linalg.slogdet(a @ b)
    return sign * logdet + np.linalg.det(np.linalg.inv(a) + b.T)


# -- shapes ------------------------------------------------------------------------
@st.composite
def reshape_args(draw):
    shape = draw(shapes(min_dims=0, max_dims=3))
    size = int(np.prod(shape))
    # a random factorization of the size, with one -1 sometimes
    new, rest = [], size
    for _ in range(draw(st.integers(0, 3))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] or [0]
        d = draw(st.sampled_from(divisors))
        new.append(d)
        rest = rest // d if d else 0
    new.append(rest)
    new = draw(st.permutations(new))
    if size and draw(st.booleans()):
        new[draw(st.integers(0, len(new) - 1))] = -1
    return (shape,), {"newshape": tuple(new), "order": draw(st.sampled_from("CFA"))}


@case("reshape", ["real"], lambda data: data.draw(reshape_args()))
def _reshape(x, newshape, order):
    flat = np.ravel(x, {"A": "K"}.get(order, order))  # ravel also takes 'K'
    return np.reshape(x, newshape, order=order) + flat.reshape(newshape)


@case("reshape_method", ["real"], lambda data: data.draw(reshape_args()))
def _reshape_method(x, newshape, order):
    if not newshape:
        return x.reshape(newshape, order=order)
    return x.reshape(newshape, order=order) + x.reshape(*newshape, order=order)


@case("reshape_covered", ["real"], lambda data: (((2, 3),), {}), covers=["reshape"])
def _reshape_fixed(x):
    return np.reshape(x, (3, 2)) * np.ravel(x).reshape(3, 2)


@case("ravel", ["real"], one_shape())
def _ravel(x):
    return np.ravel(x) * x.ravel() + x.flatten()


@st.composite
def transpose_args(draw):
    shape = draw(shapes())
    if draw(st.booleans()):
        return (shape,), {"axes": None}
    perm = draw(st.permutations(range(len(shape))))
    return (shape,), {"axes": tuple(p - len(shape) * draw(st.booleans()) for p in perm)}


case("transpose", ["real"], lambda data: data.draw(transpose_args()))(np.transpose)


@case("transpose_covered", ["real"], lambda data: (((2, 3, 4),), {}), covers=["transpose"])
def _transpose_fixed(x):
    return x.T + np.transpose(x, (2, 1, 0)) + x.transpose(2, 1, 0) + x.transpose((2, 1, 0))


@case("T_method", ["real"], one_shape())
def _T_method(x):
    return x.T * 2.0 + np.sin(x).T


@st.composite
def two_axes(draw, extra=0):
    shape = draw(shapes(min_dims=1))
    nd = len(shape) + extra
    a = draw(st.integers(-nd, nd - 1))
    b = draw(st.integers(-nd, nd - 1))
    return shape, a, b


case("swapaxes", ["real"], lambda data: (lambda s: ((s[0],), {"axis1": s[1], "axis2": s[2]}))(
    data.draw(two_axes())))(np.swapaxes)


@case("swapaxes_method", ["real"], lambda data: (lambda s: ((s[0],), {"a": s[1], "b": s[2]}))(
    data.draw(two_axes())))
def _swapaxes_method(x, a, b):
    return x.swapaxes(a, b)


@st.composite
def moveaxis_args(draw):
    shape = draw(shapes(min_dims=1))
    nd = len(shape)
    k = draw(st.integers(1, nd))
    src = draw(st.lists(st.integers(0, nd - 1), min_size=k, max_size=k, unique=True))
    dst = draw(st.lists(st.integers(0, nd - 1), min_size=k, max_size=k, unique=True))
    if k == 1 and draw(st.booleans()):
        return (shape,), {"source": src[0] - nd, "destination": dst[0]}
    return (shape,), {"source": src, "destination": dst}


case("moveaxis", ["real"], lambda data: data.draw(moveaxis_args()))(np.moveaxis)


@st.composite
def expand_dims_args(draw):
    shape = draw(shapes())
    k = draw(st.integers(1, 2))
    nd = len(shape) + k
    axes = draw(st.lists(st.integers(0, nd - 1), min_size=k, max_size=k, unique=True))
    axes = [a - nd * draw(st.booleans()) for a in axes]
    return (shape,), {"axis": axes[0] if k == 1 else tuple(axes)}


case("expand_dims", ["real"], lambda data: data.draw(expand_dims_args()))(np.expand_dims)


@st.composite
def squeeze_args(draw):
    shape = list(draw(shapes(min_dims=0, max_dims=3)))
    for _ in range(draw(st.integers(0, 2))):
        shape.insert(draw(st.integers(0, len(shape))), 1)
    ones = [i for i, d in enumerate(shape) if d == 1]
    if ones and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        return (tuple(shape),), {"axis": chosen[0] if len(chosen) == 1 else tuple(chosen)}
    return (tuple(shape),), {"axis": None}


case("squeeze", ["real"], lambda data: data.draw(squeeze_args()))(np.squeeze)


@st.composite
def broadcast_to_args(draw):
    src, target = draw(broadcast_pair())
    full = np.broadcast_shapes(src, target)
    return (src,), {"shape": full}


case("broadcast_to", ["real"], lambda data: data.draw(broadcast_to_args()),
     covers=[])(np.broadcast_to)


@case("broadcast_to_covered", ["real"], lambda data: (((3, 1),), {}), covers=["broadcast_to"])
def _broadcast_to_fixed(x):
    return np.broadcast_to(x, (2, 3, 4)) * 2.0


@case("broadcast_arrays", ["real", "real"], two_shapes())
def _broadcast_arrays(x, y):
    a, b = np.broadcast_arrays(x, y)
    return a * 2.0 - b


@st.composite
def concat_args(draw, stacking=False):
    base = draw(shapes(min_dims=0 if stacking else 1))
    count = draw(st.integers(1, 3))
    nd = len(base) + (1 if stacking else 0)
    axis = draw(st.integers(-nd, nd - 1))
    if stacking:
        return (base,) * count, {"axis": axis}
    sizes = [draw(dims) for _ in range(count)]
    out = []
    for n in sizes:
        s = list(base)
        s[axis] = n
        out.append(tuple(s))
    return tuple(out), {"axis": axis}


def _concatenate(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _stack(*xs, axis):
    return np.stack(xs, axis=axis)


for _count in (1, 2, 3):
    def _fixed_count(data, _count=_count, stacking=False):
        shp, params = data.draw(concat_args(stacking).filter(lambda a: len(a[0]) == _count))
        return shp, params
    CASES.append(Case(f"concatenate_{_count}", _concatenate, ("real",) * _count, _fixed_count,
                      covers=("scatter_set",)))
    CASES.append(Case(f"stack_{_count}", _stack, ("real",) * _count,
                      lambda data, _c=_count: _fixed_count(data, _c, True)))


@st.composite
def hvstack_args(draw):
    count = draw(st.integers(1, 3))
    nd = draw(st.integers(0, 2))
    rows = draw(st.integers(0, 3))
    if nd == 0:
        return ((),) * count
    if nd == 1:
        return tuple((draw(dims),) for _ in range(count))
    return tuple((rows, draw(dims)) for _ in range(count))


@st.composite
def vstack_args(draw):
    count = draw(st.integers(1, 3))
    nd = draw(st.integers(0, 2))
    cols = draw(dims)
    if nd == 0:
        return ((),) * count
    if nd == 1:
        return ((cols,),) * count
    return tuple((draw(dims), cols) for _ in range(count))


for _count in (1, 2, 3):
    CASES.append(Case(f"hstack_{_count}", lambda *xs: np.hstack(xs), ("real",) * _count,
                      lambda data, _c=_count: (data.draw(hvstack_args().filter(
                          lambda s: len(s) == _c)), {})))
    CASES.append(Case(f"vstack_{_count}", lambda *xs: np.vstack(xs), ("real",) * _count,
                      lambda data, _c=_count: (data.draw(vstack_args().filter(
                          lambda s: len(s) == _c)), {})))


@st.composite
def flip_args(draw):
    shape = draw(shapes(min_dims=1))
    return (shape,), {"axis": draw(axes_for(shape))}


case("flip", ["real"], lambda data: data.draw(flip_args()), covers=["take"])(np.flip)


@st.composite
def roll_args(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(axes_for(shape, allow_tuple=False))
    return (shape,), {"shift": draw(st.integers(-5, 5)), "axis": axis}


case("roll", ["real"], lambda data: data.draw(roll_args()))(np.roll)


@st.composite
def tile_args(draw):
    shape = draw(shapes(max_dims=2))
    reps = draw(st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=1, max_size=3)
                          .map(tuple)))
    return (shape,), {"reps": reps}


case("tile", ["real"], lambda data: data.draw(tile_args()))(np.tile)


@st.composite
def repeat_args(draw):
    shape = draw(shapes(max_dims=2))
    if not shape or draw(st.booleans()):
        return (shape,), {"repeats": draw(st.integers(0, 3)), "axis": None}
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    counts = draw(st.lists(st.integers(0, 3), min_size=shape[axis], max_size=shape[axis]))
    return (shape,), {"repeats": np.array(counts, dtype=np.int64), "axis": axis}


case("repeat", ["real"], lambda data: data.draw(repeat_args()))(np.repeat)


@case("atleast", ["real"], one_shape())
def _atleast(x):
    return np.atleast_1d(x) * 2.0, np.atleast_2d(x) + 1.0


@st.composite
def triangle_args(draw):
    return (draw(shapes(min_dims=2, max_dims=3)),), {"k": draw(st.integers(-2, 2))}


@case("triu_tril", ["real"], lambda data: data.draw(triangle_args()))
def _triu_tril(x, k):
    return np.triu(x, k) * 2.0 + np.tril(x, k)


# -- indexing and index update -----------------------------------------------------------
@st.composite
def basic_index_args(draw):
    shape = draw(shapes(min_dims=0))  # 0-d values are indexed too: x[None], x[()], x[...]
    key = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    return (shape,), {"key": key}


def _getitem(x, key):
    return x[key]


CASES.append(Case("getitem_basic", _getitem, ("real",), lambda data: data.draw(basic_index_args())))


@case("getitem_covered", ["real"], lambda data: (((3, 4),), {}), covers=["take"])
def _getitem_fixed(x):
    return x[1] * x[:, 2].sum(), x[..., None, 1:3], x[-1, ::-2], x[[0, 2, 2]], x[1, 2]


@st.composite
def int_array_index_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    key = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(
        min_dims=0, max_dims=2, min_side=0, max_side=4)))
    return (shape,), {"key": key}


CASES.append(Case("getitem_int_arrays", _getitem, ("real",),
                  lambda data: data.draw(int_array_index_args())))


@st.composite
def row_index_args(draw):
    """A table, row indices into it (negative ones and repeats included) and
    rows to scatter at them: gathers and scatters by traced rows."""
    shape = draw(shapes(min_dims=1, min_side=1))
    idx = draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0,
                                                      max_side=4),
                          elements=st.integers(-shape[0], shape[0] - 1)))
    return (shape, idx.shape + shape[1:]), {"idx": idx}


@case("rows", ["real", "real"], lambda data: data.draw(row_index_args()),
      covers=["gather_rows", "scatter_add_rows"])
def _rows(x, v, idx):
    return fnp.gather_rows(x, idx) * 2.0, fnp.scatter_add_rows(x, idx, v)


@st.composite
def mask_index_args(draw):
    shape = draw(shapes(min_dims=1))
    k = draw(st.integers(1, len(shape)))
    mask = draw(hnp.arrays(np.bool_, shape[:k]))
    return (shape,), {"key": mask}


CASES.append(Case("getitem_mask", _getitem, ("real",), lambda data: data.draw(mask_index_args())))


@st.composite
def mixed_index_args(draw):
    shape = draw(shapes(min_dims=2, max_dims=3, min_side=1))
    rows = draw(hnp.arrays(np.int64, draw(st.integers(0, 4)),
                           elements=st.integers(-shape[0], shape[0] - 1)))
    return (shape,), {"key": (rows, slice(None, None, draw(st.sampled_from([1, -1, 2]))))}


CASES.append(Case("getitem_mixed", _getitem, ("real",),
                  lambda data: data.draw(mixed_index_args())))


def _setitem(x, v, key):
    y = np.copy(x * 1.0)  # NumPy's 0-d product is a scalar, which takes no assignment
    y[key] = v * 2.0
    return y * y


@st.composite
def setitem_args(draw):
    (shape,), params = draw(st.one_of(basic_index_args(), mask_index_args(),
                                      unique_int_index_args(), int_array_index_args()))
    target = np.empty(shape)[params["key"]].shape
    value_shape = draw(hnp.broadcastable_shapes(target, min_side=0, max_dims=len(target)).filter(
        lambda s: np.broadcast_shapes(s, target) == target))
    return (shape, value_shape), params


@st.composite
def unique_int_index_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    n = draw(st.integers(0, shape[0]))
    rows = draw(st.permutations(range(shape[0])))[:n]
    return (shape,), {"key": np.array(rows, dtype=np.int64)}


CASES.append(Case("setitem", _setitem, ("real", "real"), lambda data: data.draw(setitem_args()),
                  covers=()))


@case("setitem_covered", ["real", "real"], lambda data: (((3, 4), (4,)), {}),
      covers=["scatter_set"])
def _setitem_fixed(x, v):
    y = x * 1.0
    y[1] = v
    y[:, 0] += v[:3]
    y[np.arange(12).reshape(3, 4) % 5 == 1] = 0.5
    y[..., 2:] = y[..., :2] * v[1:3]
    return y


def _scatter_add(x, v, idx):
    return fnp.scatter_add(x, idx, v)


def _scatter_add_oracle(x, v, idx):
    out = x.copy()
    np.add.at(out.reshape(-1), idx, v)
    return out


@st.composite
def scatter_add_args(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    size = int(np.prod(shape))
    idx = draw(hnp.arrays(np.int64, draw(shapes(max_dims=2)), elements=st.integers(0, size - 1)))
    return (shape, idx.shape), {"idx": idx}


case("scatter_add", ["real", "real"], lambda data: data.draw(scatter_add_args()),
     oracle=_scatter_add_oracle, covers=["scatter_add"])(_scatter_add)


@case("iteration", ["real"], lambda data: ((data.draw(shapes(min_dims=1)),), {}))
def _iteration(x):
    total = x[0] * 0.0 if len(x) else np.sum(x)
    for row in x:
        total = total + np.sin(row)
    return total


# -- dtype changes and control flow -------------------------------------------------------
@case("astype", ["real"], one_shape(), covers=["astype"], order=1,
      tolerances={"eps": 1e-2, "rtol": 3e-2, "atol": 1e-3})
def _astype(x):
    other = np.float32 if x.dtype == np.float64 else np.float64
    return np.sin(x.astype(other)) * 2.0


@case("guarded", ["real"], one_shape(), covers=["guard"])
def _guarded(x):
    if np.sum(x) > 1e6:  # never true here; a guard is recorded
        return -x
    return np.sin(x)


# -- complex intermediates of real functions (complex inputs: test_complex.py) ----------
@case("complex_parts", ["nonzero", "real"], two_shapes(), covers=["real", "imag", "conj", "abs"])
def _complex_parts(x, y):
    z = x + 1j * y
    return np.real(z * z) + np.imag(np.conj(z) * np.exp(z)) + np.abs(z)


@case("fft", ["real"], one_shape(min_dims=1, min_side=1), covers=["fft"])
def _fft(x):
    return np.real(np.fft.fft(x)) + np.imag(np.fft.ifft(x * 1j, norm="ortho"))


def _scan_step(c, xi):
    return np.sin(c) * 0.5 + xi * c, c * xi


def _python_scan(x):
    c, ys = x, []
    for xi in (x, 2.0 * x, -x):
        c, y = _scan_step(c, xi)
        ys.append(y)
    return c + sum(ys)


@case("scan", ["real"], one_shape(), covers=["loop"], oracle=_python_scan)
def _scan(x):
    c, ys = fastad.scan(_scan_step, x, np.stack([x, 2.0 * x, -x]))
    return c + np.sum(ys, axis=0)


# -- the tests -------------------------------------------------------------------------
BUILTIN_PRIMITIVES = sorted(name for name in fastad.primitives.registry if "." not in name)


def _all_cases():
    """The cases of this module and of every other test module that has CASES
    (special functions, linear algebra, ...)."""
    cases = list(CASES)
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        if path.stem != __name__.rsplit(".", 1)[-1]:
            found = getattr(importlib.import_module(path.stem), "CASES", [])
            cases += [c for c in found if isinstance(c, Case)]
    return cases


def _elsewhere():
    """Primitives whose operands a Case cannot draw (a random key), with the
    tests of their module that check them: ``ELSEWHERE`` of a test module."""
    named = set()
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(path.stem) if path.stem != __name__.rsplit(".", 1)[-1] \
            else None
        for prim, test in getattr(module, "ELSEWHERE", {}).items():
            assert callable(getattr(module, test, None)), (path.stem, test)
            named.add(prim)
    return named


def test_every_primitive_has_a_case():
    covered = set().union(*(c.covers for c in _all_cases())) | _elsewhere()
    missing = sorted(set(BUILTIN_PRIMITIVES) - covered)
    assert not missing, f"primitives without a test case: {missing}"


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@FAST
@given(data=st.data())
def test_values_and_derivatives(case, dtype, data):
    if dtype not in case.dtypes:
        pytest.skip("not defined for this dtype")
    case.run(data, dtype)


# -- non-differentiable points: the documented choices ------------------------------------
def elementwise_derivative(f, x):
    """f'(x) for elementwise f, by reverse mode and by forward mode (ones tangent)."""
    rev = fastad.grad(lambda x: np.sum(f(x)))(x)
    _, fwd = fastad.jvp(f, (x,), (np.ones_like(x),))
    return rev, fwd


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_abs_at_zero_has_derivative_zero(dtype):
    x = np.array([0.0, -0.0, 1.5, -2.0], dtype)
    for d in elementwise_derivative(np.abs, x):
        np.testing.assert_array_equal(d, np.sign(x))
        assert d.dtype == dtype


@pytest.mark.parametrize("fn, wins", [(np.maximum, np.greater), (np.minimum, np.less),
                                      (np.fmax, np.greater), (np.fmin, np.less)])
def test_maximum_minimum_ties_split_evenly(fn, wins):
    x = np.array([1.0, 2.0, 3.0, -0.5])
    y = np.array([1.0, 0.0, 5.0, -0.5])
    share_x = np.where(wins(x, y), 1.0, np.where(x == y, 0.5, 0.0))
    gx, gy = fastad.grad(lambda x, y: np.sum(fn(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, share_x)
    np.testing.assert_array_equal(gy, 1.0 - share_x)
    tx, ty = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])
    _, tangent = fastad.jvp(fn, (x, y), (tx, ty))
    np.testing.assert_array_equal(tangent, share_x * tx + (1.0 - share_x) * ty)


def test_clip_at_a_bound_splits_evenly():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    g = fastad.grad(lambda x: np.sum(np.clip(x, 0.0, 1.0)))(x)
    np.testing.assert_array_equal(g, np.where((x > 0) & (x < 1), 1.0,
                                              np.where((x == 0) | (x == 1), 0.5, 0.0)))


@pytest.mark.parametrize("reduce", [np.max, np.min])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 1), True)])
def test_max_min_reduction_ties_split_evenly(reduce, axis, keepdims):
    x = np.array([[1.0, 3.0, 3.0, 2.0],
                  [-1.0, -1.0, -1.0, 0.0],
                  [3.0, 0.0, 3.0, -1.0]])
    ext = reduce(x, axis=axis, keepdims=True)
    hit = (x == ext).astype(float)
    expected = hit / hit.sum(axis=axis, keepdims=True)
    cot = np.random.default_rng(1).standard_normal(np.shape(reduce(x, axis=axis,
                                                                   keepdims=keepdims)))
    _, vjp_fn = fastad.vjp(lambda x: reduce(x, axis=axis, keepdims=keepdims), x)
    (g,) = vjp_fn(cot)
    np.testing.assert_allclose(g, expected * np.reshape(cot, np.shape(ext)), rtol=1e-15)
    t = np.random.default_rng(2).standard_normal(x.shape)
    _, tangent = fastad.jvp(lambda x: reduce(x, axis=axis, keepdims=keepdims), (x,), (t,))
    np.testing.assert_allclose(tangent, np.sum(expected * t, axis=axis, keepdims=keepdims),
                               rtol=1e-14)


@pytest.mark.parametrize("fn", [np.sqrt, np.cbrt])
def test_sqrt_and_cbrt_at_zero_have_infinite_derivative(fn):
    for d in elementwise_derivative(fn, np.array([0.0, 4.0])):
        assert d[0] == np.inf
        assert np.isfinite(d[1])


@pytest.mark.parametrize("fn", [np.floor, np.ceil, np.rint, np.round, np.sign,
                                lambda x: (x > 0) * 1.0, lambda x: (x == 1.0) * 1.0])
def test_piecewise_constant_functions_have_zero_derivative(fn):
    x = np.array([-2.0, -1.5, 0.0, 0.3, 1.0, 2.5])  # integers, halves and zero included
    for d in elementwise_derivative(fn, x):
        np.testing.assert_array_equal(d, np.zeros_like(x))


def test_where_gives_exact_zeros_to_the_branch_not_taken():
    c = np.array([True, False, True, False])
    a = np.array([1.0, np.inf, np.nan, 2.0])
    b = np.array([np.nan, -np.inf, 3.0, 4.0])
    ga, gb = fastad.grad(lambda a, b: np.sum(np.where(c, a, b)), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(ga, c * 1.0)
    np.testing.assert_array_equal(gb, ~c * 1.0)
    ta = np.array([1.0, np.nan, 2.0, np.inf])
    tb = np.array([np.nan, 3.0, np.inf, 4.0])
    _, tangent = fastad.jvp(lambda a, b: np.where(c, a, b), (a, b), (ta, tb))
    np.testing.assert_array_equal(tangent, np.array([1.0, 3.0, 2.0, 4.0]))


def test_where_guarding_a_domain_does_not_leak_nan():
    # log(x) is NaN where x < 0, but that branch is not taken there, and log's
    # partial 1/x is finite there
    def f(x):
        return np.where(x < 0, -x, np.log(x))

    x = np.array([-2.0, -0.5, 0.5, 2.0])
    for d in elementwise_derivative(f, x):
        np.testing.assert_array_equal(d, np.where(x < 0, -1.0, 1.0 / x))


def test_strong_zero_keeps_nan_partials_of_the_branch_not_taken_out():
    # arccosh's partial 1/sqrt(x*x - 1) is NaN for |x| < 1: 0 * NaN would leak
    def f(x):
        return np.sum(np.where(x > 1, np.arccosh(x), x * x) + np.where(x > 0, np.sqrt(x), 0.0))

    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    with np.errstate(divide="ignore"):
        expected = (np.where(x > 1, 1 / np.sqrt(np.abs(x * x - 1)), 2 * x)
                    + np.where(x > 0, 0.5 / np.sqrt(np.abs(x)), 0.0))
    np.testing.assert_allclose(fastad.grad(f, strong_zero=True)(x), expected, rtol=1e-15)
    assert np.isnan(fastad.grad(f)(x)[1])  # the default is IEEE arithmetic: 0 * NaN


def test_prod_with_a_zero_gives_the_product_of_the_others():
    # (tests/test_products_at_zeros.py generates the class)
    x = np.array([2.0, 0.0, 3.0])
    np.testing.assert_array_equal(fastad.grad(np.prod)(x), [0.0, 6.0, 0.0])


def test_stop_gradient_blocks_the_derivative():
    x = np.array([0.5, -1.0, 2.0])
    g = fastad.grad(lambda x: np.sum(fnp.stop_gradient(x) * x))(x)
    np.testing.assert_array_equal(g, x)
    _, t = fastad.jvp(lambda x: fnp.stop_gradient(x) * x, (x,), (np.ones(3),))
    np.testing.assert_array_equal(t, x)


def test_logsumexp_with_minus_infinity_entries():
    x = np.array([-np.inf, 0.0, np.log(3.0)])
    value, g = fastad.value_and_grad(fnp.logsumexp)(x)
    assert value == pytest.approx(np.log(4.0), rel=1e-15)
    np.testing.assert_allclose(g, np.exp(x - np.log(4.0)), rtol=1e-15)
