"""``fastad.jacobian`` of f: R^n -> R^m in forward, reverse and automatic mode,
over a sweep of n/m, compiled (``fastad.jit``) and eager.

    python benchmarks/jacobian_sweep.py [--quick] [--repeat K] [--path jit|eager]
                                        [--out benchmarks/results]

Forward mode pushes n tangents through f, reverse mode pulls m cotangents
back; both are one batched pass over a basis seed matrix.  ``mode="auto"``
must be within 10 % of the better of the two at every point (issue target).
Writes ``jacobian.json``, ``jacobian.md`` and ``jacobian.png``; `report.py`
runs the same sweep as its ``jacobian`` section.

f is a small two-layer map with elementwise nonlinearities,
``y = tanh(B @ sin(A @ x)) * (C @ x)``, with A (h, n), B and C (m, h)/(m, n)
fixed, h = 32: each pass costs a few matrix products and elementwise chains.

BLAS runs on one thread (threadpoolctl, when installed): on a shared 2-core
machine its worker threads contend with other processes, and the threads a
heavy round leaves spinning slow down the round after it, which made the
same tape time up to 10x apart between runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fastad as fa  # noqa: E402
import timing  # noqa: E402

HIDDEN = 32
TOTAL = 10_000  # n * m is kept near this, so every point costs about the same
RATIOS = (1 / 100, 1 / 16, 1 / 4, 1 / 2, 1, 2, 4, 16, 100)  # n / m
QUICK_RATIOS = (1 / 16, 1, 16)
MODES = ("fwd", "rev", "auto")
TARGET = 1.10  # auto / best fixed mode


def make_problem(n: int, m: int):
    rng = np.random.default_rng(n * 7919 + m)
    A = rng.standard_normal((HIDDEN, n)) / np.sqrt(n)
    B = rng.standard_normal((m, HIDDEN)) / np.sqrt(HIDDEN)
    C = rng.standard_normal((m, n)) / np.sqrt(n)

    def f(x):
        return np.tanh(B @ np.sin(A @ x)) * (C @ x)
    return f, rng.standard_normal(n)


def sizes(ratio: float) -> tuple[int, int]:
    n = max(1, round(np.sqrt(TOTAL * ratio)))
    return n, max(1, round(TOTAL / n))


def measure_point(n: int, m: int, compiled: bool, min_round_s: float, rounds: int) -> dict:
    f, x = make_problem(n, m)
    row = {"n": n, "m": m, "compiled": compiled}
    results, fns = {}, {}
    for mode in MODES:
        jac = fa.jacobian(f, mode=mode)
        fns[mode] = fa.jit(jac, backend="c") if compiled else jac  # the mode, not the backend
        results[mode] = np.asarray(fns[mode](x))
    row.update(timing.interleaved(fns, (x,), min_round_s, rounds))
    ref = results["rev"]
    row["picked"] = fa.api.jacobian_mode(f, compiled=compiled)(x)
    row["agree"] = all(np.allclose(results[k], ref, rtol=1e-10, atol=1e-12) for k in MODES)
    best = min(row["fwd"], row["rev"])
    row["auto_vs_best"] = row["auto"] / best
    return row


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def run(quick: bool = False, repeat: int = 1, paths: tuple[bool, ...] = (True, False)
        ) -> list[dict]:
    with _one_blas_thread():
        return _run(quick, repeat, paths)


def _median_row(runs: list[dict]) -> dict:
    """Each mode's median over separate interleaved runs of one point (runs at
    different moments of a shared machine's load)."""
    row = dict(runs[0])
    for mode in MODES:
        row[mode] = timing.median([r[mode] for r in runs])
    row["agree"] = all(r["agree"] for r in runs)
    # auto against the best within each run: the pairs saw the same load
    row["auto_vs_best"] = timing.median([r["auto_vs_best"] for r in runs])
    return row


