/* Batch assembly and batch transforms (see batch.h). Images are handled as planes: a (N, C, H, W)
 * batch is N*C planes of H*W floats; random choices are made per sample, serially, and the
 * planes are then processed in parallel, so results never depend on the thread count. */
#include "data/batch.h"
#include "cnn/error.h"
#include "cnn/random.h"
#include "cnn/rng.h"
#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- gather ---- */

typedef struct {
  char *to;
  const char *from;
  const int64_t *ip;
  int64_t is;
  size_t rowbytes;
} gather_job;

static void gather_range(void *arg, int64_t i0, int64_t i1) {
  const gather_job *j = arg;
  for (int64_t i = i0; i < i1; i++)
    memcpy(j->to + (size_t)i * j->rowbytes, j->from + (size_t)j->ip[i * j->is] * j->rowbytes, j->rowbytes);
}

cnn_tensor *cnn_batch_gather(const cnn_tensor *src, const cnn_tensor *idx) {
  if (src->ndim < 1) {
    cnn_error_set("cannot gather rows of a 0-d tensor");
    return NULL;
  }
  if (idx->dtype != CNN_INT64 || idx->ndim != 1) {
    cnn_error_set("indices must be a 1-d int64 tensor, got a %d-d %s one", idx->ndim, cnn_dtype_name(idx->dtype));
    return NULL;
  }
  int64_t n = idx->size[0], rows = src->size[0];
  const int64_t *ip = cnn_tensor_i64(idx);
  int64_t is = idx->stride[0];
  for (int64_t i = 0; i < n; i++) {
    int64_t r = ip[i * is];
    if (r < 0 || r >= rows) {
      cnn_error_set("index %lld is out of range for %lld rows", (long long)r, (long long)rows);
      return NULL;
    }
  }
  int64_t size[CNN_MAX_DIMS];
  size[0] = n;
  for (int d = 1; d < src->ndim; d++) size[d] = src->size[d];
  cnn_tensor *out = cnn_tensor_empty(src->dtype, src->ndim, size);
  if (!out) return NULL;
  cnn_tensor *c = cnn_tensor_contiguous(src);
  if (!c) {
    cnn_tensor_release(out);
    return NULL;
  }
  size_t rowbytes = cnn_dtype_size(src->dtype);
  for (int d = 1; d < src->ndim; d++) rowbytes *= (size_t)src->size[d];
  gather_job j = {cnn_tensor_data(out), cnn_tensor_data(c), ip, is, rowbytes};
  cnn_parallel_items(n, (int64_t)rowbytes * n / 4, gather_range, &j); /* work in floats' worth of bytes */
  cnn_tensor_release(c);
  return out;
}

/* Rows of a uint8 tensor as float32 / fdiv: the one conversion of stored bytes to floats, so a
 * batch, t:float() / 255 and the IDX reader give the same bits (a division, not * (1 / 255)). */
typedef struct u8_job {
  float *out;
  const uint8_t *src;
  const int64_t *ip; /* NULL: rows in order */
  int64_t is, row;
  float fdiv;
} u8_job;

static void u8_rows_range(void *arg, int64_t i0, int64_t i1) {
  const u8_job *j = arg;
  /* in locals: read through j, they would be reloaded after every store (a float store may alias
   * them) and the inner loop would not vectorise (it ran at ~1 ns an element) */
  const int64_t row = j->row, is = j->is, *ip = j->ip;
  const float fdiv = j->fdiv;
  for (int64_t i = i0; i < i1; i++) {
    const uint8_t *restrict from = j->src + (ip ? ip[i * is] : i) * row;
    float *restrict to = j->out + i * row;
    if (ip && i + 1 < i1) { /* shuffled rows are scattered in memory: fetch the next while this one converts */
      const uint8_t *next = j->src + ip[(i + 1) * is] * row;
      for (int64_t k = 0; k < row && k < 4096; k += 64) __builtin_prefetch(next + k);
    }
    for (int64_t k = 0; k < row; k++) to[k] = (float)from[k] / fdiv;
  }
}

