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
differentiated; the other arguments are arrays or numbers, and the result
is one array.  Under ``vmap`` the primitive runs once per example.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Sequence

import numpy as np

from .core.registry import defprim, registry
from .core.tracer import Tracer, bind


def _new_primitive(fun: Callable[..., Any], kind: str, impl: Callable[..., Any]) -> Any:
    base = f"{getattr(fun, '__module__', '')}.{getattr(fun, '__qualname__', repr(fun))}"
    name, k = f"{base}[{kind}]", 1
    while name in registry:
        k += 1
        name = f"{base}[{kind}]#{k}"
    prim = defprim(name, impl, None, doc=f"a {kind} function; a NumPy call in compiled code")
    prim.builtin = False
    return prim


def _transpose(linear: Callable[[Any], Any], like: Any, cotangent: Any) -> Any:
    """L^T(cotangent) for the linear map ``linear``, at a point like ``like``:
    the reverse-mode derivative of L (at zero, where it is exact)."""
    from .api import vjp
    zero = np.zeros(np.shape(like), dtype=np.result_type(_dtype(like), np.float32))
    _, pullback = vjp(linear, zero)
    return pullback(cotangent)[0]


def _dtype(x: Any) -> Any:
    return x.aval.dtype if isinstance(x, Tracer) and hasattr(x, "aval") else np.result_type(x)


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
        self.primitive.batch_rule = self._batched

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

    def _value(self, *diff: Any, nondiff: tuple = ()) -> Any:
        return self.fun(*self._merge(nondiff, diff))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{self.kind} functions take positional arguments only "
                            "(as JAX's); pass keywords with functools.partial")
        nondiff, diff = self._split(args)
        if not any(isinstance(a, Tracer) for a in diff):
            return self.fun(*args)  # nothing to differentiate: the function itself
        for a in diff:
            if not (isinstance(a, Tracer) or np.ndim(a) >= 0 and np.asarray(a).dtype != object):
                raise TypeError(f"{self.kind}: differentiated arguments must be arrays or "
                                f"numbers, not {type(a).__name__}; mark it in nondiff_argnums")
        self._ensure_rules(len(diff))
        return bind(self.primitive, *diff, nondiff=nondiff)

    def _ensure_rules(self, n: int) -> None:
        prim = self.primitive
        while len(prim.vjps) < n:
            prim.vjps.append(self._vjp_rule(len(prim.vjps)))
        while len(prim.jvps) < n:
            prim.jvps.append(self._jvp_rule(len(prim.jvps)))

    def _batched(self, prim: Any, args: list, shapes: list, params: dict, size: int) -> Any:
        """vmap: the primitive once per example, stacked (its rules stay its own)."""
        from . import numpy as fnp
        rows = [bind(prim, *(v[k] if batched else v for v, batched in args), **params)
                for k in range(size)]
        return fnp.stack(rows)


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

    def _cotangents(self, g: Any, diff: tuple, nondiff: tuple) -> tuple:
        """bwd's cotangents; the VJP rules of one instruction ask in turn, one
        per argument, with the same values: fwd and bwd run once for them."""
        last = getattr(self._last, "call", None)
        if (last is not None and last[0] is g and last[2] is nondiff
                and len(last[1]) == len(diff) and all(a is b for a, b in zip(last[1], diff))):
            return last[3]
        cts = self._run_bwd(g, diff, nondiff)
        self._last.call = (g, diff, nondiff, cts)  # holds them: their ids stay theirs
        return cts

    def _run_bwd(self, g: Any, diff: tuple, nondiff: tuple) -> tuple:
        if self.bwd is None:
            raise NotImplementedError(f"{self.__name__}: custom_vjp has no rule; call "
                                      "defvjp(fwd, bwd) first")
        _, residuals = self.fwd(*self._merge(nondiff, diff))
        cts = self.bwd(*nondiff, residuals, g)
        if not isinstance(cts, (tuple, list)) or len(cts) != len(diff):
            raise TypeError(f"{self.__name__}: the bwd rule must return a tuple of "
                            f"{len(diff)} cotangent(s), one per differentiated argument; "
                            f"got {type(cts).__name__}")
        return tuple(_zeros_like(d) if c is None else c for c, d in zip(cts, diff))

    def _vjp_rule(self, i: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *diff: Any, nondiff: tuple = ()) -> Any:
            return self._cotangents(g, diff, nondiff)[i]
        return vjp

    def _jvp_rule(self, i: int) -> Callable[..., Any]:
        def jvp(t: Any, ans: Any, *diff: Any, nondiff: tuple = ()) -> Any:
            # J_i t = (g -> bwd(g)_i)^T t: bwd is linear in g
            return _transpose(lambda g: self._cotangents(g, diff, nondiff)[i], ans, t)
        return jvp


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

    def _tangent(self, i: int, t: Any, ans: Any, diff: tuple, nondiff: tuple) -> Any:
        """The output's tangent for tangent t of differentiated argument i alone."""
        if self.rules is not None:
            rule = self.rules[i] if i < len(self.rules) else None
            return _zeros_like(ans) * 0.0 if rule is None else rule(t, ans, *diff)
        if self.rule is None:
            raise NotImplementedError(f"{self.__name__}: custom_jvp has no rule; call "
                                      "defjvp(rule) first")
        tangents = tuple(t if k == i else _zeros_like(d) for k, d in enumerate(diff))
        out = self.rule(*nondiff, diff, tangents)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{self.__name__}: the jvp rule must return (value, tangent)")
        return out[1]

    def _jvp_rule(self, i: int) -> Callable[..., Any]:
        def jvp(t: Any, ans: Any, *diff: Any, nondiff: tuple = ()) -> Any:
            return self._tangent(i, t, ans, diff, nondiff)
        return jvp

    def _vjp_rule(self, i: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *diff: Any, nondiff: tuple = ()) -> Any:
            # J_i^T g: the rule is linear in the tangent
            return _transpose(lambda t: self._tangent(i, t, ans, diff, nondiff), diff[i], g)
        return vjp
