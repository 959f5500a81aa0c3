/** The runtime's threads: one pool of its own on pthreads runs every parallel loop of the kernels
 * (no OpenMP); OpenBLAS is held to one thread (large products are split over this pool instead), so
 * two pools never compete for the cores. A process forked outside a parallel loop starts its own
 * workers at its first loop, with the parent's thread count. Results depend on the thread count,
 * never on how the work was spread: the same count gives the same bits. */
#ifndef CNN_PARALLEL_H
#define CNN_PARALLEL_H

#ifdef __cplusplus
extern "C" {
#endif

/** The most threads cnn_parallel_set_threads accepts. */
#define CNN_PARALLEL_MAX_THREADS 1024

/** Sets the thread count (the calling thread plus n - 1 workers) and starts the workers. Returns
 * 0, or -1 with the error set when n is out of range or a worker could not be started (resource
 * limits): the count then stays what it was. Default: OMP_NUM_THREADS when set (a count, or a
 * list whose first entry counts; another value is reported on stderr and ignored), else the CPUs
 * this process may run on. */
int cnn_parallel_set_threads(int n);
/** The current thread count. */
int cnn_parallel_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