static void u8_rows_to_float(float *out, const uint8_t *src, const int64_t *ip, int64_t is, int64_t n, int64_t row,
                             float fdiv) {
  u8_job j = {out, src, ip, is, row, fdiv};
  /* in order, a streaming pass: parallel from CNN_PARALLEL_STREAM_GRAIN bytes (cnn_parallel_items
   * counts from CNN_PARALLEL_GRAIN); shuffled, each row is a wait on memory, so parallel from
   * CNN_PARALLEL_GRAIN bytes (a LeNet batch, 64 rows of 784: 40 us on one thread) */
  cnn_parallel_items(n, ip ? n * row : n * row / (CNN_PARALLEL_STREAM_GRAIN / CNN_PARALLEL_GRAIN), u8_rows_range, &j);
}

cnn_tensor *cnn_batch_gather_float(const cnn_tensor *src, const cnn_tensor *idx, double divisor) {
  float fdiv = (float)divisor;
  if (!(divisor > 0) || !isfinite(fdiv) || fdiv == 0) {
    cnn_error_set("divisor must be a positive finite number, got %g", cnn_error_num(divisor));
    return NULL;
  }
  if (src->dtype != CNN_UINT8) { /* rows, then float32 and the division */
    cnn_tensor *g = cnn_batch_gather(src, idx), *f = g ? cnn_tensor_to_dtype(g, CNN_FLOAT32) : NULL;
    cnn_tensor_release(g);
    if (f && fdiv != 1.0f) { /* f is fresh (the gather's own result, or its conversion) */
      float *p = cnn_tensor_f32(f);
      for (int64_t i = 0, n = cnn_tensor_numel(f); i < n; i++) p[i] /= fdiv;
    }
    return f;
  }
  if (src->ndim < 1 || idx->dtype != CNN_INT64 || idx->ndim != 1) return cnn_batch_gather(src, idx); /* its errors */
  int64_t n = idx->size[0], rows = src->size[0], is = idx->stride[0];
  const int64_t *ip = cnn_tensor_i64(idx);
  for (int64_t i = 0; i < n; i++) {
    int64_t r = ip[i * is];
    if (r < 0 || r >= rows) {
      cnn_error_set("index %lld is out of range for %lld rows", (long long)r, (long long)rows);
      return NULL;
    }
  }
  int64_t size[CNN_MAX_DIMS], row = 1;
  size[0] = n;
  for (int d = 1; d < src->ndim; d++) size[d] = src->size[d], row *= src->size[d];
  cnn_tensor *out = cnn_tensor_empty(CNN_FLOAT32, src->ndim, size);
  cnn_tensor *c = out ? cnn_tensor_contiguous(src) : NULL;
  if (!c) {
    cnn_tensor_release(out);
    return NULL;
  }
  u8_rows_to_float(cnn_tensor_f32(out), cnn_tensor_u8(c), ip, is, n, row, fdiv);
  cnn_tensor_release(c);
  return out;
}

/* ---- epoch orders ---- */

/* A splitmix64 stream of the loader's own. */
typedef struct {
  uint64_t s;
} local_rng;

static uint64_t local_next(local_rng *g) { return cnn_rng_splitmix64(&g->s); }

/* Uniform in [0, n), unbiased (draws below 2^64 mod n are redrawn). */
static uint64_t local_below(local_rng *g, uint64_t n) {
  uint64_t reject = (0 - n) % n;
  for (;;) {
    uint64_t x = local_next(g);
    if (x >= reject) return x % n;
  }
}

