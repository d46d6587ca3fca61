/*
 * vm.h -- the fastad virtual machine: a program (opcodes.h) runs over an arena.
 *
 * The VM links against nothing.  BLAS and LAPACK arrive as function pointers
 * (taken from scipy.linalg.cython_blas / cython_lapack by the Cython wrapper),
 * in the Fortran calling convention those modules export.
 *
 * A program is validated once (fastad_vm_validate) before it is ever run: the
 * VM itself trusts every offset.  Build with -DFASTAD_DEBUG_VM to re-check
 * every arena, pool and index access at run time as well.
 */
#ifndef FASTAD_VM_H
#define FASTAD_VM_H

#include <stddef.h>
#include <stdint.h>

#include "opcodes.h"

enum fastad_opcode {
#define FASTAD_X(name, nargs) OP_##name,
  FASTAD_OPCODES(FASTAD_X)
#undef FASTAD_X
  FASTAD_NUM_OPCODES
};

/* FASTAD_NARGS_name: the operand words of opcode name. */
enum fastad_opcode_nargs {
#define FASTAD_X(name, nargs) FASTAD_NARGS_##name = nargs,
  FASTAD_OPCODES(FASTAD_X)
#undef FASTAD_X
};

/* FASTAD_DESC_HEAD_name, FASTAD_DESC_PER_DIM_name: descriptor lengths. */
enum fastad_descriptor_len {
#define FASTAD_D(name, head, per_dim) \
  FASTAD_DESC_HEAD_##name = head, FASTAD_DESC_PER_DIM_##name = per_dim,
  FASTAD_DESCRIPTORS(FASTAD_D)
#undef FASTAD_D
};
enum fastad_descriptor {
#define FASTAD_D(name, head, per_dim) DESC_##name,
  FASTAD_DESCRIPTORS(FASTAD_D)
#undef FASTAD_D
  FASTAD_NUM_DESCRIPTORS
};

#define FASTAD_F(name) FN_##name,
enum fastad_unary_fn { FASTAD_UNARY_FNS(FASTAD_F) FASTAD_NUM_UNARY_FNS };
enum fastad_binary_fn { FASTAD_BINARY_FNS(FASTAD_F) FASTAD_NUM_BINARY_FNS };
enum fastad_compare_fn { FASTAD_COMPARE_FNS(FASTAD_F) FASTAD_NUM_COMPARE_FNS };
enum fastad_logic_fn { FASTAD_LOGIC_FNS(FASTAD_F) FASTAD_NUM_LOGIC_FNS };
enum fastad_reduce_fn { FASTAD_REDUCE_FNS(FASTAD_F) FASTAD_NUM_REDUCE_FNS };
#undef FASTAD_F
#define FASTAD_F(name) FUSED_##name,
enum fastad_fused_slot { FASTAD_FUSED_SLOTS(FASTAD_F) FASTAD_NUM_FUSED_SLOTS };
enum fastad_fused_step { FASTAD_FUSED_STEPS(FASTAD_F) FASTAD_NUM_FUSED_STEPS };
#undef FASTAD_F

enum fastad_dtype {
#define FASTAD_X(name, size) DT_##name,
  FASTAD_DTYPES(FASTAD_X)
#undef FASTAD_X
  FASTAD_NUM_DTYPES
};

typedef void (*fastad_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                double *alpha, double *a, int *lda, double *b, int *ldb,
                                double *beta, double *c, int *ldc);
typedef void (*fastad_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                float *alpha, float *a, int *lda, float *b, int *ldb,
                                float *beta, float *c, int *ldc);
typedef void (*fastad_dgemv_fn)(char *trans, int *m, int *n, double *alpha, double *a, int *lda,
                                double *x, int *incx, double *beta, double *y, int *incy);
typedef void (*fastad_sgemv_fn)(char *trans, int *m, int *n, float *alpha, float *a, int *lda,
                                float *x, int *incx, float *beta, float *y, int *incy);
typedef double (*fastad_ddot_fn)(int *n, double *x, int *incx, double *y, int *incy);
typedef float (*fastad_sdot_fn)(int *n, float *x, int *incx, float *y, int *incy);
typedef void (*fastad_dgesv_fn)(int *n, int *nrhs, double *a, int *lda, int *ipiv,
                                double *b, int *ldb, int *info);
