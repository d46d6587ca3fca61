"""Run every engine on every workload side by side; write a table and plots.

    python benchmarks/report.py [--quick] [--only W1,W4,sweep] [--out benchmarks/results]

Writes ``report.md``, ``results.json``, one bar chart per workload and
``sweep.png`` (gradient time against problem size, scalar loop and
vectorized).  Steady-state times are medians of rounds measured in this
process.  First-call times (trace + compile + first gradient) come from a
fresh subprocess per row, after the engine's import and a trivial warm-up, so
no cache of an earlier row helps; ``--quick`` measures them in this process
instead and uses fewer, shorter rounds.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

# Some machines set these for an older OpenBLAS; a current NumPy's OpenBLAS
# then picks a slow kernel (a 784-256 layer's product 100x slower), which
# would be measured as every BLAS-based engine's time.  Unset for this
# process and its subprocesses only, before NumPy loads OpenBLAS.
UNSET_BLAS_ENV = {name: os.environ.pop(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                  if name in os.environ}

import numpy as np  # noqa: E402

import batch
import engines
import timing
import workloads
from engines import Case, Skipped

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-6
SWEEP_ENGINES = ("numpy_hand", "numba_hand", "fastad[c]", "fastad[numba]", "fastad[numpy]",
                 "fastad.grad (eager)", "autograd", "micrograd", "jax", "torch")


@dataclass
class Mode:
    quick: bool
    rounds: int
    min_round_s: float
    first_call_in_subprocess: bool
    sweep_scalar: tuple
    sweep_vector: tuple
    sweep_budget_s: float  # an engine stops growing n when the next size would exceed it
    first_call_limit_s: float  # a row whose first call takes longer is reported as such

    @classmethod
    def make(cls, quick: bool) -> "Mode":
        if quick:
            return cls(True, 3, 0.05, False, (10, 100, 1000), (10, 1000, 10 ** 5, 10 ** 6),
                       2.0, 5.0)
        return cls(False, 5, 0.2, True, (10, 100, 1000, 10 ** 4, 10 ** 5),
                   (10, 100, 1000, 10 ** 4, 10 ** 5, 10 ** 6), 15.0, 120.0)


@dataclass
class Row:
    label: str
    derivative: bool = True
    first_call: float | None = None
    steady: float | None = None
    rel_err: float | None = None
    note: str = ""


# --------------------------------------------------------------------------
# Measuring

# Engines whose compile was interrupted by the time limit in this process.  An
# interrupt can land inside a compiler callback (Numba's LLVM object cache) and
# leave the engine's caches half-built, so its later rows here are not trusted.
INTERRUPTED: set[str] = set()


def measure(case: Case, wl: workloads.Workload, mode: Mode,
            rounds: int | None = None, min_round_s: float | None = None) -> Row:
    row = Row(case.label, case.is_derivative)
    if case.engine in INTERRUPTED:
        row.note = (f"not run: an earlier {case.engine} compile in this process was "
                    "interrupted by the time limit")
        return row
    try:
        case.warm_up()
        first = timing.first_call(case, mode.first_call_limit_s)
        row.first_call = first.seconds
        row.rel_err = engines.check(wl, case.op, case.to_numpy(first.result))
        samples = timing.steady(first.function, case.args,
                                min_round_s or mode.min_round_s, rounds or mode.rounds)
        row.steady = timing.median(samples)
    except (AttributeError, NotImplementedError) as exc:
        row.note = f"not available: {type(exc).__name__}: {exc}"
    except timing.TimeLimitExceeded as exc:
        row.note = f"first call {exc}"
        INTERRUPTED.add(case.engine)
    except Exception as exc:  # one engine failing must not stop the report
        row.note = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    return row


def first_call_in_subprocess(wl_name: str, label: str, limit_s: float) -> tuple:
    """(seconds or None, note) from a fresh interpreter."""
    command = [sys.executable, os.path.abspath(__file__), "--first-call", wl_name, label,
               "--first-call-limit", str(limit_s)]
    try:  # the child enforces the limit; this one also covers its imports
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit_s + 120)
    except subprocess.TimeoutExpired:
        return None, f"first call did not finish within {limit_s:g} s"
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        return None, f"first-call subprocess failed: {done.stderr.strip()[-200:]}"
    return answer.get("seconds"), answer.get("note", "")


def child_first_call(wl_name: str, label: str, limit_s: float) -> None:
    """The subprocess side: warm the engine up, then time build + first call."""
    import usercode
    if wl_name in usercode.BUILDERS:
        wl, find = usercode.BUILDERS[wl_name](), usercode.find
    else:
        wl, find = next(w for w in workloads.all_workloads() if w.name == wl_name), engines.find
    try:
        case = find(wl, label)
        case.warm_up()
        print(json.dumps({"seconds": timing.first_call(case, limit_s).seconds}))
    except timing.TimeLimitExceeded as exc:
        print(json.dumps({"seconds": None, "note": f"first call {exc}"}))
    except Exception as exc:
        print(json.dumps({"seconds": None, "note": f"{type(exc).__name__}: {exc}"[:200]}))


def run_workload(wl: workloads.Workload, mode: Mode,
                 too_slow: dict[tuple[str, str], str]) -> tuple[list[Row], list[Skipped]]:
    """Measure every row of ``wl``.

    ``too_slow`` maps (workload family, row label) to the smaller workload on
    which that row's first call hit the time limit: the bigger one is not tried.
    """
    rows, skipped = [], []
    family = wl.name.split("-")[0]
    for case in engines.cases(wl, mode.quick):
        if isinstance(case, Skipped):
            skipped.append(case)
            continue
        if (family, case.label) in too_slow:
            skipped.append(Skipped(case.label, "first call over the time limit already on "
                                   f"{too_slow[family, case.label]}"))
            continue
        print(f"  {wl.name:9} {case.label:32}", end="", flush=True)
        if mode.first_call_in_subprocess:
            # First, so a row that cannot finish costs the time limit once, not twice.
            seconds, note = first_call_in_subprocess(wl.name, case.label,
                                                     mode.first_call_limit_s)
            row = Row(case.label, case.is_derivative, note=note) if seconds is None else \
                measure(case, wl, mode)
            row.first_call = seconds
        else:
            row = measure(case, wl, mode)
        if row.note.startswith("first call did not finish"):
            too_slow[family, case.label] = wl.name
        print(f" first {timing.format_seconds(row.first_call):>9}"
              f"  steady {timing.format_seconds(row.steady):>9}  {row.note[:60]}", flush=True)
        rows.append(row)
    return rows, skipped


def run_sweep(mode: Mode) -> dict:
    """{"scalar" | "vector": {engine: [(n, seconds per gradient), ...]}}, plus notes."""
    results: dict = {"scalar": {}, "vector": {}, "notes": []}
    plans = (("scalar", workloads.rosenbrock_loop_workload, mode.sweep_scalar),
             ("vector", workloads.rosenbrock_workload, mode.sweep_vector))
    for kind, make, sizes in plans:
        last: dict[str, tuple] = {}  # engine -> (n, first call, steady) at the last size
        stopped: set[str] = set()
        for n in sizes:
            wl = make(n)
            for case in engines.cases(wl, mode.quick):
                if (isinstance(case, Skipped) or case.label not in SWEEP_ENGINES
                        or case.label in stopped):
                    continue
                if case.label in last:
                    prev_n, prev_first, prev_steady = last[case.label]
                    growth = n / prev_n
                    # Tracing grows with n for the scalar loop; for slices only the calls do.
                    predicted = 10 * prev_steady * growth + (
                        prev_first * growth if kind == "scalar" else prev_first)
                    if predicted > mode.sweep_budget_s:
                        stopped.add(case.label)
                        results["notes"].append(
                            f"{kind} sweep: {case.label} stopped before n={n} "
                            f"(predicted cost over {mode.sweep_budget_s:.0f} s)")
                        continue
                row = measure(case, wl, mode, rounds=3, min_round_s=mode.min_round_s / 2)
                ok = row.steady is not None and (row.rel_err or 0.0) <= TOLERANCE
                print(f"  sweep {kind:6} n={n:<8} {case.label:24} "
                      f"{timing.format_seconds(row.steady):>9} {row.note[:50]}", flush=True)
                if not ok:
                    stopped.add(case.label)
                    results["notes"].append(f"{kind} sweep: {case.label} at n={n}: "
                                            f"{row.note or 'wrong result'}")
                    continue
                last[case.label] = (n, row.first_call, row.steady)
                results[kind].setdefault(case.label, []).append((n, row.steady))
    return results


# --------------------------------------------------------------------------
# Describing the machine

def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "nproc": os.cpu_count(), "python": platform.python_version(),
            "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


def versions() -> dict:
    found = {}
    for name in ("fastad", "numpy", "scipy", "numba", "autograd", "micrograd", "jax",
                 "jaxlib", "torch", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"],
                                capture_output=True, text=True).stdout.strip()
        if commit:
            found["fastad"] = f"{found.get('fastad', 'source')} ({commit})"
    except OSError:
        pass
    return found


def blas() -> str:
    """The BLAS library, kernel and thread count NumPy runs with (threadpoolctl)."""
    unset = "".join(f"; unset {k}={v}" for k, v in UNSET_BLAS_ENV.items())
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (threadpoolctl not installed)" + unset
    libs = [lib for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
    return ", ".join(f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture')} "
                     f"kernel, {lib.get('num_threads')} threads)" for lib in libs) + unset


# A core of any machine this runs on does several GFLOP/s in float64 GEMM;
# below this the BLAS kernel itself is slow and every BLAS-bound row with it.
PLAUSIBLE_GEMM_GFLOPS = 2.0
# A hand-written gradient costs a few products of its largest size; beyond
# this many, its time is not its BLAS calls'.
PLAUSIBLE_PRODUCTS = 20


def gemm_seconds(m: int, k: int, n: int) -> float:
    a, b = np.random.default_rng(0).standard_normal((m, k)), np.ones((k, n))
    return timing.median(timing.steady(np.matmul, (a, b), min_round_s=0.05))


def blas_plausibility(wl: workloads.Workload, rows: list[Row]) -> list[str]:
    """Flags for a BLAS-bound workload whose product or hand-written NumPy
    gradient is implausibly slow on this machine."""
    if wl.gemm is None:
        return []
    m, k, n = wl.gemm
    t = gemm_seconds(m, k, n)
    gflops = 2 * m * k * n / t / 1e9
    notes = [f"BLAS check: a ({m}x{k}) @ ({k}x{n}) product takes {timing.format_seconds(t)} "
             f"({gflops:.1f} GFLOP/s)"]
    if gflops < PLAUSIBLE_GEMM_GFLOPS:
        notes.append(f"**WARNING**: BLAS runs at {gflops:.2f} GFLOP/s, implausibly slow "
                     f"(under {PLAUSIBLE_GEMM_GFLOPS:g}): every BLAS-based row of this "
                     f"workload measures the BLAS kernel ({blas()}), not the engine")
    hand = next((r.steady for r in rows if r.label == "numpy_hand" and r.steady), None)
    if hand and hand > PLAUSIBLE_PRODUCTS * t:
        notes.append(f"**WARNING**: the hand-written NumPy gradient takes {hand / t:.0f} "
                     f"products' time (more than {PLAUSIBLE_PRODUCTS}): implausibly slow")
    return notes


def fastad_backends() -> str:
    try:
        import fastad
        names, missing = engines.fastad_backends(fastad)
    except Exception as exc:
        return f"none (import fastad failed: {type(exc).__name__}: {exc})"
    # `python benchmarks/report.py` puts benchmarks/, not the checkout, on sys.path:
    # fastad is whatever is installed unless PYTHONPATH names the checkout.
    where = os.path.dirname(os.path.dirname(os.path.abspath(fastad.__file__)))
    return (", ".join(names) + "".join(f"; {b} unavailable" for b in missing)
            + f" (fastad imported from {where})")


# --------------------------------------------------------------------------
# Writing the report

def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.3g}x"


def workload_table(wl: workloads.Workload, rows: list[Row], skipped: list[Skipped],
                   with_plot: bool) -> str:
    timed = [r for r in rows if r.steady is not None]
    numba = next((r.steady for r in timed if r.label == "numba_hand"), None)
    derivative = [r.steady for r in timed if r.derivative and (r.rel_err or 0) <= TOLERANCE]
    fastest = min(derivative, default=None)
    what = "HVP" if wl.kind == "hvp" else "gradient"
    lines = [f"## {wl.name}: {wl.title}", "",
             f"| engine | first call | steady median | vs numba hand {what} | vs fastest | correct? |",
             "|---|---|---|---|---|---|"]
    for r in sorted(timed, key=lambda r: (not r.derivative, r.steady)):
        correct = "yes" if r.rel_err is not None and r.rel_err <= TOLERANCE else \
            f"**NO** (rel. err {r.rel_err:.1e})"
        lines.append(f"| {r.label} | {timing.format_seconds(r.first_call)} | "
                     f"{timing.format_seconds(r.steady)} | {_ratio(r.steady, numba)} | "
                     f"{_ratio(r.steady, fastest) if r.derivative else '–'} | {correct} |")
    lines.append("")
    by_label = {r.label: r.steady for r in timed}
    for backend in engines.FASTAD_BACKENDS:
        both = by_label.get(f"fastad[{backend}].value_and_grad"), by_label.get(f"fastad[{backend}].value")
        if all(both):
            lines.append(f"- fastad[{backend}]: value_and_grad / value = {both[0] / both[1]:.2f}")
    for r in rows:
        if r.steady is None or r.note:
            lines.append(f"- {r.label}: {r.note}")
    lines += [f"- {note}" for note in blas_plausibility(wl, rows)]
    for s in skipped:
        lines.append(f"- {s.label}: not run ({s.reason})")
    lines += ["", f"![{wl.name}]({wl.name}.png)" if with_plot else "", ""]
    return "\n".join(lines)


def sweep_table(sweep: dict, with_plot: bool) -> str:
    lines = ["## Size sweep: gradient of Rosenbrock against n", "",
             "Steady median per gradient. *scalar*: the W1 Python loop (about 8 scalar ops "
             "per element); *vector*: W2 with slices.", ""]
    for kind in ("scalar", "vector"):
        sizes = sorted({n for series in sweep[kind].values() for n, _ in series})
        if not sizes:
            continue
        lines += [f"| {kind} | " + " | ".join(f"n={n:,}" for n in sizes) + " |",
                  "|---" * (len(sizes) + 1) + "|"]
        for label, series in sweep[kind].items():
            at = dict(series)
            lines.append(f"| {label} | " + " | ".join(
                timing.format_seconds(at.get(n)) for n in sizes) + " |")
        lines.append("")
    lines += [f"- {note}" for note in sweep["notes"]]
    lines += ["", "![sweep](sweep.png)" if with_plot else "", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Memory: each workload's compiled program against the least it could use

def memory_rows(selected: list[workloads.Workload]) -> list[dict]:
    """Per workload: the arena of the C VM's program (with and without fused
    execution) next to the minimum: inputs, outputs, and the forward values
    the derivative part reads (those kept for the reverse sweep)."""
    import fastad as fa
    from fastad.backends.lower import lower
    rows = []
    for wl in selected:
        f = wl.f
        if wl.kind == "grad":
            g = fa.compile(f, argnums=0, backend="numpy")
            g(*wl.args)
        else:  # the value beside the HVP marks which part of the tape is forward
            g = fa.jit(lambda *a: (f(*a[:-1]), fa.hvp(f)(*a)), backend="numpy")
            g(*wl.op_args)
        tape = g.tape
        fused, plain = lower(tape), lower(tape, fuse=False)
        rows.append({"workload": wl.name, **minimum_bytes(tape),
                     "arena_unfused": plain.arena_bytes, "arena_fused": fused.arena_bytes,
                     "instructions_unfused": plain.stats["instructions"],
                     "instructions_fused": fused.stats["instructions"]})
    return rows


def minimum_bytes(tape) -> dict:
    """Bytes of the inputs and outputs, and of the forward values (those the
    first output, the value, depends on) that the rest of the tape reads."""
    def nbytes(slot: int) -> int:
        aval = tape.avals[slot]
        return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize
    producer = {ins.out: ins for ins in tape.instrs}
    forward, todo = set(), [tape.outputs[0]]
    while todo:
        s = todo.pop()
        if s in producer and s not in forward:
            forward.add(s)
            todo.extend(producer[s].ins)
    kept = {s for ins in tape.instrs if ins.out not in forward for s in ins.ins
            if s in forward and s not in tape.outputs}
    ports = set(tape.inputs) | set(tape.outputs)
    return {"inputs_outputs": sum(nbytes(s) for s in ports),
            "kept": sum(nbytes(s) for s in kept),
            "minimum": sum(nbytes(s) for s in ports | kept)}


def memory_table(rows: list[dict]) -> str:
    lines = ["## Memory: peak arena against the minimum", "",
             "The C VM's arena for one call (constants included) with fused execution "
             "and without, next to the least a program can hold: inputs and outputs, "
             "plus the forward values the derivative part reads (kept for the reverse "
             "sweep). Instructions are those of the lowered program.", "",
             "| workload | inputs + outputs | kept for reverse | minimum | arena unfused "
             "| arena fused | fused / minimum | instructions unfused → fused |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {_bytes(r['inputs_outputs'])} | {_bytes(r['kept'])} "
                     f"| {_bytes(r['minimum'])} | {_bytes(r['arena_unfused'])} "
                     f"| {_bytes(r['arena_fused'])} | {r['arena_fused'] / r['minimum']:.2f} "
                     f"| {r['instructions_unfused']} → {r['instructions_fused']} |")
    return "\n".join(lines) + "\n"


def _bytes(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def header(mode: Mode) -> str:
    m, v = machine(), versions()
    where = ("a fresh subprocess per row, after the engine's import and a trivial warm-up"
             if mode.first_call_in_subprocess else
             "this process (--quick): caches warmed by earlier rows may help")
    return "\n".join([
        "# fastad benchmark report", "",
        f"- Date: {m['date']}",
        f"- Machine: {m['cpu']}, nproc={m['nproc']}; Python {m['python']}; load average "
        f"at the start {m['load']} (the machine is shared: expect 10-30 % noise)",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- BLAS: {blas()}",
        f"- fastad backends here: {fastad_backends()}",
        f"- Mode: {'quick' if mode.quick else 'full'}; steady = median of {mode.rounds} "
        f"rounds, each round at least {mode.min_round_s} s of repeated calls; first call = "
        f"trace + compile + first result, measured in {where}; a row whose first call "
        f"takes over {mode.first_call_limit_s:g} s is stopped and reported as such.",
        "- Every result is checked against the hand-derived NumPy gradient: "
        f"max|g - ref| / max|ref| <= {TOLERANCE:g}. All float64.",
        "- `numpy_fwd (value only)` is the user's function itself, for scale; "
        "`fastad[b]` is `fastad.compile(f, backend=b)`, `.value_and_grad`/`.value` its methods.",
        ""])


def pyplot():
    """matplotlib.pyplot drawing to files, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_workload(wl: workloads.Workload, rows: list[Row], out: str) -> None:
    plt = pyplot()
    from matplotlib.patches import Patch
    timed = sorted((r for r in rows if r.steady is not None), key=lambda r: r.steady)
    if not timed:
        return
    colors = ["tab:red" if r.label.startswith("fastad") else
              "tab:gray" if r.label.startswith(("numpy_", "numba_")) else "tab:blue"
              for r in timed]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(timed) + 1.2))
    ax.barh([r.label for r in timed], [r.steady for r in timed], color=colors)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("seconds per call (steady median, log scale)")
    ax.set_title(f"{wl.name}: {wl.title}", fontsize=10)
    legend = [Patch(color=c, label=t) for c, t in
              (("tab:red", "fastad"), ("tab:gray", "hand-written"), ("tab:blue", "peers"))]
    ax.legend(handles=legend, fontsize=8, loc="upper right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{wl.name}.png"), dpi=90)
    plt.close(fig)


