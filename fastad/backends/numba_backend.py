"""The Numba backend: a tape becomes Python source, compiled by ``numba.njit``.

Why generate source rather than interpret: a tape of scalar instructions (a
Python loop over ``x[i]``, traced) is tens of thousands of one-flop
instructions.  As straight-line code over local variables each is one machine
instruction on a register: no dispatch, no arena traffic.

How a slot appears in the generated code:

  shape ()            a local scalar variable ``v12`` (or a literal, for a
                      constant); 0-d arrays never appear.
  any other shape     a C-contiguous array variable.  Several slots may share
                      one *buffer* (a reshape is a view; an update whose input
                      dies there is done in place), so the generator tracks
                      buffers and the last instruction that reads each.
  weak constants      Python ints and floats (NEP 50) take the float dtype of
                      the instruction that reads them, written as a literal
                      of that dtype.
  constant arrays     slices of one packed argument per dtype, so that the
                      generated source (and its hash) does not hold the data.

The adjoint of a gather, ``scatter_add(acc, k, g)`` chained thousands of
times, becomes ``acc[k] += g`` on one buffer: an update is done in place when
no slot of the updated buffer is read again and the code owns that buffer
(it is neither an input nor a constant).

This module is the backend's entry point (`build`, `generate`, `cached`) and
the `Executable` that calls a compiled kernel; the rest is in modules of one
job each:

  numba_tables    per-primitive templates (ufuncs, operators, reducers),
                  literals and Numba types
  numba_codegen   the generator's state: variables, buffers, the walk
  numba_emitters  one ``emit_*`` method per primitive, `EMITTERS`, `NOT_EMITTED`
  numba_loops     elementwise code fused into loops, gathers and scatters in them
  numba_loop_instr  a loop instruction as a ``for`` loop around its body's code
  numba_vecmath   NumPy's loops of the transcendental functions, called over arrays
  numba_products  small matrix products as loops (a jitted helper), not np.dot
  numba_source    the steps joined into parts and a kernel (the module's text)
  numba_cache     the disk cache of compiled kernels, and fork safety

The names other code reads from here (`EMITTERS`, `NOT_EMITTED`, `UFUNCS`,
`REAL_ONLY`, `HOST_CALLS`, `_modules`, ...) are re-exported.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import SignatureError
from ..core.registry import registry
from ..core.tape import Tape
from .numba_cache import _key, _load, _modules, cache_dir, numba
from .numba_codegen import _Generator
from .numba_emitters import EMITTERS, NOT_EMITTED
from .numba_loops import _sink_scalars
from .numba_source import _module_source
from .numba_tables import (HOST_CALLS, REAL_ONLY, REDUCERS, SCALAR_OPERATORS,  # noqa: F401
                           UFUNCS)

__all__ = ["available", "build", "generate", "cached", "Executable", "PART_LINES", "EMITTERS",
           "NOT_EMITTED", "HOST_CALLS", "REAL_ONLY", "UFUNCS", "REDUCERS", "SCALAR_OPERATORS",
           "cache_dir", "_modules", "_sink_scalars"]

available = numba is not None

PART_LINES = 2000  # lines per generated function; see the module docstring


def generate(tape: Tape, part_lines: int = PART_LINES) -> tuple[str, list[np.ndarray]]:
    """The source of a module whose ``kernel(*inputs, *packed)`` runs ``tape``.

    It returns the tuple of outputs; a tape with guards returns ``(ok, *outputs)``,
    ``ok`` False when a guard disagrees."""
    gen = _Generator(tape)
    steps = gen.generate()
    return _module_source(gen, steps, part_lines)


def cached(tape: Tape) -> bool:
    """Is ``tape`` compiled already, in this process or in the disk cache?"""
    key = _key(generate(tape, PART_LINES)[0])
    if key in _modules:
        return True
    try:
        return any((cache_dir() / "__pycache__").glob(f"fastad_{key}.*.nbi"))
    except OSError:  # an unreadable cache directory caches nothing
        return False


# -- the executable ------------------------------------------------------------------
class Executable:
    """A tape compiled by Numba; ``run(inputs)`` as every backend has it.

    The fast path hands the arguments to the kernel untouched: Numba checks
    dtype, dimension count, layout and writability against the kernel's one
    signature (raising TypeError), and ``run`` checks the shapes, which Numba
    does not know.  Anything else is converted once and the call retried.
    0-d outputs are NumPy scalars of their dtype."""

    def __init__(self, tape: Tape, source: str, packed: list[np.ndarray],
                 kernel: Callable[..., Any]) -> None:
        self.tape = tape
        self.source = source
        self.packed = tuple(packed)
        self.kernel = kernel
        self._in = [(tape.avals[s].shape, tape.avals[s].dtype) for s in tape.inputs]
        self._shapes = [shape or None for shape, _ in self._in]
        self._scalar_out = [(k, tape.avals[s].dtype.type) for k, s in enumerate(tape.outputs)
                            if tape.avals[s].shape == ()]
        self._guarded = any(registry[ins.prim].effect == "guard" for ins in tape.instrs)
        self.run = self._runner()

    def _coerce(self, k: int, value: Any) -> Any:
        shape, dtype = self._in[k]
        kinds = "b" if dtype.kind == "b" else "fiuc"  # a mask taken as data is a bool input
        if (isinstance(value, (bool, np.bool_)) and dtype.kind != "b"
                or np.asarray(value).dtype.kind not in kinds):
            raise SignatureError(f"input {k}: expected a {dtype.name} array of shape {shape}, "
                                 f"got {type(value).__name__}")
        arr = np.array(value, dtype=dtype, order="C")  # a private, writable copy
        if arr.shape != shape:
            raise SignatureError(f"input {k}: expected shape {shape}, got {arr.shape}")
        return dtype.type(arr[()]) if shape == () else arr

    def _slow_run(self, inputs: Sequence[Any]) -> list[Any] | None:
        """Converts what Numba's signature rejects, then runs."""
        if len(inputs) != len(self._in):
            raise SignatureError(f"expected {len(self._in)} inputs, got {len(inputs)}")
        args = [self._coerce(k, v) for k, v in enumerate(inputs)]
        return self._results(self.kernel(*args, *self.packed))

    def _results(self, result: tuple[Any, ...]) -> list[Any] | None:
        if self._guarded:
            if not result[0]:
                return None
            result = result[1:]
        outs = list(result)
        for k, scalar in self._scalar_out:  # NumPy scalars of the output's dtype
            outs[k] = scalar(outs[k])
        return outs

    def _runner(self) -> Callable[[Sequence[Any]], list[Any] | None]:
        """``run``, written out for this kernel's arity: a W4-sized call is
        dominated by Python overhead, which generic ``*args`` code doubles."""
        n = len(self._in)
        if n == 0:
            return self._slow_run
        names = [f"a{k}" for k in range(n)]
        packed = [f"p{k}" for k in range(len(self.packed))]
        checks = [f"{a}.shape != s{k}" for k, (a, shape) in enumerate(zip(names, self._shapes))
                  if shape is not None]
        scalars = dict(self._scalar_out)
        first = 1 if self._guarded else 0
        outs = [f"o{k}(r[{first + k}])" if k in scalars else f"r[{first + k}]"
                for k in range(len(self.tape.outputs))]
        finish = (["    if not r[0]:", "        return None"] if self._guarded else []) + [
            f"    return [{', '.join(outs)}]"]
        call = f"kernel({', '.join(names + packed)})"
        lines = ["def run(inputs):",
                 "    try:",
                 f"        {', '.join(names)}, = inputs"]
        if checks:
            lines += [f"        if {' or '.join(checks)}:", "            raise TypeError"]
        lines += [f"        r = {call}",
                  "    except (TypeError, AttributeError, ValueError):",
                  "        return slow(inputs)"] + finish
        # run_args(args, which): see `fastad.backends.reference.RunsArgs`.  It
        # calls the compiled entry point, skipping Numba's type dispatch, which
        # trusts its arguments' layout: hence the exact checks first.
        exact = " or ".join(f"type({a}) is not ndarray or {a}.shape != s{k} or {a}.strides != t{k}"
                            f" or ({a}.dtype is not d{k} and {a}.dtype != d{k})"
                            for k, a in enumerate(names))
        lines += ["def run_args(args, which):",
                  f"    if len(args) != {n}:",
                  "        return None",
                  f"    {', '.join(names)}, = args",
                  f"    if {exact}:",
                  "        return None",
                  f"    r = {call.replace('kernel(', 'entry(', 1)}"] + finish[:-1] + [
                  line for k, out in enumerate(outs)
                  for line in (f"    if which == {k}:", f"        return {out}")] + [finish[-1]]
        scope: dict[str, Any] = {"kernel": self.kernel, "slow": self._slow_run,
                                 "entry": _entry_point(self.kernel), "ndarray": np.ndarray}
        for k, (shape, dtype) in enumerate(self._in):
            scope[f"d{k}"], scope[f"t{k}"] = dtype, np.empty(shape, dtype).strides
        scope.update({f"p{k}": v for k, v in enumerate(self.packed)})
        scope.update({f"s{k}": shape for k, shape in enumerate(self._shapes)})
        scope.update({f"o{k}": scalar for k, scalar in self._scalar_out})
        exec("\n".join(lines), scope)  # noqa: S102 -- text made above from shapes only
        if all(shape is not None for shape in self._shapes):
            self.run_args = scope["run_args"]
        return scope["run"]

    def run_args(self, args: tuple[Any, ...], which: int) -> Any:
        """Replaced by the generated one for a kernel whose inputs are arrays."""
        return None

    def __str__(self) -> str:
        return self.source


def _entry_point(kernel: Any) -> Callable[..., Any]:
    """The compiled wrapper of the kernel's one signature (no type dispatch),
    or the kernel itself where this Numba does not expose it."""
    try:
        return kernel.overloads[kernel.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):
        return kernel


def build(tape: Tape) -> Executable:
    if numba is None:
        raise RuntimeError("the Numba backend needs numba: pip install numba")
    source, packed = generate(tape, PART_LINES)
    module = _load(source)
    return Executable(tape, source, packed, module.kernel)
