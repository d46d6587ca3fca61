"""First calls of long traced Python loops, with the time split by stage.

    python benchmarks/first_calls.py --trees /work/main,/tmp/branch [--rounds 2]
        [--only powloop-20000,rk4-2000] [--json out.json]

Each cell is a fresh interpreter that puts one tree first on ``sys.path``,
warms up the backends (a two-element gradient: loading the C extension and
Numba is not counted), then times ``fa.compile(f)`` and its first gradient
with ``backend="auto"``: wall and process CPU time, and the CPU time spent
in the user's function (tracing), in `find_recurrences` (detection), in
`reroll`/`reroll_bodies` (rerolling), in `optimize` and in building the
executable (lowering); the rest is differentiation and bookkeeping.  Trees
alternate within each round, so that load swings hit both alike; each child
also prints a digest of the gradient, so that a difference between trees
shows.  Workloads: powloop (usercode.make_powloop) and the RK4 fit as a
Python loop (usercode.make_rk4_fit) at several sizes, and loops the
tracer was not tuned on: a Lennard-Jones energy over all pairs of points,
a chained two-term logsumexp recurrence, an energy of neighbours with
``exp`` of their product (``nbr``) and a sum of a `where` per element
(``where``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as report.py does
    os.environ.pop(_name, None)


def lennard_jones(xp):
    def energy(pos):
        n = pos.shape[0] // 3
        e = 0.0
        for i in range(n):
            for j in range(i + 1, n):
                dx = pos[3 * i] - pos[3 * j]
                dy = pos[3 * i + 1] - pos[3 * j + 1]
                dz = pos[3 * i + 2] - pos[3 * j + 2]
                inv6 = 1.0 / (dx * dx + dy * dy + dz * dz) ** 3
                e = e + 4.0 * (inv6 * inv6 - inv6)
        return e
    return energy


def chained_logsumexp(xp):
    def lse(x):
        s = 0.0
        for i in range(len(x)):
            m = xp.maximum(s, x[i])
            s = m + xp.log(xp.exp(s - m) + xp.exp(x[i] - m))
        return s
    return lse


def neighbour_energy(xp):
    def energy(x):
        e = 0.0
        for i in range(len(x) - 1):
            e = e + xp.exp(-x[i] * x[i + 1]) + 0.5 * (x[i + 1] - x[i]) ** 2
        return e
    return energy


def elementwise_where(xp):
    def penalty(x):
        s = 0.0
        for i in range(len(x)):
            s = s + xp.where(x[i] > 0.0, x[i] ** 3, 0.1 * x[i])
        return s
    return penalty


def workload(name: str):
    """(function, arguments) of a workload named ``kind-size``."""
    import numpy as np
    sys.path.insert(0, HERE)
    import usercode
    kind, size = name.rsplit("-", 1)
    n = int(size)
    if kind == "powloop":
        return usercode.make_powloop(np), (np.random.default_rng(5).uniform(-1.5, 1.5, n),)
    if kind == "rk4":
        data = np.random.default_rng(4).standard_normal(n)
        return usercode.make_rk4_fit(np), (np.array([2.0, 0.3]), data)
    if kind == "lj":  # n points on a jittered grid: n (n - 1) / 2 pairs
        side = int(np.ceil(n ** (1 / 3)))
        grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
        pos = 1.1 * grid[:n] + 0.05 * np.random.default_rng(7).standard_normal((n, 3))
        return lennard_jones(np), (pos.ravel(),)
    if kind == "lse":
        return chained_logsumexp(np), (np.random.default_rng(8).standard_normal(n),)
    if kind == "nbr":
        return neighbour_energy(np), (np.random.default_rng(9).uniform(-1.0, 1.0, n),)
    if kind == "where":
        return elementwise_where(np), (np.random.default_rng(10).standard_normal(n),)
    raise SystemExit(f"unknown workload {name!r}")


def child(tree: str, name: str) -> dict:
    sys.path.insert(0, tree)
    import numpy as np

    import fastad as fa
    from fastad import specializer
    assert fastad_file_in(fa, tree), fa.__file__
    fa.compile(lambda x: (x * x).sum())(np.ones(2))  # the backends loaded
    f, args = workload(name)
    spent = {"trace": 0.0, "detection": 0.0, "reroll": 0.0, "optimize": 0.0, "lower": 0.0}

    def timed(stage, fn):
        def run(*a, **k):
            start = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[stage] += time.process_time() - start
        return run
    specializer.find_recurrences = timed("detection", specializer.find_recurrences)
    specializer.reroll = timed("reroll", specializer.reroll)
    specializer.reroll_bodies = timed("reroll", specializer.reroll_bodies)
    specializer.optimize = timed("optimize", specializer.optimize)
    specializer.Specializer._build = timed("lower", specializer.Specializer._build)

    def traced(*a):
        start = time.process_time()
        try:
            return f(*a)
        finally:
            spent["trace"] += time.process_time() - start
    wall, cpu = time.perf_counter(), time.process_time()
    g = fa.compile(traced)
    grad = g(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha1(np.ascontiguousarray(np.asarray(grad, dtype=np.float64)).tobytes())
    return {"tree": tree, "workload": name, "wall": wall, "cpu": cpu, **spent,
            "grad": digest.hexdigest()[:12]}


def fastad_file_in(fa, tree: str) -> bool:
    return os.path.realpath(fa.__file__).startswith(os.path.realpath(tree) + os.sep)


DEFAULT = "powloop-1000,powloop-20000,powloop-100000,rk4-200,rk4-2000,rk4-20000,lj-300,lse-50000"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", default=os.path.dirname(HERE))
    parser.add_argument("--only", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default="")
    parser.add_argument("--child", nargs=2, metavar=("TREE", "WORKLOAD"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    trees = args.trees.split(",")
    rows = []
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load", os.getloadavg())
    for name in args.only.split(","):
        for r in range(args.rounds):
            for tree in trees:
                with tempfile.TemporaryDirectory() as cache:
                    env = dict(os.environ, FASTAD_CACHE_DIR=cache)
                    done = subprocess.run([sys.executable, __file__, "--child", tree, name],
                                          capture_output=True, text=True, env=env, timeout=1800)
                try:
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    row = {"tree": tree, "workload": name, "error": done.stderr.strip()[-400:]}
                row["load"] = os.getloadavg()[0]
                rows.append(row)
                if "error" in row:
                    print(f"{name:>15} {tree}: {row['error']}", flush=True)
                    continue
                print(f"{name:>15} {tree:>14}  wall {row['wall']:6.2f} s  cpu {row['cpu']:6.2f} s"
                      f"  trace {row['trace']:5.2f}  reroll {row['reroll']:5.2f}  detection "
                      f"{row['detection']:5.2f}  optimize {row['optimize']:5.2f}  lower "
                      f"{row['lower']:5.2f}  grad {row['grad']}  load {row['load']:.2f}",
                      flush=True)
    print("medians:")
    for name in args.only.split(","):
        for tree in trees:
            got = [r for r in rows if r["workload"] == name and r["tree"] == tree
                   and "error" not in r]
            if got:
                med = {k: statistics.median(r[k] for r in got)
                       for k in ("wall", "cpu", "trace", "reroll", "detection", "optimize",
                                 "lower")}
                print(f"{name:>15} {tree:>14}  " + "  ".join(f"{k} {v:.2f}"
                                                          for k, v in med.items()))
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load", os.getloadavg())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
