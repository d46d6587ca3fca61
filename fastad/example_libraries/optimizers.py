"""``jax.example_libraries.optimizers``: each optimizer is a triple
``(init_fun, update_fun, get_params)`` over pytrees of parameters; the
state is a pytree (the per-leaf states as children, the structures as
metadata), so a jitted ``update(i, grads, state)`` takes it as an argument
and ``i`` as data (a schedule of ``i`` compiles once)."""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

from .. import numpy as jnp
from ..core import pytree
from ..tree_util import register_pytree_node

__all__ = ["OptimizerState", "Optimizer", "optimizer", "sgd", "momentum", "nesterov", "adagrad",
           "rmsprop", "rmsprop_momentum", "adam", "adamax", "sm3", "constant",
           "exponential_decay", "inverse_time_decay", "polynomial_decay", "piecewise_constant",
           "make_schedule", "l2_norm", "clip_grads", "unpack_optimizer_state",
           "pack_optimizer_state"]


class OptimizerState(NamedTuple):
    packed_state: list  # per parameter leaf, the leaves of its state
    tree_def: Any
    subtree_defs: tuple


register_pytree_node(OptimizerState,
                     lambda s: (s.packed_state, (s.tree_def, s.subtree_defs)),
                     lambda aux, children: OptimizerState(list(children), *aux))


class Optimizer(NamedTuple):
    init_fn: Callable[..., Any]
    update_fn: Callable[..., Any]
    params_fn: Callable[..., Any]


def optimizer(opt_maker: Callable[..., Any]) -> Callable[..., Optimizer]:
    """An optimizer written for one array, made one for pytrees of arrays."""
    @functools.wraps(opt_maker)
    def tree_opt_maker(*args: Any, **kwargs: Any) -> Optimizer:
        init, update, get_params = opt_maker(*args, **kwargs)

        def tree_init(x0_tree: Any) -> OptimizerState:
            x0_flat, tree = pytree.flatten(x0_tree)
            flats = [pytree.flatten(init(x0)) for x0 in x0_flat]
            return OptimizerState([f for f, _ in flats], tree, tuple(t for _, t in flats))

        def tree_update(i: Any, grad_tree: Any, opt_state: OptimizerState) -> OptimizerState:
            states_flat, tree, subtrees = opt_state
            grad_flat, tree2 = pytree.flatten(grad_tree)
            if tree2 != tree:
                raise TypeError("optimizer update function was passed a gradient tree that did "
                                "not match the parameter tree structure it was initialized "
                                f"with: parameter tree {tree} and gradient tree {tree2}")
            new = [pytree.flatten(update(i, g, pytree.unflatten(sub, list(state))))
                   for g, state, sub in zip(grad_flat, states_flat, subtrees)]
            for (_, sub2), sub in zip(new, subtrees):
                if sub2 != sub:
                    raise TypeError("optimizer update function produced an output structure "
                                    f"that did not match its input structure: {sub} and {sub2}")
            return OptimizerState([f for f, _ in new], tree, subtrees)

        def tree_get_params(opt_state: OptimizerState) -> Any:
            states_flat, tree, subtrees = opt_state
            return pytree.unflatten(tree, [get_params(pytree.unflatten(sub, list(state)))
                                           for state, sub in zip(states_flat, subtrees)])

        return Optimizer(tree_init, tree_update, tree_get_params)
    return tree_opt_maker


@optimizer
def sgd(step_size: Any) -> tuple:
    step_size = make_schedule(step_size)
    return (lambda x0: x0, lambda i, g, x: x - step_size(i) * g, lambda x: x)


@optimizer
def momentum(step_size: Any, mass: float) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, velocity = state
        velocity = mass * velocity + g
        return x - step_size(i) * velocity, velocity
    return (lambda x0: (x0, jnp.zeros_like(x0)), update, lambda state: state[0])


@optimizer
def nesterov(step_size: Any, mass: float) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, velocity = state
        velocity = mass * velocity + g
        return x - step_size(i) * (mass * velocity + g), velocity
    return (lambda x0: (x0, jnp.zeros_like(x0)), update, lambda state: state[0])


@optimizer
def adagrad(step_size: Any, momentum: float = 0.9) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, g_sq, m = state
        g_sq = g_sq + jnp.square(g)
        inv = jnp.where(g_sq > 0, 1.0 / jnp.sqrt(jnp.where(g_sq > 0, g_sq, 1.0)), 0.0)
        m = (1.0 - momentum) * (g * inv) + momentum * m
        return x - step_size(i) * m, g_sq, m
    return (lambda x0: (x0, jnp.zeros_like(x0), jnp.zeros_like(x0)), update,
            lambda state: state[0])


@optimizer
def rmsprop(step_size: Any, gamma: float = 0.9, eps: float = 1e-8) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, avg_sq_grad = state
        avg_sq_grad = avg_sq_grad * gamma + jnp.square(g) * (1.0 - gamma)
        return x - step_size(i) * g / jnp.sqrt(avg_sq_grad + eps), avg_sq_grad
    return (lambda x0: (x0, jnp.zeros_like(x0)), update, lambda state: state[0])


@optimizer
def rmsprop_momentum(step_size: Any, gamma: float = 0.9, eps: float = 1e-8,
                     momentum: float = 0.9) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, avg_sq_grad, mom = state
        avg_sq_grad = avg_sq_grad * gamma + jnp.square(g) * (1.0 - gamma)
        mom = momentum * mom + step_size(i) * g / jnp.sqrt(avg_sq_grad + eps)
        return x - mom, avg_sq_grad, mom
    return (lambda x0: (x0, jnp.zeros_like(x0), jnp.zeros_like(x0)), update,
            lambda state: state[0])


