/* Optimiser update kernels (see optim.h): SGD, Adam/AdamW, RMSprop and Adagrad over one contiguous
 * float32 tensor, one pass over the elements, in float32 with the scalars rounded once like
 * PyTorch's CPU kernels.
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
  if (t->dtype != CNN_FLOAT32)
    return cnn_error_set("%s is %s; optimisers update float32 tensors", what, cnn_dtype_name(t->dtype));
  if (!cnn_tensor_is_contiguous(t)) return cnn_error_set("%s is not contiguous", what);
  if (t != param && !cnn_tensor_same_shape(t, param)) {
    char b1[128], b2[128];
    return cnn_error_set("%s has shape %s but the parameter has shape %s", what,
                         cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
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
#define SGD_PLAIN(i)              \
  do {                            \
    float d = sg * g[i];          \
    if (decay) d = d + wd * p[i]; \
    p[i] = p[i] + nlr * d;        \
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
#define SGD_MOMENTUM(i)                               \
  do {                                                \
    float d = sg * g[i];                              \
    if (decay) d = d + wd * p[i];                     \
    float m = buf_init ? d : b[i] * mom + keep * d;   \
    b[i] = m;                                         \
    p[i] = p[i] + nlr * (nesterov ? d + mom * m : m); \
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

/* Splits [0, n) over the threads in contiguous ranges, 16-aligned, and runs f on each (an update
 * is per element: the same bits for any split); no OpenMP region at all when serial (see
 * cnn_optim_sgd). */
typedef void (*range_fn)(const void *args, int64_t lo, int64_t hi);

static void run_ranges(range_fn f, const void *args, int64_t n) {
  const int nt = loop_threads(n);
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      const int64_t chunk = ((n + team - 1) / team + 15) / 16 * 16;
      const int64_t lo = (int64_t)t * chunk < n ? (int64_t)t * chunk : n, hi = lo + chunk < n ? lo + chunk : n;
      f(args, lo, hi);
    }
  } else {
    f(args, 0, n);
  }
}

/* A 1-element float32 step counter, incremented; returns its new value or -1 with the error set. */
static double count_step(cnn_tensor *step) {
  if (!step) return cnn_error_set("missing step");
  if (step->dtype != CNN_FLOAT32 || cnn_tensor_numel(step) != 1)
    return cnn_error_set("step must be a one-element float32 tensor");
  float *sp = cnn_tensor_f32(step);
  *sp = *sp + 1.0f;
  step->storage->version++;
  return *sp;
}

/* Adam's per-step scalars and arrays. adam_range copies them into its own locals, which stay in
 * registers: locals of a function that also opens an OpenMP region are shared with it, so they
 * live in memory and the vectoriser gave up on a serial loop beside the region ("no vectype for
 * stmt"). */
typedef struct adam_args {
  float sg, b1, b2, a1, a2, eps, nstep, bc2s, wd, shrink;
  bool coupled, decoupled, amsgrad;
  float *p, *m, *v, *vmax;
  const float *g;
} adam_args;

/* elements [lo, hi): g (+ wd p);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
static void adam_range(const void *args, int64_t lo, int64_t hi) {
  const adam_args k = *(const adam_args *)args;
  float *restrict p = k.p, *restrict m = k.m, *restrict v = k.v, *restrict vmax = k.vmax;
  const float *restrict g = k.g;
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

  /* the counter is float32 as in PyTorch; bias corrections are computed in double from it */
  const double t = count_step(step);
  if (t < 0) return -1;
  const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);

  const adam_args k = {
      .sg = c->maximize ? -1.0f : 1.0f,
      .b1 = (float)c->beta1,
      .b2 = (float)c->beta2,
      .a1 = (float)(1.0 - c->beta1),
      .a2 = (float)(1.0 - c->beta2),
      .eps = (float)c->eps,
      .nstep = (float)-(c->lr / bc1),
      .bc2s = (float)sqrt(bc2),
      .wd = (float)c->weight_decay,
      .shrink = (float)(1.0 - c->lr * c->weight_decay),
      .coupled = !c->decoupled && c->weight_decay != 0,
      .decoupled = c->decoupled,
      .amsgrad = c->amsgrad,
      .p = cnn_tensor_f32(param),
      .m = cnn_tensor_f32(exp_avg),
      .v = cnn_tensor_f32(exp_avg_sq),
      .vmax = c->amsgrad ? cnn_tensor_f32(max_exp_avg_sq) : NULL,
      .g = cnn_tensor_f32(grad),
  };
  run_ranges(adam_range, &k, cnn_tensor_numel(param));
  param->storage->version++;
  exp_avg->storage->version++;
  exp_avg_sq->storage->version++;
  if (c->amsgrad) max_exp_avg_sq->storage->version++;
  return 0;
}

