"""Compiled functions save as tapes in fastad's own format (fastad/wire.py),
load in a fresh process, and reject corrupt or hostile payloads with a clear
error.  The payload fuzzers run the loader in a subprocess, so a crash is a
counted failure rather than the end of the test run."""
import math
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.core import pytree, wire
from fastad.backends import c_backend
from fastad.backends.lower import lower
from fastad.core.tape import Aval, Instr, Tape


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


def test_pickles_are_refused_as_an_older_format():
    """Earlier versions saved pickles; this one never unpickles a payload."""
    g, p, x = make()
    g(p, x)
    old = pickle.dumps({"format": "fastad-compiled-1", "state": g.__getstate__()}, protocol=4)
    with pytest.raises(fa.TapeError, match="older fastad.*save it again"):
        fa.loads(old)
    with pytest.raises(fa.TapeError, match="older fastad"):
        Tape.from_bytes(pickle.dumps({"version": 1}, protocol=4))


def test_pickling_a_compiled_function_stores_only_its_bytes():
    """``pickle.dumps(g)`` names one global, fastad's own loader, and holds
    one bytes object: fa.dumps(g).  Unpickling hands those bytes to the
    loader; nothing in them reaches NumPy's pickle reconstruction."""
    g, p, x = make()
    g(p, x)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pickle.dumps(g, protocol=4))]
    assert [name for name, _ in ops if name not in ("MEMOIZE", "FRAME")] == [
        "PROTO", "SHORT_BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL", "BINBYTES", "TUPLE1",
        "REDUCE", "STOP"]
    assert [arg for name, arg in ops if name in ("SHORT_BINUNICODE", "BINBYTES")] == [
        "fastad.serialize", "loads", fa.dumps(g)]
    assert fa.dumps(g).startswith(wire.MAGIC)


def _sorted_weights(x):
    # a guard holding NumPy's flatnonzero (argsort's indices are data, recomputed in the tape)
    return np.sum(x[np.flatnonzero(x > 0.4)] * np.arange(2))


@pytest.mark.parametrize("make_compiled", [fa.compile, fa.jit])
def test_a_trace_data_cannot_say_pickles_as_its_function(make_compiled):
    """A tape whose guard recomputes a NumPy call on traced values (indexing
    with flatnonzero's result) is no data: fa.dumps refuses it with a clear
    TypeError, and pickle (Dask, multiprocessing) stores the function by name
    instead, traced again where it is loaded."""
    g = make_compiled(_sorted_weights)
    x = np.array([0.3, -1.0, 2.0, 0.5])
    want = g(x)
    with pytest.raises(TypeError, match="cannot save"):
        fa.dumps(g)
    again = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(again(x), want)
    np.testing.assert_array_equal(again(x[::-1].copy()), g(x[::-1].copy()))


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
    tried = 0
    for trial in range(1000):
        junk = rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8).tobytes()
        for kind in (wire.FUNCTION, wire.TAPE):
            payload = header(kind) + junk if trial % 2 else junk
            with pytest.raises(fa.TapeError):
                fa.loads(payload)
            with pytest.raises(fa.TapeError):
                Tape.from_bytes(payload)
        tried += 1
    record_count("random byte strings tried (all rejected)", tried)


def hostile(tape_fields):
    """The bytes of a tape built directly from (possibly inconsistent) fields.
    A dtype the format cannot hold (object) is written as an unknown dtype code."""
    if any(a.dtype == object for a in tape_fields.get("avals", ())):
        fields = dict(tape_fields, avals=[Aval(a.shape, np.dtype(np.float64) if a.dtype == object
                                              else a.dtype) for a in tape_fields["avals"]])
        code = bytes([wire.DTYPES.index(np.dtype(np.float64))])
        return Tape(**fields).to_bytes().replace(b"y" + code, b"y\xee")
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
    (dict(inputs=[0], outputs=[1], instrs=[Instr("astype", 1, (0,), (
        ("dtype", {"names": ["a"], "formats": ["f8"], "offsets": [2**62]}),))],
          avals=[Aval((3,), F64)] * 2), "not a dtype name"),
], ids=["output", "opcode", "operand", "redefined", "input", "const-shape", "const-dtype",
        "object", "negative-dim", "ndim", "overflow", "declared-shape", "broadcast", "axes",
        "reshape", "index-range", "index-traced", "matmul", "params", "astype-structure"])
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
    from fastad.core.registry import registry
    from fastad.shapes import RULES
    assert [name for name, p in registry.items() if p.builtin and p not in RULES] == []


