"""Cost of the range checks on integers taken as data (docs/design.md,
"Exactness past 2**53"), CPU microseconds per call (time.thread_time):

- softmax: a compiled softmax-regression gradient with int64 labels used in
  integer arithmetic (``y * 1 + 0``, ``y % 2``), a new label array per call;
- det: the value and gradient of det of a 10x10 matrix (its singular test);
- fori: a compiled fori_loop of a traced int bound whose body indexes by
  ``i + 1`` (the counter's bounds make that unchecked, the loop one loop).

Prints one line per program: name, microseconds per call, traces.

    python benchmarks/int_exact.py
"""
import time

import numpy as onp

import fastad as fa
import fastad.numpy as np

rng = onp.random.default_rng(0)
n, d, k = 256, 20, 5
X = rng.normal(size=(n, d))
W = rng.normal(size=(d, k)) * 0.1


def loss(W, X, y):
    s = X @ W
    s = s - np.max(s, axis=1, keepdims=True)
    lp = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))
    idx = y * 1 + 0                        # int64 arithmetic on the labels
    return -np.sum(lp[np.arange(n), idx]) + 0.01 * np.sum((y % 2) * np.sum(W ** 2))


def timed(call, args, calls):
    for a in args[:20]:
        call(*a)
    t = time.thread_time()
    for i in range(calls):
        call(*args[i % len(args)])
    return (time.thread_time() - t) / calls * 1e6


g = fa.compile(loss, backend="c")
ys = [(W, X, rng.integers(0, k, size=n)) for _ in range(2000)]
print("softmax", timed(g, ys, 2000), g.cache_info()["traces"])

det = fa.compile(lambda a: np.linalg.det(a), backend="c")
mats = [(rng.normal(size=(10, 10)),) for _ in range(100)]
print("det", timed(det.value_and_grad, mats, 5000), det.cache_info()["traces"])

x = rng.normal(size=65)
fori = fa.jit(lambda x, m: fa.fori_loop(0, m, lambda i, c: c * 0.5 + x[i + 1], 0.0),
              backend="c")
counts = [(x, int(m)) for m in rng.integers(1, 64, size=100)]
print("fori", timed(fori, counts, 5000), fori.cache_info()["traces"])
