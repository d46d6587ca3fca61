"""NumPy's dispatch protocols: ``np.sin(tracer)`` (``__array_ufunc__``) and
``np.sum(tracer)`` (``__array_function__``) call the function of
``fastad.numpy`` of the same name, and link the results NumPy makes as views
(`_views`)."""
from __future__ import annotations

import builtins
import sys
from typing import Any

import numpy as _np

from ..core.errors import TracingError
from ..core.fast_paths import UFUNC_PRIMS, binds_alone
from ..core.narrowing import NARROWING_TYPES, narrow_floats
from ..core.tracer import Tracer
from ._base import _fresh, iscomplexobj, shape
from . import _elementwise, _keywords, _ufunc_methods
from ._elementwise import FROM_ROWS
from ._indexing import _check_writeable, _target, _write_all
from ._linalg import linalg, matmul
from ._views import _link

#: fastad.numpy itself, whose public functions `_dispatch_function` looks up by
#: NumPy's name: its namespace is filled by the modules of the package.
_namespace = vars(sys.modules[__package__])


def _ufunc_functions() -> dict[str, Any]:
    """NumPy's ufuncs the front end computes, by name: every row of the elementwise
    tables, and the ufuncs written with them or named otherwise."""
    # fmod is a row (the float primitive), but np.fmod of integers taken as
    # data is the composite's integer division: it dispatches by name, as
    # remainder does
    names = [n for n in FROM_ROWS if n != "fmod"] + ["absolute", "fabs", "true_divide", "fmax", "fmin", "matmul",
                               "positive", "isfinite", "isnan", "conjugate"]
    functions = {name: getattr(_elementwise, name) for name in names if name != "matmul"}
    functions["matmul"] = matmul
    return functions  # float_power: the composite of fastad.numpy (float64 results)


_UFUNCS = _ufunc_functions()
#: the same, without the keyword handling (`_elementwise.ufunc_like`): a call
#: without keywords costs the primitive's bind alone
_UFUNC_CORES = {name: fn.core for name, fn in _UFUNCS.items()}
UFUNC_PRIMS.update({getattr(_np, name): core.prim for name, core in _UFUNC_CORES.items()
                    if binds_alone(getattr(core, "prim", None), getattr(_np, name, None))})


