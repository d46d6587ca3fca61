"""autograd's and JAX's other names for fastad's transforms, with their
signatures and conventions, so code written for either runs unchanged:

* autograd: ``elementwise_grad``, ``make_vjp``, ``make_jvp``, ``make_hvp``,
  ``grad_and_aux``, ``hessian_vector_product``, ``hessian_tensor_product``,
  ``vector_jacobian_product``, ``tensor_jacobian_product``, ``grad_named``,
  ``multigrad_dict``, ``checkpoint`` (a function whose values the reverse
  sweep computes again instead of keeping them: here the sweep keeps them,
  so it is the function itself);
* autograd: ``holomorphic_grad``, ``make_ggnvp``;
* JAX: ``jacfwd``, ``jacrev``, ``linearize``, ``custom_jvp`` and
  ``custom_vjp`` (`fastad.custom_rules`), ``remat`` (``checkpoint``),
  ``eval_shape``, ``tree_map`` (`fastad.tree_util` has the rest), and
  ``jax.lax``'s ``stop_gradient``, ``cond`` and ``switch``.

Each is written with `fastad.api`'s transforms; argument positions are
autograd's ``argnum`` (an int) unless said otherwise.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from . import numpy as fnp
from .api import grad, hvp, jacobian, jvp, value_and_grad, vjp
from .custom_rules import custom_jvp, custom_vjp


def _at(args: tuple, argnum: int, x: Any) -> tuple:
    return args[:argnum] + (x,) + args[argnum + 1:]


def elementwise_grad(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """The vector-Jacobian product with a cotangent of ones: the derivative of
    each output element for functions that act elementwise."""
    def elementwise(*args: Any, **kwargs: Any) -> Any:
        out, vjp_fn = vjp(lambda x: fun(*_at(args, argnum, x), **kwargs), args[argnum])
        return vjp_fn(fnp.ones_like(out))[0]
    return elementwise


def make_vjp(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``make_vjp(f)(*args) -> (vjp_fn, ans)``, autograd's order."""
    def made(*args: Any, **kwargs: Any) -> tuple[Callable[[Any], Any], Any]:
        out, vjp_fn = vjp(lambda x: fun(*_at(args, argnum, x), **kwargs), args[argnum])
        return (lambda g: vjp_fn(g)[0]), out
    return made


def make_jvp(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``make_jvp(f)(*args)(v) -> (ans, J v)``."""
    def made(*args: Any, **kwargs: Any) -> Callable[[Any], tuple[Any, Any]]:
        def jvp_fn(v: Any) -> tuple[Any, Any]:
            return jvp(lambda x: fun(*_at(args, argnum, x), **kwargs), (args[argnum],), (v,))
        return jvp_fn
    return made


def make_jvp_reversemode(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """autograd's ``make_jvp_reversemode(f)(*args)(v) -> J v`` (autograd takes
    it as the VJP of a VJP; the forward-mode product is the same value)."""
    def made(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        jvp_fn = make_jvp(fun, argnum)(*args, **kwargs)
        return lambda v: jvp_fn(v)[1]
    return made


def make_hvp(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``make_hvp(f)(*args) -> (hvp_fn, grad)``: ``hvp_fn(v)`` is H v."""
    def made(*args: Any, **kwargs: Any) -> tuple[Callable[[Any], Any], Any]:
        g = grad(fun, argnum)(*args, **kwargs)
        return (lambda v: hvp(fun, argnum)(*args, v, **kwargs)), g
    return made


