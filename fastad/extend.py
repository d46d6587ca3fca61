"""autograd's ``autograd.extend``: defining primitives and their derivative
rules, so that ``from autograd.extend import primitive, defvjp`` becomes
``from fastad.extend import primitive, defvjp`` with the same calls.

``primitive`` and the per-argument ``defvjp``/``defjvp`` forms are fastad's
own (`fastad.api.primitive`, `fastad.core.registry`); this module adds
autograd's ``argnums=`` keyword and its ``*_argnum``/``*_argnums`` forms,
whose makers receive the argument's position, ``ans``, ``args`` and
``kwargs`` (the primitive's keyword arguments), as autograd's do:

* ``defvjp_argnum(f, maker)``: ``maker(argnum, ans, args, kwargs)`` returns
  the function of ``g`` giving that argument's cotangent;
* ``defvjp_argnums(f, maker)``: ``maker(argnums, ans, args, kwargs)`` returns
  the function of ``g`` giving the cotangents of all of them, a tuple;
* ``defjvp_argnum(f, maker)``: ``maker(argnum, g, ans, args, kwargs)`` gives
  that argument's tangent contribution (``defjvp_argnums`` likewise, with a
  list of argument positions and their tangents);
* ``def_linear(f)``: ``f`` is linear in each argument, so its tangent is
  ``f`` applied with the tangent in that argument's place;
* ``notrace_primitive(f)``: ``f`` of the arguments' values, with no
  derivative (a guard under compilation, as any plain result of traced
  values).

autograd's ``Box``, ``VSpace`` and ``vspace`` belong to its tracer, which
fastad does not have: importing them raises an ImportError that names
fastad's way to differentiate with respect to a value of one's own type,
registering it as a pytree.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

from .api import primitive
from .core.registry import _resolve, defjvp as _defjvp, defvjp as _defvjp

#: positions given rules when the primitive's function takes ``*args``
_MANY = 16


def _arity(f: Any) -> int:
    """How many positional arguments f's primitive takes (``_MANY`` for *args)."""
    fn = _resolve(f).impl
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return _MANY
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return _MANY
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _placed(rules: Sequence[Any], argnums: Sequence[int] | None) -> list[Any]:
    """rules at positions argnums (None elsewhere), or as given."""
    if argnums is None:
        return list(rules)
    if len(rules) != len(argnums):
        raise ValueError(f"{len(rules)} rules for argnums {tuple(argnums)}")
    out: list[Any] = [None] * (max(argnums) + 1 if argnums else 0)
    for k, rule in zip(argnums, rules):
        out[k] = rule
    return out


def defvjp(fun: Any, *vjpmakers: Any, argnums: Sequence[int] | None = None) -> None:
    """autograd's ``defvjp``: one VJP maker per argument (curried
    ``(ans, *args) -> (g -> cotangent)``, or fastad's ``(g, ans, *args)``),
    None for an argument without derivative; ``argnums`` places them."""
    _defvjp(fun, *_placed(vjpmakers, argnums))


def defjvp(fun: Any, *jvpfuns: Any, argnums: Sequence[int] | None = None) -> None:
    """autograd's ``defjvp``: one ``(g, ans, *args) -> tangent`` per argument."""
    _defjvp(fun, *_placed(jvpfuns, argnums))


def defvjp_argnum(fun: Any, vjpmaker: Callable[..., Any]) -> None:
    def rule_for(k: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *args: Any, **kwargs: Any) -> Any:
            return vjpmaker(k, ans, args, kwargs)(g)
        return vjp
    _defvjp(fun, *[rule_for(k) for k in range(_arity(fun))])


def defvjp_argnums(fun: Any, vjpmaker: Callable[..., Any]) -> None:
    def rule_for(k: int) -> Callable[..., Any]:
        def vjp(g: Any, ans: Any, *args: Any, **kwargs: Any) -> Any:
            return vjpmaker((k,), ans, args, kwargs)(g)[0]
        return vjp
    _defvjp(fun, *[rule_for(k) for k in range(_arity(fun))])


def defjvp_argnum(fun: Any, jvpmaker: Callable[..., Any]) -> None:
    def rule_for(k: int) -> Callable[..., Any]:
        def jvp(g: Any, ans: Any, *args: Any, **kwargs: Any) -> Any:
            return jvpmaker(k, g, ans, args, kwargs)
        return jvp
    _defjvp(fun, *[rule_for(k) for k in range(_arity(fun))])


def defjvp_argnums(fun: Any, jvpmaker: Callable[..., Any]) -> None:
    def rule_for(k: int) -> Callable[..., Any]:
        def jvp(g: Any, ans: Any, *args: Any, **kwargs: Any) -> Any:
            return jvpmaker((k,), (g,), ans, args, kwargs)
        return jvp
    _defjvp(fun, *[rule_for(k) for k in range(_arity(fun))])


def def_linear(fun: Any) -> None:
    """``fun`` is linear in each argument: its tangent in argument k is fun
    with the tangent there."""
    def jvp_for(k: int) -> Callable[..., Any]:
        def jvp(g: Any, ans: Any, *args: Any, **kwargs: Any) -> Any:
            return fun(*args[:k], g, *args[k + 1:], **kwargs)
        return jvp
    _defjvp(fun, *[jvp_for(k) for k in range(_arity(fun))])


def notrace_primitive(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` on the values of its arguments, with no derivative."""
    from .numpy._plain import plain_call

    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        return plain_call(f, args, kwargs)
    return call


_TRACER_NAMES = ("Box", "VSpace", "vspace", "SparseObject", "JVPNode", "VJPNode")


def __getattr__(name: str) -> Any:
    if name in _TRACER_NAMES:
        raise ImportError(
            f"autograd.extend.{name} belongs to autograd's tracer, which fastad does not have: "
            "to take gradients with respect to values of your own class, register it as a "
            "pytree (fastad.tree_util.register_pytree_node or register_pytree_node_class); "
            "its gradient is then a value of the same class, as in JAX")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["primitive", "defvjp", "defjvp", "defvjp_argnum", "defvjp_argnums", "defjvp_argnum",
           "defjvp_argnums", "def_linear", "notrace_primitive"]
