"""``jax.lax`` for one device, so that ``from jax import lax`` becomes
``from fastad import lax``: the same names, signatures and semantics (JAX's
argument names and defaults, result shapes and orders), each differentiable
where JAX's is and compiled like the rest of fastad, built on
`fastad.numpy`, `fastad.scipy.special` and `fastad.loops`.

- loops and branches: scan, fori_loop, while_loop, map, cond, switch,
  stop_gradient (`fastad.loops`, `fastad.conventions`);
- elementwise functions (`_elementwise`): arithmetic, trigonometric,
  special functions, comparisons, bitwise and shift operations on integers,
  convert_element_type, select / select_n;
- shapes (`_shapes`): broadcast_in_dim, reshape, slice, pad (interior and
  negative padding), dynamic slices at traced starts, concatenate, ...;
- reductions (`_reductions`): reduce_*, argmax/argmin, generic ``reduce``,
  cumulative reductions, sort (several operands, num_keys), top_k,
  associative_scan (JAX's odd-even recursion, on pytrees);
- products (`_products`): dot_general, batch_matmul, dot;
- windows (`_windows`): conv_general_dilated (strides, padding, input and
  kernel dilation, dimension numbers, feature groups), conv,
  conv_with_general_padding, reduce_window, as strided slices per tap;
- collectives over a vmapped axis (`_collectives`): psum, pmean, pmax,
  pmin, all_gather, psum_scatter, ppermute, pshuffle, all_to_all,
  axis_index, axis_size, for ``vmap(f, axis_name=...)``;
- solvers (`_solvers`): custom_root, custom_linear_solve (implicit
  derivatives); ``fastad.lax.linalg``: cholesky, triangular_solve, eigh, qr,
  svd, lu, tridiagonal_solve.

Differences from JAX: operands of different dtypes are promoted as NumPy
promotes them (``lax.add(float32, float64)`` is float64; JAX refuses mixed
dtypes); ``precision`` arguments are accepted and ignored; ``is_stable=False``
sorts stably; igamma, igammac and betainc are differentiable in x only;
nextafter takes plain values; a failed factorization raises LinAlgError
(JAX returns NaNs); custom_linear_solve traces ``solve`` when ``matvec``
closes over traced values (see `_solvers`).  Not provided: conv_general_dilated_local
and _patches, batch_group_count > 1, gather/scatter with XLA dimension numbers (index with
fastad.numpy instead), fft (use fastad.numpy.fft), ragged_dot; and,
with an AttributeError that says so, the names that only mean something
across devices or to XLA (device-to-device transfers, sharding
constraints, tokens, the RNG primitives, the ``*_p`` primitives).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as _np

from ..conventions import cond, stop_gradient, switch
from ..loops import fori_loop, scan, while_loop
from . import (_collectives, _elementwise, _products, _reductions, _shapes, _solvers,
               _windows, linalg)
from ._collectives import *  # noqa: F401,F403 - jax.lax's names, listed in __all__
from ._elementwise import *  # noqa: F401,F403
from ._products import *  # noqa: F401,F403
from ._reductions import *  # noqa: F401,F403
from ._shapes import *  # noqa: F401,F403
from ._solvers import *  # noqa: F401,F403
from ._windows import *  # noqa: F401,F403


def dtype(x: Any) -> Any:
    """``x``'s NumPy dtype (JAX's ``lax.dtype``)."""
    return _np.result_type(x)


def map(f: Callable[[Any], Any], xs: Any, *, batch_size: int | None = None) -> Any:  # noqa: A001
    """``jax.lax.map``: ``f`` over the leading axis of xs, stacked (a scan;
    ``batch_size`` is accepted and does not change the result)."""
    return scan(lambda carry, x: (carry, f(x)), None, xs)[1]


__all__ = (["scan", "fori_loop", "while_loop", "cond", "switch", "stop_gradient", "map",
            "linalg", "dtype"] + _elementwise.__all__ + _shapes.__all__ + _reductions.__all__
           + _products.__all__ + _solvers.__all__ + _windows.__all__ + _collectives.__all__)

# jax.lax names with no meaning on one device or outside XLA.
_MULTI_DEVICE = frozenset({
    "ragged_all_to_all", "pswapaxes", "pbroadcast", "pcast", "precv", "psend",
    "with_sharding_constraint"})
_XLA_ONLY = frozenset({
    "rng_uniform", "rng_bit_generator", "random_gamma_grad", "RandomAlgorithm",
    "create_token", "after_all", "platform_dependent", "composite", "stage", "dce_sink",
    "approx_max_k", "approx_min_k", "bitcast_convert_type", "mulhi", "scaled_dot",
    "shape_as_value", "empty", "AccuracyMode", "DotAlgorithm", "DotAlgorithmPreset",
    "Tolerance", "PrecisionLike"})
_NOT_PROVIDED = frozenset({
    "conv_general_dilated_local", "conv_general_dilated_patches", "gather", "scatter", "scatter_add", "scatter_sub", "scatter_mul",
    "scatter_min", "scatter_max", "scatter_apply", "fft", "ragged_dot",
    "ragged_dot_general", "index_take", "conv_general_permutations", "conv_general_shape_tuple",
    "conv_shape_tuple", "conv_transpose_shape_tuple", "reduce_window_shape_tuple",
    "igamma_grad_a", "ConvGeneralDilatedDimensionNumbers", "GatherDimensionNumbers", "GatherScatterMode",
    "ScatterDimensionNumbers", "RaggedDotDimensionNumbers", "FftType"})


def __getattr__(name: str) -> Any:
    if name in _MULTI_DEVICE:
        raise AttributeError(f"fastad.lax.{name}: jax.lax.{name} is a transfer or sharding "
                             "operation across devices, with no counterpart in fastad, which "
                             "runs on one device (its collectives over a vmapped axis: psum, "
                             "pmean, pmax, pmin, all_gather, psum_scatter, ppermute, "
                             "pshuffle, all_to_all, axis_index, axis_size)")
    if name in _XLA_ONLY or (name.endswith("_p") and not name.startswith("_")):
        raise AttributeError(f"fastad.lax.{name}: jax.lax.{name} is an XLA-only name "
                             "(a primitive, token, RNG or backend detail) with no "
                             "counterpart in fastad")
    if name in _NOT_PROVIDED:
        raise AttributeError(f"fastad.lax.{name}: not provided by fastad.lax (see its "
                             "docstring for the alternatives)")
    raise AttributeError(f"module 'fastad.lax' has no attribute {name!r}")
