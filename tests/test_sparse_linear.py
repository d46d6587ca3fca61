"""The products of sparse derivatives folded as linear combinations
(`fastad.sparse.linear.fold`): on the fuzz generator's programs and on a
banded objective, the folded tape evaluates to the unfolded one's values to
rounding in all three modes (H v, J v, u^T J), is a valid tape, and never
has more instructions depending on the seed."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastad.core.tracer import replay
from fastad.sparse import derivatives, linear
from test_fuzz import programs
from test_sparse import SPARSE_FUZZ, fuzz_hessian_case

MODES = ("hvp", "fwd", "rev")


def _per_seed(tape):
    return linear.per_seed(tape, tape.inputs[-1])


def _unfolded(monkeypatch, f, x, mode):
    trace = derivatives._trace(f, 0, (x,), {})
    with monkeypatch.context() as mp:
        mp.setattr(linear, "fold", lambda tape: tape)
        return derivatives._transformed(trace, mode)


def _check(tape, inputs, at, seed):
    folded = linear.fold(tape)
    folded.validate()
    assert _per_seed(folded) <= _per_seed(tape)
    aval = tape.avals[tape.inputs[-1]]
    v = np.random.default_rng(seed).standard_normal(aval.shape).astype(aval.dtype)
    want = np.asarray(replay(tape, inputs + [v])[at])
    got = np.asarray(replay(folded, inputs + [v])[at])
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * scale)
    return folded


@settings(SPARSE_FUZZ, max_examples=max(SPARSE_FUZZ.max_examples // 5, 5))
@given(prog=programs(max_steps=5), seed=st.integers(0, 2 ** 32 - 1))
def test_folding_keeps_the_values_of_random_programs(prog, seed):
    loss, x, _ = fuzz_hessian_case(prog)
    with pytest.MonkeyPatch.context() as mp:
        for mode in MODES:
            _check(*_unfolded(mp, loss, x, mode), seed)


def banded(x):
    """Broyden's banded residuals squared, by shifted slices of a padded
    array, and a square root (whose tangent divides by a seed-free value)."""
    n = x.size
    padded = np.concatenate([np.zeros(2), x * (1.0 + x), np.zeros(1)])
    near = padded[:n] + padded[1:n + 1] + padded[3:n + 3]
    return np.sum((x * (2.0 + 5.0 * x ** 2) + 1.0 - near) ** 2) + np.sum(np.sqrt(1.0 + x ** 2))


@pytest.mark.parametrize("mode", MODES)
def test_folding_shortens_the_per_seed_part_of_a_banded_objective(monkeypatch, mode):
    """The tangent of x (1 + x) is v (1 + x) + x v: one product per seed once
    folded, with the coefficient seed-free."""
    x = np.random.default_rng(3).uniform(-1, 1, 12)
    tape, inputs, at = _unfolded(monkeypatch, banded, x, mode)
    assert _per_seed(_check(tape, inputs, at, 0)) < _per_seed(tape)
