"""What each backend runs natively, the fallback to the reference interpreter
for the rest, and the conformance table generated from both."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastad as fa
from fastad import backends
from fastad.primitives.registry import registry


def test_coverage_lists_every_primitive_for_every_backend(capsys):
    table = backends.coverage()
    assert set(table) == set(registry)
    assert all(row["numpy"] for row in table.values())
    printed = capsys.readouterr().out
    assert all(name in printed for name in table)


def test_c_coverage_is_what_lower_can_lower():
    from fastad.backends.lower import _RULES
    assert backends.native_primitives("c") == frozenset(_RULES)


@pytest.mark.parametrize("backend", [b for b in fa.backends_available() if b != "numpy"])
def test_a_primitive_the_backend_lacks_runs_on_the_reference(backend):
    @fa.primitive
    def cube(x):
        return x ** 3

    fa.defvjp(cube, lambda g, ans, x: g * 3.0 * x ** 2)

    def loss(x):
        return np.sum(np.sin(cube(x)))

    x = np.linspace(-1.0, 1.0, 5)
    g = fa.compile(loss, backend=backend)
    with pytest.warns(UserWarning, match="does not implement"):
        got = g(x)
    np.testing.assert_allclose(got, 3.0 * x ** 2 * np.cos(x ** 3), rtol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call replays, no new warning
        np.testing.assert_allclose(g(x * 0.5), fa.grad(loss)(x * 0.5), rtol=1e-14)
    assert g.cache_info()["traces"] == 1
