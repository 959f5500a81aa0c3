/** The differentiable tensor ops. Each runs its kernel and, when grad mode is on and an input
 * requires grad, records an autograd node whose backward sits beside the forward in ops_*.c.
 * This is the layer the bindings call, and the one to call from C for anything that may need a
 * gradient. Dims and indices are 0-based (negative wrap, -1 = last). Functions returning
 * cnn_tensor * return a new reference, or NULL with the error set. */
#ifndef CNN_OPS_H
#define CNN_OPS_H

#include "elementwise.h"
#include "reduce.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** x op y elementwise with broadcasting and elementwise.h's type promotion (CNN_ADD, CNN_MUL, the
 * comparisons, ...), and f(x; p0, p1) for a unary op (p0, p1 as cnn_unop says; 0 when unused). */
cnn_tensor *cnn_op_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b);
cnn_tensor *cnn_op_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1);
/** In place on t: t = t op other (other broadcast to t's shape), t = f(t), t filled with v, src
 * copied into t (broadcast, dtype converted), t drawn uniform in [lo, hi) or normal(mean, std)
 * from the runtime's stream (fill_i64_ fills an int64 tensor exactly). Refused (error) on an expanded
 * tensor (elements sharing memory) and, while grad mode is on, on a leaf that requires grad, as
 * PyTorch refuses both. On a tensor with history (or, for the arithmetic ops and copy_, an operand
 * that requires grad) the write is recorded: t takes the out-of-place result's memory and node
 * (refused when a view shares t's memory); the random fills refuse such a tensor. Otherwise each
 * bumps the storage version, so a graph that saved t fails at backward instead of giving a wrong
 * gradient. Return 0 or -1 with the error set. */
int cnn_op_binary_(cnn_binop op, cnn_tensor *t, const cnn_tensor *other);
int cnn_op_unary_(cnn_unop op, cnn_tensor *t, double p0, double p1);
int cnn_op_fill_(cnn_tensor *t, double v);
int cnn_op_fill_i64_(cnn_tensor *t, int64_t v);
int cnn_op_copy_(cnn_tensor *t, const cnn_tensor *src);
int cnn_op_uniform_(cnn_tensor *t, double lo, double hi);
int cnn_op_normal_(cnn_tensor *t, double mean, double std);
/** cond ? a : b, broadcast, differentiable in a and b; cond is bool (uint8 accepted, as PyTorch). */
cnn_tensor *cnn_op_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b);
/** x with value (a 0-d tensor) where mask (bool) is true, in x's dtype, x and mask broadcast
 * together (as PyTorch's out-of-place masked_fill); differentiable in x and value. */
cnn_tensor *cnn_op_masked_fill(const cnn_tensor *x, const cnn_tensor *mask, const cnn_tensor *value);
/** In place: value (a 0-d tensor) written into t where mask (bool, broadcasting to t's shape) is
 * true, converted to t's dtype; recorded as the ops above are. Returns 0 or -1 with the error set. */
int cnn_op_masked_fill_(cnn_tensor *t, const cnn_tensor *mask, const cnn_tensor *value);
/** Checks that t may be written in place (the rule above); returns 0 or -1 with the error set. */
int cnn_op_check_inplace(const cnn_tensor *t);

/** Sum, mean, variance and standard deviation over dim (CNN_ALL_DIMS: over all, giving a 0-d
 * tensor), keeping dim as size 1 when keepdim; var and std divide by n - 1 when unbiased. */
cnn_tensor *cnn_op_sum(const cnn_tensor *x, int dim, bool keepdim);
cnn_tensor *cnn_op_mean(const cnn_tensor *x, int dim, bool keepdim);
cnn_tensor *cnn_op_var(const cnn_tensor *x, int dim, bool unbiased, bool keepdim);
cnn_tensor *cnn_op_std(const cnn_tensor *x, int dim, bool unbiased, bool keepdim);
/** max/min over dim: *values (differentiable) and *indices, the 0-based int64 positions of the
 * first extreme (indices may be NULL when not wanted). Over all (CNN_ALL_DIMS): values only
 * (*indices is set to NULL), the gradient shared evenly among ties. Return 0 or -1 with the error
 * set. */
int cnn_op_max(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices);
int cnn_op_min(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices);

