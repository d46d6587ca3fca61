"""fastad.numpy takes NumPy's own parameters: every function of numpy,
numpy.linalg and numpy.fft accepts the parameter names NumPy's does, in
NumPy's positional order, and gives them NumPy's meaning.

On plain arrays the result is NumPy's; on traced values the values are
NumPy's and the derivatives agree with central finite differences, eager
(`fa.value_and_grad`), through `fa.jit` and through `fa.compile`.  Hypothesis
draws the shapes, masks, dtypes and keyword combinations.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastad as fa
import fastad.numpy as fnp
from conftest import BACKENDS
from fastad.core.errors import TracingError

COMPILED = "c" if "c" in BACKENDS else "numpy"
# NumPy's own calls below use where= without out= on purpose (fastad gives zeros there)
pytestmark = [pytest.mark.filterwarnings("ignore:'where' used without 'out'"),
              pytest.mark.filterwarnings("ignore:fastad.*host calls:UserWarning")]
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- every parameter name, in NumPy's positional order ---------------------------------
def _signature_mismatches() -> list[str]:
    """NumPy's functions whose fastad.numpy function lacks a parameter name
    NumPy's takes by keyword, or puts another name at one of its positions.
    A function taking ``**kwargs`` must name NumPy's parameters all the same
    (or give NumPy's signature): a keyword it would swallow is one it ignores."""
    found = []
    for module, ours in ((np, fnp), (np.linalg, fnp.linalg), (np.fft, fnp.fft)):
        for name in dir(module):
            theirs, mine = getattr(module, name, None), getattr(ours, name, None)
            if name.startswith("_") or not callable(theirs) or mine is None or mine is theirs \
                    or isinstance(theirs, type) or name == "test":  # (NumPy's test runner)
                continue
            try:
                want = inspect.signature(theirs).parameters
                have = inspect.signature(mine).parameters
            except (ValueError, TypeError):
                continue
            missing = [k for k, p in want.items()
                       if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k not in have]
            if missing:
                found.append(f"{module.__name__}.{name}: no {missing}")
            positional = [p for p in have.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            takes_more = any(p.kind == p.VAR_POSITIONAL for p in have.values())
            for i, p in enumerate(q for q in want.values()
                                  if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)):
                if i >= len(positional):
                    if not takes_more:
                        found.append(f"{module.__name__}.{name}: '{p.name}' not positional")
                    break
                if p.kind == p.POSITIONAL_OR_KEYWORD and positional[i].name != p.name:
                    found.append(f"{module.__name__}.{name}: position {i} is "
                                 f"'{positional[i].name}', NumPy's '{p.name}'")
    return found


def test_every_numpy_parameter_is_taken():
    assert _signature_mismatches() == []


# -- ufuncs ------------------------------------------------------------------------------
def _ufunc_functions() -> dict[str, tuple[np.ufunc, object]]:
    """NumPy's name -> (NumPy's ufunc, fastad's function), for every function of
    fastad.numpy made as a ufunc (`_elementwise.ufunc_like` and the rows)."""
    found = {}
    for name in dir(np):
        ufunc, mine = getattr(np, name), getattr(fnp, name, None)
        if isinstance(ufunc, np.ufunc) and hasattr(mine, "core") and ufunc.nout == 1 \
                and ufunc.signature is None and ufunc.nin in (1, 2):
            found[name] = (ufunc, mine)
    return found


UFUNCS = {name: pair for name, pair in _ufunc_functions().items()
          if name != "ldexp"}  # (its exponents are integers: test_composites' case)
# inputs inside each function's domain (where its derivative exists)
DOMAIN = {"arccosh": (1.2, 2.0), "acosh": (1.2, 2.0)}
NOT_SMOOTH = {"floor", "ceil", "rint", "trunc", "sign", "fix", "heaviside", "floor_divide",
              "remainder", "mod", "fmod"}


def test_ufuncs_are_found():
    assert {"exp", "add", "maximum", "arctan2", "power", "sign", "isnan", "remainder", "fmax",
            "acos", "logaddexp2", "degrees"} <= set(UFUNCS)


@st.composite
def _ufunc_case(draw, name):
    """inputs (shapes broadcasting together), a mask, and the keywords to pass."""
    ufunc = UFUNCS[name][0]
    shapes, full = draw(hnp.mutually_broadcastable_shapes(num_shapes=ufunc.nin, max_dims=2,
                                                           min_side=1, max_side=3))
    lo, hi = DOMAIN.get(name, (0.3, 0.9))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    inputs = [rng.uniform(lo, hi, s) for s in shapes]
    mask = draw(st.one_of(st.none(), st.booleans().map(lambda b: np.array(b)),
                          st.just(rng.uniform(size=full) < 0.6)))
    use_out = draw(st.booleans()) and full != ()  # a 0-d traced value is immutable
    as_tuple = draw(st.booleans())
    return inputs, mask, use_out, as_tuple, rng.uniform(-1.0, 1.0, full)


def _weights_like(result, weights):
    return np.broadcast_to(weights, np.shape(result))


def _ufunc_loss(name, mask, use_out, as_tuple, weights, start):
    ufunc, mine = UFUNCS[name]

    def numpy_version(*inputs):
        kw = {} if mask is None else {"where": mask}
        if use_out:
            out = start.copy()
            got = ufunc(*inputs, out=(out,) if as_tuple else out, **kw)
            assert got is out
            return np.sum(weights * out)
        result = ufunc(*inputs, **kw)
        if mask is not None:  # NumPy leaves those positions uninitialized; fastad: zeros
            result = np.where(np.broadcast_to(mask, np.shape(result)), result, 0.0)
        return np.sum(weights * result)

    def loss(x):
        inputs = [x[k] for k in range(len(x))] if isinstance(x, tuple) else list(x)
        kw = {} if mask is None else {"where": mask}
        if use_out:
            out = fnp.array(start)  # a traced array when traced (and NumPy's otherwise)
            got = mine(*inputs, out=(out,) if as_tuple else out, **kw)
            assert got is out
            return fnp.sum(weights * out)
        result = mine(*inputs, **kw)
        if mask is not None:  # (zeros already when traced; on plain values NumPy's garbage)
            result = fnp.where(np.broadcast_to(mask, np.shape(result)), result, 0.0)
        return fnp.sum(weights * result)
    return numpy_version, loss


def _all_ways(loss, args, want, smooth=True):
    """loss's value (eager, jit, compiled) is ``want``; its gradient agrees with
    central finite differences eagerly, and with the eager one compiled."""
    value, grad = fa.value_and_grad(loss, argnums=tuple(range(len(args))))(*args)
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fa.jit(loss)(*args), value, rtol=1e-12, atol=1e-12)
    compiled = fa.compile(loss, argnums=tuple(range(len(args))), backend=COMPILED)
    for g, e in zip(compiled(*args), grad):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    if smooth:
        fa.check_grads(loss, args, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(UFUNCS))
