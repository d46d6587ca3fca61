/*
 * vm.c -- the fastad virtual machine.
 *
 * One dispatch loop (fastad_vm_run) over the instruction stream described in
 * opcodes.h, in the style of Lua's lvm.c: vmdispatch/vmcase/vmbreak expand to
 * computed goto under GCC and Clang and to a switch elsewhere.  The scalar
 * float64 opcodes are written inline in the loop; array opcodes call the
 * kernels below, each written once for float and double through FLOAT_TYPED.
 *
 * Fused scalar opcodes (MULADD_S, ...) round after each operation, as the
 * separate NumPy operations they replace do: build with -ffp-contract=off so
 * the compiler does not turn them into fused multiply-adds.
 *
 * Safety: fastad_vm_validate (csrc/validate.c) checks every instruction before
 * a program may run, so the loop trusts its operands.  With FASTAD_DEBUG_VM the
 * loop re-checks every instruction before running it, and gather/scatter
 * re-check each index, aborting with a message on the first violation.
 */
#include "vm.h"
#include "pool.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include <windows.h>
#else
#include <time.h>
#endif
#if !defined(_WIN32) && !defined(FASTAD_NO_THREADS)
#include <pthread.h>
#endif

/* ------------------------------------------------------------------------ */
/* Tables exported for the drift test                                        */
/* ------------------------------------------------------------------------ */
#define NAME_OF_OP(name, nargs) #name,
#define NARGS_OF_OP(name, nargs) nargs,
#define NAME_OF_FN(name) #name,
const char *const fastad_opcode_names[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(NAME_OF_OP)};
const int fastad_opcode_nargs[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(NARGS_OF_OP)};
const char *const fastad_unary_fn_names[FASTAD_NUM_UNARY_FNS] = {FASTAD_UNARY_FNS(NAME_OF_FN)};
const char *const fastad_binary_fn_names[FASTAD_NUM_BINARY_FNS] = {FASTAD_BINARY_FNS(NAME_OF_FN)};
const char *const fastad_compare_fn_names[FASTAD_NUM_COMPARE_FNS] = {
    FASTAD_COMPARE_FNS(NAME_OF_FN)};
const char *const fastad_logic_fn_names[FASTAD_NUM_LOGIC_FNS] = {FASTAD_LOGIC_FNS(NAME_OF_FN)};
const char *const fastad_reduce_fn_names[FASTAD_NUM_REDUCE_FNS] = {FASTAD_REDUCE_FNS(NAME_OF_FN)};
const char *const fastad_fused_slot_names[FASTAD_NUM_FUSED_SLOTS] = {FASTAD_FUSED_SLOTS(NAME_OF_FN)};
const char *const fastad_fused_step_names[FASTAD_NUM_FUSED_STEPS] = {FASTAD_FUSED_STEPS(NAME_OF_FN)};
#define NAME_OF_DTYPE(name, size) #name,
#define SIZE_OF_DTYPE(name, size) size,
const char *const fastad_dtype_names[FASTAD_NUM_DTYPES] = {FASTAD_DTYPES(NAME_OF_DTYPE)};
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
#define B_LOGADDEXP(x, y) _Generic((x), float: logaddexp_f, default: logaddexp_d)(x, y)

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
static void vm_trap(const char *what, long long a, long long b) {
  fprintf(stderr, "fastad VM: bounds assertion failed: %s (%lld, %lld)\n", what, a, b);
  abort();
}
#define VM_ASSERT_INDEX(i, m) \
  ((i) >= 0 && (i) < (m) ? (void)0 : vm_trap("index out of range", (long long)(i), (long long)(m)))
#else
#define VM_ASSERT_INDEX(i, m) ((void)0)
#endif

/* ------------------------------------------------------------------------ */
/* Iteration over the outer axes of a descriptor's shape                    */
/* ------------------------------------------------------------------------ */
/* Walks every row (all axes but the last) of an nd shape, keeping the
 * element offset of up to three strided operands. */
typedef struct {
  int outer_ndim, nops;
  const int64_t *shape;
  const int64_t *stride[3];
  int64_t idx[FASTAD_MAX_NDIM];
  int64_t off[3];
} rows_iter;

static inline void rows_init(rows_iter *it, int64_t ndim, const int64_t *shape, int nops,
                             const int64_t *s0, const int64_t *s1, const int64_t *s2) {
  it->outer_ndim = (int)ndim - 1;
  it->nops = nops;
  it->shape = shape;
  it->stride[0] = s0;
  it->stride[1] = s1;
  it->stride[2] = s2;
  for (int k = 0; k < it->outer_ndim; k++) it->idx[k] = 0;
  it->off[0] = it->off[1] = it->off[2] = 0;
}

static inline void rows_next(rows_iter *it) {
  for (int k = it->outer_ndim - 1; k >= 0; k--) {
    it->idx[k]++;
    for (int j = 0; j < it->nops; j++) it->off[j] += it->stride[j][k];
    if (it->idx[k] < it->shape[k]) return;
    for (int j = 0; j < it->nops; j++) it->off[j] -= it->stride[j][k] * it->shape[k];
    it->idx[k] = 0;
  }
}

static inline int64_t shape_size(int64_t ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int64_t k = 0; k < ndim; k++) n *= shape[k];
  return n;
}

/* ------------------------------------------------------------------------ */
/* Array kernels                                                            */
/* ------------------------------------------------------------------------ */
/* Kernels stay out of line: inlined into the dispatch loop they would push
 * pc and the arena base out of registers, and every scalar instruction would
 * pay a store and a reload. */
#if defined(__GNUC__)
#define KERNEL static __attribute__((noinline))
#else
#define KERNEL static
#endif

#define UNARY_V_CASE(name)                                          \
  case FN_##name:                                           \
    for (int64_t i = 0; i < n; i++) {                       \
      T x = pa[i];                                          \
      po[i] = (T)(U_##name(x));                             \
    }                                                       \
    break;

KERNEL void unary_v(int f, int t, char *arena, int64_t o, int64_t a, int64_t n) {
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    switch (f) {
      FASTAD_UNARY_FNS(UNARY_V_CASE)
    }
  });
}

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

