"""Recurrences (issue 22): the RK4 ODE fit of benchmarks/usercode.py written
with ``fastad.scan``, at T = 200, 2,000 and 20,000 steps, against the same
fit as a Python loop (unrolled by tracing) and JAX's ``lax.scan``.

    python benchmarks/report.py --only recurrences
    python benchmarks/recurrences.py            # the section alone
    python benchmarks/recurrences.py --python-loops   # only the Python loops found as loops

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




# -- Python loops found as recurrences (fastad/transforms/recurrence.py) -------------------
# The same fit as the plain Python loop of benchmarks/usercode.py, which
# recurrence detection turns into one loop instruction before differentiation;
# plus a vanilla RNN over a sequence and Gauss-Seidel sweeps, both as Python loops.
RNN_STEPS, RNN_HIDDEN, RNN_INPUT = 500, 16, 4
GS_SWEEPS, GS_GRID = 50, 8


def make_rnn(xnp=np):
    """A vanilla RNN over a sequence, its loss the squared error of a readout per step."""
    def rnn_loss(W, U, V, xs, ys):
        h = xnp.zeros(W.shape[0])
        loss = 0.0
        for t in range(xs.shape[0]):
            h = xnp.tanh(W @ h + U @ xs[t])
            loss = loss + xnp.sum((V @ h - ys[t]) ** 2)
        return loss
    return rnn_loss


def make_rnn_scan(jax, jnp):
    def rnn_loss(W, U, V, xs, ys):
        def step(h, xy):
            x, y = xy
            h = jnp.tanh(W @ h + U @ x)
            return h, jnp.sum((V @ h - y) ** 2)
        _, losses = jax.lax.scan(step, jnp.zeros(W.shape[0]), (xs, ys))
        return jnp.sum(losses)
    return rnn_loss


def make_gauss_seidel(sweeps=GS_SWEEPS, xnp=np):
    """``sweeps`` Gauss-Seidel sweeps of the Poisson equation on a grid whose
    source is the parameter; the loss compares the result with a target."""
    def gs_loss(source, target):
        n = target.shape[0]
        u = 0.0 * source  # a traced array, whose elements assignment replaces
        for _ in range(sweeps):
            for i in range(1, n - 1):
                for j in range(1, n - 1):
                    u[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]
                                      + source[i, j])
        return xnp.sum((u - target) ** 2)
    return gs_loss


def _jax_modules():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _python_loop_row(fa, name, f, args, argnums, extra_builds, quick):
    """First calls, trace alone, detection alone and steady gradients of the
    Python loop ``f`` compiled, against the extra builds (name -> build)."""
    from fastad.transforms.recurrence import find_recurrences
    tape, trace_s = _timed(lambda: fa.make_tape(f)(*args))
    looped, detect_s = _timed(find_recurrences, tape)
    loops = [i for i in (looped or tape).instrs if i.prim == "loop"]
    row = {"workload": name, "traced": len(tape.instrs), "trace_s": trace_s,
           "detect_s": detect_s, "loops": [dict(i.params)["length"] for i in loops],
           "first_s": {}, "error": {}}
    want = fa.grad(f, argnums=argnums)(*args)
    want = np.concatenate([np.ravel(w) for w in (want if isinstance(want, tuple) else (want,))])
    builds = {f"Python loop [{b}]": (lambda b=b: fa.compile(f, argnums=argnums, backend=b))
              for b in ("auto", "c")}
    builds.update(extra_builds)
    fns = {}
    for label, build in builds.items():
        fn, result, seconds = _first_call(build, args)
        got = np.concatenate([np.ravel(r) for r in (result if isinstance(result, tuple)
                                                      else (result,))])
        row["first_s"][label] = seconds
        row["error"][label] = error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        if error <= TOLERANCE:
            fns[label] = fn
    row["steady_s"] = timing.interleaved(fns, args, 0.05 if quick else 0.2, 3 if quick else 5)
    row["load"] = os.getloadavg()[0]
    return row


def run_python_loops(quick: bool = False) -> list[dict]:
    import fastad as fa
    warnings.simplefilter("ignore", UserWarning)  # the loop's host-call notice
    jax_mods = _jax_modules()
    theta = np.array([2.0, 0.3])
    rows = []
    for steps in STEPS[:2] if quick else STEPS:
        print(f"  RK4 Python loop, T = {steps}", flush=True)
        noise = 0.01 * np.random.default_rng(4).standard_normal(steps)
        data = _rk4_trajectory(np.array([2.5, 0.2]), steps) + noise
        extra = {"fastad scan [c]": lambda: fa.compile(make_rk4_scan(fa))}
        if jax_mods is not None:
            extra["JAX lax.scan"] = _jax_grad
        rows.append(_python_loop_row(fa, f"RK4 fit, T = {steps:,}", make_rk4_fit(),
                                     (theta, data), 0, extra, quick))
    rng = np.random.default_rng(7)
    h, d = RNN_HIDDEN, RNN_INPUT
    rnn_args = (rng.normal(0, 0.3, (h, h)), rng.normal(0, 0.3, (h, d)), rng.normal(0, 0.3, (1, h)),
                rng.normal(size=(RNN_STEPS, d)), rng.normal(size=(RNN_STEPS, 1)))
    print(f"  RNN, {RNN_STEPS} steps", flush=True)
    extra = {}
    if jax_mods is not None:
        jax, jnp = jax_mods
        rnn_grad = jax.jit(jax.grad(make_rnn_scan(jax, jnp), argnums=(0, 1, 2)))
        extra["JAX lax.scan"] = lambda: (lambda *a: tuple(np.asarray(g) for g in rnn_grad(*a)))
    rows.append(_python_loop_row(fa, f"RNN, {RNN_STEPS} steps", make_rnn(), rnn_args,
                                 (0, 1, 2), extra, quick))
    print(f"  Gauss-Seidel, {GS_SWEEPS} sweeps", flush=True)
    n = GS_GRID
    gs_args = (rng.uniform(0, 1, (n, n)), rng.uniform(0, 0.1, (n, n)))
    rows.append(_python_loop_row(fa, f"Gauss-Seidel, {GS_SWEEPS} sweeps of {n}x{n}",
                                 make_gauss_seidel(), gs_args, 0, {}, quick))
    return rows


def report_python_loops(rows: list[dict]) -> str:
    names = ["Python loop [auto]", "Python loop [c]", "fastad scan [c]", "JAX lax.scan"]
    lines = ["## Recurrences found in Python loops", "",
             "| workload | traced instructions | loops found (steps) | trace alone | detection | "
             + " | ".join(f"first call: {n}" for n in names) + " | "
             + " | ".join(f"gradient: {n}" for n in names) + " | load |",
             "|---|---|---|---|---|" + "---|" * (2 * len(names) + 1)]
    for row in rows:
        first = [timing.format_seconds(row["first_s"][n]) if n in row["first_s"] else "–"
                 for n in names]
        steady = []
        for n in names:
            if n in row["steady_s"]:
                steady.append(timing.format_seconds(row["steady_s"][n]))
            else:
                steady.append("wrong result" if row["error"].get(n, 0) > TOLERANCE else "–")
        lines.append(f"| {row['workload']} | {row['traced']:,} | "
                     f"{', '.join(map(str, row['loops'])) or 'none'} | "
                     f"{timing.format_seconds(row['trace_s'])} | "
                     f"{timing.format_seconds(row['detect_s'])} | " + " | ".join(first) + " | "
                     + " | ".join(steady) + f" | {row['load']:.1f} |")
    lines += ["", "Trace alone: `fastad.make_tape` of the Python loop (per step in Python); "
              "detection: `transforms.recurrence.find_recurrences` on that tape. First call: "
              "trace, detect, differentiate, compile and run the compiled gradient (JAX: jit "
              "and the first gradient of the `lax.scan` rewrite).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--python-loops" not in sys.argv:
        print(report(run(quick)))
    print(report_python_loops(run_python_loops(quick)))
