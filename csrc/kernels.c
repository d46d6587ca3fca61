/*
 * kernels.c -- the VM's array kernels: one function per array instruction
 * (opcodes.h), each written once for float and double through FLOAT_TYPED.
 * The dispatch loop (vm.c) calls them; the elementwise functions and loop
 * bodies they share with the fused blocks are macros in kernels.h.
 */
#include "kernels.h"
#include "pairwise.h"

#include <limits.h>

#ifdef FASTAD_DEBUG_VM
void vm_trap(const char *what, long long a, long long b) {
  fprintf(stderr, "fastad VM: bounds assertion failed: %s (%lld, %lld)\n", what, a, b);
  abort();
}
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
#define KERNEL __attribute__((noinline))
#else
#define KERNEL
#endif

KERNEL void unary_v(int f, int t, char *arena, int64_t o, int64_t a, int64_t n) {
  if (unary_loop_run(f, t, arena + a * dtype_size[t], arena + o * dtype_size[t], n)) return;
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    switch (f) {
      FASTAD_UNARY_FNS(UNARY_V_CASE)
    }
  });
}

/* kind: 0 both vectors, 1 b a scalar, 2 a a scalar. */
KERNEL void binary_v(int f, int t, int kind, char *arena, int64_t o, int64_t a, int64_t b,
                     int64_t n) {
  const int size = dtype_size[t];
  if (binary_loop_run(f, t, kind, arena + a * size, arena + b * size, arena + o * size, n)) return;
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

/* Row k of m for an index held in float64: NumPy's wrapping of a negative
 * index; 0 (IndexError) for one outside -m..m-1, a fraction or NaN.  The
 * comparisons come first, so the conversion never overflows. */
static inline int row_of(double x, int64_t m, int64_t *k) {
  if (!(x >= -(double)m && x < (double)m)) return 0;
  int64_t v = (int64_t)x;
  if ((double)v != x) return 0;
  *k = v < 0 ? v + m : v;
  return 1;
}

KERNEL int gather_rows_v(int t, char *arena, int64_t o, int64_t a, int64_t m, int64_t r,
                         const double *idx, int64_t n) {
  int64_t k;
  BITS_TYPED(t, {
    E *po = (E *)arena + o;
    const E *pa = (const E *)arena + a;
    if (r == 1) {
      for (int64_t j = 0; j < n; j++) {
        if (!row_of(idx[j], m, &k)) return FASTAD_VM_INDEX_ERROR;
        po[j] = pa[k];
      }
    } else {
      for (int64_t j = 0; j < n; j++) {
        if (!row_of(idx[j], m, &k)) return FASTAD_VM_INDEX_ERROR;
        memcpy(po + j * r, pa + k * r, (size_t)r * sizeof(E));
      }
    }
  });
  return FASTAD_VM_OK;
}

KERNEL int scatter_add_rows_v(int t, char *arena, int64_t o, int64_t m, int64_t r,
                              const double *idx, int64_t v, int64_t n) {
  int64_t k;
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pv = (const T *)arena + v;
    for (int64_t j = 0; j < n; j++) {
      if (!row_of(idx[j], m, &k)) return FASTAD_VM_INDEX_ERROR;
      T *row = po + k * r;
      const T *src = pv + j * r;
      for (int64_t c = 0; c < r; c++) row[c] += src[c];
    }
  });
  return FASTAD_VM_OK;
}

/* The scatters of a basic slice: v (contiguous, the STRIDED shape) into o at
 * start + j . stride, in the order of j, so repeated positions (a stride of 0)
 * accumulate as np.add.at does and no index list is stored. */
#define STRIDED_SCATTER_LOOP(STMT)                                                           \
  const int64_t ndim = d[0], start = d[1], *shape = d + 2, *so = d + 2 + ndim;               \
  const int64_t n = shape[ndim - 1], io = so[ndim - 1];                                    \
  const int64_t total = shape_size(ndim, shape);                                           \
  if (total == 0) return;                                                                  \
  rows_iter it;                                                                            \
  rows_init(&it, ndim, shape, 1, so, NULL, NULL);                                          \
  for (int64_t row = 0; row < total / n; row++, rows_next(&it)) {                          \
    T *po = (T *)arena + o + start + it.off[0];                                            \
    const T *pv = (const T *)arena + v + row * n;                                          \
    for (int64_t i = 0; i < n; i++) STMT;                                                  \
  }

