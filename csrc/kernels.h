/*
 * kernels.h -- private to the VM (vm.c, kernels.c, fused.c): the elementwise
 * functions as macros, the dtype dispatch macros, and the array kernels.
 *
 * The per-element bodies (U_*, B_*, C_*, L_*, and the loops UNARY_V_CASE and
 * BINARY_V_CASE) are macros, so each loop that uses them, in a kernel or in a
 * fused block, is compiled with its function inline.  Only whole kernels are
 * calls: one per instruction.
 */
#ifndef FASTAD_KERNELS_H
#define FASTAD_KERNELS_H

#include "vm.h"
#include "special.h" /* before tgmath.h: its functions use math.h by name */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

/* Functions shared between the VM's own files, not exported from the
 * extension: called directly, not through the PLT. */
#if defined(__GNUC__)
#define FASTAD_INTERNAL __attribute__((visibility("hidden")))
#else
#define FASTAD_INTERNAL
#endif

#define SIZE_OF_DTYPE(name, size) size,
static const int dtype_size[FASTAD_NUM_DTYPES] = {FASTAD_DTYPES(SIZE_OF_DTYPE)};

/* ------------------------------------------------------------------------ */
/* Elementwise functions, NumPy semantics; T is the element type in scope   */
/* (tgmath.h picks sinf/sin etc. from the argument type).                   */
/* ------------------------------------------------------------------------ */
#define U_NEG(x) (-(x))
#define U_ABS(x) fabs(x)
#define U_SIGN(x) ((x) > 0 ? (T)1 : (x) < 0 ? (T)-1 : (x) == 0 ? (T)0 : (x))
#define U_EXP(x) exp(x)
#define U_EXP2(x) exp2(x)
#define U_LOG(x) log(x)
#define U_LOG2(x) log2(x)
#define U_LOG10(x) log10(x)
#define U_LOG1P(x) log1p(x)
#define U_EXPM1(x) expm1(x)
#define U_SQRT(x) sqrt(x)
#define U_CBRT(x) cbrt(x)
#define U_SQUARE(x) ((x) * (x))
#define U_RECIPROCAL(x) ((T)1 / (x))
#define U_SIN(x) sin(x)
#define U_COS(x) cos(x)
#define U_TAN(x) tan(x)
#define U_ARCSIN(x) asin(x)
#define U_ARCCOS(x) acos(x)
#define U_ARCTAN(x) atan(x)
#define U_SINH(x) sinh(x)
#define U_COSH(x) cosh(x)
#define U_TANH(x) tanh(x)
#define U_ARCSINH(x) asinh(x)
#define U_ARCCOSH(x) acosh(x)
#define U_ARCTANH(x) atanh(x)
#define U_FLOOR(x) floor(x)
#define U_CEIL(x) ceil(x)
#define U_ROUND(x) rint(x)
#define U_DEG2RAD(x) ((x) * (T)0.017453292519943295) /* NumPy's x * (pi / 180) */
/* scipy.special's (special.h): a float computed in double and rounded once
 * where SciPy does so (erf, erfc, ndtr, gammaln, psi), in float where SciPy's
 * template does (expit, log_expit, logit, xlogy, xlog1py).  POLYGAMMA is
 * psi, polygamma of order 0: the lowering runs no other order. */
#define U_ERF(x) erf((double)(x))
#define U_ERFC(x) erfc((double)(x))
#define U_EXPIT(x) _Generic((x), float: fastad_expit_f, default: fastad_expit_d)(x)
#define U_LOG_EXPIT(x) _Generic((x), float: fastad_log_expit_f, default: fastad_log_expit_d)(x)
#define U_LOGIT(x) _Generic((x), float: fastad_logit_f, default: fastad_logit_d)(x)
#define U_GAMMALN(x) fastad_gammaln((double)(x))
#define U_POLYGAMMA(x) fastad_digamma((double)(x))
#define U_NDTR(x) fastad_ndtr((double)(x))

