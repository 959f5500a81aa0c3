/** Byte arrays: uint8 data with a shape, for datasets kept in memory as stored (MNIST's 60000 images
 * are 47 MB as bytes and 188 MB as float32). Not a tensor dtype: no kernel reads bytes except the
 * gathers here, which turn rows into float32 tensors (byte / divisor) when a batch is needed. */
#ifndef CNN_BYTES_H
#define CNN_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/** A contiguous row-major array of numel bytes. data comes from the runtime's allocator (so its
 * live bytes count it, as they count tensor storage); one owner frees it with cnn_bytes_free. */
typedef struct cnn_bytes {
  int ndim; /* 0..CNN_MAX_DIMS */
  int64_t size[CNN_MAX_DIMS];
  int64_t numel;
  uint8_t *data;
} cnn_bytes;

/** A new array of the given shape, uninitialised (zeroed when zero is true). Returns NULL with the
 * error set for a bad shape or when out of memory. */
cnn_bytes *cnn_bytes_new(int ndim, const int64_t *size, bool zero);
/** Frees b and its data; NULL is a no-op.
 * Ownership: takes b (it must not be used afterwards). */
void cnn_bytes_free(cnn_bytes *b);

/** Gives b a new shape with the same number of elements (the data is untouched). 0 or -1. */
int cnn_bytes_reshape(cnn_bytes *b, int ndim, const int64_t *size);

/** dst[i] = (float)src[i] / divisor for i < n. The one conversion of bytes to floats: the IDX
 * reader and every gather below use it, so all give the same bits (divisor 255 maps 0..255 to
 * [0, 1] as torchvision's x / 255. does in float32). */
void cnn_bytes_convert(float *dst, const uint8_t *src, int64_t n, float divisor);

/** Rows of b along dim 0 picked by idx (a 1-d int64 tensor of 0-based indices, any strides), as a
 * new contiguous float32 tensor of shape (len(idx), b.size[1:]) holding byte / divisor. Every
 * index is checked before anything is allocated; rows are converted in parallel. */
cnn_tensor *cnn_bytes_gather(const cnn_bytes *b, const cnn_tensor *idx, double divisor);

/** Row i (0-based) of b as a new float32 tensor of shape b.size[1:]. */
cnn_tensor *cnn_bytes_row(const cnn_bytes *b, int64_t i, double divisor);

/** All of b as a new float32 tensor of b's shape (4 bytes per element: for code that wants the
 * whole dataset as one tensor, at four times the memory). */
cnn_tensor *cnn_bytes_to_float(const cnn_bytes *b, double divisor);

#endif