KERNEL void strided_set_b(int t, char *arena, int64_t o, int64_t v, const int64_t *d) {
  BITS_TYPED(t, {
    typedef E T;
    STRIDED_SCATTER_LOOP(po[i * io] = pv[i])
  });
}

KERNEL void strided_add_b(int t, char *arena, int64_t o, int64_t v, const int64_t *d) {
  FLOAT_TYPED(t, { STRIDED_SCATTER_LOOP(po[i * io] += pv[i]) });
}

#define R_SUM(acc, x) ((acc) + (x))
#define R_PROD(acc, x) ((acc) * (x))
#define R_MAX(acc, x) (((x) > (acc) || (x) != (x)) ? (x) : (acc))
#define R_MIN(acc, x) (((x) < (acc) || (x) != (x)) ? (x) : (acc))
#define INIT_SUM 0
#define INIT_PROD 1
#define INIT_MAX (-INFINITY)
#define INIT_MIN INFINITY

/* max/min of acc and a contiguous row, with the bits the serial fold R_MAX /
 * R_MIN gives (the first NaN; else the extreme, the first of equal zeros), in
 * four lanes of x > m ? x : m that compile to blends or maxpd instead of a
 * mispredicted branch per element (a row max of softmax's 1000x20 logits took
 * 3.6 ns an element).  Equal nonzero values have equal bits, so only a NaN or
 * a zero extreme needs the serial fold, which then decides. */
#define DEFINE_ROW_EXTREME(fname, T, OP)                                          \
  static inline T fname(T acc, const T *x, int64_t n) {                          \
    T m0 = acc, m1 = acc, m2 = acc, m3 = acc;                                    \
    int nan = 0;                                                                 \
    int64_t i = 0;                                                               \
    for (; i + 4 <= n; i += 4) {                                                 \
      m0 = x[i] OP m0 ? x[i] : m0;                                               \
      m1 = x[i + 1] OP m1 ? x[i + 1] : m1;                                       \
      m2 = x[i + 2] OP m2 ? x[i + 2] : m2;                                       \
      m3 = x[i + 3] OP m3 ? x[i + 3] : m3;                                       \
      nan |= (x[i] != x[i]) | (x[i + 1] != x[i + 1]) | (x[i + 2] != x[i + 2]) |  \
             (x[i + 3] != x[i + 3]);                                             \
    }                                                                            \
    for (; i < n; i++) {                                                         \
      m0 = x[i] OP m0 ? x[i] : m0;                                               \
      nan |= x[i] != x[i];                                                       \
    }                                                                            \
    T m = m1 OP m0 ? m1 : m0;                                                    \
    m = m2 OP m ? m2 : m;                                                        \
    m = m3 OP m ? m3 : m;                                                        \
    if (!nan && m != 0 && acc == acc) return m;                                  \
    for (i = 0; i < n; i++) acc = (x[i] OP acc || x[i] != x[i]) ? x[i] : acc;    \
    return acc;                                                                  \
  }
DEFINE_ROW_EXTREME(row_max_d, double, >)
DEFINE_ROW_EXTREME(row_max_f, float, >)
DEFINE_ROW_EXTREME(row_min_d, double, <)
DEFINE_ROW_EXTREME(row_min_f, float, <)
/* NumPy's pairwise summation (its `pairwise_sum` loop, same order, same
 * type; pairwise.h): runs of at most 128 with eight partial sums, halved
 * recursively above that.  The rounding error grows with log n, not n (a
 * running float32 sum of 10^6 x 0.1 is 1% off), and a contiguous sum has
 * NumPy's bits. */
