/* One threading policy for the whole runtime: OpenMP runs our kernels on N threads; OpenBLAS is
 * given N threads for GEMMs called outside our parallel regions and 1 inside them, so the two
 * never oversubscribe the cores. */
#ifndef CNN_PARALLEL_H
#define CNN_PARALLEL_H

void cnn_parallel_set_threads(int n);  /* n >= 1 */
int cnn_parallel_get_threads(void);
/* Minimum elements before an elementwise loop goes parallel. */
#define CNN_PARALLEL_GRAIN 32768

#endif
