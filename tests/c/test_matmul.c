/* matmul.c: products against hand-worked values and a naive triple loop written here, over
 * contiguous, transposed, sliced and expanded operands; 1-d and batched broadcast shapes; errors. */
#include "check.h"
#include "cnn/error.h"
#include "cnn/matmul.h"
#include "cnn/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Small integers, so every product and sum below is exact in float32. */
static cnn_tensor *pattern(int ndim, const int64_t *size, int seed) {
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, ndim, size);
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) cnn_tensor_f32(t)[i] = (float)((i * 7 + seed * 3) % 11 - 5);
  return t;
}

static void check_shape(const cnn_tensor *t, int ndim, const int64_t *size) {
  CHECK(t != NULL);
  if (!t) return;
  CHECK(t->ndim == ndim);
  for (int d = 0; d < ndim && d < t->ndim; d++) CHECK(t->size[d] == size[d]);
}

/* Exact comparison of t (any strides) with the row-major values want. */
static void check_values(const cnn_tensor *t, const float *want, int64_t n) {
  if (!t) return;
  CHECK(cnn_tensor_numel(t) == n);
  for (int64_t i = 0; i < n; i++) {
    double g = cnn_tensor_get_flat(t, i);
    if (g != want[i]) {
      fprintf(stderr, "  element %lld: got %g want %g\n", (long long)i, g, (double)want[i]);
      failures++;
      return;
    }
  }
}

/* Naive (batch, m, k) x (batch, k, n) reference reading a and b through cnn_tensor_get with
 * broadcast batch indices: out[i] = sum_p a[ia, r, p] * b[ib, p, c]. Both are >= 3-d here. */
static float *naive_batched(const cnn_tensor *a, const cnn_tensor *b, const cnn_tensor *out) {
  int no = out->ndim, nbo = no - 2;
  int64_t m = out->size[no - 2], n = out->size[no - 1], k = a->size[a->ndim - 1];
  int64_t total = cnn_tensor_numel(out);
  float *ref = malloc((size_t)total * sizeof(float));
  int64_t oidx[CNN_MAX_DIMS], ia[CNN_MAX_DIMS], ib[CNN_MAX_DIMS];
  for (int64_t lin = 0; lin < total; lin++) {
    int64_t x = lin;
    for (int d = no - 1; d >= 0; d--) {
      oidx[d] = x % out->size[d];
      x /= out->size[d];
    }
    for (int d = 0; d < a->ndim - 2; d++) {
      int od = d + nbo - (a->ndim - 2);
      ia[d] = a->size[d] == 1 ? 0 : oidx[od];
    }
    for (int d = 0; d < b->ndim - 2; d++) {
      int od = d + nbo - (b->ndim - 2);
      ib[d] = b->size[d] == 1 ? 0 : oidx[od];
    }
    double s = 0;
    for (int64_t p = 0; p < k; p++) {
      ia[a->ndim - 2] = oidx[no - 2], ia[a->ndim - 1] = p;
      ib[b->ndim - 2] = p, ib[b->ndim - 1] = oidx[no - 1];
      s += cnn_tensor_get(a, ia) * cnn_tensor_get(b, ib);
    }
    ref[lin] = (float)s;
  }
  (void)m, (void)n;
  return ref;
}

