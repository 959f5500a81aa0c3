/* random.c: reproducibility from a seed, fill order over views, sample statistics against the
 * distributions' known moments (tolerances ~5 standard errors), ranges, permutations, errors. */
#include "check.h"
#include "cnn/error.h"
#include "cnn/random.h"
#include "cnn/rng.h"
#include "cnn/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_error(const char *what, const char *msg) {
  if (strcmp(cnn_error_get(), msg) != 0) {
    fprintf(stderr, "%s: expected error \"%s\", got \"%s\"\n", what, msg, cnn_error_get());
    failures++;
  }
}

static void test_default_seed(void) {
  /* before any seed the stream is seed 0's (run first, nothing has drawn yet) */
  uint64_t x[4];
  for (int i = 0; i < 4; i++) x[i] = cnn_rng_next(cnn_rng_global());
  cnn_rng_seed(cnn_rng_global(), 0);
  for (int i = 0; i < 4; i++) CHECK(cnn_rng_next(cnn_rng_global()) == x[i]);
}

static void test_seeding(void) {
  uint64_t a[16], b[16];
  cnn_rng_seed(cnn_rng_global(), 42);
  for (int i = 0; i < 16; i++) a[i] = cnn_rng_next(cnn_rng_global());
  cnn_rng_seed(cnn_rng_global(), 42);
  for (int i = 0; i < 16; i++) b[i] = cnn_rng_next(cnn_rng_global());
  CHECK(memcmp(a, b, sizeof a) == 0);
  cnn_rng_seed(cnn_rng_global(), 43);
  int same = 0;
  for (int i = 0; i < 16; i++) same += cnn_rng_next(cnn_rng_global()) == a[i];
  CHECK(same == 0);

  /* whole tensors repeat too */
  int64_t n = 1000;
  cnn_tensor *t1 = cnn_tensor_empty(CNN_FLOAT32, 1, &n), *t2 = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  cnn_rng_seed(cnn_rng_global(), 7);
  CHECK(cnn_random_normal_(t1, 0, 1) == 0);
  cnn_rng_seed(cnn_rng_global(), 7);
  CHECK(cnn_random_normal_(t2, 0, 1) == 0);
  CHECK(memcmp(cnn_tensor_f32(t1), cnn_tensor_f32(t2), (size_t)n * sizeof(float)) == 0);
  cnn_rng_seed(cnn_rng_global(), 8);
  CHECK(cnn_random_normal_(t2, 0, 1) == 0);
  CHECK(memcmp(cnn_tensor_f32(t1), cnn_tensor_f32(t2), (size_t)n * sizeof(float)) != 0);
  cnn_tensor_release(t1);
  cnn_tensor_release(t2);
}

static void test_uniform01(void) {
  cnn_rng_seed(cnn_rng_global(), 1);
  double lo = 1, hi = 0, sum = 0;
  for (int i = 0; i < 100000; i++) {
    double u = cnn_rng_uniform01(cnn_rng_global());
    if (u < lo) lo = u;
    if (u > hi) hi = u;
    sum += u;
  }
  CHECK(lo >= 0 && hi < 1);
  /* mean 1/2, standard error sqrt(1/12 / 1e5) ~ 0.0009 */
  CHECK(fabs(sum / 100000 - 0.5) < 0.005);
}

static void test_uniform(void) {
  int64_t n = 100000;
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  cnn_rng_seed(cnn_rng_global(), 3);
  CHECK(cnn_random_uniform_(t, -2, 3) == 0);
  const float *p = cnn_tensor_f32(t);
  double sum = 0, sq = 0;
  int in_range = 1;
  for (int64_t i = 0; i < n; i++) {
    in_range &= p[i] >= -2.0f && p[i] < 3.0f;
    sum += p[i];
    sq += (double)p[i] * p[i];
  }
  CHECK(in_range);
  /* U(-2, 3): mean 0.5, variance 25/12; standard error of the mean 0.0046 */
  double mean = sum / (double)n, var = sq / (double)n - mean * mean;
  CHECK(fabs(mean - 0.5) < 0.025);
  CHECK(fabs(var - 25.0 / 12.0) < 0.05);

  /* hi is never produced even when rounding to float32 would reach it: [1, nextafter(1)) is {1} */
  float next = nextafterf(1.0f, 2.0f);
  CHECK(cnn_random_uniform_(t, 1.0, (double)next) == 0);
  int all_one = 1;
  for (int64_t i = 0; i < n; i++) all_one &= p[i] == 1.0f;
  CHECK(all_one);
  /* near 1e8 float32 steps by 8: [1e8, 1e8 + 7) holds only 1e8, and draws past 1e8 + 4 would
   * round up to float(hi) = 1e8 + 8 without the guard */
  CHECK(cnn_random_uniform_(t, 1e8, 1e8 + 7) == 0);
  int at_lo = 1;
  for (int64_t i = 0; i < n; i++) at_lo &= p[i] == 1e8f;
  CHECK(at_lo);
  /* lo == hi gives lo */
  CHECK(cnn_random_uniform_(t, 2.5, 2.5) == 0);
  CHECK(p[0] == 2.5f && p[n - 1] == 2.5f);
  cnn_tensor_release(t);
}

