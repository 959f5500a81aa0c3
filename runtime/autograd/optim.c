/* The tensor front end of the optimiser updates (see optim.h): every tensor is checked before the
 * first write, so an error leaves all untouched; then the kernel of kernels/optim.c runs and the
 * storages it wrote get their versions bumped. */
#include "autograd/optim.h"

#include <stdint.h>
#include <stdlib.h>

#include "cnn/error.h"
#include "core/iter.h"

/* t must be a contiguous float32 tensor of the parameter's shape ("what" names it in errors). */
static int check_like(const cnn_tensor *t, const char *what, const cnn_tensor *param) {
  if (!t) return cnn_error_set("missing %s", what);
  if (t->dtype != CNN_FLOAT32)
    return cnn_error_set("%s is %s; optimisers update float32 tensors", what, cnn_dtype_name(t->dtype));
  if (!cnn_tensor_is_contiguous(t)) return cnn_error_set("%s is not contiguous", what);
  if (t != param && !cnn_tensor_same_shape(t, param)) {
    char b1[128], b2[128];
    return cnn_error_set("%s has shape %s but the parameter has shape %s", what,
                         cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
                         cnn_shape_str(param->ndim, param->size, b2, sizeof b2));
  }
  return 0;
}

/* A 1-element float32 step counter, incremented; returns its new value or -1 with the error set. */
static double count_step(cnn_tensor *step) {
  if (!step) return cnn_error_set("missing step");
  if (step->dtype != CNN_FLOAT32 || cnn_tensor_numel(step) != 1)
    return cnn_error_set("step must be a one-element float32 tensor");
  float *sp = cnn_tensor_f32(step);
  *sp = *sp + 1.0f;
  step->storage->version++;
  return *sp;
}

int cnn_optim_sgd(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *buf, bool buf_init, const cnn_sgd_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param)) return -1;
  bool use_buf = c->momentum != 0;
  if (use_buf && check_like(buf, "momentum_buffer", param)) return -1;
  cnn_optim_sgd_f32(cnn_tensor_f32(param), cnn_tensor_f32(grad), use_buf ? cnn_tensor_f32(buf) : NULL,
                    cnn_tensor_numel(param), buf_init, c);
  if (use_buf) buf->storage->version++;
  param->storage->version++;
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

int cnn_optim_sgd_many(int count, cnn_tensor *const *param, cnn_tensor *const *grad, cnn_tensor *const *buf,
                       const cnn_sgd_config *c) {
  const bool use_buf = c->momentum != 0;
  int rc = 1;
  cnn_sgd_slice *s = malloc(sizeof *s * (size_t)(count ? count : 1));
  void **written = malloc(sizeof *written * (size_t)(2 * count + 1));
  if (!s || !written) goto out;
  int nw = 0;
  for (int k = 0; k < count; k++) {
    if (check_like(param[k], "parameter", param[k]) || check_like(grad[k], "gradient", param[k]) ||
        (use_buf && check_like(buf[k], "momentum_buffer", param[k])))
      goto out; /* the caller's one-at-a-time run raises it */
    written[nw++] = param[k]->storage;
    if (use_buf) written[nw++] = buf[k]->storage;
    s[k] = (cnn_sgd_slice){cnn_tensor_f32(param[k]), use_buf ? cnn_tensor_f32(buf[k]) : NULL, cnn_tensor_f32(grad[k]),
                           cnn_tensor_numel(param[k]), false};
  }
  qsort(written, (size_t)nw, sizeof *written, cmp_ptr);
  for (int k = 1; k < nw; k++)
    if (written[k] == written[k - 1]) goto out;
  for (int k = 0; k < count; k++) {
    void *g = grad[k]->storage;
    if (bsearch(&g, written, (size_t)nw, sizeof *written, cmp_ptr)) goto out;
  }
  cnn_optim_sgd_many_f32(count, s, c);
  for (int k = 0; k < count; k++) {
    param[k]->storage->version++;
    if (use_buf) buf[k]->storage->version++;
  }
  rc = 0;
out:
  if (rc) cnn_error_clear(); /* a check's message: the one-at-a-time run sets its own */
  free(s);
  free(written);
  return rc;
}

int cnn_optim_adam(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *exp_avg, cnn_tensor *exp_avg_sq,
                   cnn_tensor *max_exp_avg_sq, cnn_tensor *step, const cnn_adam_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) ||
      check_like(exp_avg, "exp_avg", param) || check_like(exp_avg_sq, "exp_avg_sq", param))
    return -1;
  if (c->amsgrad && check_like(max_exp_avg_sq, "max_exp_avg_sq", param)) return -1;
  const double t = count_step(step); /* float32, as in PyTorch */
  if (t < 0) return -1;
  cnn_optim_adam_f32(cnn_tensor_f32(param), cnn_tensor_f32(grad), cnn_tensor_f32(exp_avg), cnn_tensor_f32(exp_avg_sq),
                     c->amsgrad ? cnn_tensor_f32(max_exp_avg_sq) : NULL, cnn_tensor_numel(param), t, c);
  param->storage->version++;
  exp_avg->storage->version++;
  exp_avg_sq->storage->version++;
  if (c->amsgrad) max_exp_avg_sq->storage->version++;
  return 0;
}

int cnn_optim_rmsprop(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *square_avg, cnn_tensor *grad_avg,
                      cnn_tensor *momentum_buffer, cnn_tensor *step, const cnn_rmsprop_config *c) {
  const bool use_buf = c->momentum > 0;
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) ||
      check_like(square_avg, "square_avg", param))
    return -1;
  if (c->centered && check_like(grad_avg, "grad_avg", param)) return -1;
  if (use_buf && check_like(momentum_buffer, "momentum_buffer", param)) return -1;
  if (count_step(step) < 0) return -1;
  cnn_optim_rmsprop_f32(cnn_tensor_f32(param), cnn_tensor_f32(grad), cnn_tensor_f32(square_avg),
                        c->centered ? cnn_tensor_f32(grad_avg) : NULL, use_buf ? cnn_tensor_f32(momentum_buffer) : NULL,
                        cnn_tensor_numel(param), c);
  param->storage->version++;
  square_avg->storage->version++;
  if (c->centered) grad_avg->storage->version++;
  if (use_buf) momentum_buffer->storage->version++;
  return 0;
}

int cnn_optim_adagrad(cnn_tensor *param, const cnn_tensor *grad, cnn_tensor *sum, cnn_tensor *step,
                      const cnn_adagrad_config *c) {
  if (check_like(param, "parameter", param) || check_like(grad, "gradient", param) || check_like(sum, "sum", param))
    return -1;
  const double t = count_step(step);
  if (t < 0) return -1;
  cnn_optim_adagrad_f32(cnn_tensor_f32(param), cnn_tensor_f32(grad), cnn_tensor_f32(sum), cnn_tensor_numel(param), t,
                        c);
  param->storage->version++;
  sum->storage->version++;
  return 0;
}
