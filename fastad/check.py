"""Checking derivatives against central finite differences in random directions.

For a random input direction u and a random output weighting w,

    w . (f(x + eps u) - f(x - eps u)) / (2 eps)  ~  w . (J u)

where ``J u`` comes from forward mode (``jvp``) and ``w . J u = (J^T w) . u``
from reverse mode (``vjp``).  Complex inputs are perturbed in their real and
imaginary parts at once (u is complex), and ``a . b`` is ``Re(sum(a * b))``,
the pairing under which fastad's (and autograd's and JAX's) cotangents are
transposes.  Higher orders check the VJP (and the JVP) as a function of
the point and of the cotangent (tangent) it is given, recursively, as
autograd's ``check_grads`` does.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .core import pytree
from .api import jvp, vjp

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


class DerivativeMismatch(AssertionError):
    """A derivative that disagrees with central finite differences: of mode
    ``mode`` ("fwd" or "rev"), at ``level`` (1: f's own; 2: the derivative of
    its VJP or JVP, ...)."""

    def __init__(self, message: str, mode: str, level: int) -> None:
        super().__init__(message)
        self.mode, self.level = mode, level


def check_grads(f: Callable[..., Any], args: Sequence[Any], order: int = 1,
                modes: Sequence[str] = ("fwd", "rev"), eps: float | None = None,
                rtol: float | None = None, atol: float | None = None, seed: int = 0,
                _level: int = 1) -> None:
    """Raise `DerivativeMismatch` (an AssertionError), with the worst
    mismatch, if f's derivatives up to ``order`` disagree with central finite
    differences.  Each order checks the previous order's VJP (or JVP) as a
    function of both the point and the cotangent (tangent) it is given, as
    autograd's check does: a rule wrong in how it depends on its cotangent
    shows at order 2."""
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
            raise DerivativeMismatch(
                f"check_grads ({mode} mode, order {_level} of {order + _level - 1}): "
                f"directional derivative {analytic!r} from autodiff but {numeric!r} from "
                f"central finite differences (eps={eps}); absolute error {err:.3g}, "
                f"relative {err / max(abs(numeric), 1e-300):.3g}", mode, _level)

    if order > 1:
        out_tree = pytree.flatten(f(*args))[1]
        weights = pytree.unflatten(out_tree, [w.astype(_dtype_of(o)) for w, o in zip(weight, out0)])
        for mode in modes:
            given = weights if mode == "rev" else unflat(direction)
            check_grads(_derivative(f, mode, len(args), unflat(direction), weight),
                        args + (given,), order - 1, modes, eps, rtol, atol, seed + 1,
                        _level + 1)


def _derivative(f: Callable[..., Any], mode: str, nargs: int, direction: tuple[Any, ...],
                weight: list[np.ndarray]) -> Callable[..., Any]:
    """The derivative of f as a scalar function of the point and of what the
    mode is given: (x, cotangent) -> VJP(x)(cotangent) . direction, or
    (x, tangent) -> weight . JVP(x)(tangent)."""
    def by_rev(*xs_and_cotangent: Any) -> Any:
        xs, cotangent = xs_and_cotangent[:nargs], xs_and_cotangent[nargs]
        cts = vjp(f, *xs)[1](cotangent)
        return _paired([v for ct in cts for v in pytree.flatten(ct)[0]],
                       pytree.flatten(direction)[0])

    def by_fwd(*xs_and_tangent: Any) -> Any:
        xs, tangent = xs_and_tangent[:nargs], xs_and_tangent[nargs]
        return _paired(pytree.flatten(jvp(f, xs, tangent)[1])[0], weight)
    return by_fwd if mode == "fwd" else by_rev


def _paired(values: list[Any], others: list[Any]) -> Any:
    """Re(sum(a * b)) over the leaves, traced where the values are."""
    total = 0.0
    for a, b in zip(values, others):
        total = total + (a * b).sum()
    return np.real(total)


def _dtype_of(x: Any) -> np.dtype:
    return x.dtype if hasattr(x, "dtype") else np.result_type(x)
