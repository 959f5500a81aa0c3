/* Unit tests for runtime/core/elementwise.c and runtime/core/reduce.c. Every expected value is worked out by
 * hand (in the comment beside it) or by a plain scalar loop written here, never by the kernels.
 * Exits non-zero and prints each failed expectation. */
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/reduce.h"
#include "cnn/tensor.h"
#include "core/iter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                                    \
  do {                                                      \
    checks++;                                               \
    if (!(cond)) {                                          \
      failures++;                                           \
      fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                         \
      fputc('\n', stderr);                                  \
    }                                                       \
  } while (0)

#define SHAPE(...) \
  (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }
#define VALS(...) \
  (const double[]) { __VA_ARGS__ }
#define S0 0, NULL /* the shape of a 0-d tensor */

/* A contiguous tensor of shape (nd, size) holding vals in row-major order. */
static cnn_tensor *mk(cnn_dtype dt, int nd, const int64_t *size, const double *vals) {
  cnn_tensor *t = cnn_tensor_empty(dt, nd, size);
  if (!t) {
    fprintf(stderr, "cannot create a test tensor: %s\n", cnn_error_get());
    exit(2);
  }
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    if (dt == CNN_FLOAT32) cnn_tensor_f32(t)[i] = (float)vals[i];
    else if (dt == CNN_INT64) cnn_tensor_i64(t)[i] = (int64_t)vals[i];
    else cnn_tensor_u8(t)[i] = (uint8_t)vals[i];
  }
  return t;
}
#define F32(...) mk(CNN_FLOAT32, __VA_ARGS__)

static bool close_to(double got, double want) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= 1e-5 * (fabs(want) > 1 ? fabs(want) : 1);
}

/* Checks t's dtype, shape and values, then releases t. */
static void expect_at(int line, const char *what, cnn_tensor *t, cnn_dtype dt, int nd, const int64_t *size,
                      const double *vals) {
  checks++;
  if (!t) {
    failures++;
    fprintf(stderr, "line %d: FAIL: %s: returned NULL (%s)\n", line, what, cnn_error_get());
    return;
  }
  bool ok = t->dtype == dt && t->ndim == nd;
  for (int d = 0; ok && d < nd; d++) ok = t->size[d] == size[d];
  if (!ok) {
    failures++;
    fprintf(stderr, "line %d: FAIL: %s: got %s with %d dims (", line, what, cnn_dtype_name(t->dtype), t->ndim);
    for (int d = 0; d < t->ndim; d++) fprintf(stderr, d ? ", %lld" : "%lld", (long long)t->size[d]);
    fprintf(stderr, "), wanted %s with %d dims\n", cnn_dtype_name(dt), nd);
    cnn_tensor_release(t);
    return;
  }
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double got = cnn_tensor_get_flat(t, i);
    bool good = dt == CNN_INT64 ? got == vals[i] : close_to(got, vals[i]);
    if (!good) {
      failures++;
      fprintf(stderr, "line %d: FAIL: %s: element %lld is %.9g, wanted %.9g\n", line, what, (long long)i, got, vals[i]);
      break;
    }
  }
  cnn_tensor_release(t);
}
#define EXPECT(what, t, dt, ...) expect_at(__LINE__, what, t, dt, __VA_ARGS__)

/* Checks that a call failed (NULL or -1) with a message containing msg; clears the error. */
static void expect_error_at(int line, const char *what, bool failed, const char *msg) {
  checks++;
  if (!failed || !strstr(cnn_error_get(), msg)) {
    failures++;
    fprintf(stderr, "line %d: FAIL: %s: %s, message \"%s\", wanted \"%s\"\n", line, what,
            failed ? "failed" : "succeeded", cnn_error_get(), msg);
  }
  cnn_error_clear();
}
#define EXPECT_ERROR(what, failed, msg) expect_error_at(__LINE__, what, failed, msg)

static cnn_tensor *expect_null_or_release(cnn_tensor *t) {
  cnn_tensor_release(t);
  return t;
}
#define FAILS(t) (expect_null_or_release(t) == NULL)

/* ---------------------------------------------------------------- iterator coalescing */

/* Dims merge into as few runs as the layouts allow: the element loops then see one long run. */
static void test_iter_merge(void) {
  cnn_iter it;
  /* a contiguous (2, 3, 4, 5) pair is one run of 120 (dims 2 and 3 merge after 0 and 1 did) */
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(2, 3, 4, 5));
  cnn_tensor *b = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(2, 3, 4, 5));
  const cnn_tensor *ops[3] = {a, b, NULL};
  CHECK(cnn_iter_init(&it, 2, ops, SHAPE(2, 3, 4, 5)) == 0 && it.ndim == 1 && it.size[0] == 120 &&
            it.stride[0][0] == 4 && it.stride[1][0] == 4,
        "contiguous 4-d: ndim %d, size[0] %lld", it.ndim, (long long)it.size[0]);
  /* size-1 dims drop out first: (2, 1, 3, 1, 4) contiguous is one run of 24 */
  cnn_tensor *c = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(2, 1, 3, 1, 4));
  ops[0] = c;
  CHECK(cnn_iter_init(&it, 1, ops, SHAPE(2, 1, 3, 1, 4)) == 0 && it.ndim == 1 && it.size[0] == 24,
        "size-1 dims: ndim %d, size[0] %lld", it.ndim, (long long)it.size[0]);
  /* (2, 3, 4, 5) with a (3, 1, 1) bias: (2, 3, 20), the bias stepping once per 20 elements */
  cnn_tensor *bias = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(3, 1, 1));
  ops[0] = a, ops[1] = bias;
  CHECK(cnn_iter_init(&it, 2, ops, SHAPE(2, 3, 4, 5)) == 0 && it.ndim == 3 && it.size[0] == 2 && it.size[1] == 3 &&
            it.size[2] == 20 && it.stride[1][0] == 0 && it.stride[1][1] == 4 && it.stride[1][2] == 0,
        "bias broadcast: ndim %d", it.ndim);
  /* a transposed operand stops every merge: (3, 4) against its own transpose's layout stays 2-d */
  cnn_tensor *m = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(4, 3)), *mt = cnn_tensor_transpose(m, 0, 1);
  cnn_tensor *o = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(3, 4));
  ops[0] = o, ops[1] = mt;
  CHECK(cnn_iter_init(&it, 2, ops, SHAPE(3, 4)) == 0 && it.ndim == 2 && it.size[1] == 4 && it.stride[1][1] == 12,
        "transposed: ndim %d", it.ndim);
  /* a (2, 3, 4) slice keeping 3 of 5 columns: the inner (4, 3) rows merge no further than the gap */
  cnn_tensor *wide = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(2, 3, 5)), *part = cnn_tensor_narrow(wide, 2, 0, 3);
  cnn_tensor *o2 = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(2, 3, 3));
  ops[0] = o2, ops[1] = part;
  CHECK(part && cnn_iter_init(&it, 2, ops, SHAPE(2, 3, 3)) == 0 && it.ndim == 2 && it.size[0] == 6 && it.size[1] == 3 &&
            it.stride[1][0] == 20,
        "narrowed: ndim %d", it.ndim);
  cnn_tensor *rels[] = {a, b, c, bias, m, mt, o, wide, part, o2};
  for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) cnn_tensor_release(rels[i]);
}

/* ---------------------------------------------------------------- binary ops */

static void test_binary_float(void) {
  cnn_tensor *a = F32(SHAPE(4), VALS(1, -2, 3.5, 0));
  cnn_tensor *b = F32(SHAPE(4), VALS(2, 4, -0.5, 3));
  EXPECT("add", cnn_ew_binary(CNN_ADD, a, b), CNN_FLOAT32, SHAPE(4), VALS(3, 2, 3, 3));
  EXPECT("sub", cnn_ew_binary(CNN_SUB, a, b), CNN_FLOAT32, SHAPE(4), VALS(-1, -6, 4, -3));
  EXPECT("mul", cnn_ew_binary(CNN_MUL, a, b), CNN_FLOAT32, SHAPE(4), VALS(2, -8, -1.75, 0));
  EXPECT("div", cnn_ew_binary(CNN_DIV, a, b), CNN_FLOAT32, SHAPE(4), VALS(0.5, -0.5, -7, 0));
  /* 1^2 = 1, (-2)^4 = 16, 3.5^-0.5 = 1/sqrt(3.5) = 0.5345225, 0^3 = 0 */
  EXPECT("pow", cnn_ew_binary(CNN_POW, a, b), CNN_FLOAT32, SHAPE(4), VALS(1, 16, 0.5345225, 0));
  EXPECT("maximum", cnn_ew_binary(CNN_MAXIMUM, a, b), CNN_FLOAT32, SHAPE(4), VALS(2, 4, 3.5, 3));
  EXPECT("minimum", cnn_ew_binary(CNN_MINIMUM, a, b), CNN_FLOAT32, SHAPE(4), VALS(1, -2, -0.5, 0));
  cnn_tensor_release(a);
  cnn_tensor_release(b);

  /* comparisons give bool: x = (1, 2, 3) against y = (2, 2, 1) */
  cnn_tensor *x = F32(SHAPE(3), VALS(1, 2, 3)), *y = F32(SHAPE(3), VALS(2, 2, 1));
  EXPECT("eq", cnn_ew_binary(CNN_EQ, x, y), CNN_BOOL, SHAPE(3), VALS(0, 1, 0));
  EXPECT("ne", cnn_ew_binary(CNN_NE, x, y), CNN_BOOL, SHAPE(3), VALS(1, 0, 1));
  EXPECT("lt", cnn_ew_binary(CNN_LT, x, y), CNN_BOOL, SHAPE(3), VALS(1, 0, 0));
  EXPECT("le", cnn_ew_binary(CNN_LE, x, y), CNN_BOOL, SHAPE(3), VALS(1, 1, 0));
  EXPECT("gt", cnn_ew_binary(CNN_GT, x, y), CNN_BOOL, SHAPE(3), VALS(0, 0, 1));
  EXPECT("ge", cnn_ew_binary(CNN_GE, x, y), CNN_BOOL, SHAPE(3), VALS(0, 1, 1));
  cnn_tensor_release(x);
  cnn_tensor_release(y);

  /* maximum/minimum propagate NaN from either side, as torch.maximum does */
  cnn_tensor *p = F32(SHAPE(3), VALS(NAN, 1, 2)), *q = F32(SHAPE(3), VALS(1, NAN, 3));
  EXPECT("maximum NaN", cnn_ew_binary(CNN_MAXIMUM, p, q), CNN_FLOAT32, SHAPE(3), VALS(NAN, NAN, 3));
  EXPECT("minimum NaN", cnn_ew_binary(CNN_MINIMUM, p, q), CNN_FLOAT32, SHAPE(3), VALS(NAN, NAN, 2));
  EXPECT("eq NaN is 0", cnn_ew_binary(CNN_EQ, p, p), CNN_BOOL, SHAPE(3), VALS(0, 1, 1));
  cnn_tensor_release(p);
  cnn_tensor_release(q);
}

