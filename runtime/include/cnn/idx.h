/** IDX files (the MNIST family's format), raw or gzip-compressed. The layout: a 4-byte magic (0,
 * 0, element type, ndim), ndim big-endian uint32 sizes, then the elements, big-endian, row-major. */
#ifndef CNN_IDX_H
#define CNN_IDX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Element type codes of the IDX format. */
enum {
  CNN_IDX_UBYTE = 0x08,
  CNN_IDX_SBYTE = 0x09,
  CNN_IDX_SHORT = 0x0B,
  CNN_IDX_INT = 0x0C,
  CNN_IDX_FLOAT = 0x0D,
  CNN_IDX_DOUBLE = 0x0E
};

/** "ubyte", "sbyte", "short", "int", "float", "double", or NULL for an unknown code.
 * Ownership: returns a static string. */
const char *cnn_idx_type_name(int code);

/** Loads the IDX file at path (gzip detected by its magic bytes 1f 8b). Integer element types
 * become int64 when the file has at most one dimension (labels) and float32 otherwise (images);
 * float and double become float32. Every element of a float32 result is divided by `divisor`
 * (1 leaves values as stored; 255 maps ubyte images to [0, 1] exactly as x / 255.f does).
 * *type_out (may be NULL) receives the element type code. Returns a new reference, or NULL
 * with an error that starts with the path and names the problem: the file is checked to hold
 * exactly the announced bytes, sizes may not overflow, and reading stops at the first error. */
cnn_tensor *cnn_idx_load(const char *path, double divisor, int *type_out);

/** Loads a ubyte IDX file as a uint8 tensor of the file's shape, bytes as stored (a quarter of the
 * memory of cnn_idx_load's float32 images; convert batches with cnn_batch_gather_float). Same
 * checks and messages as cnn_idx_load, and files of any other element type are an error naming
 * it. Returns a new reference, or NULL with the error set. */
cnn_tensor *cnn_idx_load_u8(const char *path);

#ifdef __cplusplus
}
#endif
#endif
