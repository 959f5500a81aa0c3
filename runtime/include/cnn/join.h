/** Joining and gathering without autograd: cat, stack, index_select, index_copy_, nonzero. */
#ifndef CNN_JOIN_H
#define CNN_JOIN_H

#include "tensor.h"

/** Tensors must share all sizes but dim's (a 1-d empty tensor joins anything, as PyTorch's legacy rule);
 * dtypes promote as in arithmetic (cnn_dtype_promote: bool < uint8 < int64 < float32). */
cnn_tensor *cnn_join_cat(int n, const cnn_tensor *const *ts, int dim);
/** Tensors must share shape; new dim inserted at dim (0..ndim). */
cnn_tensor *cnn_join_stack(int n, const cnn_tensor *const *ts, int dim);
/** idx: 1-d int64 of 0-based indices (checked against the size). */
cnn_tensor *cnn_join_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx);
/** out (zeros of t's shape) with out.index_select(dim, idx) += src: the backward of index_select. */
int cnn_join_index_add_(cnn_tensor *out, int dim, const cnn_tensor *idx, const cnn_tensor *src);

/** out's rows idx along dim (in place, any strides) = src, whose shape is out's with len(idx) at dim
 * (converted to out's dtype): the write of t[mask] = v. */
int cnn_join_index_copy_(cnn_tensor *out, int dim, const cnn_tensor *idx, const cnn_tensor *src);
/** The 0-based multi-indices of t's nonzero elements in row-major order, as (count, ndim) int64. */
cnn_tensor *cnn_join_nonzero(const cnn_tensor *t);

#endif