static void test_binary_int64(void) {
  cnn_tensor *a = mk(CNN_INT64, SHAPE(3), VALS(7, -3, 5)), *b = mk(CNN_INT64, SHAPE(3), VALS(2, 4, -6));
  EXPECT("int add", cnn_ew_binary(CNN_ADD, a, b), CNN_INT64, SHAPE(3), VALS(9, 1, -1));
  EXPECT("int sub", cnn_ew_binary(CNN_SUB, a, b), CNN_INT64, SHAPE(3), VALS(5, -7, 11));
  EXPECT("int mul", cnn_ew_binary(CNN_MUL, a, b), CNN_INT64, SHAPE(3), VALS(14, -12, -30));
  EXPECT("int maximum", cnn_ew_binary(CNN_MAXIMUM, a, b), CNN_INT64, SHAPE(3), VALS(7, 4, 5));
  EXPECT("int minimum", cnn_ew_binary(CNN_MINIMUM, a, b), CNN_INT64, SHAPE(3), VALS(2, -3, -6));
  /* true division: 7/2 = 3.5, -3/4 = -0.75, 5/-6 = -0.8333333 */
  EXPECT("int div is float", cnn_ew_binary(CNN_DIV, a, b), CNN_FLOAT32, SHAPE(3), VALS(3.5, -0.75, -0.8333333));
  /* PyTorch's integer power: 7^2 = 49, (-3)^4 = 81, 5^-6 truncates to 0 */
  EXPECT("int pow", cnn_ew_binary(CNN_POW, a, b), CNN_INT64, SHAPE(3), VALS(49, 81, 0));
  EXPECT("int lt is bool", cnn_ew_binary(CNN_LT, a, b), CNN_BOOL, SHAPE(3), VALS(0, 1, 0));

  /* int64 mixed with float32 promotes to float32: 7+0.5, -3+0.5, 5+0.5 */
  cnn_tensor *h = cnn_tensor_scalar(CNN_FLOAT32, 0.5);
  EXPECT("int + float", cnn_ew_binary(CNN_ADD, a, h), CNN_FLOAT32, SHAPE(3), VALS(7.5, -2.5, 5.5));
  cnn_tensor_release(h);
  cnn_tensor_release(a);
  cnn_tensor_release(b);

  /* integer division by zero must not trap: 1/0 = inf, -1/0 = -inf, 0/0 = nan */
  cnn_tensor *n = mk(CNN_INT64, SHAPE(3), VALS(1, -1, 0)), *z = mk(CNN_INT64, SHAPE(3), VALS(0, 0, 0));
  EXPECT("int div by zero", cnn_ew_binary(CNN_DIV, n, z), CNN_FLOAT32, SHAPE(3), VALS(INFINITY, -INFINITY, NAN));
  cnn_tensor_release(n);
  cnn_tensor_release(z);

  /* comparisons of int64 are exact beyond 2^53 (as floats both would be 9007199254740992) */
  cnn_tensor *big = cnn_tensor_empty(CNN_INT64, SHAPE(1)), *big1 = cnn_tensor_empty(CNN_INT64, SHAPE(1));
  cnn_tensor_i64(big)[0] = 9007199254740993LL;
  cnn_tensor_i64(big1)[0] = 9007199254740992LL;
  EXPECT("int gt exact", cnn_ew_binary(CNN_GT, big, big1), CNN_BOOL, SHAPE(1), VALS(1));
  /* and int64 addition is exact there too: 9007199254740993 + 9007199254740992 = 18014398509481985 */
  cnn_tensor *s = cnn_ew_binary(CNN_ADD, big, big1);
  CHECK(s && cnn_tensor_i64(s)[0] == 18014398509481985LL, "int64 add beyond 2^53 is exact");
  cnn_tensor_release(s);
  /* overflow wraps around instead of being undefined: INT64_MAX + 1 = INT64_MIN */
  cnn_tensor_i64(big)[0] = INT64_MAX;
  cnn_tensor_i64(big1)[0] = 1;
  s = cnn_ew_binary(CNN_ADD, big, big1);
  CHECK(s && cnn_tensor_i64(s)[0] == INT64_MIN, "int64 add wraps");
  cnn_tensor_release(s);
  cnn_tensor_release(big);
  cnn_tensor_release(big1);
}

static void test_broadcast(void) {
  /* (2,3) + (3): [[1,2,3],[4,5,6]] + [10,20,30] */
  cnn_tensor *a = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)), *b = F32(SHAPE(3), VALS(10, 20, 30));
  EXPECT("(2,3)+(3)", cnn_ew_binary(CNN_ADD, a, b), CNN_FLOAT32, SHAPE(2, 3), VALS(11, 22, 33, 14, 25, 36));
  EXPECT("(3)-(2,3)", cnn_ew_binary(CNN_SUB, b, a), CNN_FLOAT32, SHAPE(2, 3), VALS(9, 18, 27, 6, 15, 24));
  /* (2,1) + (1,3): [[1],[2]] + [[10,20,30]] = [[11,21,31],[12,22,32]] */
  cnn_tensor *c = F32(SHAPE(2, 1), VALS(1, 2)), *d = F32(SHAPE(1, 3), VALS(10, 20, 30));
  EXPECT("(2,1)+(1,3)", cnn_ew_binary(CNN_ADD, c, d), CNN_FLOAT32, SHAPE(2, 3), VALS(11, 21, 31, 12, 22, 32));
  EXPECT("(1,3)*(2,1)", cnn_ew_binary(CNN_MUL, d, c), CNN_FLOAT32, SHAPE(2, 3), VALS(10, 20, 30, 20, 40, 60));
  /* 0-d 5 with (2,2) [[1,2],[3,4]] on either side */
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 5), *m = F32(SHAPE(2, 2), VALS(1, 2, 3, 4));
  EXPECT("0-d + (2,2)", cnn_ew_binary(CNN_ADD, s, m), CNN_FLOAT32, SHAPE(2, 2), VALS(6, 7, 8, 9));
  EXPECT("(2,2) - 0-d", cnn_ew_binary(CNN_SUB, m, s), CNN_FLOAT32, SHAPE(2, 2), VALS(-4, -3, -2, -1));
  EXPECT("0-d / (2,2)", cnn_ew_binary(CNN_DIV, s, m), CNN_FLOAT32, SHAPE(2, 2), VALS(5, 2.5, 5.0 / 3, 1.25));
  EXPECT("0-d * 0-d", cnn_ew_binary(CNN_MUL, s, s), CNN_FLOAT32, S0, VALS(25));

  /* (2,3) and (4) do not broadcast; the message names both shapes; the next call works */
  cnn_tensor *e = F32(SHAPE(4), VALS(1, 2, 3, 4));
  EXPECT_ERROR("broadcast error", FAILS(cnn_ew_binary(CNN_ADD, a, e)), "shapes (2, 3) and (4) cannot be broadcast");
  EXPECT("works after error", cnn_ew_binary(CNN_ADD, e, e), CNN_FLOAT32, SHAPE(4), VALS(2, 4, 6, 8));

  /* empty broadcast: (0,3) + (3) is (0,3) */
  cnn_tensor *empty = cnn_tensor_empty(CNN_FLOAT32, SHAPE(0, 3));
  EXPECT("empty + (3)", cnn_ew_binary(CNN_ADD, empty, b), CNN_FLOAT32, SHAPE(0, 3), VALS(0));
  cnn_tensor_release(empty);
  cnn_tensor *rels[] = {a, b, c, d, s, m, e};
  for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) cnn_tensor_release(rels[i]);
}

static void test_noncontiguous(void) {
  /* a = [[1,2,3],[4,5,6]]; a^T = [[1,4],[2,5],[3,6]] */
  cnn_tensor *a = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
  cnn_tensor *at = cnn_tensor_transpose(a, 0, 1);
  cnn_tensor *b = F32(SHAPE(3, 2), VALS(10, 20, 30, 40, 50, 60));
  EXPECT("transposed + contiguous", cnn_ew_binary(CNN_ADD, at, b), CNN_FLOAT32, SHAPE(3, 2),
         VALS(11, 24, 32, 45, 53, 66));
  EXPECT("neg of transposed", cnn_ew_unary(CNN_NEG, at, 0, 0), CNN_FLOAT32, SHAPE(3, 2), VALS(-1, -4, -2, -5, -3, -6));
  /* expanded view of (3) [1,2,3] to (2,3), times a: [[1,4,9],[4,10,18]] */
  cnn_tensor *r = F32(SHAPE(3), VALS(1, 2, 3));
  cnn_tensor *ex = cnn_tensor_expand(r, SHAPE(2, 3));
  EXPECT("expanded * a", cnn_ew_binary(CNN_MUL, ex, a), CNN_FLOAT32, SHAPE(2, 3), VALS(1, 4, 9, 4, 10, 18));
  EXPECT("sqrt of expanded", cnn_ew_unary(CNN_SQRT, ex, 0, 0), CNN_FLOAT32, SHAPE(2, 3),
         VALS(1, 1.4142136, 1.7320508, 1, 1.4142136, 1.7320508));
  /* transposed + expanded together: at (3,2) + ex^T (3,2) = [[1+1,4+1],[2+2,5+2],[3+3,6+3]] */
  cnn_tensor *ext = cnn_tensor_transpose(ex, 0, 1);
  EXPECT("transposed + transposed expanded", cnn_ew_binary(CNN_ADD, at, ext), CNN_FLOAT32, SHAPE(3, 2),
         VALS(2, 5, 4, 7, 6, 9));
  cnn_tensor *rels[] = {a, at, b, r, ex, ext};
  for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) cnn_tensor_release(rels[i]);

  /* large enough to run threaded (> 32768 elements): a transposed (301, 150) view times a
   * broadcast (150, 1) column, checked against a scalar loop over the flat index */
  cnn_tensor *big = cnn_tensor_empty(CNN_FLOAT32, SHAPE(150, 301));
  for (int64_t i = 0; i < 150 * 301; i++) cnn_tensor_f32(big)[i] = (float)((i * 7919) % 1000) / 100.0f - 5.0f;
  cnn_tensor *bt = cnn_tensor_transpose(big, 0, 1); /* (301, 150) */
  cnn_tensor *col = cnn_tensor_empty(CNN_FLOAT32, SHAPE(150));
  for (int64_t j = 0; j < 150; j++) cnn_tensor_f32(col)[j] = (float)j * 0.25f - 10.0f;
  cnn_tensor *prod = cnn_ew_binary(CNN_MUL, bt, col);
  bool ok = prod && prod->ndim == 2 && prod->size[0] == 301 && prod->size[1] == 150;
  for (int64_t i = 0; ok && i < 301; i++)
    for (int64_t j = 0; ok && j < 150; j++) {
      float want = cnn_tensor_f32(big)[j * 301 + i] * ((float)j * 0.25f - 10.0f);
      ok = cnn_tensor_f32(prod)[i * 150 + j] == want;
    }
  CHECK(ok, "large transposed * broadcast row matches a scalar loop");
  cnn_tensor_release(prod);
  /* the same through sigmoid, in place on the transposed view */
  cnn_tensor *copy = cnn_tensor_clone(big);
  CHECK(cnn_ew_unary_(CNN_SIGMOID, bt, 0, 0) == 0, "sigmoid_ on a large transposed view");
  ok = true;
  for (int64_t i = 0; ok && i < 150 * 301; i++) {
    double x = cnn_tensor_f32(copy)[i];
    ok = fabs(cnn_tensor_f32(big)[i] - 1.0 / (1.0 + exp(-x))) < 1e-6;
  }
  CHECK(ok, "large in-place sigmoid matches 1/(1+exp(-x))");
  cnn_tensor_release(copy);
  cnn_tensor_release(col);
  cnn_tensor_release(bt);
  cnn_tensor_release(big);
}

