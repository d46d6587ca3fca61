"""fastad.numpy's scalar types: ``fnp.float32(x)`` casts a traced value, as
``jnp.float32(x)`` does, and is NumPy's type everywhere else (``dtype=``,
``isinstance``, ``issubclass``, equality, hashing, pickling)."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from fastad.core.errors import PrecisionError
from helpers import check_function

ONE_COMPILED = "c" if "c" in BACKENDS else "numpy"
#: every NumPy name of a numeric or boolean scalar type
NAMES = sorted(n for n in dir(np) if not n.startswith("_") and isinstance(getattr(np, n), type)
               and getattr(np, n) in set(np.sctypeDict.values())
               and np.dtype(getattr(np, n)).kind in "biufc")
#: those fastad computes in (float16 and long double are refused)
COMPUTED = [n for n in NAMES if np.dtype(getattr(np, n)).kind in "iub"
            or np.dtype(getattr(np, n)) in (np.float32, np.float64, np.complex64, np.complex128)]


def _cast_program(name, scale):
    """A loss through the cast: its real part weighted, so the derivative
    of a float or complex cast is the weights and an integer one's zero."""
    def f(x):
        v = getattr(fnp, name)(x * scale)
        return fnp.sum(fnp.real(v) * fnp.linspace(0.5, 1.5, x.size)) + fnp.sum(x ** 2)
    return f


@pytest.mark.parametrize("name", NAMES)
def test_each_name_is_numpys_type_in_every_other_role(name):
    ours, theirs = getattr(fnp, name), getattr(np, name)
    assert ours == theirs and theirs == ours and hash(ours) == hash(theirs)
    assert {theirs: 1}[ours] == 1 and ours in {theirs} and theirs in {ours}
    assert np.dtype(ours) == np.dtype(theirs) and np.zeros(2, ours).dtype == np.dtype(theirs)
    assert np.ones(2).astype(ours).dtype == np.dtype(theirs)
    assert isinstance(theirs(1), ours) and issubclass(theirs, ours) and issubclass(ours, theirs)
    assert np.issubdtype(ours, np.dtype(theirs).type) and np.dtype(theirs).type == ours
    assert pickle.loads(pickle.dumps(ours)) is ours
    plain = ours(3) if np.dtype(theirs).kind != "b" else ours(True)
    assert type(plain) is theirs and plain == theirs(plain)  # NumPy's scalar, not a subclass


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(COMPUTED), n=st.integers(1, 5), scale=st.sampled_from([1.0, 7.3]),
       seed=st.integers(0, 2**16))
def test_a_cast_of_a_traced_value_is_numpys_cast(name, n, scale, seed):
    """Eager, compiled and differentiated: NumPy's values and dtype, the
    derivative through float and complex casts and none through integer ones
    (nonnegative values for unsigned types: NumPy's cast of a negative float
    to one is undefined)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(getattr(np, name)).kind
    x = rng.uniform(0.1, 3.0, n) + 0.25 if kind == "u" else rng.normal(size=n) * 3 + 0.25
    x = x + 0.5 * (np.abs(x * scale - np.round(x * scale)) < 0.05)  # off integers: FD steps
    f = _cast_program(name, scale)
    # rounded to float32 (complex64 too: float32 parts)
    single = kind in "fc" and np.finfo(getattr(np, name)).bits <= 32
    check_function(f, (x,), order=2 if kind in "fc" else 1,
                   **({"eps": 1e-3, "rtol": 1e-3, "atol": 1e-3} if single else {}))
    cast = lambda x: getattr(fnp, name)(x * scale)  # noqa: E731
    want = cast(x)
    got = fa.jit(cast, backend=ONE_COMPILED)(x)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    assert np.asarray(fa.grad(lambda x: fnp.sum(fnp.real(cast(x)) * 1.0))(x)).shape == x.shape


def test_one_element_and_scalars_cast_and_bad_input_is_refused():
    g = fa.jit(fa.grad(lambda x: fnp.float32(x[0]) * 3 + fnp.float64(x[1] ** 2)))
    np.testing.assert_allclose(g(np.array([1.0, 2.0])), [3.0, 4.0])
    f = fa.grad(lambda x: fnp.sum(fnp.float32([x[0], 2 * x[1]])))  # a list of traced values
    np.testing.assert_allclose(f(np.array([1.0, 2.0])), [1.0, 2.0])
    with pytest.raises(PrecisionError):
        fa.grad(lambda x: fnp.sum(fnp.float16(x)))(np.ones(2))
    with pytest.raises(TypeError, match="one argument"):
        fa.grad(lambda x: fnp.sum(fnp.float32(x, 3)))(np.ones(2))
