/* One threading policy for the whole runtime: OpenMP runs our kernels on N threads; OpenBLAS runs
 * on one (GEMMs go through cnn_gemm, which splits big products over our threads), so the two pools
 * never oversubscribe the cores. */
#ifndef CNN_PARALLEL_H
#define CNN_PARALLEL_H

void cnn_parallel_set_threads(int n); /* n >= 1 */
int cnn_parallel_get_threads(void);
/* Minimum elements before an elementwise loop goes parallel. */
#define CNN_PARALLEL_GRAIN 32768

#endif
