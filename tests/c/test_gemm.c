/* gemm.c and gemm_avx512.c: cnn_gemm under each backend against a naive double-precision triple loop
 * written here, over random shapes and the edge sizes of the AVX-512 kernel's blocking (1, MR +- 1,
 * NR +- 1, KC +- 1 and their multiples), all four transpose combinations, alpha and beta (beta 0
 * must ignore NaN in C), leading dimensions past the matrix, matrix-vector products (sgemv); and the
 * same bits on 1 and 2 threads (cnn_gemm cuts a product the same whatever the thread count). */
#include "check.h"
#include "cnn/parallel.h"
#include "core/gemm.h"
#include "core/gemm_avx512.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The kernel's blocking (gemm_avx512.c): MR rows, NR columns, KC depth, MC rows, NC columns. */
enum { MR = 12, NR = 32, KC = 256, MC = 240, NC = 512 };

static uint64_t seed = 0x9e3779b97f4a7c15ull;

typedef struct {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  float *a, *b, *c0; /* operands and C's starting value */
} problem;

static void problem_make(problem *p, bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t pad, float alpha,
                         float beta) {
  *p = (problem){ta, tb, m, n, k, 0, 0, 0, alpha, beta, NULL, NULL, NULL};
  int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  p->lda = ac + pad, p->ldb = bc + pad, p->ldc = n + pad;
  p->a = malloc((size_t)(ar * p->lda) * sizeof(float));
  p->b = malloc((size_t)(br * p->ldb) * sizeof(float));
  p->c0 = malloc((size_t)(m * p->ldc) * sizeof(float));
  for (int64_t i = 0; i < ar * p->lda; i++) p->a[i] = check_urand(&seed);
  for (int64_t i = 0; i < br * p->ldb; i++) p->b[i] = check_urand(&seed);
  /* beta 0 must overwrite C without reading it: NaN there catches a read */
  for (int64_t i = 0; i < m * p->ldc; i++) p->c0[i] = beta == 0 ? NAN : check_urand(&seed);
}

static void problem_free(problem *p) {
  free(p->a);
  free(p->b);
  free(p->c0);
}

/* C through cnn_gemm on `threads` threads with backend be: a fresh copy of c0 */
static float *run(const problem *p, cnn_gemm_backend be, int threads) {
  float *c = malloc((size_t)(p->m * p->ldc) * sizeof(float));
  memcpy(c, p->c0, (size_t)(p->m * p->ldc) * sizeof(float));
  cnn_gemm_set_backend(be);
  cnn_parallel_set_threads(threads);
  cnn_gemm(p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, c, p->ldc);
  return c;
}

/* Every element of C against the double-precision sum, to a tolerance scaled by the sum of
 * |products| (float rounding grows with k); the padding between rows must be untouched. */
static void check_against_naive(const problem *p, const float *c, const char *what) {
  int bad = 0;
  for (int64_t i = 0; i < p->m && bad < 3; i++)
    for (int64_t j = 0; j < p->ldc && bad < 3; j++) {
      float got = c[i * p->ldc + j], c0 = p->c0[i * p->ldc + j];
      if (j >= p->n) {
        if (!(got == c0 || (isnan(got) && isnan(c0)))) {
          fprintf(stderr, "%s: padding C[%lld, %lld] written\n", what, (long long)i, (long long)j);
          bad++;
        }
        continue;
      }
      double s = 0, mag = 0;
      for (int64_t q = 0; q < p->k; q++) {
        double x = p->ta ? p->a[q * p->lda + i] : p->a[i * p->lda + q];
        double y = p->tb ? p->b[j * p->ldb + q] : p->b[q * p->ldb + j];
        s += x * y, mag += fabs(x * y);
      }
      double want = p->alpha * s + (p->beta == 0 ? 0 : p->beta * (double)c0);
      double tol = 1e-6 * (16 + sqrt((double)p->k)) *
                   (fabs(p->alpha) * mag + (p->beta == 0 ? 0 : fabs(p->beta * (double)c0)) + 1e-30);
      if (!(fabs(got - want) <= tol)) {
        fprintf(stderr, "%s: %c%c m %lld n %lld k %lld alpha %g beta %g: C[%lld, %lld] = %.9g, want %.9g\n", what,
                p->ta ? 'T' : 'N', p->tb ? 'T' : 'N', (long long)p->m, (long long)p->n, (long long)p->k,
                (double)p->alpha, (double)p->beta, (long long)i, (long long)j, (double)got, want);
        bad++;
      }
    }
  failures += bad;
}

/* One shape under every backend, on 1 and 2 threads; the kernel's bits must not depend on threads
 * (where the kernel is not built, OWN is OpenBLAS, whose panels may round differently). */
