"""autograd's ``autograd.test_util``, under its names and conventions:
``check_grads(f, argnum=0, modes=..., order=2)(*args)`` (``argnum`` an int or
a tuple of them), ``check_vjp``, ``check_jvp``, ``check_equivalent``,
``scalar_close`` and ``combo_check``.  Each compares fastad's derivatives of
``f`` (any pytree of real or complex arrays in and out) with central finite
differences in random directions, as autograd's do; `fastad.check.
check_grads` is the same check taking the arguments directly."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

from .check import DerivativeMismatch, check_grads as _check_grads
from .conventions import make_jvp, make_vjp
from .misc.flatten import flatten

TOL = 1e-6
RTOL = 1e-6
EPS = 1e-6


def scalar_close(a: Any, b: Any) -> bool:
    return abs(a - b) < TOL or abs(a - b) / abs(a + b) < RTOL


def _vector(x: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """x's leaves as one vector (complex if any leaf is) and the way back."""
    flat, unflatten = flatten(x)
    return np.asarray(flat), unflatten


def _randn(x: Any, rng: np.random.Generator) -> Any:
    flat, unflatten = _vector(x)
    v = rng.standard_normal(flat.shape)
    if np.iscomplexobj(flat):
        v = v + 1j * rng.standard_normal(flat.shape)
    return unflatten(v.astype(flat.dtype))


def _inner(a: Any, b: Any) -> float:
    """autograd's inner product: the real part of conj(a) . b."""
    return float(np.real(np.vdot(_vector(a)[0], _vector(b)[0])))


def _covector(x: Any) -> Any:
    flat, unflatten = _vector(x)
    return unflatten(np.conj(flat))


def _structure(x: Any) -> tuple[Any, ...]:
    flat, _ = _vector(x)
    return flat.shape, np.iscomplexobj(flat)


def _numerical_jvp(f: Callable[[Any], Any], x: Any) -> Callable[[Any], Any]:
    flat_x, back_x = _vector(x)

    def jvp(v: Any) -> Any:
        step = _vector(v)[0] * (EPS / 2)
        plus, back_y = _vector(f(back_x(flat_x + step)))
        minus = _vector(f(back_x(flat_x - step)))[0]
        return back_y((plus - minus) / EPS)
    return jvp


def check_vjp(f: Callable[[Any], Any], x: Any, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vjp, y = make_vjp(f)(x)
    x_v, y_v = _randn(x, rng), _randn(y, rng)
    vjp_y = _covector(vjp(_covector(y_v)))
    assert _structure(vjp_y) == _structure(x), \
        f"VJP of {_name(f)} has the structure {_structure(vjp_y)}, not x's {_structure(x)}"
    exact = _inner(x_v, vjp_y)
    numeric = _inner(y_v, _numerical_jvp(f, x)(x_v))
    assert scalar_close(numeric, exact), (
        f"Derivative (VJP) check of {_name(f)} failed with arg {x}:\n"
        f"analytic: {exact}\nnumeric:  {numeric}")


def check_jvp(f: Callable[[Any], Any], x: Any, seed: int = 0) -> None:
    x_v = _randn(x, np.random.default_rng(seed))
    check_equivalent(make_jvp(f)(x)(x_v)[1], _numerical_jvp(f, x)(x_v))


def check_equivalent(x: Any, y: Any) -> None:
    assert _structure(x) == _structure(y), f"structure mismatch:\nx: {x}\ny: {y}"
    v = _randn(x, np.random.default_rng(1))
    assert scalar_close(_inner(x, v), _inner(y, v)), f"Value mismatch:\nx: {x}\ny: {y}"


def _name(f: Any) -> str:
    return getattr(f, "__name__", repr(f))


def check_grads(f: Callable[..., Any], argnum: int | Sequence[int] = 0,
                modes: Sequence[str] = ("fwd", "rev"), order: int = 2) -> Callable[..., None]:
    """``check_grads(f, argnum, modes, order)(*args, **kwargs)``: f's
    derivatives in ``args[argnum]`` (a tuple of argnums: in those arguments
    together) to ``order``, against central finite differences."""
    def check(*args: Any, **kwargs: Any) -> None:
        nums = (argnum,) if isinstance(argnum, int) else tuple(argnum)

        def of_some(*xs: Any) -> Any:
            full = list(args)
            for i, x in zip(nums, xs):
                full[i] = x
            return f(*full, **kwargs)
        try:
            _check_grads(of_some, tuple(args[i] for i in nums), order=order,
                         modes=tuple(modes))
        except DerivativeMismatch as exc:  # autograd's words: "(VJP) check of vjp_f failed"
            kind = "VJP" if exc.mode == "rev" else "JVP"
            name = f"{kind.lower()}_" * (exc.level - 1) + _name(f)
            raise AssertionError(f"Derivative ({kind}) check of {name} failed: {exc}") from None
    return check


def combo_check(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., None]:
    """``combo_check(fun, argnum, ...)(arg_values..., kw=values...)``:
    `check_grads` at every combination of the given values."""
    def _combo_check(*arg_values: Any, **kwarg_values: Any) -> None:
        pairs = [[(k, v) for v in vs] for k, vs in kwarg_values.items()]
        for chosen in itertools.product(*arg_values):
            for chosen_kw in itertools.product(*pairs):
                check_grads(fun, *args, **kwargs)(*chosen, **dict(chosen_kw))
    return _combo_check


__all__ = ["check_grads", "check_vjp", "check_jvp", "check_equivalent", "scalar_close",
           "combo_check"]
