"""The BLAS-bound losses of issue 24 (logistic regression, tanh MLP, softmax
cross-entropy) with the C VM's transcendental functions on NumPy's loops and
on the C library's, side by side in one process:

    python benchmarks/transcendental.py [--rounds 9] [--only mlp,softmax]

Rows: the hand-written NumPy gradient, JAX ``jit(grad)``, fastad on the C VM
as built, and (if the VM has NumPy's loops, `_vm.use_numpy_loops`) the same
compiled gradient with the C library's functions, which is what the VM ran
before.  Data passed as arguments; interleaved rounds (`timing.interleaved`),
medians; every result checked against the hand-written gradient.  Run it with
another build of fastad first on ``PYTHONPATH`` to time that build's VM.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# as report.py does: a slow OpenBLAS kernel must not be measured as every row's time
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import engines  # noqa: E402
import timing  # noqa: E402
import usercode  # noqa: E402

WORKLOADS = ("logreg", "mlp", "softmax")
ROWS = ("numpy_hand", "jax", "fastad[c]")


def _with_loops(fn: Callable, on: bool) -> Callable:
    """fn with the VM's NumPy loops on or off during the call (both rows pay
    the same two switches, so they stay comparable)."""
    from fastad.backends import _vm

    def call() -> None:
        before = _vm.use_numpy_loops(on)
        try:
            fn()
        finally:
            _vm.use_numpy_loops(before)
    return call


def run(names: tuple[str, ...], rounds: int, min_round_s: float) -> None:
    from fastad.backends import _vm
    switchable = hasattr(_vm, "use_numpy_loops")
    for name in names:
        wl = usercode.BUILDERS[name]()
        calls = {}
        for case in usercode.cases(wl):
            if case.label not in ROWS or not isinstance(case, engines.Case):
                continue
            case.warm_up()
            fn = case.build()
            result = fn(*case.args)
            err = engines.check(wl, case.op, case.to_numpy(result))
            assert err <= usercode.TOLERANCE, (name, case.label, err)
            call = (lambda fn=fn, args=case.args: fn(*args))
            if case.label == "fastad[c]" and switchable:
                calls["fastad[c]"] = _with_loops(call, True)
                calls["fastad[c], C library"] = _with_loops(call, False)
            else:
                calls[case.label] = call
        steady = timing.interleaved(calls, (), min_round_s, rounds)
        hand = steady["numpy_hand"]
        print(f"{wl.name}: {wl.title}")
        for label, seconds in steady.items():
            print(f"  {label:24s} {timing.format_seconds(seconds):>10s}  {seconds / hand:5.2f}x hand")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--round-seconds", type=float, default=0.4)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; fastad from {os.path.dirname(__import__('fastad').__file__)}")
    run(tuple(args.only.split(",")), args.rounds, args.round_seconds)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