static void check_shape(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t pad, float alpha, float beta) {
  problem p;
  problem_make(&p, ta, tb, m, n, k, pad, alpha, beta);
  float *own1 = run(&p, CNN_GEMM_OWN, 1), *own2 = run(&p, CNN_GEMM_OWN, 2);
  float *blas = run(&p, CNN_GEMM_OPENBLAS, 1), *autob = run(&p, CNN_GEMM_AUTO, 2);
  check_against_naive(&p, own1, "own, 1 thread");
  check_against_naive(&p, blas, "openblas");
  check_against_naive(&p, autob, "auto, 2 threads");
  check_against_naive(&p, own2, "own, 2 threads");
  if (cnn_gemm_avx512_available() && memcmp(own1, own2, (size_t)(m * p.ldc) * sizeof(float)) != 0) {
    fprintf(stderr, "own: %c%c m %lld n %lld k %lld differs on 1 and 2 threads\n", ta ? 'T' : 'N', tb ? 'T' : 'N',
            (long long)m, (long long)n, (long long)k);
    failures++;
  }
  free(own1);
  free(own2);
  free(blas);
  free(autob);
  problem_free(&p);
}

static int64_t pick(const int64_t *v, int n) { return v[(int)((check_urand(&seed) + 1) * 0.5f * (float)n) % n]; }

int main(void) {
  printf("AVX-512 kernel %s\n", cnn_gemm_avx512_available() ? "available" : "not in this build");
  /* the blocking's edges: every transpose, sizes around MR, NR, KC */
  const int64_t ms[] = {1, MR - 1, MR, MR + 1, 2 * MR + 5, 48, 49, MC - 1, MC + 1};
  const int64_t ns[] = {1, 15, 16, 17, NR - 1, NR, NR + 1, 2 * NR + 7, NC + 3};
  const int64_t ks[] = {1, 2, 17, KC - 1, KC, KC + 1, 2 * KC + 9};
  for (int t = 0; t < 4; t++) {
    bool ta = t & 1, tb = t & 2;
    for (int i = 0; i < 9; i++) check_shape(ta, tb, ms[i], NR + 1, 33, 0, 1, 0);
    for (int i = 0; i < 9; i++) check_shape(ta, tb, MR + 1, ns[i], 33, 3, 1, 1);
    for (int i = 0; i < 7; i++) check_shape(ta, tb, 2 * MR + 1, 2 * NR + 5, ks[i], 0, 1, 0);
  }
  /* alpha and beta: each combination, every transpose */
  const float alphas[] = {1, -0.5f, 2}, betas[] = {0, 1, 0.25f};
  for (int t = 0; t < 4; t++)
    for (int x = 0; x < 3; x++)
      for (int y = 0; y < 3; y++) check_shape(t & 1, t & 2, 29, 45, 70, 1, alphas[x], betas[y]);
  /* random shapes, padded leading dimensions, big enough that 2 threads split them */
  const int64_t sizes[] = {1, 3, 11, 13, 31, 33, 64, 100, 130, 257, 300};
  for (int r = 0; r < 40; r++) {
    int t = r % 4;
    check_shape(t & 1, t & 2, pick(sizes, 11), pick(sizes, 11), pick(sizes, 11), r % 3 ? 0 : 5, r % 5 ? 1.0f : 0.5f,
                r % 2 ? 0 : 1.0f);
  }
  /* large enough for the NC block, the MC block and a 2-thread split at once */
  check_shape(false, false, 300, 1100, 600, 2, 1, 1);
  check_shape(true, true, 260, 600, 530, 0, 1, 0);
  check_shape(false, true, 64, 1000, 300, 0, 1, 1);
  check_shape(true, false, 500, 200, 64, 0, 1, 0);
  /* few columns: A read in place, across the MC block */
  check_shape(false, false, 300, 100, 600, 3, 1, 1);
  check_shape(true, false, 260, 60, 530, 0, -1, 0);
  check_shape(false, true, 250, 17, 300, 1, 1, 0.5f);
  /* a matrix times a vector (n = 1: sgemv, the vector strided unless B is transposed, y every ldc),
   * long enough that 2 threads split the rows; beta 0 over NaN in C */
  check_shape(false, false, 1000, 1, 700, 2, 1, 0);
  check_shape(true, false, 900, 1, 300, 0, 0.5f, 0);
  check_shape(false, true, 700, 1, 900, 1, 1, 1);
  check_shape(true, true, 513, 1, 257, 3, -1, 0.25f);
  cnn_gemm_set_backend(CNN_GEMM_AUTO);
  return check_summary("test_gemm");
}
