/* optim.c: the SGD, Adam/AdamW, RMSprop and Adagrad kernels against values worked out by hand on
 * small tensors,
 * against a plain double-precision reference loop on a tensor big enough to run on threads,
 * and the checks: a refused call names the problem and leaves every tensor untouched. */
#include "autograd/optim.h"
#include "check.h"
#include "cnn/error.h"
#include "cnn/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cnn_tensor *vec(int64_t n, const float *v) {
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  memcpy(cnn_tensor_f32(t), v, (size_t)n * sizeof(float));
  return t;
}

static void expect(const char *name, const cnn_tensor *t, const double *want, double rtol) {
  int64_t n = cnn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double got = cnn_tensor_f32(t)[i];
    if (!(fabs(got - want[i]) <= 1e-7 + rtol * fabs(want[i]))) {
      fprintf(stderr, "%s[%lld]: got %.9g, want %.9g\n", name, (long long)i, got, want[i]);
      failures++;
      return;
    }
  }
}

static void test_sgd_hand(void) {
  const float p0[] = {1, -2}, g0[] = {0.5f, 1};
  /* plain: p - 0.1 g */
  cnn_tensor *p = vec(2, p0), *g = vec(2, g0);
  cnn_sgd_config c = {.lr = 0.1};
  uint64_t v = p->storage->version;
  CHECK(cnn_optim_sgd(p, g, NULL, false, &c) == 0);
  expect("sgd", p, (double[]){0.95, -2.1}, 1e-6);
  CHECK(p->storage->version == v + 1);
  cnn_tensor_release(p);

  /* weight decay 0.1: d = g + 0.1 p = (0.6, 0.8); p - 0.1 d = (0.94, -2.08) */
  p = vec(2, p0);
  c.weight_decay = 0.1;
  CHECK(cnn_optim_sgd(p, g, NULL, false, &c) == 0);
  expect("sgd wd", p, (double[]){0.94, -2.08}, 1e-6);
  cnn_tensor_release(p);

  /* maximize: p + 0.1 g */
  p = vec(2, p0);
  c = (cnn_sgd_config){.lr = 0.1, .maximize = true};
  CHECK(cnn_optim_sgd(p, g, NULL, false, &c) == 0);
  expect("sgd maximize", p, (double[]){1.05, -1.9}, 1e-6);
  cnn_tensor_release(p);

  /* momentum 0.9, dampening 0.5: step 1 buf = g (no dampening on init), p = p - 0.1 g = (0.95, -2.1);
   * step 2 buf = 0.9 g + 0.5 g = 1.4 g = (0.7, 1.4), p = (0.95 - 0.07, -2.1 - 0.14) */
  p = vec(2, p0);
  cnn_tensor *buf = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2});
  c = (cnn_sgd_config){.lr = 0.1, .momentum = 0.9, .dampening = 0.5};
  CHECK(cnn_optim_sgd(p, g, buf, true, &c) == 0);
  expect("buf 1", buf, (double[]){0.5, 1}, 1e-6);
  expect("momentum 1", p, (double[]){0.95, -2.1}, 1e-6);
  CHECK(cnn_optim_sgd(p, g, buf, false, &c) == 0);
  expect("buf 2", buf, (double[]){0.7, 1.4}, 1e-6);
  expect("momentum 2", p, (double[]){0.88, -2.24}, 1e-6);
  cnn_tensor_release(p);

  /* nesterov: step 1 buf = g, d = g + 0.9 buf = 1.9 g; p = p - 0.1 * 1.9 g = (0.905, -2.19) */
  p = vec(2, p0);
  c = (cnn_sgd_config){.lr = 0.1, .momentum = 0.9, .nesterov = true};
  CHECK(cnn_optim_sgd(p, g, buf, true, &c) == 0);
  expect("nesterov", p, (double[]){0.905, -2.19}, 1e-6);
  cnn_tensor_release(p);
  cnn_tensor_release(buf);
  cnn_tensor_release(g);
}

