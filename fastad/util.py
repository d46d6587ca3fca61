"""autograd's deprecated ``autograd.util``, for older code: ``quick_grad_check``
(with a DeprecationWarning, as autograd's) and ``flatten``."""
from __future__ import annotations

import warnings
from typing import Any, Callable

from .misc.flatten import flatten
from .test_util import check_grads

__all__ = ["quick_grad_check", "flatten"]


def quick_grad_check(fun: Callable[..., Any], arg0: Any, extra_args: tuple = (),
                     kwargs: dict | None = None, verbose: bool = True, eps: float = 1e-4,
                     rtol: float = 1e-4, atol: float = 1e-6, rs: Any = None) -> None:
    """autograd's ``quick_grad_check``: ``fun``'s derivatives in its first
    argument checked against central finite differences (`check_grads`)."""
    warnings.warn("quick_grad_check is deprecated; use fastad.test_util.check_grads",
                  DeprecationWarning, stacklevel=2)
    check_grads(lambda x: fun(x, *extra_args, **(kwargs or {})), modes=["rev"])(arg0)