KERNEL void binary_v(int f, int t, int kind, char *arena, int64_t o, int64_t a, int64_t b,
                     int64_t n) {
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    const T *pb = (const T *)arena + b;
    switch (f) {
      FASTAD_BINARY_FNS(BINARY_V_CASE)
    }
  });
}

/* The inner loop of a broadcast binary op: contiguous, scalar-broadcast or
 * strided operands, so the common layouts vectorise. */
#define BROADCAST_ROW(OUT, EXPR)                                                   \
  if (ia == 1 && ib == 1) {                                                        \
    for (int64_t i = 0; i < n; i++) { T x = pa[i], y = pb[i]; OUT[i] = EXPR; }     \
  } else if (ia == 1 && ib == 0) {                                                 \
    const T y = pb[0];                                                             \
    for (int64_t i = 0; i < n; i++) { T x = pa[i]; OUT[i] = EXPR; }                \
  } else if (ia == 0 && ib == 1) {                                                 \
    const T x = pa[0];                                                             \
    for (int64_t i = 0; i < n; i++) { T y = pb[i]; OUT[i] = EXPR; }                \
  } else {                                                                         \
    for (int64_t i = 0; i < n; i++) { T x = pa[i * ia], y = pb[i * ib]; OUT[i] = EXPR; } \
  }

