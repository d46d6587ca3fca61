"""Every way a compiled function reads state from outside its arguments sees
a change to it, through nesting.

Generated cases: a capture kind (closure cell, module global, default
argument, keyword default, functools.partial argument and keyword, bound
method's ``self`` attribute, class attribute, callable object, attribute
path of any depth up to the walk's bound, a user module's attribute, a
global read through ``globals()`` by a constant key, a dict's values
iterated, a dict's item or an object's attribute by a computed key, a
list iterated that grows, a set or a deque changed in place, an object read
through its ``__getitem__``, another library's array type) holding
an array or a number, read directly or through compiled functions nested
``depth`` deep (each a ``jit`` or a ``compile``'s ``value``), called from an
outermost ``jit`` or ``compile``; then a mutation (in place, rebinding) and
the call again.  The compiled result must equal the eager one after every
mutation, on each backend; state beyond the walk's reach is refused with
`TracingError`, never read stale.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import random
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import capture_walk
from fastad.core.errors import TracingError
from conftest import BACKENDS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

X = np.array([0.3, -1.2, 2.0])
KINDS = ["closure", "global", "default", "kwdefault", "partial", "partial_kw", "method",
         "class_attribute", "class_object", "callable_object", "slots", "deep", "module",
         "helper", "globals_item", "dict_values", "computed_key", "computed_attribute",
         "list_grows", "set_size", "deque_grows", "custom_getitem", "array_like", "dataclass"]
MUTATIONS = ["in_place", "rebind"]


class _Slotted:
    """An object with ``__slots__`` and no ``__dict__``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def read(self, w):
        return fnp.sum(w * self.value) + fnp.sum(w ** 2)


class _Box:
    """An object holding the state; methods read it through ``self``."""

    def __init__(self, value):
        self.value = value

    def read(self, w):
        return fnp.sum(w * self.value) + fnp.sum(w ** 2)

    def __call__(self, w):
        return fnp.sum(w * self.value) + fnp.sum(w ** 2)


class _Table:
    """An object read through ``obj[k]``: its ``__getitem__`` reads its dict."""

    def __init__(self, value):
        self.items = {"v": value}

    def __getitem__(self, key):
        return self.items[key]


@dataclasses.dataclass
class _Config:
    """A dataclass: its generated special methods (``__repr__`` is wrapped by
    ``reprlib.recursive_repr``) are followed once each."""

    value: object
    scale: float = 1.0


