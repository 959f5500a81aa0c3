/* One threading policy for the whole runtime: OpenMP runs our kernels on N threads; OpenBLAS is
 * given N threads for GEMMs called outside our parallel regions and 1 inside them, so the two
 * never oversubscribe the cores. */
#ifndef CNN_PARALLEL_H
#define CNN_PARALLEL_H

#include <stdbool.h>

void cnn_parallel_set_threads(int n);  /* n >= 1 */
int cnn_parallel_get_threads(void);
/* Around an OpenMP region whose threads each call cblas_sgemm: OpenBLAS runs single-threaded
 * inside it (each of our threads does its own GEMM), and gets the runtime's count back after.
 *   cnn_parallel_blas_serial(true); #pragma omp parallel for ... ; cnn_parallel_blas_serial(false); */
void cnn_parallel_blas_serial(bool on);
/* Minimum elements before an elementwise loop goes parallel. */
#define CNN_PARALLEL_GRAIN 32768

#endif
