/* Matrix products (see matmul.h). Every product is one or more row-major cnn_gemm calls
 * (core/gemm.h: the AVX-512 kernel, or OpenBLAS's sgemm) that read the operands in place when their
 * strides fit either layout (a transposed view is just the other layout), else from a contiguous
 * copy. The result is always a fresh contiguous tensor. */
#include "cnn/matmul.h"
#include "cnn/error.h"
#include "core/gemm.h"
#include "core/iter.h"
#include "core/parallel.h"

#include <cblas.h>
#include <limits.h>

/* One operand as a stack of (rows, cols) matrices: batch dims (nb of them), then the matrix. */
typedef struct {
  const float *data;
  int nb;
  int64_t bsize[CNN_MAX_DIMS], bstride[CNN_MAX_DIMS];
  int64_t rows, cols, rs, cs;
  CBLAS_TRANSPOSE trans; /* how sgemm reads each matrix */
  int64_t ld;
} operand;

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* Finds an sgemm layout for (rows, cols) with element strides (rs, cs); false if none fits. */
static bool find_layout(operand *o) {
  /* row-major: columns adjacent, rows ld >= cols apart; a single row needs no row stride */
  if ((o->cols <= 1 || o->cs == 1) && (o->rows <= 1 || o->rs >= max1(o->cols))) {
    o->trans = CblasNoTrans;
    o->ld = o->rows <= 1 ? max1(o->cols) : o->rs;
    return o->ld <= INT_MAX;
  }
  /* column-major, e.g. a transposed view: the stored (cols, rows) matrix is row-major */
  if ((o->rows <= 1 || o->rs == 1) && (o->cols <= 1 || o->cs >= max1(o->rows))) {
    o->trans = CblasTrans;
    o->ld = o->cols <= 1 ? max1(o->rows) : o->cs;
    return o->ld <= INT_MAX;
  }
  return false;
}

/* Describes t as a matrix stack; a 1-d t is a row (as_row: (1, k)) or a column ((k, 1)). */
static void describe(operand *o, const cnn_tensor *t, bool as_row) {
  int nd = t->ndim;
  o->data = cnn_tensor_f32(t);
  if (nd == 1) {
    o->nb = 0;
    if (as_row) {
      o->rows = 1, o->cols = t->size[0], o->rs = t->size[0], o->cs = t->stride[0];
    } else {
      o->rows = t->size[0], o->cols = 1, o->rs = t->stride[0], o->cs = 1;
    }
    return;
  }
  o->nb = nd - 2;
  for (int d = 0; d < o->nb; d++) {
    o->bsize[d] = t->size[d];
    o->bstride[d] = t->stride[d];
  }
  o->rows = t->size[nd - 2], o->cols = t->size[nd - 1];
  o->rs = t->stride[nd - 2], o->cs = t->stride[nd - 1];
}

/* Element offset of batch `lin` (row-major over the output's batch shape) in o. */
static int64_t batch_offset(const operand *o, int nbo, const int64_t *bshape, int64_t lin) {
  int64_t off = 0;
  for (int d = nbo - 1; d >= 0; d--) {
    int64_t i = lin % bshape[d];
    lin /= bshape[d];
    int od = d - (nbo - o->nb);
    if (od >= 0 && o->bsize[od] != 1) off += i * o->bstride[od];
  }
  return off;
}

/* True when o's batch dims and rows form one strided run of rows: (batch * rows, cols). */
static bool rows_fold(const operand *o) {
  if (o->trans != CblasNoTrans) return false;
  int64_t expect = o->ld * o->rows;
  for (int d = o->nb - 1; d >= 0; d--) {
    if (o->bsize[d] != 1 && o->bstride[d] != expect) return false;
    expect *= o->bsize[d];
  }
  return true;
}

typedef struct {
  const operand *A, *B;
  int nbo;
  const int64_t *bshape;
  int64_t m, n, k;
  float *c;
} batch_job;

