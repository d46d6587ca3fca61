/*
 * pool.c -- see pool.h.  A job hands out chunk numbers from a counter under
 * the pool's mutex (jobs have few, large chunks, so the lock is not
 * contended).
 *
 * Between jobs a worker either polls for the next one or sleeps on a
 * condition variable.  Waking a sleeping thread took 15-100 us on the shared
 * 2-core development machine, which a W2 gradient of 10^5 elements called in
 * a loop (chunks of 40 us, jobs a few us apart) cannot afford; but a polling
 * worker costs the process a core for the whole gap, which the sparse
 * Hessians (dozens of jobs with chunks of 25 us, 50-200 us apart) and the
 * host calls between a GP's jobs (a Cholesky factorization: milliseconds,
 * while the poller takes a core from BLAS) paid in full with a fixed 200 us
 * window.  So the window follows what polling buys: after each job a worker
 * polls for at most FASTAD_POOL_SPIN_RATIO (default 0.5) times the CPU time
 * of one chunk (capped at FASTAD_POOL_SPIN_US, default 200; 0: never), so
 * polling that misses costs at most that fraction of the work a second core
 * would take; and not at all when none of the last 8 gaps between jobs was
 * that short (a backoff, as adaptive mutexes do).  A sleeping worker is not
 * woken for jobs whose chunks take less than its measured wake-up (it would
 * find every chunk taken by the caller); that average decays at each job it
 * sleeps through, so a wake-up is tried again after some twenty.
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

static long spin_us = 200;      /* FASTAD_POOL_SPIN_US, read when the pool starts */
static double spin_ratio = 0.5; /* FASTAD_POOL_SPIN_RATIO, likewise */

static double clock_us(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}
static double now_us(void) { return clock_us(CLOCK_MONOTONIC); }
/* A chunk's cost is taken on the caller's CPU clock: on a loaded machine its
 * wall time also counts the time the caller waited for a core. */
static double thread_cpu_us(void) { return clock_us(CLOCK_THREAD_CPUTIME_ID); }

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Polls *word (read atomically) until it differs from seen or window_us
 * passes; returns its last value. */
static unsigned long spin_while_equal(const unsigned long *word, unsigned long seen,
                                      long window_us) {
  if (window_us <= 0) return seen;
  const double end = now_us() + (double)window_us;
  for (;;) {
    for (int k = 0; k < 256; k++) {
      const unsigned long v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
      if (v != seen) return v;
      CPU_RELAX();
    }
    if (now_us() >= end) return seen;
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
  int sleepers;     /* workers waiting on wake */
  long window;      /* how long a worker polls after a job, us; also read atomically */
  double published; /* when the current job was handed out, us */
  double last_end;  /* when the last job ended, us (0: none yet) */
  /* running averages, us: the CPU time of one chunk on the caller, and a
   * sleeping worker's wake-up (from the job's start to the worker's) */
  double chunk_avg, wake_avg;
  unsigned hits;    /* the last 8 gaps between jobs, a bit set where it was short */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0xff};

/* The weight of the newest sample in the running averages: about the last
 * four jobs count, so a changed pattern (a loop of gradients after a host
 * call) is followed within a few jobs. */
#define AVG_WEIGHT 0.25
#define AVG(avg, x) ((avg) += AVG_WEIGHT * ((x) - (avg)))

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int wanted_threads = 1;

/* Takes and runs chunks of the current job until none is left; called with
 * pool.lock held, returns with it held.  Returns the number it ran. */
static int work(void) {
  int ran = 0;
  while (pool.next < pool.nchunks) {
    ran++;
    const int c = pool.next++;
    fastad_chunk_fn fn = pool.fn;
    void *arg = pool.arg;
    pthread_mutex_unlock(&pool.lock);
    fn(arg, c);
    pthread_mutex_lock(&pool.lock);
    if (__atomic_sub_fetch(&pool.left, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&pool.done);
  }
  return ran;
}

static void *worker(void *unused) {
  (void)unused;
  pthread_mutex_lock(&pool.lock);
  unsigned long seen = pool.generation;
  for (;;) {
    pthread_mutex_unlock(&pool.lock);
    spin_while_equal(&pool.generation, seen, __atomic_load_n(&pool.window, __ATOMIC_RELAXED));
    pthread_mutex_lock(&pool.lock);
    if (pool.generation == seen) {
      pool.sleepers++;
      while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
      pool.sleepers--;
      AVG(pool.wake_avg, now_us() - pool.published);
    }
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
  const char *ratio = getenv("FASTAD_POOL_SPIN_RATIO");
  if (ratio && *ratio) spin_ratio = strtod(ratio, NULL);
  if (!(spin_ratio >= 0)) spin_ratio = 0;
  pool.window = spin_us;
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

/* How long workers may poll for the next job: a fraction of a chunk's time,
 * and not at all while no recent gap was that short. */
static long poll_window(void) {
  double w = spin_ratio * pool.chunk_avg;
  if (w > (double)spin_us) w = (double)spin_us;
  return w;
}

void fastad_pool_run(fastad_chunk_fn fn, void *arg, int nchunks) {
  pthread_once(&pool_once, start_pool);
  if (nchunks <= 1 || pool.nthreads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
    for (int c = 0; c < nchunks; c++) fn(arg, c);
    return;
  }
  pthread_mutex_lock(&pool.lock);
  const double start = now_us();
  const long window = poll_window();
  if (pool.last_end > 0) pool.hits = (pool.hits << 1 | (start - pool.last_end <= window)) & 0xff;
  pool.published = start;
  pool.fn = fn;
  pool.arg = arg;
  pool.nchunks = nchunks;
  pool.next = 0;
  __atomic_store_n(&pool.left, (unsigned long)nchunks, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
  if (pool.sleepers > 0) {
    /* a worker woken for chunks shorter than its wake-up would find them
     * all taken (the header); chunk_avg is CPU time, wake_avg wall time, so
     * a loaded machine, where wake-ups are slow, wakes fewer */
    if (pool.chunk_avg >= pool.wake_avg)
      pthread_cond_broadcast(&pool.wake);
    else
      pool.wake_avg *= 0.95;
  }
  const double cpu_start = thread_cpu_us();
  const int ran = work();
  if (ran > 0) {
    const double chunk = (thread_cpu_us() - cpu_start) / ran;
    if (pool.chunk_avg > 0) AVG(pool.chunk_avg, chunk); else pool.chunk_avg = chunk;
  }
  if (pool.left != 0) {
    pthread_mutex_unlock(&pool.lock);
    unsigned long left;
    while ((left = __atomic_load_n(&pool.left, __ATOMIC_ACQUIRE)) != 0 &&
           spin_while_equal(&pool.left, left, spin_us) != left) {
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.left != 0) pthread_cond_wait(&pool.done, &pool.lock);
  }
  pool.last_end = now_us();
  __atomic_store_n(&pool.window, pool.hits ? poll_window() : 0, __ATOMIC_RELAXED);
  pool.fn = NULL;
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.busy);
}

#endif
