"""Python loops that neither rerolling nor the first pass of recurrence
detection took: a running sum other terms read (``c = c + i; s = s +
x[i] * c``, c from an argument), and a sum of terms whose per-step constant
is not affine in the step (``s + sin(x[i]) * (k + (i * i) % 7)``, k an
integer argument).  First call (CPU time: trace, compile, first result)
and time per compiled gradient on both backends, T = 2,000 steps; run it
with each tree on PYTHONPATH to compare trees.  Results: benchmarks/README.md,
"Loops rerolling leaves".

    PYTHONPATH=. python benchmarks/parallel_recurrences.py [T]
"""
import sys
import time
import timeit
import warnings

import numpy as onp

import fastad as fa
import fastad.numpy as np

warnings.simplefilter("ignore")
T = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


def running_sum(x, k):
    c, s = 1.0 * k, 0.0
    for i in range(T):
        c = c + i
        s = s + x[i] * c
    return s


def uneven_constants(x, k):
    s = 0.0
    for i in range(T):
        s = s + np.sin(x[i]) * (k + (i * i) % 7)
    return s


x = onp.linspace(0.0, 1.0, T)
for fn in (running_sum, uneven_constants):
    for backend in ("c", "numba"):
        start = time.process_time()
        g = fa.compile(fn, backend=backend)
        got = g(x, 3)
        first = time.process_time() - start
        per_call = min(timeit.repeat(lambda: g(x, 3), number=50, repeat=5)) / 50
        ok = onp.allclose(got, fa.grad(fn)(x, 3), rtol=1e-12)
        print(f"{fn.__name__:17s} {backend:6s} T={T}  first {first:6.2f} s  "
              f"per gradient {per_call * 1e6:7.1f} us  stages {g.tape.stages}  "
              f"{'ok' if ok else 'WRONG'}")
