/*
 * jit.h -- private to the VM: native code for the steps of LOOP instructions
 * whose bodies are scalar float64 code (csrc/jit.c).
 */
#ifndef FASTAD_JIT_H
#define FASTAD_JIT_H

#include "kernels.h"

/* Steps t0 <= t < t1 of a LOOP (each: its stacked rows copied in, its body,
 * its rows copied out, its carries moved), as native code over the arena,
 * with the linear algebra the body's other instructions may call.  Returns
 * the t it stopped at: t1, or before t1 where a while loop's condition
 * failed. */
typedef int64_t (*jit_step_fn)(char *arena, int64_t t0, int64_t t1, const fastad_linalg *la);

typedef struct {
  const int32_t *pc; /* the LOOP instruction */
  jit_step_fn fn;
  int64_t arrays;    /* array instructions per step, run by the dispatch loop */
} jit_loop;

/* The native step of the LOOP instruction at pc, if p's table has one. */
FASTAD_INTERNAL const jit_loop *jit_find(const fastad_program *p, const int32_t *pc);

#endif
