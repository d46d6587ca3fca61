"""Sparse Jacobians and Hessians: detect, color, evaluate compressed, decompress.

A `Plan` is what one signature needs: the pattern (`patterns`), the coloring
(`coloring`), the seed matrix and, for each stored nonzero of the pattern,
its position in the compressed product (the gather table).  The compressed
product is one batched tape: the forward-mode (``J S``), reverse-mode
(``S^T J``) or forward-over-reverse (``H S``) transform of f's tape,
replayed once on the p seeds as a batch (`transforms.batching`).  The CSR
result takes the pattern's ``indptr`` and ``indices`` as they are and its
data by one gather from the product: no dense m x n array is ever made.

Eagerly, one trace gives both the pattern and the product.  Compiled, the
plan is kept per signature and the product is a `Jitted` function of the
seeds and the arguments (the seeds are an argument, not a constant, so a
retrace of a guarded function never runs with another trace's seeds).  A
pattern holds for the path it was traced on: a function whose tape records
guards (Python branches on traced values) has its plan made again at every
call.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from ..core import pytree
from ..core.registry import registry
from ..core.tape import Tape
from .. import capture_walk, captures
from ..core.arrays import same_bits
from . import bidirectional, coloring, csr, linear, patterns, recovery, split


@dataclass
class Plan:
    """Pattern, coloring and decompression of one sparse derivative."""

    kind: str  # "jacobian" or "hessian"
    pattern: sp.csr_matrix  # bool, (m, n)
    mode: str  # "fwd" (columns), "rev" (rows) or "hvp" (star-colored columns)
    colors: np.ndarray
    seeds: np.ndarray  # (p,) + the seeded value's shape
    gather: np.ndarray
    lower_bound: int
    guarded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: the derivative's dtype: x's for a Hessian (the dense Hessian's and the
    #: substitution's), f's for a Jacobian in either direction (the dense
    #: Jacobian's: reverse passes give cotangents of x's dtype); the seeds'
    #: when None
    dtype: np.dtype | None = None

    def __post_init__(self) -> None:
        self.gather = coloring.index_table(self.gather, int(self.gather.max(initial=0)) + 1)

    @property
    def ncolors(self) -> int:
        """Colors, that is products computed (none for an empty pattern)."""
        if not self.pattern.nnz:
            return 0
        return sum(int(p.seeds.shape[0]) for p in self.parts())

    def parts(self) -> tuple["Plan", ...]:
        """The plans whose products make this one's: itself, or the forward and
        reverse parts of a Jacobian split between the two (`bidirectional`)."""
        return self.extra.get("parts") or (self,)

    def assemble(self, compressed: Any, overwrite: bool = False) -> sp.csr_matrix:
        """The CSR derivative from the compressed product (p, ...), which
        substitution may overwrite when ``overwrite``."""
        return self._on_structure(self._values(compressed, overwrite))

    def assemble_parts(self, products: Sequence[Any], overwrite: bool = False
                       ) -> sp.csr_matrix:
        """The CSR derivative from the products of `parts`, in their order."""
        if "parts" not in self.extra:
            return self.assemble(products[0], overwrite)
        data = np.empty(self.pattern.nnz, self.result_dtype)
        for part, where, product in zip(self.parts(), self.extra["positions"], products):
            data[where] = part._values(product, overwrite)
        return self._on_structure(data)

    def _values(self, compressed: Any, overwrite: bool) -> np.ndarray:
        """The pattern's nonzeros, in its order, from the compressed product."""
        flat = np.asarray(compressed).reshape(-1)
        substitution = self.extra.get("substitution")
        if substitution is not None:
            # a product that is the seeds themselves (H = I on an acyclic
            # coloring's pattern, simplified) must not be overwritten
            if not (overwrite and flat.dtype == self.seeds.dtype and flat.flags.writeable
                    and not np.may_share_memory(flat, self.seeds)):
                flat = np.array(flat, dtype=self.seeds.dtype)
            data = np.empty(self.pattern.nnz, self.seeds.dtype)
            substitution(flat, data)
        elif self.gather.size:
            data = coloring.gather(np.ascontiguousarray(flat), self.gather)
        else:
            data = np.zeros(0, self.seeds.dtype)
        # (a float32 x whose function computes in float64 for a Hessian: a
        # float64 constant matrix, bincount's weights)
        return data if data.dtype == self.result_dtype else data.astype(self.result_dtype)

    @property
    def result_dtype(self) -> np.dtype:
        return self.seeds.dtype if self.dtype is None else self.dtype

    def _on_structure(self, data: np.ndarray) -> sp.csr_matrix:
        # the structure shared read-only by every result, copied only by one
        # that changes it in place (`csr.SharedCSR`): a copy per call cost
        # 0.06-0.1 ms at n = 10^5
        structure = self.extra.get(_STRUCTURE)
        if structure is None:
            structure = self.extra[_STRUCTURE] = (
                csr.frozen(self.pattern.indices), csr.frozen(self.pattern.indptr),
                self.pattern.shape, bool(self.pattern.has_canonical_format))
        model = self.extra.get(_MODEL)
        if model is None or model.data.dtype != data.dtype:
            # made once by scipy's constructor, never returned, its values
            # not kept: the results are copies of its attributes (`csr.like`)
            model = self.extra[_MODEL] = csr.on_structure(data, *structure)
            model.data = np.empty(0, data.dtype)
        return csr.like(model, data)


