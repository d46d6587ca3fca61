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


def test_the_source_distribution_carries_every_file_the_extension_build_reads():
    """Every file under csrc/ that git tracks, and the Cython sources, is listed by
    MANIFEST.in, so `pip install` from an sdist builds the C extension."""
    import fnmatch
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or not (root / "MANIFEST.in").exists():
        pytest.skip("not a source checkout")
    tracked = subprocess.run(["git", "ls-files", "csrc", "fastad/backends/_vm.pyx",
                              "fastad/core/_tracing.pyx",
                              "fastad/backends/*.pxi"], cwd=root,
                             capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("git not available")
    rules = [line.split() for line in (root / "MANIFEST.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def listed(path):
        for rule in rules:
            if rule[0] == "include" and path in rule[1:]:
                return True
            if rule[0] == "recursive-include" and path.startswith(rule[1] + "/") \
                    and any(fnmatch.fnmatch(path.rsplit("/", 1)[1], p) for p in rule[2:]):
                return True
        return False
    assert [p for p in tracked if not listed(p)] == []
