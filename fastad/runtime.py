"""JAX's runtime and introspection names, with their meaning on one CPU
device that computes in NumPy's dtypes, so that code written for JAX runs:

* ``config.update("jax_enable_x64", True)`` and the other ``jax_*`` flags
  are accepted (fastad is 64-bit already; a request for 32-bit defaults is
  refused with the way to get float32), ``enable_x64``;
* ``Array`` (an ndarray with JAX's methods, ``.at`` among them;
  ``isinstance(x, fa.Array)`` holds for arrays and traced values),
  ``devices``, ``device_count``, ``default_backend``, ``process_index``,
  ``clear_caches``;
* ``make_jaxpr`` (the traced tape, printed as a program), ``pure_callback``
  (a NumPy function called at every call of a compiled function),
  ``custom_gradient``, ``linear_transpose``, ``closure_convert``,
  ``named_call``, ``named_scope``, ``ensure_compile_time_eval``,
  ``checkpoint_policies``.
"""
from __future__ import annotations

import contextlib
import functools
import types
from typing import Any, Callable

import numpy as np

from .core import pytree
from .core.registry import registry
from .core.tracer import Tracer, bind
from .numpy._array_type import CPU as _CPU, Array, CpuDevice as _Device

__all__ = ["Array", "checkpoint_policies", "clear_caches", "closure_convert", "config",
           "custom_gradient", "default_backend", "device_count", "devices", "enable_x64",
           "ensure_compile_time_eval", "linear_transpose", "local_device_count",
           "local_devices", "make_jaxpr", "named_call", "named_scope", "process_count",
           "process_index", "pure_callback"]


# -- configuration ------------------------------------------------------------------
class _Config:
    """``jax.config``: flags are kept and read back; fastad's arrays are
    NumPy's, so ``jax_enable_x64`` is on and cannot be turned off."""

    def __init__(self) -> None:
        self.__dict__["_values"] = {"jax_enable_x64": True, "jax_platform_name": "cpu",
                                    "jax_platforms": "cpu", "jax_default_device": None}

    def update(self, name: str, value: Any) -> None:
        if name == "jax_enable_x64" and not value:
            raise ValueError("fastad computes in NumPy's dtypes (float64 unless the inputs "
                             "are float32): pass float32 arrays, or dtype=np.float32, for "
                             "32-bit results")
        if not name.startswith("jax_"):
            raise AttributeError(f"unknown configuration option {name!r}")
        self._values[name] = value

    def read(self, name: str) -> Any:
        return self._values.get(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("jax_"):
            return self._values.get(name, False)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(name, value)


config = _Config()


@contextlib.contextmanager
def enable_x64(new_val: bool = True) -> Any:
    """JAX's 64-bit context: fastad is 64-bit throughout."""
    if not new_val:
        config.update("jax_enable_x64", False)
    yield


# -- devices (Array: fastad.numpy's ndarray with JAX's methods) ----------------------
def devices(backend: Any = None) -> list[_Device]:
    return [_CPU]


local_devices = devices


def device_count(backend: Any = None) -> int:
    return 1


local_device_count = device_count


def default_backend() -> str:
    return "cpu"


def process_index(backend: Any = None) -> int:
    return 0


def process_count(backend: Any = None) -> int:
    return 1


def clear_caches() -> None:
    """Compiled functions keep their own caches (``g.cache_clear()``); nothing global."""


# -- transforms and introspection -----------------------------------------------------
def make_jaxpr(fun: Callable[..., Any], static_argnums: Any = (),
               return_shape: bool = False) -> Callable[..., Any]:
    """``jax.make_jaxpr``: the traced tape of ``fun`` at these arguments
    (printing it shows the program)."""
    from .api import make_tape
    statics = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    def traced(*args: Any, **kwargs: Any) -> Any:
        fixed = {k: args[k] for k in statics}
        rest = [a for k, a in enumerate(args) if k not in fixed]

        def bound(*xs: Any) -> Any:
            it = iter(xs)
            return fun(*(fixed[k] if k in fixed else next(it) for k in range(len(args))),
                       **kwargs)
        tape = make_tape(bound)(*rest)
        if return_shape:
            from .conventions import eval_shape
            return tape, eval_shape(bound, *rest)
        return tape
    return traced


def pure_callback(callback: Callable[..., Any], result_shape_dtypes: Any, *args: Any,
                  vmap_method: Any = None, **kwargs: Any) -> Any:
    """Call a NumPy function on the values of ``args``: under a trace a host
    call that runs on every call of the compiled function (and once per
    example under vmap).  It has no derivative (as in JAX: give it one with
    ``custom_jvp``/``custom_vjp``)."""
    leaves, tree = pytree.flatten(result_shape_dtypes)
    specs = [(tuple(s.shape), np.dtype(s.dtype)) for s in leaves]

    def host(*values: Any) -> Any:
        out = pytree.flatten(callback(*values, **kwargs))[0]
        if len(out) != len(specs) or any(np.shape(o) != s for o, (s, _) in zip(out, specs)):
            raise ValueError(f"pure_callback: {getattr(callback, '__name__', 'the callback')} "
                             f"returned shapes {[np.shape(o) for o in out]}, not the declared "
                             f"{[s for s, _ in specs]}")
        if len(specs) == 1:
            return np.asarray(out[0], dtype=specs[0][1])
        return np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in out])

    if not any(isinstance(a, Tracer) for a in pytree.flatten(args)[0]):
        flat = host(*args)
    else:
        flat = bind(_callback_primitive(host, callback), *args)
    if len(specs) == 1:
        return pytree.unflatten(tree, [flat])
    out, start = [], 0
    for shape, dtype in specs:
        size = int(np.prod(shape))
        out.append(flat[start:start + size].reshape(shape).astype(dtype))
        start += size
    return pytree.unflatten(tree, out)


