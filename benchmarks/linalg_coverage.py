"""Which linear-algebra functions compile natively on each backend.

For each of cholesky, solve_triangular, solve, inv, det/slogdet, eigh, svd,
qr and lstsq, in float32 and float64, unbatched and batched over one and two
leading axes: the tapes of its value, gradient and a JVP, and for each
compiled backend whether any instruction of them would be a host call
(`fastad.backends.unsupported`, the list the fallback warning prints).  With
``--run``, each is also compiled and called, the fallback warnings counted,
and the results compared with the eager ones.

    python benchmarks/linalg_coverage.py [--run] [--backends c,numba] [--only eigh]
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

# the checkout this script is in, not whichever fastad is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastad as fa  # noqa: E402
import fastad.scipy.linalg as fla  # noqa: E402
from fastad import backends  # noqa: E402


def _spd(rng, shape):
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    w = 1.0 + 0.7 * np.arange(shape[-1]) + rng.uniform(0, 0.2, shape[:-2] + (shape[-1],))
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


N = 4
# name -> (loss of one array, the input's domain); sign-invariant in the vectors
FUNCTIONS = {
    "cholesky": lambda a: np.sum(np.linalg.cholesky(a) ** 2),
    "solve_triangular": lambda a: np.sum(fla.solve_triangular(
        a, np.ones(a.shape[:-1] + (2,)), lower=True) ** 2),
    "solve": lambda a: np.sum(np.linalg.solve(a, np.ones(a.shape[:-1] + (2,))) ** 2),
    "inv": lambda a: np.sum(np.linalg.inv(a) ** 2),
    "det": lambda a: np.sum(np.linalg.det(a)),
    "slogdet": lambda a: np.sum(np.linalg.slogdet(a)[1]),
    "eigh": lambda a: np.sum(np.linalg.eigh(a)[0] ** 2) + np.sum(np.linalg.eigh(a)[1] ** 4),
    "svd": lambda a: np.sum(np.linalg.svd(a)[1] ** 2) + np.sum(np.linalg.svd(a)[0] ** 4),
    "qr": lambda a: np.sum(np.linalg.qr(a)[1] ** 2) + np.sum(np.linalg.qr(a)[0] ** 4),
    "lstsq": lambda a: np.sum(np.linalg.lstsq(a, np.ones(a.shape[-2]))[0] ** 2),
}
BATCHES = [(), (2,), (2, 3)]
DTYPES = [np.float64, np.float32]


def _unbatched_only(name):
    return name == "lstsq"  # numpy.linalg.lstsq takes one matrix


def _modes(f):
    """value, gradient and a JVP, as functions of (a, t)."""
    return {"value": lambda a, t: f(a),
            "grad": lambda a, t: fa.grad(f)(a),
            "jvp": lambda a, t: fa.jvp(f, (a,), (t,))[1]}


def _inputs(dtype, batch):
    rng = np.random.default_rng(len(batch))
    a = _spd(rng, batch + (N, N)).astype(dtype)
    t = rng.standard_normal(a.shape).astype(dtype)
    return a, t + np.swapaxes(t, -1, -2)


def static(compiled):
    """(function, dtype, batch, mode, backend) -> what the backend would host-call."""
    gaps = {}
    for name, f in FUNCTIONS.items():
        for dtype in DTYPES:
            for batch in BATCHES[:1] if _unbatched_only(name) else BATCHES:
                a, t = _inputs(dtype, batch)
                for mode, g in _modes(f).items():
                    tape = fa.make_tape(g)(a, t)
                    for b in compiled:
                        missing = backends.unsupported(backends.get(b), tape)
                        if missing:
                            gaps[name, np.dtype(dtype).name, batch, mode, b] = missing
    return gaps


def run(compiled):
    """Compile and call each; (key) -> (fallback warnings, max relative error)."""
    out = {}
    for name, f in FUNCTIONS.items():
        for dtype in DTYPES:
            for batch in BATCHES[:1] if _unbatched_only(name) else BATCHES:
                a, t = _inputs(dtype, batch)
                for b in compiled:
                    def all_modes(a, t):
                        return tuple(g(a, t) for g in _modes(f).values())
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        got = fa.jit(all_modes, backend=b)(a, t)
                    want = all_modes(a, t)
                    err = max(float(np.max(np.abs(np.asarray(x, np.float64) - w)
                                           / np.maximum(1.0, np.abs(w))))
                              for x, w in zip(got, want))
                    fallback = [str(w.message)[:100] for w in caught
                                if issubclass(w.category, UserWarning)]
                    out[name, np.dtype(dtype).name, batch, b] = (fallback, err)
                    print(name, np.dtype(dtype).name, batch, b,
                          "host calls" if fallback else "native", f"err {err:.1e}",
                          *fallback, flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--backends", default=",".join(b for b in backends.available()
                                                        if b != "numpy"))
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    if args.only:
        for name in list(FUNCTIONS):
            if name not in args.only.split(","):
                del FUNCTIONS[name]
    compiled = args.backends.split(",")
    gaps = static(compiled)
    for key, missing in gaps.items():
        print("host call:", *key, "->", ", ".join(missing))
    if not gaps:
        print("no host call in any value, gradient or JVP tape on", ", ".join(compiled))
    if args.run:
        run(compiled)


if __name__ == "__main__":
    main()
