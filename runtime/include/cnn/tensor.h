/** Tensors, after Torch's TH. A reference-counted storage (bytes + a version counter shared by
 * every view) and a view of it (dtype, sizes, strides and offset in elements). View functions only edit
 * the view; nothing here records autograd history (see ops.h for the differentiable layer).
 * Dimensions and indices are 0-based in C; the bindings translate Lua's 1-based ones.
 * Functions returning cnn_tensor * return a new reference, or NULL with the error set. */
#ifndef CNN_TENSOR_H
#define CNN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The most dimensions a tensor has. */
#define CNN_MAX_DIMS 16

/** The element types: 32-bit floats, 64-bit integers (indices, labels), bool (stored one byte an
 * element, always 0 or 1: every write converts, nonzero -> 1) and uint8 (images, datasets). */
typedef enum cnn_dtype { CNN_FLOAT32 = 0, CNN_INT64 = 1, CNN_BOOL = 2, CNN_UINT8 = 3 } cnn_dtype;
#define CNN_NDTYPES 4

/** The bytes behind one or more views, counted by reference. Read-only for users. */
typedef struct cnn_storage {
  int refcount;
  uint64_t version; /* bumped by every in-place write through any view */
  size_t nbytes;
  void *data; /* from the runtime's allocator */
  int saved;  /* how many of the references are autograd's saved copies (the rest: views) */
} cnn_storage;

/* The autograd layer's graph node (autograd.h). The core holds a tensor's grad_fn without knowing
 * its layout: it drops and names it through hooks the autograd layer installs. */
struct cnn_node;

/** A tensor: a view (dtype, sizes, strides, offset) of a storage, plus its autograd state. Read the
 * fields freely; change them only through the functions here (requires_grad on a leaf may be set
 * directly, as `t.requires_grad = true` does in PyTorch). */
typedef struct cnn_tensor {
  int refcount;
  cnn_dtype dtype;
  int ndim; /* 0 for a 0-d (scalar) tensor */
  int64_t size[CNN_MAX_DIMS];
  int64_t stride[CNN_MAX_DIMS]; /* in elements; 0 on expanded dims */
  int64_t offset;               /* in elements, into storage */
  cnn_storage *storage;
  /* autograd: requires_grad is the user's flag on leaves and true on every recorded output */
  bool requires_grad;
  struct cnn_tensor *grad;  /* owned by the tensor; NULL until a backward reaches this leaf */
  struct cnn_node *grad_fn; /* owned by the tensor; NULL for leaves */
  int output_nr;            /* which output of grad_fn this is */
  /* a 0-d tensor standing for a number of the caller's language (a Lua number or boolean): it
   * promotes as PyTorch's Python scalars do, below 0-d tensors (see cnn_dtype_result) */
  bool wrapped_number;
  /* a copy autograd keeps for a backward (a node's saved tensor): counted in storage->saved */
  bool saved_copy;
} cnn_tensor;

/** The size of one element of dt in bytes (4, 8, or 1 for bool and uint8). */
size_t cnn_dtype_size(cnn_dtype dt);
/** The name of dt: "float32", "int64", "bool" or "uint8".
 * Ownership: returns a static string. */
const char *cnn_dtype_name(cnn_dtype dt);
/** True for the floating dtype (float32). */
static inline bool cnn_dtype_is_float(cnn_dtype dt) { return dt == CNN_FLOAT32; }
/** PyTorch 1.13's promotion of two dtypes (bool < uint8 < int64 < float32): the higher one. */
cnn_dtype cnn_dtype_promote(cnn_dtype a, cnn_dtype b);
/** The dtype of an elementwise op on n tensors, as torch.result_type: the promotion of the tensors
 * that have dimensions, raised by the 0-d ones only when these are of a higher category
 * (bool < integer < float), then likewise by the wrapped numbers: uint8 (3) + int64 0-d gives
 * uint8, + float32 0-d gives float32; a 0-d uint8 + a wrapped int64 number gives uint8. */
cnn_dtype cnn_dtype_result(int n, const cnn_tensor *const *ts);

/** A new reference to t (its count goes up by one).
 * Ownership: returns t itself with one more reference, which the caller releases. */
cnn_tensor *cnn_tensor_retain(cnn_tensor *t);
/** Gives up one reference to t; NULL is a no-op. Releasing the last reference frees the tensor, its
 * grad and grad_fn, and the storage once no other view holds it.
 * Ownership: takes the caller's reference (t must not be used afterwards unless another is held). */
