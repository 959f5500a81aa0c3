/* A small strict JSON reader and the string escaping a writer needs: enough for the header of a
 * safetensors file (objects, arrays, strings, integers), written by hand because the header is
 * hostile input and every length must be checked (RFC 8259: no trailing commas, no comments, no
 * leading zeros, no bare control characters, valid UTF-8, properly paired \u surrogates; duplicate
 * object keys are an error). Nesting is limited to CNN_JSON_MAX_DEPTH. */
#ifndef CNN_JSON_H
#define CNN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CNN_JSON_MAX_DEPTH 64

typedef enum cnn_json_type {
  CNN_JSON_NULL,
  CNN_JSON_BOOL,
  CNN_JSON_NUMBER,
  CNN_JSON_STRING,
  CNN_JSON_ARRAY,
  CNN_JSON_OBJECT
} cnn_json_type;

typedef struct cnn_json cnn_json;
struct cnn_json {
  cnn_json_type type;
  bool boolean;
  double number;
  bool is_uint; /* a number written as a plain non-negative integer that fits in uint64 */
  uint64_t uint;
  char *str;       /* strings: decoded bytes, NUL-terminated (len excludes it; may hold NULs) */
  size_t len;      /* string bytes, or number of array items / object members */
  cnn_json *items; /* array items, or object member values (in file order) */
  char **keys;     /* object member names (decoded, NUL-terminated), parallel to items */
  size_t *key_lens;
  size_t offset; /* byte offset of the value in the text, for messages */
};

/* Parses text[0..len) as exactly one JSON value surrounded by optional whitespace. Returns a new
 * tree (free with cnn_json_free), or NULL with the error set ("... at byte N: problem"). */
cnn_json *cnn_json_parse(const char *text, size_t len);
void cnn_json_free(cnn_json *v);

/* The member named key of an object, or NULL. */
const cnn_json *cnn_json_get(const cnn_json *obj, const char *key);

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool cnn_json_utf8_valid(const char *s, size_t n);

/* Writes s[0..n) as a JSON string literal (with quotes) into out (capacity cap); returns the
 * length it needs (excluding a NUL), writing at most cap bytes, like snprintf without the NUL. */
size_t cnn_json_escape(char *out, size_t cap, const char *s, size_t n);

#endif
