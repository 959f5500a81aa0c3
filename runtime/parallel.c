/* The runtime's thread policy (see parallel.h): OpenMP for our loops, OpenBLAS given the same
 * count for calls made outside our own parallel regions. */
#include "cnn/parallel.h"

#include <omp.h>

void openblas_set_num_threads(int n);

static int nthreads = 0; /* 0 until first asked: then OpenMP's default (cores or OMP_NUM_THREADS) */

void cnn_parallel_set_threads(int n) {
  if (n < 1) n = 1;
  nthreads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cnn_parallel_get_threads(void) {
  if (nthreads == 0) nthreads = omp_get_max_threads();
  return nthreads;
}

void cnn_parallel_blas_serial(bool on) { openblas_set_num_threads(on ? 1 : cnn_parallel_get_threads()); }