@optimizer
def adam(step_size: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, m, v = state
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * jnp.square(g) + b2 * v
        mhat = m / (1 - jnp.asarray(b1, m.dtype) ** (i + 1))  # bias corrections
        vhat = v / (1 - jnp.asarray(b2, m.dtype) ** (i + 1))
        return x - step_size(i) * mhat / (jnp.sqrt(vhat) + eps), m, v
    return (lambda x0: (x0, jnp.zeros_like(x0), jnp.zeros_like(x0)), update,
            lambda state: state[0])


@optimizer
def adamax(step_size: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> tuple:
    step_size = make_schedule(step_size)

    def update(i: Any, g: Any, state: Any) -> Any:
        x, m, u = state
        m = (1 - b1) * g + b1 * m
        u = jnp.maximum(b2 * u, jnp.abs(g))
        return x - (step_size(i) / (1 - jnp.asarray(b1, m.dtype) ** (i + 1))) * m / (u + eps), m, u
    return (lambda x0: (x0, jnp.zeros_like(x0), jnp.zeros_like(x0)), update,
            lambda state: state[0])


@optimizer
def sm3(step_size: Any, momentum: float = 0.9) -> tuple:
    """SM3: one accumulator per axis (the row and column maxima of a matrix)."""
    step_size = make_schedule(step_size)

    def along(ndim: int, v: Any, axis: int) -> Any:
        return v[tuple(slice(None) if k == axis else None for k in range(ndim))]

    def init(x0: Any) -> Any:
        x = jnp.atleast_1d(x0)
        return x, jnp.zeros_like(x), [jnp.zeros(n, dtype=x.dtype) for n in x.shape]

    def update(i: Any, g: Any, state: Any) -> Any:
        x, m, vs = state
        g = jnp.reshape(g, x.shape)
        accum = functools.reduce(jnp.minimum, [along(x.ndim, v, k) for k, v in enumerate(vs)]) \
            + jnp.square(g)
        inv = jnp.where(accum > 0, 1.0 / jnp.sqrt(jnp.where(accum > 0, accum, 1.0)), 0.0)
        m = (1.0 - momentum) * (g * inv) + momentum * m
        vs = [jnp.max(accum, axis=tuple(a for a in range(x.ndim) if a != k))
              for k in range(x.ndim)]
        return x - step_size(i) * m, m, vs

    return init, update, lambda state: state[0]


# -- step size schedules --------------------------------------------------------------
def constant(step_size: Any) -> Callable[[Any], Any]:
    return lambda i: step_size


def exponential_decay(step_size: Any, decay_steps: Any, decay_rate: Any) -> Callable[[Any], Any]:
    return lambda i: step_size * decay_rate ** (i / decay_steps)


def inverse_time_decay(step_size: Any, decay_steps: Any, decay_rate: Any,
                       staircase: bool = False) -> Callable[[Any], Any]:
    if staircase:
        return lambda i: step_size / (1 + decay_rate * jnp.floor(i / decay_steps))
    return lambda i: step_size / (1 + decay_rate * i / decay_steps)


def polynomial_decay(step_size: Any, decay_steps: Any, final_step_size: Any,
                     power: float = 1.0) -> Callable[[Any], Any]:
    def schedule(i: Any) -> Any:
        mult = (1 - jnp.minimum(i, decay_steps) / decay_steps) ** power
        return mult * (step_size - final_step_size) + final_step_size
    return schedule


def piecewise_constant(boundaries: Any, values: Any) -> Callable[[Any], Any]:
    boundaries, values = jnp.asarray(boundaries), jnp.asarray(values)
    if not boundaries.ndim == values.ndim == 1:
        raise ValueError("boundaries and values must be sequences")
    if not boundaries.shape[0] == values.shape[0] - 1:
        raise ValueError("boundaries length must be one shorter than values length")
    return lambda i: values[jnp.sum(i > boundaries)]


def make_schedule(scalar_or_schedule: Any) -> Callable[[Any], Any]:
    if callable(scalar_or_schedule):
        return scalar_or_schedule
    if jnp.ndim(scalar_or_schedule) == 0:
        return constant(scalar_or_schedule)
    raise TypeError(type(scalar_or_schedule))


# -- utilities --------------------------------------------------------------------------
def l2_norm(tree: Any) -> Any:
    """The l2 norm of all the leaves of ``tree`` together."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in pytree.flatten(tree)[0]))


def clip_grads(grad_tree: Any, max_norm: Any) -> Any:
    """``grad_tree`` scaled to l2 norm ``max_norm`` where it is longer."""
    norm = l2_norm(grad_tree)
    factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
    leaves, tree = pytree.flatten(grad_tree)
    return pytree.unflatten(tree, [g * factor for g in leaves])


def unpack_optimizer_state(opt_state: OptimizerState) -> Any:
    """The state as a pytree of the parameters' structure, each leaf its
    state's tree (for saving with pickle)."""
    states_flat, tree, subtrees = opt_state
    return pytree.unflatten(tree, [_Point(pytree.unflatten(sub, list(s)))
                                   for s, sub in zip(states_flat, subtrees)])


def pack_optimizer_state(marked_pytree: Any) -> OptimizerState:
    """The inverse of `unpack_optimizer_state`."""
    points, tree = pytree.flatten(marked_pytree)  # (a _Point is a leaf)
    flats = [pytree.flatten(p.subtree) for p in points]
    return OptimizerState([f for f, _ in flats], tree, tuple(t for _, t in flats))


class _Point:
    """A leaf standing for one parameter's optimizer state (JAX's JoinPoint)."""

    def __init__(self, subtree: Any) -> None:
        self.subtree = subtree

    def __iter__(self) -> Any:
        yield from self.subtree


JoinPoint = _Point
