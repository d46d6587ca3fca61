"""An eager gradient's data arguments, read in place.

``fa.grad(loss)(w, X, y)`` differentiates w; X and y are data.  The sweep of
``X @ w`` reads X, and a trace copies the arrays it holds as constants, since
the function could write into them after reading them (`Builder.const`).
For data passed as arguments that copy costs what ``X @ w`` costs, and
autograd makes none.  So once a function is known not to write into its data
arguments, its calls are *lent* them: the function gets read-only views of
the caller's arrays (`lend`), which the trace and its sweep read in place
(`Builder.lent`); a write through a view raises before it changes anything.

What is known, per function (`Lending`): its first call is traced as before,
copying, and watches its data arguments (`Watch`, a checksum of each
before the call, compared after it); only if it wrote into none are later calls lent.
If a later call writes into a lent view after all (a write that depends on
the data or on a counter), the trace stops there with `WroteIntoData` and the
call is traced again with the arrays themselves, and the function is not lent
again.  That second trace repeats what the function did before the refused
write (a write into a captured array, a draw of random numbers): a function
whose writes into its data arguments come and go gets the gradient of its
second run.  Writes through another view of the same memory (an alias the
caller made before the call) are not seen, as for the differentiated
arguments, which are read in place too.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import numpy as np

from .core.arrays import digest


class WroteIntoData(Exception):
    """The function wrote into a data argument lent to it read-only: nothing
    was written; the call is traced again with the argument itself."""


def lend(arg: Any, lent: dict[int, Any], views: dict[int, Any]) -> Any:
    """A data argument as the function sees it when it is lent: an ndarray
    (or a tuple's ndarrays) as a read-only view of the same memory, its
    memory's owner noted in ``lent`` (`Builder.lent`) and the caller's array
    in ``views`` by the view's id.  Other arguments are passed as they are:
    a list or dict is the caller's object, which the function may fill."""
    if type(arg) is np.ndarray:
        view = arg.view()
        view.flags.writeable = False
        lent[id(view.base)] = view.base
        views[id(view)] = arg
        return view
    if type(arg) is tuple and any(type(a) is np.ndarray for a in arg):
        return tuple(lend(a, lent, views) if type(a) is np.ndarray else a for a in arg)
    return arg


def lendable(args: Sequence[Any], argnums: tuple[int, ...]) -> list[np.ndarray]:
    """The arrays `lend` would lend: the data arguments' ndarrays."""
    out = []
    for i, arg in enumerate(args):
        if i in argnums:
            continue
        for a in (arg if type(arg) is tuple else (arg,)):
            if type(a) is np.ndarray:
                out.append(a)
    return out


class Watch:
    """Whether a call wrote into the given arrays: a checksum of their
    contents before it, compared after it (`core.arrays.digest`, as for
    captured arrays)."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.before = [(a, digest(a)) for a in arrays]

    def wrote(self) -> bool:
        return any(digest(a) != before for a, before in self.before)


#: function -> {argnums: whether its calls may be lent their data arguments};
#: what is not in it has not been watched yet (a function that cannot be
#: weakly referred to is known per `Lending` object only)
_KNOWN: "weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], bool]]" = \
    weakref.WeakKeyDictionary()


class Lending:
    """What one eager gradient knows about its function's writes into its
    data arguments, per set of differentiated arguments."""

    __slots__ = ("f", "known")

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        self.known: dict[tuple[int, ...], bool] = {}

    def lends(self, argnums: tuple[int, ...]) -> bool | None:
        """True: lend; False: do not; None: not known yet (watch this call)."""
        known = self.known.get(argnums)
        if known is None:
            try:
                known = self.known[argnums] = _KNOWN.get(self.f, {}).get(argnums)
            except TypeError:  # not hashable or not weakly referable
                pass
        return known

    def learn(self, argnums: tuple[int, ...], lends: bool) -> None:
        self.known[argnums] = lends
        try:
            _KNOWN.setdefault(self.f, {})[argnums] = lends
        except TypeError:
            pass
