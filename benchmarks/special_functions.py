"""Gradients of losses written with scipy.special's functions, compiled on
both backends: a logistic loss with expit against the same loss written
as 1/(1+exp(-z)), and sum(gammaln(exp(X @ w) + 1)), at n = 50 and 5000
rows.  (The erf row's gradient does not read erf itself, only its
derivative.)  Results: benchmarks/README.md, "scipy.special's functions
compiled natively".

    python benchmarks/special_functions.py
"""
import numpy as onp, timeit, warnings
warnings.simplefilter("ignore")
import fastad as fa, fastad.numpy as np, fastad.scipy.special as sp
rng = onp.random.default_rng(0)
for n in (50, 5000):
    X = rng.standard_normal((n, 20)); y = rng.integers(0, 2, n).astype(float); w = rng.standard_normal(20)*0.1
    def f1(w, X, y):
        p = sp.expit(X @ w)
        return -np.mean(y*np.log(p) + (1-y)*np.log1p(-p))
    def f2(w, X, y):
        z = X @ w
        p = 1/(1+np.exp(-z))
        return -np.mean(y*np.log(p) + (1-y)*np.log1p(-p))
    def f3(w, X, y):
        return np.sum(sp.gammaln(np.exp(X @ w) + 1.0))
    def f4(w, X, y):
        return np.sum(sp.erf(X @ w))
    for name, f in [("expit", f1), ("by hand", f2), ("gammaln", f3), ("erf", f4)]:
        for b in ("c", "numba"):
            g = fa.compile(f, backend=b); g(w, X, y)
            t = min(timeit.repeat(lambda: g(w, X, y), number=200, repeat=5))/200
            print(n, name, b, f"{t*1e6:.1f} us")
