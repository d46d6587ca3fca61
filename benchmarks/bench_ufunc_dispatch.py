"""Eager grad of 300 sin/exp steps and fastad.numpy.sin on a plain array (thread CPU time, min of 25):
the cost of the elementwise functions' check for small integers taken as data."""
import sys, time
import numpy as onp
import fastad as fa, fastad.numpy as np
def f(x):
    for _ in range(300):
        x = np.sin(x) + np.exp(-x) * 0.5
    return np.sum(x)
x = onp.linspace(0, 1, 8)
g = fa.grad(f)
g(x)
best = []
for _ in range(25):
    t = time.thread_time(); g(x); best.append(time.thread_time() - t)
# plain arrays through fastad.numpy (eager, no trace)
pl = []
for _ in range(25):
    t = time.thread_time()
    y = x
    for _ in range(3000): y = np.sin(y)
    pl.append(time.thread_time() - t)
label = sys.argv[1] if len(sys.argv) > 1 else "fastad"
print(f"{label} grad_trace_ms {min(best)*1e3:.2f} plain_sin_us {min(pl)/3000*1e6:.3f}")