def plot_sweep(sweep: dict, out: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    titles = {"scalar": "scalar loop over x[i] (W1)", "vector": "vectorized (W2)"}
    for ax, kind in zip(axes, ("scalar", "vector")):
        for label, series in sweep[kind].items():
            ns, ts = zip(*series)
            style = "-" if label.startswith("fastad") else "--" if "_hand" in label else ":"
            ax.plot(ns, ts, style, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n (elements)")
        ax.set_ylabel("seconds per gradient")
        ax.set_title(f"Rosenbrock gradient, {titles[kind]}", fontsize=10)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sweep.png"), dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------
# Sections of their own: guard overhead (from the W1/W1g rows), the Jacobian
# mode sweep, the backends' compile and call times (backend="auto")

def guard_overhead_table(raw: dict) -> str:
    """Each fastad backend on W1 with and without a guard per term."""
    lines = []
    for name, rows in raw.items():
        if not name.startswith("W1g-"):
            continue
        plain = {r["label"]: r["steady"] for r in raw.get("W1-" + name[4:], [])}
        for r in rows:
            base = plain.get(r["label"])
            if r["label"].startswith("fastad[") and r["steady"] and base and \
                    "." not in r["label"]:
                lines.append(f"| {name[4:]} | {r['label']} | {timing.format_seconds(base)} | "
                             f"{timing.format_seconds(r['steady'])} | {r['steady'] / base:.3f} |")
    if not lines:
        return ""
    return "\n".join(["## Guards: W1 with an `if` per term", "",
                      "Same gradient; W1g records a guard per iteration (rerolled into one "
                      "vector guard). Target: guarded / plain <= 1.05.", "",
                      "| n | engine | W1 | W1g (guarded) | guarded / plain |",
                      "|---|---|---|---|---|"] + lines + [""])


def jacobian_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import jacobian_sweep
    rows = jacobian_sweep.run(mode.quick)
    if with_plots:
        jacobian_sweep.plot(rows, out)
    return jacobian_sweep.table(rows, with_plots), rows


def backends_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import backend_choice
    rows = backend_choice.run(mode.quick)
    if with_plots:
        backend_choice.plot(rows, out)
    return backend_choice.report(rows, with_plots), rows


def reroll_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import reroll
    rows = reroll.run(mode.quick)
    return reroll.report(rows), rows


def targets_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import targets
    results = targets.run(mode.quick)
    return targets.report(results), results


def usercode_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import usercode
    # The unrolled loops' JAX compiles take tens of seconds: more than --quick's limit.
    limit_s = max(mode.first_call_limit_s, 60.0)
    elsewhere = first_call_in_subprocess if mode.first_call_in_subprocess else None
    where = ("a fresh subprocess per row, after the engine's import and a trivial warm-up"
             if elsewhere else "this process (--quick): earlier rows may have warmed caches")
    results = usercode.run(mode.quick, limit_s, elsewhere)
    if with_plots:
        usercode.plot(results, os.path.join(out, "usercode.png"))
    return usercode.report(results, where, mode.quick), results


def recurrences_section(mode: Mode, out: str, with_plots: bool) -> tuple[str, list]:
    import recurrences
    rows = recurrences.run(mode.quick)
    found = recurrences.run_python_loops(mode.quick)
    steady = recurrences.run_steady(mode.quick)
    return (recurrences.report(rows) + "\n" + recurrences.report_python_loops(found) + "\n"
            + recurrences.report_steady(steady), rows + found + steady)


SECTIONS = {"jacobian": jacobian_section, "backends": backends_section,
            "reroll": reroll_section, "targets": targets_section, "usercode": usercode_section,
            "recurrences": recurrences_section}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (< 2 min)")
    parser.add_argument("--only", help="comma-separated workload prefixes, and/or 'sweep', "
                        "'batch', 'jacobian', 'backends', 'reroll', 'targets', 'usercode', 'recurrences', "
                        "'memory'")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    # Used by the report's own subprocesses:
    parser.add_argument("--first-call", nargs=2, metavar=("WORKLOAD", "ENGINE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--first-call-limit", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_call:
        child_first_call(*args.first_call, args.first_call_limit)
        return

    mode = Mode.make(args.quick)
    only = {p.strip() for p in (args.only or "").split(",") if p.strip()}
    os.makedirs(args.out, exist_ok=True)
    sections, raw, too_slow = [header(mode)], {}, {}
    with_plots = pyplot() is not None
    if not with_plots:
        print("matplotlib is not installed: writing the tables without plots")
    prefixes = only - {"sweep", "batch", "memory"} - set(SECTIONS)
    selected = workloads.select(",".join(prefixes)) if prefixes else \
        ([] if only else workloads.all_workloads())
    for wl in selected:
        print(f"{wl.name}: {wl.title}", flush=True)
        rows, skipped = run_workload(wl, mode, too_slow)
        sections.append(workload_table(wl, rows, skipped, with_plots))
        if with_plots:
            plot_workload(wl, rows, args.out)
        raw[wl.name] = [asdict(r) for r in rows]
    guards = guard_overhead_table(raw)
    if guards:
        sections.append(guards)
    if not only or "sweep" in only:
        print("size sweep", flush=True)
        sweep = run_sweep(mode)
        sections.append(sweep_table(sweep, with_plots))
        if with_plots:
            plot_sweep(sweep, args.out)
        raw["sweep"] = sweep
    if not only or "batch" in only:
        print("batched evaluation", flush=True)
        sections.append(batch.batch_table(mode.quick))
    for name, section in SECTIONS.items():
        if not only or name in only:
            print(f"{name}", flush=True)
            text, raw[name] = section(mode, args.out, with_plots)
            sections.append(text)
    if not only or "memory" in only:
        print("memory", flush=True)
        memory = memory_rows(selected or workloads.all_workloads())
        sections.append(memory_table(memory))
        raw["memory"] = memory
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    sections.append(f"Load average at the end: {load}.\n")
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write("\n".join(sections))
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(raw, fh, indent=1, default=float)
    print(f"wrote {os.path.join(args.out, 'report.md')}")


if __name__ == "__main__":
    main()
