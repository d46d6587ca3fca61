"""``jax.ad_checkpoint``: fastad's reverse sweep keeps the values it needs
(a compiled trace lets go of the rest), so ``checkpoint`` is the function
itself and names and policies change no value."""
from __future__ import annotations

from typing import Any

from .conventions import checkpoint
from .runtime import checkpoint_policies

__all__ = ["checkpoint", "checkpoint_name", "checkpoint_policies", "print_saved_residuals"]


def checkpoint_name(x: Any, name: str) -> Any:
    return x


def print_saved_residuals(f: Any, *args: Any, **kwargs: Any) -> None:
    print("fastad keeps every value the reverse sweep reads (no rematerialization)")
