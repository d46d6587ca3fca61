"""Lowering: the opcode table's single source of truth, the memory planner,
and the optimisations the compiled path depends on (aliases, in-place
scatters, strided copies, folded transposes)."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad.backends import c_backend, lower as lowering
from fastad.backends.lower import ArenaPlanner, lower


def opcodes(program) -> collections.Counter:
    return collections.Counter(name for _, name, _ in program.instructions())


def gradient_program(f, *args):
    g = fa.compile(f, argnums=tuple(range(len(args))), backend="numpy")
    g(*args)
    return lower(g.tape)


# -- one source of truth -------------------------------------------------------------
@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
def test_c_and_python_opcode_tables_agree():
    compiled = c_backend.tables()
    parsed = lowering.TABLES
    assert compiled["OPCODES"] == [(name, nargs) for name, nargs, _, _ in parsed["OPCODES"]]
    for table in ("UNARY_FNS", "BINARY_FNS", "COMPARE_FNS", "LOGIC_FNS", "REDUCE_FNS", "DTYPES",
                  "FUSED_SLOTS", "FUSED_STEPS"):
        assert compiled[table] == parsed[table], table


def test_every_opcode_documents_its_operands():
    for name, nargs, kinds, comment in lowering.TABLES["OPCODES"]:
        assert len(kinds) == nargs, name
        assert all(k in "oabcvtsfnmrdxiwpe" for k in kinds), (name, kinds)
        assert comment, name


# Primitives of complex values only: the VM has no complex dtype, so compiled
# functions using them run on Numba or the NumPy reference backend.
COMPLEX_ONLY = {"real", "imag", "conj", "fft"}
# Families whose primitives may lack a lowering: compiled functions using them
# call them between compiled segments (fastad.backends.coverage() lists them).
FALLBACK_FAMILIES = ("fastad.primitives.special", "fastad.primitives.ordering",
                     "fastad.primitives.linalg")


def test_every_core_primitive_has_a_lowering():
    from fastad.backends.fallback import NOT_COMPILED  # declared, each with its reason
    core = {name for name, prim in fa.primitives.registry.items()
            if prim.builtin and prim.impl.__module__ not in FALLBACK_FAMILIES
            and prim not in NOT_COMPILED}
    assert core - COMPLEX_ONLY <= {p.name for p in lowering._RULES}


def test_complex_values_are_refused_so_compiled_functions_fall_back():
    tape = fa.make_tape(lambda z: z * 2.0)(np.array([1.0 + 2.0j]))
    with pytest.raises(lowering.LoweringError, match="complex128"):
        lowering.lower(tape)


# -- the memory planner ----------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 300)), max_size=80))
def test_planner_never_overlaps_live_blocks(ops):
    planner, live = ArenaPlanner(), []
    for allocate, size in ops:
        if allocate or not live:
            at = planner.alloc(size)
            assert at % 8 == 0 and (size < 64 or at % 64 == 0)
            for other, other_size in live:
                assert at + size <= other or other + other_size <= at
            live.append((at, size))
        else:
            planner.release(*live.pop(size % len(live)))
        assert all(at + size <= planner.top for at, size in live)


def test_slots_with_disjoint_lifetimes_share_the_arena():
    def chain(x):
        for _ in range(20):
            x = np.sin(x) * 1.5
        return x
    tape = fa.make_tape(chain)(np.ones(1000))
    program = lower(tape)
    total = sum(8 * 1000 for ins in tape.instrs)
    assert program.peak_arena_bytes < total / 5


# -- aliases and strided access ------------------------------------------------------
def test_reshape_and_contiguous_take_are_free():
    program = lower(fa.make_tape(lambda x: np.sum(x.reshape(3, 4)[1]) + x[5])(np.ones(12)))
    assert set(opcodes(program)) == {"REDUCE_B", "ADD_S", "HALT"}


def test_take_patterns():
    x = np.ones((6, 5))
    assert "STRIDED_B" in opcodes(lower(fa.make_tape(lambda x: x[::2, 1:4] * 2.0)(x)))
    assert "GATHER_V" in opcodes(lower(fa.make_tape(lambda x: x[[3, 0, 4]] * 2.0)(x)))


_steps = st.integers(-3, 3).filter(bool)


@st.composite
def basic_slices(draw):
    """A 2-D array and a basic slice of it with any steps (negative too)."""
    shape = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    key = tuple(slice(draw(st.one_of(st.none(), st.integers(-d, d - 1))), None, draw(_steps))
                for d in shape)
    return shape, key


@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
@settings(max_examples=60, deadline=None)
@given(basic_slices(), st.booleans())
def test_slice_reads_and_writes_are_strided_without_index_lists(case, write):
    """The gradient of a basic slice accumulates into it at start + j . strides and
    an assignment to one writes there (STRIDED_ADD_B, STRIDED_SET_B): no index list in
    the program, and the values of the reference interpreter (to rounding: sums
    are ordered differently)."""
    shape, key = case
    x = np.random.default_rng(sum(shape)).standard_normal(shape)

    def f(x):
        y = x * 1.5
        if write:
            y[key] = np.sin(y[key])
        return np.sum(np.cos(y[key]) * y[key]) + np.sum(y * x)

    program = gradient_program(f, x)
    assert program.index.size == 0
    positions = np.arange(x.size).reshape(shape)[key].ravel()
    if positions.size > 1 and not np.all(np.diff(positions) == 1):
        assert {"STRIDED_ADD_B", "STRIDED_SET_B"} & set(opcodes(program))
    want = fa.compile(f, backend="numpy").value_and_grad(x)
    got = fa.compile(f, backend="c").value_and_grad(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-15)


def test_scalar_loop_gradient_accumulates_in_place():
    """The reverse sweep of ``for i: ... x[i] ...`` is a chain of scatter_adds on
    one adjoint array: one zero fill, then one scalar accumulation per use."""
    def rosenbrock_loop(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return s
    n = 200
    # The unoptimized tape (the tape optimizer may vectorize this loop itself).
    tape = fa.make_tape(lambda x: fa.value_and_grad(rosenbrock_loop)(x))(np.linspace(-1, 1, n))
    program = lower(tape)
    counts = opcodes(program)
    assert counts["ZERO_V"] + counts["COPY_V"] <= 1
    assert not {"GATHER_V", "SCATTER_ADD_V", "STRIDED_B", "BINARY_VV"} & set(counts)
    accumulations = sum(counts[op] for op in ("ACC_S", "NACC_S", "MULACC_S", "NMULACC_S"))
    assert accumulations == 3 * (n - 1)
    assert program.peak_arena_bytes < 3 * 8 * n + 4096


# readers of a negation: (kind, whether it folds the negation into its own opcode)
NEG_READERS = {"add": True, "radd": True, "sub_from": True, "mul": True, "neg": True,
               "minuend": False, "div": False, "output": False, "twice": False}


@pytest.mark.skipif(not c_backend.available, reason="C extension not built")
@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(sorted(NEG_READERS)), min_size=2, max_size=5),
       st.integers(0, 2**16))
def test_a_negation_read_several_times_folds_into_each_reader(readers, seed):
    """A scalar negation whose readers all absorb it (a + (-b) is a - b, bit for
    bit) leaves no NEG_S; one any reader cannot absorb stays an instruction.
    Values are the reference interpreter's bit for bit either way."""
    from fastad.backends.reference import evaluate

    def f(x, y):
        n = -(x + y)  # (a negated product would be one NMUL_S)
        outs = []
        for k, r in enumerate(readers):
            c = y + 0.25 * k
            outs.append({"add": lambda: c + n, "radd": lambda: n + c, "sub_from": lambda: c - n,
                         "mul": lambda: c * n, "neg": lambda: -n, "minuend": lambda: n - c,
                         "div": lambda: n / c, "output": lambda: n,
                         "twice": lambda: n * n}[r]())
        return tuple(outs)
    args = list(np.random.default_rng(seed).uniform(-2, 2, 2))
    tape = fa.make_tape(f)(*args)
    program = lower(tape)
    got = c_backend.Executable(program).run(args)
    for a, b in zip(got, evaluate(tape, args)):
        np.testing.assert_array_equal(a, b)
    assert (opcodes(program)["NEG_S"] == 0) == all(NEG_READERS[r] for r in readers)


