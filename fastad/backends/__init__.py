"""Backends: each turns a tape into an executable with ``run(inputs)``."""