static void test_2d(void) {
  /* [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]] */
  cnn_tensor *a = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  cnn_tensor *b = ftensor(2, (int64_t[]){3, 2}, (float[]){7, 8, 9, 10, 11, 12});
  cnn_tensor *c = cnn_mm_matmul(a, b);
  check_shape(c, 2, (int64_t[]){2, 2});
  check_values(c, (float[]){58, 64, 139, 154}, 4);
  cnn_tensor_release(c);
  c = cnn_mm_mm(a, b);
  check_values(c, (float[]){58, 64, 139, 154}, 4);
  cnn_tensor_release(c);

  /* the same operands as transposed views (stride[0] == 1): at equals a, bt equals b */
  cnn_tensor *as = ftensor(2, (int64_t[]){3, 2}, (float[]){1, 4, 2, 5, 3, 6});
  cnn_tensor *bs = ftensor(2, (int64_t[]){2, 3}, (float[]){7, 9, 11, 8, 10, 12});
  cnn_tensor *at = cnn_tensor_transpose(as, 0, 1), *bt = cnn_tensor_transpose(bs, 0, 1);
  CHECK(at->stride[0] == 1 && bt->stride[0] == 1);
  cnn_tensor *pairs[4][2] = {{at, b}, {a, bt}, {at, bt}, {a, b}};
  for (int i = 0; i < 4; i++) {
    c = cnn_mm_matmul(pairs[i][0], pairs[i][1]);
    check_values(c, (float[]){58, 64, 139, 154}, 4);
    cnn_tensor_release(c);
  }
  /* b^T x a^T = (a b)^T = [[58,139],[64,154]] */
  cnn_tensor *bt2 = cnn_tensor_transpose(b, 0, 1), *at2 = cnn_tensor_transpose(a, 0, 1);
  c = cnn_mm_matmul(bt2, at2);
  check_values(c, (float[]){58, 139, 64, 154}, 4);
  cnn_tensor_release(c);

  /* columns two apart fit no sgemm layout: (2, 3, 2) select last dim 0 -> strides (6, 2) */
  cnn_tensor *wide = ftensor(3, (int64_t[]){2, 3, 2}, (float[]){1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0});
  cnn_tensor *sliced = cnn_tensor_select(wide, 2, 0);
  c = cnn_mm_matmul(sliced, b);
  check_values(c, (float[]){58, 64, 139, 154}, 4);
  cnn_tensor_release(c);
  /* an expanded row: [[1,2,3],[1,2,3]] x b = [[58,64],[58,64]] */
  cnn_tensor *row = ftensor(1, (int64_t[]){3}, (float[]){1, 2, 3});
  cnn_tensor *ex = cnn_tensor_expand(row, 2, (int64_t[]){2, 3});
  c = cnn_mm_matmul(ex, b);
  check_values(c, (float[]){58, 64, 58, 64}, 4);
  cnn_tensor_release(c);

  cnn_tensor *all[] = {a, b, as, bs, at, bt, bt2, at2, wide, sliced, row, ex};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_1d(void) {
  cnn_tensor *u = ftensor(1, (int64_t[]){3}, (float[]){1, 2, 3});
  cnn_tensor *v = ftensor(1, (int64_t[]){3}, (float[]){4, 5, 6});
  /* 1*4 + 2*5 + 3*6 = 32, a 0-d result */
  cnn_tensor *c = cnn_mm_matmul(u, v);
  check_shape(c, 0, NULL);
  check_values(c, (float[]){32}, 1);
  cnn_tensor_release(c);

  /* [1, 2] x [[1,2,3],[4,5,6]] = [9, 12, 15] */
  cnn_tensor *w = ftensor(1, (int64_t[]){2}, (float[]){1, 2});
  cnn_tensor *m = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  c = cnn_mm_matmul(w, m);
  check_shape(c, 1, (int64_t[]){3});
  check_values(c, (float[]){9, 12, 15}, 3);
  cnn_tensor_release(c);
  /* [[1,2,3],[4,5,6]] x [4, 5, 6] = [32, 77] */
  c = cnn_mm_matmul(m, v);
  check_shape(c, 1, (int64_t[]){2});
  check_values(c, (float[]){32, 77}, 2);
  cnn_tensor_release(c);

  /* a strided vector: column 1 of m = [2, 5] (stride 3) */
  cnn_tensor *col = cnn_tensor_select(m, 1, 1);
  c = cnn_mm_matmul(col, m); /* [2,5] x m = [22, 29, 36] */
  check_values(c, (float[]){22, 29, 36}, 3);
  cnn_tensor_release(c);
  cnn_tensor *mt = cnn_tensor_transpose(m, 0, 1); /* (3, 2) */
  c = cnn_mm_matmul(mt, col);                     /* [[1,4],[2,5],[3,6]] x [2,5] = [22, 29, 36] */
  check_values(c, (float[]){22, 29, 36}, 3);
  cnn_tensor_release(c);

  cnn_tensor *all[] = {u, v, w, m, col, mt};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void batched_case(int na, const int64_t *sa, int nb, const int64_t *sb, int no, const int64_t *so) {
  cnn_tensor *a = pattern(na, sa, 1), *b = pattern(nb, sb, 2);
  cnn_tensor *c = cnn_mm_matmul(a, b);
  check_shape(c, no, so);
  if (c && no >= 2 && na >= 3 && nb >= 3) {
    float *ref = naive_batched(a, b, c);
    check_values(c, ref, cnn_tensor_numel(c));
    free(ref);
  }
  cnn_tensor_release(a);
  cnn_tensor_release(b);
  cnn_tensor_release(c);
}

static void test_batched(void) {
  /* (2,1,3,4) x (5,4,6) -> (2,5,3,6): a's 1 broadcasts to 5, b's missing dim to 2 */
  batched_case(4, (int64_t[]){2, 1, 3, 4}, 3, (int64_t[]){5, 4, 6}, 4, (int64_t[]){2, 5, 3, 6});
  batched_case(3, (int64_t[]){4, 2, 3}, 3, (int64_t[]){4, 3, 5}, 3, (int64_t[]){4, 2, 5});
  batched_case(3, (int64_t[]){1, 2, 3}, 3, (int64_t[]){4, 3, 5}, 3, (int64_t[]){4, 2, 5});
  /* b one matrix in a batch of 1: rows of a fold into one product */
  batched_case(3, (int64_t[]){4, 2, 3}, 3, (int64_t[]){1, 3, 5}, 3, (int64_t[]){4, 2, 5});

  /* (2,3,4) x (4,5) -> (2,3,5): against the 3-d reference with b as (1,4,5) */
  cnn_tensor *a = pattern(3, (int64_t[]){2, 3, 4}, 3), *b = pattern(2, (int64_t[]){4, 5}, 4);
  cnn_tensor *b3 = cnn_tensor_unsqueeze(b, 0);
  cnn_tensor *c = cnn_mm_matmul(a, b);
  check_shape(c, 3, (int64_t[]){2, 3, 5});
  float *ref = naive_batched(a, b3, c);
  check_values(c, ref, 30);
  free(ref);
  cnn_tensor_release(c);
  /* the same with a's batch dims permuted: (3,2,4) transposed to (2,3,4), rows do not fold */
  cnn_tensor *ap = pattern(3, (int64_t[]){3, 2, 4}, 5);
  cnn_tensor *apt = cnn_tensor_transpose(ap, 0, 1);
  c = cnn_mm_matmul(apt, b);
  ref = naive_batched(apt, b3, c);
  check_values(c, ref, 30);
  free(ref);
  cnn_tensor_release(c);
  /* batched with transposed matrices: (2,4,3) -> (2,3,4) */
  cnn_tensor *aq = pattern(3, (int64_t[]){2, 4, 3}, 6);
  cnn_tensor *aqt = cnn_tensor_transpose(aq, 1, 2);
  cnn_tensor *bb = pattern(3, (int64_t[]){2, 4, 5}, 7);
  c = cnn_mm_matmul(aqt, bb);
  ref = naive_batched(aqt, bb, c);
  check_values(c, ref, 30);
  free(ref);
  cnn_tensor_release(c);

  /* 1-d with batched: (3) x (2,3,4) -> (2,4); (2,3,4) x (4) -> (2,3) */
  cnn_tensor *v3 = ftensor(1, (int64_t[]){3}, (float[]){1, 0, -1});
  c = cnn_mm_matmul(v3, a);
  check_shape(c, 2, (int64_t[]){2, 4});
  /* row 0 minus row 2 of each a[i]: check element (i, j) = a[i,0,j] - a[i,2,j] */
  for (int i = 0; c && i < 2; i++)
    for (int j = 0; j < 4; j++)
      CHECK(cnn_tensor_get(c, (int64_t[]){i, j}) ==
            cnn_tensor_get(a, (int64_t[]){i, 0, j}) - cnn_tensor_get(a, (int64_t[]){i, 2, j}));
  cnn_tensor_release(c);
  cnn_tensor *v4 = ftensor(1, (int64_t[]){4}, (float[]){0, 1, 0, 2});
  c = cnn_mm_matmul(a, v4);
  check_shape(c, 2, (int64_t[]){2, 3});
  for (int i = 0; c && i < 2; i++)
    for (int j = 0; j < 3; j++)
      CHECK(cnn_tensor_get(c, (int64_t[]){i, j}) ==
            cnn_tensor_get(a, (int64_t[]){i, j, 1}) + 2 * cnn_tensor_get(a, (int64_t[]){i, j, 3}));
  cnn_tensor_release(c);

  cnn_tensor *all[] = {a, b, b3, ap, apt, aq, aqt, bb, v3, v4};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_empty_dims(void) {
  /* k = 0: a sum over nothing, zeros even where the allocator hands back dirty memory */
  cnn_tensor *dirty = cnn_tensor_full(CNN_FLOAT32, 2, (int64_t[]){2, 3}, 7.0);
  cnn_tensor_release(dirty);
  cnn_tensor *a = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){2, 0});
  cnn_tensor *b = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){0, 3});
  cnn_tensor *c = cnn_mm_matmul(a, b);
  check_shape(c, 2, (int64_t[]){2, 3});
  check_values(c, (float[]){0, 0, 0, 0, 0, 0}, 6);
  cnn_tensor_release(c);
  /* m = 0: (0, 2) x (2, 3) -> (0, 3) */
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){0, 2});
  cnn_tensor *f = cnn_tensor_full(CNN_FLOAT32, 2, (int64_t[]){2, 3}, 1.0);
  c = cnn_mm_matmul(e, f);
  check_shape(c, 2, (int64_t[]){0, 3});
  cnn_tensor_release(c);
  /* empty 1-d dot: 0-d zero */
  cnn_tensor *z = cnn_tensor_empty(CNN_FLOAT32, 1, (int64_t[]){0});
  c = cnn_mm_matmul(z, z);
  check_shape(c, 0, NULL);
  check_values(c, (float[]){0}, 1);
  cnn_tensor_release(c);
  /* a zero batch: (0, 2, 3) x (3, 4) -> (0, 2, 4) */
  cnn_tensor *g = cnn_tensor_empty(CNN_FLOAT32, 3, (int64_t[]){0, 2, 3});
  cnn_tensor *h = cnn_tensor_full(CNN_FLOAT32, 2, (int64_t[]){3, 4}, 1.0);
  c = cnn_mm_matmul(g, h);
  check_shape(c, 3, (int64_t[]){0, 2, 4});
  cnn_tensor_release(c);
  cnn_tensor *all[] = {a, b, e, f, z, g, h};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_errors(void) {
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){2, 3});
  cnn_tensor *b = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){4, 5});
  cnn_tensor *l = cnn_tensor_zeros(CNN_INT64, 2, (int64_t[]){3, 2});
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 1);
  cnn_tensor *u = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){3});
  cnn_tensor *v = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){4});
  cnn_tensor *p = cnn_tensor_zeros(CNN_FLOAT32, 3, (int64_t[]){2, 2, 3});
  cnn_tensor *q = cnn_tensor_zeros(CNN_FLOAT32, 3, (int64_t[]){3, 3, 4});
  CHECK_ERROR(cnn_mm_matmul(a, l), "expected tensors of one dtype but got float32 and int64");
  CHECK_ERROR(cnn_mm_matmul(l, a), "expected tensors of one dtype but got int64 and float32");
  CHECK_ERROR(cnn_mm_matmul(a, b), "shapes (2, 3) and (4, 5) cannot be multiplied (3 != 4)");
  CHECK_ERROR(cnn_mm_matmul(u, v), "shapes (3) and (4) cannot be multiplied (3 != 4)");
  CHECK_ERROR(cnn_mm_matmul(s, a), "both arguments need at least 1 dimension but got 0-d and 2-d");
  CHECK_ERROR(cnn_mm_matmul(p, q),
              "shapes (2, 2, 3) and (3, 3, 4) cannot be multiplied (batch dimensions do not broadcast)");
  CHECK_ERROR(cnn_mm_mm(u, a), "expected 2-d tensors but got 1-d and 2-d");
  /* the next call works */
  cnn_tensor *ok = cnn_mm_matmul(u, u);
  CHECK(ok != NULL);
  cnn_tensor_release(ok);
  cnn_tensor *all[] = {a, b, l, s, u, v, p, q};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

