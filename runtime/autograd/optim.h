/* Optimiser updates (SGD, Adam/AdamW, RMSprop, Adagrad) on tensors, one call per parameter
 * (PyTorch 1.13's single-tensor rules), around the kernels of kernels/optim.h. Each call checks
 * every tensor, writes the parameter and its state buffers in place and bumps their versions; it records no autograd history and does not refuse leaves
 * (updating leaves is its purpose).
 * Every tensor must be contiguous float32 with the parameter's number of elements. */
#ifndef CNN_OPTIM_H
#define CNN_OPTIM_H

#include "cnn/tensor.h"
#include "kernels/optim.h"

/* SGD with momentum:  d = g (+ wd*p);  buf = momentum*buf + (1-dampening)*d  (buf = d when
 * buf_init: the first step after the buffer was created);  d = nesterov ? d + momentum*buf : buf;
 * p -= lr*d.  buf is NULL when momentum == 0. Returns 0 or -1 with the error set. */
int cnn_optim_sgd(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *buf, bool buf_init, const cnn_sgd_config *c);

/* SGD over `count` parameters at once, every momentum buffer made earlier (buf_init false; buf[k]
 * NULL when momentum == 0): the same bits as cnn_optim_sgd on each in turn, as one parallel loop.
 * Returns 0, or 1 with nothing written when they cannot run together: a tensor cnn_optim_sgd would
 * refuse, a strided gradient, or a storage written through two of them or read as a gradient
 * while written (the caller then runs them one at a time, which also raises the errors). */
int cnn_optim_sgd_many(int count, cnn_tensor *const *param, cnn_tensor *const *grad, cnn_tensor *const *buf,
                       const cnn_sgd_config *c);

/* Adam / AdamW over one tensor. step is the state's 1-element float32 counter: incremented here,
 * then t = step gives the bias corrections 1 - beta^t. max_exp_avg_sq is used (and required)
 * only when c->amsgrad. Returns 0 or -1 with the error set. */
int cnn_optim_adam(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *exp_avg, cnn_tensor *exp_avg_sq,
                   cnn_tensor *max_exp_avg_sq, cnn_tensor *step, const cnn_adam_config *c);

/* RMSprop:  g (+ wd*p);  sq = alpha*sq + (1-alpha) g^2;  centered: ga = alpha*ga + (1-alpha) g,
 * avg = sqrt(sq - ga^2) + eps, else avg = sqrt(sq) + eps;  momentum > 0: buf = momentum*buf + g/avg,
 * p -= lr*buf, else p -= lr*g/avg.  grad_avg is used (and required) only when c->centered,
 * momentum_buffer only when c->momentum > 0. step (1-element float32) is incremented, as PyTorch
 * counts it, though the update does not read it. Returns 0 or -1 with the error set. */
int cnn_optim_rmsprop(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *square_avg, cnn_tensor *grad_avg,
                      cnn_tensor *momentum_buffer, cnn_tensor *step, const cnn_rmsprop_config *c);

/* Adagrad:  step += 1;  g (+ wd*p);  sum += g^2;  p -= clr * g / (sqrt(sum) + eps) with
 * clr = lr / (1 + (step-1)*lr_decay) from the incremented float32 step. Returns 0 or -1 with the
 * error set. */
int cnn_optim_adagrad(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *sum, cnn_tensor *step,
                      const cnn_adagrad_config *c);

#endif