def _has_guards(tape: Tape) -> bool:
    return any(registry[ins.prim].effect == "guard" for ins in tape.instrs)


def jacobian_plan(tape: Tape, wrt: int, x_shape: tuple[int, ...], out_shape: tuple[int, ...],
                  dtype: np.dtype, mode: str = "auto", reads: list | None = None) -> Plan:
    pat = patterns.jacobian_pattern(tape, wrt, reads=reads)
    guarded = _has_guards(tape)
    out_dtype = tape.avals[tape.outputs[0]].dtype
    result = out_dtype if out_dtype.kind in "fc" else np.dtype(dtype)  # (the dense one's)
    cols = rows = split = None
    if mode == "fwd":
        cols = coloring.column_coloring(pat)
    elif mode == "rev":
        rows = coloring.row_coloring(pat)
    else:
        # the split between both directions first where a row or column is
        # dense (`bidirectional`); then each side in the order of its lower
        # bound, colored only if that bound leaves it a chance to need fewer
        # colors (a scalar f's one dense row would cost n^2 steps to color
        # by columns)
        split = bidirectional.best_split(pat)
        bounds = {"fwd": coloring.lower_bound(pat, 1), "rev": coloring.lower_bound(pat, 0)}
        best = None  # the fewest colors of one direction so far
        for side in sorted(bounds, key=bounds.get):
            if (best is not None and bounds[side] >= best) or (
                    split is not None and bounds[side] > split.ncolors):
                continue
            colors = coloring.column_coloring(pat) if side == "fwd" else \
                coloring.row_coloring(pat)
            if side == "fwd":
                cols = colors
            else:
                rows = colors
            best = _count(colors) if best is None else min(best, _count(colors))
        if split is not None and best is not None and best <= split.ncolors:
            split = None  # one direction, one product, on a tie
        mode = "fwd" if rows is None or (cols is not None and _count(cols) <= _count(rows)) \
            else "rev"
    if split is not None:
        return _split_plan(pat, split, x_shape, out_shape, dtype, result, guarded, cols, rows)
    if mode == "fwd":
        return _one_way(pat, "fwd", cols, x_shape, dtype, result, guarded, {"row_colors": rows})
    return _one_way(pat, "rev", rows, out_shape, dtype, result, guarded, {"column_colors": cols})


def _one_way(pat: sp.csr_matrix, mode: str, colors: np.ndarray, seed_shape: tuple[int, ...],
             dtype: np.dtype, result: np.dtype, guarded: bool, extra: dict[str, Any]) -> Plan:
    """The plan of column (``fwd``) or row (``rev``) colors alone."""
    seeds = coloring.seed_matrix(colors, dtype)
    gather = coloring.column_gather(pat, colors) if mode == "fwd" else \
        coloring.row_gather(pat, colors)
    return Plan("jacobian", pat, mode, colors, seeds.reshape((len(seeds),) + tuple(seed_shape)),
                gather, coloring.lower_bound(pat, 1 if mode == "fwd" else 0), guarded, extra,
                result)


