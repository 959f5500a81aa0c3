/* Internal to ops_*.c: a short-lived set of temporaries for composing backward formulas out of
 * kernels. Each helper returns NULL once anything failed (the first error message stays set),
 * so a formula is written straight through and checked once; sc_done releases every temporary. */
#ifndef CNN_SCRATCH_H
#define CNN_SCRATCH_H

#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/tensor.h"

#define SC_MAX 16

typedef struct scratch {
  cnn_tensor *t[SC_MAX];
  int n;
  bool failed;
} scratch;

static inline cnn_tensor *sc_keep(scratch *s, cnn_tensor *t) {
  if (!t || s->n == SC_MAX) {
    if (t) cnn_tensor_release(t), cnn_error_set("internal: scratch full");
    s->failed = true;
    return NULL;
  }
  s->t[s->n++] = t;
  return t;
}

static inline cnn_tensor *sc_bin(scratch *s, cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  if (s->failed || !a || !b) return s->failed = true, NULL;
  return sc_keep(s, cnn_ew_binary(op, a, b));
}

static inline cnn_tensor *sc_un(scratch *s, cnn_unop op, const cnn_tensor *x, double p0, double p1) {
  if (s->failed || !x) return s->failed = true, NULL;
  return sc_keep(s, cnn_ew_unary(op, x, p0, p1));
}

static inline cnn_tensor *sc_where(scratch *s, const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b) {
  if (s->failed || !cond || !a || !b) return s->failed = true, NULL;
  return sc_keep(s, cnn_ew_where(cond, a, b));
}

/* A 0-d float32 tensor holding v. */
static inline cnn_tensor *sc_scalar(scratch *s, double v) {
  if (s->failed) return NULL;
  return sc_keep(s, cnn_tensor_scalar(CNN_FLOAT32, v));
}

/* Returns a new reference to r (NULL if anything failed) and releases the temporaries. */
static inline cnn_tensor *sc_result(scratch *s, cnn_tensor *r) {
  if (s->failed) r = NULL;
  cnn_tensor_retain(r);
  for (int i = 0; i < s->n; i++) cnn_tensor_release(s->t[i]);
  s->n = 0;
  return r;
}

#endif