#define DEFINE_PAIRWISE_SUM(fname, T)                                              \
  static T fname(const T *a, int64_t n) {                                          \
    if (n <= PAIRWISE_BLOCK) return PAIRWISE_LEAF(a, n);                           \
    const int64_t n2 = pairwise_half(n);                                           \
    return fname(a, n2) + fname(a + n2, n - n2);                                   \
  }
DEFINE_PAIRWISE_SUM(pairwise_sum_d, double)
DEFINE_PAIRWISE_SUM(pairwise_sum_f, float)
#define ROW_FOLD_SUM(acc, x, n) \
  acc = R_SUM(acc, _Generic(acc, float: pairwise_sum_f, default: pairwise_sum_d)(x, n))
#define ROW_FOLD_PROD(acc, x, n) for (int64_t i = 0; i < n; i++) acc = R_PROD(acc, x[i])
#define ROW_FOLD_MAX(acc, x, n) acc = _Generic(acc, float: row_max_f, default: row_max_d)(acc, x, n)
#define ROW_FOLD_MIN(acc, x, n) acc = _Generic(acc, float: row_min_f, default: row_min_d)(acc, x, n)

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
        ROW_FOLD_##name(acc, x, n);                                                  \
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

/* A full sum of a contiguous float64 run: 0 + the pairwise sum, as the
 * reduction (and NumPy) computes it. */
KERNEL double sum_contiguous_d(const double *x, int64_t n) { return 0.0 + pairwise_sum_d(x, n); }

/* Scans along one axis of a contiguous (outer, len, inner) array: running
 * sums and products in either direction, and each element's product of the
 * others in its slice (prod's partial derivatives): the quotient prod / x
 * where the slice holds no zero, as NumPy computes it; at its only zero the
 * product of the nonzeros; 0 elsewhere. */
KERNEL void scan_b(int t, char *arena, int64_t o, int64_t a, const int64_t *d) {
  const int64_t outer = d[0], len = d[1], inner = d[2], kind = d[3];
  const int reverse = kind == FASTAD_SCAN_SUM_REVERSED || kind == FASTAD_SCAN_PROD_REVERSED;
  const int product = kind == FASTAD_SCAN_PROD || kind == FASTAD_SCAN_PROD_REVERSED;
  FLOAT_TYPED(t, {
    T *po = (T *)arena + o;
    const T *pa = (const T *)arena + a;
    for (int64_t p = 0; p < outer; p++) {
      for (int64_t q = 0; q < inner; q++) {
        const int64_t base = p * len * inner + q;
        if (kind == FASTAD_SCAN_PROD_OTHERS) {
          T rest = 1;
          int64_t zeros = 0;
          for (int64_t i = 0; i < len; i++) {
            const T v = pa[base + i * inner];
            if (v == 0) zeros++; else rest *= v;
          }
          for (int64_t i = 0; i < len; i++) {
            const int64_t k = base + i * inner;
            po[k] = !zeros ? rest / pa[k] : pa[k] == 0 && zeros == 1 ? rest : (T)0;
          }
          continue;
        }
        T acc = product ? 1 : 0;
        for (int64_t i = 0; i < len; i++) {
          const int64_t k = base + (reverse ? len - 1 - i : i) * inner;
          acc = product ? acc * pa[k] : acc + pa[k];
          po[k] = acc;
        }
      }
    }
  });
}

