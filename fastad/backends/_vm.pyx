# cython: language_level=3, boundscheck=False, wraparound=False
"""The C virtual machine, wrapped: `Executable` runs a lowered `Program`.

Per call: inputs are checked (dtype, shape, contiguity); array inputs the
program reads in place are passed to the VM as pointers (bound segments,
vm.h), the others copied into an arena taken from a pool; outputs the
program writes in place are new arrays the VM writes, the others copied out
of the arena; the VM runs with the GIL released.  Arenas and pointer tables
are per call, so one Executable may be called from many threads at once; in
the steady state a call allocates only its output arrays.
"""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from scipy.linalg.cython_blas cimport (ddot, dgemm, dgemv, dtrmm, dtrsm, sdot, sgemm, sgemv,
                                        strmm, strsm)
from scipy.linalg.cython_lapack cimport (dgeqrf, dgesdd, dgesv, dgetrf, dorgqr, dpotrf, dsyevd,
                                         sgesv, sgetrf, spotrf)

import os
import threading

import numpy as np

from ..core.errors import SignatureError, TapeError

cnp.import_array()


cdef extern from "vm.h" nogil:
    ctypedef void (*fastad_dgemm_fn)(char*, char*, int*, int*, int*, double*, double*, int*,
                                     double*, int*, double*, double*, int*)
    ctypedef void (*fastad_sgemm_fn)(char*, char*, int*, int*, int*, float*, float*, int*,
                                     float*, int*, float*, float*, int*)
    ctypedef void (*fastad_dgemv_fn)(char*, int*, int*, double*, double*, int*, double*, int*,
                                     double*, double*, int*)
    ctypedef void (*fastad_sgemv_fn)(char*, int*, int*, float*, float*, int*, float*, int*,
                                     float*, float*, int*)
    ctypedef double (*fastad_ddot_fn)(int*, double*, int*, double*, int*)
    ctypedef float (*fastad_sdot_fn)(int*, float*, int*, float*, int*)
    ctypedef void (*fastad_dgesv_fn)(int*, int*, double*, int*, int*, double*, int*, int*)
    ctypedef void (*fastad_sgesv_fn)(int*, int*, float*, int*, int*, float*, int*, int*)
    ctypedef void (*fastad_dgetrf_fn)(int*, int*, double*, int*, int*, int*)
    ctypedef void (*fastad_sgetrf_fn)(int*, int*, float*, int*, int*, int*)
    ctypedef void (*fastad_dpotrf_fn)(char*, int*, double*, int*, int*)
    ctypedef void (*fastad_spotrf_fn)(char*, int*, float*, int*, int*)
    ctypedef void (*fastad_dtrsm_fn)(char*, char*, char*, char*, int*, int*, double*, double*,
                                     int*, double*, int*)
    ctypedef void (*fastad_strsm_fn)(char*, char*, char*, char*, int*, int*, float*, float*,
                                     int*, float*, int*)
    ctypedef void (*fastad_dsyevd_fn)(char*, char*, int*, double*, int*, double*, double*, int*,
                                      int*, int*, int*)

    ctypedef void (*fastad_dtrmm_fn)(char*, char*, char*, char*, int*, int*, double*, double*,
                                     int*, double*, int*)
    ctypedef void (*fastad_strmm_fn)(char*, char*, char*, char*, int*, int*, float*, float*,
                                     int*, float*, int*)
    ctypedef void (*fastad_dgesdd_fn)(char*, int*, int*, double*, int*, double*, double*, int*,
                                      double*, int*, double*, int*, int*, int*)
    ctypedef void (*fastad_dgeqrf_fn)(int*, int*, double*, int*, double*, double*, int*, int*)
    ctypedef void (*fastad_dorgqr_fn)(int*, int*, int*, double*, int*, double*, double*, int*,
                                      int*)

    ctypedef struct fastad_linalg:
        fastad_dgemm_fn dgemm
        fastad_sgemm_fn sgemm
        fastad_dgemv_fn dgemv
        fastad_sgemv_fn sgemv
        fastad_ddot_fn ddot
        fastad_sdot_fn sdot
        fastad_dgesv_fn dgesv
        fastad_sgesv_fn sgesv
        fastad_dgetrf_fn dgetrf
        fastad_sgetrf_fn sgetrf
        fastad_dpotrf_fn dpotrf
        fastad_spotrf_fn spotrf
        fastad_dtrsm_fn dtrsm
        fastad_strsm_fn strsm
        fastad_dsyevd_fn dsyevd
        fastad_dgesdd_fn dgesdd
        fastad_dgeqrf_fn dgeqrf
        fastad_dorgqr_fn dorgqr
        fastad_dtrmm_fn dtrmm
        fastad_strmm_fn strmm

    struct fastad_jit:
        pass
    fastad_jit *fastad_jit_build(const fastad_program *p)
    void fastad_jit_free(fastad_jit *jit)
    int fastad_vm_use_jit(int on)
    ctypedef struct fastad_program:
        const int32_t *code
        int64_t code_len
        const int64_t *meta
        int64_t meta_len
        const int64_t *index
        int64_t index_len
        int64_t arena_bytes
        const int64_t *bound
        int64_t num_bound
        int64_t bound_bytes
        const fastad_jit *jit

    int fastad_vm_validate(const fastad_program *p, char *err, size_t err_len)
    ctypedef struct fastad_region:
        int64_t byte_lo, bytes, itemsize
        int role, operand
    int FASTAD_REGION_READ, FASTAD_REGION_WRITE, FASTAD_REGION_SAME
    int fastad_vm_regions(const fastad_program *p, int64_t pc, fastad_region *out, int max,
                          char *err, size_t err_len)
    int fastad_vm_run(const fastad_program *p, const fastad_linalg *linalg, void *arena)
    ctypedef int (*fastad_poll_fn)(void *ctx) noexcept
    ctypedef struct fastad_poll:
        fastad_poll_fn fn
        void *ctx
    int fastad_vm_run_polled(const fastad_program *p, const fastad_linalg *linalg, void *arena,
                             const fastad_poll *poll)
    int fastad_vm_run_bound(const fastad_program *p, const fastad_linalg *linalg, void *arena,
                            const void *const *inputs, const fastad_poll *poll)
    int fastad_maps_bound(int op)

    int FASTAD_VM_OK, FASTAD_VM_GUARD_FAILED, FASTAD_VM_SINGULAR, FASTAD_VM_INTERRUPTED
    int FASTAD_VM_INDEX_ERROR, FASTAD_VM_NOT_POSITIVE_DEFINITE
    int FASTAD_NUM_OPCODES, FASTAD_NUM_UNARY_FNS, FASTAD_NUM_BINARY_FNS
    int FASTAD_NUM_COMPARE_FNS, FASTAD_NUM_LOGIC_FNS, FASTAD_NUM_REDUCE_FNS
    int FASTAD_NUM_DTYPES, FASTAD_NUM_FUSED_SLOTS, FASTAD_NUM_FUSED_STEPS
    const char *fastad_opcode_names[]
    const int fastad_opcode_nargs[]
    const char *fastad_unary_fn_names[]
    const char *fastad_binary_fn_names[]
    const char *fastad_compare_fn_names[]
    const char *fastad_logic_fn_names[]
    const char *fastad_reduce_fn_names[]
    const char *fastad_dtype_names[]
    const char *fastad_fused_slot_names[]
    const char *fastad_fused_step_names[]
    const int fastad_dtype_sizes[]
    const char *fastad_descriptor_names[]
    const int fastad_descriptor_head[]
    const int fastad_descriptor_per_dim[]
    int FASTAD_NUM_DESCRIPTORS
    # opcodes.h's constants: every #define FASTAD_NAME integer of the header
    # (tests/test_vm_constants.py checks that this list is complete)
    enum:
        FASTAD_FUSED_MAX_REGS
        FASTAD_FUSED_MAX_SLOTS
        FASTAD_FUSED_MAX_STEPS
        FASTAD_FUSED_MAX_SUMS
        FASTAD_FUSED_MAX_SHIFT
        FASTAD_FUSED_MAX_SHIFTS
        FASTAD_FUSED_SLOT_WORDS
        FASTAD_FUSED_STEP_WORDS
        FASTAD_FUSED_BLOCK
        FASTAD_FUSED_REG_PAD
        FASTAD_MAX_NDIM
        FASTAD_ARENA_ALIGN
        FASTAD_MAX_REGIONS
        FASTAD_LOOP_ENTRY_WORDS
        FASTAD_LOOP_MAX_DEPTH
        FASTAD_SCAN_SUM
        FASTAD_SCAN_SUM_REVERSED
        FASTAD_SCAN_PROD
        FASTAD_SCAN_PROD_REVERSED
        FASTAD_SCAN_PROD_OTHERS
        FASTAD_SCAN_KINDS
    int fastad_vm_threads()
    void fastad_copy(void *dst, const void *src, size_t n)
    ctypedef void (*fastad_ufunc_loop)(char **args, const cnp.npy_intp *dims,
                                       const cnp.npy_intp *steps, void *data) noexcept
    int fastad_vm_set_unary_loop(int f, int t, fastad_ufunc_loop loop, void *data)
    int fastad_vm_set_binary_loop(int f, int t, fastad_ufunc_loop loop, void *data)
    int fastad_vm_use_numpy_loops(int on)
    enum:
        DT_F64
        DT_F32
    const int64_t fastad_fused_parallel_min


