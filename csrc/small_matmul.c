/*
 * small_matmul.c -- products too small for a BLAS call (matmul_b in
 * kernels.c calls it below SMALL_MATMUL / SMALL_MATVEC multiply-adds): a loop
 * body's matrix-vector products, outer products and small matrices.
 */
#include "kernels.h"

/* C = op(A) op(B), or C += op(A) op(B) with add, for small sizes, as loops the compiler can keep in
 * registers and vectorize.  Each element of C is the sum of its products in
 * the order q = 0..k-1 from 0, a plain dot product's (so results are those of
 * the one-loop-per-element code this replaced below 512 multiply-adds, bit for
 * bit, and of the Numba backend's helper), but a strip of
 * SMALL_STRIP elements of a row (or of a column) of C is summed side by side:
 * independent additions in registers, which the compiler can vectorize without
 * reordering any one sum, where one dot product at a time waits on each
 * addition.  Strips run along the longer side of C when a side is shorter
 * than a strip; else along rows when B's rows are contiguous (tb = 0) or A's
 * columns are not (ta = 0), so that the strip's loads are contiguous where
 * one layout makes them so.  Each case is its own loop, so no transpose flag or
 * stride is tested per multiply-add. */
#define SMALL_STRIP 8
/* C's elements at 0 <= e < len along a strip: dest(e) = sum_q prod(e, q), in
 * strips of SMALL_STRIP, then 4, 2 and 1, each of a width known when compiled
 * so that its sums stay in registers. */
#define STRIP_WIDTH(T, W, e0, prod, dest, store)                                     \
  do {                                                                               \
    T acc[W] = {0};                                                                  \
    for (int64_t q = 0; q < k; q++)                                                  \
      for (int64_t e = (e0); e < (e0) + (W); e++) acc[e - (e0)] += (prod);           \
    for (int64_t e = (e0); e < (e0) + (W); e++) dest store acc[e - (e0)];            \
  } while (0)
#define STRIP_SUM_STORE(T, len, prod, dest, store)                                   \
  do {                                                                               \
    int64_t e0 = 0;                                                                  \
    for (; e0 + SMALL_STRIP <= (len); e0 += SMALL_STRIP)                             \
      STRIP_WIDTH(T, SMALL_STRIP, e0, prod, dest, store);                            \
    if ((len) - e0 >= 4) { STRIP_WIDTH(T, 4, e0, prod, dest, store); e0 += 4; }      \
    if ((len) - e0 >= 2) { STRIP_WIDTH(T, 2, e0, prod, dest, store); e0 += 2; }      \
    if ((len) - e0 >= 1) STRIP_WIDTH(T, 1, e0, prod, dest, store);                   \
  } while (0)
/* dest = the sum, or dest += it (an accumulating product: the sum from 0 added
 * to dest, the bits of a product then an addition) */
#define STRIP_SUM(T, len, prod, dest)                                                \
  do {                                                                               \
    if (add) STRIP_SUM_STORE(T, len, prod, dest, +=);                                \
    else STRIP_SUM_STORE(T, len, prod, dest, =);                                     \
  } while (0)

/* Where GCC can (x86-64, not the sanitizer build) the loops are also compiled
 * for AVX2, chosen at load for a CPU that has it: twice the vector width.  The
 * results are the same bits (-ffp-contract=off: no fused multiply-add). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTAD_SANITIZE_BUILD)
__attribute__((target_clones("avx2", "default")))
#endif
FASTAD_INTERNAL void small_matmul(int t, void *out, const void *a, const void *b, int64_t m, int64_t k,
                         int64_t n, int64_t ta, int64_t tb, int add) {
  FLOAT_TYPED(t, {
    T *C = (T *)out;
    const T *A = (const T *)a, *B = (const T *)b;
    const int rows = n == 1 ? 0 : m == 1 ? 1
                     : n >= SMALL_STRIP && m >= SMALL_STRIP ? !tb || !ta : n >= m;
    if (k == 1) { /* an outer product; 0 + x keeps the sums' signed zeros */
      if (add) /* a rank-1 update: G += a b^T in one pass */
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) C[i * n + j] += (T)0 + A[i] * B[j];
      else
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) C[i * n + j] = (T)0 + A[i] * B[j];
    } else if (rows) { /* C[i, e] = sum_q A(i, q) B(q, e) */
      const int64_t saq = ta ? m : 1;
      for (int64_t i = 0; i < m; i++) {
        const T *Ai = A + (ta ? i : i * k);
        if (tb)
          STRIP_SUM(T, n, Ai[q * saq] * B[e * k + q], C[i * n + e]);
        else
          STRIP_SUM(T, n, Ai[q * saq] * B[q * n + e], C[i * n + e]);
      }
    } else { /* C[e, j] = sum_q A(e, q) B(q, j) */
      const int64_t sbq = tb ? 1 : n;
      for (int64_t j = 0; j < n; j++) {
        const T *Bj = B + (tb ? j * k : j);
        if (ta)
          STRIP_SUM(T, m, A[q * m + e] * Bj[q * sbq], C[e * n + j]);
        else
          STRIP_SUM(T, m, A[e * k + q] * Bj[q * sbq], C[e * n + j]);
      }
    }
  });
}

