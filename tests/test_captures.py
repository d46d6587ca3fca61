"""Compiled functions read their closures and globals at each call.

Generated programs read arrays and numbers from a module global, from their
closure and through a helper function found in a global, in traced
operations and in plain NumPy (constants of the tape); between calls a
random sequence of actions mutates those arrays in place, rebinds the
global, the closure variables and the number, or changes the argument.  After
every action the jitted value, the compiled gradient, a jitted ``grad`` (a
transformation inside the compiled trace) and the gradient of a function
calling the jitted one must equal the eager results, which read the current
values by construction.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
from conftest import BACKENDS

COMPILED = "c" if "c" in BACKENDS else "numpy"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N = 4
G = np.linspace(0.5, 1.5, N)  # a module global the programs read
OFFSET = 0.25  # a global number


def helper(u):
    """Found through a global: its own global reads are followed too."""
    return np.tanh(u * G[::-1]) + OFFSET


class Holder:
    """Arrays and numbers read through an object: attributes, a dict's items,
    a list's items, and a method of its class."""

    def __init__(self):
        self.w = np.linspace(-1.0, 1.0, N)
        self.table = {"k": np.linspace(0.2, 0.8, N), "n": 0.5}
        self.layers = [np.cos(np.arange(N) + 0.5), np.sin(np.arange(N) + 0.5)]

    def energy(self, x):
        return (np.sum(self.w * np.sin(x)) + np.sum(self.table["k"] * x ** 2) * self.table["n"]
                + sum(np.sum(L * x) ** 2 for L in self.layers))


HOLDER = Holder()  # an object in a global


def act_on_holder(holder, action, rng):
    """One of HOLDER_ACTIONS on ``holder``'s arrays and numbers."""
    if action == "mutate w":
        holder.w[rng.integers(N)] = rng.normal()
    elif action == "rebind w":
        holder.w = rng.normal(size=N)
    elif action == "rebind table item":
        holder.table["k"] = rng.normal(size=N)
    elif action == "rebind table number":
        holder.table["n"] = float(rng.uniform(0.1, 2.0))
    elif action == "rebind table":
        holder.table = {"k": rng.normal(size=N), "n": 1.5}
    elif action == "mutate layer":
        holder.layers[rng.integers(len(holder.layers))][rng.integers(N)] = rng.normal()
    elif action == "rebind layer":
        holder.layers[rng.integers(len(holder.layers))] = rng.normal(size=N)
    elif action == "rebind layers":
        holder.layers = [rng.normal(size=N)]


HOLDER_ACTIONS = ["mutate w", "rebind w", "rebind table item", "rebind table number",
                  "rebind table", "mutate layer", "rebind layer", "rebind layers"]


def make_program(kind: int):
    """A program reading G, a closure array C and a closure number s; the setters
    rebind the closure variables (``nonlocal``)."""
    C = np.cos(np.arange(N) + 1.0)
    s = 1.5
    index = np.arange(N)[::-1].copy()  # integer and boolean arrays: constants of the tape
    mask = np.arange(N) % 2 == 0

    def program(x):
        indexed = np.sum(x[index] * x) + np.sum(np.where(mask, x, 0.5 * x) ** 2)
        if kind == 0:
            return np.sum(np.sin(x) * G * s + C * x ** 2) + indexed
        if kind == 1:
            return np.sum(helper(x * s) * C) + indexed
        if kind == 3:
            return HOLDER.energy(x * s) + np.sum(C * x) + indexed
        # plain NumPy on the captured arrays makes constants of the tape: a
        # scalar, an array of their shape, a Python float, with or without
        # the same array read by reference as well
        if kind == 4:
            return (np.sum(x * C) * np.sum(C ** 2) + np.sum(np.sin(x) * (G / np.linalg.norm(G)))
                    + indexed)
        if kind == 5:
            return (np.sum((x - C.mean()) ** 2 * G) + np.sum(x * (C - G))
                    + float(np.max(np.abs(G))) * np.sum(x) + indexed)
        return np.sum((G @ np.outer(x, C)) ** 2) * s + np.sum(helper(x) ** 2) + indexed

    def set_c(value):
        nonlocal C
        C = value

    def set_s(value):
        nonlocal s
        s = value

    def get_c():
        return C

    def get_index_and_mask():
        return index, mask

    program.captured = get_index_and_mask
    return program, set_c, set_s, get_c


