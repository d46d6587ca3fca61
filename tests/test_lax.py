"""``fastad.lax`` as a drop-in for ``jax.lax`` on one device.

A table of cases, each a function of the lax module (``body(lax, *arrays)``)
so that the same code runs on fastad's and, where JAX is installed, on
JAX's: values against a NumPy oracle and the tape replayed by the reference
interpreter, derivatives in both modes to second order against central
finite differences, the compiled function against the eager one; integer
and comparison functions by value.  The pieces with more structure:
associative_scan on pytrees, sort with several keys, pad, dot_general
against ``np.einsum`` over drawn dimension numbers, custom_root and
custom_linear_solve against finite differences of the solved value, and the
names the module promises are in tests/test_lax_structured.py.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import scipy.linalg
import scipy.special

import fastad as fa
from fastad import lax
from helpers import check_function, make_args
from conftest import BACKENDS

# the backend is not the point here: one compiled backend (the reference
# interpreter without the C extension, never a cold Numba compile per case)
ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
jit = functools.partial(fa.jit, backend=ONE_COMPILED)

# integer data and some special functions send a compiled function to another backend
pytestmark = pytest.mark.filterwarnings("ignore:fastad.*runs on the",
                                        "ignore:Casting complex values to real")


@dataclass
class LaxCase:
    name: str
    body: Callable[..., Any]  # body(lax_module, *arrays)
    shapes: tuple
    domains: tuple
    oracle: Callable[..., Any]  # NumPy's result from the same arrays
    differentiable: bool = True
    order: int = 2


CASES: list[LaxCase] = []


def case(name: str, shapes: tuple, domains: tuple, oracle: Callable[..., Any], **kw: Any):
    def register(body: Callable[..., Any]) -> Callable[..., Any]:
        CASES.append(LaxCase(name, body, shapes, domains, oracle, **kw))
        return body
    return register


def unary(name: str, oracle: Callable[..., Any], domain: str = "real", shape=(2, 3)) -> None:
    case(name, (shape,), (domain,), oracle)(lambda L, x: getattr(L, name)(x))


def binary(name: str, oracle: Callable[..., Any], domains=("real", "real"), **kw: Any) -> None:
    case(name, ((2, 3), (2, 3)), domains, oracle, **kw)(lambda L, x, y: getattr(L, name)(x, y))


# -- elementwise --------------------------------------------------------------------------
for _name, _oracle, _domain in [
        ("acos", np.arccos, "unit"), ("asin", np.arcsin, "unit"), ("atan", np.arctan, "real"),
        ("acosh", np.arccosh, "gt1"), ("asinh", np.arcsinh, "real"), ("atanh", np.arctanh, "unit"),
        ("cosh", np.cosh, "real"), ("sinh", np.sinh, "real"), ("tan", np.tan, "unit"),
        ("cbrt", np.cbrt, "nonzero"), ("exp2", np.exp2, "real"), ("reciprocal", np.reciprocal,
                                                                 "nonzero"),
        ("sign", np.sign, "nonzero"), ("floor", np.floor, "offint"), ("ceil", np.ceil, "offint"),
        ("erfc", scipy.special.erfc, "real"), ("erf_inv", scipy.special.erfinv, "unit"),
        ("bessel_i0e", scipy.special.i0e, "real"), ("bessel_i1e", scipy.special.i1e, "real"),
        ("rsqrt", lambda x: 1 / np.sqrt(x), "pos"), ("logistic", scipy.special.expit, "real"),
        ("lgamma", scipy.special.gammaln, "pos"), ("digamma", scipy.special.digamma, "pos")]:
    unary(_name, _oracle, _domain)

binary("atan2", np.arctan2, ("nonzero", "nonzero"))
binary("rem", np.fmod, ("real", "nonzero"))
binary("pow", np.power, ("pos", "real"))
# fastad differentiates igamma and igammac in x only (JAX also in a)
case("igamma", ((2, 3),), ("pos",), lambda x: scipy.special.gammainc(1.7, x))(
    lambda L, x: L.igamma(1.7, x))
case("igammac", ((2, 3),), ("pos",), lambda x: scipy.special.gammaincc(1.7, x))(
    lambda L, x: L.igammac(1.7, x))


@case("polygamma", ((2, 3),), ("pos",), lambda x: scipy.special.polygamma(1, x))
def _polygamma(L, x):
    return L.polygamma(1.0, x)


@case("betainc", ((2, 3),), ("unit",), lambda x: scipy.special.betainc(2.0, 3.0, np.abs(x)))
def _betainc(L, x):
    return L.betainc(2.0, 3.0, L.abs(x))


def _round_away_oracle(x):
    away = lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5)  # noqa: E731
    return away(x * 2.5) + away(x)


@case("round_away", ((2, 3),), ("offint",), _round_away_oracle)
def _round_away(L, x):
    return L.round(x * 2.5) + L.round(x)


@case("round_even", ((2, 3),), ("offint",), np.rint)
def _round_even(L, x):
    return L.round(x, L.RoundingMethod.TO_NEAREST_EVEN)


@case("complex_parts", ((2, 3), (2, 3)), ("real", "real"),
      lambda x, y: np.real((x + 1j * y) * np.conj(x - 2j * y)) + np.imag((x + 1j * y) ** 2))
def _complex_parts(L, x, y):
    z = L.complex(x, y)
    return L.real(L.mul(z, L.conj(L.complex(x, -2.0 * y)))) + L.imag(L.integer_pow(z, 2))


@case("clamp_select", ((2, 3), (2, 3)), ("distinct", "distinct"),
      lambda x, y: np.where(x > y, np.clip(x, -0.5, 0.5), y * x))
def _clamp_select(L, x, y):
    return L.select(L.gt(x, y), L.clamp(-0.5, x, 0.5), L.mul(y, x))


@case("select_n", ((2, 3), (2, 3)), ("distinct", "real"),
      lambda x, y: np.choose((x > 0).astype(int) + (x > 0.9), [x, y, x * y]))
def _select_n(L, x, y):
    which = L.convert_element_type(L.gt(x, 0.0), np.int32) + L.convert_element_type(
        L.gt(x, 0.9), np.int32)
    return L.select_n(which, x, y, L.mul(x, y))


@case("convert_barrier_precision", ((3,),), ("real",), lambda x: x * 2.0 + (x > 0))
def _convert(L, x):
    y = L.optimization_barrier(L.reduce_precision(x, 11, 52) * 2.0)
    z = L.convert_element_type(L.convert_element_type(y, np.complex128), np.float64)
    return z + L.convert_element_type(L.convert_element_type(x > 0.0, np.int32), np.float64)


# -- shapes -------------------------------------------------------------------------------
def shaped(name: str, shape: tuple, oracle: Callable[..., Any], domain: str = "real"):
    return case(name, (shape,), (domain,), oracle)


shaped("broadcast", (2, 3), lambda x: np.broadcast_to(x, (4, 2, 3)) * np.arange(4)[:, None, None])(
    lambda L, x: L.broadcast(x, (4,)) * L.iota(np.float64, 4)[:, None, None])
shaped("broadcast_in_dim", (3,), lambda x: np.broadcast_to(x[None, :, None], (2, 3, 4)) ** 2)(
    lambda L, x: L.square(L.broadcast_in_dim(x, (2, 3, 4), (1,))))
shaped("broadcast_to_rank_iota", (3,),
       lambda x: x[None, :] * np.arange(2.0)[:, None] + np.arange(3.0)[None, :])(
    lambda L, x: L.broadcast_to_rank(x, 2) * L.broadcasted_iota(np.float64, (2, 3), 0)
    + L.broadcasted_iota(np.float64, (2, 3), 1))
shaped("full_like", (2, 3), lambda x: x * 0 + 1.5 + x[0, 0])(
    lambda L, x: L.full_like(x, 1.5) + L.full((2, 3), x[0, 0]))
shaped("concatenate_stack", (2, 3), lambda x: np.concatenate([x, np.stack([x[0], x[1] ** 2])], 1))(
    lambda L, x: L.concatenate([x, L.stack([x[0], L.square(x[1])])], 1))
shaped("expand_squeeze", (2, 1, 3), lambda x: x[:, 0][:, None, :, None])(
    lambda L, x: L.expand_dims(L.squeeze(x, (1,)), (1, 3)))
shaped("reshape_dimensions", (2, 3, 4), lambda x: np.transpose(x, (2, 0, 1)).reshape(4, 6))(
    lambda L, x: L.reshape(x, (4, 6), dimensions=(2, 0, 1)))
shaped("rev_transpose", (2, 3, 4), lambda x: np.transpose(x[::-1, :, ::-1], (1, 2, 0)))(
    lambda L, x: L.transpose(L.rev(x, (0, 2)), (1, 2, 0)))
shaped("slice_strides", (5, 6), lambda x: x[1:5:2, 0:6:3])(
    lambda L, x: L.slice(x, (1, 0), (5, 6), (2, 3)))
shaped("slice_in_dim_negative", (5, 6), lambda x: x[:, -4:-1:2])(
    lambda L, x: L.slice_in_dim(x, -4, -1, stride=2, axis=1))
shaped("index_in_dim", (3, 3), lambda x: x[-1] * x[:, 1])(
    lambda L, x: L.index_in_dim(x, -1, keepdims=False) * L.index_in_dim(x, 1, axis=1,
                                                                         keepdims=False))
shaped("dynamic_slice_in_dim", (6, 3),
       lambda x: x[3:6] + x[:, 1:3].sum() + x[2:4, 1].sum())(
    lambda L, x: L.dynamic_slice_in_dim(x, 5, 3) + L.reduce_sum(
        L.dynamic_slice_in_dim(x, -2, 2, axis=1), (0, 1))
    + L.reduce_sum(L.dynamic_index_in_dim(L.dynamic_slice(x, (2, 1), (2, 1)), 0, 1), (0,)))


def _dus_oracle(x):
    out = x.copy()
    out[3:6, :] = x[:3, :] * 2
    out[:, 0] = x[:, 2]
    return out


shaped("dynamic_slice_no_wrap", (6, 3), lambda x: x[0:2] * x[4:6])(  # a traced start < 0
    lambda L, x: L.dynamic_slice(x, (L.argmax(x[:, 0], 0, np.int64) - 9, 0), (2, 3),
                                 allow_negative_indices=False) * L.dynamic_slice_in_dim(x, -2, 2))
shaped("dynamic_update_in_dim", (6, 3), _dus_oracle)(
    lambda L, x: L.dynamic_update_index_in_dim(
        L.dynamic_update_slice_in_dim(x, x[:3] * 2.0, 4, 0), x[:, 2], 0, 1))
shaped("split_tile_collapse", (4, 3), lambda x: np.tile(x[1:], (1, 2)).reshape(-1) - x[:1].sum())(
    lambda L, x: L.collapse(L.tile(L.split(x, (1, 3), 0)[1], (1, 2)), 0)
    - L.reduce_sum(L.split(x, (1, 3), 0)[0], (0, 1)))
shaped("pad", (3, 2), lambda x: _pad_oracle(x, 0.5, [(1, -1, 2), (-1, 2, 1)]))(
    lambda L, x: L.pad(x, 0.5, [(1, -1, 2), (-1, 2, 1)]))
case("pad_value", ((3,), ()), ("real", "real"), lambda x, v: _pad_oracle(x, v, [(2, 1, 1)]))(
    lambda L, x, v: L.pad(x, v, [(2, 1, 1)]))
shaped("unstack", (3, 2), lambda x: x[:, 0] * x[:, 1])(
    lambda L, x: L.mul(*L.unstack(x, axis=1)))


def _pad_oracle(x: np.ndarray, value: Any, config: list) -> np.ndarray:
    """Elementwise placement: x[i] at low + i * (interior + 1) of a padded
    array, then the negative edges cut."""
    out = np.asarray(x)
    for axis, (lo, hi, interior) in enumerate(config):
        n = out.shape[axis]
        size = max(lo, 0) + max(hi, 0) + n + max(n - 1, 0) * interior
        shape = list(out.shape)
        shape[axis] = size
        big = np.full(shape, value, dtype=np.result_type(out, value))
        index = [slice(None)] * out.ndim
        index[axis] = slice(max(lo, 0), max(lo, 0) + n * (interior + 1) - interior
                            if n else max(lo, 0), interior + 1)
        big[tuple(index)] = out
        keep = [slice(None)] * out.ndim
        keep[axis] = slice(-min(lo, 0), size + min(hi, 0))
        out = big[tuple(keep)]
    return out


# -- reductions -----------------------------------------------------------------------------
shaped("reduce_sum_prod", (2, 3, 2), lambda x: x.sum((0, 2)) * x.prod(1).sum())(
    lambda L, x: L.reduce_sum(x, (0, 2)) * L.reduce_sum(L.reduce_prod(x, (1,)), (0, 1)))
shaped("reduce_max_min", (3, 4), lambda x: x.max(0) - x.min(1).sum(), "distinct")(
    lambda L, x: L.reduce_max(x, (0,)) - L.reduce_sum(L.reduce_min(x, (1,)), (0,)))
shaped("reduce_known", (3, 3), lambda x: x.sum(1) + 1.0 + np.maximum(x.max(0), 0.2), "distinct")(
    lambda L, x: L.reduce(x, 1.0, L.add, (1,)) + L.reduce(x, 0.2, L.max, (0,)))
shaped("reduce_fold", (3, 4), lambda x: _softmax_fold(x))(
    lambda L, x: L.reduce(x, 0.0, lambda a, b: L.log(L.exp(a) + L.exp(b)), (0,)))


def _softmax_fold(x):
    acc = np.zeros(x.shape[1])
    for row in x:
        acc = np.log(np.exp(acc) + np.exp(row))
    return acc


shaped("reduce_pytree", (3, 4), lambda x: (x.sum(0) + 1.0) * (x * x).sum(0))(
    lambda L, x: _pair_product(L.reduce((x, x * x), (1.0, 0.0),
                                        lambda a, b: (a[0] + b[0], a[1] + b[1]), (0,))))


def _pair_product(pair):
    return pair[0] * pair[1]


for _cum, _np_cum in [("cumsum", np.cumsum), ("cumprod", np.cumprod),
                      ("cummax", np.maximum.accumulate), ("cummin", np.minimum.accumulate),
                      ("cumlogsumexp", np.logaddexp.accumulate)]:
    shaped(_cum, (3, 4), functools.partial(
        lambda x, f: f(x, axis=1) + f(x[::-1], axis=0)[::-1], f=_np_cum), "distinct")(
        functools.partial(lambda L, x, name: getattr(L, name)(x, axis=1)
                          + getattr(L, name)(x, reverse=True), name=_cum))
shaped("argmax_argmin", (3, 3), lambda x: x[np.argmax(x, 0), 0] + x[0, np.argmin(x, 1)],
       "distinct")(lambda L, x: x[L.argmax(x, 0, np.int32), 0] + x[0, L.argmin(x, 1, np.int64)])
shaped("sort", (3, 4), lambda x: np.sort(x, 0) * np.arange(4.0) + np.sort(x, 1), "distinct")(
    lambda L, x: L.sort(x, dimension=0) * L.iota(np.float64, 4) + L.sort(x))


def _lex_oracle(x, y):
    keys = np.round(x * 2)  # ties in the first key, broken by the second
    order = np.lexsort((y, keys), axis=-1)
    take = functools.partial(np.take_along_axis, indices=order, axis=-1)
    return take(keys) + take(y) * take(x)


case("sort_num_keys", ((3, 5), (3, 5)), ("real", "distinct"), _lex_oracle)(
    lambda L, x, y: _lex_body(L, x, y))


def _lex_body(L, x, y):
    keys = L.round(x * 2.0, L.RoundingMethod.TO_NEAREST_EVEN)
    k, v, w = L.sort((keys, y, x), dimension=-1, num_keys=2)
    return k + v * w


shaped("sort_key_val", (2, 5), lambda x: np.take_along_axis(x ** 2, np.argsort(-x, 1), 1),
       "distinct")(lambda L, x: L.sort_key_val(L.neg(x), L.square(x))[1])
shaped("top_k", (2, 5), lambda x: -np.sort(-x, 1)[:, :3] * (np.argsort(-x, 1)[:, :3] + 1),
       "distinct")(lambda L, x: _top_k_body(L, x))


def _top_k_body(L, x):
    values, indices = L.top_k(x, 3)
    return values * (L.convert_element_type(indices, np.float64) + 1.0)


def _affine_scan_oracle(m, c, reverse=False):
    out, acc_m, acc_c = np.empty_like(c), None, None
    for k in (range(len(m) - 1, -1, -1) if reverse else range(len(m))):
        acc_m, acc_c = (m[k], c[k]) if acc_m is None else (acc_m * m[k], m[k] * acc_c + c[k])
        out[k] = acc_c
    return out


case("associative_scan", ((5, 2), (5, 2)), ("pos", "real"),
     lambda m, c: _affine_scan_oracle(m, c) + _affine_scan_oracle(m, c, reverse=True))(
    lambda L, m, c: L.associative_scan(lambda a, b: (a[0] * b[0], b[0] * a[1] + b[1]), (m, c))[1]
    + L.associative_scan(lambda a, b: (a[0] * b[0], b[0] * a[1] + b[1]), (m, c),
                         reverse=True)[1])


# -- products -------------------------------------------------------------------------------
case("dot_general", ((2, 3, 4), (4, 2, 5)), ("real", "real"),
     lambda a, b: np.einsum("bij,jbk->bik", a, b))(
    lambda L, a, b: L.dot_general(a, b, (((2,), (0,)), ((0,), (1,))),
                                  precision=L.Precision.HIGHEST))
case("batch_matmul_dot", ((2, 3, 4), (2, 4, 2)), ("real", "real"),
     lambda a, b: np.matmul(a, b) + np.dot(a[0], b[1]))(
    lambda L, a, b: L.batch_matmul(a, b) + L.dot(a[0], b[1], precision=None,
                                                  preferred_element_type=np.float64))

# -- windows: direct loops over the padded, dilated input as the oracle -----------------------
def _window_positions(shape: tuple, window: tuple, strides: tuple, dilation: tuple):
    """(output index, input indices of each tap) for every output position."""
    out = [(n - ((k - 1) * d + 1)) // s + 1 for n, k, d, s in zip(shape, window, dilation, strides)]
    for index in np.ndindex(*out):
        taps = [tuple(i * s + o * d for i, s, o, d in zip(index, strides, offset, dilation))
                for offset in np.ndindex(*window)]
        yield index, taps, list(np.ndindex(*window))


def _conv_oracle(x, w, strides, pads, lhs_dilation, rhs_dilation, groups=1):
    """NCHW input, OIHW kernel: each output a sum over taps and its group's channels."""
    xp = _pad_oracle(x, 0.0, [(0, 0, 0)] * 2 + [(lo, hi, d - 1) for (lo, hi), d in
                                               zip(pads, lhs_dilation)])
    cg, og = w.shape[1], w.shape[0] // groups
    positions = list(_window_positions(xp.shape[2:], w.shape[2:], strides, rhs_dilation))
    out_shape = tuple(np.max([p[0] for p in positions], axis=0) + 1) if positions else ()
    out = np.zeros((x.shape[0], w.shape[0]) + out_shape)
    for index, taps, offsets in positions:
        for o in range(w.shape[0]):
            g = o // og
            for tap, offset in zip(taps, offsets):
                out[(slice(None), o) + index] += xp[(slice(None), slice(g * cg, (g + 1) * cg))
                                                    + tap] @ w[(o, slice(None)) + offset]
    return out


