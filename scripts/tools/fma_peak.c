/* fma_peak: the machine's single-precision FMA peak, measured (scripts/tools/bench's peak column).
 *
 *   build/fma_peak [--threads 1,2] [--seconds 0.25] [--repeats 5]
 *
 * Each thread runs 12 independent chains of vector FMAs (acc = acc * m + a) on registers only:
 * 12 chains cover the FMA latency (4 cycles) times the FMA pipes (2) with room to spare, so the
 * loop runs at the core's FMA throughput. AVX-512 (16 floats a register) when the CPU has it
 * (__builtin_cpu_supports), AVX2 + FMA (8 floats) otherwise, SSE (no FMA) as a last resort; the
 * wide paths are compiled with target attributes, so the build itself never needs AVX-512. One
 * FMA counts as 2 FLOPs. For each thread count the best of --repeats timed windows is the peak
 * (a shared machine only ever makes a window slower). Prints one line:
 *
 *   RESULT isa=avx512 peak_gflops_1=254.1 cpu_peak_gflops_1=255.0 peak_gflops_2=489.7 cpu_peak_gflops_2=509.8
 *
 * peak_gflops_T: FLOPs of T threads over the wall time from the first one's start to the last one's
 * end (what T threads deliver, so lower on a busy machine); cpu_peak_gflops_T: each thread's FLOPs
 * over its own CPU time, summed (the rate of T cores while they run, which load does not lower;
 * it assumes T cores, one a thread).
 */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAINS 12

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* Each kernel: `iters` rounds of 12 FMAs; returns a value that depends on every chain (so the
 * compiler keeps them all) and the FLOPs done. */
__attribute__((target("avx512f"))) static float fma_avx512(long iters, double *flops) {
  __m512 acc[CHAINS];
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps(1.0f + (float)c);
  for (long i = 0; i < iters; i++) {
    /* written out so that every chain stays in a register */
    acc[0] = _mm512_fmadd_ps(acc[0], m, a);
    acc[1] = _mm512_fmadd_ps(acc[1], m, a);
    acc[2] = _mm512_fmadd_ps(acc[2], m, a);
    acc[3] = _mm512_fmadd_ps(acc[3], m, a);
    acc[4] = _mm512_fmadd_ps(acc[4], m, a);
    acc[5] = _mm512_fmadd_ps(acc[5], m, a);
    acc[6] = _mm512_fmadd_ps(acc[6], m, a);
    acc[7] = _mm512_fmadd_ps(acc[7], m, a);
    acc[8] = _mm512_fmadd_ps(acc[8], m, a);
    acc[9] = _mm512_fmadd_ps(acc[9], m, a);
    acc[10] = _mm512_fmadd_ps(acc[10], m, a);
    acc[11] = _mm512_fmadd_ps(acc[11], m, a);
  }
  __m512 s = acc[0];
  for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
  *flops = (double)iters * CHAINS * 16 * 2;
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters, double *flops) {
  __m256 acc[CHAINS];
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps(1.0f + (float)c);
  for (long i = 0; i < iters; i++) {
    acc[0] = _mm256_fmadd_ps(acc[0], m, a);
    acc[1] = _mm256_fmadd_ps(acc[1], m, a);
    acc[2] = _mm256_fmadd_ps(acc[2], m, a);
    acc[3] = _mm256_fmadd_ps(acc[3], m, a);
    acc[4] = _mm256_fmadd_ps(acc[4], m, a);
    acc[5] = _mm256_fmadd_ps(acc[5], m, a);
    acc[6] = _mm256_fmadd_ps(acc[6], m, a);
    acc[7] = _mm256_fmadd_ps(acc[7], m, a);
    acc[8] = _mm256_fmadd_ps(acc[8], m, a);
    acc[9] = _mm256_fmadd_ps(acc[9], m, a);
    acc[10] = _mm256_fmadd_ps(acc[10], m, a);
    acc[11] = _mm256_fmadd_ps(acc[11], m, a);
  }
  __m256 s = acc[0];
  for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  *flops = (double)iters * CHAINS * 8 * 2;
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

/* no FMA unit: a multiply and an add per element, counted as the 2 FLOPs they are */
static float fma_scalar(long iters, double *flops) {
  float acc[CHAINS * 4];
  for (int c = 0; c < CHAINS * 4; c++) acc[c] = 1.0f + (float)c;
  for (long i = 0; i < iters; i++)
    for (int c = 0; c < CHAINS * 4; c++) acc[c] = acc[c] * 0.999999f + 1e-7f;
  float s = 0;
  for (int c = 0; c < CHAINS * 4; c++) s += acc[c];
  *flops = (double)iters * CHAINS * 4 * 2;
  return s;
}

typedef float (*kernel_fn)(long, double *);

typedef struct {
  kernel_fn fn;
  long iters;
  double flops;
  float sink;
  double t0, t1;     /* this thread's own start and end (wall clock) */
  double cpu0, cpu1; /* and its CPU time at both */
  pthread_barrier_t *start;
} job;

static void *worker(void *p) {
  job *j = p;
  pthread_barrier_wait(j->start);
  j->t0 = now();
  j->cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
  j->sink = j->fn(j->iters, &j->flops);
  j->cpu1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
  j->t1 = now();
  return NULL;
}

/* GFLOP/s of `threads` threads each running `iters` rounds, timed from the first thread's start to
 * the last one's end (the threads' own clocks: the main thread being descheduled changes nothing).
 * *cpu_rate: the sum over threads of FLOPs / that thread's CPU time, what the threads do while they
 * run: the peak of `threads` cores of their own, which a busy machine leaves intact. */
static double measure(kernel_fn fn, int threads, long iters, float *sink, double *cpu_rate) {
  pthread_t tid[64];
  job jobs[64];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job){fn, iters, 0, 0, 0, 0, 0, 0, &start};
    if (pthread_create(&tid[t], NULL, worker, &jobs[t]) != 0) {
      fprintf(stderr, "fma_peak: cannot start a thread\n");
      exit(1);
    }
  }
  pthread_barrier_wait(&start);
  double flops = 0, t0 = 0, t1 = 0;
  *cpu_rate = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    flops += jobs[t].flops;
    *cpu_rate += jobs[t].flops / (jobs[t].cpu1 - jobs[t].cpu0 > 1e-9 ? jobs[t].cpu1 - jobs[t].cpu0 : 1e-9) * 1e-9;
    *sink += jobs[t].sink;
    if (t == 0 || jobs[t].t0 < t0) t0 = jobs[t].t0;
    if (t == 0 || jobs[t].t1 > t1) t1 = jobs[t].t1;
  }
  pthread_barrier_destroy(&start);
  return flops / (t1 - t0) * 1e-9;
}

