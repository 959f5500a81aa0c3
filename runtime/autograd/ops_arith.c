/* Differentiable elementwise ops (see ops.h) and the in-place writers. A binary op's backward
 * returns gradients in the broadcast shape; the engine sums them back to each input's shape. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "core/iter.h"
#include "cnn/ops.h"
#include "cnn/random.h"
#include "core/parallel.h"
#include "core/tensor_hooks.h"
#include "scratch.h"

#include <math.h>
#include <string.h>

typedef struct binary_state {
  cnn_binop op;
} binary_state;

static int binary_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin);

#define BINARY_OP(name) \
  { name, binary_backward, sizeof(binary_state), NULL }
static const cnn_ag_op binary_ops[] = {
    [CNN_ADD] = BINARY_OP("AddBackward"),
    [CNN_SUB] = BINARY_OP("SubBackward"),
    [CNN_MUL] = BINARY_OP("MulBackward"),
    [CNN_DIV] = BINARY_OP("DivBackward"),
    [CNN_POW] = BINARY_OP("PowBackward"),
    [CNN_MAXIMUM] = BINARY_OP("MaximumBackward"),
    [CNN_MINIMUM] = BINARY_OP("MinimumBackward"),
    [CNN_FLOOR_DIVIDE] = BINARY_OP("DivBackward"),
    [CNN_REMAINDER] = BINARY_OP("RemainderBackward"),
};

/* saved: a, b, out (each only when the formula for a needed gradient reads it) */
static int binary_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *a, *b, *out, *g = gout[0];
  if (!g || cnn_ag_saved(n, 0, &a) || cnn_ag_saved(n, 1, &b) || cnn_ag_saved(n, 2, &out)) return g ? -1 : 0;
  scratch s = {0};
  bool na = cnn_node_needs_grad(n, 0), nb = cnn_node_needs_grad(n, 1);
  cnn_tensor *ga = NULL, *gb = NULL;
  const binary_state *st = cnn_ag_state(n);
  switch (st->op) {
  case CNN_ADD: ga = g, gb = g; break;
  case CNN_SUB: ga = g, gb = nb ? sc_un(&s, CNN_NEG, g, 0, 0) : NULL; break;
  case CNN_MUL:
    ga = na ? sc_bin(&s, CNN_MUL, g, b) : NULL;
    gb = nb ? sc_bin(&s, CNN_MUL, g, a) : NULL;
    break;
  case CNN_DIV: /* d(a/b) = g/b, -g * (out/b) (PyTorch's order: out/b first, for overflow) */
    ga = na ? sc_bin(&s, CNN_DIV, g, b) : NULL;
    gb = nb ? sc_bin(&s, CNN_MUL, sc_un(&s, CNN_NEG, g, 0, 0), sc_bin(&s, CNN_DIV, out, b)) : NULL;
    break;
  case CNN_POW: { /* PyTorch's: d/da = g*b*a^(b-1) but 0 where b == 0; d/db = g*out*log(a) but 0
                   * where a == 0 and b >= 0 (the limits at 0^0 and 0^b) */
    cnn_tensor *zero = sc_scalar(&s, 0);
    if (na) {
      cnn_tensor *d = sc_bin(&s, CNN_MUL, b, sc_bin(&s, CNN_POW, a, sc_un(&s, CNN_ADD_SCALAR, b, -1, 0)));
      ga = sc_where(&s, sc_bin(&s, CNN_EQ, b, zero), zero, sc_bin(&s, CNN_MUL, g, d));
    }
    if (nb) {
      cnn_tensor *at_zero = sc_bin(&s, CNN_MUL, sc_bin(&s, CNN_EQ, a, zero), sc_bin(&s, CNN_GE, b, zero));
      gb = sc_bin(&s, CNN_MUL, g, sc_where(&s, at_zero, zero, sc_bin(&s, CNN_MUL, out, sc_un(&s, CNN_LOG, a, 0, 0))));
    }
    break;
  }
  case CNN_MAXIMUM:
  case CNN_MINIMUM: {
    /* PyTorch's: g (g / 2 on ties) to each side, except the side that lost: so where a NaN is
     * involved (no side lost) both sides get all of g */
    cnn_binop lose = st->op == CNN_MAXIMUM ? CNN_LT : CNN_GT;
    cnn_tensor *zero = sc_scalar(&s, 0);
    cnn_tensor *gh = sc_where(&s, sc_bin(&s, CNN_EQ, a, b), sc_un(&s, CNN_MUL_SCALAR, g, 0.5, 0), g);
    ga = na ? sc_where(&s, sc_bin(&s, lose, a, b), zero, gh) : NULL;
    gb = nb ? sc_where(&s, sc_bin(&s, lose, b, a), zero, gh) : NULL;
    break;
  }
  case CNN_FLOOR_DIVIDE: { /* piecewise constant: zeros, as PyTorch's div with a rounding_mode */
    cnn_tensor *zero = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, g->ndim, g->size));
    ga = zero, gb = zero;
    break;
  }
  case CNN_REMAINDER: /* PyTorch's: g, and -g * floor_divide(a, b) */
    ga = g;
    gb = nb ? sc_bin(&s, CNN_MUL, sc_un(&s, CNN_NEG, g, 0, 0), sc_bin(&s, CNN_FLOOR_DIVIDE, a, b)) : NULL;
    break;
  default: break;
  }
  if (s.failed) return sc_result(&s, NULL), -1;
  gin[0] = na ? cnn_tensor_retain(ga) : NULL;
  gin[1] = nb ? cnn_tensor_retain(gb) : NULL;
  sc_result(&s, NULL);
  return 0;
}

