/*
 * special.h -- private to the VM (included by kernels.h): the special
 * functions of scipy.special the VM computes itself, one element at a time.
 *
 * Each follows SciPy's own definition, edge values included (poles, 0 and 1
 * of logit, infinities, NaN), so a compiled function and the reference
 * interpreter (SciPy) never disagree on whether a value is finite; the
 * library functions (erf, erfc, lgamma_r) may differ from SciPy's cephes in
 * the last bits (docs/design.md states the measured tolerance).
 *
 * Precision of float: SciPy computes erf, erfc, ndtr, gammaln and psi of a
 * float in double and rounds once (its 'f->f' loops call the double
 * function), and expit, log_expit, logit, xlogy and xlog1py in float
 * arithmetic (its templates); the VM does the same.  Every function here is pure (no errno
 * read, no global written), since the VM runs without the GIL on several
 * threads: gammaln calls lgamma_r, not lgamma, which writes signgam.
 */
#ifndef FASTAD_SPECIAL_H
#define FASTAD_SPECIAL_H

#include <math.h>

#if defined(__APPLE__)
double lgamma_r(double, int *); /* in libm; declared only under _REENTRANT */
#define FASTAD_HAVE_LGAMMA_R 1
#elif defined(__GLIBC__) || defined(__unix__)
#define FASTAD_HAVE_LGAMMA_R 1 /* glibc, musl and the BSDs (a gnu C dialect declares it) */
#endif

/* expit(x) = 1 / (1 + exp(-x)), SciPy's formula: exp(-x) = inf gives 0, so
 * there is no overflow, and SciPy returns 0 (not a subnormal) below about
 * x = -709 (float: -88.7); the VM does the same. */
static inline double fastad_expit_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline float fastad_expit_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* log(expit(x)) without overflow either side */
static inline double fastad_log_expit_d(double x) {
  return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x));
}
static inline float fastad_log_expit_f(float x) {
  return x < 0 ? x - log1pf(expf(x)) : -log1pf(expf(-x));
}

/* log(p / (1 - p)); near p = 1/2, where that cancels, log1p(s) - log1p(-s)
 * with s = 2p - 1 (SciPy's split: below 0.3 or above 0.65 the quotient).
 * p = 0 gives -inf, p = 1 inf, p outside [0, 1] and NaN give NaN. */
static inline double fastad_logit_d(double p) {
  if (p < 0.3 || p > 0.65) return log(p / (1.0 - p));
  const double s = 2.0 * (p - 0.5);
  return log1p(s) - log1p(-s);
}
static inline float fastad_logit_f(float p) { /* SciPy's float template: s in double, rounded */
  if ((double)p < 0.3 || (double)p > 0.65) return logf(p / (1.0f - p));
  const float s = (float)(2.0 * ((double)p - 0.5));
  return log1pf(s) - log1pf(-s);
}

/* The standard normal CDF, cephes' ndtr branch for branch: erf near 0, erfc
 * of |x| / sqrt 2 further out (accurate in the lower tail). */
static inline double fastad_ndtr(double a) {
  if (a != a) return a;
  const double x = a * 0.70710678118654752440; /* M_SQRT1_2 */
  const double z = fabs(x);
  if (z < 0.70710678118654752440) return 0.5 + 0.5 * erf(x);
  const double y = 0.5 * erfc(z);
  return x > 0 ? 1.0 - y : y;
}

/* log|Gamma(x)|, cephes' lgam at its edges: -inf stays -inf (the C library
 * gives +inf), and SciPy returns inf above cephes' MAXLGM and where its 1/x
 * overflows (|x| < 1/DBL_MAX), where lgamma is still finite.  Poles (0 and
 * the negative integers) give inf. */
static inline double fastad_gammaln(double x) {
  if (isinf(x)) return x;
  if (x > 2.556348e305 || isinf(1.0 / x)) return INFINITY;
#ifdef FASTAD_HAVE_LGAMMA_R
  int sign;
  return lgamma_r(x, &sign);
#else
  return lgamma(x);
#endif
}