int main(int argc, char **argv) {
  const char *threads_arg = "1,2";
  double seconds = 0.25;
  int repeats = 5;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads_arg = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--repeats") == 0) repeats = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: fma_peak [--threads 1,2] [--seconds 0.25] [--repeats 5]\n");
      return 2;
    }
  }
  if (seconds <= 0 || repeats < 1) {
    fprintf(stderr, "fma_peak: --seconds and --repeats must be positive\n");
    return 2;
  }
  __builtin_cpu_init();
  kernel_fn fn = fma_scalar;
  const char *isa = "scalar";
  if (__builtin_cpu_supports("avx512f")) fn = fma_avx512, isa = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) fn = fma_avx2, isa = "avx2";

  /* calibrate: iterations for `seconds` on one thread, from the fastest of 20 short runs (a busy
   * machine stretches some of them), at least 2^16 rounds (about 0.1 ms at 255 GFLOP/s) */
  float sink = 0;
  const long probe = 1 << 16;
  double fastest = 1e30;
  for (int r = 0; r < 20; r++) {
    double dummy, t0 = now();
    sink += fn(probe, &dummy);
    double dt = now() - t0;
    if (dt < fastest) fastest = dt;
  }
  double want = (double)probe * seconds / (fastest > 1e-9 ? fastest : 1e-9);
  long iters = want < (double)probe ? probe : want > 1e12 ? (long)1e12 : (long)want;
  printf("RESULT isa=%s", isa);
  const char *p = threads_arg;
  while (*p) {
    char *end;
    long threads = strtol(p, &end, 10);
    if (end == p || threads < 1 || threads > 64) {
      fprintf(stderr, "fma_peak: bad --threads '%s' (a list like 1,2; 1 to 64)\n", threads_arg);
      return 2;
    }
    double best = 0, best_cpu = 0;
    for (int r = 0; r < repeats; r++) {
      double c, g = measure(fn, (int)threads, iters, &sink, &c);
      if (g > best) best = g;
      if (c > best_cpu) best_cpu = c;
    }
    printf(" peak_gflops_%ld=%.1f cpu_peak_gflops_%ld=%.1f", threads, best, threads, best_cpu);
    p = *end == ',' ? end + 1 : end;
  }
  printf(" sink=%g\n", (double)sink);
  return 0;
}