void cnn_tensor_release(cnn_tensor *t);

/** The name of t's grad_fn ("MulBackward"), or NULL for a leaf.
 * Ownership: returns a static string. */
const char *cnn_tensor_grad_fn_name(const cnn_tensor *t);

/** New contiguous tensors of the given shape (ndim sizes; ndim 0 for a scalar) and dtype: empty
 * leaves the values unset, zeros fills them with 0, full with value. Sizes are checked (negative,
 * product overflow, memory). */
cnn_tensor *cnn_tensor_empty(cnn_dtype dt, int ndim, const int64_t *size);
cnn_tensor *cnn_tensor_zeros(cnn_dtype dt, int ndim, const int64_t *size);
cnn_tensor *cnn_tensor_full(cnn_dtype dt, int ndim, const int64_t *size, double value);
/** A 0-d tensor holding value. full and scalar fail (NULL, error set) when value does not convert
 * to dt: NaN or out of range for int64, as PyTorch refuses it. */
cnn_tensor *cnn_tensor_scalar(cnn_dtype dt, double value);
/** full and scalar with an integer value, exact for int64 (a double holds only 53 bits). */
cnn_tensor *cnn_tensor_full_i64(cnn_dtype dt, int ndim, const int64_t *size, int64_t value);
cnn_tensor *cnn_tensor_scalar_i64(int64_t value);
/** An uninitialised contiguous tensor of t's dtype and shape. */
cnn_tensor *cnn_tensor_empty_like(const cnn_tensor *t);
/** The 1-d tensor start, start + step, ... up to end (excluded), as torch.arange; the int64 form
 * is exact over the whole int64 range. */
cnn_tensor *cnn_tensor_arange(double start, double end, double step, cnn_dtype dt);
cnn_tensor *cnn_tensor_arange_i64(int64_t start, int64_t end, int64_t step);
/** n float32 values evenly spaced from start to end (both included), as torch.linspace. */
cnn_tensor *cnn_tensor_linspace(double start, double end, int64_t n);
/** linspace with an integer dtype (int64 or uint8), as PyTorch computes it: the ends truncated toward
 * zero, the step and each value in double, each value truncated; start and end must fit dt. */
cnn_tensor *cnn_tensor_linspace_int(double start, double end, int64_t n, cnn_dtype dt);
/** The (n, m) float32 identity: ones on the diagonal, zeros elsewhere. */
cnn_tensor *cnn_tensor_eye(int64_t n, int64_t m);
/** Validates a shape: ndim in 0..CNN_MAX_DIMS, sizes >= 0, the element count fits; stores it in
 * *numel_out (when not NULL). Returns 0 or -1 with the error set. */
int cnn_shape_check(int ndim, const int64_t *size, int64_t *numel_out);

/** The number of elements (the product of the sizes; 1 for a 0-d tensor). */
int64_t cnn_tensor_numel(const cnn_tensor *t);
/** 0 when t is float32, else -1 with the error "expected a float32 <what>, got <dtype>". */
int cnn_tensor_need_float(const cnn_tensor *t, const char *what);
/** True when the elements are laid out row-major without gaps. */
bool cnn_tensor_is_contiguous(const cnn_tensor *t);
/** True when a and b have the same sizes. */
bool cnn_tensor_same_shape(const cnn_tensor *a, const cnn_tensor *b);
/** The address of element 0 of the view (storage data + offset), typed for each dtype by f32,
 * i64 and u8 (uint8 and bool; a bool byte is 0 or 1). Walk it with t->stride, or make the tensor
 * contiguous first.
 * Ownership: returns a pointer into t's storage: valid while some view of the storage is alive. */
void *cnn_tensor_data(const cnn_tensor *t);
static inline float *cnn_tensor_f32(const cnn_tensor *t) { return (float *)cnn_tensor_data(t); }
static inline int64_t *cnn_tensor_i64(const cnn_tensor *t) { return (int64_t *)cnn_tensor_data(t); }
static inline uint8_t *cnn_tensor_u8(const cnn_tensor *t) { return (uint8_t *)cnn_tensor_data(t); }
/** Reads one element by 0-based multi-index (t->ndim entries; no bounds check: callers check), as a
 * double; get_i64 exactly, for int64 tensors (whose values may exceed a double's 53-bit mantissa). */