static void test_inplace(void) {
  /* x = zeros(3,4); v = x[:, 1:3] (a strided (3,2) view); v = v + [1, 2] */
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(3, 4));
  cnn_tensor *v = cnn_tensor_narrow(x, 1, 1, 2);
  cnn_tensor *r = F32(SHAPE(2), VALS(1, 2));
  CHECK(cnn_ew_binary_into(CNN_ADD, v, v, r) == 0, "add into a strided view: %s", cnn_error_get());
  CHECK(cnn_ew_binary_into(CNN_MUL, v, v, r) == 0, "mul into a strided view: %s", cnn_error_get());
  /* columns 1 and 2 become (0+1)*1 = 1 and (0+2)*2 = 4, columns 0 and 3 stay 0 */
  cnn_tensor *xa = cnn_tensor_alias(x);
  EXPECT("strided in-place", xa, CNN_FLOAT32, SHAPE(3, 4), VALS(0, 1, 4, 0, 0, 1, 4, 0, 0, 1, 4, 0));
  /* unary in place on the view: relu of -(v) = 0 everywhere in the view */
  CHECK(cnn_ew_unary_(CNN_NEG, v, 0, 0) == 0, "neg_ on a strided view");
  xa = cnn_tensor_alias(x);
  EXPECT("strided neg_", xa, CNN_FLOAT32, SHAPE(3, 4), VALS(0, -1, -4, 0, 0, -1, -4, 0, 0, -1, -4, 0));
  /* axpy into the view: v += 0.5 * [2, 4] -> columns -1+1 = 0, -4+2 = -2 */
  cnn_tensor *r2 = F32(SHAPE(2), VALS(2, 4));
  CHECK(cnn_ew_axpy_(v, 0.5, r2) == 0, "axpy_ into a strided view");
  xa = cnn_tensor_alias(x);
  EXPECT("strided axpy_", xa, CNN_FLOAT32, SHAPE(3, 4), VALS(0, 0, -2, 0, 0, 0, -2, 0, 0, 0, -2, 0));
  cnn_tensor_release(r2);

  /* out may be b itself: r = 10 - r with r = (1, 2) -> (9, 8) */
  cnn_tensor *ten = cnn_tensor_scalar(CNN_FLOAT32, 10);
  CHECK(cnn_ew_binary_into(CNN_SUB, r, ten, r) == 0, "out aliasing b");
  EXPECT("out == b", cnn_tensor_retain(r), CNN_FLOAT32, SHAPE(2), VALS(9, 8));
  cnn_tensor_release(ten);

  /* partial overlap: y = (1,2,3,4,5); y[1:5] = y[0:4] + 0 must read the old values:
   * (1, 1, 2, 3, 4); a naive forward loop would smear 1 across */
  cnn_tensor *y = F32(SHAPE(5), VALS(1, 2, 3, 4, 5));
  cnn_tensor *dst = cnn_tensor_narrow(y, 0, 1, 4), *src = cnn_tensor_narrow(y, 0, 0, 4);
  cnn_tensor *zero = cnn_tensor_scalar(CNN_FLOAT32, 0);
  CHECK(cnn_ew_binary_into(CNN_ADD, dst, src, zero) == 0, "overlapping binary_into");
  EXPECT("overlapping views", cnn_tensor_retain(y), CNN_FLOAT32, SHAPE(5), VALS(1, 1, 2, 3, 4));
  /* and the other direction for axpy: y[0:4] += 1 * y[1:5] -> (1+1, 1+2, 2+3, 3+4, 4) */
  CHECK(cnn_ew_axpy_(src, 1.0, dst) == 0, "overlapping axpy_");
  EXPECT("overlapping axpy_", cnn_tensor_retain(y), CNN_FLOAT32, SHAPE(5), VALS(2, 3, 5, 7, 4));

  /* out's shape must be the broadcast shape */
  cnn_tensor *a23 = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)), *o3 = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(3));
  EXPECT_ERROR("out too small", cnn_ew_binary_into(CNN_ADD, o3, o3, a23) != 0,
               "output with shape (3) doesn't match the broadcast shape (2, 3)");
  /* writing into an expanded tensor is refused */
  cnn_tensor *ex = cnn_tensor_expand(o3, SHAPE(2, 3));
  EXPECT_ERROR("expanded out", cnn_ew_binary_into(CNN_ADD, ex, ex, a23) != 0, "expanded");
  /* a different out dtype converts: int64 (1,2,3) + int64 (3,2,1) into float32 = (4,4,4) */
  cnn_tensor *i1 = mk(CNN_INT64, SHAPE(3), VALS(1, 2, 3)), *i2 = mk(CNN_INT64, SHAPE(3), VALS(3, 2, 1));
  CHECK(cnn_ew_binary_into(CNN_ADD, o3, i1, i2) == 0, "int64 + int64 into float32");
  EXPECT("converted into float out", cnn_tensor_retain(o3), CNN_FLOAT32, SHAPE(3), VALS(4, 4, 4));
  /* int64 stays int64 in place: i1 *= i2 -> (3, 4, 3) */
  CHECK(cnn_ew_binary_into(CNN_MUL, i1, i1, i2) == 0, "int64 in place");
  EXPECT("int64 in place", cnn_tensor_retain(i1), CNN_INT64, SHAPE(3), VALS(3, 4, 3));
  /* int64 axpy with an integral alpha stays exact; a float source is refused */
  CHECK(cnn_ew_axpy_(i1, -2, i2) == 0, "int64 axpy_");
  EXPECT("int64 axpy_", cnn_tensor_retain(i1), CNN_INT64, SHAPE(3), VALS(-3, 0, 1));
  EXPECT_ERROR("int64 axpy_ of float", cnn_ew_axpy_(i1, 1, o3) != 0,
               "cannot write float32 results into an int64 tensor");
  EXPECT_ERROR("axpy_ broadcast", cnn_ew_axpy_(o3, 1, a23) != 0, "cannot be broadcast");

  cnn_tensor *rels[] = {x, v, r, y, dst, src, zero, a23, o3, ex, i1, i2};
  for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) cnn_tensor_release(rels[i]);
}

/* ---------------------------------------------------------------- unary ops */

