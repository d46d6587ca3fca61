"""Per-call cost of compiled gradients through products: `prod` (whose
partials are the products of the other factors, `prod_others`), `cumprod`
(a scan), a stick-breaking transform, and `hypot`/`logaddexp`, whose rules
handle (0, 0) and equal infinities.  Inputs hold no zero: this is the price
of the rules that stay finite at zeros, paid where there are none.

Run in fresh processes, alternating trees, e.g.
    for r in 1 2; do PYTHONPATH=A python benchmarks/products_at_zeros.py; \
                     PYTHONPATH=B python benchmarks/products_at_zeros.py; done
CPU time per call (time.thread_time), median of 7 rounds of 0.05 s, in µs.
"""
import time
import warnings

import numpy as onp

import fastad as fa
import fastad.numpy as np

warnings.simplefilter("ignore")
rng = onp.random.default_rng(0)
CASES = {
    "prod rows 100x50": (lambda x: np.sum(np.log(np.abs(np.prod(x, axis=1)))),
                         rng.uniform(0.5, 1.5, (100, 50))),
    "prod axis 0 50x100": (lambda x: np.sum(np.prod(x, axis=0)), rng.uniform(0.9, 1.1, (50, 100))),
    "prod of 1000": (lambda x: np.log(np.abs(np.prod(x))), rng.uniform(0.9, 1.1, 1000)),
    "cumprod 1000": (lambda x: np.sum(np.cumprod(x) ** 2), rng.uniform(0.9, 1.1, 1000)),
    "stick-breaking 200": (lambda v: np.sum(np.log(v * np.concatenate(
        [np.ones(1), np.cumprod(1 - v)[:-1]]))), rng.uniform(0.1, 0.9, 200)),
    "hypot 10^4": (lambda x: np.sum(np.hypot(x, 2 * x + 1)), rng.normal(size=10000)),
    "logaddexp 10^4": (lambda x: np.sum(np.logaddexp(x, 0.5 * x)), rng.normal(size=10000)),
}


def per_call(g, x, rounds=7):
    times = []
    for _ in range(rounds):
        n, t = 0, time.thread_time()
        while time.thread_time() - t < 0.05:
            g(x)
            n += 1
        times.append((time.thread_time() - t) / n * 1e6)
    return sorted(times)[rounds // 2]


if __name__ == "__main__":
    print(fa.__file__)
    for name, (f, x) in CASES.items():
        row = []
        for backend in ("c", "numba"):
            if backend in fa.backends_available():
                g = fa.compile(f, backend=backend)
                g(x)
                row.append(f"{backend} {per_call(g, x):.1f}")
        row.append(f"eager {per_call(fa.grad(f), x, 5):.1f}")
        print(f"{name}: " + ", ".join(row))