def _reduce_window_oracle(x, init, fn, window, strides, pads, base, dilation):
    xp = _pad_oracle(x, init, [(lo, hi, b - 1) for (lo, hi), b in zip(pads, base)])
    positions = list(_window_positions(xp.shape, window, strides, dilation))
    out = np.empty(tuple(np.max([p[0] for p in positions], axis=0) + 1))
    for index, taps, _ in positions:
        out[index] = functools.reduce(fn, [xp[t] for t in taps], init)
    return out


case("conv_same_dilated", ((1, 2, 5, 4), (3, 2, 2, 2)), ("real", "real"),
     lambda x, w: _conv_oracle(x, w, (2, 1), [(0, 1), (1, 1)], (1, 1), (1, 2)))(
    lambda L, x, w: L.conv_general_dilated(x, w, (2, 1), "SAME", rhs_dilation=(1, 2)))
case("conv_nhwc_groups", ((2, 3, 3, 4), (2, 2, 2, 4)), ("real", "real"),
     lambda x, w: np.transpose(_conv_oracle(
         np.transpose(x, (0, 3, 1, 2)), np.transpose(w, (3, 2, 0, 1)), (1, 2), [(1, -1), (2, 0)],
         (2, 1), (1, 1), groups=2), (0, 2, 3, 1)))(
    lambda L, x, w: L.conv_general_dilated(x, w, (1, 2), [(1, -1), (2, 0)], lhs_dilation=(2, 1),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                           feature_group_count=2))
