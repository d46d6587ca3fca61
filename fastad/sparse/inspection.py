"""What ``fastad.sparsity(f)(x)`` reports: the patterns a sparse derivative
of f would use, their colorings, color counts and lower bounds, and a
picture of them (`Sparsity.spy`)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from . import coloring
from .derivatives import Plan, _check_eager, _count, _lifted_tape, hessian_plan, jacobian_plan


class Sparsity:
    """What ``fastad.sparsity(f)(x)`` found: patterns, colorings, color counts."""

    def __init__(self, jacobian: Plan, hessian: Plan | None) -> None:
        self.jacobian_plan, self.hessian_plan = jacobian, hessian
        self.jacobian = jacobian.pattern
        cols = jacobian.colors if jacobian.mode == "fwd" else jacobian.extra["column_colors"]
        rows = jacobian.colors if jacobian.mode == "rev" else jacobian.extra["row_colors"]
        self.column_colors, self.row_colors = cols, rows
        self.jacobian_mode = jacobian.mode
        self.hessian = hessian.pattern if hessian is not None else None
        self.hessian_colors = hessian.colors if hessian is not None else None
        #: "star" (nonzeros read off the products) or "acyclic" (recovered by substitution)
        self.hessian_coloring = hessian.extra["coloring"] if hessian is not None else None

    @property
    def ncolors(self) -> dict[str, int | None]:
        """Colors of each coloring (None: not computed, since its lower bound
        left it no chance to need fewer colors than the other)."""
        def count(colors: np.ndarray | None) -> int | None:
            if colors is None:
                return None
            return _count(colors) if self.jacobian.nnz else 0
        out = {"columns": count(self.column_colors), "rows": count(self.row_colors),
               "jacobian": self.jacobian_plan.ncolors}  # the passes the kept plan takes
        if self.hessian is not None:
            out["hessian"] = self.hessian_plan.ncolors
        return out

    @property
    def lower_bounds(self) -> dict[str, int]:
        """The most nonzeros in a row ("columns", "hessian") or a column
        ("rows"): no column (row) coloring of the Jacobian needs fewer
        colors.  The Hessian's is the same count, a bound for colorings read
        off directly but not for star and acyclic ones, which may go below
        it (an arrowhead's 2 colors, a dense block with one longer row)."""
        out = {"columns": coloring.lower_bound(self.jacobian, 1),
               "rows": coloring.lower_bound(self.jacobian, 0)}
        if self.hessian is not None:
            out["hessian"] = self.hessian_plan.lower_bound
        return out

    def __repr__(self) -> str:
        m, n = self.jacobian.shape
        c, lb = self.ncolors, self.lower_bounds
        text = (f"Sparsity(jacobian {m}x{n}, {self.jacobian.nnz} nonzeros, {self.jacobian_mode}: "
                f"{c['columns'] if c['columns'] is not None else '-'} column colors / "
                f"{c['rows'] if c['rows'] is not None else '-'} row colors "
                f"(lower bounds {lb['columns']} / {lb['rows']})")
        if self.jacobian_mode == "fwd+rev":
            passes = [f"{p.ncolors} {'forward' if p.mode == 'fwd' else 'reverse'}"
                      for p in self.jacobian_plan.parts()]
            text += f", split: {' + '.join(passes)} passes"
        if self.hessian is not None:
            text += (f"; hessian {self.hessian.nnz} nonzeros, {self.ncolors['hessian']} "
                     f"{self.hessian_coloring} colors (most nonzeros in a row "
                     f"{self.lower_bounds['hessian']})")
        return text + ")"

    def spy(self, which: str | None = None, ax: Any = None, **kwargs: Any) -> Any:
        """Plot a pattern (``"jacobian"`` or ``"hessian"``; the Hessian's when
        there is one) with matplotlib's ``spy``; returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("Sparsity.spy needs matplotlib (pip install matplotlib)") from exc
        which = which or ("hessian" if self.hessian is not None else "jacobian")
        pattern = self.hessian if which == "hessian" else self.jacobian
        if ax is None:
            _, ax = plt.subplots()
        ax.spy(pattern, markersize=kwargs.pop("markersize", 1), **kwargs)
        ax.set_title(f"{which}: {pattern.nnz} nonzeros")
        return ax


def sparsity(f: Callable[..., Any], argnums: int = 0) -> Callable[..., Sparsity]:
    """``fastad.sparsity(f)(*args)``: the Jacobian pattern of f with respect to
    ``args[argnums]`` (and the Hessian's, when f returns a real scalar), their
    colorings, color counts and lower bounds."""
    @functools.wraps(f)
    def sparsity_f(*args: Any, **kwargs: Any) -> Sparsity:
        _check_eager(args, kwargs, "sparsity")
        tape, wrt, x_shape, out_shape, dtype = _lifted_tape(f, argnums, args, kwargs)
        jac = jacobian_plan(tape, wrt, x_shape, out_shape, np.dtype(dtype))
        hess = None
        out_dtype = tape.avals[tape.outputs[0]].dtype
        if int(np.prod(out_shape)) == 1 and out_dtype.kind == "f":
            hess = hessian_plan(tape, wrt, x_shape, np.dtype(dtype))
        return Sparsity(jac, hess)
    return sparsity_f
