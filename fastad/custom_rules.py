"""JAX's ``custom_jvp`` and ``custom_vjp``: a function with a derivative rule
of its own, written as JAX's users write it.

    @fastad.custom_vjp
    def f(x, y):
        return np.sin(x) * y
    def f_fwd(x, y):
        return f(x, y), (np.cos(x), np.sin(x), y)
    def f_bwd(res, g):
        cos_x, sin_x, y = res
        return (cos_x * g * y, sin_x * g)
    f.defvjp(f_fwd, f_bwd)

    @fastad.custom_jvp
    def g(x):
        return np.log1p(np.exp(x))
    @g.defjvp
    def g_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return g(x), t * fastad.scipy.special.expit(x)

Each decorated function is a primitive of its own (`fastad.primitive`): its
value is the function run on plain values (a NumPy call between compiled
segments in compiled code), and its derivatives are the rules, traced with
fastad's operations, so every order and every transform composes with them.
The rule gives one mode; the other is its transpose, taken by reverse mode
through the rule (which is linear in the tangent or cotangent), so unlike
JAX's, a ``custom_vjp`` function has forward mode too (``jvp``, ``hessian``).
``nondiff_argnums`` are passed first to the rules, as JAX's, and are not
differentiated.  The other arguments and the result are pytrees (tuples,
lists, dicts, namedtuples) of arrays or numbers, as in JAX: the primitive's
operands are the arguments' leaves, and a result that is not one array is
packed into one 1-D array (an instruction has one result) and sliced back
into its structure, which is learnt by running the function once per
structure and shapes of the arguments.  ``bwd`` returns one cotangent per
differentiated argument, each of that argument's structure (None for zero);
a ``jvp`` rule gets and gives tangents of the primals' and the result's
structure.  Under ``vmap`` the primitive runs once per example.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .core import pytree
from .core.registry import defprim, registry
from .core.tracer import Tracer, bind, outside_traces
from .primitives.loops import pack, packed_dtype
from .transforms.batching import per_example


def _new_primitive(fun: Callable[..., Any], kind: str, impl: Callable[..., Any]) -> Any:
    base = f"{getattr(fun, '__module__', '')}.{getattr(fun, '__qualname__', repr(fun))}"
    name, k = f"{base}[{kind}]", 1
    while name in registry:
        k += 1
        name = f"{base}[{kind}]#{k}"
    prim = defprim(name, impl, None, doc=f"a {kind} function; a NumPy call in compiled code")
    prim.builtin = False
    return prim


def inlined(tape: Any, values: Any) -> Any:
    """``tape`` with each call of a custom function replaced by the
    instructions its Python function records on the call's operands, or None
    when it calls none.  ``values``: the trace's values by slot (those of the
    inputs are read).  The derivative rules have run already (the sweep
    recorded ``bwd``/the JVP rule); what is left is the primal call, which a
    backend would otherwise run as a call into Python.  A function whose body
    does not trace (it calls code that converts to plain arrays) keeps its
    call."""
    from .core.registry import registry as prims
    from .core.tracer import recording
    if not any(prims[ins.prim].inline is not None for ins in tape.instrs):
        return None
    if any(np.asarray(values[s]).dtype.kind not in "fc" for s in tape.inputs):
        return None  # integer data: inputs of another kind, not replayed here
    with recording(record_lines=False) as builder:
        env: dict[int, Any] = {s: builder.new_input(values[s]) for s in tape.inputs}
        env.update(tape.consts)
        for ins in tape.instrs:
            prim, args, params = prims[ins.prim], [env[s] for s in ins.ins], dict(ins.params)
            out = None
            if prim.inline is not None:
                try:
                    out = prim.inline(*args, **params)
                except Exception:  # noqa: BLE001 - not traceable: the call stays
                    out = None
            env[ins.out] = bind(prim, *args, **params) if out is None else out
        builder.tape.outputs = [builder.slot_of(env[s]) for s in tape.outputs]
    return builder.tape


def _transpose(linear: Callable[[Any], Any], like: Any, cotangent: Any) -> Any:
    """L^T(cotangent) for the linear map ``linear``, at a point like ``like``:
    the reverse-mode derivative of L (at zero, where it is exact)."""
    from .api import vjp
    zero = np.zeros(np.shape(like), dtype=np.result_type(_dtype(like), np.float32))
    _, pullback = vjp(linear, zero)
    return pullback(cotangent)[0]


def transposed_jvp(vjp: Callable[..., Any]) -> Callable[..., Any]:
    """The JVP rule ``(t, ans, *args)`` of a VJP rule ``(g, ans, *args)``,
    which is linear in g: J t = (g -> vjp(g))^T t."""
    def jvp(t: Any, ans: Any, *args: Any, **params: Any) -> Any:
        return _transpose(lambda g: vjp(g, ans, *args, **params), ans, t)
    return jvp


def _dtype(x: Any) -> Any:
    return x.aval.dtype if isinstance(x, Tracer) and hasattr(x, "aval") else np.result_type(x)


class _Aval(NamedTuple):
    shape: tuple
    dtype: Any


def _key(nondiff: tuple) -> Any:
    """nondiff as part of a dictionary key, or None if it is not hashable."""
    try:
        hash(nondiff)
    except TypeError:
        return None
    return nondiff


def _pack(tree: Any, structure: tuple[Any, tuple]) -> Any:
    """A pytree result (or its tangent, or cotangent) of the learnt structure
    as one 1-D array of the leaves' common dtype."""
    out_tree, avals = structure
    leaves, tree_def = pytree.flatten(tree)
    if tree_def != out_tree:
        raise TypeError(f"a custom rule gave a result of structure {tree_def}, "
                        f"where the function's result has structure {out_tree}")
    dtype = packed_dtype([_Aval(*a) for a in avals])
    if not any(isinstance(v, Tracer) for v in leaves):
        return pack(leaves, dtype)
    from . import numpy as fnp
    return fnp.concatenate([fnp.ravel(fnp.astype(fnp.broadcast_to(v, shape), dtype))
                            for v, (shape, _) in zip(leaves, avals)])