# -- the payload format: round trips, and hostile structures fed to a subprocess ----------
#
# Payloads are drawn by hypothesis in this process as bytes (never parsed
# here) and run by a child process, which reports one line per payload and
# loader.  A child that dies is a crash: it is counted, and a new child
# carries on after the payload that killed it.

EXAMPLES = int(os.environ.get("FASTAD_FUZZ_EXAMPLES", 200))
FUZZ = settings(max_examples=2 * EXAMPLES, database=None,
                suppress_health_check=list(HealthCheck))

I64, U32, U64 = (struct.Struct(f).pack for f in ("<q", "<I", "<Q"))
EXTREME_COUNTS = [0, 1, 2, 7, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1]
EXTREME_DIMS = [0, 1, 2, 3, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def header(kind=wire.FUNCTION, version=wire.VERSION):
    return wire.MAGIC + kind + struct.pack("<H", version)


def random_array(dtype, shape, seed, swapped, strided):
    """Random bits of ``dtype`` (any bit pattern, NaNs included), perhaps in
    the other byte order or a strided view."""
    rng = np.random.default_rng(seed)
    full = (2 * shape[0],) + shape[1:] if strided and shape else shape
    if dtype.kind == "b":
        a = rng.integers(0, 2, full).astype(bool)
    else:
        a = np.frombuffer(rng.bytes(math.prod(full) * dtype.itemsize), dtype).reshape(full)
    a = a[::2] if strided and shape else a
    return a.astype(a.dtype.newbyteorder("S")) if swapped else a


def plain_values():
    """Every kind of value the format holds, nested."""
    numbers = st.sampled_from([np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                               np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                               np.float64, np.complex64, np.complex128]).map(np.dtype)
    arrays = st.builds(random_array, numbers, st.lists(st.integers(0, 3), max_size=4).map(tuple),
                       st.integers(0, 2**32), st.booleans(), st.booleans())
    bound = st.none() | st.integers(-2**70, 2**70)
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-2**511, 2**511 - 1), st.floats(),
        st.complex_numbers(allow_nan=True, allow_infinity=True), st.text(), st.binary(),
        st.builds(slice, bound, bound, bound), numbers,
        st.builds(lambda a: a.reshape(-1)[:1].reshape(())[()] if a.size else np.float64(0), arrays),
        arrays)
    keys = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=5), st.binary(max_size=5))
    return st.recursive(scalars, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.lists(kids, max_size=4).map(tuple),
        st.dictionaries(keys, kids, max_size=4)), max_leaves=20)


def same(a, b):
    """Equal values of the same types (NaN equal to NaN), arrays compared bit for bit."""
    if isinstance(b, np.ndarray):  # loaded arrays are in native byte order
        return (type(a) is np.ndarray and a.dtype == b.dtype.newbyteorder("=")
                and a.shape == b.shape and a.tobytes() == b.astype(a.dtype).tobytes())
    if type(a) is not type(b):
        return False
    if isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in b)
    if isinstance(b, (float, complex, np.inexact)):
        return np.asarray(a).tobytes() == np.asarray(b).tobytes()
    return a == b


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(plain_values(), st.sampled_from([wire.FUNCTION, wire.TAPE]))
def test_every_kind_of_value_round_trips(value, kind):
    data = wire.dumps(kind, value)
    back = wire.loads(data, kind)
    assert same(back, value), (back, value)
    for array in arrays_in(back):  # each in its own memory: none pins the payload
        assert array.dtype.isnative and not np.shares_memory(array, np.frombuffer(data, np.uint8))


