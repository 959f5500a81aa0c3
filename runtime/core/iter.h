/* Strided iteration over up to CNN_ITER_MAX_OPS operands of one (broadcast) shape. Dimensions
 * that are contiguous across all operands are coalesced, so a contiguous case is one run.
 * Kernels supply the innermost loop; cnn_iter_run splits the outer runs over threads. */
#ifndef CNN_ITER_H
#define CNN_ITER_H

#include "cnn/tensor.h"

#define CNN_ITER_MAX_OPS 4

typedef struct cnn_iter {
  int nops;
  int ndim;                                       /* after coalescing; >= 1 */
  int64_t size[CNN_MAX_DIMS];                     /* size[ndim-1] is the inner run length */
  int64_t stride[CNN_ITER_MAX_OPS][CNN_MAX_DIMS]; /* in bytes; 0 on broadcast dims */
  char *base[CNN_ITER_MAX_OPS];
  int64_t numel;
} cnn_iter;

/* Inner loop: n elements; ptr[k] is operand k's first element, step[k] its byte stride. */
typedef void (*cnn_iter_fn)(void *ctx, int64_t n, char **ptr, const int64_t *step);

/* ops[k] must broadcast to (ndim, shape); operand 0 is usually the output and must have exactly
 * that shape. Returns 0, or -1 with a broadcast error set. */
int cnn_iter_init(cnn_iter *it, int nops, const cnn_tensor *const *ops, int ndim, const int64_t *shape);
/* Runs fn over every inner run; parallel over threads when numel is large enough and
 * `parallel` is true (the fn must then be safe to call concurrently on disjoint outputs). */
void cnn_iter_run(const cnn_iter *it, cnn_iter_fn fn, void *ctx, bool parallel);

/* Broadcast shape of a and b (NumPy rules). Returns 0, or -1 with
 * "shapes (2, 3) and (4) cannot be broadcast" set. */
int cnn_broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out);
/* Writes "(2, 3)" into buf. Returns buf. */
char *cnn_shape_str(int ndim, const int64_t *size, char *buf, size_t n);

#endif
