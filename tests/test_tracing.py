"""Tracing plain NumPy code: what traces without edits, what refuses to leave
the trace silently, what the tape records, and nested transformations."""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastad as fa
import fastad.numpy as fnp
from fastad import TracingError

rng = np.random.default_rng(0)


# -- plain NumPy code differentiates without edits --------------------------------------
def plain_numpy_loss(x):
    """Operators, methods, len, iteration and item assignment, as people write them."""
    m = x.reshape(2, 3)
    total = 0.0
    for row in m:  # iteration over the first axis
        total = total + row.dot(row) / len(row)
    y = np.zeros(3)
    y = y + m.T @ np.array([1.0, -2.0])
    z = x * 1.0
    z[0] = x[5] ** 2  # item assignment is recorded, not refused
    z[1:3] = -z[3:5]
    z[-1] += 1.0
    w = (abs(z) + 1.0) ** 1.5 - np.exp(-x) * x.mean() + x.sum() / x.size
    return total + np.sum(y ** 2) + w.sum() + np.tanh(x).max() + m.mean(axis=0).prod()


def test_plain_numpy_function_differentiates_without_edits():
    x = rng.uniform(0.2, 1.0, 6)
    fa.check_grads(plain_numpy_loss, (x,), order=2, modes=("fwd", "rev"))
    np.testing.assert_allclose(fa.value_and_grad(plain_numpy_loss)(x)[0], plain_numpy_loss(x),
                               rtol=1e-14)


def test_tracer_attributes_inside_a_trace():
    seen = {}

    def f(x):
        seen.update(shape=x.shape, ndim=x.ndim, size=x.size, dtype=x.dtype, len=len(x),
                    t_shape=x.T.shape)
        return np.sum(x)

    fa.grad(f)(np.ones((2, 3), np.float32))
    assert seen == {"shape": (2, 3), "ndim": 2, "size": 6, "dtype": np.float32, "len": 2,
                    "t_shape": (3, 2)}


def test_explicit_namespace_matches_numpy_dispatch():
    x = rng.standard_normal((3, 4))

    def with_np(x):
        return np.sum(np.tanh(x) @ np.transpose(x) * np.maximum(x[:, :3], 0.1))

    def with_fnp(x):
        return fnp.sum(fnp.tanh(x) @ fnp.transpose(x) * fnp.maximum(x[:, :3], 0.1))

    np.testing.assert_allclose(fa.grad(with_np)(x), fa.grad(with_fnp)(x), rtol=1e-14)
    fa.check_grads(with_fnp, (x,), order=1)


def test_python_control_flow_on_traced_values():
    def f(x):
        if np.sum(x) > 0:
            return np.sum(np.sin(x))
        return np.sum(x ** 3)

    for x in (rng.uniform(0.1, 1, 3), -rng.uniform(0.1, 1, 3)):
        fa.check_grads(f, (x,), order=2)


def test_stack_and_fastad_array_of_traced_values():
    def f(x):
        parts = [x[0] * x[1], np.sin(x[2]), x[0]]
        return np.sum(np.stack(parts) ** 2) + fnp.sum(fnp.array(parts) * 2.0)

    x = rng.standard_normal(3)
    fa.check_grads(f, (x,), order=2)


def test_python_sum_and_scalar_arithmetic():
    def f(x):
        return sum(v * v for v in x) + 3.0 - x[0] / 2 + 2 ** x[1]

    fa.check_grads(f, (rng.standard_normal(4),), order=2)


# -- leaving the trace is a TracingError that names the call ---------------------------
LEAVES = {
    "float()": lambda x: float(x[0]),
    "int()": lambda x: int(x[0]),
    "complex()": lambda x: complex(x[0]),
    "math.sin": lambda x: math.sin(x[0]),
    "np.asarray": lambda x: np.asarray(x),
    "np.array": lambda x: np.array(x),
    "np.array of a list": lambda x: np.array([x[0], x[1]]),
    "store into a NumPy array": lambda x: np.zeros(3).__setitem__(0, x[0]),
    "store a row into a NumPy array": lambda x: np.zeros((2, 3)).__setitem__(0, x),
    "index with a tracer": lambda x: np.arange(3.0)[x[0]],
    ".item()": lambda x: x[0].item(),
    ".tolist()": lambda x: x.tolist(),
    "ufunc out=": lambda x: np.sin(x, out=np.zeros(3)),
}


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_leaving_the_trace_raises(name):
    def f(x):
        return np.sum(LEAVES[name](x))

    with pytest.raises(TracingError) as info:
        fa.grad(f)(np.array([0.5, 0.2, 0.1]))
    assert "traced" in str(info.value)


