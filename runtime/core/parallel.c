/* The runtime's thread pool (see parallel.h). One job at a time: fn over [0, n) cut into `parts`
 * even parts (one a thread), each cut into `sub` even tasks, dealt out in one block of tasks per
 * thread (its part of each loop: of a batch's loops, the same images). Every thread, the
 * submitter first, claims tasks by compare-and-swap on a 64-bit word per block (job id : 32, low
 * end : 16, high end : 16): its own block from the low end, then the others' from the high end.
 * A task runs once, on whoever is awake; a worker that wakes late finds the blocks spent, or
 * stamped with a later job id, and claims nothing. The submitter waits only for claimed tasks.
 * The pool's state is guarded by `lock` (held by the submitter for a whole job) but for the
 * atomics, which the workers read. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "core/parallel.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cnn/error.h"

void openblas_set_num_threads(int n);
/* OpenBLAS's pthread build starts its own workers when it loads (they spin ~0.1 s in sched_yield,
 * then sleep); with one thread they never get work. Its shutdown joins them. Weak: other builds
 * of OpenBLAS have no such thing. */
int blas_thread_shutdown_(void) __attribute__((weak));

/* Tasks a loop is cut into per thread: a late thread leaves less behind, and a thread that finishes
 * its block first takes the other's last tasks. At 4, ResNet-20's 32x32 convolutions (batch 128 on
 * 2 threads) came in tasks of 16 images, and the submitting thread waited 0.13 s of an 8 s run for
 * the other's last one; at 8 (tasks of 8 images) it waited 0.02 s. */
#define TASKS_PER_THREAD 8
_Static_assert(CNN_PARALLEL_MAX_LOOPS *CNN_PARALLEL_MAX_THREADS *TASKS_PER_THREAD <= 0xffff,
               "a job's tasks are counted in 16 bits");
#define WORKER_STACK (2u << 20)

/* Spinning and contention. A worker waiting for the next job and the submitter waiting for the
 * last claimed task spin up to spin_budget ns before they sleep: on an idle machine a long spin
 * bridges the serial gaps of a training step (a sleeping worker wakes 10-50 us late). When another
 * program wants the cores, our threads get descheduled: a spinning thread sees the clock jump past
 * PREEMPTED_NS between two looks, or the submitter waits past STALL_NS (and twice its own longest
 * task) for a worker's task. Two such signs close together (contention_sign) are contention: the budget drops to nothing, and for a quiet
 * spell a job that finds every worker asleep runs on the submitting thread alone (a worker holding
 * a task while the other program has its core would stall the whole step; one thread at full
 * speed is faster). After the spell the workers are woken again and the budget doubles back at
 * each job that found them asleep, until contention shows again. The spell doubles when contention
 * is back right after one (a busy machine is probed less and less often), up to QUIET_MAX_NS, and
 * halves (down to QUIET_MIN_NS) after a calm stretch. */
#define SPIN_MAX_NS 500000L
#define PREEMPTED_NS 100000L
#define STALL_NS 500000L
#define QUIET_MIN_NS 50000000L
#define QUIET_MAX_NS 1600000000L
static _Atomic long spin_budget = SPIN_MAX_NS, last_contended = LONG_MIN / 2, quiet = QUIET_MIN_NS;

static void note_contention(long t) {
  long q = atomic_load_explicit(&quiet, memory_order_relaxed);
  long since = t - atomic_load_explicit(&last_contended, memory_order_relaxed);
  if (since > q) /* a new spell (within one, the spell stands) */
    atomic_store_explicit(&quiet,
                          since < 2 * q ? (2 * q < QUIET_MAX_NS ? 2 * q : QUIET_MAX_NS)
                                        : (q / 2 > QUIET_MIN_NS ? q / 2 : QUIET_MIN_NS),
                          memory_order_relaxed);
  atomic_store_explicit(&last_contended, t, memory_order_relaxed);
  atomic_store_explicit(&spin_budget, 0, memory_order_relaxed);
}

/* One sign is not contention: on an idle machine the system's own threads deschedule ours now and
 * then (a 3 s LeNet-5 run on two threads saw 3-8 stalls, probes and preempted spins, each of which
 * sent the loops alone for a spell: 5-12% of its jobs, 0.2-0.4 s of split loops on one thread).
 * A busy machine gives a sign every few ms: a sign within CONFIRM_NS of the one before is contention. */