def _split_plan(pat: sp.csr_matrix, split: bidirectional.Split, x_shape: tuple[int, ...],
                out_shape: tuple[int, ...], dtype: np.dtype, result: np.dtype, guarded: bool,
                cols: np.ndarray | None, rows: np.ndarray | None) -> Plan:
    """A Jacobian split between forward and reverse passes: a part plan for
    each direction with nonzeros to give, on its own nonzeros of the pattern."""
    parts, positions = [], []
    for mode, keep, colors, shape in (("fwd", split.forward, split.column_colors, x_shape),
                                      ("rev", ~split.forward, split.row_colors, out_shape)):
        if keep.any():
            part = bidirectional.entries(pat, keep)
            parts.append(_one_way(part, mode, colors, shape, dtype, result, guarded, {}))
            positions.append(np.flatnonzero(keep))
    bound = min(coloring.lower_bound(pat, 1), coloring.lower_bound(pat, 0))
    return Plan("jacobian", pat, "fwd+rev", np.zeros(0, np.int64),
                np.zeros((0,) + tuple(x_shape), dtype), np.zeros(0, np.int64), bound, guarded,
                {"parts": tuple(parts), "positions": positions, "row_colors": rows,
                 "column_colors": cols, "split": split}, result)


def _count(colors: np.ndarray | None) -> int:
    return -1 if colors is None else int(colors.max(initial=-1)) + 1


def hessian_plan(tape: Tape, wrt: int, x_shape: tuple[int, ...], dtype: np.dtype,
                 method: str = "auto", reads: list | None = None) -> Plan:
    """A star coloring (each nonzero read off the product) or an acyclic one
    (fewer colors, the nonzeros recovered by substitution); ``"auto"`` takes
    the acyclic one when it needs fewer colors, unless its substitution is
    one long chain (`_chain_bound`)."""
    if method not in ("auto", "star", "acyclic"):
        raise ValueError(f"hessian coloring must be 'auto', 'star' or 'acyclic', not {method!r}")
    pat = patterns.hessian_pattern(tape, wrt, reads)
    graph = coloring._adjacency(pat)  # made once for the colorings and the substitution
    star = acyclic = None
    if method in ("auto", "star"):
        star = coloring.star_coloring(pat, graph)
    if method in ("auto", "acyclic"):
        acyclic = coloring.acyclic_coloring(pat, graph)
    substitution = None
    if acyclic is not None and (star is None or _count(acyclic) < _count(star)):
        substitution = recovery.Substitution(pat, acyclic, graph)
        if method == "auto" and _chain_bound(substitution, _count(star) - _count(acyclic),
                                             pat.shape[0]):
            substitution = None
    if substitution is not None:
        colors, gather = acyclic, np.zeros(0, np.int64)
        extra = {"substitution": substitution, "coloring": "acyclic"}
    else:
        colors, gather = star, coloring.hessian_gather(pat, star)
        extra = {"coloring": "star"}
    seeds = coloring.seed_matrix(colors, dtype)
    return Plan("hessian", pat, "hvp", colors, seeds.reshape((len(seeds),) + tuple(x_shape)),
                gather, coloring.lower_bound(pat, 1), _has_guards(tape), extra)


#: a substitution step that waits for the one before (the value it reads was
#: just written) costs about as much as this many elements of one color's
#: product (a fused loop's element of a Hessian-vector product)
CHAIN_STEP_COST = 6


def _chain_bound(substitution: recovery.Substitution, saved_colors: int, n: int) -> bool:
    """Would the acyclic coloring's substitution, waiting on memory along its
    longest chain (a banded pattern's two-colored tree is a path through all
    of x: one chain of n/2 steps), cost more than the colors it saves?  Then
    the star coloring, whose values are a gather, is the faster call."""
    return substitution.longest_chain * CHAIN_STEP_COST > saved_colors * n


# -- the compressed product, eagerly or traced ------------------------------------
def compressed(trace: Any, seeds: Any, mode: str) -> Any:
    """The product of ``trace``'s (an `api._JacobianTrace`) derivative with the
    seeds, of shape (p, size): J S (``fwd``, seeds (p,) + x.shape), S^T J
    (``rev``, seeds (p,) + out.shape) or, for a scalar f, H S (``hvp``): the
    transformed tape (`_transformed`) replayed on the seeds as a batch."""
    from .. import numpy as fnp
    from ..transforms.batching import batch_replay

    if mode == "hvp" and trace.n_out != 1:
        raise TypeError("a sparse Hessian needs a function returning one scalar")
    p = int(fnp.shape(seeds)[0])
    tape, inputs, at = _transformed(trace, mode)
    out, batched = batch_replay(tape, [(v, False) for v in inputs] + [(seeds, True)], p)[at]
    if not batched:
        out = fnp.broadcast_to(out, (p,) + tuple(fnp.shape(out)))
    return fnp.reshape(out, (p, trace.n_out if mode == "fwd" else trace.n_in))


