/* tensor.c, join.c and file.c at the edges issue 14 found: fills that cannot convert fail instead of
 * leaving memory uninitialised, int64 is exact over all 64 bits, no write goes into an expanded
 * view, size products that pass int64 are refused, zero-size joins of strided inputs, and readers
 * that refuse what is not a regular file. Expected values are worked out by hand. */
#include "check.h"
#include "cnn/error.h"
#include "io/file.h"
#include "cnn/join.h"
#include "cnn/tensor.h"
#include "tmpfiles.h"

#include <stdint.h>
#include <sys/stat.h>

static void test_fills(void) {
  int64_t two = 2;
  CHECK_ERROR(cnn_tensor_full(CNN_INT64, 1, &two, NAN), "value nan cannot be converted to int64 without overflow");
  CHECK_ERROR(cnn_tensor_full(CNN_INT64, 1, &two, 1e300),
              "value above 2^63 cannot be converted to int64 without overflow");
  CHECK_ERROR(cnn_tensor_scalar(CNN_INT64, -1e19), "value below -2^63 cannot be converted to int64 without overflow");
  cnn_tensor *t = cnn_tensor_full(CNN_INT64, 1, &two, -2.9); /* truncates toward zero, as PyTorch */
  CHECK(t && cnn_tensor_i64(t)[1] == -2);
  cnn_tensor_release(t);
  t = cnn_tensor_full_i64(CNN_INT64, 1, &two, INT64_MAX - 1); /* exact: a double would round it */
  CHECK(t && cnn_tensor_i64(t)[0] == INT64_MAX - 1 && cnn_tensor_i64(t)[1] == INT64_MAX - 1);
  cnn_tensor_release(t);
  t = cnn_tensor_scalar_i64(INT64_MIN);
  CHECK(t && t->ndim == 0 && cnn_tensor_i64(t)[0] == INT64_MIN);
  cnn_tensor_release(t);
}

static void test_arange_i64(void) {
  cnn_tensor *t = cnn_tensor_arange_i64(INT64_MAX - 2, INT64_MAX, 1);
  CHECK(t && t->size[0] == 2 && cnn_tensor_i64(t)[0] == INT64_MAX - 2 && cnn_tensor_i64(t)[1] == INT64_MAX - 1);
  cnn_tensor_release(t);
  /* INT64_MIN .. INT64_MAX by 2^62: -2^63, -2^62, 0, 2^62 (the end is excluded) */
  t = cnn_tensor_arange_i64(INT64_MIN, INT64_MAX, (int64_t)1 << 62);
  CHECK(t && t->size[0] == 4 && cnn_tensor_i64(t)[0] == INT64_MIN && cnn_tensor_i64(t)[3] == (int64_t)1 << 62);
  cnn_tensor_release(t);
  t = cnn_tensor_arange_i64(5, -5, -3); /* 5, 2, -1, -4 */
  CHECK(t && t->size[0] == 4 && cnn_tensor_i64(t)[3] == -4);
  cnn_tensor_release(t);
  CHECK_ERROR(cnn_tensor_arange_i64(0, 10, 0), "step must be nonzero");
  CHECK_ERROR(cnn_tensor_arange_i64(INT64_MIN, INT64_MAX, 1), "too many elements (18446744073709551615)");
}

/* integer linspace in double, as PyTorch's step: float32 lost the end past 2^24 */
static void test_linspace_int(void) {
  cnn_tensor *t = cnn_tensor_linspace_int(1, 16777217, 2, CNN_INT64);
  CHECK(t && t->size[0] == 2 && cnn_tensor_i64(t)[0] == 1 && cnn_tensor_i64(t)[1] == 16777217);
  cnn_tensor_release(t);
  t = cnn_tensor_linspace_int(-2.7, 2.7, 4, CNN_INT64); /* ends -2, 2; -2 + 4/3 = -0.67 -> 0 */
  CHECK(t && cnn_tensor_i64(t)[0] == -2 && cnn_tensor_i64(t)[1] == 0 && cnn_tensor_i64(t)[2] == 0 &&
        cnn_tensor_i64(t)[3] == 2);
  cnn_tensor_release(t);
  t = cnn_tensor_linspace_int(250, 3, 4, CNN_UINT8);
  CHECK(t && t->dtype == CNN_UINT8 && cnn_tensor_u8(t)[1] == 167 && cnn_tensor_u8(t)[3] == 3);
  cnn_tensor_release(t);
  CHECK_ERROR(cnn_tensor_linspace_int(0, 300, 3, CNN_UINT8), "the ends 0 and 300 do not fit uint8");
  CHECK_ERROR(cnn_tensor_linspace_int(0, NAN, 3, CNN_INT64), "the ends 0 and nan do not fit int64");
  CHECK_ERROR(cnn_tensor_linspace_int(0, 1, 3, CNN_FLOAT32),
              "an integer dtype (int64 or uint8) was expected, got float32");
  CHECK_ERROR(cnn_tensor_linspace_int(0, 1, -1, CNN_INT64), "number of steps must be non-negative, got -1");
}