def _unpack(packed: Any, out_tree: Any, avals: tuple) -> Any:
    from .loops import unpack
    parts, at = [], 0
    for shape, dtype in avals:
        size = int(np.prod(shape, dtype=np.int64))
        parts.append(unpack(packed, at, at + size, _Aval(shape, dtype)))
        at += size
    return pytree.unflatten(out_tree, parts)


def _zeros_like(x: Any) -> Any:
    from . import numpy as fnp
    return fnp.zeros_like(x) if isinstance(x, Tracer) else np.zeros_like(np.asarray(x, float))


class _Custom:
    """What `custom_jvp` and `custom_vjp` share: argument bookkeeping and the
    primitive."""

    kind = "custom"

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Sequence[int] = ()) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(sorted(int(i) for i in nondiff_argnums))
        self.primitive = _new_primitive(fun, self.kind, self._value)
        self.primitive.batch_rule = per_example
        self.primitive.inline = self._value
        # (argument structure, leaf shapes and dtypes, nondiff) -> the result's
        # structure and leaf avals, learnt by running the function once
        self._results: dict[Any, tuple[Any, tuple]] = {}

    # -- arguments: the differentiated ones are the primitive's operands ------------
    def _split(self, args: tuple) -> tuple[tuple, tuple]:
        nondiff = tuple(args[i] for i in self.nondiff_argnums)
        diff = tuple(a for i, a in enumerate(args) if i not in self.nondiff_argnums)
        return nondiff, diff

    def _merge(self, nondiff: tuple, diff: tuple) -> tuple:
        out, nd, d = [], iter(nondiff), iter(diff)
        for i in range(len(nondiff) + len(diff)):
            out.append(next(nd) if i in self.nondiff_argnums else next(d))
        return tuple(out)

    def _args(self, leaves: tuple, nondiff: tuple, in_tree: Any) -> tuple:
        """The function's arguments from the primitive's operands."""
        diff = tuple(leaves) if in_tree is None else pytree.unflatten(in_tree, list(leaves))
        return self._merge(nondiff, diff)

    def _value(self, *leaves: Any, nondiff: tuple = (), in_tree: Any = None,
               out_tree: Any = None) -> Any:
        out = self.fun(*self._args(leaves, nondiff, in_tree))
        return out if out_tree is None else _pack(out, out_tree)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{self.kind} functions take positional arguments only "
                            "(as JAX's); pass keywords with functools.partial")
        nondiff, diff = self._split(args)
        leaves, in_tree = pytree.flatten(diff)
        if not any(isinstance(a, Tracer) for a in leaves):
            return self.fun(*args)  # nothing to differentiate: the function itself
        for a in leaves:
            if not (isinstance(a, Tracer) or np.ndim(a) >= 0 and np.asarray(a).dtype != object):
                raise TypeError(f"{self.kind}: differentiated arguments must be pytrees of "
                                f"arrays or numbers, not {type(a).__name__}; mark the "
                                "argument in nondiff_argnums")
        flat = in_tree == pytree.flatten(tuple(range(len(diff))))[1]  # arrays and numbers
        out_tree, out_avals = self._result(leaves, nondiff, in_tree)
        self._ensure_rules(len(leaves))
        params: dict[str, Any] = {"nondiff": nondiff}
        if not flat:
            params["in_tree"] = in_tree
        if out_tree is None:  # one array
            return bind(self.primitive, *leaves, **params)
        packed = bind(self.primitive, *leaves, out_tree=(out_tree, out_avals), **params)
        return _unpack(packed, out_tree, out_avals)

    def _result(self, leaves: list, nondiff: tuple, in_tree: Any) -> tuple[Any, tuple]:
        """The result's structure (None for one array) and its leaves' avals."""
        key = (in_tree, tuple((np.shape(a), np.result_type(_dtype(a))) for a in leaves),
               _key(nondiff))
        known = self._results.get(key)
        if known is None:
            values = [a.value if isinstance(a, Tracer) else a for a in leaves]
            with outside_traces():  # (plain values: see `outside_traces`)
                out = self.fun(*self._args(values, nondiff, in_tree))
            out_leaves, out_tree = pytree.flatten(out)
            if out_tree == pytree.LEAF:
                known = (None, ())
            else:
                known = (out_tree, tuple((np.shape(v), np.result_type(v)) for v in out_leaves))
            if key[2] is not None:
                self._results[key] = known
        return known

    def _cotangent_of_result(self, g: Any, out_tree: Any) -> Any:
        return g if out_tree is None else _unpack(g, *out_tree)

    def _ensure_rules(self, n: int) -> None:
        prim = self.primitive
        while len(prim.vjps) < n:
            prim.vjps.append(self._vjp_rule(len(prim.vjps)))
        while len(prim.jvps) < n:
            prim.jvps.append(self._jvp_rule(len(prim.jvps)))