double cnn_tensor_get(const cnn_tensor *t, const int64_t *idx);
int64_t cnn_tensor_get_i64(const cnn_tensor *t, const int64_t *idx);
/** Element i of the flattened (row-major) view, for any strides (no bounds check); get_flat_i64
 * exactly, for int64 tensors. */
double cnn_tensor_get_flat(const cnn_tensor *t, int64_t i);
int64_t cnn_tensor_get_flat_i64(const cnn_tensor *t, int64_t i);
/** Normalises a possibly negative dim (Python style, -1 = last) against ndim; for insertion
 * (unsqueeze) pass ndim + 1. Returns the dim, or -1 with the error set when out of range. */
int cnn_dim_wrap(int dim, int ndim);

/** Views: new tensors sharing t's storage and version counter, without autograd history (the
 * differentiable versions are ops.h's cnn_op_*). alias is the whole of t; select removes dim,
 * keeping one index; narrow keeps length indices from start; transpose swaps two dims; permute
 * reorders all of them (dims has t->ndim entries); unsqueeze inserts a dim of size 1; squeeze
 * removes dim if its size is 1 (every size-1 dim when dim is CNN_ALL_DIMS); expand broadcasts
 * size-1 dims to size (ndim entries, -1 keeps a size) with stride 0. */
cnn_tensor *cnn_tensor_alias(const cnn_tensor *t);
cnn_tensor *cnn_tensor_select(const cnn_tensor *t, int dim, int64_t index);
cnn_tensor *cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length);
cnn_tensor *cnn_tensor_transpose(const cnn_tensor *t, int d0, int d1);
cnn_tensor *cnn_tensor_permute(const cnn_tensor *t, const int *dims);
cnn_tensor *cnn_tensor_unsqueeze(const cnn_tensor *t, int dim);
cnn_tensor *cnn_tensor_squeeze(const cnn_tensor *t, int dim);
cnn_tensor *cnn_tensor_expand(const cnn_tensor *t, int ndim, const int64_t *size);
/** t with a new shape (ndim sizes, one of which may be -1: inferred) as a view; fails when t's
 * strides make that impossible (reshape then copies). */
cnn_tensor *cnn_tensor_view(const cnn_tensor *t, int ndim, const int64_t *size);
/** t with a new shape: a view when possible, else a contiguous copy. */
cnn_tensor *cnn_tensor_reshape(const cnn_tensor *t, int ndim, const int64_t *size);
/** t itself (one more reference) when already contiguous, else a contiguous copy. */
cnn_tensor *cnn_tensor_contiguous(const cnn_tensor *t);
/** Always a fresh contiguous copy of t. */
cnn_tensor *cnn_tensor_clone(const cnn_tensor *t);
/** t converted to dtype dt: a copy, or t itself (one more reference) when it has that dtype. */
cnn_tensor *cnn_tensor_to_dtype(const cnn_tensor *t, cnn_dtype dt);

/** 0 when t may be written: -1 with the error set when its elements share memory (an expanded,
 * stride-0 dim), which every write below refuses, as PyTorch does (the result would depend on the
 * order of the writes). */
int cnn_tensor_check_writable(const cnn_tensor *t);
/** Writes in place: dst keeps its view; src broadcasts to dst's shape, its dtype converts. Both
 * bump the storage's version. fill_ into int64 refuses NaN and values outside int64; fill_i64_ is
 * exact for int64. Return 0 or -1 with the error set.
 * Conversions are PyTorch's: to bool, nonzero (NaN included) -> 1; float to an integer type
 * truncates toward zero (NaN -> 0, float to int64 saturates); to uint8, modulo 256 (300 -> 44,
 * -1 -> 255, as the int64 value's low byte). */
int cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src);
/** fill_ checks that value fits t's dtype as PyTorch does ("cannot be converted to type uint8
 * without overflow": uint8 takes a (float) value in 0..255, and fill_i64_ an integer in -255..255,
 * negative ones wrapping; int64 refuses NaN); bool takes any value (nonzero -> true). */
int cnn_tensor_fill_(cnn_tensor *t, double value);
int cnn_tensor_fill_i64_(cnn_tensor *t, int64_t value);

/** As a dim argument: every dimension (a reduction over all of them, squeeze of every size-1 dim). */
#define CNN_ALL_DIMS (-1000)

#ifdef __cplusplus
}
#endif
#endif