def _transformed(trace: Any, mode: str) -> tuple[Tape, list[Any], int]:
    """The transformed tape of ``mode`` (J v, u^T J or H v for one seed v),
    folded (`linear.fold`), its inputs but the seed (its last input) and the
    position of the product among its outputs."""
    from ..transforms.forward import jvp_tape
    from ..transforms.reverse import vjp_tape

    outer = list(trace.outer)
    # every form, batched or not, reads the product's arithmetic folded
    # (`linear.fold`): the same instructions in the three unbatched forms, so
    # their values stay bit for bit equal
    if mode == "fwd":
        return linear.fold(jvp_tape(trace.tape, [0], trace.examples)), outer, 1
    if mode == "rev":
        return linear.fold(vjp_tape(trace.tape, [0], trace.examples)), outer, 1
    one = np.ones(trace.out_shape, trace.tape.avals[trace.tape.outputs[0]].dtype)
    pulled = vjp_tape(trace.tape, [0], trace.examples)
    return linear.fold(jvp_tape(pulled, [0], list(trace.examples) + [one])), outer + [one], 3


def single(trace: Any, seed: Any, mode: str) -> Any:
    """One column (row) of `compressed`: the derivative's product with one seed,
    flat, by the unbatched transformed tape."""
    from .. import numpy as fnp
    from ..core.tracer import replay

    tape, inputs, at = _transformed(trace, mode)
    return fnp.reshape(replay(tape, inputs + [seed])[at], (-1,))


def per_seed(trace: Any, seeds: Any, mode: str) -> Any:
    """`compressed` as p replays of the unbatched transformed tape, one per
    seed, stacked: traced, the function's own values and adjoints are
    recorded once (the optimizer's common subexpressions) and each seed's
    product is elementwise code on unbatched arrays, which the Numba backend
    fuses with the other seeds' into one loop over the elements (the batched
    tape's arrays are (p, size), and its gathers take index tables with a row
    offset per seed that run as separate loops)."""
    from .. import numpy as fnp
    from ..core.tracer import replay

    tape, inputs, at = _transformed(trace, mode)
    p = int(fnp.shape(seeds)[0])
    rows = [fnp.reshape(replay(tape, inputs + [seeds[k]])[at], (-1,)) for k in range(p)]
    return fnp.stack(rows)


def shared(trace: Any, mode: str) -> tuple[Any, ...]:
    """What every seed's product reads and no seed changes (`split`): the
    residuals of the transformed tape's partial evaluation."""
    tape, inputs, at = _transformed(trace, mode)
    return split.shared_part(tape, split.partition(tape, tape.outputs[at]), inputs)


def seed_product(trace: Any, residuals: Sequence[Any], seed: Any, mode: str) -> Any:
    """`single` from `shared`'s residuals: the seed's own part of the product."""
    from .. import numpy as fnp

    tape, inputs, at = _transformed(trace, mode)
    out = tape.outputs[at]
    return fnp.reshape(split.seed_part(tape, split.partition(tape, out), inputs, residuals,
                                       seed, out), (-1,))


def _trace(f: Callable[..., Any], argnums: int, args: Sequence[Any], kwargs: dict[str, Any]
           ) -> Any:
    from ..api import _JacobianTrace, _TreeResult
    if not isinstance(argnums, int):
        raise TypeError("sparse derivatives are taken with respect to one array argument "
                        "(an int argnums)")
    try:
        return _JacobianTrace(f, argnums, args, kwargs)
    except _TreeResult:
        raise TypeError(_ONE_ARRAY) from None


_ONE_ARRAY = ("a sparse derivative is of a function returning one array with respect to one "
              "array argument, not a tuple, list or dict; use sparse=False for pytrees")


def _check_mode(mode: Any) -> None:
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev', not {mode!r}")


def _check_real_scalar(dtype: Any) -> None:
    # the Hessian of a complex value is not defined (the dense hessian's grad
    # refuses it); its Hessian-vector products would silently drop the
    # imaginary part
    if np.dtype(dtype).kind == "c":
        raise TypeError(f"hessian requires a real-valued output, got {np.dtype(dtype)}")


def _check_eager(args: Sequence[Any], kwargs: dict[str, Any], what: str) -> None:
    from ..core.tracer import Tracer
    leaves = pytree.flatten((tuple(args), kwargs))[0]
    if any(isinstance(v, Tracer) for v in leaves):
        raise TypeError(f"{what}(..., sparse=True) returns a scipy.sparse matrix and cannot be "
                        "traced inside another transformation; use sparse=False there")


def _check_real(trace: Any, what: str) -> None:
    if np.dtype(trace.x.dtype).kind != "f":
        raise TypeError(f"{what}(..., sparse=True) needs a real floating-point argument, "
                        f"got {trace.x.dtype}")