def _run(quick: bool, repeat: int, paths: tuple[bool, ...]) -> list[dict]:
    rows = []
    min_round_s, rounds = (0.1, 6) if quick else (0.3, 12)
    for compiled in paths:
        for ratio in (QUICK_RATIOS if quick else RATIOS):
            n, m = sizes(ratio)
            row = _median_row([measure_point(n, m, compiled, min_round_s, rounds)
                               for _ in range(repeat)])
            rows.append(row)
            print(f"  jacobian {'jit  ' if compiled else 'eager'} n={n:<4} m={m:<4} "
                  f"fwd {timing.format_seconds(row['fwd']):>9} rev "
                  f"{timing.format_seconds(row['rev']):>9} auto "
                  f"{timing.format_seconds(row['auto']):>9}  auto/best "
                  f"{row['auto_vs_best']:.2f} picks {row['picked']}"
                  f"{'' if row['agree'] else '  DISAGREE'}", flush=True)
    return rows


def chosen_vs_best(row: dict) -> float:
    """The time of the mode auto picks over the better one's, both from the
    fixed-mode rows (auto runs the very tape of the mode it picks; its own
    row differs from that mode's only by measurement)."""
    return row[row["picked"]] / min(row["fwd"], row["rev"])


def table(rows: list[dict], with_plot: bool = True) -> str:
    worst = max((chosen_vs_best(r) for r in rows), default=float("nan"))
    lines = ["## Jacobian: forward, reverse and automatic mode", "",
             "`fastad.jacobian(f, mode)` of f: R^n -> R^m (compiled: `fastad.jit(..., backend=\"c\")`), "
             "f(x) = tanh(B @ sin(A @ x)) * (C @ x), n * m ≈ "
             f"{TOTAL:,}; steady median per Jacobian. `auto` must be within "
             f"{(TARGET - 1) * 100:.0f} % of the better fixed mode: worst (picked mode) / "
             f"best here {worst:.2f}.", "",
             "| path | n | m | fwd | rev | auto | auto picks | picked / best | auto / best | "
             "modes agree |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'jit' if r['compiled'] else 'eager'} | {r['n']} | {r['m']} | "
                     f"{timing.format_seconds(r['fwd'])} | {timing.format_seconds(r['rev'])} | "
                     f"{timing.format_seconds(r['auto'])} | {r['picked']} | "
                     f"{chosen_vs_best(r):.2f} | {r['auto_vs_best']:.2f} | "
                     f"{'yes' if r['agree'] else '**NO**'} |")
    lines += ["", "![jacobian](jacobian.png)" if with_plot else "", ""]
    return "\n".join(lines)


def plot(rows: list[dict], out: str) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, compiled in zip(axes, (True, False)):
        part = [r for r in rows if r["compiled"] == compiled]
        if not part:
            continue
        ratio = [r["n"] / r["m"] for r in part]
        for mode, style in (("fwd", "o--"), ("rev", "s--"), ("auto", "-")):
            ax.plot(ratio, [r[mode] for r in part], style, label=mode,
                    linewidth=3 if mode == "auto" else 1, alpha=0.6 if mode == "auto" else 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n / m (inputs / outputs), n * m ≈ %d" % TOTAL)
        ax.set_ylabel("seconds per Jacobian")
        ax.set_title(f"jacobian, {'compiled (fastad.jit)' if compiled else 'eager'}",
                     fontsize=10)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "jacobian.png"), dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--repeat", type=int, default=1,
                        help="interleaved runs per point; the table shows their medians")
    parser.add_argument("--path", choices=("both", "jit", "eager"), default="both")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    paths = {"both": (True, False), "jit": (True,), "eager": (False,)}[args.path]
    rows = run(args.quick, args.repeat, paths)
    with open(os.path.join(args.out, "jacobian.json"), "w") as fh:
        json.dump(rows, fh, indent=1, default=float)
    with open(os.path.join(args.out, "jacobian.md"), "w") as fh:
        fh.write(table(rows))
    plot(rows, args.out)


if __name__ == "__main__":
    main()
