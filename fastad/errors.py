"""Exceptions fastad raises on purpose."""


class FastadError(Exception):
    """Base class of fastad's own errors."""


class TracingError(FastadError):
    """A traced value was used in a way that would silently leave the trace.

    Deliberately not a TypeError: NumPy swallows TypeErrors raised while it
    converts an object (storing a traced value into an array) and raises a
    confusing error of its own instead."""


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
