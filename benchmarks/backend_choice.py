"""Compile time and per-call time of the C VM and the Numba backend against
tape size and the share of scalar instructions: the measurements behind
``backend="auto"`` (``fastad/backends/fallback.py``).

    python benchmarks/backend_choice.py [--quick] [--out benchmarks/results]

Each tape is the optimized value-and-gradient tape of one function; both
backends build the same tape.  Numba compiles into a fresh cache directory, so
the times are cold compiles, never disk-cache hits.  Writes
``backend_choice.json`` and ``backend_choice.png`` (compile time, per-call
time, and the number of calls after which ``auto`` moves a function from the
C VM to Numba, measured and as the rule predicts it).

Families (n is the problem size):

  scalar          the W1 Rosenbrock loop traced without rerolling: ~19 scalar
                  instructions per element
  rerolled        the same loop rerolled (the default): ~20 vector instructions
                  on n-element arrays
  mixed           a scalar loop over the first n elements plus a cheap
                  vectorized term over a 10,000-element array
  vector          a chain of n cheap elementwise instructions (add, mul) on
                  1,000-element arrays: where fused loops save memory traffic
  transcendental  a chain of n sin on 1,000-element arrays: compute-bound
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fastad as fa  # noqa: E402
import timing  # noqa: E402
from fastad.backends import fallback, get  # noqa: E402
from workloads import make_rosenbrock_loop, rosenbrock_point  # noqa: E402

COMPILE_LIMIT_S = 120.0  # stop a family once a Numba compile would take longer


def scalar_family(n: int):
    return make_rosenbrock_loop(), (rosenbrock_point(n),), False


def rerolled_family(n: int):
    return make_rosenbrock_loop(), (rosenbrock_point(n),), True


def mixed_family(n: int):
    def f(x):
        total = 0.0
        for i in range(n):
            total = total + (x[i] - 1.0) ** 2 * x[i + 1]
        return total + np.sum((x - 0.5) ** 2 * x)
    return f, (rosenbrock_point(10_000),), False


def vector_family(n: int):
    def f(x):
        y = x
        for k in range(n):
            y = y * 0.5 + 0.25 if k % 2 else y * y - 0.125
        return np.sum(y)
    return f, (0.1 * rosenbrock_point(1000),), False


def transcendental_family(n: int):
    def f(x):
        y = x
        for _ in range(n):
            y = np.sin(y)
        return np.sum(y)
    return f, (rosenbrock_point(1000),), False


FAMILIES = {"scalar": (scalar_family, (10, 30, 100)),
            "rerolled": (rerolled_family, (100, 1000, 10_000, 100_000)),
            "mixed": (mixed_family, (10, 100, 300)),
            "vector": (vector_family, (3, 10, 30, 100, 300)),
            "transcendental": (transcendental_family, (3, 30))}
QUICK = {"scalar": (10, 100), "rerolled": (100, 1000), "mixed": (10,), "vector": (3, 30),
         "transcendental": (3,)}


@contextlib.contextmanager
def cold_numba_cache():
    """An empty disk cache and no kernel loaded in this process: a real compile."""
    from fastad.backends import numba_backend
    old_dir, old_modules = os.environ.get("FASTAD_CACHE_DIR"), dict(numba_backend._modules)
    numba_backend._modules.clear()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FASTAD_CACHE_DIR"] = cache
        try:
            yield
        finally:
            numba_backend._modules.clear()
            numba_backend._modules.update(old_modules)
            if old_dir is None:
                del os.environ["FASTAD_CACHE_DIR"]
            else:
                os.environ["FASTAD_CACHE_DIR"] = old_dir


def measure(family: str, n: int) -> dict:
    f, args, reroll = FAMILIES[family][0](n)
    g = fa.compile(f, backend="numpy", reroll=reroll)
    g(*args)
    tape = g.tape
    inputs = list(args)
    row = {"family": family, "n": n, **fallback.tape_stats(tape)}
    runs = {}
    for name in ("c", "numba"):
        backend = get(name)
        with cold_numba_cache():
            start = time.perf_counter()
            exe = backend.build(tape)
            row[f"{name}_compile"] = time.perf_counter() - start
            runs[f"{name}_call"] = exe.run
    # the two backends' calls in alternating rounds: load falls on both alike
    row.update(timing.interleaved(runs, (inputs,), 0.1, 7))
    row["calls_to_break_even"] = fallback.break_even_calls(
        row["numba_compile"] - row["c_compile"], row["c_call"] - row["numba_call"])
    row["rule_promote_after"] = fallback.promote_after(tape, numba_cached=False)
    return row


def plot(rows: list[dict], out: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    markers = {"scalar": "o", "rerolled": "v", "mixed": "s", "vector": "^",
               "transcendental": "D"}
    for family, marker in markers.items():
        fam = [r for r in rows if r["family"] == family]
        if not fam:
            continue
        size = [r["instructions"] for r in fam]
        axes[0].plot(size, [r["c_compile"] for r in fam], "-" + marker, color="tab:blue",
                     label=f"C VM, {family}")
        axes[0].plot(size, [r["numba_compile"] for r in fam], "--" + marker, color="tab:red",
                     label=f"Numba, {family}")
        axes[1].plot(size, [r["c_call"] for r in fam], "-" + marker, color="tab:blue",
                     label=f"C VM, {family}")
        axes[1].plot(size, [r["numba_call"] for r in fam], "--" + marker, color="tab:red",
                     label=f"Numba, {family}")
        measured = [(r["instructions"], r["calls_to_break_even"]) for r in fam
                    if np.isfinite(r["calls_to_break_even"])]
        if measured:
            axes[2].plot(*zip(*measured), marker, color="black", label=f"measured, {family}")
        rule = [(r["instructions"], r["rule_promote_after"]) for r in fam
                if np.isfinite(r["rule_promote_after"])]
        if rule:
            axes[2].plot(*zip(*rule), "-" + marker, color="tab:green", alpha=0.6,
                         label=f"auto switches, {family}")
    titles = ("cold compile time", "time per call (value and gradient)",
              "calls after which Numba has paid for its compile")
    ylabels = ("seconds", "seconds per call", "calls")
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tape instructions")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].text(0.02, 0.02, "auto runs the C VM first and moves a function to\n"
                 "Numba after the green number of calls (never where\n"
                 "Numba is predicted slower per call)", transform=axes[2].transAxes,
                 fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "backend_choice.png"), dpi=90)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = ["| family | n | instructions | scalar share | C compile | Numba compile | "
             "C per call | Numba per call | break-even calls | auto switches after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['n']} | {r['instructions']} | {r['scalar_share']:.2f} | "
            f"{r['c_compile'] * 1e3:.1f} ms | {r['numba_compile']:.2f} s | "
            f"{r['c_call'] * 1e6:.2f} µs | {r['numba_call'] * 1e6:.2f} µs | "
            f"{_calls(r['calls_to_break_even'])} | {_calls(r['rule_promote_after'])} |")
    return "\n".join(lines)


def _calls(n: float) -> str:
    return "never" if not np.isfinite(n) else f"{n:,.0f}"


def run(quick: bool = False, only: list[str] | None = None) -> list[dict]:
    rows: list[dict] = []
    sizes = QUICK if quick else {k: v[1] for k, v in FAMILIES.items()}
    for family in only or list(FAMILIES):
        for n in sizes[family]:
            if rows and rows[-1]["family"] == family and rows[-1]["numba_compile"] * (
                    n / rows[-1]["n"]) > COMPILE_LIMIT_S:
                print(f"{family}: stopping before n={n} (Numba compile over "
                      f"{COMPILE_LIMIT_S:g} s predicted)")
                break
            row = measure(family, n)
            rows.append(row)
            print(f"  {family:14} n={n:<6} instrs={row['instructions']:<6} "
                  f"compile c={row['c_compile'] * 1e3:7.1f} ms numba={row['numba_compile']:6.2f} s"
                  f"  call c={row['c_call'] * 1e6:8.2f} µs numba={row['numba_call'] * 1e6:8.2f} µs"
                  f"  break-even {_calls(row['calls_to_break_even'])}  auto "
                  f"{_calls(row['rule_promote_after'])}", flush=True)
    return rows


def report(rows: list[dict], with_plot: bool = True) -> str:
    return "\n".join([
        "## Backends: compile time and call time against tape size (`backend=\"auto\"`)", "",
        "Each row builds one optimized value-and-gradient tape with both compiled backends "
        "(Numba cold, into an empty cache). *break-even calls*: the calls after which Numba's "
        "extra compile time is paid back by its faster calls, as measured; *auto switches "
        "after*: when `backend=\"auto\"` moves the function from the C VM to Numba, as its rule "
        "(fastad/backends/fallback.py) predicts from the tape alone.", "",
        table(rows), "", "![backend choice](backend_choice.png)" if with_plot else "", ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated families")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = run(args.quick, args.only.split(",") if args.only else None)
    with open(os.path.join(args.out, "backend_choice.json"), "w") as fh:
        json.dump(rows, fh, indent=1, default=float)
    with open(os.path.join(args.out, "backend_choice.md"), "w") as fh:
        fh.write(report(rows))
    plot(rows, args.out)
    print(table(rows))


if __name__ == "__main__":
    main()