/* ------------------------------------------------------------------------ */
/* Linear algebra through BLAS/LAPACK function pointers                     */
/* ------------------------------------------------------------------------ */
KERNEL void matmul_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                     int64_t b, const int64_t *d) {
  const int64_t batch = d[0], m = d[1], k = d[2], n = d[3], ta = d[4], tb = d[5];
  const int add = (int)d[6]; /* o += a @ b: o holds the addend */
  if (m == 0 || n == 0) return;
  FLOAT_TYPED(t, {
    for (int64_t p = 0; p < batch; p++) {
      T *C = (T *)arena + o + p * m * n;
      T *A = (T *)arena + a + p * m * k;
      T *B = (T *)arena + b + p * k * n;
      if (k == 0) {
        if (!add) memset(C, 0, (size_t)(m * n) * sizeof(T));
      } else if (m * n * k <= (m == 1 || n == 1 ? SMALL_MATVEC : SMALL_MATMUL)) {
        small_matmul(t, C, A, B, m, k, n, ta, tb, add);
      } else if (n == 1 && m == 1) { /* a vector times a vector */
        int ik = (int)k, inc = 1;
        T dot = sizeof(T) == 8 ? (T)la->ddot(&ik, (double *)A, &inc, (double *)B, &inc)
                               : (T)la->sdot(&ik, (float *)A, &inc, (float *)B, &inc);
        C[0] = add ? C[0] + dot : dot;
      } else if (n == 1 || m == 1) {
        /* A matrix times a vector (or a vector times a matrix) as gemv: a
         * gemm of one column packs the whole matrix first, up to 4x the
         * time.  The vector is contiguous whichever operand is transposed;
         * the matrix is row-major M (r x c), which column-major sees as M^T
         * with leading dimension c, so y = M x is gemv('T') on it. */
        const T *M = n == 1 ? A : B, *x = n == 1 ? B : A;
        const int mt = n == 1 ? (int)ta : (int)!tb; /* y = M^T x rather than M x */
        const int64_t rows = n == 1 ? (ta ? k : m) : (tb ? n : k);
        const int64_t cols = n == 1 ? (ta ? m : k) : (tb ? k : n);
        char trans = mt ? 'N' : 'T';
        int ic = (int)cols, ir = (int)rows, inc = 1;
        T one = 1, beta = add ? 1 : 0;
        if (!add) memset(C, 0, (size_t)(m * n) * sizeof(T)); /* never a NaN of old contents */
        if (sizeof(T) == 8)
          la->dgemv(&trans, &ic, &ir, (double *)&one, (double *)M, &ic, (double *)x, &inc,
                    (double *)&beta, (double *)C, &inc);
        else
          la->sgemv(&trans, &ic, &ir, (float *)&one, (float *)M, &ic, (float *)x, &inc,
                    (float *)&beta, (float *)C, &inc);
      } else {
        /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
        char transa = tb ? 'T' : 'N', transb = ta ? 'T' : 'N';
        int im = (int)n, in = (int)m, ik = (int)k;
        int lda = (int)(tb ? k : n), ldb = (int)(ta ? m : k), ldc = (int)n;
        T one = 1, beta = add ? 1 : 0;
        if (sizeof(T) == 8)
          la->dgemm(&transa, &transb, &im, &in, &ik, (double *)&one, (double *)B, &lda,
                    (double *)A, &ldb, (double *)&beta, (double *)C, &ldc);
        else
          la->sgemm(&transa, &transb, &im, &in, &ik, (float *)&one, (float *)B, &lda,
                    (float *)A, &ldb, (float *)&beta, (float *)C, &ldc);
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

/* The Cholesky factor L (a = L L^T) of each matrix, reading a's lower
 * triangle and returning L with its strict upper triangle zero, as
 * numpy.linalg.cholesky does.  Row-major a is column-major a^T, whose upper
 * triangle is a's lower one: potrf('U') on it gives U with U^T U = a, and U
 * read row-major is L.  A matrix that is not positive definite stops the run
 * with FASTAD_VM_NOT_POSITIVE_DEFINITE (numpy raises LinAlgError there). */
KERNEL int cholesky_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                      const int64_t *d) {
  const int64_t batch = d[0], n = d[1];
  if (n == 0) return FASTAD_VM_OK;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      T *L = (T *)arena + o + q * n * n;
      const T *A = (const T *)arena + a + q * n * n;
      /* the lower triangle is all potrf reads; the upper one is zeroed here */
      for (int64_t i = 0; i < n; i++) {
        memcpy(L + i * n, A + i * n, (size_t)(i + 1) * sizeof(T));
        memset(L + i * n + i + 1, 0, (size_t)(n - 1 - i) * sizeof(T));
      }
      char uplo = 'U';
      int in = (int)n, info = 0;
      if (sizeof(T) == 8)
        la->dpotrf(&uplo, &in, (double *)L, &in, &info);
      else
        la->spotrf(&uplo, &in, (float *)L, &in, &info);
      if (info != 0) return FASTAD_VM_NOT_POSITIVE_DEFINITE;
    }
  });
  return FASTAD_VM_OK;
}

/* x = op(T)^-1 b for T the lower (or upper) triangle of each a, op(T) = T or
 * T^T: a triangular solve (trsm), never a factorisation.  Row-major x (n, k)
 * is column-major x^T (k, n) = b^T op(T)^-T, and row-major T is column-major
 * T^T, a triangle of the other kind: x^T = b^T (T^T)^-1 is trsm from the
 * right with that triangle as it is, and op(T) = T^T transposes it.  A zero on the diagonal stops the run
 * with FASTAD_VM_SINGULAR (a singular triangle; numpy's solve raises
 * LinAlgError). */
KERNEL int trsolve_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                     int64_t b, const int64_t *d) {
  const int64_t batch = d[0], n = d[1], k = d[2], lower = d[3], trans = d[4];
  if (n == 0 || k == 0) return FASTAD_VM_OK;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      T *A = (T *)arena + a + q * n * n;
      T *X = (T *)arena + o + q * n * k;
      for (int64_t i = 0; i < n; i++)
        if (A[i * n + i] == 0) return FASTAD_VM_SINGULAR;
      memcpy(X, (const T *)arena + b + q * n * k, (size_t)(n * k) * sizeof(T));
      char side = 'R', uplo = lower ? 'U' : 'L', transa = trans ? 'T' : 'N', diag = 'N';
      int in = (int)n, ik = (int)k;
      T one = 1;
      if (sizeof(T) == 8)
        la->dtrsm(&side, &uplo, &transa, &diag, &ik, &in, (double *)&one, (double *)A, &in,
                  (double *)X, &ik);
      else
        la->strsm(&side, &uplo, &transa, &diag, &ik, &in, (float *)&one, (float *)A, &in,
                  (float *)X, &ik);
    }
  });
  return FASTAD_VM_OK;
}

