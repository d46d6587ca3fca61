"""Exceptions fastad raises on purpose."""
import importlib
import sys


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
    ``scipy.stats.norm.logpdf`` call ``np.asarray``), the name of fastad's
    function of the same name and signature (``fastad.scipy.special.polygamma``),
    else None: the hint an error about leaving the trace gives."""
    frame, outermost = sys._getframe(1), None
    while frame is not None:  # the SciPy frame the user's code called
        top = frame.f_globals.get("__name__", "").split(".")[0]
        if top == "scipy":
            outermost = frame
        elif top not in ("fastad", "numpy"):
            break
        frame = frame.f_back
    if outermost is None:
        return None
    module = outermost.f_globals["__name__"]
    public = ".".join(p for p in module.split(".") if not p.startswith("_"))
    try:
        ours: object = importlib.import_module("fastad." + public)
    except ImportError:
        return None
    path = [public]
    owner = outermost.f_locals.get("self")
    owner = getattr(owner, "dist", owner)  # a frozen distribution's
    if owner is not None:  # a distribution's method: scipy.stats.norm.logpdf
        kind = type(owner).__name__.removesuffix("_gen").removesuffix("_frozen")
        ours, path = getattr(ours, kind, None), path + [kind]
    name = outermost.f_code.co_name
    if not str(getattr(getattr(ours, name, None), "__module__", "")).startswith("fastad"):
        return None  # SciPy's own, re-exported
    return "fastad." + ".".join(path + [name])