cdef extern from "batch.h" nogil:
    ctypedef struct fastad_batch_port:
        char *data
        int64_t arena_offset
        int64_t example_bytes
        int batched

    ctypedef struct fastad_batch:
        const fastad_program *prog
        const fastad_linalg *linalg
        const fastad_batch_port *inputs
        int64_t num_inputs
        const fastad_batch_port *outputs
        int64_t num_outputs
        int64_t count
        int64_t chunk

    int64_t fastad_batch_run_polled(const fastad_batch *b, char **arenas, int nthreads,
                                    int *status, const fastad_poll *poll)
    int64_t fastad_batch_chunks(const fastad_batch *b)


include "_vm_routines.pxi"


cdef enum:
    ARENA_ALIGN = FASTAD_ARENA_ALIGN  # bytes (opcodes.h); buffers are aligned within the arena


# Ctrl-C during a long run.  Signals reach Python's handlers on the main thread
# only, so runs called there poll: the VM calls _check_signals now and then once
# the run has lasted some milliseconds (vm.h), which takes the GIL and runs any
# pending handler; what it raises (KeyboardInterrupt) stops the run and is
# raised when the VM returns.  A batch polls the same way: the chunks the
# calling thread runs poll, and a flag stops its other threads (batch.h).
# Runs and batches called on other threads do not poll.
cdef unsigned long _MAIN_THREAD = threading.main_thread().ident
cdef object _interrupt = None  # what a handler raised during the main thread's run
cdef fastad_poll _POLL