cnn_tensor *cnn_op_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  const cnn_tensor *in[2] = {a, b};
  cnn_tensor *out = cnn_ew_binary(op, a, b);
  /* comparisons, logical and bitwise ops give bool or integers: never recorded */
  if (!out || cnn_binop_is_boolean(op) || (op >= CNN_BIT_AND && op <= CNN_BIT_XOR) || !cnn_ag_any_requires(2, in))
    return out;
  /* save only what the formulas below read, so unrelated in-place writes stay legal */
  bool na = cnn_ag_requires(a), nb = cnn_ag_requires(b);
  bool keep_a = (op == CNN_MUL && nb) || op == CNN_POW || op == CNN_MAXIMUM || op == CNN_MINIMUM;
  bool keep_b = (op == CNN_MUL && na) || op == CNN_DIV || op == CNN_POW || op == CNN_MAXIMUM || op == CNN_MINIMUM;
  if (op == CNN_REMAINDER && nb) keep_a = keep_b = true;
  bool keep_out = (op == CNN_DIV && nb) || (op == CNN_POW && nb);
  const cnn_tensor *saves[3] = {keep_a ? a : NULL, keep_b ? b : NULL, keep_out ? out : NULL};
  binary_state st = {op};
  if ((size_t)op >= sizeof binary_ops / sizeof *binary_ops || !binary_ops[op].name) /* a new op's entry */
    return cnn_tensor_release(out), cnn_error_set("binary op %d has no autograd entry (ops_arith.c)", (int)op), NULL;
  return cnn_ag_record(out, &binary_ops[op], &st, 2, in, 3, saves) ? NULL : out;
}

typedef struct unary_state {
  cnn_unop op;
  double p0, p1; /* the op's scalars (clamp's bounds, the exponent, the factor) */
} unary_state;

static int unary_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin);

#define UNARY_OP(name) \
  { name, unary_backward, sizeof(unary_state), NULL }
static const cnn_ag_op unary_ops[] = {
    [CNN_NEG] = UNARY_OP("NegBackward"),         [CNN_EXP] = UNARY_OP("ExpBackward"),
    [CNN_LOG] = UNARY_OP("LogBackward"),         [CNN_SQRT] = UNARY_OP("SqrtBackward"),
    [CNN_ABS] = UNARY_OP("AbsBackward"),         [CNN_RELU] = UNARY_OP("ReluBackward"),
    [CNN_SIGMOID] = UNARY_OP("SigmoidBackward"), [CNN_TANH] = UNARY_OP("TanhBackward"),
    [CNN_SIGN] = UNARY_OP("SignBackward"),       [CNN_CLAMP] = UNARY_OP("ClampBackward"),
    [CNN_POW_SCALAR] = UNARY_OP("PowBackward"),  [CNN_RPOW_SCALAR] = UNARY_OP("PowBackward"),
    [CNN_ADD_SCALAR] = UNARY_OP("AddBackward"),  [CNN_MUL_SCALAR] = UNARY_OP("MulBackward"),
    [CNN_FLOOR] = UNARY_OP("FloorBackward"),     [CNN_CEIL] = UNARY_OP("CeilBackward"),
    [CNN_ROUND] = UNARY_OP("RoundBackward"),     [CNN_TRUNC] = UNARY_OP("TruncBackward"),
};

typedef struct {
  const float *g, *out;
  float *r;
} relu_job;