static void test_normal(void) {
  int64_t n = 100000;
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  cnn_rng_seed(cnn_rng_global(), 5);
  CHECK(cnn_random_normal_(t, 2, 3) == 0);
  const float *p = cnn_tensor_f32(t);
  double sum = 0, sq = 0;
  int64_t within1 = 0;
  for (int64_t i = 0; i < n; i++) {
    sum += p[i];
    sq += (double)p[i] * p[i];
    within1 += fabs(p[i] - 2.0) < 3.0;
  }
  /* N(2, 9): standard error of the mean 3/316 ~ 0.0095, of the std ~ 0.0067 */
  double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
  CHECK(fabs(mean - 2) < 0.05);
  CHECK(fabs(sd - 3) < 0.04);
  /* 68.27% within one std (standard error 0.0015) */
  CHECK(fabs((double)within1 / (double)n - 0.6827) < 0.008);
  /* std 0 gives the mean */
  CHECK(cnn_random_normal_(t, -1, 0) == 0);
  CHECK(p[0] == -1.0f && p[n - 1] == -1.0f);
  cnn_tensor_release(t);
}

static void test_view_order(void) {
  /* a (3, 4) transposed view of a (4, 3) tensor receives the same numbers, in its own row-major
   * order, as a contiguous (3, 4) one */
  cnn_tensor *c = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){3, 4});
  cnn_tensor *s = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){4, 3});
  cnn_tensor *v = cnn_tensor_transpose(s, 0, 1);
  for (int kind = 0; kind < 2; kind++) {
    cnn_rng_seed(cnn_rng_global(), 11);
    CHECK((kind ? cnn_random_normal_(c, 0, 1) : cnn_random_uniform_(c, 0, 1)) == 0);
    cnn_rng_seed(cnn_rng_global(), 11);
    CHECK((kind ? cnn_random_normal_(v, 0, 1) : cnn_random_uniform_(v, 0, 1)) == 0);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 4; j++) CHECK(cnn_tensor_get(c, (int64_t[]){i, j}) == cnn_tensor_get(v, (int64_t[]){i, j}));
  }
  /* a narrowed view writes only inside itself: columns 1..2 of a zero (2, 4) tensor */
  cnn_tensor *z = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){2, 4});
  cnn_tensor *nz = cnn_tensor_narrow(z, 1, 1, 2);
  CHECK(cnn_random_uniform_(nz, 5, 6) == 0);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++) {
      double x = cnn_tensor_get(z, (int64_t[]){i, j});
      CHECK(j == 1 || j == 2 ? (x >= 5 && x < 6) : x == 0);
    }
  /* 0-d */
  cnn_tensor *s0 = cnn_tensor_scalar(CNN_FLOAT32, 0);
  CHECK(cnn_random_uniform_(s0, 10, 11) == 0);
  CHECK(cnn_tensor_f32(s0)[0] >= 10 && cnn_tensor_f32(s0)[0] < 11);
  cnn_tensor *all[] = {c, s, v, z, nz, s0};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_randint(void) {
  cnn_rng_seed(cnn_rng_global(), 9);
  int64_t n = 10000;
  cnn_tensor *t = cnn_random_randint(-2, 3, 1, &n);
  CHECK(t && t->dtype == CNN_INT64 && t->ndim == 1 && t->size[0] == n);
  if (t) {
    int64_t hits[6] = {0};
    int in_range = 1;
    for (int64_t i = 0; i < n; i++) {
      int64_t x = cnn_tensor_i64(t)[i];
      in_range &= x >= -2 && x <= 3;
      if (x >= -2 && x <= 3) hits[x + 2]++;
    }
    CHECK(in_range);
    /* each of the 6 values ~1667 times (standard deviation ~37) */
    for (int v = 0; v < 6; v++) CHECK(hits[v] > 1450 && hits[v] < 1880);
  }
  cnn_tensor_release(t);

  t = cnn_random_randint(5, 5, 2, (int64_t[]){2, 3});
  CHECK(t && t->ndim == 2 && t->size[0] == 2 && t->size[1] == 3);
  for (int i = 0; t && i < 6; i++) CHECK(cnn_tensor_i64(t)[i] == 5);
  cnn_tensor_release(t);
  /* the whole int64 range (span 2^64) works */
  t = cnn_random_randint(INT64_MIN, INT64_MAX, 1, (int64_t[]){8});
  CHECK(t != NULL);
  cnn_tensor_release(t);
  t = cnn_random_randint(0, 1, 0, NULL);
  CHECK(t && t->ndim == 0 && (cnn_tensor_i64(t)[0] == 0 || cnn_tensor_i64(t)[0] == 1));
  cnn_tensor_release(t);

  cnn_error_clear();
  CHECK(cnn_random_randint(5, 3, 1, &n) == NULL);
  check_error("randint lo > hi", "expected lo <= hi but got lo=5, hi=3");
  CHECK(cnn_random_randint(0, 3, 1, (int64_t[]){-1}) == NULL);
}

