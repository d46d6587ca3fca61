"""The C VM's thread pool: what a compiled call costs in wall time, in the
process's CPU time, and in the CPU time of the pool's worker thread alone
(its polling between jobs), for checkouts side by side.

    python benchmarks/pool.py --trees /work/main,/tmp/branch [--rounds 3] [--only w2-1e5,GP-n1000]

Each (tree, workload) runs in a fresh process, trees alternating within a
round; the C extension must be built in each tree.  Workloads:

  w2-1e5, w2-1e6     W2's vectorized Rosenbrock gradient called in a loop
                     (one fused job per call, a few us apart)
  powloop-n100000    the user-code rerolled loop with integer powers (untuned)
  GP-n200, GP-n1000  the user-code GP likelihood: fused jobs on n x n arrays
                     between host calls (Cholesky, triangular solves)
  sparse-<name>      the sparse Hessian of benchmarks/sparse_derivatives.py's
                     workload <name> at n = 10^5 (broyden, rods, landau, ...)
  mlp-784            a jitted SGD step of a 784-256-256-10 ReLU network's
                     cross-entropy on a batch of 128 (JAX's MNIST example's
                     shape, narrower): BLAS products between fused jobs

Per line: medians over the rounds of wall, process CPU and worker CPU per call
(worker: the threads the first compiled calls started, read from
/proc/self/task/*/schedstat, so Linux only).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CALLS = {"w2-1e5": 3000, "w2-1e6": 300, "powloop-n100000": 3000, "GP-n200": 40,
         "GP-n1000": 4, "mlp-784": 100}
SPARSE_CALLS = 40


def _make_call(name: str):
    """The timed call of workload ``name``, in the tree first on sys.path."""
    import numpy as np
    import fastad as fa
    if name.startswith("w2-"):
        from workloads import rosenbrock_workload
        w = rosenbrock_workload(int(float(name[3:])))
        g = fa.compile(w.f, argnums=0, backend="c")
        return lambda: g(*w.args)
    if name == "mlp-784":
        return _mlp_call(np, fa)
    if name.startswith("sparse-"):
        import sparse_derivatives as sd
        f, _ = sd.WORKLOADS[name[len("sparse-"):]]
        n = sd.SIZES.get(name[len("sparse-"):], lambda n: n)(100_000)
        x = np.random.default_rng(0).uniform(-1, 1, n)
        g = fa.compile(f, backend="c")
        return lambda: g.hessian(x, sparse=True)
    import usercode
    w = usercode.BUILDERS[name]()
    g = fa.compile(w.f, argnums=0, backend="c")
    return lambda: g(*w.args)


def _mlp_call(np, fa):
    rng = np.random.default_rng(0)
    sizes = [784, 256, 256, 10]
    params = [a for m, n in zip(sizes, sizes[1:])
              for a in (rng.standard_normal((m, n)) / np.sqrt(m), np.zeros(n))]
    x, y = rng.standard_normal((128, 784)), np.eye(10)[rng.integers(0, 10, 128)]

    def loss(params, x, y):
        h = x
        for k in range(0, len(params) - 2, 2):
            h = np.maximum(h @ params[k] + params[k + 1], 0.0)
        z = h @ params[-2] + params[-1]
        z = z - np.max(z, axis=1, keepdims=True)
        return -np.mean(np.sum(y * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))), 1))
    # a jitted SGD step, as a training loop runs: the update of the 200,000
    # weights is fused jobs over the pool between the products
    step = fa.jit(lambda p, x, y: [a - 0.01 * b for a, b in zip(p, fa.grad(loss)(p, x, y))],
                  backend="c")
    return lambda: step(params, x, y)


def _thread_cpu_us() -> dict[str, float]:
    out = {}
    for t in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{t}/schedstat") as f:
            out[t] = int(f.read().split()[0]) / 1e3
    return out


def child(tree: str, name: str) -> None:
    sys.path[:0] = [tree, os.path.join(tree, "benchmarks")]
    import numpy as np
    import scipy.linalg
    import fastad as fa
    assert fa.__file__.startswith(tree), fa.__file__
    # BLAS and LAPACK threads start before the threads counted as the pool's
    a = np.random.default_rng(0).standard_normal((300, 300))
    scipy.linalg.solve_triangular(np.linalg.cholesky(a @ a.T + 300 * np.eye(300)), a[0])
    before = set(_thread_cpu_us())
    call = _make_call(name)
    for _ in range(5):
        call()
    pool = set(_thread_cpu_us()) - before
    n = CALLS.get(name, SPARSE_CALLS)
    start, wall, cpu = _thread_cpu_us(), time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    end = _thread_cpu_us()
    worker = sum(end[t] - start[t] for t in pool if t in end)
    print(f"{wall / n * 1e6:.1f} {cpu / n * 1e6:.1f} {worker / n:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", required=True, help="comma-separated checkouts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(list(CALLS) + ["sparse-broyden", "sparse-rods"]))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    trees, names = args.trees.split(","), args.only.split(",")
    print(f"# VM pool, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f}; us per call, medians of "
          f"{args.rounds} rounds [range]")
    got = {}
    for _ in range(args.rounds):
        for name in names:
            for tree in trees:
                out = subprocess.run([sys.executable, __file__, "--trees", tree, "--child", tree,
                                      name], capture_output=True, text=True, check=True).stdout
                got.setdefault((name, tree), []).append([float(v) for v in out.split()])
    for (name, tree), rows in got.items():
        cols = list(zip(*rows))
        text = "  ".join(f"{what} {statistics.median(c):9.1f} [{min(c):.1f}-{max(c):.1f}]"
                         for what, c in zip(("wall", "cpu", "worker"), cols))
        print(f"{name:16s} {tree:20s} {text}")
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