def jacobian(f: Callable[..., Any], argnums: int = 0, mode: str = "auto"
             ) -> Callable[..., sp.csr_matrix]:
    """``fastad.jacobian(f, sparse=True)``: the Jacobian of f as a CSR matrix
    of shape (out.size, x.size) (both flattened in C order), from its detected
    pattern, colored, by one batched pass over the colors."""
    _check_mode(mode)

    @functools.wraps(f)
    def sparse_jacobian(*args: Any, **kwargs: Any) -> sp.csr_matrix:
        _check_eager(args, kwargs, "jacobian")
        t = _trace(f, argnums, args, kwargs)
        _check_real(t, "jacobian")
        plan = jacobian_plan(t.tape, t.tape.inputs[0], t.x.shape, t.out_shape, t.x.dtype, mode)
        return _evaluate(plan, lambda part: compressed(t, part.seeds, part.mode))
    return sparse_jacobian


def hessian(f: Callable[..., Any], argnums: int = 0) -> Callable[..., sp.csr_matrix]:
    """``fastad.hessian(f, sparse=True)``: the Hessian of scalar f as a CSR
    matrix (x.size x x.size), from its detected pattern, star-colored, by one
    batched pass of Hessian-vector products over the colors."""
    @functools.wraps(f)
    def sparse_hessian(*args: Any, **kwargs: Any) -> sp.csr_matrix:
        _check_eager(args, kwargs, "hessian")
        t = _trace(f, argnums, args, kwargs)
        _check_real(t, "hessian")
        if t.n_out != 1:
            raise TypeError("hessian requires a function returning one scalar")
        _check_real_scalar(t.tape.avals[t.tape.outputs[0]].dtype)
        plan = hessian_plan(t.tape, t.tape.inputs[0], t.x.shape, t.x.dtype)
        return _evaluate(plan, lambda part: compressed(t, part.seeds, "hvp"))
    return sparse_hessian


def _evaluate(plan: Plan, product: Callable[[Plan], Any], overwrite: bool = False
              ) -> sp.csr_matrix:
    """The derivative from ``product(part)``, the compressed product of each of
    the plan's parts."""
    if plan.ncolors == 0 or plan.pattern.nnz == 0:
        return sp.csr_matrix(plan.pattern.shape, dtype=plan.result_dtype)
    return plan.assemble_parts([product(part) for part in plan.parts()], overwrite)


# -- compiled --------------------------------------------------------------------
def _lifted_tape(f: Callable[..., Any], argnums: int, args: Sequence[Any],
                 kwargs: dict[str, Any]) -> tuple[Tape, int, tuple, tuple, np.dtype]:
    """f's tape with every float leaf of the arguments an input (so that no
    argument's value is a constant the pattern could read) and the slot of
    ``args[argnums]``."""
    from ..recorded import check_leaf
    from ..signatures import is_dynamic
    from ..core.arrays import plain_array
    from ..core.tracer import recording

    if not -len(args) <= argnums < len(args):  # (the eager form's error)
        raise TypeError(f"argnums={argnums} but the function was called with {len(args)} "
                        "positional arguments")
    argnums %= len(args)
    with recording() as builder:
        def lift(leaf: Any, where: str) -> Any:
            if isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray:
                leaf = plain_array(leaf, where)
            if is_dynamic(leaf):
                return builder.tracer(builder.new_input(np.asarray(leaf)[()] if np.ndim(leaf)
                                                         == 0 else leaf).slot)
            return leaf
        new_args = []
        for i, arg in enumerate(args):
            if i == argnums:
                # a pytree of one array is that array, as eagerly (`_trace`)
                leaves, tree = pytree.flatten(arg)
                if len(leaves) != 1:
                    raise TypeError(_ONE_ARRAY)
                x = check_leaf(leaves[0], f"argument {i}")
                tx = builder.new_input(x)
                wrt, x_shape, dtype = tx.slot, tuple(np.shape(x)), np.result_type(x)
                new_args.append(pytree.unflatten(tree, [builder.tracer(tx.slot)]))
                continue
            leaves, tree = pytree.flatten(arg)
            new_args.append(pytree.unflatten(tree, [lift(v, f"argument {i}") for v in leaves]))
        new_kwargs = {}
        for name, arg in kwargs.items():
            leaves, tree = pytree.flatten(arg)
            new_kwargs[name] = pytree.unflatten(tree, [lift(v, name) for v in leaves])
        out = f(*new_args, **new_kwargs)
        out_leaves, out_tree = pytree.flatten(out)
        if out_tree != pytree.LEAF:
            raise TypeError(_ONE_ARRAY)
        builder.tape.outputs = [builder.slot_of(out_leaves[0])
                                if hasattr(out_leaves[0], "slot") else builder.const(out_leaves[0])]
        tape = builder.tape
    out_shape = tuple(tape.avals[tape.outputs[0]].shape)
    return tape, wrt, x_shape, out_shape, dtype


