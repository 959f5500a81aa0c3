/* What the core may do with a tensor's grad_fn, whose layout it does not know: drop a reference,
 * read its name (for printing). The autograd layer installs these before it makes its first node,
 * so the core never links against it. And two things the autograd layer may do inside tensors.
 * Internal: not part of the installed C API. */
#ifndef CNN_TENSOR_HOOKS_H
#define CNN_TENSOR_HOOKS_H

#include "cnn/tensor.h"

typedef struct cnn_grad_fn_hooks {
  void (*release)(struct cnn_node *node);
  const char *(*name)(const struct cnn_node *node);
} cnn_grad_fn_hooks;
void cnn_tensor_set_grad_fn_hooks(const cnn_grad_fn_hooks *hooks);

/* t becomes a view of src's storage with src's offset and strides (t's shape and dtype are src's:
 * the caller checks); t's old storage loses t's reference, and t is no saved copy any more. The autograd layer's in-place op on a
 * tensor with history (ops_arith.c) makes t its out-of-place result this way. */
void cnn_tensor_rebind(cnn_tensor *t, const cnn_tensor *src);

/* An alias of t (as cnn_tensor_alias: no history) that autograd keeps for a backward: counted in
 * its storage's `saved` while it lives, which the rebase of an in-place op sets apart from views.
 * New reference, or NULL with the error set. */
cnn_tensor *cnn_tensor_saved_alias(const cnn_tensor *t);

#endif
