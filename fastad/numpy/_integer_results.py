"""Integer results of integer inputs, of the dtype NumPy gives them.

Integers a compiled function takes as data are held in float64
(`core.int_data`); a function of fastad.numpy that NumPy answers with
integers when its inputs are integers (a sum, a max, a product, ``triu``)
would otherwise hand back floats, so that ``jit(f)(labels)`` and
``vmap(f)(labels)`` returned float64 where ``f(labels)`` returns int64, and
the result could not index.  Each function named in `RULES` is wrapped once
(`integer_results`): when every array operand is an integer (taken as data,
or plain) and one is traced, its result is integer data of NumPy's dtype;
when every operand is plain, its result is cast to that dtype.  The rule
says how NumPy chooses it: ``summed`` (an accumulation: small integers
become the platform's, np.add.reduce's rule), ``same`` (a choice or a
rounding of the operand's elements), ``promoted`` (a product of several
operands, their common dtype).  A ``dtype=`` keyword is NumPy's own choice.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..core.int_data import _INTEGER_TYPES, INTEGER_RESULTS, integers_in
from ..core.tracer import FRONT_END, Tracer


def _summed(dtypes: list[np.dtype]) -> np.dtype:
    return np.add.reduce(np.zeros(1, np.result_type(*dtypes))).dtype


def _same(dtypes: list[np.dtype]) -> np.dtype:
    return dtypes[0]


def _promoted(dtypes: list[np.dtype]) -> np.dtype:
    return np.result_type(*dtypes)


RULES: dict[str, Callable[[list[np.dtype]], np.dtype]] = {
    **dict.fromkeys(("sum", "prod", "cumsum", "cumprod", "nansum", "nanprod", "nancumsum",
                     "nancumprod", "trace", "cumulative_sum", "cumulative_prod"), _summed),
    **dict.fromkeys(("max", "min", "amax", "amin", "nanmax", "nanmin", "ptp", "sign", "round",
                     "around", "round_", "floor", "ceil", "trunc", "fix", "triu", "tril",
                     "pad"), _same),
    **dict.fromkeys(("dot", "matmul", "inner", "outer", "vdot", "tensordot", "kron", "cross",
                     "convolve", "einsum", "vecdot", "matvec", "vecmat"), _promoted),
}

def _integer_dtype(x: Any) -> np.dtype | None:
    """The integer dtype of an operand, None for anything else."""
    if type(x) in _INTEGER_TYPES:
        return np.dtype(np.int64) if x.data_dtype is int else np.dtype(x.data_dtype)
    if isinstance(x, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(x, (int, np.integer)):
        return np.dtype(np.int64) if isinstance(x, int) else x.dtype
    if type(x) is np.ndarray and x.dtype.kind in "iub":
        return x.dtype
    return None


def _as_numpys(rule: Callable[[list[np.dtype]], np.dtype], result: Any, operands: tuple,
               dtype: Any = None) -> Any:
    """``result`` of integer ``operands`` as NumPy's integers (`RULES`), or
    as it is when an operand is not an integer (or ``dtype`` not one)."""
    if dtype is not None:
        dtype = np.dtype(dtype)
    else:
        dtypes = [_integer_dtype(a) for a in operands]
        if not dtypes or any(d is None for d in dtypes):
            return result
        dtype = rule(dtypes)
    if dtype.kind not in "iu":  # a float asked for, or the max of masks (a bool)
        return result
    if not isinstance(result, Tracer):
        return np.asarray(result).astype(dtype, copy=False) if np.ndim(result) else \
            dtype.type(result)
    sources = frozenset().union(*(a.sources for a in operands if type(a) in _INTEGER_TYPES))
    return integers_in(result, sources, dtype, dtype if rule is _same else None)


def integer_results(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` giving NumPy's integers for integer operands (`RULES[name]`)."""
    rule = RULES[name]
    skip = 1 if name == "einsum" else 0  # its subscripts
    # operands beyond the arrays (pad's widths, tensordot's axes) are not read
    arrays = {"pad": 1, "triu": 1, "tril": 1, "tensordot": 2}.get(name)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype")
        if dtype is not None and not skip and args and isinstance(args[0], Tracer) \
                and args[0].dtype.kind == "f" and np.dtype(dtype).kind in "iu":
            # floats accumulated in integers (``np.nancumsum(x, dtype=int)``):
            # each element cast first, as NumPy's, then integers throughout
            args = (FRONT_END["astype"](args[0], dtype),) + args[1:]
        result = fn(*args, **kwargs)
        operands = args[skip:skip + arrays] if arrays else args[skip:]
        for a in operands:
            if type(a) in _INTEGER_TYPES:
                break
        else:  # the common case, floats, decided by these two checks
            if not (operands and type(operands[0]) is np.ndarray
                    and operands[0].dtype.kind in "iub"):
                return result
        if rule is not _same and name not in _PRODUCTS and isinstance(result, Tracer):
            _check_partial_sums(fn, args, kwargs, operands)
        return _as_numpys(rule, result, operands, kwargs.get("dtype"))
    return call


#: accumulations whose partial results never pass the final one's magnitude
#: unless a factor is 0 (then NumPy's wrapped product is 0 too)
_PRODUCTS = frozenset({"prod", "cumprod", "nanprod", "nancumprod", "cumulative_prod"})


def _check_partial_sums(fn: Callable[..., Any], args: tuple, kwargs: dict,
                        operands: tuple) -> None:
    """A sum's partial sums (a product's terms) may pass 2**53 where the
    result does not (2**53 - 1 + 2 - 2), and float64 rounds them: the same
    function of the operands' magnitudes bounds every partial sum, and is
    checked (`int_data._check_exact`) unless the operands' bounds settle it."""
    from ..core.int_data import _check_exact, interval_of
    sources, bound = frozenset(), 1
    for a in operands:
        if type(a) in _INTEGER_TYPES:
            sources |= a.sources
        if isinstance(a, (Tracer, np.ndarray)) or type(a) in (int, bool):
            low, high = interval_of(a) if np.ndim(a) or isinstance(a, Tracer) else (a, a)
            bound *= max(abs(int(low)), abs(int(high)), 1) * max(int(np.size(a)), 1)
    if not sources or bound < 2 ** 53:
        return
    from ._elementwise import absolute
    magnitudes = tuple(absolute(a) if (type(a) in _INTEGER_TYPES or isinstance(a, np.ndarray))
                       and any(a is o for o in operands) else a for a in args)
    _check_exact(fn(*magnitudes, **kwargs), sources, False)


# the ufuncs among them, for integers taken as data given to NumPy's (np.sign(labels))
INTEGER_RESULTS.update({name: functools.partial(_as_numpys, RULES[name])
                        for name in ("sign", "floor", "ceil", "trunc", "matmul", "vecdot",
                                     "matvec", "vecmat")})
