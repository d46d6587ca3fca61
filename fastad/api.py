"""The public API: eager transformations (grad, vjp, ...) and tape inspection.

Every transformation records a tape with concrete values.  Called on plain
arrays, it returns those values.  Called on traced values (inside another
transformation, or inside a function being compiled), it replays its tape
into the enclosing trace, so transformations nest: ``grad(grad(f))``,
``jit(grad(f))``.
"""
from __future__ import annotations

import functools
import gc
import math
from typing import Any, Callable, Sequence

import numpy as np

from .core import pytree
from .core.arrays import plain_array
from .core.tape import Tape
from .core.tracer import Tracer, replay
from .data_arguments import Lending, WroteIntoData
from .recorded import Aux, Recorded, _owned, differentiable_leaf, finish, record, tape_of
from .transforms.reverse import backward
from .tree_jacobian import is_array, tree_jacobian
from .numpy._array_type import arrays_out, as_arrays, given_arrays

ArgNums = int | Sequence[int]


def _argnums_tuple(argnums: ArgNums, nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -nargs <= i < nargs:
            raise TypeError(f"argnums={argnums!r} but the function was called with {nargs} "
                            "positional arguments")
    return tuple(i % nargs for i in nums)



class NotScalarOutput(TypeError):
    """``grad`` of a function whose output has more than one element."""


def _scalar_output(rec: Recorded, name: str) -> tuple[Any, Any, tuple[int, ...], np.dtype]:
    """The one scalar output (a tracer or a constant), its value, shape and dtype."""
    if len(rec.out_leaves) != 1:
        raise NotScalarOutput(f"{name} requires a function returning one scalar, got a "
                              f"{len(rec.out_leaves)}-leaf structure")
    out = rec.out_leaves[0]
    value = out.value if isinstance(out, Tracer) else out
    shape = value.shape if isinstance(value, (np.ndarray, np.generic)) else np.shape(value)
    if math.prod(shape) != 1:  # one element of any shape is a scalar, as in autograd
        raise NotScalarOutput(f"{name} requires a scalar output, got shape {shape}; use "
                              "fastad.vjp or fastad.jacobian for non-scalar outputs")
    dtype = value.dtype if isinstance(value, (np.ndarray, np.generic)) else np.result_type(value)
    if dtype.kind == "c":
        raise TypeError(f"{name} requires a real-valued output, got {dtype}: the gradient of a "
                        "complex-valued function is not defined (it need not be holomorphic); "
                        "differentiate a real function of it (abs(f)**2, real(f)), or use "
                        "fastad.vjp / fastad.jvp / fastad.jacobian")
    if dtype.kind != "f":
        raise TypeError(f"{name} requires a real floating-point output, got {dtype}")
    return out, value, shape, dtype


def gradient_of_scalar(rec: Recorded, name: str, strong_zero: bool = False,
                       once: bool = False) -> list[Any]:
    """Record the reverse sweep seeded with 1 at the scalar output; the value
    followed by the cotangent of every input leaf (``once``: see `backward`)."""
    out = rec.out_leaves[0] if len(rec.out_leaves) == 1 else None
    value = out.value if type(out) is Tracer else None
    if type(value) is np.float64 or type(value) is np.float32:  # a loss: checked at once
        seed = np.array(1, value.dtype)
    else:
        out, value, shape, dtype = _scalar_output(rec, name)
        seed = np.array(1, dtype) if shape == () else np.ones(shape, dtype)
    nested = rec.builder.captures or rec.outer_traced
    grads = backward(rec.builder, len(rec.builder.tape.instrs), [out], [seed], rec.inputs,
                     strong_zero, once, plain=once and not nested)
    return [out] + [_match_dtype(g, x) for g, x in zip(grads, rec.inputs)]


def _match_dtype(g: Any, x: Tracer) -> Any:
    if type(g) is np.ndarray and g.dtype == x.dtype:  # (a plain sweep's cotangent)
        return g
    from . import numpy as fnp
    return fnp.astype(g, x.dtype) if fnp.result_dtype(g) != x.dtype else g


def unpack_grads(in_trees: Sequence[Any], argnums: ArgNums, leaves: list[Any]) -> Any:
    """Cotangent leaves regrouped into the differentiated arguments' pytrees."""
    if type(argnums) is int and in_trees[0] is pytree.LEAF:  # grad(f)(x) of one array
        return leaves[0]
    out, k = [], 0
    for tree in in_trees:
        n = pytree.num_leaves(tree)
        out.append(pytree.unflatten(tree, leaves[k:k + n]))
        k += n
    return out[0] if isinstance(argnums, int) else tuple(out)




def value_and_grad(f: Callable[..., Any], argnums: ArgNums = 0, strong_zero: bool = False,
                   has_aux: bool = False, holomorphic: bool = False, *,
                   argnum: ArgNums | None = None) -> Callable[..., Any]:
    """``f``'s value and its gradient w.r.t. ``args[argnums]`` (f returns a scalar;
    ``argnum=``, autograd's name, is the same).

    ``strong_zero=True``: a zero cotangent stays zero through infinite or NaN
    partial derivatives, so the branch ``where`` did not take cannot turn the
    gradient into NaN (``where(x > 0, sqrt(x), 0.0)`` at x <= 0).

    ``has_aux=True`` (JAX's convention): f returns ``(value, aux)``, aux any
    pytree that is not differentiated; the result is ``((value, aux), grad)``.
    Keyword arguments are passed to f and not differentiated.

    ``holomorphic=True`` (JAX's): complex inputs and a complex value of a
    holomorphic f; the gradient is the complex derivative f'(z).
    """
    argnums = argnums if argnum is None else argnum
    if holomorphic:
        return _holomorphic(f, argnums, strong_zero, has_aux)

    @functools.wraps(f, updated=())
    def value_and_grad_f(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        # The trace's objects hold no cycles: they go by their reference counts
        # when `call` returns.  With the collector on after the recording, the
        # first allocation would scan them all while they are still alive.
        collecting = gc.isenabled()
        gc.disable()
        try:
            out = call(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()
        # given jax.Array's, Arrays (jax.grad(f)(x).block_until_ready())
        return as_arrays(out) if given_arrays(args) else out

    lending = Lending(f)  # whether f's data arguments are read in place

    def call(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        nums = _argnums_tuple(argnums, len(args))
        fk = functools.partial(f, **kwargs) if kwargs else f
        aux = Aux(fk, "value_and_grad") if has_aux else None
        def sweep(r: Recorded) -> list[Any]:
            return gradient_of_scalar(r, "grad", strong_zero, once=True)
        lends = lending.lends(nums)
        try:
            rec, results = record(fk, args, nums, sweep, drop_unread=True, lends=bool(lends),
                                  watch=lends is None, aux=aux)
        except WroteIntoData:
            lending.learn(nums, False)
            rec, results = record(fk, args, nums, sweep, drop_unread=True, aux=aux)
        if lends is None:
            lending.learn(nums, not rec.wrote_data)
        n = len(results)
        values = finish(rec, results + (aux.traced() if aux else []))
        grads = unpack_grads(rec.in_trees, argnums, values[1:n])
        if aux:
            return (values[0], aux.rebuild(values[n:], rec.lent_views)), grads
        return values[0], grads
    return value_and_grad_f


def _holomorphic(f: Callable[..., Any], argnums: ArgNums, strong_zero: bool, has_aux: bool
                 ) -> Callable[..., Any]:
    """`value_and_grad` with ``holomorphic=True``: the gradient of f's real
    part, which under fastad's convention for complex inputs (d/dx - i d/dy)
    is f'(z) by the Cauchy-Riemann equations; f's own value rides as aux."""
    def real_part(*args: Any, **kwargs: Any) -> Any:
        out = f(*args, **kwargs)
        value, aux = out if has_aux else (out, None)
        if not np.iscomplexobj(value.value if isinstance(value, Tracer) else value):
            raise TypeError("grad with holomorphic=True requires a complex value; "
                            f"{getattr(f, '__name__', 'f')} returned a real one")
        return value.real, (value, aux)
    inner = value_and_grad(real_part, argnums, strong_zero, has_aux=True)

    @functools.wraps(f, updated=())
    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        for k in _argnums_tuple(argnums, len(args)):
            if not all(np.iscomplexobj(leaf) for leaf in pytree.flatten(args[k])[0]):
                raise TypeError(f"grad with holomorphic=True requires complex inputs; "
                                f"argument {k} is real")
        (_, (value, aux)), g = inner(*args, **kwargs)
        return ((value, aux) if has_aux else value), g
    return value_and_grad_f


def grad(f: Callable[..., Any], argnums: ArgNums = 0, strong_zero: bool = False,
         has_aux: bool = False, holomorphic: bool = False, *,
         argnum: ArgNums | None = None) -> Callable[..., Any]:
    """The gradient of scalar-valued ``f``, eager: ``fastad.grad(f)(*args)``
    runs ``f`` on traced values and its reverse sweep on every call, as
    autograd's ``grad`` does (for a function called many times with arrays
    of the same shapes, `fastad.compile` is the compiled equivalent).

    Args:
        f: a function returning a scalar (or one element of any shape).
        argnums: the argument (an int) or arguments (a tuple) to
            differentiate; each is a pytree (tuples, lists, dicts,
            namedtuples) of float arrays and numbers, and its gradient has
            its structure. Other arguments, and keyword arguments, are passed
            through undifferentiated.
        strong_zero: see `value_and_grad`.
        has_aux: ``f`` returns ``(value, aux)``; the result is ``(grad, aux)``.
        holomorphic: ``f`` is holomorphic in complex arguments; the result is
            the complex derivative f'(z) (JAX's argument).

    Anything Python does works, since ``f`` runs on every call: branches,
    loops, closures, ``np.random``. Gradients of gradients (``grad(grad(f))``),
    ``jvp``/``vmap`` of gradients and gradients of compiled functions compose.

    Example::

        def f(x):
            return np.sum(np.sin(x) * x ** 2)

        fastad.grad(f)(np.linspace(0, 1, 5))
        fastad.grad(fastad.grad(lambda t: np.sin(t) ** 2))(0.3)
    """
    vg = value_and_grad(f, argnums if argnum is None else argnum, strong_zero, has_aux,
                        holomorphic)

    @functools.wraps(f, updated=())
    def grad_f(*args: Any, **kwargs: Any) -> Any:
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return grad_f


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Any:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` returns one cotangent per primal.
    ``has_aux=True``: f returns ``(out, aux)`` and the result is ``(out, vjp_fn, aux)``."""
    from .transforms.reverse import vjp_tape
    nums = tuple(range(len(primals)))
    aux = Aux(f, "vjp") if has_aux else None
    rec, _ = record(f, primals, nums, aux=aux)
    tape = rec.builder.tape
    n = len(rec.out_leaves)
    values = finish(rec, list(rec.out_leaves) + (aux.traced() if aux else []))
    tape.outputs = [rec.builder.slot_of(v) for v in rec.out_leaves]
    out = pytree.unflatten(rec.out_tree, values[:n])
    reverse = vjp_tape(tape, wrt=list(range(len(rec.inputs))),
                       examples=[rec.builder.values[s] for s in tape.inputs])
    outer_inputs = list(rec.outer_leaves) + list(rec.builder.captures)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        cts, tree = pytree.flatten(cotangent)
        if tree != rec.out_tree:
            raise TypeError("vjp_fn: the cotangent must have the structure of f's output")
        cts = [_cotangent_like(c, v) for c, v in zip(cts, rec.out_leaves)]
        grads = replay(reverse, outer_inputs + cts)
        grads = [_owned(g) for g in grads[len(tape.outputs):]]
        return unpack_grads(rec.in_trees, nums, grads)
    if given_arrays(primals):
        out, vjp_fn = as_arrays(out), arrays_out(vjp_fn, always=True)
    if aux:
        return out, vjp_fn, aux.rebuild(values[n:])
    return out, vjp_fn


def _cotangent_like(ct: Any, out: Any, what: str = "cotangent", of: str = "an output") -> Any:
    """``ct`` as the (co)tangent of ``out``: of its shape and dtype."""
    value = out.value if isinstance(out, Tracer) else out
    dtype = np.result_type(value)
    if not isinstance(ct, Tracer):
        ct = np.asarray(plain_array(ct, what), dtype=dtype)
    elif ct.dtype != dtype:  # traced as a plain one is converted (a complex one's real part)
        from . import numpy as fnp
        ct = fnp.astype(fnp.real(ct) if dtype.kind != "c" else ct, dtype)
    if tuple(np.shape(ct)) != np.shape(value):
        raise ValueError(f"{what} of shape {tuple(np.shape(ct))} for {of} of shape "
                         f"{np.shape(value)}")
    return ct


@arrays_out
def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False) -> Any:
    """Forward mode: ``(f(*primals), J @ tangents)``.  ``has_aux=True``: f
    returns ``(out, aux)`` and the result is ``(out, J @ tangents, aux)``."""
    from .transforms.forward import forward
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    nums = tuple(range(len(primals)))

    def sweep(rec: Recorded) -> list[Any]:
        flat_t = []
        for i, (p, t) in enumerate(zip(primals, tangents)):
            leaves_p, tree_p = pytree.flatten(p)
            leaves_t, tree_t = pytree.flatten(t)
            if tree_p != tree_t:
                raise TypeError(f"jvp: tangent {i} does not have the structure of primal {i}")
            flat_t += leaves_t
        flat_t = [_cotangent_like(differentiable_leaf(t, "tangent"), x, "tangent", "a primal")
                  for t, x in zip(flat_t, rec.inputs)]
        return forward(rec.builder, len(rec.builder.tape.instrs), rec.inputs, flat_t,
                       rec.out_leaves)

    aux = Aux(f, "jvp") if has_aux else None
    rec, out_tangents = record(f, primals, nums, sweep, aux=aux)
    n = len(rec.out_leaves)
    values = finish(rec, list(rec.out_leaves) + list(out_tangents)
                    + (aux.traced() if aux else []))
    out = pytree.unflatten(rec.out_tree, values[:n])
    tangent = pytree.unflatten(rec.out_tree, values[n:2 * n])
    if aux:
        return out, tangent, aux.rebuild(values[2 * n:])
    return out, tangent


#: pass counts further apart than this decide alone: neither batched pass
#: costs this many times the other per seed on any function measured, so
#: ``auto`` does not build the other mode's tape to find out
DECISIVE_PASS_RATIO = 16


def auto_mode(n_in: int, n_out: int, costs: Callable[[], tuple[float, float]] | None = None
              ) -> str:
    """The mode ``jacobian(mode="auto")`` picks for n_in inputs and n_out outputs:
    by the pass counts when one exceeds the other more than
    `DECISIVE_PASS_RATIO` times, else the cheaper of ``costs()`` (the
    estimated forward and reverse cost; without it, the fewer passes)."""
    if n_in > DECISIVE_PASS_RATIO * n_out:
        return "rev"
    if n_out > DECISIVE_PASS_RATIO * n_in or costs is None:
        return "fwd" if n_in <= n_out else "rev"
    fwd_cost, rev_cost = costs()
    return "fwd" if fwd_cost <= rev_cost else "rev"


_PICKED: dict[Any, str] = {}  # cost estimates already made, by what they depend on
_PICKED_LIMIT = 256


def _picked_mode(tape: Tape, examples: list[Any], dynamic: list[bool], n_in: int,
                 n_out: int, built: dict[str, Tape]) -> str:
    """``auto_mode`` with the cost of each batched tape estimated from the
    transformed tapes (`transforms.cost`).  The estimate depends only on the
    tape's instructions, shapes and which inputs vary, so it is kept under
    those: an eager call of the same function does not build both tapes
    again.  Tapes built on the way are left in ``built``."""
    from .transforms import cost
    from .transforms.forward import jvp_tape
    from .transforms.reverse import vjp_tape

    folded = any(dynamic)  # traced into an enclosing function: seed-only work runs once
    key = (tuple((ins.prim, ins.ins, tape.avals[ins.out]) for ins in tape.instrs),
           tuple(tape.avals[s] for s in tape.inputs), tuple(tape.outputs), tuple(dynamic))

    def costs() -> tuple[float, float]:
        built["fwd"] = jvp_tape(tape, [0], examples)
        built["rev"] = vjp_tape(tape, [0], examples)
        weights = cost.COMPILED if folded else cost.EAGER
        wanted = [1] if folded else None  # eager replays every instruction, dead or not
        flags = dict(batched=[False] * len(dynamic) + [True], dynamic=list(dynamic) + [False],
                     folded=folded, weights=weights, wanted=wanted)
        return (cost.batched_cost(built["fwd"], size=n_in, **flags),
                cost.batched_cost(built["rev"], size=n_out, **flags))

    mode = _PICKED.get(key)
    if mode is None:
        mode = auto_mode(n_in, n_out, costs)
        if len(_PICKED) >= _PICKED_LIMIT:
            _PICKED.clear()
        _PICKED[key] = mode
    return mode


def jacobian(f: Callable[..., Any], argnums: int = 0, mode: str = "auto",
             sparse: bool = False, *, argnum: int | None = None) -> Callable[..., Any]:
    """The Jacobian of array-valued ``f`` w.r.t. the array ``args[argnums]``,
    of shape ``out.shape + x.shape``.

    ``sparse=True``: a ``scipy.sparse.csr_matrix`` of shape (out.size, x.size)
    instead, from the sparsity pattern detected on f's tape, colored, and one
    batched pass per color (``mode`` "auto" picks columns or rows, whichever
    needs fewer colors; see `fastad.sparse`).

    ``mode="rev"`` pulls back every row of the identity, ``"fwd"`` pushes
    forward every column.  Either way it is one batched pass: the
    transformed tape is replayed once on the whole identity matrix as a
    batch of seeds.  ``"auto"`` picks the mode whose batched tape is
    estimated to cost less (`fastad.transforms.cost`: per instruction, per
    multiply-add of its matrix products and per element of the rest, times
    the batch where it carries one; work on the seeds alone is free when the
    Jacobian is compiled, since it runs once at trace time).  When one pass
    count exceeds the other more than `DECISIVE_PASS_RATIO` times, the
    fewer passes win without building both tapes.  The pick is kept for
    later calls with the same tape structure.
    """
    argnums = argnums if argnum is None else argnum
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev', not {mode!r}")
    if sparse:
        from .sparse import derivatives
        return derivatives.jacobian(f, argnums, mode)
    from . import numpy as fnp
    from .transforms.batching import batch_replay
    from .transforms.forward import jvp_tape
    from .transforms.reverse import vjp_tape

    @functools.wraps(f, updated=())
    def jacobian_f(*args: Any, **kwargs: Any) -> Any:
        nums, several = _argnums_tuple(argnums, len(args)), not isinstance(argnums, int)
        try:
            if several or not is_array(args[nums[0]]):
                raise _TreeResult
            t = _JacobianTrace(f, argnums, args, kwargs)
        except _TreeResult:  # pytrees in or out: the flattened function's, cut into blocks
            return tree_jacobian(lambda g: jacobian(g, 0, mode), f, args, kwargs, nums, several)
        tape, x, out_shape, n_in, n_out, examples = (t.tape, t.x, t.out_shape, t.n_in,
                                                     t.n_out, t.examples)
        shared = [(v, False) for v in t.outer]
        built: dict[str, Tape] = {}
        chosen = mode if mode != "auto" else t.auto_mode(built)
        if chosen == "rev":
            seeds = np.eye(n_out, dtype=x.dtype).reshape((n_out,) + out_shape)
            pulled = built.get("rev") or vjp_tape(tape, [0], examples)
            jac, batched = batch_replay(pulled, shared + [(seeds, True)], n_out)[1]
            rows = jac if batched else fnp.broadcast_to(jac, (n_out,) + x.shape)
            out_dtype = tape.avals[tape.outputs[0]].dtype
            if out_dtype.kind == "f" and fnp.result_dtype(rows) != out_dtype:
                # f's dtype in either mode: the pulled-back rows are
                # cotangents of x, of x's dtype
                rows = fnp.astype(rows, out_dtype)
            return _owned(fnp.reshape(rows, out_shape + x.shape))
        seeds = np.eye(n_in, dtype=x.dtype).reshape((n_in,) + x.shape)
        pushed = built.get("fwd") or jvp_tape(tape, [0], examples)
        jac, batched = batch_replay(pushed, shared + [(seeds, True)], n_in)[1]
        cols = jac if batched else fnp.broadcast_to(jac, (n_in,) + out_shape)
        return _owned(fnp.reshape(fnp.moveaxis(fnp.reshape(cols, (n_in, n_out)), 0, 1),
                                  out_shape + x.shape))
    return arrays_out(jacobian_f)


class _TreeResult(Exception):
    """A pytree argument or result: `tree_jacobian` computes the Jacobian."""


class _JacobianTrace:
    """f traced for its Jacobian w.r.t. one array argument."""

    def __init__(self, f: Callable[..., Any], argnums: int, args: Sequence[Any],
                 kwargs: dict[str, Any]) -> None:
        nums = _argnums_tuple(argnums, len(args))
        fk = functools.partial(f, **kwargs) if kwargs else f
        rec, _ = record(fk, args, nums)
        if len(rec.inputs) != 1 or rec.out_tree != pytree.LEAF:
            raise _TreeResult
        builder, self.x, out = rec.builder, rec.inputs[0], rec.out_leaves[0]
        builder.tape.outputs = [builder.slot_of(out)]
        self.tape = tape = builder.tape
        self.out_shape = tuple(tape.avals[tape.outputs[0]].shape)
        self.n_in, self.n_out = int(np.prod(self.x.shape)), int(np.prod(self.out_shape))
        self.examples = [builder.values[s] for s in tape.inputs]
        self.outer = list(rec.outer_leaves) + list(builder.captures)

    def auto_mode(self, built: dict[str, Tape], compiled: bool = False) -> str:
        dynamic = [compiled or isinstance(v, Tracer) for v in self.outer]
        return _picked_mode(self.tape, self.examples, dynamic, self.n_in, self.n_out, built)


def jacobian_mode(f: Callable[..., Any], argnums: int = 0, compiled: bool = False
                  ) -> Callable[..., str]:
    """``jacobian_mode(f)(*args)``: the mode ``jacobian(f, mode="auto")`` picks on
    these arguments when called eagerly, or (``compiled=True``) when compiled
    (``fastad.jit`` of it, traced on arguments of these shapes)."""
    def mode_f(*args: Any, **kwargs: Any) -> str:
        return _JacobianTrace(f, argnums, args, kwargs).auto_mode({}, compiled)
    return mode_f


def hessian(f: Callable[..., Any], argnums: int = 0, sparse: bool = False, *,
            argnum: int | None = None, has_aux: bool = False) -> Callable[..., Any]:
    """The Hessian of scalar ``f``: forward mode over the reverse-mode gradient.
    Of a function with more outputs (JAX's and autograd's ``hessian``) the
    forward-mode Jacobian of its reverse-mode Jacobian, of shape
    ``out.shape + x.shape + x.shape``.
    ``sparse=True``: a ``scipy.sparse.csr_matrix`` (x.size x x.size) from the
    Hessian's detected pattern, star-colored, and one batched pass of
    Hessian-vector products per color (see `fastad.sparse`).  ``has_aux``
    (JAX's): f returns ``(value, aux)``, the result is ``(hessian, aux)``."""
    argnums = argnums if argnum is None else argnum
    if has_aux:
        of_value = hessian(lambda *a, **k: f(*a, **k)[0], argnums, sparse)

        def with_aux(*args: Any, **kwargs: Any) -> Any:
            return of_value(*args, **kwargs), f(*args, **kwargs)[1]
        return with_aux
    if sparse:
        from .sparse import derivatives
        return derivatives.hessian(f, argnums)
    of_scalar = jacobian(grad(f, argnums), argnums, mode="fwd")
    of_outputs = jacobian(jacobian(f, argnums, mode="rev"), argnums, mode="fwd")

    @functools.wraps(f)
    def hessian_f(*args: Any, **kwargs: Any) -> Any:
        try:
            return of_scalar(*args, **kwargs)
        except NotScalarOutput:  # f has more outputs than one
            return of_outputs(*args, **kwargs)
    return hessian_f


def hvp(f: Callable[..., Any], argnums: int = 0, *, argnum: int | None = None
        ) -> Callable[..., Any]:
    """``hvp(f)(x, v)``: the Hessian of scalar ``f`` at x times v, without forming
    the Hessian (forward over reverse)."""
    argnums = argnums if argnum is None else argnum

    def hvp_f(*args: Any, **kwargs: Any) -> Any:
        *primals, v = args
        nums = _argnums_tuple(argnums, len(primals))[0]

        def grad_at(xi: Any) -> Any:
            call = list(primals)
            call[nums] = xi
            return grad(f, nums)(*call, **kwargs)
        return jvp(grad_at, (primals[nums],), (v,))[1]
    return hvp_f


def make_tape(f: Callable[..., Any], argnums: ArgNums | None = None) -> Callable[..., Tape]:
    """``make_tape(f)(*args)``: the tape that ``f`` records on these arguments."""
    @functools.wraps(f, updated=())
    def make(*args: Any, **kwargs: Any) -> Tape:
        nums = tuple(range(len(args))) if argnums is None else _argnums_tuple(argnums, len(args))
        fk = functools.partial(f, **kwargs) if kwargs else f
        rec, _ = record(fk, args, nums)
        return tape_of(rec, rec.out_leaves)
    return make


def primitive(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a NumPy function a primitive of its own, autograd-style:

        @fastad.primitive
        def logsigmoid(x):
            return -np.logaddexp(0, -x)
        fastad.defvjp(logsigmoid, lambda g, ans, x: g * np.exp(-np.logaddexp(0, x)))

    Rules take ``(g, ans, *args)`` and return the cotangent of one argument,
    or, autograd's curried form, take ``(ans, *args)`` and return a function
    of ``g`` (``fastad.defvjp(logsigmoid, lambda ans, x: lambda g: ...)``);
    `fastad.defvjp` tells the two apart by their number of parameters.
    Primitives defined this way run in NumPy: a compiled function that uses
    one calls it between compiled segments (with a warning; see
    fastad.backends.coverage()).
    """
    from .core.registry import defprim, registry
    from .core.tracer import bind
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    base, k = name, 1
    while name in registry:
        k += 1
        name = f"{base}#{k}"
    prim = defprim(name, fn, None)
    prim.builtin = False
    with_options: dict[tuple, Any] = {}  # (position, option) pairs -> their primitive

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        options = tuple((k, a) for k, a in enumerate(args) if _is_option(a))
        if not options:
            return bind(prim, *args, **kwargs)
        key = tuple((k, id(a) if callable(a) else a) for k, a in options)
        held = with_options.get(key)
        if held is None:
            held = with_options[key] = _with_options(prim, options, len(args))
        _placed_rules(held)
        return bind(held, *(a for a in args if not _is_option(a)), **kwargs)
    bound.primitive = prim  # type: ignore[attr-defined]
    return bound


def _is_option(a: Any) -> bool:
    """A positional argument of a user's primitive that is no array: a
    string, None, a function (autograd passes them through to the function
    and its rules; a tape holds arrays)."""
    return a is None or isinstance(a, (str, bytes)) or (callable(a) and not isinstance(
        a, (np.ndarray, np.generic, Tracer)))


def _with_options(prim: Any, options: tuple, nargs: int) -> Any:
    """``prim`` with these positional options fixed: a primitive of the other
    arguments, whose function and rules put the options back in place, so
    that the user's function and rules see every argument where they gave it
    (`_placed_rules` refreshes the rules from ``prim`` at every call)."""
    from .core.registry import defprim, registry
    fixed = dict(options)

    def full(values: tuple) -> list:
        it = iter(values)
        return [fixed[k] if k in fixed else next(it) for k in range(nargs)]

    name, k = f"{prim.name}[{', '.join(f'{i}={v!r}' for i, v in options)}]", 1
    while name in registry:
        k += 1
        name = f"{prim.name}[...]#{k}"
    held = defprim(name, lambda *a, **kw: prim.impl(*full(a), **kw), None,
                   differentiable=prim.differentiable)
    held.builtin = False
    held.full = full
    held.arrays = [k for k in range(nargs) if k not in fixed]
    held.parent = prim
    return held


def _placed_rules(held: Any) -> None:
    """The parent primitive's rules of the array arguments, as rules of
    ``held``'s arguments that see the options in place."""
    def placed(rule: Any) -> Any:
        return None if rule is None else \
            lambda g, ans, *a, **kw: rule(g, ans, *held.full(a), **kw)
    for field in ("vjps", "jvps"):
        rules = getattr(held.parent, field)
        setattr(held, field, [placed(rules[k]) if k < len(rules) else None
                              for k in held.arrays] if rules else [])
