"""The installation under test is the one CI meant to build."""
import os

import pytest

import fastad


@pytest.mark.skipif(os.environ.get("FASTAD_CI_CONFIG") != "c",
                    reason="only CI's C-extension configuration promises the extension")
def test_c_extension_is_built_and_imported():
    assert "c" in fastad.backends_available()
    assert fastad.backends_available()[0] == "c"


@pytest.mark.skipif(os.environ.get("FASTAD_CI_CONFIG") != "no-ext",
                    reason="only CI's FASTAD_NO_EXT configuration promises its absence")
def test_no_extension_configuration_falls_back_to_numba():
    assert "c" not in fastad.backends_available()
    assert fastad.backends_available()[0] == "numba"
