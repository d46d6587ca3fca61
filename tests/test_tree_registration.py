"""Classes registered as pytree nodes (``jax.tree_util``'s registration API),
``jax.tree``'s short names, paths, ``Partial``, ``holomorphic=True`` and
compiled functions used as methods: code written for JAX runs unchanged.

Trees are generated (nested registered dataclasses, node classes, tuples,
dicts, lists and None around float arrays and static metadata); every
transformation's result on them is checked against central finite
differences of the flattened function and, compiled, against eager.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given, settings, strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import tree_util as tu
from helpers import central_difference_jacobian

COMPILED = "c" if "c" in BACKENDS else "numpy"


@functools.partial(tu.register_dataclass, data_fields=["w", "b"], meta_fields=["power"])
@dataclasses.dataclass
class Layer:
    w: np.ndarray
    b: np.ndarray
    power: int = 2


@tu.register_dataclass
@dataclasses.dataclass
class Scaled:
    inner: object
    scale: float = dataclasses.field(default=1.0, metadata={"static": True})


@tu.register_pytree_node_class
class Pair:
    def __init__(self, first, second, tag="pair"):
        self.first, self.second, self.tag = first, second, tag

    def tree_flatten(self):
        return (self.first, self.second), self.tag

    @classmethod
    def tree_unflatten(cls, tag, children):
        return cls(*children, tag=tag)


class Keyed:
    def __init__(self, items):
        self.items = dict(items)


tu.register_pytree_with_keys(
    Keyed, lambda k: ([(tu.DictKey(n), k.items[n]) for n in sorted(k.items)], tuple(sorted(k.items))),
    lambda names, children: Keyed(zip(names, children)))


def _trees(leaf):
    """Pytrees of every kind of node around leaves drawn by ``leaf``."""
    def nodes(children):
        return st.one_of(
            st.builds(lambda w, b, p: Layer(w, b, p), children, children, st.integers(1, 3)),
            st.builds(lambda i, s: Scaled(i, s), children, st.sampled_from([0.5, 2.0])),
            st.builds(lambda a, b, t: Pair(a, b, t), children, children, st.sampled_from("xy")),
            st.builds(lambda a, b: Keyed({"u": a, "v": b}), children, children),
            st.tuples(children, children), st.lists(children, min_size=1, max_size=2),
            st.builds(lambda a, b: {"a": a, "z": b, "none": None}, children, children))
    return st.recursive(leaf, nodes, max_leaves=5)


def _leaf_arrays():
    return st.integers(1, 3).flatmap(
        lambda n: st.integers(0, 2**31 - 1).map(
            lambda seed: np.random.default_rng(seed).uniform(0.5, 1.5, n)))


def _energy(tree):
    """A smooth scalar of a tree that reads its static data too."""
    total = 0.0
    for path, leaf in tu.tree_leaves_with_path(tree):
        total = total + (1.0 + 0.1 * len(path)) * fnp.sum(fnp.sin(leaf) * leaf)
    node = tree
    while isinstance(node, Scaled):
        total = total * node.scale
        node = node.inner
    if isinstance(node, Layer):
        total = total + fnp.sum(node.w ** node.power)
    return total


def _flat_check(f, tree, grad_tree):
    """grad_tree against central differences of f through the flattened tree."""
    x, unflatten = fa.flatten(tree)
    g, _ = fa.flatten(grad_tree)
    fd = central_difference_jacobian(lambda v: np.asarray(f(unflatten(v))), x)
    np.testing.assert_allclose(g, np.ravel(fd), rtol=1e-6, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(_trees(_leaf_arrays()))
def test_gradients_of_registered_trees_eager_and_compiled(tree):
    eager = fa.grad(_energy)(tree)
    assert tu.tree_structure(eager) == tu.tree_structure(tree)  # metadata kept
    _flat_check(_energy, tree, eager)
    for got in (fa.compile(_energy, backend=COMPILED)(tree),
                fa.jit(fa.grad(_energy), backend=COMPILED)(tree)):
        assert tu.tree_structure(got) == tu.tree_structure(tree)
        np.testing.assert_allclose(fa.flatten(got)[0], fa.flatten(eager)[0], rtol=1e-13, atol=0)


@settings(max_examples=15, deadline=None)
@given(_trees(_leaf_arrays()))
def test_flatten_unflatten_paths_and_map_round_trip(tree):
    leaves, treedef = tu.tree_flatten(tree)
    rebuilt = tu.tree_unflatten(treedef, leaves)
    assert tu.tree_structure(rebuilt) == treedef
    pairs = tu.tree_leaves_with_path(tree)
    assert [id(leaf) for _, leaf in pairs] == [id(leaf) for leaf in leaves]
    assert len({tu.keystr(p) for p, _ in pairs}) == len(pairs)  # paths name each leaf
    doubled = fa.tree.map(lambda a: 2 * a, tree)
    for a, b in zip(fa.tree.leaves(doubled), leaves):
        np.testing.assert_array_equal(a, 2 * b)
    named = tu.tree_map_with_path(lambda p, a, b: tu.keystr(p), tree, doubled)
    assert fa.tree.leaves(named) == [tu.keystr(p) for p, _ in pairs]


def test_static_metadata_keys_a_compiled_function():
    """Aux data is part of the structure: a new value traces again."""
    rng = np.random.default_rng(0)
    lay = Layer(rng.standard_normal((3, 2)), rng.standard_normal(2), 2)
    g = fa.compile(_energy, backend=COMPILED)
    for power in (2, 3, 2):
        tree = Layer(lay.w, lay.b, power)
        got = g(tree)
        np.testing.assert_allclose(got.w, fa.grad(_energy)(tree).w, rtol=1e-13)
    assert g.cache_info()["signatures"] == 2


def test_transformations_take_and_return_registered_nodes():
    rng = np.random.default_rng(1)
    lay = Layer(rng.standard_normal((3, 2)), rng.standard_normal(2), 3)
    X = rng.standard_normal((4, 5, 3))

    def loss(layer, x):
        return fnp.sum(fnp.tanh(x @ layer.w + layer.b) ** layer.power)
    batched = fa.vmap(loss, in_axes=(None, 0))(lay, X)
    np.testing.assert_allclose(batched, [loss(lay, x) for x in X], rtol=1e-13)
    returned = fa.jit(lambda layer: Layer(layer.w * 2, layer.b, layer.power))(lay)
    assert isinstance(returned, Layer) and returned.power == 3
    np.testing.assert_array_equal(returned.w, lay.w * 2)
    hess = fa.hessian(lambda p: fnp.sum(p.first ** 3) * p.second)(Pair(lay.b, 1.5))
    np.testing.assert_allclose(hess.first.first, np.diag(6 * lay.b * 1.5), rtol=1e-13)
    tangent = fa.jvp(lambda p: p.first * p.second, (Pair(lay.b, 2.0),), (Pair(lay.b, 0.0),))[1]
    np.testing.assert_allclose(tangent, 2.0 * lay.b, rtol=1e-13)


def test_partial_is_a_pytree_argument():
    part = tu.Partial(lambda a, s: s * fnp.sum(a ** 2), s=2.0)
    x = np.array([0.5, -1.0, 2.0])
    apply = fa.jit(lambda f, a: f(a))
    assert apply(part, x) == pytest.approx(2.0 * np.sum(x ** 2))
    g = fa.grad(lambda p, a: p(a), argnums=0)(part, x)
    assert isinstance(g, tu.Partial) and g.keywords["s"] == pytest.approx(np.sum(x ** 2))


def test_registration_errors_are_clear():
    with pytest.raises(ValueError, match="already a pytree node"):
        tu.register_pytree_node(Pair, lambda p: ((), None), lambda a, c: None)
    with pytest.raises(TypeError, match="expected a class"):
        tu.register_pytree_node(3, lambda p: ((), None), lambda a, c: None)

    class Unhashable:
        pass
    tu.register_pytree_node(Unhashable, lambda u: ((1.0,), []), lambda a, c: Unhashable())
    with pytest.raises(TypeError, match="must be hashable"):
        tu.tree_flatten(Unhashable())

    @dataclasses.dataclass
    class Plain:
        w: np.ndarray
    with pytest.raises(TypeError, match="register_dataclass"):
        fa.grad(lambda p: fnp.sum(p.w))(Plain(np.ones(2)))
    with pytest.raises(TypeError, match="cannot save"):
        j = fa.jit(_energy)
        j(Layer(np.ones((2, 2)), np.ones(2)))
        fa.dumps(j)


def test_transpose_and_is_leaf():
    tree = [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]
    outer, inner = tu.tree_structure([0, 0, 0]), tu.tree_structure((0, 0))
    assert tu.tree_transpose(outer, inner, tree) == ([1.0, 3.0, 5.0], [2.0, 4.0, 6.0])
    leaves, treedef = tu.tree_flatten({"a": (1, [2, 3])}, is_leaf=lambda n: isinstance(n, list))
    assert leaves == [1, [2, 3]] and tu.tree_unflatten(treedef, [7, 8]) == {"a": (7, 8)}


@pytest.mark.filterwarnings("ignore:.*runs on the numba backend")
@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_holomorphic_grad_is_the_complex_derivative(seed, n):
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    c = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)

    def f(z):
        return fnp.sum(c * fnp.sin(z) * z ** 2 + fnp.exp(z))
    want = c * (np.cos(z) * z ** 2 + 2 * z * np.sin(z)) + np.exp(z)
    for g in (fa.grad(f, holomorphic=True), fa.jit(fa.grad(f, holomorphic=True))):
        np.testing.assert_allclose(g(z), want, rtol=1e-12)
    value, grad = fa.value_and_grad(f, holomorphic=True)(z)
    assert value == pytest.approx(complex(f(z)))
    with pytest.raises(TypeError, match="complex inputs"):
        fa.grad(f, holomorphic=True)(z.real)
    with pytest.raises(TypeError, match="complex value"):
        fa.grad(lambda z: fnp.sum(fnp.abs(z)), holomorphic=True)(z)


def test_compiled_functions_are_methods_and_take_jax_jit_options():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        @fa.jit
        def predict(self, x):
            return self.scale * fnp.sum(x ** 2)

        @functools.partial(fa.compile, argnums=1)
        def gradient(self, x):
            return self.scale * fnp.sum(fnp.sin(x))
    x = np.array([0.3, -0.4])
    a, b = Model(2.0), Model(3.0)
    assert a.predict(x) == pytest.approx(2.0 * np.sum(x ** 2))
    assert b.predict(x) == pytest.approx(3.0 * np.sum(x ** 2))
    np.testing.assert_allclose(b.gradient(x), 3.0 * np.cos(x), rtol=1e-14)
    assert Model.predict(a, x) == a.predict(x)
    j = fa.jit(lambda w: fnp.sum(w ** 2), donate_argnums=0, keep_unused=True)
    assert j(x) == pytest.approx(np.sum(x ** 2))
    np.testing.assert_array_equal(x, [0.3, -0.4])  # a donated argument is left as it was
    with pytest.raises(TypeError, match="donate_argnums"):
        fa.jit(lambda w: w, donate_argnums="w")


def test_disable_jit_runs_python_as_written():
    calls = []

    def f(w, x):
        calls.append(1)  # a side effect: runs at every call only when not compiled
        return fnp.sum(fnp.sin(w) * x)
    j, g = fa.jit(f), fa.compile(f)
    w, x = np.array([0.3, -0.2]), np.array([1.0, 2.0])
    j(w, x), g(w, x)
    traced = len(calls)
    j(w, x), g(w, x)
    assert len(calls) == traced  # compiled: the Python does not run
    with fa.disable_jit():
        with fa.disable_jit():  # nests
            assert j(w, x) == pytest.approx(float(np.sum(np.sin(w) * x)))
        np.testing.assert_allclose(g(w, x), np.cos(w) * x, rtol=1e-15)
        value, grad = g.value_and_grad(w, x)
        assert value == pytest.approx(float(np.sum(np.sin(w) * x)))
        assert len(calls) == traced + 3
    j(w, x), g(w, x)
    assert len(calls) == traced + 3  # compiled again after the block
    with fa.disable_jit(False):
        j(w, x)
    assert len(calls) == traced + 3


@settings(max_examples=15, deadline=None)
@given(_trees(_leaf_arrays()))
def test_one_level_broadcast_and_treedef_pieces(tree):
    """flatten_one_level's children rebuild the node; a prefix of the tree
    (its root's children replaced by leaves) broadcasts back over it; the
    structure's children are the children's structures."""
    leaves, treedef = tu.tree_flatten(tree)
    if treedef == "*":
        with pytest.raises(ValueError, match="leaf"):
            tu.flatten_one_level(tree)
        return
    children, _ = tu.flatten_one_level(tree)
    assert [tu.tree_structure(c) for c in children] == tu.treedef_children(treedef)
    prefix = tu.tree_map(lambda _: 0, tree, is_leaf=lambda node: any(node is c for c in children))
    marked = tu.tree_map(lambda _: 1, tree, is_leaf=lambda node: any(node is c for c in children))
    full = tu.tree_broadcast(marked, tree)
    assert tu.tree_structure(full) == treedef and tu.tree_leaves(full) == [1] * len(leaves)
    assert tu.tree_structure(tu.tree_broadcast(prefix, tree)) == treedef
    total = tu.tree_reduce_associative(lambda a, b: a + b, tu.tree_map(np.sum, tree))
    np.testing.assert_allclose(total, sum(np.sum(leaf) for leaf in leaves), rtol=1e-13)
    assert tu.treedef_tuple([treedef, treedef]) == tu.tree_structure((tree, tree))


def test_register_static_and_tree_static():
    @tu.register_static
    class Mode:
        def __init__(self, k):
            self.k = k

        def __hash__(self):
            return hash(self.k)

        def __eq__(self, other):
            return isinstance(other, Mode) and other.k == self.k

    f = fa.jit(lambda p, m: fnp.sum(p["w"] ** m.k), backend=COMPILED)
    w = {"w": np.array([1.5, 2.0])}
    assert tu.tree_leaves([Mode(1), 2.0]) == [2.0]
    np.testing.assert_allclose(f(w, Mode(2)), 6.25)
    np.testing.assert_allclose(f(w, Mode(3)), 1.5 ** 3 + 8.0)
    assert f.cache_info()["traces"] == 2

    @tu.register_dataclass
    @dataclasses.dataclass
    class Op:
        x: np.ndarray
        op: str = fa.tree.static(default="square")

    g = fa.grad(lambda o: fnp.sum(o.x ** 2 if o.op == "square" else o.x))(Op(np.ones(2)))
    assert g.op == "square" and len(fa.tree.leaves(Op(np.ones(2)))) == 1
    np.testing.assert_array_equal(g.x, [2.0, 2.0])
    with pytest.raises(TypeError, match="identity"):
        tu.tree_reduce_associative(lambda a, b: a + b, ())


def test_is_leaf_selecting_none_and_treedef_methods():
    """``is_leaf`` that selects None makes it a leaf in every function (JAX's),
    and structures have JAX's PyTreeDef methods."""
    from collections import namedtuple
    P = namedtuple("P", "a b")
    tree = {"w": np.ones(3), "b": [np.zeros(2), None], "p": P(1.0, (None, 2.0))}
    is_none = lambda v: v is None  # noqa: E731
    leaves, treedef = fa.tree_util.tree_flatten(tree, is_leaf=is_none)
    assert len(leaves) == treedef.num_leaves == 6
    marked = fa.tree_util.tree_map(lambda v: "none" if v is None else "x", tree, is_leaf=is_none)
    assert marked["b"][1] == "none" and marked["p"].b == ("none", "x")
    back = fa.tree_util.tree_unflatten(treedef, list(range(6)))
    assert fa.tree_util.tree_leaves(back) == list(range(6))
    assert back == treedef.unflatten(range(6))
    plain = fa.tree_util.tree_structure(tree)
    assert plain.num_leaves == 4 and len(plain.children()) == 3
    assert plain == fa.tree_util.tree_flatten(tree)[1] and hash(plain) == hash(tuple(plain))
    # (a dict's leaves by sorted key: b, p, w)
    assert plain.flatten_up_to({"w": "a", "b": [(1, 2), None], "p": P([3], (None, 4))}) == \
        [(1, 2), [3], 4, "a"]
    with pytest.raises(ValueError, match="flatten_up_to"):
        plain.flatten_up_to({"w": 1.0})
    jax = pytest.importorskip("jax")
    jtree = jax.tree_util.tree_structure(tree)
    assert (plain.num_leaves, plain.num_nodes) == (jtree.num_leaves, jtree.num_nodes)
