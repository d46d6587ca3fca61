"""Guards: Python control flow on traced values.

``bool()`` of a traced value returns the concrete outcome and records a
``guard`` instruction holding the predicate and that outcome.  A compiled
replay checks every guard; one that disagrees means the recorded path is not
the path this input takes, and nothing from that replay is used.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .registry import registry


def record_guard(t: Any) -> bool:
    from .tracer import bind
    value = t.value
    if np.size(value) != 1:
        raise ValueError(f"the truth value of a traced array of shape {np.shape(value)} is "
                         "ambiguous; use .any() or .all(), or fastad.numpy.where to stay "
                         "branch-free")
    outcome = bool(np.asarray(value).reshape(()))
    pred = t if t.dtype == np.bool_ else t != 0
    if np.ndim(pred.value) != 0:  # one element of any shape
        pred = bind(registry["reshape"], pred, shape=())
    bind(registry["guard"], pred, expected=outcome)
    return outcome