def _integer_key(leaf: Any) -> Any:
    """What a plan's key holds of an integer or boolean argument: the value
    of a number; an array's shape, dtype and a 128-bit hash of its contents
    (an index table passed to the compiled function is data there, whose
    values the pattern depends on: a bundle adjustment's camera indices).
    None for any other leaf."""
    if isinstance(leaf, (int, np.integer)) and not isinstance(leaf, bool):
        return leaf
    if isinstance(leaf, np.ndarray) and leaf.dtype.kind in "iub":
        data = np.ascontiguousarray(leaf).view(np.uint8).data
        return leaf.shape, leaf.dtype.str, hashlib.blake2b(data, digest_size=16).digest()
    return None


class CapturedValues:
    """What a compiled function's kept plan read from outside its arguments,
    checked at each call: the plan holds while it holds.

    The compiled function reads its closures and globals at each call
    (`fastad.captures`): it retraces when a binding holds another object, an
    integer array (an index table) other contents or a number another value,
    and reads a float array by reference, so a change made in place reaches
    its values.  The plan's tape takes them as constants, and its pattern
    depends on some: the index tables, the numbers, and the zeros of a
    constant matrix multiplying x (`patterns._matmul`).  So the plan is made
    again when the bindings change, and, when a rule read a constant's
    values (``reads``), when a captured float array changes: only its zeros
    where the constant read is that array or a view of it, its contents
    where a constant read may have been computed from it (``2 * A``)."""

    def __init__(self, found: captures.Captures, reads: list, read_in_trace: set[int]) -> None:
        self.found = found
        self.masks: list[tuple[np.ndarray, np.ndarray]] = []  # (array, its nonzeros)
        arrays = [b.value for b in found.arrays.values()]
        # (array, its contents): those plain NumPy read while traced (`captures.watching`)
        self.copies = [(a, a.copy()) for a in arrays if id(a) in read_in_trace]
        if not reads or not found.arrays:
            return
        derived = False
        for c in reads:
            base = next((a for a in arrays if c is a or (isinstance(c, np.ndarray)
                                                         and np.may_share_memory(c, a))), None)
            if base is None:
                derived = True
            elif not any(base is a for a, _ in self.masks):
                self.masks.append((base, base != 0))
        if derived:
            self.copies = [(a, a.copy()) for a in arrays]

    def hold(self) -> bool:
        return (self.found.hold()
                and all(np.array_equal(a != 0, mask) for a, mask in self.masks)
                and all(same_bits(a, copy) for a, copy in self.copies))


