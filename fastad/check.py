"""Checking derivatives against central finite differences in random directions.

For a random input direction u and a random output weighting w,

    w . (f(x + eps u) - f(x - eps u)) / (2 eps)  ~  w . (J u)

where ``J u`` comes from forward mode (``jvp``) and ``w . J u = (J^T w) . u``
from reverse mode (``vjp``).  Complex inputs are perturbed in their real and
imaginary parts at once (u is complex), and ``a . b`` is ``Re(sum(a * b))``,
the pairing under which fastad's (and autograd's and JAX's) cotangents are
transposes.  Higher orders check the directional derivative
itself, recursively, as autograd's ``check_grads`` does.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .core import pytree
from .api import grad, jvp, vjp

_TOLERANCES = {np.dtype(np.float64): (1e-6, 1e-5, 1e-7), np.dtype(np.float32): (1e-2, 3e-2, 1e-3)}
_TOLERANCES[np.dtype(np.complex128)] = _TOLERANCES[np.dtype(np.float64)]
_TOLERANCES[np.dtype(np.complex64)] = _TOLERANCES[np.dtype(np.float32)]


def _flat_float(tree: Any) -> tuple[list[np.ndarray], Any]:
    leaves, treedef = pytree.flatten(tree)
    return [np.asarray(v) for v in leaves], treedef


def _wide(x: Any) -> np.ndarray:
    """x in float64, or complex128 if it is complex."""
    x = np.asarray(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _dot(a: Sequence[Any], b: Sequence[Any]) -> float:
    return float(sum(np.real(np.sum(_wide(x) * _wide(y))) for x, y in zip(a, b)))


def _random_like(rng: np.random.Generator, x: Any) -> np.ndarray:
    """Standard normal of x's shape and dtype; complex in both parts."""
    dtype = np.result_type(x)
    out = rng.standard_normal(np.shape(x))
    if dtype.kind == "c":
        out = out + 1j * rng.standard_normal(np.shape(x))
    return out.astype(dtype if dtype.kind in "fc" else np.float64)


def _combine(a: Sequence[np.ndarray], b: Sequence[np.ndarray], scale: float) -> list[Any]:
    # np.asarray keeps 0-d inputs arrays (NumPy arithmetic would make them scalars)
    return [np.asarray(np.asarray(x) + scale * np.asarray(y), dtype=np.result_type(x))
            for x, y in zip(a, b)]


def check_grads(f: Callable[..., Any], args: Sequence[Any], order: int = 1,
                modes: Sequence[str] = ("fwd", "rev"), eps: float | None = None,
                rtol: float | None = None, atol: float | None = None, seed: int = 0) -> None:
    """Raise AssertionError, with the worst mismatch, if f's derivatives up to
    ``order`` disagree with central finite differences."""
    args = tuple(args)
    leaves, trees = zip(*(_flat_float(a) for a in args)) if args else ((), ())
    flat = [v for ls in leaves for v in ls]
    dtype = np.result_type(*flat) if flat else np.dtype(np.float64)
    d_eps, d_rtol, d_atol = _TOLERANCES.get(np.dtype(dtype), _TOLERANCES[np.dtype(np.float64)])
    eps, rtol, atol = eps or d_eps, rtol or d_rtol, atol or d_atol
    rng = np.random.default_rng(seed)

    def unflat(values: list[Any]) -> tuple[Any, ...]:
        out, k = [], 0
        for tree, ls in zip(trees, leaves):
            out.append(pytree.unflatten(tree, values[k:k + len(ls)]))
            k += len(ls)
        return tuple(out)

    direction = [_random_like(rng, v) for v in flat]
    out0 = pytree.flatten(f(*args))[0]
    weight = [_random_like(rng, o) for o in out0]

    def weighted(*xs: Any) -> Any:
        outs = pytree.flatten(f(*xs))[0]
        total = 0.0
        for o, w in zip(outs, weight):
            total = total + (o * w.astype(_dtype_of(o))).sum()
        return np.real(total)

    plus = pytree.flatten(f(*unflat(_combine(flat, direction, eps))))[0]
    minus = pytree.flatten(f(*unflat(_combine(flat, direction, -eps))))[0]
    numeric = _dot([(_wide(p) - _wide(m)) / (2 * eps)
                    for p, m in zip(plus, minus)], weight)

    for mode in modes:
        if mode == "fwd":
            _, tangent_out = jvp(f, args, unflat(direction))
            analytic = _dot(pytree.flatten(tangent_out)[0], weight)
        elif mode == "rev":
            out, vjp_fn = vjp(f, *args)
            _, out_tree = pytree.flatten(out)
            cts = vjp_fn(pytree.unflatten(out_tree, [w.astype(np.result_type(o))
                                                     for w, o in zip(weight, out0)]))
            analytic = _dot([v for ct in cts for v in pytree.flatten(ct)[0]], direction)
        else:
            raise ValueError(f"check_grads: unknown mode {mode!r}; use 'fwd' or 'rev'")
        err = abs(analytic - numeric)
        if not err <= atol + rtol * max(abs(numeric), abs(analytic)):
            raise AssertionError(
                f"check_grads ({mode} mode, order 1 of {order}): directional derivative "
                f"{analytic!r} from autodiff but {numeric!r} from central finite differences "
                f"(eps={eps}); absolute error {err:.3g}, relative {err / max(abs(numeric), 1e-300):.3g}")

    if order > 1:
        for mode in modes:
            check_grads(_directional(weighted, mode, unflat(direction)), args, order - 1,
                        modes, eps, rtol, atol, seed + 1)


def _directional(f: Callable[..., Any], mode: str, direction: tuple[Any, ...]
                 ) -> Callable[..., Any]:
    """x -> (derivative of scalar f at x) . direction, by the given mode."""
    def by_fwd(*xs: Any) -> Any:
        return jvp(f, xs, direction)[1]

    def by_rev(*xs: Any) -> Any:
        grads = grad(f, tuple(range(len(xs))))(*xs)
        total = 0.0
        for g, u in zip(pytree.flatten(grads)[0], pytree.flatten(direction)[0]):
            total = total + (g * u).sum()
        return np.real(total)
    return by_fwd if mode == "fwd" else by_rev


def _dtype_of(x: Any) -> np.dtype:
    return x.dtype if hasattr(x, "dtype") else np.result_type(x)
