/* The runtime's thread policy (see parallel.h): OpenMP runs our loops on N threads and OpenBLAS
 * is pinned to one thread, its pool never started: large GEMMs are split over our own threads by
 * cnn_gemm (gemm.c). Two pools on two cores spin against each other (measured: PyTorch's LeNet
 * step is 3x faster with OpenBLAS on 1 thread). */
#include "cnn/parallel.h"

#include <omp.h>

void openblas_set_num_threads(int n);

static int nthreads = 0; /* 0 until first asked: then OpenMP's default (cores or OMP_NUM_THREADS) */

static void init(void) {
  if (nthreads) return;
  nthreads = omp_get_max_threads();
  openblas_set_num_threads(1);
}

void cnn_parallel_set_threads(int n) {
  init();
  if (n < 1) n = 1;
  nthreads = n;
  omp_set_num_threads(n);
}

int cnn_parallel_get_threads(void) {
  init();
  return nthreads;
}