/* polevl: c[0] x^n + c[1] x^(n-1) + ... + c[n], Horner's order. */
static inline double fastad_polevl(double x, const double *c, int n) {
  double r = c[0];
  for (int i = 1; i <= n; i++) r = r * x + c[i];
  return r;
}

/* digamma (psi), cephes' psi as SciPy has it: reflection below 0
 * (psi(1 - x) - pi / tan(pi x), the tangent of the fractional part), exact
 * sums at the integers up to 10, the recurrence psi(x + 1) = psi(x) + 1/x
 * into [1, 2] (a rational approximation about the positive root, accurate
 * relative to the value there) below 10 and the asymptotic series above.
 * psi(+-0) = -+inf, NaN at the negative integers and -inf. */
static inline double fastad_digamma(double x) {
  static const double asy[7] = {8.33333333333333333333E-2, -2.10927960927960927961E-2,
                                7.57575757575757575758E-3, -4.16666666666666666667E-3,
                                3.96825396825396825397E-3, -8.33333333333333333333E-3,
                                8.33333333333333333333E-2};
  static const double p[6] = {-0.0020713321167745952, -0.045251321448739056,
                              -0.28919126444774784,   -0.65031853770896507,
                              -0.32555031186804491,   0.25479851061131551};
  static const double q[7] = {-0.55789841321675513e-6, 0.0021284987017821144,
                              0.054151797245674225,    0.43593529692665969,
                              1.4606242909763515,      2.0767117023730469,
                              1.0};
  double y = 0.0;
  if (x != x || x == INFINITY) return x;
  if (x == -INFINITY) return NAN;
  if (x == 0) return copysign(INFINITY, -x);
  if (x < 0) {
    double whole;
    const double r = modf(x, &whole);
    if (r == 0) return NAN;
    y = -3.14159265358979323846 / tan(3.14159265358979323846 * r);
    x = 1.0 - x;
  }
  if (x <= 10.0 && x == floor(x)) {
    const int n = (int)x;
    for (int i = 1; i < n; i++) y += 1.0 / i;
    return y - 0.57721566490153286061; /* Euler's constant */
  }
  if (x < 1.0) {
    y -= 1.0 / x;
    x += 1.0;
  } else if (x < 10.0) {
    while (x > 2.0) {
      x -= 1.0;
      y += 1.0 / x;
    }
  }
  if (x >= 1.0 && x <= 2.0) { /* (x - root) (Y + R(x - 1)), the root in three parts */
    double g = x - 1569415565.0 / 1073741824.0;
    g -= (381566830.0 / 1073741824.0) / 1073741824.0;
    g -= 0.9016312093258695918615325266959189453125e-19;
    const double big = (double)0.99558162689208984f;
    const double r = fastad_polevl(x - 1.0, p, 5) / fastad_polevl(x - 1.0, q, 6);
    return y + (g * big + g * r);
  }
  double s = 0.0;
  if (x < 1.0e17) {
    const double z = 1.0 / (x * x);
    s = z * fastad_polevl(z, asy, 6);
  }
  return y + (log(x) - 0.5 / x - s);
}

/* x log(y) and x log1p(y): 0 where x is 0 and y is not NaN (SciPy's
 * xlogy, a template: float in float arithmetic). */
static inline double fastad_xlogy_d(double x, double y) {
  return (x == 0 && y == y) ? 0.0 : x * log(y);
}
static inline float fastad_xlogy_f(float x, float y) {
  return (x == 0 && y == y) ? 0.0f : x * logf(y);
}
static inline double fastad_xlog1py_d(double x, double y) {
  return (x == 0 && y == y) ? 0.0 : x * log1p(y);
}
static inline float fastad_xlog1py_f(float x, float y) {
  return (x == 0 && y == y) ? 0.0f : x * log1pf(y);
}

#endif
