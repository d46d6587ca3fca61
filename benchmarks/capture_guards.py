"""Per-call cost of the guards on what a compiled gradient reads from outside
its arguments: a function with no captures, one calling two global helper
functions (their bindings guarded), one reading a closure array by reference,
one reading two entries of a global dict of 21 (every item bound).

Run in fresh processes, alternating trees, e.g.
    for r in 1 2 3; do PYTHONPATH=A python benchmarks/capture_guards.py; \
                       PYTHONPATH=B python benchmarks/capture_guards.py; done
CPU time per call (time.thread_time), median and range of 7 rounds of 20000 calls.
"""
import time
import warnings

import numpy as onp

import fastad as fa
import fastad.numpy as np

warnings.simplefilter("ignore")


def model(w, x):
    return np.tanh(x * w)


def helper(w):
    return np.sum(model(w, 0.5) ** 2)


def helpers(w):
    return helper(w) + np.sum(w)


def plain(w):
    return np.sum(np.tanh(w * 0.5) ** 2) + np.sum(w)


W = onp.linspace(0.1, 1.0, 10)
C = onp.linspace(1.0, 2.0, 10)


def closure_array(w):
    return np.sum(np.tanh(w * C) ** 2) + np.sum(w)


CFG = {f"k{i}": float(i) for i in range(20)}
CFG["scale"] = C


def dict_entries(w):
    return np.sum(np.tanh(w * CFG["scale"]) ** 2) * CFG["k3"]


def main():
    out = []
    for name, f in (("plain", plain), ("helpers", helpers), ("closure array", closure_array),
                    ("dict entries", dict_entries)):
        g = fa.compile(f)
        for _ in range(200):
            g(W)
        ts = []
        for _ in range(7):
            t = time.thread_time()
            for _ in range(20000):
                g(W)
            ts.append((time.thread_time() - t) / 20000 * 1e6)
        ts.sort()
        out.append(f"{name}: {ts[3]:.2f} us ({ts[0]:.2f}-{ts[-1]:.2f})")
    print(fa.__file__.rsplit("/fastad", 1)[0], "|", " | ".join(out))


if __name__ == "__main__":
    main()
