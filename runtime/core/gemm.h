/* The runtime's one entry to single-precision GEMM. OpenBLAS always runs single-threaded (its
 * own pool would compete with ours, parallel.h, for the same cores); cnn_gemm splits a large
 * product into row or column panels over our threads instead, and runs serially when called from
 * inside a parallel loop (a conv's per-image GEMMs, for instance). Row-major, as cblas. */
#ifndef CNN_GEMM_H
#define CNN_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C. An empty product (k == 0) leaves
 * beta * C (zeros when beta is 0, whatever C held). */
void cnn_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Independent products in one parallel job (a linear layer's input and weight gradients): each
 * cut into the panels cnn_gemm would give it, so each gets cnn_gemm's bits. */
typedef struct cnn_gemm_args {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float alpha;
  const float *a;
  int64_t lda;
  const float *b;
  int64_t ldb;
  float beta;
  float *c;
  int64_t ldc;
} cnn_gemm_args;
void cnn_gemm_many(int count, const cnn_gemm_args *products);

#endif
