"""What each backend runs natively, the fallback to the reference interpreter
for the rest, and the conformance table generated from both."""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest
import scipy.special as sc

import fastad as fa
from fastad import backends
from fastad.core.registry import registry


def test_coverage_lists_every_primitive_for_every_backend(capsys):
    table = backends.coverage()
    assert set(table) == set(registry)
    assert all(row["numpy"] for row in table.values())
    printed = capsys.readouterr().out
    assert all(name in printed for name in table)


@pytest.mark.parametrize("backend", [b for b in fa.backends_available() if b != "numpy"])
def test_a_primitive_the_backend_lacks_runs_as_a_host_call(backend):
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
    assert "host call: " in str(g.program)
    np.testing.assert_allclose(got, 3.0 * x ** 2 * np.cos(x ** 3), rtol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call replays, no new warning
        np.testing.assert_allclose(g(x * 0.5), fa.grad(loss)(x * 0.5), rtol=1e-14)
    assert g.cache_info()["traces"] == 1


def test_the_conformance_table_in_the_docs_is_up_to_date():
    from fastad import conformance
    path = pathlib.Path(__file__).parent.parent / "docs" / "conformance.md"
    table = conformance.table()
    assert "| no |" not in table  # every row traces and differentiates in both modes
    expected = conformance.HEADER + table + "\n"
    assert path.read_text() == expected, (
        "docs/conformance.md is out of date: run python -m fastad.conformance > docs/conformance.md")


def _mixed(x):
    """Native work on both sides of host calls, and a guard after them."""
    y = np.sin(x) * x + 1.0
    z = sc.erfcx(np.exp(y)) * y
    if np.sum(z) > 0:  # a guard in the last compiled segment
        return np.sum(np.sort(z) * np.cos(z))
    return np.sum(z ** 2)


@pytest.mark.parametrize("backend", [b for b in fa.backends_available() if b != "numpy"])
def test_host_calls_between_compiled_segments(backend):
    x = np.linspace(0.1, 2.0, 9)
    with pytest.warns(UserWarning, match="host calls"):
        g = fa.compile(_mixed, backend=backend)
        got = g.value_and_grad(x)
    steps = g.cache_info()
    want = fa.value_and_grad(_mixed)(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    listing = str(g.program)
    assert "host call: erfcx" in listing and "host call: argsort" in listing
    assert listing.count("host call") < 12  # the rest runs compiled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flipped = g.value_and_grad(-3.0 - x)  # the guard now disagrees: traced again
        again = fa.loads(fa.dumps(g)).value_and_grad(x)
    np.testing.assert_allclose(flipped[1], fa.grad(_mixed)(-3.0 - x), rtol=1e-12)
    np.testing.assert_allclose(again[1], want[1], rtol=1e-12)
    assert g.cache_info()["traces"] == steps["traces"] + 1
