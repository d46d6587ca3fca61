/*
 * loop.c -- the LOOP instruction: a recurrence of T steps run in the VM.
 *
 * The body is a program of its own (the code words after the instruction)
 * over the same arena.  Each step copies row t of every stacked input into
 * the body's input slot, runs the body (vm_run_state, so a LOOP in a body
 * nests), copies each per-step output slot into row t of its stacked array,
 * and moves the new carry into the carry's input slots: straight, in order,
 * when no output is another carry's input slot written before it is read,
 * else through a scratch region (a swap).  Row t
 * of a stacked array is at its offset plus t times its row stride, which may
 * be negative (a reversed array read in place).  The copies are memmove (or
 * one 8-byte word): a hostile program may make any two regions overlap,
 * which gives garbage but never undefined behaviour.  The validator has
 * checked every region against the arena (validate.c).  A body of scalar
 * float64 code may have its step compiled to native code (jit.c), which
 * makes the same copies and computes the same values.
 */
#include "loop.h"
#include "jit.h"

#include <string.h>

enum { HEAD = FASTAD_DESC_HEAD_LOOP, ENTRY = FASTAD_LOOP_ENTRY_WORDS };

/* Most carries and rows of a recurrence are one float64: copied inline. */
static inline void copy_bytes(char *dst, const char *src, int64_t n) {
  if (n == 8) {
    uint64_t word;
    memcpy(&word, src, 8);
    memcpy(dst, &word, 8);
  } else {
    memmove(dst, src, (size_t)n);
  }
}

/* Steps between polls for an interrupt: a body of scalar instructions polls
 * nowhere else (vm.c polls on array instructions only). */
#define POLL_STEPS 64

fastad_program loop_body(const fastad_program *p, const int32_t *pc) {
  fastad_program body = *p;
  body.code = pc + 1 + FASTAD_NARGS_LOOP;
  body.code_len = pc[2];
  body.bound = NULL;
  body.num_bound = 0;
  body.bound_bytes = 0;
  return body;
}

/* Whether regions [a, a + n) and [b, b + m) of the arena share a byte. */
static inline int overlap(int64_t a, int64_t n, int64_t b, int64_t m) {
  return a < b + m && b < a + n;
}

/* Whether the new carry may be moved straight into the carry's input slots,
 * in order, without the scratch region: no output is read after an earlier
 * carry's input slot, which it overlaps, was written.  Checked once per run
 * of the instruction: most carries are a few scalars in slots of their own. */
int carry_moves_directly(const int64_t *carry, int64_t nc) {
  for (int64_t j = 1; j < nc; j++) {
    const int64_t *out = carry + ENTRY * j;
    for (int64_t k = 0; k < j; k++) {
      const int64_t *in = carry + ENTRY * k;
      if (overlap(out[1], out[2], in[0], in[2])) return 0;
    }
  }
  return 1;
}

/* One interpreted step t: rows in, the body, rows out, the carries moved. */
static int step(const fastad_program *body, const fastad_linalg *la, char *arena,
                poll_state *ps, const int64_t *d, int direct, int64_t t) {
  const int64_t nc = d[1], nx = d[2], ny = d[3], scratch = d[4];
  const int64_t *carry = d + HEAD, *xs = carry + ENTRY * nc, *ys = xs + ENTRY * nx;
  for (int64_t k = 0; k < nx; k++) {
    const int64_t *e = xs + ENTRY * k;
    copy_bytes(arena + e[0], arena + e[1] + t * e[3], e[2]);
  }
  const int status = vm_run_state(body, la, arena, ps);
  if (status != FASTAD_VM_OK) return status;
  for (int64_t k = 0; k < ny; k++) {
    const int64_t *e = ys + ENTRY * k;
    copy_bytes(arena + e[1] + t * e[3], arena + e[0], e[2]);
  }
  if (direct) {
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *e = carry + ENTRY * k;
      if (e[0] != e[1]) copy_bytes(arena + e[0], arena + e[1], e[2]);
    }
  } else {
    int64_t at = scratch;
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *e = carry + ENTRY * k;
      copy_bytes(arena + at, arena + e[1], e[2]);
      at += e[2];
    }
    at = scratch;
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *e = carry + ENTRY * k;
      copy_bytes(arena + e[0], arena + at, e[2]);
      at += e[2];
    }
  }
  return FASTAD_VM_OK;
}

int loop_run(const fastad_program *p, const fastad_linalg *la, char *arena,
             const int32_t *pc, poll_state *ps) {
  const int64_t *d = p->meta + pc[1];
  const int64_t trips = d[0], nc = d[1];
  /* a run-time count: the condition is the last carry's in region */
  const int until = trips < 0;
  const char *cond = until ? arena + (d + HEAD)[ENTRY * (nc - 1)] : NULL;
  const fastad_program body = loop_body(p, pc);
  const int direct = carry_moves_directly(d + HEAD, nc);
  /* a scalar body's steps as native code (jit.c), which does the same, run
   * in chunks with a poll between them; its array instructions count
   * towards a poll as the dispatch loop's do */
  const jit_loop *native = p->jit != NULL ? jit_find(p, pc) : NULL;
  int64_t t = 0;
  if (native != NULL) {
    const int64_t chunk = POLL_STEPS / (1 + native->arrays * POLL_STEPS / POLL_INSTRUCTIONS) + 1;
    for (;;) {
      const int64_t end = until || trips - t > chunk ? t + chunk : trips;
      const int64_t at = native->fn(arena, t, end, la);
      const int done = until ? at < end : at >= trips;
      t = at;
      if (done) break;
      if (ps->poll != NULL && poll_due(ps)) return FASTAD_VM_INTERRUPTED;
    }
  } else {
    int countdown = POLL_STEPS;
    for (; until ? *cond != 0 : t < trips; t++) {
      const int status = step(&body, la, arena, ps, d, direct, t);
      if (status != FASTAD_VM_OK) return status;
      if (--countdown < 0) {
        countdown = POLL_STEPS;
        if (ps->poll != NULL && poll_due(ps)) return FASTAD_VM_INTERRUPTED;
      }
    }
  }
  if (until) {
    const double steps = (double)t;
    memcpy(arena + d[5], &steps, sizeof steps);
  }
  return FASTAD_VM_OK;
}
