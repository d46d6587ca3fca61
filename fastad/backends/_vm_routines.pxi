# The library routines the VM calls, handed to it once at import: BLAS and
# LAPACK through SciPy's Cython pointers, and NumPy's own loops for its
# transcendental functions.  Included by _vm.pyx (one extension module).

cdef fastad_linalg LINALG
LINALG.dgemm = <fastad_dgemm_fn>dgemm
LINALG.sgemm = <fastad_sgemm_fn>sgemm
LINALG.dgemv = <fastad_dgemv_fn>dgemv
LINALG.sgemv = <fastad_sgemv_fn>sgemv
LINALG.ddot = <fastad_ddot_fn>ddot
LINALG.sdot = <fastad_sdot_fn>sdot
LINALG.dgesv = <fastad_dgesv_fn>dgesv
LINALG.sgesv = <fastad_sgesv_fn>sgesv
LINALG.dgetrf = <fastad_dgetrf_fn>dgetrf
LINALG.sgetrf = <fastad_sgetrf_fn>sgetrf
LINALG.dpotrf = <fastad_dpotrf_fn>dpotrf
LINALG.spotrf = <fastad_spotrf_fn>spotrf
LINALG.dtrsm = <fastad_dtrsm_fn>dtrsm
LINALG.strsm = <fastad_strsm_fn>strsm
LINALG.dsyevd = <fastad_dsyevd_fn>dsyevd
LINALG.dgesdd = <fastad_dgesdd_fn>dgesdd
LINALG.dgeqrf = <fastad_dgeqrf_fn>dgeqrf
LINALG.dorgqr = <fastad_dorgqr_fn>dorgqr
LINALG.dtrmm = <fastad_dtrmm_fn>dtrmm
LINALG.strmm = <fastad_strmm_fn>strmm

# The VM's transcendental functions that NumPy computes with loops of its own
# (vectorized, dispatched to this CPU when NumPy was imported): the VM calls
# those loops, so its results are NumPy's bits.  Keys: FASTAD_UNARY_FNS and
# FASTAD_BINARY_FNS names.
_NUMPY_UNARY = {
    "EXP": np.exp, "EXP2": np.exp2, "LOG": np.log, "LOG2": np.log2, "LOG10": np.log10,
    "LOG1P": np.log1p, "EXPM1": np.expm1, "SQRT": np.sqrt, "CBRT": np.cbrt, "SIN": np.sin,
    "COS": np.cos, "TAN": np.tan, "ARCSIN": np.arcsin, "ARCCOS": np.arccos,
    "ARCTAN": np.arctan, "SINH": np.sinh, "COSH": np.cosh, "TANH": np.tanh,
    "ARCSINH": np.arcsinh, "ARCCOSH": np.arccosh, "ARCTANH": np.arctanh,
    "FLOOR": np.floor, "CEIL": np.ceil, "ROUND": np.rint,
}
_NUMPY_BINARY = {"POW": np.power, "ARCTAN2": np.arctan2, "HYPOT": np.hypot,
                 "LOGADDEXP": np.logaddexp}
# The VM's dtype codes and NumPy's type numbers
_LOOP_DTYPES = ((DT_F64, cnp.NPY_DOUBLE, "F64"), (DT_F32, cnp.NPY_FLOAT, "F32"))
_installed = ({}, {})  # unary, binary: {(name, dtype name): the ufunc whose loop runs}


cdef int _loop_index(cnp.ufunc u, int nin, int typenum):
    """The loop NumPy's type resolution picks when every operand has type
    typenum: the first one registered with those types (-1 if there is none)."""
    if u.nin != nin or u.nout != 1:
        return -1
    for i in range(u.ntypes):
        if all(u.types[(nin + 1) * i + k] == typenum for k in range(nin + 1)):
            return i
    return -1


cdef void _install_loops() except *:
    cdef cnp.ufunc u
    cdef int f, i, nin, status
    unary = _names(<const char **>fastad_unary_fn_names, FASTAD_NUM_UNARY_FNS)
    binary = _names(<const char **>fastad_binary_fn_names, FASTAD_NUM_BINARY_FNS)
    for nin, names, ufuncs, installed in ((1, unary, _NUMPY_UNARY, _installed[0]),
                                          (2, binary, _NUMPY_BINARY, _installed[1])):
        for f, name in enumerate(names):
            ufunc = ufuncs.get(name)
            if ufunc is None:
                continue
            u = ufunc
            for t, typenum, dtname in _LOOP_DTYPES:
                i = _loop_index(u, nin, typenum)
                if i < 0 or u.functions[i] == NULL:
                    continue  # the VM keeps the C library's function
                if nin == 1:
                    status = fastad_vm_set_unary_loop(f, t, <fastad_ufunc_loop>u.functions[i],
                                                      u.data[i])
                else:
                    status = fastad_vm_set_binary_loop(f, t, <fastad_ufunc_loop>u.functions[i],
                                                       u.data[i])
                if status:
                    raise RuntimeError(f"the VM has no entry for {name} {dtname}")
                installed[name, dtname] = ufunc


_install_loops()


def unary_loops():
    """{(function, dtype): ufunc}: the VM's functions of one argument that run
    NumPy's loop of that ufunc (the others call the C library per element)."""
    return dict(_installed[0])


def binary_loops():
    """The same for the VM's functions of two arguments."""
    return dict(_installed[1])


def use_numpy_loops(bint on):
    """Run the functions of unary_loops() and binary_loops() with NumPy's loops
    (True, the default) or the C library's (False, to compare); returns the
    previous setting.  For tests and measurements: a run in progress may see
    either."""
    return bool(fastad_vm_use_numpy_loops(on))


def use_jit(bint on, bint avx=True):
    """Compile the steps of scalar loops to native code in programs built
    from now on (True, the default, where the platform allows) or interpret
    them (False, to compare); returns the previous setting.  ``avx=False``:
    native code in SSE2's two-operand encoding even where AVX's
    three-operand one is available (to compare the two).  The environment
    variable FASTAD_NO_JIT=1 turns it off at import."""
    return bool(fastad_vm_use_jit(0 if not on else 1 if avx else 2))


if os.environ.get("FASTAD_NO_JIT", "") not in ("", "0"):
    fastad_vm_use_jit(0)


def loop_addresses():
    """{(ufunc name, dtype name): (loop, data)}: the addresses of the loops
    the VM installed (``void loop(char **args, npy_intp *dims, npy_intp
    *steps, void *data)``, and its data argument) as integers, for code that
    calls them itself (the Numba backend's).  Valid in this process only."""
    cdef cnp.ufunc u
    cdef int i
    numbers = {dtname: (typenum, np.dtype(np.float64 if t == DT_F64 else np.float32).name)
               for t, typenum, dtname in _LOOP_DTYPES}
    addresses = {}
    for nin, installed in ((1, _installed[0]), (2, _installed[1])):
        for (name, dtname), ufunc in installed.items():
            u = ufunc
            typenum, dtype = numbers[dtname]
            i = _loop_index(u, nin, typenum)
            addresses[ufunc.__name__, dtype] = (<size_t>u.functions[i], <size_t>u.data[i])
    return addresses