cdef int _check_signals(void *ctx) noexcept nogil:
    global _interrupt
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            _interrupt = exc
            return 1
    return 0


_POLL.fn = _check_signals
_POLL.ctx = NULL


cdef inline const fastad_poll *_poll_here() noexcept:
    """The poll for a run on this thread: the main thread's, else none."""
    return &_POLL if PyThread_get_thread_ident() == _MAIN_THREAD else NULL


cdef int _raise_interrupt() except -1:
    global _interrupt
    exc, _interrupt = _interrupt, None
    raise exc if exc is not None else KeyboardInterrupt()


_INDEX_ERROR = "an index is out of bounds for the axis it indexes (or not an integer)"


cdef inline int _guard_failed(int status) except -1:
    """1 if a run stopped at a failed guard, 0 if it finished; raises for an
    interrupt or a singular matrix."""
    if status == FASTAD_VM_OK:
        return 0
    if status == FASTAD_VM_INTERRUPTED:
        _raise_interrupt()
    if status == FASTAD_VM_SINGULAR:
        raise np.linalg.LinAlgError("Singular matrix")
    if status == FASTAD_VM_NOT_POSITIVE_DEFINITE:
        raise np.linalg.LinAlgError("Matrix is not positive definite")
    if status == FASTAD_VM_INDEX_ERROR:
        raise IndexError(_INDEX_ERROR)
    return status == FASTAD_VM_GUARD_FAILED


cdef list _names(const char **table, int n):
    return [table[i].decode() for i in range(n)]


def tables():
    """The tables and constants compiled into the VM (opcodes.h), for the drift
    tests."""
    return {
        "OPCODES": [(fastad_opcode_names[i].decode(), fastad_opcode_nargs[i])
                    for i in range(FASTAD_NUM_OPCODES)],
        "UNARY_FNS": _names(<const char **>fastad_unary_fn_names, FASTAD_NUM_UNARY_FNS),
        "BINARY_FNS": _names(<const char **>fastad_binary_fn_names, FASTAD_NUM_BINARY_FNS),
        "COMPARE_FNS": _names(<const char **>fastad_compare_fn_names, FASTAD_NUM_COMPARE_FNS),
        "LOGIC_FNS": _names(<const char **>fastad_logic_fn_names, FASTAD_NUM_LOGIC_FNS),
        "REDUCE_FNS": _names(<const char **>fastad_reduce_fn_names, FASTAD_NUM_REDUCE_FNS),
        "DTYPES": _names(<const char **>fastad_dtype_names, FASTAD_NUM_DTYPES),
        "FUSED_SLOTS": _names(<const char **>fastad_fused_slot_names, FASTAD_NUM_FUSED_SLOTS),
        "FUSED_STEPS": _names(<const char **>fastad_fused_step_names, FASTAD_NUM_FUSED_STEPS),
        "DTYPE_SIZES": [fastad_dtype_sizes[i] for i in range(FASTAD_NUM_DTYPES)],
        "DESCRIPTORS": [(fastad_descriptor_names[i].decode(), fastad_descriptor_head[i],
                         fastad_descriptor_per_dim[i]) for i in range(FASTAD_NUM_DESCRIPTORS)],
        "CONSTANTS": {
            "FASTAD_FUSED_MAX_REGS": FASTAD_FUSED_MAX_REGS,
            "FASTAD_FUSED_MAX_SLOTS": FASTAD_FUSED_MAX_SLOTS,
            "FASTAD_FUSED_MAX_STEPS": FASTAD_FUSED_MAX_STEPS,
            "FASTAD_FUSED_MAX_SUMS": FASTAD_FUSED_MAX_SUMS,
            "FASTAD_FUSED_MAX_SHIFT": FASTAD_FUSED_MAX_SHIFT,
            "FASTAD_FUSED_MAX_SHIFTS": FASTAD_FUSED_MAX_SHIFTS,
            "FASTAD_FUSED_SLOT_WORDS": FASTAD_FUSED_SLOT_WORDS,
            "FASTAD_FUSED_STEP_WORDS": FASTAD_FUSED_STEP_WORDS,
            "FASTAD_FUSED_BLOCK": FASTAD_FUSED_BLOCK,
            "FASTAD_FUSED_REG_PAD": FASTAD_FUSED_REG_PAD,
            "FASTAD_MAX_NDIM": FASTAD_MAX_NDIM,
            "FASTAD_ARENA_ALIGN": FASTAD_ARENA_ALIGN,
            "FASTAD_LOOP_ENTRY_WORDS": FASTAD_LOOP_ENTRY_WORDS,
            "FASTAD_LOOP_MAX_DEPTH": FASTAD_LOOP_MAX_DEPTH,
            "FASTAD_SCAN_SUM": FASTAD_SCAN_SUM,
            "FASTAD_SCAN_SUM_REVERSED": FASTAD_SCAN_SUM_REVERSED,
            "FASTAD_SCAN_PROD": FASTAD_SCAN_PROD,
            "FASTAD_SCAN_PROD_REVERSED": FASTAD_SCAN_PROD_REVERSED,
            "FASTAD_SCAN_PROD_OTHERS": FASTAD_SCAN_PROD_OTHERS,
            "FASTAD_SCAN_KINDS": FASTAD_SCAN_KINDS,
            "FASTAD_VM_OK": FASTAD_VM_OK,
            "FASTAD_VM_GUARD_FAILED": FASTAD_VM_GUARD_FAILED,
            "FASTAD_VM_SINGULAR": FASTAD_VM_SINGULAR,
            "FASTAD_VM_INTERRUPTED": FASTAD_VM_INTERRUPTED,
            "FASTAD_VM_INDEX_ERROR": FASTAD_VM_INDEX_ERROR,
            "FASTAD_VM_NOT_POSITIVE_DEFINITE": FASTAD_VM_NOT_POSITIVE_DEFINITE,
        },
    }


