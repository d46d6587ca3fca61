/*
 * fused.c -- the FUSED instruction: a micro-program (opcodes.h) run block by
 * block over its elements, large ones split over the thread pool (pool.h);
 * and fastad_copy, the arena copies split the same way.
 */
#include "fused.h"
#include "pairwise.h"
#include "pool.h"

#if !defined(_WIN32) && !defined(FASTAD_NO_THREADS)
#include <pthread.h>
#endif

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
 * instructions are cut into one contiguous chunk per thread.  FUSED_BLOCK: fused.h.
 *
 * An instruction with sums (SUM, COUNT) sums as NumPy does (pairwise.h): its
 * blocks are whole leaves of the pairwise tree of its n elements (as many as
 * fit in FUSED_BLOCK), each leaf summed in a register with NumPy's eight
 * partial sums, the leaves' sums added on a small stack as the tree adds
 * them; its thread chunks are subtrees, added after the join as the tree
 * adds them.  So a fused sum has the bits of np.sum of the same values,
 * whatever the thread count. */
#if FUSED_BLOCK < PAIRWISE_BLOCK
#error "a FUSED block holds at least one leaf of the pairwise tree"
#endif
/* Measured on the 2-core development machine (docs/design.md); a build may
 * set another with -DFASTAD_FUSED_PARALLEL_MIN=... */
#ifndef FASTAD_FUSED_PARALLEL_MIN
#define FASTAD_FUSED_PARALLEL_MIN ((int64_t)1 << 15)
#endif
const int64_t fastad_fused_parallel_min = FASTAD_FUSED_PARALLEL_MIN;
/* Registers are FUSED_BLOCK + FASTAD_FUSED_REG_PAD (8) elements apart: at
 * exactly 4 KiB apart a step's loads share their low 12 address bits with its
 * stores, and the CPU's store-forwarding check stalls them (in-cache W2 steps
 * ran 16% slower). */
#define FUSED_REG_STRIDE (FUSED_BLOCK + FASTAD_FUSED_REG_PAD)

/* The words of a FUSED descriptor (opcodes.h): header, per slot, per step. */
enum { FUSED_HEAD = FASTAD_DESC_HEAD_FUSED, SLOT_WORDS = FASTAD_FUSED_SLOT_WORDS,
       STEP_WORDS = FASTAD_FUSED_STEP_WORDS };

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
  int64_t n;
  int64_t bounds[FASTAD_POOL_MAX_THREADS + 1]; /* chunk c: bounds[c] .. bounds[c + 1] - 1 */
  int tree;        /* has sums: blocks are leaves of the pairwise tree (above) */
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

