/* Activations, softmax, losses, dropout and normalisation for Lua (core.F.*, cnn.F.* to users).
 * Arguments are checked here (types, option keys, Lua's 1-based dims and class labels); the
 * runtime (ops_nn.h) checks shapes and values. No C reference is held across a raise, and tensor
 * pointers are taken after the options are read (see lcnn.h). */
#include "lcnn.h"

#include <string.h>

#include "cnn/error.h"
#include "cnn/ops.h"
#include "cnn/ops_nn.h"

/* ---- argument helpers ---- */

static cnn_reduction field_reduction(lua_State *L, int idx, const char *fn) {
  lcnn_opt_field(L, idx, "reduction");
  cnn_reduction r = CNN_REDUCTION_MEAN;
  if (!lua_isnil(L, -1)) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s && strcmp(s, "mean") == 0) r = CNN_REDUCTION_MEAN;
    else if (s && strcmp(s, "sum") == 0) r = CNN_REDUCTION_SUM;
    else if (s && strcmp(s, "none") == 0) r = CNN_REDUCTION_NONE;
    else
      lcnn_error(L, fn, "unknown reduction '%s' (expected \"mean\", \"sum\" or \"none\")",
                 s ? s : luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return r;
}

/* The options of cross_entropy / nll_loss at idx: labels come from Lua as 1..C. The weight
 * option's value stays on the stack (a __index may have made it, and only the stack keeps it
 * alive); its index is returned (0 when absent) for the caller to take the pointer last. */
static int class_options(lua_State *L, int idx, const char *fn, cnn_class_loss_opts *o, bool smoothing) {
  static const char *const ce_keys[] = {"reduction", "label_smoothing", "weight", "ignore_index", NULL};
  static const char *const nll_keys[] = {"reduction", "weight", "ignore_index", NULL};
  lcnn_options(L, idx, fn, smoothing ? ce_keys : nll_keys);
  memset(o, 0, sizeof *o);
  o->reduction = field_reduction(L, idx, fn);
  if (smoothing) {
    o->label_smoothing = lcnn_opt_number(L, idx, fn, "label_smoothing", 0);
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
      lcnn_error(L, fn, "label_smoothing must be between 0 and 1, got %g", cnn_error_num(o->label_smoothing));
  }
  /* PyTorch's default ignore_index, -100, can never be a class here either */
  o->has_ignore = true;
  o->ignore_index = lcnn_opt_integer(L, idx, fn, "ignore_index", -100);
  if (lcnn_opt_field(L, idx, "weight") == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lcnn_testbox(L, -1)) lcnn_error(L, fn, "weight must be a tensor, got %s", luaL_typename(L, -1));
  return lua_gettop(L);
}

/* The weight that class_options left at widx, once every lookup is done. */
static void class_weight(lua_State *L, int widx, const char *fn, cnn_class_loss_opts *o) {
  if (!widx) return;
  o->weight = lcnn_test(L, widx);
  if (!o->weight) lcnn_error(L, fn, "weight is a closed tensor");
}

/* ---- linear ---- */

/** cnn.F.linear(x, weight, bias) -> Tensor
 * x W^T + b: x (..., in), weight (out, in), bias (out) or nil -> (..., out).
 * float32, or int64 throughout (exact, as PyTorch's). */
static int f_linear(lua_State *L) {
  cnn_tensor *x = lcnn_check(L, 1, "linear"), *w = lcnn_check(L, 2, "linear");
  cnn_tensor *b = lua_isnoneornil(L, 3) ? NULL : lcnn_check(L, 3, "linear");
  lcnn_push(L, cnn_op_linear(x, w, b), "linear");
  return 1;
}

/* ---- activations ---- */

/** cnn.F.leaky_relu(x, negative_slope=0.01) -> Tensor
 * x where x > 0, else negative_slope * x, elementwise. */
static int f_leaky_relu(lua_State *L) {
  cnn_tensor *x = lcnn_check(L, 1, "leaky_relu");
  double slope = lcnn_arg_number(L, 2, "leaky_relu", "negative_slope", 0.01);
  lcnn_check_float_value(L, 2, "leaky_relu", CNN_FLOAT32);
  lcnn_push(L, cnn_op_leaky_relu(x, slope), "leaky_relu");
  return 1;
}

