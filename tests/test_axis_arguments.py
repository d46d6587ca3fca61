"""Axis arguments as NumPy takes them, on traced values: every function
with an axis gets valid axes (negative, tuples), axes out of range and
axes named twice, lists, and 0-d and 1-d arrays; where NumPy raises, a traced call raises too (never an
axis wrapped around modulo the dimensions), and where it computes, the
values and shapes are NumPy's."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa

FUNCTIONS = {
    "sum": lambda x, ax: np.sum(x, axis=ax),
    "mean": lambda x, ax: np.mean(x, axis=ax),
    "max": lambda x, ax: np.max(x, axis=ax),
    "std": lambda x, ax: np.std(x, axis=ax),
    "prod": lambda x, ax: np.prod(x, axis=ax),
    "logsumexp_like": lambda x, ax: np.log(np.sum(np.exp(x), axis=ax)),
    "cumsum": lambda x, ax: np.cumsum(x, axis=ax),
    "sort": lambda x, ax: np.sort(x, axis=ax),
    "argmax": lambda x, ax: np.argmax(x, axis=ax),
    "flip": lambda x, ax: np.flip(x, axis=ax),
    "roll": lambda x, ax: np.roll(x, 1, axis=ax),
    "diff": lambda x, ax: np.diff(x, axis=ax),
    "expand_dims": lambda x, ax: np.expand_dims(x, ax),
    "stack": lambda x, ax: np.stack([x, 2 * x], axis=ax),
    "concatenate": lambda x, ax: np.concatenate([x, x], axis=ax),
    "moveaxis": lambda x, ax: np.moveaxis(x, ax, 0),
    "swapaxes": lambda x, ax: np.swapaxes(x, ax, 0),
    "take": lambda x, ax: np.take(x, [0, 1], axis=ax),
    "tensordot": lambda x, ax: np.tensordot(x, x, axes=([ax], [ax])),
    "add.reduce": lambda x, ax: np.add.reduce(x, axis=ax),
    "maximum.accumulate": lambda x, ax: np.maximum.accumulate(x, axis=ax),
    "apply_along_axis": lambda x, ax: np.apply_along_axis(np.sum, ax, x),
    "squeeze": lambda x, ax: np.squeeze(x[:1], axis=ax),
    "norm": lambda x, ax: np.linalg.norm(x, axis=ax),
    "var": lambda x, ax: np.var(x, axis=ax),
    "min": lambda x, ax: np.min(x, axis=ax),
    "any": lambda x, ax: np.any(x > 1.0, axis=ax),
    "median": lambda x, ax: np.median(x, axis=ax),
    "quantile": lambda x, ax: np.quantile(x, 0.3, axis=ax),
    "nanmedian": lambda x, ax: np.nanmedian(x, axis=ax),
    "nanmean": lambda x, ax: np.nanmean(x, axis=ax),
    "average": lambda x, ax: np.average(x, axis=ax),
}
# (lists: NumPy's reductions written as ufuncs refuse them, median takes them)
AXES = [0, 1, 2, -1, -2, -3, -4, 3, 5, (0, 1), (0, 0), (1, -2), (-1, 0), [0], [0, -1]]
SHAPES = [(2, 3, 2), (3,), ()]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_axes_as_numpy_takes_them(name, shape):
    f = FUNCTIONS[name]
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=shape)
    for ax in AXES:
        try:
            want, refused = f(x, ax), None
        except Exception as exc:
            want, refused = None, exc
        traced = fa.jit(lambda v: f(v, ax))
        if refused is not None:
            with pytest.raises((ValueError, IndexError, TypeError)):
                traced(x)
            continue
        got = traced(x)
        assert np.shape(got) == np.shape(want), (name, ax)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{name} axis={ax}")