case("conv", ((1, 1, 4, 4), (1, 1, 3, 3)), ("real", "real"),
     lambda x, w: 2.0 * _conv_oracle(x, w, (1, 1), [(0, 0), (0, 0)], (1, 1), (1, 1)))(
    lambda L, x, w: L.conv(x, w, (1, 1), "VALID")
    + L.conv_with_general_padding(x, w, (1, 1), [(0, 0), (0, 0)], None, None))
shaped("reduce_window_max", (5, 4), lambda x: _reduce_window_oracle(
    x, -np.inf, np.maximum, (2, 3), (2, 1), [(0, 1), (1, 1)], (1, 1), (1, 1)), "distinct")(
    lambda L, x: L.reduce_window(x, -np.inf, L.max, (2, 3), (2, 1), "SAME"))
shaped("reduce_window_add_dilated", (4, 5), lambda x: _reduce_window_oracle(
    x, 0.0, np.add, (2, 2), (1, 2), [(1, 0), (0, 2)], (2, 1), (1, 2)))(
    lambda L, x: L.reduce_window(x, 0.0, L.add, (2, 2), (1, 2), [(1, 0), (0, 2)],
                                 base_dilation=(2, 1), window_dilation=(1, 2)))
shaped("reduce_window_fold", (4, 3), lambda x: _reduce_window_oracle(
    x, 0.0, lambda a, b: a * 0.5 + np.sin(b), (2, 2), (1, 1), [(0, 0), (0, 0)], (1, 1), (1, 1)))(
    lambda L, x: L.reduce_window(x, 0.0, lambda a, b: a * 0.5 + L.sin(b), (2, 2)))


