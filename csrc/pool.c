/*
 * pool.c -- see pool.h.  A job hands out chunk numbers from a counter under
 * the pool's mutex (jobs have few, large chunks, so the lock is not
 * contended).  Between jobs a worker first polls for the next one for
 * FASTAD_POOL_SPIN_US microseconds (default 200, 0: never), then sleeps on a
 * condition variable; the caller polls for its job's end the same way.
 * Waking a sleeping thread took 50-100 us on the shared 2-core development
 * machine, twice per job, which cost more than the second core saved on a W2
 * gradient of 10^5 to 10^6 elements; a gradient called in a loop starts its
 * next job well inside the window.
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
#include <time.h>
#include <unistd.h>

static long spin_us = 200; /* FASTAD_POOL_SPIN_US, read when the pool starts */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Polls *word (read atomically) until it differs from seen or the spin window
 * passes; returns its last value. */
static unsigned long spin_while_equal(const unsigned long *word, unsigned long seen) {
  struct timespec start, now;
  if (spin_us == 0) return seen;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    for (int k = 0; k < 256; k++) {
      const unsigned long v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
      if (v != seen) return v;
      CPU_RELAX();
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000L >=
        spin_us)
      return seen;
  }
}

static struct {
  pthread_mutex_t lock;     /* guards everything below */
  pthread_cond_t wake;      /* a new job (generation changed) */
  pthread_cond_t done;      /* a job's last chunk finished */
  pthread_mutex_t busy;     /* held by the caller whose job is running */
  int nthreads;             /* 0 until started */
  unsigned long generation; /* bumped for every job; also read atomically */
  unsigned long left;       /* chunks of the current job not yet finished; likewise */
  fastad_chunk_fn fn;
  void *arg;
  int nchunks, next;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, NULL, NULL, 0, 0};

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
    if (__atomic_sub_fetch(&pool.left, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&pool.done);
  }
}

static void *worker(void *unused) {
  (void)unused;
  pthread_mutex_lock(&pool.lock);
  unsigned long seen = pool.generation;
  for (;;) {
    pthread_mutex_unlock(&pool.lock);
    spin_while_equal(&pool.generation, seen);
    pthread_mutex_lock(&pool.lock);
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
  const char *spin = getenv("FASTAD_POOL_SPIN_US");
  if (spin && *spin) spin_us = strtol(spin, NULL, 10);
  if (spin_us < 0) spin_us = 0;
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
  pool.next = 0;
  __atomic_store_n(&pool.left, (unsigned long)nchunks, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&pool.wake);
  work();
  if (pool.left != 0) {
    pthread_mutex_unlock(&pool.lock);
    unsigned long left;
    while ((left = __atomic_load_n(&pool.left, __ATOMIC_ACQUIRE)) != 0 &&
           spin_while_equal(&pool.left, left) != left) {
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.left != 0) pthread_cond_wait(&pool.done, &pool.lock);
  }
  pool.fn = NULL;
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.busy);
}

#endif
