/* Random tensors, drawn from the runtime's seeded stream (rng.h: seed, state). Same seed and same
 * thread count give the same numbers. */
#ifndef CNN_RANDOM_H
#define CNN_RANDOM_H

#include "tensor.h"

/* Fill in place (any strides). Return 0 or -1. */
int cnn_random_uniform_(cnn_tensor *t, double lo, double hi);
int cnn_random_normal_(cnn_tensor *t, double mean, double std);
/* int64 tensor of integers in [lo, hi] inclusive. */
cnn_tensor *cnn_random_randint(int64_t lo, int64_t hi, int ndim, const int64_t *size);
/* A random permutation of 0..n-1 (int64). */
cnn_tensor *cnn_random_randperm(int64_t n);

/* A generator of one's own (xoshiro256**, the stream's algorithm), for work that must not depend
 * on the order threads run in: the data loader seeds one per sample from (seed, epoch, index).
 * Not shared between threads. */
typedef struct cnn_rng {
  uint64_t s[4];
} cnn_rng;

void cnn_rng_seed(cnn_rng *g, uint64_t seed);   /* splitmix64-expanded, as cnn_random_seed */
uint64_t cnn_rng_next(cnn_rng *g);              /* 64 random bits */
double cnn_rng_uniform01(cnn_rng *g);           /* [0, 1), 53 bits */
uint64_t cnn_rng_below(cnn_rng *g, uint64_t n); /* uniform in [0, n), n >= 1, unbiased */
/* A well-mixed 64-bit seed from a few words (the loader's (seed, epoch, index)). */
uint64_t cnn_rng_derive(uint64_t a, uint64_t b, uint64_t c);

#endif
