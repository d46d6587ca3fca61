"""Tape -> tape transformations: reverse mode, forward mode, optimization."""
