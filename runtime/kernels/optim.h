/* Optimiser update kernels on float arrays, no tensors (the tensor front end is optim.h): SGD,
 * Adam/AdamW, RMSprop and Adagrad over one parameter of n elements, PyTorch 1.13's single-tensor
 * rules. Each writes the parameter and its state arrays in place. */
#ifndef CNN_KERNELS_OPTIM_H
#define CNN_KERNELS_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cnn_sgd_config {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
} cnn_sgd_config;

typedef struct cnn_adam_config {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad;
  bool decoupled; /* AdamW: p *= 1 - lr*wd instead of adding wd*p to the gradient */
  bool maximize;
} cnn_adam_config;

typedef struct cnn_rmsprop_config {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
} cnn_rmsprop_config;

typedef struct cnn_adagrad_config {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;
} cnn_adagrad_config;

/* SGD with momentum:  d = g (+ wd*p);  buf = momentum*buf + (1-dampening)*d  (buf = d when
 * buf_init);  d = nesterov ? d + momentum*buf : buf;  p -= lr*d.  buf is NULL when momentum == 0. */
void cnn_optim_sgd_f32(float *p, const float *g, float *buf, int64_t n, bool buf_init, const cnn_sgd_config *c);
/* One parameter's arrays for cnn_optim_sgd_many_f32. */
typedef struct cnn_sgd_slice {
  float *p, *buf; /* buf NULL when momentum == 0 */
  const float *g;
  int64_t n;
  bool buf_init;
} cnn_sgd_slice;
/* cnn_optim_sgd_f32 over `count` parameters as one parallel loop (the same bits as one call each;
 * the arrays of different slices must not overlap). */
void cnn_optim_sgd_many_f32(int count, const cnn_sgd_slice *s, const cnn_sgd_config *c);
/* Adam / AdamW at step t (the incremented counter: bias corrections 1 - beta^t). vmax is read and
 * written only when c->amsgrad. */
void cnn_optim_adam_f32(float *p, const float *g, float *m, float *v, float *vmax, int64_t n, double t,
                        const cnn_adam_config *c);
/* RMSprop:  g (+ wd*p);  sq = alpha*sq + (1-alpha) g^2;  centered: ga = alpha*ga + (1-alpha) g,
 * avg = sqrt(sq - ga^2) + eps, else avg = sqrt(sq) + eps;  momentum > 0: buf = momentum*buf + g/avg,
 * p -= lr*buf, else p -= lr*g/avg. ga is used only when c->centered, buf only when momentum > 0. */
void cnn_optim_rmsprop_f32(float *p, const float *g, float *sq, float *ga, float *buf, int64_t n,
                           const cnn_rmsprop_config *c);
/* Adagrad at step t:  g (+ wd*p);  sum += g^2;  p -= clr * g / (sqrt(sum) + eps) with
 * clr = lr / (1 + (t-1)*lr_decay). */
void cnn_optim_adagrad_f32(float *p, const float *g, float *sum, int64_t n, double t, const cnn_adagrad_config *c);

#endif
