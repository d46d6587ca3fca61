"""A loop instruction run as a host call: its body built for the C VM.

The C VM runs most loops as its own LOOP instruction (`lower_loop`).  The
loops it cannot take (`lower_loop.refusal`: a body computing with integers
other than counting, a primitive the VM lacks, complex values, nesting past
the VM's bound), and
the loops the Numba generator leaves (`numba_loop_instr.refusal`), are
host calls (`fallback._Host`), which ask the
primitive for an implementation built for their backend
(`Primitive.host_impl`).  Here that is the body tape, optimized and built
once for the C VM.  A body that is one VM program (its own loops LOOP
instructions) runs all its steps in the VM (`Executable.run_steps`); a body
that is compiled segments with host calls runs from Python once per step.
A body the VM cannot take at all (integer values) runs on the reference
interpreter, as eagerly.

(Building a program of several consecutive steps, to divide the Python per
step, was measured on the RK4 fit: 2x faster steady gradients, 7x slower
first calls; the VM's own loop instruction is the way to both.)
"""
from __future__ import annotations

from functools import partial
from types import ModuleType
from typing import Any, Callable

import numpy as np

from ..primitives.loops import run_loop


def host_impl(params: dict[str, Any], backend: ModuleType | None) -> Callable[..., Any]:
    body = params["body"]
    if backend is not None and getattr(backend, "__name__", "").endswith("numba_backend"):
        from . import _load  # a loop Numba leaves to a host call: its steps on the VM
        backend = _load("c")
    if backend is None or not getattr(backend, "__name__", "").endswith("c_backend"):
        return partial(run_loop, **params)
    built = _built(body.tape, backend)
    if built is None:
        return partial(run_loop, **params)
    exe, tape = built
    dtypes = [tape.avals[s].dtype for s in tape.inputs]
    if hasattr(exe, "run_steps"):  # one program: the VM runs the steps too
        nc, nx = body.n_carry, body.n_xs

        def steps(carry: list[Any], xs: list[Any], consts: list[Any], ys: list[Any],
                  length: int) -> Any:
            def exact(values: list[Any], at: int) -> list[Any]:
                return [np.asarray(v, dtypes[at + i], order="C") for i, v in enumerate(values)]
            final = exe.run_steps(exact(carry, 0), exact(xs, nc), exact(consts, nc + nx),
                                  length, ys)
            if final is None:  # the shape rule refuses bodies with guards
                raise RuntimeError("a loop body's guard failed")
            return final
        return partial(run_loop, **params, steps=steps)

    def step(inputs: list[Any]) -> Any:  # exact dtypes: the VM's fast path takes them as they are
        return exe.run([np.asarray(v, d) for v, d in zip(inputs, dtypes)])
    return partial(run_loop, **params, step=step)


def _built(tape: Any, backend: ModuleType) -> tuple[Any, Any] | None:
    """``tape`` optimized and built for ``backend`` (segments around host
    calls where it needs them), and the tape built; None if the VM cannot
    run it."""
    from . import name_of, native_primitives
    from .fallback import build_segments, route
    from ..transforms.optimize import optimize
    tape = optimize(tape)
    module, segmented, _ = route(backend, tape)
    if module is not backend:  # values the VM does not hold (integers)
        return None
    try:
        # one program runs its steps in the VM, which copies each step's rows
        # into the arena: its inputs and outputs are not read in place
        exe = build_segments(tape, module, native_primitives(name_of(module))) \
            if segmented else module.build(tape, bind_inputs=False)
    except Exception:  # the VM refused it: the reference interpreter runs the loop
        return None
    return exe, tape
