/** Autograd, as in PyTorch: a dynamic tape. While grad mode is on, every differentiable op (ops.h,
 * ops_nn.h, ops_conv.h) whose input requires grad records a graph node in its result's grad_fn;
 * cnn_ag_backward then runs the graph backwards from a result and accumulates gradients into the
 * grad field of the leaves (tensors whose requires_grad the caller set). A node computes only the
 * gradients some input needs. In-place ops bump a version counter: a tensor a graph saved and that
 * changed since is an error at backward, never a wrong gradient. */
#ifndef CNN_AUTOGRAD_H
#define CNN_AUTOGRAD_H

#include <stdbool.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Grad mode, as torch.set_grad_enabled: while off, the ops record nothing (inference, optimiser
 * updates). Per thread; on by default. set_enabled returns the previous value, to restore it. */
bool cnn_ag_set_enabled(bool on);
bool cnn_ag_is_enabled(void);
/** True when an op on t would be recorded: grad mode is on and t requires grad. */
bool cnn_ag_requires(const cnn_tensor *t);

/** Runs backward from roots[i] with seeds grads[i] (a NULL seed means ones, for a one-element
 * root such as a loss) and adds each reachable leaf's gradient into its grad field (a tensor the
 * leaf owns, created by the first backward; release it and set the field to NULL to start again,
 * as zero_grad does). Frees the graph's saved tensors unless retain_graph. Returns 0 or -1 with the
 * error set. */
int cnn_ag_backward(int n_roots, cnn_tensor *const *roots, cnn_tensor *const *grads, bool retain_graph);

/** A tensor sharing t's data with no history and requires_grad false. */
cnn_tensor *cnn_ag_detach(const cnn_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
