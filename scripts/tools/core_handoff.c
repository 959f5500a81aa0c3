/* core_handoff: what it costs this machine to hand data from one core to the other (scripts/tools/
 * bench_busy's note beside the two-threads-over-one ratio).
 *
 *   build/core_handoff [--kb 256] [--passes 2000] [--repeats 5]
 *
 * A buffer of --kb KiB is updated in place (x = x * 0.999 + 1: a read and a write of every float, as
 * SGD's update or a loop writing what the next one reads) --passes times: first by one thread, then
 * by two threads pinned to the first two CPUs of the affinity mask taking turns, so every pass starts
 * with the buffer in the other core's cache. The best of --repeats runs of each is kept (a busy
 * machine only ever makes a run slower). Prints one line:
 *
 *   RESULT kb=256 one_core_us=1.75 handoff_us=22.6 ratio=12.9 handoff_gbps=11.6
 *
 * one_core_us: a pass that finds the buffer in its own core's cache; handoff_us: a pass that finds it
 * in the other core's; handoff_gbps: the buffer's bytes over handoff_us. A parallel loop whose
 * threads read what the other thread wrote pays handoff_us - one_core_us per such buffer, which is
 * what caps the gain of a second thread on a small network's training step (LeNet-5's parameters,
 * 241 KiB, are updated, then read by both threads, every step). Needs two CPUs; with one it prints
 * handoff_us=- and exits 0. */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_* */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *buf;
static size_t nfloats;
static long passes;
static int cpus[2];
static _Atomic long turn; /* the pass number to run next: even passes thread 0's, odd thread 1's */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void update(void) {
  for (size_t i = 0; i < nfloats; i++) buf[i] = buf[i] * 0.999f + 1.0f;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* thread `who` (0 or 1) runs the passes of its parity, each once the other has run the one before */
static void take_turns(int who) {
  for (long p = who; p < passes; p += 2) {
    while (atomic_load_explicit(&turn, memory_order_acquire) != p) {}
    update();
    atomic_store_explicit(&turn, p + 1, memory_order_release);
  }
}

static void *second(void *arg) {
  (void)arg;
  take_turns(1);
  return NULL;
}

static double one_core(void) {
  pin(cpus[0]);
  double t0 = now();
  for (long p = 0; p < passes; p++) update();
  return (now() - t0) / (double)passes;
}

/* seconds a pass with the two threads taking turns, or -1 when the second CPU cannot be used */
static double handed(void) {
  pin(cpus[0]);
  atomic_store(&turn, 0);
  /* the second thread starts on its CPU (an attribute, so a CPU it may not use fails the create) */
  pthread_attr_t attr;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[1], &set);
  pthread_t t;
  if (pthread_attr_init(&attr) != 0) return -1;
  int rc = pthread_attr_setaffinity_np(&attr, sizeof set, &set);
  if (rc == 0) rc = pthread_create(&t, &attr, second, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) return -1;
  double t0 = now();
  take_turns(0);
  while (atomic_load_explicit(&turn, memory_order_acquire) != passes) {}
  double dt = now() - t0;
  pthread_join(t, NULL);
  return dt / (double)passes;
}

int main(int argc, char **argv) {
  long kb = 256, repeats = 5;
  passes = 2000;
  for (int i = 1; i < argc; i++) {
    long *opt = !strcmp(argv[i], "--kb")        ? &kb
                : !strcmp(argv[i], "--passes")  ? &passes
                : !strcmp(argv[i], "--repeats") ? &repeats
                                                : NULL;
    if (!opt || i + 1 >= argc || (*opt = strtol(argv[i + 1], NULL, 10)) < 1 || *opt > (1L << 20)) {
      fprintf(stderr, "usage: core_handoff [--kb 256] [--passes 2000] [--repeats 5] (each 1..1048576)\n");
      return 2;
    }
    i++;
  }
  passes += passes % 2; /* whole turns */
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) CPU_ZERO(&set);
  int found = 0;
  for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
    if (CPU_ISSET(c, &set)) cpus[found++] = c;
  nfloats = (size_t)kb * 1024 / sizeof(float);
  buf = aligned_alloc(64, (nfloats * sizeof(float) + 63) / 64 * 64);
  if (!buf) {
    fprintf(stderr, "core_handoff: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nfloats; i++) buf[i] = (float)(i % 7);
  double one = 1e30, two = 1e30;
  for (long r = 0; r < repeats; r++) {
    double a = one_core(), b = found == 2 ? handed() : -1;
    if (a < one) one = a;
    if (b > 0 && b < two) two = b;
  }
  if (two >= 1e30) {
    printf("RESULT kb=%ld one_core_us=%.2f handoff_us=- ratio=- handoff_gbps=-\n", kb, one * 1e6);
    return 0;
  }
  printf("RESULT kb=%ld one_core_us=%.2f handoff_us=%.2f ratio=%.1f handoff_gbps=%.1f\n", kb, one * 1e6, two * 1e6,
         two / one, (double)nfloats * sizeof(float) / two * 1e-9);
  free(buf);
  return 0;
}
