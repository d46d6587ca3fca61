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

settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
