/** Random number generators: xoshiro256**, seeded through splitmix64. No tensors here: kernels draw
 * from a generator directly (dropout's mask), tensor fills live in random.h. The runtime's own
 * stream (cnn.manual_seed's) is the generator cnn_rng_global(); work that must not depend on the
 * order threads run in keeps generators of its own (the data loader seeds one per sample from
 * (seed, epoch, index) with cnn_rng_derive). A generator is not shared between threads. */
#ifndef CNN_RNG_H
#define CNN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnn_rng {
  uint64_t s[4]; /* never all zero: the one state xoshiro cannot leave */
} cnn_rng;

/** The runtime's stream (what random.h, dropout and the initialisers draw from): seeded with 0
 * until someone seeds it, so unseeded runs repeat too. Same seed and same thread count give the
 * same numbers. Draw from it on one thread at a time. `cnn_rng_seed(cnn_rng_global(), s)` is
 * cnn.manual_seed(s).
 * Ownership: returns the runtime's own generator (static storage): never freed. */
cnn_rng *cnn_rng_global(void);

/** Seeds g: the 256-bit state expanded from seed by splitmix64. */
void cnn_rng_seed(cnn_rng *g, uint64_t seed);
/** A draw uniform in [0, n), n >= 1, without modulo bias. */
uint64_t cnn_rng_below(cnn_rng *g, uint64_t n);
/** The 256-bit state, to save with a checkpoint and restore on resume; set returns -1 with the
 * error set for the invalid all-zero state. */
void cnn_rng_get_state(const cnn_rng *g, uint64_t out[4]);
int cnn_rng_set_state(cnn_rng *g, const uint64_t in[4]);
/** A well-mixed 64-bit seed from a few words (the loader's (seed, epoch, index)). */
uint64_t cnn_rng_derive(uint64_t a, uint64_t b, uint64_t c);

/** 64 random bits: one xoshiro256** step. A loop that draws many values may copy a generator into a
 * local, draw from the copy and store it back: the same sequence, with the state in registers. */
static inline uint64_t cnn_rng_next(cnn_rng *g) {
  uint64_t *s = g->s;
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

/** [0, 1): the top 53 bits of a draw */
static inline double cnn_rng_uniform01(cnn_rng *g) {
  return (double)(cnn_rng_next(g) >> 11) * (1.0 / 9007199254740992.0);
}

/** splitmix64's finaliser: a bijective 64-bit mix, for hashing seeds into streams of one's own. */
static inline uint64_t cnn_rng_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/** splitmix64: the next value of the stream whose state is *x. */
static inline uint64_t cnn_rng_splitmix64(uint64_t *x) { return cnn_rng_mix64(*x += 0x9e3779b97f4a7c15ULL); }

#ifdef __cplusplus
}
#endif
#endif
