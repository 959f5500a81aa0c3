/* format.c: exact text of cnn_format_values / cnn_format_tensor. Every expected string follows
 * PyTorch 1.13's repr (dtype suffixes dropped); the comments say why each width and mode holds. */
#include "check.h"
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/format.h"
#include "cnn/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compares and frees got. */
static void check_text(const char *name, char *got, const char *want) {
  if (!got) {
    fprintf(stderr, "%s: NULL (%s)\n", name, cnn_error_get());
    failures++;
    return;
  }
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "%s:\n--- got\n%s\n--- want\n%s\n", name, got, want);
    failures++;
  }
  free(got);
}

/* float32 0, 1, 2, ... in the given shape */
static cnn_tensor *frange(int ndim, const int64_t *size) {
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, ndim, size);
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) cnn_tensor_f32(t)[i] = (float)i;
  return t;
}

static cnn_tensor *irange(int ndim, const int64_t *size) {
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, ndim, size);
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) cnn_tensor_i64(t)[i] = i;
  return t;
}

static void values_case(const char *name, cnn_tensor *t, const char *want) {
  check_text(name, cnn_format_values(t), want);
  cnn_tensor_release(t);
}

static void test_integral_floats(void) {
  /* all integral: "%.0f." with width 2; rows indented by len("tensor(") + 1 */
  values_case("2x2 integral", ftensor(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}),
              "tensor([[1., 2.],\n        [3., 4.]])");
  /* widths come from nonzero values: "10." is 3 wide, so "0." is padded to " 0." */
  values_case("zero padded", ftensor(1, (int64_t[]){2}, (float[]){0, 10}), "tensor([ 0., 10.])");
  values_case("negative zero", ftensor(1, (int64_t[]){1}, (float[]){-0.0f}), "tensor([-0.])");
}

static void test_decimal_floats(void) {
  /* 0.12345 rounds to 0.1235 (float32 0.12345 is 0.123450003..), widest is "-2.2500" (7) */
  values_case("4 decimals", ftensor(1, (int64_t[]){3}, (float[]){0.12345f, 1.5f, -2.25f}),
              "tensor([ 0.1235,  1.5000, -2.2500])");
  /* widest "-400.1250" (9): everything right-aligned to it; ratio 400.125/1.5 < 1000 */
  values_case("negative alignment", ftensor(2, (int64_t[]){2, 2}, (float[]){-1.5f, 20.25f, 3.0f, -400.125f}),
              "tensor([[  -1.5000,   20.2500],\n        [   3.0000, -400.1250]])");
  values_case("0-d", cnn_tensor_scalar(CNN_FLOAT32, 3.5), "tensor(3.5000)");
}

static void test_scientific(void) {
  /* ratio 123456.7 / 0.5 > 1000 -> "%.4e" for all */
  values_case("sci ratio", ftensor(1, (int64_t[]){2}, (float[]){123456.7f, 0.5f}), "tensor([1.2346e+05, 5.0000e-01])");
  /* smallest nonzero 1e-5 < 1e-4 (not integral) */
  values_case("sci small", ftensor(1, (int64_t[]){2}, (float[]){1e-5f, 1.0f}), "tensor([1.0000e-05, 1.0000e+00])");
  /* integral but ratio 1e5 > 1000 */
  values_case("sci integral", ftensor(1, (int64_t[]){2}, (float[]){1.0f, 1e5f}), "tensor([1.0000e+00, 1.0000e+05])");
  /* integral and > 1e8 */
  values_case("sci big 0-d", cnn_tensor_scalar(CNN_FLOAT32, 1e10), "tensor(1.0000e+10)");
}

static void test_nonfinite(void) {
  float nan = NAN, inf = INFINITY;
  /* width 2 from "1." only: non-finite values are not measured and not padded down */
  values_case("nonfinite integral", ftensor(1, (int64_t[]){4}, (float[]){nan, 1, inf, -inf}),
              "tensor([nan, 1., inf, -inf])");
  /* width 6 from "1.5000": nan and -inf right-aligned to it */
  values_case("nonfinite decimal", ftensor(1, (int64_t[]){3}, (float[]){-nan, 1.5f, -inf}),
              "tensor([   nan, 1.5000,   -inf])");
}