static void relu_backward_range(void *arg, int64_t b, int64_t e) {
  const relu_job *j = arg;
  const float *restrict g = j->g, *restrict out = j->out;
  float *restrict r = j->r;
  for (int64_t i = b; i < e; i++) r[i] = out[i] <= 0 ? 0.0f : g[i];
}

/* ReLU's gradient in one pass over float32: gx = out <= 0 ? 0 : g, PyTorch's threshold_backward
 * (a NaN output passes the gradient). Strided operands are made contiguous first. Returns a new
 * reference, or NULL: with the error set when *failed, else for the general path to take over. */
static cnn_tensor *relu_backward(const cnn_tensor *g0, const cnn_tensor *out0, bool *failed) {
  *failed = false;
  if (g0->dtype != CNN_FLOAT32 || out0->dtype != CNN_FLOAT32 || !cnn_tensor_same_shape(g0, out0)) return NULL;
  cnn_tensor *g = cnn_tensor_contiguous(g0), *out = g ? cnn_tensor_contiguous(out0) : NULL;
  /* the engine's gradient sum, when nobody else holds it, takes the result in place: no fresh
   * (cache-cold) buffer for a pass that is all memory traffic */
  bool in_place = g == g0 && g->refcount == 2 && g->storage->refcount == 1 && !g->grad && !g->grad_fn;
  cnn_tensor *r = !out ? NULL : in_place ? cnn_tensor_retain(g) : cnn_tensor_empty(CNN_FLOAT32, g->ndim, g->size);
  if (r) {
    relu_job j = {cnn_tensor_f32(g), cnn_tensor_f32(out), cnn_tensor_f32(r)};
    const int64_t n = cnn_tensor_numel(g);
    cnn_parallel_items(n, n, relu_backward_range, &j);
  }
  cnn_tensor_release(g);
  cnn_tensor_release(out);
  *failed = !r;
  return r;
}

/* saved: x, out (each only when the op's formula reads it) */
static int unary_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *out, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &out)) return -1;
  const unary_state *st = cnn_ag_state(n);
  const double p0 = st->p0, p1 = st->p1;
  scratch s = {0};
  cnn_tensor *r = NULL;
  switch (st->op) {
  case CNN_NEG: r = sc_un(&s, CNN_NEG, g, 0, 0); break;
  case CNN_EXP: r = sc_bin(&s, CNN_MUL, g, out); break;
  case CNN_LOG: r = sc_bin(&s, CNN_DIV, g, x); break;
  case CNN_SQRT: r = sc_bin(&s, CNN_DIV, sc_un(&s, CNN_MUL_SCALAR, g, 0.5, 0), out); break;
  case CNN_ABS: r = sc_bin(&s, CNN_MUL, g, sc_un(&s, CNN_SIGN, x, 0, 0)); break;
  case CNN_RELU: {
    bool failed;
    if ((r = relu_backward(g, out, &failed)) || failed) return (gin[0] = r) ? 0 : -1;
    cnn_tensor *zero = sc_keep(&s, cnn_tensor_scalar(CNN_FLOAT32, 0));
    r = sc_bin(&s, CNN_MUL, g, sc_bin(&s, CNN_GT, out, zero));
    break;
  }
  case CNN_SIGMOID: /* g * out * (1 - out) */
    r = sc_bin(&s, CNN_MUL, sc_bin(&s, CNN_MUL, g, out),
               sc_un(&s, CNN_ADD_SCALAR, sc_un(&s, CNN_NEG, out, 0, 0), 1, 0));
    break;
  case CNN_TANH: /* g * (1 - out^2) */
    r = sc_bin(&s, CNN_MUL, g,
               sc_un(&s, CNN_ADD_SCALAR, sc_un(&s, CNN_NEG, sc_bin(&s, CNN_MUL, out, out), 0, 0), 1, 0));
    break;
  case CNN_SIGN: /* piecewise constant: a zero gradient, as PyTorch */
  case CNN_FLOOR:
  case CNN_CEIL:
  case CNN_ROUND:
  case CNN_TRUNC: r = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, g->ndim, g->size)); break;
  case CNN_CLAMP: { /* passes where lo <= x <= hi, as PyTorch */
    cnn_tensor *lo = sc_keep(&s, cnn_tensor_scalar(CNN_FLOAT32, p0));
    cnn_tensor *hi = sc_keep(&s, cnn_tensor_scalar(CNN_FLOAT32, p1));
    r = sc_bin(&s, CNN_MUL, g, sc_bin(&s, CNN_MUL, sc_bin(&s, CNN_GE, x, lo), sc_bin(&s, CNN_LE, x, hi)));
    break;
  }
  case CNN_POW_SCALAR: /* g * p * x^(p-1) */
    r = p0 == 0 ? sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, g->ndim, g->size))
                : sc_bin(&s, CNN_MUL, g, sc_un(&s, CNN_MUL_SCALAR, sc_un(&s, CNN_POW_SCALAR, x, p0 - 1, 0), p0, 0));
    break;
  case CNN_RPOW_SCALAR: /* d(c^x) = g * (out * log(c)) */
    r = sc_bin(&s, CNN_MUL, g, sc_un(&s, CNN_MUL_SCALAR, out, log(p0), 0));
    break;
  case CNN_ADD_SCALAR: r = sc_keep(&s, cnn_tensor_retain(g)); break;
  case CNN_MUL_SCALAR: r = sc_un(&s, CNN_MUL_SCALAR, g, p0, 0); break;
  case CNN_BIT_NOT: break; /* integer results: never recorded */
  }
  (void)p1;
  gin[0] = sc_result(&s, r);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1) {
  cnn_tensor *out = cnn_ew_unary(op, x, p0, p1);
  const cnn_tensor *in[1] = {x};
  if (!out || !cnn_ag_any_requires(1, in)) return out;
  bool keep_x = op == CNN_LOG || op == CNN_ABS || op == CNN_CLAMP || op == CNN_POW_SCALAR;
  bool keep_out = op == CNN_EXP || op == CNN_SQRT || op == CNN_RELU || op == CNN_SIGMOID || op == CNN_TANH ||
                  op == CNN_RPOW_SCALAR;
  const cnn_tensor *saves[2] = {keep_x ? x : NULL, keep_out ? out : NULL};
  unary_state st = {op, p0, p1};
  if ((size_t)op >= sizeof unary_ops / sizeof *unary_ops || !unary_ops[op].name) /* a new op's entry */
    return cnn_tensor_release(out), cnn_error_set("unary op %d has no autograd entry (ops_arith.c)", (int)op), NULL;
  return cnn_ag_record(out, &unary_ops[op], &st, 1, in, 2, saves) ? NULL : out;
}

