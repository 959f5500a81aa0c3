/* Tensors, the TH model: a reference-counted storage (bytes + a version counter shared by every
 * view) and a view of it (dtype, sizes, strides and offset in elements). View functions only edit
 * the view; nothing here records autograd history (see ops.h for the differentiable layer).
 * Dimensions and indices are 0-based in C; the bindings translate Lua's 1-based ones.
 * Functions returning cnn_tensor * return a new reference, or NULL with the error set. */
#ifndef CNN_TENSOR_H
#define CNN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CNN_MAX_DIMS 16

typedef enum cnn_dtype { CNN_FLOAT32 = 0, CNN_INT64 = 1 } cnn_dtype;

typedef struct cnn_storage {
  int refcount;
  uint64_t version; /* bumped by every in-place write through any view */
  size_t nbytes;
  void *data; /* from cnn_alloc */
} cnn_storage;

/* The autograd layer's graph node (autograd.h). The core holds a tensor's grad_fn without knowing
 * its layout: it drops and names it through the hooks the autograd layer installs. */
struct cnn_node;

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
  struct cnn_tensor *grad;  /* owned; NULL until a backward reaches this leaf */
  struct cnn_node *grad_fn; /* owned (released through the hooks below); NULL for leaves */
  int output_nr;            /* which output of grad_fn this is */
} cnn_tensor;

size_t cnn_dtype_size(cnn_dtype dt);
const char *cnn_dtype_name(cnn_dtype dt); /* "float32", "int64" */

/* Lifetime. release(NULL) is a no-op. Releasing the last reference frees grad, grad_fn, storage. */
cnn_tensor *cnn_tensor_retain(cnn_tensor *t);
void cnn_tensor_release(cnn_tensor *t);

/* What the core may do with a grad_fn: drop a reference, read its name (for printing). The autograd
 * layer installs these before it makes its first node, so the core never links against it. */
typedef struct cnn_grad_fn_hooks {
  void (*release)(struct cnn_node *node);
  const char *(*name)(const struct cnn_node *node);
} cnn_grad_fn_hooks;
void cnn_tensor_set_grad_fn_hooks(const cnn_grad_fn_hooks *hooks);
/* The name of t's grad_fn ("MulBackward"), or NULL for a leaf. */
const char *cnn_tensor_grad_fn_name(const cnn_tensor *t);

/* Creation: contiguous, fresh storage. Sizes are checked (negative, product overflow, memory). */
cnn_tensor *cnn_tensor_empty(cnn_dtype dt, int ndim, const int64_t *size);
cnn_tensor *cnn_tensor_zeros(cnn_dtype dt, int ndim, const int64_t *size);
cnn_tensor *cnn_tensor_full(cnn_dtype dt, int ndim, const int64_t *size, double value);
cnn_tensor *cnn_tensor_scalar(cnn_dtype dt, double value); /* 0-d */
cnn_tensor *cnn_tensor_empty_like(const cnn_tensor *t);    /* same dtype and shape, contiguous */
cnn_tensor *cnn_tensor_arange(double start, double end, double step, cnn_dtype dt);
cnn_tensor *cnn_tensor_linspace(double start, double end, int64_t n);
cnn_tensor *cnn_tensor_eye(int64_t n, int64_t m);
/* Validates a shape: ndim in range, sizes >= 0, numel fits; returns 0 or -1 with error set. */
int cnn_shape_check(int ndim, const int64_t *size, int64_t *numel_out);

/* Inspection. */
int64_t cnn_tensor_numel(const cnn_tensor *t);
bool cnn_tensor_is_contiguous(const cnn_tensor *t);
bool cnn_tensor_same_shape(const cnn_tensor *a, const cnn_tensor *b);
/* Pointer to element 0 of the view (storage data + offset). */
void *cnn_tensor_data(const cnn_tensor *t);
static inline float *cnn_tensor_f32(const cnn_tensor *t) { return (float *)cnn_tensor_data(t); }
static inline int64_t *cnn_tensor_i64(const cnn_tensor *t) { return (int64_t *)cnn_tensor_data(t); }
/* Reads one element by 0-based multi-index (no bounds check: callers check). */
double cnn_tensor_get(const cnn_tensor *t, const int64_t *idx);
/* Element of the flattened (row-major) view, for any strides. */
double cnn_tensor_get_flat(const cnn_tensor *t, int64_t i);
/* The same, exact for int64 tensors (whose values may exceed a double's 53-bit mantissa). */
int64_t cnn_tensor_get_flat_i64(const cnn_tensor *t, int64_t i);
int64_t cnn_tensor_get_i64(const cnn_tensor *t, const int64_t *idx);
/* Normalises a possibly negative dim (Python style, -1 = last) against ndim; for insertion
 * (unsqueeze) pass ndim + 1. Returns -1 with the error set when out of range. */
int cnn_dim_wrap(int dim, int ndim);

/* Views: share storage and version counter; result has no autograd history. */
cnn_tensor *cnn_tensor_alias(const cnn_tensor *t);
cnn_tensor *cnn_tensor_select(const cnn_tensor *t, int dim, int64_t index);
cnn_tensor *cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length);
cnn_tensor *cnn_tensor_transpose(const cnn_tensor *t, int d0, int d1);
cnn_tensor *cnn_tensor_permute(const cnn_tensor *t, const int *dims); /* t->ndim entries */
cnn_tensor *cnn_tensor_unsqueeze(const cnn_tensor *t, int dim);
cnn_tensor *cnn_tensor_squeeze(const cnn_tensor *t, int dim); /* dim < 0 (CNN_ALL_DIMS): all size-1 */
cnn_tensor *cnn_tensor_expand(const cnn_tensor *t, int ndim, const int64_t *size); /* -1 keeps */
/* size may contain one -1, inferred. view fails when strides make it impossible. */
cnn_tensor *cnn_tensor_view(const cnn_tensor *t, int ndim, const int64_t *size);
/* view when possible, else a contiguous copy. */
cnn_tensor *cnn_tensor_reshape(const cnn_tensor *t, int ndim, const int64_t *size);
/* t itself (retained) when already contiguous, else a contiguous copy. */
cnn_tensor *cnn_tensor_contiguous(const cnn_tensor *t);
cnn_tensor *cnn_tensor_clone(const cnn_tensor *t);                  /* always a fresh contiguous copy */
cnn_tensor *cnn_tensor_to_dtype(const cnn_tensor *t, cnn_dtype dt); /* copy (retain if same) */

/* Writes: dst keeps its view; src broadcasts to dst's shape, dtype converts. Return 0 or -1. */
int cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src);
int cnn_tensor_fill_(cnn_tensor *t, double value);

#define CNN_ALL_DIMS (-1000)

#endif