/* The eigenvalues (ascending) and eigenvectors of each symmetric matrix,
 * reading its lower (or upper) triangle, as numpy.linalg.eigh: LAPACK dsyevd
 * on a column-major float64 copy of a (the triangle NumPy's call reads; NumPy
 * computes float32 in double too and rounds, so both dtypes get its results),
 * packed as [w; V] (row 0 the eigenvalues, then V with the eigenvectors as
 * columns).  Workspace w (doubles): the copy (n*n), the eigenvalues (n),
 * syevd's work (1 + 6n + 2n*n); p: its iwork (3 + 5n).  No convergence stops
 * the run with FASTAD_VM_SINGULAR (numpy raises LinAlgError). */
KERNEL int eigh_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                  const int64_t *d, int64_t w, int64_t p) {
  const int64_t batch = d[0], n = d[1], lower = d[2];
  if (n == 0) return FASTAD_VM_OK;
  int *iwork = (int *)arena + p;
  double *z = (double *)arena + w, *ev = z + n * n, *work = ev + n;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      const T *A = (const T *)arena + a + q * n * n;
      T *O = (T *)arena + o + q * (n + 1) * n;
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) z[j * n + i] = (double)A[i * n + j];
      char jobz = 'V', uplo = lower ? 'L' : 'U';
      int in = (int)n, lwork = (int)(1 + 6 * n + 2 * n * n), liwork = (int)(3 + 5 * n), info = 0;
      la->dsyevd(&jobz, &uplo, &in, z, &in, ev, work, &lwork, iwork, &liwork, &info);
      if (info != 0) return FASTAD_VM_SINGULAR;
      for (int64_t j = 0; j < n; j++) O[j] = (T)ev[j];
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) O[(i + 1) * n + j] = (T)z[j * n + i];
    }
  });
  return FASTAD_VM_OK;
}

/* gesdd (jobz 'S') of one row-major (m, n) matrix A of type T, copied
 * column-major into the double workspace z; s, u (m, k) and vt (k, n) follow
 * z in the workspace (svd_b's layout), then work. */