def threads():
    """(threads a large FUSED instruction is split over, the element count
    from which it is split)."""
    return fastad_vm_threads(), fastad_fused_parallel_min


def maps_bound(int op):
    """Whether the VM reads opcode ``op``'s arena operands from bound inputs
    (inputs read in place, vm.h), for the drift test of the lowering's list."""
    return bool(fastad_maps_bound(op))


cdef object _bound_segments(program):
    """The bound segments (vm.h), as an int64 array of (byte start, bytes,
    writable) triples: the input ports (read only) and output ports (written)
    past the arena.  A port of no bytes is no segment, wherever it points
    (an empty result placed at the arena's end, where a segment may start)."""
    arena = int(program.arena_bytes)
    spans = sorted((int(p[0]), int(p[1].itemsize * np.prod(p[2], dtype=np.int64)), writable)
                   for ports, writable in ((program.inputs, 0), (program.outputs, 1))
                   for p in ports if int(p[0]) >= arena)
    return np.array([s for s in spans if s[1] > 0], dtype=np.int64).reshape(-1)


cdef void _set_bound(fastad_program *prog, object segments, int64_t bound_bytes):
    prog.num_bound = segments.size // 3
    prog.bound = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>segments) if segments.size else NULL
    prog.bound_bytes = bound_bytes


def regions(program, int64_t pc):
    """The arena regions the validator records for the instruction at word
    ``pc`` of ``program`` (a lowered Program), for tests: a list of
    ``(operand, byte_lo, nbytes, itemsize, role)``, operand the 1-based operand
    word (or ``-1 - s`` for slot s of a FUSED descriptor), role a string of
    "r" (read), "w" (written), "s" (elementwise: may coincide exactly with
    another "s" region).  TapeError if the instruction's operands are invalid."""
    cdef fastad_program prog
    cdef fastad_region out[FASTAD_MAX_REGIONS]
    cdef char err[512]
    code = np.ascontiguousarray(program.code, dtype=np.int32)
    meta = np.ascontiguousarray(program.meta, dtype=np.int64)
    index = np.ascontiguousarray(program.index, dtype=np.int64)
    prog.code = <const int32_t *>cnp.PyArray_DATA(code)
    prog.code_len = code.size
    prog.meta = <const int64_t *>cnp.PyArray_DATA(meta)
    prog.meta_len = meta.size
    prog.index = <const int64_t *>cnp.PyArray_DATA(index)
    prog.index_len = index.size
    prog.arena_bytes = int(program.arena_bytes)
    prog.jit = NULL
    segments = _bound_segments(program)
    _set_bound(&prog, segments, int(getattr(program, "bound_bytes", 0)))
    n = fastad_vm_regions(&prog, pc, out, FASTAD_MAX_REGIONS, err, sizeof(err))
    if n < 0:
        raise TapeError("invalid program: " + err.decode(errors="replace"))
    result = []
    for i in range(min(n, FASTAD_MAX_REGIONS)):
        role = "".join(ch for flag, ch in ((FASTAD_REGION_READ, "r"), (FASTAD_REGION_WRITE, "w"),
                                           (FASTAD_REGION_SAME, "s")) if out[i].role & flag)
        result.append((out[i].operand, out[i].byte_lo, out[i].bytes, out[i].itemsize, role))
    return result