/* core.F.gelu(x, tanh_form): the kernel behind cnn.F.gelu (scripts/cnn/F.lua checks the options). */
static int f_gelu(lua_State *L) {
  cnn_tensor *x = lcnn_check(L, 1, "gelu");
  lcnn_push(L, cnn_op_gelu(x, lua_toboolean(L, 2)), "gelu");
  return 1;
}

static int softmax_like(lua_State *L, const char *fn, bool take_log) {
  lcnn_max_args(L, 2, fn);
  cnn_tensor *x = lcnn_check(L, 1, fn);
  if (lua_isnoneornil(L, 2)) return lcnn_error(L, fn, "the dimension is required (%s(x, d))", fn);
  int d = lcnn_dim(L, 2, fn, x->ndim, 0);
  lcnn_push(L, take_log ? cnn_op_log_softmax(x, d) : cnn_op_softmax(x, d), fn);
  return 1;
}

/** cnn.F.softmax(x, dim) -> Tensor
 * exp(x) normalised to sum to 1 along dimension dim (1-based: 2 for the classes of (N, C) scores). */
static int f_softmax(lua_State *L) { return softmax_like(L, "softmax", false); }
/** cnn.F.log_softmax(x, dim) -> Tensor
 * log(softmax(x, dim)), computed stably (the input of F.nll_loss). */
static int f_log_softmax(lua_State *L) { return softmax_like(L, "log_softmax", true); }

/* ---- losses ---- */

/* Lua's class labels (1..C, or ignore_index) as the runtime's 0-based ones: a new int64 tensor
 * holding l - 1, made in the pass that checks the range, so an error names the label as the user
 * wrote it; o->ignore_index moves with them. Labels that are not int64, or logits without a class
 * dim, pass through for the op's own message. Returns a new reference (NULL: raised). */
static cnn_tensor *labels_from_lua(lua_State *L, const char *fn, const cnn_tensor *x, cnn_tensor *labels,
                                   cnn_class_loss_opts *o) {
  if (labels->dtype != CNN_INT64 || x->ndim < 1) return cnn_tensor_retain(labels);
  const int64_t C = x->ndim == 1 ? x->size[0] : x->size[1], ignore = o->ignore_index;
  const int64_t moved = ignore == INT64_MIN ? INT64_MIN : ignore - 1; /* ignore_index, 0-based */
  cnn_tensor *in = cnn_tensor_contiguous(labels);
  cnn_tensor *out = in ? cnn_tensor_empty(CNN_INT64, labels->ndim, labels->size) : NULL;
  if (!out) {
    cnn_tensor_release(in);
    lcnn_fail(L, fn);
  }
  const int64_t *l = cnn_tensor_i64(in), n = cnn_tensor_numel(in);
  int64_t *d = cnn_tensor_i64(out);
  int64_t bad = 0;
  bool ok = true;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = l[i];
    bool ignored = o->has_ignore && v == ignore, fits = v >= 1 && v <= C;
    d[i] = ignored ? moved : v - (fits ? 1 : 0);
    if (!ignored && !fits && ok) ok = false, bad = v;
  }
  cnn_tensor_release(in);
  if (!ok) {
    cnn_tensor_release(out);
    if (C == 0)
      lcnn_error(L, fn, "label %lld is out of range: there are no classes (the input's class dim is 0)",
                 (long long)bad);
    lcnn_error(L, fn, "label %lld is out of range for %lld classes (expected 1..%lld)", (long long)bad, (long long)C,
               (long long)C);
  }
  o->ignore_index = moved;
  return out;
}

/* cross_entropy / nll_loss: labels translated, then the op (the translated labels are released
 * before any raise) */