def grad_and_aux(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """For ``fun`` returning ``(value, aux)``: ``(grad, aux)``."""
    return grad(fun, argnum, has_aux=True)


def hessian_vector_product(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``hessian_vector_product(f)(*args, v)``: H v, forward over reverse."""
    return hvp(fun, argnum)


def hessian_tensor_product(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``hessian_tensor_product(f)(*args, t)``: the Hessian contracted with
    ``t`` over all of its axes (for a vector, H v)."""
    return hvp(fun, argnum)


def vector_jacobian_product(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``vector_jacobian_product(f)(*args, v)``: v^T J, v of f's output shape."""
    def product(*args: Any, **kwargs: Any) -> Any:
        args, v = args[:-1], args[-1]
        return vjp(lambda x: fun(*_at(args, argnum, x), **kwargs), args[argnum])[1](v)[0]
    return product


def tensor_jacobian_product(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``tensor_jacobian_product(f)(*args, t)``: ``t`` contracted with the
    Jacobian over the output's leading ``t.ndim`` axes, autograd's
    ``tensordot(t, J, t.ndim)``: the vjp when ``t`` has the output's shape,
    else the Jacobian of ``tensordot(t, f(*args), t.ndim)`` (what is left of
    the output's axes, then the argument's)."""
    def product(*args: Any, **kwargs: Any) -> Any:
        args, t = args[:-1], args[-1]
        at = lambda x: fun(*_at(args, argnum, x), **kwargs)  # noqa: E731
        out, pullback = vjp(at, args[argnum])
        if np.shape(t) == np.shape(out):
            return pullback(t)[0]
        return jacobian(lambda x: fnp.tensordot(t, at(x), axes=np.ndim(t)))(args[argnum])
    return product


def grad_named(fun: Callable[..., Any], argname: str) -> Callable[..., Any]:
    """The gradient with respect to the parameter named ``argname``."""
    return grad(fun, list(inspect.signature(fun).parameters).index(argname))


def multigrad_dict(fun: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """The gradients with respect to every parameter, by name."""
    names = list(inspect.signature(fun).parameters)

    def gradients(*args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = inspect.signature(fun).bind(*args, **kwargs)
        bound.apply_defaults()
        values = tuple(bound.arguments[n] for n in names)
        grads = value_and_grad(lambda *a: fun(*a), tuple(range(len(names))))(*values)[1]
        return dict(zip(names, grads))
    return gradients


def holomorphic_grad(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """The complex derivative f'(z) of a holomorphic ``fun`` (autograd's): the
    gradient of its real part, which under the convention for complex inputs
    (d/dx - i d/dy) is f'(z) by the Cauchy-Riemann equations."""
    def derivative(*args: Any, **kwargs: Any) -> Any:
        return grad(lambda *a: fnp.real(fun(*a, **kwargs)), argnum)(*args)
    return derivative


def make_ggnvp(f: Callable[..., Any], g: Callable[..., Any] | None = None,
               f_argnum: int = 0) -> Callable[..., Any]:
    """autograd's generalized Gauss-Newton product: ``make_ggnvp(f, g)(*args)``
    is the function ``v -> J^T H_g J v``, J the Jacobian of ``f`` at ``args``
    (in argument ``f_argnum``) and H_g the Hessian of ``g`` at ``f(*args)``;
    ``g`` defaults to autograd's ``0.5 * sum(y**2, axis=-1)``."""
    if g is None:
        def g(y: Any) -> Any:
            return 0.5 * fnp.sum(y ** 2, axis=-1)

    def made(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        def f_at(x: Any) -> Any:
            return f(*_at(args, f_argnum, x), **kwargs)
        f_x, f_vjp = vjp(f_at, args[f_argnum])
        grad_g = grad(g)

        def ggnvp(v: Any) -> Any:
            jv = jvp(f_at, (args[f_argnum],), (v,))[1]
            hjv = jvp(grad_g, (f_x,), (jv,))[1]
            return f_vjp(hjv)[0]
        return ggnvp
    return made


def checkpoint(fun: Callable[..., Any], *, prevent_cse: bool = True, policy: Any = None,
               static_argnums: Any = ()) -> Callable[..., Any]:
    """autograd's and JAX's checkpoint recompute ``fun``'s values in the reverse
    sweep to save memory; fastad's sweep keeps them (and a compiled trace lets
    go of what it no longer needs), so this is ``fun`` itself (JAX's
    ``prevent_cse``, ``policy`` and ``static_argnums`` choose what to save,
    and change no value)."""
    return fun


def jacfwd(fun: Callable[..., Any], argnums: int = 0, has_aux: bool = False,
           holomorphic: bool = False) -> Callable[..., Any]:
    """JAX's forward-mode Jacobian: ``jacobian(fun, argnums, mode="fwd")``."""
    return _jax_jacobian(fun, argnums, "fwd", has_aux, holomorphic)


def jacrev(fun: Callable[..., Any], argnums: int = 0, has_aux: bool = False,
           holomorphic: bool = False, allow_int: bool = False) -> Callable[..., Any]:
    """JAX's reverse-mode Jacobian: ``jacobian(fun, argnums, mode="rev")``."""
    return _jax_jacobian(fun, argnums, "rev", has_aux, holomorphic)


def _jax_jacobian(fun: Callable[..., Any], argnums: Any, mode: str, has_aux: bool,
                  holomorphic: bool) -> Callable[..., Any]:
    """JAX's options on `jacobian`: ``has_aux`` (fun returns ``(out, aux)``;
    the result is ``(jacobian, aux)``, aux from one more call of fun) and
    ``holomorphic`` (complex inputs, whose Jacobian is the complex derivative
    `jacobian` gives them)."""
    import numpy as np
    value = (lambda *a, **k: fun(*a, **k)[0]) if has_aux else fun
    jac = jacobian(value, argnums, mode=mode)

    def call(*args: Any, **kwargs: Any) -> Any:
        if holomorphic:
            picked = [args[k] for k in ((argnums,) if isinstance(argnums, int) else argnums)]
            from .core import pytree
            for leaf in pytree.flatten(picked)[0]:
                if not np.iscomplexobj(getattr(leaf, "value", leaf)):
                    raise TypeError("holomorphic=True requires complex inputs, got a leaf of "
                                    f"dtype {np.result_type(getattr(leaf, 'value', leaf))}")
        out = jac(*args, **kwargs)
        if mode == "rev":
            out = _of_input_dtypes(out, args, argnums)
        return (out, fun(*args, **kwargs)[1]) if has_aux else out
    return call


def _of_input_dtypes(out: Any, args: Any, argnums: Any) -> Any:
    """``jacrev``'s blocks in their input's float dtype, as JAX's: a row is
    a cotangent of the input (`jacobian` gives f's dtype in either mode, so
    that its "auto" pick never changes a dtype)."""
    from .core import pytree
    picked = args[argnums] if isinstance(argnums, int) else tuple(args[k] for k in argnums)
    dtypes = [fnp.result_dtype(leaf) for leaf in pytree.flatten(picked)[0]]
    leaves, tree = pytree.flatten(out)
    if not dtypes or len(leaves) % len(dtypes):
        return out
    cast = [fnp.astype(leaf, want) if want.kind == "f" and fnp.result_dtype(leaf).kind == "f"
            and fnp.result_dtype(leaf) != want else leaf
            for leaf, want in zip(leaves, dtypes * (len(leaves) // len(dtypes)))]
    return pytree.unflatten(tree, cast)


def block_until_ready(x: Any) -> Any:
    """``jax.block_until_ready``: fastad's results are ready when returned."""
    return x


def device_put(x: Any, device: Any = None, **kwargs: Any) -> Any:
    """``jax.device_put``: the pytree's leaves as NumPy arrays (one device)."""
    import numpy as np
    from .tree_util import tree_map
    return tree_map(lambda v: v if hasattr(v, "builder") else np.asarray(v), x)


device_get = device_put


def linearize(fun: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
    """JAX's ``linearize``: ``(fun(*primals), f_jvp)`` with ``f_jvp(*tangents)``
    the Jacobian-vector product at ``primals`` (each call a forward pass)."""
    out = fun(*primals)

    def f_jvp(*tangents: Any) -> Any:
        return jvp(fun, primals, tangents)[1]
    return out, f_jvp


remat = checkpoint
stop_gradient = fnp.stop_gradient


def cond(pred: Any, true_fun: Callable[..., Any], false_fun: Callable[..., Any],
         *operands: Any) -> Any:
    """``jax.lax.cond``: ``true_fun(*operands)`` if ``pred`` else
    ``false_fun(*operands)``.  A traced ``pred`` is Python control flow on a
    traced value: under a compiled trace a guard (a new outcome retraces).
    Under ``vmap`` both branches run and each example's result is selected
    (``where``), as JAX's batched ``cond`` does; prefer ``fastad.numpy.where``
    for selections per element."""
    if _batched_choice(pred):
        return _selected([true_fun(*operands), false_fun(*operands)],
                         [pred, True], "cond")
    return true_fun(*operands) if pred else false_fun(*operands)


def switch(index: Any, branches: Any, *operands: Any) -> Any:
    """``jax.lax.switch``: ``branches[index](*operands)``, ``index`` clamped to
    the branches' range as JAX does (a traced index: see `cond`)."""
    branches = list(branches)
    if not branches:
        raise ValueError("switch needs at least one branch")
    if _batched_choice(index) and len(branches) > 1:
        last = len(branches) - 1
        return _selected([b(*operands) for b in branches],
                         [index <= k for k in range(last)] + [True], "switch")
    for k, branch in enumerate(branches[:-1]):
        if index <= k:
            return branch(*operands)
    return branches[-1](*operands)


def _batched_choice(pred: Any) -> bool:
    """Whether ``pred`` is a traced value vmap is recording (its examples may
    choose differently)."""
    from .core.tracer import Tracer
    from .vectorizing import in_vmap_trace
    return isinstance(pred, Tracer) and in_vmap_trace()


def _selected(results: list[Any], chosen: list[Any], name: str) -> Any:
    """The first result whose ``chosen`` holds, leaf by leaf (``where``)."""
    from .core import pytree
    flat = [pytree.flatten(r) for r in results]
    tree = flat[0][1]
    if any(t != tree for _, t in flat):
        raise TypeError(f"{name}: the branches return different structures: "
                        f"{[t for _, t in flat]}")
    leaves = list(flat[-1][0])
    for (branch_leaves, _), pick in zip(flat[-2::-1], chosen[-2::-1]):
        leaves = [fnp.where(pick, a, b) for a, b in zip(branch_leaves, leaves)]
    return pytree.unflatten(tree, leaves)


def eval_shape(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``jax.eval_shape``: the shapes and dtypes of ``fun``'s results (a pytree
    of ``ShapeDtypeStruct``).  Arguments may be arrays or ShapeDtypeStructs
    (ours, JAX's, anything with a shape and a dtype that is no array), which
    stand for arrays of ones: ``fun`` runs once on them, as the eager function
    whose results a compiled one's equal in shape and dtype."""
    from .core.tracer import Tracer
    from .core import pytree
    import numpy as np

    def example(leaf: Any) -> Any:
        # ones, so that the run meets no log(0) or 1/0 real data would not
        if isinstance(leaf, (np.ndarray, np.generic, Tracer)):
            return leaf
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            return np.ones(tuple(leaf.shape), np.dtype(leaf.dtype))
        return leaf

    given, tree = pytree.flatten((args, kwargs))
    args, kwargs = pytree.unflatten(tree, [example(v) for v in given])
    with np.errstate(all="ignore"):
        leaves, tree = pytree.flatten(fun(*args, **kwargs))

    def struct(v: Any) -> Any:
        value = v.value if isinstance(v, Tracer) else v
        return ShapeDtypeStruct(np.shape(value), np.asarray(value).dtype)
    return pytree.unflatten(tree, [struct(v) for v in leaves])


class ShapeDtypeStruct:
    """A result's shape and dtype (``jax.ShapeDtypeStruct``)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Any, dtype: Any) -> None:
        import numpy as np
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __repr__(self) -> str:
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype.name})"

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, ShapeDtypeStruct) and self.shape == other.shape
                and self.dtype == other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any,
             is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``jax.tree_util.tree_map`` (`fastad.tree_util`)."""
    from .tree_util import tree_map as mapped
    return mapped(f, tree, *rest, is_leaf=is_leaf)


__all__ = ["remat", "stop_gradient", "cond", "switch", "eval_shape", "ShapeDtypeStruct",
           "tree_map", "holomorphic_grad", "make_ggnvp", "custom_jvp", "custom_vjp", "elementwise_grad", "make_vjp", "make_jvp", "make_hvp", "grad_and_aux",
           "hessian_vector_product", "hessian_tensor_product", "vector_jacobian_product",
           "tensor_jacobian_product", "grad_named", "multigrad_dict", "checkpoint", "jacfwd",
           "jacrev", "linearize", "block_until_ready", "device_put", "device_get"]
