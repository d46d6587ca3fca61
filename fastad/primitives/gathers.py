"""Gathers and scatters by traced indices: rows chosen by integer data.

``take`` and the scatters of `structural` read constant indices, fixed when a
function is traced.  An integer array passed to a compiled function is data
(`IntArrayTracer`): its values change from call to call (a minibatch's
indices, its labels), so the gathers they drive are instructions whose index
operand is a value on the tape:

  gather_rows(x, idx)             np.take(x, idx, axis=0): the rows of x that
                                  idx names, shape idx.shape + x.shape[1:]
  scatter_add_rows(acc, idx, v)   acc with v's rows added at the rows idx
                                  names, in order (np.add.at): gather_rows'
                                  transpose, repeated indices accumulating

Indices are integers held in float64 (the VM's registers are floating point,
and the integers of a data argument are exact below 2**53); a negative index
counts from the end, as in NumPy, and one out of range raises IndexError on
every backend.  Every other indexing form with traced integers reduces to
``gather_rows`` of the flattened array by a traced flat index
(`fastad.numpy._gathers`).  ``idx`` has no derivative.
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.registry import defbatch, defjvp, defprim, defreads, defshape, defvjp, registry
from ..transforms import batching
from .numpy_proxy import fnp


def _call(name, *args, **params):
    from ..core.tracer import bind
    return bind(registry[name], *args, **params)


def row_indices(idx, rows):
    """idx as int64 row numbers in [0, rows), negative ones wrapped, as NumPy
    does; IndexError for an index out of range or not an integer."""
    idx = np.asarray(idx)
    if idx.dtype.kind == "b":
        raise IndexError("a boolean array is a mask, not row indices")
    k = idx.astype(np.int64)
    if idx.dtype.kind == "f" and not np.array_equal(k, idx):
        raise IndexError("row indices must be integers")
    if k.size and (k.min() < -rows or k.max() >= rows):
        bad = k[(k < -rows) | (k >= rows)].reshape(-1)[0]
        raise IndexError(f"index {bad} is out of bounds for axis 0 with size {rows}")
    return np.where(k < 0, k + rows, k)


def _gather_rows(x, idx):
    x = np.asarray(x)
    return x[row_indices(idx, x.shape[0])]


def _scatter_add_rows(acc, idx, v):
    out = np.array(acc, copy=True)
    np.add.at(out, row_indices(idx, out.shape[0]), v)
    return out


_p = defprim("gather_rows", _gather_rows, 2)
_p.keeps_integers = True
defvjp(_p, lambda g, ans, x, idx: _call("scatter_add_rows", fnp.zeros_for(x, g), idx, g), None)
defreads(_p, (1,), ())  # the accumulating rule reads idx too
defjvp(_p, lambda t, ans, x, idx: _call("gather_rows", t, idx), None)
_p.accumulating_vjps[0] = lambda acc, g, ans, x, idx: _call("scatter_add_rows", acc, idx, g)
defshape(_p, shapes.gather_rows)
defbatch(_p, batching.gather_rows)

_p = defprim("scatter_add_rows", _scatter_add_rows, 3)
defvjp(_p, lambda g, ans, acc, idx, v: g, None,
       lambda g, ans, acc, idx, v: _call("gather_rows", g, idx))
defreads(_p, (), (), (1,))
defjvp(_p, lambda t, ans, acc, idx, v: t, None,
       lambda t, ans, acc, idx, v: _call("scatter_add_rows", fnp.zeros_for(acc, t), idx, t))
defshape(_p, shapes.scatter_add_rows)
defbatch(_p, batching.scatter_add_rows)
