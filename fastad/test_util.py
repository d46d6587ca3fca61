"""autograd's ``autograd.test_util``: ``check_grads`` with autograd's
calling convention, ``check_grads(f, argnum=0, modes=..., order=2)(*args)``
(`fastad.check.check_grads` takes the arguments directly: ``(f, args)``),
checking the derivatives in the argument ``argnum`` against central finite
differences, in both modes, to ``order``."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .check import check_grads as _check_grads


def check_grads(f: Callable[..., Any], argnum: int = 0, modes: Sequence[str] = ("fwd", "rev"),
                order: int = 2) -> Callable[..., None]:
    def check(*args: Any, **kwargs: Any) -> None:
        def of_one(x: Any) -> Any:
            return f(*args[:argnum], x, *args[argnum + 1:], **kwargs)
        _check_grads(of_one, (args[argnum],), order=order, modes=tuple(modes))
    return check


__all__ = ["check_grads"]
