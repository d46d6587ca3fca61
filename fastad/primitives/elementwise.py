"""Elementwise primitives, as tables.

An elementwise primitive's Jacobian is diagonal, so one linear map serves as
both its VJP and its JVP: ``d(g, ans, *args)`` multiplies the incoming
cotangent (or tangent) ``g`` by the partial derivative.  Binary rules see
arguments un-broadcast; the reverse transform sums cotangents back to each
argument's shape (`unbroadcast`).

Complex inputs: the rules are written as holomorphic derivatives applied
without conjugation (``g * f'(z)``), the convention of autograd and JAX:
cotangents pair with tangents as ``Re(sum(ct * t))``, so the gradient of a
real-valued f(x + iy) is ``df/dx - i df/dy``.  Non-holomorphic primitives
(``abs``, ``real``, ``imag``, ``conj``) have separate reverse and forward
rules; the transforms keep the cotangent and tangent of a real slot real.

Non-differentiable points (documented choices, tested):
  abs(x) at 0 -> derivative 0 (sign(0) = 0), as autograd and JAX do.
  sqrt(x) at 0 -> derivative +inf, as the limit; cbrt likewise.
  maximum/minimum at ties -> the cotangent is split evenly (0.5 each).
  floor, ceil, round, sign, comparisons -> derivative 0 everywhere.
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from .numpy_proxy import fnp
from ..core.registry import defbatch, defjvp, defprim, defreads, defshape, defvjp
from ..core.tracer import Tracer, current_builder
from ..transforms import batching

_LN2 = float(np.log(2.0))
_LN10 = float(np.log(10.0))
_RAD_PER_DEG = float(np.pi / 180.0)

# Cost classes (`Primitive.cost`): a few instructions per element, or a libm call
# per element.  Every primitive of this module is elementwise.
CHEAP, LIBM = "cheap", "transcendental"

# What a rule reads besides g and shapes (`Primitive.vjp_reads`): nothing, the
# answer, the operands.
G, ANS, X, Y = (), ("ans",), (0,), (1,)
XY, ANS_X, ANS_Y = (0, 1), ("ans", 0), ("ans", 1)

# name: (numpy implementation, cost class, what d reads, d(g, ans, x))
UNARY = {
    "neg":        (np.negative,   CHEAP, G,   lambda g, ans, x: -g),
    "exp":        (np.exp,        LIBM,  ANS, lambda g, ans, x: g * ans),
    "exp2":       (np.exp2,       LIBM,  ANS, lambda g, ans, x: g * ans * _LN2),
    "log":        (np.log,        LIBM,  X,   lambda g, ans, x: g / x),
    "log2":       (np.log2,       LIBM,  X,   lambda g, ans, x: g / (x * _LN2)),
    "log10":      (np.log10,      LIBM,  X,   lambda g, ans, x: g / (x * _LN10)),
    "log1p":      (np.log1p,      LIBM,  X,   lambda g, ans, x: g / (x + 1.0)),
    "expm1":      (np.expm1,      LIBM,  ANS, lambda g, ans, x: g * (ans + 1.0)),
    "sqrt":       (np.sqrt,       CHEAP, ANS, lambda g, ans, x: g * (0.5 / ans)),
    "cbrt":       (np.cbrt,       LIBM,  ANS, lambda g, ans, x: g / (3.0 * fnp.square(ans))),
    "square":     (np.square,     CHEAP, X,   lambda g, ans, x: g * (2.0 * x)),
    "reciprocal": (np.reciprocal, CHEAP, ANS, lambda g, ans, x: -(g * fnp.square(ans))),
    "sin":        (np.sin,        LIBM,  X,   lambda g, ans, x: g * fnp.cos(x)),
    "cos":        (np.cos,        LIBM,  X,   lambda g, ans, x: -(g * fnp.sin(x))),
    "tan":        (np.tan,        LIBM,  ANS, lambda g, ans, x: g * (1.0 + fnp.square(ans))),
    "arcsin":     (np.arcsin,     LIBM,  X,   lambda g, ans, x: g / fnp.sqrt(1.0 - fnp.square(x))),
    "arccos":     (np.arccos,     LIBM,  X,   lambda g, ans, x: -(g / fnp.sqrt(1.0 - fnp.square(x)))),
    "arctan":     (np.arctan,     LIBM,  X,   lambda g, ans, x: g / (1.0 + fnp.square(x))),
    "sinh":       (np.sinh,       LIBM,  X,   lambda g, ans, x: g * fnp.cosh(x)),
    "cosh":       (np.cosh,       LIBM,  X,   lambda g, ans, x: g * fnp.sinh(x)),
    "tanh":       (np.tanh,       LIBM,  ANS, lambda g, ans, x: g * (1.0 - fnp.square(ans))),
    "arcsinh":    (np.arcsinh,    LIBM,  X,   lambda g, ans, x: g / fnp.sqrt(fnp.square(x) + 1.0)),
    # sqrt(x - 1) sqrt(x + 1), not sqrt(x**2 - 1): the same for real x > 1, and
    # the derivative of NumPy's principal branch for complex x
    "arccosh":    (np.arccosh,    LIBM,  X,
                   lambda g, ans, x: g / (fnp.sqrt(x - 1.0) * fnp.sqrt(x + 1.0))),
    "arctanh":    (np.arctanh,    LIBM,  X,   lambda g, ans, x: g / (1.0 - fnp.square(x))),
    "deg2rad":    (np.deg2rad,    CHEAP, G,   lambda g, ans, x: g * _RAD_PER_DEG),
}

# Piecewise constant: the derivative is zero wherever it exists.  All cheap.
UNARY_ZERO_DERIVATIVE = {
    "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "round": np.rint,
    "logical_not": np.logical_not,
}


def _tie_weight(x, y, dtype=None):
    """1 where x wins, 0.5 on ties, 0 where y wins (in ``dtype``: float64
    weights would make a float32 cotangent float64, a float32 function's
    reverse-mode Jacobian and Hessian-vector products float64)."""
    w = fnp.where(x > y, 1.0, fnp.where(x == y, 0.5, 0.0))
    return w if dtype is None or dtype == _F64 else fnp.astype(w, dtype)


def _tied(g, x, y):
    """``g * _tie_weight(x, y)``.  A plain sweep's float64 cotangent (nothing
    records it) takes the weight from the comparison itself and 0.5 written
    at ties only, multiplied in place: the same float64 weights and product,
    in two passes over the elements instead of five (a ReLU's adjoint)."""
    if type(g) is np.ndarray and g.dtype == _F64 and current_builder() is None:
        w = np.greater(x, y)
        if type(w) is np.ndarray and w.shape == g.shape:
            w = w.astype(_F64)
            ties = np.equal(x, y)
            if ties.any():
                w[ties] = 0.5
            return np.multiply(g, w, out=w)
    dtype = fnp.result_dtype(g)
    return g * _tie_weight(x, y, dtype if dtype.kind == "f" else None)


_F64 = np.dtype(np.float64)


def _pow_dx(g, ans, x, y):
    if isinstance(y, Tracer) or not np.all(np.asarray(y) != 0):
        # y * x**(y - 1) at y == 0 and x == 0 (or x = inf, nan) would be 0 * inf:
        # x**0 is flat, as autograd and JAX have it
        return g * fnp.where(y == 0, 0.0, y * fnp.power(x, fnp.where(y == 0, 1.0, y - 1.0)))
    return g * (y * fnp.power(x, y - 1.0))


def _pow_dy(g, ans, x, y):
    # log(x) at x == 0 would give 0 * -inf; the limit of x**y * log(x) there is 0.
    return g * (ans * fnp.log(fnp.where(x == 0.0, 1.0, x)))


def _nonzero(d):
    """A divisor ``d`` with 1 where it is 0 (the quotient's numerator is 0 there)."""
    return fnp.where(d == 0, 1.0, d)


# name: (numpy implementation, cost class, what d/dx and d/dy read, d/dx, d/dy)
BINARY = {
    "add":       (np.add,       CHEAP, (G, G),         lambda g, ans, x, y: g,
                                                lambda g, ans, x, y: g),
    "sub":       (np.subtract,  CHEAP, (G, G),         lambda g, ans, x, y: g,
                                                lambda g, ans, x, y: -g),
    "mul":       (np.multiply,  CHEAP, (Y, X),         lambda g, ans, x, y: g * y,
                                                lambda g, ans, x, y: g * x),
    "div":       (np.divide,    CHEAP, (Y, ANS_Y),     lambda g, ans, x, y: g / y,
                                                lambda g, ans, x, y: -(g * ans / y)),
    "pow":       (np.power,     LIBM,  (XY, ANS_X),    _pow_dx, _pow_dy),
    "maximum":   (np.maximum,   CHEAP, (XY, XY),       lambda g, ans, x, y: _tied(g, x, y),
                                                lambda g, ans, x, y: _tied(g, y, x)),
    "minimum":   (np.minimum,   CHEAP, (XY, XY),       lambda g, ans, x, y: _tied(g, y, x),
                                                lambda g, ans, x, y: _tied(g, x, y)),
    "arctan2":   (np.arctan2,   LIBM,  (XY, XY),       lambda g, ans, x, y: g * y / (fnp.square(x) + fnp.square(y)),
                                                lambda g, ans, x, y: -(g * x) / (fnp.square(x) + fnp.square(y))),
    # at (0, 0), where ans is 0, the subgradient 0 (JAX's), not 0 / 0
    "hypot":     (np.hypot,     LIBM,  (ANS_X, ANS_Y), lambda g, ans, x, y: g * x / _nonzero(ans),
                                                lambda g, ans, x, y: g * y / _nonzero(ans)),
    # equal infinite operands share it, 1/2 each (x - ans is NaN there)
    "logaddexp": (np.logaddexp, LIBM,  (("ans", 0, 1), ("ans", 0, 1)),
                  lambda g, ans, x, y: g * fnp.where((x == y) & fnp.isinf(x), 0.5,
                                                     fnp.exp(x - ans)),
                  lambda g, ans, x, y: g * fnp.where((x == y) & fnp.isinf(y), 0.5,
                                                     fnp.exp(y - ans))),
    # |x| with y's sign bit (-0.0 counts as negative): +-1 in x, 0 in y
    "copysign":  (np.copysign,  CHEAP, (ANS_X, G),     lambda g, ans, x, y: g * (
                                                    fnp.copysign(1.0, x) * fnp.copysign(1.0, ans)),
                                                lambda g, ans, x, y: fnp.zeros_like(g)),
    # C's fmod, exact (x - q y for the integer q = trunc(x / y), taken exactly):
    # 1 in x, -q in y, q recovered as the integer (x - ans) / y rounds to
    "fmod":      (np.fmod,      CHEAP, (G, ("ans", 0, 1)), lambda g, ans, x, y: g,
                                                lambda g, ans, x, y: -(g * fnp.rint((x - ans) / y))),
}

# Comparisons and logic, all cheap.
BINARY_ZERO_DERIVATIVE = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or,
}


