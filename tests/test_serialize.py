"""Compiled functions pickle as tapes, load in a fresh process, and reject
corrupt or hostile payloads with a clear error."""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastad as fa
from fastad.backends import c_backend
from fastad.backends.lower import lower
from fastad.tape import Aval, Instr, Tape


def loss(p, x):
    return np.sum(np.tanh(p["w"] * x) ** 2) + p["b"] ** 2


def make():
    g = fa.compile(loss, backend="numpy")
    p = {"w": np.linspace(0.1, 1, 4), "b": 0.3}
    x = np.arange(4.0)
    return g, p, x


def test_round_trip_in_a_fresh_process(tmp_path, backend):
    g = fa.compile(loss, backend=backend)
    _, p, x = make()
    expected = g(p, x)
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(g))
    script = textwrap.dedent(f"""
        import pickle, numpy as np
        g = pickle.loads(open({str(path)!r}, "rb").read())
        out = g({{"w": np.linspace(0.1, 1, 4), "b": 0.3}}, np.arange(4.0))
        print(repr(out["w"].tolist()), repr(float(out["b"])))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    w, b = done.stdout.split("] ")
    np.testing.assert_allclose(eval(w + "]"), expected["w"], rtol=1e-15)
    np.testing.assert_allclose(float(b), expected["b"], rtol=1e-15)


def test_loaded_function_refuses_new_signatures():
    g, p, x = make()
    g(p, x)
    h = fa.loads(fa.dumps(g))
    np.testing.assert_allclose(h(p, x)["w"], g(p, x)["w"])
    with pytest.raises(fa.SignatureError, match="without its Python function"):
        h(p, np.arange(5.0))


def test_jit_round_trip():
    j = fa.jit(lambda x: np.sin(x) * 2, backend="numpy")
    j(np.ones(3))
    k = pickle.loads(pickle.dumps(j))
    np.testing.assert_allclose(k(np.arange(3.0)), np.sin(np.arange(3.0)) * 2)


def test_hostile_payloads_are_rejected():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    for payload in [b"", b"not a pickle", pickle.dumps(Evil()),
                    pickle.dumps({"format": "fastad-compiled-1", "state": {"class": "jit"}}),
                    pickle.dumps({"format": "other"})]:
        with pytest.raises(fa.TapeError):
            fa.loads(payload)
        with pytest.raises(fa.TapeError):
            Tape.from_bytes(payload)


def test_mutated_payloads_never_crash(record_count):
    """Saved functions with random bytes overwritten, cut short or spliced:
    loading raises TapeError, or what loads runs (or fails) cleanly."""
    g, p, x = make()
    g(p, x)
    data = bytes(fa.dumps(g))
    rng = np.random.default_rng(0)
    tried = accepted = 0
    for trial in range(1000):
        mutated = bytearray(data)
        kind = trial % 3
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                mutated[rng.integers(len(mutated))] = rng.integers(256)
        elif kind == 1:
            mutated = mutated[:rng.integers(len(mutated))]
        else:
            at = rng.integers(len(mutated))
            mutated[at:at] = rng.integers(0, 256, rng.integers(1, 16), dtype=np.uint8).tobytes()
        tried += 1
        try:
            h = fa.loads(bytes(mutated))
        except fa.TapeError:
            continue
        accepted += 1
        try:  # a mutation that survives validation must still fail cleanly or run
            h(p, x)
        except (fa.FastadError, ValueError, TypeError, IndexError, KeyError):
            pass
    record_count("mutated saved functions tried", tried)
    record_count("mutated saved functions accepted by validation (then run)", accepted)
    assert accepted < tried


def test_random_bytes_are_rejected(record_count):
    rng = np.random.default_rng(1)
    prefix = pickle.dumps({"format": "fastad-compiled-1"}, protocol=4)[:12]
    tried = 0
    for trial in range(1000):
        junk = rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8).tobytes()
        payload = prefix + junk if trial % 2 else junk
        with pytest.raises(fa.TapeError):
            fa.loads(payload)
        with pytest.raises(fa.TapeError):
            Tape.from_bytes(payload)
        tried += 1
    record_count("random byte strings tried (all rejected)", tried)


def hostile(tape_fields):
    """The bytes of a tape built directly from (possibly inconsistent) fields."""
    return Tape(**tape_fields).to_bytes()


F64 = np.dtype(np.float64)


@pytest.mark.parametrize("fields, message", [
    (dict(inputs=[0], outputs=[5], instrs=[Instr("sin", 1, (0,))],
          avals=[Aval((3,), F64)] * 2), "never defined"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("no_such_op", 1, (0,))],
          avals=[Aval((3,), F64)] * 2), "unknown primitive"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("sin", 1, (7,))],
          avals=[Aval((3,), F64)] * 2), "before it is defined"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("sin", 0, (0,))],
          avals=[Aval((3,), F64)] * 2), "defined twice"),
    (dict(inputs=[-1], outputs=[0], avals=[Aval((3,), F64)]), "outside"),
    (dict(inputs=[0], outputs=[1], consts={1: np.ones(5)},
          avals=[Aval((3,), F64)] * 2), "has shape"),
    (dict(inputs=[0], outputs=[1], consts={1: np.ones(3, np.float32)},
          avals=[Aval((3,), F64)] * 2), "has dtype"),
    (dict(inputs=[0], outputs=[0], avals=[Aval((3,), np.dtype(object))]), "dtype"),
    (dict(inputs=[0], outputs=[0], avals=[Aval((3, -1), F64)]), "invalid shape"),
    (dict(inputs=[0], outputs=[0], avals=[Aval((1,) * 40, F64)]), "invalid shape"),
    (dict(inputs=[0], outputs=[0], avals=[Aval((2**32, 2**32), F64)]), "bytes"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("sin", 1, (0,))],
          avals=[Aval((3,), F64), Aval((10**6,), F64)]), "declares shape"),
    (dict(inputs=[0, 1], outputs=[2], instrs=[Instr("add", 2, (0, 1))],
          avals=[Aval((3,), F64), Aval((4,), F64), Aval((4,), F64)]), "invalid operands"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("sum", 1, (0,), (("axes", (5,)),
                                                                 ("keepdims", False)))],
          avals=[Aval((3,), F64), Aval((), F64)]), "invalid operands"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("reshape", 1, (0,), (("shape", (7,)),))],
          avals=[Aval((3,), F64), Aval((7,), F64)]), "cannot reshape"),
    (dict(inputs=[0], outputs=[2], consts={1: np.array([0, 9])},
          instrs=[Instr("take", 2, (0, 1))],
          avals=[Aval((3,), F64), Aval((2,), np.dtype(np.int64)), Aval((2,), F64)]),
     "out of range"),
    (dict(inputs=[0, 1], outputs=[2], instrs=[Instr("take", 2, (0, 1))],
          avals=[Aval((3,), F64), Aval((2,), F64), Aval((2,), F64)]), "constant integer"),
    (dict(inputs=[0, 1], outputs=[2], instrs=[Instr("matmul", 2, (0, 1))],
          avals=[Aval((2, 3), F64), Aval((2, 3), F64), Aval((2, 3), F64)]), "do not align"),
    (dict(inputs=[0], outputs=[1], instrs=[Instr("sin", 1, (0,), (("bogus", 1),))],
          avals=[Aval((3,), F64)] * 2), "invalid operands or parameters"),
], ids=["output", "opcode", "operand", "redefined", "input", "const-shape", "const-dtype",
        "object", "negative-dim", "ndim", "overflow", "declared-shape", "broadcast", "axes",
        "reshape", "index-range", "index-traced", "matmul", "params"])
def test_hostile_tapes_are_rejected_with_a_clear_error(fields, message):
    with pytest.raises(fa.TapeError, match=message):
        Tape.from_bytes(hostile(fields))


@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
def test_mutated_programs_never_crash_the_vm(record_count):
    """The VM entry: lowered programs with random words of code, descriptors,
    indices, ports and arena size replaced are rejected by the VM's validator
    or run (to garbage, never outside their arena; CI runs this under ASan)."""
    tape = fa.make_tape(lambda x, m: (np.sum(np.sin(x)[::2] * x[[0, 1, 4]]),
                                      np.cumsum(m * x[:3], axis=1) @ x[3:],
                                      np.max(m, axis=0)))(np.ones(6), np.ones((3, 3)))
    program = lower(tape)
    P = type(program)
    rng = np.random.default_rng(2)
    args = [rng.uniform(-1, 1, 6), rng.uniform(-1, 1, (3, 3))]
    extremes = [-1, 0, 1, 7, 2**20, 2**31 - 1, -2**31, 2**40, 2**62, -2**62]
    tried = rejected = 0
    for trial in range(4000):
        code, meta, index = program.code.copy(), program.meta.copy(), program.index.copy()
        arena, inputs, outputs = program.arena_bytes, list(program.inputs), list(program.outputs)
        for _ in range(rng.integers(1, 3)):
            target = rng.integers(5)
            word = rng.choice(extremes) if rng.random() < 0.5 else rng.integers(-64, 64)
            if target == 0:
                code[rng.integers(len(code))] = np.clip(word, -2**31, 2**31 - 1)
            elif target == 1 and len(meta):
                meta[rng.integers(len(meta))] = word
            elif target == 2 and len(index):
                index[rng.integers(len(index))] = word
            elif target == 3:
                k = rng.integers(len(inputs))
                off, dt, shape = inputs[k]
                inputs[k] = (int(word), dt, shape)
            else:
                arena = int(max(word, -1)) if rng.random() < 0.3 else arena
        tried += 1
        try:
            exe = c_backend.Executable(P(code, meta, index, program.const_image, arena,
                                         inputs, outputs))
        except fa.TapeError:
            rejected += 1
            continue
        try:
            exe.run(args)
        except (np.linalg.LinAlgError, MemoryError):
            pass  # a singular matrix of garbage; an arena too large to allocate
    record_count("mutated VM programs tried", tried)
    record_count("mutated VM programs rejected by the VM's validator", rejected)
    assert rejected > tried // 4


def test_every_builtin_primitive_has_a_shape_rule():
    """Loading checks each instruction against its primitive's shape rule
    (fastad/shapes.py): a primitive without one could not be loaded."""
    from fastad.primitives.registry import registry
    from fastad.shapes import RULES
    assert [name for name, p in registry.items() if p.builtin and name not in RULES] == []