/* NumPy's npy_logaddexp, branch for branch. */
static inline double logaddexp_d(double x, double y) {
  if (x == y) return x + 0.693147180559945309417232121458176568;
  double d = x - y;
  if (d > 0) return x + log1p(exp(-d));
  if (d <= 0) return y + log1p(exp(d));
  return d;
}
static inline float logaddexp_f(float x, float y) {
  if (x == y) return x + 0.693147180559945309417232121458176568f;
  float d = x - y;
  if (d > 0) return x + log1p(exp(-d));
  if (d <= 0) return y + log1p(exp(d));
  return d;
}

#define B_ADD(x, y) ((x) + (y))
#define B_SUB(x, y) ((x) - (y))
#define B_MUL(x, y) ((x) * (y))
#define B_DIV(x, y) ((x) / (y))
#define B_POW(x, y) pow(x, y)
#define B_MAXIMUM(x, y) (((x) >= (y) || (x) != (x)) ? (x) : (y))
#define B_MINIMUM(x, y) (((x) <= (y) || (x) != (x)) ? (x) : (y))
#define B_ARCTAN2(x, y) atan2(x, y)
#define B_HYPOT(x, y) hypot(x, y)
#define B_COPYSIGN(x, y) copysign(x, y)
#define B_FMOD(x, y) fmod(x, y) /* exact: a float's is its double's, rounded back exactly */
#define B_LOGADDEXP(x, y) _Generic((x), float: logaddexp_f, default: logaddexp_d)(x, y)
#define B_XLOGY(x, y) _Generic((x), float: fastad_xlogy_f, default: fastad_xlogy_d)(x, y)
#define B_XLOG1PY(x, y) _Generic((x), float: fastad_xlog1py_f, default: fastad_xlog1py_d)(x, y)

#define C_LT(x, y) ((x) < (y))
#define C_LE(x, y) ((x) <= (y))
#define C_GT(x, y) ((x) > (y))
#define C_GE(x, y) ((x) >= (y))
#define C_EQ(x, y) ((x) == (y))
#define C_NE(x, y) ((x) != (y))

#define L_LOGICAL_AND(x, y) ((x) && (y))
#define L_LOGICAL_OR(x, y) ((x) || (y))

/* Runs its body once with T = double and once with T = float. */
#define FLOAT_TYPED(t, ...)                                                      \
  do {                                                                           \
    if ((t) == DT_F64) {                                                         \
      typedef double T;                                                          \
      __VA_ARGS__                                                                \
    } else {                                                                     \
      typedef float T;                                                           \
      __VA_ARGS__                                                                \
    }                                                                            \
  } while (0)

/* Runs its body with E an unsigned integer type of the dtype's size: element
 * moves that must not touch the bits (NaN payloads, bools). */
#define BITS_TYPED(t, ...)                                                       \
  do {                                                                           \
    if (dtype_size[t] == 8) {                                                    \
      typedef uint64_t E;                                                        \
      __VA_ARGS__                                                                \
    } else if (dtype_size[t] == 4) {                                             \
      typedef uint32_t E;                                                        \
      __VA_ARGS__                                                                \
    } else {                                                                     \
      typedef uint8_t E;                                                         \
      __VA_ARGS__                                                                \
    }                                                                            \
  } while (0)

#ifdef FASTAD_DEBUG_VM
FASTAD_INTERNAL void vm_trap(const char *what, long long a, long long b);
#define VM_ASSERT_INDEX(i, m) \
  ((i) >= 0 && (i) < (m) ? (void)0 : vm_trap("index out of range", (long long)(i), (long long)(m)))
#else
#define VM_ASSERT_INDEX(i, m) ((void)0)
#endif

/* Loop bodies of UNARY_V and of the BINARY_V forms, for T, n, po, pa, pb
 * (and kind) in scope; the fused blocks (fused.c) use them too. */