static void test_int64(void) {
  /* width 3 from "-20" and "300" */
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 2, (int64_t[]){2, 2});
  int64_t v[] = {1, -20, 300, 4};
  memcpy(cnn_tensor_i64(t), v, sizeof v);
  values_case("int64", t, "tensor([[  1, -20],\n        [300,   4]])");
}

static void test_empty(void) {
  values_case("empty 1-d", cnn_tensor_empty(CNN_FLOAT32, 1, (int64_t[]){0}), "tensor([])");
  values_case("empty 2-d", cnn_tensor_empty(CNN_INT64, 2, (int64_t[]){2, 0}), "tensor([])");
}

static void test_3d(void) {
  /* (2, 3, 2): blocks separated by a blank line; inner rows indented 9 = 7 + 2 brackets */
  values_case("3-d", frange(3, (int64_t[]){2, 3, 2}),
              "tensor([[[ 0.,  1.],\n"
              "         [ 2.,  3.],\n"
              "         [ 4.,  5.]],\n"
              "\n"
              "        [[ 6.,  7.],\n"
              "         [ 8.,  9.],\n"
              "         [10., 11.]]])");
}

static void test_line_wrap(void) {
  /* 30 values i/7, width 6, element 8 wide: floor((80 - 7) / 8) = 9 per line */
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 1, (int64_t[]){30});
  for (int i = 0; i < 30; i++) cnn_tensor_f32(t)[i] = (float)i / 7.0f;
  values_case("wrapped row", t,
              "tensor([0.0000, 0.1429, 0.2857, 0.4286, 0.5714, 0.7143, 0.8571, 1.0000, 1.1429,\n"
              "        1.2857, 1.4286, 1.5714, 1.7143, 1.8571, 2.0000, 2.1429, 2.2857, 2.4286,\n"
              "        2.5714, 2.7143, 2.8571, 3.0000, 3.1429, 3.2857, 3.4286, 3.5714, 3.7143,\n"
              "        3.8571, 4.0000, 4.1429])");
}

static void test_elided(void) {
  /* 2000 > 1000 elements: 3 + " ..." + 3 shown; the formatter sees only the shown values
   * (0, 1, 2, 1997, 1998, 1999), ratio 1999 > 1000 -> scientific, width 10, so
   * floor(73 / 12) = 6 items per line and the last value wraps */
  values_case("elided 1-d", frange(1, (int64_t[]){2000}),
              "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
              "        1.9990e+03])");
  /* (40, 50): rows elided with a "..." row, each row elided and wrapped as above at indent 8 */
  values_case("elided 2-d", frange(2, (int64_t[]){40, 50}),
              "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 4.7000e+01, 4.8000e+01,\n"
              "         4.9000e+01],\n"
              "        [5.0000e+01, 5.1000e+01, 5.2000e+01,  ..., 9.7000e+01, 9.8000e+01,\n"
              "         9.9000e+01],\n"
              "        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.4700e+02, 1.4800e+02,\n"
              "         1.4900e+02],\n"
              "        ...,\n"
              "        [1.8500e+03, 1.8510e+03, 1.8520e+03,  ..., 1.8970e+03, 1.8980e+03,\n"
              "         1.8990e+03],\n"
              "        [1.9000e+03, 1.9010e+03, 1.9020e+03,  ..., 1.9470e+03, 1.9480e+03,\n"
              "         1.9490e+03],\n"
              "        [1.9500e+03, 1.9510e+03, 1.9520e+03,  ..., 1.9970e+03, 1.9980e+03,\n"
              "         1.9990e+03]])");
  /* int64 (10, 10, 20): width 4 from "1999"; a "..." block is followed by a blank line too */
  char *s = NULL;
  cnn_tensor *t = irange(3, (int64_t[]){10, 10, 20});
  s = cnn_format_values(t);
  CHECK(s != NULL);
  if (s) {
    const char *head = "tensor([[[   0,    1,    2,  ...,   17,   18,   19],\n"
                       "         [  20,   21,   22,  ...,   37,   38,   39],\n"
                       "         [  40,   41,   42,  ...,   57,   58,   59],\n"
                       "         ...,\n"
                       "         [ 140,  141,  142,  ...,  157,  158,  159],\n";
    const char *middle = "         [ 580,  581,  582,  ...,  597,  598,  599]],\n"
                         "\n"
                         "        ...,\n"
                         "\n"
                         "        [[1400, 1401, 1402,  ..., 1417, 1418, 1419],\n";
    const char *tail = "         [1980, 1981, 1982,  ..., 1997, 1998, 1999]]])";
    CHECK(strncmp(s, head, strlen(head)) == 0);
    CHECK(strstr(s, middle) != NULL);
    CHECK(strlen(s) >= strlen(tail) && strcmp(s + strlen(s) - strlen(tail), tail) == 0);
    /* 6 blocks x (6 rows + "...") lines, plus 5 blank lines and the "..." block line and its blank */
    int lines = 1;
    for (const char *p = s; *p; p++) lines += *p == '\n';
    CHECK(lines == 6 * 7 + 5 + 1 + 1);
    free(s);
  }
  cnn_tensor_release(t);
}