# -- linalg ---------------------------------------------------------------------------------
case("cholesky", ((3, 3),), ("matrix",), lambda a: np.linalg.cholesky(a @ a.T))(
    lambda L, a: L.linalg.cholesky(L.dot(a, L.transpose(a, (1, 0)))))


def _tri_oracle(a, b, left_side, lower, transpose_a):
    t = np.tril(a) if lower else np.triu(a)
    t = t.T if transpose_a else t
    return np.linalg.solve(t, b) if left_side else np.linalg.solve(t.T, b.T).T


for _left in (True, False):
    for _lower in (True, False):
        for _trans in (True, False):
            case(f"triangular_solve_l{int(_left)}{int(_lower)}{int(_trans)}",
                 ((3, 3), (3, 3)), ("matrix", "real"),
                 functools.partial(_tri_oracle, left_side=_left, lower=_lower,
                                   transpose_a=_trans))(
                functools.partial(lambda L, a, b, **kw: L.linalg.triangular_solve(a, b, **kw),
                                  left_side=_left, lower=_lower, transpose_a=_trans))

case("eigh", ((3, 3),), ("real",), lambda a: np.linalg.eigvalsh(a + a.T))(
    lambda L, a: L.linalg.eigh(a + L.transpose(a, (1, 0)))[1])