@SETTINGS
@given(data=st.data())
def test_ufunc_keywords(name, data):
    inputs, mask, use_out, as_tuple, weights = data.draw(_ufunc_case(name))
    ufunc, mine = UFUNCS[name]
    full = np.broadcast_shapes(*(np.shape(x) for x in inputs))
    start = np.linspace(-1.0, 1.0, int(np.prod(full))).reshape(full)
    if np.dtype(ufunc(*inputs).dtype).kind == "b":  # comparisons: values only
        kw = {} if mask is None else {"where": mask}
        want = ufunc(*inputs, **kw)
        if mask is not None:
            want = np.where(np.broadcast_to(mask, want.shape), want, False)

        def compare(*xs):
            return fnp.where(mine(*xs, **kw), 1.0, 0.0) * 1.0
        got = fa.jit(compare)(*inputs)
        np.testing.assert_array_equal(got, want.astype(float))
        return
    if mask is not None:  # where= without out=: zeros where the mask is False
        got = fa.jit(lambda *xs: mine(*xs, where=mask) * 1.0)(*inputs)
        np.testing.assert_allclose(got, np.where(mask, ufunc(*inputs), 0.0), rtol=1e-14)
    numpy_version, loss = _ufunc_loss(name, mask, use_out, as_tuple, weights, start)
    want = numpy_version(*inputs)
    # on plain values: NumPy's own function
    np.testing.assert_allclose(loss(tuple(inputs)), want, rtol=1e-12, atol=1e-12)

    def traced(*xs):
        return loss(xs)
    _all_ways(traced, tuple(inputs), want, smooth=name not in NOT_SMOOTH)


