/* GEMM over our threads (see gemm.h). A product is split only when it is big enough for the
 * split to pay: half a million multiply-adds a thread, ~6 us of sgemm here against ~1 us to hand a
 * panel to a worker (LeNet's first linear layer, 3M, splits; its second, 0.6M, does not). Panels
 * are whole rows of C (or whole columns when C is wide and short) so threads never write the same
 * cache line of C's interior; one per thread, so a thread count always cuts a product the same. */
#include "core/gemm.h"
#include "core/gemm_avx512.h"
#include "core/parallel.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_FLOPS 500000.0

static int backend = -1; /* cnn_gemm_backend; -1 until the first product reads CNN_GEMM */

void cnn_gemm_set_backend(cnn_gemm_backend b) { backend = b; }

cnn_gemm_backend cnn_gemm_get_backend(void) {
  if (backend < 0) { /* benign race: every thread reads the same environment */
    const char *e = getenv("CNN_GEMM");
    backend = e && strcmp(e, "openblas") == 0 ? CNN_GEMM_OPENBLAS
              : e && strcmp(e, "own") == 0    ? CNN_GEMM_OWN
                                              : CNN_GEMM_AUTO;
  }
  return (cnn_gemm_backend)backend;
}

/* Whether a product runs on the AVX-512 kernel (gemm_avx512.c): decided once for the whole product,
 * before it is cut into panels, so every thread count runs it on the same code. */
bool cnn_gemm_picks_own(bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  cnn_gemm_backend be = cnn_gemm_get_backend();
  if (be == CNN_GEMM_OPENBLAS || !cnn_gemm_avx512_available()) return false;
  if (be == CNN_GEMM_OWN) return true;
  /* measured (scripts/tools/gemm_bench.c): the kernel wins 1.2-2.8x on the networks' products but
   * one row of A (a batch of 16 or fewer) against a wide row-major B, which streams B from memory
   * (a linear layer's input gradient): OpenBLAS measured 5-10% faster there */
  (void)k;
  if (!ta && !tb && m <= 16 && n >= 2048) return false;
  return true;
}

static void serial(bool own, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (n == 1) {    /* a matrix times a vector: sgemv streams A once, where the GEMM kernels pack the
                 * vector and fill one column of their tiles (1024 x 1024 @ v: 3x PyTorch's time) */
    if (beta == 0) /* y is not read: garbage (NaN) there must not reach the sum through 0 * y */
      for (int64_t i = 0; i < m; i++) c[i * ldc] = 0;
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, (int)(ta ? k : m), (int)(ta ? m : k), alpha, a, (int)lda,
                b, tb ? 1 : (int)ldb, beta, c, (int)ldc);
    return;
  }
  if (own && cnn_gemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

typedef struct {
  bool own, ta, tb, by_rows;
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
      serial(j->own, j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, j->ta ? j->a + lo : j->a + lo * j->lda, j->lda, j->b,
             j->ldb, j->beta, j->c + lo * j->ldc, j->ldc);
    else /* columns lo..hi of op(B) and of C */
      serial(j->own, j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, j->tb ? j->b + lo * j->ldb : j->b + lo,
             j->ldb, j->beta, j->c + lo, j->ldc);
  }
}

/* Fills j for one product and returns its panels: 1 when it runs whole. */
static int64_t plan(gemm_job *j, const cnn_gemm_args *g, int threads) {
  *j = (gemm_job){cnn_gemm_picks_own(g->trans_a, g->trans_b, g->m, g->n, g->k),
                  g->trans_a,
                  g->trans_b,
                  true,
                  g->m,
                  g->n,
                  g->k,
                  g->lda,
                  g->ldb,
                  g->ldc,
                  g->m,
                  g->alpha,
                  g->beta,
                  g->a,
                  g->b,
                  g->c};
  double flops = (double)g->m * (double)g->n * (double)g->k;
  if (threads <= 1 || flops < SPLIT_FLOPS * threads || (g->m < 16 && g->n < 64)) return 1;
  j->by_rows = g->m >= g->n || g->n < 64;
  int64_t total = j->by_rows ? g->m : g->n, align = j->by_rows ? 1 : 16;
  j->chunk = ((total + threads - 1) / threads + align - 1) / align * align;
  return (total + j->chunk - 1) / j->chunk;
}

void cnn_gemm_many(int count, const cnn_gemm_args *g) {
  const int threads = cnn_parallel_nested() ? 1 : cnn_parallel_get_threads();
  for (; count > 0; count -= CNN_PARALLEL_MAX_LOOPS, g += CNN_PARALLEL_MAX_LOOPS) {
    gemm_job jobs[CNN_PARALLEL_MAX_LOOPS];
    cnn_parallel_loop loops[CNN_PARALLEL_MAX_LOOPS];
    int nl = 0;
    for (int i = 0; i < count && i < CNN_PARALLEL_MAX_LOOPS; i++) {
      const cnn_gemm_args *p = &g[i];
      if (p->m <= 0 || p->n <= 0) continue;
      if (p->k <= 0) { /* BLAS would reject lda < 1 */
        for (int64_t r = 0; r < p->m; r++)
          for (int64_t c = 0; c < p->n; c++) p->c[r * p->ldc + c] = p->beta == 0 ? 0 : p->beta * p->c[r * p->ldc + c];
        continue;
      }
      loops[nl] = (cnn_parallel_loop){plan(&jobs[nl], p, threads), 1, gemm_panels, &jobs[nl]};
      nl++;
    }
    if (nl) cnn_parallel_loops(nl, loops);
  }
}

void cnn_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  const cnn_gemm_args g = {ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc};
  cnn_gemm_many(1, &g);
}
