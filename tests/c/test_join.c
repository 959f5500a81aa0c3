/* join.c: cat, stack, index_select and index_add_ against values worked out by hand, over
 * contiguous and strided inputs, both dtypes; the errors name the offending tensor, dim, index. */
#include "check.h"
#include "cnn/error.h"
#include "cnn/join.h"
#include "cnn/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cnn_tensor *itensor(int ndim, const int64_t *size, const int64_t *v) {
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, ndim, size);
  memcpy(cnn_tensor_i64(t), v, (size_t)cnn_tensor_numel(t) * sizeof(int64_t));
  return t;
}

/* Checks shape and row-major values (through any strides), then releases t. */
static void expect(const char *name, cnn_tensor *t, int ndim, const int64_t *size, const double *want) {
  if (!t) {
    fprintf(stderr, "%s: NULL (%s)\n", name, cnn_error_get());
    failures++;
    return;
  }
  int ok = t->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = t->size[d] == size[d];
  if (!ok) {
    fprintf(stderr, "%s: wrong shape\n", name);
    failures++;
  } else {
    int64_t n = cnn_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
      if (cnn_tensor_get_flat(t, i) != want[i]) {
        fprintf(stderr, "%s: element %lld is %g, want %g\n", name, (long long)i, cnn_tensor_get_flat(t, i), want[i]);
        failures++;
        break;
      }
    }
  }
  cnn_tensor_release(t);
}