/* ---- where and masked_fill ---- */

/* saved: cond; the gradient goes to the side each element was taken from */
static int where_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *cond, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &cond)) return -1;
  scratch s = {0};
  cnn_tensor *zero = sc_scalar(&s, 0);
  cnn_tensor *ga = cnn_node_needs_grad(n, 0) ? sc_where(&s, cond, g, zero) : NULL;
  cnn_tensor *gb = cnn_node_needs_grad(n, 1) ? sc_where(&s, cond, zero, g) : NULL;
  if (s.failed) return sc_result(&s, NULL), -1;
  gin[0] = cnn_tensor_retain(ga);
  gin[1] = cnn_tensor_retain(gb);
  sc_result(&s, NULL);
  return 0;
}

static const cnn_ag_op where_op = {"WhereBackward", where_backward, 0, NULL};

static int check_condition(const cnn_tensor *cond, const char *what) {
  if (cond->dtype != CNN_BOOL && cond->dtype != CNN_UINT8)
    return cnn_error_set("%s must be a bool tensor, got %s", what, cnn_dtype_name(cond->dtype));
  return 0;
}

cnn_tensor *cnn_op_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b) {
  if (check_condition(cond, "the condition")) return NULL;
  const cnn_tensor *in[2] = {a, b};
  cnn_tensor *out = cnn_ew_where(cond, a, b);
  if (!out || !cnn_ag_any_requires(2, in)) return out;
  const cnn_tensor *saves[1] = {cond};
  return cnn_ag_record(out, &where_op, NULL, 2, in, 1, saves) ? NULL : out;
}

cnn_tensor *cnn_op_masked_fill(const cnn_tensor *x, const cnn_tensor *mask, const cnn_tensor *value) {
  if (check_condition(mask, "the mask")) return NULL;
  if (value->ndim != 0) {
    cnn_error_set("the value must be a number or a 0-d tensor, got a %d-d tensor", value->ndim);
    return NULL;
  }
  cnn_tensor *out = cnn_op_where(mask, value, x);
  if (!out || out->dtype == x->dtype) return out;
  cnn_tensor *c = cnn_op_to_dtype(out, x->dtype); /* the tensor's dtype, as PyTorch's masked_fill */
  cnn_tensor_release(out);
  return c;
}

