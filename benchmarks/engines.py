"""Every engine's way of computing a workload's gradient (or HVP), as a `Case`.

A `Case` is one row of the report: an engine, the operation it times, its
inputs already in the engine's own container (NumPy array, torch tensor, jax
Array), and `build`, which does whatever the engine does before the first call
(trace, compile) and returns the function that is timed.  Timing ``build()``
plus the first call gives the first-call time; timing the returned function
gives the steady state.

Engines that are not installed, or that cannot run a workload, produce a
`Skipped` with the reason, so the suite runs with any subset of peers and with
any subset of fastad's backends.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from workloads import Workload, make_mlp_loss

FASTAD_BACKENDS = ("c", "numba", "numpy")


def _identity(x: Any) -> Any:
    return x


def _nothing() -> None:
    return None


@dataclass
class Case:
    engine: str  # "fastad[c]", "jax", ...
    op: str  # "grad" | "value_and_grad" | "value" | "hvp"
    args: tuple  # inputs in the engine's native container
    build: Callable[[], Callable]  # trace/compile; returns the timed function
    to_numpy: Callable[[Any], Any] = _identity  # result -> NumPy, for the check
    warm_up: Callable[[], None] = _nothing  # engine-wide one-time cost, excluded

    @property
    def label(self) -> str:
        if self.op == "value" and not self.engine.startswith("fastad"):
            return f"{self.engine} (value only)"
        return self.engine if self.op in ("grad", "hvp") else f"{self.engine}.{self.op}"

    @property
    def is_derivative(self) -> bool:
        return self.op != "value"


@dataclass
class Skipped:
    engine: str
    reason: str
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = self.engine


# --------------------------------------------------------------------------
# Checking results against the NumPy hand-derived reference

def leaves(tree: Any) -> list[np.ndarray]:
    """The arrays of a pytree (tuples, lists, dicts in key order), flattened."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [np.asarray(tree, dtype=np.float64).ravel()]


def relative_error(result: Any, reference: Any) -> float:
    """max|result - reference| / max|reference| over all leaves."""
    got, want = leaves(result), leaves(reference)
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        return math.inf
    got_all, want_all = np.concatenate(got), np.concatenate(want)
    scale = np.max(np.abs(want_all)) or 1.0
    return float(np.max(np.abs(got_all - want_all)) / scale)


def check(wl: Workload, op: str, result: Any) -> float:
    """Relative error of one engine's result for ``op`` on ``wl``."""
    if op == "value":
        return relative_error(result, wl.reference_value())
    if op == "value_and_grad":
        value, grad = result
        return max(relative_error(value, wl.reference_value()),
                   relative_error(grad, wl.reference()))
    return relative_error(result, wl.reference())


# --------------------------------------------------------------------------
# Hand-written baselines

def hand_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    op = wl.kind
    yield Case("numpy_hand", op, wl.op_args, lambda: wl.hand_numpy)
    if wl.hand_numba is None:
        yield Skipped("numba_hand", "numba is not installed")
    else:
        yield Case("numba_hand", op, wl.op_args, lambda: wl.hand_numba,
                   warm_up=_warm_up_numba)
    # The user's own function, for scale: what one forward evaluation costs.
    yield Case("numpy_fwd", "value", wl.args, lambda: wl.f)


def _warm_up_numba() -> None:
    import numba
    numba.njit(lambda a: a + 1.0)(1.0)


# --------------------------------------------------------------------------
# fastad

def fastad_backends(fa: Any) -> tuple[list[str], dict[str, str]]:
    """Backends to try, and the reason each missing one is missing."""
    available = getattr(fa, "backends_available", None)
    if available is None:  # older API: try each, failures are reported per row
        return list(FASTAD_BACKENDS), {}
    names = list(available())
    return names, {b: "fastad.backends_available() does not list it"
                   for b in FASTAD_BACKENDS if b not in names}


