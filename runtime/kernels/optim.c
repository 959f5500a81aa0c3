/* Optimiser update kernels (see kernels/optim.h): SGD, Adam/AdamW, RMSprop and Adagrad over one
 * parameter's float array, one pass over the elements, in float32 with the scalars rounded once
 * like PyTorch's CPU kernels. */
#include "kernels/optim.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/parallel.h"

/* Runs f over [0, n) in 16-element blocks on the pool (an update is per element: the same bits
 * for any split, and threads never share a cache line); serial below the grain. */
typedef void (*range_fn)(const void *args, int64_t lo, int64_t hi);

typedef struct {
  range_fn f;
  const void *args;
  int64_t n;
} blocks_job;

static void run_blocks(void *arg, int64_t b0, int64_t b1) {
  const blocks_job *j = arg;
  j->f(j->args, b0 * 16, b1 * 16 < j->n ? b1 * 16 : j->n);
}

static void run_ranges_from(range_fn f, const void *args, int64_t n, int64_t grain) {
  blocks_job j = {f, args, n};
  if (n < grain) f(args, 0, n);
  else cnn_parallel_for((n + 15) / 16, grain / 2 / 16, run_blocks, &j);
}

static void run_ranges(range_fn f, const void *args, int64_t n) { run_ranges_from(f, args, n, CNN_PARALLEL_GRAIN); }

/* SGD's per-step scalars and arrays, copied into locals by sgd_range (they stay in registers). */
typedef struct sgd_args {
  float *p, *b;
  const float *g;
  float sg, wd, nlr, mom, keep;
  bool decay, nesterov, buf_init;
} sgd_args;

/* elements [lo, hi): d = g (+ wd p); with a buffer, buf = d on the first step, else
 * mom*buf + (1-dampening)*d, and d = nesterov ? d + mom*buf : buf; p += -lr d */
static void sgd_range(const void *args, int64_t lo, int64_t hi) {
  const sgd_args *k = args;
  float *restrict p = k->p, *restrict b = k->b;
  const float *restrict g = k->g;
  const float sg = k->sg, wd = k->wd, nlr = k->nlr, mom = k->mom, keep = k->keep;
  const bool decay = k->decay, nesterov = k->nesterov, buf_init = k->buf_init;
  if (!b) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
      float d = sg * g[i];
      if (decay) d = d + wd * p[i];
      p[i] = p[i] + nlr * d;
    }
  } else {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
      float d = sg * g[i];
      if (decay) d = d + wd * p[i];
      float m = buf_init ? d : b[i] * mom + keep * d;
      b[i] = m;
      p[i] = p[i] + nlr * (nesterov ? d + mom * m : m);
    }
  }
}

static sgd_args sgd_args_of(float *p, const float *g, float *b, bool buf_init, const cnn_sgd_config *c) {
  return (sgd_args){
      .p = p,
      .b = c->momentum != 0 ? b : NULL,
      .g = g,
      .sg = c->maximize ? -1.0f : 1.0f,
      .wd = (float)c->weight_decay,
      .nlr = (float)-c->lr,
      .mom = (float)c->momentum,
      .keep = (float)(1.0 - c->dampening),
      .decay = c->weight_decay != 0,
      .nesterov = c->nesterov,
      .buf_init = buf_init,
  };
}

void cnn_optim_sgd_f32(float *restrict p, const float *restrict g, float *restrict b, int64_t n, bool buf_init,
                       const cnn_sgd_config *c) {
  const sgd_args k = sgd_args_of(p, g, b, buf_init, c);
  run_ranges_from(sgd_range, &k, n, CNN_PARALLEL_STREAM_GRAIN); /* a few flops an element */
}

/* Several parameters' updates as one loop over their 16-element blocks laid end to end: a slice's
 * blocks start at its own first element, as in cnn_optim_sgd_f32, so the bits are the same. */
