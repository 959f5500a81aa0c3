/* The runtime's seeded random stream: one xoshiro256** generator, seeded through splitmix64 (seed
 * 0 at start, so unseeded runs repeat too). No tensors here: kernels draw from it directly (dropout's
 * mask), tensor fills live in random.h. Same seed and same thread count give the same numbers. */
#ifndef CNN_RNG_H
#define CNN_RNG_H

#include <stdint.h>

void cnn_rng_seed(uint64_t seed);
uint64_t cnn_rng_next(void);        /* 64 random bits */
double cnn_rng_uniform01(void);     /* [0, 1): the top 53 bits of a draw */
uint64_t cnn_rng_below(uint64_t n); /* uniform in [0, n) for n >= 1, without modulo bias */
/* The generator's 256-bit state, to save with a checkpoint and restore on resume. set returns -1
 * with the error set for the invalid all-zero state. */
void cnn_rng_get_state(uint64_t out[4]);
int cnn_rng_set_state(const uint64_t in[4]);

/* One xoshiro256** step on a state s: a loop that draws many values keeps a copy of the stream's
 * state in registers (get_state, steps, set_state) and produces the same sequence. */
static inline uint64_t cnn_rng_step(uint64_t s[4]) {
  uint64_t result = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = s[3] << 45 | s[3] >> 19;
  return result;
}

/* splitmix64's finaliser: a bijective 64-bit mix, for hashing seeds into streams of one's own. */
static inline uint64_t cnn_rng_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* splitmix64: the next value of the stream whose state is *x. */
static inline uint64_t cnn_rng_splitmix64(uint64_t *x) { return cnn_rng_mix64(*x += 0x9e3779b97f4a7c15ULL); }

#endif
