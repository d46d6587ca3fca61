"""Exceptions fastad raises on purpose."""


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
