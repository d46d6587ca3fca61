# cython: language_level=3
"""Tracing's hot path in C: what a scalar loop records per operation.

``s = s + np.log(1.0 + x[i] ** 2)`` records one instruction per operation
on 0-d float64 values.  In Python (`core.tracer._append` and the fast paths
of `core.fast_paths`) each costs two or three Python frames (the operator,
`_append`, the tracer's ``__init__``) and about 1.3 µs; the functions here
are the same code without the frames, for the same operands only: they
record the same instruction, value, aval, constant slots and source
position, in the same order, and hand everything else (arrays, other
traces, unusual values) to the Python functions they stand for.  Without
this module (no compiler, FASTAD_NO_EXT=1) the Python functions run alone
and record the same tape (tests/test_tracer_fast_paths.py compares the
two byte for byte).

`install` receives what the Python side defines (classes, tables, the
functions to fall back to) once, as `core.tracer` and `core.fast_paths` are
imported; this module imports nothing of fastad's.
"""
from libc.math cimport copysign
from libc.stdint cimport int64_t
from libc.stdlib cimport free, realloc
from cpython.ref cimport PyObject
from cpython.pystate cimport PyThreadState, PyThreadState_Get


cdef extern from "Python.h":
    unsigned long long PyThreadState_GetID(PyThreadState *tstate)

cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #include <structmember.h>
    /* the innermost Python frame (sys._getframe(0) of the code calling C), a new reference */
    static PyObject *fastad_current_frame(void) {
        PyObject *f = (PyObject *)PyEval_GetFrame();
        if (f == NULL) f = Py_None;
        Py_INCREF(f);
        return f;
    }
    /* a frame's caller (None at the outermost), code object and offset of
       its last instruction: f_back, f_code and f_lasti, new references */
    static PyObject *fastad_back(PyObject *f) {
        PyObject *b = (PyObject *)PyFrame_GetBack((PyFrameObject *)f);
        if (b == NULL) { b = Py_None; Py_INCREF(b); }
        return b;
    }
    static PyObject *fastad_code(PyObject *f) {
        return (PyObject *)PyFrame_GetCode((PyFrameObject *)f);
    }
    static PyObject *fastad_lasti(PyObject *f) {
    #if PY_VERSION_HEX >= 0x030B0000
        return PyLong_FromLong(PyFrame_GetLasti((PyFrameObject *)f));
    #else
        return PyObject_GetAttrString(f, "f_lasti");
    #endif
    }
    /* a new instance of a class with __slots__ (builder, slot, value, ...: a
       Tracer) with its first three slots set, at the offsets its member
       descriptors give: its Python __init__ does only that */
    static Py_ssize_t fastad_tracer_offsets[3];
    static int fastad_set_tracer_offsets(PyObject *cls, PyObject *names) {
        for (int k = 0; k < 3; k++) {
            PyObject *d = PyObject_GetAttr(cls, PyTuple_GET_ITEM(names, k));
            if (d == NULL) return -1;
            if (Py_TYPE(d) != &PyMemberDescr_Type) {
                Py_DECREF(d);
                PyErr_SetString(PyExc_TypeError, "not a member descriptor");
                return -1;
            }
            fastad_tracer_offsets[k] = ((PyMemberDescrObject *)d)->d_member->offset;
            Py_DECREF(d);
        }
        return 0;
    }
    static PyObject *fastad_new_tracer(PyObject *cls, PyObject *builder, PyObject *slot,
                                       PyObject *value) {
        PyTypeObject *type = (PyTypeObject *)cls;
        PyObject *t = type->tp_alloc(type, 0);
        if (t == NULL) return NULL;
        PyObject *items[3] = {builder, slot, value};
        for (int k = 0; k < 3; k++) {
            Py_INCREF(items[k]);
            *(PyObject **)((char *)t + fastad_tracer_offsets[k]) = items[k];
        }
        return t;
    }
    /* a tracer's slot k (0 builder, 1 slot, 2 value), borrowed; NULL if unset */
    static PyObject *fastad_tracer_slot(PyObject *t, int k) {
        return *(PyObject **)((char *)t + fastad_tracer_offsets[k]);
    }
    /* tuple.__new__(cls, (a, b, c, d, e)) of a tuple subclass (an Instr) */
    static PyObject *fastad_new_tuple5(PyObject *cls, PyObject *a, PyObject *b, PyObject *c,
                                       PyObject *d, PyObject *e) {
        PyTypeObject *type = (PyTypeObject *)cls;
        PyObject *t = type->tp_alloc(type, 5);
        if (t == NULL) return NULL;
        PyObject *items[5] = {a, b, c, d, e};
        for (int k = 0; k < 5; k++) {
            Py_INCREF(items[k]);
            PyTuple_SET_ITEM(t, k, items[k]);
        }
        return t;
    }
    """
    object fastad_current_frame()
    object fastad_back(object f)
    object fastad_code(object f)
    object fastad_lasti(object f)
    int fastad_set_tracer_offsets(object cls, object names) except -1
    object fastad_new_tracer(object cls, object builder, object slot, object value)
    object fastad_new_tuple5(object cls, object a, object b, object c, object d, object e)
    PyObject *fastad_tracer_slot(object t, int k)

# what `install` fills in: the Python side's classes, tables and fallbacks
cdef object Tracer, ArrayTracer, Instr, SourcePos, Aval, F64, F64_DTYPE, ndarray
cdef object INDEX_AVAL, INT_AVAL, FLOAT_AVAL, INT64_STR
cdef dict scalar_avals, code_positions, registry, FRONT_END, PY_PATHS
cdef object positions_of, UNSEEN, traces, py_append
cdef dict OPERATORS
cdef int64_t INT_BOUND = 1 << 62
cdef Py_ssize_t RELEASE_BYTES = 0


def install(dict names):
    """Take the Python side's objects (see the module's docstring)."""
    global Tracer, ArrayTracer, Instr, SourcePos, Aval, F64, F64_DTYPE, ndarray, INDEX_AVAL
    global INT_AVAL, FLOAT_AVAL, INT64_STR, scalar_avals, code_positions, registry, FRONT_END
    global positions_of, UNSEEN, traces, py_append, OPERATORS, RELEASE_BYTES
    Tracer, ArrayTracer = names["Tracer"], names["ArrayTracer"]
    Instr, SourcePos, Aval = names["Instr"], names["SourcePos"], names["Aval"]
    RELEASE_BYTES = names["RELEASE_BYTES"]
    F64, F64_DTYPE, ndarray = names["F64"], names["F64_DTYPE"], names["ndarray"]
    INDEX_AVAL, INT_AVAL, FLOAT_AVAL = names["INDEX_AVAL"], names["INT_AVAL"], names["FLOAT_AVAL"]
    INT64_STR = names["INT64_STR"]
    scalar_avals, code_positions = names["scalar_avals"], names["code_positions"]
    registry, FRONT_END = names["registry"], names["FRONT_END"]
    positions_of, UNSEEN, traces = names["positions_of"], names["UNSEEN"], names["traces"]
    py_append = names["append"]
    OPERATORS = names["operators"]
    fastad_set_tracer_offsets(Tracer, ("builder", "slot", "value"))


cdef inline object new_tuple_of(object cls, tuple items):
    """``tuple.__new__(cls, items)`` (an Instr, a SourcePos): NamedTuple's own
    constructor is Python code."""
    return tuple.__new__(cls, items)


# a Tracer's (or ArrayTracer's) builder, slot and value read at their
# offsets (`fastad_set_tracer_offsets`): an attribute lookup each otherwise
# (the type's method cache, the member descriptor), several per operation
cdef inline object t_builder(object t):
    return tracer_slot(t, 0, "builder")


cdef inline object t_slot(object t):
    return tracer_slot(t, 1, "slot")


cdef inline object t_value(object t):
    return tracer_slot(t, 2, "value")


cdef inline object tracer_slot(object t, int k, str name):
    cdef PyObject *p
    if type(t) is Tracer or type(t) is ArrayTracer:
        p = fastad_tracer_slot(t, k)
        if p != NULL:
            return <object>p
    return getattr(t, name)


cdef inline object new_tracer(object builder, object slot, object value):
    """``Tracer(builder, slot, value)`` without its Python ``__init__``."""
    return fastad_new_tracer(Tracer, builder, slot, value)


# the user's code object `user_line` found last and its positions (an entry
# of `code_positions`, which keeps both for good): a loop asks for the same
# code at every operation
cdef inline object scalar_op(int op, object a, object b):
    """a + b, a - b, a * b or a / b (op 0-3, `PRIM_NAMES`' order): the
    scalars' own operators, one IEEE operation each."""
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * b
    return a / b


cdef object last_code = None
cdef object last_positions = None


cdef object user_line(int depth):
    """The `SourcePos` of the first frame outside fastad from ``depth`` on
    (`_append`'s walk; depth 1 is the innermost Python frame: this code has none)."""
    f = fastad_current_frame()
    while depth > 1 and f is not None:
        f = fastad_back(f)
        depth -= 1
    global last_code, last_positions
    while f is not None:
        code = fastad_code(f)
        if code is last_code:  # the user's loop: its positions again
            positions = last_positions
        else:
            positions = code_positions.get(id(code), UNSEEN)
            if positions is UNSEEN:
                positions = positions_of(code)
            if positions is not None:
                last_code, last_positions = code, positions
        if positions is not None:  # the user's code
            offset = fastad_lasti(f)
            line = (<dict>positions).get(offset)
            if line is None:
                line = (<dict>positions)[offset] = new_tuple_of(SourcePos, (code, offset))
            return line
        f = fastad_back(f)
    return None


cpdef object append(object builder, object prim, tuple ins, tuple params, object value,
                    int depth):
    """`core.tracer._append`: record ``out = prim(*ins, **params)`` of value
    ``value`` and give its tracer.  NumPy scalars here, other values (arrays)
    by the Python function."""
    kind = type(value)
    aval = scalar_avals.get(kind)
    if aval is None:
        if kind is ndarray and cnp.PyArray_NDIM(<cnp.ndarray>value) == 0 \
                and cnp.PyArray_NBYTES(<cnp.ndarray>value) < RELEASE_BYTES:
            # a 0-d array (a scalar `where`'s): its Aval made per value as the
            # Python function makes it; never large enough to be held or released
            aval = new_tuple_of(Aval, ((), value.dtype))
        else:
            note(builder.tape.recorded, prim, ins, params)  # (as it records the operands)
            return py_append(builder, prim, ins, params, value, depth)
    # the builder's attributes read from its instance dict (plain attributes
    # set by its constructor), the lists it appends to from its `Lists`
    cdef dict attrs = builder.__dict__
    cdef Lists lists = attrs.get("_lists")
    tape = attrs["tape"]
    if lists is None or lists.tape is not tape:
        lists = attrs["_lists"] = Lists(builder, tape)
    avals = lists.avals
    out = len(avals)
    lists.values.append(value)
    avals.append(aval)
    line = attrs["line_override"]
    if not line:
        line = None
        if attrs["record_lines"]:
            line = user_line(depth)
    lists.instrs.append(fastad_new_tuple5(Instr, prim.name, out, ins, params, line))
    if lists.operands is not None:
        lists.operands.append(ins)
        if lists.column is not None:
            lists.column.add(prim.name, ins, len(params) != 0)
    if attrs["drop_unread"] and attrs["_large"]:  # an eager gradient's, holding large values
        builder._keep_reads(prim, ins, out)
    return new_tracer(builder, out, value)


cdef class Lists:
    """The lists a builder's trace appends to per operation (its values, the
    tape's avals and instructions, its trace's operands and C column), read
    once per builder and tape instead of through five attribute lookups per
    operation; kept in the builder's dict (``_lists``), made again if its tape
    is another.  A builder's lists are made with it and never replaced."""

    cdef readonly object tape
    cdef list values, avals, instrs, operands
    cdef Column column

    def __cinit__(self, builder, tape):
        self.tape = tape
        self.values, self.avals, self.instrs = builder.values, tape.avals, tape.instrs
        recorded = tape.recorded
        self.operands = None if recorded is None else recorded.operands
        self.column = None if recorded is None else recorded.column


cdef inline int note(object recorded, object prim, tuple ins, tuple params) except -1:
    """The instruction in its trace's C arrays (`RecordedColumns.column`), if it has them."""
    if recorded is not None:
        column = recorded.column
        if column is not None:
            (<Column?>column).add(prim.name, ins, len(params) != 0)
    return 0


# this thread's stack of traces (`tracer._traces.stack`, a list each thread
# keeps and only ever changes in place) and the id of the thread state it
# was read in: a `threading.local` attribute costs about 80 ns, a tenth of
# an operation; thread states' ids are never reused
cdef object thread_stack = None
cdef unsigned long long thread_stack_id = 0


cdef inline bint innermost(object builder):
    global thread_stack, thread_stack_id
    cdef unsigned long long tid = PyThreadState_GetID(PyThreadState_Get())
    if thread_stack is None or tid != thread_stack_id:
        thread_stack, thread_stack_id = traces.stack, tid
    stack = thread_stack
    return bool(stack) and stack[-1] is builder


cdef object float_const(object builder, object v):
    """`Builder.const` of a Python float (its first case): the slot."""
    key = (float, v, copysign(1.0, <double>v), 1.0)
    slot = builder._const_slot.get(key)
    if slot is None:
        slot = builder.const(v)
    return slot


# -- the operators: `fast_paths._arithmetic`'s case of two float64 scalars of
# the innermost trace (or one and a Python float); all else its Python method

cdef object arithmetic(object self, object other, str name, int op, bint reflected):
    if type(self) is Tracer and type(t_value(self)) is F64:
        builder = t_builder(self)
        if innermost(builder):
            kind = type(other)
            slot = None
            if kind is Tracer:
                if t_builder(other) is builder and type(t_value(other)) is F64:
                    slot, v = t_slot(other), t_value(other)
            elif kind is float:
                slot, v = float_const(builder, other), other
            if slot is not None:
                value = (scalar_op(op, v, t_value(self)) if reflected
                         else scalar_op(op, t_value(self), v))
                ins = (slot, t_slot(self)) if reflected else (t_slot(self), slot)
                return append(builder, registry[PRIM_NAMES[op]], ins, (), value, 1)
            elif kind is Tracer and t_builder(other) is builder and float_0d(t_value(other)):
                # and a 0-d float64 array (a `where`'s): the primitive's ufunc, as `bind`
                p = registry[PRIM_NAMES[op]]
                if plain(p):
                    if p.impl is UFUNCS[op]:
                        # the ufunc of a scalar and a 0-d array is the scalars'
                        # operator on the two values (one IEEE operation, a
                        # float64 scalar): without the ufunc's call and array
                        w = (<cnp.ndarray>t_value(other))[()]
                        value = (scalar_op(op, w, t_value(self)) if reflected
                                 else scalar_op(op, t_value(self), w))
                    elif reflected:
                        value = p.impl(t_value(other), t_value(self))
                    else:
                        value = p.impl(t_value(self), t_value(other))
                    ins = (t_slot(other), t_slot(self)) if reflected \
                        else (t_slot(self), t_slot(other))
                    return append(builder, p, ins, (), value, 1)
    return PY_PATHS[name](self, other)


PRIM_NAMES = ("add", "sub", "mul", "div")
UFUNCS = (np.add, np.subtract, np.multiply, np.true_divide)


cdef inline bint float_0d(object value):
    """`fast_paths._float_0d`: a 0-d float64 array."""
    return type(value) is ndarray and cnp.PyArray_NDIM(<cnp.ndarray>value) == 0 \
        and value.dtype is F64_DTYPE


cdef bint plain(object prim) except -1:
    """`fast_paths._plain`: whether `bind` computes ``prim`` by ``prim.impl`` in every trace."""
    return bool(prim.builtin and prim.release_impl is None and prim.view_impl is None
                and prim.in_place_impl is None and not prim.keeps_integers)


def add(self, other):
    return arithmetic(self, other, "__add__", 0, False)


def radd(self, other):
    return arithmetic(self, other, "__radd__", 0, True)


def sub(self, other):
    return arithmetic(self, other, "__sub__", 1, False)


def rsub(self, other):
    return arithmetic(self, other, "__rsub__", 1, True)


def mul(self, other):
    return arithmetic(self, other, "__mul__", 2, False)


def rmul(self, other):
    return arithmetic(self, other, "__rmul__", 2, True)


def truediv(self, other):
    return arithmetic(self, other, "__truediv__", 3, False)


def rtruediv(self, other):
    return arithmetic(self, other, "__rtruediv__", 3, True)


# -- comparisons, ``-x``, ``abs(x)`` and ``np.where`` of float64 scalars: the
# cases of `fast_paths._comparison`, `_unary_operator` and `_array_function`

cdef object comparison(object self, object other, str name, object ufunc):
    if type(self) is Tracer and type(t_value(self)) is F64:
        builder = t_builder(self)
        prim = UFUNC_PRIMS.get(ufunc)
        if prim is not None and innermost(builder) and is_scalar(builder, other):
            if type(other) is Tracer:
                ins, v = (t_slot(self), t_slot(other)), t_value(other)
            else:
                ins, v = (t_slot(self), float_const(builder, other)), other
            return append(builder, prim, ins, (), prim.impl(t_value(self), v), 1)
    return PY_PATHS[name](self, other)


def lt(self, other):
    return comparison(self, other, "__lt__", np.less)


def le(self, other):
    return comparison(self, other, "__le__", np.less_equal)


def gt(self, other):
    return comparison(self, other, "__gt__", np.greater)


def ge(self, other):
    return comparison(self, other, "__ge__", np.greater_equal)


cdef object unary(object self, str name, object ufunc):
    if type(self) is Tracer and type(t_value(self)) is F64:
        builder = t_builder(self)
        prim = UFUNC_PRIMS.get(ufunc)
        if prim is not None and innermost(builder):
            return append(builder, prim, (t_slot(self),), (), prim.impl(t_value(self)), 1)
    return PY_PATHS[name](self)


def neg(self):
    return unary(self, "__neg__", np.negative)


def absolute(self):
    return unary(self, "__abs__", np.absolute)


def array_function(self, func, types, args, kwargs):
    """``np.where(c, x, y)`` of scalars of the innermost trace (a boolean or
    float64 condition, float64 values or Python floats)."""
    if func is np.where and not kwargs and len(args) == 3:
        builder = t_builder(self)
        prim = registry["where"]
        c, a, b = args
        if innermost(builder) and plain(prim) and where_operand(builder, c) \
                and where_operand(builder, a) and where_operand(builder, b):
            # (the slots in `record`'s order: left to right, constants made as met)
            ins = (operand_slot(builder, c), operand_slot(builder, a), operand_slot(builder, b))
            c, a, b = operand_value(c), operand_value(a), operand_value(b)
            if prim.impl is np.where:
                # NumPy's where of scalars (float64 values or Python floats):
                # a 0-d float64 array holding the value chosen, made without
                # the call's argument conversions
                value = cnp.PyArray_ZEROS(0, NULL, cnp.NPY_FLOAT64, 0)
                (<double *>cnp.PyArray_DATA(value))[0] = <double>(a if c else b)
            else:
                value = prim.impl(c, a, b)
            return append(builder, prim, ins, (), value, 1)
    return PY_PATHS["__array_function__"](self, func, types, args, kwargs)


cdef inline bint where_operand(object builder, object x):
    kind = type(x)
    if kind is Tracer:
        value_kind = type(t_value(x))
        return t_builder(x) is builder and (value_kind is F64 or value_kind is np.bool_)
    return kind is float


cdef inline object operand_slot(object builder, object x):
    return t_slot(x) if type(x) is Tracer else builder.const(x)


cdef inline object operand_value(object x):
    return t_value(x) if type(x) is Tracer else x


def power(self, other):
    """`fast_paths._power`: ``x ** 2`` a square, ``x ** n`` a `pow` by a constant."""
    kind = type(other)
    if type(self) is Tracer and type(t_value(self)) is F64 and (kind is int or kind is float):
        builder = t_builder(self)
        if innermost(builder):
            if other == 2:
                prim = registry["square"]
                return append(builder, prim, (t_slot(self),), (), prim.impl(t_value(self)), 1)
            prim = registry["pow"]
            if kind is float:
                slot = float_const(builder, other)
            elif -INT_BOUND < other < INT_BOUND:  # `Builder.const`'s second case
                slot = builder._const_slot.get((int, other))
                if slot is None:
                    slot = builder.const(other)
            else:
                slot = builder.const(other)
            return append(builder, prim, (t_slot(self), slot), (),
                          prim.impl(t_value(self), other), 1)
    return PY_PATHS["__pow__"](self, other)


def array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """`fast_paths._array_ufunc`'s cases of float64 scalars: one input, or
    two of them or one and a Python float."""
    if method == "__call__" and not kwargs:
        prim = UFUNC_PRIMS.get(ufunc)
        builder = t_builder(self)
        if prim is not None and innermost(builder):
            if len(inputs) == 1:
                if type(self) is Tracer and type(t_value(self)) is F64:
                    return append(builder, prim, (t_slot(self),), (), prim.impl(t_value(self)), 1)
            elif len(inputs) == 2:
                a, b = inputs
                if is_scalar(builder, a) and is_scalar(builder, b):
                    # (the slots in `record`'s order: a constant's is made first)
                    ins = (t_slot(a) if type(a) is Tracer else builder.const(a),
                           t_slot(b) if type(b) is Tracer else builder.const(b))
                    a = t_value(a) if type(a) is Tracer else a
                    b = t_value(b) if type(b) is Tracer else b
                    op = OPERATORS.get(prim.name)  # np.add(x, y): x + y, as `bind`
                    return append(builder, prim, ins, (),
                                  op(a, b) if op is not None else prim.impl(a, b), 1)
    return PY_PATHS["__array_ufunc__"](self, ufunc, method, *inputs, **kwargs)


cdef inline bint is_scalar(object builder, object x):
    """`fast_paths._is_scalar`: a float64 scalar of ``builder``'s trace or a Python float."""
    kind = type(x)
    return kind is float or (kind is Tracer and t_builder(x) is builder
                             and type(t_value(x)) is F64)


cdef dict UFUNC_PRIMS = {}


def item(self, key):
    """`fast_paths._item`: ``x[i]`` of a float64 vector by a Python int."""
    value = t_value(self)
    if type(key) is int and type(self) is ArrayTracer and type(value) is ndarray:
        arr = <cnp.ndarray>value
        if cnp.PyArray_NDIM(arr) == 1 and value.dtype is F64_DTYPE:
            builder = t_builder(self)
            d = cnp.PyArray_DIM(arr, 0)
            if innermost(builder) and -d <= key < d:
                return take(builder, t_slot(self), value, key % d)
    return PY_PATHS["__getitem__"](self, key)


cdef object take(object builder, object source, object value, int64_t k):
    """The `take` of element ``k`` of ``value`` (slot ``source``) by a 0-d
    int64 constant, the constant made as `Builder.const` makes it."""
    ckey = (INT64_STR, (), (<char *>&k)[:8])  # = k.to_bytes(8, sys.byteorder, signed=True)
    consts = builder._const_slot
    slot = consts.get(ckey)
    if slot is None:  # `Builder._new_index`, inlined
        index = cnp.PyArray_ZEROS(0, NULL, cnp.NPY_INT64, 0)
        (<int64_t *>cnp.PyArray_DATA(index))[0] = k
        cnp.PyArray_CLEARFLAGS(index, cnp.NPY_ARRAY_WRITEABLE)  # (it owns its data)
        tape = builder.tape
        slot = consts[ckey] = len(tape.avals)
        builder.values.append(index)
        tape.avals.append(INDEX_AVAL)
        tape.consts[slot] = index
    return append(builder, registry["take"], (source, slot), (), value[k], 1)


def set_paths(dict python_paths, dict ufunc_prims):
    """The Python fast paths the ones here fall back to, by method name, and
    `fast_paths.UFUNC_PRIMS` (the same dict, filled later by fastad.numpy)."""
    global PY_PATHS, UFUNC_PRIMS
    PY_PATHS = python_paths
    UFUNC_PRIMS = ufunc_prims


#: method name -> the function here that a Tracer class's method becomes
METHODS = {"__add__": add, "__radd__": radd, "__sub__": sub, "__rsub__": rsub,
           "__mul__": mul, "__rmul__": rmul, "__truediv__": truediv, "__rtruediv__": rtruediv,
           "__pow__": power, "__array_ufunc__": array_ufunc, "__getitem__": item,
           "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge, "__neg__": neg,
           "__abs__": absolute, "__array_function__": array_function}


cdef class Column:
    """What `transforms.tape_arrays` reads of each instruction of a trace,
    kept in C arrays as `append` records it (`RecordedColumns.column`): its
    arity and operand slots, its primitive's number (in order of first
    appearance, as `_features` numbers them) and whether it has parameters.
    The Python passes over a million instructions that would find them are
    several tenths of a second of detection."""

    cdef int64_t *arity
    cdef int64_t *flat
    cdef int64_t *prims
    cdef char *with_params
    cdef Py_ssize_t n, cap, nflat, capflat
    cdef dict numbers

    def __cinit__(self):
        self.numbers = {}

    def __dealloc__(self):
        free(self.arity)
        free(self.flat)
        free(self.prims)
        free(self.with_params)

    cdef int add(self, str name, tuple ins, bint with_params) except -1:
        cdef Py_ssize_t k, m = len(ins)
        if self.n == self.cap:
            self.cap = max(1024, 2 * self.cap)
            self.arity = <int64_t *>grown(self.arity, self.cap * sizeof(int64_t))
            self.prims = <int64_t *>grown(self.prims, self.cap * sizeof(int64_t))
            self.with_params = <char *>grown(self.with_params, self.cap)
        if self.nflat + m > self.capflat:
            self.capflat = max(4096, 2 * self.capflat, self.nflat + m)
            self.flat = <int64_t *>grown(self.flat, self.capflat * sizeof(int64_t))
        number = self.numbers.get(name)
        if number is None:
            number = self.numbers[name] = len(self.numbers)
        self.prims[self.n] = number
        self.arity[self.n] = m
        self.with_params[self.n] = with_params
        for k in range(m):
            self.flat[self.nflat + k] = ins[k]
        self.nflat += m
        self.n += 1
        return 0

    def __len__(self):
        return self.n

    def operands(self):
        """(arity per instruction, the operand slots of all, in order): int64 arrays."""
        import numpy as np
        return (np.array(<int64_t[:self.n]>self.arity if self.n else [], np.int64),
                np.array(<int64_t[:self.nflat]>self.flat if self.nflat else [], np.int64))

    def primitives(self):
        """(the primitives' names by number, each instruction's number, the
        positions of the instructions with parameters)."""
        import numpy as np
        by_name = np.array(<int64_t[:self.n]>self.prims if self.n else [], np.int64)
        with_params = np.frombuffer(self.with_params[:self.n], np.int8)
        return list(self.numbers), by_name, np.flatnonzero(with_params).tolist()


cdef void *grown(void *p, size_t size) except NULL:
    q = realloc(p, size)
    if q == NULL:
        raise MemoryError()
    return q


def object_numbers(list objects, const int64_t[::1] at):
    """A number per distinct object among ``objects[at[k]]`` (by identity, in
    order of first appearance) for each k, and the k of each number's first
    appearance.  What `transforms.tape_arrays` numbers a long tape's avals
    by (a million slots sharing a few aval objects): a Python pass over them
    and a sort of their ids cost a tenth of a second or more."""
    import numpy as np
    cdef Py_ssize_t k, j, n = at.shape[0], size = len(objects)
    numbers = np.empty(n, np.int64)
    cdef int64_t[::1] out = numbers
    cdef list firsts = []
    cdef dict seen = {}
    # the last few objects seen and their numbers: most slots' avals are one
    # of a handful of objects, so the dict is rarely asked
    cdef void *recent[8]
    cdef int64_t recent_number[8]
    cdef int r, filled = 0, next_slot = 0
    cdef void *p
    cdef int64_t number
    for k in range(n):
        j = at[k]
        if j < 0 or j >= size:
            raise IndexError(f"position {j} outside a list of {size}")
        p = <void *>objects[j]
        for r in range(filled):
            if recent[r] == p:
                out[k] = recent_number[r]
                break
        else:
            key = <Py_ssize_t>p
            got = seen.get(key)
            if got is None:
                number = len(firsts)
                seen[key] = number
                firsts.append(k)
            else:
                number = got
            out[k] = number
            recent[next_slot] = p
            recent_number[next_slot] = number
            next_slot = (next_slot + 1) % 8
            if filled < 8:
                filled += 1
    return numbers, firsts