case("eigh_vectors", ((3, 3),), ("real",),
     lambda a: np.abs(np.linalg.eigh(a + a.T)[1]))(
    lambda L, a: L.abs(L.linalg.eigh(a + L.transpose(a, (1, 0)))[0]))
case("qr", ((3, 3),), ("matrix",), lambda a: np.abs(np.linalg.qr(a)[1]))(
    lambda L, a: L.abs(L.linalg.qr(a)[1]))
case("svd", ((3, 2),), ("real",), lambda a: np.linalg.svd(a, compute_uv=False))(
    lambda L, a: L.linalg.svd(a, full_matrices=False, compute_uv=False))
case("lu", ((3, 3),), ("real",), lambda a: scipy.linalg.lu_factor(a)[0])(
    lambda L, a: L.linalg.lu(a)[0])


def _tridiagonal_dense(dl, d, du):
    return np.diag(d) + np.diag(du[:-1], 1) + np.diag(dl[1:], -1)


case("tridiagonal_solve", ((4,), (4,), (4,), (4, 2)), ("unit", "gt1", "unit", "real"),
     lambda dl, d, du, b: np.linalg.solve(_tridiagonal_dense(dl, d + 2, du), b))(
    lambda L, dl, d, du, b: L.linalg.tridiagonal_solve(dl, d + 2.0, du, b))


