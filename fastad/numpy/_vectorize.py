"""``numpy.vectorize`` on traced values: the Python function batched with
`fastad.vmap` (one batched tape, as ``jax.numpy.vectorize`` does) instead of
called once per element, which would store traced scalars into an object
array.  On plain values it is NumPy's own."""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as _np

from ..core.tracer import Tracer
from ._base import shape
from ._shape import broadcast_to, reshape

__all__ = ["vectorize"]

_CORE = re.compile(r"\(([^()]*)\)")


def _core_dims(part: str) -> list[tuple[str, ...]]:
    return [tuple(d.strip() for d in group.split(",") if d.strip())
            for group in _CORE.findall(part)]


def _parse(signature: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    if signature.count("->") != 1:
        raise ValueError(f"not a valid gufunc signature: {signature}")
    ins, outs = signature.replace(" ", "").split("->")
    return _core_dims(ins), _core_dims(outs)


def _has_tracer(values: Any) -> bool:
    return any(isinstance(v, Tracer) for v in values)


class vectorize:  # noqa: N801 - NumPy's name
    """NumPy's ``vectorize(pyfunc, otypes=None, doc=None, excluded=None,
    cache=False, signature=None)``; called on traced values, ``pyfunc`` is
    traced once on one element (or one core-dimension slice, with
    ``signature``) and batched over the broadcast loop dimensions."""

    def __init__(self, pyfunc: Callable[..., Any] | None = None, otypes: Any = None,
                 doc: str | None = None, excluded: Any = None, cache: bool = False,
                 signature: str | None = None) -> None:
        self.pyfunc = pyfunc
        self.otypes, self.cache, self.signature = otypes, cache, signature
        self.excluded = set(excluded or ())
        self.__doc__ = doc if doc is not None else getattr(pyfunc, "__doc__", None)
        self._numpy = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.pyfunc is None:  # @vectorize(signature=...) used as a decorator factory
            return type(self)(args[0], self.otypes, self.__doc__, self.excluded, self.cache,
                              self.signature)
        if not _has_tracer(args) and not _has_tracer(kwargs.values()):
            if self._numpy is None:
                self._numpy = _np.vectorize(self.pyfunc, otypes=self.otypes,
                                            excluded=self.excluded or None, cache=self.cache,
                                            signature=self.signature)
            return self._numpy(*args, **kwargs)
        names = [i for i in range(len(args)) if i not in self.excluded] + sorted(
            k for k in kwargs if k not in self.excluded)
        values = [args[n] if isinstance(n, int) else kwargs[n] for n in names]

        def one(*picked: Any) -> Any:
            call_args, call_kwargs = list(args), dict(kwargs)
            for n, v in zip(names, picked):
                if isinstance(n, int):
                    call_args[n] = v
                else:
                    call_kwargs[n] = v
            return self.pyfunc(*call_args, **call_kwargs)
        return self._batched(one, values)

    def _batched(self, one: Callable[..., Any], values: list[Any]) -> Any:
        from ..vectorizing import vmap
        if self.signature is None:
            in_core: list[tuple[str, ...]] = [()] * len(values)
            out_core = None
        else:
            in_core, out_core = _parse(self.signature)
            if len(in_core) != len(values):
                raise TypeError(f"wrong number of positional arguments: expected "
                                f"{len(in_core)}, got {len(values)}")
        shapes = [tuple(shape(v)) for v in values]
        sizes: dict[str, int] = {}
        for s, core in zip(shapes, in_core):
            if len(s) < len(core):
                raise ValueError(f"input with shape {s} has fewer dimensions than the "
                                 f"signature's {core}")
            for name, n in zip(core, s[len(s) - len(core):]):
                if sizes.setdefault(name, n) != n:
                    raise ValueError(f"inconsistent size for core dimension {name!r}: "
                                     f"{sizes[name]} and {n}")
        loop = _np.broadcast_shapes(*(s[:len(s) - len(c)] for s, c in zip(shapes, in_core)))
        count = int(_np.prod(loop, dtype=_np.int64))
        if count == 0:
            raise ValueError("vectorize on traced values needs at least one element")
        flat = [reshape(broadcast_to(v, loop + s[len(s) - len(c):]), (count,) + s[len(s) - len(c):])
                for v, s, c in zip(values, shapes, in_core)]
        out = vmap(one)(*flat)

        def unflat(r: Any) -> Any:
            return reshape(r, loop + tuple(shape(r))[1:])
        if isinstance(out, tuple):
            return tuple(unflat(r) for r in out)
        if out_core is not None and len(out_core) > 1:
            raise ValueError(f"the signature {self.signature} names {len(out_core)} outputs; "
                             "the function returned one")
        return unflat(out)