@pytest.mark.parametrize("name, expected", [("float()", "float()"), ("int()", "int()"),
                                            ("math.sin", "float()"),
                                            ("np.asarray", "np.asarray"),
                                            ("store into a NumPy array", "NumPy array"),
                                            (".item()", ".item()"), ("ufunc out=", "out=")])
def test_leaving_the_trace_message_names_the_call(name, expected):
    with pytest.raises(TracingError, match=expected.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        fa.grad(lambda x: np.sum(LEAVES[name](x)))(np.array([0.5, 0.2, 0.1]))


@pytest.mark.parametrize("attempt", [len, list, iter, lambda t: [*t]])
def test_a_0d_traced_value_is_indexed_but_is_no_sequence(attempt):
    """x[None] and x[()] work on a traced 0-d value as on a 0-d array, and, as
    there, len() and iteration raise (Python's fallback iteration would
    otherwise stop at the first IndexError and give an empty list)."""
    def f(x):
        s = fa.numpy.sum(x * x)
        with pytest.raises(TypeError):
            attempt(s)
        return fa.numpy.sum(s[None] * s[()] + s[...])

    x = np.array([0.5, 0.2, 0.1])
    s = np.sum(x * x)
    assert np.allclose(fa.grad(f)(x), (2 * s + 1) * 2 * x)


UNSUPPORTED = {
    "frompyfunc.(vectorized)": lambda x: np.frompyfunc(lambda a: a, 1, 1)(x).sum(),
    "add.reduceat": lambda x: np.add.reduceat(
        x, fa.numpy.asarray(x > 0).astype(int)).sum(),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_numpy_function_is_named(name):
    with pytest.raises(TracingError, match=name.split(".")[-1]) as info:
        fa.grad(UNSUPPORTED[name])(np.array([0.5, 0.2, 0.1]))
    assert "fastad.primitive" in str(info.value) or "supported" in str(info.value)


def test_escaped_tracer_is_refused():
    kept = []

    def f(x):
        kept.append(x * 2.0)
        return np.sum(x)

    fa.grad(f)(np.ones(2))
    with pytest.raises(TracingError, match="escaped|trace ended"):
        fa.grad(lambda y: np.sum(y * kept[0]))(np.ones(2))


def test_data_dependent_mask_selects_by_its_value():
    g = fa.grad(lambda x: np.sum(x[x > 0] ** 2))(np.array([1.0, -1.0]))
    assert np.array_equal(g, [2.0, 0.0])
    with pytest.raises(IndexError, match="integer"):
        fa.grad(lambda x: np.sum(x[x * 0.5]))(np.array([1.0, -1.0]))


# -- the tape ---------------------------------------------------------------------------
def test_tape_lists_primitives_and_source_lines():
    def f(x):
        y = np.sin(x) * 2.0
        return np.sum(np.exp(y))

    first = f.__code__.co_firstlineno
    x = np.ones(3)
    tape = fa.make_tape(f)(x)
    text = str(tape)
    lines = text.splitlines()
    for prim, line in (("sin", first + 1), ("mul", first + 1), ("exp", first + 2),
                       ("sum", first + 2)):
        assert any(f" = {prim}" in row and f"{__file__}:{line}" in row for row in lines), (
            prim, line, text)
    assert "f64[3]" in text and "return" in text
    assert [ins.prim for ins in tape.instrs] == ["sin", "mul", "exp", "sum"]
    tape.validate()


def test_derivative_instructions_carry_the_users_line():
    def f(x):
        return np.sum(np.sin(x))

    line = f.__code__.co_firstlineno + 1
    tape = fa.make_tape(fa.grad(f))(np.ones(3))
    assert any(ins.prim == "cos" for ins in tape.instrs)
    rows = [row for row in str(tape).splitlines() if " = " in row and "const" not in row]
    assert rows and all(row.endswith(f"# {__file__}:{line}") for row in rows), str(tape)


def test_make_tape_roundtrips_through_bytes():
    tape = fa.make_tape(plain_numpy_loss)(rng.uniform(0.2, 1.0, 6))
    again = fa.Tape.from_bytes(tape.to_bytes())
    assert str(again) == str(tape)


# -- nested transformations ---------------------------------------------------------------
def test_grad_of_grad_of_scalar_function():
    f = lambda x: np.sin(x) * x ** 3  # noqa: E731
    d1 = lambda x: np.cos(x) * x ** 3 + 3 * np.sin(x) * x ** 2  # noqa: E731
    d2 = lambda x: (-np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2  # noqa: E731
                    + 6 * np.sin(x) * x)
    d3 = lambda x: (-np.cos(x) * x ** 3 - 9 * np.sin(x) * x ** 2  # noqa: E731
                    + 18 * np.cos(x) * x + 6 * np.sin(x))
    for x in (0.3, -1.7, 2.0):
        assert math.isclose(fa.grad(f)(x), d1(x), rel_tol=1e-13)
        assert math.isclose(fa.grad(fa.grad(f))(x), d2(x), rel_tol=1e-12)
        assert math.isclose(fa.grad(fa.grad(fa.grad(f)))(x), d3(x), rel_tol=1e-12)


def test_grad_of_function_calling_grad_closing_over_outer_value():
    def outer(a):
        inner = lambda x: np.sin(a * x) * x  # noqa: E731  (closes over the traced a)
        return fa.grad(inner)(1.3) * a

    # d/dx inner = a cos(a x) x + sin(a x) at x = 1.3, times a
    def analytic(a):
        x = 1.3
        g = a * np.cos(a * x) * x + np.sin(a * x)
        dg = np.cos(a * x) * x - a * np.sin(a * x) * x * x + np.cos(a * x) * x
        return g + a * dg

    for a in (0.4, -1.1):
        assert math.isclose(fa.grad(outer)(a), analytic(a), rel_tol=1e-12)
    fa.check_grads(outer, (0.7,), order=2)


def test_grad_of_vector_function_calling_grad():
    def energy(w, x):
        return np.sum(np.tanh(w * x) ** 2)

    def loss(w):
        x = np.linspace(-1.0, 1.0, 4)
        force = fa.grad(energy, argnums=1)(w, x)
        return np.sum(force ** 2)

    fa.check_grads(loss, (rng.standard_normal(4),), order=2)


# -- pytrees and argnums ---------------------------------------------------------------
Params = namedtuple("Params", ["w", "b"])


def test_gradients_with_respect_to_pytrees():
    w, b, c = rng.standard_normal((3, 2)), rng.standard_normal(3), rng.standard_normal()

    def f(p):
        return np.sum(np.tanh(p["layer"][0].w @ p["layer"][1]) + p["layer"][0].b) * p["scale"][0]

    params = {"layer": (Params(w, b), rng.standard_normal(2)), "scale": [c]}
    g = fa.grad(f)(params)
    assert isinstance(g, dict) and sorted(g) == ["layer", "scale"]
    assert isinstance(g["layer"], tuple) and isinstance(g["layer"][0], Params)
    assert isinstance(g["scale"], list)
    assert g["layer"][0].w.shape == (3, 2) and g["layer"][0].b.shape == (3,)
    # analytic: d/db = scale; d/dscale = the sum
    np.testing.assert_allclose(g["layer"][0].b, np.full(3, c), rtol=1e-14)
    inner = np.sum(np.tanh(w @ params["layer"][1]) + b)
    np.testing.assert_allclose(g["scale"][0], inner, rtol=1e-14)
    fa.check_grads(f, (params,), order=2)


def test_argnums_tuples_and_value():
    x, y, z = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal()

    def f(x, y, z):
        return np.sum(x * y) * z + np.sum(np.sin(y))

    value, (gx, gz) = fa.value_and_grad(f, argnums=(0, 2))(x, y, z)
    assert math.isclose(value, f(x, y, z), rel_tol=1e-14)
    np.testing.assert_allclose(gx, y * z, rtol=1e-14)
    np.testing.assert_allclose(gz, np.sum(x * y), rtol=1e-14)
    (gy,) = fa.grad(f, argnums=(1,))(x, y, z)
    np.testing.assert_allclose(gy, x * z + np.cos(y), rtol=1e-14)
    np.testing.assert_allclose(fa.grad(f, argnums=-1)(x, y, z), np.sum(x * y), rtol=1e-14)


def test_keyword_arguments_are_passed_through():
    def f(x, scale=1.0):
        return np.sum(x ** 2) * scale

    x = rng.standard_normal(3)
    np.testing.assert_allclose(fa.grad(f)(x, scale=3.0), 6.0 * x, rtol=1e-14)


def test_float32_gradients_stay_float32():
    x = rng.standard_normal(4).astype(np.float32)
    g = fa.grad(lambda x: np.sum(np.sin(x) * 2.0))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * np.cos(x), rtol=1e-6)


def test_int_arrays_bools_and_non_scalar_outputs_are_errors():
    with pytest.raises(TypeError, match="int|float"):
        fa.grad(lambda x: np.sum(x))(np.arange(3))
    with pytest.raises(TypeError, match="bool"):
        fa.grad(lambda x: x)(True)
    with pytest.raises(TypeError, match="scalar"):
        fa.grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        fa.grad(lambda x: (np.sum(x), np.sum(x)))(np.ones(3))
    with pytest.raises(TypeError, match="argnums"):
        fa.grad(lambda x: np.sum(x), argnums=3)(np.ones(3))
    with pytest.raises(TypeError):
        fa.grad(lambda x: np.sum(x))("not an array")


def test_vjp_and_jvp_of_plain_numpy_code():
    x = rng.standard_normal((2, 3))

    def f(x):
        return np.tanh(x) @ x.T, np.sum(x, axis=0)

    out, vjp_fn = fa.vjp(f, x)
    np.testing.assert_allclose(out[0], np.tanh(x) @ x.T, rtol=1e-14)
    ct = (rng.standard_normal((2, 2)), rng.standard_normal(3))
    (g,) = vjp_fn(ct)
    u = rng.standard_normal(x.shape)
    _, tangent = fa.jvp(f, (x,), (u,))
    # <ct, J u> == <J^T ct, u>
    lhs = np.sum(ct[0] * tangent[0]) + np.sum(ct[1] * tangent[1])
    assert math.isclose(lhs, np.sum(g * u), rel_tol=1e-12)


# -- slices: NumPy's are views; fastad's are copies kept consistent like views ----
def _write_through_slice(x):
    v = x[1:]
    v += 1.0
    return np.sum(x * x)


def _assign_through_slice(x):
    v = x[1:]
    v[0] = 3.0 * x[0]
    return np.sum(x * x)


def _write_under_kept_slice(x):
    x = x * 1.0
    v = x[1:]
    x[2] = 7.0 * x[0]
    return np.sum(v * v)


def _rows_and_columns(x):
    y = x.reshape(2, 3) * 1.0
    y[:, 0] += x[:2]
    row = y[1]
    row *= 2.0
    corner = y[:, 1:]
    y[1, 2] = x[0] ** 3
    return np.sum(corner * corner) + np.sum(y * row)


def _slice_of_a_slice(x):
    a = x[1:]
    b = a[1:]
    b += x[0]
    return np.sum(x * x) + np.sum(a * a)


def _recurrence_over_windows(x):
    x = x * 1.0
    for i in range(3):
        window = x[i:i + 3]
        x[i + 2] = np.sum(window * window) * 0.1
    return np.sum(x)


def _explicit_copy(x):
    v = x[1:].copy()
    v += 1.0
    return np.sum(v * x[1:])


@pytest.mark.parametrize("f", [_write_through_slice, _assign_through_slice,
                               _write_under_kept_slice, _rows_and_columns, _slice_of_a_slice,
                               _recurrence_over_windows, _explicit_copy])
def test_writes_through_slices_follow_numpy_views(f, backend):
    x = np.random.default_rng(0).uniform(0.5, 1.5, 6)
    value, grad = fa.value_and_grad(f)(x.copy())
    np.testing.assert_allclose(value, f(x.copy()), rtol=1e-13)  # NumPy mutates its argument
    fa.check_grads(f, (x.copy(),))
    np.testing.assert_allclose(fa.compile(f, backend=backend)(x.copy()), grad, rtol=1e-12)


def test_tracer_operators_and_methods_live_in_its_class_body():
    """Tracer's operators, methods and properties are declared in
    fastad/core/traced.py and apply fastad.numpy's functions through
    FRONT_END, which holds exactly the names they and the recording
    (fastad/core/tracer.py) ask for.  Nothing else is attached to the class
    but the scalar fast paths of fastad/core/fast_paths.py, each in place of
    a method of traced.py that it falls back to."""
    import ast
    import inspect

    from fastad.core import fast_paths, traced, tracer
    asked = set()
    source = inspect.getsource(tracer) + inspect.getsource(traced) + \
        inspect.getsource(fast_paths)
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id == "FRONT_END" and isinstance(node.slice, ast.Constant)):
            asked.add(node.slice.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_method":
            asked.add(node.args[0].value)
    assert asked == set(tracer.FRONT_END)
    for cls in (tracer.Tracer, tracer.ArrayTracer):
        for name, value in vars(cls).items():
            if value is fast_paths.FAST_PATHS.get((cls, name)):
                value = fast_paths.FRONT_END_PATHS[cls, name]
            for fn in ((value.fget, value.fset) if isinstance(value, property) else (value,)):
                if callable(fn) and not isinstance(fn, type):
                    assert fn.__module__ == "fastad.core.traced", (cls.__name__, name)


def test_front_end_modules_import_only_the_ones_before_them():
    """The modules of fastad.numpy, in the order docs/design.md lists them
    ("Front end: where each thing lives"): each imports only modules before it."""
    import ast
    import pathlib

    order = ["_base", "_dtypes", "_integer_results", "_elementwise", "_shape", "_reductions", "_creation", "_views",
             "_gathers", "_indexing", "_keywords", "_linalg", "_ordering", "_arrayfuncs", "_composites", "_polynomials",
             "_building",
             "_vectorize", "_plain", "_scalar_types", "_ufunc_methods", "_index_update", "_array_type", "_jax_keywords",
             "_dispatch", "_methods"]
    package = pathlib.Path(fnp.__file__).parent
    assert sorted(p.stem for p in package.glob("_*.py") if p.stem != "__init__") == sorted(order)
    for i, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                used = [node.module] if node.module else [a.name for a in node.names]
                for module in used:
                    assert order.index(module) < i, (name, module)


# -- scalar arithmetic records what NumPy's ufuncs compute -------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=2,
                max_size=2), st.sampled_from(["add", "subtract", "multiply", "divide"]),
       st.booleans())
def test_scalar_arithmetic_is_the_ufunc_bit_for_bit(pair, name, plain_second):
    """A scalar loop's +, -, *, / on traced float64 scalars (and Python floats)
    take NumPy's scalar operators: the values traced, and those the compiled
    tape computes, are the ufunc's bits, special values included."""
    a, b = pair
    ufunc = getattr(np, name)

    def f(x):
        return ufunc(x[0], b if plain_second else x[1]) * 1.0

    x = np.array([a, b])
    with np.errstate(all="ignore"):
        want = ufunc(np.float64(a), np.float64(b)) * 1.0
        assert np.array_equal(fa.jit(f)(x), want, equal_nan=True)
    for first_plain in (False, True):  # a Python float on either side
        def g(x, first_plain=first_plain):
            return ufunc(a, x[1]) if first_plain else ufunc(x[0], b)
        with np.errstate(all="ignore"):
            value = fa.value_and_grad(g)(x)[0]
            plain = ufunc(a, np.float64(b)) if first_plain else ufunc(np.float64(a), b)
        assert type(value) is np.float64
        assert np.array_equal(value, plain, equal_nan=True)
