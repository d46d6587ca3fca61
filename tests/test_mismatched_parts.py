"""Arrays built from traced parts raise NumPy's ValueError where the parts do
not fit together (ragged nested lists, concatenations of mismatched shapes
or ranks), never broadcast a part silently; where they fit, the values are
NumPy's.  Generated: parts of random shapes, traced or plain, through every
builder, eagerly and compiled."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from helpers import FAST

# each builder written once over a namespace: fastad.numpy's and NumPy's
BUILDERS = {
    "concatenate": lambda xp, parts, axis: xp.concatenate(parts, axis=axis),
    "stack": lambda xp, parts, axis: xp.stack(parts, axis=axis),
    "hstack": lambda xp, parts, axis: xp.hstack(parts),
    "vstack": lambda xp, parts, axis: xp.vstack(parts),
    "column_stack": lambda xp, parts, axis: xp.column_stack(parts),
    "append": lambda xp, parts, axis: xp.append(parts[0], parts[-1], axis=axis),
    "array": lambda xp, parts, axis: xp.array(parts),
    "nested": lambda xp, parts, axis: xp.array([list(p) if xp.ndim(p) else p for p in parts]),
}


@st.composite
def parts(draw):
    """Shapes that mostly fit (one base shape, one axis varying) and sometimes not."""
    rank = draw(st.integers(0, 3))
    base = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    axis = draw(st.integers(-max(rank, 1), max(rank, 1) - 1))
    shapes = []
    for _ in range(draw(st.integers(1, 4))):
        shape = list(base)
        how = draw(st.sampled_from(["same", "same", "along", "other", "rank"]))
        if how == "along" and rank:
            shape[axis] = draw(st.integers(1, 3))
        elif how == "other" and rank:
            shape[draw(st.integers(0, rank - 1))] = draw(st.integers(1, 3))
        elif how == "rank":
            shape = shape[1:] if shape and draw(st.booleans()) else shape + [1]
        shapes.append(tuple(shape))
    traced = draw(st.lists(st.booleans(), min_size=len(shapes), max_size=len(shapes)))
    return shapes, traced, axis


def _numpy_result(name, arrays, axis):
    try:
        with np.errstate(all="ignore"):
            return BUILDERS[name](np, arrays, axis), None
    except (ValueError, IndexError, np.exceptions.AxisError) as e:
        return None, e


@FAST
@given(parts(), st.sampled_from(sorted(BUILDERS)), st.integers(0, 2**16))
def test_parts_that_do_not_fit_raise_as_in_numpy(spec, name, seed):
    shapes, traced, axis = spec
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in shapes]
    flat = np.concatenate([v.ravel() for v in values] + [np.zeros(1)])
    sizes = [v.size for v in values]

    def f(x):
        arrays, start = [], 0
        for v, t, n in zip(values, traced, sizes):
            arrays.append(fnp.reshape(x[start:start + n], v.shape) if t else v)
            start += n
        return BUILDERS[name](fnp, arrays, axis)

    want, error = _numpy_result(name, values, axis)
    if error is not None:  # NumPy refuses: fastad too, eagerly and compiled
        with pytest.raises((ValueError, IndexError, np.exceptions.AxisError)):
            fa.grad(lambda x: fnp.sum(f(x)))(flat)
        with pytest.raises((ValueError, IndexError, np.exceptions.AxisError)):
            fa.jit(f)(flat)
        return
    np.testing.assert_array_equal(fa.jit(f)(flat), want)
    g = fa.grad(lambda x: fnp.sum(f(x) * np.arange(1.0, np.size(want) + 1).reshape(
        np.shape(want))))(flat)
    assert g.shape == flat.shape and np.all(np.isfinite(g))


def test_a_ragged_list_of_traced_values_raises():
    x = np.array([1.0, 2.0, 3.0])
    for f in (lambda x: fnp.sum(fnp.array([[x[0], x[1]], [x[2]]])),
              lambda x: fnp.sum(fnp.array([x[:2], x[2]]))):
        with pytest.raises(ValueError):
            fa.grad(f)(x)
        with pytest.raises(ValueError):
            fa.jit(f)(x)
    with pytest.raises(ValueError):  # a ragged pytree argument reaching a NumPy function
        fa.jit(fnp.sum)([[1.0, 2.0], [3.0]])
