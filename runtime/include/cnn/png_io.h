/** PNG images through libpng, as float32 (C, H, W) tensors with values in [0, 1]. */
#ifndef CNN_PNG_IO_H
#define CNN_PNG_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How many channels a loaded image gets. Every colour type, bit depth (1..16), palette,
 * tRNS and interlaced file is read; samples are scaled by 1/(2^depth - 1), and 16-bit files keep
 * their 16-bit precision.
 *   AUTO: grey (with or without alpha) -> 1 channel; colour or palette -> 3; alpha is dropped
 *         (as PIL's .convert("RGB") and .convert("L") do).
 *   GRAY: 1 channel; colour becomes L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 on 8-bit
 *         samples (PIL's .convert("L")), 0.299 R + 0.587 G + 0.114 B on 16-bit ones.
 *   RGB:  3 channels; grey is repeated (torchvision's ImageFolder loader).
 *   RGBA: 4 channels; tRNS becomes alpha, opaque images get alpha 1. */
typedef enum cnn_png_mode { CNN_PNG_AUTO, CNN_PNG_GRAY, CNN_PNG_RGB, CNN_PNG_RGBA } cnn_png_mode;

/** Returns a new (C, H, W) float32 reference, or NULL with an error that starts with the path. */
cnn_tensor *cnn_png_load(const char *path, cnn_png_mode mode);
/** The same, and *orientation (when not NULL) set to the eXIf chunk's EXIF orientation, 1..8 (1
 * without one); the pixels are returned as stored (image_io.h's cnn_image_load applies it). */
cnn_tensor *cnn_png_load_oriented(const char *path, cnn_png_mode mode, int *orientation);

/** Writes an 8-bit PNG from a float32 tensor of shape (H, W) or (C, H, W) with C = 1 (grey),
 * 2 (grey + alpha), 3 (RGB) or 4 (RGBA); values are clamped to [0, 1] and stored as
 * floor(v * 255 + 0.5) (torchvision's save_image); NaN is stored as 0. The image is written to a
 * temporary file beside path and renamed over it, so path never holds a partial image.
 * Returns 0, or -1 with an error that starts with the path. */
int cnn_png_save(const char *path, const cnn_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
