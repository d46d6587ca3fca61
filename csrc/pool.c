/*
 * pool.c -- see pool.h.  Workers sleep on a condition variable between jobs;
 * a job hands out chunk numbers from a counter under the pool's mutex (jobs
 * have few, large chunks, so the lock is not contended).
 */
#include "pool.h"

#include <stdlib.h>

#if defined(_WIN32) || defined(FASTAD_NO_THREADS)

int fastad_pool_threads(void) { return 1; }

void fastad_pool_run(fastad_chunk_fn fn, void *arg, int nchunks) {
  for (int c = 0; c < nchunks; c++) fn(arg, c);
}

#else

#include <pthread.h>
#include <unistd.h>

static struct {
  pthread_mutex_t lock;     /* guards everything below */
  pthread_cond_t wake;      /* a new job (generation changed) */
  pthread_cond_t done;      /* a job's last chunk finished */
  pthread_mutex_t busy;     /* held by the caller whose job is running */
  int nthreads;             /* 0 until started */
  unsigned long generation; /* bumped for every job */
  fastad_chunk_fn fn;
  void *arg;
  int nchunks, next, finished;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL, 0, 0, 0};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int wanted_threads = 1;

/* Takes and runs chunks of the current job until none is left; called with
 * pool.lock held, returns with it held. */
static void work(void) {
  while (pool.next < pool.nchunks) {
    const int c = pool.next++;
    fastad_chunk_fn fn = pool.fn;
    void *arg = pool.arg;
    pthread_mutex_unlock(&pool.lock);
    fn(arg, c);
    pthread_mutex_lock(&pool.lock);
    if (++pool.finished == pool.nchunks) pthread_cond_signal(&pool.done);
  }
}

static void *worker(void *unused) {
  (void)unused;
  pthread_mutex_lock(&pool.lock);
  unsigned long seen = pool.generation;
  for (;;) {
    while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
    seen = pool.generation;
    work();
  }
  return NULL;
}

/* A forked child has none of the parent's workers: it runs serially. */
static void after_fork_in_child(void) {
  pthread_mutex_init(&pool.lock, NULL);
  pthread_mutex_init(&pool.busy, NULL);
  pthread_cond_init(&pool.wake, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.nthreads = 1;
}

static void start_pool(void) {
  const char *env = getenv("FASTAD_NUM_THREADS");
  long n = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (!env || !*env) n = n > 8 ? 8 : n;
  if (n < 1) n = 1;
  if (n > FASTAD_POOL_MAX_THREADS) n = FASTAD_POOL_MAX_THREADS;
  wanted_threads = (int)n;
  int started = 1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (; started < n; started++) {
    pthread_t t;
    if (pthread_create(&t, &attr, worker, NULL) != 0) break;
  }
  pthread_attr_destroy(&attr);
  pool.nthreads = started;
  pthread_atfork(NULL, NULL, after_fork_in_child);
}

int fastad_pool_threads(void) {
  pthread_once(&pool_once, start_pool);
  return wanted_threads;
}

void fastad_pool_run(fastad_chunk_fn fn, void *arg, int nchunks) {
  pthread_once(&pool_once, start_pool);
  if (nchunks <= 1 || pool.nthreads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
    for (int c = 0; c < nchunks; c++) fn(arg, c);
    return;
  }
  pthread_mutex_lock(&pool.lock);
  pool.fn = fn;
  pool.arg = arg;
  pool.nchunks = nchunks;
  pool.next = pool.finished = 0;
  pool.generation++;
  pthread_cond_broadcast(&pool.wake);
  work();
  while (pool.finished < pool.nchunks) pthread_cond_wait(&pool.done, &pool.lock);
  pool.fn = NULL;
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.busy);
}

#endif