static void test_cat(void) {
  cnn_tensor *a = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  cnn_tensor *b = ftensor(2, (int64_t[]){1, 3}, (float[]){7, 8, 9});
  /* dim 0: rows of a then b */
  expect("cat dim 0", cnn_join_cat(2, (const cnn_tensor *[]){a, b}, 0), 2, (int64_t[]){3, 3},
         (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
  /* dim -1 (1): [[1,2,3],[4,5,6]] | [[10,11],[12,13]] */
  cnn_tensor *c = ftensor(2, (int64_t[]){2, 2}, (float[]){10, 11, 12, 13});
  expect("cat dim -1", cnn_join_cat(3, (const cnn_tensor *[]){c, a, c}, -1), 2, (int64_t[]){2, 7},
         (double[]){10, 11, 1, 2, 3, 10, 11, 12, 13, 4, 5, 6, 12, 13});
  /* a transposed input: ct = [[10,12],[11,13]] */
  cnn_tensor *ct = cnn_tensor_transpose(c, 0, 1);
  expect("cat strided", cnn_join_cat(2, (const cnn_tensor *[]){a, ct}, 1), 2, (int64_t[]){2, 5},
         (double[]){1, 2, 3, 10, 12, 4, 5, 6, 11, 13});
  expect("cat strided dim 0", cnn_join_cat(2, (const cnn_tensor *[]){ct, c}, 0), 2, (int64_t[]){4, 2},
         (double[]){10, 12, 11, 13, 10, 11, 12, 13});
  /* 3-d along the middle: (2,1,2) and (2,2,2) -> (2,3,2) */
  cnn_tensor *p = ftensor(3, (int64_t[]){2, 1, 2}, (float[]){1, 2, 3, 4});
  cnn_tensor *q = ftensor(3, (int64_t[]){2, 2, 2}, (float[]){5, 6, 7, 8, 9, 10, 11, 12});
  expect("cat 3-d dim 1", cnn_join_cat(2, (const cnn_tensor *[]){p, q}, 1), 3, (int64_t[]){2, 3, 2},
         (double[]){1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  /* legacy rule: a 1-d empty tensor is skipped whatever the others' shapes */
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, 1, (int64_t[]){0});
  expect("cat skips empty", cnn_join_cat(3, (const cnn_tensor *[]){e, b, e}, 0), 2, (int64_t[]){1, 3},
         (double[]){7, 8, 9});
  expect("cat all empty", cnn_join_cat(2, (const cnn_tensor *[]){e, e}, 0), 1, (int64_t[]){0}, NULL);
  /* a zero-size part of matching rank contributes nothing */
  cnn_tensor *z = cnn_tensor_empty(CNN_FLOAT32, 2, (int64_t[]){0, 3});
  expect("cat zero rows", cnn_join_cat(2, (const cnn_tensor *[]){z, b}, 0), 2, (int64_t[]){1, 3}, (double[]){7, 8, 9});
  expect("cat one", cnn_join_cat(1, (const cnn_tensor *[]){b}, 0), 2, (int64_t[]){1, 3}, (double[]){7, 8, 9});
  /* int64 */
  cnn_tensor *i1 = itensor(1, (int64_t[]){2}, (int64_t[]){1, 2}), *i2 = itensor(1, (int64_t[]){1}, (int64_t[]){-3});
  cnn_tensor *ic = cnn_join_cat(2, (const cnn_tensor *[]){i1, i2}, 0);
  CHECK(ic && ic->dtype == CNN_INT64);
  expect("cat int64", ic, 1, (int64_t[]){3}, (double[]){1, 2, -3});

  /* errors: sizes, ranks, dtypes, 0-d, dims (1-based in messages) */
  cnn_tensor *w = ftensor(2, (int64_t[]){2, 4}, (float[]){0, 0, 0, 0, 0, 0, 0, 0});
  CHECK_ERROR(cnn_join_cat(2, (const cnn_tensor *[]){w, a}, 0), "tensor 2 has size 3 at dim 2 but tensor 1 has 4");
  CHECK_ERROR(cnn_join_cat(3, (const cnn_tensor *[]){e, w, a}, 0), "tensor 3 has size 3 at dim 2 but tensor 2 has 4");
  CHECK_ERROR(cnn_join_cat(2, (const cnn_tensor *[]){a, p}, 0), "tensor 2 has 3 dimensions but tensor 1 has 2");
  /* dtypes promote as arithmetic does: int64 with float32 gives float32 (1, 2, then 0.5) */
  cnn_tensor *half = ftensor(1, (int64_t[]){1}, (float[]){0.5f});
  cnn_tensor *mixed = cnn_join_cat(2, (const cnn_tensor *[]){i1, half}, 0);
  CHECK(mixed && mixed->dtype == CNN_FLOAT32);
  expect("cat int64 + float32", mixed, 1, (int64_t[]){3}, (double[]){1, 2, 0.5});
  cnn_tensor_release(half);
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 1);
  CHECK_ERROR(cnn_join_cat(2, (const cnn_tensor *[]){s, s}, 0), "tensor 1 is 0-d and cannot be concatenated");
  CHECK_ERROR(cnn_join_cat(2, (const cnn_tensor *[]){a, a}, 2),
              "dimension 3 out of range (the tensor has 2 dimensions)");
  CHECK_ERROR(cnn_join_cat(0, NULL, 0), "expected a non-empty list of tensors");

  cnn_tensor *all[] = {a, b, c, ct, p, q, e, z, i1, i2, w, s};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_stack(void) {
  cnn_tensor *a = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  cnn_tensor *b = ftensor(2, (int64_t[]){2, 3}, (float[]){7, 8, 9, 10, 11, 12});
  expect("stack 0", cnn_join_stack(2, (const cnn_tensor *[]){a, b}, 0), 3, (int64_t[]){2, 2, 3},
         (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  /* dim 1: out[i][k][j] = (a, b)[k][i][j] */
  expect("stack 1", cnn_join_stack(2, (const cnn_tensor *[]){a, b}, 1), 3, (int64_t[]){2, 2, 3},
         (double[]){1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12});
  /* dim -1 (2): out[i][j][k] */
  expect("stack -1", cnn_join_stack(2, (const cnn_tensor *[]){a, b}, -1), 3, (int64_t[]){2, 3, 2},
         (double[]){1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 6, 12});
  /* 0-d tensors stack into a vector */
  cnn_tensor *x = cnn_tensor_scalar(CNN_FLOAT32, 1), *y = cnn_tensor_scalar(CNN_FLOAT32, 2);
  expect("stack 0-d", cnn_join_stack(2, (const cnn_tensor *[]){x, y}, 0), 1, (int64_t[]){2}, (double[]){1, 2});
  /* a transposed input */
  cnn_tensor *sq = ftensor(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4});
  cnn_tensor *sqt = cnn_tensor_transpose(sq, 0, 1);
  expect("stack strided", cnn_join_stack(2, (const cnn_tensor *[]){sq, sqt}, 0), 3, (int64_t[]){2, 2, 2},
         (double[]){1, 2, 3, 4, 1, 3, 2, 4});
  cnn_tensor *c = ftensor(2, (int64_t[]){3, 2}, (float[]){0, 0, 0, 0, 0, 0});
  CHECK_ERROR(cnn_join_stack(2, (const cnn_tensor *[]){a, c}, 0), "tensor 2 has shape (3, 2) but tensor 1 has (2, 3)");
  CHECK_ERROR(cnn_join_stack(2, (const cnn_tensor *[]){a, b}, 3),
              "dimension 4 out of range (the tensor has 3 dimensions)");
  cnn_tensor *all[] = {a, b, x, y, sq, sqt, c};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_index_select(void) {
  /* t = [[1,2,3],[4,5,6],[7,8,9]] */
  cnn_tensor *t = ftensor(2, (int64_t[]){3, 3}, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
  cnn_tensor *idx = itensor(1, (int64_t[]){4}, (int64_t[]){2, 0, 2, 1});
  expect("rows", cnn_join_index_select(t, 0, idx), 2, (int64_t[]){4, 3},
         (double[]){7, 8, 9, 1, 2, 3, 7, 8, 9, 4, 5, 6});
  expect("cols", cnn_join_index_select(t, -1, idx), 2, (int64_t[]){3, 4},
         (double[]){3, 1, 3, 2, 6, 4, 6, 5, 9, 7, 9, 8});
  /* t^T = [[1,4,7],[2,5,8],[3,6,9]] */
  cnn_tensor *tt = cnn_tensor_transpose(t, 0, 1);
  expect("rows of a transposed view", cnn_join_index_select(tt, 0, idx), 2, (int64_t[]){4, 3},
         (double[]){3, 6, 9, 1, 4, 7, 3, 6, 9, 2, 5, 8});
  /* a strided index: every other entry of [2, 0, 2, 1] -> [2, 2] */
  cnn_tensor *every2 = cnn_tensor_view(idx, 2, (int64_t[]){2, 2});
  cnn_tensor *col0 = cnn_tensor_select(every2, 1, 0);
  expect("strided index", cnn_join_index_select(t, 0, col0), 2, (int64_t[]){2, 3}, (double[]){7, 8, 9, 7, 8, 9});
  /* 0-d index keeps the dim with size 1; an empty index gives size 0 */
  cnn_tensor *one = cnn_tensor_scalar(CNN_INT64, 1);
  expect("0-d index", cnn_join_index_select(t, 1, one), 2, (int64_t[]){3, 1}, (double[]){2, 5, 8});
  cnn_tensor *none = cnn_tensor_empty(CNN_INT64, 1, (int64_t[]){0});
  expect("empty index", cnn_join_index_select(t, 0, none), 2, (int64_t[]){0, 3}, NULL);
  /* int64 data, 3-d, middle dim: (2,2,2) [[[1,2],[3,4]],[[5,6],[7,8]]] pick [1] */
  cnn_tensor *l = itensor(3, (int64_t[]){2, 2, 2}, (int64_t[]){1, 2, 3, 4, 5, 6, 7, 8});
  cnn_tensor *i1 = itensor(1, (int64_t[]){1}, (int64_t[]){1});
  expect("int64 3-d", cnn_join_index_select(l, 1, i1), 3, (int64_t[]){2, 1, 2}, (double[]){3, 4, 7, 8});
  /* 0-d source: any number of zero indices gives it back, as PyTorch does */
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 5);
  cnn_tensor *zz = itensor(1, (int64_t[]){2}, (int64_t[]){0, 0});
  expect("0-d source", cnn_join_index_select(s, 0, zz), 0, NULL, (double[]){5});

  /* errors: 0-based index 7 on a size-5 dim reads as Lua's index 8 of dimension 1 */
  cnn_tensor *five = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){5});
  cnn_tensor *bad = itensor(1, (int64_t[]){2}, (int64_t[]){0, 7});
  CHECK_ERROR(cnn_join_index_select(five, 0, bad), "index 8 is out of range for dimension 1 of size 5");
  cnn_tensor *neg = itensor(1, (int64_t[]){1}, (int64_t[]){-1});
  CHECK_ERROR(cnn_join_index_select(five, 0, neg), "index 0 is out of range for dimension 1 of size 5");
  cnn_tensor *fidx = ftensor(1, (int64_t[]){1}, (float[]){0});
  CHECK_ERROR(cnn_join_index_select(t, 0, fidx), "expected an int64 index tensor but got float32");
  CHECK_ERROR(cnn_join_index_select(t, 0, l), "expected a 1-d index tensor but got 3-d");
  CHECK_ERROR(cnn_join_index_select(t, 2, idx), "dimension 3 out of range (the tensor has 2 dimensions)");

  cnn_tensor *all[] = {t, idx, tt, every2, col0, one, none, l, i1, s, zz, five, bad, neg, fidx};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

static void test_index_add(void) {
  /* out (3, 2) zeros; rows 2, 0, 2 of src [[1,2],[3,4],[5,6]] -> row 0 += [3,4], row 2 += [1,2]+[5,6] */
  cnn_tensor *out = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){3, 2});
  cnn_tensor *idx = itensor(1, (int64_t[]){3}, (int64_t[]){2, 0, 2});
  cnn_tensor *src = ftensor(2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
  CHECK(cnn_join_index_add_(out, 0, idx, src) == 0);
  expect("add rows", cnn_tensor_retain(out), 2, (int64_t[]){3, 2}, (double[]){3, 4, 0, 0, 6, 8});
  /* it accumulates onto what is there */
  CHECK(cnn_join_index_add_(out, 0, idx, src) == 0);
  expect("add twice", cnn_tensor_retain(out), 2, (int64_t[]){3, 2}, (double[]){6, 8, 0, 0, 12, 16});
  /* along dim 1 into a (2, 3) transposed view of a (3, 2) zero tensor: src (2, 3) columns to 2, 0, 2 */
  cnn_tensor *base = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){3, 2});
  cnn_tensor *view = cnn_tensor_transpose(base, 0, 1);
  cnn_tensor *src2 = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  CHECK(cnn_join_index_add_(view, 1, idx, src2) == 0);
  /* view = [[2, 0, 1+3], [5, 0, 4+6]]; base = view^T */
  expect("add into a view", cnn_tensor_retain(view), 2, (int64_t[]){2, 3}, (double[]){2, 0, 4, 5, 0, 10});
  expect("base sees it", cnn_tensor_retain(base), 2, (int64_t[]){3, 2}, (double[]){2, 5, 0, 0, 4, 10});
  /* int64 */
  cnn_tensor *lo = cnn_tensor_zeros(CNN_INT64, 1, (int64_t[]){3});
  cnn_tensor *ls = itensor(1, (int64_t[]){3}, (int64_t[]){10, 20, 30});
  CHECK(cnn_join_index_add_(lo, 0, idx, ls) == 0);
  expect("add int64", cnn_tensor_retain(lo), 1, (int64_t[]){3}, (double[]){20, 0, 40});

  /* index_select's backward: select then add back gives counts * values for each row */
  cnn_tensor *t = ftensor(2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
  cnn_tensor *sel = cnn_join_index_select(t, 0, idx);
  cnn_tensor *g = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){3, 2});
  CHECK(cnn_join_index_add_(g, 0, idx, sel) == 0);
  expect("select then add", cnn_tensor_retain(g), 2, (int64_t[]){3, 2}, (double[]){1, 2, 0, 0, 10, 12});

  /* 0-d: index_select returns the tensor once whatever the indices, so the source adds once */
  cnn_tensor *o0 = cnn_tensor_scalar(CNN_FLOAT32, 1), *s0 = cnn_tensor_scalar(CNN_FLOAT32, 3);
  cnn_tensor *zz = itensor(1, (int64_t[]){2}, (int64_t[]){0, 0});
  CHECK(cnn_join_index_add_(o0, 0, zz, s0) == 0);
  expect("add 0-d", cnn_tensor_retain(o0), 0, NULL, (double[]){4});
  cnn_tensor_release(o0);
  cnn_tensor_release(s0);
  cnn_tensor_release(zz);

  /* errors leave out untouched */
  cnn_tensor *wrong = cnn_tensor_zeros(CNN_FLOAT32, 2, (int64_t[]){2, 2});
  cnn_error_clear();
  CHECK(cnn_join_index_add_(out, 0, idx, wrong) == -1);
  CHECK(strcmp(cnn_error_get(), "expected a source of shape (3, 2) but got (2, 2)") == 0);
  cnn_tensor *bad = itensor(1, (int64_t[]){3}, (int64_t[]){0, 3, 1});
  cnn_error_clear();
  CHECK(cnn_join_index_add_(out, 0, bad, src) == -1);
  CHECK(strcmp(cnn_error_get(), "index 4 is out of range for dimension 1 of size 3") == 0);
  cnn_error_clear();
  CHECK(cnn_join_index_add_(out, 0, idx, ls) == -1);
  CHECK(strcmp(cnn_error_get(), "expected a source of dtype float32 but got int64") == 0);
  expect("untouched", cnn_tensor_retain(out), 2, (int64_t[]){3, 2}, (double[]){6, 8, 0, 0, 12, 16});

  cnn_tensor *all[] = {out, idx, src, base, view, src2, lo, ls, t, sel, g, wrong, bad};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_release(all[i]);
}

int main(void) {
  test_cat();
  test_stack();
  test_index_select();
  test_index_add();
  return check_summary("test_join");
}