static void test_adam_hand(void) {
  const float p0[] = {1, -2}, g0[] = {0.5f, -4};
  cnn_tensor *p = vec(2, p0), *g = vec(2, g0);
  cnn_tensor *m = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2}),
             *v = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2});
  cnn_tensor *vmax = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2}), *step = cnn_tensor_scalar(CNN_FLOAT32, 0);
  /* step 1: m = 0.1 g, v = 0.001 g^2; bias-corrected m/(1-0.9) = g, v/(1-0.999) = g^2, so
   * p -= lr g / (|g| + eps) = lr sign(g): (0.9, -1.9) */
  cnn_adam_config c = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  CHECK(cnn_optim_adam(p, g, m, v, NULL, step, &c) == 0);
  expect("adam p", p, (double[]){0.9, -1.9}, 1e-6);
  expect("adam m", m, (double[]){0.05, -0.4}, 1e-6);
  expect("adam v", v, (double[]){0.00025, 0.016}, 1e-6);
  CHECK(cnn_tensor_f32(step)[0] == 1);

  /* AdamW, weight decay 0.5, from a fresh state: p = p (1 - 0.1*0.5) - 0.1 sign(g) = (0.85, -1.8) */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(m, 0);
  cnn_tensor_fill_(v, 0);
  cnn_tensor_fill_(step, 0);
  c.weight_decay = 0.5;
  c.decoupled = true;
  CHECK(cnn_optim_adam(p, g, m, v, NULL, step, &c) == 0);
  expect("adamw p", p, (double[]){0.85, -1.8}, 1e-6);

  /* Adam with coupled weight decay 0.5: g' = g + 0.5 p = (1, -5); still lr sign(g'): (0.9, -1.9),
   * and m = 0.1 g' shows the decay went into the gradient */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(m, 0);
  cnn_tensor_fill_(v, 0);
  cnn_tensor_fill_(step, 0);
  c.decoupled = false;
  CHECK(cnn_optim_adam(p, g, m, v, NULL, step, &c) == 0);
  expect("adam wd p", p, (double[]){0.9, -1.9}, 1e-6);
  expect("adam wd m", m, (double[]){0.1, -0.5}, 1e-6);

  /* amsgrad, beta2 = 0.5, beta1 = 0: step 1 with g, v = 0.5 g^2 = vmax; step 2 with zero gradient:
   * v = 0.25 g^2 < vmax, so vmax stays 0.5 g^2 and m = 0 leaves p where step 1 put it. With beta1=0
   * the update of step 1 is lr g / (sqrt(0.5 g^2)/sqrt(0.5) + eps) = lr sign(g). */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(m, 0);
  cnn_tensor_fill_(v, 0);
  cnn_tensor_fill_(step, 0);
  c = (cnn_adam_config){.lr = 0.1, .beta1 = 0, .beta2 = 0.5, .eps = 1e-8, .amsgrad = true};
  CHECK(cnn_optim_adam(p, g, m, v, vmax, step, &c) == 0);
  cnn_tensor *zero = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2});
  CHECK(cnn_optim_adam(p, zero, m, v, vmax, step, &c) == 0);
  expect("amsgrad v", v, (double[]){0.0625, 4}, 1e-6);
  expect("amsgrad vmax", vmax, (double[]){0.125, 8}, 1e-6);
  expect("amsgrad p", p, (double[]){0.9, -1.9}, 1e-6);
  /* step 3 with g again: v = 0.5*v + 0.5 g^2 = (0.15625, 10) > vmax; bc2 = 1 - 0.125 = 0.875;
   * p -= 0.1 g / (sqrt(v / 0.875) + eps) */
  CHECK(cnn_optim_adam(p, g, m, v, vmax, step, &c) == 0);
  expect("amsgrad vmax 3", vmax, (double[]){0.15625, 10}, 1e-6);
  expect("amsgrad p 3", p, (double[]){0.9 - 0.1 * 0.5 / sqrt(0.15625 / 0.875), -1.9 + 0.1 * 4 / sqrt(10 / 0.875)},
         1e-6);
  CHECK(cnn_tensor_f32(step)[0] == 3);

  cnn_tensor_release(zero);
  cnn_tensor_release(p);
  cnn_tensor_release(g);
  cnn_tensor_release(m);
  cnn_tensor_release(v);
  cnn_tensor_release(vmax);
  cnn_tensor_release(step);
}

