"""What a compiled function can read from outside its arguments: the walk.

`find` looks, before a trace, at the closure cells and the module globals
the function's code names, and at those of the Python functions it reaches
through them (helpers in globals or closures, the code objects nested in
each: what fastad can see without running anything); `fastad.captures`
reads and guards the bindings it returns.

Defaults and keyword defaults of the functions followed, and the arguments
and keywords of a ``functools.partial``, are bindings too (`Lookup`).
Containers the function reads are followed the same way, up to eight levels
deep: the attributes of an object (``self.w``, ``config.table``: the bound
method's ``self``, a callable object's, an object in a global or a closure,
a module of the user's) whose names the code uses, found in the object or in
its class, the items of a dict whose keys the code names, and the items of a
list or tuple (``for W in self.layers``).  An attribute or item holding an
array or a number is a binding like a global, and the binding holding a
container is guarded too (``self.layers = [...]`` retraces).  The methods
of an object's class that the code names are followed as functions, and so
are fastad's compiled functions (their wrapped function).  Every binding
read but one holding a module is guarded (``helper = other``, ``mode =
"fast"`` retrace; an equal number or string holds); a library's functions
are followed only through the user's functions they close over, and
Python's own modules are not walked.  Where the walk
would stop short (`_MAX_DEPTH`, `_MAX_ITEMS`, `_MAX_FUNCTIONS`) the trace is
refused with a `TracingError` (`_refuse`): what it did not reach would be
neither read at each call nor guarded.
"""
from __future__ import annotations

import copy
import pathlib
import sys
import types
from functools import partial as functools_partial
from typing import Any, Callable

import numpy as np

from .captures import (NONE, _MISSING, _NUMBERS, _SEQUENCES, _SNAPSHOTS, Binding, Captures,
                       Lookup, _refuse)
from .core import pytree
from .core.arrays import digest
from .core.traced import _TRACERS
from .core.watched import STAND_INS, WatchedArray

# Bounds on the walk (a trace that would need more is refused, `_refuse`:
# what the walk does not reach would be neither read at each call nor guarded)
_MAX_FUNCTIONS = 512  # functions followed from one compiled function
_MAX_ITEMS = 4096  # items of one list or tuple
_MAX_DEPTH = 8  # containers in containers followed
_MAX_PASSES = 64  # passes over the containers found, each finding new names or functions
_FUNCTIONS = (types.FunctionType, functools_partial, types.MethodType)
# libraries' functions are not followed: their module constants are not the user's
_LIBRARIES = frozenset({"numpy", "scipy", "fastad", "jax", "autograd", "functools", "math",
                        "builtins", "numba", "dask"})


def _defaults(f: types.FunctionType) -> list[Binding]:
    """The bindings of ``f``'s default values, positional and keyword-only,
    read anew from the function at each call."""
    def positional(i: int) -> Any:
        values = f.__defaults__ or ()
        return values[i] if i < len(values) else _MISSING

    def keyword(name: str) -> Any:
        return (f.__kwdefaults__ or {}).get(name, _MISSING)

    def put_positional(i: int, value: Any) -> None:
        values = list(f.__defaults__)
        values[i] = value
        f.__defaults__ = tuple(values)

    def put_keyword(name: str, value: Any) -> None:
        f.__kwdefaults__[name] = value
    found = [Binding(Lookup(positional, "default argument", put_positional), i, v)
             for i, v in enumerate(f.__defaults__ or ())]
    return found + [Binding(Lookup(keyword, "keyword default", put_keyword), k, v)
                    for k, v in (f.__kwdefaults__ or {}).items()]