/* products [i0, i1) of a batched matmul */
static void batch_products(void *arg, int64_t i0, int64_t i1) {
  const batch_job *j = arg;
  const operand *A = j->A, *B = j->B;
  const int64_t m = j->m, n = j->n;
  for (int64_t i = i0; i < i1; i++) {
    const float *pa = A->data + batch_offset(A, j->nbo, j->bshape, i);
    const float *pb = B->data + batch_offset(B, j->nbo, j->bshape, i);
    cnn_gemm(A->trans == CblasTrans, B->trans == CblasTrans, m, n, j->k, 1.0f, pa, A->ld, pb, B->ld, 0.0f,
             j->c + i * m * n, n);
  }
}

static void shapes_str(const cnn_tensor *a, const cnn_tensor *b, char *sa, char *sb, size_t n) {
  cnn_shape_str(a->ndim, a->size, sa, n);
  cnn_shape_str(b->ndim, b->size, sb, n);
}

/* int64 products (no BLAS for integers): a plain triple loop over any strides, wrapping on
 * overflow as PyTorch's integer matmul. c is (nbatch, m, n) contiguous. */
static void matmul_i64(const operand *A, const operand *B, const int64_t *pa0, const int64_t *pb0, int nbo,
                       const int64_t *bshape, int64_t nbatch, int64_t m, int64_t n, int64_t k, int64_t *c) {
  for (int64_t bi = 0; bi < nbatch; bi++) {
    const int64_t *pa = pa0 + batch_offset(A, nbo, bshape, bi), *pb = pb0 + batch_offset(B, nbo, bshape, bi);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        uint64_t acc = 0;
        for (int64_t l = 0; l < k; l++)
          acc += (uint64_t)pa[i * A->rs + l * A->cs] * (uint64_t)pb[l * B->rs + j * B->cs];
        c[(bi * m + i) * n + j] = (int64_t)acc;
      }
  }
}

