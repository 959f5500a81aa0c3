/* The runtime's random stream (see rng.h): xoshiro256**, state global to the process. */
#include "cnn/rng.h"
#include "cnn/error.h"

#include <stdbool.h>

static uint64_t state[4];
static bool seeded;

void cnn_rng_get_state(uint64_t out[4]) {
  if (!seeded) cnn_rng_seed(0);
  for (int i = 0; i < 4; i++) out[i] = state[i];
}

int cnn_rng_set_state(const uint64_t in[4]) {
  if ((in[0] | in[1] | in[2] | in[3]) == 0) return cnn_error_set("an all-zero generator state is invalid");
  for (int i = 0; i < 4; i++) state[i] = in[i];
  seeded = true;
  return 0;
}

void cnn_rng_seed(uint64_t seed) {
  /* splitmix64 never yields four zero words, the one state xoshiro cannot leave */
  for (int i = 0; i < 4; i++) state[i] = cnn_rng_splitmix64(&seed);
  seeded = true;
}

uint64_t cnn_rng_next(void) {
  if (!seeded) cnn_rng_seed(0);
  return cnn_rng_step(state);
}

double cnn_rng_uniform01(void) { return (double)(cnn_rng_next() >> 11) * 0x1.0p-53; }

uint64_t cnn_rng_below(uint64_t n) {
  uint64_t reject = (0 - n) % n; /* = 2^64 mod n: draws below it are redrawn */
  for (;;) {
    uint64_t x = cnn_rng_next();
    if (x >= reject) return x % n;
  }
}
