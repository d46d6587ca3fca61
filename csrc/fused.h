/*
 * fused.h -- private to the VM (vm.c, fused.c): the FUSED instruction's
 * executor (fused.c).
 */
#ifndef FASTAD_FUSED_H
#define FASTAD_FUSED_H

#include "interrupt.h"

/* A build may set another block size with -DFUSED_BLOCK=..., to measure. */
#ifndef FUSED_BLOCK
#define FUSED_BLOCK FASTAD_FUSED_BLOCK
#endif

/* Runs the FUSED instruction of dtype t, descriptor d, over n elements,
 * polling through ps unless it is NULL (ps->stop is then set if it stopped). */
FASTAD_INTERNAL void fused(int t, char *arena, const int64_t *d, int64_t n, poll_state *ps);

#endif