def _callback_primitive(host: Callable[..., Any], callback: Callable[..., Any]) -> Any:
    from .custom_rules import _new_primitive
    from .transforms import batching
    prim = _new_primitive(callback, "pure_callback", host)
    prim.batch_rule = batching.per_example
    return prim


def custom_gradient(fun: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.custom_gradient``: ``fun(*args)`` returns ``(value, vjp_fn)``
    and ``vjp_fn(g)`` the cotangents of the arguments (one, or a tuple)."""
    from .custom_rules import custom_vjp

    @custom_vjp
    def wrapped(*args: Any) -> Any:
        return fun(*args)[0]

    def fwd(*args: Any) -> Any:
        return fun(*args)[0], args

    def bwd(args: Any, g: Any) -> Any:
        cts = fun(*args)[1](g)
        return cts if isinstance(cts, tuple) else (cts,)

    wrapped.defvjp(fwd, bwd)
    return functools.wraps(fun)(lambda *args: wrapped(*args))


def linear_transpose(fun: Callable[..., Any], *primals: Any,
                     reduce_axes: Any = ()) -> Callable[..., Any]:
    """The transpose of a linear ``fun`` (its VJP, the same at every point):
    a function of the output cotangent returning the inputs' as a tuple."""
    from .api import vjp
    _, pullback = vjp(fun, *[np.zeros(np.shape(p), np.result_type(p)) for p in primals])
    return lambda ct: tuple(pullback(ct))


def closure_convert(fun: Callable[..., Any], *example_args: Any) -> tuple[Callable[..., Any], list]:
    """``jax.closure_convert``: ``(converted, consts)`` with
    ``converted(*args, *consts) == fun(*args)``, ``consts`` the traced values
    ``fun`` closes over (a neural ODE's weights, an inner objective's
    parameters), so that code which runs ``fun`` on plain values (SciPy's
    solvers) can pass them as arguments.  ``fun`` is recorded once on the
    example arguments' values and the recording replayed; outside a trace,
    or closing over no traced value, ``converted`` calls ``fun`` and
    ``consts`` is empty.  A ``fun`` that branches on a traced value (a guard)
    cannot be replayed on others: TracingError."""
    from .core.errors import TracingError
    from .core.tracer import current_builder, recording, replay
    if current_builder() is None:
        return (lambda *args: fun(*args)), []
    leaves, in_tree = pytree.flatten(list(example_args))
    with recording(record_lines=False) as builder:
        inputs = [builder.new_input(np.asarray(v.value if isinstance(v, Tracer) else v))
                  for v in leaves]
        out_leaves, out_tree = pytree.flatten(fun(*pytree.unflatten(in_tree, inputs)))
        builder.tape.outputs = [builder.slot_of(v) for v in out_leaves]
    consts = list(builder.captures)
    if not consts:
        return (lambda *args: fun(*args)), []
    tape = builder.tape
    if any(registry[ins.prim].effect == "guard" for ins in tape.instrs):
        raise TracingError(
            f"{getattr(fun, '__qualname__', 'the function')} closes over traced values and "
            "branches on them or on its arguments (a Python if): pass the traced values as "
            "arguments, or write the branch with fastad.numpy.where")
    n = len(leaves)

    def converted(*args: Any) -> Any:
        arg_leaves = pytree.flatten(list(args[:len(args) - len(consts)]))[0]
        outs = replay(tape, [*arg_leaves[:n], *args[len(args) - len(consts):]])
        return pytree.unflatten(out_tree, outs)
    return converted, consts


def named_call(fun: Callable[..., Any], *, name: Any = None) -> Callable[..., Any]:
    return fun


@contextlib.contextmanager
def named_scope(name: str) -> Any:
    yield


@contextlib.contextmanager
def ensure_compile_time_eval() -> Any:
    """Operations on constants are computed when traced already."""
    yield


def _policy(*args: Any, **kwargs: Any) -> Any:
    return None


# JAX's rematerialization policies: fastad's `checkpoint` keeps every value
checkpoint_policies = types.SimpleNamespace(**{name: _policy for name in (
    "everything_saveable", "nothing_saveable", "dots_saveable", "checkpoint_dots",
    "dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims",
    "save_anything_except_these_names", "save_any_names_but_these", "save_only_these_names",
    "save_from_both_policies", "offload_dot_with_no_batch_dims", "save_and_offload_only_these_names")})
