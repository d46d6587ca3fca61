/*
 * vecmath.c -- the tables of vectorized loops for the transcendental
 * elementwise functions (exp, log, tanh, sin, ..., pow, arctan2, hypot,
 * logaddexp): NumPy's own ufunc inner loops,
 * installed by the extension at import (fastad/backends/_vm.pyx).  The VM
 * links against nothing, so the loops arrive as function pointers, as BLAS
 * does; a function without one runs the C library's (kernels.h, U_*, B_*).
 */
#include "kernels.h"

/* [dtype][function]: written only by the setters below, which check both
 * indices; read by the kernels with a function code the validator
 * checked.  A program cannot name an entry outside it, or write one. */
ufunc_loop_entry unary_loops[LOOP_DTYPES][FASTAD_NUM_UNARY_FNS];
ufunc_loop_entry binary_loops[LOOP_DTYPES][FASTAD_NUM_BINARY_FNS];
int numpy_loops_on = 1;

int fastad_vm_set_unary_loop(int f, int t, fastad_ufunc_loop loop, void *data) {
  if (f < 0 || f >= FASTAD_NUM_UNARY_FNS || t < 0 || t >= LOOP_DTYPES) return -1;
  unary_loops[t][f].data = data;
  unary_loops[t][f].loop = loop;
  return 0;
}

int fastad_vm_set_binary_loop(int f, int t, fastad_ufunc_loop loop, void *data) {
  if (f < 0 || f >= FASTAD_NUM_BINARY_FNS || t < 0 || t >= LOOP_DTYPES) return -1;
  binary_loops[t][f].data = data;
  binary_loops[t][f].loop = loop;
  return 0;
}

int fastad_vm_use_numpy_loops(int on) {
#if defined(__GNUC__)
  return __atomic_exchange_n(&numpy_loops_on, on ? 1 : 0, __ATOMIC_RELAXED);
#else
  const int before = numpy_loops_on;
  *(volatile int *)&numpy_loops_on = on ? 1 : 0;
  return before;
#endif
}
