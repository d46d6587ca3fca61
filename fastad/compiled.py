"""Compiled functions: ``fastad.jit`` and ``fastad.compile``, and the
objects they return (`Jitted`, `CompiledGrad`): their methods, derived
computations (value, Hessian-vector products, batches) and pickling.  The
tracing, caching and signatures behind them are in `fastad.specializer` and
`fastad.signatures`.

Values that ``f`` closes over are captured as constants when it is traced:
changing them later does not change the compiled function (as with
``jax.jit``).
"""
from __future__ import annotations

import contextlib
import functools
import threading
import types
from typing import Any, Callable, Sequence

from . import batched, locks
from .api import grad, hessian, hvp, jacobian, value_and_grad
from .vectorizing import vmap
from .core.errors import SignatureError, TapeError
from .serialize import decode, dumps, encode, loads
from .signatures import Entry, any_tracer, checked_argnums
from .entries import take_shortcut
from .specializer import Specializer
from .numpy._array_type import as_arrays, given_arrays
from .core.tape import Tape


class _Inspectable:
    """What a compiled function shows of itself: its main computation's latest
    tape and program, and its cache."""

    _main: Specializer

    @property
    def tape(self) -> Tape:
        return _last(self._main).tape

    @property
    def program(self) -> Any:
        return _last(self._main).exe

    def cache_info(self) -> dict[str, Any]:
        return self._main.cache_info()

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        """Defined in a class body, a compiled function is a method, as a
        plain function (and ``jax.jit``'s) is: the instance is its first
        argument, keyed by value unless it is a pytree node (then its arrays
        are data), or marked static."""
        return self if obj is None else types.MethodType(self, obj)