/** Matrix products of float32 tensors: matmul as torch.matmul (1-d operands, batched and broadcast
 * leading dims), mm strictly (m, k) x (k, n). */
cnn_tensor *cnn_op_matmul(const cnn_tensor *a, const cnn_tensor *b);
cnn_tensor *cnn_op_mm(const cnn_tensor *a, const cnn_tensor *b);
/** y = x @ w^T + b: x (..., in), w (out, in), b (out) or NULL -> (..., out), float32. One GEMM with
 * the bias preloaded; backward gives dW = dY^T X in w's own (out, in) layout, db as dY's column
 * sums and dX = dY W, each only when its input needs it. */
cnn_tensor *cnn_op_linear(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b);

/** The views of tensor.h (sharing t's storage), with gradients: select, narrow, transpose,
 * permute, unsqueeze, squeeze, expand, view; reshape (a view when it can be, else a copy). */
cnn_tensor *cnn_op_select(const cnn_tensor *t, int dim, int64_t index);
cnn_tensor *cnn_op_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length);
cnn_tensor *cnn_op_transpose(const cnn_tensor *t, int d0, int d1);
cnn_tensor *cnn_op_permute(const cnn_tensor *t, const int *dims);
cnn_tensor *cnn_op_unsqueeze(const cnn_tensor *t, int dim);
cnn_tensor *cnn_op_squeeze(const cnn_tensor *t, int dim);
cnn_tensor *cnn_op_expand(const cnn_tensor *t, int ndim, const int64_t *size);
cnn_tensor *cnn_op_view(const cnn_tensor *t, int ndim, const int64_t *size);
cnn_tensor *cnn_op_reshape(const cnn_tensor *t, int ndim, const int64_t *size);
/** Dims start_dim .. end_dim of t merged into one (as t.flatten(start_dim, end_dim)). */
cnn_tensor *cnn_op_flatten(const cnn_tensor *t, int start_dim, int end_dim);
/** Copies with gradients: contiguous (t itself when it already is), clone (always a copy),
 * to_dtype (t itself when it has dtype dt). */
cnn_tensor *cnn_op_contiguous(const cnn_tensor *t);
cnn_tensor *cnn_op_clone(const cnn_tensor *t);
cnn_tensor *cnn_op_to_dtype(const cnn_tensor *t, cnn_dtype dt);
/** The entries of t at the 0-based indices idx (1-d int64) along dim. */
cnn_tensor *cnn_op_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx);
/** n tensors joined along dim: cat along an existing dim (the others' sizes must agree), stack
 * along a new one (the shapes must agree). */
cnn_tensor *cnn_op_cat(int n, const cnn_tensor *const *ts, int dim);
/** t[mask]: mask (bool) has the shape of t's first k dims; the result is (count of true, t's other
 * sizes...), the selected rows in row-major order (differentiable). mask_put_ writes src, broadcast
 * to that shape, into those rows of t in place (t[mask] = v; on a t with history, recorded as the
 * in-place ops above are, with a src that does not require grad). */
cnn_tensor *cnn_op_mask_select(const cnn_tensor *t, const cnn_tensor *mask);
int cnn_op_mask_put_(cnn_tensor *t, const cnn_tensor *mask, const cnn_tensor *src);
cnn_tensor *cnn_op_stack(int n, const cnn_tensor *const *ts, int dim);
/** join.h's gather, scatter (scatter_add when add), cumsum and sort with gradients: gather's is
 * g added into zeros at idx; scatter's is g with zeros where it wrote for t (g itself for
 * scatter_add) and g gathered at idx for src (zero where src is larger than idx); cumsum's the
 * running sum of g from the end; sort gives *values (t gathered at the order, differentiable) and
 * *indices (0-based int64), or returns -1 with the error set. scatter_ writes into t in place (the
 * in-place rule above), nothing when an index is invalid. */
cnn_tensor *cnn_op_gather(const cnn_tensor *t, int dim, const cnn_tensor *idx);
cnn_tensor *cnn_op_scatter(const cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add);
int cnn_op_scatter_(cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add);
cnn_tensor *cnn_op_cumsum(const cnn_tensor *t, int dim);
int cnn_op_sort(const cnn_tensor *t, int dim, bool descending, cnn_tensor **values, cnn_tensor **indices);

#ifdef __cplusplus
}
#endif
#endif