def test_transposes_feeding_matmul_become_blas_flags():
    def mlp(W, X):
        return np.sum(np.tanh(X @ W))
    program = gradient_program(mlp, np.ones((5, 3)), np.ones((4, 5)))
    assert "STRIDED_B" not in opcodes(program)


def test_mixed_dtypes_are_converted_explicitly():
    tape = fa.make_tape(lambda a, b: a * b)(np.ones(3, np.float32), np.ones(3))
    counts = opcodes(lower(tape))
    assert counts["CAST_V"] == 1


def test_integer_arithmetic_is_refused_clearly():
    tape = fa.make_tape(lambda x: x * 2)(np.ones(3))
    tape.avals[tape.instrs[-1].out] = type(tape.avals[0])((3,), np.dtype(np.int64))
    with pytest.raises(lowering.LoweringError, match="int64"):
        lower(tape)


def test_listing_names_every_instruction():
    program = lower(fa.make_tape(lambda x: np.cumsum(np.exp(x) @ x.T, axis=0))(np.ones((3, 2))))
    text = str(program)
    for _, name, _ in program.instructions():
        assert name in text
    assert "exp" in text and "arena" in text


# -- inputs read and results written in place ----------------------------------------------
IN_PLACE_PROGRAMS = [
    lambda x, M: np.sum(np.exp(M @ x)) * x,
    lambda x, M: (M * x).sum(axis=0) + np.cumsum(x[::-1]),
    lambda x, M: np.where(M[0] > x, M[1], x ** 2),
    lambda x, M: np.sum((x[1:] - x[:-1] ** 2) ** 2) + np.sum(M ** 2),
    lambda x, M: x[0] * M + x[1],
]


@settings(max_examples=20, deadline=None)
@given(case=st.integers(0, len(IN_PLACE_PROGRAMS) - 1), n=st.integers(2, 40),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2 ** 16))
def test_bound_segments_change_addresses_not_bits(case, n, dtype, seed):
    """A gradient program with its inputs read and its results written in
    place gives the bits of the same program with every input copied into the
    arena and every result copied out; the segments lie past the arena, one
    per bound port, and no instruction writes an input's."""
    rng = np.random.default_rng(seed)
    args = (rng.uniform(-1, 1, n).astype(dtype), rng.uniform(-1, 1, (2, n)).astype(dtype))
    f = IN_PLACE_PROGRAMS[case]
    g = fa.compile(lambda x, M: np.sum(np.sin(f(x, M))), argnums=(0, 1), backend="numpy")
    g(*args)
    bound, copied = lower(g.tape), lower(g.tape, bind_inputs=False)
    assert copied.bound_bytes == 0
    assert all(p.offset < copied.arena_bytes for p in copied.inputs + copied.outputs)
    ports = [p for p in bound.inputs + bound.outputs if p.offset >= bound.arena_bytes]
    assert len({p.offset for p in ports}) == len(ports)
    assert all(p.offset + p.dtype.itemsize * int(np.prod(p.shape))
               <= bound.arena_bytes + bound.bound_bytes for p in ports)
    if not c_backend.available:
        return
    want = c_backend.Executable(copied).run(list(args))
    got = c_backend.Executable(bound).run(list(args))
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
