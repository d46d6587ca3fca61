"""``jax.Array``: NumPy's ndarray with JAX's array methods, the type of the
arrays ``fastad.numpy``'s constructors make outside a trace (and of a
jitted function's results when it is given them), so that JAX code's ``x =
jnp.zeros(n); x = x.at[i].set(v)`` and ``jax.jit(f)(x).block_until_ready()``
run on them.

It is an ndarray that only adds methods: NumPy computes with it as with any
ndarray (ufuncs and methods keep the subclass, as NumPy does for every
subclass), fastad reads it as the plain array it holds (`core.arrays.
plain_array`), and it prints as NumPy's arrays do.  ``isinstance(x, Array)``
holds for every array value as in JAX: ndarrays, NumPy scalars and traced
values.  Arrays made inside a trace are traced values, which have ``.at``
themselves.  Functions of plain arrays other than the constructors, and
compiled functions given plain arrays, give NumPy's types, as autograd's do
(a compiled function returns what the function returns on NumPy's arrays;
given Arrays, its arrays are Arrays, as NumPy's operations on them give);
a full reduction of an Array is NumPy's scalar."""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as _np

from ..core import pytree
from ..core.tracer import Tracer, current_builder
from ._index_update import IndexUpdates


class _ArrayMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, (_np.ndarray, _np.generic, Tracer))


#: whether any Array has been made in this process (`Array.__array_finalize__`)
_ANY_MADE = False


class CpuDevice:
    """The one device fastad computes on."""

    platform = device_kind = "cpu"
    id = process_index = 0

    def __repr__(self) -> str:
        return "CpuDevice(id=0)"


CPU = CpuDevice()


_GETITEM = _np.ndarray.__getitem__


def _traced_in(key: tuple) -> bool:
    for k in key:
        if isinstance(k, Tracer):
            return True
    return False


class Array(_np.ndarray, metaclass=_ArrayMeta):
    """``jax.Array``: an ndarray with JAX's methods (``isinstance`` holds for
    NumPy arrays and scalars and traced values too)."""

    __slots__ = ()

    @property
    def at(self) -> IndexUpdates:
        """JAX's functional updates: ``x.at[idx].set(v)`` returns a new array."""
        return IndexUpdates(self)

    def block_until_ready(self) -> "Array":
        return self  # computed already: fastad's calls return when done

    def copy_to_host_async(self) -> None:
        return None

    @property
    def device(self) -> CpuDevice:
        return CPU

    def devices(self) -> set[CpuDevice]:
        return {CPU}

    @property
    def is_fully_addressable(self) -> bool:
        return True

    def __repr__(self) -> str:
        return repr(self.view(_np.ndarray))

    def __getitem__(self, key: Any) -> Any:
        # indexed by traced integers (x[t] in a vmapped or jitted function):
        # a gather by them, as JAX's arrays are, not a guard on their values
        kind = type(key)
        if kind is not int and kind is not slice and (
                isinstance(key, Tracer) or (kind is tuple and _traced_in(key))):
            from ._indexing import getitem
            return getitem(self.view(_np.ndarray), key)
        return _GETITEM(self, key)

    def __array_finalize__(self, obj: Any) -> None:
        global _ANY_MADE
        _ANY_MADE = True  # from now on, compiled calls look for Arrays among their arguments

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False) -> Any:
        # a full reduction gives NumPy's scalar, as on a plain ndarray
        # (NumPy's default for a subclass is a 0-d array of it)
        if return_scalar:
            return array[()]
        return super().__array_wrap__(array, context, return_scalar)


def as_arrays(tree: Any) -> Any:
    """Every plain ndarray leaf of ``tree`` as an `Array`."""
    kind = type(tree)
    if kind is _np.ndarray:
        return tree.view(Array)
    if kind is tuple or kind is list:  # a compiled function's usual results, directly
        return kind(as_arrays(leaf) for leaf in tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # eigh's, svd's results
        return kind._make(as_arrays(leaf) for leaf in tree)
    if tree is None or isinstance(tree, (_np.generic, Tracer, float, int)):
        return tree
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [leaf.view(Array) if type(leaf) is _np.ndarray else leaf
                                      for leaf in leaves])


def given_arrays(args: tuple) -> bool:
    """Whether any of ``args``, or any leaf of a pytree among them (JAX's
    parameter dictionaries, jvp's tuple of primals), is an `Array`.  On the
    per-call path of compiled functions: nothing to look for until an Array
    has been made; then dicts, lists and tuples are walked directly, other
    pytree nodes flattened."""
    if not _ANY_MADE:
        return False
    for a in args:
        kind = type(a)
        if kind is Array:
            return True
        if kind is _np.ndarray or kind is float or kind is int:
            continue
        if kind is dict:
            if given_arrays(a.values()):
                return True
        elif kind is list or kind is tuple:
            if given_arrays(a):
                return True
        elif not isinstance(a, (_np.generic, Tracer)) and not callable(a) \
                and Array in map(type, pytree.flatten(a)[0]):
            return True
    return False


def arrays_out(fn: Callable[..., Any], always: bool = False) -> Callable[..., Any]:
    """``fn`` (a transformed function: a gradient, a batched function, a
    Jacobian), its arrays returned as `Array` s when it is given any (or
    ``always``: a vjp's pullback of Arrays), as ``jax.grad(f)(x)`` returns
    jax.Array's."""
    @functools.wraps(fn, updated=())
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        return as_arrays(out) if always or given_arrays(args) else out
    return call


_RESULTS = (_np.ndarray, tuple, list)


def keeping_arrays(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A function of ``fastad.numpy`` whose plain array results are `Array` s
    when it is given any, as jax.numpy's functions give jax.Array's: NumPy
    keeps the subclass through ufuncs and methods but not through
    ``concatenate``, ``where``, ``stack``, the FFTs or the decompositions.
    Before any Array exists (autograd's code) it costs one test."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if _ANY_MADE and isinstance(out, _RESULTS) and (
                given_arrays(args) or (kwargs and given_arrays(tuple(kwargs.values())))):
            return as_arrays(out)
        return out
    return call


def keep_arrays_in(namespace: dict, skip: Any = ()) -> None:
    """Every public plain function of ``namespace`` but ``skip``, as
    `keeping_arrays` (ufuncs keep the subclass by NumPy's own wrapping)."""
    import types
    wrapped: dict[int, Any] = {}  # aliases (amax and max) stay one function
    for name, obj in list(namespace.items()):
        if not name.startswith("_") and name not in skip and isinstance(obj, types.FunctionType):
            if id(obj) not in wrapped:
                wrapped[id(obj)] = keeping_arrays(obj)
            namespace[name] = wrapped[id(obj)]


def making_arrays(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A constructor of ``fastad.numpy`` whose plain results are `Array` s
    (traced ones inside a trace are left as they are)."""
    @functools.wraps(fn)
    def make(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        return out if current_builder() is not None else as_arrays(out)
    return make


#: the constructors whose plain results are Arrays
CONSTRUCTORS = ("array", "asarray", "asanyarray", "ascontiguousarray", "zeros", "ones",
                "full", "empty", "eye", "identity", "arange", "linspace", "logspace",
                "geomspace", "zeros_like", "ones_like", "full_like", "empty_like", "copy",
                "tri", "meshgrid", "frombuffer", "fromiter", "fromfunction")
