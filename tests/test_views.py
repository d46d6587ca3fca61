"""NumPy's view semantics on traced arrays.

Every operation whose NumPy result is a view of its input (a basic slice,
reshape, .T, swapaxes, broadcast_to, diagonal, real/imag, the parts of split,
...) gives a traced value that fastad keeps consistent with its base as
NumPy's shared memory would: a write through either side is seen by the
other, through chains of views of views, and NumPy's copies (``x.T.reshape(-1)``)
stay copies.  Read-only views (broadcast_to, diagonal) refuse writes with
NumPy's error.

The property test draws random chains of view operations, random writes
through a random member of the chain, and returns random members; every
backend's compiled values and derivatives are compared with plain NumPy and
with central finite differences.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.core.errors import TracingError

# sort, partition and complex values run partly off the C VM, which fastad says
pytestmark = pytest.mark.filterwarnings("ignore:fastad.*runs on the:UserWarning")
EXAMPLES = int(os.environ.get("FASTAD_VIEW_EXAMPLES", 60))
VIEWS = settings(max_examples=EXAMPLES, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VIEWS_NUMBA = settings(VIEWS, max_examples=max(EXAMPLES // 10, 1))
FAST_BACKENDS = [b for b in BACKENDS if b != "numba"]


# -- operations that return views (or, for some arguments, copies) -------------------
@dataclass
class ViewOp:
    """``params(draw, a)``: parameters for an operand a (None: not applicable);
    ``apply(a, **params)``: the operation, on NumPy arrays or traced ones."""

    params: Callable[[Any, np.ndarray], dict | None]
    apply: Callable[..., Any]


def _none(draw, a):
    return {}


def _nd(k):
    return lambda draw, a: {} if a.ndim >= k else None


def _axis(draw, a):
    return {"axis": draw(st.integers(-a.ndim, a.ndim - 1))} if a.ndim else None


def _basic_key(draw, a):
    if not a.ndim:
        return None
    key = []
    for d in a.shape[:draw(st.integers(1, a.ndim))]:
        kind = draw(st.sampled_from(["all", "slice", "int", "reverse", "newaxis"]))
        if kind == "int" and d:
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            start = draw(st.integers(0, max(d - 1, 0)))
            key.append(slice(start, draw(st.integers(start, d)), draw(st.integers(1, 3))))
        elif kind == "reverse":
            key.append(slice(None, None, -1))
        elif kind == "newaxis":
            key.extend([None, slice(None)])
        else:
            key.append(slice(None))
    if draw(st.booleans()):
        covers_all = sum(k is not None for k in key) == a.ndim
        key.insert(0 if covers_all and draw(st.booleans()) else len(key), Ellipsis)
    return {"key": tuple(key)}


def _reshape_params(draw, a):
    n = a.size
    divisors = [d for d in range(1, n + 1) if n % d == 0] or [1]
    first = draw(st.sampled_from(divisors))
    choice = draw(st.sampled_from(["flat", "two", "reversed", "lead1"]))
    shape = {"flat": (-1,), "two": (first, -1), "reversed": a.shape[::-1],
             "lead1": (1,) + a.shape}[choice]
    return {"shape": shape, "method": draw(st.booleans())}


def _reshape(a, shape, method):
    return a.reshape(shape) if method else np.reshape(a, shape)


def _perm(draw, a):
    return {"axes": tuple(draw(st.permutations(range(a.ndim))))} if a.ndim else None


def _two_axes(draw, a):
    if not a.ndim:
        return None
    return {"i": draw(st.integers(-a.ndim, a.ndim - 1)),
            "j": draw(st.integers(-a.ndim, a.ndim - 1))}


def _expand(draw, a):
    return {"axis": draw(st.integers(-a.ndim - 1, a.ndim))}


def _squeeze(draw, a):
    ones = [i for i, d in enumerate(a.shape) if d == 1]
    return {"axis": draw(st.sampled_from([None] + ones))}


def _broadcast(draw, a):
    return {"shape": (draw(st.integers(1, 3)),) + a.shape}


def _diagonal(draw, a):
    if a.ndim < 2:
        return None
    return {"offset": draw(st.integers(-1, 1))}


def _split(draw, a):
    if not a.ndim:
        return None
    axis = draw(st.integers(0, a.ndim - 1))
    k = draw(st.integers(1, max(a.shape[axis], 1)))
    return {"k": k, "axis": axis, "i": draw(st.integers(0, k - 1))}


def _unstack(draw, a):
    if not a.ndim or not a.shape[0]:
        return None
    return {"i": draw(st.integers(0, a.shape[0] - 1))}


def _rot(draw, a):
    return {"k": draw(st.integers(-1, 2))} if a.ndim >= 2 else None


VIEW_OPS: dict[str, ViewOp] = {
    "slice": ViewOp(_basic_key, lambda a, key: a[key]),
    "reshape": ViewOp(_reshape_params, _reshape),
    "ravel": ViewOp(_none, lambda a: np.ravel(a)),
    "ravel_method": ViewOp(_none, lambda a: a.ravel()),
    "T": ViewOp(_none, lambda a: a.T),
    "transpose": ViewOp(_perm, lambda a, axes: np.transpose(a, axes)),
    "swapaxes": ViewOp(_two_axes, lambda a, i, j: np.swapaxes(a, i, j)),
    "moveaxis": ViewOp(_two_axes, lambda a, i, j: np.moveaxis(a, i, j)),
    "rollaxis": ViewOp(_two_axes, lambda a, i, j: np.rollaxis(a, i % a.ndim)),
    "expand_dims": ViewOp(_expand, lambda a, axis: np.expand_dims(a, axis)),
    "squeeze": ViewOp(_squeeze, lambda a, axis: np.squeeze(a, axis)),
    "broadcast_to": ViewOp(_broadcast, lambda a, shape: np.broadcast_to(a, shape)),
    "flip": ViewOp(_axis, lambda a, axis: np.flip(a, axis)),
    "fliplr": ViewOp(_nd(2), lambda a: np.fliplr(a)),
    "flipud": ViewOp(_nd(1), lambda a: np.flipud(a)),
    "rot90": ViewOp(_rot, lambda a, k: np.rot90(a, k)),
    "diagonal": ViewOp(_diagonal, lambda a, offset: np.diagonal(a, offset)),
    "diagonal_method": ViewOp(_diagonal, lambda a, offset: a.diagonal(offset)),
    "atleast_2d": ViewOp(_none, lambda a: np.atleast_2d(a)),
    "atleast_3d": ViewOp(_none, lambda a: np.atleast_3d(a)),
    "array_split": ViewOp(_split, lambda a, k, axis, i: np.array_split(a, k, axis)[i]),
    "unstack": ViewOp(_unstack, lambda a, i: np.unstack(a)[i]),
    "view": ViewOp(_none, lambda a: a.view()),
    "mT": ViewOp(_nd(2), lambda a: a.mT),
    "matrix_transpose": ViewOp(_nd(2), lambda a: np.matrix_transpose(a)),
    "real": ViewOp(_none, lambda a: np.real(a)),
    "real_attr": ViewOp(_none, lambda a: a.real),
    "imag": ViewOp(_none, lambda a: a.imag),  # of a real array: read-only zeros
    # copies, for contrast
    "copy": ViewOp(_none, lambda a: a.copy()),
    "flatten": ViewOp(_none, lambda a: a.flatten()),
    "roll": ViewOp(_none, lambda a: np.roll(a, 1)),
}


# -- writes -------------------------------------------------------------------------------
def _write_params(draw, t):
    kind = draw(st.sampled_from(["set_basic", "set_advanced", "set_mask", "iadd", "isub",
                                 "imul", "idiv", "ipow", "ufunc_out", "ufunc_out_other",
                                 "copyto", "copyto_where", "fill", "put", "sort", "set_all",
                                 "clip_out", "cumsum_out"]))
    params: dict[str, Any] = {"kind": kind}
    if kind == "set_basic":
        params["key"] = _basic_key(draw, t)["key"]
    elif kind == "set_advanced":
        n = t.shape[0]
        params["key"] = (np.asarray(draw(st.lists(st.integers(-n, n - 1), min_size=1,
                                                  max_size=n, unique_by=lambda i: i % n))),)
    elif kind == "set_mask":
        params["key"] = np.asarray(draw(st.lists(st.booleans(), min_size=t.size,
                                                 max_size=t.size))).reshape(t.shape)
    elif kind == "put":
        params["ind"] = draw(st.lists(st.integers(0, t.size - 1), min_size=1, max_size=3))
    elif kind == "sort":
        params["axis"] = draw(st.integers(-t.ndim, t.ndim - 1))
    elif kind == "ufunc_out_other":
        params["source"] = draw(st.integers(0, 100))
    return params


def _write(t, chain, kind, key=None, ind=None, axis=None, source=None):
    if kind in ("set_basic", "set_advanced", "set_mask"):
        t[key] = np.cos(t[key]) * 1.5 + 0.25
    elif kind == "set_all":
        t[...] = np.sin(t)
    elif kind == "iadd":
        t += np.sin(t)
    elif kind == "isub":
        t -= 0.5 * t * t
    elif kind == "imul":
        t *= 1.25
    elif kind == "idiv":
        t /= 1.5 + np.cos(t)
    elif kind == "ipow":
        t **= 2.0
    elif kind == "ufunc_out":
        np.sin(t, out=t)
    elif kind == "ufunc_out_other":
        other = [c for c in chain if np.shape(c) == np.shape(t)]
        np.multiply(other[source % len(other)], 0.5, out=t)
    elif kind == "copyto":
        np.copyto(t, np.cos(t) + 1.0)
    elif kind == "copyto_where":
        np.copyto(t, np.cos(t) + 1.0, where=np.arange(t.size).reshape(t.shape) % 2 == 0)
    elif kind == "fill":
        t.fill(0.75)
    elif kind == "put":
        np.put(t, ind, [1.5, -2.5])
    elif kind == "sort":
        t.sort(axis=axis)
    elif kind == "clip_out":
        np.clip(np.sin(t * 3.0), -0.5, 0.75, out=t)
    elif kind == "cumsum_out":
        np.cumsum(t, axis=-1, out=t)


@dataclass
class Program:
    shape: tuple[int, ...]
    chain: list[tuple[str, int, dict]]  # (op, index of its operand in the chain, params)
    writes: list[tuple[int, dict]]  # (index of the written member, params)
    outputs: tuple[int, ...]
    complex: bool = False

    def __call__(self, x, errors=None):
        if isinstance(x, np.ndarray):
            x = x.copy()  # NumPy writes into its argument; fastad never does
        chain = [x * (1.0 + 0.5j) if self.complex else x]
        for name, src, params in self.chain:
            chain.append(VIEW_OPS[name].apply(chain[src], **params))
        for target, params in self.writes:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    _write(chain[target], chain, **params)
            except (ValueError, TypeError, IndexError, TracingError) as e:
                if errors is not None:
                    errors.append(next(kind.__name__ for kind in (TracingError, ValueError,
                                                                  TypeError, IndexError)
                                       if isinstance(e, kind)))
        return tuple(np.real(chain[i]) + 2.0 * np.imag(chain[i]) if np.iscomplexobj(chain[i])
                     else chain[i] for i in self.outputs)


@st.composite
def programs(draw, complex_=False):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    pool = [np.zeros(shape, complex if complex_ else float)]
    chain = []
    for _ in range(draw(st.integers(1, 4))):
        src = draw(st.integers(0, len(pool) - 1))
        name = draw(st.sampled_from(sorted(VIEW_OPS)))
        params = VIEW_OPS[name].params(draw, pool[src])
        if params is None:
            continue
        try:
            value = VIEW_OPS[name].apply(pool[src], **params)
        except (ValueError, IndexError, np.exceptions.AxisError):
            continue
        if value.size > 64:
            continue
        pool.append(value)
        chain.append((name, src, params))
    writes = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.integers(0, len(pool) - 1))
        if not pool[target].size:
            continue
        if not np.ndim(pool[target]):
            # a 0-d view (x[..., 0]) is written through, a NumPy scalar (x[0]) is
            # immutable and its name rebound: augmented assignment tells them apart
            params = {"kind": draw(st.sampled_from(["iadd", "isub", "imul", "idiv", "ipow"]))}
            writes.append((target, params))
            continue
        params = _write_params(draw, pool[target])
        if params["kind"] == "sort" and pool[target].dtype.kind == "c":
            continue
        writes.append((target, params))
    outputs = tuple(draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=3,
                                  unique=True)))
    return Program(shape, chain, writes, outputs, complex_)


def _run_numpy(prog, x):
    errors: list[str] = []
    with np.errstate(all="ignore"):
        return prog(x, errors), errors


def _loss(prog, w):
    def loss(x):
        return sum(np.sum(np.asarray(o) * wk) if isinstance(o, np.ndarray) else np.sum(o * wk)
                   for o, wk in zip(prog(x), w))
    return loss


def check(prog, seed, backends):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.2, prog.shape)
    want, want_errors = _run_numpy(prog, x)
    want = tuple(np.array(o) for o in want)
    # the same program traced: same values, same refusals
    errors: list[str] = []
    got = fa.jit(lambda x: prog(x, errors), backend=backends[0])(x)
    numpy_kinds = ["ValueError" if e == "ValueError" else e for e in want_errors]
    assert errors == numpy_kinds, (errors, want_errors)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    for backend in backends[1:]:
        for g, w in zip(fa.jit(prog, backend=backend)(x), want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    # derivatives: every backend's compiled gradient, forward mode, finite differences
    w = tuple(rng.standard_normal(np.shape(o)) for o in want)
    loss = _loss(prog, w)
    value, grad = fa.value_and_grad(loss)(x)
    np.testing.assert_allclose(value, loss(x), rtol=1e-12, atol=1e-12)
    for backend in backends:
        v, g = fa.compile(loss, backend=backend).value_and_grad(x)
        np.testing.assert_allclose(v, value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-12)
    u = rng.standard_normal(x.shape)
    _, jv = fa.jvp(loss, (x,), (u,))
    np.testing.assert_allclose(jv, np.sum(grad * u), rtol=1e-9, atol=1e-10)
    if any(p["kind"] == "sort" for _, p in prog.writes):
        return  # finite differences may cross a tie
    eps = 1e-6
    fd = (loss(x + eps * u) - loss(x - eps * u)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * u), fd, rtol=1e-5, atol=1e-6)


@VIEWS
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_views_and_writes_follow_numpy(prog, seed):
    check(prog, seed, FAST_BACKENDS or BACKENDS)


@VIEWS
@given(prog=programs(complex_=True), seed=st.integers(0, 2**16))
def test_views_of_complex_arrays_follow_numpy(prog, seed):
    """real and imag of a complex array are views of its parts (the C VM hands
    complex values to Numba, which compiles slowly: the reference runs these)."""
    check(prog, seed, ["numpy"])


@pytest.mark.skipif("numba" not in BACKENDS, reason="Numba backend not selected")
@VIEWS_NUMBA
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_views_and_writes_follow_numpy_on_numba(prog, seed):
    check(prog, seed, ["numba"])


# -- every NumPy function that returns a view, and fastad supports, is tracked -----------
_NOT_CANDIDATES = ("set", "save", "load", "get", "show", "from", "gen", "test", "info", "who",
                   "lookfor", "source", "memmap", "printoptions", "array2string", "array_repr",
                   "array_str", "format", "base_repr", "binary_repr", "_")
_SAMPLES = [(2, 3, 4), (2, 3), (4,)]
_EXTRA_ARGS = [(), (0,), (1,), (-1,), (2,), (0, 1), (0, -1), ((2, 12),), ((0, 1),), ((1, 0),)]


def _sample(shape):
    return np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape) / 7.0


def _view_functions():
    """(name, sample shape, extra arguments) of every function in numpy's namespace
    whose result, on some sample call, shares memory with its array argument."""
    found = {}
    for name in sorted(dir(np)):
        fn = getattr(np, name)
        if (name.startswith(_NOT_CANDIDATES) or isinstance(fn, (type, np.ufunc))
                or not callable(fn)):
            continue
        for shape in _SAMPLES:
            calls = _EXTRA_ARGS + [((3,) + shape,)]  # broadcast_to's shape
            for extra in calls:
                a = _sample(shape)
                try:
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        out = fn(a, *extra)
                except Exception:
                    continue
                outs = out if isinstance(out, (list, tuple)) else [out]
                if any(isinstance(o, np.ndarray) and np.shares_memory(o, a) for o in outs):
                    found.setdefault(name, []).append((shape, extra))
    return found


def _view_methods():
    """The same for the array methods and attributes that fastad's traced arrays have."""
    found = {}
    for name in dir(np.ndarray):
        if name.startswith("_") or name in ("base", "data", "flat", "ctypes") \
                or not hasattr(fa.numpy.Tracer, name):
            continue
        for shape in _SAMPLES:
            for extra in [None] + _EXTRA_ARGS:
                a = _sample(shape)
                attr = getattr(type(a), name)
                if extra is None and callable(attr) or extra is not None and not callable(attr):
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        out = getattr(a, name) if extra is None else getattr(a, name)(*extra)
                except Exception:
                    continue
                if isinstance(out, np.ndarray) and np.shares_memory(out, a):
                    found.setdefault(name, []).append((shape, extra))
    return found


