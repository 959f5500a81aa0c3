/* The runtime's thread pool (the thread count is the public cnn/parallel.h's): one pool of its own
 * on pthreads runs every parallel loop (no OpenMP); OpenBLAS is held to one thread (GEMMs go through
 * cnn_gemm, which splits big products over this pool), so two pools never compete for the cores.
 *
 * cnn_parallel_for cuts [0, n) into ranges that the calling thread and the workers claim one at
 * a time: a worker that is asleep, or descheduled because another program has its core, holds up
 * nobody but the ranges it already took, and the caller does the rest. Idle workers spin briefly
 * (the next loop of a training step usually comes within microseconds), then sleep on a futex.
 *
 * Fork: a child forked at any time outside a parallel loop (fork(), posix.fork, core.process.fork)
 * starts its own workers at its first parallel loop, with the parent's thread count, and computes
 * the same bits as the parent would. Nothing needs calling: pthread_atfork handlers do it.
 *
 * Determinism: a loop's result must not depend on how [0, n) is cut nor on which thread runs a
 * range. Work that keeps per-thread partial sums splits into cnn_parallel_get_threads() fixed
 * parts (a range per part index, grain 1) and adds the partials in part order: the same bits for
 * the same thread count, whoever ran the parts.
 *
 * CNN_PARALLEL_STATS=1 in the environment prints, at exit, how many jobs went to the pool (and how
 * many loops they held), how many ran alone and how many were too small to split: run a script
 * for two numbers of steps and divide the differences to get the parallel regions a step opens. */
#ifndef CNN_CORE_PARALLEL_H
#define CNN_CORE_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

#include "cnn/parallel.h" /* the thread count */

/* fn(ctx, begin, end) handles indices [begin, end). */
typedef void (*cnn_parallel_fn)(void *ctx, int64_t begin, int64_t end);

/* Runs fn over ranges covering [0, n), each at least `grain` indices long (but the last), on this
 * thread and the workers, and returns when all are done. Runs fn(ctx, 0, n) right here when there
 * is less than two grains of work, one thread, or when called from inside another loop's fn; and
 * on this thread alone (still as a loop: see cnn_parallel_nested) when another thread of the
 * process has the pool or another program has the cores. */
void cnn_parallel_for(int64_t n, int64_t grain, cnn_parallel_fn fn, void *ctx);

/* For tests: while on, every loop the pool would take runs on the calling thread alone, as it
 * does beside a busy program. */
void cnn_parallel_force_alone(bool on);

/* Whether loops now run on the calling thread alone because another program has the cores (or
 * cnn_parallel_force_alone is on): for tests and statistics. */
bool cnn_parallel_contended(void);

/* cnn_parallel_for over `items` independent work items that read or write `work` elements in
 * all: parallel from CNN_PARALLEL_GRAIN elements of work, in ranges of at least half that. */
void cnn_parallel_items(int64_t items, int64_t work, cnn_parallel_fn fn, void *ctx);
/* The grain cnn_parallel_items uses (items itself below CNN_PARALLEL_GRAIN elements of work). */
int64_t cnn_parallel_grain(int64_t items, int64_t work);

/* Independent loops run as one: their tasks are dealt out together and the call returns when all
 * are done, one wait instead of one per loop (a convolution's weight-gradient parts beside its
 * bias channels). Each loop is cut as cnn_parallel_for would cut it; loops nested in any of them
 * run serially. More than CNN_PARALLEL_MAX_LOOPS run in several goes. */
typedef struct cnn_parallel_loop {
  int64_t n, grain;
  cnn_parallel_fn fn;
  void *ctx;
} cnn_parallel_loop;
#define CNN_PARALLEL_MAX_LOOPS 4
void cnn_parallel_loops(int count, const cnn_parallel_loop *loops);

/* Inside fn: this thread's slot, 0..threads-1, distinct among the threads running one
 * cnn_parallel_for (index per-thread scratch with it). 0 outside. */
int cnn_parallel_slot(void);

/* True inside the fn of a cnn_parallel_for of two grains or more, whichever thread runs it: loops
 * nested there run serially, so what a loop computes never depends on where it ran. */
bool cnn_parallel_nested(void);

/* Part p of n items cut into `parts` consecutive parts as even as can be (the first n % parts
 * one longer): [*lo, *hi). For work kept in per-part partials. */
static inline void cnn_parallel_part(int64_t n, int64_t parts, int64_t p, int64_t *lo, int64_t *hi) {
  int64_t q = n / parts, r = n % parts;
  *lo = p * q + (p < r ? p : r);
  *hi = *lo + q + (p < r);
}

/* Minimum elements before an elementwise loop goes parallel. */
#define CNN_PARALLEL_GRAIN 32768
/* The same for a streaming pass (a flop or two an element: SGD's update, bytes to floats): below
 * it the second thread gains less than the wait costs and the data's trip between the cores'
 * caches (LeNet's 48,000-weight layer took twice the CPU time on two threads as on one). */
#define CNN_PARALLEL_STREAM_GRAIN (4 * CNN_PARALLEL_GRAIN)

#endif