def _dispatch_ufunc(ufunc: _np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    name = ufunc.__name__
    if method == "__call__" and not kwargs:  # np.exp(x): the function of traced values
        fn = _UFUNC_CORES.get(name)
        if fn is not None:
            if builtins.any(type(i) in NARROWING_TYPES for i in inputs):
                inputs = narrow_floats(name, inputs) or inputs  # (as `ufunc_like`)
            out = fn(*inputs)
            return _fresh(out) if builtins.any(out is i for i in inputs) else out
    if method == "__call__":
        fn = _UFUNCS.get(name)
        if fn is None:
            fn = _foreign_ufunc(ufunc)
            if fn is None and isinstance(getattr(_np, name, None), _np.ufunc):
                fn = _namespace.get(name)  # remainder, radians, signbit, gcd, ...
        if fn is not None and not isinstance(fn, _np.ufunc):
            if not kwargs:
                out = fn(*inputs)
            elif hasattr(fn, "core"):  # takes NumPy's keywords (`_elementwise.ufunc_like`)
                out = fn(*inputs, **kwargs)
            elif ufunc.nout == 1:  # scipy.special's: the same rules around the function
                kwargs = dict(kwargs)
                out = _keywords.ufunc_call(ufunc, fn, inputs, kwargs.pop("out", None), kwargs)
            else:
                raise TracingError(f"numpy.{name} with keyword arguments is not supported on "
                                   "traced values; use the returned values instead")
            if kwargs.get("out") is not None:
                return out  # the array written into, as NumPy returns it
            return _fresh(out) if builtins.any(out is i for i in inputs) else out
    if method in _ufunc_methods.DISPATCH and ufunc.nin == 2:
        fn = _UFUNCS.get(name) or _namespace.get(name)
        if callable(fn) and not isinstance(fn, _np.ufunc):
            out = kwargs.get("out")
            if out is None:
                return _ufunc_methods.DISPATCH[method](fn, ufunc, inputs, kwargs)
            kwargs = {k: v for k, v in kwargs.items() if k != "out"}  # np.add.reduce(.., out=v)
            return _keywords.write_out(out, _ufunc_methods.DISPATCH[method](
                fn, ufunc, inputs, kwargs), f"numpy.{name}.{method}")
    raise TracingError(f"numpy.{name}{'' if method == '__call__' else '.' + method} is not "
                       "supported on traced values; write it with supported functions or "
                       "define it with fastad.primitive and fastad.defvjp")


def _foreign_ufunc(ufunc: _np.ufunc) -> Any:
    """The fastad function for a ufunc NumPy does not define, or None."""
    from ..scipy.special import UFUNCS as special
    return special.get(ufunc)


def _dispatch_function(func: Any, args: tuple, kwargs: dict) -> Any:
    impl = _PLAIN_FUNCTIONS.get(func)
    if impl is not None and not kwargs:  # np.dot(X, w), np.sum(x): resolved before
        out = impl(*args)
        if isinstance(out, Tracer) and builtins.any(out is a for a in args):
            return _fresh(out)  # NumPy's result is a new array, not its argument
        return out
    name = func.__name__
    module = getattr(func, "__module__", "") or ""
    if module.startswith("numpy.linalg"):
        impl = getattr(_namespace.get("linalg", linalg), name, None)
    elif module.startswith("numpy.fft"):
        impl = getattr(_namespace["fft"], name, None)
    else:
        impl = _namespace.get(name)
        if impl is not None and not callable(impl):
            impl = None
    if impl is None or name.startswith("_"):
        raise TracingError(f"{module or 'numpy'}.{name} is not supported on traced values; "
                           "write it with supported functions or define it with "
                           "fastad.primitive and fastad.defvjp")
    if isinstance(kwargs.get("out"), Tracer):  # np.sum(x, axis=0, out=v), np.clip(.., out=x)
        kwargs = dict(kwargs)
        target = _target(kwargs.pop("out"), f"{name}(..., out=...)")
        _check_writeable(target, "output array is read-only")
        _write_all(target, impl(*args, **kwargs), True, f"{name}'s result")
        return target
    if name in _VIEWING and not module.startswith("numpy.fft"):
        return _viewing(func, impl, args, kwargs)
    if not kwargs:
        _PLAIN_FUNCTIONS[func] = impl
    out = impl(*args, **kwargs)
    if isinstance(out, Tracer) and (builtins.any(out is a for a in args)
                                    or builtins.any(out is a for a in kwargs.values())):
        return _fresh(out)  # NumPy's result is a new array, not its argument
    return out


#: NumPy function -> fastad's, for those called with no keyword arguments that
#: return a new array (not a view): found by name once, then looked up
_PLAIN_FUNCTIONS: dict[Any, Any] = {}


# NumPy's functions whose result may be a view of their (first) argument; the
# shadow says when it is.  Those returning several arrays return views of one.
_VIEWING = {"reshape", "ravel", "transpose", "permute_dims", "matrix_transpose", "swapaxes",
            "moveaxis", "rollaxis", "expand_dims", "squeeze", "broadcast_to", "broadcast_arrays",
            "atleast_1d", "atleast_2d", "atleast_3d", "flip", "fliplr", "flipud", "rot90",
            "diagonal", "diag", "real", "imag", "split", "array_split", "hsplit", "vsplit",
            "dsplit", "unstack", "einsum", "diff", "sliding_window_view", "asanyarray",
            "ascontiguousarray", "asfortranarray", "asarray_chkfinite", "require",
            "real_if_close", "polyder", "polyint", "nan_to_num"}


_SEVERAL = {"split", "array_split", "hsplit", "vsplit", "dsplit", "unstack"}


def _viewing(func: Any, impl: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` for a NumPy function that may return views."""
    name = func.__name__
    if name == "broadcast_arrays":
        outs = impl(*args, **kwargs)
        shapes = [tuple(shape(a)) for a in args]

        def part(i: int) -> Any:
            return lambda s: func(*(s if j == i else _np.empty(shp)
                                    for j, shp in enumerate(shapes)), **kwargs)[i]
        return type(outs)(_link(a, o, part(i)) for i, (a, o) in enumerate(zip(args, outs)))
    if name == "einsum":  # one operand: NumPy's result may be a view of it
        out = impl(*args, **kwargs)
        if len(args) == 2 and isinstance(args[1], Tracer):
            return _link(args[1], out, lambda s: func(args[0], s, **kwargs))
        if len(args) in (2, 3) and isinstance(args[0], Tracer):  # (x, [0, 1]), (x, [0, 1], [1, 0])
            return _link(args[0], out, lambda s: func(s, *args[1:], **kwargs))
        return _fresh(out) if builtins.any(out is a for a in args) else out
    if name.startswith("atleast_") and len(args) != 1:
        return tuple(_viewing(func, impl, (a,), kwargs) if isinstance(a, Tracer) else func(a)
                     for a in args)
    if not args:
        return impl(**kwargs)
    a, rest = args[0], args[1:]
    out = impl(*args, **kwargs)
    if name in _SEVERAL:
        def piece(i: int) -> Any:
            return lambda s: func(s, *rest, **kwargs)[i]
        return type(out)(_link(a, o, piece(i)) for i, o in enumerate(out))
    if name in ("real", "imag") and iscomplexobj(a):
        return _link(a, out, _np.real if name == "real" else _np.imag, name)
    return _link(a, out, lambda s: func(s, *rest, **kwargs))