static void test_rmsprop_hand(void) {
  const float p0[] = {1, -2}, g0[] = {0.5f, -4};
  const int64_t two = 2;
  cnn_tensor *p = vec(2, p0), *g = vec(2, g0);
  cnn_tensor *sq = cnn_tensor_zeros(CNN_FLOAT32, 1, &two), *ga = cnn_tensor_zeros(CNN_FLOAT32, 1, &two);
  cnn_tensor *buf = cnn_tensor_zeros(CNN_FLOAT32, 1, &two), *step = cnn_tensor_scalar(CNN_FLOAT32, 0);
  /* alpha 0.5, eps 0: sq = 0.5 g^2, avg = sqrt(0.5) |g|, p -= 0.1 sqrt(2) sign(g) */
  cnn_rmsprop_config c = {.lr = 0.1, .alpha = 0.5};
  CHECK(cnn_optim_rmsprop(p, g, sq, NULL, NULL, step, &c) == 0);
  expect("rmsprop sq", sq, (double[]){0.125, 8}, 1e-6);
  expect("rmsprop p", p, (double[]){1 - 0.1 * sqrt(2), -2 + 0.1 * sqrt(2)}, 1e-6);
  CHECK(cnn_tensor_f32(step)[0] == 1);

  /* centered: ga = 0.5 g, sq - ga^2 = 0.25 g^2, avg = 0.5 |g|: p -= 0.2 sign(g) */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(sq, 0);
  c.centered = true;
  CHECK(cnn_optim_rmsprop(p, g, sq, ga, NULL, step, &c) == 0);
  expect("centered ga", ga, (double[]){0.25, -2}, 1e-6);
  expect("centered p", p, (double[]){0.8, -1.8}, 1e-6);

  /* momentum 0.9 (not centered), two steps with the same g: buf1 = sqrt(2) sign(g); then
   * sq = 0.75 g^2 and buf2 = 0.9 buf1 + sign(g)/sqrt(0.75); p = p0 - 0.1 (buf1 + buf2) */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(sq, 0);
  c = (cnn_rmsprop_config){.lr = 0.1, .alpha = 0.5, .momentum = 0.9};
  CHECK(cnn_optim_rmsprop(p, g, sq, NULL, buf, step, &c) == 0);
  CHECK(cnn_optim_rmsprop(p, g, sq, NULL, buf, step, &c) == 0);
  double b1 = sqrt(2), b2 = 0.9 * sqrt(2) + 1 / sqrt(0.75);
  expect("momentum buf", buf, (double[]){b2, -b2}, 1e-6);
  expect("momentum p", p, (double[]){1 - 0.1 * (b1 + b2), -2 + 0.1 * (b1 + b2)}, 1e-6);

  /* weight decay 0.5 and eps 1: g' = g + 0.5 p = (1, -5), sq = 0.5 g'^2,
   * p -= 0.1 g' / (sqrt(0.5) |g'| + 1); maximize flips g before the decay is added */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(sq, 0);
  c = (cnn_rmsprop_config){.lr = 0.1, .alpha = 0.5, .eps = 1, .weight_decay = 0.5};
  CHECK(cnn_optim_rmsprop(p, g, sq, NULL, NULL, step, &c) == 0);
  expect("wd p", p, (double[]){1 - 0.1 / (sqrt(0.5) + 1), -2 + 0.5 / (5 * sqrt(0.5) + 1)}, 1e-6);
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(sq, 0);
  c.maximize = true; /* g' = -g + 0.5 p = (0, 3) */
  CHECK(cnn_optim_rmsprop(p, g, sq, NULL, NULL, step, &c) == 0);
  expect("maximize p", p, (double[]){1, -2 - 0.3 / (3 * sqrt(0.5) + 1)}, 1e-6);

  cnn_tensor *list[] = {p, g, sq, ga, buf, step};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) cnn_tensor_release(list[i]);
}

static void test_adagrad_hand(void) {
  const float p0[] = {1, -2}, g0[] = {0.5f, -4};
  const int64_t two = 2;
  cnn_tensor *p = vec(2, p0), *g = vec(2, g0);
  cnn_tensor *sum = cnn_tensor_zeros(CNN_FLOAT32, 1, &two), *step = cnn_tensor_scalar(CNN_FLOAT32, 0);
  /* eps 0, lr_decay 1: step 1 sum = g^2, p -= 0.1 sign(g); step 2 sum = 2 g^2, lr = 0.1 / 2,
   * p -= 0.05 sign(g) / sqrt(2) */
  cnn_adagrad_config c = {.lr = 0.1, .lr_decay = 1};
  CHECK(cnn_optim_adagrad(p, g, sum, step, &c) == 0);
  expect("adagrad p 1", p, (double[]){0.9, -1.9}, 1e-6);
  CHECK(cnn_optim_adagrad(p, g, sum, step, &c) == 0);
  expect("adagrad sum", sum, (double[]){0.5, 32}, 1e-6);
  expect("adagrad p 2", p, (double[]){0.9 - 0.05 / sqrt(2), -1.9 + 0.05 / sqrt(2)}, 1e-6);
  CHECK(cnn_tensor_f32(step)[0] == 2);

  /* initial sum 3 (the caller fills it), weight decay 0.5, eps 1: g' = (1, -5),
   * sum = (4, 28), p -= 0.1 g' / (sqrt(sum) + 1) */
  memcpy(cnn_tensor_f32(p), p0, sizeof p0);
  cnn_tensor_fill_(sum, 3);
  cnn_tensor_fill_(step, 0);
  c = (cnn_adagrad_config){.lr = 0.1, .weight_decay = 0.5, .eps = 1};
  CHECK(cnn_optim_adagrad(p, g, sum, step, &c) == 0);
  expect("adagrad wd p", p, (double[]){1 - 0.1 / 3, -2 + 0.5 / (sqrt(28) + 1)}, 1e-6);

  cnn_tensor *list[] = {p, g, sum, step};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) cnn_tensor_release(list[i]);
}

