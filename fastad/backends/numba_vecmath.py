"""NumPy's own loops for the transcendental functions, called from generated code.

Numba computes ``np.tanh(x[i])`` one element at a time with the C library's
scalar function; NumPy's inner loops for exp, log, tanh, sin, ... are
vectorized (SIMD, dispatched to this CPU at import) and several times faster
(tanh over 16,384 doubles: 28 us against 154 us).  The C VM calls those
loops (csrc/vecmath.c); the generated Numba code calls the same ones, on
whole arrays, so its results are NumPy's bits as the VM's are.

The loops' addresses come from the C extension (``_vm.loop_addresses()``,
what the VM installed at import).  They differ between processes, and a
generated kernel is cached on disk and reused by other processes
(`numba_cache`), so no address is ever written into the generated source or
its compiled code: the generator packs each loop's (function, data) pair
into the kernel's packed int64 constants (passed as an argument on every
call, made afresh by each process's generator), and the code calls through
`call_loop1` / `call_loop2`, intrinsics that turn the integers into a
function pointer.  Without the extension (or for a function or dtype with
no loop) the generator writes the code it always has (`loop_for` is None),
Numba's per-element functions.

Several threads may run one kernel at once: NumPy runs these loops without
the GIL, and they keep no state of their own.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.registry import registry
from ..core.tape import Instr
from ..transforms.analysis import is_weak
from .numba_tables import UFUNCS, _shape

try:
    from ._vm import loop_addresses as _loop_addresses
except ImportError:  # no C extension: the generated code keeps Numba's functions
    _loop_addresses = None

# The functions whose NumPy loops the generated code calls (by ufunc name).
# Not floor, ceil, rint, sqrt: Numba's are LLVM instructions that vectorize
# inside a fused loop, which a call per array would only split.
VECTOR_FUNCTIONS = frozenset({
    "exp", "exp2", "log", "log2", "log10", "log1p", "expm1", "cbrt", "sin", "cos", "tan",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
    "power", "arctan2", "hypot", "logaddexp"})


def _addresses() -> dict[tuple[str, str], tuple[int, int]]:
    if _loop_addresses is None:
        return {}
    return {key: value for key, value in _loop_addresses().items()
            if key[0] in VECTOR_FUNCTIONS}


# {(ufunc name, dtype name): (loop, data)}; tests empty it to generate the
# per-element code (a kernel generated meanwhile is another source, another
# cache entry)
LOOPS: dict[tuple[str, str], tuple[int, int]] = _addresses()


def loop_for(ufunc: str, dtype: np.dtype) -> tuple[int, int] | None:
    """The (loop, data) addresses of NumPy's loop of ``ufunc`` on ``dtype``, or None."""
    return LOOPS.get((ufunc, np.dtype(dtype).name))


# what a generated module imports to call them (`numba_source`)
IMPORT = "from fastad.backends.numba_vecmath import call_loop1, call_loop2"


class _VectorLoops:
    """The generator's part (mixed into `numba_codegen._Generator`) that
    computes an elementwise instruction over a whole array with NumPy's loop.
    Such an instruction neither starts nor joins a fused loop
    (`numba_loops._LoopFusion`): the loop before it stores its operand, the
    one after reads its result, and the call between runs over the array."""

    def vector_loop(self, ins: Instr) -> tuple[str, tuple[int, int]] | None:
        """(ufunc, addresses) when ``ins`` runs as one call of NumPy's loop:
        a function of `VECTOR_FUNCTIONS` with a loop for its dtype, computing
        an array whose operands are arrays of its shape and dtype, or scalars
        (read with a step of 0, as NumPy broadcasts them)."""
        aval = self.avals[ins.out]
        name = UFUNCS.get(registry[ins.prim])
        if name not in VECTOR_FUNCTIONS or aval.shape == () or aval.size == 0:
            return None
        for s in ins.ins:
            weak = s in self.tape.consts and is_weak(self.tape.consts[s])
            if not weak and self.avals[s].dtype != aval.dtype:
                return None
            if self.avals[s].shape != aval.shape and not self.is_scalar(s):
                return None
        addresses = loop_for(name, aval.dtype)
        return None if addresses is None else (name, addresses)

    def emit_vector_loop(self, ins: Instr, name: str, addresses: tuple[int, int]) -> None:
        aval, o = self.avals[ins.out], ins.out
        dt = aval.dtype
        table = self.loop_table(name, dt, addresses)
        operands = []
        for k, s in enumerate(ins.ins):
            if self.is_scalar(s):  # one element, read with a step of 0
                self.step.lines.append(f"u{o}_{k} = np.full(1, {self.ref(s, dt)}, np.{dt.name})")
                operands += [f"u{o}_{k}", "0"]
            else:
                operands += [self.flat(s), str(dt.itemsize)]
        out = None
        for s in ins.ins:  # a dying operand of the result's shape and dtype holds it
            if self.avals[s] == aval and self.dies_here(s, ins):
                self.alias(ins, s)  # NumPy's loops take an output that is an input
                out = self.flat(s)
                break
        if out is None:
            self.define_array(ins, f"np.empty({_shape(aval.shape)}, np.{dt.name})")
            out = self.flat(o)
        self.module_lines[IMPORT] = None
        self.step.lines.append(f"call_loop{len(ins.ins)}({table}[0], {table}[1], {aval.size}, "
                               f"{', '.join(operands)}, {out})")

    def loop_table(self, name: str, dtype: np.dtype, addresses: tuple[int, int]) -> str:
        """A local of two int64s, NumPy's loop of ``name`` on ``dtype`` and its
        data, sliced from the packed constants: an argument of every call, so
        the addresses are this process's, never part of the compiled code."""
        var = f"loop_{name}_{dtype.name}"
        if var not in self.vars:
            packed, part = self.pack(np.array(addresses, dtype=np.uint64).view(np.int64))
            self.add_var(var, None, False, np.dtype(np.int64), local=part, deps=(packed,))
        return self.read(var)