def fastad_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    try:
        import fastad as fa
    except Exception as exc:  # the library is being written: say why, move on
        yield Skipped("fastad", f"import fastad failed: {type(exc).__name__}: {exc}")
        return
    backends, missing = fastad_backends(fa)
    ops = ("grad", "value_and_grad", "value") if wl.kind == "grad" else ("hvp",)
    for backend in backends:
        for op in ops:
            yield Case(f"fastad[{backend}]", op, wl.op_args,
                       _fastad_compiled(fa, wl.f, backend, op),
                       warm_up=lambda backend=backend: _warm_up_fastad(fa, backend))
    for backend, reason in missing.items():
        yield Skipped(f"fastad[{backend}]", reason)
    # Eager mode traces on every call, like autograd.
    eager = "grad" if wl.kind == "grad" else "hvp"
    if hasattr(fa, eager):
        yield Case(f"fastad.{eager} (eager)", wl.kind, wl.op_args,
                   lambda: getattr(fa, eager)(wl.f))
    else:
        yield Skipped(f"fastad.{eager} (eager)", f"fastad has no attribute {eager!r}")


def _fastad_compiled(fa: Any, f: Callable, backend: str, op: str) -> Callable[[], Callable]:
    def build() -> Callable:
        g = fa.compile(f, argnums=0, backend=backend)
        return g if op == "grad" else getattr(g, op)
    return build


def _warm_up_fastad(fa: Any, backend: str) -> None:
    # Loading the backend (C extension, Numba's LLVM) is a once-per-process cost,
    # excluded as the peers' import and warm-up are.
    try:
        fa.compile(lambda x: (x * x).sum(), backend=backend)(np.ones(2))
    except Exception:
        pass  # the real case will report the error


# --------------------------------------------------------------------------
# autograd (HIPS)

def autograd_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        yield Skipped("autograd", "autograd is not installed")
        return
    f = wl.make_f(anp)
    if wl.kind == "grad":
        yield Case("autograd", "grad", wl.args, lambda: autograd.grad(f, 0))
    else:
        yield Case("autograd", "hvp", wl.op_args,
                   lambda: autograd.hessian_vector_product(f))


# --------------------------------------------------------------------------
# micrograd: scalar Values only, so W1 (the loop runs on a list of Values) and W4

def micrograd_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    if wl.kind != "grad" or not (wl.scalar_loop or wl.name.startswith("W4")):
        return  # vector and matrix code is outside what micrograd does
    try:
        from micrograd.engine import Value
    except ImportError:
        yield Skipped("micrograd", "micrograd is not installed")
        return
    if wl.scalar_loop:
        f = wl.make_f(None)
    else:
        def f(xs):
            return sum(micrograd_sin(Value, v) * v ** 2 for v in xs)

    def build() -> Callable:
        # backward() sorts the graph recursively; the W1 sum chain is deep.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))

        def grad(x: np.ndarray) -> np.ndarray:
            xs = [Value(float(v)) for v in x]  # micrograd rebuilds its graph each call
            f(xs).backward()
            return np.array([v.grad for v in xs])
        return grad
    yield Case("micrograd", "grad", wl.args, build)


def micrograd_sin(Value: type, v: Any) -> Any:
    """sin for micrograd (which has none), written the way its own ops are."""
    out = Value(math.sin(v.data), (v,), "sin")

    def _backward() -> None:
        v.grad += math.cos(v.data) * out.grad
    out._backward = _backward
    return out


# --------------------------------------------------------------------------
# JAX: jit(grad(f)) with float64

JAX_SLOW_COMPILE_N = 1000  # jit of the unrolled W1 loop took 26 s here at n=1000


def jax_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
    except ImportError:
        yield Skipped("jax", "jax is not installed")
        return
    if quick and wl.scalar_loop and wl.size >= JAX_SLOW_COMPILE_N:
        yield Skipped("jax", "skipped in --quick: compiling the unrolled loop takes ~30 s")
        return
    f = wl.make_f(jnp)
    args = jax.tree_util.tree_map(jnp.asarray, wl.op_args)

    def build() -> Callable:
        if wl.kind == "grad":
            compiled = jax.jit(jax.grad(f))
        else:  # forward-over-reverse
            compiled = jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])
        return lambda *a: jax.block_until_ready(compiled(*a))

    def warm_up() -> None:
        jax.block_until_ready(jax.jit(lambda x: x * 2.0)(jnp.ones(2)))

    yield Case("jax", wl.kind, args, build,
               to_numpy=lambda r: jax.tree_util.tree_map(np.asarray, r), warm_up=warm_up)