/* A tensor over the parallel grain, three steps of each kernel, against a double reference. */
static void test_big_against_reference(void) {
  const int64_t n = 100003;
  cnn_tensor *p = cnn_tensor_empty(CNN_FLOAT32, 1, &n), *g = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  cnn_tensor *b = cnn_tensor_zeros(CNN_FLOAT32, 1, &n);
  double *rp = malloc((size_t)n * sizeof *rp), *rb = malloc((size_t)n * sizeof *rb);
  double *rm = calloc((size_t)n, sizeof *rm), *rv = calloc((size_t)n, sizeof *rv), *rx = calloc((size_t)n, sizeof *rx);
  float *pp = cnn_tensor_f32(p), *gg = cnn_tensor_f32(g);
  for (int64_t i = 0; i < n; i++) {
    pp[i] = (float)sin(0.001 * (double)i);
    gg[i] = (float)cos(0.0037 * (double)i) * (float)(1 + i % 7);
    rp[i] = pp[i];
  }
  /* SGD, momentum 0.8, nesterov, weight decay 0.01 */
  cnn_sgd_config c = {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true};
  for (int s = 0; s < 3; s++) {
    CHECK(cnn_optim_sgd(p, g, b, s == 0, &c) == 0);
    for (int64_t i = 0; i < n; i++) {
      double d = gg[i] + 0.01 * rp[i];
      rb[i] = s == 0 ? d : 0.8 * rb[i] + d;
      rp[i] -= 0.05 * (d + 0.8 * rb[i]);
    }
  }
  int bad = 0;
  for (int64_t i = 0; i < n && !bad; i++) bad = fabs(pp[i] - rp[i]) > 1e-5 * (1 + fabs(rp[i]));
  CHECK(!bad);

  /* Adam, amsgrad, weight decay 0.1, a gradient that shrinks so the running max matters */
  for (int64_t i = 0; i < n; i++) rp[i] = pp[i];
  cnn_tensor *m = cnn_tensor_zeros(CNN_FLOAT32, 1, &n), *v = cnn_tensor_zeros(CNN_FLOAT32, 1, &n);
  cnn_tensor *vmax = cnn_tensor_zeros(CNN_FLOAT32, 1, &n), *step = cnn_tensor_scalar(CNN_FLOAT32, 0);
  cnn_adam_config a = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.6, .eps = 1e-8, .weight_decay = 0.1, .amsgrad = true};
  for (int s = 1; s <= 3; s++) {
    CHECK(cnn_optim_adam(p, g, m, v, vmax, step, &a) == 0);
    double bc1 = 1 - pow(0.9, s), bc2 = 1 - pow(0.6, s);
    for (int64_t i = 0; i < n; i++) {
      double gi = gg[i] + 0.1 * rp[i];
      rm[i] = 0.9 * rm[i] + 0.1 * gi;
      rv[i] = 0.6 * rv[i] + 0.4 * gi * gi;
      rx[i] = rx[i] > rv[i] ? rx[i] : rv[i];
      rp[i] -= 0.01 / bc1 * rm[i] / (sqrt(rx[i]) / sqrt(bc2) + 1e-8);
    }
    for (int64_t i = 0; i < n; i++) gg[i] *= 0.3f; /* the next gradient is smaller */
  }
  bad = 0;
  for (int64_t i = 0; i < n && !bad; i++) {
    bad = fabs(pp[i] - rp[i]) > 1e-5 * (1 + fabs(rp[i]));
    if (bad) fprintf(stderr, "adam big: element %lld is %.9g, reference %.9g\n", (long long)i, pp[i], rp[i]);
  }
  CHECK(!bad);

  /* RMSprop, centered, momentum 0.7, weight decay 0.02, then Adagrad with lr_decay 0.3 */
  for (int64_t i = 0; i < n; i++) {
    rp[i] = pp[i];
    rm[i] = rv[i] = rb[i] = 0;
    gg[i] = (float)cos(0.0037 * (double)i) * (float)(1 + i % 7);
  }
  cnn_tensor *sq = cnn_tensor_zeros(CNN_FLOAT32, 1, &n), *ga = cnn_tensor_zeros(CNN_FLOAT32, 1, &n);
  cnn_tensor *buf = cnn_tensor_zeros(CNN_FLOAT32, 1, &n);
  cnn_rmsprop_config r = {
      .lr = 0.01, .alpha = 0.9, .eps = 1e-6, .weight_decay = 0.02, .momentum = 0.7, .centered = true};
  for (int s = 1; s <= 3; s++) {
    CHECK(cnn_optim_rmsprop(p, g, sq, ga, buf, step, &r) == 0);
    for (int64_t i = 0; i < n; i++) {
      double gi = gg[i] + 0.02 * rp[i];
      rv[i] = 0.9 * rv[i] + 0.1 * gi * gi;
      rm[i] = 0.9 * rm[i] + 0.1 * gi;
      rb[i] = 0.7 * rb[i] + gi / (sqrt(rv[i] - rm[i] * rm[i]) + 1e-6);
      rp[i] -= 0.01 * rb[i];
    }
    for (int64_t i = 0; i < n; i++) gg[i] *= 0.5f;
  }
  bad = 0;
  for (int64_t i = 0; i < n && !bad; i++) {
    bad = fabs(pp[i] - rp[i]) > 1e-5 * (1 + fabs(rp[i]));
    if (bad) fprintf(stderr, "rmsprop big: element %lld is %.9g, reference %.9g\n", (long long)i, pp[i], rp[i]);
  }
  CHECK(!bad);
  cnn_tensor *sum = cnn_tensor_zeros(CNN_FLOAT32, 1, &n), *astep = cnn_tensor_scalar(CNN_FLOAT32, 0);
  cnn_adagrad_config ag = {.lr = 0.05, .lr_decay = 0.3, .weight_decay = 0.01, .eps = 1e-10};
  for (int64_t i = 0; i < n; i++) rv[i] = 0;
  for (int s = 1; s <= 3; s++) {
    CHECK(cnn_optim_adagrad(p, g, sum, astep, &ag) == 0);
    for (int64_t i = 0; i < n; i++) {
      double gi = gg[i] + 0.01 * rp[i];
      rv[i] += gi * gi;
      rp[i] -= 0.05 / (1 + (s - 1) * 0.3) * gi / (sqrt(rv[i]) + 1e-10);
    }
    for (int64_t i = 0; i < n; i++) gg[i] *= 2.0f;
  }
  bad = 0;
  for (int64_t i = 0; i < n && !bad; i++) {
    bad = fabs(pp[i] - rp[i]) > 1e-5 * (1 + fabs(rp[i]));
    if (bad) fprintf(stderr, "adagrad big: element %lld is %.9g, reference %.9g\n", (long long)i, pp[i], rp[i]);
  }
  CHECK(!bad);
  cnn_tensor_release(sq);
  cnn_tensor_release(ga);
  cnn_tensor_release(buf);
  cnn_tensor_release(sum);
  cnn_tensor_release(astep);

  free(rp);
  free(rb);
  free(rm);
  free(rv);
  free(rx);
  cnn_tensor_release(p);
  cnn_tensor_release(g);
  cnn_tensor_release(b);
  cnn_tensor_release(m);
  cnn_tensor_release(v);
  cnn_tensor_release(vmax);
  cnn_tensor_release(step);
}

