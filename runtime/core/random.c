/* Random tensors from the runtime's stream (rng.h). Tensors are filled in row-major order of the
 * view on the calling thread, so the numbers never depend on the thread count. */
#include "cnn/random.h"
#include "cnn/error.h"
#include "cnn/rng.h"

#include <math.h>

/* ---- filling a float32 view in row-major order ---- */

/* Fills n values of one row, step floats apart, drawing from g, a local copy of the runtime's
 * stream. A row at a time (not a call per value through a pointer with the state in memory):
 * 30-45 ns a value before. */
typedef void (*row_fn)(void *ctx, cnn_rng *g, float *row, int64_t n, int64_t step);

static void fill_view(cnn_tensor *t, row_fn fill, void *ctx) {
  int64_t numel = cnn_tensor_numel(t);
  if (numel == 0) return;
  cnn_rng g = *cnn_rng_global();
  float *base = cnn_tensor_f32(t);
  int nd = t->ndim;
  if (nd == 0) {
    fill(ctx, &g, base, 1, 1);
  } else {
    /* the last dim is the inner loop; idx walks the outer dims as an odometer */
    int64_t idx[CNN_MAX_DIMS] = {0};
    int64_t inner = t->size[nd - 1], step = t->stride[nd - 1];
    float *row = base;
    for (int64_t done = 0; done < numel; done += inner) {
      fill(ctx, &g, row, inner, step);
      for (int d = nd - 2; d >= 0; d--) {
        row += t->stride[d];
        if (++idx[d] < t->size[d]) break;
        row -= idx[d] * t->stride[d];
        idx[d] = 0;
      }
    }
  }
  *cnn_rng_global() = g;
}

typedef struct {
  double lo, hi;
  float flo, fhi;
} uniform_ctx;

static void fill_uniform(void *vctx, cnn_rng *g, float *row, int64_t n, int64_t step) {
  const uniform_ctx *c = vctx;
  const double lo = c->lo, span = c->hi - c->lo;
  /* rounding to float32 can land on hi itself: step back to the largest float below it */
  const float top = c->flo < c->fhi ? nextafterf(c->fhi, -INFINITY) : c->flo;
  for (int64_t i = 0; i < n; i++) {
    float f = (float)(lo + span * cnn_rng_uniform01(g));
    row[i * step] = f >= c->fhi ? top : f;
  }
}

int cnn_random_uniform_(cnn_tensor *t, double lo, double hi) {
  if (cnn_tensor_need_float(t, "tensor")) return -1;
  if (!isfinite(lo) || !isfinite(hi) || lo > hi)
    return cnn_error_set("expected finite bounds with lo <= hi but got lo=%g, hi=%g", lo, hi);
  uniform_ctx c = {lo, hi, (float)lo, (float)hi};
  fill_view(t, fill_uniform, &c);
  return 0;
}

typedef struct {
  double mean, std;
  double spare; /* Box-Muller makes two values per draw; the second is used next */
  bool has_spare;
} normal_ctx;

static void fill_normal(void *vctx, cnn_rng *g, float *row, int64_t n, int64_t step) {
  normal_ctx *c = vctx;
  for (int64_t i = 0; i < n; i++) {
    double z;
    if (c->has_spare) {
      z = c->spare;
      c->has_spare = false;
    } else {
      double u1 = 1.0 - cnn_rng_uniform01(g); /* (0, 1]: log stays finite */
      double u2 = cnn_rng_uniform01(g);
      double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
      z = r * cos(th);
      c->spare = r * sin(th);
      c->has_spare = true;
    }
    row[i * step] = (float)(c->mean + c->std * z);
  }
}

int cnn_random_normal_(cnn_tensor *t, double mean, double std) {
  if (cnn_tensor_need_float(t, "tensor")) return -1;
  if (!isfinite(mean) || !isfinite(std) || std < 0)
    return cnn_error_set("expected a finite mean and std >= 0 but got mean=%g, std=%g", mean, std);
  normal_ctx c = {mean, std, 0.0, false};
  fill_view(t, fill_normal, &c);
  return 0;
}

cnn_tensor *cnn_random_randint(int64_t lo, int64_t hi, int ndim, const int64_t *size) {
  if (lo > hi) {
    cnn_error_set("expected lo <= hi but got lo=%lld, hi=%lld", (long long)lo, (long long)hi);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, ndim, size);
  if (!t) return NULL;
  int64_t n = cnn_tensor_numel(t), *p = cnn_tensor_i64(t);
  uint64_t span = (uint64_t)hi - (uint64_t)lo + 1; /* 0: the full 64-bit range */
  for (int64_t i = 0; i < n; i++) {
    uint64_t r = span ? cnn_rng_below(cnn_rng_global(), span) : cnn_rng_next(cnn_rng_global());
    p[i] = (int64_t)((uint64_t)lo + r); /* two's complement wrap is the intended sum */
  }
  return t;
}

cnn_tensor *cnn_random_randperm(int64_t n) {
  if (n < 0) {
    cnn_error_set("expected n >= 0 but got %lld", (long long)n);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 1, &n);
  if (!t) return NULL;
  int64_t *p = cnn_tensor_i64(t);
  for (int64_t i = 0; i < n; i++) p[i] = i;
  /* Fisher-Yates: p[i] swaps with a uniform position in [0, i] */
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)cnn_rng_below(cnn_rng_global(), (uint64_t)i + 1);
    int64_t x = p[i];
    p[i] = p[j];
    p[j] = x;
  }
  return t;
}