static void test_unary_float(void) {
  cnn_tensor *x = F32(SHAPE(4), VALS(-2, -0.5, 0, 1.5));
  EXPECT("neg", cnn_ew_unary(CNN_NEG, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(2, 0.5, 0, -1.5));
  /* e^-2 = 0.1353353, e^-0.5 = 0.6065307, e^0 = 1, e^1.5 = 4.4816891 */
  EXPECT("exp", cnn_ew_unary(CNN_EXP, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(0.1353353, 0.6065307, 1, 4.4816891));
  EXPECT("abs", cnn_ew_unary(CNN_ABS, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(2, 0.5, 0, 1.5));
  EXPECT("relu", cnn_ew_unary(CNN_RELU, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(0, 0, 0, 1.5));
  /* 1/(1+e^2) = 0.1192029, 1/(1+e^0.5) = 0.3775407, 0.5, 1/(1+e^-1.5) = 0.8175745 */
  EXPECT("sigmoid", cnn_ew_unary(CNN_SIGMOID, x, 0, 0), CNN_FLOAT32, SHAPE(4),
         VALS(0.1192029, 0.3775407, 0.5, 0.8175745));
  /* tanh(-2) = -0.9640276, tanh(-0.5) = -0.4621172, 0, tanh(1.5) = 0.9051483 */
  EXPECT("tanh", cnn_ew_unary(CNN_TANH, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(-0.9640276, -0.4621172, 0, 0.9051483));
  EXPECT("sign", cnn_ew_unary(CNN_SIGN, x, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(-1, -1, 0, 1));
  EXPECT("clamp(-1, 1)", cnn_ew_unary(CNN_CLAMP, x, -1, 1), CNN_FLOAT32, SHAPE(4), VALS(-1, -0.5, 0, 1));
  EXPECT("clamp(-inf, 0.25)", cnn_ew_unary(CNN_CLAMP, x, -INFINITY, 0.25), CNN_FLOAT32, SHAPE(4),
         VALS(-2, -0.5, 0, 0.25));
  EXPECT("clamp(-1, +inf)", cnn_ew_unary(CNN_CLAMP, x, -1, INFINITY), CNN_FLOAT32, SHAPE(4), VALS(-1, -0.5, 0, 1.5));
  /* lo > hi: min(max(x, 1), 0) = 0 for every x, as torch.clamp */
  EXPECT("clamp(1, 0)", cnn_ew_unary(CNN_CLAMP, x, 1, 0), CNN_FLOAT32, SHAPE(4), VALS(0, 0, 0, 0));
  EXPECT("pow 2", cnn_ew_unary(CNN_POW_SCALAR, x, 2, 0), CNN_FLOAT32, SHAPE(4), VALS(4, 0.25, 0, 2.25));
  EXPECT("pow 3", cnn_ew_unary(CNN_POW_SCALAR, x, 3, 0), CNN_FLOAT32, SHAPE(4), VALS(-8, -0.125, 0, 3.375));
  EXPECT("pow -1", cnn_ew_unary(CNN_POW_SCALAR, x, -1, 0), CNN_FLOAT32, SHAPE(4), VALS(-0.5, -2, INFINITY, 0.6666667));
  /* 2^-2 = 0.25, 2^-0.5 = 0.7071068, 2^0 = 1, 2^1.5 = 2.8284271 */
  EXPECT("rpow 2", cnn_ew_unary(CNN_RPOW_SCALAR, x, 2, 0), CNN_FLOAT32, SHAPE(4), VALS(0.25, 0.7071068, 1, 2.8284271));
  EXPECT("add 1.5", cnn_ew_unary(CNN_ADD_SCALAR, x, 1.5, 0), CNN_FLOAT32, SHAPE(4), VALS(-0.5, 1, 1.5, 3));
  EXPECT("mul -2", cnn_ew_unary(CNN_MUL_SCALAR, x, -2, 0), CNN_FLOAT32, SHAPE(4), VALS(4, 1, 0, -3));
  cnn_tensor_release(x);

  /* log(1) = 0, log(e) = 1, log(0.5) = -0.6931472, log(0) = -inf, log(-1) = nan */
  cnn_tensor *l = F32(SHAPE(5), VALS(1, 2.718281828459045, 0.5, 0, -1));
  EXPECT("log", cnn_ew_unary(CNN_LOG, l, 0, 0), CNN_FLOAT32, SHAPE(5), VALS(0, 1, -0.6931472, -INFINITY, NAN));
  cnn_tensor_release(l);
  cnn_tensor *q = F32(SHAPE(4), VALS(4, 2.25, 0, -1));
  EXPECT("sqrt", cnn_ew_unary(CNN_SQRT, q, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(2, 1.5, 0, NAN));
  EXPECT("pow 0.5", cnn_ew_unary(CNN_POW_SCALAR, q, 0.5, 0), CNN_FLOAT32, SHAPE(4), VALS(2, 1.5, 0, NAN));
  /* 4^-1.5 = 1/8, 2.25^-1.5 = 1/3.375 = 0.2962963, 0^-1.5 = inf, (-1)^-1.5 = nan */
  EXPECT("pow -1.5", cnn_ew_unary(CNN_POW_SCALAR, q, -1.5, 0), CNN_FLOAT32, SHAPE(4),
         VALS(0.125, 0.2962963, INFINITY, NAN));
  cnn_tensor_release(q);

  /* NaN: relu and clamp keep it (PyTorch), sign gives 0 (PyTorch), sigmoid/tanh keep it */
  cnn_tensor *n = F32(SHAPE(1), VALS(NAN));
  EXPECT("relu NaN", cnn_ew_unary(CNN_RELU, n, 0, 0), CNN_FLOAT32, SHAPE(1), VALS(NAN));
  EXPECT("clamp NaN", cnn_ew_unary(CNN_CLAMP, n, -1, 1), CNN_FLOAT32, SHAPE(1), VALS(NAN));
  EXPECT("sign NaN", cnn_ew_unary(CNN_SIGN, n, 0, 0), CNN_FLOAT32, SHAPE(1), VALS(0));
  EXPECT("sigmoid NaN", cnn_ew_unary(CNN_SIGMOID, n, 0, 0), CNN_FLOAT32, SHAPE(1), VALS(NAN));
  cnn_tensor_release(n);
  cnn_tensor *one = F32(SHAPE(2), VALS(0.5, 3));
  EXPECT("clamp with a NaN bound", cnn_ew_unary(CNN_CLAMP, one, NAN, 1), CNN_FLOAT32, SHAPE(2), VALS(NAN, NAN));
  cnn_tensor_release(one);

  /* sigmoid stays finite for huge |x|: sigmoid(1000) = 1, sigmoid(-1000) = 0, sigmoid(-100) = 3.7e-44 */
  cnn_tensor *h = F32(SHAPE(4), VALS(1000, -1000, 100, -100));
  cnn_tensor *sg = cnn_ew_unary(CNN_SIGMOID, h, 0, 0);
  CHECK(sg && cnn_tensor_f32(sg)[0] == 1.0f && cnn_tensor_f32(sg)[1] == 0.0f && cnn_tensor_f32(sg)[2] == 1.0f &&
            cnn_tensor_f32(sg)[3] >= 0.0f && cnn_tensor_f32(sg)[3] < 1e-30f,
        "sigmoid of +-1000, +-100 is finite");
  cnn_tensor_release(sg);
  EXPECT("tanh huge", cnn_ew_unary(CNN_TANH, h, 0, 0), CNN_FLOAT32, SHAPE(4), VALS(1, -1, 1, -1));
  cnn_tensor_release(h);

  /* exp and sigmoid over the whole float range against double-precision references: within 2 ulp
   * (relative 2.4e-7) for normal results, within one denormal step below, exact inf/0/NaN */
  const int64_t nsweep = 200001;
  cnn_tensor *sw = cnn_tensor_empty(CNN_FLOAT32, SHAPE(nsweep));
  for (int64_t k = 0; k < nsweep; k++)
    cnn_tensor_f32(sw)[k] = (float)(-110.0 + 200.0 * (double)k / (double)(nsweep - 1));
  cnn_tensor *ex = cnn_ew_unary(CNN_EXP, sw, 0, 0), *sgm = cnn_ew_unary(CNN_SIGMOID, sw, 0, 0);
  bool eok = ex && sgm;
  for (int64_t k = 0; eok && k < nsweep; k++) {
    double xv = cnn_tensor_f32(sw)[k], want = exp(xv), got = cnn_tensor_f32(ex)[k];
    if ((float)want == INFINITY) eok = got == INFINITY;
    else if (want < 1.1754944e-38) eok = fabs(got - want) <= 1.5e-45;
    else eok = fabs(got - want) <= 2.4e-7 * want;
    double swant = xv >= 0 ? 1 / (1 + exp(-xv)) : exp(xv) / (1 + exp(xv)), sgot = cnn_tensor_f32(sgm)[k];
    if (swant >= 1.1754944e-38) eok = eok && fabs(sgot - swant) <= 3.6e-7 * swant;
    else eok = eok && fabs(sgot - swant) <= 1.5e-45;
    if (!eok) fprintf(stderr, "x = %.9g: exp %.9g (want %.9g), sigmoid %.9g (want %.9g)\n", xv, got, want, sgot, swant);
  }
  CHECK(eok, "exp and sigmoid accurate over [-110, 90]");
  cnn_tensor_release(ex);
  cnn_tensor_release(sgm);
  cnn_tensor_release(sw);
  cnn_tensor *spec = F32(SHAPE(5), VALS(INFINITY, -INFINITY, NAN, 0, 88.8));
  EXPECT("exp specials", cnn_ew_unary(CNN_EXP, spec, 0, 0), CNN_FLOAT32, SHAPE(5), VALS(INFINITY, 0, NAN, 1, INFINITY));
  EXPECT("sigmoid specials", cnn_ew_unary(CNN_SIGMOID, spec, 0, 0), CNN_FLOAT32, SHAPE(5), VALS(1, 0, NAN, 0.5, 1));
  cnn_tensor_release(spec);

  /* 0-d and empty inputs keep their shape */
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, -3);
  EXPECT("abs 0-d", cnn_ew_unary(CNN_ABS, s, 0, 0), CNN_FLOAT32, S0, VALS(3));
  cnn_tensor_release(s);
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, SHAPE(2, 0));
  EXPECT("exp empty", cnn_ew_unary(CNN_EXP, e, 0, 0), CNN_FLOAT32, SHAPE(2, 0), VALS(0));
  CHECK(cnn_ew_unary_(CNN_EXP, e, 0, 0) == 0, "exp_ on empty");
  cnn_tensor_release(e);
}

static void test_unary_int64(void) {
  cnn_tensor *x = mk(CNN_INT64, SHAPE(3), VALS(-3, 0, 4));
  EXPECT("int neg", cnn_ew_unary(CNN_NEG, x, 0, 0), CNN_INT64, SHAPE(3), VALS(3, 0, -4));
  EXPECT("int abs", cnn_ew_unary(CNN_ABS, x, 0, 0), CNN_INT64, SHAPE(3), VALS(3, 0, 4));
  EXPECT("int relu", cnn_ew_unary(CNN_RELU, x, 0, 0), CNN_INT64, SHAPE(3), VALS(0, 0, 4));
  EXPECT("int sign", cnn_ew_unary(CNN_SIGN, x, 0, 0), CNN_INT64, SHAPE(3), VALS(-1, 0, 1));
  EXPECT("int clamp(-1, 2)", cnn_ew_unary(CNN_CLAMP, x, -1, 2), CNN_INT64, SHAPE(3), VALS(-1, 0, 2));
  EXPECT("int clamp(-inf, 2)", cnn_ew_unary(CNN_CLAMP, x, -INFINITY, 2), CNN_INT64, SHAPE(3), VALS(-3, 0, 2));
  EXPECT("int clamp(0.5, inf) is float", cnn_ew_unary(CNN_CLAMP, x, 0.5, INFINITY), CNN_FLOAT32, SHAPE(3),
         VALS(0.5, 0.5, 4));
  EXPECT("int + 2", cnn_ew_unary(CNN_ADD_SCALAR, x, 2, 0), CNN_INT64, SHAPE(3), VALS(-1, 2, 6));
  EXPECT("int + 0.5 is float", cnn_ew_unary(CNN_ADD_SCALAR, x, 0.5, 0), CNN_FLOAT32, SHAPE(3), VALS(-2.5, 0.5, 4.5));
  EXPECT("int * 3", cnn_ew_unary(CNN_MUL_SCALAR, x, 3, 0), CNN_INT64, SHAPE(3), VALS(-9, 0, 12));
  /* float-only ops convert: e^-3 = 0.0497871, 1, e^4 = 54.59815 */
  EXPECT("int exp", cnn_ew_unary(CNN_EXP, x, 0, 0), CNN_FLOAT32, SHAPE(3), VALS(0.0497871, 1, 54.59815));
  EXPECT("int sqrt", cnn_ew_unary(CNN_SQRT, x, 0, 0), CNN_FLOAT32, SHAPE(3), VALS(NAN, 0, 2));
  EXPECT("int pow 2", cnn_ew_unary(CNN_POW_SCALAR, x, 2, 0), CNN_INT64, SHAPE(3), VALS(9, 0, 16));
  EXPECT("int pow 0.5 is float", cnn_ew_unary(CNN_POW_SCALAR, x, 0.5, 0), CNN_FLOAT32, SHAPE(3), VALS(NAN, 0, 2));
  /* 2^-3 = 0.125 is not integral: float32; 2^x with integral 2 stays int64 (2^-3 truncates to 0) */
  EXPECT("int pow -1 is float", cnn_ew_unary(CNN_POW_SCALAR, x, -1, 0), CNN_FLOAT32, SHAPE(3),
         VALS(-1.0 / 3, INFINITY, 0.25));
  EXPECT("2 ^ int", cnn_ew_unary(CNN_RPOW_SCALAR, x, 2, 0), CNN_INT64, SHAPE(3), VALS(0, 1, 16));
  EXPECT("int sigmoid", cnn_ew_unary(CNN_SIGMOID, x, 0, 0), CNN_FLOAT32, SHAPE(3), VALS(0.0474259, 0.5, 0.9820138));

  /* in place: integral results stay, float ones are refused and leave x alone */
  EXPECT_ERROR("exp_ on int64", cnn_ew_unary_(CNN_EXP, x, 0, 0) != 0,
               "cannot write float32 results into an int64 tensor");
  EXPECT_ERROR("add_ 0.5 on int64", cnn_ew_unary_(CNN_ADD_SCALAR, x, 0.5, 0) != 0, "int64");
  CHECK(cnn_ew_unary_(CNN_NEG, x, 0, 0) == 0, "neg_ on int64 after an error");
  CHECK(cnn_ew_unary_(CNN_MUL_SCALAR, x, -2, 0) == 0, "mul_ on int64");
  /* -(-3, 0, 4) * -2 = (-6, 0, 8) */
  EXPECT("int in place", cnn_tensor_retain(x), CNN_INT64, SHAPE(3), VALS(-6, 0, 8));
  cnn_tensor_release(x);

  /* INT64_MIN negates to itself (wraps) instead of trapping */
  cnn_tensor *m = cnn_tensor_empty(CNN_INT64, SHAPE(1));
  cnn_tensor_i64(m)[0] = INT64_MIN;
  cnn_tensor *nm = cnn_ew_unary(CNN_NEG, m, 0, 0);
  CHECK(nm && cnn_tensor_i64(nm)[0] == INT64_MIN, "neg INT64_MIN wraps");
  cnn_tensor_release(nm);
  cnn_tensor_release(m);
}

static void test_where_allclose(void) {
  cnn_tensor *c = F32(SHAPE(3), VALS(1, 0, 1)), *a = F32(SHAPE(3), VALS(1, 2, 3));
  cnn_tensor *nine = cnn_tensor_scalar(CNN_FLOAT32, 9);
  EXPECT("where", cnn_ew_where(c, a, nine), CNN_FLOAT32, SHAPE(3), VALS(1, 9, 3));
  /* int64 cond (2,1) [[0],[5]] broadcast against (3): [[9,9,9],[1,2,3]] */
  cnn_tensor *ci = mk(CNN_INT64, SHAPE(2, 1), VALS(0, 5));
  EXPECT("where int cond", cnn_ew_where(ci, a, nine), CNN_FLOAT32, SHAPE(2, 3), VALS(9, 9, 9, 1, 2, 3));
  cnn_tensor *ia = mk(CNN_INT64, SHAPE(3), VALS(4, 5, 6)), *ib = mk(CNN_INT64, SHAPE(1), VALS(-1));
  EXPECT("where int values", cnn_ew_where(c, ia, ib), CNN_INT64, SHAPE(3), VALS(4, -1, 6));
  cnn_tensor *bad = F32(SHAPE(2), VALS(1, 1));
  EXPECT_ERROR("where broadcast", FAILS(cnn_ew_where(bad, a, nine)), "cannot be broadcast");

  /* allclose: |a - b| <= atol + rtol * |b| */
  cnn_tensor *b = F32(SHAPE(3), VALS(1, 2, 3.000001));
  CHECK(cnn_ew_allclose(a, b, 1e-5, 1e-8, false) == 1, "allclose within rtol");
  cnn_tensor *b2 = F32(SHAPE(3), VALS(1, 2.1, 3));
  CHECK(cnn_ew_allclose(a, b2, 1e-5, 1e-8, false) == 0, "allclose 2 vs 2.1");
  CHECK(cnn_ew_allclose(a, b2, 0, 0.11, false) == 1, "allclose with atol 0.11");
  cnn_tensor *n = F32(SHAPE(2), VALS(NAN, INFINITY));
  cnn_tensor *inf = F32(SHAPE(1), VALS(INFINITY)), *ninf = F32(SHAPE(1), VALS(-INFINITY));
  CHECK(cnn_ew_allclose(n, n, 1e-5, 1e-8, false) == 0, "NaN is not close to NaN");
  CHECK(cnn_ew_allclose(inf, inf, 1e-5, 1e-8, false) == 1, "inf is close to inf");
  CHECK(cnn_ew_allclose(inf, ninf, 1e-5, 1e-8, false) == 0, "inf is not close to -inf");
  /* broadcast: (2,3) [[1,2,3],[1,2,3]] against (3) */
  cnn_tensor *rep = F32(SHAPE(2, 3), VALS(1, 2, 3, 1, 2, 3));
  CHECK(cnn_ew_allclose(rep, a, 1e-5, 1e-8, false) == 1, "allclose broadcast (2,3) vs (3)");
  CHECK(cnn_ew_allclose(a, rep, 1e-5, 1e-8, false) == 1, "allclose broadcast (3) vs (2,3)");
  CHECK(cnn_ew_allclose(ia, a, 0, 3.0001, false) == 1, "allclose int64 vs float");
  EXPECT_ERROR("allclose shapes", cnn_ew_allclose(bad, a, 1e-5, 1e-8, false) == -1, "cannot be broadcast");
  cnn_tensor *rels[] = {c, a, nine, ci, ia, ib, bad, b, b2, n, inf, ninf, rep};
  for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) cnn_tensor_release(rels[i]);
}

/* ---------------------------------------------------------------- reductions */

static void test_reduce_basic(void) {
  /* x = [[1,2,3],[4,5,6]] */
  cnn_tensor *x = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
  EXPECT("sum dim 0", cnn_red_reduce(CNN_RED_SUM, x, 0, false), CNN_FLOAT32, SHAPE(3), VALS(5, 7, 9));
  EXPECT("sum dim 0 keepdim", cnn_red_reduce(CNN_RED_SUM, x, 0, true), CNN_FLOAT32, SHAPE(1, 3), VALS(5, 7, 9));
  EXPECT("sum dim 1", cnn_red_reduce(CNN_RED_SUM, x, 1, false), CNN_FLOAT32, SHAPE(2), VALS(6, 15));
  EXPECT("sum dim -1 keepdim", cnn_red_reduce(CNN_RED_SUM, x, -1, true), CNN_FLOAT32, SHAPE(2, 1), VALS(6, 15));
  EXPECT("sum all", cnn_red_reduce(CNN_RED_SUM, x, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(21));
  EXPECT("sum all keepdim", cnn_red_reduce(CNN_RED_SUM, x, CNN_ALL_DIMS, true), CNN_FLOAT32, SHAPE(1, 1), VALS(21));
  EXPECT("mean dim 0", cnn_red_reduce(CNN_RED_MEAN, x, 0, false), CNN_FLOAT32, SHAPE(3), VALS(2.5, 3.5, 4.5));
  EXPECT("mean dim 1", cnn_red_reduce(CNN_RED_MEAN, x, 1, true), CNN_FLOAT32, SHAPE(2, 1), VALS(2, 5));
  EXPECT("mean all", cnn_red_reduce(CNN_RED_MEAN, x, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(3.5));
  /* 1*2*3 = 6, 4*5*6 = 120; 1*4, 2*5, 3*6; 6! = 720 */
  EXPECT("prod dim 1", cnn_red_reduce(CNN_RED_PROD, x, 1, false), CNN_FLOAT32, SHAPE(2), VALS(6, 120));
  EXPECT("prod dim 0", cnn_red_reduce(CNN_RED_PROD, x, 0, false), CNN_FLOAT32, SHAPE(3), VALS(4, 10, 18));
  EXPECT("prod all", cnn_red_reduce(CNN_RED_PROD, x, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(720));
  /* transposed (3,2) [[1,4],[2,5],[3,6]]: sum dim 0 = (6, 15), dim 1 = (5, 7, 9) */
  cnn_tensor *xt = cnn_tensor_transpose(x, 0, 1);
  EXPECT("sum transposed dim 0", cnn_red_reduce(CNN_RED_SUM, xt, 0, false), CNN_FLOAT32, SHAPE(2), VALS(6, 15));
  EXPECT("sum transposed dim 1", cnn_red_reduce(CNN_RED_SUM, xt, 1, false), CNN_FLOAT32, SHAPE(3), VALS(5, 7, 9));
  EXPECT_ERROR("bad dim", FAILS(cnn_red_reduce(CNN_RED_SUM, x, 2, false)), "out of range");
  EXPECT_ERROR("bad negative dim", FAILS(cnn_red_reduce(CNN_RED_SUM, x, -3, false)), "out of range");
  cnn_tensor_release(xt);
  cnn_tensor_release(x);

  /* y = arange(24) as (2,3,4): y[a][b][c] = 12a + 4b + c.
   * sum dim 1: 3*(12a + c) + 4*(0+1+2) = 36a + 3c + 12 -> [[12,15,18,21],[48,51,54,57]]
   * sum dim 0: 2*(4b+c) + 12 -> [[12,14,16,18],[20,22,24,26],[28,30,32,34]]
   * sum dim 2: 4*(12a+4b) + 6 -> [[6,22,38],[54,70,86]] */
  cnn_tensor *y = cnn_tensor_arange(0, 24, 1, CNN_FLOAT32);
  cnn_tensor *y3 = cnn_tensor_view(y, SHAPE(2, 3, 4));
  EXPECT("3-d sum dim 1", cnn_red_reduce(CNN_RED_SUM, y3, 1, false), CNN_FLOAT32, SHAPE(2, 4),
         VALS(12, 15, 18, 21, 48, 51, 54, 57));
  EXPECT("3-d sum dim 1 keepdim", cnn_red_reduce(CNN_RED_SUM, y3, 1, true), CNN_FLOAT32, SHAPE(2, 1, 4),
         VALS(12, 15, 18, 21, 48, 51, 54, 57));
  EXPECT("3-d sum dim 0", cnn_red_reduce(CNN_RED_SUM, y3, 0, false), CNN_FLOAT32, SHAPE(3, 4),
         VALS(12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34));
  EXPECT("3-d sum dim 2", cnn_red_reduce(CNN_RED_SUM, y3, 2, false), CNN_FLOAT32, SHAPE(2, 3),
         VALS(6, 22, 38, 54, 70, 86));
  /* mean dim 1 = sum / 3 */
  EXPECT("3-d mean dim 1", cnn_red_reduce(CNN_RED_MEAN, y3, 1, false), CNN_FLOAT32, SHAPE(2, 4),
         VALS(4, 5, 6, 7, 16, 17, 18, 19));
  /* permuted without a copy: z[c][a][b] = y[a][b][c] = 12a + 4b + c, shape (4,2,3).
   * sum over a: 12 + 2(4b + c) -> rows c = 0..3: (12,20,28), (14,22,30), (16,24,32), (18,26,34) */
  cnn_tensor *z = cnn_tensor_permute(y3, (const int[]){2, 0, 1});
  EXPECT("permuted sum dim 1", cnn_red_reduce(CNN_RED_SUM, z, 1, false), CNN_FLOAT32, SHAPE(4, 3),
         VALS(12, 20, 28, 14, 22, 30, 16, 24, 32, 18, 26, 34));
  /* sum over b, keepdim: 3(12a + c) + 12 -> (4,2,1): c-major [[12, 48], [15, 51], [18, 54], [21, 57]] */
  EXPECT("permuted sum dim 2 keepdim", cnn_red_reduce(CNN_RED_SUM, z, 2, true), CNN_FLOAT32, SHAPE(4, 2, 1),
         VALS(12, 48, 15, 51, 18, 54, 21, 57));
  /* max over c is at c = 3: 12a + 4b + 3 -> (2,3) [[3,7,11],[15,19,23]], indices all 3 */
  cnn_tensor *pv = NULL, *pi = NULL;
  CHECK(cnn_red_max(z, 0, false, &pv, &pi) == 0, "max of permuted");
  EXPECT("permuted max values", pv, CNN_FLOAT32, SHAPE(2, 3), VALS(3, 7, 11, 15, 19, 23));
  EXPECT("permuted max indices", pi, CNN_INT64, SHAPE(2, 3), VALS(3, 3, 3, 3, 3, 3));
  /* full argmin of z is its flat element 0 (y[0][0][0] = 0); full argmax is z[3][1][2] = 23, flat 23 */
  CHECK(cnn_red_max(z, CNN_ALL_DIMS, false, &pv, &pi) == 0, "full max of permuted");
  EXPECT("permuted full max", pv, CNN_FLOAT32, S0, VALS(23));
  EXPECT("permuted full argmax is a logical index", pi, CNN_INT64, S0, VALS(23));
  /* [[1,9,3],[4,5,6]]^T = [[1,4],[9,5],[3,6]]: 9 is at flat index 2 of the view (1 in memory) */
  cnn_tensor *m9 = F32(SHAPE(2, 3), VALS(1, 9, 3, 4, 5, 6)), *m9t = cnn_tensor_transpose(m9, 0, 1);
  CHECK(cnn_red_max(m9t, CNN_ALL_DIMS, false, NULL, &pi) == 0, "full argmax of transposed");
  EXPECT("full argmax of transposed", pi, CNN_INT64, S0, VALS(2));
  cnn_tensor_release(m9t);
  cnn_tensor_release(m9);
  /* every dim and keepdim against a reduction of a contiguous copy */
  cnn_tensor *zc = cnn_tensor_clone(z);
  for (int dim = -1; dim < 3; dim++)
    for (int kd = 0; kd < 2; kd++) {
      int d = dim < 0 ? CNN_ALL_DIMS : dim;
      cnn_tensor *r1 = cnn_red_var(z, d, true, kd), *r2 = cnn_red_var(zc, d, true, kd);
      CHECK(r1 && r2 && cnn_ew_allclose(r1, r2, 1e-6, 1e-6, false) == 1 && cnn_tensor_same_shape(r1, r2),
            "var of permuted dim %d keepdim %d equals var of a copy", dim, kd);
      cnn_tensor_release(r1);
      cnn_tensor_release(r2);
      cnn_tensor *v1 = NULL, *i1 = NULL, *v2 = NULL, *i2 = NULL;
      CHECK(cnn_red_min(z, d, kd, &v1, &i1) == 0 && cnn_red_min(zc, d, kd, &v2, &i2) == 0 &&
                cnn_ew_allclose(v1, v2, 0, 0, false) == 1 && cnn_ew_allclose(i1, i2, 0, 0, false) == 1 &&
                cnn_tensor_same_shape(i1, i2) && cnn_tensor_same_shape(v1, v2),
            "min of permuted dim %d keepdim %d equals min of a copy", dim, kd);
      cnn_tensor *rels[] = {v1, i1, v2, i2};
      for (int k = 0; k < 4; k++) cnn_tensor_release(rels[k]);
    }
  cnn_tensor_release(zc);
  cnn_tensor_release(z);
  cnn_tensor_release(y3);
  cnn_tensor_release(y);

  /* 0-d: every reduction returns the value; dim 0 and -1 are accepted */
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 3.5);
  EXPECT("0-d sum", cnn_red_reduce(CNN_RED_SUM, s, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(3.5));
  EXPECT("0-d sum dim 0", cnn_red_reduce(CNN_RED_SUM, s, 0, true), CNN_FLOAT32, S0, VALS(3.5));
  EXPECT("0-d mean dim -1", cnn_red_reduce(CNN_RED_MEAN, s, -1, false), CNN_FLOAT32, S0, VALS(3.5));
  EXPECT("0-d prod", cnn_red_reduce(CNN_RED_PROD, s, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(3.5));
  cnn_tensor *mv = NULL, *mi = NULL;
  CHECK(cnn_red_max(s, CNN_ALL_DIMS, false, &mv, &mi) == 0, "0-d max");
  EXPECT("0-d max value", mv, CNN_FLOAT32, S0, VALS(3.5));
  EXPECT("0-d max index", mi, CNN_INT64, S0, VALS(0));
  EXPECT_ERROR("0-d dim 1", FAILS(cnn_red_reduce(CNN_RED_SUM, s, 1, false)), "out of range");
  cnn_tensor_release(s);

  /* int64: sum and prod stay int64, mean is float32 */
  cnn_tensor *i = mk(CNN_INT64, SHAPE(2, 2), VALS(1, 2, 3, 4));
  EXPECT("int sum all", cnn_red_reduce(CNN_RED_SUM, i, CNN_ALL_DIMS, false), CNN_INT64, S0, VALS(10));
  EXPECT("int sum dim 0", cnn_red_reduce(CNN_RED_SUM, i, 0, false), CNN_INT64, SHAPE(2), VALS(4, 6));
  EXPECT("int sum dim 1", cnn_red_reduce(CNN_RED_SUM, i, 1, false), CNN_INT64, SHAPE(2), VALS(3, 7));
  EXPECT("int prod dim 1", cnn_red_reduce(CNN_RED_PROD, i, 1, false), CNN_INT64, SHAPE(2), VALS(2, 12));
  EXPECT("int mean dim 0", cnn_red_reduce(CNN_RED_MEAN, i, 0, false), CNN_FLOAT32, SHAPE(2), VALS(2, 3));
  EXPECT("int mean all", cnn_red_reduce(CNN_RED_MEAN, i, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(2.5));
  cnn_tensor_release(i);
  /* exact beyond 2^53: 9007199254740993 + 1 = 9007199254740994 (a double sum would give ...992) */
  cnn_tensor *big = cnn_tensor_empty(CNN_INT64, SHAPE(2));
  cnn_tensor_i64(big)[0] = 9007199254740993LL;
  cnn_tensor_i64(big)[1] = 1;
  cnn_tensor *bs = cnn_red_reduce(CNN_RED_SUM, big, 0, false);
  CHECK(bs && bs->dtype == CNN_INT64 && cnn_tensor_i64(bs)[0] == 9007199254740994LL, "int64 sum is exact");
  cnn_tensor_release(bs);
  cnn_tensor_release(big);
}

static void test_reduce_accuracy(void) {
  /* one million ones sum to exactly 1e6, whatever the path */
  cnn_tensor *ones = cnn_tensor_full(CNN_FLOAT32, SHAPE(1000000), 1.0);
  cnn_tensor *s = cnn_red_reduce(CNN_RED_SUM, ones, CNN_ALL_DIMS, false);
  CHECK(s && cnn_tensor_f32(s)[0] == 1000000.0f, "sum of 1e6 ones is exactly 1e6 (got %.9g)",
        s ? cnn_tensor_f32(s)[0] : -1.0);
  cnn_tensor_release(s);
  s = cnn_red_reduce(CNN_RED_MEAN, ones, 0, false);
  CHECK(s && cnn_tensor_f32(s)[0] == 1.0f, "mean of 1e6 ones is exactly 1");
  cnn_tensor_release(s);
  /* as (1000, 1000): every column and every row sums to exactly 1000 */
  cnn_tensor *sq = cnn_tensor_view(ones, SHAPE(1000, 1000));
  for (int dim = 0; dim < 2; dim++) {
    s = cnn_red_reduce(CNN_RED_SUM, sq, dim, false);
    bool ok = s != NULL;
    for (int k = 0; ok && k < 1000; k++) ok = cnn_tensor_f32(s)[k] == 1000.0f;
    CHECK(ok, "(1000,1000) ones summed over dim %d give 1000 each", dim);
    cnn_tensor_release(s);
  }
  /* (1e6, 1) over dim 0 */
  cnn_tensor *tall = cnn_tensor_view(ones, SHAPE(1000000, 1));
  s = cnn_red_reduce(CNN_RED_SUM, tall, 0, false);
  CHECK(s && cnn_tensor_f32(s)[0] == 1000000.0f, "(1e6,1) ones over dim 0 give exactly 1e6");
  cnn_tensor_release(s);
  cnn_tensor_release(tall);
  cnn_tensor_release(sq);
  cnn_tensor_release(ones);

  /* 1e6 copies of float(0.1) = 0.100000001490116...: the exact sum is 100000.00149, which float32
   * rounds to 100000; a float accumulator would drift by about 1% */
  cnn_tensor *tenth = cnn_tensor_full(CNN_FLOAT32, SHAPE(1000000), 0.1);
  s = cnn_red_reduce(CNN_RED_SUM, tenth, CNN_ALL_DIMS, false);
  CHECK(s && cnn_tensor_f32(s)[0] == 100000.0f, "sum of 1e6 x 0.1 rounds to 100000 (got %.9g)",
        s ? cnn_tensor_f32(s)[0] : -1.0);
  cnn_tensor_release(s);
  /* the same over a non-last dim: (250000, 4) over dim 0 gives 250000 x 0.1 = 25000.00037 -> 25000 */
  cnn_tensor *cols = cnn_tensor_view(tenth, SHAPE(250000, 4));
  s = cnn_red_reduce(CNN_RED_SUM, cols, 0, false);
  bool ok4 = s != NULL;
  for (int k = 0; ok4 && k < 4; k++) ok4 = cnn_tensor_f32(s)[k] == 25000.0f;
  CHECK(ok4, "(250000,4) x 0.1 over dim 0 rounds to 25000 (got %.9g)", s ? cnn_tensor_f32(s)[0] : -1.0);
  cnn_tensor_release(s);
  cnn_tensor_release(cols);
  cnn_tensor_release(tenth);

  /* a (3, 50, 300) tensor against double loops over every dim (inner > 256 columns, outer > 1) */
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, SHAPE(3, 50, 300));
  float *p = cnn_tensor_f32(t);
  for (int64_t i = 0; i < 3 * 50 * 300; i++) p[i] = (float)((i * 2654435761u) % 1000) / 250.0f - 2.0f;
  const int64_t sz[3] = {3, 50, 300};
  for (int dim = 0; dim < 3; dim++) {
    cnn_tensor *sum = cnn_red_reduce(CNN_RED_SUM, t, dim, false), *var = cnn_red_var(t, dim, true, false);
    cnn_tensor *mx = NULL, *mi = NULL;
    int rc = cnn_red_max(t, dim, false, &mx, &mi);
    bool ok = sum && var && rc == 0;
    int64_t n = sz[dim], k = 0;
    for (int64_t a = 0; ok && a < 3; a++)
      for (int64_t b = 0; ok && b < 50; b++)
        for (int64_t c = 0; ok && c < 300; c++) {
          int64_t idx[3] = {a, b, c};
          if (idx[dim] != 0) continue;
          double acc = 0, acc2 = 0, best = -INFINITY;
          int64_t bi = -1;
          for (int64_t r = 0; r < n; r++) {
            idx[dim] = r;
            double v = p[(idx[0] * 50 + idx[1]) * 300 + idx[2]];
            acc += v;
            if (v > best) best = v, bi = r;
          }
          double mean = acc / (double)n;
          for (int64_t r = 0; r < n; r++) {
            idx[dim] = r;
            double v = p[(idx[0] * 50 + idx[1]) * 300 + idx[2]] - mean;
            acc2 += v * v;
          }
          ok = fabs(cnn_tensor_f32(sum)[k] - acc) <= 1e-6 * (1 + fabs(acc)) &&
               fabs(cnn_tensor_f32(var)[k] - acc2 / (double)(n - 1)) <= 1e-6 * (1 + acc2 / (double)(n - 1)) &&
               cnn_tensor_f32(mx)[k] == (float)best && cnn_tensor_i64(mi)[k] == bi;
          if (!ok)
            fprintf(stderr, "dim %d, out %lld: sum %g/%g var %g/%g max %g/%g at %lld/%lld\n", dim, (long long)k,
                    cnn_tensor_f32(sum)[k], acc, cnn_tensor_f32(var)[k], acc2 / (double)(n - 1), cnn_tensor_f32(mx)[k],
                    best, (long long)cnn_tensor_i64(mi)[k], (long long)bi);
          k++;
        }
    CHECK(ok, "(3,50,300) sum/var/max over dim %d match double loops", dim);
    cnn_tensor_release(sum);
    cnn_tensor_release(var);
    cnn_tensor_release(mx);
    cnn_tensor_release(mi);
  }
  cnn_tensor_release(t);
}

static void test_var(void) {
  /* (1,2,3,4): mean 2.5, squared deviations 2.25+0.25+0.25+2.25 = 5 -> 5/3 unbiased, 5/4 biased */
  cnn_tensor *x = F32(SHAPE(4), VALS(1, 2, 3, 4));
  EXPECT("var unbiased", cnn_red_var(x, CNN_ALL_DIMS, true, false), CNN_FLOAT32, S0, VALS(5.0 / 3));
  EXPECT("var biased", cnn_red_var(x, 0, false, false), CNN_FLOAT32, S0, VALS(1.25));
  cnn_tensor_release(x);
  /* shifted by 1e4 the variance is the same; E[x^2] - E[x]^2 in float32 would lose it all */
  cnn_tensor *xs = F32(SHAPE(4), VALS(10001, 10002, 10003, 10004));
  EXPECT("var with a large offset", cnn_red_var(xs, 0, true, false), CNN_FLOAT32, S0, VALS(5.0 / 3));
  cnn_tensor_release(xs);
  /* [[1,2,3],[4,5,6]]: rows have mean 2 and 5, deviations 1+0+1 = 2 -> 1 unbiased, 2/3 biased;
   * columns (1,4): mean 2.5, deviations 2.25+2.25 = 4.5 -> 4.5 unbiased, 2.25 biased */
  cnn_tensor *m = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
  EXPECT("var dim 1", cnn_red_var(m, 1, true, false), CNN_FLOAT32, SHAPE(2), VALS(1, 1));
  EXPECT("var dim 1 biased keepdim", cnn_red_var(m, 1, false, true), CNN_FLOAT32, SHAPE(2, 1), VALS(2.0 / 3, 2.0 / 3));
  EXPECT("var dim 0", cnn_red_var(m, 0, true, false), CNN_FLOAT32, SHAPE(3), VALS(4.5, 4.5, 4.5));
  EXPECT("var dim 0 biased", cnn_red_var(m, 0, false, true), CNN_FLOAT32, SHAPE(1, 3), VALS(2.25, 2.25, 2.25));
  /* all six: mean 3.5, deviations 6.25+2.25+0.25+0.25+2.25+6.25 = 17.5 -> 3.5 unbiased */
  EXPECT("var all", cnn_red_var(m, CNN_ALL_DIMS, true, false), CNN_FLOAT32, S0, VALS(3.5));
  cnn_tensor_release(m);
  /* one element: unbiased divides by 0 -> nan; biased -> 0 */
  cnn_tensor *one = F32(SHAPE(1), VALS(7));
  EXPECT("var of one unbiased", cnn_red_var(one, 0, true, false), CNN_FLOAT32, S0, VALS(NAN));
  EXPECT("var of one biased", cnn_red_var(one, 0, false, false), CNN_FLOAT32, S0, VALS(0));
  cnn_tensor_release(one);
  /* int64 input gives float32: (1, 3): mean 2, deviations 2 -> 2 unbiased */
  cnn_tensor *iv = mk(CNN_INT64, SHAPE(2), VALS(1, 3));
  EXPECT("var of int64", cnn_red_var(iv, 0, true, false), CNN_FLOAT32, S0, VALS(2));
  cnn_tensor_release(iv);
}

static void test_max_min(void) {
  cnn_tensor *v = NULL, *i = NULL;
  /* (3, 1, 3, 0, 1): max 3 first at 0, min 0 at 3 */
  cnn_tensor *x = F32(SHAPE(5), VALS(3, 1, 3, 0, 1));
  CHECK(cnn_red_max(x, 0, false, &v, &i) == 0, "max 1-d");
  EXPECT("max value", v, CNN_FLOAT32, S0, VALS(3));
  EXPECT("max first index", i, CNN_INT64, S0, VALS(0));
  CHECK(cnn_red_min(x, CNN_ALL_DIMS, false, &v, &i) == 0, "min all");
  EXPECT("min value", v, CNN_FLOAT32, S0, VALS(0));
  EXPECT("min index", i, CNN_INT64, S0, VALS(3));
  cnn_tensor_release(x);

  /* m = [[1,5,5],[7,7,2]]
   * dim 1: max (5, 7) at (1, 0); min (1, 2) at (0, 2)
   * dim 0: max (7, 7, 5) at (1, 1, 0); min (1, 5, 2) at (0, 0, 1) */
  cnn_tensor *m = F32(SHAPE(2, 3), VALS(1, 5, 5, 7, 7, 2));
  CHECK(cnn_red_max(m, 1, false, &v, &i) == 0, "max dim 1");
  EXPECT("max dim 1 values", v, CNN_FLOAT32, SHAPE(2), VALS(5, 7));
  EXPECT("max dim 1 indices", i, CNN_INT64, SHAPE(2), VALS(1, 0));
  CHECK(cnn_red_min(m, -1, true, &v, &i) == 0, "min dim -1 keepdim");
  EXPECT("min dim 1 values", v, CNN_FLOAT32, SHAPE(2, 1), VALS(1, 2));
  EXPECT("min dim 1 indices", i, CNN_INT64, SHAPE(2, 1), VALS(0, 2));
  CHECK(cnn_red_max(m, 0, true, &v, &i) == 0, "max dim 0 keepdim");
  EXPECT("max dim 0 values", v, CNN_FLOAT32, SHAPE(1, 3), VALS(7, 7, 5));
  EXPECT("max dim 0 indices", i, CNN_INT64, SHAPE(1, 3), VALS(1, 1, 0));
  CHECK(cnn_red_min(m, 0, false, &v, &i) == 0, "min dim 0");
  EXPECT("min dim 0 values", v, CNN_FLOAT32, SHAPE(3), VALS(1, 5, 2));
  EXPECT("min dim 0 indices", i, CNN_INT64, SHAPE(3), VALS(0, 0, 1));
  /* full: max 7 first at flat 3; only the indices asked for */
  CHECK(cnn_red_max(m, CNN_ALL_DIMS, false, NULL, &i) == 0, "argmax all");
  EXPECT("argmax all", i, CNN_INT64, S0, VALS(3));
  CHECK(cnn_red_max(m, CNN_ALL_DIMS, false, &v, NULL) == 0, "max all values only");
  EXPECT("max all", v, CNN_FLOAT32, S0, VALS(7));
  /* transposed (3,2) [[1,7],[5,7],[5,2]]: max dim 0 = (5, 7) at (1, 0) */
  cnn_tensor *mt = cnn_tensor_transpose(m, 0, 1);
  CHECK(cnn_red_max(mt, 0, false, &v, &i) == 0, "max of transposed");
  EXPECT("max transposed values", v, CNN_FLOAT32, SHAPE(2), VALS(5, 7));
  EXPECT("max transposed indices", i, CNN_INT64, SHAPE(2), VALS(1, 0));
  cnn_tensor_release(mt);
  cnn_tensor_release(m);

  /* NaN wins for both max and min, at its first position: (1, nan, 5, nan) -> nan at 1 */
  cnn_tensor *n = F32(SHAPE(4), VALS(1, NAN, 5, NAN));
  CHECK(cnn_red_max(n, 0, false, &v, &i) == 0, "max with NaN");
  EXPECT("max NaN value", v, CNN_FLOAT32, S0, VALS(NAN));
  EXPECT("max NaN index", i, CNN_INT64, S0, VALS(1));
  CHECK(cnn_red_min(n, 0, false, &v, &i) == 0, "min with NaN");
  EXPECT("min NaN value", v, CNN_FLOAT32, S0, VALS(NAN));
  EXPECT("min NaN index", i, CNN_INT64, S0, VALS(1));
  cnn_tensor_release(n);
  /* columns: [[1,2],[nan,0],[5,nan]] over dim 0 -> nan at 1 and nan at 2 */
  cnn_tensor *nc = F32(SHAPE(3, 2), VALS(1, 2, NAN, 0, 5, NAN));
  CHECK(cnn_red_max(nc, 0, false, &v, &i) == 0, "max columns with NaN");
  EXPECT("max NaN column values", v, CNN_FLOAT32, SHAPE(2), VALS(NAN, NAN));
  EXPECT("max NaN column indices", i, CNN_INT64, SHAPE(2), VALS(1, 2));
  CHECK(cnn_red_min(nc, 0, false, &v, &i) == 0, "min columns with NaN");
  EXPECT("min NaN column values", v, CNN_FLOAT32, SHAPE(2), VALS(NAN, NAN));
  EXPECT("min NaN column indices", i, CNN_INT64, SHAPE(2), VALS(1, 2));
  cnn_tensor_release(nc);

  /* int64 keeps its dtype: [[4,-1],[4,9]] max dim 0 = (4, 9) at (0, 1), min dim 1 = (-1, 4) at (1, 0) */
  cnn_tensor *im = mk(CNN_INT64, SHAPE(2, 2), VALS(4, -1, 4, 9));
  CHECK(cnn_red_max(im, 0, false, &v, &i) == 0, "int max");
  EXPECT("int max values", v, CNN_INT64, SHAPE(2), VALS(4, 9));
  EXPECT("int max indices", i, CNN_INT64, SHAPE(2), VALS(0, 1));
  CHECK(cnn_red_min(im, 1, false, &v, &i) == 0, "int min");
  EXPECT("int min values", v, CNN_INT64, SHAPE(2), VALS(-1, 4));
  EXPECT("int min indices", i, CNN_INT64, SHAPE(2), VALS(1, 0));
  cnn_tensor_release(im);

  /* one long row (threaded, in blocks): the max 5 at 70000 and again at 80000, min -5 at 99999 */
  cnn_tensor *row = cnn_tensor_zeros(CNN_FLOAT32, SHAPE(100000));
  cnn_tensor_f32(row)[70000] = 5, cnn_tensor_f32(row)[80000] = 5, cnn_tensor_f32(row)[99999] = -5;
  CHECK(cnn_red_max(row, 0, false, &v, &i) == 0, "long row max");
  EXPECT("long row max value", v, CNN_FLOAT32, S0, VALS(5));
  EXPECT("long row max first index", i, CNN_INT64, S0, VALS(70000));
  CHECK(cnn_red_min(row, CNN_ALL_DIMS, false, &v, &i) == 0, "long row min");
  EXPECT("long row min index", i, CNN_INT64, S0, VALS(99999));
  cnn_tensor_release(v);
  /* ties across blocks: all zeros except the three above; min over (zeros) first at 0 */
  cnn_tensor_f32(row)[99999] = 0;
  CHECK(cnn_red_min(row, 0, false, NULL, &i) == 0, "long row min tie");
  EXPECT("long row min first of ties", i, CNN_INT64, S0, VALS(0));
  /* a NaN in a later block beats the max of an earlier one */
  cnn_tensor_f32(row)[90000] = NAN;
  CHECK(cnn_red_max(row, 0, false, &v, &i) == 0, "long row max NaN");
  EXPECT("long row NaN value", v, CNN_FLOAT32, S0, VALS(NAN));
  EXPECT("long row NaN index", i, CNN_INT64, S0, VALS(90000));
  cnn_tensor_release(row);
}

static void test_empty(void) {
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, SHAPE(0, 3));
  /* sum over the empty dim is 0, mean is nan, prod is 1; over the full dim, empty results */
  EXPECT("sum empty dim", cnn_red_reduce(CNN_RED_SUM, e, 0, false), CNN_FLOAT32, SHAPE(3), VALS(0, 0, 0));
  EXPECT("mean empty dim", cnn_red_reduce(CNN_RED_MEAN, e, 0, false), CNN_FLOAT32, SHAPE(3), VALS(NAN, NAN, NAN));
  EXPECT("prod empty dim", cnn_red_reduce(CNN_RED_PROD, e, 0, true), CNN_FLOAT32, SHAPE(1, 3), VALS(1, 1, 1));
  EXPECT("var empty dim", cnn_red_var(e, 0, false, false), CNN_FLOAT32, SHAPE(3), VALS(NAN, NAN, NAN));
  EXPECT("sum over dim 1 of (0,3)", cnn_red_reduce(CNN_RED_SUM, e, 1, false), CNN_FLOAT32, SHAPE(0), VALS(0));
  EXPECT("sum all of empty", cnn_red_reduce(CNN_RED_SUM, e, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(0));
  EXPECT("mean all of empty", cnn_red_reduce(CNN_RED_MEAN, e, CNN_ALL_DIMS, false), CNN_FLOAT32, S0, VALS(NAN));
  cnn_tensor *ie = cnn_tensor_empty(CNN_INT64, SHAPE(0));
  EXPECT("int sum of empty", cnn_red_reduce(CNN_RED_SUM, ie, 0, false), CNN_INT64, S0, VALS(0));
  EXPECT("int mean of empty", cnn_red_reduce(CNN_RED_MEAN, ie, 0, false), CNN_FLOAT32, S0, VALS(NAN));
  cnn_tensor_release(ie);

  cnn_tensor *v = NULL, *i = NULL;
  EXPECT_ERROR("max over an empty dim", cnn_red_max(e, 0, false, &v, &i) != 0, "cannot reduce an empty dimension");
  CHECK(v == NULL && i == NULL, "failed max leaves outputs alone");
  EXPECT_ERROR("min of all of empty", cnn_red_min(e, CNN_ALL_DIMS, false, &v, &i) != 0,
               "cannot reduce an empty dimension");
  /* dim 1 has size 3, so max over it is fine and empty */
  CHECK(cnn_red_max(e, 1, false, &v, &i) == 0, "max over a non-empty dim of an empty tensor");
  EXPECT("empty max values", v, CNN_FLOAT32, SHAPE(0), VALS(0));
  EXPECT("empty max indices", i, CNN_INT64, SHAPE(0), VALS(0));
  cnn_tensor_release(e);
}

static void test_sum_to(void) {
  cnn_tensor *x = F32(SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
  EXPECT("(2,3) -> (3)", cnn_red_sum_to(x, SHAPE(3)), CNN_FLOAT32, SHAPE(3), VALS(5, 7, 9));
  EXPECT("(2,3) -> (1,3)", cnn_red_sum_to(x, SHAPE(1, 3)), CNN_FLOAT32, SHAPE(1, 3), VALS(5, 7, 9));
  EXPECT("(2,3) -> (2,1)", cnn_red_sum_to(x, SHAPE(2, 1)), CNN_FLOAT32, SHAPE(2, 1), VALS(6, 15));
  EXPECT("(2,3) -> (1,1)", cnn_red_sum_to(x, SHAPE(1, 1)), CNN_FLOAT32, SHAPE(1, 1), VALS(21));
  EXPECT("(2,3) -> (1)", cnn_red_sum_to(x, SHAPE(1)), CNN_FLOAT32, SHAPE(1), VALS(21));
  EXPECT("(2,3) -> ()", cnn_red_sum_to(x, S0), CNN_FLOAT32, S0, VALS(21));
  cnn_tensor *same = cnn_red_sum_to(x, SHAPE(2, 3));
  CHECK(same == x && x->refcount == 2, "same shape returns t retained");
  cnn_tensor_release(same);
  EXPECT_ERROR("(2,3) -> (4)", FAILS(cnn_red_sum_to(x, SHAPE(4))), "shape (2, 3) cannot be summed to (4)");
  EXPECT_ERROR("(2,3) -> (2)", FAILS(cnn_red_sum_to(x, SHAPE(2))), "cannot be summed");
  EXPECT_ERROR("(2,3) -> (3,2,3)", FAILS(cnn_red_sum_to(x, SHAPE(3, 2, 3))), "cannot be summed");
  cnn_tensor_release(x);

  /* y[l][a][c] = 6l + 3a + c as (4,2,3) -> (2,1): sum over l in 0..3 and c in 0..2 of
   * 6l + 3a + c = 6*3*6 + 12*3a + 4*3 = 120 + 36a -> (120, 156) */
  cnn_tensor *y = cnn_tensor_arange(0, 24, 1, CNN_FLOAT32);
  cnn_tensor *y3 = cnn_tensor_view(y, SHAPE(4, 2, 3));
  EXPECT("(4,2,3) -> (2,1)", cnn_red_sum_to(y3, SHAPE(2, 1)), CNN_FLOAT32, SHAPE(2, 1), VALS(120, 156));
  /* -> (1,3): sum over l and a of 6l + 3a + c = 2*6*6 + 4*3 + 8c = 84 + 8c -> (84, 92, 100) */
  EXPECT("(4,2,3) -> (1,3)", cnn_red_sum_to(y3, SHAPE(1, 3)), CNN_FLOAT32, SHAPE(1, 3), VALS(84, 92, 100));
  /* -> (4,1,1): per l, sum of 6l + 3a + c over a, c = 36l + 9 + 6 -> (15, 51, 87, 123) */
  EXPECT("(4,2,3) -> (4,1,1)", cnn_red_sum_to(y3, SHAPE(4, 1, 1)), CNN_FLOAT32, SHAPE(4, 1, 1), VALS(15, 51, 87, 123));
  /* on a transposed view (4,3,2) -> (3,1): per c, sum of 6l + 3a + c over l, a = 72 + 12 + 8c */
  cnn_tensor *yt = cnn_tensor_transpose(y3, 1, 2);
  EXPECT("transposed -> (3,1)", cnn_red_sum_to(yt, SHAPE(3, 1)), CNN_FLOAT32, SHAPE(3, 1), VALS(84, 92, 100));
  cnn_tensor_release(yt);
  cnn_tensor_release(y3);
  cnn_tensor_release(y);

  /* an expanded (4,3) view of (1,2,3) sums back to (4, 8, 12) */
  cnn_tensor *r = F32(SHAPE(3), VALS(1, 2, 3));
  cnn_tensor *ex = cnn_tensor_expand(r, SHAPE(4, 3));
  EXPECT("expanded -> (3)", cnn_red_sum_to(ex, SHAPE(3)), CNN_FLOAT32, SHAPE(3), VALS(4, 8, 12));
  cnn_tensor_release(ex);
  cnn_tensor_release(r);
  /* int64 stays int64: [[1,2],[3,4]] -> (2) = (4, 6) */
  cnn_tensor *i = mk(CNN_INT64, SHAPE(2, 2), VALS(1, 2, 3, 4));
  EXPECT("int64 sum_to", cnn_red_sum_to(i, SHAPE(2)), CNN_INT64, SHAPE(2), VALS(4, 6));
  cnn_tensor_release(i);
  /* a 0-d target from a 0-d input is the same tensor; from empty, zeros */
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, SHAPE(0, 2));
  EXPECT("(0,2) -> (1,2)", cnn_red_sum_to(e, SHAPE(1, 2)), CNN_FLOAT32, SHAPE(1, 2), VALS(0, 0));
  EXPECT("(0,2) -> (2)", cnn_red_sum_to(e, SHAPE(2)), CNN_FLOAT32, SHAPE(2), VALS(0, 0));
  cnn_tensor_release(e);
}

int main(void) {
  test_iter_merge();
  test_binary_float();
  test_binary_int64();
  test_broadcast();
  test_noncontiguous();
  test_inplace();
  test_unary_float();
  test_unary_int64();
  test_where_allclose();
  test_reduce_basic();
  test_reduce_accuracy();
  test_var();
  test_max_min();
  test_empty();
  test_sum_to();
  if (failures) {
    fprintf(stderr, "test_elementwise: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("test_elementwise: all %d checks passed\n", checks);
  return 0;
}
