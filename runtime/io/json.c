/* Strict JSON reader (see json.h). Recursive descent over a length-bounded buffer: every read goes
 * through peek/at_end, so the text needs no terminator and is never read past len. Depth is
 * capped, so hostile nesting cannot exhaust the C stack; duplicate keys are found by sorting. */
#include "cnn/json.h"
#include "cnn/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const unsigned char *s;
  size_t n, pos;
} parser;

static int fail(const parser *p, const char *what) {
  return cnn_error_set("invalid JSON at byte %zu: %s", p->pos, what);
}

static void skip_ws(parser *p) {
  while (p->pos < p->n) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static void free_members(cnn_json *v) {
  if (v->type == CNN_JSON_ARRAY || v->type == CNN_JSON_OBJECT) {
    for (size_t i = 0; i < v->len; i++) {
      free_members(&v->items[i]);
      if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
  }
  free(v->str);
}

void cnn_json_free(cnn_json *v) {
  if (!v) return;
  free_members(v);
  free(v);
}

/* Length of the UTF-8 sequence starting at s[0..n), or 0 when it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0; /* overlong, range */
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;                                              /* surrogates */
  return len;
}

bool cnn_json_utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq(u + i, n - i);
    if (!k) return false;
    i += k;
  }
  return true;
}

static size_t put_utf8(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int hex4(parser *p, uint32_t *out) {
  if (p->n - p->pos < 4) return fail(p, "truncated \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p->s[p->pos + i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return fail(p, "bad hex digit in \\u escape");
    v = v * 16 + (uint32_t)d;
  }
  p->pos += 4;
  *out = v;
  return 0;
}

/* A string starting at the opening quote; *out gets a malloc'd decoded copy. The decoded form is
 * never longer than the source (an escape of 6 or 12 bytes yields at most 4), so one allocation of
 * the source's length suffices. */
static int parse_string(parser *p, char **out, size_t *outlen) {
  p->pos++; /* opening quote */
  size_t end = p->pos;
  while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) return fail(p, "unterminated string");
  char *buf = malloc(end - p->pos + 1);
  if (!buf) return cnn_error_set("out of memory");
  size_t k = 0;
  while (p->s[p->pos] != '"') {
    unsigned char c = p->s[p->pos];
    if (c < 0x20) {
      free(buf);
      return fail(p, "control character in string");
    }
    if (c != '\\') {
      size_t len = utf8_seq(p->s + p->pos, end - p->pos);
      if (!len) {
        free(buf);
        return fail(p, "invalid UTF-8 in string");
      }
      memcpy(buf + k, p->s + p->pos, len);
      k += len;
      p->pos += len;
      continue;
    }
    char e = (char)p->s[p->pos + 1]; /* end scan guarantees this byte exists */
    p->pos += 2;
    switch (e) {
    case '"': buf[k++] = '"'; break;
    case '\\': buf[k++] = '\\'; break;
    case '/': buf[k++] = '/'; break;
    case 'b': buf[k++] = '\b'; break;
    case 'f': buf[k++] = '\f'; break;
    case 'n': buf[k++] = '\n'; break;
    case 'r': buf[k++] = '\r'; break;
    case 't': buf[k++] = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (hex4(p, &cp)) {
        free(buf);
        return -1;
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        free(buf);
        return fail(p, "unpaired low surrogate in \\u escape");
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
          free(buf);
          return fail(p, "unpaired high surrogate in \\u escape");
        }
        p->pos += 2;
        if (hex4(p, &lo)) {
          free(buf);
          return -1;
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
          free(buf);
          return fail(p, "unpaired high surrogate in \\u escape");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      k += put_utf8(buf + k, cp);
      break;
    }
    default:
      free(buf);
      p->pos -= 1;
      return fail(p, "unknown escape in string");
    }
    if (p->pos > end) { /* an escape that swallowed the closing quote: "\u12" */
      free(buf);
      return fail(p, "unterminated string");
    }
  }
  p->pos++; /* closing quote */
  buf[k] = '\0';
  *out = buf;
  *outlen = k;
  return 0;
}

