/** safetensors files (Hugging Face's format), read and written whole, as PyTorch checkpoints and
 * cnnlua's use them. The layout: an 8-byte little-endian header length N, N bytes of
 * JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into
 * the data that follows the header) plus an optional "__metadata__" string-to-string map, then
 * the tensors' bytes, little-endian, row-major, packed with no gaps or overlaps. */
#ifndef CNN_SAFETENSORS_H
#define CNN_SAFETENSORS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_SAFETENSORS_MAX_HEADER 100000000u /* the reference implementation's limit */

/** What a file holds. Names and metadata are NUL-terminated UTF-8 without embedded NULs. */
typedef struct cnn_safetensors {
  size_t n; /* tensors, in the order of their data in the file */
  char **names;
  cnn_tensor **tensors; /* owned references */
  size_t nmeta;
  char **meta_keys; /* "__metadata__" entries, in header order */
  char **meta_values;
} cnn_safetensors;

/** Reads every tensor of the file at path into *out (zeroed first; cleared with
 * cnn_safetensors_clear, which releases every tensor and string and leaves it empty). F32 stays
 * float32, I64 int64, U8 uint8 and BOOL bool (any nonzero byte true); F16, BF16, F64, F8_E4M3 and
 * F8_E5M2 become float32; I8, I16, U16, I32, U32 and U64 (when it fits) become int64.
 * The whole file is validated before data is read: header length against the 100 MB limit and
 * the file, strict JSON (libjansson: RFC 8259, valid UTF-8, no duplicate keys, no NUL bytes,
 * nesting at most 64 deep), known dtypes, integer shapes whose byte size matches their offsets,
 * and offsets that tile the data exactly. Returns 0, or -1 with an error that starts with the
 * path; nothing is kept on failure.
 * Ownership: *out receives new references to the tensors and strings from malloc, which
 * cnn_safetensors_clear gives up (a tensor the caller retained lives on); path borrowed. */
int cnn_safetensors_load(const char *path, cnn_safetensors *out);
void cnn_safetensors_clear(cnn_safetensors *st);

/** Writes n named tensors (any strides; float32, int64, uint8, bool as F32, I64, U8, BOOL) and nmeta metadata pairs: header members
 * "__metadata__" first, then tensors in byte order of their names, which is also the order of
 * their data; the header is padded with spaces to a multiple of 8 bytes. The file is written
 * beside path and renamed over it when complete. Returns 0, or -1 with the error set. */
int cnn_safetensors_save(const char *path, size_t n, const char *const *names, const cnn_tensor *const *tensors,
                         size_t nmeta, const char *const *meta_keys, const char *const *meta_values);

#ifdef __cplusplus
}
#endif
#endif
