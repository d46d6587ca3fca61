"""Collectives over a vmapped axis (``vmap(f, axis_name="i")`` with
``lax.psum(x, "i")``): what one example computes from every example's value.

vmap records ``f`` on one example and replays the tape batched
(`transforms.batching`), so a collective is an instruction of that tape
whose batching rule is where the examples meet:

  psum(x)          the sum over the examples; every example gets it
  all_gather(x)    every example's x, stacked along a new leading axis
  psum_scatter(x)  row k of the sum over the examples, for example k
                   (x's leading axis has one row per example)

Each is the other's transpose as in JAX: psum's VJP is psum, all_gather's
is psum_scatter and psum_scatter's all_gather, and each is linear, so its
JVP is itself.  ``vmap(grad(f))`` of an ``f`` with a psum therefore gives,
as JAX does, the gradient of the sum of the examples' results.  The rest of
``fastad.lax``'s collectives (pmean, pmax, ppermute, all_to_all, ...) are
these three, `axis_index` and ordinary operations.

While vmap records, an instruction's value is that of its one example, and
the examples' values are not known yet: a collective's recorded value is
the one it would have if every example were that example (``psum(x)`` is
``x * size``).  Only Python control flow on it could read that stand-in, and
vmap refuses such a branch when it replays (`batching.check_collective_guard`).
Replayed for its own axis, a collective becomes a reduction or a
relabeling of the batch axis; replayed for another axis (a vmap nested in
the one that names it), it is recorded again for the enclosing vmap.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ..core.registry import defbatch, defjvp, defprim, defshape, defvjp, registry
from .numpy_proxy import fnp


class _Axes(threading.local):
    """The vmapped axes named while their vmap records its function, innermost
    last: (name, size, the traced index of the example)."""

    def __init__(self) -> None:
        self.bound: list[tuple[Any, int, Any]] = []
        self.replaying: list[Any] = []  # the axis name of each vmap replaying, innermost last


_axes = _Axes()


@contextmanager
def binding_axis(name: Any, size: int, index: Any) -> Iterator[None]:
    """Name a vmapped axis while vmap records its function on one example."""
    _axes.bound.append((name, size, index))
    try:
        yield
    finally:
        _axes.bound.pop()


@contextmanager
def replaying_axis(name: Any) -> Iterator[None]:
    """The axis vmap replays its tape along (None: an unnamed vmap)."""
    _axes.replaying.append(name)
    try:
        yield
    finally:
        _axes.replaying.pop()


def bound_axis(name: Any) -> tuple[int, Any]:
    """(size, traced example index) of the innermost vmapped axis called
    ``name``; NameError, as JAX raises, when no enclosing vmap names it."""
    for bound, size, index in reversed(_axes.bound):
        if bound == name:
            return size, index
    raise NameError(f"unbound axis name: {name!r} (name the axis with "
                    f"vmap(f, axis_name={name!r}) around the call)")


def _recording(impl):
    """``impl`` (a collective's stand-in value), refused outside the recording
    of the vmap naming its axis: run anywhere else (a tape with a collective
    left in it, compiled), the stand-in would be taken for the result."""
    def stand_in(x, axis_name, axis_size):
        if not any(name == axis_name for name, _, _ in _axes.bound):
            raise RuntimeError(f"a collective over the vmapped axis {axis_name!r} was run "
                               "outside the vmap that names it")
        return impl(np.asarray(x), axis_size)
    return stand_in


_psum = _recording(lambda x, n: x * n)
_stacked = _recording(lambda x, n: np.array(np.broadcast_to(x, (n,) + x.shape)))
_scattered = _recording(lambda x, n: x[0] * n)


def _call(name, x, **params):
    from ..core.tracer import bind
    return bind(registry[name], x, **params)


def _declare(name, impl, shape_rule, transpose, doc):
    p = defprim(name, impl, 1, doc=doc, cost="reduction")
    p.axis_collective = True
    p.keeps_integers = True
    defshape(p, shape_rule)
    defvjp(p, lambda g, ans, x, **params: _call(transpose, g, **params))
    defjvp(p, lambda t, ans, x, **params: _call(name, t, **params))
    return p


def _check_rows(x, axis_name, axis_size):
    if not x or x[0] != axis_size:
        raise ValueError(f"psum_scatter over axis {axis_name!r} of {axis_size} examples needs "
                         f"a leading axis of {axis_size}; got shape {tuple(x)}")
    return tuple(x[1:])


_declare("psum", _psum,
         lambda x, **params: tuple(x), "psum",
         "the sum over the examples of a vmapped axis (lax.psum)")
_declare("all_gather", _stacked, lambda x, axis_name, axis_size: (axis_size,) + tuple(x),
         "psum_scatter", "every example's value, stacked (lax.all_gather)")
_declare("psum_scatter", _scattered, _check_rows, "all_gather",
         "row k of the sum over the examples, for example k (lax.psum_scatter)")


def _replay(prim, args, shapes, params, size):
    """A collective replayed on (value, batched) operands: resolved when the
    vmap replaying names its axis, else recorded again for the enclosing vmap
    that does (its operand keeps this vmap's batch axis in front).  Returns
    a (value, batched) pair: a psum or all_gather is the same for every
    example."""
    (x, batched), = args
    name = params["axis_name"]
    if not _axes.replaying or _axes.replaying[-1] != name:
        if not batched:
            return _call(prim.name, x, **params), False
        if prim.name == "psum_scatter":  # the outer axis's rows first
            return _call(prim.name, fnp.moveaxis(x, 1, 0), **params), True
        out = _call(prim.name, x, **params)
        if prim.name == "all_gather":  # (outer size, this size, ...) -> (this size, outer, ...)
            out = fnp.moveaxis(out, 0, 1)
        return out, True
    example = tuple(shapes[0])
    if prim.name == "psum":
        return (fnp.sum(x, axis=0) if batched else x * float(size)), False
    if prim.name == "all_gather":
        return (x if batched else fnp.broadcast_to(x, (size,) + example)), False
    # psum_scatter: example k's row k of the sum, that is the sum's rows in order
    return (fnp.sum(x, axis=0) if batched else x * float(size)), True


for _name in ("psum", "all_gather", "psum_scatter"):
    defbatch(registry[_name], _replay)
