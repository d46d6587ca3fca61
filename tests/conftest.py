"""Fixtures shared by the whole suite.

``backend`` runs a backend-agnostic test once on every backend this
installation has (the C VM, Numba, the NumPy reference), so a new backend or
primitive is tested everywhere at once.
"""
import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # a missing C backend is tested elsewhere
    import fastad

# The suite a user runs is reproducible: hypothesis draws the same examples on
# every machine.  FASTAD_TEST_EXPLORE=1 draws fresh random examples instead
# (with FASTAD_TEST_EXAMPLES raising the budget) to hunt for new failures.
settings.register_profile("reproducible", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("explore" if os.environ.get("FASTAD_TEST_EXPLORE") else "reproducible")

# FASTAD_TEST_BACKENDS=numpy,c restricts the run to some backends.
BACKENDS = [b for b in fastad.backends_available()
            if b in os.environ.get("FASTAD_TEST_BACKENDS", b).split(",")]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=[b for b in BACKENDS if b != "numpy"] or ["numpy"])
def compiled_backend(request):
    """The backends that compile (all of them when only the reference exists)."""
    return request.param


# -- counts printed at the end of the run ---------------------------------------------
# Fuzz and robustness tests record how much they tried (programs, payloads, calls);
# the totals are printed in the terminal summary, which `pytest -q` still shows.
COUNTS: dict[str, int] = {}
COVERED: dict[str, set] = {}


@pytest.fixture(scope="session")
def record_count():
    """``record_count(name, n)`` adds n to a printed total; with ``key=``, the
    key is added to a printed set instead (what was covered)."""
    def record(name: str, n: int = 1, key: str | None = None) -> None:
        if key is None:
            COUNTS[name] = COUNTS.get(name, 0) + n
        else:
            COVERED.setdefault(name, set()).add(key)
    return record


def pytest_terminal_summary(terminalreporter):
    if not COUNTS and not COVERED:
        return
    terminalreporter.section("fastad reliability counts")
    for name, n in COUNTS.items():
        terminalreporter.write_line(f"{name}: {n}")
    for name, keys in COVERED.items():
        if name == "fuzz primitives covered":
            from fastad.core.registry import registry
            missing = sorted(k for k, p in registry.items() if p.builtin and k not in keys)
            terminalreporter.write_line(f"{name}: {len(keys)} of "
                                        f"{sum(p.builtin for p in registry.values())}"
                                        f" (not reached: {', '.join(missing) or 'none'})")
        else:
            terminalreporter.write_line(f"{name}: {len(keys)}")
