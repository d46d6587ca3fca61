"""The one registry of primitives.

A primitive is declared once: its name, NumPy implementation, and per-argument
VJP and JVP rules.  Rules are written with fastad's own operations so that
they trace, which is what makes gradients of gradients work.

VJP rule signature:  ``vjp(g, ans, *args, **params) -> cotangent of one arg``
JVP rule signature:  ``jvp(t, ans, *args, **params) -> tangent contribution``
(``t`` is the tangent of that one argument).  A rule of ``None`` means the
argument is not differentiable (integer indices, boolean conditions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

Rule = Optional[Callable[..., Any]]


@dataclass
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
        raise NotImplementedError(f"no JVP rule for argument {argnum} of primitive {self.name!r}; "
                                  "register one with fastad.defjvp")

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


registry: dict[str, Primitive] = {}


def defprim(name: str, impl: Callable[..., Any], nargs: int | None,
            differentiable: bool = True, doc: str = "") -> Primitive:
    if name in registry:
        raise ValueError(f"primitive {name!r} is already registered")
    prim = Primitive(name, impl, nargs, differentiable=differentiable, doc=doc)
    registry[name] = prim
    return prim


def _resolve(prim: Any) -> Primitive:
    if isinstance(prim, str):
        return registry[prim]
    return getattr(prim, "primitive", prim)  # a function made by fastad.primitive


def defvjp(prim: Primitive | str | Callable[..., Any], *rules: Rule) -> None:
    """Register the VJP rule of each argument: ``rule(g, ans, *args, **params)``."""
    _resolve(prim).vjps = list(rules)


def defjvp(prim: Primitive | str | Callable[..., Any], *rules: Rule) -> None:
    """Register the JVP rule of each argument: ``rule(t, ans, *args, **params)``."""
    _resolve(prim).jvps = list(rules)


class _FastadNumpy:
    """``fastad.numpy``, imported on first use: rules are declared before the
    module they are written in (which needs the registry) has loaded."""

    def __getattr__(self, name: str) -> Any:
        import fastad.numpy as module
        return getattr(module, name)


fnp = _FastadNumpy()