static void test_randperm(void) {
  cnn_rng_seed(cnn_rng_global(), 13);
  int64_t n = 1000;
  cnn_tensor *t = cnn_random_randperm(n);
  CHECK(t && t->dtype == CNN_INT64 && t->ndim == 1 && t->size[0] == n);
  if (t) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1, moved = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t x = cnn_tensor_i64(t)[i];
      if (x < 0 || x >= n || seen[x]) ok = 0;
      else seen[x] = 1;
      moved += x != i;
    }
    CHECK(ok);
    CHECK(moved > 900); /* a random permutation fixes ~1 point on average */
    free(seen);
  }
  cnn_tensor_release(t);
  /* same seed, same permutation */
  cnn_rng_seed(cnn_rng_global(), 13);
  cnn_tensor *u = cnn_random_randperm(n);
  cnn_rng_seed(cnn_rng_global(), 13);
  t = cnn_random_randperm(n);
  CHECK(memcmp(cnn_tensor_i64(t), cnn_tensor_i64(u), (size_t)n * 8) == 0);
  cnn_tensor_release(t);
  cnn_tensor_release(u);

  t = cnn_random_randperm(0);
  CHECK(t && t->ndim == 1 && t->size[0] == 0);
  cnn_tensor_release(t);
  t = cnn_random_randperm(1);
  CHECK(t && cnn_tensor_i64(t)[0] == 0);
  cnn_tensor_release(t);
  cnn_error_clear();
  CHECK(cnn_random_randperm(-1) == NULL);
  check_error("randperm -1", "expected n >= 0 but got -1");
}

static void test_errors(void) {
  cnn_tensor *l = cnn_tensor_zeros(CNN_INT64, 1, (int64_t[]){3});
  cnn_tensor *f = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){3});
  cnn_error_clear();
  CHECK(cnn_random_uniform_(l, 0, 1) == -1);
  check_error("uniform int64", "expected a float32 tensor, got int64");
  cnn_error_clear();
  CHECK(cnn_random_normal_(l, 0, 1) == -1);
  check_error("normal int64", "expected a float32 tensor, got int64");
  cnn_error_clear();
  CHECK(cnn_random_uniform_(f, 1, 0) == -1);
  check_error("uniform lo > hi", "expected finite bounds with lo <= hi but got lo=1, hi=0");
  cnn_error_clear();
  CHECK(cnn_random_normal_(f, 0, -1) == -1);
  check_error("normal std < 0", "expected a finite mean and std >= 0 but got mean=0, std=-1");
  /* failed calls wrote nothing */
  for (int i = 0; i < 3; i++) CHECK(cnn_tensor_f32(f)[i] == 0 && cnn_tensor_i64(l)[i] == 0);
  cnn_tensor_release(l);
  cnn_tensor_release(f);
}

int main(void) {
  test_default_seed();
  test_seeding();
  test_uniform01();
  test_uniform();
  test_normal();
  test_view_order();
  test_randint();
  test_randperm();
  test_errors();
  return check_summary("test_random");
}
