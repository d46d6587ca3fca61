"""Constant arrays of one repeated value are read as a scalar by the compiled
backends (the C lowering, its fusion pass, the Numba generator), which all
ask `fastad.transforms.analysis.bitwise_uniform`: one bit pattern, so an
all-NaN array is uniform and one mixing -0.0 with 0.0 is not.  Every backend
must give the reference interpreter's bits, NaNs and signed zeros included."""
import numpy as np
import pytest

import fastad as fa
import fastad.numpy as fnp
from fastad.transforms.analysis import (affine, affine_grid, all_zero_bits, bitwise_equal,
                                        bitwise_uniform, common_affine_grid, is_range, is_weak)

N = 9
CONSTANTS = {
    "all_nan": np.full(N, np.nan),
    "all_inf": np.full(N, np.inf),
    "all_minus_inf": np.full(N, -np.inf),
    "all_minus_zero": np.full(N, -0.0),
    "mixed_zeros": np.array([0.0, -0.0] * (N // 2) + [0.0]),
    "minus_zero_first": np.array([-0.0] + [0.0] * (N - 1)),
    "nan_and_number": np.array([np.nan] * (N - 1) + [1.0]),
}


def functions(c):
    return {
        "mul": lambda x: x * c,
        "div": lambda x: c / (x * x + 1.0),
        "add_chain": lambda x: (x + c) * 2.0 + np.sin(x) * c,
        "maximum": lambda x: np.maximum(x, c),
        "where": lambda x: np.where(x > 0.0, c, x),
        "reversed": lambda x: x[::-1] * c + c,
        "matrix": lambda x: x[:8].reshape(2, 4) * c[:8].reshape(2, 4),
    }


# No element of x is 0: np.maximum(0.0, -0.0) is a tie whose sign the backends
# break differently, which is not what these tests are about.
X = np.linspace(-1.0, 1.0, N) + 0.01


def bits(values):
    return [(np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes()) for v in values]


def compiled_backends():
    return [b for b in fa.backends_available() if b != "numpy"]


@pytest.mark.parametrize("backend", compiled_backends())
@pytest.mark.parametrize("const", sorted(CONSTANTS))
def test_uniform_and_nearly_uniform_constants_match_the_reference(backend, const):
    c = CONSTANTS[const]
    x = X
    for name, f in functions(c).items():
        want = fa.jit(f, backend="numpy")(x)
        got = fa.jit(f, backend=backend)(x)
        assert bits([got]) == bits([want]), (name, got, want)


@pytest.mark.parametrize("backend", compiled_backends())
@pytest.mark.parametrize("const", sorted(CONSTANTS))
def test_gradients_through_uniform_constants_match_the_reference(backend, const):
    c = CONSTANTS[const]

    def loss(x):
        return np.sum(x * c) + np.sum(np.sin(x) * c)

    x = X
    want = fa.compile(loss, backend="numpy").value_and_grad(x)
    got = fa.compile(loss, backend=backend).value_and_grad(x)
    assert bits(got) == bits(want)


def test_uniform_means_one_bit_pattern():
    assert bitwise_uniform(np.full(5, np.nan))
    assert bitwise_uniform(np.full(5, -0.0)) and bitwise_uniform(np.full(3, np.inf))
    assert not bitwise_uniform(np.array([0.0, -0.0]))
    assert not bitwise_uniform(np.array([np.nan, -np.nan]))  # the sign bit differs
    assert not bitwise_uniform(np.zeros(0))
    assert bitwise_uniform(np.full(4, 1 + 2j)) and not bitwise_uniform(np.array([1j, -1j]))
    assert bitwise_equal(np.nan, np.nan) and not bitwise_equal(0.0, -0.0)
    assert not bitwise_equal(np.float32(1), np.float64(1))
    assert all_zero_bits(np.zeros(3)) and not all_zero_bits(np.array([0.0, -0.0]))


def test_affine_index_tables():
    assert affine(np.array([3, 5, 7])) == (3, [2])
    assert affine(np.array([[0, 1], [4, 5]])) == (0, [4, 1])
    assert affine(np.array([2, 1, 0])) == (2, [-1])
    assert affine(np.array([0, 1, 3])) is None
    assert affine(np.zeros(0, np.int64)) is None
    assert is_range(np.array([4, 5, 6])) and is_range(np.array([7]))
    assert not is_range(np.array([4, 6])) and not is_range(np.zeros(0, np.int64))
    block = np.array([7, 8, 9, 13, 14, 15])  # rows 1-2, columns 1-3 of a 6-wide array
    assert affine_grid(block) == (2, 3) and affine_grid(np.array([0, 2, 4])) == (3,)
    assert affine_grid(np.array([0, 5, 1])) is None
    assert common_affine_grid([block, block + 1]) == (2, 3)
    assert common_affine_grid([block, np.arange(6)]) == (2, 3)
    assert is_weak(1.0) and is_weak(2) and is_weak(True)
    assert not is_weak(np.float64(1.0)) and not is_weak(np.ones(2))


@pytest.mark.parametrize("const", sorted(CONSTANTS))
def test_the_compiled_backends_agree_on_which_constants_are_one_scalar(const):
    c = CONSTANTS[const]
    tape = fa.make_tape(lambda x: x * x * c + x)(X)  # (no loop table of a function packed)
    uniform = bitwise_uniform(c)
    assert uniform == (const in ("all_nan", "all_inf", "all_minus_inf", "all_minus_zero"))
    if "c" in fa.backends_available():
        from fastad.backends.lower import lower
        assert (len(lower(tape).const_image) == c.itemsize) == uniform
    if "numba" in fa.backends_available():
        from fastad.backends.numba_backend import generate
        _, packed = generate(tape)
        assert (not packed) == uniform


@pytest.mark.parametrize("backend", compiled_backends())
@pytest.mark.parametrize("const", ["all_nan", "all_minus_zero", "mixed_zeros", "minus_zero_first"])
@pytest.mark.parametrize("reroll", [True, False])
def test_updates_into_a_constant_keep_its_other_elements(backend, const, reroll):
    """A scatter into a constant array makes its target from the constant: the
    VM zeroes it only when every bit is clear (not for -0.0), Numba fills it
    with one value only when the constant is bitwise uniform."""
    base = CONSTANTS[const]

    def f(x):
        out = fnp.asarray(base)
        for i in range(0, N, 2):
            out[i] = out[i] + x[i]
        return out

    want = fa.jit(f, backend="numpy", reroll=reroll)(X)
    got = fa.jit(f, backend=backend, reroll=reroll)(X)
    assert bits([got]) == bits([want])


_SIGNED_ZEROS = [0.0, -0.0, np.float64(-0.0), np.float32(-0.0), complex(-0.0, 0.0), complex(0.0, -0.0)]


# every pair on the reference, the real ones on the VM (complex values go to
# Numba), a few on Numba, whose compiles take seconds each
_REAL = range(4)
_SIGNED_ZERO_CASES = (
    [("numpy", i, j) for i in range(len(_SIGNED_ZEROS)) for j in range(len(_SIGNED_ZEROS))]
    + [("c", i, j) for i in _REAL for j in _REAL if "c" in compiled_backends()]
    + [("numba", i, j) for i, j in ((0, 1), (1, 0), (3, 5), (4, 2))
       if "numba" in compiled_backends()])


@pytest.mark.parametrize("backend,first,second", _SIGNED_ZERO_CASES)
def test_constants_equal_but_of_other_sign_are_two_constants(backend, first, second):
    """0.0 == -0.0, so a trace keyed its scalar constants by value kept one of
    them: arctan2(-0.0, -1) became arctan2(0.0, -1), pi for -pi, in the tape
    and again in the optimizer's common subexpressions."""
    c1, c2 = _SIGNED_ZEROS[first], _SIGNED_ZEROS[second]

    def f(x):
        def part(c):
            if isinstance(c, complex):  # the sign of the imaginary zero: arg(-1 + c)
                return np.angle(-1.0 + 0.0 * x + c)
            return np.arctan2(c * np.ones_like(x) + 0.0 * x, x - 10.0) + np.arctan2(c, x - 10.0)
        return part(c1) + 2.0 * part(c2) + x
    want = f(X)
    assert bits([fa.jit(f, backend=backend)(X)]) == bits([want])
    loss = lambda x: np.sum(f(x))  # noqa: E731
    np.testing.assert_array_equal(fa.compile(loss, backend=backend)(X), fa.grad(loss)(X))
