"""Nested while loops compiled: first calls and traces.

    python benchmarks/nested_loops.py --trees /work/main,/tmp/branch [--rounds 2]
        [--only nested-c,bfgs-c] [--calls 3] [--timeout 600]

Each cell is a fresh interpreter with one tree first on ``sys.path`` and a
fresh ``FASTAD_CACHE_DIR``; it calls ``fa.jit(f, backend=...)`` (or, for the
``-grad`` cases, ``fa.compile(sum f)``'s gradient) on ``--calls`` inputs,
ones(n) times 1, 2, 3, ..., and prints each call's wall time, the number of
traces after the calls, and whether every value equals eager's.  Trees
alternate within each round.  Workloads:

* ``nested``: issue 22's report, an outer `while_loop` on sum(|x|) > 1e-3
  and an integer counter k < 50 whose body runs an inner `while_loop` of 3
  steps (its own integer counter) scaling x by 0.9;
* ``descent``: a `while_loop` of 5 steps (integer counter) whose body calls
  ``fa.value_and_grad`` (x <- x - 0.1 grad sum(sin(x)^2));
* ``bfgs``: BFGS on the extended Rosenbrock function of 4 variables as nested
  while loops: iterations while |g| > 1e-8 and k < 100, each with a
  backtracking Armijo line search (a while loop halving the step, at most
  30 times); counters are integers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = ("nested-c", "nested-numpy", "descent-c", "bfgs-c", "bfgs-numpy", "bfgs-grad-c")


def workloads(fa, fnp, while_loop):
    def nested(x):
        def cond(s):
            return fnp.logical_and(fnp.sum(fnp.abs(s[0])) > 1e-3, s[1] < 50)

        def body(s):
            y, _ = while_loop(lambda t: t[1] < 3, lambda t: (t[0] * 0.9, t[1] + 1), (s[0], 0))
            return y, s[1] + 1
        return while_loop(cond, body, (x, 0))[0]

    def descent(x):
        def body(s):
            _, g = fa.value_and_grad(lambda y: fnp.sum(fnp.sin(y) ** 2))(s[0])
            return s[0] - 0.1 * g, s[1] + 1
        return while_loop(lambda s: s[1] < 5, body, (x, 0))[0]

    def rosen(x):
        return fnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def bfgs(x0):
        value_and_grad = fa.value_and_grad(rosen)
        n = x0.shape[0]
        f0, g0 = value_and_grad(x0)

        def going(s):
            return fnp.logical_and(fnp.sqrt(fnp.sum(s[2] ** 2)) > 1e-8, s[4] < 100)

        def iteration(s):
            x, f, g, h, k = s
            p = -(h @ g)
            slope = fnp.sum(g * p)

            def armijo_fails(t):
                fa_ = rosen(x + t[0] * p)
                return fnp.logical_and(fa_ > f + 1e-4 * t[0] * slope, t[1] < 30)
            step, _ = while_loop(armijo_fails, lambda t: (t[0] * 0.5, t[1] + 1), (1.0, 0))
            x1 = x + step * p
            f1, g1 = value_and_grad(x1)
            sv, yv = x1 - x, g1 - g
            sy = fnp.sum(sv * yv)
            rho = fnp.where(sy > 1e-12, 1.0 / fnp.where(sy > 1e-12, sy, 1.0), 0.0)
            eye = fnp.eye(n)
            a = eye - rho * fnp.outer(sv, yv)
            h1 = a @ h @ a.T + rho * fnp.outer(sv, sv)
            return x1, f1, g1, h1, k + 1
        return while_loop(going, iteration, (x0, f0, g0, fnp.eye(n), 0))[0]

    return {"nested": (nested, 3), "descent": (descent, 3), "bfgs": (bfgs, 4)}


def child(tree: str, case: str, calls: int) -> dict:
    sys.path.insert(0, tree)
    import numpy as np
    import fastad as fa
    import fastad.numpy as fnp
    from fastad.loops import while_loop
    assert fa.__file__.startswith(tree), fa.__file__
    fa.grad(lambda x: fnp.sum(fnp.sin(x)))(np.ones(2))  # warm-up: loading, not timed
    name, backend = case.split("-", 1)
    grad = backend.startswith("grad-")
    backend = backend.removeprefix("grad-")
    f, n = workloads(fa, fnp, while_loop)[name]
    if grad:
        compiled = fa.compile(lambda x: fnp.sum(f(x)), backend=backend)
        eager = fa.grad(lambda x: fnp.sum(f(x)))
        spec = compiled._vg
    else:
        compiled = fa.jit(f, backend=backend)
        eager = f
        spec = compiled._spec
    times, same, diff = [], True, 0.0
    for k in range(calls):
        x = np.ones(n) * (1.0 + k) if name != "bfgs" else \
            np.array([-1.2, 1.0, -0.8, 1.1])[:n] * (1.0 + 0.1 * k)
        t = time.perf_counter()
        got = compiled(x)
        times.append(time.perf_counter() - t)
        want = eager(x)
        same &= bool(np.allclose(got, want, rtol=1e-10, atol=1e-12))
        diff = max(diff, float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300)))
    # (the gradient of a converged BFGS run is rounding noise, amplified by the
    # iterations: the C VM's and eager rounding differ there, see the README)
    return {"times": times, "traces": spec.traces, "same": same, "diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", default="/work/main")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.calls)))
        return
    trees = args.trees.split(",")
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load", os.getloadavg())
    results: dict = {}
    for r in range(args.rounds):
        for case in args.only.split(","):
            for tree in trees:
                env = dict(os.environ, FASTAD_CACHE_DIR=tempfile.mkdtemp(prefix="fastad-nest-"))
                try:
                    out = subprocess.run([sys.executable, __file__, "--calls", str(args.calls),
                                          "--child", tree, case], capture_output=True, text=True,
                                         env=env, timeout=args.timeout)
                    row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 \
                        else {"error": out.stderr.strip().splitlines()[-1:]}
                except subprocess.TimeoutExpired:
                    row = {"error": f"over {args.timeout:.0f} s"}
                results.setdefault((case, tree), []).append(row)
                print(f"round {r + 1} {case:14s} {tree:16s}", json.dumps(row), flush=True)
    print("load", os.getloadavg())
    for (case, tree), rows in results.items():
        ok = [row for row in rows if "times" in row]
        if ok:
            first = statistics.median(row["times"][0] for row in ok)
            print(f"{case:14s} {tree:16s} first call median {first:.3g} s, traces "
                  f"{sorted({row['traces'] for row in ok})}, equal {all(r['same'] for r in ok)}")


if __name__ == "__main__":
    main()