typedef void (*fastad_sgesv_fn)(int *n, int *nrhs, float *a, int *lda, int *ipiv,
                                float *b, int *ldb, int *info);
typedef void (*fastad_dgetrf_fn)(int *m, int *n, double *a, int *lda, int *ipiv, int *info);
typedef void (*fastad_sgetrf_fn)(int *m, int *n, float *a, int *lda, int *ipiv, int *info);
typedef void (*fastad_dpotrf_fn)(char *uplo, int *n, double *a, int *lda, int *info);
typedef void (*fastad_spotrf_fn)(char *uplo, int *n, float *a, int *lda, int *info);
typedef void (*fastad_dtrsm_fn)(char *side, char *uplo, char *transa, char *diag, int *m, int *n,
                                double *alpha, double *a, int *lda, double *b, int *ldb);
typedef void (*fastad_strsm_fn)(char *side, char *uplo, char *transa, char *diag, int *m, int *n,
                                float *alpha, float *a, int *lda, float *b, int *ldb);
typedef void (*fastad_dsyevd_fn)(char *jobz, char *uplo, int *n, double *a, int *lda, double *w,
                                 double *work, int *lwork, int *iwork, int *liwork, int *info);
typedef void (*fastad_dtrmm_fn)(char *side, char *uplo, char *transa, char *diag, int *m, int *n,
                                double *alpha, double *a, int *lda, double *b, int *ldb);
typedef void (*fastad_strmm_fn)(char *side, char *uplo, char *transa, char *diag, int *m, int *n,
                                float *alpha, float *a, int *lda, float *b, int *ldb);
typedef void (*fastad_dgesdd_fn)(char *jobz, int *m, int *n, double *a, int *lda, double *s,
                                 double *u, int *ldu, double *vt, int *ldvt, double *work,
                                 int *lwork, int *iwork, int *info);
typedef void (*fastad_dgeqrf_fn)(int *m, int *n, double *a, int *lda, double *tau, double *work,
                                 int *lwork, int *info);
typedef void (*fastad_dorgqr_fn)(int *m, int *n, int *k, double *a, int *lda, double *tau,
                                 double *work, int *lwork, int *info);

typedef struct {
  fastad_dgemm_fn dgemm;
  fastad_sgemm_fn sgemm;
  fastad_dgemv_fn dgemv; /* matrix-vector products: a gemm of one column packs the whole matrix */
  fastad_sgemv_fn sgemv;
  fastad_ddot_fn ddot; /* and vector-vector ones: gemv of one row is 2-3x a dot */
  fastad_sdot_fn sdot;
  fastad_dgesv_fn dgesv;
  fastad_sgesv_fn sgesv;
  fastad_dgetrf_fn dgetrf;
  fastad_sgetrf_fn sgetrf;
  fastad_dpotrf_fn dpotrf;
  fastad_spotrf_fn spotrf;
  fastad_dtrsm_fn dtrsm;
  fastad_strsm_fn strsm;
  fastad_dsyevd_fn dsyevd; /* eigh, svd and qr run in double for both dtypes, as NumPy's */
  fastad_dgesdd_fn dgesdd;
  fastad_dgeqrf_fn dgeqrf;
  fastad_dorgqr_fn dorgqr;
  fastad_dtrmm_fn dtrmm;
  fastad_strmm_fn strmm;
} fastad_linalg;

typedef struct {
  const int32_t *code;   /* the instruction stream, ending with HALT */
  int64_t code_len;
  const int64_t *meta;   /* descriptors */
  int64_t meta_len;
  const int64_t *index;  /* gather/scatter indices, all validated in range */
  int64_t index_len;
  int64_t arena_bytes;   /* the arena every run needs, a multiple of FASTAD_ARENA_ALIGN */
  /* Inputs read in place and outputs written in place: the program
   * addresses segment k as bytes [bound[3k], bound[3k] + bound[3k + 1]),
   * writable if bound[3k + 2] is 1 (an output, a fresh array of the caller's)
   * and only read if it is 0 (an input, the caller's array).  Segments lie at
   * or past arena_bytes, sorted, disjoint, FASTAD_ARENA_ALIGN-aligned, ending
   * by arena_bytes + bound_bytes.  A run maps each onto the caller's array
   * (fastad_vm_run_bound); the validator lets only the opcodes
   * fastad_maps_bound names use them. */
  const int64_t *bound;
  int64_t num_bound;
  int64_t bound_bytes;
  /* Native code for the steps of its scalar loops (fastad_jit_build), or
   * NULL: every LOOP is interpreted. */
  const struct fastad_jit *jit;
} fastad_program;

