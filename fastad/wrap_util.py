"""autograd's ``autograd.wrap_util``: ``unary_to_nary``, the decorator its
differential operators are written with, for users who write their own
(``@unary_to_nary def my_grad(fun, x): ...`` gives ``my_grad(f, argnum)``)."""
from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["unary_to_nary", "wraps"]

wraps = functools.wraps


def unary_to_nary(unary_operator: Callable[..., Any]) -> Callable[..., Any]:
    """``unary_operator(fun, x, *extra)`` of a function of one argument, as
    ``operator(fun, argnum=0, *extra)(*args, **kwargs)``: ``fun`` seen as a
    function of ``args[argnum]`` (a tuple of them when ``argnum`` is a
    tuple), the other arguments held fixed."""
    @functools.wraps(unary_operator)
    def nary_operator(fun: Callable[..., Any], argnum: Any = 0, *op_args: Any,
                      **op_kwargs: Any) -> Callable[..., Any]:
        if not isinstance(argnum, (int, tuple, list)):
            raise TypeError(f"argnum must be an int or a tuple of ints, not {argnum!r}")
        several = not isinstance(argnum, int)

        @functools.wraps(fun, updated=())
        def nary_f(*args: Any, **kwargs: Any) -> Any:
            def unary_f(x: Any) -> Any:
                new = list(args)
                for k, v in (zip(argnum, x) if several else ((argnum, x),)):
                    new[k] = v
                return fun(*new, **kwargs)
            x = tuple(args[k] for k in argnum) if several else args[argnum]
            return unary_operator(unary_f, x, *op_args, **op_kwargs)
        nary_f.__name__ = f"{unary_operator.__name__}_of_{getattr(fun, '__name__', 'fun')}"
        return nary_f
    return nary_operator
