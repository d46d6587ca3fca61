"""autograd's own test suite run over fastad: how much code written for
autograd runs unchanged, eagerly and through ``fastad.jit``.

``python benchmarks/autograd_suite.py [--version 1.7.0] [--keep DIR]``
downloads autograd's source distribution with pip (``pip download
--no-binary``), copies its ``tests/`` into a scratch directory with a
``conftest.py`` that makes ``autograd``, ``autograd.numpy``,
``autograd.scipy.*``, ``autograd.test_util``, ... fastad's modules, and runs
pytest twice: as written (eager), then with ``check_grads`` given
``fastad.jit(f)`` in place of ``f`` (every derivative check through a
compiled function).  ``autograd.tracer``, ``autograd.core`` and
``autograd.wrap_util`` are `fastad.tracer` and `fastad.wrap_util` (the
names user code imports from them); a test file that imports autograd's
vector spaces cannot be collected and is counted apart.  Prints each run's counts and failures.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

CONFTEST = '''
import importlib, os, sys
import fastad
MODULES = {
    "autograd": "fastad", "autograd.numpy": "fastad.numpy",
    "autograd.numpy.linalg": "fastad.numpy.linalg", "autograd.numpy.fft": "fastad.numpy.fft",
    "autograd.numpy.random": "fastad.numpy.random", "autograd.scipy": "fastad.scipy",
    "autograd.scipy.special": "fastad.scipy.special", "autograd.scipy.stats": "fastad.scipy.stats",
    "autograd.scipy.linalg": "fastad.scipy.linalg", "autograd.scipy.signal": "fastad.scipy.signal",
    "autograd.scipy.integrate": "fastad.scipy.integrate",
    "autograd.scipy.misc": "fastad.scipy.special", "autograd.test_util": "fastad.test_util",
    "autograd.misc": "fastad.misc", "autograd.misc.optimizers": "fastad.misc.optimizers",
    "autograd.misc.flatten": "fastad.misc.flatten", "autograd.builtins": "fastad.builtins",
    "autograd.misc.fixed_points": "fastad.misc.fixed_points",
    "autograd.extend": "fastad.extend",
    "autograd.differential_operators": "fastad.differential_operators",
    "autograd.tracer": "fastad.tracer", "autograd.core": "fastad.tracer",
    "autograd.wrap_util": "fastad.wrap_util", "autograd.util": "fastad.util",
}
for name in ("norm", "multivariate_normal", "t", "gamma", "beta", "poisson", "dirichlet", "chi2"):
    MODULES["autograd.scipy.stats." + name] = "fastad.scipy.stats." + name
for theirs, ours in MODULES.items():
    sys.modules[theirs] = importlib.import_module(ours)
if os.environ.get("FASTAD_SUITE_JIT"):
    import fastad.test_util as test_util
    eager_check = test_util.check_grads
    test_util.check_grads = lambda f, *a, **k: eager_check(fastad.jit(f), *a, **k)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="1.7.0", help="autograd's version")
    parser.add_argument("--keep", help="a directory to keep the tests in (else a temporary one)")
    args = parser.parse_args()
    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="autograd_suite_"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--no-binary", ":all:", f"autograd=={args.version}", "-d", str(work)],
                   check=True)
    archive = next(work.glob(f"autograd-{args.version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    tests = work / "tests"
    shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(work / f"autograd-{args.version}" / "tests", tests)
    (tests / "conftest.py").write_text(CONFTEST)
    for label, env in (("eager", {}), ("through fastad.jit", {"FASTAD_SUITE_JIT": "1"})):
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                              "-p", "no:cacheprovider", "--continue-on-collection-errors",
                              "-W", "ignore", "tests"], cwd=work, capture_output=True,
                             text=True, env={**__import__("os").environ, **env})
        lines = run.stdout.strip().splitlines()
        print(f"## autograd {args.version}'s tests over fastad, {label}: {lines[-1]}")
        for line in lines:
            if line.startswith(("FAILED", "ERROR")):
                print("  " + line[:140])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
