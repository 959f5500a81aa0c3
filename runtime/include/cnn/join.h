/** Joining and gathering without autograd: cat, stack, index_select. */
#ifndef CNN_JOIN_H
#define CNN_JOIN_H

#include "tensor.h"

/** Tensors must share all sizes but dim's (a 1-d empty tensor joins anything, as PyTorch's legacy rule);
 * the result is float32 when any input is, else int64. */
cnn_tensor *cnn_join_cat(int n, const cnn_tensor *const *ts, int dim);
/** Tensors must share shape; new dim inserted at dim (0..ndim). */
cnn_tensor *cnn_join_stack(int n, const cnn_tensor *const *ts, int dim);
/** idx: 1-d int64 of 0-based indices (checked against the size). */
cnn_tensor *cnn_join_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx);
/** out (zeros of t's shape) with out.index_select(dim, idx) += src: the backward of index_select. */
int cnn_join_index_add_(cnn_tensor *out, int dim, const cnn_tensor *idx, const cnn_tensor *src);

#endif
