"""fastad.numpy is a drop-in for numpy: every public name of numpy,
numpy.linalg and numpy.fft is there, and each function called on plain values
gives NumPy's result."""
from __future__ import annotations

import importlib
import io
import warnings

import numpy as np
import pytest

import fastad.numpy as fnp

MODULES = [("numpy", np, fnp), ("numpy.linalg", np.linalg, fnp.linalg),
           ("numpy.fft", np.fft, fnp.fft)]


def _public(module):
    return sorted(n for n in dir(module) if not n.startswith("_"))


@pytest.mark.parametrize("label,plain,ours", MODULES, ids=[m[0] for m in MODULES])
def test_every_public_name_is_there(label, plain, ours):
    missing = [n for n in _public(plain) if not hasattr(ours, n)]
    assert not missing, f"{label} names missing from fastad: {missing}"


def test_submodules_are_modules():
    linalg = importlib.import_module("fastad.numpy.linalg")
    assert linalg is fnp.linalg
    from fastad.numpy.linalg import solve  # noqa: F401
    fft = importlib.import_module("fastad.numpy.fft")
    assert fft is fnp.fft
    random = importlib.import_module("fastad.numpy.random")
    assert random is np.random


# Argument lists tried in order; a function is called with the first NumPy accepts.
V = np.array([0.3, -1.2, 2.5, 0.7, 0.0])
M = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.5]])
I = np.array([3, 1, 2, 0, 1])
CANDIDATES = [(V,), (M,), (V, V), (M, M), (M, V[:3]), (V, 2), (I,), (I, I), (5,), (3, 4),
              (0.5, 2.0), ("ij,jk->ik", M, M), ((2, 3),), (V, [1, 3]), (M, 1), (V > 0, V),
              ([V > 0, V < 0], [V, -V]), (V, 0.5), (I, 3), (V, V, V)]

# functions not called: I/O, environment, interactive, and those with no plain inputs
SKIP = {"load", "loadtxt", "genfromtxt", "fromfile", "fromregex", "save", "savetxt", "savez",
        "savez_compressed", "show_config", "show_runtime", "test", "info", "get_include",
        "from_dlpack", "frombuffer", "fromstring", "fromiter", "seterrcall", "setbufsize",
        "set_printoptions", "seterr", "geterrcall", "nested_iters", "busday_count",
        "busday_offset", "is_busday", "datetime_as_string", "datetime_data", "frompyfunc",
        "vectorize", "printoptions", "errstate", "memmap", "apply_along_axis",
        "apply_over_axes", "fromfunction", "piecewise", "einsum_path"}


# the others: arguments of their own
ARGS = {
    "astype": (V, np.float32), "can_cast": (np.float32, np.float64), "dsplit": (
        np.ones((2, 2, 4)), 2), "get_printoptions": (), "getbufsize": (), "geterr": (),
    "insert": (V, 1, 9.0), "isdtype": (np.float64, "real floating"), "isnat": (
        np.array(["2020-01-01", "NaT"], "datetime64[D]"),), "issubdtype": (np.float64,
                                                                          np.floating),
    "mask_indices": (3, np.triu), "moveaxis": (M, 0, 1), "polyfit": (V, V ** 2, 2),
    "promote_types": (np.float32, np.int64), "ravel_multi_index": (([1, 2], [0, 1]), (3, 3)),
    "reshape": (V, (5, 1)), "swapaxes": (M, 0, 1), "typename": ("d",),
    "unpackbits": (np.array([3, 7], np.uint8),), "cholesky": (M,), "put": (V.copy(), [0], 1.0),
    "put_along_axis": (M.copy(), np.zeros((1, 3), int), 5.0, 0), "copyto": (V.copy(), V * 2),
    "fill_diagonal": (M.copy(), 7.0), "place": (V.copy(), V > 0, [1.0]),
    "putmask": (V.copy(), V > 0, 2.0),
}


def _callables(label, plain):
    out = []
    for name in _public(plain):
        obj = getattr(plain, name)
        if name in SKIP or isinstance(obj, type) or not callable(obj):
            continue
        if type(obj).__name__ in ("AxisConcatenator", "RClass", "CClass", "IndexExpression",
                                  "MGridClass", "OGridClass", "module"):
            continue
        out.append((label, name))
    return out


CALLS = [c for label, plain, _ in MODULES for c in _callables(label, plain)]


def _same(a, b):
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(
            _same(x, y) for x, y in zip(a, b))
    if isinstance(a, (str, bytes, bool, type(None), np.dtype, type)) or callable(a):
        return a == b
    try:
        x, y = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001
        return repr(a) == repr(b)
    if x.dtype.kind in "fc":
        return x.shape == y.shape and np.allclose(x, y, equal_nan=True, rtol=1e-12, atol=1e-12)
    if x.dtype == object:
        return repr(a) == repr(b)
    return x.shape == y.shape and np.array_equal(x, y)


@pytest.mark.parametrize("label,name", CALLS, ids=[f"{m}.{n}" for m, n in CALLS])
def test_a_call_on_plain_values_equals_numpys(label, name):
    plain = dict((m[0], m[1]) for m in MODULES)[label]
    ours = dict((m[0], m[2]) for m in MODULES)[label]
    fn, mine = getattr(plain, name), getattr(ours, name)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for args in ([ARGS[name]] if name in ARGS else CANDIDATES):
            try:
                want = fn(*args)
            except Exception:  # noqa: BLE001 - not this argument list
                continue
            if name in ARGS:  # the functions that write into their argument: a fresh copy
                args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
            got = mine(*args)
            if name in ("empty", "empty_like"):  # unspecified values
                got, want = np.shape(got), np.shape(want)
            assert _same(got, want), (name, args, got, want)
            return
    pytest.skip(f"no sample arguments for {label}.{name}")


def test_printing_and_error_state_are_numpys():
    assert fnp.array2string(V) == np.array2string(V)
    buf = io.StringIO()
    fnp.savetxt(buf, V)
    assert buf.getvalue()
    with fnp.errstate(divide="ignore"):
        assert fnp.geterr()["divide"] == "ignore"
    old = fnp.seterr(over="ignore")
    try:
        assert np.geterr()["over"] == "ignore"
    finally:
        np.seterr(**old)
    assert fnp.newaxis is None and fnp.float64 == np.float64 and fnp.errstate is np.errstate
