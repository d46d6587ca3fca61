"""Are two trees' tapes and gradients byte for byte the same?

    python benchmarks/tape_digests.py --trees /work/main,/tmp/branch [--programs 40]

For a change meant to make tracing, rerolling or recurrence detection faster
without changing what they produce.  Each tree runs in its own process,
with its fastad first on ``sys.path``, on the same programs: those of the
loop-program generators of tests/test_reroll_fuzz.py and
tests/test_recurrence.py and of the program generator of tests/test_fuzz.py
(drawn once by hypothesis, derandomized, in a process that only collects
them, and pickled: every tree runs the very same programs),
plus powloop, the RK4 fit and a chained logsumexp
(benchmarks/first_calls.py).  Every program is compiled (``fa.compile``,
``backend="c"``) and differentiated; the digest of a program covers the
tape each call of `find_recurrences`, `reroll` and `reroll_bodies` receives
and returns (``Tape.to_bytes``, source lines included), the compiled
tapes of its cache entries, and its gradient's bytes.  The generators are
imported from this script's tree in both processes, so that the source
lines recorded name the same files.  Prints each mismatch and exits 1 if
there is one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")


def _digest_run(fa, specializer, f, args, argnums=0) -> str:
    import numpy as np
    h = hashlib.sha1()

    def recorded(fn):
        def run(tape, *a, **k):
            h.update(tape.to_bytes())
            out = fn(tape, *a, **k)
            h.update(b"-" if out is None else out.to_bytes())
            return out
        return run
    saved = (specializer.find_recurrences, specializer.reroll, specializer.reroll_bodies)
    specializer.find_recurrences, specializer.reroll, specializer.reroll_bodies = map(
        recorded, saved)
    try:
        g = fa.compile(f, argnums=argnums, backend="c")
        try:
            grad = g(*args)
        except Exception as exc:  # the same refusal in both trees is no difference
            return "raised " + type(exc).__name__
    finally:
        specializer.find_recurrences, specializer.reroll, specializer.reroll_bodies = saved
    for entries in g._main.cache.values():
        for e in entries:
            h.update(e.tape.to_bytes())
    for leaf in (grad if isinstance(grad, tuple) else (grad,)):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()[:16]


def _generators():
    sys.path.insert(1, TESTS)
    sys.path.insert(2, HERE)
    import test_fuzz
    import test_recurrence
    import test_reroll_fuzz
    return test_fuzz, test_recurrence, test_reroll_fuzz


def generate(path: str, programs: int) -> None:
    """Draw the programs (hypothesis, derandomized) and pickle them to ``path``.
    The test bodies only collect: what a tree does with a program must not
    steer which programs are drawn."""
    import numpy as np
    from hypothesis import Phase, given, settings
    from hypothesis import strategies as st
    test_fuzz, test_recurrence, test_reroll_fuzz = _generators()
    drawn: list[tuple[str, Any]] = []
    once = settings(max_examples=programs, derandomize=True, database=None, deadline=None,
                    phases=[Phase.generate])

    @once
    @given(prog=test_reroll_fuzz.loop_programs(), seed=st.integers(0, 2**16))
    def reroll_programs(prog, seed):
        drawn.append(("reroll", (prog, seed)))

    @once
    @given(spec=test_recurrence.programs())
    def recurrence_programs(spec):
        drawn.append(("recurrence", spec))

    @once
    @given(prog=test_fuzz.programs(), seed=st.integers(0, 2**16))
    def fuzz_programs(prog, seed):
        if not prog.complex and prog.dtype == np.float64:
            drawn.append(("fuzz", (prog, seed)))

    reroll_programs()
    recurrence_programs()
    fuzz_programs()
    with open(path, "wb") as fh:
        pickle.dump(drawn, fh)


def child(tree: str, path: str) -> dict[str, str]:
    sys.path.insert(0, tree)
    import fastad as fa
    from fastad import specializer
    assert os.path.realpath(fa.__file__).startswith(os.path.realpath(tree) + os.sep)
    test_fuzz, test_recurrence, test_reroll_fuzz = _generators()
    import first_calls
    with open(path, "rb") as fh:
        drawn = pickle.load(fh)
    out: dict[str, str] = {}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, (kind, what) in enumerate(drawn):
            if kind == "reroll":
                prog, seed = what
                f, args, argnums = prog, (test_reroll_fuzz.inputs(seed)[0],), 0
            elif kind == "recurrence":
                f, args = test_recurrence.make_program(what), test_recurrence._args(what)
                argnums = (0, 2)
            else:
                prog, seed = what
                f = test_fuzz.weighted_loss(prog, test_fuzz.weights(prog, seed))
                args, argnums = prog.inputs, tuple(range(len(prog.inputs)))
            out[f"{kind} {k}"] = _digest_run(fa, specializer, f, args, argnums)
        for name in ("powloop-3000", "rk4-300", "lse-2000", "lj-20"):
            f, args = first_calls.workload(name)
            out[name] = _digest_run(fa, specializer, f, args)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", default="/work/main," + os.path.dirname(HERE))
    parser.add_argument("--programs", type=int, default=40)
    parser.add_argument("--child", nargs=2, metavar=("TREE", "PROGRAMS_FILE"))
    parser.add_argument("--generate", nargs=1, metavar="PROGRAMS_FILE")
    args = parser.parse_args()
    if args.generate:
        generate(args.generate[0], args.programs)
        return
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "programs.pickle")
        subprocess.run([sys.executable, __file__, "--generate", path,
                        "--programs", str(args.programs)], check=True, timeout=3000)
        for tree in args.trees.split(","):
            done = subprocess.run([sys.executable, __file__, "--child", tree, path],
                                  capture_output=True, text=True, timeout=3000)
            if done.returncode:
                sys.exit(f"{tree}: {done.stderr[-2000:]}")
            results[tree] = json.loads(done.stdout.strip().splitlines()[-1])
    (a, da), *rest = results.items()
    bad = 0
    for b, db in rest:
        for key in sorted(set(da) | set(db)):
            if da.get(key) != db.get(key):
                bad += 1
                print(f"differs: {key}: {a} {da.get(key)}  {b} {db.get(key)}")
    print(f"{len(da)} programs, {bad} differing")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