/* 1 if the dispatch loop maps opcode op's arena operands in bound segments
 * onto the caller's arrays (every array opcode but the ones added after
 * bound segments were); scalar opcodes and GUARD never use one. */
int fastad_maps_bound(int op);

/* Check every instruction of p against its own pools and arena size.
 * Returns 0 if p is safe to run; otherwise writes a message to err. */
int fastad_vm_validate(const fastad_program *p, char *err, size_t err_len);

/* An arena region an instruction uses: bytes [byte_lo, byte_lo + bytes), of
 * operand word `operand` (1-based, as in opcodes.h), or of slot -operand - 1
 * of a FUSED descriptor.  role: FASTAD_REGION_READ, _WRITE (written, perhaps
 * read too), and _SAME: an elementwise operand, which may coincide exactly
 * with another _SAME operand (an in-place step).  The validator rejects every
 * instruction where a region written overlaps another region otherwise. */
#define FASTAD_MAX_REGIONS (FASTAD_FUSED_MAX_SLOTS + 8) /* regions of one instruction */
#define FASTAD_REGION_READ 1
#define FASTAD_REGION_WRITE 2
#define FASTAD_REGION_SAME 4
typedef struct {
  int64_t byte_lo, bytes, itemsize;
  int role, operand;
} fastad_region;

/* The regions of the instruction at word pc, as the validator sees them (for
 * tests): their number (up to max stored in out), or -1 with a message in err
 * if its operands are invalid.  Overlaps are not checked here. */
int fastad_vm_regions(const fastad_program *p, int64_t pc, fastad_region *out, int max,
                      char *err, size_t err_len);

/* Checks the one instruction at word pc (csrc/validate.c); sets *next to the
 * word of the following one.  Returns 1 if it is valid, else 0 with a message
 * in err.  The debug build's dispatch loop calls it before every instruction. */
int fastad_vm_check_instr(const fastad_program *p, int64_t pc, int64_t *next, char *err,
                          size_t err_len);

/* Run a validated program over arena (p->arena_bytes, FASTAD_ARENA_ALIGN-aligned, inputs
 * and constants already in place).  Returns a FASTAD_VM_* status.  Reentrant:
 * concurrent runs over distinct arenas are safe. */
int fastad_vm_run(const fastad_program *p, const fastad_linalg *linalg, void *arena);

/* A run that may be interrupted (Ctrl-C): now and then, once the run has
 * lasted FASTAD_POLL_FIRST_MS and then every FASTAD_POLL_EVERY_MS, the VM
 * calls fn(ctx) from the thread that called it; a nonzero result stops the run
 * with FASTAD_VM_INTERRUPTED at the next instruction boundary (or between
 * blocks of a FUSED instruction; pool threads stop their chunks too, and no
 * pool job is in flight when the run returns).  The arena is then left in
 * some intermediate state; the program may run on it again.  Only array
 * instructions count towards a poll: a stretch of scalar ones is bounded by
 * the program's length. */
typedef int (*fastad_poll_fn)(void *ctx);
typedef struct {
  fastad_poll_fn fn;
  void *ctx;
} fastad_poll;
#define FASTAD_POLL_FIRST_MS 20
#define FASTAD_POLL_EVERY_MS 25

/* fastad_vm_run, polling as above unless poll is NULL.  The bound inputs'
 * segments (if any) are then part of the arena: arena holds arena_bytes +
 * bound_bytes bytes, the inputs copied in at their segments. */
int fastad_vm_run_polled(const fastad_program *p, const fastad_linalg *linalg, void *arena,
                         const fastad_poll *poll);