cnn_tensor *cnn_batch_order(int64_t n, bool shuffle, bool seeded, uint64_t seed, int64_t epoch, int64_t rank,
                            int64_t world, cnn_shard_mode mode) {
  if (n < 0) {
    cnn_error_set("expected a dataset size >= 0, got %lld", (long long)n);
    return NULL;
  }
  if (world < 1 || rank < 0 || rank >= world) {
    cnn_error_set("shard rank %lld is outside 0..%lld (world_size %lld)", (long long)rank, (long long)(world - 1),
                  (long long)world);
    return NULL;
  }
  cnn_tensor *perm;
  if (shuffle && !seeded) {
    perm = cnn_random_randperm(n);
    if (!perm) return NULL;
  } else {
    perm = cnn_tensor_empty(CNN_INT64, 1, &n);
    if (!perm) return NULL;
    int64_t *p = cnn_tensor_i64(perm);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    if (shuffle) { /* Fisher-Yates on the (seed, epoch) stream */
      local_rng g = {cnn_rng_mix64(seed ^ 0x5851f42d4c957f2dULL) ^
                     cnn_rng_mix64((uint64_t)epoch + 0x632be59bd9b4e019ULL)};
      for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)local_below(&g, (uint64_t)i + 1);
        int64_t x = p[i];
        p[i] = p[j];
        p[j] = x;
      }
    }
  }
  if (world == 1) return perm;
  /* ceilings written so that no sum passes int64 (world may be anything up to INT64_MAX) */
  int64_t m = mode == CNN_SHARD_DROP  ? n / world
              : mode == CNN_SHARD_PAD ? n / world + (n % world != 0)
              : n > rank              ? (n - rank - 1) / world + 1
                                      : 0;
  if (n == 0) m = 0;
  cnn_tensor *shard = cnn_tensor_empty(CNN_INT64, 1, &m);
  if (shard && m > 0) { /* m > 0: n > 0 too */
    const int64_t *p = cnn_tensor_i64(perm);
    int64_t *q = cnn_tensor_i64(shard);
    /* position rank + k * world mod n, stepped without a product (which could overflow) */
    int64_t pos = rank % n, step = world % n;
    for (int64_t k = 0; k < m; k++) { /* wraps only when padding */
      q[k] = p[pos];
      pos = pos >= n - step ? pos - (n - step) : pos + step;
    }
  }
  cnn_tensor_release(perm);
  return shard;
}

/* ---- transforms ---- */

/* Checks x is a float32 (C, H, W) or (N, C, H, W) tensor; fills the batch view dims and returns a
 * contiguous reference (a new one). */
/* One transform's planes (n * c of them), for the ranges run on the pool. */
typedef struct {
  const float *src;
  float *dst;
  int64_t c, h, w, oh, ow, pad_h, pad_w;
  int nmean, nstd;
  const double *mean, *std;
  const int64_t *pos;
  const unsigned char *flip;
  float fill;
} planes_job;

static cnn_tensor *image_batch(const cnn_tensor *x, int64_t *n, int64_t *c, int64_t *h, int64_t *w) {
  if (x->dtype != CNN_FLOAT32) {
    cnn_error_set("expected a float32 image tensor, got %s", cnn_dtype_name(x->dtype));
    return NULL;
  }
  if (x->ndim != 3 && x->ndim != 4) {
    cnn_error_set("expected an image (C, H, W) or a batch (N, C, H, W), got %d dimensions", x->ndim);
    return NULL;
  }
  int o = x->ndim - 3;
  *n = o ? x->size[0] : 1;
  *c = x->size[o];
  *h = x->size[o + 1];
  *w = x->size[o + 2];
  return cnn_tensor_contiguous(x);
}

static cnn_tensor *like_batch(const cnn_tensor *x, int64_t h, int64_t w) {
  int64_t size[4];
  for (int d = 0; d < x->ndim; d++) size[d] = x->size[d];
  size[x->ndim - 2] = h;
  size[x->ndim - 1] = w;
  return cnn_tensor_empty(CNN_FLOAT32, x->ndim, size);
}