static int class_loss(lua_State *L, const char *fn, bool smoothing) {
  cnn_class_loss_opts o;
  int widx = class_options(L, 3, fn, &o, smoothing); /* first: the lookups may run Lua code */
  cnn_tensor *x = lcnn_check(L, 1, fn), *labels = lcnn_check(L, 2, fn);
  class_weight(L, widx, fn, &o);
  cnn_tensor *l0 = labels_from_lua(L, fn, x, labels, &o);
  cnn_tensor *y = smoothing ? cnn_op_cross_entropy(x, l0, &o) : cnn_op_nll_loss(x, l0, &o);
  cnn_tensor_release(l0);
  lcnn_push(L, y, fn);
  return 1;
}

/** cnn.F.cross_entropy(logits, labels, {reduction="mean", label_smoothing=0, weight=, ignore_index=}) -> Tensor
 * The softmax cross-entropy of scores (N, C) against int64 labels (N) in 1..C.
 * reduction is "mean" (over the samples, weighted by weight[label] when a weight is given), "sum" or
 * "none" (one loss per sample). weight is a (C) tensor of class weights; samples whose label is
 * ignore_index count for nothing. label_smoothing in [0, 1] mixes the one-hot target with the
 * uniform distribution, as in PyTorch. Fused: one pass forward, one backward. */
static int f_cross_entropy(lua_State *L) { return class_loss(L, "cross_entropy", true); }

/** cnn.F.nll_loss(log_probs, labels, {reduction="mean", weight=, ignore_index=}) -> Tensor
 * The negative log-likelihood of log-probabilities (N, C) against int64 labels (N) in 1..C.
 * The options are F.cross_entropy's; `F.nll_loss(F.log_softmax(x, 2), y)` is `F.cross_entropy(x, y)`. */
static int f_nll_loss(lua_State *L) { return class_loss(L, "nll_loss", false); }

/** cnn.F.mse_loss(input, target, {reduction="mean"}) -> Tensor
 * The squared differences (input - target)^2: their mean, their sum, or each ("none").
 * The shapes broadcast; an int64 side is converted when the other is float32. */
static int f_mse_loss(lua_State *L) {
  static const char *const known[] = {"reduction", NULL};
  lcnn_options(L, 3, "mse_loss", known);
  cnn_reduction r = field_reduction(L, 3, "mse_loss");
  cnn_tensor *a = lcnn_check(L, 1, "mse_loss"), *b = lcnn_check(L, 2, "mse_loss");
  lcnn_push(L, cnn_op_mse_loss(a, b, r), "mse_loss");
  return 1;
}

/* ---- dropout and normalisation ---- */

/** cnn.F.dropout(x, p=0.5, training=true) -> Tensor
 * When training, each element zeroed with probability p and the rest scaled by 1 / (1 - p).
 * Not training, or p = 0, returns x itself. The mask comes from cnn's generator. An int64 x is
 * only zeroed by p = 1 (other p would give floats), as PyTorch. */
static int f_dropout(lua_State *L) {
  cnn_tensor *x = lcnn_check(L, 1, "dropout");
  double p = lcnn_arg_number(L, 2, "dropout", "p", 0.5);
  bool training = lcnn_arg_boolean(L, 3, "dropout", "training", 1);
  cnn_tensor *y = cnn_op_dropout(x, p, training);
  if (y == x) {
    cnn_tensor_release(y);
    lua_pushvalue(L, 1);
    return 1;
  }
  lcnn_push(L, y, "dropout");
  return 1;
}

/** cnn.F.batch_norm(x, running_mean, running_var, weight, bias, training=false, momentum=0.1, eps=1e-5,
 *   {relu=false, residual=nil}) -> Tensor
 * Normalises each channel of x (N, C) or (N, C, ...), then scales by weight and shifts by bias.
 * training uses the batch's statistics and moves running_mean and running_var (updated in place, when
 * given) towards them by momentum; otherwise the running statistics are used. weight, bias and the
 * running statistics are (C) tensors or nil. {relu=true} returns F.relu of the result in one pass each
 * way (one BatchNormReluBackward node, same values and gradients). {residual=r} (a float32 tensor of
 * x's shape) adds r to the result before the ReLU: F.relu(F.batch_norm(x, ...) + r), a ResNet block's
 * end, as one node (BatchNormAddReluBackward) with the same values and gradients, r's included. */