cdef class _Port:
    """Where one input or output lives in the arena."""
    cdef readonly int64_t offset, nbytes
    cdef readonly int typenum
    cdef readonly object dtype, shape, name
    cdef int ndim
    cdef public Py_ssize_t bound  # its segment if read in place (vm.h), else -1
    cdef cnp.npy_intp dims[FASTAD_MAX_NDIM]

    def __init__(self, int64_t offset, dtype, shape, name):
        self.offset = offset
        self.dtype = np.dtype(dtype)
        self.typenum = self.dtype.num
        self.shape = tuple(int(d) for d in shape)
        self.name = name
        if len(self.shape) > FASTAD_MAX_NDIM:
            raise TapeError(f"{name}: more than {FASTAD_MAX_NDIM} dimensions")
        self.ndim = len(self.shape)
        for k in range(self.ndim):
            self.dims[k] = self.shape[k]
        self.nbytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        self.bound = -1

    cdef bint matches(self, object x):
        """x can be copied in as it is: right type, dtype, shape and layout."""
        if type(x) is not np.ndarray:
            return False
        cdef cnp.ndarray a = <cnp.ndarray>x
        if cnp.PyArray_TYPE(a) != self.typenum or cnp.PyArray_NDIM(a) != self.ndim:
            return False
        if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISNOTSWAPPED(a):
            return False
        cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(a)
        for k in range(self.ndim):
            if dims[k] != self.dims[k]:
                return False
        return True

    cdef cnp.ndarray coerce(self, object x):
        """A contiguous copy of x in this port's dtype, or SignatureError."""
        expected = f"a {self.dtype.name} array of shape {self.shape}"
        if isinstance(x, (bool, np.bool_)):
            raise SignatureError(f"{self.name}: expected {expected}, got a bool")
        if isinstance(x, np.ndarray):
            # the other byte order of this dtype is converted below, not refused
            if x.dtype.newbyteorder("=") != self.dtype:
                raise SignatureError(f"{self.name}: expected {expected}, got a {x.dtype.name} "
                                     f"array of shape {x.shape}")
            a = x
        else:
            try:
                a = np.asarray(x)
            except Exception:
                a = None
            if a is None or a.dtype.kind not in "iuf":
                raise SignatureError(f"{self.name}: expected {expected}, got "
                                     f"{type(x).__name__} {x!r:.60}")
        if a.shape != self.shape:
            raise SignatureError(f"{self.name}: expected {expected}, got shape {a.shape}")
        return np.ascontiguousarray(a, dtype=self.dtype)


cdef cnp.ndarray _batch_coerce(_Port port, object x, int64_t count):
    """x as a contiguous array of ``count`` examples of ``port``'s example
    shape (its shape without the chunk axis), or SignatureError."""
    shape = (count,) + port.shape[1:]
    if isinstance(x, np.ndarray) and x.dtype == port.dtype and x.shape == shape:
        return np.ascontiguousarray(x)
    got = (f"a {x.dtype.name} array of shape {x.shape}" if isinstance(x, np.ndarray)
           else type(x).__name__)
    raise SignatureError(f"{port.name}: expected a {port.dtype.name} array of shape {shape} "
                         f"(the batch), got {got}")


