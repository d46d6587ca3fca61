"""Recurrences (issue 22): the RK4 ODE fit of benchmarks/usercode.py written
with ``fastad.scan``, at T = 200, 2,000 and 20,000 steps, against the same
fit as a Python loop (unrolled by tracing) and JAX's ``lax.scan``.

    python benchmarks/report.py --only recurrences
    python benchmarks/recurrences.py            # the section alone

Each row: the first call (trace, differentiate, compile, run) of the
compiled gradient, the steady gradient time (interleaved rounds), and the
peak memory Python's allocator sees (tracemalloc, which NumPy's arrays
report to) during one gradient and during one value of the same function,
both compiled.  Every gradient is checked against the Python loop's eager
gradient.  The unrolled loop is built only where its trace stays under
about a minute (T = 200, 2,000); JAX rows run when jax is installed.
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing  # noqa: E402
from usercode import _rk4_trajectory, make_rk4_fit, rk4_step  # noqa: E402

STEPS = (200, 2_000, 20_000)
UNROLLED_UP_TO = 2_000  # tracing 2,000 unrolled steps takes ~40 s; 20,000 is out of reach
TOLERANCE = 1e-8


def make_rk4_scan(fa, xnp=np):
    """The RK4 fit's loop as ``fastad.scan``."""
    def rk4_fit(theta, data):
        (_, _, loss), _ = fa.scan(rk4_step(theta[0], theta[1]), (1.0, 0.0, 0.0), data)
        return loss
    return rk4_fit


def _jax_grad():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def fit(theta, data):
        init = (jnp.float64(1.0), jnp.float64(0.0), jnp.float64(0.0))
        (_, _, loss), _ = jax.lax.scan(rk4_step(theta[0], theta[1]), init, data)
        return loss
    grad = jax.jit(jax.grad(fit))
    return lambda theta, data: np.asarray(grad(theta, data))


def _peak_bytes(fn, args) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def _first_call(build, args):
    start = time.perf_counter()
    fn = build()
    result = fn(*args)
    return fn, result, time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    import fastad as fa
    warnings.simplefilter("ignore", UserWarning)  # the loop's host-call notice
    theta = np.array([2.0, 0.3])
    jax_grad = _jax_grad()
    rows = []
    for steps in STEPS:
        print(f"  T = {steps}", flush=True)
        noise = 0.01 * np.random.default_rng(4).standard_normal(steps)
        data = _rk4_trajectory(np.array([2.5, 0.2]), steps) + noise
        args = (theta, data)
        want = fa.grad(make_rk4_scan(fa))(*args) if steps > UNROLLED_UP_TO else \
            fa.grad(make_rk4_fit())(*args)
        row = {"steps": steps, "first_s": {}, "error": {}, "peak": {}}
        fns = {}
        builds = {"fastad scan [c]": lambda: fa.compile(make_rk4_scan(fa))}
        if steps <= UNROLLED_UP_TO and not (quick and steps > 200):
            builds["fastad unrolled [c]"] = lambda: fa.compile(make_rk4_fit())
        if jax_grad is not None:
            builds["JAX lax.scan"] = _jax_grad
        for name, build in builds.items():
            fn, result, seconds = _first_call(build, args)
            row["first_s"][name] = seconds
            row["error"][name] = error = float(np.max(np.abs(result - want))
                                               / np.max(np.abs(want)))
            if error <= TOLERANCE:
                fns[name] = fn
        scan_value = fa.jit(make_rk4_scan(fa))
        scan_value(*args)
        scan_grad = fns.get("fastad scan [c]")
        if scan_grad is not None:
            row["peak"] = {"gradient": _peak_bytes(scan_grad, args),
                           "value": _peak_bytes(scan_value, args)}
        row["steady_s"] = timing.interleaved(fns, args, 0.05 if quick else 0.2,
                                             3 if quick else 5)
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    names = ["fastad scan [c]", "fastad unrolled [c]", "JAX lax.scan"]
    lines = ["## Recurrences: the RK4 fit as fastad.scan, unrolled, and JAX's lax.scan", "",
             "| T | " + " | ".join(f"first call: {n}" for n in names) + " | "
             + " | ".join(f"gradient: {n}" for n in names)
             + " | peak memory, scan gradient / value |",
             "|---|" + "---|" * (2 * len(names) + 1)]
    for row in rows:
        first = [timing.format_seconds(row["first_s"].get(n)) if n in row["first_s"]
                 else "not run" for n in names]
        steady = []
        for n in names:
            t = row["steady_s"].get(n)
            if t is not None:
                steady.append(timing.format_seconds(t))
            else:
                steady.append("wrong result" if row["error"].get(n, 0) > TOLERANCE
                              else "not run")
        peak = row["peak"]
        mem = (f"{peak['gradient'] / 1024:.0f} KiB / {peak['value'] / 1024:.0f} KiB"
               if peak else "–")
        lines.append(f"| {row['steps']:,} | " + " | ".join(first) + " | "
                     + " | ".join(steady) + f" | {mem} |")
    lines += ["", "First call: trace, differentiate, compile and run the compiled gradient "
              "(JAX: jit and the first gradient). The unrolled Python loop is not run at "
              "T = 20,000 (its trace at 2,000 already takes tens of seconds). The scan's "
              "loops are host calls whose steps the C VM runs; reverse mode's loops over "
              "chunks of sqrt(T) steps run from Python once per chunk.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(report(run(quick)))