def elementwise_rules(p, *, params=False):
    """Give ``p`` the shape and batching rules every elementwise primitive
    shares (``params``: its shape rule accepts keyword parameters)."""
    defshape(p, shapes.elementwise(p, params=params))
    defbatch(p, batching.elementwise)
    return p


def _binary_vjps(dx, dy):
    def vjp_x(g, ans, x, y):
        return fnp.unbroadcast(dx(g, ans, x, y), fnp.shape(x))

    def vjp_y(g, ans, x, y):
        return fnp.unbroadcast(dy(g, ans, x, y), fnp.shape(y))
    return vjp_x, vjp_y


def _where_vjp(branch_selected):
    def vjp(g, ans, c, a, b):
        # Exact zeros on the side not taken, so inf/NaN there cannot leak in.
        picked = fnp.where(c, g, 0.0) if branch_selected else fnp.where(c, 0.0, g)
        return fnp.unbroadcast(picked, fnp.shape(a if branch_selected else b))
    return vjp


for _name, (_impl, _cost, _reads, _d) in UNARY.items():
    _p = elementwise_rules(defprim(_name, _impl, 1, cost=_cost, elementwise=True))
    _p.numpy_names = (_impl.__name__,)
    defvjp(_p, _d)
    defreads(_p, _reads)
    defjvp(_p, _d)
    _p.elementwise_partials = [_d]