cdef class Executable:
    """A validated program with its arena pool.  `run(inputs)` -> outputs, or
    None when a guard recorded at trace time disagrees with these inputs."""
    cdef fastad_program prog
    cdef object _code, _meta, _index, _const_image, _bound
    cdef list _inputs, _outputs, _pool, _batch_pool, _bound_out, _bound_out_index
    cdef Py_ssize_t _ninputs, _nbound, _nbound_out
    cdef readonly object program

    def __init__(self, program, input_names=None):
        self.program = program
        self._code = np.ascontiguousarray(program.code, dtype=np.int32)
        self._meta = np.ascontiguousarray(program.meta, dtype=np.int64)
        self._index = np.ascontiguousarray(program.index, dtype=np.int64)
        self._const_image = bytes(program.const_image)
        self.prog.code = <const int32_t *>cnp.PyArray_DATA(self._code)
        self.prog.code_len = self._code.size
        self.prog.meta = <const int64_t *>cnp.PyArray_DATA(self._meta)
        self.prog.meta_len = self._meta.size
        self.prog.index = <const int64_t *>cnp.PyArray_DATA(self._index)
        self.prog.index_len = self._index.size
        self.prog.arena_bytes = int(program.arena_bytes)
        self._bound = _bound_segments(program)
        _set_bound(&self.prog, self._bound, int(getattr(program, "bound_bytes", 0)))
        names = input_names or [f"argument {i}" for i in range(len(program.inputs))]
        self._inputs = [_Port(off, dt, shape, name)
                        for (off, dt, shape), name in zip(program.inputs, names)]
        self._outputs = [_Port(off, dt, shape, f"output {i}")
                         for i, (off, dt, shape) in enumerate(program.outputs)]
        self._ninputs = len(self._inputs)
        starts = self._bound[::3].tolist()
        for port in self._inputs + self._outputs:
            if port.offset >= self.prog.arena_bytes and port.nbytes and port.offset in starts:
                port.bound = starts.index(port.offset)
        self._nbound = len(starts)
        self._bound_out_index = [i for i, p in enumerate(self._outputs) if p.bound >= 0]
        self._bound_out = [self._outputs[i] for i in self._bound_out_index]
        self._nbound_out = len(self._bound_out)
        self._pool = []
        self._batch_pool = []  # arenas with the bound inputs' segments after them
        self._validate()

    cdef _validate(self):
        cdef char err[512]
        if self.prog.arena_bytes < 0 or self.prog.arena_bytes > (1 << 40):
            raise TapeError(f"invalid program: arena of {self.prog.arena_bytes} bytes")
        if len(self._const_image) > self.prog.arena_bytes:
            raise TapeError("invalid program: constants larger than the arena")
        for port in self._inputs + self._outputs:
            inside = port.offset + port.nbytes <= self.prog.arena_bytes
            if port.bound >= 0:  # in place: exactly its segment
                inside = self._bound[3 * port.bound + 1] == port.nbytes
            if (port.offset < 0 or port.offset % port.dtype.itemsize or not inside
                    or port.dtype.kind not in "fb"):
                raise TapeError(f"invalid program: {port.name} at byte {port.offset} "
                                f"({port.dtype}, {port.shape}) is not inside the arena")
        # Inputs are copied into the arena one after another (fastad_copy, or a
        # batch's copies): no two may share bytes.  Outputs are only read.
        spans = sorted((p.offset, p.offset + p.nbytes, p.name) for p in self._inputs if p.nbytes)
        for (lo1, hi1, name1), (lo2, hi2, name2) in zip(spans, spans[1:]):
            if lo2 < hi1:
                raise TapeError(f"invalid program: {name2} at bytes {lo2}..{hi2 - 1} overlaps "
                                f"{name1} at bytes {lo1}..{hi1 - 1}")
        if fastad_vm_validate(&self.prog, err, sizeof(err)) != 0:
            raise TapeError("invalid program: " + err.decode(errors="replace"))
        # only now: native code trusts the offsets the validator checked
        fastad_jit_free(<fastad_jit *>self.prog.jit)
        self.prog.jit = NULL
        self.prog.jit = fastad_jit_build(&self.prog)

    def __dealloc__(self):
        fastad_jit_free(<fastad_jit *>self.prog.jit)
        self.prog.jit = NULL

    @property
    def native_loops(self):
        """Whether some LOOP of the program runs its steps as native code."""
        return self.prog.jit != NULL

    cdef object _new_arena(self, int64_t extra=0):
        arena = np.empty(self.prog.arena_bytes + extra + ARENA_ALIGN, dtype=np.uint8)
        cdef char *base = self._aligned(arena)
        cdef const char *consts = self._const_image
        memcpy(base, consts, len(self._const_image))
        return arena

    cdef inline char *_aligned(self, object arena):
        cdef uintptr_t p = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>arena)
        return <char *>((p + ARENA_ALIGN - 1) & ~(<uintptr_t>ARENA_ALIGN - 1))

    def run(self, inputs):
        """Outputs for ``inputs`` (a sequence, one value per tape input), as new
        NumPy arrays; None if a guard fails."""
        cdef Py_ssize_t i, n = len(inputs)
        cdef _Port port
        if n != self._ninputs:
            raise SignatureError(f"expected {self._ninputs} arguments, got {n}")
        arrays = []
        for i in range(n):
            port = <_Port>self._inputs[i]
            x = inputs[i]
            arrays.append(x if port.matches(x) else port.coerce(x))
        return self._run_arrays(arrays, -1, False)

    def run_args(self, tuple args, Py_ssize_t which):
        """The hot path of a compiled function called in a loop with arrays:
        output ``which`` (all outputs, as a list, when ``which`` is -1), 0-d
        outputs as NumPy scalars.  None when ``args`` are not exactly the
        arrays the program was compiled for (count, type, dtype, shape,
        layout) or a guard fails; the caller then takes the general path,
        which converts or retraces."""
        cdef Py_ssize_t i, n = len(args)
        if n != self._ninputs:
            return None
        for i in range(n):
            if not (<_Port>self._inputs[i]).matches(args[i]):
                return None
        return self._run_arrays(args, which, True)

    cdef object _run_arrays(self, arrays, Py_ssize_t which, bint scalars):
        """Output ``which`` (-1: all, as a list) for arrays that match the input
        ports, 0-d outputs as NumPy scalars if ``scalars``; None if a guard fails."""
        cdef Py_ssize_t i
        cdef _Port port
        cdef char *base
        cdef int status
        cdef const fastad_poll *poll
        cdef const void *stack_bound[8]
        cdef const void **bound = stack_bound
        cdef void *data
        cdef cnp.ndarray out
        held = None  # aligned copies of inputs read in place, alive through the run
        written = None  # outputs written in place: fresh arrays, by output index
        asked = None  # output `which` if it is one of them
        if self._nbound > 8:
            bound = <const void **>malloc(self._nbound * sizeof(void *))
            if bound == NULL:
                raise MemoryError()
        arena = self._pool.pop() if self._pool else self._new_arena()
        base = self._aligned(arena)
        try:
            for i in range(self._ninputs):
                port = <_Port>self._inputs[i]
                data = cnp.PyArray_DATA(<cnp.ndarray>arrays[i])
                if port.bound < 0:
                    fastad_copy(base + port.offset, data, port.nbytes)
                    continue
                # read in place: the VM reads the caller's (C-contiguous, native)
                # buffer; one not aligned to 8 bytes is copied first
                if <uintptr_t>data & 7:
                    copy = np.array(arrays[i], copy=True)
                    held = [copy] if held is None else held + [copy]
                    data = cnp.PyArray_DATA(<cnp.ndarray>copy)
                bound[port.bound] = data
            for i in range(self._nbound_out):
                port = <_Port>self._bound_out[i]
                out = cnp.PyArray_EMPTY(port.ndim, port.dims, port.typenum, 0)
                bound[port.bound] = cnp.PyArray_DATA(out)
                if which < 0:
                    if written is None:
                        written = [None] * len(self._outputs)
                    written[self._bound_out_index[i]] = out
                elif which == self._bound_out_index[i]:
                    asked = out
                else:  # not asked for: written to a scratch array
                    held = [out] if held is None else held + [out]
            poll = _poll_here()
            with nogil:
                status = fastad_vm_run_bound(&self.prog, &LINALG, base, bound, poll)
            if _guard_failed(status):
                return None
            if which >= 0:
                if asked is not None:
                    return asked
                port = <_Port>self._outputs[which]
                return self._result(port, base) if scalars else self._output(port, base)
            results = []
            for i in range(len(self._outputs)):
                port = <_Port>self._outputs[i]
                if port.bound >= 0:
                    results.append(written[i])
                else:
                    results.append(self._result(port, base) if scalars else self._output(port, base))
            return results
        finally:
            self._pool.append(arena)
            if bound != stack_bound:
                free(bound)

    def run_steps(self, list carry, list xs, list consts, Py_ssize_t length, list ys):
        """Run this program ``length`` times as a loop's body, the steps in C:
        its inputs are the carry, one row of each array of ``xs`` and
        ``consts``; its outputs the new carry, which the next step reads, and
        one row of each array of ``ys``, written in place.  Every array must
        be C-contiguous in its port's dtype (``xs`` and ``ys`` with a leading
        axis of ``length``): ValueError otherwise.  The final carry, as new
        arrays; None if a guard fails."""
        cdef Py_ssize_t i, t, nc = len(carry), nx = len(xs), nk = len(consts), ny = len(ys)
        cdef _Port port, out
        cdef char *base
        cdef char *scratch
        cdef int status
        cdef const fastad_poll *poll
        cdef int64_t carry_bytes = 0
        if nc + nx + nk != self._ninputs or nc + ny != len(self._outputs) or length < 0:
            raise ValueError("run_steps: the carry, xs, consts and ys do not fit the program")
        if self._nbound:  # the steps copy rows into the arena, where bound ports are not
            raise ValueError("run_steps: the program reads inputs or writes outputs in place; "
                             "lower it with bind_inputs=False")
        for i in range(self._ninputs):
            port = <_Port>self._inputs[i]
            x = carry[i] if i < nc else (xs[i - nc] if i < nc + nx else consts[i - nc - nx])
            self._check_rows(port, x, length if nc <= i < nc + nx else -1)
        for i in range(ny):
            self._check_rows(<_Port>self._outputs[nc + i], ys[i], length)
        for i in range(nc):
            carry_bytes += (<_Port>self._inputs[i]).nbytes
        scratch_array = np.empty(max(carry_bytes, 1), dtype=np.uint8)
        scratch = <char *>cnp.PyArray_DATA(<cnp.ndarray>scratch_array)
        arena = self._pool.pop() if self._pool else self._new_arena()
        base = self._aligned(arena)
        try:
            for i in range(nc):
                port = <_Port>self._inputs[i]
                fastad_copy(base + port.offset, cnp.PyArray_DATA(<cnp.ndarray>carry[i]),
                            port.nbytes)
            poll = _poll_here()
            for t in range(length):
                for i in range(nk):
                    port = <_Port>self._inputs[nc + nx + i]
                    fastad_copy(base + port.offset, cnp.PyArray_DATA(<cnp.ndarray>consts[i]),
                                port.nbytes)
                for i in range(nx):
                    port = <_Port>self._inputs[nc + i]
                    fastad_copy(base + port.offset,
                                <char *>cnp.PyArray_DATA(<cnp.ndarray>xs[i]) + t * port.nbytes,
                                port.nbytes)
                with nogil:
                    status = fastad_vm_run_polled(&self.prog, &LINALG, base, poll)
                if _guard_failed(status):
                    return None
                for i in range(ny):
                    out = <_Port>self._outputs[nc + i]
                    fastad_copy(<char *>cnp.PyArray_DATA(<cnp.ndarray>ys[i]) + t * out.nbytes,
                                base + out.offset, out.nbytes)
                # the carry through a scratch buffer: an output may be another input's slot
                carry_bytes = 0
                for i in range(nc):
                    out = <_Port>self._outputs[i]
                    memcpy(scratch + carry_bytes, base + out.offset, out.nbytes)
                    carry_bytes += out.nbytes
                carry_bytes = 0
                for i in range(nc):
                    port = <_Port>self._inputs[i]
                    memcpy(base + port.offset, scratch + carry_bytes, port.nbytes)
                    carry_bytes += port.nbytes
            return [self._output(<_Port>self._inputs[i], base) for i in range(nc)]
        finally:
            self._pool.append(arena)

    cdef _check_rows(self, _Port port, object x, Py_ssize_t rows):
        """x is C-contiguous in port's dtype with port's shape, behind a
        leading axis of ``rows`` when rows >= 0: what run_steps copies from."""
        shape = port.shape if rows < 0 else (rows,) + port.shape
        if type(x) is not np.ndarray or x.dtype != port.dtype or x.shape != shape \
                or not x.flags.c_contiguous:
            raise ValueError(f"run_steps: {port.name} needs a C-contiguous {port.dtype.name} "
                             f"array of shape {shape}")

    def run_batch(self, inputs, batched, int64_t count, int threads=1):
        """Run this program, compiled for a chunk of examples (a vmapped tape
        whose batched inputs and outputs all lead with the chunk axis), over a
        batch of ``count`` examples, on up to ``threads`` threads at once
        (csrc/batch.h).  ``inputs[i]`` holds all ``count`` examples along
        axis 0 where ``batched[i]``, else the one value every chunk shares.

        Returns ``(outputs, failed)``: arrays of ``count`` examples each, and
        the indices of the chunks whose guards failed (their rows of the
        outputs are left uninitialized for the caller to fill).  Results do not
        depend on ``threads``."""
        cdef Py_ssize_t i, n = len(inputs)
        cdef _Port port
        cdef fastad_batch b
        cdef fastad_batch_port *ports
        cdef int64_t chunk, failed, chunks
        cdef char **arenas
        cdef int t
        cdef const fastad_poll *poll
        if n != self._ninputs or len(batched) != n:
            raise SignatureError(f"expected {self._ninputs} arguments, got {n}")
        if count < 1:
            raise ValueError(f"run_batch: count must be positive, got {count}")
        if threads < 1:
            raise ValueError(f"run_batch: threads must be positive, got {threads}")
        chunk = self._chunk_size(batched)
        keep = []  # every array whose buffer the C side reads or writes
        ports = <fastad_batch_port *>malloc((n + len(self._outputs)) * sizeof(fastad_batch_port))
        if ports == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                port = <_Port>self._inputs[i]
                x = inputs[i]
                if batched[i]:
                    x = _batch_coerce(port, x, count)
                    ports[i].example_bytes = port.nbytes // chunk
                else:
                    if not port.matches(x):
                        x = port.coerce(x)
                    ports[i].example_bytes = port.nbytes
                keep.append(x)
                ports[i].data = <char *>cnp.PyArray_DATA(<cnp.ndarray>x)
                ports[i].arena_offset = port.offset
                ports[i].batched = 1 if batched[i] else 0
            outputs = []
            for i, port_obj in enumerate(self._outputs):
                port = <_Port>port_obj
                out = np.empty((count,) + port.shape[1:], dtype=port.dtype)
                outputs.append(out)
                ports[n + i].data = <char *>cnp.PyArray_DATA(<cnp.ndarray>out)
                ports[n + i].arena_offset = port.offset
                ports[n + i].example_bytes = port.nbytes // chunk
                ports[n + i].batched = 1
            b.prog = &self.prog
            b.linalg = &LINALG
            b.inputs = ports
            b.num_inputs = n
            b.outputs = ports + n
            b.num_outputs = len(self._outputs)
            b.count = count
            b.chunk = chunk
            chunks = fastad_batch_chunks(&b)
            threads = <int>min(threads, chunks)
            status = np.empty(chunks, dtype=np.intc)
            # a batch copies every input into its arenas, the bound ones into
            # their segments after the arena (the VM then reads them there)
            pool = [self._batch_pool.pop() if self._batch_pool
                    else self._new_arena(self.prog.bound_bytes) for t in range(threads)]
            arenas = <char **>malloc(threads * sizeof(char *))
            if arenas == NULL:
                raise MemoryError()
            try:
                for t in range(threads):
                    arenas[t] = self._aligned(pool[t])
                poll = _poll_here()
                with nogil:
                    failed = fastad_batch_run_polled(
                        &b, arenas, threads, <int *>cnp.PyArray_DATA(<cnp.ndarray>status), poll)
            finally:
                free(arenas)
                self._batch_pool.extend(pool)
        finally:
            free(ports)
        # Also when every chunk had ended by the time the caller's poll saw the
        # signal (while waiting for the other threads): it is not lost.
        if (failed and np.any(status == FASTAD_VM_INTERRUPTED)) or (
                poll != NULL and _interrupt is not None):
            _raise_interrupt()
        if failed and np.any(status == FASTAD_VM_SINGULAR):
            raise np.linalg.LinAlgError("Singular matrix")
        if failed and np.any(status == FASTAD_VM_NOT_POSITIVE_DEFINITE):
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        if failed and np.any(status == FASTAD_VM_INDEX_ERROR):
            raise IndexError(_INDEX_ERROR)
        return outputs, np.flatnonzero(status == FASTAD_VM_GUARD_FAILED).tolist()

    cdef int64_t _chunk_size(self, batched) except -1:
        """The chunk this program was compiled for: the leading axis that every
        batched input and every output shares."""
        leading = {(<_Port>p).shape[0] if (<_Port>p).shape else None
                   for p, is_batched in zip(self._inputs, batched) if is_batched}
        leading |= {(<_Port>p).shape[0] if (<_Port>p).shape else None for p in self._outputs}
        if not any(batched) or len(leading) != 1 or None in leading or 0 in leading:
            raise SignatureError("run_batch: the program is not batched: its batched inputs "
                                 "and its outputs must share one nonzero leading axis")
        return leading.pop()

    cdef object _result(self, _Port port, char *base):
        """An output as `run_args` returns it: 0-d ones as NumPy scalars."""
        if port.ndim == 0:
            if port.typenum == cnp.NPY_FLOAT64:
                return np.float64((<double *>(base + port.offset))[0])
            return self._output(port, base)[()]
        return self._output(port, base)

    cdef object _output(self, _Port port, char *base):
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(port.ndim, port.dims, port.typenum, 0)
        fastad_copy(cnp.PyArray_DATA(out), base + port.offset, port.nbytes)
        return out

    def __str__(self):
        return str(self.program)