class custom_vjp(_Custom):  # noqa: N801 - JAX's name
    """A function whose reverse-mode derivative is given by ``defvjp(fwd, bwd)``:
    ``fwd(*args) -> (value, residuals)``, ``bwd(*nondiff_args, residuals, g) ->``
    a tuple with the cotangent of each differentiated argument (None for zero)."""

    kind = "custom_vjp"

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Sequence[int] = ()) -> None:
        super().__init__(fun, nondiff_argnums)
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None
        self._last = threading.local()  # the last backward call, per thread

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        self.fwd, self.bwd = fwd, bwd

    def _cotangents(self, g: Any, leaves: tuple, nondiff: tuple, in_tree: Any,
                    out_tree: Any) -> tuple:
        """bwd's cotangent of each operand (leaf); the VJP rules of one
        instruction ask in turn, one per operand, with the same values: fwd
        and bwd run once for them."""
        last = getattr(self._last, "call", None)
        if (last is not None and last[0] is g and last[2] is nondiff
                and len(last[1]) == len(leaves) and all(a is b for a, b in zip(last[1], leaves))):
            return last[3]
        cts = self._run_bwd(g, leaves, nondiff, in_tree, out_tree)
        self._last.call = (g, leaves, nondiff, cts)  # holds them: their ids stay theirs
        return cts

    def _run_bwd(self, g: Any, leaves: tuple, nondiff: tuple, in_tree: Any,
                 out_tree: Any) -> tuple:
        if self.bwd is None:
            raise NotImplementedError(f"{self.__name__}: custom_vjp has no rule; call "
                                      "defvjp(fwd, bwd) first")
        args = self._args(leaves, nondiff, in_tree)
        _, residuals = self.fwd(*args)
        cts = self.bwd(*nondiff, residuals, self._cotangent_of_result(g, out_tree))
        diff = self._split(args)[1]
        if not isinstance(cts, (tuple, list)) or len(cts) != len(diff):
            raise TypeError(f"{self.__name__}: the bwd rule must return a tuple of "
                            f"{len(diff)} cotangent(s), one per differentiated argument; "
                            f"got {type(cts).__name__}")
        out: list[Any] = []
        for c, d in zip(cts, diff):
            d_leaves, d_tree = pytree.flatten(d)
            if c is None:
                out += [_zeros_like(x) for x in d_leaves]
                continue
            c_leaves, c_tree = pytree.flatten(c)
            if c_tree != d_tree:
                raise TypeError(f"{self.__name__}: the bwd rule gave a cotangent of structure "
                                f"{c_tree} for an argument of structure {d_tree}")
            out += c_leaves
        return tuple(out)

    def _vjp_rule(self, i: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *leaves: Any, nondiff: tuple = (), in_tree: Any = None,
                out_tree: Any = None) -> Any:
            return self._cotangents(g, leaves, nondiff, in_tree, out_tree)[i]
        return vjp

    def _jvp_rule(self, i: int) -> Callable[..., Any]:
        return transposed_jvp(self._vjp_rule(i))  # bwd is linear in g