def _partial_arguments(p: functools_partial) -> list[Binding]:
    """The bindings of a ``functools.partial``'s arguments and keywords."""
    def positional(i: int) -> Any:
        return p.args[i] if i < len(p.args) else _MISSING

    def keyword(name: str) -> Any:
        return p.keywords.get(name, _MISSING)

    def put_positional(i: int, value: Any) -> None:
        args = list(p.args)
        args[i] = value
        p.__setstate__((p.func, tuple(args), p.keywords, p.__dict__ or None))

    def put_keyword(name: str, value: Any) -> None:
        p.keywords[name] = value
    return ([Binding(Lookup(positional, "functools.partial argument", put_positional), i, v)
             for i, v in enumerate(p.args)]
            + [Binding(Lookup(keyword, "functools.partial keyword", put_keyword), k, v)
               for k, v in p.keywords.items()])


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_code_objects(const))
    return found


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` may read from its module's globals: those it names,
    and its string constants (``globals()["W"]``, ``vars(module)["W"]``)."""
    return {name for c in _code_objects(code)
            for name in c.co_names + tuple(k for k in c.co_consts if type(k) is str)}


def _library(module: str | None) -> bool:
    """Whether code of the module named ``module`` is a library's (listed in
    `_LIBRARIES`, Python's own, or an installed package's: pytest's assertion
    helpers, which pytest puts among a test module's globals, are no user's
    state): not the user's state."""
    return _installed((module or "").split(".")[0])


_INSTALLED: dict[str, bool] = {}  # top-level module name -> whether a library's


def _installed(top: str) -> bool:
    known = _INSTALLED.get(top)
    if known is not None:
        return known
    if top in _LIBRARIES or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    module = sys.modules.get(top)
    if module is None:
        return False  # (not imported yet: not remembered)
    path = pathlib.PurePath(getattr(module, "__file__", None) or "")
    known = _INSTALLED[top] = any(p in ("site-packages", "dist-packages") for p in path.parts)
    return known


def _user_module(value: Any) -> bool:
    """A module of the user's (``import config``; ``config.lr``): neither a
    library's nor the standard library's."""
    top = (getattr(value, "__name__", "") or "").split(".")[0]
    return not _library(top)


def _container(value: Any) -> bool:
    """Whether ``value`` is a container `find` looks into: a dict, list or
    tuple, a module of the user's, or an instance of a user's class with a
    ``__dict__`` (a callable one too: its ``__call__`` is followed)."""
    if isinstance(value, (dict,) + _SEQUENCES):
        return True
    if isinstance(value, types.ModuleType):
        return _user_module(value)
    if isinstance(value, type):  # a user's class: ``Model.scale``
        return not _library(value.__module__)
    if isinstance(value, (type, np.ndarray, types.BuiltinFunctionType)
                  + _FUNCTIONS + _NUMBERS) or _wrapper(value):
        return False
    return ((type(getattr(value, "__dict__", None)) is dict or bool(_slots(type(value))))
            and (type(value).__module__ or "").split(".")[0] not in _LIBRARIES)


def _special_methods(cls: type) -> set[str]:
    """The special methods a user's class defines (``__getitem__``,
    ``__add__``, ``__iter__``, ...): Python calls them for ``obj[k]``,
    ``obj + x``, ``for v in obj``, so code names none of them."""
    return {name for klass in cls.__mro__ if not _library(klass.__module__)
            for name, value in vars(klass).items()
            if name[:2] == name[-2:] == "__" and name not in ("__init__", "__new__", "__del__")
            and isinstance(value, types.FunctionType)}


def _foreign_array(value: Any) -> bool:
    """Whether ``value`` is another library's array (it converts to one: a
    jax.Array, a torch tensor), not NumPy's or a number."""
    return hasattr(type(value), "__array__") and type(value) not in _TRACERS and \
        not isinstance(value, (np.ndarray, type, np.generic) + _NUMBERS)


def _wrapper(value: Any) -> bool:
    """Whether ``value`` wraps a function (``functools.wraps``, fastad's
    compiled functions), asked without trusting its ``__getattr__``."""
    try:
        return isinstance(getattr(value, "__wrapped__", None), Callable)
    except Exception:  # an object whose __getattr__ raises something else
        return False


def _slots(cls: type) -> set[str]:
    """The names of the ``__slots__`` of ``cls`` and its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    return names - {"__dict__", "__weakref__"}


def _class_attribute(cls: type, name: Any) -> Any:
    """``name`` as the instances of ``cls`` find it in their classes (not a
    method: those are followed as functions), or `_MISSING`."""
    for klass in cls.__mro__:
        if klass is object:
            break
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


# names by which code reaches attributes not named in it
_DYNAMIC_ACCESS = frozenset({"getattr", "hasattr", "vars", "__dict__", "attrgetter",
                             "__getattribute__"})


def _size(container: Any, lookups: dict[Any, Lookup]) -> tuple[Lookup, None, int]:
    """A member standing for ``container``'s number of items, bound by equality."""
    key = ("size", id(container))
    if key not in lookups:
        lookups[key] = Lookup(lambda name, c=container: len(c),
                              f"number of items of a {type(container).__name__}")
    return lookups[key], None, len(container)


def _members(container: Any, names: set[Any], lookups: dict[Any, Lookup]
             ) -> list[tuple[Any, Any, Any]]:
    """[(where, name, value)]: the attributes of an object or a module or the
    items of a dict the code names, or the items of a list or tuple.  An
    object's attribute found in its class (``scale = 2.0`` in the class
    body) lives in the class; the object's own ``__dict__`` is then bound to
    not hold it (`_MISSING`), so that setting it on the object retraces."""
    if isinstance(container, type):
        if container not in lookups:
            lookups[container] = _class_lookup(container)
        found = []
        for k in names:
            value = _class_attribute(container, k) if isinstance(k, str) else _MISSING
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, types.FunctionType):
                found.append((None, k, value))  # followed, not bound
            elif value is not _MISSING and not isinstance(value, property):
                found.append((lookups[container], k, value))
        return found
    if isinstance(container, _SEQUENCES):
        if len(container) > _MAX_ITEMS:
            _refuse(f"a {type(container).__name__} of {len(container)} items (more than "
                    f"{_MAX_ITEMS} are not followed)")
        found = [(container, i, v) for i, v in enumerate(container)]
        if not isinstance(container, tuple):  # ``for v in L`` after ``L.append(v)``
            found.append(_size(container, lookups))
        return found
    where = container if isinstance(container, dict) else getattr(container, "__dict__", None)
    if type(where) is not dict:
        where = {}  # an object with slots only
    slots = () if isinstance(container, (dict, types.ModuleType)) else _slots(type(container))
    found = []
    if not isinstance(container, types.ModuleType) and (
            isinstance(container, dict) or not names.isdisjoint(_DYNAMIC_ACCESS)):
        # every item of a dict (``d.values()``, ``d[k]`` of a computed key), and
        # every attribute of an object the code may reach by a computed name
        # (``getattr(m, "w" + str(i))``): the code's names do not tell which;
        # a new key or attribute (``d.get(k, 1.0)``, ``hasattr``) changes the size
        if len(where) <= _MAX_ITEMS:
            names = names | set(where)
        found.append(_size(where, lookups))
    for k in names:
        try:
            if k in where:
                found.append((where, k, where[k]))
                continue
        except TypeError:  # a key of a type the dict cannot compare
            continue
        if isinstance(container, (dict, types.ModuleType)) or not isinstance(k, str):
            continue
        if k in slots:
            key = ("slots", id(container))
            if key not in lookups:
                lookups[key] = Lookup(lambda name, obj=container: getattr(obj, name, _MISSING),
                                      f"attribute of a {type(container).__name__}",
                                      lambda name, value, obj=container: setattr(obj, name, value))
            found.append((lookups[key], k, getattr(container, k, _MISSING)))
            continue
        cls = type(container)
        value = _class_attribute(cls, k)
        if value is _MISSING:
            continue
        if isinstance(value, property):
            value = value.fget
        elif isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, types.FunctionType):
            found.append((None, k, value))  # followed, not bound
            continue
        found.append((where, k, _MISSING))
        if cls not in lookups:
            lookups[cls] = _class_lookup(cls)
        found.append((lookups[cls], k, value))
    return found


def _class_lookup(cls: type) -> Lookup:
    return Lookup(lambda name: _class_attribute(cls, name), f"attribute of class {cls.__name__}")


def find(fn: Callable[..., Any], arguments: Any = ()) -> Captures:
    """The bindings ``fn`` and the functions it reaches can read, also
    through the objects among the leaves of ``arguments`` (an argument
    ``model`` whose ``model.X`` the function reads: such an object is keyed
    by identity, so its attributes are state like a global object's)."""
    guarded, arrays, _ = _walk(fn, (), [leaf for leaf in pytree.flatten(arguments)[0]
                                        if _container(leaf)])
    if not guarded:
        return NONE
    return Captures(tuple(guarded.values()), arrays,
                    {k: digest(b.value) for k, b in arrays.items()})


def reachable(fn: Callable[..., Any], kinds: tuple[type, ...]) -> list[Any]:
    """The objects of ``kinds`` (random generators, `fastad.draws`) that
    ``fn`` can reach the way `find` walks: closures, globals, defaults,
    partial arguments, attributes and items."""
    return _walk(fn, kinds)[2]


def _walk(fn: Callable[..., Any], kinds: tuple[type, ...], roots: list[Any] = ()
          ) -> tuple[dict[tuple[int, Any], Binding], dict[int, Binding], list[Any]]:
    guarded: dict[tuple[int, Any], Binding] = {}
    arrays: dict[int, Binding] = {}
    seen: set[int] = set()
    names: set[Any] = set()  # attribute names, globals and constants the code uses
    containers: dict[int, tuple[Binding, int]] = {}  # id -> (its binding, depth)
    taken: set[tuple[int, Any]] = set()  # (id(where), name) of the members looked at
    collected: dict[int, Any] = {}  # objects of ``kinds``
    lookups: dict[Any, Lookup] = {}  # classes (and slotted objects) looked into
    todo = [fn]

    def take(b: Binding, depth: int) -> None:
        value = b.value
        if type(value) is WatchedArray:  # an enclosing trace watches it (`watching`)
            value = value.array
            b = Binding(b.where, b.name, value)
        elif type(value) in STAND_INS:  # (the same)
            value = value.target
            b = Binding(b.where, b.name, value)
        if kinds and isinstance(value, kinds):
            collected[id(value)] = value
        if isinstance(value, _SNAPSHOTS):  # ``FLAGS.add("b")``
            guarded.setdefault((id(b.where), b.name),
                               Binding(b.where, b.name, value, copy.copy(value)))
        elif _foreign_array(value):  # a jax.Array, a torch tensor: a constant of the tape
            guarded.setdefault((id(b.where), b.name),
                               Binding(b.where, b.name, value, np.array(value, copy=True)))
        elif isinstance(value, (np.ndarray,) + _NUMBERS):
            if isinstance(value, np.ndarray) and (value.dtype.kind not in "fc"
                                                  or type(value) is not np.ndarray):
                # an integer or boolean array is a constant of the tape; so is a
                # subclass's (np.memmap, np.matrix: not read by reference)
                b = Binding(b.where, b.name, value, np.array(value, copy=True))
            guarded.setdefault((id(b.where), b.name), b)
            if type(value) is np.ndarray and value.dtype.kind in "fc":
                arrays.setdefault(id(value), b)
        elif isinstance(value, _FUNCTIONS) or (callable(value) and _wrapper(value)):
            # (fastad's compiled functions and functools.wraps wrappers: the
            # function they wrap, whose own captures an enclosing trace reads)
            todo.append(value)
            guarded.setdefault((id(b.where), b.name), b)  # ``helper = other`` retraces
        elif _container(value):
            if depth >= _MAX_DEPTH:
                if id(value) not in containers:
                    _refuse(f"{b.describe()}, an object nested more than {_MAX_DEPTH} levels "
                            "deep in its closure or globals")
            else:
                containers.setdefault(id(value), (b, depth + 1))
        elif not isinstance(value, types.ModuleType):
            # any other object the code reads (a string choosing a path, a
            # library's callable object): rebinding it retraces
            guarded.setdefault((id(b.where), b.name), b)

    def follow(f: Any) -> None:
        wrapper, f = f, getattr(f, "__wrapped__", f)  # functools.wraps, fastad's own wrappers
        if f is not wrapper:  # (a class's special method found again on the next pass,
            seen.add(id(wrapper))  # a dataclass's __repr__: the walk must come to an end)
        if isinstance(f, functools_partial):
            if id(f) not in seen:
                seen.add(id(f))
                for b in _partial_arguments(f):
                    take(b, 0)
                todo.append(f.func)
            return
        if (_container(f) and not isinstance(f, (dict, list, tuple)) and callable(f)
                and not _library(type(f).__module__)):
            # a callable object: its ``__call__`` reads its attributes
            f = types.MethodType(type(f).__call__, f)
        if isinstance(f, types.MethodType):
            if _container(f.__self__):  # a bound method reads its object
                take(Binding({"self": f.__self__}, "self", f.__self__), 0)
            f = f.__func__
        if not isinstance(f, types.FunctionType) or id(f) in seen:
            return
        seen.add(id(f))
        bindings: list[Binding] = []
        if f.__closure__:
            for name, cell in zip(f.__code__.co_freevars, f.__closure__):
                try:
                    bindings.append(Binding(cell, name, cell.cell_contents))
                except ValueError:
                    continue
        if _library(f.__module__):
            # a library's wrapper (fastad.grad's, functools'): only the user's
            # functions it closes over are followed
            todo.extend(b.value for b in bindings if callable(b.value))
            return
        bindings += _defaults(f)
        for code in _code_objects(f.__code__):
            names.update(code.co_names)
            names.update(c for c in code.co_consts
                         if isinstance(c, (str, int)) and not isinstance(c, bool))
        module_globals = f.__globals__
        for name in _global_names(f.__code__):
            if name in module_globals:
                bindings.append(Binding(module_globals, name, module_globals[name]))
        for b in bindings:
            take(b, 0)

    for k, root in enumerate(roots):  # objects passed as arguments
        take(Binding({k: root}, k, root), 0)
    # Functions name attributes and keys, containers hold functions (methods):
    # look again until neither finds anything new.
    for _ in range(_MAX_PASSES):
        while todo:
            if len(seen) >= _MAX_FUNCTIONS:
                _refuse(f"state through more than {_MAX_FUNCTIONS} Python functions")
            follow(todo.pop())
        before = (len(taken), len(containers), len(seen))
        for b, depth in list(containers.values()):
            container = b.value
            # the binding holding it: rebinding the container retraces
            guarded.setdefault((id(b.where), b.name), b)
            if not isinstance(container, (dict, types.ModuleType) + _SEQUENCES):
                call = getattr(type(container), "__call__", None)
                if (isinstance(call, types.FunctionType) and id(call) not in seen
                        and not _library(call.__module__)):
                    todo.append(call)  # ``model(x)``: reads the object's attributes
                for n in names | _special_methods(type(container)):
                    method = getattr(type(container), n, None) if isinstance(n, str) else None
                    if isinstance(method, types.FunctionType) and id(method) not in seen:
                        todo.append(method)
            for where, name, value in _members(container, names, lookups):
                if where is None:  # a property's or static method's function
                    if id(value) not in seen:
                        todo.append(value)
                elif value is _MISSING:  # an attribute the object does not hold
                    guarded.setdefault((id(where), name), Binding(where, name, value))
                elif (id(where), name) not in taken:
                    taken.add((id(where), name))
                    take(Binding(where, name, value), depth)
        if not todo and before == (len(taken), len(containers), len(seen)):
            break
    else:  # (each pass finds something new: a bound, not an expected end)
        _refuse(f"state the walk finds more of in each of {_MAX_PASSES} passes")
    return guarded, arrays, list(collected.values())
