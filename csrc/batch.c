/*
 * batch.c -- see batch.h.  The fan-out over threads lives here so that a
 * batched call needs the GIL for nothing but unpacking its arguments.
 */
#include "batch.h"

#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#endif

int64_t fastad_batch_chunks(const fastad_batch *b) {
  return (b->count + b->chunk - 1) / b->chunk;
}

static void copy_in(const fastad_batch *b, char *arena, int64_t first, int64_t real) {
  for (int64_t i = 0; i < b->num_inputs; i++) {
    const fastad_batch_port *port = &b->inputs[i];
    char *dst = arena + port->arena_offset;
    if (!port->batched) {
      memcpy(dst, port->data, (size_t)port->example_bytes);
      continue;
    }
    int64_t ex = port->example_bytes;
    memcpy(dst, port->data + first * ex, (size_t)(real * ex));
    /* Padding lanes repeat the last example: a real input, so no spurious
     * guard failures, NaNs or denormals from stale arena bytes. */
    const char *last = port->data + (b->count - 1) * ex;
    for (int64_t lane = real; lane < b->chunk; lane++)
      memcpy(dst + lane * ex, last, (size_t)ex);
  }
}

static void copy_out(const fastad_batch *b, const char *arena, int64_t first, int64_t real) {
  for (int64_t i = 0; i < b->num_outputs; i++) {
    const fastad_batch_port *port = &b->outputs[i];
    int64_t ex = port->example_bytes;
    memcpy(port->data + first * ex, arena + port->arena_offset, (size_t)(real * ex));
  }
}

/* Chunks [lo, hi) of b over one arena. */
static int64_t run_range(const fastad_batch *b, char *arena, int64_t lo, int64_t hi,
                         int *status) {
  int64_t failed = 0;
  for (int64_t k = lo; k < hi; k++) {
    int64_t first = k * b->chunk;
    int64_t real = b->count - first < b->chunk ? b->count - first : b->chunk;
    copy_in(b, arena, first, real);
    status[k] = fastad_vm_run(b->prog, b->linalg, arena);
    if (status[k] == FASTAD_VM_OK)
      copy_out(b, arena, first, real);
    else
      failed++;
  }
  return failed;
}

typedef struct {
  const fastad_batch *batch;
  char *arena;
  int64_t lo, hi;
  int *status;
  int64_t failed;
} worker;

#ifndef _WIN32
static void *run_worker(void *arg) {
  worker *w = (worker *)arg;
  w->failed = run_range(w->batch, w->arena, w->lo, w->hi, w->status);
  return NULL;
}
#endif

enum { MAX_THREADS = 256 };

int64_t fastad_batch_run(const fastad_batch *b, char *const *arenas, int nthreads,
                         int *status) {
  int64_t chunks = fastad_batch_chunks(b);
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  if (nthreads > chunks) nthreads = (int)chunks;
#ifdef _WIN32
  nthreads = 1;  /* no pthreads: the chunks run in order on the caller */
#endif
  if (nthreads <= 1) return run_range(b, arenas[0], 0, chunks, status);

  worker workers[MAX_THREADS];
  for (int t = 0; t < nthreads; t++) {
    workers[t].batch = b;
    workers[t].arena = arenas[t];
    workers[t].lo = chunks * t / nthreads;
    workers[t].hi = chunks * (t + 1) / nthreads;
    workers[t].status = status;
    workers[t].failed = 0;
  }
  int64_t failed = 0;
#ifndef _WIN32
  pthread_t threads[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int t = 1; t < nthreads; t++)
    started[t] = pthread_create(&threads[t], NULL, run_worker, &workers[t]) == 0;
  run_worker(&workers[0]);
  for (int t = 1; t < nthreads; t++) {
    if (started[t])
      pthread_join(threads[t], NULL);
    else  /* could not start a thread: its share runs here, on its own arena */
      run_worker(&workers[t]);
  }
#endif
  for (int t = 0; t < nthreads; t++) failed += workers[t].failed;
  return failed;
}
