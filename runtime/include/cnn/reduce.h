/** Reductions without autograd, over one dimension or all (dim == CNN_ALL_DIMS), with keepdim.
 * float32 in, float32 out; SUM over int64 stays int64; MAX/MIN/ARGMAX/ARGMIN work on both.
 * Full reductions give 0-d tensors. Reducing an empty dim: SUM 0, MEAN nan, MAX is an error. */
#ifndef CNN_REDUCE_H
#define CNN_REDUCE_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The reductions cnn_red_reduce computes. */
typedef enum cnn_redop { CNN_RED_SUM, CNN_RED_MEAN, CNN_RED_PROD } cnn_redop;

/** The sum, mean or product of x over dim (CNN_ALL_DIMS: all), keeping it as size 1 when keepdim. */
cnn_tensor *cnn_red_reduce(cnn_redop op, const cnn_tensor *x, int dim, bool keepdim);
/** Variance with Bessel's correction when unbiased (PyTorch's default). */
cnn_tensor *cnn_red_var(const cnn_tensor *x, int dim, bool unbiased, bool keepdim);
/** The square root of cnn_red_var's, taken in double before rounding to float32. */
cnn_tensor *cnn_red_std(const cnn_tensor *x, int dim, bool unbiased, bool keepdim);
/** values (x's dtype) and 0-based int64 indices of the first max/min; either out may be NULL. */
int cnn_red_max(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices);
int cnn_red_min(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices);
/** Sums t down to shape (ndim, size), the reverse of broadcasting (used by autograd). Returns t
 * retained when already of that shape. */
cnn_tensor *cnn_red_sum_to(const cnn_tensor *t, int ndim, const int64_t *size);

#ifdef __cplusplus
}
#endif
#endif
