/* Inverted dropout (see kernels/nn.h). The mask is drawn serially from the runtime's seeded stream in
 * element order, so the same seed gives the same mask whatever the thread count; applying it (and
 * the backward, the same product) runs in parallel. */
#include "cnn/rng.h"
#include "core/parallel.h"
#include "kernels/nn.h"

#include <math.h>

void cnn_dropout_mask(float *mask, int64_t n, double p) {
  if (p >= 1) {
    for (int64_t i = 0; i < n; i++) mask[i] = 0;
    return;
  }
  /* keep when a uniform draw k * 2^-53 in [0, 1) is >= p, i.e. k >= ceil(p * 2^53): probability
   * 1 - p to 2^-53, compared in integers (the draws of cnn_rng_uniform01, without the division) */
  const float scale = (float)(1.0 / (1.0 - p));
  const uint64_t threshold = (uint64_t)ceil(p * 0x1.0p53);
  cnn_rng g = *cnn_rng_global(); /* a local copy keeps the state in registers */
  for (int64_t i = 0; i < n; i++) mask[i] = (cnn_rng_next(&g) >> 11) >= threshold ? scale : 0.0f;
  *cnn_rng_global() = g;
}

typedef struct {
  const float *x, *mask;
  float *y;
} apply_job;

static void apply_range(void *arg, int64_t b, int64_t e) {
  const apply_job *j = arg;
  const float *restrict x = j->x, *restrict mask = j->mask;
  float *restrict y = j->y;
  for (int64_t i = b; i < e; i++) y[i] = x[i] * mask[i];
}

void cnn_dropout_apply(const float *x, const float *mask, float *y, int64_t n) {
  apply_job j = {x, mask, y};
  cnn_parallel_items(n, n, apply_range, &j);
}