#define GESDD_ONE(A)                                                                  \
  do {                                                                                \
    for (int64_t i = 0; i < m; i++)                                                   \
      for (int64_t j = 0; j < n; j++) z[j * m + i] = (double)(A)[i * n + j];          \
    char jobz = 'S';                                                                  \
    int im = (int)m, in = (int)n, ik = (int)k, lw = (int)lwork, info = 0;             \
    la->dgesdd(&jobz, &im, &in, z, &im, s, u, &im, vt, &ik, work, &lw, iwork, &info); \
    if (info != 0) return FASTAD_VM_SINGULAR;                                         \
  } while (0)

/* The reduced singular value decomposition of each (m, n) matrix, as
 * numpy.linalg.svd(a, full_matrices=False) computes it: LAPACK dgesdd
 * (jobz 'S') on a column-major float64 copy of a (NumPy computes float32 in
 * double too, so both dtypes get its singular vectors, signs included), with
 * the planned lwork.  Packed [s; U; V] (k = min(m, n)): row 0 the singular
 * values, then U (m, k), then V = VT^T (n, k).  Workspace w (doubles): the copy
 * (m*n), s (k), U (m*k), VT (k*n), then gesdd's work (lwork); p: its iwork
 * (8k).  No convergence stops the run with FASTAD_VM_SINGULAR. */
KERNEL int svd_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                 const int64_t *d, int64_t w, int64_t p) {
  const int64_t batch = d[0], m = d[1], n = d[2], lwork = d[3];
  const int64_t k = m < n ? m : n;
  if (k == 0) return FASTAD_VM_OK;
  double *z = (double *)arena + w, *s = z + m * n, *u = s + k, *vt = u + m * k, *work = vt + k * n;
  int *iwork = (int *)arena + p;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      const T *A = (const T *)arena + a + q * m * n;
      T *O = (T *)arena + o + q * (1 + m + n) * k;
      GESDD_ONE(A);
      for (int64_t j = 0; j < k; j++) O[j] = (T)s[j];
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) O[k + i * k + j] = (T)u[j * m + i];
      /* V[c, j] = VT[j, c], stored column-major at c*k + j: V row-major */
      for (int64_t e = 0; e < n * k; e++) O[(1 + m) * k + e] = (T)vt[e];
    }
  });
  return FASTAD_VM_OK;
}

/* The pseudo-inverse (n, m) of each (m, n) matrix, as numpy.linalg.pinv
 * computes it: the reduced SVD as svd_b (gesdd in double, the factors rounded
 * to T), singular values at most 1e-15 times the largest (compared in
 * double) dropped, the others inverted in T, then V (diag(1/s) U^T) with
 * gemm in T.  Workspace w (doubles): svd_b's, then room for T arrays 1/s
 * (k), diag(1/s) U^T (k, m) and V (n, k). */
KERNEL int pinv_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                  const int64_t *d, int64_t w, int64_t p) {
  const int64_t batch = d[0], m = d[1], n = d[2], lwork = d[3];
  const int64_t k = m < n ? m : n;
  if (k == 0) return FASTAD_VM_OK; /* the result is empty */
  double *z = (double *)arena + w, *s = z + m * n, *u = s + k, *vt = u + m * k, *work = vt + k * n;
  int *iwork = (int *)arena + p;
  FLOAT_TYPED(t, {
    T *sinv = (T *)(work + lwork), *wt = sinv + k, *v = wt + k * m;
    for (int64_t q = 0; q < batch; q++) {
      const T *A = (const T *)arena + a + q * m * n;
      T *O = (T *)arena + o + q * n * m;
      GESDD_ONE(A);
      T top = (T)s[0];
      for (int64_t j = 1; j < k; j++)
        if ((T)s[j] > top) top = (T)s[j];
      const double cutoff = 1e-15 * (double)top;
      for (int64_t j = 0; j < k; j++) {
        const T sj = (T)s[j];
        sinv[j] = (double)sj > cutoff ? (T)1 / sj : (T)0;
      }
      for (int64_t j = 0; j < k; j++)
        for (int64_t i = 0; i < m; i++) wt[j * m + i] = sinv[j] * (T)u[j * m + i];
      for (int64_t e = 0; e < n * k; e++) v[e] = (T)vt[e];
      /* row-major O (n, m) = V (n, k) @ Wt (k, m): column-major O^T = Wt^T V^T */
      char no = 'N';
      int im = (int)m, in = (int)n, ik = (int)k;
      if (sizeof(T) == 8) {
        double one = 1.0, zero = 0.0;
        la->dgemm(&no, &no, &im, &in, &ik, &one, (double *)wt, &im, (double *)v, &ik, &zero,
                  (double *)O, &im);
      } else {
        float one = 1.0f, zero = 0.0f;
        la->sgemm(&no, &no, &im, &in, &ik, &one, (float *)wt, &im, (float *)v, &ik, &zero,
                  (float *)O, &im);
      }
    }
  });
  return FASTAD_VM_OK;
}

