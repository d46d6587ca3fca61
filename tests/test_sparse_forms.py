"""Sparse Hessians of grids of several dimensions, and how their products run.

The 3-D stencil and the two-component Ginzburg-Landau energy (slices of a
reshaped 3-D array): exact patterns, valid colorings and values against the
dense Hessian, eagerly and on every backend.  The compressed product's three
unbatched forms (the seeds side by side in one pass, one call per seed, or
one call of the part no seed changes and one per seed of the rest)
give the same values bit for bit, on the fuzz generator's programs too, so
that keeping the faster after timing changes nothing but the time.  On
Numba, instructions of one loop shape are brought together
(`numba_loops._grouped_by_shape`) so a 3-D stencil's slices of each shape
are one loop, bitwise as the reference interpreter.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.sparse import derivatives
from test_fuzz import programs
from test_sparse import (COMPILED, NUMBA_FUZZ, close, fuzz_hessian_case, hvp_matches_fd,
                         minimal_surface, nonzeros, valid_hessian_coloring)


def stencil3d(x):
    """Squared differences to the six neighbors on a cube, a quartic and a log barrier."""
    k = int(round(x.size ** (1 / 3)))
    u = x.reshape(k, k, k)
    d0, d1, d2 = u[1:] - u[:-1], u[:, 1:] - u[:, :-1], u[:, :, 1:] - u[:, :, :-1]
    return (np.sum(d0 ** 2) + np.sum(d1 ** 2) + np.sum(d2 ** 2) + 0.1 * np.sum(u ** 4)
            - np.sum(np.log(2.0 + u)))


def landau(x):
    """A two-component order parameter on a square grid: squared differences
    of both components along both axes, and (1 - a^2 - b^2)^2 at each point."""
    k = int(round(np.sqrt(x.size // 2)))
    u = x.reshape(2, k, k)
    rho = u[0] ** 2 + u[1] ** 2
    return (0.5 * (np.sum((u[:, 1:] - u[:, :-1]) ** 2) + np.sum((u[:, :, 1:] - u[:, :, :-1]) ** 2))
            + 0.25 * np.sum((1.0 - rho) ** 2))


GRIDS = [(stencil3d, 6 ** 3), (landau, 2 * 9 * 9)]


@pytest.mark.parametrize("f,n", GRIDS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_patterns_and_values_of_grid_hessians_in_several_dimensions(f, n):
    x = np.random.default_rng(n).uniform(-1, 1, n)
    dense = np.asarray(fa.hessian(f)(x))
    s = fa.sparsity(f)(x)
    assert (s.hessian.toarray() == nonzeros(dense)).all()  # exact: nothing missed or extra
    assert valid_hessian_coloring(s)
    assert s.ncolors["hessian"] <= s.lower_bounds["hessian"]
    h = fa.hessian(f, sparse=True)(x)
    assert isinstance(h, sp.csr_matrix)
    close(h, dense)
    for backend in BACKENDS:
        close(fa.compile(f, backend=backend).hessian(x, sparse=True), dense)


def _forced(monkeypatch, backend, f, x, form):
    """The compiled sparse Hessian with the seeds unbatched at any size and
    the given form kept."""
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})
    g = fa.compile(f, backend=backend)
    g.hessian(x, sparse=True)  # makes the plan
    g._sparse.plan("hessian", (x,), {}).extra["form"] = form
    return g.hessian(x, sparse=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("f,n", GRIDS + [(minimal_surface, 49)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_the_unbatched_forms_agree_bitwise(monkeypatch, backend, f, n):
    x = np.random.default_rng(n + 1).uniform(-1, 1, n)
    side_by_side, *others = [_forced(monkeypatch, backend, f, x, form)
                             for form in derivatives.UNBATCHED_FORMS]
    for other in others:  # one call per seed; the shared part once, then each seed's
        np.testing.assert_array_equal(side_by_side.toarray(), other.toarray())
    close(side_by_side, np.asarray(fa.hessian(f)(x)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_split_form_follows_a_guarded_functions_branch(monkeypatch, backend):
    """A branch on x: the shared part and each seed's part are compiled per
    branch (the seed's part checks the guard on the values it is passed), so
    alternating branches never mixes one branch's residuals with the other's
    instructions."""
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})

    def f(x):
        if x[0] > 0:
            return np.sum(x[1:] * x[:-1] * x[0])
        return np.sum(x ** 3)
    g = fa.compile(f, backend=backend)
    rng = np.random.default_rng(4)
    for x0 in (1.0, -1.0, 1.0, -1.0):
        x = rng.uniform(0.5, 1.5, 8)
        x[0] = x0
        g.hessian(x, sparse=True)
        plan = g._sparse.plan("hessian", (x,), {})
        h = plan.assemble(g._sparse._unbatched(plan, "split", (x,), {}))
        close(h, np.asarray(fa.hessian(f)(x)))
        hvp_matches_fd(h, f, x, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_faster_form_is_kept_after_its_timed_calls(monkeypatch, backend):
    monkeypatch.setattr(derivatives, "PER_SEED_MIN", 0)
    monkeypatch.setattr(derivatives, "SIDE_BY_SIDE_MIN", {})
    x = np.random.default_rng(7).uniform(-1, 1, 5 ** 3)
    g = fa.compile(stencil3d, backend=backend)
    first = g.hessian(x, sparse=True)
    plan = g._sparse.plan("hessian", (x,), {})
    calls = len(derivatives.UNBATCHED_FORMS) * (derivatives.WARM_CALLS
                                                + derivatives.TIMED_CALLS)
    for k in range(2, calls + 3):  # the k-th call
        got = g.hessian(x, sparse=True)
        np.testing.assert_array_equal(got.toarray(), first.toarray())
        assert ("form" in plan.extra) == (k >= calls)
    assert plan.extra["form"] in derivatives.UNBATCHED_FORMS
    assert all(len(t) == derivatives.WARM_CALLS + derivatives.TIMED_CALLS
               for t in plan.extra["timings"].values())
    close(first, np.asarray(fa.hessian(stencil3d)(x)))


@NUMBA_FUZZ
@given(prog=programs(max_steps=4), seed=st.integers(0, 2 ** 32 - 1))
def test_the_unbatched_forms_agree_bitwise_on_random_programs(prog, seed):
    """Side by side, one call per seed and split (the shared part once), on
    the compiled backend (and Numba), against each other bit for bit, the
    dense Hessian and central differences."""
    loss, x, dense = fuzz_hessian_case(prog)
    for backend in {COMPILED} | ({"numba"} & set(BACKENDS)):
        with pytest.MonkeyPatch.context() as mp:
            a, *others = [_forced(mp, backend, loss, x, form)
                          for form in derivatives.UNBATCHED_FORMS]
        for b in others:
            np.testing.assert_array_equal(a.toarray(), b.toarray())
        close(a, dense)
        hvp_matches_fd(a, loss, x, seed)


# -- Numba: one loop per shape -----------------------------------------------------------
def _tape_of(f, x):
    g = fa.compile(f, backend="numpy")
    g(x)
    return g.tape


def test_grouping_by_shape_keeps_a_valid_order():
    from fastad.backends.numba_loops import _grouped_by_shape, _loop_shape
    x = np.random.default_rng(2).uniform(-1, 1, 5 ** 3)
    tape = _tape_of(stencil3d, x)
    grouped = _grouped_by_shape(tape)
    assert sorted(i.out for i in grouped.instrs) == sorted(i.out for i in tape.instrs)
    defined = set(tape.inputs) | set(tape.consts)
    for ins in grouped.instrs:
        assert all(s in defined for s in ins.ins)  # every operand made before
        defined.add(ins.out)
    # the differences along each axis a run each, then the grid's; the adjoint's
    # scatters of each difference into the gradient (a chain) a run each after

    def runs(t):
        shapes = [s for s in (_loop_shape(t, i) for i in t.instrs) if s is not None]
        return 1 + sum(a != b for a, b in zip(shapes, shapes[1:])), len(set(shapes))
    count, shapes = runs(grouped)
    assert count == 2 * shapes - 1 < runs(tape)[0]


@pytest.mark.skipif("numba" not in BACKENDS, reason="needs numba")
@pytest.mark.parametrize("f,n", GRIDS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_numba_runs_each_slice_shape_as_one_loop_bitwise_as_the_reference(f, n):
    from fastad.backends import numba_backend
    x = np.random.default_rng(n + 2).uniform(-1, 1, n)
    tape = _tape_of(f, x)
    text = numba_backend.generate(tape)[0]
    # a loop per shape of the function's and adjoint's elementwise code, and
    # one per scatter of the adjoint (strided, into the gradient); a function
    # run by NumPy's own loop (`numba_vecmath`) is a call between two loops
    loops = [line for line in text.splitlines()
             if line.startswith("    for i") and not line.startswith("     ")]
    shapes = {tuple(tape.avals[i.out].shape) for i in tape.instrs
              if i.prim in ("sub", "square", "log") and tape.avals[i.out].shape}
    scatters = sum(1 for i in tape.instrs if i.prim == "scatter_add")
    numpy_loops = text.count("call_loop")
    assert len(loops) <= len(shapes) + scatters + numpy_loops
    got = fa.compile(f, backend="numba")(x)
    want = fa.compile(f, backend="numpy")(x)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    v = np.random.default_rng(n).standard_normal(n)
    got = fa.compile(f, backend="numba").hvp(x, v)
    want = fa.compile(f, backend="numpy").hvp(x, v)
    np.testing.assert_array_equal(got, want)