# --------------------------------------------------------------------------
# PyTorch: eager autograd and torch.func

def mlp_loss_torch(params, X, Y):
    """W3 as a PyTorch user writes it (log_softmax does the max shift)."""
    import torch
    W1, b1, W2, b2 = params
    h = torch.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    return -(Y * torch.log_softmax(z, dim=1)).sum() / X.shape[0]


def torch_cases(wl: Workload, quick: bool = False) -> Iterator[Case | Skipped]:
    try:
        import torch
        import torch.func
    except ImportError:
        yield Skipped("torch", "torch is not installed")
        return
    f = mlp_loss_torch if wl.make_f is make_mlp_loss else wl.make_f(torch)

    def tensors(tree: Any, requires_grad: bool = False) -> Any:
        if isinstance(tree, (tuple, list)):
            return tuple(tensors(t, requires_grad) for t in tree)
        return torch.tensor(tree, dtype=torch.float64, requires_grad=requires_grad)

    def to_numpy(tree: Any) -> Any:
        if isinstance(tree, (tuple, list)):
            return tuple(to_numpy(t) for t in tree)
        return tree.detach().numpy()

    def warm_up() -> None:
        x = torch.ones(2, dtype=torch.float64, requires_grad=True)
        torch.autograd.grad((x * x).sum(), x)

    def warm_up_func() -> None:  # torch.func's first use has a one-time cost of its own
        torch.func.grad(lambda x: (x * x).sum())(torch.ones(2, dtype=torch.float64))

    # Eager: the input to differentiate carries requires_grad.
    eager_args = (tensors(wl.args[0], True),) + tensors(wl.op_args[1:])
    func_args = tensors(wl.op_args)
    if wl.kind == "grad":
        def eager(*args: Any) -> Any:
            wrt = args[0]
            grads = torch.autograd.grad(f(*args), wrt)
            return grads if isinstance(wrt, tuple) else grads[0]
        func_build = lambda: torch.func.grad(f)
    else:
        def eager(x: Any, v: Any) -> Any:  # reverse-over-reverse
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)
            return torch.autograd.grad(g, x, v)[0]
        func_build = lambda: (lambda x, v: torch.func.jvp(torch.func.grad(f), (x,), (v,))[1])
    yield Case("torch", wl.kind, eager_args, lambda: eager, to_numpy=to_numpy, warm_up=warm_up)
    yield Case("torch_func", wl.kind, func_args, func_build, to_numpy=to_numpy,
               warm_up=warm_up_func)


# --------------------------------------------------------------------------

GROUPS = {"numpy_": hand_cases, "numba_": hand_cases, "fastad": fastad_cases,
          "autograd": autograd_cases, "micrograd": micrograd_cases, "jax": jax_cases,
          "torch": torch_cases}  # row label prefix -> the engine group making that row


def cases(wl: Workload, quick: bool = False) -> list[Case | Skipped]:
    """All rows for one workload, baselines first."""
    groups = dict.fromkeys(GROUPS.values())  # each group once, in order
    if not wl.peers:
        groups = {hand_cases: None, fastad_cases: None}
    return [case for group in groups for case in group(wl, quick)]


def find(wl: Workload, label: str, quick: bool = False) -> Case:
    """One row, importing only its own engine (first-call subprocesses use this)."""
    group = next((g for prefix, g in GROUPS.items() if label.startswith(prefix)), None)
    for case in group(wl, quick) if group else ():
        if case.label == label and isinstance(case, Case):
            return case
    raise KeyError(f"no engine row {label!r} for {wl.name}")
