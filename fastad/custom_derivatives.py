"""``jax.custom_derivatives``: the custom-rule names, as `fastad.custom_rules`
and `fastad.runtime` define them."""
from __future__ import annotations

from .custom_rules import custom_jvp, custom_vjp
from .runtime import closure_convert, custom_gradient

__all__ = ["closure_convert", "custom_gradient", "custom_jvp", "custom_vjp"]
