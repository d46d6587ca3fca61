"""autograd's ``autograd.tracer`` and ``autograd.core`` as user code reaches
for them: ``from autograd.tracer import primitive, getval, isbox`` becomes
``from fastad.tracer import ...`` with the same calls, and the names of
autograd.core that user code imports are here too.

``getval(x)`` is the plain value of a traced ``x`` (autograd unboxes it):
a compiled function records a guard that the value is still the same, as
for any plain result of a traced value.  ``isbox(x)`` says whether ``x`` is
traced; ``make_vjp(fun, x)`` and ``make_jvp(fun, x)`` are autograd.core's
forms, of one argument.  autograd's registries of rules (``primitive_vjps``) are the rules
of fastad's primitives, seen as a mapping from the primitive's function
(`primitive_vjps`): removing an entry removes the primitive's rules.  Its
``Box``, ``Node`` and vector spaces belong to its tracer and are not
provided (`fastad.extend` says what takes their place).
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Iterator

import warnings

from . import api, conventions
from .core.registry import Primitive, _resolve, defvjp, registry
from .core.tracer import FRONT_END, Tracer
from .extend import notrace_primitive

__all__ = ["primitive", "notrace_primitive", "getval", "isbox", "make_vjp", "make_jvp",
           "primitive_vjps", "primitive_jvps"]


def primitive(fn: Any) -> Any:
    """`fastad.primitive`, with the rule-setting methods of autograd's first
    versions that older code still calls (each warns, as autograd's do):
    ``f.defgrad(maker, argnum)`` (``maker(ans, *args) -> g -> cotangent``),
    ``f.defvjp(rule, argnum)`` (``rule(g, ans, vs, gvs, *args)``) and
    ``f.defvjp_is_zero(argnums)``."""
    f = api.primitive(fn)

    def defgrad(maker: Any, argnum: int = 0) -> None:
        _deprecated("defgrad")
        _set_vjp(f, argnum, lambda g, ans, *args, **kw: maker(ans, *args, **kw)(g))

    def old_defvjp(rule: Any, argnum: int = 0) -> None:
        _deprecated("defvjp")
        _set_vjp(f, argnum, lambda g, ans, *args, **kw: rule(g, ans, None, None, *args, **kw))

    def defvjp_is_zero(argnums: Any = (0,)) -> None:
        _deprecated("defvjp_is_zero")
        for k in argnums:
            _set_vjp(f, k, lambda g, ans, *args, k=k, **kw: args[k] * 0.0)
    f.defgrad, f.defvjp, f.defvjp_is_zero = defgrad, old_defvjp, defvjp_is_zero
    return f


def _deprecated(name: str) -> None:
    warnings.warn(f"f.{name}(...) is deprecated (autograd's first API); use "
                  f"fastad.extend.defvjp(f, ...)", DeprecationWarning, stacklevel=3)


def _set_vjp(f: Any, argnum: int, rule: Any) -> None:
    rules = list(f.primitive.vjps)
    rules += [None] * (argnum + 1 - len(rules))
    rules[argnum] = rule
    defvjp(f, *rules)


def make_vjp(fun: Any, x: Any) -> tuple[Any, Any]:
    """autograd.core's ``make_vjp(fun, x)``: (the VJP of ``fun`` at ``x``,
    ``fun(x)``), for a function of one argument (`fastad.make_vjp` is the
    operator of several)."""
    return conventions.make_vjp(fun)(x)


def make_jvp(fun: Any, x: Any) -> Any:
    """autograd.core's ``make_jvp(fun, x)``: ``g -> (fun(x), its tangent along g)``."""
    return conventions.make_jvp(fun)(x)


def getval(x: Any) -> Any:
    """``x``'s plain value (a guard on it when compiled); ``x`` when not traced."""
    return FRONT_END["concrete"](x) if isinstance(x, Tracer) else x


def isbox(x: Any) -> bool:
    """Whether ``x`` is a traced value (autograd: a Box)."""
    return isinstance(x, Tracer)


class _Rules(MutableMapping):
    """A primitive's derivative rules keyed by its function (or primitive):
    autograd's ``primitive_vjps`` and ``primitive_jvps``.  An entry is the
    list of per-argument rules; deleting it leaves the primitive without
    derivative rules (a NotImplementedError where one is needed)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def _prim(self, key: Any) -> Primitive:
        try:
            prim = _resolve(key)
        except KeyError:
            raise KeyError(key) from None
        if not isinstance(prim, Primitive) or not getattr(prim, self.field):
            raise KeyError(key)
        return prim

    def __getitem__(self, key: Any) -> list:
        return list(getattr(self._prim(key), self.field))

    def __setitem__(self, key: Any, rules: Any) -> None:
        prim = _resolve(key)
        if not isinstance(prim, Primitive):
            raise TypeError(f"{key!r} is not a primitive")
        setattr(prim, self.field, list(rules))

    def __delitem__(self, key: Any) -> None:
        setattr(self._prim(key), self.field, [])

    def __iter__(self) -> Iterator[Primitive]:
        return iter([p for p in registry.values() if getattr(p, self.field)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


primitive_vjps = _Rules("vjps")
primitive_jvps = _Rules("jvps")
