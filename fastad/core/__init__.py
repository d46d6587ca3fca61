"""The core of fastad, which imports only NumPy and the standard library:
errors, pytrees, the tape and its wire format, the `Primitive` class and its
registry, the tracer (`Tracer`, `Builder`, `bind`: how an operation on a
traced value becomes an instruction) and guards.  Everything else in fastad
is written on top of it; nothing here imports it back (tests/test_layout.py
walks the imports)."""
