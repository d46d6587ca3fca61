"""The one registry of primitives.

A primitive is declared once: its name, NumPy implementation, and per-argument
VJP and JVP rules.  Rules are written with fastad's own operations so that
they trace, which is what makes gradients of gradients work.

VJP rule signature:  ``vjp(g, ans, *args, **params) -> cotangent of one arg``
JVP rule signature:  ``jvp(t, ans, *args, **params) -> tangent contribution``
(``t`` is the tangent of that one argument).  A rule of ``None`` means the
argument is not differentiable (integer indices, boolean conditions).

Besides its rules, a primitive carries the traits every interpreter of a tape
reads instead of keeping a list of names of its own:

``cost``
    what running it costs, per element of its result: ``"cheap"`` (elementwise
    arithmetic, comparisons, selects: a few instructions per element),
    ``"transcendental"`` (elementwise, a libm or special-function call per
    element: exp, sin, pow, hypot, erf, gammaln, ...), ``"view"`` (no element
    is touched: reshape, stop_gradient), ``"reduction"``, ``"structural"``
    (copies, gathers, scatters, sorting: elements moved), ``"matmul"``
    (multiply-adds) and ``"linalg"`` (a LAPACK or FFT call on whole arrays).
    Read by the cost model of `jacobian(mode="auto")` and by
    `backends.fallback` (tiering).
``elementwise``
    each result element depends only on the operands' elements at the same
    (broadcast) position: read by the shape rules, batching, the Numba
    backend's loop fusion and `backends.fallback` (tiering).
``effect``
    None, or what running it does besides computing its result: ``"guard"``
    (the replay stops when the predicate disagrees with its recording).  An
    instruction with an effect is never dead code.
``shape_rule``
    ``rule(*operand_shapes, **params) -> result shape`` (raising ValueError),
    what loading a tape checks its declared shapes against (`fastad.shapes`);
    with ``shape_consts``, also ``consts=`` the constant operands' values (the
    index arrays of gathers and scatters).  Set by `defshape`.
``numpy_names``
    the public names of fastad.numpy made from the primitive's row (``sub``:
    ``("subtract",)``, ``max``: ``("max", "amax")``).
``batch_rule``
    ``rule(prim, args, shapes, params, size)``: the instruction replayed on
    operands of which some carry a leading batch axis (`transforms.batching`).
    Set by `defbatch`.

Each family of primitives (`fastad/primitives/`) sets these next to the VJP
and JVP rules of its primitives, every elementwise primitive sharing the same
generic shape and batching rules.

Backends keep their rule tables keyed by the
`Primitive` object (``prims.sin``), checked when their module is imported
(`check_table`), so a misspelt name fails at import instead of becoming a
silent host call; names are for display and serialization.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

Rule = Optional[Callable[..., Any]]

COST_CLASSES = ("cheap", "transcendental", "view", "reduction", "structural", "matmul", "linalg")
#: what an instruction does besides its value, which keeps it in the tape
#: whether or not its value is read: a guard checks the trace's assumption;
#: "io" is a host call run for what it does (``jax.debug.print``), never
#: merged, folded or rerolled
EFFECTS = (None, "guard", "io")


@dataclass(eq=False)  # one object per primitive: compared and hashed by identity
class Primitive:
    name: str
    impl: Callable[..., Any]
    nargs: int | None  # None: variadic
    vjps: list[Rule] = field(default_factory=list)
    jvps: list[Rule] = field(default_factory=list)
    differentiable: bool = True
    doc: str = ""
    builtin: bool = True  # False for primitives users define with fastad.primitive
    # argnum -> rule(acc, g, ans, *args, **params) that adds this argument's
    # cotangent into the accumulated one; for ops whose cotangent is sparse
    # (a gather's is a scatter), so no dense zero array is made per use.
    accumulating_vjps: dict[int, Callable[..., Any]] = field(default_factory=dict)
    # For elementwise primitives: per argument, the partial derivative times g
    # before any un-broadcasting; what the strong-zero rule needs.
    elementwise_partials: list[Rule] = field(default_factory=list)
    cost: str = "structural"  # one of COST_CLASSES
    elementwise: bool = False
    effect: Optional[str] = None  # one of EFFECTS
    # impl that may return a read-only view of an operand where NumPy would
    # (a slice): used by a compiled function's trace (`Builder.release`) and an
    # outermost eager gradient's (`Builder.drop_unread`), so a slice of a large
    # array costs no memory there, as in NumPy
    view_impl: Optional[Callable[..., Any]] = None
    # Derivative rules taking every operand at once, for primitives whose
    # operands share one computation (a loop: one loop for all cotangents);
    # the sweeps ask for them first.  Plain class attributes, not fields: set
    # on the few primitives that have them (`primitives/loops.py`; `solve`,
    # whose two cotangents share one solve).
    joint_vjp = None  # (g, ans, *args, active=argnums, **params) -> cotangents
    joint_jvp = None  # (tangents or None per operand, ans, *args, **params) -> tangent
    # True for primitives that move operand 0's elements without computing
    # (reshape, transpose, gathers): integers taken as data stay integers
    # through them (`tracer.KEEP_INTEGERS`), so ``labels.reshape(-1, 1)``
    # still indexes and compares as integers
    keeps_integers = False
    # True for the collectives over a vmapped axis (`primitives.collectives`):
    # vmap replays them by their batching rule even where no operand is
    # batched (a sum over the examples), and that rule says whether its
    # result is
    axis_collective = False
    # impl a compiled function's trace (`Builder.release`) uses: its values never
    # reach the user, only its executable's do (a loop runs on the VM)
    release_impl = None
    # impl that writes its result into operand 0's memory and returns it: the
    # reverse sweep hands it an accumulator nothing else holds (`tracer.donate`),
    # so adding a slice's cotangent does not copy the whole adjoint (scatter_add)
    in_place_impl = None
    # (*operands, **params) -> the result, recorded from the Python function a
    # custom rule wraps (`custom_rules.inlined`): a compiled trace replaces the
    # call by its traced body, so the backend runs it instead of calling Python
    inline = None
    # Per argument, what its VJP rule (and accumulating rule) reads besides g
    # and the shapes and dtypes: ``"ans"`` and argument positions (``mul``:
    # ``({1}, {0})``, ``exp``: ``({"ans"},)``, ``add``: ``(set(), set())``).
    # An eager gradient's trace keeps a forward value for its sweep only while
    # a rule still to run reads it (`Builder.drop_unread`), as autograd's VJP
    # closures keep what they capture.  None: everything (user primitives,
    # rules not classified, and any rule replaced by `defvjp`).
    vjp_reads: Optional[tuple[frozenset, ...]] = None
    # The result's shape from the operands' (`defshape`); None only for
    # primitives users define, whose tapes are not loaded from bytes.
    shape_rule: Rule = None
    shape_consts: bool = False  # the shape rule also reads constant operands (indices)
    # vmap's rule (`defbatch`); None: not batchable (vmap says so), or, for an
    # elementwise primitive users define, the elementwise rule.
    batch_rule: Rule = None
    # The names of fastad.numpy (and NumPy) that answer with this primitive,
    # for the families whose public functions are made from their rows
    # (elementwise ufuncs, reductions); empty where the function is written by hand.
    numpy_names: tuple[str, ...] = ()

    def vjp_rule(self, argnum: int) -> Rule:
        if not self.differentiable:
            return None
        if argnum < len(self.vjps):
            return self.vjps[argnum]
        raise NotImplementedError(f"no VJP rule for argument {argnum} of primitive {self.name!r}; "
                                  "register one with fastad.defvjp")

    def jvp_rule(self, argnum: int) -> Rule:
        if not self.differentiable:
            return None
        if argnum < len(self.jvps):
            return self.jvps[argnum]
        if not self.builtin and argnum < len(self.vjps) and self.vjps[argnum] is not None:
            # a user's primitive with a VJP rule only, as autograd's often are: its
            # JVP is that rule's transpose (forward mode, hessian, jacfwd, as autograd)
            from ..custom_rules import transposed_jvp
            return transposed_jvp(self.vjps[argnum])
        raise NotImplementedError(f"no JVP rule for argument {argnum} of primitive {self.name!r}; "
                                  "register one with fastad.defjvp")

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


registry: dict[str, Primitive] = {}


def defprim(name: str, impl: Callable[..., Any], nargs: int | None,
            differentiable: bool = True, doc: str = "", *, cost: str = "structural",
            elementwise: bool = False, effect: Optional[str] = None) -> Primitive:
    if name in registry:
        raise ValueError(f"primitive {name!r} is already registered")
    if cost not in COST_CLASSES or effect not in EFFECTS:
        raise ValueError(f"primitive {name!r}: cost {cost!r} is not one of {COST_CLASSES}, "
                         f"or effect {effect!r} not one of {EFFECTS}")
    prim = Primitive(name, impl, nargs, differentiable=differentiable, doc=doc, cost=cost,
                     elementwise=elementwise, effect=effect)
    registry[name] = prim
    return prim


class _Prims:
    """The registered primitives by attribute: ``prims.sin`` is
    ``registry["sin"]``, and a misspelt name is an AttributeError where the
    table naming it is built (at import), not a silent miss at run time."""

    def __getattr__(self, name: str) -> Primitive:
        try:
            return registry[name]
        except KeyError:
            raise AttributeError(f"no primitive named {name!r}") from None


prims = _Prims()


def check_table(table: Any, what: str) -> Any:
    """``table`` (a dict or set keyed by primitives), after checking that every
    key is a registered `Primitive` object; called where a rule table is built."""
    for key in table:
        if not isinstance(key, Primitive) or registry.get(key.name) is not key:
            raise TypeError(f"{what}: key {key!r} is not a registered primitive")
    return table


def _resolve(prim: Any) -> Primitive:
    if isinstance(prim, str):
        return registry[prim]
    return getattr(prim, "primitive", prim)  # a function made by fastad.primitive


def defvjp(prim: Primitive | str | Callable[..., Any], *rules: Rule) -> None:
    """Register the VJP rule of each argument, in either of two forms:

    ``rule(g, ans, *args, **params)``, returning the cotangent of the argument;
    or autograd's curried form ``rule(ans, *args, **params)``, returning a
    function of ``g`` (``lambda ans, x: lambda g: g * ...``).  They are told
    apart by arity: a rule taking one positional parameter more than the
    primitive's function (``(ans, x)`` for ``f(x)``) is curried, one taking
    two more (``(g, ans, x)``) is not.  When the primitive's parameters cannot
    be counted (``*args``) or the rule's count fits neither, and for fastad's
    own primitives, a rule whose first parameter is named ``ans`` is curried."""
    p = _resolve(prim)
    p.vjps = [_uncurried(rule, p) for rule in rules]
    p.joint_vjp = None  # the new rules replace a joint one too
    p.vjp_reads = None  # new rules read what they read: everything, until declared


def defreads(prim: Primitive | str, *per_argument: Any) -> None:
    """Declare what each argument's VJP rule reads (`Primitive.vjp_reads`):
    one collection per argument of ``"ans"`` and argument positions, after
    the rules are registered.  tests/test_memory.py checks every declaration
    by running the rule with the values it does not read poisoned."""
    p = _resolve(prim)
    if len(per_argument) != len(p.vjps):
        raise ValueError(f"{p.name}: {len(per_argument)} read sets for {len(p.vjps)} rules")
    reads = tuple(frozenset(r) for r in per_argument)
    for r in reads:
        bad = [v for v in r if v != "ans" and not (type(v) is int and 0 <= v < len(p.vjps))]
        if bad:
            raise ValueError(f"{p.name}: a rule cannot read {bad}")
    p.vjp_reads = reads


def _uncurried(rule: Rule, prim: Primitive) -> Rule:
    """``rule`` in the ``(g, ans, *args)`` form (see `defvjp`)."""
    if rule is None or not _is_curried(rule, prim):
        return rule

    def vjp(g: Any, ans: Any, *args: Any, **params: Any) -> Any:
        return rule(ans, *args, **params)(g)
    vjp.curried = rule  # type: ignore[attr-defined]
    return vjp


def _positional(fn: Callable[..., Any]) -> tuple[int, bool, str | None]:
    """How many positional parameters ``fn`` has, whether it takes ``*args``,
    and the first one's name; (-1, True, None) when it has no signature."""
    import inspect
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return -1, True, None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    return len(positional), varargs, positional[0].name if positional else None