#define CONFIRM_NS 100000000L
static _Atomic long last_sign = LONG_MIN / 2;

static void contention_sign(long t) {
  if (t - atomic_exchange_explicit(&last_sign, t, memory_order_relaxed) < CONFIRM_NS) note_contention(t);
}

static _Atomic bool force_alone;

void cnn_parallel_force_alone(bool on) { atomic_store(&force_alone, on); }

static bool contended(long t) {
  if (atomic_load_explicit(&force_alone, memory_order_relaxed)) return true;
  return t - atomic_load_explicit(&last_contended, memory_order_relaxed) <
         atomic_load_explicit(&quiet, memory_order_relaxed);
}

/* A thread's block of the current job's tasks: id << 32 | lo << 16 | hi. The owner takes lo,
 * others take hi - 1 once their own block is empty; a claim is a compare-and-swap that also
 * checks the job id. */
typedef struct {
  alignas(64) _Atomic uint64_t w;
} block;

static block blocks[CNN_PARALLEL_MAX_THREADS];
static uint32_t block_first[CNN_PARALLEL_MAX_THREADS + 1]; /* the submitter's: where each block starts */

static struct {
  alignas(64) _Atomic uint32_t gen;  /* id of the latest job: idle workers wait for it to change */
  _Atomic uint32_t sleepers;         /* workers asleep (or about to be) on gen */
  _Atomic int stop;                  /* set with a new gen: workers exit */
  alignas(64) _Atomic uint32_t done; /* tasks of the current job finished */
  _Atomic uint32_t waiting;          /* the submitter sleeps on done */
  alignas(64) struct {               /* the current job's loops, written before its blocks */
    cnn_parallel_fn fn;
    void *ctx;
    int64_t n, parts, sub, count; /* count = parts x sub tasks */
  } loop[CNN_PARALLEL_MAX_LOOPS];
  uint32_t task[CNN_PARALLEL_MAX_LOOPS * CNN_PARALLEL_MAX_THREADS * TASKS_PER_THREAD]; /* loop << 16 | task */
  int nloops;
  uint32_t count;      /* tasks in the job */
  _Atomic int nblocks; /* blocks of the job: the thread count */
  uint32_t id;         /* the last job id handed out */
  int threads;         /* the configured count: 0 before init */
  int workers;         /* running: at most threads - 1 */
  bool start_failed;   /* a lazy start fell short: not retried until set_threads or a fork */
  pthread_t *tid;
  pthread_mutex_t lock;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* CNN_PARALLEL_STATS=1 in the environment: counts of what the loops did, printed to stderr at
 * exit (how many parallel regions a training step opens: run a number of steps twice and divide
 * the differences), and the wall time the submitting threads spent in loops (outermost calls
 * only): loops of two tasks or more on the pool, or on one thread (one thread configured, or run
 * alone), and loops of one task. With one thread, the rest of the run's time is what no second
 * thread can shorten (Amdahl's serial part: Lua, the autograd engine, allocation). */
static bool stats_on;
static _Atomic uint64_t n_jobs, n_job_loops, n_alone, n_serial, ns_pool, ns_split_alone, ns_one_task;

static inline void tally(_Atomic uint64_t *c, uint64_t v) {
  if (stats_on) atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void print_stats(void) {
  fprintf(stderr,
          "cnn parallel stats: %llu jobs on the pool (%llu loops in them), %llu run alone (busy machine or pool "
          "taken), %llu serial (one task, one thread or nested)\n",
          (unsigned long long)atomic_load(&n_jobs), (unsigned long long)atomic_load(&n_job_loops),
          (unsigned long long)atomic_load(&n_alone), (unsigned long long)atomic_load(&n_serial));
  fprintf(stderr,
          "cnn parallel stats: %.3f s in loops on the pool, %.3f s in splittable loops on one thread, %.3f s in "
          "one-task loops\n",
          (double)atomic_load(&ns_pool) * 1e-9, (double)atomic_load(&ns_split_alone) * 1e-9,
          (double)atomic_load(&ns_one_task) * 1e-9);
}

static _Thread_local int tl_slot;    /* 0: a submitting thread; workers 1.. */
static _Thread_local bool tl_inside; /* running a job's fn (workers: always) */

static long futex(_Atomic uint32_t *addr, int op, uint32_t val) {
  return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Spins until (*w == v) == equal or the budget is spent: true when it happened. */
static bool spin_until(_Atomic uint32_t *w, uint32_t v, bool equal) {
  const long budget = atomic_load_explicit(&spin_budget, memory_order_relaxed);
  long start = 0, last = 0;
  for (unsigned i = 1;; i++) {
    if ((atomic_load_explicit(w, memory_order_acquire) == v) == equal) return true;
    cpu_relax();
    if ((i & 63) == 0) { /* ~2 us of pauses */
      long t = now_ns();
      if (!start) start = last = t;
      if (t - last > PREEMPTED_NS) { /* descheduled while spinning */
        contention_sign(t);
        return false;
      }
      if (t - start >= budget) return false;
      last = t;
    }
  }
}

/* Involuntary context switches of the submitting thread, counted over windows of PROBE_NS: two or
 * more in one window mean another program took this thread's core, which is contention too. The
 * clock jumps of spin_until see it only while a thread spins; a program in another session (its own
 * scheduling group) takes its share by preempting ours every few ms, between jobs as well, and with
 * the budget at nothing our threads rarely spin: 70% of LeNet's jobs still went to both threads,
 * at 0.64x the speed of one thread alone. */
#define PROBE_NS 20000000L
#define PROBE_SWITCHES 2
static _Thread_local long tl_probe_t, tl_probe_switches = -1;

static void probe_preemption(void) {
  const long t = now_ns();
  if (t - tl_probe_t < PROBE_NS) return;
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return;
  /* only a recent window counts: switches spread over a long pause between jobs are not a busy machine */
  if (tl_probe_switches >= 0 && t - tl_probe_t < 2 * PROBE_NS && ru.ru_nivcsw - tl_probe_switches >= PROBE_SWITCHES)
    contention_sign(t);
  tl_probe_t = t, tl_probe_switches = ru.ru_nivcsw;
}

bool cnn_parallel_contended(void) { return contended(now_ns()); }

/* A job found a worker asleep: after a quiet spell, spin longer. */
static void spin_more(void) {
  long b = atomic_load_explicit(&spin_budget, memory_order_relaxed);
  if (b >= SPIN_MAX_NS || contended(now_ns())) return;
  atomic_store_explicit(&spin_budget, b * 2 + 2000 < SPIN_MAX_NS ? b * 2 + 2000 : SPIN_MAX_NS, memory_order_relaxed);
}

/* Claims a task of job `id` from block b, from its low end (the owner) or its high end. */
static bool claim(int b, uint32_t id, bool low, uint32_t *task) {
  uint64_t w = atomic_load_explicit(&blocks[b].w, memory_order_acquire);
  for (;;) {
    uint32_t lo = (uint32_t)(w >> 16) & 0xffff, hi = (uint32_t)w & 0xffff;
    if ((uint32_t)(w >> 32) != id || lo >= hi) return false;
    uint64_t nw = low ? w + (1u << 16) : w - 1;
    if (atomic_compare_exchange_weak_explicit(&blocks[b].w, &w, nw, memory_order_acq_rel, memory_order_acquire)) {
      *task = low ? lo : hi - 1;
      return true;
    }
  }
}

/* Runs task t of the current job (claimed: the job cannot end, and its fields change, before the
 * task is counted done). */
static void run_task(uint32_t t) {
  const int k = (int)(P.task[t] >> 16);
  const int64_t c = P.task[t] & 0xffff, sub = P.loop[k].sub;
  int64_t lo, hi, b, e;
  cnn_parallel_part(P.loop[k].n, P.loop[k].parts, c / sub, &lo, &hi);
  cnn_parallel_part(hi - lo, sub, c % sub, &b, &e);
  P.loop[k].fn(P.loop[k].ctx, lo + b, lo + e);
  if (atomic_fetch_add(&P.done, 1) + 1 == P.count && atomic_load(&P.waiting)) futex(&P.done, FUTEX_WAKE_PRIVATE, 1);
}

/* Runs tasks of job `id` until none is left: this slot's block first (consecutive loops give a
 * thread the same share of the data, still in its cache), then the other blocks from their
 * far end. With `longest`, sets it to the longest task's time (ns). */
static void run_tasks(uint32_t id, int slot, long *longest) {
  const int nb = atomic_load_explicit(&P.nblocks, memory_order_relaxed); /* a later job's: its claims fail */
  uint32_t t;
  for (int k = slot < nb ? 0 : 1; k <= nb; k++) {
    const int b = (slot + k) % nb;
    while (claim(b, id, k == 0, &t)) {
      long t0 = longest ? now_ns() : 0;
      run_task(t);
      if (longest) {
        long dt = now_ns() - t0;
        if (dt > *longest) *longest = dt;
      }
    }
  }
}

/* arg: the worker's slot, and the job id current when it was created (<< 16): a worker that
 * starts late must still see a stop or a job published after its creation */
static void *worker_main(void *arg) {
  tl_slot = (int)((uintptr_t)arg & 0xffff);
  tl_inside = true;
  uint32_t seen = (uint32_t)((uintptr_t)arg >> 16);
  for (;;) {
    if (!spin_until(&P.gen, seen, false)) {
      atomic_fetch_add(&P.sleepers, 1);
      while (atomic_load(&P.gen) == seen) futex(&P.gen, FUTEX_WAIT_PRIVATE, seen);
      atomic_fetch_sub(&P.sleepers, 1);
    }
    seen = atomic_load_explicit(&P.gen, memory_order_acquire);
    if (atomic_load(&P.stop)) return NULL;
    run_tasks(seen, tl_slot, NULL);
  }
}

/* Publishes a job id with no tasks (workers wake, look, go back to waiting). */
static void bump_gen(void) {
  atomic_store(&P.gen, ++P.id);
  if (atomic_load(&P.sleepers)) futex(&P.gen, FUTEX_WAKE_PRIVATE, INT_MAX);
}

/* Joins every worker. Under lock. */
static void stop_workers(void) {
  if (!P.workers) return;
  atomic_store(&P.stop, 1);
  bump_gen();
  for (int i = 0; i < P.workers; i++) pthread_join(P.tid[i], NULL);
  atomic_store(&P.stop, 0);
  P.workers = 0;
}

/* Starts workers until `want` run. Under lock. Returns 0, or the pthread_create error. */
static int start_workers(int want) {
  if (want <= P.workers) return 0;
  pthread_t *tid = realloc(P.tid, sizeof *tid * (size_t)want);
  if (!tid) return ENOMEM;
  P.tid = tid;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr)) return ENOMEM;
  pthread_attr_setstacksize(&attr, WORKER_STACK);
  /* workers take no signals: Ctrl-C and the like go to the threads that run Lua */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  while (P.workers < want) {
    uintptr_t arg = (uintptr_t)P.id << 16 | (uintptr_t)(P.workers + 1);
    rc = pthread_create(&P.tid[P.workers], &attr, worker_main, (void *)arg);
    if (rc) break;
    P.workers++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return rc;
}

/* fork: the prepare handler takes the lock, so no job is half published; the child has none of
 * the parent's workers and starts its own at its first job. */
static void before_fork(void) { pthread_mutex_lock(&P.lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&P.lock); }
static void after_fork_child(void) {
  P.workers = 0;
  P.start_failed = false;
  atomic_store(&P.sleepers, 0);
  atomic_store(&P.stop, 0);
  atomic_store(&P.waiting, 0);
  pthread_mutex_init(&P.lock, NULL);
}

/* OMP_NUM_THREADS as OpenMP reads it: a count, or a list "4,2" whose first entry counts here,
 * spaces around; anything else (abc, 0, -1, 1e2, 4abc) is said once on stderr and the CPUs' count
 * used, as libgomp says of an invalid value, where it was read as far as it went or ignored. */
static int default_threads(void) {
  cpu_set_t set;
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  n = n < 1 ? 1 : n > CNN_PARALLEL_MAX_THREADS ? CNN_PARALLEL_MAX_THREADS : n;
  const char *env = getenv("OMP_NUM_THREADS");
  if (!env || !*env) return n;
  char *end;
  errno = 0;
  long v = strtol(env, &end, 10);
  while (*end == ' ' || *end == '\t') end++;
  if (end == env || errno || (*end && *end != ',') || v < 1) {
    fprintf(stderr,
            "cnn: OMP_NUM_THREADS='%s' is not a thread count (a positive integer, or a list such as 4,2); "
            "using %d\n",
            env, n);
    return n;
  }
  if (v > CNN_PARALLEL_MAX_THREADS) {
    fprintf(stderr, "cnn: OMP_NUM_THREADS=%ld is more threads than the %d the runtime runs; using %d\n", v,
            CNN_PARALLEL_MAX_THREADS, CNN_PARALLEL_MAX_THREADS);
    return CNN_PARALLEL_MAX_THREADS;
  }
  return (int)v;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
  P.threads = default_threads();
  openblas_set_num_threads(1);
  if (blas_thread_shutdown_) blas_thread_shutdown_();
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
  const char *st = getenv("CNN_PARALLEL_STATS");
  if (st && *st && strcmp(st, "0") != 0) {
    stats_on = true;
    atexit(print_stats);
  }
}

int cnn_parallel_get_threads(void) {
  pthread_once(&init_once, init);
  return P.threads;
}

int cnn_parallel_set_threads(int n) {
  pthread_once(&init_once, init);
  if (n < 1 || n > CNN_PARALLEL_MAX_THREADS)
    return cnn_error_set("expected 1..%d threads, got %d", CNN_PARALLEL_MAX_THREADS, n);
  pthread_mutex_lock(&P.lock);
  int rc = 0;
  if (n - 1 < P.workers) stop_workers();
  int err = start_workers(n - 1);
  if (err) {
    int started = P.workers;
    stop_workers(); /* the old count's workers start again at the next job */
    rc = cnn_error_set("cannot start %d threads: thread %d failed (%s); still using %d", n, started + 2, strerror(err),
                       P.threads);
  } else {
    P.threads = n;
  }
  P.start_failed = false;
  pthread_mutex_unlock(&P.lock);
  return rc;
}

int cnn_parallel_slot(void) { return tl_slot; }

bool cnn_parallel_nested(void) { return tl_inside; }

/* Tasks of a loop of n indices: at least a grain each, at most TASKS_PER_THREAD a thread. */
static int64_t tasks_of(int64_t n, int64_t grain, int threads) {
  int64_t tasks = n / (grain < 1 ? 1 : grain), cap = (int64_t)threads * TASKS_PER_THREAD;
  return tasks < 1 ? 1 : tasks > cap ? cap : tasks;
}

/* The loops run on this thread alone, one after the other; `nested` as they would be on the
 * pool, so loops inside them run the same way (serially) whoever runs them and the bits do not
 * depend on the machine's load. */
static void run_alone(int count, const cnn_parallel_loop *loops, bool nested) {
  bool was = tl_inside;
  tl_inside = nested || was;
  for (int k = 0; k < count; k++)
    if (loops[k].n > 0) loops[k].fn(loops[k].ctx, 0, loops[k].n);
  tl_inside = was;
}

static void loops_on(int count, const cnn_parallel_loop *loops, _Atomic uint64_t **where);

void cnn_parallel_loops(int count, const cnn_parallel_loop *loops) {
  for (; count > CNN_PARALLEL_MAX_LOOPS; count -= CNN_PARALLEL_MAX_LOOPS, loops += CNN_PARALLEL_MAX_LOOPS)
    cnn_parallel_loops(CNN_PARALLEL_MAX_LOOPS, loops);
  pthread_once(&init_once, init);
  if (!stats_on || tl_inside) {
    loops_on(count, loops, NULL);
    return;
  }
  _Atomic uint64_t *where = &ns_pool;
  const long t0 = now_ns();
  loops_on(count, loops, &where);
  tally(where, (uint64_t)(now_ns() - t0));
}

/* Runs the loops; *where (when given) is set to the stats' timer for how they ran. */
static void loops_on(int count, const cnn_parallel_loop *loops, _Atomic uint64_t **where) {
  const int threads = cnn_parallel_get_threads();
  int64_t total = 0;
  for (int k = 0; k < count; k++)
    if (loops[k].n > 0) total += loops[k].n / (loops[k].grain < 1 ? 1 : loops[k].grain) >= 2 ? 2 : 1;
  if (threads < 2 || tl_inside || total < 2) { /* less than two tasks: no loop at all */
    tally(&n_serial, 1);
    if (where) *where = total < 2 ? &ns_one_task : &ns_split_alone;
    run_alone(count, loops, false);
    return;
  }
  probe_preemption();
  if (pthread_mutex_trylock(&P.lock)) { /* another thread of the process has the pool */
    tally(&n_alone, 1);
    if (where) *where = &ns_split_alone;
    run_alone(count, loops, true);
    return;
  }
  if (P.workers < threads - 1 && !P.start_failed && start_workers(threads - 1)) P.start_failed = true;
  if (!P.workers || (atomic_load(&P.sleepers) == (uint32_t)P.workers && contended(now_ns()))) {
    pthread_mutex_unlock(&P.lock); /* no workers, or another program has the cores: this thread alone */
    tally(&n_alone, 1);
    if (where) *where = &ns_split_alone;
    run_alone(count, loops, true);
    return;
  }
  uint32_t tasks = 0;
  P.nloops = 0;
  for (int k = 0; k < count; k++) {
    if (loops[k].n <= 0) continue;
    /* tasks of at least a grain: fewer than threads, one part each; else threads parts of an equal
     * number of tasks (each thread's block, below, is its part: a loop over a batch gives a thread
     * the same images whatever its grain, as the loops before and after it) */
    const int64_t n = loops[k].n, t = tasks_of(n, loops[k].grain, threads);
    const int64_t parts = t < threads ? t : threads, sub = t / parts;
    P.loop[P.nloops].fn = loops[k].fn, P.loop[P.nloops].ctx = loops[k].ctx;
    P.loop[P.nloops].n = n, P.loop[P.nloops].parts = parts, P.loop[P.nloops].sub = sub;
    P.loop[P.nloops].count = parts * sub;
    tasks += (uint32_t)P.loop[P.nloops].count;
    P.nloops++;
  }
  const uint32_t all = tasks;
  /* Block b holds the b-th share of every loop, in loop order: a thread takes the same share of
   * the data in each loop of a job (and of consecutive jobs: the same images of a batch), and the
   * long tasks of a loop dealt beside short ones (a convolution's weight-gradient parts beside its
   * bias channels) start at once on every thread instead of one thread's block holding two. */
  uint32_t at = 0;
  for (int b = 0; b < threads; b++) {
    block_first[b] = at;
    for (int k = 0; k < P.nloops; k++)
      for (int64_t c = P.loop[k].count * b / threads, e = P.loop[k].count * (b + 1) / threads; c < e; c++)
        P.task[at++] = (uint32_t)k << 16 | (uint32_t)c;
  }
  block_first[threads] = at;
  tally(&n_jobs, 1);
  tally(&n_job_loops, (uint64_t)P.nloops);
  P.count = all;
  atomic_store_explicit(&P.done, 0, memory_order_relaxed);
  atomic_store_explicit(&P.nblocks, threads, memory_order_relaxed);
  const uint32_t id = ++P.id;
  for (int b = 0; b < threads; b++) {
    uint64_t lo = block_first[b], hi = block_first[b + 1];
    atomic_store_explicit(&blocks[b].w, (uint64_t)id << 32 | lo << 16 | hi, memory_order_release);
  }
  atomic_store(&P.gen, id);
  uint32_t asleep = atomic_load(&P.sleepers);
  if (asleep) {
    futex(&P.gen, FUTEX_WAKE_PRIVATE, (int)(asleep < all - 1 ? asleep : all - 1));
    spin_more();
  }
  tl_inside = true;
  long longest = 0;
  run_tasks(id, 0, &longest);
  const long t0 = now_ns();
  if (!spin_until(&P.done, all, true)) { /* a claimed task still runs: sleep until it ends */
    atomic_store(&P.waiting, 1);
    for (uint32_t d; (d = atomic_load(&P.done)) != all;) futex(&P.done, FUTEX_WAIT_PRIVATE, d);
    atomic_store(&P.waiting, 0);
    const long t1 = now_ns(); /* a stall: a worker descheduled with a task in hand */
    if (t1 - t0 > STALL_NS && t1 - t0 > 2 * longest) contention_sign(t1);
  }
  tl_inside = false;
  pthread_mutex_unlock(&P.lock);
}

void cnn_parallel_for(int64_t n, int64_t grain, cnn_parallel_fn fn, void *ctx) {
  const cnn_parallel_loop loop = {n, grain, fn, ctx};
  cnn_parallel_loops(1, &loop);
}

int64_t cnn_parallel_grain(int64_t items, int64_t work) {
  if (items < 2 || work < CNN_PARALLEL_GRAIN) return items < 1 ? 1 : items; /* one range */
  int64_t grain = (int64_t)((double)items * (CNN_PARALLEL_GRAIN / 2) / (double)work);
  return grain < 1 ? 1 : grain;
}

void cnn_parallel_items(int64_t items, int64_t work, cnn_parallel_fn fn, void *ctx) {
  cnn_parallel_for(items, cnn_parallel_grain(items, work), fn, ctx);
}