/* ---- in place ---- */

/* cnn_op_check_inplace's autograd half: fill_ writes an expanded tensor too (one value for every
 * element, as PyTorch's fill_), the other in-place ops do not. */
static int check_inplace_grad(const cnn_tensor *t) {
  if (!cnn_ag_is_enabled() || !t->requires_grad) return 0;
  if (!t->grad_fn)
    return cnn_error_set("a leaf tensor that requires grad cannot be modified in place "
                         "(wrap the update in cnn.no_grad, or detach() first)");
  return cnn_error_set("in-place operations on tensors that are part of an autograd graph are not supported "
                       "(use the out-of-place form)");
}

int cnn_op_check_inplace(const cnn_tensor *t) { return cnn_tensor_check_writable(t) ? -1 : check_inplace_grad(t); }

static int bump(cnn_tensor *t, int rc) {
  if (rc == 0) t->storage->version++;
  return rc;
}

/* An arithmetic in-place op on a tensor with history (x:relu_() after a convolution), or whose
 * operand requires grad, is the out-of-place op, whose result t then becomes: its storage, and its
 * node as t's grad_fn (PyTorch's rebase of t's history; the memory is new, which PyTorch would
 * have saved). t's old values stay in the old storage for whatever node saved them, so their
 * backward stays right (where PyTorch's fails, "modified by an inplace operation", when the node
 * reads them). Refused when a view shares t's memory (storage references past t's own and the
 * nodes' saved copies): it would keep the old values under t's new history, where PyTorch rewrites
 * the base's history (CopySlices). */
bool cnn_op_rebases(const cnn_tensor *t, const cnn_tensor *other) {
  return cnn_ag_is_enabled() && (t->grad_fn || (other && cnn_ag_requires(other)));
}

int cnn_op_rebase_check(const cnn_tensor *t) {
  if (cnn_tensor_check_writable(t)) return -1;
  if (t->requires_grad && !t->grad_fn) return cnn_op_check_inplace(t); /* the leaf's message */
  /* the nodes' saved copies keep the old values in the old storage: only views would see them */
  if (t->storage->refcount - t->storage->saved > 1)
    return cnn_error_set("in-place operation on a tensor of an autograd graph that a view shares (a view of it, "
                         "or it a view: views would keep the old values; one no longer used may wait for "
                         "collectgarbage()): use the out-of-place form");
  return 0;
}

int cnn_op_rebase(cnn_tensor *t, cnn_tensor *r) {
  if (!r) return -1;
  int rc = 0;
  if (r->dtype != t->dtype) /* the messages of the plain in-place path (cnn_ew_binary_into) */
    rc = cnn_error_set("cannot write %s results into %s %s tensor", cnn_dtype_name(r->dtype),
                       t->dtype == CNN_INT64 ? "an" : "a", cnn_dtype_name(t->dtype));
  else if (!cnn_tensor_same_shape(r, t)) {
    char rs[128], ts[128];
    rc = cnn_error_set("output with shape %s doesn't match the broadcast shape %s",
                       cnn_shape_str(t->ndim, t->size, ts, sizeof ts), cnn_shape_str(r->ndim, r->size, rs, sizeof rs));
  } else {
    cnn_tensor_rebind(t, r); /* r's storage: at the version its node saved it, if it did */
    if (r->grad_fn) {
      cnn_ag_set_output(t, r->grad_fn, r->output_nr);
    } else { /* overwritten by values without history (copy_ of a constant): t's old one is cut */
      cnn_ag_node_release(t->grad_fn);
      t->grad_fn = NULL;
      t->requires_grad = false;
    }
  }
  cnn_tensor_release(r);
  return rc ? -1 : 0;
}

int cnn_op_binary_(cnn_binop op, cnn_tensor *t, const cnn_tensor *other) {
  if (cnn_op_rebases(t, other)) return cnn_op_rebase_check(t) ? -1 : cnn_op_rebase(t, cnn_op_binary(op, t, other));
  if (cnn_op_check_inplace(t)) return -1;
  return bump(t, cnn_ew_binary_into(op, t, t, other));
}

int cnn_op_unary_(cnn_unop op, cnn_tensor *t, double p0, double p1) {
  if (cnn_op_rebases(t, NULL)) return cnn_op_rebase_check(t) ? -1 : cnn_op_rebase(t, cnn_op_unary(op, t, p0, p1));
  if (cnn_op_check_inplace(t)) return -1;
  return bump(t, cnn_ew_unary_(op, t, p0, p1));
}