CASTINGS = ["no", "equiv", "safe", "same_kind", "unsafe"]


@SETTINGS
@given(name=st.sampled_from(sorted(n for n in UFUNCS if UFUNCS[n][0].nin in (1, 2))),
       in_dtype=st.sampled_from([np.float32, np.float64]),
       dtype=st.sampled_from([None, np.float32, np.float64, np.int64]),
       casting=st.sampled_from(CASTINGS))
def test_ufunc_types_are_numpys(name, in_dtype, dtype, casting):
    """``dtype`` and ``casting``: the result's dtype and values are NumPy's, or
    the error is NumPy's."""
    ufunc, mine = UFUNCS[name]
    lo, hi = DOMAIN.get(name, (0.3, 0.9))
    inputs = [np.linspace(lo, hi, 4).astype(in_dtype) for _ in range(ufunc.nin)]
    kw = {"casting": casting} if dtype is None else {"casting": casting, "dtype": dtype}
    try:
        want = ufunc(*inputs, **kw)
    except Exception as error:  # NumPy refuses: fastad gives NumPy's error
        with pytest.raises(type(error)):
            fa.jit(lambda *xs: mine(*xs, **kw) * 1)(*inputs)
        return
    if want.dtype.kind not in "fb":
        return  # integer results of traced floats are not differentiable data
    seen = []

    def f(*xs):
        result = mine(*xs, **kw)
        seen.append(result.dtype)
        return result
    got = fa.jit(f)(*inputs)
    assert seen[-1] == want.dtype
    np.testing.assert_allclose(got, want, rtol=2e-6 if want.dtype == np.float32 else 1e-12)


def test_ufunc_out_rules():
    x = np.linspace(0.1, 0.9, 6).reshape(2, 3)

    def into_numpy_array(x):
        fnp.exp(x, out=np.zeros((2, 3)))

    with pytest.raises(TracingError, match="NumPy array"):
        fa.grad(lambda x: into_numpy_array(x) or fnp.sum(x))(x)

    def unknown(x):
        return fnp.sum(fnp.exp(x, bogus=1))

    with pytest.raises(TypeError, match="bogus"):
        fa.grad(unknown)(x)

    def twice(x):  # np.add(t, t, out=t): in place, as NumPy, and returns out
        y = x * 1.0
        got = np.add(y, x, out=y, where=x > 0.4)
        assert got is y
        return fnp.sum(y ** 2)

    want = np.where(x > 0.4, 2 * x, x)
    _all_ways(twice, (x,), np.sum(want ** 2))
    # order and subok are NumPy's layout parameters: accepted, no effect on values
    layout = fa.jit(lambda x: fnp.sin(x, order="F", subok=False) + np.cos(x, order="C"))(x)
    np.testing.assert_allclose(layout, np.sin(x) + np.cos(x), rtol=1e-15)


# -- reductions -------------------------------------------------------------------------
@st.composite
def _reduction_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    nd = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1),
                          st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd,
                                   unique=True).map(tuple)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.uniform(0.5, 1.5, shape)
    mask_shape = draw(st.sampled_from([shape, shape[1:], ()]))
    mask = rng.uniform(size=mask_shape) < 0.7
    if not mask.any():
        mask = np.ones(mask_shape, bool)
    keepdims = draw(st.booleans())
    return x, axis, mask, keepdims, rng


EXTREMA = ["max", "min", "amax", "amin", "nanmax", "nanmin"]
SUMS = ["sum", "prod", "nansum", "nanprod"]


