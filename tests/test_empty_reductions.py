"""Reductions of arrays with no elements (an empty axis, or no rows) give
NumPy's results, shapes and dtypes, eager and compiled: NaN medians, True
``all``, False ``any``, 0 sums, 1 products, NaN means.

Generated cases: shapes with a zero-length axis, every axis and ``None``,
``keepdims``, float64 and float32.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp

from conftest import BACKENDS

REDUCTIONS = ["median", "nanmedian", "all", "any", "sum", "prod", "mean", "nanmean", "nansum",
              "var", "std", "nanvar", "max", "argmax"]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(REDUCTIONS),
       shape=st.sampled_from([(0,), (3, 0), (0, 2), (2, 0, 3), (0, 0)]),
       dtype=st.sampled_from([np.float64, np.float32]), keepdims=st.booleans(),
       backend=st.sampled_from(BACKENDS), data=st.data())
def test_reductions_of_empty_arrays(name, shape, dtype, keepdims, backend, data):
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))), label="axis")
    kwargs = {"axis": axis, "keepdims": keepdims}
    x = np.zeros(shape, dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            ref = getattr(np, name)(x, **kwargs)
        except Exception as e:  # NumPy's own refusal (average over nothing): the same
            for call in (lambda: getattr(fnp, name)(x, **kwargs),
                         lambda: fa.jit(lambda v: getattr(fnp, name)(v, **kwargs))(x)):
                with pytest.raises(type(e)):
                    call()
            return
        eager = getattr(fnp, name)(x, **kwargs)
        compiled = fa.jit(lambda v: getattr(fnp, name)(v, **kwargs), backend=backend)(x)
    for got in (eager, compiled):
        assert np.shape(got) == np.shape(ref)
        assert np.asarray(got).dtype == np.asarray(ref).dtype
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("name", ["median", "nanmedian"])
def test_median_of_no_elements_is_nan_under_jit(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(fa.jit(getattr(fnp, name))(np.zeros(0)))
