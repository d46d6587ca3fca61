/*
 * pool.h -- a small pool of worker threads for the VM's large fused loops.
 *
 * fastad_pool_run(fn, arg, nchunks) calls fn(arg, c) once for every chunk c in
 * 0 .. nchunks-1 and returns when all have finished.  The caller works too.
 * What a chunk computes is fixed by the caller; which thread runs it is not,
 * so callers that combine per-chunk results do so in chunk order afterwards
 * and get the same bits whatever thread ran what.
 *
 * One job runs on the pool at a time: a second caller that finds it busy (a
 * concurrent VM run, or a run inside a batch worker) runs its chunks itself,
 * in order.  Without pthreads (or with FASTAD_NUM_THREADS=1) every chunk runs
 * on the caller.
 */
#ifndef FASTAD_POOL_H
#define FASTAD_POOL_H

#define FASTAD_POOL_MAX_THREADS 64

typedef void (*fastad_chunk_fn)(void *arg, int chunk);

/* The number of threads the pool runs chunks on, the caller included:
 * FASTAD_NUM_THREADS if set (1 .. FASTAD_POOL_MAX_THREADS), else the number
 * of online processors, at most 8.  Read once. */
int fastad_pool_threads(void);

void fastad_pool_run(fastad_chunk_fn fn, void *arg, int nchunks);

#endif