def _check_with_out(numpys, ours, x, kw, use_out, rng):
    """ours(x, **kw) against NumPy's, written into ``out=`` when asked (the
    returned array is out itself), through every way of calling it."""
    want_result = numpys(x, **kw)
    use_out = use_out and np.ndim(want_result) > 0  # a 0-d traced value is immutable
    weights = rng.uniform(-1.0, 1.0, np.shape(want_result))
    start = rng.uniform(-1.0, 1.0, np.shape(want_result))

    def numpy_loss(x):
        if use_out:
            out = start.copy()
            assert numpys(x, out=out, **kw) is out
            return np.sum(weights * out)
        return np.sum(weights * numpys(x, **kw))

    def loss(x):
        if use_out:
            out = fnp.array(start)
            assert ours(x, out=out, **kw) is out
            return fnp.sum(weights * out)
        return fnp.sum(weights * ours(x, **kw))

    want = numpy_loss(x)
    np.testing.assert_allclose(loss(x), want, rtol=1e-12)  # plain: NumPy's own
    _all_ways(loss, (x,), want)


@pytest.mark.parametrize("name", EXTREMA + SUMS)
@SETTINGS
@given(case=_reduction_case(), use_initial=st.booleans(), use_where=st.booleans(),
       use_out=st.booleans(), through_numpy=st.booleans())
def test_reduction_initial_where_out(name, case, use_initial, use_where, use_out,
                                     through_numpy):
    x, axis, mask, keepdims, rng = case
    numpys = getattr(np, name)
    ours = numpys if through_numpy else getattr(fnp, name)  # NumPy's dispatch, or direct
    kw = {"axis": axis, "keepdims": keepdims}
    if use_initial:
        kw["initial"] = float(rng.uniform(0.6, 1.4)) if name not in ("prod", "nanprod") \
            else 0.9
    if use_where:
        kw["where"] = mask
    if use_where and not use_initial and name in EXTREMA:
        with pytest.raises(ValueError) as numpy_error:
            numpys(x, **kw)
        with pytest.raises(ValueError, match="initial") as ours_error:
            fa.jit(lambda x: ours(x, **kw))(x)
        assert str(ours_error.value) == str(numpy_error.value)
        return
    _check_with_out(numpys, ours, x, kw, use_out, rng)


@pytest.mark.parametrize("name", ["mean", "nanmean", "var", "std", "nanvar", "nanstd"])
@SETTINGS
@given(case=_reduction_case(), use_where=st.booleans(), use_out=st.booleans(),
       spread=st.sampled_from([{}, {"ddof": 1}, {"correction": 1}, {"mean": True}]),
       through_numpy=st.booleans())
def test_moments_where_mean_correction(name, case, use_where, use_out, spread, through_numpy):
    x, axis, mask, keepdims, rng = case
    # three elements or more per moment (a spread of one is 0/0, its root not smooth)
    x = rng.uniform(0.5, 1.5, tuple(max(side, 3) for side in x.shape))
    numpys = getattr(np, name)
    ours = numpys if through_numpy else getattr(fnp, name)
    kw = {"axis": axis, "keepdims": keepdims}
    if use_where:
        mask = rng.uniform(size=x.shape) < 0.8
        if np.any(np.sum(mask, axis=axis, keepdims=True) < 3):
            mask[...] = True
        kw["where"] = mask
    if name in ("var", "std", "nanvar", "nanstd"):
        spread = dict(spread)
        if spread.get("mean"):
            spread["mean"] = np.mean(x, axis=axis, keepdims=True, where=kw.get("where", True))
        kw.update(spread)
    _check_with_out(numpys, ours, x, kw, use_out, rng)


def test_ddof_and_correction_together_are_numpys_error():
    x = np.linspace(0.0, 1.0, 5)
    with pytest.raises(ValueError) as numpy_error:
        np.var(x, ddof=1, correction=1)
    for fn in (fnp.var, fnp.std):
        with pytest.raises(ValueError) as ours:
            fa.grad(lambda x: fn(x, ddof=1, correction=1))(x)
        assert str(ours.value) == str(numpy_error.value)


@pytest.mark.parametrize("name", ["any", "all"])
@SETTINGS
@given(case=_reduction_case(), use_out=st.booleans())
def test_any_all_where_out(name, case, use_out):
    x, axis, mask, keepdims, rng = case
    x = np.where(rng.uniform(size=x.shape) < 0.3, 0.0, x)
    ours, numpys = getattr(fnp, name), getattr(np, name)
    kw = {"axis": axis, "keepdims": keepdims, "where": mask}
    want = numpys(x, **kw)
    use_out = use_out and np.ndim(want) > 0  # a 0-d traced value is immutable

    def f(x):
        if use_out:
            out = fnp.zeros(np.shape(want), bool)
            assert ours(x, out=out, **kw) is out
            return fnp.where(out, 1.0, 0.0) * x.sum()
        return fnp.where(ours(x, **kw), 1.0, 0.0) * x.sum()
    np.testing.assert_allclose(fa.jit(f)(x), np.where(want, 1.0, 0.0) * x.sum(), rtol=1e-14)
    assert np.array_equal(ours(x, **kw), want)  # plain


