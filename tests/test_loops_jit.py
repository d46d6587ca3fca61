"""The C VM's native steps for scalar loops (csrc/jit.c): generated scalar
recurrences (their values and gradients, whose tapes hold forward, storing,
checkpointed and reverse loops) run with native steps and interpreted, bit
for bit; against the reference interpreter and central finite differences;
bodies mixing scalar and vector code stay interpreted with the same results."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import fastad as fa
from fastad.backends.reference import evaluate
from conftest import BACKENDS
from helpers import FAST

pytestmark = pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")

# Each op maps the step's pool of scalars (the carries, x[t], the closed-over
# parameters, values computed before) to a new one, bounded on the inputs
# below; together they lower to every scalar opcode the native code takes.
OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.5 + b * b),
    "neg": lambda a, b: -a,
    "nmul": lambda a, b: -(a * b),
    "muladd": lambda a, b: a + b * 0.3,
    "mulsub": lambda a, b: a - 0.7 * b,
    "square": lambda a, b: np.square(a),
    "sin": lambda a, b: np.sin(a),
    "tanh": lambda a, b: np.tanh(b),
    "exp": lambda a, b: np.exp(np.tanh(a)),
    "pow": lambda a, b: (1.0 + a * a) ** -1.5,
}
EXACT = {"add", "sub", "mul", "div", "neg", "nmul", "muladd", "mulsub", "square"}


@st.composite
def scalar_loops(draw):
    n = draw(st.integers(1, 4))
    ops = [(draw(st.sampled_from(sorted(OPS))), draw(st.integers(0, 64)),
            draw(st.integers(0, 64))) for _ in range(draw(st.integers(1, 10)))]
    return {
        "carries": n, "ops": ops, "length": draw(st.integers(1, 40)),
        # how each carry is updated: damped towards a computed value, squashed,
        # or passed on from another carry (a swap moves through the scratch region)
        "updates": [(draw(st.sampled_from(["damp", "tanh", "pass"])), draw(st.integers(0, 64)))
                    for _ in range(n)],
        "reverse": draw(st.booleans()), "ys": draw(st.booleans()),
        "checkpoint": draw(st.none() | st.integers(1, 5)),
        "kind": draw(st.sampled_from(["scan", "scan", "while", "array", "mixed"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _step(spec, theta):
    n = spec["carries"]

    def step(carry, x):
        pool = list(carry[:n]) + [x, theta[0], theta[1]]
        if spec["kind"] == "array":  # a small carried array, read and written point by point
            pool += [-carry[n][0], carry[n][1] * theta[0]]
        for op, a, b in spec["ops"]:
            pool.append(OPS[op](pool[a % len(pool)], pool[b % len(pool)]))
        new = []
        for j, (how, src) in enumerate(spec["updates"]):
            v = pool[src % len(pool)]
            if how == "damp":
                new.append(carry[j] * 0.9 + 0.1 * v)
            elif how == "tanh":
                new.append(np.tanh(v))
            else:
                new.append(carry[(j + 1) % n])
        if spec["kind"] == "mixed":  # a vector carried along: no native step
            new.append(np.sin(carry[n] * theta[0]) + pool[-1])
        elif spec["kind"] == "array":
            arr = carry[n] * 1.0
            arr[0] = pool[-1] * 0.5 - carry[n][1] * theta[1]
            arr[1] = np.tanh(pool[len(pool) // 2])
            new.append(arr)
        return tuple(new), (pool[-1] * 2.0 if spec["ys"] else None)
    return step


def _loss(spec):
    n = spec["carries"]

    def loss(theta, xs):
        init = tuple(theta[2 + j] for j in range(n))
        if spec["kind"] == "mixed":
            init = init + (theta[:3] * 0.5,)
        elif spec["kind"] == "array":
            init = init + (theta[:2] * 0.5,)
        if spec["kind"] == "while":
            # a counter carried with the state; the trip count read at run time
            def body(c):
                new, _ = _step(spec, theta)(c[:-1], c[-1] * 0.01)
                return new + (c[-1] + 1.0,)
            carry = fa.while_loop(lambda c: c[-1] < spec["length"], body, init + (0.0,))
            ys = None
        else:
            carry, ys = fa.scan(_step(spec, theta), init, xs, reverse=spec["reverse"],
                                checkpoint=spec["checkpoint"])
        total = sum(np.sum(c * c) * (k + 1) for k, c in enumerate(carry[:n + 1]))
        if ys is not None:
            total = total + np.sum(ys * ys)
        return total
    return loss


def _args(spec, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.8, 0.8, 2 + spec["carries"]), rng.uniform(-1, 1, spec["length"])


def _run(tape, args, native, avx=True):
    """The optimized tape on the VM, with native steps or without (``avx``:
    in AVX's encoding where the processor has it, else SSE2's); whether
    some loop of the program had native steps."""
    from fastad.backends import _vm, c_backend
    from fastad.backends.lower import lower
    before = _vm.use_jit(native, avx)
    try:
        exe = c_backend.Executable(lower(tape))
    finally:
        _vm.use_jit(before)
    return exe.run(list(args)), exe.native_loops


def _native_platform():
    import platform
    import sys
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


@FAST
@given(scalar_loops())
def test_native_steps_equal_the_interpreter_bit_for_bit(spec):
    from fastad.transforms.optimize import optimize
    f = _loss(spec)
    args = _args(spec, spec["seed"])
    tape = optimize(fa.make_tape(fa.value_and_grad(f))(*args))
    native, had_native = _run(tape, args, True)
    two_operand, _ = _run(tape, args, True, avx=False)
    interpreted, had_none = _run(tape, args, False)
    assert not had_none
    if spec["kind"] != "mixed":  # a mixed body may be native or not: the same results
        assert had_native == _native_platform()
    assert [np.asarray(v).tobytes() for v in native] == \
        [np.asarray(v).tobytes() for v in interpreted] == \
        [np.asarray(v).tobytes() for v in two_operand]
    # the reference interpreter: the same bits where every operation is one
    # IEEE operation in both, else to rounding.  The value's sum of the per-step
    # outputs is the exception: the VM adds four or more terms in four partial
    # sums, the reference in NumPy's order, so that value agrees to rounding.
    want = evaluate(tape, list(args))
    exact = spec["kind"] != "mixed" and all(op in EXACT for op, _, _ in spec["ops"]) \
        and all(how != "tanh" for how, _ in spec["updates"])
    summed = spec["ys"] and spec["kind"] != "while" and spec["length"] >= 4
    for k, (a, b) in enumerate(zip(native, want)):
        if exact and not (k == 0 and summed):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@FAST
@given(scalar_loops(), st.integers(0, 2**31 - 1))
def test_native_gradients_against_finite_differences(spec, seed):
    f = _loss(spec)
    args = _args(spec, spec["seed"])
    value, grad = fa.compile(f, backend="c").value_and_grad(*args)
    assert value == pytest.approx(f(*args), rel=1e-12, abs=1e-12)
    d = np.random.default_rng(seed).standard_normal(args[0].shape)
    h = 1e-6
    fd = (f(args[0] + h * d, args[1]) - f(args[0] - h * d, args[1])) / (2 * h)
    assert np.sum(grad * d) == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_the_lowering_s_scalar_opcodes_run_natively():
    """One loop whose gradient's tape holds the scalar opcodes the lowering
    makes (SUB_S, NACC_S and SQUARE_S it folds into others; the assembled
    programs below hold them), native against interpreted."""
    from fastad.transforms.optimize import optimize
    spec = {"carries": 3, "length": 9, "reverse": True, "ys": True, "checkpoint": 2,
            "kind": "array", "seed": 3,
            # a chain: each op reads the one before (the pool starts with 8 values)
            "ops": [(op, 7 + k, k % 8) for k, op in enumerate(sorted(OPS))],
            "updates": [("damp", 18), ("pass", 0), ("tanh", 17)]}
    args = _args(spec, 3)
    tape = optimize(fa.make_tape(fa.value_and_grad(_loss(spec)))(*args))
    from fastad.backends.lower import lower
    listing = str(lower(tape))
    for op in ("ADD_S", "MUL_S", "DIV_S", "NMUL_S", "MULADD_S", "MULSUB_S",
               "UNARY_S", "BINARY_S", "NEG_S", "ACC_S", "MOV_S", "MULACC_S", "NMULACC_S",
               "COPY_V", "ZERO_V"):
        assert f" {op} " in listing, op
    native, had_native = _run(tape, args, True)
    assert had_native == _native_platform()
    interpreted, _ = _run(tape, args, False)
    assert [np.asarray(v).tobytes() for v in native] == \
        [np.asarray(v).tobytes() for v in interpreted]


# -- LOOP programs assembled word by word ---------------------------------------------
# Operands alias at random (a result written over its own operand, a carry
# that is its own output, carries that swap), rows run forwards or backwards
# and span one to three words: shapes the lowering rarely makes.
SCALAR_OPS = {"ADD_S": 3, "SUB_S": 3, "MUL_S": 3, "DIV_S": 3, "NEG_S": 2, "NMUL_S": 3,
              "MULADD_S": 4, "MULSUB_S": 4, "SQUARE_S": 2, "MOV_S": 2, "ACC_S": 2, "NACC_S": 2,
              "MULACC_S": 3, "NMULACC_S": 3, "UNARY_S": 3, "BINARY_S": 4, "COPY_V": 4,
              "ZERO_V": 3}
SLOTS = 12  # float64 slots the body computes in, at elements 8..19


@st.composite
def loop_words(draw, slots=SLOTS, length=14, until=False):
    """A LOOP program's words.  slots= and length= past the registers' number
    make the native code reuse registers (storing their values late);
    until=True: a while loop, its condition a word counted down one unit of
    its lowest byte per step (from up to 130: across the native chunks
    between polls) in a slot the body reads but never writes."""
    steps = draw(st.integers(0, 12) | st.sampled_from([63, 64, 65, 66, 130]))
    slot = st.integers(8, 8 + slots - 1)
    body = []
    for _ in range(draw(st.integers(0, length))):
        name = draw(st.sampled_from(sorted(SCALAR_OPS)))
        if name == "UNARY_S":
            body.append((name, draw(st.sampled_from(["sin", "exp", "tanh", "neg"])),
                         draw(slot), draw(slot)))
        elif name == "BINARY_S":
            body.append((name, draw(st.sampled_from(["pow", "arctan2", "maximum"])),
                         draw(slot), draw(slot), draw(slot)))
        elif name in ("COPY_V", "ZERO_V"):
            n = draw(st.integers(0, 3))
            o = draw(st.integers(8, 8 + slots - n))
            body.append((name, o, draw(st.integers(8, 8 + slots - n)), n) if name == "COPY_V"
                        else (name, o, n))
        else:
            body.append((name,) + tuple(draw(slot) for _ in range(SCALAR_OPS[name])))
    words = st.integers(1, 3)
    if until:
        cond, unit = 8 + slots, 8 + slots + 1
        # the countdown somewhere in the body, the condition read before and after it
        body.insert(draw(st.integers(0, len(body))), ("NACC_S", cond, unit))
        for _ in range(draw(st.integers(0, 3))):
            body.insert(draw(st.integers(0, len(body))),
                        (draw(st.sampled_from(["ADD_S", "MUL_S"])), draw(slot), cond,
                         draw(slot)))
        return {"steps": steps, "body": body, "slots": slots, "until": True,
                "carries": [(draw(slot), draw(slot), draw(words))
                            for _ in range(draw(st.integers(0, 7)))],
                "xs": [], "ys": [], "seed": draw(st.integers(0, 2**16))}
    return {"steps": steps, "body": body, "slots": slots,
            "carries": [(draw(slot), draw(slot), draw(words))
                        for _ in range(draw(st.integers(0, 4)))],
            # rows up or down a stacked array, or all over the slots from one on
            "xs": [(draw(slot), draw(words), draw(st.sampled_from(["up", "down"]) | slot))
                   for _ in range(draw(st.integers(0, 2)))],
            "ys": [(draw(slot), draw(words), draw(st.sampled_from(["up", "down"]) | slot))
                   for _ in range(draw(st.integers(0, 2)))],
            "seed": draw(st.integers(0, 2**16))}


def _assembled(spec):
    """The spec as a Program: one LOOP over the slots and the stacked arrays
    after them, the arena's words all one input (copied in) and one output."""
    from fastad.backends.lower import BINARY, OP, UNARY, Program
    from fastad.backends.vm_header import CONSTANTS, NARGS
    code = []
    for name, *w in spec["body"]:
        if name in ("UNARY_S", "BINARY_S"):
            w[0] = (UNARY if name == "UNARY_S" else BINARY)[w[0]]
        if name in ("COPY_V", "ZERO_V"):
            w = [0] + w  # float64
        assert len(w) == NARGS[OP[name]], (name, w)  # else the words decode as other code
        code += [OP[name]] + list(w)
    code.append(OP["HALT"])
    code = [OP["LOOP"], 0, len(code)] + code + [OP["HALT"]]
    slots, until = spec.get("slots", SLOTS), spec.get("until", False)
    # a while loop's condition and its unit, then the count of its steps
    T, at = spec["steps"], 8 * (8 + slots + 3 * until)
    entries = []
    for slot, n, rows in spec["xs"] + spec["ys"]:
        # (slot, stacked, bytes, stride); a row of n words may overlap the next slots
        n = min(n, 8 + slots - slot)
        if not isinstance(rows, str):  # every row over slots rows.. (stride 0)
            n = min(n, 8 + slots - rows)
            entries.append((8 * slot, 8 * rows, 8 * n, 0))
            continue
        back = rows == "down"
        stride = -8 * n if back else 8 * n
        entries.append((8 * slot, at + (8 * n * (T - 1) if back and T else 0), 8 * n, stride))
        at += 8 * n * max(T, 1)
    scratch = at
    at += 8 * (3 * len(spec["carries"]) + 1)
    # a carry of n words (a small array) within the slots
    carries = [(8 * i, 8 * o, 8 * min(n, 8 + slots - max(i, o)), 0)
               for i, o, n in spec["carries"]]
    if until:  # the condition carried last, its own output
        carries.append((8 * (8 + slots), 8 * (8 + slots), 8, 0))
    meta = [-1 if until else T, len(carries), len(spec["xs"]), len(spec["ys"]), scratch,
            8 * (8 + slots + 2) if until else -1]
    meta += [w for e in carries + entries for w in e]
    f64 = np.dtype(np.float64)
    words = (at - 64) // 8
    arena = -(-at // 64) * 64
    return Program(np.array(code, np.int32), np.array(meta, np.int64), np.zeros(0, np.int64),
                   b"", arena, [(64, f64, (words,))], [(64, f64, (words,))]), words


# NaNs of either sign and two payloads (NumPy's nan is positive, x86's 0 * inf
# negative): which of two NaN operands an operation passes on is part of the
# interpreter's bits.
NANS = np.array([0x7FF8000000000001, 0xFFF8000000000002], np.uint64).view(np.float64)


def _native_and_interpreted(program, x):
    """The program's outputs for x with native steps and interpreted, as
    bytes, and whether its loop had native steps; None if the validator
    refuses it."""
    from fastad.backends import _vm, c_backend
    from fastad.core.errors import TapeError
    results, had_native = {}, {}
    # native code in AVX's three-operand encoding (where the processor has
    # it), in SSE2's two-operand one, and interpreted
    for native, avx in ((True, True), (True, False), (False, True)):
        before = _vm.use_jit(native, avx)
        try:
            exe = c_backend.Executable(program)
        except TapeError:
            return None  # regions the validator refuses: nothing runs, either way
        finally:
            _vm.use_jit(before)
        results[native, avx] = [np.asarray(v).tobytes() for v in exe.run([x])]
        had_native[native, avx] = exe.native_loops
    assert not had_native[False, True]
    assert results[True, False] == results[True, True]
    return results[True, True], results[False, True], had_native[True, True]


@FAST
@given(loop_words())
# a later carry's move over an earlier carry's slot; a row stored over a carry's new value
@example({"steps": 2, "body": [("ACC_S", 8, 10), ("ACC_S", 8, 8)],
          "carries": [(10, 8, 1), (9, 8, 2)], "xs": [], "ys": [], "seed": 0})
@example({"steps": 3, "body": [("MOV_S", 13, 8), ("MOV_S", 10, 11), ("MOV_S", 9, 12)],
          "carries": [(8, 10, 1)], "xs": [], "ys": [(9, 1, 10)], "seed": 0})
def test_assembled_scalar_loops_native_and_interpreted_agree(spec):
    _check_native_against_interpreted(spec)


def _check_native_against_interpreted(spec):
    program, words = _assembled(spec)
    results = _native_and_interpreted(program, _assembled_inputs(spec, words))
    if results is not None:
        assert results[0] == results[1]
        # rows over slots, which memmove copies either way, are interpreted
        if all(isinstance(rows, str) for _, _, rows in spec["xs"] + spec["ys"]):
            assert results[2] == _native_platform()


def _assembled_inputs(spec, words):
    """Random arena words, one in ten a signed zero, an infinity or a NaN; a
    while loop's condition counting down from spec["steps"]."""
    rng = np.random.default_rng(spec["seed"])
    x = rng.standard_normal(words) * rng.choice([1.0, 1.0, 1e3, 1e-3], words)
    x[rng.uniform(size=words) < 0.1] = rng.choice([0.0, -0.0, np.inf, -np.inf, *NANS])
    if spec.get("until"):
        cond = spec["slots"]  # the words start at element 8
        x[cond:cond + 2] = np.array([0x3FF0000000000000 + spec["steps"], 0x3CB0000000000000],
                                    np.uint64).view(np.float64)  # 1 + steps ulps, one ulp
    return x


@FAST
@given(st.one_of(loop_words(slots=40, length=80), loop_words(slots=24, length=40),
                 loop_words(slots=12, until=True), loop_words(slots=40, length=80, until=True)))
# a value kept past the registers' number, then read by a carry, a row and a helper
@example({"steps": 3, "slots": 20, "seed": 1,
          "body": [("MOV_S", 8 + i, 8 + (i + 1) % 20) for i in range(19)]
          + [("UNARY_S", "sin", 27, 8), ("ADD_S", 26, 9, 10)],
          "carries": [(8, 9, 1), (12, 26, 2)], "xs": [(11, 1, "up")], "ys": [(10, 2, "down")]})
def test_long_bodies_and_while_loops_native_and_interpreted_agree(spec):
    """Bodies of more values than registers (results stored only when their
    register is taken), and while loops whose condition the body writes (its
    value stored before the next step's test), over one to three chunks of
    native steps: the interpreter's arena, bit for bit."""
    _check_native_against_interpreted(spec)


@pytest.mark.parametrize("name", [n for n in SCALAR_OPS if n not in ("COPY_V", "ZERO_V")])
def test_nan_operands_give_the_interpreter_s_nan(name):
    """Each scalar opcode over every choice of a positive NaN, a negative NaN
    or a number for each operand (one step per choice): the native code
    passes on the NaN the compiled interpreter passes on, sign and payload."""
    import itertools
    # the result in slot 9 (read first by ACC_S and the like), a row in 9..12 per step
    instr = (name, 9, 10, 11, 12)[:1 + SCALAR_OPS[name]]
    if name in ("UNARY_S", "BINARY_S"):
        instr = (name, "sin" if name == "UNARY_S" else "maximum") + instr[1:-1]
    choices = list(itertools.product([NANS[0], NANS[1], 2.0], repeat=4))
    spec = {"steps": len(choices), "body": [instr], "carries": [],
            "xs": [(9, 4, "up")], "ys": [(9, 1, "up")], "seed": 0}
    program, words = _assembled(spec)
    x = np.zeros(words)
    x[SLOTS:SLOTS + 4 * len(choices)] = np.ravel(choices)  # the stacked rows, after the slots
    native, interpreted, had_native = _native_and_interpreted(program, x)
    assert native == interpreted and had_native == _native_platform()


def test_hostile_descriptors_of_native_loops_are_refused_or_run_without_crashing():
    """Every word of every LOOP descriptor of a scalar loop's gradient (whose
    loops have native steps), and each body's length, set to hostile values:
    the validator refuses the program, or it runs (its loops native where they
    still qualify) computing garbage, never crashing."""
    from fastad.backends import c_backend
    from fastad.backends.lower import lower
    from helpers import run_corrupted_loops
    spec = {"carries": 2, "length": 6, "reverse": True, "ys": True, "checkpoint": 2,
            "kind": "scan", "seed": 1, "ops": [("mul", 0, 1), ("sin", 6, 0), ("add", 7, 2)],
            "updates": [("damp", 8), ("pass", 0)]}
    args = list(_args(spec, 1))
    program = lower(fa.make_tape(fa.grad(_loss(spec)))(*args))
    want = c_backend.Executable(program).run(args)
    rejected, ran, native = run_corrupted_loops(
        program, args, (-(2**40), -9, -1, 0, 1, 7, 8, 13, 256, 264, program.arena_bytes,
                        2**31 - 1, 2**40))
    assert rejected > 50 and ran > 50 and (native > 50 or not _native_platform())
    np.testing.assert_array_equal(c_backend.Executable(program).run(args)[0], want[0])


_NO_EXEC_RUN = """
import ctypes, sys
import numpy as np
import fastad as fa
from fastad.backends import c_backend
from fastad.backends.lower import lower
def f(theta, xs):
    step = lambda c, x: ((c[0] * 0.9 + x * theta[0], c[1] - c[0] * theta[1]), None)
    carry, _ = fa.scan(step, (theta[0], theta[1]), xs)
    return carry[0] * carry[1]
args = [np.array([0.3, -0.2]), np.linspace(-1, 1, 7)]
program = lower(fa.make_tape(fa.value_and_grad(f))(*args))
before = c_backend.Executable(program)
want = [np.asarray(v).tobytes() for v in before.run(args)]
# PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3): no mapping may become executable
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
after = c_backend.Executable(program)
got = [np.asarray(v).tobytes() for v in after.run(args)]
same = before.run(args)[0] == after.run(args)[0]  # the native code built before still runs
print(before.native_loops, after.native_loops, got == want, same)
"""


@pytest.mark.skipif(not _native_platform(), reason="native steps are built on x86-64 Linux only")
def test_without_executable_memory_loops_are_interpreted():
    """A process that may not make memory executable (as under SELinux's or
    systemd's deny-write-execute policies) builds no native steps and
    interprets the loops, with the same results; native code built before
    keeps running."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(fa.__file__))
    env = dict(os.environ, PYTHONPATH=root, FASTAD_NO_JIT="")
    done = subprocess.run([sys.executable, "-c", _NO_EXEC_RUN], env=env, capture_output=True,
                          text=True, timeout=120, cwd=root)
    if done.returncode == 77:
        pytest.skip("the kernel has no PR_SET_MDWE")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "True", "True"]


def test_ctrl_c_stops_a_native_loop():
    """SIGINT 0.2 s into a loop of native steps that would take over a second
    (its trip count raised in the program, timed beforehand): KeyboardInterrupt
    well before it would have finished (loop.c polls between chunks of
    steps), and native steps then give the interpreter's results."""
    import threading
    import time
    from fastad.backends import _vm, c_backend
    from fastad.backends.lower import lower
    from helpers import altered, loop_descriptors, seconds_until_interrupted
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")

    def f(theta):
        step = lambda c, _: (c * 0.999 + theta[0] * c / (1.0 + c * c), None)
        return fa.scan(step, theta[1], length=1000)[0]
    theta = np.array([0.5, 0.25])
    program = lower(fa.make_tape(f)(theta))
    (_, d, _, _), = loop_descriptors(program)

    def executable(steps):
        meta = program.meta.copy()
        meta[d] = steps
        return c_backend.Executable(altered(program, meta=meta))
    short = executable(100_000)
    start = time.perf_counter()
    short.run([theta])
    per_step = (time.perf_counter() - start) / 100_000
    steps = int(1.2 / per_step)  # about 1.2 s uninterrupted
    exe = executable(steps)
    assert exe.native_loops == _native_platform()
    elapsed = seconds_until_interrupted(lambda: exe.run([theta]))
    assert 0.2 <= elapsed < 0.6 * per_step * steps
    before = _vm.use_jit(False)
    try:
        want = executable(100_000).run([theta])[0]
    finally:
        _vm.use_jit(before)
    np.testing.assert_array_equal(short.run([theta])[0], want)


def test_threads_share_an_executable_s_native_steps():
    """Two threads running one Executable's native steps at once (each run
    on an arena of its own; the code is read-only): each gets the results
    of running alone."""
    import threading
    from fastad.backends import c_backend
    from fastad.backends.lower import lower
    spec = {"carries": 2, "length": 30, "reverse": False, "ys": True, "checkpoint": None,
            "kind": "scan", "seed": 2, "ops": [("mul", 0, 1), ("sin", 6, 0), ("muladd", 7, 2)],
            "updates": [("damp", 8), ("tanh", 0)]}
    args = [list(_args(spec, seed)) for seed in range(8)]
    program = lower(fa.make_tape(fa.value_and_grad(_loss(spec)))(*args[0]))
    exe = c_backend.Executable(program)
    assert exe.native_loops == _native_platform()
    want = [[np.asarray(v).tobytes() for v in exe.run(a)] for a in args]
    got = [[] for _ in range(2)]

    def work(k):
        for _ in range(50):
            got[k].append([[np.asarray(v).tobytes() for v in exe.run(a)] for a in args])
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(rounds == want for results in got for rounds in results)