def _through_view(get):
    """A program that takes a view with ``get`` and writes through both sides."""
    def prog(x):
        if isinstance(x, np.ndarray):
            x = x.copy()
        out = get(x)
        views = list(out) if isinstance(out, (list, tuple)) else [out]
        x += np.sin(x)  # seen by every view
        refused = []
        for v in views:
            if np.ndim(v) and v.dtype.kind == "f":
                try:
                    v *= 1.5  # seen by x and the other views
                except ValueError:
                    refused.append(1.0)  # a read-only view, as NumPy's
        return (x, *views, np.asarray(refused))
    return prog


def _supported(get, shape):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fa.make_tape(lambda x: get(x))(_sample(shape))
    except Exception:  # noqa: BLE001 - any refusal: not supported on traced values
        return False
    return True


def _check_tracked(get, shape):
    prog = _through_view(get)
    want = prog(_sample(shape))
    got = fa.jit(prog, backend="numpy")(_sample(shape))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-13)


def test_numpy_functions_that_return_views_are_tracked_as_views():
    found = _view_functions()
    # the enumeration finds the well-known ones (else it tests nothing)
    assert {"reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze",
            "broadcast_to", "diagonal", "split", "real", "flip"} <= set(found), sorted(found)
    checked = []
    for name, calls in sorted(found.items()):
        fn = getattr(np, name)
        for shape, extra in calls:
            get = (lambda fn, extra: lambda x: fn(x, *extra))(fn, extra)
            if _supported(get, shape):
                _check_tracked(get, shape)
                checked.append(name)
    assert {"reshape", "transpose", "broadcast_to", "diagonal", "split", "rot90",
            "matrix_transpose", "atleast_3d", "unstack"} <= set(checked), sorted(set(checked))