# -- other functions' parameters ----------------------------------------------------------
OTHERS = {
    "clip, NumPy 2.1's min and max": (
        lambda np_, x: np_.clip(x, min=0.7, max=1.2),),
    "clip with out": (
        lambda np_, x: _into(np_, lambda o: np_.clip(x, 0.7, 1.2, out=o), x.shape),),
    "clip where": (
        lambda np_, x: np_.clip(x, max=1.1, where=x > 0.8, out=np_.array(x * 0.5)),),
    "round(a=, out=)": (
        lambda np_, x: _into(np_, lambda o: np_.round(a=x * 0.5, decimals=3, out=o),
                             x.shape) * x,),
    "tile(A=)": (lambda np_, x: np_.tile(A=x, reps=(2, 1)),),
    "broadcast_to(array=)": (lambda np_, x: np_.broadcast_to(array=x[0], shape=(3, 4)) * 1.0,),
    "broadcast_arrays(subok=)": (
        lambda np_, x: np_.broadcast_arrays(x[:1], x, subok=False)[0] * x,),
    "dot with out": (lambda np_, x: _into(np_, lambda o: np_.dot(x, x.T, out=o), (3, 3)),),
    "outer with out": (
        lambda np_, x: _into(np_, lambda o: np_.outer(x[0], x[1], out=o), (4, 4)),),
    "trace with dtype and out": (
        lambda np_, x: _into(np_, lambda o: np_.trace(np_.reshape(x, (2, 2, 3)), 1, dtype=np.float64,
                                                      out=o), (3,)),),
    "concat with out": (
        lambda np_, x: _into(np_, lambda o: np_.concat([x, x * 2.0], axis=1, out=o), (3, 8)),),
    "concatenate with dtype": (
        lambda np_, x: np_.concatenate([x, x], dtype=np.float64, casting="same_kind"),),
    "matmul axes": (
        lambda np_, x: np_.matmul(x, x, axes=[(1, 0), (0, 1), (1, 0)]),),
    "matmul with out": (
        lambda np_, x: _into(np_, lambda o: np_.matmul(x, x.T, out=o), (3, 3)),),
    "full with a traced fill_value and dtype": (
        lambda np_, x: np_.full(shape=(2, 2), fill_value=x[0, 0], dtype=np.float64, order="F")
        * x[1, :2],),
    "zeros(shape=) written into": (lambda np_, x: _written(np_, np_.zeros(shape=(3, 4)), x),),
    "ones(shape=, order=) written into": (
        lambda np_, x: _written(np_, np_.ones(shape=(3, 4), order="F"), x),),
    "astype(copy=False)": (lambda np_, x: np_.astype(x, np.float64, copy=False) * 2.0,),
    "size(a, axis) and shape(a=)": (
        lambda np_, x: x * np_.size(x, axis=1) + np_.shape(a=x)[0] + np_.ndim(a=x),),
    "reshape(a, shape=)": (lambda np_, x: np_.reshape(x, shape=(4, 3)) * 1.0,),
    "zeros_like(shape=) written into": (
        lambda np_, x: _written(np_, np_.zeros_like(x, shape=(3, 4), order="F"), x),),
    "ones_like(shape=)": (lambda np_, x: np_.ones_like(x[0], shape=(2, 4)) * x[1:],),
    "array(ndmin=)": (lambda np_, x: np_.array(x[0], ndmin=3, order="C") * 1.0,),
    "asarray(dtype=)": (lambda np_, x: np_.asarray(x, dtype=np.float32, order="C") * 1.0,),
    "ascontiguousarray(dtype=)": (
        lambda np_, x: np_.ascontiguousarray(x, dtype=np.float32) * 1.0,),
    "einsum with out and dtype": (
        lambda np_, x: _into(np_, lambda o: np_.einsum("ij,kj->ik", x, x, out=o,
                                                       dtype=np.float64), (3, 3)),),
    "full_like with a traced fill_value and dtype": (
        lambda np_, x: np_.full_like(x, x[0, 0], dtype=np.float64, order="C") * x,),
    "row_stack(dtype=)": (
        lambda np_, x: np_.vstack([x, x[:1]], dtype=np.float64, casting="same_kind"),),
    "sort(stable=)": (lambda np_, x: np_.sort(x, axis=1, stable=True),),
    "percentile(interpolation=)": (
        lambda np_, x: np_.percentile(x, [30.0, 60.0], axis=1, method="linear"),),
}


