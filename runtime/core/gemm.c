/* GEMM over our threads (see gemm.h). A product is split only when it is big enough for the
 * split to pay: half a million multiply-adds a thread, ~6 us of sgemm here against ~1 us to hand a
 * panel to a worker (LeNet's first linear layer, 3M, splits; its second, 0.6M, does not); panels are whole rows of C (or whole
 * columns when C is wide and short) so threads never write the same cache line of C's interior. */
#include "core/gemm.h"
#include "core/parallel.h"

#include <cblas.h>

#define SPLIT_FLOPS 500000.0

static void serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

typedef struct {
  bool ta, tb, by_rows;
  int64_t m, n, k, lda, ldb, ldc, chunk;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm_job;

/* panels [p0, p1) of chunk rows (by_rows) or columns of C */
static void gemm_panels(void *arg, int64_t p0, int64_t p1) {
  const gemm_job *j = arg;
  for (int64_t p = p0; p < p1; p++) {
    int64_t total = j->by_rows ? j->m : j->n, lo = p * j->chunk, hi = lo + j->chunk < total ? lo + j->chunk : total;
    if (lo >= hi) continue;
    if (j->by_rows) /* rows lo..hi of op(A) and of C */
      serial(j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, j->ta ? j->a + lo : j->a + lo * j->lda, j->lda, j->b, j->ldb,
             j->beta, j->c + lo * j->ldc, j->ldc);
    else /* columns lo..hi of op(B) and of C */
      serial(j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, j->tb ? j->b + lo * j->ldb : j->b + lo, j->ldb,
             j->beta, j->c + lo, j->ldc);
  }
}

void cnn_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { /* BLAS would reject lda < 1 */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
    return;
  }
  int threads = cnn_parallel_nested() ? 1 : cnn_parallel_get_threads();
  double flops = (double)m * (double)n * (double)k;
  if (threads <= 1 || flops < SPLIT_FLOPS * threads || (m < 16 && n < 64)) {
    serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  /* one panel per thread, as many as there are threads: the same cut for the same count */
  bool by_rows = m >= n || n < 64;
  int64_t total = by_rows ? m : n, align = by_rows ? 1 : 16;
  int64_t chunk = ((total + threads - 1) / threads + align - 1) / align * align;
  gemm_job j = {ta, tb, by_rows, m, n, k, lda, ldb, ldc, chunk, alpha, beta, a, b, c};
  cnn_parallel_for((total + chunk - 1) / chunk, 1, gemm_panels, &j);
}