static int parse_number(parser *p, cnn_json *v) {
  size_t start = p->pos;
  bool neg = false, integral = true;
  if (p->pos < p->n && p->s[p->pos] == '-') {
    neg = true;
    p->pos++;
  }
  if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "expected a digit");
  if (p->s[p->pos] == '0') {
    p->pos++;
    if (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') return fail(p, "leading zero in number");
  } else {
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->n && p->s[p->pos] == '.') {
    integral = false;
    p->pos++;
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "expected a digit after '.'");
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    integral = false;
    p->pos++;
    if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "expected a digit in exponent");
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  size_t len = p->pos - start;
  if (len > 400) {
    p->pos = start;
    return fail(p, "number too long");
  }
  char tmp[402];
  memcpy(tmp, p->s + start, len);
  tmp[len] = '\0';
  v->type = CNN_JSON_NUMBER;
  v->number = strtod(tmp, NULL);
  if (integral && !neg) {
    uint64_t u = 0;
    bool fits = true;
    for (size_t i = 0; i < len && fits; i++) {
      uint64_t d = (uint64_t)(tmp[i] - '0');
      if (u > (UINT64_MAX - d) / 10) fits = false;
      else u = u * 10 + d;
    }
    v->is_uint = fits;
    v->uint = fits ? u : 0;
  }
  return 0;
}

static int literal(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->n - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail(p, "unexpected character");
  p->pos += n;
  return 0;
}

typedef struct {
  const char *k;
  size_t n;
} keyref;

static int keycmp(const void *a, const void *b) {
  const keyref *x = a, *y = b;
  size_t m = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->k, y->k, m);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Finds a repeated key in an object; returns its index or -1 (or -2 when out of memory). */
static long duplicate_key(const cnn_json *v) {
  if (v->len < 2) return -1;
  keyref *refs = malloc(v->len * sizeof *refs);
  if (!refs) return -2;
  for (size_t i = 0; i < v->len; i++) refs[i] = (keyref){v->keys[i], v->key_lens[i]};
  qsort(refs, v->len, sizeof *refs, keycmp);
  long dup = -1;
  for (size_t i = 1; i < v->len && dup < 0; i++)
    if (keycmp(&refs[i - 1], &refs[i]) == 0) {
      for (size_t j = 0; j < v->len; j++)
        if (v->keys[j] == refs[i].k || v->keys[j] == refs[i - 1].k) dup = (long)j; /* the later one */
    }
  free(refs);
  return dup;
}

static int parse_value(parser *p, cnn_json *v, int depth);

/* Appends a zeroed slot to an array/object under construction; cap doubles. */
static int grow(cnn_json *v, size_t *cap, bool with_keys) {
  if (v->len < *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 4;
  cnn_json *items = realloc(v->items, nc * sizeof *items);
  if (!items) return cnn_error_set("out of memory");
  v->items = items;
  if (with_keys) {
    char **keys = realloc(v->keys, nc * sizeof *keys);
    if (!keys) return cnn_error_set("out of memory");
    v->keys = keys;
    size_t *lens = realloc(v->key_lens, nc * sizeof *lens);
    if (!lens) return cnn_error_set("out of memory");
    v->key_lens = lens;
  }
  *cap = nc;
  return 0;
}

static int parse_array(parser *p, cnn_json *v, int depth) {
  v->type = CNN_JSON_ARRAY;
  size_t cap = 0;
  p->pos++; /* [ */
  skip_ws(p);
  if (p->pos < p->n && p->s[p->pos] == ']') {
    p->pos++;
    return 0;
  }
  for (;;) {
    if (grow(v, &cap, false)) return -1;
    memset(&v->items[v->len], 0, sizeof v->items[0]);
    v->len++; /* counted before parsing so a failure frees what was built */
    if (parse_value(p, &v->items[v->len - 1], depth + 1)) return -1;
    skip_ws(p);
    if (p->pos >= p->n) return fail(p, "unterminated array");
    if (p->s[p->pos] == ']') {
      p->pos++;
      return 0;
    }
    if (p->s[p->pos] != ',') return fail(p, "expected ',' or ']' in array");
    p->pos++;
  }
}

static int parse_object(parser *p, cnn_json *v, int depth) {
  v->type = CNN_JSON_OBJECT;
  size_t cap = 0;
  p->pos++; /* { */
  skip_ws(p);
  if (p->pos < p->n && p->s[p->pos] == '}') {
    p->pos++;
    return 0;
  }
  for (;;) {
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != '"') return fail(p, "expected a string key in object");
    if (grow(v, &cap, true)) return -1;
    size_t i = v->len;
    memset(&v->items[i], 0, sizeof v->items[0]);
    v->keys[i] = NULL;
    v->len++;
    size_t keypos = p->pos;
    if (parse_string(p, &v->keys[i], &v->key_lens[i])) return -1;
    v->items[i].offset = keypos;
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':') return fail(p, "expected ':' after key in object");
    p->pos++;
    if (parse_value(p, &v->items[i], depth + 1)) return -1;
    skip_ws(p);
    if (p->pos >= p->n) return fail(p, "unterminated object");
    if (p->s[p->pos] == '}') {
      p->pos++;
      break;
    }
    if (p->s[p->pos] != ',') return fail(p, "expected ',' or '}' in object");
    p->pos++;
  }
  long dup = duplicate_key(v);
  if (dup == -2) return cnn_error_set("out of memory");
  if (dup >= 0) {
    size_t at = v->items[dup].offset;
    char shown[80];
    size_t n = v->key_lens[dup] < 60 ? v->key_lens[dup] : 60;
    memcpy(shown, v->keys[dup], n);
    shown[n] = '\0';
    return cnn_error_set("invalid JSON at byte %zu: duplicate key \"%s%s\"", at, shown,
                         n < v->key_lens[dup] ? "..." : "");
  }
  return 0;
}

