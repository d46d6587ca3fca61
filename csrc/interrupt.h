/*
 * interrupt.h -- private to the VM (vm.c, fused.c, batch.c): the state of a
 * run's poll for an interrupt (fastad_vm_run_polled, vm.h).
 */
#ifndef FASTAD_INTERRUPT_H
#define FASTAD_INTERRUPT_H

#include "kernels.h"

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
  const int *flag;         /* NULL, or read at every poll, before the clock: nonzero
                            * stops (a batch's other threads, batch.c) */
} poll_state;

/* Called now and then on the thread running the program; nonzero: stop. */
FASTAD_INTERNAL int poll_due(poll_state *ps);

/* fastad_vm_run_polled over the caller's poll state (vm.c): a batch keeps one
 * per thread across its chunks, so its callback is due on the batch's clock,
 * not each chunk's. */
FASTAD_INTERNAL int vm_run_state(const fastad_program *p, const fastad_linalg *la,
                                 void *arena, poll_state *ps);

#endif
