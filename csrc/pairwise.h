/*
 * pairwise.h -- NumPy's pairwise float summation, shared by the reductions
 * (kernels.c) and the FUSED instruction's sums (fused.c).
 *
 * NumPy sums a contiguous run of n elements (its `pairwise_sum` loop) as a
 * tree: a run of at most PAIRWISE_BLOCK elements is a leaf (below 8 one
 * running sum, else eight partial sums combined ((r0+r1)+(r2+r3)) +
 * ((r4+r5)+(r6+r7)), then the tail), a longer one the sum of its two halves,
 * the first a multiple of 8 long.  A sum computed in the same tree, in the
 * same type, has NumPy's bits; its error grows with log n, a running sum's
 * with n.  A fused loop computes its values block by block and never holds
 * the whole run: `pairwise_walk` yields the tree's leaves in order, each
 * with the number of additions of finished subtrees that follow it, so the
 * caller sums leaf after leaf on a small stack of subtree sums.
 */
#ifndef FASTAD_PAIRWISE_H
#define FASTAD_PAIRWISE_H

#include <stdint.h>

#define PAIRWISE_BLOCK 128
#define PAIRWISE_DEPTH 64 /* each level at least halves n < 2^63 */

#define DEFINE_LEAF_SUM(fname, T)                                              \
  static inline T fname(const T *a, int64_t n) {                               \
    if (n < 8) {                                                               \
      T res = -0.0;                                                            \
      for (int64_t i = 0; i < n; i++) res += a[i];                             \
      return res;                                                              \
    }                                                                          \
    T r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3];                              \
    T r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7];                              \
    int64_t i = 8;                                                             \
    for (; i < n - (n % 8); i += 8) {                                          \
      r0 += a[i];                                                              \
      r1 += a[i + 1];                                                          \
      r2 += a[i + 2];                                                          \
      r3 += a[i + 3];                                                          \
      r4 += a[i + 4];                                                          \
      r5 += a[i + 5];                                                          \
      r6 += a[i + 6];                                                          \
      r7 += a[i + 7];                                                          \
    }                                                                          \
    T res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));                 \
    for (; i < n; i++) res += a[i];                                            \
    return res;                                                                \
  }
DEFINE_LEAF_SUM(pairwise_leaf_d, double)
DEFINE_LEAF_SUM(pairwise_leaf_f, float)
#define PAIRWISE_LEAF(a, n)                                                    \
  _Generic((a), float *: pairwise_leaf_f, const float *: pairwise_leaf_f,      \
           default: pairwise_leaf_d)(a, n)

/* The length of the first half of a run of m > PAIRWISE_BLOCK elements. */
static inline int64_t pairwise_half(int64_t m) {
  const int64_t h = m / 2;
  return h - h % 8;
}

/* The leaves of the tree of one run, in order: a stack of the subtrees still
 * to visit (each with the additions that follow its sum: a right half
 * completes its parent, one more than the parent's own). */
typedef struct {
  int top;
  int64_t start[PAIRWISE_DEPTH], size[PAIRWISE_DEPTH];
  int done[PAIRWISE_DEPTH];
} pairwise_walk;

static inline void pairwise_walk_init(pairwise_walk *w, int64_t start, int64_t n) {
  w->top = 0;
  w->start[0] = start;
  w->size[0] = n;
  w->done[0] = 0;
}

/* The next leaf: its length and the additions after it; 0 when none is left. */
static inline int64_t pairwise_next(pairwise_walk *w, int *done) {
  if (w->top < 0) return 0;
  const int t = w->top;
  int64_t start = w->start[t], size = w->size[t];
  int d = w->done[t];
  w->top--;
  while (size > PAIRWISE_BLOCK) {
    const int64_t half = pairwise_half(size);
    w->top++; /* the right half, visited after the left */
    w->start[w->top] = start + half;
    w->size[w->top] = size - half;
    w->done[w->top] = d + 1;
    size = half;
    d = 0;
  }
  *done = d;
  return size;
}

/* Pushes a leaf's sum on the stack of subtree sums and makes the additions
 * that follow it (left + right, as NumPy adds its halves). */
#define PAIRWISE_PUSH(vals, nv, value, done)                                   \
  do {                                                                         \
    (vals)[(nv)++] = (value);                                                  \
    for (int q_ = 0; q_ < (done); q_++) {                                      \
      (vals)[(nv) - 2] = (vals)[(nv) - 2] + (vals)[(nv) - 1];                  \
      (nv)--;                                                                  \
    }                                                                          \
  } while (0)

#endif
