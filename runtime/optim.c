/* Optimiser update kernels (see optim.h): SGD and Adam/AdamW over one contiguous float32 tensor,
 * one pass over the elements, in float32 with the scalars rounded once like PyTorch's CPU kernels.
 * Invariant: every tensor is checked before the first write, so an error leaves all untouched. */
#include "cnn/optim.h"

#include <math.h>
#include <omp.h>

#include "cnn/error.h"
#include "cnn/iter.h"
#include "cnn/parallel.h"

/* t must be a contiguous float32 tensor of the parameter's shape ("what" names it in errors). */
static int check_like(const cnn_tensor *t, const char *what, const cnn_tensor *param) {
  if (!t) return cnn_error_set("missing %s", what);
  if (t->dtype != CNN_FLOAT32) return cnn_error_set("%s is %s; optimisers update float32 tensors", what, cnn_dtype_name(t->dtype));
  if (!cnn_tensor_is_contiguous(t)) return cnn_error_set("%s is not contiguous", what);
  if (t != param && !cnn_tensor_same_shape(t, param)) {
    char b1[128], b2[128];
    return cnn_error_set("%s has shape %s but the parameter has shape %s", what, cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
                         cnn_shape_str(param->ndim, param->size, b2, sizeof b2));
  }
  return 0;
}

/* Threads for a loop of n elements: one below the grain or inside someone else's region. */
static int loop_threads(int64_t n) {
  return n >= CNN_PARALLEL_GRAIN && !omp_in_parallel() ? cnn_parallel_get_threads() : 1;
}

int cnn_optim_sgd(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *buf, bool buf_init, const cnn_sgd_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param)) return -1;
  bool use_buf = c->momentum != 0;
  if (use_buf && check_like(buf, "momentum_buffer", param)) return -1;

  const int64_t n = cnn_tensor_numel(param);
  float *restrict p = cnn_tensor_f32(param);
  const float *restrict g = cnn_tensor_f32(grad);
  float *restrict b = use_buf ? cnn_tensor_f32(buf) : NULL;
  const float sg = c->maximize ? -1.0f : 1.0f, wd = (float)c->weight_decay, nlr = (float)-c->lr;
  const float mom = (float)c->momentum, keep = (float)(1.0 - c->dampening);
  const bool decay = c->weight_decay != 0, nesterov = c->nesterov;
  const int nt = loop_threads(n);

  /* serial or parallel decided here: an OpenMP region with a false if clause still costs ~1.4 us,
   * paid once per parameter per step */
  if (!use_buf) {
#define SGD_PLAIN(i)                    \
  do {                                  \
    float d = sg * g[i];                \
    if (decay) d = d + wd * p[i];       \
    p[i] = p[i] + nlr * d;              \
  } while (0)
    if (nt > 1) {
#pragma omp parallel for simd schedule(static) num_threads(nt)
      for (int64_t i = 0; i < n; i++) SGD_PLAIN(i);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; i++) SGD_PLAIN(i);
    }
#undef SGD_PLAIN
  } else {
    /* d = g (+ wd p); buf = d on the first step, else mom*buf + (1-dampening)*d */
#define SGD_MOMENTUM(i)                                    \
  do {                                                     \
    float d = sg * g[i];                                   \
    if (decay) d = d + wd * p[i];                          \
    float m = buf_init ? d : b[i] * mom + keep * d;        \
    b[i] = m;                                              \
    p[i] = p[i] + nlr * (nesterov ? d + mom * m : m);      \
  } while (0)
    if (nt > 1) {
#pragma omp parallel for simd schedule(static) num_threads(nt)
      for (int64_t i = 0; i < n; i++) SGD_MOMENTUM(i);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; i++) SGD_MOMENTUM(i);
    }
#undef SGD_MOMENTUM
    buf->storage->version++;
  }
  param->storage->version++;
  return 0;
}