def _intrinsics() -> tuple[Any, Any]:
    """`call_loop1` and `call_loop2`.  A kernel cached on disk holds their
    compiled code: a change here must change `numba_source._FORMAT`."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    def call(context: Any, builder: Any, sig: Any, args: Any) -> None:
        """loop(args, &n, steps, data) with operands (array, step in bytes)
        and the output last (its own itemsize as its step)."""
        fn, data, n, *rest = args
        fn_t, data_t, n_t, *rest_t = sig.args
        intp = context.get_value_type(types.intp)
        i8p = ir.IntType(8).as_pointer()
        operands = []
        for k in range(0, len(rest) - 1, 2):
            array = context.make_array(rest_t[k])(context, builder, rest[k])
            operands.append((array.data, context.cast(builder, rest[k + 1], rest_t[k + 1],
                                                      types.intp)))
        out_t = rest_t[-1]
        out = context.make_array(out_t)(context, builder, rest[-1])
        operands.append((out.data, ir.Constant(intp, context.get_abi_sizeof(
            context.get_data_type(out_t.dtype)))))
        argv = cgutils.alloca_once(builder, i8p, size=len(operands))
        steps = cgutils.alloca_once(builder, intp, size=len(operands))
        for k, (ptr, step) in enumerate(operands):
            builder.store(builder.bitcast(ptr, i8p), builder.gep(argv, [ir.Constant(intp, k)]))
            builder.store(step, builder.gep(steps, [ir.Constant(intp, k)]))
        dims = cgutils.alloca_once(builder, intp)
        builder.store(context.cast(builder, n, n_t, types.intp), dims)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.as_pointer(), intp.as_pointer(),
                                               intp.as_pointer(), i8p])
        address = context.cast(builder, fn, fn_t, types.intp)
        loop = builder.inttoptr(address, fnty.as_pointer())
        builder.call(loop, [argv, dims, steps,
                            builder.inttoptr(context.cast(builder, data, data_t, types.intp),
                                             i8p)])

    def check(*operands: Any) -> None:
        arrays, integers = operands[3::2], operands[:3] + operands[4::2]
        if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
            raise TypeError("NumPy's loops take C-contiguous arrays here")
        if not all(isinstance(i, types.Integer) for i in integers):
            raise TypeError("addresses, counts and steps are integers")

    @intrinsic
    def call_loop1(typingctx: Any, fn: Any, data: Any, n: Any, x: Any, step: Any, out: Any):
        """out[:n] = f(x) by the loop at ``fn``: x read with ``step`` bytes
        between elements (0: one value broadcast); out is written contiguously."""
        check(fn, data, n, x, step, out)
        return types.void(fn, data, n, x, step, out), call

    @intrinsic
    def call_loop2(typingctx: Any, fn: Any, data: Any, n: Any, a: Any, step_a: Any, b: Any,
                   step_b: Any, out: Any):
        """out[:n] = f(a, b) by the loop at ``fn``, as `call_loop1`."""
        check(fn, data, n, a, step_a, b, step_b, out)
        return types.void(fn, data, n, a, step_a, b, step_b, out), call

    return call_loop1, call_loop2


try:
    call_loop1, call_loop2 = _intrinsics()
except ImportError:  # no Numba: no backend to call them
    call_loop1 = call_loop2 = None
