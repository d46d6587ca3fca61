"""``fastad.lax`` as a drop-in for ``jax.lax`` on one device.

A table of cases, each a function of the lax module (``body(lax, *arrays)``)
so that the same code runs on fastad's and, where JAX is installed, on
JAX's: values against a NumPy oracle and the tape replayed by the reference
interpreter, derivatives in both modes to second order against central
finite differences, the compiled function against the eager one; integer
and comparison functions by value.  Then the pieces with more structure:
associative_scan on pytrees, sort with several keys, pad, dot_general
against ``np.einsum`` over drawn dimension numbers, custom_root and
custom_linear_solve against finite differences of the solved value, and the
names the module promises.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import scipy.linalg
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.lax.linalg
from fastad import lax
from helpers import check_function, make_args

FEW = settings(max_examples=8, deadline=None)
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
    compiled = fa.jit(f)
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
    compiled = fa.jit(traced)
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
    np.testing.assert_allclose(fa.jit(body)(x), want, rtol=1e-12, atol=1e-12)
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
        compiled = fa.jit(lambda v: lax.top_k(v, 3)[0])
        np.testing.assert_array_equal(compiled(x), x[want])
        np.testing.assert_array_equal(compiled(x[::-1].copy()), lax.top_k(x[::-1], 3)[0])


def test_reduce_precision_to_float32() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 5)
    want = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(lax.reduce_precision(x, 8, 23), want)
    np.testing.assert_array_equal(fa.jit(lambda x: lax.reduce_precision(x, 8, 23))(x), want)
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
    compiled = fa.jit(lambda x: lax.linalg.lu(x)[0])
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


@pytest.mark.parametrize("name,kind", [("psum", "multi-device"), ("all_gather", "multi-device"),
                                       ("axis_index", "multi-device"),
                                       ("ppermute", "multi-device"), ("rng_uniform", "XLA-only"),
                                       ("add_p", "XLA-only"), ("conv_transpose",
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


_ = math
