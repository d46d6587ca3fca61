"""Exceptions fastad raises on purpose."""


class FastadError(Exception):
    """Base class of fastad's own errors."""


class TracingError(FastadError, TypeError):
    """A traced value was used in a way that would silently leave the trace."""


class TapeError(FastadError, ValueError):
    """A tape (or a serialized tape) is malformed."""


class SignatureError(FastadError, TypeError):
    """Arguments do not match what a compiled function was built for."""
