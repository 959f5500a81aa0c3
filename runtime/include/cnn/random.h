/** Random tensors, drawn from the runtime's seeded stream (rng.h: seed, state). Same seed and same
 * thread count give the same numbers. */
#ifndef CNN_RANDOM_H
#define CNN_RANDOM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Fill in place (any strides). Return 0 or -1. */
int cnn_random_uniform_(cnn_tensor *t, double lo, double hi);
int cnn_random_normal_(cnn_tensor *t, double mean, double std);
/** int64 tensor of integers in [lo, hi] inclusive. */
cnn_tensor *cnn_random_randint(int64_t lo, int64_t hi, int ndim, const int64_t *size);
/** A random permutation of 0..n-1 (int64). */
cnn_tensor *cnn_random_randperm(int64_t n);

#ifdef __cplusplus
}
#endif
#endif