ACTIONS = st.sampled_from(["mutate G", "mutate C", "rebind G", "rebind C", "rebind s",
                           "rebind OFFSET", "mutate index", "mutate mask", "new x", "nothing",
                           *HOLDER_ACTIONS])


@settings(max_examples=25, deadline=None)
@given(kind=st.integers(0, 5), actions=st.lists(ACTIONS, min_size=1, max_size=6),
       seed=st.integers(0, 2 ** 16))
def test_compiled_follows_mutation_and_rebinding(kind, actions, seed):
    global G, OFFSET, HOLDER
    saved = G, OFFSET
    rng = np.random.default_rng(seed)
    program, set_c, set_s, get_c = make_program(kind)
    jitted = fa.jit(program, backend=COMPILED)
    compiled = fa.compile(program, backend=COMPILED)
    outer = fa.grad(lambda x: jitted(x) * np.sum(x))  # replayed into an enclosing trace
    jitted_grad = fa.jit(fa.grad(program), backend=COMPILED)  # a transform inside the trace
    x = rng.normal(size=N)
    try:
        for action in ["nothing"] + actions:
            if action == "mutate G":
                G[rng.integers(N)] = rng.normal()
            elif action == "mutate C":
                get_c()[rng.integers(N)] = rng.normal()
            elif action == "rebind G":
                G = rng.normal(size=N)
            elif action == "rebind C":
                set_c(rng.normal(size=N))
            elif action == "rebind s":
                set_s(float(rng.uniform(0.5, 2.0)))
            elif action == "rebind OFFSET":
                OFFSET = float(rng.normal())
            elif action == "mutate index":
                program.captured()[0][rng.integers(N)] = rng.integers(N)
            elif action == "mutate mask":
                mask = program.captured()[1]
                mask[rng.integers(N)] ^= True
            elif action == "new x":
                x = rng.normal(size=N)
            else:
                act_on_holder(HOLDER, action, rng)
            np.testing.assert_allclose(jitted(x), program(x), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(compiled(x), fa.grad(program)(x), rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(jitted_grad(x), fa.grad(program)(x), rtol=1e-11,
                                       atol=1e-12)
            np.testing.assert_allclose(
                outer(x), fa.grad(lambda x: program(x) * np.sum(x))(x), rtol=1e-11, atol=1e-12)
    finally:
        G, OFFSET = saved
        G[:] = np.linspace(0.5, 1.5, N)
        HOLDER = Holder()


@settings(max_examples=15, deadline=None)
@given(actions=st.lists(st.sampled_from(HOLDER_ACTIONS + ["new x"]), min_size=1, max_size=6),
       seed=st.integers(0, 2 ** 16))
def test_compiled_method_follows_its_object(actions, seed):
    """``fa.compile(obj.method)``: the object's attributes, its dict's items and
    its list's items are read at each call, rebinding any of them retraces."""
    rng = np.random.default_rng(seed)
    holder = Holder()
    compiled = fa.compile(holder.energy, backend=COMPILED)
    jitted = fa.jit(holder.energy, backend=COMPILED)
    x = rng.normal(size=N)
    for action in ["nothing"] + actions:
        if action == "new x":
            x = rng.normal(size=N)
        else:
            act_on_holder(holder, action, rng)
        np.testing.assert_allclose(jitted(x), holder.energy(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(compiled(x), fa.grad(holder.energy)(x), rtol=1e-11,
                                   atol=1e-12)
    assert compiled.cache_info()["traces"] <= 1 + sum(a.startswith("rebind") for a in actions)


def test_in_place_change_is_read_without_retracing():
    W = np.array([1.0, 2.0, 3.0])

    def f(x):
        return np.sum(np.exp(x) * W)

    g = fa.compile(f, backend=COMPILED)
    x = np.array([0.1, -0.2, 0.3])
    for k in range(4):
        W[k % 3] += 1.5  # an optimizer's update in place
        np.testing.assert_allclose(g(x), np.exp(x) * W, rtol=1e-14)
    assert g.cache_info()["traces"] == 1


def test_rebinding_retraces_and_says_so(caplog):
    scale = 2.0
    W = np.ones(3)

    def f(x):
        return np.sum(x * W) * scale

    g = fa.jit(f, backend=COMPILED)
    x = np.array([1.0, 2.0, 3.0])
    assert g(x) == pytest.approx(12.0)
    with caplog.at_level(logging.INFO, logger="fastad"):
        scale = 3.0
        assert g(x) == pytest.approx(18.0)
    assert "scale" in caplog.text and "changed" in caplog.text
    W = np.full(3, 2.0)
    assert g(x) == pytest.approx(36.0)
    assert g.cache_info()["traces"] == 3
    assert len(g.cache_info()["entries"]) == 1  # the stale traces left the cache


def test_the_shortcut_runs_plain_programs_as_they_are_and_checks_bindings():
    def f(x):
        return np.sum(np.sin(x) * x ** 2)

    W = np.ones(3)

    def h(x):
        return np.sum(np.sin(x) * W)

    gf, gh = fa.compile(f, backend=COMPILED), fa.compile(h, backend=COMPILED)
    x = np.array([0.1, 0.2, 0.3])
    gf(x), gf(x), gh(x), gh(x)
    exe = gf._main.shortcut.entry.exe
    assert gf._main.grads_run_args.__self__ is gf._main.grads_of(gf._main.shortcut.entry).exe \
        or gf._main.grads_run_args.__self__ is exe  # the executable's own method: no wrapper
    assert gh._main.shortcut.entry is not None  # the wrapper checks W's binding
    assert not hasattr(gh._main.grads_run_args, "__self__")
    W = np.full(3, 2.0)
    np.testing.assert_allclose(gh(x), 2 * np.cos(x))
    W[0] = 4.0
    np.testing.assert_allclose(gh(x), W * np.cos(x))


def test_saving_a_function_that_reads_captured_arrays_stores_their_values():
    """A saved function is data: the arrays its tape read by reference (a
    closure's, an object's attributes, a tuple's items) are stored with the
    values they hold when it is saved; the live function still follows them."""
    W = np.ones(3)
    holder = Holder()
    pair = (np.linspace(0.0, 1.0, N), np.full(N, 0.5))

    def f(x):
        return np.sum(x[:3] * W) + holder.energy(x) + np.sum(pair[0] * x * pair[1])

    x = np.linspace(-1.0, 1.0, N)
    g = fa.compile(f, backend=COMPILED)
    g(x)
    W[0] = 4.0
    holder.w[1] = -2.0
    pair[1][2] = 3.0
    saved = fa.dumps(g)
    want = fa.grad(f)(x)
    W[0], holder.w[1], pair[1][2] = -1.0, 7.0, 0.0
    loaded = fa.loads(saved)
    np.testing.assert_allclose(loaded(x), want, rtol=1e-12)
    np.testing.assert_allclose(g(x), fa.grad(f)(x), rtol=1e-12)
    assert not np.allclose(g(x), want)


@settings(max_examples=20, deadline=None)
@given(writes=st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=4), seed=st.integers(0, 2 ** 16))
def test_an_array_written_between_its_uses_is_read_as_written(writes, seed):
    """The function writes new values into an array between two of its uses:
    eagerly each use reads what was there then (a constant per contents, not
    per object); compiled, a captured array it writes into is refused, since
    the tape would read it once per call."""
    rng = np.random.default_rng(seed)
    buf = rng.normal(size=N)
    holder = Holder()

    def f(x):
        total = 0.0
        for k, v in enumerate(writes):
            buf[k % N] = v  # a write between uses
            holder.w[k % N] = -v
            total = total + np.sum(buf * np.sin(x)) + np.sum(holder.w * x) * (k + 1)
        return total

    def expected_gradient(x):
        start_buf, start_w = buf.copy(), holder.w.copy()
        b, w, g = buf.copy(), holder.w.copy(), np.zeros(N)
        for k, v in enumerate(writes):
            b[k % N], w[k % N] = v, -v
            g = g + b * np.cos(x) + w * (k + 1)
        buf[:], holder.w[:] = start_buf, start_w
        return g

    x = rng.normal(size=N)
    want = expected_gradient(x)
    np.testing.assert_allclose(fa.grad(f)(x), want, rtol=1e-12, atol=1e-12)
    buf[:] = rng.normal(size=N)  # a value the first write changes
    with pytest.raises(fa.TracingError, match="writes into"):
        fa.compile(f, backend=COMPILED)(x)