/* int64 products are exact, in any layout: (2, 3) x (3, 2) transposed view, and a batch. */
static void test_int64(void) {
  cnn_tensor *a = cnn_tensor_empty(CNN_INT64, 2, (int64_t[]){2, 3});
  cnn_tensor *b = cnn_tensor_empty(CNN_INT64, 2, (int64_t[]){2, 3});
  for (int i = 0; i < 6; i++) {
    cnn_tensor_i64(a)[i] = i + 1;                /* 1 2 3 / 4 5 6 */
    cnn_tensor_i64(b)[i] = i % 2 ? -(i + 1) : i; /* 0 -2 2 / -4 4 -6 */
  }
  cnn_tensor *bt = cnn_tensor_transpose(b, 0, 1); /* (3, 2): 0 -4 / -2 4 / 2 -6 */
  cnn_tensor *c = cnn_mm_matmul(a, bt);
  check_shape(c, 2, (int64_t[]){2, 2});
  CHECK(c && c->dtype == CNN_INT64);
  /* row 1: 0 - 4 + 6 = 2, -4 + 8 - 18 = -14; row 2: 0 - 10 + 12 = 2, -16 + 20 - 36 = -32 */
  int64_t want[4] = {2, -14, 2, -32};
  for (int i = 0; c && i < 4; i++) CHECK(cnn_tensor_i64(c)[i] == want[i]);
  cnn_tensor *a3 = cnn_tensor_expand(a, 3, (int64_t[]){2, 2, 3});
  cnn_tensor *c3 = cnn_mm_matmul(a3, bt);
  check_shape(c3, 3, (int64_t[]){2, 2, 2});
  for (int i = 0; c3 && i < 8; i++) CHECK(cnn_tensor_i64(c3)[i] == want[i % 4]);
  cnn_tensor_release(c3);
  cnn_tensor_release(a3);
  cnn_tensor_release(c);
  cnn_tensor_release(bt);
  cnn_tensor_release(b);
  cnn_tensor_release(a);
}