/* fastad_vm_run_polled, with bound segment k at inputs[k] (num_bound
 * pointers, each aligned to 8 bytes, to at least bound[3k + 1] bytes: the
 * caller's arrays, which nothing else writes during the run, distinct for
 * writable segments); the arena holds arena_bytes only.  A NULL inputs[k]
 * means the segment is in the arena, as above. */
int fastad_vm_run_bound(const fastad_program *p, const fastad_linalg *linalg, void *arena,
                        const void *const *inputs, const fastad_poll *poll);

/* Tables for the drift tests (csrc/tables.c): names in enum order, arities,
 * dtype sizes, descriptor lengths. */
extern const char *const fastad_opcode_names[FASTAD_NUM_OPCODES];
extern const int fastad_opcode_nargs[FASTAD_NUM_OPCODES];
extern const char *const fastad_unary_fn_names[FASTAD_NUM_UNARY_FNS];
extern const char *const fastad_binary_fn_names[FASTAD_NUM_BINARY_FNS];
extern const char *const fastad_compare_fn_names[FASTAD_NUM_COMPARE_FNS];
extern const char *const fastad_logic_fn_names[FASTAD_NUM_LOGIC_FNS];
extern const char *const fastad_reduce_fn_names[FASTAD_NUM_REDUCE_FNS];
extern const char *const fastad_dtype_names[FASTAD_NUM_DTYPES];
extern const int fastad_dtype_sizes[FASTAD_NUM_DTYPES];
extern const char *const fastad_descriptor_names[FASTAD_NUM_DESCRIPTORS];
extern const int fastad_descriptor_head[FASTAD_NUM_DESCRIPTORS];
extern const int fastad_descriptor_per_dim[FASTAD_NUM_DESCRIPTORS];
extern const char *const fastad_fused_slot_names[FASTAD_NUM_FUSED_SLOTS];
extern const char *const fastad_fused_step_names[FASTAD_NUM_FUSED_STEPS];

/* Threads a large FUSED instruction is split over (FASTAD_NUM_THREADS, else
 * the processors, at most 8), and the element count from which it is. */
int fastad_vm_threads(void);
extern const int64_t fastad_fused_parallel_min;

/* A vectorized loop for an elementwise function, in NumPy's ufunc inner-loop
 * convention (PyUFuncGenericFunction): of one argument, out[i * steps[1]] =
 * f(in[i * steps[0]]) for i < dims[0], args = {in, out}; of two, args = {a,
 * b, out} and three steps (0 for a broadcast scalar).  The extension installs
 * NumPy's own loops at import (csrc/vecmath.c); without one for a function
 * and dtype, the VM calls the C library's function per element. */
typedef void (*fastad_ufunc_loop)(char **args, const intptr_t *dims, const intptr_t *steps,
                                  void *data);

/* Installs loop (called with data) for unary function f (FASTAD_UNARY_FNS)
 * of dtype t (DT_F64 or DT_F32); NULL removes it.  Returns -1 if f or t is
 * out of range, else 0.  Not safe while programs run: called at import. */
int fastad_vm_set_unary_loop(int f, int t, fastad_ufunc_loop loop, void *data);
/* The same for binary function f (FASTAD_BINARY_FNS). */
int fastad_vm_set_binary_loop(int f, int t, fastad_ufunc_loop loop, void *data);

/* Whether the installed loops are used (1, the default) or the C library's
 * functions (0, to compare the two); returns the previous setting. */
int fastad_vm_use_numpy_loops(int on);

/* Native code for the steps of p's LOOP instructions whose bodies are scalar
 * float64 code (csrc/jit.c; x86-64 Linux only): built once for a validated
 * program, set as p->jit, freed with fastad_jit_free after the program's
 * last run.  NULL where nothing is compiled (no such loop, another
 * platform, no executable memory, fastad_vm_use_jit(0)). */
struct fastad_jit *fastad_jit_build(const fastad_program *p);
void fastad_jit_free(struct fastad_jit *jit);
/* Whether fastad_jit_build compiles (1, the default) or returns NULL (0, to
 * compare the two); returns the previous setting. */
int fastad_vm_use_jit(int on);

/* memcpy, split over the pool's threads when n is large (copies of a large
 * program's inputs into its arena and of its outputs out of it). */
void fastad_copy(void *dst, const void *src, size_t n);

#endif
