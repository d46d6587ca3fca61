"""First calls with ``backend="auto"`` (the default), each in a fresh process.

    python benchmarks/first_call_auto.py [--only W2,GP-n200] [--calls 20] [--json out.json]

For every workload of `workloads` (the targets, W1-W5) and `usercode`, a
fresh interpreter imports fastad, warms up the backends (a two-element
gradient, so that loading the C extension and Numba is not counted, as in
`report.py`), then times ``fa.compile(f)`` plus its first call (``g(*args)``;
``g.hvp(*args, v)`` for W5), then ``--calls`` more calls one by one, and
prints the slowest of those and what ``cache_info()`` says of tiering.
Each child gets an empty ``FASTAD_CACHE_DIR`` (no Numba kernel cached).
Target (issue 24): every first call under 1 s.

``--promote-after N`` makes ``auto`` move every tape that Numba can run to
Numba after N calls (the rule's count replaced; run with ``--calls`` > N):
the slowest later call then shows whether a call waited for the compile.
It patches the rule where the tree keeps it (``fastad.backends.fallback``,
or ``choice`` in trees from before tiering moved), so it times older trees too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as report.py does
    os.environ.pop(_name, None)


def _workload(name: str):
    import usercode
    import workloads
    if name in usercode.BUILDERS:
        return usercode.BUILDERS[name]()
    return next(w for w in workloads.all_workloads() if w.name == name)


def names() -> list[str]:
    import usercode
    import workloads
    return [w.name for w in workloads.all_workloads()] + list(usercode.BUILDERS)


def child(name: str, calls: int, promote_after: int) -> dict:
    import numpy as np

    import fastad as fa
    if promote_after:
        from fastad import backends
        rule = backends.fallback if hasattr(backends.fallback, "promote_after") else \
            __import__("fastad.backends.choice", fromlist=["choice"])
        rule.promote_after = lambda tape, numba_cached: promote_after
    fa.compile(lambda x: (x * x).sum())(np.ones(2))  # the backends loaded
    wl = _workload(name)
    start = time.perf_counter()
    g = fa.compile(wl.f, argnums=0)
    run = (lambda: g.hvp(*wl.op_args)) if wl.kind == "hvp" else (lambda: g(*wl.args))
    run()
    first = time.perf_counter() - start
    later = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        later.append(time.perf_counter() - start)
    slowest_at = later.index(max(later)) + 2 if later else None
    program = (g._hvp if wl.kind == "hvp" else g)
    for entry in program._main.cache.values():
        for e in entry:  # a background tier-up still running: let it finish, for the record
            for exe in (e.built, e.rest and e.rest.built):
                getattr(exe, "wait", lambda timeout: True)(600)
    info = program.cache_info()
    tiers = [{k: v for k, v in e.items() if k in ("tier", "grads_tier")}
             for e in info.get("entries", [])]
    return {"workload": name, "first_call_s": first,
            "slowest_later_call_s": max(later) if later else None, "slowest_call": slowest_at,
            "median_later_call_s": sorted(later)[len(later) // 2] if later else None,
            "tiers": tiers}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", default="")
    parser.add_argument("--child", default="")
    parser.add_argument("--promote-after", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.calls, args.promote_after)))
        return
    rows = []
    for name in [n for n in args.only.split(",") if n] or names():
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, FASTAD_CACHE_DIR=cache)
            done = subprocess.run([sys.executable, __file__, "--child", name,
                                   "--calls", str(args.calls),
                                   "--promote-after", str(args.promote_after)],
                                  capture_output=True, text=True, env=env, timeout=1800)
        try:
            row = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            row = {"workload": name, "error": done.stderr.strip()[-300:]}
        rows.append(row)
        load = os.getloadavg()[0]
        print(f"{name:>16}  first {row.get('first_call_s', float('nan')):8.3f} s  "
              f"slowest later {row.get('slowest_later_call_s') or float('nan'):8.4f} s "
              f"(call {row.get('slowest_call')}), median "
              f"{row.get('median_later_call_s') or float('nan'):8.4f} s  "
              f"load {load:.2f}  {row.get('error', '')}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
