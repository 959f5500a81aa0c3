/* What the C benchmarks of scripts/tools (conv_bench.c, gemm_bench.c) share: the process's CPU
 * time (all threads: the rate of the cores while they run, which load on a shared machine distorts
 * least), reproducible operands and medians. Header-only: each benchmark is one file. */
#ifndef CNN_TOOLS_BENCH_UTIL_H
#define CNN_TOOLS_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* n floats in [-0.5, 0.5) from a linear congruential stream (*s: its state); free() them */
static float *rand_floats(size_t n, unsigned *s) {
  float *p = malloc(n * sizeof(float));
  if (!p) abort();
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    p[i] = (float)(*s >> 8) / 16777216.0f - 0.5f;
  }
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#endif