int cnn_op_rebase_write(cnn_tensor *t, const cnn_tensor *written, const cnn_tensor *vals) {
  if (cnn_op_rebase_check(t)) return -1;
  return cnn_op_rebase(t, cnn_op_where(written, vals, t));
}

/* A whole-tensor write recorded (fill_, copy_ of a constant, the random fills): t takes
 * where(true, vals, t); vals (t's dtype, broadcasting to its shape; NULL: -1) released */
static int overwrite_recorded(cnn_tensor *t, cnn_tensor *vals) {
  cnn_tensor *yes = vals ? cnn_tensor_scalar(CNN_BOOL, 1) : NULL;
  int rc = yes ? cnn_op_rebase_write(t, yes, vals) : -1;
  cnn_tensor_release(yes);
  cnn_tensor_release(vals);
  return rc;
}

int cnn_op_fill_(cnn_tensor *t, double v) {
  if (cnn_op_rebases(t, NULL)) return overwrite_recorded(t, cnn_tensor_scalar(t->dtype, v));
  if (check_inplace_grad(t)) return -1;
  return bump(t, cnn_tensor_fill_(t, v));
}

int cnn_op_fill_i64_(cnn_tensor *t, int64_t v) {
  if (cnn_op_rebases(t, NULL)) return overwrite_recorded(t, cnn_tensor_full_i64(t->dtype, 0, NULL, v));
  if (check_inplace_grad(t)) return -1;
  return bump(t, cnn_tensor_fill_i64_(t, v));
}

int cnn_op_masked_fill_(cnn_tensor *t, const cnn_tensor *mask, const cnn_tensor *value) {
  const bool recorded = cnn_op_rebases(t, value);
  if (recorded ? cnn_op_rebase_check(t) : cnn_op_check_inplace(t)) return -1;
  cnn_tensor *r = cnn_op_masked_fill(t, mask, value); /* t's dtype; differentiable in t and value */
  if (r && !cnn_tensor_same_shape(r, t)) {
    cnn_tensor_release(r);
    return cnn_error_set("the mask does not broadcast to the tensor's shape");
  }
  if (recorded) return cnn_op_rebase(t, r);
  int rc = r ? bump(t, cnn_tensor_copy_(t, r)) : -1;
  cnn_tensor_release(r);
  return rc;
}

/* copy_'s out-of-place form: src broadcast to t's shape, in t's dtype, in memory of its own */
static cnn_tensor *copied(const cnn_tensor *t, const cnn_tensor *src) {
  cnn_tensor *e = cnn_op_expand(src, t->ndim, t->size);
  cnn_tensor *d = e ? cnn_op_to_dtype(e, t->dtype) : NULL;
  cnn_tensor *r = d ? cnn_op_clone(d) : NULL;
  cnn_tensor_release(d);
  cnn_tensor_release(e);
  return r;
}

int cnn_op_copy_(cnn_tensor *t, const cnn_tensor *src) {
  if (cnn_op_rebases(t, src)) { /* over t's history a zero gradient to the old t (its leaves get 0, not
                                  * nil, as PyTorch's CopyBackwards); without one, src's history */
    if (cnn_op_rebase_check(t)) return -1;
    return t->grad_fn ? overwrite_recorded(t, copied(t, src)) : cnn_op_rebase(t, copied(t, src));
  }
  if (cnn_op_check_inplace(t)) return -1;
  return bump(t, cnn_tensor_copy_(t, src));
}

/* uniform_ ([a, b)) or normal_ (mean a, std b): in place, or on a tensor with history drawn into
 * new memory of t's shape that t then takes (overwrite_recorded) */
static int random_fill_(cnn_tensor *t, bool normal, double a, double b) {
  const bool recorded = cnn_op_rebases(t, NULL);
  if (recorded ? cnn_op_rebase_check(t) : cnn_op_check_inplace(t)) return -1;
  cnn_tensor *r = recorded ? cnn_tensor_empty(t->dtype, t->ndim, t->size) : t;
  if (!r) return -1;
  int rc = normal ? cnn_random_normal_(r, a, b) : cnn_random_uniform_(r, a, b);
  if (!recorded) return bump(t, rc);
  if (rc) {
    cnn_tensor_release(r);
    return -1;
  }
  return overwrite_recorded(t, r);
}

int cnn_op_uniform_(cnn_tensor *t, double lo, double hi) { return random_fill_(t, false, lo, hi); }

int cnn_op_normal_(cnn_tensor *t, double mean, double std) { return random_fill_(t, true, mean, std); }
