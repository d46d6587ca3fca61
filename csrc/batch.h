/*
 * batch.h -- one program over a batch of examples, chunk by chunk, on threads.
 *
 * The program was compiled for a chunk of `chunk` examples (a vmapped tape):
 * every batched input and every output has the chunk as its leading axis.
 * The batch of `count` examples is cut into ceil(count / chunk) chunks; each
 * chunk is copied into an arena, run (fastad_vm_run) and copied out.  The
 * last chunk, when short, is padded with copies of the batch's last example
 * and only its real examples are copied out.
 *
 * Threads take contiguous runs of chunks, one arena per thread.  How the batch
 * is cut depends on `chunk` only, never on the thread count, and no value
 * crosses chunks: results are bit-identical for any number of threads.
 */
#ifndef FASTAD_BATCH_H
#define FASTAD_BATCH_H

#include <stdint.h>

#include "vm.h"

typedef struct {
  char *data;             /* the user's array: example e at data + e * example_bytes */
  int64_t arena_offset;   /* where this port's chunk lives in the arena */
  int64_t example_bytes;  /* bytes of one example; for a shared input, of the whole value */
  int batched;            /* 0: a shared input, copied whole into every chunk's arena */
} fastad_batch_port;

typedef struct {
  const fastad_program *prog;
  const fastad_linalg *linalg;
  const fastad_batch_port *inputs;
  int64_t num_inputs;
  const fastad_batch_port *outputs;  /* all batched */
  int64_t num_outputs;
  int64_t count;  /* examples in the batch, >= 1 */
  int64_t chunk;  /* examples per run of the program, >= 1 */
} fastad_batch;

/* Run every chunk of b.  arenas[t] (t < nthreads) is thread t's arena:
 * prog->arena_bytes, FASTAD_ARENA_ALIGN-aligned, constants in place.  status[k] receives
 * the FASTAD_VM_* status of chunk k; a failed chunk's outputs are left as they
 * were.  Uses min(nthreads, chunks) threads, the caller's included; if a
 * thread cannot be started, the caller runs its chunks.  Returns the number
 * of chunks whose status is not FASTAD_VM_OK. */
int64_t fastad_batch_run(const fastad_batch *b, char *const *arenas, int nthreads,
                         int *status);

/* fastad_batch_run, stoppable (Ctrl-C) unless poll is NULL: the caller's
 * poll (vm.h), on one clock for the whole batch (first due FASTAD_POLL_FIRST_MS
 * into it, then every FASTAD_POLL_EVERY_MS), runs on the calling thread only:
 * inside the runs of the chunks it runs, between them, and while it waits for
 * the other threads.  Once it asks to stop, a shared flag stops every thread:
 * each reads it before each chunk and, inside its runs, where the VM would
 * poll.  The interrupted chunks, and those not run, get FASTAD_VM_INTERRUPTED
 * (their outputs are left as they were; the arenas stay usable, as after
 * fastad_vm_run_polled).  Every thread has ended when it returns.  A poll
 * that asks to stop while the caller waits may come after the other threads'
 * last chunks: every status is then FASTAD_VM_OK, and the callback's owner
 * must remember that it asked. */
int64_t fastad_batch_run_polled(const fastad_batch *b, char *const *arenas, int nthreads,
                                int *status, const fastad_poll *poll);

/* ceil(count / chunk): how many chunks, and so status entries, b has. */
int64_t fastad_batch_chunks(const fastad_batch *b);

#endif
