"""A transformation traced inside a compiled function differentiates rerolled code.

``jit(grad(f))`` of a Python loop: ``grad``'s own trace of f is nested in the
compiled trace, and is differentiated before the compiled trace sees it.  Its
loops are rerolled (and its time loops found) first, as ``fastad.compile``
does with its own trace, so the compiled tape has the size of the loop's
body, not one instruction per element, for every transformation that traces
f: grad, value_and_grad with aux, jacobian, hessian, vjp, jvp, vmap of grad,
grad of a function of grad.  hypothesis draws the loop body, its length and
the transformation; each is checked against the same transformation called
eagerly.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad.tree_util import tree_leaves

# one iteration's term from a = x[i], b = x[i + 1]: bounded, singular-free on [-1, 1]
TERMS: dict[str, Callable[[Any, Any], Any]] = {
    "log1p_sq": lambda a, b: np.log(1.0 + a ** 2),
    "sin_prod": lambda a, b: np.sin(a) * b,
    "pow4": lambda a, b: a ** 4,
    "gauss": lambda a, b: np.exp(-a * b),
    "tanh_diff": lambda a, b: np.tanh(a - b) * a,
    "ratio": lambda a, b: a / (2.0 + b),
}


def scalar_loop(terms: list[str], signs: list[bool]) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        s = 0.0
        for i in range(len(x) - 1):
            for name, plus in zip(terms, signs):
                t = TERMS[name](x[i], x[i + 1])
                s = s + t if plus else s - t
        return s
    return f


def vector_loop(terms: list[str]) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        y = fnp.zeros(len(x) - 1)
        for i in range(len(x) - 1):
            r = 0.0
            for name in terms:
                r = r + TERMS[name](x[i], x[i + 1])
            y[i] = r
        return y
    return f


def transformation(kind: str, f: Callable[[Any], Any], fv: Callable[[Any], Any], n: int
                   ) -> Callable[[Any], Any]:
    ones = np.linspace(0.5, 1.5, n - 1)
    return {
        "grad": lambda: fa.grad(f),
        "value_and_grad_aux": lambda: fa.value_and_grad(lambda x: (f(x), {"x0": 2 * x[0]}),
                                                        has_aux=True),
        "jacobian": lambda: fa.jacobian(fv),
        "hessian": lambda: fa.hessian(f),
        "vjp": lambda: (lambda x: fa.vjp(fv, x)[1](ones)),
        "jvp": lambda: (lambda x: fa.jvp(fv, (x,), (np.cos(np.arange(n)),))[1]),
        "vmap_grad": lambda: fa.vmap(fa.grad(f)),
        "grad_of_grad": lambda: fa.grad(lambda x: np.sum(fa.grad(f)(x) ** 2)),
    }[kind]()


KINDS = ["grad", "value_and_grad_aux", "jacobian", "hessian", "vjp", "jvp", "vmap_grad",
         "grad_of_grad"]


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS),
       terms=st.lists(st.sampled_from(sorted(TERMS)), min_size=1, max_size=3),
       signs=st.lists(st.booleans(), min_size=3, max_size=3),
       n=st.integers(120, 300), seed=st.integers(0, 2**16))
def test_a_transformation_inside_jit_differentiates_the_rerolled_loop(
        kind: str, terms: list[str], signs: list[bool], n: int, seed: int,
        record_count: Any) -> None:
    f, fv = scalar_loop(terms, signs), vector_loop(terms)
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    arg = np.stack([x, 0.5 * x, -x]) if kind == "vmap_grad" else x
    compiled = fa.jit(transformation(kind, f, fv, n))
    got = tree_leaves(compiled(arg))
    want = tree_leaves(transformation(kind, f, fv, n)(arg))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        # rerolled sums are reassociated: equal to rounding
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * (1 + np.max(np.abs(w))))
    # unrolled, the trace would hold at least one instruction per term and element
    traced = compiled.tape.stages["traced"]
    assert traced < len(terms) * (n - 1) // 2, f"{kind}: {traced} instructions for {n} elements"
    record_count(f"nested transformations of loops inside jit ({kind})", 1)
