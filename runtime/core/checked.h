/* Overflow-checked size arithmetic for shapes, strides and byte counts: each returns true and
 * stores the result when it fits in int64, false (and leaves *r unspecified) when it does not.
 * Signed overflow is undefined in C, so any product or sum of user-given sizes goes through these
 * before it is used. Tensor-free: kernels may include it. */
#ifndef CNN_CORE_CHECKED_H
#define CNN_CORE_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

static inline bool cnn_mul_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool cnn_add_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool cnn_sub_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_sub_overflow(a, b, r); }
/* Whether v truncates toward zero to an int64 (a cast that is defined): false for NaN and |v| >= 2^63. */
static inline bool cnn_double_in_int64(double v) { return v >= -9223372036854775808.0 && v < 9223372036854775808.0; }

#endif
