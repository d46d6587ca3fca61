/*
 * batch.c -- see batch.h.  The fan-out over threads lives here so that a
 * batched call needs the GIL for nothing but unpacking its arguments.
 */
#include "batch.h"
#include "interrupt.h"

#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#include <time.h>
#define LOAD_FLAG(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define SET_FLAG(p) __atomic_store_n(p, 1, __ATOMIC_RELAXED)
#else
#define LOAD_FLAG(p) (*(volatile int *)(p)) /* one thread: the caller */
#define SET_FLAG(p) (*(volatile int *)(p) = 1)
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

/* A polled batch (fastad_batch_run_polled): the caller's poll, and the flag
 * that tells every thread to stop once it has asked to. */
typedef struct {
  const fastad_poll *poll; /* the caller's */
  int stop;                /* set (atomically) when poll asked to stop */
  fastad_poll on_caller;   /* poll, setting stop when it asks to stop */
  fastad_poll on_worker;   /* reads stop (as the workers' poll states do at every
                            * poll): no callback of the caller's */
#ifndef _WIN32
  pthread_mutex_t lock;
  pthread_cond_t done; /* signalled as each started worker ends */
  int running;         /* started workers that have not ended */
#endif
} batch_ctl;

static int poll_caller(void *arg) {
  batch_ctl *ctl = (batch_ctl *)arg;
  if (!ctl->poll->fn(ctl->poll->ctx)) return 0;
  SET_FLAG(&ctl->stop);
  return 1;
}

static int poll_worker(void *arg) { return LOAD_FLAG(&((batch_ctl *)arg)->stop); }

/* Chunks [lo, hi) of b over one arena.  With ctl, the thread's poll state ps
 * (which keeps its clock from chunk to chunk) is polled inside the runs and
 * between chunks, and the stop flag is read before every chunk; once either
 * asks to stop, the remaining chunks are not run and get
 * FASTAD_VM_INTERRUPTED. */
static int64_t run_range(const fastad_batch *b, char *arena, int64_t lo, int64_t hi,
                         int *status, batch_ctl *ctl, poll_state *ps) {
  int64_t failed = 0;
  for (int64_t k = lo; k < hi; k++) {
    if (ctl != NULL && (LOAD_FLAG(&ctl->stop) || poll_due(ps))) {
      failed += hi - k;
      for (; k < hi; k++) status[k] = FASTAD_VM_INTERRUPTED;
      break;
    }
    int64_t first = k * b->chunk;
    int64_t real = b->count - first < b->chunk ? b->count - first : b->chunk;
    copy_in(b, arena, first, real);
    status[k] = vm_run_state(b->prog, b->linalg, arena, ps);
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
  batch_ctl *ctl; /* NULL: not polled */
  int64_t failed;
} worker;

#ifndef _WIN32
static void *run_worker(void *arg) {
  worker *w = (worker *)arg;
  poll_state ps = {NULL, -1, 0, NULL};
  if (w->ctl != NULL) {
    ps.poll = &w->ctl->on_worker;
    ps.flag = &w->ctl->stop;
  }
  w->failed = run_range(w->batch, w->arena, w->lo, w->hi, w->status, w->ctl, &ps);
  if (w->ctl != NULL) {
    pthread_mutex_lock(&w->ctl->lock);
    w->ctl->running--;
    pthread_cond_signal(&w->ctl->done);
    pthread_mutex_unlock(&w->ctl->lock);
  }
  return NULL;
}

/* The caller, its own chunks done: until every started worker has ended, it
 * keeps polling (a Ctrl-C then stops the workers), waking at least every
 * FASTAD_POLL_EVERY_MS. */
static void wait_polling(batch_ctl *ctl, poll_state *ps) {
  pthread_mutex_lock(&ctl->lock);
  while (ctl->running > 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)FASTAD_POLL_EVERY_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec += 1;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&ctl->done, &ctl->lock, &until);
    if (ctl->running == 0 || LOAD_FLAG(&ctl->stop)) continue;
    pthread_mutex_unlock(&ctl->lock);
    poll_due(ps); /* may call back into the caller: not under the lock */
    pthread_mutex_lock(&ctl->lock);
  }
  pthread_mutex_unlock(&ctl->lock);
}
#endif

enum { MAX_THREADS = 256 };

int64_t fastad_batch_run(const fastad_batch *b, char *const *arenas, int nthreads,
                         int *status) {
  return fastad_batch_run_polled(b, arenas, nthreads, status, NULL);
}

int64_t fastad_batch_run_polled(const fastad_batch *b, char *const *arenas, int nthreads,
                                int *status, const fastad_poll *poll) {
  int64_t chunks = fastad_batch_chunks(b);
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  if (nthreads > chunks) nthreads = (int)chunks;
#ifdef _WIN32
  nthreads = 1;  /* no pthreads: the chunks run in order on the caller */
#endif
  batch_ctl ctl_storage, *ctl = NULL;
  if (poll != NULL) {
    ctl = &ctl_storage;
    ctl->poll = poll;
    ctl->stop = 0;
    ctl->on_caller.fn = poll_caller;
    ctl->on_caller.ctx = ctl;
    ctl->on_worker.fn = poll_worker;
    ctl->on_worker.ctx = ctl;
  }
  /* the caller's poll state, over all the chunks it runs */
  poll_state ps = {ctl != NULL ? &ctl->on_caller : NULL, -1, 0, NULL};
  if (nthreads <= 1) return run_range(b, arenas[0], 0, chunks, status, ctl, &ps);

  worker workers[MAX_THREADS];
  for (int t = 0; t < nthreads; t++) {
    workers[t].batch = b;
    workers[t].arena = arenas[t];
    workers[t].lo = chunks * t / nthreads;
    workers[t].hi = chunks * (t + 1) / nthreads;
    workers[t].status = status;
    workers[t].ctl = ctl;
    workers[t].failed = 0;
  }
  int64_t failed = 0;
#ifndef _WIN32
  pthread_t threads[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  if (ctl != NULL) {
    pthread_mutex_init(&ctl->lock, NULL);
    pthread_cond_init(&ctl->done, NULL);
    ctl->running = 0;
  }
  for (int t = 1; t < nthreads; t++) {
    if (ctl != NULL) { /* counted before it starts: it may end at once */
      pthread_mutex_lock(&ctl->lock);
      ctl->running++;
      pthread_mutex_unlock(&ctl->lock);
    }
    started[t] = pthread_create(&threads[t], NULL, run_worker, &workers[t]) == 0;
    if (!started[t] && ctl != NULL) {
      pthread_mutex_lock(&ctl->lock);
      ctl->running--;
      pthread_mutex_unlock(&ctl->lock);
    }
  }
  /* the caller's share, and that of any thread that could not be started
   * (on its own arena), under the caller's poll */
  for (int t = 0; t < nthreads; t++)
    if (t == 0 || !started[t])
      workers[t].failed = run_range(b, workers[t].arena, workers[t].lo, workers[t].hi,
                                    status, ctl, &ps);
  if (ctl != NULL) wait_polling(ctl, &ps);
  for (int t = 1; t < nthreads; t++)
    if (started[t]) pthread_join(threads[t], NULL);
  if (ctl != NULL) {
    pthread_cond_destroy(&ctl->done);
    pthread_mutex_destroy(&ctl->lock);
  }
#endif
  for (int t = 0; t < nthreads; t++) failed += workers[t].failed;
  return failed;
}
