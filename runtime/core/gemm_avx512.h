/* The runtime's own AVX-512 SGEMM, behind cnn_gemm (gemm.h), which picks it or OpenBLAS per product.
 * Serial: cnn_gemm cuts a product into panels over the threads and calls this on each. Row-major. */
#ifndef CNN_CORE_GEMM_AVX512_H
#define CNN_CORE_GEMM_AVX512_H

#include <stdbool.h>
#include <stdint.h>

/* True when this build has the kernel (compiled with AVX-512F) and the CPU runs it. */
bool cnn_gemm_avx512_available(void);

/* C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, as cblas_sgemm (m, n, k >= 1). Each
 * element of C sums its k products in the same order whatever m and n are, so a product cut into
 * row or column panels gives the bits it gives whole. False, C untouched, when the per-thread
 * packing buffers cannot be had (the caller takes OpenBLAS) or the kernel is not compiled in. */
bool cnn_gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

#endif