def test_array_methods_that_return_views_are_tracked_as_views():
    found = _view_methods()
    assert {"T", "reshape", "ravel", "transpose", "view", "real"} <= set(found), sorted(found)
    for name, calls in sorted(found.items()):
        for shape, extra in calls:
            get = (lambda name, extra: (lambda x: getattr(x, name)) if extra is None
                   else (lambda x: getattr(x, name)(*extra)))(name, extra)
            if _supported(get, shape):
                _check_tracked(get, shape)


# -- particular cases -----------------------------------------------------------------------
def _reshape_then_write(x):
    x = x.copy()
    r = x.reshape(-1)
    x += np.sin(x)
    return r


def _transpose_reshape_is_a_copy(x):
    x = x.copy()
    r = x.T.reshape(-1)  # NumPy copies: x.T is not C-contiguous
    q = x.reshape(-1)  # a view
    x *= 3.0
    r[0] = 5.0 * x[0, 0]
    return r, q, x


def _chain_of_views(x):
    x = x.copy()
    a = x.T[::-1]
    b = np.expand_dims(a, 0).swapaxes(0, 2)
    b[0] *= np.cos(x[0, 0])
    c = np.moveaxis(b, 0, -1)[..., 1:]
    x[1] = np.sin(x[1])
    return a, b, c, x


