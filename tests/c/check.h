/* The checks shared by the C unit tests: a failure counter, CHECK and the error-expectation variants,
 * a relative float comparison and the closing summary. Each test is one translation unit, so the
 * counter is a file-static; everything here is static (inline), so an unused helper costs nothing. */
#ifndef CNN_TESTS_CHECK_H
#define CNN_TESTS_CHECK_H

#include "cnn/error.h"
#include "cnn/tensor.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

/* expr returns a tensor: it must return NULL with exactly the error msg (any result is released) */
#define CHECK_ERROR(expr, msg)                                                                  \
  do {                                                                                          \
    cnn_error_clear();                                                                          \
    cnn_tensor *r_ = (expr);                                                                    \
    if (r_ || strcmp(cnn_error_get(), msg) != 0) {                                              \
      fprintf(stderr, "%s:%d: expected error \"%s\", got %s \"%s\"\n", __FILE__, __LINE__, msg, \
              r_ ? "a result and" : "", cnn_error_get());                                       \
      failures++;                                                                               \
    }                                                                                           \
    cnn_tensor_release(r_);                                                                     \
  } while (0)

/* call returns an int status: it must fail (non-zero) with exactly the error msg */
#define CHECK_ERROR_RC(call, msg)                                                                       \
  do {                                                                                                  \
    cnn_error_clear();                                                                                  \
    int rc_ = (call);                                                                                   \
    if (rc_ == 0 || strcmp(cnn_error_get(), msg) != 0) {                                                \
      fprintf(stderr, "%s:%d: expected error \"%s\", got rc %d \"%s\"\n", __FILE__, __LINE__, msg, rc_, \
              cnn_error_get());                                                                         \
      failures++;                                                                                       \
    }                                                                                                   \
  } while (0)

/* The last error contains every given (non-NULL) fragment. */
static inline void check_error_has(int line, const char *a, const char *b) {
  const char *m = cnn_error_get();
  if ((a && !strstr(m, a)) || (b && !strstr(m, b))) {
    fprintf(stderr, "%s:%d: error \"%s\" lacks \"%s\" / \"%s\"\n", __FILE__, line, m, a ? a : "", b ? b : "");
    failures++;
  }
}
#define CHECK_ERROR_HAS(a, b) check_error_has(__LINE__, a, b)

/* |a - b| <= tol * (1 + |b|): relative to the expected value b, absolute near 0 */
static inline int check_close_rel(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

#define CHECK_CLOSE(a, b, tol)                                                              \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    if (!check_close_rel(a_, b_, tol)) {                                                    \
      fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g\n", __FILE__, __LINE__, #a, a_, b_); \
      failures++;                                                                           \
    }                                                                                       \
  } while (0)

/* A contiguous float32 tensor of the given shape holding a copy of v (numel floats). */
static inline cnn_tensor *ftensor(int ndim, const int64_t *size, const float *v) {
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, ndim, size);
  memcpy(cnn_tensor_f32(t), v, (size_t)cnn_tensor_numel(t) * sizeof(float));
  return t;
}

/* xorshift64 on *state: uniform floats in [-1, 1), the same sequence for the same seed everywhere */
static inline float check_urand(uint64_t *state) {
  uint64_t s = *state;
  s ^= s << 13, s ^= s >> 7, s ^= s << 17;
  *state = s;
  return (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* A contiguous float32 tensor of the given shape filled with check_urand(state) in order. */
static inline cnn_tensor *check_rand_tensor(uint64_t *state, int ndim, const int64_t *size) {
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, ndim, size);
  float *p = cnn_tensor_f32(t);
  for (int64_t i = 0; i < cnn_tensor_numel(t); i++) p[i] = check_urand(state);
  return t;
}

/* The closing line and main()'s exit status: 0 when every check passed. */
static inline int check_summary(const char *name) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  printf("%s: all checks passed\n", name);
  return 0;
}

#endif
