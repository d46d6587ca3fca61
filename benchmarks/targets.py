"""The speed targets of the issues, measured side by side.

    python benchmarks/report.py --only targets [--quick]

`report.py`'s workload tables time one row after another, so on a shared
machine two rows can be 20 % apart for reasons that are not theirs. Here the
rows that a target compares (fastad's backends, the hand-written Numba
gradient, JAX; W1 with and without guards) run in interleaved rounds in one
process (`timing.interleaved`), and each ratio is of medians taken together.
"""
from __future__ import annotations

from dataclasses import dataclass

import engines
import timing
import workloads


@dataclass
class Group:
    """Rows timed together: (workload, engine label) pairs; the first is the baseline."""

    title: str
    rows: list[tuple[str, str]]
    target: str  # what the issue asks, in words


FASTAD = ["fastad[c]", "fastad[numba]"]


def _rows(workload: str, labels: list[str]) -> list[tuple[str, str]]:
    return [(workload, label) for label in labels]


GROUPS = [
    Group("W1 n=100 (scalar loop)", _rows("W1-n100", ["numba_hand"] + FASTAD),
          "Numba backend ≤ 2× hand-written Numba (issue 6)"),
    Group("W1 n=1000 (rerolled loop)", _rows("W1-n1000", ["numba_hand"] + FASTAD),
          "≤ 2× hand-written Numba (issue 12)"),
    Group("W1 with guards, n=100", [("W1-n100", "fastad[c]"), ("W1g-n100", "fastad[c]"),
                                    ("W1-n100", "fastad[numba]"),
                                    ("W1g-n100", "fastad[numba]")],
          "guarded ≤ 1.05× plain, per backend (issue 5)"),
    Group("W1 with guards, n=1000", [("W1-n1000", "fastad[c]"), ("W1g-n1000", "fastad[c]"),
                                     ("W1-n1000", "fastad[numba]"),
                                     ("W1g-n1000", "fastad[numba]")],
          "guarded ≤ 1.05× plain, per backend (issue 5)"),
    Group("W2 n=1000", _rows("W2-n1000", ["numba_hand"] + FASTAD + ["jax"]),
          "≤ 2× hand-written Numba (issue 7)"),
    Group("W2 n=1e6", _rows("W2-n1e6", ["jax", "numba_hand"] + FASTAD),
          "≤ 1× JAX jit (issue 7)"),
    Group("W4 (n=10)", _rows("W4-tiny", ["numba_hand"] + FASTAD + ["jax"]),
          "≤ 2× hand-written Numba (compiled-path issue)"),
    Group("W5 HVP n=1000", _rows("W5-hvp", ["numba_hand"] + FASTAD + ["jax"]),
          "≤ 4× the compiled gradient, ahead of the peers (issue 4)"),
]


def _timed(workload: str, label: str, quick: bool):
    """The function to time for one row and its arguments, its result checked."""
    wl = workloads.select(workload)[0]
    case = engines.find(wl, label, quick)
    case.warm_up()
    fn = case.build()
    result = fn(*case.args)
    error = engines.check(wl, case.op, case.to_numpy(result))
    if not error <= 1e-6:
        raise AssertionError(f"{workload} {label}: relative error {error:.2e}")
    return fn, case.args


def run(quick: bool) -> list[dict]:
    results = []
    for group in GROUPS:
        print(f"  {group.title}", flush=True)
        calls, missing = {}, {}
        for workload, label in group.rows:
            key = f"{label} {workload}"
            try:
                fn, args = _timed(workload, label, quick)
            except (KeyError, ImportError) as exc:
                missing[key] = f"not run: {exc}"
                continue
            calls[key] = lambda fn=fn, args=args: fn(*args)
        medians = timing.interleaved(calls, (), 0.05 if quick else 0.2, 5 if quick else 11)
        results.append({"title": group.title, "target": group.target,
                        "rows": [f"{label} {workload}" for workload, label in group.rows],
                        "seconds": medians, "missing": missing})
    return results


def report(results: list[dict]) -> str:
    lines = ["## Targets, measured side by side", "",
             "Each group's rows ran in interleaved rounds in one process; medians, and "
             "each row's time over the group's first row.", "",
             "| group | row | median | / first row | target |", "|---|---|---|---|---|"]
    for res in results:
        seconds = res["seconds"]
        base = seconds.get(res["rows"][0])
        for k, key in enumerate(res["rows"]):
            t = seconds.get(key)
            cell = timing.format_seconds(t) if t is not None else res["missing"].get(key, "–")
            ratio = f"{t / base:.2f}" if t is not None and base else "–"
            lines.append(f"| {res['title'] if k == 0 else ''} | {key} | {cell} | {ratio} "
                         f"| {res['target'] if k == 0 else ''} |")
    lines.append("")
    return "\n".join(lines)