def _split_parts(x):
    x = x.copy()
    top, bottom = np.vsplit(x, 2)
    left, right = np.hsplit(x, [1])
    top += 1.0
    np.multiply(right, x[0, 0], out=right)
    return x, top, bottom, left, right


def _write_paths(x):
    x = x.copy()
    v = x[:, ::2]
    np.copyto(v, np.cos(v) * 2.0, where=np.array([True, False]))
    np.put(x, [0, 5, 5], [1.5, x[0, 0], 3.0])
    w = x.ravel()
    np.putmask(w, w > 1.0, np.sin(w[:2]))
    np.fill_diagonal(x, x[1, 1] * 0.5)
    d = x.reshape(2, 3)[1]
    d.sort()
    np.add(x[0], d, out=x[1])
    x[0].fill(0.25)
    np.put_along_axis(x.T, np.array([[1, 0, 1]]), np.cos(x[1]), axis=1)
    x[::-1].partition(1, axis=0)
    return x, v, w, d


def _complex_parts(x):
    z = x * (1.0 + 0.5j)
    re, im = z.real, np.imag(z)
    im[0] = 2.0 * re[0, 1]
    re += x
    z[1, 1] = z[1, 1] * 1j
    return np.abs(z), re, im, np.real(z.T.imag)


def _set_parts(x):
    x = x.copy()
    z = x * (1.0 + 0.5j)
    t = z.T
    z.imag = x * 3.0  # NumPy's property setters write into the array
    t.real = np.sin(x.T)
    y = x[::-1]
    y.real = x[0] * 2.0
    return np.real(z) + 2.0 * np.imag(t.T), x


