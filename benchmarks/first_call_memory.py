"""Peak resident memory of a gradient's first call, fastad against autograd.

Each measurement runs in a fresh process (peak resident memory is per
process): import, make x, take the gradient once, report the peak.  fastad's
first call traces, differentiates, optimizes, lowers and runs; autograd's
(optional: skipped when not installed) records and sweeps.

    python benchmarks/first_call_memory.py            # n = 10^7
    python benchmarks/first_call_memory.py --n 1e8 --engines c
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

FUNCTIONS = {
    "rosenbrock": "xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)",
    "sin_poly": "xp.sum(xp.sin(x) * x ** 2)",
    "tanh_gauss": "xp.sum((xp.tanh(x) * xp.exp(-x * x)) ** 2) + xp.sum(xp.log1p(x * x))",
    "strided": "xp.sum(x[::2] * x[1::2]) + xp.sum(xp.sin(x[::3]))",
    "where_max": "xp.sum(xp.where(x > 0, x * x, xp.sin(x))) + xp.sum(xp.maximum(x, 0.1) ** 2)",
}

RUNNER = """
import json, resource, sys, time, warnings
import numpy as np
engine, n, body = sys.argv[1], int(float(sys.argv[2])), sys.argv[3]
if engine == "autograd":
    import autograd, autograd.numpy as xp
else:
    warnings.simplefilter("ignore")
    import fastad as fa
    xp = np
f = eval("lambda x: " + body, {"xp": xp})
x = np.linspace(-1.0, 1.0, n)
start = time.perf_counter()
if engine == "autograd":
    autograd.grad(f)(x)
elif engine == "eager":
    fa.grad(f)(x)
else:
    fa.compile(f, backend=engine)(x)
seconds = time.perf_counter() - start
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "x": x.nbytes, "seconds": seconds}))
"""


def measure(engine: str, n: int, body: str) -> dict | None:
    done = subprocess.run([sys.executable, "-c", RUNNER, engine, str(n), body],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--engines", default="autograd,eager,c,numba")
    args = parser.parse_args()
    n = int(args.n)
    engines = args.engines.split(",")
    print(f"first-call peak resident memory, n = {n:.0e} (x: {8 * n / 2**20:.0f} MiB)")
    print(f"{'function':<12}" + "".join(f"{e:>18}" for e in engines))
    for name, body in FUNCTIONS.items():
        cells = []
        for engine in engines:
            m = measure(engine, n, body)
            cells.append("failed" if m is None else
                         f"{m['peak'] / 2**20:.0f} MiB {m['seconds']:.1f} s")
        print(f"{name:<12}" + "".join(f"{c:>18}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