class CompiledSparse:
    """Sparse derivatives of a compiled function: plans per signature (the
    owner's signature key), and one `Jitted` compressed product per mode."""

    MAX_PLANS = 64

    def __init__(self, fn: Callable[..., Any], argnums: int, split: Callable[..., Any],
                 derive: Callable[[Callable[..., Any]], Any]) -> None:
        if not isinstance(argnums, int):
            raise NotImplementedError("sparse derivatives are defined for a single argnums")
        self.fn, self.argnums = fn, argnums
        self._split = split  # (args, kwargs) -> (signature key, dynamic leaves)
        self._derive = derive  # a Python function -> a Jitted like the owner
        self._plans: dict[Any, Plan] = {}
        self._products: dict[str, Any] = {}
        self._lock = threading.Lock()

    def plan(self, kind: str, args: Sequence[Any], kwargs: dict[str, Any], mode: str = "auto"
             ) -> Plan:
        # integers taken as data by the owner's signature are constants of the
        # pattern's tape (`lifted_tape`): a plan holds for their values only
        integers = tuple(_integer_key(leaf) for leaf in pytree.flatten((tuple(args), kwargs))[0]
                         if _integer_key(leaf) is not None)
        key = (kind, mode, self._split(tuple(args), kwargs)[0], integers)
        plan = self._plans.get(key)
        if plan is not None and not plan.guarded and plan.extra["captured"].hold():
            return plan
        found = capture_walk.find(self.fn)  # before the trace, as the compiled function's
        with captures.watching(found) as read_in_trace:
            tape, wrt, x_shape, out_shape, dtype = _lifted_tape(self.fn, self.argnums, args,
                                                                kwargs)
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"{kind}(..., sparse=True) needs a real floating-point argument, "
                            f"got {dtype}")
        reads: list = []
        if kind == "hessian":
            if int(np.prod(out_shape)) != 1:
                raise TypeError("hessian requires a function returning one scalar")
            _check_real_scalar(tape.avals[tape.outputs[0]].dtype)
            plan = hessian_plan(tape, wrt, x_shape, dtype, reads=reads)
        else:
            plan = jacobian_plan(tape, wrt, x_shape, out_shape, dtype, mode, reads)
        plan.extra["captured"] = CapturedValues(found, reads, read_in_trace)
        with self._lock:
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def product(self, mode: str, how: str = "batched", residuals: int = 0) -> Any:
        """The compiled product with the seeds (the seeds, or one seed, last):
        ``how`` is "batched" (`compressed`), "per_seed" (`per_seed`),
        "single" (`single`, one seed), "shared" (`shared`, no seed) or "seed"
        (`seed_product`: the ``residuals`` residuals one by one, then one
        seed)."""
        key = (mode, how, residuals)
        jitted = self._products.get(key)
        if jitted is None:
            fn, argnums = self.fn, self.argnums
            product = {"batched": compressed, "per_seed": per_seed, "single": single}.get(how)

            def compressed_product(*args: Any, **kwargs: Any) -> Any:
                # the seeds come last, so that the owner's static_argnums still hold
                if how == "shared":
                    return shared(_trace(fn, argnums, args, kwargs), mode)
                if how == "seed":
                    # the residuals as arguments of their own, not one tuple: a
                    # call of arrays alone takes the compiled function's
                    # shortest path (a tuple of 2 residuals cost 8.5 us more per
                    # call, of 15 23 us)
                    *args, seed = args
                    cut = len(args) - residuals
                    return seed_product(_trace(fn, argnums, args[:cut], kwargs), args[cut:],
                                        seed, mode)
                *args, seeds = args
                return product(_trace(fn, argnums, args, kwargs), seeds, mode)
            compressed_product.__name__ = compressed_product.__qualname__ = (
                f"{getattr(fn, '__name__', 'f')}_{how}_{mode}")
            with self._lock:
                jitted = self._products.setdefault(key, self._derive(compressed_product))
        return jitted

    def __call__(self, kind: str, args: Sequence[Any], kwargs: dict[str, Any],
                 mode: str = "auto") -> sp.csr_matrix:
        _check_mode(mode)
        _check_eager(args, kwargs, kind)
        if self.fn is None:
            from ..core.errors import SignatureError
            raise SignatureError(
                f"this compiled function was loaded from bytes without its Python function; "
                f"{kind}(..., sparse=True) traces it again, which needs the function")
        plan = self.plan(kind, args, kwargs, mode)
        products = {}

        def product(part: Plan) -> Any:
            products[id(part)] = self.run(part, args, kwargs)
            return products[id(part)]
        # each product is an array of its own, which substitution may overwrite
        out = _evaluate(plan, product, overwrite=True)
        for part in plan.parts():
            if part.extra.get("form") == "single":
                part.extra[_BUFFER] = products[id(part)]  # the next call's (`_unbatched`)
        return out

    def run(self, plan: Plan, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """The compressed product: one batched pass over the seeds, or, for
        large arrays (`PER_SEED_MIN`), the seeds' products side by side in one
        unbatched pass (`per_seed`) or one compiled call per seed, whichever
        was faster on the plan's first calls (`UNBATCHED_FORMS`)."""
        seeds = plan.seeds
        side_by_side = self.product(plan.mode, "per_seed")
        backend = getattr(side_by_side._spec, "backend_name", None)
        least = SIDE_BY_SIDE_MIN.get(backend, PER_SEED_MIN)
        if seeds[0].size < least or len(seeds) > PER_SEED_MAX:
            return self.product(plan.mode, "batched")(*args, seeds, **kwargs)
        form = plan.extra.get("form")
        if form is not None:
            return self._unbatched(plan, form, args, kwargs)
        # the forms run in turn, the first WARM_CALLS of each (compiling) not
        # counted, then the faster kept after TIMED_CALLS of each: both compute
        # each seed's product by the same instructions, so the choice changes
        # the time, not the values
        timings = plan.extra.setdefault("timings", {f: [] for f in UNBATCHED_FORMS})
        form = min(UNBATCHED_FORMS, key=lambda f: len(timings[f]))
        start = time.thread_time()  # this thread's CPU: what others running leave out
        out = self._unbatched(plan, form, args, kwargs)
        timings[form].append(time.thread_time() - start)
        if all(len(t) >= WARM_CALLS + TIMED_CALLS for t in timings.values()):
            plan.extra["form"] = min(UNBATCHED_FORMS,
                                     key=lambda f: min(timings[f][WARM_CALLS:]))
        return out

    def _unbatched(self, plan: Plan, form: str, args: Sequence[Any], kwargs: dict[str, Any]
                   ) -> Any:
        seeds = plan.seeds
        if form == "per_seed":
            return self.product(plan.mode, "per_seed")(*args, seeds, **kwargs)
        if form == "split":
            residuals = tuple(self.product(plan.mode, "shared")(*args, **kwargs))
            seed_product = self.product(plan.mode, "seed", len(residuals))

            def one(*args: Any, **kwargs: Any) -> Any:
                *args, seed = args
                return seed_product(*args, *residuals, seed, **kwargs)
        else:
            one = self.product(plan.mode, "single")
        size = plan.pattern.shape[0] if plan.mode == "fwd" else plan.pattern.shape[1]
        # the last call's product once assembled (`__call__`), taken so that a
        # concurrent call makes its own: a fresh (p, n) array at every call
        # cost 0.3-0.4 of the 3-D stencil's 4.6 ms at n = 10^5 on the C VM
        # (one thread), the kept one being mapped and partly in cache
        out = plan.extra.pop(_BUFFER, None)
        # f's dtype for a Jacobian's forward products (a float32 x, a float64 f)
        dtype = np.result_type(plan.result_dtype, seeds.dtype)
        if (not isinstance(out, np.ndarray) or out.shape != (len(seeds), size)
                or out.dtype != dtype or not out.flags.writeable):
            out = np.empty((len(seeds), size), dtype=dtype)
        for k in range(len(seeds)):
            out[k] = one(*args, seeds[k], **kwargs)
        return out


#: the key of a plan's product array kept from one call to the next
_BUFFER = "product_buffer"
#: the key of a plan's read-only copies of its pattern's indices and indptr
_STRUCTURE = "structure"
#: the key of a plan's first result, whose attributes the next ones copy
_MODEL = "model"
#: seeds of at least this many elements are run unbatched, side by side or one
#: call each, rather than as one batch: the batched arrays (colors x size)
#: then fall out of cache, and the batched tape's gathers no longer run as
#: strided loops
PER_SEED_MIN = 1 << 14
#: backends that take the seeds unbatched from fewer elements: Numba's
#: batched gathers are separate loops at any size (n = 2000: 13.4 against
#: 17.9 gradients for the chained Rosenbrock, 7.4 against 10.3 for the grid;
#: equal at n = 300); on the C VM, with the products folded (`linear`), the
#: seeds side by side were never slower than the batch from n = 1000 on
#: (one thread, 8 workloads at n = 1000, 3000 and 10^4: `broyden` 0.035
#: against 0.046 ms at 1000 and 0.35 against 0.71 at 10^4, `rods` 0.78
#: against 1.08 at 10^4, the grid equal)
SIDE_BY_SIDE_MIN = {"numba": 1 << 10, "c": 1 << 10}
#: at most this many seeds unbatched: the side-by-side tape is recorded once
#: per seed
PER_SEED_MAX = 32
#: the unbatched forms, timed on a plan's first calls: the seeds side by side
#: in one pass (`per_seed`: the function's values shared, each seed's product
#: fused with the others' on Numba, but a working set p times larger), or one
#: compiled call per seed (`single`), or one call of the shared part and one
#: call per seed of the rest (`split`: the function's values and adjoints
#: computed once and read by each seed's call).  Which wins depends on the
#: function and the backend: at n = 10^5 side by side was faster for the
#: minimal surface on both backends (much shared work), one call per seed for
#: the 3-D stencil on Numba (little shared work, a working set of 7 seeds'
#: arrays), split for Broyden's banded least squares on Numba (two band sums
#: of the function's values shared, two of each seed's tangent)
UNBATCHED_FORMS = ("per_seed", "single", "split")
#: calls of each form not counted (the first compiles), then calls timed
#: (the thread's CPU time: on a busy machine the wall clock of a call of a
#: few ms was 3-6 times its CPU time, varying from call to call), the fastest
#: of them counted, before the faster form is kept
WARM_CALLS, TIMED_CALLS = 1, 2