typedef struct {
  int count;
  const cnn_sgd_slice *s;
  const int64_t *first; /* count + 1 block offsets */
  const cnn_sgd_config *c;
} sgd_many_job;

static void sgd_many_blocks(void *arg, int64_t b0, int64_t b1) {
  const sgd_many_job *j = arg;
  int k = 0;
  while (j->first[k + 1] <= b0) k++;
  for (; k < j->count && j->first[k] < b1; k++) {
    const cnn_sgd_slice *s = &j->s[k];
    const int64_t lo = (b0 > j->first[k] ? b0 : j->first[k]) - j->first[k];
    const int64_t hi = (b1 < j->first[k + 1] ? b1 : j->first[k + 1]) - j->first[k];
    const sgd_args a = sgd_args_of(s->p, s->g, s->buf, s->buf_init, j->c);
    sgd_range(&a, lo * 16, hi * 16 < s->n ? hi * 16 : s->n);
  }
}

#define SGD_MANY_STACK 64

void cnn_optim_sgd_many_f32(int count, const cnn_sgd_slice *s, const cnn_sgd_config *c) {
  if (count <= 0) return;
  int64_t stack[SGD_MANY_STACK + 1], *first = count < SGD_MANY_STACK ? stack : malloc(sizeof *first * (count + 1));
  if (!first) { /* one at a time */
    for (int k = 0; k < count; k++) cnn_optim_sgd_f32(s[k].p, s[k].g, s[k].buf, s[k].n, s[k].buf_init, c);
    return;
  }
  int64_t n = 0;
  first[0] = 0;
  for (int k = 0; k < count; k++) {
    first[k + 1] = first[k] + (s[k].n + 15) / 16;
    n += s[k].n;
  }
  sgd_many_job j = {count, s, first, c};
  /* together, LeNet-5's 61,706 parameters take ~25 us on one thread: worth a second from
   * CNN_PARALLEL_GRAIN (one parameter alone stays serial below CNN_PARALLEL_STREAM_GRAIN) */
  if (n < CNN_PARALLEL_GRAIN) sgd_many_blocks(&j, 0, first[count]);
  else cnn_parallel_for(first[count], CNN_PARALLEL_GRAIN / 2 / 16, sgd_many_blocks, &j);
  if (first != stack) free(first);
}

/* Adam's per-step scalars and arrays. adam_range copies them into its own locals, which stay in
 * registers. */
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

void cnn_optim_adam_f32(float *p, const float *g, float *m, float *v, float *vmax, int64_t n, double t,
                        const cnn_adam_config *c) {
  /* the bias corrections are computed in double from the float32 counter t, as in PyTorch */
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
      .p = p,
      .m = m,
      .v = v,
      .vmax = c->amsgrad ? vmax : NULL,
      .g = g,
  };
  run_ranges(adam_range, &k, n);
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

void cnn_optim_rmsprop_f32(float *p, const float *g, float *sq, float *ga, float *buf, int64_t n,
                           const cnn_rmsprop_config *c) {
  const bool use_buf = c->momentum > 0;

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
      .p = p,
      .sq = sq,
      .ga = c->centered ? ga : NULL,
      .buf = use_buf ? buf : NULL,
      .g = g,
  };
  run_ranges(rmsprop_range, &k, n);
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

void cnn_optim_adagrad_f32(float *p, const float *g, float *sum, int64_t n, double t, const cnn_adagrad_config *c) {
  const double clr = c->lr / (1.0 + (t - 1.0) * c->lr_decay); /* in double, as PyTorch's Python floats */

  const adagrad_args k = {
      .sg = c->maximize ? -1.0f : 1.0f,
      .wd = (float)c->weight_decay,
      .eps = (float)c->eps,
      .nclr = (float)-clr,
      .decay = c->weight_decay != 0,
      .p = p,
      .sum = sum,
      .g = g,
  };
  run_ranges(adagrad_range, &k, n);
}