# -- integer and comparison functions (values only) -----------------------------------------
INT_CASES: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = []


def int_case(name: str, oracle: Callable[..., Any]):
    def register(body):
        INT_CASES.append((name, body, oracle))
        return body
    return register


def _ints(rng: np.random.Generator, dtype: Any) -> tuple:
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (12,), dtype=dtype, endpoint=True)
    x[:4] = np.array([0, 1, info.max, info.min], dtype)
    low = -2 if np.dtype(dtype).kind == "i" else 0  # negative shifts: out of range, as XLA's
    return x, rng.integers(low, 8 * np.dtype(dtype).itemsize + 3, (12,)).astype(dtype)


def _shift_amount(x, y):
    """y clipped into the width, and where XLA's reading (unsigned) puts it out of range."""
    bits = 8 * x.dtype.itemsize
    return np.clip(y, 0, bits - 1).astype(x.dtype), (y < 0) | (y >= bits)


def _unsigned(x):
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def _logical_right(x, y):
    k, out = _shift_amount(x, y)
    return np.where(out, 0, _unsigned(x) >> k.astype(_unsigned(x).dtype)).astype(x.dtype)


def _arithmetic_right(x, y):
    """The bits read as signed, shifted with the sign filled, read back."""
    signed = x.view(np.dtype(f"i{x.dtype.itemsize}"))
    k, out = _shift_amount(x, y)
    k = np.where(out, 8 * x.dtype.itemsize - 1, k).astype(signed.dtype)
    return (signed >> k).view(x.dtype)