/* The reduced QR decomposition of each (m, n) matrix, m >= n, as
 * numpy.linalg.qr(a) computes it: LAPACK dgeqrf, then dorgqr for Q, on a
 * column-major float64 copy of a (NumPy computes float32 in double), with
 * the planned lwork.  Packed [Q; R]: Q (m, n), then R (n, n).  Workspace w
 * (doubles): the copy (m*n, Q in place after dorgqr), tau (n), then the
 * work (lwork). */
KERNEL int qr_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a,
                 const int64_t *d, int64_t w) {
  const int64_t batch = d[0], m = d[1], n = d[2], lwork = d[3];
  if (n == 0) return FASTAD_VM_OK;
  double *z = (double *)arena + w, *tau = z + m * n, *work = tau + n;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      const T *A = (const T *)arena + a + q * m * n;
      T *Q = (T *)arena + o + q * (m + n) * n, *R = Q + m * n;
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) z[j * m + i] = (double)A[i * n + j];
      int im = (int)m, in = (int)n, lw = (int)lwork, info = 0;
      la->dgeqrf(&im, &in, z, &im, tau, work, &lw, &info);
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) R[i * n + j] = j >= i ? (T)z[j * m + i] : (T)0;
      la->dorgqr(&im, &in, &in, z, &im, tau, work, &lw, &info);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) Q[i * n + j] = (T)z[j * m + i];
    }
  });
  return FASTAD_VM_OK;
}

/* o = op(T) b for T the lower (or upper) triangle of each (n, n) a, op(T) T
 * (trans 0) or T^T (trans 1), b and o (n, k): BLAS trmm in place on o, a copy
 * of b.  As for trsolve_b, the row-major o is the column-major o^T = b^T op(T)^T,
 * so trmm multiplies from the right by a's buffer (column-major a^T), whose
 * triangle of the other kind is T^T.  Half a gemm's work. */
KERNEL int trmm_b(int t, const fastad_linalg *la, char *arena, int64_t o, int64_t a, int64_t b,
                   const int64_t *d) {
  const int64_t batch = d[0], n = d[1], k = d[2], lower = d[3], trans = d[4];
  if (n == 0 || k == 0) return FASTAD_VM_OK;
  FLOAT_TYPED(t, {
    for (int64_t q = 0; q < batch; q++) {
      T *A = (T *)arena + a + q * n * n;
      T *X = (T *)arena + o + q * n * k;
      memcpy(X, (const T *)arena + b + q * n * k, (size_t)(n * k) * sizeof(T));
      char side = 'R', uplo = lower ? 'U' : 'L', transa = trans ? 'T' : 'N', diag = 'N';
      int in = (int)n, ik = (int)k;
      T one = 1;
      if (sizeof(T) == 8)
        la->dtrmm(&side, &uplo, &transa, &diag, &ik, &in, (double *)&one, (double *)A, &in,
                  (double *)X, &ik);
      else
        la->strmm(&side, &uplo, &transa, &diag, &ik, &in, (float *)&one, (float *)A, &in,
                  (float *)X, &ik);
    }
  });
  return FASTAD_VM_OK;
}
