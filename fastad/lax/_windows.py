"""``jax.lax``'s convolutions and windowed reductions, written as strided
slices: an input is padded (and dilated, with interior padding) by `pad`,
then each offset of the window contributes one strided slice, contracted
with that tap of the kernel (``conv_general_dilated``) or combined by the
computation (``reduce_window``).  The work is the direct convolution's, in
as many whole-array operations as the window has taps, so small kernels
(the usual 3x3) trace to short tapes; each is differentiable and compiles."""
from __future__ import annotations

import builtins
import itertools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as _np

from .. import numpy as fnp
from ..core import pytree
from ._products import _cast
from ._shapes import pad, slice

__all__ = ["conv_general_dilated", "conv", "conv_with_general_padding", "conv_transpose",
           "ConvDimensionNumbers",
           "conv_dimension_numbers", "padtype_to_pads", "reduce_window"]


class ConvDimensionNumbers(NamedTuple):
    """Where the batch (N / O), feature (C / I) and spatial axes are: each a
    tuple (batch or output feature, feature, spatial...) of axis numbers."""

    lhs_spec: tuple
    rhs_spec: tuple
    out_spec: tuple


def conv_dimension_numbers(lhs_shape: Sequence[int], rhs_shape: Sequence[int],
                           dimension_numbers: Any) -> ConvDimensionNumbers:
    """JAX's reading of dimension_numbers: None (NC..., OI..., NC...), a
    ConvDimensionNumbers, or three strings such as ("NHWC", "HWIO", "NHWC")
    whose spatial letters are matched by name, in the kernel's order."""
    nd = len(lhs_shape)
    if dimension_numbers is None:
        default = (0, 1) + tuple(range(2, nd))
        return ConvDimensionNumbers(default, default, default)
    if isinstance(dimension_numbers, ConvDimensionNumbers):
        return dimension_numbers
    lhs, rhs, out = dimension_numbers
    if not all(isinstance(s, str) for s in (lhs, rhs, out)):
        return ConvDimensionNumbers(tuple(lhs), tuple(rhs), tuple(out))
    if not (len(lhs) == len(rhs) == len(out) == nd == len(rhs_shape)):
        raise ValueError(f"conv: dimension_numbers {dimension_numbers} for operands of rank "
                         f"{nd} and {len(rhs_shape)}")
    spatial = [ch for ch in rhs if ch not in "OI"]
    try:
        return ConvDimensionNumbers(
            (lhs.index("N"), lhs.index("C")) + tuple(lhs.index(ch) for ch in spatial),
            (rhs.index("O"), rhs.index("I")) + tuple(rhs.index(ch) for ch in spatial),
            (out.index("N"), out.index("C")) + tuple(out.index(ch) for ch in spatial))
    except ValueError:
        raise ValueError(f"conv: dimension_numbers {dimension_numbers} need N and C in the "
                         "input and output specs, O and I in the kernel's, and the same "
                         "spatial letters in all three") from None