def arrays_in(value):
    if isinstance(value, np.ndarray):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(
        value, (list, tuple)) else ()
    return [a for item in items for a in arrays_in(item)]


def test_the_writer_refuses_what_the_reader_would():
    for value, message in [(np.array(["a"]), "dtype"), (np.zeros(2, object), "dtype"),
                           (2**600, "bits"), ({(1, 2): 3}, "dict keyed"), (object(), "cannot save"),
                           (np.zeros((1,) * 33), "dimensions"), (np.datetime64(1, "s"), "dtype")]:
        with pytest.raises((TypeError, ValueError), match=message):
            wire.dumps(wire.FUNCTION, value)
    nested = None
    for _ in range(wire.MAX_DEPTH):
        nested = [nested]
    assert wire.loads(wire.dumps(wire.TAPE, nested), wire.TAPE) == nested
    with pytest.raises(ValueError, match="nested"):
        wire.dumps(wire.TAPE, [nested])


# raw pieces of payloads, written by hand so that they can lie about their sizes
def _sized(tag, data, declared):
    return tag + U32(len(data) if declared is None else declared) + data


scalar_pieces = st.one_of(
    st.sampled_from([b"N", b"T", b"F"]),
    st.builds(lambda n, d: b"i" + d[:n], st.integers(0, 8), st.binary(min_size=8, max_size=8)),
    st.builds(lambda d, n: _sized(b"I", d, n), st.binary(max_size=70),
              st.none() | st.sampled_from([0, 64, 65, 2**32 - 1])),
    st.builds(lambda d: b"f" + d, st.binary(max_size=9)),
    st.builds(lambda d: b"c" + d, st.binary(max_size=17)),
    st.builds(lambda d, n: _sized(b"s", d, n), st.text().map(str.encode) | st.binary(),
              st.none() | st.sampled_from(EXTREME_COUNTS)),
    st.builds(lambda d, n: _sized(b"b", d, n), st.binary(),
              st.none() | st.sampled_from(EXTREME_COUNTS)),
    st.builds(lambda bounds: b":" + b"".join(bounds),
              st.lists(st.sampled_from([b"N", b"i" + I64(-1), b"I" + U32(1) + b"\x80", b"f" + b"\0" * 8,
                                        b"s" + U32(0), b"t" + U32(0), b"y\x00"]), max_size=4)),
    st.builds(lambda c: b"y" + bytes([c]), st.integers(0, 255)),
    st.builds(lambda c, d: b"g" + bytes([c]) + d, st.integers(0, 255), st.binary(max_size=17)),
    st.builds(lambda t, d: bytes([t]) + d, st.integers(0, 255), st.binary(max_size=12)),
)


@st.composite
def array_pieces(draw):
    """Array fields with hostile dtype codes, dimensions and byte counts."""
    code = draw(st.integers(0, len(wire.DTYPES) - 1) | st.integers(0, 255))
    ndim = draw(st.integers(0, 4) | st.sampled_from([31, 32, 33, 64, 255]))
    dim = st.sampled_from(EXTREME_DIMS) | st.integers(0, 4)
    dims = (draw(st.lists(dim, max_size=4)) + [draw(dim)] * ndim)[:ndim]  # past 4: one repeated
    itemsize = wire.DTYPES[code].itemsize if code < len(wire.DTYPES) else 8
    honest = math.prod(dims) * itemsize
    nbytes = draw(st.sampled_from([honest, honest + 1, max(honest - 1, 0)] + EXTREME_DIMS))
    data = draw(st.binary(max_size=min(honest + 2, 64)))
    return b"a" + bytes([code, ndim]) + b"".join(U64(d) for d in dims) + U64(nbytes % 2**64) + data