static void normalize_planes(void *arg, int64_t p0, int64_t p1) {
  const planes_job *j = arg;
  const int64_t area = j->h * j->w;
  for (int64_t pl = p0; pl < p1; pl++) {
    int64_t ch = pl % j->c;
    /* torchvision: x.sub_(mean).div_(std) in float32 */
    float m = (float)j->mean[j->nmean == 1 ? 0 : ch], s = (float)j->std[j->nstd == 1 ? 0 : ch];
    const float *a = j->src + pl * area;
    float *b = j->dst + pl * area;
    for (int64_t i = 0; i < area; i++) b[i] = (a[i] - m) / s;
  }
}

cnn_tensor *cnn_batch_normalize(const cnn_tensor *x, int nmean, const double *mean, int nstd, const double *std) {
  int64_t n, c, h, w;
  cnn_tensor *in = image_batch(x, &n, &c, &h, &w);
  if (!in) return NULL;
  if ((nmean != 1 && nmean != c) || (nstd != 1 && nstd != c)) {
    cnn_tensor_release(in);
    cnn_error_set("the image has %lld channel%s, so mean and std need 1 value or one per channel, got %d and %d",
                  (long long)c, c == 1 ? "" : "s", nmean, nstd);
    return NULL;
  }
  for (int i = 0; i < nstd; i++)
    if (std[i] == 0 || !isfinite(std[i]) || !isfinite(mean[i < nmean ? i : 0])) {
      cnn_tensor_release(in);
      cnn_error_set("std must be finite and nonzero and mean finite (std[%d] = %g)", i + 1, cnn_error_num(std[i]));
      return NULL;
    }
  for (int i = 0; i < nmean; i++)
    if (!isfinite(mean[i])) {
      cnn_tensor_release(in);
      cnn_error_set("mean must be finite (mean[%d] = %g)", i + 1, cnn_error_num(mean[i]));
      return NULL;
    }
  cnn_tensor *out = cnn_tensor_empty(CNN_FLOAT32, in->ndim, in->size);
  if (!out) {
    cnn_tensor_release(in);
    return NULL;
  }
  planes_job j = {.src = cnn_tensor_f32(in),
                  .dst = cnn_tensor_f32(out),
                  .c = c,
                  .h = h,
                  .w = w,
                  .nmean = nmean,
                  .nstd = nstd,
                  .mean = mean,
                  .std = std};
  cnn_parallel_items(n * c, n * c * h * w, normalize_planes, &j);
  cnn_tensor_release(in);
  return out;
}

static void crop_planes(void *arg, int64_t p0, int64_t p1) {
  const planes_job *j = arg;
  const int64_t h = j->h, w = j->w, oh = j->oh, ow = j->ow;
  const float fv = j->fill;
  for (int64_t pl = p0; pl < p1; pl++) {
    int64_t i = pl / j->c;
    int64_t top = j->pos[2 * i] - j->pad_h, left = j->pos[2 * i + 1] - j->pad_w; /* in source coordinates */
    const float *a = j->src + pl * j->h * j->w;
    float *b = j->dst + pl * j->oh * j->ow;
    /* columns [x0, x1) of the window fall inside the source */
    int64_t x0 = left < 0 ? -left : 0, x1 = w - left < ow ? w - left : ow;
    if (x0 > ow) x0 = ow; /* padding wider than the window: all fill */
    if (x1 < x0) x1 = x0;
    for (int64_t y = 0; y < oh; y++) {
      float *row = b + y * ow;
      int64_t sy = top + y;
      if (sy < 0 || sy >= h) {
        for (int64_t xx = 0; xx < ow; xx++) row[xx] = fv;
        continue;
      }
      for (int64_t xx = 0; xx < x0; xx++) row[xx] = fv;
      if (x1 > x0) memcpy(row + x0, a + sy * w + left + x0, sizeof(float) * (size_t)(x1 - x0));
      for (int64_t xx = x1; xx < ow; xx++) row[xx] = fv;
    }
  }
}

