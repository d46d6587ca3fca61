"""Sparse Jacobians split between forward and reverse passes
(`fastad.sparse.bidirectional`): dense rows and dense columns.

Generated functions: a band of residuals (random offsets, nonlinearities,
rows fewer than columns or not), some parameters every residual reads
(dense columns) and some sums over most of the variables (dense rows).  The
split Jacobian equals the dense one, eagerly and compiled on every backend;
its passes are few (the band's colors plus about one per dense line, where
either one-directional coloring needs about n); every nonzero is alone in
its product.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
from conftest import BACKENDS
from fastad.sparse import bidirectional
from test_sparse import COMPILED, close

fnp = fa.numpy

NONLINEAR = {"sin": np.sin, "cube": lambda v: v ** 3, "tanh": np.tanh,
             "exp": lambda v: np.exp(0.3 * v)}


@st.composite
def bordered(draw):
    """(f, x, dense rows, dense columns, band span) of a generated function."""
    n_band = draw(st.integers(140, 360), label="band variables")
    offsets = sorted(set(draw(st.lists(st.integers(-3, 3), min_size=1, max_size=4),
                              label="offsets")))
    n_rows, n_cols = draw(st.integers(0, 3), label="dense rows"), \
        draw(st.integers(0, 3), label="dense columns")
    short = draw(st.integers(0, 2), label="residuals fewer than band variables")
    phi = NONLINEAR[draw(st.sampled_from(sorted(NONLINEAR)), label="nonlinearity")]
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    n = n_band + n_cols
    coef = rng.uniform(0.5, 1.5, len(offsets))
    # each dense row reads at least 90% of all the variables
    reads = [np.sort(rng.choice(n, size=int(rng.integers(int(0.9 * n), n + 1)), replace=False))
             for _ in range(n_rows)]
    weights = [rng.uniform(-1, 1, r.size) for r in reads]

    def f(x):
        core, params = x[:n_band], x[n_band:]
        band = sum(c * phi(fnp.roll(core, -o)) for c, o in zip(coef, offsets))
        for j in range(n_cols):
            band = band + params[j] * fnp.cos(core + j)
        pieces = [band[:n_band - short]]
        pieces += [fnp.sum(w * phi(x[r]))[None] for w, r in zip(weights, reads)]
        return fnp.concatenate(pieces)
    x = rng.uniform(-1, 1, n)
    f.__qualname__ = (f"bordered(n_band={n_band}, offsets={offsets}, dense rows {n_rows}, "
                      f"dense columns {n_cols}, short={short}, seed={seed})")
    read = offsets + [0] * bool(n_cols)  # the parameters' terms read core[i]
    return f, x, n_rows, n_cols, max(read) - min(read)


def check(f, x, n_rows, n_cols, span, backend):
    dense = np.asarray(fa.jacobian(f)(x))
    plan = fa.sparsity(f)(x).jacobian_plan
    pattern = plan.pattern
    assert not np.any((dense != 0) & ~pattern.toarray())
    # a circulant band of span s: a distance-2 coloring of at most 2s + 1
    # colors; a dense column a pass of its own, a dense row one
    assert plan.ncolors <= 2 * span + 1 + n_rows + n_cols + 1, (
        f.__qualname__, plan.ncolors, [(p.mode, p.ncolors) for p in plan.parts()])
    if n_rows and n_cols:
        assert plan.mode == "fwd+rev"
    if plan.mode == "fwd+rev":
        assert bidirectional.is_valid(pattern, plan.extra["split"])
        assert "split:" in repr(fa.sparsity(f)(x))
    close(fa.jacobian(f, sparse=True)(x), dense, 1e-12)
    j = fa.jit(f, backend=backend)
    close(j.jacobian(x, sparse=True), dense, 1e-12)
    close(j.jacobian(x, sparse=True), dense, 1e-12)  # the kept plan


@settings(max_examples=25, deadline=None)
@given(case=bordered())
def test_dense_rows_and_columns_take_few_passes(case):
    check(*case, COMPILED)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_arrowhead_jacobian_on_each_backend(backend):
    """Trapezoidal collocation with a free final time (a dense column) and an
    integral constraint (a dense row)."""
    def colloc(z):
        x, t_final = z[:-1], z[-1]
        h = t_final / (x.size - 1)
        rhs = -x ** 3 + fnp.sin(x)
        r = x[1:] - x[:-1] - 0.5 * h * (rhs[1:] + rhs[:-1])
        return fnp.concatenate([r, (h * fnp.sum(x ** 2) - 1.0)[None], (x[0] - 1.0)[None]])
    z = np.concatenate([np.linspace(1.0, 0.5, 300), [2.0]])
    s = fa.sparsity(colloc)(z)
    assert s.jacobian_mode == "fwd+rev" and s.ncolors["jacobian"] <= 5
    assert min(s.lower_bounds.values()) >= 300
    check(colloc, z, 1, 1, 1, backend)


def test_the_checker_rejects_a_split_whose_products_mix_nonzeros():
    n = 200
    f = lambda x: fnp.concatenate([x[1:] * x[:-1] * x[0], fnp.sum(x ** 2)[None],  # noqa: E731
                                   fnp.sum(fnp.sin(x))[None]])
    x = np.random.default_rng(0).uniform(-1, 1, n)
    pattern = fa.sparsity(f)(x).jacobian
    dense = np.zeros(pattern.shape[0], bool)
    dense[-2:] = True
    split = bidirectional._dense_rows_reverse(pattern, dense)
    assert bidirectional.is_valid(pattern, split)
    merged = bidirectional.Split(split.column_colors, split.row_colors.copy(), split.forward)
    merged.row_colors[-2:] = 0  # two rows sharing every column in one pass
    assert not bidirectional.is_valid(pattern, merged)
    unseeded = bidirectional.Split(split.column_colors.copy(), split.row_colors, split.forward)
    unseeded.column_colors[:] = -1
    assert not bidirectional.is_valid(pattern, unseeded)
    mixed = bidirectional.Split(np.zeros(n, np.int64), split.row_colors, split.forward)
    assert not bidirectional.is_valid(pattern, mixed)  # one color for all the columns


def test_one_direction_is_kept_where_no_line_is_dense():
    """A band alone: no split, the plans of before."""
    f = lambda x: x[1:] ** 2 - x[:-1]  # noqa: E731
    x = np.linspace(0.1, 1.0, 400)
    plan = fa.sparsity(f)(x).jacobian_plan
    assert plan.mode in ("fwd", "rev") and plan.ncolors == 2
    assert plan.parts() == (plan,)


def test_more_dense_lines_than_hubs_are_not_split_off():
    """Beyond `coloring.HUB_COUNT` dense rows, coloring them among themselves
    would cost k^2 n steps: the plan keeps one direction, in time."""
    import scipy.sparse as sp
    from fastad.sparse import coloring
    n, k = 3000, coloring.HUB_COUNT + 10
    band = sp.eye(n, format="csr", dtype=bool)
    dense = sp.csr_matrix(np.ones((k, n), bool))
    pattern = sp.vstack([band, dense], format="csr")
    assert bidirectional.best_split(pattern) is None
    few = sp.vstack([band, dense[:3]], format="csr")
    split = bidirectional.best_split(few)
    assert split is not None and split.ncolors == 4 and bidirectional.is_valid(few, split)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float64_function_of_float32_x_keeps_float64_forward_entries(backend):
    """Every form of the compiled product (side by side, one call per seed,
    shared part and seeds) gives the forward entries in f's dtype."""
    n = 5000

    def f(x):
        v = x.astype(np.float64)
        return fnp.concatenate([v[1:] * fnp.sin(v[:-1]) * v[0], (fnp.sum(v ** 2) * v[-1])[None]])
    x = np.random.default_rng(1).uniform(-1, 1, n).astype(np.float32)
    want = np.asarray(fa.jacobian(f, mode="fwd")(x))
    j = fa.jit(f, backend=backend)
    plan = fa.sparsity(f)(x).jacobian_plan
    assert plan.mode == "fwd+rev"
    forward = plan.extra["split"].forward
    for _ in range(8):  # each form timed, then the faster kept
        got = j.jacobian(x, sparse=True)
        assert got.dtype == np.float64
        rows = np.repeat(np.arange(got.shape[0]), np.diff(got.indptr))
        np.testing.assert_array_equal(got.data[forward], want[rows, got.indices][forward])
