/*
 * vecmath.c -- the table of vectorized loops for the elementwise functions of
 * one argument (exp, log, tanh, sin, ...): NumPy's own ufunc inner loops,
 * installed by the extension at import (fastad/backends/_vm.pyx).  The VM
 * links against nothing, so the loops arrive as function pointers, as BLAS
 * does; a function without one runs the C library's (kernels.h, U_*).
 */
#include "kernels.h"

/* [dtype][function]: written only by fastad_vm_set_unary_loop, which checks
 * both indices; read by the kernels with a function code the validator
 * checked.  A program cannot name an entry outside it, or write one. */
unary_loop_entry unary_loops[UNARY_LOOP_DTYPES][FASTAD_NUM_UNARY_FNS];
int unary_loops_on = 1;

int fastad_vm_set_unary_loop(int f, int t, fastad_unary_loop loop, void *data) {
  if (f < 0 || f >= FASTAD_NUM_UNARY_FNS || t < 0 || t >= UNARY_LOOP_DTYPES) return -1;
  unary_loops[t][f].data = data;
  unary_loops[t][f].loop = loop;
  return 0;
}

int fastad_vm_use_unary_loops(int on) {
#if defined(__GNUC__)
  return __atomic_exchange_n(&unary_loops_on, on ? 1 : 0, __ATOMIC_RELAXED);
#else
  const int before = unary_loops_on;
  *(volatile int *)&unary_loops_on = on ? 1 : 0;
  return before;
#endif
}
