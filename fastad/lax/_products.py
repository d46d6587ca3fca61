"""``jax.lax``'s products: ``dot_general`` (batch and contracting axes, as an
einsum), ``batch_matmul`` and ``dot``.  ``precision`` is accepted and
ignored (fastad computes in the operands' dtype); ``preferred_element_type``
casts the result."""
from __future__ import annotations

from typing import Any, Sequence


from .. import numpy as fnp

__all__ = ["dot_general", "batch_matmul", "dot", "Precision", "DotDimensionNumbers"]

DotDimensionNumbers = tuple  # ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))


class Precision:
    """JAX's precision names, accepted for their signature; fastad ignores them."""

    DEFAULT, HIGH, HIGHEST = "DEFAULT", "HIGH", "HIGHEST"


def _cast(out: Any, preferred_element_type: Any) -> Any:
    if preferred_element_type is None:
        return out
    return fnp.asarray(out).astype(preferred_element_type)


def _axes(axes: Sequence[int], nd: int, side: str) -> tuple[int, ...]:
    out = tuple(int(a) % nd if -nd <= int(a) < nd else -1 for a in axes)
    if -1 in out or len(set(out)) != len(out):
        raise ValueError(f"dot_general: {side} axes {tuple(axes)} are not distinct axes of a "
                         f"{nd}-d operand")
    return out


def dot_general(lhs: Any, rhs: Any, dimension_numbers: Any, precision: Any = None,
                preferred_element_type: Any = None, **_sharding: Any) -> Any:
    """Batch axes first, then lhs's free axes, then rhs's (JAX's order)."""
    (lc, rc), (lb, rb) = dimension_numbers
    nl, nr = fnp.ndim(lhs), fnp.ndim(rhs)
    lc, lb = _axes(lc, nl, "lhs"), _axes(lb, nl, "lhs")
    rc, rb = _axes(rc, nr, "rhs"), _axes(rb, nr, "rhs")
    if len(lc) != len(rc) or len(lb) != len(rb) or set(lc) & set(lb) or set(rc) & set(rb):
        raise ValueError(f"dot_general: dimension_numbers {dimension_numbers} need as many "
                         "contracting (and batch) axes on each side, distinct")
    ls, rs = fnp.shape(lhs), fnp.shape(rhs)
    for a, b in list(zip(lc, rc)) + list(zip(lb, rb)):
        if ls[a] != rs[b]:
            raise ValueError(f"dot_general: lhs axis {a} (size {ls[a]}) against rhs axis {b} "
                             f"(size {rs[b]})")
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    lsub = [next(letters) for _ in range(nl)]
    rsub = [next(letters) for _ in range(nr)]
    for a, b in list(zip(lc, rc)) + list(zip(lb, rb)):
        rsub[b] = lsub[a]
    out = [lsub[a] for a in lb]
    out += [lsub[a] for a in range(nl) if a not in lc and a not in lb]
    out += [rsub[b] for b in range(nr) if b not in rc and b not in rb]
    spec = f"{''.join(lsub)},{''.join(rsub)}->{''.join(out)}"
    return _cast(fnp.einsum(spec, lhs, rhs), preferred_element_type)


def batch_matmul(lhs: Any, rhs: Any, precision: Any = None) -> Any:
    if fnp.ndim(lhs) < 2 or fnp.ndim(lhs) != fnp.ndim(rhs):
        raise ValueError("batch_matmul: operands need the same rank, at least 2; got shapes "
                         f"{fnp.shape(lhs)} and {fnp.shape(rhs)}")
    if fnp.shape(lhs)[:-2] != fnp.shape(rhs)[:-2]:
        raise ValueError("batch_matmul: batch axes differ: "
                         f"{fnp.shape(lhs)} and {fnp.shape(rhs)}")
    return fnp.matmul(lhs, rhs)


def dot(lhs: Any, rhs: Any, *, dimension_numbers: Any = None, precision: Any = None,
        preferred_element_type: Any = None, **_sharding: Any) -> Any:
    """Vector . vector, matrix . vector or matrix . matrix (or ``dot_general``
    when given dimension_numbers)."""
    if dimension_numbers is not None:
        return dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)
    if not (1 <= fnp.ndim(lhs) <= 2 and 1 <= fnp.ndim(rhs) <= 2):
        raise TypeError("lax.dot takes 1-d or 2-d operands (use dot_general); got shapes "
                        f"{fnp.shape(lhs)} and {fnp.shape(rhs)}")
    return _cast(fnp.dot(lhs, rhs), preferred_element_type)