static void test_errors(void) {
  int64_t s23[] = {2, 3}, s6 = 6, s2 = 2;
  cnn_tensor *p = cnn_tensor_full(CNN_FLOAT32, 2, s23, 1), *g = cnn_tensor_full(CNN_FLOAT32, 2, s23, 1);
  cnn_tensor *pt = cnn_tensor_transpose(p, 0, 1), *g6 = cnn_tensor_full(CNN_FLOAT32, 1, &s6, 1);
  cnn_tensor *pi = cnn_tensor_zeros(CNN_INT64, 2, s23), *b2 = cnn_tensor_zeros(CNN_FLOAT32, 1, &s2);
  cnn_tensor *m = cnn_tensor_zeros(CNN_FLOAT32, 2, s23), *v = cnn_tensor_zeros(CNN_FLOAT32, 2, s23);
  cnn_tensor *step = cnn_tensor_scalar(CNN_FLOAT32, 0), *istep = cnn_tensor_scalar(CNN_INT64, 0);
  cnn_sgd_config c = {.lr = 0.1};
  cnn_sgd_config cm = {.lr = 0.1, .momentum = 0.9};
  cnn_adam_config a = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  cnn_adam_config ams = a;
  ams.amsgrad = true;
  uint64_t version = p->storage->version;

  CHECK_ERROR_RC(cnn_optim_sgd(pt, g, NULL, false, &c), "parameter is not contiguous");
  CHECK_ERROR_RC(cnn_optim_sgd(p, g6, NULL, false, &c), "gradient has shape (6) but the parameter has shape (2, 3)");
  CHECK_ERROR_RC(cnn_optim_sgd(pi, g, NULL, false, &c), "parameter is int64; optimisers update float32 tensors");
  CHECK_ERROR_RC(cnn_optim_sgd(p, g, NULL, false, &cm), "missing momentum_buffer");
  CHECK_ERROR_RC(cnn_optim_sgd(p, g, b2, false, &cm),
                 "momentum_buffer has shape (2) but the parameter has shape (2, 3)");
  CHECK_ERROR_RC(cnn_optim_adam(p, g, m, b2, NULL, step, &a),
                 "exp_avg_sq has shape (2) but the parameter has shape (2, 3)");
  CHECK_ERROR_RC(cnn_optim_adam(p, g, m, v, NULL, step, &ams), "missing max_exp_avg_sq");
  CHECK_ERROR_RC(cnn_optim_adam(p, g, m, v, NULL, istep, &a), "step must be a one-element float32 tensor");
  CHECK_ERROR_RC(cnn_optim_adam(p, g, m, v, NULL, NULL, &a), "missing step");
  cnn_rmsprop_config rc = {.lr = 0.1, .alpha = 0.9, .centered = true};
  CHECK_ERROR_RC(cnn_optim_rmsprop(p, g, m, NULL, NULL, step, &rc), "missing grad_avg");
  rc = (cnn_rmsprop_config){.lr = 0.1, .alpha = 0.9, .momentum = 0.5};
  CHECK_ERROR_RC(cnn_optim_rmsprop(p, g, m, NULL, b2, step, &rc),
                 "momentum_buffer has shape (2) but the parameter has shape (2, 3)");
  CHECK_ERROR_RC(cnn_optim_rmsprop(p, g, b2, NULL, NULL, step, &rc),
                 "square_avg has shape (2) but the parameter has shape (2, 3)");
  cnn_adagrad_config ac = {.lr = 0.1};
  CHECK_ERROR_RC(cnn_optim_adagrad(p, g, pi, step, &ac), "sum is int64; optimisers update float32 tensors");
  CHECK_ERROR_RC(cnn_optim_adagrad(p, g, m, istep, &ac), "step must be a one-element float32 tensor");
  /* nothing was written by the refused calls */
  CHECK(p->storage->version == version);
  CHECK(cnn_tensor_f32(step)[0] == 0);
  for (int i = 0; i < 6; i++) CHECK(cnn_tensor_f32(p)[i] == 1 && cnn_tensor_f32(m)[i] == 0);
  /* an empty parameter is a valid no-op; Adam still counts the step, as PyTorch does */
  int64_t z = 0;
  cnn_tensor *e = cnn_tensor_empty(CNN_FLOAT32, 1, &z), *eg = cnn_tensor_empty(CNN_FLOAT32, 1, &z);
  cnn_tensor *em = cnn_tensor_empty(CNN_FLOAT32, 1, &z), *ev = cnn_tensor_empty(CNN_FLOAT32, 1, &z);
  CHECK(cnn_optim_sgd(e, eg, NULL, false, &c) == 0);
  CHECK(cnn_optim_adam(e, eg, em, ev, NULL, step, &a) == 0);
  CHECK(cnn_tensor_f32(step)[0] == 1);

  cnn_tensor *list[] = {p, g, pt, g6, pi, b2, m, v, step, istep, e, eg, em, ev};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) cnn_tensor_release(list[i]);
}

int main(void) {
  test_sgd_hand();
  test_adam_hand();
  test_rmsprop_hand();
  test_adagrad_hand();
  test_big_against_reference();
  test_errors();
  return check_summary("test_optim");
}
