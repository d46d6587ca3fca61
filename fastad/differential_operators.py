"""autograd's ``autograd.differential_operators``: its transforms under their
names and signatures (`fastad.api`, `fastad.conventions`)."""
from __future__ import annotations

from . import (checkpoint, elementwise_grad, grad, grad_and_aux, grad_named, hessian,
               hessian_tensor_product, hessian_vector_product, holomorphic_grad, jacobian,
               make_ggnvp, make_hvp, make_jvp, make_vjp, multigrad_dict, tensor_jacobian_product,
               value_and_grad, vector_jacobian_product)
from .conventions import make_jvp_reversemode
from .extend import defvjp_argnum, primitive

deriv = elementwise_grad  # autograd's alias for a scalar function's derivative

__all__ = ["grad", "elementwise_grad", "value_and_grad", "grad_and_aux", "jacobian", "hessian",
           "make_vjp", "make_jvp", "make_jvp_reversemode", "make_hvp", "make_ggnvp", "hessian_tensor_product",
           "hessian_vector_product", "tensor_jacobian_product", "vector_jacobian_product",
           "holomorphic_grad", "grad_named", "multigrad_dict", "checkpoint", "deriv",
           "defvjp_argnum", "primitive"]
