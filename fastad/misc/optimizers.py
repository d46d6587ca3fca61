"""Gradient-based stochastic optimizers with autograd's signatures.

``optimizer(grad, x0, callback=None, num_iters=..., step_size=..., ...)``:
``grad(params, i)`` returns the gradient at ``params`` for iteration ``i``
(a compiled gradient, ``fastad.compile(objective)`` with
``objective(params, i)``, or any function); ``callback(params, i, gradient)``
is called before each step; ``x0`` and the result are pytrees of arrays.
Code written for ``autograd.misc.optimizers`` runs unchanged.  The updates
are NumPy on the flat parameter vector (`fastad.misc.flatten`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from . import flatten

Grad = Callable[[Any, int], Any]
Callback = Callable[[Any, int, Any], Any] | None


def unflatten_optimizer(optimize: Callable[..., np.ndarray]) -> Callable[..., Any]:
    """autograd's decorator: ``optimize`` of flat vectors, made to take and
    return pytrees (gradients and callbacks see the pytrees)."""
    @functools.wraps(optimize)
    def over_pytrees(grad: Grad, x0: Any, callback: Callback = None, *args: Any,
                     **kwargs: Any) -> Any:
        x, unflatten = flatten(x0)
        x = np.asarray(x, dtype=np.float64)

        def flat_grad(v: np.ndarray, i: int) -> np.ndarray:
            return np.asarray(flatten(grad(unflatten(v), i))[0], dtype=np.float64)

        flat_callback = None
        if callback is not None:
            def flat_callback(v: np.ndarray, i: int, g: np.ndarray) -> Any:
                return callback(unflatten(v), i, unflatten(g))
        return unflatten(optimize(flat_grad, x, flat_callback, *args, **kwargs))
    return over_pytrees


@unflatten_optimizer
def sgd(grad: Grad, x: np.ndarray, callback: Callback = None, num_iters: int = 200,
        step_size: float = 0.1, mass: float = 0.9) -> np.ndarray:
    """Stochastic gradient descent with momentum ``mass`` (0: plain descent)."""
    velocity = np.zeros(len(x))
    for i in range(num_iters):
        g = grad(x, i)
        if callback:
            callback(x, i, g)
        velocity = mass * velocity - (1.0 - mass) * g
        x = x + step_size * velocity
    return x


@unflatten_optimizer
def momentum(grad: Grad, x: np.ndarray, callback: Callback = None, num_iters: int = 200,
             step_size: float = 0.1, mass: float = 0.9, nesterov: bool = False) -> np.ndarray:
    """Heavy-ball momentum: ``v = mass * v + g; x -= step_size * v`` (with
    ``nesterov``, the step uses ``g + mass * v``), as JAX's optimizers do."""
    velocity = np.zeros(len(x))
    for i in range(num_iters):
        g = grad(x, i)
        if callback:
            callback(x, i, g)
        velocity = mass * velocity + g
        x = x - step_size * (g + mass * velocity if nesterov else velocity)
    return x


@unflatten_optimizer
def rmsprop(grad: Grad, x: np.ndarray, callback: Callback = None, num_iters: int = 100,
            step_size: float = 0.1, gamma: float = 0.9, eps: float = 1e-8) -> np.ndarray:
    """Root mean squared propagation."""
    avg_sq_grad = np.ones(len(x))
    for i in range(num_iters):
        g = grad(x, i)
        if callback:
            callback(x, i, g)
        avg_sq_grad = avg_sq_grad * gamma + g ** 2 * (1 - gamma)
        x = x - step_size * g / (np.sqrt(avg_sq_grad) + eps)
    return x


@unflatten_optimizer
def adam(grad: Grad, x: np.ndarray, callback: Callback = None, num_iters: int = 100,
         step_size: float = 0.001, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> np.ndarray:
    """Adam (Kingma and Ba, arXiv:1412.6980): momentum with per-coordinate
    scales and bias correction."""
    m = np.zeros(len(x))
    v = np.zeros(len(x))
    for i in range(num_iters):
        g = grad(x, i)
        if callback:
            callback(x, i, g)
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * g ** 2 + b2 * v
        mhat = m / (1 - b1 ** (i + 1))
        vhat = v / (1 - b2 ** (i + 1))
        x = x - step_size * mhat / (np.sqrt(vhat) + eps)
    return x


__all__ = ["sgd", "momentum", "rmsprop", "adam", "unflatten_optimizer"]