#define BINARY_B_CASE(name)                               \
  case FN_##name:                                \
    BROADCAST_ROW(po, (T)(B_##name(x, y)))       \
    break;

KERNEL void binary_b(int f, int t, char *arena, int64_t o, int64_t a, int64_t b,
                     const int64_t *d) {
  const int64_t ndim = d[0], *shape = d + 1, *sa = d + 1 + ndim, *sb = d + 1 + 2 * ndim;
  const int64_t n = shape[ndim - 1], ia = sa[ndim - 1], ib = sb[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  if (total == 0) return;
  rows_iter it;
  rows_init(&it, ndim, shape, 2, sa, sb, NULL);
  FLOAT_TYPED(t, {
    for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {
      T *po = (T *)arena + o + row * n;
      const T *pa = (const T *)arena + a + it.off[0];
      const T *pb = (const T *)arena + b + it.off[1];
      switch (f) {
        FASTAD_BINARY_FNS(BINARY_B_CASE)
      }
    }
  });
}

#define COMPARE_B_CASE(name)                               \
  case FN_##name:                                \
    BROADCAST_ROW(po, (uint8_t)C_##name(x, y))   \
    break;

KERNEL void compare_b(int f, int t, char *arena, int64_t o, int64_t a, int64_t b,
                      const int64_t *d) {
  const int64_t ndim = d[0], *shape = d + 1, *sa = d + 1 + ndim, *sb = d + 1 + 2 * ndim;
  const int64_t n = shape[ndim - 1], ia = sa[ndim - 1], ib = sb[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  if (total == 0) return;
  rows_iter it;
  rows_init(&it, ndim, shape, 2, sa, sb, NULL);
  FLOAT_TYPED(t, {
    for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {
      uint8_t *po = (uint8_t *)arena + o + row * n;
      const T *pa = (const T *)arena + a + it.off[0];
      const T *pb = (const T *)arena + b + it.off[1];
      switch (f) {
        FASTAD_COMPARE_FNS(COMPARE_B_CASE)
      }
    }
  });
}

#define LOGIC_B_CASE(name)                               \
  case FN_##name:                                \
    BROADCAST_ROW(po, (uint8_t)L_##name(x, y))   \
    break;

KERNEL void logic_b(int f, char *arena, int64_t o, int64_t a, int64_t b, const int64_t *d) {
  const int64_t ndim = d[0], *shape = d + 1, *sa = d + 1 + ndim, *sb = d + 1 + 2 * ndim;
  const int64_t n = shape[ndim - 1], ia = sa[ndim - 1], ib = sb[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  if (total == 0) return;
  rows_iter it;
  rows_init(&it, ndim, shape, 2, sa, sb, NULL);
  typedef uint8_t T;
  for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {
    uint8_t *po = (uint8_t *)arena + o + row * n;
    const T *pa = (const T *)arena + a + it.off[0];
    const T *pb = (const T *)arena + b + it.off[1];
    switch (f) {
      FASTAD_LOGIC_FNS(LOGIC_B_CASE)
    }
  }
}

KERNEL void where_b(int t, char *arena, int64_t o, int64_t c, int64_t a, int64_t b,
                    const int64_t *d) {
  const int64_t ndim = d[0], *shape = d + 1;
  const int64_t *sc = d + 1 + ndim, *sa = d + 1 + 2 * ndim, *sb = d + 1 + 3 * ndim;
  const int64_t n = shape[ndim - 1], ic = sc[ndim - 1], ia = sa[ndim - 1], ib = sb[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  if (total == 0) return;
  rows_iter it;
  rows_init(&it, ndim, shape, 3, sc, sa, sb);
  BITS_TYPED(t, {
    for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {
      E *po = (E *)arena + o + row * n;
      const uint8_t *pc = (const uint8_t *)arena + c + it.off[0];
      const E *pa = (const E *)arena + a + it.off[1];
      const E *pb = (const E *)arena + b + it.off[2];
      for (int64_t i = 0; i < n; i++) po[i] = pc[i * ic] ? pa[i * ia] : pb[i * ib];
    }
  });
}

KERNEL void cast_v(int t, int s, char *arena, int64_t o, int64_t a, int64_t n) {
  if (t == DT_BOOL) {
    uint8_t *po = (uint8_t *)arena + o;
    if (s == DT_BOOL) {
      memmove(po, arena + a, (size_t)n);
    } else {
      FLOAT_TYPED(s, {
        const T *pa = (const T *)arena + a;
        for (int64_t i = 0; i < n; i++) po[i] = pa[i] != 0;
      });
    }
    return;
  }
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    if (s == DT_F64) {
      const double *pa = (const double *)arena + a;
      for (int64_t i = 0; i < n; i++) po[i] = (T)pa[i];
    } else if (s == DT_F32) {
      const float *pa = (const float *)arena + a;
      for (int64_t i = 0; i < n; i++) po[i] = (T)pa[i];
    } else {
      const uint8_t *pa = (const uint8_t *)arena + a;
      for (int64_t i = 0; i < n; i++) po[i] = (T)(pa[i] != 0);
    }
  });
}

KERNEL void strided_b(int t, char *arena, int64_t o, int64_t a, const int64_t *d) {
  const int64_t ndim = d[0], start = d[1], *shape = d + 2, *sa = d + 2 + ndim;
  const int64_t n = shape[ndim - 1], ia = sa[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  if (total == 0) return;
  rows_iter it;
  rows_init(&it, ndim, shape, 1, sa, NULL, NULL);
  BITS_TYPED(t, {
    for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {
      E *po = (E *)arena + o + row * n;
      const E *pa = (const E *)arena + a + start + it.off[0];
      if (ia == 1) {
        memcpy(po, pa, (size_t)n * sizeof(E));
      } else {
        for (int64_t i = 0; i < n; i++) po[i] = pa[i * ia];
      }
    }
  });
}

KERNEL void gather_v(int t, char *arena, int64_t o, int64_t a, int64_t m, const int64_t *idx,
                     int64_t n) {
  (void)m;
  BITS_TYPED(t, {
    E *po = (E *)arena + o;
    const E *pa = (const E *)arena + a;
    for (int64_t i = 0; i < n; i++) {
      VM_ASSERT_INDEX(idx[i], m);
      po[i] = pa[idx[i]];
    }
  });
}

KERNEL void scatter_set_v(int t, char *arena, int64_t o, int64_t m, const int64_t *idx,
                          int64_t v, int64_t n) {
  (void)m;
  BITS_TYPED(t, {
    E *po = (E *)arena + o;
    const E *pv = (const E *)arena + v;
    for (int64_t i = 0; i < n; i++) {
      VM_ASSERT_INDEX(idx[i], m);
      po[idx[i]] = pv[i];
    }
  });
}

KERNEL void scatter_add_v(int t, char *arena, int64_t o, int64_t m, const int64_t *idx,
                          int64_t v, int64_t n) {
  (void)m;
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pv = (const T *)arena + v;
    for (int64_t i = 0; i < n; i++) {
      VM_ASSERT_INDEX(idx[i], m);
      po[idx[i]] += pv[i];
    }
  });
}

#define R_SUM(acc, x) ((acc) + (x))
#define R_PROD(acc, x) ((acc) * (x))
#define R_MAX(acc, x) (((x) > (acc) || (x) != (x)) ? (x) : (acc))
#define R_MIN(acc, x) (((x) < (acc) || (x) != (x)) ? (x) : (acc))
#define INIT_SUM 0
#define INIT_PROD 1
#define INIT_MAX (-INFINITY)
#define INIT_MIN INFINITY

/* The input is read once in memory order; each row either folds into one
 * output element (the reduced axis is innermost) or combines elementwise into
 * a row of the output. */
#define REDUCE_B_CASE(name)                                                                   \
  case FN_##name:                                                                    \
    for (int64_t j = 0; j < nout; j++) po[j] = (T)INIT_##name;                       \
    if (total == 0) break;                                                           \
    for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {                  \
      const T *x = pa + row * n;                                                     \
      T *y = po + it.off[0];                                                         \
      if (io == 0) {                                                                 \
        T acc = *y;                                                                  \
        for (int64_t i = 0; i < n; i++) acc = R_##name(acc, x[i]);                   \
        *y = acc;                                                                    \
      } else {                                                                       \
        for (int64_t i = 0; i < n; i++) y[i * io] = R_##name(y[i * io], x[i]);       \
      }                                                                              \
    }                                                                                \
    break;

KERNEL void reduce_b(int f, int t, char *arena, int64_t o, int64_t a, const int64_t *d) {
  const int64_t ndim = d[0], *shape = d + 1, *so = d + 1 + ndim, nout = d[1 + 2 * ndim];
  const int64_t n = shape[ndim - 1], io = so[ndim - 1];
  const int64_t total = shape_size(ndim, shape);
  rows_iter it;
  rows_init(&it, ndim, shape, 1, so, NULL, NULL);
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    switch (f) {
      FASTAD_REDUCE_FNS(REDUCE_B_CASE)
    }
  });
}

/* Sum of a contiguous run with four partial sums: vectorises, and rounds
 * less than one running sum. */
KERNEL double sum_contiguous_d(const double *x, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i];
    s1 += x[i + 1];
    s2 += x[i + 2];
    s3 += x[i + 3];
  }
  for (; i < n; i++) s0 += x[i];
  return (s0 + s1) + (s2 + s3);
}

KERNEL void cumsum_b(int t, char *arena, int64_t o, int64_t a, const int64_t *d) {
  const int64_t outer = d[0], len = d[1], inner = d[2], reverse = d[3];
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    for (int64_t p = 0; p < outer; p++) {
      for (int64_t q = 0; q < inner; q++) {
        const int64_t base = p * len * inner + q;
        T acc = 0;
        for (int64_t i = 0; i < len; i++) {
          const int64_t k = base + (reverse ? len - 1 - i : i) * inner;
          acc += pa[k];
          po[k] = acc;
        }
      }
    }
  });
}

/* ------------------------------------------------------------------------ */
/* Linear algebra through BLAS/LAPACK function pointers                     */
/* ------------------------------------------------------------------------ */
/* Below this many multiply-adds a plain loop beats a BLAS call. */
#define SMALL_MATMUL 512