static void test_larger(void) {
  /* (70, 130) x (130, 90) with a transposed b, non-integral values: against double sums */
  int64_t m = 70, k = 130, n = 90;
  cnn_tensor *a = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){m, k});
  cnn_tensor *bs = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){n, k});
  for (int64_t i = 0; i < m * k; i++) cnn_tensor_f32(a)[i] = (float)sin((double)i);
  for (int64_t i = 0; i < n * k; i++) cnn_tensor_f32(bs)[i] = (float)cos((double)i * 0.7);
  cnn_tensor *b = cnn_tensor_transpose(bs, 0, 1);
  cnn_tensor *c = cnn_mm_matmul(a, b);
  check_shape(c, 2, (int64_t[]){m, n});
  double worst = 0;
  for (int64_t i = 0; c && i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++) s += (double)cnn_tensor_f32(a)[i * k + p] * cnn_tensor_f32(bs)[j * k + p];
      double e = fabs(cnn_tensor_f32(c)[i * n + j] - s);
      if (e > worst) worst = e;
    }
  CHECK(worst < 1e-3);
  cnn_tensor_release(a);
  cnn_tensor_release(bs);
  cnn_tensor_release(b);
  cnn_tensor_release(c);
}

int main(void) {
  test_2d();
  test_1d();
  test_batched();
  test_empty_dims();
  test_errors();
  test_int64();
  test_larger();
  return check_summary("test_matmul");
}