def _more_views(x):
    x = x.copy()
    w = np.lib.stride_tricks.sliding_window_view(x, (2, 2))  # read-only
    d = np.linalg.diagonal(x)  # read-only
    m = np.linalg.matrix_transpose(x)
    e = np.einsum("ij->ji", x)
    x *= 2.0
    m[0, 1] = 7.0 * x[0, 0]
    e[2] += 1.0
    return w, d, m, e, x


def _out_of_functions(x):
    x = x.copy()
    v = x.reshape(3, 2)
    np.sum(v, axis=1, out=x[0])
    np.add.reduce(v, axis=0, out=v[0])
    np.cumsum(v, axis=0, out=v)
    np.matmul(v[:2], v[1:].T * 0.1, out=x[:, :2])
    np.mean(v, axis=1, keepdims=True, out=v[:, 1:])
    return x, v


@pytest.mark.parametrize("f", [_reshape_then_write, _transpose_reshape_is_a_copy,
                               _chain_of_views, _split_parts, _write_paths, _complex_parts,
                               _set_parts, _more_views, _out_of_functions])
def test_writes_through_views_follow_numpy(f, backend):
    x = np.random.default_rng(1).uniform(0.5, 1.5, (2, 3))
    want = f(x)
    got = fa.jit(f, backend=backend)(x)
    for g, w in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-13)
    np.testing.assert_array_equal(x, np.random.default_rng(1).uniform(0.5, 1.5, (2, 3)))
    if f is not _write_paths:  # putmask's mask and sort's order are not smooth in x
        fa.check_grads(f, (x,), modes=("fwd", "rev"))