static void test_views(void) {
  /* transpose of [[1, 2, 3], [4, 5, 6]] reads through strides (1, 3) */
  cnn_tensor *a = ftensor(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  values_case("transposed", cnn_tensor_transpose(a, 0, 1), "tensor([[1., 4.],\n        [2., 5.],\n        [3., 6.]])");
  /* arange(24) as (2, 3, 4), [:, :, 1] -> strides (12, 4) */
  cnn_tensor *b = irange(3, (int64_t[]){2, 3, 4});
  values_case("selected", cnn_tensor_select(b, 2, 1), "tensor([[ 1,  5,  9],\n        [13, 17, 21]])");
  /* an expanded (stride 0) view prints its logical contents */
  cnn_tensor *c = ftensor(1, (int64_t[]){2}, (float[]){0.5f, -1});
  values_case("expanded", cnn_tensor_expand(c, 2, (int64_t[]){2, 2}),
              "tensor([[ 0.5000, -1.0000],\n        [ 0.5000, -1.0000]])");
  cnn_tensor_release(a);
  cnn_tensor_release(b);
  cnn_tensor_release(c);
}

static void test_tensor_suffix(void) {
  cnn_tensor *t = cnn_tensor_full(CNN_FLOAT32, 2, (int64_t[]){2, 2}, 2.0);
  check_text("plain", cnn_format_tensor(t), "tensor([[2., 2.],\n        [2., 2.]])\n[float32 tensor of shape {2, 2}]");
  t->requires_grad = true;
  check_text("leaf", cnn_format_tensor(t),
             "tensor([[2., 2.],\n        [2., 2.]])\n[float32 tensor of shape {2, 2}, requires_grad=true]");
  /* a non-leaf shows its node's name (printed through the autograd layer's hooks) */
  static const cnn_ag_op mul = {"MulBackward", NULL, 0, NULL};
  cnn_node *node = cnn_ag_node_new(&mul, 0, NULL, 1);
  cnn_ag_set_output(t, node, 0);
  cnn_ag_node_release(node);
  check_text("non-leaf", cnn_format_tensor(t),
             "tensor([[2., 2.],\n        [2., 2.]])\n[float32 tensor of shape {2, 2}, grad_fn=MulBackward]");
  cnn_tensor_release(t); /* releases the node too */

  cnn_tensor *s = cnn_tensor_scalar(CNN_INT64, 7);
  check_text("0-d shape", cnn_format_tensor(s), "tensor(7)\n[int64 tensor of shape {}]");
  cnn_tensor_release(s);
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, 3, (int64_t[]){0, 3, 1});
  check_text("empty shape", cnn_format_tensor(e), "tensor([])\n[float32 tensor of shape {0, 3, 1}]");
  cnn_tensor_release(e);
}

int main(void) {
  test_integral_floats();
  test_decimal_floats();
  test_scientific();
  test_nonfinite();
  test_int64();
  test_empty();
  test_3d();
  test_line_wrap();
  test_elided();
  test_views();
  test_tensor_suffix();
  return check_summary("test_format");
}