/* RMSprop's scalars and arrays (see adam_args for why a struct). */
typedef struct rmsprop_args {
  float sg, wd, alpha, a1, eps, mom, nlr;
  bool decay, centered, use_buf;
  float *p, *sq, *ga, *buf;
  const float *g;
} rmsprop_args;

/* elements [lo, hi), each operation rounded to float32 in PyTorch's order:
 * sq = sq*alpha + (1-alpha)*g*g;  ga = ga*alpha + (1-alpha)*g;  avg = sqrt(sq - ga*ga) + eps;
 * buf = buf*mom + g/avg;  p = p + (-lr)*buf  (or p + (-lr)*(g/avg) without momentum) */
static void rmsprop_range(const void *args, int64_t lo, int64_t hi) {
  const rmsprop_args k = *(const rmsprop_args *)args;
  float *restrict p = k.p, *restrict sq = k.sq, *restrict ga = k.ga, *restrict buf = k.buf;
  const float *restrict g = k.g;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float gi = k.sg * g[i];
    if (k.decay) gi = gi + k.wd * p[i];
    float s = sq[i] * k.alpha + k.a1 * gi * gi;
    sq[i] = s;
    float avg;
    if (k.centered) {
      float a = ga[i] * k.alpha + k.a1 * gi;
      ga[i] = a;
      avg = sqrtf(s - a * a) + k.eps;
    } else {
      avg = sqrtf(s) + k.eps;
    }
    float d = gi / avg;
    if (k.use_buf) {
      d = buf[i] * k.mom + d;
      buf[i] = d;
    }
    p[i] = p[i] + k.nlr * d;
  }
}

int cnn_optim_rmsprop(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *square_avg, cnn_tensor *grad_avg,
                      cnn_tensor *momentum_buffer, cnn_tensor *step, const cnn_rmsprop_config *c) {
  const bool use_buf = c->momentum > 0;
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) ||
      check_like(square_avg, "square_avg", param))
    return -1;
  if (c->centered && check_like(grad_avg, "grad_avg", param)) return -1;
  if (use_buf && check_like(momentum_buffer, "momentum_buffer", param)) return -1;
  if (count_step(step) < 0) return -1;

  const rmsprop_args k = {
      .sg = c->maximize ? -1.0f : 1.0f,
      .wd = (float)c->weight_decay,
      .alpha = (float)c->alpha,
      .a1 = (float)(1.0 - c->alpha),
      .eps = (float)c->eps,
      .mom = (float)c->momentum,
      .nlr = (float)-c->lr,
      .decay = c->weight_decay != 0,
      .centered = c->centered,
      .use_buf = use_buf,
      .p = cnn_tensor_f32(param),
      .sq = cnn_tensor_f32(square_avg),
      .ga = c->centered ? cnn_tensor_f32(grad_avg) : NULL,
      .buf = use_buf ? cnn_tensor_f32(momentum_buffer) : NULL,
      .g = cnn_tensor_f32(grad),
  };
  run_ranges(rmsprop_range, &k, cnn_tensor_numel(param));
  param->storage->version++;
  square_avg->storage->version++;
  if (c->centered) grad_avg->storage->version++;
  if (use_buf) momentum_buffer->storage->version++;
  return 0;
}

/* Adagrad's scalars and arrays (see adam_args for why a struct). */
typedef struct adagrad_args {
  float sg, wd, eps, nclr;
  bool decay;
  float *p, *sum;
  const float *g;
} adagrad_args;

/* elements [lo, hi):  sum = sum + g*g;  p = p + (-clr) * (g / (sqrt(sum) + eps)) */
static void adagrad_range(const void *args, int64_t lo, int64_t hi) {
  const adagrad_args k = *(const adagrad_args *)args;
  float *restrict p = k.p, *restrict sum = k.sum;
  const float *restrict g = k.g;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float gi = k.sg * g[i];
    if (k.decay) gi = gi + k.wd * p[i];
    float s = sum[i] + gi * gi;
    sum[i] = s;
    p[i] = p[i] + k.nclr * (gi / (sqrtf(s) + k.eps));
  }
}

int cnn_optim_adagrad(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *sum, cnn_tensor *step,
                      const cnn_adagrad_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) || check_like(sum, "sum", param))
    return -1;
  const double t = count_step(step);
  if (t < 0) return -1;
  const double clr = c->lr / (1.0 + (t - 1.0) * c->lr_decay); /* in double, as PyTorch's Python floats */

  const adagrad_args k = {
      .sg = c->maximize ? -1.0f : 1.0f,
      .wd = (float)c->weight_decay,
      .eps = (float)c->eps,
      .nclr = (float)-clr,
      .decay = c->weight_decay != 0,
      .p = cnn_tensor_f32(param),
      .sum = cnn_tensor_f32(sum),
      .g = cnn_tensor_f32(grad),
  };
  run_ranges(adagrad_range, &k, cnn_tensor_numel(param));
  param->storage->version++;
  sum->storage->version++;
  return 0;
}
