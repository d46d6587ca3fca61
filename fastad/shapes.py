"""Shape rules: the shape each builtin primitive produces from its operands.

Tracing never needs these (NumPy computes every value, shapes included);
they check tapes that were not traced here.  A tape loaded from bytes
declares a shape for every slot, and lowering plans memory from those
declarations, so a hostile tape whose ``sin`` declares 10^6 outputs for 3
inputs would make compiled code read past its operand.  `check_shapes`
refuses such a tape before any backend sees it.

Each rule takes the operands' shapes, the instruction's parameters and the
values of constant operands (index arrays), and returns the output shape or
raises ValueError.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .core.errors import TapeError
from .primitives import special
from .primitives.fft import NORMS
from .primitives.loops import shape_rule as _loop
from .core.registry import Primitive, check_table, registry
from .core.registry import prims as P

Shape = tuple[int, ...]


def _same(x: Shape) -> Shape:
    return x


def _astype(x: Shape, dtype: str) -> Shape:
    if not isinstance(dtype, str):  # what tracing records; NumPy never parses a saved structure
        raise ValueError(f"cast to {dtype!r}, not a dtype name")
    if np.dtype(dtype).kind not in "fcbiu":
        raise ValueError(f"cast to {dtype}")
    return x


def _broadcast(*shapes: Shape) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


def _axes(x: Shape, axes: Any) -> set[int]:
    axes = tuple(axes)
    if len(set(axes)) != len(axes) or not all(isinstance(a, (int, np.integer)) and 0 <= a < len(x)
                                              for a in axes):
        raise ValueError(f"axes {axes} for {len(x)} dimensions")
    return set(axes)


def _reduce(x: Shape, axes: Any, keepdims: bool) -> Shape:
    reduced = _axes(x, axes)
    return tuple(1 if i in reduced else d for i, d in enumerate(x)
                 if keepdims or i not in reduced)


def _cumsum(x: Shape, axis: int, reverse: bool) -> Shape:
    _axes(x, (axis,))
    return x


def _reshape(x: Shape, shape: Any) -> Shape:
    shape = tuple(shape)
    if math.prod(x) != math.prod(shape):
        raise ValueError(f"cannot reshape {x} into {shape}")
    return shape


def _transpose(x: Shape, perm: Any) -> Shape:
    if sorted(perm) != list(range(len(x))):
        raise ValueError(f"{perm} is not a permutation of {len(x)} axes")
    return tuple(x[p] for p in perm)


def _broadcast_to(x: Shape, shape: Any) -> Shape:
    shape = tuple(shape)
    if tuple(np.broadcast_shapes(x, shape)) != shape:
        raise ValueError(f"cannot broadcast {x} to {shape}")
    return shape


def _indices(x: Shape, idx: Shape, index: Any) -> None:
    """A gather or scatter index: constant integers inside x."""
    size = math.prod(x)
    index = np.asarray(index) if index is not None else None
    if index is None or index.dtype.kind not in "iu" or index.shape != idx:
        raise ValueError("the index must be a constant integer array")
    if index.size and (index.min() < -size or index.max() >= size):
        raise ValueError(f"index out of range for {size} elements")


def _take(x: Shape, idx: Shape, consts: tuple) -> Shape:
    _indices(x, idx, consts[1])
    return idx


def _scatter(x: Shape, idx: Shape, v: Shape, consts: tuple) -> Shape:
    _indices(x, idx, consts[1])
    if tuple(np.broadcast_shapes(v, idx)) != idx:  # values broadcast to the indices
        raise ValueError(f"values of shape {v} for indices of shape {idx}")
    return x


def _matrices(a: Shape, b: Shape, square: bool) -> None:
    if len(a) < 2 or len(b) < 2 or a[:-2] != b[:-2] or a[-1] != b[-2]:
        raise ValueError(f"operands {a} and {b} do not align")
    if square and a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")


def _matmul(a: Shape, b: Shape) -> Shape:
    _matrices(a, b, square=False)
    return a[:-1] + b[-1:]


def _solve(a: Shape, b: Shape) -> Shape:
    _matrices(a, b, square=True)
    return b


def _determinant(a: Shape) -> Shape:
    if len(a) < 2 or a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")
    return a[:-2]


def _fft(x: Shape, axes: Any, inverse: bool, norm: str) -> Shape:
    _axes(x, axes)
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}")
    return x


def _guard(pred: Shape, expected: bool) -> Shape:
    return ()


# -- special functions, orderings and decompositions --
def _same_with_params(x: Shape, **params: Any) -> Shape:
    return x


def _broadcast_with_params(*shapes: Shape) -> Shape:
    return _broadcast(*shapes)


def _along(x: Shape, axis: int, **params: Any) -> Shape:
    _axes(x, (axis,))
    return x


def _partition(x: Shape, kth: Any, axis: int) -> Shape:
    _axes(x, (axis,))
    if not all(isinstance(k, (int, np.integer)) and 0 <= k < x[axis] for k in kth):
        raise ValueError(f"kth {kth} for an axis of {x[axis]}")
    return x


def _indices_along(x: Shape, idx: Shape, axis: int) -> None:
    _axes(x, (axis,))
    if len(idx) != len(x) or any(a != b for i, (a, b) in enumerate(zip(x, idx)) if i != axis):
        raise ValueError(f"indices of shape {idx} along axis {axis} of {x}")


def _take_along(x: Shape, idx: Shape, axis: int) -> Shape:
    _indices_along(x, idx, axis)
    return idx


def _scatter_add_along(x: Shape, idx: Shape, v: Shape, axis: int) -> Shape:
    _indices_along(x, idx, axis)
    if v != idx:
        raise ValueError(f"values of shape {v} for indices of shape {idx}")
    return x


def _interp(x: Shape, xp: Shape, fp: Shape, **params: Any) -> Shape:
    if len(xp) != 1 or xp != fp or not xp[0]:
        raise ValueError(f"tables of shapes {xp} and {fp}")
    return x


def _square(a: Shape) -> tuple[Shape, int]:
    if len(a) < 2 or a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")
    return a[:-2], a[-1]


def _factor(a: Shape, **params: Any) -> Shape:
    _square(a)
    return a


def _eigen(a: Shape, **params: Any) -> Shape:
    batch, n = _square(a)
    return batch + (n + 1, n)


def _svd(a: Shape) -> Shape:
    if len(a) < 2:
        raise ValueError(f"{a} is not a matrix")
    m, n = a[-2:]
    return a[:-2] + (1 + m + n, min(m, n))


def _qr(a: Shape) -> Shape:
    if len(a) < 2 or a[-2] < a[-1]:
        raise ValueError(f"{a} is not a matrix with at least as many rows as columns")
    return a[:-2] + (a[-2] + a[-1], a[-1])


def _pinv(a: Shape) -> Shape:
    if len(a) < 2:
        raise ValueError(f"{a} is not a matrix")
    return a[:-2] + (a[-1], a[-2])


def _solve_triangular(a: Shape, b: Shape, lower: bool) -> Shape:
    batch, n = _square(a)
    if len(b) < 2 or b[-2] != n:
        raise ValueError(f"operands {a} and {b} do not align")
    return _broadcast(batch, b[:-2]) + b[-2:]


def _triangular_matmul(a: Shape, b: Shape, lower: bool, trans: bool) -> Shape:
    return _solve_triangular(a, b, lower)


def _sylvester(a: Shape, b: Shape, q: Shape) -> Shape:
    (batch_a, n), (batch_b, m) = _square(a), _square(b)
    if len(q) < 2 or q[-2:] != (n, m):
        raise ValueError(f"right-hand side {q} for {a} and {b}")
    return _broadcast(batch_a, batch_b, q[:-2]) + (n, m)


def _elementwise(prim: Primitive) -> Callable[..., Shape]:
    """The shape rule of an elementwise primitive (`Primitive.elementwise`):
    one operand's shape, or the operands' broadcast; only the special
    functions take parameters (orders)."""
    if prim.name in special.ELEMENTWISE:
        return _same_with_params if prim.nargs == 1 else _broadcast_with_params
    return _same if prim.nargs == 1 else _broadcast


# primitive -> rule; rules of primitives in TAKES_CONSTS also receive the
# constant operands.  Every builtin primitive has one (tests/test_primitive_tables.py).
RULES: dict[Primitive, Callable[..., Shape]] = check_table({
    **{p: _elementwise(p) for p in registry.values() if p.builtin and p.elementwise},
    P.astype: _astype,
    P.sum: _reduce, P.prod: _reduce, P.max: _reduce, P.min: _reduce, P.cumsum: _cumsum,
    P.reshape: _reshape, P.transpose: _transpose, P.broadcast_to: _broadcast_to,
    P.take: _take, P.scatter_set: _scatter, P.scatter_add: _scatter,
    P.matmul: _matmul, P.solve: _solve, P.logabsdet: _determinant, P.detsign: _determinant,
    P.fft: _fft, P.guard: _guard,
    P.argsort: _along, P.cumprod: _along, P.argpartition: _partition,
    P.take_along: _take_along, P.scatter_add_along: _scatter_add_along,
    P.interp: _interp, P.interp_slope: _interp,
    P.cholesky: _factor, P.sqrtm: _factor, P.eigh: _eigen, P.eig: _eigen, P.svd: _svd,
    P.loop: _loop, P.qr: _qr, P.pinv: _pinv, P.solve_triangular: _solve_triangular,
    P.triangular_matmul: _triangular_matmul, P.sylvester: _sylvester,
}, "shapes.RULES")
TAKES_CONSTS = check_table({P.take, P.scatter_set, P.scatter_add}, "shapes.TAKES_CONSTS")


def check_shapes(tape: Any) -> None:
    """Raise TapeError if an instruction's declared output shape is not the
    one its primitive computes from its operands (user primitives aside)."""
    for k, ins in enumerate(tape.instrs):
        prim = registry[ins.prim]
        rule = RULES.get(prim)
        if rule is None:
            if prim.builtin:
                raise TapeError(f"instruction {k}: no shape rule for {ins.prim!r}")
            continue
        shapes = [tuple(tape.avals[s].shape) for s in ins.ins]
        extra = {"consts": tuple(tape.consts.get(s) for s in ins.ins)} \
            if prim in TAKES_CONSTS else {}
        try:
            expected = rule(*shapes, **dict(ins.params), **extra)
        except (ValueError, TypeError) as exc:
            raise TapeError(f"instruction {k} ({ins.prim}) has invalid operands or "
                            f"parameters: {exc}") from None
        if tuple(expected) != tuple(tape.avals[ins.out].shape):
            raise TapeError(f"instruction {k} ({ins.prim}) declares shape "
                            f"{tape.avals[ins.out].shape}, but its operands give {expected}")
