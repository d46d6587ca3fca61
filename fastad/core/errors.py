"""Exceptions fastad raises on purpose."""
import importlib
import sys

import numpy as np


class FastadError(Exception):
    """Base class of fastad's own errors."""


class TracingError(FastadError):
    """A traced value was used in a way that would silently leave the trace.

    Deliberately not a TypeError: NumPy swallows TypeErrors raised while it
    converts an object (storing a traced value into an array) and raises a
    confusing error of its own instead."""


class PrecisionError(TracingError, TypeError):
    """Values in a precision fastad does not compute in (float16, long double),
    refused where they would enter a trace: as an argument, or by a cast inside
    the function traced.  A TypeError, as NumPy's for a dtype it cannot use,
    and a TracingError, since tracing is what cannot follow them; one message
    for both (`unsupported_precision`)."""


def unsupported_precision(where: str, dtype: object) -> PrecisionError:
    return PrecisionError(f"{where}: {dtype} values are not supported (fastad computes in "
                          "float64 and float32, or complex128 and complex64); convert with "
                          ".astype(np.float32) or .astype(np.float64)")


class TapeError(FastadError, ValueError):
    """A tape (or a serialized tape) is malformed."""


class LoweringError(FastadError, ValueError):
    """A valid tape uses something the C VM has no code for (a complex or
    integer value, a primitive without a lowering rule, an arena past what
    the VM addresses).  Compiled functions check `backends.unsupported`
    first and build such tapes for another backend; this is raised when
    `backends.lower.lower` is called on one directly."""


class SignatureError(FastadError, TypeError):
    """Arguments do not match what a compiled function was built for."""


def library_counterpart() -> str | None:
    """When a traced value is being converted to a plain array inside a SciPy
    function that converts its arguments (``scipy.special.polygamma`` and
    ``scipy.stats.norm.logpdf`` call ``np.asarray``) or inside NumPy's
    ``vectorize``, the name of fastad's function of the same name and
    signature (``fastad.scipy.special.polygamma``), else None: the hint an
    error about leaving the trace gives."""
    frames, frame = [], sys._getframe(1)
    while frame is not None:  # the library frames below the user's code
        top = frame.f_globals.get("__name__", "").split(".")[0]
        if top not in ("scipy", "numpy", "fastad"):
            break
        frames.append(frame)
        frame = frame.f_back
    for frame in reversed(frames):  # outermost first: past SciPy's decorators
        module = frame.f_globals["__name__"]
        owner = frame.f_locals.get("self")
        if module.startswith("numpy") and type(owner) is np.vectorize:
            return "fastad.numpy.vectorize"
        if not module.startswith("scipy"):
            continue
        # the frame's own function, or the one a decorator's wrapper holds
        named = [(module, frame.f_code.co_name)] + [
            (v.__module__, v.__name__) for v in frame.f_locals.values()
            if callable(v) and str(getattr(v, "__module__", "")).startswith("scipy.")
            and isinstance(getattr(v, "__name__", None), str)]
        for where, name in named:
            found = _fastad_function(where, owner, name)
            if found is not None:
                return found
    return None


def _fastad_function(module: str, owner: object, name: str) -> str | None:
    public = ".".join(p for p in module.split(".") if not p.startswith("_"))
    try:
        ours: object = importlib.import_module("fastad." + public)
    except ImportError:
        return None
    path = [public]
    owner = getattr(owner, "dist", owner)  # a frozen distribution's
    if owner is not None:  # a distribution's method: scipy.stats.norm.logpdf
        kind = type(owner).__name__.removesuffix("_gen").removesuffix("_frozen")
        ours, path = getattr(ours, kind, None), path + [kind]
    if not str(getattr(getattr(ours, name, None), "__module__", "")).startswith("fastad"):
        return None  # SciPy's own, re-exported
    return "fastad." + ".".join(path + [name])