class custom_jvp(_Custom):  # noqa: N801 - JAX's name
    """A function whose forward-mode derivative is given by ``defjvp(rule)``:
    ``rule(*nondiff_args, primals, tangents) -> (value, tangent_out)``, or by
    ``defjvps(*rules)``, one ``rule(t, ans, *args)`` per differentiated argument
    (None for zero)."""

    kind = "custom_jvp"

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Sequence[int] = ()) -> None:
        super().__init__(fun, nondiff_argnums)
        self.rule: Callable[..., Any] | None = None
        self.rules: tuple | None = None

    def defjvp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        self.rule, self.rules = rule, None
        return rule

    def defjvps(self, *rules: Callable[..., Any] | None) -> None:
        self.rule, self.rules = None, rules

    def _tangent(self, i: int, t: Any, ans: Any, leaves: tuple, nondiff: tuple,
                 in_tree: Any, out_tree: Any) -> Any:
        """The result's tangent for tangent t of operand (leaf) i alone."""
        if self.rules is not None:
            if in_tree is not None or out_tree is not None:
                raise TypeError(f"{self.__name__}: defjvps takes arrays and numbers; with "
                                "pytree arguments or results, give one rule with defjvp")
            rule = self.rules[i] if i < len(self.rules) else None
            return _zeros_like(ans) * 0.0 if rule is None else rule(t, ans, *leaves)
        if self.rule is None:
            raise NotImplementedError(f"{self.__name__}: custom_jvp has no rule; call "
                                      "defjvp(rule) first")
        tangents = tuple(t if k == i else _zeros_like(d) for k, d in enumerate(leaves))
        primals = self._split(self._args(leaves, nondiff, in_tree))[1]
        out = self.rule(*nondiff, primals, self._split(self._args(tangents, nondiff, in_tree))[1])
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{self.__name__}: the jvp rule must return (value, tangent)")
        return out[1] if out_tree is None else _pack(out[1], out_tree)

    def _jvp_rule(self, i: int) -> Callable[..., Any]:
        def jvp(t: Any, ans: Any, *leaves: Any, nondiff: tuple = (), in_tree: Any = None,
                out_tree: Any = None) -> Any:
            return self._tangent(i, t, ans, leaves, nondiff, in_tree, out_tree)
        return jvp

    def _vjp_rule(self, i: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *leaves: Any, nondiff: tuple = (), in_tree: Any = None,
                out_tree: Any = None) -> Any:
            # J_i^T g: the rule is linear in the tangent
            return _transpose(
                lambda t: self._tangent(i, t, ans, leaves, nondiff, in_tree, out_tree),
                leaves[i], g)
        return vjp
