/* Random number generators (see rng.h): the runtime's stream and the functions every generator shares. */
#include "cnn/rng.h"
#include "cnn/error.h"

#include <stdbool.h>

static cnn_rng global;
static bool seeded;

cnn_rng *cnn_rng_global(void) {
  if (!seeded) cnn_rng_seed(&global, 0);
  return &global;
}

void cnn_rng_seed(cnn_rng *g, uint64_t seed) {
  /* splitmix64 never yields four zero words */
  for (int i = 0; i < 4; i++) g->s[i] = cnn_rng_splitmix64(&seed);
  if (g == &global) seeded = true;
}

void cnn_rng_get_state(const cnn_rng *g, uint64_t out[4]) {
  for (int i = 0; i < 4; i++) out[i] = g->s[i];
}

int cnn_rng_set_state(cnn_rng *g, const uint64_t in[4]) {
  if ((in[0] | in[1] | in[2] | in[3]) == 0) return cnn_error_set("an all-zero generator state is invalid");
  for (int i = 0; i < 4; i++) g->s[i] = in[i];
  if (g == &global) seeded = true;
  return 0;
}

uint64_t cnn_rng_below(cnn_rng *g, uint64_t n) {
  uint64_t reject = (0 - n) % n; /* = 2^64 mod n: draws below it are redrawn */
  for (;;) {
    uint64_t x = cnn_rng_next(g);
    if (x >= reject) return x % n;
  }
}

uint64_t cnn_rng_derive(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = a;
  uint64_t h = cnn_rng_splitmix64(&x);
  x = h ^ b;
  h = cnn_rng_splitmix64(&x);
  x = h ^ c;
  return cnn_rng_splitmix64(&x);
}
