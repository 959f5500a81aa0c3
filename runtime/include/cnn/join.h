/** Joining and gathering without autograd: cat, stack, index_select, index_copy_, nonzero; gather,
 * scatter, cumsum and sort along one dimension. */
#ifndef CNN_JOIN_H
#define CNN_JOIN_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/** Along dimension dim (0-based; a 0-d t acts as 1-d of size 1), with idx an int64 tensor of
 * 0-based positions having t's number of dims and sizes at most t's on the other dims (each entry
 * checked, the message gives it 1-based). gather: out[p] = t[p with coordinate dim = idx[p]],
 * out of idx's shape (torch.gather). scatter: a copy of t with out[p with coordinate dim =
 * idx[p]] = src[p] for every position p of idx (or += when add; repeats accumulate, in float32
 * for float32), src of t's dtype and number of dims with sizes at least idx's (torch.scatter,
 * torch.scatter_add). */
cnn_tensor *cnn_join_gather(const cnn_tensor *t, int dim, const cnn_tensor *idx);
cnn_tensor *cnn_join_scatter(const cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add);
/** The running sums of t along dim (from the end when reverse), float32 accumulated in double;
 * bool, uint8 and int64 give int64 (wrapping), as torch.cumsum. */
cnn_tensor *cnn_join_cumsum(const cnn_tensor *t, int dim, bool reverse);
/** The 0-based int64 positions that sort t along dim, stably (equal values keep their order),
 * NaN above every number (first when descending), as torch.sort(stable=True). */
cnn_tensor *cnn_join_sort(const cnn_tensor *t, int dim, bool descending);
/** The first k of cnn_join_sort's positions along dim (largest: descending), without sorting the
 * rest: the same positions in the same order (ties by position, NaN above every number), found
 * by a bounded heap when k is small against the row. Shape t's with dim of size k. */
cnn_tensor *cnn_join_topk(const cnn_tensor *t, int dim, int64_t k, bool largest);

#ifdef __cplusplus
}
#endif
#endif