/* Runs chunk c of a job: blocks [bounds[c], bounds[c + 1]),
 * fewer if a poll stops the job (what it computed so far is then combined as
 * usual, to values nobody reads). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTAD_SANITIZE_BUILD)
__attribute__((target_clones("avx2", "default")))
#endif
static void fused_chunk(void *arg, int chunk) {
  fused_job *job = (fused_job *)arg;
  const int64_t *d = job->d;
  const int nregs = (int)d[0], nslots = (int)d[1], nsteps = (int)d[2];
  const int64_t *slots = d + FUSED_HEAD, *steps = d + FUSED_HEAD + SLOT_WORDS * nslots;
  const int64_t lo = job->bounds[chunk], hi = job->bounds[chunk + 1];
  VM_ASSERT_INDEX(hi - 1, job->n);
  FLOAT_TYPED(job->t, {
    _Alignas(64) T regs[FASTAD_FUSED_MAX_REGS][FUSED_REG_STRIDE];
    T *ptr[FASTAD_FUSED_MAX_REGS + FASTAD_FUSED_MAX_SLOTS];
    char scalar[FASTAD_FUSED_MAX_REGS + FASTAD_FUSED_MAX_SLOTS];
    /* per SUM or COUNT step, the sums of the chunk's finished subtrees */
    T vals[FASTAD_FUSED_MAX_SUMS][PAIRWISE_DEPTH];
    int nvals[FASTAD_FUSED_MAX_SUMS];
    /* the leaves of the current block and the next one, with their additions */
    int64_t leaf_len[FUSED_BLOCK / 8 + 1];
    int leaf_done[FUSED_BLOCK / 8 + 1];
    int nleaves = 0, next_done = 0;
    pairwise_walk walk;
    pairwise_walk_init(&walk, lo, hi - lo);
    int64_t next_len = job->tree ? pairwise_next(&walk, &next_done) : 0;
    /* SHIFT f > 0: contributions waiting for the next block, to elements
     * pend_at .. pend_at + f - 1 */
    T pend[FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
    unsigned char pend_set[FASTAD_FUSED_MAX_SHIFTS][FASTAD_FUSED_MAX_SHIFT];
    int64_t pend_at = lo;
    /* Only the shifts' rows and the sums the steps use are cleared: a loop
     * body runs a FUSED of a few elements per step, where clearing the whole
     * tables (a `rep stos` for the 16 sums) took a fifth of the call. */
    int shifts = 0, nsums = 0;
    for (int k = 0; k < nsteps; k++) {
      const int64_t kind = steps[STEP_WORDS * k];
      shifts += kind == FUSED_SHIFT && shifts < FASTAD_FUSED_MAX_SHIFTS;
      nsums += (kind == FUSED_SUM || kind == FUSED_COUNT || kind == FUSED_NCOUNT) &&
               nsums < FASTAD_FUSED_MAX_SUMS;
    }
    memset(pend_set, 0, (size_t)shifts * sizeof pend_set[0]);
    memset(job->edge_set[chunk], 0, (size_t)shifts * sizeof job->edge_set[chunk][0]);
    for (int r = 0; r < nregs; r++) {
      ptr[r] = regs[r];
      scalar[r] = 0;
    }
    for (int s = 0; s < nslots; s++) scalar[nregs + s] = slots[SLOT_WORDS * s] == FUSED_SCALAR;
    for (int k = 0; k < nsums; k++) nvals[k] = 0;
    int64_t blocks = 0, len;
    for (int64_t i0 = lo; i0 < hi; i0 += len) {
      if (job->ps != NULL && ++blocks % POLL_BLOCKS == 0 && fused_stop(job)) break;
      len = hi - i0 < FUSED_BLOCK ? hi - i0 : FUSED_BLOCK;
      if (job->tree) { /* the whole leaves that fit */
        len = 0;
        nleaves = 0;
        while (next_len > 0 && len + next_len <= FUSED_BLOCK) {
          leaf_len[nleaves] = next_len;
          leaf_done[nleaves++] = next_done;
          len += next_len;
          next_len = pairwise_next(&walk, &next_done);
        }
      }
      for (int s = 0; s < nslots; s++) {
        const int64_t kind = slots[SLOT_WORDS * s], off = slots[SLOT_WORDS * s + 1];
        ptr[nregs + s] = (T *)job->arena + off + (kind == FUSED_IN || kind == FUSED_OUT ? i0 : 0);
      }
      int nsum = 0, nshift = 0;
      for (int k = 0; k < nsteps; k++) {
        const int64_t *st = steps + STEP_WORDS * k;
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
          if (!unary_loop_run((int)st[1], job->t, pa, po, n)) {
            switch (st[1]) { FASTAD_UNARY_FNS(UNARY_V_CASE) }
          }
        } else if (st[0] == FUSED_BINARY) {
          const int kind = scalar[st[4]] ? 1 : scalar[st[3]] ? 2 : 0;
          if (!binary_loop_run((int)st[1], job->t, kind, pa, pb, po, n)) {
            switch (st[1]) { FASTAD_BINARY_FNS(BINARY_V_CASE) }
          }
        } else if (st[0] == FUSED_COUNT || st[0] == FUSED_NCOUNT) {
          /* per leaf: NumPy's sum of its 0s and 1s is the count, exact */
          const int kind = scalar[st[4]] ? 1 : scalar[st[3]] ? 2 : 0;
          T *v = vals[nsum];
          int nv = nvals[nsum];
          for (int l = 0, at = 0; l < nleaves; at += (int)leaf_len[l++]) {
            const T *pa = ptr[st[3]] + (kind == 2 ? 0 : at);
            const T *pb = ptr[st[4]] + (kind == 1 ? 0 : at);
            const int64_t n = leaf_len[l];
            int64_t count = 0;
            switch (st[1]) { FASTAD_COMPARE_FNS(COUNT_CASE) }
            /* where it fails: the rest, NaN included */
            PAIRWISE_PUSH(v, nv, (T)(st[0] == FUSED_COUNT ? count : n - count), leaf_done[l]);
          }
          nvals[nsum++] = nv;
        } else { /* SUM: NumPy's leaf sums, added as its tree adds them */
          T *v = vals[nsum];
          int nv = nvals[nsum];
          for (int l = 0, at = 0; l < nleaves; at += (int)leaf_len[l++])
            PAIRWISE_PUSH(v, nv, PAIRWISE_LEAF(pa + at, leaf_len[l]), leaf_done[l]);
          nvals[nsum++] = nv;
        }
      }
      pend_at = i0 + len;
    }
    /* the chunk's sum (a partial one if a poll stopped it: nobody reads it) */
    for (int k = 0; k < nsums; k++) job->sums[chunk][k] = nvals[k] ? (double)vals[k][0] : 0.0;
    /* SHIFT f > 0: what is still pending lands past the chunk's end: in the
     * next chunk (added after the join) or past element n - 1 (added now) */
    int nshift = 0;
    for (int k = 0; k < nsteps; k++) {
      const int64_t *st = steps + STEP_WORDS * k;
      if (st[0] != FUSED_SHIFT) continue;
      if (st[1] > 0) {
        T *x = (T *)job->arena + slots[SLOT_WORDS * (st[2] - nregs) + 1];
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

/* The chunks of a job with sums: subtrees of the pairwise tree of its n
 * elements, in order, the largest split until there are `want` (or none is
 * longer than a leaf). */
static int tree_chunks(int64_t *bounds, int64_t n, int want) {
  int64_t size[FASTAD_POOL_MAX_THREADS];
  int count = 1;
  bounds[0] = 0;
  size[0] = n;
  while (count < want) {
    int big = 0;
    for (int c = 1; c < count; c++) big = size[c] > size[big] ? c : big;
    if (size[big] <= PAIRWISE_BLOCK) break;
    for (int c = count; c > big + 1; c--) {
      bounds[c] = bounds[c - 1];
      size[c] = size[c - 1];
    }
    const int64_t half = pairwise_half(size[big]);
    bounds[big + 1] = bounds[big] + half;
    size[big + 1] = size[big] - half;
    size[big] = half;
    count++;
  }
  bounds[count] = n;
  return count;
}

/* The sum of the subtree (start, size) of accumulator k from its chunks'
 * sums, as the tree adds them; *c: the next chunk. */
#define DEFINE_TREE_TOTAL(fname, T)                                                        \
  static T fname(const fused_job *job, int k, int64_t start, int64_t size, int *c) {      \
    if (job->bounds[*c] == start && job->bounds[*c + 1] == start + size)                  \
      return (T)job->sums[(*c)++][k];                                                       \
    const int64_t half = pairwise_half(size);                                              \
    const T left = fname(job, k, start, half, c);                                           \
    return left + fname(job, k, start + half, size - half, c);                              \
  }
DEFINE_TREE_TOTAL(tree_total_d, double)
DEFINE_TREE_TOTAL(tree_total_f, float)

void fused(int t, char *arena, const int64_t *d, int64_t n, poll_state *ps) {
  fused_job job;
  job.t = t;
  job.arena = arena;
  job.d = d;
  job.n = n;
  job.ps = ps;
  job.abort = 0;
  if (ps != NULL) job.caller = THIS_THREAD();
  const int nslots = (int)d[1], nsteps = (int)d[2];
  const int64_t *slots = d + FUSED_HEAD, *steps = d + FUSED_HEAD + SLOT_WORDS * nslots;
  job.tree = 0;
  for (int k = 0; k < nsteps; k++) {
    const int64_t kind = steps[STEP_WORDS * k];
    job.tree |= kind == FUSED_SUM || kind == FUSED_COUNT || kind == FUSED_NCOUNT;
  }
  int nchunks = 1;
  if (n >= fastad_fused_parallel_min) nchunks = fastad_pool_threads();
  if (n <= 0) { /* nothing to run: every sum is 0 */
    nchunks = 0;
    job.bounds[0] = 0;
  } else if (job.tree) {
    nchunks = tree_chunks(job.bounds, n, nchunks);
  } else {
    int64_t per = (n + nchunks - 1) / nchunks;
    int64_t chunk_len = (per + FUSED_BLOCK - 1) / FUSED_BLOCK * FUSED_BLOCK;
    if (chunk_len == 0) chunk_len = FUSED_BLOCK;
    nchunks = (int)((n + chunk_len - 1) / chunk_len);
    for (int c = 0; c < nchunks; c++) job.bounds[c] = c * chunk_len;
    job.bounds[nchunks] = n;
  }
  fastad_pool_run(fused_chunk, &job, nchunks);
  /* Each accumulator: its chunks' sums, added as the tree adds them; each
   * SHIFT: the contributions that crossed a chunk boundary. */
  int nsum = 0, nshift = 0;
  for (int k = 0; k < nsteps; k++) {
    const int64_t *st = steps + STEP_WORDS * k;
    if (st[0] == FUSED_SHIFT) {
      const int64_t f = st[1], off = slots[SLOT_WORDS * (st[2] - d[0]) + 1];
      for (int c = 0; c < nchunks; c++) {
        const int64_t at = f > 0 ? job.bounds[c + 1] : job.bounds[c] + f;
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
    const int64_t off = slots[SLOT_WORDS * (st[2] - d[0]) + 1];
    int c = 0; /* 0 + the sum, as the unfused reduction starts from 0 */
    if (t == DT_F64)
      ((double *)arena)[off] = n > 0 ? 0.0 + tree_total_d(&job, nsum, 0, n, &c) : 0.0;
    else
      ((float *)arena)[off] = n > 0 ? 0.0f + tree_total_f(&job, nsum, 0, n, &c) : 0.0f;
    nsum++;
  }
}