cnn_tensor *cnn_batch_random_crop(const cnn_tensor *x, int64_t oh, int64_t ow, int64_t pad_h, int64_t pad_w,
                                  double fill) {
  if (oh < 1 || ow < 1 || pad_h < 0 || pad_w < 0) {
    cnn_error_set("crop size must be positive and padding non-negative, got size %lldx%lld, padding %lldx%lld",
                  (long long)oh, (long long)ow, (long long)pad_h, (long long)pad_w);
    return NULL;
  }
  int64_t n, c, h, w;
  cnn_tensor *in = image_batch(x, &n, &c, &h, &w);
  if (!in) return NULL;
  if (pad_h > INT32_MAX || pad_w > INT32_MAX) {
    cnn_tensor_release(in);
    cnn_error_set("padding %lldx%lld is too large (at most 2^31 - 1)", (long long)pad_h, (long long)pad_w);
    return NULL;
  }
  if (oh > h + 2 * pad_h || ow > w + 2 * pad_w) {
    cnn_tensor_release(in);
    cnn_error_set("crop size %lldx%lld is larger than the padded image %lldx%lld", (long long)oh, (long long)ow,
                  (long long)(h + 2 * pad_h), (long long)(w + 2 * pad_w));
    return NULL;
  }
  cnn_tensor *out = like_batch(in, oh, ow);
  int64_t *pos = malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1));
  if (!out || !pos) {
    if (out && !pos) cnn_error_set("out of memory");
    cnn_tensor_release(in);
    cnn_tensor_release(out);
    free(pos);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) { /* top of the window in padded coordinates, then left */
    pos[2 * i] = (int64_t)cnn_rng_below(cnn_rng_global(), (uint64_t)(h + 2 * pad_h - oh + 1));
    pos[2 * i + 1] = (int64_t)cnn_rng_below(cnn_rng_global(), (uint64_t)(w + 2 * pad_w - ow + 1));
  }
  planes_job j = {.src = cnn_tensor_f32(in),
                  .dst = cnn_tensor_f32(out),
                  .c = c,
                  .h = h,
                  .w = w,
                  .oh = oh,
                  .ow = ow,
                  .pad_h = pad_h,
                  .pad_w = pad_w,
                  .pos = pos,
                  .fill = (float)fill};
  cnn_parallel_items(n * c, n * c * oh * ow, crop_planes, &j);
  free(pos);
  cnn_tensor_release(in);
  return out;
}

static void flip_planes(void *arg, int64_t p0, int64_t p1) {
  const planes_job *j = arg;
  const int64_t h = j->h, w = j->w, area = h * w;
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *a = j->src + pl * area;
    float *b = j->dst + pl * area;
    if (!j->flip[pl / j->c]) {
      memcpy(b, a, sizeof(float) * (size_t)area);
      continue;
    }
    for (int64_t y = 0; y < h; y++)
      for (int64_t xx = 0; xx < w; xx++) b[y * w + xx] = a[y * w + (w - 1 - xx)];
  }
}

cnn_tensor *cnn_batch_random_hflip(const cnn_tensor *x, double p) {
  if (!(p >= 0 && p <= 1)) {
    cnn_error_set("flip probability must be in [0, 1], got %g", cnn_error_num(p));
    return NULL;
  }
  int64_t n, c, h, w;
  cnn_tensor *in = image_batch(x, &n, &c, &h, &w);
  if (!in) return NULL;
  cnn_tensor *out = cnn_tensor_empty(CNN_FLOAT32, in->ndim, in->size);
  unsigned char *flip = malloc((size_t)(n ? n : 1));
  if (!out || !flip) {
    if (out && !flip) cnn_error_set("out of memory");
    cnn_tensor_release(in);
    cnn_tensor_release(out);
    free(flip);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++)
    flip[i] = cnn_rng_uniform01(cnn_rng_global()) < p; /* torchvision: torch.rand(1) < p */
  planes_job j = {.src = cnn_tensor_f32(in), .dst = cnn_tensor_f32(out), .c = c, .h = h, .w = w, .flip = flip};
  cnn_parallel_items(n * c, n * c * h * w, flip_planes, &j);
  free(flip);
  cnn_tensor_release(in);
  return out;
}