for _name, _impl in UNARY_ZERO_DERIVATIVE.items():
    _p = elementwise_rules(defprim(_name, _impl, 1, differentiable=False, cost=CHEAP,
                                   elementwise=True))
    _p.numpy_names = (_impl.__name__,)

for _name, (_impl, _cost, _reads, _dx, _dy) in BINARY.items():
    _p = elementwise_rules(defprim(_name, _impl, 2, cost=_cost, elementwise=True))
    _p.numpy_names = (_impl.__name__,)
    defvjp(_p, *_binary_vjps(_dx, _dy))
    defreads(_p, *_reads)
    defjvp(_p, _dx, _dy)
    _p.elementwise_partials = [_dx, _dy]

for _name, _impl in BINARY_ZERO_DERIVATIVE.items():
    _p = elementwise_rules(defprim(_name, _impl, 2, differentiable=False, cost=CHEAP,
                                   elementwise=True))
    _p.numpy_names = (_impl.__name__,)

_where = elementwise_rules(defprim("where", np.where, 3, cost=CHEAP, elementwise=True))
defvjp(_where, None, _where_vjp(True), _where_vjp(False))
defreads(_where, G, X, X)
defjvp(_where, None, lambda t, ans, c, a, b: fnp.where(c, t, 0.0),
       lambda t, ans, c, a, b: fnp.where(c, 0.0, t))

def _abs_vjp(g, ans, x):
    if not fnp.iscomplexobj(x):
        return g * fnp.sign(x)
    return g * fnp.conj(x) / fnp.where(ans == 0.0, 1.0, ans)  # 0 at z = 0, like real sign