static int f_batch_norm(lua_State *L) {
  static const char *const known[] = {"relu", "residual", NULL};
  const char *fn = "batch_norm";
  bool training = lcnn_arg_boolean(L, 6, fn, "training", false);
  double momentum = lcnn_arg_number(L, 7, fn, "momentum", 0.1), eps = lcnn_arg_number(L, 8, fn, "eps", 1e-5);
  lcnn_options(L, 9, fn, known);
  bool relu = lcnn_opt_boolean(L, 9, fn, "relu", false);
  cnn_tensor *res = lcnn_opt_tensor(L, 9, fn, "residual");
  cnn_tensor *x = lcnn_check(L, 1, fn);
  cnn_tensor *rm = lcnn_arg_tensor(L, 2, fn, "running_mean"), *rv = lcnn_arg_tensor(L, 3, fn, "running_var");
  cnn_tensor *w = lcnn_arg_tensor(L, 4, fn, "weight"), *b = lcnn_arg_tensor(L, 5, fn, "bias");
  lcnn_push(L, cnn_op_batch_norm_add(x, rm, rv, w, b, training, momentum, eps, res, relu), fn);
  return 1;
}

/** cnn.F.pad_channels(x, before=0, after=0, {stride=1}) -> Tensor
 * x (N, C, H, W) subsampled by stride, with `before` zero channels in front and `after` behind.
 * Every stride-th row and column (x[:, :, ::stride, ::stride] in PyTorch's notation) between the
 * zero channels: ResNet's parameter-free option A shortcut, (N, before + C + after,
 * ceil(H / stride), ceil(W / stride)), in one pass each way where F.avg_pool2d, cnn.zeros and
 * cnn.cat take five. Differentiable. */
static int f_pad_channels(lua_State *L) {
  static const char *const known[] = {"stride", NULL};
  const char *fn = "pad_channels";
  cnn_tensor *x = lcnn_check(L, 1, fn);
  lua_Integer before = lcnn_arg_integer(L, 2, fn, "before", 0), after = lcnn_arg_integer(L, 3, fn, "after", 0);
  lcnn_options(L, 4, fn, known);
  lua_Integer stride = lcnn_opt_integer(L, 4, fn, "stride", 1);
  lcnn_push(L, cnn_op_pad_channels(x, before, after, stride), fn);
  return 1;
}

/** cnn.F.local_response_norm(x, size, {alpha=1e-4, beta=0.75, k=1}) -> Tensor
 * Local response normalisation across channels (AlexNet's LRN), as PyTorch computes it.
 * Each value of x (N, C, ...) is divided by (k + alpha / size * sum of the squares of the size
 * channels around it) ^ beta. An int64 x gives float32, its mean of squares truncated to an integer
 * first, as PyTorch computes it. */
static int f_local_response_norm(lua_State *L) {
  static const char *const known[] = {"alpha", "beta", "k", NULL};
  const char *fn = "local_response_norm";
  int isint = 0;
  lua_Integer size = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
  if (!isint) return lcnn_error(L, fn, "size must be an integer, got %s", luaL_typename(L, 2));
  lcnn_options(L, 3, fn, known);
  double alpha = lcnn_opt_number(L, 3, fn, "alpha", 1e-4), beta = lcnn_opt_number(L, 3, fn, "beta", 0.75);
  double k = lcnn_opt_number(L, 3, fn, "k", 1.0);
  cnn_tensor *x = lcnn_check(L, 1, fn);
  lcnn_push(L, cnn_op_local_response_norm(x, (int64_t)size, alpha, beta, k), fn);
  return 1;
}

void lcnn_open_functional(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {{"linear", f_linear},
                                 {"leaky_relu", f_leaky_relu},
                                 {"gelu", f_gelu},
                                 {"softmax", f_softmax},
                                 {"log_softmax", f_log_softmax},
                                 {"cross_entropy", f_cross_entropy},
                                 {"nll_loss", f_nll_loss},
                                 {"mse_loss", f_mse_loss},
                                 {"dropout", f_dropout},
                                 {"batch_norm", f_batch_norm},
                                 {"pad_channels", f_pad_channels},
                                 {"local_response_norm", f_local_response_norm},
                                 {NULL, NULL}};
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
}