cnn_tensor *cnn_mm_matmul(const cnn_tensor *a, const cnn_tensor *b) {
  char sa[256], sb[256];
  if (a->dtype != b->dtype) {
    cnn_error_set("expected tensors of one dtype but got %s and %s", cnn_dtype_name(a->dtype),
                  cnn_dtype_name(b->dtype));
    return NULL;
  }
  if (a->ndim == 0 || b->ndim == 0) {
    cnn_error_set("both arguments need at least 1 dimension but got %d-d and %d-d", a->ndim, b->ndim);
    return NULL;
  }
  if (a->dtype == CNN_BOOL) {
    /* as PyTorch's: no bool product kernel, but where no product is taken (an empty result or an
     * empty inner dim) the result is all false; a 1-d x 1-d dot never */
    if (a->ndim == 1 && b->ndim == 1) {
      cnn_error_set("matmul is not implemented for bool tensors");
      return NULL;
    }
    const int64_t k = a->size[a->ndim - 1];
    cnn_tensor *wa = cnn_tensor_to_dtype(a, CNN_INT64), *wb = wa ? cnn_tensor_to_dtype(b, CNN_INT64) : NULL;
    cnn_tensor *w = wb ? cnn_mm_matmul(wa, wb) : NULL, *r = NULL;
    if (w && k != 0 && cnn_tensor_numel(w) != 0) cnn_error_set("matmul is not implemented for bool tensors");
    else if (w) r = cnn_tensor_to_dtype(w, CNN_BOOL);
    cnn_tensor_release(wa);
    cnn_tensor_release(wb);
    cnn_tensor_release(w);
    return r;
  }
  if (a->dtype == CNN_UINT8) { /* modulo 256, as PyTorch's: the int64 product's low bytes */
    cnn_tensor *wa = cnn_tensor_to_dtype(a, CNN_INT64), *wb = wa ? cnn_tensor_to_dtype(b, CNN_INT64) : NULL;
    cnn_tensor *w = wb ? cnn_mm_matmul(wa, wb) : NULL, *r = w ? cnn_tensor_to_dtype(w, CNN_UINT8) : NULL;
    cnn_tensor_release(wa);
    cnn_tensor_release(wb);
    cnn_tensor_release(w);
    return r;
  }
  /* (batch.., m, k) x (batch.., k, n) -> (batch.., m, n) */
  operand A, B;
  describe(&A, a, true);
  describe(&B, b, false);
  int64_t m = A.rows, k = A.cols, n = B.cols;
  if (B.rows != k) {
    shapes_str(a, b, sa, sb, sizeof sa);
    cnn_error_set("shapes %s and %s cannot be multiplied (%lld != %lld)", sa, sb, (long long)k, (long long)B.rows);
    return NULL;
  }
  int nbo = A.nb > B.nb ? A.nb : B.nb;
  int64_t bshape[CNN_MAX_DIMS], nbatch = 1, nbatch_b = 1;
  for (int d = 0; d < nbo; d++) {
    int da = d - (nbo - A.nb), db = d - (nbo - B.nb);
    int64_t x = da >= 0 ? A.bsize[da] : 1, y = db >= 0 ? B.bsize[db] : 1;
    if (x != y && x != 1 && y != 1) {
      shapes_str(a, b, sa, sb, sizeof sa);
      cnn_error_set("shapes %s and %s cannot be multiplied (batch dimensions do not broadcast)", sa, sb);
      return NULL;
    }
    bshape[d] = x == 1 ? y : x;
    nbatch *= bshape[d];
    nbatch_b *= y;
  }
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX) {
    cnn_error_set("matrix dimensions exceed what BLAS can index");
    return NULL;
  }

  /* output: batch dims, then m unless a was 1-d, then n unless b was 1-d */
  int64_t osize[CNN_MAX_DIMS];
  int ond = 0;
  for (int d = 0; d < nbo; d++) osize[ond++] = bshape[d];
  if (a->ndim > 1) osize[ond++] = m;
  if (b->ndim > 1) osize[ond++] = n;
  cnn_tensor *out = k == 0 ? cnn_tensor_zeros(a->dtype, ond, osize) : cnn_tensor_empty(a->dtype, ond, osize);
  if (!out || k == 0 || nbatch * m * n == 0) return out;
  if (a->dtype == CNN_INT64) {
    matmul_i64(&A, &B, cnn_tensor_i64(a), cnn_tensor_i64(b), nbo, bshape, nbatch, m, n, k, cnn_tensor_i64(out));
    return out;
  }

  /* operands whose matrices fit no sgemm layout (expanded, sliced columns) are copied */
  cnn_tensor *ca = NULL, *cb = NULL;
  if (!find_layout(&A)) {
    if (!(ca = cnn_tensor_contiguous(a))) goto fail;
    describe(&A, ca, true);
    find_layout(&A);
  }
  if (!find_layout(&B)) {
    if (!(cb = cnn_tensor_contiguous(b))) goto fail;
    describe(&B, cb, false);
    find_layout(&B);
  }

  float *c = cnn_tensor_f32(out);
  if (nbatch_b == 1 && rows_fold(&A) && nbatch * m <= INT_MAX) {
    /* b is one matrix and a's rows form one run: a single (batch*m, k) x (k, n) product */
    cnn_gemm(A.trans == CblasTrans, B.trans == CblasTrans, nbatch * m, n, k, 1.0f, A.data, A.ld, B.data, B.ld, 0.0f, c,
             n);
  } else {
    /* many small products: one per thread at a time; few large ones: each split by cnn_gemm */
    bool per_thread = nbatch >= cnn_parallel_get_threads() && (double)m * n * k < 4e6;
    batch_job j = {&A, &B, nbo, bshape, m, n, k, c};
    if (per_thread) cnn_parallel_for(nbatch, 1, batch_products, &j);
    else batch_products(&j, 0, nbatch);
  }
  cnn_tensor_release(ca);
  cnn_tensor_release(cb);
  return out;
fail:
  cnn_tensor_release(ca);
  cnn_tensor_release(cb);
  cnn_tensor_release(out);
  return NULL;
}

cnn_tensor *cnn_mm_mm(const cnn_tensor *a, const cnn_tensor *b) {
  if (a->ndim != 2 || b->ndim != 2) {
    cnn_error_set("expected 2-d tensors but got %d-d and %d-d", a->ndim, b->ndim);
    return NULL;
  }
  return cnn_mm_matmul(a, b);
}