/* Adam's per-step scalars. adam_range copies them into its own locals, which stay in registers:
 * locals of a function that also opens an OpenMP region are shared with it, so they live in memory
 * and the vectoriser gave up on a serial loop beside the region ("no vectype for stmt"). */
typedef struct adam_scalars {
  float sg, b1, b2, a1, a2, eps, nstep, bc2s, wd, shrink;
  bool coupled, decoupled, amsgrad;
} adam_scalars;

/* elements [lo, hi): g (+ wd p);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
static void adam_range(const adam_scalars *ks, float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, float *restrict vmax, int64_t lo, int64_t hi) {
  const adam_scalars k = *ks;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float gi = k.sg * g[i];
    float pi = p[i];
    if (k.coupled) gi = gi + k.wd * pi;
    if (k.decoupled) pi = pi * k.shrink;
    float mi = m[i] * k.b1 + k.a1 * gi;
    float vi = v[i] * k.b2 + k.a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    if (k.amsgrad) {
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    p[i] = pi + k.nstep * (mi / (sqrtf(vi) / k.bc2s + k.eps));
  }
}

int cnn_optim_adam(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *exp_avg, cnn_tensor *exp_avg_sq,
                   cnn_tensor *max_exp_avg_sq, cnn_tensor *step, const cnn_adam_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) ||
      check_like(exp_avg, "exp_avg", param) || check_like(exp_avg_sq, "exp_avg_sq", param))
    return -1;
  if (c->amsgrad && check_like(max_exp_avg_sq, "max_exp_avg_sq", param)) return -1;
  if (!step) return cnn_error_set("missing step");
  if (step->dtype != CNN_FLOAT32 || cnn_tensor_numel(step) != 1)
    return cnn_error_set("step must be a one-element float32 tensor");

  /* the counter is float32 as in PyTorch; bias corrections are computed in double from it */
  float *sp = cnn_tensor_f32(step);
  *sp = *sp + 1.0f;
  step->storage->version++;
  const double t = *sp;
  const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);

  const int64_t n = cnn_tensor_numel(param);
  float *restrict p = cnn_tensor_f32(param);
  const float *restrict g = cnn_tensor_f32(grad);
  float *restrict m = cnn_tensor_f32(exp_avg);
  float *restrict v = cnn_tensor_f32(exp_avg_sq);
  float *restrict vmax = c->amsgrad ? cnn_tensor_f32(max_exp_avg_sq) : NULL;
  const float sg = c->maximize ? -1.0f : 1.0f;
  const float b1 = (float)c->beta1, b2 = (float)c->beta2, a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
  const float eps = (float)c->eps, nstep = (float)-(c->lr / bc1), bc2s = (float)sqrt(bc2);
  const bool coupled = !c->decoupled && c->weight_decay != 0, amsgrad = c->amsgrad;
  const float wd = (float)c->weight_decay, shrink = (float)(1.0 - c->lr * c->weight_decay);
  const bool decoupled = c->decoupled;
  const int nt = loop_threads(n);

  const adam_scalars k = {sg, b1, b2, a1, a2, eps, nstep, bc2s, wd, shrink, coupled, decoupled, amsgrad};
  if (nt > 1) { /* no region at all when serial (see cnn_optim_sgd) */
#pragma omp parallel num_threads(nt)
    {
      /* contiguous ranges, 16-aligned (an update is per element: the same bits for any split) */
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      const int64_t chunk = ((n + team - 1) / team + 15) / 16 * 16;
      const int64_t lo = (int64_t)t * chunk < n ? (int64_t)t * chunk : n, hi = lo + chunk < n ? lo + chunk : n;
      adam_range(&k, p, g, m, v, vmax, lo, hi);
    }
  } else {
    adam_range(&k, p, g, m, v, vmax, 0, n);
  }
  param->storage->version++;
  exp_avg->storage->version++;
  exp_avg_sq->storage->version++;
  if (amsgrad) max_exp_avg_sq->storage->version++;
  return 0;
}
