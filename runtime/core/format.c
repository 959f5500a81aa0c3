/* Text form of tensors, following PyTorch's _tensor_str (precision 4, threshold 1000, edgeitems 3,
 * linewidth 80): one formatter (mode and width) per tensor, chosen over exactly the values that get
 * printed; values are read through the view's strides, so any view prints as its logical contents. */
#include "cnn/format.h"
#include "cnn/error.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THRESHOLD 1000 /* more elements than this: summarize */
#define EDGEITEMS 3
#define LINEWIDTH 80
#define PREFIX "tensor("

/* ---- growable string ---- */

typedef struct {
  char *s;
  size_t len, cap;
  bool failed; /* an allocation failed: every later append is a no-op */
} strbuf;

static void sb_reserve(strbuf *b, size_t extra) {
  if (b->failed || b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->s, cap);
  if (!p) {
    b->failed = true;
    return;
  }
  b->s = p;
  b->cap = cap;
}

static void sb_put(strbuf *b, const char *s, size_t n) {
  sb_reserve(b, n);
  if (b->failed) return;
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_chars(strbuf *b, char c, int n) {
  if (n <= 0) return;
  sb_reserve(b, (size_t)n);
  if (b->failed) return;
  memset(b->s + b->len, c, (size_t)n);
  b->len += (size_t)n;
  b->s[b->len] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) CNN_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Hands the text to the caller, or NULL with the error set if any append failed. */
static char *sb_finish(strbuf *b) {
  if (!b->failed && !b->s) sb_reserve(b, 0);
  if (b->failed) {
    free(b->s);
    cnn_error_set("out of memory while formatting a tensor");
    return NULL;
  }
  b->s[b->len] = '\0';
  return b->s;
}

/* ---- the formatter: PyTorch's _Formatter ---- */

typedef struct {
  cnn_dtype dt;
  bool int_mode; /* every finite value is integral: "3." */
  bool sci_mode; /* "1.2346e+05" */
  int width;     /* every value is right-aligned to this */
  /* scan state */
  bool any; /* some nonzero finite value seen */
  double amin, amax;
} formatter;

/* Writes one value without padding; returns its length. */
static int value_text(const formatter *f, const char *p, char *buf, size_t n) {
  if (f->dt == CNN_INT64) return snprintf(buf, n, "%" PRId64, *(const int64_t *)p);
  if (f->dt == CNN_UINT8) return snprintf(buf, n, "%u", (unsigned)*(const uint8_t *)p);
  if (f->dt == CNN_BOOL) return snprintf(buf, n, "%s", *(const uint8_t *)p ? "True" : "False");
  double v = *(const float *)p;
  if (isnan(v)) return snprintf(buf, n, "nan");
  if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
  if (f->sci_mode) return snprintf(buf, n, "%.4e", v);
  if (f->int_mode) return snprintf(buf, n, "%.0f.", v);
  return snprintf(buf, n, "%.4f", v);
}

/* True when a dim of this size shows only its first and last EDGEITEMS entries. */
static bool elided(int64_t size, bool summarize) { return summarize && size > 2 * EDGEITEMS; }

typedef void (*visit_fn)(formatter *f, const char *p);

/* Calls fn on every printed element (p points at the sub-tensor of dims d..), in order. */
static void visit(const cnn_tensor *t, int d, const char *p, bool summarize, visit_fn fn, formatter *f) {
  if (d == t->ndim) {
    fn(f, p);
    return;
  }
  int64_t n = t->size[d];
  int64_t step = t->stride[d] * (int64_t)cnn_dtype_size(t->dtype);
  bool el = elided(n, summarize);
  for (int64_t i = 0; i < n; i++) {
    if (el && i == EDGEITEMS) i = n - EDGEITEMS;
    visit(t, d + 1, p + i * step, summarize, fn, f);
  }
}

static void scan_range(formatter *f, const char *p) {
  double v = *(const float *)p;
  if (!isfinite(v) || v == 0) return;
  double a = fabs(v);
  if (!f->any) f->amin = f->amax = a;
  if (a < f->amin) f->amin = a;
  if (a > f->amax) f->amax = a;
  f->any = true;
  if (v != ceil(v)) f->int_mode = false;
}

/* Width over the nonzero finite values (integers and bools: over all values), as PyTorch measures it. */
static void scan_width(formatter *f, const char *p) {
  if (f->dt == CNN_FLOAT32) {
    double v = *(const float *)p;
    if (!isfinite(v) || v == 0) return;
  }
  char buf[64];
  int n = value_text(f, p, buf, sizeof buf);
  if (n > f->width) f->width = n;
}

static void formatter_init(formatter *f, const cnn_tensor *t, bool summarize) {
  memset(f, 0, sizeof *f);
  f->dt = t->dtype;
  f->int_mode = true;
  f->width = 1;
  const char *base = cnn_tensor_data(t);
  if (t->dtype == CNN_FLOAT32) {
    visit(t, 0, base, summarize, scan_range, f);
    if (!f->any) return;
    double ratio = f->amax / f->amin;
    f->sci_mode = ratio > 1000.0 || f->amax > 1.0e8 || (!f->int_mode && f->amin < 1.0e-4);
  }
  visit(t, 0, base, summarize, scan_width, f);
}

static void put_value(strbuf *b, const formatter *f, const char *p) {
  char buf[64];
  int n = value_text(f, p, buf, sizeof buf);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  sb_chars(b, ' ', f->width - n);
  sb_put(b, buf, (size_t)n);
}

/* ---- layout: PyTorch's _vector_str and _tensor_str_with_formatter ---- */

/* Dim d (the last) of the element at p: "[a, b, ...]" wrapped to LINEWIDTH. */
static void put_vector(strbuf *b, const formatter *f, const cnn_tensor *t, const char *p, int indent, bool summarize) {
  int d = t->ndim - 1;
  int64_t n = t->size[d];
  int64_t step = t->stride[d] * (int64_t)cnn_dtype_size(t->dtype);
  int element_length = f->width + 2; /* value, comma and space */
  int per_line = LINEWIDTH - indent > 0 ? (LINEWIDTH - indent) / element_length : 0;
  if (per_line < 1) per_line = 1;
  bool el = elided(n, summarize);
  int64_t count = el ? 2 * EDGEITEMS + 1 : n; /* items incl. the " ..." marker */
  sb_str(b, "[");
  for (int64_t k = 0; k < count; k++) {
    if (k > 0) {
      if (k % per_line == 0) {
        sb_str(b, ",\n");
        sb_chars(b, ' ', indent + 1);
      } else {
        sb_str(b, ", ");
      }
    }
    if (el && k == EDGEITEMS) {
      sb_str(b, " ...");
      continue;
    }
    int64_t i = el && k > EDGEITEMS ? n - (count - k) : k;
    put_value(b, f, p + i * step);
  }
  sb_str(b, "]");
}

static void put_nested(strbuf *b, const formatter *f, const cnn_tensor *t, int d, const char *p, int indent,
                       bool summarize) {
  if (d == t->ndim - 1) {
    put_vector(b, f, t, p, indent, summarize);
    return;
  }
  int rest = t->ndim - d; /* dims of this sub-tensor, >= 2: rows are separated by rest-1 newlines */
  int64_t n = t->size[d];
  int64_t step = t->stride[d] * (int64_t)cnn_dtype_size(t->dtype);
  bool el = elided(n, summarize);
  int64_t count = el ? 2 * EDGEITEMS + 1 : n;
  sb_str(b, "[");
  for (int64_t k = 0; k < count; k++) {
    if (k > 0) {
      sb_str(b, ",");
      sb_chars(b, '\n', rest - 1);
      sb_chars(b, ' ', indent + 1);
    }
    if (el && k == EDGEITEMS) {
      sb_str(b, "...");
      continue;
    }
    int64_t i = el && k > EDGEITEMS ? n - (count - k) : k;
    put_nested(b, f, t, d + 1, p + i * step, indent + 1, summarize);
  }
  sb_str(b, "]");
}

static void put_values(strbuf *b, const cnn_tensor *t) {
  int64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) numel *= t->size[d];
  sb_str(b, PREFIX);
  if (numel == 0) {
    sb_str(b, "[])");
    return;
  }
  bool summarize = numel > THRESHOLD;
  formatter f;
  formatter_init(&f, t, summarize);
  if (t->ndim == 0) put_value(b, &f, cnn_tensor_data(t));
  else put_nested(b, &f, t, 0, cnn_tensor_data(t), (int)strlen(PREFIX), summarize);
  sb_str(b, ")");
}

char *cnn_format_values(const cnn_tensor *t) {
  strbuf b = {0};
  put_values(&b, t);
  return sb_finish(&b);
}

/* values, then "[float32 tensor of shape {2, 2}, grad_fn=MulBackward]" on its own line. */
char *cnn_format_tensor(const cnn_tensor *t) {
  strbuf b = {0};
  put_values(&b, t);
  sb_printf(&b, "\n[%s tensor of shape {", cnn_dtype_name(t->dtype));
  for (int d = 0; d < t->ndim; d++) sb_printf(&b, d ? ", %" PRId64 : "%" PRId64, t->size[d]);
  sb_str(&b, "}");
  if (t->grad_fn) {
    const char *name = cnn_tensor_grad_fn_name(t);
    sb_str(&b, ", grad_fn=");
    sb_str(&b, name ? name : "?");
  } else if (t->requires_grad) {
    sb_str(&b, ", requires_grad=true");
  }
  sb_str(&b, "]");
  return sb_finish(&b);
}