@pytest.mark.parametrize("write", [
    lambda v: v.__setitem__(0, 1.0), lambda v: v.__iadd__(1.0),
    lambda v: np.sin(v, out=v), lambda v: np.copyto(v, 2.0), lambda v: v.fill(1.0),
    lambda v: np.put(v, [0], [1.0]), lambda v: v.sort(), lambda v: v.partition(0),
    lambda v: np.put_along_axis(v, np.zeros((1,) * v.ndim, int), 1.0, axis=0)])
@pytest.mark.parametrize("view", [
    lambda x: np.broadcast_to(x, (2,) + x.shape), lambda x: np.broadcast_to(x, x.shape).T,
    lambda x: np.diagonal(x), lambda x: x.imag, lambda x: np.broadcast_to(x, (3, 2, 3))[1:, 0],
    lambda x: np.lib.stride_tricks.sliding_window_view(x, 2, axis=1),
    lambda x: np.linalg.diagonal(x).reshape(1, 2), lambda x: np.broadcast_to(x[0, 0], (2, 3))])
def test_read_only_views_refuse_writes_as_numpy(view, write):
    x = np.ones((2, 3))
    with pytest.raises(ValueError) as numpy_error:
        write(view(x.copy()))

    def f(x):
        write(view(x))
        return x

    with pytest.raises(ValueError) as fastad_error:
        fa.jit(f)(x)
    assert str(fastad_error.value) == str(numpy_error.value)


def test_writing_into_a_view_of_repeated_elements_is_refused():
    def f(x, y):
        a, _ = np.broadcast_arrays(x, y)
        a += 1.0  # NumPy deprecates it: which write of a repeated element wins is ambiguous
        return a

    with pytest.raises(ValueError):
        fa.jit(f)(np.ones(3), np.ones((2, 3)))


