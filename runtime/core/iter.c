/* Strided iteration (see iter.h). After init, dims are ordered outer to inner, size-1 dims are
 * gone and adjacent dims that every operand lays out contiguously are merged, so the innermost
 * run is as long as the layouts allow. The element space [0, numel) is split into contiguous
 * ranges of whole 16-element blocks, claimed by the pool's threads, each walked run by run. */
#include "core/iter.h"
#include "cnn/error.h"
#include "core/parallel.h"

#include <stdio.h>
#include <string.h>

char *cnn_shape_str(int ndim, const int64_t *size, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf, n, "(");
  for (int d = 0; d < ndim && used < n; d++)
    used += (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)size[d]);
  if (used < n) snprintf(buf + used, n - used, ")");
  return buf;
}

int cnn_broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out) {
  int n = na > nb ? na : nb;
  for (int k = 0; k < n; k++) {
    int ia = na - n + k, ib = nb - n + k;
    int64_t a = ia >= 0 ? sa[ia] : 1, b = ib >= 0 ? sb[ib] : 1;
    if (a != b && a != 1 && b != 1) {
      char b1[256], b2[256];
      return cnn_error_set("shapes %s and %s cannot be broadcast", cnn_shape_str(na, sa, b1, sizeof b1),
                           cnn_shape_str(nb, sb, b2, sizeof b2));
    }
    out[k] = a == 1 ? b : a;
  }
  *nout = n;
  return 0;
}

int cnn_iter_init(cnn_iter *it, int nops, const cnn_tensor *const *ops, int ndim, const int64_t *shape) {
  int64_t size[CNN_MAX_DIMS], stride[CNN_ITER_MAX_OPS][CNN_MAX_DIMS];
  it->nops = nops;
  it->numel = 1;
  for (int d = 0; d < ndim; d++) {
    size[d] = shape[d];
    it->numel *= shape[d];
  }
  for (int k = 0; k < nops; k++) {
    const cnn_tensor *t = ops[k];
    int64_t esize = (int64_t)cnn_dtype_size(t->dtype);
    if (t->ndim > ndim) goto bad;
    for (int d = 0; d < ndim; d++) {
      int td = d - (ndim - t->ndim);
      if (td < 0) {
        stride[k][d] = 0;
      } else if (t->size[td] == shape[d]) {
        stride[k][d] = t->stride[td] * esize;
      } else if (t->size[td] == 1) {
        stride[k][d] = 0;
      } else {
        goto bad;
      }
    }
    it->base[k] = (char *)cnn_tensor_data(t);
    continue;
  bad : {
    char b1[256], b2[256];
    return cnn_error_set("shapes %s and %s cannot be broadcast", cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
                         cnn_shape_str(ndim, shape, b2, sizeof b2));
  }
  }
  /* drop size-1 dims, then merge an outer dim into the inner one when every operand allows; the
   * test is against the merged dim kept so far (it->stride), not the original dim n - 1, so a whole
   * contiguous tensor becomes one run */
  int n = 0;
  for (int d = 0; d < ndim; d++) {
    if (size[d] == 1) continue;
    bool merge = n > 0;
    for (int k = 0; k < nops && merge; k++) merge = it->stride[k][n - 1] == stride[k][d] * size[d];
    if (merge) {
      it->size[n - 1] *= size[d];
      for (int k = 0; k < nops; k++) it->stride[k][n - 1] = stride[k][d];
    } else {
      it->size[n] = size[d];
      for (int k = 0; k < nops; k++) it->stride[k][n] = stride[k][d];
      n++;
    }
  }
  if (n == 0) {
    it->size[0] = 1;
    for (int k = 0; k < nops; k++) it->stride[k][0] = 0;
    n = 1;
  }
  it->ndim = n;
  return 0;
}

/* Walks elements [begin, end) of the iteration space, one inner run (or part of one) at a time. */
static void run_range(const cnn_iter *it, cnn_iter_fn fn, void *ctx, int64_t begin, int64_t end) {
  int nd = it->ndim, nops = it->nops;
  int64_t idx[CNN_MAX_DIMS], rest = begin;
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = rest % it->size[d];
    rest /= it->size[d];
  }
  char *ptr[CNN_ITER_MAX_OPS];
  int64_t step[CNN_ITER_MAX_OPS];
  for (int k = 0; k < nops; k++) step[k] = it->stride[k][nd - 1];
  int64_t pos = begin;
  while (pos < end) {
    for (int k = 0; k < nops; k++) {
      char *p = it->base[k];
      for (int d = 0; d < nd; d++) p += idx[d] * it->stride[k][d];
      ptr[k] = p;
    }
    int64_t n = it->size[nd - 1] - idx[nd - 1];
    if (n > end - pos) n = end - pos;
    fn(ctx, n, ptr, step);
    pos += n;
    idx[nd - 1] += n;
    for (int d = nd - 1; d > 0 && idx[d] == it->size[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

typedef struct {
  const cnn_iter *it;
  cnn_iter_fn fn;
  void *ctx;
} run_job;

/* blocks [b, e) of 16 elements: threads never share a cache line of a contiguous output */
static void run_blocks(void *arg, int64_t b, int64_t e) {
  const run_job *j = arg;
  int64_t end = e * 16 < j->it->numel ? e * 16 : j->it->numel;
  run_range(j->it, j->fn, j->ctx, b * 16, end);
}

void cnn_iter_run(const cnn_iter *it, cnn_iter_fn fn, void *ctx, bool parallel) {
  if (it->numel == 0) return;
  if (!parallel || it->numel < CNN_PARALLEL_GRAIN) {
    run_range(it, fn, ctx, 0, it->numel);
    return;
  }
  run_job j = {it, fn, ctx};
  cnn_parallel_for((it->numel + 15) / 16, CNN_PARALLEL_GRAIN / 2 / 16, run_blocks, &j);
}