class Jitted(_Inspectable):
    """``fastad.jit(f)``: f compiled per signature; any f, transformations included."""

    def __init__(self, fn: Callable[..., Any], static_argnums: Sequence[int] = (),
                 backend: str = "auto", max_traces: int | None = None,
                 check_nans: bool | None = None, reroll: bool = True,
                 exact_sums: bool = False, max_signatures: int | None = None,
                 static_argnames: Sequence[str] = ()) -> None:
        functools.update_wrapper(self, fn)
        # what a pickle of a function that has traced nothing rebuilds it from
        self._options = dict(static_argnums=static_argnums, backend=backend,
                             max_traces=max_traces, check_nans=check_nans, reroll=reroll,
                             exact_sums=exact_sums, max_signatures=max_signatures,
                             static_argnames=static_argnames)
        self._spec = Specializer(fn, "outputs", None, static_argnums, backend, eager=fn,
                                 max_traces=max_traces, check_nans=check_nans, reroll=reroll,
                                 exact_sums=exact_sums, max_signatures=max_signatures,
                                 static_argnames=static_argnames)
        self._main = self._spec
        self._batched: dict[Any, Jitted] = {}
        self._derivatives: dict[Any, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._spec(*args, **kwargs)

    def jacobian(self, *args: Any, sparse: bool = False, mode: str = "auto", argnums: int = 0,
                 **kwargs: Any) -> Any:
        """The Jacobian of f at ``args`` with respect to ``args[argnums]``, compiled.
        ``sparse=True``: a ``scipy.sparse.csr_matrix`` (out.size x x.size), its
        pattern and coloring found once per signature and kept here, the
        compressed product compiled (see `fastad.sparse`)."""
        if sparse:
            return self._sparse(argnums)("jacobian", args, kwargs, mode)
        return _lazily_in(self._derivatives, ("jacobian", argnums, mode), lambda: self._derived(
            jacobian(self._spec.fn, argnums, mode)))(*args, **kwargs)

    def hessian(self, *args: Any, sparse: bool = False, argnums: int = 0, **kwargs: Any) -> Any:
        """The Hessian of scalar f at ``args``, compiled (``sparse``: see `jacobian`)."""
        if sparse:
            return self._sparse(argnums)("hessian", args, kwargs)
        return _lazily_in(self._derivatives, ("hessian", argnums), lambda: self._derived(
            hessian(self._spec.fn, argnums)))(*args, **kwargs)

    def _sparse(self, argnums: int) -> Any:
        from .sparse import CompiledSparse
        return _lazily_in(self._derivatives, ("sparse", argnums), lambda: CompiledSparse(
            self._spec.fn, argnums, self._spec.split, self._derived))

    def __getstate__(self) -> dict[str, Any]:
        return {"class": "jit", "name": getattr(self, "__name__", "jitted"),
                "spec": self._spec.state(), "batched": _batched_state(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__name__ = self.__qualname__ = str(state["name"])
        self._spec = self._main = Specializer.from_state(state["spec"])
        self._batched = _batched_from_state(state.get("batched"))
        self._derivatives = {}

    def __reduce__(self) -> Any:
        return _reduced(self, "jit", self._spec.fn, [self._spec])

    def batch(self, *args: Any, in_axes: Any = 0, threads: int | None = None,
              chunk: int | None = None) -> Any:
        """The compiled ``vmap(f, in_axes)``: f over a batch of examples at once,
        split into chunks run on ``threads`` threads (None: os.cpu_count());
        bit-identical for any thread count (see `fastad.batched`)."""
        if any_tracer(args):  # traced: the compiled function's tape, batched
            return vmap(self, in_axes)(*args)
        return _batch_call(self, lambda axes: vmap(self._spec.fn, axes), args, in_axes, threads,
                           chunk)

    def _derived(self, fn: Callable[..., Any]) -> "Jitted":
        spec = self._spec
        if spec.fn is None:
            raise SignatureError("this compiled function was loaded from bytes without its "
                                 "Python function, so it cannot compile a new batch size")
        return Jitted(fn, tuple(spec.static_argnums), spec.backend_name, spec.max_traces,
                      reroll=spec.reroll, exact_sums=spec.exact_sums,
                      max_signatures=spec.max_signatures,
                      static_argnames=tuple(spec.static_argnames))


def _batch_call(owner: Any, vmapped: Callable[[Any], Callable[..., Any]], args: Sequence[Any],
                in_axes: Any, threads: int | None, chunk: int | None) -> Any:
    """``owner``'s compiled ``vmapped(axes)`` over a batch, chunk by chunk on threads;
    one compiled batched function per axes, kept (and pickled) with ``owner``."""
    moved, axes, count = batched.normalize_axes(args, in_axes)
    vjit = owner._batched.get(axes)
    if vjit is None:  # threads at once: one of them is kept (setdefault is atomic)
        vjit = owner._batched.setdefault(axes, owner._derived(vmapped(axes)))
    return batched.call(vjit, moved, axes, count, threads, chunk)


def _batched_state(owner: Any) -> list[Any]:
    return [(encode(axes), vjit.__getstate__()) for axes, vjit in owner._batched.items()]


def _batched_from_state(items: Any) -> dict[Any, "Jitted"]:
    out = {}
    for axes, state in items or ():
        axes = decode(axes)
        if not isinstance(axes, tuple) or any(ax not in (0, None) for ax in axes):
            raise TapeError(f"invalid batch axes {axes!r} in a saved compiled function")
        vjit = Jitted.__new__(Jitted)
        vjit.__setstate__(state)
        out[axes] = vjit
    return out


def _with_vector_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """hvp's vector comes last, after the positional arguments."""
    return functools.wraps(fn, updated=())(lambda *args, **kwargs: fn(*args, **kwargs))


def _last(spec: Specializer) -> Entry:
    last = spec.last
    if last is None:
        raise RuntimeError("the function has not been called yet, so nothing is compiled")
    return last


_lazy_lock = locks.Lock()  # what a compiled function makes when first asked for


def _lazily_in(table: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``table[key]``, made by ``make()`` the first time, once whatever the threads."""
    value = table.get(key)
    if value is None:
        with _lazy_lock:
            value = table.get(key)
            if value is None:
                value = table[key] = make()
    return value


def _lazily(owner: Any, name: str, make: Callable[[], Any]) -> Any:
    """``owner.name``, made by ``make()`` the first time, once whatever the threads."""
    value = getattr(owner, name)
    if value is None:
        with _lazy_lock:
            value = getattr(owner, name)
            if value is None:
                value = make()
                setattr(owner, name, value)
    return value


def _differentiated_by_position(fn: Callable[..., Any], argnums: Any, args: tuple[Any, ...],
                                kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with the differentiated arguments passed by
    keyword (``g(x=w)``) moved to their positions, with the positional
    parameters before them, as ``fn``'s signature binds them; a TypeError
    naming the parameter when one is missing or cannot be passed by position."""
    last = argnums if isinstance(argnums, int) else max(argnums, default=-1)
    if last < len(args):
        return args, kwargs
    import inspect
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    args, kwargs = list(args), dict(kwargs)
    for i in range(len(args), last + 1):
        param = params[i] if i < len(params) else None
        if param is None or param.kind not in (param.POSITIONAL_ONLY,
                                               param.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"{getattr(fn, '__qualname__', 'the function')}: argument {i} is "
                            "differentiated (argnums) but the call passes no argument there")
        if param.name in kwargs:
            args.append(kwargs.pop(param.name))
        elif param.default is not param.empty:
            args.append(param.default)
        else:
            raise TypeError(f"{getattr(fn, '__qualname__', 'the function')}: missing the "
                            f"differentiated argument {param.name!r} (argnums {i})")
    return tuple(args), kwargs


class CompiledGrad(_Inspectable):
    """``fastad.compile(f)``: the gradient of scalar ``f``, compiled.

    ``g(x)`` is the gradient, ``g.value_and_grad(x)`` the pair (what
    ``scipy.optimize.minimize(..., jac=True)`` wants), ``g.value(x)`` the value.
    With ``has_aux=True`` f returns ``(value, aux)``: ``g(x)`` is
    ``(grad, aux)``, ``g.value_and_grad(x)`` is ``((value, aux), grad)`` and
    ``g.value(x)`` is ``(value, aux)``.  Each takes keyword arguments too
    (``g(w, scale=3.0)``), which are not differentiated.  Called on traced
    values (inside ``fastad.grad``, ``vmap``, ``jit``, ...), each is inlined:
    the eager transformation it compiles runs on them.
    """

    def __init__(self, fn: Callable[..., Any], argnums: int | Sequence[int] = 0,
                 static_argnums: Sequence[int] = (), backend: str = "auto",
                 max_traces: int | None = None, strong_zero: bool = False,
                 reroll: bool = True, exact_sums: bool = False,
                 max_signatures: int | None = None, has_aux: bool = False,
                 static_argnames: Sequence[str] = (), check_nans: bool | None = None) -> None:
        functools.update_wrapper(self, fn)
        self._options = dict(argnums=argnums, static_argnums=static_argnums, backend=backend,
                             max_traces=max_traces, strong_zero=strong_zero, reroll=reroll,
                             exact_sums=exact_sums, max_signatures=max_signatures,
                             has_aux=has_aux, static_argnames=static_argnames,
                             check_nans=check_nans)
        self._check_nans = check_nans
        self._reroll = reroll
        self._exact_sums = exact_sums
        self.fn = fn
        self.argnums = argnums
        self.has_aux = has_aux
        # do the shortcuts' first outputs answer ``g(x)`` and the pair?
        self._fast = argnums == 0 and not has_aux
        wrt = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        self._backend = backend

        self._max_traces = max_traces
        kind = ("value_and_grad_strong_zero" if strong_zero else "value_and_grad"
                ) + ("_aux" if has_aux else "")
        self._vg = Specializer(fn, kind, argnums, static_argnums, backend,
                               eager=value_and_grad(fn, argnums, strong_zero, has_aux),
                               max_traces=max_traces, reroll=reroll, exact_sums=exact_sums,
                               max_signatures=max_signatures, static_argnames=static_argnames,
                               check_nans=check_nans)
        if any(i in self._vg.static_argnums for i in wrt):
            raise ValueError("an argument cannot be both differentiated and static")
        self._static = tuple(self._vg.static_argnums)
        self._static_names = tuple(self._vg.static_argnames)
        self._max_signatures = self._vg.max_signatures
        self._main = self._vg
        self._value: Specializer | None = None
        self._hvp: Jitted | None = None
        self._hessian: Jitted | None = None
        self._sparse: Any = None
        self._batched: dict[Any, Jitted] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args, kwargs = _differentiated_by_position(self.fn, self.argnums, args, kwargs)
        # argnums 0: the one gradient is the output as the shortcut returns it
        if not kwargs and self._fast:
            grad = take_shortcut(self._vg.grads_run_args, args, 0)
            if grad is not None:
                return grad
        value, grad = self._vg.general(args, grads_only=True, kwargs=kwargs)
        out = (grad, value[1]) if self.has_aux else grad
        return as_arrays(out) if given_arrays(args) else out

    def value_and_grad(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if kwargs:
            args, kwargs = _differentiated_by_position(self.fn, self.argnums, args, kwargs)
        if not kwargs and self._fast:
            outs = take_shortcut(self._vg.full_run_args, args, -1)
            if outs is not None:
                return outs[0], outs[1]
        out = self._vg.general(args, kwargs=kwargs)
        return as_arrays(out) if given_arrays(args) else out

    def value(self, *args: Any, **kwargs: Any) -> Any:
        spec = self._value
        if spec is None:
            spec = _lazily(self, "_value", lambda: Specializer(
                self.fn, "outputs" if self.has_aux else "value", None, self._static,
                self._backend, eager=self.fn, max_traces=self._max_traces, reroll=self._reroll,
                exact_sums=self._exact_sums, max_signatures=self._max_signatures,
                static_argnames=self._static_names, check_nans=self._check_nans))
        if not kwargs and not self.has_aux:
            value = take_shortcut(spec.full_run_args, args, 0)
            if value is not None:
                return value
        out = spec.general(args, kwargs=kwargs)
        return as_arrays(out) if given_arrays(args) else out

    def _scalar_fn(self) -> Callable[..., Any]:
        """f with its value alone (without aux)."""
        fn = self.fn
        if not self.has_aux or fn is None:
            return fn
        return functools.wraps(fn, updated=())(lambda *args, **kwargs: fn(*args, **kwargs)[0])

    def hvp(self, *args: Any, **kwargs: Any) -> Any:
        """``g.hvp(*args, v)``: Hessian-vector product, forward over reverse,
        without forming the Hessian."""
        return _lazily(self, "_hvp", lambda: self._derived(
            _with_vector_last(hvp(self._scalar_fn(), self._argnum("hvp")))))(*args, **kwargs)

    def hessp(self, x: Any, p: Any, *args: Any, **kwargs: Any) -> Any:
        """``g.hvp`` in ``scipy.optimize.minimize``'s order, ``hessp(x, p, *args)``,
        so that ``minimize(f, x0, args=args, jac=g, hessp=g.hessp)`` works."""
        return self.hvp(x, *args, p, **kwargs)

    def hessian(self, *args: Any, sparse: bool = False, **kwargs: Any) -> Any:
        """The Hessian at ``args``, forward over reverse, compiled.
        ``sparse=True``: a ``scipy.sparse.csr_matrix``, from the Hessian's
        pattern and star coloring, found once per signature and kept here, and
        compiled Hessian-vector products with the coloring's seeds."""
        if sparse:
            from .sparse import CompiledSparse
            return _lazily(self, "_sparse", lambda: CompiledSparse(
                self._scalar_fn(), self._argnum("hessian"), self._vg.split, self._derived))(
                "hessian", args, kwargs)
        return _lazily(self, "_hessian", lambda: self._derived(
            hessian(self._scalar_fn(), self._argnum("hessian"))))(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"class": "compile", "name": getattr(self, "__name__", "compiled"),
                "argnums": self.argnums, "has_aux": self.has_aux, "vg": self._vg.state(),
                "value": self._value.state() if self._value is not None else None,
                "batched": _batched_state(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__name__ = self.__qualname__ = str(state["name"])
        self.fn = None
        self.argnums = checked_argnums(state["argnums"])
        self.has_aux = bool(state.get("has_aux", False))
        self._fast = self.argnums == 0 and not self.has_aux
        self._vg = self._main = Specializer.from_state(state["vg"])
        if self._vg.kind.endswith("_aux") != self.has_aux:
            raise TapeError("a saved compiled gradient's has_aux does not match its computation")
        self._value = Specializer.from_state(state["value"]) if state["value"] else None
        self._static = tuple(self._vg.static_argnums)
        self._static_names = tuple(self._vg.static_argnames)
        self._backend = self._vg.backend_name
        self._max_traces = self._vg.max_traces
        self._max_signatures = self._vg.max_signatures
        self._reroll = self._vg.reroll
        self._exact_sums = self._vg.exact_sums
        self._hvp = self._hessian = self._sparse = None
        self._batched = _batched_from_state(state.get("batched"))

    def __reduce__(self) -> Any:
        return _reduced(self, "compile", self.fn, [self._vg, self._value])

    def batch(self, *args: Any, in_axes: Any = 0, threads: int | None = None,
              chunk: int | None = None) -> Any:
        """Per-example gradients: the compiled ``vmap(grad(f), in_axes)``, split
        into chunks run on ``threads`` threads (None: os.cpu_count());
        bit-identical for any thread count (see `fastad.batched`).  With
        ``has_aux``, each example's ``(grad, aux)``, stacked."""
        if any_tracer(args):  # traced: the compiled gradient's tape, batched
            return vmap(self, in_axes)(*args)
        return _batch_call(self, lambda axes: vmap(grad(self.fn, self.argnums,
                                                        has_aux=self.has_aux), axes),
                           args, in_axes, threads, chunk)

    def _argnum(self, what: str) -> int:
        if not isinstance(self.argnums, int):
            raise NotImplementedError(f"{what} is defined for a single argnums")
        return self.argnums

    def _derived(self, fn: Callable[..., Any]) -> "Jitted":
        if self.fn is None:
            raise SignatureError("this compiled gradient was loaded from bytes without its "
                                 "Python function; only g(), value_and_grad() and value() "
                                 "of the saved signatures are available")
        return Jitted(fn, self._static, self._backend, self._max_traces, reroll=self._reroll,
                      exact_sums=self._exact_sums, max_signatures=self._max_signatures,
                      static_argnames=self._static_names)


def _reduced(obj: Any, kind: str, fn: Any, specs: list[Any]) -> Any:
    """What pickle stores of a compiled function: its tapes, read back by
    `fastad.loads` (data only, no code), once it has traced anything.  One
    that has traced nothing has no tapes to ship, so it is stored as its
    Python function and options, rebuilt by `_rebuilt` (pickle names the
    function; Dask's cloudpickle carries a local one by value): what
    ``client.map(fastad.compile(f), xs)`` sends to workers, which then trace
    it themselves; so is one whose tapes hold what data cannot say.
    ``fastad.dumps`` always stores tapes only."""
    traced = (any(spec is not None and spec.cache for spec in specs)
              or bool(getattr(obj, "_batched", None)))  # g.batch's programs
    options = getattr(obj, "_options", None)
    rebuilt = fn is not None and options is not None
    if traced or not rebuilt:
        try:
            return (loads, (dumps(obj),))
        except TypeError:
            # a tape holding what data cannot say (a guard's NumPy call on
            # traced values, as argsort's): the function, traced again there
            if not rebuilt:
                raise
    return (_rebuilt, (kind, fn, options))


def _rebuilt(kind: str, fn: Any, options: dict[str, Any]) -> Any:
    return (jit if kind == "jit" else compile)(fn, **options)


def jit(fn: Callable[..., Any] | None = None, *, static_argnums: Sequence[int] = (),
        backend: str = "auto", max_traces: int | None = None,
        check_nans: bool | None = None, reroll: bool = True, exact_sums: bool = False,
        max_signatures: int | None = None, static_argnames: Sequence[str] = (),
        donate_argnums: int | Sequence[int] = (), donate_argnames: str | Sequence[str] = (),
        keep_unused: bool = False, inline: bool = False) -> Any:
    """Compile ``fn``: trace it once per argument signature into a tape of
    primitive operations, optimize it, and run the tape (on the C VM, or code
    Numba compiles) on every later call, without running ``fn``'s Python.

    Args:
        fn: any function of arrays and numbers (``fastad.grad(f)`` included);
            usable as a decorator, ``@fastad.jit`` or ``@fastad.jit(...)``.
        static_argnums, static_argnames: arguments keyed by value whole
            (hashable; a new value traces again), for arguments that select
            code paths; a parameter named by either is static however passed.
        backend: ``"auto"`` (the C VM, moving to Numba once the calls have
            paid for its compile), ``"c"``, ``"numba"`` or ``"numpy"`` (the
            reference interpreter).
        max_traces: how many traces (paths through data-dependent branches)
            one signature may accumulate before fastad warns, naming the
            branch, and evaluates that signature eagerly (default 8).
        max_signatures: how many argument signatures stay compiled; beyond
            it the least recently used is dropped and traced again if it
            comes back (default 64, or FASTAD_MAX_SIGNATURES).
        check_nans: raise FloatingPointError naming the primitive, source
            line and operands of the first instruction that turned finite
            values into NaN or inf (or FASTAD_CHECK_NANS=1).
        reroll: turn scalar Python loops into vector code (their sums are then
            reassociated, unless ``exact_sums`` keeps summations unrolled) and
            time-stepping loops into loop instructions (`transforms.recurrence`).
        donate_argnums, donate_argnames, keep_unused, inline: ``jax.jit``'s,
            accepted so that code written for it runs: fastad never writes
            into its arguments' buffers, so donating one changes nothing; it
            drops unused arguments from nothing and inlines a jitted function
            called while tracing (see "Control flow") always.

    Returns:
        A `Jitted` callable returning what ``fn`` returns (NumPy arrays and
        scalars in ``fn``'s pytree structure); ``.tape``, ``.program``,
        ``.cache_info()`` show what was compiled; ``.batch(...)`` maps it
        over a batch on threads; it pickles (``fastad.dumps``).

    What is cached, keyed by what: arguments, positional and keyword, are
    pytrees. Float and complex leaves (arrays and numbers), Python or
    NumPy integers, and integer and boolean arrays are data: the signature
    holds their shapes and dtypes, not their values, so a minibatch loop's
    new labels or indices reuse the trace (an integer whose value the trace
    uses, as a ``range`` bound, a shape, ``x[mask]`` or ``np.unique``, is
    keyed by value from then on). Strings and other leaves are compiled in
    and keyed by value. A call with a new signature traces again; a call whose
    recorded branches (guards) disagree traces a new path, kept beside the
    others (``cache_info()`` lists them).

    Closures, globals, randomness: what ``fn`` reads besides its arguments
    is fixed when it is traced, as in ``jax.jit``: arrays and numbers from
    closures and globals are constants of the tape (pass data that changes
    as an argument). A trace that draws from ``np.random`` (or a generator
    in ``fn``'s closure, defaults or module) raises TracingError: pass the
    noise as an argument.

    Control flow: Python ``if``/``while`` on traced values record guards (see
    above); ``where``, ``clip``, ``maximum`` compile once. Called on traced
    values (``fastad.grad(fastad.jit(f))``, ``vmap``, an enclosing ``jit``),
    the jitted function replays its cached tape into the enclosing trace.

    Example::

        @fastad.jit
        def predict(w, X):
            return np.tanh(X @ w)

        predict(w, X)            # traced, compiled, run
        predict(w2, X2)          # same shapes: runs the compiled tape
    """
    _check_jax_options(donate_argnums, donate_argnames)
    if fn is None:
        return lambda f: Jitted(f, static_argnums, backend, max_traces, check_nans, reroll,
                                exact_sums, max_signatures, static_argnames)
    return Jitted(fn, static_argnums, backend, max_traces, check_nans, reroll, exact_sums,
                  max_signatures, static_argnames)


def _eager_jitted(self: Jitted, *args: Any, **kwargs: Any) -> Any:
    return self._spec.eager(*args, **kwargs)


def _eager_grad(self: CompiledGrad, *args: Any, **kwargs: Any) -> Any:
    value, grad = self._vg.eager(*args, **kwargs)
    return (grad, value[1]) if self.has_aux else grad


def _eager_value_and_grad(self: CompiledGrad, *args: Any, **kwargs: Any) -> Any:
    return self._vg.eager(*args, **kwargs)


# what `disable_jit` swaps in, and the methods it swaps out
_EAGER = {(Jitted, "__call__"): _eager_jitted, (CompiledGrad, "__call__"): _eager_grad,
          (CompiledGrad, "value_and_grad"): _eager_value_and_grad}
_COMPILED = {key: getattr(*key) for key in _EAGER}
_disabled = [0]  # how many disable_jit blocks are open
_disabled_lock = threading.Lock()


@contextlib.contextmanager
def disable_jit(disable: bool = True) -> Any:
    """JAX's debugging switch: inside ``with fastad.disable_jit():``, jitted
    functions run their Python as written (print, breakpoints, exceptions
    where they happen) and compiled gradients (``g(x)``,
    ``g.value_and_grad(x)``) are eager ``fastad.grad`` evaluations; nothing
    is traced for them or cached.  Global while open, as JAX's is: the
    methods of the classes are swapped, so calls outside it pay nothing."""
    if not disable:
        yield
        return
    with _disabled_lock:
        _disabled[0] += 1
        if _disabled[0] == 1:
            for (cls, name), method in _EAGER.items():
                setattr(cls, name, method)
    try:
        yield
    finally:
        with _disabled_lock:
            _disabled[0] -= 1
            if _disabled[0] == 0:
                for (cls, name), method in _COMPILED.items():
                    setattr(cls, name, method)


def _check_jax_options(donate_argnums: Any, donate_argnames: Any) -> None:
    """The donation arguments ``jax.jit`` takes, checked as JAX checks them."""
    nums = (donate_argnums,) if isinstance(donate_argnums, int) else donate_argnums
    if isinstance(nums, bool) or not all(isinstance(n, int) and not isinstance(n, bool)
                                         for n in nums):
        raise TypeError(f"jit: donate_argnums must be an int or a sequence of ints, got "
                        f"{donate_argnums!r}")
    names = (donate_argnames,) if isinstance(donate_argnames, str) else donate_argnames
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"jit: donate_argnames must be a str or a sequence of str, got "
                        f"{donate_argnames!r}")


def compile(fn: Callable[..., Any], argnums: int | Sequence[int] = 0,  # noqa: A001
            static_argnums: Sequence[int] = (), backend: str = "auto",
            max_traces: int | None = None, strong_zero: bool = False,
            reroll: bool = True, exact_sums: bool = False,
            max_signatures: int | None = None, has_aux: bool = False,
            static_argnames: Sequence[str] = (), check_nans: bool | None = None) -> CompiledGrad:
    """The compiled gradient of scalar-valued ``fn``: ``g = fastad.compile(fn)``
    traces ``fn``, differentiates the tape in reverse mode, optimizes it and
    runs it compiled (the C VM or Numba), so the 10,000th gradient in an
    optimization loop costs no Python interpreter time.

    Args:
        fn: a function returning a scalar (or one element of any shape).
        argnums: the argument (an int) or arguments (a tuple) to
            differentiate; the gradient has their pytree structure.
        static_argnums, static_argnames, backend, max_traces, max_signatures,
            reroll, exact_sums, check_nans: as in `fastad.jit`.
        strong_zero: a zero cotangent stays zero through infinite or NaN
            partial derivatives (``where(x > 0, sqrt(x), 0.0)`` at x <= 0);
            see `fastad.value_and_grad`.
        has_aux: ``fn`` returns ``(value, aux)`` (JAX's convention); aux's
            leaves are outputs of the tape, computed, not differentiated, and
            ``g(x)`` returns ``(grad, aux)``.

    Returns:
        A `CompiledGrad` ``g``: ``g(*args, **kwargs)`` is the gradient;
        ``g.value_and_grad(...)`` the pair (``scipy.optimize.minimize(...,
        jac=True)`` takes it); ``g.value(...)``; ``g.hvp(*args, v)`` and
        ``g.hessian(...)``; ``g.batch(..., in_axes=...)`` per-example
        gradients on threads; ``g.tape``, ``g.program``, ``g.cache_info()``.
        Keyword arguments are passed to ``fn`` and not differentiated.

    Caching (signatures, guards, integers as data), closures, randomness and
    control flow follow `fastad.jit`. Called on traced values
    (``fastad.grad(g)``, inside another compiled function), ``g`` replays its
    gradient tape into the enclosing trace, so transforms compose.

    Example::

        def loss(w, X, y):
            return np.mean((X @ w - y) ** 2)

        g = fastad.compile(loss)
        for step in range(1000):
            w -= 0.1 * g(w, X, y)            # compiled after the first call
        scipy.optimize.minimize(g.value_and_grad, w0, args=(X, y), jac=True)
    """
    return CompiledGrad(fn, argnums, static_argnums, backend, max_traces, strong_zero, reroll,
                        exact_sums, max_signatures, has_aux, static_argnames, check_nans)