def _into(np_, call, shape):
    """call(out) with out a fresh array of that shape (traced when np_ is fastad.numpy)."""
    out = np_.zeros(shape)
    assert call(out) is out
    return out


def _written(np_, a, x):
    a[1:] = x[:2] * 3.0
    return a


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_functions_take_numpys_parameters(name):
    (fn,) = OTHERS[name]
    x = np.random.default_rng(len(name)).uniform(0.5, 1.5, (3, 4))
    want = fn(np, x)
    weights = np.random.default_rng(1).uniform(-1.0, 1.0, np.shape(want))
    np.testing.assert_allclose(fn(fnp, x), want, rtol=1e-14)  # plain: NumPy's

    def loss(x):
        return fnp.sum(weights * fn(fnp, x))
    # (finite differences of a float32 result are too coarse to compare)
    smooth = "round" not in name and np.result_type(want) == np.float64
    _all_ways(loss, (x,), np.sum(weights * want), smooth=smooth)


def test_keywords_fastad_cannot_give_on_traced_values_are_refused():
    """What fastad cannot compute on traced values is an error, never ignored."""
    x = np.linspace(0.5, 1.5, 6)
    cases = [lambda x: fnp.divmod(x, 0.3, where=x > 1.0)[0],
             lambda x: fnp.modf(x, out=(fnp.zeros(6), fnp.zeros(6)))[0],
             lambda x: fnp.frexp(x, casting="unsafe")[0],
             lambda x: fnp.percentile(x, 50.0, weights=np.ones(6), method="inverted_cdf"),
             lambda x: fnp.nanquantile(x, 0.5, weights=np.ones(6), method="inverted_cdf")]
    for case in cases:
        with pytest.raises(TracingError):
            fa.grad(lambda x: fnp.sum(case(x)))(x)
        case(x)  # NumPy's own on plain values
    with pytest.raises(TypeError, match="bogus"):
        fa.grad(lambda x: fnp.sum(fnp.einsum("i->i", x, bogus=1)))(x)


def test_clip_argument_errors_are_numpys():
    x = np.linspace(0.0, 1.0, 4)
    for kw in ({"a_min": 0.1, "a_max": 0.5, "max": 0.3}, {"a_min": 0.1}):
        with pytest.raises((TypeError, ValueError)) as numpy_error:
            np.clip(x, **kw)
        with pytest.raises(type(numpy_error.value)) as ours:
            fa.grad(lambda x: fnp.sum(fnp.clip(x, **kw)))(x)
        assert str(ours.value) == str(numpy_error.value)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), cut=st.floats(0.55, 0.8))
def test_traced_masks(seed, cut):
    """A mask computed from traced values (its pattern a guard when compiled)
    selects in reductions, moments and a ufunc's where= as a plain one does."""
    x = np.random.default_rng(seed).uniform(0.5, 1.5, (3, 4))
    x[:, 0] = 1.3 + 0.01 * np.arange(3)  # every row and column has a selected element
    x[0, 1:] = 1.2 + 0.01 * np.arange(3)  # (distinct: a tie of maxima has no derivative)

    def f(x, np_=fnp):
        m = x > cut
        return (np_.sum(np.max(x, axis=1, initial=0.7, where=m))
                + np_.sum(np.mean(x, axis=0, where=m)) + np_.sum(np.nansum(x, where=m))
                + np_.sum(np.exp(x, where=m, out=np_.zeros_like(x))))
    _all_ways(f, (x,), f(x, np))
