"""Shape rules: the shape each builtin primitive produces from its operands.

Tracing never needs these (NumPy computes every value, shapes included);
they check tapes that were not traced here.  A tape loaded from bytes
declares a shape for every slot, and lowering plans memory from those
declarations, so a hostile tape whose ``sin`` declares 10^6 outputs for 3
inputs would make compiled code read past its operand.  `check_shapes`
refuses such a tape before any backend sees it.

Each rule takes the operands' shapes, the instruction's parameters and the
values of constant operands (index arrays), and returns the output shape or
raises ValueError.  A rule is a trait of its primitive
(`Primitive.shape_rule`), set by `defshape` in the primitive's family module
(fastad/primitives/) next to its derivative rules; this module holds the
rules families share and `check_shapes`, and imports only the core.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .core.errors import TapeError
from .core.registry import Primitive, TraitTable, registry

Shape = tuple[int, ...]


def same(x: Shape) -> Shape:
    return x


def astype(x: Shape, dtype: str) -> Shape:
    if not isinstance(dtype, str):  # what tracing records; NumPy never parses a saved structure
        raise ValueError(f"cast to {dtype!r}, not a dtype name")
    if np.dtype(dtype).kind not in "fcbiu":
        raise ValueError(f"cast to {dtype}")
    return x


def broadcast(*shapes: Shape) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


def check_axes(x: Shape, axes: Any) -> set[int]:
    axes = tuple(axes)
    if len(set(axes)) != len(axes) or not all(isinstance(a, (int, np.integer)) and 0 <= a < len(x)
                                              for a in axes):
        raise ValueError(f"axes {axes} for {len(x)} dimensions")
    return set(axes)


def reduce(x: Shape, axes: Any, keepdims: bool) -> Shape:
    reduced = check_axes(x, axes)
    return tuple(1 if i in reduced else d for i, d in enumerate(x)
                 if keepdims or i not in reduced)


def cumsum(x: Shape, axis: int, reverse: bool) -> Shape:
    check_axes(x, (axis,))
    return x


def reshape(x: Shape, shape: Any) -> Shape:
    shape = tuple(shape)
    if math.prod(x) != math.prod(shape):
        raise ValueError(f"cannot reshape {x} into {shape}")
    return shape


def transpose(x: Shape, perm: Any) -> Shape:
    if sorted(perm) != list(range(len(x))):
        raise ValueError(f"{perm} is not a permutation of {len(x)} axes")
    return tuple(x[p] for p in perm)


def broadcast_to(x: Shape, shape: Any) -> Shape:
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


def take(x: Shape, idx: Shape, consts: tuple) -> Shape:
    _indices(x, idx, consts[1])
    return idx


def scatter(x: Shape, idx: Shape, v: Shape, consts: tuple) -> Shape:
    _indices(x, idx, consts[1])
    if tuple(np.broadcast_shapes(v, idx)) != idx:  # values broadcast to the indices
        raise ValueError(f"values of shape {v} for indices of shape {idx}")
    return x


def _matrices(a: Shape, b: Shape, square: bool) -> None:
    if len(a) < 2 or len(b) < 2 or a[:-2] != b[:-2] or a[-1] != b[-2]:
        raise ValueError(f"operands {a} and {b} do not align")
    if square and a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")


def matmul(a: Shape, b: Shape) -> Shape:
    _matrices(a, b, square=False)
    return a[:-1] + b[-1:]


def gram(x: Shape, trans: bool) -> Shape:
    if len(x) < 2:
        raise ValueError(f"{x} is not a matrix")
    n = x[-2] if trans else x[-1]
    return x[:-2] + (n, n)


def solve(a: Shape, b: Shape) -> Shape:
    _matrices(a, b, square=True)
    return b


def determinant(a: Shape) -> Shape:
    if len(a) < 2 or a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")
    return a[:-2]


def guard(pred: Shape, expected: bool) -> Shape:
    return ()


# -- special functions, orderings and decompositions --
def same_with_params(x: Shape, **params: Any) -> Shape:
    return x


def broadcast_with_params(*shapes: Shape) -> Shape:
    return broadcast(*shapes)


def along(x: Shape, axis: int, **params: Any) -> Shape:
    check_axes(x, (axis,))
    return x


def partition(x: Shape, kth: Any, axis: int) -> Shape:
    check_axes(x, (axis,))
    if not all(isinstance(k, (int, np.integer)) and 0 <= k < x[axis] for k in kth):
        raise ValueError(f"kth {kth} for an axis of {x[axis]}")
    return x


def _indices_along(x: Shape, idx: Shape, axis: int) -> None:
    check_axes(x, (axis,))
    if len(idx) != len(x) or any(a != b for i, (a, b) in enumerate(zip(x, idx)) if i != axis):
        raise ValueError(f"indices of shape {idx} along axis {axis} of {x}")


def gather_rows(x: Shape, idx: Shape) -> Shape:
    if not x:
        raise ValueError("gathering rows of a 0-d value")
    return idx + x[1:]


def scatter_add_rows(acc: Shape, idx: Shape, v: Shape) -> Shape:
    if not acc or v != idx + acc[1:]:
        raise ValueError(f"rows of shape {v} for indices of shape {idx} into {acc}")
    return acc


def take_along(x: Shape, idx: Shape, axis: int) -> Shape:
    _indices_along(x, idx, axis)
    return idx


def scatter_add_along(x: Shape, idx: Shape, v: Shape, axis: int) -> Shape:
    _indices_along(x, idx, axis)
    if v != idx:
        raise ValueError(f"values of shape {v} for indices of shape {idx}")
    return x


def interp(x: Shape, xp: Shape, fp: Shape, **params: Any) -> Shape:
    if len(xp) != 1 or xp != fp or not xp[0]:
        raise ValueError(f"tables of shapes {xp} and {fp}")
    return x


def interp_scatter(g: Shape, x: Shape, xp: Shape, *, size: int, **params: Any) -> Shape:
    if g != x or len(xp) != 1 or xp[0] != size:
        raise ValueError(f"cotangent {g} for points {x} and a table of {xp}")
    return (size,)


def _square(a: Shape) -> tuple[Shape, int]:
    if len(a) < 2 or a[-1] != a[-2]:
        raise ValueError(f"{a} is not square")
    return a[:-2], a[-1]


def factor(a: Shape, **params: Any) -> Shape:
    _square(a)
    return a


def eigen(a: Shape, **params: Any) -> Shape:
    batch, n = _square(a)
    return batch + (n + 1, n)


def svd(a: Shape) -> Shape:
    if len(a) < 2:
        raise ValueError(f"{a} is not a matrix")
    m, n = a[-2:]
    return a[:-2] + (1 + m + n, min(m, n))


def qr(a: Shape) -> Shape:
    if len(a) < 2 or a[-2] < a[-1]:
        raise ValueError(f"{a} is not a matrix with at least as many rows as columns")
    return a[:-2] + (a[-2] + a[-1], a[-1])


def pinv(a: Shape) -> Shape:
    if len(a) < 2:
        raise ValueError(f"{a} is not a matrix")
    return a[:-2] + (a[-1], a[-2])


def solve_triangular(a: Shape, b: Shape, lower: bool) -> Shape:
    batch, n = _square(a)
    if len(b) < 2 or b[-2] != n:
        raise ValueError(f"operands {a} and {b} do not align")
    return broadcast(batch, b[:-2]) + b[-2:]


def triangular_matmul(a: Shape, b: Shape, lower: bool, trans: bool) -> Shape:
    return solve_triangular(a, b, lower)


def sylvester(a: Shape, b: Shape, q: Shape) -> Shape:
    (batch_a, n), (batch_b, m) = _square(a), _square(b)
    if len(q) < 2 or q[-2:] != (n, m):
        raise ValueError(f"right-hand side {q} for {a} and {b}")
    return broadcast(batch_a, batch_b, q[:-2]) + (n, m)


def elementwise(prim: Primitive, *, params: bool = False) -> Callable[..., Shape]:
    """The shape rule every elementwise primitive (`Primitive.elementwise`)
    shares: one operand's shape, or the operands' broadcast; with ``params``
    (the special functions' orders), keyword parameters are accepted."""
    if params:
        return same_with_params if prim.nargs == 1 else broadcast_with_params
    return same if prim.nargs == 1 else broadcast


# The rules as one table (primitive -> `Primitive.shape_rule`), a view of the
# traits.  Every builtin primitive has one (tests/test_primitive_tables.py).
RULES = TraitTable("shape_rule")


def check_shapes(tape: Any) -> None:
    """Raise TapeError if an instruction's declared output shape is not the
    one its primitive computes from its operands (user primitives aside)."""
    for k, ins in enumerate(tape.instrs):
        prim = registry[ins.prim]
        rule = prim.shape_rule
        if rule is None:
            if prim.builtin:
                raise TapeError(f"instruction {k}: no shape rule for {ins.prim!r}")
            continue
        shapes = [tuple(tape.avals[s].shape) for s in ins.ins]
        extra = {"consts": tuple(tape.consts.get(s) for s in ins.ins)} \
            if prim.shape_consts else {}
        try:
            expected = rule(*shapes, **dict(ins.params), **extra)
        except (ValueError, TypeError) as exc:
            raise TapeError(f"instruction {k} ({ins.prim}) has invalid operands or "
                            f"parameters: {exc}") from None
        if tuple(expected) != tuple(tape.avals[ins.out].shape):
            raise TapeError(f"instruction {k} ({ins.prim}) declares shape "
                            f"{tape.avals[ins.out].shape}, but its operands give {expected}")