def _clz(x):
    bits = 8 * x.dtype.itemsize
    u = _unsigned(x).astype(object)
    return np.array([bits - int(v).bit_length() for v in u], x.dtype)


int_case("bitwise", lambda x, y: (x & y) ^ (x | ~y))(
    lambda L, x, y: L.bitwise_xor(L.bitwise_and(x, y), L.bitwise_or(x, L.bitwise_not(y))))
int_case("shift_left", lambda x, y: np.where(_shift_amount(x, y)[1], 0,
                                             x << _shift_amount(x, y)[0]))(
    lambda L, x, y: L.shift_left(x, y))
int_case("shift_right_logical", _logical_right)(lambda L, x, y: L.shift_right_logical(x, y))
int_case("shift_right_arithmetic", lambda x, y: _arithmetic_right(x, y))(
    lambda L, x, y: L.shift_right_arithmetic(x, y))
int_case("population_count", lambda x, y: np.bitwise_count(_unsigned(x)).astype(x.dtype))(
    lambda L, x, y: L.population_count(x))
int_case("clz", lambda x, y: _clz(x))(lambda L, x, y: L.clz(x))
int_case("comparisons", lambda x, y: np.stack([x == y, x != y, x < y, x <= y, x > y, x >= y]))(
    lambda L, x, y: L.concatenate([L.expand_dims(f(x, y), (0,)) for f in
                                   (L.eq, L.ne, L.lt, L.le, L.gt, L.ge)], 0))