static void test_expanded_writes(void) {
  int64_t one = 1, three = 3;
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, 1, &one);
  cnn_tensor *e = cnn_tensor_expand(a, 1, &three);
  cnn_tensor *src = cnn_tensor_full(CNN_FLOAT32, 1, &three, 1);
  const char *msg = "unsupported operation: more than one element of the written-to tensor refers to a single "
                    "memory location (it is expanded); clone() it before writing";
  CHECK_ERROR_RC(cnn_tensor_copy_(e, src), msg);
  CHECK(cnn_tensor_f32(a)[0] == 0);                                    /* nothing written */
  CHECK(cnn_tensor_copy_(src, e) == 0 && cnn_tensor_f32(src)[2] == 0); /* reading one is fine */
  /* fill writes the one value into the shared memory, as PyTorch's fill_ */
  CHECK(cnn_tensor_fill_(e, 4) == 0 && cnn_tensor_f32(a)[0] == 4);
  CHECK(cnn_tensor_fill_i64_(e, 5) == 0 && cnn_tensor_f32(a)[0] == 5);
  cnn_tensor_release(e);
  cnn_tensor_release(src);
  cnn_tensor_release(a);
}

static void test_size_overflow(void) {
  int64_t one[3] = {1, 1, 1}, big[3] = {(int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31};
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, 3, one);
  CHECK_ERROR(cnn_tensor_expand(a, 3, big),
              "cannot expand to (2147483648, 2147483648, 2147483648): the number of elements overflows");
  cnn_tensor_release(a);
}

/* narrow's range check at the ends of int64 (its message's 1-based start overflowed: UBSan) */
static void test_narrow_extremes(void) {
  int64_t four[1] = {4};
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, 1, four);
  CHECK_ERROR(cnn_tensor_narrow(a, 0, INT64_MAX, 2),
              "range start 9223372036854775807, length 2 is out of bounds for dimension 1 of size 4");
  CHECK(cnn_tensor_narrow(a, 0, 1, INT64_MAX) == NULL);
  cnn_error_clear();
  CHECK(cnn_tensor_narrow(a, 0, INT64_MIN, 1) == NULL);
  cnn_error_clear();
  cnn_tensor_release(a);
}

static void test_zero_size_join(void) {
  /* (2, 0, 1) expanded to (2, 0, 3): non-contiguous, no elements; joined along dim 0 and 2 */
  int64_t s[3] = {2, 0, 1}, es[3] = {2, 0, 3};
  cnn_tensor *z = cnn_tensor_zeros(CNN_FLOAT32, 3, s);
  cnn_tensor *e = cnn_tensor_expand(z, 3, es);
  const cnn_tensor *two[2] = {e, e};
  cnn_tensor *c = cnn_join_cat(2, two, 0);
  CHECK(c && c->ndim == 3 && c->size[0] == 4 && c->size[1] == 0 && c->size[2] == 3);
  cnn_tensor_release(c);
  c = cnn_join_cat(2, two, 2);
  CHECK(c && c->size[0] == 2 && c->size[1] == 0 && c->size[2] == 6);
  cnn_tensor_release(c);
  c = cnn_join_stack(2, two, 0);
  CHECK(c && c->ndim == 4 && c->size[0] == 2 && c->size[3] == 3);
  cnn_tensor_release(c);
  cnn_tensor_release(e);
  cnn_tensor_release(z);
}

static void test_file_checks(void) {
  char *fifo = tmp_path("pipe");
  CHECK(mkfifo(fifo, 0600) == 0);
  cnn_error_clear();
  CHECK(cnn_file_open(fifo) == NULL); /* returns at once: the open does not wait for a writer */
  CHECK_ERROR_HAS(fifo, ": not a regular file (a named pipe)");
  CHECK(cnn_file_open_fd(dir) < 0);
  CHECK_ERROR_HAS(dir, ": not a regular file (a folder)");
  CHECK(cnn_file_check("/dev/null") != 0);
  CHECK_ERROR_HAS("/dev/null: not a regular file (a character device)", NULL);
  char *missing = tmp_path("missing");
  CHECK(cnn_file_check(missing) != 0);
  CHECK_ERROR_HAS(missing, "cannot open (No such file or directory)");
  char *plain = tmp_path("plain");
  FILE *w = fopen(plain, "wb");
  CHECK(w && fputs("data", w) >= 0 && fclose(w) == 0);
  FILE *f = cnn_file_open(plain);
  char buf[8] = {0};
  CHECK(f && fread(buf, 1, 4, f) == 4 && strcmp(buf, "data") == 0);
  if (f) fclose(f);
  CHECK(cnn_file_check(plain) == 0);
}

int main(void) {
  if (tmpfiles_init("cnn_test_tensor") != 0) return 2;
  test_fills();
  test_arange_i64();
  test_linspace_int();
  test_expanded_writes();
  test_size_overflow();
  test_narrow_extremes();
  test_zero_size_join();
  test_file_checks();
  tmpfiles_cleanup();
  return check_summary("test_tensor");
}
