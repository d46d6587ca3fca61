"""Cost of the range checks on integers taken as data (docs/design.md,
"Exactness past 2**53"): a compiled softmax-regression gradient with int64
labels used in integer arithmetic (``y * 1 + 0``, ``y % 2``), a new label
array per call; prints CPU microseconds per call and the trace count.

    python benchmarks/int_exact.py
"""
import sys, time, numpy as onp
import fastad as fa, fastad.numpy as np
rng = onp.random.default_rng(0)
n, d, k = 256, 20, 5
X = rng.normal(size=(n, d)); W = rng.normal(size=(d, k)) * 0.1
y = rng.integers(0, k, size=n)           # int64 labels
def loss(W, X, y):
    s = X @ W
    s = s - np.max(s, axis=1, keepdims=True)
    lp = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))
    idx = y * 1 + 0                        # int64 arithmetic on the labels
    return -np.sum(lp[np.arange(n), idx]) + 0.01 * np.sum((y % 2) * np.sum(W ** 2))
g = fa.compile(loss, backend="c")
for _ in range(50): g(W, X, rng.integers(0, k, size=n))
ys = [rng.integers(0, k, size=n) for _ in range(2000)]
t = time.thread_time()
for yy in ys: g(W, X, yy)
print((time.thread_time() - t) / len(ys) * 1e6, g.cache_info()["traces"])
if len(sys.argv) > 1: print(g._vg.last.tape if hasattr(g._vg, "last") and g._vg.last else "")
