/*
 * interrupt.c -- a run's poll for an interrupt: the clock, and when the
 * caller's callback is due (interrupt.h).
 */
#include "interrupt.h"

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include <windows.h>
#else
#include <time.h>
#endif

#if defined(_WIN32)
#define LOAD_FLAG(p) (*(volatile const int *)(p)) /* batches run on one thread there */
#else
#define LOAD_FLAG(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#endif

static int64_t now_ms(void) {
#if defined(_WIN32)
  return (int64_t)GetTickCount64();
#else
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* no system call; a few ms resolution */
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

/* Called now and then on the thread running the program; nonzero: stop. */
int poll_due(poll_state *ps) {
  if (ps->stop) return 1;
  if (ps->flag != NULL && LOAD_FLAG(ps->flag)) return ps->stop = 1;
  const int64_t t = now_ms();
  if (ps->next_ms < 0) {
    ps->next_ms = t + FASTAD_POLL_FIRST_MS;
    return 0;
  }
  if (t < ps->next_ms) return 0;
  ps->stop = ps->poll->fn(ps->poll->ctx) != 0;
  ps->next_ms = now_ms() + FASTAD_POLL_EVERY_MS;
  return ps->stop;
}