def test_long_chains_of_views_are_not_recursive():
    def f(x):
        v = x
        for _ in range(3001):  # sys.getrecursionlimit() is 1000
            v = v.T
        v[0] += 1.0
        w = x
        for _ in range(40):
            w = w[1:]
        x *= 2.0
        return x, w

    x = np.arange(50.0)
    for g, w in zip(fa.jit(f, backend="numpy")(x), f(x.copy())):
        np.testing.assert_array_equal(g, w)


def test_shares_memory_and_base_answer_as_numpy():
    def facts(x):
        v, w, t = x[1:], x[:1], x.reshape(2, 3).T
        c = x.T.reshape(2, 3).copy()
        z = x * 1j
        r, i = z.real, z.imag
        return [np.shares_memory(x, v), np.shares_memory(v, w), np.shares_memory(t, v),
                np.shares_memory(c, x), np.may_share_memory(t, x), np.shares_memory(r, i),
                np.shares_memory(r, z), v.base is x, t.base is x, c.base is None,
                np.shares_memory(np.broadcast_to(w, (3, 1)), x[:2])]

    seen = []
    fa.make_tape(lambda x: (seen.append(facts(x)), np.sum(x))[1])(np.arange(6.0))
    assert seen == [facts(np.arange(6.0))]


@pytest.mark.parametrize("prog", [
    # a view of a 0-d view is a view of the array (NumPy's x[0, ...] is a 0-d array)
    Program((1,), [("slice", 0, {"key": (0, Ellipsis)}), ("atleast_2d", 1, {})],
            [(0, {"kind": "set_advanced", "key": (np.array([0]),)})], (2,)),
    # unstack of a vector gives scalars: ravel of one is a copy
    Program((1,), [("unstack", 0, {"i": 0}), ("ravel", 1, {}), ("T", 0, {})],
            [(2, {"kind": "set_basic", "key": (slice(None),)})], (0, 1), complex=True),
    # z.imag is strided: its ravel is a copy
    Program((2,), [("T", 0, {}), ("imag", 0, {}), ("ravel", 2, {})],
            [(0, {"kind": "set_basic", "key": (slice(None),)})], (3,), complex=True)])
def test_programs_the_property_test_found(prog):
    check(prog, 0, ["numpy"])


ZERO_D_VIEWS = {  # 0-d views NumPy writes through, and a scalar it does not
    "ellipsis key": lambda y: y[..., 1, 2],
    "key then ellipsis": lambda y: y[1, ..., 2],
    "squeeze": lambda y: np.squeeze(y[1:2, 2:3]),
    "reshape": lambda y: y[:1, :1].reshape(()),
    "scalar (a copy)": lambda y: y[1, 2],
}
def _iadd(v, y):
    v += np.sin(y[0, 0])


def _isub(v, y):
    v -= 0.5 * y[0, 1]


def _imul(v, y):
    v *= y[0, 0] + 2.0


def _idiv(v, y):
    v /= 1.5 + np.cos(y[0, 1])


def _ipow(v, y):
    v **= 2.0


IN_PLACE = {"+=": _iadd, "-=": _isub, "*=": _imul, "/=": _idiv, "**=": _ipow}


@pytest.mark.parametrize("make", sorted(ZERO_D_VIEWS))
@pytest.mark.parametrize("op", sorted(IN_PLACE))
def test_augmented_assignment_through_0d_views(make, op):
    """``v += c`` writes through a 0-d view of an array (NumPy's ``y[..., i, j]``)
    and only rebinds v when it is a scalar (``y[i, j]``), eager and compiled."""
    def f(x):
        y = x * 1.0
        IN_PLACE[op](ZERO_D_VIEWS[make](y), y)
        return y

    x = np.arange(1.0, 13.0).reshape(3, 4) / 6.5
    expected = f(x.copy())
    assert make == "scalar (a copy)" or not np.array_equal(expected, x)
    for backend in BACKENDS:
        np.testing.assert_allclose(fa.jit(f, backend=backend)(x), expected, rtol=1e-12)
    u = np.random.default_rng(1).standard_normal(x.shape)
    grad = fa.grad(lambda x: np.sum(f(x) ** 2))(x)
    eps = 1e-6
    fd = (np.sum(f(x + eps * u) ** 2) - np.sum(f(x - eps * u) ** 2)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * u), fd, rtol=1e-6)