int_case("reduce_bits", lambda x, y: np.stack([np.bitwise_and.reduce(x), np.bitwise_or.reduce(x),
                                               np.bitwise_xor.reduce(x)]))(
    lambda L, x, y: L.stack([L.reduce_and(x, (0,)), L.reduce_or(x, (0,)),
                             L.reduce_xor(x, (0,))]))


# -- the table's tests ----------------------------------------------------------------------
def _args(c: LaxCase, seed: int = 0, dtype: Any = np.float64) -> tuple:
    return make_args(seed, c.shapes, c.domains, dtype)


@pytest.mark.parametrize("c", [c for c in CASES if c.differentiable], ids=lambda c: c.name)
def test_values_and_derivatives(c: LaxCase) -> None:
    """Values against NumPy (eager and the replayed tape), derivatives in
    both modes against central finite differences, to second order."""
    f = functools.partial(c.body, lax)
    check_function(f, _args(c), order=c.order, oracle=c.oracle, seed=3)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_compiled_equals_eager(c: LaxCase) -> None:
    """fa.jit traces once and replays on new values: each equals the eager call."""
    f = functools.partial(c.body, lax)
    compiled = jit(f)
    for seed in (1, 2):
        args = _args(c, seed)
        np.testing.assert_allclose(compiled(*args), f(*args), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f(*args), c.oracle(*args), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32])
@pytest.mark.parametrize("name,body,oracle", INT_CASES, ids=[c[0] for c in INT_CASES])
def test_integer_functions(name: str, body: Callable, oracle: Callable, dtype: Any) -> None:
    """On plain integers and as integer data of a compiled function (each call's values)."""
    rng = np.random.default_rng(7)
    x, y = _ints(rng, dtype)
    want = oracle(x, y)
    got = body(lax, x, y)
    np.testing.assert_array_equal(got, want)
    assert np.asarray(got).dtype == want.dtype

    def traced(v):  # the integers computed from a traced float, used as data
        xi = lax.convert_element_type(v, dtype) + x
        return lax.convert_element_type(body(lax, xi, y), np.float64) * (1.0 + v[0])
    zero = np.zeros(x.shape)
    compiled = jit(traced)
    np.testing.assert_array_equal(compiled(zero), want.astype(np.float64))
    np.testing.assert_array_equal(compiled(zero + 1.0), 2.0 * oracle(x + dtype(1), y))


def _jax_or_skip() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_values_equal_jax(c: LaxCase) -> None:
    """Where JAX is installed: the same body on jax.lax gives the same values (float64)."""
    jax = _jax_or_skip()
    args = _args(c)
    want = jax.jit(functools.partial(c.body, jax.lax))(*args)  # one XLA compile per case
    np.testing.assert_allclose(c.body(lax, *args), np.asarray(want), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name,body,oracle", INT_CASES, ids=[c[0] for c in INT_CASES])
def test_integer_functions_equal_jax(name: str, body: Callable, oracle: Callable) -> None:
    jax = _jax_or_skip()
    for dtype in (np.int8, np.int32, np.uint32, np.int64):
        x, y = _ints(np.random.default_rng(11), dtype)
        want = jax.jit(functools.partial(body, jax.lax))(x, y)
        np.testing.assert_array_equal(body(lax, x, y), np.asarray(want))