static int parse_value(parser *p, cnn_json *v, int depth) {
  if (depth >= CNN_JSON_MAX_DEPTH) return fail(p, "nesting too deep");
  skip_ws(p);
  if (p->pos >= p->n) return fail(p, "unexpected end of text");
  if (!v->offset) v->offset = p->pos; /* object members keep their key's position (never 0) */
  switch (p->s[p->pos]) {
  case '{': return parse_object(p, v, depth);
  case '[': return parse_array(p, v, depth);
  case '"': v->type = CNN_JSON_STRING; return parse_string(p, &v->str, &v->len);
  case 't':
    v->type = CNN_JSON_BOOL;
    v->boolean = true;
    return literal(p, "true");
  case 'f': v->type = CNN_JSON_BOOL; return literal(p, "false");
  case 'n': v->type = CNN_JSON_NULL; return literal(p, "null");
  default:
    if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9')) return parse_number(p, v);
    return fail(p, "unexpected character");
  }
}

cnn_json *cnn_json_parse(const char *text, size_t len) {
  parser p = {(const unsigned char *)text, len, 0};
  cnn_json *v = calloc(1, sizeof *v);
  if (!v) {
    cnn_error_set("out of memory");
    return NULL;
  }
  if (parse_value(&p, v, 0)) {
    cnn_json_free(v);
    return NULL;
  }
  skip_ws(&p);
  if (p.pos != p.n) {
    fail(&p, "unexpected data after the value");
    cnn_json_free(v);
    return NULL;
  }
  return v;
}

const cnn_json *cnn_json_get(const cnn_json *obj, const char *key) {
  if (!obj || obj->type != CNN_JSON_OBJECT) return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < obj->len; i++)
    if (obj->key_lens[i] == n && memcmp(obj->keys[i], key, n) == 0) return &obj->items[i];
  return NULL;
}

size_t cnn_json_escape(char *out, size_t cap, const char *s, size_t n) {
  size_t k = 0;
#define PUT(c)                       \
  do {                               \
    if (k < cap) out[k] = (char)(c); \
    k++;                             \
  } while (0)
  PUT('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      PUT('\\');
      PUT(c);
    } else if (c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f') {
      PUT('\\');
      PUT(c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\b' ? 'b' : 'f');
    } else if (c < 0x20) { /* the other controls as \u00XX, as serde_json and Python's json write them */
      static const char hex[] = "0123456789abcdef";
      PUT('\\');
      PUT('u');
      PUT('0');
      PUT('0');
      PUT(hex[c >> 4]);
      PUT(hex[c & 15]);
    } else {
      PUT(c);
    }
  }
  PUT('"');
#undef PUT
  return k;
}
