/* The runtime's one entry to single-precision GEMM. Each product runs on the AVX-512 kernel of
 * gemm_avx512.c where the build and CPU have it and it measured faster for the shape
 * (cnn_gemm_picks_own), on OpenBLAS otherwise. OpenBLAS always runs single-threaded (its
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

/* Which code multiplies: AUTO picks per product (the AVX-512 kernel of gemm_avx512.c where this
 * build and CPU have it and it measured faster for the shape, OpenBLAS otherwise); the others force
 * one (OWN falls back to OpenBLAS where the kernel is not available). The environment variable
 * CNN_GEMM=openblas or CNN_GEMM=own sets it at the first product; tests and benchmarks set it here. */
typedef enum { CNN_GEMM_AUTO, CNN_GEMM_OPENBLAS, CNN_GEMM_OWN } cnn_gemm_backend;
void cnn_gemm_set_backend(cnn_gemm_backend b);
cnn_gemm_backend cnn_gemm_get_backend(void);
/* Whether a product of this shape runs on the AVX-512 kernel: decided for the whole product before
 * cnn_gemm cuts it into panels, so every thread count runs it on the same code. */
bool cnn_gemm_picks_own(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k);

#endif