KERNEL void matmul_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                     int64_t b, const int64_t *d) {
  const int64_t batch = d[0], m = d[1], k = d[2], n = d[3], ta = d[4], tb = d[5];
  if (m == 0 || n == 0) return;
  FLOAT_TYPED(t, {
    for (int64_t p = 0; p < batch; p++) {
      T *C = (T *)arena + o + p * m * n;
      T *A = (T *)arena + a + p * m * k;
      T *B = (T *)arena + b + p * k * n;
      if (k == 0) {
        memset(C, 0, (size_t)(m * n) * sizeof(T));
      } else if (m * n * k <= SMALL_MATMUL) {
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) {
            T acc = 0;
            for (int64_t q = 0; q < k; q++)
              acc += A[ta ? q * m + i : i * k + q] * B[tb ? j * k + q : q * n + j];
            C[i * n + j] = acc;
          }
      } else {
        /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
        char transa = tb ? 'T' : 'N', transb = ta ? 'T' : 'N';
        int im = (int)n, in = (int)m, ik = (int)k;
        int lda = (int)(tb ? k : n), ldb = (int)(ta ? m : k), ldc = (int)n;
        T one = 1, zero = 0;
        if (sizeof(T) == 8)
          la->dgemm(&transa, &transb, &im, &in, &ik, (double *)&one, (double *)B, &lda,
                    (double *)A, &ldb, (double *)&zero, (double *)C, &ldc);
        else
          la->sgemm(&transa, &transb, &im, &in, &ik, (float *)&one, (float *)B, &lda,
                    (float *)A, &ldb, (float *)&zero, (float *)C, &ldc);
      }
    }
  });
}

KERNEL int solve_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                   int64_t b, const int64_t *d, int64_t w, int64_t p) {
  const int64_t batch = d[0], n = d[1], k = d[2];
  if (n == 0 || k == 0) return FASTAD_VM_OK;
  int *ipiv = (int *)arena + p;
  FLOAT_TYPED(t, {
    T *wa = (T *)arena + w, *wb = wa + n * n;
    for (int64_t q = 0; q < batch; q++) {
      const T *A = (const T *)arena + a + q * n * n;
      const T *B = (const T *)arena + b + q * n * k;
      T *X = (T *)arena + o + q * n * k;
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) wa[j * n + i] = A[i * n + j];
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) wb[j * n + i] = B[i * k + j];
      int in = (int)n, ik = (int)k, info = 0;
      if (sizeof(T) == 8)
        la->dgesv(&in, &ik, (double *)wa, &in, ipiv, (double *)wb, &in, &info);
      else
        la->sgesv(&in, &ik, (float *)wa, &in, ipiv, (float *)wb, &in, &info);
      if (info > 0) return FASTAD_VM_SINGULAR;
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) X[i * k + j] = wb[j * n + i];
    }
  });
  return FASTAD_VM_OK;
}

/* log|det| (f = 0) or the sign of det (f = 1) from an LU factorisation;
 * a singular matrix gives -inf and 0, as numpy.linalg.slogdet does. */
KERNEL void slogdet_b(int f, int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                      const int64_t *d, int64_t w, int64_t p) {
  const int64_t batch = d[0], n = d[1];
  int *ipiv = (int *)arena + p;
  FLOAT_TYPED(t, {
    T *wa = (T *)arena + w;
    for (int64_t q = 0; q < batch; q++) {
      T logabs = 0, sign = 1;
      if (n > 0) {
        memcpy(wa, (const T *)arena + a + q * n * n, (size_t)(n * n) * sizeof(T));
        int in = (int)n, info = 0;
        if (sizeof(T) == 8)
          la->dgetrf(&in, &in, (double *)wa, &in, ipiv, &info);
        else
          la->sgetrf(&in, &in, (float *)wa, &in, ipiv, &info);
        if (info > 0) {
          logabs = -INFINITY;
          sign = 0;
        } else {
          for (int64_t i = 0; i < n; i++) {
            T u = wa[i * n + i];
            if (u < 0) sign = -sign;
            if (ipiv[i] != i + 1) sign = -sign;
            logabs += log(fabs(u));
          }
        }
      }
      ((T *)arena)[o + q] = f == 0 ? logabs : sign;
    }
  });
}

/* ------------------------------------------------------------------------ */
/* Polling for an interrupt (fastad_vm_run_polled)                          */
/* ------------------------------------------------------------------------ */
/* The dispatch loop reads the clock at every POLL_INSTRUCTIONS-th array
 * instruction, a FUSED instruction every POLL_BLOCKS blocks of its caller's
 * chunks; the caller's callback runs only once the run has lasted
 * FASTAD_POLL_FIRST_MS, then every FASTAD_POLL_EVERY_MS.  A short run never
 * reads the clock: its cost is a counter decrement per array instruction. */
#define POLL_INSTRUCTIONS 16
#define POLL_BLOCKS 64

typedef struct {
  const fastad_poll *poll; /* NULL: never */
  int64_t next_ms;         /* when fn is next due; -1 before the first clock read */
  int stop;                /* fn asked to stop */
} poll_state;

