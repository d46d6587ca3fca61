"""The optimizer's rules for the adjoints of shifted slices (`transforms.scatters`).

A banded objective written with a padded array and shifted slices of it
(Broyden's banded function, a chain's neighbors) has, in its reverse sweep,
a scatter-add of each slice's adjoint into the padded array's, often
rerolled into one scatter-add of a broadcast, then the middle taken back.
The rules write these as one scatter-add per row and as one sum of shifted
slices.  Checked on generated objectives of that shape: the compiled
gradient, Hessian-vector product and sparse Hessian give the values they
gave without the rules bit for bit (the rules change only how the sums are
scheduled) and equal the dense Hessian and central differences; and on
generated tapes of scatter chains (ranges inside and outside the window
taken, scatter-sets, signed zeros, infinities and NaNs), evaluated by the
reference interpreter with and without the rules.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.backends import reference
from fastad.core.tape import Aval, Instr, Tape
from fastad.transforms import optimize as optimize_module
from fastad.transforms.optimize import eliminate_dead_code
from fastad.transforms.scatters import fuse_shifted_adjoints, split_broadcast_scatters
from test_sparse import COMPILED, close, covers, hvp_matches_fd

#: Numba compiles every generated function (seconds each): one example there
NUMBA = ["numba"] if "numba" in BACKENDS else []

INNER = {"quadratic": lambda x: x * (1.0 + x), "sin": np.sin, "cube": lambda x: x ** 3}
OUTER = {"square": lambda r: r ** 2, "log": lambda r: np.log(1.0 + r ** 2)}


@st.composite
def banded_objectives(draw):
    """(f, x, shifts): a sum over the residuals x_i (2 + x_i^2) - near_i,
    near the (weighted) sum of shifted slices of a zero-padded s(x), padded
    by concatenate or np.pad, the window possibly shorter than x."""
    n = draw(st.integers(6, 24))
    lo, hi, cut = draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(0, 2))
    m = n - cut
    shifts = draw(st.lists(st.integers(0, lo + hi + cut), min_size=1, max_size=6))
    weights = draw(st.none() | st.lists(st.sampled_from([0.5, -1.0, 2.0]),
                                        min_size=len(shifts), max_size=len(shifts)))
    inner, outer = draw(st.sampled_from(sorted(INNER))), draw(st.sampled_from(sorted(OUTER)))
    by_pad = draw(st.booleans())

    def f(x):
        s = INNER[inner](x)
        padded = (np.pad(s, (lo, hi)) if by_pad
                  else np.concatenate([np.zeros(lo), s, np.zeros(hi)]))
        near = 0.0
        for k, d in enumerate(shifts):
            term = padded[d:d + m]
            near = near + (term if weights is None else weights[k] * term)
        r = x[:m] * (2.0 + x[:m] ** 2) - near
        return np.sum(OUTER[outer](r))
    x = np.random.default_rng(draw(st.integers(0, 2 ** 16))).uniform(-1, 1, n)
    return f, x, shifts


def _without_rules(monkeypatch):
    monkeypatch.setattr(optimize_module, "split_broadcast_scatters", lambda tape: tape)
    monkeypatch.setattr(optimize_module, "fuse_shifted_adjoints", lambda tape: tape)


def _results(f, x, v, backend):
    g = fa.compile(f, backend=backend)
    # reroll=False: the rules act on the shifted slices' adjoints as traced;
    # rerolled first (a transformation nested in jit is), repeated shifts
    # (0, 0, 0) become one stacked term, which has no such adjoints
    h = fa.jit(lambda x, v: fa.jvp(fa.grad(f), (x,), (v,))[1], backend=backend,
               reroll=False)
    out = [g(x), h(x, v), g.hessian(x, sparse=True).data]
    return out, h.tape


def _bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def _keep_bits(case, backend):
    f, x, shifts = case
    v = np.random.default_rng(len(shifts)).standard_normal(x.size)
    with_rules, tape = _results(f, x, v, backend)
    with pytest.MonkeyPatch.context() as mp:
        _without_rules(mp)
        without, plain = _results(f, x, v, backend)
    for a, b in zip(with_rules, without):
        assert (_bits(a) == _bits(b)).all()
    # the rules fired: no slice adjoint left as a scatter-add chain taken back
    count = [sum(ins.prim == "scatter_add" for ins in t.instrs) for t in (tape, plain)]
    if len(set(shifts)) >= 2:
        assert count[0] < count[1]
    assert not any(ins.prim == "broadcast_to" for ins in tape.instrs)


def _against_dense(case, seed, backends):
    f, x, _ = case
    dense = np.asarray(fa.hessian(f)(x))
    assert covers(fa.sparsity(f)(x).hessian, dense)
    close(fa.hessian(f, sparse=True)(x), dense)
    for backend in backends:
        h = fa.compile(f, backend=backend).hessian(x, sparse=True)
        close(h, dense)
        hvp_matches_fd(h, f, x, seed)


@settings(max_examples=12, deadline=None)
@given(case=banded_objectives(), backend=st.sampled_from(sorted({"numpy", COMPILED})))
def test_the_rules_keep_every_value_bit_for_bit(case, backend):
    _keep_bits(case, backend)


@settings(max_examples=10, deadline=None)
@given(case=banded_objectives(), seed=st.integers(0, 2 ** 32 - 1))
def test_sparse_hessians_of_shifted_slices_against_dense_and_differences(case, seed):
    _against_dense(case, seed, [COMPILED])


@pytest.mark.skipif(not NUMBA, reason="needs numba")
@settings(max_examples=1, deadline=None)
@given(case=banded_objectives(), seed=st.integers(0, 2 ** 32 - 1))
def test_numba_with_the_rules(case, seed):
    _keep_bits(case, "numba")
    _against_dense(case, seed, NUMBA)


# -- the rules alone, on generated tapes ---------------------------------------------
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e38]  # sums of 1e38 overflow float32


@st.composite
def scatter_chains(draw):
    """A tape: values scattered (added, or set) at random ranges into +0.0
    zeros (or -0.0 zeros, or an input), then a range of the result taken;
    some values added in several places (one broadcast over a table's rows);
    float64 or float32."""
    size = draw(st.integers(4, 16))
    avals: list[Aval] = []
    consts: dict[int, object] = {}
    instrs: list[Instr] = []
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))

    def slot(shape):
        avals.append(Aval(tuple(shape), dtype))
        return len(avals) - 1

    def const(value):
        s = len(avals)
        avals.append(Aval(np.shape(value), np.asarray(value).dtype))
        consts[s] = value
        return s
    inputs = []
    start = draw(st.sampled_from(["zeros", "zeros", "zeros", "negative zeros", "input"]))
    if start == "input":
        acc = slot((size,))
        inputs.append(acc)
    else:
        acc = const(np.full(size, -0.0 if start == "negative zeros" else 0.0, dtype))
    for _ in range(draw(st.integers(1, 6))):
        length = draw(st.integers(1, size))
        at = draw(st.integers(0, size - length))
        v = slot((length,))
        inputs.append(v)
        rows = draw(st.integers(1, 3))
        table = at + np.arange(length)
        prim = draw(st.sampled_from(["scatter_add", "scatter_add", "scatter_set"]))
        if rows > 1 and prim == "scatter_add":  # one value added at several ranges
            starts = [draw(st.integers(0, size - length)) for _ in range(rows)]
            table = np.array(starts)[:, None] + np.arange(length)
            b = slot(table.shape)
            instrs.append(Instr("broadcast_to", b, (v,), (("shape", table.shape),)))
            v = b
        out = slot((size,))
        instrs.append(Instr(prim, out, (acc, const(table), v)))
        acc = out
    length = draw(st.integers(1, size))
    at = draw(st.integers(0, size - length))
    result = slot((length,))
    instrs.append(Instr("take", result, (acc, const(at + np.arange(length)))))
    tape = Tape(inputs, [result], consts, instrs, avals)
    values = [np.array(draw(st.lists(st.sampled_from(SPECIAL) | st.floats(-2, 2),
                                     min_size=avals[s].size, max_size=avals[s].size)), dtype)
              for s in inputs]
    return tape, values


def _same(a, b):
    return a.shape == b.shape and (np.isnan(a) == np.isnan(b)).all() and (
        _bits(a)[~np.isnan(a)] == _bits(b)[~np.isnan(b)]).all()


@settings(max_examples=150, deadline=None)
@given(case=scatter_chains())
def test_rules_on_generated_scatter_chains_bit_for_bit(case):
    tape, values = case
    want = reference.evaluate(tape, values)[0]
    rewritten = eliminate_dead_code(fuse_shifted_adjoints(split_broadcast_scatters(tape)))
    rewritten.validate()
    assert _same(reference.evaluate(rewritten, values)[0], want)
    assert _same(reference.evaluate(optimize_module.optimize(tape), values)[0], want)
