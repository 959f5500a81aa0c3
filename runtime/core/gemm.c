/* GEMM over our threads (see gemm.h). A product is split only when it is big enough for the
 * split to pay (about a million multiply-adds a thread); panels are whole rows of C (or whole
 * columns when C is wide and short) so threads never write the same cache line of C's interior. */
#include "cnn/gemm.h"
#include "cnn/parallel.h"

#include <cblas.h>
#include <omp.h>

#define SPLIT_FLOPS 2000000.0

static void serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void cnn_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { /* BLAS would reject lda < 1 */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
    return;
  }
  int threads = omp_in_parallel() ? 1 : cnn_parallel_get_threads();
  double flops = (double)m * (double)n * (double)k;
  if (threads <= 1 || flops < SPLIT_FLOPS * threads || (m < 16 && n < 64)) {
    serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  bool by_rows = m >= n || n < 64;
#pragma omp parallel num_threads(threads)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t total = by_rows ? m : n, align = by_rows ? 1 : 16;
    int64_t chunk = ((total + nt - 1) / nt + align - 1) / align * align;
    int64_t lo = id * chunk, hi = lo + chunk < total ? lo + chunk : total;
    if (lo < hi) {
      if (by_rows) /* rows lo..hi of op(A) and of C */
        serial(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
      else /* columns lo..hi of op(B) and of C */
        serial(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
    }
  }
}