#define UNARY_V_CASE(name)                                          \
  case FN_##name:                                           \
    for (int64_t i = 0; i < n; i++) {                       \
      T x = pa[i];                                          \
      po[i] = (T)(U_##name(x));                             \
    }                                                       \
    break;

/* kind: 0 both vectors, 1 b a scalar, 2 a a scalar. */
#define BINARY_V_CASE(name)                                                                 \
  case FN_##name:                                                                  \
    if (kind == 0) {                                                               \
      for (int64_t i = 0; i < n; i++) { T x = pa[i], y = pb[i]; po[i] = (T)(B_##name(x, y)); } \
    } else if (kind == 1) {                                                        \
      const T y = pb[0];                                                           \
      for (int64_t i = 0; i < n; i++) { T x = pa[i]; po[i] = (T)(B_##name(x, y)); } \
    } else {                                                                       \
      const T x = pa[0];                                                           \
      for (int64_t i = 0; i < n; i++) { T y = pb[i]; po[i] = (T)(B_##name(x, y)); } \
    }                                                                              \
    break;

/* ------------------------------------------------------------------------ */
/* Vectorized loops for the transcendental functions (vecmath.c)           */
/* ------------------------------------------------------------------------ */
/* NumPy's own loops (SIMD, dispatched to the CPU at NumPy's import) run exp,
 * log, tanh, ... 6-13x faster than the C library one element at a time, and
 * give NumPy's bits, so compiled results equal eager ones.  Entries for
 * DT_F64 and DT_F32 (their codes are 0 and 1). */
#define LOOP_DTYPES 2
typedef struct {
  fastad_ufunc_loop loop;
  void *data;
} ufunc_loop_entry;
FASTAD_INTERNAL extern ufunc_loop_entry unary_loops[LOOP_DTYPES][FASTAD_NUM_UNARY_FNS];
FASTAD_INTERNAL extern ufunc_loop_entry binary_loops[LOOP_DTYPES][FASTAD_NUM_BINARY_FNS];
FASTAD_INTERNAL extern int numpy_loops_on;
#if defined(__GNUC__)
#define NUMPY_LOOPS_ON() __atomic_load_n(&numpy_loops_on, __ATOMIC_RELAXED)
#else
#define NUMPY_LOOPS_ON() (*(volatile int *)&numpy_loops_on)
#endif

/* po[i] = f(pa[i]) for i < n with the installed loop of f for dtype t, if
 * there is one (then returns 1); else returns 0 and the caller runs its own
 * loop.  f is a validated function code; pa and po coincide or are disjoint. */
static inline int unary_loop_run(int f, int t, const void *pa, void *po, int64_t n) {
  if (t >= LOOP_DTYPES) return 0;
  const ufunc_loop_entry *e = &unary_loops[t][f];
  if (e->loop == NULL || !NUMPY_LOOPS_ON()) return 0;
  char *args[2] = {(char *)pa, (char *)po};
  const intptr_t dims[1] = {(intptr_t)n};
  const intptr_t steps[2] = {dtype_size[t], dtype_size[t]};
  e->loop(args, dims, steps, e->data);
  return 1;
}

/* po[i] = f(pa[i], pb[i]) likewise, kind as in BINARY_V_CASE (1: b a scalar,
 * 2: a a scalar, read with step 0, as NumPy reads a broadcast scalar). */
static inline int binary_loop_run(int f, int t, int kind, const void *pa, const void *pb,
                                  void *po, int64_t n) {
  if (t >= LOOP_DTYPES) return 0;
  const ufunc_loop_entry *e = &binary_loops[t][f];
  if (e->loop == NULL || !NUMPY_LOOPS_ON()) return 0;
  char *args[3] = {(char *)pa, (char *)pb, (char *)po};
  const intptr_t dims[1] = {(intptr_t)n};
  const intptr_t size = dtype_size[t];
  const intptr_t steps[3] = {kind == 2 ? 0 : size, kind == 1 ? 0 : size, size};
  e->loop(args, dims, steps, e->data);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* The array kernels (kernels.c), one call per instruction                  */
/* ------------------------------------------------------------------------ */
FASTAD_INTERNAL void unary_v(int f, int t, char *arena, int64_t o, int64_t a, int64_t n);
FASTAD_INTERNAL void binary_v(int f, int t, int kind, char *arena, int64_t o, int64_t a,
                              int64_t b, int64_t n);
FASTAD_INTERNAL void binary_b(int f, int t, char *arena, int64_t o, int64_t a, int64_t b,
                              const int64_t *d);
FASTAD_INTERNAL void compare_b(int f, int t, char *arena, int64_t o, int64_t a, int64_t b,
                               const int64_t *d);
FASTAD_INTERNAL void logic_b(int f, char *arena, int64_t o, int64_t a, int64_t b,
                             const int64_t *d);
FASTAD_INTERNAL void where_b(int t, char *arena, int64_t o, int64_t c, int64_t a, int64_t b,
                             const int64_t *d);
FASTAD_INTERNAL void cast_v(int t, int s, char *arena, int64_t o, int64_t a, int64_t n);
FASTAD_INTERNAL void strided_b(int t, char *arena, int64_t o, int64_t a, const int64_t *d);
FASTAD_INTERNAL void gather_v(int t, char *arena, int64_t o, int64_t a, int64_t m,
                              const int64_t *idx, int64_t n);
FASTAD_INTERNAL void scatter_set_v(int t, char *arena, int64_t o, int64_t m, const int64_t *idx,
                                   int64_t v, int64_t n);
FASTAD_INTERNAL void scatter_add_v(int t, char *arena, int64_t o, int64_t m, const int64_t *idx,
                                   int64_t v, int64_t n);
FASTAD_INTERNAL int gather_rows_v(int t, char *arena, int64_t o, int64_t a, int64_t m,
                                  int64_t r, const double *idx, int64_t n);
FASTAD_INTERNAL int scatter_add_rows_v(int t, char *arena, int64_t o, int64_t m, int64_t r,
                                       const double *idx, int64_t v, int64_t n);
FASTAD_INTERNAL void strided_set_b(int t, char *arena, int64_t o, int64_t v, const int64_t *d);
FASTAD_INTERNAL void strided_add_b(int t, char *arena, int64_t o, int64_t v, const int64_t *d);
FASTAD_INTERNAL void reduce_b(int f, int t, char *arena, int64_t o, int64_t a, const int64_t *d);
FASTAD_INTERNAL double sum_contiguous_d(const double *x, int64_t n);
FASTAD_INTERNAL void scan_b(int t, char *arena, int64_t o, int64_t a, const int64_t *d);
/* Below this many multiply-adds small_matmul's loops beat a BLAS call (measured
 * against OpenBLAS on x86-64, compiled without -march: benchmarks/README.md,
 * "Small products in loop bodies"); a matrix-vector product (a row or column
 * of C) stays ahead to well past 128 x 128. */
#define SMALL_MATMUL 1024
#define SMALL_MATVEC 16384
FASTAD_INTERNAL void small_matmul(int t, void *out, const void *a, const void *b, int64_t m,
                                  int64_t k, int64_t n, int64_t ta, int64_t tb, int add);
FASTAD_INTERNAL void matmul_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                              int64_t b, const int64_t *d);
FASTAD_INTERNAL int solve_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                            int64_t b, const int64_t *d, int64_t w, int64_t p);
FASTAD_INTERNAL void slogdet_b(int f, int t, const fastad_linalg *la, char *arena, int64_t o,
                               int64_t a, const int64_t *d, int64_t w, int64_t p);
FASTAD_INTERNAL int cholesky_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                               const int64_t *d);
FASTAD_INTERNAL int eigh_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                           const int64_t *d, int64_t w, int64_t p);
FASTAD_INTERNAL int svd_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                          const int64_t *d, int64_t w, int64_t p);
FASTAD_INTERNAL int pinv_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                           const int64_t *d, int64_t w, int64_t p);
FASTAD_INTERNAL int qr_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                          const int64_t *d, int64_t w);
FASTAD_INTERNAL int trmm_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                            int64_t b, const int64_t *d);
FASTAD_INTERNAL int trsolve_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                              int64_t b, const int64_t *d);

#endif
