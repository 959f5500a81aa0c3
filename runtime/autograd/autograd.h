/* The autograd engine's inside (its public face is cnn/autograd.h): a dynamic tape, as in PyTorch.
 * Differentiable ops (ops.h) record a node per call while grad mode is on and some input requires
 * grad, through cnn_ag_record. A node owns its saved tensors
 * (stored as aliases without history, so an op saving its own output makes no cycle) and edges to
 * the nodes or leaves its inputs came from. backward() sorts the reachable nodes iteratively,
 * runs each once with its summed output gradients and accumulates into leaves' .grad. */
#ifndef CNN_AUTOGRAD_ENGINE_H
#define CNN_AUTOGRAD_ENGINE_H

#include <stddef.h>

#include "cnn/autograd.h"
#include "cnn/tensor.h"

typedef struct cnn_node cnn_node;

/* Where one input's gradient goes: the node that produced it (and which of its outputs), or the
 * leaf that accumulates it, or neither (the input needs no gradient). The input's shape is kept
 * so the engine can sum a broadcast gradient back to it. */
typedef struct cnn_edge {
  cnn_node *node; /* owned */
  int output_nr;
  cnn_tensor *leaf; /* owned */
  cnn_dtype dtype;
  int ndim;
  int64_t size[CNN_MAX_DIMS];
} cnn_edge;

/* grad_out[n_outputs] (NULL for an output nobody used: treat as zeros); fills grad_in[n_inputs]
 * with new references (NULL = no gradient). Only inputs with cnn_node_needs_grad need one.
 * A grad_in may have the broadcast shape of the forward; the engine sums it to the input's. */
typedef int (*cnn_backward_fn)(cnn_node *node, cnn_tensor *const *grad_out, cnn_tensor **grad_in);

/* Outputs of one node at most (cnn.autograd.Function's limit too). */
#define CNN_AG_MAX_OUTPUTS 8

/* An op as the engine knows it: its nodes' name and backward, and the size of the typed state the
 * op keeps in each node for its backward (a struct of the op's own, defined beside the backward;
 * 0 for none). free_state releases what that state holds (NULL when it is plain data); it runs
 * once, when the node's saved tensors are freed. */
typedef struct cnn_ag_op {
  const char *name; /* e.g. "MulBackward"; static storage */
  cnn_backward_fn backward;
  size_t state_size;
  void (*free_state)(void *state);
} cnn_ag_op;

struct cnn_node {
  int refcount;
  const char *name; /* op->name, or the name of a cnn.autograd.Function */
  const cnn_ag_op *op;
  int n_inputs, n_outputs;
  cnn_edge *edges; /* n_inputs */
  int n_saved;
  cnn_tensor **saved; /* aliases; NULL after release */
  uint64_t *saved_version;
  bool released;                               /* saved state freed by a backward without retain_graph */
  int topo;                                    /* scratch for the engine */
  _Alignas(max_align_t) unsigned char state[]; /* op->state_size bytes, zeroed at creation */
};

/* Creates a node of op with n_inputs edges taken from inputs (NULL entries allowed), n_outputs
 * (1..CNN_AG_MAX_OUTPUTS) and op's state zeroed. New reference. Returns NULL with the error set only
 * on allocation failure. */
cnn_node *cnn_ag_node_new(const cnn_ag_op *op, int n_inputs, const cnn_tensor *const *inputs, int n_outputs);
/* The node's typed state (op->state_size bytes), or NULL for a NULL node. */
static inline void *cnn_ag_state(cnn_node *n) { return n ? (void *)n->state : NULL; }
cnn_node *cnn_ag_node_retain(cnn_node *n);
void cnn_ag_node_release(cnn_node *n);
bool cnn_node_needs_grad(const cnn_node *n, int input);
/* Saves tensors (aliases + versions). Returns 0 or -1. */
int cnn_ag_save(cnn_node *n, int count, const cnn_tensor *const *ts);
/* The k-th saved tensor (NULL when the record saved NULL there), checked: -1 with "a tensor needed
 * for gradient computation was modified by an in-place operation (version V, saved at version S)",
 * "backward through a graph that was already freed" or, for k past what the record saved, "reads
 * saved tensor k, but its record kept n" errors. */
int cnn_ag_saved(cnn_node *n, int k, cnn_tensor **out);
/* Makes out the output_nr-th output of n: sets grad_fn (retained) and requires_grad. */
void cnn_ag_set_output(cnn_tensor *out, cnn_node *n, int output_nr);

/* True when grad mode is on and any of the n inputs (NULLs allowed) requires grad. */
bool cnn_ag_any_requires(int n, const cnn_tensor *const *inputs);
/* The one way a differentiable op records itself. out is the op's result, or NULL when computing it
 * failed (the error is set). When grad mode is on and some input requires grad, out becomes output
 * 0 of a new node of op over inputs, which saves `saves` (NULL entries allowed) and keeps a copy of
 * *state (op->state_size bytes; state may be NULL when that is 0); otherwise out is left as it is.
 * Returns 0, or -1 with the error set and out released: `return cnn_ag_record(...) ? NULL : out;` */
int cnn_ag_record(cnn_tensor *out, const cnn_ag_op *op, const void *state, int n_inputs,
                  const cnn_tensor *const *inputs, int n_saves, const cnn_tensor *const *saves);
/* In-place ops on tensors with history (ops_arith.c): whether an in-place write of other into t
 * is recorded (grad mode on, and t has history or other requires grad); whether t may be rebased
 * (no view shares its memory, the nodes' saved copies aside; a leaf that requires grad never: -1
 * with the error); and the rebase itself: t takes r's storage and node (r, the op's out-of-place
 * result, released; NULL: -1), or, when r has no history, loses its own. */
bool cnn_op_rebases(const cnn_tensor *t, const cnn_tensor *other);
int cnn_op_rebase_check(const cnn_tensor *t);
int cnn_op_rebase(cnn_tensor *t, cnn_tensor *r);
/* The recorded form of a write of constants into part of t (fill_, copy_ of a constant,
 * t[i] = v, t[mask] = v): t takes where(written, vals, t) after cnn_op_rebase_check, so its old
 * values get a zero gradient where written (PyTorch's FillBackward, CopySlices). written (bool)
 * and vals (t's dtype) broadcast to t's shape. */
int cnn_op_rebase_write(cnn_tensor *t, const cnn_tensor *written, const cnn_tensor *vals);
#endif
