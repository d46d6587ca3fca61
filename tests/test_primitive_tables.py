"""Every builtin primitive against every table that interprets tapes.

Each backend keeps its rules in a table keyed by `Primitive` objects; shape
and batching rules are traits of the primitive (`Primitive.shape_rule`,
`Primitive.batch_rule`), read here as the table of the primitives that have
one.  A builtin primitive is either in that table or in the list of
primitives declared beside it as left out on purpose, each with a reason
(lower.HOST_CALLS, numba_backend.NOT_EMITTED, batching.NO_BATCHING_RULE;
for derivatives, ``differentiable=False``).  A primitive in neither is an
omission; a key of either that is not a registered primitive is a mistake.
"""
from __future__ import annotations

import pytest

from fastad import backends
from fastad.backends import lower, numba_backend
from fastad.core.registry import (COST_CLASSES, EFFECTS, Primitive, check_table, prims,
                                  registry)
from fastad.transforms import batching

BUILTIN = [p for p in registry.values() if p.builtin]

# table name -> (implemented: dict or set keyed by primitive, left out on purpose: dict)
TABLES = {
    "c": (lower._RULES, lower.HOST_CALLS),
    "numba": (numba_backend.EMITTERS, numba_backend.NOT_EMITTED),
    # a guard is batched by its effect (every example must take the recorded branch)
    "batching": ({**{p: p.batch_rule for p in BUILTIN if p.batch_rule is not None},
                  **{p: None for p in BUILTIN if p.effect == "guard"}},
                 batching.NO_BATCHING_RULE),
    "shapes": ({p: p.shape_rule for p in BUILTIN if p.shape_rule is not None}, {}),
    "numpy": ({p: p.impl for p in BUILTIN if callable(p.impl)}, {}),
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_builtin_primitive_is_implemented_or_listed(table):
    implemented, left_out = TABLES[table]
    neither = sorted(p.name for p in BUILTIN if p not in implemented and p not in left_out)
    assert neither == [], f"{table}: no rule and not listed as left out on purpose"
    both = sorted(p.name for p in BUILTIN if p in implemented and p in left_out)
    assert both == [], f"{table}: listed as left out but implemented"


def test_the_trait_tables_are_views_of_the_traits():
    """`shapes.RULES` and `batching.RULES` list exactly the primitives that
    have the trait, so the table test above sees a primitive without one."""
    from fastad import shapes
    for table, trait in ((shapes.RULES, "shape_rule"), (batching.RULES, "batch_rule")):
        having = {p for p in registry.values() if getattr(p, trait) is not None}
        assert set(table) == having and len(table) == len(having)
        assert all(table[p] is getattr(p, trait) for p in having)
        bare = next(p for p in BUILTIN if p.effect == "guard")  # batched by its effect
        assert (bare in batching.RULES) == (bare.batch_rule is not None)


def test_a_builtin_primitive_without_a_rule_is_an_omission(monkeypatch):
    """The table test is not vacuous: a builtin primitive whose shape or
    batching rule is removed is reported."""
    for trait, table in (("shape_rule", "shapes"), ("batch_rule", "batching")):
        monkeypatch.setattr(prims.cumsum, trait, None)
        implemented = {p: getattr(p, trait) for p in BUILTIN if getattr(p, trait) is not None}
        left_out = TABLES[table][1]
        assert [p.name for p in BUILTIN if p not in implemented and p not in left_out
                and p.effect is None] == ["cumsum"]
        monkeypatch.undo()


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_key_is_a_registered_primitive(table):
    for keys in TABLES[table]:
        for key in keys:
            assert isinstance(key, Primitive) and registry.get(key.name) is key, key
    for why in TABLES[table][1].values():
        assert isinstance(why, str) and why, "each primitive left out says why"


@pytest.mark.parametrize("name", ["c", "numba"])
def test_coverage_reports_exactly_the_listed_host_calls(name):
    native = backends.native_primitives(name)
    listed = backends.host_calls(name)
    assert sorted(p.name for p in BUILTIN if p.name not in native) == sorted(listed)


def test_derivative_rules_cover_every_argument_or_are_declared_absent():
    for p in BUILTIN:
        if not p.differentiable:  # the explicit "not differentiable" list is this flag
            continue
        if p.nargs is None:  # variadic (a loop): one rule takes every operand at once
            assert callable(p.joint_vjp) and callable(p.joint_jvp), p.name
            continue
        assert len(p.vjps) == p.nargs, f"{p.name}: VJP rules for {len(p.vjps)} of {p.nargs}"
        assert len(p.jvps) == p.nargs, f"{p.name}: JVP rules for {len(p.jvps)} of {p.nargs}"
        # None marks an argument with no derivative (indices, conditions)
        assert any(r is not None for r in p.vjps), p.name
        assert any(r is not None for r in p.jvps), p.name


def test_traits_are_from_the_closed_sets():
    for p in BUILTIN:
        assert p.cost in COST_CLASSES, p.name
        assert p.effect in EFFECTS, p.name
        assert not (p.cost in ("cheap", "transcendental")) or p.elementwise, p.name
    assert [p.name for p in BUILTIN if p.effect is not None] == ["guard"]


def test_a_misspelt_primitive_fails_where_the_table_is_built():
    with pytest.raises(AttributeError, match="sinn"):
        prims.sinn  # noqa: B018
    with pytest.raises(TypeError, match="not a registered primitive"):
        check_table({"sin": None}, "a table keyed by a name")


def test_every_elementwise_row_is_a_public_function_under_its_numpy_name():
    """fastad.numpy makes the function of each row of the elementwise tables,
    public under its NumPy implementation's name, and dispatches that ufunc to
    it: a new row needs no edit in the front end."""
    import numpy as np

    import fastad
    import fastad.numpy as fnp
    from fastad.primitives import elementwise as rows
    x = np.linspace(0.2, 0.8, 3)
    for table in (rows.UNARY, rows.UNARY_ZERO_DERIVATIVE, rows.BINARY,
                  rows.BINARY_ZERO_DERIVATIVE):
        for name, row in table.items():
            impl = row[0] if isinstance(row, tuple) else row
            public = getattr(fnp, impl.__name__)
            assert getattr(prims, name).numpy_names == (impl.__name__,)
            if impl.__name__ == "fmod":  # of integers taken as data the composite's integer
                assert impl.__name__ not in fnp._UFUNCS  # division: dispatched by name
            else:
                assert fnp._UFUNCS[impl.__name__] is public
            args = (x,) * impl.nin
            tape = fastad.make_tape(lambda *a: public(*a), argnums=tuple(range(impl.nin)))(*args)
            assert [ins.prim for ins in tape.instrs] == [name]


def test_fastad_numpy_call_primitives_batch_or_say_why():
    """fastad's own primitives that run as NumPy calls (``builtin=False``, named
    after the NumPy/SciPy function they call) batch under vmap or are listed."""
    import fastad.misc  # noqa: F401  (registers them)
    import fastad.numpy  # noqa: F401
    import fastad.scipy.integrate  # noqa: F401
    import fastad.scipy.special  # noqa: F401
    own = [p for p in registry.values() if not p.builtin
           and p.name.split(".")[0] in ("numpy", "scipy", "fastad")]
    assert own, "no NumPy-call primitives found"
    missing = sorted(p.name for p in own if batching.batching_rule(p) is None
                     and p.name not in batching.HOST_NO_BATCHING_RULE)
    assert missing == [], "no batching rule and no reason"
    both = sorted(p.name for p in own if batching.batching_rule(p) is not None
                  and p.name in batching.HOST_NO_BATCHING_RULE)
    assert both == []


def test_every_reduction_row_is_a_public_function_under_its_numpy_names():
    """fastad.numpy makes the function of each row of the reduction table,
    public under each of the row's names with (a subset of) NumPy's
    signature: ``dtype``, ``initial`` and ``where`` when the row has an
    identity.  Each records its primitive and gives NumPy's result."""
    import inspect

    import numpy as np

    import fastad
    import fastad.numpy as fnp
    from fastad.primitives import structural as rows
    x = np.random.default_rng(0).uniform(0.5, 1.5, (3, 4))
    mask = np.array([True, False, True, True])
    for name, (_, public, identity, *_rules) in rows.REDUCTIONS.items():
        for numpy_name in public:
            fn = getattr(fnp, numpy_name)
            assert getattr(prims, name).numpy_names == public
            assert fn is getattr(fnp, public[0]) and numpy_name in fnp._reductions.__all__
            ours = list(inspect.signature(fn).parameters)
            theirs = list(inspect.signature(getattr(np, numpy_name)).parameters)
            assert [p for p in theirs if p in ours] == ours, numpy_name
            assert ({"dtype", "initial", "where"} <= set(ours)) == (identity is not None)
            tape = fastad.make_tape(lambda a: fn(a, axis=1, keepdims=True))(x)
            assert [ins.prim for ins in tape.instrs] == [name]
            calls = [dict(axis=1, keepdims=True), dict(axis=None), dict(axis=(0, 1))]
            if identity is not None:
                calls.append(dict(axis=1, initial=2.5, where=mask))
            direction = np.random.default_rng(1).standard_normal(x.shape)
            for kwargs in calls:
                # the masked sum adds zeros where NumPy skips: equal up to rounding
                np.testing.assert_allclose(fn(x, **kwargs), getattr(np, numpy_name)(x, **kwargs),
                                           rtol=1e-15 if "where" in kwargs else 0)

                def loss(a, kwargs=kwargs):
                    return fnp.sum(fnp.sin(fn(a, **kwargs)))
                h = 1e-6
                central = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
                np.testing.assert_allclose(np.sum(fastad.grad(loss)(x) * direction), central,
                                           rtol=1e-6, atol=1e-8)