def _is_curried(rule: Callable[..., Any], prim: Primitive) -> bool:
    n_rule, rule_varargs, first = _positional(rule)
    if prim.builtin:  # fastad's own rules: the (g, ans, *args) form unless named otherwise
        return first == "ans"
    n_prim, prim_varargs = prim.nargs, False
    if n_prim is None:
        n_prim, prim_varargs, _ = _positional(prim.impl)
    if not rule_varargs and not prim_varargs and n_prim >= 0:
        if n_rule == n_prim + 1:
            return True
        if n_rule == n_prim + 2:
            return False
    return first == "ans"


def defjvp(prim: Primitive | str | Callable[..., Any], *rules: Rule) -> None:
    """Register the JVP rule of each argument: ``rule(t, ans, *args, **params)``."""
    _resolve(prim).jvps = list(rules)


def defshape(prim: Primitive | str, rule: Callable[..., Any], *, consts: bool = False) -> None:
    """Register the shape rule (`Primitive.shape_rule`); with ``consts``, the
    rule also receives ``consts``, the constant operands' values."""
    p = _resolve(prim)
    p.shape_rule, p.shape_consts = rule, consts


def defbatch(prim: Primitive | str | Callable[..., Any], rule: Callable[..., Any]) -> None:
    """Register the batching rule (`Primitive.batch_rule`):
    ``rule(prim, args, shapes, params, size)``, ``args`` being (value,
    batched) pairs and ``shapes`` the operands' shapes for one example."""
    _resolve(prim).batch_rule = rule


class TraitTable(Mapping):
    """The registered primitives that have a trait (``"shape_rule"``), as a
    read-only mapping from primitive to that trait: the view of the rules
    as one table, read when the primitives are listed, not per instruction."""

    def __init__(self, trait: str) -> None:
        self.trait = trait

    def _items(self) -> dict[Primitive, Any]:
        return {p: getattr(p, self.trait) for p in registry.values()
                if getattr(p, self.trait) is not None}

    def __getitem__(self, prim: Primitive) -> Any:
        rule = getattr(prim, self.trait, None) if isinstance(prim, Primitive) else None
        if rule is None or registry.get(prim.name) is not prim:
            raise KeyError(prim)
        return rule

    def __iter__(self):
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