static int64_t now_ms(void) {
#if defined(_WIN32)
  return (int64_t)GetTickCount64();
#else
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* no system call; a few ms resolution */
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

/* Called now and then on the thread running the program; nonzero: stop. */
static int poll_due(poll_state *ps) {
  if (ps->stop) return 1;
  const int64_t t = now_ms();
  if (ps->next_ms < 0) {
    ps->next_ms = t + FASTAD_POLL_FIRST_MS;
    return 0;
  }
  if (t < ps->next_ms) return 0;
  ps->stop = ps->poll->fn(ps->poll->ctx) != 0;
  ps->next_ms = now_ms() + FASTAD_POLL_EVERY_MS;
  return ps->stop;
}

#if defined(_WIN32) || defined(FASTAD_NO_THREADS)
typedef int thread_id; /* every chunk runs on the caller */
#define THIS_THREAD() 0
#define SAME_THREAD(a, b) 1
#define LOAD_FLAG(p) (*(volatile int *)(p))
#define SET_FLAG(p) (*(volatile int *)(p) = 1)
#else
typedef pthread_t thread_id;
#define THIS_THREAD() pthread_self()
#define SAME_THREAD(a, b) pthread_equal(a, b)
#define LOAD_FLAG(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define SET_FLAG(p) __atomic_store_n(p, 1, __ATOMIC_RELAXED)
#endif

/* ------------------------------------------------------------------------ */
/* Fused elementwise chains (FUSED)                                         */
/* ------------------------------------------------------------------------ */
/* A FUSED instruction runs its micro-program over blocks of FUSED_BLOCK
 * elements: each step is one tight loop over the block, its registers stay
 * in L1, and only the chain's inputs and outputs touch the arena.  Large
 * instructions are cut into one contiguous chunk per thread. */
#ifndef FUSED_BLOCK
#define FUSED_BLOCK 512 /* measured against 128, 256 and 1024: docs/design.md */
#endif
/* Measured on the 2-core development machine (docs/design.md); a build may
 * set another with -DFASTAD_FUSED_PARALLEL_MIN=... */
#ifndef FASTAD_FUSED_PARALLEL_MIN
#define FASTAD_FUSED_PARALLEL_MIN ((int64_t)1 << 15)
#endif
const int64_t fastad_fused_parallel_min = FASTAD_FUSED_PARALLEL_MIN;
/* Registers are FUSED_BLOCK + 8 elements apart: at exactly 4 KiB apart a
 * step's loads share their low 12 address bits with its stores, and the CPU's
 * store-forwarding check stalls them (in-cache W2 steps ran 16% slower). */
#define FUSED_REG_STRIDE (FUSED_BLOCK + 8)

int fastad_vm_threads(void) { return fastad_pool_threads(); }

typedef struct {
  char *dst;
  const char *src;
  size_t n, chunk_len;
} copy_job;

static void copy_chunk(void *arg, int chunk) {
  copy_job *job = (copy_job *)arg;
  const size_t lo = (size_t)chunk * job->chunk_len;
  const size_t len = job->n - lo < job->chunk_len ? job->n - lo : job->chunk_len;
  memcpy(job->dst + lo, job->src + lo, len);
}

void fastad_copy(void *dst, const void *src, size_t n) {
  /* Callers copy between an arena and a NumPy array of their own, never
   * overlapping; should two ranges ever overlap, memmove is still defined. */
  const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
  if (d < s + n && s < d + n) {
    memmove(dst, src, n);
    return;
  }
  const int threads = fastad_pool_threads();
  /* the byte count of a fused loop worth splitting: its input, at 8 bytes */
  if (threads <= 1 || n < (size_t)fastad_fused_parallel_min * 8) {
    memcpy(dst, src, n);
    return;
  }
  copy_job job = {(char *)dst, (const char *)src, n, 0};
  job.chunk_len = ((n + threads - 1) / threads + 63) / 64 * 64;
  fastad_pool_run(copy_chunk, &job, (int)((n + job.chunk_len - 1) / job.chunk_len));
}

typedef struct {
  int t;
  char *arena;
  const int64_t *d;
  int64_t n, chunk_len;
  poll_state *ps;  /* NULL: no polling; else polled from the caller's chunks */
  thread_id caller;
  int abort;       /* set (atomically) when ps asked to stop: every chunk stops */
  double sums[FASTAD_POOL_MAX_THREADS][FASTAD_FUSED_MAX_SUMS]; /* per chunk, per SUM step */
  /* SHIFT contributions to elements of a neighbouring chunk, added after the
   * join: per chunk, per SHIFT step, the |f| elements past the chunk's end
   * (f > 0) or before its start (f < 0). */
  double edge[FASTAD_POOL_MAX_THREADS][FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
  unsigned char edge_set[FASTAD_POOL_MAX_THREADS][FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
} fused_job;

/* The elements of a block where C_name(a[i], b[i]) holds (kind as in BINARY_V_CASE). */
#define COUNT_CASE(name)                                                        \
  case FN_##name:                                                      \
    if (kind == 0) {                                                   \
      for (int64_t i = 0; i < n; i++) count += C_##name(pa[i], pb[i]); \
    } else if (kind == 1) {                                            \
      const T y = pb[0];                                               \
      for (int64_t i = 0; i < n; i++) count += C_##name(pa[i], y);     \
    } else {                                                           \
      const T x = pa[0];                                               \
      for (int64_t i = 0; i < n; i++) count += C_##name(x, pb[i]);     \
    }                                                                  \
    break;

/* Whether a polled job should stop: another chunk saw the poll ask to stop,
 * or this chunk runs on the caller and its poll asks now. */
static int fused_stop(fused_job *job) {
  if (LOAD_FLAG(&job->abort)) return 1;
  if (!SAME_THREAD(job->caller, THIS_THREAD()) || !poll_due(job->ps)) return 0;
  SET_FLAG(&job->abort);
  return 1;
}

/* Runs chunk c of a job: blocks [c * chunk_len, min(n, (c + 1) * chunk_len)),
 * fewer if a poll stops the job (what it computed so far is then combined as
 * usual, to values nobody reads). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTAD_SANITIZE_BUILD)
__attribute__((target_clones("avx2", "default")))
#endif
static void fused_chunk(void *arg, int chunk) {
  fused_job *job = (fused_job *)arg;
  const int64_t *d = job->d;
  const int nregs = (int)d[0], nslots = (int)d[1], nsteps = (int)d[2];
  const int64_t *slots = d + 3, *steps = d + 3 + 2 * nslots;
  const int64_t lo = chunk * job->chunk_len;
  const int64_t hi = lo + job->chunk_len < job->n ? lo + job->chunk_len : job->n;
  VM_ASSERT_INDEX(hi - 1, job->n);
  FLOAT_TYPED(job->t, {
    _Alignas(64) T regs[FASTAD_FUSED_MAX_REGS][FUSED_REG_STRIDE];
    T *ptr[FASTAD_FUSED_MAX_REGS + FASTAD_FUSED_MAX_SLOTS];
    char scalar[FASTAD_FUSED_MAX_REGS + FASTAD_FUSED_MAX_SLOTS];
    T sums[FASTAD_FUSED_MAX_SUMS];
    /* SHIFT f > 0: contributions waiting for the next block, to elements
     * pend_at .. pend_at + f - 1 */
    T pend[FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
    unsigned char pend_set[FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
    int64_t pend_at = lo;
    memset(pend_set, 0, sizeof pend_set);
    memset(job->edge_set[chunk], 0, sizeof job->edge_set[chunk]);
    for (int r = 0; r < nregs; r++) {
      ptr[r] = regs[r];
      scalar[r] = 0;
    }
    for (int s = 0; s < nslots; s++) scalar[nregs + s] = slots[2 * s] == FUSED_SCALAR;
    for (int k = 0; k < FASTAD_FUSED_MAX_SUMS; k++) sums[k] = 0;
    int64_t blocks = 0;
    for (int64_t i0 = lo; i0 < hi; i0 += FUSED_BLOCK) {
      if (job->ps != NULL && ++blocks % POLL_BLOCKS == 0 && fused_stop(job)) break;
      const int64_t len = hi - i0 < FUSED_BLOCK ? hi - i0 : FUSED_BLOCK;
      for (int s = 0; s < nslots; s++) {
        const int64_t kind = slots[2 * s], off = slots[2 * s + 1];
        ptr[nregs + s] = (T *)job->arena + off + (kind == FUSED_IN || kind == FUSED_OUT ? i0 : 0);
      }
      int nsum = 0, nshift = 0;
      for (int k = 0; k < nsteps; k++) {
        const int64_t *st = steps + 5 * k;
        T *po = ptr[st[2]];
        const T *pa = ptr[st[3]];
        const T *pb = ptr[st[4]];
        const int64_t n = len; /* for the kernels' loop bodies, UNARY_V_CASE ... */
        if (st[0] == FUSED_SHIFT) {
          /* x[j] += a[j - f], x indexed from the slot's element 0 */
          const int64_t f = st[1], end = i0 + len;
          T *x = po - i0;
          T *p = pend[nshift];
          unsigned char *ps = pend_set[nshift];
          if (f > 0) {
            T next[FASTAD_FUSED_MAX_SHIFT];
            unsigned char next_set[FASTAD_FUSED_MAX_SHIFT] = {0};
            for (int64_t q = 0; q < f; q++) {
              if (!ps[q]) continue;
              const int64_t j = pend_at + q;
              if (j < end) {
                x[j] += p[q];
              } else {
                next[j - end] = p[q];
                next_set[j - end] = 1;
              }
            }
            int64_t i = 0;
            for (; i + f < len; i++) po[i + f] += pa[i];
            for (; i < len; i++) {
              next[i0 + i + f - end] = pa[i];
              next_set[i0 + i + f - end] = 1;
            }
            memcpy(p, next, sizeof next);
            memcpy(ps, next_set, sizeof next_set);
          } else {
            int64_t i = 0;
            if (i0 == lo && lo > 0) { /* the first -f land in the previous chunk */
              for (; i < -f && i < len; i++) {
                job->edge[chunk][nshift][i] = (double)pa[i];
                job->edge_set[chunk][nshift][i] = 1;
              }
            }
            for (; i < len; i++) po[i + f] += pa[i];
          }
          nshift++;
        } else if (st[0] == FUSED_UNARY) {
          switch (st[1]) { FASTAD_UNARY_FNS(UNARY_V_CASE) }
        } else if (st[0] == FUSED_BINARY) {
          const int kind = scalar[st[4]] ? 1 : scalar[st[3]] ? 2 : 0;
          switch (st[1]) { FASTAD_BINARY_FNS(BINARY_V_CASE) }
        } else if (st[0] == FUSED_COUNT || st[0] == FUSED_NCOUNT) {
          const int kind = scalar[st[4]] ? 1 : scalar[st[3]] ? 2 : 0;
          int64_t count = 0; /* at most FUSED_BLOCK: exact in T */
          switch (st[1]) { FASTAD_COMPARE_FNS(COUNT_CASE) }
          /* where it fails: the rest, NaN included */
          sums[nsum++] += (T)(st[0] == FUSED_COUNT ? count : n - count);
        } else { /* SUM, with four partial sums: vectorises, rounds less */
          T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          int64_t i = 0;
          for (; i + 4 <= len; i += 4) {
            s0 += pa[i];
            s1 += pa[i + 1];
            s2 += pa[i + 2];
            s3 += pa[i + 3];
          }
          for (; i < len; i++) s0 += pa[i];
          sums[nsum++] += (s0 + s1) + (s2 + s3);
        }
      }
      pend_at = i0 + len;
    }
    for (int k = 0; k < FASTAD_FUSED_MAX_SUMS; k++) job->sums[chunk][k] = (double)sums[k];
    /* SHIFT f > 0: what is still pending lands past the chunk's end: in the
     * next chunk (added after the join) or past element n - 1 (added now) */
    int nshift = 0;
    for (int k = 0; k < nsteps; k++) {
      const int64_t *st = steps + 5 * k;
      if (st[0] != FUSED_SHIFT) continue;
      if (st[1] > 0) {
        T *x = (T *)job->arena + slots[2 * (st[2] - nregs) + 1];
        for (int64_t q = 0; q < st[1]; q++) {
          if (!pend_set[nshift][q]) continue;
          if (hi == job->n) {
            x[hi + q] += pend[nshift][q];
          } else {
            job->edge[chunk][nshift][q] = (double)pend[nshift][q];
            job->edge_set[chunk][nshift][q] = 1;
          }
        }
      }
      nshift++;
    }
  });
}

KERNEL void fused(int t, char *arena, const int64_t *d, int64_t n, poll_state *ps) {
  fused_job job;
  job.t = t;
  job.arena = arena;
  job.d = d;
  job.n = n;
  job.ps = ps;
  job.abort = 0;
  if (ps != NULL) job.caller = THIS_THREAD();
  int nchunks = 1;
  if (n >= fastad_fused_parallel_min) nchunks = fastad_pool_threads();
  int64_t per = (n + nchunks - 1) / nchunks;
  job.chunk_len = (per + FUSED_BLOCK - 1) / FUSED_BLOCK * FUSED_BLOCK;
  if (job.chunk_len == 0) job.chunk_len = FUSED_BLOCK;
  nchunks = (int)((n + job.chunk_len - 1) / job.chunk_len);
  fastad_pool_run(fused_chunk, &job, nchunks);
  /* Each accumulator: its chunks' partial sums, in chunk order; each SHIFT:
   * the contributions that crossed a chunk boundary. */
  const int nslots = (int)d[1], nsteps = (int)d[2];
  const int64_t *slots = d + 3, *steps = d + 3 + 2 * nslots;
  int nsum = 0, nshift = 0;
  for (int k = 0; k < nsteps; k++) {
    const int64_t *st = steps + 5 * k;
    if (st[0] == FUSED_SHIFT) {
      const int64_t f = st[1], off = slots[2 * (st[2] - d[0]) + 1];
      for (int c = 0; c < nchunks; c++) {
        const int64_t at = f > 0 ? (c + 1) * job.chunk_len : c * job.chunk_len + f;
        if ((f > 0 && c == nchunks - 1) || (f < 0 && c == 0)) continue;
        FLOAT_TYPED(t, {
          T *x = (T *)arena + off + at;
          for (int64_t q = 0; q < (f > 0 ? f : -f); q++)
            if (job.edge_set[c][nshift][q]) x[q] += (T)job.edge[c][nshift][q];
        });
      }
      nshift++;
      continue;
    }
    if (st[0] != FUSED_SUM && st[0] != FUSED_COUNT && st[0] != FUSED_NCOUNT) continue;
    const int64_t off = slots[2 * (st[2] - d[0]) + 1];
    FLOAT_TYPED(t, {
      T acc = 0;
      for (int c = 0; c < nchunks; c++) acc += (T)job.sums[c][nsum];
      ((T *)arena)[off] = acc;
    });
    nsum++;
  }
}

/* ------------------------------------------------------------------------ */
/* The dispatch loop                                                        */
/* ------------------------------------------------------------------------ */
/* The debug build uses the switch, so every instruction passes vmcheck. */
#if defined(__GNUC__) && !defined(FASTAD_VM_SWITCH) && !defined(FASTAD_DEBUG_VM)
#define USE_COMPUTED_GOTO
#endif

#ifdef USE_COMPUTED_GOTO
#define vmdispatch(op) goto *dispatch_table[op];
#define vmcase(name) L_##name:
#define vmbreak vmdispatch(*pc)
#else
#define vmdispatch(op) switch (op)
#define vmcase(name) case OP_##name:
#define vmbreak break
#endif

#ifdef FASTAD_DEBUG_VM
#define vmcheck()                                                                \
  do {                                                                           \
    char err_[256];                                                              \
    int64_t next_;                                                               \
    if (!fastad_vm_check_instr(p, pc - p->code, &next_, err_, sizeof err_))      \
      vm_trap(err_, pc - p->code, 0);                                            \
  } while (0)
#else
#define vmcheck() ((void)0)
#endif

/* Steps past the current instruction of nargs operands. */
#define NEXT(nargs) (pc += 1 + (nargs))

/* After an array instruction: every POLL_INSTRUCTIONS of them, a poll. */
#define POLL()                                                                   \
  do {                                                                           \
    if (--countdown < 0) {                                                       \
      countdown = POLL_INSTRUCTIONS;                                             \
      if (ps.poll != NULL && poll_due(&ps)) return FASTAD_VM_INTERRUPTED;        \
    }                                                                            \
  } while (0)

int fastad_vm_run(const fastad_program *p, const fastad_linalg *la, void *arena) {
  return fastad_vm_run_polled(p, la, arena, NULL);
}

int fastad_vm_run_polled(const fastad_program *p, const fastad_linalg *la, void *arena_ptr,
                         const fastad_poll *poll) {
  poll_state ps = {poll, -1, 0};
  int countdown = POLL_INSTRUCTIONS;
  char *const arena = (char *)arena_ptr;
  double *const D = (double *)arena;
  const uint8_t *const B = (const uint8_t *)arena;
  const int64_t *const meta = p->meta;
  const int32_t *pc = p->code;
#ifdef USE_COMPUTED_GOTO
#define LABEL_OF_OP(name, nargs) &&L_##name,
  static const void *const dispatch_table[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(LABEL_OF_OP)};
#undef LABEL_OF_OP
#endif
  for (;;) {
    vmcheck();
    vmdispatch(*pc) {
      vmcase(HALT) { return FASTAD_VM_OK; }
      vmcase(ADD_S) { D[pc[1]] = D[pc[2]] + D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(SUB_S) { D[pc[1]] = D[pc[2]] - D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(MUL_S) { D[pc[1]] = D[pc[2]] * D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(DIV_S) { D[pc[1]] = D[pc[2]] / D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(NEG_S) { D[pc[1]] = -D[pc[2]]; NEXT(2); vmbreak; }
      vmcase(NMUL_S) { D[pc[1]] = -(D[pc[2]] * D[pc[3]]); NEXT(3); vmbreak; }
      vmcase(MULADD_S) { D[pc[1]] = D[pc[2]] + D[pc[3]] * D[pc[4]]; NEXT(4); vmbreak; }
      vmcase(MULSUB_S) { D[pc[1]] = D[pc[2]] - D[pc[3]] * D[pc[4]]; NEXT(4); vmbreak; }
      vmcase(SQUARE_S) { const double x = D[pc[2]]; D[pc[1]] = x * x; NEXT(2); vmbreak; }
      vmcase(MOV_S) { D[pc[1]] = D[pc[2]]; NEXT(2); vmbreak; }
      vmcase(ACC_S) { D[pc[1]] += D[pc[2]]; NEXT(2); vmbreak; }
      vmcase(NACC_S) { D[pc[1]] -= D[pc[2]]; NEXT(2); vmbreak; }
      vmcase(MULACC_S) { D[pc[1]] += D[pc[2]] * D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(NMULACC_S) { D[pc[1]] -= D[pc[2]] * D[pc[3]]; NEXT(3); vmbreak; }
      vmcase(UNARY_S) {
        unary_v(pc[1], DT_F64, arena, pc[2], pc[3], 1);
        NEXT(3);
        vmbreak;
      }
      vmcase(BINARY_S) {
        binary_v(pc[1], DT_F64, 0, arena, pc[2], pc[3], pc[4], 1);
        NEXT(4);
        vmbreak;
      }
      vmcase(UNARY_V) {
        unary_v(pc[1], pc[2], arena, pc[3], pc[4], pc[5]);
        POLL();
        NEXT(5);
        vmbreak;
      }
      vmcase(BINARY_VV) {
        binary_v(pc[1], pc[2], 0, arena, pc[3], pc[4], pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(BINARY_VS) {
        binary_v(pc[1], pc[2], 1, arena, pc[3], pc[4], pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(BINARY_SV) {
        binary_v(pc[1], pc[2], 2, arena, pc[3], pc[4], pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(BINARY_B) {
        binary_b(pc[1], pc[2], arena, pc[3], pc[4], pc[5], meta + pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(COMPARE_B) {
        compare_b(pc[1], pc[2], arena, pc[3], pc[4], pc[5], meta + pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(LOGIC_B) {
        logic_b(pc[1], arena, pc[2], pc[3], pc[4], meta + pc[5]);
        POLL();
        NEXT(5);
        vmbreak;
      }
      vmcase(NOT_V) {
        uint8_t *po = (uint8_t *)arena + pc[1];
        const uint8_t *pa = B + pc[2];
        for (int64_t i = 0; i < pc[3]; i++) po[i] = !pa[i];
        POLL();
        NEXT(3);
        vmbreak;
      }
      vmcase(WHERE_B) {
        where_b(pc[1], arena, pc[2], pc[3], pc[4], pc[5], meta + pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(CAST_V) {
        cast_v(pc[1], pc[2], arena, pc[3], pc[4], pc[5]);
        POLL();
        NEXT(5);
        vmbreak;
      }
      vmcase(ZERO_V) {
        memset(arena + (int64_t)pc[2] * dtype_size[pc[1]], 0, (size_t)pc[3] * dtype_size[pc[1]]);
        POLL();
        NEXT(3);
        vmbreak;
      }
      vmcase(COPY_V) {
        const int64_t size = dtype_size[pc[1]];
        memmove(arena + pc[2] * size, arena + pc[3] * size, (size_t)(pc[4] * size));
        POLL();
        NEXT(4);
        vmbreak;
      }
      vmcase(STRIDED_B) {
        strided_b(pc[1], arena, pc[2], pc[3], meta + pc[4]);
        POLL();
        NEXT(4);
        vmbreak;
      }
      vmcase(GATHER_V) {
        gather_v(pc[1], arena, pc[2], pc[3], pc[4], p->index + pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(SCATTER_SET_V) {
        scatter_set_v(pc[1], arena, pc[2], pc[3], p->index + pc[4], pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(SCATTER_ADD_V) {
        scatter_add_v(pc[1], arena, pc[2], pc[3], p->index + pc[4], pc[5], pc[6]);
        POLL();
        NEXT(6);
        vmbreak;
      }
      vmcase(REDUCE_B) {
        const int64_t *d = meta + pc[5];
        if (pc[1] == FN_SUM && pc[2] == DT_F64 && d[0] == 1 && d[2] == 0 && d[3] == 1) {
          D[pc[3]] = sum_contiguous_d(D + pc[4], d[1]);  /* a full sum to one value */
        } else {
          reduce_b(pc[1], pc[2], arena, pc[3], pc[4], d);
        }
        POLL();
        NEXT(5);
        vmbreak;
      }
      vmcase(CUMSUM_B) {
        cumsum_b(pc[1], arena, pc[2], pc[3], meta + pc[4]);
        POLL();
        NEXT(4);
        vmbreak;
      }
      vmcase(MATMUL_B) {
        matmul_b(pc[1], la, arena, pc[2], pc[3], pc[4], meta + pc[5]);
        POLL();
        NEXT(5);
        vmbreak;
      }
      vmcase(SOLVE_B) {
        const int status = solve_b(pc[1], la, arena, pc[2], pc[3], pc[4], meta + pc[5], pc[6], pc[7]);
        if (status != FASTAD_VM_OK) return status;
        POLL();
        NEXT(7);
        vmbreak;
      }
      vmcase(SLOGDET_B) {
        slogdet_b(pc[1], pc[2], la, arena, pc[3], pc[4], meta + pc[5], pc[6], pc[7]);
        POLL();
        NEXT(7);
        vmbreak;
      }
      vmcase(FUSED) {
        /* a FUSED instruction polls only if it has enough blocks to reach a poll */
        fused(pc[1], arena, meta + pc[2], pc[3],
              poll != NULL && pc[3] >= POLL_BLOCKS * FUSED_BLOCK ? &ps : NULL);
        if (ps.stop) return FASTAD_VM_INTERRUPTED;
        POLL();
        NEXT(3);
        vmbreak;
      }
      vmcase(GUARD) {
        if ((B[pc[1]] != 0) != pc[2]) return FASTAD_VM_GUARD_FAILED;
        NEXT(2);
        vmbreak;
      }
    }
  }
}