def container_pieces(kids):
    """Tuples, lists and dicts of drawn pieces, their counts sometimes wrong."""
    return st.builds(lambda tag, items, count: tag + U32(
        (len(items) // (2 if tag == b"d" else 1)) if count is None else count) + b"".join(items),
        st.sampled_from([b"t", b"l", b"d"]), st.lists(kids, max_size=6),
        st.none() | st.sampled_from(EXTREME_COUNTS))


value_pieces = st.recursive(scalar_pieces | array_pieces(), lambda kids: container_pieces(kids),
                            max_leaves=24)


@st.composite
def framed(draw, body):
    """A drawn body under a header that is usually right, sometimes cut short or
    followed by junk."""
    kind = draw(st.sampled_from([wire.FUNCTION, wire.TAPE] * 4 + [b"X"]))
    version = draw(st.sampled_from([wire.VERSION] * 8 + [0, 2, 65535]))
    data = header(kind, version) + draw(body)
    if draw(st.booleans()):
        data = data[:draw(st.integers(len(header()), len(data)) | st.integers(0, len(data)))]
    elif draw(st.booleans()):
        data += draw(st.binary(min_size=1, max_size=8))
    return data


def real_payloads():
    """Saved functions and tapes holding every kind of field the loader builds."""
    g, p, x = make()
    g(p, x)
    g.batch(p, np.ones((5, 4)), in_axes=(None, 0))
    j = fa.jit(lambda a, idx: (np.sum(a[1:, ::2] * (1 + 2j)).real, np.cumsum(a[idx], axis=0),
                               np.float16(2) * a.astype(np.float32)), backend="numpy")
    j(np.ones((4, 3)), np.array([0, 2]))
    tape = j.tape
    return [fa.dumps(g), fa.dumps(j), tape.to_bytes(), g.tape.to_bytes()]


@st.composite
def mutated(draw, originals):
    """A real payload with a span overwritten by an extreme length, a drawn
    value spliced in, bytes flipped, or its end cut off."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["length", "splice", "flip", "cut"]))
        if how == "length":
            width = draw(st.sampled_from([1, 4, 8]))
            data[at:at + width] = draw(st.sampled_from(EXTREME_DIMS)).to_bytes(8, "little")[:width]
        elif how == "splice":
            data[at:at] = draw(value_pieces)
        elif how == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
    return bytes(data)


def collect(strategy, settings_=FUZZ):
    """The payloads ``strategy`` draws: hypothesis generates, this process never parses."""
    drawn = []

    @settings_
    @given(strategy)
    def draw(payload):
        drawn.append(payload)
    draw()
    return drawn


LOADER = textwrap.dedent(r"""
    import pickle, struct, sys
    import fastad as fa
    from fastad import serialize
    from fastad.core import wire
    from fastad.core.tape import Tape

    class Wrapped:  # a pickle of loads and the bytes, as pickle.dumps(g) writes
        def __init__(self, data):
            self.data = data
        def __reduce__(self):
            return (serialize.loads, (self.data,))

    LOADERS = {"loads": fa.loads, "pickle": lambda d: pickle.loads(pickle.dumps(Wrapped(d))),
               "tape": Tape.from_bytes}
    KIND_AT = len(wire.MAGIC)
    data, start = open(sys.argv[1], "rb").read(), int(sys.argv[2])
    pos = index = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        payload, pos = data[pos + 8:pos + 8 + n], pos + 8 + n
        kind = payload[KIND_AT:KIND_AT + 1]  # a tape's loader, a function's, or all three
        names = ["tape"] if kind == b"T" else ["loads", "pickle"] if kind == b"F" else LOADERS
        if index >= start:
            for name in names:
                load = LOADERS[name]
                print(index, name, "started", flush=True)
                try:
                    load(payload)
                    outcome = "accepted"
                except fa.TapeError as exc:
                    outcome = "TapeError " + " ".join(str(exc).split())[:300]
                except BaseException as exc:
                    outcome = "wrong " + type(exc).__name__ + " " + " ".join(str(exc).split())[:300]
                print(index, name, outcome, flush=True)
        index += 1
    print("end")
""")


def run_loaders(payloads, tmp_path):
    """``{(payload index, loader): outcome}`` from child processes; a payload
    whose loader killed the child has the outcome ``crash <exit status>``."""
    path = tmp_path / "payloads.bin"
    path.write_bytes(b"".join(U64(len(p)) + p for p in payloads))
    outcomes, start = {}, 0
    while start < len(payloads):
        done = subprocess.run([sys.executable, "-c", LOADER, str(path), str(start)],
                              capture_output=True, text=True, timeout=600)
        last = None
        for line in done.stdout.splitlines():
            if line == "end":
                return outcomes
            index, name, outcome = line.split(" ", 2)
            outcomes[int(index), name] = outcome
            last = int(index), name
        assert last is not None, f"the loader process failed to start: {done.stderr[-2000:]}"
        outcomes[last] = f"crash {done.returncode} {done.stderr[-300:]}"
        (tmp_path / f"crash-{last[0]}.bin").write_bytes(payloads[last[0]])
        start = last[0] + 1
    return outcomes


def check_outcomes(payloads, outcomes, record_count, what):
    crashes = {k: v for k, v in outcomes.items() if v.startswith("crash")}
    wrong = {k: v for k, v in outcomes.items() if v.startswith("wrong")}
    record_count(f"{what} tried", len(payloads))
    record_count(f"{what}: loader calls (fa.loads and pickle.loads, or Tape.from_bytes)",
                 len(outcomes))
    record_count(f"{what}: accepted", sum(v == "accepted" for v in outcomes.values()))
    record_count(f"{what}: crashes", len(crashes))
    assert not crashes, {k: (v, payloads[k[0]][:80].hex()) for k, v in list(crashes.items())[:5]}
    assert not wrong, {k: (v, payloads[k[0]][:80].hex()) for k, v in list(wrong.items())[:5]}
    assert {index for index, _ in outcomes} == set(range(len(payloads)))


def test_payload_structures_never_crash_the_loader(tmp_path, record_count):
    """Random trees of tagged values under random headers, hostile array
    fields and lengths, truncations and mutated real payloads: every loader
    returns or raises TapeError, and none crashes."""
    payloads = collect(framed(value_pieces) | mutated(real_payloads()))
    outcomes = run_loaders(payloads, tmp_path)
    check_outcomes(payloads, outcomes, record_count, "hostile payload structures")
    assert sum(v.startswith("TapeError") for v in outcomes.values()) > len(outcomes) // 2


def _pickled(value):
    """The opcodes that push ``value`` (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


dtype_states = st.tuples(  # what numpy.dtype.__setstate__ reads, hostile
    st.sampled_from([0, 1, 2, 3, 4, -1, 2**31]), st.sampled_from(["<", ">", "|", "=", "", "xx"]),
    st.none() | st.tuples(st.text(max_size=3), st.tuples(st.integers(-2**63, 2**63 - 1))),
    st.none() | st.lists(st.text(max_size=3), max_size=3).map(tuple),
    st.none() | st.dictionaries(st.text(max_size=3), st.tuples(st.none(), st.integers())),
    st.sampled_from([-1, 0, 1, 2**31 - 1, 2**63 - 1, -2**63]),
    st.sampled_from([-1, 0, 1, 3, 2**31 - 1]), st.integers(-2**31, 2**31 - 1))


@st.composite
def allowed_global_pickles(draw):
    """Pickles that name only the globals earlier versions' unpickler allowed,
    with a crafted numpy.dtype BUILD state or _reconstruct arguments (what
    crashed it): they are refused unread, since payloads are never unpickled."""
    state = _pickled(draw(dtype_states))
    dtype = b"cnumpy\ndtype\n" + _pickled(("f8", False, True)) + b"R"
    if draw(st.booleans()):
        body = dtype + state + b"b"
    else:
        shape = draw(st.tuples(st.sampled_from(EXTREME_DIMS)))
        body = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _pickled((0,))
                + _pickled(b"b") + b"\x87R(" + _pickled(1) + _pickled(shape) + dtype + state
                + b"b" + _pickled(False) + _pickled(draw(st.binary(max_size=16))) + b"tb")
    return draw(st.sampled_from([b"\x80\x02", b"\x80\x04", b"\x80\x05"])) + body + b"."


@st.composite
def deep_nesting(draw):
    """(depth, payload): containers nested up to 10^6 deep, built as bytes
    without recursion, in this format and as a pickle."""
    depth = draw(st.sampled_from([wire.MAX_DEPTH + 1, 1000, 10**6])
                 | st.integers(1, 2 * wire.MAX_DEPTH))
    if draw(st.integers(0, 3)) == 0:
        return depth, b"\x80\x04" + b"(" * depth + b"t" * depth + b"."
    opening = draw(st.sampled_from([b"t" + U32(1), b"l" + U32(1), b"d" + U32(1) + b"N"]))
    return depth, header(draw(st.sampled_from([wire.FUNCTION, wire.TAPE]))) + opening * depth + b"N"


def test_known_crash_classes_are_refused(tmp_path, record_count):
    """The two payload classes that crashed the pickle-based loader: refused
    with TapeError by every loader, before any container is built past the
    depth limit."""
    crafted = collect(allowed_global_pickles(), settings(FUZZ, max_examples=EXAMPLES // 2))
    depths, deep = zip(*collect(deep_nesting(), settings(FUZZ, max_examples=max(EXAMPLES // 8, 20))))
    payloads = crafted + list(deep)
    depths = [0] * len(crafted) + list(depths)
    outcomes = run_loaders(payloads, tmp_path)
    check_outcomes(payloads, outcomes, record_count, "crafted pickles and deep nestings")
    for (index, loader), outcome in outcomes.items():
        if payloads[index].startswith(b"\x80"):
            assert "older fastad" in outcome, outcome
        elif depths[index] > wire.MAX_DEPTH:
            assert f"nested more than {wire.MAX_DEPTH}" in outcome, outcome
        else:
            assert outcome.startswith("TapeError"), outcome  # parsed, but not a function or tape
    record_count("payloads nested 10^6 deep", depths.count(10**6))


# -- result structures that do not fit their tapes -------------------------------------
tree_nodes = st.recursive(
    st.sampled_from(["*", ("none",), "junk", ("tuple",), ("dict", ("a",), ())]),
    lambda kids: st.one_of(
        st.tuples(st.just("tuple"), st.lists(kids, max_size=3).map(tuple)),
        st.tuples(st.just("list"), st.lists(kids, max_size=3).map(tuple)),
        st.lists(kids, min_size=1, max_size=3).map(
            lambda c: ("dict", tuple("abc"[:len(c)]), tuple(c)))),
    max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(which=st.sampled_from(["jit", "compile"]), out_tree=tree_nodes,
       in_trees=st.lists(tree_nodes, max_size=3).map(tuple))
def test_saved_structures_that_do_not_fit_their_tapes_are_refused(which, out_tree, in_trees):
    """A saved function whose result structures were altered either loads and
    gives the original results (the structure still fits) or is a TapeError;
    never an exception from inside a call."""
    x = np.linspace(0.0, 1.0, 5)
    if which == "jit":
        g = fa.jit(lambda x: (np.sin(x), {"s": np.sum(x)}), backend="numpy")
        spec_key = "spec"
    else:
        g = fa.compile(lambda x: np.sum(np.sin(x) ** 2), backend="numpy")
        spec_key = "vg"
    expected = g(x)
    state = wire.loads(fa.dumps(g), wire.FUNCTION)
    (sig, entries), = state[spec_key]["entries"]
    state[spec_key]["entries"] = [(sig, [(entries[0][0], (out_tree, in_trees))])]
    try:
        h = fa.loads(wire.dumps(wire.FUNCTION, state))
    except fa.TapeError:
        return
    got_leaves, _ = pytree.flatten(h(x))
    want_leaves, _ = pytree.flatten(expected)
    assert len(got_leaves) == len(want_leaves)
    for a, b in zip(got_leaves, want_leaves):
        np.testing.assert_array_equal(a, b)