class _ArrayLike:
    """Another library's array (a jax.Array, a torch tensor): it converts."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)


def _make(kind, value, depth_of_path=4):
    """(f, mutate(how)): f reads ``value`` through ``kind``; mutate changes
    the state it reads, in place or by rebinding."""
    state = {"v": value}

    if kind == "closure":
        def f(w):
            return fnp.sum(w * v) + fnp.sum(w ** 2)
        v = value

        def rebind(new):
            nonlocal v
            v = new
        return f, state, rebind, lambda: v
    if kind == "global":
        name = f"_G{id(state)}"
        g = {"fnp": fnp, name: value}
        exec(f"def f(w):\n    return fnp.sum(w * {name}) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: g.__setitem__(name, new), lambda: g[name]
    if kind == "globals_item":  # read through globals() by a constant key
        name = f"_G{id(state)}"
        g = {"fnp": fnp, name: value}
        exec(f"def f(w):\n    return fnp.sum(w * globals()[{name!r}]) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: g.__setitem__(name, new), lambda: g[name]
    if kind == "default":
        f = lambda w, v=value: fnp.sum(w * v) + fnp.sum(w ** 2)  # noqa: E731

        def rebind(new):
            f.__defaults__ = (new,)
        return f, state, rebind, lambda: f.__defaults__[0]
    if kind == "kwdefault":
        def f(w, *, v=value):
            return fnp.sum(w * v) + fnp.sum(w ** 2)

        def rebind(new):
            f.__kwdefaults__ = {"v": new}
        return f, state, rebind, lambda: f.__kwdefaults__["v"]
    if kind in ("partial", "partial_kw"):
        def base(v, w):
            return fnp.sum(w * v) + fnp.sum(w ** 2)
        holder = {}

        def make(new):
            holder["p"] = (functools.partial(base, new) if kind == "partial" else
                           functools.partial(lambda w, v: base(v, w), v=new))
        make(value)
        # a partial's arguments cannot be rebound: "rebind" makes a new partial
        # in a closure cell the compiled function calls through
        f = lambda w: holder["p"](w)  # noqa: E731
        return f, state, make, lambda: (holder["p"].args[0] if kind == "partial"
                                        else holder["p"].keywords["v"])
    if kind == "method":
        box = _Box(value)
        return box.read, state, lambda new: setattr(box, "value", new), lambda: box.value
    if kind == "class_attribute":
        cls = type("Scaled", (), {"value": value, "read": _Box.read})
        obj = cls()
        return obj.read, state, lambda new: setattr(cls, "value", new), lambda: cls.value
    if kind == "callable_object":
        box = _Box(value)
        f = lambda w: box(w)  # noqa: E731
        return f, state, lambda new: setattr(box, "value", new), lambda: box.value
    if kind == "class_object":
        # a class in a global, its attribute read as ``Config.value``
        cls = type("Config", (), {"value": value})
        g = {"fnp": fnp, "Config": cls}
        exec("def f(w):\n    return fnp.sum(w * Config.value) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: setattr(cls, "value", new), lambda: cls.value
    if kind == "slots":
        obj = _Slotted(value)
        return obj.read, state, lambda new: setattr(obj, "value", new), lambda: obj.value
    if kind == "helper":
        # a global helper function rebound to one closing over the new value
        g = {"fnp": fnp}

        def make(new):
            g["helper"] = lambda w: fnp.sum(w * new)
            g["current"] = new
        make(value)
        exec("def f(w):\n    return helper(w) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, make, lambda: g["current"]
    if kind == "deep":
        # cfg.a.b...["k"][0], depth_of_path containers deep
        leaf = [value]
        node = {"k": leaf}
        for _ in range(depth_of_path - 2):
            node = types.SimpleNamespace(a=node)
        cfg = node
        get = "cfg" + ".a" * (depth_of_path - 2) + '["k"][0]'
        g = {"fnp": fnp, "cfg": cfg}
        exec(f"def f(w):\n    return fnp.sum(w * {get}) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: leaf.__setitem__(0, new), lambda: leaf[0]
    if kind == "module":
        name = f"_fastad_test_module_{id(state)}"
        mod = types.ModuleType(name)
        mod.value = value
        g = {"fnp": fnp, "mod": mod}
        exec("def f(w):\n    return fnp.sum(w * mod.value) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: setattr(mod, "value", new), lambda: mod.value
    if kind == "dict_values":  # every value of a global dict; rebinding adds a key
        table = {"a": value}
        g = {"fnp": fnp, "table": table}
        exec("def f(w):\n    return sum(fnp.sum(w * v) for v in table.values())"
             " + fnp.sum(w ** 2)\n", g)
        return (g["f"], state, lambda new: table.__setitem__(f"k{len(table)}", new),
                lambda: list(table.values())[-1])
    if kind == "computed_key":  # the key is data the code does not name
        table, keys = {"a": value, "b": 1.0}, ["a"]
        g = {"fnp": fnp, "table": table, "keys": keys}
        exec("def f(w):\n    return fnp.sum(w * table[keys[0]]) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: table.__setitem__("a", new), lambda: table["a"]
    if kind == "computed_attribute":  # getattr by a name held in a list
        box, names = _Box(value), ["value"]
        g = {"fnp": fnp, "box": box, "names": names}
        exec("def f(w):\n    return fnp.sum(w * getattr(box, names[0])) + fnp.sum(w ** 2)\n", g)
        return g["f"], state, lambda new: setattr(box, "value", new), lambda: box.value
    if kind == "list_grows":  # every item of a list; rebinding appends one
        items = [value]
        f = lambda w: sum(fnp.sum(w * v) for v in items) + fnp.sum(w ** 2)  # noqa: E731
        return f, state, items.append, lambda: items[-1]
    if kind == "set_size":  # a set's size read; rebinding adds a member
        flags, v = {0}, value
        f = lambda w: fnp.sum(w * v) * len(flags) + fnp.sum(w ** 2)  # noqa: E731
        return f, state, lambda new: flags.add(len(flags)), lambda: v
    if kind == "deque_grows":
        items = collections.deque([value])
        f = lambda w: sum(fnp.sum(w * u) for u in items) + fnp.sum(w ** 2)  # noqa: E731
        return f, state, items.append, lambda: items[-1]
    if kind == "custom_getitem":
        table = _Table(value)
        f = lambda w: fnp.sum(w * table["v"]) + fnp.sum(w ** 2)  # noqa: E731
        return (f, state, lambda new: table.items.__setitem__("v", new),
                lambda: table.items["v"])
    if kind == "dataclass":
        config = _Config(value)
        f = lambda w: fnp.sum(w * config.value) * config.scale + fnp.sum(w ** 2)  # noqa: E731
        return f, state, lambda new: setattr(config, "value", new), lambda: config.value
    if kind == "array_like":
        held = _ArrayLike(value)
        f = lambda w: fnp.sum(w * held) + fnp.sum(w ** 2)  # noqa: E731
        return f, state, lambda new: setattr(held, "data", new), lambda: held.data
    raise ValueError(kind)


def _nested(f, depth, wraps, backend):
    """f called through ``depth`` compiled functions (each per ``wraps``)."""
    for level in range(depth):
        inner = (fa.jit(f, backend=backend) if wraps[level % len(wraps)] == "jit"
                 else fa.compile(f, backend=backend).value)
        f = (lambda g: lambda w: g(w) * 1.0)(inner)
    return f


def _check(kind, is_array, mutations, depth, wraps, outer, backend, seed):
    rng = np.random.default_rng(seed)
    value = rng.normal(size=3) if is_array else float(rng.normal())
    f, _, rebind, current = _make(kind, value)
    g = _nested(f, depth, wraps, backend)
    compiled = (fa.jit(g, backend=backend) if outer == "jit"
                else fa.compile(g, backend=backend))
    eager = g if outer == "jit" else fa.grad(g)
    np.testing.assert_allclose(compiled(X), eager(X), rtol=1e-12, atol=1e-12)
    for how in mutations:
        now = current()
        if how == "in_place" and isinstance(now, np.ndarray):
            now[rng.integers(3)] = rng.normal()
        else:
            rebind(rng.normal(size=3) if is_array else float(rng.normal()))
        np.testing.assert_allclose(compiled(X), eager(X), rtol=1e-12, atol=1e-12,
                                   err_msg=f"{kind} {how} depth {depth} {outer}")


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), is_array=st.booleans(),
       mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4),
       depth=st.integers(0, 3), wraps=st.lists(st.sampled_from(["jit", "compile"]),
                                                min_size=1, max_size=3),
       outer=st.sampled_from(["jit", "compile"]), backend=st.sampled_from(BACKENDS),
       seed=st.integers(0, 2 ** 16))
def test_generated_captures_never_stale(kind, is_array, mutations, depth, wraps, outer,
                                        backend, seed):
    _check(kind, is_array, mutations, depth, wraps, outer, backend, seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("outer", ["jit", "compile"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_in_place_and_rebinding(kind, outer, backend):
    _check(kind, True, ["in_place", "rebind", "in_place"], 1, ["jit"], outer, backend, 0)
    _check(kind, False, ["rebind", "rebind"], 0, ["compile"], outer, backend, 1)


@pytest.mark.parametrize("outer", ["jit", "compile"])
def test_nested_compiled_function_out_of_the_walks_reach(outer):
    """The inner compiled function is found by a computed key: its captures
    reach the enclosing trace as it is inlined, and guard it."""
    A = np.array([1.0, 2.0, 3.0])
    table = {"inner": fa.jit(lambda w: fnp.sum(A * w ** 2))}
    key = "".join(["in", "ner"])
    f = lambda w: table[key](w) * 2.0  # noqa: E731
    g = fa.jit(f) if outer == "jit" else fa.compile(f)
    eager = f if outer == "jit" else fa.grad(f)
    g(X)
    A[0] = 10.0
    np.testing.assert_allclose(g(X), eager(X))
    # called on plain values inside the trace: the result is a constant of it
    h = lambda w: fnp.sum(w * table[key](np.ones(3)))  # noqa: E731
    gh = fa.jit(h) if outer == "jit" else fa.compile(h)
    eh = h if outer == "jit" else fa.grad(h)
    gh(X)
    A[1] = -4.0
    np.testing.assert_allclose(gh(X), eh(X))


def test_beyond_the_walks_depth_is_refused():
    f, *_ = _make("deep", 0.5, depth_of_path=capture_walk._MAX_DEPTH + 2)
    with pytest.raises(TracingError, match="nested more than"):
        fa.jit(f)(X)
    f, *_ = _make("deep", 0.5, depth_of_path=capture_walk._MAX_DEPTH)
    assert np.isclose(fa.jit(f)(X), f(X))


def test_a_long_list_is_refused_not_truncated():
    items = [0.5] * (capture_walk._MAX_ITEMS + 1)
    with pytest.raises(TracingError, match="items"):
        fa.jit(lambda w: fnp.sum(w) * items[-1])(X)


def test_shadowing_a_class_attribute_on_the_object_retraces():
    class C:
        s = 2.0

        def f(self, w):
            return fnp.sum(w) * self.s
    c = C()
    g = fa.jit(c.f)
    assert np.isclose(g(X), c.f(X))
    c.s = 5.0
    assert np.isclose(g(X), c.f(X))
    del c.s
    C.s = 7.0
    assert np.isclose(g(X), c.f(X))


# ------------------------------------------------------------------- draws
R = random.Random(3)
_OBJ = types.SimpleNamespace(rng=np.random.default_rng(0), py=random.Random(4))


def _draw(source):
    import os
    import secrets
    import uuid
    return {"random.random": lambda: random.random(),
            "random.gauss": lambda: random.gauss(0.0, 1.0),
            "random.choice": lambda: random.choice([0.5 + k for k in range(32)]),
            "random.Random global": lambda: R.random(),
            "random.Random unseeded": lambda: random.Random().random(),
            "SystemRandom": lambda: random.SystemRandom().random(),
            "secrets": lambda: secrets.randbelow(1000) / 1000,
            "os.urandom": lambda: os.urandom(1)[0] / 256,
            "uuid4": lambda: uuid.uuid4().int % 1000 / 1000,
            "attribute Generator": lambda: _OBJ.rng.normal(),
            "attribute random.Random": lambda: _OBJ.py.random()}[source]


@pytest.mark.parametrize("wrap", ["jit", "compile"])
@pytest.mark.parametrize("source", ["random.random", "random.gauss", "random.choice",
                                    "random.Random global", "random.Random unseeded",
                                    "SystemRandom", "secrets", "os.urandom", "uuid4",
                                    "attribute Generator", "attribute random.Random"])
def test_hidden_state_draws_are_refused(source, wrap):
    draw = _draw(source)
    f = lambda w: fnp.sum(w ** 2) * draw()  # noqa: E731
    with pytest.raises(TracingError, match="random|entropy"):
        (fa.jit(f) if wrap == "jit" else fa.compile(f))(X)
    # inside a nested compiled function too
    inner = fa.jit(f)
    with pytest.raises(TracingError, match="random|entropy"):
        fa.jit(lambda w: inner(w) + 1.0)(X)


def test_a_generator_seeded_inside_is_allowed():
    f = lambda w: fnp.sum(w) * random.Random(5).random()  # noqa: E731
    assert np.isclose(fa.jit(f)(X), f(X))
    assert random.random is not None and "seed" in random.Random.__dict__
    # the spies are gone after the trace
    import os
    assert os.urandom.__module__ in ("posix", "nt", "os")


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("wrap", ["jit", "compile"])
@pytest.mark.parametrize("make", ["subclass", "memmap"])
def test_array_subclasses_mutated_in_place_retrace(make, wrap, tmp_path):
    """An ndarray subclass is a constant of the tape, not read by reference:
    its contents are compared at each call."""
    if make == "subclass":
        held = np.array([1.0, 2.0, 3.0]).view(_Sub)
    else:
        held = np.memmap(tmp_path / "m.dat", dtype="float64", mode="w+", shape=(3,))
        held[:] = [1.0, 2.0, 3.0]
    box = {"a": held}
    fs = [lambda w: fnp.sum(np.asarray(box["a"]) * w) + fnp.sum(w ** 2),
          lambda w: fnp.sum(w * np.sum(np.asarray(box["a"])))]
    for f in fs:
        g = fa.jit(f) if wrap == "jit" else fa.compile(f)
        eager = f if wrap == "jit" else fa.grad(f)
        g(X)
        held[0] += 5.0
        np.testing.assert_allclose(g(X), eager(X))


MODE = "square"
SUM = np.sum


def _by_mode(w):
    if MODE == "square":
        return fnp.sum(w ** 2)
    return fnp.sum(w ** 3)


def _by_library_function(w):
    return fnp.sum(w) * float(SUM(np.ones(2)))


@pytest.mark.parametrize("wrap", ["jit", "compile"])
def test_rebinding_a_string_or_a_library_function_retraces(wrap):
    global MODE, SUM
    try:
        for f, rebind in [(_by_mode, lambda: globals().__setitem__("MODE", "cube")),
                          (_by_library_function,
                           lambda: globals().__setitem__("SUM", lambda a: 3.0))]:
            g = fa.jit(f) if wrap == "jit" else fa.compile(f)
            eager = f if wrap == "jit" else fa.grad(f)
            g(X)
            rebind()
            np.testing.assert_allclose(g(X), eager(X))
            # an equal string is the same binding: no retrace
            MODE = "".join(["cu", "be"])
            before = g.cache_info()["traces"] if hasattr(g, "cache_info") else None
            np.testing.assert_allclose(g(X), eager(X))
            if before is not None:
                assert g.cache_info()["traces"] == before
    finally:
        MODE, SUM = "square", np.sum


@pytest.mark.parametrize("library", ["jax", "torch"])
def test_another_librarys_captured_array(library):
    """A captured jax.Array or torch tensor is a constant of the tape (NumPy's
    copy of it), guarded by its contents: a torch tensor changed in place
    retraces."""
    module = pytest.importorskip(library)
    data = np.array([0.5, -2.0, 1.5])
    held = {"a": module.numpy.asarray(data) if library == "jax" else module.tensor(data)}
    a = held["a"]
    f = lambda w: fnp.sum(w * a) + fnp.sum(fnp.tanh(w @ a))  # noqa: E731
    # the same function of NumPy's copy (eager jax arithmetic is float32's)
    ref = lambda w: fnp.sum(w * np.asarray(a)) + fnp.sum(fnp.tanh(w @ np.asarray(a)))  # noqa
    for g, eager in ((fa.jit(f, backend="c"), ref), (fa.compile(f, backend="c"), fa.grad(ref))):
        np.testing.assert_allclose(g(X), eager(X), rtol=1e-12)
        if library == "torch":
            a[0] += 4.0
            np.testing.assert_allclose(g(X), eager(X), rtol=1e-12)


@pytest.mark.parametrize("wrap", ["jit", "compile"])
@pytest.mark.parametrize("source", ["count", "generator", "iter_list", "attribute", "for_loop"])
def test_iterators_advanced_in_a_trace_are_refused(source, wrap):
    """Values taken from an iterator the function reads from outside its
    arguments would be constants of the tape: the trace is refused."""
    import itertools
    box = types.SimpleNamespace(it=iter([1.0, 2.0, 3.0]))
    made = {"count": lambda: itertools.count(1.0), "generator": lambda: (float(i) for i in range(9)),
            "iter_list": lambda: iter([1.0, 2.0, 3.0])}
    if source == "attribute":
        f = lambda w: fnp.sum(w) * next(box.it)  # noqa: E731
    else:
        it = made.get(source, made["iter_list"])()
        if source == "for_loop":
            def f(w):
                return sum(fnp.sum(w) * v for v in it)
        else:
            f = lambda w: fnp.sum(w) * next(it)  # noqa: E731
    g = fa.jit(f) if wrap == "jit" else fa.compile(f)
    with pytest.raises(TracingError, match="iterator"):
        g(X)


def test_an_iterator_the_trace_does_not_advance_is_allowed():
    it = iter([1.0, 2.0])
    f = lambda w: fnp.sum(w ** 2) if it is not None else 0.0  # noqa: E731
    np.testing.assert_allclose(fa.jit(f)(X), f(X))
    assert next(it) == 1.0