# -- arguments are values, even when they share memory -------------------------------
@VIEWS
@given(prog=programs(), seed=st.integers(0, 2**16), alias=st.sampled_from(["same", "flip"]))
def test_arguments_are_values_even_when_they_share_memory(prog, seed, alias):
    """``f(x, y)`` writes into x (random view chains and writes) and returns y too,
    called with y the same array as x or a view of it: like every argument, each
    is a value of its own (as in JAX: the caller's arrays are never written, so
    a write into x is not seen through y), eager and compiled alike."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 1.2, prog.shape)
    want, errors = _run_numpy(prog, base)
    if errors:
        return
    partner = (lambda a: a) if alias == "same" else np.flip
    want = tuple(np.array(o) for o in want) + (partner(base) * 2.0,)

    def f(x, y):
        return (*prog(x), y * 2.0)

    x = base.copy()
    y = partner(x)
    assert np.shares_memory(x, y)
    for backend in FAST_BACKENDS or BACKENDS:
        for g, w in zip(fa.jit(f, backend=backend)(x, y), want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(x, base)  # never written
    weights = tuple(rng.standard_normal(np.shape(o)) for o in want)

    def loss(x, y):
        return sum(np.sum(o * wk) for o, wk in zip(f(x, y), weights))

    value, grads = fa.value_and_grad(loss, argnums=(0, 1))(x, y)
    for backend in FAST_BACKENDS or BACKENDS:
        v, g = fa.compile(loss, argnums=(0, 1), backend=backend).value_and_grad(x, y)
        np.testing.assert_allclose(v, value, rtol=1e-12, atol=1e-12)
        for gk, wk in zip(g, grads):
            np.testing.assert_allclose(gk, wk, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(x, base)
    if any(p["kind"] == "sort" for _, p in prog.writes):
        return  # finite differences may cross a tie
    u, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    eps = 1e-6
    fd = (loss(base + eps * u, partner(base) + eps * v)
          - loss(base - eps * u, partner(base) - eps * v)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grads[0] * u) + np.sum(grads[1] * v), fd,
                               rtol=1e-5, atol=1e-6)


def _slice_key(shape):
    return st.tuples(*[st.tuples(st.integers(-n - 1, n + 1), st.integers(-n - 1, n + 1),
                                 st.sampled_from([1, 2, 3, -1, -2])) for n in shape]
                     ).map(lambda t: tuple(slice(*k) for k in t))


@st.composite
def _laid_out(draw):
    """A float array and a copy of it in another memory layout (every other
    element of a larger array, reversed, Fortran order), with two basic slices."""
    # small arrays, and arrays whose slices pass the size at which a trace
    # reads a slice as a strided view rather than a copy (4096 elements)
    shape = tuple(draw(st.one_of(st.lists(st.integers(1, 6), min_size=1, max_size=3),
                                 st.sampled_from([[9000], [9001], [120, 80]]))))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape)
    layout = draw(st.sampled_from(["every_other", "reversed", "fortran"]))
    if layout == "every_other":
        big = np.zeros(shape[:-1] + (2 * shape[-1],))
        big[..., ::2] = x
        y = big[..., ::2]
    elif layout == "reversed":
        y = x[tuple(slice(None, None, -1) for _ in shape)].copy()[
            tuple(slice(None, None, -1) for _ in shape)]
    else:
        y = np.asfortranarray(x)
    return x, y, draw(_slice_key(shape)), draw(_slice_key(shape))


@VIEWS
@given(case=_laid_out())
def test_gradients_do_not_depend_on_the_inputs_memory_layout(case):
    """Slices of an argument that is itself a strided, reversed or Fortran-order
    view: an eager gradient (whose trace reads slices as views of the
    argument) gives the gradient of a contiguous copy bit for bit and NumPy's
    value (to rounding: a sum's order follows memory, in NumPy too); a
    compiled one agrees."""
    x, y, k1, k2 = case

    def f(a):
        return np.sum(np.sin(a[k1]) ** 2) + np.sum(a[k2] * a[k2] * 3.0)

    value, grad = fa.value_and_grad(f)(y)
    np.testing.assert_allclose(value, f(y), rtol=1e-13, atol=1e-300)
    assert grad.tobytes() == fa.grad(f)(x).tobytes()
    compiled = fa.compile(f, backend=FAST_BACKENDS[0]).value_and_grad(y)
    np.testing.assert_allclose(compiled[0], value, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(compiled[1], grad, rtol=1e-13, atol=1e-300)
