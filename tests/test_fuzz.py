"""Differential fuzzing: random programs over the primitive registry.

hypothesis draws a program: one to three inputs of mutually broadcastable
shapes (size-1 axes included) in float64 or float32, then a few steps, each
an operation of `OPS` applied to earlier values with random axes, slices,
indices, permutations and shapes; some steps take a view, write through one
side and read the other (NumPy's shared memory, which fastad follows).
Operands of functions with a restricted domain pass through an adapter that
maps every real into it (``log(x*x + 0.5)``), so every program is defined at
every input.

For each program:
  * every backend (C VM, Numba, the NumPy reference) runs the compiled
    program, its compiled gradient and its compiled forward derivative, and
    each agrees with plain NumPy or the reference interpreter;
  * reverse mode agrees with forward mode (w . J v both ways);
  * when the program is smooth (no kinks, branches or comparisons) and
    float64, both modes agree with central finite differences.

The CI budget is ``FASTAD_FUZZ_EXAMPLES`` (default 200) programs per test
(a sixteenth of that for Numba, which compiles each program for seconds); a
longer run over fresh random programs:

    FASTAD_TEST_EXPLORE=1 FASTAD_FUZZ_EXAMPLES=2000 python -m pytest -q tests/test_fuzz.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS

EXAMPLES = int(os.environ.get("FASTAD_FUZZ_EXAMPLES", 200))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Numba compiles each program for a few seconds: a smaller share of the budget.
FUZZ_NUMBA = settings(FUZZ, max_examples=max(EXAMPLES // 16, 1))
FAST_BACKENDS = [b for b in BACKENDS if b != "numba"]
# Compiled code against NumPy: float32 kernels may round sums differently.
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}


# -- domain adapters: any real into the domain of a function --------------------------
def positive(x):
    return np.square(x) + 0.5


def bounded(x):  # [-1.5, 1.5], where exp, sinh, ... stay moderate
    return np.sin(x) * 1.5


def unit(x):  # [-0.8, 0.8]
    return np.sin(x) * 0.8


def other_dtype(x):
    return np.float32 if x.dtype == np.float64 else np.float64


# -- operations ----------------------------------------------------------------------
@dataclass
class Op:
    """``apply(draw, *operands)`` -> the result (on NumPy arrays or tracers);
    ``draw`` picks parameters from the operands' shapes at generation time.
    ``smooth``: differentiable everywhere the adapters allow, so finite
    differences apply (kinks, comparisons, branches and casts to float32 are not)."""

    arity: int
    params: Callable[[Any, list[np.ndarray]], dict]
    apply: Callable[..., Any]
    smooth: bool = True
    min_ndim: int = 0  # of the first operand (0-d traced values cannot be indexed)


def no_params(draw, xs):
    return {}


def unary(fn, adapt=None, smooth=True):
    return Op(1, no_params, (lambda x: fn(adapt(x))) if adapt else (lambda x: fn(x)), smooth)


def binary(fn, adapt_y=None, smooth=True):
    return Op(2, no_params, (lambda x, y: fn(x, adapt_y(y))) if adapt_y else fn, smooth)


@st.composite
def axis_param(draw, shape, allow_none=True, allow_tuple=True):
    nd = len(shape)
    choices = [st.none()] if allow_none or nd == 0 else []
    if nd:
        choices.append(st.integers(-nd, nd - 1))
        if allow_tuple:
            choices.append(st.lists(st.integers(0, nd - 1), unique=True, min_size=1,
                                    max_size=nd).map(tuple))
    return draw(st.one_of(*choices))


def _reduced(shape, axis):
    if axis is None:
        return tuple(range(len(shape)))
    return tuple(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis))


def reduction(fn, adapt=None, smooth=True, nonempty=False):
    def params(draw, xs):
        shape = xs[0].shape
        axis = draw(axis_param(shape))
        if nonempty and any(shape[a] == 0 for a in _reduced(shape, axis)):
            axis = None if 0 not in shape else ()
        return {"axis": axis, "keepdims": draw(st.booleans())}

    def apply(x, axis, keepdims):
        if axis == ():  # max/min over an empty array: reduce over no axis
            return fn(adapt(x) if adapt else x, axis=(), keepdims=keepdims) \
                if x.ndim else x
        return fn(adapt(x) if adapt else x, axis=axis, keepdims=keepdims)
    return Op(1, params, apply, smooth)


def _axis_of(draw, x):
    return draw(st.integers(-x.ndim, x.ndim - 1)) if x.ndim else None


def _basic_key(draw, shape):
    key = []
    for d in shape:
        kind = draw(st.sampled_from(["all", "slice", "int", "reverse"]))
        if kind == "int" and d > 0:
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            start = draw(st.integers(0, max(d - 1, 0)))
            key.append(slice(start, draw(st.integers(start, d)), draw(st.integers(1, 3))))
        elif kind == "reverse":
            key.append(slice(None, None, -1))
        else:
            key.append(slice(None))
    if draw(st.booleans()) and key:
        key[draw(st.integers(0, len(key) - 1))] = None if draw(st.booleans()) else key[0]
    return tuple(key)


def _index_params(draw, xs, unique=False):
    x = xs[0]
    kind = draw(st.sampled_from(["basic", "ellipsis", "array", "mask"] if x.size else ["basic"]))
    if kind == "basic":
        key = _basic_key(draw, x.shape)
    elif kind == "ellipsis":
        key = (Ellipsis, draw(st.integers(-x.shape[-1], x.shape[-1] - 1))) \
            if x.ndim and x.shape[-1] else (Ellipsis,)
    elif kind == "array":
        n = x.shape[0] if x.ndim else 0
        positions = st.lists(st.integers(0, n - 1), min_size=1, max_size=6,
                             unique=unique) if n else st.just([])
        key = (np.asarray(draw(positions), dtype=np.int64) - draw(st.sampled_from([0, n])),) \
            if n else (Ellipsis,)
    else:
        key = (np.asarray(draw(hnp.arrays(np.bool_, x.shape))),)
    return {"key": key}


def _flat_indices(draw, xs, unique):
    n = xs[0].size
    if n == 0:
        return {"idx": np.zeros(0, np.int64)}
    idx = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n, unique=unique))
    return {"idx": np.asarray(idx, dtype=np.int64)}


def _assign(x, y, key):
    """x with x[key] replaced by a function of x[key] and the mean of y."""
    out = x.copy() if isinstance(x, np.ndarray) else fnp.copy(x)
    out[key] = np.sin(x[key]) * np.mean(y) if np.size(y) else np.sin(x[key])
    return out


def _scatter_add(x, y, idx):
    return fnp.scatter_add(x, idx, np.cos(fnp.take_flat(x, idx[::-1])) * np.sum(y))


def _loop_sum(x):
    """A scalar Python loop, rerolled by jit/compile into vector code."""
    v = np.reshape(x, -1)
    s = v[0] * 0.0 if v.size else np.sum(v)
    for i in range(v.size - 1):
        s = s + (v[i + 1] - np.square(v[i])) ** 2 + np.cos(v[i])
    return s


def _loop_write(x):
    """A Python loop that writes element by element (scatter chains)."""
    v = np.reshape(x, -1)
    out = v * 0.0
    for i in range(v.size):
        out[i] = out[i] + v[i] * v[(i + 1) % v.size]
    return out


def _matmul(x, y):
    if x.ndim == 1:
        return x @ x
    if x.ndim == 0:
        return x * y
    other = y if np.shape(y) == np.shape(x) else x
    return np.matmul(x, np.swapaxes(other, -1, -2))


def _system(x):
    """A well-conditioned (..., n, n) matrix and an (..., n, 1) vector from x."""
    v = np.reshape(x, (1,)) if x.ndim == 0 else x
    n = v.shape[-1]
    a = 2.0 * np.eye(n) + (0.3 / n) * np.tanh(v[..., :, None] * v[..., None, :])
    return a, v[..., :, None]


def _linalg_params(draw, xs):
    return {"what": draw(st.sampled_from(["solve", "slogdet", "det", "inv"]))}


def _linalg(x, what):
    if x.ndim and x.shape[-1] == 0:
        return x
    a, b = _system(x)
    if what == "solve":
        return np.linalg.solve(a, b)
    if what == "slogdet":
        sign, logdet = np.linalg.slogdet(a)
        return sign * logdet
    return np.linalg.det(a) if what == "det" else np.linalg.inv(a)


def _select_params(draw, xs):
    return {"cmp": draw(st.sampled_from(["less", "less_equal", "greater", "greater_equal",
                                         "equal", "not_equal"])),
            "logic": draw(st.sampled_from([None, "and", "or", "not"]))}


def _select(x, y, cmp, logic):
    c = getattr(np, cmp)(x, y)
    if logic == "and":
        c = np.logical_and(c, x > 0)
    elif logic == "or":
        c = np.logical_or(c, y < 0)
    elif logic == "not":
        c = np.logical_not(c)
    return np.where(c, x, y * 0.5) + c.astype(x.dtype)


def _branch(x):
    """Python control flow on a traced value: a guard."""
    if np.sum(x) > 0:
        return np.sin(x)
    return np.cos(x) * 2.0


def _shape_params(draw, xs):
    x = xs[0]
    kind = draw(st.sampled_from(["ravel", "reverse", "transpose", "expand", "broadcast",
                                 "squeeze", "swap"]))
    perm = tuple(draw(st.permutations(range(x.ndim)))) if x.ndim else ()
    return {"kind": kind, "perm": perm, "axis": draw(st.integers(0, x.ndim))}


def _reshape(x, kind, perm, axis):
    if kind == "ravel":
        return np.ravel(x)
    if kind == "reverse":
        return np.reshape(x, tuple(reversed(x.shape)))
    if kind == "transpose":
        return np.transpose(x, perm)
    if kind == "expand":
        return np.expand_dims(x, axis)
    if kind == "broadcast":
        return np.broadcast_to(x, (2,) + x.shape)
    if kind == "swap" and x.ndim >= 2:
        return np.swapaxes(x, 0, -1)
    return np.squeeze(x)


def _combine_params(draw, xs):
    x = xs[0]
    return {"kind": draw(st.sampled_from(["concat", "stack", "flip", "roll", "tile", "repeat",
                                          "diag", "triu"])),
            "axis": _axis_of(draw, x), "shift": draw(st.integers(-3, 3))}


def _combine(x, y, kind, axis, shift):
    if kind in ("concat", "stack"):
        other = y if np.shape(y) == np.shape(x) else x
        if kind == "stack":
            return np.stack([x, other], axis=0)
        return np.concatenate([x, other], axis=axis) if x.ndim else np.stack([x, other])
    if kind == "flip":
        return np.flip(x, axis)
    if kind == "roll":
        return np.roll(x, shift, axis)
    if kind == "tile":
        return np.tile(x, 2)
    if kind == "repeat":
        return np.repeat(x, 2, axis)
    if kind == "diag" and x.ndim == 1:
        return np.diag(x)
    if kind == "triu" and x.ndim >= 2:
        return np.triu(x)
    return np.diagonal(x) if x.ndim >= 2 else x


def _in_place(x, y, kind):
    """x op= f(y): x changes where every earlier use of it in the program sees it."""
    if kind == "add":
        x += np.sin(y)
    elif kind == "sub":
        x -= y * 0.5
    else:
        x *= np.cos(y)
    return x


def _view_params(draw, xs):
    x = xs[0]
    return {"kind": draw(st.sampled_from(VIEW_KINDS)), "key": _basic_key(draw, x.shape),
            "axis": draw(st.integers(0, max(x.ndim - 1, 0)))}


VIEW_KINDS = ["slice", "ravel", "reshape", "T", "swapaxes", "moveaxis", "expand", "squeeze",
              "broadcast", "diagonal", "flip", "split", "atleast_3d", "view", "copy_of_view"]


def _view(x, kind, key, axis):
    """A NumPy view of x (or, for some kinds and shapes, a copy NumPy makes)."""
    if kind == "slice":
        return x[key]
    if kind == "ravel":
        return np.ravel(x)
    if kind == "reshape":
        return x.reshape(tuple(reversed(x.shape)))
    if kind == "T":
        return x.T
    if kind == "swapaxes":
        return np.swapaxes(x, 0, -1)
    if kind == "moveaxis":
        return np.moveaxis(x, axis, -1)
    if kind == "expand":
        return np.expand_dims(x, axis)
    if kind == "squeeze":
        return np.squeeze(x)
    if kind == "broadcast":  # read-only: writes into it raise, as in NumPy
        return np.broadcast_to(x, (2,) + x.shape)
    if kind == "diagonal":  # read-only too
        return np.diagonal(x) if x.ndim >= 2 else x[::-1]
    if kind == "flip":
        return np.flip(x, axis)
    if kind == "split":
        return np.array_split(x, 2, axis)[-1]
    if kind == "atleast_3d":
        return np.atleast_3d(x)
    if kind == "view":
        return x.view()
    return x.T.reshape(-1)  # a copy: writes into it stay in it


def _view_write_params(draw, xs):
    return {**_view_params(draw, xs),
            "write": draw(st.sampled_from(["view_iadd", "view_set", "view_out", "view_copyto",
                                           "base_iadd", "base_set", "base_out"])),
            "ret": draw(st.sampled_from(["view", "base", "both"]))}


def _view_write(x, y, kind, key, axis, write, ret):
    """Take a view of x, write through one side, read the other: x changes where
    every earlier use of it in the program sees it."""
    v = _view(x, kind, key, axis)
    if np.ndim(v) == 0 and write.startswith("view"):
        write = "base_iadd"  # 0-d traced values are immutable, like NumPy scalars
    c = np.sum(y) * 0.1
    if write == "view_iadd":
        v += np.cos(v) * 0.5 + c
    elif write == "view_set":
        v[...] = np.sin(v) + c
    elif write == "view_out":
        np.multiply(v, 1.5, out=v)
    elif write == "view_copyto":
        np.copyto(v, np.tanh(v) - c)
    elif write == "base_iadd":
        x += np.sin(x) * 0.5 + c
    elif write == "base_set":
        x[...] = np.cos(x) - c
    else:
        np.add(x, c, out=x)
    if ret == "view":
        return v
    if ret == "base":
        return x
    return v + np.sum(x)


def _complex(x, y):
    """Real results of complex arithmetic (|z|^2 and Im z, smooth everywhere)."""
    z = x * (1.0 + 0.5j) + np.conj(y * 1j)
    return np.real(z * np.conj(z)) + np.imag(z)


def _fft_params(draw, xs):
    return {"axis": _axis_of(draw, xs[0]), "inverse": draw(st.booleans()),
            "norm": draw(st.sampled_from([None, "ortho", "forward"]))}


def _fft(x, axis, inverse, norm):
    if axis is None:
        return x
    z = (np.fft.ifft if inverse else np.fft.fft)(x, axis=axis, norm=norm)
    return np.real(z) - np.imag(z)


def _cumsum_params(draw, xs):
    return {"axis": _axis_of(draw, xs[0]), "reverse": draw(st.booleans())}


def _cumsum(x, axis, reverse):
    if axis is None:
        return np.cumsum(x)
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis) if reverse else np.cumsum(x, axis)


OPS: dict[str, Op] = {
    # elementwise, whole real line
    "negative": unary(np.negative), "square": unary(np.square), "sin": unary(np.sin),
    "cos": unary(np.cos), "arctan": unary(np.arctan), "tanh": unary(np.tanh),
    "arcsinh": unary(np.arcsinh),
    # elementwise, through a domain adapter
    "exp": unary(np.exp, bounded), "exp2": unary(np.exp2, bounded),
    "expm1": unary(np.expm1, bounded), "sinh": unary(np.sinh, bounded),
    "cosh": unary(np.cosh, bounded), "tan": unary(np.tan, bounded),
    "log": unary(np.log, positive), "log2": unary(np.log2, positive),
    "log10": unary(np.log10, positive), "log1p": unary(np.log1p, positive),
    "sqrt": unary(np.sqrt, positive), "cbrt": unary(np.cbrt, positive),
    "reciprocal": unary(np.reciprocal, positive),
    "arcsin": unary(np.arcsin, unit), "arccos": unary(np.arccos, unit),
    "arctanh": unary(np.arctanh, unit),
    "arccosh": unary(np.arccosh, lambda x: np.square(x) + 1.2),
    # scipy.special's functions the compiled backends compute themselves
    "erf": unary(sc.erf), "erfc": unary(sc.erfc), "expit": unary(sc.expit),
    "log_expit": unary(sc.log_expit), "ndtr": unary(sc.ndtr),
    "logit": unary(sc.logit, lambda x: 0.5 + 0.5 * unit(x)),
    "gammaln": unary(sc.gammaln, positive), "digamma": unary(sc.digamma, positive),
    "xlogy": binary(sc.xlogy, positive), "xlog1py": binary(sc.xlog1py, positive),
    # piecewise: exact derivatives, but finite differences may straddle a kink
    "abs": unary(np.abs, smooth=False), "sign": unary(np.sign, smooth=False),
    "floor": unary(np.floor, smooth=False), "ceil": unary(np.ceil, smooth=False),
    "rint": unary(np.rint, smooth=False),
    # binary, broadcasting
    "add": binary(np.add), "subtract": binary(np.subtract), "multiply": binary(np.multiply),
    "divide": binary(np.divide, positive), "power": Op(2, no_params,
                                                       lambda x, y: positive(x) ** bounded(y)),
    "arctan2": binary(np.arctan2, positive), "hypot": binary(np.hypot, positive),
    "logaddexp": binary(np.logaddexp),
    "maximum": binary(np.maximum, smooth=False), "minimum": binary(np.minimum, smooth=False),
    "scalar": Op(1, no_params, lambda x: 2.5 * x - 1.0 + x / 3.0 + x ** 2),
    "select": Op(2, _select_params, _select, smooth=False),
    "branch": Op(1, no_params, _branch, smooth=False),
    "stop_gradient": Op(2, no_params, lambda x, y: x + fnp.stop_gradient(y) - fnp.stop_gradient(y)),
    "astype": Op(1, no_params, lambda x: x.astype(other_dtype(x)) * 1.5, smooth=False),
    # reductions
    "sum": reduction(np.sum), "mean": reduction(np.mean),
    "prod": reduction(np.prod, lambda x: 1.0 + 0.3 * np.sin(x)),
    # exact zero factors: the products of the others, not a quotient
    "prod_zeros": reduction(np.prod, lambda x: np.where(x > 1.0, 0.0, 1.0 + 0.3 * np.sin(x)),
                            smooth=False),
    "max": reduction(np.max, smooth=False, nonempty=True),
    "min": reduction(np.min, smooth=False, nonempty=True),
    "var": Op(1, lambda draw, xs: {"axis": draw(axis_param(xs[0].shape))},
              lambda x, axis: np.var(x, axis=axis)),
    "logsumexp": Op(1, lambda draw, xs: {"axis": draw(axis_param(xs[0].shape))},
                    lambda x, axis: fnp.logsumexp(x, axis=axis)),
    "cumsum": Op(1, _cumsum_params, _cumsum),
    "cumprod": Op(1, lambda draw, xs: {"axis": _axis_of(draw, xs[0])},
                  lambda x, axis: np.cumprod(1.0 + 0.3 * np.sin(x), axis)),
    # shapes and indexing
    "reshape": Op(1, _shape_params, _reshape),
    "combine": Op(2, _combine_params, _combine),
    "index": Op(1, _index_params, lambda x, key: x[key], min_ndim=1),
    "assign": Op(2, lambda draw, xs: _index_params(draw, xs, unique=True), _assign, min_ndim=1),
    "in_place": Op(2, lambda draw, xs: {"kind": draw(st.sampled_from(["add", "sub", "mul"]))},
                   _in_place, min_ndim=1),
    "view": Op(1, _view_params, _view, min_ndim=1),
    "view_write": Op(2, _view_write_params, _view_write, min_ndim=1),
    "scatter_add": Op(2, lambda draw, xs: _flat_indices(draw, xs, False), _scatter_add),
    "loop_sum": unary(_loop_sum), "loop_write": unary(_loop_write),
    # complex values in between
    "complex": binary(_complex), "fft": Op(1, _fft_params, _fft),
    # linear algebra
    "matmul": binary(_matmul),
    "linalg": Op(1, _linalg_params, _linalg),
}


# -- programs --------------------------------------------------------------------------
@dataclass
class Program:
    inputs: tuple[np.ndarray, ...]
    steps: list[tuple[str, tuple[int, ...], dict]]
    outputs: tuple[int, ...]

    def __call__(self, *xs):
        # in-place steps write into their operand: never into the caller's arrays
        pool = [x.copy() for x in xs]
        for name, operands, params in self.steps:
            pool.append(OPS[name].apply(*(pool[i] for i in operands), **params))
        return tuple(pool[i] for i in self.outputs)

    @property
    def dtype(self) -> np.dtype:
        """The least precise float type the program computes in."""
        if any(x.dtype == np.float32 for x in self.inputs) or any(
                name == "astype" for name, _, _ in self.steps):
            return np.dtype(np.float32)
        return np.dtype(np.float64)

    @property
    def complex(self) -> bool:
        return any(name in COMPLEX_OPS for name, _, _ in self.steps)

    @property
    def smooth(self) -> bool:
        return (all(OPS[name].smooth for name, _, _ in self.steps)
                and all(x.dtype == np.float64 for x in self.inputs))

    def __repr__(self) -> str:
        lines = [f"inputs: {[(x.shape, x.dtype.name) for x in self.inputs]}"]
        lines += [f"  %{len(self.inputs) + k} = {name}{tuple(f'%{i}' for i in ops)} {params}"
                  for k, (name, ops, params) in enumerate(self.steps)]
        return "\n".join(lines + [f"  return {self.outputs}"])


COMPLEX_OPS = {"complex", "fft"}
# Views and writes through them are drawn more often than the other steps: a
# fair share of programs take a view, write through one side and read the other.
STEP_NAMES = sorted(OPS) + ["view", "view_write"] * 4
MAX_SIZE = 64  # elements per value: keeps loops and finite differences cheap


@st.composite
def programs(draw, max_steps=6):
    nin = draw(st.integers(1, 3))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=nin, min_dims=0, max_dims=3,
                                                    min_side=1, max_side=4)).input_shapes
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    inputs = tuple(rng.uniform(-2.0, 2.0, s).astype(dtype) for s in shapes)
    pool = [x.copy() for x in inputs]
    steps = []
    with np.errstate(all="raise"):
        for _ in range(draw(st.integers(1, max_steps))):
            name = draw(st.sampled_from(STEP_NAMES))
            op = OPS[name]
            operands = tuple(draw(st.integers(0, len(pool) - 1)) for _ in range(op.arity))
            xs = [pool[i] for i in operands]
            if xs[0].ndim < op.min_ndim:
                continue
            params = op.params(draw, xs)
            try:
                value = np.asarray(op.apply(*xs, **params))
            except (ValueError, IndexError, FloatingPointError):
                continue  # shapes that do not combine: a different step next time
            if value.dtype.kind != "f" or value.size > MAX_SIZE:
                continue
            pool.append(value)
            steps.append((name, operands, params))
    float_slots = [i for i, v in enumerate(pool) if v.dtype.kind == "f"]
    last = len(pool) - 1
    extra = draw(st.sampled_from(float_slots))
    return Program(inputs, steps, (last,) if extra == last else (last, extra))


# -- oracles ------------------------------------------------------------------------------
def close(got, want, dtype, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    rtol = RTOL[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0, where=np.isfinite(want))))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=True,
                               err_msg=what)


def weights(prog, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(np.shape(o)).astype(o.dtype) for o in prog(*prog.inputs))


def weighted_loss(prog, w):
    def loss(*xs):
        return sum(np.sum(o * wk) for o, wk in zip(prog(*xs), w))
    return loss


def tangents_for(prog, seed):
    rng = np.random.default_rng(seed + 1)
    return tuple(rng.standard_normal(x.shape).astype(x.dtype) for x in prog.inputs)


def _dot(a, b):
    return sum(float(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64)))
               for x, y in zip(a, b))


def check_backends(prog, seed, backends, record_count):
    """Each backend's compiled values, gradient and forward derivative against
    plain NumPy and the reference interpreter."""
    args, dtype = prog.inputs, prog.dtype
    want = prog(*args)
    w = weights(prog, seed)
    loss = weighted_loss(prog, w)
    argnums = tuple(range(len(args)))
    v = tangents_for(prog, seed)
    compiled = fa.compile(loss, argnums=argnums, backend="numpy")
    reference = compiled.value_and_grad(*args)
    ref_jvp = fa.jvp(prog, args, v)[1]
    # every compiled tape passes the loader's validation and runs the same after it
    loaded = fa.loads(fa.dumps(compiled)).value_and_grad(*args)
    close(loaded[0], reference[0], dtype, "saved and loaded: loss")
    for g, r in zip(loaded[1], reference[1]):
        close(g, r, dtype, "saved and loaded: gradient")
    # The C VM runs no complex values: it hands such programs to Numba, which
    # compiles for seconds, and Numba has a test of its own below.
    for backend in [b for b in backends if not (prog.complex and b == "c")]:
        for got, expected in zip(fa.jit(prog, backend=backend)(*args), want):
            close(got, expected, dtype, f"{backend}: values")
        value, grads = fa.compile(loss, argnums=argnums, backend=backend).value_and_grad(*args)
        close(value, reference[0], dtype, f"{backend}: loss")
        for g, r in zip(grads, reference[1]):
            close(g, r, dtype, f"{backend}: gradient")
        fwd = fa.jit(lambda *xs: fa.jvp(prog, xs, v)[1], backend=backend)(*args)
        for got, expected in zip(fwd, ref_jvp):
            close(got, expected, dtype, f"{backend}: forward derivative")
        record_count(f"fuzz programs run on the {backend} backend", 1)
    record_count("fuzz steps", len(prog.steps))
    for name, _, _ in prog.steps:
        record_count("fuzz operations covered", 0, key=name)
    for ins in fa.make_tape(loss)(*args).instrs:
        record_count("fuzz primitives covered", 0, key=ins.prim)


# Each test counts the programs it ran; the totals and the primitives covered are
# printed at the end of the session (see conftest.py).
@FUZZ
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_backends_agree_with_numpy_and_the_reference(prog, seed, record_count):
    check_backends(prog, seed, FAST_BACKENDS, record_count)


@pytest.mark.skipif("numba" not in BACKENDS, reason="Numba backend not selected")
@FUZZ_NUMBA
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_numba_backend_agrees_with_the_reference(prog, seed, record_count):
    check_backends(prog, seed, ["numba"], record_count)


@FUZZ
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_reverse_mode_agrees_with_forward_mode_and_finite_differences(prog, seed,
                                                                      record_count):
    args = prog.inputs
    w, v = weights(prog, seed), tangents_for(prog, seed)
    out, vjp_fn = fa.vjp(prog, *args)
    _, jv = fa.jvp(prog, args, v)
    # the caller owns what a transform returns: no read-only views of seeds
    assert_writeable(vjp_fn(w), jv, fa.grad(weighted_loss(prog, w), tuple(range(len(args))))(*args))
    # a cotangent has its input's dtype, a tangent its output's (JAX's rule)
    assert [np.asarray(c).dtype for c in vjp_fn(w)] == [x.dtype for x in args]
    assert [np.asarray(t).dtype for t in jv] == [np.asarray(o).dtype for o in out]
    rev, fwd = _dot(vjp_fn(w), v), _dot(w, jv)
    rtol = RTOL[prog.dtype]
    scale = _dot([np.abs(c) for c in vjp_fn(w)], [np.abs(t) for t in v]) + abs(fwd)
    assert abs(rev - fwd) <= rtol * max(scale, 1.0), (rev, fwd)
    record_count("fuzz programs (reverse vs forward)", 1)
    if prog.smooth:
        fa.check_grads(prog, args, order=2 if len(prog.steps) <= 3 else 1,
                       modes=("fwd", "rev"), seed=seed)
        record_count("fuzz programs (finite differences)", 1)


def assert_writeable(*trees):
    for tree in trees:
        for leaf in (tree if isinstance(tree, (tuple, list)) else [tree]):
            if isinstance(leaf, np.ndarray):
                assert leaf.flags.writeable, "a transform returned a read-only array"


# -- regressions the fuzzer found ---------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 4, 1), (3, 5), (7,)])
def test_empty_results_beside_an_input_read_in_place(shape):
    """Results of no elements sit at the arena's end, where the first input
    read in place begins: they are no segment of their own (the VM refused
    the program as an input outside its arena)."""
    x = np.random.default_rng(0).normal(size=shape)
    v = np.ones_like(x)
    empty = lambda y: y[..., 2:2]  # noqa: E731
    f = lambda x: fa.jvp(lambda y: (np.abs(np.sign(empty(y))), empty(y)), (x,), (v,))[1]  # noqa: E731
    for backend in BACKENDS:
        for got in fa.jit(f, backend=backend)(x):
            assert got.shape == empty(x).shape
def test_assigning_into_a_copy_leaves_the_original_alone():
    """``b = a.copy(); b[k] = v`` rebound a's traced value too (copy returned a)."""
    def f(x, y):
        out = x.copy()
        out[..., 0] = np.sin(x[..., 0]) * np.mean(y)
        return out, x, +x

    x, y = np.array([0.5, 1.5]), np.array(-0.9)
    for got, want in zip(fa.jit(f)(x, y), f(x, y)):
        np.testing.assert_array_equal(got, want)
    fa.check_grads(f, (x, y), modes=("fwd", "rev"))