def _abs_jvp(t, ans, x):
    if not fnp.iscomplexobj(x):
        return t * fnp.sign(x)
    return fnp.real(t * fnp.conj(x)) / fnp.where(ans == 0.0, 1.0, ans)


# Elementwise, with rules of their own (for complex inputs) outside the tables:
# abs, real, imag, conj.
_p = elementwise_rules(defprim("abs", np.abs, 1, cost=CHEAP, elementwise=True))
defvjp(_p, _abs_vjp)
defreads(_p, ANS_X)
defjvp(_p, _abs_jvp)
_p.elementwise_partials = [_abs_vjp]


def _as_complex(g, like):
    """A real cotangent as the complex dtype of ``like``."""
    return fnp.astype(g, fnp.result_dtype(like))


# Real part, imaginary part, conjugate: linear over the reals, not holomorphic.
# With the pairing Re(ct * t): real's transpose is the identity into the
# complex numbers, imag's is multiplication by -i, conj's is conj.
_p = elementwise_rules(defprim("real", np.real, 1, cost=CHEAP, elementwise=True))
defvjp(_p, lambda g, ans, x: _as_complex(g, x))
defreads(_p, G)
defjvp(_p, lambda t, ans, x: fnp.real(t))

_p = elementwise_rules(defprim("imag", np.imag, 1, cost=CHEAP, elementwise=True))
defvjp(_p, lambda g, ans, x: _as_complex(g, x) * -1j)
defreads(_p, G)
defjvp(_p, lambda t, ans, x: fnp.imag(t))

_p = elementwise_rules(defprim("conj", np.conjugate, 1, cost=CHEAP, elementwise=True))
defvjp(_p, lambda g, ans, x: fnp.conj(g))
defreads(_p, G)
defjvp(_p, lambda t, ans, x: fnp.conj(t))


def _astype_impl(x, dtype):
    x = np.asarray(x)
    if x.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        x = x.real  # NumPy's own cast, without its ComplexWarning
    return x.astype(dtype)


_astype = defprim("astype", _astype_impl, 1, cost=CHEAP, elementwise=True)
defvjp(_astype, lambda g, ans, x, dtype: fnp.astype(g, fnp.result_dtype(x)))
defreads(_astype, G)
defjvp(_astype, lambda t, ans, x, dtype: fnp.astype(t, dtype))
defshape(_astype, shapes.astype)  # a cast: checks the dtype it names
defbatch(_astype, batching.elementwise)



def _integer_op_impl(*operands, op, dtypes):
    """NumPy's integer-only ufunc ``op`` (bitwise_and, left_shift, gcd, ...) of
    integers held in float64 (`core.int_data`), each cast to its dtype first;
    the result in float64 again, so that it feeds compiled code (the caller
    wraps it into a narrow dtype)."""
    ints = [np.asarray(v).astype(d) for v, d in zip(operands, dtypes)]
    with np.errstate(all="ignore"):
        return np.asarray(getattr(np, op)(*ints), dtype=np.float64)


# a host call on every backend, by what it is (`fallback.by_design`)
_integer_op = defprim("integer_op", _integer_op_impl, None, differentiable=False,
                      cost="structural")
defshape(_integer_op, lambda *operands, **params: shapes.broadcast(*operands))
defbatch(_integer_op, batching.elementwise)

# the identity, which the transforms treat as a constant: no element is touched
elementwise_rules(defprim("stop_gradient", lambda x: x, 1, differentiable=False, cost="view",
                          elementwise=True))
def no_rule(what, why="is not implemented"):
    """The rule of an argument without a derivative here: asking for it
    raises NotImplementedError naming ``what``, never a silent zero."""
    def rule(*args, **params):
        raise NotImplementedError(f"the derivative of {what} {why}; pass that argument as a "
                                  "constant")
    return rule


# the identity whose derivative is refused, naming ``what``, rather than taken
# as zero: a value used where the function has no derivative (the
# pseudo-determinant of a singular covariance), still computable when no
# derivative is asked for (a compiled function's values)
_no_derivative = elementwise_rules(defprim("no_derivative", lambda x, what: x, 1, cost="view",
                                           elementwise=True), params=True)
defvjp(_no_derivative, lambda g, ans, x, what: no_rule(what, "is not defined")())
defjvp(_no_derivative, lambda t, ans, x, what: no_rule(what, "is not defined")())
# the recorded outcome of Python control flow on a traced value (`fastad.core.guards`);
# vmap batches it by its effect (every example must take the recorded branch)
_guard = defprim("guard", lambda pred, expected: np.bool_(bool(pred) == expected), 1,
                 differentiable=False, effect="guard")
defshape(_guard, shapes.guard)