def padtype_to_pads(in_shape: Sequence[int], window_shape: Sequence[int],
                    window_strides: Sequence[int], padding: str) -> list:
    """(low, high) per spatial axis for "VALID", "SAME" or "SAME_LOWER"."""
    kind = padding.upper()
    if kind == "VALID":
        return [(0, 0)] * len(in_shape)
    if kind not in ("SAME", "SAME_LOWER"):
        raise ValueError(f"padding must be 'VALID', 'SAME', 'SAME_LOWER' or (low, high) pairs; "
                         f"got {padding!r}")
    pads = []
    for n, k, s in zip(in_shape, window_shape, window_strides):
        total = builtins.max((-(-n // s) - 1) * s + k - n, 0)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if kind == "SAME" else (large, small))
    return pads


_ALL = builtins.slice(None)


def _dilated(k: int, d: int) -> int:
    return 0 if k == 0 else (k - 1) * d + 1


def _pads(padding: Any, in_shape: Sequence[int], window: Sequence[int],
          strides: Sequence[int]) -> list:
    if isinstance(padding, str):
        return padtype_to_pads(in_shape, window, strides, padding)
    pads = [tuple(int(p) for p in pair) for pair in padding]
    if len(pads) != len(in_shape) or any(len(p) != 2 for p in pads):
        raise ValueError(f"padding needs one (low, high) pair per spatial axis; got {padding}")
    return pads


def _taps(x: Any, window: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
          first: int) -> Any:
    """(offset, strided slice of x) for each tap of the window over the axes
    from ``first`` on: the slice holds that tap's input for every output position."""
    shape = fnp.shape(x)
    spatial = shape[first:]
    out = [(n - _dilated(k, d)) // s + 1 if n >= _dilated(k, d) else 0
           for n, k, d, s in zip(spatial, window, dilation, strides)]
    for offset in itertools.product(*(range(k) for k in window)):
        start = [0] * first + [o * d for o, d in zip(offset, dilation)]
        limit = list(shape[:first]) + [st + (m - 1) * s + 1 if m else st for st, m, s in
                                       zip(start[first:], out, strides)]
        yield offset, slice(x, start, limit, [1] * first + list(strides))


def conv_general_dilated(lhs: Any, rhs: Any, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None, **_sharding: Any) -> Any:
    """XLA's convolution (a cross-correlation: the kernel is not flipped)."""
    if batch_group_count != 1:
        raise NotImplementedError("conv_general_dilated: batch_group_count > 1 is not "
                                  "supported by fastad")
    lhs, rhs = fnp.asarray(lhs), fnp.asarray(rhs)  # (array_likes, as the rest of fastad)
    dn = conv_dimension_numbers(fnp.shape(lhs), fnp.shape(rhs), dimension_numbers)
    x, w = fnp.transpose(lhs, dn.lhs_spec), fnp.transpose(rhs, dn.rhs_spec)  # N C ..., O I ...
    nsp = fnp.ndim(x) - 2
    strides = tuple(window_strides) or (1,) * nsp
    lhs_dilation = tuple(lhs_dilation or (1,) * nsp)
    rhs_dilation = tuple(rhs_dilation or (1,) * nsp)
    window = fnp.shape(w)[2:]
    groups = int(feature_group_count)
    c, o = fnp.shape(x)[1], fnp.shape(w)[0]
    if c != fnp.shape(w)[1] * groups or o % groups:
        raise ValueError(f"conv_general_dilated: input features {c} must be the kernel's "
                         f"{fnp.shape(w)[1]} times feature_group_count={groups}, which must "
                         f"divide the output features {o}")
    pads = _pads(padding, fnp.shape(x)[2:], [_dilated(k, d) for k, d in
                                            zip(window, rhs_dilation)], strides)
    x = pad(x, 0.0, [(0, 0, 0)] * 2 + [(lo, hi, d - 1) for (lo, hi), d in
                                       zip(pads, lhs_dilation)])
    letters = "abcdefghijklmnopqrstuvwxyz"[:nsp]
    parts = []
    for g in range(groups):
        xg = x[:, g * (c // groups):(g + 1) * (c // groups)]
        wg = w[g * (o // groups):(g + 1) * (o // groups)]
        total = None
        for offset, tap in _taps(xg, window, strides, rhs_dilation, 2):
            term = fnp.einsum(f"nc{letters},oc->no{letters}", tap, wg[(_ALL, _ALL) + offset])
            total = term if total is None else total + term
        parts.append(total)
    out = parts[0] if groups == 1 else fnp.concatenate(parts, axis=1)
    return _cast(fnp.transpose(out, tuple(_np.argsort(dn.out_spec))), preferred_element_type)


def conv(lhs: Any, rhs: Any, window_strides: Sequence[int], padding: str, precision: Any = None,
         preferred_element_type: Any = None) -> Any:
    return conv_general_dilated(lhs, rhs, window_strides, padding,
                                preferred_element_type=preferred_element_type)


def conv_with_general_padding(lhs: Any, rhs: Any, window_strides: Sequence[int], padding: Any,
                              lhs_dilation: Sequence[int] | None,
                              rhs_dilation: Sequence[int] | None, precision: Any = None,
                              preferred_element_type: Any = None) -> Any:
    return conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                preferred_element_type=preferred_element_type)


def _transpose_pads(k: int, s: int, padding: Any) -> tuple[int, int]:
    """The padding of a fractionally strided convolution for a forward one's
    'SAME'/'VALID' (JAX's `_conv_transpose_padding`)."""
    if padding == "SAME":
        total = k + s - 2
        before = k - 1 if s > k - 1 else -(-total // 2)
    elif padding == "VALID":
        total = k + s - 2 + max(k - s, 0)
        before = k - 1
    else:
        pads = tuple(k - p - 1 for p in padding)
        total, before = sum(pads), pads[0]
    return before, total - before


def conv_transpose(lhs: Any, rhs: Any, strides: Sequence[int], padding: Any,
                   rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                   transpose_kernel: bool = False, precision: Any = None,
                   preferred_element_type: Any = None,
                   use_consistent_padding: bool = False) -> Any:
    """The fractionally strided convolution: lhs dilated by ``strides``,
    padded as the transpose of a forward convolution with that padding (the
    kernel flipped and its channels swapped with ``transpose_kernel``)."""
    nd = fnp.ndim(lhs)
    if dimension_numbers is None:
        dimension_numbers = {2: ("NC", "IO", "NC"), 3: ("NHC", "HIO", "NHC"),
                             4: ("NHWC", "HWIO", "NHWC"), 5: ("NHWDC", "HWDIO", "NHWDC")}.get(nd)
        if dimension_numbers is None:
            raise ValueError("conv_transpose: no default dimension numbers past 5 dimensions")
    dn = conv_dimension_numbers(fnp.shape(lhs), fnp.shape(rhs), dimension_numbers)
    kernel = [fnp.shape(rhs)[a] for a in dn.rhs_spec[2:]]
    rhs_dilation = tuple(rhs_dilation or (1,) * (nd - 2))
    if use_consistent_padding or (isinstance(padding, str) and padding in ("SAME", "VALID")):
        per_axis = [padding] * len(strides) if isinstance(padding, str) else list(padding)
        pads = [_transpose_pads(_dilated(k, d), s, p)
                for k, d, s, p in zip(kernel, rhs_dilation, strides, per_axis)]
    else:
        pads = padding
    if transpose_kernel:
        rhs = fnp.flip(rhs, tuple(dn.rhs_spec[2:]))
        rhs = fnp.swapaxes(rhs, dn.rhs_spec[0], dn.rhs_spec[1])
    return conv_general_dilated(lhs, rhs, (1,) * (nd - 2), pads, tuple(strides), rhs_dilation,
                                dimension_numbers, preferred_element_type=preferred_element_type)


def reduce_window(operand: Any, init_value: Any, computation: Callable[[Any, Any], Any],
                  window_dimensions: Sequence[int], window_strides: Sequence[int] | None = None,
                  padding: Any = "VALID", base_dilation: Sequence[int] | None = None,
                  window_dilation: Sequence[int] | None = None) -> Any:
    """``computation`` over each window (pytrees of operands too), padded and
    dilated with ``init_value``: the windows' taps combined in order from the
    init value, the computation applied to whole arrays of taps (elementwise,
    as lax.add / max / min / mul and any function of scalars written with
    fastad.numpy or lax operations are)."""
    leaves, tree = pytree.flatten(operand)
    inits = pytree.flatten(init_value)[0]
    nd = fnp.ndim(leaves[0])
    window = tuple(window_dimensions)
    strides = tuple(window_strides or (1,) * nd)
    base = tuple(base_dilation or (1,) * nd)
    wdil = tuple(window_dilation or (1,) * nd)
    if not len(window) == len(strides) == len(base) == len(wdil) == nd or 0 in window:
        raise ValueError("reduce_window: window_dimensions, strides and dilations need one "
                         f"positive entry per axis of the operand of shape "
                         f"{fnp.shape(leaves[0])}")
    in_shape = [_dilated(n, b) for n, b in zip(fnp.shape(leaves[0]), base)]
    pads = _pads(padding, in_shape, [_dilated(k, d) for k, d in zip(window, wdil)], strides)
    padded = [pad(x, i, [(lo, hi, b - 1) for (lo, hi), b in zip(pads, base)])
              for x, i in zip(leaves, inits)]
    acc = None
    for per_leaf in zip(*(_taps(x, window, strides, wdil, 0) for x in padded)):
        taps = [tap for _, tap in per_leaf]
        if acc is None:
            acc = [fnp.broadcast_to(fnp.asarray(i).astype(fnp.result_type(t)), fnp.shape(t))
                   for i, t in zip(inits, taps)]
        out = computation(pytree.unflatten(tree, acc), pytree.unflatten(tree, taps))
        acc = list(pytree.flatten(out)[0])
    return pytree.unflatten(tree, acc)
